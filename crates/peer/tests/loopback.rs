//! Two TestPeers connected directly on 127.0.0.1 (one answers the other's offer): media flows
//! both ways intact, keyframes are seen, and a PLI from one side reaches the other's sender.
//!
//! Every assertion compares counts; timing only bounds how long we wait for a count.

use std::time::Duration;

use shopcall_peer::{KindStats, MediaPlan, PeerConfig, PeerStats, TestPeer, VideoCodec};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const MEDIA_TIME: Duration = Duration::from_secs(3);

/// Polls `cond` on `peer`'s stats every 50 ms until it holds or `limit` passes.
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

/// `a` offers, `b` answers; both connected.
async fn connect(a: PeerConfig, b: PeerConfig) -> anyhow::Result<(TestPeer, TestPeer)> {
    let a = TestPeer::new(a).await?;
    let b = TestPeer::new(b).await?;
    let offer = a.create_offer().await?;
    assert!(offer.contains("a=group:BUNDLE"), "offer:\n{offer}");
    assert!(offer.contains("a=rtcp-mux"), "offer:\n{offer}");
    assert!(
        offer.contains("typ host"),
        "offer has no candidates:\n{offer}"
    );
    assert!(
        !offer.contains(".local"),
        "mDNS candidate in offer:\n{offer}"
    );
    let answer = b.accept_offer(&offer).await?;
    a.set_answer(&answer).await?;
    a.wait_connected(CONNECT_TIMEOUT).await?;
    b.wait_connected(CONNECT_TIMEOUT).await?;
    Ok((a, b))
}

