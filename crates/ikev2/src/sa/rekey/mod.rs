//! CREATE_CHILD_SA (RFC 7296 1.3.2, 1.3.3, 2.8, 2.18, 2.25): rekeying Child SAs and the IKE
//! SA in both directions, lifetimes, and the old IKE SA that lives on until it is deleted.
//!
//! Collisions: a Child SA rekey that crosses the peer's rekey of the same Child SA is resolved
//! as RFC 7296 2.8.1 says (both new SAs are created; the one with the lowest of the four
//! nonces is deleted by its creator, and the other exchange's initiator deletes the old SA).
//! Every other overlap (IKE rekey against anything, a rekey of an SA that is being deleted)
//! is answered with TEMPORARY_FAILURE and retried after a random delay (RFC 7296 2.25).
//!
//! Here: the state kept per Child SA, the rekey in progress, and the CREATE_CHILD_SA request
//! and response dispatch. [`lifetime`] decides when, [`child`] rekeys a Child SA, [`ike`] the
//! IKE SA, [`retired`] keeps the replaced IKE SA until it is gone.

use std::cmp::Ordering;
use std::time::{Duration, Instant};

use ike_wire::{ExchangeType, Notify, NotifyType, Payload, Payloads, ProtocolId, TransformId};
use ipsec_crypto::{DhGroup, DhPrivateKey, SharedSecret};

use super::children::ChildState;
use super::{IkeSa, IkeSaState};
use crate::event::{ChildSa, Event};
use crate::failure::{Failure, FailureReason};
use crate::proposal::IkeAlgorithms;

mod child;
mod ike;
mod lifetime;
mod retired;

pub(super) use retired::RetiredSa;

/// Delay before retrying a rekey the peer refused with TEMPORARY_FAILURE: 2 s plus up to 8 s.
const RETRY_BASE: Duration = Duration::from_secs(2);
const RETRY_JITTER: Duration = Duration::from_secs(8);

/// How long a rekeyed IKE SA waits for the peer's Delete before it is dropped silently.
const RETIRED_GRACE: Duration = Duration::from_secs(60);

/// Our outstanding CREATE_CHILD_SA request.
#[derive(Debug)]
pub(super) enum Rekeying {
    Child {
        old_spi_in: u32,
        spi_in: u32,
        ni: Vec<u8>,
        dh: Option<DhPrivateKey>,
        /// The peer rekeyed the same Child SA meanwhile (RFC 7296 2.8.1).
        collision: Option<Collision>,
    },
    Ike {
        spi: u64,
        ni: Vec<u8>,
        dh: DhPrivateKey,
    },
}

/// The peer's rekey of the Child SA we are rekeying too, answered but not yet announced:
/// once our own exchange ends we know which new SA survives, and announce the loser first so
/// that a data plane where the newest SA carries the outbound traffic sends on the winner.
/// (In-order delivery guarantees that the peer sends nothing on it before our response
/// arrives: it answered our request before it saw our answer to its own.)
#[derive(Debug)]
pub(super) struct Collision {
    ni: Vec<u8>,
    nr: Vec<u8>,
    new: Box<ChildSa>,
}

/// A rekey's nonces: the lower of the two, for the RFC 7296 2.8.1 comparison.
fn lowest<'a>(a: &'a [u8], b: &'a [u8]) -> &'a [u8] {
    if a.cmp(b) == Ordering::Less { a } else { b }
}

/// The first non-NONE KE transform of a proposal.
fn proposal_ke(p: &ike_wire::Proposal) -> Option<u16> {
    p.transforms.iter().find_map(|t| match t.id {
        TransformId::Ke(g) if g.0 != 0 => Some(g.0),
        _ => None,
    })
}

/// KE groups a proposal offers, and whether it accepts no KE at all.
fn proposal_ke_options(p: &ike_wire::Proposal) -> (Vec<u16>, bool) {
    let groups: Vec<u16> = p
        .transforms
        .iter()
        .filter_map(|t| match t.id {
            TransformId::Ke(g) => Some(g.0),
            _ => None,
        })
        .collect();
    let none_ok = groups.is_empty() || groups.contains(&0);
    (groups.into_iter().filter(|g| *g != 0).collect(), none_ok)
}

