//! Receiver: one incoming RTP stream (one SSRC; one simulcast layer) of a participant.

use std::time::{Duration, Instant};

use policy::{MediaKind, Source};

use crate::media::RateMeter;
use crate::stats::Counter;
use crate::transport::ReceiverRef;

/// One incoming RTP stream.
#[derive(Debug, Clone)]
pub struct Receiver {
    /// The participant's SSRC for it.
    pub ssrc: u32,
    /// The m-line's negotiated kind: what enforcement keys on.
    pub kind: MediaKind,
    /// Which m-line of that kind (0 = camera / microphone, 1 = screen).
    pub kind_index: u8,
    /// The source the policy accepted for its m-line: what the forwarding gate asks about.
    pub source: Source,
    /// The simulcast rid, if any.
    pub rid: Option<String>,
    pub(crate) handle: ReceiverRef,
    /// When the SFU last asked this stream for a keyframe.
    last_keyframe_request: Option<Instant>,
    /// What arrived on it.
    pub received: Counter,
    /// Its bitrate, sampled on the engine's tick.
    pub rate: RateMeter,
}

impl Receiver {
    pub(crate) fn new(
        ssrc: u32,
        kind: MediaKind,
        kind_index: u8,
        source: Source,
        rid: Option<String>,
        handle: ReceiverRef,
    ) -> Self {
        Receiver {
            ssrc,
            kind,
            kind_index,
            source,
            rid,
            handle,
            last_keyframe_request: None,
            received: Counter::default(),
            rate: RateMeter::default(),
        }
    }

    /// Whether a keyframe request may go out now (at most one per `interval`); records it.
    pub(crate) fn keyframe_request_allowed(&mut self, now: Instant, interval: Duration) -> bool {
        let allowed = self
            .last_keyframe_request
            .is_none_or(|t| now.saturating_duration_since(t) >= interval);
        if allowed {
            self.last_keyframe_request = Some(now);
        }
        allowed
    }
}
