//! End to end: the real daemon on loopback, a call created over gRPC, two WebRTC clients
//! (async webrtc-rs `TestPeer`s) joined as merchant and customer, audio and video both ways
//! for a few seconds, a PLI relayed to the sender, and EndCall seen on WatchEvents.
//!
//! Under the default profile the customer's camera is off until the customer turns it on, so
//! the customer's video must not reach the merchant: it is dropped at ingress and counted as
//! `policy_denied`. Everything else must arrive.
//!
//! Every assertion compares counts; timing only bounds how long a count may take.

mod common;

use std::time::Duration;

use common::Daemon;
use shopcall_peer::{KindStats, MediaPlan, PeerConfig, PeerStats, TestPeer};
use shopcall_proto::v1 as pb;
use shopcall_proto::v1::call_service_client::CallServiceClient;
use tokio::sync::mpsc;
use tonic::transport::Channel;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const MEDIA_TIME: Duration = Duration::from_millis(3500);
/// Share of sent packets that must arrive on the other side.
const MIN_DELIVERY: f64 = 0.9;

/// Builds a peer, joins it to `call` with `role`, applies the answer.
async fn join(
    client: &mut CallServiceClient<Channel>,
    call: &str,
    role: pb::Role,
    name: &str,
) -> (TestPeer, String) {
    let peer = TestPeer::new(PeerConfig::named(name))
        .await
        .expect("peer starts");
    let joined = common::join_peer(client, &peer, call, role, common::no_tracks).await;
    (peer, joined.participant_id)
}

/// Polls `peer`'s stats every 50 ms until `cond` holds or `limit` passes.
async fn wait_until(peer: &TestPeer, limit: Duration, cond: impl Fn(&PeerStats) -> bool) -> bool {
    common::eventually(limit, || async { cond(&peer.stats()).then_some(()) })
        .await
        .is_some()
}

