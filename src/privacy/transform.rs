//! The rules applied to rows as they are restored: each ruled table's rows are rewritten
//! between the backup and the server, so the copy is written once, already pseudonymised
//! (no UPDATE of every row afterwards, no original in the server's journal or free space).
//!
//! The engines read their own data formats (PostgreSQL's COPY text, MariaDB's INSERT
//! tuples); here a row is its fields as text, `None` for NULL, in the order of the data. A
//! [`Rewriter`] knows which fields of its table to change and how, and keeps the originals
//! of the first rows by key, so that the copy can be checked once it is loaded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::catalog::TableRef;
use crate::privacy::fake::{self, FakeKind};
use crate::privacy::plan::{Action, TablePlan, TypeCategory};
use crate::privacy::PrivacyKey;

/// Originals kept per ruled column for the check after the load (non-NULL values, from the
/// first rows).
pub const SAMPLE_ROWS: usize = 1000;
/// Rows after which sampling stops even if a mostly NULL column has fewer values.
const SAMPLE_SCAN: u64 = 100 * SAMPLE_ROWS as u64;

/// The rewrites of one restore: the tables' plans, the keyed hash, and the [`Rewriter`]s
/// the engine made for the tables it met.
pub struct Rewrites {
    plans: Vec<TablePlan>,
    mac: Hmac<Sha256>,
    domain: String,
    made: Mutex<Vec<Arc<Rewriter>>>,
}

impl Rewrites {
    pub fn new(plans: Vec<TablePlan>, key: &PrivacyKey, email_domain: &str) -> Rewrites {
        Rewrites {
            plans,
            mac: key.mac(),
            domain: email_domain.to_string(),
            made: Mutex::new(Vec::new()),
        }
    }

    pub fn plans(&self) -> &[TablePlan] {
        &self.plans
    }

    /// Whether `table` (the model's name) has columns to rewrite.
    pub fn rules(&self, table: &TableRef) -> bool {
        self.plans.iter().any(|p| &p.table == table)
    }

    /// The rewriter of `table` for rows whose fields are `columns`, in that order; `None`
    /// when the table has no rule. A ruled column missing from the data is an error naming
    /// it. One rewriter per table: a second call gives the same one.
    pub fn rewriter(
        &self,
        table: &TableRef,
        columns: &[String],
    ) -> Result<Option<Arc<Rewriter>>, String> {
        let Some(plan) = self.plans.iter().find(|p| &p.table == table) else {
            return Ok(None);
        };
        let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = made.iter().find(|r| &r.table == table) {
            if r.width != columns.len() {
                return Err(format!(
                    "{table}: rows of {} fields, then of {}",
                    r.width,
                    columns.len()
                ));
            }
            return Ok(Some(r.clone()));
        }
        let index = |name: &str| -> Result<usize, String> {
            columns.iter().position(|c| c == name).ok_or_else(|| {
                format!(
                    "{table}.{name}: the backup's rows of {table} have no such column (they have {})",
                    columns.join(", ")
                )
            })
        };
        let mut ops = Vec::new();
        for c in &plan.columns {
            let action = match &c.action {
                Action::Hash { max_len } => Op::Hash {
                    len: max_len.unwrap_or(64).min(64) as usize,
                },
                Action::Email => Op::Email,
                Action::Fake(k) => Op::Fake(*k),
                Action::Null => Op::Null,
                Action::YearOf => Op::YearOf {
                    timestamp: c.category == TypeCategory::Timestamp,
                },
                Action::PhonePrefix => Op::PhonePrefix,
                Action::District {
                    code_postal,
                    arrondissement,
                } => Op::District {
                    code_postal: code_postal.as_deref().map(index).transpose()?,
                    arrondissement: arrondissement.as_deref().map(index).transpose()?,
                },
            };
            ops.push((index(&c.column)?, action));
        }
        let key = plan.key.as_deref().map(index).transpose()?;
        let mut needed = vec![false; columns.len()];
        for (i, op) in &ops {
            needed[*i] = true;
            if let Op::District {
                code_postal,
                arrondissement,
            } = op
            {
                for j in [code_postal, arrondissement].into_iter().flatten() {
                    needed[*j] = true;
                }
            }
        }
        if let Some(k) = key {
            needed[k] = true;
        }
        let r = Arc::new(Rewriter {
            table: table.clone(),
            key_name: plan.key.clone(),
            width: columns.len(),
            columns: plan.columns.iter().map(|c| c.column.clone()).collect(),
            ops,
            key,
            needed,
            mac: self.mac.clone(),
            domain: self.domain.clone(),
            rows: AtomicU64::new(0),
            samples: Mutex::new(vec![Vec::new(); plan.columns.len()]),
            sampled: AtomicBool::new(false),
        });
        made.push(r.clone());
        Ok(Some(r))
    }

