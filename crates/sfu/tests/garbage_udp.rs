//! Garbage on the media port is dropped and counted, never panics, and never disturbs a call.

use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;
use sfu::testing::{ClientOptions, SFU_ADDR, SimNet};
use sfu::{DropReason, Role, SfuConfig};

fn connected_call() -> (SimNet, usize, usize) {
    let mut net = SimNet::new(SfuConfig::default());
    let call = net.create_call();
    let m = net.add_client(ClientOptions::default());
    let c = net.add_client(ClientOptions::default());
    net.join(call, Role::Merchant, m).unwrap();
    net.join(call, Role::Customer, c).unwrap();
    assert!(net.connect_all(Duration::from_secs(10)));
    (net, m, c)
}

/// Media still flows from `m` to `c` after whatever was injected.
fn assert_media_flows(net: &mut SimNet, m: usize, c: usize) {
    let before = net.client(c).stats().received_audio.packets;
    for _ in 0..10 {
        net.send_audio(m);
        net.run_for(Duration::from_millis(20));
    }
    assert_eq!(net.client(c).stats().received_audio.packets, before + 10);
}

fn stun_request(username: &str) -> Vec<u8> {
    let mut attr = vec![0x00, 0x06];
    attr.extend_from_slice(&(username.len() as u16).to_be_bytes());
    attr.extend_from_slice(username.as_bytes());
    while attr.len() % 4 != 0 {
        attr.push(0);
    }
    let mut m = vec![0x00, 0x01];
    m.extend_from_slice(&(attr.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
    m.extend_from_slice(&[9u8; 12]);
    m.extend_from_slice(&attr);
    m
}

#[test]
fn each_kind_of_garbage_is_counted_by_reason() {
    let (mut net, m, c) = connected_call();
    let stranger: SocketAddr = "10.9.9.9:1234".parse().unwrap();
    let dropped = |net: &SimNet, r| net.engine.metrics().dropped.get(r);

    net.inject(stranger, &[0xff, 0x00, 0x13]);
    assert_eq!(dropped(&net, DropReason::Unclassified), 1);
    net.inject(stranger, &[]);
    assert_eq!(dropped(&net, DropReason::Unclassified), 2);

    net.inject(stranger, &stun_request("nosuchufrag:x"));
    assert_eq!(dropped(&net, DropReason::UnknownUfrag), 1);
    net.inject(stranger, &[0x00, 0x01, 0x00, 0x04, 0x21, 0x12]);
    assert_eq!(dropped(&net, DropReason::MalformedStun), 1);

    // DTLS and RTP from an address no ICE check came from.
    net.inject(stranger, &[22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    net.inject(
        stranger,
        &[0x80, 96, 0, 1, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8],
    );
    assert_eq!(dropped(&net, DropReason::UnknownSource), 2);

    // Truncated and forged SRTP from the client's own address: the transport refuses it.
    net.inject_from_client(m, &[0x80, 96, 0, 1]);
    net.inject_from_client(m, &[0x80; 100]);
    net.inject_from_client(m, &[0x81, 200, 0, 6, 0, 0, 0, 1, 0xde, 0xad]);
    assert_eq!(dropped(&net, DropReason::TransportRejected), 3);

    assert_media_flows(&mut net, m, c);
    assert_media_flows(&mut net, c, m);
}

#[test]
fn a_forged_ice_check_does_not_bind_an_address() {
    let mut net = SimNet::new(SfuConfig::default());
    let call = net.create_call();
    let m = net.add_client(ClientOptions::default());
    let answer = net.join(call, Role::Merchant, m).unwrap();
    let ufrag = answer
        .answer_sdp
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .unwrap()
        .trim()
        .to_owned();
    let attacker: SocketAddr = "10.9.9.9:1234".parse().unwrap();
    // Right ufrag, no valid MESSAGE-INTEGRITY: routed to the participant, refused by it...
    net.inject(attacker, &stun_request(&format!("{ufrag}:evil")));
    // ...so the attacker's address was never bound: its "media" is an unknown source.
    net.inject(
        attacker,
        &[0x80, 96, 0, 1, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8],
    );
    let dropped = net.engine.metrics().dropped;
    assert_eq!(dropped.get(DropReason::UnknownSource), 1, "{dropped:?}");
    assert_eq!(dropped.get(DropReason::TransportRejected), 1, "{dropped:?}");
}

#[test]
fn replayed_srtp_is_rejected() {
    let (mut net, m, c) = connected_call();
    let captured = net.capture_video(m, 10, 2);
    let copies = captured.clone();
    net.feed(m, captured);
    let forwarded = net.engine.metrics().forwarded.video.packets;
    assert_eq!(forwarded, 20);
    // The same datagrams again, e.g. from an attacker on the path: all refused.
    net.feed(m, copies);
    let after = net.engine.metrics();
    assert_eq!(after.forwarded.video.packets, forwarded);
    assert_eq!(after.dropped.get(DropReason::TransportRejected), 20);
    assert_media_flows(&mut net, m, c);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any bytes from a stranger or from a participant's own address: no panic, the call
    /// keeps working, and every datagram is accounted for.
    #[test]
    fn random_datagrams_never_disturb_a_call(
        datagrams in proptest::collection::vec(
            (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..300)), 1..40)
    ) {
        let (mut net, m, c) = connected_call();
        let stranger: SocketAddr = "10.9.9.9:1234".parse().unwrap();
        let before = net.engine.metrics();
        for (own, bytes) in &datagrams {
            if *own { net.inject_from_client(m, bytes) } else { net.inject(stranger, bytes) }
        }
        let after = net.engine.metrics();
        prop_assert_eq!(after.datagrams_in - before.datagrams_in, datagrams.len() as u64);
        assert_media_flows(&mut net, m, c);
        let _ = SFU_ADDR;
    }
}
