//! Mkv: a small Matroska / WebM writer (EBML), written for recordings.
//!
//! It writes incrementally with bounded memory: the header (EBML header, Segment of unknown
//! size, a reserved SeekHead, Info, Tracks in a reserved region), then one Cluster at a time
//! (at most [`CLUSTER_MAX_MS`] of media or [`CLUSTER_MAX_BYTES`], and a new one at each video
//! keyframe), each written whole with one `write`. [`MkvWriter::finish`] appends the Cues and
//! goes back to fill in the SeekHead, the Duration and the Segment size. A file whose writer
//! never finished (a crash, a full disk) is still readable up to its last cluster: the
//! Segment's size says "unknown" until then.
//!
//! Only what recordings need: SimpleBlocks without lacing, millisecond timestamps,
//! `A_OPUS`, `V_VP8`, `V_VP9` and `V_MPEG4/ISO/AVC`. Track metadata learnt late (a video's
//! size from its first keyframe, H.264's SPS/PPS) is rewritten in place with
//! [`MkvWriter::update_track`]; the Tracks region keeps room for it.

use std::io::{self, Seek, SeekFrom, Write};

/// Longest span of one cluster, in milliseconds.
pub const CLUSTER_MAX_MS: i64 = 1000;
/// Largest cluster body held in memory before it is written.
pub const CLUSTER_MAX_BYTES: usize = 1 << 20;
/// Bytes reserved for the Tracks element (the rest of the region is an EBML Void).
const TRACKS_REGION: usize = 4096;
/// Bytes reserved for the SeekHead.
const SEEKHEAD_REGION: usize = 96;
/// Most cue points kept (one per cluster with a video keyframe; about 27 hours at one per
/// second). Beyond it, no more cues: the file stays valid, seeking gets coarser.
const MAX_CUES: usize = 100_000;

mod id {
    pub const EBML: u32 = 0x1A45_DFA3;
    pub const EBML_VERSION: u32 = 0x4286;
    pub const EBML_READ_VERSION: u32 = 0x42F7;
    pub const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
    pub const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
    pub const DOC_TYPE: u32 = 0x4282;
    pub const DOC_TYPE_VERSION: u32 = 0x4287;
    pub const DOC_TYPE_READ_VERSION: u32 = 0x4285;
    pub const SEGMENT: u32 = 0x1853_8067;
    pub const SEEK_HEAD: u32 = 0x114D_9B74;
    pub const SEEK: u32 = 0x4DBB;
    pub const SEEK_ID: u32 = 0x53AB;
    pub const SEEK_POSITION: u32 = 0x53AC;
    pub const INFO: u32 = 0x1549_A966;
    pub const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
    pub const MUXING_APP: u32 = 0x4D80;
    pub const WRITING_APP: u32 = 0x5741;
    pub const DURATION: u32 = 0x4489;
    pub const TRACKS: u32 = 0x1654_AE6B;
    pub const TRACK_ENTRY: u32 = 0xAE;
    pub const TRACK_NUMBER: u32 = 0xD7;
    pub const TRACK_UID: u32 = 0x73C5;
    pub const TRACK_TYPE: u32 = 0x83;
    pub const FLAG_LACING: u32 = 0x9C;
    pub const NAME: u32 = 0x536E;
    pub const LANGUAGE: u32 = 0x22_B59C;
    pub const CODEC_ID: u32 = 0x86;
    pub const CODEC_PRIVATE: u32 = 0x63A2;
    pub const CODEC_DELAY: u32 = 0x56AA;
    pub const SEEK_PRE_ROLL: u32 = 0x56BB;
    pub const VIDEO: u32 = 0xE0;
    pub const PIXEL_WIDTH: u32 = 0xB0;
    pub const PIXEL_HEIGHT: u32 = 0xBA;
    pub const AUDIO: u32 = 0xE1;
    pub const SAMPLING_FREQUENCY: u32 = 0xB5;
    pub const CHANNELS: u32 = 0x9F;
    pub const CLUSTER: u32 = 0x1F43_B675;
    pub const TIMESTAMP: u32 = 0xE7;
    pub const SIMPLE_BLOCK: u32 = 0xA3;
    pub const CUES: u32 = 0x1C53_BB6B;
    pub const CUE_POINT: u32 = 0xBB;
    pub const CUE_TIME: u32 = 0xB3;
    pub const CUE_TRACK_POSITIONS: u32 = 0xB7;
    pub const CUE_TRACK: u32 = 0xF7;
    pub const CUE_CLUSTER_POSITION: u32 = 0xF1;
    pub const VOID: u32 = 0xEC;
}

