//! `schema apply | status | repair | baseline | new`: versioned migrations
//! (`sql/<engine>/V<version>__<name>.sql`) and repeatable ones (`R__<name>.sql`).
//!
//! The plan (what is applied, pending, modified, outdated, failed, missing or covered by a
//! baseline) is computed without the database from the files and the history rows, so it is
//! the same for every engine and is unit-tested here; the engine only runs SQL, takes the
//! lock and keeps the history table. `schema new` only writes a file: it never connects.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::ser::SerializeMap;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::catalog::{AppliedMigration, HistoryKind, Migration};
use crate::cli::{MigrationsArgs, SchemaCommand};
use crate::cmd::{each, failure, PerTarget};
use crate::config::{EngineKind, Target};
use crate::engine::Driver;
use crate::engine::{self};
use crate::error::ConfigError;
use crate::output::nagios::{NagiosLine, PerfData, Uom};
use crate::output::{Outcome, Report, Status, TableBlock};
use crate::Ctx;

/// The first-line marker of a migration whose one statement must run outside a transaction.
pub const NO_TRANSACTION: &str = "-- mairie-dba: no-transaction";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Applied,
    Pending,
    /// A versioned migration applied, but the file changed since.
    Modified,
    /// A repeatable migration applied, but the file changed since: `apply` runs it again.
    Outdated,
    /// The last attempt failed.
    Failed,
    /// In the history, but the file is gone.
    Missing,
    /// The baseline row, or a version at or below it that was never run: taken as applied.
    Baseline,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Applied => "applied",
            State::Pending => "pending",
            State::Modified => "modified",
            State::Outdated => "outdated",
            State::Failed => "failed",
            State::Missing => "missing",
            State::Baseline => "baseline",
        }
    }

    /// What `status --check` reports: the schema is not what the files say.
    fn drifts(self) -> bool {
        matches!(
            self,
            State::Pending | State::Modified | State::Outdated | State::Failed
        )
    }
}

/// What a plan entry is keyed by: versions first, in order, then repeatable files by name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    Version(i64),
    Repeatable(String),
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub key: Key,
    pub state: State,
    pub file: Option<Migration>,
    /// The latest history row (a repeatable migration may have several).
    pub applied: Option<AppliedMigration>,
}

impl Entry {
    fn version(&self) -> Option<i64> {
        match self.key {
            Key::Version(v) => Some(v),
            Key::Repeatable(_) => None,
        }
    }
}

