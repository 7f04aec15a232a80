//! Recording on the simulated network (fake clock): consent, the policy gate, the file, and
//! what happens when the directory or the disk fails.

use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sfu::policy::{Lens, ProfileOverride};
use sfu::recording::{
    RecorderConfig, RecordingDirError, RecordingOutput, RecordingStopReason, TrackSource, WriteSeek,
};
use sfu::testing::{ClientOptions, SimNet};
use sfu::{CallOptions, CallState, Error, Event, Role, SfuConfig};

struct Call {
    net: SimNet,
    call: sfu::CallId,
    merchant: usize,
    customer: usize,
}

fn recordable() -> CallOptions {
    CallOptions {
        profile_override: ProfileOverride {
            recording_allowed: Some(true),
            ..ProfileOverride::default()
        },
        ..CallOptions::default()
    }
}

fn connected(options: CallOptions) -> Call {
    let mut net = SimNet::new(SfuConfig::default());
    let call = net.create_call_with(options);
    let merchant = net.add_client(ClientOptions::default());
    let customer = net.add_client(ClientOptions::default());
    net.join(call, Role::Merchant, merchant).unwrap();
    net.join(call, Role::Customer, customer).unwrap();
    assert!(net.connect_all(Duration::from_secs(10)));
    Call {
        net,
        call,
        merchant,
        customer,
    }
}

fn consent_both(c: &mut Call) {
    for role in Role::ALL {
        c.net
            .engine
            .give_consent(c.call, role, true, c.net.now)
            .unwrap();
    }
}

