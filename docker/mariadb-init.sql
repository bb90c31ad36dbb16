-- Run once by the mariadb image's entrypoint (docker-entrypoint-initdb.d) on an empty data
-- directory, after it has created the database mairie and the user 'mairie'@'%'
-- (MARIADB_DATABASE, MARIADB_USER in docker-compose.yml).
-- The integration tests create and drop a database per test, and the backup, health and
-- audit commands read server-wide state: like scripts/dev-services.sh on a development
-- machine, give the test user every privilege. Throwaway test containers only.
GRANT ALL PRIVILEGES ON *.* TO 'mairie'@'%';
