//! Alerts: after each scan, what changed is told once, by e-mail and/or a webhook.
//!
//! The history keeps, per job, the status the alerts last knew and when they last spoke of it
//! (`monitor_notify_state`). After a scan each configured job's current status (its latest
//! judged occurrence) is compared with it:
//!
//! - a different status is a change (`OK → MISSING`), or a recovery when it is OK again;
//! - an occurrence judged bad by this scan between two equal statuses (a scan catching up:
//!   `OK → MISSING → OK`) is told too;
//! - the same bad status (critical or unknown) is recalled every `remind_hours`;
//! - a job seen for the first time and OK is news to no one: nothing is sent (the first scan
//!   of a new monitor is silent when all is well).
//!
//! Everything found by one scan makes one notice, queued in `monitor_notify_outbox` (one row
//! per channel) in the same transaction that moves the jobs' state on: a notice is never
//! both decided and lost. Pending notices are then delivered, oldest first; a failed delivery
//! stays pending with its error (shown by `monitor status`) and is tried again after the next
//! scan. Nothing here fails the scan: its outcome lists what was sent and what failed.

mod email;
mod message;
mod webhook;

use std::collections::HashMap;

use anyhow::Result;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::config::NotifySection;
use super::history::{opt_time, text, History, Val};
use super::scan::Judgement;
use super::{stamp, unstamp, JobStatus, MonitorConfig};
use crate::output::Status;

pub use message::Notice;

/// Pending notices delivered per channel and scan, at most: a long outage of the mail server
/// is caught up over a few scans, not in one burst.
const DELIVER_PER_SCAN: usize = 20;

/// Delivered and dropped notices kept in the outbox, for the record.
const KEEP_DONE: i64 = 1000;

/// Why a job is in a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A new status that is not OK.
    Change,
    /// Back to OK.
    Recovery,
    /// Still bad, `remind_hours` after the last notice.
    Reminder,
}

/// One job in a notice.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub kind: Kind,
    pub job: String,
    pub company: String,
    pub city: String,
    pub site: String,
    pub database: String,
    pub engine: String,
    /// The status the alerts knew (None: the job's first status).
    pub old_status: Option<JobStatus>,
    pub new_status: JobStatus,
    /// Statuses judged by this scan in between (a scan catching up on several occurrences).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub via: Vec<JobStatus>,
    /// Since when the job has had its status, as far as the alerts know.
    pub since: String,
    /// The due time of the occurrence that gave the status.
    pub due: Option<String>,
    pub message: String,
}

/// What the alerts did after a scan.
#[derive(Debug, Default, Serialize)]
pub struct Outcome {
    /// The jobs of the notice queued by this scan.
    pub changes: Vec<Change>,
    /// Notices delivered by this scan (this one or older ones).
    pub sent: Vec<Sent>,
    /// Delivery failures and other errors: logged, and the notices kept.
    pub errors: Vec<String>,
    /// Notices still waiting, to be tried again after the next scan.
    pub pending: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sent {
    pub channel: String,
    pub id: i64,
    pub subject: String,
}

impl Outcome {
    /// One line for people: what was queued, sent and what failed.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if !self.changes.is_empty() {
            parts.push(format!("{} job(s) to notify", self.changes.len()));
        }
        if !self.sent.is_empty() {
            parts.push(format!("{} notice(s) sent", self.sent.len()));
        }
        if !self.errors.is_empty() {
            parts.push(format!("{} delivery error(s)", self.errors.len()));
        }
        if self.pending > 0 {
            parts.push(format!(
                "{} notice(s) pending, retried after the next scan",
                self.pending
            ));
        }
        if parts.is_empty() {
            parts.push("nothing to notify".into());
        }
        format!("alerts: {}", parts.join(", "))
    }
}

/// The alerts' work after a scan: None when `monitor.notify` is not configured. `judged` are
/// the judgements this scan recorded (new ones only).
pub async fn after_scan<'a>(
    cfg: &MonitorConfig,
    history: &History,
    judged: impl IntoIterator<Item = &'a Judgement>,
    now: DateTime<Utc>,
) -> Option<Outcome> {
    let notify = cfg.notify.as_ref()?;
    let mut out = Outcome::default();
    match detect(cfg, notify, history, judged, now).await {
        Ok(found) => {
            let notice = (!found.changes.is_empty())
                .then(|| Notice::compose(&found.changes, now, &message::host_name()));
            match queue(notify, history, &found, notice.as_ref(), now).await {
                Ok(()) => out.changes = found.changes,
                Err(e) => out.errors.push(format!(
                    "alerts: recording this scan's notice in the history: {e:#} (it is worked out again by the next scan)"
                )),
            }
        }
        Err(e) => out.errors.push(format!(
            "alerts: reading the jobs' statuses from the history: {e:#} (worked out again by the next scan)"
        )),
    }
    deliver(notify, history, now, &mut out).await;
    match pending_count(history).await {
        Ok(n) => out.pending = n,
        Err(e) => out
            .errors
            .push(format!("alerts: counting pending notices: {e:#}")),
    }
    Some(out)
}

