//! Call: two participants (one per role), the call's codec, its forwarding gate, its state.

use std::time::{Duration, Instant};

use policy::{MediaKind, Role};

use crate::event::CallState;
use crate::ids::ParticipantId;
use crate::offer::CallVideoCodec;
use crate::stats::ParticipantStats;

/// Options for a new call.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CallOptions {}

/// Which media of which role may be forwarded now. The seam where the policy decides: the
/// engine asks [`ForwardGate::may_forward`] for every packet, before anything else is done
/// with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ForwardGate {
    allowed: [[bool; 2]; 2],
}

impl ForwardGate {
    /// Everything allowed.
    pub(crate) fn open() -> Self {
        ForwardGate {
            allowed: [[true; 2]; 2],
        }
    }

    /// Whether media of `kind` from `role` may be forwarded.
    pub(crate) fn may_forward(&self, role: Role, kind: MediaKind) -> bool {
        self.allowed[role_index(role)][kind_index(kind)]
    }
}

pub(crate) fn role_index(role: Role) -> usize {
    match role {
        Role::Merchant => 0,
        Role::Customer => 1,
    }
}

fn kind_index(kind: MediaKind) -> usize {
    match kind {
        MediaKind::Audio => 0,
        MediaKind::Video => 1,
    }
}

/// One call.
pub(crate) struct Call {
    pub state: CallState,
    pub created_at: Instant,
    /// Since when both participants are connected, while they are.
    pub both_connected_since: Option<Instant>,
    /// Time both were connected, in earlier stretches.
    pub connected_total: Duration,
    /// Ever had both participants connected.
    pub was_connected: bool,
    /// Current participants, indexed by role.
    members: [Option<ParticipantId>; 2],
    /// Final stats of participants that left.
    pub departed: Vec<ParticipantStats>,
    /// The video codec, fixed by the first joiner with video.
    pub video_codec: Option<CallVideoCodec>,
    pub gate: ForwardGate,
}

impl Call {
    pub(crate) fn new(now: Instant) -> Self {
        Call {
            state: CallState::Waiting,
            created_at: now,
            both_connected_since: None,
            connected_total: Duration::ZERO,
            was_connected: false,
            members: [None, None],
            departed: Vec::new(),
            video_codec: None,
            gate: ForwardGate::open(),
        }
    }

    /// The participant in `role`, if present.
    pub(crate) fn member(&self, role: Role) -> Option<ParticipantId> {
        self.members[role_index(role)]
    }

    pub(crate) fn set_member(&mut self, role: Role, participant: Option<ParticipantId>) {
        self.members[role_index(role)] = participant;
    }

    /// Present participants.
    pub(crate) fn members(&self) -> impl Iterator<Item = ParticipantId> + '_ {
        self.members.iter().flatten().copied()
    }

    /// Time both participants have been connected so far.
    pub(crate) fn connected_duration(&self, now: Instant) -> Duration {
        self.connected_total
            + self
                .both_connected_since
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }

    /// Stop the connected clock (a participant disconnected or left).
    pub(crate) fn pause_connected_clock(&mut self, now: Instant) {
        if let Some(t) = self.both_connected_since.take() {
            self.connected_total += now.saturating_duration_since(t);
        }
    }
}
