//! Net: the load tester's media thread. One thread, one UDP socket, every client peer.
//!
//! Each peer has its own IP address (a block of loopback addresses, `127.1.0.0/16` by default,
//! or an any-IP block routed to a network namespace), all on the same port of one wildcard
//! socket bound to one device. Datagrams are read in `recvmmsg` batches (quinn-udp) and routed
//! to their peer by destination address (`IP_PKTINFO`); sends pin the peer's address as the
//! source. The SFU sees one distinct client address per peer, as with real clients, while the
//! tester pays one socket and one poll for all of them.
//!
//! The control side (gRPC / HTTP signaling, the ramp) talks to the thread through
//! [`NetHandle`]: commands on a channel plus a waker, replies on oneshots. Nothing else is
//! shared: counters live in the thread and are read with [`NetHandle::snapshot`].

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use bytes::BytesMut;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use rtc::peer_connection::certificate::RTCCertificate;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tokio::sync::oneshot;

use super::hist::Histogram;
use super::media::{Stamp, Templates};
use super::peer::{LeanPeer, PeerSpec};
use super::tap::is_keyframe_request;

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);
/// Bytes per receive slot (no GRO: the client never sends GSO, nor does the SFU).
const SLOT: usize = 2048;
/// Receive batches per loop turn before timers and media get a turn.
const BATCHES_PER_TURN: usize = 64;
/// Longest sleep of the loop.
const MAX_WAIT: Duration = Duration::from_millis(5);

/// Where the client peers live on the network.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// First address of the block (peers get base+1, base+2, ...).
    pub base: Ipv4Addr,
    /// How many addresses the block has.
    pub size: u32,
    /// The one port every peer uses (0: any free one).
    pub port: u16,
    /// Device the socket is bound to (`lo`, or the namespace's veth).
    pub device: Option<String>,
    /// Socket buffer size asked for, both directions (forced when running as root).
    pub buffer_bytes: usize,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            base: Ipv4Addr::new(127, 1, 0, 0),
            size: 65_534,
            port: 0,
            device: Some("lo".to_owned()),
            buffer_bytes: 32 << 20,
        }
    }
}

/// A peer of the media thread.
pub type PeerKey = u32;

/// Everything the media thread counts.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Counters {
    /// Audio packets sent that the SFU should forward.
    pub sent_audio: u64,
    /// Video packets sent that the SFU should forward.
    pub sent_video: u64,
    /// Packets sent that the SFU should drop (policy), not counted as loss.
    pub sent_unforwarded: u64,
    /// Audio packets received.
    pub recv_audio: u64,
    /// Video packets received.
    pub recv_video: u64,
    /// Packets received with a damaged or missing stamp.
    pub corrupt: u64,
    /// Keyframes the SFU asked for (PLI/FIR).
    pub keyframe_requests: u64,
    /// Writes the client's own stack refused (not yet connected, ...).
    pub refused_writes: u64,
    /// Times a peer fell more than 100 ms behind its media clock (the tester is overloaded).
    pub late: u64,
    /// Datagrams the socket would not take.
    pub send_errors: u64,
    /// Datagrams read.
    pub datagrams_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Datagrams for no peer.
    pub unrouted: u64,
    /// Peers connected now.
    pub connected: u64,
    /// Peers whose connection failed.
    pub failed: u64,
    /// Longest loop turn of the media thread since the last snapshot (commands, timers,
    /// media, reads), microseconds: a long one delays every peer.
    pub max_turn_us: u64,
}

/// Counters and the latency seen since the last snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When it was taken.
    pub at: Instant,
    /// Totals since the start.
    pub counters: Counters,
    /// One-way latency (send stamp to receipt) of every packet since the last snapshot.
    pub latency: Histogram,
}

/// One peer's state, for join times and smoke checks.
#[derive(Debug, Clone, Copy, Default)]
pub struct PeerInfo {
    /// Connected (ICE + DTLS).
    pub connected: bool,
    /// Failed for good.
    pub failed: bool,
    /// When the first media packet arrived.
    pub first_rx: Option<Instant>,
    /// Audio packets received.
    pub rx_audio: u64,
    /// Video packets received.
    pub rx_video: u64,
}

type Reply<T> = oneshot::Sender<anyhow::Result<T>>;

