//! The relay on loopback: NAT-like flows, and that rate, delay, loss, schedules and live
//! changes do what they say, measured with real sockets and the real clock.
//!
//! Thresholds are wide enough for a loaded 2-core machine; the measured values are printed
//! (`cargo test -p shopcall-netem --test relay -- --nocapture`) for docs/benchmarks.md.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netem::{Direction, Directions, LinkParams, Phase, QueueLimit, Relay, RelayConfig, Schedule};
use tokio::net::UdpSocket;

async fn bind() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// An upstream that echoes every datagram to its sender.
async fn echo_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let socket = bind().await;
    let addr = socket.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
    (addr, task)
}

/// Arrival times of datagrams at a sink, with the first 8 bytes of each (a sequence number).
async fn collect(socket: &UdpSocket, quiet: Duration) -> Vec<(Instant, u64)> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 2048];
    while let Ok(Ok(n)) = tokio::time::timeout(quiet, socket.recv(&mut buf)).await {
        let seq = u64::from_be_bytes(buf[..8].try_into().unwrap());
        let _ = n;
        out.push((Instant::now(), seq));
    }
    out
}

/// Sends `count` datagrams of `len` bytes at `bps` (paced per millisecond).
async fn send_paced(socket: Arc<UdpSocket>, to: SocketAddr, len: usize, bps: u64, count: u64) {
    let per_ms = bps as f64 / 8.0 / len as f64 / 1000.0;
    let start = tokio::time::Instant::now();
    let mut sent = 0u64;
    let mut buf = vec![0x5au8; len];
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    while sent < count {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * 1000.0 + 1.0) * per_ms) as u64;
        while sent < due.min(count) {
            buf[..8].copy_from_slice(&sent.to_be_bytes());
            socket.send_to(&buf, to).await.unwrap();
            sent += 1;
        }
    }
}

