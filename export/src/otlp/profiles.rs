//! CPU profiles as OTLP profiles (`opentelemetry.proto.profiles.
//! v1development`, OTLP v1.10.0, as the `opentelemetry-proto` crate 0.33
//! generates it): the sampled user stacks of a window, one `Profile` per
//! process, each in a resource with the process's and its container's
//! semantic-convention attributes (as the metrics have, [`crate::attrs`]).
//!
//! - The request shares one `ProfilesDictionary`: every table starts with
//!   its zero value, as v1.10 requires, and holds each string, function,
//!   location, stack and attribute once.
//! - Tally symbolizes to function names only, so a location is a function
//!   (address 0, no mapping), as in the pprof files ([`crate::profile::
//!   pprof`]).
//! - Sample type `samples`/`count`, period type `cpu`/`nanoseconds`
//!   (the sampling period), as the OpenTelemetry eBPF profiler sends.
//! - Frames carry `profile.frame.type` (semconv): `go` in a Go process's
//!   symbolized frames, `native` in others'. An unsymbolized frame
//!   (`[unknown]`: JIT-compiled Java or JavaScript, or a stripped binary)
//!   has none, since nothing says what it is; nor has any frame of a
//!   process whose runtime is not known yet (a process seconds old, still
//!   being read), which may well be Go.
//! - GC code is marked, for a backend to filter on: a GC frame's location
//!   has `tally.frame.gc = true`, and a sample with a GC frame in its stack
//!   has `tally.sample.gc = true` (no convention names either).
//! - Samples over the per-process stack bound are one `[truncated]` frame,
//!   as on the wire, so that the totals are the samples taken.
use std::{collections::HashMap, sync::Arc, time::Duration, time::SystemTime};

use opentelemetry_proto::tonic::{
    collector::profiles::v1development::ExportProfilesServiceRequest,
    common::v1::{AnyValue, InstrumentationScope, any_value},
    profiles::v1development::{
        Function, KeyValueAndUnit, Line, Link, Location, Mapping, Profile, ProfilesDictionary,
        ResourceProfiles, Sample, ScopeProfiles, Stack, ValueType,
    },
    resource::v1::Resource,
};

use tally_core::{
    gc::Runtime,
    model::stacks::{FoldedStacks, UNKNOWN_FRAME},
};

use super::request::{entity_attributes, node_attributes, unix_nanos};
use crate::{
    attrs::{EntityAttrs, NodeAttrs},
    metrics::SelfPoint,
};

/// The frame standing for samples past the per-process stack bound.
pub const TRUNCATED_FRAME: &str = "[truncated]";

/// One process's stacks of a window, with its attributes.
#[derive(Debug, Clone)]
pub struct ProcessStacks {
    pub attrs: EntityAttrs,
    pub stacks: FoldedStacks,
}

/// The stacks of one window (or one collector interval), to export.
#[derive(Debug, Clone)]
pub struct ProfileBatch {
    pub node: NodeAttrs,
    pub processes: Vec<ProcessStacks>,
    /// The start of the window the stacks were sampled in.
    pub start: SystemTime,
    pub duration: Duration,
    /// Nanoseconds of CPU between two samples (1e9 / sampling Hz).
    pub period_ns: u64,
}

impl ProfileBatch {
    /// True if no process has a sample.
    pub fn is_empty(&self) -> bool {
        self.processes.iter().all(|p| p.stacks.samples() == 0)
    }
}

impl super::Exportable for ProfileBatch {
    fn request(&self, _extra: &[SelfPoint]) -> super::OtlpRequest {
        super::OtlpRequest::Profiles(request(self))
    }
}

/// The dictionary as it is built: each table with its zero value first,
/// and an index of what is already in it.
struct Dictionary {
    d: ProfilesDictionary,
    strings: HashMap<String, i32>,
    functions: HashMap<Arc<str>, i32>,
    /// By frame name and kind: the location of the frame.
    locations: HashMap<(Arc<str>, FrameKind), i32>,
    stacks: HashMap<Vec<i32>, i32>,
    attributes: HashMap<(&'static str, AttrValue), i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum AttrValue {
    Str(String),
    Bool(bool),
}

/// What a frame is, as its location's attributes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FrameKind {
    /// `profile.frame.type`, when known.
    frame_type: Option<&'static str>,
    gc: bool,
}

