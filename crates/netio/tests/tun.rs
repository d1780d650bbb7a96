//! TUN devices with addresses and routes inside a private network namespace (root only).

#![allow(clippy::unwrap_used)] // tests may unwrap (HELPERS.md)

mod common;

use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use common::{
    STEP, block_on_in, icmp_echo, ip_out, ipv4, ipv4_udp, netns, parse_ipv4, parse_ipv4_udp,
};
use netio::netlink::{IfAddress, Netlink, Route};
use netio::tun::{self, TUN_SEND_HEADROOM, TunBatch, TunConfig};
use netio::udp::{OutDatagrams, UdpConfig, UdpSocket};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::time::timeout;

const CLIENT: Ipv4Addr = Ipv4Addr::new(172, 16, 201, 5);
const POOL_GW: Ipv4Addr = Ipv4Addr::new(172, 16, 201, 1);
const BEHIND: Ipv4Addr = Ipv4Addr::new(10, 1, 2, 3);

#[test]
fn tun_with_address_and_route_carries_packets_both_ways() {
    let ns = netns("tun");
    let name = "aotun0";
    block_on_in(&ns, || async {
        let mut dev = tun::create(&TunConfig::new(name, 1400)).unwrap();
        assert_eq!(dev.name, name);
        let queue = dev.queues.remove(0);
        assert!(!queue.offload());

        let nl = Netlink::new().unwrap();
        let link = nl.link_by_name(name).await.unwrap();
        assert_eq!(link.index, dev.index);
        assert_eq!(link.mtu, Some(1400));
        assert!(link.up);

        let mut session = nl.session();
        session
            .add_address(IfAddress {
                index: dev.index,
                local: CLIENT.into(),
                prefix_len: 32,
                peer: Some(POOL_GW.into()),
            })
            .await
            .unwrap();
        let mut route = Route::via_dev("10.1.0.0".parse().unwrap(), 16, dev.index);
        route.source = Some(CLIENT.into());
        session.add_route(route).await.unwrap();

        let addrs = ip_out(&ns, &["-4", "addr", "show", "dev", name]);
        assert!(
            addrs.contains("inet 172.16.201.5 peer 172.16.201.1/32"),
            "{addrs}"
        );
        let routes = ip_out(&ns, &["route", "show", "10.1.0.0/16"]);
        assert!(
            routes.contains("dev aotun0") && routes.contains("src 172.16.201.5"),
            "{routes}"
        );
        assert!(
            nl.routes(false)
                .await
                .unwrap()
                .iter()
                .any(|r| r.matches(&route))
        );

        // The kernel routes 10.1.2.3 into the TUN, from the client address, with the TUN MTU.
        let lookup = nl.route_to(BEHIND.into()).await.unwrap();
        assert_eq!(lookup.oif, dev.index);
        assert_eq!(lookup.source, Some(IpAddr::V4(CLIENT)));
        assert_eq!(lookup.mtu, Some(1400));

        // Outbound: a datagram sent to 10.1.2.3 is read from the TUN byte for byte.
        let sock = tokio::net::UdpSocket::bind((CLIENT, 0)).await.unwrap();
        let sport = sock.local_addr().unwrap().port();
        sock.send_to(b"to the corporate network", (BEHIND, 9999))
            .await
            .unwrap();
        let mut buf = vec![0u8; 2000];
        let pkt = loop {
            let n = timeout(STEP, queue.recv(&mut buf)).await.unwrap().unwrap();
            // Skip anything else the kernel may send (e.g. IPv6 router solicitations).
            if let Some(p) = parse_ipv4_udp(&buf[..n]) {
                break p;
            }
        };
        assert_eq!((pkt.src, pkt.sport), (CLIENT, sport));
        assert_eq!((pkt.dst, pkt.dport), (BEHIND, 9999));
        assert_eq!(pkt.payload, b"to the corporate network");

        // Inbound: a packet written to the TUN is delivered to the local socket it addresses.
        let reply = ipv4_udp(BEHIND, 9999, CLIENT, sport, b"reply from 10.1.2.3");
        queue.send(&reply).await.unwrap();
        let mut rbuf = [0u8; 100];
        let (n, from) = timeout(STEP, sock.recv_from(&mut rbuf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&rbuf[..n], b"reply from 10.1.2.3");
        assert_eq!(from, SocketAddr::from((BEHIND, 9999)));

        // Ping: an ICMP echo request to 10.1.2.3 is read from the TUN byte for byte, and the
        // echo reply written to the TUN reaches the pinging socket.
        let raw = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).unwrap();
        raw.set_read_timeout(Some(STEP)).unwrap();
        let request = icmp_echo(false, 0x4242, 1, b"aovpn ping payload");
        raw.send_to(&request, &SocketAddr::from((BEHIND, 0)).into())
            .unwrap();
        let icmp = loop {
            let n = timeout(STEP, queue.recv(&mut buf)).await.unwrap().unwrap();
            if let Some((src, dst, icmp)) = parse_ipv4(1, &buf[..n]) {
                assert_eq!((src, dst), (CLIENT, BEHIND));
                break icmp.to_vec();
            }
        };
        assert_eq!(icmp, request);
        let reply = icmp_echo(true, 0x4242, 1, b"aovpn ping payload");
        queue.send(&ipv4(1, BEHIND, CLIENT, &reply)).await.unwrap();
        let mut rbuf = [MaybeUninit::<u8>::uninit(); 200];
        let got = loop {
            let n = raw.recv(&mut rbuf).expect("echo reply before the timeout");
            // SAFETY: recv initialised the first n bytes.
            let bytes: Vec<u8> = rbuf[..n]
                .iter()
                .map(|b| unsafe { b.assume_init() })
                .collect();
            if let Some((src, _, icmp)) = parse_ipv4(1, &bytes)
                && src == BEHIND
                && icmp.first() == Some(&0)
            {
                break icmp.to_vec();
            }
        };
        assert_eq!(got, reply);

        session.teardown().await.unwrap();
        let addrs = ip_out(&ns, &["-4", "addr", "show", "dev", name]);
        assert!(!addrs.contains("inet "), "{addrs}");
        let routes = ip_out(&ns, &["route", "show", "table", "all"]);
        assert!(!routes.contains("10.1.0.0/16"), "{routes}");
    });
}

