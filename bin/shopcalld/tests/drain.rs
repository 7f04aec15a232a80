//! Graceful drain and node stats, against the real daemon on loopback: the Drain RPC refuses
//! new calls (UNAVAILABLE, health NOT_SERVING, `/healthz` 503) while an existing call goes on
//! with its media, ends it at the deadline with `server_shutdown` and exits 0; a drain whose
//! calls end by themselves finishes early; SIGTERM drains for `--shutdown-timeout-secs`;
//! NodeStats reports sane numbers for a call with media.

mod common;

use std::time::{Duration, Instant};

use common::Daemon;
use shopcall_peer::{MediaPlan, PeerConfig, TestPeer};
use shopcall_proto::v1 as pb;
use shopcall_proto::v1::call_service_client::CallServiceClient;
use shopcall_proto::v1::node_service_client::NodeServiceClient;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// A call with both participants connected and sending media.
struct LiveCall {
    id: String,
    merchant: TestPeer,
    customer: TestPeer,
}

async fn join(
    client: &mut CallServiceClient<Channel>,
    call: &str,
    role: pb::Role,
    name: &str,
) -> TestPeer {
    let peer = TestPeer::new(PeerConfig::named(name))
        .await
        .expect("peer starts");
    let offer = peer.create_offer().await.expect("peer offers");
    let joined = client
        .join(pb::JoinRequest {
            call_id: call.to_owned(),
            role: role as i32,
            sdp_offer: offer,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{name} could not join: {e}"))
        .into_inner();
    peer.set_answer(&joined.sdp_answer).await.expect("answer");
    peer
}

async fn live_call(client: &mut CallServiceClient<Channel>) -> LiveCall {
    let id = client
        .create_call(pb::CreateCallRequest::default())
        .await
        .expect("call created")
        .into_inner()
        .call_id;
    let merchant = join(client, &id, pb::Role::Merchant, "merchant").await;
    let customer = join(client, &id, pb::Role::Customer, "customer").await;
    merchant.wait_connected(CONNECT_TIMEOUT).await.unwrap();
    customer.wait_connected(CONNECT_TIMEOUT).await.unwrap();
    merchant.start_media(MediaPlan::default());
    customer.start_media(MediaPlan::default());
    LiveCall {
        id,
        merchant,
        customer,
    }
}

/// Audio packets the customer received from the merchant so far.
fn customer_audio(call: &LiveCall) -> u64 {
    call.customer.stats().audio.packets_received
}

/// Every event of the daemon, in a channel.
async fn watch_all(client: &mut CallServiceClient<Channel>) -> mpsc::UnboundedReceiver<pb::Event> {
    common::watch_events(client, "").await
}

/// The `CallEnded` of `call`, waiting up to `limit`.
async fn call_ended(
    events: &mut mpsc::UnboundedReceiver<pb::Event>,
    call: &str,
    limit: Duration,
) -> Option<pb::CallEnded> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .ok()??;
        if let Some(pb::event::Kind::CallEnded(end)) = event.kind
            && event.call_id == call
        {
            return Some(end);
        }
    }
}

/// Reads a Drain stream to its end (at most `limit`) and returns the last report.
async fn last_report(
    stream: &mut tonic::Streaming<pb::DrainProgress>,
    mut last: pb::DrainProgress,
    limit: Duration,
) -> pb::DrainProgress {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(p))) => last = p,
            Ok(Some(Err(status))) => panic!("Drain stream failed: {status}"),
            Ok(None) => return last,
            Err(_) => panic!("the Drain stream did not end within {limit:?}; last {last:?}"),
        }
    }
}

