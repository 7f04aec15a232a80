//! The engine's requests: calls (create, answer, decline, end), participants (join, leave,
//! candidates), cameras, statistics.

use std::time::{Duration, Instant};

use policy::{CameraSetting, Decision, DeclaredTrack, Lens, MediaKind, Role, Source, review_join};
use rand::RngExt;

use super::{Engine, JoinAnswer, JoinRequest, random_token};
use crate::bwe::Allocator;
use crate::call::lifecycle::Lifecycle;
use crate::call::{Call, CallOptions, CreatedCall, MAX_REF_LEN};
use crate::error::Error;
use crate::event::{CallState, ConnectionState, EndReason, Event, LeaveReason};
use crate::ids::{CallId, ParticipantId};
use crate::media::{DownTrack, Forwarder, FreezeDetector, Munger};
use crate::offer::inspect_offer;
use crate::participant::{MlineSource, Participant};
use crate::stats::{CallStats, EngineMetrics};
use crate::transport::{IceCredentials, Transport};

impl Engine {
    /// Creates a call. It rings until the callee (the role that did not initiate) answers,
    /// by [`Engine::answer`] or by joining.
    ///
    /// The profile is resolved from [`CallOptions::profile`] and its overrides; with a
    /// merchant standing, the eligibility rules may turn the call audio-only or refuse it.
    pub fn create_call(
        &mut self,
        options: CallOptions,
        now: Instant,
    ) -> Result<CreatedCall, Error> {
        if self.shutting_down || self.draining {
            return Err(Error::ShuttingDown);
        }
        if self.calls.len() >= self.config.max_calls {
            return Err(Error::AtCapacity {
                max_calls: self.config.max_calls,
            });
        }
        for (what, r) in [
            ("merchant_ref", &options.merchant_ref),
            ("customer_ref", &options.customer_ref),
        ] {
            if r.as_ref().is_some_and(|r| r.len() > MAX_REF_LEN) {
                return Err(Error::InvalidArgument(format!(
                    "{what} is longer than {MAX_REF_LEN} bytes"
                )));
            }
        }
        let limits = self.config.call_limits.with(&options.limits);
        if let Some(name) = limits.zero_limit() {
            return Err(Error::InvalidArgument(format!(
                "{name} must be greater than 0"
            )));
        }
        let mut profile = self
            .config
            .profiles
            .resolve(options.profile.as_deref(), &options.profile_override)?;
        let profile_name = options
            .profile
            .clone()
            .unwrap_or_else(|| self.config.profiles.default_name().to_owned());
        let eligibility = match &options.merchant_standing {
            Some(standing) => self.config.eligibility.check(standing),
            None => policy::Eligibility::Video,
        };
        match &eligibility {
            policy::Eligibility::Video => {}
            policy::Eligibility::AudioOnly { .. } => profile = profile.without_video(),
            policy::Eligibility::Refused { reason } => return Err(Error::NotEligible(*reason)),
        }
        let id = loop {
            let id = CallId::from_raw(self.rng.random());
            if !self.calls.contains_key(&id) {
                break id;
            }
        };
        let initiator = options.initiator;
        let lifecycle = Lifecycle::new(initiator, limits, now);
        self.calls.insert(
            id,
            Call::new(lifecycle, profile_name.clone(), &profile, options, now),
        );
        self.schedule_call(id, now);
        self.metrics.calls_created += 1;
        self.events.push_back(Event::CallCreated {
            call: id,
            initiator,
        });
        tracing::info!(call = %id, %initiator, profile = %profile_name, video = eligibility.allows_video(), "call created");
        Ok(CreatedCall {
            id,
            profile,
            profile_name,
            eligibility,
        })
    }

