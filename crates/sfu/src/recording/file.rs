//! File: one recording's output: its tracks' depacketizers and timelines, an interleaver,
//! and the Matroska writer.
//!
//! Bounded memory: one frame being assembled per video track, at most [`INTERLEAVE_MS`] of
//! frames (and never more than [`MAX_PENDING`]) waiting to be written in timestamp order,
//! and one cluster ([`mkv::CLUSTER_MAX_BYTES`](super::mkv::CLUSTER_MAX_BYTES) at most).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Seek, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::depacketize::{Pushed, VideoAssembler, keyframe_size, opus_head};
use super::mkv::{MkvWriter, Track, TrackKind};
use super::timeline::Timeline;
use super::{RecordedCodec, RecordedPacket, RecordedTrack, RecordingStart};

/// Frames are held this long (in media time) so that the two participants' tracks are
/// written in timestamp order.
pub const INTERLEAVE_MS: i64 = 250;
/// Most frames held for interleaving.
pub const MAX_PENDING: usize = 1024;
/// The picture size declared until a track's first keyframe tells the real one.
const PLACEHOLDER_SIZE: (u32, u32) = (640, 480);

/// Why a recording's file could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The file could not be opened.
    #[error("cannot open recording file {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Writing failed (a full disk is `StorageFull`).
    #[error("cannot write recording file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

impl WriteError {
    /// The OS error's kind (`StorageFull` for a full disk).
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            WriteError::Open { source, .. } | WriteError::Write { source, .. } => source.kind(),
        }
    }
}

/// What went into one track of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackSummary {
    /// Whose and which.
    pub track: RecordedTrack,
    /// Its codec.
    pub codec: RecordedCodec,
    /// Frames written.
    pub frames: u64,
    /// Frame bytes written.
    pub bytes: u64,
    /// Time of its first frame, ms from the start of the file.
    pub first_ms: Option<i64>,
    /// Time of its last frame.
    pub last_ms: Option<i64>,
}

/// A finished file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSummary {
    /// The file, when there is one.
    pub path: Option<PathBuf>,
    /// Its size.
    pub bytes: u64,
    /// Its duration (start to stop).
    pub duration: Duration,
    /// Its tracks.
    pub tracks: Vec<TrackSummary>,
}

struct FileTrack {
    track: RecordedTrack,
    codec: RecordedCodec,
    number: u8,
    timeline: Timeline,
    video: Option<VideoAssembler>,
    ssrc: Option<u32>,
    size_known: bool,
    config_known: bool,
    frames: u64,
    bytes: u64,
    first_ms: Option<i64>,
    last_ms: Option<i64>,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    ts: i64,
    order: u64,
    track: usize,
    keyframe: bool,
    data: Bytes,
}

/// One recording being written.
pub struct RecordingFile<W: Write + Seek> {
    mkv: MkvWriter<W>,
    path: Option<PathBuf>,
    start: Instant,
    tracks: Vec<FileTrack>,
    pending: BinaryHeap<Reverse<Pending>>,
    order: u64,
    newest_ms: i64,
}

impl<W: Write + Seek> RecordingFile<W> {
    /// Writes the header of `start`'s recording to `out`.
    pub fn new(out: W, start: &RecordingStart) -> io::Result<RecordingFile<W>> {
        let mut tracks = Vec::with_capacity(start.plan.tracks.len());
        let mut mkv_tracks = Vec::with_capacity(start.plan.tracks.len());
        for (i, plan) in start.plan.tracks.iter().enumerate() {
            let number = (i + 1) as u8;
            let kind = match plan.codec {
                RecordedCodec::Opus => TrackKind::Audio {
                    sampling_frequency: 48_000.0,
                    channels: 2,
                },
                RecordedCodec::Video(_) => TrackKind::Video {
                    width: PLACEHOLDER_SIZE.0,
                    height: PLACEHOLDER_SIZE.1,
                },
            };
            mkv_tracks.push(Track {
                number,
                uid: u64::from(number),
                name: plan.track.to_string(),
                codec_id: plan.codec.matroska_id(),
                codec_private: (plan.codec == RecordedCodec::Opus).then(opus_head),
                codec_delay_ns: 0,
                seek_pre_roll_ns: if plan.codec == RecordedCodec::Opus {
                    80_000_000
                } else {
                    0
                },
                kind,
            });
            tracks.push(FileTrack {
                track: plan.track,
                codec: plan.codec,
                number,
                timeline: Timeline::new(plan.codec.clock_rate()),
                video: match plan.codec {
                    RecordedCodec::Video(v) => Some(VideoAssembler::new(v)),
                    RecordedCodec::Opus => None,
                },
                ssrc: None,
                size_known: false,
                config_known: false,
                frames: 0,
                bytes: 0,
                first_ms: None,
                last_ms: None,
            });
        }
        let mkv = MkvWriter::new(out, start.plan.container.doc_type(), mkv_tracks)?;
        Ok(RecordingFile {
            mkv,
            path: start.file.clone(),
            start: start.at,
            tracks,
            pending: BinaryHeap::new(),
            order: 0,
            newest_ms: 0,
        })
    }