/// What kind of track, with its kind's settings.
#[derive(Debug, Clone, PartialEq)]
pub enum TrackKind {
    /// A video track: its picture size (a placeholder until the first keyframe says).
    Video {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// An audio track.
    Audio {
        /// Sampling rate, Hz.
        sampling_frequency: f64,
        /// Channels.
        channels: u32,
    },
}

/// One track of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    /// Its number in blocks (1-based, below 127).
    pub number: u8,
    /// Its unique id.
    pub uid: u64,
    /// Its name (e.g. `customer camera`).
    pub name: String,
    /// Matroska codec id, e.g. `V_VP8`.
    pub codec_id: &'static str,
    /// Codec setup (`OpusHead`, the AVC decoder configuration record).
    pub codec_private: Option<Vec<u8>>,
    /// Samples the decoder must drop at the start, in ns (Opus pre-skip).
    pub codec_delay_ns: u64,
    /// Decoding to drop after a seek, in ns (Opus: 80 ms).
    pub seek_pre_roll_ns: u64,
    /// Video or audio settings.
    pub kind: TrackKind,
}

/// Writes one Matroska segment to `W`.
pub struct MkvWriter<W: Write + Seek> {
    out: W,
    /// Bytes written so far (the file position at the end).
    pos: u64,
    /// Where the Segment's 8-byte size field is.
    segment_size_at: u64,
    /// Where the Segment's body starts (positions in SeekHead and Cues are relative to it).
    segment_start: u64,
    seekhead_at: u64,
    info_at: u64,
    duration_at: u64,
    tracks_at: u64,
    tracks: Vec<Track>,
    /// The open cluster: its timestamp, and its body so far (Timestamp + SimpleBlocks).
    cluster_ts: Option<i64>,
    cluster: Vec<u8>,
    cluster_has_keyframe: bool,
    cues: Vec<(u64, u8, u64)>,
    last_ts: i64,
    scratch: Vec<u8>,
}

impl<W: Write + Seek> MkvWriter<W> {
    /// Writes the file header with `doc_type` (`webm` or `matroska`) and `tracks`.
    pub fn new(mut out: W, doc_type: &str, tracks: Vec<Track>) -> io::Result<MkvWriter<W>> {
        let mut b = Vec::with_capacity(TRACKS_REGION + 512);
        master(&mut b, id::EBML, |b| {
            uint(b, id::EBML_VERSION, 1);
            uint(b, id::EBML_READ_VERSION, 1);
            uint(b, id::EBML_MAX_ID_LENGTH, 4);
            uint(b, id::EBML_MAX_SIZE_LENGTH, 8);
            string(b, id::DOC_TYPE, doc_type);
            uint(b, id::DOC_TYPE_VERSION, 4);
            uint(b, id::DOC_TYPE_READ_VERSION, 2);
        });
        write_id(&mut b, id::SEGMENT);
        let segment_size_at = b.len() as u64;
        b.extend_from_slice(&UNKNOWN_SIZE);
        let segment_start = b.len() as u64;
        let seekhead_at = b.len() as u64;
        void(&mut b, SEEKHEAD_REGION);
        let info_at = b.len() as u64;
        let mut duration_offset = 0;
        master(&mut b, id::INFO, |b| {
            uint(b, id::TIMESTAMP_SCALE, 1_000_000);
            string(b, id::MUXING_APP, "shopcall");
            string(b, id::WRITING_APP, "shopcall");
            write_id(b, id::DURATION);
            write_size(b, 8);
            duration_offset = b.len();
            b.extend_from_slice(&0f64.to_be_bytes());
        });
        let duration_at = duration_offset as u64;
        let tracks_at = b.len() as u64;
        let region = tracks_region(&tracks)?;
        b.extend_from_slice(&region);
        out.write_all(&b)?;
        Ok(MkvWriter {
            out,
            pos: b.len() as u64,
            segment_size_at,
            segment_start,
            seekhead_at,
            info_at,
            duration_at,
            tracks_at,
            tracks,
            cluster_ts: None,
            cluster: Vec::with_capacity(64 * 1024),
            cluster_has_keyframe: false,
            cues: Vec::new(),
            last_ts: 0,
            scratch: Vec::new(),
        })
    }

    /// The tracks as declared (and updated).
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// Bytes written to the output so far.
    pub fn bytes_written(&self) -> u64 {
        self.pos
    }

