#!/usr/bin/env bash
# Benchmark: `mairie-dba backup` vs plain `pg_dump -Fc -f`, and `mairie-dba restore` vs plain
# `pg_restore` (single job), plus `mairie-dba restore --jobs 2` and, for reference, plain
# `pg_restore --jobs 2`, on a pgbench database of a few hundred MB, in the same run, medians
# of RUNS runs and their ratios.
#
#   bench/backup.sh                   # RUNS=11 SCALE=20 (about 300 MB on disk)
#   RUNS=3 SCALE=5 bench/backup.sh
#   DATA=tables bench/backup.sh       # 300 tables of 10 000 rows of md5 text instead (about
#                                     # 300 MB, far less compressible than pgbench's)
#
# mairie-dba does more than the plain tools (row counts read from the archive, SHA-256,
# fsync, manifest; re-hash and destination checks before restore): the ratios show what that
# costs. Needs the local servers of scripts/dev-services.sh and pgbench (postgresql-contrib).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The project's own servers (scripts/dev-services.sh): ports and throwaway passwords.
. scripts/dev-servers.env
readonly ROOT=$PWD RUNS=${RUNS:-11} SCALE=${SCALE:-20} DATA=${DATA:-pgbench}
readonly WORK=${BENCH_WORK:-/tmp/mairie-dba-bench-backup}
readonly BIN=${MAIRIE_DBA_BIN:-$ROOT/target/release/mairie-dba}
readonly DB=bench_backup_src
export MAIRIE_PG_PASSWORD=${MAIRIE_PG_PASSWORD:-$MAIRIE_DEV_PASSWORD}
export PGPASSWORD=$MAIRIE_PG_PASSWORD PGHOST=127.0.0.1 PGPORT=$MAIRIE_DEV_PG_PORT PGUSER=mairie

