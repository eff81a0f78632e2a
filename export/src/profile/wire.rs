//! Folded stacks in reports (`ProcessWindow.stacks`, `frame_names`,
//! `gc_frames`): `agent run` with stack sampling on attaches each process's
//! stacks of the window to its process window; the collector reads them
//! back ([`stacks_of`]) to write CPU profiles (the collector's fleet profiles).
//!
//! Each window's frame names are listed once per process and the stacks
//! index them, so a deep stack costs a few bytes a frame on the wire.
use std::{collections::HashMap, sync::Arc};

use tally_proto::{self as pb, received::ProcessView};

use tally_core::model::stacks::FoldedStacks;

/// The frame that stands for samples over the per-process stack bound.
const TRUNCATED: &str = "[truncated]";

/// Puts each process's stacks into its window of `report`; stacks of a
/// process without a window in it are dropped (it has none only if it was
/// neither sampled nor seen, which a sampled process always is).
pub fn attach(report: &mut pb::NodeReport, mut stacks: HashMap<u32, FoldedStacks>) {
    for window in &mut report.processes {
        let Some(pid) = window.key.map(|k| k.pid) else {
            continue;
        };
        let Some(folded) = stacks.remove(&pid) else {
            continue;
        };
        let mut index: HashMap<Arc<str>, u32> = HashMap::new();
        let mut names: Vec<String> = Vec::new();
        let mut id = |name: &Arc<str>| {
            *index.entry(name.clone()).or_insert_with(|| {
                // Symbols come from binaries the agent does not trust.
                names.push(tally_core::encode::wire_text(name, 8192));
                (names.len() - 1) as u32
            })
        };
        let mut out: Vec<pb::FoldedStack> = folded
            .stacks
            .iter()
            .map(|(frames, samples)| pb::FoldedStack {
                frames: frames.iter().map(&mut id).collect(),
                samples: *samples,
            })
            .collect();
        if folded.truncated > 0 {
            out.push(pb::FoldedStack {
                frames: vec![id(&Arc::from(TRUNCATED))],
                samples: folded.truncated,
            });
        }
        let gc_frames = folded.gc_frames.iter().map(&mut id).collect();
        window.stacks = out;
        window.frame_names = names;
        window.gc_frames = gc_frames;
    }
}

/// A received process window's stacks; empty when it carries none. Frame
/// indexes out of range read as `[unknown]` (a malformed report loses
/// names, never the collector).
pub fn stacks_of(p: &ProcessView) -> FoldedStacks {
    let names: Vec<Arc<str>> = p
        .frame_names
        .iter()
        .map(|n| Arc::from(String::from_utf8_lossy(n).as_ref()))
        .collect();
    let unknown: Arc<str> = Arc::from(tally_core::model::stacks::UNKNOWN_FRAME);
    let name = |i: &u32| {
        names
            .get(*i as usize)
            .cloned()
            .unwrap_or_else(|| unknown.clone())
    };
    let mut folded = FoldedStacks::default();
    for s in &p.stacks {
        let frames: Vec<Arc<str>> = s.frames.iter().map(name).collect();
        *folded.stacks.entry(frames).or_default() += s.samples;
    }
    folded.gc_frames = p.gc_frames.iter().map(name).collect();
    folded
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use prost::Message as _;

    use super::*;

    #[test]
    fn stacks_travel_in_a_report_and_read_back_the_same() {
        let f = |s: &str| Arc::<str>::from(s);
        let mut folded = FoldedStacks::default();
        folded
            .stacks
            .insert(vec![f("runtime.main"), f("main.main"), f("main.burn")], 90);
        folded.stacks.insert(
            vec![f("runtime.gcBgMarkWorker"), f("runtime.scanobject")],
            10,
        );
        folded.gc_frames.insert(f("runtime.gcBgMarkWorker"));
        folded.gc_frames.insert(f("runtime.scanobject"));
        let mut report = pb::NodeReport {
            processes: vec![
                pb::ProcessWindow {
                    key: Some(pb::ProcessKey {
                        pid: 7,
                        start_ticks: 1,
                    }),
                    ..Default::default()
                },
                pb::ProcessWindow {
                    key: Some(pb::ProcessKey {
                        pid: 8,
                        start_ticks: 1,
                    }),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        attach(&mut report, HashMap::from([(7, folded.clone())]));
        assert_eq!(report.processes[0].frame_names.len(), 5, "each name once");
        assert!(report.processes[1].stacks.is_empty());
        let received =
            tally_proto::received::ReceivedReport::decode(Bytes::from(report.encode_to_vec()))
                .unwrap();
        let back = stacks_of(&received.view.processes[0]);
        assert_eq!(back.stacks, folded.stacks);
        assert_eq!(back.gc_frames, folded.gc_frames);
        assert_eq!(stacks_of(&received.view.processes[1]).samples(), 0);
    }
}
