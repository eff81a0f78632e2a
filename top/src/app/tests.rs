use tally_proto as pb;

use super::*;
use crate::{
    fixtures::{recorded_app, recorded_ticks},
    rows::{Stacks, local_rows},
    synthetic::Synthetic,
};

fn settings(source: SourceKind) -> Settings {
    Settings {
        source,
        label: "test".into(),
        interval: Duration::from_secs(1),
        color: false,
        node: None,
    }
}

#[test]
fn secs_text_is_short() {
    assert_eq!(secs_text(0.5), "0.5s");
    assert_eq!(secs_text(2.0), "2s");
    assert_eq!(secs_text(60.0), "1m");
}

#[test]
fn quiet_rows_linger_then_go() {
    let mut app = App::new(settings(SourceKind::Local));
    let e = |pid: u32, exited: bool| {
        let mut e = crate::fixtures::entry(pid, "x");
        e.exited = exited;
        e.stacks = Stacks::Off;
        e
    };
    let rows = |list: Vec<Entry>| Rows {
        at: Some(UNIX_EPOCH + Duration::from_secs(1000)),
        seconds: 1.0,
        processes: list,
        ..Default::default()
    };
    app.ingest(rows(vec![e(1, false), e(2, true)]));
    assert_eq!(app.visible_len(), 2);
    app.ingest(rows(vec![]));
    assert_eq!(app.visible_len(), 2, "both linger one window");
    let quiet = app.visible().find(|r| r.pid == Some(1)).unwrap();
    assert_eq!(quiet.cpu_pct, 0.0);
    assert_eq!(quiet.verdict, Some(VerdictKind::Idle));
    app.ingest(rows(vec![]));
    assert_eq!(app.visible_len(), 1, "the exited one is gone after 2 s");
    for _ in 0..8 {
        app.ingest(rows(vec![]));
    }
    assert_eq!(app.visible_len(), 0, "quiet rows go after 10 s");
}

fn names(app: &App) -> Vec<String> {
    app.visible().map(|e| e.name.clone()).collect()
}

#[test]
fn the_recorded_windows_fill_every_grouping() {
    let ticks = recorded_ticks();
    assert_eq!(ticks.len(), 6, "six windows were recorded");
    let app = recorded_app(SourceKind::Local);
    assert_eq!(app.updates, 6);
    let all = names(&app);
    for comm in ["allocheavy", "churn", "spin\u{FFFD}\u{FFFD}loop"] {
        assert!(all.iter().any(|n| n == comm), "{comm} missing: {all:?}");
    }
    let go = app.visible().find(|e| e.name == "allocheavy").unwrap();
    assert_eq!(go.verdict, Some(VerdictKind::GcHeavy));
    assert_eq!(go.runtime, tally_core::gc::Runtime::Go);
    assert!(go.gc_pct > 10.0, "{}", go.gc_pct);
}

