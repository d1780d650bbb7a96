//! The caller's side of an IKE SA: accessors, the outputs to drain, timers, and the exchanges
//! a caller may start (delete, liveness check).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use ike_wire::{Datagram, Delete, ExchangeType, NotifyType, Payload};

use super::rekey::RetiredSa;
use super::window::Retransmission;
use super::{IkeSa, IkeSaState, RequestKind, Role};
use crate::datagram::{Now, Path, Transmit};
use crate::event::{CloseReason, Event};
use crate::failure::FailureReason;
use crate::identity::IkeId;

impl IkeSa {
    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Current state.
    pub fn state(&self) -> IkeSaState {
        self.state
    }

    /// Our SPI (the key an [`crate::Endpoint`] files this SA under).
    /// Changes when the IKE SA is rekeyed ([`Event::IkeSaRekeyed`]).
    pub fn local_spi(&self) -> u64 {
        if self.initiator {
            self.spi_i
        } else {
            self.spi_r
        }
    }

    /// True if `spi` is our SPI of this IKE SA or of the one it replaced and is still
    /// deleting.
    pub fn has_local_spi(&self, spi: u64) -> bool {
        spi == self.local_spi() || self.retired.as_ref().is_some_and(|r| r.local_spi() == spi)
    }

    /// (SPIi, SPIr).
    pub fn spis(&self) -> (u64, u64) {
        (self.spi_i, self.spi_r)
    }

    /// Current (local, remote) addresses.
    pub fn addresses(&self) -> (SocketAddr, SocketAddr) {
        (self.path.local, self.path.remote)
    }

    /// The current path, with whether it runs on the NAT-T socket.
    pub fn path(&self) -> Path {
        self.path
    }

    /// True once closed: drain its outputs, then drop it.
    pub fn is_closed(&self) -> bool {
        self.state == IkeSaState::Closed
    }

    /// The authenticated peer identity.
    pub fn peer_id(&self) -> Option<&IkeId> {
        self.peer.id.as_ref()
    }

    /// Virtual IPs handed to the peer (responder); release them when the SA is dropped.
    pub fn assigned_addresses(&self) -> &[IpAddr] {
        &self.assigned
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`IkeSa::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == IkeSaState::Closed {
            return None;
        }
        let retransmit = self.window.retransmit_deadline();
        let establish = self
            .handshake
            .as_ref()
            .and_then(|hs| hs.establish_deadline)
            .filter(|_| !matches!(self.state, IkeSaState::Established | IkeSaState::Deleting));
        [
            retransmit,
            establish,
            self.dpd_deadline(),
            self.lifetime_deadline(),
            self.roam_deadline(),
            self.retired.as_ref().map(RetiredSa::deadline),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// When the next liveness check is due (established, idle, DPD configured).
    fn dpd_deadline(&self) -> Option<Instant> {
        let interval = self.cfg.ike().dpd_interval?;
        if self.state != IkeSaState::Established
            || self.window.request_outstanding()
            || self.path_lost
        {
            return None;
        }
        Some(self.last_rx? + interval)
    }

    /// Tells the SA that the peer is alive (e.g. ESP arrived), postponing the next DPD check.
    pub fn note_peer_alive(&mut self, now: Instant) {
        self.last_rx = Some(self.last_rx.map_or(now, |t| t.max(now)));
    }

    /// Deletes the Child SA (INFORMATIONAL with Delete of our inbound SPI); the IKE SA stays.
    /// Returns false when there is none or another request is outstanding.
    pub fn delete_child_sa(&mut self, now: Instant) -> bool {
        let Some(&spi_in) = self.children.live_spis().first() else {
            return false;
        };
        if self.state != IkeSaState::Established || self.window.request_outstanding() {
            return false;
        }
        self.send_delete_child(now, spi_in)
    }

    pub(super) fn send_delete_child(&mut self, now: Instant, spi_in: u32) -> bool {
        let sent = self
            .send_request(
                now,
                ExchangeType::INFORMATIONAL,
                RequestKind::DeleteChild(spi_in),
                vec![Payload::Delete(Delete::esp(&[spi_in]))],
            )
            .is_ok();
        if sent {
            self.children.retire(spi_in);
        }
        sent
    }

    /// Handles a received IKE datagram (non-ESP marker already stripped) that came along
    /// `path` at `now`.
    pub fn handle_datagram(&mut self, now: Now, path: Path, bytes: &[u8]) {
        if let Ok(datagram) = Datagram::parse(bytes) {
            self.handle(now, path, &datagram, None);
        }
    }

    /// Runs timers: retransmissions, establishment deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == IkeSaState::Closed {
            return;
        }
        if let Some(d) = self.handshake.as_ref().and_then(|hs| hs.establish_deadline)
            && d <= now
            && !matches!(self.state, IkeSaState::Established | IkeSaState::Deleting)
        {
            self.fail(FailureReason::EstablishTimeout, None, None);
            return;
        }
        self.retired_timeout(now);
        if self.roam_deadline().is_some_and(|d| d <= now) {
            self.send_update_addresses(now);
            return;
        }
        if self.lifetime_deadline().is_some_and(|d| d <= now) {
            self.run_lifetimes(now);
            return;
        }
        if self.dpd_deadline().is_some_and(|d| d <= now) {
            self.send_liveness_check(now);
            return;
        }
        let policy = self.cfg.ike().retransmit;
        // Without a path the peer cannot answer: keep trying until the caller gives up.
        match self
            .window
            .retransmission(now, policy, self.path_lost, self.peer_lost_sa)
        {
            Retransmission::NotDue => {}
            Retransmission::Exhausted(kind) => {
                self.rekeying = None;
                if kind == RequestKind::Delete {
                    self.close(CloseReason::LocalDelete);
                } else if self.peer_lost_sa {
                    let n = NotifyType::INVALID_IKE_SPI;
                    self.fail(FailureReason::PeerNotify(n), None, Some(n));
                } else {
                    self.fail(FailureReason::Timeout, None, None);
                }
            }
            Retransmission::Resend(datagrams) => {
                for d in datagrams {
                    self.push_transmit(d);
                }
            }
        }
    }

    /// Deletes the IKE SA (and its Child SA): sends INFORMATIONAL with Delete and closes when
    /// answered or timed out. Before establishment, or while another request of ours is
    /// outstanding (window size 1), it closes at once without telling the peer.
    pub fn delete(&mut self, now: Instant) {
        match self.state {
            IkeSaState::Established if !self.window.request_outstanding() => {
                if self
                    .send_request(
                        now,
                        ExchangeType::INFORMATIONAL,
                        RequestKind::Delete,
                        vec![Payload::Delete(Delete::ike())],
                    )
                    .is_ok()
                {
                    self.state = IkeSaState::Deleting;
                } else {
                    self.close(CloseReason::LocalDelete);
                }
            }
            IkeSaState::Closed | IkeSaState::Deleting => {}
            _ => self.close(CloseReason::LocalDelete),
        }
    }

    /// Sends an empty INFORMATIONAL (liveness check / DPD). Returns false when another
    /// request is outstanding or the SA is not established. No answer after all
    /// retransmissions fails the SA with [`FailureReason::Timeout`].
    pub fn send_liveness_check(&mut self, now: Instant) -> bool {
        if self.state != IkeSaState::Established || self.window.request_outstanding() {
            return false;
        }
        self.send_request(
            now,
            ExchangeType::INFORMATIONAL,
            RequestKind::Liveness,
            Vec::new(),
        )
        .is_ok()
    }
}
