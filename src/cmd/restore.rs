//! `restore (FILE | --latest) [--into DB] [--force] [--jobs N]` and `restore --drill`.
//!
//! A backup is re-hashed against its manifest before anything is restored: a damaged file
//! is refused. The drill is the disaster-recovery test made routine: the latest good backup
//! goes into a scratch database, every table's row count is compared with the manifest, and
//! the scratch database is dropped whatever happened.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Map, Value};

use crate::backup::places;
use crate::backup::{self, Entry};
use crate::cli::RestoreArgs;
use crate::cmd::failure;
use crate::config::Target;
use crate::engine;
use crate::engine::cleanup::Created;
use crate::engine::DrillStyle;
use crate::output::{Outcome, Report, Status, TableBlock};
use crate::Ctx;

pub async fn run(args: &RestoreArgs, ctx: &Ctx) -> Result<Outcome> {
    if args.drill {
        return drill(args, ctx).await;
    }
    if args.anonymize {
        return crate::cmd::anonymize::from_restore(args, ctx).await;
    }
    let jobs = backups_to_restore(args.file.as_deref(), ctx).await?;
    if args.into.is_some() && jobs.len() > 1 {
        return Err(crate::error::ConfigError::new("--into needs a single target (use -t)").into());
    }
    if args.into_dir.is_some() && jobs.len() > 1 {
        return Err(
            crate::error::ConfigError::new("--into-dir needs a single target (use -t)").into(),
        );
    }
    for (target, _, _) in &jobs {
        let into_server = engine::restores_into_server(target.engine);
        if args.into_dir.is_some() && into_server {
            return Err(crate::error::ConfigError::new(format!(
                "target `{}`: --into-dir is for Redis targets; a {} backup is restored into a \
                 database (--into DB)",
                target.name, target.engine
            ))
            .into());
        }
        if args.into_dir.is_none() && !into_server {
            return Err(crate::error::ConfigError::new(format!(
                "target `{}`: a {} backup is never restored into a running server: prepare a \
                 data directory with `restore --into-dir DIR` and start a stopped server on it, \
                 or prove the backup with `restore --drill`",
                target.name, target.engine
            ))
            .into());
        }
    }
    let mut report = RestoreReport {
        restores: Vec::new(),
    };
    for (target, e, _copy) in jobs {
        let start = Instant::now();
        let m = e.manifest.clone().map_err(|why| anyhow!(why))?;
        // The configuration says where a restore goes, never the manifest.
        let into = match &args.into_dir {
            Some(dir) => dir.display().to_string(),
            None => args
                .into
                .clone()
                .unwrap_or_else(|| target.connection.database.clone()),
        };
        if args.force {
            ctx.log.warn(format!(
                "{}: --force: the tables of database {into} are dropped and replaced, if it \
                 exists; should this restore stop midway, {into} is left incomplete",
                target.name
            ));
        }
        let res = async {
            backup::check_hash(&e).context("refusing to restore a damaged backup")?;
            let source = e.source();
            if let Some(dir) = &args.into_dir {
                let written =
                    engine::restore_into_dir(target.engine, &source, &m.sha256, dir).await?;
                ctx.log.info(format!(
                    "{}: {} written; start a stopped server on it (see {}/redis.conf)",
                    target.name,
                    written.display(),
                    dir.display()
                ));
                return Ok((Vec::new(), Vec::new()));
            }
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
        let seconds = start.elapsed().as_secs_f64();
        let item = match res {
            Ok((differences, parallel_tables)) => {
                for d in &differences {
                    ctx.log.warn(format!("{}: {d}", target.name));
                }
                Restored::Done {
                    target: target.name.clone(),
                    file: e.file_name(),
                    into,
                    seconds,
                    status: "success",
                    differences,
                    parallel_tables,
                    force: args.force,
                }
            }
            Err(err) => Restored::Failed {
                force: args.force,
                target: target.name.clone(),
                file: e.file_name(),
                into,
                seconds,
                status: "failed",
                error: failure(ctx, &target.name, &err),
            },
        };
        report.restores.push(item);
    }
    Ok(Outcome::from_report(&report))
}

/// The backups a restore takes: FILE (on the target its manifest names, or the only one
/// selected), or each selected target's latest good backup.
/// The backup to restore on each selected target: the file named, or the latest good one.
/// A backup in a bucket is streamed into a private temporary copy first, re-hashed (a
/// damaged object is refused here); the copy, returned beside its entry, goes when dropped.
pub(crate) async fn backups_to_restore<'c>(
    file: Option<&std::path::Path>,
    ctx: &'c Ctx,
) -> Result<Vec<(&'c Target, Entry, Option<backup::remote::LocalCopy>)>> {
    let mut jobs: Vec<(&Target, Entry, Option<backup::remote::LocalCopy>)> = Vec::new();
    match file {
        Some(f) => {
            let mut e = Entry::for_file(f)?;
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
            let server_dir = ctx
                .config
                .backup
                .get(&target.name)
                .and_then(|c| c.server_dir.clone());
            e.check_restorable_on(target, server_dir.as_deref());
            if let Some(why) = &e.foreign {
                bail!("{why}");
            }
            jobs.push((target, e, None));
        }
        None => {
            for p in places(ctx)? {
                let entries = p.entries_at(chrono::Utc::now()).await?;
                let latest = entries
                    .into_iter()
                    .find(|e| e.is_good_for(&p.target.name))
                    .ok_or_else(|| {
                        anyhow!(
                            "target `{}`: no good backup in {}",
                            p.target.name,
                            p.location()
                        )
                    })?;
                match &p.remote {
                    Some(r) => {
                        let copy = backup::remote::fetch(&r.open().await?, &latest)
                            .await
                            .context("refusing to restore a damaged backup")?;
                        jobs.push((p.target, copy.entry.clone(), Some(copy)));
                    }
                    None => jobs.push((p.target, latest, None)),
                }
            }
        }
    }
    Ok(jobs)
}

