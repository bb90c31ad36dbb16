//! `anonymize --into DB (FILE | --latest) [--allow-unruled]`, and `restore --anonymize`:
//! a pseudonymised copy of a backup in a new database (see `crate::privacy::anonymize`).
//!
//! One target, one copy: the report lists every rule applied (the copy's manifest, also
//! stored in it), the columns copied without a rule, and the key's fingerprint.

use anyhow::Result;
use serde_json::{json, Map, Value};

use crate::cli::{AnonymizeArgs, RestoreArgs};
use crate::cmd::restore::backups_to_restore;
use crate::error::ConfigError;
use crate::output::{Outcome, Report, Status, TableBlock};
use crate::privacy::anonymize::{self, Copy, Request};
use crate::Ctx;

pub async fn run(args: &AnonymizeArgs, ctx: &Ctx) -> Result<Outcome> {
    copy(
        args.file.as_deref(),
        &args.into,
        args.allow_unruled,
        args.jobs,
        ctx,
    )
    .await
}

/// `restore --anonymize --into DB`: the same copy.
pub async fn from_restore(args: &RestoreArgs, ctx: &Ctx) -> Result<Outcome> {
    let into = args
        .into
        .as_deref()
        .ok_or_else(|| ConfigError::new("--anonymize needs --into DB, a new database"))?;
    copy(
        args.file.as_deref(),
        into,
        args.allow_unruled,
        args.jobs,
        ctx,
    )
    .await
}

async fn copy(
    file: Option<&std::path::Path>,
    into: &str,
    allow_unruled: bool,
    jobs: u32,
    ctx: &Ctx,
) -> Result<Outcome> {
    // The key first: without it nothing is restored.
    ctx.config.privacy.key()?;
    let backups = backups_to_restore(file, ctx).await?;
    if backups.len() != 1 {
        return Err(
            ConfigError::new("anonymize makes one copy: select a single target (use -t)").into(),
        );
    }
    let (target, entry, _copy) = &backups[0];
    let done = anonymize::run(
        &Request {
            target,
            entry,
            into,
            privacy: &ctx.config.privacy,
            allow_unruled,
            jobs,
        },
        &ctx.log,
    )
    .await?;
    Ok(Outcome::from_report(&AnonymizeReport { copy: done }))
}

struct AnonymizeReport {
    copy: Copy,
}

impl Report for AnonymizeReport {
    fn status(&self) -> Status {
        Status::Success
    }

    fn fields(&self) -> Map<String, Value> {
        let c = &self.copy;
        let mut m = Map::new();
        m.insert(
            "anonymized".into(),
            json!({
                "target": c.target,
                "file": c.file,
                "sha256": c.sha256,
                "into": c.into,
                "key_fingerprint": c.key_fingerprint,
                "seconds": (c.seconds * 1000.0).round() / 1000.0,
                "rules": c.rules,
                "unruled": c.unruled,
            }),
        );
        m
    }

    fn tables(&self) -> Vec<TableBlock> {
        let c = &self.copy;
        let mut rules = TableBlock::new(["column", "strategy", "rows", "checked"]).titled(format!(
            "{} -> {} (target {}, key {}, {:.1} s)",
            c.file, c.into, c.target, c.key_fingerprint, c.seconds
        ));
        for r in &c.rules {
            rules.row([
                r.column.clone(),
                r.strategy.to_string(),
                r.rows.to_string(),
                r.checked.to_string(),
            ]);
        }
        let mut out = vec![rules];
        if !c.unruled.is_empty() {
            let mut t = TableBlock::new(["column", "why it looks personal"])
                .titled("copied without a rule");
            for s in &c.unruled {
                t.row([s.column.to_string(), s.reason.clone()]);
            }
            out.push(t);
        }
        out
    }
}
