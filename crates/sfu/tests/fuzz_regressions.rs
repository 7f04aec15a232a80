//! Fuzz regressions: the crashes the fuzz targets in `fuzz/` found, each fed from its saved
//! reproducer in `tests/fuzz_regressions/<target>-<n>.bin` through the entry point the target
//! uses (`sfu::fuzzing::<target>`). docs/reliability.md ("Fuzzing") describes each finding.
//!
//! Needs the `fuzzing` feature:
//! `cargo test -p shopcall-sfu --features fuzzing --test fuzz_regressions`.
#![cfg(feature = "fuzzing")]

use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions")
}

fn reproducer(name: &str) -> Vec<u8> {
    let path = dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The entry point of a target, by the prefix of a reproducer's file name.
fn entry_point(file: &str) -> fn(&[u8]) {
    let target = file.rsplit_once('-').map_or(file, |(t, _)| t);
    match target {
        "demux" => sfu::fuzzing::demux,
        "rtp_parse" => sfu::fuzzing::rtp_parse,
        "sdp_offer" => sfu::fuzzing::sdp_offer,
        "rtp_ingress" => sfu::fuzzing::rtp_ingress,
        other => panic!("{file}: no fuzz target {other:?} in sfu::fuzzing"),
    }
}

/// Every saved reproducer goes through its target without a panic.
#[test]
fn every_reproducer_passes_its_target() {
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .expect("tests/fuzz_regressions exists")
        .map(|e| {
            e.expect("a directory entry")
                .file_name()
                .into_string()
                .expect("UTF-8 name")
        })
        .filter(|n| n.ends_with(".bin"))
        .collect();
    names.sort();
    assert!(!names.is_empty());
    for name in names {
        let data = reproducer(&name);
        entry_point(name.trim_end_matches(".bin"))(&data);
    }
}

/// F1, rtp_parse-1: a REMB whose exponent makes the bitrate 1e21 b/s or more parses, but
/// rtc-rtcp 0.21.1's `Display` for it indexes past its unit table
/// (`receiver_estimated_maximum_bitrate/mod.rs:53`, "index out of bounds: the len is 7 but
/// the index is 7"). shopcall never formats RTCP with `{}` (rtc logs it with `{:?}`), so the
/// entry point skips that call; this test shows the upstream bug and passes once a fixed
/// rtc-rtcp is pinned.
#[test]
#[ignore = "upstream rtc-rtcp 0.21.1 bug (finding F1): unreachable from shopcall"]
fn rtp_parse_1_remb_display() {
    let data = reproducer("rtp_parse-1.bin");
    sfu::fuzzing::rtp_parse(&data); // what shopcall reaches: fine
    // The REMB inside the reproducer: after the 7-byte munger setup, a 2-byte length.
    let len = usize::from(u16::from_be_bytes([data[7], data[8]]));
    let remb = &data[9..9 + len];
    let packets = rtcp::packet::unmarshal(&mut &remb[..]).expect("the REMB parses");
    for p in &packets {
        let _ = p.to_string(); // panics in rtc-rtcp 0.21.1
    }
}

/// F2: `rtp::header::Header::marshal` with a one-byte (0xBEDE) extension whose payload is
/// empty underflows `len - 1` (rtc-rtp 0.21.1 `header.rs:375`: a panic with overflow checks,
/// a wrong length nibble without). The SFU never marshals such a header (the munger strips
/// upstream extensions; the stack only adds non-empty ones), so only our fuzz client hit it.
#[test]
#[ignore = "upstream rtc-rtp 0.21.1 bug (finding F2): unreachable from shopcall"]
fn rtp_header_marshal_empty_one_byte_extension() {
    use rtc_shared::marshal::Marshal;
    let header = rtp::header::Header {
        version: 2,
        extension: true,
        extension_profile: 0xBEDE,
        extensions: vec![rtp::header::Extension {
            id: 7,
            payload: bytes::Bytes::new(),
        }],
        ..Default::default()
    };
    assert!(
        header.marshal().is_err(),
        "an empty one-byte extension cannot be encoded"
    );
}

/// F3, rtp_ingress-1: rtc-rtp 0.21.1 `Header::unmarshal` bounds a one-byte (and two-byte)
/// extension element by the end of the packet, not by the end of the extension block, so an
/// element that starts in the block's last bytes swallows payload bytes, and the parsed
/// header's `marshal_size()` exceeds the bytes it came from. rtc-srtp 0.21.1's AES-GCM
/// `encrypt_rtp` splits the packet at that size (`cipher_aead_aes_gcm.rs:50`) and panics;
/// its decrypt path checks the length first, so the SFU only drops such a packet (SRTP
/// authentication fails). Our fuzz client hit it by sending a one-byte extension with id 0
/// (written as 0x00, read back as padding); rtp_ingress-1.bin is that input, which the
/// entry point now steers around. Passes once rtc-rtp checks against the block's end.
#[test]
#[ignore = "upstream rtc-rtp 0.21.1 bug (finding F3): the SFU drops such packets"]
fn rtp_header_extension_element_past_its_block() {
    use rtc_shared::marshal::{MarshalSize, Unmarshal};
    let mut packet = vec![0x90, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2]; // V=2, X=1, PT 111
    packet.extend_from_slice(&[0xBE, 0xDE, 0, 1]); // one-byte form, one 32-bit word
    packet.extend_from_slice(&[0x00, 0x00, 0x00, 0x6D]); // padding x3, then id 6, 14 bytes
    packet.extend_from_slice(&[0xAB; 14]); // the payload
    let mut buf = &packet[..];
    // Refusing the packet is a fix too; parsing it must stop at the block's end.
    if let Ok(header) = rtp::header::Header::unmarshal(&mut buf) {
        let consumed = packet.len() - buf.len();
        assert_eq!(consumed, 20, "the header ends with its extension block");
        assert_eq!(header.marshal_size(), consumed);
    }
}
