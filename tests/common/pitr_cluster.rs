//! Throwaway PostgreSQL 15 clusters for the point-in-time recovery tests: `initdb` into a
//! temporary directory (owned by `postgres` when the tests run as root: the server refuses
//! root), a free port, the socket in the temporary directory, and `archive_command` calling
//! this build's `wal push`. Each [`Cluster`] stops its server and removes its directory when
//! dropped, even when the test fails.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_mairie-dba");
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// `wal fetch`'s status that stops recovery.
pub const ABORT: i32 = 255;

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A command run as the server's user: `postgres` when we are root, else ourselves.
pub fn as_server(program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        Command::new(program)
    }
}

pub fn chown_server(path: &Path) {
    if is_root() {
        let out = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .output()
            .unwrap();
        assert!(out.status.success(), "chown: {out:?}");
    }
}

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

/// A temporary directory with the config of one `pg` target whose archive is `archive/`.
pub struct Workspace {
    pub dir: PathBuf,
    /// For an archive and base backups in a bucket: the bucket, the store's endpoint, and
    /// the environment naming the credentials file (given to our commands and the server).
    pub s3: Option<(String, String)>,
    pub env: Vec<(String, String)>,
}

impl Workspace {
    pub fn new(tag: &str, level: u32) -> Workspace {
        let dir = std::env::temp_dir().join(format!(
            "mairie-pitr-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let w = Workspace {
            dir,
            s3: None,
            env: Vec::new(),
        };
        w.write_config(0, level);
        std::fs::create_dir_all(w.archive()).unwrap();
        chown_server(&w.archive());
        w
    }

    /// The config: the password comes from a variable nobody sets, which `wal` never reads.
    pub fn write_config(&self, port: u16, level: u32) {
        std::fs::write(
            self.dir.join("config_pg.yml"),
            format!(
                "connection:\n  host: 127.0.0.1\n  port: {port}\n  database: postgres\n  user: postgres\n  sslmode: disable\n  password_env: MAIRIE_PITR_TEST_UNSET_PASSWORD\n"
            ),
        )
        .unwrap();
        let places = match &self.s3 {
            None => "archive_dir: archive\n    base_dir: base\n".to_string(),
            Some((bucket, endpoint)) => format!(
                "archive_dir: s3://{bucket}/wal-archive\n    base_dir: s3://{bucket}/base\n    \
                 s3:\n      endpoint: {endpoint}\n      region: us-east-1\n"
            ),
        };
        std::fs::write(
            self.config(),
            format!(
                "targets:\n  pg:\n    engine: postgres\n    config: config_pg.yml\npitr:\n  pg:\n    {places}    compression_level: {level}\n"
            ),
        )
        .unwrap();
        for f in ["config_pg.yml", "config_global.yml"] {
            std::fs::set_permissions(self.dir.join(f), std::fs::Permissions::from_mode(0o644))
                .unwrap();
        }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("config_global.yml")
    }

    pub fn archive(&self) -> PathBuf {
        self.dir.join("archive")
    }

    /// `mairie-dba -c <config> ARGS`, as ourselves, in `cwd`.
    pub fn run(&self, cwd: &Path, args: &[&str]) -> Output {
        Command::new(BIN)
            .current_dir(cwd)
            .arg("-c")
            .arg(self.config())
            .args(args)
            .env_remove("MAIRIE_PITR_TEST_UNSET_PASSWORD")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap()
    }

    /// The published files of the archive, by WAL name.
    pub fn archived(&self) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        let wal = self.archive().join("wal");
        let Ok(rd) = std::fs::read_dir(&wal) else {
            return out;
        };
        for d in rd.flatten() {
            for f in std::fs::read_dir(d.path()).unwrap().flatten() {
                let n = f.file_name().to_string_lossy().to_string();
                if let Some(stem) = n.strip_suffix(".zst") {
                    if let Some((name, _)) = stem.rsplit_once('-') {
                        out.push((name.to_string(), f.path()));
                    }
                }
            }
        }
        out.sort();
        out
    }

