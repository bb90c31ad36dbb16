-- A least-privilege PostgreSQL role for `mairie-dba health` and `metrics`: it sees every
-- session's activity (pg_monitor), may connect to the monitored database and read where its
-- sequences stand (SELECT on a sequence reads it; it cannot call nextval), and nothing else:
-- not a row of the tables.
--
-- Run it as a superuser, connected to the monitored database:
--
--     psql -v ON_ERROR_STOP=1 -d mairie -f deploy/monitoring-role/postgres.sql
--
-- then give the role a password at the prompt (never on a command line), and point the
-- target's engine file at it (`user: mairie_monitor`, `password_env: ...`):
--
--     psql -d mairie -c '\password mairie_monitor'
--
-- For another name, replace mairie_monitor throughout. Running it again is harmless; run it
-- again after sequences appear in a schema owned by another role than the database's owner
-- (`health` says so: its `sequences` check is UNKNOWN and names the grant).

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mairie_monitor') THEN
        CREATE ROLE mairie_monitor LOGIN CONNECTION LIMIT 5;
    END IF;
END
$$;

-- Every session's state, query and timings in pg_stat_activity (connections, long_queries,
-- idle_in_transaction), the standbys' lag (replication), the statistics views.
GRANT pg_monitor TO mairie_monitor;

-- The monitored database, also where CONNECT was revoked from PUBLIC.
DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO mairie_monitor', current_database());
END
$$;

-- The sequences check: the sequences that exist now, and those the database's owner
-- creates from now on.
DO $$
DECLARE
    s name;
BEGIN
    FOR s IN SELECT nspname FROM pg_namespace
             WHERE nspname NOT LIKE 'pg\_%' AND nspname <> 'information_schema'
    LOOP
        EXECUTE format('GRANT SELECT ON ALL SEQUENCES IN SCHEMA %I TO mairie_monitor', s);
    END LOOP;
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I GRANT SELECT ON SEQUENCES TO mairie_monitor',
                   (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()));
END
$$;
