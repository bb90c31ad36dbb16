//! `erase --table SCHEMA.TABLE --where COL=VALUE [--dry-run] [--all-matching]`: a person's
//! rows and every row that belongs to them, deleted or pseudonymised in one transaction
//! ([`crate::privacy::erase`]), recorded without any personal value, and the backups that
//! still hold them with the date retention removes them.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::backup;
use crate::catalog::TableRef;
use crate::cli::EraseArgs;
use crate::cmd::{done_blocks, each, failure_lines, PerTarget};
use crate::config::Target;
use crate::engine;
use crate::output::{Outcome, Report, Status, TableBlock};
use crate::privacy::erase::{self as er, PlanTable, Record, Sql};
use crate::Ctx;

pub async fn run(args: &EraseArgs, ctx: &Ctx) -> Result<Outcome> {
    let subject = TableRef::parse(&args.table)?;
    let (column, value) = er::parse_where(&args.r#where)?;
    if ctx.config.erasure.subject != subject.to_string() {
        ctx.log.warn(format!(
            "--table {subject} is not `erasure.subject` ({}): its rows are erased as subjects all the same",
            ctx.config.erasure.subject
        ));
    }
    // The key is needed to record the erasure; a dry run records nothing.
    let key = if args.dry_run {
        ctx.config.privacy.key().ok()
    } else {
        Some(ctx.config.privacy.key()?)
    };
    let hash = key
        .as_ref()
        .map(|k| k.hash_hex(er::subject_text(&subject, &column, &value).as_bytes()));
    let report = EraseReport {
        dry_run: args.dry_run,
        targets:
            each(
                ctx,
                &ctx.targets,
                |t| t,
                |target| {
                    let (subject, column, value, hash) = (&subject, &column, &value, &hash);
                    async move {
                        erase_on(ctx, args, target, subject, column, value, hash.as_deref()).await
                    }
                },
            )
            .await,
    };
    Ok(Outcome::from_report(&report))
}

async fn erase_on(
    ctx: &Ctx,
    args: &EraseArgs,
    target: &Target,
    subject: &TableRef,
    column: &str,
    value: &str,
    hash: Option<&str>,
) -> Result<EraseDone> {
    let conn = engine::connect(target).await?;
    let sql = Sql::of(target.engine)?;
    let plan = er::plan(
        &conn,
        sql,
        &ctx.config.erasure,
        &ctx.config.privacy,
        &ctx.config.maintenance.journal_table,
        subject,
        column,
        value,
    )
    .await?;
    // The value is never repeated: it may be an e-mail address or a name.
    if plan.subjects == 0 {
        bail!("no row of {subject} matches the given {column}: nothing erased");
    }
    if plan.subjects > 1 && !args.all_matching {
        bail!(
            "{} rows of {subject} match the given {column}: nothing erased; \
             name one person (e.g. by id), or give --all-matching to erase them all",
            plan.subjects
        );
    }
    if plan.subjects > 1 {
        ctx.log.warn(format!(
            "{}: {} rows of {subject} match: all of them are erased (--all-matching)",
            target.name, plan.subjects
        ));
    }
    for n in &plan.notes {
        ctx.log.warn(format!("{}: {n}", target.name));
    }
    let mut done = EraseDone {
        target: target.name.clone(),
        status: "success",
        subject_table: subject.to_string(),
        subjects: plan.subjects,
        subject_hash: hash.map(str::to_string),
        plan: plan.tables.clone(),
        placeholder: plan.placeholder.map(|exists| {
            if exists {
                "existing".to_string()
            } else if args.dry_run {
                "would be created".to_string()
            } else {
                "created".to_string()
            }
        }),
        erased: None,
        record: None,
        backups: Vec::new(),
    };
    if args.dry_run {
        return Ok(done);
    }
    let hash = hash.expect("a real run has the key");
    er::ensure_bookkeeping(&conn, sql).await?;
    let (applied, record) = er::apply(&conn, sql, &ctx.config.privacy, &plan, hash).await?;
    done.erased = Some(applied.counts);
    let now = Utc::now();
    done.backups = backups_holding(ctx, target, subject, now)?;
    done.record = Some(record);
    Ok(done)
}

/// A backup taken before the erasure that still holds the subject.
#[derive(Debug, Clone, Serialize)]
pub struct HeldIn {
    pub file: String,
    pub taken_at: DateTime<Utc>,
    /// When retention may delete it: `retention_days` after it was taken …
    pub removed_after: DateTime<Utc>,
    /// … provided `keep_min` newer good backups exist by then (false: they do already).
    pub waits_for_newer: bool,
}

/// The good backups of the target that list the subject table and were taken before `now`,
/// with the date retention (`retention_days`, `keep_min`) deletes each.
fn backups_holding(
    ctx: &Ctx,
    target: &Target,
    subject: &TableRef,
    now: DateTime<Utc>,
) -> Result<Vec<HeldIn>> {
    let Some(cfg) = ctx.config.backup.get(&target.name) else {
        return Ok(Vec::new());
    };
    let mut entries = backup::entries_of(&ctx.config, target, cfg, now)?;
    entries.retain(|e| e.is_good_for(&target.name));
    entries.sort_by_key(|e| std::cmp::Reverse(e.name.taken));
    let keep = cfg.keep_min.max(1) as usize;
    let subject_name = subject.to_string();
    Ok(entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            let m = e.manifest.as_ref().ok()?;
            if m.started_at > now {
                return None;
            }
            // MySQL manifests name tables as the server does (metier_citoyens).
            let listed = m.tables.is_empty()
                || m.tables.contains_key(&subject_name)
                || m.tables.contains_key(&subject.prefixed());
            if !listed {
                return None;
            }
            Some(HeldIn {
                file: e.file_name(),
                taken_at: e.name.taken.and_utc(),
                removed_after: e.name.taken.and_utc() + Duration::days(cfg.retention_days as i64),
                waits_for_newer: i < keep,
            })
        })
        .collect())
}

