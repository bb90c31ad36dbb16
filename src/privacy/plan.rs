//! From the rules of `privacy:` and a database's columns to what each table's one UPDATE
//! does, refusing up front (a configuration error, exit 2) what cannot be done safely: a
//! rule on a column that is missing, part of a key, or whose type or constraints the
//! strategy would break.
//!
//! The nouns here are shared with the engines, which turn a [`TablePlan`] into SQL: they
//! import nothing of the crate but the catalogue and the privacy strategies.

use crate::catalog::TableRef;
use crate::error::ConfigError;
use crate::privacy::fake::FakeKind;
use crate::privacy::{ColumnRef, Strategy};

/// What the rules need to know of a column.
#[derive(Debug, Clone)]
pub struct PrivacyColumn {
    /// The model's `schema.table` (MySQL's `metier_citoyens` is `metier.citoyens`).
    pub table: TableRef,
    pub column: String,
    /// The server's name of its type, lower case.
    pub data_type: String,
    pub category: TypeCategory,
    /// Characters, for a text type that has a limit.
    pub max_len: Option<u32>,
    pub nullable: bool,
    /// Alone in a UNIQUE constraint or index (or the primary key).
    pub unique: bool,
    /// In the primary key, a foreign key, or referenced by one.
    pub key: bool,
    /// The table's primary key, when it is one column.
    pub table_key: Option<String>,
}

