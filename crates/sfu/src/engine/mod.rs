//! Engine: the sans-IO top of the SFU. Calls, demux, forwarding and timers, with no I/O.
//!
//! Datagrams, requests and `now` go in; datagrams to send ([`Transmit`]), [`Event`]s and the
//! next deadline come out. After every `handle_*` call, drain [`Engine::poll_transmit`] and
//! [`Engine::poll_event`] until they return `None`, then wait until
//! [`Engine::poll_timeout`] (or the next datagram / request) and call
//! [`Engine::handle_timeout`]. The engine never reads a clock.

mod bandwidth;
mod finish;
mod forward;
pub(crate) mod recording;
mod requests;
mod timers;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use policy::{ClientConstraints, MediaKind, Role, Source, TrackVerdict};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::call::Call;
use crate::config::SfuConfig;
use crate::demux::Demux;
use crate::error::Error;
use crate::event::{ConnectionState, Event, LeaveReason};
use crate::ids::{CallId, ParticipantId};
use crate::media::Receiver;
use crate::participant::Participant;
use crate::stats::{DropReason, EngineMetrics};
use crate::transport::{Inbound, TransportEvent, TransportSettings};

/// A datagram to send.
#[derive(Debug)]
pub struct Transmit {
    /// Where to.
    pub destination: SocketAddr,
    /// Our host candidate it belongs to (the source address the client expects).
    pub source: SocketAddr,
    /// The bytes.
    pub contents: BytesMut,
}

/// A participant's request to join a call.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Its role, as the signaling tier authenticated it.
    pub role: Role,
    /// Its SDP offer.
    pub offer_sdp: String,
    /// What each m-line carries, as the client declares it (keyed by mid). An m-line not
    /// listed gets the default for its position: audio is the microphone, the first video
    /// m-line the camera (the rear lens unless the role only accepts the front one), a second
    /// video m-line the screen. The server cannot verify a lens; it enforces media kind.
    pub tracks: Vec<DeclaredSource>,
}

impl JoinRequest {
    /// A request with no declared sources (every m-line gets its default).
    pub fn new(role: Role, offer_sdp: String) -> JoinRequest {
        JoinRequest {
            role,
            offer_sdp,
            tracks: Vec::new(),
        }
    }
}

/// A source a client declares for one of its m-lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredSource {
    /// The m-line's mid.
    pub mid: String,
    /// What the client says it sends on it.
    pub source: Source,
}

/// The engine's answer to a join.
#[derive(Debug, Clone)]
pub struct JoinAnswer {
    /// The new participant.
    pub participant: ParticipantId,
    /// The SDP answer for the client.
    pub answer_sdp: String,
    /// The policy's verdict on every m-line (keyed by mid): refused ones are answered
    /// inactive, with the reason here.
    pub tracks: Vec<TrackVerdict<String>>,
    /// The media constraints the client must apply (e.g. `facingMode: environment`).
    pub constraints: ClientConstraints,
}

/// How often the liveness sweep and the bandwidth tick run while there are participants.
pub(crate) const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// What an authenticated datagram from a verified address was (see `Engine::follow_path`).
#[derive(Debug, Clone, Copy)]
enum Proof {
    /// A STUN check the transport answered; `nominates` when it carried USE-CANDIDATE.
    Check { nominates: bool },
    /// SRTP or SRTCP the transport decrypted.
    Media,
}

/// How long the path we send to must have been silent before an authenticated datagram from
/// another verified address of the participant moves it there (NAT rebinding; see
/// `Engine::follow_path`). A live path carries audio every 20 ms and RTCP every second.
pub(crate) const PATH_SILENCE: Duration = Duration::from_secs(2);

/// Timers never spin: a deadline at or before `now` is retried this much later.
const MIN_TIMER_STEP: Duration = Duration::from_millis(1);

