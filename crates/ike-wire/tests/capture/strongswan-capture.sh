#!/usr/bin/env bash
# Capture real strongSwan IKEv2 packets (hex dumps from charon's log) between two namespaces.
set -euo pipefail
S=/tmp/ikewcap
CHARON=/usr/lib/ipsec/charon
cleanup() {
  for i in a b; do
    if [ -s $S/$i/charon.pid ]; then pid=$(cat $S/$i/charon.pid)
      if [ -r /proc/$pid/comm ] && [ "$(cat /proc/$pid/comm)" = charon ]; then kill -TERM $pid || true; fi; fi
  done
  sleep 2
  for i in a b; do
    if [ -s $S/$i/charon.pid ]; then pid=$(cat $S/$i/charon.pid)
      if [ -r /proc/$pid/comm ] && [ "$(cat /proc/$pid/comm)" = charon ]; then kill -KILL $pid || true; fi; fi
  done
  ip netns del ikew-a 2>/dev/null || true
  ip netns del ikew-b 2>/dev/null || true
}
trap cleanup EXIT
cleanup
ip netns add ikew-a; ip netns add ikew-b
mkdir -p $S/a/swanctl $S/b/swanctl; ip -n ikew-a link set lo up; ip -n ikew-b link set lo up
ip -n ikew-a link add ikew-va type veth peer name ikew-vb netns ikew-b
ip -n ikew-a addr add 203.0.113.2/24 dev ikew-va; ip -n ikew-a link set ikew-va up
ip -n ikew-b addr add 203.0.113.1/24 dev ikew-vb; ip -n ikew-b link set ikew-vb up
for i in a b; do
  mkdir -p $S/$i/swanctl/conf.d; rm -f $S/$i/charon.log $S/$i/charon.vici
  frag=1280; [ $i = a ] && frag=300
  cat > $S/$i/strongswan.conf <<EOC
charon {
  load = random nonce openssl pem pkcs1 pkcs8 x509 pubkey aes sha1 sha2 hmac gcm kdf curve25519 kernel-libipsec kernel-netlink socket-default vici
  install_routes = no
  install_virtual_ip = no
  fragment_size = $frag
  filelog {
    cap {
      path = $S/$i/charon.log
      default = 1
      net = 4
      enc = 4
      ike = 2
      flush_line = yes
    }
  }
  syslog { daemon { default = -1 } }
  plugins { vici { socket = unix://$S/$i/charon.vici } }
}
swanctl { socket = unix://$S/$i/charon.vici }
EOC
done
cat > $S/a/swanctl/swanctl.conf <<'EOC'
connections {
 c {
  remote_addrs = 203.0.113.1
  version = 2
  fragmentation = yes
  mobike = yes
  proposals = aes256gcm16-prfsha384-ecp384, aes256-sha256-modp2048
  vips = 0.0.0.0
  local {
   auth = psk
   id = client.example.org
  }
  remote {
   auth = psk
   id = vpn.example.org
  }
  children {
   t {
    remote_ts = 10.1.0.0/16
    esp_proposals = aes256gcm16, aes256-sha256
   }
  }
 }
}
secrets {
 ike {
  id-1 = client.example.org
  id-2 = vpn.example.org
  secret = "lab only secret"
 }
}
EOC
cat > $S/b/swanctl/swanctl.conf <<'EOC'
connections {
 c {
  version = 2
  fragmentation = yes
  proposals = aes256gcm16-prfsha384-ecp384, aes256-sha256-modp2048
  pools = p
  local {
   auth = psk
   id = vpn.example.org
  }
  remote {
   auth = psk
   id = client.example.org
  }
  children {
   t {
    local_ts = 10.1.0.0/16
    esp_proposals = aes256gcm16, aes256-sha256
   }
  }
 }
}
pools {
 p {
  addrs = 172.16.201.0/24
  dns = 10.1.0.53
 }
}
secrets {
 ike {
  id-1 = client.example.org
  id-2 = vpn.example.org
  secret = "lab only secret"
 }
}
EOC
for i in a b; do
  ip netns exec ikew-$i unshare --mount --propagation private sh -c 'mount -t tmpfs -o mode=0755 ikew-run /run && echo $$ > "$1" && exec env STRONGSWAN_CONF="$2" "$3"' sh $S/$i/charon.pid $S/$i/strongswan.conf $CHARON > $S/$i/stdout 2>&1 < /dev/null &
done
for n in $(seq 100); do [ -S $S/a/charon.vici ] && [ -S $S/b/charon.vici ] && break; sleep 0.1; done
for i in a b; do STRONGSWAN_CONF=$S/$i/strongswan.conf ip netns exec ikew-$i swanctl --load-all --noprompt --file $S/$i/swanctl/swanctl.conf --uri unix://$S/$i/charon.vici >/dev/null; done
STRONGSWAN_CONF=$S/a/strongswan.conf timeout 20 ip netns exec ikew-a swanctl --initiate --child t --uri unix://$S/a/charon.vici | tail -3 || true
sleep 1
