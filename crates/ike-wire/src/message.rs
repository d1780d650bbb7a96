//! Whole messages and payload chains.

use crate::datagram::Datagram;
use crate::error::{DecodeError, Defect, EncodeError, check_len};
use crate::header::{HEADER_LEN, Header};
use crate::payload::{
    Authentication, Certificate, Configuration, Encrypted, EncryptedFragment, Identification,
    KeyExchange, Notify, Payload, SecurityAssociation, TrafficSelector,
};
use crate::registry::{NotifyType, PayloadType};

/// An IKE message: header plus payloads in order.
///
/// An SK or SKF payload, if present, must be the last payload; its `first_payload` becomes its
/// Next Payload field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Header fields (Next Payload and Length are derived).
    pub header: Header,
    /// Payloads in wire order.
    pub payloads: Vec<Payload>,
}

impl Message {
    /// A message with the given header and payloads.
    pub fn new(header: Header, payloads: Vec<Payload>) -> Self {
        Self { header, payloads }
    }

    /// Decodes a complete datagram. The header Length must equal `buf.len()`.
    ///
    /// Unknown payloads are kept as [`Payload::Unknown`]; check
    /// [`Payloads::unsupported_critical`] before processing the message further.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        Datagram::parse(buf)?.decode()
    }

    /// Encodes the message, computing every Next Payload and Length field.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(HEADER_LEN + 256);
        self.header.write(PayloadType::NONE, 0, &mut out);
        let first = encode_payloads(&self.payloads, &mut out)?;
        let len = u32::try_from(out.len()).map_err(|_| EncodeError::TooLarge {
            what: "message length",
            value: out.len(),
            max: u32::MAX as usize,
        })?;
        if let Some(np) = out.get_mut(16) {
            *np = first.0;
        }
        if let Some(l) = out.get_mut(24..28) {
            l.copy_from_slice(&len.to_be_bytes());
        }
        Ok(out)
    }
}

/// Encodes a payload chain (e.g. the plaintext inside SK) and returns the first payload's type
/// (for the SK payload's Next Payload field) with the bytes.
pub fn encode_chain(payloads: &[Payload]) -> Result<(PayloadType, Vec<u8>), EncodeError> {
    let mut out = Vec::new();
    let first = encode_payloads(payloads, &mut out)?;
    Ok((first, out))
}

/// Decodes a payload chain starting with a payload of type `first` (e.g. decrypted SK content).
/// Error offsets are relative to `buf`.
pub fn decode_chain(first: PayloadType, buf: &[u8]) -> Result<Vec<Payload>, DecodeError> {
    decode_payloads(first, buf, 0)
}

pub(crate) fn encode_payloads(
    payloads: &[Payload],
    out: &mut Vec<u8>,
) -> Result<PayloadType, EncodeError> {
    encode_payloads_then(payloads, PayloadType::NONE, out)
}

/// Encodes `payloads`; the last one's Next Payload is `trailing` (the type of whatever the
/// caller appends after the chain).
pub(crate) fn encode_payloads_then(
    payloads: &[Payload],
    trailing: PayloadType,
    out: &mut Vec<u8>,
) -> Result<PayloadType, EncodeError> {
    for (i, p) in payloads.iter().enumerate() {
        let next = match p.inner_first_payload() {
            Some(_) if i + 1 != payloads.len() || trailing != PayloadType::NONE => {
                return Err(EncodeError::Inconsistent {
                    what: "SK / SKF payload is not the last",
                });
            }
            Some(inner) => inner,
            None => payloads.get(i + 1).map_or(trailing, Payload::payload_type),
        };
        let start = out.len();
        out.extend_from_slice(&[next.0, if p.critical() { 0x80 } else { 0 }, 0, 0]);
        p.encode_body(out)?;
        let len = out.len() - start;
        check_len("payload length", len, u16::MAX.into())?;
        if let Some(l) = out.get_mut(start + 2..start + 4) {
            l.copy_from_slice(&(len as u16).to_be_bytes());
        }
    }
    Ok(payloads.first().map_or(trailing, Payload::payload_type))
}

