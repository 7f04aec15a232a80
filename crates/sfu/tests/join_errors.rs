//! Bad joins fail with the right error and leave nothing behind.

use std::time::{Duration, Instant};

use sfu::testing::{ClientOptions, SimNet};
use sfu::{CallOptions, EndReason, Error, Event, JoinRequest, LeaveReason, Role, SfuConfig};

#[test]
fn a_third_participant_and_a_taken_role_are_refused() {
    let mut net = SimNet::new(SfuConfig::default());
    let call = net.create_call();
    let a = net.add_client(ClientOptions::default());
    let b = net.add_client(ClientOptions::default());
    let c = net.add_client(ClientOptions::default());
    net.join(call, Role::Merchant, a).unwrap();
    let err = net.join(call, Role::Merchant, b).unwrap_err();
    assert!(
        matches!(
            err,
            Error::RoleTaken {
                role: Role::Merchant,
                ..
            }
        ),
        "{err}"
    );
    net.join(call, Role::Customer, b).unwrap();
    let err = net.join(call, Role::Customer, c).unwrap_err();
    assert!(matches!(err, Error::CallFull(id) if id == call), "{err}");
    assert_eq!(
        net.engine
            .call_stats(call, net.now)
            .unwrap()
            .participants
            .len(),
        2
    );
}

#[test]
fn malformed_offers_leave_no_state() {
    let mut net = SimNet::new(SfuConfig::default());
    let call = net.create_call();
    let a = net.add_client(ClientOptions::default());
    let good = net.offer(a);
    let bad = [
        String::new(),
        "v=0\r\n".to_owned(),
        good.replace("a=group:BUNDLE", "a=group:LS"),
        good.replace("a=rtcp-mux\r\n", ""),
        good.replace("VP8/90000", "AV1X/90000")
            .replace("H264/90000", "AV1Y/90000"),
        "m=audio 9 RTP/AVP 0\r\n".repeat(20_000),
        good.replace("m=audio", "m=application"),
    ];
    for sdp in bad {
        let err = net
            .engine
            .join(call, JoinRequest::new(Role::Merchant, sdp), net.now)
            .unwrap_err();
        assert!(matches!(err, Error::InvalidOffer(_)), "{err}");
        assert!(!err.to_string().is_empty());
    }
    assert_eq!(
        net.engine
            .call_stats(call, net.now)
            .unwrap()
            .participants
            .len(),
        0
    );
    assert!(
        net.take_events()
            .iter()
            .all(|e| !matches!(e, Event::ParticipantJoined { .. }))
    );
    // The role is still free: a good offer joins.
    net.join(call, Role::Merchant, a).unwrap();
}

#[test]
fn unknown_ids_are_not_found_and_an_ended_call_is_forgotten() {
    let mut net = SimNet::new(SfuConfig::default());
    let now = net.now;
    let ghost = sfu::CallId::from_raw(42);
    let err = net
        .engine
        .join(ghost, JoinRequest::new(Role::Customer, String::new()), now)
        .unwrap_err();
    assert!(matches!(err, Error::CallNotFound(id) if id == ghost));
    assert!(matches!(
        net.engine.leave(sfu::ParticipantId::from_raw(1), now),
        Err(Error::ParticipantNotFound(_))
    ));
    let call = net
        .engine
        .create_call(CallOptions::default(), now)
        .unwrap()
        .id;
    net.engine
        .end_call(call, EndReason::Requested, now)
        .unwrap();
    assert!(matches!(
        net.engine.end_call(call, EndReason::Requested, now),
        Err(Error::CallNotFound(_))
    ));
    assert!(net.engine.is_idle());
}

