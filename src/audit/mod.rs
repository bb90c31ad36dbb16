//! The security audit: a catalogue of checks with stable ids, their evaluation on each
//! engine, and the verdicts a DBA, a monitoring system or a CI job reads.
//!
//! A check is a [`CheckDef`]: id (`PG-AUTH-01`, `MY-PRIV-03`, `MS-SURF-01`: engine, group,
//! number), title, severity, rationale, CIS benchmark section where one exists, and the
//! remediation. Ids are stable: monitoring rules and `audit.ignore` lists refer to them, so a
//! check is never renumbered; a retired one leaves a gap.
//!
//! Each engine module (`postgres`, `mysql`, `mssql`, `redis`) holds its catalogue next to the SQL that
//! evaluates it, so an id and what it looks at are read together. Evaluation only reads: the
//! session is made read-only where the engine allows it, and no check writes anything.
//!
//! A check ends in [`Verdict::Pass`], [`Verdict::Fail`] (naming the offending objects) or
//! [`Verdict::Error`] (it could not be evaluated, and says why: usually a privilege or view
//! the audit's login lacks). Every check can fail on some server state: a check that cannot
//! fail would only ever say "pass" and is a defect.

pub mod junit;
pub mod mssql;
pub mod mysql;
pub mod postgres;
pub mod redis;

use std::collections::BTreeSet;

use chrono::NaiveDate;
use serde_json::{json, Value};

use crate::config::EngineKind;
use crate::error::ConfigError;
use crate::output::Status;

/// How much a failed check matters (`--fail-on` takes the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

/// How many offending objects a detail names before "… and N more".
const MAX_NAMED: usize = 25;

/// One check of the catalogue.
#[derive(Debug)]
pub struct CheckDef {
    pub id: &'static str,
    pub title: &'static str,
    pub severity: Severity,
    /// Why it matters, in a sentence or two.
    pub rationale: &'static str,
    /// The CIS benchmark section, e.g. `CIS PostgreSQL 15 3.1.20`; empty when none applies.
    pub cis: &'static str,
    /// What to do: the statement or setting that fixes it.
    pub remediation: &'static str,
    pub probe: Probe,
}

/// How a check is evaluated. Most checks are a query listing offenders or one setting; the
/// rest are code in the engine module, matched by id.
#[derive(Debug, Clone, Copy)]
pub enum Probe {
    /// SQL whose rows are the offending objects: column 1 names one, column 2 (optional, may
    /// be NULL) is the statement that fixes it. No rows: pass.
    Offenders {
        sql: &'static str,
        /// The detail when nothing is found, e.g. "no superuser other than postgres".
        none: &'static str,
        /// What the offenders are, e.g. "superusers other than postgres".
        what: &'static str,
    },
    /// One server setting, judged by `ok` (None: the setting does not exist on this server).
    Setting {
        name: &'static str,
        /// What a good value is, for the detail: "on", "scram-sha-256", "at least ddl".
        expect: &'static str,
        ok: fn(Option<&str>) -> bool,
    },
    /// Evaluated by code in the engine module.
    Custom,
}

/// The result of evaluating one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass(String),
    /// What is wrong (naming the objects) and, when known, the statements that fix it.
    Fail {
        detail: String,
        fix: Vec<String>,
    },
    /// The check could not be evaluated: why.
    Error(String),
}

impl Verdict {
    pub fn fail(detail: impl Into<String>) -> Verdict {
        Verdict::Fail {
            detail: detail.into(),
            fix: Vec::new(),
        }
    }

    /// The verdict of an offender list: pass with `none`, or fail naming them.
    pub fn from_offenders(
        offenders: Vec<(String, Option<String>)>,
        none: &str,
        what: &str,
    ) -> Verdict {
        if offenders.is_empty() {
            return Verdict::Pass(none.to_string());
        }
        let labels: Vec<String> = offenders.iter().map(|(l, _)| l.clone()).collect();
        let mut fix: Vec<String> = Vec::new();
        for (_, f) in offenders {
            if let Some(f) = f.filter(|f| !f.is_empty()) {
                if !fix.contains(&f) {
                    fix.push(f);
                }
            }
        }
        Verdict::Fail {
            detail: format!("{what} ({}): {}", labels.len(), name_list(&labels)),
            fix,
        }
    }

    /// The verdict of a setting probe.
    pub fn from_setting(
        name: &str,
        value: Option<&str>,
        expect: &str,
        ok: fn(Option<&str>) -> bool,
    ) -> Verdict {
        let shown = match value {
            Some("") => format!("{name} = ''"),
            Some(v) => format!("{name} = {v}"),
            None => format!("{name} is not set on this server"),
        };
        if ok(value) {
            Verdict::Pass(shown)
        } else {
            Verdict::fail(format!("{shown} (expected {expect})"))
        }
    }
}

