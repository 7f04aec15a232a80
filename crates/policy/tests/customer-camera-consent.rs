//! Property tests over random operation sequences, from either actor, under the built-in
//! profiles and random valid profiles:
//!
//! - no sequence forwards a participant's camera unless the last allowed change of that
//!   camera was the participant's own `On` with that lens (or, for the merchant only, no
//!   change yet and the camera on at join); in particular the customer's;
//! - no video of a role is forwarded unless its camera or its own screen share is granted;
//! - audio-only never forwards video;
//! - a refusal changes nothing, and the effects are exactly the change in grants;
//! - camera time is monotone and equals the sum of the on-intervals.

use std::time::{Duration, Instant};

use policy::{
    BuiltinProfile, CameraAtJoin, CameraControl, CameraSetting, Decision, Grants, Lens, MediaKind,
    Profile, Reason, Role, RoleProfile, Source, SourceSet, VideoCaps,
};
use proptest::prelude::*;

#[derive(Debug, Clone, Copy)]
enum Op {
    SetCamera(Role, Role, CameraSetting),
    RequestCamera(Role, Role),
    SetScreen(Role, Role, bool),
    SetMicrophone(Role, Role, bool),
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Merchant), Just(Role::Customer)]
}

fn setting() -> impl Strategy<Value = CameraSetting> {
    prop_oneof![
        Just(CameraSetting::Off),
        Just(CameraSetting::On(Lens::Rear)),
        Just(CameraSetting::On(Lens::Front)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (role(), role(), setting()).prop_map(|(a, t, s)| Op::SetCamera(a, t, s)),
        1 => (role(), role()).prop_map(|(a, t)| Op::RequestCamera(a, t)),
        1 => (role(), role(), any::<bool>()).prop_map(|(a, t, on)| Op::SetScreen(a, t, on)),
        1 => (role(), role(), any::<bool>()).prop_map(|(a, t, on)| Op::SetMicrophone(a, t, on)),
    ]
}

/// An operation and how long after the previous one it happens.
fn steps() -> impl Strategy<Value = Vec<(Op, Duration)>> {
    proptest::collection::vec((op(), (0u64..5_000).prop_map(Duration::from_millis)), 0..60)
}

fn role_profile() -> impl Strategy<Value = RoleProfile> {
    (
        proptest::sample::subsequence(Source::ALL.to_vec(), 0..=4),
        prop_oneof![Just(CameraAtJoin::Off), Just(CameraAtJoin::On)],
        prop_oneof![Just(CameraControl::SelfOnly), Just(CameraControl::Nobody)],
    )
        .prop_map(|(sources, camera_at_join, camera_control)| RoleProfile {
            accepted_sources: sources.into_iter().collect(),
            camera_at_join,
            camera_control,
            camera_caps: VideoCaps::HD_30,
            screen_caps: VideoCaps::FULL_HD_15,
        })
}

/// Makes a random role profile valid: the customer's camera is off at join; a camera on at
/// join has a lens; a lens nobody can turn on is dropped.
fn repair(role: Role, mut r: RoleProfile) -> RoleProfile {
    if role == Role::Customer || r.lenses().is_empty() {
        r.camera_at_join = CameraAtJoin::Off;
    }
    if r.camera_at_join == CameraAtJoin::Off && r.camera_control == CameraControl::Nobody {
        r.accepted_sources = r.accepted_sources.difference(SourceSet::CAMERAS);
    }
    r
}

/// The built-ins and random valid profiles.
fn profile() -> impl Strategy<Value = Profile> {
    prop_oneof![
        1 => proptest::sample::select(BuiltinProfile::ALL.to_vec()).prop_map(BuiltinProfile::profile),
        2 => (role_profile(), role_profile()).prop_map(|(merchant, customer)| {
            let p = Profile {
                merchant: repair(Role::Merchant, merchant),
                customer: repair(Role::Customer, customer),
                recording_allowed: false,
                record_screen: false,
            };
            assert_eq!(p.validate(), Ok(()), "repair makes any profile valid");
            p
        }),
    ]
}

/// What the tests remember of one role's history.
#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    /// The last allowed `set_camera` targeting this role: (actor, setting).
    last_camera: Option<(Role, CameraSetting)>,
    /// The last allowed `set_screen` targeting this role: (actor, on).
    last_screen: Option<(Role, bool)>,
    /// Model camera clock: when the current on-interval started, and the finished sum.
    on_since: Option<Instant>,
    finished: Duration,
}

