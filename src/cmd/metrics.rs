//! `metrics serve | collect`: the Prometheus exporter, or one round written for
//! node_exporter's textfile collector. `collect` is an operation: it fails (exit 1) when a
//! target cannot be reached, after writing the round (with `mairie_dba_up 0`) all the same;
//! a family that failed on a reachable target is in the metrics and the JSON document, not
//! a failure of the command.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};

use crate::cli::MetricsCommand;
use crate::error::ConfigError;
use crate::metrics::{server, Exporter};
use crate::output::{Outcome, Report, Status};
use crate::web::{self, WebConfig};
use crate::Ctx;

pub async fn run(cmd: &MetricsCommand, ctx: &Ctx) -> Result<Outcome> {
    let exporter = Arc::new(Exporter::new(
        Arc::new(ctx.config.clone()),
        ctx.targets.clone(),
        ctx.log.clone(),
    )?);
    match cmd {
        MetricsCommand::Serve {
            listen,
            web_config_file,
            insecure_listen,
        } => {
            let addr = listen
                .clone()
                .unwrap_or_else(|| ctx.config.metrics.listen.clone());
            let web = match web_config_file {
                Some(p) => WebConfig::load(p)?,
                None => WebConfig::default(),
            };
            let sock: std::net::SocketAddr = tokio::net::lookup_host(&addr)
                .await
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| ConfigError::new(format!("--listen `{addr}`: not an address")))?;
            web::check_listen(sock, &web, *insecure_listen)
                .map_err(|e| ConfigError::new(e.to_string()))?;
            let listener = tokio::net::TcpListener::bind(sock)
                .await
                .with_context(|| format!("listening on {addr}"))?;
            ctx.log.info(format!(
                "mairie-dba exporter on {}://{}/metrics ({} target(s){})",
                if web.tls.is_some() { "https" } else { "http" },
                listener
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or(addr.clone()),
                ctx.targets.len(),
                if web.users.is_empty() {
                    ""
                } else {
                    ", basic auth"
                }
            ));
            web::serve(
                listener,
                server::router(exporter),
                web,
                web::Limits::default(),
                stop_signal(),
            )
            .await
            .context("serving /metrics")?;
            Ok(Outcome::from_report(&Stopped))
        }
        MetricsCommand::Collect { output } => {
            let results = exporter.scrape().await;
            let text = exporter.render(&results)?;
            let targets: Vec<TargetUp> = results
                .iter()
                .map(|(t, o)| TargetUp {
                    target: t.name.clone(),
                    up: o.round.is_some(),
                    error: o.error.clone(),
                    scrape_errors: o
                        .round
                        .iter()
                        .flat_map(|r| r.failures())
                        .map(|(family, error)| FamilyError {
                            family: family.to_string(),
                            error: error.to_string(),
                        })
                        .collect(),
                })
                .collect();
            for t in targets.iter().filter(|t| !t.up) {
                ctx.log.warn(format!(
                    "target {}: {}",
                    t.target,
                    t.error.as_deref().unwrap_or_default()
                ));
            }
            let metrics = match output {
                Some(path) => {
                    crate::backup::write_atomic(path, text.as_bytes())?;
                    // node_exporter runs as another user: the file holds no secret.
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
                    Metrics::Written {
                        path: path.display().to_string(),
                        bytes: text.len(),
                    }
                }
                None => Metrics::Printed(text),
            };
            // A round the scrape could not wait for is still cancelling its probe on the
            // server: let it, rather than leave a statement of ours waiting there.
            exporter.settle(Duration::from_secs(10)).await;
            Ok(Outcome::from_report(&CollectReport { metrics, targets }))
        }
    }
}

/// `serve` once stopped (Ctrl-C).
struct Stopped;

impl Report for Stopped {
    fn status(&self) -> Status {
        Status::Success
    }

    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("stopped".into(), json!(true));
        m
    }
}

/// One round of `collect`: the exposition, and whether each target answered.
struct CollectReport {
    metrics: Metrics,
    targets: Vec<TargetUp>,
}

/// Where the exposition went.
enum Metrics {
    /// On stdout, after any table (not in the JSON document).
    Printed(String),
    /// To this file, this many bytes.
    Written { path: String, bytes: usize },
}

#[derive(Debug, serde::Serialize)]
struct TargetUp {
    target: String,
    up: bool,
    error: Option<String>,
    /// The families that failed on a reachable target.
    scrape_errors: Vec<FamilyError>,
}

#[derive(Debug, serde::Serialize)]
struct FamilyError {
    family: String,
    error: String,
}

impl Report for CollectReport {
    /// Failed when a target could not be reached (its metrics still say `up 0`).
    fn status(&self) -> Status {
        Status::of_operation(self.targets.iter().any(|t| !t.up))
    }

    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        if let Metrics::Written { path, .. } = &self.metrics {
            m.insert("output".into(), json!(path));
        }
        m.insert("targets".into(), json!(self.targets));
        m
    }

    fn lines(&self) -> Vec<String> {
        vec![match &self.metrics {
            Metrics::Printed(text) => text.trim_end().to_string(),
            Metrics::Written { path, bytes } => {
                format!("{bytes} bytes of metrics written to {path}")
            }
        }]
    }
}

/// Ctrl-C or SIGTERM (systemd's and Kubernetes' stop).
async fn stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(target: &str, error: Option<&str>) -> TargetUp {
        TargetUp {
            target: target.into(),
            up: error.is_none(),
            error: error.map(Into::into),
            scrape_errors: Vec::new(),
        }
    }

    #[test]
    fn a_written_round_names_its_file_before_the_targets() {
        let r = CollectReport {
            metrics: Metrics::Written {
                path: "/var/lib/node_exporter/mairie.prom".into(),
                bytes: 1234,
            },
            targets: vec![up("pg", None), up("my", Some("refused"))],
        };
        assert_eq!(
            serde_json::to_string(&r.fields()).unwrap(),
            concat!(
                r#"{"output":"/var/lib/node_exporter/mairie.prom","targets":["#,
                r#"{"target":"pg","up":true,"error":null,"scrape_errors":[]},"#,
                r#"{"target":"my","up":false,"error":"refused","scrape_errors":[]}]}"#
            )
        );
        assert_eq!(
            r.lines(),
            ["1234 bytes of metrics written to /var/lib/node_exporter/mairie.prom"]
        );
        assert_eq!(r.status(), Status::Failed, "a target could not be reached");
    }

    #[test]
    fn a_printed_round_is_a_line_not_a_field() {
        let r = CollectReport {
            metrics: Metrics::Printed("# HELP x\nx 1\n\n".into()),
            targets: vec![up("pg", None)],
        };
        assert_eq!(
            serde_json::to_string(&r.fields()).unwrap(),
            r#"{"targets":[{"target":"pg","up":true,"error":null,"scrape_errors":[]}]}"#
        );
        assert_eq!(r.lines(), ["# HELP x\nx 1"]);
        assert_eq!(r.status(), Status::Success);
        assert_eq!(Outcome::from_report(&Stopped).json()["stopped"], true);
    }
}
