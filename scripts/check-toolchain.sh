#!/usr/bin/env bash
# Stops before anything else (exit 2) when the Rust toolchain is missing or older than the
# rust-version of Cargo.toml, and says exactly what to run. Sourced first by scripts/run.sh and
# scripts/test.sh (so that the PATH it completes is theirs too); it may also be run alone.
# Debian's own rustc (1.63 in Debian 12) is too old: rustup is the way.
set -euo pipefail
toolchain_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

required=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' "$toolchain_root/Cargo.toml" | head -n 1)
[ -n "$required" ] || { echo "check-toolchain: no rust-version in $toolchain_root/Cargo.toml" >&2; exit 2; }

rustup_install="apt-get install -y curl ca-certificates && curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component rustfmt,clippy && . \"\$HOME/.cargo/env\""

stop() {
    printf 'check-toolchain: %s\n' "$1" >&2
    shift
    printf '  %s\n' "$@" >&2
    exit 2
}

# cargo run by rustup's proxies may live in ~/.cargo/bin, which a non-login shell or sudo
# leaves off PATH.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

if ! command -v cargo >/dev/null 2>&1 || ! command -v rustc >/dev/null 2>&1; then
    if [ -n "${SUDO_USER:-}" ]; then
        stop "cargo is not on root's PATH under sudo. Run the command without sudo (the scripts ask sudo themselves for what needs root), or install Rust $required or newer for root:" \
            "$rustup_install"
    fi
    stop "Rust $required or newer is needed (cargo or rustc not found). Install it with rustup, then run this again:" \
        "$rustup_install"
fi

have=$(rustc --version | awk '{ print $2 }')
have=${have%%-*}
oldest=$(printf '%s\n%s\n' "$required" "$have" | sort -V | head -n 1)
if [ "$oldest" != "$required" ]; then
    if command -v rustup >/dev/null 2>&1; then
        stop "rustc $have is older than the rust-version $required of Cargo.toml. Update it, then run this again:" \
            "rustup update stable && rustup default stable"
    fi
    stop "rustc $have (not rustup's: Debian's own is too old) is older than the rust-version $required of Cargo.toml. Install rustup's toolchain, which comes first on PATH, then run this again:" \
        "$rustup_install"
fi
printf 'check-toolchain: rustc %s, cargo %s (rust-version %s)\n' "$have" "$(cargo --version | awk '{ print $2 }')" "$required" >&2