enum Cmd {
    /// Creates a peer; an offerer returns its offer.
    Add(PeerSpec, Reply<(PeerKey, Option<String>)>),
    Answer(PeerKey, String, Reply<()>),
    Offer(PeerKey, String, Reply<String>),
    Remove(PeerKey),
    Snapshot(oneshot::Sender<Snapshot>),
    Info(Vec<PeerKey>, oneshot::Sender<Vec<PeerInfo>>),
    Stop,
}

/// The control side's handle on the media thread.
#[derive(Clone)]
pub struct NetHandle {
    tx: mpsc::Sender<Cmd>,
    waker: Arc<Waker>,
    port: u16,
}

impl NetHandle {
    /// Starts the media thread.
    pub fn start(config: NetConfig) -> anyhow::Result<(NetHandle, std::thread::JoinHandle<()>)> {
        let net = Net::new(config)?;
        let port = net.port;
        let waker = net.waker.clone();
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("load-media".to_owned())
            .spawn(move || net.run(rx))
            .context("spawning the media thread")?;
        Ok((NetHandle { tx, waker, port }, thread))
    }

    /// The port every peer uses.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn send(&self, cmd: Cmd) -> anyhow::Result<()> {
        self.tx
            .send(cmd)
            .map_err(|_| anyhow!("the media thread stopped"))?;
        self.waker.wake().context("waking the media thread")
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> anyhow::Result<T> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx))?;
        rx.await.map_err(|_| anyhow!("the media thread stopped"))?
    }

    /// Creates a peer. An offerer's offer comes back with it.
    pub async fn add(&self, spec: PeerSpec) -> anyhow::Result<(PeerKey, Option<String>)> {
        self.ask(|r| Cmd::Add(spec, r)).await
    }

    /// Gives an offerer the remote answer.
    pub async fn accept_answer(&self, key: PeerKey, sdp: String) -> anyhow::Result<()> {
        self.ask(|r| Cmd::Answer(key, sdp, r)).await
    }

    /// Gives an answerer the remote offer; returns its answer.
    pub async fn answer_offer(&self, key: PeerKey, sdp: String) -> anyhow::Result<String> {
        self.ask(|r| Cmd::Offer(key, sdp, r)).await
    }

    /// Closes and forgets a peer.
    pub fn remove(&self, key: PeerKey) {
        let _ = self.send(Cmd::Remove(key));
    }

    /// Counters, and the latency since the last snapshot.
    pub async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Snapshot(tx))?;
        rx.await.map_err(|_| anyhow!("the media thread stopped"))
    }

    /// The state of some peers (unknown keys read as default).
    pub async fn info(&self, keys: Vec<PeerKey>) -> anyhow::Result<Vec<PeerInfo>> {
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Info(keys, tx))?;
        rx.await.map_err(|_| anyhow!("the media thread stopped"))
    }

    /// Stops the thread (peers are dropped without goodbye).
    pub fn stop(&self) {
        let _ = self.send(Cmd::Stop);
    }
}

/// The socket and what every peer shares.
struct Io {
    socket: UdpSocket,
    state: UdpSocketState,
    templates: Templates,
    base: Instant,
    counters: Counters,
    latency: Histogram,
    /// When the loop must next look at peers' timers and media clocks.
    next_scan: Instant,
}

