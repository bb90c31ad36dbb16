#!/usr/bin/env bash
# Benchmark of point-in-time recovery for PostgreSQL: mairie-dba against Debian's pgBackRest
# (synchronous, compress-type=zst, both at zstd level 3) and plain pg_basebackup, in the same
# run, on one throwaway PostgreSQL 15 cluster (pgbench -i -s $SCALE).
#
#   bench/pitr.sh [push|base|restore|keepup|all]     # default: all
#
#   push     per-segment time of `wal push` vs `pgbackrest archive-push`, on the same real
#            16 MiB segments written under pgbench: each round pushes every segment once
#            into an empty archive, one process per segment as PostgreSQL runs
#            archive_command; the figure is the median round's total / segment count.
#   base     a base backup: `pitr base-backup` vs `pgbackrest backup --type=full` vs plain
#            `pg_basebackup -Ft -X fetch -c fast` (uncompressed) and the same with
#            `--compress=client-zstd:3 --manifest-checksums=SHA256` (what mairie-dba asks of
#            pg_basebackup, minus its checks). The order turns from run to run; medians.
#   restore  restore to a time: the two base backups taken one after the other, then
#            $WORKLOAD s of pgbench, then T; `pitr restore --target-time T --pgdata DIR
#            --start` vs `pgbackrest restore --type=time --target=T --target-action=promote
#            --archive-mode=off` + `pg_ctl start` until pg_is_in_recovery() is false. Both
#            replay the same WAL; the row count of pgbench_history shows both stopped at T.
#   keepup   archive_command under `pgbench -c $KEEPUP_CLIENTS` for $KEEPUP_SECONDS s: the
#            number of pg_wal/archive_status/*.ready sampled every second (max, at the end,
#            and the time to drain), with `wal push`, then with `pgbackrest archive-push`.
#
# Knobs (environment): SCALE=50 (about 750 MB), SEGMENTS=32 RUNS=5 (push), BASE_RUNS=3,
# RESTORE_RUNS=3, WORKLOAD=30, KEEPUP_SECONDS=60, KEEPUP_CLIENTS=4, KEEPUP_RUNS=1 (runs of
# each tool, order alternating), KEEPUP_SYNC_COMMIT=on (off: pgbench commits without waiting
# for its WAL flush, writing WAL faster), PGBR_PROCESS_MAX=1 (pgBackRest's default),
# BENCH_SKIP_BUILD=1, MAIRIE_DBA_BIN. `all` takes 6 to 9 minutes on 2 cores.
#
# Everything lives in a mktemp directory removed on exit, every server it started stopped;
# the cluster listens only on a socket there. Both tools run as the server's user (`postgres`
# when started as root). Installs pgbackrest when missing (root). Needs PostgreSQL 15's
# binaries (scripts/dev-services.sh installs them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly MODE=${1:-all}
case $MODE in
push | base | restore | keepup | all) ;;
*)
    echo "usage: $0 [push|base|restore|keepup|all]" >&2
    exit 2
    ;;
esac
readonly ROOT=$PWD SCALE=${SCALE:-50} SEGMENTS=${SEGMENTS:-32} RUNS=${RUNS:-5}
readonly BASE_RUNS=${BASE_RUNS:-3} RESTORE_RUNS=${RESTORE_RUNS:-3} WORKLOAD=${WORKLOAD:-30}
readonly KEEPUP_SECONDS=${KEEPUP_SECONDS:-60} KEEPUP_CLIENTS=${KEEPUP_CLIENTS:-4}
readonly KEEPUP_RUNS=${KEEPUP_RUNS:-1} KEEPUP_SYNC_COMMIT=${KEEPUP_SYNC_COMMIT:-on}
readonly PGBR_PROCESS_MAX=${PGBR_PROCESS_MAX:-1}
readonly BIN=${MAIRIE_DBA_BIN:-$ROOT/target/release/mairie-dba}
readonly PG_BIN=/usr/lib/postgresql/15/bin
WORK=$(mktemp -d /tmp/mairie-dba-bench-pitr.XXXXXX)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date -u '+%F %H:%M')
readonly WORK LOAD0 STARTED

