//! Retention of personal data: rows older than their table's `privacy.retention_years`
//! (default 5), purged by `maintenance cleanup --privacy` and counted by `privacy report`.
//!
//! A row's age is measured, for the tables of the mairie model, by:
//!
//! | table | column | note |
//! |---|---|---|
//! | `metier.citoyens` | `date_inscription` | only citizens with no remaining rows in tables that reference them |
//! | `metier.demandes` | `date_cloture` | closed requests only (an open request has none) |
//! | `metier.rendez_vous` | `debut` | |
//! | the audit journal | `maintenance.journal_time_column` | |
//!
//! `privacy.retention_columns` names the column of any other table (or replaces one of
//! these). A table named in `privacy.retention_years`, `privacy.rules` or `erasure:` with
//! no known age column is reported without a purge.
//!
//! Every table's condition also requires that no row of a referencing table remains, unless
//! that row is itself purged (the condition is built recursively): tables are purged
//! children first, so a parent row goes once its children have; a row still referenced by a
//! younger row stays. Each batch is one DELETE of at most `maintenance.batch_size` rows,
//! committed on its own.

use std::collections::BTreeSet;

use anyhow::Result;
use chrono::{DateTime, Months, Utc};
use serde::Serialize;

use crate::catalog::TableRef;
use crate::engine::{Driver, RelTable, Relations};
use crate::error::ConfigError;
use crate::privacy::erase::Sql;
use crate::privacy::{ErasureSection, PrivacySection};

/// The column measuring a row's age in a table: the one `privacy.retention_columns` names,
/// else the model's, if known.
pub fn age_column(
    privacy: &PrivacySection,
    table: &TableRef,
    journal: &TableRef,
    journal_column: &str,
) -> Option<String> {
    if let Some(c) = privacy.retention_columns.get(&table.to_string()) {
        return Some(c.clone());
    }
    if table == journal {
        return Some(journal_column.to_string());
    }
    match table.to_string().as_str() {
        "metier.citoyens" => Some("date_inscription".into()),
        "metier.demandes" => Some("date_cloture".into()),
        "metier.rendez_vous" => Some("debut".into()),
        _ => None,
    }
}

/// The tables holding personal data: the erasure subject and tables, those with rules or a
/// retention, and the audit journal.
pub fn personal_tables(
    privacy: &PrivacySection,
    erasure: &ErasureSection,
    journal: &TableRef,
) -> Vec<TableRef> {
    let mut set = BTreeSet::new();
    let mut add = |s: &str| {
        if let Ok(t) = TableRef::parse(s) {
            set.insert(t);
        }
    };
    add(&erasure.subject);
    for t in erasure.tables.keys() {
        add(t);
    }
    for t in privacy.retention_years.keys() {
        add(t);
    }
    for t in privacy.retention_columns.keys() {
        add(t);
    }
    for (c, _) in &privacy.rules {
        add(&c.table_name());
    }
    set.insert(journal.clone());
    set.into_iter().collect()
}

/// One table's retention: its age column, cutoff, what is old, and the statements.
#[derive(Debug, Clone, Serialize)]
pub struct TablePurge {
    pub table: String,
    pub years: u32,
    /// None: no age column is known for the table; nothing is purged.
    pub column: Option<String>,
    pub cutoff: String,
    /// Rows older than the cutoff that the purge deletes.
    pub rows: u64,
    /// The oldest such row's date, as the server writes it.
    pub oldest: Option<String>,
    pub batches: u64,
    #[serde(skip)]
    batch_sql: String,
    #[serde(skip)]
    params: Vec<Option<String>>,
}

/// The cutoff `years` before `now`, as text the servers read (UTC).
pub fn cutoff(now: DateTime<Utc>, years: u32, sql: Sql) -> String {
    let t = now
        .checked_sub_months(Months::new(12 * years))
        .unwrap_or(now);
    match sql {
        Sql::Postgres => t.format("%Y-%m-%d %H:%M:%S+00").to_string(),
        _ => t.format("%Y-%m-%d %H:%M:%S").to_string(),
    }
}

struct Ctx<'a> {
    sql: Sql,
    rel: &'a Relations,
    /// Table -> (age column, cutoff).
    purged: Vec<(TableRef, String, String)>,
}

