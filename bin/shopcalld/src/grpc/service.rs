//! Service: `shopcall.v1.CallService` on top of an [`SfuHandle`].
//!
//! Each method checks its request fields (`convert.rs`), asks the SFU, and converts the
//! answer; every error goes through `status.rs`. No media logic lives here.

use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use futures::Stream;
use sfu::{CallId, Event, JoinRequest, SfuHandle};
use shopcall_proto::v1 as pb;
use shopcall_proto::v1::call_service_server::CallService;
use tokio::sync::broadcast;
use tonic::{Request, Response, Status};

use super::convert;
use super::convert::policy as policy_convert;
use super::rate_limit::{Operation, RateLimiter};
use super::status::ApiError;
use crate::metrics::{Metrics, PolicyOperation, Subscriber};
use crate::shutdown::ServingState;

/// The `CallService` implementation.
#[derive(Clone)]
pub struct CallApi {
    handle: SfuHandle,
    metrics: Arc<Metrics>,
    serving: Arc<ServingState>,
    limiter: Arc<RateLimiter>,
}

impl CallApi {
    /// A service that drives `handle`, counts into `metrics`, and refuses new calls once
    /// `serving` is draining.
    pub fn new(handle: SfuHandle, metrics: Arc<Metrics>, serving: Arc<ServingState>) -> CallApi {
        CallApi {
            handle,
            metrics,
            serving,
            limiter: Arc::new(RateLimiter::off()),
        }
    }

    /// The same service, with CreateCall and Join rate-limited per client address.
    pub fn with_rate_limiter(mut self, limiter: Arc<RateLimiter>) -> CallApi {
        self.limiter = limiter;
        self
    }

    /// Takes a token from the client's bucket for `operation`, or refuses (and counts) the
    /// request.
    fn check_rate<T>(&self, operation: Operation, request: &Request<T>) -> Result<(), ApiError> {
        let client = request.remote_addr().map(|a| a.ip());
        self.limiter
            .check(operation, client, std::time::Instant::now())
            .map_err(|limited| {
                self.metrics.count_rate_limited(operation);
                tracing::debug!(%limited, "request over its rate limit");
                limited.into()
            })
    }

    /// Refuses new calls while the daemon drains.
    fn check_serving(&self) -> Result<(), ApiError> {
        if self.serving.is_draining() {
            return Err(sfu::Error::ShuttingDown.into());
        }
        Ok(())
    }

    /// Counts a refusal by the call policy (or by the eligibility rules) for `operation`,
    /// and hands the error on.
    fn count_refusal(&self, operation: PolicyOperation, err: sfu::Error) -> ApiError {
        if matches!(
            err,
            sfu::Error::PolicyRefused(_) | sfu::Error::NotEligible(_)
        ) {
            self.metrics.count_policy_refusal(operation, 1);
        }
        err.into()
    }
}

