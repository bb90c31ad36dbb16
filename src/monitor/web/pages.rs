//! The HTML pages of `monitor serve`: the dashboard (`/`), a job's page (`/jobs/{id}`), the
//! unexpected deposits (`/unexpected`), and HTML error pages (400, 404, 503) for every path
//! that is not the API's (`/api/...` answers JSON, even for a path it does not know).
//!
//! The pages read the same [`Snapshot`] as the JSON API, through the same query parsing
//! ([`parse_query`], [`status_param`]) and the same filter ([`Snapshot::filtered`]), so the
//! page and `/api/jobs` cannot disagree. They are askama templates (`templates/monitor/`),
//! checked when the crate compiles and HTML-escaped by default: every value that comes from a
//! deposit, a report or the configuration is text. No script, no external asset: the page
//! works on an isolated network; the charts are SVG drawn here ([`svg`]). The answers carry a
//! Content-Security-Policy that allows no script at all, as a second line of defence.

mod svg;

use std::sync::Arc;

use askama::Template;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::api::{parse_query, status_param, MAX_HISTORY_LIMIT};
use super::AppState;
use crate::monitor::history::Entry;
use crate::monitor::view::{severity, JobView, Snapshot};
use crate::monitor::{unstamp, JobStatus};
use crate::output::Status;

/// How often the pages reload themselves, in seconds.
pub const REFRESH_SECONDS: u32 = 60;
const DEFAULT_HISTORY_ROWS: u32 = 100;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(dashboard))
        .route("/jobs/{id}", get(job_page))
        .route("/unexpected", get(unexpected_page))
        .fallback(not_found)
}

// ------------------------------------------------------------------------------------------
// What the templates show: every value already put into words.

/// A time from the history (RFC 3339, UTC), shown to the minute (the pages say the times
/// are UTC once).
struct When {
    iso: String,
    text: String,
}

fn when(stamp: &str) -> When {
    When {
        iso: stamp.to_string(),
        text: unstamp(stamp)
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_else(|| stamp.to_string()),
    }
}

/// A status as text, a symbol and a colour class: readable without the colour.
struct StatusCell {
    text: String,
    symbol: &'static str,
    class: &'static str,
}

impl StatusCell {
    /// The text cut after each `_`, where a narrow column may break the line
    /// (`TRANSFER_INTEGRITY_FAILED`); the page joins them with `<wbr>`, which adds no text.
    fn parts(&self) -> Vec<&str> {
        self.text.split_inclusive('_').collect()
    }
}

fn status_cell(s: JobStatus) -> StatusCell {
    let (symbol, class) = match (s, s.check_status()) {
        (JobStatus::Pending, _) => ("○", "s-pending"),
        (_, Status::Ok | Status::Success) => ("✔", "s-ok"),
        (_, Status::Warning) => ("⚠", "s-warn"),
        (_, Status::Unknown) => ("?", "s-unknown"),
        (_, Status::Critical | Status::Failed) => ("✘", "s-crit"),
    };
    StatusCell {
        text: s.as_str().to_string(),
        symbol,
        class,
    }
}

/// A status read back from the history: one of ours, or shown as it is.
fn status_text_cell(s: &str) -> StatusCell {
    match JobStatus::parse(s) {
        Some(s) => status_cell(s),
        None => StatusCell {
            text: s.to_string(),
            symbol: "?",
            class: "s-unknown",
        },
    }
}

struct DrillCell {
    at: When,
    status: String,
    class: &'static str,
}

/// One job, as a dashboard row and the head of its page.
struct JobRow {
    id: String,
    company: String,
    city: String,
    site: String,
    database: String,
    engine: String,
    schedule: String,
    status: StatusCell,
    due: Option<When>,
    last_ok: Option<When>,
    age: String,
    next_due: Option<When>,
    size: String,
    drill: Option<DrillCell>,
    message: String,
}

fn job_row(j: &JobView) -> JobRow {
    JobRow {
        id: j.id.clone(),
        company: j.company.clone(),
        city: j.city.clone(),
        site: j.site.clone(),
        database: j.database.clone(),
        engine: j.engine.clone(),
        schedule: j.schedule.clone(),
        status: status_cell(j.status),
        due: j.due.as_deref().map(when),
        last_ok: j.last_ok.as_deref().map(when),
        age: j.last_ok_age_seconds.map(human_age).unwrap_or_default(),
        next_due: j.next_due.as_deref().map(when),
        size: j.size_bytes.map(human_size).unwrap_or_default(),
        drill: j.last_drill.as_ref().map(|d| {
            let status = d.status.clone().unwrap_or_else(|| "unknown".into());
            DrillCell {
                at: when(&d.at),
                class: if status == "success" {
                    "s-ok"
                } else {
                    "s-crit"
                },
                status,
            }
        }),
        message: j.message.clone(),
    }
}

