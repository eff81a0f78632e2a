//! Node: V8's young generation.
//!
//! Most of a busy Node service's GC is scavenges of the young generation,
//! one each time a semi-space fills, so at a fixed allocation rate their
//! number, and their CPU, is ∝ 1/semi-space. V8 grows the semi-space up to
//! `--max-semi-space-size` (16 MiB by default on 64-bit Node 20); the
//! change quadruples it, to at most 128 MiB. The young generation holds
//! three semi-spaces' worth (from, to, and new large objects), which is the
//! RSS it adds. Old-space (mark-compact) collections do not change; the
//! calibration carries the share they keep.
use super::Change;
use crate::cost::calibration;
use crate::cost::recommend::{CurrentSettings, MIB, Observation, Setting, Target, mib};

/// V8's default maximum semi-space on 64-bit Node 20, in MiB.
pub(crate) const DEFAULT_MAX_SEMI_SPACE_MIB: u64 = 16;
const LARGEST_SEMI_SPACE_MIB: u64 = 128;

pub(in crate::cost) fn node(
    obs: &Observation,
    current: &CurrentSettings,
    _margin: f64,
) -> Option<Change> {
    let peak = obs.rss_peak_bytes as f64;
    let mut caveats = Vec::new();
    let (semi, assumed) = match current.node_max_semi_space_mib {
        Some(s) => (s.max(1), false),
        None => (DEFAULT_MAX_SEMI_SPACE_MIB, true),
    };
    if assumed {
        caveats.push(format!(
            "--max-semi-space-size could not be read: V8's default, {DEFAULT_MAX_SEMI_SPACE_MIB} MiB, was assumed"
        ));
    }
    let new = (semi * 4).min(LARGEST_SEMI_SPACE_MIB);
    if new <= semi {
        return None;
    }
    if let Some(old_space) = current.node_max_old_space_mib
        && peak >= 0.8 * old_space as f64 * MIB
    {
        caveats.push(format!(
            "RSS peaks at {} MiB, near --max-old-space-size={old_space}: mark-compacts may dominate; raise it as a separate, measured change",
            mib(peak)
        ));
    }
    let gc_cut = 1.0 - semi as f64 / new as f64;
    let extra = 3.0 * (new - semi) as f64 * MIB;
    Some(Change {
        target: Target::Node,
        change: format!("--max-semi-space-size={new}"),
        settings: vec![Setting {
            name: "--max-semi-space-size".into(),
            value: new.to_string(),
            was: current.node_max_semi_space_mib.map(|m| m.to_string()),
        }],
        law: format!(
            "scavenges ∝ 1/semi-space at a fixed allocation rate: {semi}→{new} MiB cuts them {:.0}% and adds up to {} MiB of young generation",
            gc_cut * 100.0,
            mib(extra)
        ),
        gc_cut,
        extra_rss_bytes: extra,
        projected_peak_bytes: peak + extra,
        calibration: calibration::NODE,
        assumed,
        caveats,
        memory_bytes: Vec::new(),
    })
}
