//! Installed Child SAs and the immutable lookup snapshot the workers read.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use esp::{InboundCounters, InboundSa, OutboundCounters, OutboundSa};
use ipnet::IpNet;

use crate::routes::RouteTable;

/// Identifier the IKE side gives a Child SA (unique among installed SAs).
pub type SaId = u64;

/// A Child SA to install: both ESP halves (keys already expanded by `esp`), where to send, and
/// which inner addresses it carries.
#[derive(Debug)]
pub struct ChildSa {
    /// The caller's identifier, used in events and for removal.
    pub id: SaId,
    /// Our receiving half (its SPI is the one we chose).
    pub inbound: InboundSa,
    /// Our sending half (the peer's SPI).
    pub outbound: OutboundSa,
    /// The peer's current UDP address (as seen from here, i.e. after NAT).
    pub peer: SocketAddr,
    /// Our address to send from (the local address of the IKE SA); `None` lets the kernel pick.
    pub local: Option<IpAddr>,
    /// The remote traffic selectors: inner destinations routed into this SA, and the only inner
    /// source addresses accepted from it (anti-spoofing). On a gateway the client's virtual IP
    /// as a /32 (or /128); on a client the pushed prefixes.
    pub routes: Vec<IpNet>,
    /// Send NAT keepalives to the peer (we are behind a NAT, RFC 3948 section 2.3).
    pub nat_keepalive: bool,
}

/// Counters of one installed SA.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SaCounters {
    /// The outbound half's counters (from `esp`).
    pub outbound: OutboundCounters,
    /// The inbound half's counters (from `esp`); drops by reason.
    pub inbound: InboundCounters,
    /// Decapsulated packets dropped because the inner source is not in the SA's routes.
    pub spoofed: u64,
}

/// Where to send this SA's packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerPath {
    pub(crate) peer: SocketAddr,
    pub(crate) local: Option<IpAddr>,
}

/// One installed SA as the workers see it. The ESP halves sit behind their own mutexes: the
/// outbound sequence number must be unique, and the replay window must move under one owner.
#[derive(Debug)]
pub(crate) struct SaState {
    pub(crate) id: SaId,
    pub(crate) inbound_spi: u32,
    pub(crate) outbound: Mutex<OutboundSa>,
    pub(crate) inbound: Mutex<InboundSa>,
    pub(crate) path: Mutex<PeerPath>,
    /// Last source address reported in a `PeerAddressChanged` event, to report each once.
    pub(crate) reported_source: Mutex<Option<SocketAddr>>,
    pub(crate) routes: Vec<IpNet>,
    pub(crate) nat_keepalive: bool,
    pub(crate) spoofed: AtomicU64,
}

/// Locks a mutex, ignoring poisoning: a panicking worker cannot leave an SA half-updated in a
/// way that matters more than stopping the data plane would.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SaState {
    pub(crate) fn new(sa: ChildSa) -> Self {
        Self {
            id: sa.id,
            inbound_spi: sa.inbound.spi(),
            outbound: Mutex::new(sa.outbound),
            inbound: Mutex::new(sa.inbound),
            path: Mutex::new(PeerPath {
                peer: sa.peer,
                local: sa.local,
            }),
            reported_source: Mutex::new(None),
            routes: sa.routes,
            nat_keepalive: sa.nat_keepalive,
            spoofed: AtomicU64::new(0),
        }
    }

    pub(crate) fn path(&self) -> PeerPath {
        *lock(&self.path)
    }

    pub(crate) fn counters(&self) -> SaCounters {
        SaCounters {
            outbound: *lock(&self.outbound).counters(),
            inbound: *lock(&self.inbound).counters(),
            spoofed: self.spoofed.load(Ordering::Relaxed),
        }
    }
}

/// Immutable lookup structures, rebuilt on every install/remove and swapped in whole.
#[derive(Debug, Default)]
pub(crate) struct Tables {
    /// Inner destination -> SA (the most recently installed SA wins for equal routes).
    pub(crate) routes: RouteTable<Arc<SaState>>,
    /// Our SPI -> SA; during a rekey both the old and the new inbound SPI are here.
    pub(crate) by_spi: HashMap<u32, Arc<SaState>>,
    /// All SAs in install order.
    pub(crate) all: Vec<Arc<SaState>>,
}

impl Tables {
    /// Builds the snapshot from the SAs in install order.
    pub(crate) fn build(sas: &[Arc<SaState>]) -> Self {
        let mut t = Tables::default();
        for sa in sas {
            for net in &sa.routes {
                t.routes.insert(*net, Arc::clone(sa));
            }
            t.by_spi.insert(sa.inbound_spi, Arc::clone(sa));
            t.all.push(Arc::clone(sa));
        }
        t
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use esp::{AesKeyLen, DirectionKeys, Transform};

    fn child(id: SaId, in_spi: u32, routes: &[&str]) -> ChildSa {
        let keys =
            DirectionKeys::from_keymat(Transform::AesGcm16(AesKeyLen::Aes256), &[1; 36]).unwrap();
        ChildSa {
            id,
            inbound: InboundSa::new(in_spi, &keys).unwrap(),
            outbound: OutboundSa::new(in_spi + 1000, &keys).unwrap(),
            peer: "198.51.100.2:4500".parse().unwrap(),
            local: None,
            routes: routes.iter().map(|r| r.parse().unwrap()).collect(),
            nat_keepalive: false,
        }
    }

    #[test]
    fn newest_sa_takes_the_routes_and_both_spis_stay_inbound() {
        let old = Arc::new(SaState::new(child(1, 0x100, &["10.1.0.0/16"])));
        let new = Arc::new(SaState::new(child(2, 0x200, &["10.1.0.0/16"])));
        let t = Tables::build(&[Arc::clone(&old), Arc::clone(&new)]);
        let dst = "10.1.0.10".parse().unwrap();
        assert_eq!(t.routes.lookup(dst).unwrap().id, 2);
        assert_eq!(t.by_spi[&0x100].id, 1);
        assert_eq!(t.by_spi[&0x200].id, 2);
        // The old one removed: only the new remains.
        let t = Tables::build(&[new]);
        assert_eq!(t.routes.lookup(dst).unwrap().id, 2);
        assert!(!t.by_spi.contains_key(&0x100));
        // The new one removed instead: routes fall back to the old SA.
        let t = Tables::build(&[old]);
        assert_eq!(t.routes.lookup(dst).unwrap().id, 1);
    }
}