/// One generic payload header read from a chain.
pub(crate) struct RawPayload<'a> {
    pub payload_type: PayloadType,
    pub next: PayloadType,
    pub critical: bool,
    pub body: &'a [u8],
    /// Offset of the generic header within the chain buffer.
    pub start: usize,
    pub end: usize,
}

/// Reads the generic payload header at `pos` and bounds the payload within `buf`.
pub(crate) fn read_generic(
    payload_type: PayloadType,
    buf: &[u8],
    pos: usize,
    base: usize,
) -> Result<RawPayload<'_>, DecodeError> {
    let malformed = |defect| DecodeError::Malformed {
        payload_type,
        offset: base + pos,
        defect,
    };
    let Some(&[next, flags, l0, l1]) = buf.get(pos..).and_then(|b| b.first_chunk::<4>()) else {
        return Err(malformed(Defect::TruncatedPayloadHeader));
    };
    let len = usize::from(u16::from_be_bytes([l0, l1]));
    if len < 4 {
        return Err(malformed(Defect::PayloadLengthTooSmall));
    }
    let end = pos + len;
    let Some(body) = buf.get(pos + 4..end) else {
        return Err(malformed(Defect::PayloadExceedsParent));
    };
    Ok(RawPayload {
        payload_type,
        next: PayloadType(next),
        critical: flags & 0x80 != 0,
        body,
        start: pos,
        end,
    })
}

pub(crate) fn decode_payloads(
    first: PayloadType,
    buf: &[u8],
    base: usize,
) -> Result<Vec<Payload>, DecodeError> {
    let mut payloads = Vec::new();
    let mut next = first;
    let mut pos = 0;
    while next != PayloadType::NONE {
        let raw = read_generic(next, buf, pos, base)?;
        payloads.push(Payload::decode_body(
            raw.payload_type,
            raw.next,
            raw.critical,
            raw.body,
            base + raw.start,
        )?);
        pos = raw.end;
        if matches!(raw.payload_type, PayloadType::SK | PayloadType::SKF) {
            // Its Next Payload names the first inner payload; nothing may follow it.
            if pos != buf.len() {
                return Err(DecodeError::DataAfterEncrypted { offset: base + pos });
            }
            return Ok(payloads);
        }
        next = raw.next;
    }
    if pos != buf.len() {
        return Err(DecodeError::TrailingData {
            offset: base + pos,
            len: buf.len() - pos,
        });
    }
    Ok(payloads)
}

/// Small lookups over a payload list (a message's payloads or a decrypted inner chain).
pub trait Payloads {
    /// All Notify payloads.
    fn notifies(&self) -> impl Iterator<Item = &Notify>;
    /// The first Notify of the given type.
    fn notify(&self, notify_type: NotifyType) -> Option<&Notify>;
    /// The first error Notify (type < 16384), if any.
    fn error_notify(&self) -> Option<&Notify>;
    /// The first SA payload.
    fn sa(&self) -> Option<&SecurityAssociation>;
    /// The first KE payload.
    fn ke(&self) -> Option<&KeyExchange>;
    /// The first Nonce payload's data.
    fn nonce(&self) -> Option<&[u8]>;
    /// The IDi payload.
    fn id_i(&self) -> Option<&Identification>;
    /// The IDr payload.
    fn id_r(&self) -> Option<&Identification>;
    /// The first AUTH payload.
    fn auth(&self) -> Option<&Authentication>;
    /// All CERT payloads in order (end-entity first by convention).
    fn certs(&self) -> impl Iterator<Item = &Certificate>;
    /// All CERTREQ payloads.
    fn cert_reqs(&self) -> impl Iterator<Item = &Certificate>;
    /// TSi selectors.
    fn ts_i(&self) -> Option<&[TrafficSelector]>;
    /// TSr selectors.
    fn ts_r(&self) -> Option<&[TrafficSelector]>;
    /// The first CP payload.
    fn cp(&self) -> Option<&Configuration>;
    /// The first EAP payload.
    fn eap(&self) -> Option<&[u8]>;
    /// All Vendor ID payloads.
    fn vendor_ids(&self) -> impl Iterator<Item = &[u8]>;
    /// The SK payload.
    fn encrypted(&self) -> Option<&Encrypted>;
    /// The SKF payload.
    fn encrypted_fragment(&self) -> Option<&EncryptedFragment>;
    /// Type of the first unknown payload with the critical bit set: the message must be
    /// rejected with `UNSUPPORTED_CRITICAL_PAYLOAD` carrying this type as one octet of data.
    fn unsupported_critical(&self) -> Option<PayloadType>;
}

