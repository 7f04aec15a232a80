//! Taps: two small interceptors in each transport's chain that tell the engine what the
//! webrtc-rs stack would otherwise keep to itself.
//!
//! * [`KeyframeRequestTap`] (application-most) marks inbound PLI and FIR for delivery to the
//!   engine; the stack's terminal stage drops unmarked RTCP (FINDINGS trap 3).
//! * [`WireTap`] (wire-most but for congestion control) counts every packet that got through
//!   SRTP, so the engine can count what the stack dropped silently (trap 5); remembers the
//!   sender reports that leave, so receiver reports coming back give a round-trip time (the
//!   stack reports none); and keeps the last reception report for each of our streams.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};
use rtc_shared::marshal::MarshalSize;

use crate::bwe::DownlinkEstimator;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;

/// Sender reports remembered for RTT (one per second per stream; a few seconds' worth).
const SENT_REPORTS: usize = 32;

/// The last reception report a participant sent about one of our streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StreamReport {
    pub ssrc: u32,
    pub fraction_lost: u8,
    pub total_lost: u32,
    /// Interarrival jitter in RTP timestamp units.
    pub jitter: u32,
}

/// What the wire tap learned, shared with the transport.
pub(crate) struct WireState {
    sent_reports: VecDeque<(u32, Instant)>,
    /// The latest round-trip time measured from a receiver report.
    pub rtt: Option<Duration>,
    /// The latest reception report for each of our streams.
    pub reports: Vec<StreamReport>,
    /// The negotiated id of the transport-wide sequence number extension, once known.
    pub twcc_extension: Option<u8>,
    /// The downlink estimate, fed by what leaves and the feedback that comes back.
    pub estimator: DownlinkEstimator,
}

impl WireState {
    pub(crate) fn new(estimator: DownlinkEstimator) -> Self {
        WireState {
            sent_reports: VecDeque::new(),
            rtt: None,
            reports: Vec::new(),
            twcc_extension: None,
            estimator,
        }
    }

    fn on_sender_report(&mut self, ntp_time: u64, now: Instant) {
        if self.sent_reports.len() == SENT_REPORTS {
            self.sent_reports.pop_front();
        }
        self.sent_reports.push_back(((ntp_time >> 16) as u32, now));
    }

    fn on_reception_report(&mut self, r: &ReceptionReport, now: Instant) {
        self.estimator
            .on_reported_loss(f64::from(r.fraction_lost) / 256.0, now);
        if r.last_sender_report != 0
            && let Some((_, sent)) = self
                .sent_reports
                .iter()
                .find(|(mid, _)| *mid == r.last_sender_report)
        {
            let held = Duration::from_micros(u64::from(r.delay) * 1_000_000 / 65_536);
            if let Some(rtt) = now.saturating_duration_since(*sent).checked_sub(held) {
                self.rtt = Some(rtt);
            }
        }
        let report = StreamReport {
            ssrc: r.ssrc,
            fraction_lost: r.fraction_lost,
            total_lost: r.total_lost,
            jitter: r.jitter,
        };
        match self.reports.iter_mut().find(|x| x.ssrc == r.ssrc) {
            Some(x) => *x = report,
            None => self.reports.push(report),
        }
    }
}

/// Retransmissions a participant may ask for per second: at most this fraction of the
/// packets sent to it in the last second...
const NACK_BUDGET_FRACTION: f64 = 0.5;
/// ...and at most this fraction of its downlink estimate (a retransmission storm into a
/// congested link only buries the audio behind it)...
const NACK_BUDGET_OF_ESTIMATE: f64 = 0.15;
/// ...but always a few on a clear path, so a quiet stream can still repair a loss.
const NACK_BUDGET_MIN: u64 = 20;
/// A packet is retransmitted at most once per this long (or per RTT, if longer).
const MIN_RESEND_INTERVAL: Duration = Duration::from_millis(100);
/// Retransmissions remembered for that.
const RESENT_MEMORY: usize = 512;

/// Sequence numbers as RFC 4585 NACK pairs (a packet id and a bitmap of the 16 after it).
fn nack_pairs(seqs: &[u16]) -> Vec<NackPair> {
    let mut pairs: Vec<NackPair> = Vec::new();
    for &seq in seqs {
        match pairs.last_mut() {
            Some(p) if seq.wrapping_sub(p.packet_id).wrapping_sub(1) < 16 => {
                p.lost_packets |= 1 << seq.wrapping_sub(p.packet_id).wrapping_sub(1);
            }
            _ => pairs.push(NackPair {
                packet_id: seq,
                lost_packets: 0,
            }),
        }
    }
    pairs
}

