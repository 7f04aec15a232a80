//! TestPeer: one WebRTC client peer connection on loopback that publishes synthetic media and
//! verifies what it receives.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::Slot;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCOfferOptions;
use rtc::peer_connection::configuration::interceptor_registry::configure_simulcast_extension_headers;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8,
};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription,
    Registry, SettingEngineBuilder, register_default_interceptors,
};
use webrtc::rtp_transceiver::{RtpSender, RtpTransceiver};

use crate::config::{MediaPlan, PeerConfig, VideoCodec};
use crate::decoder::{Decoder, PacketInfo};
use crate::keyframe_tap::{self, KeyframeRequestTap};
use crate::media::{self, Kind, Negotiated, Output};
use crate::payload::{self, PayloadFormat};
use crate::rogue_ssrc::{self, RogueSsrcTap};
use crate::simulcast::{self, SIMULCAST_LAYERS, SimulcastLayer};
use crate::stats::{CounterSet, KindCounters, LayerStats, PeerStats};

/// Payload types we register; an answer to our offer uses them too.
const PT_OPUS: u8 = 111;
const PT_VP8: u8 = 96;
const PT_H264: u8 = 102;

/// How long `create_offer`/`accept_offer` wait for ICE gathering (host candidates only, so it
/// normally completes in milliseconds).
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

fn opus() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_OPUS.to_owned(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: PT_OPUS,
    }
}

fn vp8() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_VP8.to_owned(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: String::new(),
            rtcp_feedback: vec![],
        },
        payload_type: PT_VP8,
    }
}

fn h264() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_H264.to_owned(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
                .to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: PT_H264,
    }
}

fn video_codec_params(codec: VideoCodec) -> RTCRtpCodecParameters {
    match codec {
        VideoCodec::Vp8 => vp8(),
        VideoCodec::H264 => h264(),
    }
}

fn mime_of(codec: VideoCodec) -> &'static str {
    match codec {
        VideoCodec::Vp8 => MIME_TYPE_VP8,
        VideoCodec::H264 => MIME_TYPE_H264,
    }
}

fn format_of(codec: VideoCodec) -> PayloadFormat {
    match codec {
        VideoCodec::Vp8 => PayloadFormat::Vp8,
        VideoCodec::H264 => PayloadFormat::H264,
    }
}

fn format_from_mime(mime: &str) -> Option<PayloadFormat> {
    [
        (MIME_TYPE_OPUS, PayloadFormat::Opus),
        (MIME_TYPE_VP8, PayloadFormat::Vp8),
        (MIME_TYPE_H264, PayloadFormat::H264),
    ]
    .into_iter()
    .find(|(m, _)| m.eq_ignore_ascii_case(mime))
    .map(|(_, f)| f)
}

fn format_from_pt(pt: u8) -> Option<PayloadFormat> {
    match pt {
        PT_OPUS => Some(PayloadFormat::Opus),
        PT_VP8 => Some(PayloadFormat::Vp8),
        PT_H264 => Some(PayloadFormat::H264),
        _ => None,
    }
}

