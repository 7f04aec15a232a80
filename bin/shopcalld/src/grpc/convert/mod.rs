//! Convert: request fields into `sfu` values (checked), and `sfu` values into `shopcall.v1`
//! messages.
//!
//! A request field that cannot be used fails with a [`RequestError`] naming the field;
//! `status.rs` turns it into INVALID_ARGUMENT. `sfu` enums are `#[non_exhaustive]`: a value
//! this daemon does not know yet maps to the proto's UNSPECIFIED (and an unknown event is
//! skipped), and the tests below check that every value known today maps to a real one.
//!
//! `policy.rs` holds the call-policy half: profiles and overrides, sources, constraints,
//! track verdicts, eligibility.

pub mod policy;
pub mod recording;

use std::time::{Duration, SystemTime};

use sfu::policy::Lens;
use sfu::{
    CallId, CallLimitsOverride, CallRecord, CallState, CallStats, ConnectionState, Counter,
    DirectionQuality, DropCounters, DropReason, EndReason, Event, KindCounters, LeaveReason,
    LinkQuality, ParseIdError, ParticipantId, ParticipantStats, PauseReason, Role, VideoCodec,
};
use shopcall_proto::v1 as pb;

/// The longest time limit a request may set (a day; a service call is minutes long).
pub const MAX_LIMIT: Duration = Duration::from_secs(24 * 60 * 60);

/// A request field that cannot be used. Always the caller's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A required field is empty.
    #[error("{field} is required")]
    Missing {
        /// The field.
        field: &'static str,
    },
    /// An id field is not 16 hexadecimal digits.
    #[error("{field}: {source}")]
    InvalidId {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        source: ParseIdError,
    },
    /// An enum field is UNSPECIFIED where a value is required, or holds a value this daemon
    /// does not know.
    #[error("{field} must be {expected}, got {got}")]
    InvalidEnum {
        /// The field (a path such as `profile_override.customer.camera_at_join`).
        field: String,
        /// The values it may take.
        expected: &'static str,
        /// What was sent, by name when it is a known value.
        got: String,
    },
    /// A field is required because of another field's value.
    #[error("{field} is required when {when}")]
    MissingWhen {
        /// The field.
        field: &'static str,
        /// The condition, naming the other field.
        when: &'static str,
    },
    /// A list names the same item twice.
    #[error("{field} lists {item} twice")]
    Duplicate {
        /// The list field.
        field: String,
        /// The repeated item.
        item: String,
    },
    /// A duration is negative, zero, or longer than [`MAX_LIMIT`].
    #[error("{field} must be more than 0 s and at most {} s, got {got}", MAX_LIMIT.as_secs())]
    DurationOutOfRange {
        /// The field.
        field: &'static str,
        /// What was sent, as `<seconds>s <nanos>ns`.
        got: String,
    },
    /// A text field is longer than allowed.
    #[error("{field} is longer than {max} bytes")]
    TooLong {
        /// The field.
        field: &'static str,
        /// The limit.
        max: usize,
    },
}

/// Parses a required call id field.
pub fn call_id(field: &'static str, text: &str) -> Result<CallId, RequestError> {
    if text.is_empty() {
        return Err(RequestError::Missing { field });
    }
    text.parse()
        .map_err(|source| RequestError::InvalidId { field, source })
}

/// Parses an optional call id field (empty means none).
pub fn optional_call_id(field: &'static str, text: &str) -> Result<Option<CallId>, RequestError> {
    if text.is_empty() {
        return Ok(None);
    }
    call_id(field, text).map(Some)
}

/// Parses a required participant id field.
pub fn participant_id(field: &'static str, text: &str) -> Result<ParticipantId, RequestError> {
    if text.is_empty() {
        return Err(RequestError::Missing { field });
    }
    text.parse()
        .map_err(|source| RequestError::InvalidId { field, source })
}

/// Checks that a required text field is not empty.
pub fn required<'a>(field: &'static str, text: &'a str) -> Result<&'a str, RequestError> {
    if text.trim().is_empty() {
        return Err(RequestError::Missing { field });
    }
    Ok(text)
}

/// An enum value as sent: its name when known, else the number.
pub(crate) fn enum_text(name: Option<&str>, value: i32) -> String {
    name.map_or_else(|| format!("unknown value {value}"), str::to_owned)
}

/// A required role field (`role`, `actor`, `target`).
pub fn role_field(field: &'static str, value: i32) -> Result<Role, RequestError> {
    match pb::Role::try_from(value) {
        Ok(pb::Role::Merchant) => Ok(Role::Merchant),
        Ok(pb::Role::Customer) => Ok(Role::Customer),
        other => Err(RequestError::InvalidEnum {
            field: field.to_owned(),
            expected: "ROLE_MERCHANT or ROLE_CUSTOMER",
            got: enum_text(other.ok().map(|r| r.as_str_name()), value),
        }),
    }
}