/// What `restore` did: each backup restored, or why it was not.
struct RestoreReport {
    restores: Vec<Restored>,
}

#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
enum Restored {
    Done {
        target: String,
        file: String,
        into: String,
        #[serde(serialize_with = "millis")]
        seconds: f64,
        status: &'static str,
        /// Row counts that differ from the manifest's (with `--compare`).
        differences: Vec<String>,
        /// The tables loaded over several connections.
        parallel_tables: Vec<String>,
        /// `--force`: the database's existing objects were dropped and replaced.
        force: bool,
    },
    Failed {
        target: String,
        file: String,
        into: String,
        /// `--force`: a failure may have left the database half replaced (the error says).
        force: bool,
        /// For the table only.
        #[serde(skip)]
        seconds: f64,
        status: &'static str,
        error: String,
    },
}

impl Report for RestoreReport {
    fn status(&self) -> Status {
        Status::of_operation(
            self.restores
                .iter()
                .any(|r| matches!(r, Restored::Failed { .. })),
        )
    }

    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("restores".into(), json!(self.restores));
        m
    }

    fn tables(&self) -> Vec<TableBlock> {
        let mut table = TableBlock::new(["target", "file", "into", "seconds", "result"]);
        for r in &self.restores {
            let (target, file, into, seconds, result) = match r {
                Restored::Done {
                    target,
                    file,
                    into,
                    seconds,
                    ..
                } => (target, file, into, seconds, "restored"),
                Restored::Failed {
                    target,
                    file,
                    into,
                    seconds,
                    ..
                } => (target, file, into, seconds, "FAILED"),
            };
            table.row([
                target.clone(),
                file.clone(),
                into.clone(),
                format!("{seconds:.1}"),
                result.into(),
            ]);
        }
        vec![table]
    }
}

/// Seconds as the JSON shows them: to the millisecond.
fn millis<S: serde::Serializer>(seconds: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((seconds * 1000.0).round() / 1000.0)
}

