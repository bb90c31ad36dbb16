#!/usr/bin/env bash
# Benchmark: `mairie-dba load-csv` against the engine's own bulk loader, on 1,000,000 rows of
# metier.citoyens (bench/gen_citoyens.py, fixed seed).
#
# Cases (PostgreSQL):
#   utf8     citoyens_utf8.csv, UTF-8 / ',' / ISO dates:      mairie-dba  vs  psql \copy
#   cp1252   citoyens_cp1252.csv, Windows-1252 / ';' / dmy / decimal comma: mairie-dba only
#            (psql cannot read it as is; compared with the psql time of the utf8 case)
#
# Each tool loads into its own fresh database (bench_mairie_a for mairie-dba, bench_mairie_b
# for psql), schema applied by `mairie-dba schema apply`; the table is truncated before each
# load, the order of the two tools alternates from run to run, and every load is checked to
# have stored all the rows. Prints the medians, their ratio and mairie-dba's peak RSS.
#
#   bench/load_csv.sh                  # RUNS=5 ROWS=1000000
#   RUNS=3 ROWS=200000 bench/load_csv.sh
#
# Environment:
#   RUNS (5), ROWS (1000000), BENCH_WORK (/tmp/mairie-dba-bench: the CSVs, kept between runs,
#   and the results), BENCH_ENGINES ("postgres"), BENCH_SKIP_BUILD=1 (use the binary as is),
#   MAIRIE_DBA_BIN (target/release/mairie-dba), MAIRIE_PG_PASSWORD (mairie).
# Needs the local servers of scripts/dev-services.sh. The bench databases are dropped on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly ROOT=$PWD

readonly RUNS=${RUNS:-5}
readonly ROWS=${ROWS:-1000000}
readonly WORK=${BENCH_WORK:-/tmp/mairie-dba-bench}
readonly ENGINES=${BENCH_ENGINES:-postgres}
readonly BIN=${MAIRIE_DBA_BIN:-$ROOT/target/release/mairie-dba}
readonly TABLE=metier.citoyens
readonly CSV_UTF8=$WORK/citoyens_utf8.csv
readonly CSV_CP1252=$WORK/citoyens_cp1252.csv

export MAIRIE_PG_PASSWORD=${MAIRIE_PG_PASSWORD:-mairie}
# psql (run through /usr/bin/time, so not from a shell function) reads it from its environment,
# never from argv.
export PGPASSWORD=$MAIRIE_PG_PASSWORD
readonly PG_HOST=127.0.0.1 PG_PORT=5432 PG_USER=mairie
readonly PG_DB_MAIRIE=bench_mairie_a PG_DB_PSQL=bench_mairie_b

log() { printf '[bench] %s\n' "$*" >&2; }
die() {
    printf '[bench] ERROR: %s\n' "$*" >&2
    exit 1
}