/// Whether any video m-line of `sdp` carries an `a=rtpmap` for `encoding` (e.g. "H264").
fn sdp_video_has_codec(sdp: &str, encoding: &str) -> bool {
    let mut in_video = false;
    for line in sdp.lines().map(str::trim) {
        if let Some(media) = line.strip_prefix("m=") {
            in_video = media.starts_with("video");
            continue;
        }
        let name = line
            .strip_prefix("a=rtpmap:")
            .filter(|_| in_video)
            .and_then(|rtpmap| rtpmap.split_once(' '))
            .and_then(|(_, enc)| enc.split('/').next());
        if name.is_some_and(|n| n.eq_ignore_ascii_case(encoding)) {
            return true;
        }
    }
    false
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; recover the data if something ever does.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A remote track we receive.
struct RemoteTrack {
    kind: Kind,
    ssrc: u32,
    track: Arc<dyn TrackRemote>,
}

/// State shared by the peer, its event handler and its tasks.
pub(crate) struct Shared {
    pub(crate) name: String,
    base: Instant,
    audio: KindCounters,
    video: KindCounters,
    state: watch::Sender<RTCPeerConnectionState>,
    gathered: watch::Sender<bool>,
    remote: Mutex<Vec<RemoteTrack>>,
    /// Video copies sent on the rogue SSRC ([`PeerConfig::rogue_video_ssrc`]).
    rogue_sent: Arc<AtomicU64>,
    /// One decoder emulation per received video SSRC.
    video_in: Mutex<Vec<Decoder>>,
    /// Counters of the intact audio packets received (one audio stream is expected).
    audio_seen: Mutex<CounterSet>,
    /// [`PeerConfig::pli_on_loss`].
    pli_on_loss: bool,
    /// Receive and feedback tasks, aborted on close/drop.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    pub(crate) fn counters(&self, kind: Kind) -> &KindCounters {
        match kind {
            Kind::Audio => &self.audio,
            Kind::Video => &self.video,
        }
    }

    fn abort_tasks(&self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

/// The peer connection's callbacks. They run on the connection's driver task, so each returns
/// at once (`on_track` spawns).
struct Handler {
    shared: Arc<Shared>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.shared.gathered.send_replace(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(peer = %self.shared.name, %state, "connection state");
        self.shared.state.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let task = tokio::spawn(receive_loop(Arc::clone(&self.shared), track));
        lock(&self.shared.tasks).push(task);
    }
}

/// Reads one remote track until it ends, verifying and counting every packet.
async fn receive_loop(shared: Arc<Shared>, track: Arc<dyn TrackRemote>) {
    let kind = match track.kind().await {
        RtpCodecKind::Audio => Kind::Audio,
        RtpCodecKind::Video => Kind::Video,
        other => {
            tracing::warn!(peer = %shared.name, ?other, "remote track of unknown kind ignored");
            return;
        }
    };
    let ssrc = track.ssrcs().await.first().copied().unwrap_or_default();
    // The codec the track opened with, by SSRC; a packet with another payload type (a codec
    // switch) falls back to our fixed payload type numbers.
    let track_format = match track.codec(ssrc).await {
        Some(codec) => format_from_mime(&codec.mime_type),
        None => None,
    };
    tracing::debug!(peer = %shared.name, ?kind, ssrc, ?track_format, "remote track");
    lock(&shared.remote).push(RemoteTrack {
        kind,
        ssrc,
        track: Arc::clone(&track),
    });
    let default_format = match kind {
        Kind::Audio => PayloadFormat::Opus,
        Kind::Video => PayloadFormat::Vp8,
    };
    let mut track_pt = None;
    let mut decoded_ssrcs = Vec::new();
    let counters = shared.counters(kind);
    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(packet) => {
                let now = Instant::now();
                let now_us = media::unix_micros();
                let pt = packet.header.payload_type;
                let first_pt = *track_pt.get_or_insert(pt);
                let format = if pt == first_pt {
                    track_format.or_else(|| format_from_pt(pt))
                } else {
                    format_from_pt(pt)
                }
                .unwrap_or(default_format);

                counters.packets_received.fetch_add(1, Ordering::Relaxed);
                counters
                    .bytes_received
                    .fetch_add(packet.payload.len() as u64, Ordering::Relaxed);
                counters.mark_first_received(shared.base, now);
                let inspection = payload::inspect(format, &packet.payload);
                if inspection.keyframe {
                    counters.keyframes_received.fetch_add(1, Ordering::Relaxed);
                }
                if kind == Kind::Video {
                    let info = PacketInfo {
                        seq: packet.header.sequence_number,
                        marker: packet.header.marker,
                        starts_frame: payload::starts_frame(format, &packet.payload),
                        keyframe: inspection.keyframe,
                        size: payload::vp8_keyframe_size(&packet.payload)
                            .filter(|_| format == PayloadFormat::Vp8),
                        len: packet.payload.len(),
                        sent_us: inspection.block.map(|b| b.sent_us),
                        arrived_us: now_us,
                    };
                    decode(
                        &shared,
                        &track,
                        &mut decoded_ssrcs,
                        now,
                        packet.header.ssrc,
                        info,
                    )
                    .await;
                }
                match inspection.block {
                    Some(block) => {
                        counters.intact.fetch_add(1, Ordering::Relaxed);
                        counters
                            .latency
                            .record(now_us.saturating_sub(block.sent_us));
                        if kind == Kind::Audio {
                            lock(&shared.audio_seen).insert(block.counter);
                        }
                    }
                    None => {
                        counters.corrupt.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
    tracing::debug!(peer = %shared.name, ?kind, ssrc, "remote track ended");
}

/// Feeds one received video packet to its SSRC's decoder emulation (created on the first
/// packet, with the rid the track knows for it) and sends the PLI the decoder wants, if
/// [`PeerConfig::pli_on_loss`].
async fn decode(
    shared: &Shared,
    track: &Arc<dyn TrackRemote>,
    known: &mut Vec<u32>,
    now: Instant,
    ssrc: u32,
    info: PacketInfo,
) {
    if !known.contains(&ssrc) {
        known.push(ssrc);
        let rid = track.rid(ssrc).await.map(|r| r.to_string());
        let mut decoders = lock(&shared.video_in);
        if !decoders.iter().any(|d| d.ssrc() == ssrc) {
            decoders.push(Decoder::new(ssrc, rid));
        }
    }
    let wants_keyframe = {
        let mut decoders = lock(&shared.video_in);
        let Some(d) = decoders.iter_mut().find(|d| d.ssrc() == ssrc) else {
            return;
        };
        d.on_packet(now, info);
        shared.pli_on_loss && d.wants_keyframe(now)
    };
    if wants_keyframe {
        let pli = PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc: ssrc,
        };
        match track.write_rtcp(vec![Box::new(pli)]).await {
            Ok(()) => {
                shared.video.plis_sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(err) => tracing::debug!(peer = %shared.name, %err, "PLI on loss failed"),
        }
    }
}

/// Media tasks started by [`TestPeer::start_media`].
struct MediaRun {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// A WebRTC client peer on loopback for tests and load generation.
///
/// One peer connection (async `webrtc` 0.21) with one UDP socket on `bind_ip:0`, mDNS off and no
/// STUN/TURN servers, so only host candidates are offered. It offers sendrecv m-lines (audio,
/// camera video, optionally screen video), publishes synthetic payloads (see
/// [`payload`](crate::payload)) on them once [`start_media`](Self::start_media) is called,
/// verifies every payload it receives, answers keyframe requests for its own streams, and counts
/// it all in lock-free counters ([`stats`](Self::stats)).
///
/// Must be created and used inside a tokio runtime. Call [`close`](Self::close) when done;
/// dropping the peer without closing it stops its tasks but leaves the library to tear the
/// connection down.
///
/// ```no_run
/// # async fn demo(sfu_answer: impl Fn(String) -> String) -> anyhow::Result<()> {
/// use shopcall_peer::{MediaPlan, PeerConfig, TestPeer};
/// use std::time::Duration;
///
/// let peer = TestPeer::new(PeerConfig::named("customer")).await?;
/// let offer = peer.create_offer().await?;
/// peer.set_answer(&sfu_answer(offer)).await?;
/// peer.wait_connected(Duration::from_secs(5)).await?;
/// peer.start_media(MediaPlan::default());
/// tokio::time::sleep(Duration::from_secs(3)).await;
/// let stats = peer.stats();
/// assert_eq!(stats.video.corrupt, 0);
/// peer.close().await;
/// # Ok(())
/// # }
/// ```
pub struct TestPeer {
    cfg: PeerConfig,
    pc: Arc<dyn PeerConnection>,
    shared: Arc<Shared>,
    outputs: Arc<[Arc<Output>]>,
    /// The video codec negotiation settled on (None before it, or without video).
    video_codec: Mutex<Option<VideoCodec>>,
    media: Mutex<Option<MediaRun>>,
}

impl TestPeer {
    /// Builds the peer connection and its sending tracks. Nothing goes on the wire until an
    /// offer/answer exchange completes.
    ///
    /// # Errors
    ///
    /// The library refused the configuration or could not bind the UDP socket.
    pub async fn new(cfg: PeerConfig) -> anyhow::Result<TestPeer> {
        let mut media_engine = MediaEngine::default();
        media_engine.register_codec(opus(), RtpCodecKind::Audio)?;
        if cfg.video_codec == VideoCodec::H264 {
            media_engine.register_codec(h264(), RtpCodecKind::Video)?;
        }
        media_engine.register_codec(vp8(), RtpCodecKind::Video)?;
        if cfg.simulcast {
            // mid / rid / repaired-rid: sending layers needs them, and so does receiving them.
            configure_simulcast_extension_headers(&mut media_engine)?;
        }
        // NACK generator/responder, RTCP reports, TWCC receiver feedback; no GCC, no pacer.
        let mut registry = register_default_interceptors(Registry::new(), &mut media_engine)?.with(
            Slot::from(keyframe_tap::SLOT),
            KeyframeRequestTap::default(),
        );
        let rogue_sent = Arc::new(AtomicU64::new(0));
        if let Some(ssrc) = cfg.rogue_video_ssrc {
            registry = registry.with(
                Slot::from(rogue_ssrc::SLOT),
                RogueSsrcTap::new(ssrc, Arc::clone(&rogue_sent)),
            );
        }
        let setting_engine = SettingEngineBuilder::new()
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .with_discard_local_candidates_during_ice_restart(cfg.rebind_on_ice_restart)
            .build();

        let (state, _) = watch::channel(RTCPeerConnectionState::New);
        let (gathered, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            name: cfg.name.clone(),
            base: Instant::now(),
            audio: KindCounters::default(),
            video: KindCounters::default(),
            state,
            gathered,
            remote: Mutex::new(Vec::new()),
            rogue_sent,
            video_in: Mutex::new(Vec::new()),
            audio_seen: Mutex::new(CounterSet::default()),
            pli_on_loss: cfg.pli_on_loss,
            tasks: Mutex::new(Vec::new()),
        });

        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media_engine)
            .with_setting_engine(setting_engine)
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(Handler {
                shared: Arc::clone(&shared),
            }))
            .with_udp_addrs(vec![SocketAddr::new(cfg.bind_ip, 0)])
            .build()
            .await
            .with_context(|| format!("{}: building the peer connection", cfg.name))?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);

        let peer_id: u16 = rand::random();
        let stream_id = format!("{}-{peer_id:04x}", cfg.name);
        let mut outputs = Vec::new();
        // The rogue SSRC must stay undeclared: no track of ours may use it.
        let mut used_ssrcs: Vec<u32> = cfg.rogue_video_ssrc.into_iter().collect();
        let wanted = [
            (cfg.audio, Kind::Audio, "audio"),
            (cfg.video, Kind::Video, "video"),
            (cfg.screen, Kind::Video, "screen"),
        ];
        for (index, (_, kind, label)) in wanted
            .into_iter()
            .enumerate()
            .filter(|(_, (enabled, _, _))| *enabled)
        {
            let mut fresh_ssrc = || loop {
                let ssrc: u32 = rand::random();
                if ssrc != 0 && !used_ssrcs.contains(&ssrc) {
                    used_ssrcs.push(ssrc);
                    break ssrc;
                }
            };
            // With simulcast, the camera is one track with an encoding (rid, SSRC) per layer.
            let layers: Vec<(SimulcastLayer, u32)> = if label == "video" && cfg.simulcast {
                SIMULCAST_LAYERS
                    .iter()
                    .map(|l| (*l, fresh_ssrc()))
                    .collect()
            } else {
                Vec::new()
            };
            let ssrc = layers.first().map_or_else(fresh_ssrc, |(_, s)| *s);
            let (rtc_kind, codec) = match kind {
                Kind::Audio => (RtpCodecKind::Audio, opus()),
                Kind::Video => (RtpCodecKind::Video, video_codec_params(cfg.video_codec)),
            };
            // Track ids must differ from the remote's: the driver looks RTCP up by track id,
            // receivers first (webrtc driver.rs, RTCMessage::RtcpPacket).
            let track = if layers.is_empty() {
                MediaStreamTrack::new(
                    stream_id.clone(),
                    format!("{stream_id}-{label}"),
                    label.to_owned(),
                    rtc_kind,
                    vec![encoding(ssrc, codec.rtp_codec)],
                )
            } else {
                simulcast::camera_track(
                    &stream_id,
                    &format!("{stream_id}-{label}"),
                    codec.rtp_codec,
                    &layers,
                )
            };
            let track = Arc::new(TrackLocalStaticRTP::new(track));
            let sender = pc
                .add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
                .await
                .with_context(|| format!("{}: adding the {label} track", cfg.name))?;
            let transceiver = transceiver_of(pc.as_ref(), sender.as_ref()).await?;
            if kind == Kind::Video && cfg.video_codec == VideoCodec::H264 {
                // The track's codec alone would make H.264 the only one offered.
                transceiver
                    .set_codec_preferences(vec![h264(), vp8()])
                    .await?;
            }
            let tag = (u32::from(peer_id) << 16) | index as u32;
            for (i, (layer, layer_ssrc)) in layers.iter().enumerate() {
                // One output per layer, all on the same track and sender.
                let layer_tag = tag | ((i as u32 + 1) << 8);
                outputs.push(Arc::new(
                    Output::new(
                        kind,
                        label,
                        *layer_ssrc,
                        layer_tag,
                        Arc::clone(&track),
                        Arc::clone(&sender),
                        Arc::clone(&transceiver),
                    )
                    .with_layer(*layer),
                ));
            }
            if !layers.is_empty() {
                continue;
            }
            outputs.push(Arc::new(Output::new(
                kind,
                label,
                ssrc,
                tag,
                track,
                sender,
                transceiver,
            )));
        }
        let outputs: Arc<[Arc<Output>]> = outputs.into();

        for (i, out) in outputs.iter().enumerate() {
            // One feedback loop per track: simulcast layers share theirs.
            if outputs[..i]
                .iter()
                .any(|o| Arc::ptr_eq(&o.track, &out.track))
            {
                continue;
            }
            let task = tokio::spawn(media::feedback_loop(
                Arc::clone(out),
                Arc::clone(&outputs),
                Arc::clone(&shared),
            ));
            lock(&shared.tasks).push(task);
        }

        Ok(TestPeer {
            cfg,
            pc,
            shared,
            outputs,
            video_codec: Mutex::new(None),
            media: Mutex::new(None),
        })
    }

    /// The config this peer was built with.
    pub fn config(&self) -> &PeerConfig {
        &self.cfg
    }

    /// The video codec negotiation settled on; `None` before negotiation or without video.
    pub fn negotiated_video_codec(&self) -> Option<VideoCodec> {
        *lock(&self.video_codec)
    }

    /// A complete offer: sendrecv audio (Opus) and video (VP8, or H.264 with VP8 also offered),
    /// plus a second video m-line with `screen`, BUNDLE + rtcp-mux, and every host candidate
    /// (gathering has completed; no trickle).
    ///
    /// # Errors
    ///
    /// The library failed to create or apply the offer, or gathering did not complete in 5 s.
    pub async fn create_offer(&self) -> anyhow::Result<String> {
        let offer = self.pc.create_offer(None).await?;
        self.pc.set_local_description(offer).await?;
        self.local_sdp_after_gathering().await
    }

    /// An ICE-restart offer (new `ice-ufrag` / `ice-pwd`, the same m-lines), after gathering
    /// completed again, for a client whose network changed. Hand it to the server (shopcall's
    /// RestartIce) and its answer to [`set_answer`](Self::set_answer); media goes on over the
    /// same DTLS and SRTP sessions once the new ICE checks succeed. With
    /// [`PeerConfig::rebind_on_ice_restart`] the UDP socket is replaced first, so the new
    /// candidates are the machine's addresses now.
    ///
    /// # Errors
    ///
    /// The library failed to create or apply the offer, or gathering did not complete in 5 s.
    pub async fn restart_ice(&self) -> anyhow::Result<String> {
        let offer = self
            .pc
            .create_offer(Some(RTCOfferOptions { ice_restart: true }))
            .await
            .with_context(|| format!("{}: creating the ICE-restart offer", self.cfg.name))?;
        // The new generation gathers again: wait for its completion, not the first one's.
        self.shared.gathered.send_replace(false);
        self.pc.set_local_description(offer).await?;
        self.local_sdp_after_gathering().await
    }

    /// The name this peer was configured with ([`PeerConfig::name`]).
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// The state of the connection now.
    pub fn connection_state(&self) -> String {
        self.shared.state.borrow().to_string()
    }

    /// Applies the remote answer to [`create_offer`](Self::create_offer). Media can start once
    /// [`wait_connected`](Self::wait_connected) returns.
    ///
    /// # Errors
    ///
    /// The answer does not parse or does not fit the offer.
    pub async fn set_answer(&self, sdp: &str) -> anyhow::Result<()> {
        self.prepare_video_codec(sdp).await?;
        let answer = RTCSessionDescription::answer(sdp.to_owned())
            .with_context(|| format!("{}: parsing the answer", self.cfg.name))?;
        self.pc
            .set_remote_description(answer)
            .await
            .with_context(|| format!("{}: applying the answer", self.cfg.name))?;
        self.resolve_payload_types().await
    }

    /// Answers a remote offer (for tests that connect two peers directly) and returns the
    /// complete answer SDP. Our m-lines pair with the offer's of the same kind, in order.
    ///
    /// # Errors
    ///
    /// The offer does not parse or fit, or gathering did not complete in 5 s.
    pub async fn accept_offer(&self, sdp: &str) -> anyhow::Result<String> {
        self.prepare_video_codec(sdp).await?;
        let offer = RTCSessionDescription::offer(sdp.to_owned())
            .with_context(|| format!("{}: parsing the offer", self.cfg.name))?;
        self.pc
            .set_remote_description(offer)
            .await
            .with_context(|| format!("{}: applying the offer", self.cfg.name))?;
        let answer = self.pc.create_answer(None).await?;
        self.pc.set_local_description(answer).await?;
        let sdp = self.local_sdp_after_gathering().await?;
        self.resolve_payload_types().await?;
        Ok(sdp)
    }

    /// Waits until the connection is `connected` (ICE and DTLS done, SRTP keys in place).
    ///
    /// # Errors
    ///
    /// The connection failed or closed first, or `timeout` passed.
    pub async fn wait_connected(&self, timeout: Duration) -> anyhow::Result<()> {
        let mut rx = self.shared.state.subscribe();
        let waited = tokio::time::timeout(
            timeout,
            rx.wait_for(|s| {
                matches!(
                    s,
                    RTCPeerConnectionState::Connected
                        | RTCPeerConnectionState::Failed
                        | RTCPeerConnectionState::Closed
                )
            }),
        )
        .await;
        let state = *self.shared.state.borrow();
        match waited {
            Ok(Ok(_)) if state == RTCPeerConnectionState::Connected => Ok(()),
            Ok(_) => bail!("{}: connection ended up {state}", self.cfg.name),
            Err(_) => bail!(
                "{}: not connected after {timeout:?} (state {state})",
                self.cfg.name
            ),
        }
    }

    /// Starts publishing synthetic media in background tasks (one for audio, one for all video
    /// m-lines) until [`stop_media`](Self::stop_media) or [`close`](Self::close). Calling it
    /// again replaces the running plan; RTP numbering continues.
    ///
    /// Start after [`wait_connected`](Self::wait_connected): the library accepts and silently
    /// drops packets written before DTLS is up, and they would still be counted as sent.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn start_media(&self, plan: MediaPlan) {
        let mut media = lock(&self.media);
        if let Some(old) = media.take() {
            for task in old.tasks {
                task.abort();
            }
        }
        let (stop, stop_rx) = watch::channel(false);
        let of_kind = |kind| -> Vec<Arc<Output>> {
            self.outputs
                .iter()
                .filter(|o| o.kind == kind)
                .cloned()
                .collect()
        };
        let mut tasks = Vec::new();
        let audio = of_kind(Kind::Audio);
        if !audio.is_empty() {
            tasks.push(tokio::spawn(media::audio_loop(
                audio,
                Arc::clone(&self.shared),
                plan.clone(),
                stop_rx.clone(),
            )));
        }
        let video = of_kind(Kind::Video);
        if !video.is_empty() {
            tasks.push(tokio::spawn(media::video_loop(
                video,
                Arc::clone(&self.shared),
                plan,
                stop_rx,
            )));
        }
        *media = Some(MediaRun { stop, tasks });
    }

    /// Stops publishing and waits for the media tasks to finish. No-op if not started.
    pub async fn stop_media(&self) {
        let run = lock(&self.media).take();
        if let Some(run) = run {
            run.stop.send_replace(true);
            for task in run.tasks {
                let _ = task.await;
            }
        }
    }

    /// A cheap snapshot of the counters.
    pub fn stats(&self) -> PeerStats {
        PeerStats {
            audio: self.shared.audio.snapshot(self.shared.base),
            video: self.shared.video.snapshot(self.shared.base),
            remote_tracks: lock(&self.shared.remote).len(),
            connection_state: *self.shared.state.borrow(),
            rogue_packets_sent: self.shared.rogue_sent.load(Ordering::Relaxed),
            received_video: {
                let now = Instant::now();
                // Packets that waited too long are given up on now, not at the next arrival.
                lock(&self.shared.video_in)
                    .iter_mut()
                    .map(|d| {
                        d.on_tick(now);
                        d.snapshot(now)
                    })
                    .collect()
            },
            simulcast_layers: self
                .outputs
                .iter()
                .filter_map(|o| {
                    let layer = o.layer?;
                    let c = &o.counters;
                    Some(LayerStats {
                        rid: layer.rid.to_owned(),
                        ssrc: o.ssrc,
                        packets_sent: c.packets.load(Ordering::Relaxed),
                        bytes_sent: c.bytes.load(Ordering::Relaxed),
                        frames_sent: c.frames.load(Ordering::Relaxed),
                        keyframes_sent: c.keyframes.load(Ordering::Relaxed),
                        keyframe_requests: c.keyframe_requests.load(Ordering::Relaxed),
                    })
                })
                .collect(),
        }
    }

    /// Sends an RTCP PLI for every remote video track received so far and returns how many.
    /// Through the SFU, each should arrive at the other participant as a keyframe request
    /// (its `plis_received`).
    ///
    /// # Errors
    ///
    /// The peer connection is gone.
    pub async fn send_pli(&self) -> anyhow::Result<usize> {
        let sender_ssrc = self
            .outputs
            .iter()
            .find(|o| o.kind == Kind::Video)
            .map_or(0, |o| o.ssrc);
        let targets: Vec<(u32, Arc<dyn TrackRemote>)> = lock(&self.shared.remote)
            .iter()
            .filter(|r| r.kind == Kind::Video)
            .map(|r| (r.ssrc, Arc::clone(&r.track)))
            .collect();
        for (media_ssrc, track) in &targets {
            let pli = PictureLossIndication {
                sender_ssrc,
                media_ssrc: *media_ssrc,
            };
            track
                .write_rtcp(vec![Box::new(pli)])
                .await
                .map_err(|e| anyhow!("{}: sending PLI: {e}", self.cfg.name))?;
            self.shared.video.plis_sent.fetch_add(1, Ordering::Relaxed);
        }
        Ok(targets.len())
    }

    /// How many of the remote's audio packets numbered `counters` arrived intact, each counted
    /// once (retransmitted or duplicated copies aside). The remote numbers its audio packets
    /// from 0 as it sends them, so with its `audio.packets_sent` read at two moments,
    /// `audio_received_between(then..now) / (now - then)` is the exact delivery ratio of the
    /// audio sent in between, whatever was still in flight when counted.
    pub fn audio_received_between(&self, counters: Range<u64>) -> u64 {
        lock(&self.shared.audio_seen).count(counters)
    }

    /// Sends an RTCP PLI for the received video stream `media_ssrc` (e.g. one simulcast layer
    /// of [`PeerStats::received_video`]) and returns whether a remote track carries it.
    ///
    /// # Errors
    ///
    /// The peer connection is gone.
    pub async fn send_pli_for(&self, media_ssrc: u32) -> anyhow::Result<bool> {
        let track = {
            let decoders = lock(&self.shared.video_in);
            let known = decoders.iter().any(|d| d.ssrc() == media_ssrc);
            drop(decoders);
            let remote = lock(&self.shared.remote);
            let by_first_ssrc = remote
                .iter()
                .find(|r| r.kind == Kind::Video && r.ssrc == media_ssrc);
            // A simulcast track carries several SSRCs; any video track reaches the sender.
            by_first_ssrc
                .or_else(|| {
                    remote
                        .iter()
                        .find(|r| r.kind == Kind::Video)
                        .filter(|_| known)
                })
                .map(|r| Arc::clone(&r.track))
        };
        let Some(track) = track else {
            return Ok(false);
        };
        let pli = PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc,
        };
        track
            .write_rtcp(vec![Box::new(pli)])
            .await
            .map_err(|e| anyhow!("{}: sending PLI: {e}", self.cfg.name))?;
        self.shared.video.plis_sent.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Stops media, closes the peer connection and ends every task. Idempotent.
    pub async fn close(&self) {
        self.stop_media().await;
        if let Err(err) = self.pc.close().await {
            tracing::warn!(peer = %self.cfg.name, %err, "close failed");
        }
        self.shared.abort_tasks();
        self.shared
            .state
            .send_replace(RTCPeerConnectionState::Closed);
    }

    /// Before applying a remote description: settle the video codec from what the remote
    /// supports, and make the video tracks name it, so the interceptors bind the stream
    /// (they match the track's codec against the negotiated ones when the description is
    /// applied).
    async fn prepare_video_codec(&self, remote_sdp: &str) -> anyhow::Result<()> {
        let chosen = match self.cfg.video_codec {
            VideoCodec::H264 if !sdp_video_has_codec(remote_sdp, "H264") => VideoCodec::Vp8,
            codec => codec,
        };
        *lock(&self.video_codec) = Some(chosen).filter(|_| self.cfg.video || self.cfg.screen);
        if chosen == self.cfg.video_codec {
            return Ok(());
        }
        let mut replaced: Vec<&Arc<TrackLocalStaticRTP>> = Vec::new();
        for out in self.outputs.iter().filter(|o| o.kind == Kind::Video) {
            // Simulcast layers share one track: replace it once, with every layer.
            if replaced.iter().any(|t| Arc::ptr_eq(t, &out.track)) {
                continue;
            }
            replaced.push(&out.track);
            let current = out.track.track().await;
            let codec = video_codec_params(chosen).rtp_codec;
            let layers: Vec<(SimulcastLayer, u32)> = self
                .outputs
                .iter()
                .filter(|o| Arc::ptr_eq(&o.track, &out.track))
                .filter_map(|o| o.layer.map(|l| (l, o.ssrc)))
                .collect();
            let replacement = if layers.is_empty() {
                MediaStreamTrack::new(
                    current.stream_id().clone(),
                    current.track_id().clone(),
                    current.label().clone(),
                    current.kind(),
                    vec![encoding(out.ssrc, codec)],
                )
            } else {
                simulcast::camera_track(current.stream_id(), current.track_id(), codec, &layers)
            };
            out.sender
                .replace_track(Arc::new(TrackLocalStaticRTP::new(replacement)))
                .await?;
        }
        Ok(())
    }

    /// After applying a remote description: the payload type each output must stamp, or none
    /// if the remote does not receive on that m-line.
    async fn resolve_payload_types(&self) -> anyhow::Result<()> {
        let video = self
            .negotiated_video_codec()
            .unwrap_or(self.cfg.video_codec);
        for out in self.outputs.iter() {
            let (mime, format) = match out.kind {
                Kind::Audio => (MIME_TYPE_OPUS, PayloadFormat::Opus),
                Kind::Video => (mime_of(video), format_of(video)),
            };
            let sends = out.transceiver.current_direction().await?.has_send();
            let params = out.sender.get_parameters().await?;
            let negotiated = params
                .rtp_parameters
                .codecs
                .iter()
                .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
                .map(|c| Negotiated {
                    payload_type: c.payload_type,
                    format,
                })
                .filter(|_| sends);
            if negotiated.is_none() {
                tracing::warn!(
                    peer = %self.cfg.name,
                    out = out.label,
                    sends,
                    "nothing to send on this m-line (rejected, not sending, or no common codec)"
                );
            }
            out.set_negotiated(negotiated);
            if let Some(layer) = out.layer {
                // A layer is told apart by its rid header extension (and mid), not by SSRC.
                let extensions: Vec<(String, u16)> = params
                    .rtp_parameters
                    .header_extensions
                    .iter()
                    .map(|e| (e.uri.clone(), e.id))
                    .collect();
                let mid = out.transceiver.mid().await?;
                out.set_header_extensions(simulcast::header_extensions(
                    &extensions,
                    mid.as_deref(),
                    layer.rid,
                ));
            }
        }
        Ok(())
    }

    async fn local_sdp_after_gathering(&self) -> anyhow::Result<String> {
        let mut gathered = self.shared.gathered.subscribe();
        tokio::time::timeout(GATHER_TIMEOUT, gathered.wait_for(|done| *done))
            .await
            .map_err(|_| anyhow!("{}: ICE gathering did not complete", self.cfg.name))??;
        let local = self
            .pc
            .local_description()
            .await
            .ok_or_else(|| anyhow!("{}: no local description", self.cfg.name))?;
        Ok(local.sdp)
    }
}

impl Drop for TestPeer {
    fn drop(&mut self) {
        if let Some(run) = lock(&self.media).take() {
            for task in run.tasks {
                task.abort();
            }
        }
        self.shared.abort_tasks();
    }
}

fn encoding(ssrc: u32, codec: RTCRtpCodec) -> RTCRtpEncodingParameters {
    RTCRtpEncodingParameters {
        rtp_coding_parameters: RTCRtpCodingParameters {
            ssrc: Some(ssrc),
            ..Default::default()
        },
        active: true,
        codec,
        ..Default::default()
    }
}

/// The transceiver that owns `sender`.
async fn transceiver_of(
    pc: &dyn PeerConnection,
    sender: &dyn RtpSender,
) -> anyhow::Result<Arc<dyn RtpTransceiver>> {
    for transceiver in pc.get_transceivers().await {
        let owns = transceiver
            .sender()
            .await?
            .is_some_and(|s| s.id() == sender.id());
        if owns {
            return Ok(transceiver);
        }
    }
    Err(anyhow!("no transceiver owns the sender just added"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_h264_only_in_video_sections() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96 102\r\na=rtpmap:96 VP8/90000\r\n\
                   a=rtpmap:102 H264/90000\r\n";
        assert!(sdp_video_has_codec(sdp, "H264"));
        assert!(sdp_video_has_codec(sdp, "vp8"));
        assert!(!sdp_video_has_codec(sdp, "opus"));
        assert!(!sdp_video_has_codec(
            "m=video 9 X 96\r\na=rtpmap:96 VP8/90000",
            "H264"
        ));
    }

    #[test]
    fn mime_and_pt_map_to_formats() {
        assert_eq!(format_from_mime("video/vp8"), Some(PayloadFormat::Vp8));
        assert_eq!(format_from_mime("audio/opus"), Some(PayloadFormat::Opus));
        assert_eq!(format_from_mime("video/AV1"), None);
        assert_eq!(format_from_pt(PT_H264), Some(PayloadFormat::H264));
    }
}
