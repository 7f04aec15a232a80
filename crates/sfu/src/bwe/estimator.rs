//! Estimator: what the SFU can send to one participant, from that participant's transport-wide
//! congestion control feedback (TWCC), with REMB as a fallback.
//!
//! Every RTP packet the SFU sends to the participant carries a transport-wide sequence number
//! (stamped by the stack's TWCC sender); the wire tap records it here with its size and
//! departure time in a fixed ring. The participant's browser reports which arrived and when;
//! those reports feed a delay- and loss-based controller: webrtc-rs's `Gcc` (the building block
//! of its congestion-control interceptor), used without its pacer. Trap 6 of the spike was the
//! pacer holding forwarded video and the estimate collapsing on loopback with the whole chain;
//! driving `Gcc` directly from our own history, with a floor we chose, is what the tests here
//! and in `tests/bandwidth.rs` exercise.

use std::time::{Duration, Instant};

use interceptor::{BandwidthEstimator, PacketReport, convert_twcc};
use rtcp::transport_feedbacks::cc_feedback_report::Ecn;
use rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;

/// Packets remembered for matching feedback (about 10 s of a 2 Mbit/s downlink).
const HISTORY: usize = 4096;
/// Feedback older than this no longer counts: the estimate is unknown again.
const FEEDBACK_STALE: Duration = Duration::from_secs(3);
/// A REMB counts this long.
const REMB_STALE: Duration = Duration::from_secs(5);

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
}

/// Downlink bandwidth estimator of one participant.
pub struct DownlinkEstimator {
    ring: Box<[Sent]>,
    last_unwrapped: Option<u64>,
    gcc: interceptor::Gcc,
    reports: Vec<PacketReport>,
    last_feedback: Option<Instant>,
    remb: Option<(f64, Instant)>,
    feedback_count: u64,
}

impl DownlinkEstimator {
    /// A new estimator.
    pub fn new(config: EstimatorConfig) -> Self {
        DownlinkEstimator {
            ring: vec![Sent::default(); HISTORY].into_boxed_slice(),
            last_unwrapped: None,
            gcc: interceptor::Gcc::new(config.initial_bps, config.min_bps, config.max_bps),
            reports: Vec::with_capacity(256),
            last_feedback: None,
            remb: None,
            feedback_count: 0,
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
        };
    }

    /// The participant's TWCC feedback arrived.
    pub fn on_twcc(&mut self, feedback: &TransportLayerCc, now: Instant) {
        self.reports.clear();
        for ack in convert_twcc(feedback) {
            let id = self.unwrap(ack.sequence_number);
            let sent = self.ring[(id as usize) % HISTORY];
            let (true, Some(departure)) = (sent.id == id + 1, sent.departure) else {
                continue;
            };
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
            self.gcc.on_reports(now, &self.reports);
            self.last_feedback = Some(now);
            self.feedback_count += 1;
        }
    }

    /// The participant sent a REMB (receiver-estimated maximum bitrate).
    pub fn on_remb(&mut self, bps: f64, now: Instant) {
        if bps.is_finite() && bps > 0.0 {
            self.remb = Some((bps, now));
        }
    }

    /// The estimate, in bits per second: TWCC-based while feedback flows, else the last
    /// REMB, else unknown.
    pub fn estimate(&self, now: Instant) -> Option<u64> {
        if self
            .last_feedback
            .is_some_and(|t| now.saturating_duration_since(t) < FEEDBACK_STALE)
        {
            return Some(self.gcc.target_bitrate() as u64);
        }
        self.remb
            .filter(|(_, t)| now.saturating_duration_since(*t) < REMB_STALE)
            .map(|(bps, _)| bps as u64)
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
        assert_eq!(e.estimate(t0 + Duration::from_secs(1)), Some(500_000));
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
