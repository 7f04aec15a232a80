//! A call over real UDP on loopback: the driver's shared socket, the async handle, and two
//! clients on the async `webrtc` crate (like browsers), media both ways.

use std::time::Duration;

use sfu::policy::Lens;
use sfu::{CallOptions, Event, JoinRequest, Role, SfuConfig, SfuHandle};
use shopcall_peer::{MediaPlan, PeerConfig, TestPeer};

async fn join(sfu: &SfuHandle, call: sfu::CallId, role: Role, name: &str) -> TestPeer {
    let peer = TestPeer::new(PeerConfig::named(name)).await.unwrap();
    let offer_sdp = peer.create_offer().await.unwrap();
    let answer = sfu
        .join(call, JoinRequest::new(role, offer_sdp))
        .await
        .unwrap();
    peer.set_answer(&answer.answer_sdp).await.unwrap();
    peer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_over_one_udp_port() {
    let sfu = SfuHandle::start(SfuConfig::loopback()).await.unwrap();
    let mut events = sfu.subscribe().unwrap();
    let call = sfu.create_call(CallOptions::default()).await.unwrap().id;
    let merchant = join(&sfu, call, Role::Merchant, "merchant").await;
    let customer = join(&sfu, call, Role::Customer, "customer").await;
    sfu.set_camera(call, Role::Customer, Role::Customer, Some(Lens::Rear))
        .await
        .unwrap();
    for p in [&merchant, &customer] {
        p.wait_connected(Duration::from_secs(10)).await.unwrap();
    }
    // Media starts once the SFU sees both transports up, as a client would on the event.
    tokio::time::timeout(Duration::from_secs(10), async {
        while !matches!(events.recv().await, Ok(Event::CallConnected { .. })) {}
    })
    .await
    .expect("CallConnected");
    for p in [&merchant, &customer] {
        p.start_media(MediaPlan::default());
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for p in [&merchant, &customer] {
        p.stop_media().await;
    }
    // Let what is in flight land.
    tokio::time::sleep(Duration::from_millis(300)).await;

    for (from, to) in [(&merchant, &customer), (&customer, &merchant)] {
        let (s, r) = (from.stats(), to.stats());
        assert_eq!(r.audio.corrupt + r.video.corrupt, 0);
        assert!(
            s.audio.packets_sent >= 100 && s.video.packets_sent >= 300,
            "{s:?}"
        );
        // Loopback loses nothing; allow a little for packets sent before the far side's
        // DownTrack was ready.
        assert!(
            r.audio.packets_received * 100 >= s.audio.packets_sent * 95,
            "audio {r:?} vs {s:?}"
        );
        assert!(
            r.video.packets_received * 100 >= s.video.packets_sent * 90,
            "video {r:?} vs {s:?}"
        );
        assert!(r.video.keyframes_received >= 1);
    }
    let sent_before = merchant.stats().video.plis_received;
    customer.send_pli().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), async {
        while merchant.stats().video.plis_received == sent_before {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the customer's PLI reaches the merchant");

    let stats = sfu.call_stats(call).await.unwrap();
    assert_eq!(stats.participants.len(), 2);
    sfu.end_call(call).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(Event::CallEnded {
                call: c, record, ..
            }) = events.recv().await
                && c == call
            {
                return record;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(ended.participants.len(), 2);
    let m = sfu.metrics().await.unwrap();
    assert_eq!(m.active_calls, 0);
    assert!(m.forwarded.video.packets > 600, "{m:?}");
    merchant.close().await;
    customer.close().await;
    sfu.shutdown().await.unwrap();
    assert!(sfu.create_call(CallOptions::default()).await.is_err());
}
