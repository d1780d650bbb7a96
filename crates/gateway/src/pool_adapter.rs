//! The gateway's lease stores (the default pool and one per policy group) behind the engine's
//! [`AddressPool`] interface.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ikev2::{AddressFamily, AddressPool, IkeId};

use crate::pool::{Family, LeasePool};

/// A stable lease key for a peer identity (the display form abbreviates DNs).
pub fn lease_key(peer: &IkeId) -> String {
    match peer {
        IkeId::Fqdn(s) => format!("fqdn:{}", s.to_ascii_lowercase()),
        IkeId::Rfc822(s) => format!("rfc822:{}", s.to_ascii_lowercase()),
        IkeId::DerDn(der) => format!("dn:{}", hex::encode(der)),
        IkeId::Ip(a) => format!("ip:{a}"),
        IkeId::Other { id_type, data } => format!("{}:{}", id_type.0, hex::encode(data)),
    }
}

/// The lease stores, the default pool's and one per policy group.
#[derive(Debug, Clone)]
pub struct Pools {
    pub default: Arc<Mutex<LeasePool>>,
    pub groups: Vec<(String, Arc<Mutex<LeasePool>>)>,
}

impl Pools {
    fn of(&self, group: Option<&str>) -> &Arc<Mutex<LeasePool>> {
        group
            .and_then(|g| self.groups.iter().find(|(n, _)| n == g).map(|(_, p)| p))
            .unwrap_or(&self.default)
    }

    /// The pool an address was handed out from.
    fn holding(&self, addr: IpAddr) -> &Arc<Mutex<LeasePool>> {
        self.groups
            .iter()
            .map(|(_, p)| p)
            .find(|p| p.lock().is_ok_and(|p| p.contains(addr)))
            .unwrap_or(&self.default)
    }

    /// Every store, default first.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Mutex<LeasePool>>> {
        std::iter::once(&self.default).chain(self.groups.iter().map(|(_, p)| p))
    }
}

/// The lease stores as the engine's [`AddressPool`]: every address handed out counts one
/// session on the identity's lease in its group's pool, every release ends one.
#[derive(Debug, Clone)]
pub struct SharedPool(pub Pools);

impl SharedPool {
    fn acquire(
        &mut self,
        peer: &IkeId,
        group: Option<&str>,
        family: AddressFamily,
        replaces: bool,
    ) -> Option<IpAddr> {
        let key = lease_key(peer);
        let mut pool = self.0.of(group).lock().ok()?;
        let family = match family {
            AddressFamily::V4 => Family::V4,
            AddressFamily::V6 => Family::V6,
        };
        pool.acquire(&key, family, replaces, tunnel::host::unix_now())
            .unwrap_or_else(|e| {
                tracing::warn!(peer = %peer, "no address: {e}");
                None
            })
    }
}

impl AddressPool for SharedPool {
    fn allocate(
        &mut self,
        peer: &IkeId,
        group: Option<&str>,
        family: AddressFamily,
    ) -> Option<IpAddr> {
        self.acquire(peer, group, family, false)
    }

    fn allocate_replacing(
        &mut self,
        peer: &IkeId,
        group: Option<&str>,
        family: AddressFamily,
    ) -> Option<IpAddr> {
        self.acquire(peer, group, family, true)
    }

    fn release(&mut self, peer: &IkeId, addr: IpAddr) {
        if let Ok(mut pool) = self.0.holding(addr).lock() {
            pool.release(&lease_key(peer), addr, tunnel::host::unix_now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_keys_tell_distinguished_names_of_equal_length_apart() {
        let a = lease_key(&IkeId::DerDn(vec![0x30, 1, 2]));
        let b = lease_key(&IkeId::DerDn(vec![0x30, 1, 3]));
        assert_ne!(a, b);
        assert_eq!(
            lease_key(&IkeId::Fqdn("PC.Corp.Example".into())),
            lease_key(&IkeId::Fqdn("pc.corp.example".into()))
        );
    }

    #[test]
    fn shared_pool_gives_one_address_per_identity_from_its_groups_pool() {
        let pool = |net: &str| {
            Arc::new(Mutex::new(LeasePool::new(
                net.parse().unwrap(),
                None,
                vec![],
            )))
        };
        let mut shared = SharedPool(Pools {
            default: pool("172.16.201.0/24"),
            groups: vec![("eng".into(), pool("172.16.202.0/24"))],
        });
        let alice = IkeId::Rfc822("alice@corp.example".into());
        let bob = IkeId::Rfc822("bob@corp.example".into());
        let carol = IkeId::Rfc822("carol@eng.corp.example".into());
        let a = shared.allocate(&alice, None, AddressFamily::V4).unwrap();
        let b = shared.allocate(&bob, None, AddressFamily::V4).unwrap();
        let c = shared
            .allocate(&carol, Some("eng"), AddressFamily::V4)
            .unwrap();
        assert_ne!(a, b);
        assert!(a.to_string().starts_with("172.16.201."));
        assert!(c.to_string().starts_with("172.16.202."), "{c}");
        shared.release(&alice, a);
        assert_eq!(shared.allocate(&alice, None, AddressFamily::V4), Some(a));
        assert_eq!(shared.allocate(&alice, None, AddressFamily::V6), None);
        // Every allocation is released once, into the pool it came from: nothing stays pinned.
        shared.release(&alice, a);
        shared.release(&bob, b);
        shared.release(&carol, c);
        for p in shared.0.all() {
            assert!(p.lock().unwrap().leases().all(|l| !l.in_use()));
        }
    }
}
