//! CameraUsage: how long a participant's camera has been on, for the call record.
//!
//! A stopwatch driven by the caller's clock: every change passes `now`. It never reads a
//! clock and never panics on time arithmetic: a `now` earlier than one already seen is
//! treated as that later instant, so the total never goes down.

use std::time::{Duration, Instant};

/// Accumulated camera-on time of one participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CameraUsage {
    on_since: Option<Instant>,
    accumulated: Duration,
    latest: Option<Instant>,
    ever_on: bool,
}

impl CameraUsage {
    /// A stopwatch that has never run.
    pub const fn new() -> CameraUsage {
        CameraUsage {
            on_since: None,
            accumulated: Duration::ZERO,
            latest: None,
            ever_on: false,
        }
    }

    /// `now`, or the latest instant already seen if that is later.
    fn observe(&mut self, now: Instant) -> Instant {
        let now = match self.latest {
            Some(latest) if latest > now => latest,
            _ => now,
        };
        self.latest = Some(now);
        now
    }

    /// The camera turned on at `now`. No effect if it is already on.
    pub fn start(&mut self, now: Instant) {
        let now = self.observe(now);
        if self.on_since.is_none() {
            self.on_since = Some(now);
            self.ever_on = true;
        }
    }

    /// The camera turned off at `now`: the running interval is added to the total. No effect
    /// if it is already off.
    pub fn stop(&mut self, now: Instant) {
        let now = self.observe(now);
        if let Some(since) = self.on_since.take() {
            self.accumulated = self
                .accumulated
                .saturating_add(now.saturating_duration_since(since));
        }
    }

    /// Whether the camera is on now.
    pub const fn is_on(&self) -> bool {
        self.on_since.is_some()
    }

    /// When the running interval started, if the camera is on.
    pub const fn on_since(&self) -> Option<Instant> {
        self.on_since
    }

    /// Whether the camera was ever on (the record's "camera used").
    pub const fn ever_on(&self) -> bool {
        self.ever_on
    }

    /// The sum of the finished on-intervals (not counting a running one).
    pub const fn accumulated(&self) -> Duration {
        self.accumulated
    }

    /// The total on-time up to `now`: finished intervals plus the running one, if any.
    pub fn total(&self, now: Instant) -> Duration {
        match self.on_since {
            Some(since) => {
                let now = self.latest.map_or(now, |latest| latest.max(now));
                self.accumulated
                    .saturating_add(now.saturating_duration_since(since))
            }
            None => self.accumulated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_add_up() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut u = CameraUsage::new();
        assert_eq!(u.total(t0 + s(100)), Duration::ZERO);
        assert!(!u.ever_on());

        u.start(t0 + s(10));
        u.start(t0 + s(12)); // already on: the interval still starts at 10
        assert_eq!(u.on_since(), Some(t0 + s(10)));
        assert_eq!(u.total(t0 + s(15)), s(5));
        u.stop(t0 + s(20));
        u.stop(t0 + s(25)); // already off
        assert_eq!(u.accumulated(), s(10));
        assert_eq!(u.total(t0 + s(99)), s(10));

        u.start(t0 + s(30));
        assert_eq!(u.total(t0 + s(31)), s(11));
        u.stop(t0 + s(40));
        assert_eq!(u.total(t0 + s(40)), s(20));
        assert!(u.ever_on() && !u.is_on());
    }

    #[test]
    fn time_going_backwards_never_lowers_the_total() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut u = CameraUsage::new();
        u.start(t0 + s(10));
        u.stop(t0 + s(5)); // earlier than the start: counts as 10
        assert_eq!(u.accumulated(), Duration::ZERO);
        u.start(t0 + s(20));
        assert_eq!(
            u.total(t0),
            Duration::ZERO,
            "now before latest counts as latest"
        );
        assert_eq!(u.total(t0 + s(21)), s(1));
    }
}