#[test]
fn sort_by_a_column_and_again_reverses() {
    let mut app = recorded_app(SourceKind::Local);
    let cpu: Vec<f64> = app.visible().map(|e| e.cpu_pct).collect();
    assert!(
        cpu.windows(2).all(|w| w[0] >= w[1]),
        "CPU% descending: {cpu:?}"
    );
    app.apply_action(Action::SortBy(Column::Cpu));
    assert_eq!(app.sort_state(), (Column::Cpu, false));
    let cpu: Vec<f64> = app.visible().map(|e| e.cpu_pct).collect();
    assert!(
        cpu.windows(2).all(|w| w[0] <= w[1]),
        "CPU% ascending: {cpu:?}"
    );
    // Text sorts A to Z first.
    app.apply_action(Action::SortBy(Column::Name));
    assert_eq!(app.sort_state(), (Column::Name, false));
    let n: Vec<String> = app.visible().map(|e| e.name_lc.clone()).collect();
    assert!(n.windows(2).all(|w| w[0] <= w[1]), "{n:?}");
    // `>` moves to the next column, numbers largest first.
    app.apply_action(Action::SortNext);
    assert_eq!(app.sort_state(), (Column::Runtime, false));
    app.apply_action(Action::SortNext);
    assert_eq!(app.sort_state(), (Column::Cpu, true));
    app.apply_action(Action::SortPrev);
    app.apply_action(Action::SortPrev);
    assert_eq!(app.sort_state().0, Column::Name);
    // The verdict column puts gc-heavy first.
    app.apply_action(Action::SortBy(Column::Verdict));
    assert_eq!(
        app.visible().next().and_then(|e| e.verdict),
        Some(VerdictKind::GcHeavy)
    );
    // The sort menu picks the column under its cursor.
    app.apply_action(Action::SortMenu);
    assert_eq!(app.overlay, Overlay::SortMenu { cursor: 5 });
    app.apply_action(Action::SortMenuMove(i16::MIN));
    app.apply_action(Action::SortMenuAccept);
    assert_eq!(app.sort_state(), (Column::Pid, true));
    assert_eq!(app.overlay, Overlay::None);
}

#[test]
fn filter_by_name_verdict_runtime_container_and_negation() {
    let mut app = recorded_app(SourceKind::Local);
    let everything = app.visible_len();
    let type_filter = |app: &mut App, text: &str| {
        app.apply_action(Action::StartFilter);
        app.apply_action(Action::FilterClearLine);
        for c in text.chars() {
            app.apply_action(Action::FilterChar(c));
        }
        app.apply_action(Action::FilterAccept);
    };
    type_filter(&mut app, "allocHeavy");
    assert_eq!(names(&app), ["allocheavy"]);
    type_filter(&mut app, "verdict:gc-heavy");
    assert!(names(&app).contains(&"allocheavy".to_owned()));
    assert!(
        app.visible()
            .all(|e| e.verdict == Some(VerdictKind::GcHeavy))
    );
    type_filter(&mut app, "runtime:go");
    assert!(
        app.visible()
            .all(|e| e.runtime == tally_core::gc::Runtime::Go)
    );
    assert!(app.visible_len() >= 1);
    type_filter(&mut app, "container:9f86d081");
    assert_eq!(names(&app), ["allocheavy"]);
    type_filter(&mut app, "container:docker-2c26");
    assert_eq!(names(&app), ["churn"]);
    type_filter(&mut app, "!rustc !idle");
    assert!(app.visible().all(|e| e.name != "rustc"));
    assert!(app.visible().all(|e| e.verdict != Some(VerdictKind::Idle)));
    type_filter(&mut app, "no-such-thing");
    assert_eq!(app.visible_len(), 0);
    app.apply_action(Action::StartFilter);
    app.apply_action(Action::FilterCancel);
    assert_eq!(app.filter, "");
    assert_eq!(app.visible_len(), everything);
    // `g`: only gc-heavy, and back.
    app.apply_action(Action::ToggleGcOnly);
    assert!(app.visible_len() >= 1);
    assert!(
        app.visible()
            .all(|e| e.verdict == Some(VerdictKind::GcHeavy))
    );
    app.apply_action(Action::ToggleGcOnly);
    assert_eq!(app.visible_len(), everything);
}