log() { printf '[bench] %s\n' "$*" >&2; }
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
dropdb_q() { psql -qX -d postgres -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" >/dev/null; }
cleanup() {
    for d in $DB bench_restore_a bench_restore_b bench_restore_c bench_restore_d; do dropdb_q "$d" || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

[ -n "${BENCH_SKIP_BUILD:-}" ] || cargo build --release
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
rm -rf "$WORK" && mkdir -p "$WORK/backups"

log "creating $DB ($DATA)"
dropdb_q $DB
# From template0: no superuser-owned extension in the dump, so plain pg_restore run as
# a non-superuser (the peer side) can restore it too.
psql -qX -d postgres -c "CREATE DATABASE $DB TEMPLATE template0" >/dev/null
if [ "$DATA" = tables ]; then
    psql -qX -d $DB -c "DO \$\$ BEGIN FOR i IN 1..300 LOOP
        EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, a text, b numeric)', i);
        EXECUTE format('INSERT INTO t%s SELECT g, md5(g::text), g / 3.0 FROM generate_series(1, 10000) g', i);
    END LOOP; END \$\$" >/dev/null
    DESCR="300 tables x 10 000 rows of md5 text"
else
    "$PG_BIN/pgbench" -q -i -s "$SCALE" "$DB" >/dev/null 2>&1
    DESCR="pgbench scale $SCALE"
fi
psql -qX -d $DB -c "VACUUM ANALYZE" >/dev/null 2>&1
SIZE=$(psql -AtX -d $DB -c "SELECT pg_size_pretty(pg_database_size('$DB'))")

cat > "$WORK/config_postgres.yml" <<YML
connection:
  host: 127.0.0.1
  port: $MAIRIE_DEV_PG_PORT
  database: $DB
  user: mairie
  password_env: MAIRIE_PG_PASSWORD
YML
cat > "$WORK/config_global.yml" <<YML
targets:
  postgres:
    engine: postgres
    config: config_postgres.yml
backup:
  postgres:
    dir: $WORK/backups
    retention_days: 14
    keep_min: 100
YML
CFG=$WORK/config_global.yml

declare -a t_mb t_pd t_mr t_pr t_mr2 t_pr2
for run in $(seq 1 "$RUNS"); do
    log "run $run/$RUNS"
    rm -f "$WORK"/backups/*_full_* "$WORK/plain.dump"
    sync
    # Alternate which tool goes first.
    if [ $((run % 2)) -eq 1 ]; then order="m p"; else order="p m"; fi
    for who in $order; do
        if [ "$who" = m ]; then
            s=$(now); "$BIN" -c "$CFG" -q --no-progress backup >/dev/null; e=$(now)
            t_mb+=("$(awk "BEGIN {print $e - $s}")")
        else
            s=$(now); "$PG_BIN/pg_dump" -Fc -f "$WORK/plain.dump" "$DB"; sync -f "$WORK/plain.dump"; e=$(now)
            t_pd+=("$(awk "BEGIN {print $e - $s}")")
        fi
    done
    FILE=$(ls "$WORK"/backups/*_full_*.dump | head -1)
    # The restores' order turns too, so that none always runs on a warmer server.
    case $((run % 4)) in
        1) rorder="m p m2 p2";; 2) rorder="p m p2 m2";; 3) rorder="m2 p2 m p";; *) rorder="p2 m2 p m";;
    esac
    for who in $rorder; do
        case $who in
            # Every side restores into an empty database created outside the timing.
            m) dropdb_q bench_restore_a; psql -qX -d postgres -c "CREATE DATABASE bench_restore_a" >/dev/null
               s=$(now); "$BIN" -c "$CFG" -q --no-progress restore "$FILE" --into bench_restore_a >/dev/null; e=$(now)
               t_mr+=("$(awk "BEGIN {print $e - $s}")");;
            p) dropdb_q bench_restore_b; psql -qX -d postgres -c "CREATE DATABASE bench_restore_b" >/dev/null
               s=$(now); "$PG_BIN/pg_restore" --exit-on-error -d bench_restore_b "$WORK/plain.dump"; e=$(now)
               t_pr+=("$(awk "BEGIN {print $e - $s}")");;
            m2) dropdb_q bench_restore_c; psql -qX -d postgres -c "CREATE DATABASE bench_restore_c" >/dev/null
               s=$(now); "$BIN" -c "$CFG" -q --no-progress restore "$FILE" --into bench_restore_c --jobs 2 >/dev/null; e=$(now)
               t_mr2+=("$(awk "BEGIN {print $e - $s}")");;
            p2) dropdb_q bench_restore_d; psql -qX -d postgres -c "CREATE DATABASE bench_restore_d" >/dev/null
               s=$(now); "$PG_BIN/pg_restore" --exit-on-error --jobs 2 -d bench_restore_d "$WORK/plain.dump"; e=$(now)
               t_pr2+=("$(awk "BEGIN {print $e - $s}")");;
        esac
    done
    log "  backup ${t_mb[-1]}s vs pg_dump ${t_pd[-1]}s; restore ${t_mr[-1]}s vs pg_restore ${t_pr[-1]}s; restore --jobs 2 ${t_mr2[-1]}s vs pg_restore --jobs 2 ${t_pr2[-1]}s"
done

m_mb=$(printf '%s\n' "${t_mb[@]}" | median); m_pd=$(printf '%s\n' "${t_pd[@]}" | median)
m_mr=$(printf '%s\n' "${t_mr[@]}" | median); m_pr=$(printf '%s\n' "${t_pr[@]}" | median)
m_mr2=$(printf '%s\n' "${t_mr2[@]}" | median); m_pr2=$(printf '%s\n' "${t_pr2[@]}" | median)
ratio() { awk "BEGIN {printf \"%.3f\", $1 / $2}"; }
# Median of the per-run ratios a[i] / b[i]: less sensitive to the machine drifting during
# the run than the ratio of the medians.
paired() {
    local -n a=$1 b=$2
    for i in "${!a[@]}"; do awk "BEGIN {print ${a[$i]} / ${b[$i]}}"; done | median | xargs printf '%.3f'
}
DUMP_SIZE=$(du -h "$(ls "$WORK"/backups/*_full_*.dump | head -1)" | cut -f1)

echo "== mairie-dba backup/restore benchmark =="
echo "date        $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "machine     $(nproc) CPU(s), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), RAM $(free -g | awk '/Mem:/ {print $2}') GiB"
echo "postgres    $(psql -AtX -d postgres -c 'SHOW server_version')"
echo "data        $DESCR: database $SIZE, dump $DUMP_SIZE"
echo "runs        $RUNS"
echo
printf '%-34s %12s %12s %7s %7s\n' case "mairie-dba s" "plain s" ratio paired
printf '%-34s %12.2f %12.2f %7s %7s\n' "backup vs pg_dump -Fc -f" "$m_mb" "$m_pd" "$(ratio "$m_mb" "$m_pd")" "$(paired t_mb t_pd)"
printf '%-34s %12.2f %12.2f %7s %7s\n' "restore vs pg_restore" "$m_mr" "$m_pr" "$(ratio "$m_mr" "$m_pr")" "$(paired t_mr t_pr)"
printf '%-34s %12.2f %12.2f %7s %7s\n' "restore --jobs 2 vs pg_restore" "$m_mr2" "$m_pr" "$(ratio "$m_mr2" "$m_pr")" "$(paired t_mr2 t_pr)"
printf '%-34s %12.2f %12.2f %7s %7s\n' "(plain pg_restore --jobs 2)" "$m_pr2" "$m_pr" "$(ratio "$m_pr2" "$m_pr")" "$(paired t_pr2 t_pr)"
