//! Driver: the tokio task that owns the [`Engine`], the media socket and the clock.
//!
//! The only module that imports tokio, opens sockets or reads the clock. Embedders use
//! [`SfuHandle`]: a cheap, cloneable handle whose async methods send requests to the task.
//!
//! Each loop turn: send every queued datagram, publish every event, then wait for the first
//! of: datagrams (at most `max_datagrams_per_turn` are read before timers and requests get a
//! turn), a request, or the engine's next deadline.

mod recording;
mod udp;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{broadcast, mpsc, oneshot};

use crate::call::{CallOptions, CreatedCall};
use crate::config::{ConfigError, SfuConfig};
use crate::engine::{Engine, JoinAnswer, JoinRequest};
use crate::error::Error;
use crate::event::{EndReason, Event};
use crate::ids::{CallId, ParticipantId};
use crate::stats::{CallStats, EngineMetrics};
use policy::{Lens, Role};
use udp::{Datagram, MediaSocket};

/// Events buffered per subscriber before a slow one starts missing them.
const EVENT_BUFFER: usize = 4096;
/// Requests queued to the driver before callers wait.
const COMMAND_BUFFER: usize = 1024;

/// Why the SFU could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The media socket could not be bound.
    #[error("cannot bind the media UDP socket to {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The engine could not be created.
    #[error("cannot create the engine: {0}")]
    Engine(Error),
    /// The recording directory cannot be used.
    #[error("cannot record: {0}")]
    Recording(#[from] crate::recording::RecordingDirError),
    /// The recording writer thread could not be started.
    #[error("cannot start the recording writer thread: {0}")]
    RecorderThread(std::io::Error),
}

/// A request to the driver: a closure run on the engine with the current time. Control
/// requests are rare; one boxed closure each keeps the handle small and uniform.
type EngineTask = Box<dyn FnOnce(&mut Engine, Instant) + Send>;

enum Command {
    Run(EngineTask),
    Shutdown(oneshot::Sender<()>),
}

struct Shared {
    media_addr: SocketAddr,
    candidates: Vec<SocketAddr>,
    events: broadcast::WeakSender<Event>,
    recording_dir: Option<std::path::PathBuf>,
}

/// A handle to a running SFU. Clone it freely; every clone talks to the same driver task.
#[derive(Clone)]
pub struct SfuHandle {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

impl SfuHandle {
    /// Binds the media socket, creates the engine and spawns the driver task on the current
    /// tokio runtime.
    pub async fn start(config: SfuConfig) -> Result<SfuHandle, StartError> {
        config.validate()?;
        let recorder = match &config.recording_dir {
            Some(dir) => Some(recording::RecorderLink::start(dir)?),
            None => None,
        };
        let socket =
            MediaSocket::bind(config.udp_bind, config.udp_socket_buffer).map_err(|source| {
                StartError::Bind {
                    addr: config.udp_bind,
                    source,
                }
            })?;
        let media_addr = socket.local_addr();
        let candidates: Vec<SocketAddr> = announce_ips(&config, media_addr)
            .into_iter()
            .map(|ip| SocketAddr::new(ip, media_addr.port()))
            .collect();
        let engine = Engine::new(config.clone(), candidates.clone()).map_err(StartError::Engine)?;
        tracing::info!(%media_addr, ?candidates, "media socket bound");
        let (commands, command_rx) = mpsc::channel(COMMAND_BUFFER);
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let shared = Arc::new(Shared {
            media_addr,
            candidates: candidates.clone(),
            recording_dir: config.recording_dir.clone(),
            events: events.downgrade(),
        });
        let src_ips = source_ips(&config, &candidates);
        tokio::spawn(run(
            engine, socket, command_rx, events, config, src_ips, recorder,
        ));
        Ok(SfuHandle { commands, shared })
    }

    /// The address the media socket is bound to.
    pub fn media_addr(&self) -> SocketAddr {
        self.shared.media_addr
    }

    /// The host candidates announced to clients.
    pub fn candidates(&self) -> &[SocketAddr] {
        &self.shared.candidates
    }

    /// A receiver of every event from now on. A subscriber that falls more than 4096 events
    /// behind misses some (`RecvError::Lagged`). Fails once the driver has stopped.
    pub fn subscribe(&self) -> Result<broadcast::Receiver<Event>, Error> {
        self.shared
            .events
            .upgrade()
            .map(|s| s.subscribe())
            .ok_or(Error::Stopped)
    }

    /// Runs `f` on the engine inside the driver task and returns its result.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Engine, Instant) -> T + Send + 'static,
    ) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        let command = Command::Run(Box::new(move |engine, now| {
            let _ = tx.send(f(engine, now));
        }));
        self.commands
            .send(command)
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Creates a call. See [`Engine::create_call`].
    pub async fn create_call(&self, options: CallOptions) -> Result<CreatedCall, Error> {
        self.run(move |e, now| e.create_call(options, now)).await?
    }

