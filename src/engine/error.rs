//! A database error as the tool carries it: the one line a DBA reads (as psql, mysql or
//! sqlcmd would print it), the server's code as data (SQLSTATE, error number) and the driver's
//! own error with its source chain. Callers decide on codes, never by searching message text.

use std::error::Error;
use std::fmt;

use crate::config::EngineKind;

/// An error from a database driver or server.
///
/// `Display` is the one-line message; `source()` is deliberately empty, because that line
/// already says what the driver's chain says, and error output prints a chain with `{:#}`:
/// the driver's error stays reachable through [`DbError::driver`].
#[derive(Debug)]
pub struct DbError {
    pub engine: EngineKind,
    /// The SQLSTATE, when the server sent one (PostgreSQL, MySQL; SQL Server's state number is
    /// not a SQLSTATE and is not put here).
    pub sqlstate: Option<String>,
    /// The server's error number (MySQL, SQL Server).
    pub number: Option<u32>,
    message: String,
    driver: Box<dyn Error + Send + Sync + 'static>,
}

impl DbError {
    pub fn new(
        engine: EngineKind,
        message: String,
        driver: impl Error + Send + Sync + 'static,
    ) -> DbError {
        DbError {
            engine,
            sqlstate: None,
            number: None,
            message,
            driver: Box::new(driver),
        }
    }

    pub fn with_sqlstate(mut self, sqlstate: impl Into<String>) -> DbError {
        self.sqlstate = Some(sqlstate.into());
        self
    }

    pub fn with_number(mut self, number: u32) -> DbError {
        self.number = Some(number);
        self
    }

    /// The driver's error, whose `source()` chain goes down to the I/O or TLS cause.
    pub fn driver(&self) -> &(dyn Error + Send + Sync + 'static) {
        self.driver.as_ref()
    }

    /// The first database error in an error's chain of contexts.
    pub fn find(err: &anyhow::Error) -> Option<&DbError> {
        err.chain().find_map(|e| e.downcast_ref::<DbError>())
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for DbError {}

/// A driver error's message and every distinct message of its sources, on one line.
pub fn error_chain(e: &dyn Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(&format!(": {t}"));
        }
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("error connecting to server")
        }
    }
    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn one_line_with_codes_and_the_driver_chain_kept() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let outer = Outer(io);
        let line = error_chain(&outer);
        assert_eq!(line, "error connecting to server: Connection refused");
        let e = DbError::new(EngineKind::Postgres, line.clone(), outer).with_sqlstate("08006");
        let any: anyhow::Error = anyhow::Error::new(e).context("connecting to target `pg`");
        assert_eq!(
            format!("{any:#}"),
            format!("connecting to target `pg`: {line}")
        );
        let db = DbError::find(&any).expect("a DbError in the chain");
        assert_eq!(db.sqlstate.as_deref(), Some("08006"));
        assert_eq!(db.number, None);
        assert!(db.driver().source().is_some(), "the driver's chain is kept");
    }
}
