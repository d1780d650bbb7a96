#!/usr/bin/env bash
# Installs, from Debian's packages, everything the tests and the lab need that is not part of the
# Rust toolchain: strongSwan 5.9 with kernel-libipsec (the interop peer), iperf3, nftables, iproute2,
# setpriv (tests run users' commands and key helpers as other uids), systemd-analyze (the units are
# verified), dbus-daemon (a private bus with an emulated logind), dpkg-deb (the package), dnsmasq
# (DNS servers for the split DNS test, started in its namespaces), dig, and BIND 9 (named,
# tsig-keygen, nsupdate: the corporate DNS server of the RegisterDNS test and the lab), and
# FreeRADIUS 3 (the RADIUS server the gateway relays EAP to in the RADIUS test), headless
# Chromium (the admin page's browser test), curl, and the DejaVu font (`aovpn bench`'s charts).
# Idempotent and quiet when everything is already there.
set -euo pipefail

PKGS=(strongswan-charon strongswan-swanctl strongswan-pki libcharon-extra-plugins
      libstrongswan-standard-plugins libstrongswan-extra-plugins
      iperf3 iputils-ping iproute2 nftables util-linux procps kmod openssl
      systemd dbus-daemon dpkg dnsmasq-base bind9-dnsutils bind9 freeradius
      chromium curl fonts-dejavu-core)

have_all() {
    command -v swanctl && command -v pki && command -v iperf3 && command -v ping &&
        command -v nft && command -v ip && command -v unshare && command -v openssl &&
        command -v setpriv && command -v systemd-analyze && command -v dbus-daemon &&
        command -v dpkg-deb && command -v dnsmasq && command -v dig &&
        command -v named && command -v tsig-keygen && command -v nsupdate &&
        command -v freeradius && command -v chromium && command -v curl &&
        [ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] &&
        [ -x /usr/lib/ipsec/charon ] &&
        [ -e /usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so ] &&
        [ -e /usr/lib/ipsec/plugins/libstrongswan-curve25519.so ]
}

if have_all >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing packages and not root; install as root: ${PKGS[*]}" >&2
    exit 1
fi
echo "install-deps: installing ${PKGS[*]}" >&2
had_named=$(command -v named || true)
had_radius=$(command -v freeradius || true)
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null
# The tests start their own named in a namespace; a system-wide one that the package just
# started (on a machine running systemd) is not wanted, so it is stopped and disabled.
if [ -z "$had_named" ] && [ -d /run/systemd/system ]; then
    systemctl disable --now named.service >/dev/null 2>&1 || true
fi
# Likewise FreeRADIUS: the RADIUS test starts its own, with its own configuration.
if [ -z "$had_radius" ] && [ -d /run/systemd/system ]; then
    systemctl disable --now freeradius.service >/dev/null 2>&1 || true
fi
have_all >/dev/null
