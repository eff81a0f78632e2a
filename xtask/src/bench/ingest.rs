//! `cargo xtask bench ingest`: how many process windows one collector core
//! stores durably per second.
//!
//! The collector (`target/release/agent collector`, default settings, so
//! `--sync full`: every commit fsynced) runs pinned to one CPU; simulated
//! agents, tonic clients in this process on the other CPU, stream realistic
//! reports (200 processes each by default, a mix of containers, with their
//! pods' metadata, and host
//! processes, long kubepods cgroup paths, delta and total counters, thread
//! groups for the GC'd ones) as fast as the collector acknowledges them.
//! Reports are assembled from pre-encoded parts so that this debug-built
//! client costs little per report. Throughput counts acknowledged reports
//! only (acked = committed); per core divides by the collector's own CPU time
//! (/proc/<pid>/stat) over the measured interval.
use std::{
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, ensure};
use bytes::Bytes;
use prost::Message as _;
use tally_proto as pb;
use tokio::sync::mpsc;
use tokio_stream::{StreamExt as _, wrappers::ReceiverStream};

use super::{Cpus, Tracer};

/// Target from the issue: process windows stored per second on one core.
const TARGET_WINDOWS_PER_CORE_SECOND: f64 = 200_000.0;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Simulated agents (nodes), each one stream.
    #[arg(long, default_value_t = 8)]
    agents: usize,
    /// Processes in each report.
    #[arg(long, default_value_t = 200)]
    processes: usize,
    /// Share of the processes that run in containers (4 to a container); the
    /// rest are host processes, each its own workload.
    #[arg(long, default_value_t = 0.6)]
    in_containers: f64,
    /// Seconds measured, after `--warmup`.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Reports each agent keeps in flight (sent, not yet acknowledged).
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Passed to the collector: full (fsync each commit) or normal.
    #[arg(long, default_value = "full")]
    sync: String,
    /// The store: sqlite (a file under target/), or postgres (a throwaway
    /// cluster, fsync on, the collector on its loopback TCP port).
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite)]
    store: StoreKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

/// utime+stime of a PostgreSQL server: the postmaster and its children
/// (backends, WAL writer, checkpointer, …) alive when read.
fn server_ticks(postmaster: u32) -> u64 {
    let parent = |pid: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat[stat.rfind(')')? + 1..]
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let mut total = super::cpu_ticks(postmaster).unwrap_or(0);
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok())
            && parent(pid) == Some(postmaster)
        {
            total += super::cpu_ticks(pid).unwrap_or(0);
        }
    }
    total
}

