//! Depacketize: RTP payloads back into the codec frames a file stores.
//!
//! * Opus (RFC 7587): one packet is one frame, stored as is.
//! * VP8 (RFC 7741): a frame is the packets of one RTP timestamp, from the one that starts
//!   partition 0 (S=1, PID=0) to the one with the marker bit, payload descriptors removed.
//!   The frame's first byte tells a keyframe (P=0) and, on keyframes, the picture size.
//! * VP9 (RFC 9628): a picture is the packets of one timestamp up to the marker; each layer
//!   frame runs from a packet with B=1 to one with E=1. A picture with several spatial layers
//!   is stored as a VP9 superframe (the frames, then an index).
//! * H.264 (RFC 6184, packetization-mode 1): single NAL units, STAP-A and FU-A, rebuilt into
//!   NAL units and stored length-prefixed (AVCC), as Matroska's `V_MPEG4/ISO/AVC` needs; the
//!   SPS and PPS seen go into the track's decoder configuration record.
//!
//! A frame is written only if every packet of it arrived (consecutive sequence numbers from
//! its first packet to its marker). After a lost frame, video waits for the next keyframe
//! (and the writer asks for one), so the file never holds a frame that references a picture
//! it does not have.

use crate::config::VideoCodec;

/// Most bytes one video frame may have; larger ones are dropped (bounded memory).
pub const MAX_FRAME_BYTES: usize = 4 << 20;
/// Most packets one video frame may have.
const MAX_FRAME_PACKETS: usize = 4096;

/// A complete frame, borrowed from the assembler until the next packet.
#[derive(Debug)]
pub struct Frame<'a> {
    /// Its RTP timestamp.
    pub timestamp: u32,
    /// Whether a decoder can start here.
    pub keyframe: bool,
    /// The bytes to store.
    pub data: &'a [u8],
}

/// What pushing a packet gave.
#[derive(Debug)]
pub enum Pushed<'a> {
    /// Nothing complete yet.
    Pending,
    /// A frame is complete.
    Frame(Frame<'a>),
    /// A frame was lost (a packet missing, or a delta frame while waiting for a keyframe):
    /// ask the sender for a keyframe.
    NeedKeyframe,
}

/// Reassembles one video track's frames.
#[derive(Debug)]
pub struct VideoAssembler {
    codec: VideoCodec,
    /// The packets of the frame being collected: (sequence number, payload).
    packets: Vec<(u16, bytes::Bytes, bool)>,
    timestamp: Option<u32>,
    /// The last timestamp completed or given up (older packets are late).
    done: Option<u32>,
    waiting_keyframe: bool,
    frame: Vec<u8>,
    /// SPS and PPS last seen (H.264).
    pub sps: Option<Vec<u8>>,
    /// PPS last seen (H.264).
    pub pps: Option<Vec<u8>>,
    layer_sizes: Vec<usize>,
}

impl VideoAssembler {
    /// An assembler for `codec`, waiting for a keyframe.
    pub fn new(codec: VideoCodec) -> VideoAssembler {
        VideoAssembler {
            codec,
            packets: Vec::with_capacity(64),
            timestamp: None,
            done: None,
            waiting_keyframe: true,
            frame: Vec::with_capacity(64 * 1024),
            sps: None,
            pps: None,
            layer_sizes: Vec::new(),
        }
    }

