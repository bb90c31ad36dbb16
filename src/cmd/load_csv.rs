//! `load-csv`: files into one table, each in its own transaction; or `--all`, the config's
//! demo datasets in foreign-key order, in one transaction.
//!
//! The reader thread (see `load/`) parses while the engine streams; this module owns the
//! transactions, `--truncate`, the progress bar and the report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Map, Value};

use crate::catalog::TableRef;
use crate::cli::{CsvOptions, DateOrder, EncodingArg, LoadCsvArgs};
use crate::cmd::failure;
use crate::config::{DatasetEntry, Target};
use crate::engine::Driver;
use crate::engine::{self, Conn, LoadRequest};
use crate::error::ConfigError;
use crate::load::reject::RejectFile;
use crate::load::{self, CsvSpec};
use crate::output::{Outcome, Report, Status};
use crate::Ctx;

/// One file to load and how.
#[derive(Debug, Clone)]
struct Job {
    table: TableRef,
    path: PathBuf,
    label: String,
    spec: CsvSpec,
}

/// What became of one file on one target.
struct Loaded {
    rows: u64,
    bytes: u64,
    seconds: f64,
    /// What the user should know though nothing failed (`--truncate` used DELETE).
    notes: Vec<String>,
    /// Rows left out, with --reject-file.
    rejected: Option<u64>,
}

pub async fn run(args: &LoadCsvArgs, ctx: &Ctx) -> Result<Outcome> {
    let jobs = if args.all {
        dataset_jobs(ctx)?
    } else {
        file_jobs(args)?
    };
    let mut rejects = match (&args.reject_file, args.max_errors) {
        (Some(path), Some(max)) => Some(reject_sink(path, max, &jobs, ctx)?),
        _ => None,
    };
    let mut report = LoadReport { loads: Vec::new() };
    for target in &ctx.targets {
        let results = if args.all {
            load_all(target, &jobs, args.truncate, ctx).await
        } else {
            load_files(target, &jobs, args.truncate, rejects.as_mut(), ctx).await
        };
        for (job, res) in jobs.iter().zip(results) {
            let item = match res {
                Ok(l) => LoadItem {
                    target: target.name.clone(),
                    table: job.table.to_string(),
                    file: job.label.clone(),
                    rows: l.rows,
                    bytes: l.bytes,
                    seconds: l.seconds,
                    status: "success",
                    error: None,
                    rejected: l.rejected,
                    notes: l.notes,
                },
                Err(e) => {
                    let msg = failure(ctx, &target.name, &e);
                    LoadItem {
                        target: target.name.clone(),
                        table: job.table.to_string(),
                        file: job.label.clone(),
                        rows: 0,
                        bytes: file_size(&job.path),
                        seconds: 0.0,
                        status: "failed",
                        error: Some(msg),
                        rejected: None,
                        notes: Vec::new(),
                    }
                }
            };
            report.loads.push(item);
        }
    }
    if let Some(sink) = rejects {
        let path = sink.file.path().to_path_buf();
        sink.file
            .finish()
            .with_context(|| format!("--reject-file {}", path.display()))?;
    }
    Ok(Outcome::from_report(&report))
}

/// Where rejected rows go, and how many one file may have.
struct RejectSink {
    file: RejectFile,
    max: u64,
}

fn reject_sink(path: &Path, max: u64, jobs: &[Job], ctx: &Ctx) -> Result<RejectSink> {
    if ctx.targets.len() > 1 {
        return Err(ConfigError::new(
            "--reject-file loads one target at a time: name it with --target",
        )
        .into());
    }
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if let Some(j) = jobs.iter().find(|j| same(&j.path, path)) {
        return Err(ConfigError::new(format!(
            "--reject-file {} is one of the files to load ({})",
            path.display(),
            j.label
        ))
        .into());
    }
    let spec = &jobs[0].spec;
    let file = RejectFile::create(path, spec.delimiter, spec.quote).map_err(ConfigError::new)?;
    Ok(RejectSink { file, max })
}

/// What `load-csv` did: one load per file and target, in the order they were reported.
struct LoadReport {
    loads: Vec<LoadItem>,
}

