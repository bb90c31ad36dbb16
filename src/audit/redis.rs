//! The Redis checks: catalogue and evaluation.
//!
//! Read through the target's one connection: `CONFIG GET` (network, passwords, TLS, memory,
//! persistence settings), `ACL LIST` (users, whether they are enabled, `nopass`, password
//! hashes) and `ACL DRYRUN` (what the default user may run), and `INFO server` (the
//! version). Nothing is written. A server where `CONFIG` or `ACL` is renamed away or refused
//! to the audit's user makes the checks that need it end in `error`, saying so — never pass.
//!
//! Passwords are never shown: `requirepass` is judged in memory, and the ACL's SHA-256
//! password hashes are compared with those of well-known passwords.

use std::collections::BTreeMap;

use anyhow::Result;
use sha2::{Digest, Sha256};

use super::Severity::{Critical, High, Low, Medium};
use super::{name_list, parse_release, support, version_verdict, CheckDef, Probe, Verdict};
use crate::engine::redis::RedisConn;

/// Releases and the end of their support by Redis Ltd. A release newer than the newest here
/// is reported as "newer than this version knows"; an older one not listed has ended.
const SUPPORT: &[((u32, u32), &str)] = &[((6, 2), "2027-04-01"), ((7, 0), "2024-07-31")];

/// Commands that empty, reconfigure, inspect or block the whole server.
const DANGEROUS: &[&str] = &["FLUSHALL", "FLUSHDB", "CONFIG", "DEBUG", "KEYS", "SHUTDOWN"];

/// Passwords found in tutorials, default configurations and breach lists.
const WEAK: &[&str] = &[
    "",
    "foobared",
    "redis",
    "Redis",
    "password",
    "Password",
    "password1",
    "123456",
    "12345678",
    "123456789",
    "changeme",
    "admin",
    "root",
    "secret",
    "default",
    "mairie",
    "marseille",
    "azerty",
    "qwerty",
];

pub const CHECKS: &[CheckDef] = &[
    CheckDef {
        id: "RD-NET-01",
        title: "Protected mode is on",
        severity: High,
        rationale: "With protected mode off, a server reachable from the network with no password \
                    answers anyone: open Redis instances are scanned for and wiped or used to \
                    plant SSH keys and cron jobs within hours.",
        cis: "",
        remediation: "protected-mode yes in redis.conf (CONFIG SET protected-mode yes), and a \
                      password or ACL users",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "RD-NET-02",
        title: "The server does not listen on every address",
        severity: High,
        rationale: "Redis is meant for a trusted network: binding every interface (bind * or \
                    0.0.0.0, or no bind) exposes it to every network the host is on.",
        cis: "",
        remediation: "bind 127.0.0.1 -::1 (or the one private address the applications use) in \
                      redis.conf, then restart",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "RD-AUTH-01",
        title: "The default user needs a password",
        severity: Critical,
        rationale: "An enabled `default` user with `nopass` lets any client that reaches the port \
                    run every command it is allowed, without authenticating.",
        cis: "",
        remediation: "ACL SETUSER default resetpass >a-long-random-password (or requirepass), or \
                      ACL SETUSER default off with named ACL users for the applications",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "RD-AUTH-02",
        title: "No user has a weak or well-known password",
        severity: High,
        rationale: "Passwords are checked at network speed; a short or well-known one (the sample one of \
                    the default configuration file, `redis`, `password`…) is found by the first scan.",
        cis: "",
        remediation: "ACL SETUSER <user> resetpass >a-random-password-of-at-least-16-characters \
                      (or requirepass for the default user)",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "RD-CMD-01",
        title: "Dangerous commands are not left to the default user",
        severity: High,
        rationale: "FLUSHALL, FLUSHDB, CONFIG, DEBUG, KEYS and SHUTDOWN empty, reconfigure, block \
                    or stop the whole server; an application's connection should not be able to \
                    run them.",
        cis: "",
        remediation: "ACL SETUSER default -@dangerous (or -flushall -flushdb -config -debug -keys \
                      -shutdown), and a separate administrator user",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "RD-TLS-01",
        title: "Clients connect with TLS only",
        severity: Medium,
        rationale: "Without TLS, passwords and data (sessions, personal data in caches) cross the \
                    network in clear.",
        cis: "",
        remediation: "tls-port 6379, port 0, tls-cert-file/tls-key-file/tls-ca-cert-file in \
                      redis.conf",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "RD-MEM-01",
        title: "maxmemory is set",
        severity: Medium,
        rationale: "Without maxmemory Redis grows until the kernel's OOM killer stops it (or \
                    another process on the host), and memory use cannot be monitored against a \
                    limit.",
        cis: "",
        remediation:
            "maxmemory <bytes> in redis.conf (CONFIG SET maxmemory 2gb), below the host's \
                      free memory",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "RD-MEM-02",
        title: "An eviction policy is chosen",
        severity: Low,
        rationale: "With maxmemory-policy noeviction, every write fails once maxmemory is \
                    reached: right for queues and sessions kept on purpose, wrong for a cache.",
        cis: "",
        remediation: "maxmemory-policy allkeys-lru for a cache (CONFIG SET maxmemory-policy \
                      allkeys-lru); keep noeviction knowingly with audit.ignore",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "RD-PERS-01",
        title: "Persistence is enabled",
        severity: High,
        rationale: "With no RDB snapshot (save) and no append-only file, a restart loses every \
                    key, and there is no file to back up.",
        cis: "",
        remediation: "save 3600 1 300 100 60 10000 and/or appendonly yes in redis.conf",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "RD-VER-01",
        title: "The Redis release is supported",
        severity: High,
        rationale: "A release past its end of support gets no security fixes from Redis (a \
                    distribution may still patch it: then ignore the check with audit.ignore).",
        cis: "",
        remediation: "upgrade to a supported Redis release",
        probe: Probe::Custom,
    },
];

