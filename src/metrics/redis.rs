//! What the exporter asks a Redis server: one `INFO <section>` per family group (server,
//! clients, memory, stats, keyspace, persistence, replication), never `CONFIG`, which a
//! hardened server renames (`maxclients` falls back on it only before Redis 7). The families
//! mean what redis_exporter's of the same name (without `mairie_dba_`, with `redis_`) mean;
//! the hit rate is computed in PromQL from the two counters, over the rule's own window.
//! The families themselves are `families.rs`'s.

use std::collections::BTreeMap;

use anyhow::Result;

use super::families as f;
use super::{Group, Samples};
use crate::engine::redis::{parse_keyspace, RedisConn};

/// The groups measured on Redis, in the order a round asks them.
pub const GROUPS: &[Group] = &[
    Group::Server,
    Group::Clients,
    Group::Memory,
    Group::Status,
    Group::Keyspace,
    Group::Persistence,
    Group::Replication,
];

/// One section of `INFO`: field → value.
pub type Fields = BTreeMap<String, String>;

/// The `INFO` section a group reads.
fn section_of(group: Group) -> Option<&'static str> {
    Some(match group {
        Group::Server => "server",
        Group::Clients => "clients",
        Group::Memory => "memory",
        Group::Status => "stats",
        Group::Keyspace => "keyspace",
        Group::Persistence => "persistence",
        Group::Replication => "replication",
        _ => return None,
    })
}

/// One group's probe.
pub async fn probe(conn: &mut RedisConn, group: Group) -> Result<Samples> {
    let Some(name) = section_of(group) else {
        anyhow::bail!("{} is not measured on Redis", group.name());
    };
    let mut info = conn.info(Some(name)).await?;
    let fields = info.remove(name).unwrap_or_default();
    let mut s = samples(group, &fields);
    if group == Group::Clients && !fields.contains_key("maxclients") {
        // Before Redis 7, maxclients is only in CONFIG; a refused CONFIG leaves it out.
        if let Ok(Some(v)) = conn.config_get("maxclients").await {
            s.opt(&f::CONNECTIONS_MAX, &[], v.parse().ok());
        }
    }
    Ok(s)
}

fn num(fields: &Fields, key: &str) -> Option<f64> {
    fields.get(key).and_then(|v| v.trim().parse::<f64>().ok())
}

/// 1 for `ok`, 0 for anything else; None when the field is absent.
fn ok(fields: &Fields, key: &str) -> Option<f64> {
    fields
        .get(key)
        .map(|v| if v.trim() == "ok" { 1.0 } else { 0.0 })
}

