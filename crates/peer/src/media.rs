//! Output: one sending m-line of a [`TestPeer`](crate::TestPeer) (audio, camera or screen), its
//! RTP state and the background loops that publish synthetic media and answer keyframe
//! requests.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rtc::rtp::header::Header;
use rtc::rtp::packet::Packet;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::rtp_transceiver::{RtpSender, RtpTransceiver};

use crate::config::MediaPlan;
use crate::keyframe_tap::keyframe_request_targets;
use crate::payload::{self, Block, PayloadFormat};
use crate::peer::Shared;
use crate::simulcast::SimulcastLayer;

/// Media kind of an m-line, as counted in [`PeerStats`](crate::PeerStats).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Audio,
    Video,
}

/// What negotiation settled for an output: the payload type to stamp and the framing to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Negotiated {
    pub(crate) payload_type: u8,
    pub(crate) format: PayloadFormat,
}

/// RTP numbering of one output; survives stop/start of media.
struct SendState {
    seq: u16,
    ts: u32,
    counter: u64,
    last_keyframe: Option<Instant>,
}

/// One sending m-line.
pub(crate) struct Output {
    pub(crate) kind: Kind,
    /// "audio", "video" or "screen".
    pub(crate) label: &'static str,
    pub(crate) ssrc: u32,
    /// Goes into every [`Block`] this output sends.
    pub(crate) tag: u32,
    pub(crate) track: Arc<TrackLocalStaticRTP>,
    pub(crate) sender: Arc<dyn RtpSender>,
    pub(crate) transceiver: Arc<dyn RtpTransceiver>,
    /// Set by a PLI/FIR for our SSRC; the next video frame is a keyframe.
    pub(crate) keyframe_requested: AtomicBool,
    negotiated: Mutex<Option<Negotiated>>,
    state: Mutex<SendState>,
    /// The simulcast layer this output sends (one output per layer, sharing the track).
    pub(crate) layer: Option<SimulcastLayer>,
    /// Header extensions stamped on every packet (`(id, value)`: mid and rid for a layer).
    header_extensions: Mutex<Vec<(u8, Bytes)>>,
    /// This output's own counters (the per-kind ones add all outputs up).
    pub(crate) counters: OutputCounters,
}

/// Counters of one output, for [`LayerStats`](crate::LayerStats).
#[derive(Default)]
pub(crate) struct OutputCounters {
    pub(crate) packets: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) frames: AtomicU64,
    pub(crate) keyframes: AtomicU64,
    pub(crate) keyframe_requests: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; recover the data if something ever does.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Wall clock, microseconds since `UNIX_EPOCH` (0 if the clock is before it).
pub(crate) fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Output {
    pub(crate) fn new(
        kind: Kind,
        label: &'static str,
        ssrc: u32,
        tag: u32,
        track: Arc<TrackLocalStaticRTP>,
        sender: Arc<dyn RtpSender>,
        transceiver: Arc<dyn RtpTransceiver>,
    ) -> Self {
        Self {
            kind,
            label,
            ssrc,
            tag,
            track,
            sender,
            transceiver,
            keyframe_requested: AtomicBool::new(false),
            negotiated: Mutex::new(None),
            state: Mutex::new(SendState {
                seq: rand::random(),
                ts: rand::random(),
                counter: 0,
                last_keyframe: None,
            }),
            layer: None,
            header_extensions: Mutex::new(Vec::new()),
            counters: OutputCounters::default(),
        }
    }

    /// The same output, sending simulcast `layer`.
    pub(crate) fn with_layer(mut self, layer: SimulcastLayer) -> Self {
        self.layer = Some(layer);
        self
    }

    /// Header extensions to stamp on every packet from now on.
    pub(crate) fn set_header_extensions(&self, extensions: Vec<(u8, Bytes)>) {
        *lock(&self.header_extensions) = extensions;
    }

    pub(crate) fn negotiated(&self) -> Option<Negotiated> {
        *lock(&self.negotiated)
    }

    pub(crate) fn set_negotiated(&self, negotiated: Option<Negotiated>) {
        *lock(&self.negotiated) = negotiated;
    }

    fn header(&self, neg: Negotiated, seq: u16, ts: u32, marker: bool) -> Header {
        let mut header = Header {
            version: 2,
            marker,
            payload_type: neg.payload_type,
            sequence_number: seq,
            timestamp: ts,
            ssrc: self.ssrc,
            ..Default::default()
        };
        for (id, value) in lock(&self.header_extensions).iter() {
            // Ids and values come from negotiation and are valid one-byte extensions.
            let _ = header.set_extension(*id, value.clone());
        }
        header
    }

    /// The next audio packet.
    fn next_audio_packet(&self, neg: Negotiated, plan: &MediaPlan, sent_us: u64) -> Packet {
        let ts_step = plan.audio_ts_step();
        let mut st = lock(&self.state);
        let counter = st.counter;
        let block = Block {
            tag: self.tag,
            counter,
            sent_us,
        };
        let body = payload::audio_payload(&block, plan.audio_payload_len(counter));
        // Marker: first packet of a talk spurt; we only ever have one spurt.
        let header = self.header(neg, st.seq, st.ts, counter == 0);
        st.counter += 1;
        st.seq = st.seq.wrapping_add(1);
        st.ts = st.ts.wrapping_add(ts_step);
        Packet {
            header,
            payload: Bytes::from(body),
        }
    }

    /// The packets of the next video frame, and whether it is a keyframe.
    fn next_video_frame(
        &self,
        neg: Negotiated,
        plan: &MediaPlan,
        now: Instant,
        sent_us: u64,
    ) -> (Vec<Packet>, bool) {
        let forced = self.keyframe_requested.swap(false, Ordering::AcqRel);
        let mut st = lock(&self.state);
        let periodic = st
            .last_keyframe
            .is_none_or(|at| now.saturating_duration_since(at) >= plan.keyframe_interval);
        let keyframe = forced || periodic;
        if keyframe {
            st.last_keyframe = Some(now);
        }
        let frame_len = match (self.layer, keyframe) {
            (Some(layer), true) => layer.keyframe_bytes(plan),
            (Some(layer), false) => layer.frame_bytes(plan),
            (None, true) => plan.keyframe_bytes(),
            (None, false) => plan.video_frame_bytes(),
        };
        let size = self
            .layer
            .map_or((payload::VP8_WIDTH, payload::VP8_HEIGHT), |l| {
                (l.width, l.height)
            });
        let tag = self.tag;
        let mut counter = st.counter;
        let bodies = payload::video_frame_payloads_sized(
            neg.format,
            frame_len,
            keyframe,
            plan.max_payload_bytes,
            size,
            || {
                let block = Block {
                    tag,
                    counter,
                    sent_us,
                };
                counter += 1;
                block
            },
        );
        st.counter = counter;
        let last = bodies.len().saturating_sub(1);
        let ts = st.ts;
        let packets = bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| {
                let seq = st.seq;
                st.seq = st.seq.wrapping_add(1);
                Packet {
                    header: self.header(neg, seq, ts, i == last),
                    payload: Bytes::from(body),
                }
            })
            .collect();
        st.ts = st.ts.wrapping_add(plan.video_ts_step());
        (packets, keyframe)
    }
}

