//! The engines' own command-line tools (pg_dump, pg_restore, mariadb-dump, mariadb): finding
//! the right binary, passing secrets without argv, streaming their output, and reporting
//! their stderr when they fail.
//!
//! A password reaches a child through its environment (`PGPASSWORD`) or a 0600 option file
//! in a private temporary directory (`--defaults-extra-file`), never its command line, where
//! `ps` would show it.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};

/// At most this much of a tool's stderr is kept for the error message.
const STDERR_KEEP: usize = 8 * 1024;

/// The newest `name` whose major version is at least `min_major`: from PostgreSQL's
/// versioned directories (`/usr/lib/postgresql/<major>/bin`) first, then PATH. Only a PATH
/// entry is run (`--version`) to learn its major; Debian's `pg_wrapper` on PATH is skipped,
/// as it only dispatches to the versioned directories already listed (and costs a Perl
/// start-up per call).
pub fn find_pg_tool(name: &str, min_major: u32) -> Result<PathBuf> {
    find_pg_tool_major(name, min_major).map(|(_, path)| path)
}

/// [`find_pg_tool`], with the major version of the tool found.
pub fn find_pg_tool_major(name: &str, min_major: u32) -> Result<(u32, PathBuf)> {
    let mut candidates: Vec<(u32, PathBuf)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/usr/lib/postgresql") {
        for e in rd.flatten() {
            let major = e.file_name().to_string_lossy().parse::<u32>().ok();
            let p = e.path().join("bin").join(name);
            if let (Some(m), true) = (major, p.is_file()) {
                candidates.push((m, p));
            }
        }
    }
    if let Some(p) = which(name) {
        let real = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
        let known = candidates
            .iter()
            .any(|(_, c)| std::fs::canonicalize(c).is_ok_and(|c| c == real));
        if !known && real.file_name().is_none_or(|n| n != "pg_wrapper") {
            if let Some(m) = tool_version(&p).ok().and_then(|v| pg_major(&v)) {
                candidates.push((m, p));
            }
        }
    }
    candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
    match candidates.iter().find(|(m, _)| *m >= min_major) {
        Some((major, path)) => Ok((*major, path.clone())),
        None => {
            let found: Vec<String> = candidates
                .iter()
                .map(|(m, p)| format!("{} ({m})", p.display()))
                .collect();
            bail!(
                "no {name} of version {min_major} or newer (found: {}); install postgresql-client-{min_major}",
                if found.is_empty() { "none".to_string() } else { found.join(", ") }
            )
        }
    }
}

/// A tool's `--version` line, for the manifest (run while the tool itself works).
pub async fn version_line(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match Command::new(path).arg("--version").output().await {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => name,
    }
}

