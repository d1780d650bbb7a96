//! SA payload (RFC 7296 3.3): proposals, transforms and their attributes.

use super::*;

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

pub(super) const PROPOSAL_MORE: u8 = 2;

pub(super) const TRANSFORM_MORE: u8 = 3;

pub(super) const ATTRIBUTE_TV: u16 = 0x8000;

pub(super) fn encode_sa(sa: &SecurityAssociation, out: &mut Vec<u8>) -> Result<(), EncodeError> {
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

pub(super) fn decode_sa(
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
pub(super) fn decode_transforms(
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
