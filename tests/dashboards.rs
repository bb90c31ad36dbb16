//! The Grafana dashboards (`dashboards/*.json`) and the Prometheus rules
//! (`deploy/prometheus/alerts.yml`, its unit tests `alerts_test.yml`, and the
//! `scrape-config.yml` that loads it) only ask for metrics the exporter emits, with labels and
//! label values it sets. A panel on a misspelt metric shows "No data" forever and an alert on
//! one never fires; nothing else would catch it. The files are read and every PromQL
//! expression in them is scanned for its metric selectors; the declared families are checked
//! against real scrapes of the engines, and `promtool` runs the rules' unit tests.

mod common;
#[path = "common/pg_sessions.rs"]
mod pg_sessions;
#[path = "common/redis_server.rs"]
mod redis_server;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// A metric family as the exporter emits it: its name, its type (as in its `# TYPE` line)
/// and the labels of its samples (a histogram's `le` aside).
struct Family {
    name: &'static str,
    kind: &'static str,
    labels: &'static [&'static str],
}

/// Every metric family `mairie-dba metrics serve` and `metrics collect` emit (custom metrics of
/// the config aside). It must match what the exporter emits: a family added, renamed or
/// relabelled there is changed here too, and the dashboards and alerts follow.
const FAMILIES: &[Family] = &[
    Family {
        name: "mairie_dba_up",
        kind: "gauge",
        labels: &["target", "engine"],
    },
    Family {
        name: "mairie_dba_scrape_duration_seconds",
        kind: "gauge",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_scrape_error",
        kind: "gauge",
        labels: &["target", "family"],
    },
    Family {
        name: "mairie_dba_activity_visibility",
        kind: "gauge",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_server_info",
        kind: "gauge",
        labels: &["target", "engine", "version"],
    },
    Family {
        name: "mairie_dba_server_start_time_seconds",
        kind: "gauge",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_connections_max",
        kind: "gauge",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_database_size_bytes",
        kind: "gauge",
        labels: &["target", "database"],
    },
    Family {
        name: "mairie_dba_connections",
        kind: "gauge",
        labels: &["target", "state"],
    },
    Family {
        name: "mairie_dba_longest_transaction_seconds",
        kind: "gauge",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_threads",
        kind: "gauge",
        labels: &["target", "state"],
    },
    Family {
        name: "mairie_dba_threads_created_total",
        kind: "counter",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_transactions_total",
        kind: "counter",
        labels: &["target", "database", "outcome"],
    },
    Family {
        name: "mairie_dba_deadlocks_total",
        kind: "counter",
        labels: &["target", "database"],
    },
    Family {
        name: "mairie_dba_recovery_conflicts_total",
        kind: "counter",
        labels: &["target", "database"],
    },
    Family {
        name: "mairie_dba_temp_bytes_total",
        kind: "counter",
        labels: &["target", "database"],
    },
    Family {
        name: "mairie_dba_temp_files_total",
        kind: "counter",
        labels: &["target", "database"],
    },
    Family {
        name: "mairie_dba_database_xid_age",
        kind: "gauge",
        labels: &["target", "database"],
    },
    Family {
        name: "mairie_dba_database_mxid_age",
        kind: "gauge",
        labels: &["target", "database"],
    },
    Family {
        name: "mairie_dba_checkpoints_total",
        kind: "counter",
        labels: &["target", "trigger"],
    },
    Family {
        name: "mairie_dba_checkpoint_write_seconds_total",
        kind: "counter",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_checkpoint_sync_seconds_total",
        kind: "counter",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_buffers_written_total",
        kind: "counter",
        labels: &["target", "writer"],
    },
    Family {
        name: "mairie_dba_bgwriter_maxwritten_clean_total",
        kind: "counter",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_buffers_allocated_total",
        kind: "counter",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_wal_bytes_total",
        kind: "counter",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_wal_size_bytes",
        kind: "gauge",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_archiver_archived_total",
        kind: "counter",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_archiver_failed_total",
        kind: "counter",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_archiver_last_archived_age_seconds",
        kind: "gauge",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_archiver_failing",
        kind: "gauge",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_archiver_ready_files",
        kind: "gauge",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_replication_lag_seconds",
        kind: "gauge",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_replication_slot_active",
        kind: "gauge",
        labels: &["target", "slot", "slot_type"],
    },
    Family {
        name: "mairie_dba_replication_slot_retained_wal_bytes",
        kind: "gauge",
        labels: &["target", "slot", "slot_type"],
    },
    Family {
        name: "mairie_dba_table_size_bytes",
        kind: "gauge",
        labels: &["target", "table"],
    },
    Family {
        name: "mairie_dba_table_rows_estimated",
        kind: "gauge",
        labels: &["target", "table"],
    },
    Family {
        name: "mairie_dba_table_scans_total",
        kind: "counter",
        labels: &["target", "table", "method"],
    },
    Family {
        name: "mairie_dba_table_rows_read_total",
        kind: "counter",
        labels: &["target", "table", "method"],
    },
    Family {
        name: "mairie_dba_table_rows_written_total",
        kind: "counter",
        labels: &["target", "table", "op"],
    },
    Family {
        name: "mairie_dba_table_dead_rows",
        kind: "gauge",
        labels: &["target", "table"],
    },
    Family {
        name: "mairie_dba_table_last_vacuum_timestamp_seconds",
        kind: "gauge",
        labels: &["target", "table"],
    },
    Family {
        name: "mairie_dba_table_last_autovacuum_timestamp_seconds",
        kind: "gauge",
        labels: &["target", "table"],
    },
    Family {
        name: "mairie_dba_table_last_analyze_timestamp_seconds",
        kind: "gauge",
        labels: &["target", "table"],
    },
    Family {
        name: "mairie_dba_table_last_autoanalyze_timestamp_seconds",
        kind: "gauge",
        labels: &["target", "table"],
    },
    Family {
        name: "mairie_dba_locks",
        kind: "gauge",
        labels: &["target", "mode", "granted"],
    },
    Family {
        name: "mairie_dba_locks_waiting",
        kind: "gauge",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_lock_waits_total",
        kind: "counter",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_lock_wait_seconds_total",
        kind: "counter",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_sequence_used_ratio",
        kind: "gauge",
        labels: &["target", "sequence"],
    },
    Family {
        name: "mairie_dba_backup_last_success_timestamp_seconds",
        kind: "gauge",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_backup_last_size_bytes",
        kind: "gauge",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_backup_last_duration_seconds",
        kind: "gauge",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_backup_status",
        kind: "gauge",
        labels: &["target", "state"],
    },
    Family {
        name: "mairie_dba_pitr_archive_missing_segments",
        kind: "gauge",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_pitr_status",
        kind: "gauge",
        labels: &["target", "state"],
    },
    Family {
        name: "mairie_dba_probe_duration_seconds",
        kind: "histogram",
        labels: &["target", "probe"],
    },
    Family {
        name: "mairie_dba_scrapes_total",
        kind: "counter",
        labels: &[],
    },
    Family {
        name: "mairie_dba_scrape_errors_total",
        kind: "counter",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_memory_used_bytes",
        kind: "gauge",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_memory_max_bytes",
        kind: "gauge",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_memory_used_rss_bytes",
        kind: "gauge",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_mem_fragmentation_ratio",
        kind: "gauge",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_keyspace_hits_total",
        kind: "counter",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_keyspace_misses_total",
        kind: "counter",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_evicted_keys_total",
        kind: "counter",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_expired_keys_total",
        kind: "counter",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_rejected_connections_total",
        kind: "counter",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_commands_processed_total",
        kind: "counter",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_connected_clients",
        kind: "gauge",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_blocked_clients",
        kind: "gauge",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_db_keys",
        kind: "gauge",
        labels: &["target", "database"],
    },
    Family {
        name: "mairie_dba_db_keys_expiring",
        kind: "gauge",
        labels: &["target", "database"],
    },
    Family {
        name: "mairie_dba_rdb_last_save_timestamp_seconds",
        kind: "gauge",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_rdb_changes_since_last_save",
        kind: "gauge",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_rdb_last_bgsave_ok",
        kind: "gauge",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_aof_enabled",
        kind: "gauge",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_aof_last_write_ok",
        kind: "gauge",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_replication_role",
        kind: "gauge",
        labels: &["target", "role"],
    },
    Family {
        name: "mairie_dba_connected_replicas",
        kind: "gauge",
        labels: &["target"],
    },
    Family {
        name: "mairie_dba_replica_link_up",
        kind: "gauge",
        labels: &["target"],
    },
];

