//! The PostgreSQL checks: catalogue and evaluation.
//!
//! Everything is read from the catalogs and views of the server through the target's one
//! connection: `pg_roles`/`pg_authid` (roles, passwords, expiry), `pg_hba_file_rules` (the
//! authentication rules, read as data: PostgreSQL parses `pg_hba.conf` and reports errors),
//! `pg_settings` and `pg_file_settings` (configuration), `pg_namespace`, `pg_proc`,
//! `pg_class`, `pg_default_acl` and `pg_language` (privileges, in the connected database),
//! `pg_extension`, `pg_auth_members`.
//!
//! The session is made read-only and its `search_path` is `pg_catalog, pg_temp` before any
//! check runs: an audit is often run as a superuser, and a superuser's queries must not
//! resolve names through a schema that other roles can write to.
//!
//! `pg_authid`, `pg_hba_file_rules`, `pg_file_settings` and a few settings are readable by
//! superusers only (settings also by members of `pg_read_all_settings`): run as another role,
//! the checks that need them end in `error`, naming what was denied.

use std::collections::HashMap;
use std::net::IpAddr;

use anyhow::{Context, Result};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::Severity::{Critical, High, Low, Medium};
use super::{support, version_verdict, CheckDef, Probe, Verdict};
use crate::engine::postgres::PgConn;

/// Releases and their end of support (https://www.postgresql.org/support/versioning/).
const SUPPORT: &[((u32, u32), &str)] = &[
    ((12, 0), "2024-11-21"),
    ((13, 0), "2025-11-13"),
    ((14, 0), "2026-11-12"),
    ((15, 0), "2027-11-11"),
    ((16, 0), "2028-11-09"),
    ((17, 0), "2029-11-08"),
    ((18, 0), "2030-11-14"),
];

/// Extensions that reach outside the database (files, programs, other servers) or are known
/// to be unsafe, with why.
const RISKY_EXTENSIONS: &[(&str, &str)] = &[
    ("adminpack", "reads and writes server files"),
    ("dblink", "opens connections from the server"),
    ("file_fdw", "reads server files and runs programs"),
    ("postgres_fdw", "opens connections from the server"),
    (
        "plperlu",
        "untrusted language: code runs as the server's OS user",
    ),
    (
        "plpythonu",
        "untrusted language: code runs as the server's OS user",
    ),
    (
        "plpython2u",
        "untrusted language: code runs as the server's OS user",
    ),
    (
        "plpython3u",
        "untrusted language: code runs as the server's OS user",
    ),
    (
        "pltclu",
        "untrusted language: code runs as the server's OS user",
    ),
    ("xml2", "deprecated, with known vulnerabilities"),
];

fn on(v: Option<&str>) -> bool {
    v == Some("on")
}

fn not_zero(v: Option<&str>) -> bool {
    v.is_some_and(|v| v.trim() != "0")
}

/// A file mode in octal (`0600`, as pg_settings shows it).
fn mode(v: Option<&str>) -> Option<u32> {
    u32::from_str_radix(v?.trim(), 8).ok()
}

fn socket_not_world(v: Option<&str>) -> bool {
    mode(v).is_some_and(|m| m & 0o007 == 0)
}

/// Owner read-write, at most group read: 0600 or 0640.
fn log_mode_private(v: Option<&str>) -> bool {
    mode(v).is_some_and(|m| m & 0o037 == 0)
}

fn not_all_interfaces(v: Option<&str>) -> bool {
    v.is_some_and(|v| {
        !v.split(',')
            .map(str::trim)
            .any(|a| a == "*" || a == "0.0.0.0" || a == "::")
    })
}

fn tls12_or_newer(v: Option<&str>) -> bool {
    matches!(v, Some("TLSv1.2") | Some("TLSv1.3"))
}

pub fn prefix_has_user_db_host(v: Option<&str>) -> bool {
    v.is_some_and(|p| {
        p.contains("%u") && p.contains("%d") && (p.contains("%h") || p.contains("%r"))
    })
}

fn logs_ddl(v: Option<&str>) -> bool {
    matches!(v, Some("ddl") | Some("mod") | Some("all"))
}

fn warning_or_more_verbose(v: Option<&str>) -> bool {
    matches!(
        v,
        Some("debug5" | "debug4" | "debug3" | "debug2" | "debug1" | "info" | "notice" | "warning")
    )
}

fn libraries(v: Option<&str>) -> Vec<String> {
    v.unwrap_or_default()
        .split(',')
        .map(|l| l.trim().trim_matches('"').to_ascii_lowercase())
        .filter(|l| !l.is_empty())
        .collect()
}

fn has_password_check(v: Option<&str>) -> bool {
    libraries(v)
        .iter()
        .any(|l| l == "passwordcheck" || l == "credcheck")
}

fn has_pgaudit(v: Option<&str>) -> bool {
    libraries(v).iter().any(|l| l == "pgaudit")
}

fn archiving(v: Option<&str>) -> bool {
    matches!(v, Some("on") | Some("always"))
}

