//! `pitr base-backup`, `pitr list`, `pitr restore`, `pitr drill`.

use anyhow::Result;

use crate::cli::{BaseBackupArgs, PitrDrillArgs, PitrRestoreArgs};
use crate::output::Outcome;
use crate::pitr::PitrPlace;
use crate::Ctx;

pub async fn base_backup(_p: Vec<PitrPlace>, _a: &BaseBackupArgs, _ctx: &Ctx) -> Result<Outcome> {
    anyhow::bail!("pitr base-backup: not built yet")
}

pub async fn list(_p: Vec<PitrPlace>, _ctx: &Ctx) -> Result<Outcome> {
    anyhow::bail!("pitr list: not built yet")
}

pub async fn restore(_p: Vec<PitrPlace>, _a: &PitrRestoreArgs, _ctx: &Ctx) -> Result<Outcome> {
    anyhow::bail!("pitr restore: not built yet")
}

pub async fn drill(_p: Vec<PitrPlace>, _a: &PitrDrillArgs, _ctx: &Ctx) -> Result<Outcome> {
    anyhow::bail!("pitr drill: not built yet")
}
