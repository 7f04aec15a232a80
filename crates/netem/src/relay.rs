//! Relay: a UDP impairment relay between clients and one upstream (the SFU), on tokio.
//!
//! Clients send to the relay's `listen` address. Per client address the relay opens one
//! upstream socket (connected to `upstream`), so the upstream sees one distinct address per
//! client, as behind a NAT; what the upstream sends back on that socket goes to that client
//! from the `listen` address. Every datagram crosses a [`Link`]: `up` (client to upstream)
//! or `down` (upstream to client). Both links are shared by all of the relay's clients, as
//! one access link would be; give each client its own relay to impair it alone.
//!
//! Tasks: one reader per socket (it timestamps each datagram on arrival) and one core task
//! that owns both links, the flows and the timers and does every send. The core sleeps until
//! the links' next deadline (tokio's timer, 1 ms granularity); since the links compute times
//! instead of reading them, a late wake-up delays a datagram by at most that much and never
//! changes the rate.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::link::{Link, LinkStats, Verdict};
use crate::params::{LinkChange, LinkParams};
use crate::schedule::{Direction, Directions, Phase, Schedule};

/// Datagrams the readers may queue for the core before they wait (and the kernel drops).
const INPUT_BUFFER: usize = 8192;
/// Largest datagram read.
const MAX_DATAGRAM: usize = 65_536;

/// How a [`Relay`] is set up.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Where clients send. Keep it on loopback or inside a test namespace.
    pub listen: SocketAddr,
    /// Where datagrams from clients go (the SFU's media address).
    pub upstream: SocketAddr,
    /// Local IP of the per-client upstream sockets. `None`: loopback if `upstream` is
    /// loopback, else the IP of `listen`.
    pub upstream_bind_ip: Option<IpAddr>,
    /// Client to upstream, at start.
    pub up: LinkParams,
    /// Upstream to client, at start.
    pub down: LinkParams,
    /// Changes over time, relative to the start.
    pub schedule: Schedule,
    /// Seed for loss and jitter (the two directions use derived seeds).
    pub seed: u64,
    /// Most client addresses served at once; datagrams from more are dropped.
    pub max_flows: usize,
}

impl RelayConfig {
    /// A clean relay (no impairment) from `listen` to `upstream`.
    pub fn new(listen: SocketAddr, upstream: SocketAddr) -> Self {
        RelayConfig {
            listen,
            upstream,
            upstream_bind_ip: None,
            up: LinkParams::clean(),
            down: LinkParams::clean(),
            schedule: Schedule::default(),
            seed: 1,
            max_flows: 64,
        }
    }

    /// On loopback (an ephemeral port) in front of `upstream`.
    pub fn loopback(upstream: SocketAddr) -> Self {
        let ip = match upstream.ip() {
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        RelayConfig::new(SocketAddr::new(ip, 0), upstream)
    }

    /// With these client-to-upstream parameters.
    pub fn up(mut self, p: LinkParams) -> Self {
        self.up = p;
        self
    }

    /// With these upstream-to-client parameters.
    pub fn down(mut self, p: LinkParams) -> Self {
        self.down = p;
        self
    }

    /// With the same parameters both ways.
    pub fn both(self, p: LinkParams) -> Self {
        self.up(p).down(p)
    }

    /// With this schedule.
    pub fn schedule(mut self, s: Schedule) -> Self {
        self.schedule = s;
        self
    }

    /// With this seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    fn upstream_bind_ip(&self) -> IpAddr {
        self.upstream_bind_ip.unwrap_or_else(|| {
            if self.upstream.ip().is_loopback() {
                match self.upstream.ip() {
                    IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
                    IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                }
            } else {
                self.listen.ip()
            }
        })
    }
}

/// A snapshot of a relay's state and counters.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayStats {
    /// Time since the relay started.
    pub elapsed: Duration,
    /// Client to upstream.
    pub up: LinkStats,
    /// Upstream to client.
    pub down: LinkStats,
    /// Parameters in force, client to upstream.
    pub up_params: LinkParams,
    /// Parameters in force, upstream to client.
    pub down_params: LinkParams,
    /// Client addresses seen.
    pub flows: usize,
    /// Datagrams from clients beyond `max_flows`, dropped.
    pub dropped_too_many_flows: u64,
    /// Sends the OS refused (buffer full, unreachable); the datagram is lost.
    pub send_errors: u64,
}

impl RelayStats {
    /// The counters of one direction.
    pub fn link(&self, d: Direction) -> &LinkStats {
        match d {
            Direction::Up => &self.up,
            Direction::Down => &self.down,
        }
    }

    /// The parameters of one direction.
    pub fn params(&self, d: Direction) -> &LinkParams {
        match d {
            Direction::Up => &self.up_params,
            Direction::Down => &self.down_params,
        }
    }
}

/// The relay's task has stopped (shut down, or the runtime is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the relay has stopped")]
pub struct RelayStopped;

enum Command {
    Set(Directions, LinkParams),
    Change(Directions, LinkChange),
    Stats(oneshot::Sender<RelayStats>),
}

