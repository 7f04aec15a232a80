//! Stats: what a [`TestPeer`](crate::TestPeer) sent, received and verified, as plain atomic
//! counters that [`TestPeer::stats`](crate::TestPeer::stats) copies into a [`PeerStats`].

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

pub use crate::decoder::ReceivedVideo;
pub use webrtc::peer_connection::RTCPeerConnectionState;

/// A snapshot of one peer's counters.
#[derive(Clone, Debug)]
pub struct PeerStats {
    /// Audio (Opus) streams, sent and received.
    pub audio: KindStats,
    /// Video streams (camera and screen together), sent and received.
    pub video: KindStats,
    /// Remote tracks that have started (`on_track` fired: the first RTP packet arrived).
    pub remote_tracks: usize,
    /// The peer connection's state at the time of the snapshot.
    pub connection_state: RTCPeerConnectionState,
    /// Copies of video packets sent on the undeclared
    /// [`PeerConfig::rogue_video_ssrc`](crate::PeerConfig::rogue_video_ssrc) (0 when off).
    pub rogue_packets_sent: u64,
    /// Every video stream (SSRC) received so far, as a decoder sees it: frames decoded and
    /// lost, freezes, the last keyframe's resolution, the bitrate over the last second.
    /// Through the SFU there is one per video m-line; peer to peer, one per simulcast layer.
    pub received_video: Vec<ReceivedVideo>,
    /// What each simulcast layer sent ([`PeerConfig::simulcast`](crate::PeerConfig::simulcast);
    /// empty without it), lowest layer first.
    pub simulcast_layers: Vec<LayerStats>,
}

impl PeerStats {
    /// The received video stream with the highest bitrate over the last second (ties: the
    /// most packets): the camera, in a call through the SFU.
    pub fn main_video(&self) -> Option<&ReceivedVideo> {
        self.received_video
            .iter()
            .max_by_key(|v| (v.bitrate_bps, v.packets))
    }
}

/// What one simulcast layer of a [`TestPeer`](crate::TestPeer) sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// The layer's rid.
    pub rid: String,
    /// Its SSRC.
    pub ssrc: u32,
    /// RTP packets handed to the library.
    pub packets_sent: u64,
    /// Their payload bytes.
    pub bytes_sent: u64,
    /// Frames sent.
    pub frames_sent: u64,
    /// Keyframes sent (the first, periodic ones, and requested ones).
    pub keyframes_sent: u64,
    /// Keyframe requests (PLI/FIR) that named this layer's SSRC.
    pub keyframe_requests: u64,
}

/// Counters for one media kind.
///
/// "Sent" counts what `write_rtp` accepted. The library may still drop a packet after that
/// (it reports errors by logging), so compare against what the other side received.
/// Byte counts are RTP payload bytes (no RTP header, no SRTP tag).
#[derive(Clone, Debug, Default)]
pub struct KindStats {
    /// RTP packets handed to the library.
    pub packets_sent: u64,
    /// Payload bytes of those packets.
    pub bytes_sent: u64,
    /// Frames sent (audio: one per packet).
    pub frames_sent: u64,
    /// Keyframes sent (video only): periodic ones, the first one, and those forced by requests.
    pub keyframes_sent: u64,
    /// RTP packets received on remote tracks of this kind. NACK retransmissions that arrive
    /// after the original count twice, so this can exceed the sender's `packets_sent`.
    pub packets_received: u64,
    /// Payload bytes of those packets.
    pub bytes_received: u64,
    /// Received payloads whose block was found and verified.
    pub intact: u64,
    /// Received payloads whose block was missing or failed verification.
    pub corrupt: u64,
    /// Received payloads that start a keyframe (per the VP8 or H.264 descriptor).
    pub keyframes_received: u64,
    /// Keyframe requests (RTCP PLI or FIR entries) that arrived for our *sending* tracks of this
    /// kind, i.e. requests the remote (the SFU relaying the other participant) made of us.
    pub plis_received: u64,
    /// PLIs this peer sent for remote tracks of this kind ([`TestPeer::send_pli`](crate::TestPeer::send_pli)).
    pub plis_sent: u64,
    /// When the first packet of this kind arrived.
    pub first_received_at: Option<Instant>,
    /// One-way latency of intact packets: receive time minus the send time in the payload.
    pub latency: LatencySummary,
}

