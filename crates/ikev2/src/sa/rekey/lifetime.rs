//! Lifetimes: acting on the IKE SA's and each Child SA's [`Lifetime`] (rekey, or delete when
//! it has run out), and retries after TEMPORARY_FAILURE.

use std::time::{Duration, Instant};

use ike_wire::{Delete, ExchangeType, Payload};

use super::{RETRY_BASE, RETRY_JITTER, Rekeying};
use crate::event::{ChildSa, CloseReason, Event};
use crate::sa::children::{ChildState, Lifetime};
use crate::sa::{IkeSa, IkeSaState};

impl IkeSa {
    /// The lifetime of something created `now` that lives `life`, with its random jitter.
    fn new_lifetime(&self, now: Instant, life: Option<Duration>) -> Lifetime {
        Lifetime::starting(now, life, self.random_fraction())
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
        self.ike_lifetime = self.new_lifetime(now, self.cfg.ike().ike_lifetime);
    }

    /// Starts tracking a new Child SA (its lifetime starts now).
    pub(in crate::sa) fn register_child(&mut self, now: Instant, c: &ChildSa) {
        let lifetime = self.new_lifetime(now, self.cfg.ike().child_lifetime);
        self.children.insert(ChildState::new(c, lifetime));
    }

    /// Releases the SPIs this SA allocated that nothing refers to any more (a refused or lost
    /// rekey's, a first Child SA that never came): every Child SA, the first one while it is
    /// negotiated, and an outstanding or colliding rekey keep theirs.
    pub(crate) fn sweep_spis(&mut self) {
        let mut live: Vec<u32> = self.children.all_spis().collect();
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
        if let Some(c) = self.children.remove(spi_in) {
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
        [
            self.ike_lifetime.rekey_at,
            self.ike_lifetime.expire_at,
            self.children.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Acts on due lifetimes: hard expiry first, then IKE rekey, then Child SA rekeys.
    pub(in crate::sa) fn run_lifetimes(&mut self, now: Instant) {
        if self.state != IkeSaState::Established || self.window.request_outstanding() {
            return;
        }
        if self.ike_lifetime.expired(now) {
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
        if let Some(spi_in) = self.children.take_expired(now) {
            self.send_delete_child(now, spi_in);
            return;
        }
        if self.ike_lifetime.rekey_due(now) {
            if self.retired.is_some() {
                // The previous IKE SA is still being deleted: one at a time.
                self.ike_lifetime.rekey_at = Some(self.retry_at(now));
            } else {
                self.ike_lifetime.rekey_at = None;
                if let Err(e) = self.start_ike_rekey(now) {
                    self.rekey_failed(e.into(), None);
                }
                return;
            }
        }
        if let Some(spi_in) = self.children.take_due_rekey(now)
            && let Err(e) = self.start_child_rekey(now, spi_in)
        {
            self.rekey_failed(e.into(), None);
        }
    }
}
