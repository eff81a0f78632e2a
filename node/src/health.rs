//! Liveness and readiness for the DaemonSet without a port: `agent run
//! --health-file F` rewrites F after every window it hands on, and `agent
//! health --file F --max-age D` (the pod's exec probe) succeeds while F is
//! younger than D. A collection loop that stalls (a wedged map read, a
//! deadlock) stops the writes, and the kubelet restarts the agent; an agent
//! that has not finished its first window is not ready.
use std::{
    path::Path,
    time::{Duration, SystemTime},
};

/// Marks the agent alive now. Failures are logged once by the caller's
/// choice; the probe then fails, which is the point.
pub fn touch(path: &Path) -> std::io::Result<()> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    // Written whole then renamed: the probe never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{}\n", now.as_secs()))?;
    std::fs::rename(&tmp, path)
}

/// Ok while `path` was written less than `max_age` ago; else why not.
pub fn check(path: &Path, max_age: Duration) -> Result<Duration, String> {
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| format!("{}: {e} (no window finished yet?)", path.display()))?;
    let age = SystemTime::now()
        .duration_since(modified)
        .unwrap_or_default();
    if age <= max_age {
        Ok(age)
    } else {
        Err(format!(
            "last window finished {:.0}s ago (more than {:.0}s): the collection loop is stuck",
            age.as_secs_f64(),
            max_age.as_secs_f64()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_then_stale_then_missing() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("healthy");
        assert!(
            check(&f, Duration::from_secs(60))
                .unwrap_err()
                .contains("no window")
        );
        touch(&f).unwrap();
        assert!(check(&f, Duration::from_secs(60)).is_ok());
        std::thread::sleep(Duration::from_millis(30));
        assert!(
            check(&f, Duration::from_millis(10))
                .unwrap_err()
                .contains("stuck")
        );
    }
}