impl IkeSa {
    // ---------------------------------------------------------------- public API

    /// Rekeys the Child SA whose inbound SPI is `spi_in` (e.g. when the data plane reports a
    /// soft sequence-number limit) as soon as no other request is outstanding. Returns false
    /// when there is no such Child SA or it is already being replaced.
    pub fn rekey_child_sa(&mut self, now: Instant, spi_in: u32) -> bool {
        if self.state != IkeSaState::Established {
            return false;
        }
        let busy = matches!(&self.rekeying, Some(Rekeying::Child { old_spi_in, .. }) if *old_spi_in == spi_in);
        let Some(c) = self.children.live_mut(spi_in) else {
            return false;
        };
        if !busy {
            c.lifetime.rekey_at = Some(now);
            self.run_lifetimes(now);
        }
        true
    }

    /// Rekeys the IKE SA as soon as no other request is outstanding. False when not
    /// established.
    pub fn rekey_ike_sa(&mut self, now: Instant) -> bool {
        if self.state != IkeSaState::Established {
            return false;
        }
        if !matches!(self.rekeying, Some(Rekeying::Ike { .. })) {
            self.ike_lifetime.rekey_at = Some(now);
            self.run_lifetimes(now);
        }
        true
    }

    /// Inbound SPIs of the Child SAs in use (not the ones being replaced or deleted).
    pub fn child_sa_spis(&self) -> Vec<u32> {
        self.children.live_spis()
    }

    // ---------------------------------------------------------------- lifetimes

    /// A rekey failed for good; the SA lives on until its hard lifetime.
    fn rekey_failed(&mut self, reason: FailureReason, received: Option<NotifyType>) {
        self.events.push_back(Event::Failed(Failure {
            reason,
            notify_sent: None,
            notify_received: received,
            remote: self.path.remote,
            claimed_id: self.peer.claimed.clone(),
        }));
    }

    // ---------------------------------------------------------------- initiating

    pub(super) fn process_rekey_response(&mut self, now: Instant, payloads: &[Payload]) {
        match self.rekeying.take() {
            Some(Rekeying::Child {
                old_spi_in,
                spi_in,
                ni,
                dh,
                collision,
            }) => self.child_rekey_response(now, payloads, old_spi_in, spi_in, &ni, dh, collision),
            Some(Rekeying::Ike { spi, ni, dh }) => {
                self.ike_rekey_response(now, payloads, spi, &ni, &dh)
            }
            None => {}
        }
    }

    /// Handles an error notify in a rekey response of the IKE SA (`child` None) or a Child
    /// SA; true if there was one.
    fn rekey_refused(&mut self, now: Instant, payloads: &[Payload], child: Option<u32>) -> bool {
        let Some(n) = payloads.error_notify() else {
            return false;
        };
        let t = n.notify_type;
        let retry = self.retry_at(now);
        match (t, child) {
            (NotifyType::TEMPORARY_FAILURE, None) => self.ike_lifetime.rekey_at = Some(retry),
            (NotifyType::TEMPORARY_FAILURE, Some(spi)) => {
                // Unless the peer's own rekey of it won meanwhile.
                if let Some(c) = self.children.live_mut(spi) {
                    c.lifetime.rekey_at = Some(retry);
                }
            }
            // The peer no longer has it (RFC 7296 2.25): it is gone.
            (NotifyType::CHILD_SA_NOT_FOUND, Some(spi)) => self.child_gone(spi),
            _ => {
                let reason = if t == NotifyType::NO_PROPOSAL_CHOSEN {
                    FailureReason::NoProposalChosen
                } else {
                    FailureReason::PeerNotify(t)
                };
                self.rekey_failed(reason, Some(t));
            }
        }
        true
    }

