//! Rekeying (RFC 7296 1.3.2, 1.3.3, 2.8) between our initiator and our responder: Child SA
//! and IKE SA rekeys started by either side, on demand and by lifetime, with PFS, collisions,
//! and a model data plane that checks that no packet is lost while SAs are replaced.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use common::*;
use ikev2::ike_wire::{ExchangeType, Header};
use ikev2::{ChildSa, EspProposal, Event, IkeSaId, IkeSaState};
use pki::KeyAlgorithm;

fn exchange_of(f: &Flight) -> ExchangeType {
    Header::parse(&f.t.bytes).unwrap().header.exchange_type
}

fn server_id(pair: &Pair) -> IkeSaId {
    pair.server_events[0].0
}

/// Keys and SPIs of the newest Child SA each side holds, and that they mirror each other.
fn assert_mirrored(c: &ChildSa, s: &ChildSa) {
    assert_eq!(c.spi_in, s.spi_out);
    assert_eq!(c.spi_out, s.spi_in);
    assert_eq!(c.algorithms, s.algorithms);
    assert_eq!(c.encr_key_out, s.encr_key_in);
    assert_eq!(c.encr_key_in, s.encr_key_out);
    assert_eq!(c.integ_key_out, s.integ_key_in);
    assert_eq!(c.integ_key_in, s.integ_key_out);
    assert_ne!(c.encr_key_in, c.encr_key_out);
}

fn rekeyed(events: &[Event]) -> Vec<(u32, u32, &ChildSa)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ChildSaRekeyed {
                old_spi_in,
                old_spi_out,
                new,
            } => Some((*old_spi_in, *old_spi_out, &**new)),
            _ => None,
        })
        .collect()
}

fn server_event_list(pair: &Pair) -> Vec<Event> {
    pair.server_events.iter().map(|(_, e)| e.clone()).collect()
}

fn deleted(events: &[Event]) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ChildSaDeleted { spi_in, .. } => Some(*spi_in),
            _ => None,
        })
        .collect()
}

#[test]
fn client_rekeys_the_child_sa_and_deletes_the_old_one() {
    let mut pair = Pair::new(Setup::new(KeyAlgorithm::P256));
    pair.settle();
    let (old_c, old_s) = (
        pair.client_child().unwrap().clone(),
        pair.server_child().unwrap().clone(),
    );
    assert!(pair.client.rekey_child_sa(pair.now, old_c.spi_in));
    pair.collect();
    pair.settle();

    let exchanges: Vec<ExchangeType> = pair.wire.iter().skip(4).map(exchange_of).collect();
    assert_eq!(
        exchanges,
        [
            ExchangeType::CREATE_CHILD_SA,
            ExchangeType::CREATE_CHILD_SA,
            ExchangeType::INFORMATIONAL,
            ExchangeType::INFORMATIONAL
        ]
    );
    let server_events = server_event_list(&pair);
    let (c, s) = (rekeyed(&pair.client_events), rekeyed(&server_events));
    assert_eq!((c.len(), s.len()), (1, 1));
    assert_eq!((c[0].0, c[0].1), (old_c.spi_in, old_c.spi_out));
    assert_eq!((s[0].0, s[0].1), (old_s.spi_in, old_s.spi_out));
    let (new_c, new_s) = (c[0].2, s[0].2);
    assert_mirrored(new_c, new_s);
    assert_ne!(new_c.spi_in, old_c.spi_in);
    assert_ne!(new_c.encr_key_in, old_c.encr_key_in);
    // Same tunnel: selectors, virtual IP, DNS carried over.
    assert_eq!(new_c.ts_local, old_c.ts_local);
    assert_eq!(new_c.ts_remote, old_c.ts_remote);
    assert_eq!(new_c.virtual_ips, old_c.virtual_ips);
    assert_eq!(new_s.virtual_ips, old_s.virtual_ips);
    assert_eq!(new_c.dns_servers, old_c.dns_servers);
    // The old one is gone on both sides, after the new one was announced.
    assert_eq!(deleted(&pair.client_events), [old_c.spi_in]);
    assert_eq!(deleted(&server_events), [old_s.spi_in]);
    assert_eq!(pair.client.child_sa_spis(), [new_c.spi_in]);
    let sa = pair.server.sa(server_id(&pair)).unwrap();
    assert_eq!(sa.child_sa_spis(), [new_s.spi_in]);
    assert_eq!(pair.client.state(), IkeSaState::Established);
    assert_eq!(pair.pool.leased(), 1, "the lease stays with the IKE SA");
}

