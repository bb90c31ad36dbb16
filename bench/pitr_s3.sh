#!/usr/bin/env bash
# Benchmark: `mairie-dba pitr base-backup` straight into a bucket (base_dir: s3://…, one pass:
# pg_basebackup's tar checked, compressed and hashed as it streams up in a multipart upload)
# against the two-step way, the same command to a local directory then `aws s3 cp` of the
# base backup and its manifest; and `mairie-dba pitr restore --latest` (unpacked, hash-checked,
# pg_verifybackup; not started) from the bucket against the same from disk. A throwaway
# PostgreSQL 15 cluster of its own (initdb, as `postgres` when run as root) holding a pgbench
# database plus TEXT_ROWS rows of md5 text; the project's SeaweedFS (scripts/dev-services.sh)
# as the store; medians of RUNS runs in alternating order, and their ratios. Target: the one
# pass ≤ 0.8 × the two steps, as for plain backups (bench/backup_s3.sh).
#
#   bench/pitr_s3.sh                    # RUNS=5 SCALE=20 TEXT_ROWS=1500000
#   RUNS=3 SCALE=5 TEXT_ROWS=0 bench/pitr_s3.sh
#
# awscli comes from PyPI into a venv of its own (AWSCLI_VENV, default
# /var/lib/mairie-dba/awscli-venv), made on the first run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/dev-servers.env
readonly ROOT=$PWD RUNS=${RUNS:-5} SCALE=${SCALE:-20} TEXT_ROWS=${TEXT_ROWS:-1500000}
readonly WORK=${BENCH_WORK:-/tmp/mairie-dba-bench-pitr-s3}
readonly BIN=${MAIRIE_DBA_BIN:-$ROOT/target/release/mairie-dba}
readonly VENV=${AWSCLI_VENV:-/var/lib/mairie-dba/awscli-venv}
readonly PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
readonly BUCKET=mairie-bench-pitr-$$
export AWS_ACCESS_KEY_ID=$MAIRIE_DEV_S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$MAIRIE_DEV_S3_SECRET_KEY
export AWS_DEFAULT_REGION=$MAIRIE_DEV_S3_REGION
unset AWS_SESSION_TOKEN AWS_PROFILE
readonly ENDPOINT=http://127.0.0.1:$MAIRIE_DEV_S3_PORT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
readonly PORT

log() { printf '[bench] %s\n' "$*" >&2; }
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
as_server() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
aws() { "$VENV/bin/aws" --endpoint-url "$ENDPOINT" "$@"; }
empty_bucket() { aws s3 rm --quiet --recursive "s3://$BUCKET/" >/dev/null 2>&1 || true; }
cleanup() {
    as_server "$PG_BIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
    empty_bucket
    aws s3api delete-bucket --bucket "$BUCKET" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ ! -x "$VENV/bin/aws" ]; then
    log "installing awscli (PyPI) in $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet awscli
fi
rm -rf "$WORK"; mkdir -p "$WORK/data" "$WORK/sock" "$WORK/archive"
chmod 755 "$WORK"; chmod 700 "$WORK/data"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$WORK/data" "$WORK/sock" "$WORK/archive"
export AWS_CONFIG_FILE=$WORK/aws.config
printf '[default]\ns3 =\n  addressing_style = path\n' > "$AWS_CONFIG_FILE"
[ -n "${BENCH_SKIP_BUILD:-}" ] || cargo build --release
aws s3api create-bucket --bucket "$BUCKET" >/dev/null
MACHINE="$(nproc) vCPU $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(free -g | awk '/Mem:/ {print $2}') GiB RAM"
log "$MACHINE; $(date -u +%FT%TZ); pgbench scale $SCALE + $TEXT_ROWS rows of md5 text; $RUNS runs; $("$VENV/bin/aws" --version 2>&1)"

as_server "$PG_BIN/initdb" -A trust -U postgres --no-sync -D "$WORK/data" >/dev/null
printf "port = %s\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\nwal_level = replica\nmax_wal_size = 1GB\n" \
    "$PORT" "$WORK/sock" >> "$WORK/data/postgresql.conf"
