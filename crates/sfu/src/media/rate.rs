//! Rate: a bitrate measured from a byte counter sampled on the engine's tick.

use std::time::Instant;

/// Smoothed bits per second of a growing byte counter.
#[derive(Debug, Clone, Copy, Default)]
pub struct RateMeter {
    last: Option<(u64, Instant)>,
    bps: f64,
}

impl RateMeter {
    /// Samples the counter (`bytes` = total so far). Samples closer than 250 ms to the
    /// previous one are skipped; each kept sample moves the estimate a third of the way to
    /// the rate since the previous one (about a second of memory).
    pub fn sample(&mut self, bytes: u64, now: Instant) {
        if let Some((b, t)) = self.last {
            let dt = now.saturating_duration_since(t).as_secs_f64();
            if dt < 0.25 {
                return;
            }
            let rate = bytes.saturating_sub(b) as f64 * 8.0 / dt;
            self.bps = if self.bps == 0.0 {
                rate
            } else {
                self.bps + (rate - self.bps) / 3.0
            };
        }
        self.last = Some((bytes, now));
    }

    /// The rate, bits per second.
    pub fn bps(&self) -> u64 {
        self.bps as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn converges_to_the_rate() {
        let mut t = Instant::now();
        let mut m = RateMeter::default();
        let mut bytes = 0;
        for _ in 0..20 {
            m.sample(bytes, t);
            bytes += 31_250; // 1 Mbit/s at 4 Hz
            t += Duration::from_millis(250);
        }
        assert!((990_000..=1_010_000).contains(&m.bps()), "{}", m.bps());
    }
}
