//! The monitor's history: when each job was first seen, every occurrence judged for good
//! (status, times, sizes, hashes, the agent's durations, the error), every status change,
//! the unexpected deposits, and the alerts' state (each job's last notified status, the
//! notices waiting to be delivered: [`super::notify`]).
//!
//! One schema, one set of statements, on SQLite (the embedded default, the system's
//! libsqlite3 through rusqlite) and on PostgreSQL (tokio-postgres): only standard SQL both
//! understand (`ON CONFLICT`, `$n` parameters used in order, times as RFC 3339 text, which
//! sorts the same on both, every column read back cast to text).
//!
//! Recording is idempotent: an occurrence is keyed by job and due time, so a scan killed
//! after recording part of its work records the rest on the next run, never twice.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::config::HistorySetting;
use super::scan::{JobState, Judgement, Unexpected};
use super::{stamp, unstamp, JobStatus};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS monitor_jobs (
    job_id TEXT PRIMARY KEY,
    first_seen TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS monitor_occurrences (
    job_id TEXT NOT NULL,
    due_at TEXT NOT NULL,
    deadline TEXT NOT NULL,
    judged_at TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL,
    report TEXT,
    report_generated_at TEXT,
    file TEXT,
    size_bytes BIGINT,
    sha256 TEXT,
    started_at TEXT,
    finished_at TEXT,
    backup_seconds DOUBLE PRECISION,
    compression_seconds DOUBLE PRECISION,
    transfer_seconds DOUBLE PRECISION,
    last_drill_at TEXT,
    last_drill_status TEXT,
    promoted BIGINT NOT NULL,
    PRIMARY KEY (job_id, due_at)
);
CREATE TABLE IF NOT EXISTS monitor_status_changes (
    job_id TEXT NOT NULL,
    changed_at TEXT NOT NULL,
    due_at TEXT NOT NULL,
    old_status TEXT,
    new_status TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (job_id, due_at)
);
CREATE TABLE IF NOT EXISTS monitor_unexpected (
    path TEXT NOT NULL,
    reason TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    PRIMARY KEY (path, reason)
);
CREATE TABLE IF NOT EXISTS monitor_scans (
    started_at TEXT PRIMARY KEY,
    finished_at TEXT NOT NULL,
    seconds DOUBLE PRECISION NOT NULL,
    judged BIGINT NOT NULL,
    error TEXT
);
CREATE TABLE IF NOT EXISTS monitor_notify_state (
    job_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    since TEXT NOT NULL,
    notified_at TEXT
);
CREATE TABLE IF NOT EXISTS monitor_notify_outbox (
    id BIGINT PRIMARY KEY,
    created_at TEXT NOT NULL,
    channel TEXT NOT NULL,
    state TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    html TEXT,
    attempts BIGINT NOT NULL,
    last_attempt_at TEXT,
    last_error TEXT,
    last_error_at TEXT,
    sent_at TEXT
);
CREATE INDEX IF NOT EXISTS monitor_notify_outbox_pending ON monitor_notify_outbox (state, channel, id);
";

/// A parameter, typed the same way on both databases.
#[derive(Debug, Clone)]
pub(crate) enum Val {
    Text(Option<String>),
    Int(Option<i64>),
    Real(Option<f64>),
}

pub(crate) fn text(s: impl Into<String>) -> Val {
    Val::Text(Some(s.into()))
}

pub(crate) fn opt_time(t: Option<DateTime<Utc>>) -> Val {
    Val::Text(t.map(stamp))
}

/// An open history.
pub enum History {
    /// Behind a mutex so that a `&History` can cross an `.await` on any thread (a rusqlite
    /// connection is not `Sync`); every SQLite call is synchronous and holds it briefly.
    Sqlite(std::sync::Mutex<rusqlite::Connection>),
    Postgres(tokio_postgres::Client),
}

/// A job's current state, from its history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Current {
    pub status: Option<JobStatus>,
    pub due: Option<DateTime<Utc>>,
    pub message: Option<String>,
    pub last_ok: Option<DateTime<Utc>>,
    pub last_drill_at: Option<DateTime<Utc>>,
    pub last_drill_status: Option<String>,
}

