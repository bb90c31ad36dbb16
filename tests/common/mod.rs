//! Test harness: the real `mairie-dba` binary against real servers.
//!
//! Each test gets its own database (created here, dropped on drop) and its own config
//! directory, so tests run in parallel and leave nothing behind. A server that cannot be
//! reached fails the test with a clear message: it is never skipped.
//!
//! The servers are the project's own, made by `scripts/dev-services.sh`; their ports,
//! accounts and passwords are read from `scripts/dev-servers.env` (the one place they are
//! written). Elsewhere (containers in CI) the environment points at other servers:
//! `MAIRIE_DBA_TEST_PG`, a libpq-style connection string for a role that may create databases;
//! `MAIRIE_DBA_TEST_PG_SUPERUSER`, the same for a superuser; `MAIRIE_DBA_TEST_MYSQL` and
//! `MAIRIE_DBA_TEST_MYSQL_ADMIN`, URLs of a user that may create databases and of one that
//! may also create users and grant (`mysql://user:password@host:port`).
//!
//! Tests written once run on every engine through [`per_engine!`]: they talk to the
//! database through [`Db`], which maps the model's `schema.table` names to each engine's
//! (`metier.citoyens` is `metier_citoyens` on MySQL).

#![allow(dead_code)]

pub mod monitor;

// The S3 store (the project's SeaweedFS, scripts/dev-services.sh): a bucket per test, made and
// emptied and removed by `s3::TestBucket`. Separate from the SQL servers' harness below.
pub mod s3;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

pub const BIN: &str = env!("CARGO_BIN_EXE_mairie-dba");
pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The engines the suite runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    Mysql,
}

impl Engine {
    /// The target name and engine name in the generated config.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Mysql => "mysql",
        }
    }

    pub fn password_var(self) -> &'static str {
        match self {
            Engine::Postgres => "MAIRIE_PG_PASSWORD",
            Engine::Mysql => "MAIRIE_MYSQL_PASSWORD",
        }
    }
}

/// Runs the listed `fn name(engine: Engine)` tests once per engine, as
/// `postgres::name` and `mysql::name`.
#[macro_export]
macro_rules! per_engine {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $( #[test] fn $name() { super::$name($crate::common::Engine::Postgres) } )*
        }
        mod mysql {
            $( #[test] fn $name() { super::$name($crate::common::Engine::Mysql) } )*
        }
    };
}

/// A TCP port free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// (status code, content type, body) of a GET of `url` by curl.
pub fn curl_get(url: &str) -> (u16, String, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "-",
            "-w",
            "\n%{http_code} %{content_type}",
        ])
        .arg(url)
        .output()
        .expect("curl");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, tail) = text.rsplit_once('\n').unwrap();
    let (code, ctype) = tail.split_once(' ').unwrap_or((tail, ""));
    (code.parse().unwrap(), ctype.to_string(), body.to_string())
}

/// curl's HTTP status for `url` with the given extra arguments.
pub fn curl_status(url: &str, extra: &[&str]) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).to_string()
}

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

/// `scripts/dev-servers.env`: the project's own servers, as `scripts/dev-services.sh` makes them.
const DEV_SERVERS: &str = include_str!("../../scripts/dev-servers.env");

/// One value of `scripts/dev-servers.env`.
pub fn dev_server(key: &str) -> &'static str {
    DEV_SERVERS
        .lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim())
        .unwrap_or_else(|| panic!("scripts/dev-servers.env has no {key}"))
}

fn dev_pg_dsn(user: &str, password: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user={} password={}",
        dev_server("MAIRIE_DEV_PG_PORT"),
        dev_server(user),
        dev_server(password)
    )
}

/// A role that may create databases (`MAIRIE_DBA_TEST_PG`, else the project's `mairie`).
pub fn pg_admin_dsn() -> String {
    std::env::var("MAIRIE_DBA_TEST_PG")
        .unwrap_or_else(|_| dev_pg_dsn("MAIRIE_DEV_USER", "MAIRIE_DEV_PASSWORD"))
}

/// A superuser (`MAIRIE_DBA_TEST_PG_SUPERUSER`, else the project's `mairie_admin`).
pub fn pg_superuser_dsn() -> String {
    std::env::var("MAIRIE_DBA_TEST_PG_SUPERUSER")
        .unwrap_or_else(|_| dev_pg_dsn("MAIRIE_DEV_ADMIN_USER", "MAIRIE_DEV_ADMIN_PASSWORD"))
}