impl Dictionary {
    fn new() -> Self {
        let mut d = Self {
            d: ProfilesDictionary {
                mapping_table: vec![Mapping::default()],
                location_table: vec![Location::default()],
                function_table: vec![Function::default()],
                link_table: vec![Link::default()],
                string_table: Vec::new(),
                attribute_table: vec![KeyValueAndUnit::default()],
                stack_table: vec![Stack::default()],
            },
            strings: HashMap::new(),
            functions: HashMap::new(),
            locations: HashMap::new(),
            stacks: HashMap::new(),
            attributes: HashMap::new(),
        };
        d.string("");
        d
    }

    fn string(&mut self, s: &str) -> i32 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.d.string_table.len() as i32;
        self.d.string_table.push(s.to_owned());
        self.strings.insert(s.to_owned(), i);
        i
    }

    fn attribute(&mut self, key: &'static str, value: AttrValue) -> i32 {
        if let Some(&i) = self.attributes.get(&(key, value.clone())) {
            return i;
        }
        let key_strindex = self.string(key);
        let v = match &value {
            AttrValue::Str(s) => any_value::Value::StringValue(s.clone()),
            AttrValue::Bool(b) => any_value::Value::BoolValue(*b),
        };
        let i = self.d.attribute_table.len() as i32;
        self.d.attribute_table.push(KeyValueAndUnit {
            key_strindex,
            value: Some(AnyValue { value: Some(v) }),
            unit_strindex: 0,
        });
        self.attributes.insert((key, value), i);
        i
    }

    /// The location of a frame: one function, one line, no address.
    fn location(&mut self, name: &Arc<str>, kind: FrameKind) -> i32 {
        if let Some(&i) = self.locations.get(&(name.clone(), kind)) {
            return i;
        }
        let function_index = self.function(name);
        let mut attribute_indices = Vec::new();
        if let Some(t) = kind.frame_type {
            attribute_indices.push(self.attribute("profile.frame.type", AttrValue::Str(t.into())));
        }
        if kind.gc {
            attribute_indices.push(self.attribute("tally.frame.gc", AttrValue::Bool(true)));
        }
        let i = self.d.location_table.len() as i32;
        self.d.location_table.push(Location {
            mapping_index: 0,
            address: 0,
            lines: vec![Line {
                function_index,
                line: 0,
                column: 0,
            }],
            attribute_indices,
        });
        self.locations.insert((name.clone(), kind), i);
        i
    }

    fn function(&mut self, name: &Arc<str>) -> i32 {
        if let Some(&i) = self.functions.get(name) {
            return i;
        }
        let name_strindex = self.string(name);
        let i = self.d.function_table.len() as i32;
        self.d.function_table.push(Function {
            name_strindex,
            system_name_strindex: name_strindex,
            ..Default::default()
        });
        self.functions.insert(name.clone(), i);
        i
    }

    fn stack(&mut self, leaf_first: Vec<i32>) -> i32 {
        if let Some(&i) = self.stacks.get(&leaf_first) {
            return i;
        }
        let i = self.d.stack_table.len() as i32;
        self.d.stack_table.push(Stack {
            location_indices: leaf_first.clone(),
        });
        self.stacks.insert(leaf_first, i);
        i
    }
}

/// `profile.frame.type` of a symbolized frame of a process of `runtime`.
fn frame_type(runtime: Runtime, name: &str) -> Option<&'static str> {
    if name == UNKNOWN_FRAME || name == TRUNCATED_FRAME {
        return None;
    }
    match runtime {
        Runtime::Go => Some("go"),
        Runtime::Unknown => None,
        _ => Some("native"),
    }
}

