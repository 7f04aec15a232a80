//! Engine: the sans-IO top of the SFU. Calls, demux, forwarding and timers, with no I/O.
//!
//! Datagrams, requests and `now` go in; datagrams to send ([`Transmit`]), [`Event`]s and the
//! next deadline come out. After every `handle_*` call, drain [`Engine::poll_transmit`] and
//! [`Engine::poll_event`] until they return `None`, then wait until
//! [`Engine::poll_timeout`] (or the next datagram / request) and call
//! [`Engine::handle_timeout`]. The engine never reads a clock.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use policy::{MediaKind, Role};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rtc_shared::marshal::MarshalSize;

use crate::call::{Call, CallOptions};
use crate::config::SfuConfig;
use crate::demux::Demux;
use crate::error::Error;
use crate::event::{CallState, ConnectionState, EndReason, Event, LeaveReason};
use crate::ids::{CallId, ParticipantId};
use crate::media::keyframe::is_keyframe_start;
use crate::media::{DownTrack, Forwarder, Munger, Receiver, Verdict};
use crate::offer::inspect_offer;
use crate::participant::Participant;
use crate::stats::{CallRecord, CallStats, DropReason, EngineMetrics};
use crate::transport::{IceCredentials, Inbound, Transport, TransportEvent, TransportSettings};

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
}

/// The engine's answer to a join.
#[derive(Debug, Clone)]
pub struct JoinAnswer {
    /// The new participant.
    pub participant: ParticipantId,
    /// The SDP answer for the client.
    pub answer_sdp: String,
}

/// Timers never spin: a deadline at or before `now` is retried this much later.
const MIN_TIMER_STEP: Duration = Duration::from_millis(1);