/// `ms` of media from both sides: audio every 20 ms, video at 30 fps (keyframe first).
fn media(net: &mut SimNet, who: &[usize], ms: u64) {
    for i in 0..ms / 20 {
        for w in who {
            net.send_audio(*w);
            if i % 5 < 3 {
                net.send_video_frame(*w, i == 0, 2);
            }
        }
        net.run_for(Duration::from_millis(20));
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shopcall-rec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn packets_of(outputs: &[RecordingOutput], role: Role, source: TrackSource) -> usize {
    outputs
        .iter()
        .filter(|o| matches!(o, RecordingOutput::Packet(p) if p.track.role == role && p.track.source == source))
        .count()
}

#[test]
fn a_consented_call_records_one_file_with_both_parties() {
    let mut c = connected(recordable());
    consent_both(&mut c);
    c.net
        .engine
        .set_camera(
            c.call,
            Role::Customer,
            Role::Customer,
            Some(Lens::Rear),
            c.net.now,
        )
        .unwrap();
    let dir = temp_dir("both");
    c.net.attach_recorder(RecorderConfig::default());
    let start = c.net.start_recording(c.call, &dir).unwrap();
    let events = c.net.take_events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::RecordingStarted { call, .. } if *call == c.call))
    );
    let tracks: Vec<_> = start
        .plan
        .tracks
        .iter()
        .map(|t| (t.track.role, t.track.source))
        .collect();
    assert_eq!(
        tracks,
        [
            (Role::Merchant, TrackSource::Microphone),
            (Role::Merchant, TrackSource::Camera),
            (Role::Customer, TrackSource::Microphone),
            (Role::Customer, TrackSource::Camera),
        ],
        "cameras and microphones; no screen unless the profile says so"
    );
    let file = start.file.clone().unwrap();
    assert!(file.starts_with(&dir));
    assert!(
        file.to_string_lossy().ends_with(".webm"),
        "{}",
        file.display()
    );

    media(&mut c.net, &[c.merchant, c.customer], 2000);
    c.net.sync_recorder();
    // Written incrementally: clusters are on disk before the recording stops.
    let partial = std::fs::metadata(&file).unwrap().len();
    assert!(partial > 10_000, "{partial} bytes on disk mid-call");

    c.net.engine.stop_recording(c.call, c.net.now).unwrap();
    c.net.shutdown_recorder();
    let events = c.net.take_events();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::RecordingStopped {
            reason: RecordingStopReason::Requested,
            ..
        }
    )));
    let summary = &c.net.finished_recordings()[0];
    assert_eq!(summary.path.as_deref(), Some(file.as_path()));
    for t in &summary.tracks {
        assert!(t.frames > 0, "{} has frames: {t:?}", t.track);
    }
    let audio = summary
        .tracks
        .iter()
        .find(|t| t.track.source == TrackSource::Microphone)
        .unwrap();
    // 2 s of 20 ms packets, on the RTP clock.
    assert!((95..=101).contains(&audio.frames), "{audio:?}");
    let span = audio.last_ms.unwrap() - audio.first_ms.unwrap();
    assert!((1900..=2000).contains(&span), "audio spans {span} ms");
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(&bytes[..4], &[0x1A, 0x45, 0xDF, 0xA3], "an EBML file");
    assert_eq!(bytes.len() as u64, summary.bytes);

    // The call record lists it.
    c.net
        .engine
        .end_call(c.call, sfu::EndReason::Requested, c.net.now)
        .unwrap();
    let record = c
        .net
        .take_events()
        .into_iter()
        .find_map(|e| match e {
            Event::CallEnded { record, .. } => Some(record),
            _ => None,
        })
        .unwrap();
    assert_eq!(record.recordings.len(), 1);
    let r = &record.recordings[0];
    assert_eq!(r.file.as_deref(), Some(file.as_path()));
    assert_eq!(r.stop_reason, RecordingStopReason::Requested);
    assert_eq!(r.tracks.len(), 4);
    assert!(
        r.duration >= Duration::from_millis(1990),
        "{:?}",
        r.duration
    );
    assert!(r.tracks.iter().all(|t| t.packets > 0));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn without_the_customers_consent_recording_is_refused_naming_the_customer() {
    let mut c = connected(recordable());
    let now = c.net.now;
    c.net
        .engine
        .give_consent(c.call, Role::Merchant, true, now)
        .unwrap();
    let err = c.net.engine.start_recording(c.call, now).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ConsentMissing {
                role: Role::Customer,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("the customer has not consented"),
        "{err}"
    );
    assert!(c.net.take_recorded().is_empty(), "nothing recorded");

    // A profile that does not allow recording refuses whatever the consent.
    let mut d = connected(CallOptions::default());
    consent_both(&mut d);
    let err = d.net.engine.start_recording(d.call, d.net.now).unwrap_err();
    assert!(matches!(err, Error::RecordingNotAllowed(_)), "{err}");

    // Consent events reach the signaling tier.
    c.net
        .engine
        .give_consent(c.call, Role::Customer, true, now)
        .unwrap();
    let events = c.net.take_events();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::RecordingConsentChanged {
            role: Role::Customer,
            given: true,
            ..
        }
    )));
    c.net.engine.start_recording(c.call, now).unwrap();
    assert!(matches!(
        c.net.engine.start_recording(c.call, now),
        Err(Error::AlreadyRecording(_))
    ));
}

#[test]
fn withdrawn_consent_stops_that_partys_media_at_the_next_packet() {
    let mut c = connected(recordable());
    consent_both(&mut c);
    c.net.engine.start_recording(c.call, c.net.now).unwrap();
    media(&mut c.net, &[c.merchant, c.customer], 400);
    let before = c.net.take_recorded();
    assert!(packets_of(&before, Role::Customer, TrackSource::Microphone) > 0);

    c.net
        .engine
        .give_consent(c.call, Role::Customer, false, c.net.now)
        .unwrap();
    media(&mut c.net, &[c.merchant, c.customer], 400);
    let after = c.net.take_recorded();
    assert_eq!(
        packets_of(&after, Role::Customer, TrackSource::Microphone),
        0
    );
    assert!(
        packets_of(&after, Role::Merchant, TrackSource::Microphone) > 0,
        "the merchant is still recorded"
    );

    // Nobody left: the recording stops.
    c.net
        .engine
        .give_consent(c.call, Role::Merchant, false, c.net.now)
        .unwrap();
    let events = c.net.take_events();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::RecordingStopped {
            reason: RecordingStopReason::ConsentWithdrawn,
            ..
        }
    )));
}

