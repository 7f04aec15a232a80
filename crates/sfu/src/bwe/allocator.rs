//! Allocator: which video a participant's downlink can carry — a simulcast layer, or nothing.
//!
//! Audio first: the audio the participant receives is subtracted from the estimate before
//! any video is considered, and video pauses when what is left cannot carry the lowest layer.
//! Moves are asymmetric, as in every production SFU: down at once, up only after the estimate
//! has shown the margin for a while, and back from a pause only after a longer, larger
//! recovery — so a flapping estimate never flaps the picture.

use std::time::{Duration, Instant};

/// One simulcast layer (or the single stream) of a published video track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerInfo {
    /// Its SSRC.
    pub ssrc: u32,
    /// Its measured bitrate, bits per second (0 while it is not sending).
    pub bitrate_bps: u64,
}

/// What a video DownTrack forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// This layer.
    Layer(u32),
    /// Nothing: the downlink cannot carry video next to the audio.
    Paused,
}

/// The allocator's knobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AllocatorConfig {
    /// Fraction of the estimate the SFU plans to use (the rest is headroom for RTCP,
    /// retransmissions and estimate error).
    pub utilization: f64,
    /// An upgrade needs the layer's bitrate times this...
    pub upgrade_margin: f64,
    /// ...for this long.
    pub upgrade_after: Duration,
    /// Video pauses after the lowest layer has not fit for this long.
    pub pause_after: Duration,
    /// A pause ends when the lowest layer's bitrate times this fits...
    pub resume_margin: f64,
    /// ...for this long.
    pub resume_after: Duration,
    /// The least video worth sending (a single-layer stream is paused below it; a simulcast
    /// lowest layer counts as at least this).
    pub min_video_bps: u64,
}

impl Default for AllocatorConfig {
    fn default() -> Self {
        AllocatorConfig {
            utilization: 0.9,
            upgrade_margin: 1.15,
            upgrade_after: Duration::from_secs(2),
            pause_after: Duration::from_secs(1),
            resume_margin: 1.5,
            resume_after: Duration::from_secs(3),
            min_video_bps: 60_000,
        }
    }
}

/// Per-DownTrack allocation state.
#[derive(Debug, Clone)]
pub struct Allocator {
    config: AllocatorConfig,
    current: Option<Allocation>,
    /// Since when a better allocation than the current one has fit.
    better_since: Option<(Allocation, Instant)>,
    /// Since when the lowest layer has not fit.
    starved_since: Option<Instant>,
}

impl Allocator {
    /// A new allocator; the first update picks what fits.
    pub fn new(config: AllocatorConfig) -> Self {
        Allocator {
            config,
            current: None,
            better_since: None,
            starved_since: None,
        }
    }

    /// The current allocation.
    pub fn current(&self) -> Option<Allocation> {
        self.current
    }

    /// Decides again. `estimate_bps` is the downlink estimate (`None`: unknown, no
    /// constraint), `audio_bps` the audio being sent to the participant, `layers` the video
    /// layers on offer, **sorted by bitrate, lowest first**. Returns the new allocation when
    /// it changed.
    pub fn update(
        &mut self,
        now: Instant,
        estimate_bps: Option<u64>,
        audio_bps: u64,
        layers: &[LayerInfo],
    ) -> Option<Allocation> {
        let active: Vec<LayerInfo> = layers
            .iter()
            .copied()
            .filter(|l| l.bitrate_bps > 0)
            .collect();
        let (Some(lowest), Some(highest)) = (active.first(), active.last()) else {
            return None;
        };
        let single = active.len() == 1;
        // A single stream adapts to the link itself (we cap it with REMB); it only has to
        // be worth sending. A simulcast layer costs what it measures.
        let cost = |l: &LayerInfo| {
            if single {
                self.config.min_video_bps
            } else {
                l.bitrate_bps.max(self.config.min_video_bps)
            }
        };
        let Some(estimate) = estimate_bps else {
            return self.set(Allocation::Layer(highest.ssrc));
        };
        let available = (estimate as f64 * self.config.utilization - audio_bps as f64).max(0.0);
        let fits = |l: &LayerInfo, margin: f64| cost(l) as f64 * margin <= available;
        let best = active.iter().rev().find(|l| fits(l, 1.0)).copied();

        match (self.current, best) {
            // Nothing fits: keep what we have until it has been so for `pause_after`.
            (current, None) => {
                self.better_since = None;
                let since = *self.starved_since.get_or_insert(now);
                if current != Some(Allocation::Paused)
                    && now.saturating_duration_since(since) >= self.config.pause_after
                {
                    return self.set(Allocation::Paused);
                }
                // Meanwhile, the lowest layer is the least harm.
                match current {
                    Some(Allocation::Layer(s)) if s != lowest.ssrc => {
                        self.set(Allocation::Layer(lowest.ssrc))
                    }
                    None => self.set(Allocation::Layer(lowest.ssrc)),
                    _ => None,
                }
            }
            (None, Some(best)) => {
                self.starved_since = None;
                self.set(Allocation::Layer(best.ssrc))
            }
            (Some(Allocation::Paused), Some(_)) => {
                // Resume only when the lowest layer fits with a wide margin, for a while.
                self.starved_since = None;
                let target = Allocation::Layer(lowest.ssrc);
                if !fits(lowest, self.config.resume_margin) {
                    self.better_since = None;
                    return None;
                }
                self.after(now, target, self.config.resume_after)
            }
            (Some(Allocation::Layer(current)), Some(best)) => {
                self.starved_since = None;
                let current_rank = active.iter().position(|l| l.ssrc == current);
                let best_rank = active.iter().position(|l| l.ssrc == best.ssrc);
                match (current_rank, best_rank) {
                    // The current layer vanished: take what fits now.
                    (None, _) => self.set(Allocation::Layer(best.ssrc)),
                    // Down at once.
                    (Some(c), Some(b)) if b < c => self.set(Allocation::Layer(best.ssrc)),
                    (Some(c), Some(b)) if b > c => {
                        // Up one step at a time, each with the margin, after a while.
                        let next = active[c + 1];
                        if fits(&next, self.config.upgrade_margin) {
                            self.after(now, Allocation::Layer(next.ssrc), self.config.upgrade_after)
                        } else {
                            self.better_since = None;
                            None
                        }
                    }
                    _ => {
                        self.better_since = None;
                        None
                    }
                }
            }
        }
    }

