//! Shared by the integration tests: run the real agent, run known C
//! workloads in cgroups of their own, and read both sides' numbers.

use std::{
    fs,
    io::{BufRead as _, BufReader, Read as _},
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex, MutexGuard,
        mpsc::{self, Receiver},
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod churn;
pub mod container;
pub mod daemons;
pub mod kubelet;

/// The one lock of this test binary: a test that loads the programs,
/// starts the agent, the collector, a container or another daemon,
/// measures counts or timing, or uses a shared file or port holds it for
/// its whole run, so no two of them (of any area) run at once and disturb
/// each other. Only pure tests run without it.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `tool` must exist; off CI a missing one skips, under CI it fails.
pub fn require(tool: &str, test: &str) -> bool {
    let answers = |arg: &str| {
        Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    };
    if answers("--version") || answers("version") {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {tool} is missing under CI (cargo xtask test installs it)");
    }
    eprintln!("SKIP {test}: {tool} is not installed");
    false
}

/// True if the tests can load eBPF programs. Off CI a missing privilege
/// skips loudly; under CI (`CI=true`) it fails.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: integration tests need root under CI");
    }
    eprintln!("SKIP {test}: needs root to load eBPF programs (run `sudo cargo xtask test`)");
    false
}

/// Builds `tests/workloads/go/<program>.go` into `out`, with `go build`'s
/// `flags` and `env` (GOARCH, CGO_ENABLED…), and a Go cache in the test
/// binary's scratch directory.
pub fn go_build(program: &str, out: &Path, flags: &[&str], env: &[(&str, &str)]) -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/workloads/go/{program}.go"));
    let status = Command::new("go")
        .arg("build")
        .args(flags)
        .arg("-o")
        .arg(out)
        .arg(&src)
        .envs(env.iter().copied())
        .env("GOCACHE", tmp.join("gocache"))
        .env("HOME", tmp)
        .status()
        .expect("go runs");
    assert!(
        status.success(),
        "go build {flags:?} {env:?} {}",
        src.display()
    );
    out.to_path_buf()
}

/// Builds `tests/workloads/workload.c` once per test binary.
pub fn workload() -> PathBuf {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(path) = built.as_ref() {
        return path.clone();
    }
    let out = gcc("workload.c", "workload", &[]);
    *built = Some(out.clone());
    out
}

/// Compiles `tests/workloads/<source>` with gcc (`-O2 -Wall` and `flags`)
/// to `<target tmp>/<name>`.
pub fn gcc(source: &str, name: &str, flags: &[&str]) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/workloads")
        .join(source);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let status = Command::new("gcc")
        .args(["-O2", "-Wall"])
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .expect("gcc runs");
    assert!(status.success(), "gcc failed on {}", src.display());
    out
}

/// A scratch directory on a real disk (not tmpfs): major faults need one.
pub fn scratch_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

/// The cgroup2 mount of this machine.
pub fn cgroup2_mount() -> PathBuf {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    tally_node::enrich::cgroup::find_cgroup2_mount(&mountinfo).expect("a cgroup2 mount")
}

/// A cgroup created for a test, removed (deepest first) on drop.
pub struct TestCgroup {
    pub dir: PathBuf,
    /// Path relative to the cgroup2 mount, as the agent reports it.
    pub path: String,
    created: Vec<PathBuf>,
}

impl TestCgroup {
    /// Creates `<mount>/<rel>`, with every missing parent.
    pub fn create(rel: &str) -> Self {
        let mount = cgroup2_mount();
        let mut created = Vec::new();
        let mut dir = mount.clone();
        for part in rel.trim_matches('/').split('/') {
            dir = dir.join(part);
            if !dir.exists() {
                fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
                created.push(dir.clone());
            }
        }
        Self {
            dir,
            path: format!("/{}", rel.trim_matches('/')),
            created,
        }
    }

