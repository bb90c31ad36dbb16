//! The MySQL and MariaDB checks: catalogue and evaluation.
//!
//! Read through the target's one connection: `mysql.user` (accounts, plugins, password
//! hashes, global privileges, TLS requirements; on MariaDB also `mysql.global_priv` for
//! locked accounts), `mysql.db` (database-level grants), `SHOW GLOBAL VARIABLES`,
//! `information_schema.PLUGINS` and `information_schema.SCHEMATA`. The session is made
//! read-only first.
//!
//! Reading `mysql.user` needs SELECT on the `mysql` schema: without it the account checks
//! end in `error`, quoting the server's refusal.
//!
//! An "administrator" is an account the server ships (root, mysql, mariadb.sys, mysql.sys,
//! mysql.session, mysql.infoschema, debian-sys-maint) or one that holds every global
//! privilege with GRANT OPTION: the privilege checks list the other accounts that hold
//! FILE, SUPER, PROCESS … Password hashes never leave the server: a password equal to the
//! user name is found by comparing hashes in SQL.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use anyhow::{Context, Result};
use mysql_async::prelude::Queryable;
use mysql_async::{Row, Value};

use super::Severity::{Critical, High, Low, Medium};
use super::{name_list, parse_release, support, version_verdict, CheckDef, Probe, Verdict};
use crate::engine::mysql::MyConn;

const MARIADB_SUPPORT: &[((u32, u32), &str)] = &[
    ((10, 5), "2025-06-24"),
    ((10, 6), "2026-07-06"),
    ((10, 11), "2028-02-16"),
    ((11, 4), "2029-05-29"),
    ((11, 8), "2028-06-04"),
];

const MYSQL_SUPPORT: &[((u32, u32), &str)] = &[
    ((5, 7), "2023-10-31"),
    ((8, 0), "2026-04-30"),
    ((8, 4), "2032-04-30"),
];

/// Accounts the server itself creates and relies on.
const SYSTEM_ACCOUNTS: &[&str] = &[
    "root",
    "mysql",
    "mariadb.sys",
    "mysql.sys",
    "mysql.session",
    "mysql.infoschema",
    "debian-sys-maint",
];

/// Plugins that authenticate by password (an empty hash then means no password).
const PASSWORD_PLUGINS: &[&str] = &[
    "",
    "mysql_native_password",
    "mysql_old_password",
    "caching_sha2_password",
    "sha256_password",
    "ed25519",
    "parsec",
];

pub fn is_on(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_uppercase().as_str(),
        "ON" | "1" | "YES" | "TRUE"
    )
}

fn on(v: Option<&str>) -> bool {
    v.is_some_and(is_on)
}

/// Off, or absent from this server (the feature does not exist there).
fn off_or_absent(v: Option<&str>) -> bool {
    v.is_none_or(|v| !is_on(v))
}

fn off(v: Option<&str>) -> bool {
    v.is_some_and(|v| !is_on(v))
}

fn lifetime_bounded(v: Option<&str>) -> bool {
    v.and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|d| (1..=365).contains(&d))
}

fn connect_errors_bounded(v: Option<&str>) -> bool {
    v.and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n <= 1000)
}

pub fn strict_sql_mode(v: Option<&str>) -> bool {
    v.is_some_and(|m| {
        m.split(',')
            .any(|p| matches!(p.trim(), "STRICT_ALL_TABLES" | "STRICT_TRANS_TABLES"))
    })
}

fn symlinks_off(v: Option<&str>) -> bool {
    v.is_none_or(|v| {
        matches!(
            v.trim().to_ascii_uppercase().as_str(),
            "NO" | "DISABLED" | "OFF" | "0"
        )
    })
}

fn error_log_set(v: Option<&str>) -> bool {
    v.is_some_and(|v| !v.trim().is_empty() && v.trim() != "stderr")
}

