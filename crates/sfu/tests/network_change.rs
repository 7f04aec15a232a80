//! Network changes: an ICE restart after the client's address changes keeps the same call;
//! a silent participant is disconnected, gets a grace period, and is then lost.

use std::net::SocketAddr;
use std::time::Duration;

use sfu::policy::Lens;
use sfu::testing::{ClientOptions, SimNet};
use sfu::{ConnectionState, EndReason, Event, Role, SfuConfig};

fn connected() -> (SimNet, sfu::CallId, usize, usize) {
    let mut net = SimNet::new(SfuConfig::default());
    let call = net.create_call();
    let m = net.add_client(ClientOptions::default());
    let c = net.add_client(ClientOptions::default());
    net.join(call, Role::Merchant, m).unwrap();
    net.join(call, Role::Customer, c).unwrap();
    assert!(net.connect_all(Duration::from_secs(10)));
    net.engine
        .set_camera(
            call,
            Role::Customer,
            Role::Customer,
            Some(Lens::Rear),
            net.now,
        )
        .unwrap();
    (net, call, m, c)
}

/// `ms` of media both ways: audio every 20 ms, a video frame every 40 ms (keyframe first).
fn media(net: &mut SimNet, a: usize, b: usize, ms: u64) {
    for i in 0..ms / 20 {
        for c in [a, b] {
            net.send_audio(c);
            if i % 2 == 0 {
                net.send_video_frame(c, i == 0, 2);
            }
        }
        net.run_for(Duration::from_millis(20));
    }
}

#[test]
fn ice_restart_after_an_address_change_keeps_the_call() {
    let (mut net, call, m, c) = connected();
    media(&mut net, m, c, 1000);
    let before = net.client(m).stats().received_audio.packets;
    assert!(before >= 49);

    // Wi-Fi to 4G: the customer's packets now come from another address.
    let new_addr: SocketAddr = "10.0.2.77:6000".parse().unwrap();
    net.move_client(c, new_addr);
    media(&mut net, m, c, 200);
    // Unverified address: its media is dropped, not accepted.
    assert!(
        net.engine
            .metrics()
            .dropped
            .get(sfu::DropReason::UnknownSource)
            > 0
    );

    net.restart_ice(c).unwrap();
    let restarted_at = net.now;
    media(&mut net, m, c, 2000);
    // An ICE restart selects a pair afresh: not counted as a path move.
    assert_eq!(net.engine.metrics().path_moves, 0);
    let audio_after = net.client(m).stats().received_audio.packets - before;
    assert!(audio_after >= 80, "customer audio resumed: {audio_after}");
    // Media resumed within 2 s of the restart, in both directions.
    let got = net.client(c).stats().received_audio.packets;
    media(&mut net, m, c, 200);
    assert!(net.client(c).stats().received_audio.packets >= got + 9);
    assert!(net.now.duration_since(restarted_at) < Duration::from_secs(3));

    net.engine
        .end_call(call, EndReason::Requested, net.now)
        .unwrap();
    let ended: Vec<_> = net
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            Event::CallEnded { record, .. } => Some(record),
            _ => None,
        })
        .collect();
    assert_eq!(ended.len(), 1, "one call, not two");
    assert_eq!(ended[0].participants.len(), 2);
}

#[test]
fn a_silent_participant_is_disconnected_then_lost() {
    let (mut net, _call, m, c) = connected();
    media(&mut net, m, c, 500);
    net.take_events();
    net.set_silent(c, true);
    net.run_for(Duration::from_secs(6));
    let events = net.take_events();
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::ConnectionStateChanged {
                state: ConnectionState::Disconnected,
                ..
            }
        )),
        "disconnected within a few seconds: {events:#?}"
    );
    assert!(!events.iter().any(|e| matches!(e, Event::CallEnded { .. })));
    net.run_for(Duration::from_secs(20));
    let reason = net.take_events().into_iter().find_map(|e| match e {
        Event::CallEnded { reason, .. } => Some(reason),
        _ => None,
    });
    assert_eq!(reason, Some(EndReason::PeerLost));
    assert!(net.engine.is_idle());
}

#[test]
fn a_participant_back_within_the_grace_keeps_the_call() {
    let (mut net, call, m, c) = connected();
    media(&mut net, m, c, 500);
    net.set_silent(c, true);
    net.run_for(Duration::from_secs(8));
    net.set_silent(c, false);
    media(&mut net, m, c, 1000);
    let events = net.take_events();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::ConnectionStateChanged {
            state: ConnectionState::Connected,
            ..
        }
    )));
    assert!(!events.iter().any(|e| matches!(e, Event::CallEnded { .. })));
    media(&mut net, m, c, 30_000);
    let ended: Vec<_> = net
        .take_events()
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                Event::CallEnded { .. } | Event::ConnectionStateChanged { .. }
            )
        })
        .collect();
    assert!(
        net.engine.call_state(call).is_some(),
        "still in the call: {ended:#?}"
    );
}

