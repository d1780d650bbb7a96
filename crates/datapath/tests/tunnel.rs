//! End-to-end tests: two data planes in network namespaces (client and gateway) joined by
//! static SAs, with real traffic through the TUN devices (root only).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (HELPERS.md)

mod common;

use std::time::Duration;

use common::{
    CLIENT_VIP, CLIENT_VIP6, Lab, LabOptions, SaPair, VNET_HOST6, Way, cbc256_sha256, gcm256, ping,
    ping_any, tcp_transfer, wait_until,
};
use datapath::{DatapathEvent, Direction, IkeDatagram};
use esp::{Lifetime, LimitKind, OutboundConfig, SaEvent};
use testkit::netns::lab;

const MB100: u64 = 100 * 1000 * 1000;

/// Ping and a checksummed 100 MB TCP transfer each way, then clean shutdown.
fn traffic_both_ways(prefix: &str, opts: LabOptions) {
    let mut lab = Lab::new(prefix, opts);
    assert!(
        ping(&lab.topo.client, CLIENT_VIP, lab::VNET_HOST, 3),
        "client -> vnet host ping through the tunnel"
    );
    assert!(
        ping(&lab.topo.vnet, lab::VNET_HOST, CLIENT_VIP, 3),
        "vnet host -> client virtual IP ping (managing out)"
    );
    // UDP, including datagrams fragmented inside the tunnel (TUN MTU 1400).
    let sizes = [1, 100, 1372, 1372, 1373, 3000, 9000, 512];
    let got = common::udp_datagrams(&lab, &sizes, 6000);
    assert_eq!(
        got,
        common::expected_datagrams(&sizes),
        "UDP through the tunnel"
    );
    for (way, port) in [(Way::Upload, 5001), (Way::Download, 5002)] {
        let t = tcp_transfer(&lab, way, MB100, port);
        assert_eq!(t.bytes, MB100, "{way:?}: every byte arrived");
        assert_eq!(t.sent_hash, t.received_hash, "{way:?}: same bytes arrived");
        eprintln!(
            "{prefix} {way:?}: {:.0} Mbit/s (debug build)",
            t.bytes as f64 * 8.0 / t.elapsed.as_secs_f64() / 1e6
        );
    }
    let c = lab.client.dp.counters();
    let g = lab.gateway.dp.counters();
    // Two 100 MB transfers of ~1.35 KB segments are > 70k packets each way.
    assert!(
        c.encapsulated > 70_000 && g.decapsulated > 70_000,
        "{c:?} {g:?}"
    );
    assert!(
        g.encapsulated > 70_000 && c.decapsulated > 70_000,
        "{c:?} {g:?}"
    );
    assert_eq!(c.spoofed + g.spoofed, 0);
    assert_eq!(c.unknown_spi + g.unknown_spi, 0);
    // The SA's own counters agree with the totals once stragglers (FIN, ACKs) are through:
    // workers add to the totals after each batch.
    let agree = (0..50).any(|_| {
        let sa = lab.gateway.dp.sa_counters(1).unwrap();
        let total = lab.gateway.dp.counters().decapsulated;
        if sa.inbound.packets == total {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
        false
    });
    assert!(
        agree,
        "SA inbound packets match the gateway's decapsulated total"
    );
    assert_eq!(
        lab.gateway.dp.sa_counters(1).unwrap().inbound.auth_failed,
        0
    );
    assert_eq!(lab.client.stop(), opts.queues, "TUN queues handed back");
    assert_eq!(lab.gateway.stop(), opts.queues);
}

#[test]
fn aes256gcm_ping_and_100mb_both_ways() {
    traffic_both_ways("aodpgcm", LabOptions::default());
}

#[test]
fn aes256cbc_sha256_ping_and_100mb_both_ways() {
    traffic_both_ways(
        "aodpcbc",
        LabOptions {
            transform: cbc256_sha256(),
            ..LabOptions::default()
        },
    );
}

#[test]
fn offloaded_tun_two_queues_no_udp_gso() {
    traffic_both_ways(
        "aodpoff",
        LabOptions {
            transform: gcm256(),
            tun_offload: true,
            udp_offload: false,
            queues: 2,
            threads: 2,
            ..LabOptions::default()
        },
    );
}

/// With TUN offload a 64 KiB super-packet of small TCP segments splits into hundreds of
/// packets; all of them must fit one read batch or the whole super-packet is lost.
#[test]
fn offloaded_tun_small_segments() {
    let lab = Lab::new(
        "aodpmss",
        LabOptions {
            tun_offload: true,
            ..LabOptions::default()
        },
    );
    for (way, port) in [(Way::Upload, 5011), (Way::Download, 5012)] {
        let t = common::tcp_transfer_mss(&lab, way, 8_000_000, port, Some(88));
        assert_eq!(t.bytes, 8_000_000, "{way:?}");
        assert_eq!(t.sent_hash, t.received_hash, "{way:?}");
    }
    let c = lab.client.dp.counters();
    assert_eq!(c.rx_errors, 0, "{c:?}");
    assert!(c.encapsulated > 8_000_000 / 88, "{c:?}");
}

/// A packet from a source the gateway's SA does not cover is decrypted, then dropped and
/// counted; the real virtual IP still works. The client here is a malicious one: its own SA
/// would send from any source.
#[test]
fn spoofed_inner_source_is_dropped_and_counted() {
    let lab = Lab::new("aodpspf", LabOptions::default());
    let pair = common::SaPair::new(2);
    let t = lab.opts.transform;
    lab.gateway
        .dp
        .install_sa(pair.gateway_sa(t, lab.client_addr_at_gateway()))
        .unwrap();
    let mut liar = pair.client_sa(t, lab.gateway_addr(), false);
    liar.selectors.local = vec![datapath::Selector::prefix("0.0.0.0/0".parse().unwrap())];
    lab.client.dp.install_sa(liar).unwrap();
    let spoofed = std::net::Ipv4Addr::new(172, 16, 201, 99);
    lab.topo
        .client
        .ip(["addr", "add", &format!("{spoofed}/32"), "dev", common::TUN])
        .unwrap();
    assert!(!ping(&lab.topo.client, spoofed, lab::VNET_HOST, 2));
    let g = lab.gateway.dp.counters();
    assert_eq!(g.spoofed, 2, "{g:?}");
    assert_eq!(g.decapsulated, 0);
    assert_eq!(lab.gateway.dp.sa_counters(2).unwrap().spoofed, 2);
    assert!(ping(&lab.topo.client, CLIENT_VIP, lab::VNET_HOST, 1));
    assert_eq!(lab.gateway.dp.counters().spoofed, 2);
}

/// An honest client's data plane does not even send from an address its SA does not cover.
#[test]
fn a_client_sends_only_from_its_own_selectors() {
    let lab = Lab::new("aodpown", LabOptions::default());
    let other = std::net::Ipv4Addr::new(172, 16, 201, 98);
    lab.topo
        .client
        .ip(["addr", "add", &format!("{other}/32"), "dev", common::TUN])
        .unwrap();
    assert!(!ping(&lab.topo.client, other, lab::VNET_HOST, 2));
    let c = lab.client.dp.counters();
    assert_eq!(c.outbound_refused, 2, "{c:?}");
    assert_eq!(c.encapsulated, 0);
    assert_eq!(lab.gateway.dp.counters().udp_rx_datagrams, 0);
}

/// The SA carries only what its traffic selectors cover, both ways. A client whose own SA
/// would send anything (a malicious one) reaches another client's address: the gateway
/// decrypts the packet, finds the destination outside TSr and drops it, counted. The gateway
/// itself, pinging the client from its public address (outside TSr), sends nothing.
#[test]
fn packets_outside_the_selectors_are_dropped_both_ways() {
    let lab = Lab::new("aodpts", LabOptions::default());
    let other_client = std::net::Ipv4Addr::new(172, 16, 201, 11);
    let pair = common::SaPair::new(2);
    let t = lab.opts.transform;
    lab.gateway
        .dp
        .install_sa(pair.gateway_sa(t, lab.client_addr_at_gateway()))
        .unwrap();
    let mut greedy = pair.client_sa(t, lab.gateway_addr(), false);
    greedy.routes = vec![format!("{other_client}/32").parse().unwrap()];
    greedy.selectors.remote = vec![datapath::Selector::prefix("0.0.0.0/0".parse().unwrap())];
    lab.client.dp.install_sa(greedy).unwrap();
    lab.topo
        .client
        .ip([
            "route",
            "add",
            &format!("{other_client}/32"),
            "dev",
            common::TUN,
        ])
        .unwrap();
    assert!(!ping(&lab.topo.client, CLIENT_VIP, other_client, 2));
    let g = lab.gateway.dp.counters();
    assert_eq!(g.inbound_destination_refused, 2, "{g:?}");
    assert_eq!(
        lab.gateway
            .dp
            .sa_counters(2)
            .unwrap()
            .inbound_destination_refused,
        2
    );
    assert_eq!(g.spoofed, 0);

    let gateway_public = lab.topo.gateway_wan();
    assert!(!ping(&lab.topo.gateway, gateway_public, CLIENT_VIP, 2));
    assert!(lab.gateway.dp.counters().outbound_refused >= 2);
    // What the selectors cover still flows.
    assert!(ping(&lab.topo.client, CLIENT_VIP, lab::VNET_HOST, 1));
}

/// Make-before-break rekey: after the new SA is installed, traffic uses it; the old inbound
/// SA is still accepted until removed; removing it leaves the tunnel working. Then an SPI
/// the gateway no longer has produces an UnknownSpi event.
#[test]
fn rekey_make_before_break_and_unknown_spi() {
    let mut lab = Lab::new("aodprk", LabOptions::default());
    assert!(ping(&lab.topo.client, CLIENT_VIP, lab::VNET_HOST, 1));
    // Gateway first: it then receives on both SPIs while the client still uses the old one.
    let new = SaPair::new(2);
    let t = lab.opts.transform;
    lab.gateway
        .dp
        .install_sa(new.gateway_sa(t, lab.client_addr_at_gateway()))
        .unwrap();
    assert!(
        !lab.client.dp.sa_ids().contains(&2),
        "client has only the old SA"
    );
    // The gateway now sends with the new SA, which the client does not know yet: the reply
    // is lost and counted at the client as an unknown SPI.
    assert!(!ping(&lab.topo.client, CLIENT_VIP, lab::VNET_HOST, 1));
    assert!(lab.client.dp.counters().unknown_spi >= 1);
    lab.client
        .dp
        .install_sa(new.client_sa(t, lab.gateway_addr(), false))
        .unwrap();
    assert!(ping(&lab.topo.client, CLIENT_VIP, lab::VNET_HOST, 2));
    let old_in = lab.gateway.dp.sa_counters(1).unwrap().inbound.packets;
    let new_in = lab.gateway.dp.sa_counters(2).unwrap().inbound.packets;
    assert!(new_in >= 2, "new SA carries traffic");
    lab.gateway.dp.remove_sa(1).unwrap();
    lab.client.dp.remove_sa(1).unwrap();
    assert!(lab.gateway.dp.sa_counters(1).is_err());
    assert!(ping(&lab.topo.client, CLIENT_VIP, lab::VNET_HOST, 2));
    assert!(lab.gateway.dp.sa_counters(2).unwrap().inbound.packets >= new_in + 2);
    assert!(old_in >= 1);
    // Duplicate ids and SPIs are refused.
    assert!(
        lab.gateway
            .dp
            .install_sa(new.gateway_sa(t, lab.client_addr_at_gateway()))
            .is_err()
    );
    // Gateway drops SA 2: the client's ESP now has an unknown SPI there.
    lab.gateway.dp.remove_sa(2).unwrap();
    assert!(!ping(&lab.topo.client, CLIENT_VIP, lab::VNET_HOST, 1));
    let ev = lab.gateway.wait_event(Duration::from_secs(2), |e| {
        matches!(e, DatapathEvent::UnknownSpi { .. })
    });
    match ev {
        Some(DatapathEvent::UnknownSpi { from, spi }) => {
            assert_eq!(spi, new.gateway_spi);
            assert_eq!(from, lab.client_addr_at_gateway());
        }
        other => panic!("expected UnknownSpi, got {other:?}"),
    }
    assert_eq!(lab.gateway.stop(), 1);
    assert_eq!(lab.client.stop(), 1);
}

/// Lossless rekey, client as the responder (RFC 7296 2.8): its new SA receives at once but the
/// client keeps sending on the old one, which the gateway (the initiator, not switched yet)
/// still has; the gateway installs the new SA and sends on it at once; when the client retires
/// the old SA (the gateway's Delete) it sends on the new one, and the old one keeps receiving
/// for its linger. A replacement nobody activates sends after its fallback time.
#[test]
fn rekey_responder_sends_on_the_old_sa_until_it_is_retired() {
    let mut lab = Lab::new("aodprr", LabOptions::default());
    let t = lab.opts.transform;
    let new = SaPair::new(2);
    let client = &lab.client.dp;
    let gateway = &lab.gateway.dp;
    // The client answers the rekey: the new SA receives, the old one sends.
    client
        .install_sa_replacing(
            new.client_sa(t, lab.gateway_addr(), false),
            1,
            Duration::from_secs(60),
        )
        .unwrap();
    assert!(!client.is_sending(2).unwrap() && client.is_sending(1).unwrap());
    assert!(ping(&lab.topo.client, CLIENT_VIP, lab::VNET_HOST, 2));
    assert_eq!(client.sa_counters(2).unwrap().outbound.packets, 0);
    // The gateway gets the answer: installs the new SA, activated at once (the initiator).
    gateway
        .install_sa_replacing(
            new.gateway_sa(t, lab.client_addr_at_gateway()),
            1,
            Duration::from_secs(60),
        )
        .unwrap();
    assert!(!gateway.is_sending(2).unwrap());
    gateway.activate_outbound(2).unwrap();
    // (The old SA would still carry routes the new one lacks; here they are the same.)
    assert!(gateway.is_sending(2).unwrap());
    let sent_old = client.sa_counters(1).unwrap().outbound.packets;
    assert!(ping(&lab.topo.client, CLIENT_VIP, lab::VNET_HOST, 2));
    assert!(
        client.sa_counters(2).unwrap().inbound.packets >= 2,
        "replies on the new SA"
    );
    assert!(client.sa_counters(1).unwrap().outbound.packets >= sent_old + 2);
    assert_eq!(client.sa_counters(2).unwrap().outbound.packets, 0);
    // The gateway's Delete of the old SA: the client switches; both keep the old SA inbound
    // for the linger (long enough that a busy machine cannot outrun it before the checks), and
    // drop it after.
    let linger = Duration::from_secs(3);
    let retired = std::time::Instant::now();
    client.retire_sa(1, linger).unwrap();
    gateway.retire_sa(1, linger).unwrap();
    assert!(
        client.sa_ids().contains(&1) && gateway.sa_ids().contains(&1),
        "still receiving right after the switch"
    );
    assert!(client.is_sending(2).unwrap() && !client.is_sending(1).unwrap());
    assert!(ping(&lab.topo.client, CLIENT_VIP, lab::VNET_HOST, 2));
    assert!(client.sa_counters(2).unwrap().outbound.packets >= 2);
    // Only while the linger lasts can this be checked (a stalled machine may outrun it).
    if retired.elapsed() < linger {
        assert!(
            client.sa_ids().contains(&1) && gateway.sa_ids().contains(&1),
            "still receiving during the linger"
        );
    } else {
        eprintln!("the ping outlasted the linger: the check during it was skipped");
    }
    assert!(
        wait_until(linger + Duration::from_secs(20), || {
            client.sa_ids() == vec![2] && gateway.sa_ids() == vec![2]
        }),
        "the retired SA is dropped after its linger: client {:?}, gateway {:?}",
        client.sa_ids(),
        gateway.sa_ids()
    );
    assert!(
        retired.elapsed() >= linger,
        "dropped before its linger ended"
    );
    assert!(ping(&lab.topo.client, CLIENT_VIP, lab::VNET_HOST, 2));
    assert_eq!(lab.client.dp.counters().unknown_spi, 0);
    assert_eq!(lab.gateway.dp.counters().unknown_spi, 0);
    // A replacement that is never activated takes over after its fallback time.
    let third = SaPair::new(3);
    client
        .install_sa_replacing(
            third.client_sa(t, lab.gateway_addr(), false),
            2,
            Duration::from_millis(200),
        )
        .unwrap();
    assert!(!client.is_sending(3).unwrap());
    assert!(
        wait_until(Duration::from_secs(20), || client.is_sending(3).unwrap()),
        "the replacement takes over after its fallback time"
    );
    assert!(client.activate_outbound(99).is_err());
    assert!(client.retire_sa(99, Duration::ZERO).is_err());
    assert_eq!(lab.gateway.stop(), 1);
    assert_eq!(lab.client.stop(), 1);
}

/// Behind a NAT: the gateway's SA starts with a wrong peer address; the first ESP from the
/// NAT-mapped address raises PeerAddressChanged, update_peer fixes the return path. IKE
/// datagrams (non-ESP marker) and NAT keepalives are demultiplexed on the same socket.
#[test]
fn nat_rebinding_ike_and_keepalives() {
    let opts = LabOptions {
        nat: true,
        keepalive: Some(Duration::from_millis(100)),
        ..LabOptions::default()
    };
    let mut lab = Lab::new("aodpnat", opts);
    let mapped = lab.client_addr_at_gateway();
    // Point the gateway at a stale NAT mapping (another port on the NAT's address), as after
    // a rebinding: nothing answers there.
    let wrong = std::net::SocketAddr::new(mapped.ip(), 4499);
    lab.gateway.dp.update_peer(1, wrong, None).unwrap();
    assert!(!ping(&lab.topo.client, CLIENT_VIP, lab::VNET_HOST, 1));
    let ev = lab.gateway.wait_event(Duration::from_secs(2), |e| {
        matches!(e, DatapathEvent::PeerAddressChanged { .. })
    });
    match ev {
        Some(DatapathEvent::PeerAddressChanged { id, expected, seen }) => {
            assert_eq!((id, expected), (1, wrong));
            assert_eq!(seen.ip(), mapped.ip());
            lab.gateway.dp.update_peer(1, seen, None).unwrap();
        }
        other => panic!("expected PeerAddressChanged, got {other:?}"),
    }
    assert!(ping(&lab.topo.client, CLIENT_VIP, lab::VNET_HOST, 3));

    // IKE on 4500: the marker goes on at the sender and comes off at the receiver.
    let gw = lab.gateway_addr();
    let client_dp = lab.client.dp.clone();
    lab.client
        .block_on(client_dp.send_ike(gw, None, b"\x11\x22ike-message"))
        .unwrap();
    match lab.gateway.wait_ike(Duration::from_secs(2)) {
        Some(IkeDatagram { from, to, message }) => {
            assert_eq!(message, b"\x11\x22ike-message");
            assert_eq!(from.ip(), mapped.ip());
            assert_eq!(to, gw);
        }
        None => panic!("no IKE datagram arrived"),
    }
    // The client's SA asks for keepalives every 100 ms; the gateway absorbs them. (A worker
    // publishes its counters when its round ends, which can be after the IKE datagram it
    // handed over has arrived here: wait for the count too.)
    assert!(
        wait_until(Duration::from_secs(20), || {
            let c = lab.gateway.dp.counters();
            c.keepalives_rx >= 2 && c.ike_rx >= 1
        }),
        "{:?}",
        lab.gateway.dp.counters()
    );
    let g = lab.gateway.dp.counters();
    assert!(lab.client.dp.counters().keepalives_tx >= 2);
    assert_eq!(g.ike_rx, 1);
    assert_eq!(g.invalid_rx, 0);
    lab.gateway.stop();
    lab.client.stop();
}

/// IPv6 inside the tunnel (over the IPv4 outer path): both directions, and the IPv6 virtual
/// address is the only IPv6 source the client's SA sends from.
#[test]
fn ipv6_inner_traffic() {
    let lab = Lab::new(
        "aodpv6",
        LabOptions {
            ipv6: true,
            ..LabOptions::default()
        },
    );
    assert!(ping_any(&lab.topo.client, CLIENT_VIP6, VNET_HOST6, 3));
    assert!(ping_any(&lab.topo.vnet, VNET_HOST6, CLIENT_VIP6, 2));
    assert!(ping(&lab.topo.client, CLIENT_VIP, lab::VNET_HOST, 1));
    let spoofed6 = "fd00:201::99";
    lab.topo
        .client
        .ip([
            "-6",
            "addr",
            "add",
            &format!("{spoofed6}/128"),
            "dev",
            common::TUN,
            "nodad",
        ])
        .unwrap();
    assert!(!ping_any(&lab.topo.client, spoofed6, VNET_HOST6, 1));
    let c = lab.client.dp.counters();
    assert_eq!(c.outbound_refused, 1, "{c:?}");
    let g = lab.gateway.dp.counters();
    assert_eq!(g.decapsulated, 3 + 2 + 1, "{g:?}");
}

/// Outbound packet limits from `esp` reach the IKE side as events: the soft limit asks for a
/// rekey, the hard limit stops the SA from sending (drops counted). A full event channel drops
/// IKE datagrams but never the once-only SA events.
#[test]
fn sa_limits_raise_events_and_stop_sending() {
    let mut lab = Lab::new(
        "aodplim",
        LabOptions {
            event_capacity: 2,
            ..LabOptions::default()
        },
    );
    // Fill the client's event channel (never read until later) with unknown-SPI reports: the
    // gateway answers on an SA the client does not have.
    let t = lab.opts.transform;
    lab.gateway
        .dp
        .install_sa(SaPair::new(2).gateway_sa(t, lab.client_addr_at_gateway()))
        .unwrap();
    for _ in 0..5 {
        assert!(!ping(&lab.topo.client, CLIENT_VIP, lab::VNET_HOST, 1));
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(
        lab.client.dp.counters().events_dropped >= 1,
        "{:?}",
        lab.client.dp.counters()
    );
    // Back to the plain pair 1 on both sides (SA 2 took over the gateway's routes).
    lab.gateway.dp.remove_sa(2).unwrap();
    lab.gateway.dp.remove_sa(1).unwrap();
    lab.gateway
        .dp
        .install_sa(SaPair::new(1).gateway_sa(t, lab.client_addr_at_gateway()))
        .unwrap();
    lab.client.dp.remove_sa(1).unwrap();
    let decapsulated_before = lab.gateway.dp.counters().decapsulated;
    let limited = OutboundConfig {
        lifetime: Lifetime {
            soft_packets: 2,
            hard_packets: 4,
            ..Lifetime::default()
        },
        ..OutboundConfig::default()
    };
    lab.client
        .dp
        .install_sa(SaPair::new(1).client_sa_with(t, lab.gateway_addr(), false, limited))
        .unwrap();
    assert!(ping(&lab.topo.client, CLIENT_VIP, lab::VNET_HOST, 2));
    let soft = lab.client.wait_event(Duration::from_secs(2), |e| {
        matches!(e, DatapathEvent::SaLimit { .. })
    });
    assert_eq!(
        soft,
        Some(DatapathEvent::SaLimit {
            id: 1,
            direction: Direction::Outbound,
            event: SaEvent::RekeyNeeded(LimitKind::Packets),
        })
    );
    // Packets 3 and 4 go out, then the SA refuses.
    assert!(!ping(&lab.topo.client, CLIENT_VIP, lab::VNET_HOST, 4));
    let hard = lab.client.wait_event(Duration::from_secs(2), |e| {
        matches!(e, DatapathEvent::SaLimit { .. })
    });
    assert_eq!(
        hard,
        Some(DatapathEvent::SaLimit {
            id: 1,
            direction: Direction::Outbound,
            event: SaEvent::Expired(LimitKind::Packets),
        })
    );
    let sa = lab.client.dp.sa_counters(1).unwrap();
    assert_eq!(sa.outbound.packets, 4);
    assert_eq!(sa.outbound.refused, 2);
    assert_eq!(lab.client.dp.counters().encap_dropped, 2);
    assert_eq!(
        lab.gateway.dp.counters().decapsulated - decapsulated_before,
        4
    );
    lab.client.stop();
}

/// IKE on port 4500 has a channel of its own: with the event channel full (capacity 1, never
/// read) of unknown-SPI reports, an IKE message still reaches the IKE side.
#[test]
fn ike_on_4500_is_not_crowded_out_by_a_full_event_channel() {
    let opts = LabOptions {
        event_capacity: 1,
        ..LabOptions::default()
    };
    let mut lab = Lab::new("aodpik", opts);
    lab.gateway.dp.remove_sa(1).unwrap();
    // ESP with an SPI the gateway no longer has, spread over time so that several reports are
    // due: the first fills the channel, later ones are dropped and counted.
    for _ in 0..3 {
        assert!(!ping(&lab.topo.client, CLIENT_VIP, lab::VNET_HOST, 1));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        lab.gateway.dp.counters().events_dropped >= 1,
        "{:?}",
        lab.gateway.dp.counters()
    );
    let gw = lab.gateway_addr();
    let client_dp = lab.client.dp.clone();
    lab.client
        .block_on(client_dp.send_ike(gw, None, b"\x11\x22ike-message"))
        .unwrap();
    let ike = lab.gateway.wait_ike(Duration::from_secs(2));
    assert_eq!(
        ike.map(|d| d.message),
        Some(b"\x11\x22ike-message".to_vec())
    );
    assert_eq!(lab.gateway.dp.counters().ike_dropped, 0);
    assert_eq!(lab.gateway.stop(), 1);
    assert_eq!(lab.client.stop(), 1);
}