struct EraseReport {
    dry_run: bool,
    targets: Vec<PerTarget<EraseDone>>,
}

#[derive(Debug, Serialize)]
struct EraseDone {
    target: String,
    status: &'static str,
    subject_table: String,
    /// How many subject rows matched.
    subjects: u64,
    /// The keyed hash of `table:col=value` (absent in a dry run without the key).
    #[serde(skip_serializing_if = "Option::is_none")]
    subject_hash: Option<String>,
    plan: Vec<PlanTable>,
    #[serde(skip_serializing_if = "Option::is_none")]
    placeholder: Option<String>,
    /// Rows changed per table (absent in a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    erased: Option<BTreeMap<String, u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<Record>,
    backups: Vec<HeldIn>,
}

impl Report for EraseReport {
    fn status(&self) -> Status {
        Status::of_operation(self.targets.iter().any(PerTarget::failed))
    }

    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("targets".into(), json!(self.targets));
        if self.dry_run {
            m.insert("dry_run".into(), json!(true));
        }
        m
    }

    fn tables(&self) -> Vec<TableBlock> {
        let mut out = done_blocks(&self.targets, |d| plan_block(d, self.dry_run));
        for d in self.targets.iter().filter_map(PerTarget::done) {
            if !d.backups.is_empty() {
                let mut b = TableBlock::new(["backup", "taken", "retention removes it after"])
                    .titled(format!(
                        "{}: backups taken before the erasure that still hold the subject",
                        d.target
                    ));
                for h in &d.backups {
                    b.row([
                        h.file.clone(),
                        h.taken_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                        format!(
                            "{}{}",
                            h.removed_after.format("%Y-%m-%d"),
                            if h.waits_for_newer {
                                " (once keep_min newer backups exist)"
                            } else {
                                ""
                            }
                        ),
                    ]);
                }
                out.push(b);
            }
        }
        out
    }

    fn lines(&self) -> Vec<String> {
        let mut l = failure_lines(&self.targets);
        for d in self.targets.iter().filter_map(PerTarget::done) {
            if let Some(r) = &d.record {
                l.push(format!(
                    "{}: erased {} subject(s) of {}; recorded in {} as {} by {} ({})",
                    d.target,
                    d.subjects,
                    d.subject_table,
                    er::LOG_TABLE,
                    r.subject_hash,
                    r.db_user,
                    r.os_user
                ));
            } else if self.dry_run {
                l.push(format!("{}: dry run: nothing changed", d.target));
            }
        }
        l
    }
}

fn plan_block(d: &EraseDone, dry_run: bool) -> TableBlock {
    let mut b = TableBlock::new(["table", "action", "rows", "detail"]).titled(format!(
        "{}: {} {} subject row(s) of {}",
        d.target,
        if dry_run { "would erase" } else { "erased" },
        d.subjects,
        d.subject_table
    ));
    for p in &d.plan {
        let rows = d
            .erased
            .as_ref()
            .and_then(|e| e.get(&p.table))
            .copied()
            .unwrap_or(p.rows);
        let mut detail = Vec::new();
        if !p.relinked.is_empty() {
            detail.push(format!("relinked: {}", p.relinked.join("; ")));
        }
        if !p.scrubbed.is_empty() {
            detail.push(format!("cleared: {}", p.scrubbed.join(", ")));
        }
        b.row([
            p.table.clone(),
            p.action.clone(),
            rows.to_string(),
            detail.join(" · "),
        ]);
    }
    if let Some(ph) = &d.placeholder {
        b.row([
            d.subject_table.clone(),
            "placeholder row".into(),
            String::new(),
            ph.clone(),
        ]);
    }
    b
}
