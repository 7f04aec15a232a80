//! Transport: one participant's WebRTC peer connection (ICE-lite, DTLS-SRTP, BUNDLE).
//!
//! The only file that touches `rtc::peer_connection` types. It turns an offer into an answer
//! restricted to the call's codecs, feeds datagrams in, and hands back what the engine cares
//! about: RTP packets, keyframe requests, track openings, state changes, datagrams to send.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

mod tap;

use std::time::Instant;
pub(crate) use tap::KeyframeRequestTap;
use tap::{WireState, WireTap};

use bytes::BytesMut;
use interceptor::{Registry, Slot};
use policy::MediaKind;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::RTCPeerConnectionBuilder;
use rtc::peer_connection::certificate::RTCCertificate;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_rtcp_reports, configure_simulcast_extension_headers, configure_twcc,
};
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MediaEngine};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::{
    RTCBundlePolicy, RTCConfigurationBuilder, RTCRtcpMuxPolicy,
};
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::{RTCIceConnectionState, RTCPeerConnectionState};
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCIceCandidate, RTCIceCandidateInit,
};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId, RTCRtpTransceiverDirection};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use rtc::statistics::StatsSelector;
use rtc::statistics::report::RTCStatsReportEntry;

use crate::bwe::{DownlinkEstimator, Estimate, EstimatorConfig};
use crate::config::SrtpProfile;
use crate::error::{Error, OfferError};
use crate::event::ConnectionState;
use crate::offer::{LegCodec, OfferSummary};
use crate::stats::LinkQuality;

/// SRTP replay window, in packets.
const SRTP_REPLAY_WINDOW: usize = 512;
/// SRTCP replay window, in packets.
const SRTCP_REPLAY_WINDOW: usize = 128;
/// DTLS replay window, in records.
const DTLS_REPLAY_WINDOW: usize = 64;

/// Packets kept per sent stream for retransmission on NACK.
const RETRANSMISSION_BUFFER: u16 = 128;
/// Times we NACK one lost packet from a publisher before giving up on it.
const MAX_NACKS_PER_PACKET: u16 = 10;

/// Audio level header extension (RFC 6464).
const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// What every transport shares: set once at engine start.
pub(crate) struct TransportSettings {
    /// The one DTLS certificate of this engine (generating one per connection costs ~1 ms).
    pub certificate: RTCCertificate,
    /// SRTP profiles, in preference order.
    pub srtp_profiles: Vec<SrtpProfile>,
    /// Host candidates: announced address + the media socket's port.
    pub candidates: Vec<SocketAddr>,
    /// How each participant's downlink estimate starts and is bounded.
    pub estimator: EstimatorConfig,
}

impl TransportSettings {
    pub(crate) fn new(
        srtp_profiles: Vec<SrtpProfile>,
        candidates: Vec<SocketAddr>,
        estimator: EstimatorConfig,
    ) -> Result<Self, Error> {
        let provider = rtc::crypto::default_provider()
            .map_err(|e| Error::internal("loading the crypto provider", e))?;
        let certificate = RTCCertificate::generate(
            provider.crypto(),
            rtc::crypto::SignatureScheme::EcdsaP256Sha256,
            rtc::peer_connection::certificate::CertificateParams::new(vec!["shopcall".to_owned()])
                .map_err(|e| Error::internal("preparing the DTLS certificate", e))?,
        )
        .map_err(|e| Error::internal("generating the DTLS certificate", e))?;
        Ok(TransportSettings {
            certificate,
            srtp_profiles,
            candidates,
            estimator,
        })
    }
}

/// ICE credentials the engine chose for a participant (the ufrag routes its STUN).
pub(crate) struct IceCredentials {
    pub ufrag: String,
    pub pwd: String,
}

/// One m-line's sending side: what the SFU sends to this participant on it.
#[derive(Debug, Clone)]
pub(crate) struct SendLeg {
    pub kind: MediaKind,
    pub kind_index: u8,
    sender: RTCRtpSenderId,
    /// Our SSRC on this leg.
    pub ssrc: u32,
    /// The payload type this participant negotiated.
    pub payload_type: u8,
    /// RTP clock rate.
    pub clock_rate: u32,
}

