//! `health`, without the engines: the one table of checks, running them, and judging them.
//!
//! [`CHECKS`] is the table: a row per [`Check`] with its name, unit, which way is worse, its
//! default thresholds and where it is measured. Everything about a check other than how an
//! engine measures it is read from its row, so a check is added in one place.
//!
//! How each engine measures each check is in that engine's catalogue (`postgres.rs`,
//! `mysql.rs`, `mssql.rs`), reached through [`engine::Visitor`]: a `match` over [`Check`]
//! without a wildcard arm, so a new check does not compile until every engine says how it
//! measures it, or that it does not apply there.
//!
//! Every target is checked at the same time, each on one connection and within
//! `health.timeout` seconds, so one slow or dead server never delays the report on the
//! others. A value is judged against its warning and critical thresholds: the target's own
//! in `config_global.yml`, else those for every target, else the defaults of the table.
//! Rendering the result (table, JSON, Nagios line) is the command's (`cmd/health.rs`).

pub mod mssql;
pub mod mysql;
pub mod postgres;

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::Utc;
use futures_util::future::join_all;

use crate::backup;
use crate::catalog::TableRef;
use crate::config::{Config, HealthSection, Target, Threshold};
use crate::engine::{self, Conn};
use crate::error::ConfigError;
use crate::output::Status;

/// What a check's value is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Millis,
    Seconds,
    Hours,
    Days,
    Percent,
    Bytes,
    /// A number of things (blocked sessions): no symbol.
    Count,
}

impl Unit {
    /// As shown and in the JSON report.
    pub fn symbol(self) -> &'static str {
        match self {
            Unit::Millis => "ms",
            Unit::Seconds => "s",
            Unit::Hours => "h",
            Unit::Days => "d",
            Unit::Percent => "%",
            Unit::Bytes => "B",
            Unit::Count => "",
        }
    }
}

/// Where a check is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The connection itself, first: when it fails the target is unreachable (CRITICAL).
    Connection,
    /// A catalogue query on the server, by the engine's catalogue, within `health.timeout`.
    Server,
    /// The target's backup directory on this machine, whatever the engine.
    BackupDir,
}

/// One row of [`CHECKS`].
#[derive(Debug)]
pub struct CheckDef {
    pub check: Check,
    /// As typed after `--check` and in `health.thresholds`.
    pub name: &'static str,
    pub unit: Unit,
    /// A smaller value is worse (free space, cache hit ratio): thresholds compare the other way.
    pub lower_is_worse: bool,
    /// The thresholds used when the configuration says nothing; None for a fact (a version,
    /// a size), which is reported and never judged.
    pub default_threshold: Option<Threshold>,
    pub source: Source,
}

const fn limits(warning: f64, critical: f64) -> Option<Threshold> {
    Some(Threshold { warning, critical })
}

