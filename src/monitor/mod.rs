//! The central backup monitor: which sites should have sent which backups and when, what
//! the agents deposited, what was validated and promoted, and the history of it all.
//!
//! Engine-free: the monitor never talks to the city's databases. It reads the deposit zone
//! (untrusted: [`report`]), judges each expected occurrence ([`schedule`], [`scan`]),
//! validates every file itself (size and SHA-256 recomputed, [`hash`]), promotes what is good
//! atomically into a directory ([`store`]) or a bucket ([`remote`]), both behind
//! [`validated`], and records everything in a SQLite or PostgreSQL history
//! ([`history`]). Later, [`verify`] checks that what was promoted is still the bytes measured
//! then.
//!
//! Status names follow the source documents, with one change: the documents call a backup
//! identical to the previous one HASH_MISMATCH; here that is `UNCHANGED` (a warning), and
//! `HASH_MISMATCH` keeps this product's meaning, bytes that no longer match their recorded
//! hash (bit rot found when re-verifying the validated store).

pub mod agent;
pub mod config;
pub mod hash;
pub mod history;
pub mod notify;
pub mod remote;
pub mod report;
pub mod scan;
pub mod schedule;
pub mod store;
pub mod validated;
pub mod verify;
pub mod view;
pub mod web;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::output::Status;
use config::{HistorySetting, Job, MonitorSection, NotifySection};
pub use validated::ValidatedStore;

/// The `monitor:` section with its paths resolved.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    pub deposit_dir: PathBuf,
    pub validated: ValidatedStore,
    /// Where the scan lock is: the validated directory, or the state directory when the
    /// store is a bucket (one monitor per prefix: the lock is local).
    pub lock_dir: PathBuf,
    pub history: HistorySetting,
    pub report_max_age_days: u32,
    pub collection_window_minutes: u32,
    pub keep_validated: u32,
    pub scan_interval_minutes: u32,
    pub listen: Option<String>,
    /// Alerts (None: none sent); `ca_file`s resolved.
    pub notify: Option<NotifySection>,
    pub jobs: Vec<Job>,
}

impl MonitorConfig {
    /// Relative paths are read against the configuration's base directory; the history
    /// defaults to `sqlite:<state_dir>/monitor.db`.
    pub fn resolve(m: MonitorSection, base_dir: &Path, state_dir: &Path) -> MonitorConfig {
        let history = match m.history {
            Some(HistorySetting::Sqlite(p)) => HistorySetting::Sqlite(base_dir.join(p)),
            Some(pg) => pg,
            None => HistorySetting::Sqlite(state_dir.join("monitor.db")),
        };
        let validated = match remote::Bucket::parse(&m.validated_dir, m.s3.as_ref()) {
            Some(place) => ValidatedStore::Bucket(place),
            None => ValidatedStore::Dir(base_dir.join(&m.validated_dir)),
        };
        let lock_dir = match &validated {
            ValidatedStore::Dir(d) => d.clone(),
            ValidatedStore::Bucket(_) => state_dir.to_path_buf(),
        };
        MonitorConfig {
            deposit_dir: base_dir.join(m.deposit_dir),
            validated,
            lock_dir,
            history,
            report_max_age_days: m.report_max_age_days,
            collection_window_minutes: m.collection_window_minutes,
            keep_validated: m.keep_validated.0,
            scan_interval_minutes: m.scan_interval_minutes.0,
            listen: m.listen,
            notify: m.notify.map(|mut n| {
                if let Some(e) = &mut n.email {
                    e.ca_file = e.ca_file.as_ref().map(|p| base_dir.join(p));
                }
                if let Some(w) = &mut n.webhook {
                    w.ca_file = w.ca_file.as_ref().map(|p| base_dir.join(p));
                }
                n
            }),
            jobs: m.jobs,
        }
    }

    pub fn job(&self, id: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.id == id)
    }
}

/// A job's status, upper case in every output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Ok,
    Failed,
    Missing,
    TransferIntegrityFailed,
    Unchanged,
    HashMismatch,
    Unknown,
    Pending,
}

impl JobStatus {
    pub const ALL: [JobStatus; 8] = [
        JobStatus::Ok,
        JobStatus::Failed,
        JobStatus::Missing,
        JobStatus::TransferIntegrityFailed,
        JobStatus::Unchanged,
        JobStatus::HashMismatch,
        JobStatus::Unknown,
        JobStatus::Pending,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Ok => "OK",
            JobStatus::Failed => "FAILED",
            JobStatus::Missing => "MISSING",
            JobStatus::TransferIntegrityFailed => "TRANSFER_INTEGRITY_FAILED",
            JobStatus::Unchanged => "UNCHANGED",
            JobStatus::HashMismatch => "HASH_MISMATCH",
            JobStatus::Unknown => "UNKNOWN",
            JobStatus::Pending => "PENDING",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The Nagios status it stands for.
    pub fn check_status(self) -> Status {
        match self {
            JobStatus::Ok | JobStatus::Pending => Status::Ok,
            JobStatus::Unchanged => Status::Warning,
            JobStatus::Failed
            | JobStatus::Missing
            | JobStatus::TransferIntegrityFailed
            | JobStatus::HashMismatch => Status::Critical,
            JobStatus::Unknown => Status::Unknown,
        }
    }

    /// A backup that is there and good (UNCHANGED is good, only suspicious).
    pub fn is_good(self) -> bool {
        matches!(self, JobStatus::Ok | JobStatus::Unchanged)
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 3339 in UTC to the second, the one way times are written in the history (it sorts
/// as text on both SQLite and PostgreSQL).
pub fn stamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The inverse of [`stamp`].
pub fn unstamp(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_map_to_nagios() {
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(JobStatus::Unchanged.check_status(), Status::Warning);
        assert_eq!(JobStatus::Missing.check_status(), Status::Critical);
        assert_eq!(JobStatus::Unknown.check_status(), Status::Unknown);
    }
}
