//! Traffic selector narrowing (RFC 7296 2.9).

use std::net::IpAddr;

use ike_wire::{TrafficSelector, TsRange};

fn proto_meet(a: u8, b: u8) -> Option<u8> {
    match (a, b) {
        (0, x) | (x, 0) => Some(x),
        (x, y) if x == y => Some(x),
        _ => None,
    }
}

fn range_meet<A: Ord + Copy>(a: &TsRange<A>, b: &TsRange<A>) -> Option<TsRange<A>> {
    let ip_protocol = proto_meet(a.ip_protocol, b.ip_protocol)?;
    let start_port = a.start_port.max(b.start_port);
    let end_port = a.end_port.min(b.end_port);
    let start = a.start.max(b.start);
    let end = a.end.min(b.end);
    (start_port <= end_port && start <= end && a.start <= a.end && b.start <= b.end).then_some(
        TsRange {
            ip_protocol,
            start_port,
            end_port,
            start,
            end,
        },
    )
}

/// The intersection of two selectors, if any (different families never meet).
pub fn intersect(a: &TrafficSelector, b: &TrafficSelector) -> Option<TrafficSelector> {
    match (a, b) {
        (TrafficSelector::Ipv4(x), TrafficSelector::Ipv4(y)) => {
            range_meet(x, y).map(TrafficSelector::Ipv4)
        }
        (TrafficSelector::Ipv6(x), TrafficSelector::Ipv6(y)) => {
            range_meet(x, y).map(TrafficSelector::Ipv6)
        }
        _ => None,
    }
}

/// Narrows the peer's `offered` selectors to `allowed`: every non-empty pairwise
/// intersection, without duplicates, in the peer's order. Empty means TS_UNACCEPTABLE.
pub fn narrow(offered: &[TrafficSelector], allowed: &[TrafficSelector]) -> Vec<TrafficSelector> {
    let mut out = Vec::new();
    for o in offered {
        for a in allowed {
            if let Some(ts) = intersect(o, a)
                && !out.contains(&ts)
            {
                out.push(ts);
            }
        }
    }
    out
}

/// A selector covering exactly one address, any protocol and port.
pub fn host(addr: IpAddr) -> TrafficSelector {
    match addr {
        IpAddr::V4(a) => TrafficSelector::Ipv4(TsRange {
            ip_protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
            start: a,
            end: a,
        }),
        IpAddr::V6(a) => TrafficSelector::Ipv6(TsRange {
            ip_protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
            start: a,
            end: a,
        }),
    }
}

/// True if `inner` is contained in one of `outer` (the responder narrowed, never widened).
pub fn is_subset(inner: &TrafficSelector, outer: &[TrafficSelector]) -> bool {
    outer
        .iter()
        .any(|o| intersect(inner, o).as_ref() == Some(inner))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn v4(a: [u8; 4], b: [u8; 4]) -> TrafficSelector {
        TrafficSelector::Ipv4(TsRange {
            ip_protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
            start: Ipv4Addr::from(a),
            end: Ipv4Addr::from(b),
        })
    }

    #[test]
    fn narrowing_intersects_ranges_protocols_and_ports() {
        let any = TrafficSelector::ANY_V4;
        let lan = v4([10, 1, 0, 0], [10, 1, 255, 255]);
        assert_eq!(
            narrow(std::slice::from_ref(&any), std::slice::from_ref(&lan)),
            vec![lan.clone()]
        );
        let other = v4([192, 168, 0, 0], [192, 168, 0, 255]);
        assert!(narrow(&[other], std::slice::from_ref(&lan)).is_empty());
        assert!(narrow(&[TrafficSelector::ANY_V6], std::slice::from_ref(&lan)).is_empty());
        let tcp443 = TrafficSelector::Ipv4(TsRange {
            ip_protocol: 6,
            start_port: 443,
            end_port: 443,
            start: Ipv4Addr::UNSPECIFIED,
            end: Ipv4Addr::BROADCAST,
        });
        let got = narrow(&[tcp443], std::slice::from_ref(&lan));
        assert_eq!(
            got,
            vec![TrafficSelector::Ipv4(TsRange {
                ip_protocol: 6,
                start_port: 443,
                end_port: 443,
                start: Ipv4Addr::new(10, 1, 0, 0),
                end: Ipv4Addr::new(10, 1, 255, 255),
            })]
        );
        assert!(is_subset(&got[0], std::slice::from_ref(&any)));
        assert!(!is_subset(&any, &[lan]));
        let h = host("172.16.201.5".parse().unwrap());
        assert_eq!(narrow(&[any], std::slice::from_ref(&h)), vec![h]);
    }
}
