#!/usr/bin/env bash
# Benchmark: `mairie-dba monitor scan` on 1,000 expected jobs (200 sites of 5 databases) with
# about 2 GB of deposits, against `sha256sum` of the same files in the same run; then a scan
# with nothing new to hash; and the scan's peak memory. Medians of RUNS runs.
#
#   bench/monitor.sh                       # RUNS=3 SITES=200 DBS=5 TOTAL_MB=2048
#   RUNS=1 TOTAL_MB=256 bench/monitor.sh
#
# The deposits are crafted, as agents would leave them: incompressible bytes, a manifest and
# a STATUS.json per site naming each file's size and SHA-256. Each run puts the files back in
# the deposit and starts a new history, then times `sha256sum` over every file (which leaves
# them in the page cache) and the scan (which reads them all again, hashes them on every
# core, promotes them by rename into the validated tree on the same filesystem and records
# 1,000 occurrences in a SQLite history). Targets: scan / sha256sum <= 1.0, a scan with
# nothing new under 200 ms, peak RSS under 64 MB. Needs TOTAL_MB free under BENCH_WORK and
# GNU time (/usr/bin/time); no database server.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly ROOT=$PWD RUNS=${RUNS:-3} SITES=${SITES:-200} DBS=${DBS:-5} TOTAL_MB=${TOTAL_MB:-2048}
readonly WORK=${BENCH_WORK:-/tmp/mairie-dba-bench-monitor}
readonly BIN=${MAIRIE_DBA_BIN:-$ROOT/target/release/mairie-dba}
readonly NOW=2026-12-06T03:30:00Z

log() { printf '[bench] %s\n' "$*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.4f\n", b - a}'; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

[ -n "${BENCH_SKIP_BUILD:-}" ] || cargo build --release
rm -rf "$WORK" && mkdir -p "$WORK/store"

log "crafting $((SITES * DBS)) deposits, $TOTAL_MB MB in all"
python3 - "$WORK" "$SITES" "$DBS" "$TOTAL_MB" <<'PY'
import hashlib, json, os, sys
work, sites, dbs, total_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
size = total_mb * 1024 * 1024 // (sites * dbs)
jobs = []
for s in range(sites):
    site = f"site{s:03d}"
    lines = []
    for d in range(dbs):
        db = f"db{d}"
        name = f"{db}_full_20261206_020000.dump"
        path = os.path.join(work, "store", site, db)
        os.makedirs(path, exist_ok=True)
        data = os.urandom(size)
        with open(os.path.join(path, name), "wb") as f:
            f.write(data)
        with open(os.path.join(path, name + ".json"), "w") as f:
            json.dump({"file": name}, f)
        lines.append({"database": db, "engine": "postgres", "status": "success", "file": name,
                      "size_bytes": size, "sha256": hashlib.sha256(data).hexdigest(),
                      "started_at": "2026-12-06T02:00:00Z", "finished_at": "2026-12-06T02:00:30Z",
                      "backup_seconds": 30.0, "compression_seconds": None, "transfer_seconds": 1.0,
                      "error": None, "last_drill": None})
        jobs.append(f"    - {{id: {site}-{db}, company: ville, city: bench, site: {site}, "
                    f"database: {db}, engine: postgres, frequency: daily, at: \"02:00\"}}")
    with open(os.path.join(work, "store", site, "STATUS.json"), "w") as f:
        json.dump({"agent": {"company": "ville", "city": "bench", "site": site, "host": "h"},
                   "generated_at": "2026-12-06T02:05:00Z", "databases": lines}, f)
with open(os.path.join(work, "config_global.yml"), "w") as f:
    f.write(f"monitor:\n  deposit_dir: {work}/deposits\n  validated_dir: {work}/validated\n"
            f"  history: sqlite:{work}/monitor.db\n  jobs:\n" + "\n".join(jobs) + "\n")
PY

scan() { "$BIN" -c "$WORK/config_global.yml" -q monitor scan --now "$NOW" >/dev/null; }

: >"$WORK/sha.t"; : >"$WORK/scan.t"; : >"$WORK/idle.t"; : >"$WORK/rss.t"
for run in $(seq 1 "$RUNS"); do
    # A fresh deposit (hard links to the crafted files: the scan renames them away) and a
    # fresh history and validated tree.
    rm -rf "$WORK/deposits" "$WORK/validated" "$WORK"/monitor.db*
    mkdir -p "$WORK/deposits/ville/bench"
    cp -al "$WORK/store/." "$WORK/deposits/ville/bench/"
    # Deposits arrive over time and are on disk long before a scan: none is left dirty in
    # the page cache for the scan's fsyncs to write out.
    sync
    mapfile -t files < <(find "$WORK/deposits" -name '*.dump' | sort)
    t0=$(now); sha256sum "${files[@]}" >/dev/null; t1=$(now)
    elapsed "$t0" "$t1" >>"$WORK/sha.t"
    t0=$(now)
    /usr/bin/time -f '%M' -o "$WORK/rss.one" "$BIN" -c "$WORK/config_global.yml" -q monitor scan --now "$NOW" >/dev/null
    t1=$(now)
    elapsed "$t0" "$t1" >>"$WORK/scan.t"
    cat "$WORK/rss.one" >>"$WORK/rss.t"
    promoted=$(find "$WORK/validated" -name '*.dump' | wc -l)
    [ "$promoted" -eq "${#files[@]}" ] || { log "only $promoted of ${#files[@]} promoted"; exit 1; }
    t0=$(now); scan; t1=$(now)
    elapsed "$t0" "$t1" >>"$WORK/idle.t"
    log "run $run: sha256sum $(tail -1 "$WORK/sha.t") s, scan $(tail -1 "$WORK/scan.t") s, nothing new $(tail -1 "$WORK/idle.t") s, peak $(tail -1 "$WORK/rss.t") KiB"
done

sha=$(median <"$WORK/sha.t"); sc=$(median <"$WORK/scan.t"); idle=$(median <"$WORK/idle.t")
rss=$(sort -n "$WORK/rss.t" | tail -1)
printf '\nmonitor scan, %d jobs on %d sites, %d MB, %d core(s), medians of %d runs\n' \
    "$((SITES * DBS))" "$SITES" "$TOTAL_MB" "$(nproc)" "$RUNS"
printf '  sha256sum of the same files  %8.3f s\n' "$sha"
printf '  monitor scan (hash, promote, record)  %8.3f s   ratio %.2f (target <= 1.0)\n' "$sc" "$(awk -v a="$sc" -v b="$sha" 'BEGIN {print a / b}')"
printf '  monitor scan, nothing new    %8.3f s   (target < 0.2)\n' "$idle"
printf '  peak RSS of a scan           %8d KiB (target < 65536)\n' "$rss"
