//! `schema apply | status`: versioned migrations from `sql/<engine>/V<version>__<name>.sql`.
//!
//! The plan (what is applied, pending, modified, failed or missing) is computed without the
//! database from the files and the history rows, so it is the same for every engine and is
//! unit-tested here; the engine only runs SQL, takes the lock and keeps the history table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::ser::SerializeMap;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::catalog::{AppliedMigration, Migration};
use crate::cli::{MigrationsArgs, SchemaCommand};
use crate::cmd::{each, PerTarget};
use crate::config::{EngineKind, Target};
use crate::engine::Driver;
use crate::engine::{self};
use crate::error::ConfigError;
use crate::output::{Outcome, Report, Status, TableBlock};
use crate::Ctx;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Applied,
    Pending,
    /// Applied, but the file changed since.
    Modified,
    /// The last attempt failed.
    Failed,
    /// In the history, but the file is gone.
    Missing,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Applied => "applied",
            State::Pending => "pending",
            State::Modified => "modified",
            State::Failed => "failed",
            State::Missing => "missing",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub version: i64,
    pub state: State,
    pub file: Option<Migration>,
    pub applied: Option<AppliedMigration>,
}

pub async fn run(cmd: &SchemaCommand, ctx: &Ctx) -> Result<Outcome> {
    let (args, dry_run, apply) = match cmd {
        SchemaCommand::Apply {
            migrations,
            dry_run,
        } => (migrations, *dry_run, true),
        SchemaCommand::Status { migrations } => (migrations, false, false),
    };
    let mut report = SchemaReport {
        targets: Vec::new(),
    };
    // Every target's migrations are read before any runs: a bad directory stops the command
    // before it has changed anything.
    let work = ctx
        .targets
        .iter()
        .map(|target| Ok((target, discover(&migrations_dir(args, ctx, target))?)))
        .collect::<Result<Vec<_>>>()?;
    report.targets = each(
        ctx,
        work,
        |(t, _)| t,
        |(target, migrations)| async move {
            if apply {
                let done = apply_target(target, &migrations, dry_run, ctx).await?;
                Ok(TargetItem::Apply(done))
            } else {
                Ok(TargetItem::Status(
                    status_target(target, &migrations).await?,
                ))
            }
        },
    )
    .await;
    Ok(Outcome::from_report(&report))
}

/// What `schema apply` or `schema status` did or found, target by target.
struct SchemaReport {
    targets: Vec<PerTarget<TargetItem>>,
}

#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
enum TargetItem {
    Status(StatusDone),
    Apply(ApplyDone),
}

/// `schema status` on one target: each migration's state.
#[derive(Debug, serde::Serialize)]
struct StatusDone {
    target: String,
    #[serde(skip)]
    engine: EngineKind,
    status: &'static str,
    migrations: Vec<MigrationState>,
}

/// One line of `schema status`: a migration file, a history row, or both.
#[derive(Debug, serde::Serialize)]
struct MigrationState {
    version: i64,
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

/// `schema apply` on one target: the migrations it applied, or with `--dry-run` would apply.
/// Serialized by hand: the list's key is `pending` in a dry run, `applied` otherwise.
#[derive(Debug)]
struct ApplyDone {
    target: String,
    engine: EngineKind,
    dry_run: bool,
    migrations: Vec<ApplyItem>,
}

#[derive(Debug, serde::Serialize)]
struct ApplyItem {
    version: i64,
    description: String,
    file: String,
    checksum: String,
    /// None in a dry run.
    execution_ms: Option<i64>,
}

impl serde::Serialize for ApplyDone {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("target", &self.target)?;
        m.serialize_entry("status", "success")?;
        m.serialize_entry("dry_run", &self.dry_run)?;
        let key = if self.dry_run { "pending" } else { "applied" };
        m.serialize_entry(key, &self.migrations)?;
        m.end()
    }
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

impl Report for SchemaReport {
    fn status(&self) -> Status {
        Status::of_operation(self.targets.iter().any(PerTarget::failed))
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
            })
            .collect()
    }

    fn lines(&self) -> Vec<String> {
        self.targets
            .iter()
            .filter_map(PerTarget::done)
            .map(|t| match t {
                TargetItem::Status(s) => s.summary(),
                TargetItem::Apply(a) => a.summary(),
            })
            .collect()
    }
}

