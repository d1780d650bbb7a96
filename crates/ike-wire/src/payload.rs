//! Payload types (RFC 7296 section 3, RFC 7383 2.5) and their body encoding.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::error::{DecodeError, Defect, EncodeError, check_len};
use crate::registry::{
    AuthMethod, CertEncoding, CfgAttributeType, CfgType, DhGroup, EncrId, EsnId, IdType, IntegId,
    NotifyType, PayloadType, PrfId, ProtocolId, TransformAttributeType, TransformType, TsType,
};

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

/// SA payload: a list of proposals (RFC 7296 3.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecurityAssociation {
    /// Proposals in order.
    pub proposals: Vec<Proposal>,
}

/// One proposal substructure (RFC 7296 3.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// Proposal Num (1 for the first proposal, then increasing).
    pub number: u8,
    /// Protocol ID (IKE, AH, ESP).
    pub protocol: ProtocolId,
    /// Sending entity's SPI (empty for the initial IKE SA negotiation, 8 bytes for IKE rekey, 4 for
    /// ESP/AH).
    pub spi: Vec<u8>,
    /// Transforms in order.
    pub transforms: Vec<Transform>,
}

/// Transform type together with its ID, typed per transform type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransformId {
    /// Type 1.
    Encr(EncrId),
    /// Type 2.
    Prf(PrfId),
    /// Type 3.
    Integ(IntegId),
    /// Type 4.
    Ke(DhGroup),
    /// Type 5.
    Esn(EsnId),
    /// Any other transform type (never 1..=5) with its raw ID.
    Other(TransformType, u16),
}

impl TransformId {
    /// Builds from wire values.
    pub fn from_raw(transform_type: TransformType, id: u16) -> Self {
        match transform_type {
            TransformType::ENCR => Self::Encr(EncrId(id)),
            TransformType::PRF => Self::Prf(PrfId(id)),
            TransformType::INTEG => Self::Integ(IntegId(id)),
            TransformType::KE => Self::Ke(DhGroup(id)),
            TransformType::ESN => Self::Esn(EsnId(id)),
            other => Self::Other(other, id),
        }
    }

    /// Wire values (transform type, transform ID).
    pub fn to_raw(self) -> (TransformType, u16) {
        match self {
            Self::Encr(v) => (TransformType::ENCR, v.0),
            Self::Prf(v) => (TransformType::PRF, v.0),
            Self::Integ(v) => (TransformType::INTEG, v.0),
            Self::Ke(v) => (TransformType::KE, v.0),
            Self::Esn(v) => (TransformType::ESN, v.0),
            Self::Other(t, v) => (t, v),
        }
    }

    /// The transform type.
    pub fn transform_type(self) -> TransformType {
        self.to_raw().0
    }
}

/// One transform substructure (RFC 7296 3.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transform {
    /// Type and ID.
    pub id: TransformId,
    /// Transform attributes (in practice only Key Length).
    pub attributes: Vec<TransformAttribute>,
}

impl Transform {
    /// A transform without attributes.
    pub fn new(id: TransformId) -> Self {
        Self {
            id,
            attributes: Vec::new(),
        }
    }

    /// An ENCR transform, with a Key Length attribute when `key_bits` is given.
    pub fn encr(id: EncrId, key_bits: Option<u16>) -> Self {
        let attributes = key_bits
            .map(|bits| TransformAttribute {
                attr_type: TransformAttributeType::KEY_LENGTH,
                value: AttributeValue::Tv(bits),
            })
            .into_iter()
            .collect();
        Self {
            id: TransformId::Encr(id),
            attributes,
        }
    }

    /// The Key Length attribute (type 14, TV form), if present.
    pub fn key_length(&self) -> Option<u16> {
        self.attributes.iter().find_map(|a| match a.value {
            AttributeValue::Tv(v) if a.attr_type == TransformAttributeType::KEY_LENGTH => Some(v),
            _ => None,
        })
    }
}

/// A transform attribute (RFC 7296 3.3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformAttribute {
    /// Attribute type (15 bits; the top bit on the wire is the format bit).
    pub attr_type: TransformAttributeType,
    /// Value, TV or TLV form.
    pub value: AttributeValue,
}