pub static CHECKS: &[CheckDef] = &[
    // ---------------------------------------------------------------------------------- AUTH
    CheckDef {
        id: "MY-AUTH-01",
        title: "Anonymous accounts",
        severity: Critical,
        rationale: "An account with an empty user name matches any user name: anyone can log in, and a more specific account may be shadowed by it.",
        cis: "CIS MySQL 8.0 7.7",
        remediation: "DROP USER ''@'<host>'; for each (mysql_secure_installation does it).",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "MY-AUTH-02",
        title: "Accounts without a password",
        severity: Critical,
        rationale: "A password-authenticated account with an empty password lets in anyone who can reach the server as that user.",
        cis: "CIS MySQL 8.0 7.3",
        remediation: "ALTER USER '<user>'@'<host>' IDENTIFIED BY '<strong password>'; or IDENTIFIED VIA unix_socket (MariaDB) / WITH auth_socket (MySQL) for local administrators, or ACCOUNT LOCK.",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "MY-AUTH-03",
        title: "Passwords equal to the user name",
        severity: Critical,
        rationale: "A password equal to the user name is the first guess of every brute-force tool.",
        cis: "CIS MySQL 8.0 7.5",
        remediation: "ALTER USER '<user>'@'<host>' IDENTIFIED BY '<strong password>'; and install a password validation plugin (MY-AUTH-10).",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "MY-AUTH-04",
        title: "Accounts that may connect from any host",
        severity: Medium,
        rationale: "An account for host '%' accepts its password from anywhere the port is reachable; the host part is a second factor only when it is narrow.",
        cis: "CIS MySQL 8.0 7.6",
        remediation: "RENAME USER '<user>'@'%' TO '<user>'@'<application network>'; (e.g. '10.1.2.%')",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "MY-AUTH-05",
        title: "root may connect from other hosts",
        severity: High,
        rationale: "root is the name every attacker tries; allowed from elsewhere than localhost, it is an administrator account exposed to the network.",
        cis: "",
        remediation: "DROP USER 'root'@'<host>'; (keep root@localhost) and give remote administrators their own named accounts.",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "MY-AUTH-06",
        title: "Accounts using the pre-4.1 password hash",
        severity: High,
        rationale: "mysql_old_password hashes are 16 hex digits of a broken algorithm: recovered in seconds, and the hash itself is enough to log in.",
        cis: "",
        remediation: "ALTER USER '<user>'@'<host>' IDENTIFIED VIA mysql_native_password USING PASSWORD('<new password>'); (MariaDB) or IDENTIFIED WITH caching_sha2_password BY '…' (MySQL).",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "MY-AUTH-07",
        title: "mysql_native_password accounts where a stronger plugin is available",
        severity: Low,
        rationale: "mysql_native_password stores an unsalted double SHA-1, which is a password equivalent for the protocol; ed25519 (MariaDB) and caching_sha2_password (MySQL) are salted and do not reveal it.",
        cis: "",
        remediation: "ALTER USER '<user>'@'<host>' IDENTIFIED VIA ed25519 USING PASSWORD('<password>'); (MariaDB) or IDENTIFIED WITH caching_sha2_password BY '<password>'; (MySQL), once the clients support it.",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "MY-AUTH-08",
        title: "old_passwords is on",
        severity: High,
        rationale: "With old_passwords, PASSWORD() and SET PASSWORD produce the broken pre-4.1 hash for new passwords.",
        cis: "",
        remediation: "SET GLOBAL old_passwords = OFF; and old_passwords = OFF in the [mysqld] section of the server's option file.",
        probe: Probe::Setting {
            name: "old_passwords",
            expect: "OFF",
            ok: |v| v.is_none_or(|v| !is_on(v)),
        },
    },
    CheckDef {
        id: "MY-AUTH-09",
        title: "Passwords never expire",
        severity: Low,
        rationale: "With default_password_lifetime = 0 a password stays valid forever, however often it has been shared or leaked.",
        cis: "CIS MySQL 8.0 7.4",
        remediation: "SET GLOBAL default_password_lifetime = 365; (and in the option file); service accounts may get PASSWORD EXPIRE NEVER explicitly.",
        probe: Probe::Setting {
            name: "default_password_lifetime",
            expect: "between 1 and 365 days",
            ok: lifetime_bounded,
        },
    },
    CheckDef {
        id: "MY-AUTH-10",
        title: "No password validation plugin",
        severity: Medium,
        rationale: "Without simple_password_check / cracklib_password_check (MariaDB) or validate_password (MySQL), any password is accepted, including the user name.",
        cis: "CIS MySQL 8.0 7.5",
        remediation: "INSTALL SONAME 'simple_password_check'; (MariaDB) or INSTALL COMPONENT 'file://component_validate_password'; (MySQL), and keep it in the option file.",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "MY-AUTH-11",
        title: "Clients with pre-4.1 authentication are accepted",
        severity: High,
        rationale: "secure_auth = OFF (MariaDB) lets clients authenticate with the broken pre-4.1 protocol.",
        cis: "",
        remediation: "SET GLOBAL secure_auth = ON; and secure_auth = ON in the option file.",
        probe: Probe::Setting {
            name: "secure_auth",
            expect: "ON",
            ok: |v| v.is_none_or(is_on),
        },
    },
    // ----------------------------------------------------------------------------------- NET
    CheckDef {
        id: "MY-NET-01",
        title: "Unencrypted connections are accepted",
        severity: Medium,
        rationale: "With require_secure_transport = OFF, clients may connect without TLS: statements, results and, for some plugins, credentials cross the network in clear.",
        cis: "CIS MySQL 8.0 8.1",
        remediation: "SET GLOBAL require_secure_transport = ON; (and in the option file) once TLS is configured (MY-NET-02).",
        probe: Probe::Setting {
            name: "require_secure_transport",
            expect: "ON",
            ok: on,
        },
    },
    CheckDef {
        id: "MY-NET-02",
        title: "TLS is not available",
        severity: High,
        rationale: "Without a certificate and key the server cannot offer TLS at all: no client can encrypt, whatever it asks for.",
        cis: "CIS MySQL 8.0 8.1",
        remediation: "Set ssl_cert, ssl_key (and ssl_ca) in the [mysqld] section and restart; have_ssl must then say YES.",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "MY-NET-03",
        title: "Host names are resolved for authentication",
        severity: Low,
        rationale: "With skip_name_resolve off, accounts may be matched by a host name the client's DNS controls, and a slow DNS stalls every login.",
        cis: "",
        remediation: "skip_name_resolve = ON in the [mysqld] section (accounts must then use IP addresses), and restart.",
        probe: Probe::Setting {
            name: "skip_name_resolve",
            expect: "ON",
            ok: on,
        },
    },
    CheckDef {
        id: "MY-NET-04",
        title: "The server listens on every interface",
        severity: Medium,
        rationale: "bind_address = 0.0.0.0, :: or * (or unset, on MariaDB) exposes the port on every network the machine is on.",
        cis: "",
        remediation: "bind_address = 127.0.0.1,<the application network address> in the [mysqld] section (or skip_networking if only local clients connect), and restart.",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "MY-NET-05",
        title: "Brute-force protection is loose",
        severity: Low,
        rationale: "max_connect_errors blocks a host after that many interrupted connection attempts; a very high value lets a client keep trying.",
        cis: "",
        remediation: "SET GLOBAL max_connect_errors = 100; (and in the option file)",
        probe: Probe::Setting {
            name: "max_connect_errors",
            expect: "at most 1000",
            ok: connect_errors_bounded,
        },
    },
    CheckDef {
        id: "MY-NET-06",
        title: "Remote accounts that do not require TLS",
        severity: Low,
        rationale: "An account reachable from other hosts without REQUIRE SSL may connect in clear even when the server offers TLS.",
        cis: "CIS MySQL 8.0 8.2",
        remediation: "ALTER USER '<user>'@'<host>' REQUIRE SSL; (or require_secure_transport = ON for every account)",
        probe: Probe::Custom,
    },
    // ---------------------------------------------------------------------------------- CONF
    CheckDef {
        id: "MY-CONF-01",
        title: "LOAD DATA LOCAL is enabled",
        severity: Medium,
        rationale: "With local_infile on, a malicious or compromised server (or an injected statement) can make the client send any file it can read.",
        cis: "CIS MySQL 8.0 4.4",
        remediation: "SET GLOBAL local_infile = OFF; (and in the option file). mairie-dba load-csv needs it on for MySQL targets: accept it with audit.ignore there.",
        probe: Probe::Setting {
            name: "local_infile",
            expect: "OFF",
            ok: off,
        },
    },
    CheckDef {
        id: "MY-CONF-02",
        title: "Server-side file access is unrestricted",
        severity: High,
        rationale: "secure_file_priv = '' lets any account with FILE read and write files anywhere the server's OS user can (LOAD DATA INFILE, SELECT … INTO OUTFILE, LOAD_FILE()).",
        cis: "",
        remediation: "secure_file_priv = /var/lib/mysql-files (a dedicated directory) or NULL in the [mysqld] section, and restart.",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "MY-CONF-03",
        title: "The global sql_mode is not strict",
        severity: Low,
        rationale: "Without STRICT_ALL_TABLES or STRICT_TRANS_TABLES, invalid values are silently truncated or zeroed instead of refused.",
        cis: "",
        remediation: "SET GLOBAL sql_mode = 'STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'; (and in the option file)",
        probe: Probe::Setting {
            name: "sql_mode",
            expect: "STRICT_ALL_TABLES or STRICT_TRANS_TABLES among the modes",
            ok: strict_sql_mode,
        },
    },
    CheckDef {
        id: "MY-CONF-04",
        title: "Symbolic links to data files are allowed",
        severity: Medium,
        rationale: "With symbolic links, an account that can create tables can point DATA DIRECTORY and INDEX DIRECTORY outside the data directory.",
        cis: "CIS MySQL 8.0 4.6",
        remediation: "skip_symbolic_links = ON in the [mysqld] section, and restart (have_symlink then says DISABLED).",
        probe: Probe::Setting {
            name: "have_symlink",
            expect: "DISABLED",
            ok: symlinks_off,
        },
    },
    CheckDef {
        id: "MY-CONF-05",
        title: "Test databases exist",
        severity: Medium,
        rationale: "The `test` database (and test_* ones) are open to every account by MariaDB's default grants: a place to store data or stage an attack unnoticed.",
        cis: "CIS MySQL 8.0 4.2",
        remediation: "DROP DATABASE test; (mysql_secure_installation does it)",
        probe: Probe::Offenders {
            sql: "SELECT SCHEMA_NAME, CONCAT('DROP DATABASE `', REPLACE(SCHEMA_NAME, '`', '``'), '`;') FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'test' OR SCHEMA_NAME LIKE 'test!_%' ESCAPE '!' ORDER BY 1",
            none: "no test database",
            what: "test databases",
        },
    },
    CheckDef {
        id: "MY-CONF-06",
        title: "Grants on test% databases",
        severity: High,
        rationale: "MariaDB's default install grants every account (even anonymous) all rights on databases named test and test_*: anyone can create one and fill the disk or stage data.",
        cis: "CIS MySQL 8.0 4.2",
        remediation: "DELETE FROM mysql.db WHERE Db LIKE 'test%'; FLUSH PRIVILEGES; (what mysql_secure_installation runs), or REVOKE each grant.",
        probe: Probe::Offenders {
            sql: "SELECT CONCAT(IF(User = '', '''''', User), '@', Host, ' on ', Db), CONCAT('REVOKE ALL ON `', REPLACE(Db, '`', '``'), '`.* FROM ', QUOTE(User), '@', QUOTE(Host), ';') FROM mysql.db WHERE Db LIKE 'test%' ORDER BY 1",
            none: "no grant on test% databases",
            what: "grants on test% databases",
        },
    },
    CheckDef {
        id: "MY-CONF-07",
        title: "The server's release is supported",
        severity: High,
        rationale: "A release past its end of life gets no security fixes. Within a supported release, only the latest minor release has all of them.",
        cis: "CIS MySQL 8.0 4.1",
        remediation: "Upgrade to a supported release (MariaDB 10.11 / 11.4 / 11.8 LTS; MySQL 8.4 LTS) and apply minor releases as they come out.",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "MY-CONF-08",
        title: "The Performance Schema is off",
        severity: Low,
        rationale: "Without performance_schema, who runs what, from where and for how long cannot be inspected during or after an incident.",
        cis: "",
        remediation: "performance_schema = ON in the [mysqld] section, and restart.",
        probe: Probe::Setting {
            name: "performance_schema",
            expect: "ON",
            ok: on,
        },
    },
    // ----------------------------------------------------------------------------------- LOG
    CheckDef {
        id: "MY-LOG-01",
        title: "The error log is not written to a file",
        severity: Medium,
        rationale: "With log_error empty or stderr, server errors, failed logins and crashes are kept only if whatever started the server captures them.",
        cis: "CIS MySQL 8.0 6.1",
        remediation: "log_error = /var/log/mysql/error.log in the [mysqld] section, and restart.",
        probe: Probe::Setting {
            name: "log_error",
            expect: "a file",
            ok: error_log_set,
        },
    },
    CheckDef {
        id: "MY-LOG-02",
        title: "The general query log is on",
        severity: Low,
        rationale: "The general log writes every statement, passwords in CREATE USER and SET PASSWORD included, and grows without bound: for debugging, not production.",
        cis: "",
        remediation: "SET GLOBAL general_log = OFF; (and in the option file)",
        probe: Probe::Setting {
            name: "general_log",
            expect: "OFF",
            ok: off,
        },
    },
    CheckDef {
        id: "MY-LOG-03",
        title: "No binary log for point-in-time recovery",
        severity: Medium,
        rationale: "Without the binary log, a restore can only go back to the last dump: everything since is lost, and a destructive statement cannot be undone to the minute before it.",
        cis: "",
        remediation: "log_bin = mysql-bin (with binlog_expire_logs_seconds / expire_logs_days) in the [mysqld] section, and restart.",
        probe: Probe::Setting {
            name: "log_bin",
            expect: "ON",
            ok: on,
        },
    },
    CheckDef {
        id: "MY-LOG-04",
        title: "Warnings are not written to the error log",
        severity: Low,
        rationale: "Below verbosity 2 the error log drops warnings, among them aborted connections and access denials.",
        cis: "CIS MySQL 8.0 6.3",
        remediation: "SET GLOBAL log_warnings = 2; (MariaDB) or SET GLOBAL log_error_verbosity = 2; (MySQL), and in the option file.",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "MY-LOG-05",
        title: "No audit plugin",
        severity: Low,
        rationale: "Without an audit plugin (server_audit on MariaDB, audit_log on MySQL Enterprise or Percona) there is no record of who connected and what they ran.",
        cis: "",
        remediation: "INSTALL SONAME 'server_audit'; SET GLOBAL server_audit_events = 'CONNECT,QUERY_DDL,QUERY_DCL'; SET GLOBAL server_audit_logging = ON; (MariaDB), and in the option file.",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "MY-LOG-06",
        title: "Passwords may be written to the logs in clear",
        severity: Low,
        rationale: "log_raw = ON (MySQL) writes statements to the general log without rewriting the passwords they contain.",
        cis: "",
        remediation: "log_raw = OFF in the [mysqld] section, and restart.",
        probe: Probe::Setting {
            name: "log_raw",
            expect: "OFF",
            ok: off_or_absent,
        },
    },
    // ---------------------------------------------------------------------------------- PRIV
    CheckDef {
        id: "MY-PRIV-01",
        title: "Non-administrators with FILE",
        severity: High,
        rationale: "FILE reads and writes files as the server's OS user (LOAD_FILE, SELECT … INTO OUTFILE): configuration, keys, other databases' files.",
        cis: "CIS MySQL 8.0 5.2",
        remediation: "REVOKE FILE ON *.* FROM '<user>'@'<host>';",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "MY-PRIV-02",
        title: "Non-administrators with PROCESS",
        severity: Medium,
        rationale: "PROCESS shows every session's statements, other users' included, with the values and passwords they contain.",
        cis: "CIS MySQL 8.0 5.3",
        remediation: "REVOKE PROCESS ON *.* FROM '<user>'@'<host>';",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "MY-PRIV-03",
        title: "Non-administrators with SUPER",
        severity: High,
        rationale: "SUPER changes global variables, kills any session, bypasses read_only and max_connections, and writes to the binary log's history: an administrator in all but name.",
        cis: "CIS MySQL 8.0 5.4",
        remediation: "REVOKE SUPER ON *.* FROM '<user>'@'<host>';",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "MY-PRIV-04",
        title: "Non-administrators with SHUTDOWN",
        severity: Medium,
        rationale: "SHUTDOWN stops the server: one statement is a denial of service.",
        cis: "CIS MySQL 8.0 5.5",
        remediation: "REVOKE SHUTDOWN ON *.* FROM '<user>'@'<host>';",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "MY-PRIV-05",
        title: "Non-administrators with CREATE USER",
        severity: High,
        rationale: "CREATE USER creates, renames and drops any account, and can change other accounts' passwords.",
        cis: "CIS MySQL 8.0 5.6",
        remediation: "REVOKE CREATE USER ON *.* FROM '<user>'@'<host>';",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "MY-PRIV-06",
        title: "Non-administrators with GRANT OPTION on *.*",
        severity: High,
        rationale: "GRANT OPTION on *.* passes the account's global privileges on to any other account, outside the DBA's control.",
        cis: "CIS MySQL 8.0 5.7",
        remediation: "REVOKE GRANT OPTION ON *.* FROM '<user>'@'<host>';",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "MY-PRIV-07",
        title: "Non-administrators who can read or change the grant tables",
        severity: High,
        rationale: "SELECT on mysql.* (or on *.*) reads every account's password hash for offline cracking; INSERT, UPDATE or DELETE there rewrites the accounts.",
        cis: "CIS MySQL 8.0 5.1",
        remediation: "REVOKE SELECT, INSERT, UPDATE, DELETE ON *.* FROM '<user>'@'<host>'; (or ON mysql.*) and grant the application's own database instead.",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "MY-PRIV-08",
        title: "Non-administrators with REPLICATION SLAVE",
        severity: Low,
        rationale: "REPLICATION SLAVE (REPLICATION REPLICA) streams the binary log: every change to every database. Only the replicas' dedicated accounts need it.",
        cis: "CIS MySQL 8.0 5.8",
        remediation: "REVOKE REPLICATION SLAVE ON *.* FROM '<user>'@'<host>'; except for replication accounts (accept those with audit.ignore).",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "MY-PRIV-09",
        title: "Administrator accounts other than root",
        severity: Low,
        rationale: "Every account with all global privileges and GRANT OPTION is a root by another name: each must be a known person's or tool's, and as few as possible.",
        cis: "",
        remediation: "Review each; REVOKE ALL PRIVILEGES, GRANT OPTION FROM '<user>'@'<host>'; and grant what it needs, or DROP USER.",
        probe: Probe::Custom,
    },
];

