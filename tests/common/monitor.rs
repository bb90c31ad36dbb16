//! The backup monitor's test harness: a monitor directory (deposits, validated store,
//! config) with a real history, SQLite in the directory or a PostgreSQL database made for
//! it, and the agents' deposits and reports written as real files.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{PgDb, Run, BIN};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const CENTRE: (&str, &str, &str) = ("ville", "marseille", "centre");

/// Runs the listed `fn name(backend: Backend)` tests on both histories, as
/// `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name($crate::common::monitor::Backend::Sqlite) } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name($crate::common::monitor::Backend::Postgres) } )*
        }
    };
}

/// The settings a monitor is written with unless a test writes its own ([`Mon::configure`]).
pub const SETTINGS: &str =
    "  report_max_age_days: 2\n  collection_window_minutes: 120\n  keep_validated: 1\n";

/// One monitor: its directory (deposits, validated store, config) and its history.
pub struct Mon {
    pub dir: PathBuf,
    /// The deposit zone: `<dir>/deposits`, or a directory of its own on another filesystem.
    pub deposits: PathBuf,
    pub pg: Option<PgDb>,
    /// The `history:` value of the configuration.
    history: String,
    /// The `monitor.jobs` list.
    jobs: String,
    /// Environment variables given to every command.
    env: Vec<(String, String)>,
}

fn unique_name(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

impl Mon {
    /// A monitor expecting `jobs` (lines of the `monitor.jobs` list), with [`SETTINGS`].
    pub fn new(backend: Backend, jobs: &str) -> Mon {
        Mon::with_deposits_in(backend, jobs, None)
    }

    /// A monitor whose deposit zone is a new directory under `elsewhere` (another
    /// filesystem: promotions are then copies, not renames).
    pub fn with_deposits_in(backend: Backend, jobs: &str, elsewhere: Option<&Path>) -> Mon {
        let dir = std::env::temp_dir().join(unique_name("mairie-dba-monitor"));
        let deposits = match elsewhere {
            None => dir.join("deposits"),
            Some(e) => e.join(unique_name("mairie-dba-monitor-deposits")),
        };
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&deposits).unwrap();
        let pg = (backend == Backend::Postgres).then(PgDb::new);
        let history = match &pg {
            None => "sqlite:history/monitor.db".to_string(),
            Some(db) => format!(
                "{{url: \"postgres://{}@127.0.0.1:{}/{}?sslmode=disable\", password_env: MON_TEST_PW}}",
                super::dsn_value(&super::pg_admin_dsn(), "user").unwrap(),
                super::pg_port(),
                db.name
            ),
        };
        let m = Mon {
            dir,
            deposits,
            pg,
            history,
            jobs: jobs.to_string(),
            env: vec![("MON_TEST_PW".into(), super::password())],
        };
        m.configure(SETTINGS);
        m
    }

    /// Writes the configuration with these `settings` (lines indented under `monitor:`,
    /// between the history and the jobs).
    pub fn configure(&self, settings: &str) {
        self.configure_store("validated", settings)
    }

    /// As [`Mon::configure`], with the validated store at `validated` (a directory, or
    /// `s3://bucket/prefix` with an `s3:` block among the settings).
    pub fn configure_store(&self, validated: &str, settings: &str) {
        let jobs = if self.jobs.is_empty() {
            " []\n".to_string()
        } else {
            format!("\n{}", self.jobs)
        };
        std::fs::write(
            self.dir.join("config_global.yml"),
            format!(
                "monitor:\n  deposit_dir: {}\n  validated_dir: {validated}\n  history: {}\n{settings}  jobs:{jobs}",
                self.deposits.display(),
                self.history,
            ),
        )
        .unwrap();
    }

    /// Gives every later command this environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Mon {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("-c")
            .arg(self.dir.join("config_global.yml"))
            .args(args)
            .env_remove("MAIRIE_DBA_CONFIG")
            .env("HOME", &self.dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.dir);
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().unwrap())
    }

    /// `monitor scan --now NOW --format json`: the run and the document.
    pub fn scan_run(&self, now: &str) -> (Run, Value) {
        let r = self.run(&["monitor", "scan", "--now", now, "--format", "json"]);
        let v: Value = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("{e}\n--- stdout\n{}\n--- stderr\n{}", r.stdout, r.stderr));
        (r, v)
    }

    /// `monitor scan --now NOW --format json`: the exit code and the document.
    pub fn scan(&self, now: &str) -> (i32, Value) {
        let (r, v) = self.scan_run(now);
        (r.code, v)
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["--format", "json"]);
        let r = self.run(&a);
        serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("{e}\n--- stdout\n{}\n--- stderr\n{}", r.stdout, r.stderr))
    }

    pub fn site(&self, root: &str, (c, x, s): (&str, &str, &str)) -> PathBuf {
        let base = if root == "deposits" {
            self.deposits.clone()
        } else {
            self.dir.join(root)
        };
        base.join(c).join(x).join(s)
    }

    /// Deposits a backup file and returns the report line for it.
    pub fn deposit(
        &self,
        site: (&str, &str, &str),
        db: &str,
        engine: &str,
        file: &str,
        bytes: &[u8],
    ) -> Value {
        let d = self.site("deposits", site).join(db);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(file), bytes).unwrap();
        std::fs::write(d.join(format!("{file}.json")), "{\"manifest\": true}").unwrap();
        line(db, engine, file, bytes)
    }

    /// Writes the site's STATUS.json.
    pub fn report(&self, site: (&str, &str, &str), generated_at: &str, databases: Vec<Value>) {
        let d = self.site("deposits", site);
        std::fs::create_dir_all(&d).unwrap();
        let doc = json!({
            "agent": {"company": site.0, "city": site.1, "site": site.2, "host": "srv1"},
            "generated_at": generated_at,
            "databases": databases,
        });
        std::fs::write(
            d.join("STATUS.json"),
            serde_json::to_vec_pretty(&doc).unwrap(),
        )
        .unwrap();
    }

    pub fn validated(&self, site: (&str, &str, &str), db: &str) -> Vec<String> {
        files(&self.site("validated", site).join(db))
    }

    pub fn deposited(&self, site: (&str, &str, &str), db: &str) -> Vec<String> {
        files(&self.site("deposits", site).join(db))
    }
}