/// Attribute value in Type/Value (fixed 2 bytes) or Type/Length/Value form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeValue {
    /// AF bit set: 16-bit value.
    Tv(u16),
    /// AF bit clear: variable-length value.
    Tlv(Vec<u8>),
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

/// Notify payload (RFC 7296 3.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// Protocol ID (NONE / IKE for IKE SA notifications, ESP / AH with an SPI for Child SAs).
    pub protocol: ProtocolId,
    /// SPI (empty when none).
    pub spi: Vec<u8>,
    /// Notify message type.
    pub notify_type: NotifyType,
    /// Notification data.
    pub data: Vec<u8>,
}

impl Notify {
    /// A notify about the IKE SA (protocol 0, no SPI).
    pub fn new(notify_type: NotifyType, data: Vec<u8>) -> Self {
        Self {
            protocol: ProtocolId::NONE,
            spi: Vec::new(),
            notify_type,
            data,
        }
    }

    /// UNSUPPORTED_CRITICAL_PAYLOAD carrying the offending payload type (RFC 7296 3.10.1).
    pub fn unsupported_critical_payload(payload_type: PayloadType) -> Self {
        Self::new(
            NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD,
            vec![payload_type.0],
        )
    }

    /// INVALID_KE_PAYLOAD carrying the group the responder wants (RFC 7296 3.10.1).
    pub fn invalid_ke_payload(group: DhGroup) -> Self {
        Self::new(
            NotifyType::INVALID_KE_PAYLOAD,
            group.0.to_be_bytes().to_vec(),
        )
    }

    /// The group requested by an INVALID_KE_PAYLOAD notify, if this is one with 2 bytes of data.
    pub fn requested_group(&self) -> Option<DhGroup> {
        match (self.notify_type, self.data.as_slice()) {
            (NotifyType::INVALID_KE_PAYLOAD, &[a, b]) => Some(DhGroup(u16::from_be_bytes([a, b]))),
            _ => None,
        }
    }

    /// SIGNATURE_HASH_ALGORITHMS announcing the given RFC 7427 hash algorithm IDs.
    pub fn signature_hash_algorithms(ids: &[u16]) -> Self {
        let data = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
        Self::new(NotifyType::SIGNATURE_HASH_ALGORITHMS, data)
    }

    /// The hash algorithm IDs of a SIGNATURE_HASH_ALGORITHMS notify (None if it is not one, or
    /// its data has odd length).
    pub fn hash_algorithms(&self) -> Option<Vec<u16>> {
        if self.notify_type != NotifyType::SIGNATURE_HASH_ALGORITHMS
            || !self.data.len().is_multiple_of(2)
        {
            return None;
        }
        let ids = self
            .data
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]));
        Some(ids.collect())
    }
}

/// Delete payload (RFC 7296 3.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    /// Protocol of the SAs (IKE: no SPIs, spi_size 0).
    pub protocol: ProtocolId,
    /// SPI size in bytes (0 for IKE, 4 for ESP/AH). Every entry of `spis` must have this length.
    pub spi_size: u8,
    /// SPIs to delete.
    pub spis: Vec<Vec<u8>>,
}

impl Delete {
    /// Delete the IKE SA the message is protected with.
    pub fn ike() -> Self {
        Self {
            protocol: ProtocolId::IKE,
            spi_size: 0,
            spis: Vec::new(),
        }
    }

    /// Delete ESP SAs by their (inbound) SPIs.
    pub fn esp(spis: &[u32]) -> Self {
        Self {
            protocol: ProtocolId::ESP,
            spi_size: 4,
            spis: spis.iter().map(|s| s.to_be_bytes().to_vec()).collect(),
        }
    }
}

/// An address range selector with protocol and port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TsRange<A> {
    /// IP protocol ID (0 = any).
    pub ip_protocol: u8,
    /// Start port (0 with end 65535 = any).
    pub start_port: u16,
    /// End port.
    pub end_port: u16,
    /// Starting address.
    pub start: A,
    /// Ending address.
    pub end: A,
}

