//! Redis: the connection (TCP or TLS, database index, ACL user or `requirepass` password),
//! `INFO` read as sections of fields, and the [`Driver`] part a key-value engine has:
//! no tables, no migrations, no loads (the trait's defaults say so).

pub mod backup;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo,
};

use crate::config::{EngineKind, Target};
use crate::engine::{Capabilities, Driver, ValueStyle};

/// An open connection to a Redis target.
pub struct RedisConn {
    target: String,
    conn: MultiplexedConnection,
    /// How long one command may take (the target's statement timeout).
    timeout: Duration,
}

fn describe(target: &Target, e: &redis::RedisError) -> anyhow::Error {
    let c = &target.connection;
    anyhow!(
        "redis {}:{} (target `{}`): {}",
        c.host,
        c.port,
        target.name,
        // The client's messages never carry the password.
        e
    )
}

/// Connects within the target's connect timeout; every command is then bounded by its
/// statement timeout.
pub async fn connect(target: &Target) -> Result<RedisConn> {
    let c = &target.connection;
    let addr = if c.tls {
        ConnectionAddr::TcpTls {
            host: c.host.clone(),
            port: c.port,
            insecure: c.trust_server_certificate,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(c.host.clone(), c.port)
    };
    let db: i64 = c
        .database
        .parse()
        .with_context(|| format!("connection.database `{}` is not a Redis index", c.database))?;
    let mut settings = RedisConnectionInfo::default()
        .set_db(db)
        .set_lib_name("mairie-dba", env!("CARGO_PKG_VERSION"));
    if !c.user.is_empty() {
        settings = settings.set_username(&c.user);
    }
    if let Some(pw) = target.password()? {
        settings = settings.set_password(pw.expose());
    }
    let info = addr
        .into_connection_info()
        .map_err(|e| describe(target, &e))?
        .set_redis_settings(settings);
    let client = Client::open(info).map_err(|e| describe(target, &e))?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(c.connect_timeout))
        .set_response_timeout(Some(c.statement_timeout));
    let conn = tokio::time::timeout(
        c.connect_timeout + Duration::from_secs(1),
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
    .map_err(|_| {
        anyhow!(
            "redis {}:{} (target `{}`): no answer within {} s",
            c.host,
            c.port,
            target.name,
            c.connect_timeout.as_secs()
        )
    })?
    .map_err(|e| describe(target, &e))?;
    Ok(RedisConn {
        target: target.name.clone(),
        conn,
        timeout: c.statement_timeout,
    })
}

/// Inspection sessions are the same: Redis has no locks to wait on, and every command is
/// bounded by the response timeout.
pub async fn connect_probe(target: &Target) -> Result<RedisConn> {
    connect(target).await
}

/// `INFO` as sections (`server`, `memory`, `stats`, `keyspace`…) of `field → value`.
pub type Info = BTreeMap<String, BTreeMap<String, String>>;

/// Parses the text of `INFO`: `# Section` lines, then `field:value` lines.
pub fn parse_info(text: &str) -> Info {
    let mut out: Info = BTreeMap::new();
    let mut section = String::from("default");
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(name) = line.strip_prefix("# ") {
            section = name.trim().to_ascii_lowercase();
            out.entry(section.clone()).or_default();
        } else if let Some((k, v)) = line.split_once(':') {
            out.entry(section.clone())
                .or_default()
                .insert(k.to_string(), v.to_string());
        }
    }
    out
}

/// `db0:keys=12,expires=3,avg_ttl=0` → ("db0", {keys: 12, expires: 3, avg_ttl: 0}).
pub fn parse_keyspace(value: &str) -> BTreeMap<String, u64> {
    value
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| v.parse().ok().map(|n| (k.to_string(), n)))
        .collect()
}

impl RedisConn {
    /// Runs one command, bounded by the statement timeout.
    pub async fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Result<T> {
        let t = self.timeout;
        tokio::time::timeout(t, cmd.query_async::<T>(&mut self.conn))
            .await
            .map_err(|_| anyhow!("redis command timed out after {} s", t.as_secs()))?
            .map_err(|e| anyhow!("redis ({}): {e}", self.target))
    }

    /// `INFO [section]`, parsed.
    pub async fn info(&mut self, section: Option<&str>) -> Result<Info> {
        let mut cmd = redis::cmd("INFO");
        if let Some(s) = section {
            cmd.arg(s);
        }
        let text: String = self.query(&cmd).await?;
        Ok(parse_info(&text))
    }

    /// `CONFIG GET name`, None when the setting does not exist; an error when CONFIG is
    /// refused (renamed, or not allowed to this user).
    pub async fn config_get(&mut self, name: &str) -> Result<Option<String>> {
        let pairs: Vec<String> = self
            .query(redis::cmd("CONFIG").arg("GET").arg(name))
            .await?;
        Ok(pairs
            .chunks(2)
            .find(|p| p.len() == 2 && p[0].eq_ignore_ascii_case(name))
            .map(|p| p[1].clone()))
    }

    pub fn connection(&mut self) -> &mut MultiplexedConnection {
        &mut self.conn
    }
}

impl Driver for RedisConn {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            engine: EngineKind::Redis,
            transactional_ddl: false,
            values: ValueStyle::Utc,
        }
    }

    fn target(&self) -> &str {
        &self.target
    }

    async fn server_version(&self) -> Result<String> {
        let mut conn = self.conn.clone();
        let text: String = tokio::time::timeout(
            self.timeout,
            redis::cmd("INFO").arg("server").query_async(&mut conn),
        )
        .await
        .map_err(|_| anyhow!("redis command timed out"))?
        .map_err(|e| anyhow!("redis ({}): {e}", self.target))?;
        parse_info(&text)
            .get("server")
            .and_then(|s| s.get("redis_version"))
            .cloned()
            .ok_or_else(|| anyhow!("INFO server has no redis_version"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_reads_as_sections_of_fields() {
        let text = "# Server\r\nredis_version:7.0.15\r\nos:Linux\r\n\r\n# Keyspace\r\ndb0:keys=12,expires=3,avg_ttl=0\r\n";
        let info = parse_info(text);
        assert_eq!(info["server"]["redis_version"], "7.0.15");
        let db0 = parse_keyspace(&info["keyspace"]["db0"]);
        assert_eq!(db0["keys"], 12);
        assert_eq!(db0["expires"], 3);
    }
}
