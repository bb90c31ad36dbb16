//! Running PostgreSQL's client programs (pg_dump, pg_restore) against a target: the
//! connection on their command line (none of it secret), the password and TLS mode in their
//! environment. Shared by the backup and by the split restore of big tables.

use std::path::Path;

use anyhow::Result;
use tokio::process::Command;

use crate::config::{SslMode, Target};
use crate::engine::tools;

/// Host, port, user and database on the command line (none of them secret); the password
/// and TLS mode in the child's environment.
pub fn connection_args(cmd: &mut Command, target: &Target, database: &str) -> Result<()> {
    let c = &target.connection;
    cmd.args([
        "-h",
        &c.host,
        "-p",
        &c.port.to_string(),
        "-U",
        &c.user,
        "-d",
        database,
    ]);
    libpq_env(cmd, target)
}

/// libpq's variables for a tool connecting to `target`: application name, connect timeout,
/// TLS mode, and the password in `PGPASSWORD` only when the target has one.
pub fn libpq_env(cmd: &mut Command, target: &Target) -> Result<()> {
    let c = &target.connection;
    cmd.env("PGAPPNAME", "mairie-dba")
        .env("PGCONNECT_TIMEOUT", c.connect_timeout.as_secs().to_string())
        .env(
            "PGSSLMODE",
            match c.sslmode {
                SslMode::Disable => "disable",
                SslMode::Prefer => "prefer",
                SslMode::Require => "require",
            },
        );
    match target.password()? {
        Some(pw) => {
            cmd.env("PGPASSWORD", pw.expose());
        }
        None => {
            cmd.env_remove("PGPASSWORD");
        }
    }
    Ok(())
}

/// One `pg_restore --exit-on-error` run of the archive at `path` into database `into`,
/// with `args`; its stderr is the error when it fails.
pub async fn run_pg_restore(
    pg_restore: &Path,
    target: &Target,
    into: &str,
    path: &Path,
    args: &[String],
) -> Result<()> {
    let mut cmd = Command::new(pg_restore);
    cmd.args(["--exit-on-error", "--no-password"]).args(args);
    connection_args(&mut cmd, target, into)?;
    cmd.arg(path);
    let mut child = tools::spawn(&mut cmd, false)?;
    let stderr = tools::collect_stderr(&mut child);
    tools::finish(child, stderr, "pg_restore").await
}
