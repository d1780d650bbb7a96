//! Installed Child SAs and the immutable lookup snapshot the workers read.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use esp::{InboundCounters, InboundSa, OutboundCounters, OutboundSa};
use ipnet::IpNet;

use crate::handle::DatapathError;
use crate::routes::RouteTable;
use crate::selector::Selectors;

/// Identifier the IKE side gives a Child SA (unique among installed SAs).
pub type EspSaId = u64;

/// A Child SA to install: both ESP halves (keys already expanded by `esp`), where to send, and
/// which inner addresses it carries.
#[derive(Debug)]
pub struct EspSa {
    /// The caller's identifier, used in events and for removal.
    pub id: EspSaId,
    /// Our receiving half (its SPI is the one we chose).
    pub inbound: InboundSa,
    /// Our sending half (the peer's SPI).
    pub outbound: OutboundSa,
    /// The peer's current UDP address (as seen from here, i.e. after NAT).
    pub peer: SocketAddr,
    /// Our address to send from (the local address of the IKE SA); `None` lets the kernel pick.
    pub local: Option<IpAddr>,
    /// Inner destinations routed into this SA: on a gateway the client's virtual IP as a /32
    /// (or /128); on a client the prefixes of the remote traffic selectors.
    pub routes: Vec<IpNet>,
    /// The negotiated traffic selectors, enforced on every packet both ways.
    pub selectors: Selectors,
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
    /// Decapsulated packets dropped: inner source outside the peer's selectors (spoofed).
    pub spoofed: u64,
    /// Decapsulated packets dropped: inner destination outside our selectors.
    pub inbound_destination_refused: u64,
    /// Packets routed to the SA but outside its selectors, not sent.
    pub outbound_refused: u64,
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
pub(crate) struct SaSlot {
    pub(crate) id: EspSaId,
    pub(crate) inbound_spi: u32,
    pub(crate) outbound: Mutex<OutboundSa>,
    pub(crate) inbound: Mutex<InboundSa>,
    pub(crate) path: Mutex<PeerPath>,
    /// Last source address reported in a `PeerAddressChanged` event, to report each once.
    pub(crate) reported_source: Mutex<Option<SocketAddr>>,
    pub(crate) routes: Vec<IpNet>,
    pub(crate) selectors: Selectors,
    pub(crate) nat_keepalive: bool,
    pub(crate) spoofed: AtomicU64,
    pub(crate) inbound_destination_refused: AtomicU64,
    pub(crate) outbound_refused: AtomicU64,
    /// The SA this one replaces (a rekey): it starts sending when that one stops.
    pub(crate) replaces: Option<EspSaId>,
    /// When this SA took over sending (a rank from [`Registry`]; later ranks win equal routes);
    /// 0 while it only receives. Changed only with the registry locked.
    send_rank: AtomicU64,
}

/// Locks a mutex, ignoring poisoning: a panicking worker cannot leave an SA half-updated in a
/// way that matters more than stopping the data plane would.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SaSlot {
    pub(crate) fn new(sa: EspSa, replaces: Option<EspSaId>) -> Self {
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
            selectors: sa.selectors,
            nat_keepalive: sa.nat_keepalive,
            spoofed: AtomicU64::new(0),
            inbound_destination_refused: AtomicU64::new(0),
            outbound_refused: AtomicU64::new(0),
            replaces,
            send_rank: AtomicU64::new(0),
        }
    }

    /// Whether outbound packets may be routed to this SA.
    pub(crate) fn sends(&self) -> bool {
        self.send_rank() != 0
    }

    fn send_rank(&self) -> u64 {
        self.send_rank.load(Ordering::Acquire)
    }

    pub(crate) fn path(&self) -> PeerPath {
        *lock(&self.path)
    }

    pub(crate) fn counters(&self) -> SaCounters {
        SaCounters {
            outbound: *lock(&self.outbound).counters(),
            inbound: *lock(&self.inbound).counters(),
            spoofed: self.spoofed.load(Ordering::Relaxed),
            inbound_destination_refused: self.inbound_destination_refused.load(Ordering::Relaxed),
            outbound_refused: self.outbound_refused.load(Ordering::Relaxed),
        }
    }
}