/// The export request of a batch: one resource per process with samples.
pub fn request(batch: &ProfileBatch) -> ExportProfilesServiceRequest {
    let mut dict = Dictionary::new();
    let node = node_attributes(&batch.node);
    let time_unix_nano = unix_nanos(batch.start);
    let duration_nano = u64::try_from(batch.duration.as_nanos()).unwrap_or(u64::MAX);
    let sample_type = ValueType {
        type_strindex: dict.string("samples"),
        unit_strindex: dict.string("count"),
    };
    let period_type = ValueType {
        type_strindex: dict.string("cpu"),
        unit_strindex: dict.string("nanoseconds"),
    };
    let gc_sample = dict.attribute("tally.sample.gc", AttrValue::Bool(true));
    let mut resource_profiles = Vec::with_capacity(batch.processes.len());
    for p in &batch.processes {
        if p.stacks.samples() == 0 {
            continue;
        }
        let samples = samples(&mut dict, &p.stacks, gc_sample);
        let mut attributes = node.clone();
        attributes.extend(entity_attributes(&p.attrs));
        resource_profiles.push(ResourceProfiles {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            scope_profiles: vec![ScopeProfiles {
                scope: Some(scope()),
                profiles: vec![Profile {
                    sample_type: Some(sample_type),
                    samples,
                    time_unix_nano,
                    duration_nano,
                    period_type: Some(period_type),
                    period: i64::try_from(batch.period_ns).unwrap_or(i64::MAX),
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        });
    }
    ExportProfilesServiceRequest {
        resource_profiles,
        dictionary: Some(dict.d),
    }
}

/// A process's samples: one per distinct stack, with its count; sorted by
/// stack, so that a request is the same for the same stacks.
fn samples(dict: &mut Dictionary, stacks: &FoldedStacks, gc_sample: i32) -> Vec<Sample> {
    let mut lines: Vec<(&Vec<Arc<str>>, &u64)> = stacks.stacks.iter().collect();
    lines.sort();
    let mut out = Vec::with_capacity(lines.len() + 1);
    for (frames, n) in lines {
        let mut gc = false;
        let leaf_first: Vec<i32> = frames
            .iter()
            .rev()
            .map(|f| {
                let kind = FrameKind {
                    frame_type: frame_type(stacks.runtime, f),
                    gc: stacks.gc_frames.contains(f),
                };
                gc |= kind.gc;
                dict.location(f, kind)
            })
            .collect();
        out.push(Sample {
            stack_index: dict.stack(leaf_first),
            attribute_indices: if gc { vec![gc_sample] } else { Vec::new() },
            values: vec![i64::try_from(*n).unwrap_or(i64::MAX)],
            ..Default::default()
        });
    }
    if stacks.truncated > 0 {
        let kind = FrameKind {
            frame_type: None,
            gc: false,
        };
        let location = dict.location(&Arc::from(TRUNCATED_FRAME), kind);
        out.push(Sample {
            stack_index: dict.stack(vec![location]),
            values: vec![i64::try_from(stacks.truncated).unwrap_or(i64::MAX)],
            ..Default::default()
        });
    }
    out
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "tally".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// The attribute `key` of a resource, as text.
    fn resource_attr(resource: &Resource, key: &str) -> Option<String> {
        resource
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            .map(|v| match v {
                any_value::Value::StringValue(s) => s.clone(),
                any_value::Value::IntValue(i) => i.to_string(),
                other => format!("{other:?}"),
            })
    }

    fn f(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    fn go_stacks() -> FoldedStacks {
        let mut s = FoldedStacks {
            runtime: Runtime::Go,
            ..Default::default()
        };
        s.stacks.insert(vec![f("main.main"), f("main.hot")], 90);
        s.stacks.insert(
            vec![f("runtime.gcBgMarkWorker"), f("runtime.scanobject")],
            10,
        );
        s.stacks.insert(vec![f("main.main"), f(UNKNOWN_FRAME)], 3);
        s.gc_frames = HashSet::from([f("runtime.gcBgMarkWorker"), f("runtime.scanobject")]);
        s.truncated = 2;
        s
    }

    fn batch() -> ProfileBatch {
        ProfileBatch {
            node: NodeAttrs {
                host_name: "node-1".into(),
                ..Default::default()
            },
            processes: vec![
                ProcessStacks {
                    attrs: EntityAttrs {
                        pid: 42,
                        executable: "app".into(),
                        container_id: Some("ab".repeat(32)),
                        ..Default::default()
                    },
                    stacks: go_stacks(),
                },
                ProcessStacks {
                    attrs: EntityAttrs {
                        pid: 43,
                        executable: "idle".into(),
                        ..Default::default()
                    },
                    stacks: FoldedStacks::default(),
                },
            ],
            start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000),
            duration: Duration::from_secs(10),
            period_ns: 10_101_010,
        }
    }

    /// Frames (root first) and count of each sample, read back through the
    /// dictionary as a receiver would.
    fn decoded(r: &ExportProfilesServiceRequest) -> Vec<(Vec<String>, i64, bool)> {
        let d = r.dictionary.as_ref().unwrap();
        let p = &r.resource_profiles[0].scope_profiles[0].profiles[0];
        let mut out: Vec<(Vec<String>, i64, bool)> = p
            .samples
            .iter()
            .map(|s| {
                let stack = &d.stack_table[s.stack_index as usize];
                let frames = stack
                    .location_indices
                    .iter()
                    .rev()
                    .map(|&l| {
                        let loc = &d.location_table[l as usize];
                        let func = &d.function_table[loc.lines[0].function_index as usize];
                        d.string_table[func.name_strindex as usize].clone()
                    })
                    .collect();
                (frames, s.values[0], !s.attribute_indices.is_empty())
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_process_of_no_known_runtime_has_no_frame_type() {
        assert_eq!(frame_type(Runtime::Go, "main.hot"), Some("go"));
        assert_eq!(frame_type(Runtime::Native, "spin_a"), Some("native"));
        assert_eq!(frame_type(Runtime::Unknown, "main.hot"), None);
        assert_eq!(frame_type(Runtime::Go, UNKNOWN_FRAME), None);
    }

    #[test]
    fn a_batch_round_trips_with_its_stacks_counts_and_attributes() {
        use prost::Message as _;
        let r = request(&batch());
        let r = ExportProfilesServiceRequest::decode(&r.encode_to_vec()[..]).unwrap();
        // The idle process has no samples, so no profile.
        assert_eq!(r.resource_profiles.len(), 1);
        let resource = r.resource_profiles[0].resource.as_ref().unwrap();
        assert_eq!(
            resource_attr(resource, "process.pid").as_deref(),
            Some("42")
        );
        assert_eq!(
            resource_attr(resource, "host.name").as_deref(),
            Some("node-1")
        );
        assert_eq!(
            resource_attr(resource, "container.id"),
            Some("ab".repeat(32))
        );
        let d = r.dictionary.as_ref().unwrap();
        // Zero values first, as v1.10 requires.
        assert_eq!(d.string_table[0], "");
        assert_eq!(d.location_table[0], Location::default());
        assert_eq!(d.function_table[0], Function::default());
        assert_eq!(d.stack_table[0], Stack::default());
        assert_eq!(d.attribute_table[0], KeyValueAndUnit::default());
        assert_eq!(d.mapping_table[0], Mapping::default());
        let p = &r.resource_profiles[0].scope_profiles[0].profiles[0];
        let st = p.sample_type.unwrap();
        assert_eq!(d.string_table[st.type_strindex as usize], "samples");
        assert_eq!(d.string_table[st.unit_strindex as usize], "count");
        assert_eq!(p.period, 10_101_010);
        assert_eq!(p.time_unix_nano, 1_000_000_000_000);
        assert_eq!(p.duration_nano, 10_000_000_000);
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            decoded(&r),
            vec![
                (s(&["[truncated]"]), 2, false),
                (s(&["main.main", "[unknown]"]), 3, false),
                (s(&["main.main", "main.hot"]), 90, false),
                (
                    s(&["runtime.gcBgMarkWorker", "runtime.scanobject"]),
                    10,
                    true
                ),
            ]
        );
    }

    #[test]
    fn frames_carry_their_type_and_gc_mark() {
        let r = request(&batch());
        let d = r.dictionary.as_ref().unwrap();
        let attrs_of = |name: &str| -> Vec<(String, String)> {
            let func = d
                .function_table
                .iter()
                .position(|f| d.string_table[f.name_strindex as usize] == name)
                .unwrap() as i32;
            let loc = d
                .location_table
                .iter()
                .find(|l| l.lines.first().is_some_and(|x| x.function_index == func))
                .unwrap();
            let mut out: Vec<(String, String)> = loc
                .attribute_indices
                .iter()
                .map(|&i| {
                    let a = &d.attribute_table[i as usize];
                    let v = match a.value.as_ref().unwrap().value.as_ref().unwrap() {
                        any_value::Value::StringValue(s) => s.clone(),
                        any_value::Value::BoolValue(b) => b.to_string(),
                        other => panic!("{other:?}"),
                    };
                    (d.string_table[a.key_strindex as usize].clone(), v)
                })
                .collect();
            out.sort();
            out
        };
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(attrs_of("main.hot"), vec![pair("profile.frame.type", "go")]);
        assert_eq!(
            attrs_of("runtime.scanobject"),
            vec![
                pair("profile.frame.type", "go"),
                pair("tally.frame.gc", "true")
            ]
        );
        assert_eq!(attrs_of(UNKNOWN_FRAME), Vec::new());
        // Each string, function and attribute once.
        let names: HashSet<&String> = d.string_table.iter().collect();
        assert_eq!(names.len(), d.string_table.len());
        let attrs: HashSet<String> = d.attribute_table.iter().map(|a| format!("{a:?}")).collect();
        assert_eq!(attrs.len(), d.attribute_table.len());
    }
}