/// What the alerts' state should become, and the jobs to tell about.
struct Found {
    changes: Vec<Change>,
    /// Rows of `monitor_notify_state` to write.
    states: Vec<JobAlertState>,
}

/// What the alerts know of a job: its status, since when, when it was last told.
struct JobAlertState {
    job: String,
    status: JobStatus,
    since: DateTime<Utc>,
    notified_at: Option<DateTime<Utc>>,
}

fn state(
    job: &str,
    status: JobStatus,
    since: DateTime<Utc>,
    notified_at: Option<DateTime<Utc>>,
) -> JobAlertState {
    JobAlertState {
        job: job.to_string(),
        status,
        since,
        notified_at,
    }
}

struct Known {
    status: Option<JobStatus>,
    since: Option<DateTime<Utc>>,
    notified_at: Option<DateTime<Utc>>,
}

/// A status the alerts recall until it changes: critical or unknown (UNCHANGED, a warning,
/// is told once).
fn is_bad(s: JobStatus) -> bool {
    matches!(s.check_status(), Status::Critical | Status::Unknown)
}

async fn detect<'a>(
    cfg: &MonitorConfig,
    notify: &NotifySection,
    history: &History,
    judged: impl IntoIterator<Item = &'a Judgement>,
    now: DateTime<Utc>,
) -> Result<Found> {
    // Each job's latest judged occurrence: its current status.
    let rows = history
        .latest_per_job(
            "monitor_occurrences",
            "o.status, o.due_at, o.message",
            "due_at",
            "",
            "",
            &[],
        )
        .await?;
    let mut current: HashMap<String, (JobStatus, String, String)> = HashMap::new();
    for (id, r) in rows {
        let cell = |i: usize| r.get(i).cloned().flatten();
        if let (Some(status), Some(due)) = (cell(0).as_deref().and_then(JobStatus::parse), cell(1))
        {
            current.insert(id, (status, due, cell(2).unwrap_or_default()));
        }
    }
    let mut known: HashMap<String, Known> = HashMap::new();
    for r in history
        .query(
            "SELECT job_id, status, since, notified_at FROM monitor_notify_state",
            &[],
        )
        .await?
    {
        let cell = |i: usize| r.get(i).cloned().flatten();
        if let Some(id) = cell(0) {
            known.insert(
                id,
                Known {
                    status: cell(1).as_deref().and_then(JobStatus::parse),
                    since: cell(2).as_deref().and_then(unstamp),
                    notified_at: cell(3).as_deref().and_then(unstamp),
                },
            );
        }
    }
    // This scan's judgements per job, in due order: what happened in between.
    let mut this_scan: HashMap<&str, Vec<&Judgement>> = HashMap::new();
    for j in judged {
        this_scan.entry(j.job.as_str()).or_default().push(j);
    }
    for v in this_scan.values_mut() {
        v.sort_by_key(|j| j.due);
    }
    let remind = (notify.remind_hours > 0).then(|| Duration::hours(i64::from(notify.remind_hours)));

    let mut found = Found {
        changes: Vec::new(),
        states: Vec::new(),
    };
    for job in &cfg.jobs {
        let Some((status, due, message)) = current.get(&job.id) else {
            continue; // never judged: PENDING, nothing to say
        };
        let status = *status;
        let k = known.get(&job.id);
        let old = match k {
            Some(k) => k.status,
            None => None,
        };
        let via = between(
            old,
            status,
            due,
            this_scan
                .get(job.id.as_str())
                .map(Vec::as_slice)
                .unwrap_or(&[]),
        );
        let change = |kind: Kind, old_status: Option<JobStatus>, since: DateTime<Utc>| Change {
            kind,
            job: job.id.clone(),
            company: job.company.clone(),
            city: job.city.clone(),
            site: job.site.clone(),
            database: job.database.clone(),
            engine: job.engine.clone(),
            old_status,
            new_status: status,
            via: via.clone(),
            since: stamp(since),
            due: Some(due.clone()),
            message: message.clone(),
        };
        let kind = if status == JobStatus::Ok {
            Kind::Recovery
        } else {
            Kind::Change
        };
        match k {
            None if status == JobStatus::Ok && via.is_empty() => {
                // First seen, and well: known from now on, told to no one.
                found.states.push(state(&job.id, status, now, None));
            }
            None => {
                // First seen by the alerts (a new job, or alerts newly configured): the
                // status before it, if any, is the history's.
                let before = previous_status(history, &job.id, due).await?;
                found.changes.push(change(kind, before, now));
                found.states.push(state(&job.id, status, now, Some(now)));
            }
            Some(k) if k.status != Some(status) || !via.is_empty() => {
                found.changes.push(change(kind, old, now));
                found.states.push(state(&job.id, status, now, Some(now)));
            }
            Some(k) => {
                let due_for_reminder = is_bad(status)
                    && remind.is_some_and(|r| k.notified_at.is_none_or(|at| now >= at + r));
                if due_for_reminder {
                    let since = k.since.unwrap_or(now);
                    found.changes.push(change(Kind::Reminder, old, since));
                    found.states.push(state(&job.id, status, since, Some(now)));
                }
            }
        }
    }
    Ok(found)
}

