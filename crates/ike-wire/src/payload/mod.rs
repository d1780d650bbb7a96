//! Payload types (RFC 7296 section 3, RFC 7383 2.5) and their body encoding.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::{DecodeError, Defect, EncodeError, check_len};
use crate::registry::{
    AuthMethod, CertEncoding, CfgAttributeType, CfgType, DhGroup, EncrId, EsnId, IdType, IntegId,
    NotifyType, PayloadType, PrfId, ProtocolId, TransformAttributeType, TransformType, TsType,
};

mod cp;
mod notify;
mod sa;
mod ts;

pub use cp::{CfgAttribute, Configuration};
use cp::{decode_cp_attributes, encode_cp};
pub use notify::{Delete, GatewayIdentity, Notify};
use notify::{decode_delete, decode_notify, encode_delete, encode_notify};
pub use sa::{
    AttributeValue, Proposal, SecurityAssociation, Transform, TransformAttribute, TransformId,
};
use sa::{decode_sa, encode_sa};
pub use ts::{TrafficSelector, TsRange};
use ts::{decode_ts, encode_ts};

/// Largest payload body: the 16-bit Payload Length minus the 4-byte generic header.
pub const MAX_PAYLOAD_BODY: usize = u16::MAX as usize - 4;

/// One payload of an IKE message or of a decrypted inner chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Security Association (33).
    Sa(SecurityAssociation),
    /// Key Exchange (34).
    Ke(KeyExchange),
    /// Identification - Initiator (35).
    IdI(Identification),
    /// Identification - Responder (36).
    IdR(Identification),
    /// Certificate (37).
    Cert(Certificate),
    /// Certificate Request (38); `data` holds concatenated SHA-1 hashes of CA public keys for
    /// X509_SIG.
    CertReq(Certificate),
    /// Authentication (39).
    Auth(Authentication),
    /// Nonce (40).
    Nonce(Vec<u8>),
    /// Notify (41).
    Notify(Notify),
    /// Delete (42).
    Delete(Delete),
    /// Vendor ID (43).
    VendorId(Vec<u8>),
    /// Traffic Selector - Initiator (44).
    TsI(Vec<TrafficSelector>),
    /// Traffic Selector - Responder (45).
    TsR(Vec<TrafficSelector>),
    /// Encrypted and Authenticated (46). Must be the last payload.
    Sk(Encrypted),
    /// Configuration (47).
    Cp(Configuration),
    /// Extensible Authentication (48): the EAP message, passed through unparsed.
    Eap(Vec<u8>),
    /// Encrypted and Authenticated Fragment (53, RFC 7383). Must be the last payload.
    Skf(EncryptedFragment),
    /// Any other payload type, kept verbatim.
    Unknown(UnknownPayload),
}

/// A payload whose type this crate does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPayload {
    /// Its payload type.
    pub payload_type: PayloadType,
    /// Critical bit. When set, the receiver must reject the message with
    /// `UNSUPPORTED_CRITICAL_PAYLOAD` carrying the type (RFC 7296 2.5).
    pub critical: bool,
    /// Payload body after the generic header.
    pub body: Vec<u8>,
}

/// KE payload (RFC 7296 3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyExchange {
    /// Diffie-Hellman group / key exchange method.
    pub group: DhGroup,
    /// Public value.
    pub data: Vec<u8>,
}

/// IDi / IDr payload (RFC 7296 3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identification {
    /// ID type.
    pub id_type: IdType,
    /// Identification data (address bytes, FQDN, DER DN, ...), uninterpreted.
    pub data: Vec<u8>,
}

/// CERT or CERTREQ payload (RFC 7296 3.6, 3.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// Certificate encoding.
    pub encoding: CertEncoding,
    /// Certificate data / certification authority hashes.
    pub data: Vec<u8>,
}

/// AUTH payload (RFC 7296 3.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    /// Authentication method.
    pub method: AuthMethod,
    /// Authentication data (for DIGITAL_SIGNATURE, RFC 7427: length-prefixed AlgorithmIdentifier
    /// followed by the signature).
    pub data: Vec<u8>,
}

