//! A notice's words: the subject, the plain-text body with one line per job, its HTML
//! alternative, and the webhook's JSON (a `text` for chat tools, `changes` for programs).
//!
//! Messages and names come from the agents' reports and deposits, which are untrusted: in
//! text they lose their control characters (no line or header of their own), in HTML they
//! are escaped.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{Change, Kind};
use crate::monitor::{stamp, unstamp, JobStatus};
use crate::output::Status;

/// The longest message shown for one job, in characters.
const MESSAGE_MAX: usize = 300;

/// One notice, in every form a channel needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The webhook's body.
    pub json: String,
}

impl Notice {
    pub fn compose(changes: &[Change], now: DateTime<Utc>, host: &str) -> Notice {
        let subject = subject(changes);
        let sections = sections(changes);
        let mut text = format!(
            "mairie-dba backup monitor on {}, scan at {}\n",
            clean(host),
            stamp(now)
        );
        let mut html = format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head>\n<body style=\"font-family: sans-serif\">\n<p>mairie-dba backup monitor on {}, scan at {}</p>\n",
            escape(&subject),
            escape(host),
            stamp(now)
        );
        let mut chat = vec![subject.clone()];
        for (title, rows) in &sections {
            text.push_str(&format!("\n{title}:\n"));
            html.push_str(&format!(
                "<h3>{}</h3>\n<table border=\"1\" cellpadding=\"4\" cellspacing=\"0\">\n<tr><th>job</th><th>company/city/site</th><th>database</th><th>status</th><th>due</th><th>message</th></tr>\n",
                escape(title)
            ));
            for c in rows {
                let l = line(c);
                text.push_str(&format!("  {l}\n"));
                chat.push(format!("- {l}"));
                html.push_str(&format!(
                    "<tr><td>{}</td><td>{}/{}/{}</td><td>{} ({})</td><td><b>{}</b></td><td>{}</td><td>{}</td></tr>\n",
                    escape(&c.job),
                    escape(&c.company),
                    escape(&c.city),
                    escape(&c.site),
                    escape(&c.database),
                    escape(&c.engine),
                    escape(&transition(c)),
                    escape(c.due.as_deref().unwrap_or("")),
                    escape(&short(&c.message)),
                ));
            }
            html.push_str("</table>\n");
        }
        text.push_str(
            "\nAlerts are sent when a job's status changes, when it is OK again, and as a reminder while it stays bad.\n`mairie-dba monitor status` shows every job.\n",
        );
        html.push_str("</body></html>\n");
        let json = json!({
            "text": chat.join("\n"),
            "subject": subject,
            "status": level(changes).as_str(),
            "source": "mairie-dba monitor",
            "host": host,
            "scan_at": stamp(now),
            "changes": changes,
        })
        .to_string();
        Notice {
            subject,
            text,
            html,
            json,
        }
    }
}

/// The worst status a notice speaks of (the statuses passed through included).
fn level(changes: &[Change]) -> Status {
    changes
        .iter()
        .flat_map(|c| c.via.iter().copied().chain([c.new_status]))
        .map(JobStatus::check_status)
        .max()
        .unwrap_or(Status::Ok)
}

/// `[mairie-dba monitor] CRITICAL: 2 MISSING, 1 FAILED, 1 back to OK, 1 still UNKNOWN`.
pub fn subject(changes: &[Change]) -> String {
    let mut parts = Vec::new();
    for s in JobStatus::ALL {
        let n = changes
            .iter()
            .filter(|c| c.kind == Kind::Change && c.new_status == s)
            .count();
        if n > 0 {
            parts.push(format!("{n} {s}"));
        }
    }
    let back = changes.iter().filter(|c| c.kind == Kind::Recovery).count();
    if back > 0 {
        parts.push(format!("{back} back to OK"));
    }
    for s in JobStatus::ALL {
        let n = changes
            .iter()
            .filter(|c| c.kind == Kind::Reminder && c.new_status == s)
            .count();
        if n > 0 {
            parts.push(format!("{n} still {s}"));
        }
    }
    let level = match level(changes) {
        Status::Ok | Status::Success => "OK".to_string(),
        s => s.as_str().to_uppercase(),
    };
    format!("[mairie-dba monitor] {level}: {}", parts.join(", "))
}

