//! Policy: the call-policy values on the wire. Profile overrides, merchant standing and
//! declared tracks in (checked); what CreateCall decided, track verdicts and client
//! constraints out.
//!
//! The policy itself validates what it owns (cap ranges, profile invariants) and its
//! messages reach the caller unchanged through `status.rs`; this module only refuses what
//! cannot even be expressed as a policy value: UNSPECIFIED or unknown enum values, a source
//! listed twice, a mid that is empty or declared twice.

use sfu::policy::{
    CameraAtJoin, CameraConstraints, CameraControl, CapsOverride, ClientConstraints, FacingMode,
    Ineligible, MediaKind, MerchantStanding, NAME_MAX_LEN, ProfileOverride, RoleOverride, Source,
    SourceSet, TrackConstraints, TrackOutcome, TrackRefusal, TrackVerdict, VideoCaps,
};
use sfu::{CallOptions, CreatedCall, DeclaredSource, Role};
use shopcall_proto::v1 as pb;

use super::{RequestError, call_limits, enum_text, initiator, lens, optional_ref};

/// The options of a CreateCall request.
pub fn call_options(req: pb::CreateCallRequest) -> Result<CallOptions, RequestError> {
    if req.profile.len() > NAME_MAX_LEN {
        return Err(RequestError::TooLong {
            field: "profile",
            max: NAME_MAX_LEN,
        });
    }
    Ok(CallOptions {
        initiator: initiator(req.initiator)?,
        profile: (!req.profile.is_empty()).then_some(req.profile),
        profile_override: profile_override(req.profile_override.unwrap_or_default())?,
        merchant_standing: req.merchant_standing.map(|s| MerchantStanding {
            rating: s.rating,
            reply_rate: s.reply_rate,
            video_opt_in: s.video_opt_in,
        }),
        merchant_ref: optional_ref("merchant_ref", req.merchant_ref)?,
        customer_ref: optional_ref("customer_ref", req.customer_ref)?,
        limits: call_limits(req.limits)?,
    })
}

/// A profile override from the wire.
pub fn profile_override(o: pb::ProfileOverride) -> Result<ProfileOverride, RequestError> {
    Ok(ProfileOverride {
        merchant: role_override(Role::Merchant, o.merchant.unwrap_or_default())?,
        customer: role_override(Role::Customer, o.customer.unwrap_or_default())?,
        recording_allowed: o.recording_allowed,
        record_screen: o.record_screen,
    })
}

fn role_override(role: Role, o: pb::RoleOverride) -> Result<RoleOverride, RequestError> {
    let path = |field: &str| format!("profile_override.{role}.{field}");
    let accepted_sources = match o.accepted_sources {
        None => None,
        Some(list) => {
            let mut set = SourceSet::EMPTY;
            for value in list.sources {
                let s = source(&path("accepted_sources"), value)?;
                if set.contains(s) {
                    return Err(RequestError::Duplicate {
                        field: path("accepted_sources"),
                        item: source_proto(s).as_str_name().to_owned(),
                    });
                }
                set = set.with(s);
            }
            Some(set)
        }
    };
    let camera_at_join = match pb::CameraAtJoin::try_from(o.camera_at_join) {
        Ok(pb::CameraAtJoin::Unspecified) => None,
        Ok(pb::CameraAtJoin::Off) => Some(CameraAtJoin::Off),
        Ok(pb::CameraAtJoin::On) => Some(CameraAtJoin::On),
        Err(_) => {
            return Err(RequestError::InvalidEnum {
                field: path("camera_at_join"),
                expected: "CAMERA_AT_JOIN_OFF or CAMERA_AT_JOIN_ON (or unset)",
                got: enum_text(None, o.camera_at_join),
            });
        }
    };
    let camera_control = match pb::CameraControl::try_from(o.camera_control) {
        Ok(pb::CameraControl::Unspecified) => None,
        Ok(pb::CameraControl::SelfOnly) => Some(CameraControl::SelfOnly),
        Ok(pb::CameraControl::Nobody) => Some(CameraControl::Nobody),
        Err(_) => {
            return Err(RequestError::InvalidEnum {
                field: path("camera_control"),
                expected: "CAMERA_CONTROL_SELF_ONLY or CAMERA_CONTROL_NOBODY (or unset)",
                got: enum_text(None, o.camera_control),
            });
        }
    };
    Ok(RoleOverride {
        accepted_sources,
        camera_at_join,
        camera_control,
        camera_caps: caps_override(o.camera_caps.unwrap_or_default()),
        screen_caps: caps_override(o.screen_caps.unwrap_or_default()),
    })
}

