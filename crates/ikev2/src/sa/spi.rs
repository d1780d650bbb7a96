//! SPIs: the IKE SA's own (never zero) and the inbound ESP SPIs of its Child SAs, unique
//! across every SA of one endpoint.

use std::sync::Arc;

use ipsec_crypto::Provider;

use super::{IkeSa, IkeSaState};

/// A random IKE SPI: zero is the responder's SPI not chosen yet (RFC 7296 3.1), never ours.
pub(super) fn nonzero_u64(p: &Provider) -> Result<u64, ipsec_crypto::CryptoError> {
    loop {
        let v = u64::from_be_bytes(p.random_array()?);
        if v != 0 {
            return Ok(v);
        }
    }
}

/// The inbound ESP SPIs in use by every SA of one endpoint: a new one is never one of them
/// (a random pick collides with some installed SA about 1% of the time at 10,000 SAs, and
/// the data plane would then take the newer SA's packets for the older's).
#[derive(Debug, Clone, Default)]
pub(crate) struct SpiSet(Arc<std::sync::Mutex<std::collections::HashSet<u32>>>);

impl SpiSet {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<u32>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A fresh SPI above the reserved range (1-255, RFC 4303), unused in this set.
    pub(super) fn allocate(&self, p: &Provider) -> Result<u32, ipsec_crypto::CryptoError> {
        loop {
            let v = u32::from_be_bytes(p.random_array()?);
            if v > 255 && self.lock().insert(v) {
                return Ok(v);
            }
        }
    }

    pub(super) fn release(&self, spi: u32) {
        self.lock().remove(&spi);
    }

    /// How many SPIs are in use (for tests).
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

impl Drop for IkeSa {
    fn drop(&mut self) {
        for spi in self.own_spis.drain(..) {
            self.spis.release(spi);
        }
    }
}

impl IkeSa {
    /// A fresh inbound SPI for a Child SA, unique in the endpoint.
    pub(super) fn new_child_spi(&mut self) -> Result<u32, ipsec_crypto::CryptoError> {
        let spi = self.spis.allocate(&self.provider)?;
        self.own_spis.push(spi);
        Ok(spi)
    }

    /// The Child SA with inbound `spi` is gone: its SPI may be used again.
    pub(super) fn release_child_spi(&mut self, spi: u32) {
        if let Some(i) = self.own_spis.iter().position(|s| *s == spi) {
            self.own_spis.swap_remove(i);
            self.spis.release(spi);
        }
    }

    /// Moves this SA's SPIs into the endpoint's set; an SPI some other SA already holds (only
    /// possible for an initiator's first Child SA, before IKE_AUTH carries it) is replaced.
    pub(crate) fn join_spis(&mut self, shared: &SpiSet) -> Result<(), ipsec_crypto::CryptoError> {
        let mine = std::mem::take(&mut self.own_spis);
        for spi in &mine {
            self.spis.release(*spi);
        }
        self.spis = shared.clone();
        for spi in mine {
            if self.spis.lock().insert(spi) {
                self.own_spis.push(spi);
            } else if spi == self.child_spi_in
                && matches!(self.state, IkeSaState::HalfOpen | IkeSaState::InitSent)
            {
                // Not sent to the peer yet (it goes in IKE_AUTH): another one will do.
                self.child_spi_in = self.new_child_spi()?;
            }
        }
        Ok(())
    }
}
