#!/usr/bin/env bash
# Installs the benchmark's extra peers, which the tests do not need: userspace WireGuard as
# Debian's wireguard-go with wireguard-tools (`wg`), and boringtun-cli built from crates.io into
# target/bench-peers/bin (scripts/bench.sh puts it on PATH). A peer that cannot be installed is
# reported by `aovpn bench throughput` as not measured, with the reason.
# Idempotent and quiet when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

BORINGTUN_VERSION=0.7.1
if ! { command -v wireguard-go && command -v wg; } >/dev/null 2>&1; then
    echo "install-bench-peers: installing wireguard-go wireguard-tools" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        wireguard-go wireguard-tools >/dev/null
fi
if [ ! -x target/bench-peers/bin/boringtun-cli ]; then
    echo "install-bench-peers: building boringtun-cli $BORINGTUN_VERSION from crates.io" >&2
    cargo install --quiet --locked boringtun-cli --version "$BORINGTUN_VERSION" \
        --root target/bench-peers ||
        echo "install-bench-peers: boringtun-cli did not build; the bench will say so" >&2
fi