/// The first of `names` on PATH, with its version line.
pub fn find_tool(names: &[&str]) -> Result<(PathBuf, String)> {
    for n in names {
        if let Some(p) = which(n) {
            let v = tool_version(&p).unwrap_or_else(|_| n.to_string());
            return Ok((p, v));
        }
    }
    bail!(
        "none of {} is installed (Debian: apt-get install mariadb-client)",
        names.join(", ")
    )
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn tool_version(p: &Path) -> Result<String> {
    let out = std::process::Command::new(p).arg("--version").output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `pg_dump (PostgreSQL) 15.18 (Debian …)` -> 15.
pub fn pg_major(version_line: &str) -> Option<u32> {
    version_line.split_whitespace().find_map(|w| {
        w.split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok())
            .filter(|m| *m >= 9)
    })
}

/// A private directory for option files, removed with everything in it on drop.
pub struct PrivateTemp {
    pub dir: PathBuf,
}

impl PrivateTemp {
    pub fn new() -> Result<PrivateTemp> {
        remove_orphans(&std::env::temp_dir());
        let dir = std::env::temp_dir().join(format!(
            "mairie-dba-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(PrivateTemp { dir })
    }

    /// A MySQL option file with the client password, mode 0600.
    pub fn mysql_options(&self, password: Option<&str>) -> Result<PathBuf> {
        let p = self.dir.join("client.cnf");
        let mut f = crate::backup::create_private(&p)?;
        let mut text = String::from("[client]\n");
        if let Some(pw) = password {
            let escaped = pw.replace('\\', "\\\\").replace('"', "\\\"");
            text.push_str(&format!("password=\"{escaped}\"\n"));
        }
        f.write_all(text.as_bytes())?;
        Ok(p)
    }
}

/// Removes the private directories of mairie-dba processes that died without cleaning up
/// (`kill -9` in the middle of a dump): they may hold a password.
fn remove_orphans(tmp: &Path) {
    let Ok(rd) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("mairie-dba-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let ours = e.metadata().map(|m| {
            use std::os::unix::fs::MetadataExt;
            // SAFETY: getuid has no preconditions.
            m.is_dir() && m.uid() == unsafe { libc::getuid() }
        });
        if ours.unwrap_or(false)
            && pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl Drop for PrivateTemp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts a tool with piped stdout and stderr (and stdin when asked), under a supervisor
/// ([`supervise`]) that stops the tool and everything it started (pg_restore's parallel
/// workers) when this process stops, dies, or drops the returned handle; the child's
/// environment holds no password variable of the config but the one it was given.
pub fn spawn(cmd: &mut Command, stdin: bool) -> Result<Supervised> {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    let mut wrapped = Command::from(supervised(cmd.as_std())?);
    wrapped
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .kill_on_drop(false);
    let child = wrapped
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    if let Some(out) = &child.stdout {
        widen_pipe(out.as_raw_fd());
    }
    if let Some(input) = &child.stdin {
        widen_pipe(input.as_raw_fd());
    }
    Ok(Supervised::new(child))
}

/// The hidden first argument that makes the binary a supervisor.
pub const SUPERVISE_ARG: &str = "__supervise";

/// `cmd` run through this binary's supervisor, with the config's password variables
/// removed from its environment (except those `cmd` sets itself).
pub fn supervised(cmd: &std::process::Command) -> Result<std::process::Command> {
    let me = std::env::current_exe().context("finding this program to supervise a tool")?;
    let mut out = std::process::Command::new(me);
    out.arg(SUPERVISE_ARG)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    let set: Vec<&std::ffi::OsStr> = cmd.get_envs().map(|(k, _)| k).collect();
    // The tool's own variables (MAIRIE_*: passwords of every target, the config's path)
    // mean nothing to a child.
    let ours = std::env::vars_os()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .filter(|k| k.starts_with("MAIRIE_"));
    for var in secret_vars().into_iter().chain(ours) {
        if !set.iter().any(|k| *k == std::ffi::OsStr::new(&var)) {
            out.env_remove(&var);
        }
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => out.env(k, v),
            None => out.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        out.current_dir(dir);
    }
    Ok(out)
}

fn secret_registry() -> &'static std::sync::Mutex<std::collections::BTreeSet<String>> {
    static VARS: std::sync::OnceLock<std::sync::Mutex<std::collections::BTreeSet<String>>> =
        std::sync::OnceLock::new();
    VARS.get_or_init(Default::default)
}

/// Notes an environment variable that holds a secret (a target's `password_env`): no child
/// inherits it unless given it explicitly.
pub fn register_secret_var(name: &str) {
    secret_registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(name.to_string());
}

fn secret_vars() -> Vec<String> {
    let mut v: Vec<String> = secret_registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect();
    // The libpq and MySQL client variables are passed explicitly when a child needs them.
    v.extend(["PGPASSWORD", "MYSQL_PWD"].map(String::from));
    v
}

fn live() -> &'static std::sync::Mutex<Vec<u32>> {
    static LIVE: std::sync::OnceLock<std::sync::Mutex<Vec<u32>>> = std::sync::OnceLock::new();
    LIVE.get_or_init(Default::default)
}

/// A supervised tool: dropping it before it has been waited for tells the supervisor to
/// stop the tool (SIGTERM), which then stops the tool's whole process group.
pub struct Supervised {
    child: Child,
    pid: Option<u32>,
}

impl Supervised {
    fn new(child: Child) -> Supervised {
        let pid = child.id();
        if let Some(p) = pid {
            live().lock().unwrap_or_else(|e| e.into_inner()).push(p);
        }
        Supervised { child, pid }
    }

    pub async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        let status = self.child.wait().await?;
        self.forget();
        Ok(status)
    }

    /// Stops the tool (and its process group) through its supervisor, and waits for it.
    pub async fn stop(&mut self) {
        if let Some(pid) = self.pid {
            if matches!(self.child.try_wait(), Ok(None)) {
                // SAFETY: kill on our own child, not yet reaped.
                unsafe {
                    libc::kill(pid as i32, libc::SIGTERM);
                }
            }
            let _ = self.wait().await;
        }
    }

    fn forget(&mut self) {
        if let Some(p) = self.pid.take() {
            live()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|x| *x != p);
        }
    }
}

