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
