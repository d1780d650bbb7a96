//! Mobility (RFC 4555, MOBIKE): the original initiator moves the IKE SA and its Child SAs to a
//! new address with an INFORMATIONAL carrying UPDATE_SA_ADDRESSES, NAT detection and a COOKIE2
//! the responder must echo; the responder follows the request's addresses. Also what a client
//! does without a path (dead peer detection waits) and with a peer that says it lost the SA
//! (INVALID_IKE_SPI, RFC 7296 2.21.4: a hint that shortens the wait, never proof).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use ike_wire::{Datagram, ExchangeType, Notify, NotifyType, Payload, Payloads};
use subtle::ConstantTimeEq;

use super::init::natd_mismatch;
use super::{IkeSa, IkeSaState, RequestKind, Role};
use crate::datagram::Path;
use crate::event::Event;
use crate::failure::{FailureReason, SyntaxError};
use crate::natd::{fake_natd_hash, natd_hash};

/// Length of the COOKIE2 we send (RFC 4555 allows 8 to 64 octets).
const COOKIE2_LEN: usize = 16;

impl IkeSa {
    /// Whether both sides announced MOBIKE_SUPPORTED in IKE_AUTH.
    pub fn mobike(&self) -> bool {
        self.mobike
    }

    /// MOBIKE, original initiator only: our address is now `local` (a new address, or the same
    /// one after a path change). Sends UPDATE_SA_ADDRESSES from it as soon as no other request
    /// is outstanding (retransmissions of that request already leave from `local`); the Child
    /// SAs follow with [`Event::AddressesChanged`] when the responder has answered. False when
    /// MOBIKE was not negotiated or the SA is not established: the caller must then re-dial.
    pub fn roam(&mut self, now: Instant, local: IpAddr) -> bool {
        if !self.mobike || self.role != Role::Initiator || self.state != IkeSaState::Established {
            return false;
        }
        self.path.local.set_ip(local);
        self.path_lost = false;
        self.roam_requested = Some(now);
        true
    }

    /// Tells the SA whether a path to the peer exists (a client that lost its link). While it
    /// does not, dead peer detection does not start and an outstanding request keeps being
    /// retransmitted instead of failing the SA: the outage is the caller's to bound
    /// (NetworkOutageTime).
    pub fn set_path_available(&mut self, now: Instant, available: bool) {
        let restored = self.path_lost && available;
        self.path_lost = !available;
        if restored {
            // The outstanding request gets one more full try on the path that is back.
            let tries = self.cfg.ike().retransmit.tries;
            self.window.one_more_try(now, tries);
        }
    }

    /// When a deferred UPDATE_SA_ADDRESSES may go out.
    pub(super) fn roam_deadline(&self) -> Option<Instant> {
        if self.state != IkeSaState::Established || self.window.request_outstanding() {
            return None;
        }
        self.roam_requested
    }

    /// Sends UPDATE_SA_ADDRESSES (with NAT detection and a fresh COOKIE2).
    pub(super) fn send_update_addresses(&mut self, now: Instant) {
        self.roam_requested = None;
        let Ok(cookie) = self.provider.random_array::<COOKIE2_LEN>() else {
            return;
        };
        let spis = (self.spi_i, self.spi_r);
        let force_encap = self.cfg.ike().force_encap;
        // As in IKE_SA_INIT: with forced encapsulation we claim to be behind a NAT.
        let src = if force_encap {
            fake_natd_hash(spis.0, spis.1, self.path.local)
        } else {
            natd_hash(spis.0, spis.1, self.path.local)
        };
        let payloads = vec![
            Payload::Notify(Notify::new(NotifyType::UPDATE_SA_ADDRESSES, Vec::new())),
            Payload::Notify(Notify::new(NotifyType::NAT_DETECTION_SOURCE_IP, src)),
            Payload::Notify(Notify::new(
                NotifyType::NAT_DETECTION_DESTINATION_IP,
                natd_hash(spis.0, spis.1, self.path.remote),
            )),
            Payload::Notify(Notify::new(NotifyType::COOKIE2, cookie.to_vec())),
        ];
        if self
            .send_request(
                now,
                ExchangeType::INFORMATIONAL,
                RequestKind::UpdateAddresses,
                payloads,
            )
            .is_ok()
        {
            self.update_cookie2 = Some(cookie);
        }
    }

    /// The responder answered our UPDATE_SA_ADDRESSES: check the COOKIE2 echo (RFC 4555 3.5;
    /// a mismatch means the answer is not for our request), redo NAT detection, and move the
    /// Child SAs to the addresses the answer travelled on.
    pub(super) fn process_update_response(&mut self, path: Path, payloads: &[Payload]) {
        let (local, remote) = (path.local, path.remote);
        let expected = self.update_cookie2.take();
        let echoed = payloads
            .notify(NotifyType::COOKIE2)
            .map(|n| n.data.as_slice());
        let matches = match (&expected, echoed) {
            (Some(e), Some(r)) => e.len() == r.len() && bool::from(e.as_slice().ct_eq(r)),
            (None, _) => true,
            (Some(_), None) => false,
        };
        if !matches {
            self.fail(
                FailureReason::InvalidSyntax(SyntaxError::Invalid(
                    "UPDATE_SA_ADDRESSES answer without our COOKIE2",
                )),
                None,
                None,
            );
            return;
        }
        if let Some(n) = payloads.error_notify() {
            // E.g. UNACCEPTABLE_ADDRESSES: the responder keeps the old addresses, which no
            // longer work for us.
            let t = n.notify_type;
            self.fail(FailureReason::PeerNotify(t), None, Some(t));
            return;
        }
        let ike = self.cfg.ike();
        if payloads
            .notify(NotifyType::NAT_DETECTION_DESTINATION_IP)
            .is_some()
        {
            self.nat_detected =
                ike.force_encap || natd_mismatch(payloads, self.spi_i, self.spi_r, remote, local);
        }
        // Our port stays the engine's (the NAT-T port a driver maps to its socket); the
        // address is the one the answer reached. The peer's address is the one we chose for
        // the request: the answer's source address is not authenticated.
        self.path.local.set_ip(local.ip());
        let (local, remote) = (self.path.local, self.path.remote);
        self.events
            .push_back(Event::AddressesChanged { local, remote });
    }

