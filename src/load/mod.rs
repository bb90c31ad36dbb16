//! The engine-free half of `load-csv`: a reader thread that decodes, parses, checks and
//! encodes a CSV file into chunks of rows, streamed through a bounded channel to the
//! engine's bulk loader. Memory stays flat whatever the file size (a few chunks in flight),
//! and parsing runs on its own core while the server ingests.
//!
//! Every error names the file, the physical line and, when it can, the column.

pub mod convert;
pub mod decode;
pub mod options;
pub mod parser;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use indicatif::ProgressBar;
use tokio::sync::{mpsc, oneshot};

use crate::catalog::Column;
use crate::error::ConfigError;
use convert::Converter;
use options::{CsvOptions, DateOrder, EncodingArg};
use parser::{ParseError, Parser, Record};

const CHUNK_BYTES: usize = 256 * 1024;

/// What the engine's bulk loader expects beyond the shared text format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL parses timestamps (with their offsets) and booleans itself.
    Postgres,
    /// Timestamps written in UTC (from their offset, or from `tz` when they have none) and
    /// booleans as 1/0: for MySQL, whose DATETIME has no time zone and BOOLEAN is
    /// TINYINT(1), and for SQL Server's typed bulk rows.
    Utc { tz: Option<chrono_tz::Tz> },
}
const CHUNKS_IN_FLIGHT: usize = 8;

/// A load failure located in a file.
#[derive(Debug, Clone)]
pub struct LoadError {
    pub file: String,
    pub line: Option<u64>,
    pub column: Option<String>,
    pub message: String,
}

