//! Outgoing messages: headers, SK protection and SKF fragmentation (RFC 7383), our requests
//! and the responses the window caches for retransmitted requests.

use std::time::Instant;

use ike_wire::{
    ExchangeType, Flags, FragmentPosition, Header, Message, Notify, Payload, PayloadType,
    Protection, encode_chain, seal_prefix,
};
use ipsec_crypto::SkCipher;

use super::error::SaError;
use super::{IkeSa, RequestKind, Role};
use crate::datagram::{Path, Transmit};
use crate::failure::ConfigFault;

/// The header of a protected message of the IKE SA `spis`; `initiator`: we are its original
/// initiator.
pub(super) fn header_for(
    spis: (u64, u64),
    initiator: bool,
    exchange: ExchangeType,
    message_id: u32,
    response: bool,
) -> Header {
    let mut flags = Flags(0);
    if initiator {
        flags = flags | Flags::INITIATOR;
    }
    if response {
        flags = flags | Flags::RESPONSE;
    }
    Header::new(spis.0, spis.1, exchange, flags, message_id)
}

/// Encodes a stateless IKE_SA_INIT error reply.
pub(crate) fn stateless_reply(request: &Header, notify: Notify) -> Option<Vec<u8>> {
    let h = Header::new(
        request.spi_i,
        0,
        ExchangeType::IKE_SA_INIT,
        Flags::RESPONSE,
        request.message_id,
    );
    Message::new(h, vec![Payload::Notify(notify)]).encode().ok()
}

impl IkeSa {
    pub(super) fn push_transmit(&mut self, bytes: Vec<u8>) {
        self.push_transmit_on(self.path, bytes);
    }

    fn push_transmit_on(&mut self, path: Path, bytes: Vec<u8>) {
        self.transmits.push_back(Transmit {
            local: path.local,
            remote: path.remote,
            natt: path.natt,
            bytes,
        });
    }

    pub(super) fn header(&self, exchange: ExchangeType, message_id: u32, response: bool) -> Header {
        header_for(
            (self.spi_i, self.spi_r),
            self.initiator,
            exchange,
            message_id,
            response,
        )
    }

    /// Encrypts `payloads` into one SK message or, if too large and both sides support it,
    /// into SKF fragments (RFC 7383).
    pub(super) fn protect(
        &self,
        exchange: ExchangeType,
        message_id: u32,
        response: bool,
        payloads: &[Payload],
    ) -> Result<Vec<Vec<u8>>, SaError> {
        let sk = &self.keys()?.sk_out;
        self.protect_with(sk, self.header(exchange, message_id, response), payloads)
    }

    /// [`IkeSa::protect`] with explicit keys and header (also used for a retired IKE SA).
    pub(super) fn protect_with(
        &self,
        sk: &SkCipher,
        header: Header,
        payloads: &[Payload],
    ) -> Result<Vec<Vec<u8>>, SaError> {
        let ike = self.cfg.ike();
        let (first, plain) = encode_chain(payloads)?;
        let marker = if self.path.natt { 4 } else { 0 };
        let ip_udp = if self.path.remote.is_ipv4() { 28 } else { 48 };
        let budget = ike.fragment_mtu.saturating_sub(ip_udp + marker);
        let whole = ike_wire::HEADER_LEN + 4 + sk.body_len(plain.len());
        let seal = |prot: Protection, chunk: &[u8]| -> Result<Vec<u8>, SaError> {
            let mut msg = seal_prefix(&header, &[], prot, sk.body_len(chunk.len()))?;
            let body = sk.seal(&msg, chunk, &self.provider)?;
            msg.extend_from_slice(&body);
            Ok(msg)
        };
        if !(ike.fragmentation && self.peer_frag) || whole <= budget {
            return Ok(vec![seal(
                Protection::Sk {
                    first_payload: first,
                },
                &plain,
            )?]);
        }
        let room = sk
            .max_plaintext_len(budget.saturating_sub(ike_wire::HEADER_LEN + 8))
            .filter(|n| *n > 0)
            .ok_or(ConfigFault::FragmentMtuTooSmall)?;
        let chunks: Vec<&[u8]> = plain.chunks(room).collect();
        let total = u16::try_from(chunks.len()).map_err(|_| ConfigFault::TooManyFragments)?;
        let mut out = Vec::with_capacity(chunks.len());
        for (i, chunk) in chunks.iter().enumerate() {
            let number = u16::try_from(i + 1).map_err(|_| ConfigFault::TooManyFragments)?;
            out.push(seal(
                Protection::Skf {
                    fragment: FragmentPosition { number, total },
                    first_payload: if number == 1 {
                        first
                    } else {
                        PayloadType::NONE
                    },
                },
                chunk,
            )?);
        }
        Ok(out)
    }

    pub(super) fn send_request(
        &mut self,
        now: Instant,
        exchange: ExchangeType,
        kind: RequestKind,
        payloads: Vec<Payload>,
    ) -> Result<(), SaError> {
        let id = self.window.next_request_id();
        let datagrams = self.protect(exchange, id, false, &payloads)?;
        self.start_request(now, id, kind, datagrams);
        Ok(())
    }

    /// Sends `datagrams`, our request `id`, and awaits its response.
    pub(super) fn start_request(
        &mut self,
        now: Instant,
        id: u32,
        kind: RequestKind,
        datagrams: Vec<Vec<u8>>,
    ) {
        for d in &datagrams {
            self.push_transmit(d.clone());
        }
        let initial = self.cfg.ike().retransmit.initial;
        self.window.start_request(now, id, kind, datagrams, initial);
    }

    pub(super) fn send_response(
        &mut self,
        exchange: ExchangeType,
        message_id: u32,
        payloads: &[Payload],
    ) {
        match self.protect(exchange, message_id, true, payloads) {
            Ok(datagrams) => {
                for d in &datagrams {
                    self.push_transmit(d.clone());
                }
                self.window.cache_response(message_id, datagrams);
            }
            Err(e) => self.fail(e.into(), None, None),
        }
    }

    /// Answers a retransmitted request (its integrity checked) with the cached response.
    /// A responder sends it where the request came from (RFC 7296 2.11: a NAT may have
    /// remapped the peer since) without moving the SA, which only authenticated new requests
    /// do; an initiator keeps the path it chose.
    pub(super) fn resend_cached(&mut self, arrival: Path) {
        let datagrams = self
            .window
            .cached_response()
            .map(<[Vec<u8>]>::to_vec)
            .unwrap_or_default();
        let path = match self.role {
            Role::Responder => arrival,
            Role::Initiator => self.path,
        };
        for d in datagrams {
            self.push_transmit_on(path, d);
        }
    }
}
