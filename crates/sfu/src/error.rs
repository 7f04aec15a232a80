//! Errors: what went wrong with a request to the engine, and whose fault it was.
//!
//! Requests fail with [`Error`]. Dropped packets are not errors: they are counted by
//! [`DropReason`](crate::DropReason). A panic is a bug.

use crate::ids::{CallId, ParticipantId};
use policy::{MediaKind, Role};

/// Why a request to the engine failed.
///
/// The daemon maps each variant to one gRPC status code in one place
/// (`bin/shopcalld/src/grpc/status.rs`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No call with this id exists (never did, or it ended and was forgotten).
    #[error("call {0} not found")]
    CallNotFound(CallId),
    /// No participant with this id exists.
    #[error("participant {0} not found")]
    ParticipantNotFound(ParticipantId),
    /// The call has ended; nothing more can join or change it.
    #[error("call {0} has ended")]
    CallEnded(CallId),
    /// A one-to-one call already has both participants.
    #[error("call {0} already has two participants")]
    CallFull(CallId),
    /// A participant with this role is already in the call.
    #[error("call {call} already has a {role}")]
    RoleTaken {
        /// The call.
        call: CallId,
        /// The role that is taken.
        role: Role,
    },
    /// The SDP offer cannot be used; the message says what is wrong with it.
    #[error("invalid SDP offer: {0}")]
    InvalidOffer(#[from] OfferError),
    /// The ICE candidate cannot be used.
    #[error("invalid ICE candidate: {0}")]
    InvalidCandidate(String),
    /// The policy refuses the request (a merchant turning on the customer's camera, a
    /// camera in an audio-only call...). The reason says which rule.
    #[error("refused by policy: {0}")]
    PolicyRefused(policy::Reason),
    /// The merchant's standing does not allow a video call and the rules say refuse.
    #[error("merchant not eligible for a video call: {0}")]
    NotEligible(policy::Ineligible),
    /// The profile named at CreateCall does not exist, or the overrides make it invalid.
    #[error("invalid profile: {0}")]
    InvalidProfile(#[from] policy::ProfileError),
    /// A request argument is out of range; the message says which and why.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The call's lifecycle does not allow this now (answering a call that is not ringing,
    /// the initiator answering its own call...).
    #[error("call {call}: {error}")]
    WrongState {
        /// The call.
        call: CallId,
        /// What the lifecycle says.
        error: crate::call::lifecycle::LifecycleError,
    },
    /// The engine is at its configured call limit.
    #[error("at capacity: {max_calls} concurrent calls")]
    AtCapacity {
        /// The configured limit.
        max_calls: usize,
    },
    /// The engine is shutting down and takes no new calls or participants.
    #[error("shutting down: no new calls or participants")]
    ShuttingDown,
    /// The call's profile does not allow recording (`recording_allowed = false`).
    #[error("call {0} may not be recorded: its profile does not allow recording")]
    RecordingNotAllowed(CallId),
    /// A participant whose media would be recorded has not consented (or withdrew).
    #[error("call {call} cannot be recorded: the {role} has not consented to recording")]
    ConsentMissing {
        /// The call.
        call: CallId,
        /// Who has not consented.
        role: Role,
    },
    /// A recording starts once both participants have joined (their codecs are known then).
    #[error("call {call} cannot be recorded yet: the {absent} has not joined")]
    RecordingNotReady {
        /// The call.
        call: CallId,
        /// The role not in the call.
        absent: Role,
    },
    /// The call is already being recorded.
    #[error("call {0} is already being recorded")]
    AlreadyRecording(CallId),
    /// StopRecording on a call that is not being recorded.
    #[error("call {0} is not being recorded")]
    NotRecording(CallId),
    /// This server cannot write recordings: none is configured, or the directory cannot
    /// be written. The message says which and where.
    #[error("recording unavailable: {0}")]
    RecordingUnavailable(#[from] crate::recording::RecordingDirError),
    /// The driver task has stopped; the handle can do nothing more.
    #[error("the SFU driver has stopped")]
    Stopped,
    /// The WebRTC stack refused an operation that the engine expected to succeed. A bug in
    /// shopcall or in the stack; the message names the operation.
    #[error("internal error in {operation}: {message}")]
    Internal {
        /// What the engine was doing.
        operation: &'static str,
        /// The stack's message.
        message: String,
    },
}

impl Error {
    pub(crate) fn internal(operation: &'static str, err: impl std::fmt::Display) -> Error {
        Error::Internal {
            operation,
            message: err.to_string(),
        }
    }
}

/// What is wrong with an SDP offer. Each message names the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OfferError {
    /// The text is larger than the engine accepts.
    #[error("offer is {len} bytes, larger than the {max} byte limit")]
    TooLarge {
        /// Size of the offer.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The text does not parse as SDP.
    #[error("not parseable as SDP: {0}")]
    Unparseable(String),
    /// No m-lines at all.
    #[error("offer has no media sections")]
    NoMedia,
    /// An m-line of a kind the SFU does not carry.
    #[error("m-line {index} has media type {media:?}; only audio and video are supported")]
    UnsupportedMedia {
        /// Index of the m-line.
        index: usize,
        /// Its media type.
        media: String,
    },
    /// More m-lines of a kind than a one-to-one call uses.
    #[error("offer has {count} {kind} m-lines; at most {max} are supported")]
    TooManyMLines {
        /// The kind.
        kind: MediaKind,
        /// How many the offer has.
        count: usize,
        /// How many are supported.
        max: usize,
    },
    /// BUNDLE is required: one transport for all m-lines.
    #[error("offer has no a=group:BUNDLE covering all m-lines (missing mid {mid:?})")]
    NoBundle {
        /// A mid not covered by a BUNDLE group.
        mid: String,
    },
    /// An m-line without a mid.
    #[error("m-line {index} has no a=mid")]
    MissingMid {
        /// Index of the m-line.
        index: usize,
    },
    /// rtcp-mux is required on every m-line.
    #[error("m-line {mid:?} lacks a=rtcp-mux (RTP and RTCP must share the port)")]
    NoRtcpMux {
        /// The m-line's mid.
        mid: String,
    },
    /// ICE credentials are missing.
    #[error("offer has no a=ice-ufrag / a=ice-pwd")]
    NoIceCredentials,
    /// The DTLS fingerprint is missing.
    #[error("offer has no a=fingerprint: DTLS-SRTP is required")]
    NoFingerprint,
    /// An m-line offers no codec the SFU can forward.
    #[error("m-line {mid:?} ({kind}) offers none of the supported codecs: {supported}")]
    NoSupportedCodec {
        /// The m-line's mid.
        mid: String,
        /// Its kind.
        kind: MediaKind,
        /// The codecs the SFU would accept here.
        supported: String,
    },
    /// The other participant already fixed the call's video codec and this offer lacks it.
    #[error("m-line {mid:?} does not offer {codec}, the codec the call already uses")]
    CodecMismatch {
        /// The m-line's mid.
        mid: String,
        /// The call's codec.
        codec: crate::VideoCodec,
    },
    /// The WebRTC stack refused the offer.
    #[error("rejected by the WebRTC stack: {0}")]
    Rejected(String),
}
