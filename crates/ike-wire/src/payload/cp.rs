//! Configuration payload CP (RFC 7296 3.15): addresses, DNS servers and the like.

use super::*;

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

pub(super) fn encode_cp(cp: &Configuration, out: &mut Vec<u8>) -> Result<(), EncodeError> {
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

pub(super) fn decode_cp_attributes(
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