    /// Adds one packet; returns a frame when it completes one.
    pub fn push(
        &mut self,
        sequence_number: u16,
        timestamp: u32,
        marker: bool,
        payload: &bytes::Bytes,
    ) -> Pushed<'_> {
        if self
            .done
            .is_some_and(|d| (timestamp.wrapping_sub(d) as i32) <= 0)
        {
            return Pushed::Pending; // late: its frame is written or given up
        }
        let mut lost = false;
        if self.timestamp != Some(timestamp) {
            if self.timestamp.is_some() {
                // A newer frame began before the current one completed: it is lost.
                lost = true;
                self.done = self.timestamp;
            }
            self.packets.clear();
            self.timestamp = Some(timestamp);
        }
        if self.packets.len() >= MAX_FRAME_PACKETS {
            return self.give_up();
        }
        let at = self
            .packets
            .iter()
            .position(|(s, _, _)| (sequence_number.wrapping_sub(*s) as i16) < 0)
            .unwrap_or(self.packets.len());
        if self.packets.iter().any(|(s, _, _)| *s == sequence_number) {
            return Pushed::Pending; // duplicate
        }
        self.packets
            .insert(at, (sequence_number, payload.clone(), marker));
        if lost {
            self.waiting_keyframe = true;
            if !self.complete() {
                return Pushed::NeedKeyframe;
            }
        }
        if !self.complete() {
            return Pushed::Pending;
        }
        let ts = timestamp;
        self.timestamp = None;
        self.done = Some(ts);
        let built = self.build();
        self.packets.clear();
        match built {
            Some(keyframe) if keyframe || !self.waiting_keyframe => {
                if keyframe {
                    self.waiting_keyframe = false;
                }
                Pushed::Frame(Frame {
                    timestamp: ts,
                    keyframe,
                    data: &self.frame,
                })
            }
            Some(_) => Pushed::NeedKeyframe,
            None => {
                self.waiting_keyframe = true;
                Pushed::NeedKeyframe
            }
        }
    }

    fn give_up(&mut self) -> Pushed<'_> {
        self.done = self.timestamp.take();
        self.packets.clear();
        self.waiting_keyframe = true;
        Pushed::NeedKeyframe
    }

    /// Whether the collected packets form a whole frame: the first starts one, the last
    /// has the marker, and no sequence number is missing in between.
    fn complete(&self) -> bool {
        let (Some(first), Some(last)) = (self.packets.first(), self.packets.last()) else {
            return false;
        };
        if !last.2 || !starts_frame(self.codec, &first.1) {
            return false;
        }
        self.packets
            .windows(2)
            .all(|w| w[1].0 == w[0].0.wrapping_add(1))
    }

    /// Builds the frame into `self.frame`; returns whether it is a keyframe, or `None` if
    /// the payloads do not parse.
    fn build(&mut self) -> Option<bool> {
        self.frame.clear();
        match self.codec {
            VideoCodec::Vp8 => {
                for (_, p, _) in &self.packets {
                    let start = vp8_descriptor_len(p)?;
                    self.frame.extend_from_slice(&p[start..]);
                    if self.frame.len() > MAX_FRAME_BYTES {
                        return None;
                    }
                }
                Some(self.frame.first().is_some_and(|b| b & 0x01 == 0))
            }
            VideoCodec::Vp9 => {
                self.layer_sizes.clear();
                let mut keyframe = false;
                let mut layer_start = 0;
                for (_, p, _) in &self.packets {
                    let d = vp9_descriptor(p)?;
                    if d.begin {
                        if self.layer_sizes.is_empty() && self.frame.is_empty() {
                            keyframe = !d.inter_picture && d.spatial_id == 0;
                        }
                        layer_start = self.frame.len();
                    }
                    self.frame.extend_from_slice(&p[d.len..]);
                    if d.end {
                        self.layer_sizes.push(self.frame.len() - layer_start);
                    }
                    if self.frame.len() > MAX_FRAME_BYTES {
                        return None;
                    }
                }
                if self.layer_sizes.len() > 1 && self.layer_sizes.len() <= 8 {
                    // A superframe: the frames, then the index (sizes as 4-byte LE).
                    let n = self.layer_sizes.len() as u8;
                    let marker = 0b1100_0000 | (3 << 3) | (n - 1);
                    self.frame.push(marker);
                    for s in &self.layer_sizes {
                        self.frame.extend_from_slice(&(*s as u32).to_le_bytes());
                    }
                    self.frame.push(marker);
                }
                Some(keyframe)
            }
            VideoCodec::H264 => {
                let mut keyframe = false;
                let mut fu_open = false;
                for i in 0..self.packets.len() {
                    let p = self.packets[i].1.clone();
                    let Some(&b0) = p.first() else { continue };
                    match b0 & 0x1f {
                        1..=23 => {
                            keyframe |= self.nal(&p);
                        }
                        24 => {
                            let mut at = 1;
                            while at + 2 <= p.len() {
                                let size = usize::from(u16::from_be_bytes([p[at], p[at + 1]]));
                                at += 2;
                                let nal = p.get(at..at + size)?;
                                keyframe |= self.nal(nal);
                                at += size;
                            }
                        }
                        28 => {
                            let fu = *p.get(1)?;
                            let body = p.get(2..)?;
                            if fu & 0x80 != 0 {
                                let header = (b0 & 0xe0) | (fu & 0x1f);
                                keyframe |= fu & 0x1f == 5;
                                self.frame.extend_from_slice(&[0, 0, 0, 0, header]);
                                fu_open = true;
                            } else if !fu_open {
                                return None;
                            }
                            self.frame.extend_from_slice(body);
                            if fu & 0x40 != 0 {
                                self.close_fu();
                                fu_open = false;
                            }
                        }
                        _ => return None,
                    }
                    if self.frame.len() > MAX_FRAME_BYTES {
                        return None;
                    }
                }
                if fu_open {
                    return None;
                }
                Some(keyframe)
            }
        }
    }

    /// Appends one NAL unit, length-prefixed; remembers SPS/PPS. Returns whether it is IDR.
    fn nal(&mut self, nal: &[u8]) -> bool {
        let Some(&h) = nal.first() else { return false };
        match h & 0x1f {
            7 => self.sps = Some(nal.to_vec()),
            8 => self.pps = Some(nal.to_vec()),
            _ => {}
        }
        self.frame
            .extend_from_slice(&(nal.len() as u32).to_be_bytes());
        self.frame.extend_from_slice(nal);
        h & 0x1f == 5
    }

    /// Fills in the length of the FU-A NAL unit that ends the frame buffer.
    fn close_fu(&mut self) {
        // Find the last length prefix: scan from the start (frames hold few NAL units).
        let mut at = 0;
        let mut last = 0;
        while at + 4 <= self.frame.len() {
            last = at;
            let len = u32::from_be_bytes(self.frame[at..at + 4].try_into().unwrap_or([0; 4]));
            if len == 0 {
                break;
            }
            at += 4 + len as usize;
        }
        let len = (self.frame.len() - last - 4) as u32;
        self.frame[last..last + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// The AVC decoder configuration record from the SPS and PPS seen (H.264).
    pub fn avc_config(&self) -> Option<Vec<u8>> {
        let (sps, pps) = (self.sps.as_ref()?, self.pps.as_ref()?);
        if sps.len() < 4 || sps.len() > 0xffff || pps.len() > 0xffff {
            return None;
        }
        let mut c = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
        c.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        c.extend_from_slice(sps);
        c.push(1);
        c.extend_from_slice(&(pps.len() as u16).to_be_bytes());
        c.extend_from_slice(pps);
        Some(c)
    }
}

/// The picture size of a keyframe of `codec`, if its header says (VP8, VP9; H.264 sizes
/// are left to the decoder: the SPS is in the track's configuration record).
pub fn keyframe_size(codec: VideoCodec, frame: &[u8]) -> Option<(u32, u32)> {
    match codec {
        VideoCodec::Vp8 => vp8_size(frame),
        VideoCodec::Vp9 => vp9_size(frame),
        VideoCodec::H264 => None,
    }
}

/// Whether a payload starts a frame (VP8: S=1 and PID=0; VP9: B=1; H.264: not a FU-A
/// continuation).
fn starts_frame(codec: VideoCodec, p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    match codec {
        VideoCodec::Vp8 => b0 & 0x10 != 0 && b0 & 0x07 == 0,
        VideoCodec::Vp9 => b0 & 0x08 != 0,
        VideoCodec::H264 => b0 & 0x1f != 28 || p.get(1).is_some_and(|fu| fu & 0x80 != 0),
    }
}

/// Length of a VP8 payload descriptor (RFC 7741 §4.2).
fn vp8_descriptor_len(p: &[u8]) -> Option<usize> {
    let b0 = *p.first()?;
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let x = *p.get(i)?;
        i += 1;
        if x & 0x80 != 0 {
            i += if *p.get(i)? & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1;
        }
        if x & 0x30 != 0 {
            i += 1;
        }
    }
    (i <= p.len()).then_some(i)
}