/// `a, b, c` — or the first [`MAX_NAMED`] and "… and N more".
pub fn name_list(items: &[String]) -> String {
    if items.len() <= MAX_NAMED {
        return items.join(", ");
    }
    format!(
        "{}, … and {} more",
        items[..MAX_NAMED].join(", "),
        items.len() - MAX_NAMED
    )
}

/// The status of a finding as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FindingStatus {
    Fail,
    Error,
    Ignored,
    Pass,
}

impl FindingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingStatus::Pass => "pass",
            FindingStatus::Fail => "fail",
            FindingStatus::Error => "error",
            FindingStatus::Ignored => "ignored",
        }
    }
}

/// A check's outcome on one target.
#[derive(Debug, Clone)]
pub struct Finding {
    pub check: &'static CheckDef,
    pub status: FindingStatus,
    pub detail: String,
    pub fix: Vec<String>,
}

impl Finding {
    /// `ignored`: the id is in `audit.ignore`, so a failure (or an error) is an accepted risk.
    pub fn new(check: &'static CheckDef, verdict: Verdict, ignored: bool) -> Finding {
        let (status, detail, fix) = match verdict {
            Verdict::Pass(d) => (FindingStatus::Pass, d, Vec::new()),
            Verdict::Fail { detail, fix } => (FindingStatus::Fail, detail, fix),
            Verdict::Error(d) => (FindingStatus::Error, d, Vec::new()),
        };
        if ignored && status != FindingStatus::Pass {
            let was = status.as_str();
            return Finding {
                check,
                status: FindingStatus::Ignored,
                detail: format!("accepted risk (audit.ignore), {was}: {detail}"),
                fix,
            };
        }
        Finding {
            check,
            status,
            detail,
            fix,
        }
    }

    pub fn json(&self) -> Value {
        let c = self.check;
        let mut v = json!({
            "id": c.id,
            "title": c.title,
            "severity": c.severity,
            "status": self.status.as_str(),
            "detail": self.detail,
            "remediation": c.remediation,
            "cis": c.cis,
            "rationale": c.rationale,
        });
        if !self.fix.is_empty() {
            v["fix"] = json!(self.fix);
        }
        v
    }
}

/// Counts of a target's findings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub pass: usize,
    pub fail: usize,
    pub error: usize,
    pub ignored: usize,
}

impl Summary {
    pub fn of(findings: &[Finding]) -> Summary {
        let mut s = Summary::default();
        for f in findings {
            match f.status {
                FindingStatus::Pass => s.pass += 1,
                FindingStatus::Fail => s.fail += 1,
                FindingStatus::Error => s.error += 1,
                FindingStatus::Ignored => s.ignored += 1,
            }
        }
        s
    }

    pub fn json(&self) -> Value {
        json!({"pass": self.pass, "fail": self.fail, "error": self.error, "ignored": self.ignored})
    }
}

/// What the audit found on one target.
#[derive(Debug, Clone)]
pub struct TargetReport {
    pub target: String,
    pub engine: EngineKind,
    pub status: Status,
    pub server_version: Option<String>,
    /// Why the target could not be audited at all (unreachable, timed out).
    pub error: Option<String>,
    pub findings: Vec<Finding>,
    pub seconds: f64,
}

/// A target's status: CRITICAL when a failed check is at least `fail_on`, WARNING for any
/// other failure or for a check that could not be evaluated (an audit that could not look is
/// not clean), OK otherwise. Ignored findings count for nothing.
pub fn target_status(findings: &[Finding], fail_on: Severity) -> Status {
    let mut status = Status::Ok;
    for f in findings {
        match f.status {
            FindingStatus::Fail if f.check.severity >= fail_on => return Status::Critical,
            FindingStatus::Fail | FindingStatus::Error => status = Status::Warning,
            FindingStatus::Pass | FindingStatus::Ignored => {}
        }
    }
    status
}

pub fn severity_str(s: Severity) -> &'static str {
    match s {
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

/// The catalogue of one engine.
pub fn catalogue(engine: EngineKind) -> &'static [CheckDef] {
    match engine {
        EngineKind::Postgres => postgres::CHECKS,
        EngineKind::Mysql => mysql::CHECKS,
        EngineKind::Mssql => mssql::CHECKS,
        EngineKind::Redis => redis::CHECKS,
    }
}

