//! The engine's bandwidth tick: sample rates, estimate each downlink, choose each video
//! DownTrack's layer or pause it, cap single-stream senders with REMB, publish quality.
//! Runs with the liveness sweep, a few times a second: never per packet.

use std::time::{Duration, Instant};

use policy::MediaKind;

use super::Engine;
use crate::bwe::{Allocation, LayerInfo};
use crate::event::{ConnectionState, Event, PauseReason};
use crate::ids::ParticipantId;
use crate::stats::DropReason;

/// At most one REMB per publisher per this.
const REMB_INTERVAL: Duration = Duration::from_secs(1);

/// What a tick decided for one video DownTrack, applied after the decisions are made.
struct Change {
    subscriber: ParticipantId,
    publisher: ParticipantId,
    downtrack: usize,
    allocation: Allocation,
}

impl Engine {
    pub(super) fn bandwidth_tick(&mut self, now: Instant) {
        for p in self.participants.values_mut() {
            for r in &mut p.receivers {
                r.rate.sample(r.received.bytes, now);
            }
            p.audio_rate.sample(p.sent.audio.bytes, now);
            self.metrics.retransmissions_refused += p.transport.take_nacks_refused();
            let unrouted = p.transport.take_unrouted_rtp();
            p.dropped.add_n(DropReason::UnknownSsrc, unrouted);
            self.metrics
                .dropped
                .add_n(DropReason::UnknownSsrc, unrouted);
        }

        let ids: Vec<ParticipantId> = self.participants.keys().copied().collect();
        let mut changes = Vec::new();
        let mut caps: Vec<(ParticipantId, u32, u64)> = Vec::new();
        for &subscriber in &ids {
            let Some(q) = self.participants.get(&subscriber) else {
                continue;
            };
            if q.state != ConnectionState::Connected {
                continue;
            }
            let Some(publisher) = self
                .calls
                .get(&q.call)
                .and_then(|c| c.member(q.role.other()))
            else {
                continue;
            };
            let Some(p) = self.participants.get(&publisher) else {
                continue;
            };
            let estimate = q.transport.estimate(now);
            let audio = q.audio_rate.bps();
            for (i, d) in q.downtracks.iter().enumerate() {
                if d.kind != MediaKind::Video || d.allocator.is_none() {
                    continue;
                }
                let mut layers: Vec<LayerInfo> = p
                    .receivers
                    .iter()
                    .filter(|r| r.kind == MediaKind::Video && r.kind_index == d.kind_index)
                    .map(|r| LayerInfo {
                        ssrc: r.ssrc,
                        bitrate_bps: r.rate.bps(),
                    })
                    .collect();
                layers.sort_by_key(|l| l.bitrate_bps);
                changes.push((subscriber, publisher, i, estimate, audio, layers));
            }
        }
        let mut applied = Vec::new();
        for (subscriber, publisher, i, estimate, audio, layers) in changes {
            let Some(q) = self.participants.get_mut(&subscriber) else {
                continue;
            };
            let Some(allocator) = q.downtracks[i].allocator.as_mut() else {
                continue;
            };
            if let Some(allocation) = allocator.update(now, estimate, audio, &layers) {
                applied.push(Change {
                    subscriber,
                    publisher,
                    downtrack: i,
                    allocation,
                });
            }
            // A single stream adapts to its sender's own estimate: cap that sender to what
            // this downlink carries (REMB), instead of letting the SFU drop what does not fit.
            if let ([only], Some(estimate)) = (layers.as_slice(), estimate) {
                let utilization = self.config.bandwidth.allocator.utilization;
                let cap = (estimate.optimistic_bps as f64 * utilization) as u64;
                let cap = cap.saturating_sub(audio);
                let min = self.config.bandwidth.allocator.min_video_bps;
                caps.push((publisher, only.ssrc, cap.max(min)));
            }
        }
        for change in applied {
            self.apply_allocation(change, now);
        }
        for (publisher, ssrc, bps) in caps {
            self.send_cap(publisher, ssrc, bps, now);
        }
        self.publish_quality(now);
    }

