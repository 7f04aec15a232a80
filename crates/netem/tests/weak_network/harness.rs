//! The scenario harness: an in-process SFU, a merchant (simulcast camera + audio) and a
//! customer (audio; receives the merchant's video), each behind its own impairment relay,
//! and a sampler that records what happens over time.
//!
//! ```text
//!   merchant ──▶ merchant relay (clean) ──▶ SFU ──▶ customer relay (the weak link) ──▶ customer
//! ```
//!
//! Two placements, same scenario code:
//! * namespaces (root; the default where available, required under `CI=true`): a
//!   [`Star`] with the SFU and both relays in the hub namespace and each client in its own
//!   spoke namespace, every one with its own tokio runtime; client traffic crosses a veth.
//! * loopback (anywhere else, or `SHOPCALL_WEAK_NET=loopback`): everything on 127.0.0.1.
//!
//! The SFU announces its loopback address; the answers are rewritten to the relays'
//! addresses, so each client's only path to the SFU is its relay.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netem::netns::{self, NsRuntime, Star};
use netem::plot::{Chart, Csv, Panel, Series, cell};
use netem::{Direction, Directions, LinkParams, Relay, RelayConfig};
use sfu::{CallId, CallOptions, Event, JoinRequest, ParticipantId, Role, SfuConfig, SfuHandle};
use shopcall_peer::{MediaPlan, PeerConfig, SimulcastLayer, TestPeer};

/// How often the sampler looks.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// What the merchant's access link does (both ways): a clean link with a little delay.
pub const MERCHANT_LINK: &str = "delay=10ms";

/// The media both clients send: speech-size audio (about 20 kbit/s of Opus, so that audio
/// alone fits a 60 kbit/s link with its headers) and, from the merchant, the three simulcast
/// layers; keyframes only when asked for (and every 10 s), as a browser does.
pub fn media_plan() -> MediaPlan {
    MediaPlan {
        audio_payload_bytes: 40..=60,
        keyframe_interval: Duration::from_secs(10),
        ..MediaPlan::default()
    }
}

/// Runs code either on the test's runtime or on a runtime inside a namespace.
enum Place {
    Here,
    Ns(NsRuntime),
}

impl Place {
    async fn run<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self {
            Place::Here => fut.await,
            Place::Ns(rt) => rt.run(fut).await,
        }
    }
}

/// Where the parts run; dropped last (runtimes stop, then namespaces go).
struct Places {
    sfu: Place,
    merchant: Place,
    customer: Place,
    // After the runtimes: the namespaces outlive every socket in them. Held for its Drop.
    _star: Option<Star>,
}

/// Which placement a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Namespaces joined by veth pairs.
    Namespaces,
    /// Everything on 127.0.0.1.
    Loopback,
}

impl Mode {
    fn choose(test: &str) -> Mode {
        match std::env::var("SHOPCALL_WEAK_NET").as_deref() {
            Ok("loopback") => return Mode::Loopback,
            Ok("netns") => {
                assert!(
                    netns::check_available().is_ok(),
                    "SHOPCALL_WEAK_NET=netns: {:?}",
                    netns::check_available()
                );
                return Mode::Namespaces;
            }
            _ => {}
        }
        // Under CI=true this fails rather than fall back: the proof needs real namespaces.
        if netns::available_or_skip(test) {
            Mode::Namespaces
        } else {
            eprintln!("{test}: running on loopback instead");
            Mode::Loopback
        }
    }
}

