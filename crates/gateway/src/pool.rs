//! Client address leases: one virtual address per client identity, kept across reconnects and
//! gateway restarts, never the network or broadcast address, never one address for two clients.
//!
//! A lease stays bound to its identity after the client disconnects, so a device that comes back
//! gets the address it had (firewall rules and "manage out" depend on that). Only when the pool
//! is full is the binding of the longest-idle disconnected client given to someone else.
//!
//! One session holds an identity's address at a time: a second session of the same identity
//! while the first is up (two machines with one certificate, a probe beside the tunnel) gets a
//! transient address of its own, never written to the lease file and free again when that
//! session ends, so that the two never share a route.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

/// How many client addresses an IPv4 pool has (its network and broadcast addresses are never
/// handed out).
pub fn usable_addresses(net: ipnet::Ipv4Net) -> u64 {
    (1u64 << (32 - u32::from(net.prefix_len()))).saturating_sub(2)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub identity: String,
    pub v4: Ipv4Addr,
    #[serde(default)]
    pub v6: Option<Ipv6Addr>,
    /// Unix time of the last acquire or release.
    pub last_seen: u64,
    /// Sessions holding the IPv4 / IPv6 address now (more than one only while a client that
    /// came back replaces its old session); not persisted (no session survives a restart).
    #[serde(skip)]
    pub held_v4: u32,
    #[serde(skip)]
    pub held_v6: u32,
}

impl Lease {
    /// Whether a session holds either address.
    pub fn in_use(&self) -> bool {
        self.held_v4 > 0 || self.held_v6 > 0
    }
}

/// An address family asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("address pool {0} is exhausted: every address is in use by a connected client")]
    Exhausted(Ipv4Net),
    #[error("lease file {path}: {message}")]
    Store { path: PathBuf, message: String },
}

/// What loading a lease file had to drop, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub kept: usize,
    pub dropped: Vec<String>,
    /// The file did not parse as a whole: it was kept aside under this name and what could be
    /// read of it recovered.
    pub set_aside: Option<PathBuf>,
    /// Entries of a damaged file that could not be read.
    pub unreadable: usize,
}

#[derive(Debug)]
pub struct LeasePool {
    v4: Ipv4Net,
    v6: Option<Ipv6Net>,
    leases: BTreeMap<String, Lease>,
    owner_v4: HashMap<Ipv4Addr, String>,
    owner_v6: HashMap<Ipv6Addr, String>,
    /// Addresses lent to second sessions of an identity (in the owner maps too).
    transient: HashMap<IpAddr, String>,
    reserved: Vec<IpAddr>,
    file: Option<PathBuf>,
    /// Idle times changed since the file was written.
    dirty: bool,
}

impl LeasePool {
    /// An empty pool. `reserved` addresses (e.g. the gateway's own address inside the pool) are
    /// never handed out.
    pub fn new(v4: Ipv4Net, v6: Option<Ipv6Net>, reserved: Vec<IpAddr>) -> Self {
        Self {
            v4: v4.trunc(),
            v6: v6.map(|n| n.trunc()),
            leases: BTreeMap::new(),
            owner_v4: HashMap::new(),
            owner_v6: HashMap::new(),
            transient: HashMap::new(),
            reserved,
            file: None,
            dirty: false,
        }
    }

