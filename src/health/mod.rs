//! `health`, without the engines: the one table of checks, running them, and judging them.
//!
//! [`CHECKS`] is the table: a row per [`Check`] with its name, unit, which way is worse, its
//! default thresholds and where it is measured. Everything about a check other than how an
//! engine measures it is read from its row, so a check is added in one place.
//!
//! How each engine measures each check is in that engine's catalogue (`postgres.rs`,
//! `mysql.rs`, `mssql.rs`, `redis.rs`), reached through [`engine::Visitor`]: a `match` over [`Check`]
//! without a wildcard arm, so a new check does not compile until every engine says how it
//! measures it, or that it does not apply there.
//!
//! The WAL archiving checks (`wal_archiving`, `wal_ready_files`) are `pitr check`'s facts
//! and judgement ([`crate::pitr::check`]), gathered once on the same session after the
//! server's checks, for PostgreSQL targets with a `pitr:` section; a target without one has
//! no archive to judge and does not list them (UNKNOWN when they are named by `--check`).
//!
//! Every target is checked at the same time, each on one probe session
//! ([`engine::connect_probe`]) and within `health.timeout` seconds, so one slow or dead
//! server never delays the report on the others. Each check runs through [`Conn::probe`]
//! within its share of that budget: one that waits for a lock or runs too long is cancelled
//! on the server and reported UNKNOWN with the reason, and the next one runs. Only a target
//! that cannot be reached, or does not answer a trivial query, is CRITICAL.
//!
//! Monitoring must not mistake blindness for health: a check that reads other sessions'
//! activity runs only when the session sees every session ([`Visibility`]), and is UNKNOWN,
//! naming the missing grant, otherwise; a check that does not exist on an engine is listed
//! as skipped, never OK.
//!
//! A value is judged against its warning and critical thresholds: the command line's
//! (`--warning`, `--critical`), else the target's own in `config_global.yml`, else those
//! for every target, else the defaults of the table. Rendering the result (table, JSON,
//! Nagios line) is the command's (`cmd/health.rs`).
//!
//! [`Conn::probe`]: engine::Conn::probe

pub mod mssql;
pub mod mysql;
pub mod postgres;
pub mod redis;

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::Utc;
use futures_util::future::join_all;

