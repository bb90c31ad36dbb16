//! `maintenance analyze | vacuum | index-report | slow-queries | cleanup`.
//!
//! Owns the per-target loop (a failing target does not stop the others, nor does a failing
//! table stop the other tables), the progress bar over the tables, the timing and the report;
//! what runs on each engine is the `maintenance` feature.

use std::time::Instant;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::catalog::TableRef;
use crate::cli::{MaintenanceCommand, MaintenanceTables};
use crate::cmd::{done_blocks, each, failure, failure_lines, PerTarget};
use crate::config::Target;
use crate::engine::{self, Conn};
use crate::error::ConfigError;
use crate::maintenance::{self as m, Finding, SlowQuery, Work};
use crate::output::{Outcome, Report, Status, TableBlock};
use crate::Ctx;

pub async fn run(cmd: &MaintenanceCommand, ctx: &Ctx) -> Result<Outcome> {
    match cmd {
        MaintenanceCommand::Analyze(t) => tables(ctx, Work::Analyze, t).await,
        MaintenanceCommand::Vacuum { tables: t, full } => {
            tables(ctx, Work::Vacuum { full: *full }, t).await
        }
        MaintenanceCommand::IndexReport => index_report(ctx).await,
        MaintenanceCommand::SlowQueries { top } => slow_queries(ctx, *top).await,
        MaintenanceCommand::Cleanup {
            dry_run,
            older_than_days,
            privacy,
        } => cleanup(ctx, *dry_run, *older_than_days, *privacy).await,
    }
}

fn secs(start: Instant) -> f64 {
    (start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0
}

/// How a target, or one of its tables, came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum State {
    Success,
    Failed,
    /// `--dry-run`: listed, not run.
    Planned,
}

/// The status of a command whose targets either succeed or fail as a whole.
fn status_of<T>(targets: &[PerTarget<T>]) -> Status {
    Status::of_operation(targets.iter().any(PerTarget::failed))
}

/// The document's `targets` field.
fn targets_field<T: Serialize>(targets: &[PerTarget<T>]) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("targets".into(), json!(targets));
    m
}

// ---------------------------------------------------------------------------------------------
// analyze, vacuum

async fn tables(ctx: &Ctx, work: Work, args: &MaintenanceTables) -> Result<Outcome> {
    let named = args
        .tables
        .iter()
        .map(|t| TableRef::parse(t))
        .collect::<Result<Vec<_>, _>>()?;
    let mut report = TablesReport {
        targets: Vec::new(),
        dry_run: args.dry_run,
    };
    report.targets = each(
        ctx,
        &ctx.targets,
        |t| t,
        |target| tables_on(ctx, target, work, &named, args.dry_run),
    )
    .await;
    Ok(Outcome::from_report(&report))
}

/// What `analyze` or `vacuum` did (or, with `--dry-run`, would do) on each target.
struct TablesReport {
    targets: Vec<PerTarget<TablesDone>>,
    dry_run: bool,
}

/// One target's tables: failed as soon as one of them failed.
#[derive(Debug, Serialize)]
struct TablesDone {
    target: String,
    status: State,
    tables: Vec<TableDone>,
}

impl TablesDone {
    fn failed(&self) -> usize {
        self.tables
            .iter()
            .filter(|t| t.status == State::Failed)
            .count()
    }
}

#[derive(Debug, Serialize)]
struct TableDone {
    table: String,
    action: String,
    seconds: f64,
    status: State,
    /// What the server said, the error, or (planned) why the table is refused or its note.
    detail: String,
    statements: Vec<String>,
    /// What is known before anything runs: the dry run shows it when there is nothing to run.
    #[serde(skip)]
    note: String,
}

impl Report for TablesReport {
    fn status(&self) -> Status {
        let failed = self.targets.iter().any(|t| match t {
            PerTarget::Done(d) => d.status == State::Failed,
            PerTarget::Failed(_) => true,
        });
        Status::of_operation(failed)
    }

    fn fields(&self) -> Map<String, Value> {
        let mut m = targets_field(&self.targets);
        if self.dry_run {
            m.insert("dry_run".into(), json!(true));
        }
        m
    }

    fn tables(&self) -> Vec<TableBlock> {
        self.targets
            .iter()
            .filter_map(|t| match t {
                PerTarget::Done(d) if self.dry_run => Some(planned_block(d)),
                PerTarget::Done(d) => Some(done_block(d)),
                PerTarget::Failed(_) => None,
            })
            .collect()
    }

