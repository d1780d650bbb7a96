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
