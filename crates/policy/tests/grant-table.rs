//! The grant state machine, table-driven: the gate at join, and every operation from the
//! join state under each built-in profile.

use std::time::{Duration, Instant};

use policy::{
    BuiltinProfile, CameraAtJoin, CameraControl, CameraSetting, Decision, Effects, Grants, Lens,
    MediaKind, ProfileOverride, Reason, Role, Source, SourceSet,
};

use BuiltinProfile::{AudioOnly, MerchantVideo, RearCameraOff};
use CameraSetting::{Off, On};
use Lens::{Front, Rear};
use Role::{Customer, Merchant};

const NONE: SourceSet = SourceSet::EMPTY;
const REAR: SourceSet = SourceSet::of(&[Source::CameraRear]);
const FRONT: SourceSet = SourceSet::of(&[Source::CameraFront]);
const BOTH: SourceSet = SourceSet::CAMERAS;
const SCREEN: SourceSet = SourceSet::of(&[Source::Screen]);
const MIC: SourceSet = SourceSet::AUDIO;

fn allow(role: Role, granted: SourceSet, revoked: SourceSet) -> Decision {
    Decision::Allow(Effects {
        role,
        granted,
        revoked,
        camera_requested: false,
    })
}

fn not_own(actor: Role, target: Role) -> Decision {
    Decision::Refuse(Reason::NotOwnCamera { actor, target })
}

#[test]
fn the_gate_at_join() {
    // (profile, role, audio, video, [microphone, camera_rear, camera_front, screen])
    #[rustfmt::skip]
    let table = [
        (RearCameraOff, Merchant, true, true,  [true, true,  true,  false]),
        (RearCameraOff, Customer, true, false, [true, false, false, false]),
        (MerchantVideo, Merchant, true, true,  [true, true,  true,  false]),
        (MerchantVideo, Customer, true, false, [true, false, false, false]),
        (AudioOnly,     Merchant, true, false, [true, false, false, false]),
        (AudioOnly,     Customer, true, false, [true, false, false, false]),
    ];
    let now = Instant::now();
    for (builtin, role, audio, video, by_source) in table {
        let g = Grants::new(&builtin.profile(), now);
        let ctx = format!("{builtin} {role}");
        assert_eq!(g.may_forward(role, MediaKind::Audio), audio, "{ctx}");
        assert_eq!(g.may_forward(role, MediaKind::Video), video, "{ctx}");
        for (source, want) in Source::ALL.into_iter().zip(by_source) {
            assert_eq!(g.may_forward_source(role, source), want, "{ctx} {source}");
        }
        assert_eq!(g.camera_on(role), video, "{ctx}");
        assert_eq!(g.camera_usage(role).is_on(), video, "{ctx}");
    }
}

#[test]
fn set_camera_from_the_join_state() {
    #[rustfmt::skip]
    let table = [
        // Only the owner switches a camera, whatever the profile and setting.
        (RearCameraOff, Merchant, Customer, On(Rear),  not_own(Merchant, Customer)),
        (RearCameraOff, Merchant, Customer, On(Front), not_own(Merchant, Customer)),
        (RearCameraOff, Merchant, Customer, Off,       not_own(Merchant, Customer)),
        (RearCameraOff, Customer, Merchant, On(Front), not_own(Customer, Merchant)),
        (RearCameraOff, Customer, Merchant, Off,       not_own(Customer, Merchant)),
        (MerchantVideo, Merchant, Customer, On(Front), not_own(Merchant, Customer)),
        (AudioOnly,     Merchant, Customer, On(Rear),  not_own(Merchant, Customer)),
        // The customer, default profile: rear only.
        (RearCameraOff, Customer, Customer, On(Rear),  allow(Customer, REAR, NONE)),
        (RearCameraOff, Customer, Customer, On(Front), Decision::Refuse(Reason::LensNotAllowed {
            role: Customer, lens: Front, allowed: REAR })),
        (RearCameraOff, Customer, Customer, Off,       allow(Customer, NONE, NONE)),
        // The customer, merchant-video: either lens.
        (MerchantVideo, Customer, Customer, On(Rear),  allow(Customer, REAR, NONE)),
        (MerchantVideo, Customer, Customer, On(Front), allow(Customer, FRONT, NONE)),
        // The merchant, camera on at join with both lenses: picking one revokes the other.
        (RearCameraOff, Merchant, Merchant, On(Front), allow(Merchant, NONE, REAR)),
        (MerchantVideo, Merchant, Merchant, On(Rear),  allow(Merchant, NONE, FRONT)),
        (RearCameraOff, Merchant, Merchant, Off,       allow(Merchant, NONE, BOTH)),
        // Audio-only: every camera refused; off is a no-op.
        (AudioOnly,     Customer, Customer, On(Rear),  Decision::Refuse(Reason::CameraNotAllowed { role: Customer })),
        (AudioOnly,     Merchant, Merchant, On(Front), Decision::Refuse(Reason::CameraNotAllowed { role: Merchant })),
        (AudioOnly,     Customer, Customer, Off,       allow(Customer, NONE, NONE)),
    ];
    let t0 = Instant::now();
    for (builtin, actor, target, setting, want) in table {
        let mut g = Grants::new(&builtin.profile(), t0);
        let before = g.clone();
        let got = g.set_camera(actor, target, setting, t0 + Duration::from_secs(1));
        let ctx = format!("{builtin}: {actor} sets {target}'s camera {setting:?}");
        assert_eq!(got, want, "{ctx}");
        match got {
            Decision::Refuse(_) => assert_eq!(g, before, "{ctx}: a refusal changes nothing"),
            Decision::Allow(e) => {
                let cams_after = g.granted(target).cameras();
                let cams_before = before.granted(target).cameras();
                assert_eq!(e.granted, cams_after.difference(cams_before), "{ctx}");
                assert_eq!(e.revoked, cams_before.difference(cams_after), "{ctx}");
                assert_eq!(e.keyframe_needed(), !e.granted.is_empty(), "{ctx}");
                assert_eq!(
                    g.may_forward(target, MediaKind::Video),
                    !cams_after.is_empty(),
                    "{ctx}"
                );
            }
        }
    }
}

