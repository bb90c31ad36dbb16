#!/usr/bin/env bash
# Local PostgreSQL and MariaDB servers for the integration tests and the benchmarks.
#
# On a Debian machine (a developer's box, a CI runner, a container without systemd) this
# installs whatever is missing, starts both servers, waits until they accept connections and
# makes sure they hold what mairie-dba's tests expect:
#
#   PostgreSQL  127.0.0.1:5432  role mairie (LOGIN CREATEDB, password "mairie"), database mairie,
#               role mairie_pwtest (password "right-password", always asked for, see pg_hba),
#               pg_stat_statements preloaded and installed in template1 (so in every database
#               the tests create) and in mairie.
#   MariaDB     127.0.0.1:3306  users mairie@localhost and mairie@127.0.0.1 (password "mairie",
#               all privileges: the tests create and drop their own databases), database mairie,
#               local_infile and performance_schema on.
#
# The tool reads the passwords from MAIRIE_PG_PASSWORD and MAIRIE_MYSQL_PASSWORD; for these
# development servers both are "mairie" (scripts/test.sh exports them).
#
# Idempotent: a second run only sets the PostgreSQL roles' passwords again, and takes under a
# second. Servers are restarted only when a setting that needs a restart
# (shared_preload_libraries, performance_schema) is not yet in effect. Needs root to install,
# start or configure; run as another user, it only checks that everything is reachable.
#
# Environment: MAIRIE_DBA_WAIT_SECONDS (default 60), how long to wait for a server to start.

set -euo pipefail

# pg_ctlcluster, runuser and start-stop-daemon live in sbin, which `su` without `-` leaves out.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

readonly WAIT_SECONDS=${MAIRIE_DBA_WAIT_SECONDS:-60}
readonly PG_PORT=5432
readonly MY_PORT=3306
readonly DEV_PASSWORD=mairie
readonly PWTEST_ROLE=mairie_pwtest
readonly PWTEST_PASSWORD=right-password
readonly PWTEST_HBA_RULE="host all ${PWTEST_ROLE} 127.0.0.1/32 scram-sha-256"
readonly PWTEST_HBA_COMMENT="# mairie-dba tests: ${PWTEST_ROLE} must always give its password (scripts/dev-services.sh)"
readonly MY_CNF_DIR=/etc/mysql/mariadb.conf.d
readonly MY_CNF_FILE=${MY_CNF_DIR}/99-mairie-dba.cnf

log() { printf '[dev-services] %s\n' "$*" >&2; }
die() {
    printf '[dev-services] ERROR: %s\n' "$*" >&2
    exit 1
}
is_root() { [ "$(id -u)" -eq 0 ]; }

# Some commands are run as the postgres user, who may not be allowed into the caller's
# current directory; run everything from / so that they do not complain about it.
cd /

# ---------------------------------------------------------------------------------------------
# Packages