use crate::backup;
use crate::catalog::TableRef;
use crate::config::{Config, EngineKind, HealthSection, Target, Threshold};
use crate::engine::{self, Driver, Visibility};
use crate::error::ConfigError;
use crate::output::Status;
use crate::pitr::check as pitr_check;

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
    /// WAL archiving of a PostgreSQL target with a `pitr:` section: the server's archiver and
    /// the archive directory, gathered once for both checks ([`crate::pitr::check`]).
    WalArchive,
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
    /// The oldest transaction ID (or multixact) age of the cluster's databases, in % of the
    /// 2^31 limit.
    Wraparound {
        name: "wraparound", unit: Unit::Percent, lower_is_worse: false,
        default_threshold: limits(50.0, 75.0), source: Source::Server,
    }
    /// The sequence (identity, AUTO_INCREMENT) nearest its maximum, in % of its range used.
    Sequences {
        name: "sequences", unit: Unit::Percent, lower_is_worse: false,
        default_threshold: limits(75.0, 90.0), source: Source::Server,
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
    /// Memory in use, in % of the server's limit (Redis `used_memory` over `maxmemory`).
    Memory {
        name: "memory", unit: Unit::Percent, lower_is_worse: false,
        default_threshold: limits(85.0, 95.0), source: Source::Server,
    }
    /// Memory fragmentation: resident memory over memory in use (Redis
    /// `mem_fragmentation_ratio`), judged only past a minimum of memory in use.
    Fragmentation {
        name: "fragmentation", unit: Unit::Count, lower_is_worse: false,
        default_threshold: limits(1.5, 2.0), source: Source::Server,
    }
    /// Key lookups that found their key, in %, over a short interval between two reads of
    /// the server's counters (Redis `keyspace_hits`, `keyspace_misses`).
    HitRate {
        name: "hit_rate", unit: Unit::Percent, lower_is_worse: true,
        default_threshold: limits(90.0, 80.0), source: Source::Server,
    }
    /// Keys evicted for lack of memory, per second over that interval.
    Evictions {
        name: "evictions", unit: Unit::Count, lower_is_worse: false,
        default_threshold: limits(1.0, 100.0), source: Source::Server,
    }
    /// Connections refused (the client limit reached), per second over that interval.
    RejectedConnections {
        name: "rejected_connections", unit: Unit::Count, lower_is_worse: false,
        default_threshold: limits(0.5, 5.0), source: Source::Server,
    }
    /// Persistence: the last snapshot (`BGSAVE`) and AOF write succeeded; the value is the
    /// age of the oldest change not yet saved to a snapshot (0 when none).
    Persistence {
        name: "persistence", unit: Unit::Seconds, lower_is_worse: false,
        default_threshold: limits(7200.0, 86_400.0), source: Source::Server,
    }
    /// WAL archiving works (settings, failures, the archive holds what the server says it
    /// archived); its value is the age of the last archived file, judged only when the
    /// server has completed a segment since.
    WalArchiving {
        name: "wal_archiving", unit: Unit::Seconds, lower_is_worse: false,
        default_threshold: Some(pitr_check::DEFAULT_AGE), source: Source::WalArchive,
    }
    /// WAL files waiting to be archived (`.ready`).
    WalReadyFiles {
        name: "wal_ready_files", unit: Unit::Count, lower_is_worse: false,
        default_threshold: Some(pitr_check::DEFAULT_READY), source: Source::WalArchive,
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
    /// What the measurement could not see (sequences the role may not read, standbys whose
    /// lag is hidden) and the grant that would show it: a value that would be OK is then
    /// UNKNOWN, since what is hidden may be worse.
    pub unseen: Option<String>,
    /// The least status the measurement itself calls for, whatever the thresholds say: a
    /// failed snapshot is CRITICAL at any age, a memory use with no limit to judge it
    /// against UNKNOWN.
    pub at_least: Option<Status>,
}

impl Probe {
    pub fn new(check: Check, value: f64, message: impl Into<String>) -> Probe {
        Probe {
            check,
            value: Some(value),
            message: message.into(),
            unseen: None,
            at_least: None,
        }
    }

    /// A fact with nothing to measure against (e.g. "not a replica").
    pub fn note(check: Check, message: impl Into<String>) -> Probe {
        Probe {
            check,
            value: None,
            message: message.into(),
            unseen: None,
            at_least: None,
        }
    }

    /// The same probe, with what it could not see.
    pub fn unseen(mut self, unseen: Option<String>) -> Probe {
        self.unseen = unseen;
        self
    }

    /// The same probe, never judged better than `status`.
    pub fn at_least(mut self, status: Status) -> Probe {
        self.at_least = Some(status);
        self
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
    /// Not measured: the check reads every session's activity and this session sees only
    /// its own (or could not tell); why, naming the grant it lacks.
    Blind(String),
    /// The check does not exist on this engine (InnoDB has no vacuum), or is not the
    /// server's to answer (the backup directory's); why, for the report.
    DoesNotApply(&'static str),
}

/// Whether the session sees every session's activity, as asked once before the checks
/// ([`Driver::activity_visibility`]); Err: it could not tell, and why.
pub type Sight = std::result::Result<Visibility, String>;

/// For a check that reads other sessions' activity: [`Answer::Blind`] unless this session
/// sees every session. A catalogue calls it first for those checks, so that a role that
/// sees only its own sessions never reports "no long query" for lack of seeing them.
pub(crate) fn unless_all_seen(sight: &Sight) -> Option<Answer> {
    match sight {
        Ok(Visibility::All) => None,
        Ok(Visibility::OwnOnly { missing }) => Some(Answer::Blind(format!(
            "cannot see other sessions: {missing}"
        ))),
        Err(e) => Some(Answer::Blind(format!(
            "cannot tell whether other sessions are visible: {e}"
        ))),
    }
}

/// What a check was reading when it failed, for the message: `table metier.citoyens`. A
/// catalogue adds it as context to the queries that touch one object, so that a lock wait
/// given up names what was locked.
#[derive(Debug)]
pub(crate) struct Reading(pub String);

impl std::fmt::Display for Reading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reading {}", self.0)
    }
}

/// Why a check has no measurement.
#[derive(Debug, Clone)]
pub struct Failed {
    pub check: Check,
    pub message: String,
    /// The target is in trouble (unreachable, not answering a trivial query), not merely
    /// the check.
    pub critical: bool,
}

/// What became of one check of a target.
#[derive(Debug, Clone)]
pub enum Finding {
    Measured(Probe),
    /// The facts of WAL archiving, judged with the check's thresholds.
    Archiving(Check, Box<pitr_check::Facts>),
    Failed(Failed),
    /// The check does not exist here and was not asked for by name: listed, not judged.
    Skipped(Skipped),
}

/// A check that does not apply to a target, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub check: Check,
    pub reason: String,
}

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
    /// The checks that do not apply to it (not judged, no effect on the status).
    pub skipped: Vec<Skipped>,
    pub took: Duration,
}

/// What to run: the checks, whether they were named (`--check`), and thresholds given on
/// the command line.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub checks: Vec<Check>,
    /// Named one by one: a check that does not apply is then UNKNOWN, not merely skipped.
    pub explicit: bool,
    pub overrides: Overrides,
}