    fn lines(&self) -> Vec<String> {
        self.targets
            .iter()
            .filter_map(|t| match t {
                PerTarget::Done(d) => {
                    let failed = d.failed();
                    (failed > 0).then(|| format!("{}: {failed} table(s) failed", d.target))
                }
                PerTarget::Failed(f) => Some(f.line()),
            })
            .collect()
    }
}

fn planned_block(d: &TablesDone) -> TableBlock {
    let mut block = TableBlock::new(["table", "action", "statement"])
        .titled(format!("{} (dry run: nothing runs)", d.target));
    for t in &d.tables {
        let shown = if t.statements.is_empty() {
            format!("-- nothing to do ({})", t.note)
        } else {
            t.statements.join("\n")
        };
        block.row([t.table.clone(), t.action.clone(), shown]);
    }
    block
}

fn done_block(d: &TablesDone) -> TableBlock {
    let mut block =
        TableBlock::new(["table", "action", "seconds", "result"]).titled(d.target.clone());
    for t in &d.tables {
        let result = match (t.status, t.detail.is_empty()) {
            (State::Success, true) => "ok".to_string(),
            (State::Success, false) => format!("ok: {}", t.detail),
            _ => format!("FAILED: {}", t.detail),
        };
        block.row([
            t.table.clone(),
            t.action.clone(),
            format!("{:.2}", t.seconds),
            result,
        ]);
    }
    block
}

/// One target: plan, then each table in turn (with `dry_run`, only the plan).
async fn tables_on(
    ctx: &Ctx,
    target: &Target,
    work: Work,
    named: &[TableRef],
    dry_run: bool,
) -> Result<TablesDone> {
    let mut conn = engine::connect(target).await?;
    let tasks = m::plan(&mut conn, work, named).await?;
    let mut done = TablesDone {
        target: target.name.clone(),
        status: State::Success,
        tables: Vec::with_capacity(tasks.len()),
    };
    if dry_run {
        done.tables = tasks
            .into_iter()
            .map(|t| TableDone {
                detail: t.refused.unwrap_or_else(|| t.note.clone()),
                table: t.table,
                action: t.action,
                seconds: 0.0,
                status: State::Planned,
                statements: t.statements,
                note: t.note,
            })
            .collect();
        return Ok(done);
    }
    m::lift_statement_timeout(&mut conn).await?;
    let bar = progress_bar(ctx, &target.name, tasks.len() as u64);
    for t in tasks {
        if let Some(pb) = &bar {
            pb.set_message(t.table.clone());
        }
        for s in &t.statements {
            ctx.log.debug(format!("{}: {s}", target.name));
        }
        let start = Instant::now();
        let res = m::run_task(&mut conn, &t).await;
        let seconds = secs(start);
        let (status, detail) = match res {
            Ok(detail) => (State::Success, detail),
            Err(e) => {
                done.status = State::Failed;
                let msg = format!("{e:#}");
                let line = format!("target `{}`: {}: {msg}", target.name, t.table);
                match &bar {
                    Some(pb) => pb.suspend(|| ctx.log.error(&line)),
                    None => ctx.log.error(&line),
                }
                (State::Failed, msg)
            }
        };
        done.tables.push(TableDone {
            table: t.table,
            action: t.action,
            seconds,
            status,
            detail,
            statements: t.statements,
            note: t.note,
        });
        if let Some(pb) = &bar {
            pb.inc(1);
        }
    }
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    Ok(done)
}

