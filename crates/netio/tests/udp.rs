//! Batched UDP (recvmmsg/GRO, GSO) and PKTINFO inside a private namespace (root only).

#![allow(clippy::unwrap_used)] // tests may unwrap (HELPERS.md)

mod common;

use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr};

use common::{STEP, block_on_in, netns};
use netio::udp::{DatagramMeta, GRO_BUF_SIZE, OutDatagrams, RECV_BATCH, UdpConfig, UdpSocket};
use tokio::time::timeout;

/// Datagram `i` of a test run: distinct length and bytes so any mix-up shows.
fn datagram(i: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| (i * 31 + j * 7 + (j >> 8)) as u8)
        .collect()
}

/// Receives until `count` datagrams arrived; returns them with the metadata of their buffer.
async fn receive(sock: &UdpSocket, count: usize) -> Vec<(Vec<u8>, DatagramMeta)> {
    let mut storage = vec![vec![0u8; GRO_BUF_SIZE]; RECV_BATCH];
    let mut meta = [DatagramMeta::default(); RECV_BATCH];
    let mut out = Vec::new();
    while out.len() < count {
        let mut slices: Vec<IoSliceMut<'_>> =
            storage.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        let n = timeout(STEP, sock.recv_batch(&mut slices, &mut meta))
            .await
            .expect("datagrams in time")
            .unwrap();
        drop(slices);
        for (buf, m) in storage.iter().zip(&meta).take(n) {
            for d in m.datagrams(buf) {
                out.push((d.to_vec(), *m));
            }
        }
    }
    out
}

fn batch_roundtrip(offload: bool) {
    let ns = netns(if offload { "gso" } else { "nogso" });
    block_on_in(&ns, || async move {
        let rx_addr: SocketAddr = "127.0.0.1:4500".parse().unwrap();
        let tx_addr: SocketAddr = "127.0.0.1:500".parse().unwrap();
        let rx = UdpSocket::bind(&UdpConfig {
            offload,
            ..UdpConfig::new(rx_addr)
        })
        .unwrap();
        let tx = UdpSocket::bind(&UdpConfig {
            offload,
            ..UdpConfig::new(tx_addr)
        })
        .unwrap();
        assert_eq!(rx.local_addr().unwrap(), rx_addr);
        if !offload {
            assert_eq!(tx.max_gso_segments(), 1);
            assert_eq!(rx.gro_segments(), 1);
        }

        // 40 equal-size ESP-like datagrams as one GSO item (the last one shorter), then a few
        // odd-sized single datagrams.
        let seg = 1200;
        let mut expected: Vec<Vec<u8>> = (0..40).map(|i| datagram(i, seg)).collect();
        expected[39].truncate(700);
        let bulk: Vec<u8> = expected.concat();
        let singles: Vec<Vec<u8>> = (40..45).map(|i| datagram(i, 1 + i * 13)).collect();
        let mut items = vec![OutDatagrams {
            destination: rx_addr,
            source_ip: None,
            contents: &bulk,
            segment_size: Some(seg),
        }];
        for s in &singles {
            items.push(OutDatagrams {
                destination: rx_addr,
                source_ip: None,
                contents: s,
                segment_size: None,
            });
        }
        expected.extend(singles.iter().cloned());
        let sent = tx.send_batch(&items).await.unwrap();
        assert_eq!(sent, expected.len());

        let got = receive(&rx, expected.len()).await;
        let datagrams: Vec<Vec<u8>> = got.iter().map(|(d, _)| d.clone()).collect();
        assert_eq!(datagrams, expected);
        for (_, m) in &got {
            assert_eq!(m.source, tx_addr);
            assert_eq!(m.destination, Some(IpAddr::from([127, 0, 0, 1])));
            assert!(m.ifindex.is_some());
        }
        let coalesced = got.iter().any(|(_, m)| m.len > m.stride);
        if offload {
            assert!(tx.max_gso_segments() > 1, "kernel without UDP GSO");
            // GSO on loopback stays one skb, and the GRO-enabled socket receives it whole.
            assert!(coalesced, "expected at least one GRO batch");
        } else {
            assert!(!coalesced);
        }
    });
}

#[test]
fn batch_send_receive_with_gso_gro() {
    batch_roundtrip(true);
}

#[test]
fn batch_send_receive_without_gso_gro() {
    batch_roundtrip(false);
}

#[test]
fn pktinfo_reports_destination_and_replies_leave_from_it() {
    let ns = netns("pkt");
    ns.ip(["addr", "add", "198.51.100.10/32", "dev", "lo"])
        .unwrap();
    ns.ip(["addr", "add", "198.51.100.11/32", "dev", "lo"])
        .unwrap();
    block_on_in(&ns, || async {
        let server = UdpSocket::bind(&UdpConfig::new("0.0.0.0:4500".parse().unwrap())).unwrap();
        for target in ["198.51.100.11", "198.51.100.10"] {
            let target: IpAddr = target.parse().unwrap();
            let client = UdpSocket::bind(&UdpConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
            let client_addr = client.local_addr().unwrap();
            client
                .send_batch(&[OutDatagrams {
                    destination: (target, 4500).into(),
                    source_ip: None,
                    contents: b"IKE_SA_INIT",
                    segment_size: None,
                }])
                .await
                .unwrap();
            let got = receive(&server, 1).await;
            let (data, meta) = &got[0];
            assert_eq!(data, b"IKE_SA_INIT");
            assert_eq!(meta.destination, Some(target));
            assert_eq!(meta.source, client_addr);

            server
                .send_to(meta.source, meta.destination, b"response")
                .await
                .unwrap();
            let reply = receive(&client, 1).await;
            assert_eq!(reply[0].0, b"response");
            assert_eq!(reply[0].1.source, SocketAddr::new(target, 4500));
        }
    });
}

#[test]
fn ipv6_pktinfo_destination() {
    let ns = netns("pk6");
    ns.ip(["addr", "add", "2001:db8::10/128", "dev", "lo", "nodad"])
        .unwrap();
    block_on_in(&ns, || async {
        let server = UdpSocket::bind(&UdpConfig::new("[::]:4500".parse().unwrap())).unwrap();
        let client = UdpSocket::bind(&UdpConfig::new("[::1]:0".parse().unwrap())).unwrap();
        let target: IpAddr = "2001:db8::10".parse().unwrap();
        client
            .send_batch(&[OutDatagrams {
                destination: (target, 4500).into(),
                source_ip: None,
                contents: b"v6",
                segment_size: None,
            }])
            .await
            .unwrap();
        let got = receive(&server, 1).await;
        assert_eq!(got[0].0, b"v6");
        assert_eq!(got[0].1.destination, Some(target));
        assert_eq!(got[0].1.source, client.local_addr().unwrap());
    });
}