impl std::ops::Deref for Supervised {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl std::ops::DerefMut for Supervised {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            if matches!(self.child.try_wait(), Ok(None)) {
                // SAFETY: kill on our own child, not yet reaped (try_wait said running).
                unsafe {
                    libc::kill(pid as i32, libc::SIGTERM);
                }
                // Left in the live list: `stop_children` waits for it.
            } else {
                self.forget();
            }
        }
    }
}

/// After a stop (Ctrl-C, SIGTERM): tells every supervised tool still running to stop and
/// waits up to `within` for them to be gone. Returns how many were still there then.
pub async fn stop_children(within: std::time::Duration) -> usize {
    let deadline = std::time::Instant::now() + within;
    loop {
        let pids: Vec<u32> = live().lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut left = Vec::new();
        for p in pids {
            // SAFETY: waitpid/kill on our own children; an already reaped pid gives ECHILD.
            let r = unsafe { libc::waitpid(p as i32, std::ptr::null_mut(), libc::WNOHANG) };
            if r == 0 {
                unsafe {
                    libc::kill(p as i32, libc::SIGTERM);
                }
                left.push(p);
            }
        }
        *live().lock().unwrap_or_else(|e| e.into_inner()) = left.clone();
        if left.is_empty() || std::time::Instant::now() >= deadline {
            return left.len();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The supervisor (`mairie-dba __supervise PROGRAM ARGS…`): runs the tool in its own process
/// group and stays between it and this program. When told to stop (SIGTERM, SIGINT, SIGHUP)
/// or when this program dies (even by SIGKILL: the kernel sends it SIGTERM then), it kills
/// the tool's whole group — pg_restore's workers included — and waits for the tool. When
/// the tool ends, whatever it left in its group is killed too. Returns the exit code.
pub fn supervise(args: &[std::ffi::OsString]) -> i32 {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let Some((program, rest)) = args.split_first() else {
        eprintln!("error: {SUPERVISE_ARG} needs a program");
        return 2;
    };
    // SAFETY: plain libc calls on this process's own signal state, before any thread.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        let parent = libc::getppid();
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
        if libc::getppid() != parent {
            return 1; // the parent died before the death signal was armed
        }
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGCHLD] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let child = std::process::Command::new(program)
        .args(rest)
        .process_group(0)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: starting {}: {e}", program.to_string_lossy());
            return 127;
        }
    };
    let pid = child.id() as i32;
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: sigwait on a set of signals blocked above.
        unsafe {
            libc::sigwait(&set, &mut sig);
        }
        if sig == libc::SIGCHLD {
            let mut status = 0;
            // SAFETY: waitpid on our one child.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                // SAFETY: the group may hold workers the tool left behind.
                unsafe {
                    libc::killpg(pid, libc::SIGKILL);
                }
                let st = std::process::ExitStatus::from_raw(status);
                return st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0));
            }
            continue;
        }
        // Told to stop, or the parent died: the whole group goes, then the tool is reaped.
        // SAFETY: killpg/waitpid on our child's group and our child.
        unsafe {
            libc::killpg(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        return 128 + sig;
    }
}

