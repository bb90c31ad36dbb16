#!/usr/bin/env bash
# Benchmark: `mairie-dba anonymize` of a backup of the mairie model with 1,000,000 generated
# citizens (plus the demo data) vs a plain `mairie-dba restore` of the same backup into a new
# database, on PostgreSQL and MariaDB, medians of RUNS runs (order alternated) and their
# ratio. The anonymize restores the backup with every ruled column rewritten as the rows
# stream to the server (every citizen: fake names and street, e-mail, phone, birth year),
# then the detection samples, the check of the first 1,000 originals per column, ANALYZE.
#
#   bench/anonymize.sh                 # RUNS=3 CITIZENS=1000000, both engines
#   RUNS=5 ENGINES=postgres bench/anonymize.sh
#
# Needs the local servers of scripts/dev-services.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/dev-servers.env
readonly ROOT=$PWD RUNS=${RUNS:-3} CITIZENS=${CITIZENS:-1000000}
readonly ENGINES=${ENGINES:-"postgres mysql"}
readonly WORK=${BENCH_WORK:-/tmp/mairie-dba-bench-anonymize}
readonly BIN=${MAIRIE_DBA_BIN:-$ROOT/target/release/mairie-dba}
export MAIRIE_PG_PASSWORD=${MAIRIE_PG_PASSWORD:-$MAIRIE_DEV_PASSWORD}
export MAIRIE_MYSQL_PASSWORD=${MAIRIE_MYSQL_PASSWORD:-$MAIRIE_DEV_PASSWORD}
export MAIRIE_PRIVACY_KEY=${MAIRIE_PRIVACY_KEY:-bench-key-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}
readonly SRC=bench_anon_src