/// One traffic selector (RFC 7296 3.13.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TrafficSelector {
    /// TS_IPV4_ADDR_RANGE (7).
    Ipv4(TsRange<Ipv4Addr>),
    /// TS_IPV6_ADDR_RANGE (8).
    Ipv6(TsRange<Ipv6Addr>),
    /// Any other selector type (never 7 or 8), kept verbatim.
    Other {
        /// TS type.
        ts_type: TsType,
        /// Second octet (IP protocol ID for address ranges, reserved for others).
        octet1: u8,
        /// Bytes after the 4-byte type/octet/length prefix.
        data: Vec<u8>,
    },
}

impl TrafficSelector {
    /// IPv4 selector covering all addresses, protocols and ports.
    pub const ANY_V4: Self = Self::Ipv4(TsRange {
        ip_protocol: 0,
        start_port: 0,
        end_port: u16::MAX,
        start: Ipv4Addr::UNSPECIFIED,
        end: Ipv4Addr::BROADCAST,
    });

    /// IPv6 selector covering all addresses, protocols and ports.
    pub const ANY_V6: Self = Self::Ipv6(TsRange {
        ip_protocol: 0,
        start_port: 0,
        end_port: u16::MAX,
        start: Ipv6Addr::UNSPECIFIED,
        end: Ipv6Addr::new(
            0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
        ),
    });
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

/// CP payload (RFC 7296 3.15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configuration {
    /// CFG_REQUEST / CFG_REPLY / CFG_SET / CFG_ACK.
    pub cfg_type: CfgType,
    /// Attributes in order.
    pub attributes: Vec<CfgAttribute>,
}

/// A configuration attribute (RFC 7296 3.15.1). `None` values are the zero-length form used
/// in requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CfgAttribute {
    /// INTERNAL_IP4_ADDRESS (1).
    InternalIp4Address(Option<Ipv4Addr>),
    /// INTERNAL_IP4_NETMASK (2).
    InternalIp4Netmask(Option<Ipv4Addr>),
    /// INTERNAL_IP4_DNS (3).
    InternalIp4Dns(Option<Ipv4Addr>),
    /// INTERNAL_IP6_ADDRESS (8): address and prefix length.
    InternalIp6Address(Option<(Ipv6Addr, u8)>),
    /// INTERNAL_IP6_DNS (10).
    InternalIp6Dns(Option<Ipv6Addr>),
    /// INTERNAL_IP4_SUBNET (13): address and netmask.
    InternalIp4Subnet(Option<(Ipv4Addr, Ipv4Addr)>),
    /// INTERNAL_IP6_SUBNET (15): address and prefix length.
    InternalIp6Subnet(Option<(Ipv6Addr, u8)>),
    /// Any other attribute type, kept verbatim (type is 15 bits; never one of the above).
    Other {
        /// Attribute type.
        attr_type: CfgAttributeType,
        /// Value.
        value: Vec<u8>,
    },
}

