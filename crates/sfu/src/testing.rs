//! Testing: a simulated network with sans-IO WebRTC clients, for deterministic tests and
//! benches of the whole engine without sockets or sleeps.
//!
//! [`SimNet`] owns an [`Engine`] and any number of [`SimClient`]s (each a full-ICE `rtc` peer
//! connection with an audio and a video track, like a browser). Datagrams move in memory;
//! time is a synthetic [`Instant`] that only [`SimNet::run_for`] advances. Enabled by the
//! `testing` feature (and in this crate's own tests).

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

use crate::config::SfuConfig;
use crate::engine::{Engine, JoinAnswer, JoinRequest};
use crate::error::Error;
use crate::event::Event;
use crate::ids::CallId;
use crate::stats::Counter;
use crate::transport::KeyframeRequestTap;
use crate::{MediaKind, Role};

/// The SFU's address on the simulated network.
pub const SFU_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 40000);

/// Index of a client in a [`SimNet`].
pub type ClientId = usize;

/// A simulated link direction: a bottleneck of `rate_bps` with a drop-tail queue, a fixed
/// one-way `delay`, and random `loss`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// Capacity, bits per second; `None` = unlimited.
    pub rate_bps: Option<u64>,
    /// One-way propagation delay.
    pub delay: Duration,
    /// Random loss, 0.0..=1.0.
    pub loss: f64,
    /// The bottleneck queue holds at most this much queueing delay; later packets drop.
    pub max_queue_delay: Duration,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            rate_bps: None,
            delay: Duration::ZERO,
            loss: 0.0,
            max_queue_delay: Duration::from_millis(300),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Link {
    config: LinkConfig,
    busy_until: Option<Instant>,
}

impl Link {
    /// When a datagram of `size` bytes sent at `now` arrives, or `None` if lost.
    fn arrival(&mut self, now: Instant, size: usize, rng: &mut u64) -> Option<Instant> {
        let c = self.config;
        if c.loss > 0.0 {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            if (*rng % 1_000_000) as f64 / 1_000_000.0 < c.loss {
                return None;
            }
        }
        let Some(rate) = c.rate_bps.filter(|r| *r > 0) else {
            return Some(now + c.delay);
        };
        let start = self.busy_until.map_or(now, |b| b.max(now));
        if start.saturating_duration_since(now) > c.max_queue_delay {
            return None;
        }
        let tx = Duration::from_nanos((size as u64 * 8).saturating_mul(1_000_000_000) / rate);
        self.busy_until = Some(start + tx);
        Some(start + tx + c.delay)
    }
}

/// Sent in order, then by this counter, so equal arrival times keep their order.
type InFlight = std::cmp::Reverse<(Instant, u64, SocketAddr, SocketAddr, Vec<u8>)>;

/// What a client saw.
#[derive(Debug, Clone, Default)]
pub struct ClientStats {
    /// Media sent, by kind.
    pub sent_audio: Counter,
    /// Video sent.
    pub sent_video: Counter,
    /// Media received, audio.
    pub received_audio: Counter,
    /// Media received, video.
    pub received_video: Counter,
    /// Received packets whose payload did not match what the sender's generator makes.
    pub corrupt: u64,
    /// Keyframe requests (PLI) that arrived for the client's own tracks.
    pub plis_received: u64,
    /// Whether the client's peer connection is connected.
    pub connected: bool,
    /// SSRCs of the remote tracks it received media on.
    pub remote_ssrcs: Vec<u32>,
    /// Video packets received per simulcast layer (0 = lowest; single streams count as 0).
    pub received_layers: [u64; 3],
    /// The layer of the last video packet received.
    pub last_layer: Option<u8>,
}

/// A sans-IO WebRTC client (full ICE, offerer) on the simulated network.
pub struct SimClient {
    pc: RTCPeerConnection,
    /// Where its datagrams come from on the wire (changes when it "moves").
    addr: SocketAddr,
    /// The host candidate its peer connection was given.
    candidate: SocketAddr,
    /// Its participant id, once joined.
    participant: Option<crate::ParticipantId>,
    /// While true it sends and receives nothing (a dead link).
    silent: bool,
    /// SFU to client.
    downlink: Link,
    /// Client to SFU.
    uplink: Link,
    /// Simulcast layer SSRCs (lowest first) when it publishes simulcast.
    layers: Vec<u32>,
    /// Keyframes asked for (by PLI), by SSRC.
    keyframe_wanted: Vec<u32>,
    audio: Option<(RTCRtpSenderId, u32, u8)>,
    video: Option<(RTCRtpSenderId, u32, u8)>,
    receivers: Vec<(RTCRtpReceiverId, u32)>,
    /// Next sequence number and timestamp per SSRC.
    counters: Vec<(u32, u16, u32)>,
    stats: ClientStats,
}