/// Grows a pipe from the default 64 KiB to 1 MiB where the system allows it: a dump or a
/// restore then stops less often to wait for the other side. Best effort.
fn widen_pipe(fd: std::os::fd::RawFd) {
    // SAFETY: fcntl on a file descriptor this process owns; a refusal changes nothing.
    unsafe {
        libc::fcntl(fd, libc::F_SETPIPE_SZ, 1 << 20);
    }
}

/// Collects a tool's stderr in the background, keeping the end (where the error is).
pub fn collect_stderr(child: &mut Child) -> tokio::task::JoinHandle<String> {
    let stderr = child.stderr.take();
    tokio::spawn(async move {
        let Some(mut s) = stderr else {
            return String::new();
        };
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            if all.len() > 4 * STDERR_KEEP {
                all.drain(..all.len() - STDERR_KEEP);
            }
        }
        let text = String::from_utf8_lossy(&all).into_owned();
        let start = text.len().saturating_sub(STDERR_KEEP);
        text[text.ceil_char_boundary(start)..].trim().to_string()
    })
}

/// How many of the last lines of a tool's stderr an error quotes, and how much of each.
const SUMMARY_LINES: usize = 4;
const SUMMARY_LINE_CHARS: usize = 200;

/// How a tool's diagnostics start; other lines of its stderr (the mariadb client echoing
/// the statement it failed on, rows included; PostgreSQL's `CONTEXT` quoting a row) are not
/// quoted.
const DIAGNOSTIC_PREFIXES: &[&str] = &[
    "ERROR",
    "error:",
    "FATAL",
    "PANIC",
    "WARNING",
    "DETAIL:",
    "HINT:",
    "pg_restore:",
    "pg_dump:",
    "pg_basebackup:",
    "pg_verifybackup:",
    "mariadb:",
    "mysql:",
    "mysqldump:",
    "mariadb-dump:",
    "mariadb-backup:",
    "zstd:",
    "Msg ",
];

/// The end of a tool's stderr as an error quotes it: its last few diagnostic lines, each cut
/// short with control characters escaped; lines that are not diagnostics (echoed statements
/// and their rows) are left out, and so is what follows `CONTEXT:` or a quoted `line N:`.
pub fn summarise(stderr: &str) -> String {
    let all: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut lines: Vec<&str> = all
        .iter()
        .copied()
        .filter(|l| DIAGNOSTIC_PREFIXES.iter().any(|p| l.starts_with(p)))
        .map(|l| match l.find("CONTEXT:") {
            Some(i) => l[..i].trim_end(),
            None => l,
        })
        .collect();
    if lines.is_empty() {
        // No line looks like a diagnostic: the last one, cut, is all that is said.
        lines = all.last().copied().into_iter().collect();
    }
    let left_out = all.len() - lines.len().min(all.len());
    let skipped = lines.len().saturating_sub(SUMMARY_LINES);
    let mut out: Vec<String> = lines[skipped..]
        .iter()
        .map(|l| {
            let mut s: String = l
                .chars()
                .take(SUMMARY_LINE_CHARS)
                .flat_map(|c| {
                    if c.is_control() {
                        c.escape_default().collect::<Vec<_>>()
                    } else {
                        vec![c]
                    }
                })
                .collect();
            if l.chars().count() > SUMMARY_LINE_CHARS {
                s.push_str(&format!("… ({} bytes)", l.len()));
            }
            s
        })
        .collect();
    if skipped + left_out > 0 {
        out.insert(
            0,
            format!("({} other line(s) not shown)", skipped + left_out),
        );
    }
    out.join(" | ")
}

