//! Uprobe perf events for a confined agent, from a helper process that
//! keeps CAP_SYS_ADMIN for that one call and can make no other.
//!
//! Since Linux 6.16, and in the stable kernels it was backported to in July
//! 2025 (5.15, 6.1, 6.6, 6.12: "perf: Revert to requiring CAP_SYS_ADMIN for
//! uprobes", CVE-2025-38466), `perf_uprobe_event_init` asks
//! `capable(CAP_SYS_ADMIN)` where it asked `perfmon_capable()`: a uprobe
//! placed in the middle of an instruction corrupts the probed process, so
//! CAP_PERFMON no longer suffices. `perf_event_open` fails with EACCES for the
//! confined agent, and the GC runtimes that start after it (Go's
//! `gcMarkTermination`, the JVM's USDT probes) were never probed.
//!
//! Keeping CAP_SYS_ADMIN in the agent would undo most of [`super::confine`].
//! Instead, before confining, the agent forks this helper. The helper keeps
//! CAP_SYS_ADMIN alone, sets `no_new_privs`, closes every file but its
//! socket (the agent's maps, sockets, logs), and installs a seccomp filter that kills it on any system call but
//! receiving a request, `perf_event_open`, sending the answer, `close` and
//! exiting. A request is a file descriptor the agent opened (the probed
//! binary) and a file offset; the answer is the errno and, on success, the
//! perf event's descriptor, which the agent attaches its program to
//! (`PERF_EVENT_IOC_SET_BPF` needs no capability). The helper builds the
//! event itself: an entry uprobe of the PMU type it read before the fork,
//! for every process, so the worst a compromised agent can do with it is
//! place uprobes, which CAP_PERFMON allowed before 6.16 anyway. It dies with
//! the agent (`PR_SET_PDEATHSIG`) or when the socket closes.
use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
    path::Path,
};

use super::confine::{AUDIT_ARCH, CAP_SYS_ADMIN, X32_SYSCALL_BIT, capget, capset};

/// The PMU the kernel registers uprobe perf events under.
const UPROBE_PMU_TYPE: &str = "/sys/bus/event_source/devices/uprobe/type";

#[derive(Debug, thiserror::Error)]
pub enum UprobeOpenerError {
    #[error("cannot start the uprobe helper: {0}")]
    Spawn(io::Error),
    #[error("cannot read the uprobe PMU type ({UPROBE_PMU_TYPE}): {0}")]
    PmuType(io::Error),
    #[error("cannot open {path}: {source}")]
    Open { path: String, source: io::Error },
    #[error("cannot reach the uprobe helper: {0}")]
    Helper(io::Error),
    #[error("the uprobe helper is gone")]
    HelperGone,
    #[error("`perf_event_open` of the uprobe in the helper failed: {0}")]
    PerfEventOpen(io::Error),
}

/// The agent's end of the helper's socket.
#[derive(Debug)]
pub struct UprobeOpener {
    socket: OwnedFd,
}

/// What the agent sends with the binary's descriptor.
#[repr(C)]
#[derive(Clone, Copy)]
struct Request {
    offset: u64,
}

/// What the helper answers, with the perf event's descriptor when 0.
#[repr(C)]
#[derive(Clone, Copy)]
struct Answer {
    errno: i32,
}

impl UprobeOpener {
    /// Forks the helper. `None` when this process has no CAP_SYS_ADMIN to
    /// give it: then uprobes are opened directly, which works where the
    /// kernel still accepts CAP_PERFMON. Call it while the process is still
    /// one thread and privileged, before [`super::confine::confine`].
    pub fn spawn() -> Result<Option<Self>, UprobeOpenerError> {
        if capget().map_err(UprobeOpenerError::Spawn)? & (1 << CAP_SYS_ADMIN) == 0 {
            return Ok(None);
        }
        let pmu_type: u32 = std::fs::read_to_string(UPROBE_PMU_TYPE)
            .map_err(UprobeOpenerError::PmuType)?
            .trim()
            .parse()
            .map_err(|_| UprobeOpenerError::PmuType(io::ErrorKind::InvalidData.into()))?;
        let mut fds = [0 as RawFd; 2];
        // SAFETY: socketpair writes two descriptors into `fds`.
        let rc = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        if rc != 0 {
            return Err(UprobeOpenerError::Spawn(io::Error::last_os_error()));
        }
        // SAFETY: both descriptors are fresh and ours.
        let (ours, theirs) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the child runs only `serve`, which makes raw system calls
        // and never allocates, so a lock another thread held at the fork
        // cannot stop it.
        match unsafe { libc::fork() } {
            -1 => Err(UprobeOpenerError::Spawn(io::Error::last_os_error())),
            0 => serve(parent, theirs.as_raw_fd(), pmu_type),
            _ => Ok(Some(Self { socket: ours })),
        }
    }

