//! The `mairie-dba` binary: parse the command line, run, turn the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A file-size limit (`ulimit -f`) must make a write fail with an error we can report and
    // clean up after, not kill the process half-way through a backup.
    // SAFETY: setting a signal disposition to SIG_IGN before any thread starts.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let cli = match mairie_dba::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; a usage error is exit 2 (3 for a check).
            let args: Vec<String> = std::env::args().collect();
            let code = match (e.use_stderr(), mairie_dba::is_check_command_line(&args)) {
                (false, _) => 0,
                (true, true) => 3,
                (true, false) => 2,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    ExitCode::from(mairie_dba::run(cli))
}