/// The statuses this scan judged between the known one and the current one: `judged` (one
/// job's, in due order) without the occurrence that is the current status, consecutive
/// repeats and a leading run equal to the known status taken out.
fn between(
    old: Option<JobStatus>,
    current: JobStatus,
    current_due: &str,
    judged: &[&Judgement],
) -> Vec<JobStatus> {
    let mut via: Vec<JobStatus> = Vec::new();
    for j in judged {
        if stamp(j.due) == current_due {
            continue;
        }
        if via.last() != Some(&j.status) && !(via.is_empty() && Some(j.status) == old) {
            via.push(j.status);
        }
    }
    if via.last() == Some(&current) {
        via.pop();
    }
    via
}

async fn previous_status(history: &History, job: &str, due: &str) -> Result<Option<JobStatus>> {
    Ok(history
        .query_value(
            "SELECT status FROM monitor_occurrences WHERE job_id = $1 AND due_at < $2 ORDER BY due_at DESC LIMIT 1",
            &[text(job), text(due)],
        )
.await?
        .as_deref()
        .and_then(JobStatus::parse))
}

/// The channels configured, by name.
fn channels(notify: &NotifySection) -> Vec<&'static str> {
    let mut v = Vec::new();
    if notify.email.is_some() {
        v.push("email");
    }
    if notify.webhook.is_some() {
        v.push("webhook");
    }
    v
}

/// Queues the notice for every channel and moves the jobs' state on, in one transaction.
async fn queue(
    notify: &NotifySection,
    history: &History,
    found: &Found,
    notice: Option<&Notice>,
    now: DateTime<Utc>,
) -> Result<()> {
    if found.states.is_empty() {
        return Ok(());
    }
    history.batch("BEGIN").await?;
    let res = queue_in(notify, history, found, notice, now).await;
    match &res {
        Ok(()) => history.batch("COMMIT").await?,
        Err(_) => {
            let _ = history.batch("ROLLBACK").await;
        }
    }
    res
}

async fn queue_in(
    notify: &NotifySection,
    history: &History,
    found: &Found,
    notice: Option<&Notice>,
    now: DateTime<Utc>,
) -> Result<()> {
    if let Some(n) = notice {
        for channel in channels(notify) {
            // Scans are serialised by the scan lock: the next id cannot be taken twice.
            let id = next_id(history).await?;
            let (body, html) = match channel {
                "email" => (n.text.clone(), Some(n.html.clone())),
                _ => (n.json.clone(), None),
            };
            history
                .exec(
                    "INSERT INTO monitor_notify_outbox (id, created_at, channel, state, subject, body, html, attempts) \
                     VALUES ($1, $2, $3, 'pending', $4, $5, $6, 0)",
                    &[
                        Val::Int(Some(id)),
                        text(stamp(now)),
                        text(channel),
                        text(&n.subject),
                        text(body),
                        Val::Text(html),
                    ],
                )
                .await?;
        }
    }
    for st in &found.states {
        history
            .exec(
                "INSERT INTO monitor_notify_state (job_id, status, since, notified_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (job_id) DO UPDATE SET status = excluded.status, since = excluded.since, \
                 notified_at = excluded.notified_at",
                &[
                    text(&st.job),
                    text(st.status.as_str()),
                    text(stamp(st.since)),
                    opt_time(st.notified_at),
                ],
            )
            .await?;
    }
    Ok(())
}