#[test]
fn rekey_asked_for_while_a_request_is_outstanding_starts_after_it() {
    let mut pair = Pair::new(Setup::new(KeyAlgorithm::P256));
    pair.settle();
    let spi = pair.client_child().unwrap().spi_in;
    assert!(pair.client.send_liveness_check(pair.now));
    let sent = pair.wire.len();
    assert!(pair.client.rekey_child_sa(pair.now, spi));
    assert!(
        pair.client.rekey_child_sa(pair.now, spi),
        "asking twice is fine"
    );
    pair.collect();
    assert_eq!(
        pair.wire.len(),
        sent + 1,
        "only the liveness check is on the wire"
    );
    // The liveness answer frees the window; the due rekey runs on the next timeout.
    pair.run(true, Duration::from_secs(5));
    assert_eq!(rekeyed(&pair.client_events).len(), 1);
    assert_eq!(deleted(&pair.client_events), [spi]);
    assert!(
        !pair.client.rekey_child_sa(pair.now, spi),
        "the old SA is gone"
    );
}

#[test]
fn gateway_rekeys_the_child_sa() {
    let mut pair = Pair::new(Setup::new(KeyAlgorithm::P256));
    pair.settle();
    let old_s = pair.server_child().unwrap().clone();
    let id = server_id(&pair);
    assert!(pair.server.rekey_child_sa(id, pair.now, old_s.spi_in));
    assert!(
        !pair.server.rekey_child_sa(id, pair.now, 12345),
        "unknown SPI"
    );
    pair.collect();
    pair.settle();
    let server_events = server_event_list(&pair);
    let (c, s) = (rekeyed(&pair.client_events), rekeyed(&server_events));
    assert_eq!((c.len(), s.len()), (1, 1));
    assert_mirrored(c[0].2, s[0].2);
    // The gateway's selectors stay its own: TSi of this exchange is the gateway's side.
    assert_eq!(s[0].2.ts_local, old_s.ts_local);
    assert_eq!(s[0].2.ts_remote, old_s.ts_remote);
    assert_eq!(deleted(&server_events), [old_s.spi_in]);
    assert_eq!(deleted(&pair.client_events), [old_s.spi_out]);
}

#[test]
fn child_sa_lifetime_triggers_rekeys_with_jitter() {
    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.server.ike.child_lifetime = Some(Duration::from_secs(100));
    setup.client.ike.child_lifetime = None;
    let mut pair = Pair::new(setup);
    pair.settle();
    pair.run(true, Duration::from_secs(1000));
    let server_events = server_event_list(&pair);
    let (c, s) = (rekeyed(&pair.client_events), rekeyed(&server_events));
    // A rekey every 80..90 s: 11 or 12 in 1000 s.
    assert!((11..=12).contains(&s.len()), "{} rekeys", s.len());
    assert_eq!(c.len(), s.len());
    for (a, b) in c.iter().zip(&s) {
        assert_mirrored(a.2, b.2);
    }
    // Each rekey deleted its predecessor: one Child SA left on each side.
    assert_eq!(deleted(&server_events).len(), s.len());
    assert_eq!(pair.client.child_sa_spis(), [c.last().unwrap().2.spi_in]);
    // Only the gateway has a lifetime, so it started every rekey.
    let gateway_requests = pair
        .wire
        .iter()
        .filter(|f| exchange_of(f) == ExchangeType::CREATE_CHILD_SA && !f.to_server)
        .count();
    assert_eq!(gateway_requests, s.len());
}

