//! Notify and Delete payloads (RFC 7296 3.10, 3.11).

use super::*;

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

/// A gateway as REDIRECT and REDIRECTED_FROM name it (RFC 5685 section 10): an address or a
/// domain name. A name is 1 to 255 bytes of letters, digits, `-` and `.`: what the data can
/// hold, and nothing a log line or a resolver could misread.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GatewayIdentity {
    /// GW Identity Type 1.
    Ipv4(Ipv4Addr),
    /// GW Identity Type 2.
    Ipv6(Ipv6Addr),
    /// GW Identity Type 3.
    Fqdn(String),
}

const GW_IPV4: u8 = 1;
const GW_IPV6: u8 = 2;
const GW_FQDN: u8 = 3;

impl GatewayIdentity {
    /// A domain name, if it is one a REDIRECT can carry.
    pub fn fqdn(name: &str) -> Option<Self> {
        let ok = !name.is_empty()
            && name.len() <= usize::from(u8::MAX)
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        ok.then(|| Self::Fqdn(name.to_owned()))
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        let (kind, bytes): (u8, Vec<u8>) = match self {
            Self::Ipv4(a) => (GW_IPV4, a.octets().to_vec()),
            Self::Ipv6(a) => (GW_IPV6, a.octets().to_vec()),
            // Checked by `fqdn`; a longer name built by hand is cut, never a panic.
            Self::Fqdn(n) => (GW_FQDN, n.as_bytes().iter().take(255).copied().collect()),
        };
        out.push(kind);
        out.push(bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }

    /// The identity at the start of `data` and what follows it; None if malformed.
    fn decode(data: &[u8]) -> Option<(Self, &[u8])> {
        let (&[kind, len], rest) = data.split_first_chunk::<2>()?;
        let (value, rest) = rest.split_at_checked(usize::from(len))?;
        let gateway = match kind {
            GW_IPV4 => Self::Ipv4(Ipv4Addr::from(<[u8; 4]>::try_from(value).ok()?)),
            GW_IPV6 => Self::Ipv6(Ipv6Addr::from(<[u8; 16]>::try_from(value).ok()?)),
            GW_FQDN => Self::fqdn(std::str::from_utf8(value).ok()?)?,
            _ => return None,
        };
        Some((gateway, rest))
    }
}

impl From<IpAddr> for GatewayIdentity {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => Self::Ipv4(a),
            IpAddr::V6(a) => Self::Ipv6(a),
        }
    }
}

impl std::fmt::Display for GatewayIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ipv4(a) => a.fmt(f),
            Self::Ipv6(a) => a.fmt(f),
            Self::Fqdn(n) => f.write_str(n),
        }
    }
}

impl Notify {
    /// REDIRECT_SUPPORTED, in an IKE_SA_INIT request (RFC 5685 section 3).
    pub fn redirect_supported() -> Self {
        Self::new(NotifyType::REDIRECT_SUPPORTED, Vec::new())
    }

    /// REDIRECT to `gateway`: in an IKE_SA_INIT response with the initiator's nonce, in an
    /// IKE_AUTH response or INFORMATIONAL request without one (RFC 5685 sections 4-6).
    pub fn redirect(gateway: &GatewayIdentity, nonce: Option<&[u8]>) -> Self {
        let mut data = Vec::new();
        gateway.encode_into(&mut data);
        data.extend_from_slice(nonce.unwrap_or_default());
        Self::new(NotifyType::REDIRECT, data)
    }

    /// The gateway a REDIRECT names and the nonce data after it (empty when none); None if
    /// this is no REDIRECT or its data is malformed.
    pub fn redirect_target(&self) -> Option<(GatewayIdentity, &[u8])> {
        if self.notify_type != NotifyType::REDIRECT {
            return None;
        }
        GatewayIdentity::decode(&self.data)
    }

    /// REDIRECTED_FROM `gateway`, in the IKE_SA_INIT request to the gateway a REDIRECT named.
    pub fn redirected_from(gateway: &GatewayIdentity) -> Self {
        let mut data = Vec::new();
        gateway.encode_into(&mut data);
        Self::new(NotifyType::REDIRECTED_FROM, data)
    }

    /// The gateway a REDIRECTED_FROM names; None if this is none or malformed.
    pub fn redirected_from_gateway(&self) -> Option<GatewayIdentity> {
        if self.notify_type != NotifyType::REDIRECTED_FROM {
            return None;
        }
        match GatewayIdentity::decode(&self.data)? {
            (gateway, []) => Some(gateway),
            _ => None,
        }
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

pub(super) fn encode_notify(n: &Notify, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    check_len("notify SPI size", n.spi.len(), u8::MAX.into())?;
    out.push(n.protocol.0);
    out.push(n.spi.len() as u8);
    out.extend_from_slice(&n.notify_type.0.to_be_bytes());
    out.extend_from_slice(&n.spi);
    out.extend_from_slice(&n.data);
    Ok(())
}

/// A Notify body split after its 4 fixed bytes.
pub(super) fn decode_notify(
    ([proto, spi_size, t0, t1], rest): ([u8; 4], Vec<u8>),
    err: &impl Fn(usize, Defect) -> DecodeError,
) -> Result<Notify, DecodeError> {
    let spi_size = usize::from(spi_size);
    if rest.len() < spi_size {
        return Err(err(1, Defect::NotifySpi));
    }
    let (spi, data) = rest.split_at(spi_size);
    Ok(Notify {
        protocol: ProtocolId(proto),
        spi: spi.to_vec(),
        notify_type: NotifyType(u16::from_be_bytes([t0, t1])),
        data: data.to_vec(),
    })
}

pub(super) fn encode_delete(d: &Delete, out: &mut Vec<u8>) -> Result<(), EncodeError> {
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
    Ok(())
}

/// A Delete body split after its 4 fixed bytes.
pub(super) fn decode_delete(
    ([proto, spi_size, n0, n1], rest): ([u8; 4], Vec<u8>),
    err: &impl Fn(usize, Defect) -> DecodeError,
) -> Result<Delete, DecodeError> {
    let count = usize::from(u16::from_be_bytes([n0, n1]));
    let size = usize::from(spi_size);
    if (size == 0 && count != 0) || count * size != rest.len() {
        return Err(err(2, Defect::DeleteSpis));
    }
    Ok(Delete {
        protocol: ProtocolId(proto),
        spi_size,
        spis: if size == 0 {
            Vec::new()
        } else {
            rest.chunks_exact(size).map(<[u8]>::to_vec).collect()
        },
    })
}
