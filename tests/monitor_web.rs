//! `monitor serve`'s HTML pages against a real server: the real binary listening on a free
//! port of 127.0.0.1, over a real SQLite history filled by real scans (`monitor scan --now`)
//! of real deposits. The pages are read two ways: over plain HTTP/1.1, and in a real browser,
//! Debian's headless `chromium`, whose rendered DOM must show the statuses the JSON API gives,
//! whose job links lead to the job's history, and which saves a screenshot of the dashboard
//! under `target/`. Without chromium the browser tests fail, saying how to install it.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Duration as Span, NaiveDate, Utc};
use serde_json::{json, Value};

use common::monitor::{sha, Backend, Mon};
use common::ROOT;

// ------------------------------------------------------------------------------------------
// A monitor: its directory (deposits, validated store, config) and its SQLite history.

type Site = (&'static str, &'static str, &'static str);

/// A SQLite monitor expecting `jobs` (lines of the `monitor.jobs` list).
fn monitor(jobs: &[String]) -> Mon {
    Mon::new(Backend::Sqlite, &jobs.concat())
}

impl Mon {
    /// `monitor scan --now NOW`: a check, so any Nagios code, but a JSON document.
    fn scan_at(&self, now: DateTime<Utc>) -> Value {
        let (r, v) = self.scan_run(&stamp(now));
        assert!(
            (0..=3).contains(&r.code),
            "scan at {now}: exit {}\n{}",
            r.code,
            r.stderr
        );
        v
    }

    /// `monitor serve --no-scan` on a free port of 127.0.0.1.
    fn serve(&self) -> Server {
        Server::start(self)
    }
}

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A report line for a good backup of `bytes`.
fn line(db: &str, engine: &str, file: &str, bytes: &[u8], due: DateTime<Utc>, secs: f64) -> Value {
    json!({"database": db, "engine": engine, "status": "success", "file": file,
           "size_bytes": bytes.len(), "sha256": sha(bytes),
           "started_at": stamp(due), "finished_at": stamp(due + Span::seconds(secs as i64)),
           "backup_seconds": secs, "compression_seconds": secs / 4.0, "transfer_seconds": 0.8,
           "error": null,
           "last_drill": {"at": stamp(due - Span::hours(20)), "status": "success"}})
}

/// A `monitor.jobs` entry; every value quoted (they may be hostile).
fn job(id: &str, (c, x, s): Site, db: &str, engine: &str, when: &str) -> String {
    let q = |v: &str| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
    format!(
        "    - {{id: {}, company: {}, city: {}, site: {}, database: {}, engine: {engine}, {when}, grace_minutes: 60}}\n",
        q(id),
        q(c),
        q(x),
        q(s),
        q(db)
    )
}

/// Deterministic backup bytes: `len` of them, different for each `seed`.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

// ------------------------------------------------------------------------------------------
// The demo: eleven jobs of three companies, in four cities and seven sites, three days of
// scans, and every status on the last day.

const CENTRE: Site = ("ville", "marseille", "centre");
const JOLIETTE: Site = ("ville", "marseille", "la-joliette");
const AIX: Site = ("ville", "aix-en-provence", "hotel-de-ville");
const CASERNE: Site = ("sdis13", "marseille", "caserne-est");
const NORD: Site = ("syndicat-eaux", "toulon", "station-nord");
const SUD: Site = ("syndicat-eaux", "toulon", "station-sud");
const INCONNU: Site = ("ville", "marseille", "annexe-inconnue");

/// What a job's agent does on the last day.
#[derive(Clone, Copy, PartialEq)]
enum LastDay {
    Ok,
    Unchanged,
    Corrupt,
    Failed,
    Silent,
    BadPath,
}

struct DemoJob {
    id: &'static str,
    site: Site,
    db: &'static str,
    engine: &'static str,
    at: (u32, u32),
    size: usize,
    secs: f64,
    last: LastDay,
}

#[rustfmt::skip]
fn demo_jobs() -> Vec<DemoJob> {
    use LastDay::*;
    [
        ("centre-mairie", CENTRE, "mairie", "postgres", (2, 0), 880_000, 41.0, Ok),
        ("centre-etat-civil", CENTRE, "etat_civil", "mysql", (2, 0), 350_000, 12.5, Unchanged),
        ("joliette-urbanisme", JOLIETTE, "urbanisme", "postgres", (1, 30), 520_000, 23.0, Corrupt),
        ("joliette-voirie", JOLIETTE, "voirie", "postgres", (1, 30), 160_000, 6.2, Ok),
        ("aix-mairie", AIX, "mairie", "postgres", (2, 0), 610_000, 30.0, Ok),
        ("aix-finances", AIX, "finances", "postgres", (2, 30), 270_000, 15.0, Failed),
        ("caserne-interventions", CASERNE, "interventions", "postgres", (2, 30), 430_000, 19.0, Silent),
        ("nord-releves", NORD, "releves", "mysql", (1, 0), 720_000, 52.0, Ok),
        ("nord-clients", NORD, "clients", "mysql", (1, 0), 95_000, 3.1, Ok),
        ("sud-releves", SUD, "releves", "mysql", (1, 0), 300_000, 14.0, BadPath),
    ]
    .into_iter()
    .map(|(id, site, db, engine, at, size, secs, last)| DemoJob { id, site, db, engine, at, size, secs, last })
    .collect()
}

/// The demo monitor, its last scan a few hours before now (the pages' clock is the real one).
fn demo() -> Mon {
    let now = Utc::now();
    // Three days of scans at 04:30, the last one at or before now.
    let last_day = (now - Span::minutes(270)).date_naive();
    let first = last_day - chrono::Days::new(2);
    let at = |d: NaiveDate, h: u32, m: u32| d.and_hms_opt(h, m, 0).unwrap().and_utc();
    let jobs = demo_jobs();
    let mut lines: Vec<String> = jobs
        .iter()
        .map(|j| {
            job(
                j.id,
                j.site,
                j.db,
                j.engine,
                &format!("frequency: daily, at: \"{:02}:{:02}\"", j.at.0, j.at.1),
            )
        })
        .collect();
    // Added to the configuration lately: its only occurrence is ahead.
    let ahead = (now + Span::days(2))
        .format("%Y-%m-%dT%H:00:00Z")
        .to_string();
    lines.push(job(
        "sud-compteurs",
        SUD,
        "compteurs",
        "mysql",
        &format!("frequency: once, at: \"{ahead}\""),
    ));
    let mon = monitor(&lines);
    mon.scan_at(at(first, 0, 5));
    for day in 0..3u64 {
        let d = first + chrono::Days::new(day);
        let last = day == 2;
        let mut reports: BTreeMap<Site, (DateTime<Utc>, Vec<Value>)> = BTreeMap::new();
        for (k, j) in jobs.iter().enumerate() {
            let due = at(d, j.at.0, j.at.1);
            let what = if last { j.last } else { LastDay::Ok };
            if what == LastDay::Silent {
                continue;
            }
            // Sizes grow a little each day; an unchanged backup repeats the day before's.
            let seed_day = if what == LastDay::Unchanged { 1 } else { day };
            let size = j.size + j.size / 20 * seed_day as usize;
            let b = bytes(k as u64 * 10 + seed_day, size);
            let file = format!("{}_full_{}.dump", j.db, due.format("%Y%m%d_%H%M%S"));
            let secs = j.secs * (1.0 + 0.15 * day as f64);
            let mut l = line(j.db, j.engine, &file, &b, due, secs);
            match what {
                LastDay::Ok | LastDay::Unchanged | LastDay::Silent => {
                    mon.deposit(j.site, j.db, j.engine, &file, &b);
                }
                LastDay::Corrupt => {
                    let mut bad = b.clone();
                    bad[size / 2] ^= 0x40;
                    mon.deposit(j.site, j.db, j.engine, &file, &bad);
                }
                LastDay::Failed => {
                    l["status"] = json!("failed");
                    l["file"] = Value::Null;
                    l["size_bytes"] = Value::Null;
                    l["sha256"] = Value::Null;
                    l["error"] = json!("pg_dump: error: connection to server at \"10.13.2.7\", port 5432 failed: timeout expired");
                }
                LastDay::BadPath => l["file"] = json!("../../etc/passwd"),
            }
            let e = reports.entry(j.site).or_insert((due, Vec::new()));
            e.0 = e.0.max(due);
            e.1.push(l);
        }
        for (site, (latest, ls)) in reports {
            // Within every line's window: 5 minutes after the site's latest job.
            mon.report(site, &stamp(latest + Span::minutes(5)), ls);
        }
        if last {
            // A site the configuration does not know.
            let b = bytes(999, 10_000);
            mon.deposit(INCONNU, "mairie", "postgres", "mairie_full.dump", &b);
            mon.report(INCONNU, &stamp(at(d, 2, 5)), vec![]);
        }
        mon.scan_at(at(d, 4, 30));
    }
    mon
}

// ------------------------------------------------------------------------------------------
// The server and a small HTTP/1.1 client.

struct Server {
    child: Child,
    addr: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    fn start(mon: &Mon) -> Server {
        let mut child = mon
            .command(&["monitor", "serve", "--listen", "127.0.0.1:0", "--no-scan"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start monitor serve");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        {
            let log = Arc::clone(&log);
            // Reads the log to its end: a full pipe would block the server.
            std::thread::spawn(move || {
                for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(rest) = l.split("monitor on http://").nth(1) {
                        let _ = tx.send(rest.split('/').next().unwrap_or("").to_string());
                    }
                    let mut g = log.lock().unwrap();
                    g.push_str(&l);
                    g.push('\n');
                }
            });
        }
        let addr = rx.recv_timeout(Duration::from_secs(30));
        let mut s = Server {
            child,
            addr: String::new(),
            log,
        };
        match addr {
            Ok(a) => s.addr = a,
            Err(_) => panic!(
                "monitor serve did not say where it listens within 30 s\n--- stderr\n{}",
                s.log.lock().unwrap()
            ),
        }
        s
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn get(&self, path: &str) -> Resp {
        http_get(&self.addr, path).unwrap_or_else(|e| {
            panic!(
                "GET {path}: {e}\n--- server log\n{}",
                self.log.lock().unwrap()
            )
        })
    }

    /// A page: 200 and HTML.
    fn page(&self, path: &str) -> String {
        let r = self.get(path);
        assert_eq!(r.code, 200, "GET {path}\n{}", r.body);
        assert_eq!(
            r.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        r.body
    }

    /// An API document: 200 and JSON.
    fn api(&self, path: &str) -> Value {
        let r = self.get(path);
        assert_eq!(r.code, 200, "GET {path}\n{}", r.body);
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{path}: {e}\n{}", r.body))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Resp {
    code: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn http_get(addr: &str, path: &str) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let code = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Ok(Resp {
        code,
        headers,
        body: String::from_utf8(body).map_err(std::io::Error::other)?,
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&b[..end])
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[end + 2..end + 2 + size]);
        b = &b[end + 2 + size + 2..];
    }
    out
}

// ------------------------------------------------------------------------------------------
// Reading the pages: the attributes the templates put there for machines.

/// HTML character references back to text (those a page or a browser's DOM uses).
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';').filter(|e| *e <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let name = &rest[1..end];
        let c = match name {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some('\u{a0}'),
            _ => name
                .strip_prefix("#x")
                .or_else(|| name.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Every value of `attr="…"` in the page, in order, unescaped.
fn attrs(html: &str, attr: &str) -> Vec<String> {
    let key = format!("{attr}=\"");
    html.split(&key)
        .skip(1)
        .map(|s| unescape(&s[..s.find('"').unwrap_or(s.len())]))
        .collect()
}

/// The dashboard's rows: (job id, the status its status cell shows), in page order. The
/// status is checked against the cell's text too, so the attribute cannot say one thing and
/// the page another.
fn shown_statuses(html: &str) -> Vec<(String, String)> {
    html.split("data-job-id=\"")
        .skip(1)
        .map(|row| {
            let id = unescape(&row[..row.find('"').unwrap()]);
            let cell = row
                .split("data-status=\"")
                .nth(1)
                .unwrap_or_else(|| panic!("row {id} has no status cell"));
            let status = unescape(&cell[..cell.find('"').unwrap()]);
            let text_start = cell.find('>').unwrap() + 1;
            // `<wbr>` lets a long status break after its underscores; it is no text.
            let text = cell[text_start..cell.find("</td>").unwrap()].replace("<wbr>", "");
            assert!(
                text.contains(&format!("&nbsp;</span>{status}")),
                "row {id}: the cell's text {text:?} does not say {status}"
            );
            (id, status)
        })
        .collect()
}

/// The history rows of a job page: (due, status).
fn shown_history(html: &str) -> Vec<(String, String)> {
    html.split("class=\"occurrence\"")
        .skip(1)
        .map(|row| {
            let due = attrs(row, "data-due").into_iter().next().unwrap();
            let status = attrs(row, "data-status").into_iter().next().unwrap();
            (due, status)
        })
        .collect()
}

/// The count a status link shows (`data-count="MISSING"` … `<b>2</b>`).
fn shown_count(html: &str, status: &str) -> usize {
    let after = html
        .split(&format!("data-count=\"{status}\""))
        .nth(1)
        .unwrap_or_else(|| panic!("no count for {status}"));
    let b = after.split("<b>").nth(1).unwrap();
    b[..b.find("</b>").unwrap()].parse().unwrap()
}

fn api_statuses(v: &Value) -> Vec<(String, String)> {
    v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["id"].as_str().unwrap().to_string(),
                j["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

const STATUSES: [&str; 8] = [
    "OK",
    "FAILED",
    "MISSING",
    "TRANSFER_INTEGRITY_FAILED",
    "UNCHANGED",
    "HASH_MISMATCH",
    "UNKNOWN",
    "PENDING",
];

// ------------------------------------------------------------------------------------------
// Over HTTP.

#[test]
fn the_dashboard_shows_what_the_api_shows() {
    let d = demo();
    let server = d.serve();
    let html = server.page("/");
    let api = server.api("/api/jobs");
    let shown = shown_statuses(&html);
    assert_eq!(shown.len(), 11, "{html}");
    assert_eq!(sorted(shown.clone()), sorted(api_statuses(&api)));
    // The demo has every status but HASH_MISMATCH (nothing re-verifies the store yet).
    let want: BTreeMap<&str, &str> = [
        ("centre-mairie", "OK"),
        ("centre-etat-civil", "UNCHANGED"),
        ("joliette-urbanisme", "TRANSFER_INTEGRITY_FAILED"),
        ("aix-finances", "FAILED"),
        ("caserne-interventions", "MISSING"),
        ("sud-releves", "UNKNOWN"),
        ("sud-compteurs", "PENDING"),
    ]
    .into();
    for (id, st) in &shown {
        if let Some(w) = want.get(id.as_str()) {
            assert_eq!(st, w, "{id}");
        }
    }
    // Every status is counted, as /api/status counts.
    let counts = server.api("/api/status");
    for s in STATUSES {
        assert_eq!(
            shown_count(&html, s) as u64,
            counts["counts"][s].as_u64().unwrap(),
            "{s}"
        );
        assert!(html.contains(&format!("href=\"/?status={s}\"")), "{s}");
    }
    // Grouped by company, city and site, in that order; each job in its site.
    let groups: Vec<&str> = html
        .split("scope=\"rowgroup\"")
        .skip(1)
        .map(|g| {
            let g = &g[g.find('>').unwrap() + 1..];
            &g[..g.find("</th>").unwrap()]
        })
        .collect();
    assert_eq!(
        groups,
        [
            "sdis13 › marseille › caserne-est",
            "syndicat-eaux › toulon › station-nord",
            "syndicat-eaux › toulon › station-sud",
            "ville › aix-en-provence › hotel-de-ville",
            "ville › marseille › centre",
            "ville › marseille › la-joliette",
        ]
    );
    let aix = html.split("hotel-de-ville").nth(1).unwrap();
    let aix = &aix[..aix.find("</tbody>").unwrap()];
    assert_eq!(attrs(aix, "data-job-id"), ["aix-mairie", "aix-finances"]);
    // The row's columns: a link, the engine, human ages and sizes, the drill, the message.
    let row = html.split("data-job-id=\"centre-mairie\"").nth(1).unwrap();
    let row = &row[..row.find("</tr>").unwrap()];
    let j = &api["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == "centre-mairie")
        .unwrap()
        .clone();
    assert!(row.contains("href=\"/jobs/centre-mairie\""), "{row}");
    assert!(
        row.contains("mairie <span class=\"meta\">(postgres)</span>"),
        "{row}"
    );
    assert!(row.contains("✔&nbsp;</span>OK"), "{row}");
    assert!(
        row.contains(&format!("datetime=\"{}\"", j["last_ok"].as_str().unwrap())),
        "{row}"
    );
    assert!(
        row.contains(&format!("datetime=\"{}\"", j["next_due"].as_str().unwrap())),
        "{row}"
    );
    assert!(
        row.contains(&format!(
            "datetime=\"{}\"",
            j["last_drill"]["at"].as_str().unwrap()
        )),
        "{row}"
    );
    let cell = |after: &str| {
        let c = row.split(after).nth(1).unwrap();
        c[..c.find('<').unwrap()].to_string()
    };
    let (age, size) = (cell("<span class=\"age\">"), cell("<td class=\"num\">"));
    assert!(
        [" s ago", " min ago", " h ago", " d ago"]
            .iter()
            .any(|u| age.ends_with(u)),
        "age {age:?}"
    );
    assert!(
        size.ends_with(" KiB") || size.ends_with(" MiB"),
        "size {size:?}"
    );
    let failed = html.split("data-job-id=\"aix-finances\"").nth(1).unwrap();
    assert!(
        failed.contains("✘&nbsp;</span>FAILED") && failed.contains("timeout expired"),
        "{failed}"
    );
    // The page around: English, titled, refreshing itself, its tables with scoped headers,
    // nothing loaded from anywhere.
    assert!(
        html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"),
        "{html}"
    );
    assert!(
        html.contains("<title>MISSING · Backup monitor</title>"),
        "{html}"
    );
    assert!(html.contains("<meta http-equiv=\"refresh\" content=\"60\">"));
    assert!(html.contains("<th scope=\"col\">Status</th>"));
    assert!(html.contains("<th scope=\"row\">"));
    for external in ["<script", "<link", "src=", "http://", "https://", "@import"] {
        assert!(!html.contains(external), "the page has {external}");
    }
    assert!(html.contains("Last scan: <time"), "{html}");
    assert!(html.contains("1 unexpected deposit(s)"), "{html}");
}

#[test]
fn the_filters_are_the_apis_filters() {
    let d = demo();
    let server = d.serve();
    let ids = |html: &str| sorted(shown_statuses(html).into_iter().map(|(i, _)| i).collect());
    let api_ids = |v: &Value| sorted(api_statuses(v).into_iter().map(|(i, _)| i).collect());
    for query in [
        "status=OK",
        "status=missing",
        "status=UNCHANGED",
        "status=HASH_MISMATCH",
        "status=&q=",
        "q=marseille",
        "q=MySQL",
        "q=timeout",
        "q=toulon&status=OK",
        "status=OK&q=sud",
        "q=aix+finances",
        "q=%C3%A9t%C3%A9",
    ] {
        let html = server.page(&format!("/?{query}"));
        let api = server.api(&format!("/api/jobs?{query}"));
        let want = api_ids(&api);
        assert_eq!(ids(&html), want, "?{query}");
        if want.is_empty() {
            assert!(html.contains("id=\"no-match\""), "?{query}: {html}");
        } else {
            assert!(!html.contains("id=\"no-match\""), "?{query}");
        }
    }
    // The form shows the filter it applied.
    let html = server.page("/?status=failed&q=aix");
    assert!(
        html.contains("<option value=\"FAILED\" selected>"),
        "{html}"
    );
    assert!(html.contains("name=\"q\" value=\"aix\""), "{html}");
    assert!(
        html.contains("class=\"count s-crit nonzero selected\""),
        "{html}"
    );
    assert!(
        html.contains("href=\"/api/jobs?status=FAILED&amp;q=aix\""),
        "{html}"
    );
    let none = server.page("/?q=nowhere-at-all");
    assert!(
        none.contains("No job matches the text “nowhere-at-all”"),
        "{none}"
    );
}

#[test]
fn a_job_page_has_its_history_and_charts() {
    let d = demo();
    let server = d.serve();
    for id in ["centre-mairie", "joliette-urbanisme", "sud-compteurs"] {
        let html = server.page(&format!("/jobs/{id}"));
        let api = server.api(&format!("/api/jobs/{id}/history"));
        let want: Vec<(String, String)> = api["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["due"].as_str().unwrap().to_string(),
                    e["status"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(shown_history(&html), want, "{id}");
        let job = server.api(&format!("/api/jobs/{id}"));
        assert_eq!(
            attrs(&html, "data-status")[0],
            job["job"]["status"].as_str().unwrap(),
            "{id}: the head shows the job's status"
        );
        assert!(html.contains(&format!("<span id=\"job-id\">{id}</span>")));
        assert_eq!(html.matches("<svg ").count(), 2, "{id}: two charts");
        assert!(!html.contains("NaN") && !html.contains("inf\""), "{id}");
        if want.is_empty() {
            assert!(html.contains("id=\"no-history\""), "{html}");
            assert_eq!(html.matches("no value recorded</text>").count(), 2);
        }
    }
    // Three days: a line through three sizes, through three durations.
    let html = server.page("/jobs/centre-mairie");
    assert_eq!(shown_history(&html).len(), 3);
    assert_eq!(html.matches("<polyline").count(), 2, "{html}");
    assert!(html
        .contains("<title id=\"size-centre-mairie-title\">Backup size of centre-mairie</title>"));
    assert!(
        html.contains("KiB</text>") || html.contains("MiB</text>"),
        "{html}"
    );
    let html = server.page("/jobs/joliette-urbanisme");
    assert!(html.contains("data-status=\"TRANSFER_INTEGRITY_FAILED\""));
    // ?limit= cuts the history, as the API's.
    let html = server.page("/jobs/centre-mairie?limit=1");
    let api = server.api("/api/jobs/centre-mairie/history?limit=1");
    assert_eq!(shown_history(&html).len(), 1);
    assert_eq!(
        shown_history(&html)[0].0,
        api["history"][0]["due"].as_str().unwrap()
    );
    assert!(
        html.contains("href=\"/jobs/centre-mairie?limit=1000\""),
        "{html}"
    );
}

#[test]
fn the_unexpected_deposits_page_lists_what_the_api_lists() {
    let d = demo();
    let server = d.serve();
    let html = server.page("/unexpected");
    let api = server.api("/api/unexpected");
    let list = api["unexpected"].as_array().unwrap();
    assert!(!list.is_empty());
    assert_eq!(html.matches("<tr class=\"deposit\">").count(), list.len());
    for u in list {
        for k in ["path", "reason"] {
            let v = u[k].as_str().unwrap();
            assert!(unescape(&html).contains(v), "{k} {v} not shown\n{html}");
        }
        for k in ["first_seen", "last_seen"] {
            assert!(html.contains(&format!("datetime=\"{}\"", u[k].as_str().unwrap())));
        }
    }
    assert!(html.contains("annexe-inconnue"));
    // And with none: said so.
    let m = monitor(&[job(
        "a",
        CENTRE,
        "mairie",
        "postgres",
        "frequency: daily, at: \"02:00\"",
    )]);
    m.scan_at(Utc::now());
    let server = m.serve();
    let html = server.page("/unexpected");
    assert!(html.contains("id=\"no-unexpected\""), "{html}");
    // Nor a job: the dashboard says the configuration has none.
    let m = monitor(&[]);
    let server = m.serve();
    let html = server.page("/");
    assert!(html.contains("No job is expected"), "{html}");
    assert!(html.contains("No scan recorded yet."), "{html}");
    assert_eq!(shown_count(&html, "ALL"), 0);
}

/// Company, city, site, database, id, the agent's error and a deposit's name, all hostile:
/// text on the page, never markup. (A company name cannot hold a `/`, being a directory
/// name; the agent's error carries a whole `<script>…</script>`.)
#[test]
fn values_from_deposits_reports_and_the_config_are_text() {
    let m = hostile_monitor();
    let server = m.serve();
    let api = server.api("/api/jobs");
    let id = api["jobs"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(api["jobs"][0]["status"], "FAILED", "{api:#}");
    let pages = [
        server.page("/"),
        server.page(&format!("/jobs/{}", urlencode(&id))),
        server.page("/unexpected"),
        server.get(&format!("/jobs/{}x", urlencode(&id))).body,
    ];
    for html in &pages {
        let lower = html.to_lowercase();
        for markup in ["<script", "<img", "<b>site", "<i>db"] {
            assert!(!lower.contains(markup), "{markup} in\n{html}");
        }
    }
    let text = unescape(&pages[0]);
    for v in [
        "<script>alert(1)</script>",
        "<script>alert('company')",
        "<img src=x onerror=alert(2)>",
        "\"><b>site",
    ] {
        assert!(text.contains(v), "{v} not shown as text\n{}", pages[0]);
    }
    assert_eq!(
        shown_statuses(&pages[0]),
        [(id.clone(), "FAILED".to_string())]
    );
    assert!(unescape(&pages[1]).contains("<script>alert(1)</script>"));
    assert!(
        unescape(&pages[2]).contains("<script>alert(3)"),
        "{}",
        pages[2]
    );
    assert!(
        unescape(&pages[3]).contains(&format!("no job `{id}x`")),
        "{}",
        pages[3]
    );
}

/// One job whose every name is markup, a failed backup whose error is a script, and an
/// unexpected site named like a tag.
fn hostile_monitor() -> Mon {
    let site: Site = (
        "<script>alert('company')",
        "<img src=x onerror=alert(2)>",
        "\"><b>site",
    );
    let m = monitor(&[job(
        "<script>alert(4)&amp;",
        site,
        "<i>db",
        "postgres",
        "frequency: daily, at: \"02:00\"",
    )]);
    let day = (Utc::now() - Span::minutes(270)).date_naive();
    let due = day.and_hms_opt(2, 0, 0).unwrap().and_utc();
    m.scan_at(due - Span::hours(1));
    let mut l = line("<i>db", "postgres", "x.dump", b"x", due, 1.0);
    l["status"] = json!("failed");
    l["error"] = json!("<script>alert(1)</script>");
    m.report(site, &stamp(due + Span::minutes(5)), vec![l]);
    let unexpected: Site = ("<script>alert(3)", "x", "y");
    m.deposit(unexpected, "db", "postgres", "f.dump", b"f");
    m.scan_at(due + Span::hours(2));
    m
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn unknown_pages_and_bad_queries_are_html_errors_and_the_api_stays_json() {
    let d = demo();
    let server = d.serve();
    let html_error = |path: &str, code: u16, says: &str| {
        let r = server.get(path);
        assert_eq!(r.code, code, "GET {path}\n{}", r.body);
        assert_eq!(
            r.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        assert!(r.body.contains("<html lang=\"en\">"), "{path}");
        assert!(
            unescape(&r.body).contains(says),
            "GET {path}: {says:?} not in\n{}",
            r.body
        );
        assert!(r.body.contains(&format!("<h2>{code} ")), "{path}");
    };
    html_error("/nope", 404, "no such page");
    html_error("/jobs/", 404, "no such page");
    html_error("/jobs/nobody", 404, "no job `nobody`");
    html_error("/jobs/centre-mairie/more", 404, "no such page");
    html_error(
        "/?status=BROKEN",
        400,
        "status `BROKEN`: not a status (one of OK, FAILED",
    );
    html_error("/?x=1", 400, "unknown query parameter `x`");
    html_error("/?q=a&q=b", 400, "query parameter `q` given twice");
    html_error("/?q=%ff", 400, "not valid percent-encoded UTF-8");
    html_error(
        "/jobs/centre-mairie?limit=0",
        400,
        "limit `0`: not a whole number from 1 to 1000",
    );
    html_error("/jobs/centre-mairie?limit=1001", 400, "limit `1001`");
    html_error("/jobs/centre-mairie?limit=abc", 400, "limit `abc`");
    html_error(
        "/jobs/centre-mairie?since=2026-01-01",
        400,
        "unknown query parameter `since`",
    );
    html_error("/unexpected?all=1", 400, "this endpoint takes none");
    html_error("/jobs/%ff", 400, "UTF-8");
    // The API's own paths keep their JSON answers, the unknown ones included.
    for path in ["/api/nope", "/api", "/api/jobs/nobody", "/api/jobs/x/y/z"] {
        let r = server.get(path);
        assert_eq!(r.code, 404, "{path}");
        assert!(
            r.header("content-type")
                .unwrap()
                .starts_with("application/json"),
            "{path}: {:?}",
            r.header("content-type")
        );
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["status"], 404, "{path}");
    }
    let r = server.get("/api/jobs?status=BROKEN");
    assert_eq!(r.code, 400);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    // Every page forbids scripts and caching.
    let r = server.get("/");
    let csp = r.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
}

#[test]
fn an_unreadable_history_is_a_503_page_with_the_reason() {
    let d = demo();
    let server = d.serve();
    // The server checked the history when it started; no request has opened it since.
    let db = d.dir.join("history/monitor.db");
    std::fs::write(&db, vec![b'x'; 8192]).unwrap();
    for path in ["/", "/jobs/centre-mairie", "/unexpected", "/?status=OK"] {
        let r = server.get(path);
        assert_eq!(r.code, 503, "{path}\n{}", r.body);
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        let text = unescape(&r.body);
        assert!(
            text.contains("the monitor's history cannot be read:")
                && text.contains("not a database"),
            "{path}: {}",
            r.body
        );
        assert!(
            r.body
                .contains("<meta http-equiv=\"refresh\" content=\"60\">"),
            "retries by itself"
        );
    }
    // A bad query is still the client's fault first.
    assert_eq!(server.get("/?status=BROKEN").code, 400);
    // The API says the same in JSON.
    let r = server.get("/api/jobs");
    assert_eq!(r.code, 503);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
}

// ------------------------------------------------------------------------------------------
// In a real browser.

/// Debian's chromium, headless, on a fresh profile, in its own process group: bounded by
/// `timeout`, and no process of the group left behind, however it ends.
fn chromium(args: &[String], timeout: Duration) -> String {
    let bin = match std::env::var_os("MAIRIE_DBA_TEST_CHROMIUM") {
        Some(p) => {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "MAIRIE_DBA_TEST_CHROMIUM={}: no such browser",
                p.display()
            );
            p
        }
        None => std::env::var_os("PATH")
            .and_then(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join("chromium"))
                    .find(|c| c.is_file())
            })
            .unwrap_or_else(|| {
                panic!(
                    "chromium is not installed: the browser tests need Debian's chromium \
                     (bash scripts/dev-services.sh installs it, or: apt-get install chromium; \
                     MAIRIE_DBA_TEST_CHROMIUM may name another)"
                )
            }),
    };
    let profile = std::env::temp_dir().join(format!(
        "mairie-dba-chromium-{}-{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    std::fs::create_dir_all(&profile).unwrap();
    let mut child = Command::new(&bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--disable-extensions",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .env("HOME", &profile)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
    let group = child.id() as i32;
    let pipe = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = pipe(Box::new(child.stdout.take().unwrap()));
    let err = pipe(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > timeout {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // The whole group, whether chromium ended or not: its helpers must not outlive it.
    // SAFETY: a signal to the process group this test made for chromium.
    unsafe { libc::kill(-group, libc::SIGKILL) };
    let _ = child.wait();
    let left = wait_group_gone(group, Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&profile);
    assert!(left.is_empty(), "chromium processes left behind: {left:?}");
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    match status {
        None => panic!("chromium {args:?} did not finish within {timeout:?}\n--- stderr\n{err}"),
        Some(s) if !s.success() => panic!("chromium {args:?}: {s}\n--- stderr\n{err}"),
        Some(_) => out,
    }
}

/// The processes still in `group` once they had `limit` to go.
fn wait_group_gone(group: i32, limit: Duration) -> Vec<i32> {
    let start = Instant::now();
    loop {
        let left: Vec<i32> = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| {
                        // pid (comm) state ppid pgrp …: comm may hold spaces and parentheses.
                        let after = &s[s.rfind(')')? + 2..];
                        let f: Vec<&str> = after.split(' ').collect();
                        // A zombie has ended already; only its parent's wait remains.
                        Some(f[0] != "Z" && f.get(2)?.parse::<i32>().ok()? == group)
                    })
                    .unwrap_or(false)
            })
            .collect();
        if left.is_empty() || start.elapsed() > limit {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn dump_dom(url: &str) -> String {
    let dom = chromium(&["--dump-dom".into(), url.into()], Duration::from_secs(90));
    assert!(dom.contains("</html>"), "no DOM for {url}: {dom}");
    dom
}

#[test]
fn a_browser_shows_the_apis_statuses_and_follows_a_job_to_its_history() {
    let d = demo();
    let server = d.serve();
    let dom = dump_dom(&server.url("/"));
    let api = server.api("/api/jobs");
    let shown = shown_statuses(&dom);
    assert_eq!(sorted(shown.clone()), sorted(api_statuses(&api)), "{dom}");
    assert_eq!(shown.len(), 11);
    // Follow the link of the job with the failed backup, as a person would.
    let row = dom.split("data-job-id=\"aix-finances\"").nth(1).unwrap();
    let href = attrs(row, "href").into_iter().next().unwrap();
    assert_eq!(href, "/jobs/aix-finances");
    let page = dump_dom(&server.url(&href));
    let history = shown_history(&page);
    let want: Vec<(String, String)> = server.api("/api/jobs/aix-finances/history")["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["due"].as_str().unwrap().into(),
                e["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(history, want, "{page}");
    assert_eq!(
        history.iter().map(|h| h.1.as_str()).collect::<Vec<_>>(),
        ["FAILED", "OK", "OK"]
    );
    assert!(page.contains("<polyline"), "the charts are drawn: {page}");
    // A filter, as the form sends it.
    let dom = dump_dom(&server.url("/?status=OK&q="));
    let ok = shown_statuses(&dom);
    assert!(
        !ok.is_empty() && ok.iter().all(|(_, s)| s == "OK"),
        "{ok:?}"
    );
    // And what they look like: the dashboard, and the job's page.
    for (name, path) in [("dashboard", "/"), ("job", "/jobs/aix-finances")] {
        let shot = Path::new(ROOT).join(format!("target/monitor-{name}.png"));
        let _ = std::fs::remove_file(&shot);
        chromium(
            &[
                format!("--screenshot={}", shot.display()),
                "--window-size=1280,900".into(),
                "--hide-scrollbars".into(),
                server.url(path),
            ],
            Duration::from_secs(90),
        );
        let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000,
            "{}: {} bytes",
            shot.display(),
            png.len()
        );
    }
}

#[test]
fn a_browser_shows_markup_from_a_deposit_as_text() {
    let m = hostile_monitor();
    let server = m.serve();
    let dom = dump_dom(&server.url("/"));
    // The serialised DOM has no element the deposit or the config named: only text.
    let lower = dom.to_lowercase();
    for markup in ["<script", "<img", "<b>site", "<i>db"] {
        assert!(!lower.contains(markup), "{markup} in the DOM\n{dom}");
    }
    let text = unescape(&dom);
    assert!(text.contains("<script>alert(1)</script>"), "{dom}");
    assert!(text.contains("<img src=x onerror=alert(2)>"), "{dom}");
    let api = server.api("/api/jobs");
    assert_eq!(shown_statuses(&dom), api_statuses(&api));
    // The job's link, its id percent-encoded, leads to its page.
    let href = attrs(dom.split("data-job-id=").nth(1).unwrap(), "href")
        .into_iter()
        .next()
        .unwrap();
    let page = dump_dom(&server.url(&href));
    let id = api["jobs"][0]["id"].as_str().unwrap();
    assert!(
        unescape(&page).contains(&format!("<span id=\"job-id\">{id}</span>")),
        "{page}"
    );
    assert_eq!(shown_history(&page).len(), 1, "{page}");
}
