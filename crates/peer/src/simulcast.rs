//! Simulcast: the three camera layers a [`TestPeer`](crate::TestPeer) publishes with
//! [`PeerConfig::simulcast`](crate::PeerConfig::simulcast), like Chrome's default for a 720p
//! camera.
//!
//! One `MediaStreamTrack` carries three encodings (rid + SSRC each), so the offer has
//! `a=rid:<rid> send` per layer and `a=simulcast:send q;h;f` and no `a=ssrc` lines; every
//! packet carries the mid and rid header extensions, which is how the receiver maps each
//! SSRC to its layer. Each layer is its own RTP stream (sequence numbers, timestamps,
//! keyframes), and a PLI naming a layer's SSRC forces a keyframe on that layer only. VP8
//! keyframes declare the layer's size, so a receiver can tell which layer reaches it.

use bytes::Bytes;
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};

use crate::config::MediaPlan;

/// One simulcast layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SimulcastLayer {
    /// Its RTP stream id.
    pub rid: &'static str,
    /// Width declared by its VP8 keyframes.
    pub width: u16,
    /// Height declared by its VP8 keyframes.
    pub height: u16,
    /// Payload bitrate, bits per second.
    pub bitrate_bps: u64,
}

impl SimulcastLayer {
    /// Bytes of one delta frame at `plan.video_fps`.
    pub fn frame_bytes(&self, plan: &MediaPlan) -> usize {
        let per_frame = self.bitrate_bps / 8 / u64::from(plan.video_fps.max(1));
        usize::try_from(per_frame).unwrap_or(usize::MAX)
    }

    /// Bytes of one keyframe (three delta frames, as [`MediaPlan::keyframe_bytes`]).
    pub fn keyframe_bytes(&self, plan: &MediaPlan) -> usize {
        self.frame_bytes(plan).saturating_mul(3)
    }

    /// The layer whose keyframes declare `size`.
    pub fn by_size(size: (u16, u16)) -> Option<&'static SimulcastLayer> {
        SIMULCAST_LAYERS
            .iter()
            .find(|l| (l.width, l.height) == size)
    }

    /// The layer with this rid.
    pub fn by_rid(rid: &str) -> Option<&'static SimulcastLayer> {
        SIMULCAST_LAYERS.iter().find(|l| l.rid == rid)
    }
}

/// The layers, lowest first: `q` 320x180 at 150 kbit/s, `h` 640x360 at 500 kbit/s, `f`
/// 1280x720 at 1.5 Mbit/s (payload bitrates; [`MediaPlan::video_bitrate_bps`] does not apply
/// to them).
pub const SIMULCAST_LAYERS: [SimulcastLayer; 3] = [
    SimulcastLayer {
        rid: "q",
        width: 320,
        height: 180,
        bitrate_bps: 150_000,
    },
    SimulcastLayer {
        rid: "h",
        width: 640,
        height: 360,
        bitrate_bps: 500_000,
    },
    SimulcastLayer {
        rid: "f",
        width: 1280,
        height: 720,
        bitrate_bps: 1_500_000,
    },
];

/// URI of the mid header extension.
pub(crate) const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
/// URI of the rid header extension.
pub(crate) const RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";

/// The camera track with one encoding per layer, `(layer, ssrc)` in `layers`.
pub(crate) fn camera_track(
    stream_id: &str,
    track_id: &str,
    codec: RTCRtpCodec,
    layers: &[(SimulcastLayer, u32)],
) -> MediaStreamTrack {
    let encodings = layers
        .iter()
        .map(|(layer, ssrc)| RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                rid: layer.rid.to_owned(),
                ssrc: Some(*ssrc),
                ..Default::default()
            },
            active: true,
            codec: codec.clone(),
            ..Default::default()
        })
        .collect();
    MediaStreamTrack::new(
        stream_id.to_owned(),
        track_id.to_owned(),
        "video".to_owned(),
        RtpCodecKind::Video,
        encodings,
    )
}

/// The header extensions a layer stamps on every packet: `(id, value)` for mid and rid, from
/// the negotiated extension ids (missing ones are left out).
pub(crate) fn header_extensions(
    negotiated: &[(String, u16)],
    mid: Option<&str>,
    rid: &str,
) -> Vec<(u8, Bytes)> {
    let id_of = |uri: &str| {
        negotiated
            .iter()
            .find(|(u, _)| u == uri)
            .and_then(|(_, id)| u8::try_from(*id).ok())
    };
    let mut out = Vec::new();
    if let (Some(id), Some(mid)) = (id_of(MID_URI), mid) {
        out.push((id, Bytes::copy_from_slice(mid.as_bytes())));
    }
    if let Some(id) = id_of(RID_URI) {
        out.push((id, Bytes::copy_from_slice(rid.as_bytes())));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_ordered_and_findable() {
        assert!(
            SIMULCAST_LAYERS
                .windows(2)
                .all(|w| w[0].bitrate_bps < w[1].bitrate_bps && w[0].width < w[1].width)
        );
        assert_eq!(
            SimulcastLayer::by_size((1280, 720)).map(|l| l.rid),
            Some("f")
        );
        assert_eq!(SimulcastLayer::by_rid("q").map(|l| l.width), Some(320));
        assert_eq!(SimulcastLayer::by_rid("x"), None);
        let plan = MediaPlan::default();
        assert_eq!(SIMULCAST_LAYERS[2].frame_bytes(&plan), 6250);
        assert_eq!(SIMULCAST_LAYERS[0].keyframe_bytes(&plan), 1875);
    }

    #[test]
    fn extensions_follow_the_negotiated_ids() {
        let negotiated = vec![(MID_URI.to_owned(), 4), (RID_URI.to_owned(), 10)];
        let ext = header_extensions(&negotiated, Some("1"), "h");
        assert_eq!(
            ext,
            vec![
                (4, Bytes::from_static(b"1")),
                (10, Bytes::from_static(b"h"))
            ]
        );
        assert!(header_extensions(&[], Some("1"), "h").is_empty());
    }
}
