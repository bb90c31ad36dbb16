//! Redis backups: the snapshot (an RDB file) taken by `BGSAVE` and copied from the server's
//! `dir`, or read over the replication protocol as `redis-cli --rdb` does; checked with
//! `redis-check-rdb`; a data directory prepared from it (`restore --into-dir`); and the drill,
//! which loads it into a throwaway `redis-server` of its own.
//!
//! The keys per database in the manifest are read from the file itself, not from `INFO
//! keyspace` (which under writes has moved on by the time it is read): `redis-check-rdb` reads
//! the whole file, checks its checksum and says where each database starts; there the file's
//! RESIZEDB record holds that database's key count, and the counts must add up to the keys
//! `redis-check-rdb` read, or the backup fails. The drill's server loads the file as a replica
//! (of a socket of ours that never answers): a replica keeps the keys whose TTL has passed
//! since the backup, where a primary would drop them, so its `INFO keyspace` must match the
//! manifest exactly.
//!
//! A backup is never restored into a running server: the operator stops it and starts it on
//! the directory `restore --into-dir` prepared.

use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufStream};

use crate::config::{RedisBackupMethod, Target};
use crate::engine::redis::{self as engine_redis, parse_info, parse_keyspace, RedisConn};
use crate::engine::tools;
use crate::engine::{Driver, DumpInfo};

/// The longest a snapshot may take, from `BGSAVE` or `SYNC` to the last byte copied.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// The longest the replication stream may stay silent: while it prepares the snapshot, the
/// server sends a newline every second.
const READ_IDLE: Duration = Duration::from_secs(120);

/// The longest a drill's server may take to load the snapshot.
const LOAD_TIMEOUT: Duration = Duration::from_secs(3600);

/// Takes a snapshot of the target's server and streams it into `out` (hashed and written by
/// the caller). The keys per database are filled in by [`inspect`], once the file is whole.
pub async fn dump(
    target: &Target,
    method: RedisBackupMethod,
    out: &mut impl Write,
) -> Result<DumpInfo> {
    let mut conn = engine_redis::connect(target).await?;
    let server_version = conn.server_version().await?;
    let how = match method {
        RedisBackupMethod::Bgsave => {
            let file = snapshot_file(&mut conn, target, false).await?;
            match bgsave_copy(&mut conn, &file, out).await? {
                Copied::Done => "BGSAVE",
                Copied::NotHere(why) => {
                    bail!("{why} (set backup.{}.method: replication)", target.name)
                }
            }
        }
        RedisBackupMethod::Replication => {
            sync(target, out).await?;
            "SYNC"
        }
        RedisBackupMethod::Auto => {
            let done = match snapshot_file(&mut conn, target, true).await {
                Ok(file) => matches!(bgsave_copy(&mut conn, &file, out).await?, Copied::Done),
                Err(_) => false,
            };
            if done {
                "BGSAVE"
            } else {
                sync(target, out).await?;
                "SYNC"
            }
        }
    };
    Ok(DumpInfo {
        tool: how.to_string(),
        server_version,
        tables: BTreeMap::new(),
        format: "rdb".into(),
    })
}

/// Where the server writes its snapshot, when this process can read it there. `auto` also
/// requires the server to be on this machine (a loopback address): another host's `dir` may
/// exist here by chance.
async fn snapshot_file(conn: &mut RedisConn, target: &Target, auto: bool) -> Result<PathBuf> {
    let dir = conn
        .config_get("dir")
        .await
        .context("CONFIG GET dir (the bgsave method reads the snapshot in the server's dir)")?
        .ok_or_else(|| anyhow!("CONFIG GET dir gave nothing"))?;
    let name = conn
        .config_get("dbfilename")
        .await
        .context("CONFIG GET dbfilename")?
        .ok_or_else(|| anyhow!("CONFIG GET dbfilename gave nothing"))?;
    if auto && !is_loopback(&target.connection.host) {
        bail!(
            "the server ({}) is not on this machine",
            target.connection.host
        );
    }
    let dir = PathBuf::from(dir);
    if !dir.is_absolute() || !dir.is_dir() {
        bail!(
            "the server's dir {} is not a directory on this machine",
            dir.display()
        );
    }
    if !readable_dir(&dir) {
        bail!(
            "the server's dir {} cannot be read by this user",
            dir.display()
        );
    }
    let file = dir.join(name);
    if auto && file.exists() && !readable(&file, libc::R_OK) {
        bail!("{} cannot be read by this user", file.display());
    }
    Ok(file)
}

fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn readable_dir(dir: &Path) -> bool {
    readable(dir, libc::R_OK | libc::X_OK)
}

fn readable(path: &Path, mode: libc::c_int) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid C string that outlives the call.
    unsafe { libc::access(c.as_ptr(), mode) == 0 }
}

