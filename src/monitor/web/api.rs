//! The JSON API: `/api/jobs`, `/api/jobs/{id}`, `/api/jobs/{id}/history`, `/api/status`,
//! `/api/unexpected`, `/api/openapi.json` and `/health`. Every answer is JSON, errors
//! included (`{"error", "status"}`, 4xx for a bad request, 503 when the history cannot be
//! read), never a stack trace.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use serde_json::{json, Value};

use super::{json_error, AppState};
use crate::monitor::config::parse_utc;
use crate::monitor::{stamp, JobStatus};

/// The OpenAPI 3 description of this API, served as is.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The most history rows one request may ask for.
pub const MAX_HISTORY_LIMIT: u32 = 1000;
const DEFAULT_HISTORY_LIMIT: u32 = 100;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/jobs", get(jobs))
        .route("/api/jobs/{id}", get(job))
        .route("/api/jobs/{id}/history", get(history))
        .route("/api/status", get(status))
        .route("/api/unexpected", get(unexpected))
        .route("/api/openapi.json", get(openapi))
        .route("/health", get(health))
        .route("/api", get(not_found))
        .route("/api/{*rest}", get(not_found))
}

/// The query string's parameters, refusing unknown ones, repeated ones and bad encoding.
pub fn parse_query(raw: Option<&str>, allowed: &[&str]) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Ok(out);
    };
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = decode(k)
            .ok_or_else(|| "the query string is not valid percent-encoded UTF-8".to_string())?;
        let v = decode(v)
            .ok_or_else(|| format!("query parameter `{k}`: not valid percent-encoded UTF-8"))?;
        if !allowed.contains(&k.as_str()) {
            return Err(if allowed.is_empty() {
                format!("unknown query parameter `{k}`: this endpoint takes none")
            } else {
                format!(
                    "unknown query parameter `{k}` (expected: {})",
                    allowed.join(", ")
                )
            });
        }
        if out.insert(k.clone(), v).is_some() {
            return Err(format!("query parameter `{k}` given twice"));
        }
    }
    Ok(out)
}

/// Percent-decoding with `+` as a space (HTML forms send that).
fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let h = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// `status=` as a job status, `None` when absent or empty.
pub fn status_param(q: &HashMap<String, String>) -> Result<Option<JobStatus>, String> {
    match q.get("status").map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => JobStatus::parse(&s.to_uppercase())
            .map(Some)
            .ok_or_else(|| {
                format!(
                    "status `{s}`: not a status (one of {})",
                    JobStatus::ALL.map(|s| s.as_str()).join(", ")
                )
            }),
    }
}

fn unavailable(e: anyhow::Error) -> Response {
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the monitor's history cannot be read: {e:#}"),
    )
}

async fn jobs(State(st): State<Arc<AppState>>, RawQuery(raw): RawQuery) -> Response {
    let q = match parse_query(raw.as_deref(), &["status", "q"]) {
        Ok(q) => q,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, e),
    };
    let status = match status_param(&q) {
        Ok(s) => s,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, e),
    };
    let snap = match st.snapshot().await {
        Ok(s) => s,
        Err(e) => return unavailable(e),
    };
    let text = q.get("q").map(String::as_str).unwrap_or("");
    let render = |status, text| {
        let jobs: Vec<_> = snap.filtered(status, text).collect();
        let doc = json!({
            "generated_at": snap.generated_at,
            "count": jobs.len(),
            "jobs": jobs,
        });
        bytes::Bytes::from(serde_json::to_vec(&doc).unwrap_or_default())
    };
    // The whole list, what dashboards and scripts poll, is serialised once per snapshot.
    let body = if status.is_none() && text.trim().is_empty() {
        snap.rendered
            .jobs_json
            .get_or_init(|| render(None, ""))
            .clone()
    } else {
        render(status, text)
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The job id of the path, or the JSON 400 for one that does not decode.
fn job_id(p: Result<Path<String>, PathRejection>) -> Result<String, Box<Response>> {
    p.map(|Path(id)| id).map_err(|e| {
        Box::new(json_error(
            StatusCode::BAD_REQUEST,
            format!("the job id in the path: {}", e.body_text()),
        ))
    })
}

async fn job(
    State(st): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Response {
    let id = match job_id(id) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    if let Err(e) = parse_query(raw.as_deref(), &[]) {
        return json_error(StatusCode::BAD_REQUEST, e);
    }
    let snap = match st.snapshot().await {
        Ok(s) => s,
        Err(e) => return unavailable(e),
    };
    match snap.job(&id) {
        Some(j) => Json(json!({"generated_at": snap.generated_at, "job": j})).into_response(),
        None => json_error(StatusCode::NOT_FOUND, format!("no job `{id}`")),
    }
}

async fn history(
    State(st): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Response {
    let id = match job_id(id) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let q = match parse_query(raw.as_deref(), &["limit", "since"]) {
        Ok(q) => q,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, e),
    };
    let limit = match q.get("limit").map(|s| s.trim()) {
        None | Some("") => DEFAULT_HISTORY_LIMIT,
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=MAX_HISTORY_LIMIT).contains(&n) => n,
            _ => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    format!("limit `{s}`: not a whole number from 1 to {MAX_HISTORY_LIMIT}"),
                )
            }
        },
    };
    let since = match q.get("since").map(|s| s.trim()) {
        None | Some("") => None,
        Some(s) => match parse_utc(s) {
            Some(t) => Some(t),
            None => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "since `{s}`: not a time (2026-12-06T10:00:00Z or 2026-12-06 10:00, UTC)"
                    ),
                )
            }
        },
    };
    let id2 = id.clone();
    let entries = match st
        .with_history(async move |h| h.entries_since(&id2, limit, since).await)
        .await
    {
        Ok(e) => e,
        Err(e) => return unavailable(e),
    };
    if entries.is_empty() && st.cfg.job(&id).is_none() {
        return json_error(StatusCode::NOT_FOUND, format!("no job `{id}`"));
    }
    Json(json!({
        "job": id,
        "limit": limit,
        "since": since.map(stamp),
        "count": entries.len(),
        "history": entries,
    }))
    .into_response()
}

