//! MySQL/MariaDB backups: `mariadb-dump --single-transaction` compressed on the fly with
//! zstd, restored through the `mariadb` client fed from the decompressor, verified by
//! decompressing the whole file and finding the dump's completion trailer.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use mysql_async::prelude::Queryable;
use tokio::process::Command;

use crate::catalog::TableRef;
use crate::config::Target;
use crate::engine::cleanup::Created;
use crate::engine::mysql::dump_filter::{DumpFilter, Part};
use crate::engine::mysql::{self, privacy, quote_ident};
use crate::engine::tools::{self, PrivateTemp};
use crate::engine::Driver;
use crate::engine::DumpInfo;
use crate::privacy::transform::Rewrites;

/// mysqldump and mariadb-dump end every complete dump with this comment.
const TRAILER: &[u8] = b"-- Dump completed";

/// Keeps the last bytes written through it, to check the dump's trailer.
struct Tail<W> {
    inner: W,
    tail: Vec<u8>,
}

impl<W: Write> Write for Tail<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.tail.extend_from_slice(&buf[..n]);
        if self.tail.len() > 512 {
            self.tail.drain(..self.tail.len() - 256);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Counts, as the dump streams through it, the rows of each table's `INSERT INTO `t` VALUES
/// (…),(…);` statements: the manifest then states what the file holds, whatever was written
/// to the tables while the dump ran. A statement starts at the beginning of a line; strings
/// (`'…'` with backslash escapes and doubled quotes) are skipped; a row is a parenthesis
/// opened at depth 0 of the VALUES list.
#[derive(Default)]
struct RowCounter {
    counts: BTreeMap<String, u64>,
    state: Scan,
    /// The start of the current line, while it may still begin an INSERT.
    line: Vec<u8>,
    at_line_start: bool,
    table: String,
    depth: u32,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Outside an INSERT: only line starts matter.
    #[default]
    Other,
    /// Inside `VALUES …`, outside strings.
    Values,
    /// Inside a string of the VALUES list; `escaped` after a backslash.
    Str { escaped: bool },
    /// Just after a quote that may close the string or start a doubled quote.
    StrQuote,
}

const INSERT: &[u8] = b"INSERT INTO `";

impl RowCounter {
    fn new() -> RowCounter {
        RowCounter {
            at_line_start: true,
            ..RowCounter::default()
        }
    }

    fn feed(&mut self, buf: &[u8]) {
        for &b in buf {
            match self.state {
                Scan::Other => self.other(b),
                Scan::Values => match b {
                    b'\'' => self.state = Scan::Str { escaped: false },
                    b'(' => {
                        if self.depth == 0 {
                            *self.counts.entry(self.table.clone()).or_default() += 1;
                        }
                        self.depth += 1;
                    }
                    b')' => self.depth = self.depth.saturating_sub(1),
                    b';' if self.depth == 0 => {
                        self.state = Scan::Other;
                        self.at_line_start = false;
                    }
                    _ => {}
                },
                Scan::Str { escaped: true } => self.state = Scan::Str { escaped: false },
                Scan::Str { escaped: false } => match b {
                    b'\\' => self.state = Scan::Str { escaped: true },
                    b'\'' => self.state = Scan::StrQuote,
                    _ => {}
                },
                Scan::StrQuote => {
                    if b == b'\'' {
                        self.state = Scan::Str { escaped: false };
                    } else {
                        self.state = Scan::Values;
                        self.feed(&[b]);
                    }
                }
            }
        }
    }

    /// Outside an INSERT: collects the start of each line until it is, or cannot be, the
    /// head of `INSERT INTO `name` VALUES` followed by a space or a line break (MariaDB
    /// 10.11 puts each row on its own line).
    fn other(&mut self, b: u8) {
        if !self.at_line_start {
            if b == b'\n' {
                self.at_line_start = true;
            }
            return;
        }
        if b.is_ascii_whitespace() {
            if let Some(table) = insert_head(&self.line) {
                self.table = table;
                self.state = Scan::Values;
                self.depth = 0;
                self.line.clear();
                self.at_line_start = false;
                return;
            }
        }
        if b == b'\n' {
            self.line.clear();
            return;
        }
        self.line.push(b);
        let possible = if self.line.len() <= INSERT.len() {
            INSERT.starts_with(&self.line)
        } else {
            // No table name is longer than 64 characters (256 bytes, doubled backticks).
            self.line.len() <= INSERT.len() + 256 + b"` VALUES".len()
        };
        if !possible {
            self.line.clear();
            self.at_line_start = false;
        }
    }
}

/// The table of a line that is exactly `INSERT INTO `name` VALUES`.
fn insert_head(line: &[u8]) -> Option<String> {
    let rest = line.strip_prefix(INSERT)?.strip_suffix(b"` VALUES")?;
    let mut name = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        if rest[i] == b'`' {
            if rest.get(i + 1) != Some(&b'`') {
                return None;
            }
            i += 1;
        }
        name.push(rest[i]);
        i += 1;
    }
    Some(String::from_utf8_lossy(&name).into_owned())
}

