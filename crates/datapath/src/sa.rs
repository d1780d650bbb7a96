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
use crate::shards::ShardedMap;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// Truncated, each once.
    pub(crate) routes: Vec<IpNet>,
    pub(crate) selectors: Selectors,
    pub(crate) nat_keepalive: bool,
    pub(crate) spoofed: AtomicU64,
    pub(crate) inbound_destination_refused: AtomicU64,
    pub(crate) outbound_refused: AtomicU64,
    /// The SA this one replaces (a rekey): it starts sending when that one stops.
    pub(crate) replaces: Option<EspSaId>,
    /// Install order (a rank from [`Registry`]).
    installed: u64,
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
    fn new(sa: EspSa, replaces: Option<EspSaId>, installed: u64) -> Self {
        let mut routes: Vec<IpNet> = sa.routes.iter().map(IpNet::trunc).collect();
        routes.sort_unstable();
        routes.dedup();
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
            routes,
            selectors: sa.selectors,
            nat_keepalive: sa.nat_keepalive,
            spoofed: AtomicU64::new(0),
            inbound_destination_refused: AtomicU64::new(0),
            outbound_refused: AtomicU64::new(0),
            replaces,
            installed,
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

/// The installed SAs (the source of truth the [`Tables`] follow), which of them send, and what
/// changed since the tables last followed. An SA sends from installation, or, when it replaces
/// another one (the responder's side of a rekey, RFC 7296 2.8: the peer may not receive on it
/// yet), from the moment the replaced SA stops sending, it is activated, or its fallback time
/// is up. Every operation costs about the same with 10 or 10,000 SAs installed.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    by_id: HashMap<EspSaId, Arc<SaSlot>>,
    by_spi: HashMap<u32, Arc<SaSlot>>,
    /// Every installed SA with a route to the prefix (sending or not; rekeying makes several).
    route_holders: HashMap<IpNet, Vec<Arc<SaSlot>>>,
    /// The SAs installed to replace an SA id, oldest first.
    replacements: HashMap<EspSaId, Vec<Arc<SaSlot>>>,
    last_rank: u64,
    last_installed: u64,
    changed: Changes,
}

/// What the tables must look up again: these SPIs and these prefixes.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    spis: Vec<u32>,
    nets: Vec<IpNet>,
}

impl Changes {
    pub(crate) fn is_empty(&self) -> bool {
        self.spis.is_empty() && self.nets.is_empty()
    }
}

impl Registry {
    /// The installed SAs in no particular order.
    pub(crate) fn sas(&self) -> impl Iterator<Item = &Arc<SaSlot>> {
        self.by_id.values()
    }

    /// Ids of the installed SAs in install order.
    pub(crate) fn ids_in_install_order(&self) -> Vec<EspSaId> {
        let mut sas: Vec<&Arc<SaSlot>> = self.by_id.values().collect();
        sas.sort_by_key(|s| s.installed);
        sas.into_iter().map(|s| s.id).collect()
    }

    pub(crate) fn find(&self, id: EspSaId) -> Option<&Arc<SaSlot>> {
        self.by_id.get(&id)
    }

    fn holds(&self, sa: &Arc<SaSlot>) -> bool {
        self.by_id.get(&sa.id).is_some_and(|s| Arc::ptr_eq(s, sa))
    }