#[test]
fn the_customers_camera_off_means_no_customer_video_in_the_recording() {
    let mut c = connected(recordable());
    consent_both(&mut c);
    let dir = temp_dir("camera");
    c.net.attach_recorder(RecorderConfig::default());
    let start = c.net.start_recording(c.call, &dir).unwrap();
    // A hostile customer sends video all along; its camera is off for the first second.
    media(&mut c.net, &[c.merchant, c.customer], 1000);
    let on_at = c.net.now.duration_since(start.at).as_millis() as i64;
    c.net
        .engine
        .set_camera(
            c.call,
            Role::Customer,
            Role::Customer,
            Some(Lens::Rear),
            c.net.now,
        )
        .unwrap();
    media(&mut c.net, &[c.merchant, c.customer], 1000);
    let off_at = c.net.now.duration_since(start.at).as_millis() as i64;
    c.net
        .engine
        .set_camera(c.call, Role::Customer, Role::Customer, None, c.net.now)
        .unwrap();
    media(&mut c.net, &[c.merchant, c.customer], 1000);
    c.net.engine.stop_recording(c.call, c.net.now).unwrap();
    c.net.shutdown_recorder();

    let summary = &c.net.finished_recordings()[0];
    let video = |role| {
        summary
            .tracks
            .iter()
            .find(|t| t.track.role == role && t.track.source == TrackSource::Camera)
            .copied()
            .unwrap()
    };
    let customer = video(Role::Customer);
    assert!(customer.frames > 0, "video while the camera was on");
    assert!(
        customer.first_ms.unwrap() >= on_at,
        "{customer:?} before {on_at}"
    );
    assert!(
        customer.last_ms.unwrap() <= off_at,
        "{customer:?} after {off_at}"
    );
    // The merchant's camera ran throughout.
    let merchant = video(Role::Merchant);
    assert!(
        merchant.first_ms.unwrap() < 100 && merchant.last_ms.unwrap() > 2800,
        "{merchant:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_screen_is_recorded_only_if_the_profile_says_so() {
    let mut c = connected(recordable());
    consent_both(&mut c);
    let plan = c.net.engine.recording_plan(c.call).unwrap();
    assert!(
        plan.tracks
            .iter()
            .all(|t| t.track.source != TrackSource::Screen)
    );
    let mut options = recordable();
    options.profile_override.record_screen = Some(true);
    let mut d = connected(options);
    consent_both(&mut d);
    let plan = d.net.engine.recording_plan(d.call).unwrap();
    assert!(
        plan.tracks
            .iter()
            .any(|t| t.track.role == Role::Merchant && t.track.source == TrackSource::Screen)
    );
    assert!(
        plan.tracks
            .iter()
            .all(|t| !(t.track.role == Role::Customer && t.track.source == TrackSource::Screen))
    );
}

#[test]
fn a_missing_or_read_only_directory_is_a_clear_error() {
    // At start-up.
    let missing = std::env::temp_dir().join(format!("shopcall-no-such-dir-{}", std::process::id()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt
        .block_on(sfu::SfuHandle::start(SfuConfig {
            recording_dir: Some(missing.clone()),
            ..SfuConfig::loopback()
        }))
        .err()
        .expect("refused");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot record: recording directory {} does not exist",
            missing.display()
        )
    );

    // At StartRecording: the directory went away since.
    let mut c = connected(recordable());
    consent_both(&mut c);
    let err = c.net.start_recording(c.call, &missing).unwrap_err();
    assert!(
        matches!(
            err,
            Error::RecordingUnavailable(RecordingDirError::NotFound(_))
        ),
        "{err}"
    );
    assert!(
        c.net.engine.recording_plan(c.call).is_ok(),
        "nothing started"
    );

    // Read-only.
    let dir = temp_dir("ro");
    let Some(ro) = ReadOnly::make(&dir) else {
        eprintln!("skipping the read-only case: cannot make a read-only directory here");
        return;
    };
    let err = rt
        .block_on(sfu::SfuHandle::start(SfuConfig {
            recording_dir: Some(dir.clone()),
            ..SfuConfig::loopback()
        }))
        .err()
        .expect("refused");
    assert!(err.to_string().contains("is not writable"), "{err}");
    let err = c.net.start_recording(c.call, &dir).unwrap_err();
    assert!(
        matches!(
            err,
            Error::RecordingUnavailable(RecordingDirError::NotWritable { .. })
        ),
        "{err}"
    );
    drop(ro);
    let _ = std::fs::remove_dir_all(dir);
}

/// A writer that fails with "no space left" once `limit` bytes are written.
struct FillingDisk {
    inner: io::Cursor<Vec<u8>>,
    limit: u64,
}

impl Write for FillingDisk {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.inner.position() + buf.len() as u64 > self.limit {
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for FillingDisk {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

fn disk_fills(c: &mut Call, dir: &Path) {
    consent_both(c);
    c.net
        .engine
        .set_camera(
            c.call,
            Role::Customer,
            Role::Customer,
            Some(Lens::Rear),
            c.net.now,
        )
        .unwrap();
    c.net.start_recording(c.call, dir).unwrap();
    let mut stopped = None;
    for _ in 0..40 {
        media(&mut c.net, &[c.merchant, c.customer], 100);
        c.net.sync_recorder();
        stopped = c.net.take_events().into_iter().find_map(|e| match e {
            Event::RecordingStopped { reason, .. } => Some(reason),
            _ => None,
        });
        if stopped.is_some() {
            break;
        }
    }
    assert_eq!(stopped, Some(RecordingStopReason::WriteFailed));
    // The call goes on, media still flows.
    assert_eq!(c.net.engine.call_state(c.call), Some(CallState::Connected));
    let before = c.net.client(c.merchant).stats().received_audio.packets;
    media(&mut c.net, &[c.merchant, c.customer], 200);
    assert!(c.net.client(c.merchant).stats().received_audio.packets > before);
    c.net
        .engine
        .end_call(c.call, sfu::EndReason::Requested, c.net.now)
        .unwrap();
    let record = c
        .net
        .take_events()
        .into_iter()
        .find_map(|e| match e {
            Event::CallEnded { record, .. } => Some(record),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        record.recordings[0].stop_reason,
        RecordingStopReason::WriteFailed
    );
    assert_eq!(
        record.recordings[0].write_error,
        Some(io::ErrorKind::StorageFull)
    );
}

#[test]
fn a_disk_that_fills_ends_the_recording_not_the_call() {
    let mut c = connected(recordable());
    let dir = temp_dir("fill");
    let opener: sfu::recording::Opener = Arc::new(|_: &Path| {
        Ok(Box::new(FillingDisk {
            inner: io::Cursor::new(Vec::new()),
            limit: 60_000,
        }) as Box<dyn WriteSeek>)
    });
    c.net
        .attach_recorder_with(RecorderConfig::default(), Some(opener));
    disk_fills(&mut c, &dir);
    assert_eq!(c.net.recording_failures(), [io::ErrorKind::StorageFull]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_full_tmpfs_ends_the_recording_not_the_call() {
    let dir = temp_dir("tmpfs");
    let Some(_mount) = Tmpfs::mount(&dir, "size=96k") else {
        eprintln!("skipping: cannot mount a tmpfs here (needs root)");
        return;
    };
    let mut c = connected(recordable());
    c.net.attach_recorder(RecorderConfig::default());
    disk_fills(&mut c, &dir);
    assert_eq!(c.net.recording_failures(), [io::ErrorKind::StorageFull]);
    drop(_mount);
    let _ = std::fs::remove_dir_all(dir);
}

/// A tmpfs mounted on a directory for the test (root only), unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, options: &str) -> Option<Tmpfs> {
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A directory made read-only: a read-only tmpfs as root (root ignores permissions),
/// mode 0555 otherwise.
enum ReadOnly {
    Mount(#[allow(dead_code)] Tmpfs),
    Mode(PathBuf),
}

impl ReadOnly {
    fn make(dir: &Path) -> Option<ReadOnly> {
        if let Some(m) = Tmpfs::mount(dir, "size=64k,ro") {
            return Some(ReadOnly::Mount(m));
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).ok()?;
        // Root may still write: then this is no test.
        let probe = dir.join("probe");
        if std::fs::write(&probe, b"x").is_ok() {
            let _ = std::fs::remove_file(probe);
            return None;
        }
        Some(ReadOnly::Mode(dir.to_owned()))
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        if let ReadOnly::Mode(dir) = self {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
        }
    }
}
