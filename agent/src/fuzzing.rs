//! One entry point per parser that reads untrusted bytes, shared by the
//! fuzz targets (`fuzz/`, `cargo xtask fuzz`) and the test that replays
//! their corpus and every crash they found (`tests/it/fuzz_corpus.rs`), so
//! both exercise exactly the same code. Each panics only where the parser
//! broke a promise (a panic is the finding).
use bytes::Bytes;
use prost::Message as _;

use tally_collector::{ingest, validate::Limits};
use tally_transport::Caller;

/// One fuzz target: takes any bytes, panics only on a broken promise.
pub type Target = fn(&[u8]);

/// The targets, by name (the fuzz crate's binaries and corpus folders).
pub const TARGETS: &[(&str, Target)] = &[
    ("ingest", ingest),
    ("cgroup_path", cgroup_path),
    ("proc_stat", proc_stat),
    ("hsperf", hsperf),
    ("stapsdt", stapsdt),
    ("token_file", token_file),
    ("price_overrides", price_overrides),
];

/// One report from the wire: the collector's partial decode, validation
/// and preparation for the store, as a node-bound caller; and the full
/// decode that queries and tools use.
pub fn ingest(data: &[u8]) {
    let _ = tally_proto::NodeReport::decode(data);
    let Ok(received) = tally_proto::received::ReceivedReport::decode(Bytes::copy_from_slice(data))
    else {
        return;
    };
    let now = 1_800_000_000_000;
    let caller = Caller::Node("node-a".into());
    let processes = received.view.processes.len();
    if let Ok((prepared, refused)) = ingest::prepare(received, &Limits::default(), &caller, now) {
        assert_eq!(
            &*prepared.node_name, "node-a",
            "a report for another node passed"
        );
        assert!(prepared.sequence >= 1);
        // What is kept and what is refused add up to what came.
        assert_eq!(
            prepared.processes as usize + refused.processes as usize,
            processes
        );
    }
}

/// The cgroup path parser: a container id it returns is 64 hex digits.
pub fn cgroup_path(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(info) = tally_core::model::container::parse(&text) {
        assert_eq!(info.id.len(), 64);
        assert!(
            info.id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
    }
}

/// `/proc/<pid>/stat`: a comm may hold any byte but NUL, and another
/// kernel may add or drop fields.
pub fn proc_stat(data: &[u8]) {
    let _ = tally_core::procstat::parse_stat(data);
}

/// A JVM's hsperfdata file, read from a process the agent does not trust.
pub fn hsperf(data: &[u8]) {
    if let Ok(perf) = tally_node::runtimes::jvm::hsperf::parse(data) {
        let _ = perf.gc_counters();
    }
}

/// An ELF's `.note.stapsdt` notes.
pub fn stapsdt(data: &[u8]) {
    if let Ok(probes) = tally_node::runtimes::jvm::stapsdt::probes(data) {
        let _ = tally_node::runtimes::jvm::stapsdt::hotspot_gc_offsets_of(&probes);
        for p in &probes {
            let _ = tally_node::runtimes::jvm::stapsdt::file_offset(data, p.address);
        }
    }
}

/// The collector's token file.
pub fn token_file(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = tally_transport::TokenTable::parse(&text, std::path::Path::new("tokens"));
}

/// The user's price override file (`--prices`): parsed, then applied to
/// the embedded table; every price that comes out is finite and not
/// negative, and every error names a line.
pub fn price_overrides(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let applied = tally_core::cost::overrides::parse(&text)
        .and_then(|o| o.apply(tally_core::cost::PriceTable::embedded()));
    match applied {
        Ok(table) => {
            for lifecycle in [
                tally_core::cost::Lifecycle::OnDemand,
                tally_core::cost::Lifecycle::Spot,
            ] {
                for (t, r) in [("m6i.xlarge", "us-east-1"), ("m7g.large", "sa-east-1")] {
                    if let Some(p) = table.price(t, r, lifecycle) {
                        assert!(
                            p.usd_per_hour.is_finite() && p.usd_per_hour >= 0.0,
                            "{t} {r}: {}",
                            p.usd_per_hour
                        );
                    }
                }
            }
        }
        Err(e) => assert!(e.to_string().contains("line"), "no line in: {e}"),
    }
}
