//! A pseudonymised copy of a backup: restored into a new database with every ruled column
//! rewritten as the rows stream from the backup to the server (one pass per table: the
//! copy is never written with the originals), checked on a sample, marked.
//!
//! Order matters for safety. The key is read and the destination refused if it exists before
//! anything is created; the new database is dropped on any failure (and on a stop, through
//! [`Created`]); the rules are checked against the restored tables before a single row is
//! loaded; once loaded, columns that look personal without a rule stop the run (unless
//! allowed), and the first rows of each ruled table are read again: any original value
//! still there fails the run. The key never leaves this process.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::backup::{self, Entry};
use crate::catalog::TableRef;
use crate::config::Target;
use crate::engine::cleanup::Created;
use crate::engine::{self, Driver};
use crate::error::ConfigError;
use crate::log::Log;
use crate::privacy::detect::{self, Suspect};
use crate::privacy::plan::{self, Action, Marker};
use crate::privacy::transform::Rewrites;
use crate::privacy::{PrivacyKey, PrivacySection, Strategy};

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
        let rules = req.privacy.rules.clone();
        let domain = req.privacy.email_domain.clone();
        let prepare_key = key.clone();
        let prepare: engine::PrepareRewrites<'_> = Box::new(move |columns| {
            Box::pin(async move {
                // Impossible rules are refused here, before a single row is loaded.
                let plans = plan::plan(&rules, &columns)?;
                Ok(Arc::new(Rewrites::new(plans, &prepare_key, &domain)))
            })
        });
        let rewrites = engine::restore_rewritten(
            target,
            &req.entry.source(),
            req.into,
            req.jobs,
            &manifest.tables,
            prepare,
        )
        .await
        .context("restoring the backup into the new database, the rules applied")?;
        log.info(format!(
            "{}: {} restored into {}, rules applied; checking",
            target.name,
            req.entry.file_name(),
            req.into
        ));
        let conn = engine::connect(&target.with_database(req.into)).await?;
        let (applied, unruled) = check(&conn, req, &rewrites, log).await?;
        let marker = Marker {
            at: chrono::Utc::now(),
            backup_file: req.entry.file_name(),
            backup_sha256: manifest.sha256.clone(),
            key_fingerprint: fingerprint(&key),
            rules_json: serde_json::to_string(&applied)?,
        };
        let tables: Vec<TableRef> = rewrites.plans().iter().map(|p| p.table.clone()).collect();
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

/// After the load: columns that look personal without a rule stop the run (unless
/// allowed), and the sampled rows of every ruled column are read again: an original value
/// still there fails it.
async fn check(
    conn: &engine::Conn,
    req: &Request<'_>,
    rewrites: &Rewrites,
    log: &Log,
) -> Result<(Vec<Applied>, Vec<Suspect>)> {
    let columns = conn.privacy_columns().await?;
    // The rules are checked again against the finished copy, constraints and all: what
    // was applied must be what its tables allow.
    let now = plan::plan(&req.privacy.rules, &columns)?;
    for p in rewrites.plans() {
        let same = now.iter().find(|n| n.table == p.table).is_some_and(|n| {
            n.columns
                .iter()
                .map(|c| (&c.column, &c.action))
                .eq(p.columns.iter().map(|c| (&c.column, &c.action)))
        });
        if !same {
            anyhow::bail!(
                "{}: the rules applied while loading differ from those the finished copy allows",
                p.table
            );
        }
    }
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
    let made = rewrites.made();
    let mut checked: HashMap<String, usize> = HashMap::new();
    let mut left = Vec::new();
    for p in rewrites.plans() {
        let Some(r) = made.iter().find(|r| r.table == p.table) else {
            continue;
        };
        log.info(format!(
            "{}: {}: {} rows rewritten ({} columns)",
            req.target.name,
            p.table,
            r.rows(),
            p.columns.len()
        ));
        let sampled = r.sampled();
        let Some(key) = &sampled.key else {
            if r.rows() > 0 {
                log.warn(format!(
                    "{}: {} has no one-column primary key: its values are not checked after the load",
                    req.target.name, p.table
                ));
            }
            continue;
        };
        for (c, (name, originals)) in p.columns.iter().zip(&sampled.columns) {
            let keys: Vec<String> = originals.keys().cloned().collect();
            let now = if keys.is_empty() {
                Vec::new()
            } else {
                conn.values_by_key(&p.table, name, key, &keys).await?
            };
            let mut same = 0;
            for (k, after) in &now {
                let Some(before) = originals.get(k) else {
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
            if now.len() < keys.len() {
                left.push(format!(
                    "{}.{name}: {} of {} sampled rows cannot be found again by {key}",
                    p.table,
                    keys.len() - now.len(),
                    keys.len()
                ));
            }
            checked.insert(format!("{}.{name}", p.table), now.len());
            if same > 0 {
                left.push(format!(
                    "{}.{name}: {same} of {} sampled rows still hold their original value",
                    p.table,
                    now.len()
                ));
            }
        }
    }
    if !left.is_empty() {
        anyhow::bail!(
            "the copy still holds original values:\n  {}",
            left.join("\n  ")
        );
    }
    let applied = req
        .privacy
        .rules
        .iter()
        .map(|(rule, strategy)| {
            let table = TableRef::new(rule.schema.clone(), rule.table.clone());
            let ruled = *strategy != Strategy::Keep;
            Applied {
                column: rule.to_string(),
                strategy: strategy.as_str(),
                rows: made
                    .iter()
                    .find(|r| ruled && r.table == table)
                    .map_or(0, |r| r.rows()),
                checked: checked.get(&rule.to_string()).copied().unwrap_or(0),
            }
        })
        .collect();
    Ok((applied, suspects))
}
