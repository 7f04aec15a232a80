//! Freeze: detects video freezes on a DownTrack, as a receiver would see them.
//!
//! A freeze is a gap between two forwarded frames longer than `max(3 × average frame
//! interval, average + 150 ms)` (the definition of W3C webrtc-stats `freezeCount`). Pauses
//! the SFU makes on purpose (camera off, waiting for a keyframe) are not freezes: call
//! [`FreezeDetector::pause`] and the next frame starts a fresh measurement.

use std::time::{Duration, Instant};

/// Per-DownTrack freeze accounting.
#[derive(Debug, Clone, Default)]
pub struct FreezeDetector {
    last_frame: Option<(u32, Instant)>,
    /// Average frame interval, in microseconds (exponentially weighted).
    average_us: Option<f64>,
    /// Freezes seen.
    pub count: u32,
    /// Total time frozen (the part of each freeze beyond the average interval).
    pub duration: Duration,
}

impl FreezeDetector {
    /// A packet with RTP timestamp `ts` was forwarded at `now`.
    pub fn on_packet(&mut self, ts: u32, now: Instant) {
        match self.last_frame {
            Some((last_ts, _)) if last_ts == ts => {}
            Some((_, last_at)) => {
                let gap = now.saturating_duration_since(last_at);
                let gap_us = gap.as_micros() as f64;
                if let Some(avg) = self.average_us {
                    let threshold = (3.0 * avg).max(avg + 150_000.0);
                    if gap_us > threshold {
                        self.count += 1;
                        self.duration += Duration::from_micros((gap_us - avg) as u64);
                    } else {
                        self.average_us = Some(avg * 0.9 + gap_us * 0.1);
                    }
                } else {
                    self.average_us = Some(gap_us);
                }
                self.last_frame = Some((ts, now));
            }
            None => self.last_frame = Some((ts, now)),
        }
    }

    /// Forwarding stopped on purpose; the gap until the next frame is not a freeze.
    pub fn pause(&mut self) {
        self.last_frame = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_gap_is_a_freeze_and_a_pause_is_not() {
        let t0 = Instant::now();
        let mut f = FreezeDetector::default();
        let mut t = t0;
        for i in 0..30u32 {
            f.on_packet(i * 3000, t);
            f.on_packet(i * 3000, t); // second packet of the frame
            t += Duration::from_millis(33);
        }
        assert_eq!(f.count, 0);
        t += Duration::from_millis(500);
        f.on_packet(99 * 3000, t);
        assert_eq!(f.count, 1);
        assert!(f.duration > Duration::from_millis(400));
        f.pause();
        t += Duration::from_secs(10);
        f.on_packet(500 * 3000, t);
        f.on_packet(501 * 3000, t + Duration::from_millis(33));
        assert_eq!(f.count, 1);
    }
}
