//! `audit`: the security audit of each target, with Nagios exit codes.
//!
//! Targets are audited concurrently, one connection each, each bounded by [`TARGET_TIMEOUT`]
//! so that a dead server is CRITICAL for its target without holding up the others. The
//! checks themselves live in `crate::audit`; this module selects them (`--check`), applies
//! `audit.ignore`, and gathers the findings in one typed [`AuditReport`]: its status, tables,
//! JSON and JUnit XML (`audit::junit`) all read the same findings.
//!
//! Status of a target: CRITICAL when a failed check's severity is at least `--fail-on`
//! (default high) or when the target could not be audited at all; WARNING for any other
//! failed check, or a check that could not be evaluated; OK otherwise. Ignored findings
//! (accepted risks) count for nothing. The run's status is the worst of its targets'.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{json, Map, Value};

use crate::audit::{
    self, junit, severity_str, CheckDef, Finding, FindingStatus, Severity, Summary, TargetReport,
    Verdict,
};
use crate::cli::AuditArgs;
use crate::config::Target;
use crate::engine;
use crate::engine::Driver;
use crate::output::{Outcome, Report, Status, TableBlock};
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
            let error = e.to_string();
            ctx.log.error(&error);
            return Ok(Outcome::from_report(&SelectionError { error }));
        }
    };
    for id in audit::unknown_ids(&ctx.config.audit.ignore) {
        ctx.log.warn(format!(
            "audit.ignore: `{id}` is not a check id; it ignores nothing"
        ));
    }
    let targets = futures_util::future::join_all(
        ctx.targets
            .iter()
            .map(|t| audit_target(t, selected.as_ref(), args, ctx)),
    )
    .await;
    Ok(Outcome::from_report(&AuditReport {
        fail_on: args.fail_on,
        targets,
    }))
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
    let mut conn = engine::connect_probe(target).await?;
    let version = conn.server_version().await.ok();
    // Within the target's budget, and cancelled on the server past it.
    let verdicts = conn
        .probe(
            TARGET_TIMEOUT.saturating_sub(Duration::from_secs(2)),
            audit::Evaluate {
                checks,
                statement_timeout: target.connection.statement_timeout,
            },
        )
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

/// `--check` named no audit check: UNKNOWN (exit 3), and why.
struct SelectionError {
    error: String,
}

impl Report for SelectionError {
    fn status(&self) -> Status {
        Status::Unknown
    }

    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("error".into(), json!(self.error));
        m
    }
}

/// What `audit` found: each target's findings, judged against `--fail-on`.
struct AuditReport {
    fail_on: Severity,
    targets: Vec<TargetReport>,
}

/// A target in the JSON document.
#[derive(serde::Serialize)]
struct TargetJson<'a> {
    target: &'a str,
    engine: &'static str,
    status: &'static str,
    server_version: Option<&'a str>,
    seconds: f64,
    findings: Vec<Value>,
    summary: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

impl<'a> TargetJson<'a> {
    fn of(r: &'a TargetReport) -> Self {
        TargetJson {
            target: &r.target,
            engine: r.engine.as_str(),
            status: r.status.as_str(),
            server_version: r.server_version.as_deref(),
            seconds: (r.seconds * 1000.0).round() / 1000.0,
            findings: r.findings.iter().map(Finding::json).collect(),
            summary: Summary::of(&r.findings).json(),
            error: r.error.as_deref(),
        }
    }
}

impl AuditReport {
    /// One target's line: why it could not be audited, or its counts.
    fn line(&self, r: &TargetReport) -> String {
        let what = match &r.error {
            Some(e) => format!("could not be audited: {e}"),
            None if r.findings.is_empty() => "no selected check applies to this engine".into(),
            None => {
                let s = Summary::of(&r.findings);
                let at_or_above = r
                    .findings
                    .iter()
                    .filter(|f| f.status == FindingStatus::Fail && f.check.severity >= self.fail_on)
                    .count();
                format!(
                    "{} fail ({at_or_above} at or above {}), {} error, {} pass, {} ignored",
                    s.fail,
                    severity_str(self.fail_on),
                    s.error,
                    s.pass,
                    s.ignored
                )
            }
        };
        format!(
            "AUDIT {} - {}: {what}",
            r.status.as_str().to_uppercase(),
            r.target
        )
    }
}

impl Report for AuditReport {
    fn status(&self) -> Status {
        self.targets
            .iter()
            .map(|r| r.status)
            .max()
            .unwrap_or(Status::Ok)
    }

    fn fields(&self) -> Map<String, Value> {
        let targets: Vec<TargetJson> = self.targets.iter().map(TargetJson::of).collect();
        let mut m = Map::new();
        m.insert("fail_on".into(), json!(severity_str(self.fail_on)));
        m.insert("targets".into(), json!(targets));
        m
    }

    /// A table per audited target.
    fn tables(&self) -> Vec<TableBlock> {
        self.targets
            .iter()
            .filter(|r| r.error.is_none() && !r.findings.is_empty())
            .map(|r| {
                let version = r
                    .server_version
                    .as_deref()
                    .map(|v| format!(" {v}"))
                    .unwrap_or_default();
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
                table
            })
            .collect()
    }

    fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.targets.iter().map(|r| self.line(r)).collect();
        if self.targets.iter().any(|r| !r.findings.is_empty()) {
            lines.push(
                "remediation, CIS references and the statements that fix each finding: mairie-dba audit --format json"
                    .into(),
            );
        }
        lines
    }

    fn junit(&self) -> Option<String> {
        Some(junit::render(&self.targets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::postgres::CHECKS;
    use crate::config::EngineKind;

    fn outcome_of(targets: Vec<TargetReport>, fail_on: Severity) -> Outcome {
        Outcome::from_report(&AuditReport { fail_on, targets })
    }

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
        let down = TargetReport {
            target: "my".into(),
            engine: EngineKind::Mysql,
            status: Status::Critical,
            server_version: None,
            error: Some("connection refused".into()),
            findings: vec![],
            seconds: 0.0,
        };
        let o = outcome_of(vec![report(findings, Severity::High), down], Severity::High);
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

    static HIGH: CheckDef = CheckDef {
        id: "PG-T-01",
        title: "Trust lines",
        severity: Severity::High,
        rationale: "why",
        cis: "CIS 1.1",
        remediation: "edit pg_hba.conf",
        probe: crate::audit::Probe::Custom,
    };
    static LOW: CheckDef = CheckDef {
        id: "PG-T-02",
        title: "Logging",
        severity: Severity::Low,
        rationale: "because",
        cis: "",
        remediation: "ALTER SYSTEM",
        probe: crate::audit::Probe::Custom,
    };

    #[test]
    fn one_report_gives_the_json_the_tables_the_lines_and_the_junit() {
        let findings = vec![
            Finding::new(&LOW, Verdict::Pass("logged".into()), false),
            Finding::new(
                &HIGH,
                Verdict::Fail {
                    detail: "host all all 0.0.0.0/0 trust".into(),
                    fix: vec!["-- remove the line".into()],
                },
                false,
            ),
            Finding::new(&LOW, Verdict::Error("permission denied".into()), false),
            Finding::new(&HIGH, Verdict::fail("x".repeat(250)), true),
        ];
        let pg = TargetReport {
            target: "pg".into(),
            engine: EngineKind::Postgres,
            status: audit::target_status(&findings, Severity::Critical),
            server_version: Some("15.20".into()),
            error: None,
            findings,
            seconds: 0.12345,
        };
        let down = TargetReport {
            target: "my".into(),
            engine: EngineKind::Mysql,
            status: Status::Critical,
            server_version: None,
            error: Some("connection refused".into()),
            findings: vec![],
            seconds: 1.0,
        };
        let none = TargetReport {
            target: "ms".into(),
            engine: EngineKind::Mssql,
            status: Status::Ok,
            server_version: None,
            error: None,
            findings: vec![],
            seconds: 0.0,
        };
        let reports = vec![pg, down, none];
        let xml = junit::render(&reports);
        let o = outcome_of(reports, Severity::Critical);
        assert_eq!(o.status, Status::Critical);
        let expected = concat!(
            r#"{"status":"critical","fail_on":"critical","targets":["#,
            r#"{"target":"pg","engine":"postgres","status":"warning","server_version":"15.20","seconds":0.123,"findings":["#,
            r#"{"id":"PG-T-02","title":"Logging","severity":"low","status":"pass","detail":"logged","remediation":"ALTER SYSTEM","cis":"","rationale":"because"},"#,
            r#"{"id":"PG-T-01","title":"Trust lines","severity":"high","status":"fail","detail":"host all all 0.0.0.0/0 trust","remediation":"edit pg_hba.conf","cis":"CIS 1.1","rationale":"why","fix":["-- remove the line"]},"#,
            r#"{"id":"PG-T-02","title":"Logging","severity":"low","status":"error","detail":"permission denied","remediation":"ALTER SYSTEM","cis":"","rationale":"because"},"#,
            r#"{"id":"PG-T-01","title":"Trust lines","severity":"high","status":"ignored","detail":"accepted risk (audit.ignore), fail: XS","remediation":"edit pg_hba.conf","cis":"CIS 1.1","rationale":"why"}],"#,
            r#""summary":{"pass":1,"fail":1,"error":1,"ignored":1}},"#,
            r#"{"target":"my","engine":"mysql","status":"critical","server_version":null,"seconds":1.0,"findings":[],"summary":{"pass":0,"fail":0,"error":0,"ignored":0},"error":"connection refused"},"#,
            r#"{"target":"ms","engine":"mssql","status":"ok","server_version":null,"seconds":0.0,"findings":[],"summary":{"pass":0,"fail":0,"error":0,"ignored":0}}]}"#,
        )
        .replace("XS", &"x".repeat(250));
        assert_eq!(serde_json::to_string(&o.json()).unwrap(), expected);
        assert_eq!(o.tables.len(), 1);
        assert_eq!(o.tables[0].title.as_deref(), Some("pg (postgres 15.20)"));
        let rows: Vec<String> = o.tables[0].rows.iter().map(|r| r.join("|")).collect();
        assert_eq!(
            rows,
            [
                "PG-T-01|high|fail|Trust lines|host all all 0.0.0.0/0 trust".to_string(),
                "PG-T-02|low|error|Logging|permission denied".to_string(),
                format!(
                    "PG-T-01|high|ignored|Trust lines|{}…",
                    format!("accepted risk (audit.ignore), fail: {}", "x".repeat(250))
                        .chars()
                        .take(TABLE_DETAIL_CHARS)
                        .collect::<String>()
                ),
                "PG-T-02|low|pass|Logging|logged".to_string(),
            ]
        );
        assert_eq!(
            o.lines,
            [
                "AUDIT WARNING - pg: 1 fail (0 at or above critical), 1 error, 1 pass, 1 ignored",
                "AUDIT CRITICAL - my: could not be audited: connection refused",
                "AUDIT OK - ms: no selected check applies to this engine",
                "remediation, CIS references and the statements that fix each finding: mairie-dba audit --format json",
            ]
        );
        assert_eq!(o.junit.as_deref(), Some(xml.as_str()));
    }
}