pub static CHECKS: &[CheckDef] = &[
    // ---------------------------------------------------------------------------------- AUTH
    CheckDef {
        id: "PG-AUTH-01",
        title: "Superusers other than postgres",
        severity: High,
        rationale: "A superuser bypasses every permission check, can read any file the server can and run programs as its OS user. Every superuser beyond the bootstrap one is an extra key to everything.",
        cis: "CIS PostgreSQL 15 4.2",
        remediation: "ALTER ROLE <role> NOSUPERUSER; and grant the role only what it needs (pg_monitor, pg_signal_backend, CREATEDB …).",
        probe: Probe::Offenders {
            sql: "SELECT rolname, format('ALTER ROLE %I NOSUPERUSER;', rolname) FROM pg_roles WHERE rolsuper AND rolname <> 'postgres' AND oid <> 10 ORDER BY 1",
            none: "no superuser other than postgres",
            what: "superusers other than postgres",
        },
    },
    CheckDef {
        id: "PG-AUTH-02",
        title: "Login superusers whose password never expires",
        severity: Medium,
        rationale: "A superuser password that never expires stays valid however many people, scripts and backups have seen it. VALID UNTIL bounds its life and forces a rotation.",
        cis: "",
        remediation: "ALTER ROLE <role> VALID UNTIL '<date>'; (and rotate it before then), or remove the password and use peer or certificate authentication.",
        probe: Probe::Offenders {
            sql: "SELECT rolname || CASE WHEN rolvaliduntil IS NULL THEN ' (no VALID UNTIL)' ELSE ' (VALID UNTIL infinity)' END, format('ALTER ROLE %I VALID UNTIL %L;', rolname, (current_date + 90)::text) FROM pg_authid WHERE rolsuper AND rolcanlogin AND rolpassword IS NOT NULL AND (rolvaliduntil IS NULL OR rolvaliduntil = 'infinity') ORDER BY 1",
            none: "every superuser password has an expiry date",
            what: "login superusers whose password never expires",
        },
    },
    CheckDef {
        id: "PG-AUTH-03",
        title: "Roles that can log in without a password",
        severity: Medium,
        rationale: "A login role without a password is let in by any pg_hba rule that does not ask for one (trust, and peer/ident for a same-named OS user): one permissive line is enough. The bootstrap superuser, which normally uses peer authentication, is not listed.",
        cis: "",
        remediation: "Set a password with psql's \\password <role> (it never reaches the server's logs in clear), or make the role NOLOGIN; roles that authenticate by certificate, GSSAPI or LDAP may be accepted with audit.ignore.",
        probe: Probe::Offenders {
            sql: "SELECT rolname, format('\\password %I', rolname) FROM pg_authid WHERE rolcanlogin AND rolpassword IS NULL AND oid <> 10 ORDER BY 1",
            none: "every login role other than the bootstrap superuser has a password",
            what: "login roles without a password",
        },
    },
    CheckDef {
        id: "PG-AUTH-04",
        title: "New passwords are hashed with SCRAM-SHA-256",
        severity: High,
        rationale: "With password_encryption = md5 new passwords are stored as unsalted-by-server MD5 hashes, which a stolen pg_authid or backup gives up quickly, and which are themselves enough to log in.",
        cis: "",
        remediation: "ALTER SYSTEM SET password_encryption = 'scram-sha-256'; SELECT pg_reload_conf(); then reset every password (see PG-AUTH-05).",
        probe: Probe::Setting {
            name: "password_encryption",
            expect: "scram-sha-256",
            ok: |v| v == Some("scram-sha-256"),
        },
    },
    CheckDef {
        id: "PG-AUTH-05",
        title: "Passwords stored as MD5 hashes",
        severity: Medium,
        rationale: "An MD5 hash in pg_authid is a password equivalent: whoever reads it can log in with it through md5 authentication, without ever knowing the password.",
        cis: "",
        remediation: "With password_encryption = 'scram-sha-256', reset each password: psql's \\password <role>.",
        probe: Probe::Offenders {
            sql: "SELECT rolname, format('\\password %I', rolname) FROM pg_authid WHERE rolpassword LIKE 'md5%' ORDER BY 1",
            none: "no password is stored as an MD5 hash",
            what: "roles with an MD5 password hash",
        },
    },
    CheckDef {
        id: "PG-AUTH-06",
        title: "No password-strength module loaded",
        severity: Low,
        rationale: "PostgreSQL accepts any password, even empty-looking or equal to the role name, unless a module such as passwordcheck or credcheck checks new passwords.",
        cis: "",
        remediation: "Add passwordcheck (contrib) or credcheck to shared_preload_libraries (ALTER SYSTEM SET shared_preload_libraries = '…, passwordcheck') and restart; or authenticate with LDAP, GSSAPI or certificates.",
        probe: Probe::Setting {
            name: "shared_preload_libraries",
            expect: "passwordcheck or credcheck among them",
            ok: has_password_check,
        },
    },
    CheckDef {
        id: "PG-AUTH-07",
        title: "Login roles with unlimited connections",
        severity: Low,
        rationale: "A role with CONNECTION LIMIT -1 can take every connection slot (a leaking pool, a loop, an attacker with its password) and lock everyone else out.",
        cis: "",
        remediation: "ALTER ROLE <role> CONNECTION LIMIT <n>; sized for its pool.",
        probe: Probe::Offenders {
            sql: "SELECT rolname, format('ALTER ROLE %I CONNECTION LIMIT 20;', rolname) FROM pg_roles WHERE rolcanlogin AND NOT rolsuper AND rolconnlimit = -1 ORDER BY 1",
            none: "every non-superuser login role has a connection limit",
            what: "login roles without a connection limit",
        },
    },
    // ----------------------------------------------------------------------------------- NET
    CheckDef {
        id: "PG-NET-01",
        title: "pg_hba.conf trusts TCP connections",
        severity: Critical,
        rationale: "A `trust` rule on host lines lets anyone who can reach the port log in as any role it matches, postgres included, with no password.",
        cis: "CIS PostgreSQL 15 5.2",
        remediation: "Replace trust with scram-sha-256 (or cert) on these pg_hba.conf lines, then SELECT pg_reload_conf();",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "PG-NET-02",
        title: "pg_hba.conf trusts local socket connections",
        severity: High,
        rationale: "A `trust` rule on local lines lets every OS user of the machine (a compromised web application, a cron job) log in as any role, postgres included.",
        cis: "CIS PostgreSQL 15 5.1",
        remediation: "Replace trust with peer (or scram-sha-256) on these pg_hba.conf lines, then SELECT pg_reload_conf();",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "PG-NET-03",
        title: "pg_hba.conf sends passwords in clear text",
        severity: High,
        rationale: "The `password` method has the client send the password in clear: anyone on the path of a non-TLS connection reads it.",
        cis: "CIS PostgreSQL 15 5.2",
        remediation: "Replace password with scram-sha-256 on these pg_hba.conf lines, then SELECT pg_reload_conf();",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "PG-NET-04",
        title: "pg_hba.conf rules open to every address",
        severity: High,
        rationale: "A rule for `all`, 0.0.0.0/0 or ::/0 accepts connections from anywhere the port is reachable: one firewall mistake away from the Internet.",
        cis: "CIS PostgreSQL 15 5.2",
        remediation: "Narrow the address of these pg_hba.conf lines to the application servers' networks, then SELECT pg_reload_conf();",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "PG-NET-05",
        title: "Errors in pg_hba.conf",
        severity: High,
        rationale: "A line PostgreSQL cannot parse makes the next reload (or restart) refuse the whole file: the server keeps the old rules, or does not start.",
        cis: "",
        remediation: "Fix the reported lines of pg_hba.conf; SELECT * FROM pg_hba_file_rules WHERE error IS NOT NULL; must return nothing before SELECT pg_reload_conf();",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "PG-NET-06",
        title: "pg_hba.conf rules using md5",
        severity: Low,
        rationale: "The md5 method accepts MD5 password hashes, which are password equivalents; scram-sha-256 does not send anything reusable.",
        cis: "",
        remediation: "Once every password is a SCRAM hash (PG-AUTH-05), replace md5 with scram-sha-256 on these lines, then SELECT pg_reload_conf();",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "PG-NET-07",
        title: "pg_hba.conf accepts unencrypted TCP connections from other hosts",
        severity: Medium,
        rationale: "`host` and `hostnossl` lines accept connections without TLS: queries, results and (with md5 or password) credentials cross the network in clear. Loopback-only lines are not listed.",
        cis: "CIS PostgreSQL 15 6.8",
        remediation: "Use hostssl instead of host for remote networks (and a `hostnossl … reject` line before them), then SELECT pg_reload_conf();",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "PG-NET-08",
        title: "TLS is enabled",
        severity: High,
        rationale: "Without ssl = on no client can encrypt its connection, whatever pg_hba.conf asks for.",
        cis: "CIS PostgreSQL 15 6.8",
        remediation: "Set ssl_cert_file and ssl_key_file, then ALTER SYSTEM SET ssl = on; SELECT pg_reload_conf();",
        probe: Probe::Setting {
            name: "ssl",
            expect: "on",
            ok: on,
        },
    },
    CheckDef {
        id: "PG-NET-09",
        title: "The server listens on every interface",
        severity: Medium,
        rationale: "listen_addresses = '*' exposes the port on every network the machine is on, including ones added later.",
        cis: "",
        remediation: "ALTER SYSTEM SET listen_addresses = 'localhost,<the application network address>'; and restart.",
        probe: Probe::Setting {
            name: "listen_addresses",
            expect: "specific addresses, not * or 0.0.0.0",
            ok: not_all_interfaces,
        },
    },
    CheckDef {
        id: "PG-NET-10",
        title: "The Unix socket is open to every OS user",
        severity: Low,
        rationale: "With unix_socket_permissions 0777 every local account can reach the server's socket; with 0770 only the socket group can, a second gate before pg_hba.conf.",
        cis: "",
        remediation: "ALTER SYSTEM SET unix_socket_permissions = '0770'; (and unix_socket_group), then restart.",
        probe: Probe::Setting {
            name: "unix_socket_permissions",
            expect: "no access for others (0770 or 0700)",
            ok: socket_not_world,
        },
    },
    CheckDef {
        id: "PG-NET-11",
        title: "TLS versions older than 1.2 accepted",
        severity: Medium,
        rationale: "TLS 1.0 and 1.1 have known weaknesses and are deprecated (RFC 8996).",
        cis: "",
        remediation: "ALTER SYSTEM SET ssl_min_protocol_version = 'TLSv1.2'; SELECT pg_reload_conf();",
        probe: Probe::Setting {
            name: "ssl_min_protocol_version",
            expect: "TLSv1.2 or TLSv1.3",
            ok: tls12_or_newer,
        },
    },
    // ----------------------------------------------------------------------------------- LOG
    CheckDef {
        id: "PG-LOG-01",
        title: "The logging collector is on",
        severity: Medium,
        rationale: "Without the collector, server messages go to stderr and are kept only if whatever started the server captures them (Debian's pg_ctlcluster does; a bare pg_ctl or a container may not).",
        cis: "CIS PostgreSQL 15 3.1.3",
        remediation: "ALTER SYSTEM SET logging_collector = on; and restart (or check that stderr is captured and kept).",
        probe: Probe::Setting {
            name: "logging_collector",
            expect: "on",
            ok: on,
        },
    },
    CheckDef {
        id: "PG-LOG-02",
        title: "Connections are logged",
        severity: Medium,
        rationale: "Without log_connections, who connected from where is not recorded: an intrusion or a password-guessing run leaves no trace.",
        cis: "CIS PostgreSQL 15 3.1.20",
        remediation: "ALTER SYSTEM SET log_connections = on; SELECT pg_reload_conf();",
        probe: Probe::Setting {
            name: "log_connections",
            expect: "on",
            ok: on,
        },
    },
    CheckDef {
        id: "PG-LOG-03",
        title: "Disconnections are logged",
        severity: Medium,
        rationale: "log_disconnections records when each session ended and how long it lasted, which dates what a session could have done.",
        cis: "CIS PostgreSQL 15 3.1.21",
        remediation: "ALTER SYSTEM SET log_disconnections = on; SELECT pg_reload_conf();",
        probe: Probe::Setting {
            name: "log_disconnections",
            expect: "on",
            ok: on,
        },
    },
    CheckDef {
        id: "PG-LOG-04",
        title: "Log lines name the user, database and client host",
        severity: Low,
        rationale: "A log line that does not say who (%u), in which database (%d) and from where (%h or %r) cannot be tied to anyone.",
        cis: "CIS PostgreSQL 15 3.1.24",
        remediation: "ALTER SYSTEM SET log_line_prefix = '%m [%p] %q%u@%d %r '; SELECT pg_reload_conf();",
        probe: Probe::Setting {
            name: "log_line_prefix",
            expect: "%u, %d and %h (or %r)",
            ok: prefix_has_user_db_host,
        },
    },
    CheckDef {
        id: "PG-LOG-05",
        title: "DDL statements are logged",
        severity: Medium,
        rationale: "With log_statement = none, schema and role changes (CREATE, ALTER, DROP, GRANT) leave no trace.",
        cis: "CIS PostgreSQL 15 3.1.25",
        remediation: "ALTER SYSTEM SET log_statement = 'ddl'; SELECT pg_reload_conf();",
        probe: Probe::Setting {
            name: "log_statement",
            expect: "ddl, mod or all",
            ok: logs_ddl,
        },
    },
    CheckDef {
        id: "PG-LOG-06",
        title: "Slow statements are logged",
        severity: Low,
        rationale: "With log_min_duration_statement = -1 nothing records long statements: a runaway query or a bulk extraction is invisible afterwards.",
        cis: "",
        remediation: "ALTER SYSTEM SET log_min_duration_statement = '5s'; SELECT pg_reload_conf();",
        probe: Probe::Setting {
            name: "log_min_duration_statement",
            expect: "a duration (not -1)",
            ok: |v| v.is_some_and(|v| v.trim() != "-1"),
        },
    },
    CheckDef {
        id: "PG-LOG-07",
        title: "Log files are private",
        severity: Medium,
        rationale: "Server logs hold statements, parameters and error details: they must be readable by the server's OS user (and at most a log-reading group) only.",
        cis: "CIS PostgreSQL 15 3.1.6",
        remediation: "ALTER SYSTEM SET log_file_mode = '0600'; SELECT pg_reload_conf();",
        probe: Probe::Setting {
            name: "log_file_mode",
            expect: "0600 (or 0640)",
            ok: log_mode_private,
        },
    },
    CheckDef {
        id: "PG-LOG-08",
        title: "pgAudit is loaded",
        severity: Low,
        rationale: "Statement logging records text; pgAudit records which objects were read or changed, by whom, in a form auditors can use.",
        cis: "CIS PostgreSQL 15 3.2",
        remediation: "Install pgaudit, add it to shared_preload_libraries, restart, CREATE EXTENSION pgaudit; and set pgaudit.log (e.g. 'ddl, role').",
        probe: Probe::Setting {
            name: "shared_preload_libraries",
            expect: "pgaudit among them",
            ok: has_pgaudit,
        },
    },
    CheckDef {
        id: "PG-LOG-09",
        title: "Warnings reach the server log",
        severity: Low,
        rationale: "A log_min_messages above warning (error, log, fatal, panic) drops the warnings that announce trouble.",
        cis: "CIS PostgreSQL 15 3.1.14",
        remediation: "ALTER SYSTEM SET log_min_messages = 'warning'; SELECT pg_reload_conf();",
        probe: Probe::Setting {
            name: "log_min_messages",
            expect: "warning or more verbose",
            ok: warning_or_more_verbose,
        },
    },
    // ---------------------------------------------------------------------------------- PRIV
    CheckDef {
        id: "PG-PRIV-01",
        title: "Schemas where PUBLIC may create objects",
        severity: High,
        rationale: "If every role may create objects in a schema, any of them can plant a function or operator that a more privileged role's unqualified call picks up (CVE-2018-1058).",
        cis: "",
        remediation: "REVOKE CREATE ON SCHEMA <schema> FROM PUBLIC; (in each database)",
        probe: Probe::Offenders {
            sql: "SELECT format('schema %I in database %I', n.nspname, current_database()), format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC;', n.nspname) FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a WHERE a.grantee = 0 AND a.privilege_type = 'CREATE' ORDER BY 1",
            none: "no schema of the database lets PUBLIC create objects",
            what: "schemas where PUBLIC may create",
        },
    },
    CheckDef {
        id: "PG-PRIV-02",
        title: "SECURITY DEFINER functions executable by PUBLIC",
        severity: High,
        rationale: "A SECURITY DEFINER function runs with its owner's rights; executable by PUBLIC, it hands those rights to every role.",
        cis: "CIS PostgreSQL 15 4.3",
        remediation: "REVOKE EXECUTE ON ROUTINE <function> FROM PUBLIC; then GRANT EXECUTE to the roles that need it.",
        probe: Probe::Offenders {
            sql: "SELECT p.oid::regprocedure::text, format('REVOKE EXECUTE ON ROUTINE %s FROM PUBLIC;', p.oid::regprocedure) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a WHERE p.prosecdef AND a.grantee = 0 AND a.privilege_type = 'EXECUTE' AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
            none: "no SECURITY DEFINER function of the database is executable by PUBLIC",
            what: "SECURITY DEFINER functions executable by PUBLIC",
        },
    },
    CheckDef {
        id: "PG-PRIV-03",
        title: "SECURITY DEFINER functions without a fixed search_path",
        severity: High,
        rationale: "A SECURITY DEFINER function that resolves names through the caller's search_path can be made to call the caller's own functions with the owner's rights.",
        cis: "CIS PostgreSQL 15 4.3",
        remediation: "ALTER ROUTINE <function> SET search_path = pg_catalog, pg_temp; (and schema-qualify the names it uses)",
        probe: Probe::Offenders {
            sql: "SELECT p.oid::regprocedure::text, format('ALTER ROUTINE %s SET search_path = pg_catalog, pg_temp;', p.oid::regprocedure) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND NOT EXISTS (SELECT 1 FROM unnest(coalesce(p.proconfig, '{}'::text[])) c WHERE c LIKE 'search\\_path=%') ORDER BY 1",
            none: "every SECURITY DEFINER function of the database fixes its search_path",
            what: "SECURITY DEFINER functions without a fixed search_path",
        },
    },
    CheckDef {
        id: "PG-PRIV-04",
        title: "Untrusted languages usable by non-superusers",
        severity: Critical,
        rationale: "C, internal and the untrusted procedural languages (plperlu, plpython3u, pltclu …) run code as the server's OS user. Marked trusted, they let any role with USAGE write such code.",
        cis: "",
        remediation: "As a superuser: UPDATE pg_catalog.pg_language SET lanpltrusted = false WHERE lanname = '<language>'; (or DROP the language/extension if unused)",
        probe: Probe::Offenders {
            sql: "SELECT format('language %I (marked trusted)', lanname), format('UPDATE pg_catalog.pg_language SET lanpltrusted = false WHERE lanname = %L;', lanname) FROM pg_language WHERE lanpltrusted AND (lanname IN ('c', 'internal') OR lanname ~ 'u$') ORDER BY 1",
            none: "no untrusted language is marked trusted",
            what: "untrusted languages usable by non-superusers",
        },
    },
    CheckDef {
        id: "PG-PRIV-05",
        title: "Roles that may read or write server files or run programs",
        severity: High,
        rationale: "pg_read_server_files, pg_write_server_files and pg_execute_server_program give COPY access to the server's files and shell: in practice, the server's OS account.",
        cis: "",
        remediation: "REVOKE pg_execute_server_program FROM <role>; (and likewise pg_read_server_files, pg_write_server_files)",
        probe: Probe::Offenders {
            sql: "SELECT format('%s (member of %s)', r.rolname, g.rolname), format('REVOKE %I FROM %I;', g.rolname, r.rolname) FROM pg_roles g JOIN pg_auth_members m ON m.roleid = g.oid JOIN pg_roles r ON r.oid = m.member WHERE g.rolname IN ('pg_read_server_files', 'pg_write_server_files', 'pg_execute_server_program') AND NOT r.rolsuper ORDER BY 1",
            none: "no non-superuser role is a member of pg_read_server_files, pg_write_server_files or pg_execute_server_program",
            what: "server-file and program memberships",
        },
    },
    CheckDef {
        id: "PG-PRIV-06",
        title: "Non-superusers with CREATEROLE",
        severity: High,
        rationale: "Before PostgreSQL 16, CREATEROLE may alter any non-superuser role and grant itself membership in any of them, pg_execute_server_program included: close to superuser.",
        cis: "CIS PostgreSQL 15 4.2",
        remediation: "ALTER ROLE <role> NOCREATEROLE;",
        probe: Probe::Offenders {
            sql: "SELECT rolname, format('ALTER ROLE %I NOCREATEROLE;', rolname) FROM pg_roles WHERE rolcreaterole AND NOT rolsuper ORDER BY 1",
            none: "no non-superuser role has CREATEROLE",
            what: "non-superuser roles with CREATEROLE",
        },
    },
    CheckDef {
        id: "PG-PRIV-07",
        title: "Non-superusers with BYPASSRLS",
        severity: Medium,
        rationale: "BYPASSRLS ignores every row-level security policy: the role reads what the policies hide from everyone else.",
        cis: "CIS PostgreSQL 15 4.2",
        remediation: "ALTER ROLE <role> NOBYPASSRLS;",
        probe: Probe::Offenders {
            sql: "SELECT rolname, format('ALTER ROLE %I NOBYPASSRLS;', rolname) FROM pg_roles WHERE rolbypassrls AND NOT rolsuper ORDER BY 1",
            none: "no non-superuser role has BYPASSRLS",
            what: "non-superuser roles with BYPASSRLS",
        },
    },
    CheckDef {
        id: "PG-PRIV-08",
        title: "Non-superusers with REPLICATION",
        severity: Medium,
        rationale: "A REPLICATION role can stream the whole cluster (pg_basebackup): every table of every database, whatever its grants.",
        cis: "CIS PostgreSQL 15 4.2",
        remediation: "ALTER ROLE <role> NOREPLICATION; except for the replicas' and backup tools' dedicated roles (accept those with audit.ignore).",
        probe: Probe::Offenders {
            sql: "SELECT rolname, format('ALTER ROLE %I NOREPLICATION;', rolname) FROM pg_roles WHERE rolreplication AND NOT rolsuper ORDER BY 1",
            none: "no non-superuser role has REPLICATION",
            what: "non-superuser roles with REPLICATION",
        },
    },
    CheckDef {
        id: "PG-PRIV-09",
        title: "Non-superusers with CREATEDB",
        severity: Low,
        rationale: "CREATEDB lets a role create databases it owns, outside the DBA's schema management, and fill the disk.",
        cis: "CIS PostgreSQL 15 4.2",
        remediation: "ALTER ROLE <role> NOCREATEDB;",
        probe: Probe::Offenders {
            sql: "SELECT rolname, format('ALTER ROLE %I NOCREATEDB;', rolname) FROM pg_roles WHERE rolcreatedb AND NOT rolsuper ORDER BY 1",
            none: "no non-superuser role has CREATEDB",
            what: "non-superuser roles with CREATEDB",
        },
    },
    CheckDef {
        id: "PG-PRIV-10",
        title: "Default privileges that grant to PUBLIC",
        severity: Medium,
        rationale: "ALTER DEFAULT PRIVILEGES … TO PUBLIC opens every future table, sequence or schema of the role to every role, silently.",
        cis: "",
        remediation: "ALTER DEFAULT PRIVILEGES FOR ROLE <role> [IN SCHEMA <schema>] REVOKE <privilege> ON <objects> FROM PUBLIC;",
        probe: Probe::Offenders {
            sql: "SELECT format('for role %I%s on %s: %s', pg_get_userbyid(d.defaclrole), CASE WHEN d.defaclnamespace <> 0 THEN format(' in schema %I', n.nspname) ELSE '' END, o.objs, a.privilege_type), format('ALTER DEFAULT PRIVILEGES FOR ROLE %I%s REVOKE %s ON %s FROM PUBLIC;', pg_get_userbyid(d.defaclrole), CASE WHEN d.defaclnamespace <> 0 THEN format(' IN SCHEMA %I', n.nspname) ELSE '' END, a.privilege_type, upper(o.objs)) FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace CROSS JOIN LATERAL aclexplode(d.defaclacl) a CROSS JOIN LATERAL (SELECT CASE d.defaclobjtype WHEN 'r' THEN 'tables' WHEN 'S' THEN 'sequences' WHEN 'f' THEN 'functions' WHEN 'T' THEN 'types' WHEN 'n' THEN 'schemas' ELSE 'objects' END AS objs) o WHERE a.grantee = 0 AND NOT (d.defaclobjtype = 'f' AND a.privilege_type = 'EXECUTE') AND NOT (d.defaclobjtype = 'T' AND a.privilege_type = 'USAGE') ORDER BY 1",
            none: "no default privilege grants anything to PUBLIC",
            what: "default privileges granted to PUBLIC",
        },
    },
    CheckDef {
        id: "PG-PRIV-11",
        title: "Risky extensions installed",
        severity: Medium,
        rationale: "adminpack, dblink, file_fdw, postgres_fdw and the untrusted languages reach outside the database (files, programs, other servers); xml2 is deprecated. Each widens what a stolen account or an injection can do.",
        cis: "",
        remediation: "DROP EXTENSION <extension>; when unused; otherwise REVOKE EXECUTE on its functions from PUBLIC and accept it with audit.ignore.",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "PG-PRIV-12",
        title: "Members of pg_read_all_data or pg_write_all_data",
        severity: Medium,
        rationale: "pg_read_all_data and pg_write_all_data (PostgreSQL 14+) read or change every table of every database, whatever the grants and row-level policies say of the tables.",
        cis: "",
        remediation: "REVOKE pg_read_all_data FROM <role>; (likewise pg_write_all_data) and grant the tables it needs instead.",
        probe: Probe::Offenders {
            sql: "SELECT format('%s (member of %s)', r.rolname, g.rolname), format('REVOKE %I FROM %I;', g.rolname, r.rolname) FROM pg_roles g JOIN pg_auth_members m ON m.roleid = g.oid JOIN pg_roles r ON r.oid = m.member WHERE g.rolname IN ('pg_read_all_data', 'pg_write_all_data') AND NOT r.rolsuper ORDER BY 1",
            none: "no non-superuser role is a member of pg_read_all_data or pg_write_all_data",
            what: "all-data memberships",
        },
    },
    CheckDef {
        id: "PG-PRIV-13",
        title: "Tables, views and sequences granted to PUBLIC",
        severity: Medium,
        rationale: "A privilege granted to PUBLIC is held by every role, today's and tomorrow's: the data of these relations is open to anyone who can log in to the database.",
        cis: "",
        remediation: "REVOKE ALL ON <relation> FROM PUBLIC; then GRANT to the roles that need it.",
        probe: Probe::Offenders {
            sql: "SELECT format('%s (%s)', c.oid::regclass, string_agg(a.privilege_type, ', ' ORDER BY a.privilege_type)), format('REVOKE ALL ON %s FROM PUBLIC;', c.oid::regclass) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace CROSS JOIN LATERAL aclexplode(c.relacl) a WHERE a.grantee = 0 AND c.relkind IN ('r', 'v', 'm', 'f', 'p', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e') GROUP BY c.oid ORDER BY 1",
            none: "no relation of the database (outside extensions) grants anything to PUBLIC",
            what: "relations with privileges granted to PUBLIC",
        },
    },
    // ---------------------------------------------------------------------------------- CONF
    CheckDef {
        id: "PG-CONF-01",
        title: "Data checksums are enabled",
        severity: Medium,
        rationale: "Without page checksums, silent corruption by the storage is read back as data and copied into the backups.",
        cis: "",
        remediation: "Stop the server and run pg_checksums --enable -D <data directory> (PostgreSQL 12+), or initdb --data-checksums a new cluster and move the data.",
        probe: Probe::Setting {
            name: "data_checksums",
            expect: "on",
            ok: on,
        },
    },
    CheckDef {
        id: "PG-CONF-02",
        title: "The server's release is supported",
        severity: High,
        rationale: "A release past its end of life gets no security fixes. Within a supported release, only the latest minor release has all of them.",
        cis: "",
        remediation: "Upgrade to a supported release (pg_upgrade), and apply minor releases as they come out.",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "PG-CONF-03",
        title: "Statements run without a time limit by default",
        severity: Low,
        rationale: "With statement_timeout = 0 in the configuration and the database, one runaway query can hold locks and a connection forever.",
        cis: "",
        remediation: "ALTER DATABASE <db> SET statement_timeout = '5min'; (or per role: ALTER ROLE <app> SET statement_timeout = …)",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "PG-CONF-04",
        title: "Idle transactions are never ended",
        severity: Low,
        rationale: "A session left idle inside a transaction holds its locks and stops vacuum from cleaning up behind it; idle_in_transaction_session_timeout ends it.",
        cis: "",
        remediation: "ALTER SYSTEM SET idle_in_transaction_session_timeout = '10min'; SELECT pg_reload_conf();",
        probe: Probe::Setting {
            name: "idle_in_transaction_session_timeout",
            expect: "a timeout (not 0)",
            ok: not_zero,
        },
    },
    CheckDef {
        id: "PG-CONF-05",
        title: "Crash safety settings are off",
        severity: High,
        rationale: "fsync = off or full_page_writes = off trade durability for speed: a crash or power cut can corrupt the cluster beyond repair.",
        cis: "",
        remediation: "ALTER SYSTEM SET fsync = on; ALTER SYSTEM SET full_page_writes = on; SELECT pg_reload_conf();",
        probe: Probe::Offenders {
            sql: "SELECT format('%s = %s', name, setting), format('ALTER SYSTEM SET %s = on;', name) FROM pg_settings WHERE name IN ('fsync', 'full_page_writes') AND setting <> 'on' ORDER BY 1",
            none: "fsync and full_page_writes are on",
            what: "crash safety settings off",
        },
    },
    CheckDef {
        id: "PG-CONF-06",
        title: "WAL archiving for point-in-time recovery",
        severity: Low,
        rationale: "Without archive_mode, a restore can only go back to the last dump: everything since is lost, and a destructive statement cannot be undone to the minute before it.",
        cis: "",
        remediation: "Set archive_mode = on with an archive_command (or pgBackRest / Barman) and restart.",
        probe: Probe::Setting {
            name: "archive_mode",
            expect: "on",
            ok: archiving,
        },
    },
];

