#!/usr/bin/env bash
# The tests: the one command that runs the whole suite, locally and in CI (.ci/run).
#
#   scripts/test.sh                    # everything
#   scripts/test.sh load_csv           # arguments go to cargo nextest run / cargo test
#
# Starts the local servers first (scripts/dev-services.sh) unless MAIRIE_DBA_SKIP_SERVICES is
# set, checks that both are reachable as user mairie, then runs the suite with cargo-nextest
# when it is installed (parallel, one process per test), else with cargo test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -z "${MAIRIE_DBA_SKIP_SERVICES:-}" ]; then
    bash scripts/dev-services.sh
fi

export MAIRIE_PG_PASSWORD=${MAIRIE_PG_PASSWORD:-mairie}
export MAIRIE_MYSQL_PASSWORD=${MAIRIE_MYSQL_PASSWORD:-mairie}

bash scripts/check-services.sh

if command -v cargo-nextest >/dev/null 2>&1; then
    set -- cargo nextest run --no-fail-fast "$@"
else
    set -- cargo test --no-fail-fast "$@"
fi
printf '+ %s\n' "$*" >&2
exec "$@"
