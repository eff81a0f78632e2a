//! What frames show, through ratatui's test backend: the table at 80×24 and
//! at 300 columns, the detail view, the help, remote rows, hostile and
//! non-UTF-8 names, thousands of rows, and `NO_COLOR`.
use ratatui::{Terminal, backend::TestBackend, buffer::Buffer, style::Color};

use super::*;
use crate::{
    app::{Action, Settings},
    fixtures::recorded_app,
    history::METRICS,
    rows::local_rows,
    synthetic::Synthetic,
};
use tally_core::model::Tick;
use tally_core::testing::test_window;

/// Draws one frame of `app` at `width`×`height`.
fn frame(app: &mut App, width: u16, height: u16) -> Buffer {
    let mut t = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    t.draw(|f| draw(f, app)).expect("a frame");
    t.backend().buffer().clone()
}

fn lines(buf: &Buffer) -> Vec<String> {
    let a = buf.area;
    (a.y..a.y + a.height)
        .map(|y| (a.x..a.x + a.width).map(|x| buf[(x, y)].symbol()).collect())
        .collect()
}

fn text(buf: &Buffer) -> String {
    lines(buf).join("\n")
}

fn local_app() -> App {
    App::new(Settings {
        source: SourceKind::Local,
        label: "test".into(),
        interval: std::time::Duration::from_secs(1),
        color: false,
        node: None,
    })
}

fn type_filter(app: &mut App, filter: &str) {
    app.apply_action(Action::StartFilter);
    for c in filter.chars() {
        app.apply_action(Action::FilterChar(c));
    }
    app.apply_action(Action::FilterAccept);
}

/// Index of the table header line, and where the column titled `title`
/// ends (in cells; after its sort arrow, if it has one).
fn column_end(lines: &[String], title: &str) -> (usize, usize) {
    let at = lines
        .iter()
        .position(|l| l.contains("NAME") && l.contains(title))
        .expect("a table header");
    let h = &lines[at];
    let mut end = h[..h.find(title).expect("the title") + title.len()]
        .chars()
        .count();
    if h.chars().nth(end).is_some_and(|c| c == '▼' || c == '▲') {
        end += 1;
    }
    (at, end)
}

/// The cell of every data row ending at character `end`, `width` wide.
fn cells(lines: &[String], header: usize, end: usize, width: usize) -> Vec<String> {
    lines[header + 1..lines.len() - 1]
        .iter()
        .map(|l| {
            let chars: Vec<char> = l.chars().collect();
            chars[end.saturating_sub(width)..end.min(chars.len())]
                .iter()
                .collect::<String>()
                .trim()
                .to_owned()
        })
        .filter(|c| !c.is_empty())
        .collect()
}

#[test]
fn the_table_at_80x24() {
    let mut app = recorded_app(SourceKind::Local);
    let buf = frame(&mut app, 80, 24);
    let l = lines(&buf);
    assert!(
        l[0].contains("tally top") && l[0].contains("recorded"),
        "{}",
        l[0]
    );
    for part in ["node CPU", "faults", "alloc", "gc-heavy", "agent"] {
        assert!(l[1].contains(part), "header lacks {part}: {}", l[1]);
    }
    for title in ["PID", "NAME", "CPU%▼", "GC%", "VERDICT", "RSS"] {
        assert!(
            l[2].contains(title),
            "{title} missing at 80 columns: {}",
            l[2]
        );
    }
    assert!(
        !l[2].contains("MUNMAP/s"),
        "too wide for 80 columns: {}",
        l[2]
    );
    assert!(l[23].contains("cols (wider terminal)"), "{}", l[23]);
    // 20 rows fill the screen, busiest first, numbers right-aligned in
    // their column.
    let (header, end) = column_end(&l, "CPU%");
    let cpu: Vec<f64> = cells(&l, header, end, 6)
        .iter()
        .map(|c| c.parse().expect("a CPU% number"))
        .collect();
    assert_eq!(cpu.len(), 20, "{}", text(&buf));
    assert!(cpu.windows(2).all(|w| w[0] >= w[1]), "{cpu:?}");
}

#[test]
fn the_table_at_300_columns_shows_every_column() {
    let mut app = recorded_app(SourceKind::Local);
    let buf = frame(&mut app, 300, 50);
    let l = lines(&buf);
    for title in [
        "PID",
        "NAME",
        "RUNTIME",
        "CPU%",
        "GC%",
        "VERDICT",
        "ALLOC MB/s",
        "MMAP/s",
        "MUNMAP/s",
        "MADV/s",
        "BRK/s",
        "MINFLT/s",
        "MAJFLT/s",
        "RSS",
        "CONTAINER",
    ] {
        assert!(
            l[2].contains(title),
            "{title} missing at 300 columns: {}",
            l[2]
        );
    }
    assert!(!text(&buf).contains("cols (wider terminal)"));
    let go = l
        .iter()
        .find(|r| r.contains("allocheavy"))
        .expect("the Go row");
    assert!(
        go.contains("gc-heavy") && go.contains("go") && go.contains("9f86d081884c"),
        "{go}"
    );
}

