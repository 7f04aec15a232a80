//! Decoder: what a video decoder would make of one received RTP stream (one SSRC), without
//! decoding anything: which frames arrive complete and decodable, freezes, the resolution of
//! the last keyframe and the recent bitrate.
//!
//! Pure (time is an argument). Packets are consumed in sequence-number order, like a jitter
//! buffer: out-of-order ones wait, and a missing one is waited for (NACK may bring it back)
//! for [`NACK_WAIT`]. After that the decoder gives up on it: the frame it belonged to is
//! dropped and every frame after it is undecodable until the next keyframe (a reference is
//! gone), when it wants a keyframe ([`Decoder::wants_keyframe`]).
//!
//! Decoded frames are rendered like a browser's jitter buffer would: at `capture time +
//! playout delay` (the capture time is the send time in the payload), or when complete if
//! later. The playout delay follows the 95th percentile of recent frames' transit times, so
//! on a lossy link frames repaired by a retransmission mostly still render on time, as in
//! Chrome, whose target delay grows with the NACK round trip. A freeze is a gap between two
//! rendered frames longer than `max(3 x mean frame interval, mean + 150 ms)`, the definition
//! of the W3C `freezeCount` stat.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// How long a missing packet is waited for before the decoder gives up on it: three or four
/// NACK rounds on a 150 ms RTT link (Chrome waits longer still: it asks for a keyframe after
/// about 3 s without a decodable frame, or when a packet ages out of its NACK list).
pub const NACK_WAIT: Duration = Duration::from_millis(1000);

/// The most packets buffered behind a missing one before giving up on it regardless.
const MAX_BUFFERED: usize = 2048;

/// Width of the bitrate window.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// Frames whose transit times set the playout delay.
const PLAYOUT_WINDOW: usize = 128;
/// The playout delay never exceeds this.
const MAX_PLAYOUT_DELAY_US: u64 = 1_000_000;

/// How often a decoder that wants a keyframe asks again.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_secs(1);

/// One received packet, as the decoder needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PacketInfo {
    pub(crate) seq: u16,
    pub(crate) marker: bool,
    /// Starts a frame, per the codec descriptor.
    pub(crate) starts_frame: bool,
    /// Starts a keyframe.
    pub(crate) keyframe: bool,
    /// `(width, height)` of a keyframe, when the codec says (VP8).
    pub(crate) size: Option<(u16, u16)>,
    /// Payload bytes.
    pub(crate) len: usize,
    /// When the sender sent it (wall clock, microseconds), from the payload, if intact.
    pub(crate) sent_us: Option<u64>,
    /// When it arrived (same clock).
    pub(crate) arrived_us: u64,
}

/// A snapshot of one received video stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceivedVideo {
    /// The stream's SSRC.
    pub ssrc: u32,
    /// Its simulcast rid, when the sender announced one.
    pub rid: Option<String>,
    /// RTP packets received (retransmissions included).
    pub packets: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// Payload bits per second over the last second.
    pub bitrate_bps: u64,
    /// `(width, height)` of the last keyframe (VP8 only), e.g. to tell simulcast layers apart.
    pub resolution: Option<(u16, u16)>,
    /// Keyframes decoded.
    pub keyframes: u64,
    /// Frames that arrived complete with their references: what a viewer sees.
    pub frames_decoded: u64,
    /// Frames lost or undecodable (a packet given up on, or a reference missing).
    pub frames_dropped: u64,
    /// Packets given up on after [`NACK_WAIT`].
    pub packets_given_up: u64,
    /// Packets that arrived after they were given up on, or twice.
    pub packets_late: u64,
    /// Freezes between rendered frames.
    pub freezes: u64,
    /// Their total duration.
    pub freeze_duration: Duration,
    /// Keyframe requests (PLI) sent for this stream because it could not be decoded.
    pub keyframe_requests: u64,
    /// When the last frame was decoded.
    pub last_decoded_at: Option<Instant>,
    /// The playout delay the emulated jitter buffer uses now.
    pub playout_delay: Duration,
}