fn progress_bar(ctx: &Ctx, target: &str, len: u64) -> Option<ProgressBar> {
    if !ctx.log.progress() || len == 0 {
        return None;
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} {elapsed_precise} {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_prefix(target.to_string());
    Some(pb)
}

// ---------------------------------------------------------------------------------------------
// index-report

async fn index_report(ctx: &Ctx) -> Result<Outcome> {
    let mut report = IndexReport {
        targets: Vec::new(),
    };
    report.targets = each(
        ctx,
        &ctx.targets,
        |t| t,
        |target| async move {
            let mut conn = engine::connect_probe(target).await?;
            let findings = m::index_report(&mut conn, target.connection.statement_timeout).await?;
            Ok(IndexDone {
                target: target.name.clone(),
                status: State::Success,
                findings,
            })
        },
    )
    .await;
    Ok(Outcome::from_report(&report))
}

/// What `index-report` found on each target.
struct IndexReport {
    targets: Vec<PerTarget<IndexDone>>,
}

#[derive(Debug, Serialize)]
struct IndexDone {
    target: String,
    status: State,
    findings: Vec<Finding>,
}

impl Report for IndexReport {
    fn status(&self) -> Status {
        status_of(&self.targets)
    }

    fn fields(&self) -> Map<String, Value> {
        targets_field(&self.targets)
    }

    fn tables(&self) -> Vec<TableBlock> {
        done_blocks(&self.targets, findings_block)
    }

    fn lines(&self) -> Vec<String> {
        failure_lines(&self.targets)
    }
}

fn findings_block(d: &IndexDone) -> TableBlock {
    let mut block = TableBlock::new(["kind", "table", "index", "size", "detail", "fix"])
        .titled(format!("{}: {} finding(s)", d.target, d.findings.len()));
    for f in &d.findings {
        block.row([
            f.kind.clone(),
            f.table.clone(),
            f.index.clone().unwrap_or_default(),
            f.size_bytes
                .map(|b| indicatif::HumanBytes(b.max(0) as u64).to_string())
                .unwrap_or_default(),
            f.detail.clone(),
            f.fix.clone().unwrap_or_default(),
        ]);
    }
    block
}

// ---------------------------------------------------------------------------------------------
// slow-queries

async fn slow_queries(ctx: &Ctx, top: u32) -> Result<Outcome> {
    let mut report = SlowReport {
        targets: Vec::new(),
    };
    report.targets = each(
        ctx,
        &ctx.targets,
        |t| t,
        |target| async move {
            let mut conn = engine::connect_probe(target).await?;
            let m::SlowQueries { queries, notes } =
                m::slow_queries(&mut conn, top, target.connection.statement_timeout).await?;
            for n in &notes {
                ctx.log.warn(format!("{}: {n}", target.name));
            }
            Ok(SlowDone {
                target: target.name.clone(),
                status: State::Success,
                queries,
                notes,
            })
        },
    )
    .await;
    Ok(Outcome::from_report(&report))
}

/// The most expensive statements of each target.
struct SlowReport {
    targets: Vec<PerTarget<SlowDone>>,
}

#[derive(Debug, Serialize)]
struct SlowDone {
    target: String,
    status: State,
    /// As measured: the document rounds the times to the microsecond, the table to its own
    /// precision.
    #[serde(serialize_with = "rounded_queries")]
    queries: Vec<SlowQuery>,
    notes: Vec<String>,
}

/// The statements with their times rounded to the microsecond.
fn rounded_queries<S: serde::Serializer>(queries: &[SlowQuery], s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Rounded<'a> {
        calls: i64,
        total_ms: f64,
        mean_ms: f64,
        rows: i64,
        query: &'a str,
    }
    let micro = |ms: f64| (ms * 1000.0).round() / 1000.0;
    s.collect_seq(queries.iter().map(|q| Rounded {
        calls: q.calls,
        total_ms: micro(q.total_ms),
        mean_ms: micro(q.mean_ms),
        rows: q.rows,
        query: &q.query,
    }))
}

impl Report for SlowReport {
    fn status(&self) -> Status {
        status_of(&self.targets)
    }

    fn fields(&self) -> Map<String, Value> {
        targets_field(&self.targets)
    }

    fn tables(&self) -> Vec<TableBlock> {
        done_blocks(&self.targets, queries_block)
    }

    fn lines(&self) -> Vec<String> {
        failure_lines(&self.targets)
    }
}

fn queries_block(d: &SlowDone) -> TableBlock {
    let mut block =
        TableBlock::new(["calls", "total ms", "mean ms", "rows", "query"]).titled(format!(
            "{}: top {} statements by total time",
            d.target,
            d.queries.len()
        ));
    for q in &d.queries {
        block.row([
            q.calls.to_string(),
            format!("{:.1}", q.total_ms),
            format!("{:.2}", q.mean_ms),
            q.rows.to_string(),
            one_line(&q.query, 300),
        ]);
    }
    block
}

/// A statement on one line, whitespace collapsed, cut at `max` characters.
fn one_line(s: &str, max: usize) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max).collect();
    cut.push('…');
    cut
}

// ---------------------------------------------------------------------------------------------
// cleanup