/// A VP8 keyframe's size (RFC 6386 §9.1: start code, then 14-bit width and height).
fn vp8_size(f: &[u8]) -> Option<(u32, u32)> {
    if f.len() < 10 || f[0] & 0x01 != 0 || f[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u32::from(u16::from_le_bytes([f[6], f[7]]) & 0x3fff);
    let h = u32::from(u16::from_le_bytes([f[8], f[9]]) & 0x3fff);
    (w > 0 && h > 0).then_some((w, h))
}

struct Vp9Descriptor {
    len: usize,
    begin: bool,
    end: bool,
    inter_picture: bool,
    spatial_id: u8,
}

/// Parses a VP9 payload descriptor (RFC 9628 §4.2).
fn vp9_descriptor(p: &[u8]) -> Option<Vp9Descriptor> {
    let b0 = *p.first()?;
    let (i_bit, p_bit, l_bit, f_bit) = (
        b0 & 0x80 != 0,
        b0 & 0x40 != 0,
        b0 & 0x20 != 0,
        b0 & 0x10 != 0,
    );
    let (begin, end, v_bit) = (b0 & 0x08 != 0, b0 & 0x04 != 0, b0 & 0x02 != 0);
    let mut i = 1;
    if i_bit {
        i += if *p.get(i)? & 0x80 != 0 { 2 } else { 1 };
    }
    let mut spatial_id = 0;
    if l_bit {
        spatial_id = (*p.get(i)? >> 1) & 0x07;
        i += 1;
        if !f_bit {
            i += 1; // TL0PICIDX
        }
    }
    if f_bit && p_bit {
        for _ in 0..3 {
            let d = *p.get(i)?;
            i += 1;
            if d & 0x01 == 0 {
                break;
            }
        }
    }
    if v_bit {
        let ss = *p.get(i)?;
        i += 1;
        let n_s = usize::from(ss >> 5) + 1;
        if ss & 0x10 != 0 {
            i += 4 * n_s;
        }
        if ss & 0x08 != 0 {
            let n_g = *p.get(i)?;
            i += 1;
            for _ in 0..n_g {
                let g = *p.get(i)?;
                i += 1 + usize::from((g >> 2) & 0x03);
            }
        }
    }
    (i <= p.len()).then_some(Vp9Descriptor {
        len: i,
        begin,
        end,
        inter_picture: p_bit,
        spatial_id,
    })
}

/// A VP9 keyframe's size, from its uncompressed header (VP9 spec §6.2).
fn vp9_size(f: &[u8]) -> Option<(u32, u32)> {
    let mut r = Bits { data: f, pos: 0 };
    if r.read(2)? != 2 {
        return None;
    }
    let profile = r.read(1)? | (r.read(1)? << 1);
    if profile == 3 {
        r.read(1)?;
    }
    if r.read(1)? == 1 {
        return None; // show_existing_frame
    }
    if r.read(1)? != 0 {
        return None; // not a keyframe
    }
    r.read(2)?; // show_frame, error_resilient_mode
    if r.read(24)? != 0x49_8342 {
        return None;
    }
    if profile >= 2 {
        r.read(1)?;
    }
    let color_space = r.read(3)?;
    if color_space != 7 {
        r.read(1)?;
        if profile == 1 || profile == 3 {
            r.read(3)?;
        }
    } else if profile == 1 || profile == 3 {
        r.read(1)?;
    }
    let w = r.read(16)? + 1;
    let h = r.read(16)? + 1;
    Some((w, h))
}

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: usize) -> Option<u32> {
        let mut v = 0;
        for _ in 0..n {
            let byte = *self.data.get(self.pos / 8)?;
            v = (v << 1) | u32::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Some(v)
    }
}