impl Io {
    fn now_ns(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.base).as_nanos() as u64
    }

    fn send(&mut self, to: SocketAddr, from: IpAddr, data: &[u8]) {
        let transmit = Transmit {
            destination: to,
            ecn: None,
            contents: data,
            segment_size: None,
            src_ip: Some(from),
        };
        // The socket is non-blocking; a full send buffer is waited out briefly (it drains
        // at loopback speed), then counted.
        for attempt in 0..200 {
            match self.state.try_send((&self.socket).into(), &transmit) {
                Ok(()) => {
                    self.counters.datagrams_out += 1;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && attempt < 199 => {
                    std::thread::sleep(Duration::from_micros(50));
                }
                Err(_) => break,
            }
        }
        self.counters.send_errors += 1;
    }

    /// Drains everything a peer has after an input: state changes, media, datagrams, and its
    /// next deadline.
    fn drain(&mut self, peer: &mut LeanPeer, now: Instant) {
        while let Some(event) = peer.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) = event {
                match s {
                    RTCPeerConnectionState::Connected if !peer.connected => {
                        peer.connected = true;
                        self.counters.connected += 1;
                        // A random phase within the packet periods.
                        let phase = Duration::from_nanos(rand::random::<u64>() % 40_000_000);
                        peer.start_media(now, phase);
                    }
                    RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Closed
                    | RTCPeerConnectionState::Disconnected => {
                        if peer.connected {
                            peer.connected = false;
                            self.counters.connected -= 1;
                        }
                        if s == RTCPeerConnectionState::Failed && !peer.failed {
                            peer.failed = true;
                            self.counters.failed += 1;
                        }
                    }
                    _ => {}
                }
            }
        }
        let now_ns = self.now_ns(now);
        while let Some(TaggedRTCMessage { message, .. }) = peer.pc.poll_read() {
            match message {
                RTCMessage::RtpPacket(_, p) => {
                    if peer.first_rx.is_none() {
                        peer.first_rx = Some(now);
                    }
                    match Stamp::read(&p.payload) {
                        Some(stamp) if self.templates.is_intact(&p.payload) => {
                            self.latency.record(now_ns.saturating_sub(stamp.sent_ns));
                            if stamp.tag & 1 == 0 {
                                self.counters.recv_audio += 1;
                                peer.rx_audio += 1;
                            } else {
                                self.counters.recv_video += 1;
                                peer.rx_video += 1;
                            }
                        }
                        _ => self.counters.corrupt += 1,
                    }
                }
                RTCMessage::RtcpPacket(_, packets)
                    if packets.iter().any(|p| is_keyframe_request(p.as_ref())) =>
                {
                    peer.key_pending = true;
                    self.counters.keyframe_requests += 1;
                }
                _ => {}
            }
        }
        while let Some(w) = peer.pc.poll_write() {
            self.send(w.transport.peer_addr, peer.local.ip(), &w.message);
        }
        peer.next_timer = peer.pc.poll_timeout();
        if let Some(t) = peer.next_timer {
            self.next_scan = self.next_scan.min(t);
        }
        if peer.connected
            && let Some(t) = peer.next_media()
        {
            self.next_scan = self.next_scan.min(t);
        }
    }
}

/// The media thread's state.
struct Net {
    config: NetConfig,
    poll: Poll,
    waker: Arc<Waker>,
    io: Io,
    port: u16,
    certificate: RTCCertificate,
    peers: Vec<Option<LeanPeer>>,
    arena: Vec<u8>,
    metas: Vec<RecvMeta>,
}

fn bind(config: &NetConfig) -> anyhow::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(SockProtocol::UDP))
        .context("creating the client socket")?;
    if let Some(dev) = &config.device
        && let Err(e) = socket.bind_device(Some(dev.as_bytes()))
    {
        // Needs CAP_NET_RAW. Without it the socket still only talks to the SFU's address,
        // but also accepts datagrams arriving on other devices.
        tracing::warn!(error = %e, device = %dev, "cannot bind the client socket to its device");
    }
    // Root may exceed net.core.{r,w}mem_max; otherwise the kernel caps it.
    let force = nix::sys::socket::setsockopt(
        &socket,
        nix::sys::socket::sockopt::RcvBufForce,
        &config.buffer_bytes,
    )
    .and_then(|()| {
        nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::SndBufForce,
            &config.buffer_bytes,
        )
    });
    if force.is_err() {
        let _ = socket.set_recv_buffer_size(config.buffer_bytes);
        let _ = socket.set_send_buffer_size(config.buffer_bytes);
    }
    let addr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, config.port);
    socket
        .bind(&SocketAddr::V4(addr).into())
        .with_context(|| format!("binding the client socket to {addr}"))?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