/// The role of a Join, Answer or Decline request.
pub fn role_from_proto(value: i32) -> Result<Role, RequestError> {
    role_field("role", value)
}

/// CreateCall's initiator: unset means the merchant (who sends the invitation card).
pub fn initiator(value: i32) -> Result<Role, RequestError> {
    if value == pb::Role::Unspecified as i32 {
        return Ok(Role::Merchant);
    }
    role_field("initiator", value)
}

/// SetCamera's lens: required when turning the camera on, ignored when turning it off.
pub fn camera_lens(on: bool, value: i32) -> Result<Option<Lens>, RequestError> {
    if !on {
        return Ok(None);
    }
    match pb::Lens::try_from(value) {
        Ok(pb::Lens::Rear) => Ok(Some(Lens::Rear)),
        Ok(pb::Lens::Front) => Ok(Some(Lens::Front)),
        Ok(pb::Lens::Unspecified) => Err(RequestError::MissingWhen {
            field: "lens",
            when: "on is true",
        }),
        Err(_) => Err(RequestError::InvalidEnum {
            field: "lens".to_owned(),
            expected: "LENS_REAR or LENS_FRONT",
            got: enum_text(None, value),
        }),
    }
}

/// An optional external reference (empty means none), at most [`sfu::call::MAX_REF_LEN`].
pub fn optional_ref(field: &'static str, text: String) -> Result<Option<String>, RequestError> {
    if text.len() > sfu::call::MAX_REF_LEN {
        return Err(RequestError::TooLong {
            field,
            max: sfu::call::MAX_REF_LEN,
        });
    }
    Ok((!text.is_empty()).then_some(text))
}

/// An optional time limit: more than zero, at most [`MAX_LIMIT`].
pub fn limit(
    field: &'static str,
    d: Option<prost_types::Duration>,
) -> Result<Option<Duration>, RequestError> {
    let Some(d) = d else {
        return Ok(None);
    };
    let out_of_range = || RequestError::DurationOutOfRange {
        field,
        got: format!("{}s {}ns", d.seconds, d.nanos),
    };
    let secs = u64::try_from(d.seconds).map_err(|_| out_of_range())?;
    let nanos = u32::try_from(d.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(out_of_range)?;
    let value = Duration::new(secs, nanos);
    if value.is_zero() || value > MAX_LIMIT {
        return Err(out_of_range());
    }
    Ok(Some(value))
}

/// CreateCall's per-call limits.
pub fn call_limits(limits: Option<pb::CallLimits>) -> Result<CallLimitsOverride, RequestError> {
    let limits = limits.unwrap_or_default();
    Ok(CallLimitsOverride {
        ring_timeout: limit("limits.ring_timeout", limits.ring_timeout)?,
        max_duration: limit("limits.max_duration", limits.max_duration)?,
        inactivity_timeout: limit("limits.inactivity_timeout", limits.inactivity_timeout)?,
    })
}

/// A lens on the wire.
pub fn lens(lens: Lens) -> pb::Lens {
    match lens {
        Lens::Rear => pb::Lens::Rear,
        Lens::Front => pb::Lens::Front,
    }
}

/// A camera's state on the wire: on with its lens, or off.
///
/// `sfu::CallStats` reports the lens only when exactly one is granted, so a camera that is on
/// at join with both lenses allowed (the merchant's, under the built-in profiles) reads as
/// off here until the owner picks a lens with SetCamera. Reporting it exactly needs
/// `CallStats` to carry `Grants::camera_on` per role.
pub fn camera_state(on: bool, chosen: Option<Lens>) -> pb::CameraState {
    pb::CameraState {
        on,
        lens: chosen.filter(|_| on).map_or(pb::Lens::Unspecified, lens) as i32,
    }
}

/// A role on the wire.
pub fn role(role: Role) -> pb::Role {
    match role {
        Role::Merchant => pb::Role::Merchant,
        Role::Customer => pb::Role::Customer,
    }
}

/// A duration on the wire.
pub fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        // Always below 1e9, so it fits.
        nanos: d.subsec_nanos() as i32,
    }
}

/// A wall-clock time on the wire.
pub fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: since.subsec_nanos() as i32,
    }
}

/// A call state on the wire.
pub fn call_state(state: CallState) -> pb::CallState {
    match state {
        CallState::Ringing => pb::CallState::Ringing,
        CallState::Answered => pb::CallState::Answered,
        CallState::Connected => pb::CallState::Connected,
        CallState::Ended(_) => pb::CallState::Ended,
        _ => pb::CallState::Unspecified,
    }
}

/// An end reason on the wire.
pub fn end_reason(reason: EndReason) -> pb::EndReason {
    match reason {
        EndReason::Requested => pb::EndReason::Requested,
        EndReason::ParticipantLeft => pb::EndReason::ParticipantLeft,
        EndReason::TransportFailed => pb::EndReason::TransportFailed,
        EndReason::ServerShutdown => pb::EndReason::ServerShutdown,
        EndReason::Declined => pb::EndReason::Declined,
        EndReason::Missed => pb::EndReason::Missed,
        EndReason::Cancelled => pb::EndReason::Cancelled,
        EndReason::MaxDuration => pb::EndReason::MaxDuration,
        EndReason::Inactivity => pb::EndReason::Inactivity,
        EndReason::PeerLost => pb::EndReason::PeerLost,
        _ => pb::EndReason::Unspecified,
    }
}

