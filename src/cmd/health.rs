//! `health`: the checks a monitoring system calls every few minutes.
//!
//! This command reads `--check`, `--warning` and `--critical`, runs the health feature
//! (`health/`: the table of checks, the engines' catalogues, thresholds and judging) and
//! renders its reports, one typed [`HealthReport`]: a table, JSON, or with `--format nagios`
//! the classic plugin line with performance data (spelled by `output::nagios`). The exit
//! code is the worst status, Nagios-style; checks skipped as not applicable do not count.

use anyhow::Result;
use serde_json::{json, Map, Value};

use crate::cli::HealthArgs;
use crate::error::ConfigError;
use crate::health::{self, Check, Judged, Overrides, Selection, Skipped, TargetReport, Unit};
use crate::output::nagios::{NagiosLine, PerfData, Range, Uom};
use crate::output::{Outcome, Report, Status, TableBlock};
use crate::Ctx;

pub async fn run(args: &HealthArgs, ctx: &Ctx) -> Result<Outcome> {
    let selection = Selection {
        checks: selected(&args.checks)?,
        explicit: !args.checks.is_empty(),
        overrides: overrides(&args.warning, &args.critical)?,
    };
    let report = HealthReport {
        targets: health::check_targets(&ctx.config, &ctx.targets, &selection).await?,
    };
    Ok(Outcome::from_report(&report))
}

/// `--warning CHECK=VALUE` and `--critical CHECK=VALUE`, as check_postgres takes them.
fn overrides(warning: &[String], critical: &[String]) -> Result<Overrides, ConfigError> {
    let mut o = Overrides::default();
    for arg in warning {
        let (check, v) = threshold_arg("--warning", arg)?;
        o.set(check, Some(v), None);
    }
    for arg in critical {
        let (check, v) = threshold_arg("--critical", arg)?;
        o.set(check, None, Some(v));
    }
    Ok(o)
}

/// One `CHECK=VALUE`: a known check and a number, optionally followed by the check's unit
/// (`connections=80%`, `long_queries=30s`).
fn threshold_arg(flag: &str, arg: &str) -> Result<(Check, f64), ConfigError> {
    let Some((name, value)) = arg.split_once('=') else {
        return Err(ConfigError::new(format!(
            "{flag} {arg}: expected CHECK=VALUE, e.g. {flag} connections=80"
        )));
    };
    let check = Check::from_name(name.trim()).ok_or_else(|| {
        ConfigError::new(format!(
            "{flag} {arg}: no such check `{}` (checks: {})",
            name.trim(),
            health::check_names()
        ))
    })?;
    let unit = check.def().unit.symbol();
    let value = value.trim();
    let number = if unit.is_empty() {
        value
    } else {
        value.strip_suffix(unit).unwrap_or(value).trim_end()
    };
    match number.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok((check, v)),
        _ => Err(ConfigError::new(format!(
            "{flag} {arg}: `{value}` is not a number{}",
            if unit.is_empty() {
                String::new()
            } else {
                format!(" (of {unit}, the unit of {})", check.name())
            }
        ))),
    }
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

/// What `health` found: each target's checks, judged.
struct HealthReport<'a> {
    targets: Vec<TargetReport<'a>>,
}

/// A target in the JSON document.
#[derive(serde::Serialize)]
struct TargetJson<'a> {
    target: &'a str,
    engine: &'static str,
    status: &'static str,
    seconds: f64,
    checks: Vec<CheckJson<'a>>,
    /// The checks that do not apply to this target, with why.
    skipped: Vec<SkippedJson<'a>>,
}

/// A check that does not apply, in the JSON document.
#[derive(serde::Serialize)]
struct SkippedJson<'a> {
    name: &'static str,
    reason: &'a str,
}

impl<'a> SkippedJson<'a> {
    fn of(s: &'a Skipped) -> Self {
        SkippedJson {
            name: s.check.name(),
            reason: &s.reason,
        }
    }
}

/// A check in the JSON document.
#[derive(serde::Serialize)]
struct CheckJson<'a> {
    name: &'static str,
    status: &'static str,
    value: Option<f64>,
    unit: &'static str,
    message: &'a str,
    warning: Option<f64>,
    critical: Option<f64>,
}

impl<'a> CheckJson<'a> {
    fn of(j: &'a Judged) -> Self {
        CheckJson {
            name: j.check.name(),
            status: j.status.as_str(),
            value: j.value,
            unit: unit_symbol(j.unit),
            message: &j.message,
            warning: j.threshold.map(|t| t.warning),
            critical: j.threshold.map(|t| t.critical),
        }
    }
}