/// Thresholds given on the command line (`--warning CHECK=V`, `--critical CHECK=V`): they
/// win over the configuration for every target; the side not given keeps its value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides(Vec<(Check, Override)>);

/// One check's command-line thresholds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Override {
    pub warning: Option<f64>,
    pub critical: Option<f64>,
}

impl Overrides {
    /// Sets one side of a check's threshold (the last given wins).
    pub fn set(&mut self, check: Check, warning: Option<f64>, critical: Option<f64>) {
        let i = match self.0.iter().position(|(c, _)| *c == check) {
            Some(i) => i,
            None => {
                self.0.push((check, Override::default()));
                self.0.len() - 1
            }
        };
        let o = &mut self.0[i].1;
        o.warning = warning.or(o.warning);
        o.critical = critical.or(o.critical);
    }

    pub fn get(&self, check: Check) -> Option<Override> {
        self.0.iter().find(|(c, _)| *c == check).map(|(_, o)| *o)
    }

    /// `base` with the command line's sides put in; None when neither gives both sides.
    pub fn apply(&self, check: Check, base: Option<Threshold>) -> Option<Threshold> {
        let Some(o) = self.get(check) else {
            return base;
        };
        match (base, o.warning, o.critical) {
            (Some(t), w, c) => Some(Threshold {
                warning: w.unwrap_or(t.warning),
                critical: c.unwrap_or(t.critical),
            }),
            (None, Some(warning), Some(critical)) => Some(Threshold { warning, critical }),
            (None, _, _) => None,
        }
    }
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

/// Runs the selected checks on every target at once and judges them; a report per target,
/// in the targets' order. Fails only on a configuration mistake in the `health:` section or
/// in the command line's thresholds.
pub async fn check_targets<'a>(
    config: &Config,
    targets: &'a [Target],
    selection: &Selection,
) -> Result<Vec<TargetReport<'a>>> {
    validate(config)?;
    validate_overrides(config, targets, &selection.overrides)?;
    let key_tables = key_tables(config)?;
    let wanted = |check: Check| selection.checks.contains(&check);
    let budget = Duration::from_secs(config.health.timeout.max(1));

    let runs = targets.iter().map(|t| {
        let key_tables = &key_tables;
        async move {
            let start = Instant::now();
            let deadline = tokio::time::Instant::now() + budget;
            // Every wait inside is bounded by the deadline (plus the time to cancel a query
            // on the server), so what was measured is always kept.
            let archive = pitr_check::archive_of(config, &t.name);
            let findings = measure_target(
                t,
                key_tables,
                archive.as_ref(),
                &wanted,
                selection.explicit,
                deadline,
                budget,
            )
            .await;
            (t, findings, start.elapsed())
        }
    });
    let results = join_all(runs).await;

    Ok(results
        .into_iter()
        .map(|(target, findings, took)| {
            let mut checks = Vec::new();
            let mut skipped = Vec::new();
            for f in findings {
                match f {
                    Finding::Skipped(s) => skipped.push(s),
                    other => checks.push(judge_finding(
                        &config.health,
                        &selection.overrides,
                        target,
                        other,
                    )),
                }
            }
            for check in BACKUP_DIR_SHOWN {
                if !wanted(check) {
                    continue;
                }
                match measure_backup_dir(config, target, check) {
                    Some(j) => checks.push(overridden(j, &selection.overrides)),
                    None => {
                        let reason = "no enabled backup section for this target".to_string();
                        if selection.explicit {
                            checks.push(not_applicable(check, &reason));
                        } else {
                            skipped.push(Skipped { check, reason });
                        }
                    }
                }
            }
            TargetReport {
                target,
                status: worst(checks.iter().map(|j| j.status)),
                checks,
                skipped,
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

/// The command line's thresholds make sense with what they complete: a check without
/// thresholds (a fact) needs both sides, and warning comes before critical the way worse
/// goes, for every target.
fn validate_overrides(
    config: &Config,
    targets: &[Target],
    overrides: &Overrides,
) -> Result<(), ConfigError> {
    for (check, o) in &overrides.0 {
        let name = check.name();
        for target in targets {
            let base = threshold(&config.health, target, *check);
            let Some(t) = overrides.apply(*check, base) else {
                let missing = if o.warning.is_none() {
                    "--warning"
                } else {
                    "--critical"
                };
                return Err(ConfigError::new(format!(
                    "{name} has no thresholds of its own: give {missing} {name}=VALUE too"
                )));
            };
            let lower = check.def().lower_is_worse;
            let misordered = if lower {
                t.warning < t.critical
            } else {
                t.warning > t.critical
            };
            if misordered {
                let (way, word) = if lower {
                    ("lower", "below")
                } else {
                    ("higher", "above")
                };
                return Err(ConfigError::new(format!(
                    "{name}: warning {} is {word} critical {} (for {name}, {way} is worse){}",
                    t.warning,
                    t.critical,
                    if targets.len() > 1 {
                        format!(" on target `{}`", target.name)
                    } else {
                        String::new()
                    }
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

/// The thresholds WAL archiving is judged with, for a target: those of `wal_archiving` (the
/// age of the last archived file) and `wal_ready_files`, as for every check (`overrides`,
/// then the configuration, then the defaults). `pitr check` and the exporter use them too.
pub fn archiving_limits(
    h: &HealthSection,
    target: &Target,
    overrides: &Overrides,
) -> pitr_check::Limits {
    let of = |check: Check, default: Threshold| {
        overrides
            .apply(check, threshold(h, target, check))
            .unwrap_or(default)
    };
    pitr_check::Limits {
        age: of(Check::WalArchiving, pitr_check::DEFAULT_AGE),
        ready: of(Check::WalReadyFiles, pitr_check::DEFAULT_READY),
    }
}

/// One check, asked of the engine's catalogue through [`Conn::probe`].
struct Ask<'a> {
    check: Check,
    key_tables: &'a [TableRef],
    sight: &'a Sight,
    /// The target's first read of counters that are judged over an interval (Redis INFO
    /// stats), shared by the checks that need one so that the target waits only once.
    earlier: &'a redis::Earlier,
    /// How long this check may take (its share of `health.timeout`).
    share: Duration,
}

impl engine::Visitor for Ask<'_> {
    type Output = Answer;
    const WHAT: &'static str = "health checks";

    async fn postgres(self, conn: &mut engine::postgres::PgConn) -> Result<Answer> {
        postgres::measure(conn, self.check, self.key_tables, self.sight).await
    }

    async fn mysql(self, conn: &mut engine::mysql::MyConn) -> Result<Answer> {
        mysql::measure(conn, self.check, self.key_tables, self.sight).await
    }

    async fn mssql(self, conn: &mut engine::mssql::MsConn) -> Result<Answer> {
        mssql::measure(conn, self.check, self.key_tables, self.sight).await
    }

    async fn redis(self, conn: &mut engine::redis::RedisConn) -> Result<Answer> {
        redis::measure(conn, self.check, self.earlier, self.share).await
    }
}

/// How much of `health.timeout` one check may use at most: a third, so that one check
/// that hangs (a lock, a slow catalogue) leaves time for the others.
fn share_of(budget: Duration) -> Duration {
    budget / 3
}

/// How long past its share a check may take for its query to be cancelled on the server
/// before it is abandoned.
const CANCEL_GRACE: Duration = Duration::from_secs(1);

/// Connects as a probe session ([`engine::connect_probe`]: its lock waits end after the
/// target's `lock_timeout`), asks whether it sees every session, then measures the
/// connection and the server's checks one after the other, each through [`Conn::probe`]
/// within its share of the budget: a check that runs out of time is cancelled on the server
/// and UNKNOWN, and the next one runs. Only a target that cannot be reached or does not
/// answer a trivial query is CRITICAL.
#[allow(clippy::too_many_arguments)]
async fn measure_target(
    target: &Target,
    key_tables: &[TableRef],
    archive: Option<&crate::pitr::Archive>,
    wanted: &dyn Fn(Check) -> bool,
    explicit: bool,
    deadline: tokio::time::Instant,
    budget: Duration,
) -> Vec<Finding> {
    let budget_secs = budget.as_secs();
    let unreachable = |message: String| {
        Finding::Failed(Failed {
            check: Check::Connectivity,
            message,
            critical: true,
        })
    };
    let mut conn = match tokio::time::timeout_at(deadline, engine::connect_probe(target)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return vec![unreachable(format!("{e:#}"))],
        Err(_) => {
            return vec![unreachable(format!(
            "the checks did not finish within {budget_secs} s (health.timeout): still connecting"
        ))]
        }
    };
    let engine_name = conn.engine().as_str();
    let lock_timeout = target.connection.lock_timeout;
    let max_share = share_of(budget);
    let share = || {
        deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .min(max_share)
    };

    let sight: Sight = if CHECKS
        .iter()
        .any(|d| d.source == Source::Server && wanted(d.check))
    {
        match tokio::time::timeout(share(), conn.activity_visibility()).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(format!("{e:#}")),
            Err(_) => Err("the question did not get an answer in time".into()),
        }
    } else {
        Ok(Visibility::All)
    };

    let earlier = redis::Earlier::default();
    let mut out = Vec::new();
    // Why the remaining checks are not run, once one of them left the session unusable.
    let mut stopped: Option<String> = None;
    for def in CHECKS {
        let check = def.check;
        if !wanted(check) || matches!(def.source, Source::BackupDir | Source::WalArchive) {
            continue;
        }
        let critical = def.source == Source::Connection;
        let failed = |message: String| {
            Finding::Failed(Failed {
                check,
                message,
                critical,
            })
        };
        let share = share();
        if let Some(why) = &stopped {
            out.push(failed(why.clone()));
            continue;
        }
        if share.is_zero() {
            out.push(failed(format!(
                "not run: the target used up health.timeout ({budget_secs} s)"
            )));
            continue;
        }
        let ask = Ask {
            check,
            key_tables,
            sight: &sight,
            earlier: &earlier,
            share,
        };
        let answer = tokio::time::timeout(share + CANCEL_GRACE, conn.probe(share, ask)).await;
        let finding = match answer {
            Ok(Ok(Answer::Probe(p))) => Finding::Measured(p),
            Ok(Ok(Answer::Blind(why))) => failed(why),
            Ok(Ok(Answer::DoesNotApply(reason))) if explicit => Finding::Failed(Failed {
                check,
                message: format!("does not apply to {engine_name}: {reason}"),
                critical: false,
            }),
            Ok(Ok(Answer::DoesNotApply(reason))) => Finding::Skipped(Skipped {
                check,
                reason: reason.to_string(),
            }),
            Ok(Err(e)) => failed(why_failed(&e, share, budget, lock_timeout)),
            Err(_) => {
                // The server did not even take the cancellation: the session is in an
                // unknown state, ask it nothing more.
                stopped = Some(format!(
                    "not run: the query of {} could not be cancelled",
                    check.name()
                ));
                failed(format!(
                    "gave up after {} (its share of health.timeout, {budget_secs} s); the query could not be cancelled",
                    secs(share)
                ))
            }
        };
        // A server that does not answer a trivial query is unreachable: asked nothing else.
        let unreachable = critical && matches!(finding, Finding::Failed(_));
        out.push(finding);
        if unreachable {
            return out;
        }
    }
    let archiving: Vec<Check> = CHECKS
        .iter()
        .filter(|d| d.source == Source::WalArchive && wanted(d.check))
        .map(|d| d.check)
        .collect();
    if archiving.is_empty() {
        return out;
    }
    // A target without a `pitr:` section has no archive to judge: not listed, unless named.
    let Some(archive) = archive else {
        if explicit {
            for check in archiving {
                out.push(Finding::Failed(Failed {
                    check,
                    message: "does not apply: no `pitr:` section for this target".into(),
                    critical: false,
                }));
            }
        }
        return out;
    };
    let share = share();
    let failed = |message: String| -> Vec<Finding> {
        archiving
            .iter()
            .map(|&check| {
                Finding::Failed(Failed {
                    check,
                    message: message.clone(),
                    critical: false,
                })
            })
            .collect()
    };
    if let Some(why) = &stopped {
        out.extend(failed(why.clone()));
        return out;
    }
    if share.is_zero() {
        out.extend(failed(format!(
            "not run: the target used up health.timeout ({budget_secs} s)"
        )));
        return out;
    }
    let gather = pitr_check::Gather { archive };
    match tokio::time::timeout(share + CANCEL_GRACE, conn.probe(share, gather)).await {
        Ok(Ok(facts)) => {
            let facts = Box::new(facts);
            out.extend(
                archiving
                    .iter()
                    .map(|&check| Finding::Archiving(check, facts.clone())),
            );
        }
        Ok(Err(e)) => out.extend(failed(why_failed(&e, share, budget, lock_timeout))),
        Err(_) => out.extend(failed(format!(
            "gave up after {} (its share of health.timeout, {budget_secs} s); the query could not be cancelled",
            secs(share)
        ))),
    }
    out
}

/// A check's failure as a monitoring message: a lock wait given up names the object, a
/// query past its share of the budget says it was cancelled; anything else is the error.
fn why_failed(
    e: &anyhow::Error,
    share: Duration,
    budget: Duration,
    lock_timeout: Duration,
) -> String {
    if let Some(t) = e.downcast_ref::<engine::ProbeTimedOut>() {
        return format!(
            "no answer within {} (its share of health.timeout, {} s){}",
            secs(share),
            budget.as_secs(),
            if t.cancelled {
                "; the query was cancelled on the server"
            } else {
                ""
            }
        );
    }
    if gave_up_on_a_lock(e) {
        let what = e
            .downcast_ref::<Reading>()
            .map_or_else(|| "an object it reads".to_string(), |r| r.0.clone());
        return format!(
            "{what} is locked by another session; gave up after {} (connection.lock_timeout)",
            secs(lock_timeout)
        );
    }
    format!("{e:#}")
}

/// A lock wait the probe session gave up after its `lock_timeout`: PostgreSQL SQLSTATE
/// 55P03 (lock_not_available), MySQL/MariaDB error 1205 (lock wait timeout exceeded, for
/// row and metadata locks alike), SQL Server error 1222 (lock request time out period
/// exceeded).
fn gave_up_on_a_lock(e: &anyhow::Error) -> bool {
    engine::DbError::find(e).is_some_and(|d| {
        d.sqlstate.as_deref() == Some("55P03")
            || (d.engine == EngineKind::Mysql && d.number == Some(1205))
            || (d.engine == EngineKind::Mssql && d.number == Some(1222))
    })
}

/// `2 s`, `0.3 s`: a duration for messages.
fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if (s - s.round()).abs() < 0.05 {
        format!("{} s", s.round())
    } else {
        format!("{s:.1} s")
    }
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

/// A finding judged against its threshold (the command line's, else the configured one,
/// else the default).
fn judge_finding(h: &HealthSection, overrides: &Overrides, target: &Target, f: Finding) -> Judged {
    match f {
        Finding::Measured(p) => {
            let th = overrides.apply(p.check, threshold(h, target, p.check));
            let status = judge(p.check, p.value, th);
            let status = worst([status, p.at_least.unwrap_or(Status::Ok)]);
            let unit = p.unit();
            // What it could not see may be worse than what it saw: never OK then.
            let (status, message) = match p.unseen {
                None => (status, p.message),
                Some(u) if status == Status::Ok => {
                    (Status::Unknown, format!("{}; but {u}", p.message))
                }
                Some(u) => (status, format!("{}; and {u}", p.message)),
            };
            Judged {
                status,
                check: p.check,
                value: p.value,
                unit,
                message,
                threshold: th,
            }
        }
        // A target that cannot be reached or does not answer is CRITICAL; a check that
        // cannot be evaluated (a grant, a lock, its share of time) is UNKNOWN.
        Finding::Failed(f) => Judged {
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
        Finding::Skipped(s) => not_applicable(s.check, &s.reason),
        Finding::Archiving(check, facts) => {
            archiving_judged(check, &facts, &archiving_limits(h, target, overrides))
        }
    }
}

/// A WAL archiving check from the judgement `pitr check` makes: `wal_ready_files` is its
/// backlog line; `wal_archiving` all the others, the worst of them, valued by the age of
/// the last archived file.
fn archiving_judged(
    check: Check,
    facts: &pitr_check::Facts,
    limits: &pitr_check::Limits,
) -> Judged {
    use pitr_check::Facet;
    let lines = pitr_check::judge(facts, limits);
    let of = |facet: Facet| lines.iter().find(|l| l.facet == facet);
    let (mine, value, threshold): (Vec<&pitr_check::Line>, _, _) = if check == Check::WalReadyFiles
    {
        let ready = of(Facet::ReadyFiles);
        (
            ready.into_iter().collect(),
            ready.and_then(|l| l.value),
            Some(limits.ready),
        )
    } else {
        (
            lines
                .iter()
                .filter(|l| l.facet != Facet::ReadyFiles)
                .collect(),
            of(Facet::LastArchived).and_then(|l| l.value),
            Some(limits.age),
        )
    };
    let status = worst(mine.iter().map(|l| l.status));
    let message = if status == Status::Ok {
        // All is well: the age line says the most.
        mine.iter()
            .find(|l| l.facet == Facet::LastArchived || l.facet == Facet::ReadyFiles)
            .map(|l| l.message.clone())
            .unwrap_or_default()
    } else {
        mine.iter()
            .filter(|l| l.status != Status::Ok)
            .map(|l| l.message.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    };
    Judged {
        check,
        status,
        value,
        unit: value.map(|_| check.def().unit),
        message,
        threshold,
    }
}

/// A check asked for by name that does not apply: UNKNOWN, with the reason.
fn not_applicable(check: Check, reason: &str) -> Judged {
    Judged {
        check,
        status: Status::Unknown,
        value: None,
        unit: None,
        message: format!("does not apply: {reason}"),
        threshold: None,
    }
}

/// A backup directory check judged again with the command line's thresholds, if any.
fn overridden(mut j: Judged, overrides: &Overrides) -> Judged {
    if overrides.get(j.check).is_none() {
        return j;
    }
    j.threshold = overrides.apply(j.check, j.threshold.or(j.check.def().default_threshold));
    if j.value.is_some() {
        j.status = judge(j.check, j.value, j.threshold);
    }
    j
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
        | Check::Sequences
        | Check::Replication
        | Check::Vacuum
        | Check::Analyze
        | Check::Memory
        | Check::Fragmentation
        | Check::HitRate
        | Check::Evictions
        | Check::RejectedConnections
        | Check::Persistence
        | Check::WalArchiving
        | Check::WalReadyFiles => None,
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
    match backup::entries_of(config, target, cfg, Utc::now()) {
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
                j.message = format!("no backup in {}", backup::location_of(config, cfg));
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
    // A bucket has no filesystem to measure: the check is not shown.
    if backup::remote::remote_dir(cfg).is_some() {
        return None;
    }
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
             database_size, table_sizes, cache_hit, wraparound, sequences, replication, vacuum, \
             analyze, memory, fragmentation, hit_rate, evictions, rejected_connections, \
             persistence, wal_archiving, wal_ready_files, \
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
        assert_eq!(lower, ["cache_hit", "hit_rate", "backup_dir_space"]);
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
    fn command_line_thresholds_complete_the_configured_ones() {
        let mut o = Overrides::default();
        let base = Check::Connections.def().default_threshold;
        assert_eq!(o.apply(Check::Connections, base), base);
        o.set(Check::Connections, Some(70.0), None);
        assert_eq!(
            o.apply(Check::Connections, base),
            Some(Threshold {
                warning: 70.0,
                critical: 95.0
            })
        );
        o.set(Check::Connections, None, Some(90.0));
        o.set(Check::Connections, Some(60.0), None);
        assert_eq!(
            o.get(Check::Connections),
            Some(Override {
                warning: Some(60.0),
                critical: Some(90.0)
            })
        );
        // A fact has no thresholds: both sides are needed to judge it.
        o.set(Check::DatabaseSize, Some(1e9), None);
        assert_eq!(o.apply(Check::DatabaseSize, None), None);
        o.set(Check::DatabaseSize, None, Some(2e9));
        assert_eq!(
            o.apply(Check::DatabaseSize, None),
            Some(Threshold {
                warning: 1e9,
                critical: 2e9
            })
        );
    }

    fn target() -> Target {
        use crate::config::{Connection, PasswordSource, SslMode};
        Target {
            name: "pg".into(),
            engine: EngineKind::Postgres,
            enabled: true,
            config_file: "config_postgres.yml".into(),
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

    #[test]
    fn what_a_probe_could_not_see_keeps_it_from_being_ok() {
        let h = HealthSection::default();
        let t = target();
        let none = Overrides::default();
        let hidden = Some("2 sequence(s) this role may not read".to_string());
        let p = Probe::new(Check::Sequences, 10.0, "s has used 10% of its range").unseen(hidden);
        let j = judge_finding(&h, &none, &t, Finding::Measured(p.clone()));
        assert_eq!(j.status, Status::Unknown);
        assert_eq!(
            j.message,
            "s has used 10% of its range; but 2 sequence(s) this role may not read"
        );
        // What it saw is already critical: that is reported as such.
        let p = Probe {
            value: Some(95.0),
            ..p
        };
        let j = judge_finding(&h, &none, &t, Finding::Measured(p));
        assert_eq!(j.status, Status::Critical);
        // The command line's thresholds judge it.
        let mut o = Overrides::default();
        o.set(Check::Sequences, Some(5.0), Some(8.0));
        let p = Probe::new(Check::Sequences, 6.0, "six");
        let j = judge_finding(&h, &o, &t, Finding::Measured(p));
        assert_eq!(j.status, Status::Warning);
        assert_eq!(j.threshold.unwrap().critical, 8.0);
    }

    #[test]
    fn a_session_that_sees_only_its_own_names_the_grant() {
        assert!(unless_all_seen(&Ok(Visibility::All)).is_none());
        let own = Ok(Visibility::OwnOnly {
            missing: "GRANT pg_monitor TO mairie".into(),
        });
        match unless_all_seen(&own) {
            Some(Answer::Blind(m)) => {
                assert_eq!(m, "cannot see other sessions: GRANT pg_monitor TO mairie")
            }
            other => panic!("{other:?}"),
        }
        match unless_all_seen(&Err("permission denied".into())) {
            Some(Answer::Blind(m)) => assert!(m.contains("permission denied"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_timed_out_probe_and_a_lock_given_up_say_so() {
        let budget = Duration::from_secs(10);
        let share = share_of(budget);
        let lock = Duration::from_secs(2);
        let e: anyhow::Error = engine::ProbeTimedOut {
            budget_ms: share.as_millis(),
            cancelled: true,
        }
        .into();
        assert_eq!(
            why_failed(&e, share, budget, lock),
            "no answer within 3.3 s (its share of health.timeout, 10 s); the query was cancelled on the server"
        );
        let db = engine::DbError::new(
            EngineKind::Postgres,
            "canceling statement due to lock timeout".into(),
            std::io::Error::other("x"),
        )
        .with_sqlstate("55P03");
        let e = anyhow::Error::new(db).context(Reading("table metier.citoyens".into()));
        assert_eq!(
            why_failed(&e, share, budget, lock),
            "table metier.citoyens is locked by another session; gave up after 2 s (connection.lock_timeout)"
        );
        let my = engine::DbError::new(
            EngineKind::Mysql,
            "ERROR 1205 (HY000): Lock wait timeout exceeded".into(),
            std::io::Error::other("x"),
        )
        .with_number(1205);
        let e = anyhow::Error::new(my);
        assert_eq!(
            why_failed(&e, share, budget, Duration::from_millis(1500)),
            "an object it reads is locked by another session; gave up after 1.5 s (connection.lock_timeout)"
        );
        let other: anyhow::Error = anyhow::anyhow!("permission denied for table x");
        assert_eq!(
            why_failed(&other, share, budget, lock),
            "permission denied for table x"
        );
    }

    #[test]
    fn the_archiving_checks_read_the_judgement_of_pitr_check() {
        use crate::engine::postgres::pitr::{ArchiverState, ReadyFiles};
        use pitr_check::{ArchiveLook, Facts};
        let mut facts = Facts {
            archive_dir: "/srv/wal".into(),
            server: ArchiverState {
                user: "mairie".into(),
                wal_segment_size: 16 << 20,
                current_wal: Some("000000010000000000000009".into()),
                archive_mode: Some("on".into()),
                archive_command: Some("mairie-dba wal push %p".into()),
                last_archived_wal: Some("000000010000000000000007".into()),
                last_archived_age: Some(1200.0),
                last_archived_time: Some("2026-11-21T02:00:00Z".into()),
                ..ArchiverState::default()
            },
            ready: ReadyFiles::Counted {
                count: 12,
                oldest: Some("000000010000000000000008".into()),
                oldest_age: Some(600.0),
            },
            archive: ArchiveLook::Looked {
                last: "000000010000000000000007".into(),
                checked: vec!["000000010000000000000007".into()],
                missing: vec![],
                twice: vec![],
            },
        };
        let h = HealthSection::default();
        let t = target();
        let none = Overrides::default();
        let limits = archiving_limits(&h, &t, &none);
        assert_eq!(limits, pitr_check::Limits::default());
        let j = archiving_judged(Check::WalArchiving, &facts, &limits);
        assert_eq!(j.status, Status::Warning, "{j:?}");
        assert_eq!(j.value, Some(1200.0));
        assert_eq!(j.unit, Some(Unit::Seconds));
        assert!(j.message.contains("the server is writing"), "{}", j.message);
        let r = archiving_judged(Check::WalReadyFiles, &facts, &limits);
        assert_eq!((r.status, r.value), (Status::Warning, Some(12.0)));
        // --warning / --critical, and the configuration, reach the judgement.
        let mut o = Overrides::default();
        o.set(Check::WalArchiving, Some(1800.0), None);
        o.set(Check::WalReadyFiles, Some(20.0), Some(50.0));
        let limits = archiving_limits(&h, &t, &o);
        assert_eq!(limits.age.warning, 1800.0);
        assert_eq!(limits.age.critical, 3600.0);
        let j = archiving_judged(Check::WalArchiving, &facts, &limits);
        assert_eq!(j.status, Status::Ok);
        assert!(
            j.message
                .starts_with("000000010000000000000007 archived 20 min ago"),
            "{}",
            j.message
        );
        assert_eq!(
            archiving_judged(Check::WalReadyFiles, &facts, &limits).status,
            Status::Ok
        );
        let mut configured = HealthSection::default();
        configured.targets.insert(
            "pg".into(),
            [(
                "wal_ready_files".to_string(),
                Threshold {
                    warning: 5.0,
                    critical: 11.0,
                },
            )]
            .into_iter()
            .collect(),
        );
        let limits = archiving_limits(&configured, &t, &none);
        assert_eq!(
            archiving_judged(Check::WalReadyFiles, &facts, &limits).status,
            Status::Critical
        );
        // Every problem but the backlog is wal_archiving's, the worst first in status.
        facts.archive = ArchiveLook::Looked {
            last: "000000010000000000000007".into(),
            checked: vec!["000000010000000000000007".into()],
            missing: vec!["000000010000000000000007".into()],
            twice: vec![],
        };
        let j = archiving_judged(
            Check::WalArchiving,
            &facts,
            &archiving_limits(&h, &t, &none),
        );
        assert_eq!(j.status, Status::Critical);
        assert!(
            j.message.contains("the server is writing")
                && j.message
                    .contains("000000010000000000000007 missing from the archive /srv/wal"),
            "{}",
            j.message
        );
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
        assert_eq!(secs(Duration::from_secs(2)), "2 s");
        assert_eq!(secs(Duration::from_millis(333)), "0.3 s");
        assert_eq!(secs(Duration::from_millis(3333)), "3.3 s");
    }
}