/// The tables whose row count differs from the manifest's, in words.
pub fn compare(expected: &BTreeMap<String, u64>, found: &BTreeMap<String, u64>) -> Vec<String> {
    compare_counts(expected, found, "rows")
}

/// The entries (tables; Redis databases) whose count of `unit` differs from the manifest's.
fn compare_counts(
    expected: &BTreeMap<String, u64>,
    found: &BTreeMap<String, u64>,
    unit: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    for (t, n) in expected {
        match found.get(t) {
            None => out.push(format!("{t}: missing after restore (expected {n} {unit})")),
            Some(m) if m != n => out.push(format!("{t}: {m} {unit}, the manifest says {n}")),
            _ => {}
        }
    }
    for t in found.keys().filter(|t| !expected.contains_key(*t)) {
        out.push(format!("{t}: not in the manifest"));
    }
    out
}

/// Drops the scratch databases that drills killed earlier on this target left behind.
async fn sweep_scratch(target: &Target, ctx: &Ctx) {
    match engine::leftover_scratch(target, &target.connection.database).await {
        Ok(names) => {
            for n in names {
                match engine::drop_database(target, &n).await {
                    Ok(()) => ctx.log.warn(format!(
                        "{}: dropped {n}, the scratch database of an earlier drill that was stopped",
                        target.name
                    )),
                    Err(e) => ctx.log.warn(format!(
                        "{}: could not drop {n}, left by an earlier drill: {e:#}",
                        target.name
                    )),
                }
            }
        }
        Err(e) => ctx.log.debug(format!(
            "{}: looking for scratch databases of earlier drills: {e:#}",
            target.name
        )),
    }
}

