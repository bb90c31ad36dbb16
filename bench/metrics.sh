#!/usr/bin/env bash
# Benchmark: `mairie-dba metrics serve` against Debian's prometheus-postgres-exporter on the
# same PostgreSQL database, in the same run: scrape latency (median and p95 of RUNS
# sequential scrapes, after a warm-up) and resident memory (VmRSS after the scrapes, and the
# peak VmHWM). mairie-dba runs with `min_interval: 0`, so that every scrape pays a full round
# of queries like the peer does (in production its cache makes scrapes cheaper still).
#
#   bench/metrics.sh            # RUNS=50, database mairie (with the demo data)
#   BENCH_DB=other bench/metrics.sh    # another database of the project's server
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The project's own servers (scripts/dev-services.sh): ports and throwaway passwords.
. scripts/dev-servers.env
readonly ROOT=$PWD RUNS=${RUNS:-50} DB=${BENCH_DB:-mairie}
readonly BIN=${MAIRIE_DBA_BIN:-$ROOT/target/release/mairie-dba}
readonly WORK=${BENCH_WORK:-/tmp/mairie-dba-bench-metrics}
export MAIRIE_PG_PASSWORD=${MAIRIE_PG_PASSWORD:-$MAIRIE_DEV_PASSWORD}

log() { printf '[bench] %s\n' "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

[ -n "${BENCH_SKIP_BUILD:-}" ] || cargo build --release
PEER=$(command -v prometheus-postgres-exporter || true)
if [ -z "$PEER" ]; then
    log "installing prometheus-postgres-exporter"
    DEBIAN_FRONTEND=noninteractive apt-get install -y prometheus-postgres-exporter >/dev/null
    PEER=$(command -v prometheus-postgres-exporter)
fi
# The package starts its own instance where it can; ours runs on a port of its own.
mkdir -p "$WORK"
cat > "$WORK/config_postgres.yml" <<YML
connection:
  host: 127.0.0.1
  port: $MAIRIE_DEV_PG_PORT
  database: $DB
  user: mairie
  password_env: MAIRIE_PG_PASSWORD
  sslmode: disable
YML
cat > "$WORK/config_global.yml" <<YML
targets:
  postgres:
    engine: postgres
    config: config_postgres.yml
metrics:
  min_interval: 0
YML

P1=$(free_port)
"$BIN" -c "$WORK/config_global.yml" -q metrics serve --listen "127.0.0.1:$P1" &
PIDS+=($!); M_PID=$!
P2=$(free_port)
DATA_SOURCE_NAME="postgresql://mairie:${MAIRIE_PG_PASSWORD}@127.0.0.1:$MAIRIE_DEV_PG_PORT/$DB?sslmode=disable" \
    "$PEER" --web.listen-address="127.0.0.1:$P2" >/dev/null 2>&1 &
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

log "scraping each exporter $RUNS times (alternating batches)"
M_TIMES=$(scrape_times "$P1"); E_TIMES=$(scrape_times "$P2")
read -r m_med m_p95 <<<"$(echo "$M_TIMES" | stat)"
read -r e_med e_p95 <<<"$(echo "$E_TIMES" | stat)"
read -r m_rss m_hwm <<<"$(mem "$M_PID")"
read -r e_rss e_hwm <<<"$(mem "$E_PID")"
m_series=$(curl -s "http://127.0.0.1:$P1/metrics" | grep -vc '^#')
e_series=$(curl -s "http://127.0.0.1:$P2/metrics" | grep -vc '^#')
# Metric families (# TYPE lines), and those about the database rather than the exporter
# itself (the peer's go_*, process_*, promhttp_* and postgres_exporter_*; our own scrape
# counters and probe histogram).
m_families=$(curl -s "http://127.0.0.1:$P1/metrics" | grep -c '^# TYPE')
e_families=$(curl -s "http://127.0.0.1:$P2/metrics" | grep -c '^# TYPE')
m_db_families=$(curl -s "http://127.0.0.1:$P1/metrics" | grep '^# TYPE' \
    | grep -vcE ' mairie_dba_(scrapes_total|scrape_errors_total|probe_duration_seconds|scrape_duration_seconds|scrape_error|up) ')
e_db_families=$(curl -s "http://127.0.0.1:$P2/metrics" | grep '^# TYPE' \
    | grep -vcE ' (go_|process_|promhttp_|postgres_exporter_|pg_exporter_|pg_up |pg_scrape_)')
# The peer exposes each server setting as a family of its own (pg_settings_*).
e_settings=$(curl -s "http://127.0.0.1:$P2/metrics" | grep -c '^# TYPE pg_settings_')

echo "== mairie-dba metrics benchmark =="
echo "date        $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "machine     $(nproc) CPU(s), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), RAM $(free -g | awk '/Mem:/ {print $2}') GiB"
echo "postgres    $(PGPASSWORD=$MAIRIE_PG_PASSWORD psql -h 127.0.0.1 -p "$MAIRIE_DEV_PG_PORT" -U mairie -d "$DB" -AtXc 'SHOW server_version')"
echo "load        $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min, at the end)"
echo "peer        $("$PEER" --version 2>&1 | head -1)"
echo "runs        $RUNS sequential scrapes each, after 5 warm-up scrapes"
echo
printf '%-30s %14s %14s %8s\n' measure mairie-dba postgres_exporter ratio
printf '%-30s %14s %14s %8s\n' "scrape latency median (ms)" "$m_med" "$e_med" "$(awk "BEGIN {printf \"%.2f\", $m_med / $e_med}")"
printf '%-30s %14s %14s %8s\n' "scrape latency p95 (ms)" "$m_p95" "$e_p95" "$(awk "BEGIN {printf \"%.2f\", $m_p95 / $e_p95}")"
printf '%-30s %14s %14s %8s\n' "RSS after scrapes (MB)" "$m_rss" "$e_rss" "$(awk "BEGIN {printf \"%.2f\", $m_rss / $e_rss}")"
printf '%-30s %14s %14s %8s\n' "peak RSS (MB)" "$m_hwm" "$e_hwm" "$(awk "BEGIN {printf \"%.2f\", $m_hwm / $e_hwm}")"
printf '%-30s %14s %14s\n' "series exposed" "$m_series" "$e_series"
printf '%-30s %14s %14s\n' "metric families" "$m_families" "$e_families"
printf '%-30s %14s %14s\n' "  about the database" "$m_db_families" "$e_db_families"
printf '%-30s %14s %14s\n' "  without pg_settings_*" "$m_db_families" "$((e_db_families - e_settings))"
