//! Page events: what shopcalld's events (WatchEvents) mean for the two pages.
//!
//! Each page gets a stream of small JSON objects (`{"type": "camera", "role": "customer",
//! "on": true}`) over server-sent events. This module decides which shopcalld event becomes
//! which page event, and who sees it: the invitation card and the camera request go to the
//! customer's chat, the call record only to the merchant console, the rest to both.

use std::collections::HashMap;

use serde::Serialize;
use shopcall_proto::v1 as pb;
use shopcall_proto::v1::event::Kind;

/// A participant's role, as the pages name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The shop's agent, on the merchant console.
    Merchant,
    /// The buyer, in the customer chat.
    Customer,
}

impl Role {
    /// The role from shopcalld's enum value (`None` for UNSPECIFIED or unknown).
    pub fn from_proto(value: i32) -> Option<Role> {
        match pb::Role::try_from(value).ok()? {
            pb::Role::Merchant => Some(Role::Merchant),
            pb::Role::Customer => Some(Role::Customer),
            pb::Role::Unspecified => None,
        }
    }

    /// shopcalld's enum value.
    pub fn to_proto(self) -> pb::Role {
        match self {
            Role::Merchant => pb::Role::Merchant,
            Role::Customer => pb::Role::Customer,
        }
    }
}

/// One event for a page, serialized as `{"type": "...", ...}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum PageEvent {
    /// The merchant sent a "video explanation" invitation: a card in the customer's chat.
    Invitation {
        /// The call it rings.
        call_id: String,
    },
    /// The customer answered (by joining).
    Answered {
        /// Seconds from the invitation to the answer.
        answer_latency_secs: f64,
    },
    /// Both sides are connected: media flows.
    Connected,
    /// A camera was turned on or off. The merchant shows the customer's video only while
    /// the customer's camera is on.
    Camera {
        /// Whose camera.
        role: Role,
        /// On or off.
        on: bool,
    },
    /// The other side asks this page's user to turn the camera on ("Show the product?").
    CameraRequested {
        /// Who asks.
        by: Role,
    },
    /// Video to `role` is paused: its network cannot carry video next to the audio.
    VideoPaused {
        /// Whose incoming video paused.
        role: Role,
        /// Why (`weak_network`).
        reason: String,
    },
    /// Video to `role` resumed.
    VideoResumed {
        /// Whose incoming video resumed.
        role: Role,
    },
    /// The video layer sent to `role` changed.
    Layer {
        /// Who receives it.
        role: Role,
        /// The simulcast layer (rid); empty for a single stream.
        rid: String,
        /// The layer's bitrate.
        bitrate_bps: u64,
    },
    /// Live quality of what `role` receives, from shopcalld (every 5 s).
    Quality {
        /// Who receives.
        role: Role,
        /// Round-trip time on its leg, milliseconds.
        rtt_ms: Option<f64>,
        /// Packets lost on its downlink in the last report, percent.
        loss_pct: Option<f64>,
        /// Jitter on its downlink, milliseconds.
        jitter_ms: Option<f64>,
        /// What shopcalld estimates its downlink carries, kbit/s.
        estimated_kbps: Option<f64>,
        /// The video layer it receives (empty: a single stream, or none).
        layer: String,
        /// Whether its incoming video is paused for its weak network.
        video_paused: bool,
        /// Seconds its incoming video was paused, in total.
        video_paused_secs: f64,
    },
    /// A participant left (hung up, or its network failed).
    Left {
        /// Who.
        role: Role,
        /// Why (`requested`, `transport_failed`, `peer_lost`, ...).
        reason: String,
    },
    /// The call is over: `missed`, `declined`, `cancelled`, or ended after the answer.
    Ended {
        /// shopcalld's end reason (`requested`, `participant_left`, `missed`, ...).
        reason: String,
        /// The call record (the merchant console only).
        #[serde(skip_serializing_if = "Option::is_none")]
        record: Option<Record>,
    },
    /// The connection to shopcalld broke; the page should give up on the call.
    Error {
        /// What happened.
        message: String,
    },
}

