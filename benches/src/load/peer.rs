//! LeanPeer: one client peer connection of the load tester, on the sans-IO `rtc` crate.
//!
//! No task, no socket, no channel: the media thread ([`super::net`]) owns every peer, feeds
//! it datagrams and time, and sends what it writes. A peer either offers (a shopcall
//! participant, a Janus publisher: sendrecv audio + VP8 video) or answers (a Janus
//! subscriber: receive only). No interceptors but a keyframe-request tap: no NACK, no
//! reports, no congestion control, so the client's cost per packet is SRTP plus the stack's
//! read/write path.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use bytes::Bytes;
use rtc::interceptor::{Registry, Slot};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::certificate::RTCCertificate;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};

use super::media::{
    AUDIO_PPS, AUDIO_TS_STEP, DELTA_PACKETS, KEY_PACKETS, KEYFRAME_EVERY, Part, Stamp, Templates,
    VIDEO_FPS, VIDEO_TS_STEP,
};
use super::tap::KeyframeRequestTap;

/// Nanoseconds since the tester's clock base, read now: each packet is stamped just before
/// the stack encrypts and the socket sends it.
fn clock_ns() -> u64 {
    super::clock_base().elapsed().as_nanos() as u64
}

/// Payload types the client registers (and offers).
pub const OPUS_PT: u8 = 111;
/// VP8 payload type.
pub const VP8_PT: u8 = 96;

/// What a peer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerSpec {
    /// Offers (true) or answers a remote offer (false).
    pub offerer: bool,
    /// Publishes audio.
    pub audio: bool,
    /// Publishes video.
    pub video: bool,
    /// Whether the SFU is expected to forward its audio (for loss accounting).
    pub audio_forwarded: bool,
    /// Whether the SFU is expected to forward its video.
    pub video_forwarded: bool,
}

/// One sending track.
#[derive(Debug)]
pub(crate) struct Track {
    sender: RTCRtpSenderId,
    ssrc: u32,
    pt: u8,
    seq: u16,
    ts: u32,
    counter: u64,
    pub(crate) next: Instant,
}

/// A client peer connection and its media state.
pub struct LeanPeer {
    pub(crate) pc: RTCPeerConnection,
    pub(crate) local: SocketAddr,
    pub(crate) spec: PeerSpec,
    tag: u32,
    pub(crate) audio: Option<Track>,
    pub(crate) video: Option<Track>,
    frame: u64,
    pub(crate) key_pending: bool,
    pub(crate) connected: bool,
    pub(crate) failed: bool,
    pub(crate) next_timer: Option<Instant>,
    pub(crate) first_rx: Option<Instant>,
    pub(crate) rx_audio: u64,
    pub(crate) rx_video: u64,
}

/// What one send produced, for the global counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sent {
    /// Audio packets written.
    pub audio: u64,
    /// Video packets written.
    pub video: u64,
    /// Writes the stack refused.
    pub refused: u64,
}

fn opus() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// VP8 with the feedback a browser offers (NACK, PLI, FIR, REMB), so the SFU keeps what it
/// would keep for a browser (retransmission buffers) and may ask for keyframes. The client
/// itself never sends NACKs.
fn vp8() -> RTCRtpCodec {
    let fb = |typ: &str, parameter: &str| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    };
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: 90_000,
        rtcp_feedback: vec![
            fb("goog-remb", ""),
            fb("ccm", "fir"),
            fb("nack", ""),
            fb("nack", "pli"),
        ],
        ..Default::default()
    }
}