/// The WatchEvents response stream.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEventsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl CallService for CallApi {
    async fn create_call(
        &self,
        request: Request<pb::CreateCallRequest>,
    ) -> Result<Response<pb::CreateCallResponse>, Status> {
        self.check_serving()?;
        self.check_rate(Operation::CreateCall, &request)?;
        let options = policy_convert::call_options(request.into_inner()).map_err(ApiError::from)?;
        let call = self
            .handle
            .create_call(options)
            .await
            .map_err(|e| self.count_refusal(PolicyOperation::CreateCall, e))?;
        if let sfu::policy::Eligibility::AudioOnly { reason } = call.eligibility {
            tracing::debug!(call = %call.id, %reason, "call is audio-only");
            self.metrics.count_audio_only_call();
        }
        Ok(Response::new(policy_convert::created_call(&call)))
    }

    async fn join(
        &self,
        request: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::JoinResponse>, Status> {
        self.check_rate(Operation::Join, &request)?;
        let req = request.into_inner();
        let call = convert::call_id("call_id", &req.call_id).map_err(ApiError::from)?;
        let role = convert::role_from_proto(req.role).map_err(ApiError::from)?;
        convert::required("sdp_offer", &req.sdp_offer).map_err(ApiError::from)?;
        let tracks = policy_convert::declared_tracks(req.tracks).map_err(ApiError::from)?;
        // While draining, the SFU itself decides: participants of existing calls may still
        // join until the calls end.
        let answer = self
            .handle
            .join(
                call,
                JoinRequest {
                    role,
                    offer_sdp: req.sdp_offer,
                    tracks,
                },
            )
            .await
            .map_err(ApiError::from)?;
        let refused = answer.tracks.iter().filter(|t| !t.is_accepted()).count();
        if refused > 0 {
            self.metrics
                .count_policy_refusal(PolicyOperation::JoinTrack, refused as u64);
        }
        Ok(Response::new(pb::JoinResponse {
            participant_id: answer.participant.to_string(),
            sdp_answer: answer.answer_sdp,
            tracks: answer
                .tracks
                .iter()
                .map(policy_convert::track_verdict)
                .collect(),
            constraints: Some(policy_convert::client_constraints(&answer.constraints)),
        }))
    }

    async fn answer(
        &self,
        request: Request<pb::AnswerRequest>,
    ) -> Result<Response<pb::AnswerResponse>, Status> {
        let req = request.into_inner();
        let call = convert::call_id("call_id", &req.call_id).map_err(ApiError::from)?;
        let role = convert::role_from_proto(req.role).map_err(ApiError::from)?;
        self.handle
            .answer(call, role)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::AnswerResponse {}))
    }

    async fn decline(
        &self,
        request: Request<pb::DeclineRequest>,
    ) -> Result<Response<pb::DeclineResponse>, Status> {
        let req = request.into_inner();
        let call = convert::call_id("call_id", &req.call_id).map_err(ApiError::from)?;
        let role = convert::role_from_proto(req.role).map_err(ApiError::from)?;
        self.handle
            .decline(call, role)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::DeclineResponse {}))
    }

    async fn set_camera(
        &self,
        request: Request<pb::SetCameraRequest>,
    ) -> Result<Response<pb::SetCameraResponse>, Status> {
        let req = request.into_inner();
        let call = convert::call_id("call_id", &req.call_id).map_err(ApiError::from)?;
        let actor = convert::role_field("actor", req.actor).map_err(ApiError::from)?;
        let target = convert::role_field("target", req.target).map_err(ApiError::from)?;
        let lens = convert::camera_lens(req.on, req.lens).map_err(ApiError::from)?;
        self.handle
            .set_camera(call, actor, target, lens)
            .await
            .map_err(|e| self.count_refusal(PolicyOperation::SetCamera, e))?;
        Ok(Response::new(pb::SetCameraResponse {}))
    }

    async fn request_camera(
        &self,
        request: Request<pb::RequestCameraRequest>,
    ) -> Result<Response<pb::RequestCameraResponse>, Status> {
        let req = request.into_inner();
        let call = convert::call_id("call_id", &req.call_id).map_err(ApiError::from)?;
        let actor = convert::role_field("actor", req.actor).map_err(ApiError::from)?;
        let target = convert::role_field("target", req.target).map_err(ApiError::from)?;
        self.handle
            .request_camera(call, actor, target)
            .await
            .map_err(|e| self.count_refusal(PolicyOperation::RequestCamera, e))?;
        Ok(Response::new(pb::RequestCameraResponse {}))
    }

    async fn restart_ice(
        &self,
        request: Request<pb::RestartIceRequest>,
    ) -> Result<Response<pb::RestartIceResponse>, Status> {
        let req = request.into_inner();
        let participant = convert::participant_id("participant_id", &req.participant_id)
            .map_err(ApiError::from)?;
        convert::required("sdp_offer", &req.sdp_offer).map_err(ApiError::from)?;
        let sdp_answer = self
            .handle
            .restart_ice(participant, req.sdp_offer)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::RestartIceResponse { sdp_answer }))
    }

    async fn add_ice_candidate(
        &self,
        request: Request<pb::AddIceCandidateRequest>,
    ) -> Result<Response<pb::AddIceCandidateResponse>, Status> {
        let req = request.into_inner();
        let participant = convert::participant_id("participant_id", &req.participant_id)
            .map_err(ApiError::from)?;
        self.handle
            .add_ice_candidate(participant, req.candidate)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::AddIceCandidateResponse {}))
    }

    async fn leave(
        &self,
        request: Request<pb::LeaveRequest>,
    ) -> Result<Response<pb::LeaveResponse>, Status> {
        let req = request.into_inner();
        let participant = convert::participant_id("participant_id", &req.participant_id)
            .map_err(ApiError::from)?;
        self.handle
            .leave(participant)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::LeaveResponse {}))
    }

    async fn end_call(
        &self,
        request: Request<pb::EndCallRequest>,
    ) -> Result<Response<pb::EndCallResponse>, Status> {
        let req = request.into_inner();
        let call = convert::call_id("call_id", &req.call_id).map_err(ApiError::from)?;
        self.handle.end_call(call).await.map_err(ApiError::from)?;
        Ok(Response::new(pb::EndCallResponse {}))
    }

    async fn get_call(
        &self,
        request: Request<pb::GetCallRequest>,
    ) -> Result<Response<pb::GetCallResponse>, Status> {
        let req = request.into_inner();
        let call = convert::call_id("call_id", &req.call_id).map_err(ApiError::from)?;
        let stats = self.handle.call_stats(call).await.map_err(ApiError::from)?;
        Ok(Response::new(pb::GetCallResponse {
            call: Some(convert::call(&stats)),
        }))
    }

    async fn list_calls(
        &self,
        _request: Request<pb::ListCallsRequest>,
    ) -> Result<Response<pb::ListCallsResponse>, Status> {
        let calls = self.handle.list_calls().await.map_err(ApiError::from)?;
        Ok(Response::new(pb::ListCallsResponse {
            call_ids: calls.iter().map(CallId::to_string).collect(),
        }))
    }

    async fn give_consent(
        &self,
        request: Request<pb::GiveConsentRequest>,
    ) -> Result<Response<pb::GiveConsentResponse>, Status> {
        let req = request.into_inner();
        let call = convert::call_id("call_id", &req.call_id).map_err(ApiError::from)?;
        let role = convert::role_field("role", req.role).map_err(ApiError::from)?;
        self.handle
            .give_consent(call, role, req.given)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::GiveConsentResponse {}))
    }

    async fn start_recording(
        &self,
        request: Request<pb::StartRecordingRequest>,
    ) -> Result<Response<pb::StartRecordingResponse>, Status> {
        let req = request.into_inner();
        let call = convert::call_id("call_id", &req.call_id).map_err(ApiError::from)?;
        let started = self
            .handle
            .start_recording(call)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(convert::recording::started(&started)))
    }

    async fn stop_recording(
        &self,
        request: Request<pb::StopRecordingRequest>,
    ) -> Result<Response<pb::StopRecordingResponse>, Status> {
        let req = request.into_inner();
        let call = convert::call_id("call_id", &req.call_id).map_err(ApiError::from)?;
        self.handle
            .stop_recording(call)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::StopRecordingResponse {}))
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let req = request.into_inner();
        let filter = convert::optional_call_id("call_id", &req.call_id).map_err(ApiError::from)?;
        // Subscribe first, then check the call: no event between the two is missed.
        let events = self.handle.subscribe().map_err(ApiError::from)?;
        if let Some(call) = filter {
            self.handle.call_stats(call).await.map_err(ApiError::from)?;
        }
        tracing::debug!(call = ?filter, "WatchEvents started");
        Ok(Response::new(watch(events, filter, self.metrics.clone())))
    }
}

