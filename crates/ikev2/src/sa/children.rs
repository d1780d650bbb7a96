//! The Child SAs of an IKE SA as the engine tracks them (their keys live in the data plane):
//! what each was negotiated with, its lifetime, and whether it is on its way out.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ike_wire::TrafficSelector;
use ipnet::IpNet;

use crate::event::ChildSa;

/// When something negotiated is rekeyed and when it runs out (RFC 7296 2.8).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Lifetime {
    pub(super) rekey_at: Option<Instant>,
    pub(super) expire_at: Option<Instant>,
}

impl Lifetime {
    /// For something created at `now` that lives `life`: rekeyed at 90 % of it less up to a
    /// tenth more (`jitter`, 0 to 1), so that the two peers rarely rekey at the same moment;
    /// expired at the end. Without a lifetime, neither.
    pub(super) fn starting(now: Instant, life: Option<Duration>, jitter: f64) -> Self {
        let Some(life) = life else {
            return Self::default();
        };
        let early = life.mul_f64(0.1 * jitter.clamp(0.0, 1.0));
        Self {
            rekey_at: Some(now + life.mul_f64(0.9).saturating_sub(early)),
            expire_at: Some(now + life),
        }
    }

    /// The hard lifetime has run out.
    pub(super) fn expired(&self, now: Instant) -> bool {
        self.expire_at.is_some_and(|t| t <= now)
    }

    /// The rekey is due.
    pub(super) fn rekey_due(&self, now: Instant) -> bool {
        self.rekey_at.is_some_and(|t| t <= now)
    }
}

/// A Child SA of this IKE SA: what it was negotiated with (a rekey offers the same).
#[derive(Debug, Clone)]
pub(super) struct ChildState {
    pub(super) spi_in: u32,
    pub(super) spi_out: u32,
    pub(super) ts_local: Vec<TrafficSelector>,
    pub(super) ts_remote: Vec<TrafficSelector>,
    pub(super) virtual_ips: Vec<IpAddr>,
    pub(super) dns_servers: Vec<IpAddr>,
    pub(super) dns_domains: Vec<String>,
    pub(super) subnets: Vec<IpNet>,
    pub(super) lifetime: Lifetime,
    /// Replaced by a rekey, redundant after a collision, or being deleted: never rekeyed
    /// again, only waits for its Delete (or its hard lifetime).
    pub(super) retiring: bool,
}

impl ChildState {
    pub(super) fn new(c: &ChildSa, lifetime: Lifetime) -> Self {
        Self {
            spi_in: c.spi_in,
            spi_out: c.spi_out,
            ts_local: c.ts_local.clone(),
            ts_remote: c.ts_remote.clone(),
            virtual_ips: c.virtual_ips.clone(),
            dns_servers: c.dns_servers.clone(),
            dns_domains: c.dns_domains.clone(),
            subnets: c.subnets.clone(),
            lifetime,
            retiring: false,
        }
    }
}

/// An IKE SA's Child SAs, keyed by our inbound SPI: the one in use and those on their way
/// out. A remote-access tunnel has one, and two or three for a moment around a rekey.
#[derive(Debug, Default)]
pub(super) struct ChildTable {
    children: Vec<ChildState>,
}

impl ChildTable {
    pub(super) fn insert(&mut self, child: ChildState) {
        self.children.push(child);
    }

    pub(super) fn get(&self, spi_in: u32) -> Option<&ChildState> {
        self.children.iter().find(|c| c.spi_in == spi_in)
    }

    /// The Child SA with inbound SPI `spi_in`, unless it is on its way out.
    pub(super) fn live_mut(&mut self, spi_in: u32) -> Option<&mut ChildState> {
        self.children
            .iter_mut()
            .find(|c| c.spi_in == spi_in && !c.retiring)
    }

    /// The Child SA a peer names by `spi`: properly its own inbound SPI (our outbound); our
    /// inbound one is accepted too.
    pub(super) fn named_by_peer(&self, spi: u32) -> Option<&ChildState> {
        self.children
            .iter()
            .find(|c| c.spi_out == spi)
            .or_else(|| self.get(spi))
    }

    /// Our inbound SPIs of the Child SAs whose outbound SPIs (the peer's inbound) a peer's
    /// Delete payload lists.
    pub(super) fn deleted_by_peer(&self, spis: &[Vec<u8>]) -> Vec<u32> {
        self.children
            .iter()
            .filter(|c| spis.iter().any(|s| s.as_slice() == c.spi_out.to_be_bytes()))
            .map(|c| c.spi_in)
            .collect()
    }

    pub(super) fn remove(&mut self, spi_in: u32) -> Option<ChildState> {
        let i = self.children.iter().position(|c| c.spi_in == spi_in)?;
        Some(self.children.remove(i))
    }

    /// The Child SA is on its way out: never rekeyed again.
    pub(super) fn retire(&mut self, spi_in: u32) {
        if let Some(c) = self.children.iter_mut().find(|c| c.spi_in == spi_in) {
            c.retiring = true;
        }
    }

    /// Inbound SPIs of the Child SAs in use (not the ones being replaced or deleted).
    pub(super) fn live_spis(&self) -> Vec<u32> {
        self.children
            .iter()
            .filter(|c| !c.retiring)
            .map(|c| c.spi_in)
            .collect()
    }

    /// Inbound SPIs of every Child SA, in use or on its way out.
    pub(super) fn all_spis(&self) -> impl Iterator<Item = u32> + '_ {
        self.children.iter().map(|c| c.spi_in)
    }

    /// The earliest rekey of a Child SA in use or expiry of any.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.children
            .iter()
            .flat_map(|c| {
                let rekey = c.lifetime.rekey_at.filter(|_| !c.retiring);
                [rekey, c.lifetime.expire_at]
            })
            .flatten()
            .min()
    }

    /// A Child SA whose hard lifetime has run out, taken off the clock: its deletion is the
    /// caller's to start.
    pub(super) fn take_expired(&mut self, now: Instant) -> Option<u32> {
        let c = self.children.iter_mut().find(|c| c.lifetime.expired(now))?;
        c.lifetime.expire_at = None;
        Some(c.spi_in)
    }

    /// A Child SA in use whose rekey is due, taken off the clock: its rekey is the caller's
    /// to start.
    pub(super) fn take_due_rekey(&mut self, now: Instant) -> Option<u32> {
        let c = self
            .children
            .iter_mut()
            .find(|c| !c.retiring && c.lifetime.rekey_due(now))?;
        c.lifetime.rekey_at = None;
        Some(c.spi_in)
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.children.len()
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    #[cfg(test)]
    pub(super) fn iter(&self) -> impl Iterator<Item = &ChildState> {
        self.children.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lifetime_rekeys_between_80_and_90_percent_and_expires_at_its_end() {
        let now = Instant::now();
        let life = Some(Duration::from_secs(1000));
        let late = Lifetime::starting(now, life, 0.0);
        let early = Lifetime::starting(now, life, 1.0);
        assert_eq!(late.rekey_at, Some(now + Duration::from_secs(900)));
        assert_eq!(early.rekey_at, Some(now + Duration::from_secs(800)));
        assert_eq!(late.expire_at, Some(now + Duration::from_secs(1000)));
        assert!(!late.expired(now + Duration::from_secs(999)));
        assert!(late.expired(now + Duration::from_secs(1000)));
        assert!(late.rekey_due(now + Duration::from_secs(900)));
        assert_eq!(Lifetime::starting(now, None, 0.5), Lifetime::default());
    }
}