pub fn run(args: &Args, root: &Path) -> Result<()> {
    ensure!(
        args.agents >= 1 && args.processes >= 1,
        "need agents and processes"
    );
    let agent = root.join("target/release/agent");
    ensure!(
        agent.exists(),
        "{} is missing: build it first",
        agent.display()
    );
    let cpus = Cpus::pick()?;
    super::pin_self(cpus.others)?;
    let data = root.join("target/bench-ingest");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;

    let cluster = match args.store {
        StoreKind::Sqlite => None,
        StoreKind::Postgres => Some(
            tally_collector::store::postgres::testing::TempCluster::start().context(
                "cannot start a PostgreSQL cluster (cargo xtask setup installs postgresql)",
            )?,
        ),
    };
    let mut c = Command::new(&agent);
    c.args(["collector", "--listen", "127.0.0.1:0"]);
    match &cluster {
        None => {
            c.arg("--data").arg(&data).args(["--sync", &args.sync]);
        }
        Some(cluster) => {
            c.args(["--store", &cluster.create_db("bench")?]);
        }
    }
    let server = cluster.as_ref().and_then(|c| c.postmaster_pid());
    let log = data.join("collector.log");
    let mut collector = Tracer::start("collector", c, cpus.workload, &log)?;
    let mut addr = String::new();
    ensure!(
        collector.wait_for(Duration::from_secs(20), |l| {
            l.strip_prefix("listening on ")
                .map(|a| addr = a.to_owned())
                .is_some()
        })?,
        "the collector did not say where it listens within 20 s; see {}",
        log.display()
    );
    let pid = collector.pid();
    eprintln!(
        "xtask: ingest: collector pid {pid} on CPU {} at {addr}; {} agents × {} processes on CPU {}",
        cpus.workload, args.agents, args.processes, cpus.others
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(drive(args, &format!("http://{addr}"), pid, server));
    let peak_kib = super::peak_rss_kib(pid).unwrap_or(0);
    collector.ensure_running()?;
    collector.stop()?;
    let m = result?;
    let db_bytes: u64 = match &cluster {
        None => ["tally.sqlite", "tally.sqlite-wal"]
            .iter()
            .filter_map(|f| std::fs::metadata(data.join(f)).ok())
            .map(|m| m.len())
            .sum(),
        // Tables, indexes and TOAST after a VACUUM (dead row versions of
        // the minute tier's updates are not history).
        Some(cluster) => {
            cluster.psql("bench", "VACUUM")?;
            cluster
                .psql("bench", "SELECT pg_database_size('bench')")?
                .parse()
                .context("pg_database_size")?
        }
    };
    print_table(args, &m, peak_kib, db_bytes);
    if let Some(cluster) = &cluster {
        // The same per-table figures as for SQLite, from PostgreSQL's own
        // accounting (heap, indexes, TOAST).
        let windows = (m.total_reports * args.processes as u64).max(1) as f64;
        for table in ["reports", "windows", "rollup_1m"] {
            let bytes: u64 = cluster
                .psql(
                    "bench",
                    &format!("SELECT pg_total_relation_size('{table}')"),
                )?
                .parse()
                .context("pg_total_relation_size")?;
            println!(
                "| table {table} | {:.0} MiB, {:.1} B per process window | |",
                bytes as f64 / (1 << 20) as f64,
                bytes as f64 / windows
            );
        }
        return Ok(());
    }
    // Per table: the raw tier (reports, their per-workload windows) and
    // the minute tier written with them. The bench's windows are 1 s long,
    // so a minute row stands for 60 windows a process here, 6 at a 10 s
    // interval (`cargo xtask bench history` measures the tiers at 10 s).
    let windows = (m.total_reports * args.processes as u64).max(1) as f64;
    for (table, bytes) in super::history::table_bytes(&data.join("tally.sqlite"))? {
        if ["reports", "windows", "rollup_1m"].contains(&table.as_str()) {
            println!(
                "| table {table} | {:.0} MiB, {:.1} B per process window | |",
                bytes as f64 / (1 << 20) as f64,
                bytes as f64 / windows
            );
        }
    }
    // The store is a gigabyte or more: not worth keeping.
    for f in ["tally.sqlite", "tally.sqlite-wal", "tally.sqlite-shm"] {
        let _ = std::fs::remove_file(data.join(f));
    }
    Ok(())
}

/// What was measured over the interval after warm-up.
struct Measured {
    seconds: f64,
    /// Acknowledged over the whole run, warm-up included (what is on disk).
    total_reports: u64,
    reports: u64,
    cpu_seconds: f64,
    /// The PostgreSQL server's, when it is the store.
    server_cpu_seconds: Option<f64>,
    workloads_per_report: usize,
    report_bytes: usize,
}

async fn drive(args: &Args, url: &str, pid: u32, server: Option<u32>) -> Result<Measured> {
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let mut tasks = Vec::new();
    let mut sample = (0, 0);
    for a in 0..args.agents {
        let node = Node::new(a, args, now_ms - 6 * 3_600_000);
        if a == 0 {
            sample = (node.workloads, node.report(1).len());
        }
        let channel = tonic::transport::Endpoint::from_shared(url.to_owned())?
            .connect()
            .await
            .context("cannot connect to the collector")?;
        tasks.push(tokio::spawn(stream_agent(
            node,
            channel,
            args.in_flight,
            acked.clone(),
            stop.clone(),
        )));
    }
    let hz = super::clock_ticks_per_second()? as f64;
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    let (t0, a0, c0, s0) = (
        Instant::now(),
        acked.load(Ordering::Relaxed),
        super::cpu_ticks(pid)?,
        server.map(server_ticks),
    );
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let (t1, a1, c1, s1) = (
        Instant::now(),
        acked.load(Ordering::Relaxed),
        super::cpu_ticks(pid)?,
        server.map(server_ticks),
    );
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    Ok(Measured {
        seconds: (t1 - t0).as_secs_f64(),
        total_reports: acked.load(Ordering::Relaxed),
        reports: a1 - a0,
        cpu_seconds: (c1 - c0) as f64 / hz,
        server_cpu_seconds: s0.zip(s1).map(|(a, b)| b.saturating_sub(a) as f64 / hz),
        workloads_per_report: sample.0,
        report_bytes: sample.1,
    })
}

/// One simulated agent: streams reports with at most `in_flight` unacked.
async fn stream_agent(
    node: Node,
    channel: tonic::transport::Channel,
    in_flight: usize,
    acked: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let (tx, rx) = mpsc::channel::<Bytes>(in_flight);
    let mut acks = pb::raw::ingest_stream(channel, ReceiverStream::new(rx))
        .await
        .context("cannot open the ingest stream")?
        .into_inner();
    let mut sent: u64 = 0;
    let mut last_ack: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        // Keep `in_flight` reports outstanding.
        while sent < last_ack + in_flight as u64 {
            sent += 1;
            if tx.send(node.report(sent)).await.is_err() {
                anyhow::bail!("the collector closed the stream");
            }
        }
        match acks.next().await {
            Some(Ok(ack)) => {
                acked.fetch_add(ack.last_stored_sequence - last_ack, Ordering::Relaxed);
                last_ack = ack.last_stored_sequence;
            }
            Some(Err(status)) => anyhow::bail!("the collector failed the stream: {status}"),
            None => anyhow::bail!("the collector ended the stream"),
        }
    }
    Ok(())
}

