//! Traffic selectors as the data plane enforces them (RFC 4301 section 4.4.1): an inner packet
//! may use a Child SA only when its source is in one side's selectors and its destination in
//! the other's, both directions. Kernel IPsec does this for every packet; so do we.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One traffic selector: an address range, an IP protocol (0 = any) and a port range (for
/// ICMP, type and code as one 16-bit number, RFC 7296 3.13.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selector {
    pub start: IpAddr,
    pub end: IpAddr,
    pub protocol: u8,
    pub start_port: u16,
    pub end_port: u16,
}

impl Selector {
    /// Every protocol and port of the addresses `start..=end`.
    pub fn addresses(start: IpAddr, end: IpAddr) -> Self {
        Self {
            start,
            end,
            protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
        }
    }

    /// Every protocol and port of a prefix.
    pub fn prefix(net: ipnet::IpNet) -> Self {
        Self::addresses(net.network(), net.broadcast())
    }

    fn all_ports(&self) -> bool {
        self.start_port == 0 && self.end_port == u16::MAX
    }

    /// Whether `addr`, with `protocol` and `port` (None: the packet has none, or it is a
    /// non-first fragment), is covered.
    fn covers(&self, addr: IpAddr, protocol: u8, port: Option<u16>) -> bool {
        let in_range = match (self.start, self.end, addr) {
            (IpAddr::V4(s), IpAddr::V4(e), IpAddr::V4(a)) => s <= a && a <= e,
            (IpAddr::V6(s), IpAddr::V6(e), IpAddr::V6(a)) => s <= a && a <= e,
            _ => false,
        };
        in_range
            && (self.protocol == 0 || self.protocol == protocol)
            && match port {
                Some(p) => self.start_port <= p && p <= self.end_port,
                // RFC 4301 4.4.1.1: without ports only an ANY port selector can match.
                None => self.all_ports(),
            }
    }
}

/// What a Child SA carries: our side's selectors and the peer's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selectors {
    pub local: Vec<Selector>,
    pub remote: Vec<Selector>,
}

/// Why a packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not an IP packet we can read.
    Malformed,
    /// The source is outside the sender's selectors.
    Source,
    /// The destination is outside the receiver's selectors.
    Destination,
}

impl Selectors {
    /// A decapsulated packet: from the peer's side to ours.
    pub fn check_inbound(&self, packet: &[u8]) -> Result<(), Refusal> {
        check(packet, &self.remote, &self.local)
    }

    /// A packet about to be encapsulated: from our side to the peer's.
    pub fn check_outbound(&self, packet: &[u8]) -> Result<(), Refusal> {
        check(packet, &self.local, &self.remote)
    }
}

fn check(packet: &[u8], from: &[Selector], to: &[Selector]) -> Result<(), Refusal> {
    let flow = Flow::parse(packet).ok_or(Refusal::Malformed)?;
    if !from
        .iter()
        .any(|s| s.covers(flow.src, flow.protocol, flow.src_port))
    {
        return Err(Refusal::Source);
    }
    if !to
        .iter()
        .any(|s| s.covers(flow.dst, flow.protocol, flow.dst_port))
    {
        return Err(Refusal::Destination);
    }
    Ok(())
}

/// The selector-relevant fields of an IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Flow {
    pub(crate) src: IpAddr,
    pub(crate) dst: IpAddr,
    pub(crate) protocol: u8,
    pub(crate) src_port: Option<u16>,
    pub(crate) dst_port: Option<u16>,
}

const ICMP: u8 = 1;
const ICMPV6: u8 = 58;

impl Flow {
    pub(crate) fn parse(packet: &[u8]) -> Option<Flow> {
        match packet.first()? >> 4 {
            4 => Self::parse_v4(packet),
            6 => Self::parse_v6(packet),
            _ => None,
        }
    }

    fn parse_v4(p: &[u8]) -> Option<Flow> {
        let ihl = usize::from(p.first()? & 0x0f) * 4;
        if ihl < 20 || p.len() < ihl {
            return None;
        }
        let protocol = p[9];
        let src = IpAddr::V4(Ipv4Addr::new(p[12], p[13], p[14], p[15]));
        let dst = IpAddr::V4(Ipv4Addr::new(p[16], p[17], p[18], p[19]));
        let fragment_offset = u16::from_be_bytes([p[6], p[7]]) & 0x1fff;
        let (src_port, dst_port) = if fragment_offset == 0 {
            ports(protocol, p.get(ihl..)?)
        } else {
            (None, None)
        };
        Some(Flow {
            src,
            dst,
            protocol,
            src_port,
            dst_port,
        })
    }

    fn parse_v6(p: &[u8]) -> Option<Flow> {
        let src = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(p.get(8..24)?).ok()?));
        let dst = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(p.get(24..40)?).ok()?));
        let mut next = *p.get(6)?;
        let mut at = 40usize;
        let mut first_fragment = true;
        // Extension headers: hop-by-hop, routing, fragment, destination options.
        for _ in 0..8 {
            match next {
                0 | 43 | 60 => {
                    let h = p.get(at..at + 2)?;
                    next = h[0];
                    at += (usize::from(h[1]) + 1) * 8;
                }
                44 => {
                    let h = p.get(at..at + 8)?;
                    next = h[0];
                    first_fragment = u16::from_be_bytes([h[2], h[3]]) >> 3 == 0;
                    at += 8;
                }
                _ => break,
            }
        }
        let (src_port, dst_port) = if first_fragment {
            ports(next, p.get(at..)?)
        } else {
            (None, None)
        };
        Some(Flow {
            src,
            dst,
            protocol: next,
            src_port,
            dst_port,
        })
    }
}