/// The values a label takes, where the exporter has a fixed set: a matcher on any other
/// value selects nothing.
const LABEL_VALUES: &[(&str, &str, &[&str])] = &[
    (
        "mairie_dba_connections",
        "state",
        &["active", "idle", "idle_in_transaction", "other"],
    ),
    (
        "mairie_dba_backup_status",
        "state",
        &["OK", "MISSING", "FAILED", "HASH_MISMATCH", "STALE"],
    ),
    (
        "mairie_dba_pitr_status",
        "state",
        &["OK", "WARNING", "CRITICAL", "UNKNOWN"],
    ),
    (
        "mairie_dba_transactions_total",
        "outcome",
        &["commit", "rollback", "started"],
    ),
    (
        "mairie_dba_checkpoints_total",
        "trigger",
        &["timed", "requested"],
    ),
    (
        "mairie_dba_buffers_written_total",
        "writer",
        &["checkpointer", "bgwriter", "backend"],
    ),
    ("mairie_dba_table_scans_total", "method", &["seq", "index"]),
    (
        "mairie_dba_table_rows_read_total",
        "method",
        &["seq", "index"],
    ),
    (
        "mairie_dba_table_rows_written_total",
        "op",
        &["insert", "update", "delete"],
    ),
    ("mairie_dba_locks", "granted", &["true", "false"]),
    (
        "mairie_dba_threads",
        "state",
        &["connected", "running", "cached"],
    ),
    (
        "mairie_dba_replication_slot_active",
        "slot_type",
        &["physical", "logical"],
    ),
    (
        "mairie_dba_replication_slot_retained_wal_bytes",
        "slot_type",
        &["physical", "logical"],
    ),
    (
        "mairie_dba_replication_role",
        "role",
        &["primary", "replica"],
    ),
];