struct SiteGroupView {
    company: String,
    city: String,
    site: String,
    rows: Vec<JobRow>,
}

struct CountLink {
    status: StatusCell,
    count: usize,
    selected: bool,
}

struct ScanLine {
    started: When,
    seconds: String,
    judged: u64,
    error: Option<String>,
}

// ------------------------------------------------------------------------------------------
// The templates.

#[derive(Template)]
#[template(path = "monitor/dashboard.html")]
struct DashboardPage {
    title: String,
    refresh: u32,
    generated_at: When,
    last_scan: Option<ScanLine>,
    scan_errors: u64,
    counts: Vec<CountLink>,
    total: usize,
    /// The filter, as given (`status` upper case, or empty).
    status: String,
    q: String,
    filtering: bool,
    shown: usize,
    groups: Vec<SiteGroupView>,
    unexpected: usize,
}

struct HistoryRow {
    due: When,
    status: StatusCell,
    previous: String,
    judged_at: When,
    file: String,
    size: String,
    sha256: String,
    sha256_short: String,
    report_at: Option<When>,
    backup: String,
    compression: String,
    transfer: String,
    message: String,
}

#[derive(Template)]
#[template(path = "monitor/job.html")]
struct JobPage {
    title: String,
    refresh: u32,
    generated_at: When,
    job: JobRow,
    limit: u32,
    max_limit: u32,
    /// The history was cut at `limit`, below the most one may ask for.
    more: bool,
    history: Vec<HistoryRow>,
    size_chart: String,
    duration_chart: String,
}

struct UnexpectedRow {
    path: String,
    reason: String,
    first_seen: When,
    last_seen: When,
}

#[derive(Template)]
#[template(path = "monitor/unexpected.html")]
struct UnexpectedPage {
    title: String,
    refresh: u32,
    generated_at: When,
    rows: Vec<UnexpectedRow>,
}

#[derive(Template)]
#[template(path = "monitor/error.html")]
struct ErrorPage {
    title: String,
    refresh: u32,
    code: u16,
    message: String,
}

// ------------------------------------------------------------------------------------------
// The handlers.

/// The rendered page with its status and headers: HTML, never cached, no script allowed.
fn page(code: StatusCode, t: &impl Template) -> Response {
    page_body(code, t.render().map_err(|e| e.to_string()))
}

/// A rendered page with its headers: no script may run, nothing is cached or sniffed.
fn page_body(code: StatusCode, body: Result<String, String>) -> Response {
    match body {
        Ok(body) => {
            let mut r = (code, Html(body)).into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
                     form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
                ),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            h.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
            r
        }
        // Only a failing Display could get here; say so without a stack trace.
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("rendering the page: {e}"),
        )
            .into_response(),
    }
}

fn error_page(code: StatusCode, message: impl Into<String>) -> Response {
    let title = match code {
        StatusCode::BAD_REQUEST => "Bad request",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::SERVICE_UNAVAILABLE => "History unavailable",
        _ => code.canonical_reason().unwrap_or("Error"),
    };
    page(
        code,
        &ErrorPage {
            title: title.to_string(),
            // A 503 may be over in a minute: the page retries on its own.
            refresh: if code == StatusCode::SERVICE_UNAVAILABLE {
                REFRESH_SECONDS
            } else {
                0
            },
            code: code.as_u16(),
            message: message.into(),
        },
    )
}

fn unavailable(e: anyhow::Error) -> Response {
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the monitor's history cannot be read: {e:#}"),
    )
}

async fn not_found() -> Response {
    error_page(StatusCode::NOT_FOUND, "no such page")
}

/// Statuses worst first, as the counts list them.
fn worst_first() -> Vec<JobStatus> {
    let mut all = JobStatus::ALL.to_vec();
    all.sort_by_key(|s| std::cmp::Reverse(severity(*s)));
    all
}

