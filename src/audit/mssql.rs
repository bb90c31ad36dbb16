//! The SQL Server checks: catalogue and evaluation.
//!
//! Read through the target's one connection: `sys.configurations` (surface-area options),
//! `sys.server_principals`, `sys.sql_logins`, `sys.server_role_members`,
//! `sys.server_permissions` (logins, password policy, roles), `sys.databases`, each
//! accessible database's `sys.database_permissions`, `sys.database_principals`,
//! `sys.assemblies`, `sys.symmetric_keys` and `sys.asymmetric_keys`, the server audit
//! catalog, `sys.dm_exec_connections`, and through `xp_loginconfig` and
//! `xp_instance_regread` the login auditing level, the error log count and HideInstance.
//! Nothing is written: the batches only SELECT, and the extended procedures only read
//! (their rows are caught in table variables of the batch).
//!
//! SQL Server shows a login only the metadata it may see: without VIEW ANY DEFINITION,
//! `sys.server_principals` lists the login itself and little else, so an empty result would
//! look like a pass. The checks that depend on it therefore verify the permission first
//! and end in `error`, naming it, when it is missing; password hashes need CONTROL SERVER,
//! the connection list VIEW SERVER STATE, the extended procedures sysadmin.

use std::collections::HashMap;

use anyhow::{Context, Result};

use super::Severity::{Critical, High, Low, Medium};
use super::{name_list, parse_release, support, version_verdict, CheckDef, Probe, Verdict};
use crate::engine::mssql::{quote_ident, MsConn};

/// Major versions and their end of extended support.
const SUPPORT: &[((u32, u32), &str)] = &[
    ((11, 0), "2022-07-12"),
    ((12, 0), "2024-07-09"),
    ((13, 0), "2026-07-14"),
    ((14, 0), "2027-10-12"),
    ((15, 0), "2030-01-08"),
    ((16, 0), "2033-01-11"),
];

fn product_name(major: u32) -> &'static str {
    match major {
        11 => "2012",
        12 => "2014",
        13 => "2016",
        14 => "2017",
        15 => "2019",
        16 => "2022",
        17 => "2025",
        _ => "",
    }
}

fn zero(v: Option<&str>) -> bool {
    v.is_some_and(|v| v.trim() == "0")
}

fn one(v: Option<&str>) -> bool {
    v.is_some_and(|v| v.trim() == "1")
}

