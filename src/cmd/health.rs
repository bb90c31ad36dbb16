//! `health`: the checks a monitoring system calls every few minutes.
//!
//! This command reads `--check`, runs the health feature (`health/`: the table of checks,
//! the engines' catalogues, thresholds and judging) and renders its reports: a table, JSON,
//! or with `--format nagios` the classic plugin line with performance data. The exit code is
//! the worst status, Nagios-style.

use anyhow::Result;
use serde_json::{json, Value};

use crate::cli::HealthArgs;
use crate::error::ConfigError;
use crate::health::{self, Check, Judged, TargetReport, Unit};
use crate::output::{Outcome, Status, TableBlock};
use crate::Ctx;

pub async fn run(args: &HealthArgs, ctx: &Ctx) -> Result<Outcome> {
    let wanted = selected(&args.checks)?;
    let reports = health::check_targets(&ctx.config, &ctx.targets, &wanted).await?;
    Ok(render(&reports))
}

/// The checks `--check` names, or every check when it names none.
fn selected(names: &[String]) -> Result<Vec<Check>, ConfigError> {
    if names.is_empty() {
        return Ok(Check::all().collect());
    }
    names
        .iter()
        .map(|c| {
            Check::from_name(c).ok_or_else(|| {
                ConfigError::new(format!(
                    "--check {c}: no such check (checks: {})",
                    health::check_names()
                ))
            })
        })
        .collect()
}

fn render(reports: &[TargetReport<'_>]) -> Outcome {
    let mut docs = Vec::new();
    let mut table = TableBlock::new(["target", "check", "status", "value", "message"]);
    let mut perf = Vec::new();
    let mut problems = Vec::new();
    for r in reports {
        let target = r.target;
        for j in &r.checks {
            table.row([
                target.name.clone(),
                j.check.name().to_string(),
                j.status.as_str().to_uppercase(),
                j.value.map(|v| format_value(v, j.unit)).unwrap_or_default(),
                j.message.clone(),
            ]);
            if j.status != Status::Ok {
                problems.push(format!("{}: {} {}", target.name, j.check.name(), j.message));
            }
            if let Some(v) = j.value {
                perf.push(perfdata(&target.name, j, v));
            }
        }
        docs.push(json!({
            "target": target.name, "engine": target.engine.as_str(), "status": r.status.as_str(),
            "seconds": (r.took.as_secs_f64() * 1000.0).round() / 1000.0,
            "checks": r.checks.iter().map(check_json).collect::<Vec<Value>>(),
        }));
    }
    let overall = health::worst(reports.iter().map(|r| r.status));
    let summary = if problems.is_empty() {
        format!("{} target(s), all checks OK", reports.len())
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
    o
}

fn unit_symbol(unit: Option<Unit>) -> &'static str {
    unit.map_or("", Unit::symbol)
}

fn format_value(v: f64, unit: Option<Unit>) -> String {
    match unit_symbol(unit) {
        "B" => indicatif::HumanBytes(v as u64).to_string(),
        "%" => format!("{v}%"),
        "" => format!("{v}"),
        u => format!("{v} {u}"),
    }
}

fn check_json(j: &Judged) -> Value {
    json!({
        "name": j.check.name(), "status": j.status.as_str(), "value": j.value,
        "unit": unit_symbol(j.unit), "message": j.message,
        "warning": j.threshold.map(|t| t.warning), "critical": j.threshold.map(|t| t.critical),
    })
}

/// `'postgres_connections'=83%;80;95` (Nagios plugin guidelines: label, value and unit of
/// measure among s, %, B or none, then warning and critical).
fn perfdata(target: &str, j: &Judged, v: f64) -> String {
    let (uom, suffix) = match j.unit {
        Some(Unit::Percent) => ("%", ""),
        Some(Unit::Seconds) => ("s", ""),
        Some(Unit::Millis) => ("", "_ms"),
        Some(Unit::Bytes) => ("B", ""),
        Some(Unit::Hours) => ("", "_hours"),
        Some(Unit::Days) => ("", "_days"),
        Some(Unit::Count) | None => ("", ""),
    };
    // The version check's value is the server's uptime.
    let label = if j.check == Check::Version {
        "uptime"
    } else {
        j.check.name()
    };
    let mut s = format!("'{target}_{label}{suffix}'={v}{uom}");
    if let Some(t) = j.threshold {
        // Nagios ranges: `80` alerts above 80, `90:` alerts below 90.
        if j.check.def().lower_is_worse {
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
    use crate::config::Threshold;

    #[test]
    fn perfdata_follows_the_plugin_guidelines() {
        let j = Judged {
            check: Check::Connections,
            status: Status::Warning,
            value: Some(83.0),
            unit: Some(Unit::Percent),
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
            unit: Some(Unit::Days),
            check: Check::Vacuum,
            threshold: None,
            ..j.clone()
        };
        assert_eq!(perfdata("pg", &d, 3.5), "'pg_vacuum_days'=3.5");
        let c = Judged {
            check: Check::CacheHit,
            threshold: Check::CacheHit.def().default_threshold,
            ..j.clone()
        };
        assert_eq!(perfdata("pg", &c, 99.0), "'pg_cache_hit'=99%;90:;80:");
        let up = Judged {
            check: Check::Version,
            unit: Some(Unit::Seconds),
            threshold: None,
            ..j
        };
        assert_eq!(perfdata("pg", &up, 3600.0), "'pg_uptime'=3600s");
    }

    #[test]
    fn check_selects_by_name_and_refuses_a_typo() {
        assert_eq!(selected(&[]).unwrap().len(), health::CHECKS.len());
        let two = selected(&["locks".into(), "connections".into()]).unwrap();
        assert_eq!(two, [Check::Locks, Check::Connections]);
        let e = selected(&["nope".into()]).unwrap_err().to_string();
        assert!(
            e.starts_with("--check nope: no such check (checks: connectivity,"),
            "{e}"
        );
    }
}