async fn cleanup(
    ctx: &Ctx,
    dry_run: bool,
    older_than_days: Option<u32>,
    privacy: bool,
) -> Result<Outcome> {
    let cfg = &ctx.config.maintenance;
    let path = ctx.config.path.display();
    let table = TableRef::parse(&cfg.journal_table).map_err(|_| {
        ConfigError::new(format!(
            "{path}: maintenance.journal_table: `{}` is not SCHEMA.TABLE (e.g. metier.journal_audit)",
            cfg.journal_table
        ))
    })?;
    if cfg.journal_time_column.is_empty() {
        return Err(ConfigError::new(format!(
            "{path}: maintenance.journal_time_column: must not be empty"
        ))
        .into());
    }
    if cfg.batch_size == 0 {
        return Err(ConfigError::new(format!(
            "{path}: maintenance.batch_size: must be at least 1"
        ))
        .into());
    }
    let days = older_than_days.unwrap_or(cfg.journal_retention_days);
    if i32::try_from(days).is_err() {
        return Err(ConfigError::new(format!("--older-than-days {days}: too large")).into());
    }
    let mut report = CleanupReport {
        targets: Vec::new(),
        journal_table: table.to_string(),
        older_than_days: days,
        dry_run,
        privacy: privacy.then(Vec::new),
    };
    let journal_ref = table.clone();
    for target in &ctx.targets {
        let start = Instant::now();
        let item = match cleanup_on(ctx, target, &table, days, dry_run).await {
            Ok(r) => CleanupItem::Done(CleanupDone {
                target: target.name.clone(),
                status: State::Success,
                table: r.table,
                cutoff: r.cutoff,
                deleted: r.deleted,
                batches: r.batches,
                seconds: secs(start),
                would_delete: dry_run.then_some(r.would_delete),
            }),
            Err(e) => CleanupItem::Failed {
                target: target.name.clone(),
                status: "failed",
                error: failure(ctx, &target.name, &e),
                deleted: e
                    .downcast_ref::<Interrupted>()
                    .map(|i| i.deleted)
                    .unwrap_or(0),
                seconds: secs(start),
            },
        };
        report.targets.push(item);
        if let Some(p) = report.privacy.as_mut() {
            p.push(privacy_purge(ctx, target, &journal_ref, dry_run).await);
        }
    }
    Ok(Outcome::from_report(&report))
}

/// What `cleanup` purged (or, with `--dry-run`, would purge) on each target.
struct CleanupReport {
    targets: Vec<CleanupItem>,
    /// The configured journal table, shown in the row of a target that failed.
    journal_table: String,
    older_than_days: u32,
    dry_run: bool,
    /// With `--privacy`: the retention purge of each target.
    privacy: Option<Vec<PerTarget<PrivacyPurged>>>,
}

/// What `--privacy` purged on a target: each personal table's old rows, children first.
#[derive(Debug, Serialize)]
struct PrivacyPurged {
    target: String,
    status: &'static str,
    tables: Vec<PrivacyTable>,
}

#[derive(Debug, Serialize)]
struct PrivacyTable {
    table: String,
    column: Option<String>,
    years: u32,
    cutoff: String,
    /// Rows past retention found by the plan (with --dry-run: what would be deleted).
    older: u64,
    deleted: u64,
    batches: u64,
}