    /// The callee answers. See [`Engine::answer`].
    pub async fn answer(&self, call: CallId, by: Role) -> Result<(), Error> {
        self.run(move |e, now| e.answer(call, by, now)).await?
    }

    /// The callee declines. See [`Engine::decline`].
    pub async fn decline(&self, call: CallId, by: Role) -> Result<(), Error> {
        self.run(move |e, now| e.decline(call, by, now)).await?
    }

    /// Turns a camera on or off. See [`Engine::set_camera`].
    pub async fn set_camera(
        &self,
        call: CallId,
        actor: Role,
        target: Role,
        lens: Option<Lens>,
    ) -> Result<(), Error> {
        self.run(move |e, now| e.set_camera(call, actor, target, lens, now))
            .await?
    }

    /// Asks the other side to turn its camera on. See [`Engine::request_camera`].
    pub async fn request_camera(
        &self,
        call: CallId,
        actor: Role,
        target: Role,
    ) -> Result<(), Error> {
        self.run(move |e, _| e.request_camera(call, actor, target))
            .await?
    }

    /// Joins a participant. See [`Engine::join`].
    pub async fn join(&self, call: CallId, request: JoinRequest) -> Result<JoinAnswer, Error> {
        self.run(move |e, now| e.join(call, request, now)).await?
    }

    /// Adds a trickled remote candidate. See [`Engine::add_ice_candidate`].
    pub async fn add_ice_candidate(
        &self,
        participant: ParticipantId,
        candidate: String,
    ) -> Result<(), Error> {
        self.run(move |e, now| e.add_ice_candidate(participant, &candidate, now))
            .await?
    }

    /// Restarts ICE after a network change. See [`Engine::restart_ice`].
    pub async fn restart_ice(
        &self,
        participant: ParticipantId,
        offer_sdp: String,
    ) -> Result<String, Error> {
        self.run(move |e, now| e.restart_ice(participant, offer_sdp, now))
            .await?
    }

    /// Removes a participant. See [`Engine::leave`].
    pub async fn leave(&self, participant: ParticipantId) -> Result<(), Error> {
        self.run(move |e, now| e.leave(participant, now)).await?
    }

    /// Ends a call as requested by the signaling tier (cancelled if still ringing). See
    /// [`Engine::end_call`].
    pub async fn end_call(&self, call: CallId) -> Result<(), Error> {
        self.run(move |e, now| e.end_call(call, EndReason::Requested, now))
            .await?
    }

    /// Ends every call with `reason` and returns how many it ended; the SFU keeps running
    /// (and keeps refusing new calls if it was told to stop accepting). A graceful drain
    /// uses it at its deadline with [`EndReason::ServerShutdown`]. See [`Engine::end_call`].
    pub async fn end_all_calls(&self, reason: EndReason) -> Result<usize, Error> {
        self.run(move |e, now| {
            let calls: Vec<CallId> = e.calls().collect();
            calls
                .into_iter()
                .filter(|call| e.end_call(*call, reason, now).is_ok())
                .count()
        })
        .await
    }

    /// Statistics of a call. See [`Engine::call_stats`].
    pub async fn call_stats(&self, call: CallId) -> Result<CallStats, Error> {
        self.run(move |e, now| e.call_stats(call, now)).await?
    }

    /// The calls that exist now.
    pub async fn list_calls(&self) -> Result<Vec<CallId>, Error> {
        self.run(|e, _| e.calls().collect()).await
    }

    /// Engine-wide counters.
    pub async fn metrics(&self) -> Result<EngineMetrics, Error> {
        self.run(|e, _| e.metrics()).await
    }

    /// Stops taking new calls; existing calls go on. See [`Engine::stop_accepting`].
    pub async fn stop_accepting(&self) -> Result<(), Error> {
        self.run(|e, _| e.stop_accepting()).await
    }

    /// Ends every call with [`EndReason::ServerShutdown`], sends what that queued (DTLS
    /// close_notify), publishes the events, and stops the driver. Returns when it is done.
    pub async fn shutdown(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Shutdown(tx))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }
}

/// The addresses announced in host candidates.
fn announce_ips(config: &SfuConfig, bound: SocketAddr) -> Vec<IpAddr> {
    if !config.announce_ips.is_empty() {
        return config.announce_ips.clone();
    }
    if !bound.ip().is_unspecified() {
        return vec![bound.ip()];
    }
    let v4 = bound.is_ipv4();
    let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| !ip.is_loopback() && ip.is_ipv4() == v4)
        .filter(|ip| match ip {
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
            IpAddr::V4(_) => true,
        })
        .collect();
    ips.dedup();
    if ips.is_empty() {
        ips.push(if v4 {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        });
    }
    ips
}