/// The samples of one group from its `INFO` section.
pub fn samples(group: Group, fields: &Fields) -> Samples {
    let mut s = Samples::default();
    let v = |k: &str| num(fields, k);
    match group {
        Group::Server => {
            let version = fields.get("redis_version").cloned().unwrap_or_default();
            s.push(&f::SERVER_INFO, &["redis", &version], 1.0);
            if let (Some(now), Some(up)) = (v("server_time_usec"), v("uptime_in_seconds")) {
                s.push(&f::SERVER_START_TIME, &[], (now / 1e6 - up).round());
            }
        }
        Group::Clients => {
            s.opt(&f::CONNECTED_CLIENTS, &[], v("connected_clients"));
            s.opt(&f::BLOCKED_CLIENTS, &[], v("blocked_clients"));
            s.opt(&f::CONNECTIONS_MAX, &[], v("maxclients"));
        }
        Group::Memory => {
            s.opt(&f::MEMORY_USED, &[], v("used_memory"));
            s.opt(&f::MEMORY_MAX, &[], v("maxmemory"));
            s.opt(&f::MEMORY_RSS, &[], v("used_memory_rss"));
            s.opt(&f::MEM_FRAGMENTATION, &[], v("mem_fragmentation_ratio"));
        }
        Group::Status => {
            s.opt(&f::KEYSPACE_HITS, &[], v("keyspace_hits"));
            s.opt(&f::KEYSPACE_MISSES, &[], v("keyspace_misses"));
            s.opt(&f::EVICTED_KEYS, &[], v("evicted_keys"));
            s.opt(&f::EXPIRED_KEYS, &[], v("expired_keys"));
            s.opt(&f::REJECTED_CONNECTIONS, &[], v("rejected_connections"));
            s.opt(&f::COMMANDS_PROCESSED, &[], v("total_commands_processed"));
        }
        Group::Keyspace => {
            for (db, value) in fields {
                let k = parse_keyspace(value);
                s.opt(&f::DB_KEYS, &[db], k.get("keys").map(|n| *n as f64));
                s.opt(
                    &f::DB_KEYS_EXPIRING,
                    &[db],
                    k.get("expires").map(|n| *n as f64),
                );
            }
        }
        Group::Persistence => {
            s.opt(&f::RDB_LAST_SAVE, &[], v("rdb_last_save_time"));
            s.opt(&f::RDB_CHANGES, &[], v("rdb_changes_since_last_save"));
            s.opt(
                &f::RDB_LAST_BGSAVE_OK,
                &[],
                ok(fields, "rdb_last_bgsave_status"),
            );
            s.opt(&f::AOF_ENABLED, &[], v("aof_enabled"));
            s.opt(
                &f::AOF_LAST_WRITE_OK,
                &[],
                ok(fields, "aof_last_write_status"),
            );
        }
        Group::Replication => {
            let replica = fields.get("role").is_some_and(|r| r == "slave");
            for role in f::REPLICATION_ROLES {
                let is = (role == "replica") == replica;
                s.push(&f::REPLICATION_ROLE, &[role], if is { 1.0 } else { 0.0 });
            }
            if replica {
                let up = fields.get("master_link_status").is_some_and(|l| l == "up");
                s.push(&f::REPLICA_LINK_UP, &[], if up { 1.0 } else { 0.0 });
                if up {
                    s.opt(
                        &f::REPLICATION_LAG,
                        &[],
                        v("master_last_io_seconds_ago").map(|x| x.max(0.0)),
                    );
                }
            } else {
                let n = v("connected_slaves").unwrap_or(0.0);
                s.push(&f::CONNECTED_REPLICAS, &[], n);
                // The slowest replica: seconds since its last acknowledgement.
                let lag = (0..n as usize)
                    .filter_map(|i| fields.get(&format!("slave{i}")))
                    .filter_map(|line| {
                        line.split(',')
                            .find_map(|kv| kv.strip_prefix("lag="))
                            .and_then(|l| l.parse::<f64>().ok())
                    })
                    .reduce(f64::max);
                s.opt(&f::REPLICATION_LAG, &[], lag);
            }
        }
        _ => {}
    }
    s
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

    fn find(s: &Samples, name: &str, labels: &[&str]) -> Option<f64> {
        s.0.iter()
            .find(|x| x.family.name == name && x.labels == labels)
            .map(|x| x.value)
    }

    #[test]
    fn info_sections_become_families() {
        let s = samples(
            Group::Memory,
            &fields(&[
                ("used_memory", "1000"),
                ("maxmemory", "0"),
                ("mem_fragmentation_ratio", "1.25"),
            ]),
        );
        assert_eq!(find(&s, "mairie_dba_memory_used_bytes", &[]), Some(1000.0));
        assert_eq!(find(&s, "mairie_dba_memory_max_bytes", &[]), Some(0.0));
        assert_eq!(find(&s, "mairie_dba_memory_used_rss_bytes", &[]), None);
        let s = samples(
            Group::Keyspace,
            &fields(&[
                ("db0", "keys=12,expires=3,avg_ttl=0"),
                ("db3", "keys=1,expires=0"),
            ]),
        );
        assert_eq!(find(&s, "mairie_dba_db_keys", &["db0"]), Some(12.0));
        assert_eq!(find(&s, "mairie_dba_db_keys_expiring", &["db0"]), Some(3.0));
        assert_eq!(find(&s, "mairie_dba_db_keys", &["db3"]), Some(1.0));
        let s = samples(
            Group::Persistence,
            &fields(&[
                ("rdb_last_bgsave_status", "err"),
                ("aof_last_write_status", "ok"),
            ]),
        );
        assert_eq!(find(&s, "mairie_dba_rdb_last_bgsave_ok", &[]), Some(0.0));
        assert_eq!(find(&s, "mairie_dba_aof_last_write_ok", &[]), Some(1.0));
    }

    #[test]
    fn replication_reads_the_role_and_the_slowest_replica() {
        let s = samples(
            Group::Replication,
            &fields(&[
                ("role", "master"),
                ("connected_slaves", "2"),
                ("slave0", "ip=127.0.0.1,port=1,state=online,offset=10,lag=0"),
                ("slave1", "ip=127.0.0.1,port=2,state=online,offset=9,lag=3"),
            ]),
        );
        assert_eq!(
            find(&s, "mairie_dba_replication_role", &["primary"]),
            Some(1.0)
        );
        assert_eq!(
            find(&s, "mairie_dba_replication_role", &["replica"]),
            Some(0.0)
        );
        assert_eq!(
            find(&s, "mairie_dba_replication_lag_seconds", &[]),
            Some(3.0)
        );
        let s = samples(
            Group::Replication,
            &fields(&[
                ("role", "slave"),
                ("master_link_status", "down"),
                ("master_last_io_seconds_ago", "-1"),
            ]),
        );
        assert_eq!(find(&s, "mairie_dba_replica_link_up", &[]), Some(0.0));
        assert_eq!(find(&s, "mairie_dba_replication_lag_seconds", &[]), None);
    }
}