#[test]
fn request_camera() {
    let requested = |role| {
        Decision::Allow(Effects {
            camera_requested: true,
            ..Effects::none(role)
        })
    };
    #[rustfmt::skip]
    let table = [
        (RearCameraOff, Merchant, Customer, requested(Customer)),
        (MerchantVideo, Merchant, Customer, requested(Customer)),
        // The merchant's camera is already on: nothing to ask.
        (RearCameraOff, Customer, Merchant, Decision::Allow(Effects::none(Merchant))),
        (RearCameraOff, Customer, Customer, Decision::Refuse(Reason::RequestOwnCamera { role: Customer })),
        (RearCameraOff, Merchant, Merchant, Decision::Refuse(Reason::RequestOwnCamera { role: Merchant })),
        (AudioOnly,     Merchant, Customer, Decision::Refuse(Reason::CameraNotAllowed { role: Customer })),
        (AudioOnly,     Customer, Merchant, Decision::Refuse(Reason::CameraNotAllowed { role: Merchant })),
    ];
    let t0 = Instant::now();
    for (builtin, actor, target, want) in table {
        let g = Grants::new(&builtin.profile(), t0);
        assert_eq!(
            g.request_camera(actor, target),
            want,
            "{builtin}: {actor} asks {target}"
        );
    }

    // Once the customer's camera is on, a request has nothing to ask.
    let mut g = Grants::new(&RearCameraOff.profile(), t0);
    assert!(g.set_camera(Customer, Customer, On(Rear), t0).is_allowed());
    assert_eq!(
        g.request_camera(Merchant, Customer),
        Decision::Allow(Effects::none(Customer))
    );
}

#[test]
fn screen_and_microphone() {
    type Op = fn(&mut Grants) -> Decision;
    #[rustfmt::skip]
    let table: [(BuiltinProfile, &str, Op, Decision); 9] = [
        (RearCameraOff, "merchant shares", |g| g.set_screen(Merchant, Merchant, true),
            allow(Merchant, SCREEN, NONE)),
        (RearCameraOff, "merchant stops sharing (not sharing)", |g| g.set_screen(Merchant, Merchant, false),
            allow(Merchant, NONE, NONE)),
        (RearCameraOff, "customer shares", |g| g.set_screen(Customer, Customer, true),
            Decision::Refuse(Reason::ScreenShareNotAllowed { role: Customer })),
        (RearCameraOff, "merchant shares the customer's screen", |g| g.set_screen(Merchant, Customer, true),
            Decision::Refuse(Reason::NotOwnScreen { actor: Merchant, target: Customer })),
        (AudioOnly, "merchant shares", |g| g.set_screen(Merchant, Merchant, true),
            Decision::Refuse(Reason::ScreenShareNotAllowed { role: Merchant })),
        (RearCameraOff, "customer mutes", |g| g.set_microphone(Customer, Customer, false),
            allow(Customer, NONE, MIC)),
        (RearCameraOff, "customer unmutes (not muted)", |g| g.set_microphone(Customer, Customer, true),
            allow(Customer, NONE, NONE)),
        (RearCameraOff, "merchant mutes the customer", |g| g.set_microphone(Merchant, Customer, false),
            Decision::Refuse(Reason::NotOwnMicrophone { actor: Merchant, target: Customer })),
        (AudioOnly, "customer mutes", |g| g.set_microphone(Customer, Customer, false),
            allow(Customer, NONE, MIC)),
    ];
    for (builtin, what, op, want) in table {
        let mut g = Grants::new(&builtin.profile(), Instant::now());
        let before = g.clone();
        let got = op(&mut g);
        assert_eq!(got, want, "{builtin}: {what}");
        if !got.is_allowed() {
            assert_eq!(g, before, "{builtin}: {what}");
        }
    }
}