/// One file on one target: what it loaded, or why it loaded nothing (then `rows` is 0 and
/// `bytes` the file's size).
#[derive(Debug, serde::Serialize)]
struct LoadItem {
    target: String,
    table: String,
    file: String,
    rows: u64,
    bytes: u64,
    /// Exact here and in the summary line; rounded to the millisecond in the JSON.
    #[serde(serialize_with = "to_millis")]
    seconds: f64,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Rows left out (in the reject file), with --reject-file.
    #[serde(skip_serializing_if = "Option::is_none")]
    rejected: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
}

fn to_millis<S: serde::Serializer>(seconds: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64((seconds * 1000.0).round() / 1000.0)
}

impl Report for LoadReport {
    fn status(&self) -> Status {
        Status::of_operation(self.loads.iter().any(|l| l.error.is_some()))
    }

    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("loads".into(), json!(self.loads));
        m
    }

    fn lines(&self) -> Vec<String> {
        self.loads
            .iter()
            .flat_map(|l| {
                let head = match &l.error {
                    None => format!(
                        "{}: {} <- {}: {} rows{}, {} in {:.2} s ({:.0} rows/s)",
                        l.target,
                        l.table,
                        l.file,
                        l.rows,
                        match l.rejected {
                            Some(n) => format!(" ({n} rejected)"),
                            None => String::new(),
                        },
                        human_bytes(l.bytes),
                        l.seconds,
                        l.rows as f64 / l.seconds.max(1e-9)
                    ),
                    Some(_) => format!(
                        "{}: {} <- {}: FAILED, nothing loaded",
                        l.target, l.table, l.file
                    ),
                };
                std::iter::once(head).chain(l.notes.iter().map(|n| format!("  note: {n}")))
            })
            .collect()
    }
}

fn file_jobs(args: &LoadCsvArgs) -> Result<Vec<Job>> {
    let table = TableRef::parse(args.table.as_deref().unwrap_or_default())?;
    let spec = CsvSpec::from_options(&args.csv)?;
    Ok(args
        .files
        .iter()
        .map(|p| Job {
            table: table.clone(),
            path: p.clone(),
            label: p.display().to_string(),
            spec: spec.clone(),
        })
        .collect())
}

fn dataset_jobs(ctx: &Ctx) -> Result<Vec<Job>> {
    if ctx.config.datasets.is_empty() {
        return Err(crate::error::ConfigError::new(format!(
            "{}: no `datasets:` listed for load-csv --all",
            ctx.config.path.display()
        ))
        .into());
    }
    ctx.config
        .datasets
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let table = TableRef::parse(&d.table).map_err(|e| {
                crate::error::ConfigError::new(format!(
                    "{}: datasets[{i}].table: {e}",
                    ctx.config.path.display()
                ))
            })?;
            let spec = CsvSpec::from_options(&dataset_options(d)).map_err(|e| {
                crate::error::ConfigError::new(format!(
                    "{}: datasets[{i}]: {e}",
                    ctx.config.path.display()
                ))
            })?;
            let path = ctx.config.resolve(&d.file);
            Ok(Job {
                table,
                label: d.file.display().to_string(),
                path,
                spec,
            })
        })
        .collect()
}

fn dataset_options(d: &DatasetEntry) -> CsvOptions {
    CsvOptions {
        delimiter: d.delimiter.clone().unwrap_or_else(|| ",".into()),
        quote: d.quote.clone().unwrap_or_else(|| "\"".into()),
        encoding: d.encoding.unwrap_or(EncodingArg::Auto),
        no_header: d.no_header,
        null: d.null.clone(),
        force_null: d.force_null.clone(),
        skip_lines: d.skip_lines,
        trim: d.trim,
        dst: d.dst,
        date_order: d.date_order.unwrap_or(DateOrder::Ymd),
        decimal_comma: d.decimal_comma,
        timezone: d.timezone.clone(),
        max_field_size: d
            .max_field_size
            .clone()
            .unwrap_or_else(|| crate::load::options::DEFAULT_MAX_FIELD_SIZE.into()),
    }
}