/// Labels Prometheus adds to every scraped sample.
const SCRAPE_LABELS: &[&str] = &["job", "instance"];

/// The dashboards that must be there.
const DASHBOARDS: &[&str] = &["mairie-dba-overview.json", "mairie-dba-backups.json"];

/// The alerts the deployment documentation promises.
const ALERTS: &[&str] = &[
    "MairieDbaTargetDown",
    "MairieDbaBackupStale",
    "MairieDbaBackupNotOk",
    "MairieDbaReplicationLag",
    "MairieDbaConnectionsHigh",
    "MairieDbaScrapeErrors",
    "MairieDbaActivityHidden",
    "MairieDbaArchiverFailing",
    "MairieDbaReplicationSlotRetainingWal",
    "MairieDbaSequenceNearExhaustion",
    "MairieDbaWraparound",
    "MairieDbaRedisMemoryHigh",
    "MairieDbaRedisHitRateLow",
    "MairieDbaRedisSaveTooOld",
    "MairieDbaRedisSnapshotFailing",
];

// ---------------------------------------------------------------------------------------------
// PromQL scanning

/// One metric selector of an expression: `name{label op "value", …}`.
#[derive(Debug)]
struct Selector {
    name: String,
    matchers: Vec<(String, String, String)>,
}

/// The `mairie_dba_*` selectors of a PromQL expression. String literals are skipped, so a
/// label value that looks like a metric name is not taken for one.
fn selectors(expr: &str) -> Result<Vec<Selector>, String> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'' | b'`') => i = skip_string(b, i, q)?,
            _ if expr[i..].starts_with("mairie_dba_") && (i == 0 || !is_ident(b[i - 1])) => {
                let start = i;
                while i < b.len() && is_ident(b[i]) {
                    i += 1;
                }
                let name = expr[start..i].to_string();
                let mut j = i;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                let mut matchers = Vec::new();
                if j < b.len() && b[j] == b'{' {
                    i = parse_matchers(expr, j + 1, &mut matchers)
                        .map_err(|e| format!("selector of {name}: {e}"))?;
                }
                out.push(Selector { name, matchers });
            }
            c if is_ident(c) => {
                while i < b.len() && is_ident(b[i]) {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    Ok(out)
}

/// Whether `word` stands alone (not inside a longer name) somewhere in `expr`.
fn has_word(expr: &str, word: &str) -> bool {
    expr.match_indices(word).any(|(i, _)| {
        let b = expr.as_bytes();
        (i == 0 || !is_ident(b[i - 1])) && b.get(i + word.len()).is_none_or(|c| !is_ident(*c))
    })
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

/// The index just past the string literal opened by `quote` at `start`.
fn skip_string(b: &[u8], start: usize, quote: u8) -> Result<usize, String> {
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == b'\\' && quote != b'`' {
            i += 2;
        } else if b[i] == quote {
            return Ok(i + 1);
        } else {
            i += 1;
        }
    }
    Err(format!("unterminated string at byte {start}"))
}

/// Parses `label op "value", …}` from `i` (just past the `{`); returns the index past `}`.
fn parse_matchers(
    expr: &str,
    mut i: usize,
    out: &mut Vec<(String, String, String)>,
) -> Result<usize, String> {
    let b = expr.as_bytes();
    let skip_ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    loop {
        i = skip_ws(i);
        if i < b.len() && b[i] == b'}' {
            return Ok(i + 1);
        }
        let start = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        if start == i {
            return Err(format!("expected a label name at byte {i}"));
        }
        let label = expr[start..i].to_string();
        i = skip_ws(i);
        let op = ["=~", "!~", "!=", "="]
            .into_iter()
            .find(|op| expr[i..].starts_with(op))
            .ok_or_else(|| format!("expected a matcher operator after {label}"))?;
        i = skip_ws(i + op.len());
        let q = *b.get(i).ok_or("unterminated selector")?;
        if !matches!(q, b'"' | b'\'' | b'`') {
            return Err(format!("expected a quoted value for {label}"));
        }
        let end = skip_string(b, i, q)?;
        let value = expr[i + 1..end - 1].replace("\\\\", "\\");
        out.push((label, op.to_string(), value));
        i = skip_ws(end);
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => return Ok(i + 1),
            _ => return Err(format!("expected `,` or `}}` at byte {i}")),
        }
    }
}

