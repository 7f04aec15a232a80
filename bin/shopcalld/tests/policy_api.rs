//! The call-policy API of the real daemon, without media: profiles and per-call overrides,
//! merchant eligibility, declared sources at Join, camera requests that the policy refuses,
//! RestartIce, and the INVALID_ARGUMENT of each malformed new field.

mod common;

use common::Daemon;
use shopcall_peer::{PeerConfig, TestPeer};
use shopcall_proto::v1 as pb;
use shopcall_proto::v1::call_service_client::CallServiceClient;
use tonic::Code;
use tonic::transport::Channel;

/// A valid id that names nothing.
const UNKNOWN_ID: &str = "0123456789abcdef";

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("shopcalld-pol-{}-{name}", std::process::id()));
    std::fs::write(&path, text).expect("temp dir is writable");
    path
}

fn expect_code<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    says: &str,
) {
    let err = result.expect_err("refused");
    assert_eq!(err.code(), code, "{}", err.message());
    assert!(
        err.message().contains(says),
        "message {:?} lacks {says:?}",
        err.message()
    );
}

/// The (kind, mid) of every m-line of an SDP, in order.
fn mlines(sdp: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut kind = None;
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            kind = m.split_whitespace().next().map(str::to_owned);
        } else if let (Some(mid), Some(k)) = (line.strip_prefix("a=mid:"), &kind) {
            out.push((k.clone(), mid.to_owned()));
        }
    }
    out
}

/// The direction attribute of each m-line of an SDP.
fn directions(sdp: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in sdp.lines().map(str::trim) {
        if line.starts_with("m=") {
            out.push(String::new());
        } else if let Some(dir @ ("sendrecv" | "sendonly" | "recvonly" | "inactive")) =
            line.strip_prefix("a=")
            && let Some(last) = out.last_mut()
        {
            *last = dir.to_owned();
        }
    }
    out
}

fn ice_ufrag(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
}

async fn create(
    client: &mut CallServiceClient<Channel>,
    req: pb::CreateCallRequest,
) -> pb::CreateCallResponse {
    client
        .create_call(req)
        .await
        .expect("call created")
        .into_inner()
}

