//! Allocator: which video a participant's downlink can carry — a simulcast layer, or nothing.
//!
//! Audio first: the audio the participant receives is subtracted from the estimate before
//! any video is considered, and video pauses when what is left cannot carry the lowest layer.
//! Moves are asymmetric, as in every production SFU: down at once, up only after the estimate
//! has shown the margin for a while, and back from a pause only after a longer, larger
//! recovery — so a flapping estimate never flaps the picture.

use std::time::{Duration, Instant};

use super::Estimate;

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
    /// An upgrade needs the next layer's bitrate times this...
    pub upgrade_margin: f64,
    /// ...for this long.
    pub upgrade_after: Duration,
    /// The layer being forwarded is kept while its bitrate times this fits (below 1: a
    /// layer stays until it clearly overshoots).
    pub keep_margin: f64,
    /// Video pauses after the lowest layer has not fit for this long (at once when not even
    /// half of it fits).
    pub pause_after: Duration,
    /// A pause ends when the lowest layer's bitrate times this fits...
    pub resume_margin: f64,
    /// ...for this long.
    pub resume_after: Duration,
    /// The least video worth sending (a single-layer stream is paused below it; a simulcast
    /// lowest layer counts as at least this).
    pub min_video_bps: u64,
    /// An upgrade or a resume is a probe: it is judged by the optimistic estimate, and it
    /// fails if congestion shows up within this window.
    pub probe_window: Duration,
    /// After a failed probe the next one waits this long, doubling on each failure...
    pub probe_backoff: Duration,
    /// ...up to this.
    pub max_probe_backoff: Duration,
}