/// Copies a child's stdout into `sink` in large blocks (the sink hashes, compresses, writes).
pub async fn pump<R: AsyncRead + Unpin>(mut from: R, sink: &mut impl Write) -> Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = from
            .read(&mut buf)
            .await
            .context("reading the tool's output")?;
        if n == 0 {
            return Ok(total);
        }
        sink.write_all(&buf[..n])
            .context("writing the backup file")?;
        total += n as u64;
    }
}

/// Waits for a tool; a non-zero exit becomes an error carrying its stderr.
pub async fn finish(
    mut child: Supervised,
    stderr: tokio::task::JoinHandle<String>,
    what: &str,
) -> Result<()> {
    let status = child
        .wait()
        .await
        .with_context(|| format!("waiting for {what}"))?;
    let err = stderr.await.unwrap_or_default();
    if !status.success() {
        let code = status
            .code()
            .map(|c| format!("exit code {c}"))
            .unwrap_or_else(|| "killed by a signal".into());
        if err.is_empty() {
            bail!("{what} failed ({code})");
        }
        return Err(anyhow!("{what} failed ({code}): {}", summarise(&err)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tools_stderr_is_summarised_short() {
        // The mariadb client echoes the statement it failed on, rows included.
        let echo = "(17336,'e900ad Estève-row-data'),\n".repeat(1000);
        let text = format!(
            "--------------\nINSERT INTO `big` VALUES {echo}--------------\n\
             ERROR 2006 (HY000) at line 39: Server has gone away\n"
        );
        assert_eq!(
            summarise(&text),
            "(1002 other line(s) not shown) | ERROR 2006 (HY000) at line 39: Server has gone away"
        );
        // PostgreSQL's CONTEXT quotes the row: cut there.
        let pg = "pg_restore: error: COPY failed for table \"big\": ERROR:  value too long \
                  CONTEXT:  COPY big, line 3: \"7 Estève-row-data\"";
        assert_eq!(
            summarise(pg),
            "pg_restore: error: COPY failed for table \"big\": ERROR:  value too long"
        );
        // A long diagnostic is cut; escapes are shown escaped.
        let long = format!("ERROR: {}", "x".repeat(5000));
        assert!(summarise(&long).len() < 300);
        assert_eq!(summarise("error: bad \u{1b}[2J"), "error: bad \\u{1b}[2J");
        // Nothing that looks like a diagnostic: the last line, cut.
        assert_eq!(summarise("a\nb"), "(1 other line(s) not shown) | b");
    }

    #[test]
    fn majors_from_version_lines() {
        assert_eq!(
            pg_major("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(pg_major("pg_restore (PostgreSQL) 17.2"), Some(17));
        assert_eq!(pg_major("nothing here"), None);
    }

    #[test]
    fn mysql_option_files_are_private_and_escaped() {
        let t = PrivateTemp::new().unwrap();
        let p = t.mysql_options(Some("p\"a\\ss")).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "[client]\npassword=\"p\\\"a\\\\ss\"\n"
        );
        let dir = t.dir.clone();
        drop(t);
        assert!(!dir.exists(), "removed with its secrets");
    }

    #[test]
    fn directories_of_dead_processes_are_removed() {
        let base =
            std::env::temp_dir().join(format!("mairie-dba-orphans-test-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        // pid 999999999 does not exist; our own pid does.
        let dead = base.join("mairie-dba-999999999-1");
        let alive = base.join(format!("mairie-dba-{}-1", std::process::id()));
        let foreign = base.join("other-999999999-1");
        for d in [&dead, &alive, &foreign] {
            std::fs::create_dir_all(d).unwrap();
        }
        remove_orphans(&base);
        assert!(!dead.exists() && alive.exists() && foreign.exists());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