/// The `OpusHead` a WebM Opus track carries (RFC 7845 §5.1): two channels (a mono stream
/// decodes fine as stereo), no pre-skip (nothing of the call is cut), 48 kHz.
pub fn opus_head() -> Vec<u8> {
    let mut h = b"OpusHead".to_vec();
    h.push(1); // version
    h.push(2); // channels
    h.extend_from_slice(&0u16.to_le_bytes()); // pre-skip
    h.extend_from_slice(&48_000u32.to_le_bytes());
    h.extend_from_slice(&0i16.to_le_bytes()); // output gain
    h.push(0); // channel mapping family
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn vp8(start: bool, key: bool, body: &[u8]) -> Bytes {
        let mut v = vec![if start { 0x10 } else { 0x00 }];
        if start {
            v.push(if key { 0x00 } else { 0x01 });
        }
        v.extend_from_slice(body);
        Bytes::from(v)
    }

    #[test]
    fn vp8_frames_across_packets_with_reordering() {
        let mut a = VideoAssembler::new(VideoCodec::Vp8);
        assert!(matches!(
            a.push(11, 100, true, &vp8(false, false, b"cd")),
            Pushed::Pending
        ));
        let Pushed::Frame(f) = a.push(10, 100, false, &vp8(true, true, b"ab")) else {
            panic!("frame complete")
        };
        assert!(f.keyframe);
        assert_eq!(f.data, [0x00, b'a', b'b', b'c', b'd']);
        // A delta frame follows.
        let Pushed::Frame(f) = a.push(12, 200, true, &vp8(true, false, b"x")) else {
            panic!()
        };
        assert!(!f.keyframe);
        // Late duplicate of an old frame: ignored.
        assert!(matches!(
            a.push(11, 100, true, &vp8(false, false, b"cd")),
            Pushed::Pending
        ));
    }

    #[test]
    fn a_lost_packet_drops_the_frame_and_waits_for_a_keyframe() {
        let mut a = VideoAssembler::new(VideoCodec::Vp8);
        // Delta first: waiting for a keyframe.
        assert!(matches!(
            a.push(1, 100, true, &vp8(true, false, b"x")),
            Pushed::NeedKeyframe
        ));
        assert!(matches!(
            a.push(2, 200, true, &vp8(true, true, b"k")),
            Pushed::Frame(_)
        ));
        // Frame 300 loses its second packet; frame 400 begins.
        assert!(matches!(
            a.push(3, 300, false, &vp8(true, false, b"a")),
            Pushed::Pending
        ));
        assert!(matches!(
            a.push(5, 400, true, &vp8(true, false, b"b")),
            Pushed::NeedKeyframe
        ));
        assert!(matches!(
            a.push(6, 500, true, &vp8(true, false, b"c")),
            Pushed::NeedKeyframe
        ));
        assert!(matches!(
            a.push(7, 600, true, &vp8(true, true, b"k")),
            Pushed::Frame(_)
        ));
    }

    #[test]
    fn vp8_keyframe_size() {
        let f = [0x50, 0x2a, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01];
        assert_eq!(vp8_size(&f), Some((640, 480)));
        assert_eq!(vp8_size(&f[..5]), None);
    }

    #[test]
    fn h264_fu_a_and_stap_a_become_avcc() {
        let mut a = VideoAssembler::new(VideoCodec::H264);
        // STAP-A with SPS and PPS.
        let stap = Bytes::from_static(&[
            0x78, 0x00, 0x04, 0x67, 0x42, 0x00, 0x1f, 0x00, 0x02, 0x68, 0xce,
        ]);
        // FU-A of an IDR slice in two parts.
        let fu1 = Bytes::from_static(&[0x7c, 0x85, 0xaa, 0xbb]);
        let fu2 = Bytes::from_static(&[0x7c, 0x45, 0xcc]);
        assert!(matches!(a.push(1, 9, false, &stap), Pushed::Pending));
        assert!(matches!(a.push(2, 9, false, &fu1), Pushed::Pending));
        let Pushed::Frame(f) = a.push(3, 9, true, &fu2) else {
            panic!()
        };
        assert!(f.keyframe);
        assert_eq!(
            f.data,
            [
                0, 0, 0, 4, 0x67, 0x42, 0x00, 0x1f, 0, 0, 0, 2, 0x68, 0xce, 0, 0, 0, 4, 0x65, 0xaa,
                0xbb, 0xcc
            ]
        );
        let c = a.avc_config().unwrap();
        assert_eq!(&c[..6], &[1, 0x42, 0x00, 0x1f, 0xff, 0xe1]);
    }

    #[test]
    fn vp9_spatial_layers_make_a_superframe() {
        let mut a = VideoAssembler::new(VideoCodec::Vp9);
        // L=1 (non-flexible: layer byte + TL0PICIDX), B and E per layer.
        let l0 = Bytes::from_static(&[0x2c, 0x00, 0x00, 0xa1, 0xa2]);
        let l1 = Bytes::from_static(&[0x6c, 0x02, 0x00, 0xb1]);
        assert!(matches!(a.push(1, 5, false, &l0), Pushed::Pending));
        let Pushed::Frame(f) = a.push(2, 5, true, &l1) else {
            panic!()
        };
        assert!(f.keyframe);
        assert_eq!(&f.data[..3], &[0xa1, 0xa2, 0xb1]);
        assert_eq!(f.data.len(), 3 + 2 + 8);
        assert_eq!(f.data[3], 0xd9);
    }

    #[test]
    fn vp9_keyframe_size_from_the_header() {
        // frame_marker 2, profile 0, show_existing 0, key 0, show 1, error_res 0, sync code,
        // color_space 0 + range 0, then 16-bit width-1 and height-1.
        let mut bits: Vec<u8> = Vec::new();
        let mut push = |v: u32, n: usize| {
            for i in (0..n).rev() {
                bits.push(((v >> i) & 1) as u8);
            }
        };
        push(2, 2);
        push(0, 2);
        push(0, 1);
        push(0, 1);
        push(1, 1);
        push(0, 1);
        push(0x49_8342, 24);
        push(0, 3);
        push(0, 1);
        push(319, 16);
        push(179, 16);
        let bytes: Vec<u8> = bits
            .chunks(8)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0u8, |b, (i, v)| b | (v << (7 - i)))
            })
            .collect();
        assert_eq!(vp9_size(&bytes), Some((320, 180)));
    }

    #[test]
    fn opus_head_is_19_bytes() {
        assert_eq!(opus_head().len(), 19);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(codec in 0u8..3, packets in proptest::collection::vec((proptest::num::u16::ANY, 0u32..4, proptest::bool::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..40)), 0..40)) {
            let codec = [VideoCodec::Vp8, VideoCodec::Vp9, VideoCodec::H264][codec as usize];
            let mut a = VideoAssembler::new(codec);
            for (seq, ts, marker, p) in packets {
                if let Pushed::Frame(f) = a.push(seq % 8, ts, marker, &Bytes::from(p)) {
                    let _ = keyframe_size(codec, f.data);
                }
            }
            let _ = a.avc_config();
        }
    }
}
