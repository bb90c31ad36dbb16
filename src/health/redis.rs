//! How Redis measures each check of the table (`health/mod.rs`): everything is read from
//! `INFO` ([`RedisConn::info`]), which every user that may connect may run, rather than
//! `CONFIG GET`, which a hardened server renames or refuses (`maxmemory` and `maxclients`
//! are in `INFO` too; `CONFIG GET` is only the fallback of an older server).
//!
//! The counters that only mean something as a rate (key hits and misses, evictions,
//! rejected connections) are read twice, a short interval apart ([`INTERVAL`], within the
//! check's share of `health.timeout`), and judged on the difference: a hit rate since the
//! server started would hide this morning's collapse behind a month of good days. The first
//! read is shared by the checks of one target ([`Earlier`]), so a target waits only once.
//! Under [`MIN_LOOKUPS`] lookups in the interval the hit rate is not judged ("too little
//! traffic"), never a false alarm on an idle server.
//!
//! A key-value store has no queries that run for minutes, no transactions left open, no
//! tables, sequences or vacuum: those checks do not apply.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use super::{human_duration, pct, round_trip, Answer, Check, Probe};
use crate::engine::redis::{parse_keyspace, RedisConn};
use crate::output::Status;

/// One section of `INFO`: field → value.
type Fields = BTreeMap<String, String>;

/// How long the counters are watched for the rates (at most half the check's share of
/// `health.timeout`).
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Fewer key lookups than this in the interval: the hit rate is not judged.
pub const MIN_LOOKUPS: f64 = 100.0;

/// Below this much memory in use, the fragmentation ratio is not judged: a nearly empty
/// server's few megabytes of resident overhead make any ratio large and meaningless.
pub const MIN_FRAGMENTATION_USED: f64 = 64.0 * 1024.0 * 1024.0;

/// The first read of `INFO stats` of one target's health run, and when it was taken.
#[derive(Debug, Default)]
pub struct Earlier(Mutex<Option<(Instant, Fields)>>);

fn num(f: &Fields, key: &str) -> Option<f64> {
    f.get(key).and_then(|v| v.trim().parse::<f64>().ok())
}

fn need(f: &Fields, key: &str) -> Result<f64> {
    num(f, key).ok_or_else(|| anyhow!("INFO has no {key}"))
}

fn text<'a>(f: &'a Fields, key: &str) -> &'a str {
    f.get(key).map(String::as_str).unwrap_or("")
}

/// `ip=10.0.0.2,port=6380,state=online,offset=42,lag=0` as pairs.
fn pairs(value: &str) -> BTreeMap<&str, &str> {
    value
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .collect()
}

async fn section(conn: &mut RedisConn, name: &str) -> Result<Fields> {
    let mut info = conn.info(Some(name)).await?;
    Ok(info.remove(name).unwrap_or_default())
}

fn bytes(b: f64) -> String {
    indicatif::HumanBytes(b.max(0.0) as u64).to_string()
}

/// Two reads of `INFO stats` at least [`INTERVAL`] apart (less when the share is short):
/// (seconds between them, first, second).
async fn over_interval(
    conn: &mut RedisConn,
    earlier: &Earlier,
    share: Duration,
) -> Result<(f64, Fields, Fields)> {
    let kept = earlier.0.lock().map_err(|_| anyhow!("poisoned"))?.clone();
    let (at, first) = match kept {
        Some(k) => k,
        None => {
            let first = section(conn, "stats").await?;
            let at = Instant::now();
            *earlier.0.lock().map_err(|_| anyhow!("poisoned"))? = Some((at, first.clone()));
            tokio::time::sleep(INTERVAL.min(share / 2)).await;
            (at, first)
        }
    };
    let second = section(conn, "stats").await?;
    Ok((at.elapsed().as_secs_f64(), first, second))
}

/// How much a counter grew between the reads; None when it went back (a restart or
/// `CONFIG RESETSTAT` in between).
fn grew(first: &Fields, second: &Fields, key: &str) -> Result<Option<f64>> {
    let (a, b) = (need(first, key)?, need(second, key)?);
    Ok((b >= a).then_some(b - a))
}

/// `1.0 s`.
fn over(secs: f64) -> String {
    format!("{secs:.1} s")
}