enum Input {
    FromClient {
        from: SocketAddr,
        data: Bytes,
        at: Instant,
    },
    FromUpstream {
        flow: usize,
        data: Bytes,
        at: Instant,
    },
}

/// A running relay. Change its links live with [`set`](Relay::set) / [`change`](Relay::change);
/// it stops on [`shutdown`](Relay::shutdown) or drop.
pub struct Relay {
    local_addr: SocketAddr,
    upstream: SocketAddr,
    commands: mpsc::Sender<Command>,
    task: Option<JoinHandle<()>>,
}

impl Relay {
    /// Binds the listen socket and starts the relay on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// The listen socket could not be bound.
    pub async fn start(config: RelayConfig) -> io::Result<Relay> {
        let listen = Arc::new(UdpSocket::bind(config.listen).await?);
        let local_addr = listen.local_addr()?;
        let (inputs_tx, inputs) = mpsc::channel(INPUT_BUFFER);
        let (commands, command_rx) = mpsc::channel(64);
        let started = Instant::now();
        let listen_reader = tokio::spawn(read_clients(Arc::clone(&listen), inputs_tx.clone()));
        let core = Core {
            listen,
            upstream: config.upstream,
            upstream_bind_ip: config.upstream_bind_ip(),
            max_flows: config.max_flows,
            flows: Vec::new(),
            by_client: HashMap::new(),
            up: Link::new(config.up, config.seed.wrapping_mul(2).wrapping_add(1)),
            down: Link::new(config.down, config.seed.wrapping_mul(2).wrapping_add(2)),
            schedule: config.schedule.phases().to_vec(),
            next_phase: 0,
            started,
            inputs_tx,
            readers: vec![listen_reader],
            dropped_too_many_flows: 0,
            send_errors: 0,
        };
        tracing::debug!(%local_addr, upstream = %config.upstream, up = %config.up, down = %config.down, "relay started");
        let task = tokio::spawn(core.run(inputs, command_rx));
        Ok(Relay {
            local_addr,
            upstream: config.upstream,
            commands,
            task: Some(task),
        })
    }

    /// Where clients send.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where the relay forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    async fn command(&self, c: Command) -> Result<(), RelayStopped> {
        self.commands.send(c).await.map_err(|_| RelayStopped)
    }

    /// Replaces the parameters of `directions` now.
    ///
    /// # Errors
    ///
    /// The relay has stopped.
    pub async fn set(
        &self,
        directions: Directions,
        params: LinkParams,
    ) -> Result<(), RelayStopped> {
        self.command(Command::Set(directions, params)).await
    }

    /// Applies a partial change to `directions` now.
    ///
    /// # Errors
    ///
    /// The relay has stopped.
    pub async fn change(
        &self,
        directions: Directions,
        change: LinkChange,
    ) -> Result<(), RelayStopped> {
        self.command(Command::Change(directions, change)).await
    }

    /// Counters and parameters now.
    ///
    /// # Errors
    ///
    /// The relay has stopped.
    pub async fn stats(&self) -> Result<RelayStats, RelayStopped> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Stats(tx)).await?;
        rx.await.map_err(|_| RelayStopped)
    }

    /// Stops the relay and waits for its task; datagrams in flight are dropped.
    pub async fn shutdown(mut self) {
        // The core ends when every command sender is gone; ours is the only one.
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.commands, closed));
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

async fn read_clients(socket: Arc<UdpSocket>, inputs: mpsc::Sender<Input>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let input = Input::FromClient {
                    from,
                    data: Bytes::copy_from_slice(&buf[..n]),
                    at: Instant::now(),
                };
                if inputs.send(input).await.is_err() {
                    return;
                }
            }
            Err(err) => {
                // ICMP errors surface here on some systems; the socket stays usable.
                tracing::trace!(%err, "relay listen socket read error");
                tokio::task::yield_now().await;
            }
        }
    }
}

async fn read_upstream(socket: Arc<UdpSocket>, flow: usize, inputs: mpsc::Sender<Input>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match socket.recv(&mut buf).await {
            Ok(n) => {
                let input = Input::FromUpstream {
                    flow,
                    data: Bytes::copy_from_slice(&buf[..n]),
                    at: Instant::now(),
                };
                if inputs.send(input).await.is_err() {
                    return;
                }
            }
            Err(err) => {
                // A connected UDP socket reports an earlier ICMP unreachable once.
                tracing::trace!(%err, flow, "relay upstream socket read error");
                tokio::task::yield_now().await;
            }
        }
    }
}

struct Flow {
    client: SocketAddr,
    socket: Arc<UdpSocket>,
}

struct Core {
    listen: Arc<UdpSocket>,
    upstream: SocketAddr,
    upstream_bind_ip: IpAddr,
    max_flows: usize,
    flows: Vec<Flow>,
    by_client: HashMap<SocketAddr, usize>,
    up: Link<(usize, Bytes)>,
    down: Link<(usize, Bytes)>,
    schedule: Vec<Phase>,
    next_phase: usize,
    started: Instant,
    inputs_tx: mpsc::Sender<Input>,
    readers: Vec<JoinHandle<()>>,
    dropped_too_many_flows: u64,
    send_errors: u64,
}