#[test]
fn a_shared_screen_is_video_and_needs_a_keyframe() {
    let mut g = Grants::new(&RearCameraOff.profile(), Instant::now());
    let e = g.set_screen(Merchant, Merchant, true).effects().unwrap();
    assert!(e.keyframe_needed());
    assert!(g.may_forward_source(Merchant, Source::Screen));
    let _ = g.set_camera(Merchant, Merchant, Off, Instant::now());
    assert!(
        g.may_forward(Merchant, MediaKind::Video),
        "the screen is still video"
    );
    assert!(!g.may_forward_source(Merchant, Source::CameraFront));
}

#[test]
fn a_muted_microphone_stops_audio_and_comes_back() {
    let mut g = Grants::new(&RearCameraOff.profile(), Instant::now());
    let _ = g.set_microphone(Customer, Customer, false);
    assert!(!g.may_forward(Customer, MediaKind::Audio));
    let e = g
        .set_microphone(Customer, Customer, true)
        .effects()
        .unwrap();
    assert_eq!(e.granted, MIC);
    assert!(!e.keyframe_needed(), "audio needs no keyframe");
    assert!(g.may_forward(Customer, MediaKind::Audio));

    // A profile with no microphone for the customer refuses to unmute it.
    let mut o = ProfileOverride::default();
    o.customer.accepted_sources = Some(REAR);
    let profile = o.apply(&RearCameraOff.profile());
    let mut g = Grants::new(&profile, Instant::now());
    assert!(!g.may_forward(Customer, MediaKind::Audio));
    assert_eq!(
        g.set_microphone(Customer, Customer, true),
        Decision::Refuse(Reason::MicrophoneNotAllowed { role: Customer })
    );
}

#[test]
fn a_camera_nobody_controls_stays_off_once_off() {
    let mut o = ProfileOverride::default();
    o.merchant.camera_control = Some(CameraControl::Nobody);
    o.merchant.accepted_sources = Some(MIC.union(FRONT));
    let profile = o.apply(&RearCameraOff.profile());
    assert_eq!(profile.validate(), Ok(()));
    assert_eq!(profile.merchant.camera_at_join, CameraAtJoin::On);

    let t0 = Instant::now();
    let mut g = Grants::new(&profile, t0);
    assert!(g.may_forward_source(Merchant, Source::CameraFront));
    assert_eq!(g.lens(Merchant), Some(Front));
    // Re-affirming the lens that is on is allowed and changes nothing.
    assert_eq!(
        g.set_camera(Merchant, Merchant, On(Front), t0),
        allow(Merchant, NONE, NONE)
    );
    assert_eq!(
        g.set_camera(Merchant, Merchant, Off, t0),
        allow(Merchant, NONE, FRONT)
    );
    assert_eq!(
        g.set_camera(Merchant, Merchant, On(Front), t0),
        Decision::Refuse(Reason::CameraLocked { role: Merchant })
    );
    assert_eq!(
        g.request_camera(Customer, Merchant),
        Decision::Refuse(Reason::CameraLocked { role: Merchant })
    );
}

#[test]
fn switching_lens_keeps_the_camera_clock_running() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut g = Grants::new(&MerchantVideo.profile(), t0);
    assert_eq!(g.camera_time(Customer, t0 + s(100)), Duration::ZERO);
    assert!(!g.camera_usage(Customer).ever_on());

    let _ = g.set_camera(Customer, Customer, On(Rear), t0 + s(10));
    assert_eq!(g.lens(Customer), Some(Rear));
    let e = g
        .set_camera(Customer, Customer, On(Front), t0 + s(20))
        .effects()
        .unwrap();
    assert_eq!((e.granted, e.revoked), (FRONT, REAR));
    assert!(e.keyframe_needed());
    assert!(!g.may_forward_source(Customer, Source::CameraRear));
    assert!(g.may_forward_source(Customer, Source::CameraFront));
    assert_eq!(g.camera_usage(Customer).on_since(), Some(t0 + s(10)));
    let _ = g.set_camera(Customer, Customer, Off, t0 + s(45));
    assert_eq!(g.camera_time(Customer, t0 + s(100)), s(35));
    assert!(g.camera_usage(Customer).ever_on());

    // The merchant's camera was on from the start.
    assert_eq!(g.camera_time(Merchant, t0 + s(100)), s(100));
}
