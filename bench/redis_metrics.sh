#!/usr/bin/env bash
# Benchmark: `mairie-dba metrics serve` on a Redis target against Debian's
# prometheus-redis-exporter on the same throwaway redis-server, in the same run: scrape
# latency (median and p95 of RUNS sequential scrapes each, after a warm-up) and resident
# memory. mairie-dba runs with `min_interval: 0`, so that every scrape pays a full round
# (seven INFO sections) like the peer does. The server holds a realistic keyspace: KEYS
# string keys of 200 bytes in db0, a tenth of them with a TTL, and 2,000 hashes in db1.
#
#   bench/redis_metrics.sh            # RUNS=50, KEYS=200000
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly ROOT=$PWD RUNS=${RUNS:-50} KEYS=${KEYS:-200000}
readonly BIN=${MAIRIE_DBA_BIN:-$ROOT/target/release/mairie-dba}
readonly WORK=${BENCH_WORK:-/tmp/mairie-dba-bench-redis-metrics}

log() { printf '[bench] %s\n' "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

[ -n "${BENCH_SKIP_BUILD:-}" ] || cargo build --release
PEER=$(command -v prometheus-redis-exporter || true)
if [ -z "$PEER" ]; then
    log "installing prometheus-redis-exporter"
    DEBIAN_FRONTEND=noninteractive apt-get install -y prometheus-redis-exporter >/dev/null
    PEER=$(command -v prometheus-redis-exporter)
fi
rm -rf "$WORK"; mkdir -p "$WORK/data"

# A throwaway server on a free loopback port (the machine's own Redis is not touched).
RP=$(free_port)
redis-server --port "$RP" --bind 127.0.0.1 --dir "$WORK/data" --save '' --appendonly no \
    --maxmemory 512mb --maxmemory-policy allkeys-lru --logfile "$WORK/redis.log" &
PIDS+=($!)
for _ in $(seq 1 100); do redis-cli -p "$RP" PING >/dev/null 2>&1 && break; sleep 0.1; done
log "filling $KEYS keys"
python3 - "$KEYS" <<'PY' | redis-cli -p "$RP" --pipe >/dev/null
import sys
n = int(sys.argv[1]); out = sys.stdout
def cmd(*a):
    out.write("*%d\r\n" % len(a))
    for x in a:
        out.write("$%d\r\n%s\r\n" % (len(x.encode()), x))
v = "v" * 200
for i in range(n):
    cmd("SET", "session:%d" % i, v)
    if i % 10 == 0:
        cmd("EXPIRE", "session:%d" % i, "86400")
cmd("SELECT", "1")
for i in range(2000):
    cmd("HSET", "citoyen:%d" % i, "nom", "Dupont", "ville", "Marseille", "age", str(i % 90))
PY
# Some traffic, so the counters are not all zero.
redis-benchmark -p "$RP" -q -n 20000 -r "$KEYS" -t get >/dev/null 2>&1 || true

cat > "$WORK/config_redis.yml" <<YML
connection:
  host: 127.0.0.1
  port: $RP
YML
cat > "$WORK/config_global.yml" <<YML
targets:
  redis:
    engine: redis
    config: config_redis.yml
metrics:
  min_interval: 0
YML

P1=$(free_port)
"$BIN" -c "$WORK/config_global.yml" -q metrics serve --listen "127.0.0.1:$P1" &
PIDS+=($!); M_PID=$!
P2=$(free_port)
# The package starts its own instance where it can; ours runs on a port of its own.
"$PEER" -redis.addr "redis://127.0.0.1:$RP" -web.listen-address "127.0.0.1:$P2" >/dev/null 2>&1 &
PIDS+=($!); E_PID=$!
for p in $P1 $P2; do
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$p/metrics" >/dev/null && break; sleep 0.1; done
done

scrape_times() { # port -> one time per line (seconds)
    for _ in $(seq 1 5); do curl -s -o /dev/null "http://127.0.0.1:$1/metrics"; done  # warm-up
    for _ in $(seq 1 "$RUNS"); do curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$1/metrics"; done
}
stat() { sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; p=a[int(NR*0.95+0.5)]; printf "%.2f %.2f", m*1000, p*1000}'; }
mem() { awk '/^VmRSS/ {r=$2} /^VmHWM/ {h=$2} END {printf "%.1f %.1f", r/1024, h/1024}' "/proc/$1/status"; }

log "scraping each exporter $RUNS times"
M_TIMES=$(scrape_times "$P1"); E_TIMES=$(scrape_times "$P2")
read -r m_med m_p95 <<<"$(echo "$M_TIMES" | stat)"
read -r e_med e_p95 <<<"$(echo "$E_TIMES" | stat)"
read -r m_rss m_hwm <<<"$(mem "$M_PID")"
read -r e_rss e_hwm <<<"$(mem "$E_PID")"
m_series=$(curl -s "http://127.0.0.1:$P1/metrics" | grep -vc '^#')
e_series=$(curl -s "http://127.0.0.1:$P2/metrics" | grep -vc '^#')
m_families=$(curl -s "http://127.0.0.1:$P1/metrics" | grep -c '^# TYPE')
e_families=$(curl -s "http://127.0.0.1:$P2/metrics" | grep -c '^# TYPE')

echo "== mairie-dba Redis metrics benchmark =="
echo "date        $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "machine     $(nproc) CPU(s), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), RAM $(free -g | awk '/Mem:/ {print $2}') GiB"
echo "redis       $(redis-server --version | cut -d' ' -f3), $(redis-cli -p "$RP" DBSIZE) keys in db0, used $(redis-cli -p "$RP" INFO memory | tr -d '\r' | awk -F: '/^used_memory_human/ {print $2}')"
echo "load        $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min, at the end)"
echo "peer        $("$PEER" --version 2>&1 | head -1)"
echo "runs        $RUNS sequential scrapes each, after 5 warm-up scrapes"
echo
printf '%-30s %14s %14s %8s\n' measure mairie-dba redis_exporter ratio
printf '%-30s %14s %14s %8s\n' "scrape latency median (ms)" "$m_med" "$e_med" "$(awk "BEGIN {printf \"%.2f\", $m_med / $e_med}")"
printf '%-30s %14s %14s %8s\n' "scrape latency p95 (ms)" "$m_p95" "$e_p95" "$(awk "BEGIN {printf \"%.2f\", $m_p95 / $e_p95}")"
printf '%-30s %14s %14s %8s\n' "RSS after scrapes (MB)" "$m_rss" "$e_rss" "$(awk "BEGIN {printf \"%.2f\", $m_rss / $e_rss}")"
printf '%-30s %14s %14s %8s\n' "peak RSS (MB)" "$m_hwm" "$e_hwm" "$(awk "BEGIN {printf \"%.2f\", $m_hwm / $e_hwm}")"
printf '%-30s %14s %14s\n' "series exposed" "$m_series" "$e_series"
printf '%-30s %14s %14s\n' "metric families" "$m_families" "$e_families"
