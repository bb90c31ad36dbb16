#!/usr/bin/env bash
# The main job, end to end, on a fresh Debian machine: servers up, release build, schema
# apply, demo data loaded, backups taken, verified and checked, a restore drill.
# Idempotent: a second run reloads the demo data and takes new backups.
#
#   sudo bash scripts/run.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/dev-services.sh

export MAIRIE_PG_PASSWORD=${MAIRIE_PG_PASSWORD:-mairie}
export MAIRIE_MYSQL_PASSWORD=${MAIRIE_MYSQL_PASSWORD:-mairie}

echo "== build =="
cargo build --release
bin=target/release/mairie-dba

echo "== schema apply =="
"$bin" schema apply
echo "== load-csv --all =="
"$bin" load-csv --all --truncate
echo "== schema status =="
"$bin" schema status
echo "== backup =="
"$bin" backup
echo "== backup verify --latest =="
"$bin" backup verify --latest
echo "== backup check =="
"$bin" backup check
echo "== restore --drill =="
"$bin" restore --drill
