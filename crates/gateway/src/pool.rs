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
//!
//! On disk: a snapshot (`leases.json`, replaced whole) and a journal beside it
//! (`leases.journal`): a new binding is appended to the journal before the client gets its
//! address, so that it costs the same with ten thousand leases as with ten and survives a crash
//! of the gateway; the journal is synced to the disk at most once a second on that path (an
//! fsync per binding capped a 10,000-client gateway at a few dozen new clients a second) and on
//! every [`LeasePool::flush`], so a power loss forgets at most the last seconds' new bindings.
//! That costs stickiness only: no session outlives the gateway, so an address bound to nobody
//! after a restart is handed to no one else while its old holder still uses it. The snapshot is
//! rewritten (and the journal emptied) when the journal has grown as long as the snapshot, on
//! flush, and after a restart that found a journal. Loading reads the snapshot, then the
//! journal in order, a later binding of an address replacing an earlier.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::OpenOptionsExt as _;
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
    /// Bindings appended to the journal since the snapshot was written.
    journaled: usize,
    /// The journal, open for appending, and when it was last synced.
    journal: Option<(std::fs::File, std::time::Instant)>,
    /// Leases in the snapshot as last written.
    snapshot_len: usize,
    /// Where [`LeasePool::free_v4`] looks first (offset from the first host).
    v4_cursor: std::cell::Cell<u32>,
    /// Idle times changed since the file was written.
    dirty: bool,
}

/// The journal is compacted into the snapshot once it holds this many bindings, or as many as
/// the snapshot if that is more (so each binding costs O(1) writes on average).
const COMPACT_AFTER: usize = 1024;

