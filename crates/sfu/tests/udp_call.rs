//! A call over real UDP on loopback: the driver's shared socket, the async handle, and two
//! clients on the async `webrtc` crate (like browsers), media both ways; and the same call
//! through a NAT (a UDP relay on loopback) that rebinds the customer's mapping mid-call.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;

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

/// A NAT on loopback for one client: the client talks to `public` (its SDP says the SFU is
/// there), the NAT forwards to the SFU from its current mapping (a socket of its own) and
/// back. On `rebind` it takes a new mapping (a new port); what the SFU sends to the old one
/// is dropped, as a real NAT would once the mapping expired.
struct Nat {
    public: SocketAddr,
    rebind: tokio::sync::watch::Sender<u32>,
    mapping: tokio::sync::watch::Receiver<SocketAddr>,
    task: tokio::task::JoinHandle<()>,
}

impl Nat {
    async fn start(sfu: SocketAddr) -> Nat {
        let inside = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let public = inside.local_addr().unwrap();
        let (rebind, mut rebinds) = tokio::sync::watch::channel(0u32);
        let mut outside = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let (mapped, mapping) = tokio::sync::watch::channel(outside.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut dead = Vec::new();
            let mut client = None;
            let (mut up, mut down) = (vec![0u8; 2048], vec![0u8; 2048]);
            loop {
                tokio::select! {
                    r = inside.recv_from(&mut up) => {
                        let Ok((n, from)) = r else { return };
                        client = Some(from);
                        let _ = outside.send_to(&up[..n], sfu).await;
                    }
                    r = outside.recv_from(&mut down) => {
                        let Ok((n, from)) = r else { return };
                        if let (Some(c), true) = (client, from == sfu) {
                            let _ = inside.send_to(&down[..n], c).await;
                        }
                    }
                    r = rebinds.changed() => {
                        if r.is_err() { return }
                        // Keep the old socket open (no ICMP back to the SFU), never read.
                        let new = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
                        dead.push(std::mem::replace(&mut outside, new));
                        let _ = mapped.send(outside.local_addr().unwrap());
                    }
                }
            }
        });
        Nat {
            public,
            rebind,
            mapping,
            task,
        }
    }

    fn mapping(&self) -> SocketAddr {
        *self.mapping.borrow()
    }
}

/// The SFU's answer as the NATed client must see it: its host candidate at the NAT's public
/// address instead of its own.
fn behind_nat(answer: &str, sfu: SocketAddr, public: SocketAddr) -> String {
    let from = format!(" {} {} typ host", sfu.ip(), sfu.port());
    let to = format!(" {} {} typ host", public.ip(), public.port());
    assert!(answer.contains(&from), "the answer offers {sfu}: {answer}");
    answer.replace(&from, &to)
}

/// Waits until `f` holds, polling; panics after `limit` (a generous bound, not a timing
/// assertion: the expected time is the client's consent interval, 2 s here).
async fn eventually(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nat_rebinding_mid_call_keeps_media_flowing() {
    let sfu = SfuHandle::start(SfuConfig::loopback()).await.unwrap();
    let mut events = sfu.subscribe().unwrap();
    let call = sfu.create_call(CallOptions::default()).await.unwrap().id;
    let merchant = join(&sfu, call, Role::Merchant, "merchant").await;
    let customer = TestPeer::new(PeerConfig::named("customer")).await.unwrap();
    let offer_sdp = customer.create_offer().await.unwrap();
    let answer = sfu
        .join(call, JoinRequest::new(Role::Customer, offer_sdp))
        .await
        .unwrap();
    let sfu_addr = answer
        .answer_sdp
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.strip_prefix("a=candidate:")?.split_whitespace().collect();
            format!("{}:{}", f.get(4)?, f.get(5)?)
                .parse::<SocketAddr>()
                .ok()
        })
        .expect("a host candidate in the answer");
    let nat = Nat::start(sfu_addr).await;
    customer
        .set_answer(&behind_nat(&answer.answer_sdp, sfu_addr, nat.public))
        .await
        .unwrap();
    for p in [&merchant, &customer] {
        p.wait_connected(Duration::from_secs(10)).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(10), async {
        while !matches!(events.recv().await, Ok(Event::CallConnected { .. })) {}
    })
    .await
    .expect("CallConnected");
    for p in [&merchant, &customer] {
        p.start_media(MediaPlan::default());
    }
    let audio = |p: &TestPeer| p.stats().audio.packets_received;
    eventually(Duration::from_secs(5), "media both ways", || {
        audio(&merchant) > 50 && audio(&customer) > 50
    })
    .await;

    let old = nat.mapping();
    nat.rebind.send(1).unwrap();
    eventually(Duration::from_secs(1), "a new mapping", || {
        nat.mapping() != old
    })
    .await;
    // Let what was in flight land, then media must come back both ways on the new mapping
    // (the customer's next consent check verifies it; the SFU then follows it).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (up, down) = (audio(&merchant), audio(&customer));
    eventually(
        Duration::from_secs(10),
        "media both ways after the rebinding",
        || audio(&merchant) > up + 50 && audio(&customer) > down + 50,
    )
    .await;

    let m = sfu.metrics().await.unwrap();
    assert_eq!(m.path_moves, 1, "{m:?}");
    let stats = sfu.call_stats(call).await.unwrap();
    assert_eq!(stats.state, sfu::CallState::Connected);
    assert_eq!(stats.participants.len(), 2);
    assert!(
        stats
            .participants
            .iter()
            .all(|p| p.connection == sfu::ConnectionState::Connected)
    );
    for p in [&merchant, &customer] {
        p.stop_media().await;
        p.close().await;
    }
    nat.task.abort();
    sfu.shutdown().await.unwrap();
}
