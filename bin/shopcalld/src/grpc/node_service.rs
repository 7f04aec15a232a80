//! Node service: `shopcall.v1.NodeService`, the daemon's own operations: Drain and NodeStats.
//!
//! Drain starts (or follows) the one drain of `drain.rs` and streams its progress; closing
//! the stream leaves the drain running. NodeStats reads the SFU's gauges now and the rates
//! the sampler of `node.rs` computed over its window.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Stream;
use sfu::SfuHandle;
use shopcall_proto::v1 as pb;
use shopcall_proto::v1::node_service_server::NodeService;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::convert;
use super::status::ApiError;
use crate::drain::{Drainer, Phase, Progress};
use crate::node::{self, Load};

/// How often a Drain stream reports while nothing changes (the time left still does).
pub const DRAIN_REPORT_EVERY: Duration = Duration::from_secs(1);

/// The `NodeService` implementation.
#[derive(Clone)]
pub struct NodeApi {
    handle: SfuHandle,
    drainer: Drainer,
    load: Arc<Load>,
    max_calls: usize,
    started: Instant,
}

impl NodeApi {
    /// The node service of the SFU behind `handle`, draining with `drainer`, with rates from
    /// `load`, reporting `max_calls` as its capacity.
    pub fn new(handle: SfuHandle, drainer: Drainer, load: Arc<Load>, max_calls: usize) -> NodeApi {
        NodeApi {
            handle,
            drainer,
            load,
            max_calls,
            started: Instant::now(),
        }
    }
}

/// The Drain response stream.
pub type DrainStream = Pin<Box<dyn Stream<Item = Result<pb::DrainProgress, Status>> + Send>>;

/// A phase on the wire.
pub fn phase(p: Phase) -> pb::DrainPhase {
    match p {
        Phase::Serving => pb::DrainPhase::Serving,
        Phase::Draining => pb::DrainPhase::Draining,
        Phase::Drained => pb::DrainPhase::Drained,
    }
}

/// One progress report on the wire.
pub fn progress(p: &Progress, now: tokio::time::Instant) -> pb::DrainProgress {
    pb::DrainProgress {
        phase: phase(p.phase) as i32,
        remaining_calls: p.remaining_calls,
        remaining_participants: p.remaining_participants,
        time_left: p
            .deadline
            .and_then(|d| d.checked_duration_since(now))
            .map(convert::duration),
        calls_ended_at_deadline: p.ended_at_deadline,
        exit_when_drained: p.exit_when_drained,
    }
}

/// The drain deadline of a request: unset or zero is now, else more than 0 and at most a day.
fn drain_deadline(d: Option<prost_types::Duration>) -> Result<Duration, ApiError> {
    match d {
        None => Ok(Duration::ZERO),
        Some(prost_types::Duration {
            seconds: 0,
            nanos: 0,
        }) => Ok(Duration::ZERO),
        Some(d) => Ok(convert::limit("deadline", Some(d))?.unwrap_or_default()),
    }
}

#[tonic::async_trait]
impl NodeService for NodeApi {
    type DrainStream = DrainStream;

    async fn drain(
        &self,
        request: Request<pb::DrainRequest>,
    ) -> Result<Response<DrainStream>, Status> {
        let req = request.into_inner();
        let deadline = drain_deadline(req.deadline)?;
        tracing::info!(
            ?deadline,
            exit_when_drained = req.exit_when_drained,
            "Drain requested"
        );
        let rx = self
            .drainer
            .begin(
                tokio::time::Instant::now() + deadline,
                req.exit_when_drained,
            )
            .await;
        Ok(Response::new(drain_stream(rx)))
    }