    /// The rewriters made so far.
    pub fn made(&self) -> Vec<Arc<Rewriter>> {
        self.made.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Hash {
        len: usize,
    },
    Email,
    Fake(FakeKind),
    Null,
    YearOf {
        timestamp: bool,
    },
    PhonePrefix,
    District {
        code_postal: Option<usize>,
        arrondissement: Option<usize>,
    },
}

/// Rewrites the rows of one table.
pub struct Rewriter {
    pub table: TableRef,
    /// The table's one-column primary key, by which the sampled rows are found again.
    key_name: Option<String>,
    /// Fields per row.
    width: usize,
    /// The ruled columns, in the order of [`Rewriter::rewrite`]'s changes.
    columns: Vec<String>,
    ops: Vec<(usize, Op)>,
    key: Option<usize>,
    needed: Vec<bool>,
    mac: Hmac<Sha256>,
    domain: String,
    rows: AtomicU64,
    /// Per ruled column, its first [`SAMPLE_ROWS`] non-NULL originals with their row's key.
    samples: Mutex<Vec<Vec<(String, String)>>>,
    sampled: AtomicBool,
}

/// One table's sampled originals: for each ruled column, its original value by row key.
pub struct Sampled {
    pub table: TableRef,
    pub key: Option<String>,
    pub columns: Vec<(String, HashMap<String, String>)>,
}

impl Rewriter {
    /// Fields per row.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Whether field `i` must be given to [`Rewriter::rewrite`] (the others may be `None`).
    pub fn needs(&self, i: usize) -> bool {
        self.needed.get(i).copied().unwrap_or(false)
    }

    /// Rows rewritten so far.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// The new values of one row's ruled fields, as `(field, value)`; `fields` holds at
    /// least the fields [`Rewriter::needs`].
    pub fn rewrite(&self, fields: &[Option<&str>]) -> Vec<(usize, Option<String>)> {
        let seen = self.rows.fetch_add(1, Ordering::Relaxed) + 1;
        if !self.sampled.load(Ordering::Relaxed) {
            if let Some(k) = self.key.and_then(|k| fields[k]) {
                let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
                for (col, (i, _)) in s.iter_mut().zip(&self.ops) {
                    if let Some(v) = fields[*i] {
                        if col.len() < SAMPLE_ROWS {
                            col.push((k.to_string(), v.to_string()));
                        }
                    }
                }
                if seen >= SAMPLE_SCAN || s.iter().all(|c| c.len() >= SAMPLE_ROWS) {
                    self.sampled.store(true, Ordering::Relaxed);
                }
            } else {
                self.sampled.store(true, Ordering::Relaxed);
            }
        }
        self.ops
            .iter()
            .map(|(i, op)| (*i, self.value(op, fields[*i], fields)))
            .collect()
    }

    fn hmac(&self, v: &str) -> [u8; 32] {
        let mut m = self.mac.clone();
        m.update(v.as_bytes());
        m.finalize().into_bytes().into()
    }

