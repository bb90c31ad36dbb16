//! Test harness: the real `mairie-dba` binary against real servers.
//!
//! Each test gets its own database (created here, dropped on drop) and its own config
//! directory, so tests run in parallel and leave nothing behind. A server that cannot be
//! reached fails the test with a clear message: it is never skipped.
//!
//! `MAIRIE_DBA_TEST_PG` is a libpq-style connection string for a role that may create
//! databases (default `host=127.0.0.1 port=5432 user=mairie password=mairie`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

pub const BIN: &str = env!("CARGO_BIN_EXE_mairie-dba");
pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn pg_admin_dsn() -> String {
    std::env::var("MAIRIE_DBA_TEST_PG")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=mairie password=mairie".to_string())
}

fn dsn_value(dsn: &str, key: &str) -> Option<String> {
    dsn.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_string))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs SQL on a database as the test role; rows as text (None for NULL).
pub fn pg_query(dbname: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    let dsn = format!("{} dbname={dbname}", pg_admin_dsn());
    runtime().block_on(async {
        let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL is not reachable with `{dsn}` ({e}): run scripts/dev-services.sh"
                )
            });
        tokio::spawn(conn);
        let msgs = client
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        msgs.into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                }
                _ => None,
            })
            .collect()
    })
}

/// A fresh PostgreSQL database, dropped at the end of the test.
pub struct PgDb {
    pub name: String,
}

impl PgDb {
    pub fn new() -> PgDb {
        let name = unique("mdba_t");
        pg_query("postgres", &format!("CREATE DATABASE {name}"));
        PgDb { name }
    }

    pub fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        pg_query(&self.name, sql)
    }

    /// The first column of the first row.
    pub fn scalar(&self, sql: &str) -> Option<String> {
        self.query(sql)
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten())
    }

    pub fn count(&self, table: &str) -> i64 {
        self.scalar(&format!("SELECT count(*) FROM {table}"))
            .unwrap()
            .parse()
            .unwrap()
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        pg_query(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// A config directory for one test: `config_global.yml` with one PostgreSQL target named
/// `postgres`, plus files the test writes.
pub struct Env {
    pub dir: PathBuf,
    pub db: Option<PgDb>,
    envs: Vec<(String, String)>,
}

impl Env {
    /// A config pointing at a new empty database; `sql/` and `data/` are the project's.
    pub fn pg() -> Env {
        let db = PgDb::new();
        let mut env = Env::empty();
        env.write_pg_config(&db.name, "");
        env.write_global("");
        env.db = Some(db);
        env
    }

    /// A database with the mairie schema applied.
    pub fn pg_with_schema() -> Env {
        let env = Env::pg();
        env.run(&["schema", "apply"]).success();
        env
    }

    pub fn empty() -> Env {
        let dir = std::env::temp_dir().join(unique("mairie-dba-test"));
        std::fs::create_dir_all(&dir).unwrap();
        Env {
            dir,
            db: None,
            envs: vec![("MAIRIE_PG_PASSWORD".into(), password())],
        }
    }

    pub fn db(&self) -> &PgDb {
        self.db.as_ref().expect("this Env has a database")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, contents).unwrap();
        p
    }

    /// `config_postgres.yml` for `dbname`, with extra connection lines.
    pub fn write_pg_config(&self, dbname: &str, extra: &str) {
        let host = dsn_value(&pg_admin_dsn(), "host").unwrap_or_else(|| "127.0.0.1".into());
        let port = dsn_value(&pg_admin_dsn(), "port").unwrap_or_else(|| "5432".into());
        let user = dsn_value(&pg_admin_dsn(), "user").unwrap_or_else(|| "mairie".into());
        let mut text = format!(
            "connection:\n  host: {host}\n  port: {port}\n  database: {dbname}\n  user: {user}\n  password_env: MAIRIE_PG_PASSWORD\n  connect_timeout: 5\n"
        );
        text.push_str(extra);
        self.write("config_postgres.yml", text);
    }

    /// `config_global.yml` with the `postgres` target, base_dir at the project root, the
    /// project's demo `datasets:`, and extra top-level YAML.
    pub fn write_global(&self, extra: &str) {
        let project = std::fs::read_to_string(project("config/config_global.yml")).unwrap();
        let datasets = &project[project
            .find("\ndatasets:")
            .expect("datasets in the project config")..];
        self.write(
            "config_global.yml",
            format!(
                "base_dir: {ROOT}\ntargets:\n  postgres:\n    engine: postgres\n    config: config_postgres.yml\n{extra}{datasets}"
            ),
        );
    }

    pub fn set_env(&mut self, key: &str, value: &str) {
        self.envs.retain(|(k, _)| k != key);
        self.envs.push((key.into(), value.into()));
    }

    pub fn remove_env(&mut self, key: &str) {
        self.envs.retain(|(k, _)| k != key);
    }

    /// Runs the binary with `-c <this config>` and the given arguments.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(BIN);
        cmd.arg("-c").arg(self.path("config_global.yml")).args(args);
        cmd.env_remove("MAIRIE_DBA_CONFIG")
            .env_remove("PGPASSWORD")
            .env_remove("MAIRIE_PG_PASSWORD");
        cmd.env("HOME", &self.dir);
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        cmd.current_dir(&self.dir);
        Run::from(cmd.output().expect("run mairie-dba"))
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn password() -> String {
    dsn_value(&pg_admin_dsn(), "password").unwrap_or_else(|| "mairie".into())
}

/// The outcome of one run, with assertions that print everything on failure.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code, expected,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn success(&self) -> &Self {
        self.code(0)
    }

    pub fn stderr_has(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n--- stderr\n{}\n--- stdout\n{}",
            self.stderr,
            self.stdout
        );
        self
    }

    pub fn stdout_has(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn lacks(&self, needle: &str) -> &Self {
        assert!(
            !self.stdout.contains(needle) && !self.stderr.contains(needle),
            "output shows {needle:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// The error lines of stderr: each must be a single line.
    pub fn one_line_error(&self) -> &Self {
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect();
        assert!(
            !errors.is_empty(),
            "no error line\n--- stderr\n{}",
            self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", self.stdout))
    }
}

/// Path of a file of the project.
pub fn project(p: &str) -> PathBuf {
    Path::new(ROOT).join(p)
}
