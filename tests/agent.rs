//! A site's agent against real servers: `backup --push` on the PostgreSQL dev server (the
//! deposit after the backup, a configuration error before it, a failed push that keeps the
//! backup), and `agent push` to an rsync destination through a real `sshd` this test starts
//! on a loopback port of its own, whose deposit the monitor then validates. STATUS.json's
//! arrival is watched with inotify: it must appear last, and by a rename.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn sha_of(p: &Path) -> String {
    common::monitor::sha(&std::fs::read(p).unwrap())
}

/// The backups (with their manifests) in the backup directory, bookkeeping aside.
fn backups_in(dir: &Path) -> Vec<String> {
    common::monitor::files(dir)
        .into_iter()
        .filter(|n| !n.starts_with('.') && n != "STATUS.json")
        .collect()
}

/// Sleeps into the next wall-clock second, so that the next backup gets a new file name.
fn next_second() {
    let now = chrono::Utc::now();
    let left = 1_000 - now.timestamp_subsec_millis().min(999) as u64;
    std::thread::sleep(Duration::from_millis(left + 20));
}

/// The config: the env's PostgreSQL target backed up into `backups/`, the agent's section
/// (`agent_extra` after its identity), and a monitor whose one job expects this database
/// once, five minutes ago.
fn configure(env: &Env, agent: Option<&str>) {
    let db = env.db().name();
    let d = |p: &str| env.dir.join(p).display().to_string();
    let due = (chrono::Utc::now() - chrono::Duration::minutes(5))
        .format("%Y-%m-%dT%H:%M:00Z")
        .to_string();
    let agent = agent
        .map(|a| format!("agent:\n  company: ville\n  city: marseille\n  site: centre\n{a}"))
        .unwrap_or_default();
    env.write_global(&format!(
        "backup:\n  postgres:\n    dir: {}\n{agent}\
         monitor:\n  deposit_dir: {}\n  validated_dir: {}\n  history: sqlite:{}\n  jobs:\n\
         \x20   - {{id: centre-db, company: ville, city: marseille, site: centre, database: {db}, engine: postgres, frequency: once, at: \"{due}\"}}\n",
        d("backups"),
        d("deposits"),
        d("validated"),
        d("monitor.db"),
    ));
}

/// The agent's `deposit:`, a local directory of the test's.
fn local_deposit(env: &Env, name: &str) -> String {
    format!("  deposit: {}\n", env.dir.join(name).display())
}

fn site_dir(env: &Env) -> PathBuf {
    env.dir.join("deposits/ville/marseille/centre")
}

