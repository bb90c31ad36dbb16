//! Renders an [`Outcome`] for people (tables, comfy-table) or machines (one JSON document).
//!
//! Commands build an Outcome and never print; this module alone writes stdout, so every
//! command gets `--format json` and consistent tables for free. A closed pipe
//! (`mairie-dba … | head`) is not an error.

pub mod nagios;

use std::io::Write;

use comfy_table::{presets::UTF8_FULL_CONDENSED, ContentArrangement, Table};
use serde_json::{Map, Value};

/// How results are shown on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Tables and one-line summaries, for people
    Table,
    /// Exactly one JSON document on stdout
    Json,
    /// One Nagios/Icinga/Centreon plugin line with performance data (health, backup check)
    Nagios,
    /// A JUnit XML report, one test case per check (audit)
    Junit,
}

/// Overall status, in the vocabulary of the contract. Operations use Success / Failed,
/// checks use the Nagios four.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Success,
    Ok,
    Warning,
    Failed,
    Critical,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Failed => "failed",
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Critical => "critical",
            Status::Unknown => "unknown",
        }
    }

    /// An operation's status: failed when any of its items failed.
    pub fn of_operation(any_failed: bool) -> Status {
        if any_failed {
            Status::Failed
        } else {
            Status::Success
        }
    }

    /// The process exit code for this status (0 done · 1 failed; Nagios 0/1/2/3 for checks).
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Success | Status::Ok => 0,
            Status::Failed | Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }
}

/// A table for people: title, header and rows of cells.
#[derive(Debug, Clone, Default)]
pub struct TableBlock {
    pub title: Option<String>,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl TableBlock {
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        TableBlock {
            title: None,
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    pub fn titled(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }
}

/// A command's typed result: the facts once, and how they read as JSON fields, tables, lines,
/// a Nagios line or a JUnit report. [`Outcome::from_report`] arranges them for [`render`], so
/// a table is never rebuilt by reading back the command's own JSON.
pub trait Report {
    fn status(&self) -> Status;

    /// The JSON document's fields after `status`.
    fn fields(&self) -> Map<String, Value>;

    fn tables(&self) -> Vec<TableBlock> {
        Vec::new()
    }

    /// One-line summaries printed after the tables.
    fn lines(&self) -> Vec<String> {
        Vec::new()
    }

    fn nagios(&self) -> Option<String> {
        None
    }

    fn junit(&self) -> Option<String> {
        None
    }
}

/// What a command hands back: its status, the JSON document's other fields, and the same
/// facts arranged for a terminal.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Status,
    pub doc: Map<String, Value>,
    pub tables: Vec<TableBlock>,
    /// One-line summaries printed after the tables.
    pub lines: Vec<String>,
    /// The Nagios plugin line, for commands that offer `--format nagios`.
    pub nagios: Option<String>,
    /// The JUnit XML report, for commands that offer `--format junit`.
    pub junit: Option<String>,
}

impl Outcome {
    pub fn new(status: Status) -> Self {
        Outcome {
            status,
            doc: Map::new(),
            tables: Vec::new(),
            lines: Vec::new(),
            nagios: None,
            junit: None,
        }
    }

    pub fn from_report(r: &impl Report) -> Self {
        Outcome {
            status: r.status(),
            doc: r.fields(),
            tables: r.tables(),
            lines: r.lines(),
            nagios: r.nagios(),
            junit: r.junit(),
        }
    }

    pub fn field(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.doc.insert(key.to_string(), value.into());
        self
    }

    /// The JSON document: `status` first, then the command's fields.
    pub fn json(&self) -> Value {
        let mut m = Map::new();
        m.insert("status".into(), Value::from(self.status.as_str()));
        for (k, v) in &self.doc {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }
}

/// Writes the outcome on stdout in the chosen format.
pub fn render(outcome: &Outcome, format: Format) -> std::io::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let res = match format {
        Format::Json => serde_json::to_writer_pretty(&mut out, &outcome.json())
            .map_err(std::io::Error::from)
            .and_then(|_| writeln!(out)),
        Format::Table => render_table(&mut out, outcome),
        Format::Nagios => match &outcome.nagios {
            Some(line) => writeln!(out, "{line}"),
            None => render_table(&mut out, outcome),
        },
        Format::Junit => match &outcome.junit {
            Some(xml) => out.write_all(xml.as_bytes()),
            None => render_table(&mut out, outcome),
        },
    };
    match res.and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn render_table(out: &mut impl Write, outcome: &Outcome) -> std::io::Result<()> {
    for block in &outcome.tables {
        if let Some(t) = &block.title {
            writeln!(out, "{t}")?;
        }
        if block.rows.is_empty() {
            writeln!(out, "(none)")?;
            continue;
        }
        let mut table = Table::new();
        table
            .load_style(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header(block.header.clone());
        for r in &block.rows {
            table.add_row(r.clone());
        }
        writeln!(out, "{table}")?;
    }
    for l in &outcome.lines {
        writeln!(out, "{l}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_puts_status_first() {
        let o = Outcome::new(Status::Failed).field("loads", Vec::<Value>::new());
        let s = serde_json::to_string(&o.json()).unwrap();
        assert_eq!(s, r#"{"status":"failed","loads":[]}"#);
    }

    #[test]
    fn exit_codes_follow_the_contract() {
        assert_eq!(Status::Success.exit_code(), 0);
        assert_eq!(Status::Failed.exit_code(), 1);
        assert_eq!(Status::Ok.exit_code(), 0);
        assert_eq!(Status::Warning.exit_code(), 1);
        assert_eq!(Status::Critical.exit_code(), 2);
        assert_eq!(Status::Unknown.exit_code(), 3);
    }

    #[test]
    fn tables_render_rows_and_lines() {
        let mut t = TableBlock::new(["a", "b"]).titled("T");
        t.row(["1", "é"]);
        let mut o = Outcome::new(Status::Success);
        o.tables.push(t);
        o.lines.push("done".into());
        let mut buf = Vec::new();
        render_table(&mut buf, &o).unwrap();
        let s = String::from_utf8(buf).unwrap();
        assert!(
            s.starts_with("T\n") && s.contains('é') && s.ends_with("done\n"),
            "{s}"
        );
    }
}
