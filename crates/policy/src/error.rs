//! Errors: invalid configuration (profiles, eligibility rules) and invalid caller input.
//!
//! Policy *outcomes* are not here: a refused camera or track is a value
//! ([`crate::Decision::Refuse`], [`crate::TrackRefusal`], [`crate::Eligibility`]). These errors
//! mean a profile, a rule or a standing is malformed, and say which field and why.

use std::fmt;

use crate::constraints::CapField;
use crate::role::Role;
use crate::source::Lens;

/// Which caps of a [`crate::RoleProfile`] a [`ProfileProblem::CapOutOfRange`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CapsKind {
    /// `camera_caps`.
    Camera,
    /// `screen_caps`.
    Screen,
}

impl CapsKind {
    /// The config key: `camera_caps` or `screen_caps`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CapsKind::Camera => "camera_caps",
            CapsKind::Screen => "screen_caps",
        }
    }
}

impl fmt::Display for CapsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A broken invariant inside one profile, naming the config keys involved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileProblem {
    /// The customer's camera would be on without the customer's action.
    #[error(
        "customer.camera_at_join is on, but only the customer can turn on the customer's camera: \
         it must be off"
    )]
    CustomerCameraOnAtJoin,
    /// The camera is on at join but no lens is accepted.
    #[error(
        "{role}.camera_at_join is on but {role}.accepted_sources has no camera_rear or camera_front"
    )]
    CameraOnWithoutLens {
        /// The role concerned.
        role: Role,
    },
    /// A lens is accepted that could never be on.
    #[error(
        "{role}.accepted_sources contains {lens} but {role}.camera_control is nobody and \
         {role}.camera_at_join is off, so the camera could never be on"
    )]
    UnreachableCamera {
        /// The role concerned.
        role: Role,
        /// The first unreachable lens.
        lens: Lens,
    },
    /// A capture cap is out of range.
    #[error(
        "{role}.{caps}.{field} must be between {} and {}, got {value}",
        .field.range().0,
        .field.range().1
    )]
    CapOutOfRange {
        /// The role concerned.
        role: Role,
        /// Camera or screen caps.
        caps: CapsKind,
        /// The field out of range.
        field: CapField,
        /// Its value.
        value: u32,
    },
    /// `record_screen` is set on a profile that may not be recorded.
    #[error(
        "record_screen is true but recording_allowed is false: set recording_allowed = true, \
         or record_screen = false"
    )]
    RecordScreenWithoutRecording,
}

/// Why a profile could not be loaded or resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// A call or the config named a profile that does not exist.
    #[error("unknown profile {name:?} (known: {})", .known.join(", "))]
    UnknownProfile {
        /// The name asked for.
        name: String,
        /// The names that exist, sorted.
        known: Vec<String>,
    },
    /// The configured default profile does not exist.
    #[error("default profile {name:?} is not defined (known: {})", .known.join(", "))]
    UnknownDefault {
        /// The configured default.
        name: String,
        /// The names that exist, sorted.
        known: Vec<String>,
    },
    /// A configured profile has an unusable name.
    #[error(
        "profile name {name:?} is invalid: use 1 to {} characters from a-z, 0-9, '-' and '_'",
        crate::profile_set::NAME_MAX_LEN
    )]
    InvalidName {
        /// The name as configured.
        name: String,
    },
    /// A configured profile's `base` is not a built-in profile.
    #[error(
        "profile {profile:?}: base {base:?} is not a built-in profile \
         (rear-camera-off, merchant-video, audio-only)"
    )]
    UnknownBase {
        /// The configured profile.
        profile: String,
        /// The base it names.
        base: String,
    },
    /// A profile breaks an invariant.
    #[error("profile {profile:?}{}: {problem}", overrides_note(.per_call_override))]
    Invalid {
        /// The profile's name.
        profile: String,
        /// Whether the problem appeared only after applying a call's overrides.
        per_call_override: bool,
        /// What is wrong.
        problem: ProfileProblem,
    },
}

fn overrides_note(per_call_override: &bool) -> &'static str {
    if *per_call_override {
        " with the call's overrides"
    } else {
        ""
    }
}

/// A malformed eligibility rule or merchant standing.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EligibilityError {
    /// `min_rating` is NaN or outside 0..=5.
    #[error("eligibility.min_rating must be a number from 0 to 5, got {0}")]
    MinRating(f32),
    /// `min_reply_rate` is NaN or outside 0..=1.
    #[error("eligibility.min_reply_rate must be a number from 0 to 1, got {0}")]
    MinReplyRate(f32),
    /// The merchant's rating is NaN or outside 0..=5.
    #[error("merchant rating must be a number from 0 to 5, got {0}")]
    Rating(f32),
    /// The merchant's reply rate is NaN or outside 0..=1.
    #[error("merchant reply rate must be a number from 0 to 1, got {0}")]
    ReplyRate(f32),
}