/// The family a sample name belongs to, and whether it is a histogram's `_bucket`.
fn family_of(name: &str) -> Option<(&'static Family, bool)> {
    if let Some(f) = FAMILIES.iter().find(|f| f.name == name) {
        return Some((f, false));
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        FAMILIES
            .iter()
            .find(|f| f.name == base && f.kind == "histogram")
            .map(|f| (f, *suffix == "_bucket"))
    })
}

/// Checks every selector of `expr` against the families; returns the families it uses.
/// `per_target`: each per-target selector must follow the dashboards' `$target` variable.
fn check_expr(
    where_: &str,
    expr: &str,
    per_target: bool,
    problems: &mut Vec<String>,
) -> BTreeSet<&'static str> {
    let mut used = BTreeSet::new();
    let sels = match selectors(expr) {
        Ok(s) => s,
        Err(e) => {
            problems.push(format!("{where_}: cannot read `{expr}`: {e}"));
            return used;
        }
    };
    if expr.contains("histogram_quantile")
        && !(sels.iter().any(|s| s.name.ends_with("_bucket")) && has_word(expr, "le"))
    {
        problems.push(format!(
            "{where_}: histogram_quantile needs the `_bucket` series aggregated by `le`: {expr}"
        ));
    }
    for sel in sels {
        let Some((family, bucket)) = family_of(&sel.name) else {
            problems.push(format!(
                "{where_}: `{}` is not a metric the exporter emits (see FAMILIES)",
                sel.name
            ));
            continue;
        };
        used.insert(family.name);
        for (label, op, value) in &sel.matchers {
            let known = family.labels.contains(&label.as_str())
                || SCRAPE_LABELS.contains(&label.as_str())
                || (bucket && label == "le")
                || label == "__name__";
            if !known {
                problems.push(format!(
                    "{where_}: {} has no label `{label}` (it has {:?})",
                    family.name, family.labels
                ));
                continue;
            }
            let allowed = LABEL_VALUES
                .iter()
                .find(|(f, l, _)| *f == family.name && l == label)
                .map(|(_, _, v)| *v);
            if let Some(allowed) = allowed {
                let plain = |v: &str| v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                let values: Vec<&str> = match op.as_str() {
                    "=" | "!=" => vec![value.as_str()],
                    _ if value.split('|').all(plain) => value.split('|').collect(),
                    _ => Vec::new(), // a real regex or a variable: not checked
                };
                for v in values {
                    if !allowed.contains(&v) {
                        problems.push(format!(
                            "{where_}: {}{{{label}}} is never `{v}` (it is one of {allowed:?})",
                            family.name
                        ));
                    }
                }
            }
        }
        if per_target
            && family.labels.contains(&"target")
            && !sel
                .matchers
                .iter()
                .any(|(l, op, v)| l == "target" && op == "=~" && v == "$target")
        {
            problems.push(format!(
                "{where_}: the selector of {} does not follow the dashboard's target \
                 variable (add target=~\"$target\"): {expr}",
                sel.name
            ));
        }
    }
    used
}

