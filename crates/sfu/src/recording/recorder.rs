//! Recorder: the writer thread. It takes the engine's [`RecordingOutput`]s through a
//! channel, writes one file per recording, and reports failures (and keyframe needs) back.
//!
//! The channel is bounded for packets ([`RecorderConfig::queue_packets`]; a packet that does
//! not fit is handed back to the caller, which counts it dropped) and never drops a start
//! or a stop. The thread owns every open file: nothing here touches the engine, and the
//! engine never waits for the disk.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::file::{FileSummary, RecordingFile, WriteError};
use super::{Container, RecordedTrack, RecordingId, RecordingOutput};
use crate::ids::CallId;

/// Settings of a [`Recorder`].
#[derive(Debug, Clone, Copy)]
pub struct RecorderConfig {
    /// Most packets queued to the thread; beyond it packets are dropped (and counted).
    pub queue_packets: usize,
    /// When no packet came for this long, whatever is held is written out.
    pub idle_flush: Duration,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig {
            queue_packets: 4096,
            idle_flush: Duration::from_millis(500),
        }
    }
}

/// A recording's output: a file, or anything else that writes and seeks (tests).
pub trait WriteSeek: Write + Seek + Send {}
impl<T: Write + Seek + Send> WriteSeek for T {}

/// Opens the output of a recording at a path.
pub type Opener = Arc<dyn Fn(&Path) -> io::Result<Box<dyn WriteSeek>> + Send + Sync>;

/// What the writer tells the driver about a recording.
#[derive(Debug)]
pub struct RecorderReport {
    /// The recording.
    pub id: RecordingId,
    /// Its call.
    pub call: CallId,
    /// What happened.
    pub kind: RecorderReportKind,
}

/// What happened to a recording on the writer's side.
#[derive(Debug)]
#[non_exhaustive]
pub enum RecorderReportKind {
    /// The file could not be opened or written: the recording is over (the driver tells
    /// the engine, which publishes `RecordingStopped { reason: WriteFailed }`).
    Failed(WriteError),
    /// A video frame was lost: ask the track's sender for a keyframe.
    KeyframeNeeded(RecordedTrack),
    /// The file is complete.
    Finished(FileSummary),
}

enum Msg {
    Output(RecordingOutput),
    Flush(mpsc::Sender<()>),
    Shutdown,
}

/// The writer thread and the channel to it.
pub struct Recorder {
    tx: mpsc::Sender<Msg>,
    in_flight: Arc<AtomicUsize>,
    capacity: usize,
    thread: Option<JoinHandle<()>>,
}

