//! Sans-IO ESP data plane for aovpn.
//!
//! - ESP tunnel mode (RFC 4303) carried in UDP port 4500 (RFC 3948); [`classify_udp4500`]
//!   separates IKE (non-ESP marker), ESP and NAT keepalives.
//! - Ciphers: AES-GCM-16 (RFC 4106), ChaCha20-Poly1305 (RFC 7634), AES-CBC with
//!   HMAC-SHA1-96 / HMAC-SHA2-256-128 / -384-192 / -512-256, all via aws-lc-rs with keys
//!   expanded once per SA.
//! - Inbound: replay pre-check, ICV check (constant time), then the replay window (default 4096,
//!   at least 1024) moves; then padding and next header are checked. Every drop is counted per SA.
//! - Outbound: sequence numbers start at 1 and never wrap; soft/hard limits raise
//!   [`SaEvent`]s for the IKE side.
//! - Outbound in batches: [`OutboundSa::encapsulate_batch`] reads many packets and appends to a
//!   caller-owned [`BatchBuf`] without allocating; [`BatchBuf::gso_runs`] groups the output for
//!   UDP GSO. Inbound one packet at a time, in place ([`InboundSa::decapsulate_in_place`]): the
//!   caller (`datapath`) looks the SA up by SPI in its own table.
//! - Extended sequence numbers (RFC 4303 section 2.2.1) when negotiated (`esn` in the configs).
//! - Optional TFC padding on send; received TFC padding is stripped and dummy packets dropped.
//!
//! Not supported: transport mode, sending dummy packets.
//!
//! May depend on: nothing of ours (a leaf).
//! Start reading: `sa.rs`, then `udp.rs`.

mod batch;
mod cipher;
mod error;
pub mod framing;
pub mod replay;
mod sa;
mod transform;
mod udp;

pub use batch::{BatchBuf, GsoRun, GsoRuns, PacketList};
pub use error::{DecapError, EncapError, KeyError};
pub use sa::{
    DEFAULT_SOFT_SEQ, DEFAULT_SOFT_SEQ_ESN, Decapsulated, EncapBatchReport, InboundConfig,
    InboundCounters, InboundSa, Lifetime, LimitKind, MAX_ESP_PACKET_LEN, MAX_SEQ_32, MAX_SEQ_64,
    OutboundConfig, OutboundCounters, OutboundSa, SaEvent, next_header,
};
pub use transform::{AEAD_SALT_LEN, AesKeyLen, DirectionKeys, Integrity, Transform, split_keymat};
pub use udp::{NAT_KEEPALIVE, NON_ESP_MARKER, Udp4500, classify_udp4500};

#[cfg(test)]
mod kat;
