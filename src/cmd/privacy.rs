//! `privacy report`: the personal columns of the rules, and the rows past their retention
//! with the purge `maintenance cleanup --privacy` would run for them. A report: exit 0 when
//! it could be made, 1 when a target failed, 2 for a configuration error.

use anyhow::Result;
use chrono::Utc;
use serde_json::{json, Map, Value};

use crate::catalog::TableRef;
use crate::cli::PrivacyCommand;
use crate::cmd::{each, failure_lines, PerTarget};
use crate::engine::{self, Driver};
use crate::error::ConfigError;
use crate::output::{Outcome, Report, Status, TableBlock};
use crate::privacy::detect;
use crate::privacy::erase::Sql;
use crate::privacy::report::{ruled_columns, TargetReport};
use crate::privacy::retention;
use crate::Ctx;

pub async fn run(cmd: &PrivacyCommand, ctx: &Ctx) -> Result<Outcome> {
    match cmd {
        PrivacyCommand::Report => report(ctx).await,
    }
}

/// The journal table of `maintenance:`, checked.
pub fn journal_table(ctx: &Ctx) -> Result<TableRef> {
    TableRef::parse(&ctx.config.maintenance.journal_table).map_err(|_| {
        ConfigError::new(format!(
            "{}: maintenance.journal_table: `{}` is not SCHEMA.TABLE",
            ctx.config.path.display(),
            ctx.config.maintenance.journal_table
        ))
        .into()
    })
}

async fn report(ctx: &Ctx) -> Result<Outcome> {
    let journal = journal_table(ctx)?;
    let batch = ctx.config.maintenance.batch_size.max(1);
    let targets = each(
        ctx,
        &ctx.targets,
        |t| t,
        |target| {
            let journal = &journal;
            async move {
                let conn = engine::connect_probe(target).await?;
                let sql = Sql::of(target.engine)?;
                let rel = conn.relations().await?;
                let retention = retention::plan(
                    &conn,
                    sql,
                    &ctx.config.privacy,
                    &ctx.config.erasure,
                    journal,
                    &ctx.config.maintenance.journal_time_column,
                    batch,
                    Utc::now(),
                )
                .await?;
                Ok(TargetReport {
                    target: target.name.clone(),
                    status: "success",
                    columns: ruled_columns(&ctx.config.privacy, &rel),
                    suspected: detect::suspected_columns(&conn, &ctx.config.privacy).await?,
                    retention,
                    batch_size: batch,
                })
            }
        },
    )
    .await;
    Ok(Outcome::from_report(&PrivacyReport { targets }))
}

struct PrivacyReport {
    targets: Vec<PerTarget<TargetReport>>,
}

impl Report for PrivacyReport {
    fn status(&self) -> Status {
        Status::of_operation(self.targets.iter().any(PerTarget::failed))
    }

    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("targets".into(), json!(self.targets));
        m
    }

    fn tables(&self) -> Vec<TableBlock> {
        let mut out = Vec::new();
        for d in self.targets.iter().filter_map(PerTarget::done) {
            let mut b = TableBlock::new(["column", "strategy", "on the target"])
                .titled(format!("{}: personal columns (privacy.rules)", d.target));
            for c in &d.columns {
                b.row([
                    c.column.clone(),
                    c.strategy.to_string(),
                    if c.present { "yes" } else { "MISSING" }.to_string(),
                ]);
            }
            out.push(b);
            let mut b = TableBlock::new(["column", "why it looks personal"]).titled(format!(
                "{}: personal-looking columns without a rule ({}; anonymize refuses them)",
                d.target,
                d.suspected.len()
            ));
            for s in &d.suspected {
                b.row([s.column.to_string(), s.reason.clone()]);
            }
            out.push(b);
            let mut b = TableBlock::new([
                "table",
                "age column",
                "retention",
                "older rows",
                "oldest",
                "purge batches",
            ])
            .titled(format!(
                "{}: rows past their retention (maintenance cleanup --privacy, {} rows per batch)",
                d.target, d.batch_size
            ));
            for r in &d.retention {
                b.row([
                    r.table.clone(),
                    r.column
                        .clone()
                        .unwrap_or_else(|| "(none known: not purged)".into()),
                    format!("{} years", r.years),
                    r.rows.to_string(),
                    r.oldest.clone().unwrap_or_default(),
                    r.batches.to_string(),
                ]);
            }
            out.push(b);
        }
        out
    }

    fn lines(&self) -> Vec<String> {
        failure_lines(&self.targets)
    }
}
