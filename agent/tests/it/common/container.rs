//! Real containers for the integration tests: Debian's dockerd (20.10,
//! with containerd and runc; `cargo xtask test` installs and starts it) and
//! images built offline, since no registry is reachable:
//!
//! - [`Image::static_c`]: a `FROM scratch`-style image holding one static
//!   binary built with `gcc -static`;
//! - [`Image::jvm`], [`Image::node`], [`Image::host_files`]: a root
//!   filesystem made of files of the host (the programs, the libraries `ldd`
//!   names, `/etc/passwd`, a `/tmp`), imported with `docker import`. The JDK
//!   sits at `/opt/jdk` and Node at `/opt/node`, paths the host does not
//!   have, so anything the agent reads through the host's paths instead of
//!   `/proc/<pid>/root` fails.
//!
//! Images are tagged `tally-test/<name>:<hash of their inputs>` and reused by
//! every test binary while their inputs are unchanged. Containers carry the
//! label `tally-test.owner=<pid of the test binary>`, are removed (`docker
//! rm -f`) when their [`Container`] is dropped, also while a test panics,
//! and those of a test binary that was killed are removed by the next one.

use std::{
    collections::{BTreeMap, hash_map::DefaultHasher},
    fs,
    hash::{Hash as _, Hasher as _},
    io::Write as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{Mutex, Once},
    thread,
    time::{Duration, Instant},
};

/// Debian's docker client, not whatever is first on PATH (a newer client
/// elsewhere may insist on BuildKit or an API version this daemon lacks).
pub const DOCKER: &str = "/usr/bin/docker";

/// The label every test container carries, with the owning test binary's pid.
const OWNER_LABEL: &str = "tally-test.owner";

/// True if dockerd answers. Off CI a missing docker is a loud skip; under
/// CI (`CI=true`) it fails: `cargo xtask test` installs and starts it.
pub fn require_docker(test: &str) -> bool {
    let answer = Command::new(DOCKER)
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    let problem = match answer {
        Ok(out) if out.status.success() => {
            remove_orphans();
            return true;
        }
        Ok(out) => format!(
            "dockerd does not answer: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => format!("{DOCKER}: {e}"),
    };
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {problem} (cargo xtask test installs docker.io and starts dockerd)");
    }
    eprintln!("SKIP {test}: {problem}; `cargo xtask test` installs docker.io and starts dockerd");
    false
}

/// Removes, once per test binary, the containers of test binaries that no
/// longer run (killed before their drops ran).
fn remove_orphans() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let out = docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label={OWNER_LABEL}"),
            "--format",
            &format!("{{{{.ID}}}} {{{{.Label \"{OWNER_LABEL}\"}}}}"),
        ]);
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut fields = line.split_whitespace();
            let (Some(id), Some(owner)) = (fields.next(), fields.next()) else {
                continue;
            };
            if !Path::new("/proc").join(owner).exists() {
                let _ = docker(&["rm", "-f", id]);
            }
        }
    });
}

/// Runs the docker client; the output, whatever the exit status.
fn docker(args: &[&str]) -> Output {
    Command::new(DOCKER)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{DOCKER} {args:?}: {e}"))
}

/// Runs the docker client and returns its trimmed stdout; panics with its
/// stderr if it fails.
fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// An image in the local daemon.
#[derive(Debug, Clone)]
pub struct Image {
    pub tag: String,
}

/// How long the image builds of this test binary took (0 where cached).
pub fn build_seconds() -> f64 {
    *BUILD_SECONDS.lock().unwrap()
}

static BUILD_SECONDS: Mutex<f64> = Mutex::new(0.0);
/// One build at a time inside a test binary.
static BUILDING: Mutex<()> = Mutex::new(());

/// A root filesystem being assembled: container path → host file.
#[derive(Debug, Default)]
pub struct RootFs {
    files: BTreeMap<PathBuf, PathBuf>,
    /// Host trees copied in whole: their libraries are not added again at
    /// the host's path (the JDK's libjvm.so must exist at /opt/jdk only).
    trees: Vec<PathBuf>,
}

impl RootFs {
    /// `host` (symlinks followed) at `inside`, plus every library `ldd`
    /// names for it.
    pub fn add(&mut self, inside: impl AsRef<Path>, host: impl AsRef<Path>) -> &mut Self {
        let host = host.as_ref();
        self.files
            .insert(normalize(inside.as_ref()), host.to_path_buf());
        for lib in ldd(host) {
            let lib_path = normalize(&lib);
            if !self.trees.iter().any(|t| lib_path.starts_with(t)) {
                self.files.insert(lib_path, lib);
            }
        }
        self
    }

