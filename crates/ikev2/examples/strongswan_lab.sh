#!/bin/bash
# Manual interop lab for the ikev2 engine against strongSwan 5.9 (root; not part of the suite).
# Creates namespaces ikv2x-gw (198.51.100.1) and ikv2x-cl (198.51.100.2) joined by a veth, an
# RSA PKI in $S/pki, and ONE charon: `gw` runs strongSwan as gateway (run udp_peer initiator in
# ikv2x-cl), `cl` runs strongSwan as client (run udp_peer responder in ikv2x-gw, then
# `swanctl --initiate --child ao`). `down` kills the recorded charon pid and deletes both
# namespaces. chd=4 logging prints the Child SA keys to compare with udp_peer's output.
# REKEY_IKE / REKEY_CHILD (e.g. 30s / 20s) set strongSwan's rekey_time; with udp_peer's RUN_SECS
# (and IKE_LIFETIME / CHILD_LIFETIME for our own rekeys) a run shows rekeys in both directions.
#
#   examples/strongswan_lab.sh gw
#   ip netns exec ikv2x-cl target/debug/examples/udp_peer initiator 198.51.100.2 198.51.100.1 \
#       /tmp/ikv2x/pki/client.crt /tmp/ikv2x/pki/client.key /tmp/ikv2x/pki/ca.crt \
#       vpn.aolab.example fqdn:client1.aolab.example
#   examples/strongswan_lab.sh down
set -euo pipefail
S=/tmp/ikv2x
CHARON=/usr/lib/ipsec/charon
cmd=$1
teardown() {
  if [ -s $S/charon.pid ]; then pid=$(cat $S/charon.pid); if [ "$(cat /proc/$pid/comm 2>/dev/null)" = charon ]; then kill $pid; for i in $(seq 50); do [ -d /proc/$pid ] || break; sleep 0.1; done; kill -9 $pid 2>/dev/null || true; fi; rm -f $S/charon.pid; fi
  ip netns del ikv2x-gw 2>/dev/null || true
  ip netns del ikv2x-cl 2>/dev/null || true
}
if [ "$cmd" = down ]; then teardown; exit 0; fi
teardown
ip netns add ikv2x-gw; ip netns add ikv2x-cl
ip link add ikv2x-g netns ikv2x-gw type veth peer name ikv2x-c netns ikv2x-cl
ip -n ikv2x-gw addr add 198.51.100.1/24 dev ikv2x-g; ip -n ikv2x-gw link set ikv2x-g up; ip -n ikv2x-gw link set lo up
ip -n ikv2x-cl addr add 198.51.100.2/24 dev ikv2x-c; ip -n ikv2x-cl link set ikv2x-c up; ip -n ikv2x-cl link set lo up
ip -n ikv2x-gw addr add 10.1.0.1/32 dev lo
for ns in ikv2x-gw ikv2x-cl; do ip netns exec $ns sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0; done
P=$S/pki; mkdir -p $P
if [ ! -s $P/client.crt ]; then
printf 'pki {\n  load = random nonce openssl pem pkcs1 pkcs8 x509 gmp sha1 sha2\n}\n' >"$P/pki.conf"
export STRONGSWAN_CONF="$P/pki.conf"
pki --gen --type rsa --size 2048 --outform pem >"$P/ca.key"
pki --self --ca --lifetime 3650 --in "$P/ca.key" --type rsa --dn "C=XX, O=AO Lab, CN=AO Lab Root CA" --outform pem >"$P/ca.crt"
pki --gen --type rsa --size 2048 --outform pem >"$P/gw.key"
pki --issue --in "$P/gw.key" --type priv --lifetime 730 --cacert "$P/ca.crt" --cakey "$P/ca.key" \
    --dn "C=XX, O=AO Lab, CN=vpn.aolab.example" --san vpn.aolab.example --flag serverAuth --flag ikeIntermediate --outform pem >"$P/gw.crt"
