#!/usr/bin/env bash
# Benchmark, MariaDB/MySQL server side only: loading metier_citoyens by batched multi-row
# INSERTs against LOAD DATA LOCAL INFILE, both sent by the mariadb client (no mairie-dba).
# It measures the choice load-csv made on MySQL (LOAD DATA LOCAL fed from its own parser)
# against the usual alternative, a dump-style SQL script.
#
#   insert   citoyens_inserts.sql: `INSERT INTO metier_citoyens (…) VALUES (…),(…)…;` of BATCH
#            rows each, all in one transaction, written once from citoyens_utf8.csv;
#            timed: mariadb DB < citoyens_inserts.sql
#   load     mariadb -e "LOAD DATA LOCAL INFILE 'citoyens_utf8.csv' …" (the reference of
#            bench/load_csv.sh), same rows, same values
#
# Each one loads into its own fresh database (bench_mairie_my_ins, bench_mairie_my_ld), schema
# from sql/mysql/ applied with the client; the table is truncated before each load, the order
# alternates from run to run, every load is checked to have stored all the rows, and the two
# databases to hold the same values (checksum). Prints the medians and their ratio.
#
#   bench/mysql_insert_vs_load.sh            # RUNS=3 ROWS=1000000 BATCH=1000
#
# Environment: RUNS (3), ROWS (1000000), BATCH (1000), BENCH_WORK (/tmp/mairie-dba-bench: the
# CSV of bench/gen_citoyens.py, shared with bench/load_csv.sh, the SQL script and the results),
# MAIRIE_MYSQL_PASSWORD (mairie). Needs the local MariaDB of scripts/dev-services.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The project's own servers (scripts/dev-services.sh): ports and throwaway passwords.
. scripts/dev-servers.env
readonly ROOT=$PWD

readonly RUNS=${RUNS:-3}
readonly ROWS=${ROWS:-1000000}
readonly BATCH=${BATCH:-1000}
readonly WORK=${BENCH_WORK:-/tmp/mairie-dba-bench}
readonly CSV=$WORK/citoyens_utf8.csv
readonly SQL=$WORK/citoyens_inserts.sql

# The client reads the password from its environment, never from argv.
export MYSQL_PWD=${MAIRIE_MYSQL_PASSWORD:-$MAIRIE_DEV_PASSWORD}
readonly MY_HOST=127.0.0.1 MY_PORT=$MAIRIE_DEV_MY_PORT MY_USER=mairie
readonly DB_INS=bench_mairie_my_ins DB_LOAD=bench_mairie_my_ld
readonly TABLE=metier_citoyens

log() { printf '[bench] %s\n' "$*" >&2; }
die() {
    printf '[bench] ERROR: %s\n' "$*" >&2
    exit 1
}