fn run(profile: Profile, steps: &[(Op, Duration)]) -> Result<(), TestCaseError> {
    let t0 = Instant::now();
    let mut now = t0;
    let mut g = Grants::new(&profile, now);
    let mut memory = [Memory::default(); 2];
    for role in Role::ALL {
        if g.camera_on(role) {
            memory[role.index()].on_since = Some(now);
        }
    }
    let mut last_total = [Duration::ZERO; 2];

    for &(op, dt) in steps {
        now += dt;
        let before = g.clone();
        let (target, decision) = match op {
            Op::SetCamera(a, t, s) => (t, g.set_camera(a, t, s, now)),
            Op::RequestCamera(a, t) => (t, g.request_camera(a, t)),
            Op::SetScreen(a, t, on) => (t, g.set_screen(a, t, on)),
            Op::SetMicrophone(a, t, on) => (t, g.set_microphone(a, t, on)),
        };

        match decision {
            Decision::Refuse(reason) => {
                // Refusals change nothing (the camera clock included).
                prop_assert_eq!(
                    &g,
                    &before,
                    "{:?} refused ({}) but changed state",
                    op,
                    reason
                );
                // Nobody switches anybody else's camera.
                if let Op::SetCamera(a, t, _) = op {
                    if a != t {
                        prop_assert_eq!(
                            reason,
                            Reason::NotOwnCamera {
                                actor: a,
                                target: t
                            }
                        );
                    }
                }
            }
            Decision::Allow(e) => {
                prop_assert_eq!(e.role, target);
                let (was, is) = (before.granted(target), g.granted(target));
                prop_assert_eq!(e.granted, is.difference(was), "{:?}", op);
                prop_assert_eq!(e.revoked, was.difference(is), "{:?}", op);
                prop_assert_eq!(
                    e.keyframe_needed(),
                    is.difference(was).intersects(SourceSet::VIDEO)
                );
                // The other role is untouched.
                prop_assert_eq!(g.granted(target.other()), before.granted(target.other()));
                let m = &mut memory[target.index()];
                match op {
                    Op::SetCamera(a, t, s) => {
                        prop_assert_eq!(a, t, "only the owner may switch a camera");
                        m.last_camera = Some((a, s));
                    }
                    Op::SetScreen(a, t, on) => {
                        prop_assert_eq!(a, t, "only the owner may switch a screen share");
                        m.last_screen = Some((a, on));
                    }
                    Op::SetMicrophone(a, t, _) => prop_assert_eq!(a, t),
                    Op::RequestCamera(a, t) => {
                        prop_assert_ne!(a, t);
                        prop_assert_eq!(&g, &before, "a request changes nothing");
                        prop_assert_eq!(e.camera_requested, !g.camera_on(t));
                    }
                }
                // Model camera clock.
                match (before.camera_on(target), g.camera_on(target)) {
                    (false, true) => m.on_since = Some(now),
                    (true, false) => {
                        let since = m.on_since.take().expect("the model saw the camera go on");
                        m.finished += now - since;
                    }
                    _ => {}
                }
            }
        }

        for role in Role::ALL {
            let m = memory[role.index()];
            let rules = profile.role(role);
            // Who opened the camera: the owner, with that lens.
            for lens in Lens::ALL {
                if g.may_forward_source(role, lens.source()) {
                    let own_on = m.last_camera == Some((role, CameraSetting::On(lens)));
                    let at_join = m.last_camera.is_none()
                        && rules.camera_at_join == CameraAtJoin::On
                        && rules.accepted_sources.contains(lens.source());
                    prop_assert!(
                        own_on || at_join,
                        "{} {} forwarded after {:?}",
                        role,
                        lens,
                        m
                    );
                    prop_assert!(
                        role == Role::Merchant || own_on,
                        "customer {} without consent",
                        lens
                    );
                }
            }
            // Video at all: a camera as above, or the owner's own screen share.
            if g.may_forward(role, MediaKind::Video) {
                let camera = Lens::ALL
                    .into_iter()
                    .any(|l| g.may_forward_source(role, l.source()));
                let screen = g.may_forward_source(role, Source::Screen);
                prop_assert!(camera || screen);
                if screen {
                    prop_assert_eq!(m.last_screen, Some((role, true)));
                }
            }
            // Never more than the profile accepts.
            prop_assert!(g.granted(role).is_subset(rules.accepted_sources));
            // Audio-only never forwards video.
            if !rules.accepted_sources.intersects(SourceSet::VIDEO) {
                prop_assert!(!g.may_forward(role, MediaKind::Video));
            }
            // Camera time: monotone, and the sum of the model's intervals.
            let total = g.camera_time(role, now);
            prop_assert!(total >= last_total[role.index()], "camera time went down");
            last_total[role.index()] = total;
            let running = m.on_since.map_or(Duration::ZERO, |since| now - since);
            prop_assert_eq!(total, m.finished + running);
            prop_assert_eq!(g.camera_usage(role).accumulated(), m.finished);
            prop_assert_eq!(g.camera_usage(role).is_on(), g.camera_on(role));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn no_sequence_opens_a_camera_without_its_owner(profile in profile(), steps in steps()) {
        run(profile, &steps)?;
    }

    #[test]
    fn customer_video_under_the_default_profile(steps in steps()) {
        run(BuiltinProfile::RearCameraOff.profile(), &steps)?;
    }

    #[test]
    fn audio_only_never_forwards_video(steps in steps()) {
        let profile = BuiltinProfile::AudioOnly.profile();
        let mut g = Grants::new(&profile, Instant::now());
        let mut now = Instant::now();
        for (op, dt) in steps {
            now += dt;
            let _ = match op {
                Op::SetCamera(a, t, s) => g.set_camera(a, t, s, now),
                Op::RequestCamera(a, t) => g.request_camera(a, t),
                Op::SetScreen(a, t, on) => g.set_screen(a, t, on),
                Op::SetMicrophone(a, t, on) => g.set_microphone(a, t, on),
            };
            for role in Role::ALL {
                prop_assert!(!g.may_forward(role, MediaKind::Video));
                for source in [Source::CameraRear, Source::CameraFront, Source::Screen] {
                    prop_assert!(!g.may_forward_source(role, source));
                }
                prop_assert_eq!(g.camera_time(role, now), Duration::ZERO);
            }
        }
    }

    /// The merchant can never turn the customer's camera on, whatever came before.
    #[test]
    fn merchant_set_camera_for_the_customer_is_always_refused(
        profile in profile(),
        steps in steps(),
        setting in setting(),
    ) {
        let mut now = Instant::now();
        let mut g = Grants::new(&profile, now);
        for (op, dt) in steps {
            now += dt;
            let _ = match op {
                Op::SetCamera(a, t, s) => g.set_camera(a, t, s, now),
                Op::RequestCamera(a, t) => g.request_camera(a, t),
                Op::SetScreen(a, t, on) => g.set_screen(a, t, on),
                Op::SetMicrophone(a, t, on) => g.set_microphone(a, t, on),
            };
        }
        prop_assert_eq!(
            g.set_camera(Role::Merchant, Role::Customer, setting, now),
            Decision::Refuse(Reason::NotOwnCamera { actor: Role::Merchant, target: Role::Customer })
        );
    }
}
