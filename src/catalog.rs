//! The nouns every layer shares — a table reference, a column, a migration — with no
//! behaviour that belongs to an engine or a command. A leaf: it imports nothing of the crate
//! but the configuration error its parser returns.

use std::fmt;
use std::path::PathBuf;

use crate::error::ConfigError;

/// `schema.table` as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableRef {
    pub schema: String,
    pub name: String,
}

impl TableRef {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        TableRef {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// Parses `SCHEMA.TABLE` (a bare `TABLE` means schema `public`).
    pub fn parse(s: &str) -> Result<TableRef, ConfigError> {
        let bad = || {
            ConfigError::new(format!(
                "--table `{s}`: expected SCHEMA.TABLE, e.g. metier.citoyens"
            ))
        };
        let (schema, name) = match s.split_once('.') {
            Some((a, b)) => (a, b),
            None => ("public", s),
        };
        if schema.is_empty() || name.is_empty() || name.contains('.') {
            return Err(bad());
        }
        Ok(TableRef::new(schema, name))
    }

    /// The prefixed table name of a schema-less engine (`metier.citoyens` -> `metier_citoyens`).
    pub fn prefixed(&self) -> String {
        format!("{}_{}", self.schema, self.name)
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// How a column's values are read from CSV text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Text,
    Integer,
    Decimal,
    Boolean,
    Date,
    Timestamp,
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub sql_type: String,
    pub kind: ColumnKind,
    pub nullable: bool,
    pub has_default: bool,
}

/// A migration file on disk: versioned (`V<version>__<description>.sql`, run once, in version
/// order) or repeatable (`R__<description>.sql`, run after the versioned ones and again
/// whenever its checksum changes).
#[derive(Debug, Clone)]
pub struct Migration {
    /// None for a repeatable migration.
    pub version: Option<i64>,
    pub description: String,
    /// The file name, as recorded in the history.
    pub script: String,
    pub path: PathBuf,
    pub checksum: String,
    pub sql: String,
    /// The file starts with `-- mairie-dba: no-transaction`: its one statement runs outside a
    /// transaction (`CREATE INDEX CONCURRENTLY`).
    pub no_transaction: bool,
}

impl Migration {
    pub fn kind(&self) -> HistoryKind {
        match self.version {
            Some(_) => HistoryKind::Versioned,
            None => HistoryKind::Repeatable,
        }
    }
}

/// What a row of the schema history records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryKind {
    Versioned,
    Repeatable,
    /// `schema baseline`: the versions up to this one were there before mairie-dba.
    Baseline,
}

impl HistoryKind {
    /// The value of the history table's `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryKind::Versioned => "versioned",
            HistoryKind::Repeatable => "repeatable",
            HistoryKind::Baseline => "baseline",
        }
    }

    /// Reads the `kind` column; an unknown value is read as versioned, which is what rows
    /// written before the column existed are.
    pub fn parse(s: &str) -> HistoryKind {
        match s.trim() {
            "repeatable" => HistoryKind::Repeatable,
            "baseline" => HistoryKind::Baseline,
            _ => HistoryKind::Versioned,
        }
    }
}

/// A row of the schema history table.
#[derive(Debug, Clone)]
pub struct AppliedMigration {
    /// The row's key (`installed_rank`): the order rows were written in. A history table of
    /// the first shape has none; its rows are ranked by version.
    pub rank: i64,
    pub kind: HistoryKind,
    /// None for a repeatable migration.
    pub version: Option<i64>,
    pub description: String,
    pub script: String,
    pub checksum: String,
    pub applied_at: chrono::DateTime<chrono::Utc>,
    pub execution_ms: i64,
    pub applied_by: String,
    pub success: bool,
}