/// Each file in its own transaction. With `--truncate`, the table is emptied in the
/// transaction of the first file that loads, so the table ends up holding exactly the files
/// that succeeded.
async fn load_files(
    target: &Target,
    jobs: &[Job],
    truncate: bool,
    mut rejects: Option<&mut RejectSink>,
    ctx: &Ctx,
) -> Vec<Result<Loaded>> {
    let conn = match engine::connect(target).await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("{e:#}");
            return jobs.iter().map(|_| Err(anyhow!(msg.clone()))).collect();
        }
    };
    let mut truncated = !truncate;
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        let start = Instant::now();
        let res = async {
            let columns = conn.columns(&job.table).await?;
            let mut reader = load::spawn_reader(
                job.path.clone(),
                job.label.clone(),
                with_server_zone(&conn, &job.spec).await?,
                columns,
                conn.capabilities().dialect(),
                progress_bar(ctx, &job.path, &job.label),
                rejects.is_some(),
            );
            let cols = (&mut reader.columns)
                .await
                .map_err(|_| anyhow!("{}: reader stopped unexpectedly", job.label))??;
            conn.begin().await?;
            let res = async {
                let notes = if truncated {
                    Vec::new()
                } else {
                    conn.truncate(std::slice::from_ref(&job.table)).await?
                };
                match rejects.as_deref_mut() {
                    Some(sink) => stream_rejecting(&conn, job, cols, reader, sink)
                        .await
                        .map(|(rows, bytes, rejected)| (rows, bytes, notes, Some(rejected))),
                    None => stream(&conn, job, cols, reader)
                        .await
                        .map(|(rows, bytes)| (rows, bytes, notes, None)),
                }
            }
            .await;
            match res {
                Ok(stats) => {
                    conn.commit().await?;
                    truncated = true;
                    Ok(stats)
                }
                Err(e) => {
                    conn.rollback().await;
                    Err(e)
                }
            }
        }
        .await;
        out.push(res.map(|(rows, bytes, notes, rejected)| Loaded {
            rows,
            bytes,
            seconds: secs(start.elapsed()),
            notes,
            rejected,
        }));
    }
    out
}

/// The datasets in foreign-key order, all in one transaction: the demo data loads whole or
/// not at all.
async fn load_all(target: &Target, jobs: &[Job], truncate: bool, ctx: &Ctx) -> Vec<Result<Loaded>> {
    let conn = match engine::connect(target).await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("{e:#}");
            return jobs.iter().map(|_| Err(anyhow!(msg.clone()))).collect();
        }
    };
    let mut results: Vec<Option<Result<Loaded>>> = jobs.iter().map(|_| None).collect();
    let res: Result<()> = async {
        let tables: Vec<TableRef> = jobs.iter().map(|j| j.table.clone()).collect();
        let order = fk_order(&tables, &conn.foreign_keys(&tables).await?)?;
        let mut columns = BTreeMap::new();
        for t in &tables {
            if !columns.contains_key(t) {
                columns.insert(t.clone(), conn.columns(t).await?);
            }
        }
        conn.begin().await?;
        let mut notes = Vec::new();
        let res: Result<()> = async {
            if truncate {
                // Parents first: the engine empties children before parents when it must.
                let mut unique: Vec<TableRef> = Vec::new();
                for &i in &order {
                    if !unique.contains(&jobs[i].table) {
                        unique.push(jobs[i].table.clone());
                    }
                }
                notes = conn.truncate(&unique).await?;
            }
            for &i in &order {
                let job = &jobs[i];
                let start = Instant::now();
                let mut reader = load::spawn_reader(
                    job.path.clone(),
                    job.label.clone(),
                    with_server_zone(&conn, &job.spec).await?,
                    columns[&job.table].clone(),
                    conn.capabilities().dialect(),
                    progress_bar(ctx, &job.path, &job.label),
                    false,
                );
                let cols = (&mut reader.columns)
                    .await
                    .map_err(|_| anyhow!("{}: reader stopped unexpectedly", job.label))??;
                let (rows, bytes) = stream(&conn, job, cols, reader).await.inspect_err(|e| {
                    results[i] = Some(Err(anyhow!("{e:#}")));
                })?;
                // A note about a table goes with the first file loaded into it.
                let prefix = format!("{}: ", job.table);
                let (mine, rest): (Vec<String>, Vec<String>) = std::mem::take(&mut notes)
                    .into_iter()
                    .partition(|n| n.starts_with(&prefix));
                notes = rest;
                results[i] = Some(Ok(Loaded {
                    rows,
                    bytes,
                    seconds: secs(start.elapsed()),
                    notes: mine,
                    rejected: None,
                }));
            }
            Ok(())
        }
        .await;
        match res {
            Ok(()) => conn.commit().await,
            Err(e) => {
                conn.rollback().await;
                Err(e)
            }
        }
    }
    .await;
    match res {
        Ok(()) => results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(anyhow!("not loaded"))))
            .collect(),
        Err(e) => {
            let msg = format!("{e:#}");
            results
                .into_iter()
                .map(|r| match r {
                    Some(Err(own)) => Err(own),
                    _ => Err(anyhow!(
                        "not loaded: the demo datasets load all together, and {msg}"
                    )),
                })
                .collect()
        }
    }
}

