//! A guest of the kernel matrix: the kernels `cargo xtask` fetched, the
//! binaries for one architecture, the initramfs, and qemu (or the host) to
//! run `tests/guest/scenario.sh`.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// Iterations of the `alloc` workload: TCG runs it about 10× slower than
/// the host (arm64 more), and 5000 × 16 pages is still 80,000 faults.
pub(super) const ALLOC_ITERATIONS: &str = "5000";

/// A guest that has not powered off by then has hung.
pub(super) const GUEST_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    pub(super) const ALL: [Arch; 2] = [Arch::Amd64, Arch::Arm64];

    pub(super) fn host() -> Arch {
        match std::env::consts::ARCH {
            "aarch64" => Arch::Arm64,
            _ => Arch::Amd64,
        }
    }

    /// Debian's (and Docker's) name.
    pub(super) fn name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    pub(super) fn goarch(self) -> &'static str {
        self.name()
    }

    pub(super) fn c_compiler(self) -> &'static str {
        match self {
            Arch::Amd64 => "gcc",
            Arch::Arm64 => "aarch64-linux-gnu-gcc",
        }
    }

    /// qemu for this architecture, without the kernel and initramfs.
    pub(super) fn qemu(self) -> Command {
        let (program, machine, console): (&str, &[&str], &str) = match self {
            Arch::Amd64 => ("qemu-system-x86_64", &[], "ttyS0"),
            // Neoverse N1: Graviton2's core.
            Arch::Arm64 => (
                "qemu-system-aarch64",
                &["-M", "virt", "-cpu", "neoverse-n1"],
                "ttyAMA0",
            ),
        };
        let mut c = Command::new(program);
        c.args(machine)
            .args(["-m", "1024", "-smp", "2", "-nographic", "-no-reboot"])
            .arg("-append")
            .arg(format!("console={console} quiet loglevel=1 panic=-1"));
        c
    }
}

/// A kernel `cargo xtask` fetched: `target/kernels/<line>-<arch>/`.
pub(super) struct Kernel {
    pub(super) line: String,
    pub(super) arch: Arch,
    /// `uname -r` and Debian's package version.
    pub(super) release: String,
    pub(super) vmlinuz: PathBuf,
    pub(super) busybox: PathBuf,
}

pub(super) fn kernels_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/kernels")
}

/// Every fetched kernel, by line then architecture.
pub(super) fn fetched() -> Vec<Kernel> {
    let dir = kernels_dir();
    let mut out = Vec::new();
    for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((line, arch)) = name.rsplit_once('-') else {
            continue;
        };
        let Some(arch) = Arch::ALL.into_iter().find(|a| a.name() == arch) else {
            continue;
        };
        let path = entry.path();
        let Ok(release) = fs::read_to_string(path.join("release")) else {
            continue;
        };
        out.push(Kernel {
            line: line.to_string(),
            arch,
            release: release.trim().to_string(),
            vmlinuz: path.join("vmlinuz"),
            busybox: dir.join(format!("busybox-{}", arch.name())),
        });
    }
    out.sort_by(|a, b| (&a.line, a.arch.name()).cmp(&(&b.line, b.arch.name())));
    out
}

/// What runs in a guest, or on the host, for one architecture.
pub(super) struct Bins {
    pub(super) agent: PathBuf,
    /// Shared libraries the agent needs (none for the static `dist` one).
    pub(super) libs: Vec<PathBuf>,
    pub(super) workload: PathBuf,
    pub(super) goalloc: PathBuf,
}

pub(super) fn tmp() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kernels");
    fs::create_dir_all(&dir).unwrap();
    dir
}

pub(super) fn run_ok(c: &mut Command, what: &str) {
    let status = c.status().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(status.success(), "{what} failed: {status}");
}

