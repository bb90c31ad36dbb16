//! The Redis engine's connection, against real throwaway redis-server instances.

#[path = "common/redis_server.rs"]
mod redis_server;

use redis_server::*;

#[test]
fn a_redis_target_connects_with_its_password_and_index_and_says_what_it_cannot_do() {
    let s = RedisServer::start("engine", &["--requirepass", "s3cret-Redis-pw"]);
    s.write_config("", "  database: 3\n");
    // Connected with the password and the index: the first health check gets an answer.
    let out = s.run(&["--format", "json", "health", "--check", "connectivity"]);
    let t = text(&out);
    assert!(!t.contains("AuthenticationFailed"), "{t}");
    assert!(!t.contains("s3cret-Redis-pw"), "{t}");
    // A wrong password is an authentication error naming the server, not the password.
    let out = std::process::Command::new(BIN)
        .current_dir(&s.dir)
        .arg("-c")
        .arg(s.dir.join("config_global.yml"))
        .args(["health", "--check", "connectivity"])
        .env("MAIRIE_TEST_REDIS_PW", "wrong-password")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains(&format!("127.0.0.1:{}", s.port)), "{t}");
    assert!(t.contains("authentication failed"), "{t}");
    assert!(!t.contains("wrong-password"), "{t}");
}
