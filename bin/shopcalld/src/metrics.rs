//! Metrics: the Prometheus registry and the tiny HTTP server that serves it.
//!
//! No metric carries a per-call label: labels are bounded sets (media kind, drop reason, end
//! reason, call outcome, policy operation, video pause reason, event subscriber). Values come
//! from three places:
//!
//! * the engine's own counters ([`sfu::EngineMetrics`]), read with `SfuHandle::metrics` at
//!   every scrape: gauges are set, counters advance by the difference to the last scrape;
//! * the event stream: call ends by reason and by outcome, answer and join latency, call
//!   durations, customer camera use, camera requests, video pauses for weak networks and
//!   layer changes ([`Metrics::observe_event`], fed by [`record_events`]);
//! * the gRPC service: policy refusals and audio-only calls, which are answers to requests
//!   rather than events ([`Metrics::count_policy_refusal`], [`Metrics::count_audio_only_call`]);
//! * the gRPC front door: requests refused for credentials, for their encoding or for a rate
//!   limit ([`Metrics::count_unauthenticated`], [`Metrics::count_invalid_request`],
//!   [`Metrics::count_rate_limited`]), the drain state and an unauthenticated public API
//!   ([`Metrics::set_draining`], [`Metrics::set_insecure_public`]).
//!
//! The HTTP server ([`serve`]) answers `GET /metrics` (text exposition format) and
//! `GET /healthz` (200 while serving, 503 once shutdown began).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use sfu::{DropReason, EndReason, EngineMetrics, Event, MediaKind, PauseReason, SfuHandle};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, broadcast, oneshot};

use crate::shutdown::ServingState;

/// How long a scrape waits for the engine's counters before serving the previous values.
const ENGINE_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Where events were lost: the `subscriber` label of `shopcall_events_lagged_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscriber {
    /// The daemon's own metrics recorder.
    Metrics,
    /// A WatchEvents stream.
    WatchEvents,
}

impl Subscriber {
    fn as_str(self) -> &'static str {
        match self {
            Subscriber::Metrics => "metrics",
            Subscriber::WatchEvents => "watch_events",
        }
    }
}

/// How a call ended, for merchant scoring: the `outcome` label of
/// `shopcall_call_outcomes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The callee answered (whatever ended the call afterwards).
    Answered,
    /// The callee declined.
    Declined,
    /// Nobody answered within the ring timeout.
    Missed,
    /// The call was hung up before anyone answered.
    Cancelled,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 4] = [
        Outcome::Answered,
        Outcome::Declined,
        Outcome::Missed,
        Outcome::Cancelled,
    ];

    /// The outcome of a call that ended for `reason`. Every reason but declined, missed and
    /// cancelled means the call had been answered ([`EndReason::was_answered`]).
    pub fn of(reason: EndReason) -> Outcome {
        match reason {
            EndReason::Declined => Outcome::Declined,
            EndReason::Missed => Outcome::Missed,
            EndReason::Cancelled => Outcome::Cancelled,
            other => {
                debug_assert!(other.was_answered(), "{other:?}");
                Outcome::Answered
            }
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Declined => "declined",
            Outcome::Missed => "missed",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// Which request the call policy refused: the `operation` label of
/// `shopcall_policy_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyOperation {
    /// CreateCall refused because the merchant is not eligible for video (and the rules say
    /// refuse).
    CreateCall,
    /// A track declared at Join was refused (its m-line answered inactive); one per track.
    JoinTrack,
    /// SetCamera refused (e.g. the merchant turning on the customer's camera).
    SetCamera,
    /// RequestCamera refused (e.g. asking for a camera the profile does not allow).
    RequestCamera,
}

impl PolicyOperation {
    /// Every operation.
    pub const ALL: [PolicyOperation; 4] = [
        PolicyOperation::CreateCall,
        PolicyOperation::JoinTrack,
        PolicyOperation::SetCamera,
        PolicyOperation::RequestCamera,
    ];

    fn as_str(self) -> &'static str {
        match self {
            PolicyOperation::CreateCall => "create_call",
            PolicyOperation::JoinTrack => "join_track",
            PolicyOperation::SetCamera => "set_camera",
            PolicyOperation::RequestCamera => "request_camera",
        }
    }
}

