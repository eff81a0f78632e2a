//! `cargo xtask bench history`: what a month of a large cluster's
//! rolled-up history costs on disk, and how fast `agent report` reads it.
//!
//! A month of raw reports of a 1,000-node cluster cannot be ingested in a
//! benchmark (1.7 billion process windows a day), so the tiers are written
//! directly, in the collector's own schema (`Store::open` creates it), with
//! values of a realistic size: per workload and node, 30 days of 1-hour
//! and 1-day buckets, and one hour of 1-minute buckets (enough to measure a
//! minute row; the tier's size is that row times the rows a retention
//! keeps). Then the real `agent collector` serves the store and the real
//! `agent report --since 30d` and `--since 7d` are timed against it.
use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, ensure};
use prost::Message as _;
use rusqlite::{Connection, params_from_iter};
use tally_collector::store::{
    Store, Sync,
    tiers::{self, Tier},
};
use tally_proto as pb;

use super::Tracer;

/// From the issue: a month's report answers within this.
const TARGET_REPORT_SECONDS: f64 = 2.0;
/// From the issue: bytes per process window at the 1-minute tier.
const TARGET_MINUTE_BYTES_PER_WINDOW: f64 = 50.0;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Workloads (containers) on each node.
    #[arg(long, default_value_t = 20)]
    workloads_per_node: usize,
    /// Processes in each workload (the rows are per workload; this is what
    /// one row stands for).
    #[arg(long, default_value_t = 10)]
    processes_per_workload: usize,
    /// The agents' interval, seconds: windows a bucket stands for.
    #[arg(long, default_value_t = 10)]
    interval: u64,
    #[arg(long, default_value_t = 30)]
    days: i64,
    /// Timed runs of each report.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Keep the generated store in target/bench-history, and reuse one kept
    /// by an earlier run with the same arguments (to profile the report
    /// without writing a month again).
    #[arg(long)]
    keep: bool,
}

