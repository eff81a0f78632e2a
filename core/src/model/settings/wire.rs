//! [`RuntimeSettings`] on the wire (`tally.v1.RuntimeSettings`) and back.
use tally_proto as pb;

use super::{
    GoSettings, Gogc, JvmCollector, JvmHeap, JvmSettings, NodeSettings, RuntimeSettings, Setting,
    Source,
};

fn source_to(s: Source) -> i32 {
    (match s {
        Source::Default => pb::SettingSource::Default,
        Source::Env => pb::SettingSource::Env,
        Source::Flag => pb::SettingSource::Flag,
        Source::Hsperfdata => pb::SettingSource::Hsperfdata,
    }) as i32
}

fn source_from(s: i32) -> Option<Source> {
    match pb::SettingSource::try_from(s).ok()? {
        pb::SettingSource::Unspecified => None,
        pb::SettingSource::Default => Some(Source::Default),
        pb::SettingSource::Env => Some(Source::Env),
        pb::SettingSource::Flag => Some(Source::Flag),
        pb::SettingSource::Hsperfdata => Some(Source::Hsperfdata),
    }
}

/// `(value, source)` of an optional setting, zero and unspecified for none.
fn opt_to<T: Copy + Default>(s: Option<Setting<T>>) -> (T, i32) {
    s.map_or((T::default(), 0), |s| (s.value, source_to(s.source)))
}

fn opt_from<T>(value: T, source: i32) -> Option<Setting<T>> {
    source_from(source).map(|source| Setting::new(value, source))
}

fn collector_name(c: JvmCollector) -> &'static str {
    match c {
        JvmCollector::Serial => "Serial",
        JvmCollector::Parallel => "Parallel",
        JvmCollector::G1 => "G1",
        JvmCollector::Z => "Z",
        JvmCollector::Shenandoah => "Shenandoah",
    }
}

fn collector_from(name: &str) -> Option<JvmCollector> {
    [
        JvmCollector::Serial,
        JvmCollector::Parallel,
        JvmCollector::G1,
        JvmCollector::Z,
        JvmCollector::Shenandoah,
    ]
    .into_iter()
    .find(|c| collector_name(*c) == name)
}

impl RuntimeSettings {
    pub fn to_proto(&self) -> pb::RuntimeSettings {
        let mut out = pb::RuntimeSettings::default();
        match self {
            RuntimeSettings::Unknown { reason } => {
                out.unknown_reason = crate::encode::wire_text(reason, 512);
            }
            RuntimeSettings::Go(g) => {
                out.go = Some(pb::GoSettings {
                    gogc: match g.gogc.value {
                        Gogc::Percent(p) => i32::try_from(p).unwrap_or(i32::MAX),
                        Gogc::Off => -1,
                    },
                    gogc_source: source_to(g.gogc.source),
                    gomemlimit_bytes: g.gomemlimit_bytes.value.unwrap_or(0),
                    gomemlimit_source: source_to(g.gomemlimit_bytes.source),
                    gomaxprocs: g.gomaxprocs.value.unwrap_or(0),
                    gomaxprocs_source: source_to(g.gomaxprocs.source),
                    caveats: g
                        .caveats
                        .iter()
                        .map(|c| crate::encode::wire_text(c, 256))
                        .collect(),
                });
            }
            RuntimeSettings::Jvm(j) => {
                let (max_heap_bytes, max_heap_source) = opt_to(j.max_heap_bytes);
                let (initial_heap_bytes, initial_heap_source) = opt_to(j.initial_heap_bytes);
                let (max_ram_percentage, max_ram_percentage_source) = opt_to(j.max_ram_percentage);
                let (initial_ram_percentage, initial_ram_percentage_source) =
                    opt_to(j.initial_ram_percentage);
                let (use_container_support, use_container_support_source) =
                    opt_to(j.use_container_support);
                out.jvm = Some(pb::JvmSettings {
                    max_heap_bytes,
                    max_heap_source,
                    initial_heap_bytes,
                    initial_heap_source,
                    collector: j
                        .collector
                        .map_or_else(String::new, |c| collector_name(c.value).to_owned()),
                    collector_source: j.collector.map_or(0, |c| source_to(c.source)),
                    max_ram_percentage,
                    max_ram_percentage_source,
                    initial_ram_percentage,
                    initial_ram_percentage_source,
                    use_container_support,
                    use_container_support_source,
                    heap_capacity_bytes: j.heap.map_or(0, |h| h.capacity_bytes),
                    heap_max_capacity_bytes: j.heap.map_or(0, |h| h.max_capacity_bytes),
                    hsperfdata_unread: j
                        .hsperfdata_unread
                        .as_deref()
                        .map(|w| crate::encode::wire_text(w, 256))
                        .unwrap_or_default(),
                });
            }
            RuntimeSettings::Node(n) => {
                let (max_old_space_mib, max_old_space_source) = opt_to(n.max_old_space_mib);
                let (max_semi_space_mib, max_semi_space_source) = opt_to(n.max_semi_space_mib);
                out.node = Some(pb::NodeSettings {
                    max_old_space_mib,
                    max_old_space_source,
                    max_semi_space_mib,
                    max_semi_space_source,
                });
            }
        }
        out
    }

