//! `/metrics` of `monitor serve`: each job's status (one series per status, 1 for the
//! current one, so an alert is `== 1` and no series comes and goes), its last success, last
//! size and last drill, the counts per status, the unexpected deposits, and the scanner's
//! last scan and its failures. The job's id is the label `job_id`: `job` belongs to
//! Prometheus's own target labels.

use std::sync::Arc;

use anyhow::Result;
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, Gauge, GaugeVec, IntCounterVec, Opts, Registry, TextEncoder};

use super::api::parse_query;
use super::{json_error, AppState, Heartbeat};
use crate::monitor::view::Snapshot;
use crate::monitor::{unstamp, JobStatus};

const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const JOB_LABELS: [&str; 6] = ["job_id", "company", "city", "site", "database", "engine"];

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(st): State<Arc<AppState>>, RawQuery(raw): RawQuery) -> Response {
    if let Err(e) = parse_query(raw.as_deref(), &[]) {
        return json_error(StatusCode::BAD_REQUEST, e);
    }
    let hb = st
        .heartbeat
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let snap = st.snapshot().await;
    match render(snap.as_deref().ok(), &hb, st.scanning) {
        Ok(text) => ([(header::CONTENT_TYPE, TEXT)], text).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("rendering metrics: {e:#}\n"),
        )
            .into_response(),
    }
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<GaugeVec> {
    let g = GaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn gauge(r: &Registry, name: &str, help: &str) -> Result<Gauge> {
    let g = Gauge::with_opts(Opts::new(name, help))?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

/// The exposition text; without a snapshot (history unreachable), only the `history_up`
/// and scanner families.
pub fn render(snap: Option<&Snapshot>, hb: &Heartbeat, scanning: bool) -> Result<String> {
    let r = Registry::new();
    let up = gauge(
        &r,
        "mairie_dba_monitor_history_up",
        "Whether the monitor's history database could be read (1) or not (0).",
    )?;
    up.set(if snap.is_some() { 1.0 } else { 0.0 });
    if scanning {
        let scans = IntCounterVec::new(
            Opts::new(
                "mairie_dba_monitor_scans_total",
                "Scans run by this server since it started, by result (ok, error).",
            ),
            &["result"],
        )?;
        r.register(Box::new(scans.clone()))?;
        scans.with_label_values(&["ok"]).inc_by(hb.scans_ok);
        scans.with_label_values(&["error"]).inc_by(hb.scans_failed);
    }
    if let Some(s) = snap {
        let status = gauge_vec(
            &r,
            "mairie_dba_monitor_job_status",
            "1 for the job's current status, 0 for the others (PENDING: not judged yet).",
            &[&JOB_LABELS[..], &["status"]].concat(),
        )?;
        let last_ok = gauge_vec(
            &r,
            "mairie_dba_monitor_job_last_success_timestamp_seconds",
            "Due time of the job's last good occurrence (OK or UNCHANGED), Unix seconds.",
            &JOB_LABELS,
        )?;
        let size = gauge_vec(
            &r,
            "mairie_dba_monitor_job_last_size_bytes",
            "Size of the job's last good backup, in bytes.",
            &JOB_LABELS,
        )?;
        let drill = gauge_vec(
            &r,
            "mairie_dba_monitor_job_last_drill_timestamp_seconds",
            "Time of the last restore drill the job's agent reported, Unix seconds.",
            &JOB_LABELS,
        )?;
        let drill_ok = gauge_vec(
            &r,
            "mairie_dba_monitor_job_last_drill_success",
            "Whether the last restore drill the job's agent reported succeeded (1) or not (0).",
            &JOB_LABELS,
        )?;
        for j in &s.jobs {
            let labels = [
                j.id.as_str(),
                &j.company,
                &j.city,
                &j.site,
                &j.database,
                &j.engine,
            ];
            for st in JobStatus::ALL {
                let mut l = labels.to_vec();
                l.push(st.as_str());
                status
                    .with_label_values(&l)
                    .set(if j.status == st { 1.0 } else { 0.0 });
            }
            if let Some(t) = j.last_ok.as_deref().and_then(unstamp) {
                last_ok.with_label_values(&labels).set(t.timestamp() as f64);
            }
            if let Some(b) = j.size_bytes {
                size.with_label_values(&labels).set(b as f64);
            }
            if let Some(d) = &j.last_drill {
                if let Some(t) = unstamp(&d.at) {
                    drill.with_label_values(&labels).set(t.timestamp() as f64);
                }
                let good = matches!(d.status.as_deref(), Some("success") | Some("ok"));
                drill_ok
                    .with_label_values(&labels)
                    .set(if good { 1.0 } else { 0.0 });
            }
        }
        let counts = gauge_vec(
            &r,
            "mairie_dba_monitor_jobs",
            "Expected jobs per current status.",
            &["status"],
        )?;
        for (k, v) in &s.counts {
            counts.with_label_values(&[*k]).set(*v as f64);
        }
        gauge(
            &r,
            "mairie_dba_monitor_unexpected_deposits",
            "Deposits recorded that no expected job claims.",
        )?
        .set(s.unexpected.len() as f64);
        if let Some(scan) = &s.last_scan {
            if let Some(t) = unstamp(&scan.finished_at) {
                gauge(
                    &r,
                    "mairie_dba_monitor_last_scan_timestamp_seconds",
                    "When the last recorded scan ended, Unix seconds.",
                )?
                .set(t.timestamp() as f64);
            }
            gauge(
                &r,
                "mairie_dba_monitor_last_scan_duration_seconds",
                "How long the last recorded scan took.",
            )?
            .set(scan.seconds);
            gauge(
                &r,
                "mairie_dba_monitor_last_scan_success",
                "Whether the last recorded scan finished (1) or failed (0).",
            )?
            .set(if scan.error.is_none() { 1.0 } else { 0.0 });
        }
        gauge(
            &r,
            "mairie_dba_monitor_scan_errors",
            "Failed scans recorded in the history (the last 31 days are kept).",
        )?
        .set(s.scan_errors as f64);
    }
    let mut out = Vec::new();
    TextEncoder::new().encode(&r.gather(), &mut out)?;
    Ok(String::from_utf8(out)?)
}
