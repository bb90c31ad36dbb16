//! Parallel restore of a PostgreSQL archive whose largest tables would otherwise load over
//! a single connection.
//!
//! pg_restore's `--jobs` restores different objects at once, but one table's data is always
//! one COPY: when a table holds most of the rows (a common shape: one big history or
//! request table), the other jobs have nothing to do. Here such a table's COPY stream
//! (`pg_restore --data-only --file=-`) is cut at row boundaries into blocks that `jobs`
//! connections take in turn, each running its own COPY, while pg_restore restores
//! everything else in its usual sections:
//!
//! 1. `--section=pre-data` (schemas, tables, functions…);
//! 2. `--section=data --jobs N` without the split tables, and meanwhile each split table
//!    through N connections;
//! 3. `--section=post-data --jobs N` (indexes, constraints, triggers…), after all the data,
//!    as pg_restore itself orders them.
//!
//! The rows each split table received are checked against the manifest's count. The order
//! of the rows on disk differs from the source's (blocks land in parallel); nothing in SQL
//! depends on it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Bytes, BytesMut};
use futures_util::SinkExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, Mutex};

use crate::config::Target;
use crate::engine::postgres::client::run_pg_restore;
use crate::engine::postgres::copy_text;
use crate::engine::{postgres, tools};
use crate::privacy::transform::Rewriter;

/// A table is split only from this many rows: below, a second COPY costs more than it saves.
pub const SPLIT_MIN_ROWS: u64 = 100_000;

/// Rows go to the connections in blocks of about this size.
const BLOCK: usize = 1 << 20;

/// A TABLE DATA entry of the archive to load over several connections.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Its line in `pg_restore --list`.
    pub entry: String,
    /// `schema.table`, as the manifest names it.
    pub table: String,
    /// Its rows according to the manifest.
    pub rows: u64,
}

/// The TABLE DATA entries of `list` (`pg_restore --list`) worth splitting across `jobs`
/// connections: at least [`SPLIT_MIN_ROWS`] rows, and more than an even share of all the
/// rows (`rows` is the manifest's count per table), which pg_restore's own scheduling could
/// not balance. Entry lines read `<id>; <tableoid> <oid> TABLE DATA <schema> <table> <owner>`.
pub fn plan(list: &str, rows: &BTreeMap<String, u64>, jobs: u32) -> Vec<Split> {
    if jobs < 2 {
        return Vec::new();
    }
    let total: u64 = rows.values().sum();
    let big: Vec<(&String, u64)> = rows
        .iter()
        .filter(|(_, n)| **n >= SPLIT_MIN_ROWS && **n * u64::from(jobs) > total)
        .map(|(t, n)| (t, *n))
        .collect();
    data_entries(list, &big)
}

/// The TABLE DATA entries of `list` for the tables of `wanted` (`schema.table` and rows).
fn data_entries(list: &str, wanted: &[(&String, u64)]) -> Vec<Split> {
    let mut out = Vec::new();
    for line in list.lines() {
        if line.trim_start().starts_with(';') {
            continue;
        }
        let Some((_, rest)) = line.split_once("; ") else {
            continue;
        };
        let mut t = rest.splitn(5, ' ');
        let (Some(_), Some(_), Some("TABLE"), Some("DATA"), Some(names)) =
            (t.next(), t.next(), t.next(), t.next(), t.next())
        else {
            continue;
        };
        // `schema.table` may hold dots of its own: try each place the dot could be.
        let found = wanted.iter().find(|(key, _)| {
            key.match_indices('.').any(|(i, _)| {
                let prefix = format!("{} {} ", &key[..i], &key[i + 1..]);
                names.starts_with(&prefix)
            })
        });
        if let Some((key, n)) = found {
            out.push(Split {
                entry: line.to_string(),
                table: (*key).clone(),
                rows: *n,
            });
        }
    }
    out
}