/// Longest time a new binding waits in the page cache for the journal's next sync, while
/// bindings keep coming ([`LeasePool::flush`] syncs the rest).
const JOURNAL_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

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
            journaled: 0,
            journal: None,
            snapshot_len: 0,
            v4_cursor: std::cell::Cell::new(0),
            dirty: false,
        }
    }

    /// How many identities the lease file `file` and its journal bind, read without changing
    /// either (for `aovpn gateway doctor`, while the gateway may be running).
    pub fn recorded_bindings(file: &Path) -> usize {
        let snapshot: Vec<Lease> = std::fs::read(file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let journal = std::fs::read(Self::journal_of(file)).unwrap_or_default();
        let journaled =
            journal_entries(&journal).filter_map(|l| serde_json::from_slice::<Lease>(l).ok());
        let mut by_identity: HashMap<String, Ipv4Addr> = HashMap::new();
        let mut by_address: HashMap<Ipv4Addr, String> = HashMap::new();
        for lease in snapshot.into_iter().chain(journaled) {
            if let Some(old) = by_identity.remove(&lease.identity) {
                by_address.remove(&old);
            }
            if let Some(previous) = by_address.insert(lease.v4, lease.identity.clone()) {
                by_identity.remove(&previous);
            }
            by_identity.insert(lease.identity, lease.v4);
        }
        by_identity.len()
    }

    /// The journal beside `file` (`leases.json` -> `leases.journal`).
    fn journal_of(file: &Path) -> PathBuf {
        file.with_extension("journal")
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
        // Bytes, not text: a damaged file (even one that is not UTF-8) is set aside below
        // rather than keeping the gateway down.
        let bytes = match std::fs::read(file) {
            Ok(bytes) => bytes,
            // No snapshot yet; the journal may still hold bindings.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => b"[]".to_vec(),
            Err(e) => return Err(store_error(file, e)),
        };
        let stored: Vec<Lease> = match serde_json::from_slice(&bytes) {
            Ok(leases) => leases,
            Err(_) => {
                // A damaged file must not keep the gateway down, nor be lost: it goes aside
                // for a human, and whatever entries still read are kept.
                let aside = file.with_extension(format!("json.damaged-{}", unix_now()));
                std::fs::rename(file, &aside).map_err(|e| store_error(file, e))?;
                let (leases, unreadable) = recover(&String::from_utf8_lossy(&bytes));
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
        pool.snapshot_len = report.kept;
        pool.replay_journal(&mut report)?;
        Ok((pool, report))
    }

    /// Applies the journal's bindings in order on top of the snapshot; then, if there were
    /// any, writes a new snapshot (which empties the journal) when it can.
    fn replay_journal(&mut self, report: &mut LoadReport) -> Result<(), PoolError> {
        let Some(file) = self.file.clone() else {
            return Ok(());
        };
        let journal = Self::journal_of(&file);
        let bytes = match std::fs::read(&journal) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(store_error(&journal, e)),
        };
        let mut replayed = 0;
        // Each entry is written between newlines, so a torn last entry (a crash in the middle
        // of an append, even in the middle of a character) is one unreadable line and never
        // swallows the next.
        for line in journal_entries(&bytes) {
            replayed += 1;
            match serde_json::from_slice::<Lease>(line) {
                Ok(lease) => {
                    let label = format!("{} -> {}", lease.identity, lease.v4);
                    if !self.apply_journaled(lease) {
                        report.dropped.push(label);
                    }
                }
                Err(_) => report.unreadable += 1,
            }
        }
        report.kept = self.leases.len();
        if replayed > 0 {
            self.dirty = true;
            // Best effort: a state directory that cannot be written now is retried at the
            // next flush; the journal stays the record meanwhile.
            if let Err(e) = self.save() {
                tracing::warn!("{e}; the lease journal is kept until a later flush");
            }
        }
        Ok(())
    }

    /// One binding from the journal: it replaces the identity's earlier binding and whoever
    /// held its address before (a lease evicted for it). False when it does not fit the pool.
    fn apply_journaled(&mut self, mut lease: Lease) -> bool {
        (lease.held_v4, lease.held_v6) = (0, 0);
        if !self.usable_v4(lease.v4) {
            return false;
        }
        if self
            .leases
            .get(&lease.identity)
            .is_some_and(|l| l.v4 == lease.v4)
        {
            // Already in the snapshot (a crash after the snapshot, before the journal went).
            return true;
        }
        if lease
            .v6
            .is_some_and(|a| !self.v6.is_some_and(|net| net.contains(&a)))
        {
            lease.v6 = None;
        }
        self.remove(&lease.identity);
        if let Some(previous) = self.owner_v4.get(&lease.v4).cloned() {
            self.remove(&previous);
        }
        if let Some(previous) = lease.v6.and_then(|a| self.owner_v6.get(&a).cloned()) {
            self.remove(&previous);
        }
        if lease.v6.is_none() && self.v6.is_some() {
            lease.v6 = self.free_v6();
        }
        self.insert(lease);
        true
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
            // A new binding goes to disk at once; if that fails the client still gets its
            // address (failing here would leave a binding nobody releases), and the write is
            // retried at the next flush.
            if let Err(e) = self.record_binding(&lease) {
                self.dirty = true;
                tracing::error!("{e}; the new lease will be written later");
            }
            self.insert(lease);
        }
        // The binding is on disk; only the idle time changes, which [`LeasePool::flush`]
        // writes later. No fsync on the handshake path.
        self.dirty = true;
        // A linear search: only when an IPv6 address is asked for.
        let free_v6 = match family {
            Family::V6 => self.free_v6(),
            Family::V4 => None,
        };
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
        } else if let (Some((f, synced)), Some(file)) = (&mut self.journal, &self.file) {
            f.sync_data()
                .map_err(|e| store_error(&Self::journal_of(file), e))?;
            *synced = std::time::Instant::now();
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

    /// The next free usable address after the last one handed out, wrapping around: a full
    /// scan from the start each time made filling a pool of N addresses cost N² lookups.
    fn free_v4(&self) -> Option<Ipv4Addr> {
        let first = u32::from(self.v4.network()).saturating_add(1);
        let count = u32::from(self.v4.broadcast()).saturating_sub(first);
        let start = self.v4_cursor.get();
        (0..count)
            .map(|i| Ipv4Addr::from(first + (start.wrapping_add(i) % count)))
            .find(|a| self.usable_v4(*a) && !self.owner_v4.contains_key(a))
            .inspect(|a| {
                self.v4_cursor
                    .set(u32::from(*a).wrapping_sub(first).wrapping_add(1) % count);
            })
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

    /// Appends a new binding to the journal (synced if the last sync is a second old);
    /// compacts the journal into the snapshot once it is long.
    fn record_binding(&mut self, lease: &Lease) -> Result<(), PoolError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let path = Self::journal_of(file);
        let mut entry = b"\n".to_vec();
        serde_json::to_writer(&mut entry, lease).map_err(|e| PoolError::Store {
            path: path.clone(),
            message: e.to_string(),
        })?;
        entry.push(b'\n');
        if self.journal.is_none() {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| store_error(&path, e))?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| store_error(&path, e))?;
            if let Some(dir) = path.parent()
                && let Ok(d) = std::fs::File::open(dir)
            {
                // The journal's name must survive a power loss too.
                d.sync_all().map_err(|e| store_error(&path, e))?;
            }
            // Not synced yet: the first binding is synced at once.
            let long_ago = std::time::Instant::now()
                .checked_sub(JOURNAL_SYNC_INTERVAL)
                .unwrap_or_else(std::time::Instant::now);
            self.journal = Some((f, long_ago));
        }
        if let Some((f, synced)) = &mut self.journal {
            f.write_all(&entry).map_err(|e| store_error(&path, e))?;
            if synced.elapsed() >= JOURNAL_SYNC_INTERVAL {
                f.sync_data().map_err(|e| store_error(&path, e))?;
                *synced = std::time::Instant::now();
            }
        }
        self.journaled += 1;
        if self.journaled >= COMPACT_AFTER.max(self.snapshot_len) {
            // The lease itself is inserted after this returns; the snapshot must hold it.
            self.insert(lease.clone());
            if let Err(e) = self.save() {
                // Not again for every new client: the flush retries (the pool is dirty), and
                // the next compaction comes after as many bindings again.
                self.journaled = 0;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Writes the lease file so that a crash leaves either the old or the new file, whole,
    /// then empties the journal (everything in it is in the file now). Root-only (0600): the
    /// file maps identities to addresses. On failure the pool stays dirty, so the next flush
    /// tries again.
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
        let journal = Self::journal_of(path);
        self.journal = None;
        match std::fs::remove_file(&journal) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(store_error(&journal, e)),
        }
        self.journaled = 0;
        self.snapshot_len = leases.len();
        self.dirty = false;
        Ok(())
    }
}

