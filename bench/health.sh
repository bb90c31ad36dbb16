#!/usr/bin/env bash
# Benchmark: one `mairie-dba health` run (every PostgreSQL check, one target) against the
# equivalent check_postgres actions run one after the other, as a monitoring system calls
# them: connection, backends, query_time, txn_idle, locks, database_size, hitratio,
# txn_wraparound, sequence, last_vacuum, last_analyze (hot_standby_delay only when the server
# has a standby). Same server, same database, same run, both sides logged in as the
# monitoring role of deploy/monitoring-role/postgres.sql (pg_monitor: they see every
# session); medians of RUNS runs (hyperfine) and their ratio: check_postgres time /
# mairie-dba time (target: at least 5).
#
#   bench/health.sh                   # RUNS=10
#   RUNS=20 bench/health.sh
#
# The database is a fresh one with the mairie schema and the demo data (`schema apply`,
# `load-csv --all`, ANALYZE), dropped at the end with the monitoring role (made by the
# project's superuser account). Uses target/release/mairie-dba, built only
# when missing or older than the sources. Installs check-postgres and hyperfine from Debian
# when missing. The password reaches both tools through the environment, never argv.
# Needs the local servers of scripts/dev-services.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The project's own servers (scripts/dev-services.sh): ports and throwaway passwords.
. scripts/dev-servers.env
readonly ROOT=$PWD RUNS=${RUNS:-10}
readonly WORK=${BENCH_WORK:-/tmp/mairie-dba-bench-health}
readonly BIN=${MAIRIE_DBA_BIN:-$ROOT/target/release/mairie-dba}
readonly DB=bench_health MONITOR=bench_health_monitor
export MAIRIE_PG_PASSWORD=${MAIRIE_PG_PASSWORD:-$MAIRIE_DEV_PASSWORD}
export PGPASSWORD=$MAIRIE_PG_PASSWORD PGHOST=127.0.0.1 PGPORT=$MAIRIE_DEV_PG_PORT PGUSER=mairie
# The monitoring role's password: made up for this run, handed over by the environment.
MAIRIE_MONITOR_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
export MAIRIE_MONITOR_PASSWORD

