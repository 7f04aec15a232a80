//! Media: the synthetic audio and video the load tester's clients publish, built once and
//! stamped per packet.
//!
//! Every payload is a codec prefix (an Opus TOC byte, or an RFC 7741 VP8 payload descriptor
//! with the VP8 payload header, start code and size on keyframes), filler, and a 24-byte
//! [`Stamp`] at the very end, so an SFU that rewrites a descriptor cannot move it:
//!
//! ```text
//! +--------------+----------------+------+-----+---------+---------+
//! | codec prefix | filler (fixed) | LOAD | tag | counter | sent_ns |
//! +--------------+----------------+------+-----+---------+---------+
//!                                   4      4      8         8
//! ```
//!
//! `sent_ns` is nanoseconds since the tester's own start (a monotonic clock, read by the same
//! process that receives), so one-way latency needs no clock sync. Templates are built up
//! front; sending a packet costs one copy and a 24-byte patch.

use bytes::{BufMut, Bytes, BytesMut};

/// Opens every stamp.
pub const MAGIC: [u8; 4] = *b"LOAD";
/// Length of the stamp at the end of every payload.
pub const STAMP_LEN: usize = 24;

/// Audio: one Opus-like packet every 20 ms.
pub const AUDIO_PPS: u32 = 50;
/// Audio payload bytes (a 20 ms Opus frame at ~40 kbit/s).
pub const AUDIO_PAYLOAD: usize = 100;
/// Video frames per second.
pub const VIDEO_FPS: u32 = 30;
/// Packets of a delta frame (30 fps x 5 = 150 packets/s).
pub const DELTA_PACKETS: usize = 5;
/// Packets of a keyframe.
pub const KEY_PACKETS: usize = 15;
/// A keyframe every this many frames (3 s at 30 fps), and on request.
pub const KEYFRAME_EVERY: u64 = 90;
/// Video payload bytes per packet: 150 packets/s x 1,200 bytes = 1.44 Mbit/s of payload,
/// ~1.5 Mbit/s with RTP and SRTP overhead.
pub const VIDEO_PAYLOAD: usize = 1200;

/// The RTP timestamp step of one audio packet (48 kHz).
pub const AUDIO_TS_STEP: u32 = 48_000 / AUDIO_PPS;
/// The RTP timestamp step of one video frame (90 kHz).
pub const VIDEO_TS_STEP: u32 = 90_000 / VIDEO_FPS;

/// Opus TOC: config 15 (hybrid, fullband, 20 ms), mono, one frame.
const OPUS_TOC: u8 = 15 << 3;
/// VP8 keyframe start code (RFC 6386 section 9.1).
const VP8_START_CODE: [u8; 3] = [0x9d, 0x01, 0x2a];

/// The stamp at the end of a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The sending stream (peer index x 2 + kind).
    pub tag: u32,
    /// Per-stream packet counter.
    pub counter: u64,
    /// Send time, nanoseconds since the tester started.
    pub sent_ns: u64,
}

impl Stamp {
    /// Reads the stamp at the end of `payload`, if it is there.
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        let at = payload.len().checked_sub(STAMP_LEN)?;
        let s = &payload[at..];
        if s[..4] != MAGIC {
            return None;
        }
        let u32_at = |i: usize| u32::from_be_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
        let u64_at = |i: usize| (u64::from(u32_at(i)) << 32) | u64::from(u32_at(i + 4));
        Some(Stamp {
            tag: u32_at(4),
            counter: u64_at(8),
            sent_ns: u64_at(16),
        })
    }

    fn write(&self, out: &mut [u8]) {
        out[..4].copy_from_slice(&MAGIC);
        out[4..8].copy_from_slice(&self.tag.to_be_bytes());
        out[8..16].copy_from_slice(&self.counter.to_be_bytes());
        out[16..24].copy_from_slice(&self.sent_ns.to_be_bytes());
    }
}

/// Which template a packet uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// An audio frame.
    Audio,
    /// The first packet of a video keyframe.
    KeyStart,
    /// The first packet of a video delta frame.
    DeltaStart,
    /// Any later packet of a video frame.
    Continuation,
}

/// Pre-built payloads; [`Templates::stamp`] makes one packet's payload from them.
#[derive(Debug, Clone)]
pub struct Templates {
    audio: Bytes,
    key_start: Bytes,
    delta_start: Bytes,
    continuation: Bytes,
}

impl Default for Templates {
    fn default() -> Self {
        Templates::new()
    }
}

fn filled(prefix: &[u8], len: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(len);
    b.put_slice(prefix);
    let mut x: u32 = 0x9e37_79b9;
    while b.len() < len - STAMP_LEN {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b.put_u8(x as u8);
    }
    b.put_bytes(0, STAMP_LEN);
    b.freeze()
}