/// The journal's entries: its non-blank lines.
fn journal_entries(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
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
        let mut pool = LeasePool::new(net("172.16.201.0/30"), Some(v6), vec![]);
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
        // Free for anyone: in this pool of two usable addresses it is the only one left.
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
        let journal = dir.path().join("leases.journal");
        let (mut pool, _) = LeasePool::open(net("172.16.201.0/24"), None, vec![], &file).unwrap();
        take(&mut pool, "a", 1);
        // The new binding is in the journal at once.
        let written = std::fs::read_to_string(&journal).unwrap();
        assert!(written.contains("\"last_seen\":1"), "{written}");
        give_back(&mut pool, "a", 5);
        take(&mut pool, "a", 9);
        assert_eq!(std::fs::read_to_string(&journal).unwrap(), written);
        assert!(!file.exists());
        pool.flush().unwrap();
        assert!(
            std::fs::read_to_string(&file)
                .unwrap()
                .contains("\"last_seen\": 9")
        );
        assert!(!journal.exists(), "the snapshot holds everything now");
    }

    /// A new binding appends one journal entry instead of rewriting every lease; the journal
    /// is folded into the snapshot once it is as long as the snapshot.
    #[test]
    fn new_bindings_are_journaled_and_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("leases.json");
        let journal = dir.path().join("leases.journal");
        let (mut pool, _) = LeasePool::open(net("172.16.0.0/18"), None, vec![], &file).unwrap();
        let entries = |path: &Path| {
            std::fs::read_to_string(path)
                .map(|t| t.lines().filter(|l| !l.is_empty()).count())
                .unwrap_or(0)
        };
        for i in 0..COMPACT_AFTER - 1 {
            take(&mut pool, &format!("c{i}"), 1);
        }
        assert!(!file.exists(), "no snapshot rewrite per binding");
        assert_eq!(entries(&journal), COMPACT_AFTER - 1);
        take(&mut pool, "last-before-compaction", 1);
        assert!(!journal.exists());
        let snapshot: Vec<Lease> =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(snapshot.len(), COMPACT_AFTER);
        assert!(
            snapshot
                .iter()
                .any(|l| l.identity == "last-before-compaction")
        );
        // The next compaction waits until the journal is as long as the snapshot.
        for i in 0..COMPACT_AFTER + 5 {
            take(&mut pool, &format!("d{i}"), 2);
        }
        assert_eq!(entries(&journal), 5);
        drop(pool);
        assert_eq!(
            LeasePool::recorded_bindings(&file),
            2 * COMPACT_AFTER + 5,
            "what the doctor counts"
        );
        let (pool, report) = LeasePool::open(net("172.16.0.0/18"), None, vec![], &file).unwrap();
        assert_eq!(report.kept, 2 * COMPACT_AFTER + 5);
        assert_eq!(report.dropped, Vec::<String>::new());
        assert_eq!(pool.leases().count(), 2 * COMPACT_AFTER + 5);
        assert!(!journal.exists(), "a restart folds the journal in");
    }

    /// After a crash the journal is replayed in order: an address given to a new identity
    /// after its old holder was evicted belongs to the new one; a torn last entry is skipped
    /// and does not swallow a later one.
    #[test]
    fn the_journal_replays_evictions_in_order_and_skips_a_torn_entry() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("leases.json");
        let journal = dir.path().join("leases.journal");
        let (mut pool, _) = LeasePool::open(net("172.16.201.0/30"), None, vec![], &file).unwrap();
        let a = take(&mut pool, "a", 10);
        let b = take(&mut pool, "b", 20);
        give_back(&mut pool, "b", 30);
        give_back(&mut pool, "a", 40);
        // b has been idle longest: c takes its address.
        assert_eq!(take(&mut pool, "c", 50).v4, b.v4);
        // A crash: no flush, no snapshot; and half an entry at the end.
        std::mem::forget(pool);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&journal)
            .unwrap();
        f.write_all(b"\n{\"identity\":\"d\",\"v4\":\"172.16")
            .unwrap();
        drop(f);
        // a's and c's bindings; b's address went to c.
        assert_eq!(LeasePool::recorded_bindings(&file), 2);
        let (mut pool, report) =
            LeasePool::open(net("172.16.201.0/30"), None, vec![], &file).unwrap();
        assert_eq!(report.unreadable, 1);
        assert_eq!(pool.get("a").map(|l| l.v4), Some(a.v4));
        assert_eq!(pool.get("c").map(|l| l.v4), Some(b.v4));
        assert!(pool.get("b").is_none());
        // A binding after the restart reads back too.
        give_back(&mut pool, "c", 60);
        assert_eq!(take(&mut pool, "e", 70).v4, a.v4, "a was idle longest");
        drop(pool);
        let (pool, _) = LeasePool::open(net("172.16.201.0/30"), None, vec![], &file).unwrap();
        assert_eq!(pool.get("e").map(|l| l.v4), Some(a.v4));
        assert_eq!(pool.get("c").map(|l| l.v4), Some(b.v4));
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