impl Ctx<'_> {
    /// The condition that a row of `t` (named `alias`) is purged.
    /// Its parameters are appended to `params` in the order they appear.
    fn eligible(
        &self,
        t: &TableRef,
        alias: &str,
        depth: usize,
        path: &mut Vec<TableRef>,
        params: &mut Vec<Option<String>>,
    ) -> String {
        let Some((_, col, cut)) = self.purged.iter().find(|(x, _, _)| x == t) else {
            return "1 = 0".into();
        };
        if path.contains(t) || depth > 8 {
            return "1 = 0".into();
        }
        path.push(t.clone());
        let rt = self.rel.table(t).expect("purged tables exist");
        let ty = &rt.column(col).expect("age column exists").sql_type;
        params.push(Some(cut.clone()));
        let mut cond = format!(
            "{alias}.{} < {}",
            self.sql.ident(col),
            self.sql.param(params.len(), ty)
        );
        for (i, fk) in self.rel.foreign_keys.iter().enumerate() {
            if &fk.parent != t || &fk.child == t {
                continue;
            }
            let Some(ct) = self.rel.table(&fk.child) else {
                continue;
            };
            let a = format!("r{depth}_{i}");
            let join = fk
                .columns
                .iter()
                .zip(&fk.parent_columns)
                .map(|(c, p)| format!("{a}.{} = {alias}.{}", self.sql.ident(c), self.sql.ident(p)))
                .collect::<Vec<_>>()
                .join(" AND ");
            let inner = self.eligible(&fk.child, &a, depth + 1, path, params);
            cond.push_str(&format!(
                " AND NOT EXISTS (SELECT 1 FROM {} {a} WHERE {join} AND NOT ({inner}))",
                ct.quoted
            ));
        }
        path.pop();
        cond
    }
}

/// Children before parents, among `tables`.
fn children_first(tables: &[TableRef], rel: &Relations) -> Vec<TableRef> {
    let mut left = tables.to_vec();
    let mut out = Vec::new();
    while !left.is_empty() {
        let at = left
            .iter()
            .position(|t| {
                !rel.foreign_keys
                    .iter()
                    .any(|f| &f.parent == t && &f.child != t && left.contains(&f.child))
            })
            .unwrap_or(0);
        out.push(left.remove(at));
    }
    out
}