/// Writes through, counting rows ([`RowCounter`]).
struct Counting<W> {
    inner: W,
    counter: RowCounter,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.counter.feed(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn has_trailer(tail: &[u8]) -> bool {
    tail.windows(TRAILER.len()).any(|w| w == TRAILER)
}

pub async fn dump(target: &Target, level: Option<u32>, out: &mut impl Write) -> Result<DumpInfo> {
    let conn = mysql::connect(target).await?;
    let server_version = conn.server_version().await?;
    // Every base table is in the manifest, the empty ones too; the rows are counted in
    // the dump as it streams.
    let names = {
        let mut c = conn.conn().await;
        base_tables(&mut c).await?
    };
    let (bin, tool) = tools::find_tool(&["mariadb-dump", "mysqldump"])?;
    let temp = PrivateTemp::new()?;
    let c = &target.connection;
    let mut cmd = client_command(target, &bin, &temp)?;
    cmd.args([
        "--single-transaction",
        "--routines",
        "--triggers",
        "--events",
        "--hex-blob",
        "--default-character-set=utf8mb4",
        "--skip-dump-date",
    ])
    .arg(&c.database);
    let mut child = tools::spawn(&mut cmd, false)?;
    let stderr = tools::collect_stderr(&mut child);
    let stdout = child.stdout.take().context("the dump's output")?;
    let encoder = zstd::stream::write::Encoder::new(out, level.map_or(3, |l| l as i32))
        .context("starting zstd")?;
    let mut sink = Counting {
        inner: Tail {
            inner: encoder,
            tail: Vec::new(),
        },
        counter: RowCounter::new(),
    };
    if let Err(e) = tools::pump(stdout, &mut sink).await {
        child.stop().await;
        return Err(e);
    }
    tools::finish(child, stderr, "mariadb-dump").await?;
    if !has_trailer(&sink.inner.tail) {
        bail!("the dump ended without its completion line: it is incomplete");
    }
    let Counting { inner, counter } = sink;
    inner.inner.finish().context("finishing the zstd stream")?;
    let mut tables: BTreeMap<String, u64> = names.into_iter().map(|n| (n, 0)).collect();
    for (t, n) in counter.counts {
        if let Some(c) = tables.get_mut(&t) {
            *c = n;
        }
    }
    Ok(DumpInfo {
        tool,
        server_version,
        tables,
        format: "sql+zstd".into(),
    })
}

/// Decompresses the whole file (zstd checks its frames) and looks for the trailer.
pub async fn verify(path: &Path) -> Result<()> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let f =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let mut dec = zstd::stream::read::Decoder::new(f).context("reading the zstd stream")?;
        let mut sink = Tail {
            inner: std::io::sink(),
            tail: Vec::new(),
        };
        std::io::copy(&mut dec, &mut sink)
            .map_err(|e| anyhow!("the zstd stream is damaged: {e}"))?;
        if !has_trailer(&sink.tail) {
            bail!("the SQL inside ends without the dump's completion line: incomplete dump");
        }
        Ok(())
    })
    .await?
}

/// Restores a dump into `into` (created when absent) through the `mariadb` client.
pub async fn restore(target: &Target, path: &Path, into: &str, force: bool) -> Result<()> {
    let conn = mysql::connect(target).await?;
    let existed;
    {
        let mut c = conn.conn().await;
        let exists: Option<i64> = c
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = ?",
                (into.to_string(),),
            )
            .await
            .map_err(mysql::my_err)?;
        existed = exists.unwrap_or(0) > 0;
        if !existed {
            c.query_drop(format!(
                "CREATE DATABASE {} CHARACTER SET utf8mb4",
                quote_ident(into)
            ))
            .await
            .map_err(mysql::my_err)
            .with_context(|| format!("creating database {into}"))?;
        } else {
            let n: Option<i64> = c
                .exec_first(
                    "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = ?",
                    (into.to_string(),),
                )
                .await
                .map_err(mysql::my_err)?;
            let n = n.unwrap_or(0);
            if n > 0 && !force {
                bail!("database {into} holds {n} tables: restore into another one with --into, or use --force to replace them");
            }
        }
    }
    drop(conn);
    let created = (!existed).then(|| Created::register(target, into));
    match feed(target, path, into, None).await {
        Ok(()) => {
            if let Some(c) = created {
                c.keep();
            }
            Ok(())
        }
        Err(e) => match created {
            Some(c) => {
                let note = c.abandon().await;
                Err(e.context(note))
            }
            None if force => Err(e.context(format!(
                "database {into} was being replaced (--force) and is left incomplete: restore it again"
            ))),
            None => Err(e),
        },
    }
}