#[test]
fn child_rekey_with_pfs_exchanges_ke() {
    let mut setup = Setup::new(KeyAlgorithm::P256);
    let pfs = EspProposal::parse("aes256gcm16-ecp384", false).unwrap();
    setup.client.ike.esp_proposals = vec![pfs.clone()];
    setup.server.ike.esp_proposals = vec![pfs];
    let mut pair = Pair::new(setup);
    pair.settle();
    let spi = pair.client_child().unwrap().spi_in;
    assert!(pair.client.rekey_child_sa(pair.now, spi));
    pair.collect();
    pair.settle();
    let server_events = server_event_list(&pair);
    let (c, s) = (rekeyed(&pair.client_events), rekeyed(&server_events));
    assert_eq!((c.len(), s.len()), (1, 1));
    assert_mirrored(c[0].2, s[0].2);
    // The request was bigger than without KE (an ECP-384 public value is 96 bytes).
    let request = pair
        .wire
        .iter()
        .find(|f| exchange_of(f) == ExchangeType::CREATE_CHILD_SA)
        .unwrap();
    assert!(request.t.bytes.len() > 300, "{}", request.t.bytes.len());
}

#[test]
fn pfs_required_by_the_responder_is_refused_without_ke_and_the_tunnel_stays() {
    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.server.ike.esp_proposals = vec![EspProposal::parse("aes256gcm16-ecp384", false).unwrap()];
    let mut pair = Pair::new(setup);
    pair.settle();
    let spi = pair.client_child().unwrap().spi_in;
    assert!(pair.client.rekey_child_sa(pair.now, spi));
    pair.collect();
    pair.settle();
    assert!(rekeyed(&pair.client_events).is_empty());
    let f = pair.client_failure().expect("the rekey failed");
    assert_eq!(
        f.notify_received,
        Some(ikev2::ike_wire::NotifyType::NO_PROPOSAL_CHOSEN)
    );
    assert_eq!(pair.client.state(), IkeSaState::Established);
    assert_eq!(pair.client.child_sa_spis(), [spi]);
}

#[test]
fn child_sa_whose_rekey_keeps_failing_is_deleted_at_its_hard_lifetime() {
    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.server.ike.esp_proposals = vec![EspProposal::parse("aes256gcm16-ecp384", false).unwrap()];
    setup.client.ike.child_lifetime = Some(Duration::from_secs(100));
    let mut pair = Pair::new(setup);
    pair.settle();
    let child = pair.client_child().unwrap().clone();
    pair.run(true, Duration::from_secs(99));
    assert!(pair.client_failure().is_some(), "the rekey was refused");
    assert!(deleted(&pair.client_events).is_empty());
    pair.run(true, Duration::from_secs(101));
    assert_eq!(deleted(&pair.client_events), [child.spi_in]);
    assert_eq!(deleted(&server_event_list(&pair)), [child.spi_out]);
    assert!(pair.client.child_sa_spis().is_empty());
    // The IKE SA stays (a remote-access client would now reconnect or delete it).
    assert_eq!(pair.client.state(), IkeSaState::Established);
}

fn ike_rekeyed(events: &[Event]) -> Vec<(u64, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::IkeSaRekeyed { spi_i, spi_r } => Some((*spi_i, *spi_r)),
            _ => None,
        })
        .collect()
}

