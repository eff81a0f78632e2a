//! Reading a pod spec: typed fields with their paths in errors.
use serde_json::Value;

/// A path in the pod spec, for errors.
pub(super) fn at(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

pub(super) fn object<'a>(v: &'a Value, path: &str) -> &'a serde_json::Map<String, Value> {
    v.as_object()
        .unwrap_or_else(|| panic!("{path} is not an object: {v}"))
}

pub(super) fn untranslatable(path: &str, v: &Value) -> ! {
    panic!(
        "{path} = {v}: no translation to the local runtime; run it in tests/it/common/kubelet/ or list it in CLUSTER_ONLY with why"
    )
}

pub(super) fn string(v: &Value, path: &str) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("{path} is not a string: {v}"))
        .to_owned()
}

pub(super) fn uint(v: &Value, path: &str) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{path} is not a whole number: {v}"))
}

/// A Kubernetes quantity in bytes (`64Mi`, `1Gi`, `256M`, `1000`).
pub(super) fn bytes(q: &str) -> u64 {
    let units: &[(&str, u64)] = &[
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("k", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ];
    for (suffix, mult) in units {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<u64>().unwrap_or_else(|_| panic!("quantity {q}")) * mult;
        }
    }
    q.parse().unwrap_or_else(|_| panic!("quantity {q}"))
}

/// A CPU quantity in millicores (`20m`, `1`, `0.5`).
pub(super) fn millicores(q: &str) -> u64 {
    match q.strip_suffix('m') {
        Some(m) => m.parse().unwrap_or_else(|_| panic!("cpu {q}")),
        None => (q.parse::<f64>().unwrap_or_else(|_| panic!("cpu {q}")) * 1000.0).round() as u64,
    }
}

pub(super) fn quantity(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("a quantity: {other}"),
    }
}
