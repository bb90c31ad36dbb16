//! mairie-dba: the everyday toolkit of the DBA of the mairie database.
//!
//! [`run`] loads the configuration once, builds a [`Ctx`], dispatches to `cmd::*` and renders
//! the [`output::Outcome`]. Data flows one way: CLI args -> Ctx -> cmd -> engine -> Outcome
//! -> output.

pub mod audit;
pub mod backup;
pub mod catalog;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod engine;
pub mod error;
pub mod health;
pub mod load;
pub mod log;
pub mod maintenance;
pub mod metrics;
pub mod monitor;
pub mod output;
pub mod pitr;
pub mod privacy;
pub mod storage;
#[cfg(test)]
pub(crate) mod testutil;
pub mod web;

use std::path::PathBuf;

use anyhow::Result;
use clap::CommandFactory;

use cli::{Cli, Command, Format, GlobalArgs};
use config::{Config, Target};
use output::{Outcome, Status};

/// What every command gets: the configuration, the targets it runs on, and the global flags.
pub struct Ctx {
    pub config: Config,
    pub targets: Vec<Target>,
    pub global: GlobalArgs,
    pub log: log::Log,
}

/// Operations exit 0/1/2; checks follow the Nagios convention 0/1/2/3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Operation,
    Check,
}

impl Kind {
    fn of(cmd: &Command) -> Kind {
        match cmd {
            Command::Backup(b) if matches!(b.command, Some(cli::BackupCommand::Check(_))) => {
                Kind::Check
            }
            Command::Health(_) | Command::Audit(_) => Kind::Check,
            Command::Monitor(
                cli::MonitorCommand::Scan { .. }
                | cli::MonitorCommand::Status { .. }
                | cli::MonitorCommand::Verify { .. },
            ) => Kind::Check,
            Command::Pitr(cli::PitrCommand::Check) => Kind::Check,
            Command::Schema(cli::SchemaCommand::Status { check: true, .. }) => Kind::Check,
            _ => Kind::Operation,
        }
    }

    /// The status and exit code of a usage or configuration error.
    fn usage_error(self) -> (Status, u8) {
        match self {
            Kind::Operation => (Status::Failed, 2),
            Kind::Check => (Status::Unknown, 3),
        }
    }

    /// The status and exit code of a command that could not do its work at all.
    fn failure(self) -> (Status, u8) {
        match self {
            Kind::Operation => (Status::Failed, 1),
            Kind::Check => (Status::Unknown, 3),
        }
    }
}

/// Whether a command line (as typed) asks for a check, whose usage errors exit 3 (UNKNOWN)
/// rather than 2: used when clap itself refuses the line.
pub fn is_check_command_line(args: &[String]) -> bool {
    args.windows(2).any(|w| {
        (matches!(w[0].as_str(), "backup" | "pitr") && w[1] == "check")
            || (w[0] == "monitor" && matches!(w[1].as_str(), "scan" | "status" | "verify"))
            || (w[0] == "schema" && w[1] == "status" && args.iter().any(|a| a == "--check"))
    }) || args.iter().any(|a| a == "health" || a == "audit")
}

/// A command line the parser refused (unknown option, bad value): its exit code (2, or 3
/// UNKNOWN for a check) and, when the line asks for `--format json` or `--format nagios`,
/// what stdout must still hold (one document, one plugin line), since a monitoring system
/// or a script reads stdout, not stderr. `message` is the parser's error.
pub fn refused_command_line(args: &[String], message: &str) -> (u8, Option<String>) {
    // restore_command: any status but 1 ("not found") and 0 must stop recovery.
    if args.windows(2).any(|w| w[0] == "wal" && w[1] == "fetch") {
        return (cmd::wal::FETCH_ABORT, None);
    }
    let (status, code) = if is_check_command_line(args) {
        Kind::Check.usage_error()
    } else {
        Kind::Operation.usage_error()
    };
    let first = message
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("usage error");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let out = match format_in(args) {
        Some(Format::Json) => {
            serde_json::to_string_pretty(&Outcome::new(status).field("error", first).json()).ok()
        }
        Some(Format::Nagios) => Some(output::nagios::NagiosLine::plain(status, first).to_string()),
        _ => None,
    };
    (code, out)
}

