//! Payload: the synthetic bytes a [`TestPeer`](crate::TestPeer) puts in each RTP packet, and the
//! receiver's check that forwarding kept them intact.
//!
//! Every payload is a codec descriptor (enough of Opus, VP8 or H.264 for an SFU or a browser to
//! recognise frames and keyframes), then a 28-byte [`Block`] of our own, then filler:
//!
//! ```text
//! +------------------+------+-----+---------+---------+----------+--------------------+
//! | codec descriptor | SHOP | tag | counter | sent_us | checksum | filler (from count) |
//! |  1..=11 bytes    |  4   |  4  |    8    |    8    |    4     |  up to the size     |
//! +------------------+------+-----+---------+---------+----------+--------------------+
//! ```
//!
//! Integers are big-endian. `checksum` is 32-bit FNV-1a over the block without the checksum
//! field, then the filler. The codec descriptor is *not* covered, so an SFU that legitimately
//! rewrites VP8 picture ids or similar still yields intact payloads; it is parsed instead (that
//! is how keyframes are detected).
//!
//! The module is pure: no clock, no I/O. The caller passes `sent_us` in and reads it back.

/// The four bytes that open every [`Block`].
pub const MAGIC: [u8; 4] = *b"SHOP";

/// Length of a [`Block`] on the wire.
pub const BLOCK_LEN: usize = 28;

/// Width written into VP8 keyframe headers.
pub const VP8_WIDTH: u16 = 640;
/// Height written into VP8 keyframe headers.
pub const VP8_HEIGHT: u16 = 480;

/// Opus TOC byte we send: config 15 (hybrid, fullband, 20 ms), mono, one frame.
const OPUS_TOC: u8 = 15 << 3;
/// VP8 keyframe start code (RFC 6386 §9.1).
const VP8_START_CODE: [u8; 3] = [0x9d, 0x01, 0x2a];
/// How far into a payload the receiver looks for [`MAGIC`] when the descriptor did not parse.
const MAGIC_SEARCH_WINDOW: usize = 32;

/// The codec framing of a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PayloadFormat {
    /// One Opus TOC byte, then the block.
    Opus,
    /// RFC 7741 payload descriptor (PID 0, no extensions), VP8 payload header on the first packet
    /// of a frame (with the keyframe start code and size on keyframes).
    Vp8,
    /// RFC 6184: a single NAL unit per packet (type 5 for keyframes, 1 otherwise), or FU-A when a
    /// frame needs more than one packet.
    H264,
}

/// Our 28 bytes inside every payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// Identifies the sending stream (peer and m-line); opaque to the receiver.
    pub tag: u32,
    /// Per-stream packet counter, starting at 0.
    pub counter: u64,
    /// Send time, microseconds since `UNIX_EPOCH` (wall clock).
    pub sent_us: u64,
}

/// What the receiver learned from one payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inspection {
    /// The block, if it was found and its checksum held; `None` means corrupt.
    pub block: Option<Block>,
    /// The payload starts a keyframe (per the codec descriptor).
    pub keyframe: bool,
}