/// Bytes assumed per retransmitted packet when turning the estimate into packets.
const RETRANSMISSION_SIZE: f64 = 1_100.0;

/// Counts delivered packets, times sender reports, reads reception reports, and keeps a
/// participant from asking for more retransmissions than a lossy link would explain: NACKs
/// beyond the budget are dropped before the NACK responder sees them, so a broken or hostile
/// client cannot turn the SFU into a retransmission amplifier.
pub(crate) struct WireTap {
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
    delivered: Arc<AtomicU64>,
    state: Arc<Mutex<WireState>>,
    /// The current one-second budget window: (start, RTP packets sent, retransmissions asked).
    nack_window: Option<(Instant, u64, u64)>,
    /// Packets sent in the previous window (sets this window's budget).
    sent_last_window: u64,
    /// NACKed packets refused over budget, for the engine's counters.
    pub(crate) nacks_refused: Arc<AtomicU64>,
    /// RTP packets that got through SRTP (the engine compares with what reached it).
    pub(crate) rtp_decrypted: Arc<AtomicU64>,
    /// Retransmissions granted lately: (SSRC, sequence number, when).
    resent: VecDeque<(u32, u16, Instant)>,
}

impl WireTap {
    pub(crate) fn new(
        delivered: Arc<AtomicU64>,
        state: Arc<Mutex<WireState>>,
        nacks_refused: Arc<AtomicU64>,
        rtp_decrypted: Arc<AtomicU64>,
    ) -> Self {
        WireTap {
            read_queue: VecDeque::new(),
            write_queue: VecDeque::new(),
            delivered,
            state,
            nack_window: None,
            sent_last_window: 0,
            nacks_refused,
            rtp_decrypted,
            resent: VecDeque::with_capacity(RESENT_MEMORY),
        }
    }

    fn window(&mut self, now: Instant) -> &mut (Instant, u64, u64) {
        let w = self.nack_window.get_or_insert((now, 0, 0));
        if now.saturating_duration_since(w.0) >= Duration::from_secs(1) {
            self.sent_last_window = w.1;
            *w = (now, 0, 0);
        }
        w
    }

    /// Whether a NACK for `(ssrc, seq)` may be answered now (not answered in the last `rtt`).
    fn resend_due(&self, ssrc: u32, seq: u16, now: Instant, rtt: Duration) -> bool {
        !self
            .resent
            .iter()
            .any(|(s, q, t)| *s == ssrc && *q == seq && now.saturating_duration_since(*t) < rtt)
    }

    fn remember_resend(&mut self, ssrc: u32, seq: u16, now: Instant) {
        if self.resent.len() == RESENT_MEMORY {
            self.resent.pop_front();
        }
        self.resent.push_back((ssrc, seq, now));
    }

    /// Whether `packets` more retransmissions fit this second's budget (and takes them).
    fn nack_allowed(&mut self, packets: u64, now: Instant) -> bool {
        let by_rate = (self.sent_last_window as f64 * NACK_BUDGET_FRACTION) as u64;
        // The estimate caps retransmissions only while the path is congested: random loss on
        // a clear path is exactly what retransmission is for.
        let by_estimate = self
            .state
            .lock()
            .ok()
            .and_then(|s| s.estimator.estimate(now))
            .filter(|e| {
                e.last_congestion
                    .is_some_and(|c| now.saturating_duration_since(c) < Duration::from_secs(2))
            })
            .map_or(u64::MAX, |e| {
                (e.optimistic_bps as f64 * NACK_BUDGET_OF_ESTIMATE / (8.0 * RETRANSMISSION_SIZE))
                    as u64
            });
        // The floor is for a quiet stream on a clear path; on a congested one the estimate
        // rules alone: at 60 kbit/s even the floor's 20 packets a second (~180 kbit/s) would
        // overflow the bottleneck every second and take the audio with them.
        let budget = if by_estimate == u64::MAX {
            by_rate.max(NACK_BUDGET_MIN)
        } else {
            by_rate.min(by_estimate)
        };
        let w = self.window(now);
        if w.2 + packets > budget {
            return false;
        }
        w.2 += packets;
        true
    }
}