impl HealthReport<'_> {
    /// Every check not OK, or that all are.
    fn summary(&self) -> String {
        let problems: Vec<String> = self
            .targets
            .iter()
            .flat_map(|r| {
                r.checks
                    .iter()
                    .filter(|j| j.status != Status::Ok)
                    .map(|j| format!("{}: {} {}", r.target.name, j.check.name(), j.message))
            })
            .collect();
        if problems.is_empty() {
            format!("{} target(s), all checks OK", self.targets.len())
        } else {
            problems.join("; ")
        }
    }

    fn nagios_line(&self) -> NagiosLine {
        NagiosLine {
            status: self.status(),
            message: self.summary(),
            // Every target has at least the time its checks took (as check_postgres' `time`),
            // so the performance data is never empty.
            perfdata: self
                .targets
                .iter()
                .flat_map(|r| {
                    r.checks
                        .iter()
                        .filter_map(|j| j.value.map(|v| perfdata(&r.target.name, j, v)))
                        .chain(std::iter::once(time_perfdata(r)))
                })
                .collect(),
        }
    }
}

impl Report for HealthReport<'_> {
    fn status(&self) -> Status {
        health::worst(self.targets.iter().map(|r| r.status))
    }

    fn fields(&self) -> Map<String, Value> {
        let targets: Vec<TargetJson> = self
            .targets
            .iter()
            .map(|r| TargetJson {
                target: &r.target.name,
                engine: r.target.engine.as_str(),
                status: r.status.as_str(),
                seconds: (r.took.as_secs_f64() * 1000.0).round() / 1000.0,
                checks: r.checks.iter().map(CheckJson::of).collect(),
                skipped: r.skipped.iter().map(SkippedJson::of).collect(),
            })
            .collect();
        let mut m = Map::new();
        m.insert("targets".into(), json!(targets));
        m
    }

    fn tables(&self) -> Vec<TableBlock> {
        let mut table = TableBlock::new(["target", "check", "status", "value", "message"]);
        for r in &self.targets {
            for j in &r.checks {
                table.row([
                    r.target.name.clone(),
                    j.check.name().to_string(),
                    j.status.as_str().to_uppercase(),
                    j.value.map(|v| format_value(v, j.unit)).unwrap_or_default(),
                    j.message.clone(),
                ]);
            }
            for s in &r.skipped {
                table.row([
                    r.target.name.clone(),
                    s.check.name().to_string(),
                    "SKIPPED".to_string(),
                    String::new(),
                    s.reason.clone(),
                ]);
            }
        }
        vec![table]
    }

    fn lines(&self) -> Vec<String> {
        vec![format!(
            "HEALTH {} - {}",
            self.status().as_str().to_uppercase(),
            self.summary()
        )]
    }

    fn nagios(&self) -> Option<String> {
        Some(self.nagios_line().to_string())
    }
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

/// `'postgres_time'=0.052s`: how long the target's checks took.
fn time_perfdata(r: &TargetReport<'_>) -> PerfData {
    PerfData {
        label: format!("{}_time", r.target.name),
        value: (r.took.as_secs_f64() * 1000.0).round() / 1000.0,
        uom: Uom::Seconds,
        warning: None,
        critical: None,
    }
}

