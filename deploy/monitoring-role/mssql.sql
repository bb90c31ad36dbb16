-- A least-privilege SQL Server login for `mairie-dba health` and `metrics`: it sees every
-- session and request (VIEW SERVER STATE), the monitored database's sizes (VIEW DATABASE
-- STATE) and the metadata of its sequences, identity columns and statistics (VIEW
-- DEFINITION), and reads no table.
--
-- Run it as a sysadmin with sqlcmd, the password in the environment (never on a command
-- line; sqlcmd reads $(MAIRIE_MONITOR_PASSWORD) from it), with the monitored database's
-- name in place of mairie:
--
--     MAIRIE_MONITOR_PASSWORD=... sqlcmd -S host -i deploy/monitoring-role/mssql.sql
--
-- then point the target's engine file at it (`user: mairie_monitor`, `password_env: ...`).
-- mairie-dba asks the server whether the login holds VIEW SERVER STATE itself
-- (HAS_PERMS_BY_NAME) to know that it sees every session: SQL Server 2022's narrower
-- VIEW SERVER PERFORMANCE STATE alone leaves those checks UNKNOWN.

USE master;
IF SUSER_ID(N'mairie_monitor') IS NULL
    CREATE LOGIN mairie_monitor WITH PASSWORD = N'$(MAIRIE_MONITOR_PASSWORD)', CHECK_POLICY = ON;
-- sys.dm_exec_sessions, sys.dm_exec_requests (connections, long_queries,
-- idle_in_transaction, locks), sys.dm_os_* (version, cache_hit), sys.dm_hadr_* (replication).
GRANT VIEW SERVER STATE TO mairie_monitor;
GO

USE mairie;
IF USER_ID(N'mairie_monitor') IS NULL
    CREATE USER mairie_monitor FOR LOGIN mairie_monitor;
-- sys.dm_db_partition_stats (table_sizes).
GRANT VIEW DATABASE STATE TO mairie_monitor;
-- sys.sequences, sys.identity_columns (sequences), STATS_DATE (analyze).
GRANT VIEW DEFINITION TO mairie_monitor;
GO
