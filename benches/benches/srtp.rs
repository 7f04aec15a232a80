//! SRTP per packet with the webrtc-rs `rtc-srtp` crate: AEAD AES-128-GCM (what shopcall
//! prefers) against AES-128-CM with HMAC-SHA1-80 (what browsers default to unless the server
//! restricts the list), on a 1,200-byte payload.
//!
//! * `srtp/<profile>/encrypt`, `srtp/<profile>/decrypt`: one direction each.
//! * `srtp/<profile>/hop`: decrypt with the publisher's keys, then encrypt with the
//!   subscriber's: the crypto an SFU does per forwarded packet.
//!
//! Run: `cargo bench -p shopcall-benches --bench srtp`. Results: docs/benchmarks.md.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use rtc_shared::marshal::Marshal;
use rtc_srtp::context::Context;
use rtc_srtp::protection_profile::ProtectionProfile;

fn context(profile: ProtectionProfile, seed: u8) -> Context {
    let provider = rtc::crypto::default_provider().expect("a built-in crypto provider");
    let key: Vec<u8> = (0..profile.key_len() as u8).map(|i| i ^ seed).collect();
    let salt: Vec<u8> = (0..profile.salt_len() as u8)
        .map(|i| i.wrapping_mul(7) ^ seed)
        .collect();
    Context::new(&key, &salt, profile, None, None, provider.crypto()).expect("SRTP context")
}

fn plain(seq: u16) -> Bytes {
    rtp::Packet {
        header: rtp::header::Header {
            version: 2,
            payload_type: 96,
            sequence_number: seq,
            timestamp: u32::from(seq) * 3000,
            ssrc: 0x1234_5678,
            ..Default::default()
        },
        payload: Bytes::from(vec![0x5au8; 1200]),
    }
    .marshal()
    .expect("marshal")
    .freeze()
}

fn srtp(c: &mut Criterion) {
    for (name, profile) in [
        ("gcm", ProtectionProfile::AeadAes128Gcm),
        ("cm-sha1-80", ProtectionProfile::Aes128CmHmacSha1_80),
    ] {
        let packet = plain(1);
        let mut tx = context(profile, 1);
        c.bench_function(&format!("srtp/{name}/encrypt"), |b| {
            b.iter(|| black_box(tx.encrypt_rtp(black_box(&packet)).expect("encrypt")))
        });
        // No replay window: decrypting the same packet again is allowed.
        let sealed = context(profile, 1).encrypt_rtp(&packet).expect("encrypt");
        let mut rx = context(profile, 1);
        c.bench_function(&format!("srtp/{name}/decrypt"), |b| {
            b.iter(|| black_box(rx.decrypt_rtp(black_box(&sealed)).expect("decrypt")))
        });
        let mut rx = context(profile, 1);
        let mut tx = context(profile, 2);
        c.bench_function(&format!("srtp/{name}/hop"), |b| {
            b.iter(|| {
                let clear = rx.decrypt_rtp(black_box(&sealed)).expect("decrypt");
                black_box(tx.encrypt_rtp(&clear).expect("encrypt"))
            })
        });
    }
}

criterion_group!(benches, srtp);
criterion_main!(benches);