async fn next_id(history: &History) -> Result<i64> {
    let max = history
        .query_value(
            "SELECT CAST(max(id) AS TEXT) FROM monitor_notify_outbox",
            &[],
        )
        .await?
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(0);
    Ok(max + 1)
}

struct Pending {
    id: i64,
    created_at: String,
    subject: String,
    body: String,
    html: Option<String>,
    attempts: i64,
}

/// Delivers the pending notices of each configured channel, oldest first, stopping a
/// channel at its first failure (the server is down: the rest waits for the next scan).
async fn deliver(notify: &NotifySection, history: &History, now: DateTime<Utc>, out: &mut Outcome) {
    if let Err(e) = drop_unconfigured(notify, history, now, out).await {
        out.errors.push(format!("alerts: {e:#}"));
    }
    for channel in channels(notify) {
        let pending = match pending_of(history, channel).await {
            Ok(p) => p,
            Err(e) => {
                out.errors.push(format!(
                    "alerts: reading the pending {channel} notices: {e:#}"
                ));
                continue;
            }
        };
        for p in pending {
            let res = match channel {
                "email" => match &notify.email {
                    Some(cfg) => {
                        let text = message::delayed_note(&p.created_at, p.attempts, now) + &p.body;
                        email::send(cfg, &p.subject, &text, p.html.as_deref()).await
                    }
                    None => continue,
                },
                _ => match &notify.webhook {
                    Some(cfg) => webhook::post(cfg, &p.body).await,
                    None => continue,
                },
            };
            let failed = res.is_err();
            let recorded = match res {
                Ok(()) => {
                    out.sent.push(Sent {
                        channel: channel.into(),
                        id: p.id,
                        subject: p.subject.clone(),
                    });
                    history
                        .exec(
                            "UPDATE monitor_notify_outbox SET state = 'sent', attempts = attempts + 1, \
                             last_attempt_at = $1, sent_at = $2 WHERE id = $3",
                            &[text(stamp(now)), text(stamp(now)), Val::Int(Some(p.id))],
                        )
                        .await
                }
                Err(e) => {
                    let e = format!("{channel} notice #{} (\"{}\"): {e}", p.id, p.subject);
                    out.errors.push(format!(
                        "alerts: delivering the {e} (kept, tried again after the next scan)"
                    ));
                    history
                        .exec(
                            "UPDATE monitor_notify_outbox SET attempts = attempts + 1, last_attempt_at = $1, \
                             last_error = $2, last_error_at = $3 WHERE id = $4",
                            &[text(stamp(now)), text(e), text(stamp(now)), Val::Int(Some(p.id))],
                        )
                        .await
                }
            };
            if let Err(e) = recorded {
                out.errors.push(format!(
                    "alerts: recording the delivery of {channel} notice #{}: {e:#}",
                    p.id
                ));
            }
            if failed {
                break;
            }
        }
    }
    let prune = history
        .exec(
            "DELETE FROM monitor_notify_outbox WHERE state <> 'pending' AND id <= \
             (SELECT max(id) FROM monitor_notify_outbox) - $1",
            &[Val::Int(Some(KEEP_DONE))],
        )
        .await;
    if let Err(e) = prune {
        out.errors
            .push(format!("alerts: pruning the delivered notices: {e:#}"));
    }
}

/// Pending notices of a channel no longer configured are dropped, and said so.
async fn drop_unconfigured(
    notify: &NotifySection,
    history: &History,
    now: DateTime<Utc>,
    out: &mut Outcome,
) -> Result<()> {
    for channel in ["email", "webhook"] {
        if channels(notify).contains(&channel) {
            continue;
        }
        let n = history
            .exec(
                "UPDATE monitor_notify_outbox SET state = 'dropped', last_error = $1, last_error_at = $2 \
                 WHERE state = 'pending' AND channel = $3",
                &[
                    text(format!(
                        "dropped undelivered: monitor.notify.{channel} is no longer configured"
                    )),
                    text(stamp(now)),
                    text(channel),
                ],
            )
            .await?;
        if n > 0 {
            out.errors.push(format!(
                "alerts: {n} undelivered {channel} notice(s) dropped: monitor.notify.{channel} is no longer configured"
            ));
        }
    }
    Ok(())
}