    /// A perf event for an entry uprobe at file `offset` of the file at
    /// `path`, in every process that maps it.
    pub fn open(&self, path: &Path, offset: u64) -> Result<OwnedFd, UprobeOpenerError> {
        let file = std::fs::File::open(path).map_err(|source| UprobeOpenerError::Open {
            path: path.display().to_string(),
            source,
        })?;
        let request = Request { offset };
        send_with_fd(self.socket.as_raw_fd(), &request, Some(file.as_raw_fd()))
            .map_err(UprobeOpenerError::Helper)?;
        let mut answer = Answer { errno: 0 };
        let (received, fd) = receive_with_fd(self.socket.as_raw_fd(), &mut answer)
            .map_err(UprobeOpenerError::Helper)?;
        if received == 0 {
            return Err(UprobeOpenerError::HelperGone);
        }
        match (answer.errno, fd) {
            (0, Some(fd)) => Ok(fd),
            (0, None) => Err(UprobeOpenerError::HelperGone),
            (errno, _) => Err(UprobeOpenerError::PerfEventOpen(
                io::Error::from_raw_os_error(errno),
            )),
        }
    }
}

/// The helper's life: confine itself, then answer requests until the agent
/// goes. Never returns.
fn serve(parent: libc::pid_t, socket: RawFd, pmu_type: u32) -> ! {
    // SAFETY: raw system calls on integers and stack memory only.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::getppid() != parent {
            libc::_exit(0);
        }
        // The agent's name (comm) stays: the cost report tells Tally's own
        // processes outside a pod by it (`agent`, `tally-agent`).
        // Nothing of the agent's: its maps, sockets and files.
        close_all_but(socket);
        let keep = 1u64 << CAP_SYS_ADMIN;
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || capset(keep, keep, 0).is_err()
            || only_perf_event_open().is_err()
        {
            libc::_exit(1);
        }
        loop {
            let mut request = Request { offset: 0 };
            let (received, file) = match receive_with_fd(socket, &mut request) {
                Ok(got) => got,
                Err(_) => libc::_exit(1),
            };
            let Some(file) = file.filter(|_| received == size_of::<Request>()) else {
                libc::_exit(0);
            };
            let (errno, event) = match open_uprobe(pmu_type, &file, request.offset) {
                Ok(event) => (0, Some(event)),
                Err(errno) => (errno, None),
            };
            drop(file);
            let sent = send_with_fd(
                socket,
                &Answer { errno },
                event.as_ref().map(|e| e.as_raw_fd()),
            );
            drop(event);
            if sent.is_err() {
                libc::_exit(1);
            }
        }
    }
}

/// `struct perf_event_attr` up to `PERF_ATTR_SIZE_VER8` (136 bytes), the
/// fields a uprobe uses named: `config1` is the path, `config2` the offset;
/// all zero but those is an entry probe that counts.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
    rest: [u64; 8],
}

const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;

/// `perf_event_open` of an entry uprobe at `offset` in `file`, for every
/// process (pid -1, cpu 0, as aya opens it). The kernel resolves the path
/// `/proc/self/fd/<n>` to the file the agent opened.
fn open_uprobe(pmu_type: u32, file: &OwnedFd, offset: u64) -> Result<OwnedFd, i32> {
    // "/proc/self/fd/" + up to 10 digits + NUL, built without allocating.
    let mut path = [0u8; 32];
    let prefix = b"/proc/self/fd/";
    path[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 10];
    let mut n = file.as_raw_fd() as u32;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for (i, d) in digits[..len].iter().rev().enumerate() {
        path[prefix.len() + i] = *d;
    }
    let attr = PerfEventAttr {
        type_: pmu_type,
        size: size_of::<PerfEventAttr>() as u32,
        config1: path.as_ptr() as u64,
        config2: offset,
        ..PerfEventAttr::default()
    };
    // SAFETY: the attr and the path outlive the call, which copies them.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &raw const attr,
            -1,
            0,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO));
    }
    // SAFETY: a fresh descriptor, ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Closes every descriptor but `keep`.