async fn drill(args: &RestoreArgs, ctx: &Ctx) -> Result<Outcome> {
    let mut report = DrillReport { drills: Vec::new() };
    for p in places(ctx)? {
        let start = Instant::now();
        let entries = p.entries_at(chrono::Utc::now()).await;
        let scratch = format!(
            "{}_drill_{}",
            p.target.connection.database,
            chrono::Utc::now().format("%Y%m%d%H%M%S")
        );
        let latest = entries?.into_iter().find(|e| e.is_good_for(&p.target.name));
        // A backup in a bucket is drilled from a re-hashed temporary copy.
        let mut copy = None;
        let latest = match (&p.remote, latest) {
            (Some(r), Some(e)) => {
                let c = backup::remote::fetch(&r.open().await?, &e)
                    .await
                    .context("the latest backup is damaged")?;
                let local = c.entry.clone();
                copy = Some(c);
                Some(local)
            }
            (_, latest) => latest,
        };
        if engine::drill_style(p.target.engine) == DrillStyle::ThrowawayServer {
            let mut server = String::from("throwaway server");
            let res: Result<(String, usize, Vec<String>)> = async {
                let e = latest.ok_or_else(|| anyhow!("no good backup in {}", p.location()))?;
                let m = backup::check_hash(&e).context("the latest backup is damaged")?;
                let (counts, described) =
                    engine::drill_throwaway(p.target.engine, &e.source()).await?;
                server = described;
                Ok((
                    e.file_name(),
                    m.tables.len(),
                    compare_counts(&m.tables, &counts, "keys"),
                ))
            }
            .await;
            let item = drilled(p.target, ctx, res, server, start);
            record_drill(&p, ctx, &item);
            report.drills.push(item);
            continue;
        }
        sweep_scratch(p.target, ctx).await;
        // The scratch database is dropped on a stop too; a kill leaves it to the next drill.
        let mut guard: Option<Created> = None;
        let res: Result<(String, usize, Vec<String>)> = async {
            let e = latest.ok_or_else(|| anyhow!("no good backup in {}", p.location()))?;
            let m = backup::check_hash(&e).context("the latest backup is damaged")?;
            engine::create_scratch(p.target, &scratch).await?;
            guard = Some(Created::register(p.target, &scratch));
            let source = e.source();
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
        if let Some(g) = guard {
            g.keep(); // dropped above already
        }
        drop(copy);
        let item = drilled(p.target, ctx, res, scratch, start);
        record_drill(&p, ctx, &item);
        report.drills.push(item);
    }
    Ok(Outcome::from_report(&report))
}

/// A drill's result as reported: the backup, what it was restored into, the differences.
fn drilled(
    target: &Target,
    ctx: &Ctx,
    res: Result<(String, usize, Vec<String>)>,
    database: String,
    start: Instant,
) -> Drilled {
    let seconds = start.elapsed().as_secs_f64();
    match res {
        Ok((file, tables, differences)) => {
            for d in &differences {
                ctx.log.error(format!("{}: {d}", target.name));
            }
            Drilled::Done {
                target: target.name.clone(),
                file,
                database,
                tables,
                seconds,
                status: if differences.is_empty() {
                    "success"
                } else {
                    "failed"
                },
                differences,
            }
        }
        Err(err) => Drilled::Failed {
            target: target.name.clone(),
            database,
            seconds,
            status: "failed",
            error: failure(ctx, &target.name, &err),
        },
    }
}

/// Records the drill for the agent, which tells the central monitor when each database was
/// last proven restorable.
fn record_drill(p: &backup::Place<'_>, ctx: &Ctx, item: &Drilled) {
    let (status, file) = match item {
        Drilled::Done { status, file, .. } => (*status, Some(file.clone())),
        Drilled::Failed { .. } => ("failed", None),
    };
    let record = backup::state::DrillRecord {
        at: chrono::Utc::now(),
        status: status.to_string(),
        file,
    };
    if let Err(e) = backup::state::StateStore::new(&ctx.config.state_dir, &p.target.name, &p.dir)
        .update(|s| s.last_drill = Some(record))
    {
        ctx.log.warn(format!(
            "{}: the drill could not be recorded: {e:#}",
            p.target.name
        ));
    }
}

/// What `restore --drill` found: per target, the latest good backup restored into a scratch
/// database and its row counts compared with the manifest, or why the drill failed.
struct DrillReport {
    drills: Vec<Drilled>,
}

#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
enum Drilled {
    /// Restored and counted: `success` when every count matches the manifest.
    Done {
        target: String,
        file: String,
        database: String,
        tables: usize,
        #[serde(serialize_with = "millis")]
        seconds: f64,
        status: &'static str,
        differences: Vec<String>,
    },
    Failed {
        target: String,
        database: String,
        /// For the table only.
        #[serde(skip)]
        seconds: f64,
        status: &'static str,
        error: String,
    },
}

impl Report for DrillReport {
    fn status(&self) -> Status {
        let passed =
            |d: &Drilled| matches!(d, Drilled::Done { differences, .. } if differences.is_empty());
        if self.drills.iter().all(passed) {
            Status::Success
        } else {
            Status::Failed
        }
    }

    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("drills".into(), json!(self.drills));
        m
    }

    fn tables(&self) -> Vec<TableBlock> {
        let mut table = TableBlock::new([
            "target",
            "backup",
            "scratch database",
            "tables",
            "seconds",
            "result",
        ]);
        for d in &self.drills {
            match d {
                Drilled::Done {
                    target,
                    file,
                    database,
                    tables,
                    seconds,
                    differences,
                    ..
                } => table.row([
                    target.clone(),
                    file.clone(),
                    database.clone(),
                    tables.to_string(),
                    format!("{seconds:.1}"),
                    if differences.is_empty() {
                        "success"
                    } else {
                        "MISMATCH"
                    }
                    .into(),
                ]),
                Drilled::Failed {
                    target,
                    database,
                    seconds,
                    ..
                } => table.row([
                    target.clone(),
                    String::new(),
                    database.clone(),
                    String::new(),
                    format!("{seconds:.1}"),
                    "FAILED".into(),
                ]),
            }
        }
        vec![table]
    }
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