    pub(super) fn process_create_child_request(
        &mut self,
        now: Instant,
        message_id: u32,
        payloads: &[Payload],
    ) {
        let result = match payloads.sa() {
            None => Err(NotifyType::INVALID_SYNTAX),
            Some(sa) if sa.proposals.iter().any(|p| p.protocol == ProtocolId::IKE) => {
                self.answer_ike_rekey(now, payloads)
            }
            Some(_) => match payloads.notify(NotifyType::REKEY_SA) {
                // A new, additional Child SA: a remote-access tunnel has one.
                None => Err(NotifyType::NO_ADDITIONAL_SAS),
                Some(n) => self.answer_child_rekey(now, payloads, n),
            },
        };
        match result {
            Ok(Answer::Child {
                reply,
                old,
                new,
                nonces,
            }) => {
                self.send_response(ExchangeType::CREATE_CHILD_SA, message_id, &reply);
                self.children.retire(old.spi_in);
                self.register_child(now, &new);
                match (nonces, self.rekeying.as_mut()) {
                    (Some((ni, nr)), Some(Rekeying::Child { collision, .. })) => {
                        // Announced when our own rekey of it ends.
                        *collision = Some(Collision { ni, nr, new });
                    }
                    _ => self.events.push_back(Event::ChildSaRekeyed {
                        old_spi_in: old.spi_in,
                        old_spi_out: old.spi_out,
                        new,
                    }),
                }
            }
            Ok(Answer::Ike {
                reply,
                algs,
                spis,
                ni,
                nr,
                shared,
            }) => {
                // The answer goes out on the old SA; then the new one takes over.
                self.send_response(ExchangeType::CREATE_CHILD_SA, message_id, &reply);
                if let Err(e) = self.switch_ike_sa(now, algs, spis, false, &ni, &nr, &shared) {
                    self.rekey_failed(e.into(), None);
                }
            }
            Err(t) => {
                let data = if t == NotifyType::INVALID_KE_PAYLOAD {
                    self.invalid_ke_group(payloads)
                } else {
                    Vec::new()
                };
                self.send_response(
                    ExchangeType::CREATE_CHILD_SA,
                    message_id,
                    &[Payload::Notify(Notify::new(t, data))],
                );
            }
        }
    }

    /// The group we want for INVALID_KE_PAYLOAD: the first of our proposals' groups the peer
    /// offers too.
    fn invalid_ke_group(&self, payloads: &[Payload]) -> Vec<u8> {
        let offered: Vec<u16> = payloads
            .sa()
            .map(|sa| {
                sa.proposals
                    .iter()
                    .flat_map(|p| proposal_ke_options(p).0)
                    .collect()
            })
            .unwrap_or_default();
        let ike = self.cfg.ike();
        let ike_rekey = payloads
            .sa()
            .is_some_and(|sa| sa.proposals.iter().any(|p| p.protocol == ProtocolId::IKE));
        let ours: Vec<DhGroup> = if ike_rekey {
            ike.ike_proposals
                .iter()
                .flat_map(|p| p.dh.clone())
                .collect()
        } else {
            ike.esp_proposals
                .iter()
                .flat_map(|p| p.dh.clone())
                .collect()
        };
        ours.iter()
            .map(|g| g.iana())
            .find(|g| offered.contains(g))
            .unwrap_or(0)
            .to_be_bytes()
            .to_vec()
    }
}

/// What we answer to a CREATE_CHILD_SA request.
enum Answer {
    Child {
        reply: Vec<Payload>,
        old: ChildState,
        new: Box<ChildSa>,
        /// (Ni, Nr) when it collides with our own rekey of the same Child SA.
        nonces: Option<(Vec<u8>, Vec<u8>)>,
    },
    Ike {
        reply: Vec<Payload>,
        algs: IkeAlgorithms,
        spis: (u64, u64),
        ni: Vec<u8>,
        nr: Vec<u8>,
        shared: SharedSecret,
    },
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)] // tests may unwrap
mod tests {
    use super::super::*;
    use crate::config::{AddressFamily, AddressPool};
    use crate::sa::tests::{at, dgram};

    struct OneAddress;