impl MigrationState {
    /// A planned entry as `schema status` shows it: the file's name and description, else
    /// the history's.
    fn of(e: &Entry) -> MigrationState {
        let h = e.applied.as_ref();
        MigrationState {
            version: e.version,
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

impl StatusDone {
    fn table(&self) -> TableBlock {
        let mut table =
            TableBlock::new(["version", "description", "state", "applied at", "ms", "by"])
                .titled(format!("target {} ({})", self.target, self.engine));
        for m in &self.migrations {
            table.row([
                m.version.to_string(),
                m.description.clone(),
                m.state.as_str().to_string(),
                m.applied_at
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default(),
                m.execution_ms.map(|ms| ms.to_string()).unwrap_or_default(),
                m.applied_by.clone().unwrap_or_default(),
            ]);
        }
        table
    }

    fn summary(&self) -> String {
        let count = |s: State| self.migrations.iter().filter(|m| m.state == s).count();
        format!(
            "{}: {} applied, {} pending, {} modified, {} failed, {} missing",
            self.target,
            count(State::Applied),
            count(State::Pending),
            count(State::Modified),
            count(State::Failed),
            count(State::Missing)
        )
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
                m.version.to_string(),
                m.description.clone(),
                m.file.clone(),
                m.execution_ms.map(|t| t.to_string()).unwrap_or_default(),
            ]);
        }
        table
    }

    fn summary(&self) -> String {
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

fn migrations_dir(args: &MigrationsArgs, ctx: &Ctx, target: &Target) -> PathBuf {
    args.migrations_dir
        .clone()
        .unwrap_or_else(|| ctx.config.migrations_dir.clone())
        .join(target.engine.as_str())
}

/// Reads `V<version>__<description>.sql` files, sorted by version.
pub fn discover(dir: &Path) -> Result<Vec<Migration>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        ConfigError::new(format!(
            "cannot read migrations directory {}: {e} (use --migrations-dir)",
            dir.display()
        ))
    })?;
    let mut by_version: BTreeMap<i64, Migration> = BTreeMap::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".sql") || !path.is_file() {
            continue;
        }
        let (version, description) = parse_name(&name).ok_or_else(|| {
            ConfigError::new(format!(
                "{}: a migration file must be named V<version>__<description>.sql (e.g. V004__add_index.sql)",
                path.display()
            ))
        })?;
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let sql = String::from_utf8(bytes.clone())
            .map_err(|e| anyhow::anyhow!("{}: not UTF-8 ({e})", path.display()))?;
        let m = Migration {
            version,
            description,
            script: name.clone(),
            path: path.clone(),
            checksum: hex::encode(Sha256::digest(&bytes)),
            sql,
        };
        if let Some(other) = by_version.insert(version, m) {
            return Err(ConfigError::new(format!(
                "{} and {} have the same version {version}",
                other.path.display(),
                path.display()
            ))
            .into());
        }
    }
    Ok(by_version.into_values().collect())
}

fn parse_name(name: &str) -> Option<(i64, String)> {
    let stem = name.strip_suffix(".sql")?.strip_prefix('V')?;
    let (v, d) = stem.split_once("__")?;
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) || d.is_empty() {
        return None;
    }
    Some((v.parse().ok()?, d.replace('_', " ")))
}