async fn pending_of(history: &History, channel: &str) -> Result<Vec<Pending>> {
    let rows = history
        .query(
            "SELECT CAST(id AS TEXT), created_at, subject, body, html, CAST(attempts AS TEXT) \
             FROM monitor_notify_outbox WHERE state = 'pending' AND channel = $1 ORDER BY id LIMIT $2",
            &[text(channel), Val::Int(Some(DELIVER_PER_SCAN as i64))],
        )
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let cell = |i: usize| r.get(i).cloned().flatten();
            Some(Pending {
                id: cell(0)?.parse().ok()?,
                created_at: cell(1).unwrap_or_default(),
                subject: cell(2).unwrap_or_default(),
                body: cell(3).unwrap_or_default(),
                html: cell(4),
                attempts: cell(5).and_then(|s| s.parse().ok()).unwrap_or(0),
            })
        })
        .collect())
}

async fn pending_count(history: &History) -> Result<u64> {
    Ok(history
        .query_value(
            "SELECT CAST(count(*) AS TEXT) FROM monitor_notify_outbox WHERE state = 'pending'",
            &[],
        )
        .await?
        .and_then(|s| s.parse().ok())
        .unwrap_or(0))
}

/// The alerts' delivery state, as `monitor status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryStatus {
    /// Notices not delivered yet.
    pub pending: u64,
    /// When a notice was last delivered.
    pub last_sent_at: Option<String>,
    /// The last delivery error, delivered since or not.
    pub last_error: Option<DeliveryError>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryError {
    pub at: String,
    pub channel: String,
    pub error: String,
    /// Whether the notice it concerns is still waiting.
    pub pending: bool,
}

impl DeliveryStatus {
    /// Shown when alerts are configured, or when something of theirs is left to say.
    pub fn filter_shown(self, configured: bool) -> Option<DeliveryStatus> {
        (configured || self.pending > 0 || self.last_error.is_some()).then_some(self)
    }

    /// One line for people.
    pub fn line(&self) -> String {
        let mut l = format!("alerts: {} notice(s) pending", self.pending);
        match &self.last_sent_at {
            Some(at) => l.push_str(&format!(", last sent at {at}")),
            None => l.push_str(", none sent yet"),
        }
        if let Some(e) = &self.last_error {
            l.push_str(&format!(
                "; last delivery error at {} ({}{}): {}",
                e.at,
                e.channel,
                if e.pending {
                    ", still pending"
                } else {
                    ", delivered since"
                },
                e.error
            ));
        }
        l
    }
}

pub async fn delivery_status(history: &History) -> Result<DeliveryStatus> {
    let pending = pending_count(history).await?;
    let last_sent_at = history
        .query_value(
            "SELECT max(sent_at) FROM monitor_notify_outbox WHERE state = 'sent'",
            &[],
        )
        .await?;
    let last_error = history
        .query(
            "SELECT last_error_at, channel, last_error, state FROM monitor_notify_outbox \
             WHERE last_error IS NOT NULL ORDER BY last_error_at DESC, id DESC LIMIT 1",
            &[],
        )
        .await?
        .into_iter()
        .next()
        .map(|r| {
            let cell = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
            DeliveryError {
                at: cell(0),
                channel: cell(1),
                error: cell(2),
                pending: cell(3) == "pending",
            }
        });
    Ok(DeliveryStatus {
        pending,
        last_sent_at,
        last_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(due: &str, status: JobStatus) -> Judgement {
        let due = unstamp(due).unwrap();
        Judgement {
            status,
            is_final: true,
            ..Judgement::unjudged("a".into(), due, due)
        }
    }

    #[test]
    fn what_happened_in_between() {
        use JobStatus::*;
        let d1 = "2026-12-05T02:00:00Z";
        let d2 = "2026-12-06T02:00:00Z";
        let (a, b) = (j(d1, Missing), j(d2, Ok));
        // OK, then a scan catching up judges MISSING and OK: the MISSING is told.
        assert_eq!(between(Some(Ok), Ok, d2, &[&a, &b]), [Missing]);
        // The same, judged in two scans: nothing in between.
        assert!(between(Some(Missing), Ok, d2, &[&b]).is_empty());
        // An earlier occurrence judged after the current one.
        assert_eq!(between(Some(Ok), Ok, d2, &[&a]), [Missing]);
        // Leading repeats of the known status and trailing ones of the current are no news.
        let c = j(d1, Ok);
        assert!(between(Some(Ok), Missing, d2, &[&c, &j(d2, Missing)]).is_empty());
        assert!(between(None, Missing, d2, &[&j(d1, Missing)]).is_empty());
    }

    #[test]
    fn only_critical_and_unknown_are_recalled() {
        assert!(is_bad(JobStatus::Missing));
        assert!(is_bad(JobStatus::Unknown));
        assert!(!is_bad(JobStatus::Unchanged));
        assert!(!is_bad(JobStatus::Ok));
    }
}
