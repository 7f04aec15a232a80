//! The forwarding path: one RTP packet from a participant to the other, and keyframe
//! requests the other way. No allocation here (the bench checks).

use std::time::Instant;

use policy::{MediaKind, Role, Source};
use rtc_shared::marshal::MarshalSize;

use super::Engine;
use crate::event::ConnectionState;
use crate::ids::{CallId, ParticipantId};
use crate::media::Verdict;
use crate::media::keyframe::is_keyframe_start;
use crate::stats::DropReason;

impl Engine {
    /// One RTP packet from `source`: count, gate, rewrite, send to the other participant.
    pub(super) fn forward(&mut self, source: ParticipantId, packet: rtp::Packet, now: Instant) {
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
        let (ssrc, kind, kind_index, media_source) = (r.ssrc, r.kind, r.kind_index, r.source);
        p.received.get_mut(kind).add(size);
        self.metrics.received.get_mut(kind).add(size);

        let reason = match self.forward_to_other(
            call_id,
            role,
            (kind, kind_index, media_source),
            &packet,
            now,
        ) {
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
        if kind == MediaKind::Video {
            d.freezes.on_packet(packet.header.timestamp, now);
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
    ///
    /// The policy gate comes first and fails closed: the source is the one the policy
    /// accepted for the packet's m-line, and that m-line's negotiated kind is what the
    /// source's kind was checked against at Join, so video is only ever forwarded under a
    /// video grant, whatever the client declared.
    fn forward_to_other(
        &mut self,
        call_id: CallId,
        role: Role,
        (kind, kind_index, source): (MediaKind, u8, Source),
        packet: &rtp::Packet,
        now: Instant,
    ) -> Result<(ParticipantId, usize), DropReason> {
        let call = self
            .calls
            .get_mut(&call_id)
            .ok_or(DropReason::NoSubscriber)?;
        call.last_media = Some(now);
        let granted = source.kind() == kind && call.grants.may_forward_source(role, source);
        if granted {
            // Recording sits behind the same gate: what is not forwarded is not recorded.
            super::recording::record_packet(
                &mut self.recordings,
                &self.participants,
                call_id,
                call,
                role,
                (kind, kind_index, source),
                packet,
                now,
            );
        }
        let target = call.member(role.other());
        let video = kind == MediaKind::Video;
        let downtrack = target.and_then(|t| {
            let q = self.participants.get_mut(&t)?;
            let connected = q.state == ConnectionState::Connected;
            let dt = q.downtrack_index(kind, kind_index)?;
            Some((t, dt, connected, &mut q.downtracks[dt]))
        });
        if !granted {
            // Fail closed, whoever is listening. The forwarder learns of the pause so that a
            // later grant restarts cleanly on a keyframe.
            if let Some((_, _, _, d)) = downtrack {
                d.forwarder.decide(packet.header.ssrc, false, video, false);
                d.freezes.pause();
            }
            return Err(DropReason::PolicyDenied);
        }
        let Some((target, dt, true, d)) = downtrack else {
            return Err(DropReason::NoSubscriber);
        };
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
            Verdict::DropAndRequestKeyframe => {
                d.freezes.pause();
                Err(DropReason::WaitingForKeyframe)
            }
        }
    }

    /// `receiver` asks for a keyframe of what it gets on our SSRC `media_ssrc`.
    pub(super) fn on_keyframe_request(
        &mut self,
        receiver: ParticipantId,
        media_ssrc: u32,
        now: Instant,
    ) {
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
    pub(super) fn request_keyframe(&mut self, source: ParticipantId, ssrc: u32, now: Instant) {
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
}
