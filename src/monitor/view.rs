//! What every reader of the monitor sees: `monitor status`, the web page, the JSON API and
//! `/metrics` all show one [`Snapshot`], built from the configuration and the history in a
//! handful of statements (not three per job), so the page and the API cannot disagree.

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::history::{History, ScanRun, UnexpectedSeen};
use super::{schedule, stamp, JobStatus, MonitorConfig};
use crate::output::Status;

/// A job's last restore drill, as its agent reported it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrillView {
    pub at: String,
    pub status: Option<String>,
}

/// One expected job and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobView {
    pub id: String,
    pub company: String,
    pub city: String,
    pub site: String,
    pub database: String,
    pub engine: String,
    /// The schedule in words (`daily 02:00 UTC`).
    pub schedule: String,
    pub status: JobStatus,
    /// The due time of the occurrence the status belongs to.
    pub due: Option<String>,
    pub message: String,
    /// The due time of the last good occurrence (OK or UNCHANGED).
    pub last_ok: Option<String>,
    /// Seconds from `last_ok` to the snapshot's time.
    pub last_ok_age_seconds: Option<i64>,
    pub next_due: Option<String>,
    /// The size of the last good backup.
    pub size_bytes: Option<u64>,
    pub last_drill: Option<DrillView>,
}

impl JobView {
    /// Whether the job matches a free-text filter (case-insensitive, over its id, place,
    /// database, engine, status and message).
    pub fn matches_text(&self, q: &str) -> bool {
        let q = q.trim().to_lowercase();
        if q.is_empty() {
            return true;
        }
        [
            self.id.as_str(),
            &self.company,
            &self.city,
            &self.site,
            &self.database,
            &self.engine,
            self.status.as_str(),
            &self.message,
        ]
        .iter()
        .any(|f| f.to_lowercase().contains(&q))
    }
}

/// The monitor at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub generated_at: String,
    #[serde(skip)]
    pub at: DateTime<Utc>,
    pub jobs: Vec<JobView>,
    /// Jobs per status, every status present (zeros included).
    pub counts: BTreeMap<&'static str, usize>,
    pub unexpected: Vec<UnexpectedSeen>,
    pub last_scan: Option<ScanRun>,
    /// Failed scans recorded in the history.
    pub scan_errors: u64,
    /// What readers render from it, once per snapshot.
    #[serde(skip)]
    pub rendered: Rendered,
}

/// The answers rendered from a snapshot that serve many requests alike: the unfiltered job
/// list as JSON and the unfiltered dashboard.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    pub jobs_json: std::sync::OnceLock<bytes::Bytes>,
    pub dashboard: std::sync::OnceLock<Result<String, String>>,
}

impl Snapshot {
    /// Builds the snapshot at `now` (next due times and ages are computed against it).
    pub async fn build(cfg: &MonitorConfig, history: &History, now: DateTime<Utc>) -> Result<Self> {
        let currents = history.currents().await?;
        let mut jobs = Vec::with_capacity(cfg.jobs.len());
        for job in &cfg.jobs {
            let c = currents.get(&job.id);
            let status = c.and_then(|c| c.status).unwrap_or(JobStatus::Pending);
            let message = c
                .and_then(|c| c.message.clone())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| match c.and_then(|c| c.status) {
                    None => "not judged yet".into(),
                    Some(_) => String::new(),
                });
            let last_ok = c.and_then(|c| c.last_ok);
            jobs.push(JobView {
                id: job.id.clone(),
                company: job.company.clone(),
                city: job.city.clone(),
                site: job.site.clone(),
                database: job.database.clone(),
                engine: job.engine.clone(),
                schedule: job.schedule_text(),
                status,
                due: c.and_then(|c| c.due).map(stamp),
                message,
                last_ok: last_ok.map(stamp),
                last_ok_age_seconds: last_ok.map(|t| (now - t).num_seconds()),
                next_due: schedule::next_due(job, now).map(stamp),
                size_bytes: c.and_then(|c| c.last_ok_size),
                last_drill: c.and_then(|c| {
                    c.last_drill_at.map(|at| DrillView {
                        at: stamp(at),
                        status: c.last_drill_status.clone(),
                    })
                }),
            });
        }
        let mut counts: BTreeMap<&'static str, usize> =
            JobStatus::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        for j in &jobs {
            *counts.entry(j.status.as_str()).or_default() += 1;
        }
        Ok(Snapshot {
            generated_at: stamp(now),
            at: now,
            jobs,
            counts,
            unexpected: history.unexpected().await?,
            last_scan: history.last_scan().await?,
            scan_errors: history.scan_errors().await?,
            rendered: Rendered::default(),
        })
    }

    /// The worst status of the jobs (OK when there are none).
    pub fn worst(&self) -> JobStatus {
        self.jobs
            .iter()
            .map(|j| j.status)
            .max_by_key(|s| severity(*s))
            .unwrap_or(JobStatus::Ok)
    }

    /// The Nagios status of the whole monitor.
    pub fn check_status(&self) -> Status {
        self.jobs
            .iter()
            .map(|j| j.status.check_status())
            .max()
            .unwrap_or(Status::Ok)
    }

    pub fn job(&self, id: &str) -> Option<&JobView> {
        self.jobs.iter().find(|j| j.id == id)
    }

    /// The jobs with `status` (when given) that match the text `q`.
    pub fn filtered<'a>(
        &'a self,
        status: Option<JobStatus>,
        q: &'a str,
    ) -> impl Iterator<Item = &'a JobView> + 'a {
        self.jobs
            .iter()
            .filter(move |j| status.is_none_or(|s| j.status == s) && j.matches_text(q))
    }

    /// The jobs grouped by company, then city, then site, in the configuration's order
    /// within a site.
    pub fn grouped<'a>(jobs: impl Iterator<Item = &'a JobView>) -> Vec<SiteGroup<'a>> {
        let mut groups: BTreeMap<(String, String, String), Vec<&JobView>> = BTreeMap::new();
        for j in jobs {
            groups
                .entry((j.company.clone(), j.city.clone(), j.site.clone()))
                .or_default()
                .push(j);
        }
        groups.into_iter().collect()
    }
}

/// A site's jobs: `((company, city, site), jobs)`.
pub type SiteGroup<'a> = ((String, String, String), Vec<&'a JobView>);

/// Orders statuses from good to worst: OK, PENDING, UNCHANGED, UNKNOWN, then the critical
/// ones (a missing backup above a failed one: nothing at all arrived).
pub fn severity(s: JobStatus) -> u8 {
    match s {
        JobStatus::Ok => 0,
        JobStatus::Pending => 1,
        JobStatus::Unchanged => 2,
        JobStatus::Unknown => 3,
        JobStatus::Failed => 4,
        JobStatus::TransferIntegrityFailed => 5,
        JobStatus::HashMismatch => 6,
        JobStatus::Missing => 7,
    }
}

/// A job's current state as the history's batched statements give it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CurrentRow {
    pub status: Option<JobStatus>,
    pub due: Option<DateTime<Utc>>,
    pub message: Option<String>,
    pub last_ok: Option<DateTime<Utc>>,
    pub last_ok_size: Option<u64>,
    pub last_drill_at: Option<DateTime<Utc>>,
    pub last_drill_status: Option<String>,
}

pub type Currents = HashMap<String, CurrentRow>;