/// What the watch loop carries from one item to the next.
struct Watch {
    events: broadcast::Receiver<Event>,
    filter: Option<CallId>,
    metrics: Arc<Metrics>,
    /// Set once the watched call ended: the stream is over.
    done: bool,
}

/// Turns SFU events into the WatchEvents stream: filtered by call, converted, with lag
/// reported as `EventsLost` (the stream goes on). It ends when the SFU stops (at shutdown),
/// or, with a filter, after the watched call's `CallEnded`.
fn watch(
    events: broadcast::Receiver<Event>,
    filter: Option<CallId>,
    metrics: Arc<Metrics>,
) -> EventStream {
    let state = Watch {
        events,
        filter,
        metrics,
        done: false,
    };
    Box::pin(futures::stream::unfold(state, |mut w| async move {
        if w.done {
            return None;
        }
        loop {
            match w.events.recv().await {
                Ok(event) => {
                    if w.filter.is_some_and(|c| c != event.call()) {
                        continue;
                    }
                    let Some(out) = convert::event(&event, SystemTime::now()) else {
                        tracing::debug!(?event, "event not in the API yet; not sent");
                        continue;
                    };
                    w.done = w.filter.is_some() && matches!(event, Event::CallEnded { .. });
                    return Some((Ok(pb::WatchEventsResponse { event: Some(out) }), w));
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "a WatchEvents stream fell behind and skipped events"
                    );
                    w.metrics.count_lagged(Subscriber::WatchEvents, missed);
                    let out = convert::events_lost(missed, SystemTime::now());
                    return Some((Ok(pb::WatchEventsResponse { event: Some(out) }), w));
                }
                Err(broadcast::error::RecvError::Closed) => {
                    tracing::debug!("SFU stopped; WatchEvents stream ends");
                    return None;
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use sfu::{CallRecord, EndReason, Role};
    use std::time::Duration;

    fn ended(call: CallId) -> Event {
        Event::CallEnded {
            call,
            reason: EndReason::Requested,
            record: Box::new(CallRecord {
                call,
                merchant_ref: None,
                customer_ref: None,
                initiator: Role::Merchant,
                profile: "rear-camera-off".into(),
                end_reason: EndReason::Requested,
                ring_duration: Duration::ZERO,
                answer_latency: None,
                duration: Duration::from_secs(1),
                connected_duration: Duration::ZERO,
                customer_camera_used: false,
                customer_camera_duration: Duration::ZERO,
                merchant_camera_duration: Duration::ZERO,
                to_customer: Default::default(),
                to_merchant: Default::default(),
                participants: Vec::new(),
                recordings: Vec::new(),
            }),
        }
    }

    fn created(call: CallId) -> Event {
        Event::CallCreated {
            call,
            initiator: Role::Merchant,
        }
    }

    fn kind(item: Option<Result<pb::WatchEventsResponse, Status>>) -> pb::event::Kind {
        item.expect("an item")
            .expect("not an error")
            .event
            .expect("an event")
            .kind
            .expect("a kind")
    }

    #[tokio::test]
    async fn filtered_watch_skips_other_calls_and_ends_after_call_ended() {
        let (tx, rx) = broadcast::channel(16);
        let (a, b) = (CallId::from_raw(1), CallId::from_raw(2));
        let mut stream = watch(rx, Some(a), Arc::new(Metrics::new()));
        tx.send(created(b)).unwrap();
        tx.send(created(a)).unwrap();
        tx.send(ended(a)).unwrap();
        tx.send(created(a)).unwrap();
        assert!(matches!(
            kind(stream.next().await),
            pb::event::Kind::CallCreated(_)
        ));
        assert!(matches!(
            kind(stream.next().await),
            pb::event::Kind::CallEnded(_)
        ));
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn weak_network_events_reach_a_filtered_watch() {
        let (tx, rx) = broadcast::channel(16);
        let (a, b) = (CallId::from_raw(1), CallId::from_raw(2));
        let participant = sfu::ParticipantId::from_raw(3);
        let mut stream = watch(rx, Some(a), Arc::new(Metrics::new()));
        for call in [b, a] {
            tx.send(Event::VideoPaused {
                call,
                participant,
                reason: sfu::PauseReason::WeakNetwork,
            })
            .unwrap();
        }
        tx.send(Event::VideoResumed {
            call: a,
            participant,
        })
        .unwrap();
        tx.send(Event::LayerChanged {
            call: a,
            participant,
            rid: None,
            bitrate_bps: 300_000,
        })
        .unwrap();
        tx.send(ended(a)).unwrap();
        match kind(stream.next().await) {
            pb::event::Kind::VideoPaused(p) => {
                assert_eq!(p.participant_id, "0000000000000003");
                assert_eq!(p.reason, pb::VideoPauseReason::WeakNetwork as i32);
            }
            other => panic!("expected VideoPaused, got {other:?}"),
        }
        assert!(matches!(
            kind(stream.next().await),
            pb::event::Kind::VideoResumed(_)
        ));
        assert!(matches!(
            kind(stream.next().await),
            pb::event::Kind::LayerChanged(pb::LayerChanged {
                bitrate_bps: 300_000,
                ..
            })
        ));
        assert!(matches!(
            kind(stream.next().await),
            pb::event::Kind::CallEnded(_)
        ));
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn lag_is_reported_and_the_stream_goes_on_until_closed() {
        let (tx, rx) = broadcast::channel(2);
        let metrics = Arc::new(Metrics::new());
        let mut stream = watch(rx, None, metrics.clone());
        for raw in 0..5 {
            tx.send(created(CallId::from_raw(raw))).unwrap();
        }
        match kind(stream.next().await) {
            pb::event::Kind::EventsLost(lost) => assert_eq!(lost.count, 3),
            other => panic!("expected EventsLost, got {other:?}"),
        }
        assert!(matches!(
            kind(stream.next().await),
            pb::event::Kind::CallCreated(_)
        ));
        assert!(matches!(
            kind(stream.next().await),
            pb::event::Kind::CallCreated(_)
        ));
        drop(tx);
        assert!(stream.next().await.is_none());
        assert!(
            metrics
                .render()
                .contains("shopcall_events_lagged_total{subscriber=\"watch_events\"} 3")
        );
    }
}