log() { printf '[bench] %s\n' "$*" >&2; }
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
pg() { PGPASSWORD=$MAIRIE_PG_PASSWORD psql -qAtX -h 127.0.0.1 -p "$MAIRIE_DEV_PG_PORT" -U mairie "$@"; }
my() { MYSQL_PWD=$MAIRIE_MYSQL_PASSWORD mariadb -N -h 127.0.0.1 -P "$MAIRIE_DEV_MY_PORT" -u mairie "$@"; }
drop_db() {
    case $1 in
        postgres) pg -d postgres -c "DROP DATABASE IF EXISTS \"$2\" WITH (FORCE)" >/dev/null ;;
        mysql) my -e "DROP DATABASE IF EXISTS \`$2\`" ;;
    esac
}
cleanup() {
    for e in $ENGINES; do
        for d in $SRC bench_anon_restored bench_anon_copy; do drop_db "$e" "$d" || true; done
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

[ -n "${BENCH_SKIP_BUILD:-}" ] || cargo build --release
rm -rf "$WORK" && mkdir -p "$WORK"
MACHINE="$(nproc) vCPU $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(free -g | awk '/Mem:/ {print $2}') GiB RAM"
log "$MACHINE; $(date -u +%FT%TZ); $CITIZENS citizens; $RUNS runs"

for e in $ENGINES; do
    dir=$WORK/$e && mkdir -p "$dir/backups"
    case $e in
        postgres) port=$MAIRIE_DEV_PG_PORT; var=MAIRIE_PG_PASSWORD ;;
        mysql) port=$MAIRIE_DEV_MY_PORT; var=MAIRIE_MYSQL_PASSWORD ;;
    esac
    printf 'connection:\n  host: 127.0.0.1\n  port: %s\n  database: %s\n  user: mairie\n  password_env: %s\n' \
        "$port" "$SRC" "$var" > "$dir/config_$e.yml"
    {
        printf 'base_dir: %s\ntargets:\n  %s:\n    engine: %s\n    config: config_%s.yml\n' "$ROOT" "$e" "$e" "$e"
        printf 'backup:\n  %s:\n    dir: %s/backups\n    retention_days: 14\n    keep_min: 3\n' "$e" "$dir"
        sed -n '/^datasets:/,/^[a-z]/{/^[a-z]/!p;/^datasets:/p}' config/config_global.yml
        sed -n '/^privacy:/,$p' config/config_global.yml
    } > "$dir/config_global.yml"
    cfg=(-c "$dir/config_global.yml" --no-progress -q)
    drop_db "$e" $SRC
    case $e in
        postgres) pg -d postgres -c "CREATE DATABASE $SRC" ;;
        mysql) my -e "CREATE DATABASE $SRC CHARACTER SET utf8mb4" ;;
    esac
    "$BIN" "${cfg[@]}" schema apply >/dev/null
    "$BIN" "${cfg[@]}" load-csv --all >/dev/null
    log "$e: generating $CITIZENS citizens"
    case $e in
        postgres) pg -d $SRC -c "INSERT INTO metier.citoyens (id, civilite, nom, prenom, date_naissance,
                email, telephone, adresse, code_postal, arrondissement)
            SELECT 100000 + g, CASE WHEN g % 2 = 0 THEN 'M' ELSE 'Mme' END, 'Nom' || g, 'Prenom' || g,
                   make_date(1940 + g % 60, 1 + g % 12, 1 + g % 28), 'c' || g || '@example.org',
                   '06' || lpad(g::text, 8, '0'), g || ' rue du Banc', '130' || lpad((1 + g % 16)::text, 2, '0'),
                   1 + g % 16
            FROM generate_series(1, $CITIZENS) g" -c "VACUUM ANALYZE metier.citoyens" ;;
        mysql) d="(SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)"
            my $SRC -e "INSERT INTO metier_citoyens (id, civilite, nom, prenom, date_naissance,
                email, telephone, adresse, code_postal, arrondissement)
            SELECT 100000 + g, IF(g % 2 = 0, 'M', 'Mme'), CONCAT('Nom', g), CONCAT('Prenom', g),
                   STR_TO_DATE(CONCAT(1940 + g % 60, '-', 1 + g % 12, '-', 1 + g % 28), '%Y-%m-%d'),
                   CONCAT('c', g, '@example.org'), CONCAT('06', LPAD(g, 8, '0')), CONCAT(g, ' rue du Banc'),
                   CONCAT('130', LPAD(1 + g % 16, 2, '0')), 1 + g % 16
            FROM (SELECT 1 + a.d + 10*b.d + 100*c.d + 1000*x.d + 10000*y.d + 100000*z.d AS g
                  FROM $d a, $d b, $d c, $d x, $d y, $d z) s WHERE g <= $CITIZENS" ;;
    esac
    "$BIN" "${cfg[@]}" backup >/dev/null
    file=$dir/backups/$(ls -t "$dir/backups" | grep -E '\.(dump|sql\.zst|sql\.gz)$' | head -1)
    log "$e: backup $(basename "$file") ($(du -h "$file" | cut -f1))"
    : > "$dir/restore.txt"; : > "$dir/anonymize.txt"
    for i in $(seq 1 "$RUNS"); do
        for what in $( ((i % 2)) && echo "restore anonymize" || echo "anonymize restore"); do
            if [ "$what" = restore ]; then
                t0=$(now); "$BIN" "${cfg[@]}" restore "$file" --into bench_anon_restored >/dev/null; t1=$(now)
                drop_db "$e" bench_anon_restored
            else
                t0=$(now); "$BIN" "${cfg[@]}" anonymize "$file" --into bench_anon_copy >/dev/null; t1=$(now)
                drop_db "$e" bench_anon_copy
            fi
            echo "$t1 - $t0" | bc >> "$dir/$what.txt"
        done
        log "$e run $i: restore $(tail -1 "$dir/restore.txt") s, anonymize $(tail -1 "$dir/anonymize.txt") s"
    done
    r=$(median < "$dir/restore.txt"); a=$(median < "$dir/anonymize.txt")
    printf '%s\t%s citizens\trestore %.2f s\tanonymize %.2f s\tratio %.2f\n' \
        "$e" "$CITIZENS" "$r" "$a" "$(echo "$a / $r" | bc -l)"
    drop_db "$e" $SRC
done