#[tokio::test]
async fn profiles_and_overrides_at_create_call() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;

    // The default profile and what each side will be told.
    let r = create(&mut client, pb::CreateCallRequest::default()).await;
    assert_eq!(r.profile, "rear-camera-off");
    assert!(r.video_allowed);
    assert!(r.video_ineligible_reason.is_empty());
    let customer = r.customer_constraints.unwrap().camera.unwrap();
    assert_eq!(customer.facing_mode, "environment");
    assert_eq!(customer.lenses, vec![pb::Lens::Rear as i32]);
    assert!(!customer.on_at_join);
    assert!(r.merchant_constraints.unwrap().camera.unwrap().on_at_join);

    // A named built-in profile.
    let r = create(
        &mut client,
        pb::CreateCallRequest {
            profile: "merchant-video".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(r.profile, "merchant-video");
    let customer = r.customer_constraints.unwrap().camera.unwrap();
    assert_eq!(
        customer.facing_mode, "",
        "either lens: the customer chooses"
    );
    assert_eq!(customer.lenses.len(), 2);

    // An override of single fields.
    let r = create(
        &mut client,
        pb::CreateCallRequest {
            profile_override: Some(pb::ProfileOverride {
                customer: Some(pb::RoleOverride {
                    camera_caps: Some(pb::CapsOverride {
                        max_frame_rate: Some(15),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                merchant: Some(pb::RoleOverride {
                    accepted_sources: Some(pb::SourceList {
                        sources: vec![pb::Source::Microphone as i32, pb::Source::CameraRear as i32],
                    }),
                    ..Default::default()
                }),
                recording_allowed: Some(true),
                record_screen: None,
            }),
            ..Default::default()
        },
    )
    .await;
    assert!(r.recording_allowed);
    let caps = r
        .customer_constraints
        .unwrap()
        .camera
        .unwrap()
        .caps
        .unwrap();
    assert_eq!((caps.max_width, caps.max_frame_rate), (1280, 15));
    let merchant = r.merchant_constraints.unwrap();
    assert_eq!(
        merchant.screen, None,
        "the merchant's screen was overridden away"
    );
    assert_eq!(merchant.camera.unwrap().facing_mode, "environment");

    // The audio-only profile: no video, and no camera can be turned on.
    let r = create(
        &mut client,
        pb::CreateCallRequest {
            profile: "audio-only".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(!r.video_allowed);
    assert_eq!(r.customer_constraints.unwrap().camera, None);
    expect_code(
        client
            .set_camera(pb::SetCameraRequest {
                call_id: r.call_id.clone(),
                actor: pb::Role::Customer as i32,
                target: pb::Role::Customer as i32,
                on: true,
                lens: pb::Lens::Rear as i32,
            })
            .await,
        Code::PermissionDenied,
        "the call's profile allows no camera for the customer",
    );
    expect_code(
        client
            .request_camera(pb::RequestCameraRequest {
                call_id: r.call_id.clone(),
                actor: pb::Role::Merchant as i32,
                target: pb::Role::Customer as i32,
            })
            .await,
        Code::PermissionDenied,
        "refused by policy",
    );

    // Refusals with the policy's precise messages.
    expect_code(
        client
            .create_call(pb::CreateCallRequest {
                profile: "nope".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "unknown profile \"nope\" (known: audio-only, merchant-video, rear-camera-off)",
    );
    expect_code(
        client
            .create_call(pb::CreateCallRequest {
                profile_override: Some(pb::ProfileOverride {
                    customer: Some(pb::RoleOverride {
                        camera_at_join: pb::CameraAtJoin::On as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "profile \"rear-camera-off\" with the call's overrides: customer.camera_at_join is on, \
         but only the customer can turn on the customer's camera: it must be off",
    );
    expect_code(
        client
            .create_call(pb::CreateCallRequest {
                profile_override: Some(pb::ProfileOverride {
                    merchant: Some(pb::RoleOverride {
                        screen_caps: Some(pb::CapsOverride {
                            max_frame_rate: Some(500),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "merchant.screen_caps.max_frame_rate must be between 1 and 120, got 500",
    );
    expect_code(
        client
            .create_call(pb::CreateCallRequest {
                limits: Some(pb::CallLimits {
                    ring_timeout: Some(prost_types::Duration {
                        seconds: 0,
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "limits.ring_timeout must be more than 0 s",
    );
    expect_code(
        client
            .create_call(pb::CreateCallRequest {
                initiator: 7,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "initiator",
    );
    let (_, text) = daemon.http_get("/metrics").await;
    assert!(
        text.contains("shopcall_policy_refusals_total{operation=\"set_camera\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn an_ineligible_merchant_gets_an_audio_only_call_with_the_reason() {
    let file = temp_file(
        "audio.toml",
        "[eligibility]\nmin_rating = 4.5\nmin_reply_rate = 0.9\n",
    );
    let daemon = Daemon::start(&["--config", file.to_str().unwrap()]);
    let mut client = daemon.client().await;
    let standing = |rating: f32, reply_rate: f32, video_opt_in: bool| pb::CreateCallRequest {
        merchant_standing: Some(pb::MerchantStanding {
            rating,
            reply_rate,
            video_opt_in,
        }),
        ..Default::default()
    };

    let r = create(&mut client, standing(4.8, 0.95, true)).await;
    assert!(r.video_allowed, "{r:?}");

    let r = create(&mut client, standing(4.1, 0.95, true)).await;
    assert!(!r.video_allowed);
    assert_eq!(r.video_ineligible_reason, "rating 4.1 below 4.5");
    assert_eq!(r.video_ineligibility, pb::Ineligibility::RatingBelow as i32);
    assert_eq!(r.customer_constraints.unwrap().camera, None);
    assert_eq!(r.merchant_constraints.unwrap().camera, None);

    let r = create(&mut client, standing(4.9, 0.5, true)).await;
    assert_eq!(r.video_ineligible_reason, "reply rate 0.5 below 0.9");
    let r = create(&mut client, standing(4.9, 0.99, false)).await;
    assert_eq!(r.video_ineligibility, pb::Ineligibility::NotOptedIn as i32);
    let r = create(&mut client, standing(f32::NAN, 0.99, true)).await;
    assert_eq!(
        r.video_ineligibility,
        pb::Ineligibility::InvalidStanding as i32,
        "a malformed standing fails closed"
    );

    // Without a standing, no check: video follows the profile.
    let r = create(&mut client, pb::CreateCallRequest::default()).await;
    assert!(r.video_allowed);

    let (_, text) = daemon.http_get("/metrics").await;
    assert!(text.contains("shopcall_calls_audio_only_total 4"), "{text}");
    drop(daemon);
    std::fs::remove_file(file).ok();
}

#[tokio::test]
async fn refuse_rules_make_create_call_permission_denied() {
    let file = temp_file(
        "refuse.toml",
        "[eligibility]\nmin_rating = 4.5\non_ineligible = \"refuse\"\n",
    );
    let daemon = Daemon::start(&["--config", file.to_str().unwrap()]);
    let mut client = daemon.client().await;
    expect_code(
        client
            .create_call(pb::CreateCallRequest {
                merchant_standing: Some(pb::MerchantStanding {
                    rating: 4.1,
                    reply_rate: 1.0,
                    video_opt_in: true,
                }),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "merchant not eligible for a video call: rating 4.1 below 4.5",
    );
    let (_, text) = daemon.http_get("/metrics").await;
    assert!(
        text.contains("shopcall_policy_refusals_total{operation=\"create_call\"} 1"),
        "{text}"
    );
    drop(daemon);
    std::fs::remove_file(file).ok();
}

#[tokio::test]
async fn configured_profiles_are_served() {
    let file = temp_file(
        "profiles.toml",
        "default_profile = \"showroom\"\n[profiles.showroom]\nbase = \"merchant-video\"\n\
         customer.accepted_sources = [\"microphone\", \"camera_front\"]\n",
    );
    let daemon = Daemon::start(&["--config", file.to_str().unwrap()]);
    let mut client = daemon.client().await;
    let r = create(&mut client, pb::CreateCallRequest::default()).await;
    assert_eq!(r.profile, "showroom");
    let camera = r.customer_constraints.unwrap().camera.unwrap();
    assert_eq!(camera.facing_mode, "user");
    assert_eq!(camera.lenses, vec![pb::Lens::Front as i32]);
    drop(daemon);
    std::fs::remove_file(file).ok();
}

#[tokio::test]
async fn declared_sources_are_reviewed_at_join() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    let call = create(&mut client, pb::CreateCallRequest::default())
        .await
        .call_id;

    // The customer declares the front camera: refused under rear-camera-off, its m-line
    // answered inactive, the microphone accepted.
    let peer = TestPeer::new(PeerConfig::named("customer"))
        .await
        .expect("peer starts");
    let offer = peer.create_offer().await.expect("offer");
    let lines = mlines(&offer);
    let tracks: Vec<pb::DeclaredTrack> = lines
        .iter()
        .map(|(kind, mid)| pb::DeclaredTrack {
            mid: mid.clone(),
            source: if kind == "audio" {
                pb::Source::Microphone
            } else {
                pb::Source::CameraFront
            } as i32,
        })
        .collect();

    // Malformed declarations first: nothing is left behind by them.
    let dup = vec![tracks[0].clone(), tracks[0].clone()];
    for (bad, says) in [
        (dup, "lists mid"),
        (
            vec![pb::DeclaredTrack {
                mid: "nope".into(),
                source: pb::Source::Microphone as i32,
            }],
            "not an m-line of the offer",
        ),
        (
            vec![pb::DeclaredTrack {
                mid: lines[0].1.clone(),
                source: pb::Source::Unspecified as i32,
            }],
            "tracks.source",
        ),
    ] {
        expect_code(
            client
                .join(pb::JoinRequest {
                    call_id: call.clone(),
                    role: pb::Role::Customer as i32,
                    sdp_offer: offer.clone(),
                    tracks: bad,
                })
                .await,
            Code::InvalidArgument,
            says,
        );
    }

    let joined = client
        .join(pb::JoinRequest {
            call_id: call.clone(),
            role: pb::Role::Customer as i32,
            sdp_offer: offer.clone(),
            tracks,
        })
        .await
        .expect("join works")
        .into_inner();
    assert_eq!(joined.tracks.len(), lines.len());
    for (verdict, (kind, mid)) in joined.tracks.iter().zip(&lines) {
        assert_eq!(&verdict.mid, mid);
        if kind == "audio" {
            assert!(verdict.accepted, "{verdict:?}");
            assert_eq!(verdict.kind, pb::MediaKind::Audio as i32);
        } else {
            assert!(!verdict.accepted, "{verdict:?}");
            assert_eq!(verdict.source, pb::Source::CameraFront as i32);
            assert_eq!(verdict.refusal, pb::TrackRefusal::SourceNotAccepted as i32);
            assert_eq!(
                verdict.refusal_reason,
                "camera_front is not accepted for the customer (accepted: microphone, \
                 camera_rear)"
            );
        }
    }
    let dirs = directions(&joined.sdp_answer);
    for ((kind, _), dir) in lines.iter().zip(&dirs) {
        let want = if kind == "audio" {
            "sendrecv"
        } else {
            "inactive"
        };
        assert_eq!(dir, want, "{kind} m-line:\n{}", joined.sdp_answer);
    }
    let constraints = joined.constraints.unwrap();
    assert_eq!(constraints.camera.unwrap().facing_mode, "environment");

    // The customer's join answered the call; the merchant may not answer or decline now.
    expect_code(
        client
            .decline(pb::DeclineRequest {
                call_id: call.clone(),
                role: pb::Role::Customer as i32,
            })
            .await,
        Code::FailedPrecondition,
        "not ringing",
    );

    // RestartIce: a new offer with new ICE credentials gets an answer; the participant stays.
    let restart_offer = offer
        .lines()
        .map(|l| {
            if l.starts_with("a=ice-ufrag:") {
                "a=ice-ufrag:RestartUfrag1".to_owned()
            } else if l.starts_with("a=ice-pwd:") {
                "a=ice-pwd:RestartPasswordRestartPassword1".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
        + "\r\n";
    let restarted = client
        .restart_ice(pb::RestartIceRequest {
            participant_id: joined.participant_id.clone(),
            sdp_offer: restart_offer,
        })
        .await
        .expect("RestartIce works")
        .into_inner();
    assert!(restarted.sdp_answer.starts_with("v=0"));
    assert!(ice_ufrag(&restarted.sdp_answer).is_some());
    assert_eq!(
        mlines(&restarted.sdp_answer).len(),
        lines.len(),
        "the same m-lines"
    );
    let state = client
        .get_call(pb::GetCallRequest {
            call_id: call.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .call
        .unwrap();
    assert_eq!(state.participants.len(), 1, "still one participant");
    assert_eq!(state.participants[0].participant_id, joined.participant_id);

    expect_code(
        client
            .restart_ice(pb::RestartIceRequest {
                participant_id: UNKNOWN_ID.into(),
                sdp_offer: offer.clone(),
            })
            .await,
        Code::NotFound,
        UNKNOWN_ID,
    );
    expect_code(
        client
            .restart_ice(pb::RestartIceRequest {
                participant_id: joined.participant_id.clone(),
                sdp_offer: "v=0\r\n".into(),
            })
            .await,
        Code::InvalidArgument,
        "invalid SDP offer",
    );
    peer.close().await;
}

#[tokio::test]
async fn malformed_policy_requests_are_invalid_argument_naming_the_field() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    let call = create(&mut client, pb::CreateCallRequest::default())
        .await
        .call_id;

    expect_code(
        client
            .set_camera(pb::SetCameraRequest {
                call_id: call.clone(),
                actor: pb::Role::Customer as i32,
                target: pb::Role::Customer as i32,
                on: true,
                lens: pb::Lens::Unspecified as i32,
            })
            .await,
        Code::InvalidArgument,
        "lens is required when on is true",
    );
    expect_code(
        client
            .set_camera(pb::SetCameraRequest {
                call_id: call.clone(),
                actor: pb::Role::Unspecified as i32,
                target: pb::Role::Customer as i32,
                on: false,
                lens: 0,
            })
            .await,
        Code::InvalidArgument,
        "actor must be ROLE_MERCHANT or ROLE_CUSTOMER",
    );
    expect_code(
        client
            .request_camera(pb::RequestCameraRequest {
                call_id: call.clone(),
                actor: pb::Role::Merchant as i32,
                target: 9,
            })
            .await,
        Code::InvalidArgument,
        "target",
    );
    expect_code(
        client
            .answer(pb::AnswerRequest {
                call_id: "xyz".into(),
                role: pb::Role::Customer as i32,
            })
            .await,
        Code::InvalidArgument,
        "call_id",
    );
    expect_code(
        client
            .decline(pb::DeclineRequest {
                call_id: call.clone(),
                role: 0,
            })
            .await,
        Code::InvalidArgument,
        "role",
    );
    expect_code(
        client
            .answer(pb::AnswerRequest {
                call_id: UNKNOWN_ID.into(),
                role: pb::Role::Customer as i32,
            })
            .await,
        Code::NotFound,
        UNKNOWN_ID,
    );
    expect_code(
        client
            .restart_ice(pb::RestartIceRequest {
                participant_id: UNKNOWN_ID.into(),
                sdp_offer: String::new(),
            })
            .await,
        Code::InvalidArgument,
        "sdp_offer",
    );
    // The merchant asking for its own camera is a policy refusal, not a malformed request.
    expect_code(
        client
            .request_camera(pb::RequestCameraRequest {
                call_id: call.clone(),
                actor: pb::Role::Merchant as i32,
                target: pb::Role::Merchant as i32,
            })
            .await,
        Code::PermissionDenied,
        "refused by policy",
    );
    // Turning a camera off that is off is allowed (nothing changes).
    client
        .set_camera(pb::SetCameraRequest {
            call_id: call.clone(),
            actor: pb::Role::Customer as i32,
            target: pb::Role::Customer as i32,
            on: false,
            lens: 0,
        })
        .await
        .expect("turning an off camera off is harmless");
    // The customer may not open the front lens under rear-camera-off.
    expect_code(
        client
            .set_camera(pb::SetCameraRequest {
                call_id: call.clone(),
                actor: pb::Role::Customer as i32,
                target: pb::Role::Customer as i32,
                on: true,
                lens: pb::Lens::Front as i32,
            })
            .await,
        Code::PermissionDenied,
        "does not allow camera_front for the customer",
    );
}