async fn status(State(st): State<Arc<AppState>>, RawQuery(raw): RawQuery) -> Response {
    if let Err(e) = parse_query(raw.as_deref(), &[]) {
        return json_error(StatusCode::BAD_REQUEST, e);
    }
    let snap = match st.snapshot().await {
        Ok(s) => s,
        Err(e) => return unavailable(e),
    };
    Json(json!({
        "generated_at": snap.generated_at,
        "status": snap.worst(),
        "nagios": snap.check_status().as_str(),
        "jobs": snap.jobs.len(),
        "counts": snap.counts,
        "unexpected": snap.unexpected.len(),
        "last_scan": snap.last_scan,
    }))
    .into_response()
}

async fn unexpected(State(st): State<Arc<AppState>>, RawQuery(raw): RawQuery) -> Response {
    if let Err(e) = parse_query(raw.as_deref(), &[]) {
        return json_error(StatusCode::BAD_REQUEST, e);
    }
    match st.snapshot().await {
        Ok(s) => Json(json!({"generated_at": s.generated_at, "unexpected": s.unexpected}))
            .into_response(),
        Err(e) => unavailable(e),
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn not_found() -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        "no such API endpoint (see /api/openapi.json)",
    )
}

/// `/health`: 200 when the history answers and (when this process scans) the scanner's
/// last scan ended recently and well; 503 otherwise, saying which.
async fn health(State(st): State<Arc<AppState>>) -> Response {
    let now = Utc::now();
    let history = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        st.with_history(async |h| h.ping().await),
    )
    .await
    .map_err(|_| anyhow::anyhow!("timed out after 5 s"))
    .and_then(|r| r);
    let hb = st
        .heartbeat
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let limit = st.heartbeat_limit();
    let since = hb.last_at.unwrap_or(st.started);
    let age = (now - since).num_seconds().max(0);
    let mut problems = Vec::new();
    if let Err(e) = &history {
        problems.push(format!("history unreachable: {e:#}"));
    }
    if st.scanning {
        if age as u64 > limit.as_secs() {
            problems.push(match hb.last_at {
                None => format!("no scan has finished in the {age} s since the server started"),
                Some(_) => format!(
                    "the last scan ended {age} s ago (limit {} s)",
                    limit.as_secs()
                ),
            });
        } else if let Some(e) = &hb.last_error {
            problems.push(format!("the last scan failed: {e}"));
        }
    }
    let ok = problems.is_empty();
    let body: Value = json!({
        "status": if ok { "ok" } else { "unavailable" },
        "problems": problems,
        "history": {
            "reachable": history.is_ok(),
            "error": history.as_ref().err().map(|e| format!("{e:#}")),
        },
        "scanner": {
            "running": st.scanning,
            "last_scan_at": hb.last_at.map(stamp),
            "age_seconds": age,
            "max_age_seconds": limit.as_secs(),
            "last_error": hb.last_error,
            "scans_ok": hb.scans_ok,
            "scans_failed": hb.scans_failed,
        },
    });
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_strict() {
        let q = parse_query(Some("status=MISSING&q=la+joliette%20x"), &["status", "q"]).unwrap();
        assert_eq!(q["status"], "MISSING");
        assert_eq!(q["q"], "la joliette x");
        assert!(parse_query(Some("x=1"), &["status"])
            .unwrap_err()
            .contains("`x`"));
        assert!(parse_query(Some("q=1&q=2"), &["q"])
            .unwrap_err()
            .contains("twice"));
        assert!(parse_query(Some("q=%ff"), &["q"])
            .unwrap_err()
            .contains("UTF-8"));
        assert!(parse_query(Some("q=%4"), &["q"]).is_err());
        assert!(parse_query(Some("a=1"), &[])
            .unwrap_err()
            .contains("takes none"));
        assert!(parse_query(None, &[]).unwrap().is_empty());
    }

    #[test]
    fn status_filter_names_the_choices() {
        let mut q = HashMap::new();
        q.insert("status".to_string(), "missing".to_string());
        assert_eq!(status_param(&q).unwrap(), Some(JobStatus::Missing));
        q.insert("status".to_string(), "BROKEN".to_string());
        let e = status_param(&q).unwrap_err();
        assert!(
            e.contains("BROKEN") && e.contains("TRANSFER_INTEGRITY_FAILED"),
            "{e}"
        );
    }

    #[test]
    fn the_openapi_document_is_json_and_lists_every_route() {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        for p in [
            "/api/jobs",
            "/api/jobs/{id}",
            "/api/jobs/{id}/history",
            "/api/status",
            "/api/unexpected",
            "/health",
            "/metrics",
        ] {
            assert!(
                doc["paths"].get(p).is_some(),
                "{p} missing from the OpenAPI document"
            );
        }
    }
}
