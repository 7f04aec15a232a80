//! A whole call through the engine on the simulated network: two clients, media both ways,
//! keyframe requests, end of call, nothing left behind.

use std::time::Duration;

use sfu::policy::Lens;
use sfu::testing::{ClientOptions, SimNet};
use sfu::{EndReason, Event, MediaKind, Role, SfuConfig};

fn two_party_call() -> (SimNet, sfu::CallId, usize, usize) {
    let mut net = SimNet::new(SfuConfig::default());
    let call = net.create_call();
    let merchant = net.add_client(ClientOptions::default());
    let customer = net.add_client(ClientOptions::default());
    net.join(call, Role::Merchant, merchant).unwrap();
    net.join(call, Role::Customer, customer).unwrap();
    assert!(net.connect_all(Duration::from_secs(10)), "clients connect");
    // The default profile starts the customer's camera off: the customer turns it on.
    net.engine
        .set_camera(
            call,
            Role::Customer,
            Role::Customer,
            Some(Lens::Rear),
            net.now,
        )
        .unwrap();
    (net, call, merchant, customer)
}

#[test]
fn media_flows_both_ways_and_the_call_ends_cleanly() {
    let (mut net, call, merchant, customer) = two_party_call();
    // 2 s of 50 pps audio and 30 fps video (3 packets per frame), keyframe first.
    for i in 0..100 {
        for c in [merchant, customer] {
            net.send_audio(c);
        }
        if i % 5 < 3 {
            for c in [merchant, customer] {
                net.send_video_frame(c, i == 0, 3);
            }
        }
        net.run_for(Duration::from_millis(20));
    }
    net.run_for(Duration::from_millis(200));
    for (from, to) in [(merchant, customer), (customer, merchant)] {
        let sent = net.client(from).stats().clone();
        let got = net.client(to).stats().clone();
        assert_eq!(got.corrupt, 0, "payloads arrive intact");
        assert_eq!(
            got.received_audio.packets, sent.sent_audio.packets,
            "all audio forwarded"
        );
        assert_eq!(
            got.received_video.packets, sent.sent_video.packets,
            "all video forwarded"
        );
        // The SFU sends with its own SSRCs, never the client's.
        for ssrc in &got.remote_ssrcs {
            assert_ne!(Some(*ssrc), net.client(from).ssrc(MediaKind::Audio));
            assert_ne!(Some(*ssrc), net.client(from).ssrc(MediaKind::Video));
        }
    }

    // A PLI from the customer reaches the merchant (rate limited to one per interval).
    let before = net.client(merchant).stats().plis_received;
    net.run_for(Duration::from_secs(1));
    net.send_pli(customer);
    net.run_for(Duration::from_millis(50));
    assert!(
        net.client(merchant).stats().plis_received > before,
        "PLI relayed to the sender"
    );

    // Nothing legitimate was dropped: SRTP, SRTCP (reports, NACK, TWCC feedback) all accepted.
    let dropped = net.engine.metrics().dropped;
    assert_eq!(dropped.total(), 0, "{dropped:?}");

    let stats = net.engine.call_stats(call, net.now).unwrap();
    assert_eq!(stats.participants.len(), 2);
    assert!(stats.connected_for.is_some());
    for p in &stats.participants {
        assert!(
            p.received.audio.packets >= 100 && p.sent.video.packets > 0,
            "{p:?}"
        );
    }

    net.engine
        .end_call(call, EndReason::Requested, net.now)
        .unwrap();
    let events = net.take_events();
    let ended = events
        .iter()
        .find_map(|e| match e {
            Event::CallEnded { reason, record, .. } => Some((*reason, record.clone())),
            _ => None,
        })
        .expect("CallEnded emitted");
    assert_eq!(ended.0, EndReason::Requested);
    assert_eq!(ended.1.participants.len(), 2);
    assert!(ended.1.connected_duration >= Duration::from_secs(2));
    assert!(
        net.engine.is_idle(),
        "no call, participant, ufrag or address outlives the call"
    );
}
