#!/usr/bin/env bash
# Benchmark: what `mairie-dba backup check` costs as the latest backup grows (1 MB, 100 MB,
# 2 GB by default), beside `backup check --deep` (the full re-hash every check used to do),
# medians of RUNS runs and their ratio.
#
#   bench/backup_check.sh                     # RUNS=11 DEEP_RUNS=3 SIZES="1M 100M 2G"
#   RUNS=5 SIZES="1M 10M" bench/backup_check.sh
#
# `backup check` never connects to a server and reads a backup's bytes only with --deep, so
# the backups here are crafted rather than dumped: incompressible bytes from /dev/urandom and
# a manifest that matches them (size, SHA-256, modification time), as `backup` writes it. The
# file is read once by sha256sum right after it is written, so --deep reads it from the page
# cache: the figures are a floor for --deep (a cold cache adds the disk's read time), not for
# the plain check, which only calls stat(2). Each time includes starting the process.
# Needs about the largest size free under BENCH_WORK; no database server.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly ROOT=$PWD RUNS=${RUNS:-11} DEEP_RUNS=${DEEP_RUNS:-3} SIZES=${SIZES:-"1M 100M 2G"}
readonly WORK=${BENCH_WORK:-/tmp/mairie-dba-bench-check}
readonly BIN=${MAIRIE_DBA_BIN:-$ROOT/target/release/mairie-dba}
readonly DB=bench_check
# The engine file names a password variable; `backup check` resolves it but never connects.
export MAIRIE_PG_PASSWORD=${MAIRIE_PG_PASSWORD:-unused}

log() { printf '[bench] %s\n' "$*" >&2; }
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

[ -n "${BENCH_SKIP_BUILD:-}" ] || cargo build --release
rm -rf "$WORK" && mkdir -p "$WORK/backups"
cat > "$WORK/config_postgres.yml" <<YML
connection:
  host: 127.0.0.1
  database: $DB
  user: mairie
  password_env: MAIRIE_PG_PASSWORD
YML
cat > "$WORK/config_global.yml" <<YML
state_dir: $WORK/state
targets:
  postgres:
    engine: postgres
    config: config_postgres.yml
backup:
  postgres:
    dir: $WORK/backups
YML
CFG=$WORK/config_global.yml

# A backup of SIZE bytes taken an hour ago, with its manifest.
craft() {
    local bytes=$1 taken file path sha mtime
    taken=$(date -u -d '1 hour ago' +%s)
    file="${DB}_full_$(date -u -d "@$taken" +%Y%m%d_%H%M%S).dump"
    path=$WORK/backups/$file
    head -c "$bytes" /dev/urandom > "$path"
    sync -f "$path"
    sha=$(sha256sum "$path" | cut -d' ' -f1)
    mtime=$(date -u -d "@$(stat -c '%.9Y' "$path")" +%Y-%m-%dT%H:%M:%S.%NZ)
    local at
    at=$(date -u -d "@$taken" +%Y-%m-%dT%H:%M:%SZ)
    cat > "$path.json" <<JSON
{"engine": "postgres", "target": "postgres", "database": "$DB", "file": "$file",
 "size_bytes": $bytes, "sha256": "$sha", "started_at": "$at", "finished_at": "$at",
 "status": "success", "tool": "crafted by bench/backup_check.sh", "tables": {},
 "mtime": "$mtime"}
JSON
}

# "median quickest" seconds of N runs of `backup check ARGS` (exit 0 required).
timed() {
    local n=$1 times; shift
    times=$(for _ in $(seq 1 "$n"); do
        local s e
        s=$(now); "$BIN" -c "$CFG" -q --no-progress backup check "$@" >/dev/null; e=$(now)
        awk "BEGIN {print $e - $s}"
    done)
    echo "$(median <<<"$times") $(sort -g <<<"$times" | head -1)"
}

bytes_of() { numfmt --from=iec "$1"; }

declare -a rows
for size in $SIZES; do
    rm -f "$WORK"/backups/*
    bytes=$(bytes_of "$size")
    log "crafting a $size backup"
    craft "$bytes"
    log "timing backup check ($RUNS runs) and --deep ($DEEP_RUNS runs)"
    read -r t_check q_check <<<"$(timed "$RUNS")"
    read -r t_deep q_deep <<<"$(timed "$DEEP_RUNS" --deep)"
    rows+=("$size $t_check $q_check $t_deep $q_deep")
    log "  $size: check ${t_check}s (quickest ${q_check}s), --deep ${t_deep}s (quickest ${q_deep}s)"
done

echo "== mairie-dba backup check benchmark =="
echo "date        $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "machine     $(nproc) CPU(s), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), RAM $(free -g | awk '/Mem:/ {print $2}') GiB"
echo "filesystem  $(df -T "$WORK" | awk 'NR==2 {print $2}') ($WORK)"
echo "binary      $BIN ($("$BIN" --version))"
echo "runs        $RUNS (check), $DEEP_RUNS (--deep); process start included"
echo "load        $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min, at the end)"
echo
ms() { awk "BEGIN {printf \"%.1f\", $1 * 1000}"; }
printf '%-6s %12s %12s %12s %12s %11s\n' size "check ms" "(quickest)" "--deep ms" "(quickest)" "deep/check"
first=
for r in "${rows[@]}"; do
    read -r size c qc d qd <<<"$r"
    [ -n "$first" ] || first=$c
    printf '%-6s %12s %12s %12s %12s %11.1f\n' "$size" "$(ms "$c")" "$(ms "$qc")" "$(ms "$d")" \
        "$(ms "$qd")" "$(awk "BEGIN {print $d / $c}")"
done
echo
echo "median check time, largest size / smallest: $(awk "BEGIN {printf \"%.2f\", $c / $first}")"