async fn dashboard(State(st): State<Arc<AppState>>, RawQuery(raw): RawQuery) -> Response {
    let q = match parse_query(raw.as_deref(), &["status", "q"]) {
        Ok(q) => q,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, e),
    };
    let status = match status_param(&q) {
        Ok(s) => s,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, e),
    };
    let snap = match st.snapshot().await {
        Ok(s) => s,
        Err(e) => return unavailable(e),
    };
    let text = q.get("q").map(String::as_str).unwrap_or("");
    // The unfiltered dashboard, the one people and their browsers reload, is rendered once
    // per snapshot.
    if status.is_none() && text.trim().is_empty() {
        let body = snap
            .rendered
            .dashboard
            .get_or_init(|| render_dashboard(&snap, None, ""));
        return page_body(StatusCode::OK, body.clone());
    }
    page_body(StatusCode::OK, render_dashboard(&snap, status, text))
}

fn render_dashboard(
    snap: &Snapshot,
    status: Option<JobStatus>,
    text: &str,
) -> Result<String, String> {
    let groups: Vec<SiteGroupView> = Snapshot::grouped(snap.filtered(status, text))
        .into_iter()
        .map(|((company, city, site), jobs)| SiteGroupView {
            company,
            city,
            site,
            rows: jobs.into_iter().map(job_row).collect(),
        })
        .collect();
    let shown = groups.iter().map(|g| g.rows.len()).sum();
    let counts = worst_first()
        .into_iter()
        .map(|s| CountLink {
            status: status_cell(s),
            count: snap.counts.get(s.as_str()).copied().unwrap_or(0),
            selected: status == Some(s),
        })
        .collect();
    let title = if snap.jobs.is_empty() {
        "Backup monitor".to_string()
    } else {
        format!("{} · Backup monitor", snap.worst())
    };
    DashboardPage {
        title,
        refresh: REFRESH_SECONDS,
        generated_at: when(&snap.generated_at),
        last_scan: snap.last_scan.as_ref().map(|r| ScanLine {
            started: when(&r.started_at),
            seconds: human_seconds(r.seconds),
            judged: r.judged,
            error: r.error.clone(),
        }),
        scan_errors: snap.scan_errors,
        counts,
        total: snap.jobs.len(),
        status: status.map(|s| s.as_str().to_string()).unwrap_or_default(),
        q: text.to_string(),
        filtering: status.is_some() || !text.trim().is_empty(),
        shown,
        groups,
        unexpected: snap.unexpected.len(),
    }
    .render()
    .map_err(|e| e.to_string())
}

async fn job_page(
    State(st): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Response {
    // A job id that does not decode (`/jobs/%ff`) is the client's mistake, said in a page.
    let id = match id {
        Ok(Path(id)) => id,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let q = match parse_query(raw.as_deref(), &["limit"]) {
        Ok(q) => q,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, e),
    };
    let limit = match q.get("limit").map(|s| s.trim()) {
        None | Some("") => DEFAULT_HISTORY_ROWS,
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=MAX_HISTORY_LIMIT).contains(&n) => n,
            _ => {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    format!("limit `{s}`: not a whole number from 1 to {MAX_HISTORY_LIMIT}"),
                )
            }
        },
    };
    let snap = match st.snapshot().await {
        Ok(s) => s,
        Err(e) => return unavailable(e),
    };
    let Some(job) = snap.job(&id) else {
        return error_page(StatusCode::NOT_FOUND, format!("no job `{id}`"));
    };
    let id2 = id.clone();
    let entries = match st
        .with_history(async move |h| h.entries_since(&id2, limit, None).await)
        .await
    {
        Ok(e) => e,
        Err(e) => return unavailable(e),
    };
    let (size_chart, duration_chart) = charts(&id, &entries);
    page(
        StatusCode::OK,
        &JobPage {
            title: format!("{} {} · Backup monitor", job.id, job.status),
            refresh: REFRESH_SECONDS,
            generated_at: when(&snap.generated_at),
            job: job_row(job),
            limit,
            max_limit: MAX_HISTORY_LIMIT,
            more: entries.len() as u32 == limit && limit < MAX_HISTORY_LIMIT,
            history: entries.iter().map(history_row).collect(),
            size_chart,
            duration_chart,
        },
    )
}