impl Recorder {
    /// Starts the writer thread; `report` is called on it for every [`RecorderReport`].
    pub fn spawn(
        config: RecorderConfig,
        report: impl Fn(RecorderReport) + Send + 'static,
    ) -> io::Result<Recorder> {
        let opener: Opener = Arc::new(|path: &Path| {
            // The driver reserved the file (created it empty); open it for writing.
            let f: File = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)?;
            Ok(Box::new(f) as Box<dyn WriteSeek>)
        });
        Recorder::with_opener(config, opener, report)
    }

    /// Starts the writer thread with a custom way to open outputs (tests inject failing
    /// writers with it).
    pub fn with_opener(
        config: RecorderConfig,
        opener: Opener,
        report: impl Fn(RecorderReport) + Send + 'static,
    ) -> io::Result<Recorder> {
        let (tx, rx) = mpsc::channel();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let counter = in_flight.clone();
        let thread = std::thread::Builder::new()
            .name("shopcall-recorder".to_owned())
            .spawn(move || run(rx, counter, opener, config.idle_flush, report))?;
        Ok(Recorder {
            tx,
            in_flight,
            capacity: config.queue_packets.max(1),
            thread: Some(thread),
        })
    }

    /// Hands one output to the writer. A packet that does not fit in the queue is handed
    /// back (`Err`): count it as dropped. Starts and stops always go.
    pub fn send(&self, output: RecordingOutput) -> Result<(), RecordingOutput> {
        if matches!(output, RecordingOutput::Packet(_)) {
            if self.in_flight.load(Ordering::Relaxed) >= self.capacity {
                return Err(output);
            }
            self.in_flight.fetch_add(1, Ordering::Relaxed);
        }
        self.tx.send(Msg::Output(output)).map_err(|e| match e.0 {
            Msg::Output(o) => o,
            _ => unreachable!("only outputs are sent here"),
        })
    }

    /// Blocks until everything sent so far is processed and written out.
    pub fn flush(&self) {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    /// Finishes every open file and waits for the thread to end.
    pub fn shutdown(mut self) {
        let _ = self.tx.send(Msg::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // Without waiting: the thread finishes the open files on its own.
        let _ = self.tx.send(Msg::Shutdown);
    }
}

struct Open {
    call: CallId,
    file: RecordingFile<Box<dyn WriteSeek>>,
    path: PathBuf,
}

fn run(
    rx: mpsc::Receiver<Msg>,
    in_flight: Arc<AtomicUsize>,
    opener: Opener,
    idle_flush: Duration,
    report: impl Fn(RecorderReport),
) {
    let mut open: HashMap<RecordingId, Open> = HashMap::new();
    let mut dirty = false;
    let fail = |open: &mut HashMap<RecordingId, Open>, id: RecordingId, e: io::Error| {
        if let Some(o) = open.remove(&id) {
            tracing::warn!(recording = %id, call = %o.call, path = %o.path.display(), error = %e, "recording write failed");
            report(RecorderReport {
                id,
                call: o.call,
                kind: RecorderReportKind::Failed(WriteError::Write {
                    path: o.path,
                    source: e,
                }),
            });
        }
    };
    loop {
        let msg = match rx.recv_timeout(idle_flush) {
            Ok(m) => m,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if dirty {
                    dirty = false;
                    let ids: Vec<RecordingId> = open.keys().copied().collect();
                    for id in ids {
                        if let Some(o) = open.get_mut(&id)
                            && let Err(e) = o.file.flush()
                        {
                            fail(&mut open, id, e);
                        }
                    }
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Msg::Shutdown,
        };
        match msg {
            Msg::Output(RecordingOutput::Start(start)) => {
                let path = start.file.clone().unwrap_or_default();
                if start.file.is_none() {
                    continue; // an embedder's recording without a file: nothing to write
                }
                let opened = opener(&path).and_then(|out| RecordingFile::new(out, &start));
                match opened {
                    Ok(file) => {
                        tracing::info!(recording = %start.id, call = %start.call, path = %path.display(), "recording file opened");
                        open.insert(
                            start.id,
                            Open {
                                call: start.call,
                                file,
                                path,
                            },
                        );
                    }
                    Err(source) => report(RecorderReport {
                        id: start.id,
                        call: start.call,
                        kind: RecorderReportKind::Failed(WriteError::Open { path, source }),
                    }),
                }
            }
            Msg::Output(RecordingOutput::Packet(p)) => {
                in_flight.fetch_sub(1, Ordering::Relaxed);
                let Some(o) = open.get_mut(&p.id) else {
                    continue;
                };
                dirty = true;
                match o.file.push(&p) {
                    Ok(None) => {}
                    Ok(Some(track)) => report(RecorderReport {
                        id: p.id,
                        call: p.call,
                        kind: RecorderReportKind::KeyframeNeeded(track),
                    }),
                    Err(e) => fail(&mut open, p.id, e),
                }
            }
            Msg::Output(RecordingOutput::Stop { id, at, .. }) => {
                if let Some(o) = open.remove(&id) {
                    finish(o, id, at, &report);
                }
            }
            Msg::Flush(done) => {
                let ids: Vec<RecordingId> = open.keys().copied().collect();
                for id in ids {
                    if let Some(o) = open.get_mut(&id)
                        && let Err(e) = o.file.flush()
                    {
                        fail(&mut open, id, e);
                    }
                }
                let _ = done.send(());
            }
            Msg::Shutdown => {
                let now = Instant::now();
                for (id, o) in open.drain() {
                    finish(o, id, now, &report);
                }
                return;
            }
        }
    }
}

fn finish(o: Open, id: RecordingId, at: Instant, report: &impl Fn(RecorderReport)) {
    let kind = match o.file.finish(at) {
        Ok((_, mut summary)) => {
            summary.path = Some(o.path);
            tracing::info!(recording = %id, call = %o.call, bytes = summary.bytes, duration_ms = summary.duration.as_millis() as u64, "recording file finished");
            RecorderReportKind::Finished(summary)
        }
        Err(source) => {
            tracing::warn!(recording = %id, call = %o.call, error = %source, "recording file could not be finished");
            RecorderReportKind::Failed(WriteError::Write {
                path: o.path,
                source,
            })
        }
    };
    report(RecorderReport {
        id,
        call: o.call,
        kind,
    });
}

/// Why recordings cannot be written where configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordingDirError {
    /// No `recording_dir` is configured: this server does not record.
    #[error("no recording directory is configured (recording_dir): this server does not record")]
    NotConfigured,
    /// The directory does not exist.
    #[error("recording directory {0} does not exist")]
    NotFound(PathBuf),
    /// The path is not a directory.
    #[error("recording directory {0} is not a directory")]
    NotADirectory(PathBuf),
    /// A file cannot be created in it (permissions, a read-only file system...).
    #[error("recording directory {path} is not writable: {kind}")]
    NotWritable {
        /// The directory.
        path: PathBuf,
        /// The OS error's kind.
        kind: io::ErrorKind,
    },
    /// The recording's file could not be created.
    #[error("cannot create recording file {path}: {kind}")]
    CannotCreate {
        /// The file.
        path: PathBuf,
        /// The OS error's kind.
        kind: io::ErrorKind,
    },
}

/// Checks that `dir` exists, is a directory, and that a file can be created in it (by
/// creating and removing one).
pub fn check_dir(dir: &Path) -> Result<(), RecordingDirError> {
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(RecordingDirError::NotFound(dir.to_owned()));
        }
        Err(e) => {
            return Err(RecordingDirError::NotWritable {
                path: dir.to_owned(),
                kind: e.kind(),
            });
        }
    };
    if !meta.is_dir() {
        return Err(RecordingDirError::NotADirectory(dir.to_owned()));
    }
    let probe = dir.join(format!(".shopcall-write-test-{}", std::process::id()));
    match OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(RecordingDirError::NotWritable {
            path: dir.to_owned(),
            kind: e.kind(),
        }),
    }
}

/// A recording's file name: `{call_id}-{unix_time}.{webm|mkv}`, with `-{n}` before the
/// extension from the second file of one call in one second.
pub fn file_name(call: CallId, unix_secs: u64, container: Container, n: u32) -> String {
    if n <= 1 {
        format!("{call}-{unix_secs}.{}", container.extension())
    } else {
        format!("{call}-{unix_secs}-{n}.{}", container.extension())
    }
}

/// Creates the file of a new recording in `dir` (never overwriting one), returning its path.
pub fn reserve_file(
    dir: &Path,
    call: CallId,
    unix_secs: u64,
    container: Container,
) -> Result<PathBuf, RecordingDirError> {
    for n in 1..=100 {
        let path = dir.join(file_name(call, unix_secs, container, n));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(_) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(RecordingDirError::NotFound(dir.to_owned()));
            }
            Err(e) => {
                return Err(RecordingDirError::CannotCreate {
                    path,
                    kind: e.kind(),
                });
            }
        }
    }
    Err(RecordingDirError::CannotCreate {
        path: dir.join(file_name(call, unix_secs, container, 100)),
        kind: io::ErrorKind::AlreadyExists,
    })
}
