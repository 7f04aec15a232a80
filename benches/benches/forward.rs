//! Forwarding cost per packet, in four parts:
//!
//! * `ours/gate+munge`: shopcall's own per-packet work on a DownTrack (keyframe check,
//!   forwarder decision, SSRC/sequence/timestamp rewrite). Must allocate nothing.
//! * `ours/demux`: routing a datagram on the shared socket to its participant.
//! * `engine/hop`: one video packet through the whole engine: SRTP decrypt, parse,
//!   interceptors (NACK, reports, TWCC), our gate and munger, marshal, SRTP encrypt —
//!   everything between the socket read and the socket write. Most of it is the webrtc-rs
//!   stack's; the allocations printed are the stack's.
//! * `udp/send`: one `send_to` syscall of a 1,100-byte datagram on loopback.
//!
//! Run: `cargo bench -p shopcall-benches --bench forward`. Results: docs/benchmarks.md.

use std::hint::black_box;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use sfu::demux::Demux;
use sfu::media::keyframe::is_keyframe_start;
use sfu::media::{Forwarder, Munger, Verdict};
use sfu::testing::{ClientOptions, SimNet};
use sfu::{CallOptions, ParticipantId, Role, SfuConfig, VideoCodec};
use shopcall_benches::{CountingAllocator, allocations};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

fn ours(c: &mut Criterion) {
    let mut packet = rtp::Packet {
        header: rtp::header::Header {
            version: 2,
            payload_type: 120,
            sequence_number: 1,
            timestamp: 3000,
            ssrc: 0xabcd,
            ..Default::default()
        },
        payload: Bytes::from(vec![0x10u8; 1100]),
    };
    let mut forwarder = Forwarder::new(true);
    let mut munger = Munger::new(77, 96, 90_000, 100, 1000);
    let now = Instant::now();
    let mut step = |packet: &mut rtp::Packet| {
        packet.header.ssrc = 0xabcd;
        packet.header.sequence_number = packet.header.sequence_number.wrapping_add(1);
        packet.header.timestamp = packet.header.timestamp.wrapping_add(3000);
        let kf = is_keyframe_start(VideoCodec::Vp8, &packet.payload);
        if forwarder.decide(packet.header.ssrc, true, true, kf) == Verdict::Forward {
            if forwarder.take_restart() {
                munger.resync();
            }
            munger.rewrite(&mut packet.header, now);
        }
    };
    // Allocation check outside criterion's own bookkeeping.
    let n = 100_000;
    let before = allocations();
    for _ in 0..n {
        step(&mut packet);
    }
    let allocs = allocations() - before;
    println!("ours/gate+munge: {allocs} allocations in {n} packets");
    assert_eq!(
        allocs, 0,
        "the forwarding gate and munger must not allocate"
    );
    c.bench_function("ours/gate+munge", |b| {
        b.iter(|| step(black_box(&mut packet)))
    });

    let mut demux = Demux::default();
    let from: SocketAddr = "10.1.2.3:5000".parse().unwrap();
    let p = ParticipantId::from_raw(9);
    for i in 0..1000u64 {
        let addr: SocketAddr = format!("10.2.{}.{}:4000", i / 250, i % 250)
            .parse()
            .unwrap();
        demux.bind_addr(addr, ParticipantId::from_raw(i + 100));
    }
    demux.bind_addr(from, p);
    let datagram = vec![0x80u8; 1100];
    let before = allocations();
    for _ in 0..n {
        black_box(demux.route(from, &datagram)).ok();
    }
    println!(
        "ours/demux: {} allocations in {n} datagrams",
        allocations() - before
    );
    c.bench_function("ours/demux", |b| {
        b.iter(|| black_box(demux.route(black_box(from), black_box(&datagram))).ok())
    });
}

fn engine_hop(c: &mut Criterion) {
    let mut net = SimNet::new(SfuConfig::default());
    let call = net
        .engine
        .create_call(CallOptions::default(), net.now)
        .unwrap()
        .id;
    let a = net.add_client(ClientOptions::default());
    let b = net.add_client(ClientOptions::default());
    net.join(call, Role::Merchant, a).unwrap();
    net.join(call, Role::Customer, b).unwrap();
    assert!(net.connect_all(Duration::from_secs(10)));
    // Warm up: the first keyframe opens the DownTrack.
    let warm = net.capture_video(a, 30, 4);
    net.feed(a, warm);

    let datagrams = net.capture_video(a, 2500, 4);
    let n = datagrams.len() as u64;
    let before = allocations();
    let t = Instant::now();
    let sent = net.feed(a, datagrams);
    let elapsed = t.elapsed();
    let allocs = allocations() - before;
    assert!(sent as u64 >= n, "every packet forwarded ({sent} of {n})");
    println!(
        "engine/hop: {n} packets, {:.0} ns/packet, {:.1} allocations/packet (webrtc-rs stack)",
        elapsed.as_nanos() as f64 / n as f64,
        allocs as f64 / n as f64
    );

    let mut group = c.benchmark_group("engine");
    group.sample_size(20);
    group.bench_function("hop", |bench| {
        bench.iter_custom(|iters| {
            let frames = (iters as usize).div_ceil(4);
            let datagrams = net.capture_video(a, frames, 4);
            let count = datagrams.len() as u32;
            let t = Instant::now();
            black_box(net.feed(a, datagrams));
            // Per packet: scale the batch time to the requested iterations.
            t.elapsed() * (iters as u32) / count.max(1)
        })
    });
    group.finish();
}

fn udp_send(c: &mut Criterion) {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = rx.local_addr().unwrap();
    rx.set_nonblocking(true).unwrap();
    let buf = vec![0u8; 1100];
    let mut sink = vec![0u8; 2048];
    c.bench_function("udp/send", |b| {
        b.iter(|| {
            tx.send_to(black_box(&buf), to).unwrap();
            // Keep the receive buffer from filling up.
            while rx.recv(&mut sink).is_ok() {}
        })
    });
}

criterion_group!(benches, ours, engine_hop, udp_send);
criterion_main!(benches);