/// The `--format` a raw command line asks for (the last one wins, as the parser reads it).
fn format_in(args: &[String]) -> Option<Format> {
    use clap::ValueEnum;
    let mut found = None;
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        let value = match a.strip_prefix("--format") {
            Some("") => it.next().map(String::as_str),
            Some(rest) => rest.strip_prefix('='),
            None => None,
        };
        if let Some(v) = value {
            found = Format::from_str(v, true).ok();
        }
    }
    found
}

/// `--format nagios` and `--format junit` belong to the commands that can speak them.
fn check_format(cmd: &Command, format: Format) -> Result<(), error::ConfigError> {
    let ok = match format {
        Format::Table | Format::Json => true,
        Format::Nagios => {
            matches!(cmd, Command::Health(_))
                || matches!(cmd, Command::Backup(b) if matches!(b.command, Some(cli::BackupCommand::Check(_))))
                || matches!(
                    cmd,
                    Command::Monitor(
                        cli::MonitorCommand::Scan { .. }
                            | cli::MonitorCommand::Status { .. }
                            | cli::MonitorCommand::Verify { .. }
                    )
                )
                || matches!(cmd, Command::Pitr(cli::PitrCommand::Check))
                || matches!(
                    cmd,
                    Command::Schema(cli::SchemaCommand::Status { check: true, .. })
                )
        }
        Format::Junit => matches!(cmd, Command::Audit(_)),
    };
    if ok {
        Ok(())
    } else {
        Err(error::ConfigError::new(match format {
            Format::Nagios => {
                "--format nagios is for `health`, `backup check`, `pitr check`, `schema status --check`, `monitor scan`, `monitor status` and `monitor verify`"
            }
            _ => "--format junit is for `audit`",
        }))
    }
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> u8 {
    let g = &cli.global;
    let level = if g.quiet {
        log::Level::Quiet
    } else if g.verbose {
        log::Level::Verbose
    } else {
        log::Level::Normal
    };
    let log = log::Log::new(level, !g.no_progress && g.format != Format::Json);
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "mairie-dba",
            &mut std::io::stdout(),
        );
        return 0;
    }
    // archive_command and restore_command: no runtime, no password, no connection.
    if let Command::Wal(cmd) = &cli.command {
        return cmd::wal::run(cmd, &cli.global, &log);
    }
    let kind = Kind::of(&cli.command);
    let format = cli.global.format;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            log.error(format!("cannot start the runtime: {e}"));
            return kind.failure().1;
        }
    };
    // An operation stopped by Ctrl-C or SIGTERM stops its tools (and theirs), and drops the
    // databases it created, before the process ends. `metrics serve` stops on its own.
    let stoppable = !matches!(
        &cli.command,
        Command::Metrics(cli::MetricsCommand::Serve { .. })
            | Command::Monitor(cli::MonitorCommand::Serve { .. })
    );
    let res = runtime.block_on(async {
        if !stoppable {
            return dispatch(cli, log.clone()).await;
        }
        tokio::select! {
            r = dispatch(cli, log.clone()) => r,
            sig = stop_signal() => Err(stopped(sig, &log).await),
        }
    });
    // Don't wait for connection tasks still winding down.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match res {
        Ok(outcome) => {
            if let Err(e) = output::render(&outcome, format) {
                log.error(format!("writing the result: {e}"));
                return kind.failure().1;
            }
            outcome.status.exit_code()
        }
        Err(e) => {
            let (status, code) = if error::is_config_error(&e) {
                kind.usage_error()
            } else {
                kind.failure()
            };
            let msg = format!("{e:#}");
            log.error(&msg);
            match format {
                Format::Json => {
                    let _ = output::render(&Outcome::new(status).field("error", msg), format);
                }
                // A monitoring system reads stdout: give it a plugin line even on failure.
                Format::Nagios => println!("{}", output::nagios::NagiosLine::plain(status, &msg)),
                _ => {}
            }
            code
        }
    }
}