    /// The callee answers a ringing call. Answering an answered call is harmless.
    pub fn answer(&mut self, call: CallId, by: Role, now: Instant) -> Result<(), Error> {
        let c = self.calls.get_mut(&call).ok_or(Error::CallNotFound(call))?;
        let answered = c
            .lifecycle
            .answer(by, now)
            .map_err(|error| Error::WrongState { call, error })?;
        if answered {
            self.on_answered(call, now);
        }
        Ok(())
    }

    /// The callee declines a ringing call: it ends as declined.
    pub fn decline(&mut self, call: CallId, by: Role, now: Instant) -> Result<(), Error> {
        let c = self.calls.get_mut(&call).ok_or(Error::CallNotFound(call))?;
        let reason = c
            .lifecycle
            .decline(by, now)
            .map_err(|error| Error::WrongState { call, error })?;
        self.finish_call(call, reason, now);
        Ok(())
    }

    pub(super) fn on_answered(&mut self, call: CallId, now: Instant) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let answer_latency = c.lifecycle.answer_latency().unwrap_or_default();
        self.events.push_back(Event::CallAnswered {
            call,
            answer_latency,
        });
        tracing::info!(call = %call, answer_latency_ms = answer_latency.as_millis() as u64, "call answered");
        self.schedule_call(call, now);
        self.update_call_connected(call, now);
    }

    /// Turns a camera on (with a lens) or off. Only the camera's owner may: `actor` is the
    /// role the signaling tier authenticated. A refusal is [`Error::PolicyRefused`].
    /// Turning a camera on asks the sender for a keyframe so the picture starts at once;
    /// turning it off takes effect at the next packet.
    pub fn set_camera(
        &mut self,
        call: CallId,
        actor: Role,
        target: Role,
        lens: Option<Lens>,
        now: Instant,
    ) -> Result<(), Error> {
        let c = self.calls.get_mut(&call).ok_or(Error::CallNotFound(call))?;
        if c.lifecycle.is_ended() {
            return Err(Error::CallEnded(call));
        }
        let setting = match lens {
            Some(lens) => CameraSetting::On(lens),
            None => CameraSetting::Off,
        };
        let effects = match c.grants.set_camera(actor, target, setting, now) {
            Decision::Allow(effects) => effects,
            Decision::Refuse(reason) => {
                tracing::info!(call = %call, %actor, %target, %reason, "camera change refused");
                return Err(Error::PolicyRefused(reason));
            }
        };
        let owner = c.member(target);
        self.events.push_back(Event::CameraChanged {
            call,
            role: target,
            lens,
        });
        tracing::info!(call = %call, role = %target, ?lens, "camera changed");
        if effects.keyframe_needed()
            && let Some(owner) = owner
        {
            self.request_video_keyframes(owner, now);
            self.flush_touched(now);
        }
        Ok(())
    }

    /// `actor` asks `target` to turn its camera on: an [`Event::CameraRequested`] for the
    /// signaling tier to show, nothing more.
    pub fn request_camera(&mut self, call: CallId, actor: Role, target: Role) -> Result<(), Error> {
        let c = self.calls.get(&call).ok_or(Error::CallNotFound(call))?;
        if c.lifecycle.is_ended() {
            return Err(Error::CallEnded(call));
        }
        match c.grants.request_camera(actor, target) {
            Decision::Allow(effects) => {
                if effects.camera_requested {
                    self.events.push_back(Event::CameraRequested {
                        call,
                        by: actor,
                        target,
                    });
                }
                Ok(())
            }
            Decision::Refuse(reason) => Err(Error::PolicyRefused(reason)),
        }
    }

    /// Adds a participant to a call from its SDP offer and returns the SDP answer.
    ///
    /// The answer carries the same m-lines, sendrecv, restricted to the call's codecs, with
    /// the SFU's own SSRCs: the other participant's media arrives on them whenever it is there,
    /// with no renegotiation. Each m-line's declared source is reviewed by the policy; a
    /// refused one is answered inactive and its reason returned. The callee joining a ringing
    /// call answers it. Nothing is left behind when this fails.
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
        if call.lifecycle.is_ended() {
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
        if let Some(unknown) = request
            .tracks
            .iter()
            .find(|t| !summary.mlines.iter().any(|m| m.mid == t.mid))
        {
            return Err(Error::InvalidArgument(format!(
                "declared track mid {:?} is not an m-line of the offer",
                unknown.mid.chars().take(32).collect::<String>()
            )));
        }

        // Every m-line gets a source: declared, or the obvious default for its position.
        let profile = *call.grants.profile();
        let role_rules = profile.role(request.role);
        let declared: Vec<DeclaredTrack<String>> = summary
            .mlines
            .iter()
            .map(|m| {
                let source = request
                    .tracks
                    .iter()
                    .find(|t| t.mid == m.mid)
                    .map(|t| t.source)
                    .unwrap_or(match (m.kind, m.kind_index) {
                        (MediaKind::Audio, _) => Source::Microphone,
                        (MediaKind::Video, 0) => {
                            if role_rules.accepted_sources.contains(Source::CameraFront)
                                && !role_rules.accepted_sources.contains(Source::CameraRear)
                            {
                                Source::CameraFront
                            } else {
                                Source::CameraRear
                            }
                        }
                        (MediaKind::Video, _) => Source::Screen,
                    });
                DeclaredTrack {
                    key: m.mid.clone(),
                    source,
                    kind: m.kind,
                }
            })
            .collect();
        let review = review_join(&profile, request.role, declared);
        let refused: Vec<String> = review.refused().map(|(t, _)| t.key.clone()).collect();

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
            &refused,
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
                freezes: FreezeDetector::default(),
                allocator: (leg.kind == MediaKind::Video)
                    .then(|| Allocator::new(self.config.bandwidth.allocator)),
                paused_since: None,
                paused_total: Duration::ZERO,
                layer_rid: None,
            })
            .collect();
        let sources = summary
            .mlines
            .iter()
            .zip(&review.tracks)
            .filter(|(_, v)| v.is_accepted())
            .map(|(m, v)| MlineSource {
                kind: m.kind,
                kind_index: m.kind_index,
                source: v.source,
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
        let answered = request.role != call.lifecycle.initiator()
            && call.lifecycle.answer(request.role, now) == Ok(true);
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
                sources,
                receivers: Vec::new(),
                downtracks,
                received: Default::default(),
                sent: Default::default(),
                dropped: Default::default(),
                keyframe_requests_sent: 0,
                keyframe_requests_received: 0,
                deadline: None,
                transport_state: ConnectionState::New,
                last_rx: now,
                path_rx: now,
                nominated: None,
                disconnected_since: None,
                audio_rate: Default::default(),
                next_quality: now + self.config.bandwidth.quality_interval,
                last_remb: None,
            },
        );
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now + super::SWEEP_INTERVAL);
        }
        self.events.push_back(Event::ParticipantJoined {
            call: call_id,
            participant: id,
            role: request.role,
        });
        tracing::info!(call = %call_id, participant = %id, role = %request.role, refused = refused.len(), "participant joined");
        if answered {
            self.on_answered(call_id, now);
        }
        self.drain(id, now);
        Ok(JoinAnswer {
            participant: id,
            answer_sdp,
            tracks: review.tracks,
            constraints: review.constraints,
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

    /// Restarts ICE for a participant whose network changed (Wi-Fi to 4G): the client sends
    /// a new offer with new ICE credentials and the same m-lines; the answer comes back. The
    /// participant, its call, its role and its grants stay as they are.
    pub fn restart_ice(
        &mut self,
        participant: ParticipantId,
        offer_sdp: String,
        now: Instant,
    ) -> Result<String, Error> {
        let p = self
            .participants
            .get(&participant)
            .ok_or(Error::ParticipantNotFound(participant))?;
        let call = self.calls.get(&p.call).ok_or(Error::CallNotFound(p.call))?;
        let summary = inspect_offer(
            &offer_sdp,
            &self.config.video_codecs,
            call.video_codec.as_ref(),
        )?;
        let same_mlines = summary.mlines.len() == p.transport.mline_count()
            && summary
                .mlines
                .iter()
                .all(|m| p.transport.has_mline(&m.mid, m.kind));
        if !same_mlines {
            return Err(Error::InvalidOffer(crate::OfferError::Rejected(
                "an ICE restart offer must keep the m-lines of the original offer".to_owned(),
            )));
        }
        let p = self
            .participants
            .get_mut(&participant)
            .ok_or(Error::ParticipantNotFound(participant))?;
        let answer = p.transport.restart_ice(offer_sdp, now)?;
        tracing::info!(participant = %participant, "ICE restart");
        self.drain(participant, now);
        Ok(answer)
    }

    /// Removes a participant. Before the answer this cancels the call when the initiator
    /// leaves; after it, either side leaving ends the call.
    pub fn leave(&mut self, participant: ParticipantId, now: Instant) -> Result<(), Error> {
        if !self.participants.contains_key(&participant) {
            return Err(Error::ParticipantNotFound(participant));
        }
        self.remove_participant(participant, LeaveReason::Requested, now);
        Ok(())
    }

    /// Ends a call: both participants leave, the record is emitted with
    /// [`Event::CallEnded`], and the id is forgotten. A call that was still ringing ends as
    /// [`EndReason::Cancelled`].
    pub fn end_call(&mut self, call: CallId, reason: EndReason, now: Instant) -> Result<(), Error> {
        let c = self.calls.get(&call).ok_or(Error::CallNotFound(call))?;
        let reason = match reason {
            EndReason::Requested => c.lifecycle.hang_up_reason(reason),
            other => other,
        };
        self.finish_call(call, reason, now);
        Ok(())
    }

    /// Statistics of a call.
    pub fn call_stats(&mut self, call: CallId, now: Instant) -> Result<CallStats, Error> {
        let c = self.calls.get(&call).ok_or(Error::CallNotFound(call))?;
        let members: Vec<ParticipantId> = c.members().collect();
        let mut participants = c.departed.clone();
        let stats = CallStats {
            call,
            state: c.lifecycle.state(),
            age: now.saturating_duration_since(c.lifecycle.created_at()),
            connected_for: c.was_connected.then(|| c.connected_duration(now)),
            video_codec: c.video_codec.as_ref().map(|v| v.codec),
            customer_camera_on: c.grants.camera_on(Role::Customer),
            customer_camera: c.grants.lens(Role::Customer),
            merchant_camera_on: c.grants.camera_on(Role::Merchant),
            merchant_camera: c.grants.lens(Role::Merchant),
            initiator: c.lifecycle.initiator(),
            profile: c.profile_name.clone(),
            answer_latency: c.lifecycle.answer_latency(),
            participants: Vec::new(),
        };
        for id in members {
            if let Some(p) = self.participants.get_mut(&id) {
                participants.push(p.stats(now));
            }
        }
        Ok(CallStats {
            participants,
            ..stats
        })
    }

    /// The ids of the calls that exist now.
    pub fn calls(&self) -> impl Iterator<Item = CallId> + '_ {
        self.calls.keys().copied()
    }

    /// The state of a call.
    pub fn call_state(&self, call: CallId) -> Option<CallState> {
        self.calls.get(&call).map(|c| c.lifecycle.state())
    }

    /// Engine-wide counters.
    pub fn metrics(&self) -> EngineMetrics {
        let mut m = self.metrics.clone();
        m.recording_packets_dropped = self.recordings.dropped;
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

    /// Stops taking new calls; existing calls go on, and their participants may still join
    /// (graceful drain).
    pub fn stop_accepting(&mut self) {
        self.draining = true;
    }
}