/// SK payload (RFC 7296 3.14): still encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encrypted {
    /// Type of the first payload inside (the SK payload's Next Payload field).
    pub first_payload: PayloadType,
    /// IV ‖ ciphertext ‖ ICV (checksum), opaque here.
    pub body: Vec<u8>,
}

/// SKF payload (RFC 7383 2.5): one still encrypted fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedFragment {
    /// Fragment Number, 1-based.
    pub number: u16,
    /// Total Fragments.
    pub total: u16,
    /// First inner payload type; only meaningful in fragment 1, 0 (NONE) in the others.
    pub first_payload: PayloadType,
    /// IV ‖ ciphertext ‖ ICV, opaque here.
    pub body: Vec<u8>,
}

impl Payload {
    /// The payload type this payload is encoded as.
    pub fn payload_type(&self) -> PayloadType {
        match self {
            Self::Sa(_) => PayloadType::SA,
            Self::Ke(_) => PayloadType::KE,
            Self::IdI(_) => PayloadType::IDI,
            Self::IdR(_) => PayloadType::IDR,
            Self::Cert(_) => PayloadType::CERT,
            Self::CertReq(_) => PayloadType::CERTREQ,
            Self::Auth(_) => PayloadType::AUTH,
            Self::Nonce(_) => PayloadType::NONCE,
            Self::Notify(_) => PayloadType::NOTIFY,
            Self::Delete(_) => PayloadType::DELETE,
            Self::VendorId(_) => PayloadType::VENDOR_ID,
            Self::TsI(_) => PayloadType::TSI,
            Self::TsR(_) => PayloadType::TSR,
            Self::Sk(_) => PayloadType::SK,
            Self::Cp(_) => PayloadType::CP,
            Self::Eap(_) => PayloadType::EAP,
            Self::Skf(_) => PayloadType::SKF,
            Self::Unknown(u) => u.payload_type,
        }
    }

    /// True for payload types whose body this crate decodes (everything but [`Payload::Unknown`]).
    pub fn is_known_type(payload_type: PayloadType) -> bool {
        matches!(payload_type.0, 33..=48 | 53)
    }

    /// Critical bit sent in the generic header (set only for unknown payloads that had it set).
    pub(crate) fn critical(&self) -> bool {
        matches!(self, Self::Unknown(u) if u.critical)
    }

    /// Next Payload value an SK / SKF payload carries instead of the following payload's type.
    pub(crate) fn inner_first_payload(&self) -> Option<PayloadType> {
        match self {
            Self::Sk(e) => Some(e.first_payload),
            Self::Skf(f) => Some(f.first_payload),
            _ => None,
        }
    }