/// A handle to an incoming track, for keyframe requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReceiverRef(RTCRtpReceiverId);

/// What the transport reports besides media.
#[derive(Debug)]
pub(crate) enum TransportEvent {
    /// A remote track (one SSRC; one simulcast layer) started.
    TrackOpened {
        receiver: ReceiverRef,
        ssrc: u32,
        rid: Option<String>,
        kind: MediaKind,
        kind_index: u8,
    },
    /// The connection state changed.
    State(ConnectionState),
    /// ICE failed (as opposed to DTLS).
    IceFailed,
}

/// Media and control read from the transport.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// An RTP packet, decrypted and parsed.
    Rtp(rtp::Packet),
    /// The participant asks for a keyframe of what it receives on our SSRC `media_ssrc`.
    KeyframeRequest { media_ssrc: u32 },
}

/// One participant's peer connection.
pub(crate) struct Transport {
    pc: RTCPeerConnection,
    /// Packets that got through SRTP into the interceptor chain (see [`WireTap`]).
    delivered: Arc<AtomicU64>,
    /// What the wire tap learned from RTCP.
    wire: Arc<Mutex<WireState>>,
    /// Retransmissions the participant asked for beyond its budget (see [`WireTap`]).
    nacks_refused: Arc<AtomicU64>,
    /// RTP that got through SRTP, and how much of it reached the engine (or was already
    /// counted as not reaching it): the stack drops RTP on SSRCs it cannot route without a
    /// word, and the difference is how the engine counts them.
    rtp_decrypted: Arc<AtomicU64>,
    rtp_surfaced: u64,
    legs: Vec<SendLeg>,
    mline_kinds: Vec<(String, MediaKind, u8)>,
    pending: VecDeque<Inbound>,
    /// Where rtc's ICE agent sends DTLS and SRTP: (remote, local) of its selected pair, as
    /// last seen on a transmit.
    ice_path: Option<(SocketAddr, SocketAddr)>,
    /// Where DTLS and SRTP go instead, after the engine moved the path (NAT rebinding; see
    /// [`Transport::move_path`]).
    path: Option<SocketAddr>,
}

