//! One module per subcommand: `pub async fn run(args, &Ctx) -> Result<Outcome>`.
//!
//! Commands that work target by target share [`each`]: one target failing is logged once,
//! reported in its place, and does not stop the others.

pub mod agent;
pub mod anonymize;
pub mod audit;
pub mod backup;
pub mod erase;
pub mod health;
pub mod load_csv;
pub mod maintenance;
pub mod metrics;
pub mod monitor;
pub mod pitr;
pub mod pitr_base;
pub mod pitr_check;
pub mod privacy;
pub mod restore;
pub mod schema;
pub mod wal;

use std::future::Future;

use serde::Serialize;

use crate::config::Target;
use crate::Ctx;

/// A target's entry in a report: what was done on it, or why nothing could be.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum PerTarget<T> {
    Done(T),
    Failed(TargetFailed),
}

impl<T> PerTarget<T> {
    pub fn failed(&self) -> bool {
        matches!(self, PerTarget::Failed(_))
    }

    pub fn done(&self) -> Option<&T> {
        match self {
            PerTarget::Done(d) => Some(d),
            PerTarget::Failed(_) => None,
        }
    }
}

/// A target that could not be worked on at all: `{"target", "status": "failed", "error"}`.
#[derive(Debug, Serialize)]
pub(crate) struct TargetFailed {
    pub target: String,
    pub status: &'static str,
    pub error: String,
}

impl TargetFailed {
    /// The summary line under the tables.
    pub fn line(&self) -> String {
        format!("{}: FAILED: {}", self.target, self.error)
    }
}

/// Logs, once, why work on a target failed; returns the message for the report.
pub(crate) fn failure(ctx: &Ctx, target: &str, e: &anyhow::Error) -> String {
    let error = format!("{e:#}");
    ctx.log.error(format!("target `{target}`: {error}"));
    error
}

/// Runs `work` on each item (a target, or a target with its settings) in turn.
pub(crate) async fn each<X, T, F, Fut>(
    ctx: &Ctx,
    items: impl IntoIterator<Item = X>,
    target_of: impl Fn(&X) -> &Target,
    mut work: F,
) -> Vec<PerTarget<T>>
where
    F: FnMut(X) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let mut out = Vec::new();
    for item in items {
        let target = target_of(&item).name.clone();
        out.push(match work(item).await {
            Ok(done) => PerTarget::Done(done),
            Err(e) => PerTarget::Failed(TargetFailed {
                error: failure(ctx, &target, &e),
                target,
                status: "failed",
            }),
        });
    }
    out
}

/// The summary lines of the targets that failed as a whole.
pub(crate) fn failure_lines<T>(targets: &[PerTarget<T>]) -> Vec<String> {
    targets
        .iter()
        .filter_map(|t| match t {
            PerTarget::Done(_) => None,
            PerTarget::Failed(f) => Some(f.line()),
        })
        .collect()
}

/// A table per target that was worked on (the failed ones are summary lines instead).
pub(crate) fn done_blocks<T>(
    targets: &[PerTarget<T>],
    block: impl Fn(&T) -> crate::output::TableBlock,
) -> Vec<crate::output::TableBlock> {
    targets
        .iter()
        .filter_map(PerTarget::done)
        .map(block)
        .collect()
}
