//! What the PITR commands ask a PostgreSQL server: `pg_basebackup` streamed through the
//! checks and the compressor of [`crate::pitr::base`], and the drill's consistent point
//! (row counts and a restore point that no write can fall between).

use std::collections::BTreeMap;
use std::io::{self, BufReader};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::process::Command;

use crate::config::Target;
use crate::engine::postgres::{self, db_err, quote_ident, PgConn};
use crate::engine::tools;
use crate::pitr::base::{self, StreamFacts};

/// What the server says about itself before a base backup.
#[derive(Debug, Clone)]
pub struct ServerFacts {
    pub server_version: String,
    pub major: u32,
    pub wal_segment_size: u64,
}

pub async fn server_facts(conn: &PgConn) -> Result<ServerFacts> {
    let row = conn
        .client()
        .query_one(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int, \
             pg_size_bytes(current_setting('wal_segment_size'))",
            &[],
        )
        .await
        .map_err(db_err)?;
    let num: i32 = row.get(1);
    Ok(ServerFacts {
        server_version: row.get(0),
        major: (num / 10_000) as u32,
        wal_segment_size: row.get::<_, i64>(2) as u64,
    })
}

/// What a finished `pg_basebackup` run produced.
pub struct Taken {
    pub server: ServerFacts,
    pub stream: StreamFacts,
    pub tool: String,
    pub sha256: String,
    pub size: u64,
    /// The object's ETag, for a base backup uploaded to a bucket.
    pub etag: Option<String>,
}

/// libpq's variables for `target` (no password unless it has one), for tools that take no
/// database name (`pg_basebackup`).
fn connection(cmd: &mut Command, target: &Target) -> Result<()> {
    let c = &target.connection;
    cmd.args(["-h", &c.host, "-p", &c.port.to_string(), "-U", &c.user]);
    crate::engine::postgres::client::libpq_env(cmd, target)
}

/// Runs `pg_basebackup` (tar to stdout, WAL fetched at the end, SHA-256 manifest, fast
/// checkpoint) and streams its output into `sink` (a file or an upload), zstd level `level`: one thread reads and
/// checks the tar (every file against the server's manifest), another compresses and hashes.
pub async fn take(target: &Target, label: &str, level: i32, sink: base::Sink) -> Result<Taken> {
    let conn = postgres::connect(target).await?;
    let server = server_facts(&conn).await?;
    drop(conn);
    let pg_basebackup = tools::find_pg_tool("pg_basebackup", server.major.max(13))?;
    let mut cmd = Command::new(&pg_basebackup);
    cmd.args([
        "-D",
        "-",
        "--format=tar",
        "--wal-method=fetch",
        "--manifest-checksums=SHA256",
        "--checkpoint=fast",
        "--no-password",
        "--label",
        label,
    ]);
    connection(&mut cmd, target)?;
    let mut child = tools::spawn(&mut cmd, false)?;
    let stderr = tools::collect_stderr(&mut child);
    let stdout = child
        .stdout
        .take()
        .context("pg_basebackup's output")?
        .into_owned_fd()
        .context("pg_basebackup's output")?;
    let segment_size = server.wal_segment_size;
    let work = tokio::task::spawn_blocking(
        move || -> Result<(StreamFacts, String, u64, Option<String>)> {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(16);
            let writer = std::thread::Builder::new()
                .name("base-backup-zstd".into())
                .spawn(move || base::compress_into(rx, sink, level))
                .context("starting the compressor")?;
            let end = tx.clone();
            let checked = {
                let tee = base::TeeReader {
                    inner: std::fs::File::from(stdout),
                    tee: move |b: &[u8]| {
                        tx.send(b.to_vec())
                            .map_err(|_| io::Error::other("the compressor stopped"))
                    },
                };
                base::check_stream(BufReader::with_capacity(1 << 20, tee), segment_size)
            };
            // Only a stream read whole and checked is written out whole: without this mark
            // the compressor fails, and an upload is aborted rather than completed.
            if checked.is_ok() {
                let _ = end.send(Vec::new());
            }
            drop(end);
            let written = writer
                .join()
                .map_err(|_| anyhow!("the compressor panicked"))?;
            let facts = checked?;
            let (sha, size, etag) = written?;
            Ok((facts, sha, size, etag))
        },
    );
    let (work, tool) = tokio::join!(work, tools::version_line(&pg_basebackup));
    let work = work.map_err(|e| anyhow!("base backup task: {e}"))?;
    match work {
        Ok((stream, sha256, size, etag)) => {
            tools::finish(child, stderr, "pg_basebackup").await?;
            Ok(Taken {
                server,
                stream,
                tool,
                sha256,
                size,
                etag,
            })
        }
        Err(ours) => {
            // A stream cut short is usually pg_basebackup's own failure: say its words.
            let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            match status {
                Ok(Ok(s)) if !s.success() => {
                    let err = stderr.await.unwrap_or_default();
                    Err(anyhow!(
                        "pg_basebackup failed ({}): {}",
                        s.code()
                            .map(|c| format!("exit code {c}"))
                            .unwrap_or_else(|| "killed by a signal".into()),
                        tools::summarise(&err)
                    ))
                }
                _ => {
                    child.stop().await;
                    Err(ours)
                }
            }
        }
    }
}

