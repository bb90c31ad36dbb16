-- A least-privilege MySQL / MariaDB account for `mairie-dba health` and `metrics`: it sees
-- every thread and transaction (PROCESS), the replica's status, and the monitored database's
-- tables and columns in information_schema (REFERENCES: their sizes and AUTO_INCREMENT
-- positions, without reading a row of them), and nothing else.
--
-- Run it as an administrator, with the monitored database's name in place of `mairie`:
--
--     mariadb < deploy/monitoring-role/mysql.sql        (or: mysql < ...)
--
-- The account is created locked. Give it a password and unlock it in an interactive client
-- (the mysql and mariadb clients keep lines with IDENTIFIED out of their history):
--
--     ALTER USER 'mairie_monitor'@'%' IDENTIFIED BY '...' ACCOUNT UNLOCK;
--
-- then point the target's engine file at it (`user: mairie_monitor`, `password_env: ...`).
-- For another name, replace mairie_monitor throughout; narrow '%' to the monitoring host.

CREATE USER IF NOT EXISTS 'mairie_monitor'@'%' ACCOUNT LOCK;

-- PROCESS: every thread in the process list and information_schema.PROCESSLIST, and
-- INNODB_TRX (long_queries, idle_in_transaction, locks). REPLICATION CLIENT: SHOW REPLICA
-- STATUS on MySQL; MariaDB 10.5.9 and later ask for SLAVE MONITOR instead (the executable
-- comment is read by MariaDB only).
GRANT PROCESS, REPLICATION CLIENT /*M!100509 , SLAVE MONITOR */ ON *.* TO 'mairie_monitor'@'%';

-- database_size, table_sizes, sequences: information_schema shows a table only to an account
-- with a privilege on it; REFERENCES is one that reads no data.
GRANT REFERENCES ON `mairie`.* TO 'mairie_monitor'@'%';
