//! The backup monitor's test harness: a monitor directory (deposits, validated store,
//! config) with a real history, SQLite in the directory or a PostgreSQL database made for
//! it, and the agents' deposits and reports written as real files.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{PgDb, Run, BIN};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const CENTRE: (&str, &str, &str) = ("ville", "marseille", "centre");

/// One monitor: its directory (deposits, validated store, config) and its history.
pub struct Mon {
    pub dir: PathBuf,
    pub pg: Option<PgDb>,
}

impl Mon {
    pub fn new(backend: Backend, jobs: &str) -> Mon {
        let dir = std::env::temp_dir().join(format!(
            "mairie-dba-monitor-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(dir.join("deposits")).unwrap();
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
        let m = Mon { dir, pg };
        std::fs::write(
            m.dir.join("config_global.yml"),
            format!(
                "monitor:\n  deposit_dir: deposits\n  validated_dir: validated\n  history: {history}\n  \
                 report_max_age_days: 2\n  collection_window_minutes: 120\n  keep_validated: 1\n  jobs:\n{jobs}"
            ),
        )
        .unwrap();
        m
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("-c")
            .arg(self.dir.join("config_global.yml"))
            .args(args)
            .env_remove("MAIRIE_DBA_CONFIG")
            .env("HOME", &self.dir)
            .env("MON_TEST_PW", super::password())
            .current_dir(&self.dir);
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().unwrap())
    }

    /// `monitor scan --now NOW --format json`: the exit code and the document.
    pub fn scan(&self, now: &str) -> (i32, Value) {
        let r = self.run(&["monitor", "scan", "--now", now, "--format", "json"]);
        let v: Value = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("{e}\n--- stdout\n{}\n--- stderr\n{}", r.stdout, r.stderr));
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
        self.dir.join(root).join(c).join(x).join(s)
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
        let _ = std::fs::remove_dir_all(&self.dir);
        drop(self.pg.take());
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
