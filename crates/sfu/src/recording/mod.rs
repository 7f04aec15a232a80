//! Recording: consent-gated call recordings, from the engine's recorded packets to one
//! WebM (or Matroska) file per call.
//!
//! Two halves, on two sides of the sans-IO line:
//!
//! * **The engine** (`engine/recording.rs`) decides *what* is recorded. It keeps each
//!   participant's consent, checks the preconditions of [`Engine::start_recording`]
//!   (the profile's `recording_allowed`, the consent of both participants), and, for every
//!   packet that passes the same policy gate as forwarding, queues a [`RecordedPacket`]:
//!   header scalars copied, the payload's [`Bytes`] shared (a reference count, no copy).
//!   The driver drains them with [`Engine::poll_recorded`] as [`RecordingOutput`]s: a
//!   `Start`, packets, a `Stop`, in order.
//! * **The writer** ([`Recorder`], on its own thread) decides *how*: it depacketizes
//!   (VP8, VP9, H.264, Opus), maps RTP timestamps onto the recording's timeline and remuxes
//!   into Matroska without transcoding ([`mkv`]), flushing a cluster at least every second.
//!   Write errors (a full disk) come back as [`RecorderReport`]s, which the driver hands to
//!   [`Engine::recording_failed`]: the recording stops with
//!   [`RecordingStopReason::WriteFailed`], the call goes on.
//!
//! What is never recorded: media the policy does not grant (the customer's camera while it
//! is off, any screen share unless the profile says `record_screen`), media of a participant
//! who has not consented or withdrew consent, and any simulcast layer but one.
//! See `docs/recording.md`.
//!
//! [`Engine::start_recording`]: crate::Engine::start_recording
//! [`Engine::poll_recorded`]: crate::Engine::poll_recorded
//! [`Engine::recording_failed`]: crate::Engine::recording_failed

mod depacketize;
mod file;
pub mod mkv;
mod recorder;
mod timeline;

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use policy::{MediaKind, Role};

use crate::config::VideoCodec;
use crate::ids::CallId;

pub use file::{FileSummary, RecordingFile, TrackSummary, WriteError};
pub use recorder::{
    Opener, Recorder, RecorderConfig, RecorderReport, RecorderReportKind, RecordingDirError,
    WriteSeek, check_dir, file_name, reserve_file,
};

/// One recording of a call (a call may be recorded several times: start, stop, start).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordingId(u64);

impl RecordingId {
    /// An id from its raw value.
    pub const fn from_raw(raw: u64) -> Self {
        RecordingId(raw)
    }

    /// The raw value.
    pub const fn raw(self) -> u64 {
        self.0
    }
}

impl fmt::Display for RecordingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for RecordingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordingId({})", self.0)
    }
}

/// Which of a participant's media a recorded track holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrackSource {
    /// The microphone.
    Microphone,
    /// The camera (whichever lens; one simulcast layer).
    Camera,
    /// The screen share (the merchant's, and only if the profile's `record_screen` says so).
    Screen,
}

impl TrackSource {
    /// Snake-case name for logs, track names and the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            TrackSource::Microphone => "microphone",
            TrackSource::Camera => "camera",
            TrackSource::Screen => "screen",
        }
    }

    /// The media kind of the track.
    pub fn kind(self) -> MediaKind {
        match self {
            TrackSource::Microphone => MediaKind::Audio,
            TrackSource::Camera | TrackSource::Screen => MediaKind::Video,
        }
    }
}

/// A track of a recording: whose, and which source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordedTrack {
    /// Whose media.
    pub role: Role,
    /// Which of it.
    pub source: TrackSource,
}

impl fmt::Display for RecordedTrack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.role, self.source.as_str())
    }
}

/// The codec of a recorded track (as it arrived: nothing is transcoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordedCodec {
    /// Opus audio, 48 kHz RTP clock.
    Opus,
    /// Video, 90 kHz RTP clock.
    Video(VideoCodec),
}

impl RecordedCodec {
    /// The RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            RecordedCodec::Opus => 48_000,
            RecordedCodec::Video(_) => 90_000,
        }
    }

    /// The Matroska codec id (`A_OPUS`, `V_VP8`, `V_VP9`, `V_MPEG4/ISO/AVC`).
    pub fn matroska_id(self) -> &'static str {
        match self {
            RecordedCodec::Opus => "A_OPUS",
            RecordedCodec::Video(VideoCodec::Vp8) => "V_VP8",
            RecordedCodec::Video(VideoCodec::Vp9) => "V_VP9",
            RecordedCodec::Video(VideoCodec::H264) => "V_MPEG4/ISO/AVC",
        }
    }
}

impl fmt::Display for RecordedCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordedCodec::Opus => f.write_str("opus"),
            RecordedCodec::Video(v) => write!(f, "{}", v.encoding_name().to_ascii_lowercase()),
        }
    }
}