/// After an IKE rekey: both agree on the new SPIs, the old SA is gone, and the new one works
/// (a Child SA rekey and liveness checks in both directions).
fn check_after_ike_rekey(pair: &mut Pair, old_spis: (u64, u64)) {
    let server_events = server_event_list(pair);
    let (c, s) = (
        ike_rekeyed(&pair.client_events),
        ike_rekeyed(&server_events),
    );
    assert_eq!(c.len(), 1);
    assert_eq!(c, s);
    assert_ne!(c[0], old_spis);
    assert_eq!(pair.client.spis(), c[0]);
    let id = server_id(pair);
    assert_eq!(pair.server.len(), 1);
    let sa = pair.server.sa(id).expect("same IkeSaId after the rekey");
    assert_eq!(sa.spis(), c[0]);
    assert!(!sa.has_local_spi(old_spis.0) && !sa.has_local_spi(old_spis.1));
    // The old IKE SA's Delete went out and was answered.
    let deletes = pair
        .wire
        .iter()
        .filter(|f| {
            let h = Header::parse(&f.t.bytes).unwrap().header;
            (h.spi_i, h.spi_r) == old_spis && h.exchange_type == ExchangeType::INFORMATIONAL
        })
        .count();
    assert_eq!(deletes, 2);
    assert!(pair.client.poll_timeout().unwrap() > pair.now + Duration::from_secs(60));

    // The new IKE SA carries requests both ways.
    assert!(pair.client.send_liveness_check(pair.now));
    pair.collect();
    pair.settle();
    assert!(pair.server.send_liveness_check(id, pair.now));
    pair.collect();
    pair.settle();
    let child = pair.client.child_sa_spis()[0];
    assert!(pair.client.rekey_child_sa(pair.now, child));
    pair.collect();
    pair.settle();
    let server_events = server_event_list(pair);
    let (c, s) = (rekeyed(&pair.client_events), rekeyed(&server_events));
    assert_eq!((c.len(), s.len()), (1, 1));
    assert_mirrored(c[0].2, s[0].2);
    assert!(pair.client.poll_timeout().unwrap() > pair.now + Duration::from_secs(60));
    assert_eq!(pair.client.state(), IkeSaState::Established);
    assert!(pair.client_failure().is_none() && pair.server_failure().is_none());
}

#[test]
fn client_rekeys_the_ike_sa() {
    let mut pair = Pair::new(Setup::new(KeyAlgorithm::P256));
    pair.settle();
    let old = pair.client.spis();
    let child = pair.client_child().unwrap().clone();
    assert!(pair.client.rekey_ike_sa(pair.now));
    pair.collect();
    pair.settle();
    // The Child SA moved over untouched.
    assert_eq!(pair.client.child_sa_spis(), [child.spi_in]);
    assert!(deleted(&pair.client_events).is_empty());
    check_after_ike_rekey(&mut pair, old);
}

#[test]
fn gateway_rekeys_the_ike_sa_and_becomes_its_initiator() {
    let mut pair = Pair::new(Setup::new(KeyAlgorithm::P256));
    pair.settle();
    let old = pair.client.spis();
    let id = server_id(&pair);
    assert!(pair.server.rekey_ike_sa(id, pair.now));
    pair.collect();
    pair.settle();
    // The gateway started the rekey, so it is the new SA's original initiator: its SPI is
    // SPIi now, and that is what it files the SA under.
    let (spi_i, _) = pair.client.spis();
    assert_eq!(pair.server.sa(id).unwrap().local_spi(), spi_i);
    assert_eq!(pair.client.local_spi(), pair.client.spis().1);
    check_after_ike_rekey(&mut pair, old);
    // And a second rekey, started by the client this time, flips it back.
    let before = pair.client.spis();
    assert!(pair.client.rekey_ike_sa(pair.now));
    pair.collect();
    pair.settle();
    assert_ne!(pair.client.spis(), before);
    assert_eq!(pair.client.local_spi(), pair.client.spis().0);
    assert_eq!(pair.server.sa(id).unwrap().spis(), pair.client.spis());
    assert!(pair.server.send_liveness_check(id, pair.now));
    pair.collect();
    pair.settle();
    assert_eq!(pair.client.state(), IkeSaState::Established);
    assert!(pair.server_failure().is_none());
}