pub static CHECKS: &[CheckDef] = &[
    // ---------------------------------------------------------------------------------- SURF
    CheckDef {
        id: "MS-SURF-01",
        title: "xp_cmdshell is enabled",
        severity: Critical,
        rationale: "xp_cmdshell runs operating system commands as the SQL Server service account: one injected statement becomes a shell on the server.",
        cis: "CIS SQL Server 2022 2.15",
        remediation: "EXEC sp_configure 'show advanced options', 1; RECONFIGURE; EXEC sp_configure 'xp_cmdshell', 0; RECONFIGURE;",
        probe: Probe::Setting { name: "xp_cmdshell", expect: "0", ok: zero },
    },
    CheckDef {
        id: "MS-SURF-02",
        title: "CLR integration is enabled",
        severity: Medium,
        rationale: "With clr enabled, .NET assemblies loaded into databases can run; unless needed, it is attack surface.",
        cis: "CIS SQL Server 2022 2.2",
        remediation: "EXEC sp_configure 'clr enabled', 0; RECONFIGURE;",
        probe: Probe::Setting { name: "clr enabled", expect: "0", ok: zero },
    },
    CheckDef {
        id: "MS-SURF-03",
        title: "CLR strict security is off",
        severity: High,
        rationale: "Without clr strict security, a SAFE or EXTERNAL_ACCESS assembly is trusted as declared, and code access security no longer isolates it: it can reach the operating system.",
        cis: "",
        remediation: "EXEC sp_configure 'show advanced options', 1; RECONFIGURE; EXEC sp_configure 'clr strict security', 1; RECONFIGURE;",
        probe: Probe::Setting { name: "clr strict security", expect: "1", ok: one },
    },
    CheckDef {
        id: "MS-SURF-04",
        title: "Cross-database ownership chaining is on",
        severity: Medium,
        rationale: "Server-wide cross db ownership chaining lets an object in one database reach objects of another owned by the same login without any permission check there.",
        cis: "CIS SQL Server 2022 2.3",
        remediation: "EXEC sp_configure 'cross db ownership chaining', 0; RECONFIGURE;",
        probe: Probe::Setting { name: "cross db ownership chaining", expect: "0", ok: zero },
    },
    CheckDef {
        id: "MS-SURF-05",
        title: "Ole Automation Procedures are enabled",
        severity: High,
        rationale: "sp_OACreate and friends instantiate COM objects in the server process: file system and shell access from T-SQL.",
        cis: "CIS SQL Server 2022 2.5",
        remediation: "EXEC sp_configure 'show advanced options', 1; RECONFIGURE; EXEC sp_configure 'Ole Automation Procedures', 0; RECONFIGURE;",
        probe: Probe::Setting { name: "Ole Automation Procedures", expect: "0", ok: zero },
    },
    CheckDef {
        id: "MS-SURF-06",
        title: "Remote admin connections are enabled",
        severity: Medium,
        rationale: "The dedicated administrator connection reachable from other hosts is an extra, unthrottled way in for sysadmins (needed on clusters only).",
        cis: "CIS SQL Server 2022 2.7",
        remediation: "EXEC sp_configure 'remote admin connections', 0; RECONFIGURE; (keep 1 on failover cluster instances)",
        probe: Probe::Setting { name: "remote admin connections", expect: "0", ok: zero },
    },
    CheckDef {
        id: "MS-SURF-07",
        title: "Ad Hoc Distributed Queries are enabled",
        severity: Medium,
        rationale: "OPENROWSET and OPENDATASOURCE with ad hoc providers let any user reach files and other servers from T-SQL.",
        cis: "CIS SQL Server 2022 2.1",
        remediation: "EXEC sp_configure 'show advanced options', 1; RECONFIGURE; EXEC sp_configure 'Ad Hoc Distributed Queries', 0; RECONFIGURE;",
        probe: Probe::Setting { name: "Ad Hoc Distributed Queries", expect: "0", ok: zero },
    },
    CheckDef {
        id: "MS-SURF-08",
        title: "Startup procedures are scanned",
        severity: Medium,
        rationale: "With scan for startup procs, procedures marked for startup in master run as sysadmin at every start: a classic persistence point.",
        cis: "CIS SQL Server 2022 2.8",
        remediation: "EXEC sp_configure 'show advanced options', 1; RECONFIGURE; EXEC sp_configure 'scan for startup procs', 0; RECONFIGURE;",
        probe: Probe::Setting { name: "scan for startup procs", expect: "0", ok: zero },
    },
    CheckDef {
        id: "MS-SURF-09",
        title: "Procedures that run at startup",
        severity: High,
        rationale: "A procedure in master marked to run at startup executes as sysadmin each time the service starts; each one must be known.",
        cis: "",
        remediation: "EXEC sp_procoption @ProcName = N'<schema.procedure>', @OptionName = 'startup', @OptionValue = 'off'; (in master)",
        probe: Probe::Offenders {
            sql: "SELECT s.name + N'.' + p.name, N'EXEC master.sys.sp_procoption @ProcName = N''' + REPLACE(s.name + N'.' + p.name, N'''', N'''''') + N''', @OptionName = ''startup'', @OptionValue = ''off'';' FROM master.sys.procedures p JOIN master.sys.schemas s ON s.schema_id = p.schema_id WHERE p.is_auto_executed = 1 ORDER BY 1",
            none: "no procedure runs at startup",
            what: "startup procedures",
        },
    },
    CheckDef {
        id: "MS-SURF-10",
        title: "Database Mail XPs are enabled",
        severity: Low,
        rationale: "Database Mail lets T-SQL send mail from the server: a channel to exfiltrate query results.",
        cis: "CIS SQL Server 2022 2.4",
        remediation: "EXEC sp_configure 'show advanced options', 1; RECONFIGURE; EXEC sp_configure 'Database Mail XPs', 0; RECONFIGURE;",
        probe: Probe::Setting { name: "Database Mail XPs", expect: "0", ok: zero },
    },
    CheckDef {
        id: "MS-SURF-11",
        title: "Remote access is enabled",
        severity: Low,
        rationale: "remote access lets other servers run stored procedures here (deprecated), and can be abused to offload work or to relay.",
        cis: "CIS SQL Server 2022 2.6",
        remediation: "EXEC sp_configure 'remote access', 0; RECONFIGURE; (takes effect at the next restart)",
        probe: Probe::Setting { name: "remote access", expect: "0", ok: zero },
    },
    CheckDef {
        id: "MS-SURF-12",
        title: "Contained database authentication is enabled",
        severity: Medium,
        rationale: "Users of contained databases authenticate inside the database, outside the server's password policy and login auditing; a db_owner can create them.",
        cis: "",
        remediation: "EXEC sp_configure 'contained database authentication', 0; RECONFIGURE; (after converting contained users to logins)",
        probe: Probe::Setting { name: "contained database authentication", expect: "0", ok: zero },
    },
    CheckDef {
        id: "MS-SURF-13",
        title: "External scripts are enabled",
        severity: Medium,
        rationale: "external scripts enabled lets sp_execute_external_script run R or Python next to the server: code execution outside T-SQL's permission model.",
        cis: "",
        remediation: "EXEC sp_configure 'external scripts enabled', 0; RECONFIGURE;",
        probe: Probe::Setting { name: "external scripts enabled", expect: "0", ok: zero },
    },
    CheckDef {
        id: "MS-SURF-14",
        title: "The instance is advertised by SQL Server Browser",
        severity: Low,
        rationale: "A named instance that is not hidden answers SQL Server Browser's enumeration, telling scanners it exists and where it listens.",
        cis: "CIS SQL Server 2022 2.12",
        remediation: "SQL Server Configuration Manager > Protocols for <instance> > Flags > Hide Instance = Yes, then restart.",
        probe: Probe::Custom,
    },
    // ---------------------------------------------------------------------------------- AUTH
    CheckDef {
        id: "MS-AUTH-01",
        title: "The sa login is enabled",
        severity: High,
        rationale: "sa is a sysadmin every attacker knows the name of; enabled, it is the first target of password guessing.",
        cis: "CIS SQL Server 2022 2.13",
        remediation: "ALTER LOGIN [sa] DISABLE; (administer through named logins in sysadmin)",
        probe: Probe::Offenders {
            sql: "SELECT name, N'ALTER LOGIN ' + QUOTENAME(name) + N' DISABLE;' FROM sys.server_principals WHERE sid = 0x01 AND is_disabled = 0",
            none: "the sa login is disabled",
            what: "enabled sa logins",
        },
    },
    CheckDef {
        id: "MS-AUTH-02",
        title: "A login is named sa",
        severity: Low,
        rationale: "Renaming sa (and not reusing the name) removes the one login name that needs no guessing.",
        cis: "CIS SQL Server 2022 2.14",
        remediation: "ALTER LOGIN [sa] WITH NAME = [<another name>];",
        probe: Probe::Offenders {
            sql: "SELECT name + CASE WHEN sid = 0x01 THEN N' (the original sa)' ELSE N' (another login named sa)' END, N'ALTER LOGIN [sa] WITH NAME = [<another name>];' FROM sys.server_principals WHERE name = N'sa'",
            none: "no login is named sa",
            what: "logins named sa",
        },
    },
    CheckDef {
        id: "MS-AUTH-03",
        title: "SQL logins exempt from the password policy",
        severity: High,
        rationale: "With CHECK_POLICY = OFF a SQL login accepts any password and is never locked out, whatever the Windows policy says.",
        cis: "CIS SQL Server 2022 4.3",
        remediation: "ALTER LOGIN [<login>] WITH CHECK_POLICY = ON;",
        probe: Probe::Offenders {
            sql: "SELECT name, N'ALTER LOGIN ' + QUOTENAME(name) + N' WITH CHECK_POLICY = ON;' FROM sys.sql_logins WHERE is_policy_checked = 0 AND name NOT LIKE N'##%' ORDER BY name",
            none: "every SQL login follows the password policy",
            what: "SQL logins with CHECK_POLICY = OFF",
        },
    },
    CheckDef {
        id: "MS-AUTH-04",
        title: "Administrator SQL logins whose password never expires",
        severity: Medium,
        rationale: "A sysadmin (or CONTROL SERVER) SQL login with CHECK_EXPIRATION = OFF keeps its password forever.",
        cis: "CIS SQL Server 2022 4.2",
        remediation: "ALTER LOGIN [<login>] WITH CHECK_EXPIRATION = ON;",
        probe: Probe::Offenders {
            sql: "SELECT l.name, N'ALTER LOGIN ' + QUOTENAME(l.name) + N' WITH CHECK_EXPIRATION = ON;' FROM sys.sql_logins l WHERE l.is_expiration_checked = 0 AND l.name NOT LIKE N'##%' AND (IS_SRVROLEMEMBER(N'sysadmin', l.name) = 1 OR EXISTS (SELECT 1 FROM sys.server_permissions p WHERE p.grantee_principal_id = l.principal_id AND p.permission_name = N'CONTROL SERVER' AND p.state IN ('G', 'W'))) ORDER BY l.name",
            none: "every administrator SQL login has CHECK_EXPIRATION = ON",
            what: "administrator SQL logins with CHECK_EXPIRATION = OFF",
        },
    },
    CheckDef {
        id: "MS-AUTH-05",
        title: "SQL Server authentication is enabled",
        severity: Medium,
        rationale: "Mixed mode accepts SQL logins, whose passwords are checked by the server alone, besides Windows authentication.",
        cis: "CIS SQL Server 2022 3.1",
        remediation: "Server properties > Security > Windows Authentication mode, then restart (not possible on Linux without Active Directory: accept with audit.ignore).",
        probe: Probe::Offenders {
            sql: "SELECT N'mixed mode: SQL Server logins are accepted', CAST(NULL AS nvarchar(1)) WHERE CAST(SERVERPROPERTY('IsIntegratedSecurityOnly') AS int) = 0",
            none: "Windows authentication only",
            what: "authentication mode",
        },
    },
    CheckDef {
        id: "MS-AUTH-06",
        title: "Windows BUILTIN groups are logins",
        severity: High,
        rationale: "A BUILTIN group login (BUILTIN\\Administrators above all) gives access to every local administrator of the machine.",
        cis: "CIS SQL Server 2022 3.9",
        remediation: "DROP LOGIN [BUILTIN\\<group>]; after creating logins for the people who need them.",
        probe: Probe::Offenders {
            sql: "SELECT name, N'DROP LOGIN ' + QUOTENAME(name) + N';' FROM sys.server_principals WHERE name LIKE N'BUILTIN\\%' AND type IN ('G', 'U') ORDER BY name",
            none: "no BUILTIN group is a login",
            what: "BUILTIN logins",
        },
    },
    CheckDef {
        id: "MS-AUTH-07",
        title: "Local Windows groups are logins",
        severity: Medium,
        rationale: "A login for a group local to the machine is granted to whoever can edit that group on the server, outside the domain's control.",
        cis: "CIS SQL Server 2022 3.10",
        remediation: "DROP LOGIN [<machine>\\<group>]; and use domain groups.",
        probe: Probe::Offenders {
            sql: "SELECT name, N'DROP LOGIN ' + QUOTENAME(name) + N';' FROM sys.server_principals WHERE type = 'G' AND name LIKE CAST(SERVERPROPERTY('MachineName') AS nvarchar(128)) + N'\\%' ORDER BY name",
            none: "no local Windows group is a login",
            what: "local group logins",
        },
    },
    CheckDef {
        id: "MS-AUTH-08",
        title: "SQL logins with a blank password or the login name as password",
        severity: Critical,
        rationale: "A blank password, or one equal to the login name, is the first guess of every brute-force tool.",
        cis: "",
        remediation: "ALTER LOGIN [<login>] WITH PASSWORD = N'<strong password>'; and CHECK_POLICY = ON.",
        probe: Probe::Custom,
    },
    // ---------------------------------------------------------------------------------- PRIV
    CheckDef {
        id: "MS-PRIV-01",
        title: "Members of sysadmin",
        severity: Medium,
        rationale: "Every sysadmin member can do anything on the instance, including read every database and run OS commands; each must be a known administrator.",
        cis: "",
        remediation: "ALTER SERVER ROLE [sysadmin] DROP MEMBER [<login>]; for each that is not a DBA, and grant what it needs instead.",
        probe: Probe::Offenders {
            sql: "SELECT p.name, N'ALTER SERVER ROLE [sysadmin] DROP MEMBER ' + QUOTENAME(p.name) + N';' FROM sys.server_role_members m JOIN sys.server_principals r ON r.principal_id = m.role_principal_id JOIN sys.server_principals p ON p.principal_id = m.member_principal_id WHERE r.name = N'sysadmin' AND p.sid <> 0x01 AND p.name NOT LIKE N'NT SERVICE\\%' AND p.name <> N'NT AUTHORITY\\SYSTEM' AND p.name NOT LIKE N'##%' ORDER BY p.name",
            none: "no sysadmin other than sa and the service accounts",
            what: "sysadmin members besides sa and the service accounts",
        },
    },
    CheckDef {
        id: "MS-PRIV-02",
        title: "The public server role has more than the default permissions",
        severity: High,
        rationale: "Every login is a member of public: a permission granted to it is granted to everyone who can log in.",
        cis: "CIS SQL Server 2022 3.8",
        remediation: "REVOKE <permission> FROM public; (public keeps only VIEW ANY DATABASE and CONNECT on the default endpoints)",
        probe: Probe::Offenders {
            sql: "SELECT p.permission_name + N' on ' + p.class_desc + CASE WHEN p.class = 105 THEN N' ' + ISNULL((SELECT e.name FROM sys.endpoints e WHERE e.endpoint_id = p.major_id), N'') ELSE N'' END, N'REVOKE ' + p.permission_name + CASE p.class WHEN 105 THEN N' ON ENDPOINT::' + ISNULL(QUOTENAME((SELECT e.name FROM sys.endpoints e WHERE e.endpoint_id = p.major_id)), N'?') WHEN 101 THEN N' ON LOGIN::' + ISNULL(QUOTENAME(SUSER_NAME(p.major_id)), N'?') ELSE N'' END + N' FROM public;' FROM sys.server_permissions p WHERE p.grantee_principal_id = (SELECT principal_id FROM sys.server_principals WHERE name = N'public' AND type = 'R') AND p.state IN ('G', 'W') AND NOT (p.state = 'G' AND p.permission_name = N'VIEW ANY DATABASE' AND p.class_desc = N'SERVER') AND NOT (p.state = 'G' AND p.permission_name = N'CONNECT' AND p.class_desc = N'ENDPOINT' AND p.major_id IN (2, 3, 4, 5)) ORDER BY 1",
            none: "public has only its default permissions",
            what: "non-default permissions of public",
        },
    },
    CheckDef {
        id: "MS-PRIV-03",
        title: "TRUSTWORTHY databases other than msdb",
        severity: High,
        rationale: "In a TRUSTWORTHY database, a db_owner can impersonate the database owner at server level: with an owner in sysadmin, a db_owner becomes sysadmin.",
        cis: "CIS SQL Server 2022 2.9",
        remediation: "ALTER DATABASE [<database>] SET TRUSTWORTHY OFF;",
        probe: Probe::Offenders {
            sql: "SELECT name, N'ALTER DATABASE ' + QUOTENAME(name) + N' SET TRUSTWORTHY OFF;' FROM sys.databases WHERE is_trustworthy_on = 1 AND name <> N'msdb' ORDER BY name",
            none: "no database other than msdb is TRUSTWORTHY",
            what: "TRUSTWORTHY databases",
        },
    },
    CheckDef {
        id: "MS-PRIV-04",
        title: "guest may connect to user databases",
        severity: Medium,
        rationale: "With CONNECT granted to guest, every login may enter the database and use whatever public has there.",
        cis: "CIS SQL Server 2022 3.2",
        remediation: "USE [<database>]; REVOKE CONNECT FROM guest;",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "MS-PRIV-05",
        title: "Orphaned database users",
        severity: Medium,
        rationale: "A user whose login is gone can be re-attached to a new login with the same name or SID by whoever creates it, inheriting the user's rights.",
        cis: "CIS SQL Server 2022 3.3",
        remediation: "USE [<database>]; DROP USER [<user>]; (or ALTER USER [<user>] WITH LOGIN = [<login>] to re-map it deliberately)",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "MS-PRIV-06",
        title: "SQL Agent proxies granted to public in msdb",
        severity: Medium,
        rationale: "A proxy granted to msdb's public role lets any user with SQL Agent access run job steps under the proxy's credential.",
        cis: "CIS SQL Server 2022 3.11",
        remediation: "EXEC msdb.dbo.sp_revoke_login_from_proxy @name = N'public', @proxy_name = N'<proxy>';",
        probe: Probe::Offenders {
            sql: "SELECT sp.name, N'EXEC msdb.dbo.sp_revoke_login_from_proxy @name = N''public'', @proxy_name = N''' + REPLACE(sp.name, N'''', N'''''') + N''';' FROM msdb.dbo.sysproxylogin spl JOIN msdb.sys.database_principals dp ON dp.sid = spl.sid JOIN msdb.dbo.sysproxies sp ON sp.proxy_id = spl.proxy_id WHERE dp.principal_id = 0 ORDER BY 1",
            none: "no SQL Agent proxy is granted to public",
            what: "proxies granted to public",
        },
    },
    CheckDef {
        id: "MS-PRIV-07",
        title: "CLR assemblies that are not SAFE",
        severity: High,
        rationale: "EXTERNAL_ACCESS and UNSAFE assemblies reach files, the network or unmanaged code from inside the server process.",
        cis: "CIS SQL Server 2022 6.2",
        remediation: "USE [<database>]; ALTER ASSEMBLY [<assembly>] WITH PERMISSION_SET = SAFE; (or drop it)",
        probe: Probe::Custom,
    },
    // ----------------------------------------------------------------------------------- LOG
    CheckDef {
        id: "MS-LOG-01",
        title: "Failed logins are not audited",
        severity: Medium,
        rationale: "Without login auditing of failures (audit level failure or all), password guessing leaves nothing in the error log.",
        cis: "CIS SQL Server 2022 5.3",
        remediation: "Server properties > Security > Login auditing: Failed logins only (or Both), then restart; or EXEC xp_instance_regwrite N'HKEY_LOCAL_MACHINE', N'Software\\Microsoft\\MSSQLServer\\MSSQLServer', N'AuditLevel', REG_DWORD, 2;",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "MS-LOG-02",
        title: "The default trace is disabled",
        severity: Medium,
        rationale: "The default trace records configuration changes, object creation and deletion, and security events; off, they leave no trace.",
        cis: "CIS SQL Server 2022 5.2",
        remediation: "EXEC sp_configure 'show advanced options', 1; RECONFIGURE; EXEC sp_configure 'default trace enabled', 1; RECONFIGURE;",
        probe: Probe::Setting { name: "default trace enabled", expect: "1", ok: one },
    },
    CheckDef {
        id: "MS-LOG-03",
        title: "Logins and audit changes are not captured by SQL Server Audit",
        severity: Medium,
        rationale: "A server audit specification with AUDIT_CHANGE_GROUP, FAILED_LOGIN_GROUP and SUCCESSFUL_LOGIN_GROUP, on an enabled audit, is the tamper-evident record of who logged in.",
        cis: "CIS SQL Server 2022 5.4",
        remediation: "CREATE SERVER AUDIT … ; CREATE SERVER AUDIT SPECIFICATION … ADD (AUDIT_CHANGE_GROUP), ADD (FAILED_LOGIN_GROUP), ADD (SUCCESSFUL_LOGIN_GROUP) WITH (STATE = ON); ALTER SERVER AUDIT … WITH (STATE = ON);",
        probe: Probe::Offenders {
            sql: "SELECT g.name + N' is not audited', CAST(NULL AS nvarchar(1)) FROM (VALUES (N'AUDIT_CHANGE_GROUP'), (N'FAILED_LOGIN_GROUP'), (N'SUCCESSFUL_LOGIN_GROUP')) AS g(name) WHERE NOT EXISTS (SELECT 1 FROM sys.server_audit_specification_details d JOIN sys.server_audit_specifications s ON s.server_specification_id = d.server_specification_id JOIN sys.server_audits a ON a.audit_guid = s.audit_guid WHERE d.audit_action_name COLLATE DATABASE_DEFAULT = g.name AND s.is_state_enabled = 1 AND a.is_state_enabled = 1) ORDER BY 1",
            none: "AUDIT_CHANGE_GROUP, FAILED_LOGIN_GROUP and SUCCESSFUL_LOGIN_GROUP are audited",
            what: "audit action groups missing",
        },
    },
    CheckDef {
        id: "MS-LOG-04",
        title: "Fewer than 12 error logs are kept",
        severity: Low,
        rationale: "The error log is recycled at each restart: with the default 6 files, a few restarts (forced by an attacker or not) erase the evidence.",
        cis: "CIS SQL Server 2022 5.1",
        remediation: "EXEC xp_instance_regwrite N'HKEY_LOCAL_MACHINE', N'Software\\Microsoft\\MSSQLServer\\MSSQLServer', N'NumErrorLogs', REG_DWORD, 12; (or Management > SQL Server Logs > Configure)",
        probe: Probe::Custom,
    },
    // ---------------------------------------------------------------------------------- CONF
    CheckDef {
        id: "MS-CONF-01",
        title: "The server's release is supported",
        severity: High,
        rationale: "A release past its end of extended support gets no security fixes. Within a supported release, only the latest cumulative update has all of them.",
        cis: "",
        remediation: "Upgrade to a supported release, and apply cumulative updates as they come out.",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "MS-CONF-02",
        title: "Unencrypted client connections",
        severity: Medium,
        rationale: "A TCP connection without encryption carries statements and results in clear, and SQL logins' passwords only lightly obfuscated.",
        cis: "",
        remediation: "Install a certificate and set Force Encryption (or Force Strict Encryption on 2022) in SQL Server Configuration Manager; make the clients use Encrypt=True.",
        probe: Probe::Offenders {
            sql: "SELECT DISTINCT ISNULL(s.login_name, N'?') + N' from ' + ISNULL(c.client_net_address, N'?'), CAST(NULL AS nvarchar(1)) FROM sys.dm_exec_connections c JOIN sys.dm_exec_sessions s ON s.session_id = c.session_id WHERE c.encrypt_option = N'FALSE' AND c.net_transport <> N'Shared memory' ORDER BY 1",
            none: "every current TCP connection is encrypted",
            what: "unencrypted connections",
        },
    },
    CheckDef {
        id: "MS-CONF-03",
        title: "Symmetric keys with weak algorithms",
        severity: Medium,
        rationale: "DES, RC2, RC4 and Triple DES keys protect nothing against today's attacks.",
        cis: "CIS SQL Server 2022 7.1",
        remediation: "Re-encrypt the data with a new AES_256 key (CREATE SYMMETRIC KEY … WITH ALGORITHM = AES_256), then DROP SYMMETRIC KEY the old one.",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "MS-CONF-04",
        title: "Asymmetric keys shorter than 2048 bits",
        severity: Medium,
        rationale: "RSA keys below 2048 bits are within reach of factoring.",
        cis: "CIS SQL Server 2022 7.2",
        remediation: "Create a new key with ALGORITHM = RSA_2048 (or longer), move what it protects, and drop the old one.",
        probe: Probe::Custom,
    },
    CheckDef {
        id: "MS-CONF-05",
        title: "AUTO_CLOSE is on for contained databases",
        severity: Low,
        rationale: "A contained database that auto-closes must authenticate each login by opening the database: a cheap denial-of-service lever.",
        cis: "CIS SQL Server 2022 2.16",
        remediation: "ALTER DATABASE [<database>] SET AUTO_CLOSE OFF;",
        probe: Probe::Offenders {
            sql: "SELECT name, N'ALTER DATABASE ' + QUOTENAME(name) + N' SET AUTO_CLOSE OFF;' FROM sys.databases WHERE containment <> 0 AND is_auto_close_on = 1 ORDER BY name",
            none: "no contained database auto-closes",
            what: "contained databases with AUTO_CLOSE on",
        },
    },
    CheckDef {
        id: "MS-CONF-06",
        title: "User databases without Transparent Data Encryption",
        severity: Low,
        rationale: "Without TDE, data files and backups are readable by whoever copies them off the server.",
        cis: "",
        remediation: "CREATE DATABASE ENCRYPTION KEY WITH ALGORITHM = AES_256 ENCRYPTION BY SERVER CERTIFICATE <cert>; ALTER DATABASE [<database>] SET ENCRYPTION ON; (back up the certificate first)",
        probe: Probe::Offenders {
            sql: "SELECT name, N'ALTER DATABASE ' + QUOTENAME(name) + N' SET ENCRYPTION ON;' FROM sys.databases WHERE database_id > 4 AND is_encrypted = 0 ORDER BY name",
            none: "every user database is encrypted",
            what: "user databases without TDE",
        },
    },
];