    /// Adds one packet. Returns the track when a video frame was lost and the sender should
    /// be asked for a keyframe.
    pub fn push(&mut self, p: &RecordedPacket) -> io::Result<Option<RecordedTrack>> {
        let Some(i) = self.tracks.iter().position(|t| t.track == p.track) else {
            return Ok(None);
        };
        let arrival_ms = p.at.saturating_duration_since(self.start).as_millis() as i64;
        let t = &mut self.tracks[i];
        let track = t.track;
        let RecordedCodec::Video(codec) = t.codec else {
            let (ms, _) = t.timeline.map(p.ssrc, p.timestamp, arrival_ms);
            self.enqueue(i, ms, true, p.payload.clone())?;
            return Ok(None);
        };
        if t.ssrc != Some(p.ssrc) {
            // A new stream (the participant rejoined): start over, from a keyframe.
            t.video = Some(VideoAssembler::new(codec));
            t.ssrc = Some(p.ssrc);
        }
        let assembler = t.video.get_or_insert_with(|| VideoAssembler::new(codec));
        let (ts, keyframe, data) =
            match assembler.push(p.sequence_number, p.timestamp, p.marker, &p.payload) {
                Pushed::Pending => return Ok(None),
                Pushed::NeedKeyframe => return Ok(Some(track)),
                Pushed::Frame(f) => (f.timestamp, f.keyframe, Bytes::copy_from_slice(f.data)),
            };
        let (ms, _) = t.timeline.map(p.ssrc, ts, arrival_ms);
        if keyframe {
            self.learn_track(i, &data)?;
        }
        self.enqueue(i, ms, keyframe, data)?;
        Ok(None)
    }

    /// A keyframe tells a video track's size (and, for H.264, its configuration): rewrite
    /// its header once.
    fn learn_track(&mut self, i: usize, frame: &[u8]) -> io::Result<()> {
        let t = &mut self.tracks[i];
        let RecordedCodec::Video(codec) = t.codec else {
            return Ok(());
        };
        let Some(mut entry) = self.mkv.tracks().get(i).cloned() else {
            return Ok(());
        };
        let mut changed = false;
        if !t.size_known
            && let Some((width, height)) = keyframe_size(codec, frame)
        {
            t.size_known = true;
            entry.kind = TrackKind::Video { width, height };
            changed = true;
        }
        if !t.config_known
            && let Some(config) = t.video.as_ref().and_then(|a| a.avc_config())
        {
            t.config_known = true;
            entry.codec_private = Some(config);
            changed = true;
        }
        if changed {
            match self.mkv.update_track(entry) {
                // Too large to fit: the decoder reads sizes and parameter sets in-band.
                Err(e) if e.kind() == io::ErrorKind::InvalidInput => {}
                other => other?,
            }
        }
        Ok(())
    }

    fn enqueue(&mut self, track: usize, ts: i64, keyframe: bool, data: Bytes) -> io::Result<()> {
        self.order += 1;
        self.newest_ms = self.newest_ms.max(ts);
        self.pending.push(Reverse(Pending {
            ts,
            order: self.order,
            track,
            keyframe,
            data,
        }));
        while let Some(Reverse(top)) = self.pending.peek() {
            if top.ts > self.newest_ms - INTERLEAVE_MS && self.pending.len() <= MAX_PENDING {
                break;
            }
            self.write_next()?;
        }
        Ok(())
    }

    fn write_next(&mut self) -> io::Result<()> {
        let Some(Reverse(p)) = self.pending.pop() else {
            return Ok(());
        };
        let t = &mut self.tracks[p.track];
        let mut ts = p.ts;
        if let Some(last) = t.last_ms
            && ts <= last
        {
            if t.video.is_none() && ts < last {
                return Ok(()); // audio too late to keep its order: dropped
            }
            ts = last + 1;
        }
        self.mkv.write_frame(t.number, ts, p.keyframe, &p.data)?;
        t.frames += 1;
        t.bytes += p.data.len() as u64;
        t.first_ms.get_or_insert(ts);
        t.last_ms = Some(ts);
        Ok(())
    }

    /// Writes everything held (used when media goes quiet, so the file keeps up).
    pub fn flush(&mut self) -> io::Result<()> {
        while !self.pending.is_empty() {
            self.write_next()?;
        }
        self.mkv.flush_cluster()
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.mkv.bytes_written()
    }

