//! Recording, the engine's half: consent, start and stop, and the packets that enter a
//! recording (the same policy gate as forwarding, then consent, then the track plan).
//!
//! The engine does no I/O: it queues [`RecordingOutput`]s that the driver drains with
//! [`Engine::poll_recorded`] and hands to the writer ([`crate::recording::Recorder`]).
//! Per packet it copies header scalars and clones the payload's `Bytes` (a reference count)
//! into a queue whose capacity is reserved up front and bounded: nothing else allocates.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::Instant;

use policy::{MediaKind, Role, Source};

use super::Engine;
use crate::call::Call;
use crate::error::Error;
use crate::event::Event;
use crate::ids::{CallId, ParticipantId};
use crate::participant::Participant;
use crate::recording::{
    Container, RecordedCodec, RecordedPacket, RecordedTrack, RecordedTrackStats, RecordingId,
    RecordingOutput, RecordingPlan, RecordingStart, RecordingStopReason, RecordingSummary,
    TrackPlan, TrackSource,
};

/// Most outputs queued for the driver; beyond it packets are dropped and counted. The
/// driver drains after every input, so this is only reached by an embedder that does not.
pub(crate) const MAX_QUEUED: usize = 8192;
/// Capacity reserved when the first recording starts.
const INITIAL_QUEUE: usize = 1024;

/// The engine-wide recording state: the queue the driver drains and the id counter.
#[derive(Debug, Default)]
pub(crate) struct Recordings {
    queue: VecDeque<RecordingOutput>,
    next_id: u64,
    /// Packets dropped because the queue (or the driver's channel) was full, since start.
    pub dropped: u64,
}

/// One call's recording state: consent (kept across recordings), the running recording,
/// and the finished ones (for the call record).
#[derive(Debug, Default)]
pub(crate) struct CallRecording {
    /// Consent per role (`Role::index`).
    consent: [bool; 2],
    active: Option<Active>,
    pub finished: Vec<RecordingSummary>,
}

#[derive(Debug)]
struct Active {
    id: RecordingId,
    file: Option<PathBuf>,
    started: Instant,
    started_after: std::time::Duration,
    tracks: Vec<TrackPlan>,
    stats: Vec<RecordedTrackStats>,
    /// The camera layer recorded per role: (participant, SSRC), chosen once.
    layer: [Option<(ParticipantId, u32)>; 2],
    dropped: u64,
}

impl CallRecording {
    /// Whether a recording runs.
    pub(crate) fn is_active(&self) -> bool {
        self.active.is_some()
    }
}

impl Engine {
    /// Records (or withdraws) `role`'s consent to being recorded in `call`, as the signaling
    /// tier collected it. Publishes [`Event::RecordingConsentChanged`] when it changes.
    /// Withdrawing while a recording runs stops the recording of that participant's media at
    /// its next packet; when nobody's consent is left, the recording stops with
    /// [`RecordingStopReason::ConsentWithdrawn`]. Giving consent again during a recording
    /// resumes that participant's media (video from its next keyframe, which is asked for).
    pub fn give_consent(
        &mut self,
        call: CallId,
        role: Role,
        given: bool,
        now: Instant,
    ) -> Result<(), Error> {
        let c = self.calls.get_mut(&call).ok_or(Error::CallNotFound(call))?;
        if c.lifecycle.is_ended() {
            return Err(Error::CallEnded(call));
        }
        let r = &mut c.recording;
        if r.consent[role.index()] == given {
            return Ok(());
        }
        r.consent[role.index()] = given;
        let active = r.active.is_some();
        let nobody = !r.consent.iter().any(|c| *c);
        let member = c.member(role);
        self.events
            .push_back(Event::RecordingConsentChanged { call, role, given });
        tracing::info!(call = %call, %role, given, "recording consent changed");
        if active && nobody {
            self.end_recording(call, RecordingStopReason::ConsentWithdrawn, None, now);
        } else if active
            && given
            && let Some(p) = member
        {
            self.request_video_keyframes(p, now);
            self.flush_touched(now);
        }
        Ok(())
    }

