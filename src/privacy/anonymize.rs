//! A pseudonymised copy of a backup: restored into a new database, every ruled column
//! rewritten by the server in one UPDATE per table, checked on a sample, marked.
//!
//! Order matters for safety. The key is read and the destination refused if it exists before
//! anything is created; the new database is dropped on any failure (and on a stop, through
//! [`Created`]); the rules are checked against the restored columns, and columns that look
//! personal without a rule stop the run (unless allowed) before a single value is changed;
//! after the UPDATEs, sampled rows are read again and any original value still there fails
//! the run. The key never leaves [`PrivacyKey`] but as the padded keys bound to the UPDATE.

use std::collections::HashMap;

use anyhow::{Context, Result};

use crate::backup::{self, Entry};
use crate::catalog::TableRef;
use crate::config::Target;
use crate::engine::cleanup::Created;
use crate::engine::{self, Driver};
use crate::error::ConfigError;
use crate::log::Log;
use crate::privacy::detect::{self, Suspect};
use crate::privacy::plan::{self, Action, Marker, Secrets, TablePlan};
use crate::privacy::{PrivacyKey, PrivacySection, Strategy};

/// Rows sampled per ruled column for the check after the update.
pub const CHECK_ROWS: u32 = 1000;
/// What the key fingerprint is the HMAC of.
const FINGERPRINT_LABEL: &[u8] = b"mairie-dba key fingerprint";

pub struct Request<'a> {
    pub target: &'a Target,
    pub entry: &'a Entry,
    pub into: &'a str,
    pub privacy: &'a PrivacySection,
    pub allow_unruled: bool,
    pub jobs: u32,
}

/// One rule as applied.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Applied {
    pub column: String,
    pub strategy: &'static str,
    /// Rows of its table the UPDATE rewrote (0 for `keep`).
    pub rows: u64,
    /// Sampled values checked after the update.
    pub checked: usize,
}

/// What a finished copy is.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Copy {
    pub target: String,
    pub file: String,
    pub sha256: String,
    pub into: String,
    pub key_fingerprint: String,
    pub rules: Vec<Applied>,
    /// Columns that look personal and have no rule, copied as they are (`--allow-unruled`).
    pub unruled: Vec<Suspect>,
    pub seconds: f64,
}

/// The first 8 hex of the key's HMAC of a fixed label: names the key without revealing it.
pub fn fingerprint(key: &PrivacyKey) -> String {
    key.hash_hex(FINGERPRINT_LABEL)[..8].to_string()
}

/// Makes the copy. Errors that a better configuration or command line avoids are
/// [`ConfigError`]s (exit 2); the new database is gone whenever this fails.
pub async fn run(req: &Request<'_>, log: &Log) -> Result<Copy> {
    let start = std::time::Instant::now();
    let key = req.privacy.key()?;
    let target = req.target;
    if engine::database_exists(target, req.into).await? {
        return Err(ConfigError::new(format!(
            "database {} already exists on target `{}`: anonymize makes a new database; \
             choose another name with --into (or drop that one first)",
            req.into, target.name
        ))
        .into());
    }
    let manifest = backup::check_hash(req.entry).context("refusing to copy a damaged backup")?;
    engine::create_marked(
        target,
        req.into,
        &format!(
            "mairie-dba anonymize in progress: pid {}",
            std::process::id()
        ),
    )
    .await?;
    let guard = Created::register(target, req.into);
    let res = async {
        engine::restore(
            target,
            &req.entry.source(),
            req.into,
            false,
            req.jobs,
            &manifest.tables,
        )
        .await
        .context("restoring the backup into the new database")?;
        log.info(format!(
            "{}: {} restored into {}; applying the rules",
            target.name,
            req.entry.file_name(),
            req.into
        ));
        let conn = engine::connect(&target.with_database(req.into)).await?;
        let (applied, unruled) = pseudonymize(&conn, req, &key, log).await?;
        let marker = Marker {
            at: chrono::Utc::now(),
            backup_file: req.entry.file_name(),
            backup_sha256: manifest.sha256.clone(),
            key_fingerprint: fingerprint(&key),
            rules_json: serde_json::to_string(&applied)?,
        };
        let tables: Vec<TableRef> = req
            .privacy
            .rules
            .iter()
            .filter(|(_, s)| *s != Strategy::Keep)
            .map(|(c, _)| TableRef::new(c.schema.clone(), c.table.clone()))
            .fold(Vec::new(), |mut v, t| {
                if !v.contains(&t) {
                    v.push(t);
                }
                v
            });
        conn.mark_pseudonymized(&marker, &tables).await?;
        Ok::<_, anyhow::Error>((applied, unruled, marker))
    }
    .await;
    match res {
        Ok((rules, unruled, marker)) => {
            guard.keep();
            Ok(Copy {
                target: target.name.clone(),
                file: marker.backup_file,
                sha256: marker.backup_sha256,
                into: req.into.to_string(),
                key_fingerprint: marker.key_fingerprint,
                rules,
                unruled,
                seconds: start.elapsed().as_secs_f64(),
            })
        }
        Err(e) => {
            let note = guard.abandon().await;
            Err(e.context(note.replace("this restore", "this anonymize")))
        }
    }
}