// ---------------------------------------------------------------------------------------------
// Accounts

/// A row of `mysql.user`.
#[derive(Debug, Clone, Default)]
pub struct Account {
    pub user: String,
    pub host: String,
    pub plugin: String,
    /// The password hash (empty: no password).
    pub auth: String,
    pub locked: bool,
    pub role: bool,
    pub ssl_type: String,
    /// Global privileges by column name, lower-case, without `_priv` (`file`, `super` …).
    pub privs: BTreeMap<String, bool>,
}

impl Account {
    pub fn has(&self, privilege: &str) -> bool {
        self.privs.get(privilege).copied().unwrap_or(false)
    }

    /// Shipped by the server, or holding every global privilege with GRANT OPTION.
    pub fn is_admin(&self) -> bool {
        SYSTEM_ACCOUNTS.contains(&self.user.as_str()) || self.has_everything()
    }

    pub fn has_everything(&self) -> bool {
        !self.privs.is_empty() && self.privs.values().all(|&y| y)
    }

    /// `user@host`, `''@host` for the anonymous account, `role name` for a MariaDB role.
    pub fn label(&self) -> String {
        if self.role {
            return format!("role {}", self.user);
        }
        if self.user.is_empty() {
            format!("''@{}", self.host)
        } else {
            format!("{}@{}", self.user, self.host)
        }
    }