    /// Replaces track `number`'s entry (its picture size, its codec private data) and
    /// rewrites the Tracks element in place. Fails with `InvalidInput` if the result no
    /// longer fits the reserved region (nothing is written then).
    pub fn update_track(&mut self, track: Track) -> io::Result<()> {
        let Some(i) = self.tracks.iter().position(|t| t.number == track.number) else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no such track"));
        };
        let mut tracks = self.tracks.clone();
        tracks[i] = track;
        let region = tracks_region(&tracks)?;
        self.out.seek(SeekFrom::Start(self.tracks_at))?;
        self.out.write_all(&region)?;
        self.out.seek(SeekFrom::Start(self.pos))?;
        self.tracks = tracks;
        Ok(())
    }

    /// Adds one frame of track `number` at `ts_ms` (milliseconds from the start; clamped to
    /// be at least 0 and not below the previous frame's). Frames should come in timestamp
    /// order across tracks; the caller interleaves.
    pub fn write_frame(
        &mut self,
        number: u8,
        ts_ms: i64,
        keyframe: bool,
        data: &[u8],
    ) -> io::Result<()> {
        let ts = ts_ms.max(0);
        let video = self
            .tracks
            .iter()
            .any(|t| t.number == number && matches!(t.kind, TrackKind::Video { .. }));
        if let Some(start) = self.cluster_ts {
            let rel = ts - start;
            let full = rel >= CLUSTER_MAX_MS
                || !(i16::MIN as i64..=i16::MAX as i64).contains(&rel)
                || self.cluster.len() + data.len() > CLUSTER_MAX_BYTES;
            if full || (video && keyframe && self.cluster.len() > 16) {
                self.flush_cluster()?;
            }
        }
        let start = match self.cluster_ts {
            Some(t) => t,
            None => {
                self.cluster.clear();
                self.cluster_has_keyframe = false;
                uint(&mut self.cluster, id::TIMESTAMP, ts as u64);
                self.cluster_ts = Some(ts);
                ts
            }
        };
        if video && keyframe && !self.cluster_has_keyframe && self.cues.len() < MAX_CUES {
            self.cluster_has_keyframe = true;
            // The cluster is written next, at the current end of the file.
            self.cues
                .push((ts as u64, number, self.pos - self.segment_start));
        }
        let rel = (ts - start) as i16;
        write_id(&mut self.cluster, id::SIMPLE_BLOCK);
        write_size(&mut self.cluster, (4 + data.len()) as u64);
        self.cluster.push(0x80 | number);
        self.cluster.extend_from_slice(&rel.to_be_bytes());
        self.cluster.push(if keyframe { 0x80 } else { 0x00 });
        self.cluster.extend_from_slice(data);
        self.last_ts = self.last_ts.max(ts);
        Ok(())
    }

    /// Writes the open cluster, if any, and flushes the output.
    pub fn flush_cluster(&mut self) -> io::Result<()> {
        if self.cluster_ts.take().is_none() {
            return Ok(());
        }
        self.scratch.clear();
        write_id(&mut self.scratch, id::CLUSTER);
        write_size_8(&mut self.scratch, self.cluster.len() as u64);
        self.out.write_all(&self.scratch)?;
        self.out.write_all(&self.cluster)?;
        self.out.flush()?;
        self.pos += (self.scratch.len() + self.cluster.len()) as u64;
        self.cluster.clear();
        Ok(())
    }

    /// Writes the last cluster and the Cues, fills in the SeekHead, the Duration
    /// (`duration_ms`, or the last frame's timestamp if larger) and the Segment size, and
    /// returns the output.
    pub fn finish(mut self, duration_ms: i64) -> io::Result<W> {
        self.flush_cluster()?;
        let cues_at = self.pos;
        let mut b = Vec::new();
        if !self.cues.is_empty() {
            master(&mut b, id::CUES, |b| {
                for (time, track, cluster) in &self.cues {
                    master(b, id::CUE_POINT, |b| {
                        uint(b, id::CUE_TIME, *time);
                        master(b, id::CUE_TRACK_POSITIONS, |b| {
                            uint(b, id::CUE_TRACK, u64::from(*track));
                            uint(b, id::CUE_CLUSTER_POSITION, *cluster);
                        });
                    });
                }
            });
            self.out.write_all(&b)?;
            self.pos += b.len() as u64;
        }
        // SeekHead, in its reserved region.
        let mut seek = Vec::with_capacity(SEEKHEAD_REGION);
        let rel = |at: u64| at - self.segment_start;
        master(&mut seek, id::SEEK_HEAD, |s| {
            let mut entries = vec![
                (id::INFO, rel(self.info_at)),
                (id::TRACKS, rel(self.tracks_at)),
            ];
            if !self.cues.is_empty() {
                entries.push((id::CUES, rel(cues_at)));
            }
            for (element, at) in entries {
                master(s, id::SEEK, |s| {
                    let mut idb = Vec::with_capacity(4);
                    write_id(&mut idb, element);
                    binary(s, id::SEEK_ID, &idb);
                    uint(s, id::SEEK_POSITION, at);
                });
            }
        });
        if seek.len() + 2 <= SEEKHEAD_REGION {
            let rest = SEEKHEAD_REGION - seek.len();
            void(&mut seek, rest);
            self.out.seek(SeekFrom::Start(self.seekhead_at))?;
            self.out.write_all(&seek)?;
        }
        let duration = duration_ms.max(self.last_ts).max(0) as f64;
        self.out.seek(SeekFrom::Start(self.duration_at))?;
        self.out.write_all(&duration.to_be_bytes())?;
        self.out.seek(SeekFrom::Start(self.segment_size_at))?;
        let mut size = Vec::with_capacity(8);
        write_size_8(&mut size, self.pos - self.segment_start);
        self.out.write_all(&size)?;
        self.out.seek(SeekFrom::Start(self.pos))?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The "unknown" size, 8 bytes long (so it can be replaced in place).
const UNKNOWN_SIZE: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

/// The Tracks element padded with a Void to exactly [`TRACKS_REGION`] bytes.
fn tracks_region(tracks: &[Track]) -> io::Result<Vec<u8>> {
    let mut b = Vec::with_capacity(TRACKS_REGION);
    master(&mut b, id::TRACKS, |b| {
        for t in tracks {
            master(b, id::TRACK_ENTRY, |b| {
                uint(b, id::TRACK_NUMBER, u64::from(t.number));
                uint(b, id::TRACK_UID, t.uid);
                let video = matches!(t.kind, TrackKind::Video { .. });
                uint(b, id::TRACK_TYPE, if video { 1 } else { 2 });
                uint(b, id::FLAG_LACING, 0);
                string(b, id::NAME, &t.name);
                string(b, id::LANGUAGE, "und");
                string(b, id::CODEC_ID, t.codec_id);
                if let Some(p) = &t.codec_private {
                    binary(b, id::CODEC_PRIVATE, p);
                }
                if t.codec_delay_ns > 0 {
                    uint(b, id::CODEC_DELAY, t.codec_delay_ns);
                }
                if t.seek_pre_roll_ns > 0 {
                    uint(b, id::SEEK_PRE_ROLL, t.seek_pre_roll_ns);
                }
                match t.kind {
                    TrackKind::Video { width, height } => master(b, id::VIDEO, |b| {
                        uint(b, id::PIXEL_WIDTH, u64::from(width));
                        uint(b, id::PIXEL_HEIGHT, u64::from(height));
                    }),
                    TrackKind::Audio {
                        sampling_frequency,
                        channels,
                    } => master(b, id::AUDIO, |b| {
                        float(b, id::SAMPLING_FREQUENCY, sampling_frequency);
                        uint(b, id::CHANNELS, u64::from(channels));
                    }),
                }
            });
        }
    });
    if b.len() + 2 > TRACKS_REGION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "track headers do not fit the reserved region",
        ));
    }
    let rest = TRACKS_REGION - b.len();
    void(&mut b, rest);
    Ok(b)
}