impl ReceivedVideo {
    /// Decoded frames as a fraction of all frames seen (1.0 with none).
    pub fn decodable_ratio(&self) -> f64 {
        let total = self.frames_decoded + self.frames_dropped;
        if total == 0 {
            1.0
        } else {
            self.frames_decoded as f64 / total as f64
        }
    }
}

/// The frame being assembled.
#[derive(Debug, Clone, Copy)]
struct Assembly {
    keyframe: bool,
    size: Option<(u16, u16)>,
    /// A packet of it was given up on.
    broken: bool,
    /// Send time of its first packet (wall clock, microseconds).
    captured_us: Option<u64>,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Decoder {
    stats: ReceivedVideo,
    /// Extended sequence number of the last packet seen (for unwrapping).
    highest: Option<u64>,
    /// Next extended sequence number to consume.
    next: Option<u64>,
    /// Out-of-order packets waiting, with their arrival time.
    buffer: BTreeMap<u64, (PacketInfo, Instant)>,
    frame: Option<Assembly>,
    /// Whether the frames consumed since the last keyframe all decoded.
    chain_ok: bool,
    mean_interval: Option<Duration>,
    /// When the last frame was rendered (wall clock, microseconds).
    last_render_us: Option<u64>,
    /// The latest arrival: `Instant` and wall clock, to tell wall-clock time at any `now`.
    clock: Option<(Instant, u64)>,
    /// Transit times (complete minus captured) of recent frames, microseconds.
    transits: VecDeque<u64>,
    recent: VecDeque<(Instant, usize)>,
    last_keyframe_request: Option<Instant>,
}

impl Decoder {
    pub(crate) fn new(ssrc: u32, rid: Option<String>) -> Self {
        Decoder {
            stats: ReceivedVideo {
                ssrc,
                rid,
                ..ReceivedVideo::default()
            },
            highest: None,
            next: None,
            buffer: BTreeMap::new(),
            frame: None,
            chain_ok: false,
            mean_interval: None,
            last_render_us: None,
            clock: None,
            transits: VecDeque::new(),
            recent: VecDeque::new(),
            last_keyframe_request: None,
        }
    }

    /// The SSRC it decodes.
    pub(crate) fn ssrc(&self) -> u32 {
        self.stats.ssrc
    }

    /// The snapshot at `now`.
    pub(crate) fn snapshot(&self, now: Instant) -> ReceivedVideo {
        let mut s = self.stats.clone();
        let bytes: usize = self
            .recent
            .iter()
            .filter(|(t, _)| now.saturating_duration_since(*t) <= RATE_WINDOW)
            .map(|(_, b)| b)
            .sum();
        s.bitrate_bps = bytes as u64 * 8;
        s
    }

    fn unwrap_seq(&mut self, seq: u16) -> u64 {
        let ext = match self.highest {
            None => u64::from(seq) + (1 << 16),
            Some(h) => {
                let base = h & !0xffff;
                let candidates = [base.wrapping_sub(1 << 16), base, base + (1 << 16)];
                candidates
                    .into_iter()
                    .map(|b| b + u64::from(seq))
                    .min_by_key(|c| c.abs_diff(h))
                    .unwrap_or(base + u64::from(seq))
            }
        };
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
        ext
    }

    /// Takes one packet that arrived at `now`.
    pub(crate) fn on_packet(&mut self, now: Instant, p: PacketInfo) {
        self.stats.packets += 1;
        self.stats.bytes += p.len as u64;
        self.recent.push_back((now, p.len));
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > RATE_WINDOW)
        {
            self.recent.pop_front();
        }
        self.clock = Some((now, p.arrived_us));
        let ext = self.unwrap_seq(p.seq);
        let next = *self.next.get_or_insert(ext);
        if ext < next || self.buffer.contains_key(&ext) {
            self.stats.packets_late += 1;
            return;
        }
        self.buffer.insert(ext, (p, now));
        self.advance(now);
    }