    /// Responder: an INFORMATIONAL request with UPDATE_SA_ADDRESSES moves the SA to the
    /// addresses it came from (RFC 4555 3.5); returns the notifies of our answer (NAT
    /// detection, COOKIE2 echo) for any INFORMATIONAL that asked for them.
    pub(super) fn mobility_reply(&mut self, path: Path, payloads: &[Payload]) -> Vec<Payload> {
        let (local, remote) = (path.local, path.remote);
        let ike = self.cfg.ike();
        let update = payloads.notify(NotifyType::UPDATE_SA_ADDRESSES).is_some();
        let natd_asked = payloads
            .notify(NotifyType::NAT_DETECTION_SOURCE_IP)
            .is_some();
        let mut reply = Vec::new();
        if update && self.mobike && self.role == Role::Responder {
            if natd_asked {
                self.nat_detected = ike.force_encap
                    || natd_mismatch(payloads, self.spi_i, self.spi_r, remote, local);
            }
            if path != self.path {
                self.path = path;
                self.events
                    .push_back(Event::AddressesChanged { local, remote });
            }
        }
        if natd_asked {
            let spis = (self.spi_i, self.spi_r);
            // As in IKE_SA_INIT: with forced encapsulation the initiator keeps seeing a NAT.
            let dst = if ike.force_encap {
                fake_natd_hash(spis.0, spis.1, remote)
            } else {
                natd_hash(spis.0, spis.1, remote)
            };
            reply.push(Payload::Notify(Notify::new(
                NotifyType::NAT_DETECTION_SOURCE_IP,
                natd_hash(spis.0, spis.1, local),
            )));
            reply.push(Payload::Notify(Notify::new(
                NotifyType::NAT_DETECTION_DESTINATION_IP,
                dst,
            )));
        }
        if let Some(cookie) = payloads.notify(NotifyType::COOKIE2) {
            reply.push(Payload::Notify(cookie.clone()));
        }
        reply
    }

    /// An unprotected response: a peer that lost this IKE SA (a restarted gateway) answers our
    /// request with INVALID_IKE_SPI (RFC 7296 2.21.4). Being unauthenticated, it changes no
    /// state by itself (the RFC's MUST NOT): it is a hint, taken only from the peer's address
    /// and for our SPIs and outstanding message ID, that makes the request's next
    /// retransmission, due now, its last. A peer that still has the SA answers that one; if
    /// none answers, the SA fails a second or so later instead of after every backoff step.
    pub(super) fn handle_unprotected_response(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        datagram: &Datagram<'_>,
    ) {
        let Ok(msg) = datagram.decode() else {
            return;
        };
        let h = &msg.header;
        let ours = (h.spi_i, h.spi_r) == (self.spi_i, self.spi_r) && remote == self.path.remote;
        let tries = self.cfg.ike().retransmit.tries;
        if !(h.flags.response() && ours && self.window.awaits(h.message_id))
            || msg.payloads.notify(NotifyType::INVALID_IKE_SPI).is_none()
            || self.peer_lost_sa
        {
            return;
        }
        self.peer_lost_sa = true;
        self.window.last_try_now(now, tries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sa::tests::init_pair;

    fn failed(sa: &mut IkeSa) -> Option<FailureReason> {
        std::iter::from_fn(|| sa.poll_event()).find_map(|e| match e {
            Event::Failed(f) => Some(f.reason),
            _ => None,
        })
    }

    #[test]
    fn an_answer_without_our_cookie2_closes_the_sa() {
        let (mut client, _, _) = init_pair();
        let (local, remote) = client.addresses();
        client.update_cookie2 = Some([7; COOKIE2_LEN]);
        client.process_update_response(Path::ike(local, remote), &[]);
        assert!(matches!(
            failed(&mut client),
            Some(FailureReason::InvalidSyntax(_))
        ));
        assert_eq!(client.state(), IkeSaState::Closed);
    }

    #[test]
    fn an_answer_with_another_cookie2_closes_the_sa() {
        let (mut client, _, _) = init_pair();
        let (local, remote) = client.addresses();
        client.update_cookie2 = Some([7; COOKIE2_LEN]);
        let wrong = Payload::Notify(Notify::new(NotifyType::COOKIE2, vec![8; COOKIE2_LEN]));
        client.process_update_response(Path::ike(local, remote), &[wrong]);
        assert!(matches!(
            failed(&mut client),
            Some(FailureReason::InvalidSyntax(_))
        ));
    }

    #[test]
    fn the_echoed_cookie2_moves_the_sa() {
        let (mut client, _, _) = init_pair();
        let (local, remote) = client.addresses();
        // The answer reaches the driver's socket (any port): the address counts, the
        // engine's port stays.
        let new_local: SocketAddr = "198.51.100.99:40123".parse().unwrap_or(remote);
        client.update_cookie2 = Some([7; COOKIE2_LEN]);
        let echo = Payload::Notify(Notify::new(NotifyType::COOKIE2, vec![7; COOKIE2_LEN]));
        client.process_update_response(Path::natt(new_local, remote), &[echo]);
        assert!(failed(&mut client).is_none());
        assert_eq!(client.addresses().0.ip(), new_local.ip());
        assert_eq!(client.addresses().0.port(), local.port());
    }
}
