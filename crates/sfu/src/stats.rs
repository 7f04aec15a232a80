//! Stats: per-call statistics, the call record, and the engine-wide counters.
//!
//! Counters are plain integers owned by the engine (no atomics, no locks on the packet path);
//! callers read snapshots.

use std::time::Duration;

use policy::{MediaKind, Role};

use crate::event::{CallState, ConnectionState, EndReason};
use crate::ids::{CallId, ParticipantId};

/// Why the engine dropped a datagram or a packet instead of delivering it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// The first byte fits none of STUN, DTLS, RTP/RTCP (RFC 7983), or the datagram is empty.
    Unclassified,
    /// A STUN message that does not parse (truncated, bad length, no USERNAME).
    MalformedStun,
    /// A STUN request whose USERNAME names no participant (wrong or stale ufrag).
    UnknownUfrag,
    /// DTLS or SRTP from an address that no participant's ICE checks came from.
    UnknownSource,
    /// The participant's transport refused the datagram (bad SRTP auth, replay, bad DTLS, a
    /// STUN check it did not answer: wrong MESSAGE-INTEGRITY...).
    TransportRejected,
    /// RTP on an SSRC that belongs to no negotiated track.
    UnknownSsrc,
    /// Media with nobody to forward it to (the other participant is absent or not connected).
    NoSubscriber,
    /// The policy does not grant this media to be forwarded.
    PolicyDenied,
    /// The outgoing leg refused the packet.
    SendFailed,
    /// Video waits for a keyframe before forwarding starts or resumes (one was requested).
    WaitingForKeyframe,
    /// Another simulcast layer of the same track is the one being forwarded.
    LayerNotSelected,
    /// A late packet from before the current forwarding start (would reuse sequence numbers).
    Stale,
    /// Video to this receiver is paused: its downlink cannot carry it next to the audio.
    BandwidthPaused,
}

impl DropReason {
    /// Every reason, in a stable order (index = `as_index`).
    pub const ALL: [DropReason; 13] = [
        DropReason::Unclassified,
        DropReason::MalformedStun,
        DropReason::UnknownUfrag,
        DropReason::UnknownSource,
        DropReason::TransportRejected,
        DropReason::UnknownSsrc,
        DropReason::NoSubscriber,
        DropReason::PolicyDenied,
        DropReason::SendFailed,
        DropReason::WaitingForKeyframe,
        DropReason::LayerNotSelected,
        DropReason::Stale,
        DropReason::BandwidthPaused,
    ];

    /// Position in [`DropReason::ALL`].
    pub fn as_index(self) -> usize {
        self as usize
    }

    /// Snake-case name, used as the `reason` metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Unclassified => "unclassified",
            DropReason::MalformedStun => "malformed_stun",
            DropReason::UnknownUfrag => "unknown_ufrag",
            DropReason::UnknownSource => "unknown_source",
            DropReason::TransportRejected => "transport_rejected",
            DropReason::UnknownSsrc => "unknown_ssrc",
            DropReason::NoSubscriber => "no_subscriber",
            DropReason::PolicyDenied => "policy_denied",
            DropReason::SendFailed => "send_failed",
            DropReason::WaitingForKeyframe => "waiting_for_keyframe",
            DropReason::LayerNotSelected => "layer_not_selected",
            DropReason::Stale => "stale",
            DropReason::BandwidthPaused => "bandwidth_paused",
        }
    }
}

/// Packets dropped, one counter per [`DropReason`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounters([u64; DropReason::ALL.len()]);

impl DropCounters {
    /// Adds one drop.
    pub fn add(&mut self, reason: DropReason) {
        self.0[reason.as_index()] += 1;
    }

    /// Adds `n` drops.
    pub fn add_n(&mut self, reason: DropReason, n: u64) {
        self.0[reason.as_index()] += n;
    }

    /// Drops for one reason.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason.as_index()]
    }

    /// All drops.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `(reason, count)` for every reason.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|r| (*r, self.get(*r)))
    }
}