    fn after(&mut self, now: Instant, target: Allocation, wait: Duration) -> Option<Allocation> {
        let since = match self.better_since {
            Some((t, since)) if t == target => since,
            _ => {
                self.better_since = Some((target, now));
                now
            }
        };
        if now.saturating_duration_since(since) >= wait {
            self.set(target)
        } else {
            None
        }
    }

    fn set(&mut self, allocation: Allocation) -> Option<Allocation> {
        self.better_since = None;
        if self.current == Some(allocation) {
            return None;
        }
        if allocation == Allocation::Paused || matches!(self.current, Some(Allocation::Paused)) {
            self.starved_since = None;
        }
        self.current = Some(allocation);
        Some(allocation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: u32 = 1;
    const H: u32 = 2;
    const F: u32 = 3;

    fn layers() -> [LayerInfo; 3] {
        [
            LayerInfo {
                ssrc: Q,
                bitrate_bps: 150_000,
            },
            LayerInfo {
                ssrc: H,
                bitrate_bps: 500_000,
            },
            LayerInfo {
                ssrc: F,
                bitrate_bps: 1_500_000,
            },
        ]
    }

    /// Feeds a constant estimate for `secs`, in 250 ms ticks; returns the last change.
    fn run(a: &mut Allocator, t: &mut Instant, secs: f64, estimate: u64) -> Option<Allocation> {
        let mut last = None;
        let ticks = (secs / 0.25) as usize;
        for _ in 0..ticks {
            *t += Duration::from_millis(250);
            if let Some(x) = a.update(*t, Some(estimate), 40_000, &layers()) {
                last = Some(x);
            }
        }
        last
    }

    #[test]
    fn picks_what_fits_goes_down_at_once_and_up_slowly() {
        let mut t = Instant::now();
        let mut a = Allocator::new(AllocatorConfig::default());
        assert_eq!(
            a.update(t, Some(3_000_000), 40_000, &layers()),
            Some(Allocation::Layer(F))
        );
        // The link drops: down to the lowest layer on the next tick.
        assert_eq!(
            run(&mut a, &mut t, 0.25, 300_000),
            Some(Allocation::Layer(Q))
        );
        // Recovers: one step after the wait, then the next.
        assert_eq!(run(&mut a, &mut t, 1.5, 3_000_000), None);
        assert_eq!(
            run(&mut a, &mut t, 1.0, 3_000_000),
            Some(Allocation::Layer(H))
        );
        assert_eq!(
            run(&mut a, &mut t, 2.5, 3_000_000),
            Some(Allocation::Layer(F))
        );
    }

    #[test]
    fn audio_first_pause_and_hysteresis_on_resume() {
        let mut t = Instant::now();
        let mut a = Allocator::new(AllocatorConfig::default());
        a.update(t, Some(3_000_000), 40_000, &layers());
        // 60 kbit/s cannot carry 150 kbit/s of video next to 40 kbit/s of audio.
        assert_eq!(run(&mut a, &mut t, 0.5, 60_000), Some(Allocation::Layer(Q)));
        assert_eq!(run(&mut a, &mut t, 1.0, 60_000), Some(Allocation::Paused));
        // Just enough for the lowest layer is not enough to resume...
        assert_eq!(run(&mut a, &mut t, 10.0, 240_000), None);
        // ...a sustained margin is.
        assert_eq!(run(&mut a, &mut t, 2.5, 3_000_000), None);
        assert_eq!(
            run(&mut a, &mut t, 1.0, 3_000_000),
            Some(Allocation::Layer(Q))
        );
    }

    #[test]
    fn a_single_stream_is_kept_unless_below_the_minimum() {
        let mut t = Instant::now();
        let mut a = Allocator::new(AllocatorConfig::default());
        let one = [LayerInfo {
            ssrc: 7,
            bitrate_bps: 1_200_000,
        }];
        assert_eq!(
            a.update(t, Some(300_000), 40_000, &one),
            Some(Allocation::Layer(7))
        );
        for _ in 0..8 {
            t += Duration::from_millis(250);
            assert_eq!(a.update(t, Some(300_000), 40_000, &one), None);
        }
        let mut paused = None;
        for _ in 0..8 {
            t += Duration::from_millis(250);
            paused = paused.or(a.update(t, Some(80_000), 40_000, &one));
        }
        assert_eq!(paused, Some(Allocation::Paused));
    }

    #[test]
    fn unknown_estimate_forwards_the_top_layer() {
        let mut a = Allocator::new(AllocatorConfig::default());
        assert_eq!(
            a.update(Instant::now(), None, 0, &layers()),
            Some(Allocation::Layer(F))
        );
    }
}
