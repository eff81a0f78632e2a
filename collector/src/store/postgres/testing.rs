//! A throwaway PostgreSQL cluster for tests: `initdb` on a temp dir, a
//! server on 127.0.0.1 (a free port) and a unix socket in that dir, fsync
//! on; stopped (`pg_ctl stop -m immediate`) and removed on drop.
//!
//! PostgreSQL refuses to run as root: as root, `initdb`/`pg_ctl` run as the
//! `postgres` user (created by Debian's `postgresql` package) through
//! `runuser`, and the temp dir is given to that user.
use std::{
    ffi::OsString,
    net::TcpListener,
    os::unix::fs::PermissionsExt as _,
    path::PathBuf,
    process::{Command, Stdio},
};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb): `cargo xtask setup` installs Debian's postgresql (or set PG_BINDIR)"
    )]
    NoServer,
    #[error("running as root and there is no `postgres` user: install Debian's postgresql")]
    NoUser,
    #[error("{0}: {1}")]
    Io(&'static str, std::io::Error),
    #[error("{tool} failed ({status}): {output}")]
    Tool {
        tool: &'static str,
        status: std::process::ExitStatus,
        output: String,
    },
}

/// A running throwaway cluster.
pub struct TempCluster {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    as_postgres: bool,
}

/// Where Debian puts the server binaries; `pg_config` is only in
/// libpq-dev, so the directory is looked for.
fn find_bindir() -> Result<PathBuf, ClusterError> {
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        return Ok(dir.into());
    }
    let mut found: Vec<(u32, PathBuf)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/usr/lib/postgresql") {
        for e in rd.flatten() {
            let bin = e.path().join("bin");
            if let Some(major) = e.file_name().to_str().and_then(|s| s.parse().ok())
                && bin.join("initdb").exists()
            {
                found.push((major, bin));
            }
        }
    }
    found.sort();
    found.pop().map(|(_, b)| b).ok_or(ClusterError::NoServer)
}

fn free_port() -> Result<u16, ClusterError> {
    // Racy (another process may take it first): start retries.
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| ClusterError::Io("picking a free port", e))
}

impl TempCluster {
    /// Starts a cluster. `Err(NoServer)` when PostgreSQL is not installed:
    /// see [`start_or_skip`].
    pub fn start() -> Result<Self, ClusterError> {
        let bin = find_bindir()?;
        // SAFETY: geteuid has no preconditions.
        let as_postgres = unsafe { libc::geteuid() } == 0;
        // Under /tmp, short: the postgres user must reach it, and the
        // socket path must fit in sun_path (107 bytes).
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = PathBuf::from(format!(
            "/tmp/tallypg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).map_err(|e| ClusterError::Io("creating the cluster dir", e))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| ClusterError::Io("chmod of the cluster dir", e))?;
        let mut cluster = TempCluster {
            dir,
            port: 0,
            bin,
            as_postgres,
        };
        if as_postgres {
            let name = c"postgres";
            // SAFETY: a valid C string; the result is read at once.
            let pw = unsafe { libc::getpwnam(name.as_ptr()) };
            if pw.is_null() {
                return Err(ClusterError::NoUser);
            }
            // SAFETY: non-null, as returned by getpwnam.
            let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
            std::os::unix::fs::chown(&cluster.dir, Some(uid), Some(gid))
                .map_err(|e| ClusterError::Io("chown of the cluster dir", e))?;
        }
        let data = cluster.dir.join("data");
        cluster.run(
            "initdb",
            &[
                "-D".into(),
                data.clone().into(),
                "-U".into(),
                "postgres".into(),
                "-A".into(),
                "trust".into(),
                "-E".into(),
                "UTF8".into(),
                "--no-locale".into(),
                // Only initdb's own fsyncs: the server runs with fsync=on.
                "--no-sync".into(),
            ],
        )?;
        let mut last = None;
        for _ in 0..5 {
            let port = free_port()?;
            let opts = format!(
                "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=on -c synchronous_commit=on -c max_connections=50",
                cluster.dir.display()
            );
            match cluster.run(
                "pg_ctl",
                &[
                    "start".into(),
                    "-w".into(),
                    "-t".into(),
                    "30".into(),
                    "-D".into(),
                    data.clone().into(),
                    "-l".into(),
                    cluster.dir.join("log").into(),
                    "-o".into(),
                    opts.into(),
                ],
            ) {
                Ok(()) => {
                    cluster.port = port;
                    return Ok(cluster);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(ClusterError::NoServer))
    }

    fn run(&self, tool: &'static str, args: &[OsString]) -> Result<(), ClusterError> {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        // A cwd the postgres user may enter.
        let out = cmd
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| ClusterError::Io(tool, e))?;
        if !out.status.success() {
            let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
            return Err(ClusterError::Tool {
                tool,
                status: out.status,
                output: format!(
                    "{}{}\nlog:\n{log}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            });
        }
        Ok(())
    }

    /// The server's pid (postmaster.pid's first line): its CPU and its
    /// children's are the server's.
    pub fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a database and gives its URL (TCP on loopback).
    pub fn create_db(&self, name: &str) -> Result<String, ClusterError> {
        self.run(
            "createdb",
            &[
                "-h".into(),
                "127.0.0.1".into(),
                "-p".into(),
                self.port.to_string().into(),
                "-U".into(),
                "postgres".into(),
                name.into(),
            ],
        )?;
        Ok(self.url(name))
    }

    /// Runs one SQL statement with psql; its rows, `|`-separated.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, ClusterError> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| ClusterError::Io("psql", e))?;
        if !out.status.success() {
            return Err(ClusterError::Tool {
                tool: "psql",
                status: out.status,
                output: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        if self.port != 0 {
            let _ = self.run(
                "pg_ctl",
                &[
                    "stop".into(),
                    "-m".into(),
                    "immediate".into(),
                    "-D".into(),
                    self.dir.join("data").into(),
                ],
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A cluster, or `None` off CI when PostgreSQL is not installed (after
/// saying so loudly). Under `CI=true` a missing server is a failure.
pub fn start_or_skip(test: &str) -> Option<TempCluster> {
    match TempCluster::start() {
        Ok(c) => Some(c),
        Err(e @ (ClusterError::NoServer | ClusterError::NoUser))
            if std::env::var("CI").as_deref() != Ok("true") =>
        {
            eprintln!("SKIPPED {test}: {e}");
            None
        }
        Err(e) => panic!("{test}: cannot start a PostgreSQL cluster: {e}"),
    }
}