fn seconds(d: &Option<prost_types::Duration>) -> f64 {
    d.as_ref()
        .map_or(-1.0, |d| d.seconds as f64 + f64::from(d.nanos) / 1e9)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_keeps_the_call_refuses_new_ones_then_ends_it_at_the_deadline_and_exits() {
    let mut daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    let mut node = NodeServiceClient::new(daemon.channel().await);
    let mut events = watch_all(&mut client).await;
    let call = live_call(&mut client).await;
    assert!(
        common::eventually(Duration::from_secs(5), || async {
            (customer_audio(&call) > 20).then_some(())
        })
        .await
        .is_some(),
        "media flows before the drain"
    );

    let started = Instant::now();
    let mut progress = node
        .drain(pb::DrainRequest {
            deadline: Some(prost_types::Duration {
                seconds: 4,
                nanos: 0,
            }),
            exit_when_drained: true,
        })
        .await
        .expect("Drain starts")
        .into_inner();
    let first = progress.next().await.unwrap().unwrap();
    assert_eq!(first.phase, pb::DrainPhase::Draining as i32);
    assert_eq!(first.remaining_calls, 1, "{first:?}");
    assert!(first.exit_when_drained);
    assert!(
        (3.0..=4.0).contains(&seconds(&first.time_left)),
        "{first:?}"
    );

    // New calls are refused; health and readiness say so.
    let err = client
        .create_call(pb::CreateCallRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    let mut health = tonic_health::pb::health_client::HealthClient::new(daemon.channel().await);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.status, 2, "NOT_SERVING");
    assert_eq!(daemon.http_get("/healthz").await.0, 503);
    let stats = node
        .node_stats(pb::NodeStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.drain_phase, pb::DrainPhase::Draining as i32);
    assert!(!stats.accepting_calls);
    assert_eq!(stats.active_calls, 1);

    // The existing call goes on: media keeps flowing, and it can still be read.
    let before = customer_audio(&call);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        customer_audio(&call) > before + 30,
        "media stopped during the drain: {before} then {}",
        customer_audio(&call)
    );
    client
        .get_call(pb::GetCallRequest {
            call_id: call.id.clone(),
        })
        .await
        .expect("the call is still there");

    // At the deadline it ends with server_shutdown, the stream reports it, the daemon exits 0.
    let ended = call_ended(&mut events, &call.id, Duration::from_secs(10))
        .await
        .expect("the call ends at the deadline");
    let at = started.elapsed();
    assert_eq!(ended.reason, pb::EndReason::ServerShutdown as i32);
    assert!(
        at >= Duration::from_millis(3500) && at < Duration::from_secs(8),
        "ended after {at:?}, deadline 4 s"
    );
    let last = last_report(&mut progress, first, Duration::from_secs(10)).await;
    assert_eq!(last.phase, pb::DrainPhase::Drained as i32, "{last:?}");
    assert_eq!(last.calls_ended_at_deadline, 1);
    assert_eq!(last.remaining_calls, 0);

    let status = daemon.wait_exit(Duration::from_secs(20));
    assert_eq!(
        status.code(),
        Some(0),
        "logs:\n{}",
        daemon.logs().join("\n")
    );
    let logs = daemon.logs().join("\n");
    assert!(logs.contains("drain deadline reached"), "{logs}");
    call.merchant.close().await;
    call.customer.close().await;
}

#[tokio::test]
async fn a_drain_whose_calls_end_finishes_early_and_stays_up_until_told() {
    let mut daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    let mut node = NodeServiceClient::new(daemon.channel().await);
    let call = client
        .create_call(pb::CreateCallRequest::default())
        .await
        .unwrap()
        .into_inner()
        .call_id;

    let mut progress = node
        .drain(pb::DrainRequest {
            deadline: Some(prost_types::Duration {
                seconds: 600,
                nanos: 0,
            }),
            exit_when_drained: false,
        })
        .await
        .unwrap()
        .into_inner();
    let first = progress.next().await.unwrap().unwrap();
    assert_eq!(first.remaining_calls, 1);
    // A participant of the existing call may still act on it while it drains.
    client
        .answer(pb::AnswerRequest {
            call_id: call.clone(),
            role: pb::Role::Customer as i32,
        })
        .await
        .expect("answering an existing call during the drain");
    let started = Instant::now();
    client
        .end_call(pb::EndCallRequest {
            call_id: call.clone(),
        })
        .await
        .unwrap();
    let last = last_report(&mut progress, first, Duration::from_secs(10)).await;
    assert_eq!(last.phase, pb::DrainPhase::Drained as i32);
    assert_eq!(last.calls_ended_at_deadline, 0);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // Drained but not asked to exit: still up, still refusing calls.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        daemon.is_running(),
        "drained without exit_when_drained, yet it exited"
    );
    let stats = node
        .node_stats(pb::NodeStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.drain_phase, pb::DrainPhase::Drained as i32);
    assert!(stats.drain_time_left.is_none());
    let err = client
        .create_call(pb::CreateCallRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);

    // A second Drain asks for the exit: it happens at once, exit status 0.
    let mut again = node
        .drain(pb::DrainRequest {
            deadline: None,
            exit_when_drained: true,
        })
        .await
        .unwrap()
        .into_inner();
    let last = last_report(&mut again, last, Duration::from_secs(10)).await;
    assert_eq!(last.phase, pb::DrainPhase::Drained as i32);
    let status = daemon.wait_exit(Duration::from_secs(15));
    assert_eq!(
        status.code(),
        Some(0),
        "logs:\n{}",
        daemon.logs().join("\n")
    );
}

