//! The monitor's alerts against a real SMTP server on 127.0.0.1 (aiosmtpd, driven by
//! `tests/smtp_sink.py`, which writes each message it receives to a file) and a real HTTP
//! server (a few lines of std below), with the clock moved by `monitor scan --now`.
//!
//! aiosmtpd comes from Debian's python3-aiosmtpd, installed by `scripts/dev-services.sh`;
//! without it these tests fail and say so, they are never skipped. The scenarios that touch
//! the history run on SQLite and PostgreSQL, as `sqlite::name` and `postgres::name`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::monitor::{sha, t, Backend, Mon, CENTRE};
use common::{Run, BIN};

both!(
    changes_reminders_and_recovery_by_email,
    a_notice_the_mail_server_missed_is_delivered_by_the_next_scan,
);

const NORD: (&str, &str, &str) = ("ville", "marseille", "nord");
const SMTP_USER: &str = "monitor";
/// The SMTP password: given to the monitor only through the environment.
const SMTP_PASSWORD: &str = "s3cret-smtp-Pw";

// ---------------------------------------------------------------------------------------
// The SMTP server

/// A Python with aiosmtpd: `MAIRIE_DBA_TEST_PYTHON`, else Debian's, else the first on PATH.
fn python() -> String {
    let candidates: Vec<String> = std::env::var("MAIRIE_DBA_TEST_PYTHON")
        .into_iter()
        .chain(["/usr/bin/python3".to_string(), "python3".to_string()])
        .collect();
    for p in &candidates {
        let ok = Command::new(p)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return p.clone();
        }
    }
    panic!(
        "no Python with the aiosmtpd module (tried {candidates:?}): these tests need a real SMTP server. \
         Install it with `bash scripts/dev-services.sh` (Debian's python3-aiosmtpd) or \
         `apt-get install python3-aiosmtpd`, or point MAIRIE_DBA_TEST_PYTHON at a Python that has it"
    )
}

#[derive(Clone, Default)]
struct SmtpOpts {
    auth: bool,
    /// `--starttls` or `--tls`, with the test's certificate.
    tls: Option<&'static str>,
    port: u16,
}

/// One aiosmtpd process; stopped on drop.
struct Smtp {
    child: Child,
    port: u16,
    mails: PathBuf,
}