/// Lines up the files with the history.
pub fn plan(files: &[Migration], history: &[AppliedMigration]) -> Vec<Entry> {
    let mut out: BTreeMap<i64, Entry> = BTreeMap::new();
    for f in files {
        out.insert(
            f.version,
            Entry {
                version: f.version,
                state: State::Pending,
                file: Some(f.clone()),
                applied: None,
            },
        );
    }
    for h in history {
        let e = out.entry(h.version).or_insert_with(|| Entry {
            version: h.version,
            state: State::Missing,
            file: None,
            applied: None,
        });
        e.state = match &e.file {
            None => State::Missing,
            Some(_) if !h.success => State::Failed,
            Some(f) if f.checksum != h.checksum => State::Modified,
            Some(_) => State::Applied,
        };
        e.applied = Some(h.clone());
    }
    out.into_values().collect()
}

/// What `apply` may run, or why it must not run anything.
pub fn runnable(entries: &[Entry], failed_blocks: bool) -> Result<Vec<Migration>> {
    let mut problems = Vec::new();
    for e in entries {
        match (e.state, &e.file, &e.applied) {
            (State::Modified, Some(f), Some(h)) => problems.push(format!(
                "{} was modified after it was applied on {} (checksum then {}, now {}): restore the \
                 file and put the change in a new migration",
                f.path.display(),
                h.applied_at.format("%Y-%m-%d %H:%M UTC"),
                &h.checksum[..12.min(h.checksum.len())],
                &f.checksum[..12]
            )),
            (State::Failed, Some(f), Some(h)) if failed_blocks => problems.push(format!(
                "{} failed on {} and this engine does not roll back DDL: check what it left half-done, \
                 repair by hand, then delete its row (version {}) from the schema history table",
                f.path.display(),
                h.applied_at.format("%Y-%m-%d %H:%M UTC"),
                h.version
            )),
            _ => {}
        }
    }
    let highest_applied = entries
        .iter()
        .filter(|e| matches!(e.state, State::Applied | State::Modified | State::Missing))
        .map(|e| e.version)
        .max();
    let todo: Vec<Migration> = entries
        .iter()
        .filter(|e| matches!(e.state, State::Pending | State::Failed))
        .filter_map(|e| e.file.clone())
        .collect();
    if let Some(high) = highest_applied {
        for m in todo.iter().filter(|m| m.version < high) {
            problems.push(format!(
                "{} is pending but version {high} is already applied: give it a version above {high}",
                m.path.display()
            ));
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(todo)
}

async fn status_target(target: &Target, files: &[Migration]) -> Result<StatusDone> {
    let conn = engine::connect(target).await?;
    let history = conn.history().await?;
    let migrations = plan(files, &history)
        .iter()
        .map(MigrationState::of)
        .collect();
    Ok(StatusDone {
        target: target.name.clone(),
        engine: target.engine,
        status: "success",
        migrations,
    })
}

async fn apply_target(
    target: &Target,
    files: &[Migration],
    dry_run: bool,
    ctx: &Ctx,
) -> Result<ApplyDone> {
    let mut conn = engine::connect(target).await?;
    if dry_run {
        let history = conn.history().await?;
        let todo = runnable(
            &plan(files, &history),
            !conn.capabilities().transactional_ddl,
        )?;
        return Ok(apply_done(target, &todo, &[], true));
    }
    if conn.lock_schema().await? {
        ctx.log.info(format!(
            "{}: waited for another schema apply to finish",
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
    )?;
    let mut done = Vec::new();
    for m in &todo {
        ctx.log
            .debug(format!("{}: applying {}", target.name, m.script));
        let took = conn.apply_migration(m).await?;
        ctx.log.debug(format!(
            "{}: {} applied in {} ms",
            target.name,
            m.script,
            took.as_millis()
        ));
        done.push(took.as_millis() as i64);
    }
    Ok(apply_done(target, &todo, &done, false))
}

/// The migrations `todo`, with how long each took (`ms`, empty in a dry run).
fn apply_done(target: &Target, todo: &[Migration], ms: &[i64], dry_run: bool) -> ApplyDone {
    ApplyDone {
        target: target.name.clone(),
        engine: target.engine,
        dry_run,
        migrations: todo
            .iter()
            .enumerate()
            .map(|(i, m)| ApplyItem {
                version: m.version,
                description: m.description.clone(),
                file: m.script.clone(),
                checksum: m.checksum.clone(),
                execution_ms: ms.get(i).copied(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::TargetFailed;

    fn mig(v: i64, sum: &str) -> Migration {
        Migration {
            version: v,
            description: format!("m{v}"),
            script: format!("V{v:03}__m{v}.sql"),
            path: PathBuf::from(format!("sql/postgres/V{v:03}__m{v}.sql")),
            checksum: sum.repeat(64 / sum.len()),
            sql: String::new(),
        }
    }

    fn hist(v: i64, sum: &str, success: bool) -> AppliedMigration {
        AppliedMigration {
            version: v,
            description: format!("m{v}"),
            script: format!("V{v:03}__m{v}.sql"),
            checksum: sum.repeat(64 / sum.len()),
            applied_at: chrono::Utc::now(),
            execution_ms: 3,
            applied_by: "mairie".into(),
            success,
        }
    }

    #[test]
    fn names_parse() {
        assert_eq!(
            parse_name("V001__referentiel.sql"),
            Some((1, "referentiel".into()))
        );
        assert_eq!(
            parse_name("V12__add_index_x.sql"),
            Some((12, "add index x".into()))
        );
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
        let p = plan(&files, &history);
        let states: Vec<_> = p.iter().map(|e| (e.version, e.state)).collect();
        assert_eq!(
            states,
            [
                (1, State::Applied),
                (2, State::Modified),
                (3, State::Failed),
                (4, State::Pending),
                (9, State::Missing)
            ]
        );
    }

    #[test]
    fn modified_blocks_apply_naming_the_file() {
        let p = plan(&[mig(1, "aa"), mig(2, "bb")], &[hist(1, "zz", true)]);
        let e = runnable(&p, false).unwrap_err().to_string();
        assert!(e.contains("V001__m1.sql was modified"), "{e}");
    }

    #[test]
    fn failed_retried_or_blocking_by_engine() {
        let p = plan(
            &[mig(1, "aa"), mig(2, "bb")],
            &[hist(1, "aa", true), hist(2, "bb", false)],
        );
        assert_eq!(runnable(&p, false).unwrap().len(), 1);
        let e = runnable(&p, true).unwrap_err().to_string();
        assert!(
            e.contains("V002__m2.sql failed") && e.contains("by hand"),
            "{e}"
        );
    }

    fn report(targets: Vec<PerTarget<TargetItem>>) -> Outcome {
        Outcome::from_report(&SchemaReport { targets })
    }

    #[test]
    fn a_dry_run_lists_its_migrations_as_pending() {
        let done = ApplyDone {
            target: "postgres".into(),
            engine: EngineKind::Postgres,
            dry_run: true,
            migrations: vec![ApplyItem {
                version: 1,
                description: "m1".into(),
                file: "V001__m1.sql".into(),
                checksum: "ab".into(),
                execution_ms: None,
            }],
        };
        let o = report(vec![PerTarget::Done(TargetItem::Apply(done))]);
        assert_eq!(
            serde_json::to_string(&o.json()).unwrap(),
            r#"{"status":"success","targets":[{"target":"postgres","status":"success","dry_run":true,"pending":[{"version":1,"description":"m1","file":"V001__m1.sql","checksum":"ab","execution_ms":null}]}]}"#
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
            ["mysql: 1 applied, 1 pending, 0 modified, 0 failed, 0 missing"]
        );
    }

    #[test]
    fn out_of_order_is_refused_and_up_to_date_is_empty() {
        let p = plan(&[mig(1, "aa"), mig(2, "bb")], &[hist(2, "bb", true)]);
        assert!(runnable(&p, false)
            .unwrap_err()
            .to_string()
            .contains("already applied"));
        let p = plan(&[mig(1, "aa")], &[hist(1, "aa", true)]);
        assert!(runnable(&p, false).unwrap().is_empty());
    }
}