    /// Whether `role` has consented to being recorded in `call`.
    pub fn consent(&self, call: CallId, role: Role) -> Result<bool, Error> {
        let c = self.calls.get(&call).ok_or(Error::CallNotFound(call))?;
        Ok(c.recording.consent[role.index()])
    }

    /// Checks that `call` may be recorded now and returns what the recording would hold,
    /// without starting it. The preconditions, in order:
    ///
    /// 1. the call exists and has not ended;
    /// 2. its profile allows recording ([`Error::RecordingNotAllowed`]);
    /// 3. no recording runs ([`Error::AlreadyRecording`]);
    /// 4. both participants have joined, so the codecs are known
    ///    ([`Error::RecordingNotReady`]);
    /// 5. both participants consented (both are always recorded: at least their
    ///    microphones) ([`Error::ConsentMissing`], naming the first role without consent,
    ///    the customer first).
    pub fn recording_plan(&self, call: CallId) -> Result<RecordingPlan, Error> {
        let c = self.calls.get(&call).ok_or(Error::CallNotFound(call))?;
        if c.lifecycle.is_ended() {
            return Err(Error::CallEnded(call));
        }
        let profile = c.grants.profile();
        if !profile.recording_allowed {
            return Err(Error::RecordingNotAllowed(call));
        }
        if c.recording.active.is_some() {
            return Err(Error::AlreadyRecording(call));
        }
        if let Some(role) = Role::ALL.into_iter().find(|r| c.member(*r).is_none()) {
            return Err(Error::RecordingNotReady { call, absent: role });
        }
        if let Some(role) = [Role::Customer, Role::Merchant]
            .into_iter()
            .find(|r| !c.recording.consent[r.index()])
        {
            return Err(Error::ConsentMissing { call, role });
        }
        let video = c.video_codec.as_ref().map(|v| v.codec);
        let mut tracks = Vec::with_capacity(5);
        for role in [Role::Merchant, Role::Customer] {
            let rules = profile.role(role);
            if rules.allows_microphone() {
                tracks.push(TrackPlan {
                    track: RecordedTrack {
                        role,
                        source: TrackSource::Microphone,
                    },
                    codec: RecordedCodec::Opus,
                });
            }
            let Some(codec) = video else { continue };
            if rules.allows_camera() {
                tracks.push(TrackPlan {
                    track: RecordedTrack {
                        role,
                        source: TrackSource::Camera,
                    },
                    codec: RecordedCodec::Video(codec),
                });
            }
            if profile.record_screen && rules.allows_screen_share() {
                tracks.push(TrackPlan {
                    track: RecordedTrack {
                        role,
                        source: TrackSource::Screen,
                    },
                    codec: RecordedCodec::Video(codec),
                });
            }
        }
        let container = match video {
            Some(crate::VideoCodec::H264) => Container::Matroska,
            _ => Container::WebM,
        };
        Ok(RecordingPlan { tracks, container })
    }

    /// Starts recording `call` (see [`Engine::recording_plan`] for the preconditions), with
    /// no file: the embedder takes the packets from [`Engine::poll_recorded`] itself.
    pub fn start_recording(&mut self, call: CallId, now: Instant) -> Result<RecordingStart, Error> {
        self.start_recording_to(call, None, now)
    }