    async fn node_stats(
        &self,
        _request: Request<pb::NodeStatsRequest>,
    ) -> Result<Response<pb::NodeStatsResponse>, Status> {
        let m = self.handle.metrics().await.map_err(ApiError::from)?;
        let drain = self.drainer.progress();
        let rates = self.load.rates();
        let r = rates.unwrap_or_default();
        let max_calls = u64::try_from(self.max_calls).unwrap_or(u64::MAX);
        Ok(Response::new(pb::NodeStatsResponse {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime: Some(convert::duration(self.started.elapsed())),
            drain_phase: phase(drain.phase) as i32,
            drain_time_left: drain
                .deadline
                .filter(|_| drain.phase == Phase::Draining)
                .map(|d| {
                    convert::duration(d.saturating_duration_since(tokio::time::Instant::now()))
                }),
            accepting_calls: drain.phase == Phase::Serving && m.active_calls < max_calls,
            active_calls: m.active_calls,
            max_calls,
            active_participants: m.active_participants,
            connected_participants: m.connected_participants,
            datagrams_in_per_second: r.datagrams_in,
            datagrams_out_per_second: r.datagrams_out,
            packets_in_per_second: r.packets_in,
            packets_out_per_second: r.packets_out,
            bits_in_per_second: r.bits_in,
            bits_out_per_second: r.bits_out,
            rate_window: rates.map(|r| convert::duration(r.window)),
            cpu_cores: r.cpu_cores,
            cpu_count: node::cpu_count(),
            rss_bytes: node::rss_bytes(),
        }))
    }
}

/// Reports the drain's progress at once, on every change and every
/// [`DRAIN_REPORT_EVERY`]; ends after the drained report.
fn drain_stream(rx: watch::Receiver<Progress>) -> DrainStream {
    struct State {
        rx: watch::Receiver<Progress>,
        first: bool,
        done: bool,
    }
    let state = State {
        rx,
        first: true,
        done: false,
    };
    Box::pin(futures::stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        if !s.first {
            // A change, or the periodic report; a closed channel (daemon stopping) reports
            // what it last knew.
            let _ = tokio::time::timeout(DRAIN_REPORT_EVERY, s.rx.changed()).await;
        }
        s.first = false;
        let current = s.rx.borrow_and_update().clone();
        s.done = current.phase == Phase::Drained;
        Some((Ok(progress(&current, tokio::time::Instant::now())), s))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[test]
    fn deadlines_are_zero_to_a_day() {
        assert_eq!(drain_deadline(None).unwrap(), Duration::ZERO);
        assert_eq!(
            drain_deadline(Some(prost_types::Duration {
                seconds: 0,
                nanos: 0
            }))
            .unwrap(),
            Duration::ZERO
        );
        assert_eq!(
            drain_deadline(Some(prost_types::Duration {
                seconds: 30,
                nanos: 0
            }))
            .unwrap(),
            Duration::from_secs(30)
        );
        for bad in [-1, 86_401] {
            let err = drain_deadline(Some(prost_types::Duration {
                seconds: bad,
                nanos: 0,
            }))
            .unwrap_err();
            assert_eq!(Status::from(err).code(), tonic::Code::InvalidArgument);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_stream_reports_changes_and_ends_when_drained() {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let (tx, rx) = watch::channel(Progress {
            phase: Phase::Draining,
            remaining_calls: 2,
            remaining_participants: 4,
            deadline: Some(deadline),
            ended_at_deadline: 0,
            exit_when_drained: true,
        });
        let mut stream = drain_stream(rx);
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(first.phase, pb::DrainPhase::Draining as i32);
        assert_eq!(first.remaining_calls, 2);
        assert_eq!(first.time_left.unwrap().seconds, 30);
        // Nothing changes: a report a second later anyway, with less time left.
        let second = stream.next().await.unwrap().unwrap();
        assert_eq!(second.remaining_calls, 2);
        assert_eq!(second.time_left.unwrap().seconds, 29);
        tx.send_modify(|p| {
            p.phase = Phase::Drained;
            p.remaining_calls = 0;
            p.remaining_participants = 0;
            p.deadline = None;
            p.ended_at_deadline = 1;
        });
        let last = stream.next().await.unwrap().unwrap();
        assert_eq!(last.phase, pb::DrainPhase::Drained as i32);
        assert_eq!(last.calls_ended_at_deadline, 1);
        assert!(last.time_left.is_none());
        assert!(stream.next().await.is_none());
    }
}
