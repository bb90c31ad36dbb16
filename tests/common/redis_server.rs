//! Throwaway `redis-server` instances for the Redis tests: each on a free loopback port,
//! with its own directory (data, log, config for mairie-dba), stopped and removed when
//! dropped, even when the test fails. The machine's own Redis (6379) is never touched.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_mairie-dba");

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A running redis-server of the test's own.
pub struct RedisServer {
    pub port: u16,
    /// The instance's directory: `data/` (its `dir`), `redis.log`, and the mairie-dba
    /// config (`config_global.yml`, `config_redis.yml`) written by [`RedisServer::write_config`].
    pub dir: PathBuf,
    /// `requirepass`, when the instance was started with one.
    pub password: Option<String>,
    child: Child,
}

impl RedisServer {
    /// Starts `redis-server` with `args` appended to the defaults (loopback only, no
    /// snapshots unless asked, protected mode), and waits until it answers PING.
    pub fn start(tag: &str, args: &[&str]) -> RedisServer {
        let dir = std::env::temp_dir().join(format!(
            "mairie-redis-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        ));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let port = free_port();
        let password = args
            .windows(2)
            .find(|w| w[0] == "--requirepass")
            .map(|w| w[1].to_string());
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir.join("data"))
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/dev-services.sh installs it)");
        let s = RedisServer {
            port,
            dir,
            password,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let out = s.cli_output(&["PING"]);
            if String::from_utf8_lossy(&out.stdout).trim() == "PONG" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on {port} never answered: {}\n{}",
                text(&out),
                std::fs::read_to_string(s.dir.join("redis.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    pub fn cli_output(&self, args: &[&str]) -> Output {
        let mut c = Command::new("redis-cli");
        c.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(pw) = &self.password {
            // Through the environment, not argv.
            c.env("REDISCLI_AUTH", pw);
        }
        c.args(args).output().unwrap()
    }

    /// `redis-cli ARGS`, which must succeed; its output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self.cli_output(args);
        assert!(out.status.success(), "redis-cli {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Writes `config_global.yml` (one target `redis`, plus `extra` YAML appended) and
    /// `config_redis.yml` (`connection_extra` appended to the connection block); returns
    /// the global file's path. The password, if any, is read from `MAIRIE_TEST_REDIS_PW`.
    pub fn write_config(&self, extra: &str, connection_extra: &str) -> PathBuf {
        let mut conn = format!(
            "connection:\n  host: 127.0.0.1\n  port: {}\n  connect_timeout: 3\n  statement_timeout: 10\n",
            self.port
        );
        if self.password.is_some() {
            conn.push_str("  password_env: MAIRIE_TEST_REDIS_PW\n");
        }
        conn.push_str(connection_extra);
        std::fs::write(self.dir.join("config_redis.yml"), conn).unwrap();
        let global = self.dir.join("config_global.yml");
        std::fs::write(
            &global,
            format!("targets:\n  redis:\n    engine: redis\n    config: config_redis.yml\n{extra}"),
        )
        .unwrap();
        global
    }

    /// `mairie-dba -c <dir>/config_global.yml ARGS`, with the password in the environment.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut c = Command::new(BIN);
        c.current_dir(&self.dir)
            .arg("-c")
            .arg(self.dir.join("config_global.yml"))
            .args(args);
        if let Some(pw) = &self.password {
            c.env("MAIRIE_TEST_REDIS_PW", pw);
        }
        c.output().unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Fills database `db` with `n` string keys of `size` bytes through redis-cli's pipe mode.
pub fn fill(s: &RedisServer, db: u32, n: usize, size: usize) {
    let value = "x".repeat(size);
    let mut proto = Vec::new();
    let sel = db.to_string();
    push_cmd(&mut proto, &["SELECT", &sel]);
    for i in 0..n {
        let key = format!("key:{db}:{i}");
        push_cmd(&mut proto, &["SET", &key, &value]);
    }
    let mut c = Command::new("redis-cli");
    c.args(["-h", "127.0.0.1", "-p", &s.port.to_string(), "--pipe"]);
    if let Some(pw) = &s.password {
        c.env("REDISCLI_AUTH", pw);
    }
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&proto).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "redis-cli --pipe: {}", text(&out));
}

fn push_cmd(out: &mut Vec<u8>, args: &[&str]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
}