impl Net {
    fn new(config: NetConfig) -> anyhow::Result<Net> {
        let std_socket = bind(&config)?;
        let state = UdpSocketState::new((&std_socket).into()).context("quinn-udp socket state")?;
        // quinn-udp turns UDP GRO on; the SFU sends runs of one frame's packets as one GSO
        // send, which GRO would hand over as one buffer larger than a slot. One datagram per
        // slot, as a browser reads them.
        nix::sys::socket::setsockopt(
            &std_socket,
            nix::sys::socket::sockopt::UdpGroSegment,
            &false,
        )
        .context("turning UDP GRO off")?;
        let port = std_socket.local_addr()?.port();
        let mut socket = UdpSocket::from_std(std_socket);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut socket, SOCKET, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let provider = rtc::crypto::default_provider().map_err(|e| anyhow!("crypto: {e}"))?;
        let certificate = RTCCertificate::generate(
            provider.crypto(),
            rtc::crypto::SignatureScheme::EcdsaP256Sha256,
            rtc::peer_connection::certificate::CertificateParams::new(vec!["load".to_owned()])
                .map_err(|e| anyhow!("certificate params: {e}"))?,
        )
        .map_err(|e| anyhow!("certificate: {e}"))?;
        let batch = quinn_udp::BATCH_SIZE.max(1);
        let now = Instant::now();
        Ok(Net {
            config,
            poll,
            waker,
            io: Io {
                socket,
                state,
                templates: Templates::new(),
                base: crate::load::clock_base(),
                counters: Counters::default(),
                latency: Histogram::default(),
                next_scan: now,
            },
            port,
            certificate,
            peers: Vec::new(),
            arena: vec![0; batch * SLOT],
            metas: vec![RecvMeta::default(); batch],
        })
    }

    fn slot_of(&self, ip: IpAddr) -> Option<usize> {
        let IpAddr::V4(v4) = ip else { return None };
        let offset = u32::from(v4).checked_sub(u32::from(self.config.base))?;
        (offset >= 1 && offset <= self.config.size).then(|| offset as usize - 1)
    }

    fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        let mut events = Events::with_capacity(16);
        let mut backlog = false;
        loop {
            let turn = Instant::now();
            while let Ok(cmd) = rx.try_recv() {
                if !self.command(cmd) {
                    return;
                }
            }
            let now = Instant::now();
            if now >= self.io.next_scan {
                self.scan(now);
            }
            backlog = self.read(backlog);
            let took = turn.elapsed().as_micros() as u64;
            self.io.counters.max_turn_us = self.io.counters.max_turn_us.max(took);
            let wait = if backlog {
                Duration::ZERO
            } else {
                self.io
                    .next_scan
                    .saturating_duration_since(Instant::now())
                    .min(MAX_WAIT)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(wait))
                && e.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!(error = %e, "poll failed");
                return;
            }
            for e in events.iter() {
                if e.token() == SOCKET {
                    backlog = true;
                }
            }
        }
    }

    /// Runs every due timer and sends every due packet; recomputes the next scan.
    fn scan(&mut self, now: Instant) {
        self.io.next_scan = now + MAX_WAIT;
        for peer in self.peers.iter_mut().flatten() {
            let mut touched = false;
            if peer.next_timer.is_some_and(|t| t <= now) {
                let _ = peer.pc.handle_timeout(now);
                touched = true;
            }
            if peer.connected && peer.next_media().is_some_and(|t| t <= now) {
                let mut late = 0;
                let sent = peer.send_due(now, &self.io.templates, &mut late);
                let c = &mut self.io.counters;
                c.late += late;
                c.refused_writes += sent.refused;
                if peer.spec.audio_forwarded {
                    c.sent_audio += sent.audio;
                } else {
                    c.sent_unforwarded += sent.audio;
                }
                if peer.spec.video_forwarded {
                    c.sent_video += sent.video;
                } else {
                    c.sent_unforwarded += sent.video;
                }
                touched = true;
            }
            if touched {
                self.io.drain(peer, now);
            } else {
                if let Some(t) = peer.next_timer {
                    self.io.next_scan = self.io.next_scan.min(t);
                }
                if peer.connected
                    && let Some(t) = peer.next_media()
                {
                    self.io.next_scan = self.io.next_scan.min(t);
                }
            }
        }
    }

    /// Reads up to [`BATCHES_PER_TURN`] batches. Returns whether more may be waiting.
    fn read(&mut self, mut pending: bool) -> bool {
        for _ in 0..BATCHES_PER_TURN {
            if !pending {
                return false;
            }
            let mut slices: Vec<IoSliceMut<'_>> =
                self.arena.chunks_mut(SLOT).map(IoSliceMut::new).collect();
            let n = match self
                .io
                .state
                .recv((&self.io.socket).into(), &mut slices, &mut self.metas)
            {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    pending = false;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "recv failed");
                    pending = false;
                    continue;
                }
            };
            drop(slices);
            let now = Instant::now();
            for i in 0..n {
                let meta = self.metas[i];
                let Some(slot) = meta.dst_ip.and_then(|ip| self.slot_of(ip)) else {
                    self.io.counters.unrouted += 1;
                    continue;
                };
                let Some(peer) = self.peers.get_mut(slot).and_then(Option::as_mut) else {
                    self.io.counters.unrouted += 1;
                    continue;
                };
                let data = &self.arena[i * SLOT..i * SLOT + meta.len.min(SLOT)];
                self.io.counters.datagrams_in += 1;
                let _ = peer.pc.handle_read(TaggedBytesMut {
                    now,
                    transport: TransportContext {
                        local_addr: peer.local,
                        peer_addr: meta.addr,
                        ecn: None,
                        transport_protocol: TransportProtocol::UDP,
                    },
                    message: BytesMut::from(data),
                });
                self.io.drain(peer, now);
            }
        }
        pending
    }

    fn command(&mut self, cmd: Cmd) -> bool {
        let now = Instant::now();
        match cmd {
            Cmd::Add(spec, reply) => {
                let _ = reply.send(self.add(spec, now));
            }
            Cmd::Answer(key, sdp, reply) => {
                let r = self.with_peer(key, now, |p| p.accept_answer(&sdp, now));
                let _ = reply.send(r);
            }
            Cmd::Offer(key, sdp, reply) => {
                let r = self.with_peer(key, now, |p| p.answer_offer(&sdp, now));
                let _ = reply.send(r);
            }
            Cmd::Remove(key) => {
                if let Some(mut peer) = self.peers.get_mut(key as usize).and_then(Option::take) {
                    let _ = peer.pc.close();
                    if peer.connected {
                        self.io.counters.connected -= 1;
                    }
                    // Send what closing queued (DTLS close_notify).
                    while let Some(w) = peer.pc.poll_write() {
                        self.io
                            .send(w.transport.peer_addr, peer.local.ip(), &w.message);
                    }
                }
            }
            Cmd::Snapshot(reply) => {
                let latency = self.io.latency.clone();
                self.io.latency.clear();
                let _ = reply.send(Snapshot {
                    at: now,
                    counters: self.io.counters,
                    latency,
                });
                self.io.counters.max_turn_us = 0;
            }
            Cmd::Info(keys, reply) => {
                let infos = keys
                    .iter()
                    .map(|k| {
                        self.peers
                            .get(*k as usize)
                            .and_then(Option::as_ref)
                            .map(|p| PeerInfo {
                                connected: p.connected,
                                failed: p.failed,
                                first_rx: p.first_rx,
                                rx_audio: p.rx_audio,
                                rx_video: p.rx_video,
                            })
                            .unwrap_or_default()
                    })
                    .collect();
                let _ = reply.send(infos);
            }
            Cmd::Stop => return false,
        }
        true
    }

    fn add(&mut self, spec: PeerSpec, now: Instant) -> anyhow::Result<(PeerKey, Option<String>)> {
        let slot = self.peers.len();
        if slot as u32 >= self.config.size {
            anyhow::bail!(
                "out of client addresses ({} in the block)",
                self.config.size
            );
        }
        let ip = Ipv4Addr::from(u32::from(self.config.base) + slot as u32 + 1);
        let local = SocketAddr::new(IpAddr::V4(ip), self.port);
        let ssrc_seed = 0x1000_0000 + (slot as u32) * 4;
        let mut peer = LeanPeer::new(
            spec,
            local,
            (slot as u32) << 1,
            ssrc_seed,
            &self.certificate,
            now,
        )?;
        let offer = if spec.offerer {
            Some(peer.create_offer(now)?)
        } else {
            None
        };
        self.io.drain(&mut peer, now);
        self.peers.push(Some(peer));
        Ok((slot as PeerKey, offer))
    }

    fn with_peer<T>(
        &mut self,
        key: PeerKey,
        now: Instant,
        f: impl FnOnce(&mut LeanPeer) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let peer = self
            .peers
            .get_mut(key as usize)
            .and_then(Option::as_mut)
            .ok_or_else(|| anyhow!("no peer {key}"))?;
        let r = f(peer);
        self.io.drain(peer, now);
        r
    }
}
