//! Keyframe: whether an RTP payload starts a frame a decoder can start from.
//!
//! Forwarding starts (and restarts, after a pause or a source switch) only on such a packet,
//! so the receiver never gets a picture that references frames it never saw.

use crate::config::VideoCodec;

/// Whether `payload` is the first packet of a keyframe in `codec`.
pub fn is_keyframe_start(codec: VideoCodec, payload: &[u8]) -> bool {
    match codec {
        VideoCodec::Vp8 => vp8_keyframe_start(payload),
        VideoCodec::Vp9 => vp9_keyframe_start(payload),
        VideoCodec::H264 => h264_keyframe_start(payload),
    }
}

/// RFC 7741: payload descriptor, then the VP8 payload header whose P bit is 0 on keyframes.
fn vp8_keyframe_start(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    let extended = b0 & 0x80 != 0;
    let start = b0 & 0x10 != 0;
    let partition = b0 & 0x07;
    if !start || partition != 0 {
        return false;
    }
    let mut i = 1;
    if extended {
        let Some(&x) = p.get(i) else { return false };
        i += 1;
        if x & 0x80 != 0 {
            // PictureID: 7 or 15 bits.
            let Some(&pid) = p.get(i) else { return false };
            i += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID/Y/KEYIDX
        }
    }
    p.get(i).is_some_and(|h| h & 0x01 == 0)
}

/// RFC 9628: P bit clear (not inter-predicted) and B bit set (start of a frame).
fn vp9_keyframe_start(p: &[u8]) -> bool {
    p.first().is_some_and(|b| b & 0x40 == 0 && b & 0x08 != 0)
}

/// RFC 6184: an IDR slice or an SPS, alone, aggregated (STAP-A) or starting a fragment (FU-A).
fn h264_keyframe_start(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    let starts_keyframe = |nal_type: u8| nal_type == 5 || nal_type == 7;
    match b0 & 0x1f {
        24 => {
            // STAP-A: 16-bit size, then the NAL unit.
            let mut i = 1;
            while i + 2 < p.len() {
                let size = u16::from_be_bytes([p[i], p[i + 1]]) as usize;
                if size == 0 {
                    return false;
                }
                if starts_keyframe(p[i + 2] & 0x1f) {
                    return true;
                }
                i += 2 + size;
            }
            false
        }
        28 => p
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && starts_keyframe(fu & 0x1f)),
        t => starts_keyframe(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_descriptor_variants() {
        // S=1, PID=0, no extension; payload header with P=0.
        assert!(is_keyframe_start(
            VideoCodec::Vp8,
            &[0x10, 0x00, 0x9d, 0x01, 0x2a]
        ));
        // Interframe: P=1.
        assert!(!is_keyframe_start(VideoCodec::Vp8, &[0x10, 0x01]));
        // Not a frame start.
        assert!(!is_keyframe_start(VideoCodec::Vp8, &[0x00, 0x00]));
        // Extended with a 15-bit PictureID, TL0PICIDX and TID.
        assert!(is_keyframe_start(
            VideoCodec::Vp8,
            &[0x90, 0xe0, 0x80, 0x01, 0x05, 0x20, 0x00]
        ));
        assert!(!is_keyframe_start(
            VideoCodec::Vp8,
            &[0x90, 0xe0, 0x80, 0x01, 0x05, 0x20, 0x01]
        ));
        // Truncated: never a keyframe, never a panic.
        assert!(!is_keyframe_start(VideoCodec::Vp8, &[0x90, 0x80]));
        assert!(!is_keyframe_start(VideoCodec::Vp8, &[]));
    }

    #[test]
    fn h264_nal_types() {
        assert!(is_keyframe_start(VideoCodec::H264, &[0x65, 0x88]));
        assert!(is_keyframe_start(VideoCodec::H264, &[0x67, 0x42]));
        assert!(!is_keyframe_start(VideoCodec::H264, &[0x41, 0x9a]));
        // FU-A start of an IDR, and its continuation.
        assert!(is_keyframe_start(VideoCodec::H264, &[0x7c, 0x85]));
        assert!(!is_keyframe_start(VideoCodec::H264, &[0x7c, 0x05]));
        // STAP-A carrying SPS.
        assert!(is_keyframe_start(
            VideoCodec::H264,
            &[0x78, 0x00, 0x02, 0x67, 0x42]
        ));
        assert!(!is_keyframe_start(
            VideoCodec::H264,
            &[0x78, 0x00, 0x00, 0x67]
        ));
    }

    #[test]
    fn vp9_flags() {
        assert!(is_keyframe_start(VideoCodec::Vp9, &[0x08]));
        assert!(!is_keyframe_start(VideoCodec::Vp9, &[0x48]));
        assert!(!is_keyframe_start(VideoCodec::Vp9, &[0x00]));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(codec in 0u8..3, bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let codec = [VideoCodec::Vp8, VideoCodec::Vp9, VideoCodec::H264][codec as usize];
            let _ = is_keyframe_start(codec, &bytes);
        }
    }
}
