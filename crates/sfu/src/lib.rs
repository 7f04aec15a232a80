//! # shopcall SFU
//!
//! The media server core of shopcall: one-to-one WebRTC calls between a merchant and a
//! customer, forwarded (never mixed, never transcoded) through one UDP port.
//!
//! ## Two ways in
//!
//! * [`SfuHandle`] — the batteries-included way. [`SfuHandle::start`] binds the media socket
//!   and spawns a tokio task that owns everything; the handle's async methods create calls,
//!   join participants (SDP offer in, SDP answer out), end calls, and read statistics;
//!   [`SfuHandle::subscribe`] streams [`Event`]s.
//! * [`Engine`] — the sans-IO core, for embedders who own their sockets and clock. Nothing in
//!   it performs I/O or reads a clock; every method that needs the time takes `now`.
//!
//! ## The loop (what the driver does, and what an embedder of [`Engine`] must do)
//!
//! 1. Feed input: [`Engine::handle_datagram`] for each datagram from the media socket, or a
//!    request such as [`Engine::join`], or [`Engine::handle_timeout`] when the deadline passed.
//! 2. Drain output: call [`Engine::poll_transmit`] until `None` and send each datagram; call
//!    [`Engine::poll_recorded`] until `None` and hand each output to the recording writer
//!    (see [`recording`]); call [`Engine::poll_event`] until `None`.
//! 3. Wait for the next datagram, request, or [`Engine::poll_timeout`], and go to 1.
//!
//! Skipping step 2 after an input leaves packets queued: always drain.
//!
//! ## Glossary
//!
//! * **Call** — two participants (one merchant, one customer) and a lifecycle.
//! * **Participant** — one role, one WebRTC peer connection (its **Transport**).
//! * **Receiver** — a track coming in from a participant (one SSRC).
//! * **DownTrack** — that track going out to the other participant, on the matching m-line.
//! * **Forwarder** — the gate on a DownTrack: policy grant, selected layer, keyframe.
//! * **Munger** — rewrites SSRC, sequence number and timestamp so each leg is one
//!   continuous stream.
//!
//! ## Transport
//!
//! ICE-lite on the server side (the client runs full ICE and nominates), DTLS-SRTP with the
//! AEAD AES-GCM profiles preferred and AES-CM kept for compatibility, BUNDLE and rtcp-mux
//! required, one UDP socket for everyone, demultiplexed by ICE ufrag and then by remote
//! address. Each participant's offer should carry sendrecv audio and video m-lines (and
//! optionally a second video m-line for a screen): the other participant's media is sent back
//! on those same m-lines with the SFU's own SSRCs, so nobody renegotiates when the other side
//! arrives or leaves.
//!
//! ## Codecs
//!
//! Opus for audio. For video, the first participant with video fixes the call's codec: the
//! first of [`SfuConfig::video_codecs`] (VP8, VP9, H.264 by default) its offer contains. The
//! second participant must offer the same codec (every browser offers VP8), and each answer
//! carries only that codec, so both legs agree and nothing is transcoded.
//!
//! ## Trust boundary
//!
//! shopcall trusts the role the signaling tier assigns at Join: the signaling tier
//! authenticates users. The SFU enforces what may be forwarded by the negotiated media *kind*
//! of each m-line, never by what a client says about its source.

#![warn(missing_docs)]

pub mod bwe;
pub mod call;
pub mod config;
pub mod demux;
mod driver;
pub mod engine;
pub mod error;
pub mod event;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod ids;
pub mod media;
pub mod offer;
mod participant;
pub mod recording;
pub mod stats;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod transport;

pub use call::lifecycle::{CallLimits, CallLimitsOverride, LifecycleError};
pub use call::{CallOptions, CreatedCall};
pub use config::{BandwidthConfig, ConfigError, SfuConfig, SrtpProfile, VideoCodec};
pub use driver::{SfuHandle, StartError};
pub use engine::{DeclaredSource, Engine, JoinAnswer, JoinRequest, Transmit};
pub use error::{Error, OfferError};
pub use event::{CallState, ConnectionState, EndReason, Event, LeaveReason, PauseReason};
pub use ids::{CallId, ParseIdError, ParticipantId};
/// The policy crate, re-exported: profiles, sources, grants, eligibility.
pub use policy;
pub use policy::{MediaKind, Role};
pub use stats::{
    CallRecord, CallStats, Counter, DirectionQuality, DropCounters, DropReason, EngineMetrics,
    KindCounters, LinkQuality, ParticipantStats,
};