#[test]
fn a_participant_that_never_connects_is_removed_after_the_connect_timeout() {
    let config = SfuConfig {
        connect_timeout: Duration::from_secs(5),
        ..SfuConfig::default()
    };
    let mut net = SimNet::new(config);
    let call = net.create_call();
    let a = net.add_client(ClientOptions::default());
    let offer_sdp = net.offer(a);
    // The client never gets the answer: it never runs ICE.
    let joined = net
        .engine
        .join(call, JoinRequest::new(Role::Customer, offer_sdp), net.now)
        .unwrap();
    net.run_for(Duration::from_secs(4));
    assert_eq!(
        net.engine
            .call_stats(call, net.now)
            .unwrap()
            .participants
            .len(),
        1
    );
    net.run_for(Duration::from_secs(2));
    let events = net.take_events();
    let left = events.iter().find_map(|e| match e {
        Event::ParticipantLeft {
            participant,
            reason,
            ..
        } => Some((*participant, *reason)),
        _ => None,
    });
    assert_eq!(
        left,
        Some((joined.participant, LeaveReason::ConnectTimeout))
    );
    // The callee's join answered the call, so its failure ends it.
    let ended = events.iter().find_map(|e| match e {
        Event::CallEnded { reason, .. } => Some(*reason),
        _ => None,
    });
    assert_eq!(ended, Some(EndReason::TransportFailed));
    assert!(net.engine.is_idle());
}

#[test]
fn shutdown_ends_every_call_and_refuses_new_ones() {
    let mut net = SimNet::new(SfuConfig::default());
    let now = Instant::now().max(net.now);
    for _ in 0..3 {
        net.engine.create_call(CallOptions::default(), now).unwrap();
    }
    net.engine.shutdown(now);
    let ended = net
        .take_events()
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                Event::CallEnded {
                    reason: EndReason::ServerShutdown,
                    ..
                }
            )
        })
        .count();
    assert_eq!(ended, 3);
    assert!(matches!(
        net.engine.create_call(CallOptions::default(), now),
        Err(Error::ShuttingDown)
    ));
    assert!(net.engine.is_idle());
}

#[test]
fn capacity_is_enforced() {
    let mut net = SimNet::new(SfuConfig {
        max_calls: 2,
        ..SfuConfig::default()
    });
    let now = net.now;
    net.engine.create_call(CallOptions::default(), now).unwrap();
    net.engine.create_call(CallOptions::default(), now).unwrap();
    assert!(matches!(
        net.engine.create_call(CallOptions::default(), now),
        Err(Error::AtCapacity { max_calls: 2 })
    ));
}

#[test]
fn hanging_up_ends_a_connected_call_with_participant_left() {
    let mut net = SimNet::new(SfuConfig::default());
    let call = net.create_call();
    let a = net.add_client(ClientOptions::default());
    let b = net.add_client(ClientOptions::default());
    let pa = net.join(call, Role::Merchant, a).unwrap().participant;
    net.join(call, Role::Customer, b).unwrap();
    assert!(net.connect_all(Duration::from_secs(10)));
    net.engine.leave(pa, net.now).unwrap();
    let reason = net.take_events().into_iter().find_map(|e| match e {
        Event::CallEnded { reason, .. } => Some(reason),
        _ => None,
    });
    assert_eq!(reason, Some(EndReason::ParticipantLeft));
    assert!(net.engine.is_idle());
}

#[test]
fn a_vanished_client_fails_its_transport_and_ends_the_call() {
    let mut net = SimNet::new(SfuConfig::default());
    let call = net.create_call();
    let a = net.add_client(ClientOptions::default());
    let b = net.add_client(ClientOptions::default());
    net.join(call, Role::Merchant, a).unwrap();
    net.join(call, Role::Customer, b).unwrap();
    assert!(net.connect_all(Duration::from_secs(10)));
    net.close_client(b);
    net.run_for(Duration::from_secs(60));
    let events = net.take_events();
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::CallEnded {
                reason: EndReason::TransportFailed | EndReason::PeerLost,
                ..
            }
        )),
        "{events:#?}"
    );
    assert!(net.engine.is_idle());
}

#[test]
fn the_first_joiner_fixes_the_call_codec() {
    let mut net = SimNet::new(SfuConfig {
        video_codecs: vec![sfu::VideoCodec::H264, sfu::VideoCodec::Vp8],
        ..SfuConfig::default()
    });
    let call = net.create_call();
    let a = net.add_client(ClientOptions {
        h264_first: true,
        ..ClientOptions::default()
    });
    net.join(call, Role::Merchant, a).unwrap();
    let stats = net.engine.call_stats(call, net.now).unwrap();
    assert_eq!(stats.video_codec, Some(sfu::VideoCodec::H264));
}