/// A simulated node: its processes' windows are encoded once, in a few
/// variants; a report is a small encoded header plus one variant (protobuf
/// fields concatenate).
struct Node {
    name: String,
    instance: String,
    start_ms: i64,
    variants: Vec<Bytes>,
    workloads: usize,
}

impl Node {
    fn new(index: usize, args: &Args, start_ms: i64) -> Self {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (index as u64 + 1));
        let in_containers = ((args.processes as f64) * args.in_containers.clamp(0.0, 1.0)) as usize;
        let containers: Vec<String> = (0..in_containers.div_ceil(4))
            .map(|_| {
                format!(
                    "{:016x}{:016x}{:016x}{:016x}",
                    rng.next(),
                    rng.next(),
                    rng.next(),
                    rng.next()
                )
            })
            .collect();
        let procs: Vec<Proc> = (0..args.processes)
            .map(|i| {
                let container = (i < in_containers).then_some(i / 4);
                Proc::new(i, container.map(|c| (c, &containers[c])), &mut rng)
            })
            .collect();
        let variants = (0..8)
            .map(|v| {
                let r = pb::NodeReport {
                    processes: procs.iter().map(|p| p.window(v, &mut rng)).collect(),
                    // As an agent sends them: each container's pod once,
                    // its processes referring to it.
                    pods: containers.iter().map(|id| pod(id)).collect(),
                    ..Default::default()
                };
                Bytes::from(r.encode_to_vec())
            })
            .collect();
        Self {
            name: format!("ip-10-0-{}-{}.ec2.internal", index / 250, index % 250),
            instance: format!("{:016x}{:016x}", rng.next(), rng.next()),
            start_ms,
            variants,
            workloads: containers.len() + (args.processes - in_containers),
        }
    }

    fn report(&self, sequence: u64) -> Bytes {
        let end = self.start_ms + sequence as i64 * 1000;
        let head = pb::NodeReport {
            node: Some(pb::NodeIdentity {
                node_name: self.name.clone(),
                instance_type: "m6i.2xlarge".into(),
                zone: "us-east-1a".into(),
                region: "us-east-1".into(),
                lifecycle: "on-demand".into(),
                agent_version: "0.1.0".into(),
                agent_instance: self.instance.clone(),
                agent_start_unix_ms: self.start_ms,
                cpus: 8,
            }),
            sequence,
            window_start_unix_ms: end - 1000,
            window_end_unix_ms: end,
            processes: Vec::new(),
            pods: Vec::new(),
            container_pressures: Vec::new(),
            agent: Some(pb::AgentStats {
                cpu_seconds: 0.002,
                rss_bytes: 7 << 20,
                lost_updates: 0,
                dropped_reports: 0,
            }),
        };
        let body = &self.variants[sequence as usize % self.variants.len()];
        let mut out = Vec::with_capacity(body.len() + 256);
        head.encode(&mut out).expect("a Vec grows");
        out.extend_from_slice(body);
        Bytes::from(out)
    }
}