/// Options for a simulated client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Offer an audio m-line.
    pub audio: bool,
    /// Offer a video m-line.
    pub video: bool,
    /// Offer H.264 before VP8.
    pub h264_first: bool,
    /// Publish the camera as three simulcast layers (rids "q", "h", "f").
    pub simulcast: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            audio: true,
            video: true,
            h264_first: false,
            simulcast: false,
        }
    }
}

const OPUS_PT: u8 = 111;
const VP8_PT: u8 = 96;
const H264_PT: u8 = 102;

impl SimClient {
    fn new(addr: SocketAddr, options: &ClientOptions, now: Instant, seed: u32) -> SimClient {
        let opus = RTCRtpCodec {
            mime_type: MIME_TYPE_OPUS.to_owned(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
            rtcp_feedback: vec![],
        };
        let vp8 = RTCRtpCodec {
            mime_type: MIME_TYPE_VP8.to_owned(),
            clock_rate: 90_000,
            ..Default::default()
        };
        let h264 = RTCRtpCodec {
            mime_type: MIME_TYPE_H264.to_owned(),
            clock_rate: 90_000,
            sdp_fmtp_line: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
                .to_owned(),
            ..Default::default()
        };
        let mut media = MediaEngine::default();
        let register = |m: &mut MediaEngine, codec: &RTCRtpCodec, pt: u8, kind| {
            m.register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: codec.clone(),
                    payload_type: pt,
                },
                kind,
            )
            .expect("registering a well-formed codec");
        };
        register(&mut media, &opus, OPUS_PT, RtpCodecKind::Audio);
        if options.h264_first {
            register(&mut media, &h264, H264_PT, RtpCodecKind::Video);
            register(&mut media, &vp8, VP8_PT, RtpCodecKind::Video);
        } else {
            register(&mut media, &vp8, VP8_PT, RtpCodecKind::Video);
            register(&mut media, &h264, H264_PT, RtpCodecKind::Video);
        }
        let registry = Registry::new().with(
            rtc::interceptor::Slot::from(14_000),
            KeyframeRequestTap::default(),
        );
        // The defaults, but with a NACK generator that gives up after 10 tries, as browsers do.
        for feedback in ["", "pli"] {
            media.register_feedback(
                rtc::rtp_transceiver::rtp_sender::RTCPFeedback {
                    typ: "nack".to_owned(),
                    parameter: feedback.to_owned(),
                },
                RtpCodecKind::Video,
            );
        }
        rtc::peer_connection::configuration::interceptor_registry::configure_simulcast_extension_headers(&mut media)
            .expect("simulcast extensions register");
        let registry = registry
            .with(
                rtc::interceptor::Slot::NackResponder,
                rtc::interceptor::NackResponderBuilder::new().build(),
            )
            .with(
                rtc::interceptor::Slot::NackGenerator,
                rtc::interceptor::NackGeneratorBuilder::new()
                    .with_max_nacks_per_packet(10)
                    .build(),
            );
        let registry = rtc::peer_connection::configuration::interceptor_registry::configure_twcc_receiver_only(registry, &mut media)
            .expect("twcc receiver registers");
        let registry =
            rtc::peer_connection::configuration::interceptor_registry::configure_rtcp_reports(
                registry,
            );
        let settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .build();
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_media_engine(media)
            .with_setting_engine(settings)
            .with_interceptor_registry(registry)
            .build(now)
            .expect("client peer connection builds");
        let add = |pc: &mut RTCPeerConnection, kind, codec: &RTCRtpCodec, ssrc: u32| {
            let track = MediaStreamTrack::new(
                "client".to_owned(),
                format!("{kind}"),
                format!("{kind}"),
                kind,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec: codec.clone(),
                    ..Default::default()
                }],
            );
            pc.add_track(track).expect("adding a track")
        };
        let audio = options.audio.then(|| {
            (
                add(&mut pc, RtpCodecKind::Audio, &opus, seed),
                seed,
                OPUS_PT,
            )
        });
        let mut layers = Vec::new();
        let video = options.video.then(|| {
            let codec = if options.h264_first { &h264 } else { &vp8 };
            let pt = if options.h264_first { H264_PT } else { VP8_PT };
            if options.simulcast {
                layers = vec![seed + 1, seed + 2, seed + 3];
                let codings = ["q", "h", "f"]
                    .iter()
                    .zip(&layers)
                    .map(|(rid, ssrc)| RTCRtpEncodingParameters {
                        rtp_coding_parameters: RTCRtpCodingParameters {
                            rid: (*rid).to_owned(),
                            ssrc: Some(*ssrc),
                            ..Default::default()
                        },
                        codec: codec.clone(),
                        ..Default::default()
                    })
                    .collect();
                let track = MediaStreamTrack::new(
                    "client".to_owned(),
                    "video".to_owned(),
                    "video".to_owned(),
                    RtpCodecKind::Video,
                    codings,
                );
                (
                    pc.add_track(track).expect("adding a simulcast track"),
                    seed + 1,
                    pt,
                )
            } else {
                (
                    add(&mut pc, RtpCodecKind::Video, codec, seed + 1),
                    seed + 1,
                    pt,
                )
            }
        });
        crate::transport::add_host_candidate(&mut pc, addr).expect("adding the host candidate");
        SimClient {
            pc,
            addr,
            candidate: addr,
            participant: None,
            silent: false,
            downlink: Link::default(),
            uplink: Link::default(),
            layers,
            keyframe_wanted: Vec::new(),
            audio,
            video,
            receivers: Vec::new(),
            counters: Vec::new(),
            stats: ClientStats::default(),
        }
    }

    /// The client's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it saw so far.
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// A STUN binding request as this client's ICE agent (controlling) sends it to the SFU:
    /// its credentials from the offer/answer, USE-CANDIDATE when `nominate`. With `password`,
    /// MESSAGE-INTEGRITY is keyed with that instead of the SFU's ICE password (a forgery).
    pub fn binding_request(&self, nominate: bool, password: Option<&str>) -> Vec<u8> {
        use rtc::ice::attributes::control::AttrControlling;
        use rtc::ice::attributes::priority::PriorityAttr;
        use rtc::ice::attributes::use_candidate::UseCandidateAttr;
        use rtc::stun::attributes::ATTR_USERNAME;
        use rtc::stun::fingerprint::FINGERPRINT;
        use rtc::stun::integrity::MessageIntegrity;
        use rtc::stun::message::{BINDING_REQUEST, Message, Setter, TransactionId};
        use rtc::stun::textattrs::Username;

        let sdp_value = |sdp: &str, key: &str| {
            sdp.lines()
                .find_map(|l| l.trim().strip_prefix(key).map(str::to_owned))
                .expect("ICE credentials in the SDP")
        };
        let local = self.pc.local_description().expect("offer set").sdp;
        let remote = self
            .pc
            .remote_description()
            .expect("answer set")
            .sdp
            .clone();
        let client_ufrag = sdp_value(&local, "a=ice-ufrag:");
        let server_ufrag = sdp_value(&remote, "a=ice-ufrag:");
        let server_pwd = sdp_value(&remote, "a=ice-pwd:");
        let provider = rtc::crypto::default_provider().expect("crypto provider");
        let mut setters: Vec<Box<dyn Setter>> = vec![
            Box::new(BINDING_REQUEST),
            Box::new(TransactionId::new()),
            Box::new(Username::new(
                ATTR_USERNAME,
                format!("{server_ufrag}:{client_ufrag}"),
            )),
            Box::new(AttrControlling(7)),
            Box::new(PriorityAttr(1_853_824_767)),
        ];
        if nominate {
            setters.push(Box::<UseCandidateAttr>::default());
        }
        setters.push(Box::new(
            MessageIntegrity::new_short_term_integrity_with_provider(
                password.unwrap_or(&server_pwd).to_owned(),
                provider.crypto(),
            ),
        ));
        setters.push(Box::new(FINGERPRINT));
        let mut msg = Message::new();
        msg.build(&setters).expect("a well-formed binding request");
        msg.raw
    }

    /// The client's own SSRC for `kind`.
    pub fn ssrc(&self, kind: MediaKind) -> Option<u32> {
        match kind {
            MediaKind::Audio => self.audio.map(|a| a.1),
            MediaKind::Video => self.video.map(|v| v.1),
        }
    }

    fn drain(&mut self, now: Instant, out: &mut VecDeque<(SocketAddr, SocketAddr, BytesMut)>) {
        while let Some(e) = self.pc.poll_event() {
            match e {
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) => {
                    self.stats.connected = s == RTCPeerConnectionState::Connected;
                }
                RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                    self.receivers.push((init.receiver_id, init.ssrc));
                }
                _ => {}
            }
        }
        while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
            match message {
                RTCMessage::RtpPacket(_, p) => {
                    let size = p.payload.len() + 12;
                    let video =
                        p.payload.first().is_some_and(|b| *b == 0x10) || p.payload.len() > 200;
                    if !payload_is_intact(&p.payload) {
                        self.stats.corrupt += 1;
                    }
                    if video {
                        self.stats.received_video.add(size);
                        let layer = usize::from(p.payload.get(1).copied().unwrap_or(0) >> 4);
                        if let Some(n) = self.stats.received_layers.get_mut(layer) {
                            *n += 1;
                        }
                        self.stats.last_layer = Some(layer as u8);
                    } else {
                        self.stats.received_audio.add(size);
                    }
                    if !self.stats.remote_ssrcs.contains(&p.header.ssrc) {
                        self.stats.remote_ssrcs.push(p.header.ssrc);
                    }
                }
                RTCMessage::RtcpPacket(_, packets) => {
                    for p in packets {
                        if let Some(pli) = p.as_any().downcast_ref::<PictureLossIndication>() {
                            self.stats.plis_received += 1;
                            self.keyframe_wanted.push(pli.media_ssrc);
                        }
                    }
                }
                _ => {}
            }
        }
        while let Some(e) = self.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) = e {
                self.receivers.push((init.receiver_id, init.ssrc));
            }
        }
        while let Some(m) = self.pc.poll_write() {
            if !self.silent {
                out.push_back((m.transport.peer_addr, self.addr, m.message));
            }
        }
        let _ = now;
    }

    fn send(&mut self, kind: MediaKind, payload: Bytes, marker: bool, ts_step: u32, now: Instant) {
        let track = match kind {
            MediaKind::Audio => self.audio,
            MediaKind::Video => self.video,
        };
        let Some((_, ssrc, _)) = track else {
            return;
        };
        self.send_on(kind, ssrc, payload, marker, ts_step, now);
    }

    fn send_on(
        &mut self,
        kind: MediaKind,
        ssrc: u32,
        payload: Bytes,
        marker: bool,
        ts_step: u32,
        now: Instant,
    ) {
        let track = match kind {
            MediaKind::Audio => self.audio,
            MediaKind::Video => self.video,
        };
        let Some((sender, _, pt)) = track else {
            return;
        };
        let i = match self.counters.iter().position(|c| c.0 == ssrc) {
            Some(i) => i,
            None => {
                self.counters
                    .push((ssrc, (ssrc as u16).wrapping_mul(7), ssrc.wrapping_mul(13)));
                self.counters.len() - 1
            }
        };
        let (_, seq, ts) = self.counters[i];
        let mut header = rtp::header::Header {
            version: 2,
            marker,
            payload_type: pt,
            sequence_number: seq,
            timestamp: ts,
            ssrc,
            ..Default::default()
        };
        // Simulcast layers are told apart by their rid (and mid) header extensions, as a
        // browser sends them; the stack leaves adding them to the application.
        if let Some(layer) = self.layers.iter().position(|l| *l == ssrc)
            && let Some(mut s) = self.pc.rtp_sender(sender)
        {
            let params = s.get_parameters();
            for ext in &params.rtp_parameters.header_extensions {
                let value: &[u8] = match ext.uri.as_str() {
                    "urn:ietf:params:rtp-hdrext:sdes:mid" => b"1",
                    "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id" => [b"q", b"h", b"f"][layer],
                    _ => continue,
                };
                let _ = header.set_extension(ext.id as u8, Bytes::copy_from_slice(value));
            }
        }
        let packet = rtp::Packet { header, payload };
        self.counters[i].1 = seq.wrapping_add(1);
        if marker {
            self.counters[i].2 = ts.wrapping_add(ts_step);
        }
        let size = packet.payload.len() + 12;
        if let Some(mut s) = self.pc.rtp_sender(sender)
            && s.write_rtp(now, packet).is_ok()
        {
            match kind {
                MediaKind::Audio => self.stats.sent_audio.add(size),
                MediaKind::Video => self.stats.sent_video.add(size),
            }
        }
    }

    /// Whether a keyframe was asked for on `ssrc` (clears the request).
    fn take_keyframe_request(&mut self, ssrc: u32) -> bool {
        let before = self.keyframe_wanted.len();
        self.keyframe_wanted.retain(|s| *s != ssrc);
        before != self.keyframe_wanted.len()
    }
}