/// Every check of every engine.
pub fn all_checks() -> impl Iterator<Item = &'static CheckDef> {
    postgres::CHECKS
        .iter()
        .chain(mysql::CHECKS.iter())
        .chain(mssql::CHECKS.iter())
        .chain(redis::CHECKS.iter())
}

/// `PG-AUTH` of `PG-AUTH-01`.
fn group_of(id: &str) -> &str {
    id.rsplit_once('-').map_or(id, |(g, _)| g)
}

/// The ids `--check` selects: an id (`PG-AUTH-01`), a group (`PG-LOG`) or an engine (`PG`),
/// case-insensitive. None: every check. An unknown one is a configuration error that says
/// where the ids are listed.
pub fn select(wanted: &[String]) -> Result<Option<BTreeSet<&'static str>>, ConfigError> {
    if wanted.is_empty() {
        return Ok(None);
    }
    let mut out = BTreeSet::new();
    for w in wanted {
        let w = w.trim().to_ascii_uppercase();
        let before = out.len();
        for c in all_checks() {
            let g = group_of(c.id);
            let engine = g.split('-').next().unwrap_or(g);
            if c.id == w || g == w || engine == w {
                out.insert(c.id);
            }
        }
        if out.len() == before && !all_checks().any(|c| c.id == w) {
            let same_group: Vec<&str> = all_checks()
                .filter(|c| group_of(c.id) == group_of(&w))
                .map(|c| c.id)
                .collect();
            let hint = if same_group.is_empty() {
                let mut groups: Vec<&str> = all_checks().map(|c| group_of(c.id)).collect();
                groups.dedup();
                format!("groups: {}", groups.join(", "))
            } else {
                format!("{} has {}", group_of(&w), same_group.join(", "))
            };
            return Err(ConfigError::new(format!(
                "--check `{w}`: no such audit check ({hint}); an id (PG-AUTH-01), a group \
                 (PG-LOG) or an engine (PG, MY, MS, RD) is accepted; `mairie-dba audit --format \
                 json` lists every check with its id and title, and the README has the catalogue"
            )));
        }
    }
    Ok(Some(out))
}

/// Ids of `audit.ignore` that name no check (probably a typo).
pub fn unknown_ids(ids: &[String]) -> Vec<String> {
    ids.iter()
        .filter(|i| !all_checks().any(|c| c.id.eq_ignore_ascii_case(i.trim())))
        .cloned()
        .collect()
}

/// Whether `id` is in the ignore list (case-insensitive).
pub fn is_ignored(ignore: &[String], id: &str) -> bool {
    ignore.iter().any(|i| i.trim().eq_ignore_ascii_case(id))
}

// ---------------------------------------------------------------------------------------------
// Supported versions

/// Where a release stands on a date, from a table of (release, end of support).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    Supported {
        until: NaiveDate,
    },
    Ended {
        on: Option<NaiveDate>,
    },
    /// Newer than every release the table knows: assumed supported.
    Newer,
}

/// `release` is (major, minor) — minor 0 for engines numbered by major only. A release below
/// the newest known one that is not in the table (a short-term release, or one older than the
/// table) is unsupported.
pub fn support(release: (u32, u32), table: &[((u32, u32), &str)], today: NaiveDate) -> Support {
    let newest = table.iter().map(|(r, _)| *r).max();
    if newest.is_some_and(|n| release > n) {
        return Support::Newer;
    }
    match table.iter().find(|(r, _)| *r == release) {
        Some((_, eol)) => match NaiveDate::parse_from_str(eol, "%Y-%m-%d") {
            Ok(d) if today <= d => Support::Supported { until: d },
            Ok(d) => Support::Ended { on: Some(d) },
            Err(_) => Support::Ended { on: None },
        },
        None => Support::Ended { on: None },
    }
}

/// The verdict of a version check; `release` is how the engine names it ("15", "10.11").
pub fn version_verdict(product: &str, version: &str, release: &str, s: Support) -> Verdict {
    match s {
        Support::Supported { until } => Verdict::Pass(format!(
            "{product} {version}: release {release} is supported until {until}; keep to its latest minor release"
        )),
        Support::Newer => Verdict::Pass(format!(
            "{product} {version}: release {release} is newer than the releases this version of mairie-dba knows; check that it is still supported"
        )),
        Support::Ended { on: Some(d) } => Verdict::fail(format!(
            "{product} {version}: release {release} reached its end of support on {d}"
        )),
        Support::Ended { on: None } => Verdict::fail(format!(
            "{product} {version}: release {release} is not a supported release"
        )),
    }
}

