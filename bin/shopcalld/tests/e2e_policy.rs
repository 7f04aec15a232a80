//! End to end, the call policy over gRPC: the real daemon on loopback and two WebRTC clients.
//!
//! * `hostile_customer_video_reaches_the_merchant_only_while_the_customer_allows_it`: a
//!   customer client sends video from its first second, on its declared camera m-line and on
//!   an SSRC its SDP never declared, while its camera is not granted. The merchant receives
//!   no video at all and the drop counter rises; the merchant cannot turn the customer's
//!   camera on (PERMISSION_DENIED), only ask (CameraRequested); after the customer's own
//!   SetCamera(on, rear) video reaches the merchant within a keyframe (the SFU asks for one on
//!   the grant: the client's own keyframe interval is 60 s); after SetCamera(off) nothing
//!   more arrives beyond packets already in flight; the record counts the camera time.
//! * `lifecycle_over_grpc`: ring timeout → missed, Decline → declined, the initiator cannot
//!   answer its own call, Answer → CallAnswered, the outcomes in metrics.
//!
//! Every assertion compares counts; timing only bounds how long a count may take, except the
//! camera time in the record, which is compared with the on-interval seen by the test (the
//! two RPC round trips on loopback are milliseconds; the tolerance is 0.5 s).

mod common;

use std::time::{Duration, Instant};

use common::Daemon;
use shopcall_peer::{MediaPlan, PeerConfig, PeerStats, TestPeer};
use shopcall_proto::v1 as pb;
use shopcall_proto::v1::call_service_client::CallServiceClient;
use tokio::sync::mpsc;
use tonic::Code;
use tonic::transport::Channel;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// The SSRC the hostile customer copies its video onto; never in its SDP.
const ROGUE_SSRC: u32 = 0x0bad_cafe;
/// How long video may take to reach the merchant after the grant: one keyframe, asked for by
/// the SFU (the client's own keyframe interval is far longer).
const GRANT_TO_VIDEO: Duration = Duration::from_secs(3);
/// Video packets that may still arrive after a revoke, 300 ms later: none are expected on
/// loopback, but a retransmission of an earlier packet is legitimate.
const REVOKE_SLACK: u64 = 5;

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

/// Declares the microphone on the audio m-line and `camera` on the video one.
fn declare(offer: &str, camera: pb::Source) -> Vec<pb::DeclaredTrack> {
    mlines(offer)
        .into_iter()
        .map(|(kind, mid)| pb::DeclaredTrack {
            mid,
            source: if kind == "audio" {
                pb::Source::Microphone
            } else {
                camera
            } as i32,
        })
        .collect()
}

/// Builds a peer, joins it to `call` with `role` and declared tracks, applies the answer.
async fn join(
    client: &mut CallServiceClient<Channel>,
    call: &str,
    role: pb::Role,
    config: PeerConfig,
    camera: pb::Source,
) -> (TestPeer, pb::JoinResponse) {
    let peer = TestPeer::new(config).await.expect("peer starts");
    let joined = common::join_peer(client, &peer, call, role, |offer| declare(offer, camera)).await;
    (peer, joined)
}

/// Polls `peer`'s stats until `cond` holds or `limit` passes.
async fn wait_until(peer: &TestPeer, limit: Duration, cond: impl Fn(&PeerStats) -> bool) -> bool {
    common::eventually(limit, || async { cond(&peer.stats()).then_some(()) })
        .await
        .is_some()
}

/// The call's events in a channel, so the test can wait for them in order.
async fn watch(
    client: &mut CallServiceClient<Channel>,
    call: &str,
) -> mpsc::UnboundedReceiver<pb::Event> {
    common::watch_events(client, call).await
}

/// The first event (within `limit`) that `pick` accepts; earlier ones are skipped.
async fn next_event<T>(
    events: &mut mpsc::UnboundedReceiver<pb::Event>,
    limit: Duration,
    mut pick: impl FnMut(&pb::event::Kind) -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .ok()??;
        if let Some(v) = event.kind.as_ref().and_then(&mut pick) {
            return Some(v);
        }
    }
}

