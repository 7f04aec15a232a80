//! The gRPC API of the real daemon on loopback: health, reflection, metrics, the call
//! lifecycle without media, and the status code of each kind of bad request.

mod common;

use std::time::Duration;

use common::Daemon;
use shopcall_proto::v1 as pb;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// A valid id that names nothing.
const UNKNOWN_ID: &str = "0123456789abcdef";

#[tokio::test]
async fn health_is_serving_for_the_server_and_the_call_service() {
    let daemon = Daemon::start(&[]);
    let mut health = HealthClient::new(daemon.channel().await);
    for service in ["", "shopcall.v1.CallService"] {
        let res = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("health check of {service:?} failed: {e}"))
            .into_inner();
        assert_eq!(res.status, ServingStatus::Serving as i32, "{service:?}");
    }
    let (code, body) = daemon.http_get("/healthz").await;
    assert_eq!((code, body.as_str()), (200, "ok\n"));
}

#[tokio::test]
async fn reflection_lists_and_describes_the_call_service() {
    use tokio_stream::StreamExt;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let daemon = Daemon::start(&[]);
    let mut client = ServerReflectionClient::new(daemon.channel().await);
    let requests = [
        MessageRequest::ListServices(String::new()),
        // What `grpcurl describe` asks: the file that defines the service, with its imports.
        MessageRequest::FileContainingSymbol("shopcall.v1.CallService".into()),
    ]
    .map(|m| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    });
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .expect("reflection answers")
        .into_inner();

    let response = responses
        .next()
        .await
        .expect("a service list")
        .expect("not an error");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a service list, got {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"shopcall.v1.CallService".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );

    let response = responses
        .next()
        .await
        .expect("a file descriptor")
        .expect("not an error");
    let Some(MessageResponse::FileDescriptorResponse(files)) = response.message_response else {
        panic!("expected file descriptors, got {response:?}");
    };
    let text: Vec<String> = files
        .file_descriptor_proto
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    for needed in [
        "shopcall/v1/shopcall.proto",
        "google/protobuf/duration.proto",
        "google/protobuf/timestamp.proto",
    ] {
        assert!(
            text.iter().any(|t| t.contains(needed)),
            "{needed} not served by reflection"
        );
    }
}

#[tokio::test]
async fn metrics_serve_prometheus_text_with_every_metric_name() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    client
        .create_call(pb::CreateCallRequest::default())
        .await
        .expect("call created");
    let (code, body) = daemon.http_get("/metrics").await;
    assert_eq!(code, 200);
    for name in [
        "shopcall_active_calls 1",
        "shopcall_active_participants 0",
        "shopcall_connected_participants 0",
        "shopcall_forwarded_packets_total{kind=\"audio\"}",
        "shopcall_forwarded_bytes_total{kind=\"video\"}",
        "shopcall_received_packets_total{kind=\"audio\"}",
        "shopcall_received_bytes_total{kind=\"video\"}",
        "shopcall_dropped_packets_total{reason=\"unknown_ufrag\"}",
        "shopcall_datagrams_received_total",
        "shopcall_datagrams_sent_total",
        "shopcall_ice_failures_total",
        "shopcall_dtls_failures_total",
        "shopcall_path_moves_total 0",
        "shopcall_keyframe_requests_total",
        "shopcall_calls_created_total 1",
        "shopcall_calls_ended_total{reason=\"requested\"} 0",
        "shopcall_join_latency_seconds_bucket",
        "shopcall_call_duration_seconds_bucket",
        "shopcall_events_lagged_total",
    ] {
        assert!(body.contains(name), "{name} missing from /metrics:\n{body}");
    }
    let (code, _) = daemon.http_get("/nope").await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn create_get_list_and_end_a_call() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    let call_id = client
        .create_call(pb::CreateCallRequest::default())
        .await
        .expect("call created")
        .into_inner()
        .call_id;
    assert_eq!(call_id.len(), 16, "{call_id}");

    let call = client
        .get_call(pb::GetCallRequest {
            call_id: call_id.clone(),
        })
        .await
        .expect("GetCall works")
        .into_inner()
        .call
        .expect("a call");
    assert_eq!(call.call_id, call_id);
    assert_eq!(call.state, pb::CallState::Ringing as i32);
    assert_eq!(call.end_reason, pb::EndReason::Unspecified as i32);
    assert!(call.age.is_some());
    assert!(call.participants.is_empty());

    let listed = client
        .list_calls(pb::ListCallsRequest {})
        .await
        .expect("ListCalls works")
        .into_inner()
        .call_ids;
    assert_eq!(listed, vec![call_id.clone()]);

    client
        .end_call(pb::EndCallRequest {
            call_id: call_id.clone(),
        })
        .await
        .expect("EndCall works");
    let err = client
        .get_call(pb::GetCallRequest {
            call_id: call_id.clone(),
        })
        .await
        .expect_err("an ended call is forgotten");
    assert_eq!(err.code(), Code::NotFound);

    // The metrics recorder saw the CallEnded event: ended while ringing, so cancelled.
    let ended = common::eventually(Duration::from_secs(5), || async {
        let (_, body) = daemon.http_get("/metrics").await;
        body.contains("shopcall_calls_ended_total{reason=\"cancelled\"} 1")
            .then_some(())
    })
    .await;
    assert!(ended.is_some(), "calls_ended_total never counted the end");
}

