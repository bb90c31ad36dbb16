#!/usr/bin/env bash
# The main job, end to end, on a fresh Debian machine: the project's servers up, the build,
# schema apply, the demo data loaded, backups taken, verified and checked, a restore drill.
# Idempotent: a second run reloads the demo data and takes new backups.
#
#   bash scripts/run.sh                              # as root, or as a user with sudo
#   MAIRIE_DBA_CONFIG=/etc/mairie-dba/config_global.yml bash scripts/run.sh
#
# With MAIRIE_DBA_CONFIG set, the job runs against the targets of that configuration instead:
# the project's servers are neither installed nor started, and the passwords come from the
# environment variables that configuration names. Mind that the job applies the migrations and
# reloads the demo datasets (their tables are emptied first) on those targets.
#
# The build is cargo's dev profile (dependencies optimised, see Cargo.toml), the one the tests
# use: scripts/test.sh then compiles only the tests, not everything a second time.
set -euo pipefail

if [ -n "${MAIRIE_DBA_CONFIG:-}" ]; then
    # Relative to where the user stands, before the cd below.
    MAIRIE_DBA_CONFIG=$(realpath -m -- "$MAIRIE_DBA_CONFIG")
    if [ ! -f "$MAIRIE_DBA_CONFIG" ]; then
        echo "run.sh: MAIRIE_DBA_CONFIG: $MAIRIE_DBA_CONFIG: no such file" >&2
        exit 2
    fi
    export MAIRIE_DBA_CONFIG
fi

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/check-toolchain.sh
. scripts/check-toolchain.sh

if [ -z "${MAIRIE_DBA_CONFIG:-}" ]; then
    bash scripts/dev-services.sh
    # shellcheck source=scripts/dev-servers.env
    . scripts/dev-servers.env
    export MAIRIE_PG_PASSWORD=${MAIRIE_PG_PASSWORD:-$MAIRIE_DEV_PASSWORD}
    export MAIRIE_MYSQL_PASSWORD=${MAIRIE_MYSQL_PASSWORD:-$MAIRIE_DEV_PASSWORD}
else
    echo "== configuration $MAIRIE_DBA_CONFIG (the project's servers are not started) =="
fi

echo "== build =="
cargo build
bin=target/debug/mairie-dba

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
