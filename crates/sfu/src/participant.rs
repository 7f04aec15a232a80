//! Participant: one role in a call, with its transport and its tracks in both directions.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use policy::{MediaKind, Role, Source};

use crate::event::ConnectionState;
use crate::ids::{CallId, ParticipantId};
use crate::media::{DownTrack, RateMeter, Receiver};
use crate::stats::{DropCounters, KindCounters, ParticipantStats};
use crate::transport::Transport;

/// Most remote addresses remembered per participant (ICE may check a few candidate pairs).
pub(crate) const MAX_ADDRS: usize = 8;

/// The source the policy accepted for one m-line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MlineSource {
    pub kind: MediaKind,
    pub kind_index: u8,
    pub source: Source,
}

/// One participant.
pub(crate) struct Participant {
    pub id: ParticipantId,
    pub call: CallId,
    pub role: Role,
    pub transport: Transport,
    /// Our ICE ufrag for it (routes its STUN).
    pub ufrag: String,
    /// Remote addresses its datagrams come from.
    pub addrs: Vec<SocketAddr>,
    /// The effective state: what events and stats report (transport state, corrected by the
    /// liveness sweep).
    pub state: ConnectionState,
    /// What the transport itself last reported.
    pub transport_state: ConnectionState,
    /// Last datagram accepted from a verified address.
    pub last_rx: Instant,
    /// Last datagram accepted from the address we send to (see `Engine::follow_path`).
    pub path_rx: Instant,
    /// Another verified address a check nominated (USE-CANDIDATE), until the path moves there.
    pub nominated: Option<SocketAddr>,
    /// Since when it is disconnected, while it is.
    pub disconnected_since: Option<Instant>,
    pub joined_at: Instant,
    pub connected_at: Option<Instant>,
    /// ICE failed at some point (tells ICE failures from DTLS failures).
    pub ice_failed: bool,
    /// The accepted source of each m-line (refused m-lines are absent).
    pub sources: Vec<MlineSource>,
    /// Incoming streams.
    pub receivers: Vec<Receiver>,
    /// Outgoing tracks, one per sending m-line.
    pub downtracks: Vec<DownTrack>,
    pub received: KindCounters,
    pub sent: KindCounters,
    pub dropped: DropCounters,
    pub keyframe_requests_sent: u64,
    pub keyframe_requests_received: u64,
    /// The deadline currently scheduled for it in the engine's timer heap.
    pub deadline: Option<Instant>,
    /// The audio sent to it, per second (for the allocator: audio comes first).
    pub audio_rate: RateMeter,
    /// When its next quality event is due.
    pub next_quality: Instant,
    /// When a REMB cap was last sent to it (as a publisher).
    pub last_remb: Option<Instant>,
}

impl Participant {
    /// The source accepted for the `kind_index`-th m-line of `kind`.
    pub(crate) fn source_of(&self, kind: MediaKind, kind_index: u8) -> Option<Source> {
        self.sources
            .iter()
            .find(|s| s.kind == kind && s.kind_index == kind_index)
            .map(|s| s.source)
    }

    /// The receiver for `ssrc`, if the track is known.
    pub(crate) fn receiver(&self, ssrc: u32) -> Option<&Receiver> {
        self.receivers.iter().find(|r| r.ssrc == ssrc)
    }

    /// The receiver for `ssrc`, if the track is known, mutable.
    pub(crate) fn receiver_mut(&mut self, ssrc: u32) -> Option<&mut Receiver> {
        self.receivers.iter_mut().find(|r| r.ssrc == ssrc)
    }

    /// The outgoing track on the `kind_index`-th m-line of `kind`.
    pub(crate) fn downtrack_index(&self, kind: MediaKind, kind_index: u8) -> Option<usize> {
        self.downtracks
            .iter()
            .position(|d| d.kind == kind && d.kind_index == kind_index)
    }

    /// Remembers a remote address; forgets the oldest beyond [`MAX_ADDRS`] and returns it.
    pub(crate) fn remember_addr(&mut self, addr: SocketAddr) -> Option<SocketAddr> {
        if self.addrs.contains(&addr) {
            return None;
        }
        self.addrs.push(addr);
        (self.addrs.len() > MAX_ADDRS).then(|| self.addrs.remove(0))
    }

    /// A snapshot of its statistics.
    pub(crate) fn stats(&mut self, now: Instant) -> ParticipantStats {
        let (uplink, downlink) = self.transport.link_quality(now);
        let camera = self
            .downtracks
            .iter()
            .find(|d| d.kind == MediaKind::Video && d.kind_index == 0);
        ParticipantStats {
            participant: self.id,
            role: self.role,
            connection: self.state,
            received: self.received,
            sent: self.sent,
            dropped: self.dropped,
            keyframe_requests_sent: self.keyframe_requests_sent,
            keyframe_requests_received: self.keyframe_requests_received,
            estimated_downlink_bps: self.transport.estimate(now).map(|e| e.optimistic_bps),
            video_layer: camera.and_then(|d| d.layer_rid.clone()),
            video_paused: camera.is_some_and(|d| d.forwarder.is_paused()),
            video_paused_duration: camera.map_or(Duration::ZERO, |d| d.paused_for(now)),
            video_freezes: self.downtracks.iter().map(|d| d.freezes.count).sum(),
            video_freeze_duration: self.downtracks.iter().map(|d| d.freezes.duration).sum(),
            uplink,
            downlink,
            joined_for: now.saturating_duration_since(self.joined_at),
            connected_for: self.connected_at.map(|t| now.saturating_duration_since(t)),
        }
    }
}
