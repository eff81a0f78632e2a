//! Benchmarks. Each prints a table of medians and ratios against the
//! reference it names.
//!
//! Also the plumbing they share: pinning processes to CPUs, tracers run as
//! children that are always stopped (or killed) before the benchmark moves
//! on, and the few /proc fields the benchmarks read.
#[cfg(feature = "ingest-bench")]
mod history;
#[cfg(feature = "ingest-bench")]
mod ingest;
mod overhead;
mod recommendations;
mod top;

use std::{
    fs::{self, File},
    io::{self, BufRead as _, BufReader},
    os::unix::process::{CommandExt as _, ExitStatusExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail, ensure};

#[derive(Debug, clap::Subcommand)]
pub enum Bench {
    /// Added CPU per iteration of an mmap/touch/madvise/munmap loop: bare,
    /// under the agent, and under bpftrace.
    Overhead(overhead::Args),
    /// Process windows one collector core stores durably per second, from
    /// simulated agents streaming realistic reports.
    #[cfg(feature = "ingest-bench")]
    Ingest(ingest::Args),
    /// Process windows one collector core stores durably per second, from
    /// simulated agents streaming realistic reports (rebuilds xtask with
    /// its gRPC client; `--help` there lists the options).
    #[cfg(not(feature = "ingest-bench"))]
    #[command(disable_help_flag = true)]
    Ingest {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// A month of a 1,000-node cluster's rolled-up history: bytes a row
    /// and a process window in each tier, and `agent report --since 30d`.
    #[cfg(feature = "ingest-bench")]
    History(history::Args),
    /// The same (rebuilds xtask with the store and its gRPC client).
    #[cfg(not(feature = "ingest-bench"))]
    #[command(disable_help_flag = true)]
    History {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Frame time and CPU of the interactive `agent top` with 2,000
    /// synthetic processes at a 1 s refresh.
    Top(top::Args),
    /// Predicted vs measured savings of Tally's runtime recommendations:
    /// fixed-work Go, JVM (G1, Parallel) and Node services, each with a
    /// twin running the change (about 15 minutes).
    Recommendations,
}

pub fn run(which: Bench, root: &Path) -> Result<()> {
    match which {
        Bench::Overhead(args) => overhead::run(&args, root),
        #[cfg(feature = "ingest-bench")]
        Bench::Ingest(args) => ingest::run(&args, root),
        #[cfg(not(feature = "ingest-bench"))]
        Bench::Ingest { args } => crate::cmd::run(
            crate::cmd::cargo()
                .args(["run", "--quiet", "--package", "xtask", "--features"])
                .args(["ingest-bench", "--", "bench", "ingest"])
                .args(args)
                .current_dir(root),
        ),
        #[cfg(feature = "ingest-bench")]
        Bench::History(args) => history::run(&args, root),
        #[cfg(not(feature = "ingest-bench"))]
        Bench::History { args } => crate::cmd::run(
            crate::cmd::cargo()
                .args(["run", "--quiet", "--package", "xtask", "--features"])
                .args(["ingest-bench", "--", "bench", "history"])
                .args(args)
                .current_dir(root),
        ),
        Bench::Top(args) => top::run(&args, root),
        Bench::Recommendations => recommendations::run(root),
    }
}

/// How long a tracer gets to exit after SIGINT (bpftrace prints its maps
/// first) before it is killed and the run fails.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The two CPUs a benchmark uses: one for the workload alone, one for
/// everything else (tracers' userspace, xtask's own threads).
#[derive(Debug, Clone, Copy)]
pub struct Cpus {
    pub workload: usize,
    pub others: usize,
}

impl Cpus {
    /// The first two CPUs this process may run on (CPU 0 and 1 on the VM).
    pub fn pick() -> Result<Self> {
        // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: the pointer and size describe `set`.
        if unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
            return Err(io::Error::last_os_error()).context("sched_getaffinity");
        }
        let allowed: Vec<usize> =
            // SAFETY: `c` is below CPU_SETSIZE, inside `set`.
            (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect();
        ensure!(
            allowed.len() >= 2,
            "the benchmark needs two CPUs (the workload alone on one), but may only use {allowed:?}"
        );
        Ok(Self {
            others: allowed[0],
            workload: allowed[1],
        })
    }
}

fn cpu_set(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: callers pass CPUs from `Cpus::pick`, below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    set
}

/// Pins the calling thread, and the threads it starts later, to `cpu`.
pub fn pin_self(cpu: usize) -> Result<()> {
    let set = cpu_set(cpu);
    // SAFETY: the pointer and size describe `set`.
    if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("cannot pin xtask to CPU {cpu}"));
    }
    Ok(())
}

/// Makes the command's process start pinned to `cpu`, with SIGINT at its
/// default (a shell that started xtask in the background may have left it
/// ignored, and the tracers are stopped with it), and killed if xtask dies
/// without stopping it.
pub fn pin(c: &mut Command, cpu: usize) {
    let set = cpu_set(cpu);
    let child_setup = move || {
        // SAFETY: sched_setaffinity, signal and prctl are async-signal-safe,
        // and `set` was built before the fork.
        unsafe {
            if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(io::Error::last_os_error());
            }
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
        }
        Ok(())
    };
    // SAFETY: the closure only makes async-signal-safe calls.
    unsafe { c.pre_exec(child_setup) };
}