    /// `'user'@'host'` (or `role`) as a statement takes it.
    pub fn quoted(&self) -> String {
        if self.role {
            quote_str(&self.user)
        } else {
            format!("{}@{}", quote_str(&self.user), quote_str(&self.host))
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self.host.as_str(), "localhost" | "127.0.0.1" | "::1")
    }

    pub fn uses_password(&self) -> bool {
        PASSWORD_PLUGINS.contains(&self.plugin.as_str())
    }

    /// Can log in (not a role, not locked).
    fn active(&self) -> bool {
        !self.role && !self.locked
    }
}

/// A string literal, quotes and backslashes escaped.
pub fn quote_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(f) => Some(f.to_string()),
        other => Some(other.as_sql(true).trim_matches('\'').to_string()),
    }
}

/// Builds accounts from `SELECT * FROM mysql.user` rows (columns by name: the table differs
/// between MySQL and MariaDB) and MariaDB's set of locked accounts.
pub fn accounts_from(
    columns: &[String],
    rows: &[Vec<Option<String>>],
    locked: &BTreeSet<(String, String)>,
) -> Vec<Account> {
    let idx = |name: &str| columns.iter().position(|c| c.eq_ignore_ascii_case(name));
    let get = |r: &Vec<Option<String>>, name: &str| -> String {
        idx(name)
            .and_then(|i| r.get(i).cloned().flatten())
            .unwrap_or_default()
    };
    rows.iter()
        .map(|r| {
            let user = get(r, "User");
            let host = get(r, "Host");
            let mut auth = get(r, "authentication_string");
            if auth.is_empty() {
                auth = get(r, "Password");
            }
            let privs = columns
                .iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    let lc = c.to_ascii_lowercase();
                    let name = lc.strip_suffix("_priv")?.to_string();
                    let y = r.get(i).cloned().flatten().is_some_and(|v| v == "Y");
                    Some((name, y))
                })
                .collect();
            Account {
                locked: get(r, "account_locked") == "Y"
                    || locked.contains(&(user.clone(), host.clone())),
                role: get(r, "is_role") == "Y",
                plugin: get(r, "plugin"),
                ssl_type: get(r, "ssl_type"),
                user,
                host,
                auth,
                privs,
            }
        })
        .collect()
}