/// Valid SRTP from client `c` (one video frame of `packets` packets), captured instead of
/// delivered: to replay from another address.
fn srtp_from(net: &mut SimNet, c: usize, packets: usize) -> Vec<bytes::BytesMut> {
    net.capture_video(c, 1, packets)
}

fn unknown_source(net: &SimNet) -> u64 {
    net.engine
        .metrics()
        .dropped
        .get(sfu::DropReason::UnknownSource)
}

/// NAT rebinding without an ICE restart: the customer's NAT gives it a new mapping, so its
/// datagrams suddenly come from another port. Its full-ICE agent does not know; it keeps
/// sending consent checks (RFC 7675) with the same credentials, now from the new mapping.
#[test]
fn nat_rebinding_moves_the_path_after_a_consent_check() {
    let (mut net, call, m, c) = connected();
    media(&mut net, m, c, 1000);
    let before = net.engine.call_stats(call, net.now).unwrap();
    assert!(before.customer_camera_on);
    let ids: Vec<_> = before.participants.iter().map(|p| p.participant).collect();
    let old = net.client(c).addr();
    let new: SocketAddr = "10.0.1.2:41234".parse().unwrap();
    net.move_client(c, new);
    let moved_at = net.now;
    net.take_events();

    // Before any check from the new mapping, its (valid, SRTP-authenticated) media is
    // dropped: the address is not ICE-verified.
    let video_at_merchant = net.client(m).stats().received_video.packets;
    let dropped = unknown_source(&net);
    for d in srtp_from(&mut net, c, 3) {
        net.inject(new, &d);
    }
    assert_eq!(unknown_source(&net), dropped + 3);
    assert_eq!(
        net.client(m).stats().received_video.packets,
        video_at_merchant
    );
    assert_eq!(net.sent_to(new), 0, "nothing sent to an unverified address");

    // The client's next consent check (webrtc-rs: every 2 s) verifies the new mapping;
    // media must flow both ways again within that interval + 1 s.
    let (up0, down0) = (
        net.client(m).stats().received_audio.packets,
        net.client(c).stats().received_audio.packets,
    );
    let (mut up_at, mut down_at) = (None, None);
    while net.now.duration_since(moved_at) < Duration::from_secs(3) {
        media(&mut net, m, c, 20);
        let t = net.now.duration_since(moved_at);
        if up_at.is_none() && net.client(m).stats().received_audio.packets > up0 {
            up_at = Some(t);
        }
        if down_at.is_none() && net.client(c).stats().received_audio.packets > down0 {
            down_at = Some(t);
        }
    }
    // (Measured: up after 0.8 s, the first check; down after 2.02 s, the old path silent 2 s.)
    assert!(
        up_at.is_some(),
        "customer audio resumed within 3 s of the move"
    );
    assert!(
        down_at.is_some(),
        "audio to the customer resumed within 3 s of the move"
    );
    assert_eq!(net.engine.metrics().path_moves, 1);

    // Steady both ways, and the SFU sends to the new mapping only.
    let sent_old = net.sent_to(old);
    let sent_new = net.sent_to(new);
    let (up1, down1) = (
        net.client(m).stats().received_audio.packets,
        net.client(c).stats().received_audio.packets,
    );
    media(&mut net, m, c, 1000);
    assert!(net.client(m).stats().received_audio.packets >= up1 + 45);
    assert!(net.client(c).stats().received_audio.packets >= down1 + 45);
    assert_eq!(
        net.sent_to(old),
        sent_old,
        "nothing more to the old mapping"
    );
    assert!(net.sent_to(new) >= sent_new + 45);

    // The old mapping may no longer send media.
    let video_at_merchant = net.client(m).stats().received_video.packets;
    let dropped = unknown_source(&net);
    for d in srtp_from(&mut net, c, 2) {
        net.inject(old, &d);
    }
    assert_eq!(unknown_source(&net), dropped + 2);
    assert_eq!(
        net.client(m).stats().received_video.packets,
        video_at_merchant
    );

    // Long enough for any ICE timer tied to the old mapping to run out (rtc's agent:
    // disconnected after 5 s, failed after 30 s without STUN on its selected pair).
    media(&mut net, m, c, 35_000);
    let (up2, down2) = (
        net.client(m).stats().received_audio.packets,
        net.client(c).stats().received_audio.packets,
    );
    media(&mut net, m, c, 1000);
    assert!(net.client(m).stats().received_audio.packets >= up2 + 45);
    assert!(net.client(c).stats().received_audio.packets >= down2 + 45);

    // Same call, same participants, same policy state; never disconnected on the way.
    let events = net.take_events();
    assert!(
        !events.iter().any(|e| matches!(
            e,
            Event::ConnectionStateChanged { .. }
                | Event::ParticipantLeft { .. }
                | Event::CallEnded { .. }
        )),
        "{events:#?}"
    );
    let after = net.engine.call_stats(call, net.now).unwrap();
    assert_eq!(after.state, sfu::CallState::Connected);
    assert!(after.customer_camera_on);
    assert_eq!(after.customer_camera, before.customer_camera);
    let ids_after: Vec<_> = after.participants.iter().map(|p| p.participant).collect();
    assert_eq!(ids_after, ids);
    assert!(
        after
            .participants
            .iter()
            .all(|p| p.connection == ConnectionState::Connected)
    );
}