/// Plans the purge of every personal table of the target, children first, with counts.
#[allow(clippy::too_many_arguments)]
pub async fn plan(
    conn: &impl Driver,
    sql: Sql,
    privacy: &PrivacySection,
    erasure: &ErasureSection,
    journal: &TableRef,
    journal_column: &str,
    batch: u32,
    now: DateTime<Utc>,
) -> Result<Vec<TablePurge>> {
    let rel = conn.relations().await?;
    let tables: Vec<TableRef> = personal_tables(privacy, erasure, journal)
        .into_iter()
        .filter(|t| rel.table(t).is_some())
        .collect();
    let mut purged = Vec::new();
    for t in &tables {
        let rt = rel.table(t).expect("filtered");
        let col = age_column(privacy, t, journal, journal_column);
        if let Some(c) = col
            .as_ref()
            .filter(|_| privacy.retention_columns.contains_key(&t.to_string()))
        {
            if rt.column(c).is_none() {
                return Err(ConfigError::new(format!(
                    "privacy.retention_columns.{t}: {t} has no column {c}"
                ))
                .into());
            }
        }
        if let Some(col) = col.filter(|c| rt.column(c).is_some()) {
            let cut = cutoff(now, privacy.retention_of(&t.to_string()), sql);
            purged.push((t.clone(), col, cut));
        }
    }
    let cx = Ctx {
        sql,
        rel: &rel,
        purged,
    };
    let mut out = Vec::new();
    for t in children_first(&tables, &rel) {
        let rt: &RelTable = rel.table(&t).expect("filtered");
        let years = privacy.retention_of(&t.to_string());
        let Some((_, col, cut)) = cx.purged.iter().find(|(x, _, _)| x == &t).cloned() else {
            out.push(TablePurge {
                table: t.to_string(),
                years,
                column: None,
                cutoff: cutoff(now, years, sql),
                rows: 0,
                oldest: None,
                batches: 0,
                batch_sql: String::new(),
                params: Vec::new(),
            });
            continue;
        };
        let alias = match sql {
            Sql::Mysql => rt.quoted.clone(),
            _ => "t0".to_string(),
        };
        let mut params = Vec::new();
        let cond = cx.eligible(&t, &alias, 0, &mut Vec::new(), &mut params);
        let from = match sql {
            Sql::Mysql => rt.quoted.clone(),
            _ => format!("{} t0", rt.quoted),
        };
        let count_sql = format!(
            "SELECT {}, {} FROM {from} WHERE {cond}",
            sql.text("COUNT(*)"),
            sql.text(&format!("MIN({alias}.{})", sql.ident(&col)))
        );
        let batch_sql = match sql {
            Sql::Postgres => {
                let pk = if rt.primary_key.is_empty() {
                    "ctid".to_string()
                } else {
                    let k: Vec<String> = rt.primary_key.iter().map(|c| sql.ident(c)).collect();
                    format!("({})", k.join(", "))
                };
                let inner_pk = if rt.primary_key.is_empty() {
                    "t0.ctid".to_string()
                } else {
                    rt.primary_key
                        .iter()
                        .map(|c| format!("t0.{}", sql.ident(c)))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                format!(
                    "DELETE FROM {} WHERE {pk} IN ({})",
                    rt.quoted,
                    sql.select_limited(&inner_pk, &from, &cond, batch)
                )
            }
            Sql::Mysql => format!("DELETE FROM {} WHERE {cond} LIMIT {batch}", rt.quoted),
            Sql::Mssql => format!("DELETE TOP ({batch}) FROM t0 FROM {from} WHERE {cond}"),
        };
        let r = conn.query_text(&count_sql, &params).await?;
        let rows: u64 = r
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let oldest = r.first().and_then(|r| r.get(1).cloned().flatten());
        out.push(TablePurge {
            table: t.to_string(),
            years,
            column: Some(col),
            cutoff: cut,
            rows,
            oldest,
            batches: rows.div_ceil(batch.max(1) as u64),
            batch_sql,
            params,
        });
    }
    Ok(out)
}

/// Deletes one batch of a table's old rows (the statement commits on its own); the rows
/// deleted.
pub async fn purge_batch(conn: &impl Driver, p: &TablePurge) -> Result<u64> {
    if p.batch_sql.is_empty() {
        return Ok(0);
    }
    conn.execute_text(&p.batch_sql, &p.params).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{RelColumn, RelForeignKey};

    fn rel() -> Relations {
        let col = |n: &str| RelColumn {
            name: n.into(),
            sql_type: "timestamptz".into(),
            nullable: true,
            text: false,
            temporal: true,
            has_default: false,
        };
        let t = |n: &str, cols: &[&str]| RelTable {
            table: TableRef::new("metier", n),
            quoted: format!("\"metier\".\"{n}\""),
            columns: cols.iter().map(|c| col(c)).collect(),
            primary_key: vec!["id".into()],
        };
        Relations {
            tables: vec![
                t("citoyens", &["id", "date_inscription"]),
                t("demandes", &["id", "citoyen_id", "date_cloture"]),
            ],
            foreign_keys: vec![RelForeignKey {
                name: "fk".into(),
                child: TableRef::new("metier", "demandes"),
                columns: vec!["citoyen_id".into()],
                parent: TableRef::new("metier", "citoyens"),
                parent_columns: vec!["id".into()],
            }],
        }
    }

    #[test]
    fn a_parent_goes_only_with_its_children_and_after_them() {
        let rel = rel();
        let c = TableRef::new("metier", "citoyens");
        let d = TableRef::new("metier", "demandes");
        let cx = Ctx {
            sql: Sql::Postgres,
            rel: &rel,
            purged: vec![
                (c.clone(), "date_inscription".into(), "2021".into()),
                (d.clone(), "date_cloture".into(), "2020".into()),
            ],
        };
        let mut params = Vec::new();
        assert_eq!(
            cx.eligible(&c, "t0", 0, &mut Vec::new(), &mut params),
            "t0.\"date_inscription\" < $1::text::timestamptz AND NOT EXISTS (SELECT 1 FROM \
             \"metier\".\"demandes\" r0_0 WHERE r0_0.\"citoyen_id\" = t0.\"id\" AND NOT \
             (r0_0.\"date_cloture\" < $2::text::timestamptz))"
        );
        assert_eq!(params, vec![Some("2021".into()), Some("2020".into())]);
        assert_eq!(children_first(&[c.clone(), d.clone()], &rel), vec![d, c]);
    }

    #[test]
    fn cutoffs_are_utc_years_back() {
        let now = DateTime::parse_from_rfc3339("2026-02-28T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(cutoff(now, 5, Sql::Postgres), "2021-02-28 10:00:00+00");
        assert_eq!(cutoff(now, 1, Sql::Mysql), "2025-02-28 10:00:00");
    }
}
