//! Inner-packet addresses and the route table that maps an inner destination to an SA.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::IpNet;

use crate::shards::ShardedMap;

/// Destination address of an inner IPv4/IPv6 packet; `None` if it is neither or too short.
pub fn inner_destination(packet: &[u8]) -> Option<IpAddr> {
    inner_address(packet, 16, 24)
}

/// Source address of an inner IPv4/IPv6 packet; `None` if it is neither or too short.
pub fn inner_source(packet: &[u8]) -> Option<IpAddr> {
    inner_address(packet, 12, 8)
}

fn inner_address(packet: &[u8], v4_offset: usize, v6_offset: usize) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 if packet.len() >= 20 => {
            let b: [u8; 4] = packet.get(v4_offset..v4_offset + 4)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        }
        6 if packet.len() >= 40 => {
            let b: [u8; 16] = packet.get(v6_offset..v6_offset + 16)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// Longest-prefix match from inner address to a value (an SA). Host routes (/32, /128) sit in a
/// hash map, because a gateway has one per client; the few shorter prefixes are a list sorted
/// longest first. For equal prefixes the later insert wins. A copy is cheap and a change to it
/// copies a small part (the data plane changes a copy of the workers' snapshot per SA).
#[derive(Debug)]
pub struct RouteTable<T> {
    hosts: ShardedMap<IpAddr, T>,
    prefixes: Arc<Vec<(IpNet, T)>>,
}

// Not derived: a copy shares the entries, so `T` need not be `Clone` for it.
impl<T> Clone for RouteTable<T> {
    fn clone(&self) -> Self {
        Self {
            hosts: self.hosts.clone(),
            prefixes: Arc::clone(&self.prefixes),
        }
    }
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        Self {
            hosts: ShardedMap::default(),
            prefixes: Arc::new(Vec::new()),
        }
    }
}

