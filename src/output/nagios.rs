//! The Nagios plugin line (read as well by Icinga and Centreon), for `--format nagios`.
//!
//! A report builds a [`NagiosLine`] from its typed facts: a status, a message for people and
//! the performance data a grapher reads. This module alone knows how the line is spelled:
//! `MAIRIE-DBA WARNING - message | 'label'=83%;80;95 'other'=12s`, each item written as the
//! Monitoring Plugins guidelines say: `'label'=value[UOM];[warn];[crit]`.

use std::fmt;

use super::Status;

/// What every line starts with, before its status word.
const SERVICE: &str = "MAIRIE-DBA";

/// One plugin line.
#[derive(Debug, Clone, PartialEq)]
pub struct NagiosLine {
    pub status: Status,
    pub message: String,
    pub perfdata: Vec<PerfData>,
}

/// One performance data item: `'label'=value[UOM];[warn];[crit]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PerfData {
    /// Written between single quotes (a quote in it doubled).
    pub label: String,
    pub value: f64,
    pub uom: Uom,
    pub warning: Option<Range>,
    pub critical: Option<Range>,
}

/// A unit of measure the plugin guidelines know, written right after the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uom {
    /// No unit: a number of things (or a unit the label names, `_ms`).
    Number,
    Seconds,
    Percent,
    Bytes,
}

impl Uom {
    pub fn symbol(self) -> &'static str {
        match self {
            Uom::Number => "",
            Uom::Seconds => "s",
            Uom::Percent => "%",
            Uom::Bytes => "B",
        }
    }
}

/// A warning or critical threshold as a Nagios range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Range {
    /// `80`: alerts above 80.
    Above(f64),
    /// `90:`: alerts below 90.
    Below(f64),
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Range::Above(v) => write!(f, "{v}"),
            Range::Below(v) => write!(f, "{v}:"),
        }
    }
}

impl fmt::Display for PerfData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The guidelines: a quote in a label is written twice; `=` ends a label and a line
        // break ends the line, so they cannot be in one at all.
        let label: String = self
            .label
            .chars()
            .map(|c| match c {
                '=' | '\n' | '\r' => '_',
                c => c,
            })
            .collect::<String>()
            .replace('\'', "''");
        write!(f, "'{label}'={}{}", self.value, self.uom.symbol())?;
        // Trailing empty fields are left out: `;80` without a critical, nothing without either.
        if self.warning.is_some() || self.critical.is_some() {
            f.write_str(";")?;
            if let Some(w) = self.warning {
                write!(f, "{w}")?;
            }
        }
        if let Some(c) = self.critical {
            write!(f, ";{c}")?;
        }
        Ok(())
    }
}

impl NagiosLine {
    /// A line without performance data: a usage or configuration error, for instance.
    pub fn plain(status: Status, message: impl Into<String>) -> NagiosLine {
        NagiosLine {
            status,
            message: message.into(),
            perfdata: Vec::new(),
        }
    }
}

/// The line, without its line break: exactly one line whatever the message holds (its line
/// breaks become spaces, and a `|`, which would start the performance data, a `/`). The
/// ` | ` separator is written only before performance data: never a trailing one.
impl fmt::Display for NagiosLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message: String = self
            .message
            .split(['\n', '\r'])
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
            .replace('|', "/");
        write!(
            f,
            "{SERVICE} {} - {message}",
            self.status.as_str().to_uppercase(),
        )?;
        for (i, p) in self.perfdata.iter().enumerate() {
            f.write_str(if i == 0 { " | " } else { " " })?;
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(label: &str, value: f64, uom: Uom) -> PerfData {
        PerfData {
            label: label.into(),
            value,
            uom,
            warning: None,
            critical: None,
        }
    }

    #[test]
    fn perfdata_follows_the_plugin_guidelines() {
        let mut p = item("pg_connections", 83.0, Uom::Percent);
        assert_eq!(p.to_string(), "'pg_connections'=83%");
        p.warning = Some(Range::Above(80.0));
        assert_eq!(p.to_string(), "'pg_connections'=83%;80");
        p.critical = Some(Range::Above(95.5));
        assert_eq!(p.to_string(), "'pg_connections'=83%;80;95.5");
        p.warning = None;
        assert_eq!(p.to_string(), "'pg_connections'=83%;;95.5");
        let hit = PerfData {
            warning: Some(Range::Below(90.0)),
            critical: Some(Range::Below(80.0)),
            ..item("pg_cache_hit", 99.3, Uom::Percent)
        };
        assert_eq!(hit.to_string(), "'pg_cache_hit'=99.3%;90:;80:");
        assert_eq!(item("up", 3600.0, Uom::Seconds).to_string(), "'up'=3600s");
        assert_eq!(item("size", 4096.0, Uom::Bytes).to_string(), "'size'=4096B");
        assert_eq!(
            item("pg_locks", 0.0, Uom::Number).to_string(),
            "'pg_locks'=0"
        );
    }

    #[test]
    fn a_quote_in_a_label_is_doubled() {
        assert_eq!(
            item("l'hôtel-de-ville_locks", 2.0, Uom::Number).to_string(),
            "'l''hôtel-de-ville_locks'=2"
        );
        assert_eq!(item("a''b", 1.0, Uom::Number).to_string(), "'a''''b'=1");
    }

    #[test]
    fn the_line_is_status_message_then_perfdata() {
        let line = NagiosLine {
            status: Status::Warning,
            message: "pg: connections 83% in use".into(),
            perfdata: vec![
                item("pg_connections", 83.0, Uom::Percent),
                item("pg_connectivity_ms", 1.5, Uom::Number),
            ],
        };
        assert_eq!(
            line.to_string(),
            "MAIRIE-DBA WARNING - pg: connections 83% in use | 'pg_connections'=83% 'pg_connectivity_ms'=1.5"
        );
        let none = NagiosLine {
            status: Status::Critical,
            message: "pg: connectivity refused".into(),
            perfdata: Vec::new(),
        };
        assert_eq!(
            none.to_string(),
            "MAIRIE-DBA CRITICAL - pg: connectivity refused",
            "no performance data, no separator"
        );
    }

    #[test]
    fn labels_are_escaped_and_the_line_stays_one_line() {
        assert_eq!(
            item("o'brien_connections", 3.0, Uom::Number).to_string(),
            "'o''brien_connections'=3"
        );
        assert_eq!(item("a=b", 1.0, Uom::Number).to_string(), "'a_b'=1");
        let line = NagiosLine {
            status: Status::Unknown,
            message: "error: bad | value\n\nUsage: x".into(),
            perfdata: vec![item("x", 1.0, Uom::Number)],
        };
        assert_eq!(
            line.to_string(),
            "MAIRIE-DBA UNKNOWN - error: bad / value Usage: x | 'x'=1"
        );
    }
}
