//! `schema apply | status`: versioned migrations from `sql/<engine>/V<version>__<name>.sql`.
//!
//! The plan (what is applied, pending, modified, failed or missing) is computed without the
//! database from the files and the history rows, so it is the same for every engine and is
//! unit-tested here; the engine only runs SQL, takes the lock and keeps the history table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::catalog::{AppliedMigration, Migration};
use crate::cli::{MigrationsArgs, SchemaCommand};
use crate::config::Target;
use crate::engine::Driver;
use crate::engine::{self};
use crate::error::ConfigError;
use crate::output::{Outcome, Status, TableBlock};
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
    let mut status = Status::Success;
    let mut results = Vec::new();
    let mut tables = Vec::new();
    let mut lines = Vec::new();
    for target in &ctx.targets {
        let dir = migrations_dir(args, ctx, target);
        let migrations = discover(&dir)?;
        let res = if apply {
            apply_target(target, &migrations, dry_run, ctx).await
        } else {
            status_target(target, &migrations).await
        };
        match res {
            Ok((doc, table, summary)) => {
                results.push(doc);
                tables.push(table);
                lines.push(summary);
            }
            Err(e) => {
                status = Status::Failed;
                let msg = format!("{e:#}");
                ctx.log.error(format!("target `{}`: {msg}", target.name));
                results.push(json!({"target": target.name, "status": "failed", "error": msg}));
            }
        }
    }
    let mut o = Outcome::new(status).field("targets", results);
    o.tables = tables;
    o.lines = lines;
    Ok(o)
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

type TargetResult = (Value, TableBlock, String);

async fn status_target(target: &Target, files: &[Migration]) -> Result<TargetResult> {
    let conn = engine::connect(target).await?;
    let history = conn.history().await?;
    let entries = plan(files, &history);
    let mut table = TableBlock::new(["version", "description", "state", "applied at", "ms", "by"])
        .titled(format!("target {} ({})", target.name, target.engine));
    let mut items = Vec::new();
    for e in &entries {
        let desc = e
            .file
            .as_ref()
            .map(|f| f.description.clone())
            .or_else(|| e.applied.as_ref().map(|h| h.description.clone()))
            .unwrap_or_default();
        table.row([
            e.version.to_string(),
            desc.clone(),
            e.state.as_str().to_string(),
            e.applied
                .as_ref()
                .map(|h| h.applied_at.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_default(),
            e.applied
                .as_ref()
                .map(|h| h.execution_ms.to_string())
                .unwrap_or_default(),
            e.applied
                .as_ref()
                .map(|h| h.applied_by.clone())
                .unwrap_or_default(),
        ]);
        items.push(json!({
            "version": e.version,
            "description": desc,
            "file": e.file.as_ref().map(|f| f.script.clone()).or_else(|| e.applied.as_ref().map(|h| h.script.clone())),
            "state": e.state.as_str(),
            "checksum": e.file.as_ref().map(|f| f.checksum.clone()),
            "applied_checksum": e.applied.as_ref().map(|h| h.checksum.clone()),
            "applied_at": e.applied.as_ref().map(|h| h.applied_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            "execution_ms": e.applied.as_ref().map(|h| h.execution_ms),
            "applied_by": e.applied.as_ref().map(|h| h.applied_by.clone()),
        }));
    }
    let count = |s: State| entries.iter().filter(|e| e.state == s).count();
    let summary = format!(
        "{}: {} applied, {} pending, {} modified, {} failed, {} missing",
        target.name,
        count(State::Applied),
        count(State::Pending),
        count(State::Modified),
        count(State::Failed),
        count(State::Missing)
    );
    Ok((
        json!({"target": target.name, "status": "success", "migrations": items}),
        table,
        summary,
    ))
}

async fn apply_target(
    target: &Target,
    files: &[Migration],
    dry_run: bool,
    ctx: &Ctx,
) -> Result<TargetResult> {
    let mut conn = engine::connect(target).await?;
    if dry_run {
        let history = conn.history().await?;
        let todo = runnable(
            &plan(files, &history),
            !conn.capabilities().transactional_ddl,
        )?;
        return Ok(applied_result(target, &todo, &[], true));
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
) -> Result<TargetResult> {
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
    Ok(applied_result(target, &todo, &done, false))
}

fn applied_result(target: &Target, todo: &[Migration], ms: &[i64], dry_run: bool) -> TargetResult {
    let title = if dry_run {
        format!("target {} ({}): would apply", target.name, target.engine)
    } else {
        format!("target {} ({}): applied", target.name, target.engine)
    };
    let mut table = TableBlock::new(["version", "description", "file", "ms"]).titled(title);
    let mut items = Vec::new();
    for (i, m) in todo.iter().enumerate() {
        let took = ms.get(i).copied();
        table.row([
            m.version.to_string(),
            m.description.clone(),
            m.script.clone(),
            took.map(|t| t.to_string()).unwrap_or_default(),
        ]);
        items.push(json!({
            "version": m.version, "description": m.description, "file": m.script,
            "checksum": m.checksum, "execution_ms": took,
        }));
    }
    let summary = match (todo.len(), dry_run) {
        (0, _) => format!("{}: schema is up to date", target.name),
        (n, true) => format!(
            "{}: {n} migration(s) would be applied (dry run)",
            target.name
        ),
        (n, false) => format!("{}: {n} migration(s) applied", target.name),
    };
    let key = if dry_run { "pending" } else { "applied" };
    (
        json!({"target": target.name, "status": "success", "dry_run": dry_run, key: items}),
        table,
        summary,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