/// The server permission a check needs to see what it looks at, if any.
fn needs(id: &str) -> Option<&'static str> {
    Some(match id {
        "MS-AUTH-08" => "CONTROL SERVER",
        "MS-CONF-02" => "VIEW SERVER STATE",
        "MS-AUTH-01" | "MS-AUTH-02" | "MS-AUTH-03" | "MS-AUTH-04" | "MS-AUTH-06" | "MS-AUTH-07"
        | "MS-PRIV-01" | "MS-PRIV-02" | "MS-PRIV-04" | "MS-PRIV-05" | "MS-PRIV-07"
        | "MS-LOG-03" | "MS-CONF-03" | "MS-CONF-04" => "VIEW ANY DEFINITION",
        _ => return None,
    })
}

/// An `N'…'` literal.
pub fn n_literal(s: &str) -> String {
    format!("N'{}'", s.replace('\'', "''"))
}

/// The per-database form of a query: `{q}` is the quoted database name, `{lit}` its literal.
pub fn for_database(template: &str, db: &str) -> String {
    template
        .replace("{q}", &quote_ident(db))
        .replace("{lit}", &n_literal(db))
}

// ---------------------------------------------------------------------------------------------
// Evaluation

type Rows = Vec<Vec<Option<String>>>;

struct Facts {
    /// `sys.configurations` by lower-case name: (configured, in use).
    config: HashMap<String, (String, String)>,
    perms: HashMap<&'static str, bool>,
    version: String,
    linux: bool,
}

