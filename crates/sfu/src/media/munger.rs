//! Munger: rewrites SSRC, sequence number and timestamp of forwarded RTP for one DownTrack.
//!
//! Within one source the mapping is a fixed offset, so gaps, reordering and retransmissions
//! upstream stay aligned downstream (NACKs keep working: FINDINGS). When the source changes
//! (another layer, or a resume after a pause) the offsets are recomputed so the output
//! continues at the next sequence number and at a timestamp that advanced with the wall
//! clock: the receiver sees one continuous stream.

use std::time::Instant;

/// Output position: the highest sequence number sent and its timestamp.
#[derive(Debug, Clone, Copy)]
struct Last {
    seq: u16,
    ts: u32,
    at: Instant,
}

/// The mapping from the current source to the output.
#[derive(Debug, Clone, Copy)]
struct Mapping {
    src_ssrc: u32,
    /// Oldest source sequence number still forwarded: the mapping's first packet, then at
    /// most [`MAX_LATE`] behind `newest_src_seq` (so serial arithmetic against it stays
    /// meaningful however many packets the mapping carries).
    floor_src_seq: u16,
    /// Newest source sequence number seen in this mapping.
    newest_src_seq: u16,
    seq_offset: u16,
    ts_offset: u32,
}

/// How far behind the newest packet of a mapping a late packet may be and still be
/// forwarded (reordering and retransmissions are far closer than this).
const MAX_LATE: u16 = 0x4000;

/// SSRC / sequence / timestamp rewriter of one DownTrack.
#[derive(Debug, Clone)]
pub struct Munger {
    out_ssrc: u32,
    out_payload_type: u8,
    clock_rate: u32,
    initial: (u16, u32),
    mapping: Option<Mapping>,
    last: Option<Last>,
}

/// `a` is newer than `b` in sequence-number space (RFC 1982 serial arithmetic).
pub fn seq_newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

impl Munger {
    /// A munger that writes `out_ssrc` / `out_payload_type`; the first packet gets sequence
    /// number `initial_seq` and timestamp `initial_ts` (random, per RFC 3550).
    pub fn new(
        out_ssrc: u32,
        out_payload_type: u8,
        clock_rate: u32,
        initial_seq: u16,
        initial_ts: u32,
    ) -> Self {
        Munger {
            out_ssrc,
            out_payload_type,
            clock_rate,
            initial: (initial_seq, initial_ts),
            mapping: None,
            last: None,
        }
    }

    /// Forget the current source: the next packet starts a new mapping that continues the
    /// output. Call on pause/resume and before switching layers.
    pub fn resync(&mut self) {
        self.mapping = None;
    }

    /// Whether a mapping is established (a packet was forwarded since the last resync).
    pub fn is_mapped(&self) -> bool {
        self.mapping.is_some()
    }

    /// The SSRC currently mapped, if any.
    pub fn source(&self) -> Option<u32> {
        self.mapping.map(|m| m.src_ssrc)
    }