/// One simulated process.
struct Proc {
    pid: u32,
    start_ticks: u64,
    comm: &'static str,
    runtime: pb::Runtime,
    container: Option<String>,
    cgroup_path: String,
    cores: f64,
    /// Its container's pod in the report's table (1-based; 0 for none), as
    /// an agent with the API server in reach sends it.
    pod_ref: u32,
}

impl Proc {
    fn new(i: usize, container: Option<(usize, &String)>, rng: &mut Rng) -> Self {
        const KINDS: [(&str, pb::Runtime); 6] = [
            ("java", pb::Runtime::Jvm),
            ("server", pb::Runtime::Go),
            ("node", pb::Runtime::Node),
            ("python3", pb::Runtime::Python),
            ("envoy", pb::Runtime::Native),
            ("dotnet", pb::Runtime::Dotnet),
        ];
        let (comm, runtime) = KINDS[i % KINDS.len()];
        let cgroup_path = match container {
            Some((_, id)) => format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{:08x}_{:04x}_{:04x}.slice/cri-containerd-{id}.scope",
                rng.next() as u32,
                rng.next() as u16,
                rng.next() as u16
            ),
            None => format!("/system.slice/{comm}-{i}.service"),
        };
        Self {
            pid: 1000 + i as u32 * 7,
            start_ticks: 50_000 + rng.below(1_000_000),
            comm,
            runtime,
            container: container.map(|(_, id)| id.clone()),
            cgroup_path,
            cores: [0.01, 0.05, 0.2, 0.8][rng.below(4) as usize],
            pod_ref: container.map_or(0, |(c, _)| c as u32 + 1),
        }
    }

    fn window(&self, variant: usize, rng: &mut Rng) -> pb::ProcessWindow {
        let jitter = 0.8 + 0.4 * (rng.below(1000) as f64 / 1000.0);
        let cpu = self.cores * jitter;
        let gc = if matches!(self.runtime, pb::Runtime::Jvm | pb::Runtime::Go) {
            cpu * 0.08
        } else {
            0.0
        };
        let delta = pb::Counters {
            cpu_samples: (cpu * 99.0) as u64,
            cpu_seconds: cpu,
            mmap_calls: rng.below(40),
            mmap_bytes: rng.below(64) << 20,
            munmap_calls: rng.below(30),
            munmap_bytes: rng.below(48) << 20,
            brk_calls: rng.below(5),
            brk_bytes: rng.below(4) << 16,
            mremap_calls: rng.below(2),
            mremap_bytes: 0,
            madvise_calls: rng.below(20),
            madvise_dontneed_bytes: rng.below(32) << 20,
            madvise_free_bytes: 0,
            madvise_other_bytes: rng.below(4) << 12,
            minor_faults: rng.below(20_000),
            major_faults: rng.below(3),
            gc_cpu_seconds: gc,
            gc_cycles: if gc > 0.0 { rng.below(10) } else { 0 },
            gc_pause_seconds: gc / 10.0,
            gc_thread_cpu_seconds: gc * 0.75,
            gc_stack_cpu_seconds: gc * 0.25,
            gc_blind_cpu_seconds: 0.0,
            memory_stall_us: None,
        };
        let k = 3600 + variant as u64;
        let total = pb::Counters {
            cpu_samples: delta.cpu_samples * k,
            cpu_seconds: delta.cpu_seconds * k as f64,
            mmap_calls: delta.mmap_calls * k,
            mmap_bytes: delta.mmap_bytes * k,
            munmap_calls: delta.munmap_calls * k,
            munmap_bytes: delta.munmap_bytes * k,
            minor_faults: delta.minor_faults * k,
            major_faults: delta.major_faults * k,
            gc_cpu_seconds: gc * k as f64,
            gc_thread_cpu_seconds: gc * 0.75 * k as f64,
            gc_stack_cpu_seconds: gc * 0.25 * k as f64,
            ..delta
        };
        let thread_groups = if gc > 0.0 {
            vec![
                pb::ThreadGroup {
                    name: self.comm.into(),
                    threads: 1,
                    cpu_seconds: cpu - gc,
                    gc: false,
                },
                pb::ThreadGroup {
                    name: "GC Thread#".into(),
                    threads: 4,
                    cpu_seconds: gc,
                    gc: true,
                },
            ]
        } else {
            Vec::new()
        };
        pb::ProcessWindow {
            key: Some(pb::ProcessKey {
                pid: self.pid,
                start_ticks: self.start_ticks,
            }),
            comm: self.comm.into(),
            cgroup_id: 10_000 + u64::from(self.pid),
            cgroup_path: self.cgroup_path.clone(),
            container_id: self.container.clone().unwrap_or_default(),
            runtime: self.runtime as i32,
            delta: Some(delta),
            total: Some(total),
            rss_bytes: (50 + rng.below(500)) << 20,
            exited: false,
            verdict: Some(pb::Verdict {
                kind: pb::VerdictKind::VerdictSteady as i32,
                confidence: 0.9,
                reasons: vec![format!("{:.2} cores", cpu)],
            }),
            thread_groups,
            pod_ref: self.pod_ref,
            ..Default::default()
        }
    }
}

