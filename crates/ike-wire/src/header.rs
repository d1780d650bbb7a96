//! The fixed 28-byte IKE header (RFC 7296 3.1).

use crate::error::DecodeError;
use crate::registry::{ExchangeType, PayloadType};

/// Size of the IKE header in bytes.
pub const HEADER_LEN: usize = 28;

/// The only major version this crate speaks.
pub const MAJOR_VERSION: u8 = 2;

/// Header flags octet. Unknown bits are kept as received (RFC 7296: ignored on receipt).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// Set by the original initiator of the IKE SA.
    pub const INITIATOR: Self = Self(0x08);
    /// Sender can speak a higher major version.
    pub const VERSION: Self = Self(0x10);
    /// The message is a response.
    pub const RESPONSE: Self = Self(0x20);

    /// True when every bit of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Initiator flag set.
    pub fn initiator(self) -> bool {
        self.contains(Self::INITIATOR)
    }

    /// Response flag set.
    pub fn response(self) -> bool {
        self.contains(Self::RESPONSE)
    }
}

impl core::ops::BitOr for Flags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl core::fmt::Debug for Flags {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Flags(")?;
        let mut sep = "";
        for (flag, name) in [
            (Self::INITIATOR, "I"),
            (Self::VERSION, "V"),
            (Self::RESPONSE, "R"),
        ] {
            if self.contains(flag) {
                write!(f, "{sep}{name}")?;
                sep = "|";
            }
        }
        let rest = self.0 & !0x38;
        if rest != 0 {
            write!(f, "{sep}{rest:#04x}")?;
        }
        write!(f, ")")
    }
}

/// IKE header fields that are not derived from the payloads.
///
/// Next Payload and Length are computed when encoding and checked when decoding, so they are
/// not stored here. The major version is always 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// IKE SA initiator's SPI.
    pub spi_i: u64,
    /// IKE SA responder's SPI (0 in the first IKE_SA_INIT request).
    pub spi_r: u64,
    /// Minor version (0 when sending; ignored on receipt but kept).
    pub minor_version: u8,
    /// Exchange type.
    pub exchange_type: ExchangeType,
    /// Flags.
    pub flags: Flags,
    /// Message ID.
    pub message_id: u32,
}

/// A header as found at the start of a datagram, with the chain start and declared length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawHeader {
    /// The header fields.
    pub header: Header,
    /// Next Payload field: type of the first payload.
    pub first_payload: PayloadType,
    /// Length field: total message length.
    pub length: u32,
}

impl Header {
    /// A header with minor version 0.
    pub fn new(
        spi_i: u64,
        spi_r: u64,
        exchange_type: ExchangeType,
        flags: Flags,
        message_id: u32,
    ) -> Self {
        Self {
            spi_i,
            spi_r,
            minor_version: 0,
            exchange_type,
            flags,
            message_id,
        }
    }

    /// Parses the 28-byte header at the start of `buf` without looking at payloads or checking
    /// the Length field against `buf` (for SPI demultiplexing before full decoding).
    pub fn parse(buf: &[u8]) -> Result<RawHeader, DecodeError> {
        let Some(h) = buf.first_chunk::<HEADER_LEN>() else {
            return Err(DecodeError::TooShort { len: buf.len() });
        };
        let [
            s0,
            s1,
            s2,
            s3,
            s4,
            s5,
            s6,
            s7,
            r0,
            r1,
            r2,
            r3,
            r4,
            r5,
            r6,
            r7,
            np,
            ver,
            xchg,
            fl,
            m0,
            m1,
            m2,
            m3,
            l0,
            l1,
            l2,
            l3,
        ] = *h;
        let header = Header {
            spi_i: u64::from_be_bytes([s0, s1, s2, s3, s4, s5, s6, s7]),
            spi_r: u64::from_be_bytes([r0, r1, r2, r3, r4, r5, r6, r7]),
            minor_version: ver & 0x0f,
            exchange_type: ExchangeType(xchg),
            flags: Flags(fl),
            message_id: u32::from_be_bytes([m0, m1, m2, m3]),
        };
        let major = ver >> 4;
        if major != MAJOR_VERSION {
            return Err(DecodeError::UnsupportedMajorVersion { major, header });
        }
        Ok(RawHeader {
            header,
            first_payload: PayloadType(np),
            length: u32::from_be_bytes([l0, l1, l2, l3]),
        })
    }

    /// Appends the wire form of this header with the given Next Payload and Length fields.
    pub fn write(&self, first_payload: PayloadType, length: u32, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.spi_i.to_be_bytes());
        out.extend_from_slice(&self.spi_r.to_be_bytes());
        out.push(first_payload.0);
        out.push((MAJOR_VERSION << 4) | (self.minor_version & 0x0f));
        out.push(self.exchange_type.0);
        out.push(self.flags.0);
        out.extend_from_slice(&self.message_id.to_be_bytes());
        out.extend_from_slice(&length.to_be_bytes());
    }
}