impl Transport {
    /// Builds the peer connection for `offer` and returns it with the SDP answer. The
    /// m-lines whose mids are in `refused` are answered inactive: nothing is sent or received
    /// on them, and the client does not wait for anything.
    pub(crate) fn accept_offer(
        settings: &TransportSettings,
        offer_sdp: String,
        summary: &OfferSummary,
        refused: &[String],
        ice: &IceCredentials,
        now: Instant,
        mut next_ssrc: impl FnMut() -> u32,
    ) -> Result<(Transport, String), Error> {
        let (mut media, audio_codec, video_codec) = media_engine(summary)?;
        let delivered = Arc::new(AtomicU64::new(0));
        let nacks_refused = Arc::new(AtomicU64::new(0));
        let rtp_decrypted = Arc::new(AtomicU64::new(0));
        let wire = Arc::new(Mutex::new(WireState::new(DownlinkEstimator::new(
            settings.estimator,
        ))));
        let registry = Registry::new()
            .with(Slot::from(14_000), KeyframeRequestTap::default())
            // Wire-ward of every stage but congestion control: sees what SRTP let through,
            // and the sender reports as they leave.
            .with(
                Slot::from(1_500),
                WireTap::new(
                    delivered.clone(),
                    wire.clone(),
                    nacks_refused.clone(),
                    rtp_decrypted.clone(),
                ),
            );
        // NACK both ways, bounded: the retransmission buffer holds the last 128 packets of
        // each stream we send (about 0.8 s of 1.5 Mbit/s video; enough for a 300 ms RTT),
        // and we ask a publisher for a lost packet at most 10 times.
        for feedback in ["", "pli"] {
            media.register_feedback(
                RTCPFeedback {
                    typ: "nack".to_owned(),
                    parameter: feedback.to_owned(),
                },
                RtpCodecKind::Video,
            );
        }
        let registry = registry
            .with(
                Slot::NackResponder,
                interceptor::NackResponderBuilder::new()
                    .with_size(RETRANSMISSION_BUFFER)
                    .build(),
            )
            .with(
                Slot::NackGenerator,
                interceptor::NackGeneratorBuilder::new()
                    .with_max_nacks_per_packet(MAX_NACKS_PER_PACKET)
                    .build(),
            );
        let registry = configure_rtcp_reports(registry);
        let registry =
            configure_twcc(registry, &mut media).map_err(|e| Error::internal("twcc setup", e))?;

        let profiles = settings
            .srtp_profiles
            .iter()
            .map(|p| match p {
                SrtpProfile::AeadAes128Gcm => {
                    rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm
                }
                SrtpProfile::AeadAes256Gcm => {
                    rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm
                }
                SrtpProfile::Aes128CmHmacSha1_80 => {
                    rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80
                }
            })
            .collect();
        let setting_engine = SettingEngineBuilder::new()
            .with_lite(true)
            .with_ice_credentials(ice.ufrag.clone(), ice.pwd.clone())
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .with_srtp_protection_profiles(profiles)
            // Replay protection is off unless asked for (window 0). A window wide enough for
            // a video burst reordered on the way.
            .with_srtp_replay_protection_window(SRTP_REPLAY_WINDOW)
            .with_srtcp_replay_protection_window(SRTCP_REPLAY_WINDOW)
            .with_dtls_replay_protection_window(DTLS_REPLAY_WINDOW)
            .build();
        let config = RTCConfigurationBuilder::new()
            .with_bundle_policy(RTCBundlePolicy::MaxBundle)
            .with_rtcp_mux_policy(RTCRtcpMuxPolicy::Require)
            .with_certificates(vec![settings.certificate.clone()])
            .build();
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(config)
            .with_setting_engine(setting_engine)
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .build(now)
            .map_err(|e| Error::internal("building the peer connection", e))?;

        let offer = RTCSessionDescription::offer(offer_sdp)
            .map_err(|e| OfferError::Unparseable(e.to_string()))?;
        pc.set_remote_description(now, offer)
            .map_err(|e| OfferError::Rejected(e.to_string()))?;

        // One sending track per m-line, in m-line order: add_track binds each to the first
        // transceiver of its kind that has no sender yet, so binding is positional. Refused
        // m-lines get a track too (keeping the order) and are then set inactive.
        let mut pending_legs = Vec::with_capacity(summary.mlines.len());
        for mline in &summary.mlines {
            let (kind, codec) = match mline.kind {
                MediaKind::Audio => (RtpCodecKind::Audio, audio_codec.clone()),
                MediaKind::Video => (RtpCodecKind::Video, video_codec.clone()),
            };
            let Some(codec) = codec else { continue };
            let ssrc = next_ssrc();
            let track = rtc::media_stream::MediaStreamTrack::new(
                "shopcall".to_owned(),
                format!("{}-{}", mline.kind, mline.kind_index),
                format!("{}-{}", mline.kind, mline.kind_index),
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
            let sender = pc
                .add_track(track)
                .map_err(|e| Error::internal("adding a sending track", e))?;
            if !refused.contains(&mline.mid) {
                pending_legs.push((mline.kind, mline.kind_index, sender, ssrc, codec.clock_rate));
            }
        }
        if !refused.is_empty() {
            let ids: Vec<_> = pc.get_transceivers().collect();
            for id in ids {
                if let Some(mut t) = pc.rtp_transceiver(id)
                    && t.mid().as_ref().is_some_and(|m| refused.contains(m))
                {
                    t.set_direction(RTCRtpTransceiverDirection::Inactive);
                }
            }
        }

        for addr in &settings.candidates {
            add_host_candidate(&mut pc, *addr)?;
        }

        let answer = pc
            .create_answer(None)
            .map_err(|e| OfferError::Rejected(e.to_string()))?;
        pc.set_local_description(now, answer)
            .map_err(|e| Error::internal("setting the local description", e))?;
        let answer_sdp = pc
            .local_description()
            .map(|d| d.sdp)
            .ok_or_else(|| Error::internal("reading the answer", "no local description"))?;

        let mut legs = Vec::with_capacity(pending_legs.len());
        for (kind, kind_index, sender, ssrc, clock_rate) in pending_legs {
            let payload_type = pc
                .rtp_sender(sender)
                .and_then(|mut s| {
                    s.get_parameters()
                        .rtp_parameters
                        .codecs
                        .first()
                        .map(|c| c.payload_type)
                })
                .ok_or_else(|| {
                    Error::from(OfferError::Rejected(format!(
                        "no codec negotiated for the {kind} m-line {kind_index}"
                    )))
                })?;
            legs.push(SendLeg {
                kind,
                kind_index,
                sender,
                ssrc,
                payload_type,
                clock_rate,
            });
        }
        // The transport-wide sequence number extension, as negotiated: the wire tap reads it
        // from what leaves, to match the participant's feedback.
        let twcc_extension = legs.first().and_then(|leg| {
            pc.rtp_sender(leg.sender).and_then(|mut s| {
                s.get_parameters()
                    .rtp_parameters
                    .header_extensions
                    .iter()
                    .find(|h| h.uri == sdp::extmap::TRANSPORT_CC_URI)
                    .and_then(|h| u8::try_from(h.id).ok())
            })
        });
        if let Ok(mut w) = wire.lock() {
            w.twcc_extension = twcc_extension;
        }
        let mline_kinds = summary
            .mlines
            .iter()
            .map(|m| (m.mid.clone(), m.kind, m.kind_index))
            .collect();
        Ok((
            Transport {
                pc,
                delivered,
                wire,
                nacks_refused,
                rtp_decrypted,
                rtp_surfaced: 0,
                legs,
                mline_kinds,
                pending: VecDeque::new(),
                ice_path: None,
                path: None,
            },
            answer_sdp,
        ))
    }

    /// Applies a client's ICE-restart offer (new ICE credentials, same m-lines) and returns
    /// the answer. The SFU keeps its own ufrag and password (they route its STUN); the agent
    /// restarts, and the client's checks from its new address are verified as at first.
    pub(crate) fn restart_ice(&mut self, offer_sdp: String, now: Instant) -> Result<String, Error> {
        let offer = RTCSessionDescription::offer(offer_sdp)
            .map_err(|e| OfferError::Unparseable(e.to_string()))?;
        self.pc
            .set_remote_description(now, offer)
            .map_err(|e| OfferError::Rejected(e.to_string()))?;
        // The agent selects a pair afresh (the client's nomination); until then nothing is
        // sent but STUN, and there is no path to move.
        self.path = None;
        self.ice_path = None;
        let answer = self
            .pc
            .create_answer(None)
            .map_err(|e| OfferError::Rejected(e.to_string()))?;
        self.pc
            .set_local_description(now, answer)
            .map_err(|e| Error::internal("setting the restart answer", e))?;
        self.pc
            .local_description()
            .map(|d| d.sdp)
            .ok_or_else(|| Error::internal("reading the restart answer", "no local description"))
    }

    /// How many m-lines the negotiated offer had.
    pub(crate) fn mline_count(&self) -> usize {
        self.mline_kinds.len()
    }

    /// Whether the negotiated offer had an m-line `mid` of `kind`.
    pub(crate) fn has_mline(&self, mid: &str, kind: MediaKind) -> bool {
        self.mline_kinds
            .iter()
            .any(|(m, k, _)| m == mid && *k == kind)
    }

    /// The sending legs, one per m-line the call has a codec for.
    pub(crate) fn legs(&self) -> &[SendLeg] {
        &self.legs
    }

    /// Feeds one received datagram. `local` must be one of our host candidate addresses.
    /// For SRTP/SRTCP (`media`), fails when the stack dropped it (authentication, replay,
    /// unknown stream): the stack only logs those.
    pub(crate) fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: BytesMut,
        media: bool,
    ) -> Result<(), ()> {
        let before = self.delivered.load(Ordering::Relaxed);
        self.pc
            .handle_read(TaggedBytesMut {
                now,
                transport: TransportContext {
                    local_addr: local,
                    peer_addr: remote,
                    ecn: None,
                    transport_protocol: TransportProtocol::UDP,
                },
                message: data,
            })
            .map_err(|_| ())?;
        if media && self.delivered.load(Ordering::Relaxed) == before {
            return Err(());
        }
        Ok(())
    }

