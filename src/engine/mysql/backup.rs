//! MySQL/MariaDB backups: `mariadb-dump --single-transaction` compressed on the fly with
//! zstd, restored through the `mariadb` client fed from the decompressor, verified by
//! decompressing the whole file and finding the dump's completion trailer.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use mysql_async::prelude::Queryable;
use tokio::process::Command;

use crate::config::Target;
use crate::engine::cleanup::Created;
use crate::engine::mysql::{self, quote_ident};
use crate::engine::tools::{self, PrivateTemp};
use crate::engine::Driver;
use crate::engine::DumpInfo;

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

fn has_trailer(tail: &[u8]) -> bool {
    tail.windows(TRAILER.len()).any(|w| w == TRAILER)
}

pub async fn dump(target: &Target, level: Option<u32>, out: &mut impl Write) -> Result<DumpInfo> {
    let conn = mysql::connect(target).await?;
    let server_version = conn.server_version().await?;
    // Counted in a consistent snapshot just before the dump takes its own.
    let tables = {
        let mut c = conn.conn().await;
        c.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            .await
            .map_err(mysql::my_err)?;
        let counts = count_tables(&mut c).await?;
        c.query_drop("COMMIT").await.ok();
        counts
    };
    let (bin, tool) = tools::find_tool(&["mariadb-dump", "mysqldump"])?;
    let temp = PrivateTemp::new()?;
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
        ])
        .args([
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
    let mut sink = Tail {
        inner: encoder,
        tail: Vec::new(),
    };
    if let Err(e) = tools::pump(stdout, &mut sink).await {
        let _ = child.kill().await;
        return Err(e);
    }
    tools::finish(child, stderr, "mariadb-dump").await?;
    if !has_trailer(&sink.tail) {
        bail!("the dump ended without its completion line: it is incomplete");
    }
    sink.inner.finish().context("finishing the zstd stream")?;
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
    match feed(target, path, into).await {
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

/// Streams the decompressed dump into the `mariadb` client, supervised like every tool.
async fn feed(target: &Target, path: &Path, into: &str) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let (bin, _) = tools::find_tool(&["mariadb", "mysql"])?;
    let temp = PrivateTemp::new()?;
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
        ])
        .args(["--default-character-set=utf8mb4", "--binary-mode"])
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
        loop {
            let mut buf = vec![0u8; 256 * 1024];
            match dec.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
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

async fn count_tables(c: &mut mysql_async::Conn) -> Result<BTreeMap<String, u64>> {
    let names: Vec<String> = c
        .query(
            "SELECT table_name FROM information_schema.tables
             WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' ORDER BY table_name",
        )
        .await
        .map_err(mysql::my_err)?;
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
