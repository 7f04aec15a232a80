//! Recording over gRPC, on the real daemon: configuration, consent, the preconditions of
//! StartRecording and their status codes, and the consent event. (The media path into a
//! file is covered in `crates/sfu/tests/recording*.rs`.)

mod common;

use std::time::Duration;

use common::{Daemon, LOOPBACK_ARGS, daemon_command};
use shopcall_proto::v1 as pb;
use tokio_stream::StreamExt;
use tonic::Code;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("shopcalld-rec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn recording_preconditions_and_consent_over_grpc() {
    let dir = temp_dir("api");
    let daemon = Daemon::start(&["--recording-dir", dir.to_str().unwrap()]);
    let mut client = daemon.client().await;

    // A profile that does not allow recording.
    let plain = client
        .create_call(pb::CreateCallRequest::default())
        .await
        .unwrap()
        .into_inner();
    let err = client
        .start_recording(pb::StartRecordingRequest {
            call_id: plain.call_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("does not allow recording"),
        "{err:?}"
    );

    // One that does: nobody joined yet.
    let call = client
        .create_call(pb::CreateCallRequest {
            profile_override: Some(pb::ProfileOverride {
                recording_allowed: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(call.recording_allowed);
    assert!(!call.record_screen);
    let mut events = client
        .watch_events(pb::WatchEventsRequest {
            call_id: call.call_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    client
        .give_consent(pb::GiveConsentRequest {
            call_id: call.call_id.clone(),
            role: pb::Role::Customer as i32,
            given: true,
        })
        .await
        .unwrap();
    // Other events of the call (quality reports, lifecycle) may come first; the consent
    // change must come within the limit.
    let c = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let event = events.next().await.expect("the stream goes on").unwrap();
            if let Some(pb::event::Kind::RecordingConsentChanged(c)) =
                event.event.and_then(|e| e.kind)
            {
                return c;
            }
        }
    })
    .await
    .expect("a RecordingConsentChanged event within 5 s");
    assert_eq!((c.role, c.given), (pb::Role::Customer as i32, true));

    let err = client
        .start_recording(pb::StartRecordingRequest {
            call_id: call.call_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("has not joined"), "{err:?}");
    let err = client
        .stop_recording(pb::StopRecordingRequest {
            call_id: call.call_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    // Bad requests.
    let err = client
        .give_consent(pb::GiveConsentRequest {
            call_id: call.call_id.clone(),
            role: pb::Role::Unspecified as i32,
            given: true,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = client
        .give_consent(pb::GiveConsentRequest {
            call_id: "0123456789abcdef".into(),
            role: pb::Role::Merchant as i32,
            given: true,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "no file for a refused recording"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn without_a_recording_dir_start_recording_says_so() {
    let daemon = Daemon::start(&[]);
    let mut client = daemon.client().await;
    let call = client
        .create_call(pb::CreateCallRequest::default())
        .await
        .unwrap()
        .into_inner();
    let err = client
        .start_recording(pb::StartRecordingRequest {
            call_id: call.call_id,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message()
            .contains("no recording directory is configured"),
        "{err:?}"
    );
}

#[test]
fn a_missing_recording_dir_stops_the_daemon_at_start_with_a_clear_message() {
    let missing = std::env::temp_dir().join(format!("shopcalld-no-dir-{}", std::process::id()));
    let out = daemon_command(
        &LOOPBACK_ARGS,
        &["--recording-dir", missing.to_str().unwrap()],
        &[],
    )
    .output()
    .expect("runs");
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!(
            "recording directory {} does not exist",
            missing.display()
        )),
        "{text}"
    );
}