#[test]
fn multi_queue_tun_opens_n_queues_and_all_can_read() {
    let ns = netns("mq");
    let name = "aomq0";
    block_on_in(&ns, || async {
        let cfg = TunConfig {
            queues: 4,
            ..TunConfig::new(name, 1400)
        };
        let dev = tun::create(&cfg).unwrap();
        assert_eq!(dev.queues.len(), 4);
        let details = ip_out(&ns, &["-d", "link", "show", "dev", name]);
        assert!(details.contains("multi_queue"), "{details}");
        // Older iproute2 does not print the queue count; the traffic below checks all 4 anyway.
        if details.contains("numqueues") {
            assert!(details.contains("numqueues 4"), "{details}");
        }

        let nl = Netlink::new().unwrap();
        let mut session = nl.session();
        session
            .add_address(IfAddress::new(dev.index, CLIENT.into(), 24))
            .await
            .unwrap();
        session
            .add_route(Route::via_dev("10.1.0.0".parse().unwrap(), 16, dev.index))
            .await
            .unwrap();

        // Flows hash to queues; send from many source ports and check every queue works and
        // the union of what all queues read is exactly what was sent.
        let mut expected = Vec::new();
        // 64 flows: the chance that some queue gets none of them by hashing is below 1e-7.
        for i in 0..64u16 {
            let sock = std::net::UdpSocket::bind((CLIENT, 0)).unwrap();
            let payload = format!("flow {i}").into_bytes();
            sock.send_to(&payload, (BEHIND, 7000 + i)).unwrap();
            expected.push(payload);
        }
        let mut got = Vec::new();
        let queues = &dev.queues;
        let mut per_queue = [0usize; 4];
        while got.len() < expected.len() {
            let mut bufs = [[0u8; 1500]; 4];
            let [b0, b1, b2, b3] = &mut bufs;
            let (q, n, buf) = timeout(STEP, async {
                tokio::select! {
                    r = queues[0].recv(b0) => (0, r.unwrap(), &b0[..]),
                    r = queues[1].recv(b1) => (1, r.unwrap(), &b1[..]),
                    r = queues[2].recv(b2) => (2, r.unwrap(), &b2[..]),
                    r = queues[3].recv(b3) => (3, r.unwrap(), &b3[..]),
                }
            })
            .await
            .expect("all flows read from some queue");
            if let Some(p) = parse_ipv4_udp(&buf[..n]) {
                per_queue[q] += 1;
                got.push(p.payload);
            }
        }
        got.sort();
        expected.sort();
        assert_eq!(got, expected);
        assert!(per_queue.iter().all(|&c| c > 0), "{per_queue:?}");
        session.teardown().await.unwrap();
    });
}