/// The port of the PostgreSQL server the tests use.
pub fn pg_port() -> u16 {
    let dsn = pg_admin_dsn();
    dsn_value(&dsn, "port")
        .unwrap_or_else(|| "5432".into())
        .parse()
        .unwrap_or_else(|e| panic!("port of `{dsn}`: {e}"))
}

/// The role whose password the server always checks (wrong-password tests) and its password.
pub fn pg_pwtest() -> (&'static str, &'static str) {
    (
        dev_server("MAIRIE_DEV_PWTEST_USER"),
        dev_server("MAIRIE_DEV_PWTEST_PASSWORD"),
    )
}

pub fn dsn_value(dsn: &str, key: &str) -> Option<String> {
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
    pg_query_as(&pg_admin_dsn(), dbname, sql)
}

/// Runs SQL on a database with the connection string `base` (a role's DSN, without
/// `dbname`); rows as text (None for NULL).
pub fn pg_query_as(base: &str, dbname: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    let dsn = format!("{base} dbname={dbname}");
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
        drop_pg_database(&self.name);
    }
}

/// Drops a test database whoever is connected to it. An autovacuum worker (after a test
/// loaded a big table) belongs to no role the test role is a member of, so FORCE may be
/// refused for a moment: retry, then as the superuser.
pub fn drop_pg_database(name: &str) {
    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
    let dsn = format!("{} dbname=postgres", pg_admin_dsn());
    for _ in 0..20 {
        let done = runtime().block_on(async {
            let Ok((client, conn)) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await
            else {
                return false;
            };
            tokio::spawn(conn);
            client.simple_query(&sql).await.is_ok()
        });
        if done {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let su = format!("{} dbname=postgres", pg_superuser_dsn());
    runtime().block_on(async {
        let (client, conn) = tokio_postgres::connect(&su, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connecting as the superuser to drop {name}: {e}"));
        tokio::spawn(conn);
        client
            .simple_query(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    });
}

fn dev_mysql_url(user: &str, password: &str) -> String {
    format!(
        "mysql://{}:{}@127.0.0.1:{}",
        dev_server(user),
        dev_server(password),
        dev_server("MAIRIE_DEV_MY_PORT")
    )
}

/// A user that may create databases (`MAIRIE_DBA_TEST_MYSQL`, else the project's `mairie`).
pub fn mysql_url() -> String {
    std::env::var("MAIRIE_DBA_TEST_MYSQL")
        .unwrap_or_else(|_| dev_mysql_url("MAIRIE_DEV_USER", "MAIRIE_DEV_PASSWORD"))
}

/// A user that may also create users and grant (`MAIRIE_DBA_TEST_MYSQL_ADMIN`, else the
/// project's `mairie_admin`).
pub fn mysql_admin_url() -> String {
    std::env::var("MAIRIE_DBA_TEST_MYSQL_ADMIN")
        .unwrap_or_else(|_| dev_mysql_url("MAIRIE_DEV_ADMIN_USER", "MAIRIE_DEV_ADMIN_PASSWORD"))
}

/// The port of the MySQL/MariaDB server the tests use.
pub fn mysql_port() -> u16 {
    mysql_async::Opts::from_url(&mysql_url())
        .map(|o| o.tcp_port())
        .unwrap_or(3306)
}

/// Runs SQL on a MySQL database (None: no default database); rows as text.
pub fn my_query(dbname: Option<&str>, sql: &str) -> Vec<Vec<Option<String>>> {
    use mysql_async::prelude::Queryable;
    let url = mysql_url();
    runtime().block_on(async {
        let mut opts = mysql_async::OptsBuilder::from_opts(
            mysql_async::Opts::from_url(&url)
                .unwrap_or_else(|e| panic!("MAIRIE_DBA_TEST_MYSQL `{url}`: {e}")),
        );
        if let Some(db) = dbname {
            opts = opts.db_name(Some(db));
        }
        let mut conn = mysql_async::Conn::new(opts).await.unwrap_or_else(|e| {
            panic!("MariaDB/MySQL is not reachable at `{url}` ({e}): run scripts/dev-services.sh")
        });
        let rows: Vec<mysql_async::Row> = conn
            .query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let out = rows
            .into_iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| match r.as_ref(i) {
                        None | Some(mysql_async::Value::NULL) => None,
                        Some(mysql_async::Value::Bytes(b)) => {
                            Some(String::from_utf8_lossy(b).into_owned())
                        }
                        Some(v) => Some(v.as_sql(true).trim_matches('\'').to_string()),
                    })
                    .collect()
            })
            .collect();
        let _ = conn.disconnect().await;
        out
    })
}

/// A fresh database on one engine, dropped at the end of the test.
pub enum Db {
    Pg(PgDb),
    My(String),
}

impl Db {
    pub fn new(engine: Engine) -> Db {
        match engine {
            Engine::Postgres => Db::Pg(PgDb::new()),
            Engine::Mysql => {
                let name = unique("mdba_t");
                my_query(
                    None,
                    &format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"),
                );
                Db::My(name)
            }
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Db::Pg(p) => &p.name,
            Db::My(n) => n,
        }
    }

    pub fn engine(&self) -> Engine {
        match self {
            Db::Pg(_) => Engine::Postgres,
            Db::My(_) => Engine::Mysql,
        }
    }

    /// The engine's name for a model table: `metier.citoyens`, or `metier_citoyens` on
    /// MySQL; a bare name is PostgreSQL's `public` schema.
    pub fn table(&self, t: &str) -> String {
        match (self, t.split_once('.')) {
            (Db::Pg(_), Some(_)) => t.to_string(),
            (Db::Pg(_), None) => format!("public.{t}"),
            (Db::My(_), Some((s, n))) => format!("{s}_{n}"),
            (Db::My(_), None) => t.to_string(),
        }
    }

    /// Runs SQL written with the model's `schema.table` names (mapped on MySQL).
    pub fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        match self {
            Db::Pg(p) => p.query(sql),
            Db::My(n) => {
                let mut mapped = sql.to_string();
                for schema in ["referentiel", "metier", "reporting"] {
                    mapped = mapped.replace(&format!("{schema}."), &format!("{schema}_"));
                }
                my_query(Some(n), &mapped)
            }
        }
    }

    pub fn scalar(&self, sql: &str) -> Option<String> {
        self.query(sql)
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten())
    }

    /// Rows of a model table, with an optional WHERE clause written in portable SQL.
    pub fn count_where(&self, table: &str, cond: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM {} WHERE {cond}", self.table(table));
        self.scalar(&sql).unwrap().parse().unwrap()
    }

    pub fn count(&self, table: &str) -> i64 {
        self.count_where(table, "1 = 1")
    }

    pub fn exists(&self, table: &str) -> bool {
        let sql = match self {
            Db::Pg(_) => format!("SELECT count(*) FROM (SELECT to_regclass('{}') AS r) x WHERE r IS NOT NULL", self.table(table)),
            Db::My(_) => format!(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = '{}'",
                self.table(table)
            ),
        };
        self.scalar(&sql).as_deref() == Some("1")
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Db::My(n) = self {
            my_query(None, &format!("DROP DATABASE IF EXISTS {n}"));
        }
    }
}

