#!/usr/bin/env bash
# Benchmark: `mairie-dba monitor serve` under load, with 1,000 expected jobs and 100,000
# history rows (100 days of a daily job each), on a SQLite history and on a PostgreSQL one.
# For each: latency (median, p99) and throughput of `/api/jobs`, `/` (the dashboard) and a
# job's history page under `wrk` on loopback, beside `/api/openapi.json` (the same server
# handing out a constant document: the floor of the server itself, so the ratios say what
# the monitor's own work costs), and the history database's size per 100,000 rows.
#
#   bench/monitor_web.sh                 # JOBS=1000 DAYS=100 DURATION=10 CONNECTIONS=16
#   DURATION=5 bench/monitor_web.sh
#
# The history rows are written straight into the history's tables (the schema is the one
# `mairie-dba` creates), shaped as scans write them: mostly OK, some FAILED, MISSING and
# UNCHANGED, with their status changes. The server runs with --no-scan. Needs wrk (Debian
# package, installed when missing and root), sqlite3, psql and the project's PostgreSQL
# (scripts/dev-services.sh); makes and drops its own database and directory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly ROOT=$PWD JOBS=${JOBS:-1000} DAYS=${DAYS:-100} DURATION=${DURATION:-10}
readonly CONNECTIONS=${CONNECTIONS:-16}
readonly WORK=${BENCH_WORK:-/tmp/mairie-dba-bench-monitor-web}
readonly BIN=${MAIRIE_DBA_BIN:-$ROOT/target/release/mairie-dba}
. scripts/dev-servers.env
export PGPASSWORD=$MAIRIE_DEV_PASSWORD
readonly PGDB=mairie_bench_monitor_web
PSQL=(psql -h 127.0.0.1 -p "$MAIRIE_DEV_PG_PORT" -U "$MAIRIE_DEV_USER" -v ON_ERROR_STOP=1 -qAtX)

