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
//!
//! Re-verifications of the validated store (`monitor verify`) are kept apart, in
//! `monitor_verifications`, one row per job and verification, since they are not occurrences
//! (a verification time made into a due time would move where scans look for occurrences).
//! Each row notes the job's latest occurrence when it was verified (`after_due`): a
//! HASH_MISMATCH is the job's current status until an occurrence later than that one is
//! recorded (the next backup, whose promotion replaces the damaged one) or a later
//! verification finds the store intact again. Its `previous_status` is the status `monitor
//! status` showed just before, so that a row whose status differs from it is a status change,
//! like those of `monitor_status_changes`.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::config::HistorySetting;
use super::scan::{JobState, Judgement, Unexpected};
use super::verify::{JobCheck, Promoted};
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
CREATE TABLE IF NOT EXISTS monitor_verifications (
    job_id TEXT NOT NULL,
    verified_at TEXT NOT NULL,
    status TEXT NOT NULL,
    files_checked BIGINT NOT NULL,
    files_bad BIGINT NOT NULL,
    message TEXT NOT NULL,
    after_due TEXT,
    previous_status TEXT,
    PRIMARY KEY (job_id, verified_at)
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

/// One recorded occurrence, as `monitor history` shows it, or a re-verification that changed
/// the job's status (`kind`: `occurrence` or `verification`; for a verification, `due` and
/// `judged_at` are its time).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub kind: &'static str,
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

/// A re-verification recorded: the job's status before and after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerificationRecorded {
    pub previous_status: Option<JobStatus>,
    pub status: Option<JobStatus>,
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
    /// The first column of the first row of `sql`'s answer (None for none or NULL).
    pub(crate) async fn query_value(&self, sql: &str, params: &[Val]) -> Result<Option<String>> {
        Ok(first_value(self.query(sql, params).await?))
    }

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
        let before = self
            .query(
                "SELECT status, due_at FROM monitor_occurrences WHERE job_id = $1 AND due_at < $2 ORDER BY due_at DESC LIMIT 1",
                &[text(&j.job), text(stamp(j.due))],
            )
            .await?
            .into_iter()
            .next()
            .unwrap_or_default();
        let cell = |i: usize| before.get(i).cloned().flatten();
        // A HASH_MISMATCH found after the previous occurrence is the status this one changes.
        let prev = match self.verification_after(&j.job, cell(1).as_deref()).await? {
            Some(v) if v == JobStatus::HashMismatch.as_str() => Some(v),
            _ => cell(0),
        };
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

    /// One job's current state: [`History::currents`] for that job alone.
    pub async fn current(&self, job: &str) -> Result<crate::monitor::view::CurrentRow> {
        Ok(self
            .currents_of(Some(job))
            .await?
            .remove(job)
            .unwrap_or_default())
    }

    /// Every job's current state in four statements (latest occurrence, last good one,
    /// last drill, last verification), whatever the number of jobs.
    pub async fn currents(&self) -> Result<crate::monitor::view::Currents> {
        self.currents_of(None).await
    }

    /// The current state of every job, or of `job` alone.
    async fn currents_of(&self, job: Option<&str>) -> Result<crate::monitor::view::Currents> {
        // Each statement keeps its own rows, and those of `job` only when given.
        let only = |filter: &str| match (job.is_some(), filter.is_empty()) {
            (false, _) => filter.to_string(),
            (true, true) => "WHERE job_id = $1".to_string(),
            (true, false) => format!("{filter} AND job_id = $1"),
        };
        let params: Vec<Val> = job.map(text).into_iter().collect();
        let mut out: crate::monitor::view::Currents = HashMap::new();
        let latest = self
            .latest_per_job(
                "monitor_occurrences",
                "o.status, o.due_at, o.message",
                "due_at",
                &only(""),
                "",
                &params,
            )
            .await?;
        for (id, r) in latest {
            let row = out.entry(id).or_default();
            row.status = r[0].as_deref().and_then(JobStatus::parse);
            row.due = r[1].as_deref().and_then(unstamp);
            row.message = r[2].clone();
        }
        let good = self
            .latest_per_job(
                "monitor_occurrences",
                "o.due_at, CAST(o.size_bytes AS TEXT)",
                "due_at",
                &only("WHERE status IN ('OK', 'UNCHANGED')"),
                "",
                &params,
            )
            .await?;
        for (id, r) in good {
            let row = out.entry(id).or_default();
            row.last_ok = r[0].as_deref().and_then(unstamp);
            row.last_ok_size = r[1].as_deref().and_then(|s| s.parse().ok());
        }
        let drills = self
            .latest_per_job(
                "monitor_occurrences",
                "o.last_drill_at, o.last_drill_status",
                "last_drill_at",
                &only("WHERE last_drill_at IS NOT NULL"),
                "ORDER BY o.due_at DESC",
                &params,
            )
            .await?;
        for (id, r) in drills {
            let row = out.entry(id).or_default();
            if row.last_drill_at.is_none() {
                row.last_drill_at = r[0].as_deref().and_then(unstamp);
                row.last_drill_status = r[1].clone();
            }
        }
        // A HASH_MISMATCH stands until an occurrence later than the latest it followed.
        let verified = self
            .latest_per_job(
                "monitor_verifications",
                "o.status, o.message, o.after_due",
                "verified_at",
                &only(""),
                "",
                &params,
            )
            .await?;
        for (id, r) in verified {
            let row = out.entry(id).or_default();
            if r[0].as_deref() == Some(JobStatus::HashMismatch.as_str())
                && r[2].as_deref().and_then(unstamp) == row.due
            {
                row.status = Some(JobStatus::HashMismatch);
                row.message = r[1].clone();
            }
        }
        Ok(out)
    }

    /// Each job's row of `table` with the greatest `by` among the rows `filter` keeps (a
    /// `WHERE` clause, or nothing), in one statement whatever the number of jobs: the job id
    /// and the `columns` (of the row aliased `o`), in `order`. Ties on `by` give several rows.
    /// `params` are those `filter` refers to (`$1`…).
    pub(crate) async fn latest_per_job(
        &self,
        table: &str,
        columns: &str,
        by: &str,
        filter: &str,
        order: &str,
        params: &[Val],
    ) -> Result<Vec<(String, Vec<Option<String>>)>> {
        let rows = self
            .query(
                &format!(
                    "SELECT o.job_id, {columns} FROM {table} o \
                     JOIN (SELECT job_id, max({by}) AS d FROM {table} {filter} GROUP BY job_id) m \
                     ON m.job_id = o.job_id AND m.d = o.{by} {order}"
                ),
                params,
            )
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|mut r| {
                let id = r.remove(0)?;
                Some((id, r))
            })
            .collect())
    }

    /// Each job's latest occurrence whose backup was promoted (OK or UNCHANGED): what the
    /// validated store must still hold, unless it holds a newer one.
    pub async fn last_promoted(&self) -> Result<HashMap<String, Promoted>> {
        let rows = self
            .query(
                "SELECT o.job_id, o.file, CAST(o.size_bytes AS TEXT), o.sha256, o.due_at, o.judged_at \
                 FROM monitor_occurrences o WHERE o.promoted = 1 AND o.status IN ('OK', 'UNCHANGED') \
                 AND o.file IS NOT NULL AND o.due_at = (SELECT max(p.due_at) FROM monitor_occurrences p \
                 WHERE p.job_id = o.job_id AND p.promoted = 1 AND p.status IN ('OK', 'UNCHANGED') \
                 AND p.file IS NOT NULL)",
                &[],
            )
            .await?;
        let mut out = HashMap::new();
        for r in rows {
            let c = |i: usize| r.get(i).cloned().flatten();
            let (Some(job), Some(file), Some(size), Some(sha256), Some(due), Some(judged_at)) = (
                c(0),
                c(1),
                c(2).and_then(|s| s.parse().ok()),
                c(3),
                c(4).as_deref().and_then(unstamp),
                c(5).as_deref().and_then(unstamp),
            ) else {
                continue;
            };
            out.insert(
                job,
                Promoted {
                    file,
                    size_bytes: size,
                    sha256,
                    due,
                    judged_at,
                },
            );
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

    /// The status of the latest verification made while `after_due` was the job's latest
    /// occurrence (None: before any occurrence).
    async fn verification_after(
        &self,
        job: &str,
        after_due: Option<&str>,
    ) -> Result<Option<String>> {
        let rows = match after_due {
            Some(due) => {
                self.query(
                    "SELECT status FROM monitor_verifications WHERE job_id = $1 AND after_due = $2 ORDER BY verified_at DESC LIMIT 1",
                    &[text(job), text(due)],
                )
                .await?
            }
            None => {
                self.query(
                    "SELECT status FROM monitor_verifications WHERE job_id = $1 AND after_due IS NULL ORDER BY verified_at DESC LIMIT 1",
                    &[text(job)],
                )
                .await?
            }
        };
        Ok(first_value(rows))
    }

    /// Records a re-verification of jobs' validated backups, made at `now`, in one
    /// transaction (a thousand jobs, one commit); returns each job's status before and after.
    pub async fn record_verifications(
        &self,
        checks: &[JobCheck],
        now: DateTime<Utc>,
    ) -> Result<Vec<VerificationRecorded>> {
        self.batch("BEGIN").await?;
        let res = async {
            let mut out = Vec::with_capacity(checks.len());
            for check in checks {
                out.push(self.record_verification_in(check, now).await?);
            }
            Ok(out)
        }
        .await;
        match &res {
            Ok(_) => self.batch("COMMIT").await?,
            Err(_) => {
                let _ = self.batch("ROLLBACK").await;
            }
        }
        res
    }

    async fn record_verification_in(
        &self,
        check: &JobCheck,
        now: DateTime<Utc>,
    ) -> Result<VerificationRecorded> {
        let before = self.current(&check.job).await?.status;
        let after_due = self
            .query_value(
                "SELECT max(due_at) FROM monitor_occurrences WHERE job_id = $1",
                &[text(&check.job)],
            )
            .await?;
        let bad = check.bad().count();
        self.exec(
            "INSERT INTO monitor_verifications (job_id, verified_at, status, files_checked, files_bad, message, \
             after_due, previous_status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (job_id, verified_at) DO UPDATE SET status = excluded.status, \
             files_checked = excluded.files_checked, files_bad = excluded.files_bad, \
             message = excluded.message, after_due = excluded.after_due",
            &[
                text(&check.job),
                // To the microsecond: two verifications in one second are two rows.
                text(now.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
                text(check.status.as_str()),
                Val::Int(i64::try_from(check.files.len()).ok()),
                Val::Int(i64::try_from(bad).ok()),
                text(&check.message),
                Val::Text(after_due),
                Val::Text(before.map(|s| s.as_str().to_string())),
            ],
        )
        .await?;
        let after = self.current(&check.job).await?.status;
        Ok(VerificationRecorded {
            previous_status: before,
            status: after,
        })
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
                 CAST(o.transfer_seconds AS TEXT), c.old_status, 'occurrence' \
                 FROM monitor_occurrences o LEFT JOIN monitor_status_changes c \
                 ON c.job_id = o.job_id AND c.due_at = o.due_at \
                 WHERE o.job_id = $1 AND o.due_at >= $2 \
                 UNION ALL \
                 SELECT v.verified_at, v.status, v.verified_at, v.message, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
                 v.previous_status, 'verification' FROM monitor_verifications v \
                 WHERE v.job_id = $3 AND v.verified_at >= $4 \
                 AND (v.status = 'HASH_MISMATCH' OR v.previous_status = 'HASH_MISMATCH') \
                 AND v.status <> COALESCE(v.previous_status, '') \
                 ORDER BY 1 DESC LIMIT $5",
                &[
                    text(job),
                    text(since.map(stamp).unwrap_or_default()),
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
                    kind: if c(12).as_deref() == Some("verification") {
                        "verification"
                    } else {
                        "occurrence"
                    },
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

/// The first column of the first row of an answer (None for none or NULL).
fn first_value(rows: Vec<Vec<Option<String>>>) -> Option<String> {
    rows.into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten())
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