/// The 3-byte VP8 frame tag (RFC 6386 section 9.1): P = 0 on keyframes, show_frame = 1.
fn vp8_frame_tag(keyframe: bool, first_partition_len: u32) -> [u8; 3] {
    let size = first_partition_len & 0x7_ffff;
    let word = u32::from(!keyframe) | (1 << 4) | (size << 5);
    [word as u8, (word >> 8) as u8, (word >> 16) as u8]
}

impl Templates {
    /// Builds the four templates.
    pub fn new() -> Templates {
        let mut key = vec![0x10];
        key.extend_from_slice(&vp8_frame_tag(true, 600));
        key.extend_from_slice(&VP8_START_CODE);
        key.extend_from_slice(&640u16.to_le_bytes());
        key.extend_from_slice(&480u16.to_le_bytes());
        let mut delta = vec![0x10];
        delta.extend_from_slice(&vp8_frame_tag(false, 600));
        Templates {
            audio: filled(&[OPUS_TOC], AUDIO_PAYLOAD),
            key_start: filled(&key, VIDEO_PAYLOAD),
            delta_start: filled(&delta, VIDEO_PAYLOAD),
            continuation: filled(&[0x00], VIDEO_PAYLOAD),
        }
    }

    /// One payload: the template for `part` with `stamp` at its end.
    pub fn stamp(&self, part: Part, stamp: &Stamp) -> Bytes {
        let t = match part {
            Part::Audio => &self.audio,
            Part::KeyStart => &self.key_start,
            Part::DeltaStart => &self.delta_start,
            Part::Continuation => &self.continuation,
        };
        let mut b = BytesMut::from(&t[..]);
        let at = b.len() - STAMP_LEN;
        stamp.write(&mut b[at..]);
        b.freeze()
    }

    /// Whether `payload` is one of ours, unchanged but for the stamp: the template's bytes
    /// (codec prefix and filler) are compared in full.
    pub fn is_intact(&self, payload: &[u8]) -> bool {
        let Some(body) = payload.len().checked_sub(STAMP_LEN).map(|n| &payload[..n]) else {
            return false;
        };
        [
            &self.audio,
            &self.key_start,
            &self.delta_start,
            &self.continuation,
        ]
        .iter()
        .any(|t| t.len() == payload.len() && &t[..body.len()] == body)
    }
}

/// Whether a VP8 payload starts a keyframe (RFC 7741 descriptor without extensions, then the
/// frame tag's P bit). Used to check that keyframes survive forwarding.
pub fn vp8_is_keyframe_start(p: &[u8]) -> bool {
    p.len() > 4 && p[0] & 0x10 != 0 && p[0] & 0x80 == 0 && p[1] & 0x01 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trip_and_integrity() {
        let t = Templates::new();
        for part in [
            Part::Audio,
            Part::KeyStart,
            Part::DeltaStart,
            Part::Continuation,
        ] {
            let s = Stamp {
                tag: 7,
                counter: 123_456_789_012,
                sent_ns: 42,
            };
            let p = t.stamp(part, &s);
            assert_eq!(Stamp::read(&p), Some(s));
            assert!(t.is_intact(&p));
            let mut bad = p.to_vec();
            bad[2] ^= 1;
            assert!(!t.is_intact(&bad));
        }
    }

    #[test]
    fn vp8_keyframes_are_marked() {
        let t = Templates::new();
        let s = Stamp {
            tag: 1,
            counter: 1,
            sent_ns: 1,
        };
        assert!(vp8_is_keyframe_start(&t.stamp(Part::KeyStart, &s)));
        assert!(!vp8_is_keyframe_start(&t.stamp(Part::DeltaStart, &s)));
        assert!(!vp8_is_keyframe_start(&t.stamp(Part::Continuation, &s)));
        // The SFU's own keyframe detector agrees.
        assert!(sfu::media::keyframe::is_keyframe_start(
            sfu::VideoCodec::Vp8,
            &t.stamp(Part::KeyStart, &s)
        ));
        assert!(!sfu::media::keyframe::is_keyframe_start(
            sfu::VideoCodec::Vp8,
            &t.stamp(Part::DeltaStart, &s)
        ));
    }

    #[test]
    fn bitrate_is_about_one_and_a_half_megabits() {
        let packets_per_s = f64::from(VIDEO_FPS) * DELTA_PACKETS as f64;
        let bits = packets_per_s * (VIDEO_PAYLOAD + 12 + 16) as f64 * 8.0;
        assert!((1.4e6..1.6e6).contains(&bits), "{bits}");
    }
}