log() { printf '[bench] %s\n' "$*" >&2; }
SERVER_PID=
cleanup() {
    [ -z "$SERVER_PID" ] || kill "$SERVER_PID" 2>/dev/null || true
    "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $PGDB" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

for tool in wrk sqlite3; do
    if ! command -v "$tool" >/dev/null; then
        [ "$(id -u)" = 0 ] || { echo "bench: $tool is missing (apt-get install $tool)" >&2; exit 2; }
        log "installing $tool"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null
    fi
done
"${PSQL[@]}" -d postgres -c 'SELECT 1' >/dev/null || {
    echo "bench: the project's PostgreSQL on 127.0.0.1:$MAIRIE_DEV_PG_PORT does not answer (bash scripts/dev-services.sh)" >&2
    exit 2
}

[ -n "${BENCH_SKIP_BUILD:-}" ] || cargo build --release
rm -rf "$WORK" && mkdir -p "$WORK/deposits" "$WORK/validated"

# The jobs (1,000 on 200 sites) and the rows, as CSV for both databases.
python3 - "$WORK" "$JOBS" "$DAYS" <<'PY'
import csv, datetime, hashlib, os, random, sys
work, jobs, days = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
random.seed(7)
last = datetime.datetime(2026, 12, 5, 2, 0, tzinfo=datetime.timezone.utc)
first = last - datetime.timedelta(days=days - 1)
ids = []
with open(os.path.join(work, "jobs.yml"), "w") as f:
    for j in range(jobs):
        site, db = f"site{j // 5:03d}", f"db{j % 5}"
        jid = f"{site}-{db}"
        ids.append(jid)
        f.write(f"    - {{id: {jid}, company: ville{j % 3}, city: city{j // 250}, site: {site}, "
                f"database: {db}, engine: postgres, frequency: daily, at: \"02:00\"}}\n")
stamp = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")
with open(os.path.join(work, "occurrences.csv"), "w", newline="") as o, \
     open(os.path.join(work, "changes.csv"), "w", newline="") as c, \
     open(os.path.join(work, "jobs.csv"), "w", newline="") as jf:
    ow, cw, jw = csv.writer(o), csv.writer(c), csv.writer(jf)
    for jid in ids:
        jw.writerow([jid, stamp(first - datetime.timedelta(hours=3))])
        prev = None
        for d in range(days):
            due = first + datetime.timedelta(days=d)
            r = random.random()
            status = "OK" if r < 0.94 else "FAILED" if r < 0.96 else "MISSING" if r < 0.98 else "UNCHANGED"
            judged = due + datetime.timedelta(minutes=65)
            size = random.randint(50_000_000, 900_000_000)
            good = status in ("OK", "UNCHANGED")
            msg = {"OK": "", "UNCHANGED": "identical to the previous validated backup",
                   "FAILED": "the agent reported: pg_dump: connection refused",
                   "MISSING": "no report from the site by the deadline"}[status]
            name = f"{jid}_{due:%Y%m%d}.dump"
            ow.writerow([jid, stamp(due), stamp(due + datetime.timedelta(hours=1)), stamp(judged),
                         status, msg, "STATUS.json" if status != "MISSING" else "",
                         stamp(due + datetime.timedelta(minutes=5)) if status != "MISSING" else "",
                         name if good else "", size if good else "",
                         hashlib.sha256(name.encode()).hexdigest() if good else "",
                         stamp(due), stamp(due + datetime.timedelta(minutes=4)),
                         "%.1f" % random.uniform(30, 400), "%.1f" % random.uniform(5, 60),
                         "%.1f" % random.uniform(1, 30),
                         stamp(due - datetime.timedelta(days=d % 7)), "success", 1 if good else 0])
            if status != prev:
                cw.writerow([jid, stamp(judged), stamp(due), prev or "", status, msg])
            prev = status
PY

config() {
    cat >"$WORK/config_global.yml" <<EOF
monitor:
  deposit_dir: $WORK/deposits
  validated_dir: $WORK/validated
  history: $1
  jobs:
$(cat "$WORK/jobs.yml")
EOF
}

run_wrk() { # URL -> "median_ms p99_ms requests_per_s"
    wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s --latency "$1" >"$WORK/wrk.out"
    awk '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) }
        $1 == "Requests/sec:" { rps = $2 }
        / Non-2xx or 3xx responses:/ { bad = $NF }
        END { if (bad) { print "non-2xx responses: " bad > "/dev/stderr"; exit 1 }
              printf "%.2f %.2f %.0f\n", p50, p99, rps }' "$WORK/wrk.out"
}

measure() { # label history
    local label=$1 history=$2
    config "$history"
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$BIN" -c "$WORK/config_global.yml" -q monitor serve --no-scan --listen "127.0.0.1:$port" \
        2>"$WORK/serve.err" &
    SERVER_PID=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
    curl -sf "http://127.0.0.1:$port/api/jobs" | python3 -c "import json,sys; d=json.load(sys.stdin); assert d['count'] == $JOBS, d['count']"
    local base="http://127.0.0.1:$port"
    local floor jobs dash hist
    floor=$(run_wrk "$base/api/openapi.json")
    jobs=$(run_wrk "$base/api/jobs")
    dash=$(run_wrk "$base/")
    hist=$(run_wrk "$base/api/jobs/site100-db2/history?limit=100")
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
    printf '%s\t%s\t%s\t%s\t%s\n' "$label" "$floor" "$jobs" "$dash" "$hist" >>"$WORK/results.tsv"
}

: >"$WORK/results.tsv"

# SQLite: the schema from the tool, then the rows.
config "sqlite:$WORK/monitor.db"
"$BIN" -c "$WORK/config_global.yml" -q monitor jobs >/dev/null
"$BIN" -c "$WORK/config_global.yml" -q --format json monitor status >/dev/null
sqlite3 "$WORK/monitor.db" <<EOF
.mode csv
.import $WORK/jobs.csv monitor_jobs
.import $WORK/occurrences.csv monitor_occurrences
.import $WORK/changes.csv monitor_status_changes
UPDATE monitor_occurrences SET size_bytes = NULL WHERE size_bytes = '';
UPDATE monitor_occurrences SET size_bytes = CAST(size_bytes AS INTEGER) WHERE size_bytes IS NOT NULL;
UPDATE monitor_occurrences SET file = NULL WHERE file = '';
UPDATE monitor_occurrences SET sha256 = NULL WHERE sha256 = '';
UPDATE monitor_occurrences SET report = NULL WHERE report = '';
UPDATE monitor_occurrences SET report_generated_at = NULL WHERE report_generated_at = '';
UPDATE monitor_status_changes SET old_status = NULL WHERE old_status = '';
VACUUM;
EOF
rows=$(sqlite3 "$WORK/monitor.db" 'SELECT count(*) FROM monitor_occurrences')
sqlite_bytes=$(stat -c %s "$WORK/monitor.db")
log "SQLite history: $rows rows, $sqlite_bytes bytes"
measure sqlite "sqlite:$WORK/monitor.db"

# PostgreSQL: a database of its own on the project's server.
"${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $PGDB" -c "CREATE DATABASE $PGDB" >/dev/null
PGURL="postgres://$MAIRIE_DEV_USER@127.0.0.1:$MAIRIE_DEV_PG_PORT/$PGDB?sslmode=disable"
config "{url: \"$PGURL\", password_env: PGPASSWORD}"
"$BIN" -c "$WORK/config_global.yml" -q --format json monitor status >/dev/null
"${PSQL[@]}" -d "$PGDB" <<EOF
\copy monitor_jobs FROM '$WORK/jobs.csv' WITH (FORMAT csv)
\copy monitor_occurrences FROM '$WORK/occurrences.csv' WITH (FORMAT csv, NULL '', FORCE_NOT_NULL (message))
\copy monitor_status_changes FROM '$WORK/changes.csv' WITH (FORMAT csv, NULL '', FORCE_NOT_NULL (message))
VACUUM ANALYZE;
EOF
pg_bytes=$("${PSQL[@]}" -d "$PGDB" -c "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname LIKE 'monitor_%'")
log "PostgreSQL history: $pg_bytes bytes"
measure postgres "{url: \"$PGURL\", password_env: PGPASSWORD}"

per100k() { awk -v b="$1" -v r="$rows" 'BEGIN { printf "%.1f MiB", b / r * 100000 / 1048576 }'; }
echo
echo "monitor serve under wrk: $JOBS jobs, $rows history rows, $CONNECTIONS connections, ${DURATION} s per endpoint, 2 threads"
echo "$(nproc) cores, $(date -u +%Y-%m-%d)"
printf '%-10s %-28s %-28s %-28s %-28s\n' history "/api/openapi.json (floor)" "/api/jobs" "/ (dashboard)" "/api/jobs/{id}/history"
while IFS=$'\t' read -r label floor jobs dash hist; do
    cell() { set -- $1; printf 'p50 %s ms p99 %s ms %s/s' "$1" "$2" "$3"; }
    printf '%-10s %-28s %-28s %-28s %-28s\n' "$label" "$(cell "$floor")" "$(cell "$jobs")" "$(cell "$dash")" "$(cell "$hist")"
    set -- $floor; f50=$1
    set -- $jobs; j50=$1
    set -- $dash; d50=$1
    awk -v f="$f50" -v j="$j50" -v d="$d50" -v l="$label" \
        'BEGIN { printf "%-10s median vs the floor: /api/jobs %.1fx, / %.1fx\n", l, j / f, d / f }'
done <"$WORK/results.tsv"
echo "history size per 100,000 rows: SQLite $(per100k "$sqlite_bytes"), PostgreSQL $(per100k "$pg_bytes")"