    pub fn path_of(&self, name: &str) -> PathBuf {
        self.archived()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} is not archived"))
            .1
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A throwaway cluster whose archive_command is `wal push`.
pub struct Cluster {
    pub ws: Workspace,
    pub port: u16,
    pub data: PathBuf,
}

impl Cluster {
    /// `archiving`: archive_mode on with our archive_command, else everything at its default.
    pub fn new(tag: &str, archiving: bool) -> Cluster {
        Cluster::with(Workspace::new(tag, 3), archiving)
    }

    /// A cluster archiving into `s3://<bucket>/wal-archive`, its base backups in
    /// `s3://<bucket>/base`, on the store at `endpoint` with the keys given: they are
    /// written to a credentials file the server's user can read, which the server and our
    /// commands are pointed to (`AWS_SHARED_CREDENTIALS_FILE`), as a site would set it up.
    pub fn in_bucket(tag: &str, bucket: &str, endpoint: &str, keys: (&str, &str)) -> Cluster {
        let mut ws = Workspace::new(tag, 3);
        let creds = ws.dir.join("aws-credentials");
        std::fs::write(
            &creds,
            format!(
                "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                keys.0, keys.1
            ),
        )
        .unwrap();
        std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o644)).unwrap();
        ws.s3 = Some((bucket.to_string(), endpoint.to_string()));
        ws.env = vec![
            (
                "AWS_SHARED_CREDENTIALS_FILE".into(),
                creds.display().to_string(),
            ),
            ("AWS_PROFILE".into(), "default".into()),
        ];
        ws.write_config(0, 3);
        Cluster::with(ws, true)
    }

    fn with(ws: Workspace, archiving: bool) -> Cluster {
        let port = free_port();
        ws.write_config(port, 3);
        let data = ws.dir.join("data");
        let sock = ws.dir.join("sock");
        std::fs::create_dir_all(&sock).unwrap();
        chown_server(&sock);
        std::fs::create_dir_all(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        chown_server(&data);
        let out = as_server(&format!("{PG_BIN}/initdb"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {}", text(&out));
        let mut conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\nmax_wal_size = 64MB\n",
            sock.display()
        );
        if archiving {
            conf.push_str(&format!(
                "archive_mode = on\narchive_command = '{BIN} -c {} -t pg wal push %p'\nwal_level = replica\n",
                ws.config().display()
            ));
        } else {
            conf.push_str("wal_level = minimal\nmax_wal_senders = 0\n");
        }
        let pgconf = data.join("postgresql.conf");
        let mut old = std::fs::read_to_string(&pgconf).unwrap();
        old.push_str(&conf);
        std::fs::write(&pgconf, old).unwrap();
        let c = Cluster { ws, port, data };
        c.start();
        c
    }

    pub fn pg_ctl(&self, args: &[&str]) -> Output {
        as_server(&format!("{PG_BIN}/pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-l"])
            .arg(self.ws.dir.join("sock/server.log"))
            .args(args)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .envs(self.ws.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap()
    }

    pub fn start(&self) {
        let out = self.pg_ctl(&["-w", "-t", "60", "start"]);
        assert!(
            out.status.success(),
            "pg_ctl start: {}\n{}",
            text(&out),
            std::fs::read_to_string(self.ws.dir.join("sock/server.log")).unwrap_or_default()
        );
    }

    pub fn restart(&self) {
        let out = self.pg_ctl(&["-w", "-t", "60", "-m", "fast", "restart"]);
        assert!(out.status.success(), "pg_ctl restart: {}", text(&out));
    }

    pub fn psql(&self, sql: &str) -> String {
        self.psql_at(self.port, sql)
    }

    /// `sql` on the server listening on `port` in the cluster's socket directory (a copy
    /// restored beside it).
    pub fn psql_at(&self, port: u16, sql: &str) -> String {
        let out = Command::new(format!("{PG_BIN}/psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.ws.dir.join("sock"))
            .args([
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "psql {sql}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Writes some WAL and switches segment `n` times; returns the last segment switched
    /// away from.
    pub fn switch(&self, n: usize) -> String {
        let mut last = String::new();
        for i in 0..n {
            self.psql(&format!(
                "CREATE TABLE IF NOT EXISTS t(i int); INSERT INTO t SELECT g FROM generate_series(1, 1000 + {i}) g"
            ));
            last = self.psql("SELECT pg_walfile_name(pg_switch_wal())");
        }
        last
    }

    /// Waits until `wal` is archived (pg_stat_archiver says so).
    pub fn wait_archived(&self, wal: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let last = self.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver");
            if last.as_str() >= wal && !last.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{wal} not archived after 60 s (last {last}); log:\n{}",
                std::fs::read_to_string(self.ws.dir.join("sock/server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-m", "immediate", "stop"]);
    }
}

/// A fake but well-formed segment: a long page header naming `sysid`, then `fill`.
pub fn fake_segment(sysid: u64, fill: impl Fn(usize) -> u8) -> Vec<u8> {
    let size = 16usize << 20;
    let mut v: Vec<u8> = (0..size).map(fill).collect();
    v[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
    v[2..4].copy_from_slice(&0x0002u16.to_le_bytes());
    v[4..8].copy_from_slice(&1u32.to_le_bytes());
    v[8..16].copy_from_slice(&0u64.to_le_bytes());
    v[16..24].fill(0);
    v[24..32].copy_from_slice(&sysid.to_le_bytes());
    v[32..36].copy_from_slice(&(size as u32).to_le_bytes());
    v[36..40].copy_from_slice(&8192u32.to_le_bytes());
    v
}

/// A server started from a copy of a base backup; stopped when dropped.
pub struct Restored {
    pub data: PathBuf,
    pub log: PathBuf,
}

impl Restored {
    /// Copies `backup` to `name` beside it, set up to recover through `wal fetch`.
    pub fn new(c: &Cluster, backup: &Path, name: &str) -> (Restored, u16) {
        let data = c.ws.dir.join(name);
        let out = Command::new("cp")
            .arg("-a")
            .arg(backup)
            .arg(&data)
            .output()
            .unwrap();
        assert!(out.status.success(), "cp: {}", text(&out));
        let port = free_port();
        let auto = data.join("postgresql.auto.conf");
        let mut conf = std::fs::read_to_string(&auto).unwrap_or_default();
        conf.push_str(&format!(
            "port = {port}\narchive_mode = off\nrestore_command = '{BIN} -c {} -t pg wal fetch %f %p'\n",
            c.ws.config().display()
        ));
        std::fs::write(&auto, conf).unwrap();
        std::fs::write(data.join("recovery.signal"), "").unwrap();
        chown_server(&data);
        let log = c.ws.dir.join("sock").join(format!("{name}.log"));
        (Restored { data, log }, port)
    }

    pub fn start(&self) -> Output {
        as_server(&format!("{PG_BIN}/pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "60", "start"])
            .output()
            .unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for archive recovery to end (the server promoted itself): Ok, or Err with
    /// the log when the server stopped instead. `pg_ctl -w` returns as soon as a hot
    /// standby accepts read-only connections, before the archive is replayed.
    pub fn wait_recovery_end(&self, sock: &Path, port: u16) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let q = Command::new(format!("{PG_BIN}/psql"))
                .args(["-X", "-A", "-t", "-h"])
                .arg(sock)
                .args(["-p", &port.to_string(), "-U", "postgres", "-d", "postgres"])
                .args(["-c", "SELECT pg_is_in_recovery()"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&q.stdout).trim() == "f" {
                return Ok(());
            }
            let running = as_server(&format!("{PG_BIN}/pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .arg("status")
                .output()
                .unwrap()
                .status
                .success();
            if !running {
                return Err(self.log());
            }
            assert!(
                Instant::now() < deadline,
                "recovery never ended:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Stops, immediately, the server of the data directory `data` (if one runs): what the
/// restored copies do when dropped.
pub fn stop_now(data: &Path) {
    let _ = as_server(&format!("{PG_BIN}/pg_ctl"))
        .arg("-D")
        .arg(data)
        .args(["-m", "immediate", "-w", "stop"])
        .output();
}

impl Drop for Restored {
    fn drop(&mut self) {
        let _ = as_server(&format!("{PG_BIN}/pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

/// `mairie-dba -c <config> ARGS` for a command that connects: the config's password
/// variable must be set (trust authentication ignores its value).
pub fn run(c: &Cluster, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(&c.ws.dir)
        .arg("-c")
        .arg(c.ws.config())
        .args(args)
        .env("MAIRIE_PITR_TEST_UNSET_PASSWORD", "unused")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .envs(c.ws.env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap()
}