pub fn run(args: &Args, root: &Path) -> Result<()> {
    let agent = root.join("target/release/agent");
    ensure!(
        agent.exists(),
        "{} is missing: build it first",
        agent.display()
    );
    let data = root.join("target/bench-history");
    let db = data.join("tally.sqlite");
    let kept = data.join("kept.json");
    let rows = match std::fs::read(&kept)
        .ok()
        .filter(|_| args.keep && db.exists())
    {
        Some(json) => {
            let r: serde_json::Value = serde_json::from_slice(&json)?;
            ensure!(
                r["shape"] == shape(args).as_str(),
                "the kept store was written with other arguments ({}); run without --keep",
                r["shape"]
            );
            let rows = |k: &str| r[k].as_u64().unwrap_or(0);
            let r = Rows {
                minute: rows("minute"),
                hour: rows("hour"),
                day: rows("day"),
            };
            eprintln!(
                "xtask: history: reusing the store kept in {}",
                data.display()
            );
            r
        }
        None => {
            let _ = std::fs::remove_dir_all(&data);
            std::fs::create_dir_all(&data)?;
            drop(Store::open(&data, Sync::Normal)?);
            let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
            let started = Instant::now();
            let rows = generate(args, &db, now_ms)?;
            eprintln!(
                "xtask: history: wrote {} hour, {} day and {} minute rows in {:.0} s",
                rows.hour,
                rows.day,
                rows.minute,
                started.elapsed().as_secs_f64()
            );
            if args.keep {
                let json = serde_json::json!({
                    "shape": shape(args),
                    "minute": rows.minute,
                    "hour": rows.hour,
                    "day": rows.day,
                });
                std::fs::write(&kept, json.to_string())?;
            }
            rows
        }
    };
    let sizes = table_bytes(&db)?;

    let mut c = Command::new(&agent);
    c.args(["collector", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .args(["--retention-1h", "90d", "--retention-1d", "400d"]);
    let log = data.join("collector.log");
    let cpus = super::Cpus::pick()?;
    let mut collector = Tracer::start("collector", c, cpus.workload, &log)?;
    let mut addr = String::new();
    ensure!(
        collector.wait_for(Duration::from_secs(120), |l| {
            l.strip_prefix("listening on ")
                .map(|a| addr = a.to_owned())
                .is_some()
        })?,
        "the collector did not say where it listens; see {}",
        log.display()
    );
    let url = format!("http://{addr}");
    for (since, tier) in [("30d", Tier::Day), ("7d", Tier::Hour)] {
        let mut secs = Vec::new();
        let mut bytes = 0;
        for _ in 0..args.runs {
            let t = Instant::now();
            let out = Command::new(&agent)
                .args(["report", "--collector", &url, "--since", since])
                .args(["--format", "json"])
                .stderr(Stdio::inherit())
                .output()
                .context("agent report")?;
            secs.push(t.elapsed().as_secs_f64());
            ensure!(out.status.success(), "agent report --since {since} failed");
            bytes = out.stdout.len();
            let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            let lines = report["workloads"].as_array().map_or(0, Vec::len)
                + report["system"].as_array().map_or(0, Vec::len);
            ensure!(
                lines >= args.nodes * args.workloads_per_node,
                "the report has {lines} workload lines"
            );
            ensure!(
                report["history_bucket_seconds"].as_u64() == Some(u64::from(tier.seconds())),
                "--since {since} was not read from the {} tier",
                tier.name()
            );
        }
        secs.sort_by(f64::total_cmp);
        let median = secs[secs.len() / 2];
        println!(
            "report --since {since}: median {median:.2} s of {} runs (min {:.2}, max {:.2}); {:.1} MiB of JSON",
            secs.len(),
            secs[0],
            secs[secs.len() - 1],
            bytes as f64 / (1 << 20) as f64
        );
        if since == "30d" {
            println!(
                "| report --since 30d | {median:.2} s | < {TARGET_REPORT_SECONDS} s: {} |",
                if median < TARGET_REPORT_SECONDS {
                    "met"
                } else {
                    "**missed**"
                }
            );
        }
    }
    collector.ensure_running()?;
    collector.stop()?;
    print_sizes(args, &rows, &sizes);
    if !args.keep {
        for f in ["tally.sqlite", "tally.sqlite-wal", "tally.sqlite-shm"] {
            let _ = std::fs::remove_file(data.join(f));
        }
    }
    Ok(())
}

/// What a kept store was written for: it is reused only for the same.
fn shape(a: &Args) -> String {
    format!(
        "{} nodes, {} workloads, {} processes, {} s, {} days",
        a.nodes, a.workloads_per_node, a.processes_per_workload, a.interval, a.days
    )
}

struct Rows {
    minute: u64,
    hour: u64,
    day: u64,
}

/// xorshift64: deterministic values.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// A bucket of `minutes` of one workload: `interval`-second windows of
/// `processes` processes, a third of the workloads garbage-collected.
fn synthetic_bucket(
    rng: &mut Rng,
    workload: usize,
    minutes: i64,
    args: &Args,
) -> [i64; tiers::COLUMN_COUNT] {
    let seconds = minutes * 60;
    let windows = seconds / args.interval as i64;
    let p = args.processes_per_workload as i64;
    let cores = 0.05 + rng.below(800) as f64 / 1000.0;
    let cpu_us = (cores * seconds as f64 * 1e6) as i64;
    let gc = workload.is_multiple_of(3);
    let gc_us = if gc { cpu_us / 5 } else { 0 };
    let rss = (64 + rng.below(1024)) as i64 * (1 << 20);
    let swing = if gc { rss / 5 } else { rss / 100 };
    let mut k = |n: u64| rng.below(n) as i64 * windows * p;
    let mut v = [0i64; tiers::COLUMN_COUNT];
    let values = [
        if gc { 1 } else { 6 },                 // runtime
        windows,                                // windows
        seconds * 1_000_000,                    // seconds_us
        (cores * seconds as f64 * 99.0) as i64, // cpu_samples
        cpu_us,
        gc_us * 3 / 4,                    // gc_thread_us
        gc_us / 4,                        // gc_stack_us
        0,                                // gc_blind_us
        if gc { minutes * 2 } else { 0 }, // gc_cycles
        gc_us / 20,                       // gc_pause_us
        k(40),                            // mmap_calls
        k(64) << 20,                      // mmap_bytes
        k(30),
        k(48) << 20,
        k(5),
        k(4) << 16,
        k(2),
        0,
        k(20),
        k(32) << 20,
        0,
        k(4) << 12,
        k(20_000),                                         // minor_faults
        k(2),                                              // major_faults
        rss / 1024 * seconds * 1000,                       // rss_kib_ms
        rss + swing,                                       // rss_peak
        rss - swing,                                       // rss_min
        (cores * 1500.0) as i64,                           // cpu_peak_millicores
        if minutes > 1 { 2 * swing * minutes } else { 0 }, // sawtooth
        if minutes > 1 { minutes } else { 0 },             // sawtooth_minutes
    ];
    v.copy_from_slice(&values);
    v
}

fn generate(args: &Args, db: &Path, now_ms: i64) -> Result<Rows> {
    let mut conn = Connection::open(db)?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    let tx = conn.transaction()?;
    let month_ms = args.days * 86_400_000;
    {
        let mut node = tx.prepare(
            "INSERT INTO nodes (id, name, identity, first_window_start_unix_ms, last_window_end_unix_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for n in 0..args.nodes {
            let name = format!(
                "ip-10-{}-{}-{}.ec2.internal",
                n / 65536,
                n / 256 % 256,
                n % 256
            );
            let identity = pb::NodeIdentity {
                node_name: name.clone(),
                instance_type: "m6i.2xlarge".into(),
                zone: "us-east-1a".into(),
                region: "us-east-1".into(),
                lifecycle: "on-demand".into(),
                agent_version: "0.1.0".into(),
                agent_instance: format!("{n:08x}-agent"),
                cpus: 8,
                ..Default::default()
            };
            node.execute(rusqlite::params![
                n as i64 + 1,
                name,
                identity.encode_to_vec(),
                now_ms - month_ms,
                now_ms
            ])?;
        }
        let mut workload = tx.prepare(
            "INSERT INTO workloads (id, key, name, cgroup_path, last_window_end_unix_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        let mut pod = tx.prepare(
            "INSERT INTO workload_pods (workload_id, namespace, pod, container, owner_kind,
                owner_name, metadata, updated_unix_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for w in 0..args.nodes * args.workloads_per_node {
            let id = format!(
                "{:016x}{:048x}",
                (w as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                w
            );
            let app = format!("svc-{}", w % 400);
            workload.execute(rusqlite::params![
                w as i64 + 1,
                format!("container/{id}"),
                app,
                format!("/kubepods.slice/kubepods-burstable.slice/cri-containerd-{id}.scope"),
                now_ms,
            ])?;
            let meta = pb::PodMetadata {
                namespace: "payments".into(),
                pod_name: format!("{app}-7d9f8b6c4-{:05}", w),
                container_name: "app".into(),
                owner_kind: "Deployment".into(),
                owner_name: app.clone(),
                cpu_request_millicores: 500,
                memory_request_bytes: 512 << 20,
                source: "api-server".into(),
                ..Default::default()
            };
            pod.execute(rusqlite::params![
                w as i64 + 1,
                meta.namespace,
                meta.pod_name,
                meta.container_name,
                meta.owner_kind,
                meta.owner_name,
                meta.encode_to_vec(),
                now_ms
            ])?;
        }
    }
    let columns: Vec<&str> = tiers::all_columns().collect();
    let mut rows = Rows {
        minute: 0,
        hour: 0,
        day: 0,
    };
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let now_minute = now_ms / 60_000;
    let workloads = args.nodes * args.workloads_per_node;
    for (tier, first, count) in [
        (
            Tier::Day,
            tiers::bucket_of(Tier::Day, now_minute) - args.days * 1440,
            args.days + 1,
        ),
        (
            Tier::Hour,
            tiers::bucket_of(Tier::Hour, now_minute) - args.days * 1440,
            args.days * 24 + 1,
        ),
        (Tier::Minute, now_minute - 60, 60),
    ] {
        let sql = format!(
            "INSERT INTO {} (bucket_minute, workload_id, node_id, {}) VALUES ({})",
            tier.table(),
            columns.join(", "),
            (1..=columns.len() + 3)
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut insert = tx.prepare(&sql)?;
        for b in 0..count {
            let bucket = first + b * tier.minutes();
            for w in 0..workloads {
                let v = synthetic_bucket(&mut rng, w, tier.minutes(), args);
                let node = (w / args.workloads_per_node) as i64 + 1;
                let key = [bucket, w as i64 + 1, node];
                insert.execute(params_from_iter(key.iter().chain(v.iter())))?;
            }
        }
        let n = (count as u64) * workloads as u64;
        match tier {
            Tier::Minute => rows.minute = n,
            Tier::Hour => rows.hour = n,
            Tier::Day => rows.day = n,
        }
    }
    tx.commit()?;
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    Ok(rows)
}

/// Bytes of each table (with its indexes), from SQLite's own page counts.
pub fn table_bytes(db: &Path) -> Result<Vec<(String, u64)>> {
    let conn = Connection::open(db)?;
    let mut q = conn.prepare(
        "SELECT COALESCE(m.tbl_name, s.name), SUM(s.pgsize) FROM dbstat s
         LEFT JOIN sqlite_master m ON m.name = s.name GROUP BY 1 ORDER BY 2 DESC",
    )?;
    let rows = q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    Ok(rows
        .filter_map(Result::ok)
        .map(|(n, b)| (n, u64::try_from(b).unwrap_or(0)))
        .collect())
}

fn print_sizes(args: &Args, rows: &Rows, sizes: &[(String, u64)]) {
    let size = |t: &str| sizes.iter().find(|s| s.0 == t).map_or(0, |s| s.1);
    let windows_per_minute = 60 / args.interval.max(1);
    println!();
    println!(
        "history: {} nodes × {} workloads × {} processes, {} s windows, {} days",
        args.nodes, args.workloads_per_node, args.processes_per_workload, args.interval, args.days
    );
    println!();
    println!(
        "| tier | rows | bytes a row | bytes a process window | a day of this cluster | target |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | --- |");
    for (tier, n) in [
        (Tier::Minute, rows.minute),
        (Tier::Hour, rows.hour),
        (Tier::Day, rows.day),
    ] {
        let per_row = size(tier.table()) as f64 / n.max(1) as f64;
        let windows =
            (tier.minutes() as u64 * windows_per_minute) * args.processes_per_workload as u64;
        let per_window = per_row / windows as f64;
        let rows_a_day =
            (args.nodes * args.workloads_per_node) as f64 * 1440.0 / tier.minutes() as f64;
        let target = if tier == Tier::Minute {
            format!(
                "≤ {TARGET_MINUTE_BYTES_PER_WINDOW} B: {}",
                if per_window <= TARGET_MINUTE_BYTES_PER_WINDOW {
                    "met"
                } else {
                    "**missed**"
                }
            )
        } else {
            String::new()
        };
        println!(
            "| {} | {n} | {per_row:.1} | {per_window:.2} | {:.2} GB | {target} |",
            tier.name(),
            rows_a_day * per_row / 1e9
        );
    }
    println!();
    println!("tables (bytes): {sizes:?}");
}
