#!/usr/bin/env bash
# Fails loudly, before a long build or test run, when the servers the integration tests use
# cannot be reached the way the tests reach them: TCP on 127.0.0.1, user mairie, password from
# MAIRIE_PG_PASSWORD / MAIRIE_MYSQL_PASSWORD (default "mairie", as scripts/dev-services.sh sets).
# Passwords go to the clients through their environment (PGPASSWORD, MYSQL_PWD), never argv.
set -euo pipefail

pg_password=${MAIRIE_PG_PASSWORD:-mairie}
my_password=${MAIRIE_MYSQL_PASSWORD:-mairie}
failed=0

fail() {
    printf 'check-services: FAILED: %s\n' "$*" >&2
    failed=1
}

for tool in pg_isready psql mariadb; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed (run: sudo bash scripts/dev-services.sh)"
done

if [ "$failed" -eq 0 ]; then
    if ! out=$(pg_isready -h 127.0.0.1 -p 5432 -t 5 2>&1); then
        fail "PostgreSQL is not accepting connections on 127.0.0.1:5432 ($out)"
    elif ! out=$(PGPASSWORD=$pg_password PGCONNECT_TIMEOUT=5 psql -X -A -t -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p 5432 -U mairie -d mairie -c 'SELECT version()' 2>&1); then
        fail "cannot log in to PostgreSQL 127.0.0.1:5432 as user mairie, database mairie, and run a query: $out"
    else
        printf 'check-services: PostgreSQL ok: %s\n' "${out%% on *}"
    fi

    if ! out=$(MYSQL_PWD=$my_password mariadb -h 127.0.0.1 -P 3306 --protocol=tcp -u mairie \
        --connect-timeout=5 -N -B -e 'SELECT VERSION()' 2>&1); then
        fail "cannot log in to MariaDB 127.0.0.1:3306 as user mairie and run a query: $out"
    else
        printf 'check-services: MariaDB ok: %s\n' "$out"
    fi
fi

if [ "$failed" -ne 0 ]; then
    printf 'check-services: the integration tests need both servers; start them with: sudo bash scripts/dev-services.sh\n' >&2
    exit 1
fi
