//! The collector daemon and its store, for tests that run the whole chain:
//! start it, kill -9 it, restart it on the same address, and read what it
//! stored (through its Query service or straight from the SQLite file).
use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::Duration,
};

use serde_json::Value;
use tally_proto as pb;

/// An `agent collector`, killed when dropped.
pub struct Collector {
    child: Child,
    pub addr: String,
    pub data: PathBuf,
    extra: Vec<String>,
}

impl Collector {
    /// Starts it and waits for its "listening on" line.
    pub fn start(data: &Path, listen: &str) -> Self {
        Self::start_with(data, listen, &[])
    }

    /// Starts it with more arguments (`--token-file …`). Its stderr goes
    /// to `collector.stderr` in `data` (appended across restarts).
    pub fn start_with(data: &Path, listen: &str, extra: &[&str]) -> Self {
        std::fs::create_dir_all(data).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.join("collector.stderr"))
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_agent"))
            .args(["collector", "--listen", listen, "--data"])
            .arg(data)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| {
                panic!(
                    "the collector did not start: {}",
                    std::fs::read_to_string(data.join("collector.stderr")).unwrap_or_default()
                )
            });
        Self {
            child,
            addr,
            data: data.to_path_buf(),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// The same store on the same address, after `kill9`.
    pub fn restart(&mut self) {
        let extra = self.extra.clone();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        *self = Self::start_with(&self.data.clone(), &self.addr.clone(), &extra);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What it wrote on stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.join("collector.stderr")).unwrap_or_default()
    }

    /// Its resident memory, KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn open_store(data: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(data.join("tally.sqlite")).expect("the store opens")
}

/// Every (agent instance, sequences stored), from the collector's SQLite
/// file, instances in name order.
pub fn stored(data: &Path) -> Vec<(String, Vec<u64>)> {
    let db = open_store(data);
    let mut stmt = db
        .prepare("SELECT instance FROM agents ORDER BY instance")
        .unwrap();
    let instances: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    instances
        .into_iter()
        .map(|i| {
            let mut s = db
                .prepare("SELECT sequence FROM reports WHERE agent_instance = ? ORDER BY sequence")
                .unwrap();
            let seqs: Vec<u64> = s
                .query_map([&i], |r| r.get::<_, i64>(0))
                .unwrap()
                .map(|v| v.unwrap() as u64)
                .collect();
            (i, seqs)
        })
        .collect()
}

/// Every stored report, decoded, in (instance, sequence) order.
pub fn stored_reports(data: &Path) -> Vec<pb::NodeReport> {
    use prost::Message as _;
    let db = open_store(data);
    let mut stmt = db
        .prepare("SELECT body FROM reports ORDER BY agent_instance, sequence")
        .unwrap();
    stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|b| pb::NodeReport::decode(&b.unwrap()[..]).expect("a stored report decodes"))
        .collect()
}

/// `PRAGMA integrity_check` of the store: "ok" when sound.
pub fn integrity_check(data: &Path) -> String {
    let db = open_store(data);
    let rows: Vec<String> = db
        .prepare("PRAGMA integrity_check")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows.join("; ")
}

/// A container workload's stored windows, summed, through the collector's
/// Query service (`WorkloadHistory` since the epoch).
pub fn stored_container_totals(url: &str, container_id: &str) -> pb::Counters {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let history = rt.block_on(async {
        let mut client = pb::query_client::QueryClient::connect(url.to_string())
            .await
            .expect("the query service answers");
        client
            .workload_history(pb::WorkloadHistoryRequest {
                key: Some(pb::WorkloadKey {
                    key: Some(pb::workload_key::Key::ContainerId(container_id.into())),
                }),
                since_unix_ms: 0,
            })
            .await
            .expect("the workload's history")
            .into_inner()
    });
    let mut total = pb::Counters::default();
    for point in history.points {
        let d = point.delta.unwrap_or_default();
        total.cpu_samples += d.cpu_samples;
        total.mmap_calls += d.mmap_calls;
        total.munmap_calls += d.munmap_calls;
        total.minor_faults += d.minor_faults;
        total.major_faults += d.major_faults;
    }
    total
}

/// The same counters summed over the process windows an agent printed
/// (`--json`) for one container.
pub fn printed_container_totals(lines: &[Value], container_id: &str) -> pb::Counters {
    let mut total = pb::Counters::default();
    let field = |w: &Value, f: &str| w[f].as_u64().unwrap_or_else(|| panic!("{f} in {w}"));
    for w in lines
        .iter()
        .filter(|l| l.get("pid").is_some() && l["container_id"] == container_id)
    {
        total.cpu_samples += field(w, "cpu_samples");
        total.mmap_calls += field(w, "mmap_calls");
        total.munmap_calls += field(w, "munmap_calls");
        total.minor_faults += field(w, "minor_faults");
        total.major_faults += field(w, "major_faults");
    }
    total
}

/// The sequences each agent instance logged as acknowledged (`acked=N`,
/// with `TALLY_LOG=…,tally_node::stream=debug`), the highest.
pub fn highest_acked(stderr: &str) -> u64 {
    stderr
        .lines()
        .filter_map(|l| {
            l.split("acked=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .max()
        .unwrap_or(0)
}

/// Results of a fault test, appended as one tab-separated line (test, load
/// held, faults injected, bad inputs tried, records lost) to the file named
/// by `TALLY_SOAK_RESULTS`: `cargo xtask soak` prints them as a table.
pub fn record_result(test: &str, load: &str, faults: &str, bad_inputs: u64, lost: u64) {
    let Some(path) = std::env::var_os("TALLY_SOAK_RESULTS") else {
        return;
    };
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("the soak results file");
    writeln!(f, "{test}\t{load}\t{faults}\t{bad_inputs}\t{lost}").unwrap();
}

/// True for the long versions (`TALLY_SOAK=1`, `cargo xtask soak`).
pub fn soak() -> bool {
    std::env::var("TALLY_SOAK").is_ok_and(|v| v == "1")
}
