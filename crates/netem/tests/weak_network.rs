//! Weak-network scenarios (issue 5), against the real SFU driver with two WebRTC clients, the
//! customer behind an impairment relay (and, as root, in its own network namespace):
//!
//! 1. 3 Mbit/s clean: the customer gets the top simulcast layer.
//! 2. The link drops to 300 kbit/s: within 5 s the SFU forwards the lowest layer; audio
//!    loss stays below 1 %.
//! 3. The link drops to 60 kbit/s: video paused within 5 s (event emitted), audio >= 95 %
//!    delivered; back to 3 Mbit/s: video resumes within 10 s, at a layer above the lowest.
//! 4. 10 % random loss and 150 ms RTT: NACK keeps the video decodable, audio continues.
//!
//! Each records a time series (CSV + SVG) and a summary; see `harness.rs` for where. Bounds
//! are the issue's; waits are bounded; measurements are counts, not timings, except the
//! time-to-adapt bounds themselves.
//!
//! Run: `cargo test -p shopcall-netem --test weak_network -- --nocapture`
//! (`SHOPCALL_WRITE_DOCS=1` writes the reports into docs/weak-network/).

#[path = "weak_network/harness.rs"]
mod harness;

use std::time::Duration;

use harness::{Harness, SERIAL};
use netem::{LinkParams, QueueLimit};
use sfu::Event;

/// The customer's downlink when "clean": 3 Mbit/s with a 300 ms drop-tail queue, 20 ms
/// one-way delay.
fn link(rate_bps: u64) -> LinkParams {
    LinkParams::clean()
        .rate(rate_bps)
        .queue(QueueLimit::Delay(Duration::from_millis(300)))
        .delay(Duration::from_millis(20))
}

fn uplink() -> LinkParams {
    LinkParams::clean().delay(Duration::from_millis(20))
}

const CLEAN: u64 = 3_000_000;

/// How long the estimate may take to climb to the top layer from the SFU's start estimate
/// on a clean 3 Mbit/s link (the issue sets no bound; this is ours, generous).
const RAMP_UP: Duration = Duration::from_secs(25);
/// How long "gets the top layer" must hold without a break.
const HOLD: Duration = Duration::from_secs(5);
/// The bounds.
const SWITCH_DOWN_WITHIN: Duration = Duration::from_secs(5);
const PAUSE_WITHIN: Duration = Duration::from_secs(5);
const RESUME_WITHIN: Duration = Duration::from_secs(10);
/// Observation runs past a bound, so a report says how long it took, not just "too long".
const OBSERVE_PAST: Duration = Duration::from_secs(10);

fn secs(d: Option<Duration>) -> String {
    d.map_or("not within the observation window".into(), |d| {
        format!("{:.2} s", d.as_secs_f64())
    })
}

fn within(d: Option<Duration>, bound: Duration) -> bool {
    d.is_some_and(|d| d <= bound)
}

fn pct(x: f64) -> String {
    format!("{:.2} %", x * 100.0)
}

fn above_q(s: &harness::Sample) -> bool {
    !s.paused && matches!(s.layer.as_deref(), Some("h" | "f"))
}