impl Bins {
    /// The workloads, static, for `arch`, beside `agent`.
    pub(super) fn new(arch: Arch, agent: PathBuf) -> Self {
        let workloads = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads");
        let workload = tmp().join(format!("workload-{}", arch.name()));
        run_ok(
            Command::new(arch.c_compiler())
                .args(["-static", "-O2", "-o"])
                .arg(&workload)
                .arg(workloads.join("workload.c")),
            &format!("{} -static workload.c", arch.c_compiler()),
        );
        let goalloc = crate::common::go_build(
            "allocheavy",
            &tmp().join(format!("goalloc-{}", arch.name())),
            &[],
            &[("GOARCH", arch.goarch()), ("CGO_ENABLED", "0")],
        );
        let libs = shared_libraries(&agent);
        Self {
            agent,
            libs,
            workload,
            goalloc,
        }
    }
}

/// The libraries `ldd` names for a dynamically linked binary, with its
/// interpreter; none for a static one.
pub(super) fn shared_libraries(binary: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(binary).output().expect("ldd runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let path = match l.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// The guest's initramfs: busybox, `init`, the scenario, the binaries in
/// /tally, their libraries at their own paths, and the agent's arguments.
pub(super) fn initramfs(kernel: &Kernel, bins: &Bins, agent_args: &[&str]) -> PathBuf {
    let name = format!("{}-{}", kernel.line, kernel.arch.name());
    let root = tmp().join(format!("root-{name}"));
    let _ = fs::remove_dir_all(&root);
    for dir in ["bin", "tally", "proc", "sys", "dev", "tmp"] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    let guest = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guest");
    let copy = |from: &Path, to: PathBuf| {
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(from, &to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    };
    copy(&kernel.busybox, root.join("bin/busybox"));
    copy(&guest.join("init"), root.join("init"));
    copy(&guest.join("scenario.sh"), root.join("scenario.sh"));
    copy(&bins.agent, root.join("tally/agent"));
    copy(&bins.workload, root.join("tally/workload"));
    copy(&bins.goalloc, root.join("tally/goalloc"));
    for lib in &bins.libs {
        copy(lib, root.join(lib.strip_prefix("/").unwrap()));
    }
    let mut args = vec![ALLOC_ITERATIONS];
    args.extend_from_slice(agent_args);
    fs::write(root.join("scenario-args"), args.join(" ")).unwrap();
    let image = tmp().join(format!("initramfs-{name}.cpio"));
    run_ok(
        Command::new("sh")
            .arg("-c")
            .arg("cd \"$1\" && find . | cpio -o -H newc --quiet > \"$2\"")
            .arg("pack")
            .arg(&root)
            .arg(&image),
        "cpio",
    );
    image
}

/// Boots the kernel with the initramfs; everything the guest printed.
pub(super) fn boot(kernel: &Kernel, initramfs: &Path) -> String {
    let mut qemu = kernel.arch.qemu();
    qemu.arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(initramfs);
    run_bounded(qemu, "qemu")
}

/// The scenario on this machine's kernel.
pub(super) fn on_host(bins: &Bins, agent_args: &[&str]) -> String {
    let dir = tmp().join("host");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    for (from, name) in [
        (&bins.agent, "agent"),
        (&bins.workload, "workload"),
        (&bins.goalloc, "goalloc"),
    ] {
        fs::copy(from, dir.join(name)).unwrap();
    }
    let mut sh = Command::new("sh");
    sh.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guest/scenario.sh"))
        .arg(&dir)
        .arg(dir.join("work"))
        .arg(ALLOC_ITERATIONS)
        .args(agent_args);
    run_bounded(sh, "scenario.sh")
}

/// Runs to its end or [`GUEST_TIMEOUT`]; stdout and stderr together.
pub(super) fn run_bounded(mut c: Command, what: &str) -> String {
    let out = tmp().join(format!("{what}.out"));
    let file = fs::File::create(&out).unwrap();
    let mut child = c
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > GUEST_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} ran over {GUEST_TIMEOUT:?}:\n{}",
                fs::read_to_string(&out).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    String::from_utf8_lossy(&fs::read(&out).unwrap()).into_owned()
}
