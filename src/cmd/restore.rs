//! `restore (FILE | --latest) [--into DB] [--force] [--jobs N]` and `restore --drill`.
//!
//! A backup is re-hashed against its manifest before anything is restored: a damaged file
//! is refused. The drill is the disaster-recovery test made routine: the latest good backup
//! goes into a scratch database, every table's row count is compared with the manifest, and
//! the scratch database is dropped whatever happened.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;

use crate::backup::places;
use crate::backup::{self, Entry};
use crate::cli::RestoreArgs;
use crate::config::Target;
use crate::engine;
use crate::output::{Outcome, Status, TableBlock};
use crate::Ctx;

pub async fn run(args: &RestoreArgs, ctx: &Ctx) -> Result<Outcome> {
    if args.drill {
        return drill(args, ctx).await;
    }
    let mut jobs: Vec<(&Target, Entry)> = Vec::new();
    match &args.file {
        Some(f) => {
            let e = Entry::for_file(f)?;
            let m = e
                .manifest
                .as_ref()
                .map_err(|why| anyhow!("{}: {why}", f.display()))?;
            let target = ctx
                .targets
                .iter()
                .find(|t| t.name == m.target)
                .or_else(|| (ctx.targets.len() == 1).then(|| &ctx.targets[0]))
                .ok_or_else(|| {
                    crate::error::ConfigError::new(format!(
                        "{}: a backup of target `{}`, which is not selected (use -t)",
                        f.display(),
                        m.target
                    ))
                })?;
            if target.engine.as_str() != m.engine {
                bail!(
                    "{}: a {} backup cannot be restored on {} target `{}`",
                    f.display(),
                    m.engine,
                    target.engine,
                    target.name
                );
            }
            jobs.push((target, e));
        }
        None => {
            for p in places(ctx)? {
                let entries = backup::scan(&p.dir, &p.target.connection.database)?;
                let latest = entries
                    .into_iter()
                    .find(|e| e.is_good_for(&p.target.name))
                    .ok_or_else(|| {
                        anyhow!(
                            "target `{}`: no good backup in {}",
                            p.target.name,
                            p.dir.display()
                        )
                    })?;
                jobs.push((p.target, latest));
            }
        }
    }
    if args.into.is_some() && jobs.len() > 1 {
        return Err(crate::error::ConfigError::new("--into needs a single target (use -t)").into());
    }
    let mut status = Status::Success;
    let mut items = Vec::new();
    let mut table = TableBlock::new(["target", "file", "into", "seconds", "result"]);
    for (target, e) in jobs {
        let start = Instant::now();
        let m = e.manifest.clone().map_err(|why| anyhow!(why))?;
        let into = args.into.clone().unwrap_or_else(|| m.database.clone());
        let res = async {
            backup::check_hash(&e).context("refusing to restore a damaged backup")?;
            let source = m
                .location
                .clone()
                .map(PathBuf::from)
                .unwrap_or_else(|| e.path.clone());
            let split =
                engine::restore(target, &source, &into, args.force, args.jobs, &m.tables).await?;
            for t in &split {
                ctx.log.debug(format!(
                    "{}: {t} loaded over {} connections",
                    target.name, args.jobs
                ));
            }
            // Counting every table of a large database is slow: only on request (the drill
            // always does it).
            if args.compare {
                let counts = engine::count_rows(target, &into).await?;
                return Ok::<_, anyhow::Error>((compare(&m.tables, &counts), split));
            }
            Ok((Vec::new(), split))
        }
        .await;
        let secs = start.elapsed().as_secs_f64();
        match res {
            Ok((diff, split)) => {
                for d in &diff {
                    ctx.log.warn(format!("{}: {d}", target.name));
                }
                table.row([
                    target.name.clone(),
                    e.file_name(),
                    into.clone(),
                    format!("{secs:.1}"),
                    "restored".into(),
                ]);
                items.push(json!({"target": target.name, "file": e.file_name(), "into": into,
                    "seconds": (secs * 1000.0).round() / 1000.0, "status": "success", "differences": diff,
                    "parallel_tables": split}));
            }
            Err(err) => {
                status = Status::Failed;
                let msg = format!("{err:#}");
                ctx.log.error(format!("target `{}`: {msg}", target.name));
                table.row([
                    target.name.clone(),
                    e.file_name(),
                    into.clone(),
                    format!("{secs:.1}"),
                    "FAILED".into(),
                ]);
                items.push(json!({"target": target.name, "file": e.file_name(), "into": into, "status": "failed", "error": msg}));
            }
        }
    }
    let mut o = Outcome::new(status).field("restores", items);
    o.tables.push(table);
    Ok(o)
}

