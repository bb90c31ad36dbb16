#!/usr/bin/env bash
# Benchmark: `mairie-dba load-csv` against the engine's own bulk loader, on 1,000,000 rows of
# metier.citoyens (bench/gen_citoyens.py, fixed seed).
#
# Cases, on each engine:
#   utf8     citoyens_utf8.csv, UTF-8 / ',' / ISO dates:  mairie-dba  vs  the reference,
#            PostgreSQL: psql \copy;  MariaDB/MySQL: mariadb LOAD DATA LOCAL INFILE
#   cp1252   citoyens_cp1252.csv, Windows-1252 / ';' / dmy / decimal comma: mairie-dba only
#            (the references cannot read it as is; compared with their time for the utf8 case)
#   reject   the utf8 file with --reject-file --max-errors 0 (batches after savepoints, each
#            row's record kept for the reject file) against the plain mairie-dba load of the
#            same run: the cost of the reject path when nothing is rejected
#
# Each tool loads into its own fresh database (PostgreSQL: bench_mairie_a for mairie-dba,
# bench_mairie_b for psql; MariaDB: bench_mairie_my_a, bench_mairie_my_b), schema applied by
# `mairie-dba schema apply`; the table is truncated before each load, the order of the two
# tools alternates from run to run, and every load is checked to have stored all the rows (on
# MariaDB also the same values as the reference's load, by checksum). Prints the medians,
# their ratio and mairie-dba's peak RSS.
#
# MariaDB's own alternative, batched multi-row INSERTs vs LOAD DATA: bench/mysql_insert_vs_load.sh.
#
#   bench/load_csv.sh                  # RUNS=5 ROWS=1000000
#   RUNS=3 ROWS=200000 bench/load_csv.sh
#
# Environment:
#   RUNS (5), ROWS (1000000), BENCH_WORK (/tmp/mairie-dba-bench: the CSVs, kept between runs,
#   and the results), BENCH_ENGINES ("postgres mysql"), BENCH_SKIP_BUILD=1 (use the binary as
#   is), MAIRIE_DBA_BIN (target/release/mairie-dba), MAIRIE_PG_PASSWORD (mairie),
#   MAIRIE_MYSQL_PASSWORD (mairie).
# Needs the local servers of scripts/dev-services.sh. The bench databases are dropped on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The project's own servers (scripts/dev-services.sh): ports and throwaway passwords.
. scripts/dev-servers.env
readonly ROOT=$PWD

readonly RUNS=${RUNS:-5}
readonly ROWS=${ROWS:-1000000}
readonly WORK=${BENCH_WORK:-/tmp/mairie-dba-bench}
readonly ENGINES=${BENCH_ENGINES:-postgres mysql}
readonly BIN=${MAIRIE_DBA_BIN:-$ROOT/target/release/mairie-dba}
readonly TABLE=metier.citoyens
readonly CSV_UTF8=$WORK/citoyens_utf8.csv
readonly CSV_CP1252=$WORK/citoyens_cp1252.csv

export MAIRIE_PG_PASSWORD=${MAIRIE_PG_PASSWORD:-$MAIRIE_DEV_PASSWORD}
# psql (run through /usr/bin/time, so not from a shell function) reads it from its environment,
# never from argv.
export PGPASSWORD=$MAIRIE_PG_PASSWORD
readonly PG_HOST=127.0.0.1 PG_PORT=$MAIRIE_DEV_PG_PORT PG_USER=mairie
readonly PG_DB_MAIRIE=bench_mairie_a PG_DB_PSQL=bench_mairie_b

export MAIRIE_MYSQL_PASSWORD=${MAIRIE_MYSQL_PASSWORD:-$MAIRIE_DEV_PASSWORD}
# Likewise for the mariadb client.
export MYSQL_PWD=$MAIRIE_MYSQL_PASSWORD
readonly MY_HOST=127.0.0.1 MY_PORT=$MAIRIE_DEV_MY_PORT MY_USER=mairie
readonly MY_DB_MAIRIE=bench_mairie_my_a MY_DB_CLIENT=bench_mairie_my_b
# metier.citoyens on MySQL: a table of the target's database (sql/mysql/V001__referentiel.sql).
readonly MY_TABLE=metier_citoyens

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
    local engine
    for engine in $ENGINES; do
        case $engine in
            postgres) command -v psql >/dev/null || die "psql is missing: run scripts/dev-services.sh" ;;
            mysql | mariadb) command -v mariadb >/dev/null || die "the mariadb client is missing: run scripts/dev-services.sh" ;;
            *) die "unknown engine '$engine' in BENCH_ENGINES (postgres, mysql)" ;;
        esac
    done
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
    printf 'mairie-dba  %s (%s, sha256 %s…, built %s)\n' "$("$BIN" --version 2>/dev/null || echo '?')" \
        "$BIN" "$(sha256sum "$BIN" | cut -c1-16)" "$(date -u -r "$BIN" '+%Y-%m-%d %H:%M UTC')"
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