#[test]
fn the_detail_view_at_80x24_and_wide() {
    for (w, h) in [(80, 24), (300, 60)] {
        let mut app = recorded_app(SourceKind::Local);
        type_filter(&mut app, "allocheavy");
        app.apply_action(Action::Enter);
        let buf = frame(&mut app, w, h);
        let t = text(&buf);
        for part in [
            "allocheavy",
            "pid 18466",
            "container 9f86d081884c",
            "verdict",
            "GC-HEAVY",
            "confidence",
            "GC share",
            "page faults",
            "allocation",
            "THREADS",
            "TOP SYMBOLS",
            "stacks off",
        ] {
            assert!(t.contains(part), "{part} missing at {w}x{h}:\n{t}");
        }
        // Every chart of the five has its title where there is room.
        if h >= 60 {
            let charts = lines(&buf)
                .iter()
                .filter(|l| METRICS.iter().any(|m| l.trim_start().starts_with(m)))
                .count();
            assert!(charts >= 5, "{t}");
        }
    }
}

#[test]
fn the_help_lists_every_key() {
    let mut app = local_app();
    app.apply_action(Action::Help);
    let t = text(&frame(&mut app, 300, 80));
    for (keys, what) in crate::input::KEYS {
        assert!(t.contains(keys) && t.contains(what), "{keys} missing:\n{t}");
    }
    // At 80×24 it scrolls to its end.
    for _ in 0..10 {
        app.apply_action(Action::HelpScroll(10));
    }
    let t = text(&frame(&mut app, 80, 24));
    assert!(t.contains("Verdicts: gc-heavy"), "{t}");
}

/// Windows of processes with the given names.
fn tick_of(names: &[String]) -> Tick {
    Tick {
        at: std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000),
        seconds: 2.0,
        windows: names
            .iter()
            .enumerate()
            .map(|(i, n)| test_window(100 + i as u32, n, "/system.slice/x.service"))
            .collect(),
        new_drops: Default::default(),
        swept_records: 0,
        sample_period_ns: 10_101_010,
    }
}

#[test]
fn hostile_long_and_non_utf8_names_keep_the_layout() {
    let names = vec![
        String::from_utf8_lossy(b"spin\xff\xfeloop").into_owned(),
        "evil\u{1b}[2J\u{1b}[31mred\u{7}".to_owned(),
        "rtl\u{202E}gnp.exe".to_owned(),
        "x".repeat(300),
        "名前のとても長いプロセス名前のとても長い".to_owned(),
        "tab\there\nnewline".to_owned(),
    ];
    let mut app = local_app();
    app.ingest(local_rows(&tick_of(&names), None, 2));
    for (w, h) in [(80, 24), (300, 30)] {
        let buf = frame(&mut app, w, h);
        for cell in buf.content() {
            assert!(
                !cell
                    .symbol()
                    .chars()
                    .any(|c| c.is_control() || c == '\u{202E}'),
                "a control or bidi character reached the screen: {:?}",
                cell.symbol()
            );
        }
        let l = lines(&buf);
        assert!(l.iter().any(|r| r.contains("spin\u{FFFD}\u{FFFD}loop")));
        assert!(l.iter().any(|r| r.contains("evil?[2J?[31m")));
        // Every row's CPU% sits under its title, whatever its name.
        let (header, end) = column_end(&l, "CPU%");
        let cpu = cells(&l, header, end, 6);
        assert_eq!(cpu.len(), names.len(), "{}", text(&buf));
        assert!(cpu.iter().all(|c| c == "50.0"), "{cpu:?}\n{}", text(&buf));
    }
}

#[test]
fn thousands_of_rows_scroll_to_the_end() {
    let mut app = local_app();
    let mut data = Synthetic::new(2000, 3);
    app.ingest(local_rows(&data.tick(1.0), None, 96));
    let n = app.visible_len();
    assert!(n >= 1900, "{n}");
    frame(&mut app, 80, 24);
    app.apply_action(Action::End);
    let buf = frame(&mut app, 80, 24);
    let l = lines(&buf);
    assert!(l[23].contains(&format!("{n}/{n}")), "{}", l[23]);
    let pid = app
        .visible()
        .last()
        .and_then(|e| e.pid)
        .unwrap()
        .to_string();
    assert!(
        l[22].trim_start().starts_with(&pid),
        "the last row is on the last line:\n{}",
        text(&buf)
    );
    // Resizing keeps the selection on screen.
    let buf = frame(&mut app, 300, 10);
    assert!(
        lines(&buf)[8].trim_start().starts_with(&pid),
        "{}",
        text(&buf)
    );
}

