//! Anti-replay window (RFC 4303 section 3.4.3, RFC 6479-style ring bitmap).
//!
//! Large windows matter here: packets of one SA that are decrypted on several cores reach the
//! window out of order, and a small window would drop them as "too old".

/// Smallest window the crate accepts.
pub const MIN_REPLAY_WINDOW: u32 = 1024;
/// Default window: covers 4096 packets of reordering.
pub const DEFAULT_REPLAY_WINDOW: u32 = 4096;

/// Why a sequence number was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayVerdict {
    /// Already received.
    Duplicate,
    /// Left of the window (or 0, which is never sent).
    TooOld,
}

/// Bitmap of the last `size` sequence numbers below and including the highest one received.
#[derive(Clone)]
pub struct ReplayWindow {
    /// Highest sequence number authenticated so far (0 = none).
    top: u64,
    /// Ring of `size` bits; bit `seq % size` records `seq`.
    bits: Box<[u64]>,
    size: u64,
}

impl core::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("top", &self.top)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl ReplayWindow {
    /// A window of `size` packets, rounded up to a multiple of 64 and at least
    /// [`MIN_REPLAY_WINDOW`]. Allocates once.
    pub fn new(size: u32) -> Self {
        let size = u64::from(size.max(MIN_REPLAY_WINDOW)).div_ceil(64) * 64;
        Self {
            top: 0,
            bits: vec![0u64; (size / 64) as usize].into_boxed_slice(),
            size,
        }
    }

    /// Window size in packets.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Highest sequence number accepted so far.
    pub fn highest(&self) -> u64 {
        self.top
    }

    fn slot(&self, seq: u64) -> (usize, u64) {
        let bit = seq % self.size;
        ((bit / 64) as usize, 1u64 << (bit % 64))
    }

    /// Would `seq` be accepted? Does not change the window: call [`Self::accept`] only after the
    /// packet authenticated.
    pub fn check(&self, seq: u64) -> Result<(), ReplayVerdict> {
        if seq == 0 {
            return Err(ReplayVerdict::TooOld);
        }
        if seq > self.top {
            return Ok(());
        }
        if self.top - seq >= self.size {
            return Err(ReplayVerdict::TooOld);
        }
        let (word, mask) = self.slot(seq);
        match self.bits.get(word) {
            Some(w) if w & mask == 0 => Ok(()),
            _ => Err(ReplayVerdict::Duplicate),
        }
    }

    /// Check and record `seq`.
    pub fn accept(&mut self, seq: u64) -> Result<(), ReplayVerdict> {
        self.check(seq)?;
        if seq > self.top {
            let advance = seq - self.top;
            if advance >= self.size {
                self.bits.fill(0);
            } else {
                // Clear the slots of the sequence numbers the window slides over.
                let mut s = self.top + 1;
                while s < seq {
                    let (word, mask) = self.slot(s);
                    if mask == 1 && seq - s >= 64 {
                        // Whole word falls inside the slide.
                        if let Some(w) = self.bits.get_mut(word) {
                            *w = 0;
                        }
                        s += 64;
                        continue;
                    }
                    if let Some(w) = self.bits.get_mut(word) {
                        *w &= !mask;
                    }
                    s += 1;
                }
            }
            self.top = seq;
        }
        let (word, mask) = self.slot(seq);
        if let Some(w) = self.bits.get_mut(word) {
            *w |= mask;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_then_duplicate() {
        let mut w = ReplayWindow::new(1024);
        for s in 1..=5000 {
            assert_eq!(w.accept(s), Ok(()));
        }
        assert_eq!(w.check(5000), Err(ReplayVerdict::Duplicate));
        assert_eq!(w.check(4000), Err(ReplayVerdict::Duplicate));
        assert_eq!(w.check(3976), Err(ReplayVerdict::TooOld));
        assert_eq!(w.check(0), Err(ReplayVerdict::TooOld));
    }

    #[test]
    fn reordered_within_window_accepted_once() {
        let mut w = ReplayWindow::new(1024);
        assert_eq!(w.accept(2000), Ok(()));
        // 1024 back from the top: 977..=2000 are in the window.
        for s in (977..2000).rev() {
            assert_eq!(w.accept(s), Ok(()), "seq {s}");
            assert_eq!(w.accept(s), Err(ReplayVerdict::Duplicate));
        }
        assert_eq!(w.accept(976), Err(ReplayVerdict::TooOld));
    }

    #[test]
    fn sliding_clears_old_slots() {
        let mut w = ReplayWindow::new(1024);
        assert_eq!(w.accept(1), Ok(()));
        // Slot of 1 is reused by 1025; it must not look like a duplicate.
        assert_eq!(w.accept(1025), Ok(()));
        assert_eq!(w.accept(1), Err(ReplayVerdict::TooOld));
        // A jump past the whole window clears everything.
        assert_eq!(w.accept(100_000), Ok(()));
        for s in 100_000 - 1023..100_000 {
            assert_eq!(w.check(s), Ok(()));
        }
        // A jump of 130 spanning word boundaries, then every skipped number is still open.
        assert_eq!(w.accept(99_990), Ok(()));
        assert_eq!(w.accept(100_130), Ok(()));
        for s in 100_001..100_130 {
            assert_eq!(w.check(s), Ok(()), "seq {s}");
        }
        assert_eq!(w.check(99_990), Err(ReplayVerdict::Duplicate));
    }

    #[test]
    fn window_size_is_rounded_and_floored() {
        assert_eq!(ReplayWindow::new(10).size(), 1024);
        assert_eq!(ReplayWindow::new(1025).size(), 1088);
        assert_eq!(ReplayWindow::new(DEFAULT_REPLAY_WINDOW).size(), 4096);
    }
}