/// The fields of `INFO persistence` a snapshot is followed by.
#[derive(Debug, Clone, PartialEq)]
struct Persistence {
    in_progress: bool,
    /// LASTSAVE: the time of the last successful snapshot, in seconds.
    lastsave: i64,
    /// `rdb_last_bgsave_status:ok`.
    status_ok: bool,
    /// Redis 7: successful snapshots since start-up (exact where LASTSAVE counts seconds).
    saves: Option<u64>,
}

fn parse_persistence(text: &str) -> Result<Persistence> {
    let info = parse_info(text);
    let p = info
        .get("persistence")
        .ok_or_else(|| anyhow!("INFO persistence has no Persistence section"))?;
    let field = |k: &str| {
        p.get(k)
            .ok_or_else(|| anyhow!("INFO persistence has no {k}"))
            .map(|v| v.trim().to_string())
    };
    Ok(Persistence {
        in_progress: field("rdb_bgsave_in_progress")? == "1",
        lastsave: field("rdb_last_save_time")?
            .parse()
            .context("rdb_last_save_time")?,
        status_ok: field("rdb_last_bgsave_status")? == "ok",
        saves: p.get("rdb_saves").and_then(|v| v.trim().parse().ok()),
    })
}

async fn persistence(conn: &mut RedisConn) -> Result<Persistence> {
    let text: String = conn.query(redis::cmd("INFO").arg("persistence")).await?;
    parse_persistence(&text)
}

async fn server_time(conn: &mut RedisConn) -> Result<i64> {
    let t: Vec<String> = conn.query(&redis::cmd("TIME")).await?;
    t.first()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("TIME gave no seconds"))
}

enum Copied {
    Done,
    /// The snapshot just taken cannot be read here (the file cannot be opened, or it is
    /// another machine's file at the same path): nothing was written.
    NotHere(String),
}

/// Runs `BGSAVE` and waits for it ([`bgsave`]), then copies the file it wrote into `out`.
async fn bgsave_copy(conn: &mut RedisConn, file: &Path, out: &mut impl Write) -> Result<Copied> {
    let not_before = bgsave(conn).await?;
    // Opened once and copied from that descriptor: a later BGSAVE renames a new file over
    // the name, never into these bytes.
    let f = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) => {
            return Ok(Copied::NotHere(format!(
                "opening the snapshot {}: {e} (the server's files must be readable by this user)",
                file.display()
            )))
        }
    };
    let mtime = f
        .metadata()
        .and_then(|m| m.modified())
        .with_context(|| format!("reading {}", file.display()))?;
    let mtime = chrono::DateTime::<chrono::Utc>::from(mtime).timestamp();
    if mtime < not_before {
        return Ok(Copied::NotHere(format!(
            "{} was last written before the BGSAVE just run: not this server's snapshot",
            file.display()
        )));
    }
    let mut f = tokio::fs::File::from_std(f);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .await
            .with_context(|| format!("reading {}", file.display()))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .context("writing the backup file")?;
    }
    Ok(Copied::Done)
}

/// Takes a snapshot with `BGSAVE` and waits until it is written: no save in progress,
/// LASTSAVE (or Redis 7's count of saves) moved past what it was before, and the status ok.
/// A BGSAVE already running is waited for first, and then one of ours is taken: the snapshot
/// is never older than the backup. Returns the server's time (seconds) just before.
async fn bgsave(conn: &mut RedisConn) -> Result<i64> {
    let deadline = Instant::now() + SNAPSHOT_TIMEOUT;
    for _attempt in 0..10 {
        wait_idle(conn, deadline).await?;
        let before = persistence(conn).await?;
        let mut now = server_time(conn).await?;
        if before.saves.is_none() && now <= before.lastsave {
            // LASTSAVE counts seconds: ours must be able to move it.
            tokio::time::sleep(Duration::from_millis(1100)).await;
            now = server_time(conn).await?;
        }
        // SCHEDULE: during an AOF rewrite the save starts as soon as it ends.
        let reply: Result<String> = conn.query(redis::cmd("BGSAVE").arg("SCHEDULE")).await;
        let started = match reply {
            Ok(r) => r.contains("started"),
            Err(e) if e.to_string().contains("already in progress") => continue,
            Err(e) => return Err(e.context("BGSAVE")),
        };
        wait_saved(conn, &before, started, deadline).await?;
        return Ok(now);
    }
    bail!("BGSAVE: other snapshots kept starting first; try again")
}