#[test]
fn lost_ike_rekey_response_is_resent_from_the_old_sa() {
    let mut pair = Pair::new(Setup::new(KeyAlgorithm::P256));
    pair.settle();
    let old = pair.client.spis();
    // Drop the first CREATE_CHILD_SA response.
    let mut dropped = false;
    pair.fate = Box::new(move |_, f| {
        if !dropped && !f.to_server && exchange_of(f) == ExchangeType::CREATE_CHILD_SA {
            dropped = true;
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    assert!(pair.client.rekey_ike_sa(pair.now));
    pair.collect();
    pair.run(true, Duration::from_secs(10));
    let responses = pair
        .wire
        .iter()
        .filter(|f| exchange_of(f) == ExchangeType::CREATE_CHILD_SA && !f.to_server)
        .count();
    assert_eq!(responses, 2, "the response was sent again");
    check_after_ike_rekey(&mut pair, old);
}

#[test]
fn ike_lifetime_rekeys_repeatedly_and_child_sas_survive() {
    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.client.ike.ike_lifetime = Some(Duration::from_secs(300));
    setup.server.ike.ike_lifetime = Some(Duration::from_secs(300));
    setup.client.ike.child_lifetime = Some(Duration::from_secs(200));
    setup.server.ike.child_lifetime = Some(Duration::from_secs(200));
    setup.client.ike.dpd_interval = Some(Duration::from_secs(30));
    let mut pair = Pair::new(setup);
    pair.settle();
    pair.run(true, Duration::from_secs(3000));
    let server_events = server_event_list(&pair);
    let ike = ike_rekeyed(&pair.client_events);
    assert!(ike.len() >= 9, "{} IKE rekeys", ike.len());
    assert_eq!(ike, ike_rekeyed(&server_events));
    let (c, s) = (rekeyed(&pair.client_events), rekeyed(&server_events));
    assert!(c.len() >= 14, "{} Child SA rekeys", c.len());
    assert_eq!(c.len(), s.len());
    for (a, b) in c.iter().zip(&s) {
        assert_eq!(a.2.spi_in, b.2.spi_out);
        assert_eq!(a.2.encr_key_out, b.2.encr_key_in);
    }
    assert_eq!(pair.client.child_sa_spis().len(), 1);
    assert_eq!(pair.client.state(), IkeSaState::Established);
    assert!(pair.client_failure().is_none() && pair.server_failure().is_none());
    assert_eq!(pair.server.len(), 1);
}

#[test]
fn simultaneous_child_rekeys_leave_exactly_one_new_child_sa() {
    for gateway_first in [false, true] {
        let mut pair = Pair::new(Setup::new(KeyAlgorithm::P256));
        pair.settle();
        let old = pair.client_child().unwrap().clone();
        let id = server_id(&pair);
        // Both requests are on the wire before either side sees the other's.
        assert!(pair.client.rekey_child_sa(pair.now, old.spi_in));
        assert!(pair.server.rekey_child_sa(id, pair.now, old.spi_out));
        pair.collect();
        if gateway_first {
            // Deliver the gateway's request first.
            let f = pair.in_flight.pop_front().unwrap();
            pair.in_flight.push_back(f);
        }
        pair.run(true, Duration::from_secs(30));
        let client = pair.client.child_sa_spis();
        let server = pair.server.sa(id).unwrap().child_sa_spis();
        assert_eq!(client.len(), 1, "{client:?}");
        assert_eq!(server.len(), 1, "{server:?}");
        // The survivor is a rekeyed SA whose keys both sides share.
        let server_events = server_event_list(&pair);
        let c = rekeyed(&pair.client_events);
        let s = rekeyed(&server_events);
        let cc = c.iter().find(|x| x.2.spi_in == client[0]).unwrap().2;
        let sc = s.iter().find(|x| x.2.spi_in == server[0]).unwrap().2;
        assert_mirrored(cc, sc);
        assert_ne!(cc.spi_in, old.spi_in);
        // Everything else was deleted on both sides.
        let mut gone_c = deleted(&pair.client_events);
        gone_c.sort_unstable();
        let mut made_c: Vec<u32> = c.iter().map(|x| x.2.spi_in).collect();
        made_c.push(old.spi_in);
        made_c.retain(|s| *s != client[0]);
        made_c.sort_unstable();
        assert_eq!(gone_c, made_c);
        assert!(pair.client_failure().is_none() && pair.server_failure().is_none());
        assert_eq!(pair.client.state(), IkeSaState::Established);
    }
}

#[test]
fn simultaneous_ike_rekeys_are_retried_until_one_wins() {
    let mut pair = Pair::new(Setup::new(KeyAlgorithm::P256));
    pair.settle();
    let old = pair.client.spis();
    let id = server_id(&pair);
    assert!(pair.client.rekey_ike_sa(pair.now));
    assert!(pair.server.rekey_ike_sa(id, pair.now));
    pair.collect();
    pair.run(true, Duration::from_secs(60));
    let temporary_failures = pair
        .wire
        .iter()
        .filter(|f| exchange_of(f) == ExchangeType::CREATE_CHILD_SA)
        .count();
    assert!(temporary_failures >= 6, "2 refused + 1 accepted exchange");
    check_after_ike_rekey(&mut pair, old);
}

#[test]
fn rekey_requests_cross_a_child_and_an_ike_rekey() {
    let mut pair = Pair::new(Setup::new(KeyAlgorithm::P256));
    pair.settle();
    let old = pair.client.spis();
    let id = server_id(&pair);
    let spi = pair.server_child().unwrap().spi_in;
    assert!(pair.client.rekey_ike_sa(pair.now));
    assert!(pair.server.rekey_child_sa(id, pair.now, spi));
    pair.collect();
    pair.run(true, Duration::from_secs(60));
    // Each refused the other (TEMPORARY_FAILURE), both retried later.
    let server_events = server_event_list(&pair);
    assert_eq!(ike_rekeyed(&pair.client_events).len(), 1);
    assert_eq!(
        ike_rekeyed(&pair.client_events),
        ike_rekeyed(&server_events)
    );
    assert_ne!(pair.client.spis(), old);
    assert_eq!(pair.server.sa(id).unwrap().spis(), pair.client.spis());
    let (c, s) = (rekeyed(&pair.client_events), rekeyed(&server_events));
    assert_eq!((c.len(), s.len()), (1, 1));
    assert_mirrored(c[0].2, s[0].2);
    assert_eq!(pair.client.child_sa_spis(), [c[0].2.spi_in]);
    assert!(pair.client_failure().is_none() && pair.server_failure().is_none());
    assert_eq!(pair.client.state(), IkeSaState::Established);
}

// ---------------------------------------------------------------- packets keep flowing

/// A model ESP data plane: inbound SPIs with their keys; outbound = the newest SA.
#[derive(Default)]
struct ModelDatapath {
    inbound: HashMap<u32, Vec<u8>>,
    outbound: Vec<(u32, u32, Vec<u8>)>,
    seen: usize,
}

impl ModelDatapath {
    fn apply<'a>(&mut self, events: impl Iterator<Item = &'a Event>) {
        let mut n = 0;
        for e in events {
            n += 1;
            if n <= self.seen {
                continue;
            }
            match e {
                Event::ChildSaEstablished(c) | Event::ChildSaRekeyed { new: c, .. } => {
                    self.inbound
                        .insert(c.spi_in, c.encr_key_in.as_bytes().to_vec());
                    self.outbound
                        .push((c.spi_in, c.spi_out, c.encr_key_out.as_bytes().to_vec()));
                }
                Event::ChildSaDeleted { spi_in, .. } => {
                    self.inbound.remove(spi_in);
                    self.outbound.retain(|(i, _, _)| i != spi_in);
                }
                _ => {}
            }
        }
        self.seen = n;
    }

    fn send(&self) -> Option<(u32, Vec<u8>)> {
        self.outbound.last().map(|(_, o, k)| (*o, k.clone()))
    }

    fn receives(&self, spi: u32, key: &[u8]) -> bool {
        self.inbound.get(&spi).is_some_and(|k| k == key)
    }
}

enum Item {
    Ike(Flight),
    Esp {
        to_server: bool,
        spi: u32,
        key: Vec<u8>,
    },
}

#[test]
fn packets_flow_without_loss_through_rekeys_and_collisions() {
    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.client.ike.child_lifetime = Some(Duration::from_secs(40));
    setup.server.ike.child_lifetime = Some(Duration::from_secs(40));
    setup.client.ike.ike_lifetime = Some(Duration::from_secs(130));
    setup.server.ike.ike_lifetime = Some(Duration::from_secs(110));
    let mut pair = Pair::new(setup);
    pair.settle();
    let id = server_id(&pair);
    let (mut client_dp, mut server_dp) = (ModelDatapath::default(), ModelDatapath::default());
    let mut wire: VecDeque<Item> = VecDeque::new();
    let (mut delivered, mut lost) = (0usize, 0usize);
    let end = pair.start + Duration::from_secs(1200);
    let mut step = 0u32;
    while pair.now < end {
        step += 1;
        // Now and then both sides ask for a Child SA rekey at the same moment (a data plane
        // hitting its soft limit on both ends).
        if step.is_multiple_of(301) {
            if let Some(&c) = pair.client.child_sa_spis().first() {
                pair.client.rekey_child_sa(pair.now, c);
            }
            if let Some(&s) = pair.server.sa(id).unwrap().child_sa_spis().first() {
                pair.server.rekey_child_sa(id, pair.now, s);
            }
        }
        pair.collect();
        wire.extend(pair.in_flight.drain(..).map(Item::Ike));
        client_dp.apply(pair.client_events.iter());
        server_dp.apply(pair.server_events.iter().map(|(_, e)| e));
        // One packet each way per step, behind whatever IKE is in flight.
        if let Some((spi, key)) = client_dp.send() {
            wire.push_back(Item::Esp {
                to_server: true,
                spi,
                key,
            });
        }
        if let Some((spi, key)) = server_dp.send() {
            wire.push_back(Item::Esp {
                to_server: false,
                spi,
                key,
            });
        }
        // Deliver what is on the wire (in order), then let 250 ms pass: what the deliveries
        // sent goes out in the next step.
        while let Some(item) = wire.pop_front() {
            match Some(item) {
                Some(Item::Ike(f)) => {
                    pair.wire.push(f.clone());
                    pair.deliver(&f);
                    pair.collect();
                    client_dp.apply(pair.client_events.iter());
                    server_dp.apply(pair.server_events.iter().map(|(_, e)| e));
                }
                Some(Item::Esp {
                    to_server,
                    spi,
                    key,
                }) => {
                    let dp = if to_server { &server_dp } else { &client_dp };
                    if dp.receives(spi, &key) {
                        delivered += 1;
                    } else {
                        lost += 1;
                    }
                }
                None => {}
            }
        }
        pair.now += Duration::from_millis(250);
        pair.client.handle_timeout(pair.now);
        pair.server.handle_timeout(pair.now);
    }
    let client_rekeys = rekeyed(&pair.client_events);
    let child_rekeys = client_rekeys.len();
    // Collisions show as two new SAs replacing the same old one.
    let mut olds: Vec<u32> = client_rekeys.iter().map(|r| r.0).collect();
    olds.sort_unstable();
    let collisions = olds.windows(2).filter(|w| w[0] == w[1]).count();
    assert!(collisions >= 10, "{collisions} collisions");
    let ike_rekeys = ike_rekeyed(&pair.client_events).len();
    assert!(child_rekeys >= 30, "{child_rekeys} Child SA rekeys");
    assert!(ike_rekeys >= 9, "{ike_rekeys} IKE SA rekeys");
    assert!(delivered > 9000, "{delivered} delivered");
    assert_eq!(lost, 0, "packets lost during rekeys");
    assert_eq!(pair.client.state(), IkeSaState::Established);
    assert!(pair.client_failure().is_none() && pair.server_failure().is_none());
    // Nothing piles up: one Child SA per side (plus at most one being replaced).
    assert!(client_dp.inbound.len() <= 2 && server_dp.inbound.len() <= 2);
}
