#!/usr/bin/env bash
# Builds the Debian package (dpkg-deb, no other packaging tool needed):
#   scripts/package-deb.sh                   release build, then target/debian/aovpn_VERSION_ARCH.deb
#   scripts/package-deb.sh --binary PATH     package an already built aovpn (the tests use theirs)
#   scripts/package-deb.sh --out DIR --fast  where to put it; gzip -1 instead of xz (tests)
# The package: /usr/bin/aovpn, the systemd units (agent, gateway, the users' key helper), /etc/aovpn
# with the machine key directory root-only, agent.toml as a conffile, the README and man pages.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=""
out=target/debian
compress=()
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) bin=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --fast) compress=(-Zgzip -z1); shift ;;
        *) echo "usage: $0 [--binary PATH] [--out DIR] [--fast]" >&2; exit 2 ;;
    esac
done
if [ -z "$bin" ]; then
    cargo build --release --locked -p aovpn
    bin=target/release/aovpn
fi
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

install -D -m 0755 "$bin" "$stage/usr/bin/aovpn"
install -D -m 0644 packaging/systemd/aovpn-agent.service "$stage/usr/lib/systemd/system/aovpn-agent.service"
install -D -m 0644 packaging/systemd/aovpn-lockdown.service "$stage/usr/lib/systemd/system/aovpn-lockdown.service"
install -D -m 0644 packaging/systemd/aovpn-gateway.service "$stage/usr/lib/systemd/system/aovpn-gateway.service"
install -D -m 0644 packaging/systemd/user/aovpn-user-helper.service "$stage/usr/lib/systemd/user/aovpn-user-helper.service"
install -d -m 0755 "$stage/etc/aovpn" "$stage/etc/aovpn/profiles" "$stage/etc/aovpn/ca"
install -d -m 0700 "$stage/etc/aovpn/machine"
install -m 0644 packaging/etc/agent.toml "$stage/etc/aovpn/agent.toml"
install -D -m 0644 packaging/etc/profile.d/aovpn-proxy.sh "$stage/etc/profile.d/aovpn-proxy.sh"
install -D -m 0644 README.md "$stage/usr/share/doc/aovpn/README.md"
install -D -m 0644 packaging/debian/copyright "$stage/usr/share/doc/aovpn/copyright"
install -d -m 0755 "$stage/usr/share/man/man1"
"$bin" man "$stage/usr/share/man/man1"
gzip -9n "$stage"/usr/share/man/man1/*.1

install -d -m 0755 "$stage/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
    packaging/debian/control > "$stage/DEBIAN/control"
install -m 0644 packaging/debian/conffiles "$stage/DEBIAN/conffiles"
for script in postinst prerm postrm; do
    install -m 0755 "packaging/debian/$script" "$stage/DEBIAN/$script"
done

mkdir -p "$out"
deb="$out/aovpn_${version}_${arch}.deb"
dpkg-deb "${compress[@]}" --root-owner-group --build "$stage" "$deb" >/dev/null
echo "$deb"
