//! Call: two participants (one per role), its lifecycle, its policy grants, its codec.

pub mod lifecycle;

use std::time::{Duration, Instant};

use policy::{Eligibility, Grants, MerchantStanding, Profile, ProfileOverride, Role};

use crate::ids::ParticipantId;
use crate::offer::CallVideoCodec;
use crate::stats::ParticipantStats;
use lifecycle::{CallLimitsOverride, Lifecycle};

/// How to create a call.
#[derive(Debug, Clone)]
pub struct CallOptions {
    /// Who starts the call (and so who answers it: the other side). Either side may.
    pub initiator: Role,
    /// Name of the profile (see [`SfuConfig::profiles`](crate::SfuConfig)); `None` = the
    /// default profile.
    pub profile: Option<String>,
    /// Single fields overridden on top of the profile for this call.
    pub profile_override: ProfileOverride,
    /// The merchant's standing, as the signaling tier knows it. With
    /// [`SfuConfig::eligibility`](crate::SfuConfig) it decides whether video is allowed;
    /// `None` means the signaling tier already decided and video follows the profile.
    pub merchant_standing: Option<MerchantStanding>,
    /// The signaling tier's id of the merchant, echoed in the call record.
    pub merchant_ref: Option<String>,
    /// The signaling tier's id of the customer, echoed in the call record.
    pub customer_ref: Option<String>,
    /// Per-call time limits.
    pub limits: CallLimitsOverride,
}

impl Default for CallOptions {
    fn default() -> Self {
        CallOptions {
            initiator: Role::Merchant,
            profile: None,
            profile_override: ProfileOverride::default(),
            merchant_standing: None,
            merchant_ref: None,
            customer_ref: None,
            limits: CallLimitsOverride::default(),
        }
    }
}

/// What creating a call decided.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatedCall {
    /// The new call.
    pub id: crate::CallId,
    /// The profile the call runs under (after overrides and eligibility).
    pub profile: Profile,
    /// The profile's name.
    pub profile_name: String,
    /// The eligibility verdict: video, or audio only with the reason.
    pub eligibility: Eligibility,
}

/// Longest external reference (merchant/customer id) accepted.
pub const MAX_REF_LEN: usize = 256;

/// One call.
pub(crate) struct Call {
    pub lifecycle: Lifecycle,
    pub profile_name: String,
    pub grants: Grants,
    pub merchant_ref: Option<String>,
    pub customer_ref: Option<String>,
    /// Since when both participants are connected, while they are.
    pub both_connected_since: Option<Instant>,
    /// Time both were connected, in earlier stretches.
    pub connected_total: Duration,
    /// Ever had both participants connected.
    pub was_connected: bool,
    /// The last RTP from anyone (for the inactivity limit).
    pub last_media: Option<Instant>,
    /// The deadline currently scheduled for it in the engine's call timer heap.
    pub deadline: Option<Instant>,
    /// Current participants, indexed by role.
    members: [Option<ParticipantId>; 2],
    /// Final stats of participants that left.
    pub departed: Vec<ParticipantStats>,
    /// The video codec, fixed by the first joiner with video.
    pub video_codec: Option<CallVideoCodec>,
    /// Recording consent, the running recording, the finished ones.
    pub recording: crate::engine::recording::CallRecording,
}

impl Call {
    pub(crate) fn new(
        lifecycle: Lifecycle,
        profile_name: String,
        profile: &Profile,
        options: CallOptions,
        now: Instant,
    ) -> Self {
        Call {
            lifecycle,
            profile_name,
            grants: Grants::new(profile, now),
            merchant_ref: options.merchant_ref,
            customer_ref: options.customer_ref,
            both_connected_since: None,
            connected_total: Duration::ZERO,
            was_connected: false,
            last_media: None,
            deadline: None,
            members: [None, None],
            departed: Vec::new(),
            video_codec: None,
            recording: Default::default(),
        }
    }

    /// The participant in `role`, if present.
    pub(crate) fn member(&self, role: Role) -> Option<ParticipantId> {
        self.members[role.index()]
    }

    pub(crate) fn set_member(&mut self, role: Role, participant: Option<ParticipantId>) {
        self.members[role.index()] = participant;
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
