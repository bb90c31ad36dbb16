#!/usr/bin/env bash
# Prints a fingerprint of the PostgreSQL and MariaDB servers this machine runs of its own
# (every server but the project's, see scripts/dev-servers.env): their configuration files,
# start times, roles and users, and the settings the project's tests care about. CI takes it
# before scripts/dev-services.sh and again after the tests, and fails when they differ: the
# project must never restart, reconfigure or write to a server it did not create.
#
# Passwords and hashes are never printed: role and user lists are shown as a SHA-256 of
# their rows. Needs root to read every file and to reach the servers as their superuser
# (peer authentication on PostgreSQL's socket, unix_socket on MariaDB's); what cannot be read
# is printed as such, the same way both times.
set -uo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/dev-servers.env
. "$script_dir/dev-servers.env"
cd /

hash_of() { sha256sum | cut -c1-16; }

file_line() {
    if [ -r "$1" ]; then
        printf 'file %s %s\n' "$1" "$(hash_of <"$1")"
    elif [ -e "$1" ]; then
        printf 'file %s unreadable\n' "$1"
    fi
}

# PostgreSQL: every cluster of pg_lsclusters but the project's.
if command -v pg_lsclusters >/dev/null 2>&1; then
    while read -r version cluster port status owner datadir _; do
        [ "$cluster" = "$MAIRIE_DEV_PG_CLUSTER" ] && continue
        printf 'postgres %s/%s port %s %s\n' "$version" "$cluster" "$port" "${status%%,*}"
        conf=/etc/postgresql/$version/$cluster
        for f in "$conf"/*.conf "$conf"/conf.d/* "$datadir/postgresql.auto.conf"; do
            [ -f "$f" ] && file_line "$f"
        done
        [[ "$status" == online* ]] || continue
        q() {
            runuser -u "$owner" -- psql -X -A -t -q -h /var/run/postgresql -p "$port" -d postgres \
                -v ON_ERROR_STOP=1 -c "$1" 2>&1 || echo "query failed"
        }
        started=$(q 'SELECT pg_postmaster_start_time()')
        if [ "$started" != "query failed" ] && [ -n "$started" ]; then
            printf 'postgres %s/%s started %s\n' "$version" "$cluster" "$started"
            printf 'postgres %s/%s roles %s\n' "$version" "$cluster" \
                "$(q 'SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolcanlogin, rolreplication, rolbypassrls, rolpassword, rolvaliduntil FROM pg_authid ORDER BY 1' | hash_of)"
            printf 'postgres %s/%s databases %s\n' "$version" "$cluster" \
                "$(q 'SELECT datname, datdba::regrole, datallowconn FROM pg_database ORDER BY 1' | hash_of)"
            printf 'postgres %s/%s role settings %s\n' "$version" "$cluster" \
                "$(q 'SELECT setdatabase, setrole, setconfig FROM pg_db_role_setting ORDER BY 1, 2' | hash_of)"
            printf 'postgres %s/%s settings %s\n' "$version" "$cluster" \
                "$(q "SELECT name, setting FROM pg_settings WHERE source NOT IN ('default', 'override', 'client', 'session') ORDER BY 1" | hash_of)"
        else
            # No superuser access: the postmaster's start time from its pid file.
            printf 'postgres %s/%s started %s (postmaster.pid)\n' "$version" "$cluster" \
                "$(sed -n 3p "$datadir/postmaster.pid" 2>/dev/null || echo unknown)"
        fi
    done < <(pg_lsclusters -h 2>/dev/null)
fi

# MariaDB/MySQL: the machine's option files, and every running server but the project's.
if [ -d /etc/mysql ]; then
    while IFS= read -r -d '' f; do
        file_line "$f"
    done < <(find /etc/mysql -type f -print0 2>/dev/null | sort -z)
fi
for comm in /proc/[0-9]*/comm; do
    name=$(cat "$comm" 2>/dev/null) || continue
    [ "$name" = mariadbd ] || [ "$name" = mysqld ] || continue
    dir=${comm%/comm}
    args=$(tr '\0' ' ' <"$dir/cmdline" 2>/dev/null)
    [[ "$args" == *"$MAIRIE_DEV_MY_DIR/"* ]] && continue
    # Field 22 of stat: the start time, in clock ticks since boot.
    printf 'mariadb pid %s started %s: %s\n' "${dir#/proc/}" \
        "$(awk '{ print $22 }' "$dir/stat" 2>/dev/null)" "$args"
done
if command -v mariadb >/dev/null 2>&1 && mariadb -uroot --connect-timeout=3 -e 'SELECT 1' >/dev/null 2>&1; then
    my() { mariadb -uroot --connect-timeout=5 -N -B -e "$1" 2>&1 || echo "query failed"; }
    printf 'mariadb users %s\n' "$(my 'SELECT User, Host, Priv FROM mysql.global_priv ORDER BY 1, 2' | hash_of)"
    printf 'mariadb grants %s\n' "$(my 'SELECT * FROM mysql.db ORDER BY Host, Db, User' | hash_of)"
    printf 'mariadb databases %s\n' "$(my 'SHOW DATABASES' | hash_of)"
    printf 'mariadb settings %s\n' "$(my "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('local_infile', 'performance_schema', 'port', 'socket', 'datadir', 'sql_mode', 'max_connections', 'general_log', 'slow_query_log', 'log_bin', 'event_scheduler', 'read_only')" | tr '\n' ' ')"
fi
exit 0