    /// Gives up on missing packets that waited too long. Call now and then (every packet
    /// does, too).
    pub(crate) fn on_tick(&mut self, now: Instant) {
        self.advance(now);
    }

    /// Whether to send a keyframe request now (and notes that one is sent).
    pub(crate) fn wants_keyframe(&mut self, now: Instant) -> bool {
        if self.chain_ok || self.stats.packets == 0 {
            return false;
        }
        let due = self
            .last_keyframe_request
            .is_none_or(|t| now.saturating_duration_since(t) >= KEYFRAME_REQUEST_INTERVAL);
        if due {
            self.last_keyframe_request = Some(now);
            self.stats.keyframe_requests += 1;
        }
        due
    }

    fn advance(&mut self, now: Instant) {
        loop {
            let Some(next) = self.next else { return };
            if let Some((p, _)) = self.buffer.remove(&next) {
                self.next = Some(next + 1);
                self.consume(now, p);
                continue;
            }
            // `next` is missing. Give up on it once the oldest waiting packet waited enough.
            let Some((&first, &(_, arrived))) = self.buffer.iter().next() else {
                return;
            };
            let waited = now.saturating_duration_since(arrived);
            if waited < NACK_WAIT && self.buffer.len() < MAX_BUFFERED {
                return;
            }
            self.stats.packets_given_up += first - next;
            self.next = Some(first);
            self.chain_ok = false;
            match &mut self.frame {
                Some(f) => f.broken = true,
                None => {
                    // Whatever frame the lost packets started is lost whole.
                    self.frame = Some(Assembly {
                        keyframe: false,
                        size: None,
                        broken: true,
                        captured_us: None,
                    });
                }
            }
        }
    }

    fn consume(&mut self, now: Instant, p: PacketInfo) {
        if p.starts_frame {
            if let Some(unfinished) = self.frame.take() {
                // A new frame began before the old one's marker: the old one lost its end.
                let _ = unfinished;
                self.stats.frames_dropped += 1;
                self.chain_ok = false;
            }
            self.frame = Some(Assembly {
                keyframe: p.keyframe,
                size: p.size,
                broken: false,
                captured_us: p.sent_us,
            });
        } else if self.frame.is_none() {
            // The middle of a frame whose start we never saw (before the first packet).
            self.frame = Some(Assembly {
                keyframe: false,
                size: None,
                broken: true,
                captured_us: None,
            });
        }
        if p.marker
            && let Some(frame) = self.frame.take()
        {
            // Complete now, which is later than the marker's arrival if it waited for a
            // retransmission of an earlier packet.
            let now_us = self.clock.map_or(p.arrived_us, |(at, us)| {
                us + now.saturating_duration_since(at).as_micros() as u64
            });
            self.end_frame(now, now_us, frame);
        }
    }

    fn end_frame(&mut self, now: Instant, now_us: u64, frame: Assembly) {
        if frame.broken {
            self.stats.frames_dropped += 1;
            self.chain_ok = false;
            return;
        }
        if frame.keyframe {
            self.chain_ok = true;
            self.stats.keyframes += 1;
            if frame.size.is_some() {
                self.stats.resolution = frame.size;
            }
        }
        if !self.chain_ok {
            self.stats.frames_dropped += 1;
            return;
        }
        self.stats.frames_decoded += 1;
        self.stats.last_decoded_at = Some(now);
        let render_us = self.render_time(now_us, frame.captured_us);
        if let Some(last) = self.last_render_us {
            let gap = Duration::from_micros(render_us.saturating_sub(last));
            let mean = self.mean_interval.unwrap_or(gap);
            let threshold = (mean * 3).max(mean + Duration::from_millis(150));
            if self.mean_interval.is_some() && gap > threshold {
                self.stats.freezes += 1;
                self.stats.freeze_duration += gap;
            } else {
                // Exponential mean over normal intervals, weight 1/8.
                self.mean_interval = Some((mean * 7 + gap) / 8);
            }
        }
        self.last_render_us = Some(self.last_render_us.map_or(render_us, |l| l.max(render_us)));
    }