impl CfgAttribute {
    /// The attribute type.
    pub fn attr_type(&self) -> CfgAttributeType {
        match self {
            Self::InternalIp4Address(_) => CfgAttributeType::INTERNAL_IP4_ADDRESS,
            Self::InternalIp4Netmask(_) => CfgAttributeType::INTERNAL_IP4_NETMASK,
            Self::InternalIp4Dns(_) => CfgAttributeType::INTERNAL_IP4_DNS,
            Self::InternalIp6Address(_) => CfgAttributeType::INTERNAL_IP6_ADDRESS,
            Self::InternalIp6Dns(_) => CfgAttributeType::INTERNAL_IP6_DNS,
            Self::InternalIp4Subnet(_) => CfgAttributeType::INTERNAL_IP4_SUBNET,
            Self::InternalIp6Subnet(_) => CfgAttributeType::INTERNAL_IP6_SUBNET,
            Self::Other { attr_type, .. } => *attr_type,
        }
    }
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
            Self::Notify(n) => {
                check_len("notify SPI size", n.spi.len(), u8::MAX.into())?;
                out.push(n.protocol.0);
                out.push(n.spi.len() as u8);
                out.extend_from_slice(&n.notify_type.0.to_be_bytes());
                out.extend_from_slice(&n.spi);
                out.extend_from_slice(&n.data);
            }
            Self::Delete(d) => {
                check_len("delete SPI count", d.spis.len(), u16::MAX.into())?;
                out.push(d.protocol.0);
                out.push(d.spi_size);
                out.extend_from_slice(&(d.spis.len() as u16).to_be_bytes());
                for spi in &d.spis {
                    if spi.len() != usize::from(d.spi_size) {
                        return Err(EncodeError::Inconsistent {
                            what: "delete SPI length differs from spi_size",
                        });
                    }
                    out.extend_from_slice(spi);
                }
            }
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
            PayloadType::NOTIFY => {
                let ([proto, spi_size, t0, t1], rest) = fixed4(body)?;
                let spi_size = usize::from(spi_size);
                if rest.len() < spi_size {
                    return Err(err(1, Defect::NotifySpi));
                }
                let (spi, data) = rest.split_at(spi_size);
                Self::Notify(Notify {
                    protocol: ProtocolId(proto),
                    spi: spi.to_vec(),
                    notify_type: NotifyType(u16::from_be_bytes([t0, t1])),
                    data: data.to_vec(),
                })
            }
            PayloadType::DELETE => {
                let ([proto, spi_size, n0, n1], rest) = fixed4(body)?;
                let count = usize::from(u16::from_be_bytes([n0, n1]));
                let size = usize::from(spi_size);
                if (size == 0 && count != 0) || count * size != rest.len() {
                    return Err(err(2, Defect::DeleteSpis));
                }
                Self::Delete(Delete {
                    protocol: ProtocolId(proto),
                    spi_size,
                    spis: if size == 0 {
                        Vec::new()
                    } else {
                        rest.chunks_exact(size).map(<[u8]>::to_vec).collect()
                    },
                })
            }
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

const PROPOSAL_MORE: u8 = 2;
const TRANSFORM_MORE: u8 = 3;
const ATTRIBUTE_TV: u16 = 0x8000;

fn encode_sa(sa: &SecurityAssociation, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    for (pi, p) in sa.proposals.iter().enumerate() {
        let start = out.len();
        let last = pi + 1 == sa.proposals.len();
        check_len("proposal SPI size", p.spi.len(), u8::MAX.into())?;
        check_len("transform count", p.transforms.len(), u8::MAX.into())?;
        out.extend_from_slice(&[if last { 0 } else { PROPOSAL_MORE }, 0, 0, 0]);
        out.extend_from_slice(&[p.number, p.protocol.0, p.spi.len() as u8]);
        out.push(p.transforms.len() as u8);
        out.extend_from_slice(&p.spi);
        for (ti, t) in p.transforms.iter().enumerate() {
            let tstart = out.len();
            let tlast = ti + 1 == p.transforms.len();
            let (ttype, tid) = t.id.to_raw();
            out.extend_from_slice(&[if tlast { 0 } else { TRANSFORM_MORE }, 0, 0, 0]);
            out.extend_from_slice(&[ttype.0, 0]);
            out.extend_from_slice(&tid.to_be_bytes());
            for a in &t.attributes {
                let ty = a.attr_type.0 & !ATTRIBUTE_TV;
                match &a.value {
                    AttributeValue::Tv(v) => {
                        out.extend_from_slice(&(ty | ATTRIBUTE_TV).to_be_bytes());
                        out.extend_from_slice(&v.to_be_bytes());
                    }
                    AttributeValue::Tlv(v) => {
                        check_len("transform attribute length", v.len(), u16::MAX.into())?;
                        out.extend_from_slice(&ty.to_be_bytes());
                        out.extend_from_slice(&(v.len() as u16).to_be_bytes());
                        out.extend_from_slice(v);
                    }
                }
            }
            let tlen = out.len() - tstart;
            patch_u16(out, tstart + 2, "transform length", tlen)?;
        }
        let plen = out.len() - start;
        patch_u16(out, start + 2, "proposal length", plen)?;
    }
    Ok(())
}

fn decode_sa(
    body: &[u8],
    err: &impl Fn(usize, Defect) -> DecodeError,
) -> Result<SecurityAssociation, DecodeError> {
    let mut proposals = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let Some(&[last, _, l0, l1, number, protocol, spi_size, num_transforms]) =
            body.get(pos..).and_then(|b| b.first_chunk::<8>())
        else {
            return Err(err(pos, Defect::ProposalLength));
        };
        let plen = usize::from(u16::from_be_bytes([l0, l1]));
        if plen < 8 || plen > body.len() - pos {
            return Err(err(pos, Defect::ProposalLength));
        }
        let end = pos + plen;
        let is_last = end == body.len();
        if (is_last && last != 0) || (!is_last && last != PROPOSAL_MORE) {
            return Err(err(pos, Defect::ProposalLastSubstruc));
        }
        let spi_end = pos + 8 + usize::from(spi_size);
        let Some(spi) = body.get(pos + 8..spi_end).filter(|_| spi_end <= end) else {
            return Err(err(pos, Defect::ProposalSpi));
        };
        let transforms = decode_transforms(body, spi_end, end, err)?;
        if transforms.len() != usize::from(num_transforms) {
            return Err(err(pos, Defect::ProposalTransformCount));
        }
        proposals.push(Proposal {
            number,
            protocol: ProtocolId(protocol),
            spi: spi.to_vec(),
            transforms,
        });
        pos = end;
    }
    Ok(SecurityAssociation { proposals })
}