pub async fn run(cmd: &SchemaCommand, ctx: &Ctx) -> Result<Outcome> {
    let args = match cmd {
        SchemaCommand::New {
            migrations,
            name,
            repeatable,
            no_transaction,
        } => return new_files(migrations, name, *repeatable, *no_transaction, ctx),
        SchemaCommand::Apply { migrations, .. }
        | SchemaCommand::Status { migrations, .. }
        | SchemaCommand::Repair { migrations, .. }
        | SchemaCommand::Baseline { migrations, .. } => migrations,
    };
    let check = matches!(cmd, SchemaCommand::Status { check: true, .. });
    // Every target's migrations are read (and checked) before any runs: a bad directory or
    // file stops the command before it has changed anything.
    let work = ctx
        .targets
        .iter()
        .map(|target| {
            let dir = migrations_dir(args, ctx, target);
            Ok((target, discover(&dir, target.engine)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let verbose = ctx.global.verbose;
    let mut targets = each(
        ctx,
        work,
        |(t, _)| t,
        |(target, migrations)| async move {
            match cmd {
                SchemaCommand::Apply { dry_run, .. } => Ok(TargetItem::Apply(
                    apply_target(target, &migrations, *dry_run, verbose, ctx).await?,
                )),
                SchemaCommand::Status { .. } => Ok(TargetItem::Status(
                    status_target(target, &migrations, check).await?,
                )),
                SchemaCommand::Repair { dry_run, .. } => Ok(TargetItem::Repair(
                    repair_target(target, &migrations, *dry_run, ctx).await?,
                )),
                SchemaCommand::Baseline {
                    version,
                    description,
                    ..
                } => Ok(TargetItem::Baseline(
                    baseline_target(target, &migrations, *version, description, ctx).await?,
                )),
                SchemaCommand::New { .. } => unreachable!("handled above"),
            }
        },
    )
    .await;
    if check {
        // A check's unreachable target is CRITICAL, in its own entry too.
        for t in &mut targets {
            if let PerTarget::Failed(f) = t {
                f.status = Status::Critical.as_str();
            }
        }
    }
    Ok(Outcome::from_report(&SchemaReport { targets, check }))
}

/// What a schema command did or found, target by target.
struct SchemaReport {
    targets: Vec<PerTarget<TargetItem>>,
    /// `status --check`: a Nagios-style check rather than an operation.
    check: bool,
}

#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
enum TargetItem {
    Status(StatusDone),
    Apply(ApplyDone),
    Repair(RepairDone),
    Baseline(BaselineDone),
}

impl TargetItem {
    fn failed(&self) -> bool {
        matches!(self, TargetItem::Apply(a) if a.failed.is_some())
    }
}

/// `schema status` on one target: each migration's state.
#[derive(Debug, serde::Serialize)]
struct StatusDone {
    target: String,
    #[serde(skip)]
    engine: EngineKind,
    /// `success`; with `--check`, `ok` or `warning`.
    status: &'static str,
    migrations: Vec<MigrationState>,
}

/// One line of `schema status`: a migration file, a history row, or both.
#[derive(Debug, serde::Serialize)]
struct MigrationState {
    /// None for a repeatable migration.
    version: Option<i64>,
    kind: &'static str,
    description: String,
    file: Option<String>,
    state: State,
    checksum: Option<String>,
    applied_checksum: Option<String>,
    #[serde(serialize_with = "rfc3339_secs")]
    applied_at: Option<DateTime<Utc>>,
    execution_ms: Option<i64>,
    applied_by: Option<String>,
}

/// `schema apply` on one target: the migrations it applied, or with `--dry-run` would apply,
/// and the one that failed, if one did. Serialized by hand: the list's key is `pending` in
/// a dry run, `applied` otherwise.
#[derive(Debug)]
struct ApplyDone {
    target: String,
    engine: EngineKind,
    /// The engine rolls back a failed migration's DDL.
    transactional: bool,
    dry_run: bool,
    migrations: Vec<ApplyItem>,
    failed: Option<ApplyFailed>,
}

#[derive(Debug, serde::Serialize)]
struct ApplyItem {
    version: Option<i64>,
    kind: &'static str,
    description: String,
    file: String,
    checksum: String,
    no_transaction: bool,
    /// None in a dry run.
    execution_ms: Option<i64>,
    /// With `--dry-run -v`: the SQL, statement by statement.
    #[serde(skip_serializing_if = "Option::is_none")]
    statements: Option<Vec<Statement>>,
}

#[derive(Debug, serde::Serialize)]
struct Statement {
    line: usize,
    sql: String,
}

/// The migration a run stopped at.
#[derive(Debug, serde::Serialize)]
struct ApplyFailed {
    version: Option<i64>,
    file: String,
    error: String,
}

impl serde::Serialize for ApplyDone {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("target", &self.target)?;
        let status = if self.failed.is_some() {
            "failed"
        } else {
            "success"
        };
        m.serialize_entry("status", status)?;
        m.serialize_entry("dry_run", &self.dry_run)?;
        let key = if self.dry_run { "pending" } else { "applied" };
        m.serialize_entry(key, &self.migrations)?;
        if let Some(f) = &self.failed {
            m.serialize_entry("failed", f)?;
            m.serialize_entry("error", &f.error)?;
        }
        m.end()
    }
}

/// `schema repair` on one target: what it changed, or with `--dry-run` would change.
#[derive(Debug, serde::Serialize)]
struct RepairDone {
    target: String,
    #[serde(skip)]
    engine: EngineKind,
    status: &'static str,
    history_table: &'static str,
    dry_run: bool,
    changes: Vec<RepairChange>,
}

#[derive(Debug, serde::Serialize)]
struct RepairChange {
    /// `removed_failed_row` or `realigned_checksum`.
    action: &'static str,
    version: Option<i64>,
    file: String,
    /// The checksum the row held.
    checksum: String,
    /// The file's checksum, for a realigned row.
    new_checksum: Option<String>,
}

/// `schema baseline` on one target.
#[derive(Debug, serde::Serialize)]
struct BaselineDone {
    target: String,
    #[serde(skip)]
    engine: EngineKind,
    status: &'static str,
    history_table: &'static str,
    version: i64,
    description: String,
    /// The migration files now taken as applied.
    covered: Vec<String>,
}

impl serde::Serialize for State {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A history timestamp in the JSON: RFC 3339, whole seconds, `Z`.
fn rfc3339_secs<S: serde::Serializer>(
    t: &Option<DateTime<Utc>>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        None => s.serialize_none(),
    }
}

impl SchemaReport {
    /// `status --check`: one target's verdict.
    fn check_status(t: &PerTarget<TargetItem>) -> Status {
        match t {
            PerTarget::Failed(_) => Status::Critical,
            PerTarget::Done(TargetItem::Status(s)) if s.drifted() => Status::Warning,
            PerTarget::Done(_) => Status::Ok,
        }
    }
}

impl Report for SchemaReport {
    fn status(&self) -> Status {
        if self.check {
            return self
                .targets
                .iter()
                .map(Self::check_status)
                .max()
                .unwrap_or(Status::Ok);
        }
        Status::of_operation(self.targets.iter().any(|t| match t {
            PerTarget::Failed(_) => true,
            PerTarget::Done(d) => d.failed(),
        }))
    }

    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("targets".into(), json!(self.targets));
        m
    }

    fn tables(&self) -> Vec<TableBlock> {
        self.targets
            .iter()
            .filter_map(PerTarget::done)
            .map(|t| match t {
                TargetItem::Status(s) => s.table(),
                TargetItem::Apply(a) => a.table(),
                TargetItem::Repair(r) => r.table(),
                TargetItem::Baseline(b) => b.table(),
            })
            .collect()
    }

    fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .targets
            .iter()
            .filter_map(PerTarget::done)
            .flat_map(|t| match t {
                TargetItem::Apply(a) => a.sql_lines(),
                _ => Vec::new(),
            })
            .collect();
        out.extend(self.targets.iter().map(|t| match t {
            PerTarget::Failed(f) => f.line(),
            PerTarget::Done(TargetItem::Status(s)) => s.summary(),
            PerTarget::Done(TargetItem::Apply(a)) => a.summary(),
            PerTarget::Done(TargetItem::Repair(r)) => r.summary(),
            PerTarget::Done(TargetItem::Baseline(b)) => b.summary(),
        }));
        out
    }

    fn nagios(&self) -> Option<String> {
        if !self.check {
            return None;
        }
        let mut parts = Vec::new();
        let mut perfdata = Vec::new();
        for t in &self.targets {
            match t {
                PerTarget::Failed(f) => parts.push(format!("{}: {}", f.target, f.error)),
                PerTarget::Done(TargetItem::Status(s)) => {
                    parts.push(s.check_message());
                    for state in [
                        State::Pending,
                        State::Modified,
                        State::Outdated,
                        State::Failed,
                    ] {
                        perfdata.push(PerfData {
                            label: format!("{}_{}", s.target, state.as_str()),
                            value: s.count(state) as f64,
                            uom: Uom::Number,
                            warning: None,
                            critical: None,
                        });
                    }
                }
                PerTarget::Done(_) => {}
            }
        }
        Some(
            NagiosLine {
                status: self.status(),
                message: parts.join("; "),
                perfdata,
            }
            .to_string(),
        )
    }
}

impl MigrationState {
    /// A planned entry as `schema status` shows it: the file's name and description, else
    /// the history's.
    fn of(e: &Entry) -> MigrationState {
        let h = e.applied.as_ref();
        let kind = match (&e.key, h.map(|h| h.kind)) {
            (_, Some(HistoryKind::Baseline)) => HistoryKind::Baseline,
            (Key::Version(_), _) => HistoryKind::Versioned,
            (Key::Repeatable(_), _) => HistoryKind::Repeatable,
        };
        MigrationState {
            version: e.version(),
            kind: kind.as_str(),
            description: e
                .file
                .as_ref()
                .map(|f| f.description.clone())
                .or_else(|| h.map(|h| h.description.clone()))
                .unwrap_or_default(),
            file: e
                .file
                .as_ref()
                .map(|f| f.script.clone())
                .or_else(|| h.map(|h| h.script.clone())),
            state: e.state,
            checksum: e.file.as_ref().map(|f| f.checksum.clone()),
            applied_checksum: h.map(|h| h.checksum.clone()),
            applied_at: h.map(|h| h.applied_at),
            execution_ms: h.map(|h| h.execution_ms),
            applied_by: h.map(|h| h.applied_by.clone()),
        }
    }
}

/// A version as a table shows it: `R` for a repeatable migration.
fn version_cell(v: Option<i64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "R".into())
}

impl StatusDone {
    fn table(&self) -> TableBlock {
        let mut table =
            TableBlock::new(["version", "description", "state", "applied at", "ms", "by"])
                .titled(format!("target {} ({})", self.target, self.engine));
        for m in &self.migrations {
            let state = match m.state {
                State::Outdated => "outdated (will re-apply)".to_string(),
                s => s.as_str().to_string(),
            };
            table.row([
                version_cell(m.version),
                m.description.clone(),
                state,
                m.applied_at
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default(),
                m.execution_ms.map(|ms| ms.to_string()).unwrap_or_default(),
                m.applied_by.clone().unwrap_or_default(),
            ]);
        }
        table
    }

    fn count(&self, s: State) -> usize {
        self.migrations.iter().filter(|m| m.state == s).count()
    }

    fn drifted(&self) -> bool {
        self.migrations.iter().any(|m| m.state.drifts())
    }

    fn summary(&self) -> String {
        let mut s = format!(
            "{}: {} applied, {} pending, {} modified, {} failed, {} missing",
            self.target,
            self.count(State::Applied),
            self.count(State::Pending),
            self.count(State::Modified),
            self.count(State::Failed),
            self.count(State::Missing)
        );
        for extra in [State::Outdated, State::Baseline] {
            let n = self.count(extra);
            if n > 0 {
                s.push_str(&format!(", {n} {}", extra.as_str()));
            }
        }
        s
    }

    /// `status --check`'s words for this target: what drifted, naming the files.
    fn check_message(&self) -> String {
        if !self.drifted() {
            return format!("{}: schema up to date", self.target);
        }
        let parts: Vec<String> = [
            State::Pending,
            State::Modified,
            State::Outdated,
            State::Failed,
        ]
        .into_iter()
        .filter_map(|state| {
            let files: Vec<&str> = self
                .migrations
                .iter()
                .filter(|m| m.state == state)
                .map(|m| m.file.as_deref().unwrap_or("?"))
                .collect();
            (!files.is_empty())
                .then(|| format!("{} {} ({})", files.len(), state.as_str(), files.join(", ")))
        })
        .collect();
        format!("{}: {}", self.target, parts.join(", "))
    }
}

