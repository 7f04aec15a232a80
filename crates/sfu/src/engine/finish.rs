//! How participants leave and calls end, and the call record.

use std::time::Instant;

use policy::{CameraSetting, MediaKind, Role};

use super::{Engine, Transmit};
use crate::call::Call;
use crate::event::{EndReason, Event, LeaveReason};
use crate::ids::{CallId, ParticipantId};
use crate::stats::{CallRecord, DirectionQuality, ParticipantStats};

impl Engine {
    pub(super) fn remove_participant(
        &mut self,
        id: ParticipantId,
        reason: LeaveReason,
        now: Instant,
    ) {
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
        p.state = crate::event::ConnectionState::Closed;
        let stats = p.stats(now);
        let call_id = p.call;
        self.events.push_back(Event::ParticipantLeft {
            call: call_id,
            participant: id,
            role: p.role,
            reason,
        });
        tracing::info!(call = %call_id, participant = %id, role = %p.role, reason = reason.as_str(), "participant left");
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        call.set_member(p.role, None);
        call.departed.push(stats);
        call.pause_connected_clock(now);
        // A camera stops with its owner: its time stops counting, and a rejoin starts dark.
        if call.grants.camera_on(p.role) {
            let _ = call
                .grants
                .set_camera(p.role, p.role, CameraSetting::Off, now);
            self.events.push_back(Event::CameraChanged {
                call: call_id,
                role: p.role,
                lens: None,
            });
        }
        // The other side's DownTracks lose their source: a later joiner restarts on a keyframe.
        if let Some(other) = call.member(p.role.other())
            && let Some(q) = self.participants.get_mut(&other)
        {
            for d in &mut q.downtracks {
                for r in &p.receivers {
                    d.forwarder
                        .source_removed(r.ssrc, d.kind == MediaKind::Video);
                }
                d.freezes.pause();
            }
        }
        let end = match reason {
            LeaveReason::CallEnded => None,
            // Before the answer only the initiator leaving ends (cancels) the call; a callee
            // that drops out may join again while it still rings.
            _ if call.lifecycle.answered_at().is_none() => {
                (p.role == call.lifecycle.initiator()).then_some(EndReason::Cancelled)
            }
            LeaveReason::Requested => Some(EndReason::ParticipantLeft),
            LeaveReason::TransportFailed | LeaveReason::ConnectTimeout => {
                Some(EndReason::TransportFailed)
            }
            LeaveReason::PeerLost => Some(EndReason::PeerLost),
        };
        if let Some(end) = end {
            self.finish_call(call_id, end, now);
        }
    }

    pub(super) fn finish_call(&mut self, call_id: CallId, reason: EndReason, now: Instant) {
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        // Idempotent: the lifecycle may already be ended (declined), but the call is only
        // finished once, when it is removed below.
        call.lifecycle.end(reason, now);
        let reason = match call.lifecycle.state() {
            crate::event::CallState::Ended(r) => r,
            _ => reason,
        };
        let members: Vec<ParticipantId> = call.members().collect();
        self.end_recording(
            call_id,
            crate::recording::RecordingStopReason::CallEnded,
            None,
            now,
        );
        for m in members {
            self.remove_participant(m, LeaveReason::CallEnded, now);
        }
        let Some(call) = self.calls.remove(&call_id) else {
            return;
        };
        let record = call_record(call_id, &call, reason, now);
        self.metrics.calls_ended += 1;
        tracing::info!(
            call = %call_id,
            reason = reason.as_str(),
            duration_ms = record.duration.as_millis() as u64,
            connected_ms = record.connected_duration.as_millis() as u64,
            customer_camera_ms = record.customer_camera_duration.as_millis() as u64,
            "call ended"
        );
        self.events.push_back(Event::CallEnded {
            call: call_id,
            reason,
            record: Box::new(record),
        });
    }
}

/// The record of an ended call, from its state and its participants' final statistics.
fn call_record(id: CallId, call: &Call, reason: EndReason, now: Instant) -> CallRecord {
    let last = |role: Role| call.departed.iter().rev().find(|p| p.role == role);
    let connected = call.connected_duration(now);
    let merchant = last(Role::Merchant);
    let customer = last(Role::Customer);
    CallRecord {
        call: id,
        merchant_ref: call.merchant_ref.clone(),
        customer_ref: call.customer_ref.clone(),
        initiator: call.lifecycle.initiator(),
        profile: call.profile_name.clone(),
        end_reason: reason,
        ring_duration: call.lifecycle.ring_duration(now),
        answer_latency: call.lifecycle.answer_latency(),
        duration: now.saturating_duration_since(call.lifecycle.created_at()),
        connected_duration: connected,
        customer_camera_used: call.grants.camera_usage(Role::Customer).ever_on(),
        customer_camera_duration: call.grants.camera_time(Role::Customer, now),
        merchant_camera_duration: call.grants.camera_time(Role::Merchant, now),
        to_customer: direction(merchant, customer, connected),
        to_merchant: direction(customer, merchant, connected),
        participants: call.departed.clone(),
        recordings: call.recording.finished.clone(),
    }
}

/// Quality of what `from` sent as `to` got it.
fn direction(
    from: Option<&ParticipantStats>,
    to: Option<&ParticipantStats>,
    connected: std::time::Duration,
) -> DirectionQuality {
    let Some(to) = to else {
        return DirectionQuality::default();
    };
    let packets = to.sent.audio.packets + to.sent.video.packets;
    let bytes = to.sent.audio.bytes + to.sent.video.bytes;
    let uplink_lost = from.map_or(0, |f| f.uplink.packets_lost.max(0) as u64);
    let downlink_lost = to.downlink.packets_lost.max(0) as u64;
    let received = from.map_or(packets, |f| {
        f.received.audio.packets + f.received.video.packets
    });
    let lost = uplink_lost + downlink_lost;
    let loss = if received + uplink_lost == 0 {
        0.0
    } else {
        (lost as f64 / (received + uplink_lost) as f64).min(1.0)
    };
    let secs = connected.as_secs_f64();
    DirectionQuality {
        packets,
        bytes,
        loss,
        rtt: to.downlink.rtt.or(to.uplink.rtt),
        jitter: match (from.and_then(|f| f.uplink.jitter), to.downlink.jitter) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        },
        average_bitrate_bps: if secs > 0.0 {
            (bytes as f64 * 8.0 / secs) as u64
        } else {
            0
        },
        freezes: to.video_freezes,
        freeze_duration: to.video_freeze_duration,
        video_paused_duration: to.video_paused_duration,
        estimated_bps: to.estimated_downlink_bps,
    }
}
