//! Lifetimes: when each Child SA and the IKE SA are rekeyed (RFC 7296 2.8: some jitter, so
//! the two ends rarely start at once), and retries after TEMPORARY_FAILURE.

use std::time::{Duration, Instant};

use ike_wire::{Delete, ExchangeType, Payload};

use super::{ChildState, RETRY_BASE, RETRY_JITTER, Rekeying};
use crate::event::{ChildSa, CloseReason, Event};
use crate::sa::{IkeSa, IkeSaState};

impl IkeSa {
    /// (rekey, expire) for something created now with `lifetime`: rekey at 90 % minus a
    /// random share of up to 10 %, so that the two peers rarely rekey at the same moment.
    pub(super) fn lifetime_deadlines(
        &self,
        now: Instant,
        lifetime: Option<Duration>,
    ) -> (Option<Instant>, Option<Instant>) {
        let Some(life) = lifetime else {
            return (None, None);
        };
        let jitter = life.mul_f64(0.1 * self.random_fraction());
        (
            Some(now + life.mul_f64(0.9).saturating_sub(jitter)),
            Some(now + life),
        )
    }

    pub(super) fn random_fraction(&self) -> f64 {
        let r = self
            .provider
            .random_array::<4>()
            .map(u32::from_be_bytes)
            .unwrap_or(u32::MAX / 2);
        f64::from(r) / f64::from(u32::MAX)
    }

    pub(super) fn retry_at(&self, now: Instant) -> Instant {
        now + RETRY_BASE + RETRY_JITTER.mul_f64(self.random_fraction())
    }

    pub(in crate::sa) fn start_ike_lifetime(&mut self, now: Instant) {
        let (rekey, expire) = self.lifetime_deadlines(now, self.cfg.ike().ike_lifetime);
        self.ike_rekey_at = rekey;
        self.ike_expire_at = expire;
    }

    /// Starts tracking a new Child SA (its lifetime starts now).
    pub(in crate::sa) fn register_child(&mut self, now: Instant, c: &ChildSa) {
        let (rekey_at, expire_at) = self.lifetime_deadlines(now, self.cfg.ike().child_lifetime);
        self.children.push(ChildState {
            spi_in: c.spi_in,
            spi_out: c.spi_out,
            ts_local: c.ts_local.clone(),
            ts_remote: c.ts_remote.clone(),
            virtual_ips: c.virtual_ips.clone(),
            dns_servers: c.dns_servers.clone(),
            dns_domains: c.dns_domains.clone(),
            subnets: c.subnets.clone(),
            rekey_at,
            expire_at,
            retiring: false,
        });
    }

    /// Releases the SPIs this SA allocated that nothing refers to any more (a refused or lost
    /// rekey's, a first Child SA that never came): every Child SA, the first one while it is
    /// negotiated, and an outstanding or colliding rekey keep theirs.
    pub(crate) fn sweep_spis(&mut self) {
        let mut live: Vec<u32> = self.children.iter().map(|c| c.spi_in).collect();
        if matches!(
            self.state,
            IkeSaState::InitSent | IkeSaState::AuthSent | IkeSaState::HalfOpen
        ) {
            live.push(self.child_spi_in);
        }
        if let Some(Rekeying::Child {
            spi_in, collision, ..
        }) = &self.rekeying
        {
            live.push(*spi_in);
            if let Some(c) = collision {
                live.push(c.new.spi_in);
            }
        }
        let stale: Vec<u32> = self
            .own_spis
            .iter()
            .copied()
            .filter(|s| !live.contains(s))
            .collect();
        for spi in stale {
            self.release_child_spi(spi);
        }
    }

    /// A Child SA is gone (deleted by either side).
    pub(in crate::sa) fn child_gone(&mut self, spi_in: u32) {
        if let Some(i) = self.children.iter().position(|c| c.spi_in == spi_in) {
            let c = self.children.remove(i);
            self.release_child_spi(c.spi_in);
            self.events.push_back(Event::ChildSaDeleted {
                spi_in: c.spi_in,
                spi_out: c.spi_out,
            });
        }
    }

    /// The next rekey or expiry, when one of them can be acted upon (no request outstanding).
    pub(in crate::sa) fn lifetime_deadline(&self) -> Option<Instant> {
        if self.state != IkeSaState::Established || self.window.request_outstanding() {
            return None;
        }
        let children = self.children.iter().flat_map(|c| {
            let rekey = c.rekey_at.filter(|_| !c.retiring);
            [rekey, c.expire_at]
        });
        [self.ike_rekey_at, self.ike_expire_at]
            .into_iter()
            .chain(children)
            .flatten()
            .min()
    }

    /// Acts on due lifetimes: hard expiry first, then IKE rekey, then Child SA rekeys.
    pub(in crate::sa) fn run_lifetimes(&mut self, now: Instant) {
        if self.state != IkeSaState::Established || self.window.request_outstanding() {
            return;
        }
        if self.ike_expire_at.is_some_and(|t| t <= now) {
            // Say goodbye without waiting: the SA's time is up.
            let id = self.window.next_request_id();
            if let Ok(datagrams) = self.protect(
                ExchangeType::INFORMATIONAL,
                id,
                false,
                &[Payload::Delete(Delete::ike())],
            ) {
                for d in datagrams {
                    self.push_transmit(d);
                }
            }
            self.close(CloseReason::Expired);
            return;
        }
        if let Some(c) = self
            .children
            .iter_mut()
            .find(|c| c.expire_at.is_some_and(|t| t <= now))
        {
            c.expire_at = None;
            let spi_in = c.spi_in;
            self.send_delete_child(now, spi_in);
            return;
        }
        if self.ike_rekey_at.is_some_and(|t| t <= now) {
            if self.retired.is_some() {
                // The previous IKE SA is still being deleted: one at a time.
                self.ike_rekey_at = Some(self.retry_at(now));
            } else {
                self.ike_rekey_at = None;
                if let Err(e) = self.start_ike_rekey(now) {
                    self.rekey_failed(e.into(), None);
                }
                return;
            }
        }
        if let Some(c) = self
            .children
            .iter_mut()
            .find(|c| !c.retiring && c.rekey_at.is_some_and(|t| t <= now))
        {
            c.rekey_at = None;
            let spi_in = c.spi_in;
            if let Err(e) = self.start_child_rekey(now, spi_in) {
                self.rekey_failed(e.into(), None);
            }
        }
    }
}
