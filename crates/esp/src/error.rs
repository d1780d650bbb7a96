//! Error types. Every error is also counted in the SA's counters.

use crate::sa::LimitKind;

/// Key material that does not fit the transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Wrong number of key bytes.
    #[error("key material has {got} bytes, transform needs {expected}")]
    WrongLength {
        /// Bytes the transform needs.
        expected: usize,
        /// Bytes supplied.
        got: usize,
    },
    /// The crypto library refused the key.
    #[error("crypto library rejected the key")]
    Rejected,
}

/// Why an outbound packet was not encapsulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncapError {
    /// The inner packet is not an IPv4 or IPv6 packet.
    #[error("inner packet is not IPv4 or IPv6")]
    InvalidInnerPacket,
    /// The ESP packet would exceed the largest UDP payload.
    #[error("encapsulated packet would be {len} bytes, more than fits in UDP")]
    PacketTooLarge {
        /// Length the ESP packet would have.
        len: usize,
    },
    /// The output buffer is shorter than the ESP packet.
    #[error("output buffer too small: need {needed} bytes")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
    },
    /// The 32-bit sequence number space is used up; the SA must be replaced (it never wraps).
    #[error("sequence number exhausted, SA must be rekeyed")]
    SequenceExhausted,
    /// A hard byte or packet lifetime was reached.
    #[error("SA hard lifetime reached ({0:?})")]
    LifetimeExpired(LimitKind),
    /// The crypto library failed (not expected for valid input).
    #[error("crypto library failure")]
    Crypto,
}

/// Why an inbound packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecapError {
    /// Too short or with a length the cipher cannot have produced.
    #[error("malformed ESP packet")]
    Malformed,
    /// The packet's SPI is not this SA's (or not in the table).
    #[error("unknown SPI {0:#010x}")]
    UnknownSpi(u32),
    /// Sequence number already seen or left of the replay window.
    #[error("replayed or too old sequence number")]
    Replayed,
    /// ICV check failed; the packet was not decrypted further.
    #[error("authentication failed")]
    AuthenticationFailed,
    /// Padding bytes are not 1, 2, 3, ... or the pad length exceeds the payload.
    #[error("bad ESP padding")]
    BadPadding,
    /// Next header is neither IPv4 (4), IPv6 (41) nor the dummy packet (59).
    #[error("unsupported next header {0}")]
    BadNextHeader(u8),
    /// The decrypted inner packet does not match its next header or its own length field.
    #[error("bad inner IP packet")]
    BadInnerPacket,
    /// A hard byte or packet lifetime was reached.
    #[error("SA hard lifetime reached ({0:?})")]
    LifetimeExpired(LimitKind),
}