    /// A directory tree of the host at `inside`, symlinks followed (broken
    /// ones and the top-level entries in `skip` left out), with the
    /// libraries of its ELF files.
    pub fn add_tree(&mut self, inside: &Path, host: &Path, skip: &[&str]) -> &mut Self {
        self.trees.push(normalize(host));
        let mut stack = vec![(inside.to_path_buf(), host.to_path_buf(), true)];
        while let Some((inside, host, top)) = stack.pop() {
            let entries = fs::read_dir(&host).unwrap_or_else(|e| panic!("{}: {e}", host.display()));
            for entry in entries.flatten() {
                let name = entry.file_name();
                if top && skip.iter().any(|s| name == **s) {
                    continue;
                }
                let path = entry.path();
                // metadata() follows symlinks; a broken one fails and is skipped.
                let Ok(meta) = fs::metadata(&path) else {
                    continue;
                };
                if meta.is_dir() {
                    stack.push((inside.join(&name), path, false));
                } else if is_elf(&path) {
                    self.add(inside.join(&name), &path);
                } else {
                    self.files.insert(normalize(&inside.join(&name)), path);
                }
            }
        }
        self
    }

    /// Imports this tree (with `/tmp`, `/etc/passwd`) as `tally-test/<name>`,
    /// unless an image of the same inputs exists.
    pub fn import(&self, name: &str, entrypoint: Option<&str>) -> Image {
        let _one = BUILDING.lock().unwrap_or_else(|p| p.into_inner());
        // The inputs: each path and its file's content (a JDK's 200 MB
        // hash in a fraction of a second from the page cache; a rebuilt
        // binary with the same bytes keeps its image).
        let mut hasher = DefaultHasher::new();
        entrypoint.hash(&mut hasher);
        for (inside, host) in &self.files {
            let bytes = fs::read(host).unwrap_or_else(|e| panic!("{}: {e}", host.display()));
            (inside, bytes).hash(&mut hasher);
        }
        let repo = format!("tally-test/{name}");
        let tag = format!("{repo}:{:016x}", hasher.finish());
        if docker(&["image", "inspect", "--format", "{{.Id}}", &tag])
            .status
            .success()
        {
            return Image { tag };
        }
        // Images of older inputs go, so they do not pile up.
        let old = docker(&["images", "--format", "{{.Repository}}:{{.Tag}}", &repo]);
        for stale in String::from_utf8_lossy(&old.stdout).lines() {
            let _ = docker(&["rmi", "-f", stale]);
        }
        let started = Instant::now();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("rootfs")
            .join(tag.replace(['/', ':'], "-"));
        let _ = fs::remove_dir_all(&dir);
        for (inside, host) in &self.files {
            let dest = dir.join(inside.strip_prefix("/").unwrap_or(inside));
            fs::create_dir_all(dest.parent().unwrap()).unwrap();
            // Copies, never hard links: a link shares the host's inode, and
            // anything written through the tree (a second copy onto the same
            // name truncates first) would damage the host's file.
            assert!(
                fs::symlink_metadata(&dest).is_err(),
                "{} is in the tree twice",
                dest.display()
            );
            fs::copy(host, &dest)
                .unwrap_or_else(|e| panic!("copy {} to {}: {e}", host.display(), dest.display()));
        }
        let tmp = dir.join("tmp");
        fs::create_dir_all(&tmp).unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).unwrap();
        fs::create_dir_all(dir.join("etc")).unwrap();
        // The JVM names its hsperfdata directory after the user.
        fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        let mut tar = Command::new("tar")
            .args(["--numeric-owner", "-C"])
            .arg(&dir)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .expect("tar runs");
        let mut import = Command::new(DOCKER);
        import.arg("import");
        if let Some(entry) = entrypoint {
            import.args(["--change", &format!("ENTRYPOINT [\"{entry}\"]")]);
        }
        let out = import
            .args(["-", &tag])
            .stdin(tar.stdout.take().unwrap())
            .output()
            .expect("docker import runs");
        assert!(tar.wait().unwrap().success(), "tar of {}", dir.display());
        assert!(
            out.status.success(),
            "docker import {tag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = fs::remove_dir_all(&dir);
        let took = started.elapsed().as_secs_f64();
        *BUILD_SECONDS.lock().unwrap() += took;
        eprintln!("built image {tag} in {took:.1} s");
        Image { tag }
    }
}