/// Packets and payload-carrying bytes of one media kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counter {
    /// RTP packets.
    pub packets: u64,
    /// Bytes of RTP (header + payload, before SRTP).
    pub bytes: u64,
}

impl Counter {
    /// Counts one packet of `bytes`.
    pub fn add(&mut self, bytes: usize) {
        self.packets += 1;
        self.bytes += bytes as u64;
    }
}

/// A [`Counter`] for audio and one for video.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindCounters {
    /// Audio.
    pub audio: Counter,
    /// Video.
    pub video: Counter,
}

impl KindCounters {
    /// The counter of `kind`.
    pub fn get(&self, kind: MediaKind) -> &Counter {
        match kind {
            MediaKind::Audio => &self.audio,
            MediaKind::Video => &self.video,
        }
    }

    /// The counter of `kind`, mutable.
    pub fn get_mut(&mut self, kind: MediaKind) -> &mut Counter {
        match kind {
            MediaKind::Audio => &mut self.audio,
            MediaKind::Video => &mut self.video,
        }
    }
}

/// Link quality of one direction, as the RTCP reports tell it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinkQuality {
    /// Round-trip time from the last report that had one.
    pub rtt: Option<Duration>,
    /// Fraction of packets lost (0.0..=1.0) in the last report interval.
    pub fraction_lost: Option<f64>,
    /// Cumulative packets lost, as reported.
    pub packets_lost: i64,
    /// Interarrival jitter.
    pub jitter: Option<Duration>,
}

/// Statistics of one participant.
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantStats {
    /// The participant.
    pub participant: ParticipantId,
    /// Its role.
    pub role: Role,
    /// Its transport state.
    pub connection: ConnectionState,
    /// Media received from this participant (its uplink).
    pub received: KindCounters,
    /// Media forwarded to this participant (its downlink).
    pub sent: KindCounters,
    /// Packets from this participant that were dropped, by reason.
    pub dropped: DropCounters,
    /// Keyframe requests (PLI) the SFU sent to this participant.
    pub keyframe_requests_sent: u64,
    /// Keyframe requests (PLI/FIR) this participant sent for the media it receives.
    pub keyframe_requests_received: u64,
    /// Quality of the uplink (this participant to the SFU), from the SFU's receiver side.
    pub uplink: LinkQuality,
    /// Quality of the downlink (SFU to this participant), from this participant's reports.
    pub downlink: LinkQuality,
    /// The SFU's estimate of this participant's downlink, bits per second (`None` before
    /// any congestion feedback).
    pub estimated_downlink_bps: Option<u64>,
    /// The simulcast layer (rid) of the camera video forwarded to it now.
    pub video_layer: Option<String>,
    /// Whether video to it is paused for its downlink.
    pub video_paused: bool,
    /// Total time video to it was paused for its downlink.
    pub video_paused_duration: Duration,
    /// Video freezes in what the SFU sent to this participant.
    pub video_freezes: u32,
    /// Total time frozen.
    pub video_freeze_duration: Duration,
    /// Time since Join.
    pub joined_for: Duration,
    /// Time connected, if it connected.
    pub connected_for: Option<Duration>,
}

/// Statistics of one call.
#[derive(Debug, Clone, PartialEq)]
pub struct CallStats {
    /// The call.
    pub call: CallId,
    /// Its state.
    pub state: CallState,
    /// Time since the call was created.
    pub age: Duration,
    /// Time both participants have been connected, if they were.
    pub connected_for: Option<Duration>,
    /// The call's video codec, once the first participant fixed it.
    pub video_codec: Option<crate::VideoCodec>,
    /// Whether the customer's camera is on (granted) now.
    pub customer_camera_on: bool,
    /// The customer's camera lens while it is on, once one was chosen.
    pub customer_camera: Option<policy::Lens>,
    /// Whether the merchant's camera is on now (on at join, any lens, until it picks one).
    pub merchant_camera_on: bool,
    /// The merchant's camera lens, once one was chosen.
    pub merchant_camera: Option<policy::Lens>,
    /// Who started the call.
    pub initiator: Role,
    /// The profile it runs under.
    pub profile: String,
    /// Time from creation to the answer, once answered.
    pub answer_latency: Option<Duration>,
    /// Its participants (present and past).
    pub participants: Vec<ParticipantStats>,
}