/// The participant's packets dropped for `reason`, from GetCall.
fn dropped(call: &pb::Call, participant: &str, reason: pb::DropReason) -> u64 {
    call.participants
        .iter()
        .find(|p| p.participant_id == participant)
        .and_then(|p| p.dropped.iter().find(|d| d.reason == reason as i32))
        .map_or(0, |d| d.packets)
}

async fn get_call(client: &mut CallServiceClient<Channel>, call: &str) -> pb::Call {
    client
        .get_call(pb::GetCallRequest {
            call_id: call.to_owned(),
        })
        .await
        .expect("GetCall works")
        .into_inner()
        .call
        .expect("a call")
}

/// The value of an unlabelled metric line `name value`.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
}

fn seconds(d: Option<prost_types::Duration>) -> f64 {
    let d = d.expect("a duration");
    d.seconds as f64 + f64::from(d.nanos) / 1e9
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_customer_video_reaches_the_merchant_only_while_the_customer_allows_it() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;

    let created = client
        .create_call(pb::CreateCallRequest {
            merchant_ref: "shop-7".into(),
            customer_ref: "buyer-9".into(),
            ..Default::default()
        })
        .await
        .expect("call created")
        .into_inner();
    let call = created.call_id.clone();
    assert_eq!(created.profile, "rear-camera-off");
    assert!(created.video_allowed);
    let mut events = watch(&mut client, &call).await;

    // Light media; the customer's own keyframes are 60 s apart, so a prompt picture after
    // the grant can only come from the SFU's keyframe request.
    let plan = MediaPlan {
        video_bitrate_bps: 400_000,
        ..MediaPlan::default()
    };
    let hostile_plan = MediaPlan {
        keyframe_interval: Duration::from_secs(60),
        ..plan.clone()
    };

    let (merchant, m_join) = join(
        &mut client,
        &call,
        pb::Role::Merchant,
        PeerConfig::named("merchant"),
        pb::Source::CameraFront,
    )
    .await;
    let customer_config = PeerConfig {
        rogue_video_ssrc: Some(ROGUE_SSRC),
        ..PeerConfig::named("customer")
    };
    let (customer, c_join) = join(
        &mut client,
        &call,
        pb::Role::Customer,
        customer_config,
        pb::Source::CameraRear,
    )
    .await;

    // The join answer: both tracks accepted, the rear camera asked for, off at join.
    assert!(
        m_join.tracks.iter().all(|t| t.accepted),
        "{:?}",
        m_join.tracks
    );
    assert_eq!(c_join.tracks.len(), 2, "{:?}", c_join.tracks);
    assert!(
        c_join.tracks.iter().all(|t| t.accepted),
        "{:?}",
        c_join.tracks
    );
    let video_verdict = c_join
        .tracks
        .iter()
        .find(|t| t.kind == pb::MediaKind::Video as i32)
        .expect("a video verdict");
    assert_eq!(video_verdict.source, pb::Source::CameraRear as i32);
    assert_eq!(video_verdict.facing_mode, "environment");
    let camera = c_join
        .constraints
        .as_ref()
        .and_then(|c| c.camera.clone())
        .expect("the customer may use a camera");
    assert_eq!(camera.facing_mode, "environment");
    assert!(!camera.on_at_join && camera.may_turn_on);
    let customer_id = c_join.participant_id.clone();

    merchant
        .wait_connected(CONNECT_TIMEOUT)
        .await
        .expect("merchant connects");
    customer
        .wait_connected(CONNECT_TIMEOUT)
        .await
        .expect("customer connects");

    // The hostile customer sends video at once (declared m-line + rogue SSRC).
    customer.start_media(hostile_plan);
    merchant.start_media(plan);

    // Wait until the SFU has dropped a good number of the customer's video packets, and the
    // merchant has heard the customer's audio (so media does flow to it).
    let denied = common::eventually(Duration::from_secs(10), || {
        let mut client = client.clone();
        let (call, customer_id) = (call.clone(), customer_id.clone());
        async move {
            let c = get_call(&mut client, &call).await;
            let n = dropped(&c, &customer_id, pb::DropReason::PolicyDenied);
            (n >= 60).then_some(n)
        }
    })
    .await
    .expect("the customer's video is dropped as policy_denied");
    assert!(
        wait_until(&merchant, Duration::from_secs(5), |s| s.audio.intact >= 25).await,
        "the customer's audio does not reach the merchant: {:?}",
        merchant.stats().audio
    );
    let c = customer.stats();
    assert!(c.video.packets_sent > 0, "the customer sent no video");
    assert!(
        c.rogue_packets_sent > 0,
        "the customer sent nothing on the rogue SSRC"
    );
    assert_eq!(
        merchant.stats().video.packets_received,
        0,
        "customer video reached the merchant before the customer turned the camera on"
    );

    // GetCall: the customer's camera is off.
    let state = get_call(&mut client, &call).await;
    assert_eq!(
        state.customer_camera,
        Some(pb::CameraState {
            on: false,
            lens: pb::Lens::Unspecified as i32
        })
    );

    // The merchant cannot turn the customer's camera on...
    let err = client
        .set_camera(pb::SetCameraRequest {
            call_id: call.clone(),
            actor: pb::Role::Merchant as i32,
            target: pb::Role::Customer as i32,
            on: true,
            lens: pb::Lens::Rear as i32,
        })
        .await
        .expect_err("a merchant may not turn on the customer's camera");
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    assert!(
        err.message().contains("only the customer can"),
        "{}",
        err.message()
    );
    // ...only ask.
    client
        .request_camera(pb::RequestCameraRequest {
            call_id: call.clone(),
            actor: pb::Role::Merchant as i32,
            target: pb::Role::Customer as i32,
        })
        .await
        .expect("the merchant may ask");
    let requested = next_event(&mut events, Duration::from_secs(5), |k| match k {
        pb::event::Kind::CameraRequested(r) => Some(*r),
        _ => None,
    })
    .await
    .expect("CameraRequested on WatchEvents");
    assert_eq!(requested.by, pb::Role::Merchant as i32);
    assert_eq!(requested.target, pb::Role::Customer as i32);

    // Still nothing, and the drops go on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(merchant.stats().video.packets_received, 0);
    let state = get_call(&mut client, &call).await;
    let denied_later = dropped(&state, &customer_id, pb::DropReason::PolicyDenied);
    assert!(denied_later > denied, "{denied_later} <= {denied}");
    // The copies on the undeclared SSRC reached the SFU and were dropped there, counted: the
    // stack drops RTP of an SSRC that belongs to no track right after SRTP, and the engine
    // counts what got through SRTP but never reached it as unknown_ssrc.
    let rogue_counted = dropped(&state, &customer_id, pb::DropReason::UnknownSsrc);
    assert!(
        rogue_counted > 0,
        "no sign that the SFU received the packets on the undeclared SSRC: {} sent, drops {:?}",
        customer.stats().rogue_packets_sent,
        state
            .participants
            .iter()
            .find(|p| p.participant_id == customer_id)
            .map(|p| &p.dropped)
    );

    // The customer turns the camera on (rear): video reaches the merchant within a keyframe.
    let plis_before = customer.stats().video.plis_received;
    client
        .set_camera(pb::SetCameraRequest {
            call_id: call.clone(),
            actor: pb::Role::Customer as i32,
            target: pb::Role::Customer as i32,
            on: true,
            lens: pb::Lens::Rear as i32,
        })
        .await
        .expect("the customer turns its camera on");
    let on_at = Instant::now();
    let changed = next_event(&mut events, Duration::from_secs(5), |k| match k {
        pb::event::Kind::CameraChanged(c) => Some(*c),
        _ => None,
    })
    .await
    .expect("CameraChanged on WatchEvents");
    assert_eq!(
        changed,
        pb::CameraChanged {
            role: pb::Role::Customer as i32,
            on: true,
            lens: pb::Lens::Rear as i32
        }
    );
    assert!(
        wait_until(&merchant, GRANT_TO_VIDEO, |s| s.video.keyframes_received
            > 0
            && s.video.intact > 0)
        .await,
        "no customer video at the merchant {GRANT_TO_VIDEO:?} after the grant: {:?}",
        merchant.stats().video
    );
    assert!(
        customer.stats().video.plis_received > plis_before,
        "the SFU did not ask the customer for a keyframe on the grant"
    );
    let state = get_call(&mut client, &call).await;
    assert_eq!(
        state.customer_camera,
        Some(pb::CameraState {
            on: true,
            lens: pb::Lens::Rear as i32
        })
    );

    // Video flows for a while, intact.
    let flowing = merchant.stats().video.packets_received;
    assert!(
        wait_until(&merchant, Duration::from_secs(5), |s| s
            .video
            .packets_received
            >= flowing + 100)
        .await,
        "customer video does not keep flowing: {:?}",
        merchant.stats().video
    );
    assert_eq!(merchant.stats().video.corrupt, 0);

    // The customer turns the camera off: nothing more beyond what was in flight.
    client
        .set_camera(pb::SetCameraRequest {
            call_id: call.clone(),
            actor: pb::Role::Customer as i32,
            target: pb::Role::Customer as i32,
            on: false,
            lens: pb::Lens::Unspecified as i32,
        })
        .await
        .expect("the customer turns its camera off");
    let on_for = on_at.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_revoke = merchant.stats().video.packets_received;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let later = merchant.stats().video.packets_received;
    assert!(
        later <= after_revoke + REVOKE_SLACK,
        "customer video still reaches the merchant after SetCamera(off): {after_revoke} -> \
         {later}"
    );
    assert!(
        customer.stats().video.packets_sent > 0 && customer.stats().rogue_packets_sent > 0,
        "the customer keeps sending"
    );

    // Hang up: the record counts the camera time.
    client
        .end_call(pb::EndCallRequest {
            call_id: call.clone(),
        })
        .await
        .expect("EndCall works");
    let ended = next_event(&mut events, Duration::from_secs(10), |k| match k {
        pb::event::Kind::CallEnded(e) => Some(e.clone()),
        _ => None,
    })
    .await
    .expect("CallEnded on WatchEvents");
    assert_eq!(ended.reason, pb::EndReason::Requested as i32);
    let record = ended.record.expect("the record");
    assert_eq!(record.initiator, pb::Role::Merchant as i32);
    assert_eq!(record.profile, "rear-camera-off");
    assert_eq!(record.merchant_ref, "shop-7");
    assert_eq!(record.customer_ref, "buyer-9");
    assert!(
        record.answer_latency.is_some(),
        "the customer's join answered"
    );
    assert!(record.customer_camera_used);
    let camera_secs = seconds(record.customer_camera_duration);
    assert!(
        (camera_secs - on_for.as_secs_f64()).abs() <= 0.5,
        "record says the customer's camera was on {camera_secs:.3} s; the test saw {:.3} s",
        on_for.as_secs_f64()
    );
    assert!(seconds(record.merchant_camera_duration) > camera_secs);
    let to_merchant = record.to_merchant.expect("quality to the merchant");
    assert!(to_merchant.packets > 0, "{to_merchant:?}");
    assert!(record.to_customer.expect("quality to the customer").packets > 0);

    // Metrics: one answered call, the customer's camera used, one request, one refusal.
    let (_, text) = daemon.http_get("/metrics").await;
    assert_eq!(
        metric(&text, "shopcall_call_outcomes_total{outcome=\"answered\"}"),
        1.0
    );
    assert_eq!(metric(&text, "shopcall_customer_camera_used_total"), 1.0);
    assert_eq!(metric(&text, "shopcall_camera_requests_total"), 1.0);
    assert_eq!(
        metric(
            &text,
            "shopcall_policy_refusals_total{operation=\"set_camera\"}"
        ),
        1.0
    );
    assert_eq!(metric(&text, "shopcall_answer_latency_seconds_count"), 1.0);
    assert!(
        metric(
            &text,
            "shopcall_dropped_packets_total{reason=\"policy_denied\"}"
        ) > 0.0
    );

    merchant.close().await;
    customer.close().await;
}

