//! The store's connection against a real server: TLS checked against the
//! CA the URL names (and refused when the server's certificate is not
//! signed by it), plain text refused by a server that requires TLS, the
//! writer's lock timeout in force, and a server that stops answering.
use super::{PgConn, PgError, PgStore, Role, testing};
use crate::store::{Outcome, StoreError, StoreWriter, tests::report};

/// Not a real password (the test cluster trusts loopback): it must appear
/// in no error.
const PASSWORD: &str = "s3cret-pw-7f1";

fn with_password(url: &str) -> String {
    url.replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1)
}

fn open_err(url: &str) -> String {
    match PgStore::open(url) {
        Ok(_) => panic!("connected to {url}"),
        Err(e) => {
            let text = e.to_string();
            eprintln!("refused as expected: {text}");
            assert!(!text.contains(PASSWORD), "the password leaks: {text}");
            text
        }
    }
}

#[test]
fn tls_checked_against_the_given_ca_connects_and_stores() {
    let Some((cluster, tls)) = testing::start_tls_or_skip("postgres tls verify-full") else {
        return;
    };
    let url = cluster.create_db("tls").unwrap();
    // sslrootcert alone means verify-full: chain and name (127.0.0.1).
    let url = format!("{}?sslrootcert={}", with_password(&url), tls.ca.display());
    let mut store = PgStore::open(&url).unwrap();
    assert!(!store.describe().contains(PASSWORD), "{}", store.describe());
    let out = store
        .write_batch(&[report("n1", "a1", 1, 60_000, &[1])], 0)
        .unwrap();
    assert!(matches!(out[..], [Outcome::Stored { .. }]), "{out:?}");
    // The server's own view: this session is encrypted.
    let conn = PgConn::connect(&url, Role::Reader).unwrap();
    let ssl: bool = conn
        .rt
        .block_on(conn.client.query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        ))
        .unwrap()
        .get(0);
    assert!(ssl, "the server sees a session without TLS");
    // By a name the certificate does not hold (connecting to hostaddr):
    // verify-ca checks the chain only, verify-full the name too.
    let by_other_name = url.replace("127.0.0.1", "tally-not-in-cert") + "&hostaddr=127.0.0.1";
    PgStore::open(&format!("{by_other_name}&sslmode=verify-ca")).unwrap();
    let err = open_err(&format!("{by_other_name}&sslmode=verify-full"));
    assert!(err.contains("certificate not valid for name"), "{err}");
}

#[test]
fn tls_refuses_a_server_not_signed_by_the_given_ca() {
    let Some((cluster, tls)) = testing::start_tls_or_skip("postgres tls wrong ca") else {
        return;
    };
    let url = with_password(&cluster.create_db("tls").unwrap());
    for mode in ["", "&sslmode=require", "&sslmode=verify-ca"] {
        let err = open_err(&format!(
            "{url}?sslrootcert={}{mode}",
            tls.other_ca.display()
        ));
        // rustls' cause, and which check failed.
        assert!(
            err.contains("invalid peer certificate: UnknownIssuer"),
            "{mode}: {err}"
        );
        assert!(err.contains("sslmode=verify-"), "{mode}: {err}");
        assert!(err.contains("checked against the CA in"), "{mode}: {err}");
    }
    // Without a CA, require is libpq's: encrypted, not checked.
    PgStore::open(&format!("{url}?sslmode=require")).unwrap();
}

#[test]
fn sslmode_disable_is_refused_by_a_server_that_requires_tls() {
    let Some((cluster, _tls)) = testing::start_tls_or_skip("postgres tls disable") else {
        return;
    };
    let url = with_password(&cluster.create_db("tls").unwrap());
    let err = open_err(&format!("{url}?sslmode=disable"));
    assert!(err.contains("sslmode=disable"), "{err}");
    // The server's reason: no pg_hba.conf line for a connection without TLS.
    assert!(err.contains("pg_hba.conf"), "{err}");
}

#[test]
fn a_write_blocked_on_a_lock_gives_up_after_the_lock_timeout_and_is_not_acknowledged() {
    let Some(cluster) = testing::start_or_skip("postgres lock timeout") else {
        return;
    };
    let url = cluster.create_db("locks").unwrap();
    let mut store = PgStore::open(&url).unwrap();
    // Another session holds the reports table (a manual LOCK, a DDL).
    let holder = PgConn::connect(&url, Role::Reader).unwrap();
    holder
        .rt
        .block_on(
            holder
                .client
                .batch_execute("BEGIN; LOCK TABLE reports IN ACCESS EXCLUSIVE MODE"),
        )
        .unwrap();
    let batch = [report("n1", "a1", 1, 60_000, &[1])];
    // The writer's default lock_timeout (10 s), not a hang.
    let err = store.write_batch(&batch, 0).unwrap_err();
    let StoreError::Postgres(PgError::Db(db)) = &err else {
        panic!("not a database error: {err}");
    };
    assert_eq!(
        db.code(),
        Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE),
        "{err}"
    );
    holder
        .rt
        .block_on(holder.client.batch_execute("ROLLBACK"))
        .unwrap();
    // Nothing of the failed batch was committed: the agent's resend stores
    // it (not a duplicate).
    let out = store.write_batch(&batch, 0).unwrap();
    assert!(matches!(out[..], [Outcome::Stored { .. }]), "{out:?}");
}

/// Resumes a stopped server process, even when the test fails.
struct Resume(i32);
impl Drop for Resume {
    fn drop(&mut self) {
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

#[test]
fn a_server_that_stops_answering_fails_the_write_unacknowledged_and_the_writer_reconnects() {
    let Some(cluster) = testing::start_or_skip("postgres silent server") else {
        return;
    };
    // A short statement timeout (the URL's, so the client's deadline
    // follows it: 1 s + 2 s).
    let url = cluster.create_db("silent").unwrap() + "?options=-c%20statement_timeout%3D1s";
    let mut store = PgStore::open(&url).unwrap();
    let backend: i32 = store
        .conn
        .call(None, async |c| {
            Ok(c.query_one("SELECT pg_backend_pid()", &[]).await?.get(0))
        })
        .unwrap();
    // The writer's server process stops answering, the socket stays open:
    // what a failover that sends no FIN looks like to the client (its
    // kernel still acknowledges what is sent).
    // SAFETY: kill has no memory preconditions.
    assert_eq!(unsafe { libc::kill(backend, libc::SIGSTOP) }, 0);
    let resume = Resume(backend);
    let batch = [report("n1", "a1", 1, 60_000, &[1])];
    let err = store.write_batch(&batch, 0).unwrap_err();
    assert!(
        matches!(err, StoreError::Postgres(PgError::Deadline { .. })),
        "{err}"
    );
    // The next batch goes to a new connection (a new server process) and
    // commits: the failed one was not stored, so this is not a duplicate.
    let out = store.write_batch(&batch, 0).unwrap();
    assert!(matches!(out[..], [Outcome::Stored { .. }]), "{out:?}");
    drop(resume);
}