#[tokio::test]
async fn sigterm_lets_calls_run_until_the_shutdown_timeout() {
    let mut daemon = Daemon::start(&["--shutdown-timeout-secs", "3"]);
    let mut client = daemon.client().await;
    let mut events = watch_all(&mut client).await;
    let call = client
        .create_call(pb::CreateCallRequest::default())
        .await
        .unwrap()
        .into_inner()
        .call_id;
    let started = Instant::now();
    daemon.terminate();
    // During the drain the API still answers, and refuses new calls.
    let err = common::eventually(Duration::from_secs(2), || {
        let mut client = client.clone();
        async move {
            client
                .create_call(pb::CreateCallRequest::default())
                .await
                .err()
        }
    })
    .await
    .expect("CreateCall is refused once the drain started");
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    client
        .get_call(pb::GetCallRequest {
            call_id: call.clone(),
        })
        .await
        .expect("the existing call is still there during the drain");

    let ended = call_ended(&mut events, &call, Duration::from_secs(10))
        .await
        .expect("the call ends at the shutdown timeout");
    assert_eq!(ended.reason, pb::EndReason::ServerShutdown as i32);
    let at = started.elapsed();
    assert!(
        at >= Duration::from_millis(2500),
        "ended after {at:?}: the drain did not wait"
    );
    let status = daemon.wait_exit(Duration::from_secs(15));
    assert_eq!(
        status.code(),
        Some(0),
        "logs:\n{}",
        daemon.logs().join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_stats_reports_load_capacity_and_state() {
    let daemon = Daemon::start(&["--max-calls", "7"]);
    let mut client = daemon.client().await;
    let mut node = NodeServiceClient::new(daemon.channel().await);

    let idle = node
        .node_stats(pb::NodeStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(idle.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(idle.max_calls, 7);
    assert_eq!(idle.active_calls, 0);
    assert_eq!(idle.drain_phase, pb::DrainPhase::Serving as i32);
    assert!(idle.accepting_calls);
    assert!(idle.drain_time_left.is_none());
    assert!(idle.cpu_count >= 1);
    assert!(idle.rss_bytes > 1024 * 1024, "{idle:?}");
    assert!(idle.uptime.is_some());

    let call = live_call(&mut client).await;
    // Let a full rate window of media pass.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let busy = node
        .node_stats(pb::NodeStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(busy.active_calls, 1);
    assert_eq!(busy.active_participants, 2);
    assert_eq!(busy.connected_participants, 2);
    let window = seconds(&busy.rate_window);
    // The oldest sample kept is up to one sampling period (1 s) older than the 5 s window,
    // and a loaded machine ticks late.
    assert!((0.9..=7.0).contains(&window), "{busy:?}");
    // Audio (50/s) and video from each side in, and forwarded out (the customer's video is
    // dropped by policy, so less goes out than comes in).
    assert!(busy.packets_in_per_second > 100.0, "{busy:?}");
    assert!(busy.packets_out_per_second > 50.0, "{busy:?}");
    assert!(
        busy.packets_out_per_second <= busy.packets_in_per_second * 1.1,
        "{busy:?}"
    );
    assert!(
        busy.datagrams_in_per_second >= busy.packets_in_per_second * 0.9,
        "{busy:?}"
    );
    assert!(busy.bits_in_per_second > 100_000.0, "{busy:?}");
    assert!(busy.bits_out_per_second > 0.0, "{busy:?}");
    assert!(
        busy.cpu_cores > 0.0 && busy.cpu_cores <= f64::from(busy.cpu_count) + 0.5,
        "{busy:?}"
    );
    assert!(busy.uptime.as_ref().unwrap().seconds >= 6);
    call.merchant.close().await;
    call.customer.close().await;
}