impl<T: Clone> RouteTable<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes `net` to `value`, replacing an equal prefix.
    pub fn insert(&mut self, net: IpNet, value: T) {
        let net = net.trunc();
        if net.prefix_len() == net.max_prefix_len() {
            self.hosts.insert(net.addr(), value);
            return;
        }
        let prefixes = Arc::make_mut(&mut self.prefixes);
        if let Some(slot) = prefixes.iter_mut().find(|(n, _)| *n == net) {
            slot.1 = value;
            return;
        }
        // Longest first, so the first match is the longest; stable for equal lengths.
        let at = prefixes
            .iter()
            .position(|(n, _)| n.prefix_len() < net.prefix_len())
            .unwrap_or(prefixes.len());
        prefixes.insert(at, (net, value));
    }

    /// Removes the route for `net` (equal once truncated); returns its value.
    pub fn remove(&mut self, net: IpNet) -> Option<T> {
        let net = net.trunc();
        if net.prefix_len() == net.max_prefix_len() {
            return self.hosts.remove(&net.addr());
        }
        let at = self.prefixes.iter().position(|(n, _)| *n == net)?;
        Some(Arc::make_mut(&mut self.prefixes).remove(at).1)
    }

    /// The value of the longest prefix that contains `addr`.
    pub fn lookup(&self, addr: IpAddr) -> Option<&T> {
        if let Some(v) = self.hosts.get(&addr) {
            return Some(v);
        }
        self.prefixes
            .iter()
            .find(|(n, _)| n.contains(&addr))
            .map(|(_, v)| v)
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.hosts.len() + self.prefixes.len()
    }

    /// Whether there are no routes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every route and its value (hosts in no particular order, then prefixes longest first).
    pub fn iter(&self) -> impl Iterator<Item = (IpNet, &T)> {
        self.hosts
            .iter()
            .map(|(a, v)| (IpNet::from(*a), v))
            .chain(self.prefixes.iter().map(|(n, v)| (*n, v)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins_and_hosts_first() {
        let mut t = RouteTable::new();
        t.insert(net("0.0.0.0/0"), "default");
        t.insert(net("10.1.0.0/16"), "vnet");
        t.insert(net("10.1.2.0/24"), "sub");
        t.insert(net("172.16.201.7/32"), "client7");
        t.insert(net("::/0"), "v6default");
        t.insert(net("fd00::5/128"), "v6host");
        assert_eq!(t.lookup(ip("10.1.2.3")), Some(&"sub"));
        assert_eq!(t.lookup(ip("10.1.3.3")), Some(&"vnet"));
        assert_eq!(t.lookup(ip("8.8.8.8")), Some(&"default"));
        assert_eq!(t.lookup(ip("172.16.201.7")), Some(&"client7"));
        assert_eq!(t.lookup(ip("fd00::5")), Some(&"v6host"));
        assert_eq!(t.lookup(ip("fd00::6")), Some(&"v6default"));
        assert_eq!(t.len(), 6);
    }

    #[test]
    fn later_insert_replaces_equal_prefix_and_host() {
        let mut t = RouteTable::new();
        t.insert(net("10.1.0.0/16"), 1);
        t.insert(net("10.1.9.9/16"), 2); // same prefix once truncated
        t.insert(net("172.16.201.1/32"), 3);
        t.insert(net("172.16.201.1/32"), 4);
        assert_eq!(t.lookup(ip("10.1.0.10")), Some(&2));
        assert_eq!(t.lookup(ip("172.16.201.1")), Some(&4));
        assert_eq!(t.lookup(ip("172.16.201.2")), None);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn removal_of_a_copy_leaves_the_original() {
        let mut t = RouteTable::new();
        t.insert(net("10.1.0.0/16"), 1);
        t.insert(net("172.16.201.1/32"), 2);
        let mut copy = t.clone();
        assert_eq!(copy.remove(net("10.1.5.5/16")), Some(1));
        assert_eq!(copy.remove(net("172.16.201.1/32")), Some(2));
        assert_eq!(copy.remove(net("172.16.201.1/32")), None);
        assert!(copy.is_empty());
        assert_eq!(t.lookup(ip("10.1.0.10")), Some(&1));
        assert_eq!(t.lookup(ip("172.16.201.1")), Some(&2));
        assert_eq!(t.iter().count(), 2);
    }

    #[test]
    fn inner_addresses() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[12..16].copy_from_slice(&[172, 16, 201, 1]);
        v4[16..20].copy_from_slice(&[10, 1, 0, 10]);
        assert_eq!(inner_source(&v4), Some(ip("172.16.201.1")));
        assert_eq!(inner_destination(&v4), Some(ip("10.1.0.10")));
        assert_eq!(inner_destination(&v4[..19]), None);
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[23] = 1;
        v6[8] = 0xfd;
        v6[39] = 2;
        v6[24] = 0xfd;
        assert_eq!(inner_source(&v6), Some(ip("fd00::1")));
        assert_eq!(inner_destination(&v6), Some(ip("fd00::2")));
        assert_eq!(inner_source(&v6[..39]), None);
        assert_eq!(inner_source(&[]), None);
        assert_eq!(inner_source(&[0x50; 60]), None);
    }

    proptest! {
        #[test]
        fn parsing_never_panics(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = inner_source(&data);
            let _ = inner_destination(&data);
        }

        /// The table agrees with a brute-force longest-prefix search.
        #[test]
        fn lookup_matches_brute_force(
            routes in proptest::collection::vec((any::<u32>(), 0u8..=32), 0..20),
            probes in proptest::collection::vec(any::<u32>(), 1..20),
        ) {
            let mut t = RouteTable::new();
            let mut list: Vec<(IpNet, usize)> = Vec::new();
            for (i, (a, len)) in routes.iter().enumerate() {
                let n = IpNet::new(IpAddr::V4(Ipv4Addr::from(*a)), *len).unwrap().trunc();
                t.insert(n, i);
                list.retain(|(m, _)| *m != n);
                list.push((n, i));
            }
            for p in probes {
                let addr = IpAddr::V4(Ipv4Addr::from(p));
                let want = list
                    .iter()
                    .filter(|(n, _)| n.contains(&addr))
                    .max_by_key(|(n, _)| n.prefix_len())
                    .map(|(_, v)| *v);
                prop_assert_eq!(t.lookup(addr).copied(), want);
            }
        }
    }
}