/// One recorded occurrence, as `monitor history` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub due: String,
    pub status: String,
    pub judged_at: String,
    pub message: String,
    pub file: Option<String>,
    pub size_bytes: Option<u64>,
    pub sha256: Option<String>,
    pub report_generated_at: Option<String>,
    pub backup_seconds: Option<f64>,
    pub compression_seconds: Option<f64>,
    pub transfer_seconds: Option<f64>,
    pub previous_status: Option<String>,
}

/// An unexpected deposit, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnexpectedSeen {
    pub path: String,
    pub reason: String,
    pub first_seen: String,
    pub last_seen: String,
}

/// One scan, as recorded for the scanner's heartbeat and `/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScanRun {
    pub started_at: String,
    pub finished_at: String,
    pub seconds: f64,
    /// Occurrences judged for good by the scan.
    pub judged: u64,
    /// Why the scan failed (None: it finished).
    pub error: Option<String>,
}

impl History {
    /// Opens (creating when needed) the history and applies the schema.
    pub async fn open(setting: &HistorySetting) -> Result<History> {
        let h = match setting {
            HistorySetting::Sqlite(path) => {
                History::Sqlite(std::sync::Mutex::new(open_sqlite(path)?))
            }
            HistorySetting::Postgres { url, password_env } => {
                History::Postgres(connect_pg(url, password_env.as_deref()).await?)
            }
        };
        // Two processes opening a new history at once (a scan and a `monitor status`) must not
        // both create its tables: one transaction, serialised (SQLite's write lock, a
        // PostgreSQL advisory lock).
        let serialise = match &h {
            History::Sqlite(_) => "BEGIN IMMEDIATE;",
            History::Postgres(_) => "BEGIN; SELECT pg_advisory_xact_lock(7311846210);",
        };
        h.batch(&format!("{serialise}{SCHEMA}COMMIT;"))
            .await
            .context("applying the history's schema")?;
        Ok(h)
    }

    pub(crate) async fn batch(&self, sql: &str) -> Result<()> {
        match self {
            History::Sqlite(c) => lock(c).execute_batch(sql).map_err(Into::into),
            History::Postgres(c) => c
                .batch_execute(sql)
                .await
                .map_err(|e| anyhow!(crate::engine::postgres::describe(&e))),
        }
    }

    pub(crate) async fn exec(&self, sql: &str, params: &[Val]) -> Result<u64> {
        match self {
            History::Sqlite(c) => {
                let n = lock(c).execute(
                    sql,
                    rusqlite::params_from_iter(params.iter().map(sqlite_val)),
                )?;
                Ok(n as u64)
            }
            History::Postgres(c) => {
                let p = pg_params(params);
                c.execute(sql, &p)
                    .await
                    .map_err(|e| anyhow!(crate::engine::postgres::describe(&e)))
            }
        }
    }

