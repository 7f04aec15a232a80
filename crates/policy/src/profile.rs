//! Profile: what each role may publish in a call, and how its camera behaves.
//!
//! A profile is plain, `Copy` data: per role the accepted sources, the camera state at
//! join, who may turn the camera on, and the capture caps returned to the client. It is
//! checked once ([`Profile::validate`]) when loaded from config or resolved for a call; the
//! grant state machine ([`crate::Grants`]) then starts from it.

use crate::constraints::{CameraConstraints, ClientConstraints, VideoCaps};
use crate::error::{CapsKind, ProfileProblem};
use crate::role::Role;
use crate::source::Source;
use crate::source_set::SourceSet;

/// Whether a role's camera is on when the call starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraAtJoin {
    /// Off: video from this role is dropped until its camera is turned on.
    Off,
    /// On: video from this role is forwarded from the start (never allowed for the customer).
    On,
}

/// Who may turn a role's camera on after join.
///
/// There is deliberately no way to say "the other participant": nobody can turn on someone
/// else's camera, in any profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraControl {
    /// The participant itself (the customer for the customer's camera, the merchant for the
    /// merchant's).
    SelfOnly,
    /// Nobody: the camera stays as it was at join; once turned off it stays off.
    Nobody,
}

impl CameraControl {
    /// The config name: `self_only` or `nobody`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CameraControl::SelfOnly => "self_only",
            CameraControl::Nobody => "nobody",
        }
    }
}

/// The part of a [`Profile`] for one role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleProfile {
    /// The sources a track may declare at Join; the others are refused. The microphone is
    /// allowed iff `microphone` is here, screen sharing iff `screen` is, and a camera lens iff
    /// `camera_rear` / `camera_front` is.
    pub accepted_sources: SourceSet,
    /// Whether the camera is on at join (must be `off` for the customer).
    pub camera_at_join: CameraAtJoin,
    /// Who may turn the camera on later.
    pub camera_control: CameraControl,
    /// Caps for camera capture, returned to the client.
    pub camera_caps: VideoCaps,
    /// Caps for screen capture, returned to the client.
    pub screen_caps: VideoCaps,
}

impl RoleProfile {
    /// Whether the microphone is accepted.
    pub const fn allows_microphone(&self) -> bool {
        self.accepted_sources.contains(Source::Microphone)
    }

    /// Whether screen sharing is accepted.
    pub const fn allows_screen_share(&self) -> bool {
        self.accepted_sources.contains(Source::Screen)
    }

    /// The accepted camera lenses (as sources).
    pub const fn lenses(&self) -> SourceSet {
        self.accepted_sources.cameras()
    }

    /// Whether any camera lens is accepted.
    pub const fn allows_camera(&self) -> bool {
        !self.lenses().is_empty()
    }

    /// Whether the participant may turn its camera on after join.
    pub const fn camera_may_turn_on(&self) -> bool {
        self.allows_camera() && matches!(self.camera_control, CameraControl::SelfOnly)
    }

    /// The sources granted when the call starts: the microphone if accepted, and every
    /// accepted lens if the camera is on at join (the client picks the lens within them).
    pub const fn join_grants(&self) -> SourceSet {
        let mic = self.accepted_sources.intersection(SourceSet::AUDIO);
        match self.camera_at_join {
            CameraAtJoin::On => mic.union(self.lenses()),
            CameraAtJoin::Off => mic,
        }
    }

    /// The constraints the join answer returns to a participant in this role.
    pub fn constraints(&self) -> ClientConstraints {
        let lenses = self.lenses();
        let mut lens_iter = lenses.iter().filter_map(Source::lens);
        let facing_mode = match (lens_iter.next(), lens_iter.next()) {
            (Some(only), None) => Some(only.facing_mode()),
            _ => None,
        };
        ClientConstraints {
            microphone: self.allows_microphone(),
            camera: self.allows_camera().then_some(CameraConstraints {
                lenses,
                facing_mode,
                on_at_join: self.camera_at_join == CameraAtJoin::On,
                may_turn_on: self.camera_may_turn_on(),
                caps: self.camera_caps,
            }),
            screen: self.allows_screen_share().then_some(self.screen_caps),
        }
    }

    /// The same role with every video source removed: microphone only, camera off.
    #[must_use]
    pub const fn without_video(&self) -> RoleProfile {
        RoleProfile {
            accepted_sources: self.accepted_sources.intersection(SourceSet::AUDIO),
            camera_at_join: CameraAtJoin::Off,
            camera_control: CameraControl::Nobody,
            ..*self
        }
    }

    fn validate(&self, role: Role) -> Result<(), ProfileProblem> {
        if role == Role::Customer && self.camera_at_join == CameraAtJoin::On {
            return Err(ProfileProblem::CustomerCameraOnAtJoin);
        }
        if self.camera_at_join == CameraAtJoin::On && !self.allows_camera() {
            return Err(ProfileProblem::CameraOnWithoutLens { role });
        }
        if let (CameraAtJoin::Off, CameraControl::Nobody, Some(lens)) = (
            self.camera_at_join,
            self.camera_control,
            self.lenses().iter().find_map(Source::lens),
        ) {
            return Err(ProfileProblem::UnreachableCamera { role, lens });
        }
        for (caps, which) in [
            (&self.camera_caps, CapsKind::Camera),
            (&self.screen_caps, CapsKind::Screen),
        ] {
            if let Some((field, value)) = caps.first_out_of_range() {
                return Err(ProfileProblem::CapOutOfRange {
                    role,
                    caps: which,
                    field,
                    value,
                });
            }
        }
        Ok(())
    }
}