    fn apply_allocation(&mut self, change: Change, now: Instant) {
        let Change {
            subscriber,
            publisher,
            downtrack,
            allocation,
        } = change;
        let rid_of = |ssrc: u32| {
            self.participants
                .get(&publisher)
                .and_then(|p| p.receiver(ssrc))
                .map(|r| (r.rid.clone(), r.rate.bps()))
        };
        let layer = match allocation {
            Allocation::Layer(ssrc) => rid_of(ssrc),
            Allocation::Paused => None,
        };
        // The publisher's layer bitrates, to tell a downgrade from an upgrade.
        let self_rates: Vec<(u32, u64)> = self
            .participants
            .get(&publisher)
            .map(|p| p.receivers.iter().map(|r| (r.ssrc, r.rate.bps())).collect())
            .unwrap_or_default();
        let Some(q) = self.participants.get_mut(&subscriber) else {
            return;
        };
        let call = q.call;
        let d = &mut q.downtracks[downtrack];
        match allocation {
            Allocation::Paused => {
                d.forwarder.set_paused(true, true);
                d.paused_since = Some(now);
                d.freezes.pause();
                tracing::info!(call = %call, participant = %subscriber, "video paused: weak network");
                self.events.push_back(Event::VideoPaused {
                    call,
                    participant: subscriber,
                    reason: PauseReason::WeakNetwork,
                });
            }
            Allocation::Layer(ssrc) => {
                let resumed = d.forwarder.is_paused();
                if resumed {
                    d.forwarder.set_paused(false, true);
                    if let Some(t) = d.paused_since.take() {
                        d.paused_total += now.saturating_duration_since(t);
                    }
                }
                let (rid, bitrate_bps) = layer.unwrap_or_default();
                let current_bps = d
                    .forwarder
                    .source()
                    .and_then(|s| self_rates.iter().find(|(x, _)| *x == s).map(|(_, b)| *b));
                if !resumed && current_bps.is_some_and(|c| bitrate_bps < c) {
                    d.forwarder.switch_down_now(ssrc, true);
                } else {
                    d.forwarder.set_target(ssrc);
                }
                d.layer_rid = rid.clone();
                if resumed {
                    tracing::info!(call = %call, participant = %subscriber, "video resumed");
                    self.events.push_back(Event::VideoResumed {
                        call,
                        participant: subscriber,
                    });
                }
                tracing::debug!(call = %call, participant = %subscriber, ?rid, bitrate_bps, "layer");
                self.events.push_back(Event::LayerChanged {
                    call,
                    participant: subscriber,
                    rid,
                    bitrate_bps,
                });
                self.touched.clear();
                self.request_keyframe(publisher, ssrc, now);
                self.flush_touched(now);
            }
        }
    }

    /// Caps `publisher`'s stream `ssrc` at `bps` with a REMB, at most once a second.
    fn send_cap(&mut self, publisher: ParticipantId, ssrc: u32, bps: u64, now: Instant) {
        let Some(p) = self.participants.get_mut(&publisher) else {
            return;
        };
        if p.last_remb
            .is_some_and(|t| now.saturating_duration_since(t) < REMB_INTERVAL)
        {
            return;
        }
        let Some(handle) = p.receiver(ssrc).map(|r| r.handle) else {
            return;
        };
        p.last_remb = Some(now);
        p.transport.send_remb(handle, vec![ssrc], bps, now);
        self.drain(publisher, now);
    }

    /// Publishes each connected participant's quality, at most once per interval.
    fn publish_quality(&mut self, now: Instant) {
        let interval = self.config.bandwidth.quality_interval;
        let due: Vec<ParticipantId> = self
            .participants
            .values()
            .filter(|p| p.state == ConnectionState::Connected && p.next_quality <= now)
            .map(|p| p.id)
            .collect();
        for id in due {
            if let Some(p) = self.participants.get_mut(&id) {
                p.next_quality = now + interval;
                let stats = Box::new(p.stats(now));
                self.events.push_back(Event::Quality {
                    call: p.call,
                    participant: id,
                    stats,
                });
            }
        }
    }
}