impl Default for AllocatorConfig {
    fn default() -> Self {
        AllocatorConfig {
            utilization: 0.9,
            upgrade_margin: 1.15,
            upgrade_after: Duration::from_secs(2),
            keep_margin: 0.8,
            pause_after: Duration::from_secs(1),
            resume_margin: 1.25,
            resume_after: Duration::from_secs(2),
            min_video_bps: 60_000,
            probe_window: Duration::from_secs(2),
            probe_backoff: Duration::from_secs(2),
            max_probe_backoff: Duration::from_secs(8),
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
    /// The probe in progress: since when, and what to fall back to if it fails.
    probe: Option<(Instant, Allocation)>,
    /// No probe before this.
    next_probe: Option<Instant>,
    /// The current wait after a failed probe.
    backoff: Duration,
    /// The publisher sent no video at the last update (camera off): when it comes back,
    /// video starts again.
    idle: bool,
}

impl Allocator {
    /// A new allocator; the first update picks what fits.
    pub fn new(config: AllocatorConfig) -> Self {
        Allocator {
            config,
            current: None,
            better_since: None,
            starved_since: None,
            probe: None,
            next_probe: None,
            backoff: config.probe_backoff,
            idle: false,
        }
    }

    /// The current allocation.
    pub fn current(&self) -> Option<Allocation> {
        self.current
    }

    /// Decides again. `estimate` is the participant's downlink estimate (`None`: unknown, no
    /// constraint), `audio_bps` the audio being sent to it, `layers` the video layers on
    /// offer, **sorted by bitrate, lowest first**. Returns the new allocation when it changed.
    pub fn update(
        &mut self,
        now: Instant,
        estimate: Option<Estimate>,
        audio_bps: u64,
        layers: &[LayerInfo],
    ) -> Option<Allocation> {
        let active: Vec<LayerInfo> = layers
            .iter()
            .copied()
            .filter(|l| l.bitrate_bps > 0)
            .collect();
        let (Some(lowest), Some(highest)) = (active.first().copied(), active.last().copied())
        else {
            self.idle = true;
            return None;
        };
        // Video starts: the first time, or back after the publisher stopped sending it (its
        // camera off and on again). A probe from before the stop says nothing now.
        let restarted = std::mem::take(&mut self.idle);
        if restarted {
            self.probe = None;
        }
        let starting = self.current.is_none() || restarted;
        let single = active.len() == 1;
        let min_video = self.config.min_video_bps;
        // A single stream adapts to the link itself (we cap it with REMB); it only has to
        // be worth sending. A simulcast layer costs what it measures.
        let cost = |l: &LayerInfo| {
            if single {
                min_video
            } else {
                l.bitrate_bps.max(min_video)
            }
        };
        let Some(estimate) = estimate else {
            return self.set(Allocation::Layer(highest.ssrc));
        };

        // Judge the probe in progress.
        let congested_since = |t: Instant| estimate.last_congestion.is_some_and(|c| c > t);
        if let Some((started, fallback)) = self.probe {
            if congested_since(started) {
                self.probe = None;
                self.next_probe = Some(now + self.backoff);
                self.backoff = (self.backoff * 2).min(self.config.max_probe_backoff);
                return self.set(fallback);
            }
            if now.saturating_duration_since(started) >= self.config.probe_window {
                self.probe = None;
                self.backoff = self.config.probe_backoff;
            }
        }
        let probing = self.probe.is_some();
        let quiet = estimate
            .last_congestion
            .is_none_or(|c| now.saturating_duration_since(c) >= self.config.probe_window);
        let may_probe = quiet && self.next_probe.is_none_or(|t| now >= t);
        let budget = |bps: u64| (bps as f64 * self.config.utilization - audio_bps as f64).max(0.0);
        // What is kept is judged by the controller's target, which congestion brings down at
        // once. What is tried (an upgrade, a resume) also needs a quiet path, a margin and a
        // wait, and is undone if congestion follows (a probe).
        let optimistic = budget(estimate.optimistic_bps);
        let fits =
            |l: &LayerInfo, available: f64, margin: f64| cost(l) as f64 * margin <= available;
        let keep_budget = optimistic;
        // A layer already flowing is kept until it overshoots the budget by a quarter: the
        // estimate wobbles around a link that just fits, and a switch costs a keyframe.
        let current_ssrc = match self.current {
            Some(Allocation::Layer(s)) => Some(s),
            _ => None,
        };
        let best_kept = active
            .iter()
            .rev()
            .find(|l| {
                let margin = if Some(l.ssrc) == current_ssrc {
                    self.config.keep_margin
                } else {
                    1.0
                };
                fits(l, keep_budget, margin)
            })
            .copied();

        // Video starting on an estimate that does not carry the lowest layer, when the
        // congestion that brought the estimate down was seen while the SFU sent less than
        // that layer alone (only audio flowed: the camera was off, video paused): that
        // congestion says nothing about video. Under heavy CPU load a browser reads its
        // socket late, which looks exactly like a queue, and one such moment cut the estimate
        // to 85% of the audio rate: pausing video on that number paused it for seconds on a
        // good link. So video starts on the lowest layer as a probe (libwebrtc probes the
        // link when the allocated bitrate rises while the sender was application-limited):
        // judged only by congestion within the probe window, where a pause is the fallback.
        // On a link that really is weak the video queues up, the delay-based controller sees
        // congestion within a second and video pauses (a failed probe: the usual backoff).
        // Holding the estimate while application-limited instead (not decreasing, or a floor
        // of video + audio) would keep a number no traffic has tested, which nothing then
        // corrects; a probe tests it with the video itself, and the clear path it finds lifts
        // the estimate to what was delivered (the estimator's own rule).
        let untested = estimate
            .congestion_sending_bps
            .is_some_and(|sending| sending < cost(&lowest));
        if starting
            && untested
            && !fits(&lowest, optimistic, 1.0)
            && self.next_probe.is_none_or(|t| now >= t)
        {
            self.probe = Some((now, Allocation::Paused));
            self.starved_since = None;
            return self.set(Allocation::Layer(lowest.ssrc));
        }

        match self.current {
            None => {
                let best = active
                    .iter()
                    .rev()
                    .find(|l| fits(l, optimistic, 1.0))
                    .copied();
                self.set(Allocation::Layer(best.unwrap_or(lowest).ssrc))
            }
            Some(Allocation::Paused) => {
                self.starved_since = None;
                if may_probe && fits(&lowest, optimistic, self.config.resume_margin) {
                    // Resume on the best layer the recovered link carries with the margin
                    // (it is a probe either way: undone if congestion follows). The wait
                    // restarts only when the link stops carrying the lowest layer.
                    let target = active
                        .iter()
                        .rev()
                        .find(|l| fits(l, optimistic, self.config.resume_margin))
                        .copied()
                        .unwrap_or(lowest);
                    if let Some((Allocation::Layer(_), since)) = self.better_since {
                        self.better_since = Some((Allocation::Layer(target.ssrc), since));
                    }
                    let change = self.after(
                        now,
                        Allocation::Layer(target.ssrc),
                        self.config.resume_after,
                    );
                    if change.is_some() {
                        self.probe = Some((now, Allocation::Paused));
                    }
                    change
                } else {
                    self.better_since = None;
                    None
                }
            }
            Some(Allocation::Layer(current)) => {
                let Some(c) = active.iter().position(|l| l.ssrc == current) else {
                    // The current layer stopped: take what fits now.
                    return self.set(Allocation::Layer(best_kept.unwrap_or(lowest).ssrc));
                };
                let Some(best) = best_kept else {
                    if matches!(self.probe, Some((_, Allocation::Paused))) {
                        // Video started or resumed as a probe: judged by congestion (above),
                        // not by the estimate it is there to test.
                        return None;
                    }
                    // Not even the lowest layer fits: the least harm meanwhile, then pause —
                    // at once when the link is far too small, so audio suffers no longer.
                    self.better_since = None;
                    let since = *self.starved_since.get_or_insert(now);
                    let hopeless = keep_budget < cost(&lowest) as f64 / 2.0;
                    if hopeless || now.saturating_duration_since(since) >= self.config.pause_after {
                        self.probe = None;
                        return self.set(Allocation::Paused);
                    }
                    return if c > 0 {
                        self.set(Allocation::Layer(lowest.ssrc))
                    } else {
                        None
                    };
                };
                self.starved_since = None;
                let b = active.iter().position(|l| l.ssrc == best.ssrc).unwrap_or(0);
                if b < c {
                    // Down at once.
                    self.probe = None;
                    return self.set(Allocation::Layer(best.ssrc));
                }
                // Up one layer at a time: a probe, after a while, with a margin.
                match active.get(c + 1) {
                    Some(next)
                        if !probing
                            && may_probe
                            && fits(next, optimistic, self.config.upgrade_margin) =>
                    {
                        let change = self.after(
                            now,
                            Allocation::Layer(next.ssrc),
                            self.config.upgrade_after,
                        );
                        if change.is_some() {
                            self.probe = Some((now, Allocation::Layer(current)));
                        }
                        change
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

    fn est(bps: u64) -> Option<Estimate> {
        Some(Estimate {
            safe_bps: bps,
            optimistic_bps: bps,
            last_congestion: None,
            congestion_sending_bps: None,
        })
    }

    /// Feeds a constant estimate for `secs`, in 250 ms ticks; returns the last change.
    fn run(a: &mut Allocator, t: &mut Instant, secs: f64, estimate: u64) -> Option<Allocation> {
        let mut last = None;
        let ticks = (secs / 0.25) as usize;
        for _ in 0..ticks {
            *t += Duration::from_millis(250);
            if let Some(x) = a.update(*t, est(estimate), 40_000, &layers()) {
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
            a.update(t, est(3_000_000), 40_000, &layers()),
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
        // The next step waits for the probe window of the last one (2 s), then the upgrade
        // wait (2 s).
        assert_eq!(run(&mut a, &mut t, 3.5, 3_000_000), None);
        assert_eq!(
            run(&mut a, &mut t, 1.0, 3_000_000),
            Some(Allocation::Layer(F))
        );
    }

    #[test]
    fn audio_first_pause_and_hysteresis_on_resume() {
        let mut t = Instant::now();
        let mut a = Allocator::new(AllocatorConfig::default());
        a.update(t, est(3_000_000), 40_000, &layers());
        // 160 kbit/s: the lowest layer does not fit next to the audio; after a second, pause.
        assert_eq!(
            run(&mut a, &mut t, 0.5, 160_000),
            Some(Allocation::Layer(Q))
        );
        assert_eq!(run(&mut a, &mut t, 1.0, 160_000), Some(Allocation::Paused));
        // 60 kbit/s cannot carry half of it: pause on the next tick.
        let mut b = Allocator::new(AllocatorConfig::default());
        b.update(t, est(3_000_000), 40_000, &layers());
        assert_eq!(run(&mut b, &mut t, 0.25, 60_000), Some(Allocation::Paused));
        // Just enough for the lowest layer is not enough to resume...
        assert_eq!(run(&mut a, &mut t, 10.0, 220_000), None);
        // ...a sustained margin is, and video comes back on the best layer that fits.
        assert_eq!(run(&mut a, &mut t, 1.5, 3_000_000), None);
        assert_eq!(
            run(&mut a, &mut t, 1.0, 3_000_000),
            Some(Allocation::Layer(F))
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
            a.update(t, est(300_000), 40_000, &one),
            Some(Allocation::Layer(7))
        );
        for _ in 0..8 {
            t += Duration::from_millis(250);
            assert_eq!(a.update(t, est(300_000), 40_000, &one), None);
        }
        let mut paused = None;
        for _ in 0..8 {
            t += Duration::from_millis(250);
            paused = paused.or(a.update(t, est(80_000), 40_000, &one));
        }
        assert_eq!(paused, Some(Allocation::Paused));
    }

    #[test]
    fn a_failed_probe_falls_back_and_backs_off() {
        let mut t = Instant::now();
        let mut a = Allocator::new(AllocatorConfig::default());
        let estimate = |bps: u64, congested: Instant| {
            Some(Estimate {
                safe_bps: bps,
                optimistic_bps: bps,
                last_congestion: Some(congested),
                congestion_sending_bps: None,
            })
        };
        // 400 kbit/s after congestion: Q fits, H does not.
        let congestion = t;
        assert_eq!(
            a.update(t, estimate(400_000, congestion), 40_000, &layers()),
            Some(Allocation::Layer(Q))
        );
        // The estimate recovers; H is tried only after the quiet window and the wait.
        let mut changes = Vec::new();
        let mut probe_at = None;
        for _ in 0..30 {
            t += Duration::from_millis(250);
            if let Some(c) = a.update(t, estimate(1_000_000, congestion), 40_000, &layers()) {
                probe_at.get_or_insert(t);
                changes.push(c);
                break;
            }
        }
        assert_eq!(changes, vec![Allocation::Layer(H)]);
        let c = AllocatorConfig::default();
        assert!(probe_at.unwrap().duration_since(congestion) >= c.probe_window + c.upgrade_after);
        // Congestion during the probe: back to Q at once, even if H would still "fit".
        t += Duration::from_millis(250);
        assert_eq!(
            a.update(t, estimate(1_000_000, t), 40_000, &layers()),
            Some(Allocation::Layer(Q))
        );
        // The next probe waits for the quiet window and the backoff.
        let failed_at = t;
        let mut next = None;
        for _ in 0..80 {
            t += Duration::from_millis(250);
            if a.update(t, estimate(1_000_000, failed_at), 40_000, &layers())
                .is_some()
            {
                next = Some(t);
                break;
            }
        }
        let waited = next.expect("probes again").duration_since(failed_at);
        assert!(
            waited >= c.probe_window.max(c.probe_backoff) + c.upgrade_after,
            "{waited:?}"
        );
    }

    /// 40 kbit/s after congestion seen while sending `sending` (bits per second).
    fn cut(congested: Instant, sending: u64) -> Option<Estimate> {
        Some(Estimate {
            safe_bps: 40_000,
            optimistic_bps: 40_000,
            last_congestion: Some(congested),
            congestion_sending_bps: Some(sending),
        })
    }

    #[test]
    fn video_starting_on_an_estimate_cut_while_only_audio_flowed_is_probed() {
        let c = AllocatorConfig::default();
        let mut t = Instant::now();
        let congested = t;
        let mut a = Allocator::new(c);
        // The camera is off: nothing to allocate.
        assert_eq!(a.update(t, cut(congested, 45_000), 40_000, &[]), None);
        // It comes on: the estimate (cut while 45 kbit/s of audio flowed) does not carry the
        // lowest layer, and is not believed: the lowest layer is tried.
        t += Duration::from_millis(250);
        assert_eq!(
            a.update(t, cut(congested, 45_000), 40_000, &layers()),
            Some(Allocation::Layer(Q))
        );
        // No congestion: it stays for the probe window, whatever the estimate says.
        let started = t;
        while t < started + c.probe_window - Duration::from_millis(250) {
            t += Duration::from_millis(250);
            assert_eq!(a.update(t, cut(congested, 45_000), 40_000, &layers()), None);
        }
        // Congestion during the probe: paused.
        t += Duration::from_millis(250);
        assert_eq!(
            a.update(t, cut(t, 200_000), 40_000, &layers()),
            Some(Allocation::Paused)
        );
        // The camera goes off and on again: the last congestion was seen with video flowing,
        // so the estimate stands and video stays paused.
        t += Duration::from_millis(250);
        assert_eq!(a.update(t, cut(t, 200_000), 40_000, &[]), None);
        for _ in 0..16 {
            t += Duration::from_millis(250);
            assert_eq!(a.update(t, cut(t, 200_000), 40_000, &layers()), None);
        }
    }

    #[test]
    fn video_starting_on_an_estimate_cut_while_video_flowed_is_paused() {
        let mut t = Instant::now();
        let congested = t;
        let mut a = Allocator::new(AllocatorConfig::default());
        a.update(t, cut(congested, 300_000), 40_000, &layers());
        t += Duration::from_millis(250);
        assert_eq!(
            a.update(t, cut(congested, 300_000), 40_000, &layers()),
            Some(Allocation::Paused)
        );
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