pki --gen --type rsa --size 2048 --outform pem >"$P/client.key"
pki --issue --in "$P/client.key" --type priv --lifetime 730 --cacert "$P/ca.crt" --cakey "$P/ca.key" \
    --dn "C=XX, O=AO Lab, CN=client1" --san client1.aolab.example --flag clientAuth --outform pem >"$P/client.crt"
unset STRONGSWAN_CONF
fi
inst=$S/sw; rm -rf $inst; mkdir -p $inst/swanctl/{x509,x509ca,x509ocsp,x509aa,x509ac,x509crl,pubkey,private,rsa,ecdsa,bliss,pkcs8,pkcs12}
cp $P/ca.crt $inst/swanctl/x509ca/
cat > $inst/strongswan.conf <<EOC
charon {
    load = random nonce openssl pem pkcs1 pkcs8 x509 revocation constraints pubkey aes sha1 sha2 hmac gcm kdf curve25519 kernel-libipsec kernel-netlink socket-default vici
    install_routes = yes
    filelog {
        lab {
            path = $inst/charon.log
            time_format = %s
            flush_line = yes
            default = 1
            ike = 2
            chd = 4
            cfg = 2
            enc = 2
        }
    }
    syslog {
        daemon {
            default = -1
        }
    }
    plugins {
        vici {
            socket = unix://$inst/charon.vici
        }
    }
}
swanctl {
    load = pem pkcs1 pkcs8 x509 openssl random nonce
    socket = unix://$inst/charon.vici
}
EOC
PROPS=${PROPS:-aes256gcm16-prfsha384-ecp384, aes256-sha256-modp2048, default}
ESPP=${ESPP:-aes256gcm16, aes256-sha256, default}
if [ "$cmd" = gw ]; then
ns=ikv2x-gw
cp $P/gw.crt $inst/swanctl/x509/; cp $P/gw.key $inst/swanctl/private/
cat > $inst/swanctl/swanctl.conf <<EOC
connections { p2s {
    version = 2
    local_addrs = 198.51.100.1
    pools = p2s-pool
    encap = ${ENCAP:-yes}
    send_cert = always
    proposals = $PROPS
    rekey_time = ${REKEY_IKE:-4h}
    local {
      auth = pubkey
      certs = gw.crt
      id = vpn.aolab.example
    }
    remote {
      auth = pubkey
      cacerts = ca.crt
    }
    children {
      p2s {
        local_ts = 10.1.0.0/16
        esp_proposals = $ESPP
        rekey_time = ${REKEY_CHILD:-1h}
      }
    }
} }
pools {
  p2s-pool {
    addrs = 172.16.201.0/24
    dns = 10.1.0.53
  }
}
EOC
else
ns=ikv2x-cl
cp $P/client.crt $inst/swanctl/x509/; cp $P/client.key $inst/swanctl/private/
cat > $inst/swanctl/swanctl.conf <<EOC
connections { ao {
    version = 2
    local_addrs = 198.51.100.2
    remote_addrs = 198.51.100.1
    vips = 0.0.0.0
    encap = ${ENCAP:-yes}
    proposals = $PROPS
    rekey_time = ${REKEY_IKE:-4h}
    local {
      auth = pubkey
      certs = client.crt
      id = client1.aolab.example
    }
    remote {
      auth = pubkey
      id = vpn.aolab.example
    }
    children {
      ao {
        remote_ts = 10.1.0.0/16
        esp_proposals = $ESPP
        rekey_time = ${REKEY_CHILD:-1h}
        start_action = none
      }
    }
} }
EOC
fi
ip netns exec $ns unshare --mount --propagation private sh -c 'mount -t tmpfs -o mode=0755 ikv2x-run /run && echo $$ > "$1" && exec env STRONGSWAN_CONF="$2" "$3"' sh $S/charon.pid $inst/strongswan.conf $CHARON >>$inst/charon.stdout 2>&1 </dev/null &
for i in $(seq 100); do [ -S $inst/charon.vici ] && break; sleep 0.1; done
STRONGSWAN_CONF=$inst/strongswan.conf SWANCTL_DIR=$inst/swanctl swanctl --load-all --uri unix://$inst/charon.vici >/dev/null
echo "charon up in $ns pid $(cat $S/charon.pid)"
