#!/usr/bin/env bash
# Benchmark: `mairie-dba backup` of a Redis target (method bgsave, then method replication)
# against plain `redis-cli --rdb FILE` followed by `sha256sum FILE`, on a throwaway
# redis-server holding a few hundred MB of keys, in the same run, alternating, medians of RUNS
# runs and their ratios.
#
#   bench/redis_backup.sh                 # RUNS=5 MB=300 (about 300 MB of RDB)
#   RUNS=3 MB=100 bench/redis_backup.sh
#
# mairie-dba does more than the plain pair: it fsyncs the file, reads it whole once more
# through redis-check-rdb (structure, checksum, keys per database), writes the manifest and
# applies retention; `bgsave` also makes the server write its own dump.rdb first. The ratios
# show what that costs. Needs redis-server and redis-tools (scripts/dev-services.sh) and python3.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly ROOT=$PWD RUNS=${RUNS:-5} MB=${MB:-300}
readonly WORK=${BENCH_WORK:-/tmp/mairie-dba-bench-redis-backup}
readonly BIN=${MAIRIE_DBA_BIN:-$ROOT/target/release/mairie-dba}

log() { printf '[bench] %s\n' "$*" >&2; }
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
    redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

[ -n "${BENCH_SKIP_BUILD:-}" ] || cargo build --release
rm -rf "$WORK" && mkdir -p "$WORK/data" "$WORK/backups"

# Diskless replication without its default 5 s wait for more replicas: both redis-cli --rdb
# and the replication method get the snapshot at once.
redis-server --port "$PORT" --bind 127.0.0.1 --dir "$WORK/data" --save "" --appendonly no \
    --repl-diskless-sync-delay 0 --daemonize yes --logfile "$WORK/redis.log"
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

# Keys of 1 KiB of base64 from urandom: LZF (rdbcompression) can do little with them, so the
# RDB is about as large as the data.
KEYS=$((MB * 1024))
log "filling $KEYS keys of 1 KiB (db0) and 1000 small keys (db1)"
python3 - "$KEYS" <<'PY' | redis-cli -p "$PORT" --pipe >/dev/null
import base64, os, sys
n = int(sys.argv[1])
out = sys.stdout.buffer
def cmd(*args):
    b = [b"*%d\r\n" % len(args)]
    for a in args:
        b.append(b"$%d\r\n%s\r\n" % (len(a), a))
    out.write(b"".join(b))
for i in range(n):
    cmd(b"SET", b"key:%d" % i, base64.b64encode(os.urandom(768)))
cmd(b"SELECT", b"1")
for i in range(1000):
    cmd(b"SET", b"small:%d" % i, b"v")
PY
DBSIZE=$(redis-cli -p "$PORT" dbsize)

cat > "$WORK/config_redis.yml" <<YML
connection:
  host: 127.0.0.1
  port: $PORT
YML
write_global() {
    cat > "$WORK/config_global.yml" <<YML
state_dir: state
targets:
  redis:
    engine: redis
    config: config_redis.yml
backup:
  redis:
    dir: backups
    retention_days: 0
    keep_min: 1
    method: $1
YML
}

mairie() {
    write_global "$1"
    rm -f "$WORK"/backups/*.rdb "$WORK"/backups/*.rdb.json
    local t0 t1
    t0=$(now)
    "$BIN" -c "$WORK/config_global.yml" --format json backup >"$WORK/out.json"
    t1=$(now)
    echo "$t1 - $t0" | bc -l
}
plain() {
    rm -f "$WORK/plain.rdb"
    local t0 t1
    t0=$(now)
    redis-cli -p "$PORT" --rdb "$WORK/plain.rdb" >/dev/null 2>&1
    sha256sum "$WORK/plain.rdb" >/dev/null
    t1=$(now)
    echo "$t1 - $t0" | bc -l
}

: >"$WORK/bgsave" ; : >"$WORK/replication" ; : >"$WORK/plain"
for i in $(seq "$RUNS"); do
    # Alternate the order, so that neither side always finds a warm page cache.
    if ((i % 2)); then order="bgsave replication plain"; else order="plain replication bgsave"; fi
    for side in $order; do
        if [ "$side" = plain ]; then plain >>"$WORK/plain"; else mairie "$side" >>"$WORK/$side"; fi
        sleep 1 # one backup name per second
    done
    log "run $i: bgsave $(tail -1 "$WORK/bgsave") s, replication $(tail -1 "$WORK/replication") s, redis-cli --rdb + sha256sum $(tail -1 "$WORK/plain") s"
done

RDB_MB=$(( $(stat -c %s "$WORK/plain.rdb") / 1024 / 1024 ))
B=$(median <"$WORK/bgsave"); R=$(median <"$WORK/replication"); P=$(median <"$WORK/plain")
printf '\n%s keys in db0 and 1000 in db1, RDB %s MiB, %s runs, medians:\n' "$DBSIZE" "$RDB_MB" "$RUNS"
printf '| method | mairie-dba backup | redis-cli --rdb + sha256sum | ratio |\n|---|---|---|---|\n'
printf '| bgsave | %.2f s | %.2f s | **%.2f** |\n' "$B" "$P" "$(echo "$B / $P" | bc -l)"
printf '| replication | %.2f s | %.2f s | **%.2f** |\n' "$R" "$P" "$(echo "$R / $P" | bc -l)"