    /// A pool persisted in `file`: existing leases are loaded (entries outside the pool, or
    /// colliding with an earlier entry, are dropped and reported) and every change is written
    /// back atomically.
    pub fn open(
        v4: Ipv4Net,
        v6: Option<Ipv6Net>,
        reserved: Vec<IpAddr>,
        file: &Path,
    ) -> Result<(Self, LoadReport), PoolError> {
        let mut pool = Self::new(v4, v6, reserved);
        pool.file = Some(file.to_owned());
        let mut report = LoadReport::default();
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((pool, report)),
            Err(e) => return Err(store_error(file, e)),
        };
        let stored: Vec<Lease> = match serde_json::from_str(&text) {
            Ok(leases) => leases,
            Err(_) => {
                // A damaged file must not keep the gateway down, nor be lost: it goes aside
                // for a human, and whatever entries still read are kept.
                let aside = file.with_extension(format!("json.damaged-{}", unix_now()));
                std::fs::rename(file, &aside).map_err(|e| store_error(file, e))?;
                let (leases, unreadable) = recover(&text);
                report.set_aside = Some(aside);
                report.unreadable = unreadable;
                pool.dirty = true;
                leases
            }
        };
        for mut lease in stored {
            (lease.held_v4, lease.held_v6) = (0, 0);
            let v6_ok = match (lease.v6, pool.v6) {
                (None, _) => true,
                (Some(a), Some(net)) => net.contains(&a) && !pool.owner_v6.contains_key(&a),
                (Some(_), None) => false,
            };
            if !pool.usable_v4(lease.v4)
                || pool.owner_v4.contains_key(&lease.v4)
                || pool.leases.contains_key(&lease.identity)
                || !v6_ok
            {
                report
                    .dropped
                    .push(format!("{} -> {}", lease.identity, lease.v4));
                continue;
            }
            if lease.v6.is_none() && pool.v6.is_some() {
                lease.v6 = pool.free_v6();
            }
            pool.insert(lease);
            report.kept += 1;
        }
        Ok((pool, report))
    }

    /// An address of `family` for one session of `identity`: its lease's (made if needed),
    /// or while another session holds that, a transient one, unless this session `replaces`
    /// the others (the client said INITIAL_CONTACT: they are about to go). `None`: no IPv6
    /// here, or none left.
    pub fn acquire(
        &mut self,
        identity: &str,
        family: Family,
        replaces: bool,
        now: u64,
    ) -> Result<Option<IpAddr>, PoolError> {
        if family == Family::V6 && self.v6.is_none() {
            return Ok(None);
        }
        if !self.leases.contains_key(identity) {
            let v4 = self.free_or_evict_v4()?;
            let lease = Lease {
                identity: identity.to_owned(),
                v4,
                v6: self.free_v6(),
                last_seen: now,
                held_v4: 0,
                held_v6: 0,
            };
            self.insert(lease);
            // A new binding goes to disk at once; if that fails the client still gets its
            // address (failing here would leave a binding nobody releases), and the write is
            // retried at the next flush.
            if let Err(e) = self.save() {
                tracing::error!("{e}; the new lease will be written later");
            }
        }
        // The binding is on disk; only the idle time changes, which [`LeasePool::flush`]
        // writes later. No fsync on the handshake path.
        self.dirty = true;
        let free_v6 = self.free_v6();
        if let Some(lease) = self.leases.get_mut(identity) {
            lease.last_seen = now;
            match family {
                Family::V4 if lease.held_v4 == 0 || replaces => {
                    lease.held_v4 += 1;
                    return Ok(Some(IpAddr::V4(lease.v4)));
                }
                Family::V6 if lease.held_v6 == 0 || replaces => {
                    // A lease made while IPv6 ran out gets an address now if there is one.
                    if lease.v6.is_none() {
                        lease.v6 = free_v6;
                    }
                    let Some(v6) = lease.v6 else {
                        return Ok(None);
                    };
                    lease.held_v6 += 1;
                    self.owner_v6.insert(v6, identity.to_owned());
                    return Ok(Some(IpAddr::V6(v6)));
                }
                _ => {}
            }
        }
        // Another session of this identity holds its address.
        let addr = match family {
            Family::V4 => IpAddr::V4(self.free_or_evict_v4()?),
            Family::V6 => match free_v6 {
                Some(a) => IpAddr::V6(a),
                None => return Ok(None),
            },
        };
        match addr {
            IpAddr::V4(a) => self.owner_v4.insert(a, identity.to_owned()),
            IpAddr::V6(a) => self.owner_v6.insert(a, identity.to_owned()),
        };
        self.transient.insert(addr, identity.to_owned());
        Ok(Some(addr))
    }

    /// A free IPv4 address, else the one of the longest-idle lease nobody holds.
    fn free_or_evict_v4(&mut self) -> Result<Ipv4Addr, PoolError> {
        if let Some(a) = self.free_v4() {
            return Ok(a);
        }
        let victim = self
            .leases
            .values()
            .filter(|l| !l.in_use())
            .min_by_key(|l| l.last_seen)
            .map(|l| l.identity.clone())
            .ok_or(PoolError::Exhausted(self.v4))?;
        self.remove(&victim);
        self.free_v4().ok_or(PoolError::Exhausted(self.v4))
    }

    /// The session of `identity` that had `addr` ended: a transient address is free again; a
    /// lease's stays bound for its next connection.
    pub fn release(&mut self, identity: &str, addr: IpAddr, now: u64) {
        if self.transient.remove(&addr).is_some() {
            match addr {
                IpAddr::V4(a) => self.owner_v4.remove(&a),
                IpAddr::V6(a) => self.owner_v6.remove(&a),
            };
            return;
        }
        if let Some(lease) = self.leases.get_mut(identity) {
            lease.last_seen = now;
            match addr {
                IpAddr::V4(a) if a == lease.v4 => lease.held_v4 = lease.held_v4.saturating_sub(1),
                IpAddr::V6(a) if Some(a) == lease.v6 => {
                    lease.held_v6 = lease.held_v6.saturating_sub(1);
                }
                _ => return,
            }
            self.dirty = true;
        }
    }

    /// Writes idle times that changed since the last write (the gateway calls it now and then
    /// and on shutdown). New bindings are written at once by [`LeasePool::acquire`].
    pub fn flush(&mut self) -> Result<(), PoolError> {
        if self.dirty {
            self.save()?;
        }
        Ok(())
    }

    /// Whether the pool hands out IPv6 addresses.
    /// Whether `addr` belongs to this pool's networks.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.v4.contains(&a),
            IpAddr::V6(a) => self.v6.is_some_and(|n| n.contains(&a)),
        }
    }

    pub fn has_v6(&self) -> bool {
        self.v6.is_some()
    }

    pub fn get(&self, identity: &str) -> Option<&Lease> {
        self.leases.get(identity)
    }

    /// Who holds `addr`, if anyone (the gateway routes inbound traffic by this).
    pub fn owner(&self, addr: IpAddr) -> Option<&str> {
        match addr {
            IpAddr::V4(a) => self.owner_v4.get(&a),
            IpAddr::V6(a) => self.owner_v6.get(&a),
        }
        .map(String::as_str)
    }

    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    fn usable_v4(&self, a: Ipv4Addr) -> bool {
        // ipnet's hosts() already leaves out the network and broadcast addresses.
        self.v4.contains(&a)
            && a != self.v4.network()
            && a != self.v4.broadcast()
            && !self.reserved.contains(&IpAddr::V4(a))
    }

    fn free_v4(&self) -> Option<Ipv4Addr> {
        self.v4
            .hosts()
            .find(|a| self.usable_v4(*a) && !self.owner_v4.contains_key(a))
    }

    fn free_v6(&self) -> Option<Ipv6Addr> {
        let net = self.v6?;
        // Skip the subnet-router anycast address (the network address itself).
        net.hosts()
            .skip(1)
            .take(1 << 20)
            .find(|a| !self.owner_v6.contains_key(a) && !self.reserved.contains(&IpAddr::V6(*a)))
    }

    fn insert(&mut self, lease: Lease) {
        self.owner_v4.insert(lease.v4, lease.identity.clone());
        if let Some(v6) = lease.v6 {
            self.owner_v6.insert(v6, lease.identity.clone());
        }
        self.leases.insert(lease.identity.clone(), lease);
    }

    fn remove(&mut self, identity: &str) {
        if let Some(lease) = self.leases.remove(identity) {
            self.owner_v4.remove(&lease.v4);
            if let Some(v6) = lease.v6 {
                self.owner_v6.remove(&v6);
            }
        }
    }

    /// Writes the lease file so that a crash leaves either the old or the new file, whole.
    /// Root-only (0600): the file maps identities to addresses. On failure the pool stays
    /// dirty, so the next flush tries again.
    fn save(&mut self) -> Result<(), PoolError> {
        let Some(path) = &self.file else {
            self.dirty = false;
            return Ok(());
        };
        let leases: Vec<&Lease> = self.leases.values().collect();
        let json = serde_json::to_vec_pretty(&leases).map_err(|e| PoolError::Store {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| store_error(path, e))?;
        }
        netio::fs::replace_file(path, &json, 0o600, true).map_err(|e| store_error(path, e))?;
        self.dirty = false;
        Ok(())
    }
}