/// A config directory for one test: `config_global.yml` with one target named after the
/// engine (`postgres` or `mysql`), plus files the test writes.
pub struct Env {
    pub dir: PathBuf,
    pub engine: Engine,
    pub db: Option<Db>,
    envs: Vec<(String, String)>,
}

impl Env {
    /// A config pointing at a new empty database; `sql/` and `data/` are the project's.
    pub fn new(engine: Engine) -> Env {
        let db = Db::new(engine);
        let mut env = Env::empty();
        env.engine = engine;
        env.write_engine_config(db.name(), "");
        env.write_global("");
        env.db = Some(db);
        env
    }

    pub fn pg() -> Env {
        Env::new(Engine::Postgres)
    }

    /// A database with the mairie schema applied.
    pub fn with_schema(engine: Engine) -> Env {
        let env = Env::new(engine);
        env.run(&["schema", "apply"]).success();
        env
    }

    pub fn pg_with_schema() -> Env {
        Env::with_schema(Engine::Postgres)
    }

    pub fn empty() -> Env {
        let dir = std::env::temp_dir().join(unique("mairie-dba-test"));
        std::fs::create_dir_all(&dir).unwrap();
        Env {
            dir,
            engine: Engine::Postgres,
            db: None,
            envs: vec![
                ("MAIRIE_PG_PASSWORD".into(), password()),
                ("MAIRIE_MYSQL_PASSWORD".into(), mysql_password()),
            ],
        }
    }