#[test]
fn offload_tun_batches_split_gso_and_write_back() {
    let ns = netns("off");
    let name = "aooff0";
    block_on_in(&ns, || async {
        let cfg = TunConfig {
            offload: true,
            ..TunConfig::new(name, 1400)
        };
        let mut dev = tun::create(&cfg).unwrap();
        let mut queue = dev.queues.remove(0);
        assert!(queue.offload());
        let details = ip_out(&ns, &["-d", "link", "show", "dev", name]);
        assert!(details.contains("vnet_hdr on"), "{details}");

        let nl = Netlink::new().unwrap();
        let mut session = nl.session();
        session
            .add_address(IfAddress::new(dev.index, CLIENT.into(), 24))
            .await
            .unwrap();
        session
            .add_route(Route::via_dev("10.1.0.0".parse().unwrap(), 16, dev.index))
            .await
            .unwrap();

        // A GSO send of 20 segments: with USO on the TUN the kernel hands over one
        // super-packet that recv_batch splits; without, 20 packets. Either way every datagram
        // must come out intact and in order.
        let sock = UdpSocket::bind(&UdpConfig::new((CLIENT, 0).into())).unwrap();
        let seg = 1000usize;
        let contents: Vec<u8> = (0..20 * seg)
            .map(|i| (i / seg) as u8 ^ (i % 251) as u8)
            .collect();
        let sent = sock
            .send_batch(&[OutDatagrams {
                destination: (BEHIND, 4242).into(),
                source_ip: None,
                contents: &contents,
                segment_size: Some(seg),
            }])
            .await
            .unwrap();
        assert_eq!(sent, 20);
        let mut batch = TunBatch::new(tun::IDEAL_BATCH_SIZE, 1500);
        let mut received = Vec::new();
        let mut largest_batch = 0;
        while received.len() < contents.len() {
            let n = timeout(STEP, queue.recv_batch(&mut batch))
                .await
                .unwrap()
                .unwrap();
            largest_batch = largest_batch.max(n);
            for p in batch.packets().filter_map(parse_ipv4_udp) {
                assert_eq!((p.dst, p.dport), (BEHIND, 4242));
                assert_eq!(p.payload.len(), seg);
                received.extend_from_slice(&p.payload);
            }
        }
        assert_eq!(received, contents);
        if queue.udp_offload() {
            // USO: the kernel handed over super-packets, which recv_batch split.
            assert!(largest_batch > 1, "largest batch {largest_batch}");
        } else {
            assert_eq!(largest_batch, 1);
        }

        // send_batch: packets after TUN_SEND_HEADROOM bytes reach the local socket.
        let local = tokio::net::UdpSocket::bind((CLIENT, 0)).await.unwrap();
        let port = local.local_addr().unwrap().port();
        let mut bufs: Vec<Vec<u8>> = (0..3u8)
            .map(|i| {
                let mut b = vec![0u8; TUN_SEND_HEADROOM];
                b.extend(ipv4_udp(BEHIND, 4242, CLIENT, port, &[i; 300]));
                b
            })
            .collect();
        queue.send_batch(&mut bufs).await.unwrap();
        for i in 0..3u8 {
            let mut rbuf = [0u8; 400];
            let (n, from) = timeout(STEP, local.recv_from(&mut rbuf))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&rbuf[..n], &[i; 300][..]);
            assert_eq!(from, SocketAddr::from((BEHIND, 4242)));
        }
        session.teardown().await.unwrap();
    });
}