/// Waits until no snapshot is being written.
async fn wait_idle(conn: &mut RedisConn, deadline: Instant) -> Result<()> {
    let mut pause = Duration::from_millis(50);
    while persistence(conn).await?.in_progress {
        if Instant::now() > deadline {
            bail!(
                "a BGSAVE already running did not finish within {} s",
                SNAPSHOT_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
    Ok(())
}

/// What a poll of `INFO persistence` says of the snapshot started after `before`.
#[derive(Debug, PartialEq)]
enum SaveState {
    Running,
    Saved,
    Failed,
}

fn save_state(before: &Persistence, now: &Persistence, seen_running: bool) -> SaveState {
    if now.in_progress {
        return SaveState::Running;
    }
    let moved = match (before.saves, now.saves) {
        (Some(b), Some(n)) => n > b,
        _ => now.lastsave > before.lastsave,
    };
    if now.status_ok && moved {
        SaveState::Saved
    } else if !now.status_ok && seen_running {
        SaveState::Failed
    } else {
        SaveState::Running // scheduled, not started yet
    }
}

async fn wait_saved(
    conn: &mut RedisConn,
    before: &Persistence,
    started: bool,
    deadline: Instant,
) -> Result<()> {
    let mut seen_running = started;
    let mut pause = Duration::from_millis(20);
    loop {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
        let now = persistence(conn).await?;
        seen_running |= now.in_progress;
        match save_state(before, &now, seen_running) {
            SaveState::Saved => return Ok(()),
            SaveState::Failed => {
                let dir = conn.config_get("dir").await.ok().flatten();
                bail!(
                    "BGSAVE failed on the server (rdb_last_bgsave_status:err); its log says why \
                     (commonly: its dir{} cannot be written, or the disk is full)",
                    dir.map(|d| format!(" {d}")).unwrap_or_default()
                );
            }
            SaveState::Running if Instant::now() > deadline => bail!(
                "BGSAVE did not finish within {} s",
                SNAPSHOT_TIMEOUT.as_secs()
            ),
            SaveState::Running => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The replication protocol

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connection speaking RESP by hand: what the replication handshake needs (the client
/// library has no way to read a snapshot), and the drill's few questions.
struct Raw {
    io: BufStream<Box<dyn Io>>,
}

enum Reply {
    Simple(String),
    Bulk(Vec<u8>),
}

fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl Raw {
    async fn send(&mut self, args: &[&[u8]]) -> Result<()> {
        self.io.write_all(&resp(args)).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// One line, without its line break; at most 64 KiB.
    async fn line(&mut self) -> Result<Vec<u8>> {
        let mut line = Vec::new();
        loop {
            let buf = tokio::time::timeout(READ_IDLE, self.io.fill_buf())
                .await
                .map_err(|_| anyhow!("no answer within {} s", READ_IDLE.as_secs()))??;
            if buf.is_empty() {
                bail!("the server closed the connection");
            }
            if let Some(i) = memchr::memchr(b'\n', buf) {
                line.extend_from_slice(&buf[..i]);
                self.io.consume(i + 1);
                break;
            }
            let n = buf.len();
            line.extend_from_slice(buf);
            self.io.consume(n);
            if line.len() > 64 * 1024 {
                bail!("an answer line longer than 64 KiB");
            }
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(line)
    }

    /// A command's reply: a status or a bulk string; an error reply is an error.
    async fn command(&mut self, args: &[&[u8]]) -> Result<Reply> {
        self.send(args).await?;
        let line = self.line().await?;
        let text = String::from_utf8_lossy(line.get(1..).unwrap_or_default()).into_owned();
        match line.first() {
            Some(b'+') => Ok(Reply::Simple(text)),
            Some(b'-') => Err(anyhow!("{text}")),
            Some(b'$') => {
                let n: usize = text.parse().context("a bulk length")?;
                let mut buf = vec![0u8; n + 2];
                tokio::time::timeout(READ_IDLE, self.io.read_exact(&mut buf))
                    .await
                    .map_err(|_| anyhow!("no answer within {} s", READ_IDLE.as_secs()))??;
                buf.truncate(n);
                Ok(Reply::Bulk(buf))
            }
            _ => bail!("unexpected answer `{}`", String::from_utf8_lossy(&line)),
        }
    }

    async fn read_some(&mut self, buf: &mut [u8]) -> Result<usize> {
        tokio::time::timeout(READ_IDLE, self.io.read(buf))
            .await
            .map_err(|_| anyhow!("the snapshot stopped coming for {} s", READ_IDLE.as_secs()))?
            .context("reading the snapshot")
    }
}

/// Opens a connection to the target (TLS with `tls: true`) and authenticates.
async fn open_raw(target: &Target) -> Result<Raw> {
    let c = &target.connection;
    let tcp = tokio::time::timeout(
        c.connect_timeout,
        tokio::net::TcpStream::connect((c.host.as_str(), c.port)),
    )
    .await
    .map_err(|_| anyhow!("no answer within {} s", c.connect_timeout.as_secs()))?
    .context("connecting")?;
    let io: Box<dyn Io> = if c.tls {
        let config = tls::client_config(c.trust_server_certificate)?;
        let name = rustls::pki_types::ServerName::try_from(c.host.clone())
            .map_err(|e| anyhow!("{}: not a TLS server name: {e}", c.host))?;
        let stream = tokio::time::timeout(
            c.connect_timeout,
            tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
        )
        .await
        .map_err(|_| {
            anyhow!(
                "TLS handshake: no answer within {} s",
                c.connect_timeout.as_secs()
            )
        })?
        .context("TLS handshake")?;
        Box::new(stream)
    } else {
        Box::new(tcp)
    };
    let mut raw = Raw {
        io: BufStream::with_capacity(1 << 20, 1 << 16, io),
    };
    if let Some(pw) = target.password()? {
        let res = if c.user.is_empty() {
            raw.command(&[b"AUTH", pw.expose().as_bytes()]).await
        } else {
            raw.command(&[b"AUTH", c.user.as_bytes(), pw.expose().as_bytes()])
                .await
        };
        // The server's message never quotes the password.
        res.map_err(|e| anyhow!("authentication failed: {e}"))?;
    }
    Ok(raw)
}

/// Reads a snapshot over the replication protocol, as `redis-cli --rdb` does: `SYNC` after
/// announcing that the stream may end with an EOF mark (a diskless server then writes
/// nothing on its own disk) and that only the snapshot is wanted; the snapshot comes as
/// `$<length>` and that many bytes, or `$EOF:<40 bytes>` and bytes up to that mark.
async fn sync(target: &Target, out: &mut impl Write) -> Result<()> {
    let c = &target.connection;
    let what = || format!("redis {}:{} (target `{}`)", c.host, c.port, target.name);
    tokio::time::timeout(SNAPSHOT_TIMEOUT, async {
        let mut raw = open_raw(target).await?;
        raw.command(&[b"REPLCONF", b"capa", b"eof"])
            .await
            .context("REPLCONF capa eof")?;
        // Redis 7: no replication stream after the snapshot. Older servers refuse it; the
        // connection is closed once the snapshot is read either way.
        let _ = raw.command(&[b"REPLCONF", b"rdb-only", b"1"]).await;
        raw.send(&[b"SYNC"]).await?;
        let header = loop {
            let line = raw.line().await.context("waiting for the snapshot")?;
            match line.first() {
                None => continue, // the newline the server sends while it prepares
                Some(b'-') => bail!("SYNC refused: {}", String::from_utf8_lossy(&line[1..])),
                Some(b'$') => break line,
                Some(_) => bail!(
                    "SYNC: unexpected answer `{}`",
                    String::from_utf8_lossy(&line[..line.len().min(80)])
                ),
            }
        };
        match header[1..].strip_prefix(b"EOF:") {
            Some(mark) if mark.len() == 40 => copy_until_mark(&mut raw, mark, out).await,
            Some(_) => bail!("SYNC: an EOF mark that is not 40 bytes long"),
            None => {
                let len: u64 = std::str::from_utf8(&header[1..])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| anyhow!("SYNC: a bad snapshot length"))?;
                copy_exact(&mut raw, len, out).await
            }
        }
    })
    .await
    .map_err(|_| {
        anyhow!(
            "the snapshot did not arrive within {} s",
            SNAPSHOT_TIMEOUT.as_secs()
        )
    })
    .and_then(|r| r)
    .with_context(what)
}

async fn copy_exact(raw: &mut Raw, len: u64, out: &mut impl Write) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = raw.read_some(&mut buf[..want]).await?;
        if n == 0 {
            bail!(
                "the connection closed after {} of {len} bytes of the snapshot",
                len - left
            );
        }
        out.write_all(&buf[..n])
            .context("writing the backup file")?;
        left -= n as u64;
    }
    Ok(())
}

/// Copies the stream up to `mark`: the last bytes are held back until more come, as they
/// may be the start of the mark.
async fn copy_until_mark(raw: &mut Raw, mark: &[u8], out: &mut impl Write) -> Result<()> {
    let finder = memchr::memmem::Finder::new(mark);
    let mut buf = vec![0u8; 1 << 20];
    let mut held: Vec<u8> = Vec::with_capacity(mark.len());
    let mut joined: Vec<u8> = Vec::with_capacity(buf.len() + mark.len());
    loop {
        let n = raw.read_some(&mut buf).await?;
        if n == 0 {
            bail!("the connection closed before the end of the snapshot");
        }
        joined.clear();
        joined.extend_from_slice(&held);
        joined.extend_from_slice(&buf[..n]);
        if let Some(at) = finder.find(&joined) {
            out.write_all(&joined[..at])
                .context("writing the backup file")?;
            return Ok(());
        }
        let keep = joined.len().min(mark.len() - 1);
        let cut = joined.len() - keep;
        out.write_all(&joined[..cut])
            .context("writing the backup file")?;
        held.clear();
        held.extend_from_slice(&joined[cut..]);
    }
}

/// TLS for the replication connection: the system's CA store, or with
/// `trust_server_certificate: true` any certificate (the handshake's signatures are still
/// checked), as the client library does for the other connections.
mod tls {
    use std::sync::Arc;

    use anyhow::{anyhow, Result};

    pub fn client_config(trust_any: bool) -> Result<rustls::ClientConfig> {
        if trust_any {
            return crate::engine::tls::encrypt_only().map_err(|e| anyhow!("setting up TLS: {e}"));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| anyhow!("setting up TLS: {e}"))?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if roots.is_empty() {
            return Err(anyhow!(
                "no CA certificates found on this system (install ca-certificates, or set \
                 trust_server_certificate: true)"
            ));
        }
        Ok(builder.with_root_certificates(roots).with_no_client_auth())
    }
}

// ---------------------------------------------------------------------------------------------
// Checking an RDB file

/// What `redis-check-rdb` and the file's RESIZEDB records say of a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct RdbFacts {
    /// `redis-check-rdb 7.0.15`.
    pub tool: String,
    /// Keys per database (`db0` …), as the file holds them.
    pub keys: BTreeMap<String, u64>,
}

/// What `redis-check-rdb` printed.
#[derive(Debug, Default, PartialEq)]
struct CheckReport {
    /// Where each database starts (just after its SELECTDB), and its index.
    selects: Vec<(u64, u64)>,
    /// `[info] N keys read`.
    keys_read: Option<u64>,
    /// `RDB looks OK`.
    ok: bool,
    /// The lines from `--- RDB ERROR DETECTED ---` on.
    errors: Vec<String>,
}

fn parse_check(text: &str) -> CheckReport {
    let mut r = CheckReport::default();
    let mut in_error = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with("--- RDB ERROR DETECTED") {
            in_error = true;
            continue;
        }
        if in_error && !line.starts_with("[info]") && !line.is_empty() {
            r.errors.push(line.to_string());
        }
        if line.contains("RDB looks OK") {
            r.ok = true;
        }
        if let Some(n) = line
            .strip_prefix("[info] ")
            .and_then(|l| l.strip_suffix(" keys read"))
        {
            r.keys_read = n.trim().parse().ok();
        }
        if let Some((offset, db)) = line
            .strip_prefix("[offset ")
            .and_then(|l| l.split_once("] Selecting DB ID "))
        {
            if let (Ok(o), Ok(d)) = (offset.parse(), db.trim().parse()) {
                r.selects.push((o, d));
            }
        }
    }
    r
}

/// An RDB length: 6 bits, 14 bits, or 32/64 bits big-endian after a marker byte; and how
/// many bytes it took.
fn rdb_length(b: &[u8]) -> Option<(u64, usize)> {
    let first = *b.first()?;
    match first >> 6 {
        0 => Some((u64::from(first & 0x3f), 1)),
        1 => Some(((u64::from(first & 0x3f) << 8) | u64::from(*b.get(1)?), 2)),
        2 if first == 0x80 => Some((
            u64::from(u32::from_be_bytes(b.get(1..5)?.try_into().ok()?)),
            5,
        )),
        2 if first == 0x81 => Some((u64::from_be_bytes(b.get(1..9)?.try_into().ok()?), 9)),
        _ => None,
    }
}

const OPCODE_RESIZEDB: u8 = 0xfb;

/// The key count of the RESIZEDB record at `offset` (just after a SELECTDB).
fn resizedb_at(file: &mut std::fs::File, offset: u64) -> Result<u64> {
    let mut b = [0u8; 19];
    file.seek(std::io::SeekFrom::Start(offset))?;
    let mut got = 0;
    while got < b.len() {
        match file.read(&mut b[got..])? {
            0 => break,
            n => got += n,
        }
    }
    if got == 0 || b[0] != OPCODE_RESIZEDB {
        bail!("no RESIZEDB record at offset {offset}");
    }
    rdb_length(&b[1..got])
        .map(|(n, _)| n)
        .ok_or_else(|| anyhow!("a bad RESIZEDB record at offset {offset}"))
}

/// The keys per database of a report whose databases start at `selects`, read from `path`;
/// they must add up to `keys_read`.
fn keys_per_db(path: &Path, report: &CheckReport) -> Result<BTreeMap<String, u64>> {
    let keys_read = report
        .keys_read
        .ok_or_else(|| anyhow!("redis-check-rdb did not say how many keys it read"))?;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = BTreeMap::new();
    for &(offset, db) in &report.selects {
        let n = resizedb_at(&mut file, offset)
            .with_context(|| format!("{}: reading the key count of db{db}", path.display()))?;
        if out.insert(format!("db{db}"), n).is_some() {
            bail!("{}: db{db} appears twice", path.display());
        }
    }
    let total: u64 = out.values().sum();
    if total != keys_read {
        bail!(
            "{}: the databases' key counts add up to {total}, redis-check-rdb read {keys_read} keys",
            path.display()
        );
    }
    Ok(out)
}

fn check_tool() -> Result<(PathBuf, String)> {
    tools::find_tool(&["redis-check-rdb"]).map_err(|_| {
        anyhow!("redis-check-rdb is not installed (Debian: apt-get install redis-tools)")
    })
}

/// Reads the whole snapshot with `redis-check-rdb` (structure and checksum), then the keys
/// per database from the file.
pub async fn inspect(path: &Path) -> Result<RdbFacts> {
    let (bin, version) = check_tool()?;
    let mut cmd = tokio::process::Command::new(&bin);
    cmd.arg(path);
    let mut child = tools::spawn(&mut cmd, false)?;
    let stderr = tools::collect_stderr(&mut child);
    let mut stdout = Vec::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_end(&mut stdout)
            .await
            .context("reading redis-check-rdb's report")?;
    }
    let status = child.wait().await.context("waiting for redis-check-rdb")?;
    let stderr = stderr.await.unwrap_or_default();
    let report = parse_check(&String::from_utf8_lossy(&stdout));
    if !status.success() || !report.ok || !report.errors.is_empty() {
        let mut why: Vec<String> = report.errors.iter().take(4).cloned().collect();
        if why.is_empty() && !stderr.is_empty() {
            why.push(tools::summarise(&stderr));
        }
        if why.is_empty() {
            why.push(format!("exit status {status}"));
        }
        bail!("redis-check-rdb: not a sound RDB file: {}", why.join(" | "));
    }
    let keys = keys_per_db(path, &report)?;
    Ok(RdbFacts {
        tool: version,
        keys,
    })
}

/// `backup verify`: the file reads through `redis-check-rdb`, and its key counts add up.
pub async fn verify(path: &Path) -> Result<()> {
    inspect(path).await.map(|_| ())
}

// ---------------------------------------------------------------------------------------------
// restore --into-dir

/// Prepares a data directory from a backup: `dump.rdb` (0600, fsynced) and a minimal
/// `redis.conf` naming it. `dir` must be new or empty. The bytes are hashed as they are
/// copied and must be the manifest's (`sha256`).
pub fn prepare_dir(backup: &Path, sha256: &str, dir: &Path) -> Result<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                bail!(
                    "{} is not empty: restore --into-dir writes only into a new or empty directory",
                    dir.display()
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::backup::private_dir(dir)?;
        }
        Err(e) => bail!("{}: {e}", dir.display()),
    }
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    let dump = dir.join("dump.rdb");
    let partial = dir.join("dump.rdb.partial");
    let res = (|| {
        let mut from = crate::backup::open_nofollow(backup)?;
        let file = crate::backup::create_private(&partial)?;
        let mut w =
            crate::backup::HashingWriter::new(std::io::BufWriter::with_capacity(1 << 20, file));
        std::io::copy(&mut from, &mut w)
            .with_context(|| format!("copying {}", backup.display()))?;
        let (buf, sha, _) = w.finish();
        if sha != sha256 {
            bail!(
                "{}: SHA-256 {} does not match the manifest's (altered while copied)",
                backup.display(),
                &sha[..16]
            );
        }
        let file = buf
            .into_inner()
            .map_err(|e| anyhow!("writing {}: {}", partial.display(), e.error()))?;
        file.sync_all()
            .with_context(|| format!("fsync {}", partial.display()))?;
        std::fs::rename(&partial, &dump)
            .with_context(|| format!("renaming {}", partial.display()))?;
        let conf = format!(
            "# Written by mairie-dba restore --into-dir from {}.\n\
             # Start a server on this snapshot: redis-server {}/redis.conf --port <port>\n\
             # (or copy dump.rdb into the dir of a stopped server). With appendonly yes a server\n\
             # loads its AOF instead: start with appendonly no, then CONFIG SET appendonly yes.\n\
             dir {}\ndbfilename dump.rdb\nappendonly no\n",
            backup
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            dir.display(),
            dir.display()
        );
        crate::backup::write_atomic(&dir.join("redis.conf"), conf.as_bytes())?;
        crate::backup::sync_dir(&dir)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    res.map(|()| dump)
}

// ---------------------------------------------------------------------------------------------
// restore --drill

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Loads `backup` into a throwaway `redis-server` (loopback, a free port, a private temporary
/// directory, no snapshots, no password) and returns the keys per database it holds, with a
/// description of the server. The server and its directory are gone when this returns,
/// whatever happened; a killed drill's server is stopped by its supervisor and its directory
/// removed by the next run.
pub async fn drill(backup: &Path) -> Result<(BTreeMap<String, u64>, String)> {
    let server = tools::find_tool(&["redis-server"])
        .map(|(p, _)| p)
        .map_err(|_| {
            anyhow!("redis-server is not installed (Debian: apt-get install redis-server)")
        })?;
    let backup = backup
        .canonicalize()
        .with_context(|| format!("resolving {}", backup.display()))?;
    let temp = tools::PrivateTemp::new()?;
    // A link, not a copy: the server only reads it, and never writes (no save points; a save
    // would rename a new file over the link, not write through it).
    std::os::unix::fs::symlink(&backup, temp.dir.join("dump.rdb"))
        .context("linking the backup into the drill's directory")?;
    // The primary the server replicates from: a socket of ours that never answers, so that it
    // loads every key of the file and nothing ever replaces them.
    let primary = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let primary_port = primary.local_addr()?.port().to_string();
    let port = free_port()?;
    let log = temp.dir.join("redis.log");
    let mut cmd = tokio::process::Command::new(server);
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--dir")
        .arg(&temp.dir)
        .args([
            "--dbfilename",
            "dump.rdb",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--daemonize", "no", "--protected-mode", "yes"])
        .args(["--replicaof", "127.0.0.1", &primary_port])
        .arg("--logfile")
        .arg(&log);
    let mut child = tools::spawn(&mut cmd, false)?;
    let res = async {
        let deadline = Instant::now() + LOAD_TIMEOUT;
        let mut pause = Duration::from_millis(20);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("the drill's redis-server stopped ({status}) while loading the snapshot");
            }
            if let Ok(text) = info_on(port, "default").await {
                let info = parse_info(&text);
                // Ours, not another program's that took the port after it was chosen.
                let replicates = info.get("replication").and_then(|r| r.get("master_port"));
                if replicates != Some(&primary_port) {
                    bail!("127.0.0.1:{port} answers, but not as the drill's redis-server (another program took the port)");
                }
                let loading = info.get("persistence").and_then(|p| p.get("loading"));
                if loading.is_some_and(|v| v == "0") {
                    return Ok(keyspace_keys(&info));
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "the drill's redis-server did not load the snapshot within {} s",
                    LOAD_TIMEOUT.as_secs()
                );
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }
    .await;
    child.stop().await;
    drop(primary);
    let res = res.map_err(|e| {
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let last: Vec<&str> = tail.lines().rev().take(3).collect();
        let last: Vec<&str> = last.into_iter().rev().collect();
        if last.is_empty() {
            e
        } else {
            e.context(format!("its log ends: {}", last.join(" | ")))
        }
    });
    drop(temp);
    res.map(|keys| (keys, format!("throwaway redis-server on 127.0.0.1:{port}")))
}

/// `INFO section` of the drill's server.
async fn info_on(port: u16, section: &str) -> Result<String> {
    let tcp = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    .map_err(|_| anyhow!("no answer"))??;
    let mut raw = Raw {
        io: BufStream::new(Box::new(tcp)),
    };
    match raw.command(&[b"INFO", section.as_bytes()]).await? {
        Reply::Bulk(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        Reply::Simple(s) => Ok(s),
    }
}

/// `db0:keys=12,…` lines → {"db0": 12}.
fn keyspace_keys(info: &engine_redis::Info) -> BTreeMap<String, u64> {
    info.get("keyspace")
        .map(|ks| {
            ks.iter()
                .filter_map(|(db, v)| parse_keyspace(v).get("keys").map(|n| (db.clone(), *n)))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdb_lengths_decode() {
        assert_eq!(rdb_length(&[0x11]), Some((17, 1)));
        assert_eq!(rdb_length(&[0x43, 0xe8]), Some((1000, 2)));
        assert_eq!(rdb_length(&[0x80, 0, 1, 0, 0]), Some((65536, 5)));
        assert_eq!(
            rdb_length(&[0x81, 0, 0, 0, 1, 0, 0, 0, 0]),
            Some((1 << 32, 9))
        );
        assert_eq!(rdb_length(&[0xc0]), None, "an encoded integer is no length");
        assert_eq!(rdb_length(&[0x43]), None, "cut short");
    }

    #[test]
    fn check_reports_are_read() {
        let ok =
            "[offset 0] Checking RDB file dump.rdb\n[offset 27] AUX FIELD redis-ver = '7.0.15'\n\
                  [offset 82] Selecting DB ID 0\n[offset 18868] Selecting DB ID 3\n\
                  [offset 19158] Checksum OK\n[offset 19158] \\o/ RDB looks OK! \\o/\n\
                  [info] 1017 keys read\n[info] 3 expires\n[info] 2 already expired\n";
        let r = parse_check(ok);
        assert_eq!(r.selects, vec![(82, 0), (18868, 3)]);
        assert_eq!(r.keys_read, Some(1017));
        assert!(r.ok && r.errors.is_empty());
        let bad = "[offset 82] Selecting DB ID 0\n--- RDB ERROR DETECTED ---\n\
                   [offset 19176] RDB CRC error\n[additional info] While doing: check-sum\n\
                   [info] 1017 keys read\n";
        let r = parse_check(bad);
        assert!(!r.ok);
        assert_eq!(
            r.errors,
            vec![
                "[offset 19176] RDB CRC error",
                "[additional info] While doing: check-sum"
            ]
        );
    }

    #[test]
    fn a_snapshot_is_saved_only_once_the_counter_moved_with_status_ok() {
        let before = Persistence {
            in_progress: false,
            lastsave: 100,
            status_ok: true,
            saves: Some(4),
        };
        let p = |in_progress, lastsave, status_ok, saves| Persistence {
            in_progress,
            lastsave,
            status_ok,
            saves,
        };
        assert_eq!(
            save_state(&before, &p(true, 100, true, Some(4)), true),
            SaveState::Running
        );
        assert_eq!(
            save_state(&before, &p(false, 100, true, Some(5)), true),
            SaveState::Saved
        );
        assert_eq!(
            save_state(&before, &p(false, 100, false, Some(4)), true),
            SaveState::Failed
        );
        // Not started yet (scheduled behind an AOF rewrite): an old error is not ours.
        assert_eq!(
            save_state(&before, &p(false, 100, false, Some(4)), false),
            SaveState::Running
        );
        // Without rdb_saves (Redis 6), LASTSAVE must move.
        let old = Persistence {
            saves: None,
            ..before.clone()
        };
        assert_eq!(
            save_state(&old, &p(false, 100, true, None), true),
            SaveState::Running
        );
        assert_eq!(
            save_state(&old, &p(false, 101, true, None), true),
            SaveState::Saved
        );
    }

    #[test]
    fn persistence_is_read_from_info() {
        let text = "# Persistence\r\nloading:0\r\nrdb_changes_since_last_save:0\r\n\
                    rdb_bgsave_in_progress:0\r\nrdb_last_save_time:1796554353\r\n\
                    rdb_last_bgsave_status:err\r\nrdb_saves:3\r\n";
        assert_eq!(
            parse_persistence(text).unwrap(),
            Persistence {
                in_progress: false,
                lastsave: 1796554353,
                status_ok: false,
                saves: Some(3)
            }
        );
        assert!(parse_persistence("# Server\r\nx:1\r\n").is_err());
    }

    #[test]
    fn loopback_hosts() {
        for h in ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.1.1"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["10.0.0.1", "db.example", "192.168.1.2"] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn keyspaces_become_key_counts() {
        let text = "# Keyspace\r\ndb0:keys=1000,expires=0,avg_ttl=0\r\ndb3:keys=17,expires=3,avg_ttl=0\r\n";
        let k = keyspace_keys(&parse_info(text));
        assert_eq!(k.get("db0"), Some(&1000));
        assert_eq!(k.get("db3"), Some(&17));
        assert_eq!(k.len(), 2);
    }

    /// A stream cut in chunks that split the mark still stops exactly at it.
    #[tokio::test]
    async fn the_eof_mark_ends_the_snapshot_wherever_the_reads_cut() {
        let mark = b"0123456789abcdef0123456789abcdef01234567";
        let mut stream = b"REDIS0010 payload".to_vec();
        stream.extend_from_slice(mark);
        stream.extend_from_slice(b"+PING\r\n");
        let (client, mut server) = tokio::io::duplex(7);
        let feeder = tokio::spawn(async move {
            for chunk in stream.chunks(5) {
                // What follows the mark is never read: the reader is gone by then.
                if server.write_all(chunk).await.is_err() {
                    break;
                }
            }
        });
        let mut raw = Raw {
            io: BufStream::with_capacity(3, 3, Box::new(client)),
        };
        let mut out = Vec::new();
        copy_until_mark(&mut raw, mark, &mut out).await.unwrap();
        assert_eq!(out, b"REDIS0010 payload");
        drop(raw);
        feeder.await.unwrap();
    }
}