    /// Adds an SA. It sends at once unless it replaces an installed SA.
    pub(crate) fn insert(
        &mut self,
        sa: EspSa,
        replaces: Option<EspSaId>,
    ) -> Result<Arc<SaSlot>, DatapathError> {
        if self.by_id.contains_key(&sa.id) {
            return Err(DatapathError::DuplicateSa(sa.id));
        }
        let spi = sa.inbound.spi();
        if self.by_spi.contains_key(&spi) {
            return Err(DatapathError::SpiInUse(spi));
        }
        let replaces = replaces.filter(|old| self.by_id.contains_key(old));
        self.last_installed += 1;
        let state = Arc::new(SaSlot::new(sa, replaces, self.last_installed));
        self.by_id.insert(state.id, Arc::clone(&state));
        self.by_spi.insert(spi, Arc::clone(&state));
        self.changed.spis.push(spi);
        for net in &state.routes {
            self.route_holders
                .entry(*net)
                .or_default()
                .push(Arc::clone(&state));
        }
        if let Some(old) = replaces {
            self.replacements
                .entry(old)
                .or_default()
                .push(Arc::clone(&state));
        } else {
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
        self.changed.nets.extend_from_slice(&sa.routes);
        true
    }

    /// `sa` stops sending (it keeps receiving); an SA waiting to replace it takes over.
    pub(crate) fn stop_sending(&mut self, sa: &SaSlot) {
        if sa.sends() {
            sa.send_rank.store(0, Ordering::Release);
            self.changed.nets.extend_from_slice(&sa.routes);
        }
        self.hand_over(sa.id);
    }

    /// Removes an SA; an SA waiting to replace it takes over sending.
    pub(crate) fn remove(&mut self, id: EspSaId) -> Option<Arc<SaSlot>> {
        let removed = self.by_id.remove(&id)?;
        self.by_spi.remove(&removed.inbound_spi);
        self.changed.spis.push(removed.inbound_spi);
        for net in &removed.routes {
            remove_from(&mut self.route_holders, *net, &removed);
        }
        if removed.sends() {
            self.changed.nets.extend_from_slice(&removed.routes);
        }
        if let Some(old) = removed.replaces {
            remove_from(&mut self.replacements, old, &removed);
        }
        self.hand_over(id);
        Some(removed)
    }

    /// Removes `sa` if it is still installed (and not another SA that reuses its id).
    pub(crate) fn remove_exact(&mut self, sa: &Arc<SaSlot>) -> bool {
        self.holds(sa) && self.remove(sa.id).is_some()
    }

    /// The fallback time of a replacing SA is up: it sends now, unless it is gone, already
    /// sends, or another replacement of the same SA sends (after a rekey collision the
    /// redundant SA is about to be deleted).
    pub(crate) fn fallback(&mut self, sa: &Arc<SaSlot>) -> bool {
        if !self.holds(sa) || self.sibling_sends(sa.replaces) {
            return false;
        }
        self.start_sending(sa)
    }

    fn sibling_sends(&self, replaces: Option<EspSaId>) -> bool {
        replaces
            .and_then(|old| self.replacements.get(&old))
            .is_some_and(|list| list.iter().any(|s| s.sends()))
    }

    /// `old` stopped sending: the newest SA replacing it takes over, unless one already sends.
    fn hand_over(&mut self, old: EspSaId) {
        if self.sibling_sends(Some(old)) {
            return;
        }
        if let Some(next) = self
            .replacements
            .get(&old)
            .and_then(|list| list.last())
            .cloned()
        {
            self.start_sending(&next);
        }
    }

    /// The SA that gets traffic for `net`: of the sending SAs with that route, the one that
    /// started sending last.
    fn route_winner(&self, net: &IpNet) -> Option<&Arc<SaSlot>> {
        self.route_holders
            .get(net)?
            .iter()
            .filter(|s| s.sends())
            .max_by_key(|s| s.send_rank())
    }

    /// What changed since the tables last followed.
    pub(crate) fn changes(&self) -> &Changes {
        &self.changed
    }

    /// The tables followed the changes.
    pub(crate) fn forget_changes(&mut self) {
        self.changed = Changes::default();
    }

    pub(crate) fn clear(&mut self) {
        let ids: Vec<EspSaId> = self.by_id.keys().copied().collect();
        for id in ids {
            self.remove(id);
        }
    }
}

/// Removes `sa` from the list under `key`, and the key with its last SA.
fn remove_from<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, Vec<Arc<SaSlot>>>,
    key: K,
    sa: &Arc<SaSlot>,
) {
    if let Some(list) = map.get_mut(&key) {
        list.retain(|s| !Arc::ptr_eq(s, sa));
        if list.is_empty() {
            map.remove(&key);
        }
    }
}

/// The workers' lookup structures: an immutable snapshot, replaced by a changed copy on every
/// install, removal or change of sender (a copy shares all it does not change).
#[derive(Debug, Default, Clone)]
pub(crate) struct Tables {
    /// Inner destination -> sending SA (for equal routes the one that started sending last).
    pub(crate) routes: RouteTable<Arc<SaSlot>>,
    /// Our SPI -> SA; during a rekey both the old and the new inbound SPI are here.
    pub(crate) by_spi: ShardedMap<u32, Arc<SaSlot>>,
}