/// Why a request was refused on the wire: the `reason` label of
/// `shopcall_grpc_invalid_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidRequest {
    /// A field number the message does not define.
    UnknownField,
    /// A string over its cap.
    StringTooLong,
    /// Not a well-formed message (or a string that is not UTF-8).
    Malformed,
    /// Over the request size limit.
    TooLarge,
}

impl InvalidRequest {
    /// Every reason.
    pub const ALL: [InvalidRequest; 4] = [
        InvalidRequest::UnknownField,
        InvalidRequest::StringTooLong,
        InvalidRequest::Malformed,
        InvalidRequest::TooLarge,
    ];

    fn as_str(self) -> &'static str {
        match self {
            InvalidRequest::UnknownField => "unknown_field",
            InvalidRequest::StringTooLong => "string_too_long",
            InvalidRequest::Malformed => "malformed",
            InvalidRequest::TooLarge => "too_large",
        }
    }
}

/// The daemon's Prometheus metrics.
pub struct Metrics {
    registry: Registry,
    /// Serialises scrapes, so counter deltas are computed against one snapshot at a time.
    scrape: Mutex<()>,
    active_calls: IntGauge,
    active_participants: IntGauge,
    connected_participants: IntGauge,
    forwarded_packets: IntCounterVec,
    forwarded_bytes: IntCounterVec,
    received_packets: IntCounterVec,
    received_bytes: IntCounterVec,
    dropped_packets: IntCounterVec,
    datagrams_received: IntCounter,
    datagrams_sent: IntCounter,
    ice_failures: IntCounter,
    dtls_failures: IntCounter,
    path_moves: IntCounter,
    keyframe_requests: IntCounter,
    calls_created: IntCounter,
    calls_ended: IntCounterVec,
    join_latency: Histogram,
    call_duration: Histogram,
    call_connected_duration: Histogram,
    call_outcomes: IntCounterVec,
    answer_latency: Histogram,
    customer_camera_used: IntCounter,
    customer_camera_seconds: prometheus::Counter,
    camera_requests: IntCounter,
    video_pauses: IntCounterVec,
    layer_changes: IntCounter,
    policy_refusals: IntCounterVec,
    audio_only_calls: IntCounter,
    events_lagged: IntCounterVec,
    unauthenticated: IntCounter,
    invalid_requests: IntCounterVec,
    rate_limited: IntCounterVec,
    draining: IntGauge,
    insecure_public: IntGauge,
}

/// Registers `metric` in `registry` and returns it.
fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique and valid: they are constants of this module");
    metric
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    register(
        r,
        IntGauge::new(name, help).expect("constant metric name is valid"),
    )
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    register(
        r,
        IntCounter::new(name, help).expect("constant metric name is valid"),
    )
}

fn counter_vec(r: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    register(
        r,
        IntCounterVec::new(Opts::new(name, help), &[label]).expect("constant metric name is valid"),
    )
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    register(
        r,
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
            .expect("constant metric name and sorted buckets are valid"),
    )
}

