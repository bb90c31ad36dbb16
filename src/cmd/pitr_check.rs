//! `pitr check`: is WAL archiving working? (Nagios exit codes)
//!
//! Each selected target with a `pitr:` section is checked at the same time, on one probe
//! session and within `health.timeout` seconds: the facts are gathered and judged by
//! `pitr::check` (the same code as the `wal_archiving` and `wal_ready_files` health checks),
//! with those checks' thresholds (`health.targets.<target>.<check>`, `health.thresholds`,
//! else the defaults). A target that cannot be reached is CRITICAL; one whose facts could
//! not be read in time is UNKNOWN.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use futures_util::future::join_all;
use serde_json::{json, Map, Value};

use crate::config::{Target, Threshold};
use crate::engine;
use crate::health::{self, Overrides};
use crate::output::nagios::{NagiosLine, PerfData, Range, Uom};
use crate::output::{Outcome, Report, Status, TableBlock};
use crate::pitr::check::{self as pc, ArchiveLook, Facet, Facts, Limits, Line};
use crate::pitr::PitrPlace;
use crate::Ctx;

pub async fn run(places: Vec<PitrPlace>, ctx: &Ctx) -> Result<Outcome> {
    let budget = Duration::from_secs(ctx.config.health.timeout.max(1));
    let runs = places.into_iter().filter_map(|p| {
        let target = ctx.targets.iter().find(|t| t.name == p.target)?;
        Some(check_one(p, target, ctx, budget))
    });
    let targets = join_all(runs).await;
    Ok(Outcome::from_report(&PitrCheckReport { targets }))
}

/// Connects, gathers and judges one target, within `budget`.
async fn check_one(p: PitrPlace, target: &Target, ctx: &Ctx, budget: Duration) -> Checked {
    let start = Instant::now();
    let limits = health::archiving_limits(&ctx.config.health, target, &Overrides::default());
    let deadline = tokio::time::Instant::now() + budget;
    let secs = budget.as_secs();
    let result = match tokio::time::timeout_at(deadline, engine::connect_probe(target)).await {
        Err(_) => Err(Row::failed(
            "connection",
            Status::Critical,
            format!("no connection within {secs} s (health.timeout)"),
        )),
        Ok(Err(e)) => Err(Row::failed(
            "connection",
            Status::Critical,
            crate::cmd::failure(ctx, &p.target, &e),
        )),
        Ok(Ok(mut conn)) => {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let gather = pc::Gather {
                archive: &p.archive,
            };
            match conn.probe(left, gather).await {
                Ok(facts) => Ok(facts),
                Err(e) => Err(Row::failed(
                    "archiver",
                    Status::Unknown,
                    match e.downcast_ref::<engine::ProbeTimedOut>() {
                        Some(_) => format!(
                            "no answer within {secs} s (health.timeout); the query was cancelled"
                        ),
                        None => crate::cmd::failure(ctx, &p.target, &e),
                    },
                )),
            }
        }
    };
    let rows = match &result {
        Ok(facts) => pc::judge(facts, &limits).iter().map(Row::of).collect(),
        Err(row) => vec![row.clone()],
    };
    Checked {
        target: p.target,
        archive_dir: p.archive_dir,
        facts: result.ok(),
        rows,
        limits,
        took: start.elapsed(),
    }
}

/// One line of the report: a judged facet, or why the target has none.
#[derive(Debug, Clone)]
struct Row {
    name: &'static str,
    /// The label of its performance data (None: not graphed).
    perf: Option<&'static str>,
    status: Status,
    value: Option<f64>,
    unit: &'static str,
    message: String,
    threshold: Option<Threshold>,
}

impl Row {
    fn of(l: &Line) -> Row {
        Row {
            name: l.facet.name(),
            perf: match l.facet {
                Facet::Archiving => None,
                Facet::Failures => Some("archive_failed"),
                Facet::LastArchived => Some("last_archived"),
                Facet::ReadyFiles => Some("ready_files"),
                Facet::Archive => Some("archive_missing"),
            },
            status: l.status,
            value: l.value,
            unit: l.facet.unit(),
            message: l.message.clone(),
            threshold: l.threshold,
        }
    }

    fn failed(name: &'static str, status: Status, message: String) -> Row {
        Row {
            name,
            perf: None,
            status,
            value: None,
            unit: "",
            message,
            threshold: None,
        }
    }

    /// `'pg_last_archived'=61s;900;3600`; a missing segment is critical from the first.
    fn perfdata(&self, target: &str) -> Option<PerfData> {
        let (label, value) = (self.perf?, self.value?);
        let (warning, critical) = match (self.threshold, label) {
            (Some(t), _) => (
                Some(Range::Above(t.warning)),
                Some(Range::Above(t.critical)),
            ),
            (None, "archive_missing") => (None, Some(Range::Above(0.0))),
            _ => (None, None),
        };
        Some(PerfData {
            label: format!("{target}_{label}"),
            value,
            uom: if self.unit == "s" {
                Uom::Seconds
            } else {
                Uom::Number
            },
            warning,
            critical,
        })
    }
}