/// Bits per second between the first and last arrival, counting `len + overhead` bytes.
fn measured_rate(arrivals: &[(Instant, u64)], len: usize, overhead: usize) -> f64 {
    let first = arrivals.first().unwrap().0;
    let last = arrivals.last().unwrap().0;
    // n arrivals span n-1 serialization times.
    let bits = (arrivals.len() - 1) as f64 * (len + overhead) as f64 * 8.0;
    bits / (last - first).as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_are_per_client_and_replies_go_back() {
    let upstream = bind().await;
    let upstream_addr = upstream.local_addr().unwrap();
    let relay = Relay::start(RelayConfig::loopback(upstream_addr))
        .await
        .unwrap();
    let (a, b) = (bind().await, bind().await);
    a.send_to(b"from-a", relay.local_addr()).await.unwrap();
    b.send_to(b"from-b", relay.local_addr()).await.unwrap();
    a.send_to(b"from-a-2", relay.local_addr()).await.unwrap();

    let mut buf = [0u8; 64];
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (n, from) = tokio::time::timeout(Duration::from_secs(2), upstream.recv_from(&mut buf))
            .await
            .expect("upstream got the datagram")
            .unwrap();
        seen.push((String::from_utf8_lossy(&buf[..n]).into_owned(), from));
    }
    let from_a: Vec<_> = seen
        .iter()
        .filter(|(m, _)| m.starts_with("from-a"))
        .collect();
    let from_b: Vec<_> = seen.iter().filter(|(m, _)| m == "from-b").collect();
    assert_eq!(from_a.len(), 2);
    assert_eq!(from_a[0].1, from_a[1].1, "one upstream socket per client");
    assert_ne!(
        from_a[0].1, from_b[0].1,
        "distinct sockets for distinct clients"
    );
    assert!(from_a[0].1.ip().is_loopback());

    // Replies go back to the right client, from the relay's address.
    upstream.send_to(b"to-b", from_b[0].1).await.unwrap();
    let (n, from) = tokio::time::timeout(Duration::from_secs(2), b.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"to-b");
    assert_eq!(from, relay.local_addr());
    let s = relay.stats().await.unwrap();
    assert_eq!(s.flows, 2);
    assert_eq!((s.up.received, s.up.delivered), (3, 3));
    assert_eq!((s.down.received, s.down.delivered), (1, 1));
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_yields_the_configured_rate() {
    // 1 Mbit/s offered into 300 kbit/s, both directions measured separately.
    const LEN: usize = 1200;
    const OVERHEAD: usize = 28;
    let sink = bind().await;
    let relay = Relay::start(
        RelayConfig::loopback(sink.local_addr().unwrap()).up(LinkParams::clean()
            .rate(300_000)
            .queue(QueueLimit::Delay(Duration::from_millis(300)))),
    )
    .await
    .unwrap();
    let client = Arc::new(bind().await);
    let sender = tokio::spawn(send_paced(
        Arc::clone(&client),
        relay.local_addr(),
        LEN,
        1_000_000,
        416, // ~4 s
    ));
    let arrivals = collect(&sink, Duration::from_millis(800)).await;
    sender.await.unwrap();
    let rate = measured_rate(&arrivals, LEN, OVERHEAD);
    let s = relay.stats().await.unwrap();
    println!(
        "up 300 kbit/s: measured {:.1} kbit/s over {} datagrams ({:+.2} %), queue drops {}, max queue delay {:?}",
        rate / 1e3,
        arrivals.len(),
        (rate / 300_000.0 - 1.0) * 100.0,
        s.up.dropped_queue_full,
        s.up.queue_delay.max
    );
    assert!((rate - 300_000.0).abs() < 300_000.0 * 0.03, "rate {rate}");
    assert!(s.up.dropped_queue_full > 100, "{s:?}");
    // Delivered in order, none twice.
    assert!(arrivals.windows(2).all(|w| w[0].1 < w[1].1));
    // The queue bounds the delay: 300 ms of data plus one datagram.
    assert!(
        s.up.queue_delay.max <= Duration::from_millis(300 + 40),
        "{s:?}"
    );
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downlink_rate_and_a_scheduled_change() {
    // Down: 2 Mbit/s for 1.5 s, then 500 kbit/s; the upstream floods the client at 4 Mbit/s.
    const LEN: usize = 1000;
    let upstream = Arc::new(bind().await);
    let relay = Relay::start(
        RelayConfig::loopback(upstream.local_addr().unwrap())
            .down(LinkParams::clean().rate(2_000_000).overhead(0))
            .schedule(Schedule::new(vec![Phase::new(
                Duration::from_millis(1500),
                Directions::Down,
                "rate=500kbit".parse().unwrap(),
            )])),
    )
    .await
    .unwrap();
    let client = bind().await;
    client
        .send_to(b"hello!!!", relay.local_addr())
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let (_, flow_addr) = upstream.recv_from(&mut buf).await.unwrap();
    let sender = tokio::spawn(send_paced(
        Arc::clone(&upstream),
        flow_addr,
        LEN,
        4_000_000,
        1500,
    ));
    let arrivals = collect(&client, Duration::from_millis(800)).await;
    sender.await.unwrap();
    let t0 = arrivals[0].0;
    let phase1: Vec<_> = arrivals
        .iter()
        .copied()
        .filter(|(t, _)| {
            *t - t0 > Duration::from_millis(200) && *t - t0 < Duration::from_millis(1300)
        })
        .collect();
    let phase2: Vec<_> = arrivals
        .iter()
        .copied()
        .filter(|(t, _)| *t - t0 > Duration::from_millis(1800))
        .collect();
    let (r1, r2) = (
        measured_rate(&phase1, LEN, 0),
        measured_rate(&phase2, LEN, 0),
    );
    println!(
        "down 2 Mbit/s then 500 kbit/s: measured {:.1} kbit/s ({:+.2} %), then {:.1} kbit/s ({:+.2} %)",
        r1 / 1e3,
        (r1 / 2e6 - 1.0) * 100.0,
        r2 / 1e3,
        (r2 / 5e5 - 1.0) * 100.0
    );
    assert!((r1 - 2e6).abs() < 2e6 * 0.05, "phase 1 rate {r1}");
    assert!((r2 - 5e5).abs() < 5e5 * 0.05, "phase 2 rate {r2}");
    let s = relay.stats().await.unwrap();
    assert_eq!(s.down_params.rate_bps, Some(500_000));
    assert_eq!(
        s.up_params.rate_bps, None,
        "the up link kept its parameters"
    );
    relay.shutdown().await;
}

async fn median_rtt(client: &UdpSocket, to: SocketAddr) -> Duration {
    let mut samples = Vec::new();
    let mut buf = [0u8; 64];
    for i in 0u64..10 {
        let t = Instant::now();
        client.send_to(&i.to_be_bytes(), to).await.unwrap();
        tokio::time::timeout(Duration::from_secs(2), client.recv(&mut buf))
            .await
            .expect("echo")
            .unwrap();
        samples.push(t.elapsed());
    }
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_shows_in_the_round_trip_and_changes_live() {
    let (echo, _echo_task) = echo_server().await;
    let relay = Relay::start(
        RelayConfig::loopback(echo).both(LinkParams::clean().delay(Duration::from_millis(40))),
    )
    .await
    .unwrap();
    let client = bind().await;
    let before = median_rtt(&client, relay.local_addr()).await;
    relay
        .set(
            Directions::Both,
            LinkParams::clean().delay(Duration::from_millis(75)),
        )
        .await
        .unwrap();
    let after = median_rtt(&client, relay.local_addr()).await;
    println!("median RTT with 2 x 40 ms: {before:?}; with 2 x 75 ms: {after:?}");
    assert!(
        before >= Duration::from_millis(80) && before < Duration::from_millis(95),
        "{before:?}"
    );
    assert!(
        after >= Duration::from_millis(150) && after < Duration::from_millis(165),
        "{after:?}"
    );
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_is_about_the_configured_fraction_and_counted() {
    let sink = bind().await;
    let relay = Relay::start(
        RelayConfig::loopback(sink.local_addr().unwrap())
            .up(LinkParams::clean().loss(0.1))
            .seed(42),
    )
    .await
    .unwrap();
    let client = Arc::new(bind().await);
    let sender = tokio::spawn(send_paced(client, relay.local_addr(), 200, 3_200_000, 4000));
    let arrivals = collect(&sink, Duration::from_millis(500)).await;
    sender.await.unwrap();
    let s = relay.stats().await.unwrap();
    let lost = s.link(Direction::Up).dropped_random_loss;
    println!("10 % loss: {lost} of 4000 lost, {} arrived", arrivals.len());
    assert_eq!(s.up.received, 4000);
    assert_eq!(lost + arrivals.len() as u64, 4000);
    assert!((320..=480).contains(&lost), "{lost}");
    assert_eq!(s.up.dropped_queue_full, 0);
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitter_spreads_arrivals_without_reordering() {
    let sink = bind().await;
    let relay = Relay::start(
        RelayConfig::loopback(sink.local_addr().unwrap()).up(LinkParams::clean()
            .delay(Duration::from_millis(30))
            .jitter(Duration::from_millis(20))),
    )
    .await
    .unwrap();
    let client = Arc::new(bind().await);
    let sender = tokio::spawn(send_paced(client, relay.local_addr(), 100, 400_000, 1000));
    let arrivals = collect(&sink, Duration::from_millis(500)).await;
    sender.await.unwrap();
    assert_eq!(arrivals.len(), 1000);
    assert!(arrivals.windows(2).all(|w| w[0].1 < w[1].1), "order kept");
    let gaps: Vec<Duration> = arrivals.windows(2).map(|w| w[1].0 - w[0].0).collect();
    let bunched = gaps
        .iter()
        .filter(|g| **g < Duration::from_micros(300))
        .count();
    assert!(
        bunched > 100,
        "jitter without reorder bunches arrivals: {bunched}"
    );
    relay.shutdown().await;
}
