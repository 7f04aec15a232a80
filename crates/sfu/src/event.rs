//! Events: what happened inside the engine, for the embedder to act on.
//!
//! The engine never calls back; it queues [`Event`]s that the caller drains with
//! [`Engine::poll_event`](crate::Engine::poll_event) (or receives from
//! [`SfuHandle::subscribe`](crate::SfuHandle::subscribe)).

use std::time::Duration;

use policy::{Lens, Role};

use crate::ids::{CallId, ParticipantId};
use crate::recording::{RecordingId, RecordingStopReason, TrackPlan};
use crate::stats::CallRecord;

/// Something that happened in the engine.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A call was created: it rings until the callee answers.
    CallCreated {
        /// The call.
        call: CallId,
        /// Who started it.
        initiator: Role,
    },
    /// The callee answered (explicitly, or by joining).
    CallAnswered {
        /// The call.
        call: CallId,
        /// Time from creation to the answer.
        answer_latency: Duration,
    },
    /// A participant joined (its SDP answer was produced); media flows once it connects.
    ParticipantJoined {
        /// The call.
        call: CallId,
        /// The participant.
        participant: ParticipantId,
        /// Its role.
        role: Role,
    },
    /// A participant's transport changed state.
    ConnectionStateChanged {
        /// The call.
        call: CallId,
        /// The participant.
        participant: ParticipantId,
        /// The new state.
        state: ConnectionState,
    },
    /// A participant connected for the first time: ICE and DTLS are done, media can flow.
    ParticipantConnected {
        /// The call.
        call: CallId,
        /// The participant.
        participant: ParticipantId,
        /// Time from its Join to connected.
        join_latency: Duration,
    },
    /// Both participants are connected: the call is live.
    CallConnected {
        /// The call.
        call: CallId,
    },
    /// A participant's camera was turned on or off (by its owner, or because it left).
    CameraChanged {
        /// The call.
        call: CallId,
        /// Whose camera.
        role: Role,
        /// The lens now on, or `None` when off.
        lens: Option<Lens>,
    },
    /// Video to `participant` is paused: its downlink cannot carry video next to the audio.
    /// Its client can show "video paused for weak network".
    VideoPaused {
        /// The call.
        call: CallId,
        /// The participant whose incoming video paused.
        participant: ParticipantId,
        /// Why.
        reason: PauseReason,
    },
    /// Video to `participant` resumed.
    VideoResumed {
        /// The call.
        call: CallId,
        /// The participant whose incoming video resumed.
        participant: ParticipantId,
    },
    /// The simulcast layer forwarded to `participant` changed.
    LayerChanged {
        /// The call.
        call: CallId,
        /// The receiving participant.
        participant: ParticipantId,
        /// The layer's rid (`None` for a single-layer stream).
        rid: Option<String>,
        /// The layer's measured bitrate.
        bitrate_bps: u64,
    },
    /// Periodic quality of one participant (rate limited by
    /// [`BandwidthConfig::quality_interval`](crate::config::BandwidthConfig)).
    Quality {
        /// The call.
        call: CallId,
        /// The participant.
        participant: ParticipantId,
        /// Its statistics now.
        stats: Box<crate::stats::ParticipantStats>,
    },
    /// One side asks the other to turn its camera on. Nothing changes until the owner does;
    /// the signaling tier shows the request to the owner's client.
    CameraRequested {
        /// The call.
        call: CallId,
        /// Who asks.
        by: Role,
        /// Whose camera.
        target: Role,
    },
    /// A participant gave or withdrew consent to being recorded. While a recording runs,
    /// withdrawn consent stops the recording of that participant's media at its next packet.
    RecordingConsentChanged {
        /// The call.
        call: CallId,
        /// Whose consent.
        role: Role,
        /// Given (`true`) or withdrawn.
        given: bool,
    },
    /// A recording of the call started: both clients should show a recording indicator.
    RecordingStarted {
        /// The call.
        call: CallId,
        /// The recording.
        recording: RecordingId,
        /// Its file, when the driver writes one.
        file: Option<std::path::PathBuf>,
        /// The tracks it may hold, with their codecs (a track stays empty while its media
        /// is not granted).
        tracks: Vec<TrackPlan>,
    },
    /// A recording of the call stopped (requested, consent withdrawn, call ended, or the
    /// file could not be written: the call goes on).
    RecordingStopped {
        /// The call.
        call: CallId,
        /// The recording.
        recording: RecordingId,
        /// Why.
        reason: RecordingStopReason,
        /// How long it ran.
        duration: Duration,
    },
    /// A participant left the call.
    ParticipantLeft {
        /// The call.
        call: CallId,
        /// The participant.
        participant: ParticipantId,
        /// Its role.
        role: Role,
        /// Why.
        reason: LeaveReason,
    },
    /// The call ended. This is the last event for the call; its id is forgotten after it.
    CallEnded {
        /// The call.
        call: CallId,
        /// Why it ended.
        reason: EndReason,
        /// What happened during the call.
        record: Box<CallRecord>,
    },
}

