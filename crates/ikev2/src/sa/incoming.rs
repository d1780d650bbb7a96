//! Incoming datagrams: which handler a message goes to (IKE_SA_INIT, unprotected, protected),
//! the window and integrity checks of protected ones, reassembly, and dispatch of requests by
//! exchange type and of responses by what they answer.

use std::net::SocketAddr;
use std::time::Instant;

use ike_wire::{
    ExchangeType, Header, Notify, NotifyType, Payload, PayloadType, Payloads, decode_chain,
    open_parts,
};

use super::{IkeSa, IkeSaState, RequestKind, Role};
use crate::config::AddressPool;
use crate::event::{CloseReason, Event, FailureReason};

impl IkeSa {
    pub(crate) fn handle(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
        pool: Option<&mut dyn AddressPool>,
    ) {
        if self.state == IkeSaState::Closed {
            return;
        }
        let Ok(raw) = Header::parse(bytes) else {
            return;
        };
        if raw.header.exchange_type == ExchangeType::IKE_SA_INIT {
            self.handle_init_plain(now, local, remote, bytes);
        } else if raw.first_payload != PayloadType::SK && raw.first_payload != PayloadType::SKF {
            self.handle_unprotected_response(now, remote, bytes);
        } else {
            self.handle_protected(now, local, remote, bytes, pool);
        }
    }

    fn handle_protected(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
        pool: Option<&mut dyn AddressPool>,
    ) {
        let Ok(parts) = open_parts(bytes) else {
            return;
        };
        let h = parts.header;
        if h.spi_i != self.spi_i || h.spi_r != self.spi_r {
            if self
                .retired
                .as_ref()
                .is_some_and(|r| r.spis() == (h.spi_i, h.spi_r))
            {
                self.handle_retired(&parts);
            }
            return;
        }
        // The Initiator flag names the original initiator of the sender.
        if h.flags.initiator() == self.initiator {
            return;
        }
        let Some(sk_in) = self.sk_in.as_ref() else {
            return;
        };
        let response = h.flags.response();
        if response {
            if !self.window.awaits(h.message_id) {
                return;
            }
        } else {
            if self.window.has_answered(h.message_id) {
                // A retransmitted request: answer once per retransmission (for fragmented
                // requests on fragment 1), after checking it is genuine.
                let first = parts.fragment.is_none_or(|f| f.number == 1);
                if first && sk_in.open(parts.aad, parts.body).is_ok() {
                    self.resend_cached();
                }
                return;
            }
            if !self.window.expects_request(h.message_id) {
                return;
            }
        }
        let Ok(plain) = sk_in.open(parts.aad, parts.body) else {
            return;
        };
        self.note_peer_alive(now);
        let (first, chain) = match parts.fragment {
            None => (parts.first_payload, plain),
            Some(pos) => {
                if !self.peer_frag {
                    return;
                }
                match self
                    .window
                    .reassemble(h.message_id, pos, parts.first_payload, &plain)
                {
                    Some(whole) => whole,
                    None => return,
                }
            }
        };
        if !response {
            self.update_addresses(local, remote);
        }
        let exchange = h.exchange_type;
        let payloads = match decode_chain(first, &chain) {
            Ok(p) => p,
            Err(e) => {
                if !response {
                    self.refuse_request(
                        exchange,
                        h.message_id,
                        NotifyType::INVALID_SYNTAX,
                        Vec::new(),
                        FailureReason::InvalidSyntax(e.to_string()),
                    );
                } else {
                    self.fail(FailureReason::InvalidSyntax(e.to_string()), None, None);
                }
                return;
            }
        };
        if let Some(t) = payloads.unsupported_critical() {
            if !response {
                self.refuse_request(
                    exchange,
                    h.message_id,
                    NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD,
                    vec![t.0],
                    FailureReason::UnsupportedCritical(t),
                );
            } else {
                self.fail(FailureReason::UnsupportedCritical(t), None, None);
            }
            return;
        }
        if response {
            self.peer_lost_sa = false;
            let kind = self.window.take_request();
            match kind {
                Some(RequestKind::Auth) => self.process_auth_response(now, &payloads),
                Some(RequestKind::Delete) => self.close(CloseReason::LocalDelete),
                Some(RequestKind::DeleteChild(spi_in)) => self.child_gone(spi_in),
                Some(RequestKind::Rekey) => self.process_rekey_response(now, &payloads),
                Some(RequestKind::UpdateAddresses) => {
                    self.process_update_response(local, remote, &payloads);
                }
                _ => {}
            }
        } else {
            self.window.accept_request();
            match exchange {
                ExchangeType::IKE_AUTH
                    if self.role == Role::Responder && self.state == IkeSaState::HalfOpen =>
                {
                    self.process_auth_request(now, h.message_id, &payloads, pool);
                }
                ExchangeType::INFORMATIONAL
                    if matches!(self.state, IkeSaState::Established | IkeSaState::Deleting) =>
                {
                    self.process_informational(h.message_id, local, remote, &payloads);
                }
                ExchangeType::CREATE_CHILD_SA if self.state == IkeSaState::Established => {
                    self.process_create_child_request(now, h.message_id, &payloads);
                }
                _ => {
                    self.send_response(
                        exchange,
                        h.message_id,
                        &[Payload::Notify(Notify::new(
                            NotifyType::INVALID_SYNTAX,
                            Vec::new(),
                        ))],
                    );
                }
            }
        }
    }

    /// Answers a request with an error notify; a failed IKE_AUTH also ends the SA.
    fn refuse_request(
        &mut self,
        exchange: ExchangeType,
        message_id: u32,
        notify: NotifyType,
        data: Vec<u8>,
        reason: FailureReason,
    ) {
        self.window.accept_request();
        self.send_response(
            exchange,
            message_id,
            &[Payload::Notify(Notify::new(notify, data))],
        );
        if exchange == ExchangeType::IKE_AUTH {
            self.fail(reason, Some(notify), None);
        }
    }

    /// NAT-T: follow the peer's address on authenticated requests (RFC 7296 2.23).
    fn update_addresses(&mut self, local: SocketAddr, remote: SocketAddr) {
        let natt = self.cfg.ike().natt_port;
        // An initiator's port is the engine's (the NAT-T port, which its driver maps to a
        // socket of any port): only the address it was reached on counts.
        let local = match self.role {
            Role::Initiator if self.encap => SocketAddr::new(local.ip(), self.local.port()),
            _ => local,
        };
        if (local, remote) == (self.local, self.remote) {
            return;
        }
        if !self.nat_detected && local.port() != natt {
            return;
        }
        self.local = local;
        self.remote = remote;
        self.encap = local.port() == natt;
        if self.state == IkeSaState::Established {
            self.events
                .push_back(Event::AddressesChanged { local, remote });
        }
    }
}