#[test]
fn grouping_cycles_processes_containers_pods() {
    let mut app = recorded_app(SourceKind::Local);
    app.apply_action(Action::SortBy(Column::Pid));
    app.apply_action(Action::CycleGrouping);
    assert_eq!(app.grouping, Grouping::Containers);
    assert_eq!(app.row_kind(), RowKind::Group);
    assert!(app.columns().contains(&Column::Procs));
    assert!(!app.columns().contains(&Column::Pid));
    assert_eq!(app.sort_state().0, Column::Procs, "PID becomes PROCS");
    let go = app
        .visible()
        .find(|e| matches!(&e.id, RowId::Container(id) if id.starts_with("9f86d081")))
        .expect("the Go container is a row");
    assert_eq!(go.name, "allocheavy/9f86d081884c");
    assert_eq!(go.procs, 1);
    // Its last recorded window has 12 CPU samples, most of them in GC:
    // few, but enough to place its share well past 10% (gc::verdict's
    // interval rule).
    assert_eq!(go.verdict, Some(VerdictKind::GcHeavy));
    assert!(
        app.visible()
            .any(|e| matches!(&e.id, RowId::Cgroup(p) if &**p == "/")),
        "processes outside containers are grouped by cgroup"
    );
    let root = app
        .visible()
        .find(|e| matches!(&e.id, RowId::Cgroup(p) if &**p == "/"))
        .unwrap();
    assert!(root.procs > 1, "the root cgroup holds many processes");
    app.apply_action(Action::CycleGrouping);
    assert_eq!(app.grouping, Grouping::Pods);
    let pod = app
        .visible()
        .find(|e| matches!(&e.id, RowId::Pod(uid) if uid.starts_with("7c1f2a9e")))
        .expect("the Go container's pod is a row");
    assert!(
        pod.name.starts_with("allocheavy/pod-7c1f2a9e"),
        "{}",
        pod.name
    );
    // Docker's container has no pod: it stays a container row.
    assert!(
        app.visible()
            .any(|e| matches!(&e.id, RowId::Container(id) if id.starts_with("2c26b46b")))
    );
    app.apply_action(Action::CycleGrouping);
    assert_eq!(app.grouping, Grouping::Processes);
    assert!(app.columns().contains(&Column::Pid));
}

fn synthetic_app(processes: usize) -> App {
    let mut app = App::new(settings(SourceKind::Local));
    let mut data = Synthetic::new(processes, 7);
    let tick = data.tick(1.0);
    app.ingest(local_rows(&tick, None, 96));
    app
}

#[test]
fn scrolling_thousands_of_rows_keeps_the_selection_on_screen() {
    let mut app = synthetic_app(3000);
    let n = app.visible_len();
    assert!(n >= 2000, "{n}");
    assert_eq!(app.set_page(20), 0);
    for _ in 0..25 {
        app.apply_action(Action::Down);
    }
    assert_eq!(app.selected_index(), 25);
    assert_eq!(
        app.set_page(20),
        6,
        "the selection is the last row on screen"
    );
    app.apply_action(Action::PageDown);
    assert_eq!(app.selected_index(), 45);
    assert_eq!(app.set_page(20), 26);
    app.apply_action(Action::End);
    assert_eq!(app.selected_index(), n - 1);
    assert_eq!(app.set_page(20), n - 20);
    app.apply_action(Action::Down);
    assert_eq!(app.selected_index(), n - 1, "no row past the last");
    app.apply_action(Action::PageUp);
    assert_eq!(app.selected_index(), n - 21);
    assert_eq!(app.set_page(20), n - 21);
    app.apply_action(Action::Home);
    assert_eq!(app.selected_index(), 0);
    assert_eq!(app.set_page(20), 0);
    app.apply_action(Action::Up);
    assert_eq!(app.selected_index(), 0);
}

#[test]
fn the_selection_follows_its_row_when_rows_resort() {
    let mut data = Synthetic::new(500, 11);
    let mut app = App::new(settings(SourceKind::Local));
    app.ingest(local_rows(&data.tick(1.0), None, 96));
    app.set_page(20);
    for _ in 0..40 {
        app.apply_action(Action::Down);
    }
    let id = app.selected().unwrap().id.clone();
    for _ in 0..3 {
        app.ingest(local_rows(&data.tick(1.0), None, 96));
        if let Some(e) = app.selected() {
            assert_eq!(e.id, id, "the selection moved to another row");
        }
    }
}

