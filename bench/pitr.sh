#!/usr/bin/env bash
# Benchmark: per-segment time of `mairie-dba wal push` vs Debian's `pgbackrest archive-push`
# (synchronous, compress-type=zst, both at zstd level 3), in the same run, on the same real
# 16 MiB segments written by a throwaway cluster under pgbench. Each round pushes every
# segment once into an empty archive, one process per segment as PostgreSQL runs
# archive_command; the figure is the median round's total divided by the segment count.
#
#   bench/pitr.sh                     # SEGMENTS=32 RUNS=5
#   SEGMENTS=16 RUNS=3 bench/pitr.sh
#
# Both run as the server's user (`postgres` when started as root). Installs pgbackrest when
# missing (root). Needs PostgreSQL 15's binaries (scripts/dev-services.sh installs them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly ROOT=$PWD SEGMENTS=${SEGMENTS:-32} RUNS=${RUNS:-5}
readonly BIN=${MAIRIE_DBA_BIN:-$ROOT/target/release/mairie-dba}
readonly PG_BIN=/usr/lib/postgresql/15/bin
WORK=$(mktemp -d /tmp/mairie-dba-bench-pitr.XXXXXX)
readonly WORK

log() { printf '[bench] %s\n' "$*" >&2; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
if [ "$(id -u)" -eq 0 ]; then
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi
cleanup() {
    as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
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

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log "throwaway cluster on port $port, collecting $SEGMENTS segments"
as_pg mkdir -p "$WORK/segs" "$WORK/sock" "$WORK/repo"
as_pg "$PG_BIN/initdb" -A trust -U postgres --no-sync -D "$WORK/data" >/dev/null
cat >>"$WORK/data/postgresql.conf" <<EOF
port = $port
listen_addresses = ''
unix_socket_directories = '$WORK/sock'
wal_level = replica
archive_mode = on
archive_command = 'cp %p $WORK/segs/%f'
max_wal_size = 1GB
EOF
as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w start >/dev/null
psql_pg() { as_pg "$PG_BIN/psql" -qAtX -h "$WORK/sock" -p "$port" -U postgres -d postgres "$@"; }
as_pg "$PG_BIN/pgbench" -q -i -s 30 -h "$WORK/sock" -p "$port" -U postgres postgres >/dev/null 2>&1
while [ "$(find "$WORK/segs" -name '????????????????????????' | wc -l)" -lt "$SEGMENTS" ]; do
    as_pg "$PG_BIN/pgbench" -n -T 5 -c 2 -h "$WORK/sock" -p "$port" -U postgres postgres >/dev/null 2>&1
    psql_pg -c 'SELECT pg_switch_wal()' >/dev/null
    sleep 1
done
mapfile -t segs < <(find "$WORK/segs" -name '????????????????????????' -printf '%f\n' | sort | head -n "$SEGMENTS")

# pgBackRest: a stanza made while the cluster runs; archive-push then reads only pg_control.
cat >"$WORK/pgbackrest.conf" <<EOF
[global]
repo1-path=$WORK/repo
log-level-console=warn
log-level-file=off
compress-type=zst
compress-level=3
archive-async=n
start-fast=y
[bench]
pg1-path=$WORK/data
pg1-socket-path=$WORK/sock
pg1-port=$port
pg1-user=postgres
EOF
chmod 644 "$WORK/pgbackrest.conf"
as_pg pgbackrest --config="$WORK/pgbackrest.conf" --stanza=bench stanza-create >/dev/null

cat >"$WORK/config_global.yml" <<EOF
targets:
  pg:
    engine: postgres
    config: config_pg.yml
pitr:
  pg:
    archive_dir: $WORK/archive
    compression_level: 3
EOF
printf 'connection:\n  host: %s\n  port: %s\n  database: postgres\n  user: postgres\n' "$WORK/sock" "$port" >"$WORK/config_pg.yml"
chmod 644 "$WORK/config_global.yml" "$WORK/config_pg.yml"

# One round: every segment pushed once, one process each, into an empty archive.
round_mairie() {
    as_pg rm -rf "$WORK/archive"
    local t0 t1
    t0=$(date +%s.%N)
    for s in "${segs[@]}"; do
        as_pg "$BIN" -c "$WORK/config_global.yml" -t pg wal push "$WORK/segs/$s"
    done
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}
round_pgbackrest() {
    as_pg find "$WORK/repo/archive/bench" -mindepth 2 -maxdepth 2 -type d -exec rm -rf {} +
    local t0 t1
    t0=$(date +%s.%N)
    for s in "${segs[@]}"; do
        as_pg pgbackrest --config="$WORK/pgbackrest.conf" --stanza=bench archive-push "$WORK/segs/$s"
    done
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}

log "pushing ${#segs[@]} segments, $RUNS rounds each (alternating)"
: >"$WORK/m" && : >"$WORK/p"
for _ in $(seq "$RUNS"); do
    round_mairie >>"$WORK/m"
    round_pgbackrest >>"$WORK/p"
done
m=$(median <"$WORK/m")
p=$(median <"$WORK/p")
n=${#segs[@]}
mb=$(du -sb "$WORK/archive" | cut -f1)
pb=$(du -sb "$WORK/repo/archive/bench" | cut -f1)
printf 'segments: %d x 16 MiB (pgbench), zstd level 3, %d rounds (median)\n' "$n" "$RUNS"
printf 'mairie-dba wal push        %7.1f ms/segment  archive %s bytes\n' "$(echo "$m * 1000 / $n" | bc -l)" "$mb"
printf 'pgbackrest archive-push    %7.1f ms/segment  archive %s bytes\n' "$(echo "$p * 1000 / $n" | bc -l)" "$pb"
printf 'ratio (mairie-dba / pgbackrest): %.2f\n' "$(echo "$m / $p" | bc -l)"
printf 'machine: %s, %s cores; %s; pgbackrest %s\n' "$(uname -srm)" "$(nproc)" "$(date -u +%F)" "$(pgbackrest version | awk '{print $2}')"