/// A MySQL client program (`bin`) connected to the target over TCP, its password in an
/// option file of `temp` (never on the command line).
fn client_command(target: &Target, bin: &Path, temp: &PrivateTemp) -> Result<Command> {
    let options = temp.mysql_options(target.password()?.as_ref().map(|p| p.expose()))?;
    let c = &target.connection;
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--defaults-extra-file={}", options.display()))
        .args([
            "--protocol=TCP",
            "-h",
            &c.host,
            "-P",
            &c.port.to_string(),
            "-u",
            &c.user,
        ]);
    Ok(cmd)
}

/// Restores a dump into `into`, a new empty database, with the rows of the tables that
/// `prepare`'s rewrites rule rewritten as they stream ([`dump_filter`]): first the schema
/// (tables, triggers, views, routines), then, once `prepare` has seen the tables, the rows,
/// with every trigger set aside so that none fires. The caller drops `into` on failure.
pub async fn restore_rewritten(
    target: &Target,
    path: &Path,
    into: &str,
    prepare: crate::engine::PrepareRewrites<'_>,
) -> Result<std::sync::Arc<Rewrites>> {
    feed(
        target,
        path,
        into,
        Some(DumpFilter::new(Part::Schema, None, HashMap::new())),
    )
    .await
    .context("restoring the schema")?;
    let conn = mysql::connect(&target.with_database(into)).await?;
    let catalogue = conn.privacy_columns().await?;
    let rw = prepare(catalogue.clone()).await?;
    let mut columns: HashMap<TableRef, Vec<String>> = HashMap::new();
    for c in catalogue {
        if rw.rules(&c.table) {
            columns.entry(c.table).or_default().push(c.column);
        }
    }
    let triggers = {
        let mut c = conn.conn().await;
        privacy::set_aside_triggers(&mut c).await?
    };
    feed(
        target,
        path,
        into,
        Some(DumpFilter::new(Part::Data, Some(rw.clone()), columns)),
    )
    .await
    .context("restoring the rows")?;
    let mut c = conn.conn().await;
    privacy::restore_triggers(&mut c, &triggers).await?;
    Ok(rw)
}