impl Drop for Mon {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.deposits);
        let _ = std::fs::remove_dir_all(&self.dir);
        drop(self.pg.take());
    }
}

/// A running `monitor serve` on a free port of 127.0.0.1, stopped on drop.
pub struct Serve {
    child: Child,
    pub base: String,
}

impl Serve {
    pub fn start(m: &Mon, extra: &[&str]) -> Serve {
        let port = super::free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["monitor", "serve", "--listen", &listen];
        args.extend_from_slice(extra);
        let child = m
            .command(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start monitor serve");
        let s = Serve {
            child,
            base: format!("http://{listen}"),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(&listen).is_ok() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("monitor serve did not listen on {listen}");
    }

    /// (status code, content type, body) of a GET.
    pub fn get(&self, path: &str) -> (u16, String, String) {
        super::curl_get(&format!("{}{path}", self.base))
    }

    /// (status code, document) of a GET that must answer JSON.
    pub fn json(&self, path: &str) -> (u16, Value) {
        let (code, ctype, body) = self.get(path);
        assert!(
            ctype.starts_with("application/json"),
            "{path}: content type {ctype}, body {body}"
        );
        (
            code,
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}")),
        )
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn line(db: &str, engine: &str, file: &str, bytes: &[u8]) -> Value {
    json!({"database": db, "engine": engine, "status": "success", "file": file,
           "size_bytes": bytes.len(), "sha256": sha(bytes),
           "started_at": "2026-12-06T02:00:00Z", "finished_at": "2026-12-06T02:00:04Z",
           "backup_seconds": 4.1, "compression_seconds": 0.5, "transfer_seconds": 0.3,
           "error": null, "last_drill": {"at": "2026-12-01T03:00:00Z", "status": "success"}})
}

pub fn daily(id: &str, site: (&str, &str, &str), db: &str, engine: &str, at: &str) -> String {
    format!(
        "    - {{id: {id}, company: {}, city: {}, site: {}, database: {db}, engine: {engine}, frequency: daily, at: \"{at}\", grace_minutes: 60}}\n",
        site.0, site.1, site.2
    )
}

pub fn two_jobs() -> String {
    daily("centre-mairie", CENTRE, "mairie", "postgres", "02:00")
        + &daily("centre-etat", CENTRE, "etat_civil", "mysql", "02:00")
}

/// `2026-12-DDTHH:MM:00Z`.
pub fn t(day: u32, hm: &str) -> String {
    format!("2026-12-{day:02}T{hm}:00Z")
}

/// `len` bytes that do not compress or repeat (a dump's look), different from seed to seed
/// (xorshift).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
