//! Flame graphs (SVG) of CPU profiles, drawn by inferno from folded stacks.
//! Frames are in inferno's "hot" palette (reds and yellows), except GC
//! frames (`gc::symbols::is_gc_symbol` for the process's runtime), which
//! are drawn in [`GC_COLOR`], blue, and carry `class="gc"`.
use std::io::Write;

use inferno::flamegraph::{
    self, FuncFrameAttrsMap, Options, Palette,
    color::{BasicPalette, Color, PaletteMap},
};

use super::ProcessProfile;

/// The colour of GC frames: never in the hot palette.
pub const GC_COLOR: Color = Color {
    r: 48,
    g: 128,
    b: 255,
};

/// `GC_COLOR` as the SVG spells it.
pub fn gc_fill() -> String {
    format!("rgb({},{},{})", GC_COLOR.r, GC_COLOR.g, GC_COLOR.b)
}

/// The folded lines of several processes: with more than one, each stack
/// starts with a `comm (pid)` frame, so each process is a tower of its own.
pub fn folded(processes: &[ProcessProfile]) -> Vec<String> {
    let prefix = processes.len() > 1;
    let mut lines = Vec::new();
    for p in processes {
        for line in p.stacks.folded_lines() {
            if prefix {
                lines.push(format!("{} ({});{line}", p.comm, p.pid));
            } else {
                lines.push(line);
            }
        }
    }
    lines
}

/// Draws the flame graph of `processes` into `out`.
pub fn write(
    processes: &[ProcessProfile],
    title: &str,
    subtitle: &str,
    out: impl Write,
) -> std::io::Result<()> {
    let lines = folded(processes);
    let mut palette = PaletteMap::default();
    let mut attrs = String::new();
    for p in processes {
        for name in &p.stacks.gc_frames {
            palette.insert(&**name, GC_COLOR);
            // One line per function: name, tab, attributes.
            attrs.push_str(&format!("{name}\tclass=gc\n"));
        }
    }
    let mut opts = Options::default();
    opts.title = title.to_owned();
    opts.subtitle = Some(subtitle.to_owned());
    opts.colors = Palette::Basic(BasicPalette::Hot);
    // Colours from the name, so that one function has one colour.
    opts.hash = true;
    opts.count_name = "samples".into();
    opts.palette_map = Some(&mut palette);
    opts.func_frameattrs = FuncFrameAttrsMap::from_reader(attrs.as_bytes())?;
    if lines.is_empty() {
        // inferno refuses an empty profile; say so in a picture instead.
        return empty(title, out);
    }
    flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), out)
}

fn empty(title: &str, mut out: impl Write) -> std::io::Result<()> {
    let title = title
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    write!(
        out,
        r#"<?xml version="1.0" standalone="no"?>
<svg version="1.1" width="1200" height="60" xmlns="http://www.w3.org/2000/svg">
<text x="600" y="24" text-anchor="middle" font-family="Verdana" font-size="17">{title}</text>
<text x="600" y="48" text-anchor="middle" font-family="Verdana" font-size="12">no samples with a user stack</text>
</svg>
"#
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use tally_core::model::stacks::FoldedStacks;

    #[test]
    fn gc_frames_are_blue_and_named() {
        let f = |s: &str| Arc::<str>::from(s);
        let mut stacks = FoldedStacks::default();
        stacks
            .stacks
            .insert(vec![f("main.main"), f("main.hot")], 90);
        stacks.stacks.insert(
            vec![f("runtime.gcBgMarkWorker"), f("runtime.scanobject")],
            30,
        );
        stacks.gc_frames.insert(f("runtime.gcBgMarkWorker"));
        stacks.gc_frames.insert(f("runtime.scanobject"));
        let p = ProcessProfile {
            pid: 1,
            comm: "app".into(),
            stacks,
        };
        let mut svg = Vec::new();
        write(&[p], "t", "s", &mut svg).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(svg.contains("main.hot"));
        assert!(svg.contains("runtime.scanobject"));
        assert!(svg.contains(&gc_fill()), "GC colour present");
        assert!(svg.contains("class=\"gc\""));
    }
}
