//! PostgreSQL backups: `pg_dump -Fc` in the snapshot where the tables were listed,
//! `pg_restore` (parallel with `--jobs`), and a full read of an archive to verify it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use tokio::process::Command;
use tokio_postgres::Client;

use crate::config::Target;
use crate::engine::cleanup::Created;
use crate::engine::postgres::client::{connection_args, run_pg_restore};
use crate::engine::postgres::{self, quote_ident};
use crate::engine::postgres::{archive, split};
use crate::engine::tools;
use crate::engine::Driver;
use crate::engine::DumpInfo;
use tokio_postgres::error::SqlState;

/// Dumps the target's database into `out`, with the exact rows of every table in the
/// dump's snapshot.
///
/// A pg_dump whose archive layout [`archive`] knows runs uncompressed (`--compress=0`):
/// the [`archive::Recompressor`] compresses its data blocks (zlib, as pg_dump would)
/// and counts their COPY rows on the way, so the manifest's counts are read from the
/// archive itself. A newer pg_dump compresses its own output, and the rows are counted by
/// `count(*)` meanwhile. Either way the counting connection exports the snapshot pg_dump
/// then uses (`--snapshot`), and lists the tables in it.
pub async fn dump(target: &Target, level: Option<u32>, out: &mut impl Write) -> Result<DumpInfo> {
    let conn = postgres::connect(target).await?;
    let client = conn.client();
    let server_version = conn.server_version().await?;
    let num: String = client
        .query_one("SHOW server_version_num", &[])
        .await
        .map_err(postgres::db_err)?
        .get(0);
    let major = num.parse::<u32>().unwrap_or(0) / 10_000;
    let (dump_major, pg_dump) = tools::find_pg_tool_major("pg_dump", major)?;
    let recompress = dump_major <= archive::NEWEST_PG_DUMP;
    // A count shares the machine with pg_dump and the server's COPY: one process per count
    // (no parallel workers, which triple its CPU time for a small gain in latency nobody
    // waits for) and no JIT compilation.
    client
        .batch_execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET LOCAL statement_timeout = 0;
             SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL jit = off",
        )
        .await
        .map_err(postgres::db_err)?;
    let snapshot: String = client
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .map_err(postgres::db_err)?
        .get(0);
    let mut cmd = Command::new(&pg_dump);
    cmd.args(["--format=custom", "--no-password", "--snapshot", &snapshot]);
    if recompress {
        cmd.arg("--compress=0");
    } else if let Some(level) = level {
        cmd.arg(format!("--compress={level}"));
    }
    connection_args(&mut cmd, target, &target.connection.database)?;
    let mut child = tools::spawn(&mut cmd, false)?;
    let stderr = tools::collect_stderr(&mut child);
    let stdout = child.stdout.take().context("pg_dump's output")?;
    // The tables are listed (or counted) while pg_dump reads, in its snapshot; the tool's
    // version line for the manifest is read meanwhile too.
    let (tables, tool) = if recompress {
        let mut archive = archive::Recompressor::new(&mut *out, level.unwrap_or(6));
        let (pumped, tables, tool) = tokio::join!(
            tools::pump(stdout, &mut archive),
            snapshot_tables(client),
            tools::version_line(&pg_dump)
        );
        let tables = stop_on_error(&mut child, pumped, tables).await?;
        tools::finish(child, stderr, "pg_dump").await?;
        let summary = archive.finish()?;
        let counts = archive_counts(client, &tables, &summary).await?;
        (counts, tool)
    } else {
        let (pumped, tables, tool) = tokio::join!(
            tools::pump(stdout, out),
            count_tables(client),
            tools::version_line(&pg_dump)
        );
        let tables = stop_on_error(&mut child, pumped, tables).await?;
        tools::finish(child, stderr, "pg_dump").await?;
        (tables, tool)
    };
    client.batch_execute("COMMIT").await.ok();
    Ok(DumpInfo {
        tool,
        server_version,
        tables,
        format: "pg_dump custom".into(),
    })
}

/// Stops pg_dump when its output could not be taken (disk full…) or the tables could
/// not be read, and says which.
async fn stop_on_error<T>(
    child: &mut tools::Supervised,
    pumped: Result<u64>,
    tables: Result<T>,
) -> Result<T> {
    if let Err(e) = pumped {
        child.stop().await;
        return Err(e);
    }
    match tables {
        Ok(t) => Ok(t),
        Err(e) => {
            child.stop().await;
            Err(e.context("reading the tables in the dump's snapshot"))
        }
    }
}

