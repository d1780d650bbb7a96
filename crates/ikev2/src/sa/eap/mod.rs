//! EAP-TLS inside IKE_AUTH (RFC 7296 2.16), both roles: the EAP codec, the in-memory rustls
//! server (responder) and client (initiator), and EAP-TLS fragmentation. TLS 1.2 follows
//! RFC 5216; TLS 1.3 follows RFC 9190 (the server's commitment message, the 1.3 key
//! derivation, no resumption). The IKE side lives in `sa/auth/`.
//!
//! [`framing`] is the EAP and EAP-TLS codec, [`tls`] what both roles share of rustls,
//! [`server`] the responder's side, [`client`] the initiator's.

mod client;
mod framing;
mod server;
mod tls;

pub(super) use client::{ClientStep, EapClient};
pub use framing::EapError;
pub(super) use framing::{EapPacket, TYPE_IDENTITY, failure, request, success};
pub(super) use server::{EapServer, Phase, Step};
