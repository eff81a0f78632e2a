//! How the store connects: the URL (with libpq's TLS keys, which
//! tokio-postgres does not take), TLS, and the timeouts of each
//! connection's role.
//!
//! tokio-postgres 0.7.18 parses `sslmode` as disable/prefer/require only and
//! refuses any key it does not know (`sslrootcert`): both are taken off the
//! URL here and handled as libpq does, with one difference (a CA given is
//! always checked, see [`SslMode`]).
use std::time::Duration;

use tokio_postgres::Config;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{PgError, tls::tls_config};

/// libpq's `sslmode`, with what this store does for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, plain otherwise; the certificate is
    /// not checked (libpq's default).
    Prefer,
    /// TLS always; the certificate is not checked (as libpq, when no CA is
    /// given: a warning says so at connect).
    Require,
    /// TLS, the certificate chain checked against the CA, not the name.
    VerifyCa,
    /// TLS, the chain and the host name checked.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, PgError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(PgError::Url(format!(
                    "sslmode={other} (expected disable, prefer, require, verify-ca or verify-full)"
                )));
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    pub(super) fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a connection is for: its server-side timeouts (and the client's
/// own deadline, for a server that stops answering without closing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The writer: batches (short), and the roll-up and retention passes,
    /// which raise their own statement timeout ([`LONG_PASS`]).
    Writer,
    /// Queries.
    Reader,
}

/// The roll-up and retention passes' statement timeout (`SET LOCAL` in
/// their transaction): the first roll-up after a long outage, or deleting a
/// day of windows, may legitimately take minutes.
pub(super) const LONG_PASS: Duration = Duration::from_secs(30 * 60);

impl Role {
    fn statement_timeout(self) -> Duration {
        match self {
            // A batch is a few statements of ~100 ms; a minute means the
            // server is in trouble, and the agents will send again.
            Role::Writer => Duration::from_secs(60),
            // report --since 30d over a large fleet takes seconds.
            Role::Reader => Duration::from_secs(120),
        }
    }

