//! DownTrack: a track of one participant going out to the other, on one m-line of the
//! receiving participant's transport.

use policy::MediaKind;

use std::time::{Duration, Instant};

use crate::bwe::Allocator;
use crate::config::VideoCodec;
use crate::media::{Forwarder, FreezeDetector, Munger};

/// One outgoing track.
#[derive(Debug, Clone)]
pub struct DownTrack {
    /// Index of the transport's sending leg (m-line) it goes out on.
    pub leg: usize,
    /// Kind of the m-line.
    pub kind: MediaKind,
    /// Which m-line of that kind.
    pub kind_index: u8,
    /// Our SSRC on the leg.
    pub ssrc: u32,
    /// The video codec, for keyframe detection (`None` for audio).
    pub codec: Option<VideoCodec>,
    /// The gate.
    pub forwarder: Forwarder,
    /// The header rewriter.
    pub munger: Munger,
    /// Freezes of the video sent on it.
    pub freezes: FreezeDetector,
    /// Which layer fits the downlink (video only).
    pub allocator: Option<Allocator>,
    /// Since when video is paused for the downlink, while it is.
    pub paused_since: Option<Instant>,
    /// Time paused, earlier stretches.
    pub paused_total: Duration,
    /// The rid of the layer the allocator chose (for stats and events).
    pub layer_rid: Option<String>,
}

impl DownTrack {
    /// Time paused for bandwidth so far.
    pub fn paused_for(&self, now: Instant) -> Duration {
        self.paused_total
            + self
                .paused_since
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }
}
