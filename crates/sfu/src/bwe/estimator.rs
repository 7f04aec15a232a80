//! Estimator: what the SFU can send to one participant, from that participant's transport-wide
//! congestion control feedback (TWCC), with REMB as a fallback.
//!
//! Every RTP packet the SFU sends to the participant carries a transport-wide sequence number
//! (stamped by the stack's TWCC sender); the wire tap records it here with its size and
//! departure time in a fixed ring. The participant's browser reports which arrived and when;
//! those reports feed a delay- and loss-based controller of our own ([`DownlinkEstimator`]'s
//! `control`). webrtc-rs ships GCC building blocks; we measured its `Gcc` on these same
//! reports and wrote ours (see `control` and docs/bandwidth.md for why). The webrtc-rs pieces
//! we do use: the TWCC sender that stamps packets, the TWCC receiver in clients, and
//! `convert_twcc` to decode feedback.

use std::time::{Duration, Instant};

use interceptor::{PacketReport, convert_twcc};
use rtcp::transport_feedbacks::cc_feedback_report::Ecn;
use rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;

/// Packets remembered for matching feedback (about 10 s of a 2 Mbit/s downlink).
const HISTORY: usize = 4096;
/// Feedback older than this no longer counts: the estimate is unknown again.
const FEEDBACK_STALE: Duration = Duration::from_secs(3);
/// A REMB counts this long.
const REMB_STALE: Duration = Duration::from_secs(5);
/// Queueing delay above which the path is overused.
const QUEUE_OVERUSE: Duration = Duration::from_millis(50);
/// Queueing delay below which the path is clear again.
const QUEUE_CLEAR: Duration = Duration::from_millis(20);
/// How long the smallest one-way delay is remembered as the path's base delay.
const BASE_DELAY_WINDOW: Duration = Duration::from_secs(10);
/// Between two decreases, at least this (one round of feedback to act).
const DECREASE_INTERVAL: Duration = Duration::from_millis(300);
/// Overuse needs the queue above the threshold for this long (bursts drain faster).
const PERSISTENCE: Duration = Duration::from_millis(250);
/// The queue is growing if it is above where it was this long ago.
const TREND_WINDOW: Duration = Duration::from_millis(500);
/// A receiver report's loss counts this long.
const LOSS_STALE: Duration = Duration::from_secs(3);
/// The delivered rate is measured over this much of the participant's arrivals.
const DELIVERY_WINDOW: Duration = Duration::from_millis(500);
/// A path clear this long ramps up fast.
const RAMP_AFTER: Duration = Duration::from_secs(1);

/// Estimator configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EstimatorConfig {
    /// Where the estimate starts, bits per second.
    pub initial_bps: f64,
    /// Lowest estimate (below it, video is paused anyway).
    pub min_bps: f64,
    /// Highest estimate.
    pub max_bps: f64,
}