# The reject-file case loads the same clean file: its reject file must hold the header alone.
expect_no_rejects() {
    [ "$(wc -l <"$TMP/rejects.csv")" = 1 ] || die "the reject file of a clean file is not empty"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL

# (client_min_messages: no NOTICE per cascaded TRUNCATE on stderr.)
pg_psql() {
    PGOPTIONS='-c client_min_messages=warning' psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" "$@"
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
        local order=(mairie reject psql)
        ((run % 3 == 2)) && order=(psql mairie reject)
        ((run % 3 == 0)) && order=(reject psql mairie)
        local tool
        for tool in "${order[@]}"; do
            pg_truncate "$PG_DB_MAIRIE"
            pg_checkpoint
            if [ "$tool" = mairie ]; then
                timed postgres utf8 mairie-dba "$TMP/load.log" \
                    "$BIN" -c "$cfg_a" --no-progress load-csv --table "$TABLE" "$CSV_UTF8"
                pg_expect_rows "$PG_DB_MAIRIE"
            elif [ "$tool" = reject ]; then
                timed postgres utf8 mairie-dba-reject "$TMP/load.log" \
                    "$BIN" -c "$cfg_a" --no-progress load-csv --table "$TABLE" \
                    --reject-file "$TMP/rejects.csv" --max-errors 0 "$CSV_UTF8"
                pg_expect_rows "$PG_DB_MAIRIE"
                expect_no_rejects
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
# MySQL / MariaDB

# The client with no option file (as psql -X), over TCP; the password comes from MYSQL_PWD in
# its environment, never from argv.
my_sql() {
    mariadb --no-defaults --batch --skip-column-names -h "$MY_HOST" -P "$MY_PORT" -u "$MY_USER" "$@"
}

my_drop_databases() {
    my_sql -e "DROP DATABASE IF EXISTS $MY_DB_MAIRIE; DROP DATABASE IF EXISTS $MY_DB_CLIENT" 2>/dev/null
}

# my_config DB: the directory of a config whose only target is DB on the local server.
my_config() {
    local dir=$TMP/config_$1
    mkdir -p "$dir"
    cat >"$dir/config_global.yml" <<EOF
migrations_dir: $ROOT/sql
targets:
  mysql:
    engine: mysql
    config: config_mysql.yml
EOF
    cat >"$dir/config_mysql.yml" <<EOF
connection:
  host: $MY_HOST
  port: $MY_PORT
  database: $1
  user: $MY_USER
  password_env: MAIRIE_MYSQL_PASSWORD
EOF
    printf '%s\n' "$dir/config_global.yml"
}

# TRUNCATE (DELETE would take minutes) is refused on a table that a foreign key references
# unless the checks are off, in the same session; the referencing tables are empty here.
my_truncate() {
    my_sql -D "$1" -e "SET FOREIGN_KEY_CHECKS = 0; TRUNCATE TABLE $MY_TABLE; SET FOREIGN_KEY_CHECKS = 1"
}

# InnoDB's counterpart of pg_checkpoint: write the table's dirty pages in both databases to
# disk, so that a load does not pay for the previous one's (FOR EXPORT flushes the table).
my_flush() {
    local db
    for db in "$MY_DB_MAIRIE" "$MY_DB_CLIENT"; do
        my_sql -D "$db" -e "FLUSH TABLES $MY_TABLE FOR EXPORT; UNLOCK TABLES"
    done
}

my_expect_rows() {
    local n
    n=$(my_sql -D "$1" -e "SELECT COUNT(*) FROM $MY_TABLE")
    [ "$n" = "$ROWS" ] || die "$1: $MY_TABLE holds $n rows after the load, not $ROWS"
}

# my_digest DB: the counts of non-NULL values and a checksum of every stored value but
# date_inscription (the load time), byte for byte; equal digests = the same rows stored.
my_digest() {
    my_sql -D "$1" -e "SELECT COUNT(*), COUNT(email), COUNT(telephone), COUNT(quotient_familial),
        SUM(CRC32(CONCAT_WS(0x1f, id, CAST(civilite AS BINARY), CAST(nom AS BINARY),
            CAST(prenom AS BINARY), date_naissance, IFNULL(CAST(email AS BINARY), 0x00),
            IFNULL(CAST(telephone AS BINARY), 0x00), CAST(adresse AS BINARY),
            CAST(code_postal AS BINARY), arrondissement, IFNULL(quotient_familial, 0x00))))
        FROM $MY_TABLE" | tr '\t' ' '
}

# my_same_rows WHAT: both databases hold the same values (the tool's load is checked against
# the reference's), and the same as in the first run.
MY_DIGEST=
my_same_rows() {
    local a b
    a=$(my_digest "$MY_DB_MAIRIE")
    b=$(my_digest "$MY_DB_CLIENT")
    [ "$a" = "$b" ] || die "$1: the two loads stored different values: mairie-dba [$a], mariadb [$b]"
    [ -z "$MY_DIGEST" ] || [ "$a" = "$MY_DIGEST" ] || die "$1: the values differ from the first run's"
    MY_DIGEST=$a
}

# The reference: the client's own LOAD DATA LOCAL, told how to read this CSV, and told that an
# empty field of a nullable column is NULL (as load-csv reads an unquoted empty field). Its
# warnings (bad values stored anyway) are printed to the log, which must then not hold any.
my_reference_load() {
    local cols col list="" set=""
    local nullable=" email telephone quotient_familial "
    IFS=, read -r -a cols <<<"$1"
    for col in "${cols[@]}"; do
        if [[ "$nullable" == *" $col "* ]]; then
            list+="${list:+, }@$col"
            set+="${set:+, }$col = NULLIF(@$col, '')"
        else
            list+="${list:+, }$col"
        fi
    done
    printf '%s' "LOAD DATA LOCAL INFILE '$CSV_UTF8' INTO TABLE $MY_TABLE CHARACTER SET utf8mb4 \
FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' LINES TERMINATED BY '\\n' \
IGNORE 1 LINES ($list)${set:+ SET $set}"
}

bench_mysql() {
    log "MariaDB: fresh databases $MY_DB_MAIRIE, $MY_DB_CLIENT"
    my_sql -e 'SELECT 1' >/dev/null ||
        die "cannot connect to MariaDB on $MY_HOST:$MY_PORT as $MY_USER (scripts/dev-services.sh)"
    [ "$(my_sql -e 'SELECT @@local_infile')" = 1 ] ||
        die "local_infile is OFF on the server: SET GLOBAL local_infile = 1"
    CLEANUPS+=(my_drop_databases)
    my_drop_databases
    local cfg_a db
    for db in "$MY_DB_MAIRIE" "$MY_DB_CLIENT"; do
        my_sql -e "CREATE DATABASE $db CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
    done
    cfg_a=$(my_config "$MY_DB_MAIRIE")
    "$BIN" -c "$cfg_a" --no-progress schema apply >"$TMP/schema_my_a.log" 2>&1 ||
        { cat "$TMP/schema_my_a.log" >&2; die "schema apply on $MY_DB_MAIRIE failed"; }
    "$BIN" -c "$(my_config "$MY_DB_CLIENT")" --no-progress schema apply >"$TMP/schema_my_b.log" 2>&1 ||
        { cat "$TMP/schema_my_b.log" >&2; die "schema apply on $MY_DB_CLIENT failed"; }
    [ "$(my_sql -D "$MY_DB_MAIRIE" -e 'SELECT COUNT(*) FROM referentiel_arrondissements')" -ge 16 ] ||
        die "referentiel_arrondissements is not seeded by the migrations: the loads would fail"

    local load run
    load=$(my_reference_load "$(head -n 1 "$CSV_UTF8")")
    {
        printf 'mariadb     %s, innodb_buffer_pool_size %s MiB, innodb_flush_log_at_trx_commit %s, log_bin %s\n' \
            "$(my_sql -e 'SELECT VERSION()')" \
            "$(($(my_sql -e 'SELECT @@innodb_buffer_pool_size') / 1048576))" \
            "$(my_sql -e 'SELECT @@innodb_flush_log_at_trx_commit')" "$(my_sql -e 'SELECT @@log_bin')"
        printf 'client      %s\n' "$(mariadb --version)"
    } >>"$TMP/machine"

    for ((run = 1; run <= RUNS; run++)); do
        log "MariaDB run $run/$RUNS"
        my_truncate "$MY_DB_MAIRIE"
        my_truncate "$MY_DB_CLIENT"
        local order=(mairie reject client)
        ((run % 3 == 2)) && order=(client mairie reject)
        ((run % 3 == 0)) && order=(reject client mairie)
        local tool
        for tool in "${order[@]}"; do
            my_flush
            if [ "$tool" = mairie ] || [ "$tool" = reject ]; then
                my_truncate "$MY_DB_MAIRIE"
                my_flush
            fi
            if [ "$tool" = mairie ]; then
                timed mysql utf8 mairie-dba "$TMP/load.log" \
                    "$BIN" -c "$cfg_a" --no-progress load-csv --table "$TABLE" "$CSV_UTF8"
                my_expect_rows "$MY_DB_MAIRIE"
            elif [ "$tool" = reject ]; then
                timed mysql utf8 mairie-dba-reject "$TMP/load.log" \
                    "$BIN" -c "$cfg_a" --no-progress load-csv --table "$TABLE" \
                    --reject-file "$TMP/rejects.csv" --max-errors 0 "$CSV_UTF8"
                my_expect_rows "$MY_DB_MAIRIE"
                expect_no_rejects
            else
                timed mysql utf8 mariadb "$TMP/load.log" \
                    mariadb --no-defaults --local-infile=1 --show-warnings \
                    -h "$MY_HOST" -P "$MY_PORT" -u "$MY_USER" "$MY_DB_CLIENT" -e "$load"
                if grep -q . "$TMP/load.log"; then
                    head -n 20 "$TMP/load.log" >&2
                    die "the reference LOAD DATA raised warnings: its rows are not the file's"
                fi
                my_expect_rows "$MY_DB_CLIENT"
            fi
        done
        my_same_rows "utf8, run $run"
        my_truncate "$MY_DB_MAIRIE"
        my_flush
        timed mysql cp1252 mairie-dba "$TMP/load.log" \
            "$BIN" -c "$cfg_a" --no-progress load-csv --table "$TABLE" \
            --delimiter ';' --encoding windows-1252 --date-order dmy --decimal-comma "$CSV_CP1252"
        my_expect_rows "$MY_DB_MAIRIE"
        # The cp1252 file holds the same rows as the utf8 one: same values as the reference's.
        my_same_rows "cp1252, run $run"
    done
    log "MariaDB: every load stored the same values ($MY_DIGEST)"
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

REFERENCE = {"postgres": ("psql", "psql \\copy"), "mysql": ("mariadb", "LOAD DATA LOCAL")}
print(f"{'engine':<9} {'case':<8} {'mairie-dba s':>12} {'reference':<16} {'reference s':>12} {'ratio':>6} "
      f"{'mairie-dba RSS MB':>18}  runs")
for engine in dict.fromkeys(e for e, _, _ in secs):
    reference, label = REFERENCE[engine]
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
        print(f"{engine:<9} {case:<8} {m:>12.2f} {label:<16} {(f'{r:.2f}' if r else '-'):>12} {ratio:>6} "
              f"{max(rss[engine, case, 'mairie-dba']) / 1024:>18.1f}  {len(mine)}{note}")
        rej = secs.get((engine, case, "mairie-dba-reject"))
        if rej:
            j = statistics.median(rej)
            print(f"{engine:<9} {'reject':<8} {j:>12.2f} {'mairie-dba plain':<16} {m:>12.2f} {j / m:>6.2f} "
                  f"{max(rss[engine, case, 'mairie-dba-reject']) / 1024:>18.1f}  {len(rej)}"
                  f"  (--reject-file --max-errors 0, nothing rejected; vs {label}: {j / r:.2f})")
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
    # Other work on the machine shows here: the loads themselves keep about 2 busy.
    printf 'load avg    %s (at the end)\n' "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$TMP/machine"
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
