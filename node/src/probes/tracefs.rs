//! tracefs, which tracepoint attachment reads event ids from
//! (`<tracefs>/events/<category>/<name>/id`).
//!
//! Many hosts boot without it mounted (systemd mounts it on most
//! distributions, but nothing guarantees it, and a pod's own `/sys` never
//! has it). Without it seven of the eight hooks cannot attach. So when it
//! is missing, the agent mounts it itself, **privately**: the attaches run
//! on a thread that has a mount namespace of its own (`unshare(CLONE_NEWNS)`
//! affects only the calling thread), with propagation to the host turned
//! off, and tracefs mounted on that namespace's `/sys/kernel/tracing`. The
//! perf events opened there stay attached after the thread and its
//! namespace are gone; the host's mounts are never touched.
//!
//! aya looks for tracefs at exactly two places and remembers the first
//! answer for the life of the process, so every tracepoint attach must run
//! inside [`with_tracefs`].
use std::{ffi::CString, io, path::Path};

/// Where aya 0.14 looks for tracefs (`programs::utils::find_tracefs_path`),
/// in its order.
pub const TRACEFS_PATHS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// How tracefs came to be usable for the attaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tracefs {
    /// The host (or the pod) already had it at this path.
    Mounted(String),
    /// The agent mounted it in a private mount namespace.
    MountedPrivately,
    /// Not mounted, and the agent could not mount it: why, and what to do.
    Unavailable(String),
}

impl Tracefs {
    /// The reason a tracepoint hook could not attach, when tracefs is the
    /// cause; `None` when tracefs was there.
    pub fn unavailable(&self) -> Option<&str> {
        match self {
            Tracefs::Unavailable(why) => Some(why),
            _ => None,
        }
    }
}

/// The tracefs mount point among [`TRACEFS_PATHS`] in a
/// `/proc/self/mountinfo`, if one is there.
pub fn mounted_at(mountinfo: &str) -> Option<&'static str> {
    let mounts: Vec<(&str, &str)> = mountinfo
        .lines()
        .filter_map(|line| {
            // `id parent major:minor root mountpoint options [optional…] - fstype source super`
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            let fstype = right.split(' ').next()?;
            Some((mount_point, fstype))
        })
        .collect();
    TRACEFS_PATHS.into_iter().find(|path| {
        // The last mount on a path is the one that shows.
        mounts
            .iter()
            .rev()
            .find(|(mp, _)| mp == path)
            .is_some_and(|(_, fstype)| *fstype == "tracefs")
    })
}

/// Runs `attach` where tracefs is mounted: here, if the process already
/// sees it; else on a thread with a private mount namespace where the agent
/// mounted it. Returns what `attach` returned and how tracefs was had.
pub fn with_tracefs<T: Send>(attach: impl FnOnce() -> T + Send) -> (T, Tracefs) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if let Some(path) = mounted_at(&mountinfo) {
        return (attach(), Tracefs::Mounted(path.to_string()));
    }
    std::thread::scope(|scope| {
        scope
            .spawn(move || match mount_privately() {
                Ok(()) => (attach(), Tracefs::MountedPrivately),
                Err(err) => {
                    let why = format!(
                        "tracefs is not mounted and the agent could not mount it: {err}{}",
                        hint(&err)
                    );
                    (attach(), Tracefs::Unavailable(why))
                }
            })
            .join()
            .expect("the attach thread does not panic")
    })
}

/// What to do about a failed mount.
fn hint(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::EPERM) => {
            " (mounting needs CAP_SYS_ADMIN: run as root, add SYS_ADMIN to the pod's \
             capabilities, or mount it on the host: mount -t tracefs nodev /sys/kernel/tracing)"
        }
        Some(libc::ENODEV) => " (this kernel has no tracefs: CONFIG_TRACING is off)",
        Some(libc::ENOENT) => {
            " (no /sys/kernel/tracing directory: mount sysfs, or mount tracefs on the host)"
        }
        _ => " (mount it on the host: mount -t tracefs nodev /sys/kernel/tracing)",
    }
}

/// Gives the calling thread a mount namespace of its own (`unshare` of
/// CLONE_NEWNS affects only it in a multi-threaded process), cut off from
/// the host's propagation: what it mounts there never shows on the host,
/// and goes with the thread. Needs CAP_SYS_ADMIN.
pub(super) fn private_mount_namespace() -> io::Result<()> {
    let root = CString::new("/").expect("no NUL");
    // SAFETY: plain syscalls with a valid NUL-terminated string.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(io::Error::last_os_error());
        }
        // Slave: nothing mounted here propagates back to the host.
        if libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_SLAVE,
            std::ptr::null(),
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Mounts tracefs on `/sys/kernel/tracing` in a private mount namespace of
/// this thread.
fn mount_privately() -> io::Result<()> {
    let cstr = |s: &str| CString::new(s).expect("no NUL");
    let (target, fstype) = (cstr(TRACEFS_PATHS[0]), cstr("tracefs"));
    if !Path::new(TRACEFS_PATHS[0]).is_dir() {
        return Err(io::Error::from_raw_os_error(libc::ENOENT));
    }
    private_mount_namespace()?;
    // SAFETY: a plain syscall with valid NUL-terminated strings.
    unsafe {
        if libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST_WITHOUT: &str = "\
22 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
25 22 0:6 / /sys/kernel/debug rw,nosuid,nodev,noexec,relatime shared:9 - debugfs debugfs rw
30 22 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
";

    #[test]
    fn a_host_without_tracefs_has_none() {
        assert_eq!(mounted_at(HOST_WITHOUT), None);
    }

    #[test]
    fn either_place_aya_looks_counts() {
        let at_tracing = format!(
            "{HOST_WITHOUT}40 22 0:12 / /sys/kernel/tracing rw,nosuid,nodev,noexec,relatime shared:10 - tracefs tracefs rw\n"
        );
        assert_eq!(mounted_at(&at_tracing), Some("/sys/kernel/tracing"));
        let under_debugfs = format!(
            "{HOST_WITHOUT}41 25 0:12 / /sys/kernel/debug/tracing rw,relatime - tracefs tracefs rw\n"
        );
        assert_eq!(
            mounted_at(&under_debugfs),
            Some("/sys/kernel/debug/tracing")
        );
    }

    #[test]
    fn an_empty_directory_mounted_over_it_hides_it() {
        // A pod whose hostPath bind of an unmounted host directory covers
        // the path: the last mount is what the path shows.
        let covered = format!(
            "{HOST_WITHOUT}40 22 0:12 / /sys/kernel/tracing rw - tracefs tracefs rw\n\
             50 40 254:1 /sys/kernel/tracing /sys/kernel/tracing ro - sysfs sysfs ro\n"
        );
        assert_eq!(mounted_at(&covered), None);
        // Some other file system at the path is not tracefs either.
        let other = format!("{HOST_WITHOUT}40 22 0:12 / /sys/kernel/tracing rw - tmpfs none rw\n");
        assert_eq!(mounted_at(&other), None);
    }

    #[test]
    fn the_hint_names_the_fix() {
        let eperm = io::Error::from_raw_os_error(libc::EPERM);
        assert!(hint(&eperm).contains("CAP_SYS_ADMIN"));
        assert!(hint(&eperm).contains("mount -t tracefs"));
    }
}