/// Source and destination "ports" of a transport header: TCP, UDP, UDP-Lite, SCTP, DCCP ports;
/// ICMP type and code as one number for both.
fn ports(protocol: u8, l4: &[u8]) -> (Option<u16>, Option<u16>) {
    match protocol {
        6 | 17 | 33 | 132 | 136 if l4.len() >= 4 => (
            Some(u16::from_be_bytes([l4[0], l4[1]])),
            Some(u16::from_be_bytes([l4[2], l4[3]])),
        ),
        ICMP | ICMPV6 if l4.len() >= 2 => {
            let type_code = u16::from_be_bytes([l4[0], l4[1]]);
            (Some(type_code), Some(type_code))
        }
        _ => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(src: [u8; 4], dst: [u8; 4], protocol: u8, sport: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[9] = protocol;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&dport.to_be_bytes());
        p
    }

    fn net(a: [u8; 4], b: [u8; 4]) -> Selector {
        Selector::addresses(IpAddr::from(a), IpAddr::from(b))
    }

    /// The gateway's view of a client: the client is 172.16.201.10, the network 10.1/16.
    fn gateway_side() -> Selectors {
        Selectors {
            local: vec![net([10, 1, 0, 0], [10, 1, 255, 255])],
            remote: vec![net([172, 16, 201, 10], [172, 16, 201, 10])],
        }
    }

    #[test]
    fn both_ends_of_both_directions_are_checked() {
        let s = gateway_side();
        let client = [172, 16, 201, 10];
        assert_eq!(
            s.check_inbound(&v4(client, [10, 1, 0, 10], 6, 5000, 22)),
            Ok(())
        );
        // Another client's address, the gateway's public address, the internet: not in TSr.
        for dst in [[172, 16, 201, 11], [203, 0, 113, 1], [8, 8, 8, 8]] {
            assert_eq!(
                s.check_inbound(&v4(client, dst, 6, 5000, 22)),
                Err(Refusal::Destination),
                "{dst:?}"
            );
        }
        assert_eq!(
            s.check_inbound(&v4([172, 16, 201, 11], [10, 1, 0, 10], 6, 1, 2)),
            Err(Refusal::Source)
        );
        assert_eq!(
            s.check_outbound(&v4([10, 1, 0, 10], client, 17, 53, 5000)),
            Ok(())
        );
        assert_eq!(
            s.check_outbound(&v4([8, 8, 8, 8], client, 17, 53, 5000)),
            Err(Refusal::Source)
        );
        assert_eq!(s.check_inbound(&[0x45, 0, 0]), Err(Refusal::Malformed));
        assert_eq!(s.check_inbound(&[]), Err(Refusal::Malformed));
    }

    #[test]
    fn protocol_and_ports_narrow_a_selector() {
        let mut s = gateway_side();
        s.local = vec![Selector {
            protocol: 6,
            start_port: 443,
            end_port: 443,
            ..net([10, 1, 0, 10], [10, 1, 0, 10])
        }];
        let client = [172, 16, 201, 10];
        assert_eq!(
            s.check_inbound(&v4(client, [10, 1, 0, 10], 6, 40000, 443)),
            Ok(())
        );
        assert_eq!(
            s.check_inbound(&v4(client, [10, 1, 0, 10], 6, 40000, 22)),
            Err(Refusal::Destination)
        );
        assert_eq!(
            s.check_inbound(&v4(client, [10, 1, 0, 10], 17, 40000, 443)),
            Err(Refusal::Destination)
        );
        // A non-first fragment has no ports: only ANY-port selectors take it.
        let mut frag = v4(client, [10, 1, 0, 10], 6, 40000, 443);
        frag[7] = 10;
        assert_eq!(s.check_inbound(&frag), Err(Refusal::Destination));
        assert_eq!(gateway_side().check_inbound(&frag), Ok(()));
    }

    #[test]
    fn ipv6_extension_headers_are_walked_to_the_ports() {
        let client: Ipv6Addr = "2001:db8:1::10".parse().unwrap();
        let server: Ipv6Addr = "2001:db8:2::1".parse().unwrap();
        let s = Selectors {
            local: vec![Selector {
                protocol: 17,
                start_port: 53,
                end_port: 53,
                ..Selector::addresses(IpAddr::V6(server), IpAddr::V6(server))
            }],
            remote: vec![Selector::addresses(IpAddr::V6(client), IpAddr::V6(client))],
        };
        let mut p = vec![0u8; 40 + 8 + 8];
        p[0] = 0x60;
        p[6] = 60; // destination options
        p[8..24].copy_from_slice(&client.octets());
        p[24..40].copy_from_slice(&server.octets());
        p[40] = 17; // then UDP
        p[41] = 0; // 8 bytes
        p[48..50].copy_from_slice(&5353u16.to_be_bytes());
        p[50..52].copy_from_slice(&53u16.to_be_bytes());
        assert_eq!(s.check_inbound(&p), Ok(()));
        p[50..52].copy_from_slice(&54u16.to_be_bytes());
        assert_eq!(s.check_inbound(&p), Err(Refusal::Destination));
        assert_eq!(s.check_inbound(&p[..44]), Err(Refusal::Malformed));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..120)) {
            let _ = gateway_side().check_inbound(&bytes);
            let _ = gateway_side().check_outbound(&bytes);
        }
    }
}