// ---------------------------------------------------------------------------------------------
// pg_hba rules

/// A rule of `pg_hba_file_rules`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HbaRule {
    pub line: i64,
    /// PostgreSQL 16+ names the file (rules may come from included files).
    pub file: Option<String>,
    pub kind: Option<String>,
    pub database: Vec<String>,
    pub user: Vec<String>,
    pub address: Option<String>,
    pub netmask: Option<String>,
    pub method: Option<String>,
    pub error: Option<String>,
}

/// What may be wrong with an hba rule; each is one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HbaIssue {
    TrustTcp,
    TrustLocal,
    Cleartext,
    OpenToAll,
    Invalid,
    Md5,
    NoTls,
}

impl HbaIssue {
    fn of_check(id: &str) -> Option<HbaIssue> {
        Some(match id {
            "PG-NET-01" => HbaIssue::TrustTcp,
            "PG-NET-02" => HbaIssue::TrustLocal,
            "PG-NET-03" => HbaIssue::Cleartext,
            "PG-NET-04" => HbaIssue::OpenToAll,
            "PG-NET-05" => HbaIssue::Invalid,
            "PG-NET-06" => HbaIssue::Md5,
            "PG-NET-07" => HbaIssue::NoTls,
            _ => return None,
        })
    }
}

/// The prefix length of a netmask (`255.255.255.0` -> 24); None for a non-contiguous or
/// unparsable mask.
pub fn mask_len(netmask: &str) -> Option<u32> {
    let bits: u128 = match netmask.parse::<IpAddr>().ok()? {
        IpAddr::V4(m) => u128::from(u32::from(m)) << 96,
        IpAddr::V6(m) => u128::from(m),
    };
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones)
}