    fn value(&self, op: &Op, v: Option<&str>, row: &[Option<&str>]) -> Option<String> {
        let v = v?;
        Some(match op {
            Op::Null => return None,
            Op::Hash { len } => {
                let mut h = hex::encode(self.hmac(v));
                h.truncate(*len);
                h
            }
            Op::Email => {
                let mut h = hex::encode(&self.hmac(v)[..8]);
                h.push('@');
                h.push_str(&self.domain);
                h
            }
            // Compared without the blanks a CHAR column pads with.
            Op::Fake(kind) => fake::value_of(*kind, &self.hmac(v), v.trim_end_matches(' ')),
            Op::YearOf { timestamp } => year_of(v, *timestamp),
            Op::PhonePrefix => phone_prefix(v),
            Op::District {
                code_postal,
                arrondissement,
            } => district(
                code_postal.and_then(|i| row[i]),
                arrondissement.and_then(|i| row[i]),
            ),
        })
    }

    /// The originals kept for the check (rows of a table without a one-column key are not
    /// sampled: they cannot be found again).
    pub fn sampled(&self) -> Sampled {
        let s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let columns = self
            .columns
            .iter()
            .enumerate()
            .map(|(ci, name)| (name.clone(), s[ci].iter().cloned().collect()))
            .collect();
        Sampled {
            table: self.table.clone(),
            key: self.key_name.clone(),
            columns,
        }
    }
}

/// January 1st of the value's year, as text the server reads back into the column's type:
/// `YYYY-01-01` (a date) or `YYYY-01-01 00:00:00` (a timestamp, midnight in the session's
/// zone for one with a time zone). A year before Christ keeps its ` BC`.
pub fn year_of(v: &str, timestamp: bool) -> String {
    let year: String = v
        .trim_start()
        .chars()
        .enumerate()
        .take_while(|(i, c)| c.is_ascii_digit() || (*i == 0 && *c == '-'))
        .map(|(_, c)| c)
        .collect();
    let bc = if v.trim_end().ends_with(" BC") {
        " BC"
    } else {
        ""
    };
    if timestamp {
        format!("{year}-01-01 00:00:00{bc}")
    } else {
        format!("{year}-01-01{bc}")
    }
}

/// The first four digits of a phone number, the other digits as `X` (other characters
/// dropped).
pub fn phone_prefix(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (n, c) in v.chars().filter(char::is_ascii_digit).enumerate() {
        out.push(if n < 4 { c } else { 'X' });
    }
    out
}

/// An address to its district: `<code postal> Marseille`, or `Marseille <n>e` (`1er`), or
/// `Marseille`.
pub fn district(code_postal: Option<&str>, arrondissement: Option<&str>) -> String {
    if let Some(cp) = code_postal.map(str::trim).filter(|c| !c.is_empty()) {
        return format!("{cp} Marseille");
    }
    if let Some(a) = arrondissement.map(|a| a.trim_end_matches(' ')) {
        let suffix = if a == "1" { "er" } else { "e" };
        return format!("Marseille {a}{suffix}");
    }
    "Marseille".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::plan::ColumnPlan;
    use crate::privacy::Strategy;

    fn plan() -> TablePlan {
        let c = |column: &str, action: Action, category| ColumnPlan {
            column: column.into(),
            strategy: Strategy::Hash,
            action,
            category,
        };
        TablePlan {
            table: TableRef::new("metier", "citoyens"),
            key: Some("id".into()),
            columns: vec![
                c("nom", Action::Fake(FakeKind::LastName), TypeCategory::Text),
                c("email", Action::Email, TypeCategory::Text),
                c("date_naissance", Action::YearOf, TypeCategory::Date),
                c("telephone", Action::PhonePrefix, TypeCategory::Text),
                c(
                    "adresse",
                    Action::District {
                        code_postal: Some("code_postal".into()),
                        arrondissement: Some("arrondissement".into()),
                    },
                    TypeCategory::Text,
                ),
                c(
                    "ref",
                    Action::Hash { max_len: Some(10) },
                    TypeCategory::Text,
                ),
                c("commentaire", Action::Null, TypeCategory::Text),
            ],
        }
    }

    fn columns() -> Vec<String> {
        [
            "id",
            "nom",
            "email",
            "date_naissance",
            "telephone",
            "adresse",
            "code_postal",
            "arrondissement",
            "ref",
            "commentaire",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    #[test]
    fn a_row_is_rewritten_by_its_rules_and_the_first_rows_are_sampled() {
        let key = PrivacyKey::from_bytes(b"0123456789abcdef");
        let rw = Rewrites::new(vec![plan()], &key, "anonyme.invalid");
        let r = rw
            .rewriter(&TableRef::new("metier", "citoyens"), &columns())
            .unwrap()
            .unwrap();
        assert!(r.needs(0) && r.needs(6) && r.needs(7) && r.needs(9));
        let row = [
            Some("7"),
            Some("Dupont"),
            Some("h.dupont@example.org"),
            Some("1980-05-04"),
            Some("+33 6 39 98 80 86"),
            Some("3 rue du Panier"),
            Some("13002 "),
            Some("2"),
            Some("ABC"),
            Some("appelle le soir"),
        ];
        let out: HashMap<usize, Option<String>> = r.rewrite(&row).into_iter().collect();
        let h = key.hash(b"Dupont");
        assert_eq!(
            out[&1].as_deref(),
            Some(fake::value_of(FakeKind::LastName, &h, "Dupont").as_str())
        );
        assert_eq!(
            out[&2].as_deref(),
            Some(
                format!(
                    "{}@anonyme.invalid",
                    &key.hash_hex(b"h.dupont@example.org")[..16]
                )
                .as_str()
            )
        );
        assert_eq!(out[&3].as_deref(), Some("1980-01-01"));
        assert_eq!(out[&4].as_deref(), Some("3363XXXXXXX"));
        assert_eq!(out[&5].as_deref(), Some("13002 Marseille"));
        assert_eq!(out[&8].as_deref(), Some(&key.hash_hex(b"ABC")[..10]));
        assert_eq!(out[&9], None);
        assert!(!out.contains_key(&0) && !out.contains_key(&6));
        // NULL stays NULL whatever the rule.
        let mut nulls = row;
        nulls[1] = None;
        nulls[3] = None;
        let out: HashMap<usize, Option<String>> = r.rewrite(&nulls).into_iter().collect();
        assert_eq!((out[&1].as_deref(), out[&3].as_deref()), (None, None));
        assert_eq!(r.rows(), 2);
        let s = r.sampled();
        assert_eq!(s.columns[0].0, "nom");
        assert_eq!(s.columns[0].1.get("7").map(String::as_str), Some("Dupont"));
        // The same rewriter for the same table; a different width is an error.
        assert!(Arc::ptr_eq(
            &r,
            &rw.rewriter(&r.table, &columns()).unwrap().unwrap()
        ));
        assert!(rw.rewriter(&r.table, &columns()[..3]).is_err());
        assert!(rw
            .rewriter(&TableRef::new("metier", "demandes"), &columns())
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_ruled_column_missing_from_the_data_is_named() {
        let key = PrivacyKey::from_bytes(b"0123456789abcdef");
        let rw = Rewrites::new(vec![plan()], &key, "anonyme.invalid");
        let e = rw
            .rewriter(
                &TableRef::new("metier", "citoyens"),
                &["id".to_string(), "nom".to_string()],
            )
            .err()
            .unwrap();
        assert!(e.contains("metier.citoyens.email"), "{e}");
    }

    #[test]
    fn coarse_values() {
        assert_eq!(year_of("1980-05-04", false), "1980-01-01");
        assert_eq!(
            year_of("1980-05-04 10:00:00+02", true),
            "1980-01-01 00:00:00"
        );
        assert_eq!(year_of("0044-03-15 BC", false), "0044-01-01 BC");
        assert_eq!(phone_prefix("04 91 55 11 11"), "0491XXXXXX");
        assert_eq!(phone_prefix("12"), "12");
        assert_eq!(district(None, Some("1")), "Marseille 1er");
        assert_eq!(district(Some(" "), Some("16")), "Marseille 16e");
        assert_eq!(district(None, None), "Marseille");
    }
}