/// The sans-IO SFU.
pub struct Engine {
    config: SfuConfig,
    settings: TransportSettings,
    calls: HashMap<CallId, Call>,
    participants: HashMap<ParticipantId, Participant>,
    demux: Demux,
    timers: BinaryHeap<Reverse<(Instant, ParticipantId)>>,
    events: VecDeque<Event>,
    transmits: VecDeque<Transmit>,
    /// Participants touched by the current input, drained before returning.
    touched: Vec<ParticipantId>,
    /// Participants to remove once the current drain is over.
    doomed: Vec<(ParticipantId, LeaveReason)>,
    metrics: EngineMetrics,
    rng: StdRng,
    shutting_down: bool,
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
        let settings = TransportSettings::new(config.srtp_profiles.clone(), candidates)?;
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
            timers: BinaryHeap::new(),
            events: VecDeque::new(),
            transmits: VecDeque::new(),
            touched: Vec::with_capacity(4),
            doomed: Vec::new(),
            metrics: EngineMetrics::default(),
            rng,
            shutting_down: false,
        })
    }

    /// The host candidates the engine announces.
    pub fn candidates(&self) -> &[SocketAddr] {
        &self.settings.candidates
    }

    // ----- requests -----------------------------------------------------------------------

    /// Creates a call that waits for its two participants.
    pub fn create_call(&mut self, _options: CallOptions, now: Instant) -> Result<CallId, Error> {
        if self.shutting_down {
            return Err(Error::ShuttingDown);
        }
        if self.calls.len() >= self.config.max_calls {
            return Err(Error::AtCapacity {
                max_calls: self.config.max_calls,
            });
        }
        let id = loop {
            let id = CallId::from_raw(self.rng.random());
            if !self.calls.contains_key(&id) {
                break id;
            }
        };
        self.calls.insert(id, Call::new(now));
        self.metrics.calls_created += 1;
        self.events.push_back(Event::CallCreated { call: id });
        tracing::info!(call = %id, "call created");
        Ok(id)
    }

    /// Adds a participant to a call from its SDP offer and returns the SDP answer.
    ///
    /// The answer carries the same m-lines, sendrecv, restricted to the call's codecs, with
    /// the SFU's own SSRCs: the other participant's media arrives on them whenever it is there,
    /// with no renegotiation. Nothing is left behind when this fails.
    pub fn join(
        &mut self,
        call_id: CallId,
        request: JoinRequest,
        now: Instant,
    ) -> Result<JoinAnswer, Error> {
        if self.shutting_down {
            return Err(Error::ShuttingDown);
        }
        let call = self
            .calls
            .get(&call_id)
            .ok_or(Error::CallNotFound(call_id))?;
        if let CallState::Ended(_) = call.state {
            return Err(Error::CallEnded(call_id));
        }
        if call.members().count() >= 2 {
            return Err(Error::CallFull(call_id));
        }
        if call.member(request.role).is_some() {
            return Err(Error::RoleTaken {
                call: call_id,
                role: request.role,
            });
        }
        let summary = inspect_offer(
            &request.offer_sdp,
            &self.config.video_codecs,
            call.video_codec.as_ref(),
        )?;

        let ice = loop {
            let ufrag = random_token(&mut self.rng, 16);
            if !self.demux.has_ufrag(&ufrag) {
                break IceCredentials {
                    ufrag,
                    pwd: random_token(&mut self.rng, 32),
                };
            }
        };
        let id = loop {
            let id = ParticipantId::from_raw(self.rng.random());
            if !self.participants.contains_key(&id) {
                break id;
            }
        };
        let rng = &mut self.rng;
        let (transport, answer_sdp) = Transport::accept_offer(
            &self.settings,
            request.offer_sdp,
            &summary,
            &ice,
            now,
            || rng.random(),
        )?;
        let video_codec = summary.video.as_ref().map(|(c, _)| c.codec);
        let downtracks = transport
            .legs()
            .iter()
            .enumerate()
            .map(|(i, leg)| DownTrack {
                leg: i,
                kind: leg.kind,
                kind_index: leg.kind_index,
                ssrc: leg.ssrc,
                codec: (leg.kind == MediaKind::Video)
                    .then_some(video_codec)
                    .flatten(),
                forwarder: Forwarder::new(leg.kind == MediaKind::Video),
                munger: Munger::new(
                    leg.ssrc,
                    leg.payload_type,
                    leg.clock_rate,
                    self.rng.random(),
                    self.rng.random(),
                ),
            })
            .collect();

        let call = self
            .calls
            .get_mut(&call_id)
            .ok_or(Error::CallNotFound(call_id))?;
        if call.video_codec.is_none() {
            call.video_codec = summary.video.map(|(c, _)| c);
        }
        call.set_member(request.role, Some(id));
        self.demux.add_ufrag(ice.ufrag.clone(), id);
        self.participants.insert(
            id,
            Participant {
                id,
                call: call_id,
                role: request.role,
                transport,
                ufrag: ice.ufrag,
                addrs: Vec::new(),
                state: ConnectionState::New,
                joined_at: now,
                connected_at: None,
                ice_failed: false,
                receivers: Vec::new(),
                downtracks,
                received: Default::default(),
                sent: Default::default(),
                dropped: Default::default(),
                keyframe_requests_sent: 0,
                keyframe_requests_received: 0,
                deadline: None,
            },
        );
        self.events.push_back(Event::ParticipantJoined {
            call: call_id,
            participant: id,
            role: request.role,
        });
        tracing::info!(call = %call_id, participant = %id, role = %request.role, "participant joined");
        self.drain(id, now);
        Ok(JoinAnswer {
            participant: id,
            answer_sdp,
        })
    }

    /// Adds a remote ICE candidate the client trickled. An empty candidate means the client
    /// finished gathering. (The SFU is ICE-lite: it learns addresses from the client's checks,
    /// so candidates are validated and kept, not required.)
    pub fn add_ice_candidate(
        &mut self,
        participant: ParticipantId,
        candidate: &str,
        now: Instant,
    ) -> Result<(), Error> {
        let p = self
            .participants
            .get_mut(&participant)
            .ok_or(Error::ParticipantNotFound(participant))?;
        p.transport.add_remote_candidate(candidate)?;
        self.drain(participant, now);
        Ok(())
    }

    /// Removes a participant. If the call had been connected, it ends.
    pub fn leave(&mut self, participant: ParticipantId, now: Instant) -> Result<(), Error> {
        if !self.participants.contains_key(&participant) {
            return Err(Error::ParticipantNotFound(participant));
        }
        self.remove_participant(participant, LeaveReason::Requested, now);
        Ok(())
    }

    /// Ends a call: both participants leave, the record is emitted with
    /// [`Event::CallEnded`], and the id is forgotten.
    pub fn end_call(&mut self, call: CallId, reason: EndReason, now: Instant) -> Result<(), Error> {
        if !self.calls.contains_key(&call) {
            return Err(Error::CallNotFound(call));
        }
        self.finish_call(call, reason, now);
        Ok(())
    }

    /// Statistics of a call.
    pub fn call_stats(&mut self, call: CallId, now: Instant) -> Result<CallStats, Error> {
        let c = self.calls.get(&call).ok_or(Error::CallNotFound(call))?;
        let members: Vec<ParticipantId> = c.members().collect();
        let mut participants = c.departed.clone();
        let (state, age, connected_for, video_codec) = (
            c.state,
            now.saturating_duration_since(c.created_at),
            c.was_connected.then(|| c.connected_duration(now)),
            c.video_codec.as_ref().map(|v| v.codec),
        );
        for id in members {
            if let Some(p) = self.participants.get_mut(&id) {
                participants.push(p.stats(now));
            }
        }
        Ok(CallStats {
            call,
            state,
            age,
            connected_for,
            video_codec,
            participants,
        })
    }

    /// The ids of the calls that exist now.
    pub fn calls(&self) -> impl Iterator<Item = CallId> + '_ {
        self.calls.keys().copied()
    }

    /// Engine-wide counters.
    pub fn metrics(&self) -> EngineMetrics {
        let mut m = self.metrics.clone();
        m.active_calls = self.calls.len() as u64;
        m.active_participants = self.participants.len() as u64;
        m.connected_participants = self
            .participants
            .values()
            .filter(|p| p.state == ConnectionState::Connected)
            .count() as u64;
        m
    }

    /// Stops taking calls and ends every call with [`EndReason::ServerShutdown`].
    pub fn shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        let calls: Vec<CallId> = self.calls.keys().copied().collect();
        for call in calls {
            self.finish_call(call, EndReason::ServerShutdown, now);
        }
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
        if is_new {
            if let Some(forgotten) = p.remember_addr(from) {
                self.demux.unbind_addr(&forgotten);
            }
            if let Some(previous) = self.demux.bind_addr(from, id)
                && let Some(prev) = self.participants.get_mut(&previous)
            {
                prev.addrs.retain(|a| *a != from);
            }
        }
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        let media = crate::demux::classify(&datagram) == Some(crate::demux::DatagramKind::Rtp);
        if p.transport
            .handle_datagram(now, local, from, datagram, media)
            .is_err()
        {
            p.dropped.add(DropReason::TransportRejected);
            self.metrics.dropped.add(DropReason::TransportRejected);
        }
        self.drain(id, now);
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = Vec::new();
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if self
                .participants
                .get(&id)
                .is_some_and(|p| p.deadline == Some(at))
            {
                due.push(id);
            }
        }
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

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Engine::handle_timeout`] must next be called, if ever.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if self
                .participants
                .get(&id)
                .is_some_and(|p| p.deadline == Some(at))
            {
                return Some(at);
            }
            self.timers.pop();
        }
        None
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
        if next != p.deadline {
            p.deadline = next;
            if let Some(t) = next {
                self.timers.push(Reverse((t, id)));
            }
        }
        // Stale entries are skipped lazily; rebuild when they dominate.
        if self.timers.len() > 4 * self.participants.len() + 64 {
            self.timers = self
                .participants
                .values()
                .filter_map(|p| p.deadline.map(|t| Reverse((t, p.id))))
                .collect();
        }
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
                p.receivers.retain(|r| r.ssrc != ssrc);
                p.receivers
                    .push(Receiver::new(ssrc, kind, kind_index, rid, receiver));
            }
            TransportEvent::IceFailed => {
                p.ice_failed = true;
                self.metrics.ice_failures += 1;
            }
            TransportEvent::State(state) => {
                if p.state == state {
                    return;
                }
                let was = p.state;
                p.state = state;
                tracing::info!(call = %call_id, participant = %id, from = was.as_str(), to = state.as_str(), "connection state");
                self.events.push_back(Event::ConnectionStateChanged {
                    call: call_id,
                    participant: id,
                    state,
                });
                match state {
                    ConnectionState::Connected => {
                        if p.connected_at.is_none() {
                            p.connected_at = Some(now);
                            self.events.push_back(Event::ParticipantConnected {
                                call: call_id,
                                participant: id,
                                join_latency: now.saturating_duration_since(p.joined_at),
                            });
                        }
                        self.update_call_connected(call_id, now);
                    }
                    ConnectionState::Disconnected => {
                        if let Some(call) = self.calls.get_mut(&call_id) {
                            call.pause_connected_clock(now);
                        }
                    }
                    ConnectionState::Failed | ConnectionState::Closed => {
                        if state == ConnectionState::Failed && !p.ice_failed {
                            self.metrics.dtls_failures += 1;
                        }
                        self.doomed.push((id, LeaveReason::TransportFailed));
                    }
                    _ => {}
                }
            }
        }
    }

    fn update_call_connected(&mut self, call_id: CallId, now: Instant) {
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        let all_connected = call.members().count() == 2
            && call.members().all(|m| {
                self.participants
                    .get(&m)
                    .is_some_and(|p| p.state == ConnectionState::Connected)
            });
        if all_connected && call.both_connected_since.is_none() {
            call.both_connected_since = Some(now);
            if !call.was_connected {
                call.was_connected = true;
                call.state = CallState::Connected;
                self.events
                    .push_back(Event::CallConnected { call: call_id });
                tracing::info!(call = %call_id, "call connected");
            }
        }
    }

    /// One RTP packet from `source`: count, gate, rewrite, send to the other participant.
    fn forward(&mut self, source: ParticipantId, packet: rtp::Packet, now: Instant) {
        let size = packet.header.marshal_size() + packet.payload.len();
        let Some(p) = self.participants.get_mut(&source) else {
            return;
        };
        let (call_id, role) = (p.call, p.role);
        let Some(r) = p.receiver_mut(packet.header.ssrc) else {
            p.dropped.add(DropReason::UnknownSsrc);
            self.metrics.dropped.add(DropReason::UnknownSsrc);
            return;
        };
        r.received.add(size);
        let (ssrc, kind, kind_index) = (r.ssrc, r.kind, r.kind_index);
        p.received.get_mut(kind).add(size);
        self.metrics.received.get_mut(kind).add(size);

        let reason = match self.forward_to_other(call_id, role, kind, kind_index, &packet) {
            Ok((target, dt)) => match self.send_on_downtrack(target, dt, kind, size, packet, now) {
                Ok(()) => return,
                Err(reason) => reason,
            },
            Err(reason) => reason,
        };
        if reason == DropReason::WaitingForKeyframe {
            self.request_keyframe(source, ssrc, now);
        }
        if let Some(p) = self.participants.get_mut(&source) {
            p.dropped.add(reason);
        }
        self.metrics.dropped.add(reason);
    }

    /// Rewrites the packet for DownTrack `dt` of `target` and sends it.
    fn send_on_downtrack(
        &mut self,
        target: ParticipantId,
        dt: usize,
        kind: MediaKind,
        size: usize,
        mut packet: rtp::Packet,
        now: Instant,
    ) -> Result<(), DropReason> {
        let q = self
            .participants
            .get_mut(&target)
            .ok_or(DropReason::NoSubscriber)?;
        let d = &mut q.downtracks[dt];
        if d.forwarder.take_restart() {
            d.munger.resync();
        }
        if !d.munger.rewrite(&mut packet.header, now) {
            return Err(DropReason::Stale);
        }
        let leg = d.leg;
        q.transport
            .send_rtp(leg, now, packet)
            .map_err(|()| DropReason::SendFailed)?;
        q.sent.get_mut(kind).add(size);
        self.metrics.forwarded.get_mut(kind).add(size);
        self.touch(target);
        Ok(())
    }

    /// The forwarding decision: which participant and DownTrack this packet goes to, or why
    /// it goes nowhere.
    fn forward_to_other(
        &mut self,
        call_id: CallId,
        role: Role,
        kind: MediaKind,
        kind_index: u8,
        packet: &rtp::Packet,
    ) -> Result<(ParticipantId, usize), DropReason> {
        let call = self.calls.get(&call_id).ok_or(DropReason::NoSubscriber)?;
        let granted = call.gate.may_forward(role, kind);
        let target = call.member(role.other()).ok_or(DropReason::NoSubscriber)?;
        let q = self
            .participants
            .get_mut(&target)
            .ok_or(DropReason::NoSubscriber)?;
        if q.state != ConnectionState::Connected {
            return Err(DropReason::NoSubscriber);
        }
        let dt = q
            .downtrack_index(kind, kind_index)
            .ok_or(DropReason::NoSubscriber)?;
        let d = &mut q.downtracks[dt];
        let video = kind == MediaKind::Video;
        let is_keyframe = match d.codec {
            Some(codec) if video => is_keyframe_start(codec, &packet.payload),
            _ => false,
        };
        match d
            .forwarder
            .decide(packet.header.ssrc, granted, video, is_keyframe)
        {
            Verdict::Forward => Ok((target, dt)),
            Verdict::Drop(reason) => Err(reason),
            Verdict::DropAndRequestKeyframe => Err(DropReason::WaitingForKeyframe),
        }
    }

    /// `receiver` asks for a keyframe of what it gets on our SSRC `media_ssrc`.
    fn on_keyframe_request(&mut self, receiver: ParticipantId, media_ssrc: u32, now: Instant) {
        let Some(q) = self.participants.get_mut(&receiver) else {
            return;
        };
        q.keyframe_requests_received += 1;
        let Some(source_ssrc) = q
            .downtracks
            .iter()
            .find(|d| d.ssrc == media_ssrc)
            .and_then(|d| d.forwarder.source())
        else {
            return;
        };
        let (call_id, role) = (q.call, q.role);
        let Some(source) = self
            .calls
            .get(&call_id)
            .and_then(|c| c.member(role.other()))
        else {
            return;
        };
        self.request_keyframe(source, source_ssrc, now);
    }

    /// Sends a PLI for `ssrc` to `source`, at most once per configured interval.
    fn request_keyframe(&mut self, source: ParticipantId, ssrc: u32, now: Instant) {
        let interval = self.config.keyframe_request_interval;
        let Some(p) = self.participants.get_mut(&source) else {
            return;
        };
        let Some(r) = p.receiver_mut(ssrc) else {
            return;
        };
        if !r.keyframe_request_allowed(now, interval) {
            return;
        }
        let handle = r.handle;
        p.transport.request_keyframe(handle, ssrc, now);
        p.keyframe_requests_sent += 1;
        self.metrics.keyframe_requests += 1;
        self.touch(source);
    }

    fn remove_participant(&mut self, id: ParticipantId, reason: LeaveReason, now: Instant) {
        let Some(mut p) = self.participants.remove(&id) else {
            return;
        };
        p.transport.close();
        while let Some((destination, source, contents)) = p.transport.poll_transmit() {
            self.transmits.push_back(Transmit {
                destination,
                source,
                contents,
            });
        }
        self.demux.remove(&p.ufrag, &p.addrs, id);
        let stats = p.stats(now);
        let call_id = p.call;
        self.events.push_back(Event::ParticipantLeft {
            call: call_id,
            participant: id,
            role: p.role,
            reason: reason,
        });
        tracing::info!(call = %call_id, participant = %id, reason = reason.as_str(), "participant left");
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        call.set_member(p.role, None);
        call.departed.push(stats);
        call.pause_connected_clock(now);
        // The other side's DownTracks lose their source: a later joiner restarts on a keyframe.
        if let Some(other) = call.member(p.role.other())
            && let Some(q) = self.participants.get_mut(&other)
        {
            for d in &mut q.downtracks {
                for r in &p.receivers {
                    d.forwarder
                        .source_removed(r.ssrc, d.kind == MediaKind::Video);
                }
            }
        }
        let end = match reason {
            LeaveReason::CallEnded => None,
            _ if !call.was_connected => None,
            LeaveReason::Requested => Some(EndReason::ParticipantLeft),
            LeaveReason::TransportFailed | LeaveReason::ConnectTimeout => {
                Some(EndReason::TransportFailed)
            }
        };
        if let Some(end) = end {
            self.finish_call(call_id, end, now);
        }
    }

    fn finish_call(&mut self, call_id: CallId, reason: EndReason, now: Instant) {
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        if let CallState::Ended(_) = call.state {
            return;
        }
        call.state = CallState::Ended(reason);
        let members: Vec<ParticipantId> = call.members().collect();
        for m in members {
            self.remove_participant(m, LeaveReason::CallEnded, now);
        }
        let Some(call) = self.calls.remove(&call_id) else {
            return;
        };
        let record = CallRecord {
            call: call_id,
            end_reason: reason,
            duration: now.saturating_duration_since(call.created_at),
            connected_duration: call.connected_duration(now),
            participants: call.departed,
        };
        self.metrics.calls_ended += 1;
        tracing::info!(call = %call_id, reason = reason.as_str(), duration_ms = record.duration.as_millis() as u64, "call ended");
        self.events.push_back(Event::CallEnded {
            call: call_id,
            reason,
            record: Box::new(record),
        });
    }
}

/// A random ICE token: letters and digits (ICE allows more; these survive every parser).
fn random_token(rng: &mut StdRng, len: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}