fn caps_override(c: pb::CapsOverride) -> CapsOverride {
    CapsOverride {
        max_width: c.max_width,
        max_height: c.max_height,
        max_frame_rate: c.max_frame_rate,
    }
}

/// A required source field.
fn source(field: &str, value: i32) -> Result<Source, RequestError> {
    match pb::Source::try_from(value) {
        Ok(pb::Source::Microphone) => Ok(Source::Microphone),
        Ok(pb::Source::CameraRear) => Ok(Source::CameraRear),
        Ok(pb::Source::CameraFront) => Ok(Source::CameraFront),
        Ok(pb::Source::Screen) => Ok(Source::Screen),
        other => Err(RequestError::InvalidEnum {
            field: field.to_owned(),
            expected: "SOURCE_MICROPHONE, SOURCE_CAMERA_REAR, SOURCE_CAMERA_FRONT or SOURCE_SCREEN",
            got: enum_text(other.ok().map(|s| s.as_str_name()), value),
        }),
    }
}

/// The declared tracks of a Join request. Whether each mid is an m-line of the offer is the
/// SFU's check (it parses the offer).
pub fn declared_tracks(
    tracks: Vec<pb::DeclaredTrack>,
) -> Result<Vec<DeclaredSource>, RequestError> {
    let mut out: Vec<DeclaredSource> = Vec::with_capacity(tracks.len());
    for t in tracks {
        if t.mid.is_empty() {
            return Err(RequestError::Missing {
                field: "tracks.mid",
            });
        }
        if out.iter().any(|d| d.mid == t.mid) {
            return Err(RequestError::Duplicate {
                field: "tracks".to_owned(),
                item: format!("mid {:?}", t.mid.chars().take(32).collect::<String>()),
            });
        }
        let source = source("tracks.source", t.source)?;
        out.push(DeclaredSource { mid: t.mid, source });
    }
    Ok(out)
}

/// A source on the wire.
pub fn source_proto(s: Source) -> pb::Source {
    match s {
        Source::Microphone => pb::Source::Microphone,
        Source::CameraRear => pb::Source::CameraRear,
        Source::CameraFront => pb::Source::CameraFront,
        Source::Screen => pb::Source::Screen,
    }
}

/// A media kind on the wire.
pub fn media_kind(k: MediaKind) -> pb::MediaKind {
    match k {
        MediaKind::Audio => pb::MediaKind::Audio,
        MediaKind::Video => pb::MediaKind::Video,
    }
}

/// A track refusal on the wire.
pub fn track_refusal(r: TrackRefusal) -> pb::TrackRefusal {
    match r {
        TrackRefusal::DuplicateKey => pb::TrackRefusal::DuplicateMid,
        TrackRefusal::KindMismatch { .. } => pb::TrackRefusal::KindMismatch,
        TrackRefusal::SourceNotAccepted { .. } => pb::TrackRefusal::SourceNotAccepted,
        TrackRefusal::ScreenShareNotAllowed { .. } => pb::TrackRefusal::ScreenShareNotAllowed,
        TrackRefusal::DuplicateSource { .. } => pb::TrackRefusal::DuplicateSource,
        _ => pb::TrackRefusal::Unspecified,
    }
}

/// An ineligibility reason on the wire.
pub fn ineligibility(r: Ineligible) -> pb::Ineligibility {
    match r {
        Ineligible::NotOptedIn => pb::Ineligibility::NotOptedIn,
        Ineligible::RatingBelow { .. } => pb::Ineligibility::RatingBelow,
        Ineligible::ReplyRateBelow { .. } => pb::Ineligibility::ReplyRateBelow,
        Ineligible::InvalidStanding(_) => pb::Ineligibility::InvalidStanding,
        _ => pb::Ineligibility::Unspecified,
    }
}

fn facing_mode(f: FacingMode) -> String {
    f.as_str().to_owned()
}