    /// Rows of text columns (the statement casts every column to text).
    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &[Val],
    ) -> Result<Vec<Vec<Option<String>>>> {
        match self {
            History::Sqlite(c) => {
                let c = lock(c);
                let mut st = c.prepare(sql)?;
                let n = st.column_count();
                let rows = st.query_map(
                    rusqlite::params_from_iter(params.iter().map(sqlite_val)),
                    |r| (0..n).map(|i| r.get::<_, Option<String>>(i)).collect(),
                )?;
                rows.collect::<Result<Vec<_>, _>>().map_err(Into::into)
            }
            History::Postgres(c) => {
                let p = pg_params(params);
                let rows = c
                    .query(sql, &p)
                    .await
                    .map_err(|e| anyhow!(crate::engine::postgres::describe(&e)))?;
                Ok(rows
                    .iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| r.get::<_, Option<String>>(i))
                            .collect()
                    })
                    .collect())
            }
        }
    }

    /// Records the jobs seen for the first time at `now`; returns every job's state.
    pub async fn register(
        &self,
        ids: &[&str],
        now: DateTime<Utc>,
    ) -> Result<HashMap<String, JobState>> {
        // One transaction: a thousand jobs cost one commit, not a thousand.
        self.batch("BEGIN").await?;
        for id in ids {
            let r = self
                .exec(
                    "INSERT INTO monitor_jobs (job_id, first_seen) VALUES ($1, $2) ON CONFLICT (job_id) DO NOTHING",
                    &[text(*id), text(stamp(now))],
                )
                .await;
            if let Err(e) = r {
                let _ = self.batch("ROLLBACK").await;
                return Err(e);
            }
        }
        self.batch("COMMIT").await?;
        let rows = self
            .query(
                "SELECT j.job_id, j.first_seen, (SELECT max(o.due_at) FROM monitor_occurrences o WHERE o.job_id = j.job_id) FROM monitor_jobs j",
                &[],
            )
            .await?;
        let mut out = HashMap::new();
        for r in rows {
            let (Some(id), Some(first)) = (&r[0], r[1].as_deref().and_then(unstamp)) else {
                continue;
            };
            out.insert(
                id.clone(),
                JobState {
                    first_seen: first,
                    last_final_due: r[2].as_deref().and_then(unstamp),
                    recorded: Default::default(),
                },
            );
        }
        Ok(out)
    }

    /// Adds to each state the occurrences recorded since `since(job id, last final due)`.
    pub async fn load_recorded(
        &self,
        states: &mut HashMap<String, JobState>,
        since: impl Fn(&str, DateTime<Utc>) -> Option<DateTime<Utc>>,
    ) -> Result<()> {
        let Some(bound) = states
            .iter()
            .filter_map(|(id, s)| since(id, s.last_final_due?))
            .min()
        else {
            return Ok(());
        };
        let rows = self
            .query(
                "SELECT job_id, due_at FROM monitor_occurrences WHERE due_at >= $1",
                &[text(stamp(bound))],
            )
            .await?;
        for r in rows {
            let (Some(id), Some(due)) = (&r[0], r[1].as_deref().and_then(unstamp)) else {
                continue;
            };
            if let Some(s) = states.get_mut(id) {
                s.recorded.insert(due);
            }
        }
        Ok(())
    }

    /// Records a final judgement (once: a second time is a no-op) and, when the job's status
    /// changes with it, the change. Returns whether it was new.
    pub async fn record(&self, j: &Judgement, now: DateTime<Utc>) -> Result<bool> {
        self.batch("BEGIN").await?;
        let res = self.record_in(j, now).await;
        match &res {
            Ok(_) => self.batch("COMMIT").await?,
            Err(_) => {
                let _ = self.batch("ROLLBACK").await;
            }
        }
        res
    }

    async fn record_in(&self, j: &Judgement, now: DateTime<Utc>) -> Result<bool> {
        let prev = self
            .query(
                "SELECT status FROM monitor_occurrences WHERE job_id = $1 AND due_at < $2 ORDER BY due_at DESC LIMIT 1",
                &[text(&j.job), text(stamp(j.due))],
            )
            .await?
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten());
        let n = self
            .exec(
                "INSERT INTO monitor_occurrences (job_id, due_at, deadline, judged_at, status, message, report, \
                 report_generated_at, file, size_bytes, sha256, started_at, finished_at, backup_seconds, \
                 compression_seconds, transfer_seconds, last_drill_at, last_drill_status, promoted) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) \
                 ON CONFLICT (job_id, due_at) DO NOTHING",
                &[
                    text(&j.job),
                    text(stamp(j.due)),
                    text(stamp(j.deadline)),
                    text(stamp(now)),
                    text(j.status.as_str()),
                    text(&j.message),
                    Val::Text(j.report.clone()),
                    opt_time(j.report_generated_at),
                    Val::Text(j.file.clone()),
                    Val::Int(j.size_bytes.and_then(|s| i64::try_from(s).ok())),
                    Val::Text(j.sha256.clone()),
                    opt_time(j.started_at),
                    opt_time(j.finished_at),
                    Val::Real(j.backup_seconds),
                    Val::Real(j.compression_seconds),
                    Val::Real(j.transfer_seconds),
                    opt_time(j.last_drill_at),
                    Val::Text(j.last_drill_status.clone()),
                    Val::Int(Some(i64::from(j.promoted))),
                ],
            )
            .await?;
        if n == 0 {
            return Ok(false);
        }
        if prev.as_deref() != Some(j.status.as_str()) {
            self.exec(
                "INSERT INTO monitor_status_changes (job_id, changed_at, due_at, old_status, new_status, message) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (job_id, due_at) DO NOTHING",
                &[
                    text(&j.job),
                    text(stamp(now)),
                    text(stamp(j.due)),
                    Val::Text(prev),
                    text(j.status.as_str()),
                    text(&j.message),
                ],
            )
            .await?;
        }
        Ok(true)
    }

    pub async fn record_unexpected(&self, u: &Unexpected, now: DateTime<Utc>) -> Result<()> {
        self.exec(
            "INSERT INTO monitor_unexpected (path, reason, first_seen, last_seen) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (path, reason) DO UPDATE SET last_seen = excluded.last_seen",
            &[text(&u.path), text(&u.reason), text(stamp(now)), text(stamp(now))],
        )
        .await?;
        Ok(())
    }

    /// A job's current state: its latest judged occurrence, its last good one, its last drill.
    pub async fn current(&self, job: &str) -> Result<Current> {
        let last = self
            .query(
                "SELECT status, due_at, message FROM monitor_occurrences WHERE job_id = $1 ORDER BY due_at DESC LIMIT 1",
                &[text(job)],
            )
            .await?;
        let ok = self
            .query(
                "SELECT max(due_at) FROM monitor_occurrences WHERE job_id = $1 AND status IN ('OK', 'UNCHANGED')",
                &[text(job)],
            )
            .await?;
        let drill = self
            .query(
                "SELECT last_drill_at, last_drill_status FROM monitor_occurrences WHERE job_id = $1 AND last_drill_at IS NOT NULL ORDER BY last_drill_at DESC LIMIT 1",
                &[text(job)],
            )
            .await?;
        let last = last.into_iter().next().unwrap_or_default();
        let drill = drill.into_iter().next().unwrap_or_default();
        let cell = |r: &Vec<Option<String>>, i: usize| r.get(i).cloned().flatten();
        Ok(Current {
            status: cell(&last, 0).as_deref().and_then(JobStatus::parse),
            due: cell(&last, 1).as_deref().and_then(unstamp),
            message: cell(&last, 2),
            last_ok: ok
                .into_iter()
                .next()
                .and_then(|r| r.into_iter().next().flatten())
                .as_deref()
                .and_then(unstamp),
            last_drill_at: cell(&drill, 0).as_deref().and_then(unstamp),
            last_drill_status: cell(&drill, 1),
        })
    }

    /// Every job's current state in three statements (latest occurrence, last good one,
    /// last drill), whatever the number of jobs.
    pub async fn currents(&self) -> Result<crate::monitor::view::Currents> {
        let mut out: crate::monitor::view::Currents = HashMap::new();
        let latest = self
            .query(
                "SELECT o.job_id, o.status, o.due_at, o.message FROM monitor_occurrences o \
                 JOIN (SELECT job_id, max(due_at) AS d FROM monitor_occurrences GROUP BY job_id) m \
                 ON m.job_id = o.job_id AND m.d = o.due_at",
                &[],
            )
            .await?;
        for r in latest {
            let Some(id) = r[0].clone() else { continue };
            let row = out.entry(id).or_default();
            row.status = r[1].as_deref().and_then(JobStatus::parse);
            row.due = r[2].as_deref().and_then(unstamp);
            row.message = r[3].clone();
        }
        let good = self
            .query(
                "SELECT o.job_id, o.due_at, CAST(o.size_bytes AS TEXT) FROM monitor_occurrences o \
                 JOIN (SELECT job_id, max(due_at) AS d FROM monitor_occurrences \
                 WHERE status IN ('OK', 'UNCHANGED') GROUP BY job_id) m \
                 ON m.job_id = o.job_id AND m.d = o.due_at",
                &[],
            )
            .await?;
        for r in good {
            let Some(id) = r[0].clone() else { continue };
            let row = out.entry(id).or_default();
            row.last_ok = r[1].as_deref().and_then(unstamp);
            row.last_ok_size = r[2].as_deref().and_then(|s| s.parse().ok());
        }
        let drills = self
            .query(
                "SELECT o.job_id, o.last_drill_at, o.last_drill_status FROM monitor_occurrences o \
                 JOIN (SELECT job_id, max(last_drill_at) AS d FROM monitor_occurrences \
                 WHERE last_drill_at IS NOT NULL GROUP BY job_id) m \
                 ON m.job_id = o.job_id AND m.d = o.last_drill_at ORDER BY o.due_at DESC",
                &[],
            )
            .await?;
        for r in drills {
            let Some(id) = r[0].clone() else { continue };
            let row = out.entry(id).or_default();
            if row.last_drill_at.is_none() {
                row.last_drill_at = r[1].as_deref().and_then(unstamp);
                row.last_drill_status = r[2].clone();
            }
        }
        Ok(out)
    }

    /// Records one scan (finished or failed).
    pub async fn record_scan(&self, run: &ScanRun) -> Result<()> {
        self.exec(
            "INSERT INTO monitor_scans (started_at, finished_at, seconds, judged, error) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (started_at) DO NOTHING",
            &[
                text(&run.started_at),
                text(&run.finished_at),
                Val::Real(Some(run.seconds)),
                Val::Int(Some(i64::try_from(run.judged).unwrap_or(i64::MAX))),
                Val::Text(run.error.clone()),
            ],
        )
        .await?;
        // The heartbeat needs the last scans only: a year of 5-minute scans is 100,000 rows
        // nobody reads.
        self.exec(
            "DELETE FROM monitor_scans WHERE started_at < $1",
            &[text(stamp(
                unstamp(&run.started_at).unwrap_or_else(Utc::now) - chrono::Duration::days(31),
            ))],
        )
        .await?;
        Ok(())
    }

    /// The last scan recorded.
    pub async fn last_scan(&self) -> Result<Option<ScanRun>> {
        let rows = self
            .query(
                "SELECT started_at, finished_at, CAST(seconds AS TEXT), CAST(judged AS TEXT), error \
                 FROM monitor_scans ORDER BY started_at DESC LIMIT 1",
                &[],
            )
            .await?;
        Ok(rows.into_iter().next().map(|r| ScanRun {
            started_at: r[0].clone().unwrap_or_default(),
            finished_at: r[1].clone().unwrap_or_default(),
            seconds: r[2].as_deref().and_then(|s| s.parse().ok()).unwrap_or(0.0),
            judged: r[3].as_deref().and_then(|s| s.parse().ok()).unwrap_or(0),
            error: r[4].clone(),
        }))
    }

    /// Failed scans recorded in the last 31 days.
    pub async fn scan_errors(&self) -> Result<u64> {
        let rows = self
            .query(
                "SELECT CAST(count(*) AS TEXT) FROM monitor_scans WHERE error IS NOT NULL",
                &[],
            )
            .await?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|r| r[0].as_deref().and_then(|s| s.parse().ok()))
            .unwrap_or(0))
    }

    /// Whether the history answers.
    pub async fn ping(&self) -> Result<()> {
        self.query("SELECT CAST(1 AS TEXT)", &[]).await.map(|_| ())
    }

    /// Every unexpected deposit recorded, the most recently seen first.
    pub async fn unexpected(&self) -> Result<Vec<UnexpectedSeen>> {
        let rows = self
            .query(
                "SELECT path, reason, first_seen, last_seen FROM monitor_unexpected ORDER BY last_seen DESC, path LIMIT 1000",
                &[],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let c = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                UnexpectedSeen {
                    path: c(0),
                    reason: c(1),
                    first_seen: c(2),
                    last_seen: c(3),
                }
            })
            .collect())
    }

    /// A job's recorded occurrences, newest first.
    pub async fn entries(&self, job: &str, limit: u32) -> Result<Vec<Entry>> {
        self.entries_since(job, limit, None).await
    }

    /// A job's recorded occurrences due at or after `since`, newest first.
    pub async fn entries_since(
        &self,
        job: &str,
        limit: u32,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<Entry>> {
        let rows = self
            .query(
                "SELECT o.due_at, o.status, o.judged_at, o.message, o.file, CAST(o.size_bytes AS TEXT), o.sha256, \
                 o.report_generated_at, CAST(o.backup_seconds AS TEXT), CAST(o.compression_seconds AS TEXT), \
                 CAST(o.transfer_seconds AS TEXT), c.old_status \
                 FROM monitor_occurrences o LEFT JOIN monitor_status_changes c \
                 ON c.job_id = o.job_id AND c.due_at = o.due_at \
                 WHERE o.job_id = $1 AND o.due_at >= $2 ORDER BY o.due_at DESC LIMIT $3",
                &[
                    text(job),
                    text(since.map(stamp).unwrap_or_default()),
                    Val::Int(Some(i64::from(limit))),
                ],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let c = |i: usize| r.get(i).cloned().flatten();
                let f = |i: usize| c(i).and_then(|s| s.parse::<f64>().ok());
                Entry {
                    due: c(0).unwrap_or_default(),
                    status: c(1).unwrap_or_default(),
                    judged_at: c(2).unwrap_or_default(),
                    message: c(3).unwrap_or_default(),
                    file: c(4),
                    size_bytes: c(5).and_then(|s| s.parse().ok()),
                    sha256: c(6),
                    report_generated_at: c(7),
                    backup_seconds: f(8),
                    compression_seconds: f(9),
                    transfer_seconds: f(10),
                    previous_status: c(11),
                }
            })
            .collect())
    }
}