/// The TABLE DATA entries of `list` for `tables` (`schema.table`), whatever their size:
/// loaded through [`load_table`] so that their rows are rewritten on the way.
pub fn entries_of(list: &str, tables: &[String], rows: &BTreeMap<String, u64>) -> Vec<Split> {
    let wanted: Vec<(&String, u64)> = tables
        .iter()
        .map(|t| (t, rows.get(t).copied().unwrap_or(0)))
        .collect();
    data_entries(list, &wanted)
}

/// `list` with the entries of `splits` commented out.
pub fn without(list: &str, splits: &[Split]) -> String {
    let mut out = String::with_capacity(list.len());
    for line in list.lines() {
        if splits.iter().any(|s| s.entry == line) {
            out.push(';');
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Restores `path` into `into` as described in the module's documentation. `list` is the
/// archive's list of entries to restore (extensions already present left out), `rows` the
/// manifest's rows per table. With `prepare`, the rows of the tables it rules are
/// rewritten as they load.
#[allow(clippy::too_many_arguments)]
pub async fn restore(
    pg_restore: &Path,
    target: &Target,
    path: &Path,
    into: &str,
    list: &str,
    rows: &BTreeMap<String, u64>,
    jobs: u32,
    prepare: Option<crate::engine::PrepareRewrites<'_>>,
) -> Result<Vec<String>> {
    let temp = tools::PrivateTemp::new()?;
    let write = |name: &str, text: &str| -> Result<std::path::PathBuf> {
        let p = temp.dir.join(name);
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
        Ok(p)
    };
    let all = write("all.list", list)?;
    let jobs_arg = format!("--jobs={}", jobs.max(1));
    let section = |name: &str, list: &Path, parallel: bool| {
        let mut args = vec![
            format!("--section={name}"),
            format!("--use-list={}", list.display()),
        ];
        if parallel {
            args.push(jobs_arg.clone());
        }
        args
    };
    run_pg_restore(
        pg_restore,
        target,
        into,
        path,
        &section("pre-data", &all, false),
    )
    .await?;
    let mut splits = plan(list, rows, jobs);
    let rewrites = match prepare {
        Some(prepare) => {
            // The tables exist, their constraints not yet: those are read from the
            // archive's post-data script.
            let mut columns = {
                use crate::engine::Driver;
                let conn = crate::engine::connect(&target.with_database(into)).await?;
                conn.privacy_columns().await?
            };
            let script = Command::new(pg_restore)
                .args(["--section=post-data", "--file=-"])
                .arg(format!("--use-list={}", all.display()))
                .arg(path)
                .output()
                .await
                .context("starting pg_restore")?;
            if !script.status.success() {
                bail!(
                    "pg_restore (reading the constraints): {}",
                    tools::summarise(&String::from_utf8_lossy(&script.stderr))
                );
            }
            postgres::privacy::complete_keys(
                &mut columns,
                &String::from_utf8_lossy(&script.stdout),
            );
            let rw = prepare(columns).await?;
            let ruled: Vec<String> = rw.plans().iter().map(|p| p.table.to_string()).collect();
            for s in entries_of(list, &ruled, rows) {
                if !splits.iter().any(|x| x.entry == s.entry) {
                    splits.push(s);
                }
            }
            Some(rw)
        }
        None => None,
    };
    let rest = write("rest.list", &without(list, &splits))?;
    let data_args = section("data", &rest, true);
    let others = run_pg_restore(pg_restore, target, into, path, &data_args);
    let big = async {
        for (i, s) in splits.iter().enumerate() {
            let one = write(&format!("table{i}.list"), &format!("{}\n", s.entry))?;
            load_table(
                pg_restore,
                target,
                path,
                into,
                &one,
                s,
                jobs,
                rewrites.as_deref(),
            )
            .await?;
        }
        Ok::<_, anyhow::Error>(())
    };
    let (others, big) = tokio::join!(others, big);
    big?;
    others?;
    run_pg_restore(
        pg_restore,
        target,
        into,
        path,
        &section("post-data", &all, true),
    )
    .await?;
    Ok(splits.iter().map(|s| s.table.clone()).collect())
}

/// Streams one table's data out of the archive and into `jobs` concurrent COPYs.
#[allow(clippy::too_many_arguments)]
async fn load_table(
    pg_restore: &Path,
    target: &Target,
    path: &Path,
    into: &str,
    list: &Path,
    split: &Split,
    jobs: u32,
    rewrites: Option<&crate::privacy::transform::Rewrites>,
) -> Result<()> {
    let mut cmd = Command::new(pg_restore);
    cmd.arg("--data-only")
        .arg("--file=-")
        .arg(format!("--use-list={}", list.display()))
        .arg(path);
    let mut child = tools::spawn(&mut cmd, false)?;
    let stderr = tools::collect_stderr(&mut child);
    let stdout = child.stdout.take().context("pg_restore's output")?;
    let mut reader = BufReader::with_capacity(BLOCK, stdout);
    let what = format!("the data of {}", split.table);

    // The script starts with the session settings pg_restore would use (encoding, search
    // path, row security…), then the COPY statement.
    let mut setup = String::from("SET statement_timeout = 0;\n");
    let mut line = Vec::with_capacity(4096);
    let copy = loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            let err = tools::finish(child, stderr, "pg_restore").await.err();
            bail!(
                "{what}: no COPY in the archive's script{}",
                err.map(|e| format!(" ({e:#})")).unwrap_or_default()
            );
        }
        let text = String::from_utf8_lossy(&line);
        let t = text.trim_end();
        if t.starts_with("COPY ") && t.ends_with("FROM stdin;") {
            break t.trim_end_matches(';').to_string();
        } else if t.starts_with("SET ") || t.starts_with("SELECT ") {
            setup.push_str(t);
            setup.push('\n');
        } else if !(t.is_empty() || t.starts_with("--") || t.starts_with('\\')) {
            bail!("{what}: unexpected statement before the rows: {t}");
        }
    };

    let rewriter = match rewrites {
        Some(rw) => {
            let (table, columns) = copy_text::parse_copy(&copy)?;
            rw.rewriter(&table, &columns).map_err(|e| anyhow!(e))?
        }
        None => None,
    };
    let (tx, rx) = mpsc::channel::<Bytes>(2 * jobs as usize);
    let rx = Arc::new(Mutex::new(rx));
    // Set once every row has been read: a connection commits its COPY only then, so a
    // stream that breaks midway leaves no rows behind.
    let complete = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..jobs.max(1))
        .map(|_| {
            copy_worker(
                target,
                into,
                &setup,
                &copy,
                rx.clone(),
                complete.clone(),
                rewriter.as_deref(),
            )
        })
        .collect();
    drop(rx);
    let read = async {
        let mut block = BytesMut::with_capacity(BLOCK + 64 * 1024);
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line).await? == 0 {
                bail!("{what}: the archive's script ended before the end of the rows");
            }
            if line == b"\\.\n" {
                break;
            }
            block.extend_from_slice(&line);
            if block.len() >= BLOCK && tx.send(block.split().freeze()).await.is_err() {
                // Every connection has stopped: their error is the one to report.
                return Ok(());
            }
        }
        if !block.is_empty() {
            let _ = tx.send(block.freeze()).await;
        }
        complete.store(true, Ordering::SeqCst);
        drop(tx);
        // The rest of the script (resetting settings) is not needed; let pg_restore finish.
        tokio::io::copy(&mut reader, &mut tokio::io::sink()).await?;
        Ok::<_, anyhow::Error>(())
    };
    let (read, loaded) = tokio::join!(read, futures_util::future::try_join_all(workers));
    // A stream that broke is reported first: pg_restore's own error names the cause (it has
    // ended: its output did), and the connections only say that they stopped.
    if let Err(e) = read {
        let tool = tools::finish(child, stderr, "pg_restore").await.err();
        return Err(tool.unwrap_or(e).context(what));
    }
    // A connection that failed: pg_restore, stopped mid-write, is killed on drop.
    let loaded: u64 = loaded.with_context(|| what.clone())?.iter().sum();
    tools::finish(child, stderr, "pg_restore").await?;
    if loaded != split.rows {
        return Err(anyhow!(
            "{what}: {loaded} rows restored, the manifest says {}",
            split.rows
        ));
    }
    Ok(())
}

