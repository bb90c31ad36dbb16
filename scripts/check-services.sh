#!/usr/bin/env bash
# Fails loudly, before a long build or test run, when the servers the integration tests use
# cannot be reached the way the tests reach them: TCP, with the accounts of
# scripts/dev-servers.env (the project's own servers, made by scripts/dev-services.sh), or
# those named by MAIRIE_DBA_TEST_PG, MAIRIE_DBA_TEST_PG_SUPERUSER, MAIRIE_DBA_TEST_MYSQL and
# MAIRIE_DBA_TEST_MYSQL_ADMIN when set (containers in CI, docs/ci/README.md); and the S3 store
# (SeaweedFS) of scripts/dev-servers.env, which the storage tests write to.
# Passwords go to the clients through their environment (PGPASSWORD, MYSQL_PWD) or standard
# input (curl's S3 keys), never argv.
set -euo pipefail
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/dev-servers.env
. "$script_dir/dev-servers.env"

failed=0
fail() {
    printf 'check-services: FAILED: %s\n' "$*" >&2
    failed=1
}

# One key of a libpq keyword string ("host=… port=… user=… password=…").
dsn_value() {
    local kv
    for kv in $1; do
        [ "${kv%%=*}" = "$2" ] && printf '%s' "${kv#*=}" && return 0
    done
    printf '%s' "${3:-}"
}

# Logs in to PostgreSQL with a keyword string and prints the server's version.
check_pg() {
    local what=$1 dsn=$2 host port user out
    host=$(dsn_value "$dsn" host 127.0.0.1)
    port=$(dsn_value "$dsn" port 5432)
    user=$(dsn_value "$dsn" user)
    if ! out=$(PGPASSWORD=$(dsn_value "$dsn" password) PGCONNECT_TIMEOUT=5 psql -X -A -t \
        -v ON_ERROR_STOP=1 -h "$host" -p "$port" -U "$user" -d postgres \
        -c 'SELECT version()' 2>&1); then
        fail "cannot log in to PostgreSQL $host:$port as $user ($what): $out"
    else
        printf 'check-services: PostgreSQL %s:%s as %s (%s): %s\n' "$host" "$port" "$user" "$what" "${out%% on *}"
    fi
}

# Logs in to MySQL/MariaDB with a mysql://user:password@host:port URL.
check_my() {
    local what=$1 url=${2#mysql://} creds hostport user password host port out
    creds=${url%@*}
    hostport=${url##*@}
    hostport=${hostport%%/*}
    user=${creds%%:*}
    password=${creds#*:}
    host=${hostport%%:*}
    port=${hostport##*:}
    [ "$port" != "$hostport" ] || port=3306
    if ! out=$(MYSQL_PWD=$password mariadb --no-defaults -h "$host" -P "$port" --protocol=tcp \
        -u "$user" --connect-timeout=5 -N -B -e 'SELECT VERSION()' 2>&1); then
        fail "cannot log in to MariaDB/MySQL $host:$port as $user ($what): $out"
    else
        printf 'check-services: MariaDB %s:%s as %s (%s): %s\n' "$host" "$port" "$user" "$what" "$out"
    fi
}

# A signed S3 request to the dev store (SigV4, keys on curl's standard input): ListBuckets must
# answer 200, and 403 with a wrong secret.
check_s3() {
    local url=http://127.0.0.1:$MAIRIE_DEV_S3_PORT/ ok wrong
    s3_status() {
        printf 'user = "%s:%s"\n' "$MAIRIE_DEV_S3_ACCESS_KEY" "$1" |
            curl -K - -sS --max-time 10 -o /dev/null -w '%{http_code} %header{server}' \
                --aws-sigv4 "aws:amz:$MAIRIE_DEV_S3_REGION:s3" -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$url" 2>&1
    }
    ok=$(s3_status "$MAIRIE_DEV_S3_SECRET_KEY") || true
    wrong=$(s3_status wrong-secret) || true
    if [[ "$ok" != "200 "* ]]; then
        fail "S3 $url does not list the buckets of $MAIRIE_DEV_S3_ACCESS_KEY: ${ok:-no answer}"
    elif [[ "$wrong" != "403 "* ]]; then
        fail "S3 $url does not refuse a wrong secret key: ${wrong:-no answer}"
    else
        printf 'check-services: S3 %s as %s: %s\n' "$url" "$MAIRIE_DEV_S3_ACCESS_KEY" "${ok#200 }"
    fi
}

for tool in psql mariadb curl; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed (run: bash scripts/dev-services.sh)"
done

if [ "$failed" -eq 0 ]; then
    pg="host=127.0.0.1 port=$MAIRIE_DEV_PG_PORT"
    my="127.0.0.1:$MAIRIE_DEV_MY_PORT"
    check_pg "the tests' role" "${MAIRIE_DBA_TEST_PG:-$pg user=$MAIRIE_DEV_USER password=$MAIRIE_DEV_PASSWORD}"
    check_pg "the tests' superuser" "${MAIRIE_DBA_TEST_PG_SUPERUSER:-$pg user=$MAIRIE_DEV_ADMIN_USER password=$MAIRIE_DEV_ADMIN_PASSWORD}"
    check_my "the tests' user" "${MAIRIE_DBA_TEST_MYSQL:-mysql://$MAIRIE_DEV_USER:$MAIRIE_DEV_PASSWORD@$my}"
    check_my "the tests' admin" "${MAIRIE_DBA_TEST_MYSQL_ADMIN:-mysql://$MAIRIE_DEV_ADMIN_USER:$MAIRIE_DEV_ADMIN_PASSWORD@$my}"
    check_s3
fi

if [ "$failed" -ne 0 ]; then
    printf 'check-services: the integration tests need these servers; start them with: bash scripts/dev-services.sh\n' >&2
    exit 1
fi