/// The spec with the time zone its offset-less timestamps are read in: `--timezone`, else
/// the session's own when the engine has one (PostgreSQL's `TimeZone`), so that a local
/// time the clocks skip or repeat is judged by the same rule on every engine. A zone name
/// the time zone database does not know (a POSIX string) is left to the server.
async fn with_server_zone(conn: &Conn, spec: &CsvSpec) -> Result<CsvSpec> {
    let mut spec = spec.clone();
    if spec.tz.is_none() {
        if let Some(name) = conn.session_time_zone().await? {
            spec.tz = name.parse::<chrono_tz::Tz>().ok();
        }
    }
    Ok(spec)
}

/// The load of `job` into `cols`, the session's time zone set for it.
async fn request<'a>(conn: &Conn, job: &'a Job, cols: Vec<String>) -> Result<LoadRequest<'a>> {
    conn.set_local_timezone(job.spec.timezone.as_deref())
        .await?;
    Ok(LoadRequest {
        table: &job.table,
        columns: cols,
        file_label: &job.label,
    })
}

/// Feeds the reader's chunks to the engine and checks both sides agree on the row count.
async fn stream(
    conn: &Conn,
    job: &Job,
    cols: Vec<String>,
    reader: load::Reader,
) -> Result<(u64, u64)> {
    let req = request(conn, job, cols).await?;
    let load::Reader {
        chunks,
        lines,
        done,
        ..
    } = reader;
    let res = conn.bulk_load(&req, chunks, lines).await;
    // If the load failed the receiver is gone and the reader stops at its next chunk.
    let stats = done
        .await
        .map_err(|e| anyhow!("{}: reader thread failed: {e}", job.label))?;
    let stored = res?;
    if stored != stats.rows {
        bail!(
            "{}: the server stored {stored} rows but the file has {} (nothing committed)",
            job.label,
            stats.rows
        );
    }
    Ok((stats.rows, stats.bytes))
}

/// The savepoint each batch of a rejecting load is loaded after.
const BATCH_SAVEPOINT: &str = "mairie_dba_batch";