/// The leases that still read from a damaged file (each element on its own), and how many
/// could not be.
fn recover(text: &str) -> (Vec<Lease>, usize) {
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(text)
    else {
        // Not even JSON (a truncated write): nothing can be told apart.
        return (Vec::new(), usize::from(!text.trim().is_empty()));
    };
    let mut unreadable = 0;
    let leases = items
        .into_iter()
        .filter_map(|v| {
            let lease = serde_json::from_value::<Lease>(v).ok();
            unreadable += usize::from(lease.is_none());
            lease
        })
        .collect();
    (leases, unreadable)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn store_error(path: &Path, e: std::io::Error) -> PoolError {
    PoolError::Store {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    /// One IPv4 session of `id`; its lease as it stands.
    fn take(pool: &mut LeasePool, id: &str, t: u64) -> Lease {
        pool.acquire(id, Family::V4, false, t).unwrap().unwrap();
        pool.get(id).cloned().unwrap()
    }

    /// The end of `id`'s session on its lease's IPv4 address.
    fn give_back(pool: &mut LeasePool, id: &str, t: u64) {
        let v4 = pool.get(id).unwrap().v4;
        pool.release(id, IpAddr::V4(v4), t);
    }

    #[test]
    fn same_identity_gets_same_address_and_others_differ() {
        let mut pool = LeasePool::new(net("172.16.201.0/24"), None, vec![]);
        let a = take(&mut pool, "machine-a", 1);
        let b = take(&mut pool, "user@corp", 2);
        assert_eq!(a.v4, Ipv4Addr::new(172, 16, 201, 1));
        assert_eq!(b.v4, Ipv4Addr::new(172, 16, 201, 2));
        give_back(&mut pool, "machine-a", 3);
        assert_eq!(take(&mut pool, "machine-a", 4).v4, a.v4);
        assert_eq!(pool.owner(IpAddr::V4(b.v4)), Some("user@corp"));
    }

    #[test]
    fn a_second_session_of_one_identity_gets_an_address_of_its_own_for_its_time() {
        let v6: Ipv6Net = "fd00:201::/64".parse().unwrap();
        let mut pool = LeasePool::new(net("172.16.201.0/24"), Some(v6), vec![]);
        let first = pool.acquire("pc1", Family::V4, false, 1).unwrap().unwrap();
        let first6 = pool.acquire("pc1", Family::V6, false, 1).unwrap().unwrap();
        let second = pool.acquire("pc1", Family::V4, false, 2).unwrap().unwrap();
        let second6 = pool.acquire("pc1", Family::V6, false, 2).unwrap().unwrap();
        assert_ne!(first, second);
        assert_ne!(first6, second6);
        assert_eq!(pool.owner(second), Some("pc1"));
        // The lease is the first session's; the second's addresses go when it ends.
        pool.release("pc1", second, 3);
        pool.release("pc1", second6, 3);
        assert_eq!(pool.owner(second), None);
        assert_eq!(pool.get("pc1").map(|l| IpAddr::V4(l.v4)), Some(first));
        assert_eq!(
            pool.acquire("other", Family::V4, false, 4).unwrap(),
            Some(second)
        );
        // The first ends; its address waits for it, and comes back.
        pool.release("pc1", first, 5);
        pool.release("pc1", first6, 5);
        assert_eq!(
            pool.acquire("pc1", Family::V4, false, 6).unwrap(),
            Some(first)
        );
        assert_eq!(
            pool.acquire("pc1", Family::V6, false, 6).unwrap(),
            Some(first6)
        );
    }

    #[test]
    fn a_client_that_comes_back_with_initial_contact_takes_its_address_over() {
        let mut pool = LeasePool::new(net("172.16.201.0/24"), None, vec![]);
        let old = pool.acquire("pc1", Family::V4, false, 1).unwrap().unwrap();
        // The new session replaces the old one, which is deleted right after.
        let new = pool.acquire("pc1", Family::V4, true, 2).unwrap().unwrap();
        assert_eq!(new, old);
        pool.release("pc1", old, 3);
        // The new session still holds it: a third one, not replacing, gets its own.
        let third = pool.acquire("pc1", Family::V4, false, 4).unwrap().unwrap();
        assert_ne!(third, new);
    }

    #[test]
    fn never_hands_out_network_broadcast_or_reserved() {
        let reserved = vec![IpAddr::V4(Ipv4Addr::new(172, 16, 201, 1))];
        let mut pool = LeasePool::new(net("172.16.201.0/30"), None, reserved);
        // /30: .0 network, .3 broadcast, .1 reserved -> only .2 is usable.
        assert_eq!(take(&mut pool, "a", 1).v4, Ipv4Addr::new(172, 16, 201, 2));
        assert!(matches!(
            pool.acquire("b", Family::V4, false, 1),
            Err(PoolError::Exhausted(_))
        ));
    }

    #[test]
    fn full_pool_reclaims_longest_idle_disconnected_lease_only() {
        let mut pool = LeasePool::new(net("172.16.201.0/30"), None, vec![]);
        let a = take(&mut pool, "a", 10);
        let b = take(&mut pool, "b", 20);
        // Both connected: nobody can be evicted.
        assert!(matches!(
            pool.acquire("c", Family::V4, false, 30),
            Err(PoolError::Exhausted(_))
        ));
        give_back(&mut pool, "b", 40);
        give_back(&mut pool, "a", 50);
        // b has been idle longest, so c takes b's address; a keeps its own.
        assert_eq!(take(&mut pool, "c", 60).v4, b.v4);
        assert_eq!(pool.get("a").map(|l| l.v4), Some(a.v4));
        assert!(pool.get("b").is_none());
    }

    #[test]
    fn leases_survive_a_restart_and_bad_entries_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("leases.json");
        let v6: Ipv6Net = "fd00:201::/64".parse().unwrap();
        let (mut pool, report) =
            LeasePool::open(net("172.16.201.0/24"), Some(v6), vec![], &file).unwrap();
        assert_eq!(report, LoadReport::default());
        let a = take(&mut pool, "a", 1);
        let b = take(&mut pool, "b", 2);
        assert_eq!(a.v6, Some("fd00:201::1".parse().unwrap()));
        drop(pool);

        let (mut pool, report) =
            LeasePool::open(net("172.16.201.0/24"), Some(v6), vec![], &file).unwrap();
        assert_eq!(report.kept, 2);
        assert_eq!(pool.get("b").map(|l| (l.v4, l.v6)), Some((b.v4, b.v6)));
        assert_eq!(pool.get("b").map(Lease::in_use), Some(false));
        assert_eq!(take(&mut pool, "c", 3).v4, Ipv4Addr::new(172, 16, 201, 3));

        // The pool was renumbered: old leases outside it are dropped, not handed out.
        let (pool, report) = LeasePool::open(net("172.16.202.0/24"), None, vec![], &file).unwrap();
        assert_eq!(report.kept, 0);
        assert_eq!(report.dropped.len(), 3);
        assert_eq!(pool.leases().count(), 0);
    }

    #[test]
    fn reconnects_do_not_rewrite_the_file_until_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("leases.json");
        let (mut pool, _) = LeasePool::open(net("172.16.201.0/24"), None, vec![], &file).unwrap();
        take(&mut pool, "a", 1);
        let written = std::fs::read_to_string(&file).unwrap();
        assert!(written.contains("\"last_seen\": 1"), "{written}");
        give_back(&mut pool, "a", 5);
        take(&mut pool, "a", 9);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), written);
        pool.flush().unwrap();
        assert!(
            std::fs::read_to_string(&file)
                .unwrap()
                .contains("\"last_seen\": 9")
        );
    }

    /// A damaged lease file neither stops the gateway nor is lost: it is kept aside, the
    /// entries that still read are kept, and the pool writes a good file again.
    #[test]
    fn a_damaged_lease_file_is_kept_aside_and_what_reads_is_recovered() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("leases.json");
        std::fs::write(
            &file,
            br#"[{"identity":"fqdn:pc1","v4":"172.16.201.7","last_seen":5},
                {"identity":"fqdn:pc2","v4":"not an address","last_seen":5},
                {"identity":"fqdn:pc3","v4":"172.16.201.9"}]"#,
        )
        .unwrap();
        let (mut pool, report) =
            LeasePool::open(net("172.16.201.0/24"), None, vec![], &file).unwrap();
        assert_eq!(report.kept, 1);
        assert_eq!(report.unreadable, 2);
        let aside = report.set_aside.unwrap();
        assert!(
            std::fs::read_to_string(&aside)
                .unwrap()
                .contains("not an address")
        );
        assert_eq!(
            take(&mut pool, "fqdn:pc1", 6).v4,
            Ipv4Addr::new(172, 16, 201, 7)
        );
        pool.flush().unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
        let (again, report) = LeasePool::open(net("172.16.201.0/24"), None, vec![], &file).unwrap();
        assert_eq!(report.set_aside, None);
        assert_eq!(
            again.get("fqdn:pc1").unwrap().v4,
            Ipv4Addr::new(172, 16, 201, 7)
        );

        // Half a file (a torn write) is not even JSON: start empty, keep it aside.
        std::fs::write(&file, b"[{\"identity\":\"fqdn:pc1\",").unwrap();
        let (pool, report) = LeasePool::open(net("172.16.201.0/24"), None, vec![], &file).unwrap();
        assert_eq!(pool.leases().count(), 0);
        assert!(report.set_aside.is_some());
    }

    /// A lease file that cannot be written does not pin a lease: the address is handed out,
    /// released normally, and the file is written once that works again.
    #[test]
    fn a_failed_write_pins_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let file = state.join("leases.json");
        let (mut pool, _) = LeasePool::open(net("172.16.201.0/30"), None, vec![], &file).unwrap();
        // A plain file where the state directory should be: every write fails.
        std::fs::write(&state, b"").unwrap();
        let a = take(&mut pool, "fqdn:a", 1);
        give_back(&mut pool, "fqdn:a", 2);
        assert!(pool.flush().is_err());
        // The pool has two addresses; the released binding is reusable, nothing is stuck.
        take(&mut pool, "fqdn:b", 3);
        give_back(&mut pool, "fqdn:b", 4);
        assert_eq!(
            take(&mut pool, "fqdn:c", 5).v4,
            a.v4,
            "a's idle binding reused"
        );
        std::fs::remove_file(&state).unwrap();
        pool.flush().unwrap();
        assert!(std::fs::read_to_string(&file).unwrap().contains("fqdn:c"));
    }

    proptest! {
        /// Whatever the sequence of connects and disconnects, no address is ever held by two
        /// identities, and every address is a usable host of the pool.
        #[test]
        fn addresses_are_never_shared(ops in proptest::collection::vec((0u8..12, any::<bool>()), 1..200)) {
            let mut pool = LeasePool::new(net("172.16.201.0/29"), None, vec![]);
            // Each identity's live sessions and the address each holds.
            let mut live: std::collections::HashMap<String, Vec<IpAddr>> = Default::default();
            let mut t = 0;
            for (who, connect) in ops {
                t += 1;
                let id = format!("client{}", who % 6);
                if connect {
                    if let Ok(Some(addr)) = pool.acquire(&id, Family::V4, false, t) {
                        live.entry(id.clone()).or_default().push(addr);
                    }
                } else if let Some(addr) = live.get_mut(&id).and_then(Vec::pop) {
                    pool.release(&id, addr, t);
                }
                let mut held = std::collections::HashSet::new();
                for (id, addrs) in &live {
                    for a in addrs {
                        prop_assert!(held.insert(*a), "{} held by two sessions", a);
                        prop_assert_eq!(pool.owner(*a), Some(id.as_str()));
                    }
                }
                let mut seen = std::collections::HashSet::new();
                for lease in pool.leases() {
                    prop_assert!(seen.insert(lease.v4), "{} shared", lease.v4);
                    prop_assert!(lease.v4 != Ipv4Addr::new(172, 16, 201, 0));
                    prop_assert!(lease.v4 != Ipv4Addr::new(172, 16, 201, 7));
                    prop_assert_eq!(pool.owner(IpAddr::V4(lease.v4)), Some(lease.identity.as_str()));
                }
            }
        }
    }
}
