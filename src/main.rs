//! The `mairie-dba` binary: parse the command line, run, turn the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // The supervisor of a child tool (see engine::tools::supervise): nothing else runs.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).map(|a| a.as_os_str()) == Some(mairie_dba::engine::tools::SUPERVISE_ARG.as_ref())
    {
        let code = mairie_dba::engine::tools::supervise(&args[2..]);
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    // A file-size limit (`ulimit -f`) must make a write fail with an error we can report and
    // clean up after, not kill the process half-way through a backup.
    // SAFETY: setting a signal disposition to SIG_IGN before any thread starts.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let cli = match mairie_dba::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; a usage error is exit 2 (3 for a check),
            // with one JSON document or plugin line on stdout when the format asks for it.
            let _ = e.print();
            if !e.use_stderr() {
                return ExitCode::from(0);
            }
            let args: Vec<String> = std::env::args().collect();
            let (code, stdout) = mairie_dba::refused_command_line(&args, &e.to_string());
            if let Some(out) = stdout {
                println!("{out}");
            }
            return ExitCode::from(code);
        }
    };
    ExitCode::from(mairie_dba::run(cli))
}