/// What the checks read, each part kept with its error.
struct Facts {
    config: std::result::Result<BTreeMap<String, String>, String>,
    acl: std::result::Result<Vec<AclUser>, String>,
    version: std::result::Result<String, String>,
}

/// One line of `ACL LIST`: `user default on nopass sanitize-payload ~* &* +@all`.
#[derive(Debug, Clone, PartialEq)]
pub struct AclUser {
    pub name: String,
    pub enabled: bool,
    pub nopass: bool,
    /// SHA-256 hashes of the user's passwords (lower-case hex).
    pub hashes: Vec<String>,
}

pub fn parse_acl_line(line: &str) -> Option<AclUser> {
    let mut words = line.split_whitespace();
    if words.next()? != "user" {
        return None;
    }
    let name = words.next()?.to_string();
    let mut u = AclUser {
        name,
        enabled: false,
        nopass: false,
        hashes: Vec::new(),
    };
    for w in words {
        match w {
            "on" => u.enabled = true,
            "off" => u.enabled = false,
            "nopass" => u.nopass = true,
            _ => {
                if let Some(h) = w.strip_prefix('#') {
                    u.hashes.push(h.to_ascii_lowercase());
                }
            }
        }
    }
    Some(u)
}

const CONFIG_KEYS: &[&str] = &[
    "protected-mode",
    "bind",
    "requirepass",
    "port",
    "tls-port",
    "maxmemory",
    "maxmemory-policy",
    "save",
    "appendonly",
    "enable-debug-command",
];

async fn load(conn: &mut RedisConn) -> Facts {
    let mut config = BTreeMap::new();
    let mut config_err = None;
    for key in CONFIG_KEYS {
        match conn.config_get(key).await {
            Ok(Some(v)) => {
                config.insert(key.to_string(), v);
            }
            Ok(None) => {}
            Err(e) => {
                config_err = Some(format!(
                    "CONFIG GET refused ({e:#}): the audit reads the settings with CONFIG GET; \
                     give its user +config|get"
                ));
                break;
            }
        }
    }
    let acl = match conn
        .query::<Vec<String>>(redis::cmd("ACL").arg("LIST"))
        .await
    {
        Ok(lines) => Ok(lines.iter().filter_map(|l| parse_acl_line(l)).collect()),
        Err(e) => Err(format!(
            "ACL LIST refused ({e:#}): the audit reads the users with ACL LIST; give its user \
             +acl|list"
        )),
    };
    let version = conn
        .info(Some("server"))
        .await
        .map_err(|e| format!("{e:#}"))
        .and_then(|i| {
            i.get("server")
                .and_then(|s| s.get("redis_version"))
                .cloned()
                .ok_or_else(|| "INFO server has no redis_version".to_string())
        });
    Facts {
        config: match config_err {
            Some(e) => Err(e),
            None => Ok(config),
        },
        acl,
        version,
    }
}