    /// Sends an RTP packet on `leg` (header already rewritten for this leg).
    pub(crate) fn send_rtp(
        &mut self,
        leg: usize,
        now: Instant,
        packet: rtp::Packet,
    ) -> Result<(), ()> {
        let sender = self.legs[leg].sender;
        match self.pc.rtp_sender(sender) {
            Some(mut s) => s.write_rtp(now, packet).map_err(|_| ()),
            None => Err(()),
        }
    }

    /// Asks the remote sender for a keyframe on `ssrc`.
    pub(crate) fn request_keyframe(&mut self, receiver: ReceiverRef, ssrc: u32, now: Instant) {
        if let Some(mut r) = self.pc.rtp_receiver(receiver.0) {
            let pli = PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc: ssrc,
            };
            if let Err(e) = r.write_rtcp(now, vec![Box::new(pli)]) {
                tracing::debug!(error = %e, ssrc, "sending PLI failed");
            }
        }
    }

    /// RTP packets the stack decrypted but dropped (an SSRC it could not route: undeclared,
    /// or on a refused m-line) since the last call.
    pub(crate) fn take_unrouted_rtp(&mut self) -> u64 {
        let decrypted = self.rtp_decrypted.load(Ordering::Relaxed);
        let unrouted = decrypted.saturating_sub(self.rtp_surfaced);
        self.rtp_surfaced = decrypted;
        unrouted
    }

    /// Retransmissions refused over budget since the last call.
    pub(crate) fn take_nacks_refused(&self) -> u64 {
        self.nacks_refused.swap(0, Ordering::Relaxed)
    }

    /// The participant's downlink estimate (`None` until feedback arrives).
    pub(crate) fn estimate(&self, now: Instant) -> Option<Estimate> {
        self.wire
            .lock()
            .ok()
            .and_then(|w| w.estimator.estimate(now))
    }

    /// Tells the remote sender of `ssrcs` (through `receiver`) not to send more than `bps`
    /// (REMB): the cap when the other participant's downlink cannot take what it sends.
    pub(crate) fn send_remb(
        &mut self,
        receiver: ReceiverRef,
        ssrcs: Vec<u32>,
        bps: u64,
        now: Instant,
    ) {
        if let Some(mut r) = self.pc.rtp_receiver(receiver.0) {
            let remb = ReceiverEstimatedMaximumBitrate {
                sender_ssrc: 0,
                bitrate: bps as f32,
                ssrcs,
            };
            if let Err(e) = r.write_rtcp(now, vec![Box::new(remb)]) {
                tracing::debug!(error = %e, "sending REMB failed");
            }
        }
    }

    /// Adds a trickled remote candidate (`a=candidate:` line or its value).
    pub(crate) fn add_remote_candidate(&mut self, candidate: &str) -> Result<(), Error> {
        let line = candidate.trim();
        let line = line.strip_prefix("a=").unwrap_or(line);
        if line.len() > 1024 {
            return Err(Error::InvalidCandidate("longer than 1024 bytes".to_owned()));
        }
        if !line.is_empty() && !line.starts_with("candidate:") {
            return Err(Error::InvalidCandidate(
                "expected an SDP candidate attribute (\"candidate:...\")".to_owned(),
            ));
        }
        self.pc
            .add_remote_candidate(RTCIceCandidateInit {
                candidate: line.to_owned(),
                ..Default::default()
            })
            .map_err(|e| Error::InvalidCandidate(e.to_string()))
    }

    /// Next RTP packet or keyframe request.
    pub(crate) fn poll_inbound(&mut self) -> Option<Inbound> {
        if let Some(i) = self.pending.pop_front() {
            return Some(i);
        }
        loop {
            let TaggedRTCMessage { message, .. } = self.pc.poll_read()?;
            match message {
                RTCMessage::RtpPacket(_, packet) => {
                    self.rtp_surfaced += 1;
                    return Some(Inbound::Rtp(packet));
                }
                RTCMessage::RtcpPacket(_, packets) => {
                    for p in &packets {
                        let any = p.as_any();
                        if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
                            self.pending.push_back(Inbound::KeyframeRequest {
                                media_ssrc: pli.media_ssrc,
                            });
                        } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
                            for entry in &fir.fir {
                                self.pending.push_back(Inbound::KeyframeRequest {
                                    media_ssrc: entry.ssrc,
                                });
                            }
                        }
                    }
                    if let Some(i) = self.pending.pop_front() {
                        return Some(i);
                    }
                }
                _ => {}
            }
        }
    }

    /// Next state change or track opening.
    pub(crate) fn poll_event(&mut self) -> Option<TransportEvent> {
        loop {
            match self.pc.poll_event()? {
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) => {
                    let state = match s {
                        RTCPeerConnectionState::New => ConnectionState::New,
                        RTCPeerConnectionState::Connecting => ConnectionState::Connecting,
                        RTCPeerConnectionState::Connected => ConnectionState::Connected,
                        RTCPeerConnectionState::Disconnected => ConnectionState::Disconnected,
                        RTCPeerConnectionState::Failed => ConnectionState::Failed,
                        RTCPeerConnectionState::Closed => ConnectionState::Closed,
                        _ => continue,
                    };
                    return Some(TransportEvent::State(state));
                }
                RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(
                    RTCIceConnectionState::Failed,
                ) => return Some(TransportEvent::IceFailed),
                RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                    let Some((kind, kind_index)) = self.mline_of_receiver(init.receiver_id) else {
                        continue;
                    };
                    return Some(TransportEvent::TrackOpened {
                        receiver: ReceiverRef(init.receiver_id),
                        ssrc: init.ssrc,
                        rid: init.rid.map(|r| r.to_string()),
                        kind,
                        kind_index,
                    });
                }
                _ => {}
            }
        }
    }

    fn mline_of_receiver(&mut self, receiver: RTCRtpReceiverId) -> Option<(MediaKind, u8)> {
        let ids: Vec<_> = self.pc.get_transceivers().collect();
        for id in ids {
            let t = self.pc.rtp_transceiver(id)?;
            if t.receiver() == Some(receiver) {
                let mid = t.mid().clone()?;
                return self
                    .mline_kinds
                    .iter()
                    .find(|(m, _, _)| *m == mid)
                    .map(|(_, k, i)| (*k, *i));
            }
        }
        None
    }

    /// Next datagram to send: (destination, source, bytes).
    ///
    /// STUN goes where the ICE agent addressed it (a response to the address its request came
    /// from). DTLS, SRTP and SRTCP follow the agent's selected pair, or the moved path.
    pub(crate) fn poll_transmit(&mut self) -> Option<(SocketAddr, SocketAddr, BytesMut)> {
        let m = self.pc.poll_write()?;
        let (mut destination, local) = (m.transport.peer_addr, m.transport.local_addr);
        if crate::demux::classify(&m.message) != Some(crate::demux::DatagramKind::Stun) {
            self.ice_path = Some((destination, local));
            if let Some(path) = self.path {
                destination = path;
            }
        }
        Some((destination, local, m.message))
    }

    /// The remote address DTLS and SRTP go to, once the agent selected a pair.
    pub(crate) fn remote_path(&self) -> Option<SocketAddr> {
        self.path.or(self.ice_path.map(|(remote, _)| remote))
    }

    /// Sends DTLS and SRTP to `to` from now on: an address the engine saw pass an ICE check
    /// (its NAT rebound). rtc's ICE-lite agent cannot switch its selected pair once it has
    /// one (it takes the first nominated pair and keeps it until an ICE restart), and DTLS
    /// and SRTP above it do not depend on addresses, so the destination is rewritten here.
    pub(crate) fn move_path(&mut self, to: SocketAddr, now: Instant) {
        let selected = self.ice_path.map(|(remote, _)| remote);
        self.path = (selected != Some(to)).then_some(to);
        self.refresh_path(now);
    }

    /// Tells the agent that its selected pair is alive, after a check on the moved path
    /// passed. Its liveness timers (disconnected after 5 s, failed after 30 s, then every
    /// candidate is dropped) only count STUN from the selected pair's address, which the
    /// client no longer uses. A binding indication (no attributes, never on the wire) from
    /// that address is the one input that refreshes it and does nothing else.
    pub(crate) fn refresh_path(&mut self, now: Instant) {
        let (Some(path), Some((remote, local))) = (self.path, self.ice_path) else {
            return;
        };
        if path == remote {
            return;
        }
        let mut indication = BytesMut::with_capacity(20);
        // Binding indication (0x0011), no body, magic cookie, a zero transaction id.
        indication.extend_from_slice(&[0x00, 0x11, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42]);
        indication.extend_from_slice(&[0; 12]);
        if let Err(e) = self.pc.handle_read(TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: local,
                peer_addr: remote,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: indication,
        }) {
            tracing::debug!(error = %e, "refreshing the selected ICE pair");
        }
    }

    /// The transport's next deadline.
    pub(crate) fn poll_timeout(&mut self) -> Option<Instant> {
        self.pc.poll_timeout()
    }

    /// Runs the transport's timers.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if let Err(e) = self.pc.handle_timeout(now) {
            tracing::debug!(error = %e, "transport timer");
        }
    }

    /// Closes the connection (queues DTLS close_notify; drain `poll_transmit` after).
    pub(crate) fn close(&mut self) {
        if let Err(e) = self.pc.close() {
            tracing::debug!(error = %e, "closing transport");
        }
    }

    /// Link quality from the RTCP the two sides exchanged: (uplink, downlink).
    ///
    /// Uplink (participant to SFU): from the SFU's own receive statistics. Downlink: from the
    /// participant's reception reports about our streams, read by the wire tap. Jitter comes
    /// in RTP timestamp units and is converted with each stream's clock rate; the RTT is
    /// measured from our sender reports and is a property of the path (both directions).
    pub(crate) fn link_quality(&mut self, now: Instant) -> (LinkQuality, LinkQuality) {
        let report = self.pc.get_stats(now, StatsSelector::None);
        let mut up = LinkQuality::default();
        for entry in report.iter() {
            if let RTCStatsReportEntry::InboundRtp(s) = entry {
                let r = &s.received_rtp_stream_stats;
                up.packets_lost += r.packets_lost;
                let clock = clock_rate(r.rtp_stream_stats.kind);
                let j = ticks(r.jitter, clock);
                up.jitter = Some(up.jitter.map_or(j, |o| o.max(j)));
            }
        }
        let mut down = LinkQuality::default();
        if let Ok(wire) = self.wire.lock() {
            down.rtt = wire.rtt;
            for r in &wire.reports {
                let Some(leg) = self.legs.iter().find(|l| l.ssrc == r.ssrc) else {
                    continue;
                };
                down.packets_lost += i64::from(r.total_lost);
                let fraction = f64::from(r.fraction_lost) / 256.0;
                down.fraction_lost = Some(down.fraction_lost.map_or(fraction, |o| o.max(fraction)));
                let j = ticks(f64::from(r.jitter), leg.clock_rate);
                down.jitter = Some(down.jitter.map_or(j, |o| o.max(j)));
            }
        }
        up.rtt = down.rtt;
        (up, down)
    }
}