fn write_id(b: &mut Vec<u8>, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = bytes.iter().take_while(|x| **x == 0).count();
    b.extend_from_slice(&bytes[skip..]);
}

/// An EBML size in as few bytes as it takes.
fn write_size(b: &mut Vec<u8>, size: u64) {
    let mut len = 1;
    while len < 8 && size >= (1u64 << (7 * len)) - 1 {
        len += 1;
    }
    let v = size | (1u64 << (7 * len));
    b.extend_from_slice(&v.to_be_bytes()[8 - len..]);
}

/// An EBML size in exactly 8 bytes.
fn write_size_8(b: &mut Vec<u8>, size: u64) {
    b.extend_from_slice(&(size | (1u64 << 56)).to_be_bytes());
}

fn uint(b: &mut Vec<u8>, id: u32, v: u64) {
    write_id(b, id);
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|x| **x == 0).count().min(7);
    write_size(b, (8 - skip) as u64);
    b.extend_from_slice(&bytes[skip..]);
}

fn float(b: &mut Vec<u8>, id: u32, v: f64) {
    write_id(b, id);
    write_size(b, 8);
    b.extend_from_slice(&v.to_be_bytes());
}

fn string(b: &mut Vec<u8>, id: u32, s: &str) {
    binary(b, id, s.as_bytes());
}