    /// Appends the payload body (everything after the generic header).
    pub(crate) fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            Self::Sa(sa) => encode_sa(sa, out)?,
            Self::Ke(ke) => {
                out.extend_from_slice(&ke.group.0.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&ke.data);
            }
            Self::IdI(id) | Self::IdR(id) => {
                out.extend_from_slice(&[id.id_type.0, 0, 0, 0]);
                out.extend_from_slice(&id.data);
            }
            Self::Cert(c) | Self::CertReq(c) => {
                out.push(c.encoding.0);
                out.extend_from_slice(&c.data);
            }
            Self::Auth(a) => {
                out.extend_from_slice(&[a.method.0, 0, 0, 0]);
                out.extend_from_slice(&a.data);
            }
            Self::Nonce(data) | Self::VendorId(data) | Self::Eap(data) => {
                out.extend_from_slice(data)
            }
            Self::Notify(n) => encode_notify(n, out)?,
            Self::Delete(d) => encode_delete(d, out)?,
            Self::TsI(ts) | Self::TsR(ts) => encode_ts(ts, out)?,
            Self::Sk(e) => out.extend_from_slice(&e.body),
            Self::Cp(cp) => encode_cp(cp, out)?,
            Self::Skf(f) => {
                out.extend_from_slice(&f.number.to_be_bytes());
                out.extend_from_slice(&f.total.to_be_bytes());
                out.extend_from_slice(&f.body);
            }
            Self::Unknown(u) => out.extend_from_slice(&u.body),
        }
        Ok(())
    }

    /// Decodes a payload body. `offset` is where the generic header starts (for errors);
    /// `next_payload` is the generic header's Next Payload field (needed for SK / SKF).
    pub(crate) fn decode_body(
        payload_type: PayloadType,
        next_payload: PayloadType,
        critical: bool,
        body: &[u8],
        offset: usize,
    ) -> Result<Self, DecodeError> {
        let body_offset = offset + 4;
        let err = |at: usize, defect: Defect| DecodeError::Malformed {
            payload_type,
            offset: body_offset + at,
            defect,
        };
        let too_short = || DecodeError::Malformed {
            payload_type,
            offset,
            defect: Defect::BodyTooShort,
        };
        let fixed4 = |body: &[u8]| -> Result<([u8; 4], Vec<u8>), DecodeError> {
            match body.split_first_chunk::<4>() {
                Some((head, rest)) => Ok((*head, rest.to_vec())),
                None => Err(too_short()),
            }
        };
        Ok(match payload_type {
            PayloadType::SA => Self::Sa(decode_sa(body, &err)?),
            PayloadType::KE => {
                let ([g0, g1, _, _], data) = fixed4(body)?;
                Self::Ke(KeyExchange {
                    group: DhGroup(u16::from_be_bytes([g0, g1])),
                    data,
                })
            }
            PayloadType::IDI | PayloadType::IDR => {
                let ([t, ..], data) = fixed4(body)?;
                let id = Identification {
                    id_type: IdType(t),
                    data,
                };
                if payload_type == PayloadType::IDI {
                    Self::IdI(id)
                } else {
                    Self::IdR(id)
                }
            }
            PayloadType::CERT | PayloadType::CERTREQ => {
                let Some((&enc, data)) = body.split_first() else {
                    return Err(too_short());
                };
                let c = Certificate {
                    encoding: CertEncoding(enc),
                    data: data.to_vec(),
                };
                if payload_type == PayloadType::CERT {
                    Self::Cert(c)
                } else {
                    Self::CertReq(c)
                }
            }
            PayloadType::AUTH => {
                let ([m, ..], data) = fixed4(body)?;
                Self::Auth(Authentication {
                    method: AuthMethod(m),
                    data,
                })
            }
            PayloadType::NONCE => Self::Nonce(body.to_vec()),
            PayloadType::NOTIFY => Self::Notify(decode_notify(fixed4(body)?, &err)?),
            PayloadType::DELETE => Self::Delete(decode_delete(fixed4(body)?, &err)?),
            PayloadType::VENDOR_ID => Self::VendorId(body.to_vec()),
            PayloadType::TSI | PayloadType::TSR => {
                let ts = decode_ts(body, &err, too_short)?;
                if payload_type == PayloadType::TSI {
                    Self::TsI(ts)
                } else {
                    Self::TsR(ts)
                }
            }
            PayloadType::SK => Self::Sk(Encrypted {
                first_payload: next_payload,
                body: body.to_vec(),
            }),
            PayloadType::CP => {
                let ([t, ..], _) = fixed4(body)?;
                let attributes = decode_cp_attributes(body.get(4..).unwrap_or_default(), &err)?;
                Self::Cp(Configuration {
                    cfg_type: CfgType(t),
                    attributes,
                })
            }
            PayloadType::EAP => Self::Eap(body.to_vec()),
            PayloadType::SKF => {
                let ([n0, n1, t0, t1], rest) = fixed4(body)?;
                Self::Skf(EncryptedFragment {
                    number: u16::from_be_bytes([n0, n1]),
                    total: u16::from_be_bytes([t0, t1]),
                    first_payload: next_payload,
                    body: rest,
                })
            }
            other => Self::Unknown(UnknownPayload {
                payload_type: other,
                critical,
                body: body.to_vec(),
            }),
        })
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([*s.first()?, *s.get(1)?]))
}

/// Writes a 16-bit big-endian length at `at`, failing if it does not fit.
fn patch_u16(
    out: &mut [u8],
    at: usize,
    what: &'static str,
    value: usize,
) -> Result<(), EncodeError> {
    check_len(what, value, u16::MAX.into())?;
    if let Some(slot) = out.get_mut(at..at + 2) {
        slot.copy_from_slice(&(value as u16).to_be_bytes());
    }
    Ok(())
}