# Echoes the Debian packages whose files are missing, judged by a binary or file each provides.
missing_packages() {
    local -a missing=()
    command -v pg_ctlcluster >/dev/null 2>&1 || missing+=(postgresql-common)
    command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
    compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || missing+=(postgresql)
    compgen -G '/usr/lib/postgresql/*/lib/pg_stat_statements.so' >/dev/null || missing+=(postgresql-contrib)
    [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
    command -v mariadb >/dev/null 2>&1 || missing+=(mariadb-client)
    command -v zstd >/dev/null 2>&1 || missing+=(zstd)
    command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
    [ -e /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
    command -v runuser >/dev/null 2>&1 || missing+=(util-linux)
    command -v start-stop-daemon >/dev/null 2>&1 || missing+=(dpkg)
    # promtool, which the exporter's tests use to check the metrics it serves.
    command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
    echo "${missing[*]}"
}

install_missing() {
    local missing
    missing=$(missing_packages)
    [ -z "$missing" ] && return 0
    is_root || die "missing packages ($missing); run this script as root to install them"
    # Always the same set (the metapackages bring the client, the server and postgresql-common),
    # whichever piece was found missing, so that every machine ends up alike.
    log "installing PostgreSQL, MariaDB and build dependencies (missing: $missing)"
    export DEBIAN_FRONTEND=noninteractive
    # The cluster that postgresql's postinst creates takes its encoding from the locale: without
    # one it would be SQL_ASCII, and the French names of the test data would not round-trip.
    export LANG=C.UTF-8 LC_ALL=C.UTF-8
    apt-get update -q
    apt-get install -y -q postgresql postgresql-contrib mariadb-server mariadb-client \
        zstd libssl-dev pkg-config util-linux prometheus
    missing=$(missing_packages)
    [ -z "$missing" ] || die "still missing after apt-get install: $missing"
}

# Waits until "$@" succeeds, at most WAIT_SECONDS; returns 1 on timeout.
wait_for() {
    local deadline=$((SECONDS + WAIT_SECONDS))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL

PG_VERSION=
PG_CLUSTER=main
PG_NOTE=  # appended to the summary line once checked

pg_pick_cluster() {
    # The newest installed major version; its "main" cluster.
    PG_VERSION=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$PG_VERSION" ]; then
        # No cluster yet: the newest installed server (client-only versions have no bin/postgres).
        PG_VERSION=$(compgen -G '/usr/lib/postgresql/*/bin/postgres' | awk -F/ '{ print $5 }' | sort -V | tail -n 1)
    fi
    [ -n "$PG_VERSION" ] || die "no PostgreSQL server version found under /usr/lib/postgresql"
    if [ ! -e "/etc/postgresql/$PG_VERSION/$PG_CLUSTER/postgresql.conf" ]; then
        is_root || die "PostgreSQL $PG_VERSION has no cluster '$PG_CLUSTER'; run as root to create it"
        log "creating PostgreSQL cluster $PG_VERSION/$PG_CLUSTER (UTF-8)"
        LANG=C.UTF-8 LC_ALL=C.UTF-8 pg_createcluster --locale C.UTF-8 --encoding UTF8 \
            --port "$PG_PORT" "$PG_VERSION" "$PG_CLUSTER" >/dev/null
    fi
    local port
    port=$(pg_cluster_field 3)
    [ "$port" = "$PG_PORT" ] ||
        die "cluster $PG_VERSION/$PG_CLUSTER listens on port $port, not $PG_PORT (the tests' config expects $PG_PORT)"
}

# One column of this cluster's line in pg_lsclusters: 3 port, 4 status.
pg_cluster_field() {
    pg_lsclusters -h | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" -v f="$1" '$1 == v && $2 == c { print $f }'
}

pg_running() { [[ "$(pg_cluster_field 4)" == online* ]]; }

pg_ready() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT" -t 2; }

pg_wait() {
    wait_for pg_ready || {
        tail -n 20 "/var/log/postgresql/postgresql-$PG_VERSION-$PG_CLUSTER.log" >&2 2>/dev/null || true
        die "PostgreSQL $PG_VERSION/$PG_CLUSTER does not accept connections on 127.0.0.1:$PG_PORT after ${WAIT_SECONDS}s"
    }
}

pg_ctl_cluster() {
    # --skip-systemctl-redirect: start the postmaster directly even where systemd is PID 1's
    # neighbour but not in charge (containers, CI runners).
    pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" "$PG_CLUSTER" "$1"
}

pg_start() {
    if pg_running; then
        return 0
    fi
    log "starting PostgreSQL $PG_VERSION/$PG_CLUSTER"
    pg_ctl_cluster start || die "pg_ctlcluster $PG_VERSION $PG_CLUSTER start failed"
}

# psql as the postgres superuser over the Unix socket: peer or trust on every Debian install.
# SQL comes on stdin (or -c); nothing secret ever goes on a command line.
pg_super() {
    runuser -u postgres -- psql -X -q -A -t -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres "$@"
}

pg_preload_pg_stat_statements() {
    local current
    current=$(pg_super -c 'SHOW shared_preload_libraries')
    local -a libs=()
    local lib
    IFS=',' read -r -a parts <<<"$current"
    PG_NOTE=", pg_stat_statements preloaded"
    for lib in "${parts[@]}"; do
        lib=$(sed -e 's/^[[:space:]"]*//' -e 's/[[:space:]"]*$//' <<<"$lib")
        [ -n "$lib" ] || continue
        [ "$lib" = pg_stat_statements ] && return 0
        libs+=("$lib")
    done
    [ -e "/usr/lib/postgresql/$PG_VERSION/lib/pg_stat_statements.so" ] ||
        die "pg_stat_statements.so is missing for PostgreSQL $PG_VERSION (install postgresql-contrib)"
    libs+=(pg_stat_statements)
    local list="" sep=""
    for lib in "${libs[@]}"; do
        list+="${sep}'${lib//\'/\'\'}'"
        sep=", "
    done
    log "preloading pg_stat_statements (shared_preload_libraries = $list); restarting PostgreSQL"
    pg_super <<<"ALTER SYSTEM SET shared_preload_libraries = $list;"
    pg_ctl_cluster restart || die "pg_ctlcluster $PG_VERSION $PG_CLUSTER restart failed"
    pg_wait
    current=$(pg_super -c 'SHOW shared_preload_libraries')
    [[ "$current" == *pg_stat_statements* ]] ||
        die "shared_preload_libraries is still '$current' after a restart"
}

# `maintenance slow-queries` reads pg_stat_statements in the target's database, and only a
# superuser may create this extension: installed in template1, it comes with every database
# the tests create. IF NOT EXISTS keeps a second run silent.
pg_stat_statements_extension() {
    local db
    for db in template1 mairie; do
        runuser -u postgres -- psql -X -q -A -t -v ON_ERROR_STOP=1 -p "$PG_PORT" -d "$db" <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
SQL
    done
}

pg_roles_and_database() {
    local template_encoding create_db create_db_literal
    template_encoding=$(pg_super -c "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = 'template1'")
    if [ "$template_encoding" = UTF8 ]; then
        create_db="CREATE DATABASE mairie OWNER mairie"
    else
        log "WARNING: template1 is $template_encoding, not UTF8: databases the tests create will be $template_encoding too"
        create_db="CREATE DATABASE mairie OWNER mairie TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'"
    fi
    create_db_literal=${create_db//\'/\'\'}
    # Passwords are set on every run (cheap) so that a changed or missing one is put right;
    # scram-sha-256 explicitly, whatever the server's default, because pg_hba asks for it.
    pg_super <<SQL
SET client_min_messages = warning;
SET password_encryption = 'scram-sha-256';
SELECT 'CREATE ROLE mairie' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mairie') \gexec
ALTER ROLE mairie LOGIN CREATEDB PASSWORD '${DEV_PASSWORD}';
SELECT '${create_db_literal}' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'mairie') \gexec
SELECT 'ALTER DATABASE mairie OWNER TO mairie'
  FROM pg_database WHERE datname = 'mairie' AND datdba <> 'mairie'::regrole \gexec
SELECT 'CREATE ROLE ${PWTEST_ROLE}' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${PWTEST_ROLE}') \gexec
ALTER ROLE ${PWTEST_ROLE} LOGIN NOCREATEDB NOSUPERUSER PASSWORD '${PWTEST_PASSWORD}';
SQL
}

# The wrong-password test needs the server to ask mairie_pwtest for a password even where
# loopback is trusted, so its rule must come before every other one.
pg_hba_pwtest_rule() {
    local hba first
    hba=$(pg_super -c 'SHOW hba_file')
    [ -f "$hba" ] || die "pg_hba.conf not found at '$hba'"
    first=$(awk '!/^[[:space:]]*(#|$)/ { $1 = $1; print; exit }' "$hba")
    if [ "$first" != "$PWTEST_HBA_RULE" ]; then
        log "adding '$PWTEST_HBA_RULE' as the first rule of $hba"
        local tmp
        tmp=$(mktemp)
        # Drop the rule wherever it already is, then insert it before the first rule.
        awk -v rule="$PWTEST_HBA_RULE" -v comment="$PWTEST_HBA_COMMENT" '
            { norm = $0; gsub(/[[:space:]]+/, " ", norm); sub(/^ /, "", norm); sub(/ $/, "", norm) }
            norm == rule || $0 == comment { next }
            !done && !/^[[:space:]]*(#|$)/ {
                print comment
                print rule
                done = 1
            }
            { print }
            END { if (!done) print rule }' "$hba" >"$tmp"
        # Rewrite in place: keeps the file's owner and mode.
        cat "$tmp" >"$hba"
        rm -f "$tmp"
        pg_super -c 'SELECT pg_reload_conf()' >/dev/null
        sleep 0.5
    fi
    local errors
    errors=$(pg_super -c "SELECT string_agg(line_number || ': ' || error, '; ') FROM pg_hba_file_rules WHERE error IS NOT NULL")
    [ -z "$errors" ] || die "$hba has errors: $errors"
}

pg_setup() {
    pg_pick_cluster
    pg_start
    pg_wait
    pg_preload_pg_stat_statements
    pg_roles_and_database
    pg_stat_statements_extension
    pg_hba_pwtest_rule
}

# ---------------------------------------------------------------------------------------------
# MariaDB

# mariadbd's effective option, from its own reading of the option files ("" if unset).
my_option() {
    /usr/sbin/mariadbd --print-defaults 2>/dev/null | tr ' ' '\n' |
        sed -n "s/^--$1=//p" | tail -n 1
}

my_root() { mariadb -uroot --connect-timeout=5 "$@"; }

my_alive() { mariadb-admin -uroot --connect-timeout=2 ping; }

my_show_log() {
    local errlog
    errlog=$(my_option log-error)
    tail -n 20 "${errlog:-/var/log/mysql/mariadbd.console.log}" >&2 2>/dev/null || true
}

my_wait() {
    local deadline=$((SECONDS + WAIT_SECONDS)) grace=$((SECONDS + 3))
    until my_alive >/dev/null 2>&1; do
        # A server that failed to start (bad option, datadir) is gone: no use waiting for it.
        if ((SECONDS > grace)) && ! pgrep -x mariadbd >/dev/null; then
            my_show_log
            die "mariadbd exited during startup (its log is above)"
        fi
        if ((SECONDS >= deadline)); then
            my_show_log
            die "MariaDB does not answer on its socket after ${WAIT_SECONDS}s"
        fi
        sleep 0.5
    done
    # A bare TCP connect: a ping would try to log in and leave "access denied" in the log.
    wait_for bash -c "exec 3<>/dev/tcp/127.0.0.1/$MY_PORT" ||
        die "MariaDB runs but does not listen on 127.0.0.1:$MY_PORT (check bind-address, port, skip-networking)"
}

my_start() {
    if my_alive >/dev/null 2>&1; then
        return 0
    fi
    if ! pgrep -x mariadbd >/dev/null; then
        is_root || die "MariaDB is not running; run this script as root to start it"
        local datadir
        datadir=$(my_option datadir)
        datadir=${datadir:-/var/lib/mysql}
        mkdir -p /run/mysqld /var/log/mysql
        chown mysql:mysql /run/mysqld /var/log/mysql
        if [ ! -d "$datadir/mysql" ]; then
            log "initialising the MariaDB data directory $datadir"
            mkdir -p "$datadir"
            chown mysql:mysql "$datadir"
            mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db >/dev/null
        fi
        log "starting MariaDB"
        # No systemd here: start the daemon directly. It drops to the mysql user itself.
        start-stop-daemon --start --oknodo --background \
            --output /var/log/mysql/mariadbd.console.log \
            --exec /usr/sbin/mariadbd -- --user=mysql
    fi
    my_wait
}

my_restart() {
    log "restarting MariaDB ($1)"
    mariadb-admin -uroot shutdown
    wait_for bash -c '! pgrep -x mariadbd' || die "MariaDB did not stop within ${WAIT_SECONDS}s"
    my_start
}

my_config_file() {
    local wanted
    wanted="# Written by mairie-dba's scripts/dev-services.sh: settings its tests rely on.
[mariadbd]
# load-csv may use LOAD DATA LOCAL INFILE
local_infile = 1
# health and metrics read statement and wait statistics
performance_schema = ON"
    if [ "$(cat "$MY_CNF_FILE" 2>/dev/null || true)" != "$wanted" ]; then
        log "writing $MY_CNF_FILE"
        mkdir -p "$MY_CNF_DIR"
        printf '%s\n' "$wanted" >"$MY_CNF_FILE"
        chmod 0644 "$MY_CNF_FILE"
    fi
    # Debian's my.cnf includes mariadb.conf.d/; a hand-written one may not.
    if [ "$(my_option performance_schema)" != ON ] || [ "$(my_option local_infile)" != 1 ]; then
        local mycnf
        mycnf=$(readlink -f /etc/mysql/my.cnf)
        log "$MY_CNF_FILE is not read by mariadbd: adding '!includedir $MY_CNF_DIR/' to $mycnf"
        printf '\n# Added by mairie-dba scripts/dev-services.sh\n!includedir %s/\n' "$MY_CNF_DIR" >>"$mycnf"
        if [ "$(my_option performance_schema)" != ON ] || [ "$(my_option local_infile)" != 1 ]; then
            die "mariadbd still does not read $MY_CNF_FILE (see: mariadbd --print-defaults)"
        fi
    fi
}

my_setup() {
    # The option file first, so that a server started here starts with it.
    my_config_file
    my_start
    if [ "$(my_root -N -B -e 'SELECT @@GLOBAL.performance_schema')" != 1 ]; then
        my_restart "performance_schema is off"
        [ "$(my_root -N -B -e 'SELECT @@GLOBAL.performance_schema')" = 1 ] ||
            log "WARNING: performance_schema is still off after a restart (another option file turns it off?)"
    fi
    my_root <<SQL
SET GLOBAL local_infile = ON;
CREATE DATABASE IF NOT EXISTS mairie CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS 'mairie'@'localhost' IDENTIFIED BY '${DEV_PASSWORD}';
CREATE USER IF NOT EXISTS 'mairie'@'127.0.0.1' IDENTIFIED BY '${DEV_PASSWORD}';
ALTER USER 'mairie'@'localhost' IDENTIFIED BY '${DEV_PASSWORD}';
ALTER USER 'mairie'@'127.0.0.1' IDENTIFIED BY '${DEV_PASSWORD}';
GRANT ALL PRIVILEGES ON *.* TO 'mairie'@'localhost';
GRANT ALL PRIVILEGES ON *.* TO 'mairie'@'127.0.0.1';
SQL
}

# ---------------------------------------------------------------------------------------------
# Checks, as the tests will connect: TCP on 127.0.0.1, user mairie, password from the
# environment (PGPASSWORD / MYSQL_PWD, never argv).

verify() {
    local pg_version my_version
    pg_version=$(PGPASSWORD=$DEV_PASSWORD PGCONNECT_TIMEOUT=5 psql -X -A -t -h 127.0.0.1 -p "$PG_PORT" \
        -U mairie -d mairie -c 'SHOW server_version' 2>&1) ||
        die "cannot connect to PostgreSQL on 127.0.0.1:$PG_PORT as mairie: $pg_version"
    PGPASSWORD=$PWTEST_PASSWORD PGCONNECT_TIMEOUT=5 psql -X -A -t -h 127.0.0.1 -p "$PG_PORT" \
        -U "$PWTEST_ROLE" -d postgres -c 'SELECT 1' >/dev/null 2>&1 ||
        die "$PWTEST_ROLE cannot log in with its password on 127.0.0.1:$PG_PORT"
    if PGPASSWORD=wrong-password PGCONNECT_TIMEOUT=5 psql -X -A -t -h 127.0.0.1 -p "$PG_PORT" \
        -U "$PWTEST_ROLE" -d postgres -c 'SELECT 1' >/dev/null 2>&1; then
        die "$PWTEST_ROLE logs in with a wrong password: its pg_hba.conf rule is not in effect"
    fi
    my_version=$(MYSQL_PWD=$DEV_PASSWORD mariadb -h127.0.0.1 -P"$MY_PORT" --protocol=tcp -umairie \
        --connect-timeout=5 -N -B -e 'SELECT VERSION()' mairie 2>&1) ||
        die "cannot connect to MariaDB on 127.0.0.1:$MY_PORT as mairie: $my_version"
    printf 'PostgreSQL %s: 127.0.0.1:%s, database mairie, user mairie (MAIRIE_PG_PASSWORD=%s)%s\n' \
        "${pg_version%% *}" "$PG_PORT" "$DEV_PASSWORD" "$PG_NOTE"
    printf 'MariaDB %s: 127.0.0.1:%s and %s, database mairie, user mairie (MAIRIE_MYSQL_PASSWORD=%s)\n' \
        "$my_version" "$MY_PORT" "$(my_option socket)" "$DEV_PASSWORD"
}

main() {
    install_missing
    if ! is_root; then
        log "not root: checking the servers without changing anything"
        verify
        return
    fi
    pg_setup
    my_setup
    verify
}

main "$@"