fn binary(b: &mut Vec<u8>, id: u32, data: &[u8]) {
    write_id(b, id);
    write_size(b, data.len() as u64);
    b.extend_from_slice(data);
}

/// A master element: id, an 8-byte size, then what `body` writes.
fn master(b: &mut Vec<u8>, id: u32, body: impl FnOnce(&mut Vec<u8>)) {
    write_id(b, id);
    let size_at = b.len();
    b.extend_from_slice(&[0; 8]);
    let start = b.len();
    body(b);
    let mut size = Vec::with_capacity(8);
    write_size_8(&mut size, (b.len() - start) as u64);
    b[size_at..start].copy_from_slice(&size);
}

/// An EBML Void of exactly `total` bytes (at least 2).
fn void(b: &mut Vec<u8>, total: usize) {
    debug_assert!(total >= 2);
    write_id(b, id::VOID);
    if total >= 9 {
        write_size_8(b, (total - 9) as u64);
        b.resize(b.len() + total - 9, 0);
    } else {
        write_size(b, (total - 2) as u64);
        b.resize(b.len() + total - 2, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn opus_track() -> Track {
        Track {
            number: 1,
            uid: 1,
            name: "merchant microphone".into(),
            codec_id: "A_OPUS",
            codec_private: Some(b"OpusHead".to_vec()),
            codec_delay_ns: 0,
            seek_pre_roll_ns: 80_000_000,
            kind: TrackKind::Audio {
                sampling_frequency: 48_000.0,
                channels: 2,
            },
        }
    }

    #[test]
    fn sizes_are_minimal_and_ids_keep_their_marker() {
        let mut b = Vec::new();
        write_size(&mut b, 0);
        write_size(&mut b, 126);
        write_size(&mut b, 127);
        write_size(&mut b, 16_382);
        write_size(&mut b, 16_383);
        assert_eq!(b, [0x80, 0xFE, 0x40, 0x7F, 0x7F, 0xFE, 0x20, 0x3F, 0xFF]);
        let mut b = Vec::new();
        write_id(&mut b, id::SEGMENT);
        write_id(&mut b, id::SIMPLE_BLOCK);
        assert_eq!(b, [0x18, 0x53, 0x80, 0x67, 0xA3]);
        let mut b = Vec::new();
        uint(&mut b, id::TRACK_NUMBER, 0);
        assert_eq!(b, [0xD7, 0x81, 0x00]);
    }

    #[test]
    fn voids_fill_exactly() {
        for n in 2..40 {
            let mut b = Vec::new();
            void(&mut b, n);
            assert_eq!(b.len(), n);
        }
    }

    #[test]
    fn clusters_flush_on_time_and_the_file_is_patched_at_the_end() {
        let mut w = MkvWriter::new(Cursor::new(Vec::new()), "webm", vec![opus_track()]).unwrap();
        let header = w.bytes_written();
        for i in 0..100 {
            w.write_frame(1, i * 20, true, &[0xAA; 50]).unwrap();
        }
        // 2 s of audio: at least one cluster is out already, with bounded memory.
        assert!(w.bytes_written() > header);
        assert!(w.cluster.len() < 64 * 1024);
        let out = w.finish(2000).unwrap().into_inner();
        // The segment size is known now.
        let seg = out
            .windows(4)
            .position(|x| x == [0x18, 0x53, 0x80, 0x67])
            .unwrap();
        assert_ne!(&out[seg + 4..seg + 12], &UNKNOWN_SIZE);
        // Duration 2000 ms.
        let dur = out.windows(2).position(|x| x == [0x44, 0x89]).unwrap();
        let v = f64::from_be_bytes(out[dur + 3..dur + 11].try_into().unwrap());
        assert_eq!(v, 2000.0);
    }

    #[test]
    fn a_track_update_fits_in_place() {
        let mut video = opus_track();
        video.number = 2;
        video.codec_id = "V_VP8";
        video.kind = TrackKind::Video {
            width: 16,
            height: 16,
        };
        let mut w = MkvWriter::new(
            Cursor::new(Vec::new()),
            "webm",
            vec![opus_track(), video.clone()],
        )
        .unwrap();
        w.write_frame(2, 0, true, &[1, 2, 3]).unwrap();
        let before = w.bytes_written();
        video.kind = TrackKind::Video {
            width: 1280,
            height: 720,
        };
        w.update_track(video.clone()).unwrap();
        assert_eq!(w.bytes_written(), before, "rewritten in place");
        assert_eq!(w.tracks()[1], video);
        video.codec_private = Some(vec![0; TRACKS_REGION]);
        assert!(
            w.update_track(video).is_err(),
            "too big: refused, nothing written"
        );
    }
}