/// One connection's COPY, fed with the blocks it takes from the shared queue.
async fn copy_worker(
    target: &Target,
    into: &str,
    setup: &str,
    copy: &str,
    queue: Arc<Mutex<mpsc::Receiver<Bytes>>>,
    complete: Arc<AtomicBool>,
    rewriter: Option<&Rewriter>,
) -> Result<u64> {
    let conn = postgres::connect(&target.with_database(into)).await?;
    let client = conn.client();
    client
        .batch_execute(setup)
        .await
        .map_err(postgres::db_err)?;
    let sink = client
        .copy_in::<_, Bytes>(copy)
        .await
        .map_err(postgres::db_err)?;
    futures_util::pin_mut!(sink);
    loop {
        let next = queue.lock().await.recv().await;
        let Some(mut block) = next else { break };
        if let Some(rw) = rewriter {
            block = Bytes::from(copy_text::rewrite_block(rw, &block)?);
        }
        sink.send(block).await.map_err(postgres::db_err)?;
    }
    if !complete.load(Ordering::SeqCst) {
        // Dropping the sink without finish() aborts this COPY.
        bail!("stopped before the end of the rows");
    }
    sink.as_mut().finish().await.map_err(postgres::db_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = ";\n; Archive created at 2026-11-21\n;\n\
        215; 1259 51279 TABLE public pgbench_accounts mairie\n\
        3337; 0 51279 TABLE DATA public pgbench_accounts mairie\n\
        3338; 0 51282 TABLE DATA public pgbench_branches mairie\n\
        3339; 0 51290 TABLE DATA my.schema big.table mairie\n\
        ;3340; 0 51295 TABLE DATA public commented mairie\n\
        3190; 2606 51300 CONSTRAINT public pgbench_accounts pgbench_accounts_pkey mairie\n";

    fn rows(v: &[(&str, u64)]) -> BTreeMap<String, u64> {
        v.iter().map(|(k, n)| (k.to_string(), *n)).collect()
    }

    #[test]
    fn only_big_tables_beyond_an_even_share_are_split() {
        let r = rows(&[
            ("public.pgbench_accounts", 2_000_000),
            ("public.pgbench_branches", 20),
        ]);
        let p = plan(LIST, &r, 2);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].table, "public.pgbench_accounts");
        assert_eq!(p[0].rows, 2_000_000);
        assert!(p[0].entry.starts_with("3337; "));
        // One job: nothing to split across.
        assert!(plan(LIST, &r, 1).is_empty());
        // Two tables of even size: pg_restore's own jobs balance them.
        let even = rows(&[
            ("public.pgbench_accounts", 500_000),
            ("public.pgbench_branches", 500_000),
        ]);
        assert!(plan(LIST, &even, 2).is_empty());
        // Small tables are never split.
        assert!(plan(LIST, &rows(&[("public.pgbench_accounts", 99_999)]), 4).is_empty());
    }

    #[test]
    fn names_with_dots_and_commented_entries() {
        let r = rows(&[
            ("my.schema.big.table", 300_000),
            ("public.commented", 500_000),
        ]);
        let p = plan(LIST, &r, 4);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].table, "my.schema.big.table");
        assert!(p[0].entry.starts_with("3339; "));
    }

    #[test]
    fn split_entries_are_commented_out_of_the_rest() {
        let r = rows(&[("public.pgbench_accounts", 2_000_000)]);
        let rest = without(LIST, &plan(LIST, &r, 2));
        assert!(rest.contains("\n;3337; 0 51279 TABLE DATA public pgbench_accounts mairie\n"));
        assert!(rest.contains("\n3338; 0 51282 TABLE DATA public pgbench_branches"));
        assert_eq!(rest.lines().count(), LIST.lines().count());
    }
}