/// Rewrites a TCP packet read from the TUN so that a local connection to `VIRTUAL:VPORT`
/// reaches the local listener at `CLIENT:lport` as if from `MIRROR`, and the listener's answers
/// come back from `VIRTUAL:VPORT` (a hairpin "NAT" in userspace). None for other packets.
fn reflect(p: &[u8], lport: u16) -> Option<Vec<u8>> {
    const VIRTUAL: Ipv4Addr = Ipv4Addr::new(10, 1, 2, 3);
    const MIRROR: Ipv4Addr = Ipv4Addr::new(10, 1, 2, 4);
    const VPORT: u16 = 8080;
    let (src, dst, tcp) = parse_ipv4(6, p)?;
    if tcp.len() < 20 {
        return None;
    }
    let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
    let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
    let (nsrc, nsport, ndst, ndport) = if dst == VIRTUAL && dport == VPORT {
        (MIRROR, sport, CLIENT, lport)
    } else if src == CLIENT && sport == lport && dst == MIRROR {
        (VIRTUAL, VPORT, CLIENT, dport)
    } else {
        return None;
    };
    let mut seg = tcp.to_vec();
    seg[0..2].copy_from_slice(&nsport.to_be_bytes());
    seg[2..4].copy_from_slice(&ndport.to_be_bytes());
    seg[16..18].copy_from_slice(&[0, 0]);
    let mut pseudo = Vec::with_capacity(12 + seg.len());
    pseudo.extend_from_slice(&nsrc.octets());
    pseudo.extend_from_slice(&ndst.octets());
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(seg.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(&seg);
    let csum = common::checksum(&pseudo);
    seg[16..18].copy_from_slice(&csum.to_be_bytes());
    Some(ipv4(6, nsrc, ndst, &seg))
}

#[test]
fn offload_tun_splits_tcp_super_packets_and_coalesces_writes() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let ns = netns("tso");
    let name = "aotso0";
    block_on_in(&ns, || async {
        let cfg = TunConfig {
            offload: true,
            ..TunConfig::new(name, 1400)
        };
        let mut dev = tun::create(&cfg).unwrap();
        let mut queue = dev.queues.remove(0);
        let nl = Netlink::new().unwrap();
        let mut session = nl.session();
        session
            .add_address(IfAddress::new(dev.index, CLIENT.into(), 24))
            .await
            .unwrap();
        session
            .add_route(Route::via_dev("10.1.0.0".parse().unwrap(), 16, dev.index))
            .await
            .unwrap();

        let listener = tokio::net::TcpListener::bind((CLIENT, 0)).await.unwrap();
        let lport = listener.local_addr().unwrap().port();
        let largest_batch = Arc::new(AtomicUsize::new(0));
        let largest = largest_batch.clone();
        let reflector = tokio::spawn(async move {
            let mut batch = TunBatch::new(tun::IDEAL_BATCH_SIZE, 1500);
            loop {
                let n = queue.recv_batch(&mut batch).await.unwrap();
                largest.fetch_max(n, Ordering::Relaxed);
                let mut out: Vec<Vec<u8>> = batch
                    .packets()
                    .filter_map(|p| reflect(p, lport))
                    .map(|p| {
                        let mut b = vec![0u8; TUN_SEND_HEADROOM];
                        b.extend(p);
                        b
                    })
                    .collect();
                if !out.is_empty() {
                    queue.send_batch(&mut out).await.unwrap();
                }
            }
        });

        let data: Vec<u8> = (0..4_000_000u32).map(|i| (i % 253) as u8).collect();
        let server = async {
            let (mut conn, peer) = listener.accept().await.unwrap();
            assert_eq!(peer.ip(), IpAddr::from([10, 1, 2, 4]));
            let mut got = Vec::new();
            conn.read_to_end(&mut got).await.unwrap();
            got
        };
        let client = async {
            let mut conn = tokio::net::TcpStream::connect((BEHIND, 8080))
                .await
                .unwrap();
            conn.write_all(&data).await.unwrap();
            conn.shutdown().await.unwrap();
        };
        let (got, ()) = timeout(STEP * 4, async { tokio::join!(server, client) })
            .await
            .expect("transfer through the reflector in time");
        assert!(got == data, "received {} bytes, differing", got.len());
        // The kernel handed TSO super-packets to the TUN, split into MTU-sized packets.
        assert!(largest_batch.load(Ordering::Relaxed) > 1);
        reflector.abort();
        session.teardown().await.unwrap();
    });
}

#[test]
fn a_second_tun_with_a_name_in_use_is_refused_not_shared() {
    let ns = netns("tbusy");
    block_on_in(&ns, || async {
        let first = tun::create(&TunConfig::new("aobusy0", 1400)).unwrap();
        let err = tun::create(&TunConfig::new("aobusy0", 1400)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert!(err.to_string().contains("aobusy0"), "{err}");
        drop(first);
        // Once the first is gone the name is free again.
        tun::create(&TunConfig::new("aobusy0", 1400)).unwrap();
    });
}
