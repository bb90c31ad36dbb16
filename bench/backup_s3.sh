#!/usr/bin/env bash
# Benchmark: `mairie-dba backup` straight into a bucket (dir: s3://…, one pass: the dump
# streams up as a multipart upload while hashed) against the two-step way, `mairie-dba backup`
# to local disk then `aws s3 cp` of the same file; and `mairie-dba restore --latest` from the
# bucket against the same restore from disk. PostgreSQL, the project's SeaweedFS
# (scripts/dev-services.sh) as the store, a pgbench database plus TEXT_ROWS rows of md5 text
# (which compress only about twice, unlike pgbench's); medians of RUNS runs, in alternating
# order, and their ratios. Target: backup to S3 ≤ 0.8 × (backup to disk + copy).
#
#   bench/backup_s3.sh                  # RUNS=5 SCALE=20 TEXT_ROWS=1500000 (a dump of ~60 MB)
#   RUNS=3 SCALE=5 TEXT_ROWS=0 bench/backup_s3.sh
#
# awscli comes from PyPI into a venv of its own (AWSCLI_VENV, default
# /var/lib/mairie-dba/awscli-venv), made on the first run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/dev-servers.env
readonly ROOT=$PWD RUNS=${RUNS:-5} SCALE=${SCALE:-20} TEXT_ROWS=${TEXT_ROWS:-1500000}
readonly WORK=${BENCH_WORK:-/tmp/mairie-dba-bench-s3}
readonly BIN=${MAIRIE_DBA_BIN:-$ROOT/target/release/mairie-dba}
readonly VENV=${AWSCLI_VENV:-/var/lib/mairie-dba/awscli-venv}
readonly DB=bench_s3_src BUCKET=mairie-bench-$$
export MAIRIE_PG_PASSWORD=${MAIRIE_PG_PASSWORD:-$MAIRIE_DEV_PASSWORD}
export PGPASSWORD=$MAIRIE_PG_PASSWORD PGHOST=127.0.0.1 PGPORT=$MAIRIE_DEV_PG_PORT PGUSER=mairie
export AWS_ACCESS_KEY_ID=$MAIRIE_DEV_S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$MAIRIE_DEV_S3_SECRET_KEY
export AWS_DEFAULT_REGION=$MAIRIE_DEV_S3_REGION
unset AWS_SESSION_TOKEN AWS_PROFILE
readonly ENDPOINT=http://127.0.0.1:$MAIRIE_DEV_S3_PORT