/// `'postgres_connections'=83%;80;95`: the plugin guidelines' units of measure are s, %, B or
/// none, so milliseconds, hours and days are named in the label instead.
fn perfdata(target: &str, j: &Judged, v: f64) -> PerfData {
    let (uom, suffix) = match j.unit {
        Some(Unit::Percent) => (Uom::Percent, ""),
        Some(Unit::Seconds) => (Uom::Seconds, ""),
        Some(Unit::Millis) => (Uom::Number, "_ms"),
        Some(Unit::Bytes) => (Uom::Bytes, ""),
        Some(Unit::Hours) => (Uom::Number, "_hours"),
        Some(Unit::Days) => (Uom::Number, "_days"),
        Some(Unit::Count) | None => (Uom::Number, ""),
    };
    // The version check's value is the server's uptime.
    let label = if j.check == Check::Version {
        "uptime"
    } else {
        j.check.name()
    };
    let range = if j.check.def().lower_is_worse {
        Range::Below
    } else {
        Range::Above
    };
    PerfData {
        label: format!("{target}_{label}{suffix}"),
        value: v,
        uom,
        warning: j.threshold.map(|t| range(t.warning)),
        critical: j.threshold.map(|t| range(t.critical)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Connection, EngineKind, PasswordSource, SslMode, Target, Threshold};
    use std::time::Duration;

    fn outcome(reports: Vec<TargetReport<'_>>) -> Outcome {
        Outcome::from_report(&HealthReport { targets: reports })
    }

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
            perfdata("postgres", &j, 83.0).to_string(),
            "'postgres_connections'=83%;80;95"
        );
        let d = Judged {
            unit: Some(Unit::Days),
            check: Check::Vacuum,
            threshold: None,
            ..j.clone()
        };
        assert_eq!(perfdata("pg", &d, 3.5).to_string(), "'pg_vacuum_days'=3.5");
        let c = Judged {
            check: Check::CacheHit,
            threshold: Check::CacheHit.def().default_threshold,
            ..j.clone()
        };
        assert_eq!(
            perfdata("pg", &c, 99.0).to_string(),
            "'pg_cache_hit'=99%;90:;80:"
        );
        let up = Judged {
            check: Check::Version,
            unit: Some(Unit::Seconds),
            threshold: None,
            ..j
        };
        assert_eq!(perfdata("pg", &up, 3600.0).to_string(), "'pg_uptime'=3600s");
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

    fn target(name: &str, engine: EngineKind) -> Target {
        Target {
            name: name.into(),
            engine,
            enabled: true,
            config_file: "config_test.yml".into(),
            connection: Connection {
                host: "127.0.0.1".into(),
                port: 5432,
                database: "mairie".into(),
                user: "mairie".into(),
                password: PasswordSource::Default,
                sslmode: SslMode::Prefer,
                connect_timeout: Duration::from_secs(5),
                statement_timeout: Duration::from_secs(30),
                lock_timeout: Duration::from_secs(2),
                encrypt: false,
                trust_server_certificate: false,
                tls: false,
            },
        }
    }

    fn judged(check: Check, status: Status, value: Option<f64>, message: &str) -> Judged {
        Judged {
            check,
            status,
            value,
            unit: value.map(|_| check.def().unit),
            message: message.into(),
            threshold: check.def().default_threshold,
        }
    }

    #[test]
    fn one_report_gives_the_json_the_table_the_summary_and_the_plugin_line() {
        let (pg, my) = (
            target("pg", EngineKind::Postgres),
            target("my", EngineKind::Mysql),
        );
        let reports = vec![
            TargetReport {
                target: &pg,
                status: Status::Warning,
                checks: vec![
                    judged(
                        Check::Connectivity,
                        Status::Ok,
                        Some(1.5),
                        "round trip 1.5 ms",
                    ),
                    judged(Check::Connections, Status::Warning, Some(83.0), "83 of 100"),
                    judged(Check::CacheHit, Status::Ok, Some(99.3), "99.3% hits"),
                    judged(Check::DatabaseSize, Status::Ok, Some(4096.0), "4 KiB"),
                    judged(Check::Replication, Status::Ok, None, "standalone"),
                ],
                skipped: Vec::new(),
                took: Duration::from_millis(12),
            },
            TargetReport {
                target: &my,
                status: Status::Critical,
                checks: vec![judged(
                    Check::Connectivity,
                    Status::Critical,
                    None,
                    "refused",
                )],
                skipped: vec![Skipped {
                    check: Check::Wraparound,
                    reason: "InnoDB has no transaction ID wraparound to watch".into(),
                }],
                took: Duration::from_micros(1500),
            },
        ];
        let o = outcome(reports);
        assert_eq!(o.status, Status::Critical);
        assert_eq!(
            serde_json::to_string(&o.json()).unwrap(),
            concat!(
                r#"{"status":"critical","targets":["#,
                r#"{"target":"pg","engine":"postgres","status":"warning","seconds":0.012,"checks":["#,
                r#"{"name":"connectivity","status":"ok","value":1.5,"unit":"ms","message":"round trip 1.5 ms","warning":100.0,"critical":1000.0},"#,
                r#"{"name":"connections","status":"warning","value":83.0,"unit":"%","message":"83 of 100","warning":80.0,"critical":95.0},"#,
                r#"{"name":"cache_hit","status":"ok","value":99.3,"unit":"%","message":"99.3% hits","warning":90.0,"critical":80.0},"#,
                r#"{"name":"database_size","status":"ok","value":4096.0,"unit":"B","message":"4 KiB","warning":null,"critical":null},"#,
                r#"{"name":"replication","status":"ok","value":null,"unit":"","message":"standalone","warning":30.0,"critical":300.0}],"skipped":[]},"#,
                r#"{"target":"my","engine":"mysql","status":"critical","seconds":0.002,"checks":["#,
                r#"{"name":"connectivity","status":"critical","value":null,"unit":"","message":"refused","warning":100.0,"critical":1000.0}],"#,
                r#""skipped":[{"name":"wraparound","reason":"InnoDB has no transaction ID wraparound to watch"}]}]}"#,
            )
        );
        assert_eq!(o.tables.len(), 1);
        let rows: Vec<String> = o.tables[0].rows.iter().map(|r| r.join("|")).collect();
        assert_eq!(
            rows,
            [
                "pg|connectivity|OK|1.5 ms|round trip 1.5 ms",
                "pg|connections|WARNING|83%|83 of 100",
                "pg|cache_hit|OK|99.3%|99.3% hits",
                "pg|database_size|OK|4.00 KiB|4 KiB",
                "pg|replication|OK||standalone",
                "my|connectivity|CRITICAL||refused",
                "my|wraparound|SKIPPED||InnoDB has no transaction ID wraparound to watch",
            ]
        );
        assert_eq!(
            o.lines,
            ["HEALTH CRITICAL - pg: connections 83 of 100; my: connectivity refused"]
        );
        assert_eq!(
            o.nagios.as_deref(),
            Some(concat!(
                "MAIRIE-DBA CRITICAL - pg: connections 83 of 100; my: connectivity refused | ",
                "'pg_connectivity_ms'=1.5;100;1000 'pg_connections'=83%;80;95 ",
                "'pg_cache_hit'=99.3%;90:;80: 'pg_database_size'=4096B 'pg_time'=0.012s ",
                "'my_time'=0.002s"
            ))
        );

        let all_ok = vec![TargetReport {
            target: &my,
            status: Status::Ok,
            checks: vec![judged(
                Check::Replication,
                Status::Ok,
                None,
                "not a replica",
            )],
            skipped: Vec::new(),
            took: Duration::ZERO,
        }];
        let o = outcome(all_ok);
        assert_eq!(o.lines, ["HEALTH OK - 1 target(s), all checks OK"]);
        // No performance data: no ` | ` separator either.
        assert_eq!(
            o.nagios.as_deref(),
            Some("MAIRIE-DBA OK - 1 target(s), all checks OK | 'my_time'=0s")
        );
    }

    #[test]
    fn skipped_checks_do_not_count_and_the_perfdata_is_never_empty() {
        let my = target("l'annexe", EngineKind::Mysql);
        let o = outcome(vec![TargetReport {
            target: &my,
            status: Status::Ok,
            checks: Vec::new(),
            skipped: vec![Skipped {
                check: Check::Vacuum,
                reason: "no vacuum".into(),
            }],
            took: Duration::from_millis(31),
        }]);
        assert_eq!(o.status, Status::Ok);
        assert_eq!(
            o.nagios.as_deref(),
            Some("MAIRIE-DBA OK - 1 target(s), all checks OK | 'l''annexe_time'=0.031s")
        );
    }

    #[test]
    fn thresholds_on_the_command_line_are_check_equals_number() {
        let o = overrides(
            &["connections=70".into(), "long_queries=30s".into()],
            &["connections=90%".into(), "locks=3".into()],
        )
        .unwrap();
        assert_eq!(
            o.get(Check::Connections),
            Some(health::Override {
                warning: Some(70.0),
                critical: Some(90.0)
            })
        );
        assert_eq!(
            o.get(Check::LongQueries),
            Some(health::Override {
                warning: Some(30.0),
                critical: None
            })
        );
        assert_eq!(o.get(Check::Locks).unwrap().critical, Some(3.0));
        assert_eq!(o.get(Check::Version), None);
        // The side not given keeps the configuration's (or the default) value.
        let t = o.apply(
            Check::LongQueries,
            Check::LongQueries.def().default_threshold,
        );
        assert_eq!(
            t,
            Some(Threshold {
                warning: 30.0,
                critical: 60.0
            })
        );
        let errors = [
            (vec!["connections"], "--warning connections: expected CHECK=VALUE"),
            (vec!["conections=80"], "--warning conections=80: no such check `conections` (checks: connectivity,"),
            (vec!["connections=lots"], "--warning connections=lots: `lots` is not a number (of %, the unit of connections)"),
            (vec!["locks=2s"], "--warning locks=2s: `2s` is not a number"),
            (vec!["connections=NaN"], "--warning connections=NaN: `NaN` is not a number"),
        ];
        for (args, expected) in errors {
            let args: Vec<String> = args.into_iter().map(String::from).collect();
            let e = overrides(&args, &[]).unwrap_err().to_string();
            assert!(e.starts_with(expected), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
        let e = overrides(&[], &["x".into()]).unwrap_err().to_string();
        assert!(e.starts_with("--critical x: expected CHECK=VALUE"), "{e}");
    }
}