fn lock(
    c: &std::sync::Mutex<rusqlite::Connection>,
) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

fn sqlite_val(v: &Val) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match v {
        Val::Text(Some(s)) => Value::Text(s.clone()),
        Val::Int(Some(i)) => Value::Integer(*i),
        Val::Real(Some(f)) => Value::Real(*f),
        _ => Value::Null,
    }
}

fn pg_params(params: &[Val]) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|v| -> &(dyn tokio_postgres::types::ToSql + Sync) {
            match v {
                Val::Text(t) => t,
                Val::Int(i) => i,
                Val::Real(f) => f,
            }
        })
        .collect()
}

fn open_sqlite(path: &Path) -> Result<rusqlite::Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let c = rusqlite::Connection::open(path)
        .with_context(|| format!("opening the history {}", path.display()))?;
    c.busy_timeout(std::time::Duration::from_secs(10))?;
    c.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
        .with_context(|| format!("opening the history {}", path.display()))?;
    Ok(c)
}

async fn connect_pg(url: &str, password_env: Option<&str>) -> Result<tokio_postgres::Client> {
    let mut cfg = tokio_postgres::Config::from_str(url).context("the history's URL")?;
    if let Some(var) = password_env {
        crate::engine::tools::register_secret_var(var);
        let pw = std::env::var(var).map_err(|_| {
            crate::error::ConfigError::new(format!(
                "monitor.history.password_env: environment variable {var} is not set"
            ))
        })?;
        cfg.password(pw);
    }
    cfg.application_name("mairie-dba monitor");
    let timeout = cfg
        .get_connect_timeout()
        .copied()
        .unwrap_or(std::time::Duration::from_secs(5));
    cfg.connect_timeout(timeout);
    let where_ = format!(
        "connecting to the monitor's history (postgres {}@{:?}/{})",
        cfg.get_user().unwrap_or("?"),
        cfg.get_hosts(),
        cfg.get_dbname().unwrap_or("?")
    );
    let tls = if cfg.get_ssl_mode() == tokio_postgres::config::SslMode::Disable {
        None
    } else {
        Some(crate::engine::postgres::tls::connector()?)
    };
    let connect = async {
        let client = match tls {
            None => {
                let (client, conn) = cfg.connect(tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                client
            }
            Some(tls) => {
                let (client, conn) = cfg.connect(tls).await?;
                tokio::spawn(conn);
                client
            }
        };
        Ok::<_, tokio_postgres::Error>(client)
    };
    tokio::time::timeout(timeout + std::time::Duration::from_secs(1), connect)
        .await
        .map_err(|_| anyhow!("timed out after {} s", timeout.as_secs()))
        .with_context(|| where_.clone())?
        .map_err(|e| anyhow!(crate::engine::postgres::describe(&e)))
        .with_context(|| where_)
}
