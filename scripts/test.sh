#!/usr/bin/env bash
# The README's test command: installs what the tests need, then formatting, lints and every test
# (unit, property, in-memory protocol, network-namespace end-to-end and strongSwan interop).
# Run as root on Debian: the end-to-end tests create (and remove) network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
[ -c /dev/net/tun ] || { mkdir -p /dev/net && mknod /dev/net/tun c 10 200 && chmod 0666 /dev/net/tun; }

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
# Tests that build network namespaces share fixed names per test; --test-threads keeps the 2-core
# machine responsive while iperf-style transfers run.
cargo test --workspace --locked -- --test-threads=2
echo "== fuzz smoke (30 s per target)"
scripts/fuzz-smoke.sh 30