log() { printf '[bench] %s\n' "$*" >&2; }
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
# Retried: an autovacuum worker on a database just restored cannot be ended by this role.
dropdb_q() {
    local i
    for i in $(seq 1 60); do
        psql -qX -d postgres -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    psql -qX -d postgres -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" >/dev/null
}
aws() { "$VENV/bin/aws" --endpoint-url "$ENDPOINT" "$@"; }
empty_bucket() { aws s3 rm --quiet --recursive "s3://$BUCKET/" >/dev/null 2>&1 || true; }
cleanup() {
    for d in $DB bench_s3_restored; do dropdb_q "$d" || true; done
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
mkdir -p "$WORK"
# Path-style addressing for the local store.
export AWS_CONFIG_FILE=$WORK/aws.config
printf '[default]\ns3 =\n  addressing_style = path\n' > "$AWS_CONFIG_FILE"
[ -n "${BENCH_SKIP_BUILD:-}" ] || cargo build --release
aws s3api create-bucket --bucket "$BUCKET" >/dev/null
MACHINE="$(nproc) vCPU $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(free -g | awk '/Mem:/ {print $2}') GiB RAM"
log "$MACHINE; $(date -u +%FT%TZ); pgbench scale $SCALE + $TEXT_ROWS rows of md5 text; $RUNS runs; $("$VENV/bin/aws" --version 2>&1)"

dropdb_q $DB
psql -qX -d postgres -c "CREATE DATABASE $DB"
pgbench -q -i -s "$SCALE" $DB >/dev/null 2>&1
psql -qX -d $DB -c "CREATE TABLE texte AS SELECT g, md5(g::text) || md5((g * 3)::text) AS t
    FROM generate_series(1, $TEXT_ROWS) g" -c "VACUUM ANALYZE texte"

conf() { # $1: dir
    printf 'connection:\n  host: 127.0.0.1\n  port: %s\n  database: %s\n  user: mairie\n  password_env: MAIRIE_PG_PASSWORD\n' \
        "$MAIRIE_DEV_PG_PORT" "$DB" > "$WORK/config_postgres.yml"
    printf 'targets:\n  postgres:\n    engine: postgres\n    config: config_postgres.yml\nbackup:\n  postgres:\n    dir: %s\n    keep_min: 100\n' "$1"
}
conf "$WORK/local" > "$WORK/local.yml"
{ conf "s3://$BUCKET/pg"; printf '    s3:\n      endpoint: %s\n' "$ENDPOINT"; } > "$WORK/s3.yml"
run() { "$BIN" -c "$WORK/$1.yml" --no-progress -q "${@:2}"; }

: > "$WORK/s3_backup.txt"; : > "$WORK/two_step.txt"; : > "$WORK/s3_restore.txt"; : > "$WORK/disk_restore.txt"
for i in $(seq 1 "$RUNS"); do
    for what in $( ((i % 2)) && echo "s3 two" || echo "two s3"); do
        rm -rf "$WORK/local"; empty_bucket
        if [ "$what" = s3 ]; then
            t0=$(now); run s3 backup >/dev/null; t1=$(now)
            echo "$t1 - $t0" | bc >> "$WORK/s3_backup.txt"
        else
            t0=$(now); run local backup >/dev/null
            f=$(ls "$WORK/local"/*.dump)
            aws s3 cp --quiet "$f" "s3://$BUCKET/copy/$(basename "$f")"
            aws s3 cp --quiet "$f.json" "s3://$BUCKET/copy/$(basename "$f").json"
            t1=$(now)
            echo "$t1 - $t0" | bc >> "$WORK/two_step.txt"
        fi
    done
    # Restores of the backup just taken, from the bucket and from disk.
    rm -rf "$WORK/local"; empty_bucket
    run s3 backup >/dev/null; run local backup >/dev/null
    for what in $( ((i % 2)) && echo "s3 disk" || echo "disk s3"); do
        dropdb_q bench_s3_restored
        t0=$(now)
        if [ "$what" = s3 ]; then run s3 restore --latest --into bench_s3_restored >/dev/null
        else run local restore --latest --into bench_s3_restored >/dev/null; fi
        t1=$(now)
        echo "$t1 - $t0" | bc >> "$WORK/${what}_restore.txt"
    done
    log "run $i: backup to s3 $(tail -1 "$WORK/s3_backup.txt") s, disk+aws s3 cp $(tail -1 "$WORK/two_step.txt") s; restore from s3 $(tail -1 "$WORK/s3_restore.txt") s, from disk $(tail -1 "$WORK/disk_restore.txt") s"
done
size=$(du -h "$(ls "$WORK/local"/*.dump)" | cut -f1)
b=$(median < "$WORK/s3_backup.txt"); t=$(median < "$WORK/two_step.txt")
rs=$(median < "$WORK/s3_restore.txt"); rd=$(median < "$WORK/disk_restore.txt")
printf 'dump %s\tbackup to s3 %.2f s\tdisk + aws s3 cp %.2f s\tratio %.2f\n' "$size" "$b" "$t" "$(echo "$b / $t" | bc -l)"
printf 'restore from s3 %.2f s\tfrom disk %.2f s\tratio %.2f\n' "$rs" "$rd" "$(echo "$rs / $rd" | bc -l)"
