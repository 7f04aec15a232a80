//! The namespace harness: a star of namespaces joined by veth pairs, code and runtimes inside
//! them, a kernel tbf rate limit, a relay in the hub, and cleanup on drop and on panic.
//!
//! Needs root; skips with a message elsewhere, fails under `CI=true`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use netem::netns::{self, Netns, Star};
use netem::{LinkParams, Relay, RelayConfig};

fn namespace_exists(name: &str) -> bool {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

#[test]
fn star_routes_spokes_to_the_hub_and_cleans_up() {
    if !netns::available_or_skip("star_routes_spokes_to_the_hub_and_cleans_up") {
        return;
    }
    let star = Star::new("hub", &["alice", "bob"]).unwrap();
    let (alice, alice_veth) = star.spoke("alice").unwrap();
    let (_, bob_veth) = star.spoke("bob").unwrap();
    assert_ne!(alice_veth.spoke_ip, bob_veth.spoke_ip);

    // A UDP server in the hub, bound to bob's side of the hub: alice reaches it through her
    // default route (the hub forwards nothing; the address is local to it).
    let server = star
        .hub()
        .run(|| std::net::UdpSocket::bind((IpAddr::V4(bob_veth.hub_ip), 0)))
        .unwrap()
        .unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let server_addr = server.local_addr().unwrap();
    let from = alice
        .run(move || {
            let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            s.send_to(b"hi", server_addr).unwrap();
            s.local_addr().unwrap()
        })
        .unwrap();
    let mut buf = [0u8; 16];
    let (n, src) = server.recv_from(&mut buf).expect("datagram from alice");
    assert_eq!(&buf[..n], b"hi");
    assert_eq!(src.ip(), IpAddr::V4(alice_veth.spoke_ip));
    assert_eq!(src.port(), from.port());

    // The host's own interfaces are untouched: no veth of ours there.
    let host_links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap();
    let host_links = String::from_utf8_lossy(&host_links.stdout);
    assert!(!host_links.contains(&alice_veth.hub_dev));
    assert!(!host_links.contains(&alice_veth.spoke_dev));

    let names: Vec<String> = std::iter::once(star.hub().name().to_owned())
        .chain(star.spokes().map(|(_, ns, _)| ns.name().to_owned()))
        .collect();
    assert!(names.iter().all(|n| namespace_exists(n)));
    drop(star);
    assert!(
        names.iter().all(|n| !namespace_exists(n)),
        "{names:?} left behind"
    );
}

#[test]
fn namespaces_are_deleted_when_a_test_panics() {
    if !netns::available_or_skip("namespaces_are_deleted_when_a_test_panics") {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        let ns = Netns::create("doomed").unwrap();
        tx.send(ns.name().to_owned()).unwrap();
        panic!("a failing test");
    })
    .join();
    assert!(result.is_err());
    let name = rx.recv().unwrap();
    assert!(!namespace_exists(&name), "{name} survived the panic");
}

#[test]
fn runtime_threads_live_in_the_namespace() {
    if !netns::available_or_skip("runtime_threads_live_in_the_namespace") {
        return;
    }
    let star = Star::new("rthub", &["client"]).unwrap();
    let (client, veth) = star.spoke("client").unwrap();
    let rt = client.runtime(2).unwrap();
    let spoke_ip = veth.spoke_ip;
    // Bind to the spoke's address: only possible inside its namespace. Blocking threads too.
    let bound = rt.handle().block_on_in_thread(async move {
        let a = tokio::net::UdpSocket::bind((spoke_ip, 0)).await.is_ok();
        let b =
            tokio::task::spawn_blocking(move || std::net::UdpSocket::bind((spoke_ip, 0)).is_ok())
                .await
                .unwrap();
        (a, b)
    });
    assert_eq!(bound, (true, true));
    // And not outside it.
    assert!(std::net::UdpSocket::bind((spoke_ip, 0)).is_err());
    drop(rt);
}

/// `Handle::block_on` from a plain thread (the tests here are synchronous).
trait BlockOnInThread {
    fn block_on_in_thread<F: Future + Send + 'static>(&self, f: F) -> F::Output
    where
        F::Output: Send + 'static;
}

impl BlockOnInThread for tokio::runtime::Handle {
    fn block_on_in_thread<F: Future + Send + 'static>(&self, f: F) -> F::Output
    where
        F::Output: Send + 'static,
    {
        let handle = self.clone();
        std::thread::spawn(move || handle.block_on(handle.spawn(f)).unwrap())
            .join()
            .unwrap()
    }
}