#[test]
fn remote_rows_show_their_node() {
    use tally_proto as pb;
    let w = pb::Workload {
        key: Some(pb::WorkloadKey {
            key: Some(pb::workload_key::Key::ContainerId("d".repeat(64))),
        }),
        name: "payments".into(),
        nodes: vec!["ip-10-0-1-7".into()],
        runtime: pb::Runtime::Jvm as i32,
        verdict: Some(pb::Verdict {
            kind: pb::VerdictKind::VerdictGcHeavy as i32,
            confidence: 0.8,
            reasons: vec!["GC threads 40% of CPU".into()],
        }),
        cpu_seconds: 1.5,
        window_seconds: 1.0,
        last_seen_unix_ms: 1_800_000_000_000,
        ..Default::default()
    };
    let mut app = App::new(Settings {
        source: SourceKind::Remote,
        label: "http://collector:4317".into(),
        interval: std::time::Duration::from_secs(1),
        color: false,
        node: None,
    });
    app.ingest(crate::rows::remote_rows(&[&w]));
    let l = lines(&frame(&mut app, 120, 20));
    assert!(l[1].contains("cluster CPU"), "{}", l[1]);
    assert!(
        l[2].contains("NODE") && l[2].contains("FAULTS/s"),
        "{}",
        l[2]
    );
    let row = l
        .iter()
        .find(|r| r.contains("payments/dddd"))
        .expect("the row");
    assert!(
        row.contains("ip-10-0-1-7") && row.contains("gc-heavy"),
        "{row}"
    );
    app.apply_action(Action::Enter);
    let t = text(&frame(&mut app, 120, 30));
    assert!(
        t.contains("node ip-10-0-1-7") && t.contains("GC threads 40% of CPU"),
        "{t}"
    );
    assert!(t.contains("the collector keeps no stacks"), "{t}");
}

/// The cells of the `gc-heavy` text on the row of `name`.
fn verdict_cells<'a>(buf: &'a Buffer, name: &str) -> Vec<&'a ratatui::buffer::Cell> {
    let l = lines(buf);
    let y = l.iter().position(|r| r.contains(name)).expect("the row");
    let byte = l[y].find("gc-heavy").expect("a gc-heavy verdict");
    let x = l[y][..byte].chars().count() as u16;
    (x..x + 8).map(|x| &buf[(x, y as u16)]).collect()
}

#[test]
fn no_color_keeps_verdicts_readable() {
    // gc-heavy sorts first; the selection moves off it.
    let mut plain = recorded_app(SourceKind::Local);
    plain.apply_action(Action::SortBy(Column::Verdict));
    plain.apply_action(Action::Down);
    let buf = frame(&mut plain, 120, 24);
    for cell in buf.content() {
        assert_eq!(
            (cell.fg, cell.bg),
            (Color::Reset, Color::Reset),
            "NO_COLOR: a colour on screen"
        );
    }
    let cells = verdict_cells(&buf, "allocheavy");
    assert!(
        cells.iter().all(|c| c.modifier.contains(Modifier::BOLD)),
        "gc-heavy is bold without colour"
    );

    let mut colored = recorded_app(SourceKind::Local);
    colored.settings.color = true;
    colored.apply_action(Action::SortBy(Column::Verdict));
    colored.apply_action(Action::Down);
    let buf = frame(&mut colored, 120, 24);
    let cells = verdict_cells(&buf, "allocheavy");
    assert!(
        cells.iter().all(|c| c.fg == Color::Red),
        "gc-heavy is red with colour"
    );
}

#[test]
fn tiny_terminals_never_panic() {
    let mut app = recorded_app(SourceKind::Local);
    for (w, h) in [(1, 1), (10, 3), (19, 40), (20, 6), (40, 8), (300, 7)] {
        frame(&mut app, w, h);
        app.apply_action(Action::Enter);
        frame(&mut app, w, h);
        app.apply_action(Action::Back);
        app.apply_action(Action::Help);
        frame(&mut app, w, h);
        app.apply_action(Action::Help);
    }
    let t = text(&frame(&mut app, 10, 3));
    assert!(t.contains("too"), "{t}");
}