impl Image {
    /// `FROM scratch` with `<source>` built by `gcc -static -O2` as
    /// `/<name>`, the entrypoint.
    pub fn static_c(name: &str, source: &Path) -> Image {
        let bin = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-static"));
        let status = Command::new("gcc")
            .args(["-static", "-O2", "-Wall", "-o"])
            .arg(&bin)
            .arg(source)
            .status()
            .expect("gcc runs");
        assert!(
            status.success(),
            "gcc -static failed on {}",
            source.display()
        );
        assert!(ldd(&bin).is_empty(), "{} is not static", bin.display());
        let inside = format!("/{name}");
        let mut root = RootFs::default();
        root.add(&inside, &bin);
        root.import(name, Some(&inside))
    }

    /// A JDK (e.g. `find_jdk(17)`) at `/opt/jdk`: run `/opt/jdk/bin/java`.
    /// Classes come in through a volume (`Run::volume`); `name` tells JDKs
    /// apart (`jdk17`, `temurin25`).
    pub fn jvm(name: &str, jdk: &Path) -> Image {
        let mut root = RootFs::default();
        root.add_tree(
            Path::new("/opt/jdk"),
            jdk,
            &["jmods", "include", "man", "legal", "docs", "demo"],
        );
        root.import(name, None)
    }

    /// The host's `node` at `/opt/node/bin/node`: run that. Scripts come in
    /// through a volume.
    pub fn node(name: &str) -> Image {
        let node = which("node");
        let mut root = RootFs::default();
        root.add("/opt/node/bin/node", &node);
        root.import(name, None)
    }

    /// Any dynamically linked program of the host at `inside`, with its
    /// libraries; it is the entrypoint.
    pub fn host_files(name: &str, inside: &str, host: &Path) -> Image {
        let mut root = RootFs::default();
        root.add(inside, host);
        root.import(name, Some(inside))
    }
}

/// A JDK of this major version (17, 25, …) on the host: `JAVA_HOME` if it
/// is one, else the first of `/usr/lib/jvm/*` whose `release` file says so
/// (symlinks resolved, so two names of one JDK are one). `None` if there is
/// none; callers skip off CI and fail under it.
pub fn find_jdk(major: u32) -> Option<PathBuf> {
    let is_major = |dir: &Path| {
        let release = fs::read_to_string(dir.join("release")).unwrap_or_default();
        let version = release
            .lines()
            .find_map(|l| l.strip_prefix("JAVA_VERSION="))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_default();
        // "17.0.21.1", "25.0.3"; JDK 8 says "1.8.0_…".
        let found = version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok());
        let found = if found == Some(1) {
            version.split('.').nth(1).and_then(|m| m.parse().ok())
        } else {
            found
        };
        found == Some(major) && dir.join("bin/java").exists()
    };
    let java_home = std::env::var_os("JAVA_HOME").map(PathBuf::from);
    let mut candidates: Vec<PathBuf> = java_home.into_iter().collect();
    let mut jvms: Vec<PathBuf> = fs::read_dir("/usr/lib/jvm")
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    jvms.sort();
    candidates.extend(jvms);
    candidates
        .into_iter()
        .filter_map(|c| fs::canonicalize(c).ok())
        .find(|c| is_major(c))
}

/// The host path of a program on PATH, symlinks resolved.
pub fn which(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .and_then(|p| fs::canonicalize(p).ok())
        .unwrap_or_else(|| panic!("{program} is not on PATH"))
}

/// `a/b/../c` → `a/c`, without following symlinks: `ldd` names a JDK's
/// libjli.so as `…/bin/../lib/libjli.so`, the same file as `…/lib/libjli.so`.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// The libraries `ldd` resolves for an ELF file (empty for a static one),
/// the dynamic loader included. Libraries it cannot find (an X11 library of
/// a headless JDK's AWT) are left out: nothing the tests run loads them.
fn ldd(path: &Path) -> Vec<PathBuf> {
    let Ok(out) = Command::new("ldd").arg(path).output() else {
        return Vec::new();
    };
    // A Go PIE names an interpreter and no library: ldd calls it
    // "statically linked", yet it does not start without its PT_INTERP.
    let interpreter = Command::new("readelf")
        .args(["-l", "-W"])
        .arg(path)
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let at = text.find("program interpreter: ")? + "program interpreter: ".len();
            let end = text[at..].find(']')?;
            Some(PathBuf::from(&text[at..at + end]))
        });
    let mut libs: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            // "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or
            // "\t/lib64/ld-linux-x86-64.so.2 (0x…)"; anything else is a
            // message.
            let l = l.trim();
            let l = l.split_once("=> ").map_or(l, |(_, rest)| rest);
            let (lib, rest) = l.split_once(' ')?;
            (lib.starts_with('/') && rest.starts_with("(0x")).then(|| PathBuf::from(lib))
        })
        .collect();
    if let Some(interp) = interpreter.filter(|i| !libs.contains(i)) {
        libs.push(interp);
    }
    libs
}