#[tokio::test]
async fn lifecycle_over_grpc() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    let mut all = watch_all(&mut client).await;

    // Nobody answers within a 2 s ring timeout: missed.
    let missed = client
        .create_call(pb::CreateCallRequest {
            initiator: pb::Role::Customer as i32,
            limits: Some(pb::CallLimits {
                ring_timeout: Some(prost_types::Duration {
                    seconds: 2,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("call created")
        .into_inner()
        .call_id;

    // The callee declines: declined.
    let declined = create(&mut client).await;
    let err = client
        .decline(pb::DeclineRequest {
            call_id: declined.clone(),
            role: pb::Role::Merchant as i32,
        })
        .await
        .expect_err("the initiator cannot decline its own call");
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    client
        .decline(pb::DeclineRequest {
            call_id: declined.clone(),
            role: pb::Role::Customer as i32,
        })
        .await
        .expect("the callee declines");

    // The initiator cannot answer; the callee can, and the call can then be hung up.
    let answered = create(&mut client).await;
    let err = client
        .answer(pb::AnswerRequest {
            call_id: answered.clone(),
            role: pb::Role::Merchant as i32,
        })
        .await
        .expect_err("the initiator cannot answer its own call");
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    assert!(
        err.message().contains("only the callee (customer)"),
        "{}",
        err.message()
    );
    client
        .answer(pb::AnswerRequest {
            call_id: answered.clone(),
            role: pb::Role::Customer as i32,
        })
        .await
        .expect("the callee answers");
    client
        .answer(pb::AnswerRequest {
            call_id: answered.clone(),
            role: pb::Role::Customer as i32,
        })
        .await
        .expect("answering twice is harmless");
    let state = get_call(&mut client, &answered).await;
    assert_eq!(state.state, pb::CallState::Answered as i32);
    let err = client
        .decline(pb::DeclineRequest {
            call_id: answered.clone(),
            role: pb::Role::Customer as i32,
        })
        .await
        .expect_err("an answered call cannot be declined");
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    client
        .end_call(pb::EndCallRequest {
            call_id: answered.clone(),
        })
        .await
        .expect("EndCall works");

    // Hung up while ringing: cancelled.
    let cancelled = create(&mut client).await;
    client
        .end_call(pb::EndCallRequest {
            call_id: cancelled.clone(),
        })
        .await
        .expect("EndCall works");

    // Collect the four ends (the missed one comes last, after its 2 s).
    let mut ends = std::collections::HashMap::new();
    let mut answer_latency = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while ends.len() < 4 {
        let event = tokio::time::timeout_at(deadline, all.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("calls still not ended: {ends:?}"));
        match event.kind {
            Some(pb::event::Kind::CallEnded(e)) => {
                ends.insert(event.call_id, e);
            }
            Some(pb::event::Kind::CallAnswered(a)) if event.call_id == answered => {
                answer_latency = a.answer_latency;
            }
            _ => {}
        }
    }
    assert!(answer_latency.is_some(), "no CallAnswered for {answered}");
    let reason = |id: &str| ends[id].reason;
    assert_eq!(reason(&missed), pb::EndReason::Missed as i32);
    assert_eq!(reason(&declined), pb::EndReason::Declined as i32);
    assert_eq!(reason(&answered), pb::EndReason::Requested as i32);
    assert_eq!(reason(&cancelled), pb::EndReason::Cancelled as i32);
    let missed_record = ends[&missed].record.clone().expect("a record");
    assert_eq!(missed_record.initiator, pb::Role::Customer as i32);
    assert_eq!(missed_record.answer_latency, None);
    let rang = seconds(missed_record.ring_duration);
    assert!((1.9..3.5).contains(&rang), "rang {rang} s");
    let answered_record = ends[&answered].record.clone().expect("a record");
    assert!(answered_record.answer_latency.is_some());
    assert_eq!(ends[&declined].record.clone().unwrap().answer_latency, None);

    let (_, text) = daemon.http_get("/metrics").await;
    for (outcome, n) in [
        ("answered", 1.0),
        ("declined", 1.0),
        ("missed", 1.0),
        ("cancelled", 1.0),
    ] {
        let name = format!("shopcall_call_outcomes_total{{outcome=\"{outcome}\"}}");
        assert_eq!(metric(&text, &name), n, "{name}");
    }
    assert_eq!(metric(&text, "shopcall_answer_latency_seconds_count"), 1.0);
}

/// A call the merchant starts, with the daemon's defaults.
async fn create(client: &mut CallServiceClient<Channel>) -> String {
    client
        .create_call(pb::CreateCallRequest::default())
        .await
        .expect("call created")
        .into_inner()
        .call_id
}

/// Every event of every call, from now on.
async fn watch_all(client: &mut CallServiceClient<Channel>) -> mpsc::UnboundedReceiver<pb::Event> {
    watch(client, "").await
}
