//! Recording: sfu recording values to and from the wire (consent, tracks, the call record's
//! recordings, the three recording events).

use sfu::recording::{
    RecordedTrackStats, RecordingStart, RecordingStopReason, RecordingSummary, TrackPlan,
    TrackSource,
};
use shopcall_proto::v1 as pb;

use super::{duration, role};

/// A recording source on the wire.
pub fn source(s: TrackSource) -> pb::RecordingSource {
    match s {
        TrackSource::Microphone => pb::RecordingSource::Microphone,
        TrackSource::Camera => pb::RecordingSource::Camera,
        TrackSource::Screen => pb::RecordingSource::Screen,
    }
}

/// A stop reason on the wire.
pub fn stop_reason(r: RecordingStopReason) -> pb::RecordingStopReason {
    match r {
        RecordingStopReason::Requested => pb::RecordingStopReason::Requested,
        RecordingStopReason::ConsentWithdrawn => pb::RecordingStopReason::ConsentWithdrawn,
        RecordingStopReason::CallEnded => pb::RecordingStopReason::CallEnded,
        RecordingStopReason::WriteFailed => pb::RecordingStopReason::WriteFailed,
        _ => pb::RecordingStopReason::Unspecified,
    }
}

/// A planned track on the wire.
pub fn track(t: &TrackPlan) -> pb::RecordedTrack {
    pb::RecordedTrack {
        role: role(t.track.role) as i32,
        source: source(t.track.source) as i32,
        codec: t.codec.to_string(),
    }
}

fn track_stats(t: &RecordedTrackStats) -> pb::RecordedTrackStats {
    pb::RecordedTrackStats {
        track: Some(pb::RecordedTrack {
            role: role(t.track.role) as i32,
            source: source(t.track.source) as i32,
            codec: t.codec.to_string(),
        }),
        packets: t.packets,
        bytes: t.bytes,
    }
}

/// The StartRecording answer.
pub fn started(s: &RecordingStart) -> pb::StartRecordingResponse {
    pb::StartRecordingResponse {
        recording_id: s.id.raw(),
        file: s
            .file
            .as_ref()
            .map(|f| f.display().to_string())
            .unwrap_or_default(),
        tracks: s.plan.tracks.iter().map(track).collect(),
    }
}

/// A finished recording, for the call record.
pub fn summary(r: &RecordingSummary) -> pb::Recording {
    pb::Recording {
        recording_id: r.id.raw(),
        file: r
            .file
            .as_ref()
            .map(|f| f.display().to_string())
            .unwrap_or_default(),
        started_after: Some(duration(r.started_after)),
        duration: Some(duration(r.duration)),
        tracks: r.tracks.iter().map(track_stats).collect(),
        stop_reason: stop_reason(r.stop_reason) as i32,
        write_error: r.write_error.map(|k| k.to_string()).unwrap_or_default(),
        dropped_packets: r.dropped_packets,
    }
}

/// The wire form of a recording event, or `None` for any other event.
pub fn event(e: &sfu::Event) -> Option<pb::event::Kind> {
    use pb::event::Kind;
    Some(match e {
        sfu::Event::RecordingConsentChanged { role: r, given, .. } => {
            Kind::RecordingConsentChanged(pb::RecordingConsentChanged {
                role: role(*r) as i32,
                given: *given,
            })
        }
        sfu::Event::RecordingStarted {
            recording,
            file,
            tracks,
            ..
        } => Kind::RecordingStarted(pb::RecordingStarted {
            recording_id: recording.raw(),
            file: file
                .as_ref()
                .map(|f| f.display().to_string())
                .unwrap_or_default(),
            tracks: tracks.iter().map(track).collect(),
        }),
        sfu::Event::RecordingStopped {
            recording,
            reason,
            duration: d,
            ..
        } => Kind::RecordingStopped(pb::RecordingStopped {
            recording_id: recording.raw(),
            reason: stop_reason(*reason) as i32,
            duration: Some(duration(*d)),
        }),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sfu::recording::{RecordedCodec, RecordedTrack, RecordingId};
    use sfu::{CallId, Role, VideoCodec};
    use std::time::Duration;

    #[test]
    fn recording_events_convert() {
        let call = CallId::from_raw(1);
        let plan = TrackPlan {
            track: RecordedTrack {
                role: Role::Customer,
                source: TrackSource::Camera,
            },
            codec: RecordedCodec::Video(VideoCodec::Vp8),
        };
        let Some(pb::event::Kind::RecordingStarted(s)) = event(&sfu::Event::RecordingStarted {
            call,
            recording: RecordingId::from_raw(7),
            file: Some("/rec/a.webm".into()),
            tracks: vec![plan],
        }) else {
            panic!("a RecordingStarted")
        };
        assert_eq!(s.recording_id, 7);
        assert_eq!(s.file, "/rec/a.webm");
        assert_eq!(
            s.tracks,
            [pb::RecordedTrack {
                role: pb::Role::Customer as i32,
                source: pb::RecordingSource::Camera as i32,
                codec: "vp8".into(),
            }]
        );
        let Some(pb::event::Kind::RecordingStopped(s)) = event(&sfu::Event::RecordingStopped {
            call,
            recording: RecordingId::from_raw(7),
            reason: RecordingStopReason::WriteFailed,
            duration: Duration::from_secs(3),
        }) else {
            panic!("a RecordingStopped")
        };
        assert_eq!(s.reason, pb::RecordingStopReason::WriteFailed as i32);
        let Some(pb::event::Kind::RecordingConsentChanged(c)) =
            event(&sfu::Event::RecordingConsentChanged {
                call,
                role: Role::Merchant,
                given: false,
            })
        else {
            panic!("a RecordingConsentChanged")
        };
        assert_eq!(c.role, pb::Role::Merchant as i32);
        assert!(!c.given);
        for r in RecordingStopReason::ALL {
            assert_ne!(
                stop_reason(r),
                pb::RecordingStopReason::Unspecified,
                "{r:?}"
            );
        }
    }

    #[test]
    fn a_summary_names_its_file_and_error() {
        let r = summary(&RecordingSummary {
            id: RecordingId::from_raw(3),
            file: Some("/rec/b.webm".into()),
            started_after: Duration::from_secs(1),
            duration: Duration::from_secs(2),
            tracks: vec![],
            stop_reason: RecordingStopReason::WriteFailed,
            write_error: Some(std::io::ErrorKind::StorageFull),
            dropped_packets: 0,
        });
        assert_eq!(r.file, "/rec/b.webm");
        assert_eq!(r.stop_reason, pb::RecordingStopReason::WriteFailed as i32);
        assert!(!r.write_error.is_empty());
    }
}