/// A leave reason on the wire.
pub fn leave_reason(reason: LeaveReason) -> pb::LeaveReason {
    match reason {
        LeaveReason::Requested => pb::LeaveReason::Requested,
        LeaveReason::CallEnded => pb::LeaveReason::CallEnded,
        LeaveReason::TransportFailed => pb::LeaveReason::TransportFailed,
        LeaveReason::ConnectTimeout => pb::LeaveReason::ConnectTimeout,
        LeaveReason::PeerLost => pb::LeaveReason::PeerLost,
        _ => pb::LeaveReason::Unspecified,
    }
}

/// A connection state on the wire.
pub fn connection_state(state: ConnectionState) -> pb::ConnectionState {
    match state {
        ConnectionState::New => pb::ConnectionState::New,
        ConnectionState::Connecting => pb::ConnectionState::Connecting,
        ConnectionState::Connected => pb::ConnectionState::Connected,
        ConnectionState::Disconnected => pb::ConnectionState::Disconnected,
        ConnectionState::Failed => pb::ConnectionState::Failed,
        ConnectionState::Closed => pb::ConnectionState::Closed,
        _ => pb::ConnectionState::Unspecified,
    }
}

/// A video pause reason on the wire.
pub fn pause_reason(reason: PauseReason) -> pb::VideoPauseReason {
    match reason {
        PauseReason::WeakNetwork => pb::VideoPauseReason::WeakNetwork,
        _ => pb::VideoPauseReason::Unspecified,
    }
}

/// A video codec on the wire.
pub fn video_codec(codec: VideoCodec) -> pb::VideoCodec {
    match codec {
        VideoCodec::Vp8 => pb::VideoCodec::Vp8,
        VideoCodec::Vp9 => pb::VideoCodec::Vp9,
        VideoCodec::H264 => pb::VideoCodec::H264,
        _ => pb::VideoCodec::Unspecified,
    }
}

/// A drop reason on the wire.
pub fn drop_reason(reason: DropReason) -> pb::DropReason {
    match reason {
        DropReason::Unclassified => pb::DropReason::Unclassified,
        DropReason::MalformedStun => pb::DropReason::MalformedStun,
        DropReason::UnknownUfrag => pb::DropReason::UnknownUfrag,
        DropReason::UnknownSource => pb::DropReason::UnknownSource,
        DropReason::TransportRejected => pb::DropReason::TransportRejected,
        DropReason::UnknownSsrc => pb::DropReason::UnknownSsrc,
        DropReason::NoSubscriber => pb::DropReason::NoSubscriber,
        DropReason::PolicyDenied => pb::DropReason::PolicyDenied,
        DropReason::SendFailed => pb::DropReason::SendFailed,
        DropReason::WaitingForKeyframe => pb::DropReason::WaitingForKeyframe,
        DropReason::LayerNotSelected => pb::DropReason::LayerNotSelected,
        DropReason::Stale => pb::DropReason::Stale,
        DropReason::BandwidthPaused => pb::DropReason::BandwidthPaused,
        _ => pb::DropReason::Unspecified,
    }
}

fn counter(c: &Counter) -> pb::Counter {
    pb::Counter {
        packets: c.packets,
        bytes: c.bytes,
    }
}

fn media_counters(k: &KindCounters) -> pb::MediaCounters {
    pb::MediaCounters {
        audio: Some(counter(&k.audio)),
        video: Some(counter(&k.video)),
    }
}

fn drops(d: &DropCounters) -> Vec<pb::DropCount> {
    d.iter()
        .filter(|(_, n)| *n > 0)
        .map(|(reason, packets)| pb::DropCount {
            reason: drop_reason(reason) as i32,
            packets,
        })
        .collect()
}

fn link_quality(q: &LinkQuality) -> pb::LinkQuality {
    pb::LinkQuality {
        rtt: q.rtt.map(duration),
        fraction_lost: q.fraction_lost,
        packets_lost: q.packets_lost,
        jitter: q.jitter.map(duration),
    }
}

/// One participant's statistics on the wire.
pub fn participant_stats(p: &ParticipantStats) -> pb::ParticipantStats {
    pb::ParticipantStats {
        participant_id: p.participant.to_string(),
        role: role(p.role) as i32,
        connection_state: connection_state(p.connection) as i32,
        joined_duration: Some(duration(p.joined_for)),
        connected_duration: p.connected_for.map(duration),
        received: Some(media_counters(&p.received)),
        sent: Some(media_counters(&p.sent)),
        dropped: drops(&p.dropped),
        keyframe_requests_sent: p.keyframe_requests_sent,
        keyframe_requests_received: p.keyframe_requests_received,
        uplink: Some(link_quality(&p.uplink)),
        downlink: Some(link_quality(&p.downlink)),
        video_freezes: p.video_freezes,
        video_freeze_duration: Some(duration(p.video_freeze_duration)),
        estimated_downlink_bps: p.estimated_downlink_bps,
        video_layer: p.video_layer.clone().unwrap_or_default(),
        video_paused: p.video_paused,
        video_paused_duration: Some(duration(p.video_paused_duration)),
    }
}

