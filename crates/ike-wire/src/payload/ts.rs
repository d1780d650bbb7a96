//! Traffic selector payloads TSi / TSr (RFC 7296 3.13).

use super::*;

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

pub(super) const TS_V4_LEN: usize = 16;

pub(super) const TS_V6_LEN: usize = 40;

pub(super) fn encode_ts(ts: &[TrafficSelector], out: &mut Vec<u8>) -> Result<(), EncodeError> {
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

pub(super) fn decode_ts(
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