impl Metrics {
    /// Creates and registers every metric. Labelled series start at 0.
    pub fn new() -> Metrics {
        let r = Registry::new();
        let m = Metrics {
            scrape: Mutex::new(()),
            active_calls: gauge(&r, "shopcall_active_calls", "Calls that exist now."),
            active_participants: gauge(
                &r,
                "shopcall_active_participants",
                "Participants that exist now (joined, not yet left).",
            ),
            connected_participants: gauge(
                &r,
                "shopcall_connected_participants",
                "Participants whose transport (ICE + DTLS) is connected now.",
            ),
            forwarded_packets: counter_vec(
                &r,
                "shopcall_forwarded_packets_total",
                "RTP packets forwarded to participants, by media kind.",
                "kind",
            ),
            forwarded_bytes: counter_vec(
                &r,
                "shopcall_forwarded_bytes_total",
                "RTP bytes (header and payload, before SRTP) forwarded to participants, by media kind.",
                "kind",
            ),
            received_packets: counter_vec(
                &r,
                "shopcall_received_packets_total",
                "RTP packets received from participants, by media kind.",
                "kind",
            ),
            received_bytes: counter_vec(
                &r,
                "shopcall_received_bytes_total",
                "RTP bytes (header and payload, after SRTP) received from participants, by media kind.",
                "kind",
            ),
            dropped_packets: counter_vec(
                &r,
                "shopcall_dropped_packets_total",
                "Datagrams and packets dropped instead of delivered, by reason.",
                "reason",
            ),
            datagrams_received: counter(
                &r,
                "shopcall_datagrams_received_total",
                "UDP datagrams read from the media socket.",
            ),
            datagrams_sent: counter(
                &r,
                "shopcall_datagrams_sent_total",
                "UDP datagrams written to the media socket.",
            ),
            ice_failures: counter(
                &r,
                "shopcall_ice_failures_total",
                "Participant transports that failed during ICE.",
            ),
            dtls_failures: counter(
                &r,
                "shopcall_dtls_failures_total",
                "Participant transports that failed during DTLS or after connecting.",
            ),
            path_moves: counter(
                &r,
                "shopcall_path_moves_total",
                "Media paths moved to another ICE-verified address without an ICE restart (NAT rebinding).",
            ),
            keyframe_requests: counter(
                &r,
                "shopcall_keyframe_requests_total",
                "Keyframe requests (PLI) sent to publishing participants.",
            ),
            calls_created: counter(&r, "shopcall_calls_created_total", "Calls created."),
            calls_ended: counter_vec(
                &r,
                "shopcall_calls_ended_total",
                "Calls ended, by end reason.",
                "reason",
            ),
            join_latency: histogram(
                &r,
                "shopcall_join_latency_seconds",
                "Time from a participant's Join to its transport being connected.",
                vec![0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
            ),
            call_duration: histogram(
                &r,
                "shopcall_call_duration_seconds",
                "Time from a call's creation to its end.",
                vec![
                    10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
                ],
            ),
            call_connected_duration: histogram(
                &r,
                "shopcall_call_connected_duration_seconds",
                "Time both participants of a call were connected at once.",
                vec![
                    1.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
                ],
            ),
            call_outcomes: counter_vec(
                &r,
                "shopcall_call_outcomes_total",
                "Calls ended, by outcome for merchant scoring: answered, declined, missed, \
                 cancelled.",
                "outcome",
            ),
            answer_latency: histogram(
                &r,
                "shopcall_answer_latency_seconds",
                "Time from a call's creation to the callee's answer.",
                vec![1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 120.0],
            ),
            customer_camera_used: counter(
                &r,
                "shopcall_customer_camera_used_total",
                "Ended calls in which the customer turned the camera on at least once.",
            ),
            customer_camera_seconds: register(
                &r,
                prometheus::Counter::new(
                    "shopcall_customer_camera_seconds_total",
                    "Time customers' cameras were on, summed over ended calls.",
                )
                .expect("constant metric name is valid"),
            ),
            camera_requests: counter(
                &r,
                "shopcall_camera_requests_total",
                "Requests by one participant that the other turn its camera on (RequestCamera).",
            ),
            video_pauses: counter_vec(
                &r,
                "shopcall_video_pauses_total",
                "Times video to a participant was paused (audio kept), by reason: weak_network \
                 when its downlink could not carry the lowest video layer.",
                "reason",
            ),
            layer_changes: counter(
                &r,
                "shopcall_layer_changes_total",
                "Changes of the video layer forwarded to a participant (simulcast up or down, \
                 or the layer video resumed on).",
            ),
            policy_refusals: counter_vec(
                &r,
                "shopcall_policy_refusals_total",
                "Requests and declared tracks the call policy refused, by operation.",
                "operation",
            ),
            audio_only_calls: counter(
                &r,
                "shopcall_calls_audio_only_total",
                "Calls created audio-only because the merchant was not eligible for video.",
            ),
            events_lagged: counter_vec(
                &r,
                "shopcall_events_lagged_total",
                "Events a slow subscriber missed (the metrics recorder or a WatchEvents stream).",
                "subscriber",
            ),
            unauthenticated: counter(
                &r,
                "shopcall_grpc_unauthenticated_total",
                "gRPC requests refused for a missing, malformed or wrong bearer token.",
            ),
            invalid_requests: counter_vec(
                &r,
                "shopcall_grpc_invalid_requests_total",
                "gRPC requests refused before decoding, by reason: unknown_field, \
                 string_too_long, malformed, too_large.",
                "reason",
            ),
            rate_limited: counter_vec(
                &r,
                "shopcall_grpc_rate_limited_total",
                "gRPC requests refused because their client address was over its rate limit, \
                 by operation.",
                "operation",
            ),
            draining: gauge(
                &r,
                "shopcall_draining",
                "1 while the daemon drains (refuses new calls; Drain RPC or SIGTERM), else 0.",
            ),
            insecure_public: gauge(
                &r,
                "shopcall_grpc_insecure_public",
                "1 when gRPC serves a non-loopback address without a token or mutual TLS \
                 (--insecure-allow-public-grpc), else 0.",
            ),
            registry: r,
        };
        for kind in MediaKind::ALL {
            for vec in [
                &m.forwarded_packets,
                &m.forwarded_bytes,
                &m.received_packets,
                &m.received_bytes,
            ] {
                vec.with_label_values(&[kind.as_str()]);
            }
        }
        for reason in DropReason::ALL {
            m.dropped_packets.with_label_values(&[reason.as_str()]);
        }
        for reason in EndReason::ALL {
            m.calls_ended.with_label_values(&[reason.as_str()]);
        }
        for outcome in Outcome::ALL {
            m.call_outcomes.with_label_values(&[outcome.as_str()]);
        }
        // The one reason today; a new PauseReason shows up once it happens.
        m.video_pauses
            .with_label_values(&[PauseReason::WeakNetwork.as_str()]);
        for operation in PolicyOperation::ALL {
            m.policy_refusals.with_label_values(&[operation.as_str()]);
        }
        for s in [Subscriber::Metrics, Subscriber::WatchEvents] {
            m.events_lagged.with_label_values(&[s.as_str()]);
        }
        for reason in InvalidRequest::ALL {
            m.invalid_requests.with_label_values(&[reason.as_str()]);
        }
        for operation in crate::grpc::rate_limit::Operation::ALL {
            m.rate_limited.with_label_values(&[operation.as_str()]);
        }
        let info = IntGaugeVec::new(
            Opts::new(
                "shopcall_build_info",
                "Always 1; the version label says which build.",
            ),
            &["version"],
        )
        .expect("constant metric name is valid");
        info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        register(&m.registry, info);
        m
    }

    /// Takes in one engine snapshot: gauges are set, counters advance to the snapshot's
    /// values (engine counters only grow, so the difference is never negative).
    pub fn update_engine(&self, e: &EngineMetrics) {
        set_gauge(&self.active_calls, e.active_calls);
        set_gauge(&self.active_participants, e.active_participants);
        set_gauge(&self.connected_participants, e.connected_participants);
        for kind in MediaKind::ALL {
            let label = [kind.as_str()];
            let fwd = e.forwarded.get(kind);
            let rcv = e.received.get(kind);
            advance(
                &self.forwarded_packets.with_label_values(&label),
                fwd.packets,
            );
            advance(&self.forwarded_bytes.with_label_values(&label), fwd.bytes);
            advance(
                &self.received_packets.with_label_values(&label),
                rcv.packets,
            );
            advance(&self.received_bytes.with_label_values(&label), rcv.bytes);
        }
        for (reason, n) in e.dropped.iter() {
            advance(
                &self.dropped_packets.with_label_values(&[reason.as_str()]),
                n,
            );
        }
        advance(&self.datagrams_received, e.datagrams_in);
        advance(&self.datagrams_sent, e.datagrams_out);
        advance(&self.ice_failures, e.ice_failures);
        advance(&self.dtls_failures, e.dtls_failures);
        advance(&self.path_moves, e.path_moves);
        advance(&self.keyframe_requests, e.keyframe_requests);
        advance(&self.calls_created, e.calls_created);
    }

    /// Takes in one event: call ends by reason and outcome, durations, camera use, answer
    /// and join latency, camera requests, video pauses and layer changes.
    pub fn observe_event(&self, event: &Event) {
        match event {
            Event::ParticipantConnected { join_latency, .. } => {
                self.join_latency.observe(join_latency.as_secs_f64());
            }
            Event::CallAnswered { answer_latency, .. } => {
                self.answer_latency.observe(answer_latency.as_secs_f64());
            }
            Event::CameraRequested { .. } => self.camera_requests.inc(),
            Event::VideoPaused { reason, .. } => {
                self.video_pauses
                    .with_label_values(&[reason.as_str()])
                    .inc();
            }
            Event::LayerChanged { .. } => self.layer_changes.inc(),
            Event::CallEnded { reason, record, .. } => {
                self.calls_ended.with_label_values(&[reason.as_str()]).inc();
                self.call_outcomes
                    .with_label_values(&[Outcome::of(*reason).as_str()])
                    .inc();
                self.call_duration.observe(record.duration.as_secs_f64());
                self.call_connected_duration
                    .observe(record.connected_duration.as_secs_f64());
                if record.customer_camera_used {
                    self.customer_camera_used.inc();
                }
                self.customer_camera_seconds
                    .inc_by(record.customer_camera_duration.as_secs_f64());
            }
            _ => {}
        }
    }

    /// Counts `n` refusals by the call policy for `operation`.
    pub fn count_policy_refusal(&self, operation: PolicyOperation, n: u64) {
        self.policy_refusals
            .with_label_values(&[operation.as_str()])
            .inc_by(n);
    }

    /// Counts a call created audio-only because of the merchant's standing.
    pub fn count_audio_only_call(&self) {
        self.audio_only_calls.inc();
    }

    /// Counts a request refused for its credentials.
    pub fn count_unauthenticated(&self) {
        self.unauthenticated.inc();
    }

    /// Counts a request refused before decoding.
    pub fn count_invalid_request(&self, reason: InvalidRequest) {
        self.invalid_requests
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// Counts a request refused for its client's rate limit.
    pub fn count_rate_limited(&self, operation: crate::grpc::rate_limit::Operation) {
        self.rate_limited
            .with_label_values(&[operation.as_str()])
            .inc();
    }

    /// Sets whether the daemon drains.
    pub fn set_draining(&self, draining: bool) {
        self.draining.set(i64::from(draining));
    }

    /// Sets whether gRPC serves a public address without authentication.
    pub fn set_insecure_public(&self, insecure: bool) {
        self.insecure_public.set(i64::from(insecure));
    }

    /// Counts events a subscriber missed because it fell behind.
    pub fn count_lagged(&self, subscriber: Subscriber, missed: u64) {
        self.events_lagged
            .with_label_values(&[subscriber.as_str()])
            .inc_by(missed);
    }

    /// Reads the engine's counters (if it answers in time) and renders every metric in the
    /// Prometheus text format.
    pub async fn scrape(&self, handle: &SfuHandle) -> String {
        let _one_at_a_time = self.scrape.lock().await;
        match tokio::time::timeout(ENGINE_READ_TIMEOUT, handle.metrics()).await {
            Ok(Ok(snapshot)) => self.update_engine(&snapshot),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "engine metrics unavailable; serving the last values")
            }
            Err(_) => tracing::warn!(
                timeout = ?ENGINE_READ_TIMEOUT,
                "engine did not answer the metrics read in time; serving the last values"
            ),
        }
        self.render()
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn set_gauge(g: &IntGauge, v: u64) {
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
}

/// Moves a counter up to `total`.
fn advance(c: &IntCounter, total: u64) {
    c.inc_by(total.saturating_sub(c.get()));
}

/// Feeds every event into `metrics` until the driver stops. Spawned once at start, before
/// any call can exist.
pub async fn record_events(mut events: broadcast::Receiver<Event>, metrics: Arc<Metrics>) {
    loop {
        match events.recv().await {
            Ok(event) => metrics.observe_event(&event),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "metrics recorder fell behind the event stream");
                metrics.count_lagged(Subscriber::Metrics, missed);
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until `stop` fires.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    handle: SfuHandle,
    serving: Arc<ServingState>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stop => return,
        };
        let (metrics, handle, serving) = (metrics.clone(), handle.clone(), serving.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let (metrics, handle, serving) = (metrics.clone(), handle.clone(), serving.clone());
                async move { Ok::<_, Infallible>(respond(req, &metrics, &handle, &serving).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "metrics connection ended with an error");
            }
        });
    }
}