/// Transforms in `body[start..end]` (a proposal's remainder).
fn decode_transforms(
    body: &[u8],
    start: usize,
    end: usize,
    err: &impl Fn(usize, Defect) -> DecodeError,
) -> Result<Vec<Transform>, DecodeError> {
    let mut transforms = Vec::new();
    let mut pos = start;
    while pos < end {
        let Some(&[last, _, l0, l1, ttype, _, i0, i1]) =
            body.get(pos..end).and_then(|b| b.first_chunk::<8>())
        else {
            return Err(err(pos, Defect::TransformLength));
        };
        let tlen = usize::from(u16::from_be_bytes([l0, l1]));
        if tlen < 8 || tlen > end - pos {
            return Err(err(pos, Defect::TransformLength));
        }
        let tend = pos + tlen;
        let is_last = tend == end;
        if (is_last && last != 0) || (!is_last && last != TRANSFORM_MORE) {
            return Err(err(pos, Defect::TransformLastSubstruc));
        }
        let mut attributes = Vec::new();
        let mut apos = pos + 8;
        while apos < tend {
            let (Some(raw_type), Some(v)) = (be16(body, apos), be16(body, apos + 2)) else {
                return Err(err(apos, Defect::AttributeLength));
            };
            if apos + 4 > tend {
                return Err(err(apos, Defect::AttributeLength));
            }
            let attr_type = TransformAttributeType(raw_type & !ATTRIBUTE_TV);
            if raw_type & ATTRIBUTE_TV != 0 {
                attributes.push(TransformAttribute {
                    attr_type,
                    value: AttributeValue::Tv(v),
                });
                apos += 4;
            } else {
                let vend = apos + 4 + usize::from(v);
                let Some(value) = body.get(apos + 4..vend).filter(|_| vend <= tend) else {
                    return Err(err(apos, Defect::AttributeLength));
                };
                attributes.push(TransformAttribute {
                    attr_type,
                    value: AttributeValue::Tlv(value.to_vec()),
                });
                apos = vend;
            }
        }
        transforms.push(Transform {
            id: TransformId::from_raw(TransformType(ttype), u16::from_be_bytes([i0, i1])),
            attributes,
        });
        pos = tend;
    }
    Ok(transforms)
}

const TS_V4_LEN: usize = 16;
const TS_V6_LEN: usize = 40;