/// Measures one check; every arm says how, or that it does not apply.
pub(super) async fn measure(
    conn: &mut RedisConn,
    check: Check,
    earlier: &Earlier,
    share: Duration,
) -> Result<Answer> {
    let probe = match check {
        Check::Connectivity => {
            round_trip(async {
                let pong: String = conn.query(&::redis::cmd("PING")).await?;
                anyhow::ensure!(pong == "PONG", "PING answered {pong}");
                Ok(())
            })
            .await?
        }
        Check::Version => {
            let s = section(conn, "server").await?;
            let up = need(&s, "uptime_in_seconds")?;
            Probe::new(
                check,
                up,
                format!(
                    "Redis {} ({}), up {}",
                    text(&s, "redis_version"),
                    text(&s, "redis_mode"),
                    human_duration(up)
                ),
            )
        }
        Check::Connections => {
            let c = section(conn, "clients").await?;
            let used = need(&c, "connected_clients")?;
            let max = match num(&c, "maxclients") {
                Some(m) => m,
                // Before Redis 7 maxclients is only in CONFIG.
                None => conn
                    .config_get("maxclients")
                    .await?
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| anyhow!("maxclients is neither in INFO nor in CONFIG"))?,
            };
            let blocked = num(&c, "blocked_clients").unwrap_or(0.0);
            Probe::new(
                check,
                pct(used, max),
                format!("{used} of {max} clients connected (maxclients), {blocked} blocked"),
            )
        }
        Check::DatabaseSize => {
            let info = conn.info(None).await?;
            let empty = Fields::new();
            let memory = info.get("memory").unwrap_or(&empty);
            let keyspace = info.get("keyspace").unwrap_or(&empty);
            let mut keys = 0;
            let mut dbs = Vec::new();
            for (db, v) in keyspace {
                let k = parse_keyspace(v);
                let n = k.get("keys").copied().unwrap_or(0);
                keys += n;
                dbs.push(format!("{db} {n}"));
            }
            let dataset =
                need(memory, "used_memory_dataset").or_else(|_| need(memory, "used_memory"))?;
            Probe::new(
                check,
                dataset,
                format!(
                    "{keys} keys{}; dataset {}",
                    if dbs.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", dbs.join(", "))
                    },
                    bytes(dataset)
                ),
            )
        }
        Check::Memory => memory(conn).await?,
        Check::Fragmentation => {
            let m = section(conn, "memory").await?;
            let used = need(&m, "used_memory")?;
            let rss = need(&m, "used_memory_rss")?;
            let ratio = need(&m, "mem_fragmentation_ratio")?;
            if used < MIN_FRAGMENTATION_USED {
                Probe::note(
                    check,
                    format!(
                        "ratio {ratio} (resident {} for {} in use): too little memory in use to judge fragmentation (under {})",
                        bytes(rss),
                        bytes(used),
                        bytes(MIN_FRAGMENTATION_USED)
                    ),
                )
            } else if ratio < 1.0 {
                Probe::new(
                    check,
                    ratio,
                    format!(
                        "ratio {ratio}: resident {} is less than the {} in use, part of it is swapped out",
                        bytes(rss),
                        bytes(used)
                    ),
                )
                .at_least(Status::Warning)
            } else {
                Probe::new(
                    check,
                    ratio,
                    format!(
                        "ratio {ratio}: resident {} for {} in use",
                        bytes(rss),
                        bytes(used)
                    ),
                )
            }
        }
        Check::HitRate => {
            let (secs, first, second) = over_interval(conn, earlier, share).await?;
            let hits = need(&second, "keyspace_hits")?;
            let misses = need(&second, "keyspace_misses")?;
            let lifetime = format!(
                "lifetime {}% of {} lookups",
                pct(hits, hits + misses),
                hits + misses
            );
            match (
                grew(&first, &second, "keyspace_hits")?,
                grew(&first, &second, "keyspace_misses")?,
            ) {
                (Some(h), Some(m)) if h + m >= MIN_LOOKUPS => {
                    let rate = pct(h, h + m);
                    Probe::new(
                        check,
                        rate,
                        format!(
                            "{rate}% of {} lookups found their key over {} ({h} hits, {m} misses); {lifetime}",
                            h + m,
                            over(secs)
                        ),
                    )
                }
                (Some(h), Some(m)) => Probe::note(
                    check,
                    format!(
                        "too little traffic to judge: {} lookups over {} (under {MIN_LOOKUPS}); {lifetime}",
                        h + m,
                        over(secs)
                    ),
                ),
                _ => Probe::note(
                    check,
                    format!("the counters were reset during the interval; {lifetime}"),
                ),
            }
        }
        Check::Evictions | Check::RejectedConnections => {
            let (key, what) = if check == Check::Evictions {
                ("evicted_keys", "keys evicted for lack of memory")
            } else {
                ("rejected_connections", "connections rejected (maxclients)")
            };
            let (secs, first, second) = over_interval(conn, earlier, share).await?;
            let total = need(&second, key)?;
            match grew(&first, &second, key)? {
                Some(n) => {
                    let rate = (n / secs.max(0.001) * 100.0).round() / 100.0;
                    Probe::new(
                        check,
                        rate,
                        format!(
                            "{rate}/s {what} over {} ({n} in it, {total} since the server started)",
                            over(secs)
                        ),
                    )
                }
                None => Probe::note(
                    check,
                    format!("the counters were reset during the interval; {total} {what} since"),
                ),
            }
        }
        Check::Persistence => persistence(conn).await?,
        Check::Replication => replication(conn).await?,
        Check::LongQueries => {
            return Ok(Answer::DoesNotApply(
                "Redis runs one command at a time: see its SLOWLOG",
            ))
        }
        Check::IdleInTransaction => {
            return Ok(Answer::DoesNotApply(
                "a Redis transaction (MULTI) holds nothing while it waits",
            ))
        }
        Check::Locks => return Ok(Answer::DoesNotApply("Redis has no locks to wait on")),
        Check::TableSizes => return Ok(Answer::DoesNotApply("Redis has keys, not tables")),
        Check::CacheHit => {
            return Ok(Answer::DoesNotApply(
                "Redis serves every read from memory: see hit_rate",
            ))
        }
        Check::Wraparound => {
            return Ok(Answer::DoesNotApply(
                "Redis has no transaction IDs to wrap around",
            ))
        }
        Check::Sequences => return Ok(Answer::DoesNotApply("Redis has no sequences")),
        Check::Vacuum | Check::Analyze => {
            return Ok(Answer::DoesNotApply(
                "Redis has no vacuum or planner statistics",
            ))
        }
        // Read from the backup directory, whatever the engine (`health/mod.rs`).
        Check::BackupDirSpace | Check::BackupAge => {
            return Ok(Answer::DoesNotApply("read from the backup directory"))
        }
        Check::WalArchiving | Check::WalReadyFiles => {
            return Ok(Answer::DoesNotApply(
                "WAL archiving is PostgreSQL's (a `pitr:` section)",
            ))
        }
    };
    Ok(Answer::Probe(probe))
}

