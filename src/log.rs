//! Messages for people on stderr, at the verbosity the user asked for.
//!
//! Results never go through here: commands return an [`crate::output::Outcome`] and only
//! `output/` writes stdout. Progress bars share stderr, so messages are printed through
//! indicatif's `suspend` when a bar is showing.

use std::io::IsTerminal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Quiet,
    Normal,
    Verbose,
}

#[derive(Debug, Clone)]
pub struct Log {
    level: Level,
    progress: bool,
}

impl Log {
    /// `bars`: whether the user allows progress bars (not `--no-progress`, not JSON output);
    /// they are drawn only on a terminal and never when quiet.
    pub fn new(level: Level, bars: bool) -> Self {
        let progress = bars && level != Level::Quiet && std::io::stderr().is_terminal();
        Log { level, progress }
    }

    /// Whether progress bars may be drawn.
    pub fn progress(&self) -> bool {
        self.progress
    }

    pub fn info(&self, msg: impl AsRef<str>) {
        if self.level >= Level::Normal {
            eprintln!("{}", msg.as_ref());
        }
    }

    pub fn warn(&self, msg: impl AsRef<str>) {
        if self.level >= Level::Normal {
            eprintln!("warning: {}", msg.as_ref());
        }
    }

    pub fn debug(&self, msg: impl AsRef<str>) {
        if self.level >= Level::Verbose {
            eprintln!("{}", msg.as_ref());
        }
    }

    /// Errors are always shown, quiet or not.
    pub fn error(&self, msg: impl AsRef<str>) {
        eprintln!("error: {}", msg.as_ref());
    }
}