/// How to run a container: `docker run -d --network none` plus these.
#[derive(Debug, Default)]
pub struct Run {
    args: Vec<String>,
    cgroup_parent: Option<String>,
}

impl Run {
    pub fn new() -> Self {
        Self::default()
    }

    /// `--cgroup-parent`: the container's cgroup goes under this path
    /// (`/kubepods/burstable/pod<uid>`, kubelet's cgroupfs layout).
    pub fn cgroup_parent(mut self, parent: &str) -> Self {
        self.cgroup_parent = Some(parent.to_owned());
        self
    }

    /// `-v host:inside` (read-only unless `writable`).
    pub fn volume(mut self, host: &Path, inside: &str, writable: bool) -> Self {
        let mode = if writable { "rw" } else { "ro" };
        self.args
            .push(format!("--volume={}:{inside}:{mode}", host.display()));
        self
    }

    /// `--memory`: the container's memory limit, in MiB (what a JVM's
    /// container support sizes its default heap from).
    pub fn memory_mib(mut self, mib: u64) -> Self {
        self.args.push(format!("--memory={mib}m"));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.args.push(format!("--env={key}={value}"));
        self
    }

    /// Starts `image` with `command` (after its entrypoint, if any).
    pub fn start(self, image: &Image, command: &[&str]) -> Container {
        let owner = format!("--label={OWNER_LABEL}={}", std::process::id());
        let mut args = vec!["run", "-d", "--network", "none", &owner];
        let parent;
        if let Some(p) = &self.cgroup_parent {
            parent = format!("--cgroup-parent={p}");
            args.push(&parent);
        }
        args.extend(self.args.iter().map(String::as_str));
        args.push(&image.tag);
        args.extend_from_slice(command);
        let id = docker_ok(&args);
        assert!(
            id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "docker run printed {id:?}, not a container id"
        );
        let pid = docker_ok(&["inspect", "--format", "{{.State.Pid}}", &id])
            .parse()
            .unwrap_or(0);
        Container {
            id,
            pid,
            cgroup_parent: self.cgroup_parent,
        }
    }
}

/// A running (or exited) container, removed with `docker rm -f` on drop.
#[derive(Debug)]
pub struct Container {
    /// The full 64-hex id.
    pub id: String,
    /// Its first process's pid on the host; 0 if it had already exited when
    /// asked.
    pub pid: u32,
    cgroup_parent: Option<String>,
}

impl Container {
    /// Waits for the container to exit (at most `timeout`); its exit code.
    pub fn wait(&self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            let state = docker_ok(&[
                "inspect",
                "--format",
                "{{.State.Status}} {{.State.ExitCode}}",
                &self.id,
            ]);
            if let Some(code) = state.strip_prefix("exited ") {
                return code.parse().unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "container {} still {state} after {timeout:?}; logs:\n{}",
                self.id,
                self.logs().1
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its stdout and stderr so far.
    pub fn logs(&self) -> (String, String) {
        let out = docker(&["logs", &self.id]);
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// A workload's JSON report (tests/workloads): the last line it printed
    /// before exiting 0.
    pub fn report(&self) -> serde_json::Value {
        let (out, err) = self.wait_success(Duration::from_secs(60));
        let line = out.lines().last().unwrap_or_default();
        serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("workload printed {out:?} ({e}); {err}"))
    }

    /// Waits for the exit and asserts it was 0; stdout and stderr.
    pub fn wait_success(&self, timeout: Duration) -> (String, String) {
        let code = self.wait(timeout);
        let (out, err) = self.logs();
        assert_eq!(
            code, 0,
            "container exited {code}; stdout:\n{out}\nstderr:\n{err}"
        );
        (out, err)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let out = docker(&["rm", "-f", &self.id]);
        if !out.status.success() {
            // Not a panic: this may run while a test is already panicking.
            let _ = writeln!(
                std::io::stderr(),
                "docker rm -f {}: {}",
                self.id,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // dockerd leaves the parent cgroups it made for --cgroup-parent;
        // remove them, deepest first, in every hierarchy (a busy or shared
        // one stays).
        if let Some(parent) = &self.cgroup_parent {
            let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") else {
                return;
            };
            let hierarchies: Vec<PathBuf> = hierarchies.flatten().map(|e| e.path()).collect();
            let mut rel = PathBuf::from(parent.trim_start_matches('/'));
            loop {
                for h in &hierarchies {
                    let _ = fs::remove_dir(h.join(&rel));
                }
                if !rel.pop() || rel.as_os_str().is_empty() {
                    break;
                }
            }
        }
    }
}