    /// Writes the rest and the index, and closes the file at `at` (its duration is
    /// `at` minus the start).
    pub fn finish(mut self, at: Instant) -> io::Result<(W, FileSummary)> {
        while !self.pending.is_empty() {
            self.write_next()?;
        }
        let duration = at.saturating_duration_since(self.start);
        let tracks = self
            .tracks
            .iter()
            .map(|t| TrackSummary {
                track: t.track,
                codec: t.codec,
                frames: t.frames,
                bytes: t.bytes,
                first_ms: t.first_ms,
                last_ms: t.last_ms,
            })
            .collect();
        let path = self.path.take();
        let out = self.mkv.finish(duration.as_millis() as i64)?;
        let mut summary = FileSummary {
            path,
            bytes: 0,
            duration,
            tracks,
        };
        let mut out = out;
        summary.bytes = out.stream_position()?;
        Ok((out, summary))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VideoCodec;
    use crate::ids::CallId;
    use crate::recording::{Container, RecordingId, RecordingPlan, TrackPlan, TrackSource};
    use policy::Role;

    /// The writer's cost: `cargo test -p shopcall-sfu --release --lib -- --ignored
    /// --nocapture writer_cost`. One minute of a call (two Opus tracks at 50 packets/s, two
    /// VP8 tracks at 30 fps of 4 packets), into a file in the temp directory.
    #[test]
    #[ignore = "a measurement, run by hand"]
    fn writer_cost() {
        let at = Instant::now();
        let tracks = [Role::Merchant, Role::Customer]
            .into_iter()
            .flat_map(|role| {
                [
                    TrackPlan {
                        track: RecordedTrack {
                            role,
                            source: TrackSource::Microphone,
                        },
                        codec: RecordedCodec::Opus,
                    },
                    TrackPlan {
                        track: RecordedTrack {
                            role,
                            source: TrackSource::Camera,
                        },
                        codec: RecordedCodec::Video(VideoCodec::Vp8),
                    },
                ]
            })
            .collect();
        let start = RecordingStart {
            id: RecordingId::from_raw(1),
            call: CallId::from_raw(1),
            file: None,
            plan: RecordingPlan {
                tracks,
                container: Container::WebM,
            },
            at,
        };
        let path = std::env::temp_dir().join(format!("shopcall-cost-{}.webm", std::process::id()));
        let out = std::fs::File::create(&path).unwrap();
        let mut f = RecordingFile::new(out, &start).unwrap();
        let audio = Bytes::from(vec![0x78; 80]);
        let video_first = Bytes::from({
            let mut v = vec![0x10, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01];
            v.resize(1100, 0x55);
            v
        });
        let video_delta = Bytes::from({
            let mut v = vec![0x10, 0x01];
            v.resize(1100, 0x55);
            v
        });
        let video_next = Bytes::from(vec![0x00; 1100]);
        let mut packets = 0u64;
        let t0 = std::time::Instant::now();
        let mut seq = [0u16; 4];
        for ms in (0..60_000u64).step_by(10) {
            let now = at + Duration::from_millis(ms);
            for (i, plan) in start.plan.tracks.iter().enumerate() {
                let mut push = |payload: &Bytes, marker: bool, ts: u32| {
                    seq[i] = seq[i].wrapping_add(1);
                    f.push(&RecordedPacket {
                        id: start.id,
                        call: start.call,
                        track: plan.track,
                        codec: plan.codec,
                        ssrc: i as u32,
                        timestamp: ts,
                        sequence_number: seq[i],
                        marker,
                        payload: payload.clone(),
                        at: now,
                    })
                    .unwrap();
                    packets += 1;
                };
                match plan.codec {
                    RecordedCodec::Opus if ms % 20 == 0 => push(&audio, true, (ms * 48) as u32),
                    RecordedCodec::Video(_) if ms % 30 == 0 => {
                        let ts = (ms * 90) as u32;
                        let key = (ms / 30) % 60 == 0;
                        push(if key { &video_first } else { &video_delta }, false, ts);
                        push(&video_next, false, ts);
                        push(&video_next, false, ts);
                        push(&video_next, true, ts);
                    }
                    _ => {}
                }
            }
        }
        let (_, summary) = f.finish(at + Duration::from_secs(60)).unwrap();
        let elapsed = t0.elapsed();
        println!(
            "writer: {packets} packets, {} bytes, {:.0} ns/packet, {:.2} ms CPU per call-minute",
            summary.bytes,
            elapsed.as_nanos() as f64 / packets as f64,
            elapsed.as_secs_f64() * 1000.0
        );
        let _ = std::fs::remove_file(path);
    }
}