as_server "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/sock/server.log" -w start >/dev/null
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
pgbench -q -i -s "$SCALE" postgres >/dev/null 2>&1
psql -qX -d postgres -c "CREATE TABLE texte AS SELECT g, md5(g::text) || md5((g * 3)::text) AS t
    FROM generate_series(1, $TEXT_ROWS) g" -c "VACUUM ANALYZE texte" -c "CHECKPOINT"
DATA=$(psql -qXAt -d postgres -c "SELECT pg_size_pretty(sum(pg_database_size(datname))) FROM pg_database")

printf 'connection:\n  host: 127.0.0.1\n  port: %s\n  database: postgres\n  user: postgres\n  sslmode: disable\n  password_env: MAIRIE_BENCH_UNSET\n' \
    "$PORT" > "$WORK/config_pg.yml"
conf() { # $1: base_dir
    printf 'targets:\n  pg:\n    engine: postgres\n    config: config_pg.yml\npitr:\n  pg:\n    archive_dir: %s\n    base_dir: %s\n    keep_base: 100\n' \
        "$WORK/archive" "$1"
}
conf "$WORK/base" > "$WORK/local.yml"
{ conf "s3://$BUCKET/base"; printf '    s3:\n      endpoint: %s\n' "$ENDPOINT"; } > "$WORK/s3.yml"
run() { MAIRIE_BENCH_UNSET=unused "$BIN" -c "$WORK/$1.yml" --no-progress -q "${@:2}"; }

: > "$WORK/s3_backup.txt"; : > "$WORK/two_step.txt"; : > "$WORK/s3_restore.txt"; : > "$WORK/disk_restore.txt"
for i in $(seq 1 "$RUNS"); do
    for what in $( ((i % 2)) && echo "s3 two" || echo "two s3"); do
        rm -rf "$WORK/base"; empty_bucket
        if [ "$what" = s3 ]; then
            t0=$(now); run s3 pitr base-backup >/dev/null; t1=$(now)
            echo "$t1 - $t0" | bc >> "$WORK/s3_backup.txt"
        else
            t0=$(now); run local pitr base-backup >/dev/null
            f=$(ls "$WORK/base"/base-*.tar.zst)
            aws s3 cp --quiet "$f" "s3://$BUCKET/copy/$(basename "$f")"
            aws s3 cp --quiet "$f.json" "s3://$BUCKET/copy/$(basename "$f").json"
            t1=$(now)
            echo "$t1 - $t0" | bc >> "$WORK/two_step.txt"
        fi
    done
    # Restores (unpacked and checked, not started) of the base backup just taken.
    rm -rf "$WORK/base"; empty_bucket
    run s3 pitr base-backup >/dev/null; run local pitr base-backup >/dev/null
    for what in $( ((i % 2)) && echo "s3 disk" || echo "disk s3"); do
        rm -rf "$WORK/restored"
        t0=$(now)
        if [ "$what" = s3 ]; then run s3 pitr restore --latest --pgdata "$WORK/restored" >/dev/null
        else run local pitr restore --latest --pgdata "$WORK/restored" >/dev/null; fi
        t1=$(now)
        echo "$t1 - $t0" | bc >> "$WORK/${what}_restore.txt"
    done
    log "run $i: base backup to s3 $(tail -1 "$WORK/s3_backup.txt") s, disk+aws s3 cp $(tail -1 "$WORK/two_step.txt") s; restore from s3 $(tail -1 "$WORK/s3_restore.txt") s, from disk $(tail -1 "$WORK/disk_restore.txt") s"
done
rm -rf "$WORK/restored"
size=$(du -h "$(ls "$WORK/base"/base-*.tar.zst)" | cut -f1)
b=$(median < "$WORK/s3_backup.txt"); t=$(median < "$WORK/two_step.txt")
rs=$(median < "$WORK/s3_restore.txt"); rd=$(median < "$WORK/disk_restore.txt")
printf 'data %s, base backup %s\tto s3 %.2f s\tdisk + aws s3 cp %.2f s\tratio %.2f\n' "$DATA" "$size" "$b" "$t" "$(echo "$b / $t" | bc -l)"
printf 'restore from s3 %.2f s\tfrom disk %.2f s\tratio %.2f\n' "$rs" "$rd" "$(echo "$rs / $rd" | bc -l)"
for f in s3_backup two_step s3_restore disk_restore; do printf '%s: %s\n' "$f" "$(paste -sd' ' "$WORK/$f.txt")"; done
