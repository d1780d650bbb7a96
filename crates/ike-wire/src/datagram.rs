//! A received datagram read once: its header first (enough to find the IKE SA it belongs
//! to), then, from that same reading, either the whole message decoded or a protected
//! message split for decryption.

use crate::error::{DecodeError, Defect};
use crate::header::{HEADER_LEN, Header, RawHeader};
use crate::message::{Message, decode_payloads, read_generic};
use crate::payload::Payload;
use crate::protect::{FragmentPosition, ProtectedParts};
use crate::registry::PayloadType;

/// A received datagram whose header has been read. A receiver parses it once, demultiplexes
/// on [`Datagram::header`], and hands it on to whoever decodes ([`Datagram::decode`]) or
/// opens ([`Datagram::open`]) the rest; neither reads the header again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram<'a> {
    raw: RawHeader,
    bytes: &'a [u8],
}

impl<'a> Datagram<'a> {
    /// Reads the 28-byte header at the start of `bytes` (see [`Header::parse`]); the payloads
    /// and the Length field are checked by `decode` and `open`.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        Ok(Self {
            raw: Header::parse(bytes)?,
            bytes,
        })
    }

    /// The header fields.
    pub fn header(&self) -> &Header {
        &self.raw.header
    }

    /// The whole datagram.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The datagram's size in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Never true: a datagram holds at least its header.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// True for SK or SKF as the first payload: a message only the IKE SA's keys can read.
    pub fn is_protected(&self) -> bool {
        matches!(self.raw.first_payload, PayloadType::SK | PayloadType::SKF)
    }

    fn check_length(&self) -> Result<(), DecodeError> {
        if usize::try_from(self.raw.length).ok() == Some(self.bytes.len()) {
            Ok(())
        } else {
            Err(DecodeError::LengthMismatch {
                declared: self.raw.length,
                actual: self.bytes.len(),
            })
        }
    }

    /// Decodes every payload (see [`Message::decode`]). The header Length must equal the
    /// datagram's size.
    pub fn decode(&self) -> Result<Message, DecodeError> {
        self.check_length()?;
        let payloads = decode_payloads(
            self.raw.first_payload,
            self.bytes.get(HEADER_LEN..).unwrap_or_default(),
            HEADER_LEN,
        )?;
        Ok(Message {
            header: self.raw.header,
            payloads,
        })
    }

    /// Splits a datagram whose last payload is SK or SKF for authentication and decryption
    /// (see [`crate::open_parts`]). Checks the header Length and every payload bound on the
    /// way; fails with [`DecodeError::NotProtected`] when the chain ends without SK / SKF.
    pub fn open(&self) -> Result<ProtectedParts<'a>, DecodeError> {
        self.check_length()?;
        let buf = self.bytes;
        let mut unprotected = Vec::new();
        let mut next = self.raw.first_payload;
        let mut pos = HEADER_LEN;
        loop {
            match next {
                PayloadType::NONE => return Err(DecodeError::NotProtected),
                PayloadType::SK | PayloadType::SKF => break,
                _ => {}
            }
            let p = read_generic(next, buf, pos, 0)?;
            unprotected.push(Payload::decode_body(next, p.next, p.critical, p.body, pos)?);
            pos = p.end;
            next = p.next;
        }
        let p = read_generic(next, buf, pos, 0)?;
        if p.end != buf.len() {
            return Err(DecodeError::DataAfterEncrypted { offset: p.end });
        }
        let (body_start, fragment) = if next == PayloadType::SKF {
            let Some(&[n0, n1, t0, t1]) = p.body.first_chunk::<4>() else {
                return Err(DecodeError::Malformed {
                    payload_type: next,
                    offset: pos,
                    defect: Defect::BodyTooShort,
                });
            };
            let position = FragmentPosition {
                number: u16::from_be_bytes([n0, n1]),
                total: u16::from_be_bytes([t0, t1]),
            };
            (pos + 8, Some(position))
        } else {
            (pos + 4, None)
        };
        let (aad, body) = buf
            .split_at_checked(body_start)
            .ok_or(DecodeError::Malformed {
                payload_type: next,
                offset: pos,
                defect: Defect::BodyTooShort,
            })?;
        Ok(ProtectedParts {
            header: self.raw.header,
            unprotected,
            aad,
            body,
            first_payload: p.next,
            fragment,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Flags;
    use crate::message::encode_chain;
    use crate::payload::Notify;
    use crate::protect::{Protection, seal_prefix};
    use crate::registry::{ExchangeType, NotifyType};

    fn protected() -> Vec<u8> {
        let header = Header::new(1, 2, ExchangeType::INFORMATIONAL, Flags::INITIATOR, 3);
        let inner = vec![Payload::Notify(Notify::new(
            NotifyType::COOKIE2,
            vec![7; 8],
        ))];
        let (first, plain) = encode_chain(&inner).unwrap();
        let body = [&[0u8; 8][..], &plain, &[0u8; 16]].concat();
        let mut bytes = seal_prefix(
            &header,
            &[],
            Protection::Sk {
                first_payload: first,
            },
            body.len(),
        )
        .unwrap();
        bytes.extend_from_slice(&body);
        bytes
    }

    #[test]
    fn one_reading_of_the_header_serves_both_open_and_decode() {
        let bytes = protected();
        let datagram = Datagram::parse(&bytes).unwrap();
        assert!(datagram.is_protected());
        assert_eq!(datagram.header().message_id, 3);
        let parts = datagram.open().unwrap();
        assert_eq!(parts.header, *datagram.header());
        assert_eq!(parts.aad.len() + parts.body.len(), bytes.len());
        let message = datagram.decode().unwrap();
        assert_eq!(message.header, *datagram.header());
        assert_eq!(Message::decode(&bytes).unwrap(), message);
    }

    #[test]
    fn a_length_field_that_disagrees_with_the_datagram_is_refused_by_both() {
        let mut bytes = protected();
        bytes.push(0);
        let datagram = Datagram::parse(&bytes).unwrap();
        assert!(matches!(
            datagram.open(),
            Err(DecodeError::LengthMismatch { .. })
        ));
        assert!(matches!(
            datagram.decode(),
            Err(DecodeError::LengthMismatch { .. })
        ));
        assert!(matches!(
            Datagram::parse(&bytes[..20]),
            Err(DecodeError::TooShort { len: 20 })
        ));
    }
}