impl PrivacyColumn {
    pub fn column_ref(&self) -> ColumnRef {
        ColumnRef {
            schema: self.table.schema.clone(),
            table: self.table.name.clone(),
            column: self.column.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeCategory {
    Text,
    Date,
    Timestamp,
    Number,
    Json,
    Other,
}

/// How a column is rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Hex of the HMAC, cut to `max_len`.
    Hash {
        max_len: Option<u32>,
    },
    /// `<first 16 hex of the HMAC>@<domain>`.
    Email,
    Fake(FakeKind),
    Null,
    /// A date or timestamp to January 1st of its year.
    YearOf,
    /// A phone number to its first four digits, the others as `X`.
    PhonePrefix,
    /// An address to its district: `<code_postal> Marseille` from the row's `code_postal`,
    /// or `Marseille <n>e` from its `arrondissement`, or `Marseille`.
    District {
        code_postal: Option<String>,
        arrondissement: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct ColumnPlan {
    pub column: String,
    pub strategy: Strategy,
    pub action: Action,
    pub category: TypeCategory,
}

/// One table's UPDATE.
#[derive(Debug, Clone)]
pub struct TablePlan {
    pub table: TableRef,
    /// The one-column primary key: the rows the check after the update compares.
    pub key: Option<String>,
    pub columns: Vec<ColumnPlan>,
}

/// What a pseudonymised copy records of itself (table `mairie_dba_anonymized`).
#[derive(Debug, Clone)]
pub struct Marker {
    pub at: chrono::DateTime<chrono::Utc>,
    pub backup_file: String,
    pub backup_sha256: String,
    /// The first 8 hex of the HMAC of a fixed label: tells copies made with the same key
    /// apart from others without revealing it.
    pub key_fingerprint: String,
    /// The rules applied, as JSON.
    pub rules_json: String,
}

fn is_phone(column: &str) -> bool {
    let c = column.to_lowercase();
    c.split('_').any(|t| {
        [
            "telephone",
            "téléphone",
            "tel",
            "phone",
            "mobile",
            "portable",
            "fax",
        ]
        .contains(&t)
    })
}

/// The tables' UPDATEs for the rules, or every reason they cannot be done, in one error.
pub fn plan(
    rules: &[(ColumnRef, Strategy)],
    columns: &[PrivacyColumn],
) -> Result<Vec<TablePlan>, ConfigError> {
    let mut problems = Vec::new();
    let mut out: Vec<TablePlan> = Vec::new();
    for (rule, strategy) in rules {
        let Some(col) = columns.iter().find(|c| &c.column_ref() == rule) else {
            problems.push(format!(
                "privacy.rules: {rule}: no such column in the backup"
            ));
            continue;
        };
        if *strategy == Strategy::Keep {
            continue;
        }
        let why = |s: &str| format!("privacy.rules: {rule}: {} {s}", strategy.as_str());
        if col.key {
            problems.push(why(
                "cannot apply to a column of a primary or foreign key (the links between \
                 tables would break): keep it, or pseudonymise the columns it points at",
            ));
            continue;
        }
        let action = match strategy {
            Strategy::Keep => unreachable!(),
            Strategy::Null => {
                if !col.nullable {
                    problems.push(why("cannot apply to a NOT NULL column"));
                    continue;
                }
                Action::Null
            }
            Strategy::Hash | Strategy::Email => {
                if col.category != TypeCategory::Text {
                    problems.push(why(&format!(
                        "needs a text column; this one is {}",
                        col.data_type
                    )));
                    continue;
                }
                let (need, unique_need) = if *strategy == Strategy::Email {
                    (17 + 1, 16 + 1)
                } else {
                    (1, 16)
                };
                if *strategy == Strategy::Email {
                    if let Some(m) = col.max_len {
                        if m < need {
                            problems.push(why(&format!(
                                "needs room for a pseudonymised address; the column holds {m} characters"
                            )));
                            continue;
                        }
                    }
                    Action::Email
                } else {
                    if col.unique && col.max_len.is_some_and(|m| m < unique_need) {
                        problems.push(why(&format!(
                            "would cut the hash to {} characters in a UNIQUE column: distinct \
                             values could collide; widen the column or choose another strategy",
                            col.max_len.unwrap_or(0)
                        )));
                        continue;
                    }
                    Action::Hash {
                        max_len: col.max_len.map(|m| m.min(64)),
                    }
                }
            }
            Strategy::Fake => {
                if col.category != TypeCategory::Text {
                    problems.push(why(&format!(
                        "needs a text column; this one is {}",
                        col.data_type
                    )));
                    continue;
                }
                let Some(kind) = FakeKind::of_column(&col.column) else {
                    problems.push(why(
                        "cannot tell from the column's name what kind of value to invent \
                         (first name: prenom; last name: nom; street: adresse, rue): use \
                         hash, null or generalize",
                    ));
                    continue;
                };
                if col.unique {
                    problems.push(why(
                        "cannot apply to a UNIQUE column: invented values repeat; use hash or email",
                    ));
                    continue;
                }
                Action::Fake(kind)
            }
            Strategy::Generalize => {
                let a = match col.category {
                    TypeCategory::Date | TypeCategory::Timestamp => Action::YearOf,
                    TypeCategory::Text if is_phone(&col.column) => Action::PhonePrefix,
                    TypeCategory::Text
                        if FakeKind::of_column(&col.column) == Some(FakeKind::Street) =>
                    {
                        let sibling = |names: &[&str]| {
                            columns
                                .iter()
                                .find(|c| {
                                    c.table == col.table
                                        && names.contains(&c.column.to_lowercase().as_str())
                                        && rules
                                            .iter()
                                            .find(|(r, _)| r == &c.column_ref())
                                            .is_none_or(|(_, s)| *s == Strategy::Keep)
                                })
                                .map(|c| c.column.clone())
                        };
                        Action::District {
                            code_postal: sibling(&["code_postal", "cp", "postal_code", "zip"]),
                            arrondissement: sibling(&["arrondissement"]),
                        }
                    }
                    _ => {
                        problems.push(why(&format!(
                            "has no coarser form for this column ({}): generalize applies to \
                             dates, phone numbers and addresses; use hash, null or keep",
                            col.data_type
                        )));
                        continue;
                    }
                };
                if col.unique {
                    problems.push(why(
                        "cannot apply to a UNIQUE column: coarser values repeat",
                    ));
                    continue;
                }
                a
            }
        };
        let cp = ColumnPlan {
            column: col.column.clone(),
            strategy: *strategy,
            action,
            category: col.category,
        };
        match out.iter_mut().find(|t| t.table == col.table) {
            Some(t) => t.columns.push(cp),
            None => out.push(TablePlan {
                table: col.table.clone(),
                key: col.table_key.clone(),
                columns: vec![cp],
            }),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(ConfigError::new(problems.join("\n")))
    }
}

/// The value a `generalize` rule gives `original` as text, where it can be told without the
/// server (dates and phones): the check after the update accepts a value already that coarse.
pub fn generalized_text(action: &Action, original: &str) -> Option<String> {
    match action {
        Action::YearOf => original.get(..4).map(|y| format!("{y}-01-01")),
        Action::PhonePrefix => {
            let digits: String = original.chars().filter(char::is_ascii_digit).collect();
            let keep: String = digits.chars().take(4).collect();
            Some(format!(
                "{keep}{}",
                "X".repeat(digits.len().saturating_sub(4))
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(t: &str, c: &str, cat: TypeCategory) -> PrivacyColumn {
        PrivacyColumn {
            table: TableRef::parse(t).unwrap(),
            column: c.into(),
            data_type: format!("{cat:?}").to_lowercase(),
            category: cat,
            max_len: None,
            nullable: true,
            unique: false,
            key: false,
            table_key: Some("id".into()),
        }
    }

    fn rule(s: &str, st: Strategy) -> (ColumnRef, Strategy) {
        (ColumnRef::parse(s).unwrap(), st)
    }

    #[test]
    fn rules_become_one_plan_per_table() {
        let cols = vec![
            col("metier.citoyens", "nom", TypeCategory::Text),
            col("metier.citoyens", "telephone", TypeCategory::Text),
            col("metier.citoyens", "date_naissance", TypeCategory::Date),
            col("metier.citoyens", "adresse", TypeCategory::Text),
            col("metier.citoyens", "code_postal", TypeCategory::Text),
        ];
        let p = plan(
            &[
                rule("metier.citoyens.nom", Strategy::Fake),
                rule("metier.citoyens.telephone", Strategy::Generalize),
                rule("metier.citoyens.date_naissance", Strategy::Generalize),
                rule("metier.citoyens.adresse", Strategy::Generalize),
                rule("metier.citoyens.code_postal", Strategy::Keep),
            ],
            &cols,
        )
        .unwrap();
        assert_eq!(p.len(), 1);
        let actions: Vec<&Action> = p[0].columns.iter().map(|c| &c.action).collect();
        assert_eq!(
            actions,
            vec![
                &Action::Fake(FakeKind::LastName),
                &Action::PhonePrefix,
                &Action::YearOf,
                &Action::District {
                    code_postal: Some("code_postal".into()),
                    arrondissement: None
                },
            ]
        );
    }

    #[test]
    fn impossible_rules_are_refused_naming_the_column() {
        let mut key = col("metier.demandes", "citoyen_id", TypeCategory::Number);
        key.key = true;
        let mut uniq = col("metier.citoyens", "email", TypeCategory::Text);
        uniq.unique = true;
        uniq.max_len = Some(8);
        let cols = vec![
            key,
            uniq,
            col("metier.demandes", "commentaire", TypeCategory::Text),
            col("metier.citoyens", "quotient_familial", TypeCategory::Number),
        ];
        let e = plan(
            &[
                rule("metier.demandes.citoyen_id", Strategy::Hash),
                rule("metier.citoyens.email", Strategy::Hash),
                rule("metier.demandes.commentaire", Strategy::Fake),
                rule("metier.citoyens.quotient_familial", Strategy::Generalize),
                rule("metier.citoyens.absent", Strategy::Null),
            ],
            &cols,
        )
        .unwrap_err()
        .to_string();
        for needle in [
            "metier.demandes.citoyen_id: hash cannot apply to a column of a primary or foreign key",
            "metier.citoyens.email: hash would cut the hash to 8 characters in a UNIQUE column",
            "metier.demandes.commentaire: fake cannot tell",
            "metier.citoyens.quotient_familial: generalize has no coarser form",
            "metier.citoyens.absent: no such column",
        ] {
            assert!(e.contains(needle), "{needle} not in {e}");
        }
    }

    #[test]
    fn coarse_values_are_computed_for_the_check() {
        assert_eq!(
            generalized_text(&Action::YearOf, "1980-05-04").as_deref(),
            Some("1980-01-01")
        );
        assert_eq!(
            generalized_text(&Action::PhonePrefix, "+33 6 39 98 80 86").as_deref(),
            Some("3363XXXXXXX")
        );
    }
}