/// Accounts holding `privilege` (a `mysql.user` column without `_priv`) that are not
/// administrators.
pub fn holders(accounts: &[Account], privilege: &str, grant_name: &str) -> Verdict {
    let offenders = accounts
        .iter()
        .filter(|a| !a.locked && !a.is_admin() && a.has(privilege))
        .map(|a| {
            (
                a.label(),
                Some(format!("REVOKE {grant_name} ON *.* FROM {};", a.quoted())),
            )
        })
        .collect();
    Verdict::from_offenders(
        offenders,
        &format!("no account other than the administrators holds {grant_name}"),
        &format!("non-administrator accounts with {grant_name}"),
    )
}

/// The verdict of one account-based check.
pub fn account_verdict(
    id: &str,
    accounts: &[Account],
    plugins: &BTreeSet<String>,
    mariadb: bool,
) -> Option<Verdict> {
    let pick = |f: &dyn Fn(&Account) -> bool, fix: &dyn Fn(&Account) -> String| {
        accounts
            .iter()
            .filter(|a| f(a))
            .map(|a| (a.label(), Some(fix(a))))
            .collect::<Vec<_>>()
    };
    Some(match id {
        "MY-AUTH-01" => Verdict::from_offenders(
            pick(&|a| !a.role && a.user.is_empty(), &|a| {
                format!("DROP USER {};", a.quoted())
            }),
            "no anonymous account",
            "anonymous accounts",
        ),
        "MY-AUTH-02" => Verdict::from_offenders(
            pick(
                &|a| a.active() && !a.user.is_empty() && a.uses_password() && a.auth.is_empty(),
                &|a| {
                    format!(
                        "ALTER USER {} IDENTIFIED BY '<strong password>';",
                        a.quoted()
                    )
                },
            ),
            "every password-authenticated account has a password",
            "accounts without a password",
        ),
        "MY-AUTH-04" => Verdict::from_offenders(
            pick(&|a| !a.role && a.host == "%", &|a| {
                format!(
                    "RENAME USER {} TO {}@'<network>';",
                    a.quoted(),
                    quote_str(&a.user)
                )
            }),
            "no account may connect from any host",
            "accounts for host '%'",
        ),
        "MY-AUTH-05" => Verdict::from_offenders(
            pick(&|a| !a.role && a.user == "root" && !a.is_local(), &|a| {
                format!("DROP USER {};", a.quoted())
            }),
            "root is limited to localhost",
            "root accounts for other hosts",
        ),
        "MY-AUTH-06" => Verdict::from_offenders(
            pick(
                &|a| {
                    a.active()
                        && (a.plugin == "mysql_old_password"
                            || (matches!(a.plugin.as_str(), "" | "mysql_native_password")
                                && a.auth.len() == 16))
                },
                &|a| format!("ALTER USER {} IDENTIFIED BY '<new password>';", a.quoted()),
            ),
            "no account uses the pre-4.1 password hash",
            "accounts with a pre-4.1 password hash",
        ),
        "MY-AUTH-07" => {
            let stronger = if mariadb {
                "ed25519"
            } else {
                "caching_sha2_password"
            };
            let native = pick(
                &|a| a.active() && a.plugin == "mysql_native_password" && !a.auth.is_empty(),
                &|a| {
                    if mariadb {
                        format!(
                            "ALTER USER {} IDENTIFIED VIA ed25519 USING PASSWORD('<password>');",
                            a.quoted()
                        )
                    } else {
                        format!(
                            "ALTER USER {} IDENTIFIED WITH caching_sha2_password BY '<password>';",
                            a.quoted()
                        )
                    }
                },
            );
            if !plugins.contains(stronger) {
                Verdict::Pass(format!(
                    "{} account(s) use mysql_native_password, and {stronger} is not installed{}",
                    native.len(),
                    if mariadb {
                        " (INSTALL SONAME 'auth_ed25519' makes it available)"
                    } else {
                        ""
                    }
                ))
            } else {
                Verdict::from_offenders(
                    native,
                    "no account uses mysql_native_password",
                    &format!("mysql_native_password accounts ({stronger} is available)"),
                )
            }
        }
        "MY-NET-06" => Verdict::from_offenders(
            pick(
                &|a| a.active() && !a.is_local() && a.ssl_type.is_empty(),
                &|a| format!("ALTER USER {} REQUIRE SSL;", a.quoted()),
            ),
            "every account for other hosts requires TLS",
            "remote accounts without REQUIRE SSL",
        ),
        "MY-PRIV-01" => holders(accounts, "file", "FILE"),
        "MY-PRIV-02" => holders(accounts, "process", "PROCESS"),
        "MY-PRIV-03" => holders(accounts, "super", "SUPER"),
        "MY-PRIV-04" => holders(accounts, "shutdown", "SHUTDOWN"),
        "MY-PRIV-05" => holders(accounts, "create_user", "CREATE USER"),
        "MY-PRIV-06" => holders(accounts, "grant", "GRANT OPTION"),
        "MY-PRIV-08" => holders(accounts, "repl_slave", "REPLICATION SLAVE"),
        "MY-PRIV-09" => Verdict::from_offenders(
            pick(
                &|a| !a.locked && !SYSTEM_ACCOUNTS.contains(&a.user.as_str()) && a.has_everything(),
                &|a| format!("REVOKE ALL PRIVILEGES, GRANT OPTION FROM {};", a.quoted()),
            ),
            "no account other than the shipped ones holds every privilege",
            "administrator accounts other than root",
        ),
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Evaluation

struct Session<'a> {
    conn: &'a MyConn,
    timeout: Duration,
}

type Rows = Vec<Vec<Option<String>>>;

impl Session<'_> {
    /// Column names and rows as text; the error is one line saying what was denied.
    async fn query(&self, sql: &str) -> std::result::Result<(Vec<String>, Rows), String> {
        let fut = async {
            let mut c = self.conn.conn().await;
            c.query::<Row, _>(sql).await
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => Err(format!(
                "query timed out after {} s",
                self.timeout.as_secs()
            )),
            Ok(Err(e)) => {
                let msg = crate::engine::mysql::describe(&e);
                let denied = matches!(&e, mysql_async::Error::Server(s) if matches!(s.code, 1044 | 1142 | 1143 | 1227 | 1370));
                Err(if denied {
                    format!("{msg}: the audit's account lacks the privilege; grant it SELECT on mysql.* (or run the audit as an administrator) to evaluate this check")
                } else {
                    msg
                })
            }
            Ok(Ok(rows)) => {
                let columns = rows
                    .first()
                    .map(|r| {
                        r.columns_ref()
                            .iter()
                            .map(|c| c.name_str().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                let rows = rows
                    .iter()
                    .map(|r| (0..r.len()).map(|i| text(r.as_ref(i))).collect())
                    .collect();
                Ok((columns, rows))
            }
        }
    }

    async fn rows(&self, sql: &str) -> std::result::Result<Rows, String> {
        self.query(sql).await.map(|(_, r)| r)
    }
}

struct Facts {
    variables: HashMap<String, String>,
    plugins: BTreeSet<String>,
    version: String,
    mariadb: bool,
}

/// Evaluates `checks` (all of this engine's catalogue or a subset) in order.
pub async fn evaluate(
    conn: &MyConn,
    checks: &[&'static CheckDef],
    timeout: Duration,
) -> Result<Vec<Verdict>> {
    let s = Session { conn, timeout };
    s.rows("SET SESSION TRANSACTION READ ONLY")
        .await
        .map_err(anyhow::Error::msg)
        .context("making the audit session read-only")?;
    let variables = s
        .rows("SHOW GLOBAL VARIABLES")
        .await
        .map_err(anyhow::Error::msg)
        .context("reading the server's variables")?
        .into_iter()
        .filter_map(|r| {
            let name = r.first().cloned().flatten()?.to_ascii_lowercase();
            Some((name, r.get(1).cloned().flatten().unwrap_or_default()))
        })
        .collect::<HashMap<_, _>>();
    let plugins = s
        .rows("SELECT PLUGIN_NAME FROM information_schema.PLUGINS WHERE PLUGIN_STATUS = 'ACTIVE'")
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| r.first().cloned().flatten().map(|p| p.to_ascii_lowercase()))
        .collect();
    let version = variables.get("version").cloned().unwrap_or_default();
    let facts = Facts {
        mariadb: conn.mariadb() || version.to_ascii_lowercase().contains("mariadb"),
        variables,
        plugins,
        version,
    };
    let mut accounts: Option<std::result::Result<Vec<Account>, String>> = None;
    let mut out = Vec::with_capacity(checks.len());
    for check in checks {
        let v = match check.probe {
            Probe::Offenders { sql, none, what } => match s.rows(sql).await {
                Ok(rows) => Verdict::from_offenders(
                    rows.into_iter()
                        .map(|r| {
                            (
                                r.first().cloned().flatten().unwrap_or_default(),
                                r.get(1).cloned().flatten(),
                            )
                        })
                        .collect(),
                    none,
                    what,
                ),
                Err(e) => Verdict::Error(e),
            },
            Probe::Setting { name, expect, ok } => Verdict::from_setting(
                name,
                facts.variables.get(name).map(String::as_str),
                expect,
                ok,
            ),
            Probe::Custom => {
                let needs_accounts = check.id.starts_with("MY-AUTH-0")
                    || check.id.starts_with("MY-PRIV-")
                    || check.id == "MY-NET-06";
                if needs_accounts && accounts.is_none() {
                    accounts = Some(load_accounts(&s, facts.mariadb).await);
                }
                match (needs_accounts, accounts.as_ref()) {
                    (true, Some(Err(e))) => Verdict::Error(e.clone()),
                    (true, Some(Ok(acc))) => {
                        match account_verdict(check.id, acc, &facts.plugins, facts.mariadb) {
                            Some(v) => v,
                            None => custom(&s, check.id, &facts, acc).await,
                        }
                    }
                    _ => custom(&s, check.id, &facts, &[]).await,
                }
            }
        };
        out.push(v);
    }
    Ok(out)
}

async fn load_accounts(
    s: &Session<'_>,
    mariadb: bool,
) -> std::result::Result<Vec<Account>, String> {
    let (columns, rows) = s.query("SELECT * FROM mysql.user").await?;
    let mut locked = BTreeSet::new();
    if mariadb {
        // MariaDB keeps account locking in mysql.global_priv's JSON, not in the user view.
        let rows = s
            .rows("SELECT User, Host FROM mysql.global_priv WHERE JSON_VALUE(Priv, '$.account_locked') IN ('true', '1')")
            .await?;
        for r in rows {
            locked.insert((
                r.first().cloned().flatten().unwrap_or_default(),
                r.get(1).cloned().flatten().unwrap_or_default(),
            ));
        }
    }
    Ok(accounts_from(&columns, &rows, &locked))
}

async fn custom(s: &Session<'_>, id: &str, facts: &Facts, accounts: &[Account]) -> Verdict {
    let var = |n: &str| facts.variables.get(n).map(String::as_str);
    match id {
        "MY-AUTH-03" => same_as_name(s, facts, accounts).await,
        "MY-AUTH-10" => {
            let mut found: Vec<&str> = facts
                .variables
                .keys()
                .filter_map(|k| {
                    ["validate_password", "simple_password_check", "cracklib_password_check"]
                        .into_iter()
                        .find(|p| k.starts_with(p))
                })
                .collect();
            found.sort_unstable();
            found.dedup();
            if found.is_empty() {
                Verdict::fail("no password validation plugin or component is loaded (no simple_password_check, cracklib_password_check or validate_password variables)")
            } else {
                Verdict::Pass(format!("loaded: {}", found.join(", ")))
            }
        }
        "MY-NET-02" => match var("have_ssl") {
            Some(v) if v.eq_ignore_ascii_case("YES") => Verdict::Pass("have_ssl = YES".into()),
            Some(v) => Verdict::fail(format!("have_ssl = {v}: the server has no usable certificate and key")),
            None => match var("ssl_cert") {
                Some(c) if !c.trim().is_empty() => Verdict::Pass(format!("ssl_cert = {c}")),
                _ => Verdict::fail("no ssl_cert: the server cannot offer TLS"),
            },
        },
        "MY-NET-04" => {
            if var("skip_networking").is_some_and(is_on) {
                return Verdict::Pass("skip_networking = ON: local connections only".into());
            }
            let bind = var("bind_address").unwrap_or("");
            let wild = bind.trim().is_empty()
                || bind
                    .split(',')
                    .map(str::trim)
                    .any(|a| matches!(a, "*" | "0.0.0.0" | "::"));
            if wild {
                Verdict::fail(format!(
                    "bind_address = '{bind}': listening on every interface"
                ))
            } else {
                Verdict::Pass(format!("bind_address = {bind}"))
            }
        }
        "MY-CONF-02" => match s.rows("SELECT @@GLOBAL.secure_file_priv").await {
            Err(e) => Verdict::Error(e),
            Ok(rows) => match rows.first().and_then(|r| r.first().cloned()).flatten() {
                None => Verdict::Pass(
                    "secure_file_priv = NULL: server-side file import and export are disabled".into(),
                ),
                Some(d) if d.trim().is_empty() => Verdict::Fail {
                    detail: "secure_file_priv = '': FILE reaches every file the server's OS user can".into(),
                    fix: vec!["secure_file_priv = /var/lib/mysql-files in the [mysqld] section, then restart".into()],
                },
                Some(d) => Verdict::Pass(format!("secure_file_priv = {d}")),
            },
        },
        "MY-CONF-07" => {
            let Some(release) = parse_release(&facts.version) else {
                return Verdict::Error(format!("cannot read the release of version `{}`", facts.version));
            };
            let (product, table) = if facts.mariadb {
                ("MariaDB", MARIADB_SUPPORT)
            } else {
                ("MySQL", MYSQL_SUPPORT)
            };
            let today = chrono::Utc::now().date_naive();
            version_verdict(
                product,
                &facts.version,
                &format!("{}.{}", release.0, release.1),
                support(release, table, today),
            )
        }
        "MY-LOG-04" => {
            let (name, value) = match (var("log_error_verbosity"), var("log_warnings")) {
                (Some(v), _) => ("log_error_verbosity", v),
                (None, Some(v)) => ("log_warnings", v),
                (None, None) => {
                    return Verdict::Error(
                        "neither log_error_verbosity nor log_warnings exists on this server".into(),
                    )
                }
            };
            match value.trim().parse::<u32>() {
                Ok(n) if n >= 2 => Verdict::Pass(format!("{name} = {n}")),
                Ok(n) => Verdict::fail(format!("{name} = {n} (expected at least 2)")),
                Err(_) => Verdict::Error(format!("{name} = {value}: not a number")),
            }
        }
        "MY-LOG-05" => {
            if let Some(v) = var("server_audit_logging") {
                return if is_on(v) {
                    Verdict::Pass("server_audit_logging = ON".into())
                } else {
                    Verdict::fail("the server_audit plugin is loaded but server_audit_logging = OFF")
                };
            }
            if facts.variables.keys().any(|k| k.starts_with("audit_log")) {
                return Verdict::Pass("the audit_log plugin is loaded".into());
            }
            Verdict::fail("no audit plugin is loaded (no server_audit or audit_log variables)")
        }
        "MY-PRIV-07" => grant_tables(s, accounts).await,
        other => Verdict::Error(format!("no evaluation for {other}")),
    }
}

async fn same_as_name(s: &Session<'_>, facts: &Facts, accounts: &[Account]) -> Verdict {
    // The hash is recomputed from the user name on the server: no hash leaves it.
    let mut sql = "SELECT User, Host FROM mysql.user WHERE User <> '' AND plugin IN ('mysql_native_password', '') \
                   AND authentication_string = CONCAT('*', UPPER(SHA1(UNHEX(SHA1(User)))))"
        .to_string();
    if facts.mariadb && accounts.iter().any(|a| a.plugin == "mysql_old_password") {
        sql.push_str(" UNION SELECT User, Host FROM mysql.user WHERE User <> '' AND plugin = 'mysql_old_password' AND authentication_string = OLD_PASSWORD(User)");
    }
    let rows = match s.rows(&sql).await {
        Ok(r) => r,
        Err(e) => return Verdict::Error(e),
    };
    let found: Vec<(String, Option<String>)> = rows
        .into_iter()
        .map(|r| {
            let a = Account {
                user: r.first().cloned().flatten().unwrap_or_default(),
                host: r.get(1).cloned().flatten().unwrap_or_default(),
                ..Account::default()
            };
            (
                a.label(),
                Some(format!(
                    "ALTER USER {} IDENTIFIED BY '<strong password>';",
                    a.quoted()
                )),
            )
        })
        .collect();
    // Salted hashes cannot be recomputed in SQL.
    let opaque: Vec<String> = accounts
        .iter()
        .filter(|a| {
            a.active()
                && !a.auth.is_empty()
                && matches!(
                    a.plugin.as_str(),
                    "caching_sha2_password" | "sha256_password" | "ed25519" | "parsec"
                )
        })
        .map(|a| format!("{} ({})", a.label(), a.plugin))
        .collect();
    if !found.is_empty() {
        return match Verdict::from_offenders(found, "", "accounts whose password is the user name")
        {
            Verdict::Fail { mut detail, fix } => {
                if !opaque.is_empty() {
                    detail.push_str(&format!(
                        "; {} account(s) with salted hashes could not be compared",
                        opaque.len()
                    ));
                }
                Verdict::Fail { detail, fix }
            }
            v => v,
        };
    }
    if !opaque.is_empty() {
        return Verdict::Error(format!(
            "could not compare {} account(s) whose plugin salts the hash, which cannot be recomputed in SQL: {}",
            opaque.len(),
            name_list(&opaque)
        ));
    }
    Verdict::Pass("no mysql_native_password account has its user name as password".into())
}

async fn grant_tables(s: &Session<'_>, accounts: &[Account]) -> Verdict {
    let db_level = match s
        .rows("SELECT User, Host FROM mysql.db WHERE Db = 'mysql' AND (Select_priv = 'Y' OR Insert_priv = 'Y' OR Update_priv = 'Y' OR Delete_priv = 'Y')")
        .await
    {
        Ok(r) => r,
        Err(e) => return Verdict::Error(e),
    };
    let mut offenders = Vec::new();
    for a in accounts.iter().filter(|a| !a.locked && !a.is_admin()) {
        let global: Vec<&str> = ["select", "insert", "update", "delete"]
            .into_iter()
            .filter(|p| a.has(p))
            .collect();
        if !global.is_empty() {
            offenders.push((
                format!(
                    "{} ({} on *.*)",
                    a.label(),
                    global.join(", ").to_uppercase()
                ),
                Some(format!(
                    "REVOKE {} ON *.* FROM {};",
                    global.join(", ").to_uppercase(),
                    a.quoted()
                )),
            ));
        }
    }
    for r in db_level {
        let a = Account {
            user: r.first().cloned().flatten().unwrap_or_default(),
            host: r.get(1).cloned().flatten().unwrap_or_default(),
            ..Account::default()
        };
        let known = accounts
            .iter()
            .find(|k| k.user == a.user && k.host == a.host);
        if known.is_some_and(|k| k.is_admin() || k.locked) {
            continue;
        }
        offenders.push((
            format!("{} (on mysql.*)", a.label()),
            Some(format!("REVOKE ALL ON mysql.* FROM {};", a.quoted())),
        ));
    }
    Verdict::from_offenders(
        offenders,
        "only administrators can read or change the grant tables",
        "non-administrator accounts with access to the grant tables",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(user: &str, host: &str, plugin: &str, auth: &str, privs: &[(&str, bool)]) -> Account {
        Account {
            user: user.into(),
            host: host.into(),
            plugin: plugin.into(),
            auth: auth.into(),
            privs: privs.iter().map(|(p, y)| (p.to_string(), *y)).collect(),
            ..Account::default()
        }
    }

    fn fails_naming(v: Verdict, who: &str) {
        match v {
            Verdict::Fail { detail, .. } => assert!(detail.contains(who), "{detail}"),
            other => panic!("expected a failure naming {who}: {other:?}"),
        }
    }

    #[test]
    fn accounts_are_read_by_column_name() {
        let cols: Vec<String> = [
            "Host",
            "User",
            "File_priv",
            "Grant_priv",
            "plugin",
            "authentication_string",
            "is_role",
            "ssl_type",
        ]
        .map(String::from)
        .to_vec();
        let row = |h: &str, u: &str, f: &str, g: &str| {
            vec![
                Some(h.into()),
                Some(u.into()),
                Some(f.into()),
                Some(g.into()),
                Some("mysql_native_password".into()),
                Some(String::new()),
                Some("N".into()),
                Some(String::new()),
            ]
        };
        let locked = BTreeSet::from([("x".to_string(), "localhost".to_string())]);
        let a = accounts_from(
            &cols,
            &[row("%", "app", "Y", "N"), row("localhost", "x", "Y", "Y")],
            &locked,
        );
        assert_eq!(a[0].label(), "app@%");
        assert!(a[0].has("file") && !a[0].has("grant") && !a[0].is_admin());
        assert!(a[1].locked && a[1].has_everything() && a[1].is_admin());
    }

    #[test]
    fn account_checks_name_the_offenders() {
        let none = BTreeSet::new();
        let all = [("file", true), ("grant", true), ("super", true)];
        let accounts = vec![
            acc("", "localhost", "mysql_native_password", "", &[]),
            acc(
                "app",
                "%",
                "mysql_native_password",
                "*ABC",
                &[("file", true), ("grant", false)],
            ),
            acc("root", "%", "mysql_native_password", "", &all),
            acc("root", "localhost", "unix_socket", "", &all),
            acc("dba", "10.0.0.1", "mysql_native_password", "*DEF", &all),
        ];
        fails_naming(
            account_verdict("MY-AUTH-01", &accounts, &none, true).unwrap(),
            "''@localhost",
        );
        fails_naming(
            account_verdict("MY-AUTH-02", &accounts, &none, true).unwrap(),
            "root@%",
        );
        let v = account_verdict("MY-AUTH-02", &accounts, &none, true).unwrap();
        assert!(
            matches!(&v, Verdict::Fail { detail, .. } if !detail.contains("root@localhost")),
            "{v:?}"
        );
        fails_naming(
            account_verdict("MY-AUTH-04", &accounts, &none, true).unwrap(),
            "app@%",
        );
        fails_naming(
            account_verdict("MY-AUTH-05", &accounts, &none, true).unwrap(),
            "root@%",
        );
        // FILE held by an application account, not by the administrators.
        let v = account_verdict("MY-PRIV-01", &accounts, &none, true).unwrap();
        match &v {
            Verdict::Fail { detail, fix } => {
                assert_eq!(detail, "non-administrator accounts with FILE (1): app@%");
                assert_eq!(fix, &["REVOKE FILE ON *.* FROM 'app'@'%';"]);
            }
            other => panic!("{other:?}"),
        }
        fails_naming(
            account_verdict("MY-PRIV-09", &accounts, &none, true).unwrap(),
            "dba@10.0.0.1",
        );
        // native passwords: only a failure when a stronger plugin is there.
        assert!(matches!(
            account_verdict("MY-AUTH-07", &accounts, &none, true),
            Some(Verdict::Pass(_))
        ));
        let ed = BTreeSet::from(["ed25519".to_string()]);
        fails_naming(
            account_verdict("MY-AUTH-07", &accounts, &ed, true).unwrap(),
            "app@%",
        );
        fails_naming(
            account_verdict("MY-NET-06", &accounts, &none, true).unwrap(),
            "dba@10.0.0.1",
        );
        assert!(account_verdict("MY-CONF-01", &accounts, &none, true).is_none());
    }

    #[test]
    fn quoting_for_statements() {
        assert_eq!(quote_str("o'brien\\"), "'o''brien\\\\'");
        let r = Account {
            user: "r".into(),
            role: true,
            ..Account::default()
        };
        assert_eq!((r.label(), r.quoted()), ("role r".into(), "'r'".into()));
    }

    #[test]
    fn setting_judges() {
        assert!(strict_sql_mode(Some(
            "STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION"
        )));
        assert!(!strict_sql_mode(Some("NO_ENGINE_SUBSTITUTION")));
        assert!(symlinks_off(Some("DISABLED")) && symlinks_off(None) && !symlinks_off(Some("YES")));
        assert!(lifetime_bounded(Some("180")) && !lifetime_bounded(Some("0")));
        assert!(
            error_log_set(Some("/var/log/mysql/error.log"))
                && !error_log_set(Some(""))
                && !error_log_set(Some("stderr"))
        );
        assert!(off_or_absent(None) && off_or_absent(Some("OFF")) && !off_or_absent(Some("ON")));
        assert!(connect_errors_bounded(Some("100")) && !connect_errors_bounded(Some("4294967295")));
    }
}