impl Smtp {
    fn start(dir: &Path, o: SmtpOpts) -> Smtp {
        let mails = dir.join("mails");
        std::fs::create_dir_all(&mails).unwrap();
        let mut c = Command::new(python());
        c.arg(Path::new(common::ROOT).join("tests/smtp_sink.py"))
            .arg("--dir")
            .arg(&mails)
            .args(["--port", &o.port.to_string()]);
        if o.auth {
            c.args(["--auth", &format!("{SMTP_USER}:{SMTP_PASSWORD}")]);
        }
        if let Some(mode) = o.tls {
            let (_, cert, key) = certificate(dir);
            c.arg(mode).arg(cert).arg(key);
        }
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let Some(port) = line
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse::<u16>().ok())
        else {
            let _ = child.kill();
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            let _ = child.wait();
            panic!("the SMTP server did not start: {line:?}\n{err}");
        };
        Smtp { child, port, mails }
    }

    /// Every message received so far, in order.
    fn mails(&self) -> Vec<Value> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.mails)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
            .collect()
    }

    /// Stops the server; the messages stay.
    fn stop(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.mails.clone()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test CA (`smtp-ca.pem`, what the monitor is told to trust) and the server's certificate
/// for localhost and 127.0.0.1 signed by it: (CA, certificate, key), made once per directory.
fn certificate(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca = dir.join("smtp-ca.pem");
    let ca_key = dir.join("smtp-ca-key.pem");
    let (cert, key, csr) = (
        dir.join("smtp-cert.pem"),
        dir.join("smtp-key.pem"),
        dir.join("smtp.csr"),
    );
    let ext = dir.join("smtp-ext.cnf");
    if !cert.exists() {
        std::fs::write(
            &ext,
            "basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        let openssl = |args: &[&std::ffi::OsStr]| {
            let out = Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl (Debian's openssl package) makes the test's certificates");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let os = |s: &str| std::ffi::OsString::from(s);
        openssl(&[
            &os("req"),
            &os("-x509"),
            &os("-newkey"),
            &os("rsa:2048"),
            &os("-nodes"),
            &os("-days"),
            &os("2"),
            &os("-subj"),
            &os("/CN=mairie-dba test CA"),
            &os("-keyout"),
            ca_key.as_os_str(),
            &os("-out"),
            ca.as_os_str(),
        ]);
        openssl(&[
            &os("req"),
            &os("-newkey"),
            &os("rsa:2048"),
            &os("-nodes"),
            &os("-subj"),
            &os("/CN=localhost"),
            &os("-keyout"),
            key.as_os_str(),
            &os("-out"),
            csr.as_os_str(),
        ]);
        openssl(&[
            &os("x509"),
            &os("-req"),
            &os("-in"),
            csr.as_os_str(),
            &os("-CA"),
            ca.as_os_str(),
            &os("-CAkey"),
            ca_key.as_os_str(),
            &os("-CAcreateserial"),
            &os("-days"),
            &os("2"),
            &os("-extfile"),
            ext.as_os_str(),
            &os("-out"),
            cert.as_os_str(),
        ]);
    }
    (ca, cert, key)
}

// ---------------------------------------------------------------------------------------
// The monitor

/// A monitor whose commands get the SMTP password ([`Mon::notify`] writes its configuration).
fn monitor(backend: Backend, jobs: &str) -> Mon {
    Mon::new(backend, jobs).env("MON_SMTP_PW", SMTP_PASSWORD)
}

impl Mon {
    /// Writes the configuration with this `notify:` section (indented under `monitor:`).
    fn notify(&self, notify: &str) {
        self.configure(&format!(
            "  collection_window_minutes: 120\n  notify:\n{notify}"
        ));
    }

    fn status(&self, now: &str) -> Value {
        self.run(&["monitor", "status", "--now", now, "--format", "json"])
            .json()
    }

    /// A site's report: each database deposited (`Some(bytes)`) or reported failed (None).
    fn report_of(
        &self,
        site: (&str, &str, &str),
        generated_at: &str,
        dbs: &[(&str, Option<&[u8]>)],
    ) {
        let d = self.site("deposits", site);
        let mut lines = Vec::new();
        for (db, bytes) in dbs {
            match bytes {
                Some(bytes) => {
                    let file = format!("{db}_{}.dump", generated_at.replace([':', '-'], ""));
                    std::fs::create_dir_all(d.join(db)).unwrap();
                    std::fs::write(d.join(db).join(&file), bytes).unwrap();
                    std::fs::write(d.join(db).join(format!("{file}.json")), "{}").unwrap();
                    lines.push(
                        json!({"database": db, "engine": "postgres", "status": "success",
                        "file": file, "size_bytes": bytes.len(), "sha256": sha(bytes),
                        "started_at": generated_at, "finished_at": generated_at, "error": null}),
                    );
                }
                None => lines.push(
                    json!({"database": db, "engine": "postgres", "status": "failed",
                    "error": "pg_dump: error: connection to server failed"}),
                ),
            }
        }
        self.report(site, generated_at, lines);
    }

    /// Everything the history holds, as text (to look for a secret in it).
    fn history_dump(&self) -> String {
        match &self.pg {
            Some(db) => format!(
                "{:?}{:?}",
                db.query("SELECT * FROM monitor_notify_outbox"),
                db.query("SELECT * FROM monitor_notify_state")
            ),
            None => {
                let mut all = Vec::new();
                for entry in std::fs::read_dir(self.dir.join("history")).unwrap() {
                    all.extend(std::fs::read(entry.unwrap().path()).unwrap());
                }
                String::from_utf8_lossy(&all).into_owned()
            }
        }
    }
}

fn daily(id: &str, site: (&str, &str, &str), db: &str) -> String {
    common::monitor::daily(id, site, db, "postgres", "02:00")
}

fn two_sites() -> String {
    daily("centre-mairie", CENTRE, "mairie") + &daily("nord-mairie", NORD, "mairie")
}

/// An e-mail section to the server on `port`.
fn email(port: u16, extra: &str) -> String {
    format!(
        "    email:\n      smtp_host: 127.0.0.1\n      smtp_port: {port}\n      from: \"Moniteur <monitor@ville.test>\"\n      \
         to: [ops@ville.test, \"DBA <dba@ville.test>\"]\n      timeout_seconds: 5\n{extra}"
    )
}

fn plain_with_login(port: u16) -> String {
    email(
        port,
        &format!("      tls: none\n      user: {SMTP_USER}\n      password_env: MON_SMTP_PW\n"),
    )
}

fn subject(m: &Value) -> &str {
    m["subject"].as_str().unwrap()
}

fn text(m: &Value) -> &str {
    m["text"].as_str().unwrap()
}

fn notify_errors(v: &Value) -> Vec<String> {
    v["notify"]["errors"]
        .as_array()
        .map(|a| a.iter().map(|e| e.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// E-mail scenarios

fn changes_reminders_and_recovery_by_email(b: Backend) {
    let m = monitor(b, &two_sites());
    let smtp = Smtp::start(
        &m.dir,
        SmtpOpts {
            auth: true,
            ..Default::default()
        },
    );
    m.notify(&format!(
        "    remind_hours: 6\n{}",
        plain_with_login(smtp.port)
    ));

    // Day 6, the first scan of a new monitor: both sites OK, nothing to say.
    m.report_of(CENTRE, &t(6, "02:05"), &[("mairie", Some(b"centre d6"))]);
    m.report_of(NORD, &t(6, "02:05"), &[("mairie", Some(b"nord d6"))]);
    let (r, v) = m.scan_run(&t(6, "02:10"));
    r.success();
    assert_eq!(v["notify"]["changes"], json!([]), "{v:#}");
    assert!(smtp.mails().is_empty());

    // Day 7: centre reports, nord is silent: one mail at nord's deadline, listing nord only.
    m.report_of(CENTRE, &t(7, "02:05"), &[("mairie", Some(b"centre d7"))]);
    let (r, v) = m.scan_run(&t(7, "03:05"));
    r.code(2);
    assert!(notify_errors(&v).is_empty(), "{v:#}");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let mail = &mails[0];
    assert_eq!(subject(mail), "[mairie-dba monitor] CRITICAL: 1 MISSING");
    assert_eq!(mail["mail_from"], "monitor@ville.test");
    assert_eq!(
        mail["rcpt_tos"],
        json!(["ops@ville.test", "dba@ville.test"])
    );
    assert_eq!(mail["login"], SMTP_USER);
    assert!(
        mail["from"].as_str().unwrap().contains("Moniteur"),
        "{mail:#}"
    );
    assert!(
        text(mail).contains(
            "  nord-mairie  ville/marseille/nord  mairie (postgres)  OK → MISSING  due 2026-12-07T02:00:00Z  no report for this occurrence"
        ),
        "{}",
        text(mail)
    );
    assert!(!text(mail).contains("centre-mairie"), "{}", text(mail));
    assert!(mail["html"]
        .as_str()
        .unwrap()
        .contains("<td>nord-mairie</td>"));
    assert_eq!(v["notify"]["sent"][0]["channel"], "email");
    assert_eq!(v["notify"]["pending"], 0);

    // Still MISSING an hour later: no mail.
    let (_, v) = m.scan_run(&t(7, "04:00"));
    assert_eq!(v["notify"]["changes"], json!([]), "{v:#}");
    assert_eq!(smtp.mails().len(), 1);

    // remind_hours (6) after the notice: a reminder, once.
    let (_, v) = m.scan_run(&t(7, "09:06"));
    assert_eq!(v["notify"]["changes"][0]["kind"], "reminder", "{v:#}");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 2);
    assert_eq!(
        subject(&mails[1]),
        "[mairie-dba monitor] CRITICAL: 1 still MISSING"
    );
    assert!(
        text(&mails[1]).contains("nord-mairie  ville/marseille/nord  mairie (postgres)  MISSING since 2026-12-07T03:05:00Z"),
        "{}",
        text(&mails[1])
    );
    m.scan_run(&t(7, "10:00"));
    assert_eq!(smtp.mails().len(), 2);

    // Day 8: nord is back (and centre fails): one mail with both.
    m.report_of(NORD, &t(8, "02:05"), &[("mairie", Some(b"nord d8"))]);
    m.report_of(CENTRE, &t(8, "02:05"), &[("mairie", None)]);
    let (r, v) = m.scan_run(&t(8, "03:05"));
    r.code(2);
    assert!(notify_errors(&v).is_empty(), "{v:#}");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 3);
    assert_eq!(
        subject(&mails[2]),
        "[mairie-dba monitor] CRITICAL: 1 FAILED, 1 back to OK"
    );
    let body = text(&mails[2]);
    assert!(
        body.contains("centre-mairie  ville/marseille/centre  mairie (postgres)  OK → FAILED  due 2026-12-08T02:00:00Z  the agent reports a failed backup: pg_dump: error: connection to server failed"),
        "{body}"
    );
    assert!(
        body.contains("nord-mairie  ville/marseille/nord  mairie (postgres)  MISSING → OK  due 2026-12-08T02:00:00Z"),
        "{body}"
    );
    assert!(body.find("Changed:").unwrap() < body.find("Back to OK:").unwrap());

    // The password was used (the server required it) and is written nowhere.
    assert!(!m.history_dump().contains(SMTP_PASSWORD));
    let s = m.run(&["monitor", "status", "--now", &t(8, "03:10")]);
    s.stdout_has("alerts: 0 notice(s) pending, last sent at 2026-12-08T03:05:00Z")
        .lacks(SMTP_PASSWORD);
}

fn a_notice_the_mail_server_missed_is_delivered_by_the_next_scan(b: Backend) {
    let m = monitor(b, &daily("nord-mairie", NORD, "mairie"));
    let smtp = Smtp::start(&m.dir, SmtpOpts::default());
    let port = smtp.port;
    m.notify(&email(port, "      tls: none\n"));
    m.report_of(NORD, &t(6, "02:05"), &[("mairie", Some(b"nord d6"))]);
    m.scan_run(&t(6, "02:10")).0.success();

    // The server is down when nord goes MISSING: the scan says so and keeps the notice.
    let mails = smtp.stop();
    let (r, v) = m.scan_run(&t(7, "03:05"));
    r.code(2)
        .stderr_has("warning: alerts: delivering the email notice #1")
        .stderr_has("kept, tried again after the next scan");
    let errors = notify_errors(&v);
    assert_eq!(errors.len(), 1, "{v:#}");
    assert!(errors[0].contains("127.0.0.1:"), "{errors:?}");
    assert_eq!(v["notify"]["pending"], 1);
    let s = m.status(&t(7, "03:06"));
    assert_eq!(s["notify"]["pending"], 1, "{s:#}");
    assert_eq!(s["notify"]["last_error"]["channel"], "email");
    assert_eq!(s["notify"]["last_error"]["pending"], true);
    assert_eq!(s["notify"]["last_error"]["at"], t(7, "03:05"));
    assert!(
        s["notify"]["last_error"]["error"]
            .as_str()
            .unwrap()
            .contains(&format!("e-mail via 127.0.0.1:{port} (tls: none)")),
        "{s:#}"
    );
    // The status's other fields are as they were.
    assert_eq!(s["jobs"][0]["status"], "MISSING");
    m.run(&["monitor", "status", "--now", &t(7, "03:06")])
        .code(2)
        .stdout_has("alerts: 1 notice(s) pending, none sent yet; last delivery error at 2026-12-07T03:05:00Z (email, still pending)");

    // Back on the same port: the next scan, with nothing new, delivers the notice.
    let smtp = Smtp::start(
        &m.dir,
        SmtpOpts {
            port,
            ..Default::default()
        },
    );
    assert_eq!(smtp.mails, mails);
    let (r, v) = m.scan_run(&t(7, "03:10"));
    r.code(0);
    assert_eq!(v["notify"]["changes"], json!([]), "{v:#}");
    assert_eq!(v["notify"]["sent"][0]["id"], 1, "{v:#}");
    let got = smtp.mails();
    assert_eq!(got.len(), 1);
    assert_eq!(subject(&got[0]), "[mairie-dba monitor] CRITICAL: 1 MISSING");
    assert!(
        text(&got[0]).starts_with("(Delivered late: queued by the scan at 2026-12-07T03:05:00Z; 1 earlier delivery attempt(s) failed.)"),
        "{}",
        text(&got[0])
    );
    assert!(text(&got[0]).contains("OK → MISSING"));
    let s = m.status(&t(7, "03:11"));
    assert_eq!(s["notify"]["pending"], 0, "{s:#}");
    assert_eq!(s["notify"]["last_sent_at"], t(7, "03:10"));
    assert_eq!(s["notify"]["last_error"]["pending"], false);
    // Delivered once.
    m.scan_run(&t(7, "03:20"));
    assert_eq!(smtp.mails().len(), 1);
}

#[test]
fn starttls_with_a_login_and_implicit_tls() {
    let m = monitor(Backend::Sqlite, &daily("nord-mairie", NORD, "mairie"));
    let (ca, _, _) = certificate(&m.dir);
    let smtp = Smtp::start(
        &m.dir,
        SmtpOpts {
            auth: true,
            tls: Some("--starttls"),
            port: 0,
        },
    );
    let tls_login = |port: u16, mode: &str| {
        email(
            port,
            &format!(
                "      tls: {mode}\n      ca_file: {}\n      user: {SMTP_USER}\n      password_env: MON_SMTP_PW\n",
                ca.display()
            ),
        )
    };
    // The server's name in the certificate is localhost.
    m.notify(&tls_login(smtp.port, "starttls").replace("127.0.0.1", "localhost"));
    // A first status that is not OK is told at once (nothing before it: PENDING).
    let (r, v) = m.scan_run(&t(6, "03:05"));
    r.code(2);
    assert!(notify_errors(&v).is_empty(), "{v:#}");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{v:#}");
    assert_eq!(mails[0]["tls"], true);
    assert_eq!(mails[0]["login"], SMTP_USER);
    assert!(
        text(&mails[0]).contains("PENDING → MISSING"),
        "{}",
        text(&mails[0])
    );
    assert!(!m.history_dump().contains(SMTP_PASSWORD));

    // Implicit TLS: a server that speaks TLS from the first byte.
    drop(smtp);
    let smtp = Smtp::start(
        &m.dir,
        SmtpOpts {
            auth: true,
            tls: Some("--tls"),
            port: 0,
        },
    );
    m.notify(&tls_login(smtp.port, "tls").replace("127.0.0.1", "localhost"));
    m.report_of(NORD, &t(7, "02:05"), &[("mairie", Some(b"nord d7"))]);
    let (r, v) = m.scan_run(&t(7, "02:10"));
    r.success();
    assert!(notify_errors(&v).is_empty(), "{v:#}");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{v:#}");
    assert_eq!(mails[0]["tls"], true);
    assert_eq!(subject(&mails[0]), "[mairie-dba monitor] OK: 1 back to OK");
}

#[test]
fn an_untrusted_certificate_or_a_wrong_password_is_a_delivery_error() {
    let m = monitor(Backend::Sqlite, &daily("nord-mairie", NORD, "mairie"));
    let smtp = Smtp::start(
        &m.dir,
        SmtpOpts {
            auth: true,
            tls: Some("--starttls"),
            port: 0,
        },
    );
    // Without ca_file the system's CAs are trusted, and they do not know the test's.
    m.notify(
        &email(
            smtp.port,
            &format!(
                "      tls: starttls\n      user: {SMTP_USER}\n      password_env: MON_SMTP_PW\n"
            ),
        )
        .replace("127.0.0.1", "localhost"),
    );
    let (r, v) = m.scan_run(&t(6, "03:05"));
    r.code(2).lacks(SMTP_PASSWORD);
    let e = notify_errors(&v).join("\n");
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    assert!(smtp.mails().is_empty());

    // A wrong password: refused by the server, never shown.
    let plain = Smtp::start(
        &m.dir,
        SmtpOpts {
            auth: true,
            ..Default::default()
        },
    );
    m.notify(&format!(
        "{}      tls: none\n      user: {SMTP_USER}\n      password_env: MON_WRONG_PW\n",
        email(plain.port, "")
    ));
    let out = Command::new(BIN)
        .arg("-c")
        .arg(m.dir.join("config_global.yml"))
        .args([
            "monitor",
            "scan",
            "--now",
            &t(6, "03:10"),
            "--format",
            "json",
        ])
        .env_remove("MAIRIE_DBA_CONFIG")
        .env("MON_WRONG_PW", "not-the-Password-42")
        .current_dir(&m.dir)
        .output()
        .unwrap();
    let r = Run::from(out);
    r.lacks("not-the-Password-42");
    let v = r.json();
    let e = notify_errors(&v).join("\n");
    assert!(
        e.contains("535") || e.to_lowercase().contains("auth"),
        "{e}"
    );
    assert!(plain.mails().is_empty());
    assert_eq!(v["notify"]["pending"], 1);
    assert!(!m.history_dump().contains("not-the-Password-42"));

    // The variable unset: said, and the notice kept.
    let (_, v) = m.scan_run(&t(6, "03:15"));
    let e = notify_errors(&v).join("\n");
    assert!(e.contains("environment variable MON_WRONG_PW"), "{e}");
    assert_eq!(v["notify"]["pending"], 1);
}

// ---------------------------------------------------------------------------------------
// Webhook

/// A tiny HTTP server: answers each request with the next status of `statuses` (then 200),
/// and keeps every request's path and body.
struct Hook {
    port: u16,
    got: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Hook {
    fn start(statuses: Vec<u16>) -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let seen = got.clone();
        std::thread::spawn(move || {
            let mut statuses = statuses.into_iter();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let Some((path, body)) = read_request(&mut stream) else {
                    continue;
                };
                seen.lock()
                    .unwrap()
                    .push((path, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                let status = statuses.next().unwrap_or(200);
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                );
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        Hook { port, got }
    }

    fn requests(&self) -> Vec<(String, Value)> {
        self.got.lock().unwrap().clone()
    }
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    reader.read_line(&mut first).ok()?;
    let path = first.split_whitespace().nth(1)?.to_string();
    let mut length = 0;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((path, body))
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "waited for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_webhook_failing_twice_is_retried_then_a_dead_one_waits_for_the_next_scan() {
    let m = monitor(Backend::Sqlite, &two_sites());
    // 500, 503, then 200.
    let hook = Hook::start(vec![500, 503]);
    m.notify(&format!(
        "    webhook:\n      url: http://127.0.0.1:{}/hooks/s3cret-token\n      timeout_seconds: 5\n",
        hook.port
    ));
    m.report_of(CENTRE, &t(6, "02:05"), &[("mairie", Some(b"centre d6"))]);
    m.report_of(NORD, &t(6, "02:05"), &[("mairie", Some(b"nord d6"))]);
    m.scan_run(&t(6, "02:10")).0.success();
    assert!(hook.requests().is_empty());

    let (r, v) = m.scan_run(&t(7, "03:05"));
    r.code(2).lacks("s3cret-token");
    assert!(notify_errors(&v).is_empty(), "{v:#}");
    assert_eq!(v["notify"]["sent"][0]["channel"], "webhook", "{v:#}");
    wait_for("three requests", || hook.requests().len() == 3);
    let got = hook.requests();
    // The same notice each time.
    assert!(got
        .iter()
        .all(|(path, body)| path == "/hooks/s3cret-token" && *body == got[0].1));
    let body = &got[0].1;
    assert_eq!(body["subject"], "[mairie-dba monitor] CRITICAL: 2 MISSING");
    assert_eq!(body["status"], "critical");
    assert!(body["text"]
        .as_str()
        .unwrap()
        .starts_with("[mairie-dba monitor] CRITICAL: 2 MISSING\n- centre-mairie  ville/marseille/centre  mairie (postgres)  OK → MISSING"));
    let changes = body["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[1]["job"], "nord-mairie");
    assert_eq!(changes[1]["kind"], "change");
    assert_eq!(changes[1]["old_status"], "OK");
    assert_eq!(changes[1]["new_status"], "MISSING");
    assert_eq!(changes[1]["due"], t(7, "02:00"));
    assert_eq!(changes[1]["site"], "nord");

    // A hook that keeps failing: three attempts, then the notice waits for the next scan.
    let dead = Hook::start(vec![500, 500, 500]);
    m.notify(&format!(
        "    webhook:\n      url: http://127.0.0.1:{}/hooks/s3cret-token\n",
        dead.port
    ));
    m.report_of(CENTRE, &t(8, "02:05"), &[("mairie", Some(b"centre d8"))]);
    let (r, v) = m.scan_run(&t(8, "02:10"));
    r.code(0)
        .stderr_has("webhook POST to http://127.0.0.1:")
        .stderr_has("HTTP 500")
        .lacks("s3cret-token");
    assert_eq!(v["notify"]["pending"], 1, "{v:#}");
    wait_for("three requests", || dead.requests().len() == 3);
    let s = m.status(&t(8, "02:11"));
    assert!(
        s["notify"]["last_error"]["error"]
            .as_str()
            .unwrap()
            .contains("HTTP 500"),
        "{s:#}"
    );
    // Next scan: the fourth request succeeds.
    let (_, v) = m.scan_run(&t(8, "02:20"));
    assert_eq!(v["notify"]["pending"], 0, "{v:#}");
    wait_for("a fourth request", || dead.requests().len() == 4);
    assert_eq!(
        dead.requests()[3].1["subject"],
        "[mairie-dba monitor] OK: 1 back to OK"
    );
}

#[test]
fn e_mail_and_webhook_are_tried_apart() {
    let m = monitor(Backend::Sqlite, &daily("nord-mairie", NORD, "mairie"));
    let smtp = Smtp::start(&m.dir, SmtpOpts::default());
    // A port where nothing listens: the webhook fails at once, the mail still goes.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    m.notify(&format!(
        "{}    webhook:\n      url: http://127.0.0.1:{closed}/h\n",
        email(smtp.port, "      tls: none\n")
    ));
    let (_, v) = m.scan_run(&t(6, "03:05"));
    assert_eq!(smtp.mails().len(), 1, "{v:#}");
    let e = notify_errors(&v);
    assert_eq!(e.len(), 1, "{v:#}");
    assert!(
        e[0].contains("webhook notice #2") && e[0].contains("connecting"),
        "{e:?}"
    );
    assert_eq!(v["notify"]["pending"], 1);
    // Without its webhook section the pending notice is dropped, and said so.
    m.notify(&email(smtp.port, "      tls: none\n"));
    let (r, v) = m.scan_run(&t(6, "03:10"));
    r.stderr_has("1 undelivered webhook notice(s) dropped");
    assert_eq!(v["notify"]["pending"], 0);
    assert_eq!(smtp.mails().len(), 1);
}

// ---------------------------------------------------------------------------------------
// Configuration

#[test]
fn notify_settings_are_checked_with_file_line_and_column() {
    let m = monitor(Backend::Sqlite, &daily("nord-mairie", NORD, "mairie"));
    let bad = [
        ("    email:\n      smtp_host: h\n      tls: ssl\n      from: a@b.c\n      to: [d@e.f]\n", "unknown variant `ssl`"),
        ("    email:\n      smtp_host: h\n      from: a@b.c\n      to: []\n", "to: give at least one recipient"),
        ("    email:\n      smtp_host: h\n      from: not-an-address\n      to: [d@e.f]\n", "from: `not-an-address` is not an e-mail address"),
        ("    email:\n      smtp_host: h\n      from: a@b.c\n      to: [d@e.f]\n      user: u\n", "user: needs password_env"),
        ("    email:\n      smtp_host: mail.example\n      tls: none\n      from: a@b.c\n      to: [d@e.f]\n      user: u\n      password_env: P\n", "a password is never sent in clear"),
        ("    email:\n      smtp_host: h\n      from: a@b.c\n      to: [d@e.f]\n      password: hunter2\n", "unknown field `password`"),
        ("    webhook:\n      url: ftp://x/y\n", "must start with http:// or https://"),
        ("    remind_hours: 3\n", "give it an `email:` or a `webhook:`"),
    ];
    for (notify, want) in bad {
        m.notify(notify);
        let r = m.run(&["monitor", "status"]);
        r.code(3)
            .one_line_error()
            .stderr_has(want)
            .stderr_has(&format!("{}:", m.dir.join("config_global.yml").display()));
        r.lacks("hunter2");
    }
}

/// An https server in Python's standard library: answers 200 to every POST and appends its
/// body to `bodies.jsonl`; prints `PORT n` once it listens.
const HTTPS_SINK: &str = r#"
import http.server, ssl, sys, os
cert, key, out = sys.argv[1], sys.argv[2], sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with open(out, "ab") as f:
            f.write(body + b"\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print("PORT %d" % s.server_address[1], flush=True)
s.serve_forever()
"#;

/// A child process stopped when dropped (a failed assertion included).
struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_webhook_over_https_with_its_url_from_the_environment() {
    let m = monitor(Backend::Sqlite, &daily("nord-mairie", NORD, "mairie"));
    let (ca, cert, key) = certificate(&m.dir);
    let bodies = m.dir.join("bodies.jsonl");
    let mut child = Stopped(
        Command::new(python())
            .args(["-c", HTTPS_SINK])
            .arg(&cert)
            .arg(&key)
            .arg(&bodies)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().strip_prefix("PORT ").unwrap().parse().unwrap();
    m.notify(&format!(
        "    webhook:\n      url_env: MON_HOOK_URL\n      ca_file: {}\n",
        ca.display()
    ));
    let out = Command::new(BIN)
        .arg("-c")
        .arg(m.dir.join("config_global.yml"))
        .args([
            "monitor",
            "scan",
            "--now",
            &t(6, "03:05"),
            "--format",
            "json",
        ])
        .env_remove("MAIRIE_DBA_CONFIG")
        .env(
            "MON_HOOK_URL",
            format!("https://localhost:{port}/hooks/t0ken"),
        )
        .current_dir(&m.dir)
        .output()
        .unwrap();
    drop(child);
    let r = Run::from(out);
    r.code(2).lacks("t0ken");
    let v = r.json();
    assert!(notify_errors(&v).is_empty(), "{v:#}");
    assert_eq!(v["notify"]["sent"][0]["channel"], "webhook");
    let got: Value =
        serde_json::from_str(std::fs::read_to_string(&bodies).unwrap().trim()).unwrap();
    assert_eq!(got["subject"], "[mairie-dba monitor] CRITICAL: 1 MISSING");
    assert_eq!(got["changes"][0]["old_status"], Value::Null);
}