/// The user tables of the database (partitioned tables, not their partitions), or those
/// named, each checked to exist.
async fn drill_tables(conn: &PgConn, named: &[String]) -> Result<Vec<(String, String)>> {
    let mut all: Vec<(String, String)> =
        crate::engine::postgres::backup::table_names(conn.client())
            .await?
            .into_iter()
            .map(|t| (t.schema, t.name))
            .collect();
    all.sort();
    if named.is_empty() {
        return Ok(all);
    }
    let mut out = Vec::new();
    for n in named {
        let (schema, table) = n.split_once('.').unwrap_or(("public", n.as_str()));
        match all.iter().find(|(s, t)| s == schema && t == table) {
            Some(found) => out.push(found.clone()),
            None => bail!("pitr drill_tables: no table `{schema}.{table}` in the database"),
        }
    }
    Ok(out)
}

/// The drill's point: the tables locked against writes (SHARE mode, `lock_timeout` 5 s),
/// counted, and a restore point created before the lock is released, so the restored copy
/// at that point holds exactly these rows. Then a WAL switch, so the point's segment is
/// archived now. Returns the counts, the restore point's LSN and its segment's name.
pub async fn drill_point(
    target: &Target,
    named: &[String],
    point: &str,
) -> Result<(BTreeMap<String, u64>, String, String)> {
    let conn = postgres::connect(target).await?;
    let client = conn.client();
    let tables = drill_tables(&conn, named).await?;
    client
        .batch_execute(
            "BEGIN; SET LOCAL lock_timeout = '5s'; SET LOCAL statement_timeout = '30min';
             SET LOCAL max_parallel_workers_per_gather = 0",
        )
        .await
        .map_err(db_err)?;
    let list: Vec<String> = tables
        .iter()
        .map(|(s, t)| format!("{}.{}", quote_ident(s), quote_ident(t)))
        .collect();
    if !list.is_empty() {
        client
            .batch_execute(&format!("LOCK TABLE {} IN SHARE MODE", list.join(", ")))
            .await
            .map_err(db_err)
            .context("locking the drill's tables against writes (lock_timeout 5 s)")?;
    }
    let mut counts = BTreeMap::new();
    for ((s, t), q) in tables.iter().zip(&list) {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM {q}"), &[])
            .await
            .map_err(db_err)
            .with_context(|| format!("counting {s}.{t}"))?
            .get(0);
        counts.insert(format!("{s}.{t}"), n as u64);
    }
    let lsn: String = client
        .query_one("SELECT pg_create_restore_point($1)::text", &[&point])
        .await
        .map_err(db_err)
        .context("pg_create_restore_point (a superuser, or EXECUTE on it, is needed)")?
        .get(0);
    client.batch_execute("COMMIT").await.map_err(db_err)?;
    let segment: String = client
        .query_one("SELECT pg_walfile_name($1::text::pg_lsn)", &[&lsn])
        .await
        .map_err(db_err)?
        .get(0);
    client
        .batch_execute("SELECT pg_switch_wal()")
        .await
        .map_err(db_err)
        .context("pg_switch_wal (a superuser, or EXECUTE on it, is needed)")?;
    Ok((counts, lsn, segment))
}