/// The container of a recording file: WebM when every codec is WebM's (Opus, VP8, VP9),
/// Matroska for H.264.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Container {
    /// `.webm`, DocType `webm`.
    WebM,
    /// `.mkv`, DocType `matroska`.
    Matroska,
}

impl Container {
    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Container::WebM => "webm",
            Container::Matroska => "mkv",
        }
    }

    /// The EBML DocType.
    pub fn doc_type(self) -> &'static str {
        match self {
            Container::WebM => "webm",
            Container::Matroska => "matroska",
        }
    }
}

/// One track a recording declares when it starts (a file's track list is fixed up front; a
/// track whose media never comes stays empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackPlan {
    /// Whose and which.
    pub track: RecordedTrack,
    /// Its codec.
    pub codec: RecordedCodec,
}

/// What a recording of a call will hold, decided by the engine from the profile and the
/// call's codecs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingPlan {
    /// The tracks, merchant first.
    pub tracks: Vec<TrackPlan>,
    /// The container those codecs need.
    pub container: Container,
}

/// A recording starts: the writer opens its output.
#[derive(Debug, Clone)]
pub struct RecordingStart {
    /// The recording.
    pub id: RecordingId,
    /// The call.
    pub call: CallId,
    /// The file the driver reserved for it (`None` for an embedder that takes the packets
    /// itself).
    pub file: Option<PathBuf>,
    /// Its tracks and container.
    pub plan: RecordingPlan,
    /// When it started: time zero of the file.
    pub at: Instant,
}

/// One RTP packet that goes into a recording. Header fields are copied; the payload shares
/// the received packet's buffer.
#[derive(Debug, Clone)]
pub struct RecordedPacket {
    /// The recording.
    pub id: RecordingId,
    /// The call.
    pub call: CallId,
    /// Whose and which track.
    pub track: RecordedTrack,
    /// Its codec.
    pub codec: RecordedCodec,
    /// The sender's SSRC (changes if the participant rejoins).
    pub ssrc: u32,
    /// RTP timestamp, in the codec's clock.
    pub timestamp: u32,
    /// RTP sequence number.
    pub sequence_number: u16,
    /// RTP marker bit (last packet of a video frame).
    pub marker: bool,
    /// The RTP payload.
    pub payload: Bytes,
    /// When it arrived.
    pub at: Instant,
}

/// Why a recording stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecordingStopReason {
    /// StopRecording was asked for.
    Requested,
    /// Every participant withdrew consent: nothing could be recorded any more.
    ConsentWithdrawn,
    /// The call ended.
    CallEnded,
    /// Writing the file failed (disk full, I/O error); the call goes on.
    WriteFailed,
}

impl RecordingStopReason {
    /// Every reason.
    pub const ALL: [RecordingStopReason; 4] = [
        RecordingStopReason::Requested,
        RecordingStopReason::ConsentWithdrawn,
        RecordingStopReason::CallEnded,
        RecordingStopReason::WriteFailed,
    ];

    /// Snake-case name for logs, metrics and the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingStopReason::Requested => "requested",
            RecordingStopReason::ConsentWithdrawn => "consent_withdrawn",
            RecordingStopReason::CallEnded => "call_ended",
            RecordingStopReason::WriteFailed => "write_failed",
        }
    }
}

/// What the engine hands the recording side, in order: a recording's `Start`, its packets,
/// its `Stop`.
#[derive(Debug, Clone)]
pub enum RecordingOutput {
    /// A recording starts (boxed: rare, and it keeps the enum small).
    Start(Box<RecordingStart>),
    /// A packet of a running recording.
    Packet(RecordedPacket),
    /// A recording stopped: finish its file.
    Stop {
        /// The recording.
        id: RecordingId,
        /// The call.
        call: CallId,
        /// Why.
        reason: RecordingStopReason,
        /// When.
        at: Instant,
    },
}

/// One track in a finished recording, as the engine counted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedTrackStats {
    /// Whose and which.
    pub track: RecordedTrack,
    /// Its codec.
    pub codec: RecordedCodec,
    /// RTP packets handed to the writer.
    pub packets: u64,
    /// Payload bytes handed to the writer.
    pub bytes: u64,
}

/// A recording, as the call record lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingSummary {
    /// The recording.
    pub id: RecordingId,
    /// Its file (`None` when an embedder took the packets itself).
    pub file: Option<PathBuf>,
    /// Time from the call's creation to the start.
    pub started_after: Duration,
    /// How long it ran.
    pub duration: Duration,
    /// Its tracks, with what went into each.
    pub tracks: Vec<RecordedTrackStats>,
    /// Why it stopped.
    pub stop_reason: RecordingStopReason,
    /// The I/O error that ended it, when `stop_reason` is `WriteFailed`.
    pub write_error: Option<std::io::ErrorKind>,
    /// Packets that could not be handed to the writer (its queue was full).
    pub dropped_packets: u64,
}