impl Default for EstimatorConfig {
    fn default() -> Self {
        EstimatorConfig {
            initial_bps: 1_000_000.0,
            min_bps: 30_000.0,
            max_bps: 20_000_000.0,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Sent {
    /// Unwrapped transport-wide sequence number + 1 (0 = empty slot).
    id: u64,
    ssrc: u32,
    rtp_sequence_number: u16,
    size: u32,
    departure: Option<Instant>,
    /// Already handed to the controller: feedback may cover a packet again (the webrtc-rs
    /// TWCC receiver repeats packets it still considers missing), and counting a loss twice
    /// would drag the loss-based estimate down for nothing.
    reported: bool,
}

/// What is known about a participant's downlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// What the link has been shown to carry: the controller's target, capped at 1.5 times
    /// the rate the participant acknowledged receiving (GCC's own rule: an estimate is not
    /// raised far beyond what actually flows).
    pub safe_bps: u64,
    /// The controller's target uncapped: what the link may carry, as long as no congestion
    /// has been seen. Used only to *try* more (a probe), never to keep it.
    pub optimistic_bps: u64,
    /// When congestion (a decrease of the target) was last seen.
    pub last_congestion: Option<Instant>,
    /// What the SFU was sending to the participant, bits per second, when that congestion
    /// was seen. Congestion seen while sending little (audio only: the camera off, video
    /// paused) says the link may not carry even that, or only that the receiver stalled (a
    /// busy CPU delays arrivals just like a queue): nothing about video, which was not
    /// flowing. The allocator tries video anyway in that case (a probe), see
    /// [`super::Allocator::update`].
    pub congestion_sending_bps: Option<u64>,
}

/// Downlink bandwidth estimator of one participant.
pub struct DownlinkEstimator {
    ring: Box<[Sent]>,
    last_unwrapped: Option<u64>,
    /// The controller's target, bits per second.
    target: f64,
    /// When the target last grew or held.
    last_update: Option<Instant>,
    /// Since when the path has been clear (no queue, no loss).
    clear_since: Option<Instant>,
    /// Recent queueing delays, for the trend.
    queue_history: std::collections::VecDeque<(Instant, Duration)>,
    /// Recent arrivals (receiver clock, size), for the delivered rate.
    arrivals: std::collections::VecDeque<(Duration, u32)>,
    /// The rate recent packets arrived at, when they spanned long enough.
    delivered_now: Option<f64>,
    /// The participant's last reported loss (fraction lost, worst stream) and when.
    reported_loss: Option<(f64, Instant)>,
    reports: Vec<PacketReport>,
    last_feedback: Option<Instant>,
    remb: Option<(f64, Instant)>,
    feedback_count: u64,
    acked_bytes: u64,
    acked: crate::media::RateMeter,
    last_sample: Option<Instant>,
    last_congestion: Option<Instant>,
    /// What was being sent when congestion was last seen, bits per second.
    congestion_sending_bps: Option<f64>,
    /// (when, smallest one-way delay in µs seen in one feedback), for the base delay.
    base_delays: std::collections::VecDeque<(Instant, i64)>,
    /// When the target was last decreased.
    last_decrease: Option<Instant>,
    min_bps: f64,
    max_bps: f64,
    /// The first departure: departures are measured from it.
    epoch: Option<Instant>,
}

impl DownlinkEstimator {
    /// A new estimator.
    pub fn new(config: EstimatorConfig) -> Self {
        DownlinkEstimator {
            ring: vec![Sent::default(); HISTORY].into_boxed_slice(),
            last_unwrapped: None,
            target: config.initial_bps.clamp(config.min_bps, config.max_bps),
            last_update: None,
            clear_since: None,
            queue_history: std::collections::VecDeque::new(),
            reported_loss: None,
            delivered_now: None,
            arrivals: std::collections::VecDeque::new(),
            reports: Vec::with_capacity(256),
            last_feedback: None,
            remb: None,
            feedback_count: 0,
            acked_bytes: 0,
            acked: crate::media::RateMeter::default(),
            last_sample: None,
            last_congestion: None,
            congestion_sending_bps: None,
            base_delays: std::collections::VecDeque::new(),
            last_decrease: None,
            min_bps: config.min_bps,
            max_bps: config.max_bps,
            epoch: None,
        }
    }

    fn unwrap(&self, seq: u16) -> u64 {
        match self.last_unwrapped {
            None => u64::from(seq) + (1 << 16),
            Some(last) => {
                let delta = seq.wrapping_sub(last as u16) as i16 as i64;
                (last as i64 + delta).max(0) as u64
            }
        }
    }

    /// A packet left for the participant with transport-wide sequence number `twcc_seq`.
    pub fn on_sent(&mut self, twcc_seq: u16, ssrc: u32, rtp_seq: u16, size: usize, now: Instant) {
        self.epoch.get_or_insert(now);
        let id = self.unwrap(twcc_seq);
        if self.last_unwrapped.is_none_or(|l| id > l) {
            self.last_unwrapped = Some(id);
        }
        self.ring[(id as usize) % HISTORY] = Sent {
            id: id + 1,
            ssrc,
            rtp_sequence_number: rtp_seq,
            size: size as u32,
            departure: Some(now),
            reported: false,
        };
    }

    /// The participant's TWCC feedback arrived.
    pub fn on_twcc(&mut self, feedback: &TransportLayerCc, now: Instant) {
        self.reports.clear();
        for ack in convert_twcc(feedback) {
            let id = self.unwrap(ack.sequence_number);
            let slot = &mut self.ring[(id as usize) % HISTORY];
            let (true, false, Some(departure)) = (slot.id == id + 1, slot.reported, slot.departure)
            else {
                continue;
            };
            slot.reported = true;
            let sent = *slot;
            self.reports.push(PacketReport {
                ssrc: sent.ssrc,
                id,
                rtp_sequence_number: sent.rtp_sequence_number,
                is_twcc: true,
                twcc_sequence_number: ack.sequence_number,
                size: sent.size as usize,
                arrived: ack.arrived,
                departure,
                arrival: ack.arrival,
                ecn: Ecn::NotEct,
            });
        }
        self.reports.sort_by_key(|r| r.id);
        if !self.reports.is_empty() {
            self.acked_bytes += self
                .reports
                .iter()
                .filter(|r| r.arrived)
                .map(|r| r.size as u64)
                .sum::<u64>();
            if self
                .last_sample
                .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_millis(250))
            {
                self.acked.sample(self.acked_bytes, now);
                self.last_sample = Some(now);
            }
            // What the bottleneck delivered lately: bytes over their arrival span on the
            // participant's clock (the last half second). Under congestion that is the link's
            // capacity now, unlike the smoothed acknowledged rate, which lags a sudden drop.
            for r in self.reports.iter().filter(|r| r.arrived) {
                if let Some(a) = r.arrival {
                    self.arrivals.push_back((a, r.size as u32));
                }
            }
            if let Some(&(newest, _)) = self.arrivals.back() {
                while self
                    .arrivals
                    .front()
                    .is_some_and(|(a, _)| newest.saturating_sub(*a) > DELIVERY_WINDOW)
                {
                    self.arrivals.pop_front();
                }
            }
            self.delivered_now = match (self.arrivals.front(), self.arrivals.back()) {
                (Some(&(a, _)), Some(&(b, _))) if b.saturating_sub(a) >= DELIVERY_WINDOW / 4 => {
                    let bytes: u64 = self.arrivals.iter().map(|(_, s)| u64::from(*s)).sum();
                    Some(bytes as f64 * 8.0 / b.saturating_sub(a).as_secs_f64())
                }
                _ => None,
            };
            self.control(now);
            self.last_feedback = Some(now);
            self.feedback_count += 1;
        }
    }

    /// The controller, run on each feedback: delay first, loss second, growth when clear.
    ///
    /// One-way delays (arrival on the participant's clock minus departure on ours) carry an
    /// unknown offset; the smallest in the last 10 s is the path's base, and anything above
    /// it is queueing in a buffer on the way. A queue that stays above 50 ms for a quarter second (a keyframe burst
    /// does not) and is not draining, or
    /// more than 10% reported loss with a standing queue (25% without), means we send faster than the path
    /// drains: the target drops to 85% of what the last half second shows arriving (or by
    /// half the loss), at most once
    /// per 300 ms. A queue that is draining, or some loss, holds the target. A clear path (queue
    /// under 20 ms, loss under 2%) grows it 8% a second, and doubles it every second once it
    /// has been clear for 1 s; clear for 500 ms, it is at least what the path delivered. The
    /// estimate alone sends nothing: more video is only ever tried by the allocator's probes
    /// (a margin, a wait, undone on congestion), so a fast ramp finds capacity after a pause
    /// without flooding the path. Each decrease also records what was being sent, so the
    /// allocator can tell congestion seen with video flowing from congestion seen while
    /// only audio flowed (application-limited: see `Estimate::congestion_sending_bps`).
    ///
    /// Written for shopcall: webrtc-rs's `Gcc` (its delay half fed these same reports) did
    /// not react to a building queue in our scenarios, and its loss half then held the target
    /// at the floor long after the link recovered (docs/bandwidth.md).
    fn control(&mut self, now: Instant) {
        let queue = self.queueing_delay(now);
        // The trend: where the queue was half a second ago (noise is a few ms).
        while self
            .queue_history
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > TREND_WINDOW)
        {
            self.queue_history.pop_front();
        }
        let before = self.queue_history.front().map_or(queue, |(_, q)| *q);
        self.queue_history.push_back((now, queue));
        // Not draining: a full queue that stays full is overuse as much as a growing one.
        let draining = queue + Duration::from_millis(10) < before;
        // Loss as the participant's receiver reports state it (fraction lost per report
        // interval, the worst of our streams): TWCC feedback over-counts loss on long paths,
        // where packets still in flight are reported missing.
        let loss = self
            .reported_loss
            .filter(|(_, t)| now.saturating_duration_since(*t) < LOSS_STALE)
            .map_or(0.0, |(l, _)| l);
        let acked = match self.delivered_now {
            Some(rate) => rate,
            None => self.acked.bps() as f64,
        };
        // A keyframe is a burst: it queues for a moment and drains. Overuse is a queue that
        // stays up: the lowest queue over the last quarter second must exceed the threshold.
        let floor = self
            .queue_history
            .iter()
            .filter(|(t, _)| now.saturating_duration_since(*t) <= PERSISTENCE)
            .map(|(_, q)| *q)
            .min()
            .unwrap_or(queue);
        let overused = floor > QUEUE_OVERUSE && !draining;
        // Loss means congestion when the queue is up too, or when it is heavy. Random loss
        // on a radio link, with no queue behind it, only holds the rate: NACK repairs it,
        // and sending less would not make the radio lose less.
        let lossy = loss > 0.25 || (loss > 0.10 && floor > QUEUE_OVERUSE);
        if overused || lossy {
            self.clear_since = None;
            self.last_update = Some(now);
            let due = self
                .last_decrease
                .is_none_or(|t| now.saturating_duration_since(t) >= DECREASE_INTERVAL);
            if due && acked > 0.0 {
                let factor = if lossy { 1.0 - 0.5 * loss } else { 0.85 };
                self.target = self
                    .target
                    .min(acked * factor)
                    .clamp(self.min_bps, self.max_bps);
                self.last_decrease = Some(now);
                self.last_congestion = Some(now);
                self.congestion_sending_bps = Some(self.sent_rate(now));
                if lossy {
                    // One report, one decrease: the next report says whether it helped.
                    self.reported_loss = None;
                }
            }
            return;
        }
        let clear = queue < QUEUE_CLEAR && loss < 0.02;
        let dt = self.last_update.map_or(0.0, |t| {
            now.saturating_duration_since(t).as_secs_f64().min(1.0)
        });
        self.last_update = Some(now);
        if !clear {
            self.clear_since = None;
            return;
        }
        let since = *self.clear_since.get_or_insert(now);
        let clear_for = now.saturating_duration_since(since);
        let rate: f64 = if clear_for >= RAMP_AFTER { 2.0 } else { 1.08 };
        let mut target = self.target * rate.powf(dt);
        // What a path clear for the whole delivery window delivered, it carries (its
        // arrivals were not bunched by a draining queue): the target is at least that. This
        // is how a probe is measured (libwebrtc sets its estimate to a probe's delivered
        // rate): when the allocator starts video on an estimate cut while only audio flowed,
        // the video that then flows clear lifts the estimate at once, instead of the ramp
        // taking seconds to find again what the link carries.
        if let Some(delivered) = self.delivered_now.filter(|_| clear_for >= DELIVERY_WINDOW) {
            target = target.max(delivered);
        }
        self.target = target.clamp(self.min_bps, self.max_bps);
    }