/// 32-bit FNV-1a, continued from `hash`.
fn fnv1a(mut hash: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

const FNV_OFFSET: u32 = 0x811c_9dc5;

/// Filler byte `i` of the packet with this counter.
fn filler_byte(counter: u64, i: usize) -> u8 {
    // Truncations are the point: a cheap pattern that differs per packet and per position.
    (counter as u8).wrapping_mul(31).wrapping_add(i as u8) ^ 0x5a
}

/// Appends `block` and filler to `buf` (which holds the codec descriptor) until `buf` is
/// `total_len` long (or just the block, if `total_len` is smaller than that).
pub fn write_block(buf: &mut Vec<u8>, block: &Block, total_len: usize) {
    let start = buf.len();
    buf.extend_from_slice(&MAGIC);
    buf.extend_from_slice(&block.tag.to_be_bytes());
    buf.extend_from_slice(&block.counter.to_be_bytes());
    buf.extend_from_slice(&block.sent_us.to_be_bytes());
    let checksum_at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    let filler_start = buf.len();
    let filler_len = total_len.saturating_sub(filler_start);
    buf.extend((0..filler_len).map(|i| filler_byte(block.counter, i)));

    let hash = fnv1a(FNV_OFFSET, &buf[start..checksum_at]);
    let hash = fnv1a(hash, &buf[filler_start..]);
    buf[checksum_at..checksum_at + 4].copy_from_slice(&hash.to_be_bytes());
}

/// Parses and checks a block (plus filler) that starts at `data[0]`.
pub fn read_block(data: &[u8]) -> Option<Block> {
    if data.len() < BLOCK_LEN || data[..4] != MAGIC {
        return None;
    }
    let u32_at = |i: usize| u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
    let u64_at = |i: usize| (u64::from(u32_at(i)) << 32) | u64::from(u32_at(i + 4));
    let block = Block {
        tag: u32_at(4),
        counter: u64_at(8),
        sent_us: u64_at(16),
    };
    let filler = &data[BLOCK_LEN..];
    let hash = fnv1a(fnv1a(FNV_OFFSET, &data[..24]), filler);
    if hash != u32_at(24) {
        return None;
    }
    let pattern_ok = filler
        .iter()
        .enumerate()
        .all(|(i, &b)| b == filler_byte(block.counter, i));
    pattern_ok.then_some(block)
}

/// Builds one audio payload of `total_len` bytes (at least the descriptor and the block).
pub fn audio_payload(block: &Block, total_len: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(total_len.max(1 + BLOCK_LEN));
    buf.push(OPUS_TOC);
    write_block(&mut buf, block, total_len);
    buf
}

/// Audio payload size for a packet counter: 80..=160 bytes, varying like a VBR codec would.
pub fn audio_payload_len(counter: u64) -> usize {
    80 + (counter.wrapping_mul(37) % 81) as usize
}

/// The VP8 frame tag (RFC 6386 §9.1): 3 bytes, `P` = 0 on keyframes, show_frame = 1.
fn vp8_frame_tag(keyframe: bool, first_partition_len: u32) -> [u8; 3] {
    let size = first_partition_len & 0x7_ffff;
    let p = u32::from(!keyframe);
    let word = p | (1 << 4) | (size << 5);
    [word as u8, (word >> 8) as u8, (word >> 16) as u8]
}

/// Splits one video frame of `frame_len` bytes into payloads of at most `max_payload` bytes.
///
/// `next_block` is called once per payload, in order, for the block to embed. VP8 keyframes
/// declare [`VP8_WIDTH`] x [`VP8_HEIGHT`]; [`video_frame_payloads_sized`] takes a size.
pub fn video_frame_payloads(
    format: PayloadFormat,
    frame_len: usize,
    keyframe: bool,
    max_payload: usize,
    next_block: impl FnMut() -> Block,
) -> Vec<Vec<u8>> {
    video_frame_payloads_sized(
        format,
        frame_len,
        keyframe,
        max_payload,
        (VP8_WIDTH, VP8_HEIGHT),
        next_block,
    )
}

/// [`video_frame_payloads`] with the `(width, height)` a VP8 keyframe header declares (a
/// receiver reads it back with [`vp8_keyframe_size`], e.g. to tell simulcast layers apart).
pub fn video_frame_payloads_sized(
    format: PayloadFormat,
    frame_len: usize,
    keyframe: bool,
    max_payload: usize,
    (width, height): (u16, u16),
    mut next_block: impl FnMut() -> Block,
) -> Vec<Vec<u8>> {
    // Room for the largest descriptor (VP8 keyframe: 1 + 10) plus the block.
    let min_payload = 11 + BLOCK_LEN;
    let max_payload = max_payload.max(min_payload);
    let frame_len = frame_len.max(min_payload);
    let count = frame_len.div_ceil(max_payload);
    let base = frame_len / count;
    let extra = frame_len % count;
    let single = count == 1;
    (0..count)
        .map(|i| {
            let len = (base + usize::from(i < extra)).max(min_payload);
            let first = i == 0;
            let last = i + 1 == count;
            let mut buf = Vec::with_capacity(len);
            match format {
                // Opus is no video format; a caller asking for it gets VP8 framing.
                PayloadFormat::Vp8 | PayloadFormat::Opus => {
                    // RFC 7741 §4.2: X=0, N=0, S on the first packet, PID=0.
                    buf.push(if first { 0x10 } else { 0x00 });
                    if first {
                        buf.extend_from_slice(&vp8_frame_tag(keyframe, (len / 2) as u32));
                        if keyframe {
                            buf.extend_from_slice(&VP8_START_CODE);
                            // 14-bit sizes, scaling bits 0 (RFC 6386 §9.1).
                            buf.extend_from_slice(&(width & 0x3fff).to_le_bytes());
                            buf.extend_from_slice(&(height & 0x3fff).to_le_bytes());
                        }
                    }
                }
                PayloadFormat::H264 => {
                    let nal_type = if keyframe { 5 } else { 1 };
                    if single {
                        // F=0, NRI=3.
                        buf.push(0x60 | nal_type);
                    } else {
                        buf.push(0x60 | 28); // FU indicator: NRI=3, type FU-A
                        let mut header = nal_type;
                        if first {
                            header |= 0x80;
                        }
                        if last {
                            header |= 0x40;
                        }
                        buf.push(header);
                    }
                }
            }
            write_block(&mut buf, &next_block(), len);
            buf
        })
        .collect()
}

/// Length of the VP8 payload descriptor at the start of `p`, and its S bit and PID.
fn vp8_descriptor(p: &[u8]) -> Option<(usize, bool, u8)> {
    let b0 = *p.first()?;
    let start = b0 & 0x10 != 0;
    let pid = b0 & 0x07;
    let mut len = 1;
    if b0 & 0x80 != 0 {
        let x = *p.get(1)?;
        len += 1;
        if x & 0x80 != 0 {
            // I: picture id, 7 or 15 bits.
            let m = *p.get(len)? & 0x80 != 0;
            len += if m { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            len += 1; // L: TL0PICIDX
        }
        if x & 0x30 != 0 {
            len += 1; // T or K: TID/Y/KEYIDX
        }
    }
    (p.len() >= len).then_some((len, start, pid))
}

/// Where the block starts and whether this payload starts a keyframe, per the codec framing.
fn parse_descriptor(format: PayloadFormat, p: &[u8]) -> Option<(usize, bool)> {
    match format {
        PayloadFormat::Opus => (!p.is_empty()).then_some((1, false)),
        PayloadFormat::Vp8 => {
            let (len, start, pid) = vp8_descriptor(p)?;
            if !(start && pid == 0) {
                return Some((len, false));
            }
            let tag = p.get(len..len + 3)?;
            if tag[0] & 0x01 == 0 {
                let keyframe = p.get(len + 3..len + 6)? == VP8_START_CODE;
                Some((len + 10, keyframe))
            } else {
                Some((len + 3, false))
            }
        }
        PayloadFormat::H264 => {
            let nal = *p.first()? & 0x1f;
            match nal {
                1..=23 => Some((1, nal == 5)),
                28 => {
                    let fu = *p.get(1)?;
                    Some((2, fu & 0x80 != 0 && fu & 0x1f == 5))
                }
                _ => None,
            }
        }
    }
}

/// Whether the payload starts a frame, per the codec framing: the VP8 S bit on partition 0,
/// an H.264 single NAL unit or the first FU-A fragment, any Opus packet. A receiver that lost
/// packets resynchronises on this.
pub fn starts_frame(format: PayloadFormat, payload: &[u8]) -> bool {
    match format {
        PayloadFormat::Opus => !payload.is_empty(),
        PayloadFormat::Vp8 => {
            vp8_descriptor(payload).is_some_and(|(_, start, pid)| start && pid == 0)
        }
        PayloadFormat::H264 => match payload.first().map(|b| b & 0x1f) {
            Some(1..=23) => true,
            Some(28) => payload.get(1).is_some_and(|fu| fu & 0x80 != 0),
            _ => false,
        },
    }
}

/// The `(width, height)` a VP8 keyframe's header declares, if `payload` starts one.
pub fn vp8_keyframe_size(payload: &[u8]) -> Option<(u16, u16)> {
    let (len, start, pid) = vp8_descriptor(payload)?;
    if !(start && pid == 0) {
        return None;
    }
    let header = payload.get(len..len + 10)?;
    if header[0] & 0x01 != 0 || header[3..6] != VP8_START_CODE {
        return None;
    }
    let width = u16::from_le_bytes([header[6], header[7]]) & 0x3fff;
    let height = u16::from_le_bytes([header[8], header[9]]) & 0x3fff;
    Some((width, height))
}

/// Checks one received payload: finds and verifies the block and detects keyframes.
pub fn inspect(format: PayloadFormat, payload: &[u8]) -> Inspection {
    let parsed = parse_descriptor(format, payload);
    let keyframe = parsed.is_some_and(|(_, k)| k);
    let at_descriptor = parsed.and_then(|(off, _)| payload.get(off..).and_then(read_block));
    let block = at_descriptor.or_else(|| {
        // Descriptor we did not expect (e.g. a rewritten one): look for the magic nearby.
        let window = &payload[..payload.len().min(MAGIC_SEARCH_WINDOW)];
        window
            .windows(MAGIC.len())
            .position(|w| w == MAGIC)
            .and_then(|pos| read_block(&payload[pos..]))
    });
    Inspection { block, keyframe }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(tag: u32) -> impl FnMut() -> Block {
        let mut counter = 0;
        move || {
            counter += 1;
            Block {
                tag,
                counter,
                sent_us: 1_700_000_000_000_000 + counter,
            }
        }
    }

    #[test]
    fn audio_round_trip() {
        for counter in 0..200 {
            let block = Block {
                tag: 7,
                counter,
                sent_us: 42,
            };
            let len = audio_payload_len(counter);
            assert!((80..=160).contains(&len));
            let p = audio_payload(&block, len);
            assert_eq!(p.len(), len);
            let got = inspect(PayloadFormat::Opus, &p);
            assert_eq!(got.block, Some(block));
            assert!(!got.keyframe);
        }
    }

    #[test]
    fn vp8_frames_split_and_mark_keyframes() {
        for keyframe in [true, false] {
            let ps = video_frame_payloads(PayloadFormat::Vp8, 6250, keyframe, 1200, blocks(1));
            assert_eq!(ps.len(), 6);
            assert_eq!(ps.iter().map(Vec::len).sum::<usize>(), 6250);
            for (i, p) in ps.iter().enumerate() {
                assert!(p.len() <= 1200);
                let got = inspect(PayloadFormat::Vp8, p);
                assert_eq!(got.block.map(|b| b.counter), Some(i as u64 + 1));
                assert_eq!(got.keyframe, keyframe && i == 0);
                assert_eq!(p[0] & 0x10 != 0, i == 0, "S bit only on the first packet");
            }
            if keyframe {
                assert_eq!(&ps[0][4..7], &VP8_START_CODE);
                assert_eq!(&ps[0][7..9], &VP8_WIDTH.to_le_bytes());
            }
        }
    }

    #[test]
    fn vp8_with_extended_descriptor_still_parses() {
        let mut p = vec![0x90, 0x80, 0x81, 0x23]; // X, S; I with 15-bit picture id
        p.extend_from_slice(&vp8_frame_tag(true, 100));
        p.extend_from_slice(&VP8_START_CODE);
        p.extend_from_slice(&[0x80, 0x02, 0xe0, 0x01]);
        let block = Block {
            tag: 3,
            counter: 9,
            sent_us: 5,
        };
        write_block(&mut p, &block, 300);
        let got = inspect(PayloadFormat::Vp8, &p);
        assert_eq!(got.block, Some(block));
        assert!(got.keyframe);
    }

    #[test]
    fn vp8_keyframes_carry_their_size() {
        for size in [(320, 180), (640, 360), (1280, 720)] {
            let ps =
                video_frame_payloads_sized(PayloadFormat::Vp8, 3000, true, 1200, size, blocks(1));
            assert_eq!(vp8_keyframe_size(&ps[0]), Some(size));
            assert!(starts_frame(PayloadFormat::Vp8, &ps[0]));
            assert!(inspect(PayloadFormat::Vp8, &ps[0]).block.is_some());
            for p in &ps[1..] {
                assert_eq!(vp8_keyframe_size(p), None);
                assert!(!starts_frame(PayloadFormat::Vp8, p));
            }
        }
        let delta =
            video_frame_payloads_sized(PayloadFormat::Vp8, 900, false, 1200, (1, 1), blocks(1));
        assert_eq!(vp8_keyframe_size(&delta[0]), None);
        assert!(starts_frame(PayloadFormat::Vp8, &delta[0]));
        let legacy = video_frame_payloads(PayloadFormat::Vp8, 900, true, 1200, blocks(1));
        assert_eq!(vp8_keyframe_size(&legacy[0]), Some((VP8_WIDTH, VP8_HEIGHT)));
        let fu = video_frame_payloads(PayloadFormat::H264, 5000, true, 1200, blocks(1));
        assert!(starts_frame(PayloadFormat::H264, &fu[0]));
        assert!(!starts_frame(PayloadFormat::H264, &fu[1]));
    }

    #[test]
    fn h264_single_and_fu_a() {
        let single = video_frame_payloads(PayloadFormat::H264, 900, true, 1200, blocks(2));
        assert_eq!(single.len(), 1);
        assert_eq!(single[0][0] & 0x1f, 5);
        assert!(inspect(PayloadFormat::H264, &single[0]).keyframe);

        let fu = video_frame_payloads(PayloadFormat::H264, 5000, true, 1200, blocks(2));
        assert!(fu.len() > 1);
        for (i, p) in fu.iter().enumerate() {
            assert_eq!(p[0] & 0x1f, 28);
            let got = inspect(PayloadFormat::H264, p);
            assert!(got.block.is_some());
            assert_eq!(got.keyframe, i == 0);
        }
        assert_ne!(fu.last().map(|p| p[1] & 0x40), Some(0), "E bit on the last");
        let delta = video_frame_payloads(PayloadFormat::H264, 900, false, 1200, blocks(2));
        assert_eq!(delta[0][0] & 0x1f, 1);
        assert!(!inspect(PayloadFormat::H264, &delta[0]).keyframe);
    }

    #[test]
    fn any_flipped_byte_after_the_descriptor_is_corrupt() {
        let ps = video_frame_payloads(PayloadFormat::Vp8, 1000, false, 1200, blocks(1));
        let p = &ps[0];
        for i in 4..p.len() {
            let mut bad = p.clone();
            bad[i] ^= 0x01;
            assert_eq!(inspect(PayloadFormat::Vp8, &bad).block, None, "byte {i}");
        }
        assert_eq!(inspect(PayloadFormat::Vp8, &p[..p.len() - 1]).block, None);
        assert_eq!(inspect(PayloadFormat::Vp8, &[]).block, None);
    }
}
