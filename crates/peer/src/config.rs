//! Config: what a [`TestPeer`](crate::TestPeer) offers ([`PeerConfig`]) and what it sends once
//! media starts ([`MediaPlan`]).

use std::net::{IpAddr, Ipv4Addr};
use std::ops::RangeInclusive;
use std::time::Duration;

/// The video codec a peer prefers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    /// VP8 only.
    #[default]
    Vp8,
    /// H.264 (constrained baseline, packetization-mode 1) first, VP8 offered as a fallback.
    H264,
}

/// How a [`TestPeer`](crate::TestPeer) is built.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// Local address for the one UDP socket (port 0 = ephemeral). Keep it on loopback
    /// (`127.0.0.1`): a wildcard would bind every interface of the machine.
    pub bind_ip: IpAddr,
    /// Add a sendrecv audio m-line (Opus).
    pub audio: bool,
    /// Add a sendrecv camera video m-line.
    pub video: bool,
    /// Codec for the video m-lines.
    pub video_codec: VideoCodec,
    /// Add a second sendrecv video m-line for screen sharing.
    pub screen: bool,
    /// Name used in track/stream ids and logs; need not be unique.
    pub name: String,
    /// A misbehaving client, for privacy tests: when set, every outgoing video RTP packet is
    /// also sent a second time with this SSRC, which the SDP never declares (same payload
    /// type, sequence number, timestamp, header extensions and payload). A server must not
    /// forward what arrives on it. Counted in
    /// [`PeerStats::rogue_packets_sent`](crate::PeerStats::rogue_packets_sent). Off by default.
    pub rogue_video_ssrc: Option<u32>,
    /// Publish the camera as three rid-based simulcast layers, as Chrome does (`a=rid:q/h/f
    /// send` and `a=simulcast:send q;h;f` in the offer, one SSRC per layer, the mid and rid
    /// header extensions on every packet): see [`SIMULCAST_LAYERS`](crate::SIMULCAST_LAYERS)
    /// for their sizes and bitrates. Also negotiates those header extensions, which a peer
    /// needs to *receive* simulcast. Off by default.
    pub simulcast: bool,
    /// Behave like a browser's video decoder on loss: when a received frame cannot be
    /// decoded (a packet stayed missing past NACK's chance to repair it), send a PLI for that
    /// stream, at most once a second until a keyframe arrives. Off by default (a test then
    /// controls every PLI with [`TestPeer::send_pli`](crate::TestPeer::send_pli)).
    pub pli_on_loss: bool,
    /// Replace the UDP socket on an ICE restart ([`TestPeer::restart_ice`](crate::TestPeer::restart_ice)):
    /// the old socket is closed and a new one bound, re-enumerating the interfaces when
    /// `bind_ip` is a wildcard, so the restarted ICE runs from the addresses the machine has
    /// *now* (a client that moved from Wi-Fi to 4G). webrtc-rs's
    /// `SettingEngine::discard_local_candidates_during_ice_restart`. Off by default: a
    /// restart keeps the socket.
    pub rebind_on_ice_restart: bool,
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self {
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            audio: true,
            video: true,
            video_codec: VideoCodec::Vp8,
            screen: false,
            name: "peer".to_owned(),
            rogue_video_ssrc: None,
            simulcast: false,
            pli_on_loss: false,
            rebind_on_ice_restart: false,
        }
    }
}

impl PeerConfig {
    /// The default config (loopback, audio + VP8 video, no screen) with this name.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

/// What [`TestPeer::start_media`](crate::TestPeer::start_media) sends.
///
/// Audio: one packet per tick, `audio_payload_bytes` (80-160 by default), RTP timestamp
/// +48000/`audio_pps`.
/// Video, per video m-line: one frame per tick of `video_bitrate_bps / 8 / video_fps` bytes
/// (keyframes three times that), split into packets of at most `max_payload_bytes`, RTP
/// timestamp +90000/`video_fps`, marker on the last packet of each frame.
#[derive(Clone, Debug)]
pub struct MediaPlan {
    /// Audio packets per second (50 = 20 ms frames).
    pub audio_pps: u32,
    /// Video frames per second.
    pub video_fps: u32,
    /// Target video bitrate per video m-line, bits per second (payload only).
    pub video_bitrate_bps: u64,
    /// Periodic keyframe interval; requests (PLI/FIR) force one on the next frame as well.
    pub keyframe_interval: Duration,
    /// Largest RTP payload of a video packet.
    pub max_payload_bytes: usize,
    /// Sizes of audio payloads (they vary over this range like a VBR codec's). The default
    /// 80..=160 is Opus at about 48 kbit/s; 40..=60 is about 20 kbit/s, speech on a weak link.
    pub audio_payload_bytes: RangeInclusive<usize>,
}

impl Default for MediaPlan {
    fn default() -> Self {
        Self {
            audio_pps: 50,
            video_fps: 30,
            video_bitrate_bps: 1_500_000,
            keyframe_interval: Duration::from_secs(2),
            max_payload_bytes: 1200,
            audio_payload_bytes: 80..=160,
        }
    }
}

impl MediaPlan {
    /// Bytes of one delta frame.
    pub fn video_frame_bytes(&self) -> usize {
        let per_frame = self.video_bitrate_bps / 8 / u64::from(self.video_fps.max(1));
        usize::try_from(per_frame).unwrap_or(usize::MAX)
    }

    /// Bytes of one keyframe.
    pub fn keyframe_bytes(&self) -> usize {
        self.video_frame_bytes().saturating_mul(3)
    }

    /// Payload size of the audio packet with this counter, within `audio_payload_bytes`
    /// (at least the codec byte and the block).
    pub(crate) fn audio_payload_len(&self, counter: u64) -> usize {
        let (lo, hi) = (
            *self.audio_payload_bytes.start(),
            *self.audio_payload_bytes.end(),
        );
        if (lo, hi) == (80, 160) {
            return crate::payload::audio_payload_len(counter);
        }
        let hi = hi.max(lo);
        let span = (hi - lo) as u64 + 1;
        (lo + (counter.wrapping_mul(37) % span) as usize).max(1 + crate::payload::BLOCK_LEN)
    }

    pub(crate) fn audio_period(&self) -> Duration {
        Duration::from_secs(1) / self.audio_pps.max(1)
    }

    pub(crate) fn video_period(&self) -> Duration {
        Duration::from_secs(1) / self.video_fps.max(1)
    }

    pub(crate) fn audio_ts_step(&self) -> u32 {
        48_000 / self.audio_pps.max(1)
    }

    pub(crate) fn video_ts_step(&self) -> u32 {
        90_000 / self.video_fps.max(1)
    }
}