/// Streams the decompressed dump into the `mariadb` client, supervised like every tool;
/// through `filter` when one is given.
async fn feed(target: &Target, path: &Path, into: &str, filter: Option<DumpFilter>) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let (bin, _) = tools::find_tool(&["mariadb", "mysql"])?;
    let temp = PrivateTemp::new()?;
    let mut cmd = client_command(target, &bin, &temp)?;
    cmd.args(["--default-character-set=utf8mb4", "--binary-mode"])
        .arg(into);
    let mut child = tools::spawn(&mut cmd, true)?;
    child.stdout.take();
    let stderr = tools::collect_stderr(&mut child);
    let mut stdin = child.stdin.take().context("client stdin")?;
    // Decompressed on a blocking thread, a few blocks ahead of the client.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    let path = path.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || {
        let f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        let mut dec = match zstd::stream::read::Decoder::new(f) {
            Ok(d) => d,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        let mut filter = filter;
        loop {
            let mut buf = vec![0u8; 256 * 1024];
            match dec.read(&mut buf) {
                Ok(0) => {
                    if let Some(Err(e)) = filter.as_ref().map(DumpFilter::finish) {
                        let _ = tx.blocking_send(Err(std::io::Error::other(format!("{e:#}"))));
                    }
                    return;
                }
                Ok(n) => {
                    buf.truncate(n);
                    if let Some(f) = filter.as_mut() {
                        let mut out = Vec::with_capacity(n + n / 8);
                        if let Err(e) = f.feed(&buf, &mut out) {
                            let _ = tx.blocking_send(Err(std::io::Error::other(format!("{e:#}"))));
                            return;
                        }
                        buf = out;
                    }
                    if tx.blocking_send(Ok(buf)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let mut fed: Result<()> = Ok(());
    while let Some(block) = rx.recv().await {
        match block {
            Ok(b) => {
                if let Err(e) = stdin.write_all(&b).await {
                    fed = Err(anyhow!("feeding the dump to the client: {e}"));
                    break;
                }
            }
            Err(e) => {
                fed = Err(anyhow!("reading the dump: {e}"));
                break;
            }
        }
    }
    drop(rx);
    drop(stdin);
    let _ = reader.await;
    let finished = tools::finish(child, stderr, "the mariadb client").await;
    drop(temp);
    // The client's own error says more than a broken pipe.
    finished?;
    fed
}

async fn base_tables(c: &mut mysql_async::Conn) -> Result<Vec<String>> {
    c.query(
        "SELECT table_name FROM information_schema.tables
         WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' ORDER BY table_name",
    )
    .await
    .map_err(mysql::my_err)
}

async fn count_tables(c: &mut mysql_async::Conn) -> Result<BTreeMap<String, u64>> {
    let names = base_tables(c).await?;
    let mut out = BTreeMap::new();
    for n in names {
        let count: Option<u64> = c
            .query_first(format!("SELECT COUNT(*) FROM {}", quote_ident(&n)))
            .await
            .map_err(mysql::my_err)
            .with_context(|| format!("counting {n}"))?;
        out.insert(n, count.unwrap_or(0));
    }
    Ok(out)
}

pub async fn count_rows(target: &Target, database: &str) -> Result<BTreeMap<String, u64>> {
    let conn = mysql::connect(&target.with_database(database)).await?;
    let mut c = conn.conn().await;
    count_tables(&mut c).await
}

/// Creates an empty database carrying `marker` as its comment (MariaDB 10.5 and later; on
/// MySQL, which has no database comments, the database is created unmarked and never swept).
pub async fn create_marked(target: &Target, name: &str, marker: &str) -> Result<()> {
    let conn = mysql::connect(target).await?;
    let mut c = conn.conn().await;
    let comment = if conn.is_mariadb() {
        format!(
            " COMMENT '{}'",
            marker.replace('\\', "\\\\").replace('\'', "''")
        )
    } else {
        String::new()
    };
    c.query_drop(format!(
        "CREATE DATABASE {} CHARACTER SET utf8mb4{comment}",
        quote_ident(name)
    ))
    .await
    .map_err(mysql::my_err)
    .with_context(|| format!("creating database {name}"))
}

/// Databases whose comment is a drill's marker: (name, comment).
pub async fn marked_databases(target: &Target) -> Result<Vec<(String, String)>> {
    let conn = mysql::connect(target).await?;
    if !conn.is_mariadb() {
        return Ok(Vec::new());
    }
    let mut c = conn.conn().await;
    let rows: Vec<(String, String)> = c
        .query(
            "SELECT SCHEMA_NAME, SCHEMA_COMMENT FROM information_schema.SCHEMATA
             WHERE SCHEMA_COMMENT LIKE 'mairie-dba drill scratch: %'",
        )
        .await
        .map_err(mysql::my_err)?;
    Ok(rows)
}

pub async fn drop_database(target: &Target, name: &str) -> Result<()> {
    let conn = mysql::connect(target).await?;
    let mut c = conn.conn().await;
    c.query_drop(format!("DROP DATABASE IF EXISTS {}", quote_ident(name)))
        .await
        .map_err(mysql::my_err)
        .with_context(|| format!("dropping database {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_counted_in_the_dump_stream() {
        let dump = "-- MariaDB dump\n\
            CREATE TABLE `t` (\n  `a` int, `b` text COMMENT 'INSERT INTO `t` VALUES (9);'\n);\n\
            INSERT INTO `t` VALUES (1,'a'),(2,'it\\'s (not) a row'),(3,'doubled '' quote ('),\
            (4,0x28),(5,NULL);\n\
            INSERT INTO `t` VALUES\n(6,'x');\n\
            /*!40000 ALTER TABLE `t` ENABLE KEYS */;\n\
            INSERT INTO `we``ird` VALUES (1),(2);\n\
            -- INSERT INTO `t` VALUES (7);\n\
            -- Dump completed\n";
        // Fed in every split, one byte at a time included.
        for step in [1, 3, 7, dump.len()] {
            let mut c = RowCounter::new();
            for chunk in dump.as_bytes().chunks(step) {
                c.feed(chunk);
            }
            assert_eq!(c.counts.get("t"), Some(&6), "step {step}");
            assert_eq!(c.counts.get("we`ird"), Some(&2), "step {step}");
            assert_eq!(c.counts.len(), 2, "step {step}");
        }
    }

    #[test]
    fn the_trailer_is_found_at_the_end_only_when_present() {
        let mut t = Tail {
            inner: std::io::sink(),
            tail: Vec::new(),
        };
        t.write_all(&vec![b'x'; 10_000]).unwrap();
        t.write_all(b"\n-- Dump completed\n").unwrap();
        assert!(has_trailer(&t.tail));
        assert!(!has_trailer(b"INSERT INTO t VALUES (1);"));
    }
}