    /// The server-side settings, each unless the URL's `options` sets it.
    fn settings(self) -> [(&'static str, Duration); 3] {
        [
            ("statement_timeout", self.statement_timeout()),
            // Row and table locks are held for a batch's time: waiting
            // longer means something else holds them (a stuck replica, a
            // manual LOCK, a long-running DDL).
            ("lock_timeout", Duration::from_secs(10)),
            // A session left in a transaction (a client gone without a
            // FIN) must not hold its locks against the other replicas.
            (
                "idle_in_transaction_session_timeout",
                Duration::from_secs(60),
            ),
        ]
    }
}

/// How long a call may wait for the server in all, given the statement
/// timeout in force: half as long again (2 to 30 s more), so the server's
/// own cancel comes first when the server is there at all.
pub(super) fn deadline(statement_timeout: Duration) -> Duration {
    statement_timeout
        + (statement_timeout / 2).clamp(Duration::from_secs(2), Duration::from_secs(30))
}

/// `statement_timeout` in libpq `options` (`-c statement_timeout=5s`), in
/// PostgreSQL's units (a bare number is milliseconds).
fn option_statement_timeout(options: &str) -> Option<Duration> {
    let value = options
        .split(|c: char| c.is_whitespace())
        .find_map(|w| w.split_once("statement_timeout=").map(|(_, v)| v))?;
    let digits = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let n: u64 = value[..digits].parse().ok()?;
    let millis = match value[digits..].trim() {
        "" | "ms" => n,
        "us" => n / 1000,
        "s" => n * 1000,
        "min" => n * 60_000,
        "h" => n * 3_600_000,
        "d" => n * 86_400_000,
        _ => return None,
    };
    Some(Duration::from_millis(millis))
}

/// A parsed store URL: the tokio-postgres config, TLS, and the URL without
/// its password (for logs and errors).
#[derive(Clone)]
pub(super) struct Target {
    pub config: Config,
    pub tls: MakeRustlsConnect,
    pub mode: SslMode,
    pub redacted: String,
    /// The CA bundle given (`sslrootcert`), if any.
    root_cert: Option<String>,
    /// Server settings the URL's `options` gives itself (not overridden).
    user_settings: Vec<String>,
}

/// The TCP defaults when the URL does not say: a dead server (a failover
/// without a FIN) is noticed in about a minute, not after the kernel's two
/// hours of keepalive or fifteen minutes of retransmission.
const TCP_DEFAULTS: [(&str, u64); 5] = [
    ("connect_timeout", 10),
    ("keepalives_idle", 30),
    ("keepalives_interval", 10),
    ("keepalives_retries", 3),
    // Data sent and not acknowledged for this long closes the connection.
    ("tcp_user_timeout", 30),
];

impl Target {
    pub fn parse(url: &str) -> Result<Self, PgError> {
        let redacted = redact(url);
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut mode = None;
        let mut root_cert = None;
        let mut kept: Vec<&str> = Vec::new();
        let mut given: Vec<String> = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value);
            match key {
                "sslmode" => mode = Some(SslMode::parse(&value)?),
                "sslrootcert" => root_cert = Some(value),
                _ => {
                    given.push(key.to_owned());
                    kept.push(pair);
                }
            }
        }
        let rebuilt = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let mut config: Config = rebuilt.parse().map_err(|e| {
            // tokio-postgres' parse errors name the option, never its value.
            PgError::Url(format!("{e}"))
        })?;
        for (key, secs) in TCP_DEFAULTS {
            if given.iter().any(|g| g == key) {
                continue;
            }
            let d = Duration::from_secs(secs);
            match key {
                "connect_timeout" => config.connect_timeout(d),
                "keepalives_idle" => config.keepalives_idle(d),
                "keepalives_interval" => config.keepalives_interval(d),
                "keepalives_retries" => config.keepalives_retries(u32::try_from(secs).unwrap_or(3)),
                _ => config.tcp_user_timeout(d),
            };
        }
        // A CA given means the certificate is checked: never plain text,
        // never an unchecked certificate.
        let mode = match (mode, &root_cert) {
            (Some(SslMode::Disable), Some(_)) => {
                return Err(PgError::Url(
                    "sslmode=disable with sslrootcert: the CA would not be used (drop one)"
                        .to_owned(),
                ));
            }
            (None | Some(SslMode::Prefer | SslMode::Require), Some(_)) => SslMode::VerifyFull,
            (Some(m), _) => m,
            (None, None) => SslMode::Prefer,
        };
        config.ssl_mode(match mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        if mode == SslMode::Require {
            tracing::warn!(
                "PostgreSQL store {redacted}: sslmode=require encrypts but does not check the server's certificate; add sslrootcert=FILE (e.g. the RDS regional bundle) to check it"
            );
        }
        let user_settings = config
            .get_options()
            .map(|o| {
                Role::Writer
                    .settings()
                    .iter()
                    .map(|(name, _)| *name)
                    .filter(|name| o.contains(name))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let tls = tls_config(mode, root_cert.as_deref())?;
        Ok(Self {
            config,
            tls,
            mode,
            redacted,
            root_cert,
            user_settings,
        })
    }

    /// The sslmode, and what the server's certificate is checked against:
    /// for errors.
    pub fn tls_described(&self) -> String {
        let against = match self.root_cert.as_deref() {
            _ if self.mode == SslMode::Disable => return "sslmode=disable, no TLS".to_owned(),
            _ if !self.mode.verifies() => "not checked",
            Some(path) if path != "system" => {
                return format!(
                    "sslmode={}, server certificate checked against the CA in {path}",
                    self.mode
                );
            }
            _ => "checked against the platform's CA store",
        };
        format!("sslmode={}, server certificate {against}", self.mode)
    }

    /// Whether the URL's `options` sets this server setting itself.
    pub fn user_sets(&self, name: &str) -> bool {
        self.user_settings.iter().any(|u| u == name)
    }

    /// The `SET` statements of a role (those the URL's `options` does not
    /// set itself), and the statement timeout in force.
    pub fn session_sql(&self, role: Role) -> (String, Duration) {
        let mut sql = String::new();
        for (name, value) in role.settings() {
            if self.user_sets(name) {
                continue;
            }
            sql.push_str(&format!("SET {name} = '{}ms';", value.as_millis()));
        }
        // The URL's statement timeout, if any; 0 (none) or one not read
        // here: the client's deadline then allows for the longest pass.
        let statement = if self.user_sets("statement_timeout") {
            self.config
                .get_options()
                .and_then(option_statement_timeout)
                .filter(|d| !d.is_zero())
                .unwrap_or(LONG_PASS)
        } else {
            role.statement_timeout()
        };
        (sql, statement)
    }
}

/// The URL for logs: no password, neither in the user part nor as a
/// `password=` key (nor in libpq's `key=value` form).
pub(super) fn redact(url: &str) -> String {
    if !url.contains("://") {
        return redact_key_values(url);
    }
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let base = match (base.find("://"), base.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user = &base[scheme + 3..at];
            let user = user.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &base[..scheme + 3], &base[at + 1..])
        }
        _ => base.to_owned(),
    };
    match query {
        None => base,
        Some(q) => {
            let kept: Vec<&str> = q
                .split('&')
                .filter(|p| !p.starts_with("password="))
                .collect();
            format!("{base}?{}", kept.join("&"))
        }
    }
}