TMP=$(mktemp -d /tmp/mairie-dba-bench-ins.XXXXXX)
readonly TMP
readonly RESULTS=$TMP/results.tsv
my_sql() {
    mariadb --no-defaults --batch --skip-column-names -h "$MY_HOST" -P "$MY_PORT" -u "$MY_USER" "$@"
}
cleanup() {
    my_sql -e "DROP DATABASE IF EXISTS $DB_INS; DROP DATABASE IF EXISTS $DB_LOAD" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not '$RUNS'"
[[ "$ROWS" =~ ^[1-9][0-9]*$ ]] || die "ROWS must be a positive integer, not '$ROWS'"
[[ "$BATCH" =~ ^[1-9][0-9]*$ ]] || die "BATCH must be a positive integer, not '$BATCH'"
command -v mariadb >/dev/null || die "the mariadb client is missing: run scripts/dev-services.sh"
command -v python3 >/dev/null || die "python3 is needed to generate the data"

# ---------------------------------------------------------------------------------------------
# Data: the CSV (as bench/load_csv.sh makes it) and the SQL script, both kept between runs.

stamp=$WORK/citoyens.stamp
want="rows=$ROWS generator=$(sha256sum "$ROOT/bench/gen_citoyens.py" | cut -c1-16)"
if [ ! -f "$CSV" ] || [ ! -f "$WORK/citoyens_cp1252.csv" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    rm -f "$SQL"
    python3 "$ROOT/bench/gen_citoyens.py" --rows "$ROWS" --out "$WORK"
    printf '%s\n' "$want" >"$stamp"
fi
sql_want="$want batch=$BATCH writer=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)"
if [ ! -f "$SQL" ] || [ "$(cat "$SQL.stamp" 2>/dev/null)" != "$sql_want" ]; then
    log "writing $SQL ($BATCH rows per INSERT)"
    python3 - "$CSV" "$SQL.partial" "$BATCH" <<'PY'
import csv, re, sys

src, dst, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
NULLABLE = {"email", "telephone", "quotient_familial"}    # empty field -> NULL, as load-csv
INTEGER = {"id", "arrondissement"}
DECIMAL = {"quotient_familial"}
is_int, is_dec = re.compile(r"-?[0-9]+\Z").match, re.compile(r"-?[0-9]+(\.[0-9]+)?\Z").match
# A MariaDB string literal under the default sql_mode (backslash escapes on).
ESC = str.maketrans({"\\": "\\\\", "'": "\\'", "\0": "\\0", "\n": "\\n", "\r": "\\r", "\x1a": "\\Z"})

with open(src, newline="", encoding="utf-8") as f, open(dst, "w", encoding="utf-8", newline="\n") as out:
    rows = csv.reader(f)
    header = next(rows)
    lits = []
    for name in header:
        if name in INTEGER:
            ok = is_int
        elif name in DECIMAL:
            ok = is_dec
        else:
            ok = None
        lits.append((name in NULLABLE, ok))

    def literal(v, nullable, ok):
        if v == "" and nullable:
            return "NULL"
        if ok is not None and ok(v):
            return v
        return "'" + v.translate(ESC) + "'"

    head = f"INSERT INTO metier_citoyens ({', '.join(header)}) VALUES\n"
    out.write("SET NAMES utf8mb4;\nSET autocommit = 0;\nSTART TRANSACTION;\n")
    buf = []
    for row in rows:
        buf.append("(" + ",".join(literal(v, n, ok) for v, (n, ok) in zip(row, lits)) + ")")
        if len(buf) == batch:
            out.write(head + ",\n".join(buf) + ";\n")
            buf = []
    if buf:
        out.write(head + ",\n".join(buf) + ";\n")
    out.write("COMMIT;\n")
PY
    mv "$SQL.partial" "$SQL"
    printf '%s\n' "$sql_want" >"$SQL.stamp"
fi

# ---------------------------------------------------------------------------------------------
# Databases

my_sql -e 'SELECT 1' >/dev/null ||
    die "cannot connect to MariaDB on $MY_HOST:$MY_PORT as $MY_USER (scripts/dev-services.sh)"
[ "$(my_sql -e 'SELECT @@local_infile')" = 1 ] || die "local_infile is OFF on the server: SET GLOBAL local_infile = 1"
log "fresh databases $DB_INS, $DB_LOAD"
for db in "$DB_INS" "$DB_LOAD"; do
    my_sql -e "DROP DATABASE IF EXISTS $db; CREATE DATABASE $db CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
    for f in "$ROOT"/sql/mysql/V*.sql; do
        my_sql -D "$db" <"$f" || die "$db: $(basename "$f") failed"
    done
done
max_packet=$(my_sql -e 'SELECT @@max_allowed_packet')
# Longest statement of the script: one INSERT, well under max_allowed_packet at BATCH=1000.
longest=$(awk 'BEGIN { RS = ";\n" } { if (length($0) > m) m = length($0) } END { print m + 0 }' "$SQL")
((longest < max_packet)) || die "an INSERT of $SQL ($longest bytes) exceeds max_allowed_packet ($max_packet)"

cols=$(head -n 1 "$CSV")
list="" set=""
IFS=, read -r -a names <<<"$cols"
for col in "${names[@]}"; do
    case $col in
        email | telephone | quotient_familial)
            list+="${list:+, }@$col"
            set+="${set:+, }$col = NULLIF(@$col, '')"
            ;;
        *) list+="${list:+, }$col" ;;
    esac
done
load="LOAD DATA LOCAL INFILE '$CSV' INTO TABLE $TABLE CHARACTER SET utf8mb4 \
FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' LINES TERMINATED BY '\\n' \
IGNORE 1 LINES ($list) SET $set"

truncate_table() { my_sql -D "$1" -e "SET FOREIGN_KEY_CHECKS = 0; TRUNCATE TABLE $TABLE; SET FOREIGN_KEY_CHECKS = 1"; }
flush_tables() {
    local db
    for db in "$DB_INS" "$DB_LOAD"; do
        my_sql -D "$db" -e "FLUSH TABLES $TABLE FOR EXPORT; UNLOCK TABLES"
    done
}
expect_rows() {
    local n
    n=$(my_sql -D "$1" -e "SELECT COUNT(*) FROM $TABLE")
    [ "$n" = "$ROWS" ] || die "$1: $TABLE holds $n rows after the load, not $ROWS"
}
digest() {
    my_sql -D "$1" -e "SELECT COUNT(*), COUNT(email), COUNT(telephone), COUNT(quotient_familial),
        SUM(CRC32(CONCAT_WS(0x1f, id, CAST(civilite AS BINARY), CAST(nom AS BINARY),
            CAST(prenom AS BINARY), date_naissance, IFNULL(CAST(email AS BINARY), 0x00),
            IFNULL(CAST(telephone AS BINARY), 0x00), CAST(adresse AS BINARY),
            CAST(code_postal AS BINARY), arrondissement, IFNULL(quotient_familial, 0x00))))
        FROM $TABLE" | tr '\t' ' '
}

