//! SIGTERM drains the real daemon: calls end with reason server_shutdown (seen on
//! WatchEvents, which then ends), and the process exits 0.

mod common;

use std::time::Duration;

use common::Daemon;
use shopcall_proto::v1 as pb;
use tokio_stream::StreamExt;

/// Reads the stream until it ends or `limit` passes; returns what it got.
async fn collect(
    stream: &mut tonic::Streaming<pb::WatchEventsResponse>,
    limit: Duration,
) -> (Vec<pb::Event>, bool) {
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(msg))) => events.push(msg.event.expect("every message has an event")),
            Ok(Some(Err(status))) => panic!("stream failed: {status}"),
            Ok(None) => return (events, true),
            Err(_) => return (events, false),
        }
    }
}

#[tokio::test]
async fn sigterm_ends_calls_with_server_shutdown_and_exits_zero() {
    let mut daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;

    let mut all = client
        .watch_events(pb::WatchEventsRequest::default())
        .await
        .expect("WatchEvents starts")
        .into_inner();
    let first = client
        .create_call(pb::CreateCallRequest::default())
        .await
        .unwrap()
        .into_inner()
        .call_id;
    let second = client
        .create_call(pb::CreateCallRequest::default())
        .await
        .unwrap()
        .into_inner()
        .call_id;
    let mut only_first = client
        .watch_events(pb::WatchEventsRequest {
            call_id: first.clone(),
        })
        .await
        .expect("filtered WatchEvents starts")
        .into_inner();

    daemon.terminate();

    let (events, ended) = collect(&mut all, Duration::from_secs(15)).await;
    assert!(ended, "WatchEvents did not end at shutdown: {events:?}");
    let created: Vec<&str> = events
        .iter()
        .filter(|e| matches!(e.kind, Some(pb::event::Kind::CallCreated(_))))
        .map(|e| e.call_id.as_str())
        .collect();
    assert_eq!(created, vec![first.as_str(), second.as_str()]);
    for call in [&first, &second] {
        let ended = events
            .iter()
            .find_map(|e| match &e.kind {
                Some(pb::event::Kind::CallEnded(end)) if &e.call_id == call => Some(end),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no CallEnded for {call}: {events:?}"));
        assert_eq!(ended.reason, pb::EndReason::ServerShutdown as i32);
        let record = ended.record.as_ref().expect("CallEnded carries the record");
        assert_eq!(&record.call_id, call);
        assert_eq!(record.end_reason, pb::EndReason::ServerShutdown as i32);
        assert!(record.duration.is_some());
    }
    assert!(events.iter().all(|e| e.time.is_some()));

    let (events, ended) = collect(&mut only_first, Duration::from_secs(15)).await;
    assert!(ended, "filtered WatchEvents did not end: {events:?}");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].call_id, first);
    assert!(matches!(
        events[0].kind,
        Some(pb::event::Kind::CallEnded(ref e)) if e.reason == pb::EndReason::ServerShutdown as i32
    ));

    let status = daemon.wait_exit(Duration::from_secs(20));
    assert_eq!(
        status.code(),
        Some(0),
        "logs:\n{}",
        daemon.logs().join("\n")
    );
    let logs = daemon.logs().join("\n");
    assert!(logs.contains("SIGTERM"), "{logs}");
    assert!(logs.contains("shopcalld stopped"), "{logs}");
}

#[tokio::test]
async fn health_watchers_see_not_serving_and_do_not_hold_the_exit() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    // A long shutdown timeout: the exit must not wait for it.
    let mut daemon = Daemon::start(&["--shutdown-timeout-secs", "60"]);
    let mut health = HealthClient::new(daemon.channel().await);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "shopcall.v1.CallService".into(),
        })
        .await
        .expect("health Watch starts")
        .into_inner();
    let first = watch.next().await.expect("a status").expect("not an error");
    assert_eq!(first.status, ServingStatus::Serving as i32);

    let started = std::time::Instant::now();
    daemon.terminate();
    let mut seen = Vec::new();
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(15), watch.next()).await
    {
        seen.push(msg.status);
    }
    assert!(
        seen.contains(&(ServingStatus::NotServing as i32)),
        "statuses after SIGTERM: {seen:?}"
    );
    let status = daemon.wait_exit(Duration::from_secs(20));
    assert_eq!(
        status.code(),
        Some(0),
        "logs:\n{}",
        daemon.logs().join("\n")
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "exit took {:?}: an open Watch held the shutdown",
        started.elapsed()
    );
}
