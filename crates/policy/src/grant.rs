//! Grants: per call, which sources of each participant are granted to be forwarded now.
//!
//! The state machine at the heart of the policy. It starts from the profile
//! ([`crate::RoleProfile::join_grants`]) and changes only through the operations below, each
//! returning a [`Decision`]. The SFU asks [`Grants::may_forward`] (by negotiated kind) or
//! [`Grants::may_forward_source`] (by a track's accepted source) for every packet at ingress:
//! both are a bit test on a `Copy` byte, with no allocation, so they are safe on the
//! per-packet path. Anything not granted is dropped: the gate fails closed.
//!
//! Rules:
//! - A participant switches only its own camera, screen share and microphone; any other
//!   actor is refused ([`Reason::NotOwnCamera`], ...). So the customer's camera is turned on
//!   only by the customer.
//! - Turning one's own camera, screen share or microphone off is always allowed.
//! - Turning a camera on needs an accepted lens and `camera_control = self_only`; at most one
//!   lens is on after a [`Grants::set_camera`] (turning on the other lens switches to it).
//!   A camera on at join has every accepted lens granted until its owner picks one.
//! - A participant may ask the other to turn its camera on ([`Grants::request_camera`]): that
//!   yields an event to emit and changes nothing.

use std::time::{Duration, Instant};

use crate::camera::CameraUsage;
use crate::decision::{Decision, Effects, Reason};
use crate::profile::{CameraControl, Profile};
use crate::role::{MediaKind, Role};
use crate::source::{Lens, Source};
use crate::source_set::SourceSet;

/// What a camera command asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CameraSetting {
    /// Camera off: every lens revoked.
    Off,
    /// Camera on with this lens (switching from the other lens if that one is on).
    On(Lens),
}

/// The grant state of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    profile: Profile,
    granted: [SourceSet; 2],
    camera: [CameraUsage; 2],
}

impl Grants {
    /// The state at the start of a call under `profile` (which should be valid, as every
    /// profile from [`crate::ProfileSet`] is). A camera on at join starts counting at `now`.
    pub fn new(profile: &Profile, now: Instant) -> Grants {
        let mut grants = Grants {
            profile: *profile,
            granted: [SourceSet::EMPTY; 2],
            camera: [CameraUsage::new(); 2],
        };
        for role in Role::ALL {
            let initial = profile.role(role).join_grants();
            grants.granted[role.index()] = initial;
            if initial.intersects(SourceSet::CAMERAS) {
                grants.camera[role.index()].start(now);
            }
        }
        grants
    }

    /// The profile the call runs under.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Whether media of `kind` from `from` may be forwarded now: for video, whether a camera
    /// lens or the screen is granted; for audio, whether the microphone is.
    ///
    /// Use it for packets whose source is unknown (e.g. an undeclared SSRC), or as the
    /// coarse gate; [`Grants::may_forward_source`] is the precise one for accepted tracks.
    #[inline]
    pub fn may_forward(&self, from: Role, kind: MediaKind) -> bool {
        self.granted[from.index()].intersects(SourceSet::of_kind(kind))
    }

    /// Whether a track of `from` that was accepted at join as `source` may be forwarded now.
    #[inline]
    pub fn may_forward_source(&self, from: Role, source: Source) -> bool {
        self.granted[from.index()].contains(source)
    }

    /// Every source of `role` granted now.
    pub fn granted(&self, role: Role) -> SourceSet {
        self.granted[role.index()]
    }

    /// Whether `role`'s camera is on (some lens granted).
    pub fn camera_on(&self, role: Role) -> bool {
        self.granted[role.index()].intersects(SourceSet::CAMERAS)
    }

    /// The lens `role`'s camera is on with, if exactly one lens is granted.
    pub fn lens(&self, role: Role) -> Option<Lens> {
        let cameras = self.granted[role.index()].cameras();
        match cameras.len() {
            1 => cameras.iter().next().and_then(Source::lens),
            _ => None,
        }
    }

    /// `role`'s camera stopwatch.
    pub fn camera_usage(&self, role: Role) -> &CameraUsage {
        &self.camera[role.index()]
    }

    /// How long `role`'s camera has been on in total, up to `now`.
    pub fn camera_time(&self, role: Role, now: Instant) -> Duration {
        self.camera[role.index()].total(now)
    }

