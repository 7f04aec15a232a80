//! End to end: a consented call, carrying real VP8 and Opus (encoded here by ffmpeg with
//! libvpx and libopus, packetized per RFC 7741 / RFC 7587, sent through SRTP by a simulated
//! WebRTC client), is recorded by the writer thread; ffprobe must read an Opus and a VP8
//! stream of the right duration, and ffmpeg must decode video frames from the file.
//!
//! Needs `ffmpeg` and `ffprobe` (Debian: `apt-get install -y ffmpeg`). Without them the test
//! is skipped with a message, except under `CI=true`, where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use sfu::policy::ProfileOverride;
use sfu::recording::RecorderConfig;
use sfu::testing::{ClientOptions, SimNet};
use sfu::{CallOptions, Role, SfuConfig};

const SECONDS: u64 = 3;

fn tools_present() -> bool {
    let ok = |tool: &str| {
        Command::new(tool)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let present = ok("ffmpeg") && ok("ffprobe");
    if !present {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "ffmpeg/ffprobe are required in CI (apt-get install -y ffmpeg)"
        );
        eprintln!("skipping: ffmpeg/ffprobe not installed (apt-get install -y ffmpeg)");
    }
    present
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// VP8 frames from an IVF file (32-byte header, then 12-byte frame headers).
fn ivf_frames(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap();
    assert_eq!(&data[..4], b"DKIF");
    let mut at = usize::from(u16::from_le_bytes([data[6], data[7]]));
    let mut frames = Vec::new();
    while at + 12 <= data.len() {
        let size = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        at += 12;
        frames.push(data[at..at + size].to_vec());
        at += size;
    }
    frames
}

/// Opus packets from an Ogg file (RFC 7845), without the two header packets.
fn ogg_opus_packets(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap();
    let mut packets = Vec::new();
    let mut current = Vec::new();
    let mut at = 0;
    while at + 27 <= data.len() {
        assert_eq!(&data[at..at + 4], b"OggS");
        let segments = usize::from(data[at + 26]);
        let table = &data[at + 27..at + 27 + segments];
        let mut body = at + 27 + segments;
        for lace in table {
            let len = usize::from(*lace);
            current.extend_from_slice(&data[body..body + len]);
            body += len;
            if len < 255 {
                packets.push(std::mem::take(&mut current));
            }
        }
        at = body;
    }
    packets.split_off(2)
}

/// RFC 7741 packetization: descriptor S=1 on the first packet, at most 1,100 bytes each.
fn vp8_packets(frame: &[u8]) -> Vec<Bytes> {
    frame
        .chunks(1100)
        .enumerate()
        .map(|(i, chunk)| {
            let mut p = vec![if i == 0 { 0x10 } else { 0x00 }];
            p.extend_from_slice(chunk);
            Bytes::from(p)
        })
        .collect()
}

fn work_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shopcall-rec-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_recorded_call_is_a_webm_that_ffmpeg_reads_and_decodes() {
    if !tools_present() {
        return;
    }
    let dir = work_dir();
    let (ivf, ogg) = (dir.join("v.ivf"), dir.join("a.ogg"));
    run(Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size=320x240:rate=30:duration={SECONDS}"))
        .args([
            "-c:v",
            "libvpx",
            "-g",
            "60",
            "-b:v",
            "300k",
            "-deadline",
            "realtime",
            "-f",
            "ivf",
        ])
        .arg(&ivf));
    run(Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=440:sample_rate=48000:duration={SECONDS}"
        ))
        .args([
            "-c:a",
            "libopus",
            "-b:a",
            "32k",
            "-frame_duration",
            "20",
            "-f",
            "ogg",
        ])
        .arg(&ogg));
    let frames = ivf_frames(&ivf);
    let opus = ogg_opus_packets(&ogg);
    assert_eq!(frames.len(), 30 * SECONDS as usize);
    assert!(
        opus.len() >= 50 * SECONDS as usize - 1,
        "{} opus packets",
        opus.len()
    );

    // The call: recording allowed, both consent; the merchant's camera is on at join.
    let mut net = SimNet::new(SfuConfig::default());
    let call = net.create_call_with(CallOptions {
        profile_override: ProfileOverride {
            recording_allowed: Some(true),
            ..ProfileOverride::default()
        },
        ..CallOptions::default()
    });
    let merchant = net.add_client(ClientOptions::default());
    let customer = net.add_client(ClientOptions::default());
    net.join(call, Role::Merchant, merchant).unwrap();
    net.join(call, Role::Customer, customer).unwrap();
    assert!(net.connect_all(Duration::from_secs(10)));
    for role in Role::ALL {
        net.engine.give_consent(call, role, true, net.now).unwrap();
    }
    net.attach_recorder(RecorderConfig::default());
    let start = net.start_recording(call, &dir).unwrap();
    let file = start.file.clone().unwrap();

    // 3 s of media: an Opus packet from each side every 20 ms, a VP8 frame from the
    // merchant every 33.3 ms.
    let mut next_frame = 0;
    for tick in 0..(SECONDS * 50) as usize {
        for who in [merchant, customer] {
            if let Some(p) = opus.get(tick) {
                net.send_audio_payload(who, Bytes::from(p.clone()), 960);
            }
        }
        while next_frame < frames.len() && next_frame * 1000 / 30 <= tick * 20 {
            let packets = vp8_packets(&frames[next_frame]);
            let last = packets.len() - 1;
            for (i, p) in packets.into_iter().enumerate() {
                net.send_video_payload(merchant, p, i == last, 3000);
            }
            next_frame += 1;
        }
        net.run_for(Duration::from_millis(20));
    }
    net.engine.stop_recording(call, net.now).unwrap();
    net.shutdown_recorder();
    let summary = net.finished_recordings()[0].clone();
    let recorded = summary.duration.as_secs_f64();
    assert!((recorded - SECONDS as f64).abs() < 0.1, "{recorded}");

    // ffprobe: the streams and the duration.
    let streams = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=index,codec_name,codec_type",
            "-show_entries",
            "format=duration,format_name",
            "-of",
            "default=nw=1",
        ])
        .arg(&file));
    assert!(streams.contains("codec_name=opus"), "{streams}");
    assert!(streams.contains("codec_name=vp8"), "{streams}");
    assert!(streams.contains("format_name=matroska,webm"), "{streams}");
    let duration: f64 = streams
        .lines()
        .find_map(|l| l.strip_prefix("duration="))
        .and_then(|d| d.parse().ok())
        .expect("a format duration");
    assert!(
        (duration - SECONDS as f64).abs() <= 0.5,
        "format duration {duration}"
    );

    // Each stream with media spans the call (from its packets' timestamps).
    let packets = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=stream_index,pts_time",
            "-of",
            "csv=p=0",
        ])
        .arg(&file));
    let mut spans: std::collections::BTreeMap<u32, (f64, f64)> = Default::default();
    for line in packets.lines() {
        let mut parts = line.split(',');
        let (Some(i), Some(t)) = (parts.next(), parts.next()) else {
            continue;
        };
        let (Ok(i), Ok(t)) = (i.parse::<u32>(), t.parse::<f64>()) else {
            continue;
        };
        let e = spans.entry(i).or_insert((t, t));
        e.0 = e.0.min(t);
        e.1 = e.1.max(t);
    }
    // Tracks: 0 merchant opus, 1 merchant vp8, 2 customer opus, 3 customer vp8 (camera off).
    for stream in [0, 1, 2] {
        let (first, last) = spans[&stream];
        let span = last - first;
        assert!(
            (span - SECONDS as f64).abs() <= 0.5,
            "stream {stream} spans {span} s"
        );
    }
    assert!(
        !spans.contains_key(&3),
        "the customer's camera was off: no customer video"
    );

    // ffmpeg decodes the video (real VP8 frames, not just readable packets) and the audio.
    let decoded = |stream: &str| -> u64 {
        run(Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-count_frames",
                "-select_streams",
                stream,
                "-show_entries",
                "stream=nb_read_frames",
                "-of",
                "default=nw=1:nk=1",
            ])
            .arg(&file))
        .trim()
        .parse()
        .expect("a frame count")
    };
    let video_frames = decoded("v:0");
    assert!(video_frames >= 85, "{video_frames} video frames decoded");
    let audio_frames = decoded("a:0");
    assert!(audio_frames >= 140, "{audio_frames} audio frames decoded");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&file)
        .args(["-map", "0:v:0", "-map", "0:a:0", "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "decode errors: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
}