#[test]
fn tbf_on_the_veth_limits_the_rate() {
    if !netns::available_or_skip("tbf_on_the_veth_limits_the_rate") {
        return;
    }
    const LEN: usize = 1000;
    // Ethernet header + IPv4 + UDP: what tbf counts on top of the payload.
    const WIRE_OVERHEAD: usize = 14 + 20 + 8;
    let star = Star::new("tbfhub", &["rx"]).unwrap();
    let (rx_ns, veth) = star.spoke("rx").unwrap();
    star.hub()
        .shape(&veth.hub_dev, 1_000_000, Duration::from_millis(100))
        .unwrap();
    let sink = rx_ns
        .run(|| std::net::UdpSocket::bind((veth.spoke_ip, 0)))
        .unwrap()
        .unwrap();
    sink.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let sink_addr = sink.local_addr().unwrap();
    let hub_ip = veth.hub_ip;
    // 3 Mbit/s for 2 s from the hub.
    let sender = star
        .hub()
        .run(move || std::net::UdpSocket::bind((hub_ip, 0)))
        .unwrap()
        .unwrap();
    let send = std::thread::spawn(move || {
        let buf = [0x11u8; LEN];
        let start = Instant::now();
        let mut sent = 0u64;
        while start.elapsed() < Duration::from_secs(2) {
            let due = (start.elapsed().as_secs_f64() * 3e6 / 8.0 / LEN as f64) as u64;
            while sent < due {
                let _ = sender.send_to(&buf, sink_addr);
                sent += 1;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    });
    let mut arrivals = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(n) = sink.recv(&mut buf) {
        assert_eq!(n, LEN);
        arrivals.push(Instant::now());
    }
    send.join().unwrap();
    // Skip the first 200 ms (the bucket's burst), measure the rest.
    let t0 = arrivals[0];
    let steady: Vec<Instant> = arrivals
        .into_iter()
        .filter(|t| *t - t0 > Duration::from_millis(200))
        .collect();
    let span = (*steady.last().unwrap() - steady[0]).as_secs_f64();
    let rate = (steady.len() - 1) as f64 * (LEN + WIRE_OVERHEAD) as f64 * 8.0 / span;
    println!(
        "tbf 1 Mbit/s on the veth: measured {:.1} kbit/s on the wire ({:+.2} %)",
        rate / 1e3,
        (rate / 1e6 - 1.0) * 100.0
    );
    // The limit is what is asserted: never above the configured rate (5 % for the
    // measurement). Below it only means the sender was starved of CPU (a loaded machine), so
    // the lower bound just checks that traffic flowed through the shaped veth.
    assert!(rate < 1e6 * 1.05, "above the tbf limit: {rate}");
    assert!(
        rate > 1e6 * 0.5,
        "the shaped veth carried too little: {rate}"
    );
    star.hub().unshape(&veth.hub_dev);
}

#[test]
fn relay_in_the_hub_between_a_spoke_and_a_server() {
    if !netns::available_or_skip("relay_in_the_hub_between_a_spoke_and_a_server") {
        return;
    }
    let star = Star::new("relayhub", &["cl"]).unwrap();
    let (client_ns, veth) = star.spoke("cl").unwrap();
    let hub_rt = star.hub().runtime(1).unwrap();
    let hub_ip = veth.hub_ip;
    let (relay_addr, server_addr, relay) = hub_rt.handle().block_on_in_thread(async move {
        // The "SFU": an echo server on the hub's loopback, reachable only through the relay.
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server_addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = server.recv_from(&mut buf).await {
                let _ = server.send_to(&buf[..n], from).await;
            }
        });
        let mut cfg = RelayConfig::new(SocketAddr::new(IpAddr::V4(hub_ip), 0), server_addr);
        cfg.down = LinkParams::clean().delay(Duration::from_millis(30));
        let relay = Relay::start(cfg).await.unwrap();
        (relay.local_addr(), server_addr, relay)
    });
    assert!(server_addr.ip().is_loopback());
    let rtt = client_ns
        .run(move || {
            let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let t = Instant::now();
            s.send_to(b"ping", relay_addr).unwrap();
            let mut buf = [0u8; 16];
            let (n, from) = s.recv_from(&mut buf).expect("echo through the relay");
            assert_eq!(&buf[..n], b"ping");
            assert_eq!(from, relay_addr);
            t.elapsed()
        })
        .unwrap();
    assert!(rtt >= Duration::from_millis(30), "{rtt:?}");
    let stats = hub_rt.handle().block_on_in_thread(async move {
        let s = relay.stats().await.unwrap();
        relay.shutdown().await;
        s
    });
    assert_eq!((stats.up.delivered, stats.down.delivered), (1, 1));
}