impl sansio::Protocol<TaggedPacket, TaggedPacket, ()> for WireTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        if matches!(msg.message.packet, Packet::Rtp(_)) {
            self.rtp_decrypted.fetch_add(1, Ordering::Relaxed);
        }
        if let Packet::Rtcp(packets) = &mut msg.message.packet
            && packets
                .iter()
                .any(|p| p.as_any().is::<TransportLayerNack>())
        {
            let now = msg.now;
            let mut refused = 0;
            let rtt = self
                .state
                .lock()
                .ok()
                .and_then(|s| s.rtt)
                .unwrap_or(Duration::ZERO)
                .max(MIN_RESEND_INTERVAL);
            let mut kept: Vec<Box<dyn rtc::rtcp::packet::Packet>> =
                Vec::with_capacity(packets.len());
            for p in packets.drain(..) {
                let Some(nack) = p.as_any().downcast_ref::<TransportLayerNack>() else {
                    kept.push(p);
                    continue;
                };
                // Each lost packet once per round trip: a client re-asking before the
                // retransmission could have arrived gets nothing new (as libwebrtc does).
                let mut fresh = Vec::new();
                for pair in &nack.nacks {
                    for seq in pair.packet_list() {
                        if self.resend_due(nack.media_ssrc, seq, now, rtt) {
                            fresh.push(seq);
                        }
                    }
                }
                let asked = fresh.len() as u64;
                if asked == 0 {
                    continue;
                }
                if !self.nack_allowed(asked, now) {
                    refused += asked;
                    continue;
                }
                for seq in &fresh {
                    self.remember_resend(nack.media_ssrc, *seq, now);
                }
                kept.push(Box::new(TransportLayerNack {
                    sender_ssrc: nack.sender_ssrc,
                    media_ssrc: nack.media_ssrc,
                    nacks: nack_pairs(&fresh),
                }));
            }
            *packets = kept;
            if refused > 0 {
                self.nacks_refused.fetch_add(refused, Ordering::Relaxed);
            }
            if packets.is_empty() {
                // Everything in it was over budget: nothing goes on up the chain.
                return Ok(());
            }
        }
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for p in packets {
                let any = p.as_any();
                if let Some(fb) = any.downcast_ref::<TransportLayerCc>() {
                    if let Ok(mut state) = self.state.lock() {
                        state.estimator.on_twcc(fb, msg.now);
                    }
                    continue;
                }
                if let Some(remb) = any.downcast_ref::<ReceiverEstimatedMaximumBitrate>() {
                    if let Ok(mut state) = self.state.lock() {
                        state.estimator.on_remb(f64::from(remb.bitrate), msg.now);
                    }
                    continue;
                }
                let reports = if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                    &rr.reports
                } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
                    &sr.reports
                } else {
                    continue;
                };
                if let Ok(mut state) = self.state.lock() {
                    for r in reports {
                        state.on_reception_report(r, msg.now);
                    }
                }
            }
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtp(p) = &msg.message.packet {
            self.window(msg.now).1 += 1;
            // Stamped by the TWCC sender (wire-ward of everything but us and congestion
            // control): remember it for the feedback.
            if let Ok(mut state) = self.state.lock()
                && let Some(id) = state.twcc_extension
                && let Some(ext) = p.header.get_extension(id)
                && ext.len() >= 2
            {
                let seq = u16::from_be_bytes([ext[0], ext[1]]);
                let size = p.header.marshal_size() + p.payload.len();
                state.estimator.on_sent(
                    seq,
                    p.header.ssrc,
                    p.header.sequence_number,
                    size,
                    msg.now,
                );
            }
        }
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for p in packets {
                if let Some(sr) = p.as_any().downcast_ref::<SenderReport>()
                    && let Ok(mut state) = self.state.lock()
                {
                    state.on_sender_report(sr.ntp_time, msg.now);
                }
            }
        }
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Self::Error> {
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        None
    }
}

impl Interceptor for WireTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// Lets keyframe requests (PLI, FIR) reach the engine instead of ending in the interceptor
/// chain (FINDINGS trap 3). Marks them; everything else passes untouched.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nack_pairs_round_trip() {
        let seqs = [10u16, 11, 13, 26, 27, 65_535, 0, 2];
        let pairs = nack_pairs(&seqs);
        let back: Vec<u16> = pairs.iter().flat_map(|p| p.packet_list()).collect();
        assert_eq!(back, seqs);
    }
}

#[derive(Default)]
pub(crate) struct KeyframeRequestTap {
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl sansio::Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let wanted = packets.iter().any(|p| {
                let any = p.as_any();
                any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
            });
            if wanted {
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Self::Error> {
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        None
    }
}

impl Interceptor for KeyframeRequestTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