/// The installed SAs in install order (the source of truth the [`Tables`] are built from), and
/// which of them send. An SA sends from installation, or, when it replaces another one (the
/// responder's side of a rekey, RFC 7296 2.8: the peer may not receive on it yet), from the
/// moment the replaced SA stops sending, it is activated, or its fallback time is up.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    sas: Vec<Arc<SaSlot>>,
    last_rank: u64,
}

impl Registry {
    pub(crate) fn sas(&self) -> &[Arc<SaSlot>] {
        &self.sas
    }

    pub(crate) fn find(&self, id: EspSaId) -> Option<&Arc<SaSlot>> {
        self.sas.iter().find(|s| s.id == id)
    }

    /// Adds an SA. It sends at once unless it replaces an installed SA.
    pub(crate) fn insert(
        &mut self,
        sa: EspSa,
        replaces: Option<EspSaId>,
    ) -> Result<Arc<SaSlot>, DatapathError> {
        if self.find(sa.id).is_some() {
            return Err(DatapathError::DuplicateSa(sa.id));
        }
        let spi = sa.inbound.spi();
        if self.sas.iter().any(|s| s.inbound_spi == spi) {
            return Err(DatapathError::SpiInUse(spi));
        }
        let replaces = replaces.filter(|old| self.find(*old).is_some());
        let state = Arc::new(SaSlot::new(sa, replaces));
        self.sas.push(Arc::clone(&state));
        if replaces.is_none() {
            self.start_sending(&state);
        }
        Ok(state)
    }

    /// Makes `sa` the newest sending SA (for equal routes it wins over the others); false if
    /// it already sent.
    pub(crate) fn start_sending(&mut self, sa: &SaSlot) -> bool {
        if sa.sends() {
            return false;
        }
        self.last_rank += 1;
        sa.send_rank.store(self.last_rank, Ordering::Release);
        true
    }

    /// `sa` stops sending (it keeps receiving); an SA waiting to replace it takes over.
    pub(crate) fn stop_sending(&mut self, sa: &SaSlot) {
        sa.send_rank.store(0, Ordering::Release);
        self.hand_over(sa.id);
    }

    /// Removes an SA; an SA waiting to replace it takes over sending.
    pub(crate) fn remove(&mut self, id: EspSaId) -> Option<Arc<SaSlot>> {
        let at = self.sas.iter().position(|s| s.id == id)?;
        let removed = self.sas.remove(at);
        self.hand_over(id);
        Some(removed)
    }

    /// Removes `sa` if it is still installed (and not another SA that reuses its id).
    pub(crate) fn remove_exact(&mut self, sa: &Arc<SaSlot>) -> bool {
        if !self.sas.iter().any(|s| Arc::ptr_eq(s, sa)) {
            return false;
        }
        self.remove(sa.id).is_some()
    }

    /// The fallback time of a replacing SA is up: it sends now, unless it is gone, already
    /// sends, or another replacement of the same SA sends (after a rekey collision the
    /// redundant SA is about to be deleted).
    pub(crate) fn fallback(&mut self, sa: &Arc<SaSlot>) -> bool {
        if !self.sas.iter().any(|s| Arc::ptr_eq(s, sa)) || self.sibling_sends(sa.replaces) {
            return false;
        }
        self.start_sending(sa)
    }

    fn sibling_sends(&self, replaces: Option<EspSaId>) -> bool {
        replaces.is_some() && self.sas.iter().any(|s| s.replaces == replaces && s.sends())
    }

