//! `audit`: the security audit of each target, with Nagios exit codes.
//!
//! Targets are audited concurrently, one connection each, each bounded by [`TARGET_TIMEOUT`]
//! so that a dead server is CRITICAL for its target without holding up the others. The
//! checks themselves live in `crate::audit`; this module selects them (`--check`), applies
//! `audit.ignore`, and turns the findings into a status, a table, JSON and JUnit XML.
//!
//! Status of a target: CRITICAL when a failed check's severity is at least `--fail-on`
//! (default high) or when the target could not be audited at all; WARNING for any other
//! failed check, or a check that could not be evaluated; OK otherwise. Ignored findings
//! (accepted risks) count for nothing. The run's status is the worst of its targets'.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{json, Value};

use crate::audit::{
    self, junit, severity_str, CheckDef, Finding, FindingStatus, Summary, TargetReport, Verdict,
};
use crate::cli::AuditArgs;
use crate::config::Target;
use crate::engine;
use crate::engine::Driver;
use crate::output::{Outcome, Status, TableBlock};
use crate::Ctx;

/// How long one target's whole audit (connection included) may take.
const TARGET_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of a detail the table shows; JSON and JUnit carry it whole.
const TABLE_DETAIL_CHARS: usize = 240;

pub async fn run(args: &AuditArgs, ctx: &Ctx) -> Result<Outcome> {
    let selected = match audit::select(&args.checks) {
        Ok(s) => s,
        Err(e) => {
            // A usage error of a check: UNKNOWN (exit 3), whatever the command kind.
            let msg = e.to_string();
            ctx.log.error(&msg);
            return Ok(Outcome::new(Status::Unknown).field("error", msg));
        }
    };
    for id in audit::unknown_ids(&ctx.config.audit.ignore) {
        ctx.log.warn(format!(
            "audit.ignore: `{id}` is not a check id; it ignores nothing"
        ));
    }
    let reports = futures_util::future::join_all(
        ctx.targets
            .iter()
            .map(|t| audit_target(t, selected.as_ref(), args, ctx)),
    )
    .await;
    Ok(outcome(&reports, args))
}

/// The checks of `target`'s engine that the selection keeps, in catalogue order.
fn checks_for(
    target: &Target,
    selected: Option<&BTreeSet<&'static str>>,
) -> Vec<&'static CheckDef> {
    audit::catalogue(target.engine)
        .iter()
        .filter(|c| selected.is_none_or(|s| s.contains(c.id)))
        .collect()
}

async fn audit_target(
    target: &Target,
    selected: Option<&BTreeSet<&'static str>>,
    args: &AuditArgs,
    ctx: &Ctx,
) -> TargetReport {
    let started = Instant::now();
    let checks = checks_for(target, selected);
    let mut report = TargetReport {
        target: target.name.clone(),
        engine: target.engine,
        status: Status::Ok,
        server_version: None,
        error: None,
        findings: Vec::new(),
        seconds: 0.0,
    };
    if checks.is_empty() {
        // Nothing selected for this engine: no need to connect.
        return report;
    }
    let outcome = tokio::time::timeout(TARGET_TIMEOUT, evaluate(target, &checks)).await;
    report.seconds = started.elapsed().as_secs_f64();
    match outcome {
        Err(_) => {
            report.status = Status::Critical;
            report.error = Some(format!(
                "target `{}`: the audit did not finish within {} s",
                target.name,
                TARGET_TIMEOUT.as_secs()
            ));
        }
        Ok(Err(e)) => {
            report.status = Status::Critical;
            report.error = Some(format!("{e:#}"));
        }
        Ok(Ok((version, verdicts))) => {
            report.server_version = version;
            report.findings = checks
                .iter()
                .zip(verdicts)
                .map(|(c, v)| Finding::new(c, v, audit::is_ignored(&ctx.config.audit.ignore, c.id)))
                .collect();
            report.status = audit::target_status(&report.findings, args.fail_on);
        }
    }
    if let Some(e) = &report.error {
        ctx.log.error(e);
    } else {
        ctx.log.debug(format!(
            "{}: {} checks in {:.2} s",
            target.name,
            report.findings.len(),
            report.seconds
        ));
    }
    report
}