/// Summary of the one-way latency samples of one kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    /// Sum of samples, microseconds.
    pub sum_us: u64,
    /// Largest sample, microseconds.
    pub max_us: u64,
    /// Median, microseconds: the upper edge of its histogram bucket (within 25 %).
    pub p50_us: u64,
    /// 99th percentile, microseconds, as for `p50_us`.
    pub p99_us: u64,
}

impl LatencySummary {
    /// Mean latency, if there are samples.
    pub fn mean(&self) -> Option<Duration> {
        (self.count > 0).then(|| Duration::from_micros(self.sum_us / self.count))
    }
}

/// Histogram buckets: 4 linear ones for 0..4 µs, then 4 per power of two.
const BUCKETS: usize = 128;

/// Bucket index for a value: exact below 4, then 4 sub-buckets per octave.
fn bucket_of(v: u64) -> usize {
    if v < 4 {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros() as usize; // >= 2
    let sub = ((v >> (exp - 2)) & 3) as usize;
    (4 + (exp - 2) * 4 + sub).min(BUCKETS - 1)
}

/// Largest value that falls into bucket `i`.
fn bucket_upper(i: usize) -> u64 {
    if i < 4 {
        return i as u64;
    }
    let exp = (i - 4) / 4 + 2;
    let sub = ((i - 4) % 4) as u64;
    let width = 1u64 << (exp - 2);
    (4 + sub) * width + width - 1
}

/// Lock-free latency histogram.
pub(crate) struct Latency {
    count: AtomicU64,
    sum_us: AtomicU64,
    max_us: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
            max_us: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Latency {
    pub(crate) fn record(&self, us: u64) {
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
        self.max_us.fetch_max(us, Relaxed);
        self.buckets[bucket_of(us)].fetch_add(1, Relaxed);
    }

    fn summary(&self) -> LatencySummary {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        let max_us = self.max_us.load(Relaxed);
        let quantile = |q_permille: u64| {
            if total == 0 {
                return 0;
            }
            let rank = (total * q_permille).div_ceil(1000).max(1);
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return bucket_upper(i).min(max_us);
                }
            }
            max_us
        };
        LatencySummary {
            count: self.count.load(Relaxed),
            sum_us: self.sum_us.load(Relaxed),
            max_us,
            p50_us: quantile(500),
            p99_us: quantile(990),
        }
    }
}

/// The live counters behind one [`KindStats`].
#[derive(Default)]
pub(crate) struct KindCounters {
    pub(crate) packets_sent: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) frames_sent: AtomicU64,
    pub(crate) keyframes_sent: AtomicU64,
    pub(crate) packets_received: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) intact: AtomicU64,
    pub(crate) corrupt: AtomicU64,
    pub(crate) keyframes_received: AtomicU64,
    pub(crate) plis_received: AtomicU64,
    pub(crate) plis_sent: AtomicU64,
    /// Microseconds after the peer's base instant, plus one; 0 = nothing received yet.
    pub(crate) first_received: AtomicU64,
    pub(crate) latency: Latency,
}

impl KindCounters {
    /// Notes the arrival time of the first packet (later calls keep the first value).
    pub(crate) fn mark_first_received(&self, base: Instant, now: Instant) {
        if self.first_received.load(Relaxed) == 0 {
            let us = now.saturating_duration_since(base).as_micros();
            let us = u64::try_from(us).unwrap_or(u64::MAX - 1) + 1;
            let _ = self
                .first_received
                .compare_exchange(0, us, Relaxed, Relaxed);
        }
    }