/// A call profile: the rules for both roles plus call-wide limits.
///
/// In the daemon's config each `[profiles.NAME]` table is a [`crate::ProfileDef`]; see
/// [`crate::ProfileSet`] for how they combine with the built-ins ([`crate::BuiltinProfile`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The merchant's rules.
    pub merchant: RoleProfile,
    /// The customer's rules.
    pub customer: RoleProfile,
    /// Whether the call may be recorded (default `false`). Recording also needs the consent
    /// of each participant whose media goes into the file (see `docs/recording.md`).
    #[serde(default)]
    pub recording_allowed: bool,
    /// Whether a recording includes the merchant's screen share (default `false`: only the
    /// cameras and microphones are recorded). Needs `recording_allowed`.
    #[serde(default)]
    pub record_screen: bool,
}

impl Profile {
    /// The rules for `role`.
    pub const fn role(&self, role: Role) -> &RoleProfile {
        match role {
            Role::Merchant => &self.merchant,
            Role::Customer => &self.customer,
        }
    }

    /// The rules for `role`, mutably.
    pub fn role_mut(&mut self, role: Role) -> &mut RoleProfile {
        match role {
            Role::Merchant => &mut self.merchant,
            Role::Customer => &mut self.customer,
        }
    }

    /// Checks the invariants, returning the first broken one.
    ///
    /// - The customer's camera is off at join: only the customer can turn it on.
    /// - A camera that is on at join has an accepted lens.
    /// - An accepted lens can be on at some point (not `camera_at_join = off` together with
    ///   `camera_control = nobody`).
    /// - Every cap is in its [`crate::CapField::range`] (so a frame rate of 0 is refused).
    /// - `record_screen` only with `recording_allowed` (it would record nothing otherwise, and
    ///   a reader of the config would think screens are recorded).
    pub fn validate(&self) -> Result<(), ProfileProblem> {
        Role::ALL
            .into_iter()
            .try_for_each(|role| self.role(role).validate(role))?;
        if self.record_screen && !self.recording_allowed {
            return Err(ProfileProblem::RecordScreenWithoutRecording);
        }
        Ok(())
    }

    /// The constraints the join answer returns to a participant in `role`.
    pub fn constraints(&self, role: Role) -> ClientConstraints {
        self.role(role).constraints()
    }

    /// The same profile with every video source removed for both roles: what a call becomes
    /// when the merchant is eligible for audio only. Always valid if `self` is.
    #[must_use]
    pub const fn without_video(&self) -> Profile {
        Profile {
            merchant: self.merchant.without_video(),
            customer: self.customer.without_video(),
            recording_allowed: self.recording_allowed,
            record_screen: self.record_screen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::BuiltinProfile;
    use crate::constraints::FacingMode;

    #[test]
    fn builtins_are_valid_and_audio_only_versions_too() {
        for builtin in BuiltinProfile::ALL {
            let profile = builtin.profile();
            assert_eq!(profile.validate(), Ok(()), "{builtin}");
            let audio = profile.without_video();
            assert_eq!(audio.validate(), Ok(()), "{builtin} without video");
            for role in Role::ALL {
                assert!(
                    !audio
                        .role(role)
                        .accepted_sources
                        .intersects(SourceSet::VIDEO)
                );
                assert_eq!(
                    audio.role(role).allows_microphone(),
                    profile.role(role).allows_microphone()
                );
            }
        }
    }

    #[test]
    fn customer_constraints_in_the_default_profile_ask_for_the_rear_lens() {
        let c = BuiltinProfile::RearCameraOff
            .profile()
            .constraints(Role::Customer);
        let camera = c
            .camera
            .expect("the default profile gives the customer a camera");
        assert_eq!(camera.facing_mode, Some(FacingMode::Environment));
        assert_eq!(camera.lenses, SourceSet::of(&[Source::CameraRear]));
        assert!(!camera.on_at_join);
        assert!(camera.may_turn_on);
        assert!(c.microphone);
        assert_eq!(c.screen, None);

        let m = BuiltinProfile::RearCameraOff
            .profile()
            .constraints(Role::Merchant);
        let camera = m.camera.expect("the merchant has a camera");
        assert_eq!(
            camera.facing_mode, None,
            "either lens: the merchant chooses"
        );
        assert!(camera.on_at_join);
        assert_eq!(m.screen, Some(VideoCaps::FULL_HD_15));

        let a = BuiltinProfile::AudioOnly
            .profile()
            .constraints(Role::Customer);
        assert_eq!(
            a,
            ClientConstraints {
                microphone: true,
                camera: None,
                screen: None
            }
        );
    }

    #[test]
    fn record_screen_needs_recording_allowed() {
        let mut p = BuiltinProfile::RearCameraOff.profile();
        assert!(!p.record_screen, "screens are not recorded by default");
        p.record_screen = true;
        assert_eq!(
            p.validate(),
            Err(ProfileProblem::RecordScreenWithoutRecording)
        );
        assert_eq!(
            ProfileProblem::RecordScreenWithoutRecording.to_string(),
            "record_screen is true but recording_allowed is false: set recording_allowed = true, \
             or record_screen = false"
        );
        p.recording_allowed = true;
        assert_eq!(p.validate(), Ok(()));
        assert_eq!(p.without_video().validate(), Ok(()));
    }

    #[test]
    fn join_grants_follow_camera_at_join() {
        let p = BuiltinProfile::RearCameraOff.profile();
        assert_eq!(
            p.merchant.join_grants(),
            SourceSet::of(&[Source::Microphone, Source::CameraRear, Source::CameraFront])
        );
        assert_eq!(p.customer.join_grants(), SourceSet::AUDIO);
    }
}
