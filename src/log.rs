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
            eprintln!("{}", printable(msg.as_ref()));
        }
    }

    pub fn warn(&self, msg: impl AsRef<str>) {
        if self.level >= Level::Normal {
            eprintln!("warning: {}", printable(msg.as_ref()));
        }
    }

    pub fn debug(&self, msg: impl AsRef<str>) {
        if self.level >= Level::Verbose {
            eprintln!("{}", printable(msg.as_ref()));
        }
    }

    /// Errors are always shown, quiet or not.
    pub fn error(&self, msg: impl AsRef<str>) {
        eprintln!("error: {}", printable(msg.as_ref()));
    }
}

/// A message as the terminal may show it: control characters (escape sequences, carriage
/// returns, NUL) that could come from a file, a server or a report are shown escaped, so
/// no input can rewrite the operator's screen. Line breaks and tabs stay.
pub fn printable(msg: &str) -> std::borrow::Cow<'_, str> {
    if !msg
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return std::borrow::Cow::Borrowed(msg);
    }
    let mut out = String::with_capacity(msg.len() + 8);
    for c in msg.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_are_shown_escaped() {
        assert_eq!(printable("plain é"), "plain é");
        assert_eq!(
            printable("bad \u{1b}[2J value\r\u{0}"),
            "bad \\u{1b}[2J value\\r\\u{0}"
        );
    }
}