/// A container's pod, named from its id as a Deployment's would be: the same
/// for each of the container's processes, as an agent sends it.
fn pod(container_id: &str) -> pb::PodMetadata {
    let app = format!("svc-{}", &container_id[..6]);
    pb::PodMetadata {
        namespace: "payments".into(),
        pod_name: format!("{app}-7d9f8b6c4-{}", &container_id[6..11]),
        pod_uid: format!(
            "{}-{}-{}-{}-{}",
            &container_id[..8],
            &container_id[8..12],
            &container_id[12..16],
            &container_id[16..20],
            &container_id[20..32]
        ),
        container_name: "app".into(),
        owner_kind: "Deployment".into(),
        owner_name: app.clone(),
        labels: [
            ("app.kubernetes.io/name".to_owned(), app.clone()),
            ("app".to_owned(), app),
        ]
        .into_iter()
        .collect(),
        qos_class: "Burstable".into(),
        cpu_request_millicores: 500,
        cpu_limit_millicores: 2000,
        memory_request_bytes: 512 << 20,
        memory_limit_bytes: 2 << 30,
        source: "api-server".into(),
    }
}

/// xorshift64: deterministic filler values.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn print_table(args: &Args, m: &Measured, peak_kib: u64, db_bytes: u64) {
    let windows = m.reports * args.processes as u64;
    let per_core = windows as f64 / m.cpu_seconds.max(1e-9);
    let verdict = if per_core >= TARGET_WINDOWS_PER_CORE_SECOND {
        "met"
    } else {
        "**missed**"
    };
    println!(
        "ingest: {} agents × {} processes a report ({} workloads a report, {:.1} KiB encoded), --store {:?}, --sync {}, {:.1} s measured",
        args.agents,
        args.processes,
        m.workloads_per_report,
        m.report_bytes as f64 / 1024.0,
        args.store,
        args.sync,
        m.seconds
    );
    println!();
    println!("| figure | value | target |");
    println!("| --- | ---: | --- |");
    println!(
        "| reports/s (wall clock) | {:.0} | |",
        m.reports as f64 / m.seconds
    );
    println!(
        "| process windows/s (wall clock) | {:.0} | |",
        windows as f64 / m.seconds
    );
    println!(
        "| collector CPU | {:.2} s in {:.1} s ({:.0}% of its core) | |",
        m.cpu_seconds,
        m.seconds,
        100.0 * m.cpu_seconds / m.seconds
    );
    println!(
        "| reports/s per core | {:.0} | |",
        m.reports as f64 / m.cpu_seconds.max(1e-9)
    );
    println!(
        "| process windows/s per core | {per_core:.0} | ≥ {TARGET_WINDOWS_PER_CORE_SECOND:.0}: {verdict} |"
    );
    if let Some(server) = m.server_cpu_seconds {
        println!(
            "| PostgreSQL server CPU | {server:.2} s ({:.0} µs a report, {:.0} process windows/s per server core) | |",
            1e6 * server / m.reports.max(1) as f64,
            windows as f64 / server.max(1e-9)
        );
    }
    println!(
        "| collector peak RSS (VmHWM) | {:.1} MiB | |",
        peak_kib as f64 / 1024.0
    );
    println!(
        "| store on disk (SQLite db + WAL, or the PostgreSQL database after VACUUM) | {:.0} MiB, {:.0} B per process window | |",
        db_bytes as f64 / (1 << 20) as f64,
        db_bytes as f64 / (m.total_reports * args.processes as u64).max(1) as f64
    );
}
