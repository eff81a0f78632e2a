//! The interactive `agent top`, for real, in tmux, as root: a known
//! workload shows up, the table sorts by CPU, the filter narrows it to the
//! workload, the detail view opens, `q` quits, and the terminal is given
//! back (previous screen content, a sane `stty`). A second run is ended by
//! SIGTERM and must give the terminal back too.
//!
//! Every step is checked on what tmux shows (`capture-pane -p`).
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::common::{self, TestCgroup, require_root, serial, unique};

/// The workload's name, as its comm: recognisable, under 16 characters.
const SPIN: &str = "tallytopspin";

/// A private tmux server (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(width: u16, height: u16) -> Self {
        let socket = unique("tally-top");
        let t = Self { socket };
        let status = t
            .cmd()
            .args(["-f", "/dev/null", "new-session", "-d", "-s", "top"])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .args([
                "env",
                "-i",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME=/root",
            ])
            .args(["TERM=xterm-256color", "PS1=tally-e2e$ "])
            .args(["bash", "--norc", "--noprofile", "-i"])
            .status()
            .expect("tmux runs");
        assert!(status.success(), "tmux new-session failed");
        t
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]);
        c
    }

    /// Types text literally.
    fn type_text(&self, text: &str) {
        let ok = self
            .cmd()
            .args(["send-keys", "-t", "top", "-l", text])
            .status()
            .unwrap()
            .success();
        assert!(ok, "send-keys {text:?}");
    }

    /// Sends named keys (Enter, Down, Escape…).
    fn keys(&self, keys: &[&str]) {
        let ok = self
            .cmd()
            .args(["send-keys", "-t", "top"])
            .args(keys)
            .status()
            .unwrap()
            .success();
        assert!(ok, "send-keys {keys:?}");
    }

    /// What the pane shows now.
    fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "top"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen satisfies `ok`; panics with the screen if not.
    #[track_caller]
    /// A pane at its shell's prompt that has echoed `marker`: the line
    /// the screen must show again once `agent top` gives the terminal back.
    fn at_prompt_with(width: u16, height: u16, marker: &str) -> Self {
        let tmux = Self::start(width, height);
        tmux.wait_for("the shell", Duration::from_secs(10), |s| {
            s.contains("tally-e2e$")
        });
        tmux.type_text(&format!("echo {marker}"));
        tmux.keys(&["Enter"]);
        tmux
    }

    fn wait_for(&self, what: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; the pane shows:\n{s}");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// pid of the shell in the pane.
    fn shell_pid(&self) -> u32 {
        let out = self
            .cmd()
            .args(["display-message", "-p", "-t", "top", "#{pane_pid}"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // A test that failed half-way leaves `agent top` running in the
        // pane: end it with the pane (a_closed_terminal_ends_agent_top
        // checks that it ends by itself).
        let shell = self
            .cmd()
            .args(["display-message", "-p", "-t", "top", "#{pane_pid}"])
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<u32>()
                    .ok()
            });
        let _ = self.cmd().arg("kill-server").status();
        if let Some(shell) = shell {
            for pid in children_of(shell) {
                // SAFETY: plain kill(2) of a process this test started.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    }
}

/// Processes whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|p| {
                    let stat = fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
                    let after = stat.rsplit(')').next().unwrap_or("");
                    after.split_whitespace().nth(1).and_then(|s| s.parse().ok()) == Some(parent)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A child killed on drop.
struct Spinner(Child);

impl Drop for Spinner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// True when tmux can run; off CI a missing tmux skips loudly.
fn require_tmux(test: &str) -> bool {
    if Command::new("tmux").arg("-V").output().is_ok() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: tmux is missing under CI (cargo xtask setup installs it)");
    }
    eprintln!("SKIP {test}: needs tmux (apt-get install tmux, or cargo xtask setup)");
    false
}

/// tests/workloads/workload.c built as `tallytopspin`, so its comm is one
/// nothing else on the machine has.
fn spinner_binary() -> PathBuf {
    common::gcc("workload.c", SPIN, &[])
}

fn start_spinner(cgroup: &TestCgroup) -> Spinner {
    let mut c = Command::new(spinner_binary());
    c.args(["spin", "300"]).stdout(Stdio::null());
    cgroup.enter_on_spawn(&mut c);
    Spinner(c.spawn().expect("spinner starts"))
}

/// The table's header line and the rows below it (up to the footer).
fn table(screen: &str) -> (Vec<char>, Vec<Vec<char>>) {
    let lines: Vec<&str> = screen.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains("PID") && l.contains("CPU%"))
        .unwrap_or_else(|| panic!("no table header on screen:\n{screen}"));
    // Data rows start with a pid (right-aligned in 7 characters); the
    // footer and blank lines do not.
    let rows = lines[at + 1..]
        .iter()
        .take_while(|l| {
            let pid: String = l.chars().take(7).collect();
            pid.trim().parse::<u32>().is_ok()
        })
        .map(|l| l.chars().collect())
        .collect();
    (lines[at].chars().collect(), rows)
}

/// The CPU% values of the rows, read in the header's column.
fn cpu_column(screen: &str) -> Vec<f64> {
    let (header, rows) = table(screen);
    let h: String = header.iter().collect();
    let title = h.find("CPU%").expect("CPU% in header");
    // Character index of the title's end (the numbers are right-aligned
    // to the title's column, which is 6 wide).
    let start = h[..title].chars().count();
    let end = start + 6;
    rows.iter()
        .filter(|r| r.len() >= end)
        .filter_map(|r| {
            let cell: String = r[start.saturating_sub(1)..end].iter().collect();
            cell.trim().parse().ok()
        })
        .collect()
}

fn assert_terminal_restored(tmux: &Tmux, marker: &str) {
    assert_terminal_restored_after(tmux, marker, "EXIT=0");
}

/// As [`assert_terminal_restored`], with the exit line expected.
fn assert_terminal_restored_after(tmux: &Tmux, marker: &str, exit: &str) {
    // The alternate screen is gone: the shell's screen is back, with what
    // was typed before `agent top` started. The command line itself reads
    // `echo EXIT=$?`: wait for the line the echo prints, which comes once
    // the agent has exited (it stops its collection thread and detaches the
    // probes after giving the terminal back).
    let screen = tmux.wait_for(
        "the shell prompt after agent top",
        Duration::from_secs(15),
        |s| {
            !s.contains("tally top")
                && s.contains(marker)
                && s.lines().any(|l| l.trim_start().starts_with("EXIT="))
        },
    );
    assert!(
        screen.lines().any(|l| l.trim() == exit),
        "agent top did not end with {exit}:\n{screen}"
    );
    tmux.keys(&["clear", "Enter"]);
    thread::sleep(Duration::from_millis(200));
    tmux.type_text("stty -a | tr ';' '\\n' | grep -wE -- '-?(echo|icanon|icrnl|opost|isig)'");
    tmux.keys(&["Enter"]);
    // The command line (which names every flag, and may wrap) is not the
    // output: wait until the output lines show each flag, set or not.
    const FLAGS: [&str; 5] = ["echo", "icanon", "icrnl", "opost", "isig"];
    let output = |s: &str| -> String {
        s.lines()
            .filter(|l| !l.contains("stty") && !l.contains("grep") && !l.contains("tally-e2e$"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let screen = tmux.wait_for("stty output", Duration::from_secs(5), |s| {
        let out = output(s);
        FLAGS.iter().all(|f| {
            out.split_whitespace()
                .any(|w| w == *f || w.strip_prefix('-') == Some(*f))
        })
    });
    let stty = output(&screen);
    for flag in FLAGS {
        assert!(
            stty.split_whitespace().any(|w| w == flag),
            "`{flag}` is not set after agent top quit (raw mode left on):\n{stty}"
        );
        assert!(
            !stty.split_whitespace().any(|w| w == format!("-{flag}")),
            "`-{flag}` after agent top quit:\n{stty}"
        );
    }
}

#[test]
fn top_in_tmux_sort_filter_detail_quit() {
    let _serial = serial();
    if !require_root("top_in_tmux_sort_filter_detail_quit") || !require_tmux("top_tui") {
        return;
    }
    let cgroup = TestCgroup::create(&unique("tally-top-e2e"));
    let spinner = start_spinner(&cgroup);
    let pid = spinner.0.id();
    let marker = "BEFORE-AGENT-TOP";
    let tmux = Tmux::at_prompt_with(140, 40, marker);
    tmux.wait_for("the marker", Duration::from_secs(5), |s| {
        s.lines().any(|l| l.trim() == marker)
    });

    // Start the real agent.
    let agent = env!("CARGO_BIN_EXE_agent");
    tmux.type_text(&format!("{agent} top --interval 0.5; echo EXIT=$?"));
    tmux.keys(&["Enter"]);
    tmux.wait_for("the header", Duration::from_secs(30), |s| {
        s.contains("tally top") && s.contains("PID") && s.contains("CPU%")
    });
    // 1. The workload appears.
    tmux.wait_for("the workload in the table", Duration::from_secs(20), |s| {
        s.lines()
            .any(|l| l.contains(SPIN) && l.contains(&pid.to_string()))
    });

    // 2. Sort by PID (N), then by CPU through the sort menu (s, pick CPU%).
    tmux.type_text("N");
    tmux.wait_for("PID sort", Duration::from_secs(5), |s| {
        s.contains("sort PID▼")
    });
    tmux.type_text("s");
    let menu = tmux.wait_for("the sort menu", Duration::from_secs(5), |s| {
        s.contains("sort by (Enter")
    });
    let menu_rows: Vec<&str> = menu
        .lines()
        .filter(|l| l.contains('│'))
        .map(|l| l.split('│').nth(1).unwrap_or(""))
        .filter(|l| !l.trim().is_empty())
        .collect();
    let pid_at = menu_rows.iter().position(|l| l.contains(" PID ")).unwrap();
    let cpu_at = menu_rows
        .iter()
        .position(|l| l.contains(" CPU% "))
        .unwrap_or_else(|| panic!("no CPU% in the sort menu:\n{menu}"));
    for _ in pid_at..cpu_at {
        tmux.keys(&["Down"]);
    }
    tmux.keys(&["Enter"]);
    let sorted = tmux.wait_for("CPU sort", Duration::from_secs(5), |s| {
        s.contains("sort CPU%▼") && !s.contains("sort by (Enter")
    });
    let cpu = cpu_column(&sorted);
    assert!(cpu.len() >= 2, "too few rows to check the order:\n{sorted}");
    assert!(
        cpu.windows(2).all(|w| w[0] >= w[1]),
        "rows are not sorted by CPU% descending: {cpu:?}\n{sorted}"
    );
    let (_, rows) = table(&sorted);
    let spin_row = rows
        .iter()
        .map(|r| r.iter().collect::<String>())
        .find(|r| r.contains(SPIN))
        .unwrap_or_else(|| panic!("the workload is not on the first screen:\n{sorted}"));
    assert!(
        cpu_column(&sorted).first().copied().unwrap_or(0.0) >= 50.0,
        "the busiest row uses under half a core:\n{sorted}"
    );
    let _ = spin_row;

    // 3. Filter to it.
    tmux.type_text("/");
    tmux.wait_for("the filter prompt", Duration::from_secs(5), |s| {
        s.contains("filter:")
    });
    tmux.type_text(SPIN);
    tmux.keys(&["Enter"]);
    let filtered = tmux.wait_for("the filtered table", Duration::from_secs(5), |s| {
        s.contains(&format!("filter \"{SPIN}\"")) && !s.contains("filter: ")
    });
    let (_, rows) = table(&filtered);
    let rows: Vec<String> = rows.iter().map(|r| r.iter().collect()).collect();
    assert!(!rows.is_empty(), "no row left:\n{filtered}");
    assert!(
        rows.iter().all(|r| r.contains(SPIN)),
        "rows other than the workload are left:\n{filtered}"
    );

    // 4. Its detail view: verdict, charts, threads, symbols.
    tmux.keys(&["Enter"]);
    // The charts are titled by metric (CPU, GC share, page faults,
    // allocation, RSS), each followed by its latest value.
    let detail = tmux.wait_for("the detail view", Duration::from_secs(5), |s| {
        s.contains("verdict") && s.contains("THREADS") && s.contains("GC share")
    });
    assert!(detail.contains(&format!("pid {pid}")), "{detail}");
    assert!(detail.contains("TOP SYMBOLS"), "{detail}");
    for chart in ["page faults", "allocation", "RSS"] {
        assert!(detail.contains(chart), "no {chart} chart:\n{detail}");
    }
    // The spinner's stacks are recorded from the moment the view opened:
    // within a few windows its leaf function is listed with a share.
    tmux.wait_for(
        "top symbols of the workload",
        Duration::from_secs(10),
        |s| {
            let after = s.split("TOP SYMBOLS").nth(1).unwrap_or("");
            after.lines().skip(1).any(|l| l.contains('%'))
        },
    );

    // 5. Quit with q: the terminal is given back.
    tmux.type_text("q");
    assert_terminal_restored(&tmux, marker);
    drop(spinner);
}

#[test]
fn sigterm_gives_the_terminal_back() {
    let _serial = serial();
    if !require_root("sigterm_gives_the_terminal_back") || !require_tmux("top_tui") {
        return;
    }
    let marker = "BEFORE-SIGTERM";
    let tmux = Tmux::at_prompt_with(100, 30, marker);
    let agent = env!("CARGO_BIN_EXE_agent");
    tmux.type_text(&format!("{agent} top --interval 0.5; echo EXIT=$?"));
    tmux.keys(&["Enter"]);
    tmux.wait_for("the header", Duration::from_secs(30), |s| {
        s.contains("tally top") && s.contains("CPU%")
    });
    // The agent is the shell's child.
    let shell = tmux.shell_pid();
    let agent_pid = fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|p| {
            let stat = fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let after = stat.rsplit(')').next().unwrap_or("");
            let ppid = after.split_whitespace().nth(1).and_then(|s| s.parse().ok());
            stat.contains("(agent)") && ppid == Some(shell)
        })
        .expect("agent top runs under the pane's shell");
    // SAFETY: plain kill(2) on the agent this test started.
    unsafe { libc::kill(agent_pid as i32, libc::SIGTERM) };
    assert_terminal_restored(&tmux, marker);
}

#[test]
fn ctrl_c_gives_the_terminal_back() {
    let _serial = serial();
    if !require_tmux("ctrl_c_gives_the_terminal_back") {
        return;
    }
    // Synthetic processes: Ctrl-C is a key in raw mode whatever the source.
    let marker = "BEFORE-CTRL-C";
    let tmux = Tmux::at_prompt_with(80, 24, marker);
    let agent = env!("CARGO_BIN_EXE_agent");
    tmux.type_text(&format!("{agent} top --synthetic 300; echo EXIT=$?"));
    tmux.keys(&["Enter"]);
    tmux.wait_for("the table", Duration::from_secs(30), |s| {
        s.contains("tally top") && s.contains("synthetic") && s.contains("CPU%")
    });
    tmux.keys(&["C-c"]);
    assert_terminal_restored(&tmux, marker);
}

/// `agent top --collector` against a collector that wants a token: without
/// it the view says the collector refused it; with it the cluster's
/// workloads show with their node and their cost at the node's price.
#[test]
fn remote_top_with_a_token_shows_nodes_and_cost() {
    if !require_root("remote_top_with_a_token_shows_nodes_and_cost")
        || !require_tmux("remote_top_with_a_token_shows_nodes_and_cost")
    {
        return;
    }
    let _serial = serial();
    let dir = common::scratch_dir().join(unique("top-remote"));
    fs::create_dir_all(&dir).unwrap();
    let token = "top-e2e-token-0123456789";
    let tokens = dir.join("tokens");
    fs::write(&tokens, format!("* {token}\n")).unwrap();
    let client_token = dir.join("token");
    fs::write(&client_token, format!("{token}\n")).unwrap();
    let collector = common::daemons::Collector::start_with(
        &dir,
        "127.0.0.1:0",
        &["--token-file", tokens.to_str().unwrap()],
    );
    let url = collector.url();
    let cgroup = TestCgroup::create(&unique("tally-top-remote"));
    let spinner = start_spinner(&cgroup);
    // The node reports no instance type (no IMDS here): top prices it at
    // the type it is given, as `agent report` does.
    let agent = common::Agent::spawn(
        &[
            "run",
            "--json",
            "--no-imds",
            "--collector",
            &url,
            "--collector-token-file",
            client_token.to_str().unwrap(),
            "--interval",
            "0.5",
            "--node-name",
            "e2e-node",
        ],
        &[],
    );

    let tmux = Tmux::start(200, 40);
    let marker = "tally-remote-before";
    tmux.type_text(&format!("echo {marker}"));
    tmux.keys(&["Enter"]);
    tmux.wait_for("the marker", Duration::from_secs(5), |s| {
        s.lines().any(|l| l.trim() == marker)
    });
    let bin = env!("CARGO_BIN_EXE_agent");
    // 1. No token: refused, and the view says so (and keeps retrying).
    tmux.type_text(&format!("{bin} top --collector {url}; echo EXIT=$?"));
    tmux.keys(&["Enter"]);
    tmux.wait_for("the refusal", Duration::from_secs(15), |s| {
        s.contains("tally top") && s.contains("Unauthenticated")
    });
    tmux.type_text("q");
    tmux.wait_for("the exit", Duration::from_secs(10), |s| {
        s.contains("EXIT=0")
    });
    tmux.type_text(&format!("clear; echo {marker}"));
    tmux.keys(&["Enter"]);
    tmux.wait_for("the marker again", Duration::from_secs(5), |s| {
        !s.contains("EXIT=") && s.lines().any(|l| l.trim() == marker)
    });
    // 2. With the token: the workload, its node and its cost.
    tmux.type_text(&format!(
        "{bin} top --collector {url} --collector-token-file {} --instance-type m6i.large --region us-east-1 --interval 0.5; echo EXIT=$?",
        client_token.display()
    ));
    tmux.keys(&["Enter"]);
    tmux.wait_for("the cluster view", Duration::from_secs(30), |s| {
        s.contains("cluster CPU") && s.contains("NODE") && s.contains("$/MO")
    });
    tmux.type_text("/");
    tmux.wait_for("the filter prompt", Duration::from_secs(5), |s| {
        s.contains("filter:")
    });
    tmux.type_text(SPIN);
    tmux.keys(&["Enter"]);
    // Priced once the view has the node's identity (ListNodes).
    let priced = |l: &str| {
        l.contains(SPIN)
            && l.contains("e2e-node")
            && l.split_whitespace()
                .last()
                .is_some_and(|c| c.parse::<f64>().is_ok())
    };
    let shown = tmux.wait_for("the workload's priced row", Duration::from_secs(30), |s| {
        s.lines().any(priced)
    });
    let row = shown.lines().find(|l| priced(l)).unwrap();
    // PID NAME NODE RUNTIME CPU% GC% VERDICT ALLOC FAULTS RSS $/MO: the
    // cost is the row's CPU at m6i.large's vCPU-hour rate (OpenCost's
    // split of $0.096/h over 2 vCPU and 8 GiB: $0.031246) plus its RSS at
    // the GiB-hour rate ($0.0041885; the spinner's ~1 MiB adds under a
    // cent), for 730 h.
    let cells: Vec<&str> = row.split_whitespace().collect();
    let number = |i: usize| -> f64 {
        cells
            .get(i)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("cell {i} of the row is no number:\n{shown}"))
    };
    let (cpu_pct, cost) = (number(4), number(cells.len() - 1));
    let expected = 730.0 * cpu_pct / 100.0 * 0.031246;
    assert!(
        cpu_pct > 0.0 && (cost - expected).abs() < 0.1,
        "{cpu_pct}% of a core on m6i.large is ${expected:.2}/month, the row says {cost}:\n{shown}"
    );
    tmux.type_text("q");
    assert_terminal_restored(&tmux, marker);
    drop(agent);
    drop(spinner);
    drop(collector);
}

/// A panic on a thread of the view (the source's, here injected with the
/// hidden `--panic-after`) gives the terminal back, prints the panic after
/// the restored screen, and exits with an error.
#[test]
fn a_panic_gives_the_terminal_back() {
    let _serial = serial();
    if !require_tmux("a_panic_gives_the_terminal_back") {
        return;
    }
    let marker = "BEFORE-PANIC";
    let tmux = Tmux::at_prompt_with(100, 30, marker);
    let agent = env!("CARGO_BIN_EXE_agent");
    tmux.type_text(&format!(
        "{agent} top --synthetic 200 --interval 0.2 --panic-after 2 2>/tmp/tally-panic-$$.log; echo EXIT=$?; grep -c 'injected by --panic-after' /tmp/tally-panic-$$.log; rm -f /tmp/tally-panic-$$.log"
    ));
    tmux.keys(&["Enter"]);
    tmux.wait_for("the view", Duration::from_secs(10), |s| {
        s.contains("tally top") && s.contains("CPU%")
    });
    // The echo's line, not the command line that names it.
    let exit_line = |l: &str| l.trim().starts_with("EXIT=") && l.trim().len() <= 8;
    let screen = tmux.wait_for("the panic's count", Duration::from_secs(15), |s| {
        s.lines().any(exit_line) && !s.contains("tally top")
    });
    // The panic message went to stderr once the screen was given back.
    let after_exit: Vec<&str> = screen.lines().skip_while(|l| !exit_line(l)).collect();
    assert!(
        after_exit.get(1).is_some_and(|l| l.trim() == "1"),
        "the panic message is not in stderr:\n{screen}"
    );
    assert_terminal_restored_after(&tmux, marker, "EXIT=1");
}

/// The terminal goes away under a running `agent top` (the pane closes,
/// an SSH session drops): the agent ends within a few seconds instead of
/// spinning on a terminal that is gone.
#[test]
fn a_closed_terminal_ends_agent_top() {
    let _serial = serial();
    if !require_tmux("a_closed_terminal_ends_agent_top") {
        return;
    }
    let tmux = Tmux::start(100, 30);
    tmux.wait_for("the shell", Duration::from_secs(10), |s| {
        s.contains("tally-e2e$")
    });
    let agent = env!("CARGO_BIN_EXE_agent");
    tmux.type_text(&format!("{agent} top --synthetic 50 --interval 0.5"));
    tmux.keys(&["Enter"]);
    tmux.wait_for("the view", Duration::from_secs(10), |s| {
        s.contains("tally top") && s.contains("CPU%")
    });
    let shell = tmux.shell_pid();
    let pid = *children_of(shell)
        .first()
        .expect("agent top runs under the pane's shell");
    let _ = tmux.cmd().arg("kill-server").status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{pid}/stat")).exists() && Instant::now() < deadline {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat
            .rsplit(')')
            .next()
            .is_some_and(|a| a.trim_start().starts_with('Z'))
        {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let alive = !stat.is_empty()
        && !stat
            .rsplit(')')
            .next()
            .is_some_and(|a| a.trim_start().starts_with('Z'));
    if alive {
        // SAFETY: plain kill(2) of the agent this test started.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    assert!(
        !alive,
        "agent top is still running 5 s after its terminal closed"
    );
}