impl Tables {
    /// A copy of these tables that follows `changes` of `registry`.
    pub(crate) fn updated(&self, registry: &Registry, changes: &Changes) -> Self {
        let mut next = self.clone();
        for spi in &changes.spis {
            match registry.by_spi.get(spi) {
                Some(sa) => next.by_spi.insert(*spi, Arc::clone(sa)),
                None => {
                    next.by_spi.remove(spi);
                }
            }
        }
        for net in &changes.nets {
            match registry.route_winner(net) {
                Some(sa) => next.routes.insert(*net, Arc::clone(sa)),
                None => {
                    next.routes.remove(*net);
                }
            }
        }
        next
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use esp::{AesKeyLen, DirectionKeys, Transform};
    use proptest::prelude::*;

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

    /// Tables built from nothing by brute force, without the registry's indexes: every SA's
    /// SPI, and the sending SAs' routes inserted in the order they started sending (for equal
    /// prefixes the later insert wins).
    fn tables(registry: &Registry) -> Tables {
        let mut t = Tables::default();
        let mut senders: Vec<&Arc<SaSlot>> = registry.sas().filter(|s| s.sends()).collect();
        senders.sort_by_key(|s| s.send_rank());
        for sa in senders {
            for net in &sa.routes {
                t.routes.insert(*net, Arc::clone(sa));
            }
        }
        for sa in registry.sas() {
            t.by_spi.insert(sa.inbound_spi, Arc::clone(sa));
        }
        t
    }

    /// Each SPI and each probed destination, and the SA it leads to.
    type Contents = (Vec<(u32, EspSaId)>, Vec<(&'static str, Option<EspSaId>)>);

    fn contents(t: &Tables) -> Contents {
        let mut spis: Vec<(u32, EspSaId)> = t.by_spi.iter().map(|(k, v)| (*k, v.id)).collect();
        spis.sort_unstable();
        let routes = [
            "10.1.0.10",
            "10.1.7.7",
            "172.16.201.1",
            "8.8.8.8",
            "fd00:10:1::7",
            "2001:db8::1",
        ]
        .into_iter()
        .map(|d| (d, t.routes.lookup(d.parse().unwrap()).map(|s| s.id)))
        .collect();
        (spis, routes)
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert {
            id: EspSaId,
            spi: u32,
            replaces: Option<EspSaId>,
            routes: Vec<&'static str>,
        },
        StartSending(EspSaId),
        StopSending(EspSaId),
        Fallback(EspSaId),
        Remove(EspSaId),
        /// Of the SAs ever installed, the one at this index modulo their number.
        RemoveExact(usize),
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        // Equal prefixes written differently (truncated or not), host routes, IPv6.
        let nets = prop::sample::subsequence(
            vec![
                "10.1.0.0/16",
                "10.1.5.5/16",
                "10.1.7.0/24",
                "172.16.201.1/32",
                "0.0.0.0/0",
                "fd00:10:1::/48",
                "fd00:10:1::7/128",
            ],
            0..=3,
        );
        prop_oneof![
            (1u64..6, 0u32..8, prop::option::of(1u64..6), nets).prop_map(
                |(id, spi, replaces, routes)| Op::Insert {
                    id,
                    spi: 0x100 + spi,
                    replaces,
                    routes
                }
            ),
            (1u64..6).prop_map(Op::StartSending),
            (1u64..6).prop_map(Op::StopSending),
            (1u64..6).prop_map(Op::Fallback),
            (1u64..6).prop_map(Op::Remove),
            any::<usize>().prop_map(Op::RemoveExact),
            Just(Op::Clear),
        ]
    }

    proptest! {
        /// Tables that only follow the changes agree, after every operation, with tables built
        /// from nothing; and an earlier snapshot never changes.
        #[test]
        fn following_the_changes_equals_rebuilding(ops in prop::collection::vec(op(), 0..40)) {
            let mut r = Registry::default();
            let mut followed = Tables::default();
            let mut earlier: Vec<(Tables, _)> = Vec::new();
            let mut ever: Vec<Arc<SaSlot>> = Vec::new();
            for op in ops {
                match op {
                    Op::Insert { id, spi, replaces, routes } => {
                        if let Ok(sa) = r.insert(child(id, spi, &routes), replaces) {
                            ever.push(sa);
                        }
                    }
                    Op::RemoveExact(i) => {
                        if !ever.is_empty() {
                            let sa = Arc::clone(&ever[i % ever.len()]);
                            r.remove_exact(&sa);
                        }
                    }
                    Op::Clear => r.clear(),
                    Op::StartSending(id) => {
                        if let Some(sa) = r.find(id).cloned() {
                            r.start_sending(&sa);
                        }
                    }
                    Op::StopSending(id) => {
                        if let Some(sa) = r.find(id).cloned() {
                            r.stop_sending(&sa);
                        }
                    }
                    Op::Fallback(id) => {
                        if let Some(sa) = r.find(id).cloned() {
                            r.fallback(&sa);
                        }
                    }
                    Op::Remove(id) => {
                        r.remove(id);
                    }
                }
                followed = followed.updated(&r, r.changes());
                r.forget_changes();
                prop_assert_eq!(contents(&followed), contents(&tables(&r)));
                let seen = contents(&followed);
                earlier.push((followed.clone(), seen));
            }
            for (t, seen) in &earlier {
                prop_assert_eq!(&contents(t), seen);
            }
        }
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
        assert_eq!(t.by_spi.get(&0x100).unwrap().id, 1);
        assert_eq!(t.by_spi.get(&0x200).unwrap().id, 2);
        // The new one removed: routes fall back to the old SA.
        assert!(r.remove(2).is_some());
        assert_eq!(sender(&r, VNET), Some(1));
        assert!(tables(&r).by_spi.get(&0x200).is_none());
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
        assert_eq!(
            t.by_spi.get(&0x200).unwrap().id,
            2,
            "the new SPI is accepted"
        );
        assert_eq!(sender(&r, VNET), Some(1), "but the old SA still sends");
        r.stop_sending(&old);
        assert!(new.sends() && !old.sends());
        assert_eq!(sender(&r, VNET), Some(2));
        assert_eq!(
            tables(&r).by_spi.get(&0x100).unwrap().id,
            1,
            "the old SA lingers inbound"
        );
        assert!(r.remove_exact(&old));
        assert!(tables(&r).by_spi.get(&0x100).is_none());
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