/// A sample of one column's original values, by row key.
struct Sample {
    plan: usize,
    column: usize,
    originals: HashMap<String, String>,
}

async fn pseudonymize(
    conn: &engine::Conn,
    req: &Request<'_>,
    key: &PrivacyKey,
    log: &Log,
) -> Result<(Vec<Applied>, Vec<Suspect>)> {
    let columns = conn.privacy_columns().await?;
    let plans = plan::plan(&req.privacy.rules, &columns)?;
    let suspects = detect::suspects_among(conn, req.privacy, &columns).await?;
    if !suspects.is_empty() {
        let list: Vec<String> = suspects
            .iter()
            .map(|s| format!("  {} ({})", s.column, s.reason))
            .collect();
        if !req.allow_unruled {
            return Err(ConfigError::new(format!(
                "these columns look personal and have no rule in privacy.rules:\n{}\n\
                 give each a rule (keep, if it is not personal), or copy them as they are \
                 with --allow-unruled",
                list.join("\n")
            ))
            .into());
        }
        log.warn(format!(
            "{}: copied as they are (--allow-unruled), though they look personal:\n{}",
            req.target.name,
            list.join("\n")
        ));
    }
    // The originals of a sample of rows, to be sure afterwards that none is left.
    let mut samples = Vec::new();
    for (pi, p) in plans.iter().enumerate() {
        let Some(k) = &p.key else {
            log.warn(format!(
                "{}: {} has no one-column primary key: its values are not checked after the update",
                req.target.name, p.table
            ));
            continue;
        };
        for (ci, c) in p.columns.iter().enumerate() {
            let rows = conn
                .sample_column(&p.table, &c.column, Some(k), CHECK_ROWS)
                .await?;
            let originals = rows
                .into_iter()
                .filter_map(|(k, v)| Some((k?, v?)))
                .collect();
            samples.push(Sample {
                plan: pi,
                column: ci,
                originals,
            });
        }
    }
    let (inner, outer) = key.hmac_pads();
    let secrets = Secrets {
        inner,
        outer,
        email_domain: req.privacy.email_domain.clone(),
    };
    let mut rows_of = Vec::new();
    for p in &plans {
        let n = conn.pseudonymize(p, &secrets).await?;
        log.info(format!(
            "{}: {}: {n} rows rewritten ({} columns)",
            req.target.name,
            p.table,
            p.columns.len()
        ));
        rows_of.push(n);
    }
    let mut checked: HashMap<(usize, usize), usize> = HashMap::new();
    let mut left = Vec::new();
    for s in &samples {
        let p: &TablePlan = &plans[s.plan];
        let c = &p.columns[s.column];
        let keys: Vec<String> = s.originals.keys().cloned().collect();
        let now = conn
            .values_by_key(&p.table, &c.column, p.key.as_deref().unwrap_or(""), &keys)
            .await?;
        let mut same = 0;
        for (k, after) in &now {
            let Some(before) = s.originals.get(k) else {
                continue;
            };
            let bad = match (&c.action, after) {
                (Action::Null, v) => v.is_some(),
                (_, None) => false,
                (a, Some(v)) => {
                    v == before
                        && plan::generalized_text(a, before).as_deref() != Some(before.as_str())
                }
            };
            if bad {
                same += 1;
            }
        }
        checked.insert((s.plan, s.column), now.len());
        if same > 0 {
            left.push(format!(
                "{}.{}: {same} of {} sampled rows still hold their original value",
                p.table,
                c.column,
                now.len()
            ));
        }
    }
    if !left.is_empty() {
        anyhow::bail!(
            "the copy still holds original values:\n  {}",
            left.join("\n  ")
        );
    }
    let mut applied = Vec::new();
    for (rule, strategy) in &req.privacy.rules {
        let found = plans.iter().enumerate().find_map(|(pi, p)| {
            (p.table.schema == rule.schema && p.table.name == rule.table)
                .then(|| {
                    p.columns
                        .iter()
                        .position(|c| c.column == rule.column)
                        .map(|ci| (pi, ci))
                })
                .flatten()
        });
        applied.push(Applied {
            column: rule.to_string(),
            strategy: strategy.as_str(),
            rows: found.map_or(0, |(pi, _)| rows_of[pi]),
            checked: found.and_then(|f| checked.get(&f).copied()).unwrap_or(0),
        });
    }
    Ok((applied, suspects))
}