#[tokio::test]
async fn unknown_ids_are_not_found() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;

    let err = client
        .get_call(pb::GetCallRequest {
            call_id: UNKNOWN_ID.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains(UNKNOWN_ID), "{}", err.message());

    let err = client
        .join(pb::JoinRequest {
            call_id: UNKNOWN_ID.into(),
            role: pb::Role::Merchant as i32,
            sdp_offer: "v=0\r\n".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let err = client
        .end_call(pb::EndCallRequest {
            call_id: UNKNOWN_ID.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let err = client
        .leave(pb::LeaveRequest {
            participant_id: UNKNOWN_ID.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("participant"), "{}", err.message());

    let err = client
        .add_ice_candidate(pb::AddIceCandidateRequest {
            participant_id: UNKNOWN_ID.into(),
            candidate: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let err = client
        .watch_events(pb::WatchEventsRequest {
            call_id: UNKNOWN_ID.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn malformed_sdp_is_invalid_argument_and_leaves_no_participant() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    let call_id = client
        .create_call(pb::CreateCallRequest::default())
        .await
        .unwrap()
        .into_inner()
        .call_id;

    for (offer, says) in [
        ("this is not sdp", "invalid SDP offer"),
        (
            // Parses, but has no media sections.
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
            "invalid SDP offer",
        ),
    ] {
        let err = client
            .join(pb::JoinRequest {
                call_id: call_id.clone(),
                role: pb::Role::Customer as i32,
                sdp_offer: offer.into(),
                ..Default::default()
            })
            .await
            .expect_err("a malformed offer is refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
        assert!(
            err.message().contains(says) && err.message().len() > says.len() + 2,
            "the message should say what is wrong: {:?}",
            err.message()
        );
    }

    let call = client
        .get_call(pb::GetCallRequest {
            call_id: call_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .call
        .unwrap();
    assert!(
        call.participants.is_empty(),
        "a refused join left a participant: {:?}",
        call.participants
    );
    let (_, metrics) = daemon.http_get("/metrics").await;
    assert!(
        metrics.contains("shopcall_active_participants 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn bad_request_fields_are_invalid_argument_naming_the_field() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    let call_id = client
        .create_call(pb::CreateCallRequest::default())
        .await
        .unwrap()
        .into_inner()
        .call_id;

    let expect_invalid = |result: Result<(), tonic::Status>, field: &str| {
        let err = result.expect_err("refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
        assert!(
            err.message().contains(field),
            "message {:?} should name {field}",
            err.message()
        );
    };

    for bad in [
        "",
        "xyz",
        "0123456789ABCDEFG",
        "0123456789abcdeg",
        "+123456789abcdef",
    ] {
        expect_invalid(
            client
                .get_call(pb::GetCallRequest {
                    call_id: bad.into(),
                })
                .await
                .map(drop),
            "call_id",
        );
        expect_invalid(
            client
                .end_call(pb::EndCallRequest {
                    call_id: bad.into(),
                })
                .await
                .map(drop),
            "call_id",
        );
        expect_invalid(
            client
                .leave(pb::LeaveRequest {
                    participant_id: bad.into(),
                })
                .await
                .map(drop),
            "participant_id",
        );
        expect_invalid(
            client
                .add_ice_candidate(pb::AddIceCandidateRequest {
                    participant_id: bad.into(),
                    candidate: String::new(),
                })
                .await
                .map(drop),
            "participant_id",
        );
        if !bad.is_empty() {
            expect_invalid(
                client
                    .watch_events(pb::WatchEventsRequest {
                        call_id: bad.into(),
                    })
                    .await
                    .map(drop),
                "call_id",
            );
        }
    }

    expect_invalid(
        client
            .join(pb::JoinRequest {
                call_id: call_id.clone(),
                role: pb::Role::Unspecified as i32,
                sdp_offer: "v=0\r\n".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "ROLE_UNSPECIFIED",
    );
    expect_invalid(
        client
            .join(pb::JoinRequest {
                call_id: call_id.clone(),
                role: 42,
                sdp_offer: "v=0\r\n".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "role",
    );
    expect_invalid(
        client
            .join(pb::JoinRequest {
                call_id: call_id.clone(),
                role: pb::Role::Merchant as i32,
                sdp_offer: String::new(),
                ..Default::default()
            })
            .await
            .map(drop),
        "sdp_offer",
    );
}

#[tokio::test]
async fn oversized_requests_are_refused() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    let call_id = client
        .create_call(pb::CreateCallRequest::default())
        .await
        .unwrap()
        .into_inner()
        .call_id;
    let err = client
        .join(pb::JoinRequest {
            call_id,
            role: pb::Role::Merchant as i32,
            sdp_offer: "a".repeat(300 * 1024),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{}", err.message());
}

#[tokio::test]
async fn capacity_is_resource_exhausted() {
    let daemon = Daemon::start(&["--max-calls", "1"]);
    let mut client = daemon.client().await;
    client
        .create_call(pb::CreateCallRequest::default())
        .await
        .unwrap();
    let err = client
        .create_call(pb::CreateCallRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(
        err.message().contains("1 concurrent calls"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn candidates_role_taken_and_leave_with_a_real_offer() {
    // A participant is needed: join with an offer from a real WebRTC client.
    let peer = shopcall_peer::TestPeer::new(shopcall_peer::PeerConfig::named("customer"))
        .await
        .expect("peer starts");
    let offer = peer.create_offer().await.expect("offer");
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    let call_id = client
        .create_call(pb::CreateCallRequest::default())
        .await
        .unwrap()
        .into_inner()
        .call_id;
    let joined = client
        .join(pb::JoinRequest {
            call_id: call_id.clone(),
            role: pb::Role::Customer as i32,
            sdp_offer: offer.clone(),
            ..Default::default()
        })
        .await
        .expect("a real offer joins")
        .into_inner();
    assert!(
        joined.sdp_answer.contains("a=ice-lite"),
        "{}",
        joined.sdp_answer
    );

    let err = client
        .add_ice_candidate(pb::AddIceCandidateRequest {
            participant_id: joined.participant_id.clone(),
            candidate: "not a candidate".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("candidate"), "{}", err.message());

    // The same role again: FAILED_PRECONDITION.
    let err = client
        .join(pb::JoinRequest {
            call_id: call_id.clone(),
            role: pb::Role::Customer as i32,
            sdp_offer: offer,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    assert!(err.message().contains("customer"), "{}", err.message());

    client
        .leave(pb::LeaveRequest {
            participant_id: joined.participant_id.clone(),
        })
        .await
        .expect("Leave works");
    // Gone: a second Leave finds nobody, and no participant is active.
    let err = client
        .leave(pb::LeaveRequest {
            participant_id: joined.participant_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let (_, metrics) = daemon.http_get("/metrics").await;
    assert!(
        metrics.contains("shopcall_active_participants 0"),
        "{metrics}"
    );
    // The callee's join answered the call, so its leaving ended it.
    let err = client
        .get_call(pb::GetCallRequest { call_id })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let ended = common::eventually(Duration::from_secs(5), || async {
        let (_, body) = daemon.http_get("/metrics").await;
        body.contains("shopcall_calls_ended_total{reason=\"participant_left\"} 1")
            .then_some(())
    })
    .await;
    assert!(
        ended.is_some(),
        "the call did not end with participant_left"
    );
    peer.close().await;
}