/// Quality of one direction of a call (what one side sent, as the other received it).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DirectionQuality {
    /// RTP packets forwarded in this direction.
    pub packets: u64,
    /// Bytes forwarded.
    pub bytes: u64,
    /// Packets lost on the way, sender's uplink plus receiver's downlink, as a fraction of
    /// those sent (0.0..=1.0), from RTCP receiver reports.
    pub loss: f64,
    /// Round-trip time on the receiver's leg.
    pub rtt: Option<Duration>,
    /// Interarrival jitter (the larger of the two legs).
    pub jitter: Option<Duration>,
    /// Average bitrate over the connected time, bits per second.
    pub average_bitrate_bps: u64,
    /// Video freezes.
    pub freezes: u32,
    /// Time the receiver's video was paused for its downlink.
    pub video_paused_duration: Duration,
    /// The receiver's downlink estimate at the end.
    pub estimated_bps: Option<u64>,
    /// Time frozen.
    pub freeze_duration: Duration,
}

/// What happened in a call, produced once when it ends: what merchant scoring needs.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    /// The call.
    pub call: CallId,
    /// The signaling tier's merchant id, as given at CreateCall.
    pub merchant_ref: Option<String>,
    /// The signaling tier's customer id.
    pub customer_ref: Option<String>,
    /// Who started the call.
    pub initiator: Role,
    /// The profile it ran under.
    pub profile: String,
    /// Why it ended.
    pub end_reason: EndReason,
    /// How long it rang (until answered, or until it ended unanswered).
    pub ring_duration: Duration,
    /// Time from creation to the answer, if answered.
    pub answer_latency: Option<Duration>,
    /// Time from creation to the end.
    pub duration: Duration,
    /// Time both participants were connected at once.
    pub connected_duration: Duration,
    /// Whether the customer's camera was on at any time.
    pub customer_camera_used: bool,
    /// How long the customer's camera was on.
    pub customer_camera_duration: Duration,
    /// How long the merchant's camera was on.
    pub merchant_camera_duration: Duration,
    /// Merchant to customer.
    pub to_customer: DirectionQuality,
    /// Customer to merchant.
    pub to_merchant: DirectionQuality,
    /// The final statistics of every participant that joined.
    pub participants: Vec<ParticipantStats>,
    /// The recordings made during the call (file, duration, tracks), oldest first.
    pub recordings: Vec<crate::recording::RecordingSummary>,
}

/// Engine-wide counters, for metrics. No per-call labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineMetrics {
    /// Calls that exist now.
    pub active_calls: u64,
    /// Participants that exist now.
    pub active_participants: u64,
    /// Participants connected now.
    pub connected_participants: u64,
    /// Media forwarded, by kind.
    pub forwarded: KindCounters,
    /// Media received from participants, by kind.
    pub received: KindCounters,
    /// Datagrams and packets dropped, by reason.
    pub dropped: DropCounters,
    /// Datagrams read from the socket.
    pub datagrams_in: u64,
    /// Datagrams written to the socket.
    pub datagrams_out: u64,
    /// Transports that failed during ICE.
    pub ice_failures: u64,
    /// Transports that failed during DTLS (or after connecting).
    pub dtls_failures: u64,
    /// Times a participant's media path moved to another ICE-verified address without an
    /// ICE restart (NAT rebinding).
    pub path_moves: u64,
    /// Keyframe requests forwarded upstream.
    pub keyframe_requests: u64,
    /// Retransmissions participants asked for (NACK) beyond their budget, not sent.
    pub retransmissions_refused: u64,
    /// Calls created since start.
    pub calls_created: u64,
    /// Calls ended since start.
    pub calls_ended: u64,
    /// Recordings started since start.
    pub recordings_started: u64,
    /// Recorded packets dropped because a queue toward the writer was full.
    pub recording_packets_dropped: u64,
}
