//! Layout of protected messages (RFC 7296 3.14, RFC 7383 2.5) for the caller's AEAD / cipher+MAC.
//!
//! The integrity-protected associated data of an SK / SKF payload is everything from the first
//! byte of the IKE header (with the final Length) up to and including the SK generic payload header
//! (plus, for SKF, the Fragment Number and Total Fragments fields). The body that follows is the
//! crypto layer's IV ‖ ciphertext ‖ ICV.
//!
//! Sending: build the prefix with [`seal_prefix`], let the crypto layer compute the body with the
//! prefix as AAD (for cipher+MAC: encrypt, then MAC over prefix ‖ IV ‖ ciphertext), append the body.
//! Receiving: [`open_parts`] splits a received datagram into prefix (AAD), body and inner
//! first-payload type; after authenticating and decrypting, decode the plaintext with
//! [`crate::decode_chain`] (or hand fragments to [`crate::Reassembler`]).

use crate::datagram::Datagram;
use crate::error::{DecodeError, EncodeError, check_len};
use crate::header::{HEADER_LEN, Header};
use crate::message::encode_payloads_then;
use crate::payload::Payload;
use crate::registry::PayloadType;

/// Which protected payload ends the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// SK payload carrying a whole inner chain.
    Sk {
        /// Type of the first inner payload.
        first_payload: PayloadType,
    },
    /// SKF payload carrying one fragment.
    Skf {
        /// Position of this fragment.
        fragment: FragmentPosition,
        /// Type of the first inner payload; sent only in fragment 1 (RFC 7383 2.5), pass
        /// [`PayloadType::NONE`] for the others.
        first_payload: PayloadType,
    },
}

/// Fragment Number and Total Fragments of an SKF payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragmentPosition {
    /// 1-based fragment number.
    pub number: u16,
    /// Total number of fragments of the message.
    pub total: u16,
}

impl Protection {
    /// Bytes of the SK / SKF payload before its body: 4 for SK, 8 for SKF.
    pub fn header_len(self) -> usize {
        match self {
            Self::Sk { .. } => 4,
            Self::Skf { .. } => 8,
        }
    }
}

/// Builds the authenticated prefix of a protected message: IKE header (Length = prefix + body),
/// the `unprotected` payloads (normally none) and the SK / SKF header announcing `body_len` bytes.
/// Appending exactly `body_len` bytes of IV ‖ ciphertext ‖ ICV yields the complete datagram.
pub fn seal_prefix(
    header: &Header,
    unprotected: &[Payload],
    protection: Protection,
    body_len: usize,
) -> Result<Vec<u8>, EncodeError> {
    let sk_type = match protection {
        Protection::Sk { .. } => PayloadType::SK,
        Protection::Skf { .. } => PayloadType::SKF,
    };
    let mut out = Vec::with_capacity(HEADER_LEN + 8);
    header.write(PayloadType::NONE, 0, &mut out);
    let first = encode_payloads_then(unprotected, sk_type, &mut out)?;
    let sk_len = protection.header_len() + body_len;
    check_len("encrypted payload length", sk_len, u16::MAX.into())?;
    match protection {
        Protection::Sk { first_payload } => {
            out.extend_from_slice(&[first_payload.0, 0]);
            out.extend_from_slice(&(sk_len as u16).to_be_bytes());
        }
        Protection::Skf {
            fragment,
            first_payload,
        } => {
            out.extend_from_slice(&[first_payload.0, 0]);
            out.extend_from_slice(&(sk_len as u16).to_be_bytes());
            out.extend_from_slice(&fragment.number.to_be_bytes());
            out.extend_from_slice(&fragment.total.to_be_bytes());
        }
    }
    let total = out.len() + body_len;
    let total = u32::try_from(total).map_err(|_| EncodeError::TooLarge {
        what: "message length",
        value: total,
        max: u32::MAX as usize,
    })?;
    if let Some(np) = out.get_mut(16) {
        *np = first.0;
    }
    if let Some(l) = out.get_mut(24..28) {
        l.copy_from_slice(&total.to_be_bytes());
    }
    Ok(out)
}

/// A received protected message split for authentication and decryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedParts<'a> {
    /// The IKE header.
    pub header: Header,
    /// Payloads before the SK / SKF payload (normally none; not integrity protected until the
    /// body has been verified, since they are covered by the ICV).
    pub unprotected: Vec<Payload>,
    /// Associated data: header ‖ unprotected payloads ‖ SK/SKF header (and fragment fields).
    pub aad: &'a [u8],
    /// IV ‖ ciphertext ‖ ICV.
    pub body: &'a [u8],
    /// Next Payload of the SK / SKF payload: first inner payload type (fragment 1 / SK only).
    pub first_payload: PayloadType,
    /// Set for SKF.
    pub fragment: Option<FragmentPosition>,
}

/// Splits a received datagram whose last payload is SK or SKF. Checks the header Length and
/// every payload bound on the way; fails with [`DecodeError::NotProtected`] when the chain ends
/// without SK / SKF.
pub fn open_parts(buf: &[u8]) -> Result<ProtectedParts<'_>, DecodeError> {
    Datagram::parse(buf)?.open()
}
