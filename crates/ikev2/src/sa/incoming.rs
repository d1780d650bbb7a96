//! Incoming datagrams: which handler a message goes to (IKE_SA_INIT, unprotected, protected),
//! the window and integrity checks of protected ones, reassembly, and dispatch of requests by
//! exchange type and of responses by what they answer.

use std::time::Instant;

use ike_wire::{Datagram, ExchangeType, Notify, NotifyType, Payload, Payloads, decode_chain};

use super::{IkeSa, IkeSaState, RequestKind, Role};
use crate::config::AddressPool;
use crate::datagram::{Now, Path};
use crate::event::{CloseReason, Event};
use crate::failure::{FailureReason, SyntaxError};

impl IkeSa {
    /// A datagram for this SA, its header read once by whoever found the SA.
    pub(crate) fn handle(
        &mut self,
        now: Now,
        path: Path,
        datagram: &Datagram<'_>,
        pool: Option<&mut dyn AddressPool>,
    ) {
        if self.state == IkeSaState::Closed {
            return;
        }
        self.unix_time = now.unix;
        let now = now.instant;
        if datagram.header().exchange_type == ExchangeType::IKE_SA_INIT {
            self.handle_init_plain(now, path, datagram);
        } else if !datagram.is_protected() {
            self.handle_unprotected_response(now, path.remote, datagram);
        } else {
            self.handle_protected(now, path, datagram, pool);
        }
    }

    fn handle_protected(
        &mut self,
        now: Instant,
        path: Path,
        datagram: &Datagram<'_>,
        pool: Option<&mut dyn AddressPool>,
    ) {
        let Ok(parts) = datagram.open() else {
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
        let Some(sk_in) = self.keys.as_ref().map(|k| &k.sk_in) else {
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
                    self.resend_cached(path);
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
            self.update_addresses(path);
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
                        FailureReason::InvalidSyntax(SyntaxError::Decode(e.clone())),
                    );
                } else {
                    self.fail(
                        FailureReason::InvalidSyntax(SyntaxError::Decode(e.clone())),
                        None,
                        None,
                    );
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
                    self.process_update_response(path, &payloads);
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
                    self.process_informational(h.message_id, path, &payloads);
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

    /// NAT-T: follow the peer's address on authenticated requests (RFC 7296 2.23), and the
    /// socket they came on: answers and later requests go back the same way.
    fn update_addresses(&mut self, mut path: Path) {
        // An initiator chooses its socket itself (it floats to NAT-T when it finds a NAT, and
        // stays there), and its NAT-T port is the engine's name for a socket its driver may
        // bind to any port: a request reaching it moves nothing but the address.
        if self.role == Role::Initiator {
            path.natt = self.path.natt;
            path.local.set_port(self.path.local.port());
        }
        if path == self.path {
            return;
        }
        // Without a NAT between us, a peer moves only by MOBIKE or onto NAT-T.
        if !self.nat_detected && !path.natt {
            return;
        }
        self.path = path;
        if self.state == IkeSaState::Established {
            self.events.push_back(Event::AddressesChanged {
                local: path.local,
                remote: path.remote,
            });
        }
    }
}
