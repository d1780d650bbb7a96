//! Stateless IKE_SA_INIT probes, for a doctor that asks a gateway questions without leaving
//! anything behind on it.
//!
//! A probe offers proposals but carries its key exchange in a group none of them names, so a
//! responder that accepts a proposal must answer INVALID_KE_PAYLOAD (RFC 7296 1.2), and one
//! that accepts none answers NO_PROPOSAL_CHOSEN; both without creating an IKE SA (ours does
//! so, and strongSwan), and a busy responder answers COOKIE, also without state. The answer
//! tells which proposals the gateway takes; that there is an answer at all tells that a
//! request of the probe's size crossed the path (it can be padded to any size with a status
//! notify of the private range, which a responder ignores).

use ike_wire::{
    DhGroup as WireGroup, ExchangeType, Flags, Header, KeyExchange, Message, Notify, NotifyType,
    Payload, SecurityAssociation,
};
use ipsec_crypto::{DhGroup, Provider};

use crate::IkeProposal;

/// The private-use status notify that pads a probe (RFC 7296 3.10.1: 40960-65535 are private
/// status types; a responder ignores status notifies it does not know).
const PADDING: NotifyType = NotifyType(0xA0D0);
/// Generic payload header (4) + protocol, SPI size and notify type (4).
const NOTIFY_OVERHEAD: usize = 8;

/// A probe ready to send: its initiator SPI (the answer carries it back) and the IKE message
/// (for UDP 4500 the caller puts the non-ESP marker in front).
#[derive(Debug, Clone)]
pub struct Probe {
    pub spi_i: u64,
    pub bytes: Vec<u8>,
}

/// What a responder said to a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAnswer {
    /// INVALID_KE_PAYLOAD: it takes one of the proposals, with this group.
    Accepted { group: u16 },
    /// NO_PROPOSAL_CHOSEN: it takes none of them.
    NoProposalChosen,
    /// COOKIE (busy, or its policy): the request arrived; [`Probe::with_cookie`] asks again.
    Cookie(Vec<u8>),
    /// Any other notify, or an answer without one.
    Other(Option<NotifyType>),
}

/// Why a probe could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no proposal to offer")]
    NoProposal,
    #[error("randomness: {0}")]
    Random(#[from] ipsec_crypto::CryptoError),
    #[error("not a probe")]
    NotAProbe,
    #[error("encoding: {0}")]
    Encode(#[from] ike_wire::EncodeError),
}

impl Probe {
    /// The same request (same SPI and nonce, as the cookie is bound to them) with the
    /// responder's COOKIE first (RFC 7296 2.6), its padding shortened to keep its size.
    pub fn with_cookie(&self, cookie: &[u8]) -> Result<Probe, ProbeError> {
        let msg = Message::decode(&self.bytes).map_err(|_| ProbeError::NotAProbe)?;
        let mut payloads = vec![Payload::Notify(Notify::new(
            NotifyType::COOKIE,
            cookie.to_vec(),
        ))];
        for p in msg.payloads {
            match p {
                Payload::Notify(n) if n.notify_type == NotifyType::COOKIE => {}
                Payload::Notify(mut n) if n.notify_type == PADDING => {
                    let shorter = n.data.len().saturating_sub(cookie.len() + NOTIFY_OVERHEAD);
                    if shorter > 0 {
                        n.data.truncate(shorter);
                        payloads.push(Payload::Notify(n));
                    }
                }
                other => payloads.push(other),
            }
        }
        let bytes = Message::new(msg.header, payloads).encode()?;
        Ok(Probe {
            spi_i: self.spi_i,
            bytes,
        })
    }
}

/// An IKE_SA_INIT request offering `proposals` whose key exchange uses a group none of them
/// names, padded to `ike_len` bytes (no padding when it is already that long or longer).
pub fn probe(
    proposals: &[IkeProposal],
    ike_len: usize,
    provider: &Provider,
) -> Result<Probe, ProbeError> {
    if proposals.is_empty() {
        return Err(ProbeError::NoProposal);
    }
    let offered = |g: DhGroup| proposals.iter().any(|p| p.dh.contains(&g));
    // Any group will do for the mismatch; a real one of the right length passes any
    // responder that looks at the value before the group.
    let (group, len) = DhGroup::ALL
        .into_iter()
        .find(|g| !offered(*g))
        .map_or((0xFFFF, 32), |g| (g.iana(), g.public_len()));
    let spi_i = loop {
        let v = u64::from_be_bytes(provider.random_array::<8>()?);
        if v != 0 {
            break v;
        }
    };
    let header = Header {
        spi_i,
        spi_r: 0,
        minor_version: 0,
        exchange_type: ExchangeType::IKE_SA_INIT,
        flags: Flags::INITIATOR,
        message_id: 0,
    };
    let mut payloads = vec![
        Payload::Sa(SecurityAssociation {
            proposals: proposals
                .iter()
                .enumerate()
                .map(|(i, p)| p.to_wire(u8::try_from(i + 1).unwrap_or(u8::MAX)))
                .collect(),
        }),
        Payload::Ke(KeyExchange {
            group: WireGroup(group),
            data: provider.random_vec(len)?,
        }),
        Payload::Nonce(provider.random_vec(32)?),
    ];
    let bare = Message::new(header, payloads.clone()).encode()?;
    if ike_len >= bare.len() + NOTIFY_OVERHEAD {
        let pad = ike_len - bare.len() - NOTIFY_OVERHEAD;
        payloads.push(Payload::Notify(Notify::new(PADDING, vec![0; pad])));
        let bytes = Message::new(header, payloads).encode()?;
        return Ok(Probe { spi_i, bytes });
    }
    Ok(Probe { spi_i, bytes: bare })
}

/// The initiator SPI and meaning of an answer to a probe (an IKE message, marker removed);
/// `None` for anything that is not an IKE_SA_INIT response.
pub fn answer(bytes: &[u8]) -> Option<(u64, ProbeAnswer)> {
    let msg = Message::decode(bytes).ok()?;
    let h = &msg.header;
    if h.exchange_type != ExchangeType::IKE_SA_INIT || !h.flags.contains(Flags::RESPONSE) {
        return None;
    }
    let notify = msg.payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.notify_type.is_error() || n.notify_type == NotifyType::COOKIE => {
            Some(n)
        }
        _ => None,
    });
    let meaning = match notify {
        Some(n) if n.notify_type == NotifyType::INVALID_KE_PAYLOAD => ProbeAnswer::Accepted {
            group: n
                .data
                .get(..2)
                .map_or(0, |b| u16::from_be_bytes([b[0], b[1]])),
        },
        Some(n) if n.notify_type == NotifyType::NO_PROPOSAL_CHOSEN => ProbeAnswer::NoProposalChosen,
        Some(n) if n.notify_type == NotifyType::COOKIE => ProbeAnswer::Cookie(n.data.clone()),
        other => ProbeAnswer::Other(other.map(|n| n.notify_type)),
    };
    Some((h.spi_i, meaning))
}