/// Connects (one connection) and evaluates the checks: the server's version and one verdict
/// per check.
async fn evaluate(
    target: &Target,
    checks: &[&'static CheckDef],
) -> Result<(Option<String>, Vec<Verdict>)> {
    let mut conn = engine::connect(target).await?;
    let version = conn.server_version().await.ok();
    let verdicts = conn
        .visit(audit::Evaluate {
            checks,
            statement_timeout: target.connection.statement_timeout,
        })
        .await
        .map_err(|e| e.context(format!("auditing target `{}`", target.name)))?;
    Ok((version, verdicts))
}

/// Failing first (most severe first), then errors, accepted risks, passes; catalogue order
/// within each.
fn table_order(findings: &[Finding]) -> Vec<&Finding> {
    let mut v: Vec<&Finding> = findings.iter().collect();
    v.sort_by_key(|f| (f.status, std::cmp::Reverse(f.check.severity)));
    v
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

fn outcome(reports: &[TargetReport], args: &AuditArgs) -> Outcome {
    let worst = reports.iter().map(|r| r.status).max().unwrap_or(Status::Ok);
    let mut targets: Vec<Value> = Vec::new();
    let mut tables = Vec::new();
    let mut lines = Vec::new();
    for r in reports {
        let s = Summary::of(&r.findings);
        let mut t = json!({
            "target": r.target,
            "engine": r.engine.as_str(),
            "status": r.status.as_str(),
            "server_version": r.server_version,
            "seconds": (r.seconds * 1000.0).round() / 1000.0,
            "findings": r.findings.iter().map(Finding::json).collect::<Vec<_>>(),
            "summary": s.json(),
        });
        if let Some(e) = &r.error {
            t["error"] = json!(e);
        }
        targets.push(t);

        let at_or_above = r
            .findings
            .iter()
            .filter(|f| f.status == FindingStatus::Fail && f.check.severity >= args.fail_on)
            .count();
        let what = match &r.error {
            Some(e) => format!("could not be audited: {e}"),
            None if r.findings.is_empty() => "no selected check applies to this engine".into(),
            None => format!(
                "{} fail ({at_or_above} at or above {}), {} error, {} pass, {} ignored",
                s.fail,
                severity_str(args.fail_on),
                s.error,
                s.pass,
                s.ignored
            ),
        };
        let version = r
            .server_version
            .as_deref()
            .map(|v| format!(" {v}"))
            .unwrap_or_default();
        lines.push(format!(
            "AUDIT {} - {}: {what}",
            r.status.as_str().to_uppercase(),
            r.target
        ));
        if r.error.is_none() && !r.findings.is_empty() {
            let mut table = TableBlock::new(["id", "severity", "status", "title", "detail"])
                .titled(format!("{} ({}{version})", r.target, r.engine));
            for f in table_order(&r.findings) {
                table.row([
                    f.check.id.to_string(),
                    severity_str(f.check.severity).to_string(),
                    f.status.as_str().to_string(),
                    f.check.title.to_string(),
                    shorten(&f.detail, TABLE_DETAIL_CHARS),
                ]);
            }
            tables.push(table);
        }
    }
    if reports.iter().any(|r| !r.findings.is_empty()) {
        lines.push(
            "remediation, CIS references and the statements that fix each finding: mairie-dba audit --format json"
                .into(),
        );
    }
    let mut o = Outcome::new(worst)
        .field("fail_on", severity_str(args.fail_on))
        .field("targets", targets);
    o.tables = tables;
    o.lines = lines;
    o.junit = Some(junit::render(reports));
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::postgres::CHECKS;
    use crate::audit::Severity;
    use crate::config::EngineKind;

    fn report(findings: Vec<Finding>, fail_on: Severity) -> TargetReport {
        TargetReport {
            target: "pg".into(),
            engine: EngineKind::Postgres,
            status: audit::target_status(&findings, fail_on),
            server_version: Some("15.20".into()),
            error: None,
            findings,
            seconds: 0.1,
        }
    }

    #[test]
    fn failing_rows_come_first_and_json_has_the_contract_fields() {
        let low = CHECKS.iter().find(|c| c.severity == Severity::Low).unwrap();
        let high = CHECKS
            .iter()
            .find(|c| c.severity == Severity::High)
            .unwrap();
        let findings = vec![
            Finding::new(high, Verdict::Pass("fine".into()), false),
            Finding::new(low, Verdict::fail("bad"), false),
            Finding::new(high, Verdict::fail("worse"), false),
            Finding::new(low, Verdict::Error("denied".into()), false),
        ];
        let order: Vec<(&str, FindingStatus)> = table_order(&findings)
            .iter()
            .map(|f| (f.check.id, f.status))
            .collect();
        assert_eq!(
            order,
            [
                (high.id, FindingStatus::Fail),
                (low.id, FindingStatus::Fail),
                (low.id, FindingStatus::Error),
                (high.id, FindingStatus::Pass)
            ]
        );
        let args = AuditArgs {
            fail_on: Severity::High,
            checks: vec![],
        };
        let down = TargetReport {
            target: "my".into(),
            engine: EngineKind::Mysql,
            status: Status::Critical,
            server_version: None,
            error: Some("connection refused".into()),
            findings: vec![],
            seconds: 0.0,
        };
        let o = outcome(&[report(findings, Severity::High), down], &args);
        assert_eq!(o.status, Status::Critical);
        let j = o.json();
        let t = &j["targets"][0];
        assert_eq!(
            t["summary"],
            json!({"pass": 1, "fail": 2, "error": 1, "ignored": 0})
        );
        for key in [
            "id",
            "title",
            "severity",
            "status",
            "detail",
            "remediation",
            "cis",
            "rationale",
        ] {
            assert!(t["findings"][0].get(key).is_some(), "{key}");
        }
        assert_eq!(j["targets"][1]["error"], "connection refused");
        assert!(o
            .junit
            .as_deref()
            .unwrap()
            .contains("<testsuite name=\"mairie-dba.audit.my\""));
        assert!(
            o.lines[1].starts_with("AUDIT CRITICAL - my: could not be audited"),
            "{:?}",
            o.lines
        );
    }

    #[test]
    fn table_details_are_shortened() {
        assert_eq!(shorten("abc", 5), "abc");
        assert_eq!(shorten("abcdef", 3), "abc…");
    }
}
