//! `metrics serve | collect`: the Prometheus exporter, or one round written for
//! node_exporter's textfile collector.

use std::sync::Arc;

use anyhow::{Context, Result};
use serde_json::json;

use crate::cli::MetricsCommand;
use crate::metrics::{server, Exporter};
use crate::output::{Outcome, Status};
use crate::Ctx;

pub async fn run(cmd: &MetricsCommand, ctx: &Ctx) -> Result<Outcome> {
    let exporter = Arc::new(Exporter::new(
        Arc::new(ctx.config.clone()),
        ctx.targets.clone(),
    )?);
    match cmd {
        MetricsCommand::Serve { listen } => {
            let addr = listen
                .clone()
                .unwrap_or_else(|| ctx.config.metrics.listen.clone());
            let listener = tokio::net::TcpListener::bind(&addr)
                .await
                .with_context(|| format!("listening on {addr}"))?;
            ctx.log.info(format!(
                "mairie-dba exporter on http://{}/metrics ({} target(s))",
                listener
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or(addr.clone()),
                ctx.targets.len()
            ));
            axum::serve(listener, server::router(exporter))
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await
                .context("serving /metrics")?;
            Ok(Outcome::new(Status::Success).field("stopped", true))
        }
        MetricsCommand::Collect { output } => {
            let results = exporter.scrape().await;
            let text = exporter.render(&results)?;
            let down: Vec<String> = results
                .iter()
                .filter(|(_, o)| o.round.is_none())
                .map(|(t, o)| format!("{}: {}", t.name, o.error.clone().unwrap_or_default()))
                .collect();
            for d in &down {
                ctx.log.warn(format!("target {d}"));
            }
            let mut o = Outcome::new(Status::Success);
            match output {
                Some(path) => {
                    crate::backup::write_atomic(path, text.as_bytes())?;
                    // node_exporter runs as another user: the file holds no secret.
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
                    o = o.field("output", path.display().to_string());
                    o.lines.push(format!(
                        "{} bytes of metrics written to {}",
                        text.len(),
                        path.display()
                    ));
                }
                None => o.lines.push(text.trim_end().to_string()),
            }
            Ok(o.field(
                "targets",
                json!(results
                    .iter()
                    .map(|(t, o)| json!({
                        "target": t.name, "up": o.round.is_some(), "error": o.error,
                    }))
                    .collect::<Vec<_>>()),
            ))
        }
    }
}