/// Waits for SIGINT or SIGTERM; returns its name.
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

/// What is done after a stop: the operation's future is already dropped (its tools told to
/// stop); wait for them, drop what it created, and say so.
async fn stopped(sig: &str, log: &log::Log) -> anyhow::Error {
    storage::stop_uploads();
    let left = engine::tools::stop_children(std::time::Duration::from_secs(5)).await;
    let uploads = storage::wait_for_aborts(std::time::Duration::from_secs(10)).await;
    let dropped = engine::cleanup::drop_created().await;
    tokio::task::spawn_blocking(|| storage::release_leases(std::time::Duration::from_secs(5)))
        .await
        .ok();
    let removed = engine::cleanup::remove_in_progress();
    let mut msg = format!("stopped by {sig}");
    if !removed.is_empty() {
        msg.push_str(&format!(
            "; removed the unfinished file(s): {}",
            removed
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !dropped.is_empty() {
        msg.push_str(&format!(
            "; dropped the database(s) this run had created: {}",
            dropped.join(", ")
        ));
    }
    if left > 0 {
        msg.push_str(&format!("; {left} tool(s) still stopping"));
    }
    if uploads > 0 {
        msg.push_str(&format!(
            "; {uploads} upload(s) to object storage not yet aborted (the next backup aborts them)"
        ));
    }
    let _ = log;
    anyhow::anyhow!(msg)
}

/// Whether a command talks to the targets' servers (and so needs their passwords).
fn connects(cmd: &Command) -> bool {
    !matches!(
        cmd,
        Command::Pitr(
            cli::PitrCommand::Verify | cli::PitrCommand::List | cli::PitrCommand::Restore(_)
        ) | Command::Schema(cli::SchemaCommand::New { .. })
    )
}

async fn dispatch(cli: Cli, log: log::Log) -> Result<Outcome> {
    check_format(&cli.command, cli.global.format)?;
    let path = cli
        .global
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG));
    let config = Config::load(&path)?;
    for t in &config.targets {
        if let config::PasswordSource::Env { var } = &t.connection.password {
            engine::tools::register_secret_var(var);
        }
    }
    // The monitor reads deposits, not the city's databases: it needs no target.
    let targets = if matches!(cli.command, Command::Monitor(_)) && cli.global.targets.is_empty() {
        Vec::new()
    } else {
        config.select_targets(&cli.global.targets)?
    };
    // Resolve the secrets up front: a missing variable is a configuration error (exit 2),
    // reported before anything is touched. Commands that only read files need none.
    if connects(&cli.command) {
        for t in &targets {
            t.password()?;
        }
    }
    let ctx = Ctx {
        config,
        targets,
        global: cli.global,
        log,
    };
    match &cli.command {
        Command::Schema(cmd) => cmd::schema::run(cmd, &ctx).await,
        Command::LoadCsv(args) => cmd::load_csv::run(args, &ctx).await,
        Command::Backup(args) => cmd::backup::run(args, &ctx).await,
        Command::Restore(args) => cmd::restore::run(args, &ctx).await,
        Command::Anonymize(args) => cmd::anonymize::run(args, &ctx).await,
        Command::Maintenance(cmd) => cmd::maintenance::run(cmd, &ctx).await,
        Command::Metrics(cmd) => cmd::metrics::run(cmd, &ctx).await,
        Command::Health(args) => cmd::health::run(args, &ctx).await,
        Command::Audit(args) => cmd::audit::run(args, &ctx).await,
        Command::Monitor(cmd) => cmd::monitor::run(cmd, &ctx).await,
        Command::Agent(cmd) => cmd::agent::run(cmd, &ctx).await,
        Command::Pitr(cmd) => cmd::pitr::run(cmd, &ctx).await,
        Command::Erase(args) => cmd::erase::run(args, &ctx).await,
        Command::Privacy(cmd) => cmd::privacy::run(cmd, &ctx).await,
        Command::Completions { .. } | Command::Wal(_) => {
            unreachable!("handled before the config is read")
        }
    }
}