    pub fn db(&self) -> &Db {
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

    /// The engine file (`config_postgres.yml` / `config_mysql.yml`) for `dbname`, with extra
    /// connection lines.
    pub fn write_engine_config(&self, dbname: &str, extra: &str) {
        match self.engine {
            Engine::Postgres => self.write_pg_config(dbname, extra),
            Engine::Mysql => {
                let url = mysql_url();
                let opts = mysql_async::Opts::from_url(&url).unwrap();
                let mut text = format!(
                    "connection:\n  host: {}\n  port: {}\n  database: {dbname}\n  user: {}\n  password_env: MAIRIE_MYSQL_PASSWORD\n  connect_timeout: 5\n",
                    opts.ip_or_hostname(),
                    opts.tcp_port(),
                    opts.user().unwrap_or("mairie")
                );
                text.push_str(extra);
                self.write("config_mysql.yml", text);
            }
        }
    }

    /// `config_postgres.yml` for `dbname`, with extra connection lines.
    pub fn write_pg_config(&self, dbname: &str, extra: &str) {
        let host = dsn_value(&pg_admin_dsn(), "host").unwrap_or_else(|| "127.0.0.1".into());
        let port = pg_port();
        let user = dsn_value(&pg_admin_dsn(), "user").unwrap_or_else(|| "mairie".into());
        let mut text = format!(
            "connection:\n  host: {host}\n  port: {port}\n  database: {dbname}\n  user: {user}\n  password_env: MAIRIE_PG_PASSWORD\n  connect_timeout: 5\n"
        );
        text.push_str(extra);
        self.write("config_postgres.yml", text);
    }

    /// `config_global.yml` with this engine's target, base_dir at the project root, the
    /// project's demo `datasets:`, and extra top-level YAML.
    pub fn write_global(&self, extra: &str) {
        let datasets = project_section("datasets");
        let e = self.engine.name();
        self.write(
            "config_global.yml",
            format!("base_dir: {ROOT}\ntargets:\n  {e}:\n    engine: {e}\n    config: config_{e}.yml\n{extra}{datasets}"),
        );
    }

    /// Like [`Env::write_global`], with `section` (a top-level YAML section such as
    /// `"maintenance:\n  batch_size: 2\n"`) in place of the project's section of the same
    /// key, which appending it would repeat (a duplicate key).
    pub fn write_global_replacing(&self, section: &str) {
        // `write_global` takes only the project's datasets: nothing to replace any more.
        self.write_global(section);
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
        Run::from(self.command(&[], args).output().expect("run mairie-dba"))
    }

    /// The command `run` would execute, not started: for tests that run the binary in the
    /// background (spawn, then kill or wait) or under a wrapper. `wrapper` goes first:
    /// `&["bash", "-c", "ulimit -f 64; exec \"$@\"", "bash"]` runs the binary under a limit.
    pub fn command(&self, wrapper: &[&str], args: &[&str]) -> Command {
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        cmd.arg("-c").arg(self.path("config_global.yml")).args(args);
        cmd.env_remove("MAIRIE_DBA_CONFIG")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SHARED_CREDENTIALS_FILE")
            .env_remove("PGPASSWORD")
            .env_remove("MAIRIE_PG_PASSWORD")
            .env_remove("MAIRIE_MYSQL_PASSWORD");
        // Records (the state directory) default under HOME: inside this test's directory.
        cmd.env("HOME", &self.dir)
            .env_remove("XDG_STATE_HOME")
            .env_remove("MAIRIE_DBA_STATE_DIR");
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        cmd.current_dir(&self.dir);
        cmd
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn mysql_password() -> String {
    mysql_async::Opts::from_url(&mysql_url())
        .ok()
        .and_then(|o| o.pass().map(str::to_string))
        .unwrap_or_else(|| "mairie".into())
}

pub fn password() -> String {
    dsn_value(&pg_admin_dsn(), "password").unwrap_or_else(|| "mairie".into())
}

/// A cross-process lock, held until dropped: tests that touch server-wide state take turns
/// on it (tests run as threads under `cargo test` and as processes under nextest).
pub struct Serial {
    _file: std::fs::File,
}

/// Waits for and takes the lock `name`: the file `mairie-dba-<name>.lock` in the temporary
/// directory (`serial("health-tests-postgres")`).
pub fn serial(name: &str) -> Serial {
    let path = std::env::temp_dir().join(format!("mairie-dba-{name}.lock"));
    let f = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    f.lock()
        .unwrap_or_else(|e| panic!("lock {}: {e}", path.display()));
    Serial { _file: f }
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

    /// The run failed with exactly one error, on one line: a non-zero exit code, exactly one
    /// stderr line starting with `error:` with a message after the prefix, no error chain
    /// (`Caused by:`, indented lines continuing the error line, or a second `Error:`/`ERROR:`
    /// line) and no panic or backtrace. Other stderr lines (`warning: ...`, `<target>: ...`
    /// progress and summary lines) are allowed.
    pub fn one_line_error(&self) -> &Self {
        let fail = |why: String| -> ! {
            panic!(
                "not a one-line error: {why}\n--- exit code {}\n--- stderr\n{}\n--- stdout\n{}",
                self.code, self.stderr, self.stdout
            )
        };
        if self.code == 0 {
            fail("the run succeeded (exit code 0)".into());
        }
        if self.code < 0 {
            fail("the process was killed by a signal".into());
        }
        let lines: Vec<&str> = self.stderr.lines().collect();
        // Any capitalisation: `Error:` (what a `main` returning `Err` prints) or `ERROR:` (a
        // server's message passed through on a line of its own) is a second error line.
        let errors: Vec<usize> = (0..lines.len())
            .filter(|&i| {
                lines[i]
                    .get(..6)
                    .is_some_and(|p| p.eq_ignore_ascii_case("error:"))
            })
            .collect();
        let i = match errors[..] {
            [] => fail("no line starts with `error:`".into()),
            [i] => i,
            _ => fail(format!(
                "{} error lines: {:?}",
                errors.len(),
                errors.iter().map(|&i| lines[i]).collect::<Vec<_>>()
            )),
        };
        let Some(message) = lines[i].strip_prefix("error:") else {
            fail(format!("the error line {:?} is not `error: ...`", lines[i]));
        };
        if message.trim().is_empty() {
            fail("the error line has no message after `error:`".into());
        }
        if let Some(l) = lines
            .iter()
            .find(|l| l.trim_start().starts_with("Caused by:"))
        {
            fail(format!("an error chain ({l:?})"));
        }
        // Lines continuing the error: indented, right after it (blank lines skipped, as in
        // `error: ...\n\n  tip: ...`).
        if let Some(l) = lines[i + 1..].iter().find(|l| !l.trim().is_empty()) {
            if l.starts_with([' ', '\t']) {
                fail(format!("the error continues on an indented line ({l:?})"));
            }
        }
        for needle in ["panicked at", "RUST_BACKTRACE", "stack backtrace:"] {
            if self.stderr.contains(needle) {
                fail(format!("a panic or backtrace ({needle:?})"));
            }
        }
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", self.stdout))
    }
}

/// One top-level section of the project's `config/config_global.yml` (the key line and its
/// indented lines), so that test configs reuse the demo datasets and nothing else.
pub fn project_section(key: &str) -> String {
    let project = std::fs::read_to_string(project("config/config_global.yml")).unwrap();
    let mut out = String::new();
    let mut inside = false;
    for line in project.split_inclusive('\n') {
        if !line.trim().is_empty() && !line.starts_with([' ', '\t', '#']) {
            inside = line.starts_with(&format!("{key}:"));
        }
        if inside {
            out.push_str(line);
        }
    }
    assert!(!out.is_empty(), "no `{key}:` in the project config");
    out
}

/// The parts of `MAIRIE_DBA_TEST_MSSQL` (an ADO.NET connection string) the tests need.
pub struct Ado {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub raw: String,
}

pub fn mssql_ado() -> Ado {
    let raw = std::env::var("MAIRIE_DBA_TEST_MSSQL").expect("MAIRIE_DBA_TEST_MSSQL");
    let mut a = Ado {
        host: "127.0.0.1".into(),
        port: 1433,
        user: "sa".into(),
        password: String::new(),
        raw: raw.clone(),
    };
    for part in raw.split(';').filter(|p| !p.trim().is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            continue;
        };
        match k.trim().to_ascii_lowercase().as_str() {
            "server" | "data source" | "address" => {
                let v = v.trim().trim_start_matches("tcp:");
                let (h, p) = v.split_once(',').unwrap_or((v, "1433"));
                a.host = h.to_string();
                a.port = p.trim().parse().expect("port");
            }
            "user id" | "uid" | "user" => a.user = v.trim().to_string(),
            "password" | "pwd" => a.password = v.to_string(),
            _ => {}
        }
    }
    a
}

/// Path of a file of the project.
pub fn project(p: &str) -> PathBuf {
    Path::new(ROOT).join(p)
}
