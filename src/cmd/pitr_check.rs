//! `pitr check`: is WAL archiving working? (Nagios exit codes)

use anyhow::Result;

use crate::output::Outcome;
use crate::pitr::PitrPlace;
use crate::Ctx;

pub async fn run(_places: Vec<PitrPlace>, _ctx: &Ctx) -> Result<Outcome> {
    anyhow::bail!("pitr check: not built yet")
}