/// A batch's first result set as text; the error is one line, with a hint when a
/// permission was denied.
async fn rows(conn: &MsConn, sql: &str) -> std::result::Result<Rows, String> {
    match conn.named_rows(sql).await {
        Ok(r) => Ok(r
            .into_iter()
            .map(|row| row.into_iter().map(|(_, v)| v).collect())
            .collect()),
        Err(e) => {
            let msg = format!("{e:#}");
            let denied = [
                "(error 229,",
                "(error 230,",
                "(error 297,",
                "(error 300,",
                "(error 916,",
                "(error 15247,",
            ]
            .iter()
            .any(|c| msg.contains(c));
            Err(if denied {
                format!("{msg}: the audit's login lacks the permission; run the audit as a sysadmin to evaluate this check")
            } else {
                msg
            })
        }
    }
}

fn cell(r: &[Option<String>], i: usize) -> Option<String> {
    r.get(i).cloned().flatten()
}

fn offenders(rows: Rows) -> Vec<(String, Option<String>)> {
    rows.into_iter()
        .map(|r| (cell(&r, 0).unwrap_or_default(), cell(&r, 1)))
        .collect()
}

/// Evaluates `checks` (all of this engine's catalogue or a subset) in order.
pub async fn evaluate(conn: &MsConn, checks: &[&'static CheckDef]) -> Result<Vec<Verdict>> {
    let facts = load_facts(conn).await?;
    let mut out = Vec::with_capacity(checks.len());
    for check in checks {
        if let Some(perm) = needs(check.id) {
            if !facts.perms.get(perm).copied().unwrap_or(false) {
                out.push(Verdict::Error(format!(
                    "needs {perm}, which the audit's login does not have: without it SQL Server hides what this check looks at (GRANT {perm} TO [<login>], or run the audit as a sysadmin)"
                )));
                continue;
            }
        }
        let v = match check.probe {
            Probe::Offenders { sql, none, what } => match rows(conn, sql).await {
                Ok(r) => Verdict::from_offenders(offenders(r), none, what),
                Err(e) => Verdict::Error(e),
            },
            Probe::Setting { name, expect, ok } => {
                match facts.config.get(&name.to_ascii_lowercase()) {
                    None => Verdict::from_setting(name, None, expect, ok),
                    Some((configured, in_use)) => {
                        let v = Verdict::from_setting(name, Some(in_use), expect, ok);
                        if configured != in_use && !ok(Some(configured)) {
                            Verdict::fail(format!(
                                "{name} = {in_use} in use, {configured} configured (expected {expect})"
                            ))
                        } else if configured != in_use {
                            match v {
                                Verdict::Pass(d) => Verdict::Pass(d),
                                Verdict::Fail { detail, fix } => Verdict::Fail {
                                    detail: format!("{detail}; {configured} is configured but waits for RECONFIGURE or a restart"),
                                    fix,
                                },
                                e => e,
                            }
                        } else {
                            v
                        }
                    }
                }
            }
            Probe::Custom => custom(conn, check.id, &facts).await,
        };
        out.push(v);
    }
    Ok(out)
}

async fn load_facts(conn: &MsConn) -> Result<Facts> {
    let config = rows(
        conn,
        "SELECT name, CAST(CAST(value AS int) AS nvarchar(20)), CAST(CAST(value_in_use AS int) AS nvarchar(20)) FROM sys.configurations",
    )
    .await
    .map_err(anyhow::Error::msg)
    .context("reading sys.configurations")?
    .into_iter()
    .filter_map(|r| {
        Some((
            cell(&r, 0)?.to_ascii_lowercase(),
            (cell(&r, 1).unwrap_or_default(), cell(&r, 2).unwrap_or_default()),
        ))
    })
    .collect();
    let who = rows(
        conn,
        "SELECT CAST(HAS_PERMS_BY_NAME(NULL, NULL, N'CONTROL SERVER') AS nvarchar(2)), CAST(HAS_PERMS_BY_NAME(NULL, NULL, N'VIEW ANY DEFINITION') AS nvarchar(2)), CAST(HAS_PERMS_BY_NAME(NULL, NULL, N'VIEW SERVER STATE') AS nvarchar(2)), CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)), CASE WHEN @@VERSION LIKE N'%Linux%' THEN N'1' ELSE N'0' END",
    )
    .await
    .map_err(anyhow::Error::msg)
    .context("reading the login's permissions")?;
    let r = who.first().cloned().unwrap_or_default();
    let yes = |i: usize| cell(&r, i).as_deref() == Some("1");
    let perms = HashMap::from([
        ("CONTROL SERVER", yes(0)),
        ("VIEW ANY DEFINITION", yes(1)),
        ("VIEW SERVER STATE", yes(2)),
    ]);
    Ok(Facts {
        config,
        perms,
        version: cell(&r, 3).unwrap_or_default(),
        linux: yes(4),
    })
}

/// Runs a per-database query over every online database the login may enter, except
/// `skip`; returns the offenders, the errors, and how many databases were out of reach.
async fn each_database(
    conn: &MsConn,
    template: &str,
    skip: &[&str],
) -> std::result::Result<(Vec<(String, Option<String>)>, Vec<String>, i64), String> {
    let dbs = rows(
        conn,
        "SELECT name FROM sys.databases WHERE state = 0 AND HAS_DBACCESS(name) = 1 ORDER BY name",
    )
    .await?;
    let unreachable = rows(
        conn,
        "SELECT CAST(COUNT(*) AS nvarchar(20)) FROM sys.databases WHERE state <> 0 OR HAS_DBACCESS(name) = 0",
    )
    .await?
    .first()
    .and_then(|r| cell(r, 0))
    .and_then(|n| n.parse().ok())
    .unwrap_or(0);
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for db in dbs.iter().filter_map(|r| cell(r, 0)) {
        if skip.iter().any(|s| s.eq_ignore_ascii_case(&db)) {
            continue;
        }
        match rows(conn, &for_database(template, &db)).await {
            Ok(r) => found.extend(offenders(r)),
            Err(e) => errors.push(format!("{db}: {e}")),
        }
    }
    Ok((found, errors, unreachable))
}

async fn per_database(
    conn: &MsConn,
    template: &str,
    skip: &[&str],
    none: &str,
    what: &str,
) -> Verdict {
    let (found, errors, unreachable) = match each_database(conn, template, skip).await {
        Ok(x) => x,
        Err(e) => return Verdict::Error(e),
    };
    let note = if unreachable > 0 {
        format!(" ({unreachable} database(s) offline or not accessible to the audit's login were not examined)")
    } else {
        String::new()
    };
    match Verdict::from_offenders(found, none, what) {
        Verdict::Pass(d) if errors.is_empty() => Verdict::Pass(format!("{d}{note}")),
        Verdict::Pass(_) => Verdict::Error(format!("could not examine: {}", name_list(&errors))),
        Verdict::Fail { mut detail, fix } => {
            detail.push_str(&note);
            if !errors.is_empty() {
                detail.push_str(&format!("; could not examine: {}", name_list(&errors)));
            }
            Verdict::Fail { detail, fix }
        }
        e => e,
    }
}

async fn custom(conn: &MsConn, id: &str, facts: &Facts) -> Verdict {
    match id {
        "MS-SURF-14" => {
            if facts.linux {
                return Verdict::Pass("SQL Server on Linux has no SQL Server Browser to advertise the instance".into());
            }
            let sql = "SET NOCOUNT ON; DECLARE @t TABLE (Value nvarchar(256), Data nvarchar(4000)); \
                       INSERT INTO @t EXEC master.sys.xp_instance_regread N'HKEY_LOCAL_MACHINE', N'SOFTWARE\\Microsoft\\Microsoft SQL Server\\MSSQLServer\\SuperSocketNetLib', N'HideInstance'; \
                       SELECT Data FROM @t";
            match rows(conn, sql).await {
                Err(e) => Verdict::Error(e),
                Ok(r) => match r.first().and_then(|r| cell(r, 0)) {
                    Some(v) if v.trim() == "1" => Verdict::Pass("HideInstance = 1".into()),
                    Some(v) => Verdict::fail(format!("HideInstance = {v}: the instance answers SQL Server Browser")),
                    None => Verdict::fail("HideInstance is not set: the instance answers SQL Server Browser"),
                },
            }
        }
        "MS-AUTH-08" => match rows(
            conn,
            "SELECT name + CASE WHEN PWDCOMPARE(N'', password_hash) = 1 THEN N' (blank password)' ELSE N' (password = login name)' END, N'ALTER LOGIN ' + QUOTENAME(name) + N' WITH PASSWORD = N''<strong password>'';' FROM sys.sql_logins WHERE password_hash IS NOT NULL AND (PWDCOMPARE(N'', password_hash) = 1 OR PWDCOMPARE(name, password_hash) = 1) ORDER BY 1",
        )
        .await
        {
            Ok(r) => Verdict::from_offenders(
                offenders(r),
                "no SQL login has a blank password or its name as password",
                "SQL logins with a trivial password",
            ),
            Err(e) => Verdict::Error(e),
        },
        "MS-PRIV-04" => {
            per_database(
                conn,
                "SELECT N'guest in ' + {lit}, N'USE ' + QUOTENAME({lit}) + N'; REVOKE CONNECT FROM guest;' FROM {q}.sys.database_permissions WHERE grantee_principal_id = 2 AND permission_name = N'CONNECT' AND state IN ('G', 'W')",
                &["master", "tempdb", "msdb"],
                "guest may not connect to any user database",
                "user databases where guest may connect",
            )
            .await
        }
        "MS-PRIV-05" => {
            per_database(
                conn,
                "SELECT dp.name + N' in ' + {lit}, N'USE ' + QUOTENAME({lit}) + N'; DROP USER ' + QUOTENAME(dp.name) + N';' FROM {q}.sys.database_principals dp LEFT JOIN sys.server_principals sp ON sp.sid = dp.sid WHERE sp.sid IS NULL AND dp.type = 'S' AND dp.authentication_type = 1 AND dp.principal_id > 4 AND dp.name NOT IN (N'guest', N'dbo', N'INFORMATION_SCHEMA', N'sys', N'MS_DataCollectorInternalUser')",
                &["tempdb"],
                "no orphaned user",
                "orphaned users",
            )
            .await
        }
        "MS-PRIV-07" => {
            per_database(
                conn,
                "SELECT a.name + N' in ' + {lit} + N' (' + a.permission_set_desc + N')', N'USE ' + QUOTENAME({lit}) + N'; ALTER ASSEMBLY ' + QUOTENAME(a.name) + N' WITH PERMISSION_SET = SAFE;' FROM {q}.sys.assemblies a WHERE a.is_user_defined = 1 AND a.permission_set_desc <> N'SAFE_ACCESS'",
                &["tempdb"],
                "every user CLR assembly is SAFE",
                "CLR assemblies that are not SAFE",
            )
            .await
        }
        "MS-CONF-03" => {
            per_database(
                conn,
                "SELECT k.name + N' in ' + {lit} + N' (' + k.algorithm_desc + N')', CAST(NULL AS nvarchar(1)) FROM {q}.sys.symmetric_keys k WHERE k.algorithm_desc NOT IN (N'AES_128', N'AES_192', N'AES_256') AND k.name NOT LIKE N'##%'",
                &["tempdb"],
                "every symmetric key uses AES",
                "symmetric keys with weak algorithms",
            )
            .await
        }
        "MS-CONF-04" => {
            per_database(
                conn,
                "SELECT k.name + N' in ' + {lit} + N' (' + CAST(k.key_length AS nvarchar(10)) + N' bits)', CAST(NULL AS nvarchar(1)) FROM {q}.sys.asymmetric_keys k WHERE k.key_length < 2048 AND k.name NOT LIKE N'##%'",
                &["tempdb"],
                "every asymmetric key has at least 2048 bits",
                "asymmetric keys shorter than 2048 bits",
            )
            .await
        }
        "MS-LOG-01" => {
            let sql = "SET NOCOUNT ON; DECLARE @t TABLE (name nvarchar(256), config_value nvarchar(256) NULL); \
                       INSERT INTO @t EXEC master.sys.xp_loginconfig N'audit level'; \
                       SELECT config_value FROM @t";
            match rows(conn, sql).await {
                Err(e) => Verdict::Error(e),
                Ok(r) => match r.first().and_then(|r| cell(r, 0)) {
                    Some(v) if matches!(v.to_ascii_lowercase().as_str(), "failure" | "all") => {
                        Verdict::Pass(format!("login auditing = {v}"))
                    }
                    Some(v) => Verdict::fail(format!("login auditing = {v} (expected failure or all)")),
                    None => Verdict::Error("xp_loginconfig 'audit level' returned nothing".into()),
                },
            }
        }
        "MS-LOG-04" => {
            let sql = "SET NOCOUNT ON; DECLARE @t TABLE (Value nvarchar(256), Data nvarchar(4000)); \
                       INSERT INTO @t EXEC master.sys.xp_instance_regread N'HKEY_LOCAL_MACHINE', N'Software\\Microsoft\\MSSQLServer\\MSSQLServer', N'NumErrorLogs'; \
                       SELECT Data FROM @t";
            match rows(conn, sql).await {
                Err(e) => Verdict::Error(e),
                Ok(r) => match r.first().and_then(|r| cell(r, 0)).and_then(|v| v.trim().parse::<i64>().ok()) {
                    Some(n) if n >= 12 => Verdict::Pass(format!("NumErrorLogs = {n}")),
                    Some(n) => Verdict::fail(format!("NumErrorLogs = {n} (expected at least 12)")),
                    None => Verdict::fail("NumErrorLogs is not set: the default keeps 6 error logs"),
                },
            }
        }
        "MS-CONF-01" => {
            let Some(release) = parse_release(&facts.version) else {
                return Verdict::Error(format!("cannot read the release of version `{}`", facts.version));
            };
            let name = product_name(release.0);
            let label = if name.is_empty() {
                format!("{}", release.0)
            } else {
                format!("{name} ({}.x)", release.0)
            };
            let today = chrono::Utc::now().date_naive();
            version_verdict(
                "SQL Server",
                &facts.version,
                &label,
                support((release.0, 0), SUPPORT, today),
            )
        }
        other => Verdict::Error(format!("no evaluation for {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_database_queries_quote_the_name() {
        let q = for_database("SELECT {lit} FROM {q}.sys.x", "o'b]x");
        assert_eq!(q, "SELECT N'o''b]x' FROM [o'b]]x].sys.x");
    }

    #[test]
    fn every_custom_check_has_an_evaluation_and_gated_ids_exist() {
        for c in CHECKS {
            if let Some(p) = needs(c.id) {
                assert!(!p.is_empty());
            }
        }
        for id in [
            "MS-AUTH-08",
            "MS-CONF-02",
            "MS-AUTH-01",
            "MS-PRIV-01",
            "MS-LOG-03",
            "MS-CONF-04",
        ] {
            assert!(CHECKS.iter().any(|c| c.id == id), "{id}");
            assert!(needs(id).is_some(), "{id}");
        }
    }

    #[test]
    fn settings_are_judged_as_cis_says() {
        assert!(zero(Some("0")) && !zero(Some("1")) && !zero(None));
        assert!(one(Some("1")) && !one(Some("0")));
    }
}
