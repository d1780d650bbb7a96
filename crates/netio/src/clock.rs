//! Suspend-aware monotonic time for the sans-IO cores.
//!
//! `std::time::Instant` (and tokio's timers) use `CLOCK_MONOTONIC`, which stops while the machine
//! is suspended. IKE/ESP lifetimes, DPD and rekey deadlines must count suspended time too: after a
//! 2-hour suspend an SA whose lifetime was 1 hour is dead, whatever `CLOCK_MONOTONIC` says.
//!
//! [`SuspendAwareClock::now`] returns a `std::time::Instant` that advances with `CLOCK_BOOTTIME`
//! (which includes suspend). The cores keep using plain `Instant`s for deadlines. How a resume
//! is seen:
//! - `clock.now()` jumps forward by the suspended duration on the first call after resume, so
//!   every deadline that passed during the suspend is overdue at once and a core's
//!   `handle_timeout(now)` fires them together.
//! - Values from this clock run ahead of `Instant::now()`; never mix the two, and never hand such
//!   a deadline to `tokio::time::sleep_until` directly. Convert with
//!   [`SuspendAwareClock::until`] and `tokio::time::sleep(dur)` instead. Tokio's sleeps do not
//!   advance during suspend either, so the shell should also wake on a resume signal (logind
//!   `PrepareForSleep(false)` or [`ResumeDetector`] polled from a short periodic tick) and
//!   re-evaluate its deadlines.

use std::time::{Duration, Instant};

fn read_clock(id: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime only writes into it.
    let rc = unsafe { libc::clock_gettime(id, &mut ts) };
    // CLOCK_BOOTTIME and CLOCK_MONOTONIC exist on every Linux >= 2.6.39; a failure would mean a
    // broken libc, and "time stands still" is the safest answer for timers.
    if rc != 0 {
        return Duration::ZERO;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(ts.tv_nsec).unwrap_or(0);
    Duration::new(secs, nanos)
}

/// Whether the kernel considers the wall clock synchronized (by NTP or PTP: what
/// `timedatectl` shows as "System clock synchronized"); `None` when it cannot be asked.
pub fn wall_clock_synchronized() -> Option<bool> {
    // SAFETY: an all-zero timex is valid input; with `modes` 0 adjtimex only reads the
    // kernel's clock state into it (no privilege needed, nothing changed).
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::adjtimex(&mut tx) };
    match state {
        -1 => None,
        libc::TIME_ERROR => Some(false),
        _ => Some(tx.status & libc::STA_UNSYNC == 0),
    }
}

/// Time since boot including time spent suspended (`CLOCK_BOOTTIME`).
pub fn boottime() -> Duration {
    read_clock(libc::CLOCK_BOOTTIME)
}

/// Time since boot excluding suspend (`CLOCK_MONOTONIC`, what `Instant` uses on Linux).
pub fn monotonic() -> Duration {
    read_clock(libc::CLOCK_MONOTONIC)
}

/// Produces `Instant`s that advance with `CLOCK_BOOTTIME` (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct SuspendAwareClock {
    anchor_instant: Instant,
    anchor_boot: Duration,
}

impl Default for SuspendAwareClock {
    fn default() -> Self {
        Self::new()
    }
}

impl SuspendAwareClock {
    /// Anchors the clock at the current moment; `now()` equals `Instant::now()` until the first
    /// suspend.
    pub fn new() -> Self {
        Self {
            anchor_instant: Instant::now(),
            anchor_boot: boottime(),
        }
    }

    /// Current time, advancing during suspend. Never goes backwards.
    pub fn now(&self) -> Instant {
        let elapsed = boottime().saturating_sub(self.anchor_boot);
        self.anchor_instant + elapsed
    }

    /// How long until `deadline` (a value derived from `self.now()`), zero if already due.
    /// Feed the result to `tokio::time::sleep`.
    pub fn until(&self, deadline: Instant) -> Duration {
        deadline.saturating_duration_since(self.now())
    }
}

/// Detects a resume from suspend: `CLOCK_BOOTTIME` advanced much more than `CLOCK_MONOTONIC`
/// since the previous observation.
#[derive(Debug, Clone)]
pub struct ResumeDetector {
    last_gap: Duration,
    threshold: Duration,
}

impl ResumeDetector {
    /// Starts observing now. Suspends shorter than `threshold` are not reported (the two clocks
    /// also drift apart by a few microseconds per sample for unrelated reasons).
    pub fn new(threshold: Duration) -> Self {
        Self::starting_at(boottime(), monotonic(), threshold)
    }

    /// Detector seeded with explicit clock readings (for tests and replay).
    pub fn starting_at(boot: Duration, mono: Duration, threshold: Duration) -> Self {
        Self {
            last_gap: boot.saturating_sub(mono),
            threshold,
        }
    }

    /// Reads both clocks; returns the time spent suspended since the last call if it exceeds the
    /// threshold.
    pub fn poll(&mut self) -> Option<Duration> {
        self.observe(boottime(), monotonic())
    }

    /// Same as [`poll`](Self::poll) with explicit clock readings.
    pub fn observe(&mut self, boot: Duration, mono: Duration) -> Option<Duration> {
        let gap = boot.saturating_sub(mono);
        let slept = gap.saturating_sub(self.last_gap);
        if slept >= self.threshold {
            self.last_gap = gap;
            Some(slept)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boottime_is_at_least_monotonic() {
        let mono = monotonic();
        let boot = boottime();
        assert!(boot >= mono, "boot {boot:?} < mono {mono:?}");
        assert!(boot > Duration::ZERO);
    }

    #[test]
    fn clock_tracks_instant_without_suspend() {
        let clock = SuspendAwareClock::new();
        let a = clock.now();
        std::thread::sleep(Duration::from_millis(20));
        let b = clock.now();
        let real = Instant::now();
        assert!(b >= a + Duration::from_millis(20));
        // Without a suspend both clocks agree to well under a second.
        let skew = if b > real { b - real } else { real - b };
        assert!(skew < Duration::from_millis(500), "skew {skew:?}");
        assert_eq!(clock.until(a), Duration::ZERO);
        let later = clock.now() + Duration::from_secs(10);
        assert!(clock.until(later) > Duration::from_secs(9));
    }

    #[test]
    fn resume_detected_when_boottime_jumps() {
        let s = Duration::from_secs;
        let mut d = ResumeDetector::starting_at(s(100), s(90), s(2));
        // Both clocks advance together: no resume.
        assert_eq!(d.observe(s(150), s(140)), None);
        // A 1 s divergence is below the threshold and does not move the reference.
        assert_eq!(d.observe(s(160), s(149)), None);
        // A suspend of one hour: boot advances 3600 s more than mono.
        assert_eq!(d.observe(s(3_800), s(190)), Some(s(3_600)));
        // Reported once only.
        assert_eq!(d.observe(s(3_810), s(200)), None);
    }

    #[test]
    fn real_clocks_report_no_resume_during_a_test() {
        let mut d = ResumeDetector::new(Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(d.poll(), None);
    }
}