/// Capture caps on the wire.
pub fn video_caps(c: &VideoCaps) -> pb::VideoCaps {
    pb::VideoCaps {
        max_width: c.max_width,
        max_height: c.max_height,
        max_frame_rate: c.max_frame_rate,
    }
}

fn camera_constraints(c: &CameraConstraints) -> pb::CameraConstraints {
    pb::CameraConstraints {
        lenses: c
            .lenses
            .iter()
            .filter_map(Source::lens)
            .map(|l| lens(l) as i32)
            .collect(),
        facing_mode: c.facing_mode.map(facing_mode).unwrap_or_default(),
        on_at_join: c.on_at_join,
        may_turn_on: c.may_turn_on,
        caps: Some(video_caps(&c.caps)),
    }
}

/// A role's client constraints on the wire.
pub fn client_constraints(c: &ClientConstraints) -> pb::ClientConstraints {
    pb::ClientConstraints {
        microphone: c.microphone,
        camera: c.camera.as_ref().map(camera_constraints),
        screen: c.screen.as_ref().map(video_caps),
    }
}

/// One track's verdict on the wire.
pub fn track_verdict(v: &TrackVerdict<String>) -> pb::TrackVerdict {
    let (refusal, refusal_reason, facing, caps) = match v.outcome {
        TrackOutcome::Refuse(r) => (track_refusal(r), r.to_string(), String::new(), None),
        TrackOutcome::Accept(TrackConstraints::Camera {
            facing_mode: f,
            caps,
            ..
        }) => (
            pb::TrackRefusal::Unspecified,
            String::new(),
            facing_mode(f),
            Some(video_caps(&caps)),
        ),
        TrackOutcome::Accept(TrackConstraints::Screen { caps }) => (
            pb::TrackRefusal::Unspecified,
            String::new(),
            String::new(),
            Some(video_caps(&caps)),
        ),
        TrackOutcome::Accept(_) => (
            pb::TrackRefusal::Unspecified,
            String::new(),
            String::new(),
            None,
        ),
    };
    pb::TrackVerdict {
        mid: v.key.clone(),
        source: source_proto(v.source) as i32,
        kind: media_kind(v.kind) as i32,
        accepted: v.is_accepted(),
        refusal: refusal as i32,
        refusal_reason,
        facing_mode: facing,
        caps,
    }
}