// ---------------------------------------------------------------------------------------------
// Files

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn dashboard_files() -> Vec<PathBuf> {
    let dir = root().join("dashboards");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

fn yaml(path: &Path) -> Value {
    serde_norway::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn assert_no_problems(problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

/// Every `"expr"` string anywhere in a JSON document (panel targets, nested rows,
/// annotations), with where it is.
fn exprs(v: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                match (k.as_str(), child) {
                    ("expr", Value::String(e)) => out.push((path.to_string(), e.clone())),
                    _ => exprs(child, &format!("{path}.{k}"), out),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                exprs(item, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Every panel, those inside rows included.
fn all_panels(panels: &[Value]) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in panels {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(all_panels(nested));
        }
    }
    out
}

fn is_prometheus_ref(ds: &Value) -> bool {
    matches!(
        ds["uid"].as_str(),
        Some("${datasource}" | "${DS_PROMETHEUS}")
    ) && ds["type"].as_str().is_none_or(|t| t == "prometheus")
}

/// What is wrong with one dashboard; the families its expressions use go to `used`.
fn check_dashboard(name: &str, d: &Value, used: &mut BTreeSet<&'static str>) -> Vec<String> {
    let mut p = Vec::new();
    if !d.is_object() {
        return vec![format!("{name}: not a JSON object")];
    }
    for key in ["title", "uid"] {
        if d[key].as_str().is_none_or(str::is_empty) {
            p.push(format!("{name}: no {key}"));
        }
    }
    match d["schemaVersion"].as_u64() {
        Some(v) if v >= 36 => {}
        other => p.push(format!("{name}: schemaVersion {other:?}, want >= 36")),
    }
    if !d["id"].is_null() {
        p.push(format!("{name}: id must be null to import anywhere"));
    }

    // The data source: an import input, and a variable the panels follow.
    let input_ok = d["__inputs"].as_array().is_some_and(|inputs| {
        inputs.iter().any(|i| {
            i["name"] == "DS_PROMETHEUS"
                && i["type"] == "datasource"
                && i["pluginId"] == "prometheus"
        })
    });
    if !input_ok {
        p.push(format!(
            "{name}: no __inputs entry DS_PROMETHEUS (a prometheus datasource)"
        ));
    }
    let vars = d["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let var = |n: &str| vars.iter().find(|v| v["name"] == n);
    match var("datasource") {
        Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
        _ => p.push(format!(
            "{name}: no templating variable `datasource` of type datasource, query prometheus"
        )),
    }
    match var("target") {
        Some(v) => {
            let query = v["query"]["query"]
                .as_str()
                .or(v["query"].as_str())
                .unwrap_or("");
            if v["type"] != "query"
                || v["multi"] != true
                || v["includeAll"] != true
                || query.replace(' ', "") != "label_values(mairie_dba_up,target)"
            {
                p.push(format!(
                    "{name}: the `target` variable must be a multi-value query with All over \
                     label_values(mairie_dba_up, target)"
                ));
            }
            if !is_prometheus_ref(&v["datasource"]) {
                p.push(format!(
                    "{name}: the `target` variable does not query ${{datasource}}"
                ));
            }
            used.extend(check_expr(
                &format!("{name}: variable target"),
                query,
                false,
                &mut p,
            ));
        }
        None => p.push(format!("{name}: no templating variable `target`")),
    }

    // Panels: each one queries the chosen Prometheus, none overlaps another.
    let top = d["panels"].as_array().cloned().unwrap_or_default();
    if top.is_empty() {
        p.push(format!("{name}: no panels"));
    }
    let panels = all_panels(&top);
    let mut ids = BTreeSet::new();
    let mut cells: BTreeMap<(u64, u64), String> = BTreeMap::new();
    for panel in &panels {
        let title = panel["title"].as_str().unwrap_or("?");
        let here = format!("{name}: panel `{title}`");
        match panel["id"].as_u64() {
            Some(id) if ids.insert(id) => {}
            Some(id) => p.push(format!("{here}: id {id} used twice")),
            None => p.push(format!("{here}: no id")),
        }
        let g = &panel["gridPos"];
        match (
            g["x"].as_u64(),
            g["y"].as_u64(),
            g["w"].as_u64(),
            g["h"].as_u64(),
        ) {
            (Some(x), Some(y), Some(w), Some(h)) if w > 0 && h > 0 && x + w <= 24 => {
                let overlapped: BTreeSet<String> = (x..x + w)
                    .flat_map(|cx| (y..y + h).map(move |cy| (cx, cy)))
                    .filter_map(|cell| cells.insert(cell, title.to_string()))
                    .collect();
                for other in overlapped {
                    p.push(format!("{here}: overlaps panel `{other}`"));
                }
            }
            _ => p.push(format!("{here}: bad gridPos {g}")),
        }
        if panel["type"] == "row" {
            continue;
        }
        if !is_prometheus_ref(&panel["datasource"]) {
            p.push(format!(
                "{here}: datasource is not ${{datasource}}: {}",
                panel["datasource"]
            ));
        }
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            p.push(format!("{here}: no query"));
        }
        for t in &targets {
            if t["expr"].as_str().is_none_or(|e| e.trim().is_empty()) {
                p.push(format!("{here}: query {} has no expr", t["refId"]));
            }
            if !t["datasource"].is_null() && !is_prometheus_ref(&t["datasource"]) {
                p.push(format!(
                    "{here}: query {} datasource is not ${{datasource}}",
                    t["refId"]
                ));
            }
        }
    }

    let mut found = Vec::new();
    exprs(d, "", &mut found);
    for (path, expr) in found {
        used.extend(check_expr(&format!("{name}{path}"), &expr, true, &mut p));
    }
    p
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn the_scanner_finds_families_labels_and_histogram_series() {
    let expr = r#"histogram_quantile(0.95, sum by (le, target) (rate(mairie_dba_probe_duration_seconds_bucket{target=~"$target", probe = "select_1"}[5m])))
        / on (target) mairie_dba_up{job="mairie_dba_not_a_metric"} or vector(0) > mairie_dba_scrapes_total"#;
    let sels = selectors(expr).unwrap();
    let names: Vec<&str> = sels.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "mairie_dba_probe_duration_seconds_bucket",
            "mairie_dba_up",
            "mairie_dba_scrapes_total"
        ]
    );
    assert_eq!(
        sels[0].matchers,
        [
            ("target".into(), "=~".into(), "$target".into()),
            ("probe".into(), "=".into(), "select_1".into())
        ]
    );
    let mut problems = Vec::new();
    let used = check_expr("t", expr, false, &mut problems);
    assert_no_problems(&problems);
    assert_eq!(
        used.into_iter().collect::<Vec<_>>(),
        [
            "mairie_dba_probe_duration_seconds",
            "mairie_dba_scrapes_total",
            "mairie_dba_up"
        ]
    );

    // Each kind of mistake is caught.
    for (bad, why) in [
        ("mairie_dba_upp", "not a metric"),
        ("mairie_dba_up_count", "not a metric"),
        ("mairie_dba_connections{stat=\"idle\"}", "no label"),
        ("mairie_dba_backup_status{state=\"STALLED\"} == 1", "never `STALLED`"),
        ("mairie_dba_backup_status{state=~\"OK|BAD\"} == 1", "never `BAD`"),
        ("mairie_dba_probe_duration_seconds_sum{le=\"1\"}", "no label"),
        ("histogram_quantile(0.5, mairie_dba_probe_duration_seconds_sum)", "_bucket"),
        (
            "histogram_quantile(0.5, sum by (target) (rate(mairie_dba_probe_duration_seconds_bucket[5m])))",
            "_bucket",
        ),
    ] {
        let mut problems = Vec::new();
        check_expr("t", bad, false, &mut problems);
        assert!(
            problems.iter().any(|p| p.contains(why)),
            "`{bad}` should be refused ({why}): {problems:?}"
        );
    }
    let mut problems = Vec::new();
    check_expr(
        "t",
        "mairie_dba_up{engine=\"postgres\"}",
        true,
        &mut problems,
    );
    assert!(
        problems.iter().any(|p| p.contains("target variable")),
        "{problems:?}"
    );
}

#[test]
fn dashboards_are_importable_and_use_only_exported_metrics() {
    let files = dashboard_files();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in DASHBOARDS {
        assert!(
            names.iter().any(|n| n == expected),
            "dashboards/{expected} is missing"
        );
    }

    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    let mut uids = BTreeMap::new();
    for (file, name) in files.iter().zip(&names) {
        let d: Value = match serde_json::from_str(&read(file)) {
            Ok(d) => d,
            Err(e) => {
                problems.push(format!("{name}: not JSON: {e}"));
                continue;
            }
        };
        problems.extend(check_dashboard(name, &d, &mut used));
        if let Some(uid) = d["uid"].as_str() {
            if let Some(other) = uids.insert(uid.to_string(), name.clone()) {
                problems.push(format!("{name}: uid {uid} is also {other}'s"));
            }
        }
    }
    assert_no_problems(&problems);

    // Every family the exporter emits is on some dashboard.
    let unused: Vec<&str> = FAMILIES
        .iter()
        .map(|f| f.name)
        .filter(|n| !used.contains(n))
        .collect();
    assert!(unused.is_empty(), "no dashboard shows {unused:?}");
}

#[test]
fn alerting_rules_use_only_exported_metrics() {
    let dir = root().join("deploy/prometheus");
    let rules = yaml(&dir.join("alerts.yml"));
    let mut problems = Vec::new();
    let mut alerts = BTreeSet::new();
    let groups = rules["groups"].as_array().cloned().unwrap_or_default();
    assert!(!groups.is_empty(), "alerts.yml: no groups");
    for group in &groups {
        let gname = group["name"].as_str().unwrap_or("?");
        let list = group["rules"].as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            problems.push(format!("alerts.yml: group {gname} has no rules"));
        }
        for rule in &list {
            let name = rule["alert"]
                .as_str()
                .or(rule["record"].as_str())
                .unwrap_or("?");
            let here = format!("alerts.yml: {gname}/{name}");
            let Some(expr) = rule["expr"].as_str() else {
                problems.push(format!("{here}: no expr"));
                continue;
            };
            check_expr(&here, expr, false, &mut problems);
            if let Some(alert) = rule["alert"].as_str() {
                alerts.insert(alert.to_string());
                if !matches!(
                    rule["labels"]["severity"].as_str(),
                    Some("warning" | "critical")
                ) {
                    problems.push(format!("{here}: severity must be warning or critical"));
                }
                if rule["annotations"]["summary"]
                    .as_str()
                    .is_none_or(str::is_empty)
                {
                    problems.push(format!("{here}: no summary annotation"));
                }
            }
        }
    }
    for expected in ALERTS {
        if !alerts.contains(*expected) {
            problems.push(format!("alerts.yml: no alert {expected}"));
        }
    }

    // The rules' unit tests feed series of real metrics only.
    let tests = yaml(&dir.join("alerts_test.yml"));
    for (i, test) in tests["tests"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        for series in test["input_series"].as_array().cloned().unwrap_or_default() {
            if let Some(s) = series["series"].as_str() {
                if s.starts_with("mairie_dba_") {
                    check_expr(
                        &format!("alerts_test.yml: test {i}"),
                        s,
                        false,
                        &mut problems,
                    );
                }
            }
        }
    }

    // The scrape configuration loads the rules and scrapes the exporter.
    let config = yaml(&dir.join("scrape-config.yml"));
    if !config["rule_files"]
        .as_array()
        .is_some_and(|f| f.iter().any(|f| f == "alerts.yml"))
    {
        problems.push("scrape-config.yml: rule_files does not load alerts.yml".into());
    }
    if !config["scrape_configs"]
        .as_array()
        .is_some_and(|jobs| jobs.iter().any(|j| j["job_name"] == "mairie-dba"))
    {
        problems.push("scrape-config.yml: no job mairie-dba".into());
    }
    assert_no_problems(&problems);
}

/// The families a real scrape may leave out: measured only on a replica or a replicated
/// primary, after a WAL file was archived, after autovacuum visited a key table, for a target
/// with a `pitr:` section, on a Redis replica (its link); and those only SQL Server emits under a name of its own (none yet).
const CONDITIONAL: &[&str] = &[
    "mairie_dba_replication_lag_seconds",
    "mairie_dba_archiver_last_archived_age_seconds",
    "mairie_dba_pitr_archive_missing_segments",
    "mairie_dba_pitr_status",
    "mairie_dba_table_last_autovacuum_timestamp_seconds",
    "mairie_dba_table_last_autoanalyze_timestamp_seconds",
    "mairie_dba_replica_link_up",
];

/// What a scrape emitted: name -> (type, label names of its samples).
fn emitted(text: &str, into: &mut BTreeMap<String, (String, BTreeSet<String>)>) {
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            if let (Some(n), Some(k)) = (it.next(), it.next()) {
                into.entry(n.to_string())
                    .or_insert_with(|| (k.to_string(), BTreeSet::new()));
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let name = line.split(['{', ' ']).next().unwrap_or("");
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|b| into.get(*b).is_some_and(|(k, _)| k == "histogram"))
                })
                .unwrap_or(name);
            if let (Some((_, labels)), Some(body)) = (into.get_mut(base), line.split_once('{')) {
                for pair in body.1.split("\",") {
                    if let Some((k, _)) = pair.split_once('=') {
                        if k != "le" && !k.contains('}') {
                            labels.insert(k.trim_start_matches(',').to_string());
                        }
                    }
                }
            }
        }
    }
}