/// A call's statistics on the wire.
pub fn call(stats: &CallStats) -> pb::Call {
    let ended = match stats.state {
        CallState::Ended(reason) => end_reason(reason),
        _ => pb::EndReason::Unspecified,
    };
    pb::Call {
        call_id: stats.call.to_string(),
        state: call_state(stats.state) as i32,
        end_reason: ended as i32,
        age: Some(duration(stats.age)),
        connected_duration: stats.connected_for.map(duration),
        video_codec: stats
            .video_codec
            .map_or(pb::VideoCodec::Unspecified, video_codec) as i32,
        customer_camera: Some(camera_state(
            stats.customer_camera_on,
            stats.customer_camera,
        )),
        merchant_camera: Some(camera_state(
            stats.merchant_camera_on,
            stats.merchant_camera,
        )),
        participants: stats.participants.iter().map(participant_stats).collect(),
    }
}

/// One direction's quality on the wire.
fn direction_quality(q: &DirectionQuality) -> pb::DirectionQuality {
    pb::DirectionQuality {
        packets: q.packets,
        bytes: q.bytes,
        loss: q.loss,
        rtt: q.rtt.map(duration),
        jitter: q.jitter.map(duration),
        average_bitrate_bps: q.average_bitrate_bps,
        freezes: q.freezes,
        freeze_duration: Some(duration(q.freeze_duration)),
        video_paused_duration: Some(duration(q.video_paused_duration)),
        estimated_bps: q.estimated_bps,
    }
}

/// A call record on the wire.
pub fn call_record(r: &CallRecord) -> pb::CallRecord {
    pb::CallRecord {
        call_id: r.call.to_string(),
        end_reason: end_reason(r.end_reason) as i32,
        duration: Some(duration(r.duration)),
        connected_duration: Some(duration(r.connected_duration)),
        initiator: role(r.initiator) as i32,
        profile: r.profile.clone(),
        merchant_ref: r.merchant_ref.clone().unwrap_or_default(),
        customer_ref: r.customer_ref.clone().unwrap_or_default(),
        ring_duration: Some(duration(r.ring_duration)),
        answer_latency: r.answer_latency.map(duration),
        customer_camera_used: r.customer_camera_used,
        customer_camera_duration: Some(duration(r.customer_camera_duration)),
        merchant_camera_duration: Some(duration(r.merchant_camera_duration)),
        to_customer: Some(direction_quality(&r.to_customer)),
        to_merchant: Some(direction_quality(&r.to_merchant)),
        participants: r.participants.iter().map(participant_stats).collect(),
        recordings: r.recordings.iter().map(recording::summary).collect(),
    }
}

/// An event on the wire, stamped with `time`. `None` for an event kind this daemon does not
/// know (the `sfu` event enum may grow before the API does).
pub fn event(e: &Event, time: SystemTime) -> Option<pb::Event> {
    use pb::event::Kind;
    let kind = match e {
        Event::CallCreated { initiator, .. } => Kind::CallCreated(pb::CallCreated {
            initiator: role(*initiator) as i32,
        }),
        Event::CallAnswered { answer_latency, .. } => Kind::CallAnswered(pb::CallAnswered {
            answer_latency: Some(duration(*answer_latency)),
        }),
        Event::CameraChanged {
            role: r, lens: l, ..
        } => Kind::CameraChanged(pb::CameraChanged {
            role: role(*r) as i32,
            on: l.is_some(),
            lens: l.map_or(pb::Lens::Unspecified, lens) as i32,
        }),
        Event::CameraRequested { by, target, .. } => Kind::CameraRequested(pb::CameraRequested {
            by: role(*by) as i32,
            target: role(*target) as i32,
        }),
        Event::ParticipantJoined {
            participant,
            role: r,
            ..
        } => Kind::ParticipantJoined(pb::ParticipantJoined {
            participant_id: participant.to_string(),
            role: role(*r) as i32,
        }),
        Event::ConnectionStateChanged {
            participant, state, ..
        } => Kind::ConnectionStateChanged(pb::ConnectionStateChanged {
            participant_id: participant.to_string(),
            state: connection_state(*state) as i32,
        }),
        Event::ParticipantConnected {
            participant,
            join_latency,
            ..
        } => Kind::ParticipantConnected(pb::ParticipantConnected {
            participant_id: participant.to_string(),
            join_latency: Some(duration(*join_latency)),
        }),
        Event::CallConnected { .. } => Kind::CallConnected(pb::CallConnected {}),
        Event::ParticipantLeft {
            participant,
            role: r,
            reason,
            ..
        } => Kind::ParticipantLeft(pb::ParticipantLeft {
            participant_id: participant.to_string(),
            role: role(*r) as i32,
            reason: leave_reason(*reason) as i32,
        }),
        Event::VideoPaused {
            participant,
            reason,
            ..
        } => Kind::VideoPaused(pb::VideoPaused {
            participant_id: participant.to_string(),
            reason: pause_reason(*reason) as i32,
        }),
        Event::VideoResumed { participant, .. } => Kind::VideoResumed(pb::VideoResumed {
            participant_id: participant.to_string(),
        }),
        Event::LayerChanged {
            participant,
            rid,
            bitrate_bps,
            ..
        } => Kind::LayerChanged(pb::LayerChanged {
            participant_id: participant.to_string(),
            rid: rid.clone().unwrap_or_default(),
            bitrate_bps: *bitrate_bps,
        }),
        Event::Quality { stats, .. } => Kind::Quality(pb::Quality {
            stats: Some(participant_stats(stats)),
        }),
        Event::CallEnded { reason, record, .. } => Kind::CallEnded(pb::CallEnded {
            reason: end_reason(*reason) as i32,
            record: Some(call_record(record)),
        }),
        other => recording::event(other)?,
    };
    Some(pb::Event {
        call_id: e.call().to_string(),
        time: Some(timestamp(time)),
        kind: Some(kind),
    })
}