/// Waits until `rx` stops receiving (after the sender stopped), at most 2 s.
async fn drain(rx: &TestPeer) {
    let mut last = None;
    for _ in 0..20 {
        let s = rx.stats();
        let now = (s.audio.packets_received, s.video.packets_received);
        if last == Some(now) {
            return;
        }
        last = Some(now);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_delivered(what: &str, sent: &KindStats, received: &KindStats) {
    assert!(sent.packets_sent > 0, "{what}: nothing sent: {sent:?}");
    // Integer form of received >= 80 % of sent.
    assert!(
        received.packets_received * 10 >= sent.packets_sent * 8,
        "{what}: received {} of {} sent",
        received.packets_received,
        sent.packets_sent
    );
    assert!(
        received.intact * 10 >= sent.packets_sent * 8,
        "{what}: {} intact of {} sent",
        received.intact,
        sent.packets_sent
    );
    assert_eq!(
        received.corrupt, 0,
        "{what}: corrupt payloads: {received:?}"
    );
    assert!(
        received.first_received_at.is_some(),
        "{what}: no first packet time"
    );
    assert_eq!(
        received.latency.count, received.intact,
        "{what}: one latency sample per intact packet"
    );
    assert!(
        received.latency.max_us >= received.latency.p99_us
            && received.latency.p99_us >= received.latency.p50_us,
        "{what}: latency summary inconsistent: {:?}",
        received.latency
    );
}

fn assert_both_ways(a: &PeerStats, b: &PeerStats, audio: bool) {
    if audio {
        assert_delivered("audio a->b", &a.audio, &b.audio);
        assert_delivered("audio b->a", &b.audio, &a.audio);
    }
    assert_delivered("video a->b", &a.video, &b.video);
    assert_delivered("video b->a", &b.video, &a.video);
    for (name, s) in [("a", a), ("b", b)] {
        assert!(
            s.video.keyframes_received >= 1,
            "{name} saw no keyframe: {s:?}"
        );
        assert!(
            s.video.keyframes_sent >= 1,
            "{name} sent no keyframe: {s:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vp8_both_ways_intact_and_pli_reaches_sender() -> anyhow::Result<()> {
    let (a, b) = connect(PeerConfig::named("a"), PeerConfig::named("b")).await?;
    assert_eq!(a.negotiated_video_codec(), Some(VideoCodec::Vp8));
    // No periodic keyframe inside the test, so a second keyframe can only be the PLI's.
    let plan = MediaPlan {
        keyframe_interval: Duration::from_secs(60),
        ..MediaPlan::default()
    };
    a.start_media(plan.clone());
    b.start_media(plan);

    let half = MEDIA_TIME / 2;
    tokio::time::sleep(half).await;
    assert!(
        wait_until(&b, Duration::from_secs(5), |s| s.remote_tracks == 2).await,
        "b did not see a's two tracks: {:?}",
        b.stats()
    );
    assert_eq!(b.send_pli().await?, 1, "one remote video track to ask");
    assert!(
        wait_until(&a, Duration::from_secs(5), |s| s.video.plis_received >= 1).await,
        "PLI from b never reached a's sender: {:?}",
        a.stats()
    );
    // The forced keyframe goes out on a's next frame and arrives at b.
    assert!(
        wait_until(&b, Duration::from_secs(5), |s| s.video.keyframes_received
            >= 2)
        .await,
        "b saw no keyframe after its PLI: {:?}",
        b.stats()
    );
    tokio::time::sleep(half).await;

    a.stop_media().await;
    b.stop_media().await;
    drain(&a).await;
    drain(&b).await;
    let (sa, sb) = (a.stats(), b.stats());
    println!("a: {sa:#?}\nb: {sb:#?}");

    assert_both_ways(&sa, &sb, true);
    assert_eq!(sa.video.plis_received, sb.video.plis_sent);
    assert_eq!(sa.audio.plis_received, 0, "PLI counted against audio");
    assert!(sa.video.keyframes_sent >= 2, "a ignored the PLI: {sa:?}");
    assert_eq!(sb.video.plis_received, 0, "nobody asked b for a keyframe");
    assert_eq!(sb.video.keyframes_sent, 1, "b sent only its first keyframe");
    assert_eq!((sa.remote_tracks, sb.remote_tracks), (2, 2));

    a.close().await;
    b.close().await;
    assert_eq!(
        a.stats().connection_state,
        shopcall_peer::RTCPeerConnectionState::Closed
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_with_screen_both_ways() -> anyhow::Result<()> {
    let cfg = |name: &str| PeerConfig {
        video_codec: VideoCodec::H264,
        screen: true,
        audio: false,
        ..PeerConfig::named(name)
    };
    let (a, b) = connect(cfg("a264"), cfg("b264")).await?;
    assert_eq!(a.negotiated_video_codec(), Some(VideoCodec::H264));
    assert_eq!(b.negotiated_video_codec(), Some(VideoCodec::H264));
    let plan = MediaPlan {
        video_bitrate_bps: 800_000,
        ..MediaPlan::default()
    };
    a.start_media(plan.clone());
    b.start_media(plan);
    tokio::time::sleep(MEDIA_TIME).await;
    a.stop_media().await;
    b.stop_media().await;
    drain(&a).await;
    drain(&b).await;
    let (sa, sb) = (a.stats(), b.stats());

    assert_both_ways(&sa, &sb, false);
    // Camera and screen each start with a keyframe.
    assert!(sa.video.keyframes_received >= 2 && sb.video.keyframes_received >= 2);
    assert_eq!((sa.remote_tracks, sb.remote_tracks), (2, 2));
    assert_eq!(sa.audio.packets_sent + sb.audio.packets_received, 0);

    a.close().await;
    b.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_offer_to_vp8_answerer_falls_back_to_vp8() -> anyhow::Result<()> {
    let offerer = PeerConfig {
        video_codec: VideoCodec::H264,
        ..PeerConfig::named("h264-offerer")
    };
    let (a, b) = connect(offerer, PeerConfig::named("vp8-answerer")).await?;
    assert_eq!(a.negotiated_video_codec(), Some(VideoCodec::Vp8));
    assert_eq!(b.negotiated_video_codec(), Some(VideoCodec::Vp8));
    a.start_media(MediaPlan::default());
    b.start_media(MediaPlan::default());
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.stop_media().await;
    b.stop_media().await;
    drain(&a).await;
    drain(&b).await;
    assert_both_ways(&a.stats(), &b.stats(), true);
    a.close().await;
    b.close().await;
    Ok(())
}