/// A synthetic payload: a 2-byte codec prefix, then bytes derived from a counter, so the
/// receiver can check it arrived unchanged.
fn make_payload(prefix: [u8; 2], counter: u32, len: usize) -> Bytes {
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&prefix);
    v.extend_from_slice(&counter.to_be_bytes());
    let mut x = counter.wrapping_mul(2_654_435_761);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push(x as u8);
    }
    Bytes::from(v)
}

fn payload_is_intact(p: &[u8]) -> bool {
    if p.len() < 6 {
        return false;
    }
    let counter = u32::from_be_bytes([p[2], p[3], p[4], p[5]]);
    make_payload([p[0], p[1]], counter, p.len()) == p
}

/// The SFU engine and its clients on one in-memory network.
pub struct SimNet {
    /// The engine under test.
    pub engine: Engine,
    /// Synthetic time: starts at construction, moves only in [`SimNet::run_for`].
    pub now: Instant,
    clients: Vec<SimClient>,
    outbox: VecDeque<(SocketAddr, SocketAddr, BytesMut)>,
    wire: std::collections::BinaryHeap<InFlight>,
    sent: u64,
    /// Bytes of each audio packet's payload (100 by default, about 40 kbit/s at 50 pps).
    pub audio_payload: usize,
    rng: u64,
    events: Vec<Event>,
    counter: u32,
    recording: SimRecording,
    /// Datagrams the engine sent, by destination (delivered or not).
    sent_to: std::collections::HashMap<SocketAddr, u64>,
}