impl Drop for Core {
    fn drop(&mut self) {
        for r in &self.readers {
            r.abort();
        }
    }
}

impl Core {
    async fn run(
        mut self,
        mut inputs: mpsc::Receiver<Input>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        loop {
            let now = Instant::now();
            self.apply_phases(now);
            self.deliver(now).await;
            let deadline = [
                self.up.poll_timeout(),
                self.down.poll_timeout(),
                self.next_phase_at(),
            ]
            .into_iter()
            .flatten()
            .min();
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(c) => self.command(c),
                    None => return,
                },
                input = inputs.recv() => {
                    let Some(input) = input else { return };
                    self.input(input).await;
                    // Take what else is waiting before looking at timers again.
                    for _ in 0..256 {
                        match inputs.try_recv() {
                            Ok(input) => self.input(input).await,
                            Err(_) => break,
                        }
                    }
                }
                () = sleep_until(deadline) => {}
            }
        }
    }

    fn next_phase_at(&self) -> Option<Instant> {
        self.schedule
            .get(self.next_phase)
            .map(|p| self.started + p.at)
    }

    fn apply_phases(&mut self, now: Instant) {
        while let Some(phase) = self.schedule.get(self.next_phase).copied() {
            let at = self.started + phase.at;
            if at > now {
                break;
            }
            self.next_phase += 1;
            self.for_links(phase.directions, |link| link.change(at, &phase.change));
            tracing::debug!(at = ?phase.at, directions = ?phase.directions, up = %self.up.params(), down = %self.down.params(), "relay phase");
        }
    }

    fn for_links(&mut self, d: Directions, mut f: impl FnMut(&mut Link<(usize, Bytes)>)) {
        if d.includes(Direction::Up) {
            f(&mut self.up);
        }
        if d.includes(Direction::Down) {
            f(&mut self.down);
        }
    }

    fn command(&mut self, c: Command) {
        let now = Instant::now();
        match c {
            Command::Set(d, p) => self.for_links(d, |l| l.set_params(now, p)),
            Command::Change(d, ch) => self.for_links(d, |l| l.change(now, &ch)),
            Command::Stats(reply) => {
                let _ = reply.send(RelayStats {
                    elapsed: now.saturating_duration_since(self.started),
                    up: self.up.stats(),
                    down: self.down.stats(),
                    up_params: *self.up.params(),
                    down_params: *self.down.params(),
                    flows: self.flows.len(),
                    dropped_too_many_flows: self.dropped_too_many_flows,
                    send_errors: self.send_errors,
                });
            }
        }
    }

    async fn input(&mut self, input: Input) {
        match input {
            Input::FromClient { from, data, at } => {
                let Some(flow) = self.flow_for(from).await else {
                    self.dropped_too_many_flows += 1;
                    return;
                };
                let len = data.len();
                if let Verdict::Dropped(reason) = self.up.push(at, (flow, data), len) {
                    tracing::trace!(flow, ?reason, "up: dropped");
                }
            }
            Input::FromUpstream { flow, data, at } => {
                let len = data.len();
                if let Verdict::Dropped(reason) = self.down.push(at, (flow, data), len) {
                    tracing::trace!(flow, ?reason, "down: dropped");
                }
            }
        }
    }

    async fn flow_for(&mut self, client: SocketAddr) -> Option<usize> {
        if let Some(&flow) = self.by_client.get(&client) {
            return Some(flow);
        }
        if self.flows.len() >= self.max_flows {
            return None;
        }
        let socket = match UdpSocket::bind(SocketAddr::new(self.upstream_bind_ip, 0)).await {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(%err, %client, "relay: cannot bind an upstream socket");
                return None;
            }
        };
        if let Err(err) = socket.connect(self.upstream).await {
            tracing::warn!(%err, upstream = %self.upstream, "relay: cannot connect upstream");
            return None;
        }
        let socket = Arc::new(socket);
        let flow = self.flows.len();
        tracing::debug!(%client, flow, local = ?socket.local_addr().ok(), "relay: new flow");
        self.readers.push(tokio::spawn(read_upstream(
            Arc::clone(&socket),
            flow,
            self.inputs_tx.clone(),
        )));
        self.flows.push(Flow { client, socket });
        self.by_client.insert(client, flow);
        Some(flow)
    }

    async fn deliver(&mut self, now: Instant) {
        // Sends await (a full socket buffer holds the core back rather than dropping), which
        // for UDP means they complete at once in practice.
        while let Some((flow, data)) = self.up.poll(now) {
            if let Some(f) = self.flows.get(flow)
                && f.socket.send(&data).await.is_err()
            {
                self.send_errors += 1;
            }
        }
        while let Some((flow, data)) = self.down.poll(now) {
            if let Some(client) = self.flows.get(flow).map(|f| f.client)
                && self.listen.send_to(&data, client).await.is_err()
            {
                self.send_errors += 1;
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