/// Declares [`Check`] and [`CHECKS`] from one list, so that the rows are the variants, in
/// their order, and [`Check::def`] is an index.
macro_rules! checks {
    ($($(#[$doc:meta])* $check:ident { $($field:ident: $value:expr),* $(,)? })*) => {
        /// A check `health` knows; its facts are its row of [`CHECKS`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Check {
            $($(#[$doc])* $check,)*
        }

        /// Every check, in the order they are listed (and, the backup directory's aside,
        /// shown).
        pub const CHECKS: &[CheckDef] = &[
            $(CheckDef { check: Check::$check, $($field: $value),* },)*
        ];
    };
}

checks! {
    /// Round trip of a trivial query, in milliseconds.
    Connectivity {
        name: "connectivity", unit: Unit::Millis, lower_is_worse: false,
        default_threshold: limits(100.0, 1000.0), source: Source::Connection,
    }
    /// The server's version; its value is the uptime.
    Version {
        name: "version", unit: Unit::Seconds, lower_is_worse: false,
        default_threshold: None, source: Source::Server,
    }
    /// Connections in use, in % of those allowed.
    Connections {
        name: "connections", unit: Unit::Percent, lower_is_worse: false,
        default_threshold: limits(80.0, 95.0), source: Source::Server,
    }
    /// The longest running query.
    LongQueries {
        name: "long_queries", unit: Unit::Seconds, lower_is_worse: false,
        default_threshold: limits(5.0, 60.0), source: Source::Server,
    }
    /// The longest session idle in an open transaction.
    IdleInTransaction {
        name: "idle_in_transaction", unit: Unit::Seconds, lower_is_worse: false,
        default_threshold: limits(60.0, 300.0), source: Source::Server,
    }
    /// Sessions waiting for a lock.
    Locks {
        name: "locks", unit: Unit::Count, lower_is_worse: false,
        default_threshold: limits(1.0, 5.0), source: Source::Server,
    }
    /// The size of the database.
    DatabaseSize {
        name: "database_size", unit: Unit::Bytes, lower_is_worse: false,
        default_threshold: None, source: Source::Server,
    }
    /// The sizes of `health.key_tables`.
    TableSizes {
        name: "table_sizes", unit: Unit::Bytes, lower_is_worse: false,
        default_threshold: None, source: Source::Server,
    }
    /// Reads served from memory, in %.
    CacheHit {
        name: "cache_hit", unit: Unit::Percent, lower_is_worse: true,
        default_threshold: limits(90.0, 80.0), source: Source::Server,
    }
    /// The oldest transaction ID age, in % of the 2^31 limit.
    Wraparound {
        name: "wraparound", unit: Unit::Percent, lower_is_worse: false,
        default_threshold: limits(50.0, 75.0), source: Source::Server,
    }
    /// Replication lag.
    Replication {
        name: "replication", unit: Unit::Seconds, lower_is_worse: false,
        default_threshold: limits(30.0, 300.0), source: Source::Server,
    }
    /// Days since the key table vacuumed longest ago was.
    Vacuum {
        name: "vacuum", unit: Unit::Days, lower_is_worse: false,
        default_threshold: limits(7.0, 30.0), source: Source::Server,
    }
    /// Days since the oldest statistics were gathered.
    Analyze {
        name: "analyze", unit: Unit::Days, lower_is_worse: false,
        default_threshold: limits(7.0, 30.0), source: Source::Server,
    }
    /// Free space of the filesystem holding the backup directory, in %.
    BackupDirSpace {
        name: "backup_dir_space", unit: Unit::Percent, lower_is_worse: true,
        default_threshold: limits(20.0, 10.0), source: Source::BackupDir,
    }
    /// Hours since the latest good backup finished.
    BackupAge {
        name: "backup_age", unit: Unit::Hours, lower_is_worse: false,
        default_threshold: limits(26.0, 50.0), source: Source::BackupDir,
    }
}

/// The backup directory's checks, in the order they are shown, after the server's.
const BACKUP_DIR_SHOWN: [Check; 2] = [Check::BackupAge, Check::BackupDirSpace];

impl Check {
    pub fn def(self) -> &'static CheckDef {
        &CHECKS[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.def().name
    }

    pub fn from_name(name: &str) -> Option<Check> {
        CHECKS.iter().find(|d| d.name == name).map(|d| d.check)
    }

    /// Every check, in the table's order.
    pub fn all() -> impl Iterator<Item = Check> {
        CHECKS.iter().map(|d| d.check)
    }
}

/// Every check's name, for messages: `connectivity, version, …`.
pub fn check_names() -> String {
    CHECKS.iter().map(|d| d.name).collect::<Vec<_>>().join(", ")
}

/// One measurement.
#[derive(Debug, Clone)]
pub struct Probe {
    pub check: Check,
    pub value: Option<f64>,
    pub message: String,
}

impl Probe {
    pub fn new(check: Check, value: f64, message: impl Into<String>) -> Probe {
        Probe {
            check,
            value: Some(value),
            message: message.into(),
        }
    }

    /// A fact with nothing to measure against (e.g. "not a replica").
    pub fn note(check: Check, message: impl Into<String>) -> Probe {
        Probe {
            check,
            value: None,
            message: message.into(),
        }
    }

    /// The check's unit when there is a value; a note has none.
    pub fn unit(&self) -> Option<Unit> {
        self.value.map(|_| self.check.def().unit)
    }
}

/// What an engine's catalogue says of one check.
#[derive(Debug)]
pub enum Answer {
    Probe(Probe),
    /// The check means nothing on this engine (InnoDB has no vacuum), or is not the server's
    /// to answer (the backup directory's): it is not shown.
    DoesNotApply,
}

/// Why a check has no measurement.
#[derive(Debug, Clone)]
pub struct Failed {
    pub check: Check,
    pub message: String,
    /// The target is in trouble (unreachable, too slow), not merely the check.
    pub critical: bool,
}

/// The result of one check: its probe, or why it could not be measured.
pub type Measured = Result<Probe, Failed>;

/// One judged check.
#[derive(Debug, Clone)]
pub struct Judged {
    pub check: Check,
    pub status: Status,
    pub value: Option<f64>,
    /// None: shown without a unit.
    pub unit: Option<Unit>,
    pub message: String,
    pub threshold: Option<Threshold>,
}

/// The checks of one target.
#[derive(Debug)]
pub struct TargetReport<'a> {
    pub target: &'a Target,
    /// The worst of its checks.
    pub status: Status,
    pub checks: Vec<Judged>,
    pub took: Duration,
}

/// Compares a value with its thresholds, in the direction the check's row says.
pub fn judge(check: Check, value: Option<f64>, threshold: Option<Threshold>) -> Status {
    let (Some(v), Some(t)) = (value, threshold) else {
        return Status::Ok;
    };
    let lower = check.def().lower_is_worse;
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

/// Runs the `wanted` checks on every target at once and judges them; a report per target,
/// in the targets' order. Fails only on a configuration mistake in the `health:` section.
pub async fn check_targets<'a>(
    config: &Config,
    targets: &'a [Target],
    wanted: &[Check],
) -> Result<Vec<TargetReport<'a>>> {
    validate(config)?;
    let key_tables = key_tables(config)?;
    let wanted = |check: Check| wanted.contains(&check);
    let budget = Duration::from_secs(config.health.timeout.max(1));

    let runs = targets.iter().map(|t| {
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
                    check: Check::Connectivity,
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

    Ok(results
        .into_iter()
        .map(|(target, measured, took)| {
            let mut checks: Vec<Judged> = measured
                .into_iter()
                .map(|m| judge_measured(&config.health, target, m))
                .collect();
            for check in BACKUP_DIR_SHOWN {
                if wanted(check) {
                    checks.extend(measure_backup_dir(config, target, check));
                }
            }
            TargetReport {
                target,
                status: worst(checks.iter().map(|j| j.status)),
                checks,
                took,
            }
        })
        .collect())
}

/// Every check named in the `health:` section exists, and every target it names.
fn validate(config: &Config) -> Result<(), ConfigError> {
    let h = &config.health;
    let file = config.path.display();
    for name in h.thresholds.keys() {
        if Check::from_name(name).is_none() {
            return Err(ConfigError::new(format!(
                "{file}: health.thresholds.{name}: no such check (checks: {})",
                check_names()
            )));
        }
    }
    for (t, checks) in &h.targets {
        if !config.targets.iter().any(|x| &x.name == t) {
            return Err(ConfigError::new(format!(
                "{file}: health.targets.{t}: no target named `{t}`"
            )));
        }
        for name in checks.keys() {
            if Check::from_name(name).is_none() {
                return Err(ConfigError::new(format!(
                    "{file}: health.targets.{t}.{name}: no such check"
                )));
            }
        }
    }
    Ok(())
}

/// `health.key_tables`, parsed.
fn key_tables(config: &Config) -> Result<Vec<TableRef>, ConfigError> {
    config
        .health
        .key_tables
        .iter()
        .map(|t| {
            TableRef::parse(t).map_err(|e| {
                ConfigError::new(format!("{}: health.key_tables: {e}", config.path.display()))
            })
        })
        .collect()
}

/// The threshold the configuration sets for a check: per target, else for every target.
fn configured_threshold(h: &HealthSection, target: &Target, check: Check) -> Option<Threshold> {
    h.targets
        .get(&target.name)
        .and_then(|m| m.get(check.name()))
        .or_else(|| h.thresholds.get(check.name()))
        .copied()
}

/// The threshold of a check for a target: the configured one, else the default.
fn threshold(h: &HealthSection, target: &Target, check: Check) -> Option<Threshold> {
    configured_threshold(h, target, check).or(check.def().default_threshold)
}

/// One check, asked of the engine's catalogue through [`Conn::visit`].
struct Ask<'a> {
    check: Check,
    key_tables: &'a [TableRef],
}

impl engine::Visitor for Ask<'_> {
    type Output = Answer;
    const WHAT: &'static str = "health checks";

    async fn postgres(self, conn: &mut engine::postgres::PgConn) -> Result<Answer> {
        postgres::measure(conn, self.check, self.key_tables).await
    }

    async fn mysql(self, conn: &mut engine::mysql::MyConn) -> Result<Answer> {
        mysql::measure(conn, self.check, self.key_tables).await
    }

    async fn mssql(self, conn: &mut engine::mssql::MsConn) -> Result<Answer> {
        mssql::measure(conn, self.check, self.key_tables).await
    }
}

/// Connects, then measures the connection and the server's checks, one after the other on
/// that connection, until `deadline`: a check still running then is reported as too slow
/// (CRITICAL) and the ones after it as not run, while those already measured are kept.
async fn measure_target(
    target: &Target,
    key_tables: &[TableRef],
    wanted: &dyn Fn(Check) -> bool,
    deadline: tokio::time::Instant,
    budget_secs: u64,
) -> Vec<Measured> {
    let unreachable = |message: String| Failed {
        check: Check::Connectivity,
        message,
        critical: true,
    };
    let mut conn = match tokio::time::timeout_at(deadline, engine::connect_probe(target)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return vec![Err(unreachable(format!("{e:#}")))],
        Err(_) => {
            return vec![Err(unreachable(format!(
            "the checks did not finish within {budget_secs} s (health.timeout): still connecting"
        )))]
        }
    };
    let mut out = Vec::new();
    let mut out_of_time = false;
    for def in CHECKS {
        let check = def.check;
        if !wanted(check) {
            continue;
        }
        match def.source {
            Source::BackupDir => {}
            Source::Connection => match ask(&mut conn, check, key_tables).await {
                Ok(Answer::Probe(p)) => out.push(Ok(p)),
                Ok(Answer::DoesNotApply) => {}
                Err(e) => out.push(Err(unreachable(format!("{e:#}")))),
            },
            Source::Server if out_of_time => out.push(Err(Failed {
                check,
                message: format!("not run: the target used up health.timeout ({budget_secs} s)"),
                critical: false,
            })),
            Source::Server => {
                match tokio::time::timeout_at(deadline, ask(&mut conn, check, key_tables)).await {
                    Ok(Ok(Answer::Probe(p))) => out.push(Ok(p)),
                    Ok(Ok(Answer::DoesNotApply)) => {}
                    Ok(Err(e)) => out.push(Err(Failed {
                        check,
                        message: format!("{e:#}"),
                        critical: false,
                    })),
                    Err(_) => {
                        out_of_time = true;
                        out.push(Err(Failed {
                            check,
                            message: format!(
                                "did not finish within {budget_secs} s (health.timeout)"
                            ),
                            critical: true,
                        }));
                    }
                }
            }
        }
    }
    out
}

async fn ask(conn: &mut Conn, check: Check, key_tables: &[TableRef]) -> Result<Answer> {
    conn.visit(Ask { check, key_tables }).await
}

/// The connectivity probe of an engine: the round trip of `ping`, a trivial query.
pub(crate) async fn round_trip(ping: impl Future<Output = Result<()>>) -> Result<Probe> {
    let start = Instant::now();
    ping.await?;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    Ok(Probe::new(
        Check::Connectivity,
        (ms * 100.0).round() / 100.0,
        format!("connected, round trip {ms:.1} ms"),
    ))
}

fn judge_measured(h: &HealthSection, target: &Target, m: Measured) -> Judged {
    match m {
        Ok(p) => {
            let th = threshold(h, target, p.check);
            Judged {
                status: judge(p.check, p.value, th),
                check: p.check,
                value: p.value,
                unit: p.unit(),
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
            check: f.check,
            value: None,
            unit: None,
            message: f.message,
            threshold: None,
        },
    }
}

/// A check of the backup directory (None: not shown, e.g. no backup configured for the
/// target); the server's checks are measured by the engines.
fn measure_backup_dir(config: &Config, target: &Target, check: Check) -> Option<Judged> {
    match check {
        Check::BackupAge => Some(backup_age(config, target)),
        Check::BackupDirSpace => backup_dir_space(config, target),
        Check::Connectivity
        | Check::Version
        | Check::Connections
        | Check::LongQueries
        | Check::IdleInTransaction
        | Check::Locks
        | Check::DatabaseSize
        | Check::TableSizes
        | Check::CacheHit
        | Check::Wraparound
        | Check::Replication
        | Check::Vacuum
        | Check::Analyze => None,
    }
}

/// Age of the latest good backup, from the manifests. No backup configured is not a problem.
fn backup_age(config: &Config, target: &Target) -> Judged {
    let check = Check::BackupAge;
    let mut j = Judged {
        check,
        status: Status::Ok,
        value: None,
        unit: Some(check.def().unit),
        message: "no backup configured for this target".into(),
        threshold: None,
    };
    let Some(cfg) = config.backup.get(&target.name).filter(|c| c.enabled) else {
        return j;
    };
    let dir = config.resolve(&cfg.dir);
    // Between the configured thresholds and the defaults: the backup's own cadence.
    let th = configured_threshold(&config.health, target, check)
        .or_else(|| {
            cfg.max_age_hours.map(|h| Threshold {
                warning: h as f64,
                critical: 2.0 * h as f64,
            })
        })
        .or(check.def().default_threshold);
    j.threshold = th;
    match backup::scan(&dir, target, cfg.server_dir.as_deref()) {
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
                // Never negative: a backup finishing as the check reads it is 0 h old.
                let hours = (Utc::now() - m.finished_at).num_minutes().max(0) as f64 / 60.0;
                let hours = (hours * 10.0).round() / 10.0;
                j.value = Some(hours);
                j.status = judge(check, Some(hours), th);
                j.message = format!("latest backup {} finished {hours} h ago", m.file);
            }
        },
    }
    j
}