log() { printf '[bench] %s\n' "$*" >&2; }
# As the project's superuser (creates and drops the monitoring role).
psql_admin() { PGUSER=$MAIRIE_DEV_ADMIN_USER PGPASSWORD=$MAIRIE_DEV_ADMIN_PASSWORD psql -qX -v ON_ERROR_STOP=1 "$@"; }
dropdb_q() { psql -qX -d postgres -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" >/dev/null; }
cleanup() {
    if psql_admin -d postgres -Atc "SELECT 1 FROM pg_roles WHERE rolname = '$MONITOR'" | grep -q 1; then
        psql_admin -d "$DB" -c "DROP OWNED BY $MONITOR" >/dev/null 2>&1 || true
        psql_admin -d postgres -c "DROP ROLE $MONITOR" >/dev/null || true
    fi
    dropdb_q "$DB" || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- tools -----------------------------------------------------------------------------------
if [ ! -x "$BIN" ] || [ -n "$(find src Cargo.toml Cargo.lock -newer "$BIN" -print -quit)" ]; then
    log "building the release binary (missing or older than the sources)"
    cargo build --release
fi
missing=()
command -v check_postgres >/dev/null 2>&1 || [ -x /usr/bin/check_postgres.pl ] || missing+=(check-postgres)
command -v hyperfine >/dev/null 2>&1 || missing+=(hyperfine)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get install -y "${missing[@]}" >/dev/null
fi
if command -v check_postgres >/dev/null 2>&1; then
    CP=$(command -v check_postgres)
else
    CP=/usr/bin/check_postgres.pl
fi

# --- database --------------------------------------------------------------------------------
rm -rf "$WORK" && mkdir -p "$WORK"
# Engine files: the application's account (mairie) to build the database; the monitoring
# role, which the two sides run as, with the default sslmode (prefer: TLS when the server
# offers it, as psql does under check_postgres) and sslmode disable, for the same comparison
# without TLS.
engine_file() { # name user password_env sslmode
    cat > "$WORK/config_postgres_$1.yml" <<YML
connection:
  host: 127.0.0.1
  port: $MAIRIE_DEV_PG_PORT
  database: $DB
  user: $2
  password_env: $3
  sslmode: $4
YML
}
engine_file setup mairie MAIRIE_PG_PASSWORD prefer
engine_file prefer "$MONITOR" MAIRIE_MONITOR_PASSWORD prefer
engine_file disable "$MONITOR" MAIRIE_MONITOR_PASSWORD disable
# No backup section: backup_age then says "no backup configured" (check_postgres has no
# equivalent); the datasets are the project's demo data.
for name in setup prefer disable; do
    {
        printf 'base_dir: %s\ntargets:\n  postgres:\n    engine: postgres\n    config: config_postgres_%s.yml\n' "$ROOT" "$name"
        sed -n '/^datasets:/,$p' config/config_global.yml
    } > "$WORK/config_global_$name.yml"
done
CFG_SETUP=$WORK/config_global_setup.yml
CFG=$WORK/config_global_prefer.yml
CFG_NOTLS=$WORK/config_global_disable.yml

log "creating $DB: schema apply, load-csv --all, ANALYZE"
dropdb_q "$DB"
psql -qX -d postgres -c "CREATE DATABASE $DB" >/dev/null
"$BIN" -c "$CFG_SETUP" -q --no-progress schema apply >/dev/null
"$BIN" -c "$CFG_SETUP" -q --no-progress load-csv --all >/dev/null
psql -qX -d "$DB" -c "VACUUM ANALYZE" >/dev/null 2>&1  # shared catalogues: superuser only, skipped

log "creating the monitoring role $MONITOR from deploy/monitoring-role/postgres.sql"
sed "s/mairie_monitor/$MONITOR/g" deploy/monitoring-role/postgres.sql | psql_admin -d "$DB" >/dev/null
# The password through psql's standard input, not its command line.
psql_admin -d postgres >/dev/null <<SQL
ALTER ROLE $MONITOR PASSWORD '$MAIRIE_MONITOR_PASSWORD';
SQL

STANDBYS=$(psql -AtX -d "$DB" -c "SELECT count(*) FROM pg_stat_replication")
IN_RECOVERY=$(psql -AtX -d "$DB" -c "SELECT pg_is_in_recovery()")

# --- the two sides ---------------------------------------------------------------------------
# check_postgres with the thresholds of mairie-dba's defaults, where the action has them, as
# the same monitoring role.
CPA=("$CP" --host 127.0.0.1 --dbuser "$MONITOR" --db "$DB")
ACTIONS=(
    "connection"
    "backends --warning=80% --critical=95%"
    "query_time --warning=5s --critical=60s"
    "txn_idle --warning=60s --critical=300s"
    "locks --warning=waiting=1 --critical=waiting=5"
    "database_size --warning=100GB --critical=200GB"
    "hitratio --warning=90% --critical=80%"
    "txn_wraparound --warning=1073741824 --critical=1610612736"
    "sequence --warning=75% --critical=90%"
    "last_vacuum --warning=7d --critical=30d"
    "last_analyze --warning=7d --critical=30d"
)
if [ "$STANDBYS" -gt 0 ] || [ "$IN_RECOVERY" = t ]; then
    # Needs the standby's address as a second host: not something this script can guess.
    REPLICATION="the server has a standby, but hot_standby_delay needs its address: not run"
else
    REPLICATION="no standby and not a standby: hot_standby_delay skipped (mairie-dba's replication check still runs and says standalone)"
fi
for ssl in prefer disable; do
    {
        echo '#!/usr/bin/env bash'
        echo '# The check_postgres actions, one after the other, as a monitoring system runs them.'
        echo "export PGSSLMODE=$ssl PGPASSWORD=\"\$MAIRIE_MONITOR_PASSWORD\""
        for a in "${ACTIONS[@]}"; do
            printf '%q ' "${CPA[@]}"
            echo "--action=$a >/dev/null || true"
        done
    } > "$WORK/check_postgres_$ssl.sh"
    chmod +x "$WORK/check_postgres_$ssl.sh"
done

log "one run of each, for the record"
MD_OUT=$("$BIN" -c "$CFG" --format nagios health || true)
echo "mairie-dba: ${MD_OUT:0:400}"
for a in "${ACTIONS[@]}"; do
    # shellcheck disable=SC2086 # the action and its options are split on purpose
    out=$(PGPASSWORD=$MAIRIE_MONITOR_PASSWORD "${CPA[@]}" --action=$a 2>&1 || true)
    echo "check_postgres ${a%% *}: ${out:0:160}"
done
NCHECKS=$("$BIN" -c "$CFG" --format json health | python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d["targets"][0]["checks"]))' || true)

# --- timing ----------------------------------------------------------------------------------
log "hyperfine: $RUNS runs of each side"
hyperfine -N -i --warmup 2 --runs "$RUNS" --export-json "$WORK/total.json" \
    -n mairie-dba "$BIN -c $CFG -q --format nagios health" \
    -n check_postgres "$WORK/check_postgres_prefer.sh" >&2
log "hyperfine: the same without TLS (sslmode disable on both sides)"
hyperfine -N -i --warmup 2 --runs "$RUNS" --export-json "$WORK/notls.json" \
    -n mairie-dba "$BIN -c $CFG_NOTLS -q --format nagios health" \
    -n check_postgres "$WORK/check_postgres_disable.sh" >&2
# Each action alone, to show where check_postgres' time goes.
per_action=()
for a in "${ACTIONS[@]}"; do
    per_action+=(-n "${a%% *}" "$(printf '%q ' "${CPA[@]}") --action=$a")
done
PGPASSWORD=$MAIRIE_MONITOR_PASSWORD hyperfine -N -i --warmup 1 --runs "$RUNS" --export-json "$WORK/actions.json" "${per_action[@]}" >/dev/null 2>&1

# --- report ----------------------------------------------------------------------------------
echo
echo "date        $(date -u +%Y-%m-%dT%H:%M:%SZ)"
# shellcheck disable=SC1091
echo "machine     $(nproc) CPU(s), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), RAM $(free -g | awk '/Mem:/ {print $2}') GiB, $(. /etc/os-release && echo "$PRETTY_NAME")"
echo "postgres    $(psql -AtX -d postgres -c 'SHOW server_version')"
echo "mairie-dba  $("$BIN" --version) (release build)"
echo "check_postgres $("$CP" --version | awk '{print $NF}'), $(perl -e 'printf "perl %vd", $^V')"
echo "hyperfine   $(hyperfine --version | awk '{print $2}')"
echo "database    $DB: $(psql -AtX -d "$DB" -c "SELECT pg_size_pretty(pg_database_size(current_database()))"), mairie schema + demo data"
echo "replication $REPLICATION"
echo "runs        $RUNS (after warm-up)"
echo "checks      mairie-dba: $NCHECKS checks in one run; check_postgres: ${#ACTIONS[@]} actions"
python3 - "$WORK/total.json" "$WORK/notls.json" "$WORK/actions.json" "${#ACTIONS[@]}" <<'PY'
import json, sys
ms = lambda s: f"{s * 1000:.1f} ms"
print()
print("| connection | side | median | min | max | ratio (check_postgres / mairie-dba) |")
print("|---|---|---|---|---|---|")
ratios = []
for label, path in (("sslmode prefer (default, TLS)", sys.argv[1]), ("sslmode disable", sys.argv[2])):
    tot = {r["command"]: r for r in json.load(open(path))["results"]}
    md, cp = tot["mairie-dba"], tot["check_postgres"]
    ratio = cp["median"] / md["median"]
    ratios.append(ratio)
    print(f"| {label} | mairie-dba health (all checks) | {ms(md['median'])} | {ms(md['min'])} | {ms(md['max'])} | |")
    print(f"| {label} | check_postgres, {sys.argv[4]} actions in a row | {ms(cp['median'])} | {ms(cp['min'])} | {ms(cp['max'])} | **{ratio:.1f}x** |")
print()
print(f"ratio, default connection (medians): {ratios[0]:.1f}x  (target >= 5x: {'met' if ratios[0] >= 5 else 'MISSED'})")
print()
print("check_postgres, each action alone, sslmode prefer (median):")
for r in json.load(open(sys.argv[3]))["results"]:
    print(f"  {r['command']:<16} {ms(r['median'])}")
PY