fn history_row(e: &Entry) -> HistoryRow {
    let sha = e.sha256.clone().unwrap_or_default();
    HistoryRow {
        due: when(&e.due),
        status: status_text_cell(&e.status),
        previous: e.previous_status.clone().unwrap_or_default(),
        judged_at: when(&e.judged_at),
        file: e.file.clone().unwrap_or_default(),
        size: e.size_bytes.map(human_size).unwrap_or_default(),
        sha256_short: sha.chars().take(12).collect(),
        sha256: sha,
        report_at: e.report_generated_at.as_deref().map(when),
        backup: e.backup_seconds.map(human_seconds).unwrap_or_default(),
        compression: e.compression_seconds.map(human_seconds).unwrap_or_default(),
        transfer: e.transfer_seconds.map(human_seconds).unwrap_or_default(),
        message: e.message.clone(),
    }
}

/// The size and the backup's duration over time, as inline SVG.
fn charts(id: &str, entries: &[Entry]) -> (String, String) {
    let dated: Vec<_> = entries
        .iter()
        .filter_map(|e| unstamp(&e.due).map(|t| (t, e)))
        .collect();
    let sizes: Vec<svg::Point> = dated
        .iter()
        .map(|(t, e)| (*t, e.size_bytes.map(|s| s as f64)))
        .collect();
    let durations: Vec<svg::Point> = dated.iter().map(|(t, e)| (*t, e.backup_seconds)).collect();
    let most = |pts: &[svg::Point]| {
        pts.iter()
            .filter_map(|(_, v)| *v)
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max)
    };
    // The marks in the unit the largest value is shown in: 100 KiB, 200 KiB …
    let mut size_unit = 1.0;
    while most(&sizes) >= size_unit * 1024.0 && size_unit < 1024f64.powi(8) {
        size_unit *= 1024.0;
    }
    let longest = most(&durations);
    let duration_unit = if longest >= 7200.0 {
        3600.0
    } else if longest >= 120.0 {
        60.0
    } else {
        1.0
    };
    (
        svg::line_chart(
            &format!("size-{id}"),
            &format!("Backup size of {id}"),
            &sizes,
            size_unit,
            |v| round_mark(human_size_f64(v)),
        ),
        svg::line_chart(
            &format!("duration-{id}"),
            &format!("Backup duration of {id}"),
            &durations,
            duration_unit,
            |v| round_mark(human_seconds(v)),
        ),
    )
}

/// A chart's mark without the zeros a table would keep: `100 KiB`, `2.5 MiB`.
fn round_mark(label: String) -> String {
    match label.split_once(' ') {
        Some((n, unit)) if n.contains('.') && !n.contains('e') => {
            format!("{} {unit}", n.trim_end_matches('0').trim_end_matches('.'))
        }
        _ => label,
    }
}

async fn unexpected_page(State(st): State<Arc<AppState>>, RawQuery(raw): RawQuery) -> Response {
    if let Err(e) = parse_query(raw.as_deref(), &[]) {
        return error_page(StatusCode::BAD_REQUEST, e);
    }
    let snap = match st.snapshot().await {
        Ok(s) => s,
        Err(e) => return unavailable(e),
    };
    page(
        StatusCode::OK,
        &UnexpectedPage {
            title: "Unexpected deposits · Backup monitor".into(),
            refresh: REFRESH_SECONDS,
            generated_at: when(&snap.generated_at),
            rows: snap
                .unexpected
                .iter()
                .map(|u| UnexpectedRow {
                    path: u.path.clone(),
                    reason: u.reason.clone(),
                    first_seen: when(&u.first_seen),
                    last_seen: when(&u.last_seen),
                })
                .collect(),
        },
    )
}

// ------------------------------------------------------------------------------------------
// Numbers for people.

/// An age: `45 s`, `12 min`, `3 h 12 min`, `2 d 5 h`; `in 5 min` for a time ahead.
pub fn human_age(secs: i64) -> String {
    if secs < 0 {
        return format!("in {}", human_age(secs.saturating_neg()));
    }
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{m} min"),
        3600..86_400 if m == 0 => format!("{h} h"),
        3600..86_400 => format!("{h} h {m} min"),
        _ if h == 0 => format!("{d} d"),
        _ => format!("{d} d {h} h"),
    }
}