impl HbaRule {
    fn parse(v: &serde_json::Value) -> HbaRule {
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        let list = |k: &str| -> Vec<String> {
            v.get(k)
                .and_then(|x| x.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|e| e.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        HbaRule {
            line: v.get("line_number").and_then(|x| x.as_i64()).unwrap_or(0),
            file: s("file_name"),
            kind: s("type"),
            database: list("database"),
            user: list("user_name"),
            address: s("address"),
            netmask: s("netmask"),
            method: s("auth_method"),
            error: s("error"),
        }
    }

    fn is_host(&self) -> bool {
        self.kind.as_deref().is_some_and(|k| k.starts_with("host"))
    }

    fn method_is(&self, m: &str) -> bool {
        self.method.as_deref() == Some(m)
    }

    /// The address as written: `127.0.0.1/32`, `all`, `samehost`, a host name.
    pub fn address_text(&self) -> String {
        match (&self.address, &self.netmask) {
            (Some(a), Some(m)) => match mask_len(m) {
                Some(n) => format!("{a}/{n}"),
                None => format!("{a} {m}"),
            },
            (Some(a), None) => a.clone(),
            (None, _) => String::new(),
        }
    }

    /// Whether the rule's address is the whole IPv4 or IPv6 space.
    pub fn open_to_all(&self) -> bool {
        if !self.is_host() {
            return false;
        }
        match (&self.address, &self.netmask) {
            (Some(a), _) if a == "all" => true,
            (Some(a), Some(m)) => a.parse::<IpAddr>().is_ok() && mask_len(m) == Some(0),
            _ => false,
        }
    }

    /// Whether the rule only matches the machine itself.
    pub fn loopback_only(&self) -> bool {
        match (&self.address, &self.netmask) {
            (Some(a), _) if a == "samehost" || a == "localhost" => true,
            (Some(a), Some(m)) => match (a.parse::<IpAddr>(), mask_len(m)) {
                (Ok(IpAddr::V4(ip)), Some(n)) => ip.is_loopback() && n >= 8,
                (Ok(IpAddr::V6(ip)), Some(n)) => ip.is_loopback() && n == 128,
                _ => false,
            },
            _ => false,
        }
    }

    /// Every issue of the rule.
    pub fn issues(&self) -> Vec<HbaIssue> {
        if self.error.is_some() {
            return vec![HbaIssue::Invalid];
        }
        let mut out = Vec::new();
        let local = self.kind.as_deref() == Some("local");
        if self.method_is("trust") {
            out.push(if local {
                HbaIssue::TrustLocal
            } else {
                HbaIssue::TrustTcp
            });
        }
        if self.method_is("password") {
            out.push(HbaIssue::Cleartext);
        }
        if self.method_is("md5") {
            out.push(HbaIssue::Md5);
        }
        if !self.method_is("reject") {
            if self.open_to_all() {
                out.push(HbaIssue::OpenToAll);
            }
            if matches!(self.kind.as_deref(), Some("host") | Some("hostnossl"))
                && !self.loopback_only()
            {
                out.push(HbaIssue::NoTls);
            }
        }
        out
    }

    /// `line 4: host all all 127.0.0.1/32 trust` (with the file on PostgreSQL 16+).
    pub fn label(&self) -> String {
        let at = match &self.file {
            Some(f) => format!("{f} line {}", self.line),
            None => format!("line {}", self.line),
        };
        if let Some(e) = &self.error {
            return format!("{at}: {e}");
        }
        let mut parts = vec![
            self.kind.clone().unwrap_or_default(),
            self.database.join(","),
            self.user.join(","),
        ];
        let addr = self.address_text();
        if !addr.is_empty() {
            parts.push(addr);
        }
        parts.push(self.method.clone().unwrap_or_default());
        format!("{at}: {}", parts.join(" "))
    }
}

/// The verdict of one hba check over all rules.
pub fn hba_verdict(rules: &[HbaRule], issue: HbaIssue, hba_file: &str) -> Verdict {
    let bad: Vec<&HbaRule> = rules
        .iter()
        .filter(|r| r.issues().contains(&issue))
        .collect();
    let what = match issue {
        HbaIssue::TrustTcp => "trust rules for TCP connections",
        HbaIssue::TrustLocal => "trust rules for local connections",
        HbaIssue::Cleartext => "rules with cleartext passwords",
        HbaIssue::OpenToAll => "rules open to every address",
        HbaIssue::Invalid => "lines PostgreSQL cannot parse",
        HbaIssue::Md5 => "md5 rules",
        HbaIssue::NoTls => "rules accepting non-TLS TCP connections from other hosts",
    };
    if bad.is_empty() {
        return Verdict::Pass(format!("no {what} among {} rules", rules.len()));
    }
    let change = match issue {
        HbaIssue::TrustTcp | HbaIssue::Cleartext | HbaIssue::Md5 => "use scram-sha-256",
        HbaIssue::TrustLocal => "use peer or scram-sha-256",
        HbaIssue::OpenToAll => "narrow the address",
        HbaIssue::Invalid => "fix the line",
        HbaIssue::NoTls => "use hostssl",
    };
    let mut fix: Vec<String> = bad
        .iter()
        .map(|r| {
            let file = r.file.as_deref().unwrap_or(hba_file);
            format!("{file} line {}: {change}", r.line)
        })
        .collect();
    fix.push("SELECT pg_reload_conf();".into());
    let labels: Vec<String> = bad.iter().map(|r| r.label()).collect();
    Verdict::Fail {
        detail: format!("{what} ({}): {}", bad.len(), super::name_list(&labels)),
        fix,
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/// What every check may need, read once.
struct Facts {
    settings: HashMap<String, String>,
    user: String,
    superuser: bool,
    version: String,
    version_num: i64,
}

/// A query's rows as text; the error is a one-line reason saying what was denied.
async fn query(c: &Client, sql: &str) -> std::result::Result<Vec<Vec<Option<String>>>, String> {
    match c.simple_query(sql).await {
        Ok(msgs) => Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                }
                _ => None,
            })
            .collect()),
        Err(e) => {
            let msg = crate::engine::postgres::describe(&e);
            Err(if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
                format!("{msg}: the audit's role lacks the privilege; run the audit as a superuser to evaluate this check")
            } else {
                msg
            })
        }
    }
}