#[test]
fn interval_steps_and_their_bounds() {
    let mut app = App::new(settings(SourceKind::Local));
    assert_eq!(
        app.apply_action(Action::Slower),
        Effect::SetInterval(Duration::from_secs(2))
    );
    app.apply_action(Action::Faster);
    assert_eq!(
        app.apply_action(Action::Faster),
        Effect::SetInterval(Duration::from_millis(500))
    );
    app.apply_action(Action::Faster);
    assert_eq!(app.interval, Duration::from_millis(250));
    assert_eq!(app.apply_action(Action::Faster), Effect::None);
    assert_eq!(app.status(), Some("interval stays 0.25s"));
    for _ in 0..20 {
        app.apply_action(Action::Slower);
    }
    assert_eq!(app.interval, Duration::from_secs(60));
}

#[test]
fn pause_keeps_the_table_and_resume_shows_the_latest() {
    let ticks = recorded_ticks();
    let mut app = App::new(settings(SourceKind::Local));
    app.ingest(local_rows(&ticks[0], None, 2));
    let first_at = app.at;
    app.apply_action(Action::TogglePause);
    assert!(app.paused);
    app.ingest(local_rows(&ticks[1], None, 2));
    app.ingest(local_rows(&ticks[2], None, 2));
    assert_eq!(app.at, first_at, "paused: the table stays");
    app.apply_action(Action::TogglePause);
    assert_eq!(app.at, Some(ticks[2].at), "resumed: the latest update");
}

#[test]
fn the_detail_view_opens_on_the_selected_row_and_closes() {
    let mut app = recorded_app(SourceKind::Local);
    assert_eq!(app.detail(), None);
    app.apply_action(Action::Down);
    let id = app.selected().unwrap().id.clone();
    app.apply_action(Action::Enter);
    assert_eq!(app.screen, Screen::Detail);
    assert_eq!(app.detail().map(|e| e.id.clone()), Some(id));
    app.apply_action(Action::Back);
    assert_eq!(app.screen, Screen::Table);
    app.apply_action(Action::Help);
    assert_eq!(app.overlay, Overlay::Help { scroll: 0 });
    app.apply_action(Action::Back);
    assert_eq!(app.overlay, Overlay::None);
    assert_eq!(app.apply_action(Action::Quit), Effect::Quit);
}

fn workload(id: &str, name: &str, node: &str, cpu: f64, kind: pb::VerdictKind) -> pb::Workload {
    pb::Workload {
        key: Some(pb::WorkloadKey {
            key: Some(pb::workload_key::Key::ContainerId(id.into())),
        }),
        name: name.into(),
        nodes: vec![node.into()],
        verdict: Some(pb::Verdict {
            kind: kind as i32,
            confidence: 0.9,
            reasons: vec!["GC threads 31% of CPU".into()],
        }),
        cpu_seconds: cpu,
        window_seconds: 1.0,
        alloc_bytes_per_second: 1e6,
        faults_per_second: 100.0,
        last_seen_unix_ms: 1_800_000_000_000,
        ..Default::default()
    }
}