/// The retention purge of one target (`maintenance cleanup --privacy`): each batch is one
/// DELETE that commits on its own, tables children first.
async fn privacy_purge(
    ctx: &Ctx,
    target: &Target,
    journal: &TableRef,
    dry_run: bool,
) -> PerTarget<PrivacyPurged> {
    let work = async {
        let mut conn: Conn = engine::connect(target).await?;
        m::lift_statement_timeout(&mut conn).await?;
        let sql = crate::privacy::erase::Sql::of(target.engine)?;
        let plan = crate::privacy::retention::plan(
            &conn,
            sql,
            &ctx.config.privacy,
            &ctx.config.erasure,
            journal,
            &ctx.config.maintenance.journal_time_column,
            ctx.config.maintenance.batch_size.max(1),
            chrono::Utc::now(),
        )
        .await?;
        let mut tables = Vec::new();
        for p in &plan {
            let mut t = PrivacyTable {
                table: p.table.clone(),
                column: p.column.clone(),
                years: p.years,
                cutoff: p.cutoff.clone(),
                older: p.rows,
                deleted: 0,
                batches: if dry_run { p.batches } else { 0 },
            };
            if !dry_run && p.column.is_some() {
                loop {
                    let n = crate::privacy::retention::purge_batch(&conn, p).await?;
                    if n == 0 {
                        break;
                    }
                    t.deleted += n;
                    t.batches += 1;
                }
            }
            tables.push(t);
        }
        anyhow::Ok(PrivacyPurged {
            target: target.name.clone(),
            status: "success",
            tables,
        })
    };
    match work.await {
        Ok(d) => PerTarget::Done(d),
        Err(e) => PerTarget::Failed(crate::cmd::TargetFailed {
            error: failure(ctx, &target.name, &e),
            target: target.name.clone(),
            status: "failed",
        }),
    }
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum CleanupItem {
    Done(CleanupDone),
    /// A target that failed, with the rows an interrupted purge deleted for good.
    Failed {
        target: String,
        status: &'static str,
        error: String,
        deleted: u64,
        seconds: f64,
    },
}

#[derive(Debug, Serialize)]
struct CleanupDone {
    target: String,
    status: State,
    table: String,
    cutoff: String,
    deleted: u64,
    batches: u64,
    seconds: f64,
    /// With `--dry-run`: the rows a purge would delete.
    #[serde(skip_serializing_if = "Option::is_none")]
    would_delete: Option<u64>,
}

impl Report for CleanupReport {
    fn status(&self) -> Status {
        Status::of_operation(
            self.targets
                .iter()
                .any(|t| matches!(t, CleanupItem::Failed { .. }))
                || self
                    .privacy
                    .as_ref()
                    .is_some_and(|p| p.iter().any(PerTarget::failed)),
        )
    }

    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("targets".into(), json!(self.targets));
        m.insert("older_than_days".into(), json!(self.older_than_days));
        if let Some(p) = &self.privacy {
            m.insert("privacy".into(), json!(p));
        }
        if self.dry_run {
            m.insert("dry_run".into(), json!(true));
        }
        m
    }

    fn tables(&self) -> Vec<TableBlock> {
        let mut block = TableBlock::new([
            "target",
            "table",
            "older than",
            "deleted",
            "batches",
            "seconds",
            "status",
        ]);
        for t in &self.targets {
            match t {
                CleanupItem::Done(d) => block.row([
                    d.target.clone(),
                    d.table.clone(),
                    d.cutoff.clone(),
                    match d.would_delete {
                        Some(n) => format!("{n} (would delete)"),
                        None => d.deleted.to_string(),
                    },
                    d.batches.to_string(),
                    format!("{:.2}", d.seconds),
                    "success".into(),
                ]),
                CleanupItem::Failed {
                    target, seconds, ..
                } => block.row([
                    target.clone(),
                    self.journal_table.clone(),
                    String::new(),
                    String::new(),
                    String::new(),
                    format!("{seconds:.2}"),
                    "FAILED".into(),
                ]),
            }
        }
        let mut out = vec![block];
        if let Some(p) = &self.privacy {
            let mut b = TableBlock::new([
                "target",
                "table",
                "age column",
                "older than",
                "past retention",
                "deleted",
                "batches",
            ])
            .titled("privacy retention purge (children first)");
            for d in p.iter().filter_map(PerTarget::done) {
                for t in &d.tables {
                    b.row([
                        d.target.clone(),
                        t.table.clone(),
                        t.column.clone().unwrap_or_else(|| "(none known)".into()),
                        t.cutoff.clone(),
                        t.older.to_string(),
                        if self.dry_run {
                            format!("{} (would delete)", t.older)
                        } else {
                            t.deleted.to_string()
                        },
                        t.batches.to_string(),
                    ]);
                }
            }
            out.push(b);
        }
        out
    }

    fn lines(&self) -> Vec<String> {
        let mut l: Vec<String> = self
            .targets
            .iter()
            .filter_map(|t| match t {
                CleanupItem::Done(_) => None,
                CleanupItem::Failed { target, error, .. } => {
                    Some(format!("{target}: FAILED: {error}"))
                }
            })
            .collect();
        if let Some(p) = &self.privacy {
            l.extend(
                failure_lines(p)
                    .into_iter()
                    .map(|x| format!("privacy purge: {x}")),
            );
        }
        l
    }
}

struct Cleaned {
    table: String,
    cutoff: String,
    deleted: u64,
    batches: u64,
    would_delete: u64,
}

/// A purge that failed after some batches had committed: those rows are gone for good, and
/// the report says how many.
#[derive(Debug)]
struct Interrupted {
    deleted: u64,
    batches: u64,
    cause: String,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (after {} batch(es) that deleted {} row(s), which stay deleted)",
            self.cause, self.batches, self.deleted
        )
    }
}

impl std::error::Error for Interrupted {}