    /// `None` for an empty message (no settings sent).
    pub fn from_proto(p: &pb::RuntimeSettings) -> Option<RuntimeSettings> {
        if !p.unknown_reason.is_empty() {
            return Some(RuntimeSettings::unknown(p.unknown_reason.clone()));
        }
        if let Some(g) = &p.go {
            let default = |s: i32| source_from(s).unwrap_or(Source::Default);
            return Some(RuntimeSettings::Go(GoSettings {
                gogc: Setting::new(
                    if g.gogc < 0 {
                        Gogc::Off
                    } else {
                        Gogc::Percent(g.gogc as u32)
                    },
                    default(g.gogc_source),
                ),
                gomemlimit_bytes: Setting::new(
                    (g.gomemlimit_bytes > 0).then_some(g.gomemlimit_bytes),
                    default(g.gomemlimit_source),
                ),
                gomaxprocs: Setting::new(
                    (g.gomaxprocs > 0).then_some(g.gomaxprocs),
                    default(g.gomaxprocs_source),
                ),
                caveats: g.caveats.clone(),
            }));
        }
        if let Some(j) = &p.jvm {
            return Some(RuntimeSettings::Jvm(JvmSettings {
                max_heap_bytes: opt_from(j.max_heap_bytes, j.max_heap_source),
                initial_heap_bytes: opt_from(j.initial_heap_bytes, j.initial_heap_source),
                collector: collector_from(&j.collector)
                    .and_then(|c| opt_from(c, j.collector_source)),
                max_ram_percentage: opt_from(j.max_ram_percentage, j.max_ram_percentage_source),
                initial_ram_percentage: opt_from(
                    j.initial_ram_percentage,
                    j.initial_ram_percentage_source,
                ),
                use_container_support: opt_from(
                    j.use_container_support,
                    j.use_container_support_source,
                ),
                heap: (j.heap_max_capacity_bytes > 0).then_some(JvmHeap {
                    capacity_bytes: j.heap_capacity_bytes,
                    max_capacity_bytes: j.heap_max_capacity_bytes,
                }),
                hsperfdata_unread: (!j.hsperfdata_unread.is_empty())
                    .then(|| j.hsperfdata_unread.clone()),
            }));
        }
        if let Some(n) = &p.node {
            return Some(RuntimeSettings::Node(NodeSettings {
                max_old_space_mib: opt_from(n.max_old_space_mib, n.max_old_space_source),
                max_semi_space_mib: opt_from(n.max_semi_space_mib, n.max_semi_space_source),
            }));
        }
        None
    }
}