fn encode_ts(ts: &[TrafficSelector], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    check_len("traffic selector count", ts.len(), u8::MAX.into())?;
    out.extend_from_slice(&[ts.len() as u8, 0, 0, 0]);
    for sel in ts {
        match sel {
            TrafficSelector::Ipv4(r) => {
                out.extend_from_slice(&[TsType::TS_IPV4_ADDR_RANGE.0, r.ip_protocol]);
                out.extend_from_slice(&(TS_V4_LEN as u16).to_be_bytes());
                out.extend_from_slice(&r.start_port.to_be_bytes());
                out.extend_from_slice(&r.end_port.to_be_bytes());
                out.extend_from_slice(&r.start.octets());
                out.extend_from_slice(&r.end.octets());
            }
            TrafficSelector::Ipv6(r) => {
                out.extend_from_slice(&[TsType::TS_IPV6_ADDR_RANGE.0, r.ip_protocol]);
                out.extend_from_slice(&(TS_V6_LEN as u16).to_be_bytes());
                out.extend_from_slice(&r.start_port.to_be_bytes());
                out.extend_from_slice(&r.end_port.to_be_bytes());
                out.extend_from_slice(&r.start.octets());
                out.extend_from_slice(&r.end.octets());
            }
            TrafficSelector::Other {
                ts_type,
                octet1,
                data,
            } => {
                let start = out.len();
                out.extend_from_slice(&[ts_type.0, *octet1, 0, 0]);
                out.extend_from_slice(data);
                let len = out.len() - start;
                patch_u16(out, start + 2, "traffic selector length", len)?;
            }
        }
    }
    Ok(())
}

fn decode_ts(
    body: &[u8],
    err: &impl Fn(usize, Defect) -> DecodeError,
    too_short: impl Fn() -> DecodeError,
) -> Result<Vec<TrafficSelector>, DecodeError> {
    let Some(&[count, ..]) = body.first_chunk::<4>() else {
        return Err(too_short());
    };
    let mut selectors = Vec::with_capacity(count.into());
    let mut pos = 4;
    while pos < body.len() {
        let Some(&[ts_type, octet1, l0, l1]) = body.get(pos..).and_then(|b| b.first_chunk::<4>())
        else {
            return Err(err(pos, Defect::TrafficSelectorLength));
        };
        let ts_type = TsType(ts_type);
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        let expected = match ts_type {
            TsType::TS_IPV4_ADDR_RANGE => Some(TS_V4_LEN),
            TsType::TS_IPV6_ADDR_RANGE => Some(TS_V6_LEN),
            _ => None,
        };
        if len < 4 || len > body.len() - pos || expected.is_some_and(|e| e != len) {
            return Err(err(pos, Defect::TrafficSelectorLength));
        }
        let sel = body.get(pos..pos + len).unwrap_or_default();
        let ports = || (be16(sel, 4).unwrap_or(0), be16(sel, 6).unwrap_or(0));
        selectors.push(match ts_type {
            TsType::TS_IPV4_ADDR_RANGE => {
                let (start_port, end_port) = ports();
                let addr = |at: usize| {
                    sel.get(at..at + 4)
                        .and_then(|s| s.first_chunk::<4>())
                        .map_or(Ipv4Addr::UNSPECIFIED, |a| Ipv4Addr::from(*a))
                };
                TrafficSelector::Ipv4(TsRange {
                    ip_protocol: octet1,
                    start_port,
                    end_port,
                    start: addr(8),
                    end: addr(12),
                })
            }
            TsType::TS_IPV6_ADDR_RANGE => {
                let (start_port, end_port) = ports();
                let addr = |at: usize| {
                    sel.get(at..at + 16)
                        .and_then(|s| s.first_chunk::<16>())
                        .map_or(Ipv6Addr::UNSPECIFIED, |a| Ipv6Addr::from(*a))
                };
                TrafficSelector::Ipv6(TsRange {
                    ip_protocol: octet1,
                    start_port,
                    end_port,
                    start: addr(8),
                    end: addr(24),
                })
            }
            _ => TrafficSelector::Other {
                ts_type,
                octet1,
                data: sel.get(4..).unwrap_or_default().to_vec(),
            },
        });
        pos += len;
    }
    if selectors.len() != usize::from(count) {
        return Err(err(0, Defect::TrafficSelectorCount));
    }
    Ok(selectors)
}