fn close_all_but(keep: RawFd) {
    let keep = keep as u32;
    // SAFETY: close_range on integers; the fallback closes one by one.
    unsafe {
        let ranges = [(0, keep.checked_sub(1)), (keep + 1, Some(u32::MAX))];
        for (first, last) in ranges.into_iter().filter_map(|(f, l)| Some((f, l?))) {
            if libc::syscall(libc::SYS_close_range, first, last, 0) != 0 {
                for fd in first..last.min(65_536) {
                    libc::close(fd as RawFd);
                }
            }
        }
    }
}

/// The system calls the helper may make; any other kills it.
const HELPER_SYSCALLS: [libc::c_long; 8] = [
    libc::SYS_recvmsg,
    libc::SYS_sendmsg,
    libc::SYS_perf_event_open,
    libc::SYS_close,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_rt_sigreturn,
    libc::SYS_restart_syscall,
];

/// The helper's seccomp filter: [`HELPER_SYSCALLS`], or death. Built on the
/// stack: the forked helper never allocates.
fn only_perf_event_open() -> io::Result<()> {
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    const N: usize = HELPER_SYSCALLS.len();
    // 0: load arch; 1: other ABI -> KILL; 2: load nr; 3: x32 -> KILL;
    // 4..4+N: allowed -> ALLOW; 4+N: KILL; 5+N: ALLOW.
    const KILL: usize = 4 + N;
    const ALLOW: usize = 5 + N;
    let insn = |code: u16, k: u32, jt: usize, jf: usize| libc::sock_filter {
        code,
        jt: jt as u8,
        jf: jf as u8,
        k,
    };
    // A jump from instruction `at` to `to` skips `to - at - 1`.
    let skip = |at: usize, to: usize| to - at - 1;
    let mut filter = [insn(RET_K, libc::SECCOMP_RET_KILL_PROCESS, 0, 0); ALLOW + 1];
    filter[0] = insn(LD_W_ABS, 4, 0, 0);
    filter[1] = insn(JEQ_K, AUDIT_ARCH, 0, skip(1, KILL));
    filter[2] = insn(LD_W_ABS, 0, 0, 0);
    filter[3] = insn(JGE_K, X32_SYSCALL_BIT, skip(3, KILL), 0);
    for (i, nr) in HELPER_SYSCALLS.iter().enumerate() {
        filter[4 + i] = insn(JEQ_K, *nr as u32, skip(4 + i, ALLOW), 0);
    }
    filter[ALLOW] = insn(RET_K, libc::SECCOMP_RET_ALLOW, 0, 0);
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: the program outlives the call, which copies it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &raw const prog,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `value` and, when given, a descriptor (SCM_RIGHTS).
fn send_with_fd<T: Copy>(socket: RawFd, value: &T, fd: Option<RawFd>) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: std::ptr::from_ref(value).cast_mut().cast(),
        iov_len: size_of::<T>(),
    };
    let mut control = [0u64; 4];
    // SAFETY: msghdr is plain data; the control buffer is large and aligned
    // enough for one descriptor's cmsg.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        if let Some(fd) = fd {
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(size_of::<RawFd>() as u32) as _;
            let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        }
        if libc::sendmsg(socket, &raw const msg, libc::MSG_NOSIGNAL) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Receives into `value` and the descriptor that came with it, if any.
/// Returns the bytes received (0: the other end closed).
fn receive_with_fd<T: Copy>(socket: RawFd, value: &mut T) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: std::ptr::from_mut(value).cast(),
        iov_len: size_of::<T>(),
    };
    let mut control = [0u64; 4];
    // SAFETY: as in `send_with_fd`; a descriptor the kernel passed is ours.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let received = loop {
            let n = libc::recvmsg(socket, &raw mut msg, libc::MSG_CMSG_CLOEXEC);
            if n >= 0 {
                break n as usize;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        };
        let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        let fd = (!cmsg.is_null()
            && (*cmsg).cmsg_level == libc::SOL_SOCKET
            && (*cmsg).cmsg_type == libc::SCM_RIGHTS)
            .then(|| OwnedFd::from_raw_fd(std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast())));
        Ok((received, fd))
    }
}