fn cell(row: &[Option<String>], i: usize) -> Option<String> {
    row.get(i).cloned().flatten()
}

/// Evaluates `checks` (all of this engine's catalogue or a subset) in order.
pub async fn evaluate(conn: &PgConn, checks: &[&'static CheckDef]) -> Result<Vec<Verdict>> {
    let c = conn.client();
    // Read-only, and names resolved in pg_catalog only: the audit changes nothing and cannot
    // be led astray by objects other roles created.
    c.batch_execute(
        "SET search_path = pg_catalog, pg_temp; SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    )
    .await
    .map_err(crate::engine::postgres::db_err)
    .context("making the audit session read-only")?;
    let facts = load_facts(c).await?;
    let mut hba: Option<std::result::Result<Vec<HbaRule>, String>> = None;
    let mut out = Vec::with_capacity(checks.len());
    for check in checks {
        let v = match check.probe {
            Probe::Offenders { sql, none, what } => match query(c, sql).await {
                Ok(rows) => Verdict::from_offenders(
                    rows.iter()
                        .map(|r| (cell(r, 0).unwrap_or_default(), cell(r, 1)))
                        .collect(),
                    none,
                    what,
                ),
                Err(e) => Verdict::Error(e),
            },
            Probe::Setting { name, expect, ok } => match facts.settings.get(name) {
                Some(v) => Verdict::from_setting(name, Some(v), expect, ok),
                None => Verdict::Error(hidden_setting(name, &facts)),
            },
            Probe::Custom => {
                if let Some(issue) = HbaIssue::of_check(check.id) {
                    if hba.is_none() {
                        hba = Some(load_hba(c).await);
                    }
                    match hba.as_ref() {
                        Some(Ok(rules)) => hba_verdict(
                            rules,
                            issue,
                            facts
                                .settings
                                .get("hba_file")
                                .map_or("pg_hba.conf", String::as_str),
                        ),
                        Some(Err(e)) => Verdict::Error(e.clone()),
                        None => Verdict::Error("pg_hba_file_rules was not read".into()),
                    }
                } else {
                    custom(c, check.id, &facts).await
                }
            }
        };
        out.push(v);
    }
    Ok(out)
}

fn hidden_setting(name: &str, facts: &Facts) -> String {
    if facts.superuser {
        format!("setting {name} does not exist on this server")
    } else {
        format!(
            "setting {name} is visible only to superusers and members of pg_read_all_settings, and role {} is neither",
            facts.user
        )
    }
}

async fn load_facts(c: &Client) -> Result<Facts> {
    let who = query(
        c,
        "SELECT current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)::text, \
         current_setting('server_version'), current_setting('server_version_num')",
    )
    .await
    .map_err(anyhow::Error::msg)
    .context("reading the server's version")?;
    let row = who.first().cloned().unwrap_or_default();
    let settings = query(c, "SELECT name, setting FROM pg_settings")
        .await
        .map_err(anyhow::Error::msg)
        .context("reading pg_settings")?
        .into_iter()
        .filter_map(|r| Some((cell(&r, 0)?, cell(&r, 1).unwrap_or_default())))
        .collect();
    Ok(Facts {
        settings,
        user: cell(&row, 0).unwrap_or_default(),
        superuser: cell(&row, 1).as_deref() == Some("true"),
        version: cell(&row, 2).unwrap_or_default(),
        version_num: cell(&row, 3).and_then(|v| v.parse().ok()).unwrap_or(0),
    })
}

async fn load_hba(c: &Client) -> std::result::Result<Vec<HbaRule>, String> {
    // to_jsonb: the view gained columns over releases (file_name, rule_number in 16).
    let rows = query(
        c,
        "SELECT to_jsonb(r)::text FROM pg_hba_file_rules r ORDER BY r.line_number",
    )
    .await?;
    rows.iter()
        .map(|r| {
            let text = cell(r, 0).unwrap_or_default();
            serde_json::from_str::<serde_json::Value>(&text)
                .map(|v| HbaRule::parse(&v))
                .map_err(|e| format!("reading pg_hba_file_rules: {e}"))
        })
        .collect()
}

async fn custom(c: &Client, id: &str, facts: &Facts) -> Verdict {
    match id {
        "PG-PRIV-11" => extensions(c).await,
        "PG-CONF-02" => {
            let major = (facts.version_num / 10000) as u32;
            let today = chrono::Utc::now().date_naive();
            version_verdict(
                "PostgreSQL",
                &facts.version,
                &major.to_string(),
                support((major, 0), SUPPORT, today),
            )
        }
        "PG-CONF-03" => statement_timeout(c).await,
        other => Verdict::Error(format!("no evaluation for {other}")),
    }
}

async fn extensions(c: &Client) -> Verdict {
    let rows = match query(c, "SELECT extname, extversion FROM pg_extension ORDER BY 1").await {
        Ok(r) => r,
        Err(e) => return Verdict::Error(e),
    };
    let installed: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                cell(r, 0).unwrap_or_default(),
                cell(r, 1).unwrap_or_default(),
            )
        })
        .collect();
    let all = installed
        .iter()
        .map(|(n, v)| format!("{n} {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    let risky: Vec<(String, Option<String>)> = installed
        .iter()
        .filter_map(|(n, _)| {
            RISKY_EXTENSIONS
                .iter()
                .find(|(r, _)| r == n)
                .map(|(_, why)| {
                    (
                        format!("{n} ({why})"),
                        Some(format!(
                            "DROP EXTENSION {};",
                            crate::engine::postgres::quote_ident(n)
                        )),
                    )
                })
        })
        .collect();
    match Verdict::from_offenders(risky, "", "risky extensions installed") {
        Verdict::Pass(_) => Verdict::Pass(format!(
            "no risky extension installed in this database; installed: {all}"
        )),
        Verdict::Fail { detail, fix } => Verdict::Fail {
            detail: format!("{detail}; installed: {all}"),
            fix,
        },
        e => e,
    }
}

/// Whether a duration setting as written (`0`, `30s`, `'5min'`) is zero.
pub fn is_zero_duration(v: &str) -> bool {
    let v = v.trim().trim_matches('\'');
    let digits: String = v
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits.parse::<f64>().is_ok_and(|n| n == 0.0)
}

async fn statement_timeout(c: &Client) -> Verdict {
    // The audit's own session sets statement_timeout, so pg_settings shows that: read the
    // configuration files and the database's own setting instead.
    let sql = "SELECT coalesce((SELECT setting FROM pg_file_settings WHERE name = 'statement_timeout' AND applied ORDER BY seqno DESC LIMIT 1), (SELECT boot_val FROM pg_settings WHERE name = 'statement_timeout')), \
               (SELECT substr(c, length('statement_timeout=') + 1) FROM pg_db_role_setting s, unnest(s.setconfig) c WHERE s.setrole = 0 AND s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database()) AND c LIKE 'statement\\_timeout=%' LIMIT 1), current_database()";
    let rows = match query(c, sql).await {
        Ok(r) => r,
        Err(e) => return Verdict::Error(e),
    };
    let row = rows.first().cloned().unwrap_or_default();
    let file = cell(&row, 0).unwrap_or_else(|| "0".into());
    let db = cell(&row, 2).unwrap_or_default();
    match cell(&row, 1) {
        Some(v) if !is_zero_duration(&v) => Verdict::Pass(format!(
            "statement_timeout = {v} for database {db} (ALTER DATABASE)"
        )),
        Some(v) => Verdict::fail(format!(
            "statement_timeout = {v} for database {db} (ALTER DATABASE): no limit"
        )),
        None if !is_zero_duration(&file) => {
            Verdict::Pass(format!("statement_timeout = {file} in the configuration"))
        }
        None => Verdict::fail(format!(
            "statement_timeout = {file} in the configuration and not set for database {db}: statements have no time limit"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(kind: &str, addr: Option<(&str, &str)>, method: &str) -> HbaRule {
        HbaRule {
            line: 7,
            kind: Some(kind.into()),
            database: vec!["all".into()],
            user: vec!["all".into()],
            address: addr.map(|a| a.0.to_string()),
            netmask: addr.map(|a| a.1.to_string()).filter(|m| !m.is_empty()),
            method: Some(method.into()),
            ..HbaRule::default()
        }
    }

    #[test]
    fn hba_rules_are_classified() {
        let lo = Some(("127.0.0.1", "255.255.255.255"));
        let world = Some(("0.0.0.0", "0.0.0.0"));
        let world6 = Some(("::", "::"));
        let lan = Some(("10.1.0.0", "255.255.0.0"));
        use HbaIssue::*;
        assert_eq!(rule("host", lo, "trust").issues(), [TrustTcp]);
        assert_eq!(rule("local", None, "trust").issues(), [TrustLocal]);
        assert_eq!(rule("local", None, "peer").issues(), []);
        assert_eq!(rule("hostssl", lan, "password").issues(), [Cleartext]);
        assert_eq!(rule("host", lan, "scram-sha-256").issues(), [NoTls]);
        assert_eq!(rule("hostssl", lan, "scram-sha-256").issues(), []);
        assert_eq!(rule("hostssl", world, "md5").issues(), [Md5, OpenToAll]);
        assert_eq!(rule("hostssl", world6, "cert").issues(), [OpenToAll]);
        assert_eq!(
            rule("host", Some(("all", "")), "scram-sha-256").issues(),
            [OpenToAll, NoTls]
        );
        assert_eq!(rule("host", world, "reject").issues(), []);
        assert_eq!(
            rule(
                "host",
                Some(("::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
                "scram-sha-256"
            )
            .issues(),
            []
        );
        assert_eq!(
            rule("host", Some(("samehost", "")), "scram-sha-256").issues(),
            []
        );
        let bad = HbaRule {
            line: 9,
            error: Some("invalid authentication method \"trusted\"".into()),
            ..HbaRule::default()
        };
        assert_eq!(bad.issues(), [Invalid]);
        assert_eq!(
            bad.label(),
            "line 9: invalid authentication method \"trusted\""
        );
        assert_eq!(
            rule("host", lo, "trust").label(),
            "line 7: host all all 127.0.0.1/32 trust"
        );
    }

    #[test]
    fn hba_verdict_names_lines_and_fixes() {
        let rules = vec![
            HbaRule {
                line: 3,
                ..rule("local", None, "trust")
            },
            HbaRule {
                line: 4,
                ..rule("host", Some(("127.0.0.1", "255.255.255.255")), "trust")
            },
        ];
        match hba_verdict(&rules, HbaIssue::TrustTcp, "/etc/pg_hba.conf") {
            Verdict::Fail { detail, fix } => {
                assert_eq!(
                    detail,
                    "trust rules for TCP connections (1): line 4: host all all 127.0.0.1/32 trust"
                );
                assert_eq!(fix[0], "/etc/pg_hba.conf line 4: use scram-sha-256");
            }
            v => panic!("{v:?}"),
        }
        assert!(matches!(
            hba_verdict(&rules, HbaIssue::Cleartext, "f"),
            Verdict::Pass(_)
        ));
    }

    #[test]
    fn netmask_lengths() {
        assert_eq!(mask_len("255.255.255.255"), Some(32));
        assert_eq!(mask_len("255.255.0.0"), Some(16));
        assert_eq!(mask_len("0.0.0.0"), Some(0));
        assert_eq!(mask_len("::"), Some(0));
        assert_eq!(mask_len("ffff:ffff:ffff:ffff::"), Some(64));
        assert_eq!(mask_len("255.0.255.0"), None);
        assert_eq!(mask_len("nope"), None);
    }

    #[test]
    fn setting_judges() {
        assert!(prefix_has_user_db_host(Some("%m [%p] %u@%d %h ")));
        assert!(prefix_has_user_db_host(Some("%m %r %u %d")));
        assert!(!prefix_has_user_db_host(Some("%m [%p] %q%u@%d ")));
        assert!(socket_not_world(Some("0770")));
        assert!(!socket_not_world(Some("0777")));
        assert!(log_mode_private(Some("0600")) && log_mode_private(Some("0640")));
        assert!(!log_mode_private(Some("0644")));
        assert!(!not_all_interfaces(Some("localhost, *")));
        assert!(not_all_interfaces(Some("127.0.0.1,10.0.0.5")));
        assert!(has_password_check(Some(
            "pg_stat_statements, passwordcheck"
        )));
        assert!(!has_password_check(Some("pg_stat_statements")));
        assert!(has_pgaudit(Some("\"pgaudit\"")));
        assert!(warning_or_more_verbose(Some("notice")) && !warning_or_more_verbose(Some("error")));
        assert!(is_zero_duration("0") && is_zero_duration("'0ms'") && !is_zero_duration("30s"));
    }
}
