//! `health`: the checks a monitoring system calls every few minutes.
//!
//! Every target is checked at the same time, each on one connection and within
//! `health.timeout` seconds, so one slow or dead server never delays the report on the
//! others. Each check has a warning and a critical threshold (defaults here, overridden in
//! `config_global.yml` for all targets or per target). The exit code is the worst status,
//! Nagios-style, and `--format nagios` prints the classic plugin line with performance data.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::Utc;
use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::backup;
use crate::catalog::TableRef;
use crate::cli::HealthArgs;
use crate::config::{Target, Threshold};
use crate::engine::health::{self as probe, Failed, Measured, Probe, CHECKS};
use crate::engine::{self};
use crate::error::ConfigError;
use crate::output::{Outcome, Status, TableBlock};
use crate::Ctx;

/// Checks where a smaller value is worse.
const LOWER_IS_WORSE: [&str; 2] = ["cache_hit", "backup_dir_space"];

/// The thresholds used when the configuration says nothing.
pub fn default_threshold(check: &str) -> Option<Threshold> {
    let t = |warning, critical| Some(Threshold { warning, critical });
    match check {
        "connectivity" => t(100.0, 1000.0),      // ms round trip
        "connections" => t(80.0, 95.0),          // % of max_connections
        "long_queries" => t(5.0, 60.0),          // seconds
        "idle_in_transaction" => t(60.0, 300.0), // seconds
        "locks" => t(1.0, 5.0),                  // blocked sessions
        "cache_hit" => t(90.0, 80.0),            // %, lower is worse
        "wraparound" => t(50.0, 75.0),           // % of 2^31
        "replication" => t(30.0, 300.0),         // seconds of lag
        "vacuum" | "analyze" => t(7.0, 30.0),    // days
        "backup_dir_space" => t(20.0, 10.0),     // % free, lower is worse
        "backup_age" => t(26.0, 50.0),           // hours
        _ => None,                               // facts: version, sizes
    }
}

/// Every check name, including the engine-free ones.
fn all_checks() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = CHECKS.to_vec();
    v.push("backup_age");
    v
}

/// One judged check.
#[derive(Debug, Clone)]
pub struct Judged {
    pub name: String,
    pub status: Status,
    pub value: Option<f64>,
    pub unit: String,
    pub message: String,
    pub threshold: Option<Threshold>,
}

/// Compares a value with its thresholds.
pub fn judge(check: &str, value: Option<f64>, threshold: Option<Threshold>) -> Status {
    let (Some(v), Some(t)) = (value, threshold) else {
        return Status::Ok;
    };
    let lower = LOWER_IS_WORSE.contains(&check);
    let past = |limit: f64| if lower { v <= limit } else { v >= limit };
    if past(t.critical) {
        Status::Critical
    } else if past(t.warning) {
        Status::Warning
    } else {
        Status::Ok
    }
}

/// The worst of several statuses for a monitoring system: CRITICAL, then WARNING, then
/// UNKNOWN, then OK.
pub fn worst(statuses: impl IntoIterator<Item = Status>) -> Status {
    let rank = |s: Status| match s {
        Status::Critical => 3,
        Status::Warning => 2,
        Status::Unknown => 1,
        _ => 0,
    };
    statuses
        .into_iter()
        .max_by_key(|s| rank(*s))
        .unwrap_or(Status::Ok)
}