/// A table of the database and the tables whose rows its `count(*)` counts.
#[derive(Debug)]
struct SnapshotTable {
    table: Table,
    /// Oids of itself (unless partitioned) and of its descendants by inheritance or
    /// partitioning, at any depth, that hold rows of their own (relkind `r`).
    members: Vec<u32>,
}

/// The tables of [`table_names`] with their members, read in the current transaction.
async fn snapshot_tables(client: &Client) -> Result<Vec<SnapshotTable>> {
    let tables = table_names(client).await?;
    let rows = client
        .query(
            "WITH RECURSIVE tree(anc, des) AS (
                 SELECT inhparent, inhrelid FROM pg_inherits
                 UNION
                 SELECT t.anc, i.inhrelid FROM tree t JOIN pg_inherits i ON i.inhparent = t.des)
             SELECT t.anc, t.des FROM tree t JOIN pg_class c ON c.oid = t.des WHERE c.relkind = 'r'",
            &[],
        )
        .await
        .map_err(postgres::db_err)?;
    let mut descendants: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for r in rows {
        descendants.entry(r.get(0)).or_default().push(r.get(1));
    }
    Ok(tables
        .into_iter()
        .map(|table| {
            let mut members = descendants.remove(&table.oid).unwrap_or_default();
            if !table.partitioned {
                members.push(table.oid);
            }
            SnapshotTable { table, members }
        })
        .collect())
}

/// Rows per table as the archive holds them: the TABLE DATA rows of its members, which is
/// what its `count(*)` says. A table with a member whose rows the archive does not hold
/// (an extension's table, say) is counted with `count(*)` in the snapshot, still open.
async fn archive_counts(
    client: &Client,
    tables: &[SnapshotTable],
    archive: &archive::Summary,
) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for t in tables {
        let held: Option<u64> = t
            .members
            .iter()
            .map(|oid| archive.rows_by_oid.get(oid))
            .sum();
        let n = match held {
            Some(n) => n,
            None => count_one(client, &t.table).await?,
        };
        out.insert(t.table.key(), n);
    }
    Ok(out)
}

/// Reads the whole archive as a restore would (`pg_restore --file=/dev/null`): every
/// data block is decompressed, so a damaged archive fails here rather than on the day of
/// the restore.
pub async fn verify(path: &Path) -> Result<()> {
    let pg_restore = tools::find_pg_tool("pg_restore", 9)?;
    let mut cmd = Command::new(pg_restore);
    cmd.arg("--file=/dev/null").arg(path);
    let mut child = tools::spawn(&mut cmd, false)?;
    let stderr = tools::collect_stderr(&mut child);
    tools::finish(child, stderr, "pg_restore (reading the archive)").await
}

/// Restores an archive into `into` (created when absent). A database that already holds
/// tables is refused unless `force`, which then drops its objects first. With `jobs` > 1,
/// the tables too big for pg_restore's own jobs to balance (by the manifest's `rows`) are
/// loaded over several connections ([`split`]); their names are returned.
pub async fn restore(
    target: &Target,
    path: &Path,
    into: &str,
    force: bool,
    jobs: u32,
    rows: &BTreeMap<String, u64>,
    prepare: Option<crate::engine::PrepareRewrites<'_>>,
) -> Result<Vec<String>> {
    // The archive is listed while the server is asked about the destination. Any
    // pg_restore reads an archive of its own version or older; the newest one installed is
    // also the one chosen below for the restore (which fails if it is older than the server).
    let lister = tools::find_pg_tool("pg_restore", 0)?;
    let listing = Command::new(&lister).arg("--list").arg(path).output();
    let destination = async {
        let admin = postgres::connect(&target.with_database("postgres")).await?;
        let exists = admin
            .client()
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&into])
            .await
            .map_err(postgres::db_err)?
            .is_some();
        if !exists {
            admin
                .client()
                .batch_execute(&format!("CREATE DATABASE {}", quote_ident(into)))
                .await
                .map_err(postgres::db_err)
                .with_context(|| format!("creating database {into}"))?;
        }
        let server_num: String = admin
            .client()
            .query_one("SHOW server_version_num", &[])
            .await
            .map_err(postgres::db_err)?
            .get(0);
        drop(admin);
        let db = postgres::connect(&target.with_database(into)).await?;
        if exists {
            let n = table_names(db.client()).await?.len();
            if n > 0 && !force {
                bail!("database {into} holds {n} tables: restore into another one with --into, or use --force to replace them");
            }
        }
        // Extensions the destination already has (pg_stat_statements from template1, say)
        // are left as they are: dropping, recreating or commenting on one needs its owner
        // or a superuser, which the restoring role usually is not, and --exit-on-error
        // stops there.
        let existing: Vec<String> = db
            .client()
            .query("SELECT extname::text FROM pg_extension", &[])
            .await
            .map_err(postgres::db_err)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok::<_, anyhow::Error>((exists, server_num, existing))
    };
    let (listing, destination) = tokio::join!(listing, destination);
    let (exists, server_num, existing) = destination?;
    // A database made here is dropped if the restore fails or is stopped.
    let created = (!exists).then(|| Created::register(target, into));
    let res = load(
        target,
        path,
        into,
        force,
        jobs,
        rows,
        listing,
        exists,
        &server_num,
        &existing,
        prepare,
    )
    .await;
    match (res, created) {
        (Ok(split), c) => {
            if let Some(c) = c {
                c.keep();
            }
            Ok(split)
        }
        (Err(e), Some(c)) => {
            let note = c.abandon().await;
            Err(e.context(note))
        }
        (Err(e), None) if exists && force => Err(e.context(format!(
            "database {into} was being replaced (--force) and is left incomplete: restore it again"
        ))),
        (Err(e), None) => Err(e),
    }
}