/// A check from another address keyed with a wrong password (a forgery: only the client
/// and the SFU know the ICE password) moves nothing, even nominating and even while the
/// customer's own path is silent; that address may not send media either.
#[test]
fn a_forged_check_from_another_address_moves_nothing() {
    let (mut net, _call, m, c) = connected();
    media(&mut net, m, c, 500);
    let old = net.client(c).addr();
    let attacker: SocketAddr = "10.0.9.9:5000".parse().unwrap();
    let forged = net
        .client(c)
        .binding_request(true, Some("not-the-ice-password-at-all"));
    let rejected = net
        .engine
        .metrics()
        .dropped
        .get(sfu::DropReason::TransportRejected);

    net.set_silent(c, true);
    for _ in 0..10 {
        net.inject(attacker, &forged);
        net.run_for(Duration::from_millis(300));
    }
    assert_eq!(
        net.sent_to(attacker),
        0,
        "no answer, no media to the forger"
    );
    assert_eq!(net.engine.metrics().path_moves, 0);
    assert!(
        net.engine
            .metrics()
            .dropped
            .get(sfu::DropReason::TransportRejected)
            >= rejected + 10,
        "forged checks are refused by the transport and counted"
    );
    let dropped = unknown_source(&net);
    for d in srtp_from(&mut net, c, 2) {
        net.inject(attacker, &d);
    }
    assert_eq!(unknown_source(&net), dropped + 2);

    // The customer's path is where it was.
    net.set_silent(c, false);
    let (got, sent_old) = (
        net.client(c).stats().received_audio.packets,
        net.sent_to(old),
    );
    media(&mut net, m, c, 1000);
    assert!(net.client(c).stats().received_audio.packets >= got + 45);
    assert!(net.sent_to(old) >= sent_old + 45);
    assert_eq!(net.sent_to(attacker), 0);
}

/// Valid checks from another address while the current path carries media (a backup pair
/// the client keeps alive): the address is verified, the path stays where the media is.
#[test]
fn a_valid_check_from_a_second_address_leaves_a_busy_path() {
    let (mut net, _call, m, c) = connected();
    media(&mut net, m, c, 500);
    let old = net.client(c).addr();
    let second: SocketAddr = "10.0.3.3:7000".parse().unwrap();
    for _ in 0..5 {
        let check = net.client(c).binding_request(false, None);
        net.inject(second, &check);
        media(&mut net, m, c, 600);
    }
    assert!(net.sent_to(second) > 0, "the checks were answered");
    assert_eq!(net.engine.metrics().path_moves, 0);
    // Nor does a nominating one (say, a check captured and replayed from elsewhere): a
    // nomination takes effect with fresh SRTP from that address, which a replay lacks.
    let check = net.client(c).binding_request(true, None);
    net.inject(second, &check);
    media(&mut net, m, c, 600);
    assert_eq!(net.engine.metrics().path_moves, 0);
    let (got, sent_old) = (
        net.client(c).stats().received_audio.packets,
        net.sent_to(old),
    );
    media(&mut net, m, c, 1000);
    assert!(net.client(c).stats().received_audio.packets >= got + 45);
    assert!(net.sent_to(old) >= sent_old + 45);
}

/// A nominated check (USE-CANDIDATE) from a new address moves the path with the client's
/// first SRTP from there: the controlling agent chose that pair (RFC 8445 §7.3.1.5), no need
/// to wait for the old path's silence.
#[test]
fn a_nominated_check_moves_the_path_at_once() {
    let (mut net, call, m, c) = connected();
    media(&mut net, m, c, 500);
    let old = net.client(c).addr();
    let new: SocketAddr = "10.0.1.2:43210".parse().unwrap();
    net.move_client(c, new);
    let check = net.client(c).binding_request(true, None);
    net.inject(new, &check);
    assert_eq!(net.engine.metrics().path_moves, 0, "not on the check alone");
    let (up, down) = (
        net.client(m).stats().received_audio.packets,
        net.client(c).stats().received_audio.packets,
    );
    media(&mut net, m, c, 20);
    assert_eq!(net.engine.metrics().path_moves, 1);
    let sent_old = net.sent_to(old);
    media(&mut net, m, c, 200);
    assert!(net.client(m).stats().received_audio.packets >= up + 9);
    assert!(net.client(c).stats().received_audio.packets >= down + 9);
    assert_eq!(net.sent_to(old), sent_old);
    let stats = net.engine.call_stats(call, net.now).unwrap();
    assert!(stats.customer_camera_on);
    assert!(
        stats
            .participants
            .iter()
            .all(|p| p.connection == ConnectionState::Connected)
    );
}