    /// `actor` sets `target`'s camera.
    ///
    /// Refused unless `actor == target` ([`Reason::NotOwnCamera`]: a merchant can never turn
    /// the customer's camera on). Off is then always allowed. On needs a camera in the
    /// profile ([`Reason::CameraNotAllowed`]), that lens accepted
    /// ([`Reason::LensNotAllowed`]) and, unless the lens is already on,
    /// `camera_control = self_only` ([`Reason::CameraLocked`]). An allowed On whose lens was
    /// not on has [`Effects::keyframe_needed`].
    pub fn set_camera(
        &mut self,
        actor: Role,
        target: Role,
        setting: CameraSetting,
        now: Instant,
    ) -> Decision {
        if actor != target {
            return Decision::Refuse(Reason::NotOwnCamera { actor, target });
        }
        let rules = self.profile.role(target);
        let i = target.index();
        let on = self.granted[i].cameras();
        let want = match setting {
            CameraSetting::Off => SourceSet::EMPTY,
            CameraSetting::On(lens) => {
                if !rules.allows_camera() {
                    return Decision::Refuse(Reason::CameraNotAllowed { role: target });
                }
                if !rules.accepted_sources.contains(lens.source()) {
                    return Decision::Refuse(Reason::LensNotAllowed {
                        role: target,
                        lens,
                        allowed: rules.lenses(),
                    });
                }
                if !on.contains(lens.source()) && rules.camera_control == CameraControl::Nobody {
                    return Decision::Refuse(Reason::CameraLocked { role: target });
                }
                SourceSet::from(lens.source())
            }
        };
        self.granted[i] = self.granted[i].difference(SourceSet::CAMERAS).union(want);
        if want.is_empty() {
            self.camera[i].stop(now);
        } else {
            self.camera[i].start(now);
        }
        Decision::Allow(Effects {
            role: target,
            granted: want.difference(on),
            revoked: on.difference(want),
            camera_requested: false,
        })
    }

    /// `actor` asks `target` to turn its camera on. Nothing changes; if allowed and the
    /// camera is off, [`Effects::camera_requested`] tells the caller to emit a
    /// CameraRequested event to `target`'s client (if it is already on, there is nothing to
    /// ask and the effects are empty).
    ///
    /// Refused when asking oneself ([`Reason::RequestOwnCamera`]) and when `target` could not
    /// turn its camera on anyway ([`Reason::CameraNotAllowed`], [`Reason::CameraLocked`]).
    pub fn request_camera(&self, actor: Role, target: Role) -> Decision {
        if actor == target {
            return Decision::Refuse(Reason::RequestOwnCamera { role: actor });
        }
        let rules = self.profile.role(target);
        if !rules.allows_camera() {
            return Decision::Refuse(Reason::CameraNotAllowed { role: target });
        }
        if rules.camera_control == CameraControl::Nobody {
            return Decision::Refuse(Reason::CameraLocked { role: target });
        }
        Decision::Allow(Effects {
            camera_requested: !self.camera_on(target),
            ..Effects::none(target)
        })
    }

    /// `actor` turns `target`'s screen share on or off. Only the owner may; on needs `screen`
    /// in the profile ([`Reason::ScreenShareNotAllowed`]); off is always allowed to the owner.
    pub fn set_screen(&mut self, actor: Role, target: Role, on: bool) -> Decision {
        if actor != target {
            return Decision::Refuse(Reason::NotOwnScreen { actor, target });
        }
        if on && !self.profile.role(target).allows_screen_share() {
            return Decision::Refuse(Reason::ScreenShareNotAllowed { role: target });
        }
        self.switch(target, Source::Screen, on)
    }

    /// `actor` turns `target`'s microphone on or off (a server-side mute). Only the owner
    /// may; on needs `microphone` in the profile ([`Reason::MicrophoneNotAllowed`]).
    pub fn set_microphone(&mut self, actor: Role, target: Role, on: bool) -> Decision {
        if actor != target {
            return Decision::Refuse(Reason::NotOwnMicrophone { actor, target });
        }
        if on && !self.profile.role(target).allows_microphone() {
            return Decision::Refuse(Reason::MicrophoneNotAllowed { role: target });
        }
        self.switch(target, Source::Microphone, on)
    }

    fn switch(&mut self, role: Role, source: Source, on: bool) -> Decision {
        let i = role.index();
        let was = self.granted[i].contains(source);
        self.granted[i] = if on {
            self.granted[i].with(source)
        } else {
            self.granted[i].without(source)
        };
        let changed = if was != on {
            SourceSet::from(source)
        } else {
            SourceSet::EMPTY
        };
        Decision::Allow(Effects {
            granted: if on { changed } else { SourceSet::EMPTY },
            revoked: if on { SourceSet::EMPTY } else { changed },
            ..Effects::none(role)
        })
    }
}