fn encode_cp(cp: &Configuration, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    out.extend_from_slice(&[cp.cfg_type.0, 0, 0, 0]);
    for attr in &cp.attributes {
        let mut value = Vec::new();
        match attr {
            CfgAttribute::InternalIp4Address(a)
            | CfgAttribute::InternalIp4Netmask(a)
            | CfgAttribute::InternalIp4Dns(a) => {
                if let Some(a) = a {
                    value.extend_from_slice(&a.octets());
                }
            }
            CfgAttribute::InternalIp6Dns(a) => {
                if let Some(a) = a {
                    value.extend_from_slice(&a.octets());
                }
            }
            CfgAttribute::InternalIp6Address(a) | CfgAttribute::InternalIp6Subnet(a) => {
                if let Some((a, prefix)) = a {
                    value.extend_from_slice(&a.octets());
                    value.push(*prefix);
                }
            }
            CfgAttribute::InternalIp4Subnet(a) => {
                if let Some((a, mask)) = a {
                    value.extend_from_slice(&a.octets());
                    value.extend_from_slice(&mask.octets());
                }
            }
            CfgAttribute::Other { value: v, .. } => value.extend_from_slice(v),
        }
        check_len(
            "configuration attribute length",
            value.len(),
            u16::MAX.into(),
        )?;
        let ty = attr.attr_type().0 & 0x7fff;
        out.extend_from_slice(&ty.to_be_bytes());
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(&value);
    }
    Ok(())
}

fn decode_cp_attributes(
    attrs: &[u8],
    err: &impl Fn(usize, Defect) -> DecodeError,
) -> Result<Vec<CfgAttribute>, DecodeError> {
    // Offsets in errors are relative to the payload body, which has 4 bytes before `attrs`.
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < attrs.len() {
        let Some(&[t0, t1, l0, l1]) = attrs.get(pos..).and_then(|b| b.first_chunk::<4>()) else {
            return Err(err(4 + pos, Defect::CfgAttributeLength));
        };
        let attr_type = CfgAttributeType(u16::from_be_bytes([t0, t1]) & 0x7fff);
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        let Some(v) = attrs.get(pos + 4..pos + 4 + len) else {
            return Err(err(4 + pos, Defect::CfgAttributeLength));
        };
        let bad = || err(4 + pos, Defect::CfgAttributeLength);
        let v4 = |v: &[u8]| -> Result<Option<Ipv4Addr>, DecodeError> {
            match v.len() {
                0 => Ok(None),
                _ => v
                    .first_chunk::<4>()
                    .filter(|_| v.len() == 4)
                    .map(|a| Some(Ipv4Addr::from(*a)))
                    .ok_or_else(bad),
            }
        };
        let v6_prefix = |v: &[u8]| -> Result<Option<(Ipv6Addr, u8)>, DecodeError> {
            match (v.len(), v.first_chunk::<16>(), v.get(16)) {
                (0, _, _) => Ok(None),
                (17, Some(a), Some(&p)) => Ok(Some((Ipv6Addr::from(*a), p))),
                _ => Err(bad()),
            }
        };
        out.push(match attr_type {
            CfgAttributeType::INTERNAL_IP4_ADDRESS => CfgAttribute::InternalIp4Address(v4(v)?),
            CfgAttributeType::INTERNAL_IP4_NETMASK => CfgAttribute::InternalIp4Netmask(v4(v)?),
            CfgAttributeType::INTERNAL_IP4_DNS => CfgAttribute::InternalIp4Dns(v4(v)?),
            CfgAttributeType::INTERNAL_IP6_ADDRESS => {
                CfgAttribute::InternalIp6Address(v6_prefix(v)?)
            }
            CfgAttributeType::INTERNAL_IP6_SUBNET => CfgAttribute::InternalIp6Subnet(v6_prefix(v)?),
            CfgAttributeType::INTERNAL_IP6_DNS => CfgAttribute::InternalIp6Dns(match v.len() {
                0 => None,
                16 => v.first_chunk::<16>().map(|a| Ipv6Addr::from(*a)),
                _ => return Err(bad()),
            }),
            CfgAttributeType::INTERNAL_IP4_SUBNET => CfgAttribute::InternalIp4Subnet(
                match (
                    v.len(),
                    v.first_chunk::<4>(),
                    v.get(4..).and_then(|m| m.first_chunk::<4>()),
                ) {
                    (0, _, _) => None,
                    (8, Some(a), Some(m)) => Some((Ipv4Addr::from(*a), Ipv4Addr::from(*m))),
                    _ => return Err(bad()),
                },
            ),
            _ => CfgAttribute::Other {
                attr_type,
                value: v.to_vec(),
            },
        });
        pos += 4 + len;
    }
    Ok(out)
}