/// The archive into the destination database, once it exists.
#[allow(clippy::too_many_arguments)]
async fn load(
    target: &Target,
    path: &Path,
    into: &str,
    force: bool,
    jobs: u32,
    rows: &BTreeMap<String, u64>,
    listing: std::io::Result<std::process::Output>,
    exists: bool,
    server_num: &str,
    existing: &[String],
    prepare: Option<crate::engine::PrepareRewrites<'_>>,
) -> Result<Vec<String>> {
    let pg_restore = tools::find_pg_tool(
        "pg_restore",
        server_num.parse::<u32>().unwrap_or(0) / 10_000,
    )?;
    let listing = listing.context("starting pg_restore --list")?;
    if !listing.status.success() {
        bail!(
            "pg_restore --list: {}",
            tools::summarise(&String::from_utf8_lossy(&listing.stderr))
        );
    }
    let full = String::from_utf8_lossy(&listing.stdout);
    let filtered = without_extensions(&full, existing);
    let clean = exists && force;
    if prepare.is_some() && clean {
        bail!("rows are rewritten only into a new database, not with --force");
    }
    if !clean {
        let list = filtered.as_deref().unwrap_or(&full);
        if prepare.is_some() || !split::plan(list, rows, jobs).is_empty() {
            return split::restore(&pg_restore, target, path, into, list, rows, jobs, prepare)
                .await;
        }
    }
    let temp = tools::PrivateTemp::new()?;
    let use_list = match filtered {
        Some(list) => {
            let p = temp.dir.join("restore.list");
            std::fs::write(&p, list).with_context(|| format!("writing {}", p.display()))?;
            Some(p)
        }
        None => None,
    };
    let mut args = vec![format!("--jobs={}", jobs.max(1))];
    if clean {
        args.extend(["--clean".to_string(), "--if-exists".to_string()]);
    }
    if let Some(p) = &use_list {
        args.push(format!("--use-list={}", p.display()));
    }
    run_pg_restore(&pg_restore, target, into, path, &args).await?;
    Ok(Vec::new())
}

/// Exact row counts of every table of the database (partitions counted in their parent).
pub async fn count_tables(client: &Client) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for t in table_names(client).await? {
        let n = count_one(client, &t).await?;
        out.insert(t.key(), n);
    }
    Ok(out)
}

async fn count_one(client: &Client, t: &Table) -> Result<u64> {
    let n: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM {}.{}",
                quote_ident(&t.schema),
                quote_ident(&t.name)
            ),
            &[],
        )
        .await
        .map_err(postgres::db_err)
        .with_context(|| format!("counting {}", t.key()))?
        .get(0);
    Ok(n as u64)
}

/// A user table (or partitioned table) of the database.
#[derive(Debug)]
pub(crate) struct Table {
    oid: u32,
    pub(crate) schema: String,
    pub(crate) name: String,
    partitioned: bool,
}