/// What CreateCall decided, on the wire.
pub fn created_call(c: &CreatedCall) -> pb::CreateCallResponse {
    let video_in_profile = Role::ALL.into_iter().any(|r| {
        c.profile
            .role(r)
            .accepted_sources
            .intersects(SourceSet::VIDEO)
    });
    let reason = c.eligibility.reason();
    pb::CreateCallResponse {
        call_id: c.id.to_string(),
        profile: c.profile_name.clone(),
        video_allowed: c.eligibility.allows_video() && video_in_profile,
        video_ineligible_reason: reason.map(|r| r.to_string()).unwrap_or_default(),
        video_ineligibility: reason.map_or(pb::Ineligibility::Unspecified, ineligibility) as i32,
        merchant_constraints: Some(client_constraints(&c.profile.constraints(Role::Merchant))),
        customer_constraints: Some(client_constraints(&c.profile.constraints(Role::Customer))),
        recording_allowed: c.profile.recording_allowed,
        record_screen: c.profile.record_screen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sfu::policy::{BuiltinProfile, Eligibility, Lens, ProfileSet};
    use sfu::{CallId, policy::review_join};

    #[test]
    fn every_source_round_trips_and_unspecified_is_refused() {
        for s in Source::ALL {
            assert_eq!(source("x", source_proto(s) as i32), Ok(s));
            assert_eq!(
                source_proto(s).as_str_name(),
                format!("SOURCE_{}", s.as_str().to_uppercase())
            );
        }
        let err = source("tracks.source", 0).unwrap_err().to_string();
        assert!(
            err.starts_with("tracks.source must be SOURCE_MICROPHONE")
                && err.ends_with("got SOURCE_UNSPECIFIED"),
            "{err}"
        );
        assert!(source("x", 77).unwrap_err().to_string().contains("77"));
    }

    #[test]
    fn an_empty_request_is_the_default_call() {
        let o = call_options(pb::CreateCallRequest::default()).unwrap();
        assert_eq!(o.initiator, Role::Merchant);
        assert_eq!(o.profile, None);
        assert!(o.profile_override.is_empty());
        assert_eq!(o.merchant_standing, None);
        assert_eq!((o.merchant_ref, o.customer_ref), (None, None));
        assert_eq!(o.limits, sfu::CallLimitsOverride::default());
    }

    #[test]
    fn every_override_field_reaches_the_policy() {
        let req = pb::CreateCallRequest {
            initiator: pb::Role::Customer as i32,
            profile: "merchant-video".into(),
            profile_override: Some(pb::ProfileOverride {
                merchant: Some(pb::RoleOverride {
                    accepted_sources: Some(pb::SourceList {
                        sources: vec![pb::Source::Microphone as i32],
                    }),
                    camera_at_join: pb::CameraAtJoin::Off as i32,
                    camera_control: pb::CameraControl::Nobody as i32,
                    camera_caps: None,
                    screen_caps: Some(pb::CapsOverride {
                        max_width: Some(640),
                        max_height: None,
                        max_frame_rate: Some(5),
                    }),
                }),
                customer: Some(pb::RoleOverride {
                    accepted_sources: Some(pb::SourceList { sources: vec![] }),
                    camera_caps: Some(pb::CapsOverride {
                        max_frame_rate: Some(15),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                recording_allowed: Some(true),
                record_screen: Some(true),
            }),
            merchant_standing: Some(pb::MerchantStanding {
                rating: 4.1,
                reply_rate: 0.5,
                video_opt_in: true,
            }),
            merchant_ref: "shop-1".into(),
            customer_ref: String::new(),
            limits: Some(pb::CallLimits {
                ring_timeout: Some(prost_types::Duration {
                    seconds: 2,
                    nanos: 500_000_000,
                }),
                ..Default::default()
            }),
        };
        let o = call_options(req).unwrap();
        assert_eq!(o.initiator, Role::Customer);
        assert_eq!(o.profile.as_deref(), Some("merchant-video"));
        let m = o.profile_override.merchant;
        assert_eq!(m.accepted_sources, Some(SourceSet::AUDIO));
        assert_eq!(m.camera_at_join, Some(CameraAtJoin::Off));
        assert_eq!(m.camera_control, Some(CameraControl::Nobody));
        assert!(m.camera_caps.is_empty());
        assert_eq!(m.screen_caps.max_width, Some(640));
        assert_eq!(m.screen_caps.max_height, None);
        assert_eq!(m.screen_caps.max_frame_rate, Some(5));
        let c = o.profile_override.customer;
        assert_eq!(c.accepted_sources, Some(SourceSet::EMPTY));
        assert_eq!(c.camera_at_join, None);
        assert_eq!(c.camera_caps.max_frame_rate, Some(15));
        assert_eq!(o.profile_override.recording_allowed, Some(true));
        assert_eq!(o.profile_override.record_screen, Some(true));
        let s = o.merchant_standing.unwrap();
        assert_eq!((s.rating, s.reply_rate, s.video_opt_in), (4.1, 0.5, true));
        assert_eq!(o.merchant_ref.as_deref(), Some("shop-1"));
        assert_eq!(o.customer_ref, None);
        assert_eq!(
            o.limits.ring_timeout,
            Some(std::time::Duration::from_millis(2500))
        );
        assert_eq!(o.limits.max_duration, None);
    }

    #[test]
    fn malformed_requests_name_the_field() {
        let bad = |req: pb::CreateCallRequest| call_options(req).unwrap_err().to_string();
        let err = bad(pb::CreateCallRequest {
            initiator: 9,
            ..Default::default()
        });
        assert_eq!(
            err,
            "initiator must be ROLE_MERCHANT or ROLE_CUSTOMER, got unknown value 9"
        );
        let err = bad(pb::CreateCallRequest {
            profile_override: Some(pb::ProfileOverride {
                customer: Some(pb::RoleOverride {
                    accepted_sources: Some(pb::SourceList {
                        sources: vec![pb::Source::CameraRear as i32, pb::Source::CameraRear as i32],
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(
            err,
            "profile_override.customer.accepted_sources lists SOURCE_CAMERA_REAR twice"
        );
        let err = bad(pb::CreateCallRequest {
            profile_override: Some(pb::ProfileOverride {
                merchant: Some(pb::RoleOverride {
                    camera_at_join: 5,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(
            err.starts_with("profile_override.merchant.camera_at_join must be"),
            "{err}"
        );
        for (seconds, nanos) in [(0, 0), (-1, 0), (0, -5), (86_401, 0), (i64::MAX, 0)] {
            let err = bad(pb::CreateCallRequest {
                limits: Some(pb::CallLimits {
                    max_duration: Some(prost_types::Duration { seconds, nanos }),
                    ..Default::default()
                }),
                ..Default::default()
            });
            assert!(
                err.starts_with("limits.max_duration must be more than 0 s and at most 86400 s"),
                "{err}"
            );
        }
        let err = bad(pb::CreateCallRequest {
            merchant_ref: "x".repeat(257),
            ..Default::default()
        });
        assert_eq!(err, "merchant_ref is longer than 256 bytes");
        let err = bad(pb::CreateCallRequest {
            profile: "p".repeat(65),
            ..Default::default()
        });
        assert_eq!(err, "profile is longer than 64 bytes");
    }

    #[test]
    fn declared_tracks_are_checked() {
        let t = |mid: &str, source: pb::Source| pb::DeclaredTrack {
            mid: mid.into(),
            source: source as i32,
        };
        let ok = declared_tracks(vec![
            t("0", pb::Source::Microphone),
            t("1", pb::Source::CameraRear),
        ])
        .unwrap();
        assert_eq!(
            ok,
            vec![
                DeclaredSource {
                    mid: "0".into(),
                    source: Source::Microphone
                },
                DeclaredSource {
                    mid: "1".into(),
                    source: Source::CameraRear
                }
            ]
        );
        let err = declared_tracks(vec![t("1", pb::Source::Screen), t("1", pb::Source::Screen)])
            .unwrap_err();
        assert_eq!(err.to_string(), "tracks lists mid \"1\" twice");
        let err = declared_tracks(vec![t("", pb::Source::Screen)]).unwrap_err();
        assert_eq!(err.to_string(), "tracks.mid is required");
        let err = declared_tracks(vec![t("0", pb::Source::Unspecified)]).unwrap_err();
        assert!(err.to_string().starts_with("tracks.source must be"));
    }

    #[test]
    fn every_refusal_and_ineligibility_maps_to_a_specified_value() {
        let refusals = [
            TrackRefusal::DuplicateKey,
            TrackRefusal::KindMismatch {
                declared: Source::CameraRear,
                negotiated: MediaKind::Audio,
            },
            TrackRefusal::SourceNotAccepted {
                role: Role::Customer,
                declared: Source::CameraFront,
                accepted: SourceSet::AUDIO,
            },
            TrackRefusal::ScreenShareNotAllowed {
                role: Role::Customer,
            },
            TrackRefusal::DuplicateSource {
                declared: Source::Microphone,
            },
        ];
        let mut seen = std::collections::HashSet::new();
        for r in refusals {
            let p = track_refusal(r);
            assert_ne!(p, pb::TrackRefusal::Unspecified, "{r:?}");
            assert!(seen.insert(p), "{r:?} maps to a value already used");
        }
        let reasons = [
            Ineligible::NotOptedIn,
            Ineligible::RatingBelow {
                rating: 4.1,
                min: 4.5,
            },
            Ineligible::ReplyRateBelow {
                reply_rate: 0.1,
                min: 0.9,
            },
            Ineligible::InvalidStanding(sfu::policy::EligibilityError::Rating(f32::NAN)),
        ];
        let mut seen = std::collections::HashSet::new();
        for r in reasons {
            let p = ineligibility(r);
            assert_ne!(p, pb::Ineligibility::Unspecified, "{r:?}");
            assert!(seen.insert(p));
        }
        for k in MediaKind::ALL {
            assert_ne!(media_kind(k), pb::MediaKind::Unspecified);
        }
    }

    #[test]
    fn the_customer_is_told_to_open_the_rear_camera() {
        let profile = BuiltinProfile::RearCameraOff.profile();
        let c = client_constraints(&profile.constraints(Role::Customer));
        assert!(c.microphone);
        assert_eq!(c.screen, None);
        let camera = c.camera.unwrap();
        assert_eq!(camera.facing_mode, "environment");
        assert_eq!(camera.lenses, vec![pb::Lens::Rear as i32]);
        assert!(!camera.on_at_join);
        assert!(camera.may_turn_on);
        assert_eq!(
            camera.caps,
            Some(pb::VideoCaps {
                max_width: 1280,
                max_height: 720,
                max_frame_rate: 30
            })
        );
        let m = client_constraints(&profile.constraints(Role::Merchant));
        let camera = m.camera.unwrap();
        assert_eq!(camera.facing_mode, "", "the merchant chooses the lens");
        assert_eq!(camera.lenses.len(), 2);
        assert!(camera.on_at_join);
        assert!(m.screen.is_some());

        let review = review_join(
            &profile,
            Role::Customer,
            [
                sfu::policy::DeclaredTrack {
                    key: "0".to_owned(),
                    source: Source::Microphone,
                    kind: MediaKind::Audio,
                },
                sfu::policy::DeclaredTrack {
                    key: "1".to_owned(),
                    source: Source::CameraRear,
                    kind: MediaKind::Video,
                },
                sfu::policy::DeclaredTrack {
                    key: "2".to_owned(),
                    source: Source::CameraFront,
                    kind: MediaKind::Video,
                },
            ],
        );
        let v: Vec<pb::TrackVerdict> = review.tracks.iter().map(track_verdict).collect();
        assert!(v[0].accepted && v[0].facing_mode.is_empty() && v[0].caps.is_none());
        assert!(v[1].accepted);
        assert_eq!(v[1].facing_mode, "environment");
        assert_eq!(v[1].kind, pb::MediaKind::Video as i32);
        assert!(v[1].caps.is_some());
        assert!(!v[2].accepted);
        assert_eq!(v[2].refusal, pb::TrackRefusal::SourceNotAccepted as i32);
        assert_eq!(
            v[2].refusal_reason,
            "camera_front is not accepted for the customer (accepted: microphone, camera_rear)"
        );
    }

    #[test]
    fn created_call_reports_eligibility() {
        let profile = ProfileSet::builtin()
            .resolve(None, &ProfileOverride::default())
            .unwrap();
        let reason = Ineligible::RatingBelow {
            rating: 4.1,
            min: 4.5,
        };
        let audio = CreatedCall {
            id: CallId::from_raw(3),
            profile: profile.without_video(),
            profile_name: "rear-camera-off".into(),
            eligibility: Eligibility::AudioOnly { reason },
        };
        let r = created_call(&audio);
        assert_eq!(r.call_id, "0000000000000003");
        assert_eq!(r.profile, "rear-camera-off");
        assert!(!r.video_allowed);
        assert_eq!(r.video_ineligible_reason, "rating 4.1 below 4.5");
        assert_eq!(r.video_ineligibility, pb::Ineligibility::RatingBelow as i32);
        assert_eq!(r.customer_constraints.unwrap().camera, None);
        assert_eq!(r.merchant_constraints.unwrap().screen, None);

        let video = CreatedCall {
            profile,
            eligibility: Eligibility::Video,
            ..audio
        };
        let r = created_call(&video);
        assert!(r.video_allowed);
        assert_eq!(r.video_ineligible_reason, "");
        assert_eq!(r.video_ineligibility, pb::Ineligibility::Unspecified as i32);
        assert!(!r.recording_allowed);

        let audio_profile = CreatedCall {
            profile: BuiltinProfile::AudioOnly.profile(),
            ..video
        };
        assert!(!created_call(&audio_profile).video_allowed);
    }

    #[test]
    fn lenses_are_required_only_to_turn_a_camera_on() {
        use super::super::camera_lens;
        assert_eq!(
            camera_lens(true, pb::Lens::Rear as i32),
            Ok(Some(Lens::Rear))
        );
        assert_eq!(
            camera_lens(true, pb::Lens::Front as i32),
            Ok(Some(Lens::Front))
        );
        assert_eq!(camera_lens(false, pb::Lens::Rear as i32), Ok(None));
        assert_eq!(camera_lens(false, 0), Ok(None));
        assert_eq!(
            camera_lens(true, 0).unwrap_err().to_string(),
            "lens is required when on is true"
        );
        assert!(camera_lens(true, 7).unwrap_err().to_string().contains("7"));
    }
}