#[cfg(test)]
mod damaged_files {
    use super::*;

    /// Bytes that are not UTF-8 (a write cut in the middle of a character) cost their entry
    /// only; the gateway starts with the rest.
    #[test]
    fn a_journal_with_bytes_that_are_not_text_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("leases.json");
        let mut journal =
            b"\n{\"identity\":\"fqdn:a\",\"v4\":\"172.16.201.5\",\"last_seen\":1}\n".to_vec();
        journal.extend_from_slice(b"\n{\"identity\":\"fqdn:caf\xc3");
        journal.extend_from_slice(
            b"\n{\"identity\":\"fqdn:b\",\"v4\":\"172.16.201.6\",\"last_seen\":2}\n",
        );
        std::fs::write(dir.path().join("leases.journal"), &journal).unwrap();
        assert_eq!(LeasePool::recorded_bindings(&file), 2);
        let (pool, report) =
            LeasePool::open("172.16.201.0/24".parse().unwrap(), None, vec![], &file).unwrap();
        assert_eq!(report.unreadable, 1);
        assert_eq!(pool.leases().count(), 2);
        std::fs::write(&file, b"[\xff\xfe]").unwrap();
        let (_, report) =
            LeasePool::open("172.16.201.0/24".parse().unwrap(), None, vec![], &file).unwrap();
        assert!(report.set_aside.is_some());
    }
}
