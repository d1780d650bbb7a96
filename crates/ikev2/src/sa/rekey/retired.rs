//! The IKE SA a rekey replaced: it answers what still comes for it, sends its Delete, and
//! goes after a grace period.

use std::time::Instant;

use ike_wire::{Delete, ExchangeType, Notify, NotifyType, Payload, ProtocolId, decode_chain};
use ipsec_crypto::SkCipher;

use crate::sa::outgoing::header_for;
use crate::sa::window::{MessageWindow, Retransmission};
use crate::sa::{IkeSa, RequestKind};

/// The IKE SA an IKE rekey replaced: it answers retransmissions and the peer's Delete, or
/// sends our Delete, then disappears.
#[derive(Debug)]
pub(in crate::sa) struct RetiredSa {
    pub(super) spis: (u64, u64),
    pub(super) initiator: bool,
    pub(super) sk_in: SkCipher,
    pub(super) sk_out: SkCipher,
    /// Its message IDs go on where they were; our Delete (when we initiated the rekey) is
    /// its only request.
    pub(super) window: MessageWindow,
    pub(super) give_up: Instant,
}

impl RetiredSa {
    pub(in crate::sa) fn spis(&self) -> (u64, u64) {
        self.spis
    }

    pub(in crate::sa) fn local_spi(&self) -> u64 {
        if self.initiator {
            self.spis.0
        } else {
            self.spis.1
        }
    }

    pub(in crate::sa) fn deadline(&self) -> Instant {
        self.window
            .retransmit_deadline()
            .map_or(self.give_up, |d| d.min(self.give_up))
    }
}

impl IkeSa {
    /// Sends the Delete of the retired IKE SA (the last request on it, RFC 7296 2.18).
    pub(super) fn send_retired_delete(&mut self, now: Instant) {
        let Some(r) = self.retired.as_ref() else {
            return;
        };
        // Message IDs of the old SA continue where they were.
        let id = r.window.next_request_id();
        let header = header_for(r.spis, r.initiator, ExchangeType::INFORMATIONAL, id, false);
        let Ok(datagrams) = self.protect_with(&r.sk_out, header, &[Payload::Delete(Delete::ike())])
        else {
            self.retired = None;
            return;
        };
        for d in &datagrams {
            self.push_transmit(d.clone());
        }
        let initial = self.cfg.ike().retransmit.initial;
        if let Some(r) = self.retired.as_mut() {
            r.window
                .start_request(now, id, RequestKind::Delete, datagrams, initial);
        }
    }

    // ---------------------------------------------------------------- responding

    /// A message for the IKE SA that a rekey replaced.
    pub(in crate::sa) fn handle_retired(&mut self, parts: &ike_wire::ProtectedParts<'_>) {
        let h = parts.header;
        let Some(r) = self.retired.as_mut() else {
            return;
        };
        if h.flags.initiator() == r.initiator || parts.fragment.is_some() {
            return;
        }
        let Ok(plain) = r.sk_in.open(parts.aad, parts.body) else {
            return;
        };
        if h.flags.response() {
            if r.window.awaits(h.message_id) {
                // Our Delete was answered: the old SA is gone.
                self.retired = None;
            }
            return;
        }
        if r.window.has_answered(h.message_id) {
            let datagrams = r.window.cached_response().unwrap_or_default().to_vec();
            for d in datagrams {
                self.push_transmit(d);
            }
            return;
        }
        if !r.window.expects_request(h.message_id) {
            return;
        }
        r.window.accept_request();
        let (spis, initiator) = (r.spis, r.initiator);
        let payloads = decode_chain(parts.first_payload, &plain).unwrap_or_default();
        let ike_deleted = payloads
            .iter()
            .any(|p| matches!(p, Payload::Delete(d) if d.protocol == ProtocolId::IKE));
        let reply: Vec<Payload> = if h.exchange_type == ExchangeType::INFORMATIONAL {
            Vec::new()
        } else {
            vec![Payload::Notify(Notify::new(
                NotifyType::TEMPORARY_FAILURE,
                Vec::new(),
            ))]
        };
        let header = header_for(spis, initiator, h.exchange_type, h.message_id, true);
        let Some(sk_out) = self.retired.as_ref().map(|r| &r.sk_out) else {
            return;
        };
        let Ok(datagrams) = self.protect_with(sk_out, header, &reply) else {
            return;
        };
        for d in &datagrams {
            self.push_transmit(d.clone());
        }
        if ike_deleted {
            self.retired = None;
        } else if let Some(r) = self.retired.as_mut() {
            r.window.cache_response(h.message_id, datagrams);
        }
    }

    /// Retransmits the retired SA's Delete, or drops the retired SA when its time is up.
    pub(in crate::sa) fn retired_timeout(&mut self, now: Instant) {
        let policy = self.cfg.ike().retransmit;
        let Some(r) = self.retired.as_mut() else {
            return;
        };
        if r.give_up <= now {
            self.retired = None;
            return;
        }
        match r.window.retransmission(now, policy, false, false) {
            Retransmission::NotDue => {}
            Retransmission::Exhausted(_) => self.retired = None,
            Retransmission::Resend(datagrams) => {
                for d in datagrams {
                    self.push_transmit(d);
                }
            }
        }
    }
}