/// libpq's `key = value …` form (a value may be quoted, with `\\` escapes)
/// with the password's value left out; anything not understood is left
/// out too.
fn redact_key_values(dsn: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut chars = dsn.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            out.push("…".to_owned());
            break;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            value.push('\'');
            while let Some(c) = chars.next() {
                value.push(c);
                match c {
                    '\\' => value.extend(chars.next()),
                    '\'' => break,
                    _ => {}
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(c);
            }
        }
        if key == "password" {
            value = "…".to_owned();
        }
        out.push(format!("{key}={value}"));
    }
    out.join(" ")
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_drops_passwords() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db?sslmode=require&password=x2&sslrootcert=/ca.pem"),
            "postgres://u@h:5432/db?sslmode=require&sslrootcert=/ca.pem"
        );
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
        assert_eq!(
            redact("host=h password = 'a \\' secret' user=u"),
            "host=h password=… user=u"
        );
        assert_eq!(
            redact("host=h password=x2 dbname=d"),
            "host=h password=… dbname=d"
        );
    }

    #[test]
    fn a_ca_given_is_always_checked() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.pem");
        // The CA is read (and its absence is an error) in every mode but
        // disable, which refuses it.
        for mode in [
            "",
            "&sslmode=prefer",
            "&sslmode=require",
            "&sslmode=verify-ca",
        ] {
            let url = format!(
                "postgres://u:pw@h/db?sslrootcert={}{mode}",
                missing.display()
            );
            let err = Target::parse(&url).err().expect("a missing CA is an error");
            assert!(matches!(err, PgError::Ca { .. }), "{mode}: {err}");
        }
        let err = Target::parse(&format!(
            "postgres://u:pw@h/db?sslmode=disable&sslrootcert={}",
            missing.display()
        ))
        .err()
        .expect("disable with a CA is refused");
        assert!(matches!(err, PgError::Url(_)), "{err}");
        assert!(!err.to_string().contains("pw"));
    }

    #[test]
    fn url_keys_and_defaults() {
        let t = Target::parse("postgres://u@h/db?keepalives_idle=5&sslmode=require").unwrap();
        assert_eq!(t.mode, SslMode::Require);
        assert_eq!(t.config.get_keepalives_idle(), Duration::from_secs(5));
        assert_eq!(
            t.config.get_connect_timeout(),
            Some(&Duration::from_secs(10))
        );
        assert_eq!(
            t.config.get_tcp_user_timeout(),
            Some(&Duration::from_secs(30))
        );
        assert_eq!(
            Target::parse("postgres://u@h/db").unwrap().mode,
            SslMode::Prefer
        );
        let err = Target::parse("postgres://u@h/db?sslmode=allow")
            .err()
            .unwrap();
        assert!(err.to_string().contains("sslmode=allow"), "{err}");
        // Settings the URL's options gives are left alone.
        let t = Target::parse("postgres://u@h/db?options=-c%20lock_timeout%3D1s").unwrap();
        let (sql, statement) = t.session_sql(Role::Writer);
        assert!(!sql.contains("lock_timeout"), "{sql}");
        assert!(sql.contains("statement_timeout = '60000ms'"), "{sql}");
        assert_eq!(statement, Duration::from_secs(60));
        let t = Target::parse("postgres://u@h/db?options=-c%20statement_timeout%3D2s").unwrap();
        let (sql, statement) = t.session_sql(Role::Reader);
        assert!(!sql.contains("statement_timeout"), "{sql}");
        assert_eq!(statement, Duration::from_secs(2));
        assert_eq!(
            option_statement_timeout("-c lock_timeout=1s -c statement_timeout=1500"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            option_statement_timeout("-c statement_timeout=5min"),
            Some(Duration::from_secs(300))
        );
    }
}