impl LeanPeer {
    /// Builds a peer whose host candidate is `local`. `tag` identifies its streams in the
    /// payload stamps; `ssrc_seed` makes its SSRCs distinct.
    pub fn new(
        spec: PeerSpec,
        local: SocketAddr,
        tag: u32,
        ssrc_seed: u32,
        certificate: &RTCCertificate,
        now: Instant,
    ) -> anyhow::Result<LeanPeer> {
        let mut media = MediaEngine::default();
        media
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: opus(),
                    payload_type: OPUS_PT,
                },
                RtpCodecKind::Audio,
            )
            .map_err(|e| anyhow!("registering opus: {e}"))?;
        media
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: vp8(),
                    payload_type: VP8_PT,
                },
                RtpCodecKind::Video,
            )
            .map_err(|e| anyhow!("registering vp8: {e}"))?;
        let registry = Registry::new().with(Slot::from(14_000), KeyframeRequestTap::default());
        let settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .build();
        let config = RTCConfigurationBuilder::new()
            .with_certificates(vec![certificate.clone()])
            .build();
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(config)
            .with_media_engine(media)
            .with_setting_engine(settings)
            .with_interceptor_registry(registry)
            .build(now)
            .map_err(|e| anyhow!("building the peer connection: {e}"))?;

        let mut add = |kind: RtpCodecKind, codec: RTCRtpCodec, ssrc: u32, pt: u8| {
            let track = MediaStreamTrack::new(
                format!("load-{tag}"),
                format!("{kind}-{tag}"),
                format!("{kind}"),
                kind,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec,
                    ..Default::default()
                }],
            );
            pc.add_track(track)
                .map(|sender| Track {
                    sender,
                    ssrc,
                    pt,
                    seq: ssrc as u16,
                    ts: ssrc,
                    counter: 0,
                    next: now,
                })
                .map_err(|e| anyhow!("adding a {kind} track: {e}"))
        };
        let audio = if spec.offerer && spec.audio {
            Some(add(RtpCodecKind::Audio, opus(), ssrc_seed, OPUS_PT)?)
        } else {
            None
        };
        let video = if spec.offerer && spec.video {
            Some(add(RtpCodecKind::Video, vp8(), ssrc_seed + 1, VP8_PT)?)
        } else {
            None
        };
        if spec.offerer && !spec.audio {
            // Still offer the m-line (to receive): a transceiver without a track.
            pc.add_transceiver_from_kind(RtpCodecKind::Audio, None)
                .map_err(|e| anyhow!("adding an audio transceiver: {e}"))?;
        }
        if spec.offerer && !spec.video {
            pc.add_transceiver_from_kind(RtpCodecKind::Video, None)
                .map_err(|e| anyhow!("adding a video transceiver: {e}"))?;
        }
        let mut peer = LeanPeer {
            pc,
            local,
            spec,
            tag,
            audio,
            video,
            frame: 0,
            key_pending: true,
            connected: false,
            failed: false,
            next_timer: None,
            first_rx: None,
            rx_audio: 0,
            rx_video: 0,
        };
        if spec.offerer {
            peer.add_candidate()?;
        }
        Ok(peer)
    }

    fn add_candidate(&mut self) -> anyhow::Result<()> {
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: self.local.ip().to_string(),
                port: self.local.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .map_err(|e| anyhow!("host candidate: {e}"))?;
        let init = RTCIceCandidate::from(&candidate)
            .to_json()
            .map_err(|e| anyhow!("candidate json: {e}"))?;
        self.pc
            .add_local_candidate(init)
            .map_err(|e| anyhow!("adding the host candidate: {e}"))
    }

    /// Creates the offer and sets it as the local description.
    pub fn create_offer(&mut self, now: Instant) -> anyhow::Result<String> {
        let offer = self
            .pc
            .create_offer(None)
            .map_err(|e| anyhow!("create_offer: {e}"))?;
        self.pc
            .set_local_description(now, offer)
            .map_err(|e| anyhow!("set_local_description(offer): {e}"))?;
        Ok(self
            .pc
            .local_description()
            .context("no local description")?
            .sdp)
    }

    /// Applies the remote answer.
    pub fn accept_answer(&mut self, sdp: &str, now: Instant) -> anyhow::Result<()> {
        let answer = RTCSessionDescription::answer(sdp.to_owned())
            .map_err(|e| anyhow!("answer does not parse: {e}"))?;
        self.pc
            .set_remote_description(now, answer)
            .map_err(|e| anyhow!("set_remote_description(answer): {e}"))
    }

    /// Applies a remote offer and returns the answer (set as the local description).
    pub fn answer_offer(&mut self, sdp: &str, now: Instant) -> anyhow::Result<String> {
        let offer = RTCSessionDescription::offer(sdp.to_owned())
            .map_err(|e| anyhow!("offer does not parse: {e}"))?;
        self.pc
            .set_remote_description(now, offer)
            .map_err(|e| anyhow!("set_remote_description(offer): {e}"))?;
        self.add_candidate()?;
        let answer = self
            .pc
            .create_answer(None)
            .map_err(|e| anyhow!("create_answer: {e}"))?;
        self.pc
            .set_local_description(now, answer)
            .map_err(|e| anyhow!("set_local_description(answer): {e}"))?;
        Ok(self
            .pc
            .local_description()
            .context("no local description")?
            .sdp)
    }

    /// Starts the media clocks at `start` (a random phase keeps peers from sending in step).
    pub(crate) fn start_media(&mut self, start: Instant, phase: Duration) {
        let within = |period: Duration| {
            Duration::from_nanos((phase.as_nanos() % period.as_nanos().max(1)) as u64)
        };
        if let Some(a) = &mut self.audio {
            a.next = start + within(Duration::from_secs(1) / AUDIO_PPS);
        }
        if let Some(v) = &mut self.video {
            v.next = start + within(Duration::from_secs(1) / VIDEO_FPS);
        }
    }

    /// The earliest media deadline.
    pub(crate) fn next_media(&self) -> Option<Instant> {
        let a = self.audio.as_ref().map(|t| t.next);
        let v = self.video.as_ref().map(|t| t.next);
        match (a, v) {
            (Some(a), Some(v)) => Some(a.min(v)),
            (a, v) => a.or(v),
        }
    }

    /// Sends every audio packet and video frame due at `now`. Falling more than 100 ms behind
    /// skips ahead (counted as `late`) instead of bursting.
    pub(crate) fn send_due(&mut self, now: Instant, templates: &Templates, late: &mut u64) -> Sent {
        let mut sent = Sent::default();
        let behind = Duration::from_millis(100);
        let audio_period = Duration::from_secs(1) / AUDIO_PPS;
        let video_period = Duration::from_secs(1) / VIDEO_FPS;
        let tag = self.tag;
        if let Some(mut t) = self.audio.take() {
            if now.saturating_duration_since(t.next) > behind {
                *late += 1;
                t.next = now;
            }
            while t.next <= now {
                t.next += audio_period;
                let payload = templates.stamp(
                    Part::Audio,
                    &Stamp {
                        tag,
                        counter: t.counter,
                        sent_ns: clock_ns(),
                    },
                );
                if self.write(&mut t, payload, true, now) {
                    sent.audio += 1;
                } else {
                    sent.refused += 1;
                }
                t.ts = t.ts.wrapping_add(AUDIO_TS_STEP);
            }
            self.audio = Some(t);
        }
        if let Some(mut t) = self.video.take() {
            if now.saturating_duration_since(t.next) > behind {
                *late += 1;
                t.next = now;
            }
            while t.next <= now {
                t.next += video_period;
                let key = self.key_pending || self.frame.is_multiple_of(KEYFRAME_EVERY);
                self.key_pending = false;
                self.frame += 1;
                let packets = if key { KEY_PACKETS } else { DELTA_PACKETS };
                for i in 0..packets {
                    let part = match (i, key) {
                        (0, true) => Part::KeyStart,
                        (0, false) => Part::DeltaStart,
                        _ => Part::Continuation,
                    };
                    let payload = templates.stamp(
                        part,
                        &Stamp {
                            tag: tag | 1,
                            counter: t.counter,
                            sent_ns: clock_ns(),
                        },
                    );
                    if self.write(&mut t, payload, i + 1 == packets, now) {
                        sent.video += 1;
                    } else {
                        sent.refused += 1;
                    }
                }
                t.ts = t.ts.wrapping_add(VIDEO_TS_STEP);
            }
            self.video = Some(t);
        }
        sent
    }

    fn write(&mut self, t: &mut Track, payload: Bytes, marker: bool, now: Instant) -> bool {
        let packet = rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                marker,
                payload_type: t.pt,
                sequence_number: t.seq,
                timestamp: t.ts,
                ssrc: t.ssrc,
                ..Default::default()
            },
            payload,
        };
        t.seq = t.seq.wrapping_add(1);
        t.counter += 1;
        self.pc
            .rtp_sender(t.sender)
            .is_some_and(|mut s| s.write_rtp(now, packet).is_ok())
    }
}