/// Writes one packet and counts it if the library accepted it.
async fn send(out: &Output, shared: &Shared, packet: Packet) {
    let len = packet.payload.len() as u64;
    match out.track.write_rtp(packet).await {
        Ok(()) => {
            let c = shared.counters(out.kind);
            c.packets_sent.fetch_add(1, Ordering::Relaxed);
            c.bytes_sent.fetch_add(len, Ordering::Relaxed);
            out.counters.packets.fetch_add(1, Ordering::Relaxed);
            out.counters.bytes.fetch_add(len, Ordering::Relaxed);
        }
        Err(err) => tracing::debug!(peer = %shared.name, out = out.label, %err, "write_rtp failed"),
    }
}

/// Publishes audio on `outputs` every `plan.audio_period()` until `stop` changes.
pub(crate) async fn audio_loop(
    outputs: Vec<Arc<Output>>,
    shared: Arc<Shared>,
    plan: MediaPlan,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(plan.audio_period());
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => break,
        }
        let sent_us = unix_micros();
        for out in &outputs {
            let Some(neg) = out.negotiated() else {
                continue;
            };
            let packet = out.next_audio_packet(neg, &plan, sent_us);
            send(out, &shared, packet).await;
            shared
                .counters(out.kind)
                .frames_sent
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Publishes video frames on `outputs` every `plan.video_period()` until `stop` changes.
pub(crate) async fn video_loop(
    outputs: Vec<Arc<Output>>,
    shared: Arc<Shared>,
    plan: MediaPlan,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(plan.video_period());
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => break,
        }
        let now = Instant::now();
        let sent_us = unix_micros();
        for out in &outputs {
            let Some(neg) = out.negotiated() else {
                continue;
            };
            let (packets, keyframe) = out.next_video_frame(neg, &plan, now, sent_us);
            for packet in packets {
                send(out, &shared, packet).await;
            }
            let c = shared.counters(out.kind);
            c.frames_sent.fetch_add(1, Ordering::Relaxed);
            out.counters.frames.fetch_add(1, Ordering::Relaxed);
            if keyframe {
                c.keyframes_sent.fetch_add(1, Ordering::Relaxed);
                out.counters.keyframes.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Reads the RTCP the remote sent about `own` (only PLI/FIR get this far, see
/// [`keyframe_tap`](crate::keyframe_tap)) and turns keyframe requests into counts and forced
/// keyframes. Ends when the peer connection closes.
///
/// A request is matched by the SSRC it names, not by the track it was routed to, so a compound
/// packet asking several of our streams reaches each of them.
pub(crate) async fn feedback_loop(
    own: Arc<Output>,
    outputs: Arc<[Arc<Output>]>,
    shared: Arc<Shared>,
) {
    while let Some(event) = own.track.poll().await {
        let TrackLocalEvent::OnRtcpPacket(packets) = event else {
            continue;
        };
        for packet in &packets {
            for ssrc in keyframe_request_targets(packet.as_ref()) {
                let Some(target) = outputs.iter().find(|o| o.ssrc == ssrc) else {
                    tracing::debug!(peer = %shared.name, ssrc, "keyframe request for an unknown SSRC");
                    continue;
                };
                shared
                    .counters(target.kind)
                    .plis_received
                    .fetch_add(1, Ordering::Relaxed);
                target
                    .counters
                    .keyframe_requests
                    .fetch_add(1, Ordering::Relaxed);
                if target.kind == Kind::Video {
                    target.keyframe_requested.store(true, Ordering::Release);
                }
            }
        }
    }
}
