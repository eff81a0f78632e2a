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
    #[error("no `openssl` command (the test's CA and server certificate are made with it)")]
    NoOpenssl,
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
    /// The postgres user's uid and gid (as root).
    owner: Option<(u32, u32)>,
}

/// The certificates of a cluster started with [`TempCluster::start_tls`]:
/// a CA, which signed the server's certificate (for `localhost` and
/// `127.0.0.1`), and another CA, which did not.
pub struct TlsFiles {
    pub ca: PathBuf,
    pub other_ca: PathBuf,
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
        Ok(Self::start_with(false)?.0)
    }

    /// Starts a cluster with `ssl=on` that takes TCP connections only over
    /// TLS (pg_hba `hostssl`), with a CA and a server certificate made for
    /// it by `openssl`.
    pub fn start_tls() -> Result<(Self, TlsFiles), ClusterError> {
        let (cluster, tls) = Self::start_with(true)?;
        Ok((cluster, tls.ok_or(ClusterError::NoOpenssl)?))
    }

    fn start_with(tls: bool) -> Result<(Self, Option<TlsFiles>), ClusterError> {
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
            owner: None,
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
            cluster.owner = Some((uid, gid));
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
        let (tls_files, ssl_opts) = if tls {
            let files = cluster.make_certificates()?;
            // TCP only over TLS; the unix socket as before.
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
            )
            .map_err(|e| ClusterError::Io("writing pg_hba.conf", e))?;
            let opts = format!(
                " -c ssl=on -c ssl_cert_file={0}/server.crt -c ssl_key_file={0}/server.key",
                cluster.dir.display()
            );
            (Some(files), opts)
        } else {
            (None, String::new())
        };
        let mut last = None;
        for _ in 0..5 {
            let port = free_port()?;
            let opts = format!(
                "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=on -c synchronous_commit=on -c max_connections=50{ssl_opts}",
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
                    return Ok((cluster, tls_files));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(ClusterError::NoServer))
    }

    /// A CA, a server certificate and key signed by it, and another CA, in
    /// the cluster's dir (the key the server's own, mode 0600).
    fn make_certificates(&self) -> Result<TlsFiles, ClusterError> {
        let d = &self.dir;
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for ca in ["ca", "other-ca"] {
            let (subject, key, crt) = (
                format!("/CN=tally test {ca}"),
                format!("{ca}.key"),
                format!("{ca}.crt"),
            );
            let head = ["req", "-x509", "-days", "2", "-subj", &subject];
            let tail = ["-keyout", &key, "-out", &crt];
            openssl(d, &[&head[..], &ec, &tail].concat())?;
        }
        openssl(
            d,
            &[
                &[
                    "req",
                    "-subj",
                    "/CN=localhost",
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                ][..],
                &ec,
            ]
            .concat(),
        )?;
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
        .map_err(|e| ClusterError::Io("writing server.ext", e))?;
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "server.ext",
                "-out",
                "server.crt",
            ],
        )?;
        let key = d.join("server.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| ClusterError::Io("chmod of the server key", e))?;
        if let Some((uid, gid)) = self.owner {
            for f in ["server.key", "server.crt"] {
                std::os::unix::fs::chown(d.join(f), Some(uid), Some(gid))
                    .map_err(|e| ClusterError::Io("chown of the server certificate", e))?;
            }
        }
        Ok(TlsFiles {
            ca: d.join("ca.crt"),
            other_ca: d.join("other-ca.crt"),
        })
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

fn openssl(dir: &std::path::Path, args: &[&str]) -> Result<(), ClusterError> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ClusterError::NoOpenssl,
            _ => ClusterError::Io("openssl", e),
        })?;
    if !out.status.success() {
        return Err(ClusterError::Tool {
            tool: "openssl",
            status: out.status,
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
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
    or_skip(test, TempCluster::start())
}

/// [`start_or_skip`] for [`TempCluster::start_tls`].
pub fn start_tls_or_skip(test: &str) -> Option<(TempCluster, TlsFiles)> {
    or_skip(test, TempCluster::start_tls())
}

fn or_skip<T>(test: &str, started: Result<T, ClusterError>) -> Option<T> {
    match started {
        Ok(c) => Some(c),
        Err(e @ (ClusterError::NoServer | ClusterError::NoUser | ClusterError::NoOpenssl))
            if std::env::var("CI").as_deref() != Ok("true") =>
        {
            eprintln!("SKIPPED {test}: {e}");
            None
        }
        Err(e) => panic!("{test}: cannot start a PostgreSQL cluster: {e}"),
    }
}