/// Waits until `peer` stops receiving (its counters hold still for 300 ms), at most 3 s.
async fn settle(peer: &TestPeer) {
    let mut last = None;
    for _ in 0..30 {
        let s = peer.stats();
        let now = (s.audio.packets_received, s.video.packets_received);
        if last == Some(now) {
            return;
        }
        last = Some(now);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Checks one direction of one kind: what `rx` got of what `tx` sent.
fn assert_delivered(what: &str, tx: &KindStats, rx: &KindStats) {
    assert!(tx.packets_sent > 0, "{what}: nothing was sent");
    let ratio = rx.intact as f64 / tx.packets_sent as f64;
    assert!(
        ratio >= MIN_DELIVERY,
        "{what}: {} of {} packets arrived intact ({:.1} %); sent {tx:?}, received {rx:?}",
        rx.intact,
        tx.packets_sent,
        ratio * 100.0
    );
    assert_eq!(rx.corrupt, 0, "{what}: corrupted payloads: {rx:?}");
}

/// The first event of the stream (up to `limit`) that `pick` accepts.
async fn next_event<T>(
    events: &mut mpsc::UnboundedReceiver<pb::Event>,
    limit: Duration,
    mut pick: impl FnMut(&pb::Event) -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .ok()??;
        if let Some(v) = pick(&event) {
            return Some(v);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_peers_call_through_the_daemon() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;

    // Watch everything from the start.
    let mut events = common::watch_events(&mut client, "").await;

    let call = client
        .create_call(pb::CreateCallRequest::default())
        .await
        .expect("call created")
        .into_inner()
        .call_id;
    let (merchant, merchant_id) = join(&mut client, &call, pb::Role::Merchant, "merchant").await;
    let (customer, customer_id) = join(&mut client, &call, pb::Role::Customer, "customer").await;

    // A third participant in a 1:1 call is refused.
    let third = TestPeer::new(PeerConfig::named("third"))
        .await
        .expect("peer starts");
    let err = client
        .join(pb::JoinRequest {
            call_id: call.clone(),
            role: pb::Role::Customer as i32,
            sdp_offer: third.create_offer().await.expect("offer"),
            ..Default::default()
        })
        .await
        .expect_err("a third participant is refused");
    assert_eq!(
        err.code(),
        tonic::Code::FailedPrecondition,
        "{}",
        err.message()
    );
    third.close().await;

    merchant
        .wait_connected(CONNECT_TIMEOUT)
        .await
        .expect("merchant connects through the SFU");
    customer
        .wait_connected(CONNECT_TIMEOUT)
        .await
        .expect("customer connects through the SFU");
    let connected = next_event(&mut events, CONNECT_TIMEOUT, |e| {
        (e.call_id == call && matches!(e.kind, Some(pb::event::Kind::CallConnected(_))))
            .then_some(())
    })
    .await;
    assert!(connected.is_some(), "no CallConnected event");

    // Media both ways.
    merchant.start_media(MediaPlan::default());
    customer.start_media(MediaPlan::default());
    tokio::time::sleep(MEDIA_TIME).await;
    merchant.stop_media().await;
    customer.stop_media().await;
    settle(&merchant).await;
    settle(&customer).await;

    let (m, c) = (merchant.stats(), customer.stats());
    assert_delivered("merchant -> customer audio", &m.audio, &c.audio);
    assert_delivered("merchant -> customer video", &m.video, &c.video);
    assert_delivered("customer -> merchant audio", &c.audio, &m.audio);
    assert!(c.video.packets_sent > 0, "the customer sent no video");
    assert_eq!(
        m.video.packets_received, 0,
        "the customer's video reached the merchant with the camera off: {:?}",
        m.video
    );
    assert!(c.video.keyframes_received > 0, "customer saw no keyframe");

    // A PLI from the customer reaches the merchant's video sender.
    let before = merchant.stats().video.plis_received;
    let sent = customer.send_pli().await.expect("PLI sent");
    assert!(
        sent > 0,
        "the customer has no remote video track to ask a keyframe of"
    );
    assert!(
        wait_until(&merchant, Duration::from_secs(5), |s| s.video.plis_received
            > before)
        .await,
        "the customer's PLI never reached the merchant"
    );

    // GetCall reflects the call.
    let stats = client
        .get_call(pb::GetCallRequest {
            call_id: call.clone(),
        })
        .await
        .expect("GetCall works")
        .into_inner()
        .call
        .expect("a call");
    assert_eq!(stats.state, pb::CallState::Connected as i32);
    assert_eq!(stats.end_reason, pb::EndReason::Unspecified as i32);
    assert_eq!(stats.video_codec, pb::VideoCodec::Vp8 as i32);
    assert!(stats.connected_duration.is_some());
    assert_eq!(stats.participants.len(), 2, "{:?}", stats.participants);
    for p in &stats.participants {
        let who = if p.participant_id == merchant_id {
            pb::Role::Merchant
        } else {
            assert_eq!(p.participant_id, customer_id);
            pb::Role::Customer
        };
        assert_eq!(p.role, who as i32);
        assert_eq!(p.connection_state, pb::ConnectionState::Connected as i32);
        let received = p.received.expect("counters");
        let sent = p.sent.expect("counters");
        assert!(received.video.expect("video").packets > 0, "{p:?}");
        assert!(received.audio.expect("audio").packets > 0, "{p:?}");
        assert!(sent.audio.expect("audio").packets > 0, "{p:?}");
        assert!(p.connected_duration.is_some());
    }
    let customer_stats = stats
        .participants
        .iter()
        .find(|p| p.participant_id == customer_id)
        .expect("customer listed");
    let denied = customer_stats
        .dropped
        .iter()
        .find(|d| d.reason == pb::DropReason::PolicyDenied as i32)
        .map_or(0, |d| d.packets);
    assert!(
        denied > 0,
        "the customer's video was not counted as policy_denied: {customer_stats:?}"
    );
    let merchant_stats = stats
        .participants
        .iter()
        .find(|p| p.participant_id == merchant_id)
        .expect("merchant listed");
    assert!(
        merchant_stats.keyframe_requests_sent > 0,
        "the SFU sent the merchant no keyframe request: {merchant_stats:?}"
    );

    // Metrics counted the forwarding and the joins.
    let (_, metrics) = daemon.http_get("/metrics").await;
    assert!(
        metrics.contains("shopcall_join_latency_seconds_count 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("shopcall_connected_participants 2"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("shopcall_forwarded_packets_total{kind=\"video\"} 0\n"),
        "{metrics}"
    );

    // EndCall: the call ends with reason REQUESTED and its record.
    client
        .end_call(pb::EndCallRequest {
            call_id: call.clone(),
        })
        .await
        .expect("EndCall works");
    let ended = next_event(&mut events, Duration::from_secs(10), |e| match &e.kind {
        Some(pb::event::Kind::CallEnded(end)) if e.call_id == call => Some(end.clone()),
        _ => None,
    })
    .await
    .expect("CallEnded arrives on WatchEvents");
    assert_eq!(ended.reason, pb::EndReason::Requested as i32);
    let record = ended.record.expect("the record");
    assert_eq!(record.participants.len(), 2);
    assert!(
        record
            .connected_duration
            .is_some_and(|d| d.seconds > 0 || d.nanos > 0)
    );

    merchant.close().await;
    customer.close().await;
}