/// The sans-IO SFU.
pub struct Engine {
    config: SfuConfig,
    settings: TransportSettings,
    calls: HashMap<CallId, Call>,
    participants: HashMap<ParticipantId, Participant>,
    demux: Demux,
    timers: timers::Deadlines<ParticipantId>,
    /// Call deadlines (ring timeout, max duration, inactivity): one entry per call.
    call_timers: timers::Deadlines<CallId>,
    events: VecDeque<Event>,
    transmits: VecDeque<Transmit>,
    /// Participants touched by the current input, drained before returning.
    touched: Vec<ParticipantId>,
    /// Participants to remove once the current drain is over.
    doomed: Vec<(ParticipantId, LeaveReason)>,
    metrics: EngineMetrics,
    rng: StdRng,
    shutting_down: bool,
    draining: bool,
    /// When the liveness sweep runs next (`None` while nobody is there).
    next_sweep: Option<Instant>,
    /// Recorded media queued for the driver (see `recording.rs`).
    recordings: recording::Recordings,
}

impl Engine {
    /// Creates an engine whose host candidates are `candidates` (announced address + the
    /// media socket's port). The driver binds the socket first and passes them in.
    pub fn new(config: SfuConfig, candidates: Vec<SocketAddr>) -> Result<Engine, Error> {
        config
            .validate()
            .map_err(|e| Error::internal("validating the config", e))?;
        if candidates.is_empty() {
            return Err(Error::internal("creating the engine", "no host candidate"));
        }
        let settings = TransportSettings::new(
            config.srtp_profiles.clone(),
            candidates,
            config.bandwidth.estimator,
        )?;
        let rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_rng(&mut rand::rng()),
        };
        Ok(Engine {
            config,
            settings,
            calls: HashMap::new(),
            participants: HashMap::new(),
            demux: Demux::default(),
            timers: timers::Deadlines::new(),
            call_timers: timers::Deadlines::new(),
            events: VecDeque::new(),
            transmits: VecDeque::new(),
            touched: Vec::with_capacity(4),
            doomed: Vec::new(),
            metrics: EngineMetrics::default(),
            rng,
            shutting_down: false,
            draining: false,
            next_sweep: None,
            recordings: Default::default(),
        })
    }

    /// The host candidates the engine announces.
    pub fn candidates(&self) -> &[SocketAddr] {
        &self.settings.candidates
    }

    /// Whether nothing is left: no call, no participant, no demux entry, no timer state.
    /// (Used by tests to prove that nothing outlives a call.)
    pub fn is_idle(&self) -> bool {
        self.calls.is_empty() && self.participants.is_empty() && self.demux.is_empty()
    }

    // ----- inputs -------------------------------------------------------------------------

    /// Feeds one datagram received on the media socket. `local` is the address it arrived
    /// on (the socket address, with the packet's destination IP when known).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        local: SocketAddr,
        datagram: BytesMut,
    ) {
        self.metrics.datagrams_in += 1;
        let (id, is_new) = match self.demux.route(from, &datagram) {
            Ok(r) => r,
            Err(reason) => {
                self.metrics.dropped.add(reason);
                return;
            }
        };
        let local = self.local_candidate_for(local);
        let Some(p) = self.participants.get_mut(&id) else {
            self.metrics.dropped.add(DropReason::UnknownSource);
            return;
        };
        let kind = crate::demux::classify(&datagram);
        let media = kind == Some(crate::demux::DatagramKind::Rtp);
        let check = kind == Some(crate::demux::DatagramKind::Stun)
            && crate::demux::is_stun_request(&datagram);
        let nominates = check && crate::demux::stun_nominates(&datagram);
        let on_path = p.transport.remote_path() == Some(from);
        let accepted = p
            .transport
            .handle_datagram(now, local, from, datagram, media)
            .is_ok();
        if !accepted {
            p.dropped.add(DropReason::TransportRejected);
            self.metrics.dropped.add(DropReason::TransportRejected);
        } else if !is_new {
            // Only traffic from a verified address proves the participant is alive.
            p.last_rx = now;
            if media && on_path {
                p.path_rx = now;
            }
            if p.state == ConnectionState::Disconnected
                && p.transport_state == ConnectionState::Connected
            {
                self.set_link_state(id, ConnectionState::Connected, now);
            }
        }
        let queued = self.transmits.len();
        self.drain(id, now);
        // A check passed when the transport answered it (or sent a triggered check back):
        // it does only when its MESSAGE-INTEGRITY, keyed by the ICE password from the SDP
        // exchange, is valid. A forged check proves nothing.
        let passed = check
            && self
                .transmits
                .iter()
                .skip(queued)
                .any(|t| t.destination == from);
        if accepted && check && !passed {
            // Refused without a word by the agent (wrong password, wrong ufrag pair).
            if let Some(p) = self.participants.get_mut(&id) {
                p.dropped.add(DropReason::TransportRejected);
            }
            self.metrics.dropped.add(DropReason::TransportRejected);
        }
        // A new address becomes the participant's only once its check passed, so only
        // ICE-verified addresses may send media for a participant.
        if is_new && passed {
            self.bind_addr(id, from);
        }
        if accepted && passed {
            self.follow_path(id, from, Proof::Check { nominates }, now);
        } else if accepted && media && !is_new && !on_path {
            self.follow_path(id, from, Proof::Media, now);
        }
    }

    /// Keeps the path we send to on the address the participant uses, after an authenticated
    /// datagram from `from` (a check that passed, or SRTP/SRTCP from a verified address).
    ///
    /// The participant's full-ICE agent chose the pair and rtc's ICE-lite agent keeps the
    /// first one nominated. When the client's NAT rebinds, the client does not know: it goes
    /// on sending on the same pair, now from a new mapped address, with its consent checks
    /// (RFC 7675, every 2 to 6 s) among it. The first check from the new address is a valid
    /// check from an unknown address: RFC 8445 §7.3.1.3 makes it a peer-reflexive candidate,
    /// and `bind_addr` lets it send. Where to *send* moves:
    /// - on a nominated check (USE-CANDIDATE, RFC 8445 §7.3.1.5): the controlling agent says
    ///   which pair to use (a client that renominates). As §7.3.1.5 asks of a pair that was not
    ///   valid yet, the nomination takes effect once the pair proves itself: the next SRTP or
    ///   SRTCP from that address (a replayed check could not be followed by fresh SRTP; our
    ///   triggered check's response would be the RFC's proof, but rtc does not surface it);
    /// - otherwise when the current path has been silent for [`PATH_SILENCE`] while the new,
    ///   verified address carries authenticated traffic. RFC 7675 ties consent to a 5-tuple,
    ///   refreshed by checks: the old mapping gets none and no media any more, the new one
    ///   both. A check from a backup pair while the current path is busy moves nothing.
    ///
    /// The old addresses are then forgotten: they may not send media until a check from them
    /// passes again.
    fn follow_path(&mut self, id: ParticipantId, from: SocketAddr, proof: Proof, now: Instant) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        // Not connected yet: the agent selects the first pair itself.
        let Some(path) = p.transport.remote_path() else {
            return;
        };
        if from == path {
            p.path_rx = now;
            if let Proof::Check { nominates } = proof {
                p.transport.refresh_path(now);
                if nominates {
                    p.nominated = None;
                }
            }
            return;
        }
        if let Proof::Check { nominates: true } = proof {
            p.nominated = Some(from);
        }
        let nominated = matches!(proof, Proof::Media) && p.nominated == Some(from);
        if !nominated && now.saturating_duration_since(p.path_rx) < PATH_SILENCE {
            return;
        }
        p.nominated = None;
        tracing::info!(participant = %id, from = %path, to = %from, nominated, "remote path moved");
        p.transport.move_path(from, now);
        p.path_rx = now;
        self.metrics.path_moves += 1;
        let forgotten: Vec<SocketAddr> = p.addrs.iter().copied().filter(|a| *a != from).collect();
        p.addrs.retain(|a| *a == from);
        for addr in forgotten {
            self.demux.unbind_addr(&addr);
        }
    }

    /// Binds `from` to participant `id` in the demux (after a verified ICE check).
    fn bind_addr(&mut self, id: ParticipantId, from: SocketAddr) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        if let Some(forgotten) = p.remember_addr(from) {
            self.demux.unbind_addr(&forgotten);
        }
        if let Some(previous) = self.demux.bind_addr(from, id)
            && let Some(prev) = self.participants.get_mut(&previous)
        {
            prev.addrs.retain(|a| *a != from);
        }
        tracing::debug!(participant = %id, %from, "remote address verified");
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|t| t <= now) {
            self.sweep(now);
        }
        let participants = &self.participants;
        let due = self.timers.due(now, |id, at| {
            participants
                .get(&id)
                .is_some_and(|p| p.deadline == Some(at))
        });
        for id in due {
            let Some(p) = self.participants.get_mut(&id) else {
                continue;
            };
            p.deadline = None;
            let connect_deadline = p.joined_at + self.config.connect_timeout;
            if p.connected_at.is_none() && now >= connect_deadline {
                tracing::info!(participant = %id, "not connected within the connect timeout");
                self.remove_participant(id, LeaveReason::ConnectTimeout, now);
                continue;
            }
            p.transport.handle_timeout(now);
            self.drain(id, now);
        }

        let calls = &self.calls;
        let due_calls = self.call_timers.due(now, |id, at| {
            calls.get(&id).is_some_and(|c| c.deadline == Some(at))
        });
        for id in due_calls {
            let Some(call) = self.calls.get_mut(&id) else {
                continue;
            };
            call.deadline = None;
            match call.lifecycle.deadline(call.last_media) {
                Some((at, reason)) if at <= now => {
                    tracing::info!(call = %id, reason = reason.as_str(), "call limit reached");
                    self.finish_call(id, reason, now);
                }
                // Media kept it alive (inactivity is scheduled lazily): sleep again.
                _ => self.schedule_call(id, now),
            }
        }
    }

    // ----- outputs ------------------------------------------------------------------------

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.transmits.pop_front();
        if t.is_some() {
            self.metrics.datagrams_out += 1;
        }
        t
    }

    /// Puts back a datagram taken with [`Engine::poll_transmit`] and not sent yet: it comes
    /// out first again.
    pub fn requeue_transmit(&mut self, transmit: Transmit) {
        self.metrics.datagrams_out = self.metrics.datagrams_out.saturating_sub(1);
        self.transmits.push_front(transmit);
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Engine::handle_timeout`] must next be called, if ever.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let participants = &self.participants;
        let calls = &self.calls;
        [
            self.timers.next(|id, at| {
                participants
                    .get(&id)
                    .is_some_and(|p| p.deadline == Some(at))
            }),
            self.call_timers
                .next(|id, at| calls.get(&id).is_some_and(|c| c.deadline == Some(at))),
            self.next_sweep,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// (Re)schedules a call's limit timer.
    fn schedule_call(&mut self, id: CallId, now: Instant) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let next = call
            .lifecycle
            .deadline(call.last_media)
            .map(|(t, _)| t.max(now + MIN_TIMER_STEP));
        self.call_timers.schedule(id, &mut call.deadline, next);
        self.call_timers.compact(
            self.calls.len(),
            self.calls
                .iter()
                .filter_map(|(id, c)| c.deadline.map(|t| (t, *id))),
        );
    }

    /// Asks `participant` for a keyframe on every video stream it sends (a camera was just
    /// granted). Bypasses nothing: each stream's rate limit still applies.
    fn request_video_keyframes(&mut self, participant: ParticipantId, now: Instant) {
        self.touched.clear();
        let ssrcs: Vec<u32> = self
            .participants
            .get(&participant)
            .map(|p| {
                p.receivers
                    .iter()
                    .filter(|r| r.kind == MediaKind::Video)
                    .map(|r| r.ssrc)
                    .collect()
            })
            .unwrap_or_default();
        for ssrc in ssrcs {
            self.request_keyframe(participant, ssrc, now);
        }
    }

    /// Drains the participants a request touched (outside [`Engine::drain`]).
    fn flush_touched(&mut self, now: Instant) {
        let touched = std::mem::take(&mut self.touched);
        for id in touched {
            self.drain(id, now);
        }
    }

    // ----- internals ----------------------------------------------------------------------

    fn local_candidate_for(&self, local: SocketAddr) -> SocketAddr {
        let c = &self.settings.candidates;
        if c.contains(&local) {
            return local;
        }
        // Bound to a wildcard, or announced behind NAT: the candidate of the same family.
        c.iter()
            .find(|a| a.is_ipv4() == local.is_ipv4())
            .copied()
            .unwrap_or(c[0])
    }

    /// Processes everything `id` produced, and everything that caused in the other
    /// participant, then reschedules their timers.
    fn drain(&mut self, id: ParticipantId, now: Instant) {
        self.touched.clear();
        self.touched.push(id);
        let mut i = 0;
        while i < self.touched.len() {
            let pid = self.touched[i];
            self.drain_one(pid, now);
            i += 1;
        }
        for k in 0..self.touched.len() {
            let pid = self.touched[k];
            self.schedule(pid, now);
        }
        while let Some((pid, reason)) = self.doomed.pop() {
            self.remove_participant(pid, reason, now);
        }
    }

    fn touch(&mut self, id: ParticipantId) {
        if !self.touched.contains(&id) {
            self.touched.push(id);
        }
    }

    fn drain_one(&mut self, id: ParticipantId, now: Instant) {
        loop {
            let Some(p) = self.participants.get_mut(&id) else {
                return;
            };
            let Some(event) = p.transport.poll_event() else {
                break;
            };
            self.on_transport_event(id, event, now);
        }
        loop {
            let Some(p) = self.participants.get_mut(&id) else {
                return;
            };
            let Some(inbound) = p.transport.poll_inbound() else {
                break;
            };
            match inbound {
                Inbound::Rtp(packet) => self.forward(id, packet, now),
                Inbound::KeyframeRequest { media_ssrc } => {
                    self.on_keyframe_request(id, media_ssrc, now)
                }
            }
        }
        // Events raised while reading (tracks opening on first packets).
        loop {
            let Some(p) = self.participants.get_mut(&id) else {
                return;
            };
            let Some(event) = p.transport.poll_event() else {
                break;
            };
            self.on_transport_event(id, event, now);
        }
        if let Some(p) = self.participants.get_mut(&id) {
            while let Some((destination, source, contents)) = p.transport.poll_transmit() {
                self.transmits.push_back(Transmit {
                    destination,
                    source,
                    contents,
                });
            }
        }
    }

    fn schedule(&mut self, id: ParticipantId, now: Instant) {
        let connect_timeout = self.config.connect_timeout;
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        let mut next = p.transport.poll_timeout();
        if p.connected_at.is_none() {
            let connect_deadline = p.joined_at + connect_timeout;
            next = Some(next.map_or(connect_deadline, |t| t.min(connect_deadline)));
        }
        let next = next.map(|t| if t <= now { now + MIN_TIMER_STEP } else { t });
        self.timers.schedule(id, &mut p.deadline, next);
        self.timers.compact(
            self.participants.len(),
            self.participants
                .values()
                .filter_map(|p| p.deadline.map(|t| (t, p.id))),
        );
    }

    fn on_transport_event(&mut self, id: ParticipantId, event: TransportEvent, now: Instant) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        let call_id = p.call;
        match event {
            TransportEvent::TrackOpened {
                receiver,
                ssrc,
                rid,
                kind,
                kind_index,
            } => {
                tracing::debug!(participant = %id, ssrc, ?rid, %kind, kind_index, "track opened");
                // The source the policy accepted for this m-line. None: the m-line was
                // refused (answered inactive), so nothing on it is ever forwarded.
                let Some(source) = p.source_of(kind, kind_index) else {
                    return;
                };
                p.receivers.retain(|r| r.ssrc != ssrc);
                p.receivers
                    .push(Receiver::new(ssrc, kind, kind_index, source, rid, receiver));
            }
            TransportEvent::IceFailed => {
                p.ice_failed = true;
                self.metrics.ice_failures += 1;
            }
            TransportEvent::State(state) => {
                if p.transport_state == state {
                    return;
                }
                let was = p.transport_state;
                p.transport_state = state;
                tracing::debug!(call = %call_id, participant = %id, from = was.as_str(), to = state.as_str(), "transport state");
                match state {
                    ConnectionState::Connected => {
                        if p.connected_at.is_none() {
                            p.connected_at = Some(now);
                            p.last_rx = now;
                            self.events.push_back(Event::ParticipantConnected {
                                call: call_id,
                                participant: id,
                                join_latency: now.saturating_duration_since(p.joined_at),
                            });
                        }
                        self.set_link_state(id, ConnectionState::Connected, now);
                    }
                    ConnectionState::Disconnected => {
                        self.set_link_state(id, ConnectionState::Disconnected, now);
                    }
                    // ICE failed: the client may come back with an ICE restart within the
                    // reconnect grace.
                    ConnectionState::Failed if p.ice_failed && p.connected_at.is_some() => {
                        self.set_link_state(id, ConnectionState::Disconnected, now);
                    }
                    ConnectionState::Failed | ConnectionState::Closed => {
                        if state == ConnectionState::Failed && !p.ice_failed {
                            self.metrics.dtls_failures += 1;
                        }
                        self.doomed.push((id, LeaveReason::TransportFailed));
                    }
                    ConnectionState::New | ConnectionState::Connecting => {
                        self.set_link_state(id, state, now);
                    }
                }
            }
        }
    }

    /// Sets a participant's effective connection state (what events and stats report), from
    /// its transport and from the liveness sweep.
    pub(super) fn set_link_state(
        &mut self,
        id: ParticipantId,
        state: ConnectionState,
        now: Instant,
    ) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        if p.state == state {
            return;
        }
        let was = p.state;
        p.state = state;
        p.disconnected_since = match state {
            ConnectionState::Disconnected => p.disconnected_since.or(Some(now)),
            _ => None,
        };
        let call_id = p.call;
        tracing::info!(call = %call_id, participant = %id, from = was.as_str(), to = state.as_str(), "connection state");
        self.events.push_back(Event::ConnectionStateChanged {
            call: call_id,
            participant: id,
            state,
        });
        match state {
            ConnectionState::Connected => self.update_call_connected(call_id, now),
            _ => {
                if let Some(call) = self.calls.get_mut(&call_id) {
                    call.pause_connected_clock(now);
                }
            }
        }
    }

    /// The liveness sweep: participants silent for `disconnect_timeout` are disconnected;
    /// those disconnected for `reconnect_grace` are lost. One pass over the participants,
    /// at most every [`SWEEP_INTERVAL`].
    fn sweep(&mut self, now: Instant) {
        let (timeout, grace) = (self.config.disconnect_timeout, self.config.reconnect_grace);
        let mut silent = Vec::new();
        let mut lost = Vec::new();
        for p in self.participants.values() {
            if p.connected_at.is_none() {
                continue;
            }
            match p.disconnected_since {
                Some(since) if now.saturating_duration_since(since) >= grace => lost.push(p.id),
                None if now.saturating_duration_since(p.last_rx) >= timeout => silent.push(p.id),
                _ => {}
            }
        }
        for id in silent {
            tracing::info!(participant = %id, "silent: marked disconnected");
            self.set_link_state(id, ConnectionState::Disconnected, now);
        }
        for id in lost {
            tracing::info!(participant = %id, "no reconnect within the grace period: lost");
            self.remove_participant(id, LeaveReason::PeerLost, now);
        }
        self.bandwidth_tick(now);
        self.next_sweep = (!self.participants.is_empty()).then(|| now + SWEEP_INTERVAL);
    }

    pub(super) fn update_call_connected(&mut self, call_id: CallId, now: Instant) {
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        let all_connected = call.members().count() == 2
            && call.members().all(|m| {
                self.participants
                    .get(&m)
                    .is_some_and(|p| p.state == ConnectionState::Connected)
            });
        // The connected clock runs only for an answered call.
        if all_connected
            && call.both_connected_since.is_none()
            && call.lifecycle.answered_at().is_some()
        {
            call.both_connected_since = Some(now);
            call.was_connected = true;
            if call.lifecycle.connected() {
                self.events
                    .push_back(Event::CallConnected { call: call_id });
                tracing::info!(call = %call_id, "call connected");
            }
        }
    }
}

/// A random ICE token: letters and digits (ICE allows more; these survive every parser).
fn random_token(rng: &mut StdRng, len: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}
