//! The driver's part of recording: the writer thread's link, the handle's recording requests
//! (which reserve the file: the only I/O of a StartRecording), and the loop's two hooks
//! (hand recorded media to the writer; hand the writer's reports to the engine).

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use super::SfuHandle;
use crate::engine::Engine;
use crate::error::Error;
use crate::ids::CallId;
use crate::recording::{
    Recorder, RecorderConfig, RecorderReport, RecorderReportKind, RecordingDirError,
    RecordingOutput, RecordingStart, check_dir, reserve_file,
};
use policy::Role;

/// The writer thread and the channel its reports come back on.
pub(super) struct RecorderLink {
    pub recorder: Recorder,
    pub reports: mpsc::UnboundedReceiver<RecorderReport>,
}

impl RecorderLink {
    /// Checks `dir` and starts the writer thread.
    pub(super) fn start(dir: &std::path::Path) -> Result<RecorderLink, super::StartError> {
        check_dir(dir)?;
        let (tx, reports) = mpsc::unbounded_channel();
        let recorder = Recorder::spawn(RecorderConfig::default(), move |r| {
            let _ = tx.send(r);
        })
        .map_err(super::StartError::RecorderThread)?;
        tracing::info!(dir = %dir.display(), "recording enabled");
        Ok(RecorderLink { recorder, reports })
    }

    /// Finishes every open file and stops the thread (off the async runtime's threads).
    pub(super) async fn shutdown(self) {
        let recorder = self.recorder;
        let _ = tokio::task::spawn_blocking(move || recorder.shutdown()).await;
    }
}

/// Hands everything the engine recorded to the writer. Packets that do not fit in the
/// writer's queue are dropped and counted.
pub(super) fn forward_recorded(engine: &mut Engine, link: Option<&RecorderLink>) {
    while let Some(output) = engine.poll_recorded() {
        let Some(link) = link else {
            continue; // no recording directory: the handle never starts a recording
        };
        if let Err(RecordingOutput::Packet(p)) = link.recorder.send(output) {
            engine.recording_packets_dropped(p.id, 1);
        }
    }
}

/// Acts on one report of the writer.
pub(super) fn on_report(engine: &mut Engine, report: RecorderReport, now: Instant) {
    match report.kind {
        RecorderReportKind::Failed(e) => engine.recording_failed(report.id, e.kind(), now),
        RecorderReportKind::KeyframeNeeded(track) => {
            engine.recording_keyframe_needed(report.id, track, now)
        }
        RecorderReportKind::Finished(summary) => {
            tracing::debug!(recording = %report.id, call = %report.call, bytes = summary.bytes, "recording written");
        }
    }
}

impl SfuHandle {
    /// Records `role`'s consent to being recorded (or withdraws it). See
    /// [`Engine::give_consent`].
    pub async fn give_consent(&self, call: CallId, role: Role, given: bool) -> Result<(), Error> {
        self.run(move |e, now| e.give_consent(call, role, given, now))
            .await?
    }

    /// Starts recording `call` into a new file in [`SfuConfig::recording_dir`]
    /// (`{call_id}-{unix_time}.webm`, `.mkv` for H.264). The preconditions are checked
    /// first ([`Engine::recording_plan`]), then the file is created (a directory that
    /// vanished or became read-only is [`Error::RecordingUnavailable`]), then the engine
    /// starts the recording; if that fails after all, the empty file is removed.
    ///
    /// [`SfuConfig::recording_dir`]: crate::SfuConfig::recording_dir
    pub async fn start_recording(&self, call: CallId) -> Result<RecordingStart, Error> {
        let dir: PathBuf = self
            .shared
            .recording_dir
            .clone()
            .ok_or(RecordingDirError::NotConfigured)?;
        let plan = self.run(move |e, _| e.recording_plan(call)).await??;
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let path = tokio::task::spawn_blocking(move || {
            check_dir(&dir)?;
            reserve_file(&dir, call, unix, plan.container)
        })
        .await
        .map_err(|e| Error::internal("reserving the recording file", e))??;
        let file = path.clone();
        let started = self
            .run(move |e, now| e.start_recording_to(call, Some(file), now))
            .await;
        match started.and_then(|r| r) {
            Ok(start) => Ok(start),
            Err(e) => {
                // Consent withdrawn (or the call ended) in between: no recording, no file.
                let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(path)).await;
                Err(e)
            }
        }
    }

    /// Stops the recording of `call`. See [`Engine::stop_recording`].
    pub async fn stop_recording(&self, call: CallId) -> Result<(), Error> {
        self.run(move |e, now| e.stop_recording(call, now)).await?
    }
}