impl ApplyDone {
    fn table(&self) -> TableBlock {
        let verb = if self.dry_run {
            "would apply"
        } else {
            "applied"
        };
        let mut table = TableBlock::new(["version", "description", "file", "ms"])
            .titled(format!("target {} ({}): {verb}", self.target, self.engine));
        for m in &self.migrations {
            table.row([
                version_cell(m.version),
                m.description.clone(),
                m.file.clone(),
                m.execution_ms.map(|t| t.to_string()).unwrap_or_default(),
            ]);
        }
        if let Some(f) = &self.failed {
            table.row([
                version_cell(f.version),
                String::new(),
                f.file.clone(),
                "FAILED".into(),
            ]);
        }
        table
    }

    /// With `--dry-run -v`: each migration's SQL as the engine's client would read it.
    fn sql_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for m in &self.migrations {
            let Some(statements) = &m.statements else {
                continue;
            };
            let how = if m.no_transaction {
                "alone, outside a transaction"
            } else if self.transactional {
                "in one transaction"
            } else {
                "statement by statement, each DDL statement committed as it runs"
            };
            out.push(format!("-- {}: {} ({how})", self.target, m.file));
            for s in statements {
                out.push(format!(
                    "-- {}:{}\n{}",
                    m.file,
                    s.line,
                    engine::statement_text(self.engine, &s.sql)
                ));
            }
        }
        out
    }

    fn summary(&self) -> String {
        if let Some(f) = &self.failed {
            return format!(
                "{}: {} migration(s) applied, then {} FAILED: {}",
                self.target,
                self.migrations.len(),
                f.file,
                f.error
            );
        }
        match (self.migrations.len(), self.dry_run) {
            (0, _) => format!("{}: schema is up to date", self.target),
            (n, true) => format!(
                "{}: {n} migration(s) would be applied (dry run)",
                self.target
            ),
            (n, false) => format!("{}: {n} migration(s) applied", self.target),
        }
    }
}

impl RepairDone {
    fn table(&self) -> TableBlock {
        let verb = if self.dry_run {
            "would change"
        } else {
            "changed"
        };
        let mut table = TableBlock::new(["action", "version", "file", "checksum"]).titled(format!(
            "target {} ({}): {} {verb}",
            self.target, self.engine, self.history_table
        ));
        for c in &self.changes {
            let checksum = match &c.new_checksum {
                Some(new) => format!("{} -> {}", short(&c.checksum), short(new)),
                None => short(&c.checksum).to_string(),
            };
            table.row([
                c.action.replace('_', " "),
                version_cell(c.version),
                c.file.clone(),
                checksum,
            ]);
        }
        table
    }

    fn summary(&self) -> String {
        let removed = self
            .changes
            .iter()
            .filter(|c| c.action == "removed_failed_row")
            .count();
        let realigned = self.changes.len() - removed;
        if self.changes.is_empty() {
            return format!("{}: {} needs no repair", self.target, self.history_table);
        }
        let (remove, realign) = if self.dry_run {
            ("would remove", "would realign")
        } else {
            ("removed", "realigned")
        };
        format!(
            "{}: {remove} {removed} failed row(s) and {realign} {realigned} checksum(s) in {}",
            self.target, self.history_table
        )
    }
}

impl BaselineDone {
    fn table(&self) -> TableBlock {
        let mut table = TableBlock::new(["file"]).titled(format!(
            "target {} ({}): taken as applied by the baseline at version {}",
            self.target, self.engine, self.version
        ));
        for f in &self.covered {
            table.row([f.clone()]);
        }
        table
    }

    fn summary(&self) -> String {
        format!(
            "{}: baseline at version {} recorded in {}; migrations up to version {} will never run",
            self.target, self.version, self.history_table, self.version
        )
    }
}

fn short(sum: &str) -> &str {
    &sum[..12.min(sum.len())]
}

fn migrations_dir(args: &MigrationsArgs, ctx: &Ctx, target: &Target) -> PathBuf {
    migrations_root(args, ctx).join(target.engine.as_str())
}

fn migrations_root(args: &MigrationsArgs, ctx: &Ctx) -> PathBuf {
    args.migrations_dir
        .clone()
        .unwrap_or_else(|| ctx.config.migrations_dir.clone())
}

/// Reads `V<version>__<description>.sql` and `R__<description>.sql` files: versioned ones
/// sorted by version, then repeatable ones by name. A `no-transaction` file must hold exactly
/// one of the engine's statements (batches on SQL Server).
pub fn discover(dir: &Path, engine: EngineKind) -> Result<Vec<Migration>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        ConfigError::new(format!(
            "cannot read migrations directory {}: {e} (use --migrations-dir)",
            dir.display()
        ))
    })?;
    let mut by_version: BTreeMap<i64, Migration> = BTreeMap::new();
    let mut repeatable: BTreeMap<String, Migration> = BTreeMap::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".sql") || !path.is_file() {
            continue;
        }
        let (version, description) = parse_name(&name).ok_or_else(|| {
            ConfigError::new(format!(
                "{}: a migration file must be named V<version>__<description>.sql (e.g. V004__add_index.sql) \
                 or R__<description>.sql (repeatable)",
                path.display()
            ))
        })?;
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let sql = String::from_utf8(bytes.clone())
            .map_err(|e| anyhow::anyhow!("{}: not UTF-8 ({e})", path.display()))?;
        let no_transaction = no_transaction_marker(&path, &sql)?;
        if no_transaction {
            check_single_statement(&path, &sql, engine)?;
        }
        let m = Migration {
            version,
            description,
            script: name.clone(),
            path: path.clone(),
            checksum: hex::encode(Sha256::digest(&bytes)),
            sql,
            no_transaction,
        };
        match version {
            Some(v) => {
                if let Some(other) = by_version.insert(v, m) {
                    return Err(ConfigError::new(format!(
                        "{} and {} have the same version {v}",
                        other.path.display(),
                        path.display()
                    ))
                    .into());
                }
            }
            None => {
                repeatable.insert(name, m);
            }
        }
    }
    Ok(by_version
        .into_values()
        .chain(repeatable.into_values())
        .collect())
}

/// `V005__add_index.sql` -> (Some(5), "add index"); `R__views.sql` -> (None, "views").
fn parse_name(name: &str) -> Option<(Option<i64>, String)> {
    let stem = name.strip_suffix(".sql")?;
    if let Some(d) = stem.strip_prefix("R__") {
        return (!d.is_empty()).then(|| (None, d.replace('_', " ")));
    }
    let (v, d) = stem.strip_prefix('V')?.split_once("__")?;
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) || d.is_empty() {
        return None;
    }
    Some((Some(v.parse().ok()?), d.replace('_', " ")))
}