#[test]
fn remote_rows_have_nodes_and_a_node_filter() {
    let w = [
        workload(
            &"a".repeat(64),
            "java",
            "node-a",
            2.0,
            pb::VerdictKind::VerdictGcHeavy,
        ),
        workload(
            &"b".repeat(64),
            "api",
            "node-b",
            0.5,
            pb::VerdictKind::VerdictSteady,
        ),
        workload(
            &"c".repeat(64),
            "db",
            "node-b",
            1.0,
            pb::VerdictKind::VerdictSteady,
        ),
    ];
    let mut app = remote_app(&w);
    assert!(app.columns().contains(&Column::Node));
    assert!(
        !app.columns().contains(&Column::Mmap),
        "no syscall counts remotely"
    );
    assert_eq!(
        names(&app),
        ["java/aaaaaaaaaaaa", "db/cccccccccccc", "api/bbbbbbbbbbbb"]
    );
    assert!((app.totals().cpu_cores - 3.5).abs() < 1e-9);
    // `n`: all nodes → node-a → node-b → all nodes.
    app.apply_action(Action::CycleNode);
    assert_eq!(app.node.as_deref(), Some("node-a"));
    assert_eq!(names(&app), ["java/aaaaaaaaaaaa"]);
    assert_eq!(app.totals().gc_heavy, 1);
    app.apply_action(Action::CycleNode);
    assert_eq!(app.node.as_deref(), Some("node-b"));
    assert_eq!(app.visible_len(), 2);
    assert!((app.totals().cpu_cores - 1.5).abs() < 1e-9);
    app.apply_action(Action::CycleNode);
    assert_eq!(app.node, None);
    assert_eq!(app.visible_len(), 3);
    // The filter's node field.
    app.apply_action(Action::StartFilter);
    for c in "node:node-a".chars() {
        app.apply_action(Action::FilterChar(c));
    }
    assert_eq!(names(&app), ["java/aaaaaaaaaaaa"]);
}

fn in_pod(mut w: pb::Workload, pod: &str, container: &str) -> pb::Workload {
    w.pod = Some(pb::PodMetadata {
        namespace: "shop".into(),
        pod_name: pod.into(),
        pod_uid: format!("uid-{pod}"),
        container_name: container.into(),
        ..Default::default()
    });
    w
}

#[test]
fn remote_workloads_group_by_pod() {
    let w = [
        in_pod(
            workload(
                &"a".repeat(64),
                "java",
                "node-a",
                2.0,
                pb::VerdictKind::VerdictGcHeavy,
            ),
            "checkout-1",
            "app",
        ),
        in_pod(
            workload(
                &"b".repeat(64),
                "envoy",
                "node-a",
                0.5,
                pb::VerdictKind::VerdictSteady,
            ),
            "checkout-1",
            "sidecar",
        ),
        workload(
            &"c".repeat(64),
            "db",
            "node-b",
            1.0,
            pb::VerdictKind::VerdictSteady,
        ),
    ];
    let mut app = remote_app(&w);
    // Workloads in a pod are named by it.
    assert_eq!(
        names(&app),
        [
            "shop/checkout-1/app",
            "db/cccccccccccc",
            "shop/checkout-1/sidecar"
        ]
    );
    app.apply_action(Action::CycleGrouping);
    assert_eq!(app.grouping, Grouping::Pods);
    assert_eq!(app.grouping_label(), "pods");
    assert_eq!(names(&app), ["shop/checkout-1", "db/cccccccccccc"]);
    let pod = app.visible().next().unwrap();
    assert_eq!(pod.procs, 2);
    assert!((pod.cpu_pct - 250.0).abs() < 1e-9);
    // GC share CPU-weighted; the verdict and reasons of the worst container.
    assert_eq!(pod.verdict, Some(VerdictKind::GcHeavy));
    assert_eq!(pod.reasons, ["app: GC threads 31% of CPU"]);
    assert_eq!(pod.node, "node-a");
    assert!(app.columns().contains(&Column::Procs));
    // `pod:` filters find the pod by name.
    app.apply_action(Action::StartFilter);
    for c in "pod:checkout".chars() {
        app.apply_action(Action::FilterChar(c));
    }
    assert_eq!(names(&app), ["shop/checkout-1"]);
    // Workloads again, not containers (they are the workloads already).
    app.apply_action(Action::CycleGrouping);
    assert_eq!(app.grouping, Grouping::Processes);
}

/// The view of a collector's `workloads`.
fn remote_app(workloads: &[pb::Workload]) -> App {
    let mut app = App::new(settings(SourceKind::Remote));
    app.ingest(crate::rows::remote_rows(
        &workloads.iter().collect::<Vec<_>>(),
    ));
    app
}
