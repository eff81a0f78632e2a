//! Checks for other crates' tests (feature `testing`).

/// Prometheus' conventions: counters end in `_total`, nothing else
/// does; every name has the `tally_` prefix, but the semantic conventions'
/// runtime metrics (`jvm_`, `go_`); seconds are `_seconds`.
pub fn assert_naming(text: &str) {
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut parts = line.split(' ').skip(2);
        let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
        assert!(
            name.starts_with("tally_") || name.starts_with("jvm_") || name.starts_with("go_"),
            "{line}"
        );
        assert_eq!(
            name.ends_with("_total"),
            kind == "counter",
            "a counter ends in _total, a gauge does not: {line}"
        );
        assert!(!name.contains("_ns") && !name.contains("_ms"), "{line}");
    }
}