/// One target's check.
struct Checked {
    target: String,
    archive_dir: PathBuf,
    facts: Option<Facts>,
    rows: Vec<Row>,
    limits: Limits,
    took: Duration,
}

impl Checked {
    fn status(&self) -> Status {
        health::worst(self.rows.iter().map(|r| r.status))
    }

    /// The target in the JSON document: its checks, then the facts they judged.
    fn doc(&self) -> Value {
        let checks: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                json!({"name": r.name, "status": r.status.as_str(), "value": r.value,
                       "unit": r.unit, "message": r.message,
                       "warning": r.threshold.map(|t| t.warning),
                       "critical": r.threshold.map(|t| t.critical)})
            })
            .collect();
        let mut doc = json!({
            "target": self.target,
            "status": self.status().as_str(),
            "archive_dir": self.archive_dir.display().to_string(),
            "seconds": (self.took.as_secs_f64() * 1000.0).round() / 1000.0,
            "checks": checks,
        });
        if let (Some(f), Value::Object(o)) = (&self.facts, &mut doc) {
            o.insert("archiver".into(), facts_doc(f));
        }
        doc
    }
}

/// The facts as scripts want them: the server's archiver, the backlog, the archive's look.
fn facts_doc(f: &Facts) -> Value {
    let s = &f.server;
    let (ready, oldest_ready) = match &f.ready {
        engine::postgres::pitr::ReadyFiles::Counted { count, oldest, .. } => {
            (Some(*count), oldest.clone())
        }
        _ => (None, None),
    };
    let (checked, missing) = match &f.archive {
        ArchiveLook::Looked {
            checked, missing, ..
        } => (Some(checked.clone()), Some(missing.clone())),
        ArchiveLook::NothingArchived => (Some(Vec::new()), Some(Vec::new())),
        _ => (None, None),
    };
    json!({
        "archive_mode": s.archive_mode,
        "archive_timeout": s.archive_timeout,
        "in_recovery": s.in_recovery,
        "current_wal": s.current_wal,
        "archived_count": s.archived_count,
        "last_archived_wal": s.last_archived_wal,
        "last_archived_time": s.last_archived_time,
        "last_archived_age_seconds": s.last_archived_age.map(f64::round),
        "failed_count": s.failed_count,
        "last_failed_wal": s.last_failed_wal,
        "last_failed_time": s.last_failed_time,
        "stats_reset": s.stats_reset,
        "ready_files": ready,
        "oldest_ready": oldest_ready,
        "checked_in_archive": checked,
        "missing_in_archive": missing,
    })
}

/// What `pitr check` found, per target.
struct PitrCheckReport {
    targets: Vec<Checked>,
}

impl PitrCheckReport {
    /// Every line not OK (`<target>: <check> <message>`), or that all are.
    fn summary(&self) -> String {
        let problems: Vec<String> = self
            .targets
            .iter()
            .flat_map(|t| {
                t.rows
                    .iter()
                    .filter(|r| r.status != Status::Ok)
                    .map(|r| format!("{}: {} {}", t.target, r.name, r.message))
            })
            .collect();
        if problems.is_empty() {
            format!("{} target(s), WAL archiving OK", self.targets.len())
        } else {
            problems.join("; ")
        }
    }
}

