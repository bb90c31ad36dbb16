//! The few typed errors that decide an exit code.
//!
//! Everything else is an `anyhow::Error` with context, which means "the operation failed"
//! (exit 1). A [`ConfigError`] means the user must fix a command line or a config file:
//! exit 2 for an operation, 3 (UNKNOWN) for a check, as the contract says.

use std::fmt;

/// A usage or configuration error: the message names the file, line and key when it can.
#[derive(Debug)]
pub struct ConfigError(String);

impl ConfigError {
    pub fn new(msg: impl Into<String>) -> Self {
        ConfigError(msg.into())
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// True when the error chain holds a [`ConfigError`].
pub fn is_config_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<ConfigError>())
}