/// The tables whose row count differs from the manifest's, in words.
pub fn compare(expected: &BTreeMap<String, u64>, found: &BTreeMap<String, u64>) -> Vec<String> {
    let mut out = Vec::new();
    for (t, n) in expected {
        match found.get(t) {
            None => out.push(format!("{t}: missing after restore (expected {n} rows)")),
            Some(m) if m != n => out.push(format!("{t}: {m} rows, the manifest says {n}")),
            _ => {}
        }
    }
    for t in found.keys().filter(|t| !expected.contains_key(*t)) {
        out.push(format!("{t}: not in the manifest"));
    }
    out
}

async fn drill(args: &RestoreArgs, ctx: &Ctx) -> Result<Outcome> {
    let mut status = Status::Success;
    let mut items = Vec::new();
    let mut table = TableBlock::new([
        "target",
        "backup",
        "scratch database",
        "tables",
        "seconds",
        "result",
    ]);
    for p in places(ctx)? {
        let start = Instant::now();
        let entries = backup::scan(&p.dir, &p.target.connection.database)?;
        let scratch = format!(
            "{}_drill_{}",
            p.target.connection.database,
            chrono::Utc::now().format("%Y%m%d%H%M%S")
        );
        let latest = entries.into_iter().find(|e| e.is_good_for(&p.target.name));
        let res: Result<(String, usize, Vec<String>)> = async {
            let e = latest.ok_or_else(|| anyhow!("no good backup in {}", p.dir.display()))?;
            let m = backup::check_hash(&e).context("the latest backup is damaged")?;
            let source = m
                .location
                .clone()
                .map(PathBuf::from)
                .unwrap_or_else(|| e.path.clone());
            let restored =
                engine::restore(p.target, &source, &scratch, false, args.jobs, &m.tables).await;
            let counted = match restored {
                Ok(_) => engine::count_rows(p.target, &scratch).await,
                Err(err) => Err(err),
            };
            // The scratch database goes whatever happened.
            if let Err(err) = engine::drop_database(p.target, &scratch).await {
                ctx.log.warn(format!(
                    "{}: could not drop {scratch}: {err:#}",
                    p.target.name
                ));
            }
            let counts = counted?;
            Ok((e.file_name(), m.tables.len(), compare(&m.tables, &counts)))
        }
        .await;
        let secs = start.elapsed().as_secs_f64();
        match res {
            Ok((file, n, diff)) if diff.is_empty() => {
                table.row([
                    p.target.name.clone(),
                    file.clone(),
                    scratch.clone(),
                    n.to_string(),
                    format!("{secs:.1}"),
                    "success".into(),
                ]);
                items.push(json!({"target": p.target.name, "file": file, "database": scratch, "tables": n,
                    "seconds": (secs * 1000.0).round() / 1000.0, "status": "success", "differences": []}));
            }
            Ok((file, n, diff)) => {
                status = Status::Failed;
                for d in &diff {
                    ctx.log.error(format!("{}: {d}", p.target.name));
                }
                table.row([
                    p.target.name.clone(),
                    file.clone(),
                    scratch.clone(),
                    n.to_string(),
                    format!("{secs:.1}"),
                    "MISMATCH".into(),
                ]);
                items.push(json!({"target": p.target.name, "file": file, "database": scratch, "tables": n,
                    "seconds": (secs * 1000.0).round() / 1000.0, "status": "failed", "differences": diff}));
            }
            Err(err) => {
                status = Status::Failed;
                let msg = format!("{err:#}");
                ctx.log
                    .error(format!("target `{}`: drill failed: {msg}", p.target.name));
                table.row([
                    p.target.name.clone(),
                    String::new(),
                    scratch.clone(),
                    String::new(),
                    format!("{secs:.1}"),
                    "FAILED".into(),
                ]);
                items.push(json!({"target": p.target.name, "database": scratch, "status": "failed", "error": msg}));
            }
        }
    }
    let mut o = Outcome::new(status).field("drills", items);
    o.tables.push(table);
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_spelled_out() {
        let exp: BTreeMap<String, u64> = [("a".to_string(), 3), ("b".to_string(), 1)].into();
        let found: BTreeMap<String, u64> = [("a".to_string(), 2), ("c".to_string(), 0)].into();
        assert_eq!(
            compare(&exp, &found),
            vec![
                "a: 2 rows, the manifest says 3".to_string(),
                "b: missing after restore (expected 1 rows)".to_string(),
                "c: not in the manifest".to_string()
            ]
        );
        assert!(compare(&exp, &exp).is_empty());
    }
}
