//! PostgreSQL helpers for the monitoring tests: a login role of the test's own (made and
//! dropped as the superuser), and another client's session held open in the background (a
//! transaction holding a lock, a query sleeping) until dropped. Included with
//! `#[path = "common/pg_sessions.rs"] mod pg_sessions;` by the suites that need them.

#![allow(dead_code)]

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::{dsn_value, pg_admin_dsn, pg_query_as, pg_superuser_dsn};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs SQL on `db` as the superuser; rows as text.
pub fn pg_su(db: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    pg_query_as(&pg_superuser_dsn(), db, sql)
}

/// The first column of the first row, as the superuser.
pub fn pg_su_scalar(db: &str, sql: &str) -> Option<String> {
    pg_su(db, sql)
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten())
}

/// A login role of the test's own, dropped (its sessions ended first) when dropped.
pub struct PgRole {
    pub name: String,
    pub password: String,
}

impl PgRole {
    /// `grants`: roles it is a member of (`&["pg_monitor"]`), or none.
    pub fn new(prefix: &str, grants: &[&str]) -> PgRole {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("{prefix}_{}_{nanos}", std::process::id());
        let password = format!("Pw-{name}");
        pg_su(
            "postgres",
            &format!("CREATE ROLE {name} LOGIN PASSWORD '{password}'"),
        );
        for g in grants {
            pg_su("postgres", &format!("GRANT {g} TO {name}"));
        }
        PgRole { name, password }
    }

    /// A libpq-style connection string for this role to `db`.
    pub fn dsn(&self, db: &str) -> String {
        let admin = pg_admin_dsn();
        format!(
            "host={} port={} user={} password={} dbname={db}",
            dsn_value(&admin, "host").unwrap_or_else(|| "127.0.0.1".into()),
            dsn_value(&admin, "port").unwrap_or_else(|| "5432".into()),
            self.name,
            self.password
        )
    }
}

impl Drop for PgRole {
    fn drop(&mut self) {
        let n = &self.name;
        pg_su(
            "postgres",
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{n}'"
            ),
        );
        // Its sessions take a moment to go; DROP ROLE refuses while one remains.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && pg_su_scalar(
                "postgres",
                &format!("SELECT count(*) FROM pg_stat_activity WHERE usename = '{n}'"),
            )
            .as_deref()
                != Some("0")
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        pg_su("postgres", &format!("DROP ROLE IF EXISTS {n}"));
    }
}

/// Another client's session, running `sql` in the background until dropped: a
/// `BEGIN; LOCK …` holds its lock, a `SELECT pg_sleep(…)` stays active. On drop its statement
/// is cancelled and the connection closed (an open transaction is rolled back).
pub struct PgSession {
    cancel: tokio_postgres::CancelToken,
    release: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// The server process id of the session.
    pub pid: i32,
}

impl PgSession {
    /// Connects with `dsn`, then runs `sql` (several statements allowed) and keeps the
    /// session as it leaves it.
    pub fn start(dsn: &str, sql: &str) -> PgSession {
        let (tx, rx) = mpsc::channel();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let dsn = dsn.to_string();
        let sql = sql.to_string();
        let thread = std::thread::spawn(move || {
            runtime().block_on(async move {
                let mut released = released;
                let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
                    .await
                    .unwrap_or_else(|e| panic!("connecting with `{dsn}`: {e}"));
                tokio::spawn(conn);
                let pid: i32 = client
                    .query_one("SELECT pg_backend_pid()", &[])
                    .await
                    .unwrap()
                    .get(0);
                tx.send((client.cancel_token(), pid)).unwrap();
                let work = client.batch_execute(&sql);
                tokio::select! {
                    r = work => {
                        if let Err(e) = r {
                            // A cancelled statement is how a sleeping session ends.
                            if e.code() != Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) {
                                panic!("{sql}: {e}");
                            }
                        }
                        let _ = (&mut released).await;
                    }
                    _ = &mut released => {}
                }
            })
        });
        let (cancel, pid) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the session connects");
        PgSession {
            cancel,
            release: Some(release),
            thread: Some(thread),
            pid,
        }
    }
}

impl Drop for PgSession {
    fn drop(&mut self) {
        let _ = runtime().block_on(self.cancel.cancel_query(tokio_postgres::NoTls));
        if let Some(r) = self.release.take() {
            let _ = r.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits until `cond` (a superuser query's first value) is "t", at most 10 s.
pub fn wait_until(db: &str, cond: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if pg_su_scalar(db, cond).as_deref() == Some("t") {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("still not true after 10 s: {cond}");
}