/// The call record as the merchant console shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Who started the call.
    pub initiator: Option<Role>,
    /// Seconds it rang.
    pub ring_secs: f64,
    /// Seconds from the invitation to the answer; `None` if never answered.
    pub answer_latency_secs: Option<f64>,
    /// Seconds from the invitation to the end.
    pub duration_secs: f64,
    /// Seconds both sides were connected.
    pub connected_secs: f64,
    /// Whether the customer turned the camera on.
    pub customer_camera_used: bool,
    /// Seconds the customer's camera was on.
    pub customer_camera_secs: f64,
    /// Seconds the merchant's camera was on.
    pub merchant_camera_secs: f64,
    /// What the customer sent, as the merchant received it.
    pub to_merchant: Direction,
    /// What the merchant sent, as the customer received it.
    pub to_customer: Direction,
}

/// One direction's quality in the record.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Direction {
    /// RTP packets forwarded.
    pub packets: u64,
    /// Packets lost, percent.
    pub loss_pct: f64,
    /// Round-trip time, milliseconds.
    pub rtt_ms: Option<f64>,
    /// Jitter, milliseconds.
    pub jitter_ms: Option<f64>,
    /// Average bitrate over the connected time, kbit/s.
    pub average_kbps: f64,
    /// Video freezes.
    pub freezes: u32,
    /// Seconds frozen.
    pub freeze_secs: f64,
    /// Seconds the video was paused for the receiver's weak network.
    pub video_paused_secs: f64,
}

/// Who sees a page event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Both pages.
    Both,
    /// One page.
    Only(Role),
}

impl Audience {
    /// Whether the page of `role` sees it.
    pub fn includes(self, role: Role) -> bool {
        match self {
            Audience::Both => true,
            Audience::Only(r) => r == role,
        }
    }
}

/// A page event and who sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// Who sees it.
    pub to: Audience,
    /// What.
    pub event: PageEvent,
}

fn both(event: PageEvent) -> Outgoing {
    Outgoing {
        to: Audience::Both,
        event,
    }
}

/// Translates one call's shopcalld events into page events. It remembers which participant
/// id has which role (from `ParticipantJoined`), since the bandwidth events name participants.
#[derive(Debug, Default)]
pub struct Translator {
    roles: HashMap<String, Role>,
}

impl Translator {
    /// The page events for one shopcalld event (none for events the pages do not show).
    pub fn translate(&mut self, event: &pb::Event) -> Vec<Outgoing> {
        let Some(kind) = &event.kind else {
            return Vec::new();
        };
        let role_of = |roles: &HashMap<String, Role>, id: &str| roles.get(id).copied();
        let out = match kind {
            Kind::ParticipantJoined(j) => {
                if let Some(role) = Role::from_proto(j.role) {
                    self.roles.insert(j.participant_id.clone(), role);
                }
                None
            }
            Kind::CallAnswered(a) => Some(both(PageEvent::Answered {
                answer_latency_secs: secs(a.answer_latency.as_ref()),
            })),
            Kind::CallConnected(_) => Some(both(PageEvent::Connected)),
            Kind::CameraChanged(c) => {
                Role::from_proto(c.role).map(|role| both(PageEvent::Camera { role, on: c.on }))
            }
            Kind::CameraRequested(r) => {
                match (Role::from_proto(r.by), Role::from_proto(r.target)) {
                    (Some(by), Some(target)) => Some(Outgoing {
                        to: Audience::Only(target),
                        event: PageEvent::CameraRequested { by },
                    }),
                    _ => None,
                }
            }
            Kind::VideoPaused(p) => role_of(&self.roles, &p.participant_id).map(|role| {
                let reason = pb::VideoPauseReason::try_from(p.reason)
                    .map(|r| suffix(r.as_str_name(), "VIDEO_PAUSE_REASON_"))
                    .unwrap_or_else(|_| "unknown".to_owned());
                both(PageEvent::VideoPaused { role, reason })
            }),
            Kind::VideoResumed(r) => role_of(&self.roles, &r.participant_id)
                .map(|role| both(PageEvent::VideoResumed { role })),
            Kind::LayerChanged(l) => role_of(&self.roles, &l.participant_id).map(|role| {
                both(PageEvent::Layer {
                    role,
                    rid: l.rid.clone(),
                    bitrate_bps: l.bitrate_bps,
                })
            }),
            Kind::Quality(q) => q.stats.as_ref().and_then(quality).map(both),
            Kind::ParticipantLeft(l) => Role::from_proto(l.role).map(|role| {
                let reason = pb::LeaveReason::try_from(l.reason)
                    .map(|r| suffix(r.as_str_name(), "LEAVE_REASON_"))
                    .unwrap_or_else(|_| "unknown".to_owned());
                both(PageEvent::Left { role, reason })
            }),
            Kind::CallEnded(e) => {
                let reason = pb::EndReason::try_from(e.reason)
                    .map(|r| suffix(r.as_str_name(), "END_REASON_"))
                    .unwrap_or_else(|_| "unknown".to_owned());
                // The record is for the merchant (scoring, the console's summary); the
                // customer's chat only learns how the call ended.
                return vec![
                    Outgoing {
                        to: Audience::Only(Role::Merchant),
                        event: PageEvent::Ended {
                            reason: reason.clone(),
                            record: e.record.as_ref().map(record),
                        },
                    },
                    Outgoing {
                        to: Audience::Only(Role::Customer),
                        event: PageEvent::Ended {
                            reason,
                            record: None,
                        },
                    },
                ];
            }
            _ => None,
        };
        out.into_iter().collect()
    }
}