impl Report for PitrCheckReport {
    fn status(&self) -> Status {
        health::worst(self.targets.iter().map(Checked::status))
    }

    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(
            "targets".into(),
            Value::Array(self.targets.iter().map(Checked::doc).collect()),
        );
        m
    }

    fn tables(&self) -> Vec<TableBlock> {
        let mut table = TableBlock::new(["target", "check", "status", "value", "message"]);
        for t in &self.targets {
            for r in &t.rows {
                table.row([
                    t.target.clone(),
                    r.name.to_string(),
                    r.status.as_str().to_uppercase(),
                    match (r.value, r.unit) {
                        (Some(v), "") => format!("{v}"),
                        (Some(v), u) => format!("{v} {u}"),
                        (None, _) => String::new(),
                    },
                    r.message.clone(),
                ]);
            }
        }
        vec![table]
    }

    fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "PITR CHECK {} - {}",
            self.status().as_str().to_uppercase(),
            self.summary()
        )];
        // The thresholds, once, when they are not the defaults for every target.
        for t in &self.targets {
            if t.limits != Limits::default() {
                out.push(format!(
                    "{}: thresholds: last_archived {}/{} s, ready_files {}/{}",
                    t.target,
                    t.limits.age.warning,
                    t.limits.age.critical,
                    t.limits.ready.warning,
                    t.limits.ready.critical
                ));
            }
        }
        out
    }

    /// One plugin line; the time each target took is always in the performance data.
    fn nagios(&self) -> Option<String> {
        let perfdata = self
            .targets
            .iter()
            .flat_map(|t| {
                t.rows
                    .iter()
                    .filter_map(|r| r.perfdata(&t.target))
                    .chain(std::iter::once(PerfData {
                        label: format!("{}_time", t.target),
                        value: (t.took.as_secs_f64() * 1000.0).round() / 1000.0,
                        uom: Uom::Seconds,
                        warning: None,
                        critical: None,
                    }))
            })
            .collect();
        Some(
            NagiosLine {
                status: self.status(),
                message: format!("pitr: {}", self.summary()),
                perfdata,
            }
            .to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::postgres::pitr::{ArchiverState, ReadyFiles};

    fn facts() -> Facts {
        Facts {
            archive_dir: PathBuf::from("/srv/wal"),
            server: ArchiverState {
                user: "postgres".into(),
                wal_segment_size: 16 << 20,
                current_wal: Some("000000010000000000000004".into()),
                archive_mode: Some("on".into()),
                archive_command: Some("mairie-dba wal push %p".into()),
                archive_timeout: Some(0),
                archived_count: 3,
                last_archived_wal: Some("000000010000000000000003".into()),
                last_archived_age: Some(12.4),
                last_archived_time: Some("2026-11-21T02:00:00Z".into()),
                ..ArchiverState::default()
            },
            ready: ReadyFiles::Counted {
                count: 0,
                oldest: None,
                oldest_age: None,
            },
            archive: ArchiveLook::Looked {
                last: "000000010000000000000003".into(),
                checked: vec!["000000010000000000000003".into()],
                missing: vec![],
                twice: vec![],
            },
        }
    }

    fn checked(facts: Facts) -> Checked {
        let limits = Limits::default();
        Checked {
            target: "pg".into(),
            archive_dir: facts.archive_dir.clone(),
            rows: pc::judge(&facts, &limits).iter().map(Row::of).collect(),
            facts: Some(facts),
            limits,
            took: Duration::from_millis(21),
        }
    }

    #[test]
    fn a_healthy_target_gives_ok_and_perfdata() {
        let o = Outcome::from_report(&PitrCheckReport {
            targets: vec![checked(facts())],
        });
        assert_eq!(o.status, Status::Ok);
        assert_eq!(o.lines, ["PITR CHECK OK - 1 target(s), WAL archiving OK"]);
        assert_eq!(
            o.nagios.as_deref(),
            Some(
                "MAIRIE-DBA OK - pitr: 1 target(s), WAL archiving OK | 'pg_archive_failed'=0 \
                 'pg_last_archived'=12s;900;3600 'pg_ready_files'=0;10;100 \
                 'pg_archive_missing'=0;;0 'pg_time'=0.021s"
            )
        );
        let doc = o.json();
        let t = &doc["targets"][0];
        assert_eq!(t["status"], "ok");
        let names: Vec<&str> = t["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "archiving",
                "failures",
                "last_archived",
                "ready_files",
                "archive"
            ]
        );
        assert_eq!(t["checks"][2]["warning"], 900.0);
        assert_eq!(
            t["archiver"]["last_archived_wal"],
            "000000010000000000000003"
        );
        assert_eq!(t["archiver"]["ready_files"], 0);
        assert_eq!(t["archiver"]["missing_in_archive"], json!([]));
        assert_eq!(o.tables[0].rows[2][3], "12 s");
    }

    #[test]
    fn problems_are_summed_up_and_the_worst_wins() {
        let mut f = facts();
        f.archive = ArchiveLook::Looked {
            last: "000000010000000000000003".into(),
            checked: vec!["000000010000000000000003".into()],
            missing: vec!["000000010000000000000003".into()],
            twice: vec![],
        };
        f.ready = ReadyFiles::NotPermitted("GRANT pg_monitor TO \"plain\"".into());
        let down = Checked {
            target: "other".into(),
            archive_dir: PathBuf::from("/x"),
            facts: None,
            rows: vec![Row::failed(
                "connection",
                Status::Critical,
                "connection refused".into(),
            )],
            limits: Limits::default(),
            took: Duration::ZERO,
        };
        let o = Outcome::from_report(&PitrCheckReport {
            targets: vec![checked(f), down],
        });
        assert_eq!(o.status, Status::Critical);
        let line = o.nagios.unwrap();
        assert!(
            line.starts_with(
                "MAIRIE-DBA CRITICAL - pitr: pg: ready_files cannot count the .ready files: \
                 GRANT pg_monitor TO \"plain\"; pg: archive 000000010000000000000003 missing \
                 from the archive /srv/wal, though pg_stat_archiver says \
                 000000010000000000000003 was archived; other: connection connection refused | "
            ),
            "{line}"
        );
        assert!(line.contains("'pg_archive_missing'=1;;0"), "{line}");
        assert!(line.ends_with("'other_time'=0s"), "{line}");
        assert!(
            !line.contains("pg_ready_files"),
            "no value, no perfdata: {line}"
        );
    }
}