/// Warms up at 3 Mbit/s until the customer steadily gets a layer above the lowest.
async fn warm_up(h: &mut Harness) -> anyhow::Result<Duration> {
    let t = h
        .wait_until_steady(RAMP_UP, Duration::from_secs(2), above_q)
        .await?;
    let Some(t) = t else {
        let last = h.samples.last().cloned();
        h.write_report(&["warm-up never steadily reached layer h or f".into()])?;
        anyhow::bail!(
            "{}: no steady layer above q after {RAMP_UP:?}: {last:?}",
            h.name
        );
    };
    Ok(t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s1_clean_3mbit_gets_the_top_layer() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let mut h = Harness::start("s1-clean-3mbit", link(CLEAN), uplink()).await?;
    let audio_from = h.audio_counter();
    let first_top = |s: &harness::Sample| {
        !s.paused && s.layer.as_deref() == Some("f") && s.rx_resolution == Some((1280, 720))
    };
    let steady_top = h
        .wait_until_steady(RAMP_UP + OBSERVE_PAST, HOLD, first_top)
        .await?;
    let audio_to = h.audio_counter();
    h.run_for(Duration::from_secs(1)).await?; // what was sent lands
    let audio = h.audio_delivery(audio_from, audio_to);
    let reached = h.first_since(Duration::ZERO, first_top);
    let left_top = h
        .samples
        .windows(2)
        .filter(|w| first_top(&w[0]) && !first_top(&w[1]))
        .count();
    let last = h.samples.last().cloned().unwrap_or_default();
    h.write_report(&[
        format!(
            "first on the top layer (f forwarded, 1280x720 decoded): {}",
            secs(reached)
        ),
        format!(
            "steadily on it ({} s without a break) from: {} (bound {} s)",
            HOLD.as_secs(),
            secs(steady_top),
            RAMP_UP.as_secs()
        ),
        format!("times it left the top layer: {left_top}"),
        format!("audio delivered: {}", pct(audio)),
        format!(
            "at the end: estimate {:?} bit/s, layer {:?}, video received {} bit/s, freezes {}",
            last.estimate_bps, last.layer, last.rx_video_bps, last.freezes
        ),
    ])?;
    assert!(
        within(steady_top, RAMP_UP),
        "not steadily on the top layer within {RAMP_UP:?} (reached at {reached:?}, left it {left_top} times): {last:?}"
    );
    assert!(audio >= 0.99, "audio delivered {audio}");
    h.finish().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_drop_to_300kbit_switches_to_the_lowest_layer() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let mut h = Harness::start("s2-300kbit", link(CLEAN), uplink()).await?;
    let warm = warm_up(&mut h).await?;
    let layer_before = h.samples.last().and_then(|s| s.layer.clone());
    let audio_from = h.audio_counter();
    let drop_at = h.now();
    h.set_down(link(300_000)).await?;
    h.wait_until(SWITCH_DOWN_WITHIN + OBSERVE_PAST, |s| {
        s.layer.as_deref() == Some("q") && s.rx_resolution == Some((320, 180))
    })
    .await?;
    h.run_for(Duration::from_secs(10)).await?;
    let audio_to = h.audio_counter();
    h.run_for(Duration::from_secs(1)).await?;
    let audio = h.audio_delivery(audio_from, audio_to);
    let to_low = h.first_since(drop_at, |s| s.layer.as_deref() == Some("q"));
    let decoded_low = h.first_since(drop_at, |s| s.rx_resolution == Some((320, 180)));
    let estimate_below = h.first_since(drop_at, |s| s.estimate_bps.is_some_and(|e| e <= 300_000));
    let paused = h
        .samples
        .iter()
        .filter(|s| s.t >= drop_at && s.paused)
        .count();
    let last = h.samples.last().cloned().unwrap_or_default();
    h.write_report(&[
        format!(
            "warm-up to a steady layer above q at 3 Mbit/s: {:.2} s (layer {layer_before:?})",
            warm.as_secs_f64()
        ),
        format!(
            "estimate at or below 300 kbit/s after: {}",
            secs(estimate_below)
        ),
        format!(
            "time to the lowest layer (SFU forwards q): {} (bound {} s)",
            secs(to_low),
            SWITCH_DOWN_WITHIN.as_secs()
        ),
        format!("customer decodes 320x180 after: {}", secs(decoded_low)),
        format!(
            "audio delivered from the drop on: {} (loss {}, bound < 1 %)",
            pct(audio),
            pct(1.0 - audio)
        ),
        format!("samples with video paused after the drop: {paused}"),
        format!(
            "at the end: estimate {:?} bit/s, layer {:?}, queue drops {}, freezes {}",
            last.estimate_bps, last.layer, last.queue_drops, last.freezes
        ),
    ])?;
    assert!(
        within(to_low, SWITCH_DOWN_WITHIN),
        "not on q within 5 s of the drop: {to_low:?}"
    );
    // The switch waits for a keyframe of q: one request round trip more.
    assert!(
        within(decoded_low, SWITCH_DOWN_WITHIN + Duration::from_secs(1)),
        "the customer decoded 320x180 only after {decoded_low:?}"
    );
    assert!(1.0 - audio < 0.01, "audio loss {} >= 1 %", 1.0 - audio);
    h.finish().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_drop_to_60kbit_pauses_video_and_resumes() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let mut h = Harness::start("s3-60kbit", link(CLEAN), uplink()).await?;
    let warm = warm_up(&mut h).await?;
    let customer = h.customer_id;

    // Down to 60 kbit/s for 12 s.
    let drop_at = h.now();
    let audio_from = h.audio_counter();
    h.set_down(link(60_000)).await?;
    h.run_for(Duration::from_secs(12)).await?;
    let audio_to = h.audio_counter();
    let paused_events = h.events_since(
        drop_at,
        |e: &Event| matches!(e, Event::VideoPaused { participant, .. } if *participant == customer),
    );

    // Back to 3 Mbit/s.
    let restore_at = h.now();
    let frames_before = h.samples.last().map_or(0, |s| s.frames_decoded);
    h.set_down(link(CLEAN)).await?;
    h.wait_until(RESUME_WITHIN + OBSERVE_PAST, above_q).await?;
    h.run_for(Duration::from_secs(2)).await?;
    let audio = h.audio_delivery(audio_from, audio_to);
    let to_pause = h.first_since(drop_at, |s| s.paused);
    let to_resume = h.first_since(restore_at, |s| {
        !s.paused && s.frames_decoded > frames_before
    });
    let to_higher = h.first_since(restore_at, above_q);
    let resumed_events = h.events_since(restore_at, |e: &Event| {
        matches!(e, Event::VideoResumed { participant, .. } if *participant == customer)
    });
    let rx_video_while_paused = h
        .samples
        .iter()
        .filter(|s| s.t >= drop_at + Duration::from_secs(3) && s.t < restore_at)
        .map(|s| s.rx_video_bps)
        .max()
        .unwrap_or(0);
    let last = h.samples.last().cloned().unwrap_or_default();
    h.write_report(&[
        format!("warm-up to a steady layer above q at 3 Mbit/s: {:.2} s", warm.as_secs_f64()),
        format!("time to pause at 60 kbit/s: {} (bound {} s)", secs(to_pause), PAUSE_WITHIN.as_secs()),
        format!(
            "VideoPaused events for the customer: {} (first at +{})",
            paused_events.len(),
            paused_events
                .first()
                .map_or("-".into(), |(t, _)| format!("{:.2} s", (*t - drop_at).as_secs_f64()))
        ),
        format!("audio delivered during the 60 kbit/s phase: {} (bound >= 95 %)", pct(audio)),
        format!(
            "most video still received in a second while paused (from +3 s): {rx_video_while_paused} bit/s"
        ),
        format!(
            "time to resume at 3 Mbit/s (frames decoded again): {} (bound {} s)",
            secs(to_resume),
            RESUME_WITHIN.as_secs()
        ),
        format!("time to a layer above q: {}", secs(to_higher)),
        format!("VideoResumed events for the customer: {}", resumed_events.len()),
        format!(
            "at the end: estimate {:?} bit/s, layer {:?}, paused for {:?} in all",
            last.estimate_bps, last.layer, last.paused_for
        ),
    ])?;
    assert!(
        within(to_pause, PAUSE_WITHIN),
        "video not paused within 5 s at 60 kbit/s"
    );
    assert!(
        !paused_events.is_empty(),
        "no VideoPaused event for the customer"
    );
    assert!(audio >= 0.95, "audio delivered {audio} < 95 %");
    assert!(
        within(to_resume, RESUME_WITHIN),
        "video did not resume within 10 s: {to_resume:?}"
    );
    assert!(
        !resumed_events.is_empty(),
        "no VideoResumed event for the customer"
    );
    assert!(
        within(to_higher, RESUME_WITHIN),
        "no layer above q within 10 s of the restore: {to_higher:?}"
    );
    h.finish().await;
    Ok(())
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_loss_10pct_rtt_150ms_stays_decodable() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let lossy = |p: LinkParams| p.loss(0.10).delay(Duration::from_millis(75));
    let mut h = Harness::start(
        "s4-loss10-rtt150",
        lossy(link(CLEAN)),
        lossy(LinkParams::clean()),
    )
    .await?;
    h.marks.push((
        h.t0.elapsed(),
        "customer both ways: 10 % loss, 75 ms each way (RTT 150 ms); down 3 Mbit/s".into(),
    ));
    // Let the first keyframe arrive, then measure 20 s.
    let first = h
        .wait_until(Duration::from_secs(15), |s| s.frames_decoded > 0)
        .await?;
    anyhow::ensure!(first.is_some(), "no video decoded at all");
    let start = h.samples.last().cloned().unwrap_or_default();
    let audio_from = h.audio_counter();
    h.run_for(Duration::from_secs(20)).await?;
    let audio_to = h.audio_counter();
    h.run_for(Duration::from_secs(1)).await?;
    let end = h.samples.last().cloned().unwrap_or_default();
    let audio = h.audio_delivery(audio_from, audio_to);
    let decoded = end.frames_decoded - start.frames_decoded;
    let dropped = end.frames_dropped - start.frames_dropped;
    let decodable = decoded as f64 / (decoded + dropped).max(1) as f64;
    let freezes = end.freezes - start.freezes;
    let customer_plis = end.customer_plis - start.customer_plis;
    let merchant_plis = end.merchant_plis - start.merchant_plis;
    let lost_at_relay = end.loss_drops - start.loss_drops;
    let refused = end.retransmissions_refused - start.retransmissions_refused;
    let paused = h.samples.iter().filter(|s| s.paused).count();
    h.write_report(&[
        format!(
            "over 20 s: frames decoded {decoded}, dropped {dropped} (decodable {})",
            pct(decodable)
        ),
        format!("freezes: {freezes}"),
        format!("PLIs by the customer's decoder: {customer_plis}; keyframe requests reaching the merchant: {merchant_plis}"),
        format!("datagrams lost at the relay (downlink): {lost_at_relay}"),
        format!("retransmissions the SFU refused over budget: {refused}"),
        format!("audio delivered: {} (no retransmission for audio)", pct(audio)),
        format!("samples with video paused: {paused}"),
        format!(
            "at the end: estimate {:?} bit/s, layer {:?}, video received {} bit/s",
            end.estimate_bps, end.layer, end.rx_video_bps
        ),
    ])?;
    assert!(lost_at_relay > 100, "the link did not lose anything");
    assert!(decoded >= 300, "{decoded} frames decoded in 20 s");
    assert!(decodable >= 0.90, "decodable {decodable}");
    // The issue asks to count them; the bound guards against a regression to a frozen picture.
    assert!(freezes <= 10, "{freezes} freezes in 20 s");
    assert!(audio >= 0.80, "audio delivered {audio}");
    h.finish().await;
    Ok(())
}