fn sections(changes: &[Change]) -> Vec<(&'static str, Vec<&Change>)> {
    let pick = |k: Kind| -> Vec<&Change> {
        let mut v: Vec<&Change> = changes.iter().filter(|c| c.kind == k).collect();
        // The worst first, then in the configuration's order.
        v.sort_by_key(|c| std::cmp::Reverse(c.new_status.check_status()));
        v
    };
    [
        ("Changed", pick(Kind::Change)),
        ("Back to OK", pick(Kind::Recovery)),
        ("Still bad (reminder)", pick(Kind::Reminder)),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .collect()
}

/// `MISSING → OK`, `OK → MISSING → OK`, or for a reminder `MISSING since …`.
fn transition(c: &Change) -> String {
    if c.kind == Kind::Reminder {
        return format!("{} since {}", c.new_status, c.since);
    }
    let mut steps = vec![c.old_status.unwrap_or(JobStatus::Pending)];
    steps.extend(&c.via);
    steps.push(c.new_status);
    steps
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" → ")
}

/// One job: id, company/city/site, database, old → new status, due time, message.
fn line(c: &Change) -> String {
    let mut l = format!(
        "{}  {}/{}/{}  {} ({})  {}",
        clean(&c.job),
        clean(&c.company),
        clean(&c.city),
        clean(&c.site),
        clean(&c.database),
        clean(&c.engine),
        transition(c)
    );
    if let Some(due) = &c.due {
        l.push_str(&format!("  due {due}"));
    }
    let m = short(&c.message);
    if !m.is_empty() {
        l.push_str(&format!("  {m}"));
    }
    l
}

/// Text without control characters (a report's message cannot start a line or a header).
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn short(s: &str) -> String {
    let s = clean(s.trim());
    if s.chars().count() <= MESSAGE_MAX {
        return s;
    }
    let mut t: String = s.chars().take(MESSAGE_MAX).collect();
    t.push('…');
    t
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The first line of a notice delivered late: when it was queued, how many tries failed.
pub fn delayed_note(created_at: &str, attempts: i64, now: DateTime<Utc>) -> String {
    let late = unstamp(created_at).is_some_and(|t| t < now);
    if attempts == 0 && !late {
        return String::new();
    }
    format!(
        "(Delivered late: queued by the scan at {created_at}; {attempts} earlier delivery attempt(s) failed.)\n\n"
    )
}

/// This machine's name, to say which monitor speaks.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(kind: Kind, old: Option<JobStatus>, new: JobStatus) -> Change {
        Change {
            kind,
            job: "centre-mairie".into(),
            company: "ville".into(),
            city: "marseille".into(),
            site: "centre".into(),
            database: "mairie".into(),
            engine: "postgres".into(),
            old_status: old,
            new_status: new,
            via: vec![],
            since: "2026-12-06T03:00:00Z".into(),
            due: Some("2026-12-06T02:00:00Z".into()),
            message: "no report from site\nville/marseille/centre".into(),
        }
    }

    #[test]
    fn the_subject_counts_by_kind_and_status() {
        use JobStatus::*;
        let c = [
            change(Kind::Change, Some(Ok), Missing),
            change(Kind::Change, Some(Ok), Missing),
            change(Kind::Change, None, Failed),
            change(Kind::Recovery, Some(Failed), Ok),
            change(Kind::Reminder, Some(Unknown), Unknown),
        ];
        assert_eq!(
            subject(&c),
            "[mairie-dba monitor] UNKNOWN: 1 FAILED, 2 MISSING, 1 back to OK, 1 still UNKNOWN"
        );
        assert_eq!(subject(&c[3..4]), "[mairie-dba monitor] OK: 1 back to OK");
        let mut via = change(Kind::Recovery, Some(Ok), Ok);
        via.via = vec![Missing];
        assert_eq!(
            subject(&[via]),
            "[mairie-dba monitor] CRITICAL: 1 back to OK"
        );
    }

    #[test]
    fn a_body_line_per_job_and_nothing_unescaped() {
        let mut c = change(Kind::Change, Some(JobStatus::Ok), JobStatus::Missing);
        c.company = "<script>".into();
        let n = Notice::compose(&[c], unstamp("2026-12-06T03:00:00Z").unwrap(), "srv");
        assert!(n.text.contains(
            "  centre-mairie  <script>/marseille/centre  mairie (postgres)  OK → MISSING  due 2026-12-06T02:00:00Z  no report from site ville/marseille/centre\n"
        ), "{}", n.text);
        assert!(!n.html.contains("<script>") && n.html.contains("&lt;script&gt;"));
        let v: serde_json::Value = serde_json::from_str(&n.json).unwrap();
        assert_eq!(v["changes"][0]["new_status"], "MISSING");
        assert_eq!(v["status"], "critical");
        assert!(v["text"]
            .as_str()
            .unwrap()
            .starts_with("[mairie-dba monitor] CRITICAL: 1 MISSING\n- centre-mairie"));
    }
}