    /// Rewrites `header` in place for the output stream. Returns `false` when the packet must
    /// not be sent: it predates the start of the current mapping (a late packet across a
    /// switch would collide with sequence numbers already used).
    pub fn rewrite(&mut self, header: &mut rtp::header::Header, now: Instant) -> bool {
        let mapping = match self.mapping {
            Some(mut m) if m.src_ssrc == header.ssrc => {
                let src = header.sequence_number;
                if seq_newer(src, m.newest_src_seq) {
                    m.newest_src_seq = src;
                    if src.wrapping_sub(m.floor_src_seq) > MAX_LATE {
                        m.floor_src_seq = src.wrapping_sub(MAX_LATE);
                    }
                    self.mapping = Some(m);
                } else if m.newest_src_seq.wrapping_sub(src)
                    > m.newest_src_seq.wrapping_sub(m.floor_src_seq)
                {
                    // Older than the floor: before the mapping started, or far too late.
                    return false;
                }
                m
            }
            _ => {
                let (target_seq, target_ts) = match self.last {
                    Some(last) => (
                        last.seq.wrapping_add(1),
                        last.ts.wrapping_add(self.ticks_since(last.at, now)),
                    ),
                    None => self.initial,
                };
                let m = Mapping {
                    src_ssrc: header.ssrc,
                    floor_src_seq: header.sequence_number,
                    newest_src_seq: header.sequence_number,
                    seq_offset: target_seq.wrapping_sub(header.sequence_number),
                    ts_offset: target_ts.wrapping_sub(header.timestamp),
                };
                self.mapping = Some(m);
                m
            }
        };
        let seq = header.sequence_number.wrapping_add(mapping.seq_offset);
        let ts = header.timestamp.wrapping_add(mapping.ts_offset);
        match self.last {
            Some(last) if !seq_newer(seq, last.seq) => {}
            _ => self.last = Some(Last { seq, ts, at: now }),
        }
        header.ssrc = self.out_ssrc;
        header.payload_type = self.out_payload_type;
        header.sequence_number = seq;
        header.timestamp = ts;
        // Upstream extension ids mean nothing on this leg (FINDINGS trap 4); the leg's own
        // interceptors add what it negotiated (transport-cc).
        header.extension = false;
        header.extension_profile = 0;
        header.extensions.clear();
        header.extensions_padding = 0;
        true
    }

    /// Clock ticks between two instants, at least 1 so timestamps never repeat.
    fn ticks_since(&self, then: Instant, now: Instant) -> u32 {
        let elapsed = now.saturating_duration_since(then);
        let ticks = elapsed.as_micros().saturating_mul(self.clock_rate as u128) / 1_000_000;
        u32::try_from(ticks).unwrap_or(u32::MAX / 2).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn header(ssrc: u32, seq: u16, ts: u32) -> rtp::header::Header {
        rtp::header::Header {
            version: 2,
            ssrc,
            sequence_number: seq,
            timestamp: ts,
            payload_type: 120,
            ..Default::default()
        }
    }

    #[test]
    fn offsets_hold_within_a_source_and_continue_across_a_switch() {
        let t0 = Instant::now();
        let mut m = Munger::new(7, 96, 90_000, 1000, 5000);
        let mut h = header(1, 65_534, 100);
        assert!(m.rewrite(&mut h, t0));
        assert_eq!(
            (h.ssrc, h.payload_type, h.sequence_number, h.timestamp),
            (7, 96, 1000, 5000)
        );
        // A gap upstream stays a gap downstream (NACK stays meaningful), across the wrap.
        let mut h = header(1, 1, 3100);
        assert!(m.rewrite(&mut h, t0));
        assert_eq!((h.sequence_number, h.timestamp), (1003, 8000));
        // Switch to another source 100 ms later: continues at 1004, ts advanced by 9000.
        let mut h = header(2, 40, 777);
        assert!(m.rewrite(&mut h, t0 + Duration::from_millis(100)));
        assert_eq!((h.ssrc, h.sequence_number, h.timestamp), (7, 1004, 17_000));
        // A late packet from before the switch point is refused.
        let mut h = header(2, 39, 700);
        assert!(!m.rewrite(&mut h, t0 + Duration::from_millis(100)));
        // A late packet of the old source restarts a mapping after the newest output.
        let mut h = header(1, 2, 3200);
        assert!(m.rewrite(&mut h, t0 + Duration::from_millis(100)));
        assert_eq!(h.sequence_number, 1005);
    }

    #[test]
    fn a_long_mapping_keeps_forwarding_past_half_the_sequence_space() {
        // One source, no switch, no pause: 3 x 65,536 packets (~21 min of 150 pps video).
        // The refusal of packets "before the mapping" once compared every packet with the
        // mapping's first one, and refused everything from 32,768 packets on.
        let t0 = Instant::now();
        let mut m = Munger::new(7, 96, 90_000, 1000, 0);
        let first = 5u16;
        for i in 0..3 * 65_536u32 {
            let src = first.wrapping_add(i as u16);
            let mut h = header(1, src, i * 3000);
            assert!(m.rewrite(&mut h, t0), "packet {i} (seq {src}) refused");
            assert_eq!(h.sequence_number, 1000u16.wrapping_add(i as u16));
        }
        // Reordering and retransmissions are still forwarded, far too late ones are not.
        let newest = first.wrapping_add((3 * 65_536u32 - 1) as u16);
        let mut h = header(1, newest.wrapping_sub(100), 0);
        assert!(m.rewrite(&mut h, t0));
        let mut h = header(1, newest.wrapping_sub(MAX_LATE + 1), 0);
        assert!(!m.rewrite(&mut h, t0));
        // A forward jump (a long upstream gap) is followed, not refused.
        let mut h = header(1, newest.wrapping_add(20_000), 0);
        assert!(m.rewrite(&mut h, t0));
        let mut h = header(1, newest.wrapping_add(20_001), 0);
        assert!(m.rewrite(&mut h, t0));
    }

    #[test]
    fn resync_continues_after_a_pause() {
        let t0 = Instant::now();
        let mut m = Munger::new(7, 96, 48_000, 10, 0);
        let mut h = header(1, 500, 960);
        assert!(m.rewrite(&mut h, t0));
        m.resync();
        let mut h = header(1, 900, 960 * 400);
        assert!(m.rewrite(&mut h, t0 + Duration::from_secs(2)));
        assert_eq!((h.sequence_number, h.timestamp), (11, 96_000));
    }

    #[derive(Debug, Clone)]
    enum Step {
        /// Next packet of the current source, `skip` sequence numbers later (loss).
        Next { skip: u16 },
        /// A packet `back` sequence numbers older than the newest (reorder, retransmission).
        Late { back: u16 },
        /// Switch to another source.
        Switch,
        /// Resync (pause/resume).
        Resync,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (0u16..3).prop_map(|skip| Step::Next { skip }),
            2 => (1u16..20).prop_map(|back| Step::Late { back }),
            1 => Just(Step::Switch),
            1 => Just(Step::Resync),
        ]
    }