TMP=$(mktemp -d /tmp/mairie-dba-bench-run.XXXXXX)
readonly TMP
readonly RESULTS=$TMP/results.tsv
CLEANUPS=()
cleanup() {
    local c
    for c in "${CLEANUPS[@]}"; do
        $c || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# Prerequisites, binary, data

prerequisites() {
    [[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not '$RUNS'"
    [[ "$ROWS" =~ ^[1-9][0-9]*$ ]] || die "ROWS must be a positive integer, not '$ROWS'"
    if [ ! -x /usr/bin/time ]; then
        [ "$(id -u)" -eq 0 ] || die "/usr/bin/time is missing: apt-get install time"
        log "installing GNU time (peak RSS)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q time >/dev/null ||
            { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q time >/dev/null; }
    fi
    command -v python3 >/dev/null || die "python3 is needed to generate the data"
    command -v psql >/dev/null || die "psql is missing: run scripts/dev-services.sh"
}

build() {
    if [ -n "${BENCH_SKIP_BUILD:-}" ]; then
        log "BENCH_SKIP_BUILD set: using $BIN as it is"
    else
        log "cargo build --release"
        cargo build --release --quiet
    fi
    [ -x "$BIN" ] || die "no binary at $BIN"
}

# The CSVs take seconds to write and are reused while the generator and ROWS are unchanged.
generate() {
    local stamp want
    stamp=$WORK/citoyens.stamp
    want="rows=$ROWS generator=$(sha256sum "$ROOT/bench/gen_citoyens.py" | cut -c1-16)"
    if [ -f "$CSV_UTF8" ] && [ -f "$CSV_CP1252" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        log "reusing the CSVs in $WORK ($want)"
        return
    fi
    python3 "$ROOT/bench/gen_citoyens.py" --rows "$ROWS" --out "$WORK"
    printf '%s\n' "$want" >"$stamp"
}

machine() {
    local cpu ram
    cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
    ram=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
    printf 'date        %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    printf 'machine     %s CPU(s), %s, RAM %s, kernel %s\n' "$(nproc)" "${cpu:-unknown CPU}" "$ram" "$(uname -r)"
    printf 'load avg    %s (at start)\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf 'mairie-dba  %s\n' "$("$BIN" --version 2>/dev/null || echo '?')"
    printf 'data        %s rows; %s (%s MB), %s (%s MB)\n' "$ROWS" \
        "$(basename "$CSV_UTF8")" "$(($(stat -c %s "$CSV_UTF8") / 1000000))" \
        "$(basename "$CSV_CP1252")" "$(($(stat -c %s "$CSV_CP1252") / 1000000))"
    printf 'runs        %s\n' "$RUNS"
}

# ---------------------------------------------------------------------------------------------
# Measurement

# timed ENGINE CASE TOOL LOGFILE CMD...: runs CMD, appends "engine case tool seconds rss_kb".
# Wall time from the monotonic clock (nanoseconds); peak RSS of CMD (not of the server) from
# GNU time. CMD's output goes to LOGFILE, shown if it fails.
timed() {
    local engine=$1 case=$2 tool=$3 logfile=$4
    shift 4
    local t0 t1 rss status=0
    t0=$(date +%s%N)
    /usr/bin/time -f '%M' -o "$TMP/rss" "$@" >"$logfile" 2>&1 || status=$?
    t1=$(date +%s%N)
    if [ "$status" -ne 0 ]; then
        cat "$logfile" >&2
        die "$engine/$case/$tool failed (exit $status): $*"
    fi
    rss=$(tail -n 1 "$TMP/rss")
    printf '%s\t%s\t%s\t%s\t%s\n' "$engine" "$case" "$tool" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')" "$rss" >>"$RESULTS"
    log "  $engine $case $tool: $(tail -n 1 "$RESULTS" | cut -f4)s, peak RSS $((rss / 1024)) MB"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL

pg_psql() {
    psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" "$@"
}

pg_drop_databases() {
    pg_psql -d postgres -c "DROP DATABASE IF EXISTS $PG_DB_MAIRIE WITH (FORCE)" \
        -c "DROP DATABASE IF EXISTS $PG_DB_PSQL WITH (FORCE)" 2>/dev/null
}

# pg_config DB: the directory of a config whose only target is DB on the local server.
pg_config() {
    local dir=$TMP/config_$1
    mkdir -p "$dir"
    cat >"$dir/config_global.yml" <<EOF
migrations_dir: $ROOT/sql
targets:
  postgres:
    engine: postgres
    config: config_postgres.yml
EOF
    cat >"$dir/config_postgres.yml" <<EOF
connection:
  host: $PG_HOST
  port: $PG_PORT
  database: $1
  user: $PG_USER
  password_env: MAIRIE_PG_PASSWORD
EOF
    printf '%s\n' "$dir/config_global.yml"
}

# A checkpoint before each load, so that one load does not pay for the previous one's dirty
# pages. Needs a superuser (or pg_checkpoint): done only when run as root, else skipped.
pg_checkpoint() {
    if [ "$(id -u)" -eq 0 ]; then
        (cd / && runuser -u postgres -- psql -X -q -p "$PG_PORT" -d postgres -c CHECKPOINT) >/dev/null 2>&1 || true
    fi
}

pg_truncate() { pg_psql -d "$1" -c "TRUNCATE $TABLE RESTART IDENTITY CASCADE"; }

pg_expect_rows() {
    local n
    n=$(pg_psql -d "$1" -c "SELECT count(*) FROM $TABLE")
    [ "$n" = "$ROWS" ] || die "$1: $TABLE holds $n rows after the load, not $ROWS"
}

bench_postgres() {
    log "PostgreSQL: fresh databases $PG_DB_MAIRIE, $PG_DB_PSQL"
    pg_psql -d postgres -c 'SELECT 1' >/dev/null ||
        die "cannot connect to PostgreSQL on $PG_HOST:$PG_PORT as $PG_USER (scripts/dev-services.sh)"
    CLEANUPS+=(pg_drop_databases)
    pg_drop_databases
    local cfg_a cfg_b db
    for db in "$PG_DB_MAIRIE" "$PG_DB_PSQL"; do
        pg_psql -d postgres -c "CREATE DATABASE $db"
    done
    cfg_a=$(pg_config "$PG_DB_MAIRIE")
    cfg_b=$(pg_config "$PG_DB_PSQL")
    "$BIN" -c "$cfg_a" --no-progress schema apply >"$TMP/schema_a.log" 2>&1 ||
        { cat "$TMP/schema_a.log" >&2; die "schema apply on $PG_DB_MAIRIE failed"; }
    "$BIN" -c "$cfg_b" --no-progress schema apply >"$TMP/schema_b.log" 2>&1 ||
        { cat "$TMP/schema_b.log" >&2; die "schema apply on $PG_DB_PSQL failed"; }
    # The foreign key target of citoyens.arrondissement must be there (a migration seeds it).
    [ "$(pg_psql -d "$PG_DB_MAIRIE" -c 'SELECT count(*) FROM referentiel.arrondissements')" -ge 16 ] ||
        die "referentiel.arrondissements is not seeded by the migrations: the loads would fail"

    local cols copy run
    cols=$(head -n 1 "$CSV_UTF8")
    copy="\\copy $TABLE($cols) FROM '$CSV_UTF8' WITH (FORMAT csv, HEADER true)"
    printf 'postgres    %s\n' "$(pg_psql -d postgres -c 'SELECT version()')" >>"$TMP/machine"

    for ((run = 1; run <= RUNS; run++)); do
        log "PostgreSQL run $run/$RUNS"
        pg_truncate "$PG_DB_MAIRIE"
        pg_truncate "$PG_DB_PSQL"
        local order=(mairie psql)
        ((run % 2 == 0)) && order=(psql mairie)
        local tool
        for tool in "${order[@]}"; do
            pg_checkpoint
            if [ "$tool" = mairie ]; then
                timed postgres utf8 mairie-dba "$TMP/load.log" \
                    "$BIN" -c "$cfg_a" --no-progress load-csv --table "$TABLE" "$CSV_UTF8"
                pg_expect_rows "$PG_DB_MAIRIE"
            else
                timed postgres utf8 psql "$TMP/load.log" \
                    psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" \
                    -d "$PG_DB_PSQL" -c "$copy"
                pg_expect_rows "$PG_DB_PSQL"
            fi
        done
        pg_truncate "$PG_DB_MAIRIE"
        pg_checkpoint
        timed postgres cp1252 mairie-dba "$TMP/load.log" \
            "$BIN" -c "$cfg_a" --no-progress load-csv --table "$TABLE" \
            --delimiter ';' --encoding windows-1252 --date-order dmy --decimal-comma "$CSV_CP1252"
        pg_expect_rows "$PG_DB_MAIRIE"
    done
}

# ---------------------------------------------------------------------------------------------
# MariaDB: to add, write bench_mysql() on the model of bench_postgres(): fresh databases
# created as mairie, `schema apply` through a config_mysql.yml, the reference being
#   LOAD DATA LOCAL INFILE '…' INTO TABLE … CHARACTER SET utf8mb4 FIELDS TERMINATED BY ','
#   OPTIONALLY ENCLOSED BY '"' IGNORE 1 LINES (cols) SET email = NULLIF(email, '') …
# run by the mariadb client (MYSQL_PWD in its environment, --local-infile=1), and rows
# recorded with `timed mysql <case> <tool> …`; then add "mysql" to BENCH_ENGINES.

bench_mysql() {
    die "the MariaDB benchmark is not written yet (see the comment above bench_mysql)"
}

# ---------------------------------------------------------------------------------------------
# Report

report() {
    python3 - "$RESULTS" <<'PY'
import statistics, sys
from collections import defaultdict

rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
secs, rss = defaultdict(list), defaultdict(list)
for engine, case, tool, s, kb in rows:
    secs[engine, case, tool].append(float(s))
    rss[engine, case, tool].append(int(kb))

print(f"{'engine':<9} {'case':<8} {'mairie-dba s':>12} {'reference s':>12} {'ratio':>6} {'mairie-dba RSS MB':>18}  runs")
for engine in dict.fromkeys(e for e, _, _ in secs):
    reference = {"postgres": "psql"}.get(engine)
    ref_utf8 = secs.get((engine, "utf8", reference))
    for case in dict.fromkeys(c for e, c, _ in secs if e == engine):
        mine = secs.get((engine, case, "mairie-dba"))
        if not mine:
            continue
        # The cp1252 file has no reference load: compare with the reference's utf8 time.
        ref = secs.get((engine, case, reference)) or ref_utf8
        m = statistics.median(mine)
        r = statistics.median(ref) if ref else None
        ratio = f"{m / r:.2f}" if r else "-"
        note = "" if secs.get((engine, case, reference)) else f"  (vs {reference} utf8)"
        print(f"{engine:<9} {case:<8} {m:>12.2f} {(f'{r:.2f}' if r else '-'):>12} {ratio:>6} "
              f"{max(rss[engine, case, 'mairie-dba']) / 1024:>18.1f}  {len(mine)}{note}")
PY
}

main() {
    prerequisites
    build
    generate
    : >"$RESULTS"
    machine >"$TMP/machine"
    local engine
    for engine in $ENGINES; do
        case $engine in
            postgres) bench_postgres ;;
            mysql | mariadb) bench_mysql ;;
            *) die "unknown engine '$engine' in BENCH_ENGINES (postgres, mysql)" ;;
        esac
    done
    local out
    out=$WORK/results_$(date -u +%Y%m%d_%H%M%S)
    {
        echo "== mairie-dba load-csv benchmark =="
        cat "$TMP/machine"
        echo
        report
        echo
        echo "medians of $RUNS runs; ratio = mairie-dba / reference (below 1: mairie-dba is faster);"
        echo "RSS = peak resident memory of the mairie-dba process (the largest over the runs)."
    } | tee "$out.txt"
    cp "$RESULTS" "$out.tsv"
    log "results kept in $out.txt and $out.tsv"
}

main "$@"
