#!/usr/bin/env bash
# The project's benchmark: build aovpn (release) and run `aovpn bench all` — TCP throughput
# (plain routed path vs strongSwan kernel-libipsec vs our tunnel vs userspace WireGuard), IKE handshakes per second
# (our gateway vs strongSwan's charon as responder, one in-process initiator), and responder
# memory per idle client. Every figure is printed next to its peer's from the same run and as a
# ratio; nothing is asserted. The report (report.txt, report.json with every run's values, PNG
# charts) goes to target/bench/<UTC date and time>/.
#   scripts/bench.sh                      everything with the defaults
#   scripts/bench.sh --secs 5 --runs 3    options are passed to `aovpn bench all`
# Run as root on Debian; packages come from scripts/install-deps.sh. The machine should be
# otherwise idle: both peers share its cores with iperf3 and the initiator.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "scripts/bench.sh: run as root (the benchmarks create network namespaces, TUN devices and routes)" >&2
    exit 2
fi
scripts/install-deps.sh
scripts/install-bench-peers.sh
# Last, so that nothing built there shadows a system command run as root.
export PATH="$PATH:$PWD/target/bench-peers/bin"
[ -c /dev/net/tun ] || { mkdir -p /dev/net && mknod /dev/net/tun c 10 200 && chmod 0666 /dev/net/tun; }
cargo build --release --locked -p aovpn
exec target/release/aovpn bench all --out "target/bench/$(date -u +%Y-%m-%dT%H%MZ)" "$@"
