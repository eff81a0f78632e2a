//! CPU profiles in pprof's format: `perftools.profiles.Profile`
//! (github.com/google/pprof, `proto/profile.proto`), gzipped, as `go tool
//! pprof` and every pprof-reading tool expects.
//!
//! The messages are declared here with prost's derive, field by field as
//! profile.proto numbers them (only the fields Tally writes; the format is
//! stable and a reader ignores what is absent).
use std::{collections::HashMap, io::Write as _, path::Path, sync::Arc};

use flate2::{Compression, write::GzEncoder};
use prost::Message;

use super::ProcessProfile;

#[derive(Clone, PartialEq, Message)]
pub struct Profile {
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub mapping: Vec<Mapping>,
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    /// `string_table[0]` is always "".
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    pub period: i64,
    #[prost(int64, repeated, tag = "13")]
    pub comment: Vec<i64>,
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
}

#[derive(Clone, Copy, PartialEq, Message)]
pub struct ValueType {
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    /// Leaf first.
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

#[derive(Clone, Copy, PartialEq, Message)]
pub struct Label {
    #[prost(int64, tag = "1")]
    pub key: i64,
    #[prost(int64, tag = "2")]
    pub str: i64,
    #[prost(int64, tag = "3")]
    pub num: i64,
    #[prost(int64, tag = "4")]
    pub num_unit: i64,
}

#[derive(Clone, Copy, PartialEq, Message)]
pub struct Mapping {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub memory_start: u64,
    #[prost(uint64, tag = "3")]
    pub memory_limit: u64,
    #[prost(uint64, tag = "4")]
    pub file_offset: u64,
    #[prost(int64, tag = "5")]
    pub filename: i64,
    #[prost(int64, tag = "6")]
    pub build_id: i64,
    #[prost(bool, tag = "7")]
    pub has_functions: bool,
    #[prost(bool, tag = "8")]
    pub has_filenames: bool,
    #[prost(bool, tag = "9")]
    pub has_line_numbers: bool,
    #[prost(bool, tag = "10")]
    pub has_inline_frames: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct Location {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub mapping_id: u64,
    #[prost(uint64, tag = "3")]
    pub address: u64,
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
}

#[derive(Clone, Copy, PartialEq, Message)]
pub struct Line {
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    #[prost(int64, tag = "2")]
    pub line: i64,
}

#[derive(Clone, Copy, PartialEq, Message)]
pub struct Function {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(int64, tag = "2")]
    pub name: i64,
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    #[prost(int64, tag = "4")]
    pub filename: i64,
    #[prost(int64, tag = "5")]
    pub start_line: i64,
}

/// Builds the string table and the id tables.
#[derive(Default)]
struct Builder {
    strings: Vec<String>,
    string_ids: HashMap<String, i64>,
    functions: HashMap<Arc<str>, u64>,
    profile: Profile,
}

impl Builder {
    fn new() -> Self {
        let mut b = Self::default();
        b.string("");
        b
    }

    fn string(&mut self, s: &str) -> i64 {
        if let Some(&id) = self.string_ids.get(s) {
            return id;
        }
        let id = self.strings.len() as i64;
        self.strings.push(s.to_owned());
        self.string_ids.insert(s.to_owned(), id);
        id
    }