    /// The cgroup id: the inode of its directory.
    pub fn id(&self) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        fs::metadata(&self.dir).unwrap().ino()
    }

    /// Makes `cmd` start inside this cgroup (written before exec, so every
    /// syscall of the new program is the cgroup's).
    pub fn enter_on_spawn(&self, cmd: &mut Command) {
        let procs = fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.procs"))
            .unwrap();
        let fd = procs.as_raw_fd();
        // SAFETY: the hook only calls write(2), which is async-signal-safe;
        // the file outlives the spawn because the closure owns it.
        unsafe {
            cmd.pre_exec(move || {
                let _keep = &procs;
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for dir in self.created.iter().rev() {
            // Processes may take a moment to leave after exit.
            for _ in 0..50 {
                if fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Runs a workload to completion and returns its JSON report.
pub fn run_workload(cgroup: Option<&TestCgroup>, args: &[&str]) -> Value {
    let mut cmd = Command::new(workload());
    cmd.args(args).stdout(Stdio::piped());
    if let Some(cg) = cgroup {
        cg.enter_on_spawn(&mut cmd);
    }
    let out = cmd.output().expect("workload runs");
    assert!(out.status.success(), "workload {args:?} failed: {out:?}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("workload output {:?}: {e}", out.stdout))
}

/// The agent, running `top --batch --json`.
pub struct Agent {
    child: Child,
    lines: Receiver<Value>,
    stderr: Arc<Mutex<String>>,
}

impl Agent {
    /// Starts the agent with a 0.5 s interval and waits until its probes
    /// are attached.
    pub fn start(extra: &[&str]) -> Self {
        Self::start_with_env(extra, &[])
    }

    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut args = vec!["top", "--batch", "--json"];
        args.extend_from_slice(extra);
        if !extra.contains(&"--interval") {
            args.extend_from_slice(&["--interval", "0.5"]);
        }
        Self::spawn(&args, env)
    }

    /// Runs the agent with exactly these arguments (e.g. `run --json …`),
    /// reading JSON lines from its stdout, and waits until its probes are
    /// attached.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_agent"));
        cmd.args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("agent starts");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("agent printed {line:?}: {e}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut pipe = child.stderr.take().unwrap();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut agent = Self {
            child,
            lines,
            stderr,
        };
        agent.wait_for_stderr("probes attached", Duration::from_secs(30));
        agent
    }

    /// Waits until stderr contains `needle`; panics with what it holds if not.
    pub fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.stderr().contains(needle) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "agent exited ({status}) before {needle:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "no {needle:?} from the agent within {timeout:?}; stderr:\n{}",
            self.stderr()
        );
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGINT (the agent flushes and exits), then every line it printed
    /// and its stderr; unlike `stop`, no extra windows are waited for.
    pub fn interrupt(mut self) -> (Vec<Value>, String, std::process::ExitStatus) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = self.child.wait().unwrap();
        // Every line: the reader ends (and disconnects) at end of file.
        let mut lines = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            lines.push(line);
        }
        thread::sleep(Duration::from_millis(50));
        (lines, self.stderr(), status)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGINT, then at most `wait` for the agent to exit (it flushes its
    /// exports); the lines it printed and its stderr. An agent that did not
    /// exit is killed when dropped.
    pub fn interrupt_within(mut self, wait: Duration) -> (Vec<Value>, String) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        thread::sleep(Duration::from_millis(100));
        let lines = self.lines.try_iter().collect();
        (lines, self.stderr())
    }

    /// The lines printed since the previous call, without stopping.
    pub fn take_lines(&self) -> Vec<Value> {
        self.lines.try_iter().collect()
    }

    /// Waits (at most 10 s) for the window that reports `pid`'s exit, which
    /// carries the counts of its last moments and can come two windows
    /// after the exit (a swept record), then stops as [`Agent::stop`].
    pub fn stop_after_exit_of(self, pid: u64) -> (Vec<Value>, String, std::process::ExitStatus) {
        let mut lines = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && !lines
                .iter()
                .any(|l: &Value| l["pid"] == pid && l["exited"] == true)
        {
            thread::sleep(Duration::from_millis(100));
            lines.extend(self.take_lines());
        }
        let (rest, stderr, status) = self.stop();
        lines.extend(rest);
        (lines, stderr, status)
    }

    /// Lets two more windows pass (so exits are reported), stops the agent
    /// with SIGINT, and returns every line it printed and its exit status.
    pub fn stop(mut self) -> (Vec<Value>, String, std::process::ExitStatus) {
        thread::sleep(Duration::from_millis(1200));
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = self.child.wait().unwrap();
        let lines: Vec<Value> = self.lines.try_iter().collect();
        thread::sleep(Duration::from_millis(50));
        let stderr = self.stderr();
        (lines, stderr, status)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every window of `pid`.
pub fn windows_of(lines: &[Value], pid: u64) -> Vec<&Value> {
    lines.iter().filter(|l| l["pid"] == pid).collect()
}

/// Sum of a numeric field over windows.
pub fn sum(windows: &[&Value], field: &str) -> f64 {
    windows
        .iter()
        .map(|w| {
            w[field]
                .as_f64()
                .unwrap_or_else(|| panic!("{field} in {w}"))
        })
        .sum()
}

/// `|got - want| <= tolerance * want`, with a message that shows both.
#[track_caller]
pub fn assert_within(field: &str, got: f64, want: f64, tolerance: f64) {
    let diff = (got - want).abs();
    assert!(
        diff <= tolerance * want.abs(),
        "{field}: agent {got}, expected {want} (off by {diff}, {:.3}%; allowed {:.1}%)",
        100.0 * diff / want.abs().max(1e-9),
        100.0 * tolerance
    );
}

/// A unique name for test cgroups.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() ^ rand_u32() as u128
    )
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    u32::from_le_bytes(b)
}
