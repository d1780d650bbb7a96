#!/usr/bin/env bash
# The README's main job: build aovpn (release) and run the complete lab — a gateway, a device
# tunnel and a user tunnel in network namespaces, with traffic through both tunnels.
#   scripts/lab.sh            build, then `aovpn lab up` (replaces any previous lab)
#   scripts/lab.sh status     show the running lab again
#   scripts/lab.sh down       remove it
# Run as root on Debian; packages come from scripts/install-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "scripts/lab.sh: run as root (the lab creates network namespaces, TUN devices and routes)" >&2
    exit 2
fi
scripts/install-deps.sh
[ -c /dev/net/tun ] || { mkdir -p /dev/net && mknod /dev/net/tun c 10 200 && chmod 0666 /dev/net/tun; }
cargo build --release --locked -p aovpn
exec target/release/aovpn lab "${1:-up}" "${@:2}"