/// Evaluates `checks` (all of this engine's catalogue or a subset) in order.
pub async fn evaluate(conn: &mut RedisConn, checks: &[&'static CheckDef]) -> Result<Vec<Verdict>> {
    let facts = load(conn).await;
    let mut out = Vec::with_capacity(checks.len());
    for check in checks {
        let v = match check.id {
            "RD-CMD-01" => dangerous_commands(conn, &facts).await,
            id => judge(id, &facts),
        };
        out.push(v);
    }
    Ok(out)
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Why a password is weak, without showing it.
pub fn weakness(password: &str) -> Option<&'static str> {
    if WEAK.contains(&password) {
        Some("a well-known password")
    } else if password.chars().count() < 16 {
        Some("shorter than 16 characters")
    } else if password
        .chars()
        .all(|c| c == password.chars().next().unwrap_or(' '))
    {
        Some("one repeated character")
    } else {
        None
    }
}

/// Whether a `bind` value listens on every address.
pub fn binds_everywhere(bind: &str) -> bool {
    let addrs: Vec<&str> = bind
        .split_whitespace()
        .map(|a| a.trim_start_matches('-'))
        .collect();
    addrs.is_empty()
        || addrs
            .iter()
            .any(|a| matches!(*a, "*" | "0.0.0.0" | "::" | "::*" | "[::]"))
}

fn judge(id: &str, f: &Facts) -> Verdict {
    let cfg = |key: &str| -> std::result::Result<Option<&str>, Verdict> {
        match &f.config {
            Ok(c) => Ok(c.get(key).map(String::as_str)),
            Err(e) => Err(Verdict::Error(e.clone())),
        }
    };
    macro_rules! get {
        ($k:expr) => {
            match cfg($k) {
                Ok(v) => v,
                Err(v) => return v,
            }
        };
    }
    match id {
        "RD-NET-01" => match get!("protected-mode") {
            Some("yes") => Verdict::Pass("protected-mode = yes".into()),
            Some(v) => Verdict::fail(format!("protected-mode = {v} (expected yes)")),
            None => Verdict::Error("CONFIG GET protected-mode returned nothing".into()),
        },
        "RD-NET-02" => {
            let bind = get!("bind").unwrap_or("");
            if binds_everywhere(bind) {
                Verdict::fail(format!(
                    "bind = '{bind}': the server listens on every address"
                ))
            } else {
                Verdict::Pass(format!("bind = {bind}"))
            }
        }
        "RD-AUTH-01" => match &f.acl {
            Err(e) => Verdict::Error(e.clone()),
            Ok(users) => match users.iter().find(|u| u.name == "default") {
                None => Verdict::Pass("no default user".into()),
                Some(u) if !u.enabled => Verdict::Pass("the default user is off".into()),
                Some(u) if u.nopass => Verdict::Fail {
                    detail: "the default user is on with nopass: anyone who reaches the port is \
                             authenticated"
                        .into(),
                    fix: vec!["ACL SETUSER default resetpass >…".into()],
                },
                Some(u) if u.hashes.is_empty() => Verdict::Pass(
                    "the default user is on with no password allowed: it cannot authenticate"
                        .into(),
                ),
                Some(_) => Verdict::Pass("the default user needs a password".into()),
            },
        },
        "RD-AUTH-02" => {
            let users = match &f.acl {
                Err(e) => return Verdict::Error(e.clone()),
                Ok(u) => u,
            };
            let mut weak: Vec<String> = Vec::new();
            let known: BTreeMap<String, &str> = WEAK.iter().map(|p| (sha256_hex(p), *p)).collect();
            for u in users {
                if u.hashes.iter().any(|h| known.contains_key(h)) {
                    weak.push(format!("{} (a well-known password)", u.name));
                }
            }
            if let Ok(Some(pw)) = cfg("requirepass") {
                if !pw.is_empty() {
                    if let Some(why) = weakness(pw) {
                        let label = format!("requirepass ({why})");
                        if !weak.iter().any(|w| w.starts_with("default "))
                            || why != "a well-known password"
                        {
                            weak.push(label);
                        }
                    }
                }
            }
            if weak.is_empty() {
                Verdict::Pass(format!(
                    "{} user(s): no well-known password; requirepass {}",
                    users.len(),
                    match cfg("requirepass") {
                        Ok(Some(p)) if !p.is_empty() => "of 16 characters or more",
                        _ => "not set",
                    }
                ))
            } else {
                Verdict::fail(format!(
                    "weak passwords ({}): {}",
                    weak.len(),
                    name_list(&weak)
                ))
            }
        }
        "RD-TLS-01" => {
            let tls = get!("tls-port").unwrap_or("0");
            let port = get!("port").unwrap_or("6379");
            match (tls != "0" && !tls.is_empty(), port != "0") {
                (true, false) => Verdict::Pass(format!("tls-port = {tls}, port = 0")),
                (true, true) => Verdict::fail(format!(
                    "tls-port = {tls}, but the plain-text port {port} is open too (port 0 closes it)"
                )),
                (false, _) => Verdict::fail(format!("no TLS: tls-port = 0, port = {port}")),
            }
        }
        "RD-MEM-01" => match get!("maxmemory") {
            Some("0") | None => {
                Verdict::fail("maxmemory = 0: no limit; memory use cannot be judged against one")
            }
            Some(v) => Verdict::Pass(format!("maxmemory = {v} bytes")),
        },
        "RD-MEM-02" => match get!("maxmemory-policy") {
            Some("noeviction") | None => Verdict::fail(
                "maxmemory-policy = noeviction: writes fail once maxmemory is reached",
            ),
            Some(p) => Verdict::Pass(format!("maxmemory-policy = {p}")),
        },
        "RD-PERS-01" => {
            let save = get!("save").unwrap_or("").trim();
            let aof = get!("appendonly").unwrap_or("no");
            match (save.is_empty(), aof == "yes") {
                (true, false) => Verdict::fail(
                    "save = '' and appendonly = no: nothing is persisted, a restart loses every key",
                ),
                (false, true) => Verdict::Pass(format!("save = '{save}', appendonly = yes")),
                (false, false) => Verdict::Pass(format!("RDB snapshots: save = '{save}'")),
                (true, true) => Verdict::Pass("appendonly = yes".into()),
            }
        }
        "RD-VER-01" => match &f.version {
            Err(e) => Verdict::Error(e.clone()),
            Ok(v) => match parse_release(v) {
                None => Verdict::Error(format!("unreadable version `{v}`")),
                Some(r) => version_verdict(
                    "Redis",
                    v,
                    &format!("{}.{}", r.0, r.1),
                    support(r, SUPPORT, chrono::Utc::now().date_naive()),
                ),
            },
        },
        other => Verdict::Error(format!("{other}: no evaluation for this check")),
    }
}

/// RD-CMD-01: `ACL DRYRUN default <command>` for each dangerous command (Redis 7 and later);
/// a command renamed away or disabled (`enable-debug-command no`) is not available.
async fn dangerous_commands(conn: &mut RedisConn, f: &Facts) -> Verdict {
    let users = match &f.acl {
        Err(e) => return Verdict::Error(e.clone()),
        Ok(u) => u,
    };
    match users.iter().find(|u| u.name == "default") {
        None => return Verdict::Pass("no default user".into()),
        Some(u) if !u.enabled => return Verdict::Pass("the default user is off".into()),
        Some(_) => {}
    }
    let debug_off =
        matches!(&f.config, Ok(c) if c.get("enable-debug-command").is_some_and(|v| v == "no"));
    let mut allowed = Vec::new();
    for cmd in DANGEROUS {
        if *cmd == "DEBUG" && debug_off {
            continue;
        }
        let mut c = redis::cmd("ACL");
        c.arg("DRYRUN").arg("default").arg(*cmd);
        // DRYRUN checks the arity too: the arguments of a harmless call of each.
        match *cmd {
            "CONFIG" => {
                c.arg("SET").arg("maxmemory").arg("0");
            }
            "DEBUG" => {
                c.arg("SLEEP").arg("0");
            }
            "KEYS" => {
                c.arg("*");
            }
            _ => {}
        }
        match conn.query::<String>(&c).await {
            Ok(r) if r == "OK" => allowed.push(cmd.to_string()),
            Ok(_) => {}
            Err(e) => {
                let msg = format!("{e:#}");
                let lower = msg.to_ascii_lowercase();
                if lower.contains("unknown command") || lower.contains("no permissions") {
                    continue;
                }
                if lower.contains("unknown subcommand") || lower.contains("dryrun") {
                    return Verdict::Error(format!(
                        "ACL DRYRUN is not available ({msg}): Redis 7 or later is needed for this check"
                    ));
                }
                return Verdict::Error(format!("ACL DRYRUN default {cmd}: {msg}"));
            }
        }
    }
    if allowed.is_empty() {
        Verdict::Pass(format!(
            "the default user may run none of {}",
            DANGEROUS.join(", ")
        ))
    } else {
        Verdict::Fail {
            detail: format!(
                "the default user may run {} ({})",
                allowed.join(", "),
                allowed.len()
            ),
            fix: vec![format!(
                "ACL SETUSER default {}",
                allowed
                    .iter()
                    .map(|c| format!("-{}", c.to_ascii_lowercase()))
                    .collect::<Vec<_>>()
                    .join(" ")
            )],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_lines_read_back() {
        let u = parse_acl_line("user default on nopass sanitize-payload ~* &* +@all").unwrap();
        assert!(u.enabled && u.nopass && u.hashes.is_empty());
        let h = sha256_hex("foobared");
        let u = parse_acl_line(&format!("user app off #{h} ~app:* +get")).unwrap();
        assert_eq!(u.name, "app");
        assert!(!u.enabled && !u.nopass);
        assert_eq!(u.hashes, vec![h]);
        assert!(parse_acl_line("nonsense").is_none());
    }

    #[test]
    fn passwords_and_binds_are_judged() {
        assert_eq!(weakness("foobared"), Some("a well-known password"));
        assert_eq!(weakness("short-one"), Some("shorter than 16 characters"));
        assert_eq!(
            weakness("aaaaaaaaaaaaaaaaaaaa"),
            Some("one repeated character")
        );
        assert_eq!(weakness("c0rrect-h0rse-battery-staple"), None);
        assert!(binds_everywhere(""));
        assert!(binds_everywhere("* -::*"));
        assert!(binds_everywhere("0.0.0.0"));
        assert!(!binds_everywhere("127.0.0.1 -::1"));
    }

    #[test]
    fn every_check_has_an_evaluation() {
        let facts = Facts {
            config: Ok(BTreeMap::new()),
            acl: Ok(Vec::new()),
            version: Ok("7.0.15".into()),
        };
        for c in CHECKS {
            if c.id == "RD-CMD-01" {
                continue;
            }
            let v = judge(c.id, &facts);
            assert!(
                !matches!(&v, Verdict::Error(e) if e.contains("no evaluation")),
                "{}",
                c.id
            );
        }
        // A refused CONFIG is an error on the checks that need it, never a pass.
        let refused = Facts {
            config: Err("CONFIG GET refused".into()),
            acl: Err("ACL LIST refused".into()),
            version: Ok("7.0.15".into()),
        };
        for id in [
            "RD-NET-01",
            "RD-NET-02",
            "RD-AUTH-01",
            "RD-MEM-01",
            "RD-PERS-01",
        ] {
            assert!(matches!(judge(id, &refused), Verdict::Error(_)), "{id}");
        }
        // 7.0 ended; 6.0 is older than the table: ended too.
        assert!(matches!(judge("RD-VER-01", &facts), Verdict::Fail { .. }));
    }
}
