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
pub mod reject;

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
    /// Timestamps written in UTC (from their offset, or from `--timezone` when they have
    /// none) and booleans as 1/0: for MySQL, whose DATETIME has no time zone and BOOLEAN is
    /// TINYINT(1), and for SQL Server's typed bulk rows.
    Utc,
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

/// A bulk load the server refused because of the data of a row (a bad value, a broken
/// constraint), as opposed to a failure of the load itself (a lost connection, a missing
/// privilege). `row` is the row of the stream (1-based) when the server names it;
/// `reason` is the message without the file and line, for a reject file.
#[derive(Debug, Clone)]
pub struct Refused {
    pub row: Option<u64>,
    pub reason: String,
    /// The whole message, located in the file.
    pub message: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refused {}

/// Maps the n-th data row sent to the server back to the file's physical line. Only the
/// points where the offset changes (a header, a blank line, a multi-line field) are kept,
/// so the map stays tiny for ordinary files.
#[derive(Debug, Default)]
pub struct LineMap {
    points: Mutex<Vec<(u64, u64)>>,
}

impl LineMap {
    pub fn note(&self, row: u64, line: u64) {
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
    pub nulls: Vec<String>,
    pub force_null: ForceNull,
    pub skip_lines: u64,
    pub trim: bool,
    pub date_order: DateOrder,
    pub decimal_comma: bool,
    pub timezone: Option<String>,
    /// `--timezone`, or (set by the caller) the server's own when it has one.
    pub tz: Option<chrono_tz::Tz>,
    pub dst: Option<options::DstChoice>,
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
        if o.dst.is_some() && o.timezone.is_none() {
            return Err(ConfigError::new(
                "--dst needs --timezone: it chooses between the instants a local time of that \
                 zone can mean",
            ));
        }
        Ok(CsvSpec {
            delimiter,
            quote,
            encoding: o.encoding,
            header: !o.no_header,
            nulls: o.null.clone(),
            force_null: ForceNull::parse(o.force_null.as_deref())?,
            skip_lines: o.skip_lines,
            trim: o.trim,
            dst: o.dst,
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

/// The columns of `--force-null`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ForceNull {
    #[default]
    None,
    All,
    Columns(Vec<String>),
}

impl ForceNull {
    fn parse(s: Option<&str>) -> Result<ForceNull, ConfigError> {
        let Some(s) = s else {
            return Ok(ForceNull::None);
        };
        if s.trim() == "*" {
            return Ok(ForceNull::All);
        }
        let cols: Vec<String> = s.split(',').map(|c| c.trim().to_string()).collect();
        if cols.iter().any(String::is_empty) {
            return Err(ConfigError::new(format!(
                "--force-null `{}`: expected COL,COL,… or `*`",
                s.escape_debug()
            )));
        }
        Ok(ForceNull::Columns(cols))
    }

    /// Per loaded column (named as in `names`), whether it is forced; an unknown name is an
    /// error naming the table's columns.
    fn mask(&self, names: &[String], table: &[Column]) -> Result<Vec<bool>, String> {
        match self {
            ForceNull::None => Ok(Vec::new()),
            ForceNull::All => Ok(vec![true; names.len()]),
            ForceNull::Columns(cols) => {
                let mut wanted = Vec::with_capacity(cols.len());
                for c in cols {
                    let found = table
                        .iter()
                        .find(|t| t.name == *c)
                        .or_else(|| table.iter().find(|t| t.name.eq_ignore_ascii_case(c)));
                    match found {
                        Some(t) => wanted.push(t.name.as_str()),
                        None => {
                            return Err(format!(
                                "--force-null: no column \"{}\" in the table (it has: {})",
                                excerpt(c),
                                table
                                    .iter()
                                    .map(|t| t.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ))
                        }
                    }
                }
                Ok(names.iter().map(|n| wanted.contains(&n.as_str())).collect())
            }
        }
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
/// encoded rows: as plain chunks, or as [`Batch`]es when rows may be rejected.
pub struct Reader {
    pub columns: oneshot::Receiver<Result<Vec<String>, LoadError>>,
    pub chunks: mpsc::Receiver<Result<Bytes, LoadError>>,
    pub batches: mpsc::Receiver<Result<Batch, LoadError>>,
    pub lines: Arc<LineMap>,
    pub done: tokio::task::JoinHandle<ReadStats>,
}

/// A row left out of a load, for the reject file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The physical line the record starts on.
    pub line: u64,
    pub reason: String,
    /// The record as the file wrote it (decoded, re-quoted with the file's quote).
    pub record: String,
}

/// Rows read in reject mode (`--reject-file`): the encoded rows with what locates each in
/// the file, and the records the reader itself refused. About 1 MiB of rows, so that a
/// batch the server refuses is cheap to load again without its bad rows.
#[derive(Debug, Default)]
pub struct Batch {
    pub data: Vec<u8>,
    /// End offset of each row in `data`.
    pub ends: Vec<usize>,
    /// Physical line of each row.
    pub lines: Vec<u64>,
    /// Each row's record as the file wrote it.
    pub records: Vec<String>,
    pub rejected: Vec<Rejected>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty() && self.rejected.is_empty()
    }

    /// Row `i` as encoded.
    pub fn row(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data[start..self.ends[i]]
    }
}

/// The bytes of a batch's encoded rows when reading in reject mode.
const BATCH_BYTES: usize = 1024 * 1024;

/// `rec`'s fields as a line of the file: joined by the delimiter, quoted (quotes doubled)
/// where they were quoted or must be.
pub fn record_text(rec: &Record, delim: u8, quote: u8) -> String {
    let mut out = Vec::with_capacity(rec.buf.len() + rec.len() * 3);
    for i in 0..rec.len() {
        if i > 0 {
            out.push(delim);
        }
        let f = rec.field(i);
        let must = rec.quoted[i]
            || f.iter()
                .any(|&b| b == delim || b == quote || b == b'\n' || b == b'\r');
        if must {
            out.push(quote);
            for &b in f {
                if b == quote {
                    out.push(quote);
                }
                out.push(b);
            }
            out.push(quote);
        } else {
            out.extend_from_slice(f);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Starts reading `path` on a blocking thread, mapping its header onto `table_columns`.
pub fn spawn_reader(
    path: PathBuf,
    label: String,
    spec: CsvSpec,
    table_columns: Vec<Column>,
    dialect: Dialect,
    progress: Option<ProgressBar>,
    reject: bool,
) -> Reader {
    let (col_tx, col_rx) = oneshot::channel();
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let (btx, brx) = mpsc::channel(2);
    let lines = Arc::new(LineMap::default());
    let lines2 = Arc::clone(&lines);
    let done = tokio::task::spawn_blocking(move || {
        let mut job = Job {
            label: &label,
            spec: &spec,
            lines: &lines2,
            progress: progress.as_ref(),
            tx: &tx,
            batches: reject.then_some(&btx),
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
                    None if reject => {
                        let _ = btx.blocking_send(Err(e));
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
        batches: brx,
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
    /// Reject mode: rows go here in batches, and a row that cannot be read is rejected
    /// instead of failing the load.
    batches: Option<&'a mpsc::Sender<Result<Batch, LoadError>>>,
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
        if self.spec.skip_lines > 0 {
            let skipped = parser.skip_lines(self.spec.skip_lines).map_err(parse_err)?;
            if skipped < self.spec.skip_lines {
                return Err(LoadError::file(
                    label,
                    format!(
                        "the file has only {skipped} complete lines, and --skip-lines skips {}",
                        self.spec.skip_lines
                    ),
                ));
            }
        }

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
        let force_null = self
            .spec
            .force_null
            .mask(&names, table)
            .map_err(|m| LoadError::file(label, m))?;
        let reading = convert::Reading {
            nulls: self.spec.nulls.clone(),
            force_null,
            date_order: self.spec.date_order,
            decimal_comma: self.spec.decimal_comma,
            trim: self.spec.trim,
            tz: self.spec.tz,
            dst: self.spec.dst,
        };
        let mut conv = Converter::new(
            kinds,
            reading,
            detected == decode::Detected::Utf8,
            self.dialect,
        );

        let expected = mapping.len();
        if let Some(out) = self.batches {
            return self.run_rejecting(&mut parser, &mut rec, &mut conv, &names, out, parse_err);
        }
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

    /// The rows in [`Batch`]es: a record with the wrong number of fields or a value that
    /// cannot be read is rejected with its line and reason, and reading goes on. A file
    /// that cannot be parsed any further (an unterminated quote, a field past
    /// --max-field-size, bytes that do not decode) still fails the load. `rows` in the
    /// stats counts the rows sent, rejected ones left out.
    fn run_rejecting<R: std::io::Read>(
        &mut self,
        parser: &mut Parser<R>,
        rec: &mut Record,
        conv: &mut Converter,
        names: &[String],
        out: &mpsc::Sender<Result<Batch, LoadError>>,
        parse_err: impl Fn(ParseError) -> LoadError,
    ) -> Result<ReadStats, LoadError> {
        let (delim, quote) = (self.spec.delimiter, self.spec.quote);
        let mut rows: u64 = 0;
        let mut batch = Batch::default();
        let mut saw_any = self.spec.header;
        let stats = |rows, job: &Self| ReadStats {
            rows,
            bytes: job.raw_bytes(),
        };
        loop {
            if !parser.next_record(rec).map_err(&parse_err)? {
                break;
            }
            saw_any = true;
            if rec.is_blank() {
                continue;
            }
            if rec.len() != names.len() {
                batch.rejected.push(Rejected {
                    line: rec.line,
                    reason: field_count_message(names.len(), rec.len(), names, self.spec),
                    record: record_text(rec, delim, quote),
                });
            } else {
                match conv.encode(rec, &mut batch.data) {
                    Ok(()) => {
                        rows += 1;
                        batch.ends.push(batch.data.len());
                        batch.lines.push(rec.line);
                        batch.records.push(record_text(rec, delim, quote));
                    }
                    Err(e) => batch.rejected.push(Rejected {
                        line: rec.line,
                        reason: format!("column {}: {}", names[e.index], e.message),
                        record: record_text(rec, delim, quote),
                    }),
                }
            }
            if batch.data.len() >= BATCH_BYTES || batch.rejected.len() >= 10_000 {
                let full = std::mem::take(&mut batch);
                if !self.send_batch(out, full, rows) {
                    return Ok(stats(rows, self));
                }
            }
        }
        if !saw_any {
            return Err(LoadError::file(self.label, "file is empty"));
        }
        if !batch.is_empty() {
            self.send_batch(out, batch, rows);
        }
        Ok(stats(rows, self))
    }

    fn send_batch(
        &self,
        out: &mpsc::Sender<Result<Batch, LoadError>>,
        batch: Batch,
        rows: u64,
    ) -> bool {
        if let Some(pb) = self.progress {
            pb.set_position(self.raw_bytes());
            pb.set_message(format!("{rows} rows"));
        }
        out.blocking_send(Ok(batch)).is_ok()
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
    } else if found > expected && spec.decimal_comma && spec.delimiter == b',' {
        "; with --decimal-comma and ',' as delimiter, numbers must be quoted (\"12,5\")".to_string()
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