/// The recording side of a [`SimNet`]: a [`Recorder`](crate::recording::Recorder) (the
/// real writer thread) fed like the driver feeds it, or, without one, the outputs kept.
#[derive(Default)]
struct SimRecording {
    recorder: Option<crate::recording::Recorder>,
    reports: Option<std::sync::mpsc::Receiver<crate::recording::RecorderReport>>,
    outputs: Vec<crate::recording::RecordingOutput>,
    finished: Vec<crate::recording::FileSummary>,
    failures: Vec<std::io::ErrorKind>,
}

impl SimNet {
    /// A network with an engine configured by `config` (seeded if `config.seed` is unset).
    pub fn new(mut config: SfuConfig) -> SimNet {
        if config.seed.is_none() {
            config.seed = Some(7);
        }
        let engine = Engine::new(config, vec![SFU_ADDR]).expect("engine builds");
        SimNet {
            engine,
            now: Instant::now(),
            clients: Vec::new(),
            outbox: VecDeque::new(),
            wire: std::collections::BinaryHeap::new(),
            sent: 0,
            audio_payload: 100,
            rng: 0x9e37_79b9_7f4a_7c15,
            events: Vec::new(),
            counter: 0,
            recording: SimRecording::default(),
            sent_to: std::collections::HashMap::new(),
        }
    }