impl Table {
    /// Its name in manifests: `schema.table`.
    fn key(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

/// The user tables of the database (partitions are counted in their parent; sessions'
/// temporary tables, which pg_dump never holds and no other session may read, left out), largest
/// first: during a backup that counts them, the longest count then runs while pg_dump is
/// still reading the catalogs, before its COPYs keep the machine busy.
pub(crate) async fn table_names(client: &Client) -> Result<Vec<Table>> {
    let rows = client
        .query(
            "SELECT c.oid, n.nspname, c.relname, c.relkind = 'p'
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
               AND n.nspname NOT LIKE 'pg_temp%'
             ORDER BY c.relpages DESC, 2, 3",
            &[],
        )
        .await
        .map_err(postgres::db_err)?;
    Ok(rows
        .iter()
        .map(|r| Table {
            oid: r.get(0),
            schema: r.get(1),
            name: r.get(2),
            partitioned: r.get(3),
        })
        .collect())
}

pub async fn count_rows(target: &Target, database: &str) -> Result<BTreeMap<String, u64>> {
    let conn = postgres::connect(&target.with_database(database)).await?;
    conn.client()
        .batch_execute("SET statement_timeout = 0")
        .await
        .map_err(postgres::db_err)?;
    count_tables(conn.client()).await
}

/// Creates an empty database carrying `marker` as its comment.
pub async fn create_marked(target: &Target, name: &str, marker: &str) -> Result<()> {
    let admin = postgres::connect(&target.with_database("postgres")).await?;
    admin
        .client()
        .batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
        .await
        .map_err(postgres::db_err)
        .with_context(|| format!("creating database {name}"))?;
    admin
        .client()
        .batch_execute(&format!(
            "COMMENT ON DATABASE {} IS '{}'",
            quote_ident(name),
            marker.replace('\'', "''")
        ))
        .await
        .map_err(postgres::db_err)
        .with_context(|| format!("marking database {name}"))
}

/// Databases whose comment is a drill's marker: (name, comment).
pub async fn marked_databases(target: &Target) -> Result<Vec<(String, String)>> {
    let admin = postgres::connect(&target.with_database("postgres")).await?;
    let rows = admin
        .client()
        .query(
            "SELECT d.datname::text, shobj_description(d.oid, 'pg_database')
             FROM pg_database d
             WHERE shobj_description(d.oid, 'pg_database') LIKE 'mairie-dba drill scratch: %'",
            &[],
        )
        .await
        .map_err(postgres::db_err)?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Drops a database, ending the sessions on it. `WITH (FORCE)` refuses, for a role that is
/// not a superuser, when an autovacuum worker is in the database (it belongs to no role):
/// common right after a restore loaded big tables. A plain DROP then asks the worker to
/// leave and waits for it, so it is retried that way a few times.
pub async fn drop_database(target: &Target, name: &str) -> Result<()> {
    let admin = postgres::connect(&target.with_database("postgres")).await?;
    let force = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name));
    let plain = format!("DROP DATABASE IF EXISTS {}", quote_ident(name));
    let mut last = match admin.client().batch_execute(&force).await {
        Ok(()) => return Ok(()),
        Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => e,
        Err(e) => {
            return Err(postgres::db_err(e)).with_context(|| format!("dropping database {name}"))
        }
    };
    for _ in 0..5 {
        match admin.client().batch_execute(&plain).await {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        let _ = admin.client().batch_execute(&force).await;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    Err(postgres::db_err(last)).with_context(|| format!("dropping database {name}"))
}

/// The archive's table of contents (`pg_restore --list`) without the entries of the
/// extensions in `existing` (the EXTENSION itself and the COMMENT on it), or None when it
/// has none of them. Entry lines read `<id>; <tableoid> <oid> EXTENSION - <name>` and
/// `<id>; <tableoid> <oid> COMMENT - EXTENSION <name>`.
pub fn without_extensions(list: &str, existing: &[String]) -> Option<String> {
    let is_existing = |line: &str| {
        let Some((_, rest)) = line.split_once("; ") else {
            return false;
        };
        let t: Vec<&str> = rest.split_whitespace().collect();
        let name = match t.as_slice() {
            [_, _, "EXTENSION", "-", name, ..] => name,
            [_, _, "COMMENT", "-", "EXTENSION", name, ..] => name,
            _ => return false,
        };
        existing.iter().any(|e| e == name)
    };
    let mut dropped = false;
    let mut out = String::with_capacity(list.len());
    for line in list.lines() {
        if !line.trim_start().starts_with(';') && is_existing(line) {
            dropped = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    dropped.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_extensions_are_left_out_of_the_restore_list() {
        let list = ";\n; Archive created at 2026-11-21\n;\n\
                    2; 3079 51240 EXTENSION - pg_stat_statements \n\
                    3359; 0 0 COMMENT - EXTENSION pg_stat_statements \n\
                    7; 3079 51300 EXTENSION - pgcrypto \n\
                    215; 1259 51279 TABLE public t mairie\n";
        let kept = without_extensions(list, &["pg_stat_statements".into(), "plpgsql".into()])
            .expect("entries dropped");
        assert!(!kept.contains("pg_stat_statements"), "{kept}");
        assert!(kept.contains("EXTENSION - pgcrypto") && kept.contains("TABLE public t"));
        assert!(kept.starts_with(";\n; Archive created"));
        assert_eq!(without_extensions(list, &["plpgsql".into()]), None);
    }
}
