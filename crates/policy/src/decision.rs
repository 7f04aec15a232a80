//! Decision: what the policy answers to a grant operation: allowed (with effects) or refused.
//!
//! A refusal is a value, not an error: the caller reports it (the daemon maps it to
//! `PERMISSION_DENIED` with the reason's text) and nothing has changed.

use crate::role::Role;
use crate::source::Lens;
use crate::source_set::SourceSet;

/// The answer to a grant operation ([`crate::Grants`]).
#[must_use = "a refusal must be reported, and an allowed change may need a keyframe request"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Allowed; the state is updated and these are the effects the caller must carry out.
    Allow(Effects),
    /// Refused; the state is unchanged.
    Refuse(Reason),
}

impl Decision {
    /// Whether the operation was allowed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }

    /// The effects, if allowed.
    pub fn effects(&self) -> Option<Effects> {
        match self {
            Decision::Allow(effects) => Some(*effects),
            Decision::Refuse(_) => None,
        }
    }

    /// The reason, if refused.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Decision::Allow(_) => None,
            Decision::Refuse(reason) => Some(*reason),
        }
    }
}

/// What an allowed operation changed, for the caller to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effects {
    /// Whose media the operation is about (the target).
    pub role: Role,
    /// Sources newly granted: forward them from the next packet on.
    pub granted: SourceSet,
    /// Sources no longer granted: drop them from the next packet on.
    pub revoked: SourceSet,
    /// Emit a CameraRequested event to `role`'s client (from [`crate::Grants::request_camera`]).
    pub camera_requested: bool,
}

impl Effects {
    /// No change concerning `role` (e.g. turning off a camera that is already off).
    pub const fn none(role: Role) -> Effects {
        Effects {
            role,
            granted: SourceSet::EMPTY,
            revoked: SourceSet::EMPTY,
            camera_requested: false,
        }
    }

    /// Whether the caller must ask `role`'s sender for a keyframe (a video source was just
    /// granted), so the picture starts at once instead of at the next natural keyframe.
    pub const fn keyframe_needed(&self) -> bool {
        self.granted.intersects(SourceSet::VIDEO)
    }

    /// Whether nothing changed and nothing is to be emitted.
    pub const fn is_none(&self) -> bool {
        self.granted.is_empty() && self.revoked.is_empty() && !self.camera_requested
    }
}

/// Why a grant operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Reason {
    /// Someone tried to switch another participant's camera. Only the owner can.
    #[error("the {actor} may not switch the {target}'s camera: only the {target} can")]
    NotOwnCamera {
        /// Who asked.
        actor: Role,
        /// Whose camera.
        target: Role,
    },
    /// Someone tried to switch another participant's screen share.
    #[error("the {actor} may not switch the {target}'s screen share: only the {target} can")]
    NotOwnScreen {
        /// Who asked.
        actor: Role,
        /// Whose screen share.
        target: Role,
    },
    /// Someone tried to switch another participant's microphone.
    #[error("the {actor} may not switch the {target}'s microphone: only the {target} can")]
    NotOwnMicrophone {
        /// Who asked.
        actor: Role,
        /// Whose microphone.
        target: Role,
    },
    /// The profile accepts no camera for this role (e.g. `audio-only`).
    #[error("the call's profile allows no camera for the {role}")]
    CameraNotAllowed {
        /// Whose camera.
        role: Role,
    },
    /// The profile accepts a camera for this role, but not this lens.
    #[error("the call's profile does not allow {lens} for the {role} (allowed: {allowed})")]
    LensNotAllowed {
        /// Whose camera.
        role: Role,
        /// The lens asked for.
        lens: Lens,
        /// The lenses the profile allows.
        allowed: SourceSet,
    },
    /// The profile lets nobody turn this role's camera on (`camera_control = nobody`).
    #[error("the call's profile lets nobody turn on the {role}'s camera")]
    CameraLocked {
        /// Whose camera.
        role: Role,
    },
    /// The profile does not allow this role to share its screen.
    #[error("the call's profile allows no screen share for the {role}")]
    ScreenShareNotAllowed {
        /// Whose screen.
        role: Role,
    },
    /// The profile does not allow this role's microphone.
    #[error("the call's profile allows no microphone for the {role}")]
    MicrophoneNotAllowed {
        /// Whose microphone.
        role: Role,
    },
    /// A participant asked for its own camera; a camera request goes to the other side.
    #[error("the {role} cannot request its own camera: a request goes to the other participant")]
    RequestOwnCamera {
        /// Who asked.
        role: Role,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Source;

    #[test]
    fn reasons_read_well() {
        let table = [
            (
                Reason::NotOwnCamera {
                    actor: Role::Merchant,
                    target: Role::Customer,
                },
                "the merchant may not switch the customer's camera: only the customer can",
            ),
            (
                Reason::LensNotAllowed {
                    role: Role::Customer,
                    lens: Lens::Front,
                    allowed: SourceSet::of(&[Source::CameraRear]),
                },
                "the call's profile does not allow camera_front for the customer \
                 (allowed: camera_rear)",
            ),
            (
                Reason::CameraNotAllowed {
                    role: Role::Customer,
                },
                "the call's profile allows no camera for the customer",
            ),
            (
                Reason::RequestOwnCamera {
                    role: Role::Merchant,
                },
                "the merchant cannot request its own camera: a request goes to the other \
                 participant",
            ),
        ];
        for (reason, text) in table {
            assert_eq!(reason.to_string(), text);
        }
    }

    #[test]
    fn keyframe_only_for_new_video() {
        let mut e = Effects::none(Role::Customer);
        assert!(e.is_none() && !e.keyframe_needed());
        e.granted = SourceSet::AUDIO;
        assert!(!e.keyframe_needed());
        e.granted = SourceSet::of(&[Source::CameraRear]);
        assert!(e.keyframe_needed());
        let d = Decision::Allow(e);
        assert!(d.is_allowed());
        assert_eq!(d.effects(), Some(e));
        assert_eq!(d.reason(), None);
    }
}