/// Whether the comment lines at the top of a file hold [`NO_TRANSACTION`]. Any other
/// `-- mairie-dba:` directive there is refused, naming the line: a misspelt marker must not
/// silently run the file in a transaction.
fn no_transaction_marker(path: &Path, sql: &str) -> Result<bool> {
    for (i, line) in sql.lines().enumerate() {
        let t = line.trim().trim_start_matches('\u{feff}');
        if t.is_empty() {
            continue;
        }
        let Some(comment) = t.strip_prefix("--") else {
            break;
        };
        let Some(directive) = comment.trim().strip_prefix("mairie-dba:") else {
            continue;
        };
        if directive.trim().eq_ignore_ascii_case("no-transaction") {
            return Ok(true);
        }
        return Err(ConfigError::new(format!(
            "{}:{}: unknown directive `{}` (the only one is `{NO_TRANSACTION}`)",
            path.display(),
            i + 1,
            t
        ))
        .into());
    }
    Ok(false)
}

/// A `no-transaction` file holds one statement at most (none: a file just made by
/// `schema new`, which runs as a no-op).
fn check_single_statement(path: &Path, sql: &str, engine: EngineKind) -> Result<()> {
    let pieces = engine::split_script(engine, sql);
    if pieces.len() <= 1 {
        return Ok(());
    }
    let what = if engine == EngineKind::Mssql {
        "batch"
    } else {
        "statement"
    };
    let lines = pieces
        .iter()
        .map(|p| p.line.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Err(ConfigError::new(format!(
        "{}: a `{NO_TRANSACTION}` migration must hold exactly one {what}, it holds {} (lines {lines}): \
         put each in its own file",
        path.display(),
        pieces.len()
    ))
    .into())
}

/// Lines up the files with the history.
pub fn plan(files: &[Migration], history: &[AppliedMigration]) -> Vec<Entry> {
    let mut out: BTreeMap<Key, Entry> = BTreeMap::new();
    for f in files {
        let key = match f.version {
            Some(v) => Key::Version(v),
            None => Key::Repeatable(f.script.clone()),
        };
        out.insert(
            key.clone(),
            Entry {
                key,
                state: State::Pending,
                file: Some(f.clone()),
                applied: None,
            },
        );
    }
    let mut rows: Vec<&AppliedMigration> = history.iter().collect();
    rows.sort_by_key(|h| h.rank);
    let mut baseline: Option<i64> = None;
    // Rows in the order written: a repeatable migration's latest row wins.
    for h in rows {
        let key = match (h.kind, h.version) {
            (HistoryKind::Repeatable, _) | (_, None) => Key::Repeatable(h.script.clone()),
            (_, Some(v)) => Key::Version(v),
        };
        let e = out.entry(key.clone()).or_insert_with(|| Entry {
            key,
            state: State::Missing,
            file: None,
            applied: None,
        });
        e.state = match (&e.file, h.kind) {
            (_, HistoryKind::Baseline) => {
                baseline = baseline.max(h.version);
                State::Baseline
            }
            (None, _) => State::Missing,
            (Some(_), _) if !h.success => State::Failed,
            (Some(f), HistoryKind::Repeatable) if f.checksum != h.checksum => State::Outdated,
            (Some(f), _) if f.checksum != h.checksum => State::Modified,
            (Some(_), _) => State::Applied,
        };
        e.applied = Some(h.clone());
    }
    if let Some(b) = baseline {
        for e in out.values_mut() {
            if e.state == State::Pending && matches!(e.key, Key::Version(v) if v <= b) {
                e.state = State::Baseline;
            }
        }
    }
    out.into_values().collect()
}

/// What `apply` may run, or why it must not run anything. `failed_blocks`: the engine does
/// not roll back DDL, so any failed migration may have left work half-done; a failed
/// `no-transaction` migration blocks on every engine, for the same reason.
pub fn runnable(
    entries: &[Entry],
    failed_blocks: bool,
    history_table: &str,
) -> Result<Vec<Migration>> {
    let mut problems = Vec::new();
    let blocks = |f: &Migration| failed_blocks || f.no_transaction;
    for e in entries {
        match (e.state, &e.file, &e.applied) {
            (State::Modified, Some(f), Some(h)) => problems.push(format!(
                "{} was modified after it was applied on {} (checksum then {}, now {}): restore the \
                 file and put the change in a new migration, or if the change is meant to be, run \
                 `mairie-dba schema repair` to record the new checksum in {history_table}",
                f.path.display(),
                h.applied_at.format("%Y-%m-%d %H:%M UTC"),
                short(&h.checksum),
                short(&f.checksum)
            )),
            (State::Failed, Some(f), Some(h)) if blocks(f) => {
                let why = if f.no_transaction {
                    "outside a transaction (no-transaction), so nothing of it was rolled back"
                } else {
                    "and this engine does not roll back DDL"
                };
                problems.push(format!(
                    "{} failed on {} {why}: check what it left half-done, repair by hand, then run \
                     `mairie-dba schema repair`, which removes its failed row from {history_table}",
                    f.path.display(),
                    h.applied_at.format("%Y-%m-%d %H:%M UTC"),
                ))
            }
            _ => {}
        }
    }
    let highest_applied = entries
        .iter()
        .filter(|e| {
            matches!(
                e.state,
                State::Applied | State::Modified | State::Missing | State::Baseline
            )
        })
        .filter_map(Entry::version)
        .max();
    let todo: Vec<Migration> = entries
        .iter()
        .filter(|e| match e.key {
            Key::Version(_) => matches!(e.state, State::Pending | State::Failed),
            Key::Repeatable(_) => {
                matches!(e.state, State::Pending | State::Outdated | State::Failed)
            }
        })
        .filter_map(|e| e.file.clone())
        .collect();
    if let Some(high) = highest_applied {
        for m in &todo {
            if m.version.is_some_and(|v| v < high) {
                problems.push(format!(
                    "{} is pending but version {high} is already applied: give it a version above {high}",
                    m.path.display()
                ));
            }
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(todo)
}

fn history_table(target: &Target) -> &'static str {
    engine::history_table(target.engine).unwrap_or("the schema history table")
}

async fn status_target(target: &Target, files: &[Migration], check: bool) -> Result<StatusDone> {
    let conn = engine::connect(target).await?;
    let history = conn.history().await?;
    let migrations: Vec<MigrationState> = plan(files, &history)
        .iter()
        .map(MigrationState::of)
        .collect();
    let drifted = migrations.iter().any(|m| m.state.drifts());
    Ok(StatusDone {
        target: target.name.clone(),
        engine: target.engine,
        status: match (check, drifted) {
            (false, _) => "success",
            (true, false) => Status::Ok.as_str(),
            (true, true) => Status::Warning.as_str(),
        },
        migrations,
    })
}

async fn apply_target(
    target: &Target,
    files: &[Migration],
    dry_run: bool,
    verbose: bool,
    ctx: &Ctx,
) -> Result<ApplyDone> {
    let mut conn = engine::connect(target).await?;
    let table = history_table(target);
    if dry_run {
        let history = conn.history().await?;
        let todo = runnable(
            &plan(files, &history),
            !conn.capabilities().transactional_ddl,
            table,
        )?;
        let mut done = apply_done(&conn, target, &todo, &[], true);
        if verbose {
            for (item, m) in done.migrations.iter_mut().zip(&todo) {
                item.statements = Some(
                    engine::split_script(target.engine, &m.sql)
                        .into_iter()
                        .map(|p| Statement {
                            line: p.line,
                            sql: p.sql,
                        })
                        .collect(),
                );
            }
        }
        return Ok(done);
    }
    if conn.lock_schema().await? {
        ctx.log.info(format!(
            "{}: waited for another schema command to finish",
            target.name
        ));
    }
    let res = apply_locked(&mut conn, target, files, ctx).await;
    // The lock dies with the session anyway; releasing it early is a courtesy.
    let _ = conn.unlock_schema().await;
    res
}

async fn apply_locked(
    conn: &mut engine::Conn,
    target: &Target,
    files: &[Migration],
    ctx: &Ctx,
) -> Result<ApplyDone> {
    conn.ensure_history().await?;
    let history = conn.history().await?;
    let todo = runnable(
        &plan(files, &history),
        !conn.capabilities().transactional_ddl,
        history_table(target),
    )?;
    let mut ms = Vec::new();
    for m in &todo {
        ctx.log
            .debug(format!("{}: applying {}", target.name, m.script));
        match conn.apply_migration(m).await {
            Ok(took) => {
                ctx.log.debug(format!(
                    "{}: {} applied in {} ms",
                    target.name,
                    m.script,
                    took.as_millis()
                ));
                ms.push(took.as_millis() as i64);
            }
            Err(e) => {
                // Logged once here; the report keeps what ran before it.
                let error = failure(ctx, &target.name, &e);
                let mut done = apply_done(conn, target, &todo[..ms.len()], &ms, false);
                done.failed = Some(ApplyFailed {
                    version: m.version,
                    file: m.script.clone(),
                    error,
                });
                return Ok(done);
            }
        }
    }
    Ok(apply_done(conn, target, &todo, &ms, false))
}

/// The migrations `todo`, with how long each took (`ms`, empty in a dry run).
fn apply_done(
    conn: &engine::Conn,
    target: &Target,
    todo: &[Migration],
    ms: &[i64],
    dry_run: bool,
) -> ApplyDone {
    ApplyDone {
        target: target.name.clone(),
        engine: target.engine,
        transactional: conn.capabilities().transactional_ddl,
        dry_run,
        migrations: todo
            .iter()
            .enumerate()
            .map(|(i, m)| ApplyItem {
                version: m.version,
                kind: m.kind().as_str(),
                description: m.description.clone(),
                file: m.script.clone(),
                checksum: m.checksum.clone(),
                no_transaction: m.no_transaction,
                execution_ms: ms.get(i).copied(),
                statements: None,
            })
            .collect(),
        failed: None,
    }
}

/// What `repair` changes: every failed row goes; an applied versioned migration whose file
/// changed takes the file's checksum (Flyway's semantics). A changed repeatable migration is
/// left alone: `apply` re-applies it, which is the point of it.
fn repair_plan(files: &[Migration], history: &[AppliedMigration]) -> Vec<(i64, RepairChange)> {
    let by_version: BTreeMap<i64, &Migration> = files
        .iter()
        .filter_map(|f| f.version.map(|v| (v, f)))
        .collect();
    let mut out = Vec::new();
    for h in history {
        if !h.success {
            out.push((
                h.rank,
                RepairChange {
                    action: "removed_failed_row",
                    version: h.version,
                    file: h.script.clone(),
                    checksum: h.checksum.clone(),
                    new_checksum: None,
                },
            ));
            continue;
        }
        if h.kind != HistoryKind::Versioned {
            continue;
        }
        let Some(f) = h.version.and_then(|v| by_version.get(&v)) else {
            continue;
        };
        if f.checksum != h.checksum {
            out.push((
                h.rank,
                RepairChange {
                    action: "realigned_checksum",
                    version: h.version,
                    file: f.script.clone(),
                    checksum: h.checksum.clone(),
                    new_checksum: Some(f.checksum.clone()),
                },
            ));
        }
    }
    out
}

async fn repair_target(
    target: &Target,
    files: &[Migration],
    dry_run: bool,
    ctx: &Ctx,
) -> Result<RepairDone> {
    let conn = engine::connect(target).await?;
    let table = history_table(target);
    let mut done = RepairDone {
        target: target.name.clone(),
        engine: target.engine,
        status: "success",
        history_table: table,
        dry_run,
        changes: Vec::new(),
    };
    if dry_run {
        let history = conn.history().await?;
        done.changes = repair_plan(files, &history)
            .into_iter()
            .map(|(_, c)| c)
            .collect();
        return Ok(done);
    }
    if conn.lock_schema().await? {
        ctx.log.info(format!(
            "{}: waited for another schema command to finish",
            target.name
        ));
    }
    let res = async {
        if conn.history().await?.is_empty() {
            return Ok(Vec::new());
        }
        // The rows are named by rank: a history table of the first shape gets one first.
        conn.ensure_history().await?;
        let history = conn.history().await?;
        let changes = repair_plan(files, &history);
        conn.begin().await?;
        for (rank, c) in &changes {
            let step = match c.action {
                "removed_failed_row" => conn.delete_history_row(*rank).await,
                _ => {
                    let f = files
                        .iter()
                        .find(|f| f.version.is_some() && f.version == c.version)
                        .context("the file of a realigned row")?;
                    conn.realign_history_row(*rank, f).await
                }
            };
            if let Err(e) = step {
                conn.rollback().await;
                return Err(e);
            }
        }
        conn.commit()
            .await
            .with_context(|| format!("committing the repair of {table}"))?;
        for (_, c) in &changes {
            ctx.log.debug(format!(
                "{}: {} {} in {table}",
                target.name,
                c.action.replace('_', " "),
                c.file
            ));
        }
        Ok(changes.into_iter().map(|(_, c)| c).collect())
    }
    .await;
    let _ = conn.unlock_schema().await;
    done.changes = res?;
    Ok(done)
}

async fn baseline_target(
    target: &Target,
    files: &[Migration],
    version: i64,
    description: &str,
    ctx: &Ctx,
) -> Result<BaselineDone> {
    let conn = engine::connect(target).await?;
    let table = history_table(target);
    if conn.lock_schema().await? {
        ctx.log.info(format!(
            "{}: waited for another schema command to finish",
            target.name
        ));
    }
    let res = async {
        let history = conn.history().await?;
        if !history.is_empty() {
            let versions: BTreeSet<String> =
                history.iter().map(|h| version_cell(h.version)).collect();
            bail!(
                "{table} already has {} row(s) (versions {}): a baseline is for a database that \
                 mairie-dba has never migrated",
                history.len(),
                versions.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
        conn.ensure_history().await?;
        conn.record_baseline(version, description).await
    }
    .await;
    let _ = conn.unlock_schema().await;
    res?;
    Ok(BaselineDone {
        target: target.name.clone(),
        engine: target.engine,
        status: "success",
        history_table: table,
        version,
        description: description.to_string(),
        covered: files
            .iter()
            .filter(|f| f.version.is_some_and(|v| v <= version))
            .map(|f| f.script.clone())
            .collect(),
    })
}

// ---------------------------------------------------------------------------------------------
// schema new

/// `schema new`: the files it created, one per engine of the selected targets.
struct NewReport {
    created: Vec<Created>,
}

#[derive(Debug, serde::Serialize)]
struct Created {
    engine: &'static str,
    version: Option<i64>,
    file: String,
}

impl Report for NewReport {
    fn status(&self) -> Status {
        Status::Success
    }

    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("created".into(), json!(self.created));
        m
    }

    fn lines(&self) -> Vec<String> {
        self.created
            .iter()
            .map(|c| format!("created {}", c.file))
            .collect()
    }
}

fn new_files(
    args: &MigrationsArgs,
    name: &str,
    repeatable: bool,
    no_transaction: bool,
    ctx: &Ctx,
) -> Result<Outcome> {
    let slug = slug(name).ok_or_else(|| {
        ConfigError::new(format!(
            "schema new `{name}`: the name needs a letter or a digit to make a file name of"
        ))
    })?;
    let root = migrations_root(args, ctx);
    if !root.is_dir() {
        return Err(ConfigError::new(format!(
            "migrations directory {} does not exist (use --migrations-dir)",
            root.display()
        ))
        .into());
    }
    let mut engines: Vec<EngineKind> = Vec::new();
    for t in &ctx.targets {
        if engine::history_table(t.engine).is_none() {
            return Err(ConfigError::new(format!(
                "target `{}`: schema migrations not supported on {}",
                t.name,
                t.engine.as_str()
            ))
            .into());
        }
        if !engines.contains(&t.engine) {
            engines.push(t.engine);
        }
    }
    // Every engine's next file is worked out before any is written.
    let mut todo = Vec::new();
    for e in engines {
        let dir = root.join(e.as_str());
        let existing = if dir.is_dir() {
            discover(&dir, e)?
        } else {
            Vec::new()
        };
        let (version, file) = if repeatable {
            (None, format!("R__{slug}.sql"))
        } else {
            let (v, width) = next_version(&existing);
            (Some(v), format!("V{v:0width$}__{slug}.sql"))
        };
        todo.push((e, dir, version, file));
    }
    let mut report = NewReport {
        created: Vec::new(),
    };
    for (e, dir, version, file) in todo {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(&file);
        let mut text = String::new();
        if no_transaction {
            text.push_str(NO_TRANSACTION);
            text.push('\n');
        }
        let title: String = name.chars().filter(|c| !c.is_control()).collect();
        text.push_str(&format!("-- {file}: {title}\n\n"));
        write_new(&path, &text)?;
        ctx.log
            .debug(format!("{}: created {}", e.as_str(), path.display()));
        report.created.push(Created {
            engine: e.as_str(),
            version,
            file: path.display().to_string(),
        });
    }
    Ok(Outcome::from_report(&report))
}

/// Creates `path` with `text`; an existing file is never overwritten.
fn write_new(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                anyhow::anyhow!("{} already exists: choose another name", path.display())
            }
            _ => anyhow::anyhow!("creating {}: {e}", path.display()),
        })?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// The next version after the files', and the width of the widest version written so far
/// (`V004` -> 3; at least 3).
fn next_version(existing: &[Migration]) -> (i64, usize) {
    let next = existing
        .iter()
        .filter_map(|m| m.version)
        .max()
        .map_or(1, |v| v + 1);
    let width = existing
        .iter()
        .filter(|m| m.version.is_some())
        .map(|m| m.script[1..].bytes().take_while(u8::is_ascii_digit).count())
        .max()
        .unwrap_or(3)
        .max(3);
    (next, width)
}

/// A migration name made into the `<description>` of a file name: lower-case ASCII letters
/// and digits (French accents folded), anything else one `_`.
fn slug(name: &str) -> Option<String> {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        let c = match c {
            'à' | 'â' | 'ä' | 'á' | 'ã' | 'å' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'î' | 'ï' | 'í' | 'ì' => 'i',
            'ô' | 'ö' | 'ó' | 'ò' | 'õ' => 'o',
            'ù' | 'û' | 'ü' | 'ú' => 'u',
            'ç' => 'c',
            'ñ' => 'n',
            'ÿ' => 'y',
            'œ' => {
                out.push_str("oe");
                continue;
            }
            'æ' => {
                out.push_str("ae");
                continue;
            }
            c => c,
        };
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    let out: String = out.trim_end_matches('_').chars().take(100).collect();
    let out = out.trim_end_matches('_').to_string();
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::TargetFailed;

    const TABLE: &str = "public.mairie_dba_schema_history";

    fn mig(v: i64, sum: &str) -> Migration {
        Migration {
            version: Some(v),
            description: format!("m{v}"),
            script: format!("V{v:03}__m{v}.sql"),
            path: PathBuf::from(format!("sql/postgres/V{v:03}__m{v}.sql")),
            checksum: sum.repeat(64 / sum.len()),
            sql: String::new(),
            no_transaction: false,
        }
    }

    fn rep(name: &str, sum: &str) -> Migration {
        Migration {
            version: None,
            description: name.into(),
            script: format!("R__{name}.sql"),
            path: PathBuf::from(format!("sql/postgres/R__{name}.sql")),
            checksum: sum.repeat(64 / sum.len()),
            sql: String::new(),
            no_transaction: false,
        }
    }

    fn hist(v: i64, sum: &str, success: bool) -> AppliedMigration {
        AppliedMigration {
            rank: v,
            kind: HistoryKind::Versioned,
            version: Some(v),
            description: format!("m{v}"),
            script: format!("V{v:03}__m{v}.sql"),
            checksum: sum.repeat(64 / sum.len()),
            applied_at: chrono::Utc::now(),
            execution_ms: 3,
            applied_by: "mairie".into(),
            success,
        }
    }

    fn hist_rep(rank: i64, name: &str, sum: &str, success: bool) -> AppliedMigration {
        AppliedMigration {
            rank,
            kind: HistoryKind::Repeatable,
            version: None,
            description: name.into(),
            script: format!("R__{name}.sql"),
            ..hist(0, sum, success)
        }
    }

    fn states(p: &[Entry]) -> Vec<(Key, State)> {
        p.iter().map(|e| (e.key.clone(), e.state)).collect()
    }

    #[test]
    fn names_parse() {
        assert_eq!(
            parse_name("V001__referentiel.sql"),
            Some((Some(1), "referentiel".into()))
        );
        assert_eq!(
            parse_name("V12__add_index_x.sql"),
            Some((Some(12), "add index x".into()))
        );
        assert_eq!(
            parse_name("R__reporting_views.sql"),
            Some((None, "reporting views".into()))
        );
        assert_eq!(parse_name("R__.sql"), None);
        assert_eq!(parse_name("R_x.sql"), None);
        assert_eq!(parse_name("V1_x.sql"), None);
        assert_eq!(parse_name("001__x.sql"), None);
        assert_eq!(parse_name("Vx__y.sql"), None);
    }

    #[test]
    fn plan_states() {
        let files = [mig(1, "aa"), mig(2, "bb"), mig(3, "cc"), mig(4, "dd")];
        let history = [
            hist(1, "aa", true),
            hist(2, "XX", true),
            hist(3, "cc", false),
            hist(9, "ee", true),
        ];
        assert_eq!(
            states(&plan(&files, &history)),
            [
                (Key::Version(1), State::Applied),
                (Key::Version(2), State::Modified),
                (Key::Version(3), State::Failed),
                (Key::Version(4), State::Pending),
                (Key::Version(9), State::Missing)
            ]
        );
    }

    #[test]
    fn repeatables_come_after_versions_and_follow_their_latest_row() {
        let files = [
            rep("views", "v2"),
            mig(1, "aa"),
            rep("grants", "g1"),
            rep("new", "n1"),
        ];
        let history = [
            hist(1, "aa", true),
            hist_rep(2, "views", "v1", true),
            hist_rep(3, "grants", "g1", false),
            hist_rep(4, "grants", "g1", true),
            hist_rep(5, "gone", "zz", true),
        ];
        let p = plan(&files, &history);
        assert_eq!(
            states(&p),
            [
                (Key::Version(1), State::Applied),
                (Key::Repeatable("R__gone.sql".into()), State::Missing),
                (Key::Repeatable("R__grants.sql".into()), State::Applied),
                (Key::Repeatable("R__new.sql".into()), State::Pending),
                (Key::Repeatable("R__views.sql".into()), State::Outdated),
            ]
        );
        // An outdated and a new repeatable run; an applied one does not.
        let todo: Vec<String> = runnable(&p, false, TABLE)
            .unwrap()
            .into_iter()
            .map(|m| m.script)
            .collect();
        assert_eq!(todo, ["R__new.sql", "R__views.sql"]);
        let ms = MigrationState::of(&p[4]);
        assert_eq!((ms.version, ms.kind), (None, "repeatable"));
    }

    #[test]
    fn a_baseline_covers_the_versions_up_to_it() {
        let files = [mig(1, "aa"), mig(2, "bb"), mig(3, "cc")];
        let baseline = AppliedMigration {
            kind: HistoryKind::Baseline,
            description: "baseline".into(),
            script: "<< baseline >>".into(),
            checksum: String::new(),
            ..hist(2, "aa", true)
        };
        let p = plan(&files, &[baseline]);
        assert_eq!(
            states(&p),
            [
                (Key::Version(1), State::Baseline),
                (Key::Version(2), State::Baseline),
                (Key::Version(3), State::Pending),
            ]
        );
        let todo = runnable(&p, false, TABLE).unwrap();
        assert_eq!(todo.len(), 1);
        assert_eq!(todo[0].version, Some(3));
        assert_eq!(MigrationState::of(&p[1]).kind, "baseline");
    }

    #[test]
    fn modified_blocks_apply_naming_the_file() {
        let p = plan(&[mig(1, "aa"), mig(2, "bb")], &[hist(1, "zz", true)]);
        let e = runnable(&p, false, TABLE).unwrap_err().to_string();
        assert!(e.contains("V001__m1.sql was modified"), "{e}");
        assert!(e.contains("schema repair") && e.contains(TABLE), "{e}");
    }

    #[test]
    fn failed_retried_or_blocking_by_engine() {
        let p = plan(
            &[mig(1, "aa"), mig(2, "bb")],
            &[hist(1, "aa", true), hist(2, "bb", false)],
        );
        assert_eq!(runnable(&p, false, TABLE).unwrap().len(), 1);
        let e = runnable(&p, true, TABLE).unwrap_err().to_string();
        assert!(
            e.contains("V002__m2.sql failed") && e.contains("by hand"),
            "{e}"
        );
        assert!(e.contains("`mairie-dba schema repair`") && e.contains(TABLE));
    }

    #[test]
    fn a_failed_no_transaction_migration_blocks_even_with_transactional_ddl() {
        let mut m2 = mig(2, "bb");
        m2.no_transaction = true;
        let p = plan(
            &[mig(1, "aa"), m2],
            &[hist(1, "aa", true), hist(2, "bb", false)],
        );
        let e = runnable(&p, false, TABLE).unwrap_err().to_string();
        assert!(e.contains("outside a transaction"), "{e}");
        assert!(e.contains("schema repair"), "{e}");
    }

    #[test]
    fn the_no_transaction_marker_and_its_single_statement() {
        let p = Path::new("V9__i.sql");
        assert!(no_transaction_marker(
            p,
            "-- mairie-dba: no-transaction\nCREATE INDEX CONCURRENTLY i ON t (x);\n"
        )
        .unwrap());
        assert!(
            no_transaction_marker(p, "\n-- header\n--   mairie-dba:   No-Transaction\nX;").unwrap()
        );
        // Only among the comments at the top.
        assert!(!no_transaction_marker(p, "SELECT 1;\n-- mairie-dba: no-transaction\n").unwrap());
        let e = no_transaction_marker(p, "-- x\n-- mairie-dba: notransaction\n").unwrap_err();
        assert!(crate::error::is_config_error(&e));
        assert!(
            e.to_string().starts_with("V9__i.sql:2: unknown directive"),
            "{e}"
        );

        check_single_statement(
            p,
            "-- c\nCREATE INDEX CONCURRENTLY i ON t (x);\n",
            EngineKind::Postgres,
        )
        .unwrap();
        let e = check_single_statement(
            p,
            "CREATE INDEX CONCURRENTLY i ON t (x);\n\nDROP INDEX j;\n",
            EngineKind::Postgres,
        )
        .unwrap_err();
        assert!(crate::error::is_config_error(&e));
        let e = e.to_string();
        assert!(e.starts_with("V9__i.sql: a `-- mairie-dba: no-transaction` migration must hold exactly one statement, it holds 2 (lines 1, 3)"), "{e}");
        let e = check_single_statement(p, "SELECT 1;\nGO\nSELECT 2;\n", EngineKind::Mssql)
            .unwrap_err()
            .to_string();
        assert!(e.contains("exactly one batch, it holds 2"), "{e}");
        check_single_statement(
            p,
            "ALTER DATABASE x SET y;\nALTER DATABASE x SET z;\n",
            EngineKind::Mssql,
        )
        .unwrap();
        // A file just made by `schema new --no-transaction` is not refused.
        check_single_statement(
            p,
            "-- mairie-dba: no-transaction\n-- nothing yet\n",
            EngineKind::Mysql,
        )
        .unwrap();
    }

    #[test]
    fn repair_removes_failed_rows_and_realigns_versioned_checksums_only() {
        let files = [mig(1, "aa"), mig(2, "bb"), rep("views", "v2")];
        let history = [
            hist(1, "aa", true),
            hist(2, "XX", true),
            hist(3, "cc", false),
            hist_rep(4, "views", "v1", true),
            hist_rep(5, "views", "v2", false),
        ];
        let changes: Vec<(i64, &str, Option<i64>)> = repair_plan(&files, &history)
            .iter()
            .map(|(rank, c)| (*rank, c.action, c.version))
            .collect();
        assert_eq!(
            changes,
            [
                (2, "realigned_checksum", Some(2)),
                (3, "removed_failed_row", Some(3)),
                (5, "removed_failed_row", None),
            ]
        );
        let (_, c) = &repair_plan(&files, &history)[0];
        assert_eq!(c.new_checksum.as_deref(), Some(files[1].checksum.as_str()));
    }

    #[test]
    fn new_file_names() {
        assert_eq!(
            slug("Add index: demandes (statut)").as_deref(),
            Some("add_index_demandes_statut")
        );
        assert_eq!(
            slug("  Élection des représentants  ").as_deref(),
            Some("election_des_representants")
        );
        assert_eq!(slug("../../etc/passwd").as_deref(), Some("etc_passwd"));
        assert_eq!(slug("œuvre"), Some("oeuvre".into()));
        assert_eq!(slug("*** ///"), None);
        assert_eq!(slug(&"x".repeat(300)).map(|s| s.len()), Some(100));
        assert_eq!(next_version(&[]), (1, 3));
        assert_eq!(
            next_version(&[mig(1, "aa"), mig(4, "bb"), rep("v", "cc")]),
            (5, 3)
        );
        let mut wide = mig(7, "aa");
        wide.script = "V00007__x.sql".into();
        assert_eq!(next_version(&[wide]), (8, 5));
    }

    fn report(targets: Vec<PerTarget<TargetItem>>) -> Outcome {
        Outcome::from_report(&SchemaReport {
            targets,
            check: false,
        })
    }

    fn item(v: Option<i64>, file: &str) -> ApplyItem {
        ApplyItem {
            version: v,
            kind: if v.is_some() {
                "versioned"
            } else {
                "repeatable"
            },
            description: "m1".into(),
            file: file.into(),
            checksum: "ab".into(),
            no_transaction: false,
            execution_ms: None,
            statements: None,
        }
    }

    #[test]
    fn a_dry_run_lists_its_migrations_as_pending() {
        let done = ApplyDone {
            target: "postgres".into(),
            engine: EngineKind::Postgres,
            transactional: true,
            dry_run: true,
            migrations: vec![item(Some(1), "V001__m1.sql")],
            failed: None,
        };
        let o = report(vec![PerTarget::Done(TargetItem::Apply(done))]);
        assert_eq!(
            serde_json::to_string(&o.json()).unwrap(),
            r#"{"status":"success","targets":[{"target":"postgres","status":"success","dry_run":true,"pending":[{"version":1,"kind":"versioned","description":"m1","file":"V001__m1.sql","checksum":"ab","no_transaction":false,"execution_ms":null}]}]}"#
        );
        assert_eq!(
            o.tables[0].title.as_deref(),
            Some("target postgres (postgres): would apply")
        );
        assert_eq!(o.tables[0].rows, [["1", "m1", "V001__m1.sql", ""]]);
        assert_eq!(
            o.lines,
            ["postgres: 1 migration(s) would be applied (dry run)"]
        );
    }

    #[test]
    fn a_verbose_dry_run_shows_the_sql_as_the_client_reads_it() {
        let mut m = item(Some(5), "V005__i.sql");
        m.no_transaction = true;
        m.statements = Some(vec![Statement {
            line: 2,
            sql: "CREATE INDEX CONCURRENTLY i ON t (x)".into(),
        }]);
        let done = ApplyDone {
            target: "postgres".into(),
            engine: EngineKind::Postgres,
            transactional: true,
            dry_run: true,
            migrations: vec![m],
            failed: None,
        };
        let o = report(vec![PerTarget::Done(TargetItem::Apply(done))]);
        assert_eq!(
            o.lines[..2],
            [
                "-- postgres: V005__i.sql (alone, outside a transaction)",
                "-- V005__i.sql:2\nCREATE INDEX CONCURRENTLY i ON t (x);"
            ]
        );
        assert_eq!(
            o.json()["targets"][0]["pending"][0]["statements"][0]["line"],
            2
        );
    }

    #[test]
    fn a_failed_apply_keeps_what_it_applied_before() {
        let mut first = item(Some(1), "V001__m1.sql");
        first.execution_ms = Some(4);
        let done = ApplyDone {
            target: "mysql".into(),
            engine: EngineKind::Mysql,
            transactional: false,
            dry_run: false,
            migrations: vec![first],
            failed: Some(ApplyFailed {
                version: Some(2),
                file: "V002__m2.sql".into(),
                error: "V002__m2.sql:3: boom".into(),
            }),
        };
        let o = report(vec![PerTarget::Done(TargetItem::Apply(done))]);
        assert_eq!(o.status, Status::Failed);
        let t = &o.json()["targets"][0];
        assert_eq!(t["status"], "failed");
        assert_eq!(t["applied"][0]["file"], "V001__m1.sql");
        assert_eq!(t["failed"]["file"], "V002__m2.sql");
        assert_eq!(t["error"], "V002__m2.sql:3: boom");
        assert_eq!(o.tables[0].rows[1], ["2", "", "V002__m2.sql", "FAILED"]);
        assert_eq!(
            o.lines,
            ["mysql: 1 migration(s) applied, then V002__m2.sql FAILED: V002__m2.sql:3: boom"]
        );
    }

    #[test]
    fn status_counts_states_and_a_failed_target_fails_the_run() {
        let p = plan(&[mig(1, "aa"), mig(2, "bb")], &[hist(1, "aa", true)]);
        let applied_at = p[0].applied.as_ref().map(|h| h.applied_at);
        let migrations = p.iter().map(MigrationState::of).collect();
        let o = report(vec![
            PerTarget::Done(TargetItem::Status(StatusDone {
                target: "mysql".into(),
                engine: EngineKind::Mysql,
                status: "success",
                migrations,
            })),
            PerTarget::Failed(TargetFailed {
                target: "other".into(),
                status: "failed",
                error: "unreachable".into(),
            }),
        ]);
        assert_eq!(o.status, Status::Failed);
        let doc = o.json();
        let first = &doc["targets"][0]["migrations"][0];
        assert_eq!(first["state"], "applied");
        assert_eq!(
            first["applied_at"].as_str(),
            applied_at
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .as_deref()
        );
        assert_eq!(
            doc["targets"][0]["migrations"][1]["applied_at"],
            Value::Null
        );
        assert_eq!(
            serde_json::to_string(&doc["targets"][1]).unwrap(),
            r#"{"target":"other","status":"failed","error":"unreachable"}"#
        );
        assert_eq!(o.tables.len(), 1);
        assert_eq!(o.tables[0].rows[1], ["2", "m2", "pending", "", "", ""]);
        assert_eq!(
            o.lines,
            [
                "mysql: 1 applied, 1 pending, 0 modified, 0 failed, 0 missing",
                "other: FAILED: unreachable"
            ]
        );
    }

    #[test]
    fn status_check_warns_on_drift_and_is_critical_when_unreachable() {
        let done = |files: &[Migration], history: &[AppliedMigration]| {
            PerTarget::Done(TargetItem::Status(StatusDone {
                target: "postgres".into(),
                engine: EngineKind::Postgres,
                status: "ok",
                migrations: plan(files, history)
                    .iter()
                    .map(MigrationState::of)
                    .collect(),
            }))
        };
        let check = |targets| {
            Outcome::from_report(&SchemaReport {
                targets,
                check: true,
            })
        };
        let ok = check(vec![done(&[mig(1, "aa")], &[hist(1, "aa", true)])]);
        assert_eq!(ok.status, Status::Ok);
        assert_eq!(
            ok.nagios.as_deref(),
            Some("MAIRIE-DBA OK - postgres: schema up to date | 'postgres_pending'=0 'postgres_modified'=0 'postgres_outdated'=0 'postgres_failed'=0")
        );
        let drift = check(vec![done(
            &[mig(1, "aa"), mig(2, "bb"), rep("v", "cc")],
            &[hist(1, "aa", true)],
        )]);
        assert_eq!(drift.status, Status::Warning);
        assert_eq!(drift.status.exit_code(), 1);
        assert!(drift
            .nagios
            .as_deref()
            .unwrap()
            .starts_with("MAIRIE-DBA WARNING - postgres: 2 pending (V002__m2.sql, R__v.sql) |"));
        // Missing files are reported but are not drift the check fails on.
        let missing = check(vec![done(&[], &[hist(1, "aa", true)])]);
        assert_eq!(missing.status, Status::Ok);
        let down = check(vec![PerTarget::Failed(TargetFailed {
            target: "postgres".into(),
            status: "critical",
            error: "connection refused".into(),
        })]);
        assert_eq!(down.status, Status::Critical);
        assert_eq!(down.json()["status"], "critical");
    }

    #[test]
    fn out_of_order_is_refused_and_up_to_date_is_empty() {
        let p = plan(&[mig(1, "aa"), mig(2, "bb")], &[hist(2, "bb", true)]);
        assert!(runnable(&p, false, TABLE)
            .unwrap_err()
            .to_string()
            .contains("already applied"));
        let p = plan(&[mig(1, "aa")], &[hist(1, "aa", true)]);
        assert!(runnable(&p, false, TABLE).unwrap().is_empty());
    }
}
