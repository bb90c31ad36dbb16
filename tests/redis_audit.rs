//! The Redis audit against real throwaway redis-server instances: an open one, a locked-down
//! one (TLS only, the default user off, an administrator with a strong password, limits and
//! persistence set), and one with a well-known password, which is never shown.

#[path = "common/redis_server.rs"]
mod redis_server;

use redis_server::*;
use serde_json::Value;
use std::process::Command;

fn findings(out: &std::process::Output) -> Vec<(String, String, String)> {
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)));
    doc["targets"][0]["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("{doc}"))
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_string(),
                f["status"].as_str().unwrap().to_string(),
                f["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn status_of<'a>(f: &'a [(String, String, String)], id: &str) -> &'a str {
    f.iter()
        .find(|(i, _, _)| i == id)
        .map(|(_, s, _)| s.as_str())
        .unwrap_or_else(|| panic!("no {id} in {f:?}"))
}

#[test]
fn an_open_instance_fails_the_checks_that_matter() {
    let s = RedisServer::start("audit-open", &["--protected-mode", "no"]);
    s.write_config("", "");
    let out = s.run(&["--format", "json", "audit"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let f = findings(&out);
    assert_eq!(f.len(), 10, "{f:?}");
    for id in [
        "RD-NET-01",
        "RD-AUTH-01",
        "RD-CMD-01",
        "RD-TLS-01",
        "RD-MEM-01",
        "RD-MEM-02",
        "RD-PERS-01",
    ] {
        assert_eq!(status_of(&f, id), "fail", "{id}: {f:?}");
    }
    // Loopback only here: the bind check passes (binding every address is unit-tested).
    assert_eq!(status_of(&f, "RD-NET-02"), "pass", "{f:?}");
    let cmd = f.iter().find(|(i, _, _)| i == "RD-CMD-01").unwrap();
    assert!(
        cmd.2.contains("FLUSHALL") && cmd.2.contains("CONFIG"),
        "{cmd:?}"
    );
    // JUnit for CI, one test case per check.
    let out = s.run(&["--format", "junit", "audit"]);
    let xml = String::from_utf8_lossy(&out.stdout);
    assert_eq!(xml.matches("<testcase").count(), 10, "{xml}");
}

#[test]
fn a_well_known_password_is_found_and_never_shown() {
    let s = RedisServer::start("audit-weak", &["--requirepass", "foobared"]);
    s.write_config("", "");
    let out = s.run(&["--format", "json", "audit", "--check", "RD-AUTH"]);
    let f = findings(&out);
    assert_eq!(status_of(&f, "RD-AUTH-01"), "pass", "{f:?}");
    assert_eq!(status_of(&f, "RD-AUTH-02"), "fail", "{f:?}");
    let all = text(&out);
    assert!(all.contains("a well-known password"), "{all}");
    assert!(!all.contains("foobared"), "{all}");
}

#[test]
fn a_locked_down_instance_passes_over_tls_as_an_acl_user() {
    let s = RedisServer::start(
        "audit-locked",
        &[
            "--maxmemory",
            "64mb",
            "--maxmemory-policy",
            "allkeys-lru",
            "--save",
            "3600 1",
        ],
    );
    let key = s.dir.join("key.pem");
    let cert = s.dir.join("cert.pem");
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let tls_port = free_port();
    for (k, v) in [
        ("tls-cert-file", cert.to_str().unwrap()),
        ("tls-key-file", key.to_str().unwrap()),
        ("tls-ca-cert-file", cert.to_str().unwrap()),
        ("tls-auth-clients", "no"),
    ] {
        s.cli(&["CONFIG", "SET", k, v]);
    }
    s.cli(&["CONFIG", "SET", "tls-port", &tls_port.to_string()]);
    let pw = "Hx7-unguessable-admin-passphrase-2026";
    s.cli(&[
        "ACL",
        "SETUSER",
        "admin",
        "on",
        &format!(">{pw}"),
        "~*",
        "&*",
        "+@all",
    ]);
    s.cli(&["ACL", "SETUSER", "default", "off"]);
    // The plain-text port closes: from now on only TLS, as admin.
    let mut close = Command::new("redis-cli");
    close
        .args(["-p", &s.port.to_string(), "--user", "admin"])
        .env("REDISCLI_AUTH", pw)
        .args(["CONFIG", "SET", "port", "0"]);
    let out = close.output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(
        s.dir.join("config_redis.yml"),
        format!(
            "connection:\n  host: 127.0.0.1\n  port: {tls_port}\n  user: admin\n  password_env: MAIRIE_TEST_REDIS_PW\n  tls: true\n  trust_server_certificate: true\n"
        ),
    )
    .unwrap();
    std::fs::write(
        s.dir.join("config_global.yml"),
        "targets:\n  redis:\n    engine: redis\n    config: config_redis.yml\naudit:\n  ignore: [RD-VER-01]\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .current_dir(&s.dir)
        .arg("-c")
        .arg(s.dir.join("config_global.yml"))
        .args(["--format", "json", "audit"])
        .env("MAIRIE_TEST_REDIS_PW", pw)
        .output()
        .unwrap();
    let f = findings(&out);
    for (id, status, detail) in &f {
        let want = if id == "RD-VER-01" { "ignored" } else { "pass" };
        assert_eq!(status, want, "{id}: {detail}\n{}", text(&out));
    }
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains(pw));
}
