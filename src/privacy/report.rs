//! `privacy report`: what the configuration says is personal, and what retention would
//! purge. Structured so that other inventories (columns suspected of holding personal data
//! without a rule) are added beside `columns` as fields of their own.

use serde::Serialize;

use crate::catalog::TableRef;
use crate::engine::Relations;
use crate::privacy::retention::TablePurge;
use crate::privacy::PrivacySection;

/// A column with a rule in `privacy.rules`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RuledColumn {
    pub column: String,
    pub strategy: &'static str,
    /// The column exists on the target.
    pub present: bool,
}

/// The personal columns of the rules, in the order of the file, each checked against the
/// target's tables.
pub fn ruled_columns(privacy: &PrivacySection, rel: &Relations) -> Vec<RuledColumn> {
    privacy
        .rules
        .iter()
        .map(|(c, s)| RuledColumn {
            column: c.to_string(),
            strategy: s.as_str(),
            present: rel
                .table(&TableRef::new(&c.schema, &c.table))
                .is_some_and(|t| t.column(&c.column).is_some()),
        })
        .collect()
}

/// One target's privacy report.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub target: String,
    pub status: &'static str,
    /// Personal columns with a rule.
    pub columns: Vec<RuledColumn>,
    /// Columns whose name or sampled values look personal but that have no rule: what
    /// `anonymize` would refuse to copy.
    pub suspected: Vec<crate::privacy::detect::Suspect>,
    /// Per personal table: rows older than its retention, the oldest, and the batches
    /// `maintenance cleanup --privacy` would run.
    pub retention: Vec<TablePurge>,
    pub batch_size: u32,
}
