//! A JVM to test against: allocates for a while, says `done`, sleeps.
use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

/// A missing tool or privilege: off CI a loud skip (`None`), under CI
/// (`CI` set) a failure, as every test of the project treats them.
pub fn skip_or_fail<T>(what: &str) -> Option<T> {
    if std::env::var_os("CI").is_some() {
        panic!("{what} (under CI every test runs)");
    }
    eprintln!("skipped: {what}");
    None
}

/// The home of a JDK whose `release` file says `JAVA_VERSION="<major>…"`,
/// from `$JAVA_HOME`, then `/usr/lib/jvm/*` in name order.
pub fn jdk_home(major: u32) -> Option<PathBuf> {
    let mut homes: Vec<PathBuf> = std::env::var_os("JAVA_HOME")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    if let Ok(dir) = std::fs::read_dir("/usr/lib/jvm") {
        let mut found: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        found.sort();
        homes.extend(found);
    }
    homes.into_iter().find(|home| {
        std::fs::read_to_string(home.join("release"))
            .ok()
            .and_then(|r| {
                let v = r.lines().find_map(|l| l.strip_prefix("JAVA_VERSION=\""))?;
                v.split(['.', '"']).next()?.parse::<u32>().ok()
            })
            == Some(major)
            && home.join("bin/java").is_file()
    })
}

/// `jdk_home(major)`, or [`skip_or_fail`].
pub fn require_jdk(major: u32) -> Option<PathBuf> {
    jdk_home(major)
        .or_else(|| skip_or_fail(&format!("no JDK {major} under $JAVA_HOME or /usr/lib/jvm")))
}

const SOURCE: &str = r#"
public class Alloc {
static volatile Object sink;
public static void main(String[] args) throws Exception {
    long end = System.nanoTime() + Long.parseLong(args[0]) * 1_000_000L;
    java.util.List<byte[]> keep = new java.util.ArrayList<>();
    for (long n = 0; System.nanoTime() < end; n++) {
        byte[] b = new byte[1024 + (int) (n % 4096)];
        sink = b;
        if (n % 64 == 0) keep.add(b);
        if (keep.size() > 20000) keep.clear();
    }
    System.out.println("done");
    Thread.sleep(Long.parseLong(args[1]));
}
}
"#;

pub struct Jvm {
    pub child: Child,
    pub dir: tempfile::TempDir,
}

impl Jvm {
    pub fn gc_log(&self) -> PathBuf {
        self.dir.path().join("gc.log")
    }
}

impl Drop for Jvm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the `java` of JDK `major` (see [`require_jdk`]) in
/// source-file mode with `flags`, allocating for `alloc_ms`, then
/// sleeping 60 s; returns once it said `done`.
pub fn start(major: u32, flags: &[&str], alloc_ms: u64) -> Option<Jvm> {
    start_in(&[], None, major, flags, alloc_ms)
}

/// [`start`] under a `wrapper` command (e.g. `unshare …`), which must
/// run java as its direct child and kill it when it dies; the source and
/// the GC log in a temporary directory under `tmp` (default: the
/// system's). A wrapper that cannot run (not root) is skipped off CI.
pub fn start_in(
    wrapper: &[&str],
    tmp: Option<&str>,
    major: u32,
    flags: &[&str],
    alloc_ms: u64,
) -> Option<Jvm> {
    let java = require_jdk(major)?.join("bin/java");
    let dir = match tmp {
        Some(parent) => tempfile::tempdir_in(parent).ok()?,
        None => tempfile::tempdir().unwrap(),
    };
    let source = dir.path().join("Alloc.java");
    std::fs::write(&source, SOURCE).unwrap();
    let log = format!("-Xlog:gc:file={}", dir.path().join("gc.log").display());
    let mut cmd = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(&java);
            c
        }
        None => Command::new(&java),
    };
    let spawned = cmd
        .args(flags)
        .args(["-Xmx128m", "-XX:+UsePerfData", &log])
        .arg(&source)
        .args([alloc_ms.to_string(), "60000".into()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) => return skip_or_fail(&format!("{wrapper:?} {}: {err}", java.display())),
    };
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line == "done" {
                let _ = tx.send(());
            }
        }
    });
    let jvm = Jvm { child, dir };
    if rx.recv_timeout(Duration::from_secs(120)).is_err() {
        // Without root, unshare cannot make the namespaces.
        let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
            s.lines()
                .any(|l| l.split_whitespace().eq(["Uid:", "0", "0", "0", "0"]))
        });
        assert!(!root, "{wrapper:?} {} did not start", java.display());
        return skip_or_fail(&format!("{wrapper:?} needs root"));
    }
    Some(jvm)
}