    /// When a frame complete at `complete_us` and captured at `captured_us` is shown, and the
    /// playout delay updated with its transit time.
    fn render_time(&mut self, complete_us: u64, captured_us: Option<u64>) -> u64 {
        let Some(captured) = captured_us else {
            return complete_us;
        };
        let transit = complete_us.saturating_sub(captured);
        self.transits.push_back(transit);
        if self.transits.len() > PLAYOUT_WINDOW {
            self.transits.pop_front();
        }
        let mut sorted: Vec<u64> = self.transits.iter().copied().collect();
        sorted.sort_unstable();
        let p95 = sorted[(sorted.len() * 95 / 100).min(sorted.len() - 1)];
        let delay = p95.min(MAX_PLAYOUT_DELAY_US);
        self.stats.playout_delay = Duration::from_micros(delay);
        (captured + delay).max(complete_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// Packets of frame `f` (3 packets each, keyframe every 30 frames).
    fn frame(f: u16) -> Vec<PacketInfo> {
        (0..3)
            .map(|i| PacketInfo {
                seq: f.wrapping_mul(3).wrapping_add(i),
                marker: i == 2,
                starts_frame: i == 0,
                keyframe: i == 0 && f % 30 == 0,
                size: (i == 0 && f % 30 == 0).then_some((640, 360)),
                len: 1000,
                sent_us: Some(33_000 * u64::from(f)),
                arrived_us: 33_000 * u64::from(f),
            })
            .collect()
    }

    /// The packet as it arrives at `at` (after `t0`).
    fn at(mut p: PacketInfo, t0: Instant, now: Instant) -> PacketInfo {
        p.arrived_us = now.duration_since(t0).as_micros() as u64;
        p
    }

    fn feed(d: &mut Decoder, t0: Instant, frames: impl IntoIterator<Item = u16>, skip: &[u16]) {
        for f in frames {
            let now = t0 + ms(33 * u64::from(f));
            for p in frame(f) {
                if !skip.contains(&p.seq) {
                    d.on_packet(now, at(p, t0, now));
                }
            }
            d.on_tick(now);
        }
    }

    #[test]
    fn clean_stream_decodes_everything() {
        let mut d = Decoder::new(1, None);
        let t0 = Instant::now();
        feed(&mut d, t0, 0..90, &[]);
        let s = d.snapshot(t0 + ms(33 * 89));
        assert_eq!((s.frames_decoded, s.frames_dropped), (90, 0));
        assert_eq!(s.keyframes, 3);
        assert_eq!(s.resolution, Some((640, 360)));
        assert_eq!(s.freezes, 0);
        assert_eq!(s.packets, 270);
        // One second of 3 x 1000 bytes at 30 fps, give or take a frame at the edges.
        assert!(
            (700_000..=750_000).contains(&s.bitrate_bps),
            "{}",
            s.bitrate_bps
        );
        assert!(!d.wants_keyframe(t0));
    }

    #[test]
    fn a_retransmission_in_time_loses_nothing() {
        let mut d = Decoder::new(1, None);
        let t0 = Instant::now();
        feed(&mut d, t0, 0..10, &[16]);
        // Packet 16 (frame 5) comes back 200 ms later: frames 5.. were held, not lost.
        let late = t0 + ms(33 * 9 + 200);
        d.on_packet(late, at(frame(5)[1], t0, late));
        let s = d.snapshot(t0 + ms(600));
        assert_eq!((s.frames_decoded, s.frames_dropped), (10, 0));
        assert_eq!(s.packets_given_up, 0);
        // Held frames render late: without a playout delay yet, that is one freeze.
        assert_eq!(s.freezes, 1);
    }

    #[test]
    fn a_lost_packet_breaks_the_chain_until_the_next_keyframe() {
        let mut d = Decoder::new(1, None);
        let t0 = Instant::now();
        feed(&mut d, t0, 0..60, &[31]); // frame 10's middle packet never comes
        let s = d.snapshot(t0 + ms(33 * 60));
        assert_eq!(s.packets_given_up, 1);
        // Frames 10..29 are lost (10 broken, the rest without a reference); 30.. decode.
        assert_eq!(s.frames_dropped, 20);
        assert_eq!(s.frames_decoded, 40);
        assert_eq!(s.freezes, 1, "the gap from frame 9 to 30 is a freeze");
        assert!(s.freeze_duration >= ms(33 * 21), "{:?}", s.freeze_duration);
        // A late copy of it counts as late, changes nothing.
        let late = t0 + ms(3000);
        d.on_packet(late, at(frame(10)[1], t0, late));
        assert_eq!(d.snapshot(t0).packets_late, 1);
    }

    #[test]
    fn wants_a_keyframe_while_broken_at_most_once_a_second() {
        let mut d = Decoder::new(1, None);
        let t0 = Instant::now();
        feed(&mut d, t0, 0..5, &[]);
        assert!(!d.wants_keyframe(t0 + ms(200)));
        feed(&mut d, t0, 5..29, &[15]);
        // Packet 15 (frame 5, at 165 ms) is given up on once it has been waited for.
        let t = t0 + ms(165) + NACK_WAIT + ms(10);
        assert!(
            !d.wants_keyframe(t - ms(20)),
            "still waiting for the retransmission"
        );
        d.on_tick(t);
        assert!(d.wants_keyframe(t));
        assert!(!d.wants_keyframe(t + ms(500)));
        assert!(d.wants_keyframe(t + ms(1000)));
        feed(&mut d, t0, 29..35, &[]);
        assert!(!d.wants_keyframe(t0 + ms(33 * 40)), "a keyframe fixed it");
        assert_eq!(d.snapshot(t0).keyframe_requests, 2);
    }

    #[test]
    fn starting_mid_stream_waits_for_a_keyframe() {
        let mut d = Decoder::new(1, None);
        let t0 = Instant::now();
        feed(&mut d, t0, 20..40, &[]);
        let s = d.snapshot(t0);
        assert_eq!(s.frames_dropped, 10);
        assert_eq!(s.frames_decoded, 10);
    }

    #[test]
    fn the_playout_delay_absorbs_regular_retransmissions() {
        // Every 10th frame needs a retransmission that lands 250 ms late; after a few of
        // them the playout delay covers it and frames render on time: no more freezes.
        let mut d = Decoder::new(1, None);
        let t0 = Instant::now();
        let mut held: Vec<(Instant, PacketInfo)> = Vec::new();
        for f in 0..600u16 {
            let now = t0 + ms(33 * u64::from(f));
            for (when, p) in std::mem::take(&mut held) {
                if when <= now {
                    d.on_packet(now, at(p, t0, now));
                } else {
                    held.push((when, p));
                }
            }
            for p in frame(f) {
                if f % 10 == 5 && p.seq % 3 == 1 {
                    held.push((now + ms(250), p));
                } else {
                    d.on_packet(now, at(p, t0, now));
                }
            }
        }
        let s = d.snapshot(t0);
        assert_eq!(s.frames_dropped, 0);
        assert!(s.freezes <= 3, "{s:?}");
        assert!(s.playout_delay >= ms(200), "{s:?}");
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut d = Decoder::new(1, None);
        let t0 = Instant::now();
        // 3 x 21845 = 65535: frames straddle the wrap.
        feed(&mut d, t0, 21840..21860, &[]);
        let s = d.snapshot(t0);
        assert_eq!(s.frames_dropped + s.frames_decoded, 20);
        assert_eq!(s.packets_given_up, 0);
    }
}