    impl AddressPool for OneAddress {
        fn allocate(&mut self, _: &IkeId, _: Option<&str>, _: AddressFamily) -> Option<IpAddr> {
            "172.16.201.10".parse().ok()
        }
        fn release(&mut self, _: &IkeId, _: IpAddr) {}
    }

    /// A client and a gateway IKE SA, established with one Child SA; events drained.
    fn established() -> (IkeSa, IkeSa, Instant) {
        // The same IKE_SA_INIT fixture as the IKE_AUTH unit tests.
        let (mut client, mut server, now) = crate::sa::tests::init_pair();
        exchange(&mut client, &mut server, now);
        assert_eq!(client.state(), IkeSaState::Established);
        assert_eq!(server.state(), IkeSaState::Established);
        while client.poll_event().is_some() {}
        while server.poll_event().is_some() {}
        (client, server, now)
    }

    /// Delivers datagrams both ways until both are quiet.
    fn exchange(client: &mut IkeSa, server: &mut IkeSa, now: Instant) {
        let (c_addr, s_addr) = (client.path.local, client.path.remote);
        loop {
            let mut moved = false;
            while let Some(t) = client.poll_transmit() {
                moved = true;
                server.handle(
                    at(now),
                    Path::ike(s_addr, c_addr),
                    &dgram(&t.bytes),
                    Some(&mut OneAddress),
                );
            }
            while let Some(t) = server.poll_transmit() {
                moved = true;
                client.handle_datagram(at(now), Path::ike(c_addr, s_addr), &t.bytes);
            }
            if !moved {
                return;
            }
        }
    }

    fn events(sa: &mut IkeSa) -> Vec<Event> {
        std::iter::from_fn(|| sa.poll_event()).collect()
    }

    /// Whether ChildSaOutboundReady for the new SA follows ChildSaRekeyed at once, and how
    /// many ChildSaOutboundReady there are; checks that the old SA is deleted afterwards.
    fn rekey_outcome(events: &[Event], old_spi_in: u32) -> (bool, usize) {
        let at = events
            .iter()
            .position(|e| matches!(e, Event::ChildSaRekeyed { .. }))
            .expect("ChildSaRekeyed");
        let Some(Event::ChildSaRekeyed { new, .. }) = events.get(at) else {
            unreachable!()
        };
        let ready = matches!(
            events.get(at + 1),
            Some(Event::ChildSaOutboundReady { spi_in }) if *spi_in == new.spi_in
        );
        let readies = events
            .iter()
            .filter(|e| matches!(e, Event::ChildSaOutboundReady { .. }))
            .count();
        let deleted = events.iter().position(
            |e| matches!(e, Event::ChildSaDeleted { spi_in, .. } if *spi_in == old_spi_in),
        );
        assert!(
            deleted.is_some_and(|d| d > at),
            "old SA deleted after the rekey"
        );
        (ready, readies)
    }

    /// RFC 7296 2.8: only the rekey initiator may send on the new SA at once; the responder
    /// learns the initiator is ready from its Delete of the old SA. Both roles, both sides.
    #[test]
    fn outbound_ready_only_for_the_rekey_initiator() {
        for client_initiates in [true, false] {
            let (mut client, mut server, now) = established();
            let c_old = client.children.iter().next().unwrap().spi_in;
            let s_old = server.children.iter().next().unwrap().spi_in;
            let started = if client_initiates {
                client.rekey_child_sa(now, c_old)
            } else {
                server.rekey_child_sa(now, s_old)
            };
            assert!(started);
            exchange(&mut client, &mut server, now);
            let (c_events, s_events) = (events(&mut client), events(&mut server));
            let (c_ready, c_count) = rekey_outcome(&c_events, c_old);
            let (s_ready, s_count) = rekey_outcome(&s_events, s_old);
            assert_eq!(c_ready, client_initiates, "{c_events:?}");
            assert_eq!(s_ready, !client_initiates, "{s_events:?}");
            assert_eq!(c_count + s_count, 1, "one side only");
        }
    }
}