macro_rules! first_of {
    ($self:ident, $pat:pat => $out:expr) => {
        $self.iter().find_map(|p| match p {
            $pat => Some($out),
            _ => None,
        })
    };
}

impl Payloads for [Payload] {
    fn notifies(&self) -> impl Iterator<Item = &Notify> {
        self.iter().filter_map(|p| match p {
            Payload::Notify(n) => Some(n),
            _ => None,
        })
    }
    fn notify(&self, notify_type: NotifyType) -> Option<&Notify> {
        self.notifies().find(|n| n.notify_type == notify_type)
    }
    fn error_notify(&self) -> Option<&Notify> {
        self.notifies().find(|n| n.notify_type.is_error())
    }
    fn sa(&self) -> Option<&SecurityAssociation> {
        first_of!(self, Payload::Sa(x) => x)
    }
    fn ke(&self) -> Option<&KeyExchange> {
        first_of!(self, Payload::Ke(x) => x)
    }
    fn nonce(&self) -> Option<&[u8]> {
        first_of!(self, Payload::Nonce(x) => x.as_slice())
    }
    fn id_i(&self) -> Option<&Identification> {
        first_of!(self, Payload::IdI(x) => x)
    }
    fn id_r(&self) -> Option<&Identification> {
        first_of!(self, Payload::IdR(x) => x)
    }
    fn auth(&self) -> Option<&Authentication> {
        first_of!(self, Payload::Auth(x) => x)
    }
    fn certs(&self) -> impl Iterator<Item = &Certificate> {
        self.iter().filter_map(|p| match p {
            Payload::Cert(c) => Some(c),
            _ => None,
        })
    }
    fn cert_reqs(&self) -> impl Iterator<Item = &Certificate> {
        self.iter().filter_map(|p| match p {
            Payload::CertReq(c) => Some(c),
            _ => None,
        })
    }
    fn ts_i(&self) -> Option<&[TrafficSelector]> {
        first_of!(self, Payload::TsI(x) => x.as_slice())
    }
    fn ts_r(&self) -> Option<&[TrafficSelector]> {
        first_of!(self, Payload::TsR(x) => x.as_slice())
    }
    fn cp(&self) -> Option<&Configuration> {
        first_of!(self, Payload::Cp(x) => x)
    }
    fn eap(&self) -> Option<&[u8]> {
        first_of!(self, Payload::Eap(x) => x.as_slice())
    }
    fn vendor_ids(&self) -> impl Iterator<Item = &[u8]> {
        self.iter().filter_map(|p| match p {
            Payload::VendorId(v) => Some(v.as_slice()),
            _ => None,
        })
    }
    fn encrypted(&self) -> Option<&Encrypted> {
        first_of!(self, Payload::Sk(x) => x)
    }
    fn encrypted_fragment(&self) -> Option<&EncryptedFragment> {
        first_of!(self, Payload::Skf(x) => x)
    }
    fn unsupported_critical(&self) -> Option<PayloadType> {
        self.iter().find_map(|p| match p {
            Payload::Unknown(u) if u.critical => Some(u.payload_type),
            _ => None,
        })
    }
}