    /// Starts recording `call` into `file` (reserved by the driver; the engine only passes
    /// the path on, in [`RecordingOutput::Start`] and in the call record). Publishes
    /// [`Event::RecordingStarted`] and asks both participants for a keyframe so that video
    /// starts at once.
    pub fn start_recording_to(
        &mut self,
        call: CallId,
        file: Option<PathBuf>,
        now: Instant,
    ) -> Result<RecordingStart, Error> {
        let plan = self.recording_plan(call)?;
        let rec = &mut self.recordings;
        rec.next_id += 1;
        let id = RecordingId::from_raw(rec.next_id);
        if rec.queue.capacity() == 0 {
            rec.queue.reserve(INITIAL_QUEUE);
        }
        let c = self.calls.get_mut(&call).ok_or(Error::CallNotFound(call))?;
        let mut layer = [None, None];
        for role in Role::ALL {
            layer[role.index()] = c
                .member(role)
                .and_then(|p| self.participants.get(&p))
                .and_then(|p| best_camera_layer(p, 0).map(|ssrc| (p.id, ssrc)));
        }
        c.recording.active = Some(Active {
            id,
            file: file.clone(),
            started: now,
            started_after: now.saturating_duration_since(c.lifecycle.created_at()),
            tracks: plan.tracks.clone(),
            stats: plan
                .tracks
                .iter()
                .map(|t| RecordedTrackStats {
                    track: t.track,
                    codec: t.codec,
                    packets: 0,
                    bytes: 0,
                })
                .collect(),
            layer,
            dropped: 0,
        });
        let members: Vec<ParticipantId> = c.members().collect();
        let start = RecordingStart {
            id,
            call,
            file: file.clone(),
            plan,
            at: now,
        };
        // Control outputs are never dropped: the queue bound applies to packets.
        self.recordings
            .queue
            .push_back(RecordingOutput::Start(Box::new(start.clone())));
        self.events.push_back(Event::RecordingStarted {
            call,
            recording: id,
            file,
            tracks: start.plan.tracks.clone(),
        });
        self.metrics.recordings_started += 1;
        tracing::info!(call = %call, recording = %id, tracks = start.plan.tracks.len(), "recording started");
        for p in members {
            self.request_video_keyframes(p, now);
        }
        self.flush_touched(now);
        Ok(start)
    }

    /// Stops the recording of `call` ([`RecordingStopReason::Requested`]).
    pub fn stop_recording(&mut self, call: CallId, now: Instant) -> Result<(), Error> {
        let c = self.calls.get(&call).ok_or(Error::CallNotFound(call))?;
        if !c.recording.is_active() {
            return Err(Error::NotRecording(call));
        }
        self.end_recording(call, RecordingStopReason::Requested, None, now);
        Ok(())
    }

    /// The writer could not write recording `id` (the driver reports what the
    /// [`crate::recording::Recorder`] said): the recording stops with
    /// [`RecordingStopReason::WriteFailed`]; the call goes on. A stale id is ignored.
    pub fn recording_failed(&mut self, id: RecordingId, error: std::io::ErrorKind, now: Instant) {
        if let Some(call) = self.call_of_recording(id) {
            tracing::warn!(call = %call, recording = %id, %error, "recording write failed: recording stopped, call goes on");
            self.end_recording(call, RecordingStopReason::WriteFailed, Some(error), now);
        }
    }

    /// The writer lost part of a video frame of recording `id` and waits for a keyframe on
    /// `track`: ask its sender for one (rate limited like every keyframe request).
    pub fn recording_keyframe_needed(
        &mut self,
        id: RecordingId,
        track: RecordedTrack,
        now: Instant,
    ) {
        let Some(call) = self.call_of_recording(id) else {
            return;
        };
        if let Some(p) = self.calls.get(&call).and_then(|c| c.member(track.role)) {
            self.request_video_keyframes(p, now);
            self.flush_touched(now);
        }
    }

    /// `n` packets of recording `id` were dropped outside the engine (the writer's queue was
    /// full): counted in the recording's summary and the engine metrics.
    pub fn recording_packets_dropped(&mut self, id: RecordingId, n: u64) {
        self.recordings.dropped += n;
        if let Some(call) = self.call_of_recording(id)
            && let Some(a) = self
                .calls
                .get_mut(&call)
                .and_then(|c| c.recording.active.as_mut())
        {
            a.dropped += n;
        }
    }

    /// The next recording output: a recording's start, a recorded packet, a stop. Drain it
    /// after every input, like [`Engine::poll_transmit`].
    pub fn poll_recorded(&mut self) -> Option<RecordingOutput> {
        self.recordings.queue.pop_front()
    }

    /// Recorded packets dropped since start (queue full), for metrics.
    pub fn recording_drops(&self) -> u64 {
        self.recordings.dropped
    }

    fn call_of_recording(&self, id: RecordingId) -> Option<CallId> {
        self.calls
            .iter()
            .find(|(_, c)| c.recording.active.as_ref().is_some_and(|a| a.id == id))
            .map(|(id, _)| *id)
    }