/// The event that tells a watcher it missed `count` events.
pub fn events_lost(count: u64, time: SystemTime) -> pb::Event {
    pb::Event {
        call_id: String::new(),
        time: Some(timestamp(time)),
        kind: Some(pb::event::Kind::EventsLost(pb::EventsLost { count })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_and_name_the_field() {
        assert_eq!(
            call_id("call_id", ""),
            Err(RequestError::Missing { field: "call_id" })
        );
        let err = call_id("call_id", "xyz").unwrap_err();
        assert_eq!(
            err.to_string(),
            "call_id: invalid call id: expected 16 hexadecimal digits, got 3 characters"
        );
        assert_eq!(
            call_id("call_id", "00000000000000ff").unwrap(),
            CallId::from_raw(255)
        );
        assert!(participant_id("participant_id", "00000000000000fg").is_err());
        assert_eq!(optional_call_id("call_id", "").unwrap(), None);
        assert!(required("sdp_offer", "  \n").is_err());
    }

    #[test]
    fn roles_must_be_set() {
        assert_eq!(
            role_from_proto(pb::Role::Merchant as i32),
            Ok(Role::Merchant)
        );
        assert_eq!(
            role_from_proto(pb::Role::Customer as i32),
            Ok(Role::Customer)
        );
        let err = role_from_proto(0).unwrap_err().to_string();
        assert_eq!(
            err,
            "role must be ROLE_MERCHANT or ROLE_CUSTOMER, got ROLE_UNSPECIFIED"
        );
        assert!(role_from_proto(99).unwrap_err().to_string().contains("99"));
        for r in Role::ALL {
            assert_eq!(role_from_proto(role(r) as i32), Ok(r));
        }
    }

    #[test]
    fn every_known_enum_value_maps_to_a_specified_one() {
        for r in DropReason::ALL {
            assert_ne!(drop_reason(r), pb::DropReason::Unspecified, "{r:?}");
            // The proto names follow the metrics labels.
            assert_eq!(
                drop_reason(r).as_str_name(),
                format!("DROP_REASON_{}", r.as_str().to_uppercase())
            );
        }
        for r in EndReason::ALL {
            assert_eq!(
                end_reason(r).as_str_name(),
                format!("END_REASON_{}", r.as_str().to_uppercase())
            );
        }
        for r in [
            LeaveReason::Requested,
            LeaveReason::CallEnded,
            LeaveReason::TransportFailed,
            LeaveReason::ConnectTimeout,
            LeaveReason::PeerLost,
        ] {
            assert_eq!(
                leave_reason(r).as_str_name(),
                format!("LEAVE_REASON_{}", r.as_str().to_uppercase())
            );
        }
        for s in [
            ConnectionState::New,
            ConnectionState::Connecting,
            ConnectionState::Connected,
            ConnectionState::Disconnected,
            ConnectionState::Failed,
            ConnectionState::Closed,
        ] {
            assert_eq!(
                connection_state(s).as_str_name(),
                format!("CONNECTION_STATE_{}", s.as_str().to_uppercase())
            );
        }
        for c in [VideoCodec::Vp8, VideoCodec::Vp9, VideoCodec::H264] {
            assert_eq!(
                video_codec(c).as_str_name(),
                format!("VIDEO_CODEC_{}", c.encoding_name())
            );
        }
        let weak = PauseReason::WeakNetwork;
        assert_eq!(
            pause_reason(weak).as_str_name(),
            format!("VIDEO_PAUSE_REASON_{}", weak.as_str().to_uppercase())
        );
        assert_eq!(call_state(CallState::Ringing), pb::CallState::Ringing);
        assert_eq!(call_state(CallState::Answered), pb::CallState::Answered);
        assert_eq!(call_state(CallState::Connected), pb::CallState::Connected);
        assert_eq!(
            call_state(CallState::Ended(EndReason::Requested)),
            pb::CallState::Ended
        );
    }

    #[test]
    fn durations_and_times_convert_exactly() {
        let d = duration(Duration::from_millis(1500));
        assert_eq!((d.seconds, d.nanos), (1, 500_000_000));
        let t = timestamp(SystemTime::UNIX_EPOCH + Duration::new(10, 7));
        assert_eq!((t.seconds, t.nanos), (10, 7));
    }

    fn sample_participant() -> ParticipantStats {
        let mut received = KindCounters::default();
        received.audio.add(100);
        received.video.add(1000);
        let mut dropped = DropCounters::default();
        dropped.add(DropReason::NoSubscriber);
        dropped.add(DropReason::NoSubscriber);
        ParticipantStats {
            participant: ParticipantId::from_raw(0xabc),
            role: Role::Customer,
            connection: ConnectionState::Connected,
            received,
            sent: KindCounters::default(),
            dropped,
            keyframe_requests_sent: 3,
            keyframe_requests_received: 4,
            uplink: LinkQuality {
                rtt: Some(Duration::from_millis(20)),
                fraction_lost: Some(0.25),
                packets_lost: 5,
                jitter: None,
            },
            downlink: LinkQuality::default(),
            estimated_downlink_bps: None,
            video_layer: None,
            video_paused: false,
            video_paused_duration: Duration::ZERO,
            video_freezes: 2,
            video_freeze_duration: Duration::from_millis(700),
            joined_for: Duration::from_secs(5),
            connected_for: Some(Duration::from_secs(4)),
        }
    }

    fn sample_record(call: CallId, end_reason: EndReason) -> CallRecord {
        CallRecord {
            call,
            merchant_ref: None,
            customer_ref: None,
            initiator: Role::Merchant,
            profile: "rear-camera-off".into(),
            end_reason,
            ring_duration: Duration::from_secs(1),
            answer_latency: Some(Duration::from_secs(1)),
            duration: Duration::from_secs(9),
            connected_duration: Duration::ZERO,
            customer_camera_used: false,
            customer_camera_duration: Duration::ZERO,
            merchant_camera_duration: Duration::ZERO,
            to_customer: Default::default(),
            to_merchant: Default::default(),
            participants: vec![sample_participant()],
            recordings: Vec::new(),
        }
    }

    #[test]
    fn participant_stats_carry_every_counter() {
        let p = participant_stats(&sample_participant());
        assert_eq!(p.participant_id, "0000000000000abc");
        assert_eq!(p.role, pb::Role::Customer as i32);
        assert_eq!(p.connection_state, pb::ConnectionState::Connected as i32);
        let received = p.received.unwrap();
        assert_eq!(received.audio.unwrap().bytes, 100);
        assert_eq!(received.video.unwrap().packets, 1);
        assert_eq!(
            p.dropped,
            vec![pb::DropCount {
                reason: pb::DropReason::NoSubscriber as i32,
                packets: 2
            }]
        );
        assert_eq!(p.keyframe_requests_sent, 3);
        assert_eq!(p.keyframe_requests_received, 4);
        let up = p.uplink.unwrap();
        assert_eq!(up.rtt.unwrap().nanos, 20_000_000);
        assert_eq!(up.fraction_lost, Some(0.25));
        assert_eq!(up.jitter, None);
        assert_eq!(p.downlink.unwrap().fraction_lost, None);
        assert_eq!(p.connected_duration.unwrap().seconds, 4);
        assert_eq!(p.video_freezes, 2);
        assert_eq!(p.video_freeze_duration.unwrap().nanos, 700_000_000);
        // Before any congestion feedback: no estimate, no layer, not paused.
        assert_eq!(p.estimated_downlink_bps, None);
        assert_eq!(p.video_layer, "");
        assert!(!p.video_paused);
        assert_eq!(p.video_paused_duration, Some(duration(Duration::ZERO)));
    }

    #[test]
    fn participant_stats_carry_the_downlink_state() {
        let p = participant_stats(&ParticipantStats {
            estimated_downlink_bps: Some(180_000),
            video_layer: Some("q".into()),
            video_paused: true,
            video_paused_duration: Duration::from_millis(3250),
            ..sample_participant()
        });
        assert_eq!(p.estimated_downlink_bps, Some(180_000));
        assert_eq!(p.video_layer, "q");
        assert!(p.video_paused);
        assert_eq!(
            p.video_paused_duration,
            Some(duration(Duration::from_millis(3250)))
        );
    }

    #[test]
    fn the_record_carries_what_merchant_scoring_needs() {
        let call = CallId::from_raw(9);
        let mut r = sample_record(call, EndReason::Requested);
        r.merchant_ref = Some("shop-42".into());
        r.initiator = Role::Customer;
        r.customer_camera_used = true;
        r.customer_camera_duration = Duration::from_millis(2500);
        r.merchant_camera_duration = Duration::from_secs(8);
        r.to_merchant = DirectionQuality {
            packets: 10,
            bytes: 12_000,
            loss: 0.01,
            rtt: Some(Duration::from_millis(30)),
            jitter: None,
            average_bitrate_bps: 96_000,
            freezes: 1,
            freeze_duration: Duration::from_millis(400),
            ..Default::default()
        };
        let p = call_record(&r);
        assert_eq!(p.call_id, "0000000000000009");
        assert_eq!(p.initiator, pb::Role::Customer as i32);
        assert_eq!(p.profile, "rear-camera-off");
        assert_eq!(p.merchant_ref, "shop-42");
        assert_eq!(p.customer_ref, "");
        assert_eq!(p.ring_duration.unwrap().seconds, 1);
        assert_eq!(p.answer_latency.unwrap().seconds, 1);
        assert!(p.customer_camera_used);
        assert_eq!(
            p.customer_camera_duration.unwrap(),
            duration(Duration::from_millis(2500))
        );
        assert_eq!(p.merchant_camera_duration.unwrap().seconds, 8);
        let q = p.to_merchant.unwrap();
        assert_eq!((q.packets, q.bytes, q.loss), (10, 12_000, 0.01));
        assert_eq!(q.rtt.unwrap().nanos, 30_000_000);
        assert_eq!(q.jitter, None);
        assert_eq!((q.average_bitrate_bps, q.freezes), (96_000, 1));
        assert_eq!(q.freeze_duration.unwrap().nanos, 400_000_000);
        assert_eq!(q.video_paused_duration, Some(duration(Duration::ZERO)));
        assert_eq!(q.estimated_bps, None, "no congestion feedback");
        assert_eq!(p.to_customer.unwrap().packets, 0);

        r.to_customer = DirectionQuality {
            video_paused_duration: Duration::from_millis(4500),
            estimated_bps: Some(250_000),
            ..Default::default()
        };
        let q = call_record(&r).to_customer.unwrap();
        assert_eq!(
            q.video_paused_duration,
            Some(duration(Duration::from_millis(4500)))
        );
        assert_eq!(q.estimated_bps, Some(250_000));

        r.answer_latency = None;
        assert_eq!(call_record(&r).answer_latency, None, "never answered");
    }

    #[test]
    fn policy_events_convert() {
        let call = CallId::from_raw(5);
        let now = SystemTime::now();
        let kind = |e: Event| event(&e, now).expect("a known event").kind.expect("a kind");
        assert_eq!(
            kind(Event::CallCreated {
                call,
                initiator: Role::Customer
            }),
            pb::event::Kind::CallCreated(pb::CallCreated {
                initiator: pb::Role::Customer as i32
            })
        );
        assert_eq!(
            kind(Event::CallAnswered {
                call,
                answer_latency: Duration::from_millis(3200)
            }),
            pb::event::Kind::CallAnswered(pb::CallAnswered {
                answer_latency: Some(duration(Duration::from_millis(3200)))
            })
        );
        assert_eq!(
            kind(Event::CameraChanged {
                call,
                role: Role::Customer,
                lens: Some(Lens::Rear)
            }),
            pb::event::Kind::CameraChanged(pb::CameraChanged {
                role: pb::Role::Customer as i32,
                on: true,
                lens: pb::Lens::Rear as i32
            })
        );
        assert_eq!(
            kind(Event::CameraChanged {
                call,
                role: Role::Merchant,
                lens: None
            }),
            pb::event::Kind::CameraChanged(pb::CameraChanged {
                role: pb::Role::Merchant as i32,
                on: false,
                lens: pb::Lens::Unspecified as i32
            })
        );
        assert_eq!(
            kind(Event::CameraRequested {
                call,
                by: Role::Merchant,
                target: Role::Customer
            }),
            pb::event::Kind::CameraRequested(pb::CameraRequested {
                by: pb::Role::Merchant as i32,
                target: pb::Role::Customer as i32
            })
        );
    }

    #[test]
    fn weak_network_events_convert() {
        let call = CallId::from_raw(5);
        let participant = ParticipantId::from_raw(0xabc);
        let now = SystemTime::now();
        let convert = |e: Event| {
            let out = event(&e, now).expect("a known event");
            assert_eq!(out.call_id, "0000000000000005");
            out.kind.expect("a kind")
        };
        assert_eq!(
            convert(Event::VideoPaused {
                call,
                participant,
                reason: PauseReason::WeakNetwork
            }),
            pb::event::Kind::VideoPaused(pb::VideoPaused {
                participant_id: "0000000000000abc".into(),
                reason: pb::VideoPauseReason::WeakNetwork as i32
            })
        );
        assert_eq!(
            convert(Event::VideoResumed { call, participant }),
            pb::event::Kind::VideoResumed(pb::VideoResumed {
                participant_id: "0000000000000abc".into()
            })
        );
        assert_eq!(
            convert(Event::LayerChanged {
                call,
                participant,
                rid: Some("h".into()),
                bitrate_bps: 450_000
            }),
            pb::event::Kind::LayerChanged(pb::LayerChanged {
                participant_id: "0000000000000abc".into(),
                rid: "h".into(),
                bitrate_bps: 450_000
            })
        );
        assert_eq!(
            convert(Event::LayerChanged {
                call,
                participant,
                rid: None,
                bitrate_bps: 0
            }),
            pb::event::Kind::LayerChanged(pb::LayerChanged {
                participant_id: "0000000000000abc".into(),
                rid: String::new(),
                bitrate_bps: 0
            }),
            "a single-layer stream has no rid"
        );
        let stats = ParticipantStats {
            estimated_downlink_bps: Some(90_000),
            video_paused: true,
            ..sample_participant()
        };
        assert_eq!(
            convert(Event::Quality {
                call,
                participant,
                stats: Box::new(stats.clone())
            }),
            pb::event::Kind::Quality(pb::Quality {
                stats: Some(participant_stats(&stats))
            })
        );
    }

    #[test]
    fn requests_roles_and_limits_are_checked() {
        assert_eq!(initiator(0), Ok(Role::Merchant), "unset: the merchant");
        assert_eq!(initiator(pb::Role::Customer as i32), Ok(Role::Customer));
        assert_eq!(
            role_field("actor", 0).unwrap_err().to_string(),
            "actor must be ROLE_MERCHANT or ROLE_CUSTOMER, got ROLE_UNSPECIFIED"
        );
        assert_eq!(
            limit("limits.ring_timeout", None),
            Ok(None),
            "unset keeps the configured value"
        );
        assert_eq!(
            limit(
                "limits.ring_timeout",
                Some(prost_types::Duration {
                    seconds: 86_400,
                    nanos: 0
                })
            ),
            Ok(Some(MAX_LIMIT))
        );
        assert!(
            limit(
                "limits.ring_timeout",
                Some(prost_types::Duration {
                    seconds: 86_400,
                    nanos: 1
                })
            )
            .is_err()
        );
        assert!(
            limit(
                "limits.ring_timeout",
                Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 1_000_000_000
                })
            )
            .is_err(),
            "nanos beyond a second are malformed"
        );
    }

    #[test]
    fn call_ended_event_carries_the_record() {
        let call = CallId::from_raw(7);
        let e = Event::CallEnded {
            call,
            reason: EndReason::ServerShutdown,
            record: Box::new(sample_record(call, EndReason::ServerShutdown)),
        };
        let pb_event = event(&e, SystemTime::now()).unwrap();
        assert_eq!(pb_event.call_id, "0000000000000007");
        let Some(pb::event::Kind::CallEnded(ended)) = pb_event.kind else {
            panic!("expected CallEnded, got {:?}", pb_event.kind);
        };
        assert_eq!(ended.reason, pb::EndReason::ServerShutdown as i32);
        let record = ended.record.unwrap();
        assert_eq!(record.participants.len(), 1);
        assert_eq!(record.duration.unwrap().seconds, 9);
    }

    #[test]
    fn call_stats_convert_with_state_and_codec() {
        let stats = CallStats {
            call: CallId::from_raw(1),
            state: CallState::Ringing,
            age: Duration::from_secs(2),
            connected_for: None,
            video_codec: Some(VideoCodec::Vp8),
            customer_camera_on: false,
            customer_camera: None,
            merchant_camera_on: true,
            merchant_camera: None,
            initiator: Role::Merchant,
            profile: "rear-camera-off".into(),
            answer_latency: None,
            participants: vec![sample_participant()],
        };
        let c = call(&stats);
        assert_eq!(
            c.customer_camera,
            Some(pb::CameraState {
                on: false,
                lens: pb::Lens::Unspecified as i32
            })
        );
        // On at join with any lens: on, no lens chosen yet.
        assert_eq!(
            c.merchant_camera,
            Some(pb::CameraState {
                on: true,
                lens: pb::Lens::Unspecified as i32
            })
        );
        let c2 = call(&CallStats {
            merchant_camera: Some(Lens::Front),
            ..stats.clone()
        });
        assert_eq!(
            c2.merchant_camera,
            Some(pb::CameraState {
                on: true,
                lens: pb::Lens::Front as i32
            })
        );
        assert_eq!(c.state, pb::CallState::Ringing as i32);
        assert_eq!(c.end_reason, pb::EndReason::Unspecified as i32);
        assert_eq!(c.video_codec, pb::VideoCodec::Vp8 as i32);
        assert_eq!(c.connected_duration, None);
        assert_eq!(c.participants.len(), 1);
    }
}
