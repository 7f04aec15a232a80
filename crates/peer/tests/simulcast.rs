//! Simulcast publishing, peer to peer on 127.0.0.1: a TestPeer with `simulcast: true` offers
//! three rid layers as Chrome does, sends all three with their own SSRCs, sizes and
//! bitrates, answers a PLI for one layer with a keyframe on that layer only; the receiving
//! TestPeer tells the layers apart by rid and by the size in their VP8 keyframes.
//!
//! Every assertion compares counts; timing only bounds how long we wait for a count.

use std::time::Duration;

use shopcall_peer::{MediaPlan, PeerConfig, PeerStats, SIMULCAST_LAYERS, TestPeer};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

async fn wait_until(peer: &TestPeer, limit: Duration, cond: impl Fn(&PeerStats) -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond(&peer.stats()) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sdp_media_section<'a>(sdp: &'a str, kind: &str) -> &'a str {
    let start = sdp.find(&format!("m={kind}")).expect("media section");
    let rest = &sdp[start..];
    let end = rest[2..].find("\nm=").map_or(rest.len(), |i| i + 3);
    &rest[..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_layers_peer_to_peer() -> anyhow::Result<()> {
    let sender = TestPeer::new(PeerConfig {
        simulcast: true,
        ..PeerConfig::named("sim-tx")
    })
    .await?;
    // The receiver negotiates the rid/mid extensions too (simulcast: true) but never sends.
    let receiver = TestPeer::new(PeerConfig {
        simulcast: true,
        audio: false,
        ..PeerConfig::named("sim-rx")
    })
    .await?;
    let offer = sender.create_offer().await?;
    let video = sdp_media_section(&offer, "video");
    for rid in ["q", "h", "f"] {
        assert!(
            video.contains(&format!("a=rid:{rid} send")),
            "offer:\n{offer}"
        );
    }
    assert!(video.contains("a=simulcast:send q;h;f"), "offer:\n{offer}");
    assert!(video.contains("urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"));
    assert!(
        !video.contains("a=ssrc:"),
        "rid-based, no SSRCs signalled:\n{video}"
    );
    let answer = receiver.accept_offer(&offer).await?;
    assert!(
        sdp_media_section(&answer, "video").contains("a=simulcast:recv q;h;f"),
        "answer:\n{answer}"
    );
    sender.set_answer(&answer).await?;
    sender.wait_connected(CONNECT_TIMEOUT).await?;
    receiver.wait_connected(CONNECT_TIMEOUT).await?;

    let plan = MediaPlan {
        keyframe_interval: Duration::from_secs(60),
        ..MediaPlan::default()
    };
    sender.start_media(plan);
    assert!(
        wait_until(&receiver, Duration::from_secs(10), |s| {
            s.received_video.len() == 3 && s.received_video.iter().all(|v| v.keyframes >= 1)
        })
        .await,
        "three decodable layers: {:#?}",
        receiver.stats().received_video
    );
    // Let a couple of seconds of media flow for bitrates.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let tx = sender.stats();
    let rx = receiver.stats();
    assert_eq!(tx.simulcast_layers.len(), 3);
    for layer in &SIMULCAST_LAYERS {
        let sent = tx
            .simulcast_layers
            .iter()
            .find(|l| l.rid == layer.rid)
            .expect("layer sent");
        let got = rx
            .received_video
            .iter()
            .find(|v| v.ssrc == sent.ssrc)
            .unwrap_or_else(|| panic!("layer {} not received: {rx:#?}", layer.rid));
        assert_eq!(
            got.rid.as_deref(),
            Some(layer.rid),
            "rid from the header extension"
        );
        assert_eq!(got.resolution, Some((layer.width, layer.height)));
        assert_eq!(got.frames_dropped, 0, "{got:?}");
        assert!(got.frames_decoded >= 30, "{got:?}");
        assert_eq!(got.freezes, 0, "{got:?}");
        // Received payload bitrate over the last second within 25 % of the layer's (plus
        // the odd keyframe).
        let want = layer.bitrate_bps as f64;
        let have = got.bitrate_bps as f64;
        assert!(
            have > want * 0.75 && have < want * 1.6,
            "layer {}: {have} bit/s received, {want} nominal",
            layer.rid
        );
        assert_eq!(sent.keyframes_sent, 1, "only the first keyframe so far");
    }
    // Ordered by bitrate at the receiver too.
    let rate_of = |rid: &str| {
        rx.received_video
            .iter()
            .find(|v| v.rid.as_deref() == Some(rid))
            .map_or(0, |v| v.bitrate_bps)
    };
    assert!(rate_of("q") < rate_of("h") && rate_of("h") < rate_of("f"));

    // A PLI for the middle layer's SSRC: a keyframe on that layer only.
    let h_ssrc = tx.simulcast_layers[1].ssrc;
    assert!(receiver.send_pli_for(h_ssrc).await?);
    assert!(
        wait_until(&receiver, Duration::from_secs(5), |s| {
            s.received_video
                .iter()
                .any(|v| v.ssrc == h_ssrc && v.keyframes >= 2)
        })
        .await,
        "no keyframe on h after its PLI: {:#?}",
        receiver.stats().received_video
    );
    let tx = sender.stats();
    let by_rid = |rid: &str| {
        tx.simulcast_layers
            .iter()
            .find(|l| l.rid == rid)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(by_rid("h").keyframe_requests, 1);
    assert_eq!(by_rid("h").keyframes_sent, 2);
    assert_eq!(by_rid("q").keyframes_sent, 1);
    assert_eq!(by_rid("f").keyframes_sent, 1);
    assert_eq!(
        by_rid("q").keyframe_requests + by_rid("f").keyframe_requests,
        0
    );

    sender.close().await;
    receiver.close().await;
    Ok(())
}
