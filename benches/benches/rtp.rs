//! RTP per packet, without SRTP: parse, rewrite, marshal, and the policy gate.
//!
//! * `rtp/parse`: `rtp::Packet::unmarshal` of a 1,200-byte VP8 packet with two header
//!   extensions (what the stack does after SRTP decrypt).
//! * `rtp/rewrite+marshal`: the Munger's SSRC/sequence/timestamp rewrite of the parsed
//!   header, then `marshal_to` into a reused buffer (what the send side does before SRTP).
//! * `rtp/rewrite-in-place`: the same rewrite done on the raw bytes (12 header bytes): the
//!   floor a fast path that never re-parses could reach.
//! * `policy/gate`: the per-packet policy check (`Grants::may_forward_source` on the source
//!   accepted at Join, plus the kind check), over a mix of roles and sources.
//!
//! Run: `cargo bench -p shopcall-benches --bench rtp`. Results: docs/benchmarks.md.

use std::hint::black_box;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, criterion_group, criterion_main};
use rtc_shared::marshal::{Marshal, Unmarshal};
use sfu::media::Munger;
use sfu::policy::{BuiltinProfile, Grants, MediaKind, Role, Source};
use shopcall_benches::{CountingAllocator, allocations};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

fn sample_packet() -> Bytes {
    let mut header = rtp::header::Header {
        version: 2,
        marker: true,
        payload_type: 96,
        sequence_number: 4711,
        timestamp: 90_000,
        ssrc: 0x1234_5678,
        ..Default::default()
    };
    // Two one-byte extensions, as a browser sends them (mid and abs-send-time).
    header.set_extension(1, Bytes::from_static(b"1")).unwrap();
    header
        .set_extension(3, Bytes::from_static(&[0x12, 0x34, 0x56]))
        .unwrap();
    let packet = rtp::Packet {
        header,
        payload: Bytes::from(vec![0x10u8; 1200]),
    };
    packet.marshal().unwrap().freeze()
}

fn rtp_benches(c: &mut Criterion) {
    let raw = sample_packet();
    c.bench_function("rtp/parse", |b| {
        b.iter(|| {
            let mut buf = raw.clone();
            black_box(rtp::Packet::unmarshal(&mut buf).unwrap())
        })
    });

    let parsed = rtp::Packet::unmarshal(&mut raw.clone()).unwrap();
    let mut munger = Munger::new(0xabcd, 96, 90_000, 100, 1000);
    let now = Instant::now();
    let mut out = BytesMut::zeroed(1500);
    let mut seq = 0u16;
    c.bench_function("rtp/rewrite+marshal", |b| {
        b.iter(|| {
            let mut p = parsed.clone();
            seq = seq.wrapping_add(1);
            p.header.sequence_number = seq;
            p.header.timestamp = u32::from(seq) * 3000;
            // Upstream extensions mean nothing on the other leg.
            p.header.extension = false;
            p.header.extensions.clear();
            munger.rewrite(&mut p.header, now);
            let n = p.marshal_to(&mut out).unwrap();
            black_box(n)
        })
    });

    let mut bytes = raw.to_vec();
    let (ssrc_out, seq_off, ts_off) = (0xabcdu32, 100u16, 1000u32);
    c.bench_function("rtp/rewrite-in-place", |b| {
        b.iter(|| {
            let p = black_box(&mut bytes[..]);
            let seq = u16::from_be_bytes([p[2], p[3]]).wrapping_add(seq_off);
            let ts = u32::from_be_bytes([p[4], p[5], p[6], p[7]]).wrapping_add(ts_off);
            p[2..4].copy_from_slice(&seq.to_be_bytes());
            p[4..8].copy_from_slice(&ts.to_be_bytes());
            p[8..12].copy_from_slice(&ssrc_out.to_be_bytes());
        })
    });

    let n = 100_000;
    let before = allocations();
    for _ in 0..n {
        black_box(rtp::Packet::unmarshal(&mut raw.clone()).unwrap());
    }
    println!(
        "rtp/parse: {:.1} allocations per packet",
        (allocations() - before) as f64 / n as f64
    );
}

fn policy_gate(c: &mut Criterion) {
    let now = Instant::now();
    let profile = BuiltinProfile::DEFAULT.profile();
    let grants = Grants::new(&profile, now);
    let traffic = [
        (Role::Merchant, Source::Microphone, MediaKind::Audio),
        (Role::Merchant, Source::CameraRear, MediaKind::Video),
        (Role::Customer, Source::Microphone, MediaKind::Audio),
        (Role::Customer, Source::CameraRear, MediaKind::Video),
    ];
    let gate = |i: usize| {
        let (role, source, kind) = black_box(traffic[i & 3]);
        source.kind() == kind && grants.may_forward_source(role, source)
    };
    let n = 100_000;
    let before = allocations();
    for i in 0..n {
        black_box(gate(i));
    }
    let allocs = allocations() - before;
    println!("policy/gate: {allocs} allocations in {n} packets");
    assert_eq!(allocs, 0, "the policy gate must not allocate");
    let mut i = 0usize;
    c.bench_function("policy/gate", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(gate(i))
        })
    });
}

criterion_group!(benches, rtp_benches, policy_gate);
criterion_main!(benches);
