//! Embedding the SFU in a Rust service: no daemon, no gRPC.
//!
//! Starts the SFU on loopback, creates a call, joins a merchant and a customer (two WebRTC
//! clients on the async `webrtc` crate, standing in for browsers), lets media flow both ways
//! for a few seconds, prints the call's statistics and the call record, and shuts down.
//!
//! Run: `cargo run -p shopcall-examples --example embed`

use std::time::Duration;

use sfu::policy::Lens;
use sfu::{CallOptions, Event, JoinRequest, Role, SfuConfig, SfuHandle};
use shopcall_peer::{MediaPlan, PeerConfig, TestPeer};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // 1. Start the SFU: one UDP port for every call (here an ephemeral one on loopback).
    let sfu = SfuHandle::start(SfuConfig::loopback()).await?;
    println!("SFU media socket on {}", sfu.media_addr());
    let mut events = sfu.subscribe()?;

    // 2. The signaling side: create a call, take each client's offer, hand back the answer.
    let call = sfu.create_call(CallOptions::default()).await?.id;
    let mut peers = Vec::new();
    for (role, name) in [(Role::Merchant, "merchant"), (Role::Customer, "customer")] {
        let peer = TestPeer::new(PeerConfig::named(name)).await?;
        let offer_sdp = peer.create_offer().await?;
        let answer = sfu.join(call, JoinRequest::new(role, offer_sdp)).await?;
        peer.set_answer(&answer.answer_sdp).await?;
        println!("{role} joined as participant {}", answer.participant);
        peers.push(peer);
    }

    // The default profile opens the customer with the camera off; only the customer can turn
    // it on (here the "Show the product" button, rear lens).
    sfu.set_camera(call, Role::Customer, Role::Customer, Some(Lens::Rear))
        .await?;

    // 3. Media both ways.
    for peer in &peers {
        peer.wait_connected(Duration::from_secs(10)).await?;
        peer.start_media(MediaPlan::default());
    }
    tokio::time::sleep(Duration::from_secs(4)).await;

    // 4. What the SFU saw, and what each client received.
    let stats = sfu.call_stats(call).await?;
    println!(
        "call {} is {:?}, video codec {:?}",
        stats.call, stats.state, stats.video_codec
    );
    for p in &stats.participants {
        println!(
            "  {:<8} in: {} audio / {} video packets, out: {} audio / {} video packets, \
             keyframe requests sent {}, downlink rtt {:?}",
            p.role.as_str(),
            p.received.audio.packets,
            p.received.video.packets,
            p.sent.audio.packets,
            p.sent.video.packets,
            p.keyframe_requests_sent,
            p.downlink.rtt,
        );
    }
    for peer in &peers {
        let s = peer.stats();
        println!(
            "  client {:<8} received {} audio / {} video packets ({} corrupt), \
             video latency p50 {} us",
            peer.config().name,
            s.audio.packets_received,
            s.video.packets_received,
            s.audio.corrupt + s.video.corrupt,
            s.video.latency.p50_us,
        );
        peer.stop_media().await;
    }

    // 5. End the call: the record arrives as the last event of the call.
    sfu.end_call(call).await?;
    while let Ok(event) = events.recv().await {
        if let Event::CallEnded { record, reason, .. } = event {
            println!(
                "call ended ({}), connected for {:?}",
                reason.as_str(),
                record.connected_duration
            );
            break;
        }
    }
    for peer in &peers {
        peer.close().await;
    }
    sfu.shutdown().await?;
    Ok(())
}