/// `END_REASON_MISSED` → `missed`.
fn suffix(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_lowercase()
}

fn secs(d: Option<&prost_types::Duration>) -> f64 {
    d.map_or(0.0, |d| d.seconds as f64 + f64::from(d.nanos) / 1e9)
}

fn millis(d: Option<&prost_types::Duration>) -> Option<f64> {
    d.map(|d| round1(secs(Some(d)) * 1000.0))
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn quality(stats: &pb::ParticipantStats) -> Option<PageEvent> {
    let role = Role::from_proto(stats.role)?;
    let down = stats.downlink.unwrap_or_default();
    Some(PageEvent::Quality {
        role,
        rtt_ms: millis(down.rtt.as_ref()),
        loss_pct: down.fraction_lost.map(|f| round1(f * 100.0)),
        jitter_ms: millis(down.jitter.as_ref()),
        estimated_kbps: stats
            .estimated_downlink_bps
            .map(|b| round1(b as f64 / 1000.0)),
        layer: stats.video_layer.clone(),
        video_paused: stats.video_paused,
        video_paused_secs: secs(stats.video_paused_duration.as_ref()),
    })
}

fn direction(q: Option<&pb::DirectionQuality>) -> Direction {
    let q = q.cloned().unwrap_or_default();
    Direction {
        packets: q.packets,
        loss_pct: round1(q.loss * 100.0),
        rtt_ms: millis(q.rtt.as_ref()),
        jitter_ms: millis(q.jitter.as_ref()),
        average_kbps: round1(q.average_bitrate_bps as f64 / 1000.0),
        freezes: q.freezes,
        freeze_secs: secs(q.freeze_duration.as_ref()),
        video_paused_secs: secs(q.video_paused_duration.as_ref()),
    }
}

fn record(r: &pb::CallRecord) -> Record {
    Record {
        initiator: Role::from_proto(r.initiator),
        ring_secs: secs(r.ring_duration.as_ref()),
        answer_latency_secs: r.answer_latency.as_ref().map(|d| secs(Some(d))),
        duration_secs: secs(r.duration.as_ref()),
        connected_secs: secs(r.connected_duration.as_ref()),
        customer_camera_used: r.customer_camera_used,
        customer_camera_secs: secs(r.customer_camera_duration.as_ref()),
        merchant_camera_secs: secs(r.merchant_camera_duration.as_ref()),
        to_merchant: direction(r.to_merchant.as_ref()),
        to_customer: direction(r.to_customer.as_ref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: Kind) -> pb::Event {
        pb::Event {
            call_id: "0000000000000001".into(),
            time: None,
            kind: Some(kind),
        }
    }

    fn duration(millis: i32) -> Option<prost_types::Duration> {
        Some(prost_types::Duration {
            seconds: i64::from(millis / 1000),
            nanos: (millis % 1000) * 1_000_000,
        })
    }

    /// A translator that knows the merchant is `m` and the customer `c`.
    fn joined() -> Translator {
        let mut t = Translator::default();
        for (id, role) in [("m", pb::Role::Merchant), ("c", pb::Role::Customer)] {
            let out = t.translate(&event(Kind::ParticipantJoined(pb::ParticipantJoined {
                participant_id: id.into(),
                role: role as i32,
            })));
            assert!(out.is_empty(), "joins are not shown");
        }
        t
    }

    fn json_of(out: &[Outgoing]) -> Vec<serde_json::Value> {
        out.iter()
            .map(|o| serde_json::to_value(&o.event).unwrap())
            .collect()
    }

    #[test]
    fn the_camera_request_goes_to_the_camera_owner_only() {
        let out = joined().translate(&event(Kind::CameraRequested(pb::CameraRequested {
            by: pb::Role::Merchant as i32,
            target: pb::Role::Customer as i32,
        })));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].to, Audience::Only(Role::Customer));
        assert_eq!(
            json_of(&out),
            [json!({"type": "cameraRequested", "by": "merchant"})]
        );
    }

    #[test]
    fn camera_changes_reach_both_pages() {
        let out = joined().translate(&event(Kind::CameraChanged(pb::CameraChanged {
            role: pb::Role::Customer as i32,
            on: true,
            lens: pb::Lens::Rear as i32,
        })));
        assert_eq!(out[0].to, Audience::Both);
        assert_eq!(
            json_of(&out),
            [json!({"type": "camera", "role": "customer", "on": true})]
        );
    }

    #[test]
    fn weak_network_events_name_the_receiving_role() {
        let mut t = joined();
        let paused = t.translate(&event(Kind::VideoPaused(pb::VideoPaused {
            participant_id: "c".into(),
            reason: pb::VideoPauseReason::WeakNetwork as i32,
        })));
        assert_eq!(
            json_of(&paused),
            [json!({"type": "videoPaused", "role": "customer", "reason": "weak_network"})]
        );
        let layer = t.translate(&event(Kind::LayerChanged(pb::LayerChanged {
            participant_id: "m".into(),
            rid: "h".into(),
            bitrate_bps: 500_000,
        })));
        assert_eq!(
            json_of(&layer),
            [json!({"type": "layer", "role": "merchant", "rid": "h", "bitrateBps": 500_000})]
        );
        let resumed = t.translate(&event(Kind::VideoResumed(pb::VideoResumed {
            participant_id: "c".into(),
        })));
        assert_eq!(
            json_of(&resumed),
            [json!({"type": "videoResumed", "role": "customer"})]
        );
        // A participant this call never saw join is not guessed at.
        let unknown = t.translate(&event(Kind::VideoResumed(pb::VideoResumed {
            participant_id: "x".into(),
        })));
        assert!(unknown.is_empty());
    }

    #[test]
    fn quality_reports_the_downlink_in_page_units() {
        let stats = pb::ParticipantStats {
            participant_id: "m".into(),
            role: pb::Role::Merchant as i32,
            downlink: Some(pb::LinkQuality {
                rtt: duration(31),
                fraction_lost: Some(0.0125),
                packets_lost: 3,
                jitter: duration(4),
            }),
            estimated_downlink_bps: Some(2_480_000),
            video_layer: String::new(),
            video_paused: true,
            video_paused_duration: duration(1500),
            ..Default::default()
        };
        let out = joined().translate(&event(Kind::Quality(pb::Quality { stats: Some(stats) })));
        assert_eq!(
            json_of(&out),
            [json!({
                "type": "quality", "role": "merchant", "rttMs": 31.0, "lossPct": 1.3,
                "jitterMs": 4.0, "estimatedKbps": 2480.0, "layer": "", "videoPaused": true,
                "videoPausedSecs": 1.5
            })]
        );
        // Before any report: nothing is made up.
        let empty = pb::ParticipantStats {
            role: pb::Role::Customer as i32,
            ..Default::default()
        };
        let out = joined().translate(&event(Kind::Quality(pb::Quality { stats: Some(empty) })));
        let v = &json_of(&out)[0];
        assert_eq!(v["rttMs"], json!(null));
        assert_eq!(v["lossPct"], json!(null));
        assert_eq!(v["estimatedKbps"], json!(null));
    }

    #[test]
    fn the_record_goes_to_the_merchant_and_the_end_to_both() {
        let record = pb::CallRecord {
            initiator: pb::Role::Merchant as i32,
            end_reason: pb::EndReason::ParticipantLeft as i32,
            ring_duration: duration(2500),
            answer_latency: duration(2500),
            duration: duration(30_000),
            connected_duration: duration(27_000),
            customer_camera_used: true,
            customer_camera_duration: duration(6200),
            merchant_camera_duration: duration(27_000),
            to_merchant: Some(pb::DirectionQuality {
                packets: 1000,
                loss: 0.001,
                rtt: duration(2),
                average_bitrate_bps: 640_000,
                ..Default::default()
            }),
            ..Default::default()
        };
        let out = joined().translate(&event(Kind::CallEnded(pb::CallEnded {
            reason: pb::EndReason::ParticipantLeft as i32,
            record: Some(record),
        })));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].to, Audience::Only(Role::Merchant));
        assert_eq!(out[1].to, Audience::Only(Role::Customer));
        let merchant = serde_json::to_value(&out[0].event).unwrap();
        assert_eq!(merchant["reason"], "participant_left");
        let r = &merchant["record"];
        assert_eq!(r["answerLatencySecs"], 2.5);
        assert_eq!(r["customerCameraUsed"], true);
        assert_eq!(r["customerCameraSecs"], 6.2);
        assert_eq!(r["toMerchant"]["averageKbps"], 640.0);
        assert_eq!(r["toMerchant"]["lossPct"], 0.1);
        assert_eq!(r["toMerchant"]["rttMs"], 2.0);
        assert_eq!(r["toCustomer"]["rttMs"], json!(null));
        assert_eq!(
            serde_json::to_value(&out[1].event).unwrap(),
            json!({"type": "ended", "reason": "participant_left"}),
            "the customer's chat gets no record"
        );
    }

    #[test]
    fn missed_and_declined_calls_say_so() {
        for (reason, text) in [
            (pb::EndReason::Missed, "missed"),
            (pb::EndReason::Declined, "declined"),
            (pb::EndReason::Cancelled, "cancelled"),
        ] {
            let out = joined().translate(&event(Kind::CallEnded(pb::CallEnded {
                reason: reason as i32,
                record: Some(pb::CallRecord::default()),
            })));
            let customer = serde_json::to_value(&out[1].event).unwrap();
            assert_eq!(customer, json!({"type": "ended", "reason": text}));
            let merchant = serde_json::to_value(&out[0].event).unwrap();
            assert_eq!(merchant["record"]["answerLatencySecs"], json!(null));
        }
    }

    #[test]
    fn lifecycle_events_reach_both_pages() {
        let mut t = joined();
        let answered = t.translate(&event(Kind::CallAnswered(pb::CallAnswered {
            answer_latency: duration(1200),
        })));
        assert_eq!(
            json_of(&answered),
            [json!({"type": "answered", "answerLatencySecs": 1.2})]
        );
        let connected = t.translate(&event(Kind::CallConnected(pb::CallConnected {})));
        assert_eq!(json_of(&connected), [json!({"type": "connected"})]);
        let left = t.translate(&event(Kind::ParticipantLeft(pb::ParticipantLeft {
            participant_id: "c".into(),
            role: pb::Role::Customer as i32,
            reason: pb::LeaveReason::TransportFailed as i32,
        })));
        assert_eq!(
            json_of(&left),
            [json!({"type": "left", "role": "customer", "reason": "transport_failed"})]
        );
        assert!(
            t.translate(&event(Kind::CallCreated(pb::CallCreated::default())))
                .is_empty()
        );
    }
}