/// One sample of the call, seen from the customer's side of the weak link.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Since the harness started.
    pub t: Duration,
    /// The customer's downlink capacity (the relay's rate; `None` = unlimited).
    pub capacity_bps: Option<u64>,
    /// The SFU's estimate of the customer's downlink.
    pub estimate_bps: Option<u64>,
    /// The simulcast layer the SFU forwards to the customer.
    pub layer: Option<String>,
    /// Whether the SFU paused video to the customer.
    pub paused: bool,
    /// Total time paused so far.
    pub paused_for: Duration,
    /// Video payload bitrate the customer received over the last second.
    pub rx_video_bps: u64,
    /// Resolution of the last keyframe the customer decoded.
    pub rx_resolution: Option<(u16, u16)>,
    /// Frames the customer decoded so far.
    pub frames_decoded: u64,
    /// Frames lost or undecodable so far.
    pub frames_dropped: u64,
    /// Freezes so far.
    pub freezes: u64,
    /// Keyframe requests the customer's decoder sent.
    pub customer_plis: u64,
    /// Keyframe requests that reached the merchant (from the SFU).
    pub merchant_plis: u64,
    /// The merchant's audio packets sent so far (= the next audio counter).
    pub audio_sent: u64,
    /// Audio packets the customer received so far.
    pub audio_received: u64,
    /// Latest queueing delay at the customer's bottleneck.
    pub queue_delay: Duration,
    /// Bytes queued there.
    pub queued_bytes: u64,
    /// Datagrams dropped there for a full queue, so far.
    pub queue_drops: u64,
    /// Datagrams dropped there by random loss, so far.
    pub loss_drops: u64,
    /// Retransmissions the SFU refused over its budget so far (engine-wide).
    pub retransmissions_refused: u64,
}

impl Sample {
    /// 0 for q, 1 for h, 2 for f; -1 while paused; `None` before any layer.
    pub fn layer_index(&self) -> Option<f64> {
        if self.paused {
            return Some(-1.0);
        }
        let rid = self.layer.as_deref()?;
        shopcall_peer::SIMULCAST_LAYERS
            .iter()
            .position(|l| l.rid == rid)
            .map(|i| i as f64)
    }

    /// The rid of the layer the customer's decoder shows (by keyframe resolution).
    pub fn rx_layer(&self) -> Option<&'static str> {
        self.rx_resolution
            .and_then(SimulcastLayer::by_size)
            .map(|l| l.rid)
    }
}

/// The running call and its record.
pub struct Harness {
    pub name: &'static str,
    pub mode: Mode,
    pub sfu: SfuHandle,
    pub call: CallId,
    pub merchant: TestPeer,
    pub customer: TestPeer,
    pub customer_id: ParticipantId,
    pub merchant_relay: Relay,
    pub customer_relay: Relay,
    pub t0: Instant,
    pub samples: Vec<Sample>,
    /// `(when, what)`: link changes, for the report.
    pub marks: Vec<(Duration, String)>,
    events: Arc<Mutex<Vec<(Duration, Event)>>>,
    event_task: tokio::task::JoinHandle<()>,
    // Last: runtimes stop and namespaces go after everything above is dropped.
    places: Places,
}