/// Source IPs to pin on sends: only when bound to a wildcard and the announced address is
/// one of this machine's (behind NAT the kernel picks).
fn source_ips(config: &SfuConfig, candidates: &[SocketAddr]) -> Vec<(SocketAddr, IpAddr)> {
    if !config.udp_bind.ip().is_unspecified() {
        return Vec::new();
    }
    let local: Vec<IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip())
        .collect();
    candidates
        .iter()
        .filter(|c| local.contains(&c.ip()))
        .map(|c| (*c, c.ip()))
        .collect()
}

async fn run(
    mut engine: Engine,
    mut socket: MediaSocket,
    mut commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<Event>,
    config: SfuConfig,
    src_ips: Vec<(SocketAddr, IpAddr)>,
    mut recorder: Option<recording::RecorderLink>,
) {
    let mut batch: Vec<Datagram> = Vec::with_capacity(quinn_udp::BATCH_SIZE);
    let mut outgoing: Vec<crate::engine::Transmit> = Vec::with_capacity(udp::SEND_BATCH);
    let mut held: Option<crate::engine::Transmit> = None;
    let mut stopping: Option<oneshot::Sender<()>> = None;
    loop {
        // 1. Everything the last input produced goes out, in batches of up to 64 datagrams
        //    that share a source address (GSO for same-destination runs, sendmmsg for the
        //    rest: `MediaSocket::send_batch`).
        while let Some(first) = engine.poll_transmit() {
            let src = src_of(&src_ips, first.source);
            outgoing.clear();
            outgoing.push(first);
            while outgoing.len() < udp::SEND_BATCH {
                match engine.poll_transmit() {
                    Some(t) if src_of(&src_ips, t.source) == src => outgoing.push(t),
                    Some(t) => {
                        held = Some(t);
                        break;
                    }
                    None => break,
                }
            }
            let mut batch: Vec<(SocketAddr, &[u8])> = outgoing
                .iter()
                .map(|t| (t.destination, &t.contents[..]))
                .collect();
            socket.send_batch(&mut batch, src).await;
            if let Some(t) = held.take() {
                engine.requeue_transmit(t);
            }
        }
        recording::forward_recorded(&mut engine, recorder.as_ref());
        while let Some(event) = engine.poll_event() {
            // No subscriber is not an error.
            let _ = events.send(event);
        }
        if let Some(done) = stopping.take() {
            if let Some(link) = recorder.take() {
                link.shutdown().await;
            }
            let _ = done.send(());
            tracing::info!("SFU driver stopped");
            return;
        }

        // 2. Wait for input.
        let deadline = engine.poll_timeout();
        let sleep = async {
            match deadline {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            readable = socket.readable() => {
                if let Err(e) = readable {
                    tracing::error!(error = %e, "media socket failed");
                    continue;
                }
                let mut read = 0;
                while read < config.max_datagrams_per_turn {
                    batch.clear();
                    match socket.try_recv_batch(&mut batch) {
                        Ok(0) => break,
                        Ok(n) => read += n,
                        Err(e) => {
                            tracing::debug!(error = %e, "recv failed");
                            break;
                        }
                    }
                    let now = Instant::now();
                    for d in batch.drain(..) {
                        engine.handle_datagram(now, d.from, d.local, d.data);
                    }
                }
                // Timers are never starved by a busy socket.
                let now = Instant::now();
                if engine.poll_timeout().is_some_and(|t| t <= now) {
                    engine.handle_timeout(now);
                }
            }
            command = commands.recv() => {
                let Some(command) = command else {
                    // Every handle is gone: nobody can ask for anything again.
                    engine.shutdown(Instant::now());
                    stopping = Some(oneshot::channel().0);
                    continue;
                };
                if let Some(done) = handle_command(&mut engine, command) {
                    stopping = Some(done);
                }
            }
            Some(report) = async {
                match recorder.as_mut() {
                    Some(link) => link.reports.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                recording::on_report(&mut engine, report, Instant::now());
            }
            _ = sleep => {
                engine.handle_timeout(Instant::now());
            }
        }
    }
}

/// The source IP to pin for a datagram from host candidate `source`, if any.
fn src_of(src_ips: &[(SocketAddr, IpAddr)], source: SocketAddr) -> Option<IpAddr> {
    src_ips
        .iter()
        .find(|(c, _)| *c == source)
        .map(|(_, ip)| *ip)
}

/// Runs one request. Returns the shutdown acknowledgement when it was a shutdown.
fn handle_command(engine: &mut Engine, command: Command) -> Option<oneshot::Sender<()>> {
    let now = Instant::now();
    match command {
        Command::Run(f) => {
            f(engine, now);
            None
        }
        Command::Shutdown(tx) => {
            engine.shutdown(now);
            Some(tx)
        }
    }
}