impl Event {
    /// The call the event belongs to.
    pub fn call(&self) -> CallId {
        match self {
            Event::CallCreated { call, .. }
            | Event::CallAnswered { call, .. }
            | Event::CameraChanged { call, .. }
            | Event::CameraRequested { call, .. }
            | Event::RecordingConsentChanged { call, .. }
            | Event::RecordingStarted { call, .. }
            | Event::RecordingStopped { call, .. }
            | Event::VideoPaused { call, .. }
            | Event::VideoResumed { call, .. }
            | Event::LayerChanged { call, .. }
            | Event::Quality { call, .. }
            | Event::ParticipantJoined { call, .. }
            | Event::ConnectionStateChanged { call, .. }
            | Event::ParticipantConnected { call, .. }
            | Event::CallConnected { call }
            | Event::ParticipantLeft { call, .. }
            | Event::CallEnded { call, .. } => *call,
        }
    }
}

/// Why video to a participant is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PauseReason {
    /// The downlink estimate cannot carry the lowest video layer next to the audio.
    WeakNetwork,
}

impl PauseReason {
    /// Snake-case name for logs, metrics and the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            PauseReason::WeakNetwork => "weak_network",
        }
    }
}

/// The state of a participant's transport (ICE + DTLS), as the engine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Joined; waiting for the client's ICE checks and DTLS handshake.
    New,
    /// ICE or DTLS in progress.
    Connecting,
    /// Media can flow.
    Connected,
    /// Connectivity was lost; it may come back.
    Disconnected,
    /// The transport failed for good.
    Failed,
    /// The transport was closed.
    Closed,
}

impl ConnectionState {
    /// Every state.
    pub const ALL: [ConnectionState; 6] = [
        ConnectionState::New,
        ConnectionState::Connecting,
        ConnectionState::Connected,
        ConnectionState::Disconnected,
        ConnectionState::Failed,
        ConnectionState::Closed,
    ];

    /// Lower-case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::New => "new",
            ConnectionState::Connecting => "connecting",
            ConnectionState::Connected => "connected",
            ConnectionState::Disconnected => "disconnected",
            ConnectionState::Failed => "failed",
            ConnectionState::Closed => "closed",
        }
    }
}

/// Why a participant left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LeaveReason {
    /// The signaling tier asked (Leave).
    Requested,
    /// The call ended.
    CallEnded,
    /// The transport failed (ICE or DTLS).
    TransportFailed,
    /// It never connected within the connect timeout.
    ConnectTimeout,
    /// It went silent and did not come back within the reconnect grace.
    PeerLost,
}

impl LeaveReason {
    /// Every reason.
    pub const ALL: [LeaveReason; 5] = [
        LeaveReason::Requested,
        LeaveReason::CallEnded,
        LeaveReason::TransportFailed,
        LeaveReason::ConnectTimeout,
        LeaveReason::PeerLost,
    ];

    /// Lower-case name for logs, metrics and the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Requested => "requested",
            LeaveReason::CallEnded => "call_ended",
            LeaveReason::TransportFailed => "transport_failed",
            LeaveReason::ConnectTimeout => "connect_timeout",
            LeaveReason::PeerLost => "peer_lost",
        }
    }
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndReason {
    /// The signaling tier ended it (EndCall) after it was answered.
    Requested,
    /// A participant left (hung up) after the answer.
    ParticipantLeft,
    /// The callee declined.
    Declined,
    /// Nobody answered within the ring timeout. Counts against the merchant's answer rate
    /// when the customer called.
    Missed,
    /// The call was ended before anyone answered.
    Cancelled,
    /// The maximum duration passed.
    MaxDuration,
    /// No media from anyone for the inactivity timeout.
    Inactivity,
    /// A participant's transport failed.
    TransportFailed,
    /// A participant went silent and did not come back within the reconnect grace.
    PeerLost,
    /// The server is shutting down.
    ServerShutdown,
}

impl EndReason {
    /// Every reason.
    pub const ALL: [EndReason; 10] = [
        EndReason::Requested,
        EndReason::ParticipantLeft,
        EndReason::Declined,
        EndReason::Missed,
        EndReason::Cancelled,
        EndReason::MaxDuration,
        EndReason::Inactivity,
        EndReason::TransportFailed,
        EndReason::PeerLost,
        EndReason::ServerShutdown,
    ];

    /// Lower-case name for logs, metrics and the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Requested => "requested",
            EndReason::ParticipantLeft => "participant_left",
            EndReason::Declined => "declined",
            EndReason::Missed => "missed",
            EndReason::Cancelled => "cancelled",
            EndReason::MaxDuration => "max_duration",
            EndReason::Inactivity => "inactivity",
            EndReason::TransportFailed => "transport_failed",
            EndReason::PeerLost => "peer_lost",
            EndReason::ServerShutdown => "server_shutdown",
        }
    }

    /// Whether the call had been answered when it ended this way (the outcomes that count
    /// as answered for scoring are every reason but declined, missed and cancelled).
    pub fn was_answered(self) -> bool {
        !matches!(
            self,
            EndReason::Declined | EndReason::Missed | EndReason::Cancelled
        )
    }
}

/// Where a call is in its life (see [`crate::call::lifecycle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CallState {
    /// Created; waiting for the callee to answer.
    Ringing,
    /// Answered; not both participants connected yet.
    Answered,
    /// Both participants connected (at least once).
    Connected,
    /// Over. Final.
    Ended(EndReason),
}

impl CallState {
    /// Every state that is not ended (an ended call carries its [`EndReason`]).
    pub const LIVE: [CallState; 3] = [
        CallState::Ringing,
        CallState::Answered,
        CallState::Connected,
    ];

    /// Lower-case name for logs and the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Ringing => "ringing",
            CallState::Answered => "answered",
            CallState::Connected => "connected",
            CallState::Ended(_) => "ended",
        }
    }
}
