//! shopcall-peer: a WebRTC *client* peer for shopcall's end-to-end tests, the in-process
//! embedding example and the load tester.
//!
//! A [`TestPeer`] is one peer connection on the async `webrtc` 0.21 crate, bound to one UDP
//! socket on loopback, with mDNS disabled and no STUN/TURN servers. It talks to the shopcall SFU
//! the way a browser would: a non-trickle offer with sendrecv m-lines (audio, camera, optionally
//! screen), BUNDLE and rtcp-mux, DTLS-SRTP. It then
//!
//! 1. publishes synthetic media ([`TestPeer::start_media`], shaped by a [`MediaPlan`]): Opus-like
//!    audio and VP8- or H.264-framed video with real keyframe signalling;
//! 2. verifies every payload it receives (each carries a checksummed [`payload::Block`] with a
//!    per-stream counter and a send timestamp), so a test can tell forwarded-intact from
//!    corrupted and measure one-way latency;
//! 3. answers keyframe requests (RTCP PLI/FIR for its own SSRCs) with a keyframe on the next
//!    frame, and can send PLIs itself ([`TestPeer::send_pli`]);
//! 4. counts all of it in atomics that [`TestPeer::stats`] snapshots into [`PeerStats`];
//! 5. with [`PeerConfig::simulcast`], publishes the camera as three rid layers like Chrome
//!    ([`SIMULCAST_LAYERS`]: 320x180, 640x360, 1280x720; per-layer counts in
//!    [`PeerStats::simulcast_layers`]);
//! 6. emulates a video decoder per received stream ([`ReceivedVideo`] in
//!    [`PeerStats::received_video`]): frames decoded or lost after NACK's chance
//!    ([`NACK_WAIT`]), freezes behind a jitter buffer, the resolution of the last keyframe
//!    (which simulcast layer arrives) and the bitrate over the last second; with
//!    [`PeerConfig::pli_on_loss`] it asks for a keyframe when it cannot decode, as a
//!    browser does. [`TestPeer::audio_received_between`] gives exact audio delivery ratios.
//!
//! # A call through the SFU
//!
//! ```no_run
//! # async fn demo(answer_from_sfu: impl Fn(&str) -> String) -> anyhow::Result<()> {
//! use shopcall_peer::{MediaPlan, PeerConfig, TestPeer};
//! use std::time::Duration;
//!
//! let merchant = TestPeer::new(PeerConfig::named("merchant")).await?;
//! let offer = merchant.create_offer().await?;
//! merchant.set_answer(&answer_from_sfu(&offer)).await?;
//! merchant.wait_connected(Duration::from_secs(5)).await?;
//! merchant.start_media(MediaPlan::default());
//! // ... the customer joins the same way; later:
//! let stats = merchant.stats();
//! assert_eq!(stats.video.corrupt, 0);
//! merchant.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Keyframe requests on webrtc 0.21
//!
//! Inbound RTCP is consumed by the interceptor chain unless an interceptor marks it
//! `DeliverToApplication`; the peer adds one that marks only PLI and FIR (`keyframe_tap.rs`
//! explains the path through the library). Such requests then surface on the *sending* track via
//! `TrackLocal::poll` as `TrackLocalEvent::OnRtcpPacket`.
//!
//! # Cost
//!
//! Per peer: the library's driver task, one task per media kind while media runs (tokio
//! intervals, missed ticks skipped rather than bursted), one receive task per remote track and
//! one feedback task per sending track, mostly idle. No GCC or pacer is configured.

#![warn(missing_docs)]

mod config;
mod decoder;
mod keyframe_tap;
mod media;
pub mod payload;
mod peer;
mod rogue_ssrc;
mod simulcast;
mod stats;

pub use config::{MediaPlan, PeerConfig, VideoCodec};
pub use decoder::NACK_WAIT;
pub use peer::TestPeer;
pub use simulcast::{SIMULCAST_LAYERS, SimulcastLayer};
pub use stats::{
    KindStats, LatencySummary, LayerStats, PeerStats, RTCPeerConnectionState, ReceivedVideo,
};