    /// What the SFU sent to the participant over the last `DELIVERY_WINDOW`, bits per
    /// second (from the ring of sent packets; run only on a decrease).
    fn sent_rate(&self, now: Instant) -> f64 {
        let Some(last) = self.last_unwrapped else {
            return 0.0;
        };
        let mut bytes = 0u64;
        for id in (last.saturating_sub(HISTORY as u64 - 1)..=last).rev() {
            let sent = &self.ring[(id as usize) % HISTORY];
            if sent.id != id + 1 {
                continue;
            }
            match sent.departure {
                Some(d) if now.saturating_duration_since(d) <= DELIVERY_WINDOW => {
                    bytes += u64::from(sent.size);
                }
                _ => break,
            }
        }
        bytes as f64 * 8.0 / DELIVERY_WINDOW.as_secs_f64()
    }

    /// Queueing delay now: the highest one-way delay in the reports above the base.
    fn queueing_delay(&mut self, now: Instant) -> Duration {
        let epoch = self.epoch;
        // Signed, in microseconds: the two clocks' offset can make it negative.
        let owd = |r: &PacketReport| {
            let departure = r
                .departure
                .saturating_duration_since(epoch.unwrap_or(r.departure));
            r.arrival
                .map(|a| a.as_micros() as i64 - departure.as_micros() as i64)
        };
        let (mut lowest, mut highest) = (i64::MAX, i64::MIN);
        for d in self.reports.iter().filter_map(owd) {
            lowest = lowest.min(d);
            highest = highest.max(d);
        }
        if highest == i64::MIN {
            return Duration::ZERO;
        }
        while self
            .base_delays
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > BASE_DELAY_WINDOW)
        {
            self.base_delays.pop_front();
        }
        self.base_delays.push_back((now, lowest));
        let base = self
            .base_delays
            .iter()
            .map(|(_, d)| *d)
            .min()
            .unwrap_or(lowest);
        Duration::from_micros(highest.saturating_sub(base).max(0) as u64)
    }

    /// The participant reported `fraction_lost` (0..=1) for one of our streams.
    pub fn on_reported_loss(&mut self, fraction_lost: f64, now: Instant) {
        let worst = match self.reported_loss {
            // Several streams report together: keep the worst of one round.
            Some((l, t)) if now.saturating_duration_since(t) < Duration::from_millis(100) => {
                l.max(fraction_lost)
            }
            _ => fraction_lost,
        };
        self.reported_loss = Some((worst, now));
    }

    /// The participant sent a REMB (receiver-estimated maximum bitrate).
    pub fn on_remb(&mut self, bps: f64, now: Instant) {
        if bps.is_finite() && bps > 0.0 {
            self.remb = Some((bps, now));
        }
    }

    /// The estimate: TWCC-based while feedback flows, else the last REMB (then safe and
    /// optimistic are the same), else unknown.
    pub fn estimate(&self, now: Instant) -> Option<Estimate> {
        if self
            .last_feedback
            .is_some_and(|t| now.saturating_duration_since(t) < FEEDBACK_STALE)
        {
            let target = self.target;
            let acked = self.acked.bps() as f64;
            return Some(Estimate {
                safe_bps: target.min(acked * 1.5) as u64,
                optimistic_bps: target as u64,
                last_congestion: self.last_congestion,
                congestion_sending_bps: self.congestion_sending_bps.map(|b| b as u64),
            });
        }
        self.remb
            .filter(|(_, t)| now.saturating_duration_since(*t) < REMB_STALE)
            .map(|(bps, _)| Estimate {
                safe_bps: bps as u64,
                optimistic_bps: bps as u64,
                last_congestion: None,
                congestion_sending_bps: None,
            })
    }

    /// How many feedback reports were used.
    pub fn feedback_count(&self) -> u64 {
        self.feedback_count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_until_feedback_then_remb_as_fallback() {
        let t0 = Instant::now();
        let mut e = DownlinkEstimator::new(EstimatorConfig::default());
        assert_eq!(e.estimate(t0), None);
        e.on_remb(500_000.0, t0);
        assert_eq!(
            e.estimate(t0 + Duration::from_secs(1)).map(|e| e.safe_bps),
            Some(500_000)
        );
        assert_eq!(e.estimate(t0 + Duration::from_secs(6)), None);
    }

    #[test]
    fn sequence_numbers_unwrap_across_the_wrap() {
        let t0 = Instant::now();
        let mut e = DownlinkEstimator::new(EstimatorConfig::default());
        e.on_sent(65_534, 1, 1, 1000, t0);
        e.on_sent(65_535, 1, 2, 1000, t0);
        e.on_sent(0, 1, 3, 1000, t0);
        e.on_sent(1, 1, 4, 1000, t0);
        let a = e.unwrap(65_535);
        let b = e.unwrap(1);
        assert_eq!(b, a + 2);
        assert_eq!(e.ring[(b as usize) % HISTORY].rtp_sequence_number, 4);
    }
}