    /// Ends the running recording of `call`, if any: queues its `Stop`, publishes
    /// [`Event::RecordingStopped`] and keeps its summary for the call record.
    pub(super) fn end_recording(
        &mut self,
        call: CallId,
        reason: RecordingStopReason,
        write_error: Option<std::io::ErrorKind>,
        now: Instant,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(a) = c.recording.active.take() else {
            return;
        };
        let duration = now.saturating_duration_since(a.started);
        c.recording.finished.push(RecordingSummary {
            id: a.id,
            file: a.file,
            started_after: a.started_after,
            duration,
            tracks: a.stats,
            stop_reason: reason,
            write_error,
            dropped_packets: a.dropped,
        });
        self.recordings.queue.push_back(RecordingOutput::Stop {
            id: a.id,
            call,
            reason,
            at: now,
        });
        self.events.push_back(Event::RecordingStopped {
            call,
            recording: a.id,
            reason,
            duration,
        });
        tracing::info!(call = %call, recording = %a.id, reason = reason.as_str(), duration_ms = duration.as_millis() as u64, "recording stopped");
    }
}

/// The hook on the forwarding path, called for a packet that passed the policy gate (the
/// same gate as forwarding: its source is granted). Queues it if a recording runs, its
/// sender consented, its track is in the plan, and (for a simulcast camera) it is the
/// recorded layer. No allocation: header scalars are copied, the payload's `Bytes` cloned.
#[allow(clippy::too_many_arguments)]
pub(super) fn record_packet(
    recordings: &mut Recordings,
    participants: &HashMap<ParticipantId, Participant>,
    call_id: CallId,
    call: &mut Call,
    role: Role,
    (kind, kind_index, source): (MediaKind, u8, Source),
    packet: &rtp::Packet,
    now: Instant,
) {
    let member = call.member(role);
    let r = &mut call.recording;
    let Some(a) = r.active.as_mut() else {
        return;
    };
    if !r.consent[role.index()] {
        return;
    }
    let track_source = match (kind, source) {
        (MediaKind::Audio, _) => TrackSource::Microphone,
        (MediaKind::Video, Source::Screen) => TrackSource::Screen,
        (MediaKind::Video, _) => TrackSource::Camera,
    };
    let track = RecordedTrack {
        role,
        source: track_source,
    };
    let Some(i) = a.tracks.iter().position(|t| t.track == track) else {
        return;
    };
    let ssrc = packet.header.ssrc;
    if track_source == TrackSource::Camera {
        let chosen = a.layer[role.index()];
        let still_there = chosen.is_some_and(|(p, s)| {
            Some(p) == member
                && participants
                    .get(&p)
                    .is_some_and(|p| p.receivers.iter().any(|r| r.ssrc == s))
        });
        if !still_there {
            // First camera packet of this participant in the recording (or it rejoined).
            let Some(p) = member.and_then(|m| participants.get(&m)) else {
                return;
            };
            a.layer[role.index()] = best_camera_layer(p, kind_index).map(|s| (p.id, s));
        }
        if a.layer[role.index()].map(|(_, s)| s) != Some(ssrc) {
            return;
        }
    }
    if recordings.queue.len() >= MAX_QUEUED {
        a.dropped += 1;
        recordings.dropped += 1;
        return;
    }
    let plan = a.tracks[i];
    let stats = &mut a.stats[i];
    stats.packets += 1;
    stats.bytes += packet.payload.len() as u64;
    recordings
        .queue
        .push_back(RecordingOutput::Packet(RecordedPacket {
            id: a.id,
            call: call_id,
            track,
            codec: plan.codec,
            ssrc,
            timestamp: packet.header.timestamp,
            sequence_number: packet.header.sequence_number,
            marker: packet.header.marker,
            payload: packet.payload.clone(),
            at: now,
        }));
}

/// The camera layer to record for a participant: of the streams on its `kind_index`-th
/// video m-line, the one with the highest measured bitrate (then the most bytes so far).
fn best_camera_layer(p: &Participant, kind_index: u8) -> Option<u32> {
    p.receivers
        .iter()
        .filter(|r| r.kind == MediaKind::Video && r.kind_index == kind_index)
        .filter(|r| r.source.lens().is_some())
        .max_by_key(|r| (r.rate.bps(), r.received.bytes))
        .map(|r| r.ssrc)
}