#[test]
fn the_cost_column_and_the_nodes_price() {
    use std::time::Duration;

    use tally_core::{cost::live::Pricing, model::NodeIdentity};
    let mut app = App::new(Settings {
        source: SourceKind::Local,
        label: "recorded".into(),
        interval: Duration::from_secs(1),
        color: false,
        node: None,
    });
    let node = NodeIdentity {
        instance_type: "m6i.large".into(),
        region: "us-east-1".into(),
        lifecycle: "on-demand".into(),
        ..Default::default()
    };
    let pricing = Pricing::embedded();
    for t in crate::fixtures::recorded_ticks() {
        let mut rows = crate::rows::local_rows(&t, None, 2);
        crate::source::price_node(&mut rows, &pricing, &node);
        app.ingest(rows);
    }
    let go = app
        .all_rows()
        .iter()
        .find(|e| e.name == "allocheavy")
        .expect("the Go row")
        .clone();
    let rates = pricing
        .rates(Some(&tally_proto::NodeIdentity {
            instance_type: "m6i.large".into(),
            region: "us-east-1".into(),
            ..Default::default()
        }))
        .unwrap();
    let expected =
        tally_core::cost::live::usage_usd_per_month(&rates, go.cpu_pct / 100.0, go.rss as f64);
    assert_eq!(go.cost_month, Some(expected));
    let buf = frame(&mut app, 300, 50);
    let l = lines(&buf);
    assert!(
        l[0].contains("m6i.large us-east-1 on-demand $0.0960/h"),
        "{}",
        l[0]
    );
    assert!(l[1].contains("cost $"), "{}", l[1]);
    assert!(l[2].contains("$/MO"), "{}", l[2]);
    let row = l.iter().find(|r| r.contains("allocheavy")).unwrap();
    assert!(row.contains(&crate::format::money(expected)), "{row}");
    // Unpriced (off EC2, no --instance-type): a dash, and the header says why.
    let mut bare = crate::fixtures::recorded_app(SourceKind::Local);
    let buf = frame(&mut bare, 300, 50);
    let row = lines(&buf)
        .into_iter()
        .find(|r| r.contains("allocheavy"))
        .unwrap();
    let unpriced = bare
        .all_rows()
        .iter()
        .find(|e| e.name == "allocheavy")
        .unwrap();
    assert_eq!(unpriced.cost_month, None);
    assert!(!row.contains(&crate::format::money(expected)), "{row}");
}

#[test]
fn the_detail_view_shows_runtime_settings_or_why_not() {
    use tally_core::model::settings::{JvmCollector, JvmHeap, JvmSettings, Setting, Source};
    use tally_proto as pb;
    let mut jvm = JvmSettings {
        max_heap_bytes: Some(Setting::new(192 << 20, Source::Flag)),
        collector: Some(Setting::new(JvmCollector::Parallel, Source::Flag)),
        ..JvmSettings::default()
    };
    jvm.with_hsperfdata(
        None,
        Some(JvmHeap {
            capacity_bytes: 64 << 20,
            max_capacity_bytes: 192 << 20,
        }),
    );
    let w = pb::Workload {
        key: Some(pb::WorkloadKey {
            key: Some(pb::workload_key::Key::ContainerId("e".repeat(64))),
        }),
        name: "orders".into(),
        runtime: pb::Runtime::Jvm as i32,
        window_seconds: 1.0,
        settings: Some(tally_core::model::RuntimeSettings::Jvm(jvm).to_proto()),
        ..Default::default()
    };
    let mut app = App::new(Settings {
        source: SourceKind::Remote,
        label: "http://collector:4317".into(),
        interval: std::time::Duration::from_secs(1),
        color: false,
        node: None,
    });
    app.ingest(crate::rows::remote_rows(&[&w]));
    app.apply_action(Action::Enter);
    let t = text(&frame(&mut app, 160, 30));
    assert!(
        t.contains("-Xmx 192 MiB (flag) · ParallelGC (flag) · heap 64 MiB/192 MiB (hsperfdata)"),
        "{t}"
    );

    let mut window = test_window(4242, "svc", "/system.slice/svc.service");
    window.cpu_seconds = 0.5;
    window.settings = Some(std::sync::Arc::new(
        tally_core::model::RuntimeSettings::unknown("reading /proc/4242/environ: EACCES"),
    ));
    let mut app = local_app();
    let mut tick = tick_of(&[]);
    tick.windows.push(window);
    app.ingest(local_rows(&tick, None, 2));
    type_filter(&mut app, "svc");
    app.apply_action(Action::Enter);
    let t = text(&frame(&mut app, 160, 30));
    assert!(
        t.contains("settings unknown: reading /proc/4242/environ: EACCES"),
        "{t}"
    );
}