/// Free space of the filesystem holding the backup directory.
fn backup_dir_space(config: &Config, target: &Target) -> Option<Judged> {
    let check = Check::BackupDirSpace;
    let cfg = config.backup.get(&target.name).filter(|c| c.enabled)?;
    let dir = config.resolve(&cfg.dir);
    let th = threshold(&config.health, target, check);
    let unit = Some(check.def().unit);
    // Free space means nothing if the next backup cannot be written there at all.
    if let Some(why) = backup::unwritable(&dir) {
        return Some(Judged {
            check,
            status: Status::Critical,
            value: free_space(&dir)
                .ok()
                .map(|(free, total)| percent(free, total)),
            unit,
            message: format!("backup directory not writable: {why}"),
            threshold: th,
        });
    }
    Some(match free_space(&dir) {
        Ok((free, total)) => {
            let p = percent(free, total);
            Judged {
                check,
                status: judge(check, Some(p), th),
                value: Some(p),
                unit,
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
            check,
            status: Status::Unknown,
            value: None,
            unit,
            message: format!("{}: {e}", dir.display()),
            threshold: th,
        },
    })
}

/// Free space in percent, to a tenth.
fn percent(free: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        (free as f64 * 1000.0 / total as f64).round() / 10.0
    }
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

/// `42 s`, `3 min`, `5 h`, `2 d`: for the catalogues' messages.
pub(crate) fn human_duration(secs: f64) -> String {
    let s = secs as u64;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

/// `part` in % of `whole`, to one decimal (0 when `whole` is not positive).
pub(crate) fn pct(part: f64, whole: f64) -> f64 {
    if whole <= 0.0 {
        0.0
    } else {
        (part * 1000.0 / whole).round() / 10.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_follows_the_enum_and_names_are_unique() {
        for (i, d) in CHECKS.iter().enumerate() {
            assert_eq!(d.check as usize, i, "{}", d.name);
            assert_eq!(d.check.def().name, d.name);
            assert_eq!(Check::from_name(d.name), Some(d.check));
            assert!(
                !d.name.is_empty() && d.name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{}",
                d.name
            );
            assert_eq!(
                CHECKS.iter().filter(|o| o.name == d.name).count(),
                1,
                "{} twice",
                d.name
            );
        }
        assert_eq!(Check::from_name("conections"), None);
        assert_eq!(
            check_names(),
            "connectivity, version, connections, long_queries, idle_in_transaction, locks, \
             database_size, table_sizes, cache_hit, wraparound, replication, vacuum, analyze, \
             backup_dir_space, backup_age"
        );
    }

    #[test]
    fn every_check_has_a_unit_its_thresholds_make_sense_in() {
        for d in CHECKS {
            assert!(
                ["ms", "s", "h", "d", "%", "B", ""].contains(&d.unit.symbol()),
                "{}",
                d.name
            );
            if let (Unit::Percent, Some(t)) = (d.unit, d.default_threshold) {
                for limit in [t.warning, t.critical] {
                    assert!((0.0..=100.0).contains(&limit), "{}: {limit}%", d.name);
                }
            }
        }
        assert_eq!(Check::Locks.def().unit, Unit::Count);
        assert_eq!(Check::Connectivity.def().unit.symbol(), "ms");
    }

    #[test]
    fn thresholds_are_ordered_the_way_worse_goes() {
        for d in CHECKS {
            let Some(t) = d.default_threshold else {
                continue;
            };
            if d.lower_is_worse {
                assert!(t.critical < t.warning, "{}: {t:?}", d.name);
            } else {
                assert!(t.warning < t.critical, "{}: {t:?}", d.name);
            }
        }
        let lower: Vec<&str> = CHECKS
            .iter()
            .filter(|d| d.lower_is_worse)
            .map(|d| d.name)
            .collect();
        assert_eq!(lower, ["cache_hit", "backup_dir_space"]);
    }

    #[test]
    fn every_check_but_the_facts_has_a_default_threshold() {
        for d in CHECKS {
            let fact = matches!(
                d.check,
                Check::Version | Check::DatabaseSize | Check::TableSizes
            );
            assert_eq!(d.default_threshold.is_none(), fact, "{}", d.name);
        }
    }

    #[test]
    fn the_backup_directory_checks_are_all_shown() {
        let mut from_table: Vec<Check> = CHECKS
            .iter()
            .filter(|d| d.source == Source::BackupDir)
            .map(|d| d.check)
            .collect();
        let mut shown = BACKUP_DIR_SHOWN.to_vec();
        assert_eq!(shown, [Check::BackupAge, Check::BackupDirSpace]);
        from_table.sort_by_key(|c| *c as usize);
        shown.sort_by_key(|c| *c as usize);
        assert_eq!(from_table, shown);
        let connection: Vec<Check> = CHECKS
            .iter()
            .filter(|d| d.source == Source::Connection)
            .map(|d| d.check)
            .collect();
        assert_eq!(connection, [Check::Connectivity]);
    }

    #[test]
    fn thresholds_compare_in_the_right_direction() {
        let t = Some(Threshold {
            warning: 80.0,
            critical: 95.0,
        });
        assert_eq!(judge(Check::Connections, Some(50.0), t), Status::Ok);
        assert_eq!(judge(Check::Connections, Some(83.0), t), Status::Warning);
        assert_eq!(judge(Check::Connections, Some(95.0), t), Status::Critical);
        let free = Check::BackupDirSpace.def().default_threshold;
        assert_eq!(judge(Check::BackupDirSpace, Some(50.0), free), Status::Ok);
        assert_eq!(
            judge(Check::BackupDirSpace, Some(15.0), free),
            Status::Warning
        );
        assert_eq!(
            judge(Check::BackupDirSpace, Some(5.0), free),
            Status::Critical
        );
        let hit = Check::CacheHit.def().default_threshold;
        assert_eq!(judge(Check::CacheHit, Some(99.0), hit), Status::Ok);
        assert_eq!(judge(Check::CacheHit, Some(90.0), hit), Status::Warning);
        assert_eq!(judge(Check::CacheHit, Some(80.0), hit), Status::Critical);
        assert_eq!(judge(Check::DatabaseSize, Some(1e12), None), Status::Ok);
        assert_eq!(judge(Check::Connections, None, t), Status::Ok);
    }

    #[test]
    fn a_probe_shows_its_checks_unit_only_with_a_value() {
        let p = Probe::new(Check::TableSizes, 8192.0, "t 8 KiB");
        assert_eq!(p.unit(), Some(Unit::Bytes));
        let n = Probe::note(Check::TableSizes, "none of the key tables exists");
        assert_eq!(n.unit(), None);
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
    fn percentages_and_durations_read_well() {
        assert_eq!(pct(83.0, 100.0), 83.0);
        assert_eq!(pct(1.0, 3.0), 33.3);
        assert_eq!(pct(5.0, 0.0), 0.0);
        assert_eq!(human_duration(42.0), "42 s");
        assert_eq!(human_duration(600.0), "10 min");
        assert_eq!(human_duration(10_800.0), "3 h");
        assert_eq!(human_duration(259_200.0), "3 d");
    }
}