/// `stream` in reject mode: each batch of rows is loaded after a savepoint; when the server
/// refuses a row for its data, the batch is undone and loaded again without that row (the
/// row the server names, else found by halving the batch), which goes to the reject file
/// with the rows the reader refused. Failures that are not a row's (a lost connection, a
/// missing privilege) still fail the load. Past `max` rejected rows the load fails and
/// nothing of the file is committed. Returns rows loaded, bytes read and rows rejected.
async fn stream_rejecting(
    conn: &Conn,
    job: &Job,
    cols: Vec<String>,
    reader: load::Reader,
    sink: &mut RejectSink,
) -> Result<(u64, u64, u64)> {
    let req = request(conn, job, cols).await?;
    let load::Reader {
        mut batches, done, ..
    } = reader;
    let (mut loaded, mut rejected, mut by_server) = (0u64, 0u64, 0u64);
    let res: Result<()> = async {
        while let Some(batch) = batches.recv().await {
            let mut batch = batch?;
            let mut out = std::mem::take(&mut batch.rejected);
            let by_reader = out.len();
            let budget = (sink.max - rejected.min(sink.max)) as usize;
            let settled = settle(conn, &req, &batch, &mut out, budget).await;
            out.sort_by_key(|r| r.line);
            for r in &out {
                sink.file
                    .write(&job.label, r)
                    .with_context(|| format!("--reject-file {}", sink.file.path().display()))?;
            }
            rejected += out.len() as u64;
            by_server += (out.len() - by_reader) as u64;
            loaded += settled?;
            if rejected > sink.max {
                bail!(
                    "{}: more than {} rows rejected (--max-errors {}), so nothing of the file \
                     was committed; the rows rejected so far are in {}",
                    job.label,
                    sink.max,
                    sink.max,
                    sink.file.path().display()
                );
            }
        }
        Ok(())
    }
    .await;
    drop(batches);
    let stats = done
        .await
        .map_err(|e| anyhow!("{}: reader thread failed: {e}", job.label))?;
    res?;
    if loaded + by_server != stats.rows {
        bail!(
            "{}: the server stored {loaded} rows and refused {by_server}, but {} were sent \
             (nothing committed)",
            job.label,
            stats.rows
        );
    }
    Ok((loaded, stats.bytes, rejected))
}

/// Loads the rows of `batch` that the server accepts, each attempt after a savepoint,
/// pushing the ones it refuses onto `out`. Stops early once `out` holds more than `budget`.
async fn settle(
    conn: &Conn,
    req: &LoadRequest<'_>,
    batch: &load::Batch,
    out: &mut Vec<load::Rejected>,
    budget: usize,
) -> Result<u64> {
    let mut stored = 0;
    let mut todo: Vec<Vec<usize>> = vec![(0..batch.len()).collect()];
    while let Some(mut rows) = todo.pop() {
        while !rows.is_empty() {
            if out.len() > budget {
                return Ok(stored);
            }
            conn.savepoint(BATCH_SAVEPOINT).await?;
            let err = match load_rows(conn, req, batch, &rows).await {
                Ok(n) => {
                    conn.release_savepoint(BATCH_SAVEPOINT).await?;
                    stored += n;
                    break;
                }
                Err(e) => e,
            };
            let Some(refused) = err.downcast_ref::<load::Refused>() else {
                return Err(err);
            };
            conn.rollback_to_savepoint(BATCH_SAVEPOINT).await?;
            conn.release_savepoint(BATCH_SAVEPOINT).await?;
            let reject = |i: usize| load::Rejected {
                line: batch.lines[i],
                reason: refused.reason.clone(),
                record: batch.records[i].clone(),
            };
            match refused.row.map(|r| r as usize) {
                Some(r) if (1..=rows.len()).contains(&r) => out.push(reject(rows.remove(r - 1))),
                _ if rows.len() == 1 => out.push(reject(rows.remove(0))),
                // The server did not say which row: try each half on its own.
                _ => {
                    let second = rows.split_off(rows.len() / 2);
                    todo.push(second);
                }
            }
        }
    }
    Ok(stored)
}

/// One attempt: `rows` of the batch through the engine's bulk loader. The server's row
/// numbers are mapped back to the file's lines.
async fn load_rows(
    conn: &Conn,
    req: &LoadRequest<'_>,
    batch: &load::Batch,
    rows: &[usize],
) -> Result<u64> {
    let mut data = Vec::with_capacity(batch.data.len());
    let lines = std::sync::Arc::new(load::LineMap::default());
    for (k, &i) in rows.iter().enumerate() {
        data.extend_from_slice(batch.row(i));
        lines.note(k as u64 + 1, batch.lines[i]);
    }
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(Ok(bytes::Bytes::from(data)))
        .await
        .map_err(|_| anyhow!("{}: loader stopped unexpectedly", req.file_label))?;
    drop(tx);
    let stored = conn.bulk_load(req, rx, lines).await?;
    if stored != rows.len() as u64 {
        bail!(
            "{}: the server stored {stored} rows of a batch of {} (nothing committed)",
            req.file_label,
            rows.len()
        );
    }
    Ok(stored)
}