    /// Creates a call with default options (the merchant initiates).
    pub fn create_call(&mut self) -> CallId {
        self.create_call_with(crate::CallOptions::default())
    }

    /// Creates a call.
    pub fn create_call_with(&mut self, options: crate::CallOptions) -> CallId {
        self.engine
            .create_call(options, self.now)
            .expect("call created")
            .id
    }

    /// Adds a client at `10.0.1.<n>:5000`.
    pub fn add_client(&mut self, options: ClientOptions) -> ClientId {
        let n = self.clients.len();
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 1, n as u8 + 1)), 5000);
        let c = SimClient::new(addr, &options, self.now, 0x1000_0000 + (n as u32) * 16);
        self.clients.push(c);
        n
    }

    /// The client.
    pub fn client(&self, c: ClientId) -> &SimClient {
        &self.clients[c]
    }

    /// The client's offer SDP (sets it as its local description).
    pub fn offer(&mut self, c: ClientId) -> String {
        let now = self.now;
        let pc = &mut self.clients[c].pc;
        let offer = pc.create_offer(None).expect("offer");
        pc.set_local_description(now, offer).expect("local offer");
        pc.local_description().expect("local description").sdp
    }

    /// Gives the client the SFU's answer.
    pub fn accept_answer(&mut self, c: ClientId, sdp: &str) {
        let answer = RTCSessionDescription::answer(sdp.to_owned()).expect("answer parses");
        self.clients[c]
            .pc
            .set_remote_description(self.now, answer)
            .expect("answer accepted");
    }

    /// Offer, join, answer in one go.
    pub fn join(&mut self, call: CallId, role: Role, c: ClientId) -> Result<JoinAnswer, Error> {
        let offer_sdp = self.offer(c);
        let answer = self
            .engine
            .join(call, JoinRequest::new(role, offer_sdp), self.now)?;
        self.accept_answer(c, &answer.answer_sdp);
        self.clients[c].participant = Some(answer.participant);
        Ok(answer)
    }

    /// The client's datagrams now come from `to` (a new network, or a NAT rebinding);
    /// what is sent to its old address is lost.
    pub fn move_client(&mut self, c: ClientId, to: SocketAddr) {
        self.clients[c].addr = to;
    }

    /// Cuts (or restores) the client's link: nothing in or out while cut.
    pub fn set_silent(&mut self, c: ClientId, silent: bool) {
        self.clients[c].silent = silent;
    }

    /// The client restarts ICE: new credentials in a new offer, through
    /// [`Engine::restart_ice`], and the answer applied.
    pub fn restart_ice(&mut self, c: ClientId) -> Result<(), Error> {
        let participant = self.clients[c]
            .participant
            .expect("restart_ice needs a joined client");
        let now = self.now;
        let pc = &mut self.clients[c].pc;
        pc.restart_ice();
        let offer = pc.create_offer(None).expect("restart offer");
        pc.set_local_description(now, offer)
            .expect("local restart offer");
        let sdp = pc.local_description().expect("local description").sdp;
        let answer = self.engine.restart_ice(participant, sdp, now)?;
        self.accept_answer(c, &answer);
        Ok(())
    }

    /// Sends a datagram from `from` to the SFU (for garbage and spoofing tests).
    pub fn inject(&mut self, from: SocketAddr, bytes: &[u8]) {
        self.engine
            .handle_datagram(self.now, from, SFU_ADDR, BytesMut::from(bytes));
        self.pump();
    }

    /// Sends a datagram from client `c`'s own address (for garbage and replay tests).
    pub fn inject_from_client(&mut self, c: ClientId, bytes: &[u8]) {
        let from = self.clients[c].addr;
        self.inject(from, bytes);
    }

    /// How many datagrams the engine has sent to `addr` so far (whether anyone was there).
    pub fn sent_to(&self, addr: SocketAddr) -> u64 {
        self.sent_to.get(&addr).copied().unwrap_or(0)
    }

    /// Client `c` sends one audio packet (a 20 ms Opus-like frame of
    /// [`SimNet::audio_payload`] bytes).
    pub fn send_audio(&mut self, c: ClientId) {
        self.counter += 1;
        let payload = make_payload([0x78, 0x01], self.counter, self.audio_payload);
        let now = self.now;
        self.clients[c].send(MediaKind::Audio, payload, true, 960, now);
        self.pump();
    }

    /// Client `c` sends one video frame of `packets` packets (VP8-like; keyframe when asked
    /// or when a PLI asked for one).
    pub fn send_video_frame(&mut self, c: ClientId, keyframe: bool, packets: usize) {
        let Some(ssrc) = self.clients[c].video.map(|v| v.1) else {
            return;
        };
        let keyframe = self.clients[c].take_keyframe_request(ssrc) || keyframe;
        self.send_frame(c, ssrc, 0, keyframe, packets, 1000);
        self.pump();
    }

    /// Client `c` (with [`ClientOptions::simulcast`]) sends one frame on each layer: 1 packet
    /// of 600 bytes, 2 of 1,000, 6 of 1,000 (about 150, 500 and 1,500 kbit/s at 30 fps).
    /// A layer sends a keyframe when `keyframe`, or when a PLI asked for one on it.
    pub fn send_simulcast_frame(&mut self, c: ClientId, keyframe: bool) {
        let layers = self.clients[c].layers.clone();
        for (layer, ssrc) in layers.into_iter().enumerate() {
            let kf = self.clients[c].take_keyframe_request(ssrc) || keyframe;
            let (packets, size) = [(1, 600), (2, 1000), (6, 1000)][layer];
            self.send_frame(c, ssrc, layer as u8, kf, packets, size);
        }
        self.pump();
    }

    fn send_frame(
        &mut self,
        c: ClientId,
        ssrc: u32,
        layer: u8,
        keyframe: bool,
        packets: usize,
        size: usize,
    ) {
        let now = self.now;
        for i in 0..packets {
            self.counter += 1;
            let tag = layer << 4;
            let prefix = if i == 0 {
                [0x10, tag | u8::from(!keyframe)]
            } else {
                [0x00, tag | 0x01]
            };
            let payload = make_payload(prefix, self.counter, size);
            self.clients[c].send_on(MediaKind::Video, ssrc, payload, i + 1 == packets, 3000, now);
        }
    }

    /// Client `c` sends one video packet with this payload (the caller packetizes, e.g. real
    /// VP8 per RFC 7741); the RTP timestamp advances by `ts_step` after a `marker` packet.
    pub fn send_video_payload(&mut self, c: ClientId, payload: Bytes, marker: bool, ts_step: u32) {
        let Some(ssrc) = self.clients[c].video.map(|v| v.1) else {
            return;
        };
        let now = self.now;
        self.clients[c].send_on(MediaKind::Video, ssrc, payload, marker, ts_step, now);
        self.pump();
    }

    /// Client `c` sends one audio packet with this payload (e.g. a real Opus packet); the
    /// RTP timestamp advances by `ts_step` (960 for 20 ms).
    pub fn send_audio_payload(&mut self, c: ClientId, payload: Bytes, ts_step: u32) {
        let now = self.now;
        self.clients[c].send(MediaKind::Audio, payload, true, ts_step, now);
        self.pump();
    }

    /// Writes recordings with the real writer thread, as the driver does: recorded outputs
    /// go to it on every pump, its reports come back to the engine.
    pub fn attach_recorder(&mut self, config: crate::recording::RecorderConfig) {
        self.attach_recorder_with(config, None);
    }

    /// [`SimNet::attach_recorder`] with a custom way to open files (to inject failures).
    pub fn attach_recorder_with(
        &mut self,
        config: crate::recording::RecorderConfig,
        opener: Option<crate::recording::Opener>,
    ) {
        let (tx, rx) = std::sync::mpsc::channel();
        let report = move |r| {
            let _ = tx.send(r);
        };
        let recorder = match opener {
            Some(o) => crate::recording::Recorder::with_opener(config, o, report),
            None => crate::recording::Recorder::spawn(config, report),
        }
        .expect("the recorder thread starts");
        self.recording.recorder = Some(recorder);
        self.recording.reports = Some(rx);
    }

    /// Starts recording `call` into a new file in `dir`, as
    /// [`SfuHandle::start_recording`](crate::SfuHandle::start_recording) does: preconditions,
    /// then the file, then the engine.
    pub fn start_recording(
        &mut self,
        call: CallId,
        dir: &std::path::Path,
    ) -> Result<crate::recording::RecordingStart, Error> {
        let plan = self.engine.recording_plan(call)?;
        crate::recording::check_dir(dir)?;
        let path = crate::recording::reserve_file(dir, call, 0, plan.container)?;
        let started = self
            .engine
            .start_recording_to(call, Some(path.clone()), self.now);
        if started.is_err() {
            let _ = std::fs::remove_file(&path);
        }
        self.pump();
        started
    }

    /// Waits until the writer processed everything so far, and applies its reports.
    pub fn sync_recorder(&mut self) {
        self.pump();
        if let Some(r) = &self.recording.recorder {
            r.flush();
        }
        self.pump();
    }

    /// Stops the writer thread (finishing open files) and applies its last reports.
    pub fn shutdown_recorder(&mut self) {
        self.pump();
        if let Some(r) = self.recording.recorder.take() {
            r.shutdown();
        }
        self.pump_recording();
    }

    /// Recording outputs taken from the engine when no recorder is attached.
    pub fn take_recorded(&mut self) -> Vec<crate::recording::RecordingOutput> {
        self.pump();
        std::mem::take(&mut self.recording.outputs)
    }

    /// Files the writer finished so far.
    pub fn finished_recordings(&self) -> &[crate::recording::FileSummary] {
        &self.recording.finished
    }

    /// Write failures the writer reported so far.
    pub fn recording_failures(&self) -> &[std::io::ErrorKind] {
        &self.recording.failures
    }

    fn pump_recording(&mut self) {
        use crate::recording::{RecorderReportKind, RecordingOutput};
        while let Some(o) = self.engine.poll_recorded() {
            match &self.recording.recorder {
                Some(r) => {
                    if let Err(RecordingOutput::Packet(p)) = r.send(o) {
                        self.engine.recording_packets_dropped(p.id, 1);
                    }
                }
                None => self.recording.outputs.push(o),
            }
        }
        let Some(rx) = &self.recording.reports else {
            return;
        };
        while let Ok(report) = rx.try_recv() {
            match report.kind {
                RecorderReportKind::Failed(e) => {
                    self.recording.failures.push(e.kind());
                    self.engine.recording_failed(report.id, e.kind(), self.now);
                }
                RecorderReportKind::KeyframeNeeded(track) => self
                    .engine
                    .recording_keyframe_needed(report.id, track, self.now),
                RecorderReportKind::Finished(summary) => self.recording.finished.push(summary),
            }
        }
    }

    /// Sets the client's downlink (SFU to client).
    pub fn set_downlink(&mut self, c: ClientId, config: LinkConfig) {
        self.clients[c].downlink.config = config;
    }

    /// Sets the client's uplink (client to SFU).
    pub fn set_uplink(&mut self, c: ClientId, config: LinkConfig) {
        self.clients[c].uplink.config = config;
    }

    /// Client `c` encrypts `frames` video frames of `packets` packets each (the first a
    /// keyframe) and returns the datagrams instead of delivering them: the engine's input
    /// for a forwarding benchmark. Each datagram can be fed once (SRTP replay protection).
    pub fn capture_video(&mut self, c: ClientId, frames: usize, packets: usize) -> Vec<BytesMut> {
        self.pump();
        let now = self.now;
        let mut out = Vec::with_capacity(frames * packets);
        for f in 0..frames {
            for i in 0..packets {
                self.counter += 1;
                let prefix = if i == 0 {
                    [0x10, if f == 0 { 0x00 } else { 0x01 }]
                } else {
                    [0x00, 0x01]
                };
                let payload = make_payload(prefix, self.counter, 1000);
                self.clients[c].send(MediaKind::Video, payload, i + 1 == packets, 3000, now);
            }
            while let Some(m) = self.clients[c].pc.poll_write() {
                if m.transport.peer_addr == SFU_ADDR {
                    out.push(m.message);
                }
            }
        }
        out
    }

    /// Feeds datagrams from client `c` to the engine and drains what it sends, discarding
    /// it. Returns the number of datagrams the engine sent.
    pub fn feed(&mut self, c: ClientId, datagrams: Vec<BytesMut>) -> usize {
        let from = self.clients[c].addr;
        let now = self.now;
        let mut sent = 0;
        for d in datagrams {
            self.engine.handle_datagram(now, from, SFU_ADDR, d);
            while self.engine.poll_transmit().is_some() {
                sent += 1;
            }
        }
        sent
    }

    /// Client `c` asks the SFU for a keyframe on every video track it receives.
    pub fn send_pli(&mut self, c: ClientId) {
        let now = self.now;
        let client = &mut self.clients[c];
        for (rid, ssrc) in client.receivers.clone() {
            if let Some(mut r) = client.pc.rtp_receiver(rid) {
                let _ = r.write_rtcp(
                    now,
                    vec![Box::new(PictureLossIndication {
                        sender_ssrc: 0,
                        media_ssrc: ssrc,
                    })],
                );
            }
        }
        self.pump();
    }

    /// Delivers everything due by now, repeatedly, until nothing more is due.
    pub fn pump(&mut self) {
        for _ in 0..256 {
            let now = self.now;
            for c in &mut self.clients {
                c.drain(now, &mut self.outbox);
            }
            while let Some(t) = self.engine.poll_transmit() {
                *self.sent_to.entry(t.destination).or_default() += 1;
                self.outbox.push_back((t.destination, t.source, t.contents));
            }
            self.pump_recording();
            while let Some(e) = self.engine.poll_event() {
                self.events.push(e);
            }
            // Onto the links: the client's uplink or the destination client's downlink.
            while let Some((to, from, bytes)) = self.outbox.pop_front() {
                let link = if to == SFU_ADDR {
                    self.clients
                        .iter_mut()
                        .find(|c| c.addr == from)
                        .map(|c| &mut c.uplink)
                } else {
                    self.clients
                        .iter_mut()
                        .find(|c| c.addr == to)
                        .map(|c| &mut c.downlink)
                };
                let arrival = match link {
                    Some(link) => link.arrival(now, bytes.len(), &mut self.rng),
                    None => Some(now),
                };
                if let Some(at) = arrival {
                    self.sent += 1;
                    self.wire
                        .push(std::cmp::Reverse((at, self.sent, to, from, bytes.to_vec())));
                }
            }
            let mut delivered = false;
            while let Some(std::cmp::Reverse((at, _, _, _, _))) = self.wire.peek() {
                if *at > now {
                    break;
                }
                let Some(std::cmp::Reverse((_, _, to, from, bytes))) = self.wire.pop() else {
                    break;
                };
                delivered = true;
                let bytes = BytesMut::from(&bytes[..]);
                if to == SFU_ADDR {
                    self.engine.handle_datagram(now, from, SFU_ADDR, bytes);
                } else if let Some(c) = self.clients.iter_mut().find(|c| c.addr == to && !c.silent)
                {
                    let _ = c.pc.handle_read(TaggedBytesMut {
                        now,
                        transport: TransportContext {
                            local_addr: c.candidate,
                            peer_addr: from,
                            ecn: None,
                            transport_protocol: TransportProtocol::UDP,
                        },
                        message: bytes,
                    });
                }
            }
            if !delivered && self.outbox.is_empty() {
                return;
            }
        }
    }

    /// Advances synthetic time by `duration`, running every timer and delivering every
    /// datagram that falls due (in 5 ms steps at most).
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        loop {
            self.pump();
            let mut next = end.min(self.now + Duration::from_millis(5));
            if let Some(t) = self.engine.poll_timeout() {
                next = next.min(t.max(self.now));
            }
            for c in &mut self.clients {
                if let Some(t) = c.pc.poll_timeout() {
                    next = next.min(t.max(self.now));
                }
            }
            if let Some(std::cmp::Reverse((at, _, _, _, _))) = self.wire.peek() {
                next = next.min((*at).max(self.now));
            }
            self.now = next;
            if self.engine.poll_timeout().is_some_and(|t| t <= self.now) {
                self.engine.handle_timeout(self.now);
            }
            for c in &mut self.clients {
                if c.pc.poll_timeout().is_some_and(|t| t <= self.now) {
                    let _ = c.pc.handle_timeout(self.now);
                }
            }
            if self.now >= end {
                self.pump();
                return;
            }
        }
    }

    /// Runs until every client is connected, or `limit` passes. Returns whether they are.
    pub fn connect_all(&mut self, limit: Duration) -> bool {
        let end = self.now + limit;
        while self.now < end {
            self.run_for(Duration::from_millis(20));
            if self.clients.iter().all(|c| c.stats.connected) {
                return true;
            }
        }
        false
    }

    /// Events the engine emitted since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        self.pump();
        std::mem::take(&mut self.events)
    }

    /// Closes a client's peer connection (it vanishes from the network).
    pub fn close_client(&mut self, c: ClientId) {
        let _ = self.clients[c].pc.close();
        self.clients[c].addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
    }
}