    proptest! {
        /// Whatever the loss, reordering and switching: output sequence numbers never repeat
        /// for distinct packets, each new mapping starts right after the newest output, and
        /// within a mapping the output keeps the input's spacing.
        #[test]
        fn output_stays_continuous(start in any::<u16>(), steps in proptest::collection::vec(step(), 1..200)) {
            let t0 = Instant::now();
            let mut m = Munger::new(9, 96, 90_000, start, 0);
            let mut ssrc = 1u32;
            let mut src_seq: u16 = 30_000;
            let mut newest_out: Option<u16> = None;
            let mut sent = std::collections::HashSet::new();
            let mut fresh_mapping = true;
            for (i, s) in steps.into_iter().enumerate() {
                let now = t0 + Duration::from_millis(i as u64 * 10);
                let in_seq = match s {
                    Step::Next { skip } => { src_seq = src_seq.wrapping_add(1 + skip); src_seq }
                    Step::Late { back } => src_seq.wrapping_sub(back),
                    Step::Switch => { ssrc += 1; src_seq = src_seq.wrapping_add(5000); fresh_mapping = true; src_seq }
                    Step::Resync => { m.resync(); fresh_mapping = true; src_seq = src_seq.wrapping_add(1); src_seq }
                };
                let mut h = header(ssrc, in_seq, u32::from(in_seq) * 3000);
                let before = newest_out;
                if m.rewrite(&mut h, now) {
                    if fresh_mapping {
                        let expect = before.map_or(start, |b| b.wrapping_add(1));
                        prop_assert_eq!(h.sequence_number, expect);
                        fresh_mapping = false;
                    }
                    sent.insert((h.sequence_number, ssrc, in_seq));
                    // No two distinct inputs share an output number.
                    let dupes = sent.iter().filter(|(o, _, _)| *o == h.sequence_number).count();
                    prop_assert_eq!(dupes, 1);
                    if newest_out.is_none_or(|n| seq_newer(h.sequence_number, n)) {
                        newest_out = Some(h.sequence_number);
                    }
                } else {
                    prop_assert!(!fresh_mapping);
                }
            }
        }
    }
}