/// A long-running child whose stdout is read line by line (by a thread, so
/// it never blocks on a full pipe) and which is always reaped: `stop` ends it
/// with SIGINT, and dropping it without `stop` (an error path) kills it.
pub struct Tracer {
    name: &'static str,
    child: Child,
    lines: Receiver<String>,
    output: Vec<String>,
    log: PathBuf,
    reaped: bool,
}

impl Tracer {
    /// Starts `c` pinned to `cpu`, its stderr into `log`.
    pub fn start(name: &'static str, mut c: Command, cpu: usize, log: &Path) -> Result<Self> {
        let stderr =
            File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr);
        pin(&mut c, cpu);
        let mut child = c
            .spawn()
            .with_context(|| format!("cannot start {name} ({:?})", c.get_program()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            name,
            child,
            lines,
            output: Vec::new(),
            log: log.to_path_buf(),
            reaped: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads stdout until a line matches (true) or `timeout` passes (false);
    /// fails if the tracer exits meanwhile.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        mut matches: impl FnMut(&str) -> bool,
    ) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => {
                    let hit = matches(&line);
                    self.output.push(line);
                    if hit {
                        return Ok(true);
                    }
                }
                Err(RecvTimeoutError::Timeout) => return Ok(false),
                Err(RecvTimeoutError::Disconnected) => {
                    // Its stdout closed: it is exiting, or has exited.
                    let status = wait_timeout(&mut self.child, Duration::from_secs(2))?;
                    return Err(self.died(status));
                }
            }
        }
    }

    /// Fails if the tracer has exited (it must outlive the measured run).
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(self.died(Some(status))),
        }
    }

    /// Stops it with SIGINT and returns everything it printed on stdout.
    pub fn stop(mut self) -> Result<Vec<String>> {
        // SAFETY: kill has no memory preconditions; the pid is our unreaped
        // child, so it cannot have been reused.
        unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGINT) };
        let Some(status) = wait_timeout(&mut self.child, STOP_TIMEOUT)? else {
            bail!(
                "{} did not exit within {STOP_TIMEOUT:?} of SIGINT (killed it)",
                self.name
            );
        };
        self.reaped = true;
        // Its stdout is closed; the reader thread delivers what is left.
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.output.push(line);
        }
        ensure!(
            status.success() || status.signal() == Some(libc::SIGINT),
            "{} exited with {status} when stopped; its stderr is in {}",
            self.name,
            self.log.display()
        );
        Ok(std::mem::take(&mut self.output))
    }

    fn died(&mut self, status: Option<ExitStatus>) -> anyhow::Error {
        if status.is_some() {
            self.reaped = true;
        }
        let how = status.map_or_else(
            || "closed its stdout".to_owned(),
            |s| format!("exited ({s})"),
        );
        let stderr = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = &lines[lines.len().saturating_sub(20)..];
        anyhow!(
            "{} {how} before the benchmark stopped it; end of its stderr ({}):\n{}",
            self.name,
            self.log.display(),
            tail.join("\n")
        )
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits for the child's exit for at most `timeout`; None if it is still
/// running.
fn wait_timeout(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Peak resident set size (VmHWM) of a live process, in KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    status_kib(&status, "VmHWM").with_context(|| format!("no VmHWM in {path}"))
}

/// `VmHWM:    8424 kB` → 8424 (the separator is a tab).
fn status_kib(status: &str, field: &str) -> Option<u64> {
    let rest = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?;
    rest.split_whitespace().next()?.parse().ok()
}

/// User plus system CPU of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    stat_cpu_ticks(&stat).with_context(|| format!("cannot parse {path}: {stat}"))
}

/// utime + stime, fields 14 and 15 of /proc/<pid>/stat. The command name
/// (field 2) may hold spaces and parentheses, so count from the last ')'.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // After the command name the first field is field 3 (state).
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second, the unit of /proc/<pid>/stat times (USER_HZ).
pub fn clock_ticks_per_second() -> Result<u64> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz)
        .ok()
        .filter(|&hz| hz > 0)
        .context("sysconf(_SC_CLK_TCK) failed")
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm_from_status() {
        let status = "Name:\tagent\nVmPeak:\t  100 kB\nVmHWM:\t    8424 kB\nVmRSS:\t 8000 kB\n";
        assert_eq!(status_kib(status, "VmHWM"), Some(8424));
        assert_eq!(status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn cpu_ticks_from_stat_with_odd_comm() {
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 3 0 1234 0 0";
        assert_eq!(stat_cpu_ticks(stat), Some(12));
        assert_eq!(stat_cpu_ticks("42 (x) S 1"), None);
    }
}
