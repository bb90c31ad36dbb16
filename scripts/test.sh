#!/usr/bin/env bash
# The tests: the one command that runs the whole suite, locally and in CI (.ci/run).
#
#   bash scripts/test.sh               # everything
#   bash scripts/test.sh load_csv      # arguments go to cargo nextest run / cargo test
#
# Checks the Rust toolchain, starts the project's servers (scripts/dev-services.sh) unless
# MAIRIE_DBA_SKIP_SERVICES is set, checks that they answer as the tests reach them, then runs
# the suite with cargo-nextest when it is installed (parallel, one process per test), else
# with cargo test. The build profile is the one scripts/run.sh builds: after it, only the
# tests are compiled.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/check-toolchain.sh
. scripts/check-toolchain.sh

if [ -z "${MAIRIE_DBA_SKIP_SERVICES:-}" ]; then
    bash scripts/dev-services.sh
fi

# shellcheck source=scripts/dev-servers.env
. scripts/dev-servers.env
export MAIRIE_PG_PASSWORD=${MAIRIE_PG_PASSWORD:-$MAIRIE_DEV_PASSWORD}
export MAIRIE_MYSQL_PASSWORD=${MAIRIE_MYSQL_PASSWORD:-$MAIRIE_DEV_PASSWORD}

bash scripts/check-services.sh

if command -v cargo-nextest >/dev/null 2>&1; then
    set -- cargo nextest run --no-fail-fast "$@"
else
    set -- cargo test --no-fail-fast "$@"
fi
printf '+ %s\n' "$*" >&2
exec "$@"