/// A duration in seconds: `4.1 s`, `2 min 5 s`, then as an age from an hour on.
pub fn human_seconds(v: f64) -> String {
    if !v.is_finite() {
        return String::new();
    }
    if v.abs() < 60.0 {
        let s = format!("{v:.1}");
        return format!("{} s", s.strip_suffix(".0").unwrap_or(&s));
    }
    if v.abs() < 3600.0 {
        let secs = v.abs().round() as i64;
        let sign = if v < 0.0 { "-" } else { "" };
        return match secs % 60 {
            0 => format!("{sign}{} min", secs / 60),
            s => format!("{sign}{} min {s} s", secs / 60),
        };
    }
    if v.abs() < 1e15 {
        return human_age(v.round() as i64);
    }
    format!("{v:.2e} s")
}

/// A size in bytes: `512 B`, `1.50 KiB`, `12.3 MiB`, `118 GiB`.
pub fn human_size(n: u64) -> String {
    human_size_f64(n as f64)
}

fn human_size_f64(v: f64) -> String {
    if !v.is_finite() {
        return String::new();
    }
    if v < 0.0 {
        return format!("-{}", human_size_f64(-v));
    }
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut v = v;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    match (unit, v) {
        (0, v) => format!("{v:.0} B"),
        (_, v) if v < 10.0 => format!("{v:.2} {}", UNITS[unit]),
        (_, v) if v < 100.0 => format!("{v:.1} {}", UNITS[unit]),
        (_, v) if v < 1024.0 => format!("{v:.0} {}", UNITS[unit]),
        (_, v) => format!("{v:.2e} {}", UNITS[unit]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_a_person_would_say_them() {
        assert_eq!(human_age(0), "0 s");
        assert_eq!(human_age(59), "59 s");
        assert_eq!(human_age(60), "1 min");
        assert_eq!(human_age(3 * 3600 + 12 * 60 + 5), "3 h 12 min");
        assert_eq!(human_age(7200), "2 h");
        assert_eq!(human_age(86_400), "1 d");
        assert_eq!(human_age(2 * 86_400 + 5 * 3600 + 59), "2 d 5 h");
        assert_eq!(human_age(-300), "in 5 min");
        assert!(human_age(i64::MIN).starts_with("in "));
        assert!(human_age(i64::MAX).ends_with(" h"));
    }

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.50 KiB");
        assert_eq!(human_size(12_900_000), "12.3 MiB");
        assert_eq!(human_size(1_100_000_000), "1.02 GiB");
        assert_eq!(human_size(u64::MAX), "16.0 EiB");
        assert_eq!(human_size_f64(f64::MAX), "1.49e284 YiB");
        assert_eq!(human_size_f64(f64::NAN), "");
    }

    #[test]
    fn chart_marks_drop_trailing_zeros() {
        assert_eq!(round_mark("100 KiB".into()), "100 KiB");
        assert_eq!(round_mark("50.0 KiB".into()), "50 KiB");
        assert_eq!(round_mark("2.50 MiB".into()), "2.5 MiB");
        assert_eq!(round_mark("1.00e300 s".into()), "1.00e300 s");
        assert_eq!(round_mark("3 h 12 min".into()), "3 h 12 min");
    }

    #[test]
    fn durations_in_seconds_then_minutes() {
        assert_eq!(human_seconds(4.1), "4.1 s");
        assert_eq!(human_seconds(0.0), "0 s");
        assert_eq!(human_seconds(125.0), "2 min 5 s");
        assert_eq!(human_seconds(120.0), "2 min");
        assert_eq!(human_seconds(-90.0), "-1 min 30 s");
        assert_eq!(human_seconds(7260.0), "2 h 1 min");
        assert_eq!(human_seconds(f64::INFINITY), "");
        assert_eq!(human_seconds(1e300), "1.00e300 s");
    }

    #[test]
    fn every_status_has_a_symbol_and_a_class() {
        for s in JobStatus::ALL {
            let c = status_cell(s);
            assert_eq!(c.text, s.as_str());
            assert!(!c.symbol.is_empty() && c.class.starts_with("s-"));
        }
        assert_eq!(status_cell(JobStatus::Missing).class, "s-crit");
        assert_eq!(status_text_cell("<b>").text, "<b>");
    }

    #[test]
    fn the_escaping_is_on() {
        let p = ErrorPage {
            title: "<script>alert(1)</script>".into(),
            refresh: 0,
            code: 404,
            message: "no job `<img src=x onerror=alert(1)>`".into(),
        };
        let html = p.render().unwrap();
        assert!(
            !html.contains("<script>alert") && !html.contains("<img"),
            "{html}"
        );
        assert!(
            html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
            "{html}"
        );
    }
}
