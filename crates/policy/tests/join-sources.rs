//! Declared sources at Join: every role x built-in profile x source, plus kind lies and
//! duplicates.

use policy::{
    BuiltinProfile, DeclaredTrack, FacingMode, Lens, MediaKind, Role, Source, SourceSet,
    TrackConstraints, TrackOutcome, TrackRefusal, VideoCaps, review_join,
};

use BuiltinProfile::{AudioOnly, MerchantVideo, RearCameraOff};
use Role::{Customer, Merchant};
use Source::{CameraFront, CameraRear, Microphone, Screen};

/// What the review should say about one track declared alone, with its true kind.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    Accept,
    NotAccepted,
    NoScreen,
}

#[test]
fn each_source_alone_for_each_role_and_profile() {
    use Want::{Accept, NoScreen, NotAccepted};
    #[rustfmt::skip]
    let table = [
        // profile        role      microphone camera_rear  camera_front screen
        (RearCameraOff, Customer, [Accept,   Accept,      NotAccepted, NoScreen]),
        (RearCameraOff, Merchant, [Accept,   Accept,      Accept,      Accept]),
        (MerchantVideo, Customer, [Accept,   Accept,      Accept,      NoScreen]),
        (MerchantVideo, Merchant, [Accept,   Accept,      Accept,      Accept]),
        (AudioOnly,     Customer, [Accept,   NotAccepted, NotAccepted, NoScreen]),
        (AudioOnly,     Merchant, [Accept,   NotAccepted, NotAccepted, NoScreen]),
    ];
    for (builtin, role, wants) in table {
        let profile = builtin.profile();
        for (source, want) in Source::ALL.into_iter().zip(wants) {
            let review = review_join(
                &profile,
                role,
                [DeclaredTrack {
                    key: "0",
                    source,
                    kind: source.kind(),
                }],
            );
            let outcome = review.tracks[0].outcome;
            let ctx = format!("{builtin} {role} {source}");
            match want {
                Accept => assert!(matches!(outcome, TrackOutcome::Accept(_)), "{ctx}"),
                NotAccepted => assert_eq!(
                    outcome,
                    TrackOutcome::Refuse(TrackRefusal::SourceNotAccepted {
                        role,
                        declared: source,
                        accepted: profile.role(role).accepted_sources,
                    }),
                    "{ctx}"
                ),
                NoScreen => assert_eq!(
                    outcome,
                    TrackOutcome::Refuse(TrackRefusal::ScreenShareNotAllowed { role }),
                    "{ctx}"
                ),
            }
            assert_eq!(review.role, role);
            assert_eq!(review.constraints, profile.constraints(role), "{ctx}");
        }
    }
}

#[test]
fn accepted_tracks_carry_the_constraints_to_apply() {
    let profile = RearCameraOff.profile();
    let review = review_join(
        &profile,
        Merchant,
        Source::ALL.map(|source| DeclaredTrack {
            key: source.as_str(),
            source,
            kind: source.kind(),
        }),
    );
    let got: Vec<_> = review.tracks.iter().map(|t| (t.key, t.outcome)).collect();
    assert_eq!(
        got,
        [
            (
                "microphone",
                TrackOutcome::Accept(TrackConstraints::Microphone)
            ),
            (
                "camera_rear",
                TrackOutcome::Accept(TrackConstraints::Camera {
                    lens: Lens::Rear,
                    facing_mode: FacingMode::Environment,
                    caps: VideoCaps::HD_30,
                })
            ),
            (
                "camera_front",
                TrackOutcome::Accept(TrackConstraints::Camera {
                    lens: Lens::Front,
                    facing_mode: FacingMode::User,
                    caps: VideoCaps::HD_30,
                })
            ),
            (
                "screen",
                TrackOutcome::Accept(TrackConstraints::Screen {
                    caps: VideoCaps::FULL_HD_15,
                })
            ),
        ]
    );
}

#[test]
fn a_declared_source_must_match_the_negotiated_kind() {
    let profile = MerchantVideo.profile();
    for source in Source::ALL {
        for kind in MediaKind::ALL {
            let review = review_join(
                &profile,
                Merchant,
                [DeclaredTrack {
                    key: 7u32,
                    source,
                    kind,
                }],
            );
            let refusal = review.tracks[0].refusal();
            if kind == source.kind() {
                assert_eq!(refusal, None, "{source} on {kind}");
            } else {
                assert_eq!(
                    refusal,
                    Some(TrackRefusal::KindMismatch {
                        declared: source,
                        negotiated: kind
                    }),
                    "{source} on {kind}"
                );
            }
        }
    }
    let text = TrackRefusal::KindMismatch {
        declared: CameraRear,
        negotiated: MediaKind::Audio,
    }
    .to_string();
    assert_eq!(
        text,
        "declared source camera_rear is video but the m-line is audio"
    );
}

/// (what the row checks, the declared tracks, the refusal expected for each).
type Case = (
    &'static str,
    Vec<DeclaredTrack<&'static str>>,
    Vec<Option<TrackRefusal>>,
);

#[test]
fn duplicates_and_the_order_of_checks() {
    let t =
        |key: &'static str, source: Source, kind: MediaKind| DeclaredTrack { key, source, kind };
    let v = MediaKind::Video;
    let a = MediaKind::Audio;
    #[rustfmt::skip]
    let table: [Case; 5] = [
        ("same key twice: the second is refused even if valid",
         vec![t("0", Microphone, a), t("0", CameraRear, v)],
         vec![None, Some(TrackRefusal::DuplicateKey)]),
        ("same source twice: the second is refused",
         vec![t("0", CameraRear, v), t("1", CameraRear, v)],
         vec![None, Some(TrackRefusal::DuplicateSource { declared: CameraRear })]),
        ("a refused first track does not block a later valid one",
         vec![t("0", CameraRear, a), t("1", CameraRear, v)],
         vec![Some(TrackRefusal::KindMismatch { declared: CameraRear, negotiated: a }), None]),
        ("kind is checked before acceptance",
         vec![t("0", CameraFront, a)],
         vec![Some(TrackRefusal::KindMismatch { declared: CameraFront, negotiated: a })]),
        ("an empty request is fine",
         vec![],
         vec![]),
    ];
    for (what, tracks, want) in table {
        let review = review_join(&RearCameraOff.profile(), Customer, tracks);
        let got: Vec<_> = review.tracks.iter().map(|t| t.refusal()).collect();
        assert_eq!(got, want, "{what}");
        assert_eq!(
            review.accepted().count() + review.refused().count(),
            review.tracks.len()
        );
    }
}

#[test]
fn refusal_texts() {
    let table = [
        (
            TrackRefusal::SourceNotAccepted {
                role: Customer,
                declared: CameraFront,
                accepted: SourceSet::of(&[Microphone, CameraRear]),
            },
            "camera_front is not accepted for the customer (accepted: microphone, camera_rear)",
        ),
        (
            TrackRefusal::ScreenShareNotAllowed { role: Customer },
            "screen sharing is not allowed for the customer",
        ),
        (
            TrackRefusal::DuplicateSource { declared: Screen },
            "another track already carries screen",
        ),
        (
            TrackRefusal::DuplicateKey,
            "another track in the request has the same key",
        ),
    ];
    for (refusal, text) in table {
        assert_eq!(refusal.to_string(), text);
    }
}