/// The leading `major.minor` numbers of a version string (`10.11.19-MariaDB…` -> (10, 11)).
pub fn parse_release(v: &str) -> Option<(u32, u32)> {
    let mut parts = v
        .split(|c: char| !c.is_ascii_digit())
        .take_while(|p| !p.is_empty());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

/// Runs the selected checks of one engine's catalogue (`postgres.rs`, `mysql.rs`,
/// `mssql.rs`) on a connection: a verdict per check, in the order given.
pub struct Evaluate<'a> {
    pub checks: &'a [&'static CheckDef],
    /// How long a MySQL check may run (MySQL's catalogue bounds each query itself).
    pub statement_timeout: std::time::Duration,
}

impl crate::engine::Visitor for Evaluate<'_> {
    type Output = Vec<Verdict>;
    const WHAT: &'static str = "audit rules";

    async fn postgres(
        self,
        conn: &mut crate::engine::postgres::PgConn,
    ) -> anyhow::Result<Vec<Verdict>> {
        postgres::evaluate(conn, self.checks).await
    }

    async fn mysql(self, conn: &mut crate::engine::mysql::MyConn) -> anyhow::Result<Vec<Verdict>> {
        mysql::evaluate(conn, self.checks, self.statement_timeout).await
    }

    async fn mssql(self, conn: &mut crate::engine::mssql::MsConn) -> anyhow::Result<Vec<Verdict>> {
        mssql::evaluate(conn, self.checks).await
    }

    async fn redis(
        self,
        conn: &mut crate::engine::redis::RedisConn,
    ) -> anyhow::Result<Vec<Verdict>> {
        redis::evaluate(conn, self.checks).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(sev: Severity) -> &'static CheckDef {
        Box::leak(Box::new(CheckDef {
            id: "PG-TEST-01",
            title: "t",
            severity: sev,
            rationale: "",
            cis: "",
            remediation: "",
            probe: Probe::Custom,
        }))
    }

    fn finding(sev: Severity, v: Verdict, ignored: bool) -> Finding {
        Finding::new(def(sev), v, ignored)
    }

    #[test]
    fn status_follows_severity_and_fail_on() {
        let pass = finding(Severity::High, Verdict::Pass("ok".into()), false);
        let low = finding(Severity::Low, Verdict::fail("x"), false);
        let high = finding(Severity::High, Verdict::fail("x"), false);
        let err = finding(Severity::Critical, Verdict::Error("denied".into()), false);
        let ign = finding(Severity::Critical, Verdict::fail("x"), true);
        assert_eq!(
            target_status(std::slice::from_ref(&pass), Severity::High),
            Status::Ok
        );
        assert_eq!(
            target_status(&[pass.clone(), low.clone()], Severity::High),
            Status::Warning
        );
        assert_eq!(
            target_status(std::slice::from_ref(&low), Severity::Low),
            Status::Critical
        );
        assert_eq!(
            target_status(std::slice::from_ref(&high), Severity::High),
            Status::Critical
        );
        assert_eq!(
            target_status(std::slice::from_ref(&high), Severity::Critical),
            Status::Warning
        );
        // An audit that could not look is not clean, but not critical either.
        assert_eq!(
            target_status(std::slice::from_ref(&err), Severity::Low),
            Status::Warning
        );
        // An accepted risk counts for nothing.
        assert_eq!(
            target_status(&[ign.clone(), pass], Severity::Low),
            Status::Ok
        );
        assert_eq!(ign.status, FindingStatus::Ignored);
        assert!(ign.detail.starts_with("accepted risk"), "{}", ign.detail);
        let s = Summary::of(&[low, high, err, ign]);
        assert_eq!((s.pass, s.fail, s.error, s.ignored), (0, 2, 1, 1));
        assert_eq!(Status::Critical.exit_code(), 2);
    }

    #[test]
    fn an_ignored_pass_stays_a_pass() {
        let f = finding(Severity::High, Verdict::Pass("fine".into()), true);
        assert_eq!(f.status, FindingStatus::Pass);
        assert_eq!(f.detail, "fine");
    }

    #[test]
    fn offenders_are_named_and_fixes_deduplicated() {
        let v = Verdict::from_offenders(
            vec![
                ("a".into(), Some("FIX a;".into())),
                ("b".into(), None),
                ("c".into(), Some("FIX a;".into())),
            ],
            "none",
            "bad things",
        );
        assert_eq!(
            v,
            Verdict::Fail {
                detail: "bad things (3): a, b, c".into(),
                fix: vec!["FIX a;".into()]
            }
        );
        assert_eq!(
            Verdict::from_offenders(vec![], "nothing bad", "x"),
            Verdict::Pass("nothing bad".into())
        );
        let many: Vec<String> = (0..30).map(|i| i.to_string()).collect();
        assert!(name_list(&many).ends_with("… and 5 more"));
    }

    #[test]
    fn setting_verdicts_show_value_and_expectation() {
        fn on(v: Option<&str>) -> bool {
            v == Some("on")
        }
        assert_eq!(
            Verdict::from_setting("ssl", Some("off"), "on", on),
            Verdict::fail("ssl = off (expected on)")
        );
        assert_eq!(
            Verdict::from_setting("ssl", Some("on"), "on", on),
            Verdict::Pass("ssl = on".into())
        );
        assert!(matches!(
            Verdict::from_setting("x", None, "on", on),
            Verdict::Fail { detail, .. } if detail.contains("not set")
        ));
    }

    #[test]
    fn catalogue_ids_are_unique_well_formed_and_complete() {
        let mut seen = BTreeSet::new();
        for (engine, prefix, min) in [
            (EngineKind::Postgres, "PG", 30),
            (EngineKind::Mysql, "MY", 25),
            (EngineKind::Mssql, "MS", 20),
        ] {
            let cat = catalogue(engine);
            assert!(cat.len() >= min, "{engine}: {} checks", cat.len());
            for c in cat {
                assert!(seen.insert(c.id), "duplicate id {}", c.id);
                let parts: Vec<&str> = c.id.split('-').collect();
                assert_eq!(parts.len(), 3, "{}", c.id);
                assert_eq!(parts[0], prefix, "{}", c.id);
                assert!(
                    parts[1].len() >= 3 && parts[1].chars().all(|ch| ch.is_ascii_uppercase()),
                    "{}",
                    c.id
                );
                assert!(
                    parts[2].len() == 2 && parts[2].chars().all(|ch| ch.is_ascii_digit()),
                    "{}",
                    c.id
                );
                assert!(!c.title.is_empty() && !c.rationale.is_empty(), "{}", c.id);
                assert!(!c.remediation.is_empty(), "{}", c.id);
                assert!(c.cis.is_empty() || c.cis.starts_with("CIS "), "{}", c.id);
                if let Probe::Offenders { sql, none, what } = c.probe {
                    assert!(!sql.trim().is_empty() && !none.is_empty() && !what.is_empty());
                }
            }
        }
    }

    #[test]
    fn selection_by_id_group_and_engine() {
        assert_eq!(select(&[]).unwrap(), None);
        let one = select(&["pg-auth-01".into()]).unwrap().unwrap();
        assert_eq!(one.into_iter().collect::<Vec<_>>(), ["PG-AUTH-01"]);
        let group = select(&["PG-LOG".into()]).unwrap().unwrap();
        assert!(group.len() > 3 && group.iter().all(|i| i.starts_with("PG-LOG-")));
        let engine = select(&["MY".into()]).unwrap().unwrap();
        assert_eq!(engine.len(), mysql::CHECKS.len());
        let e = select(&["PG-AUTH-99".into()]).unwrap_err().to_string();
        assert!(
            e.contains("PG-AUTH-99") && e.contains("PG-AUTH-01") && e.contains("--format json"),
            "{e}"
        );
        let e = select(&["nonsense".into()]).unwrap_err().to_string();
        assert!(e.contains("groups: PG-AUTH"), "{e}");
        assert_eq!(
            unknown_ids(&["PG-AUTH-01".into(), "PG-NOPE-01".into()]),
            ["PG-NOPE-01"]
        );
        assert!(is_ignored(&["pg-auth-01".into()], "PG-AUTH-01"));
    }

    #[test]
    fn versions_against_the_support_table() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 21).unwrap();
        let table = [((14, 0), "2026-11-12"), ((15, 0), "2027-11-11")];
        assert!(matches!(
            support((15, 0), &table, today),
            Support::Supported { .. }
        ));
        assert!(matches!(
            support((14, 0), &table, today),
            Support::Ended { on: Some(_) }
        ));
        assert_eq!(support((12, 0), &table, today), Support::Ended { on: None });
        assert_eq!(support((19, 0), &table, today), Support::Newer);
        assert_eq!(parse_release("10.11.19-MariaDB-0+deb12u1"), Some((10, 11)));
        assert_eq!(
            parse_release("15.20 (Debian 15.20-0+deb12u1)"),
            Some((15, 20))
        );
        assert_eq!(parse_release("16.0.4135.4"), Some((16, 0)));
        assert_eq!(parse_release("x"), None);
        let v = version_verdict("PostgreSQL", "14.3", "14", support((14, 0), &table, today));
        assert!(
            matches!(v, Verdict::Fail { ref detail, .. } if detail.contains("2026-11-12")),
            "{v:?}"
        );
    }
}