fn clock_rate(kind: RtpCodecKind) -> u32 {
    match kind {
        RtpCodecKind::Audio => 48_000,
        _ => 90_000,
    }
}

/// RTP timestamp units to time.
fn ticks(units: f64, clock_rate: u32) -> std::time::Duration {
    if !units.is_finite() || units <= 0.0 || clock_rate == 0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::from_secs_f64(units / f64::from(clock_rate))
}

/// Builds the media engine for one participant: exactly the call's codecs, with the payload
/// types this participant offered, so the answer can only agree on what the call forwards.
fn media_engine(
    summary: &OfferSummary,
) -> Result<(MediaEngine, Option<RTCRtpCodec>, Option<RTCRtpCodec>), Error> {
    let mut media = MediaEngine::default();
    let video_feedback = || {
        vec![
            RTCPFeedback {
                typ: "goog-remb".to_owned(),
                parameter: String::new(),
            },
            RTCPFeedback {
                typ: "ccm".to_owned(),
                parameter: "fir".to_owned(),
            },
        ]
    };
    let audio = match &summary.audio {
        Some(LegCodec { payload_type, fmtp }) => {
            let codec = RTCRtpCodec {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                clock_rate: 48_000,
                channels: 2,
                sdp_fmtp_line: fmtp.clone(),
                rtcp_feedback: vec![],
            };
            media
                .register_codec(
                    RTCRtpCodecParameters {
                        rtp_codec: codec.clone(),
                        payload_type: *payload_type,
                    },
                    RtpCodecKind::Audio,
                )
                .map_err(|e| Error::internal("registering opus", e))?;
            Some(codec)
        }
        None => None,
    };
    let video = match &summary.video {
        Some((call, leg)) => {
            let codec = RTCRtpCodec {
                mime_type: call.codec.mime_type().to_owned(),
                clock_rate: 90_000,
                channels: 0,
                sdp_fmtp_line: leg.fmtp.clone(),
                rtcp_feedback: video_feedback(),
            };
            media
                .register_codec(
                    RTCRtpCodecParameters {
                        rtp_codec: codec.clone(),
                        payload_type: leg.payload_type,
                    },
                    RtpCodecKind::Video,
                )
                .map_err(|e| Error::internal("registering the video codec", e))?;
            Some(codec)
        }
        None => None,
    };
    for (uri, kind) in [
        (sdp::extmap::SDES_MID_URI, RtpCodecKind::Audio),
        (sdp::extmap::SDES_MID_URI, RtpCodecKind::Video),
        (AUDIO_LEVEL_URI, RtpCodecKind::Audio),
    ] {
        media
            .register_header_extension(
                RTCRtpHeaderExtensionCapability {
                    uri: uri.to_owned(),
                },
                kind,
                None,
            )
            .map_err(|e| Error::internal("registering a header extension", e))?;
    }
    configure_simulcast_extension_headers(&mut media)
        .map_err(|e| Error::internal("registering simulcast header extensions", e))?;
    Ok((media, audio, video))
}

/// Adds a UDP host candidate for `addr` to `pc`: the server's announced addresses, and the
/// simulated and fuzzing clients' own.
pub(crate) fn add_host_candidate(
    pc: &mut RTCPeerConnection,
    addr: std::net::SocketAddr,
) -> Result<(), Error> {
    let candidate = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: addr.ip().to_string(),
            port: addr.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()
    .map_err(|e| Error::internal("creating a host candidate", e))?;
    let init = RTCIceCandidate::from(&candidate)
        .to_json()
        .map_err(|e| Error::internal("encoding a host candidate", e))?;
    pc.add_local_candidate(init)
        .map_err(|e| Error::internal("adding a host candidate", e))
}
