//! IKEv2 message and payload codec: RFC 7296 section 3 payloads, RFC 7383 fragments (SKF),
//! RFC 4555 / RFC 7427 notify and auth formats. No crypto, no I/O.
//!
//! # Decoding
//! - [`Message::decode`] parses a whole datagram into a [`Header`] and [`Payload`]s (owned). The
//!   header Length must equal the datagram size; every nested length is checked and failures are a
//!   typed [`DecodeError`] with payload type and offset. A major version other than 2 gives
//!   [`DecodeError::UnsupportedMajorVersion`] carrying the parsed header, so a responder can answer
//!   `INVALID_MAJOR_VERSION`.
//! - [`Datagram::parse`] reads just the 28-byte header (SPI demultiplexing) and keeps it, so
//!   the receiver that finds the SA hands on a [`Datagram`] that is decoded
//!   ([`Datagram::decode`]) or opened ([`Datagram::open`]) without reading the header again.
//!   [`Header::parse`] is the bare header reader underneath.
//! - Unknown payload types are kept as [`Payload::Unknown`]. If one has the critical bit set,
//!   decoding still succeeds and [`Payloads::unsupported_critical`] returns its type: answer
//!   `UNSUPPORTED_CRITICAL_PAYLOAD` with that type as notification data.
//! - An SK / SKF payload ends the chain; its body stays opaque ([`Encrypted`],
//!   [`EncryptedFragment`]).
//!
//! # Encoding
//! [`Message::encode`] computes every Next Payload and Length field and returns [`EncodeError`]
//! only when a value does not fit its wire field (payload > 65535 bytes, > 255 transforms, ...) or
//! SK / SKF is not the last payload. Their `first_payload` becomes their Next Payload field.
//! [`encode_chain`] / [`decode_chain`] handle inner chains (SK plaintext). Known payloads are
//! always sent with the critical bit clear.
//!
//! # Protected messages (RFC 7296 3.14, RFC 7383 2.5)
//! - Send: `let (first, plain) = encode_chain(&inner)?;` let the crypto layer tell the body length
//!   for `plain.len()`; `let mut msg = seal_prefix(&header, &[], Protection::Sk { first_payload:
//!   first }, body_len)?;` then `msg.extend(seal(aad = &msg, plain))`.
//! - Receive: [`open_parts`] returns the AAD prefix, the body (IV ‖ ciphertext ‖ ICV), the first
//!   inner payload type and, for SKF, the fragment position. After verifying and decrypting,
//!   [`decode_chain`]`(first_payload, &plaintext)`.
//! - Fragments: [`split_fragments`] cuts the inner plaintext into chunks for a maximum datagram
//!   size (each chunk is sealed into its own SKF message with [`Protection::Skf`]);
//!   [`Reassembler`] collects fragment plaintexts per message ID, bounded by
//!   [`ReassemblyLimits`] (default 64 fragments, 64 KiB, 4 messages). Only feed it fragments whose
//!   ICV has been verified.
//!
//! # Registries
//! Numeric registries ([`PayloadType`], [`NotifyType`], [`EncrId`], [`DhGroup`], ...) are
//! newtypes with named constants, so unknown values survive a round trip.
//!
//! Lookups over payload lists (`msg.payloads.notify(NotifyType::COOKIE)`, `.sa()`, `.ke()`,
//! `.nonce()`, ...) come from the [`Payloads`] trait.
//!
//! # Example
//! ```
//! use ike_wire::*;
//!
//! // Responder side of a protected exchange, with a stand-in for the AEAD.
//! let header = Header::new(0x1111, 0x2222, ExchangeType::INFORMATIONAL, Flags::RESPONSE, 2);
//! let inner = vec![Payload::Notify(Notify::new(NotifyType::NO_ADDITIONAL_ADDRESSES, vec![]))];
//! let (first, plain) = encode_chain(&inner)?;
//! let seal = |aad: &[u8], plain: &[u8]| -> Vec<u8> {
//!     let icv = aad.iter().fold(0u8, |a, b| a ^ b); // not crypto: just uses the AAD
//!     [&[0u8; 8][..], plain, &[icv; 16]].concat()
//! };
//! let body_len = 8 + plain.len() + 16; // known before sealing
//! let mut datagram = seal_prefix(&header, &[], Protection::Sk { first_payload: first }, body_len)?;
//! let body = seal(&datagram, &plain);
//! datagram.extend_from_slice(&body);
//!
//! // Receiving: split, authenticate + decrypt (stand-in), decode the inner chain.
//! let parts = open_parts(&datagram)?;
//! assert_eq!(parts.body, body.as_slice());
//! let decrypted = &parts.body[8..parts.body.len() - 16];
//! let payloads = decode_chain(parts.first_payload, decrypted)?;
//! assert!(payloads.notify(NotifyType::NO_ADDITIONAL_ADDRESSES).is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! May depend on: nothing of ours (a leaf: no crypto, no I/O).
//! Start reading: `message.rs` (a whole message), then `payload/mod.rs` (the dispatch) and the payload you need.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod datagram;
mod error;
mod fragment;
mod header;
mod message;
mod payload;
mod protect;
mod registry;

pub use datagram::Datagram;
pub use error::{DecodeError, Defect, EncodeError};
pub use fragment::{
    FragmentError, Reassembled, Reassembler, ReassemblyLimits, ReassemblyStatus, split_fragments,
};
pub use header::{Flags, HEADER_LEN, Header, MAJOR_VERSION, RawHeader};
pub use message::{Message, Payloads, decode_chain, encode_chain};
pub use payload::{
    AttributeValue, Authentication, Certificate, CfgAttribute, Configuration, Delete, Encrypted,
    EncryptedFragment, GatewayIdentity, Identification, KeyExchange, MAX_PAYLOAD_BODY, Notify,
    Payload, Proposal, SecurityAssociation, TrafficSelector, Transform, TransformAttribute,
    TransformId, TsRange, UnknownPayload,
};
pub use protect::{FragmentPosition, ProtectedParts, Protection, open_parts, seal_prefix};
pub use registry::{
    AuthMethod, CertEncoding, CfgAttributeType, CfgType, DhGroup, EncrId, EsnId, ExchangeType,
    IdType, IntegId, NotifyType, PayloadType, PrfId, ProtocolId, TransformAttributeType,
    TransformType, TsType,
};