/// Serializes the scenarios: each loads the 2 cores with an SFU and ~2.5 Mbit/s of media,
/// and timing-bounded assertions should not compete with each other.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Harness {
    /// Starts the SFU and the relays, joins both clients through them, waits for the call
    /// to connect and starts media. The customer's link starts as `customer_down` /
    /// `customer_up`.
    pub async fn start(
        name: &'static str,
        customer_down: LinkParams,
        customer_up: LinkParams,
    ) -> anyhow::Result<Harness> {
        let mode = Mode::choose(name);
        let (places, merchant_ip, customer_ip, merchant_relay_ip, customer_relay_ip) = match mode {
            Mode::Loopback => {
                let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
                (
                    Places {
                        sfu: Place::Here,
                        merchant: Place::Here,
                        customer: Place::Here,
                        _star: None,
                    },
                    lo,
                    lo,
                    lo,
                    lo,
                )
            }
            Mode::Namespaces => {
                let star = Star::new("sfu", &["merchant", "customer"])?;
                let (m_ns, m_veth) = star.spoke("merchant").expect("merchant spoke");
                let (c_ns, c_veth) = star.spoke("customer").expect("customer spoke");
                let places = Places {
                    sfu: Place::Ns(star.hub().runtime(2)?),
                    merchant: Place::Ns(m_ns.runtime(1)?),
                    customer: Place::Ns(c_ns.runtime(1)?),
                    _star: None,
                };
                let ips = (
                    IpAddr::V4(m_veth.spoke_ip),
                    IpAddr::V4(c_veth.spoke_ip),
                    IpAddr::V4(m_veth.hub_ip),
                    IpAddr::V4(c_veth.hub_ip),
                );
                (
                    Places {
                        _star: Some(star),
                        ..places
                    },
                    ips.0,
                    ips.1,
                    ips.2,
                    ips.3,
                )
            }
        };

        let sfu = places
            .sfu
            .run(async { SfuHandle::start(SfuConfig::loopback()).await })
            .await?;
        let t0 = Instant::now();
        let events = Arc::new(Mutex::new(Vec::new()));
        let mut rx = sfu.subscribe()?;
        let sink = Arc::clone(&events);
        let event_task = tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(e) => sink.lock().unwrap().push((t0.elapsed(), e)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                }
            }
        });

        let relay = |listen_ip: IpAddr, up: LinkParams, down: LinkParams, seed: u64| {
            let upstream = sfu.media_addr();
            async move {
                let mut cfg = RelayConfig::new(SocketAddr::new(listen_ip, 0), upstream)
                    .up(up)
                    .down(down)
                    .seed(seed);
                // The SFU is on the hub's loopback; so are the relays' upstream sockets.
                cfg.upstream_bind_ip = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
                Relay::start(cfg).await
            }
        };
        let merchant_link: LinkParams = MERCHANT_LINK.parse().expect("merchant link");
        let merchant_relay = places
            .sfu
            .run(relay(merchant_relay_ip, merchant_link, merchant_link, 11))
            .await?;
        let customer_relay = places
            .sfu
            .run(relay(customer_relay_ip, customer_up, customer_down, 22))
            .await?;

        let call = sfu.create_call(CallOptions::default()).await?.id;
        let merchant_cfg = PeerConfig {
            bind_ip: merchant_ip,
            simulcast: true,
            pli_on_loss: true,
            ..PeerConfig::named("merchant")
        };
        let customer_cfg = PeerConfig {
            bind_ip: customer_ip,
            pli_on_loss: true,
            ..PeerConfig::named("customer")
        };
        let merchant = places
            .merchant
            .run(async move { TestPeer::new(merchant_cfg).await })
            .await?;
        let customer = places
            .customer
            .run(async move { TestPeer::new(customer_cfg).await })
            .await?;
        let mut ids = Vec::new();
        for (peer, role, relay) in [
            (&merchant, Role::Merchant, &merchant_relay),
            (&customer, Role::Customer, &customer_relay),
        ] {
            let offer = peer.create_offer().await?;
            let answer = sfu.join(call, JoinRequest::new(role, offer)).await?;
            let via_relay =
                netem::sdp::rewrite_host_candidates(&answer.answer_sdp, relay.local_addr());
            assert_eq!(
                netem::sdp::host_candidates(&via_relay)
                    .into_iter()
                    .filter(|a| *a != relay.local_addr())
                    .count(),
                0,
                "every candidate points at the relay"
            );
            peer.set_answer(&via_relay).await?;
            ids.push(answer.participant);
        }
        for peer in [&merchant, &customer] {
            peer.wait_connected(Duration::from_secs(15)).await?;
        }
        let connected = tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                let done = events
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|(_, e)| matches!(e, Event::CallConnected { call: c } if *c == call));
                if done {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        anyhow::ensure!(connected.is_ok(), "{name}: the call did not connect");
        merchant.start_media(media_plan());
        customer.start_media(media_plan());
        Ok(Harness {
            name,
            mode,
            sfu,
            call,
            merchant,
            customer,
            customer_id: ids[1],
            merchant_relay,
            customer_relay,
            t0,
            samples: Vec::new(),
            marks: Vec::new(),
            events,
            event_task,
            places,
        })
    }

    /// Takes one sample and keeps it.
    pub async fn sample(&mut self) -> anyhow::Result<Sample> {
        let stats = self.sfu.call_stats(self.call).await?;
        let me = stats
            .participants
            .iter()
            .find(|p| p.participant == self.customer_id)
            .ok_or_else(|| anyhow::anyhow!("the customer is gone from the call"))?;
        let relay = self.customer_relay.stats().await?;
        let metrics = self.sfu.metrics().await?;
        let rx = self.customer.stats();
        let tx = self.merchant.stats();
        let video = rx.main_video().cloned().unwrap_or_default();
        let down = relay.link(Direction::Down);
        let s = Sample {
            t: self.t0.elapsed(),
            capacity_bps: relay.params(Direction::Down).rate_bps,
            estimate_bps: me.estimated_downlink_bps,
            layer: me.video_layer.clone(),
            paused: me.video_paused,
            paused_for: me.video_paused_duration,
            rx_video_bps: video.bitrate_bps,
            rx_resolution: video.resolution,
            frames_decoded: video.frames_decoded,
            frames_dropped: video.frames_dropped,
            freezes: video.freezes,
            customer_plis: rx.video.plis_sent,
            merchant_plis: tx.video.plis_received,
            audio_sent: tx.audio.packets_sent,
            audio_received: rx.audio.packets_received,
            queue_delay: down.queue_delay.last,
            queued_bytes: down.queued_bytes,
            queue_drops: down.dropped_queue_full,
            loss_drops: down.dropped_random_loss,
            retransmissions_refused: metrics.retransmissions_refused,
        };
        self.samples.push(s.clone());
        Ok(s)
    }

    /// Samples every [`SAMPLE_EVERY`] until `cond` holds (returns how long that took) or
    /// `limit` passes (returns `None`).
    pub async fn wait_until(
        &mut self,
        limit: Duration,
        cond: impl Fn(&Sample) -> bool,
    ) -> anyhow::Result<Option<Duration>> {
        let start = Instant::now();
        loop {
            let s = self.sample().await?;
            if cond(&s) {
                return Ok(Some(start.elapsed()));
            }
            if start.elapsed() >= limit {
                return Ok(None);
            }
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
    }

    /// Samples every [`SAMPLE_EVERY`] until `cond` has held for `hold` without a break, or
    /// `limit` passes; returns when it started holding (since the call), or `None`.
    pub async fn wait_until_steady(
        &mut self,
        limit: Duration,
        hold: Duration,
        cond: impl Fn(&Sample) -> bool,
    ) -> anyhow::Result<Option<Duration>> {
        let start = Instant::now();
        let mut since: Option<Duration> = None;
        loop {
            let s = self.sample().await?;
            let elapsed = start.elapsed();
            if cond(&s) {
                let began = *since.get_or_insert(elapsed);
                if elapsed - began >= hold {
                    return Ok(Some(began));
                }
            } else {
                since = None;
            }
            if elapsed >= limit {
                return Ok(None);
            }
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
    }

    /// From harness time `since`, how long until the first recorded sample satisfying `cond`.
    pub fn first_since(&self, since: Duration, cond: impl Fn(&Sample) -> bool) -> Option<Duration> {
        self.samples
            .iter()
            .find(|s| s.t >= since && cond(s))
            .map(|s| s.t - since)
    }

    /// Harness time now.
    pub fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    /// Samples every [`SAMPLE_EVERY`] for `d`; returns the samples taken.
    pub async fn run_for(&mut self, d: Duration) -> anyhow::Result<Vec<Sample>> {
        let start = Instant::now();
        let first = self.samples.len();
        while start.elapsed() < d {
            self.sample().await?;
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
        Ok(self.samples[first..].to_vec())
    }

    /// Changes the customer's downlink now.
    pub async fn set_down(&mut self, p: LinkParams) -> anyhow::Result<()> {
        self.customer_relay.set(Directions::Down, p).await?;
        self.marks
            .push((self.t0.elapsed(), format!("customer down: {p}")));
        Ok(())
    }

    /// The merchant's audio counter now (packets it has sent).
    pub fn audio_counter(&self) -> u64 {
        self.merchant.stats().audio.packets_sent
    }

    /// Of the merchant's audio packets numbered `from..to`, the fraction the customer got.
    pub fn audio_delivery(&self, from: u64, to: u64) -> f64 {
        if to <= from {
            return 1.0;
        }
        self.customer.audio_received_between(from..to) as f64 / (to - from) as f64
    }

    /// Events of this call since `since` (harness time) that match.
    pub fn events_since(
        &self,
        since: Duration,
        f: impl Fn(&Event) -> bool,
    ) -> Vec<(Duration, Event)> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, e)| *t >= since && e.call() == self.call && f(e))
            .cloned()
            .collect()
    }

    /// Where reports go: `$SHOPCALL_WEAK_NET_OUT`, or `docs/weak-network` with
    /// `SHOPCALL_WRITE_DOCS=1`, else the target dir.
    pub fn out_dir() -> PathBuf {
        if let Ok(dir) = std::env::var("SHOPCALL_WEAK_NET_OUT") {
            return PathBuf::from(dir);
        }
        if std::env::var("SHOPCALL_WRITE_DOCS").is_ok_and(|v| v == "1") {
            return PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/weak-network");
        }
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("weak-network")
    }

    /// Writes `<name>.csv`, `<name>.svg` and `<name>.txt` (the summary lines) and prints the
    /// summary. Audio delivery per second is computed here, after the fact, from the
    /// merchant's counters at each sample and what the customer received.
    pub fn write_report(&self, summary: &[String]) -> anyhow::Result<PathBuf> {
        let dir = Self::out_dir();
        std::fs::create_dir_all(&dir)?;
        let mut csv = Csv::new(&[
            "t_s",
            "capacity_kbps",
            "estimate_kbps",
            "layer",
            "layer_index",
            "paused",
            "rx_video_kbps",
            "rx_resolution",
            "frames_decoded",
            "frames_dropped",
            "freezes",
            "customer_plis",
            "merchant_plis",
            "audio_sent",
            "audio_received",
            "audio_delivery_1s",
            "queue_delay_ms",
            "queued_bytes",
            "queue_drops",
            "loss_drops",
            "retransmissions_refused",
        ]);
        let delivery = self.audio_delivery_series();
        let mut audio_points = Vec::new();
        for (i, s) in self.samples.iter().enumerate() {
            let t = s.t.as_secs_f64();
            let d = delivery.get(i).copied().flatten();
            if let Some(d) = d {
                audio_points.push((t, Some(d * 100.0)));
            }
            csv.push(vec![
                format!("{t:.2}"),
                cell(s.capacity_bps.map(|b| b as f64 / 1e3)),
                cell(s.estimate_bps.map(|b| b as f64 / 1e3)),
                s.layer.clone().unwrap_or_default(),
                cell(s.layer_index()),
                u8::from(s.paused).to_string(),
                cell(Some(s.rx_video_bps as f64 / 1e3)),
                s.rx_resolution
                    .map(|(w, h)| format!("{w}x{h}"))
                    .unwrap_or_default(),
                s.frames_decoded.to_string(),
                s.frames_dropped.to_string(),
                s.freezes.to_string(),
                s.customer_plis.to_string(),
                s.merchant_plis.to_string(),
                s.audio_sent.to_string(),
                s.audio_received.to_string(),
                cell(d),
                cell(Some(s.queue_delay.as_secs_f64() * 1e3)),
                s.queued_bytes.to_string(),
                s.queue_drops.to_string(),
                s.loss_drops.to_string(),
                s.retransmissions_refused.to_string(),
            ]);
        }
        csv.write(&dir.join(format!("{}.csv", self.name)))?;

        let kbps = |f: &dyn Fn(&Sample) -> Option<f64>| -> Vec<(f64, Option<f64>)> {
            self.samples
                .iter()
                .map(|s| (s.t.as_secs_f64(), f(s)))
                .collect()
        };
        let chart = Chart {
            title: format!(
                "{} ({})",
                self.name,
                match self.mode {
                    Mode::Namespaces => "namespaces",
                    Mode::Loopback => "loopback",
                }
            ),
            x_label: "seconds".into(),
            panels: vec![
                Panel {
                    y_label: "kbit/s (log)".into(),
                    series: vec![
                        Series::step(
                            "link capacity",
                            kbps(&|s| s.capacity_bps.map(|b| b as f64 / 1e3)),
                        ),
                        Series::line(
                            "SFU estimate",
                            kbps(&|s| s.estimate_bps.map(|b| b as f64 / 1e3)),
                        ),
                        Series::line(
                            "video received",
                            kbps(&|s| Some(s.rx_video_bps as f64 / 1e3)),
                        ),
                    ],
                    y_range: None,
                    log_y: true,
                },
                Panel {
                    y_label: "layer (-1 paused, 0 q, 1 h, 2 f)".into(),
                    series: vec![
                        Series::step("forwarded layer", kbps(&|s| s.layer_index())),
                        Series::step(
                            "decoded layer",
                            kbps(&|s| {
                                s.rx_layer().and_then(|rid| {
                                    shopcall_peer::SIMULCAST_LAYERS
                                        .iter()
                                        .position(|l| l.rid == rid)
                                        .map(|i| i as f64)
                                })
                            }),
                        ),
                    ],
                    y_range: Some((-1.5, 2.5)),
                    log_y: false,
                },
                Panel {
                    y_label: "audio delivered %".into(),
                    series: vec![Series::line("audio, per second sent", audio_points)],
                    y_range: Some((0.0, 105.0)),
                    log_y: false,
                },
            ],
        };
        chart.write_svg(&dir.join(format!("{}.svg", self.name)))?;

        let mut text = format!("# {} ({:?})\n", self.name, self.mode);
        for (t, m) in &self.marks {
            text.push_str(&format!("t={:.1}s {m}\n", t.as_secs_f64()));
        }
        for line in summary {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(dir.join(format!("{}.txt", self.name)), &text)?;
        println!("{text}report: {}", dir.display());
        Ok(dir)
    }

    /// For each sample, the delivery ratio of the audio sent in the second before it (`None`
    /// for the first second).
    fn audio_delivery_series(&self) -> Vec<Option<f64>> {
        let per_second = (Duration::from_secs(1).as_millis() / SAMPLE_EVERY.as_millis()) as usize;
        (0..self.samples.len())
            .map(|i| {
                let j = i.checked_sub(per_second.max(1))?;
                let (from, to) = (self.samples[j].audio_sent, self.samples[i].audio_sent);
                (to > from).then(|| self.audio_delivery(from, to))
            })
            .collect()
    }

    /// Stops media, closes the clients, relays and the SFU, in that order.
    pub async fn finish(self) {
        self.merchant.stop_media().await;
        self.customer.stop_media().await;
        self.merchant.close().await;
        self.customer.close().await;
        let _ = self.sfu.end_call(self.call).await;
        let _ = self.sfu.shutdown().await;
        self.event_task.abort();
        self.merchant_relay.shutdown().await;
        self.customer_relay.shutdown().await;
        let places = self.places;
        // Joining the runtimes' threads blocks; do it off the async workers.
        tokio::task::spawn_blocking(move || drop(places))
            .await
            .expect("namespace teardown");
    }
}