    /// `old` stopped sending: the newest SA replacing it takes over, unless one already sends.
    fn hand_over(&mut self, old: EspSaId) {
        if self.sibling_sends(Some(old)) {
            return;
        }
        if let Some(next) = self
            .sas
            .iter()
            .rev()
            .find(|s| s.replaces == Some(old))
            .cloned()
        {
            self.start_sending(&next);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.sas.clear();
    }
}

/// Immutable lookup structures, rebuilt on every install/remove and swapped in whole.
#[derive(Debug, Default)]
pub(crate) struct Tables {
    /// Inner destination -> sending SA (for equal routes the one that started sending last).
    pub(crate) routes: RouteTable<Arc<SaSlot>>,
    /// Our SPI -> SA; during a rekey both the old and the new inbound SPI are here.
    pub(crate) by_spi: HashMap<u32, Arc<SaSlot>>,
    /// All SAs in install order.
    pub(crate) all: Vec<Arc<SaSlot>>,
}

impl Tables {
    /// Builds the snapshot from the registry.
    pub(crate) fn build(registry: &Registry) -> Self {
        let mut t = Tables::default();
        let mut senders: Vec<&Arc<SaSlot>> = registry.sas.iter().filter(|s| s.sends()).collect();
        senders.sort_by_key(|s| s.send_rank());
        for sa in senders {
            for net in &sa.routes {
                t.routes.insert(*net, Arc::clone(sa));
            }
        }
        for sa in &registry.sas {
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

    fn child(id: EspSaId, in_spi: u32, routes: &[&str]) -> EspSa {
        let keys =
            DirectionKeys::from_keymat(Transform::AesGcm16(AesKeyLen::Aes256), &[1; 36]).unwrap();
        EspSa {
            id,
            inbound: InboundSa::new(in_spi, &keys).unwrap(),
            outbound: OutboundSa::new(in_spi + 1000, &keys).unwrap(),
            peer: "198.51.100.2:4500".parse().unwrap(),
            local: None,
            routes: routes.iter().map(|r| r.parse().unwrap()).collect(),
            selectors: Selectors::default(),
            nat_keepalive: false,
        }
    }

    fn tables(registry: &Registry) -> Tables {
        Tables::build(registry)
    }

    fn sender(registry: &Registry, dst: &str) -> Option<EspSaId> {
        tables(registry)
            .routes
            .lookup(dst.parse().unwrap())
            .map(|s| s.id)
    }

    const VNET: &str = "10.1.0.10";

    #[test]
    fn newest_sa_takes_the_routes_and_both_spis_stay_inbound() {
        let mut r = Registry::default();
        r.insert(child(1, 0x100, &["10.1.0.0/16"]), None).unwrap();
        r.insert(child(2, 0x200, &["10.1.0.0/16"]), None).unwrap();
        let t = tables(&r);
        assert_eq!(t.routes.lookup(VNET.parse().unwrap()).unwrap().id, 2);
        assert_eq!(t.by_spi[&0x100].id, 1);
        assert_eq!(t.by_spi[&0x200].id, 2);
        // The new one removed: routes fall back to the old SA.
        assert!(r.remove(2).is_some());
        assert_eq!(sender(&r, VNET), Some(1));
        assert!(!tables(&r).by_spi.contains_key(&0x200));
        assert!(r.remove(2).is_none());
    }

    #[test]
    fn duplicate_ids_and_spis_are_refused() {
        let mut r = Registry::default();
        r.insert(child(1, 0x100, &[]), None).unwrap();
        assert!(matches!(
            r.insert(child(1, 0x300, &[]), None),
            Err(DatapathError::DuplicateSa(1))
        ));
        assert!(matches!(
            r.insert(child(2, 0x100, &[]), None),
            Err(DatapathError::SpiInUse(0x100))
        ));
    }

    /// Rekey responder: the new SA receives at once but sends only when the old one stops
    /// (the peer's Delete), which keeps receiving until it is removed.
    #[test]
    fn replacement_receives_at_once_and_sends_when_the_old_one_stops() {
        let mut r = Registry::default();
        let old = r.insert(child(1, 0x100, &["10.1.0.0/16"]), None).unwrap();
        let new = r
            .insert(child(2, 0x200, &["10.1.0.0/16"]), Some(1))
            .unwrap();
        assert!(!new.sends());
        let t = tables(&r);
        assert_eq!(t.by_spi[&0x200].id, 2, "the new SPI is accepted");
        assert_eq!(sender(&r, VNET), Some(1), "but the old SA still sends");
        r.stop_sending(&old);
        assert!(new.sends() && !old.sends());
        assert_eq!(sender(&r, VNET), Some(2));
        assert_eq!(
            tables(&r).by_spi[&0x100].id,
            1,
            "the old SA lingers inbound"
        );
        assert!(r.remove_exact(&old));
        assert!(!tables(&r).by_spi.contains_key(&0x100));
        assert_eq!(sender(&r, VNET), Some(2));
    }

    /// Rekey initiator: the peer already receives on the new SA, so it is activated at once.
    #[test]
    fn activated_replacement_sends_at_once_and_removal_of_the_old_changes_nothing() {
        let mut r = Registry::default();
        r.insert(child(1, 0x100, &["10.1.0.0/16"]), None).unwrap();
        let new = r
            .insert(child(2, 0x200, &["10.1.0.0/16"]), Some(1))
            .unwrap();
        assert!(r.start_sending(&new));
        assert!(!r.start_sending(&new), "already sending");
        assert_eq!(sender(&r, VNET), Some(2));
        r.remove(1).unwrap();
        assert_eq!(sender(&r, VNET), Some(2));
    }

    #[test]
    fn removing_the_old_sa_hands_over_and_a_missing_old_sa_means_send_now() {
        let mut r = Registry::default();
        r.insert(child(1, 0x100, &["10.1.0.0/16"]), None).unwrap();
        let new = r
            .insert(child(2, 0x200, &["10.1.0.0/16"]), Some(1))
            .unwrap();
        r.remove(1).unwrap();
        assert!(new.sends());
        assert_eq!(sender(&r, VNET), Some(2));
        // Replacing an SA that is not installed (any more): nothing would hand over.
        let third = r
            .insert(child(3, 0x300, &["10.1.0.0/16"]), Some(1))
            .unwrap();
        assert!(third.sends());
        assert_eq!(
            sender(&r, VNET),
            Some(3),
            "the later sender wins equal routes"
        );
    }

    #[test]
    fn fallback_activates_a_waiting_replacement_once() {
        let mut r = Registry::default();
        r.insert(child(1, 0x100, &["10.1.0.0/16"]), None).unwrap();
        let new = r
            .insert(child(2, 0x200, &["10.1.0.0/16"]), Some(1))
            .unwrap();
        assert!(r.fallback(&new));
        assert_eq!(sender(&r, VNET), Some(2));
        assert!(!r.fallback(&new));
        // A removed SA is not brought back.
        let gone = r
            .insert(child(3, 0x300, &["10.1.0.0/16"]), Some(2))
            .unwrap();
        r.remove(3).unwrap();
        assert!(!r.fallback(&gone));
        assert_eq!(sender(&r, VNET), Some(2));
    }

    /// RFC 7296 2.8.1 collision that we won: the peer's SA is redundant (the peer deletes it)
    /// and must not take over from ours, neither when the old SA goes nor by its fallback.
    #[test]
    fn collision_won_keeps_our_sa_sending() {
        let mut r = Registry::default();
        let old = r.insert(child(1, 0x100, &["10.1.0.0/16"]), None).unwrap();
        let peers = r
            .insert(child(2, 0x200, &["10.1.0.0/16"]), Some(1))
            .unwrap();
        let ours = r
            .insert(child(3, 0x300, &["10.1.0.0/16"]), Some(1))
            .unwrap();
        r.start_sending(&ours);
        r.stop_sending(&old);
        assert!(!peers.sends());
        assert!(!r.fallback(&peers));
        assert_eq!(sender(&r, VNET), Some(3));
        r.remove(2).unwrap();
        r.remove(1).unwrap();
        assert_eq!(sender(&r, VNET), Some(3));
    }

    /// Collision that we lost: we delete our SA, the peer deletes the old one; then the
    /// peer's SA (installed last) takes over.
    #[test]
    fn collision_lost_hands_over_to_the_peers_sa() {
        let mut r = Registry::default();
        r.insert(child(1, 0x100, &["10.1.0.0/16"]), None).unwrap();
        let ours = r
            .insert(child(2, 0x200, &["10.1.0.0/16"]), Some(1))
            .unwrap();
        let peers = r
            .insert(child(3, 0x300, &["10.1.0.0/16"]), Some(1))
            .unwrap();
        r.remove(2).unwrap();
        assert_eq!(
            sender(&r, VNET),
            Some(1),
            "the old SA sends until the peer deletes it"
        );
        r.remove(1).unwrap();
        assert!(peers.sends() && !ours.sends());
        assert_eq!(sender(&r, VNET), Some(3));
    }

    #[test]
    fn remove_exact_spares_an_sa_that_reuses_the_id() {
        let mut r = Registry::default();
        let first = r.insert(child(1, 0x100, &[]), None).unwrap();
        r.remove(1).unwrap();
        r.insert(child(1, 0x101, &[]), None).unwrap();
        assert!(!r.remove_exact(&first));
        assert!(r.find(1).is_some());
    }
}
