//! Decode and encode errors.

use crate::header::Header;
use crate::registry::PayloadType;

/// What exactly was wrong with a (sub)structure of a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Defect {
    /// Fewer than 4 bytes left for a generic payload header.
    #[error("truncated generic payload header")]
    TruncatedPayloadHeader,
    /// Payload Length field below 4.
    #[error("payload length below 4")]
    PayloadLengthTooSmall,
    /// Payload Length reaches past the end of the message / enclosing chain.
    #[error("payload length exceeds the enclosing data")]
    PayloadExceedsParent,
    /// The fixed part of the payload body is shorter than the payload type requires.
    #[error("payload body too short for its fixed fields")]
    BodyTooShort,
    /// Proposal substructure header truncated or its length out of range.
    #[error("bad proposal length")]
    ProposalLength,
    /// Proposal "Last Substruc" is not 0 (last) / 2 (more) consistently with the data.
    #[error("bad proposal last-substructure value")]
    ProposalLastSubstruc,
    /// The SPI size of a proposal does not fit into the proposal.
    #[error("proposal SPI exceeds the proposal")]
    ProposalSpi,
    /// "Num Transforms" differs from the transforms actually present.
    #[error("proposal transform count mismatch")]
    ProposalTransformCount,
    /// Transform substructure truncated or its length out of range.
    #[error("bad transform length")]
    TransformLength,
    /// Transform "Last Substruc" is not 0 (last) / 3 (more) consistently with the data.
    #[error("bad transform last-substructure value")]
    TransformLastSubstruc,
    /// Transform attribute truncated (TV needs 4 bytes, TLV 4 + length).
    #[error("bad transform attribute length")]
    AttributeLength,
    /// The SPI of a Notify payload does not fit into the payload.
    #[error("notify SPI exceeds the payload")]
    NotifySpi,
    /// Delete payload SPI count times SPI size differs from the data present.
    #[error("delete SPI count/size mismatch")]
    DeleteSpis,
    /// Traffic selector truncated, or its length wrong for its type.
    #[error("bad traffic selector length")]
    TrafficSelectorLength,
    /// "Number of TSs" differs from the selectors actually present.
    #[error("traffic selector count mismatch")]
    TrafficSelectorCount,
    /// Configuration attribute truncated or with a length invalid for its type.
    #[error("bad configuration attribute length")]
    CfgAttributeLength,
}

/// Why a message or payload chain could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Shorter than the 28-byte IKE header.
    #[error("message of {len} bytes is shorter than the IKE header")]
    TooShort {
        /// Bytes available.
        len: usize,
    },
    /// Major version is not 2. A responder answers with `INVALID_MAJOR_VERSION` (RFC 7296 2.5),
    /// using the SPIs and message ID in `header`.
    #[error("unsupported IKE major version {major}")]
    UnsupportedMajorVersion {
        /// Major version found (upper nibble of the version octet).
        major: u8,
        /// The rest of the header as parsed.
        header: Header,
    },
    /// The header Length field differs from the number of bytes received.
    #[error("header length {declared} differs from message size {actual}")]
    LengthMismatch {
        /// Length field of the header.
        declared: u32,
        /// Bytes handed to the decoder.
        actual: usize,
    },
    /// A payload (or one of its substructures) is malformed.
    #[error("{payload_type} payload at offset {offset}: {defect}")]
    Malformed {
        /// Type of the payload being decoded.
        payload_type: PayloadType,
        /// Byte offset of the offending (sub)structure, relative to the decoded buffer.
        offset: usize,
        /// What was wrong.
        defect: Defect,
    },
    /// Bytes left after the last payload of the chain (Next Payload 0).
    #[error("{len} trailing bytes after the last payload at offset {offset}")]
    TrailingData {
        /// Offset of the first unused byte.
        offset: usize,
        /// Number of unused bytes.
        len: usize,
    },
    /// The SK / SKF payload is not the last thing in the message (RFC 7296 3.14).
    #[error("data after the encrypted payload at offset {offset}")]
    DataAfterEncrypted {
        /// Offset of the first byte after the SK / SKF payload.
        offset: usize,
    },
    /// A protected message was expected but there is no SK / SKF payload.
    #[error("message has no SK or SKF payload")]
    NotProtected,
}

/// Why a message or payload could not be encoded (a field exceeds its wire width).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A length or count does not fit its wire field.
    #[error("{what} is {value}, more than the maximum {max}")]
    TooLarge {
        /// Which field overflowed.
        what: &'static str,
        /// Its value.
        value: usize,
        /// The largest encodable value.
        max: usize,
    },
    /// Fields that must agree do not.
    #[error("inconsistent payload: {what}")]
    Inconsistent {
        /// What disagrees.
        what: &'static str,
    },
}

pub(crate) fn check_len(what: &'static str, value: usize, max: usize) -> Result<(), EncodeError> {
    if value > max {
        Err(EncodeError::TooLarge { what, value, max })
    } else {
        Ok(())
    }
}