/// Scrapes of the three engines, PostgreSQL as a member of pg_monitor (every session and the WAL
/// directory visible) with a replication slot and vacuumed key tables, together emit every
/// declared family (the conditional ones aside), with its declared type and labels, and
/// nothing undeclared.
#[test]
fn the_declared_families_are_exactly_what_real_scrapes_emit() {
    use common::{pg_admin_dsn, pg_port, Engine, Env};
    let mut env = Env::with_schema(Engine::Postgres);
    env.write_global(&format!(
        "backup:\n  postgres:\n    dir: {}\n",
        env.path("backups").display()
    ));
    env.run(&["load-csv", "--all"]).success();
    env.run(&["backup"]).success();
    env.run(&["maintenance", "vacuum"]).success();
    let monitor = pg_sessions::PgRole::new("mdba_t_monitor", &["pg_monitor"]);
    let db = env.db().name().to_string();
    env.write(
        "config_postgres.yml",
        format!(
            "connection:\n  host: {}\n  port: {}\n  database: {db}\n  user: {}\n  password_env: MDBA_T_MONITOR_PASSWORD\n",
            common::dsn_value(&pg_admin_dsn(), "host").unwrap_or_else(|| "127.0.0.1".into()),
            pg_port(),
            monitor.name
        ),
    );
    env.set_env("MDBA_T_MONITOR_PASSWORD", &monitor.password);
    let slot = format!("mdba_t_dash_{}", std::process::id());
    pg_sessions::pg_su(
        "postgres",
        &format!("SELECT pg_create_physical_replication_slot('{slot}', true)"),
    );
    let pg = env.run(&["metrics", "collect"]);
    pg_sessions::pg_su(
        "postgres",
        &format!("SELECT pg_drop_replication_slot('{slot}')"),
    );
    pg.success();
    let my_env = Env::with_schema(Engine::Mysql);
    my_env.run(&["load-csv", "--all"]).success();
    let my = my_env.run(&["metrics", "collect"]);
    my.success();
    let redis = redis_server::RedisServer::start("dashboards", &[]);
    redis.write_config("", "");
    redis_server::fill(&redis, 0, 10, 10);
    let rd = redis.run(&["metrics", "collect"]);
    assert!(rd.status.success(), "{}", redis_server::text(&rd));
    let rd = String::from_utf8_lossy(&rd.stdout).into_owned();

    let mut seen = BTreeMap::new();
    emitted(&pg.stdout, &mut seen);
    emitted(&my.stdout, &mut seen);
    emitted(&rd, &mut seen);
    let mut problems = Vec::new();
    for f in FAMILIES {
        match seen.get(f.name) {
            None if CONDITIONAL.contains(&f.name) => {}
            None => problems.push(format!("{} is declared but not emitted", f.name)),
            Some((kind, labels)) => {
                if kind != f.kind {
                    problems.push(format!("{}: declared {}, emitted {kind}", f.name, f.kind));
                }
                let declared: BTreeSet<String> = f.labels.iter().map(|l| l.to_string()).collect();
                if !labels.is_empty() && *labels != declared {
                    problems.push(format!(
                        "{}: declared labels {declared:?}, emitted {labels:?}",
                        f.name
                    ));
                }
            }
        }
    }
    for name in seen.keys() {
        if !FAMILIES.iter().any(|f| f.name == name) {
            problems.push(format!("{name} is emitted but not declared"));
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n--- postgres\n{}\n--- mysql\n{}\n--- redis\n{}",
        problems.join("\n"),
        pg.stdout,
        my.stdout,
        rd
    );
}

/// `promtool` accepts the rules and the scrape configuration, and the rules' own unit tests
/// (`alerts_test.yml`) pass: the alerts fire when and only when they say.
#[test]
fn promtool_checks_the_rules_and_runs_their_unit_tests() {
    let dir = root().join("deploy/prometheus");
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["check", "config", "scrape-config.yml"],
        vec!["test", "rules", "alerts_test.yml"],
    ] {
        let out = std::process::Command::new("promtool")
            .args(&args)
            .current_dir(&dir)
            .output()
            .expect(
                "promtool is needed (Debian package prometheus; scripts/dev-services.sh installs it)",
            );
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