impl LoadError {
    fn file(file: &str, message: impl Into<String>) -> Self {
        LoadError {
            file: file.to_string(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    fn at(file: &str, line: u64, message: impl Into<String>) -> Self {
        LoadError {
            line: Some(line),
            ..LoadError::file(file, message)
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        write!(f, ": ")?;
        if let Some(c) = &self.column {
            write!(f, "column {c}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for LoadError {}

/// Maps the n-th data row sent to the server back to the file's physical line. Only the
/// points where the offset changes (a header, a blank line, a multi-line field) are kept,
/// so the map stays tiny for ordinary files.
#[derive(Debug, Default)]
pub struct LineMap {
    points: Mutex<Vec<(u64, u64)>>,
}

impl LineMap {
    fn note(&self, row: u64, line: u64) {
        let mut p = self.points.lock().unwrap_or_else(|e| e.into_inner());
        let offset = line - row;
        if p.last().map(|&(r, l)| l - r) != Some(offset) {
            p.push((row, line));
        }
    }

    /// The physical line of data row `row` (1-based), as a server's COPY error counts them.
    pub fn physical_line(&self, row: u64) -> u64 {
        let p = self.points.lock().unwrap_or_else(|e| e.into_inner());
        let idx = p.partition_point(|&(r, _)| r <= row);
        match idx {
            0 => row,
            i => {
                let (r, l) = p[i - 1];
                l + (row - r)
            }
        }
    }
}

/// How to read one file: the CLI's options, checked.
#[derive(Debug, Clone)]
pub struct CsvSpec {
    pub delimiter: u8,
    pub quote: u8,
    pub encoding: EncodingArg,
    pub header: bool,
    pub null: Option<String>,
    pub date_order: DateOrder,
    pub decimal_comma: bool,
    pub timezone: Option<String>,
    pub tz: Option<chrono_tz::Tz>,
    /// The largest field or record, in bytes ([`Parser`] stops past it).
    pub max_field_size: usize,
}

impl CsvSpec {
    pub fn from_options(o: &CsvOptions) -> Result<CsvSpec, ConfigError> {
        let delimiter = one_ascii_char("--delimiter", &o.delimiter)?;
        let quote = one_ascii_char("--quote", &o.quote)?;
        if delimiter == quote {
            return Err(ConfigError::new("--delimiter and --quote must differ"));
        }
        if o.decimal_comma && delimiter == b',' {
            return Err(ConfigError::new(
                "--decimal-comma needs another --delimiter than ',' (French files use ';')",
            ));
        }
        Ok(CsvSpec {
            delimiter,
            quote,
            encoding: o.encoding,
            header: !o.no_header,
            null: o.null.clone(),
            date_order: o.date_order,
            decimal_comma: o.decimal_comma,
            timezone: o.timezone.clone(),
            max_field_size: options::parse_max_field_size(&o.max_field_size)
                .map_err(ConfigError::new)?,
            tz: match &o.timezone {
                None => None,
                Some(name) => Some(name.parse::<chrono_tz::Tz>().map_err(|_| {
                    ConfigError::new(format!(
                        "--timezone `{name}` is not a time zone name (e.g. Europe/Paris, UTC)"
                    ))
                })?),
            },
        })
    }
}

fn one_ascii_char(flag: &str, s: &str) -> Result<u8, ConfigError> {
    let s = match s {
        "\\t" | "tab" | "TAB" => "\t",
        other => other,
    };
    match s.as_bytes() {
        [b] if b.is_ascii() && *b != b'\n' && *b != b'\r' => Ok(*b),
        _ => Err(ConfigError::new(format!(
            "{flag} `{}` must be one ASCII character (not a line break)",
            s.escape_debug()
        ))),
    }
}

/// What the reader thread reports when it is done.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadStats {
    pub rows: u64,
    pub bytes: u64,
}

/// A running reader: first the columns the file maps to (or why it cannot load), then the
/// encoded rows.
pub struct Reader {
    pub columns: oneshot::Receiver<Result<Vec<String>, LoadError>>,
    pub chunks: mpsc::Receiver<Result<Bytes, LoadError>>,
    pub lines: Arc<LineMap>,
    pub done: tokio::task::JoinHandle<ReadStats>,
}

/// Starts reading `path` on a blocking thread, mapping its header onto `table_columns`.
pub fn spawn_reader(
    path: PathBuf,
    label: String,
    spec: CsvSpec,
    table_columns: Vec<Column>,
    dialect: Dialect,
    progress: Option<ProgressBar>,
) -> Reader {
    let (col_tx, col_rx) = oneshot::channel();
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let lines = Arc::new(LineMap::default());
    let lines2 = Arc::clone(&lines);
    let done = tokio::task::spawn_blocking(move || {
        let mut job = Job {
            label: &label,
            spec: &spec,
            lines: &lines2,
            progress: progress.as_ref(),
            tx: &tx,
            raw: Arc::new(AtomicU64::new(0)),
            dialect,
        };
        let mut col_tx = Some(col_tx);
        match job.run(&path, &table_columns, &mut col_tx) {
            Ok(stats) => stats,
            Err(e) => {
                // Before the header is known the error goes to the columns channel,
                // afterwards down the row stream, where it aborts the load.
                match col_tx.take() {
                    Some(c) => {
                        let _ = c.send(Err(e));
                    }
                    None => {
                        let _ = tx.blocking_send(Err(e));
                    }
                }
                ReadStats::default()
            }
        }
    });
    Reader {
        columns: col_rx,
        chunks: rx,
        lines,
        done,
    }
}

struct Job<'a> {
    label: &'a str,
    spec: &'a CsvSpec,
    lines: &'a LineMap,
    progress: Option<&'a ProgressBar>,
    tx: &'a mpsc::Sender<Result<Bytes, LoadError>>,
    raw: Arc<AtomicU64>,
    dialect: Dialect,
}

type ColumnsTx = Option<oneshot::Sender<Result<Vec<String>, LoadError>>>;

impl Job<'_> {
    fn run(
        &mut self,
        path: &Path,
        table: &[Column],
        col_tx: &mut ColumnsTx,
    ) -> Result<ReadStats, LoadError> {
        let label = self.label;
        let (input, detected) = decode::open(path, self.spec.encoding, Arc::clone(&self.raw))
            .map_err(|e| LoadError::file(label, format!("cannot read: {}", io_message(&e))))?;
        let mut parser = Parser::new(
            input,
            self.spec.delimiter,
            self.spec.quote,
            self.spec.max_field_size,
        );
        let mut rec = Record::default();
        let parse_err = |e: ParseError| parse_error(label, e);

        // The header (or the table's own column order).
        let mapping: Vec<usize> = if self.spec.header {
            if !parser.next_record(&mut rec).map_err(parse_err)? {
                return Err(LoadError::file(
                    label,
                    "file is empty: expected a header line",
                ));
            }
            map_header(label, &rec, table)?
        } else {
            (0..table.len()).collect()
        };
        let names: Vec<String> = mapping.iter().map(|&i| table[i].name.clone()).collect();
        // Past the header, a field too large is named by its column.
        let parse_err = |e: ParseError| {
            let column = match &e {
                ParseError::TooLarge { field, .. } => names.get(field.wrapping_sub(1)).cloned(),
                _ => None,
            };
            LoadError {
                column,
                ..parse_error(label, e)
            }
        };
        let kinds = mapping.iter().map(|&i| table[i].kind).collect();
        if let Some(c) = col_tx.take() {
            if c.send(Ok(names.clone())).is_err() {
                return Ok(ReadStats::default());
            }
        }
        let mut conv = Converter::new(
            kinds,
            self.spec.null.clone(),
            self.spec.date_order,
            self.spec.decimal_comma,
            detected == decode::Detected::Utf8,
            self.dialect,
        );

        let expected = mapping.len();
        let mut rows: u64 = 0;
        let mut buf = Vec::with_capacity(CHUNK_BYTES + 4096);
        let mut saw_any = self.spec.header;
        loop {
            if !parser.next_record(&mut rec).map_err(parse_err)? {
                break;
            }
            saw_any = true;
            if rec.is_blank() {
                continue;
            }
            if rec.len() != expected {
                return Err(LoadError::at(
                    label,
                    rec.line,
                    field_count_message(expected, rec.len(), &names, self.spec),
                ));
            }
            if let Err(e) = conv.encode(&rec, &mut buf) {
                return Err(LoadError {
                    column: Some(names[e.index].clone()),
                    ..LoadError::at(label, rec.line, e.message)
                });
            }
            rows += 1;
            self.lines.note(rows, rec.line);
            if buf.len() >= CHUNK_BYTES && !self.send(&mut buf, rows) {
                return Ok(ReadStats {
                    rows,
                    bytes: self.raw_bytes(),
                });
            }
        }
        if !saw_any {
            return Err(LoadError::file(label, "file is empty"));
        }
        if !buf.is_empty() {
            self.send(&mut buf, rows);
        }
        Ok(ReadStats {
            rows,
            bytes: self.raw_bytes(),
        })
    }

    fn raw_bytes(&self) -> u64 {
        self.raw.load(Ordering::Relaxed)
    }

    /// Hands a full chunk to the loader; false when the loader has gone (it failed).
    fn send(&self, buf: &mut Vec<u8>, rows: u64) -> bool {
        let chunk = Bytes::from(std::mem::replace(
            buf,
            Vec::with_capacity(CHUNK_BYTES + 4096),
        ));
        if let Some(pb) = self.progress {
            pb.set_position(self.raw_bytes());
            pb.set_message(format!("{rows} rows"));
        }
        self.tx.blocking_send(Ok(chunk)).is_ok()
    }
}

/// Maps header names to table columns: exact names first, then ignoring case and spaces.
fn map_header(label: &str, rec: &Record, table: &[Column]) -> Result<Vec<usize>, LoadError> {
    let mut mapping = Vec::with_capacity(rec.len());
    for i in 0..rec.len() {
        let raw = String::from_utf8_lossy(rec.field(i));
        let name = raw.trim();
        if name.is_empty() {
            return Err(LoadError::at(
                label,
                rec.line,
                format!("header field {} is empty", i + 1),
            ));
        }
        let found = table.iter().position(|c| c.name == name).or_else(|| {
            let matches: Vec<usize> = table
                .iter()
                .enumerate()
                .filter(|(_, c)| c.name.eq_ignore_ascii_case(name))
                .map(|(j, _)| j)
                .collect();
            (matches.len() == 1).then(|| matches[0])
        });
        match found {
            Some(j) if mapping.contains(&j) => {
                return Err(LoadError::at(
                    label,
                    rec.line,
                    format!("header names column \"{}\" twice", table[j].name),
                ))
            }
            Some(j) => mapping.push(j),
            None => {
                let cols = table
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(LoadError::at(
                    label,
                    rec.line,
                    format!(
                        "unknown column \"{}\" in header (the table has: {cols})",
                        excerpt(name)
                    ),
                ));
            }
        }
    }
    Ok(mapping)
}

fn field_count_message(expected: usize, found: usize, names: &[String], spec: &CsvSpec) -> String {
    let what = if found > expected {
        "extra field"
    } else {
        "missing field"
    };
    let hint = if found == 1 && expected > 1 {
        format!(
            "; is the delimiter right? (--delimiter is '{}')",
            (spec.delimiter as char).escape_default()
        )
    } else if found < expected {
        format!("; first missing: {}", names[found])
    } else {
        String::new()
    };
    format!("expected {expected} fields, found {found} ({what}{hint})")
}

fn parse_error(label: &str, e: ParseError) -> LoadError {
    match e {
        ParseError::Io { line, err } => LoadError::at(label, line, io_message(&err)),
        ParseError::Unterminated { line } => LoadError::at(
            label,
            line,
            "unterminated quoted field: the quote opened on this line is never closed",
        ),
        ParseError::TooLarge { line, field, limit } => LoadError::at(
            label,
            line,
            format!(
                "field {field} is larger than --max-field-size ({}): is this a CSV file, and are \
                 its quotes and line breaks right?",
                indicatif::HumanBytes(limit as u64)
            ),
        ),
        ParseError::AfterQuote { line, found } => LoadError::at(
            label,
            line,
            format!(
                "unexpected {} after a closing quote (inside a quoted field, write a quote as two quotes)",
                match found {
                    '\r' => "carriage return".to_string(),
                    c => format!("'{c}'"),
                }
            ),
        ),
    }
}

/// How much of an input value an error message quotes.
const EXCERPT_CHARS: usize = 200;

/// A value from the input as an error message may quote it: at most [`EXCERPT_CHARS`]
/// characters, control characters (terminal escapes, CR, NUL) shown escaped.
pub fn excerpt(s: &str) -> String {
    let mut out = String::new();
    for (n, c) in s.chars().enumerate() {
        if n == EXCERPT_CHARS {
            out.push_str(&format!("… ({} bytes in all)", s.len()));
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn io_message(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_map_follows_offsets() {
        let m = LineMap::default();
        // header on line 1, rows 1-2 on lines 2-3, a blank line 4, row 3 on line 5 spanning
        // lines 5-6, row 4 on line 7.
        for (row, line) in [(1, 2), (2, 3), (3, 5), (4, 7)] {
            m.note(row, line);
        }
        assert_eq!(m.points.lock().unwrap().len(), 3);
        assert_eq!([1, 2, 3, 4, 5].map(|r| m.physical_line(r)), [2, 3, 5, 7, 8]);
    }

    #[test]
    fn one_char_options() {
        assert_eq!(one_ascii_char("--delimiter", ";").unwrap(), b';');
        assert_eq!(one_ascii_char("--delimiter", "\\t").unwrap(), b'\t');
        assert!(one_ascii_char("--delimiter", ";;").is_err());
        assert!(one_ascii_char("--delimiter", "é").is_err());
    }

    #[test]
    fn load_errors_read_like_compiler_errors() {
        let e = LoadError {
            column: Some("nom".into()),
            ..LoadError::at("data/x.csv", 12, "too long")
        };
        assert_eq!(e.to_string(), "data/x.csv:12: column nom: too long");
    }
}