# timed WHAT CMD...: runs CMD (output to the log, which must stay empty: no warnings), appends
# "WHAT seconds" to the results.
timed() {
    local what=$1 t0 t1 status=0
    shift
    t0=$(date +%s%N)
    "$@" >"$TMP/load.log" 2>&1 || status=$?
    t1=$(date +%s%N)
    if [ "$status" -ne 0 ] || grep -q . "$TMP/load.log"; then
        head -n 20 "$TMP/load.log" >&2
        die "$what failed or raised warnings (exit $status)"
    fi
    printf '%s\t%s\n' "$what" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')" >>"$RESULTS"
    log "  $what: $(tail -n 1 "$RESULTS" | cut -f2)s"
}

run_insert() {
    mariadb --no-defaults --show-warnings -h "$MY_HOST" -P "$MY_PORT" -u "$MY_USER" "$DB_INS" <"$SQL"
}
run_load() {
    mariadb --no-defaults --local-infile=1 --show-warnings -h "$MY_HOST" -P "$MY_PORT" -u "$MY_USER" \
        "$DB_LOAD" -e "$load"
}

# ---------------------------------------------------------------------------------------------
# Runs

: >"$RESULTS"
first=""
for ((run = 1; run <= RUNS; run++)); do
    log "run $run/$RUNS"
    truncate_table "$DB_INS"
    truncate_table "$DB_LOAD"
    order=(insert load)
    ((run % 2 == 0)) && order=(load insert)
    for what in "${order[@]}"; do
        flush_tables
        if [ "$what" = insert ]; then
            timed insert run_insert
            expect_rows "$DB_INS"
        else
            timed load run_load
            expect_rows "$DB_LOAD"
        fi
    done
    a=$(digest "$DB_INS")
    b=$(digest "$DB_LOAD")
    [ "$a" = "$b" ] || die "run $run: INSERT stored [$a], LOAD DATA [$b]"
    [ -z "$first" ] || [ "$a" = "$first" ] || die "run $run: the values differ from the first run's"
    first=$a
done
log "every load stored the same values ($first)"

out=$WORK/insert_vs_load_$(date -u +%Y%m%d_%H%M%S)
{
    echo "== MariaDB: batched INSERT vs LOAD DATA LOCAL =="
    printf 'date        %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    printf 'machine     %s CPU(s), %s, RAM %s, kernel %s\n' "$(nproc)" \
        "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)" \
        "$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)" "$(uname -r)"
    printf 'load avg    %s (at the end)\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf 'server      %s, innodb_buffer_pool_size %s MiB, innodb_flush_log_at_trx_commit %s, log_bin %s\n' \
        "$(my_sql -e 'SELECT VERSION()')" "$(($(my_sql -e 'SELECT @@innodb_buffer_pool_size') / 1048576))" \
        "$(my_sql -e 'SELECT @@innodb_flush_log_at_trx_commit')" "$(my_sql -e 'SELECT @@log_bin')"
    printf 'data        %s rows; %s (%s MB), %s (%s MB, %s rows per INSERT, one transaction)\n' "$ROWS" \
        "$(basename "$CSV")" "$(($(stat -c %s "$CSV") / 1000000))" \
        "$(basename "$SQL")" "$(($(stat -c %s "$SQL") / 1000000))" "$BATCH"
    printf 'runs        %s\n\n' "$RUNS"
    python3 - "$RESULTS" "$ROWS" <<'PY'
import statistics, sys
from collections import defaultdict

secs = defaultdict(list)
for line in open(sys.argv[1]):
    what, s = line.split()
    secs[what].append(float(s))
rows = int(sys.argv[2])
ins, load = statistics.median(secs["insert"]), statistics.median(secs["load"])
print(f"{'method':<34} {'median s':>9} {'rows/s':>9}  runs (s)")
for what, label in (("insert", "batched INSERT (mariadb < file)"), ("load", "LOAD DATA LOCAL (mariadb -e)")):
    m = statistics.median(secs[what])
    print(f"{label:<34} {m:>9.2f} {rows / m:>9.0f}  {' '.join(f'{s:.2f}' for s in secs[what])}")
print(f"\nratio INSERT / LOAD DATA = {ins / load:.2f}")
PY
} | tee "$out.txt"
cp "$RESULTS" "$out.tsv"
log "results kept in $out.txt and $out.tsv"