/// Orders tables so that a table comes after the tables its foreign keys point to.
fn fk_order(tables: &[TableRef], edges: &[(TableRef, TableRef)]) -> Result<Vec<usize>> {
    let mut order = Vec::with_capacity(tables.len());
    let mut placed = vec![false; tables.len()];
    while order.len() < tables.len() {
        let before = order.len();
        for (i, t) in tables.iter().enumerate() {
            if placed[i] {
                continue;
            }
            let waits = edges.iter().any(|(child, parent)| {
                child == t
                    && tables
                        .iter()
                        .enumerate()
                        .any(|(j, p)| p == parent && !placed[j] && j != i)
            });
            if !waits {
                placed[i] = true;
                order.push(i);
            }
        }
        if order.len() == before {
            let left: Vec<String> = tables
                .iter()
                .enumerate()
                .filter(|(i, _)| !placed[*i])
                .map(|(_, t)| t.to_string())
                .collect();
            bail!("foreign keys form a cycle between {}", left.join(", "));
        }
    }
    Ok(order)
}

fn progress_bar(ctx: &Ctx, path: &Path, label: &str) -> Option<ProgressBar> {
    if !ctx.log.progress() {
        return None;
    }
    let pb = ProgressBar::new(file_size(path)).with_finish(indicatif::ProgressFinish::AndClear);
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_prefix(label.to_string());
    Some(pb)
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn human_bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_come_first() {
        let t = |n: &str| TableRef::new("s", n);
        let tables = vec![t("rdv"), t("demandes"), t("citoyens"), t("services")];
        let edges = vec![
            (t("rdv"), t("demandes")),
            (t("rdv"), t("citoyens")),
            (t("demandes"), t("citoyens")),
            (t("demandes"), t("services")),
        ];
        let order = fk_order(&tables, &edges).unwrap();
        let pos = |name: &str| order.iter().position(|&i| tables[i].name == name).unwrap();
        assert!(pos("citoyens") < pos("demandes") && pos("services") < pos("demandes"));
        assert!(pos("demandes") < pos("rdv"));
    }

    #[test]
    fn a_report_rounds_seconds_in_json_only_and_fails_on_any_failed_file() {
        let item = |file: &str, error: Option<&str>| LoadItem {
            target: "postgres".into(),
            table: "metier.citoyens".into(),
            file: file.into(),
            rows: if error.is_some() { 0 } else { 300 },
            bytes: 2048,
            seconds: if error.is_some() { 0.0 } else { 0.123456 },
            status: if error.is_some() { "failed" } else { "success" },
            error: error.map(str::to_string),
            rejected: None,
            notes: Vec::new(),
        };
        let ok = Outcome::from_report(&LoadReport {
            loads: vec![item("a.csv", None)],
        });
        assert_eq!(ok.status, Status::Success);
        assert_eq!(
            serde_json::to_string(&ok.json()).unwrap(),
            r#"{"status":"success","loads":[{"target":"postgres","table":"metier.citoyens","file":"a.csv","rows":300,"bytes":2048,"seconds":0.123,"status":"success"}]}"#
        );
        assert_eq!(
            ok.lines,
            ["postgres: metier.citoyens <- a.csv: 300 rows, 2.00 KiB in 0.12 s (2430 rows/s)"]
        );
        let failed = Outcome::from_report(&LoadReport {
            loads: vec![item("a.csv", None), item("b.csv", Some("bad header"))],
        });
        assert_eq!(failed.status, Status::Failed);
        assert_eq!(
            serde_json::to_string(&failed.json()["loads"][1]).unwrap(),
            r#"{"target":"postgres","table":"metier.citoyens","file":"b.csv","rows":0,"bytes":2048,"seconds":0.0,"status":"failed","error":"bad header"}"#
        );
        assert_eq!(
            failed.lines[1],
            "postgres: metier.citoyens <- b.csv: FAILED, nothing loaded"
        );
    }

    #[test]
    fn cycles_are_reported() {
        let t = |n: &str| TableRef::new("s", n);
        let e = fk_order(&[t("a"), t("b")], &[(t("a"), t("b")), (t("b"), t("a"))]).unwrap_err();
        assert!(e.to_string().contains("cycle"));
    }
}