    /// One function and one location per frame name: Tally symbolizes to
    /// function names only (no lines, no addresses kept).
    fn location(&mut self, name: &Arc<str>) -> u64 {
        if let Some(&id) = self.functions.get(name) {
            return id;
        }
        let id = self.functions.len() as u64 + 1;
        let name_id = self.string(name);
        self.profile.function.push(Function {
            id,
            name: name_id,
            system_name: name_id,
            ..Default::default()
        });
        self.profile.location.push(Location {
            id,
            mapping_id: 1,
            address: 0,
            line: vec![Line {
                function_id: id,
                line: 0,
            }],
        });
        self.functions.insert(name.clone(), id);
        id
    }
}

/// A CPU profile of `processes`: values `samples/count` and
/// `cpu/nanoseconds` (samples times the period), labels `pid` and `comm`.
pub fn build(
    processes: &[ProcessProfile],
    sample_period_ns: u64,
    time_nanos: i64,
    duration_nanos: i64,
) -> Profile {
    let mut b = Builder::new();
    let samples = b.string("samples");
    let count = b.string("count");
    let cpu = b.string("cpu");
    let nanoseconds = b.string("nanoseconds");
    let pid_key = b.string("pid");
    let comm_key = b.string("comm");
    let mapping_name = b.string("[tally: symbolized by function name]");
    b.profile.mapping.push(Mapping {
        id: 1,
        filename: mapping_name,
        has_functions: true,
        ..Default::default()
    });
    let mut stacks: Vec<_> = Vec::new();
    for p in processes {
        let comm = b.string(&p.comm);
        let mut lines: Vec<(&Vec<Arc<str>>, &u64)> = p.stacks.stacks.iter().collect();
        lines.sort();
        for (frames, n) in lines {
            // The leaf first.
            let location_id: Vec<u64> = frames.iter().rev().map(|f| b.location(f)).collect();
            stacks.push(Sample {
                location_id,
                value: vec![*n as i64, (*n * sample_period_ns) as i64],
                label: vec![
                    Label {
                        key: pid_key,
                        num: i64::from(p.pid),
                        ..Default::default()
                    },
                    Label {
                        key: comm_key,
                        str: comm,
                        ..Default::default()
                    },
                ],
            });
        }
    }
    let comment = b.string("CPU profile by Tally (eBPF cpu-clock samples, user stacks)");
    let mut profile = std::mem::take(&mut b.profile);
    profile.sample = stacks;
    profile.sample_type = vec![
        ValueType {
            r#type: samples,
            unit: count,
        },
        ValueType {
            r#type: cpu,
            unit: nanoseconds,
        },
    ];
    profile.period_type = Some(ValueType {
        r#type: cpu,
        unit: nanoseconds,
    });
    profile.period = sample_period_ns as i64;
    profile.time_nanos = time_nanos;
    profile.duration_nanos = duration_nanos;
    profile.comment = vec![comment];
    profile.default_sample_type = cpu;
    profile.string_table = std::mem::take(&mut b.strings);
    profile
}

/// Writes the profile gzipped, as pprof files are.
pub fn write_gz(profile: &Profile, path: &Path) -> std::io::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut gz = GzEncoder::new(std::io::BufWriter::new(file), Compression::default());
    gz.write_all(&profile.encode_to_vec())?;
    gz.finish()?.flush()
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;
    use tally_core::model::stacks::FoldedStacks;

    #[test]
    fn profile_round_trips_with_names_and_values() {
        let mut stacks = FoldedStacks::default();
        let f = |s: &str| Arc::<str>::from(s);
        stacks
            .stacks
            .insert(vec![f("main.main"), f("main.hot")], 90);
        stacks.stacks.insert(
            vec![f("runtime.gcBgMarkWorker"), f("runtime.scanobject")],
            10,
        );
        let p = build(
            &[ProcessProfile {
                pid: 7,
                comm: "app".into(),
                stacks,
            }],
            10_000_000,
            1,
            2,
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.pb.gz");
        write_gz(&p, &path).unwrap();
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
            .read_to_end(&mut raw)
            .unwrap();
        let back = Profile::decode(&raw[..]).unwrap();
        assert_eq!(back, p);
        assert_eq!(back.string_table[0], "");
        assert_eq!(back.sample.len(), 2);
        let hot = back
            .sample
            .iter()
            .find(|s| s.value[0] == 90)
            .expect("the hot stack");
        assert_eq!(hot.value[1], 900_000_000);
        // Leaf first: main.hot.
        let leaf = &back.function[(hot.location_id[0] - 1) as usize];
        assert_eq!(back.string_table[leaf.name as usize], "main.hot");
    }
}