pub async fn run(args: &HealthArgs, ctx: &Ctx) -> Result<Outcome> {
    let known = all_checks();
    for c in &args.checks {
        if !known.contains(&c.as_str()) {
            return Err(ConfigError::new(format!(
                "--check {c}: no such check (checks: {})",
                known.join(", ")
            ))
            .into());
        }
    }
    validate_config(ctx, &known)?;
    let key_tables = ctx
        .config
        .health
        .key_tables
        .iter()
        .map(|t| {
            TableRef::parse(t).map_err(|e| {
                ConfigError::new(format!(
                    "{}: health.key_tables: {e}",
                    ctx.config.path.display()
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let wanted = |name: &str| args.checks.is_empty() || args.checks.iter().any(|c| c == name);
    let budget = Duration::from_secs(ctx.config.health.timeout.max(1));

    let runs = ctx.targets.iter().map(|t| {
        let key_tables = &key_tables;
        async move {
            let start = Instant::now();
            let deadline = tokio::time::Instant::now() + budget;
            // The checks stop at the deadline themselves and keep what they measured; this
            // bound only catches a connection attempt slower than the whole budget.
            let measured = match tokio::time::timeout(
                budget + Duration::from_millis(200),
                measure_target(t, key_tables, &wanted, deadline, budget.as_secs()),
            )
            .await
            {
                Ok(m) => m,
                Err(_) => vec![Err(Failed {
                    name: "connectivity",
                    message: format!(
                        "the checks did not finish within {} s (health.timeout)",
                        budget.as_secs()
                    ),
                    critical: true,
                })],
            };
            (t, measured, start.elapsed())
        }
    });
    let results = join_all(runs).await;

    let mut docs = Vec::new();
    let mut table = TableBlock::new(["target", "check", "status", "value", "message"]);
    let mut all = Vec::new();
    let mut perf = Vec::new();
    let mut problems = Vec::new();
    for (target, measured, took) in results {
        let mut judged: Vec<Judged> = measured
            .into_iter()
            .map(|m| judge_measured(ctx, target, m))
            .collect();
        if wanted("backup_age") {
            judged.push(backup_age(ctx, target));
        }
        if wanted("backup_dir_space") {
            if let Some(j) = backup_dir_space(ctx, target) {
                judged.push(j);
            }
        }
        let status = worst(judged.iter().map(|j| j.status));
        all.push(status);
        for j in &judged {
            table.row([
                target.name.clone(),
                j.name.clone(),
                j.status.as_str().to_uppercase(),
                j.value
                    .map(|v| format_value(v, &j.unit))
                    .unwrap_or_default(),
                j.message.clone(),
            ]);
            if j.status != Status::Ok {
                problems.push(format!("{}: {} {}", target.name, j.name, j.message));
            }
            if let Some(v) = j.value {
                perf.push(perfdata(&target.name, j, v));
            }
        }
        docs.push(json!({
            "target": target.name, "engine": target.engine.as_str(), "status": status.as_str(),
            "seconds": (took.as_secs_f64() * 1000.0).round() / 1000.0,
            "checks": judged.iter().map(check_json).collect::<Vec<Value>>(),
        }));
    }
    let overall = worst(all);
    let summary = if problems.is_empty() {
        format!("{} target(s), all checks OK", ctx.targets.len())
    } else {
        problems.join("; ")
    };
    let mut o = Outcome::new(overall).field("targets", docs);
    o.tables.push(table);
    o.lines.push(format!(
        "HEALTH {} - {summary}",
        overall.as_str().to_uppercase()
    ));
    o.nagios = Some(format!(
        "MAIRIE-DBA {} - {summary} | {}",
        overall.as_str().to_uppercase(),
        perf.join(" ")
    ));
    Ok(o)
}

fn validate_config(ctx: &Ctx, known: &[&str]) -> Result<(), ConfigError> {
    let h = &ctx.config.health;
    let file = ctx.config.path.display();
    for name in h.thresholds.keys() {
        if !known.contains(&name.as_str()) {
            return Err(ConfigError::new(format!(
                "{file}: health.thresholds.{name}: no such check (checks: {})",
                known.join(", ")
            )));
        }
    }
    for (t, checks) in &h.targets {
        if !ctx.config.targets.iter().any(|x| &x.name == t) {
            return Err(ConfigError::new(format!(
                "{file}: health.targets.{t}: no target named `{t}`"
            )));
        }
        for name in checks.keys() {
            if !known.contains(&name.as_str()) {
                return Err(ConfigError::new(format!(
                    "{file}: health.targets.{t}.{name}: no such check"
                )));
            }
        }
    }
    Ok(())
}

/// The threshold the configuration sets for a check: per target, else for every target.
fn configured_threshold(ctx: &Ctx, target: &Target, check: &str) -> Option<Threshold> {
    let h = &ctx.config.health;
    h.targets
        .get(&target.name)
        .and_then(|m| m.get(check))
        .or_else(|| h.thresholds.get(check))
        .copied()
}

/// The threshold of a check for a target: the configured one, else the default.
fn threshold(ctx: &Ctx, target: &Target, check: &str) -> Option<Threshold> {
    configured_threshold(ctx, target, check).or_else(|| default_threshold(check))
}

async fn measure_target(
    target: &Target,
    key_tables: &[TableRef],
    wanted: &dyn Fn(&str) -> bool,
    deadline: tokio::time::Instant,
    budget_secs: u64,
) -> Vec<Measured> {
    let unreachable = |message: String| Failed {
        name: "connectivity",
        message,
        critical: true,
    };
    let conn = match tokio::time::timeout_at(deadline, engine::connect(target)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return vec![Err(unreachable(format!("{e:#}")))],
        Err(_) => {
            return vec![Err(unreachable(format!(
            "the checks did not finish within {budget_secs} s (health.timeout): still connecting"
        )))]
        }
    };
    let mut out = Vec::new();
    if wanted("connectivity") {
        out.push(match probe::latency(&conn).await {
            Ok(ms) => Ok(Probe {
                name: "connectivity",
                value: Some((ms * 100.0).round() / 100.0),
                unit: "ms",
                message: format!("connected, round trip {ms:.1} ms"),
            }),
            Err(e) => Err(unreachable(format!("{e:#}"))),
        });
    }
    out.extend(probe::measure(&conn, key_tables, wanted, deadline, budget_secs).await);
    out
}

fn judge_measured(ctx: &Ctx, target: &Target, m: Measured) -> Judged {
    match m {
        Ok(p) => {
            let th = threshold(ctx, target, p.name);
            Judged {
                status: judge(p.name, p.value, th),
                name: p.name.to_string(),
                value: p.value,
                unit: p.unit.to_string(),
                message: p.message,
                threshold: th,
            }
        }
        // A target that cannot be reached or answers too slowly is CRITICAL; a check that
        // cannot be evaluated (a permission, an old server) is UNKNOWN.
        Err(f) => Judged {
            status: if f.critical {
                Status::Critical
            } else {
                Status::Unknown
            },
            name: f.name.to_string(),
            value: None,
            unit: String::new(),
            message: f.message,
            threshold: None,
        },
    }
}

/// Age of the latest good backup, from the manifests. No backup configured is not a problem.
fn backup_age(ctx: &Ctx, target: &Target) -> Judged {
    let mut j = Judged {
        name: "backup_age".into(),
        status: Status::Ok,
        value: None,
        unit: "h".into(),
        message: "no backup configured for this target".into(),
        threshold: None,
    };
    let Some(cfg) = ctx.config.backup.get(&target.name).filter(|c| c.enabled) else {
        return j;
    };
    let dir = ctx.config.resolve(&cfg.dir);
    // Between the configured thresholds and the defaults: the backup's own cadence.
    let th = configured_threshold(ctx, target, "backup_age")
        .or_else(|| {
            cfg.max_age_hours.map(|h| Threshold {
                warning: h as f64,
                critical: 2.0 * h as f64,
            })
        })
        .or_else(|| default_threshold("backup_age"));
    j.threshold = th;
    match backup::scan(&dir, &target.connection.database) {
        Err(e) => {
            j.status = Status::Unknown;
            j.message = format!("{e:#}");
        }
        Ok(entries) => match entries
            .iter()
            .find(|e| e.is_good_for(&target.name))
            .and_then(|e| e.manifest.as_ref().ok())
        {
            None => {
                j.status = Status::Critical;
                j.message = format!("no backup in {}", dir.display());
            }
            Some(m) => {
                let hours = (Utc::now() - m.finished_at).num_minutes() as f64 / 60.0;
                let hours = (hours * 10.0).round() / 10.0;
                j.value = Some(hours);
                j.status = judge("backup_age", Some(hours), th);
                j.message = format!("latest backup {} finished {hours} h ago", m.file);
            }
        },
    }
    j
}

/// Free space of the filesystem holding the backup directory.
fn backup_dir_space(ctx: &Ctx, target: &Target) -> Option<Judged> {
    let cfg = ctx.config.backup.get(&target.name).filter(|c| c.enabled)?;
    let dir = ctx.config.resolve(&cfg.dir);
    let th = threshold(ctx, target, "backup_dir_space");
    Some(match free_space(&dir) {
        Ok((free, total)) => {
            let p = if total == 0 {
                0.0
            } else {
                (free as f64 * 1000.0 / total as f64).round() / 10.0
            };
            Judged {
                name: "backup_dir_space".into(),
                status: judge("backup_dir_space", Some(p), th),
                value: Some(p),
                unit: "%".into(),
                message: format!(
                    "{}: {} free of {} ({p}%)",
                    dir.display(),
                    indicatif::HumanBytes(free),
                    indicatif::HumanBytes(total)
                ),
                threshold: th,
            }
        }
        Err(e) => Judged {
            name: "backup_dir_space".into(),
            status: Status::Unknown,
            value: None,
            unit: "%".into(),
            message: format!("{}: {e}", dir.display()),
            threshold: th,
        },
    })
}

/// (available, total) bytes of the filesystem holding `path` (or its nearest existing parent).
fn free_space(path: &Path) -> std::io::Result<(u64, u64)> {
    let mut p = path;
    while !p.exists() {
        p = p.parent().unwrap_or(Path::new("/"));
    }
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::other("path contains a NUL byte"))?;
    // SAFETY: statvfs fills the zeroed struct we own; `c` is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    Ok((st.f_bavail as u64 * frsize, st.f_blocks as u64 * frsize))
}

fn format_value(v: f64, unit: &str) -> String {
    match unit {
        "B" => indicatif::HumanBytes(v as u64).to_string(),
        "%" => format!("{v}%"),
        "" => format!("{v}"),
        u => format!("{v} {u}"),
    }
}

fn check_json(j: &Judged) -> Value {
    json!({
        "name": j.name, "status": j.status.as_str(), "value": j.value, "unit": j.unit,
        "message": j.message,
        "warning": j.threshold.map(|t| t.warning), "critical": j.threshold.map(|t| t.critical),
    })
}

/// `'postgres_connections'=83%;80;95` (Nagios plugin guidelines: label, value and unit of
/// measure among s, %, B or none, then warning and critical).
fn perfdata(target: &str, j: &Judged, v: f64) -> String {
    let (uom, suffix) = match j.unit.as_str() {
        "%" => ("%", ""),
        "s" => ("s", ""),
        "ms" => ("", "_ms"),
        "B" => ("B", ""),
        "h" => ("", "_hours"),
        "d" => ("", "_days"),
        _ => ("", ""),
    };
    let label = if j.name == "version" {
        "uptime"
    } else {
        j.name.as_str()
    };
    let mut s = format!("'{target}_{label}{suffix}'={v}{uom}");
    if let Some(t) = j.threshold {
        // Nagios ranges: `80` alerts above 80, `90:` alerts below 90.
        if LOWER_IS_WORSE.contains(&j.name.as_str()) {
            s.push_str(&format!(";{}:;{}:", t.warning, t.critical));
        } else {
            s.push_str(&format!(";{};{}", t.warning, t.critical));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_compare_in_the_right_direction() {
        let t = Some(Threshold {
            warning: 80.0,
            critical: 95.0,
        });
        assert_eq!(judge("connections", Some(50.0), t), Status::Ok);
        assert_eq!(judge("connections", Some(83.0), t), Status::Warning);
        assert_eq!(judge("connections", Some(95.0), t), Status::Critical);
        let free = default_threshold("backup_dir_space");
        assert_eq!(judge("backup_dir_space", Some(50.0), free), Status::Ok);
        assert_eq!(judge("backup_dir_space", Some(15.0), free), Status::Warning);
        assert_eq!(judge("backup_dir_space", Some(5.0), free), Status::Critical);
        assert_eq!(judge("database_size", Some(1e12), None), Status::Ok);
        assert_eq!(judge("connections", None, t), Status::Ok);
    }

    #[test]
    fn the_worst_status_wins_and_critical_beats_unknown() {
        assert_eq!(worst([Status::Ok, Status::Warning]), Status::Warning);
        assert_eq!(
            worst([Status::Unknown, Status::Critical, Status::Ok]),
            Status::Critical
        );
        assert_eq!(worst([Status::Unknown, Status::Ok]), Status::Unknown);
        assert_eq!(worst([]), Status::Ok);
    }

    #[test]
    fn perfdata_follows_the_plugin_guidelines() {
        let j = Judged {
            name: "connections".into(),
            status: Status::Warning,
            value: Some(83.0),
            unit: "%".into(),
            message: String::new(),
            threshold: Some(Threshold {
                warning: 80.0,
                critical: 95.0,
            }),
        };
        assert_eq!(
            perfdata("postgres", &j, 83.0),
            "'postgres_connections'=83%;80;95"
        );
        let d = Judged {
            unit: "d".into(),
            name: "vacuum".into(),
            threshold: None,
            ..j.clone()
        };
        assert_eq!(perfdata("pg", &d, 3.5), "'pg_vacuum_days'=3.5");
        let c = Judged {
            name: "cache_hit".into(),
            threshold: default_threshold("cache_hit"),
            ..j
        };
        assert_eq!(perfdata("pg", &c, 99.0), "'pg_cache_hit'=99%;90:;80:");
    }

    #[test]
    fn every_check_but_the_facts_has_a_default_threshold() {
        for c in all_checks() {
            let fact = matches!(c, "version" | "database_size" | "table_sizes");
            assert_eq!(default_threshold(c).is_none(), fact, "{c}");
        }
    }
}