log() { printf '[bench] %s\n' "$*" >&2; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc -l; }
calc() { echo "$*" | bc -l; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
want() { [ "$MODE" = all ] || [ "$MODE" = "$1" ]; }
if [ "$(id -u)" -eq 0 ]; then
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi
stop_pg() { as_pg "$PG_BIN/pg_ctl" -D "$1" -m immediate stop >/dev/null 2>&1 || true; }
cleanup() {
    local j
    for j in $(jobs -p); do kill "$j" 2>/dev/null || true; done
    for d in "$WORK"/r-* "$WORK/data"; do
        [ -f "$d/postmaster.pid" ] && stop_pg "$d"
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

if ! command -v pgbackrest >/dev/null; then
    log "installing pgbackrest"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbackrest >/dev/null
fi
[ -n "${BENCH_SKIP_BUILD:-}" ] || cargo build --release
chmod 755 "$WORK"
[ "$(id -u)" -eq 0 ] && chown postgres: "$WORK"

port=$(free_port)
log "throwaway cluster on port $port, pgbench scale $SCALE"
as_pg mkdir -p "$WORK/segs" "$WORK/sock" "$WORK/repo"
as_pg "$PG_BIN/initdb" -A trust -U postgres --no-sync -D "$WORK/data" >/dev/null
cat >>"$WORK/data/postgresql.conf" <<EOF
port = $port
listen_addresses = ''
unix_socket_directories = '$WORK/sock'
wal_level = replica
archive_mode = on
archive_command = 'true'
max_wal_size = 1GB
EOF
as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w start >/dev/null
psql_at() { as_pg "$PG_BIN/psql" -qAtX -h "$WORK/sock" -p "$1" -U postgres -d postgres "${@:2}"; }
psql_pg() { psql_at "$port" "$@"; }
pgbench() { as_pg "$PG_BIN/pgbench" -h "$WORK/sock" -p "$port" -U postgres "$@" postgres; }
pgbench -q -i -s "$SCALE" >/dev/null 2>&1
db_size=$(psql_pg -c "SELECT pg_size_pretty(pg_database_size('postgres'))")
log "database: $db_size"

# pgBackRest: a stanza made while the cluster runs.
cat >"$WORK/pgbackrest.conf" <<EOF
[global]
repo1-path=$WORK/repo
repo1-retention-full=2
log-level-console=warn
log-level-file=off
compress-type=zst
compress-level=3
archive-async=n
start-fast=y
process-max=$PGBR_PROCESS_MAX
[bench]
pg1-path=$WORK/data
pg1-socket-path=$WORK/sock
pg1-port=$port
pg1-user=postgres
EOF
chmod 644 "$WORK/pgbackrest.conf"
pgbr() { as_pg pgbackrest --config="$WORK/pgbackrest.conf" --stanza=bench "$@"; }
pgbr stanza-create >/dev/null

cat >"$WORK/config_global.yml" <<EOF
targets:
  pg:
    engine: postgres
    config: config_pg.yml
pitr:
  pg:
    archive_dir: $WORK/archive
    base_dir: $WORK/base
    keep_base: 2
    compression_level: 3
EOF
printf 'connection:\n  host: %s\n  port: %s\n  database: postgres\n  user: postgres\n' "$WORK/sock" "$port" >"$WORK/config_pg.yml"
chmod 644 "$WORK/config_global.yml" "$WORK/config_pg.yml"
mairie() { as_pg "$BIN" -c "$WORK/config_global.yml" -t pg "$@"; }

readonly MAIRIE_PUSH="$BIN -c $WORK/config_global.yml -t pg wal push %p"
readonly PGBR_PUSH="pgbackrest --config=$WORK/pgbackrest.conf --stanza=bench archive-push %p"
set_archive() {
    psql_pg -c "ALTER SYSTEM SET archive_command = '$1'" -c 'SELECT pg_reload_conf()' >/dev/null
    sleep 1
}
ready_count() { find "$WORK/data/pg_wal/archive_status" -name '*.ready' | wc -l; }
# Waits until the archiver has nothing left to push; prints the seconds it took.
drain() {
    local t0 limit=${1:-600}
    t0=$(now)
    while [ "$(ready_count)" -gt 0 ]; do
        if [ "$(calc "$(since "$t0") > $limit")" -eq 1 ]; then
            log "the archive did not drain in $limit s; server log:"
            tail -n 20 "$WORK/server.log" >&2
            return 1
        fi
        sleep 0.2
    done
    since "$t0"
}
switch_and_drain() {
    psql_pg -c 'SELECT pg_switch_wal()' >/dev/null
    drain >/dev/null
}
machine() {
    printf 'machine: %s, %s cores, %s; %s to %s UTC; PostgreSQL %s; pgbackrest %s; load average %s at the start, %s at the end\n' \
        "$(uname -srm)" "$(nproc)" "$(free -g | awk '/^Mem:/ {print $2 " GiB"}')" "$STARTED" \
        "$(date -u '+%H:%M')" "$(psql_pg -c 'SHOW server_version' | cut -d' ' -f1)" \
        "$(pgbackrest version | awk '{print $2}')" "$LOAD0" "$(cut -d' ' -f1-3 /proc/loadavg)"
}

# ---------------------------------------------------------------------------------------
# push: per-segment archive_command time.
bench_push() {
    log "push: collecting $SEGMENTS segments written under pgbench"
    set_archive "cp %p $WORK/segs/%f"
    while [ "$(find "$WORK/segs" -name '????????????????????????' | wc -l)" -lt "$SEGMENTS" ]; do
        pgbench -n -T 5 -c 2 >/dev/null 2>&1
        psql_pg -c 'SELECT pg_switch_wal()' >/dev/null
        sleep 1
    done
    set_archive true
    local segs
    mapfile -t segs < <(find "$WORK/segs" -name '????????????????????????' -printf '%f\n' | sort | head -n "$SEGMENTS")

    round_mairie() {
        as_pg rm -rf "$WORK/archive"
        local t0 s
        t0=$(now)
        for s in "${segs[@]}"; do
            as_pg "$BIN" -c "$WORK/config_global.yml" -t pg wal push "$WORK/segs/$s"
        done
        since "$t0"
    }
    round_pgbackrest() {
        as_pg find "$WORK/repo/archive/bench" -mindepth 2 -maxdepth 2 -type d -exec rm -rf {} +
        local t0 s
        t0=$(now)
        for s in "${segs[@]}"; do
            pgbr archive-push "$WORK/segs/$s"
        done
        since "$t0"
    }
    log "push: ${#segs[@]} segments, $RUNS rounds each (alternating)"
    : >"$WORK/push-m" && : >"$WORK/push-p"
    for _ in $(seq "$RUNS"); do
        round_mairie >>"$WORK/push-m"
        round_pgbackrest >>"$WORK/push-p"
    done
    local m p n mb pb
    m=$(median <"$WORK/push-m")
    p=$(median <"$WORK/push-p")
    n=${#segs[@]}
    mb=$(du -sb "$WORK/archive" | cut -f1)
    pb=$(du -sb "$WORK/repo/archive/bench" | cut -f1)
    {
        printf '\n== push: segments: %d x 16 MiB (pgbench), zstd level 3, %d rounds (median)\n' "$n" "$RUNS"
        printf 'mairie-dba wal push        %7.1f ms/segment  archive %s bytes\n' "$(calc "$m * 1000 / $n")" "$mb"
        printf 'pgbackrest archive-push    %7.1f ms/segment  archive %s bytes\n' "$(calc "$p * 1000 / $n")" "$pb"
        printf 'ratio (mairie-dba / pgbackrest): %.2f\n' "$(calc "$m / $p")"
    } | tee -a "$WORK/report"
    # The pushes above were not the server's: start the archives afresh.
    as_pg rm -rf "$WORK/archive" "$WORK/segs"
    as_pg find "$WORK/repo/archive/bench" -mindepth 2 -maxdepth 2 -type d -exec rm -rf {} +
}

# ---------------------------------------------------------------------------------------
# base: one base backup per tool and run, the archiver idle before each.
base_mairie() {
    local t0
    t0=$(now)
    mairie pitr base-backup >/dev/null
    since "$t0"
    stat -c %s "$(ls -t "$WORK"/base/base-*.tar.zst | head -n 1)" >>"$WORK/size-mairie"
}
base_pgbackrest() {
    local t0
    t0=$(now)
    pgbr backup --type=full >/dev/null
    since "$t0"
    du -sb "$WORK/repo/backup/bench/$(readlink "$WORK/repo/backup/bench/latest")" | cut -f1 >>"$WORK/size-pgbackrest"
}
base_pgbb() {
    local t0
    as_pg rm -rf "$WORK/pgbb"
    t0=$(now)
    as_pg "$PG_BIN/pg_basebackup" -h "$WORK/sock" -p "$port" -U postgres -D "$WORK/pgbb" -Ft -X fetch -c fast
    since "$t0"
    du -sb "$WORK/pgbb" | cut -f1 >>"$WORK/size-pgbb"
    as_pg rm -rf "$WORK/pgbb"
}
base_pgbbzstd() {
    local t0
    as_pg rm -rf "$WORK/pgbb"
    t0=$(now)
    as_pg "$PG_BIN/pg_basebackup" -h "$WORK/sock" -p "$port" -U postgres -D "$WORK/pgbb" -Ft -X fetch -c fast \
        --compress=client-zstd:3 --manifest-checksums=SHA256
    since "$t0"
    du -sb "$WORK/pgbb" | cut -f1 >>"$WORK/size-pgbbzstd"
    as_pg rm -rf "$WORK/pgbb"
}
bench_base() {
    set_archive "$PGBR_PUSH && $MAIRIE_PUSH"
    switch_and_drain
    local tools=(mairie pgbackrest pgbb pgbbzstd) i k t
    for t in "${tools[@]}"; do : >"$WORK/base-$t" && : >"$WORK/size-$t"; done
    log "base: $BASE_RUNS runs of ${tools[*]} (order turning), database $db_size"
    for i in $(seq 0 $((BASE_RUNS - 1))); do
        for k in 0 1 2 3; do
            t=${tools[$(((i + k) % 4))]}
            psql_pg -c CHECKPOINT >/dev/null
            "base_$t" >>"$WORK/base-$t"
            log "base run $((i + 1)): $t $(tail -n 1 "$WORK/base-$t") s"
            switch_and_drain
        done
    done
    local m p b z pair
    m=$(median <"$WORK/base-mairie")
    p=$(median <"$WORK/base-pgbackrest")
    b=$(median <"$WORK/base-pgbb")
    z=$(median <"$WORK/base-pgbbzstd")
    pair=$(paste "$WORK/base-mairie" "$WORK/base-pgbackrest" | awk '{print $1 / $2}' | median)
    {
        printf '\n== base: database %s (pgbench -s %d), %d runs (median s), zstd level 3\n' "$db_size" "$SCALE" "$BASE_RUNS"
        printf '%-58s %7.2f s  %6.1f MB\n' "mairie-dba pitr base-backup" "$m" "$(calc "$(median <"$WORK/size-mairie") / 1000000")"
        printf '%-58s %7.2f s  %6.1f MB\n' "pgbackrest backup --type=full (process-max=$PGBR_PROCESS_MAX)" "$p" "$(calc "$(median <"$WORK/size-pgbackrest") / 1000000")"
        printf '%-58s %7.2f s  %6.1f MB\n' "pg_basebackup -Ft -X fetch -c fast" "$b" "$(calc "$(median <"$WORK/size-pgbb") / 1000000")"
        printf '%-58s %7.2f s  %6.1f MB\n' "  same, --compress=client-zstd:3 --manifest-checksums=SHA256" "$z" "$(calc "$(median <"$WORK/size-pgbbzstd") / 1000000")"
        printf 'ratio mairie-dba / pgbackrest: %.3f (paired %.3f)\n' "$(calc "$m / $p")" "$pair"
        printf 'ratio mairie-dba / pg_basebackup: %.3f; / pg_basebackup client-zstd: %.3f\n' "$(calc "$m / $b")" "$(calc "$m / $z")"
        printf 'runs (s): mairie-dba %s | pgbackrest %s | pg_basebackup %s | client-zstd %s\n' \
            "$(paste -sd' ' "$WORK/base-mairie")" "$(paste -sd' ' "$WORK/base-pgbackrest")" \
            "$(paste -sd' ' "$WORK/base-pgbb")" "$(paste -sd' ' "$WORK/base-pgbbzstd")"
    } | tee -a "$WORK/report"
}

# ---------------------------------------------------------------------------------------
# restore: both tools to the same time, from base backups taken together.
restore_mairie() { # DIR PORT
    local t0
    t0=$(now)
    mairie pitr restore --target-time "$T" --pgdata "$1" --start --port "$2" >"$WORK/restore-mairie.out"
    since "$t0"
}
restore_pgbackrest() { # DIR PORT
    local t0 t1 state
    as_pg mkdir -m 700 "$1"
    t0=$(now)
    pgbr --pg1-path="$1" --type=time --target="$T" --target-action=promote --archive-mode=off restore >/dev/null
    as_pg "$PG_BIN/pg_ctl" -D "$1" -l "$1.log" -o "-p $2" -W start >/dev/null
    t1=$(now)
    while :; do
        state=$(psql_at "$2" -c 'SELECT pg_is_in_recovery()' 2>/dev/null || true)
        [ "$state" = f ] && break
        # Down 5 s after pg_ctl (which returns before the postmaster writes its pid): failed.
        if [ "$(calc "$(since "$t0") > 1800")" -eq 1 ] || { [ -z "$state" ] &&
            [ "$(calc "$(since "$t1") > 5")" -eq 1 ] && ! as_pg "$PG_BIN/pg_ctl" -D "$1" status >/dev/null; }; then
            log "pgbackrest's restored server did not promote:"
            tail -n 20 "$1.log" >&2
            return 1
        fi
        sleep 0.1
    done
    since "$t0"
}
bench_restore() {
    set_archive "$PGBR_PUSH && $MAIRIE_PUSH"
    switch_and_drain
    log "restore: base backups of both tools, then $WORKLOAD s of pgbench -c 2"
    pgbr backup --type=full >/dev/null
    mairie pitr base-backup >/dev/null
    local lsn0 lsnT
    lsn0=$(psql_pg -c 'SELECT pg_current_wal_lsn()')
    pgbench -n -c 2 -j 2 -T "$WORKLOAD" >/dev/null 2>&1
    T=$(psql_pg -c "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
    lsnT=$(psql_pg -c 'SELECT pg_current_wal_lsn()')
    sleep 1
    pgbench -n -c 2 -j 2 -T 3 >/dev/null 2>&1 # commits after T, so that both find it
    switch_and_drain
    local wal_mb
    wal_mb=$(psql_pg -c "SELECT round(pg_wal_lsn_diff('$lsnT', '$lsn0') / 1048576)")
    log "restore: target $T, $wal_mb MiB of WAL after the base backups; $RESTORE_RUNS runs each"
    : >"$WORK/restore-m" && : >"$WORK/restore-p" && : >"$WORK/restore-rows"
    local i pm pp rm rp
    for i in $(seq "$RESTORE_RUNS"); do
        pm=$(free_port)
        pp=$(free_port)
        [ "$pp" != "$pm" ] || pp=$((pm + 1))
        if [ $((i % 2)) -eq 1 ]; then
            restore_mairie "$WORK/r-m$i" "$pm" >>"$WORK/restore-m"
            restore_pgbackrest "$WORK/r-p$i" "$pp" >>"$WORK/restore-p"
        else
            restore_pgbackrest "$WORK/r-p$i" "$pp" >>"$WORK/restore-p"
            restore_mairie "$WORK/r-m$i" "$pm" >>"$WORK/restore-m"
        fi
        rm=$(psql_at "$pm" -c 'SELECT count(*) FROM pgbench_history')
        rp=$(psql_at "$pp" -c 'SELECT count(*) FROM pgbench_history')
        echo "$rm $rp" >>"$WORK/restore-rows"
        log "restore run $i: mairie-dba $(tail -n 1 "$WORK/restore-m") s, pgbackrest $(tail -n 1 "$WORK/restore-p") s; pgbench_history rows $rm / $rp"
        stop_pg "$WORK/r-m$i"
        stop_pg "$WORK/r-p$i"
        as_pg rm -rf "$WORK/r-m$i" "$WORK/r-p$i" "$WORK/r-p$i.log"
    done
    local m p pair rows
    m=$(median <"$WORK/restore-m")
    p=$(median <"$WORK/restore-p")
    pair=$(paste "$WORK/restore-m" "$WORK/restore-p" | awk '{print $1 / $2}' | median)
    rows=$(awk '{ if ($1 != $2) bad = 1 } END { print (bad ? "DIFFER" : "equal") }' "$WORK/restore-rows")
    {
        printf '\n== restore to a time: %s MiB of WAL replayed after base backups of %s, %d runs (median s)\n' "$wal_mb" "$db_size" "$RESTORE_RUNS"
        printf '%-70s %7.2f s\n' "mairie-dba pitr restore --target-time T --start" "$m"
        printf '%-70s %7.2f s\n' "pgbackrest restore --type=time --target-action=promote + start" "$p"
        printf 'ratio mairie-dba / pgbackrest: %.3f (paired %.3f)\n' "$(calc "$m / $p")" "$pair"
        printf 'runs (s): mairie-dba %s | pgbackrest %s; pgbench_history rows at T: %s (%s)\n' \
            "$(paste -sd' ' "$WORK/restore-m")" "$(paste -sd' ' "$WORK/restore-p")" "$rows" \
            "$(head -n 1 "$WORK/restore-rows" | cut -d' ' -f1)"
    } | tee -a "$WORK/report"
}

# ---------------------------------------------------------------------------------------
# keepup: the .ready backlog while pgbench writes, one archive_command at a time.
keepup_run() { # LABEL COMMAND
    set_archive "$2"
    switch_and_drain
    psql_pg -c CHECKPOINT >/dev/null
    local lsn0 lsn1 a0 a1 f0 f1 final max tps drained
    lsn0=$(psql_pg -c 'SELECT pg_current_wal_lsn()')
    read -r a0 f0 < <(psql_pg -F' ' -c 'SELECT archived_count, failed_count FROM pg_stat_archiver')
    (while :; do
        ready_count
        sleep 1
    done) >"$WORK/samples-$1" &
    local sampler=$!
    tps=$(as_pg env PGOPTIONS="-c synchronous_commit=$KEEPUP_SYNC_COMMIT" "$PG_BIN/pgbench" -h "$WORK/sock" -p "$port" \
        -U postgres -n -c "$KEEPUP_CLIENTS" -j 2 -T "$KEEPUP_SECONDS" postgres 2>/dev/null |
        awk -F'= ' '/^tps/ {printf "%.0f", $2; exit}')
    final=$(ready_count)
    kill "$sampler"
    wait "$sampler" 2>/dev/null || true
    lsn1=$(psql_pg -c 'SELECT pg_current_wal_lsn()')
    drained=$(drain 900)
    read -r a1 f1 < <(psql_pg -F' ' -c 'SELECT archived_count, failed_count FROM pg_stat_archiver')
    max=$(sort -n "$WORK/samples-$1" | tail -n 1)
    local wal_mb
    wal_mb=$(psql_pg -c "SELECT round(pg_wal_lsn_diff('$lsn1', '$lsn0') / 1048576)")
    printf '%-26s %6s %7s MiB %6.2f seg/s %5s %5s %7.1f s %6s %5s\n' "$1" "$tps" "$wal_mb" \
        "$(calc "$wal_mb / 16 / $KEEPUP_SECONDS")" "$max" "$final" "$drained" "$((a1 - a0))" "$((f1 - f0))" >>"$WORK/keepup"
    log "keepup $1: max backlog $max, final $final, drained in $drained s; samples: $(paste -sd' ' "$WORK/samples-$1")"
}
bench_keepup() {
    log "keepup: pgbench -c $KEEPUP_CLIENTS -j 2 for $KEEPUP_SECONDS s (synchronous_commit $KEEPUP_SYNC_COMMIT), $KEEPUP_RUNS run(s) per tool"
    : >"$WORK/keepup"
    local i
    for i in $(seq "$KEEPUP_RUNS"); do
        if [ $((i % 2)) -eq 1 ]; then
            keepup_run "mairie-dba wal push" "$MAIRIE_PUSH"
            keepup_run "pgbackrest archive-push" "$PGBR_PUSH"
        else
            keepup_run "pgbackrest archive-push" "$PGBR_PUSH"
            keepup_run "mairie-dba wal push" "$MAIRIE_PUSH"
        fi
    done
    {
        printf '\n== keepup: archive_command under pgbench -c %d -j 2, %d s, synchronous_commit %s; .ready sampled every second\n' \
            "$KEEPUP_CLIENTS" "$KEEPUP_SECONDS" "$KEEPUP_SYNC_COMMIT"
        printf '%-26s %6s %11s %12s %5s %5s %9s %6s %5s\n' "archive_command" "tps" "WAL" "rate" "max" "end" "drain" "pushed" "fail"
        cat "$WORK/keepup"
    } | tee -a "$WORK/report"
}

want push && bench_push
want base && bench_base
want restore && bench_restore
want keepup && bench_keepup
printf '\n' >>"$WORK/report"
machine >>"$WORK/report"
printf '\n======== summary ========\n'
cat "$WORK/report"