    pub(crate) fn snapshot(&self, base: Instant) -> KindStats {
        let first = self.first_received.load(Relaxed);
        KindStats {
            packets_sent: self.packets_sent.load(Relaxed),
            bytes_sent: self.bytes_sent.load(Relaxed),
            frames_sent: self.frames_sent.load(Relaxed),
            keyframes_sent: self.keyframes_sent.load(Relaxed),
            packets_received: self.packets_received.load(Relaxed),
            bytes_received: self.bytes_received.load(Relaxed),
            intact: self.intact.load(Relaxed),
            corrupt: self.corrupt.load(Relaxed),
            keyframes_received: self.keyframes_received.load(Relaxed),
            plis_received: self.plis_received.load(Relaxed),
            plis_sent: self.plis_sent.load(Relaxed),
            first_received_at: (first > 0)
                .then(|| base.checked_add(Duration::from_micros(first - 1)))
                .flatten(),
            latency: self.latency.summary(),
        }
    }
}

/// The set of packet counters (from the payload [`Block`](crate::payload::Block)) received on
/// one stream, as a growable bitset: exact delivery ratios over any range of what was sent.
#[derive(Default)]
pub(crate) struct CounterSet {
    bits: Vec<u64>,
}

impl CounterSet {
    /// Counters beyond this are not recorded (about 23 hours of 50 packets a second).
    const MAX: u64 = 1 << 22;

    pub(crate) fn insert(&mut self, counter: u64) {
        if counter >= Self::MAX {
            return;
        }
        let (word, bit) = ((counter / 64) as usize, counter % 64);
        if self.bits.len() <= word {
            self.bits.resize(word + 1, 0);
        }
        self.bits[word] |= 1 << bit;
    }

    /// How many counters in `range` were inserted.
    pub(crate) fn count(&self, range: std::ops::Range<u64>) -> u64 {
        range
            .filter(|c| {
                self.bits
                    .get((c / 64) as usize)
                    .is_some_and(|w| w & (1 << (c % 64)) != 0)
            })
            .count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_set_counts_each_once() {
        let mut s = CounterSet::default();
        for c in [0, 1, 1, 63, 64, 200, CounterSet::MAX] {
            s.insert(c);
        }
        assert_eq!(s.count(0..300), 5);
        assert_eq!(s.count(1..64), 2);
        assert_eq!(s.count(300..400), 0);
    }

    #[test]
    fn buckets_are_contiguous_and_tight() {
        let mut prev_upper = None;
        for i in 0..BUCKETS - 1 {
            let upper = bucket_upper(i);
            if let Some(p) = prev_upper {
                assert!(upper > p);
                assert_eq!(bucket_of(p + 1), i);
            }
            assert_eq!(bucket_of(upper), i);
            prev_upper = Some(upper);
        }
        for v in [0, 1, 3, 4, 5, 7, 8, 100, 1_000, 12_345, 1 << 30] {
            let upper = bucket_upper(bucket_of(v));
            assert!(upper >= v && upper <= v + v / 4 + 1, "{v} -> {upper}");
        }
    }

    #[test]
    fn quantiles() {
        let l = Latency::default();
        for us in 1..=1000 {
            l.record(us);
        }
        let s = l.summary();
        assert_eq!(s.count, 1000);
        assert_eq!(s.max_us, 1000);
        assert!((500..=625).contains(&s.p50_us), "{s:?}");
        assert!((990..=1000).contains(&s.p99_us), "{s:?}");
        assert_eq!(s.mean(), Some(Duration::from_micros(500)));
        assert_eq!(Latency::default().summary(), LatencySummary::default());
    }

    #[test]
    fn first_received_keeps_the_first() {
        let base = Instant::now();
        let c = KindCounters::default();
        assert_eq!(c.snapshot(base).first_received_at, None);
        c.mark_first_received(base, base + Duration::from_millis(5));
        c.mark_first_received(base, base + Duration::from_millis(9));
        assert_eq!(
            c.snapshot(base).first_received_at,
            Some(base + Duration::from_millis(5))
        );
    }
}
