//! gRPC: the `shopcall.v1.CallService` and `shopcall.v1.NodeService` APIs, `grpc.health.v1`
//! and server reflection on one tonic server.
//!
//! * `service.rs` implements `CallService` on an `SfuHandle`;
//! * `node_service.rs` implements `NodeService` (Drain, NodeStats);
//! * `convert.rs` checks request fields and converts `sfu` values to messages;
//! * `status.rs` is the one error → `tonic::Status` table;
//! * the front door, in front of every service, outermost first: [`InFlight`] counts the
//!   request, `auth.rs` checks the bearer token (when one is configured), `guard.rs` checks
//!   the request message on the wire (unknown fields, string caps, size); `rate_limit.rs`
//!   holds the per-client buckets CreateCall and Join draw from. TLS (and mutual TLS) and
//!   the request timeout are tonic's own ([`ServeOptions`]).
//!
//! Every request is counted by [`InFlight`] from its arrival until its response body is
//! finished (or dropped). The shutdown drains with that count rather than with hyper's
//! graceful connection shutdown alone, which can wait forever on a client connection that
//! never completes its HTTP/2 handshake (hyperium/hyper#4170).

pub mod auth;
pub mod convert;
pub mod guard;
pub mod node_service;
pub mod rate_limit;
pub mod service;
pub mod status;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;

use shopcall_proto::v1::call_service_server::CallServiceServer;
use shopcall_proto::v1::node_service_server::NodeServiceServer;
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::server::HealthReporter;

pub use node_service::NodeApi;
pub use service::CallApi;

use crate::config::AuthToken;
use crate::metrics::Metrics;

/// Largest request message accepted (SDP offers are a few KiB; 256 KiB leaves headroom).
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// Interval of HTTP/2 keepalive pings, so a dead WatchEvents client is noticed.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// Time a keepalive ping may go unanswered before the connection is closed.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The full name of the call service, as health checks and reflection know it.
pub const CALL_SERVICE_NAME: &str = <CallServiceServer<CallApi> as NamedService>::NAME;

/// The full name of the node service.
pub const NODE_SERVICE_NAME: &str = <NodeServiceServer<NodeApi> as NamedService>::NAME;

/// How the gRPC server guards its door.
pub struct ServeOptions {
    /// TLS (mutual when it has a client CA); `None` serves plaintext HTTP/2.
    pub tls: Option<tonic::transport::ServerTlsConfig>,
    /// The bearer token every request but health must carry; `None`: no token.
    pub auth_token: Option<AuthToken>,
    /// The longest a request may take (a shorter `grpc-timeout` from the client wins); the
    /// request then fails with CANCELLED (tonic's answer). Streams are not cut: the limit
    /// covers the time to the response headers.
    pub request_timeout: Duration,
    /// Where refusals are counted.
    pub metrics: Arc<Metrics>,
}

/// Serves the call and node services, health and reflection on `listener` until `shutdown`
/// resolves, then finishes in-flight requests and returns. Every request is counted in
/// `in_flight`.
///
/// `health` must come from the same `tonic_health::server::health_reporter()` call as
/// `health_service`.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    listener: TcpListener,
    api: CallApi,
    node: NodeApi,
    options: ServeOptions,
    in_flight: InFlight,
    health_service: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    health: HealthReporter,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(shopcall_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the embedded descriptor sets are valid: they were generated at build time");

    for service in [CALL_SERVICE_NAME, NODE_SERVICE_NAME] {
        health
            .set_service_status(service, tonic_health::ServingStatus::Serving)
            .await;
    }

    let calls = CallServiceServer::new(api).max_decoding_message_size(MAX_REQUEST_BYTES);
    let node = NodeServiceServer::new(node).max_decoding_message_size(MAX_REQUEST_BYTES);
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut builder = Server::builder();
    if let Some(tls) = options.tls {
        builder = builder.tls_config(tls)?;
    }
    let schema = Arc::new(guard::Schema::api());
    builder
        .timeout(options.request_timeout)
        .layer(in_flight)
        .layer(auth::RequireToken::new(
            options.auth_token,
            options.metrics.clone(),
        ))
        .layer(guard::CheckRequests::new(
            schema,
            MAX_REQUEST_BYTES,
            options.metrics,
        ))
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(calls)
        .add_service(node)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// The number of gRPC requests in flight: counted from the call until the response body is
/// finished or dropped (so an open WatchEvents stream counts). A [`tower_layer::Layer`] for
/// the tonic server.
#[derive(Debug, Clone, Default)]
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// A counter at zero.
    pub fn new() -> InFlight {
        InFlight::default()
    }

    /// Requests in flight now.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }

    fn guard(&self) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.0.clone())
    }
}

impl<S> tower_layer::Layer<S> for InFlight {
    type Service = Tracked<S>;

    fn layer(&self, inner: S) -> Tracked<S> {
        Tracked {
            inner,
            in_flight: self.clone(),
        }
    }
}

/// One request in flight; dropping it counts the request as done.
#[derive(Debug)]
struct InFlightGuard(Arc<AtomicUsize>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A service whose requests are counted in an [`InFlight`].
#[derive(Debug, Clone)]
pub struct Tracked<S> {
    inner: S,
    in_flight: InFlight,
}

/// The future of a [`Tracked`] service.
type TrackedFuture<E> =
    Pin<Box<dyn Future<Output = Result<http::Response<tonic::body::Body>, E>> + Send>>;

impl<S, B> tower_service::Service<http::Request<B>> for Tracked<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let guard = self.in_flight.guard();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| {
                tonic::body::Body::new(TrackedBody {
                    body,
                    _guard: guard,
                })
            }))
        })
    }
}

/// A response body that holds its request's [`InFlightGuard`] until it is done.
struct TrackedBody {
    body: tonic::body::Body,
    _guard: InFlightGuard,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, tonic::Status>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tower_layer::Layer;
    use tower_service::Service;

    /// Answers every request with a one-chunk body.
    struct Echo;

    impl Service<http::Request<()>> for Echo {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _request: http::Request<()>) -> Self::Future {
            let body = http_body_util::Full::new(Bytes::from_static(b"hello"));
            std::future::ready(Ok(http::Response::new(tonic::body::Body::new(body))))
        }
    }

    #[tokio::test]
    async fn a_request_counts_until_its_response_body_is_done() {
        let in_flight = InFlight::new();
        let mut service = in_flight.layer(Echo);
        let first = service.call(http::Request::new(())).await.unwrap();
        let second = service.call(http::Request::new(())).await.unwrap();
        assert_eq!(in_flight.count(), 2);
        let bytes = first.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"hello");
        assert_eq!(in_flight.count(), 1);
        drop(second);
        assert_eq!(in_flight.count(), 0);
    }
}