/// Memory in use against `maxmemory`, both from `INFO memory` (CONFIG only as a fallback).
async fn memory(conn: &mut RedisConn) -> Result<Probe> {
    let check = Check::Memory;
    let m = section(conn, "memory").await?;
    let used = need(&m, "used_memory")?;
    let max = match num(&m, "maxmemory") {
        Some(v) => v,
        None => conn
            .config_get("maxmemory")
            .await?
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("maxmemory is neither in INFO nor in CONFIG"))?,
    };
    let policy = text(&m, "maxmemory_policy");
    if max <= 0.0 {
        return Ok(Probe::note(
            check,
            format!(
                "no maxmemory set: memory use cannot be judged against a limit ({} in use{})",
                bytes(used),
                num(&m, "total_system_memory")
                    .filter(|t| *t > 0.0)
                    .map(|t| format!(", the machine has {}", bytes(t)))
                    .unwrap_or_default()
            ),
        )
        .at_least(Status::Unknown));
    }
    let p = pct(used, max);
    let full = if policy == "noeviction" && p >= 100.0 {
        ": writes are refused"
    } else {
        ""
    };
    Ok(Probe::new(
        check,
        p,
        format!(
            "{} of maxmemory {} in use ({p}%), policy {policy}{full}",
            bytes(used),
            bytes(max)
        ),
    ))
}

/// The last snapshot and AOF write, and how long the oldest unsaved change has waited.
async fn persistence(conn: &mut RedisConn) -> Result<Probe> {
    let check = Check::Persistence;
    let info = conn.info(None).await?;
    let empty = Fields::new();
    let p = info.get("persistence").unwrap_or(&empty);
    let server = info.get("server").unwrap_or(&empty);
    // The server's clock, not ours: the two may differ.
    let now = num(server, "server_time_usec")
        .map(|us| us / 1e6)
        .unwrap_or_else(|| chrono::Utc::now().timestamp() as f64);
    let last_save = need(p, "rdb_last_save_time")?;
    let changes = need(p, "rdb_changes_since_last_save")?;
    let since = (now - last_save).max(0.0).round();
    let age = if changes > 0.0 { since } else { 0.0 };
    let mut parts = vec![if changes > 0.0 {
        format!(
            "{changes} changes not in a snapshot yet, the last one {} ago",
            human_duration(since)
        )
    } else {
        format!(
            "nothing changed since the last snapshot {} ago",
            human_duration(since)
        )
    }];
    let mut floor = Status::Ok;
    if text(p, "rdb_last_bgsave_status") == "err" {
        floor = Status::Critical;
        parts.insert(
            0,
            "the last snapshot (BGSAVE) failed: see the server's log (disk full, directory not writable?)"
                .into(),
        );
    }
    if text(p, "rdb_bgsave_in_progress") == "1" {
        parts.push("a snapshot is being written".into());
    }
    if text(p, "aof_enabled") == "1" {
        if text(p, "aof_last_write_status") == "err" {
            floor = Status::Critical;
            parts.insert(0, "AOF writes are failing".into());
        } else if text(p, "aof_last_bgrewrite_status") == "err" {
            floor = super::worst([floor, Status::Warning]);
            parts.push("the last AOF rewrite failed".into());
        } else {
            parts.push("AOF on, writing".into());
        }
    } else {
        parts.push("AOF off".into());
    }
    Ok(Probe::new(check, age, parts.join("; ")).at_least(floor))
}