async fn cleanup_on(
    ctx: &Ctx,
    target: &Target,
    table: &TableRef,
    days: u32,
    dry_run: bool,
) -> Result<Cleaned> {
    let cfg = &ctx.config.maintenance;
    let mut conn: Conn = engine::connect(target).await?;
    m::lift_statement_timeout(&mut conn).await?;
    let plan = m::purge_plan(
        &mut conn,
        table,
        &cfg.journal_time_column,
        days,
        cfg.batch_size,
    )
    .await?;
    let mut done = Cleaned {
        table: plan.table.clone(),
        cutoff: plan.cutoff.clone(),
        deleted: 0,
        batches: 0,
        would_delete: 0,
    };
    if dry_run {
        done.would_delete = m::purge_count(&mut conn, &plan).await?;
        return Ok(done);
    }
    ctx.log.debug(format!(
        "{}: deleting rows of {} older than {} in batches of {}",
        target.name, plan.table, plan.cutoff, cfg.batch_size
    ));
    // Until a batch finds nothing: rows are deleted oldest-first in short transactions, so
    // that locks are held briefly and an interruption keeps what was done.
    loop {
        let n = m::purge_batch(&mut conn, &plan).await.map_err(|e| {
            anyhow::Error::new(Interrupted {
                deleted: done.deleted,
                batches: done.batches,
                cause: format!("{e:#}"),
            })
        })?;
        if n == 0 {
            break;
        }
        done.deleted += n;
        done.batches += 1;
        ctx.log.debug(format!(
            "{}: batch {}: {n} row(s) deleted",
            target.name, done.batches
        ));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_shown_on_one_line() {
        assert_eq!(one_line("SELECT  a\n  FROM t", 100), "SELECT a FROM t");
        assert_eq!(one_line("abcdef", 3), "abc…");
    }

    #[test]
    fn slow_query_times_are_rounded_in_the_document_only() {
        let d = SlowDone {
            target: "pg".into(),
            status: State::Success,
            queries: vec![SlowQuery {
                calls: 3,
                total_ms: 0.049_96,
                mean_ms: 0.016_653_3,
                rows: 1,
                query: "SELECT\n  1".into(),
            }],
            notes: Vec::new(),
        };
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"target":"pg","status":"success","queries":[{"calls":3,"total_ms":0.05,"mean_ms":0.017,"rows":1,"query":"SELECT\n  1"}],"notes":[]}"#
        );
        assert_eq!(
            queries_block(&d).rows[0],
            ["3", "0.0", "0.02", "1", "SELECT 1"]
        );
    }

    #[test]
    fn a_cleanup_report_says_what_would_go_and_what_failed() {
        let r = CleanupReport {
            targets: vec![
                CleanupItem::Done(CleanupDone {
                    target: "pg".into(),
                    status: State::Success,
                    table: "metier.journal_audit".into(),
                    cutoff: "2025-01-01 00:00:00+00".into(),
                    deleted: 0,
                    batches: 0,
                    seconds: 0.0125,
                    would_delete: Some(7),
                }),
                CleanupItem::Failed {
                    target: "my".into(),
                    status: "failed",
                    error: "lock timeout".into(),
                    deleted: 4,
                    seconds: 1.5,
                },
            ],
            journal_table: "metier.journal_audit".into(),
            older_than_days: 30,
            dry_run: true,
            privacy: None,
        };
        assert_eq!(r.status(), Status::Failed);
        assert_eq!(
            serde_json::to_string(&r.fields()).unwrap(),
            concat!(
                r#"{"targets":[{"target":"pg","status":"success","table":"metier.journal_audit","#,
                r#""cutoff":"2025-01-01 00:00:00+00","deleted":0,"batches":0,"seconds":0.0125,"#,
                r#""would_delete":7},{"target":"my","status":"failed","error":"lock timeout","#,
                r#""deleted":4,"seconds":1.5}],"older_than_days":30,"dry_run":true}"#
            )
        );
        let rows = &r.tables()[0].rows;
        assert_eq!(rows[0][3], "7 (would delete)");
        assert_eq!(
            rows[1],
            ["my", "metier.journal_audit", "", "", "", "1.50", "FAILED"]
        );
        assert_eq!(r.lines(), ["my: FAILED: lock timeout"]);
    }

    #[test]
    fn an_interrupted_purge_says_what_stays_deleted() {
        let e = Interrupted {
            deleted: 4,
            batches: 2,
            cause: "lock timeout".into(),
        };
        assert_eq!(
            e.to_string(),
            "lock timeout (after 2 batch(es) that deleted 4 row(s), which stay deleted)"
        );
    }
}
