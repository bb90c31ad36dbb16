-- Run once by the postgres image's entrypoint (docker-entrypoint-initdb.d) on an empty data
-- directory, as the superuser mairie (POSTGRES_USER in docker-compose.yml).
-- The wrong-password test logs in as mairie_pwtest over TCP, where the image's pg_hba.conf
-- always asks for a scram-sha-256 password (scripts/dev-services.sh sets up the same role on a
-- development machine). Throwaway test containers only.
CREATE ROLE mairie_pwtest LOGIN NOCREATEDB NOSUPERUSER PASSWORD 'right-password';

-- maintenance slow-queries reads pg_stat_statements (preloaded by the compose file's command)
-- in the target's database: installed here and in template1, it comes with every database
-- the tests create.
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
\connect template1
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