/// Role and lag: a replica's link to its primary and when it last heard from it; a
/// primary's replicas and the largest of their lags (seconds since their last ACK).
async fn replication(conn: &mut RedisConn) -> Result<Probe> {
    let check = Check::Replication;
    let r = section(conn, "replication").await?;
    match text(&r, "role") {
        "slave" => {
            let primary = format!("{}:{}", text(&r, "master_host"), text(&r, "master_port"));
            if text(&r, "master_link_status") != "up" {
                let down = num(&r, "master_link_down_since_seconds").unwrap_or(-1.0);
                let message = if down >= 0.0 {
                    format!(
                        "replica of {primary}, link down for {}",
                        human_duration(down)
                    )
                } else {
                    format!("replica of {primary}, link down")
                };
                return Ok(Probe::new(check, down.max(0.0), message).at_least(Status::Critical));
            }
            let io = num(&r, "master_last_io_seconds_ago")
                .unwrap_or(0.0)
                .max(0.0);
            let mut p = Probe::new(
                check,
                io,
                format!(
                    "replica of {primary}, link up, last heard from its primary {} ago",
                    human_duration(io)
                ),
            );
            if text(&r, "master_sync_in_progress") == "1" {
                p.message.push_str("; initial sync in progress");
                p = p.at_least(Status::Warning);
            }
            Ok(p)
        }
        "master" => {
            let n = num(&r, "connected_slaves").unwrap_or(0.0);
            let offset = num(&r, "master_repl_offset").unwrap_or(0.0);
            let mut worst_lag: Option<f64> = None;
            let mut lines = Vec::new();
            let mut syncing = false;
            for i in 0..n as usize {
                let Some(v) = r.get(&format!("slave{i}")) else {
                    continue;
                };
                let kv = pairs(v);
                let lag: f64 = kv.get("lag").and_then(|l| l.parse().ok()).unwrap_or(0.0);
                let behind = kv
                    .get("offset")
                    .and_then(|o| o.parse::<f64>().ok())
                    .map(|o| (offset - o).max(0.0))
                    .unwrap_or(0.0);
                let state = kv.get("state").copied().unwrap_or("?");
                syncing |= state != "online";
                worst_lag = Some(worst_lag.map_or(lag, |w: f64| w.max(lag)));
                lines.push(format!(
                    "{}:{} {state}, lag {lag} s, {} behind",
                    kv.get("ip").copied().unwrap_or("?"),
                    kv.get("port").copied().unwrap_or("?"),
                    bytes(behind)
                ));
            }
            match worst_lag {
                None => Ok(Probe::note(check, "primary, no replica connected")),
                Some(lag) => {
                    let p = Probe::new(
                        check,
                        lag,
                        format!("primary with {n} replica(s): {}", lines.join("; ")),
                    );
                    Ok(if syncing {
                        p.at_least(Status::Warning)
                    } else {
                        p
                    })
                }
            }
        }
        other => Ok(Probe::note(check, format!("role {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn counters_that_went_back_are_not_a_rate() {
        let a = fields(&[("keyspace_hits", "100")]);
        let b = fields(&[("keyspace_hits", "160")]);
        assert_eq!(grew(&a, &b, "keyspace_hits").unwrap(), Some(60.0));
        assert_eq!(grew(&b, &a, "keyspace_hits").unwrap(), None);
        assert!(grew(&a, &b, "evicted_keys").is_err());
    }

    #[test]
    fn replica_lines_read_as_pairs() {
        let kv = pairs("ip=127.0.0.1,port=6380,state=online,offset=42,lag=1");
        assert_eq!(kv["state"], "online");
        assert_eq!(kv["lag"], "1");
    }
}