fn status_json(env: &Env) -> Value {
    serde_json::from_slice(&std::fs::read(site_dir(env).join("STATUS.json")).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// backup --push

#[test]
fn backup_push_deposits_what_it_just_backed_up() {
    let env = Env::pg_with_schema();
    configure(&env, Some(&local_deposit(&env, "deposits")));
    let r = env.run(&["backup", "--push", "--format", "json"]);
    r.success();
    let v = r.json();
    let file = v["backups"][0]["file"].as_str().unwrap().to_string();
    assert_eq!(v["push"]["status"], "success", "{v:#}");
    let pushed = &v["push"]["databases"][0];
    assert_eq!(
        (
            pushed["file"].as_str(),
            pushed["status"].as_str(),
            &pushed["deposited"]
        ),
        (Some(file.as_str()), Some("success"), &Value::Bool(true)),
        "{v:#}"
    );
    // The bytes just backed up, their manifest, and a report naming them.
    let db = env.db().name().to_string();
    let deposited = site_dir(&env).join(&db).join(&file);
    assert_eq!(
        sha_of(&deposited),
        sha_of(&env.dir.join("backups").join(&file))
    );
    assert!(site_dir(&env)
        .join(&db)
        .join(format!("{file}.json"))
        .exists());
    let status = status_json(&env);
    assert_eq!(status["databases"][0]["file"], file.as_str());
    assert_eq!(status["databases"][0]["sha256"], v["backups"][0]["sha256"]);
    // The table output says both.
    next_second();
    let r = env.run(&["backup", "--push"]);
    r.success()
        .stdout_has("Pushed to the central monitor")
        .stdout_has("STATUS.json of 1 database(s) written to");
    // The monitor validates what was pushed.
    let r = env.run(&["monitor", "scan", "--format", "json"]);
    r.success();
    assert_eq!(r.json()["judged"][0]["status"], "OK", "{}", r.stdout);
}

#[test]
fn backup_push_without_an_agent_section_is_refused_before_any_backup() {
    let env = Env::pg_with_schema();
    configure(&env, None);
    let r = env.run(&["backup", "--push"]);
    r.code(2)
        .stderr_has("--push")
        .stderr_has("no `agent:` section");
    let r = env.run(&["backup", "--push", "--format", "json"]);
    r.code(2);
    let v = r.json();
    assert_eq!(v["status"], "failed");
    assert!(v["error"].as_str().unwrap().contains("agent:"), "{v:#}");
    assert!(
        backups_in(&env.dir.join("backups")).is_empty(),
        "a backup was taken: {:?}",
        backups_in(&env.dir.join("backups"))
    );
    // --push makes no sense with --prune-only.
    env.run(&["backup", "--prune-only", "--push"]).code(2);
}

#[test]
fn a_failed_push_fails_backup_push_and_keeps_the_backup() {
    let env = Env::pg_with_schema();
    let db = env.db().name().to_string();
    configure(&env, Some(&local_deposit(&env, "deposits")));
    // The database's deposit directory is a file: its backup cannot be deposited; the
    // report can, and says so.
    std::fs::create_dir_all(site_dir(&env)).unwrap();
    std::fs::write(site_dir(&env).join(&db), "in the way").unwrap();
    let r = env.run(&["backup", "--push", "--format", "json"]);
    r.code(1)
        .stderr_has("could not be deposited")
        .stderr_has("the backups themselves are kept");
    let v = r.json();
    assert_eq!(v["status"], "failed");
    assert_eq!(v["backups"][0]["status"], "success", "{v:#}");
    assert_eq!(v["push"]["status"], "failed", "{v:#}");
    assert_eq!(v["push"]["databases"][0]["deposited"], false);
    let file = v["backups"][0]["file"].as_str().unwrap().to_string();
    let status = status_json(&env);
    assert_eq!(status["databases"][0]["status"], "failed");
    assert!(status["databases"][0]["error"]
        .as_str()
        .unwrap()
        .contains("not deposited"));
    // The deposit itself is a file: nothing can be pushed, not even the report.
    next_second();
    configure(&env, Some(&local_deposit(&env, "blocked")));
    std::fs::write(env.dir.join("blocked"), "not a directory").unwrap();
    let r = env.run(&["backup", "--push", "--format", "json"]);
    r.code(1)
        .stderr_has("the push to the central monitor failed")
        .stderr_has("the backups themselves are kept");
    let v = r.json();
    assert_eq!(v["push"]["status"], "failed", "{v:#}");
    assert!(
        v["push"]["error"].as_str().unwrap().contains("blocked"),
        "{v:#}"
    );
    let second = v["backups"][0]["file"].as_str().unwrap().to_string();
    assert_ne!(file, second);
    // Both backups are there, whole: verify reads them through.
    let kept = backups_in(&env.dir.join("backups"));
    for f in [&file, &second] {
        assert!(kept.contains(f), "{f} not kept: {kept:?}");
        assert!(
            kept.contains(&format!("{f}.json")),
            "{f}'s manifest not kept"
        );
    }
    env.run(&["backup", "verify", "--all"]).success();
}

#[test]
fn backup_push_after_a_failed_backup_tells_the_monitor_why() {
    let env = Env::pg_with_schema();
    configure(&env, Some(&local_deposit(&env, "deposits")));
    // A database that is not there: the dump fails, the push still goes.
    env.write_pg_config("mairie_dba_no_such_database", "");
    let r = env.run(&["backup", "--push", "--format", "json"]);
    r.code(1);
    let v = r.json();
    assert_eq!(v["backups"][0]["status"], "failed", "{v:#}");
    assert_eq!(v["push"]["status"], "success", "{v:#}");
    let line = &status_json(&env)["databases"][0];
    assert_eq!(
        (line["database"].as_str(), line["status"].as_str()),
        (Some("mairie_dba_no_such_database"), Some("failed")),
        "{line:#}"
    );
    let error = line["error"].as_str().unwrap();
    assert!(
        error.contains("the last run failed") && error.contains("mairie_dba_no_such_database"),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------------
// rsync over ssh, through a real sshd

/// An `sshd` of this test's own on a free loopback port: its host key, its configuration,
/// one authorised client key (the current user's). Killed when dropped, whatever happened.
struct Sshd {
    child: Child,
    dir: PathBuf,
    port: u16,
    user: String,
}

fn keygen(path: &Path, comment: &str) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen is needed (Debian package openssh-client; scripts/dev-services.sh installs it)");
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Sshd {
    fn start(base: &Path) -> Sshd {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.exists(),
            "/usr/sbin/sshd not found: this test starts a real sshd (Debian package \
             openssh-server; scripts/dev-services.sh installs it)"
        );
        let dir = base.join("sshd");
        std::fs::create_dir_all(&dir).unwrap();
        keygen(&dir.join("host_key"), "mairie-dba test host");
        keygen(&dir.join("client_key"), "mairie-dba test agent");
        std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 && !Path::new("/run/sshd").exists() {
            // sshd run by root needs its privilege separation directory, which Debian's
            // service creates when it starts (it is not started here).
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let config = dir.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\n\
                     AuthorizedKeysFile {}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                     PermitRootLogin prohibit-password\nAllowUsers {user}\nPrintMotd no\n\
                     LogLevel VERBOSE\n",
                    dir.join("host_key").display(),
                    dir.join("sshd.pid").display(),
                    dir.join("authorized_keys").display(),
                ),
            )
            .unwrap();
            let log = dir.join("sshd.log");
            let mut child = Command::new(sshd)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("starting /usr/sbin/sshd");
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Sshd {
                        child,
                        dir,
                        port,
                        user,
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(&log).unwrap_or_default();
            if !last_log.contains("Address already in use") {
                break;
            }
        }
        panic!("sshd did not start on a loopback port:\n{last_log}");
    }

    /// rsync's `-e`: this server, this key, its host key checked.
    fn ssh_command(&self) -> String {
        let known = self.dir.join("known_hosts");
        let host_key = std::fs::read_to_string(self.dir.join("host_key.pub")).unwrap();
        let mut parts = host_key.split_whitespace();
        let (kind, key) = (parts.next().unwrap(), parts.next().unwrap());
        std::fs::write(&known, format!("[127.0.0.1]:{} {kind} {key}\n", self.port)).unwrap();
        format!(
            "ssh -p {} -i {} -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes",
            self.port,
            self.dir.join("client_key").display(),
            known.display()
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What happens in directories, by inotify: (directory label, event mask, name), in order.
struct Watch {
    fd: i32,
    labels: HashMap<i32, String>,
}

const WATCHED: u32 = libc::IN_CREATE
    | libc::IN_MODIFY
    | libc::IN_CLOSE_WRITE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_DELETE;

impl Watch {
    fn new() -> Watch {
        // SAFETY: plain system call; the descriptor is ours and closed on drop.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(
            fd >= 0,
            "inotify_init1: {}",
            std::io::Error::last_os_error()
        );
        Watch {
            fd,
            labels: HashMap::new(),
        }
    }

    fn add(&mut self, dir: &Path, label: &str) {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path and our descriptor.
        let wd = unsafe { libc::inotify_add_watch(self.fd, path.as_ptr(), WATCHED) };
        assert!(wd >= 0, "inotify_add_watch {}", dir.display());
        self.labels.insert(wd, label.to_string());
    }

    fn events(&self) -> Vec<(String, u32, String)> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            // SAFETY: reading into a buffer we own, of its length.
            let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            let mut at = 0usize;
            while at + 16 <= n as usize {
                let word =
                    |i: usize| u32::from_ne_bytes(buf[at + i..at + i + 4].try_into().unwrap());
                let (wd, mask, len) = (word(0) as i32, word(4), word(12) as usize);
                let name = &buf[at + 16..at + 16 + len];
                let name = String::from_utf8_lossy(name)
                    .trim_end_matches('\0')
                    .to_string();
                assert_eq!(mask & libc::IN_Q_OVERFLOW, 0, "inotify queue overflow");
                out.push((
                    self.labels.get(&wd).cloned().unwrap_or_default(),
                    mask,
                    name,
                ));
                at += 16 + len;
            }
        }
        out
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // SAFETY: closing our own descriptor once.
        unsafe { libc::close(self.fd) };
    }
}

fn agent_over_ssh(sshd: &Sshd, env: &Env, extra_options: &[&str]) -> String {
    let mut options = vec!["--archive", "--mkpath"];
    options.extend_from_slice(extra_options);
    let ssh = sshd.ssh_command();
    options.extend(["-e", ssh.as_str()]);
    let yaml: Vec<String> = options.iter().map(|o| format!("{o:?}")).collect();
    format!(
        "  deposit: \"{}@127.0.0.1:{}\"\n  rsync_options: [{}]\n",
        sshd.user,
        env.dir.join("deposits").display(),
        yaml.join(", ")
    )
}

#[test]
fn agent_push_over_rsync_and_ssh_is_validated_by_the_monitor() {
    let env = Env::pg_with_schema();
    let sshd = Sshd::start(&env.dir);
    let db = env.db().name().to_string();
    configure(&env, Some(&agent_over_ssh(&sshd, &env, &[])));
    env.run(&["backup"]).success();
    // The first push creates the deposit's directories on the far side (--mkpath).
    let r = env.run(&["agent", "push", "--format", "json"]);
    r.success();
    let v = r.json();
    assert_eq!(v["databases"][0]["status"], "success", "{v:#}");
    assert_eq!(v["databases"][0]["deposited"], true);
    assert!(
        v["deposit"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}@127.0.0.1:", sshd.user)),
        "{v:#}"
    );
    let file = v["databases"][0]["file"].as_str().unwrap().to_string();
    assert!(
        sshd.log()
            .contains(&format!("Accepted publickey for {}", sshd.user)),
        "the push did not go through this sshd:\n{}",
        sshd.log()
    );
    let site = site_dir(&env);
    assert_eq!(
        sha_of(&site.join(&db).join(&file)),
        sha_of(&env.dir.join("backups").join(&file))
    );
    // Nothing half-sent or temporary left on the far side.
    assert_eq!(
        common::monitor::files(&site.join(&db)),
        [file.clone(), format!("{file}.json")]
    );
    assert_eq!(
        common::monitor::files(&site),
        ["STATUS.json".to_string(), db.clone()]
    );
    let status = status_json(&env);
    assert_eq!(status["databases"][0]["file"], file.as_str());
    // The monitor validates what came over ssh.
    let r = env.run(&["monitor", "scan", "--format", "json"]);
    r.success();
    let v = r.json();
    assert_eq!(v["judged"][0]["status"], "OK", "{v:#}");
    assert!(env
        .dir
        .join("validated/ville/marseille/centre")
        .join(&db)
        .join(&file)
        .exists());

    // Again with `backup --push`, and rsync told to write files in place: the backup may
    // arrive in place, STATUS.json still arrives last and by a rename, never written in place.
    next_second();
    configure(&env, Some(&agent_over_ssh(&sshd, &env, &["--inplace"])));
    let mut watch = Watch::new();
    watch.add(&site, "site");
    watch.add(&site.join(&db), "database");
    let r = env.run(&["backup", "--push", "--format", "json"]);
    r.success();
    let v = r.json();
    let second = v["backups"][0]["file"].as_str().unwrap().to_string();
    assert_ne!(second, file);
    assert_eq!(v["push"]["databases"][0]["file"], second.as_str(), "{v:#}");
    let events = watch.events();
    let report: Vec<&(String, u32, String)> = events
        .iter()
        .filter(|(dir, _, name)| dir == "site" && name == "STATUS.json")
        .collect();
    assert!(!report.is_empty(), "STATUS.json never arrived: {events:?}");
    assert!(
        report
            .iter()
            .all(|(_, mask, _)| *mask & libc::IN_MOVED_TO != 0),
        "STATUS.json was written under its own name, not renamed into place: {events:?}"
    );
    let report_at = events
        .iter()
        .position(|(dir, mask, name)| {
            dir == "site" && name == "STATUS.json" && mask & libc::IN_MOVED_TO != 0
        })
        .unwrap();
    let last_backup_event = events
        .iter()
        .rposition(|(dir, _, name)| dir == "database" && name.contains(second.as_str()))
        .unwrap_or_else(|| panic!("{second} never arrived: {events:?}"));
    assert!(
        last_backup_event < report_at,
        "STATUS.json arrived before the backup it names was complete: {events:?}"
    );
    assert_eq!(
        sha_of(&site.join(&db).join(&second)),
        sha_of(&env.dir.join("backups").join(&second))
    );
    assert_eq!(status_json(&env)["databases"][0]["file"], second.as_str());
    assert!(
        !common::monitor::files(&site)
            .iter()
            .any(|n| n.starts_with('.')),
        "{:?}",
        common::monitor::files(&site)
    );
}