/// Answers one HTTP request.
async fn respond(
    req: Request<Incoming>,
    metrics: &Metrics,
    handle: &SfuHandle,
    serving: &ServingState,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported\n");
    }
    match req.uri().path() {
        "/metrics" => {
            let body = metrics.scrape(handle).await;
            let mut res = Response::new(Full::new(Bytes::from(body)));
            res.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            res
        }
        "/healthz" if serving.is_draining() => {
            text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics or /healthz\n",
        ),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *res.status_mut() = status;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use sfu::{CallId, CallRecord, ParticipantId, Role};

    #[test]
    fn every_documented_metric_is_rendered() {
        let m = Metrics::new();
        let text = m.render();
        for name in [
            "shopcall_active_calls",
            "shopcall_active_participants",
            "shopcall_connected_participants",
            "shopcall_forwarded_packets_total{kind=\"audio\"}",
            "shopcall_forwarded_bytes_total{kind=\"video\"}",
            "shopcall_received_packets_total{kind=\"video\"}",
            "shopcall_received_bytes_total{kind=\"audio\"}",
            "shopcall_dropped_packets_total{reason=\"policy_denied\"}",
            "shopcall_datagrams_received_total",
            "shopcall_datagrams_sent_total",
            "shopcall_ice_failures_total",
            "shopcall_dtls_failures_total",
            "shopcall_path_moves_total",
            "shopcall_keyframe_requests_total",
            "shopcall_calls_created_total",
            "shopcall_calls_ended_total{reason=\"server_shutdown\"}",
            "shopcall_join_latency_seconds_bucket",
            "shopcall_call_duration_seconds_count",
            "shopcall_call_connected_duration_seconds_sum",
            "shopcall_events_lagged_total{subscriber=\"watch_events\"}",
            "shopcall_call_outcomes_total{outcome=\"answered\"}",
            "shopcall_call_outcomes_total{outcome=\"declined\"}",
            "shopcall_call_outcomes_total{outcome=\"missed\"}",
            "shopcall_call_outcomes_total{outcome=\"cancelled\"}",
            "shopcall_answer_latency_seconds_bucket",
            "shopcall_customer_camera_used_total",
            "shopcall_customer_camera_seconds_total",
            "shopcall_camera_requests_total",
            "shopcall_video_pauses_total{reason=\"weak_network\"}",
            "shopcall_layer_changes_total",
            "shopcall_policy_refusals_total{operation=\"set_camera\"}",
            "shopcall_policy_refusals_total{operation=\"request_camera\"}",
            "shopcall_policy_refusals_total{operation=\"join_track\"}",
            "shopcall_policy_refusals_total{operation=\"create_call\"}",
            "shopcall_calls_audio_only_total",
            "shopcall_grpc_unauthenticated_total",
            "shopcall_grpc_invalid_requests_total{reason=\"unknown_field\"}",
            "shopcall_grpc_invalid_requests_total{reason=\"string_too_long\"}",
            "shopcall_grpc_invalid_requests_total{reason=\"malformed\"}",
            "shopcall_grpc_invalid_requests_total{reason=\"too_large\"}",
            "shopcall_grpc_rate_limited_total{operation=\"create_call\"}",
            "shopcall_grpc_rate_limited_total{operation=\"join\"}",
            "shopcall_draining",
            "shopcall_grpc_insecure_public",
            "shopcall_build_info{version=",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        for reason in DropReason::ALL {
            assert!(text.contains(&format!("reason=\"{}\"", reason.as_str())));
        }
        assert!(text.contains("# TYPE shopcall_forwarded_packets_total counter"));
        assert!(text.contains("# TYPE shopcall_active_calls gauge"));
        assert!(text.contains("# TYPE shopcall_join_latency_seconds histogram"));
    }

    #[test]
    fn engine_counters_advance_by_difference_and_gauges_follow() {
        let m = Metrics::new();
        let mut e = EngineMetrics {
            active_calls: 3,
            datagrams_in: 10,
            ..Default::default()
        };
        e.forwarded.video.add(1200);
        e.dropped.add(DropReason::PolicyDenied);
        m.update_engine(&e);
        m.update_engine(&e);
        assert_eq!(m.datagrams_received.get(), 10);
        assert_eq!(m.forwarded_bytes.with_label_values(&["video"]).get(), 1200);
        assert_eq!(
            m.dropped_packets
                .with_label_values(&["policy_denied"])
                .get(),
            1
        );
        e.active_calls = 1;
        e.datagrams_in = 25;
        m.update_engine(&e);
        assert_eq!(m.active_calls.get(), 1);
        assert_eq!(m.datagrams_received.get(), 25);
    }

    #[test]
    fn events_feed_end_reasons_and_histograms() {
        let m = Metrics::new();
        let call = CallId::from_raw(1);
        m.observe_event(&Event::ParticipantConnected {
            call,
            participant: ParticipantId::from_raw(2),
            join_latency: Duration::from_millis(120),
        });
        m.observe_event(&Event::CallEnded {
            call,
            reason: EndReason::ServerShutdown,
            record: Box::new(CallRecord {
                call,
                merchant_ref: None,
                customer_ref: None,
                initiator: Role::Merchant,
                profile: "rear-camera-off".into(),
                end_reason: EndReason::ServerShutdown,
                ring_duration: Duration::from_secs(2),
                answer_latency: Some(Duration::from_secs(2)),
                duration: Duration::from_secs(42),
                connected_duration: Duration::from_secs(40),
                customer_camera_used: false,
                customer_camera_duration: Duration::ZERO,
                merchant_camera_duration: Duration::ZERO,
                to_customer: Default::default(),
                to_merchant: Default::default(),
                participants: Vec::new(),
                recordings: Vec::new(),
            }),
        });
        assert_eq!(m.join_latency.get_sample_count(), 1);
        assert_eq!(m.call_duration.get_sample_count(), 1);
        assert_eq!(
            m.calls_ended.with_label_values(&["server_shutdown"]).get(),
            1
        );
        m.count_lagged(Subscriber::WatchEvents, 7);
        assert_eq!(
            m.events_lagged.with_label_values(&["watch_events"]).get(),
            7
        );
        // Shutdown ends an answered call: its outcome is answered.
        assert_eq!(m.call_outcomes.with_label_values(&["answered"]).get(), 1);
    }

    #[test]
    fn outcomes_follow_was_answered() {
        for reason in EndReason::ALL {
            let outcome = Outcome::of(reason);
            assert_eq!(
                outcome == Outcome::Answered,
                reason.was_answered(),
                "{reason:?}"
            );
            if outcome != Outcome::Answered {
                assert_eq!(outcome.as_str(), reason.as_str());
            }
        }
    }

    #[test]
    fn weak_network_events_are_counted_without_call_labels() {
        let m = Metrics::new();
        let call = CallId::from_raw(1);
        let participant = ParticipantId::from_raw(2);
        m.observe_event(&Event::VideoPaused {
            call,
            participant,
            reason: PauseReason::WeakNetwork,
        });
        m.observe_event(&Event::VideoResumed { call, participant });
        m.observe_event(&Event::LayerChanged {
            call,
            participant,
            rid: Some("q".into()),
            bitrate_bps: 150_000,
        });
        m.observe_event(&Event::LayerChanged {
            call,
            participant,
            rid: Some("h".into()),
            bitrate_bps: 500_000,
        });
        assert_eq!(m.video_pauses.with_label_values(&["weak_network"]).get(), 1);
        assert_eq!(m.layer_changes.get(), 2);
        let text = m.render();
        assert!(text.contains("shopcall_video_pauses_total{reason=\"weak_network\"} 1"));
        assert!(text.contains("shopcall_layer_changes_total 2"));
        assert!(!text.contains("0000000000000001"), "no per-call label");
    }

    #[test]
    fn policy_events_and_refusals_are_counted() {
        let m = Metrics::new();
        let call = CallId::from_raw(1);
        m.observe_event(&Event::CallAnswered {
            call,
            answer_latency: Duration::from_secs(3),
        });
        m.observe_event(&Event::CameraRequested {
            call,
            by: Role::Merchant,
            target: Role::Customer,
        });
        m.observe_event(&Event::CallEnded {
            call,
            reason: EndReason::Missed,
            record: Box::new(CallRecord {
                call,
                merchant_ref: None,
                customer_ref: None,
                initiator: Role::Customer,
                profile: "rear-camera-off".into(),
                end_reason: EndReason::Missed,
                ring_duration: Duration::from_secs(45),
                answer_latency: None,
                duration: Duration::from_secs(45),
                connected_duration: Duration::ZERO,
                customer_camera_used: true,
                customer_camera_duration: Duration::from_millis(1500),
                merchant_camera_duration: Duration::ZERO,
                to_customer: Default::default(),
                to_merchant: Default::default(),
                participants: Vec::new(),
                recordings: Vec::new(),
            }),
        });
        m.count_policy_refusal(PolicyOperation::SetCamera, 1);
        m.count_policy_refusal(PolicyOperation::JoinTrack, 2);
        m.count_audio_only_call();
        assert_eq!(m.answer_latency.get_sample_count(), 1);
        assert_eq!(m.camera_requests.get(), 1);
        assert_eq!(m.call_outcomes.with_label_values(&["missed"]).get(), 1);
        assert_eq!(m.call_outcomes.with_label_values(&["answered"]).get(), 0);
        assert_eq!(m.customer_camera_used.get(), 1);
        assert!((m.customer_camera_seconds.get() - 1.5).abs() < 1e-9);
        assert_eq!(
            m.policy_refusals.with_label_values(&["set_camera"]).get(),
            1
        );
        assert_eq!(
            m.policy_refusals.with_label_values(&["join_track"]).get(),
            2
        );
        assert_eq!(m.audio_only_calls.get(), 1);
    }
}
