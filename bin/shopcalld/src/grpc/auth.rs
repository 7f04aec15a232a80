//! Auth: the bearer-token check on every gRPC request.
//!
//! A [`tower_layer::Layer`] in front of every service. A request must carry
//! `authorization: Bearer <token>` (the scheme in any case, one space) with the configured
//! token; otherwise it is refused with UNAUTHENTICATED before any service sees it, and
//! counted in `shopcall_grpc_unauthenticated_total`. The comparison takes the same time
//! whatever the presented token's bytes ([`subtle::ConstantTimeEq`]); only a length
//! mismatch is found without looking at them.
//!
//! `grpc.health.v1.Health` stays open: orchestrators' gRPC probes (the kubelet's among them)
//! cannot send a token, and health reveals nothing but serving or not. Server reflection is
//! behind the token like the API. Mutual TLS, when configured, is enforced by the TLS
//! handshake itself for every service, health included (see `config/security.rs`).

use std::sync::Arc;
use std::task::{Context, Poll};

use subtle::ConstantTimeEq;
use tonic::Status;

use super::status::ApiError;
use crate::config::AuthToken;
use crate::metrics::Metrics;

/// Path prefix of the services that need no token.
const OPEN_PREFIX: &str = "/grpc.health.v1.Health/";

/// Why a request was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No `authorization` header.
    #[error("missing credentials: send the header `authorization: Bearer <token>`")]
    Missing,
    /// An `authorization` header that is not `Bearer <token>`.
    #[error("malformed credentials: the authorization header must be `Bearer <token>`")]
    Malformed,
    /// A token that is not the daemon's.
    #[error("invalid credentials: the bearer token is not accepted")]
    Invalid,
}

/// Checks an `authorization` header value against the token.
pub fn check(header: Option<&[u8]>, token: &AuthToken) -> Result<(), AuthError> {
    let value = header.ok_or(AuthError::Missing)?;
    let (scheme, presented) = match value.iter().position(|b| *b == b' ') {
        Some(i) => (&value[..i], &value[i + 1..]),
        None => return Err(AuthError::Malformed),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") || presented.is_empty() {
        return Err(AuthError::Malformed);
    }
    if bool::from(presented.ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err(AuthError::Invalid)
    }
}

/// The layer that requires the bearer token.
#[derive(Clone)]
pub struct RequireToken {
    /// `None`: no token configured, every request passes.
    token: Option<Arc<AuthToken>>,
    metrics: Arc<Metrics>,
}

impl RequireToken {
    /// Requires `token` (if any); refusals are counted in `metrics`.
    pub fn new(token: Option<AuthToken>, metrics: Arc<Metrics>) -> RequireToken {
        RequireToken {
            token: token.map(Arc::new),
            metrics,
        }
    }
}

impl<S> tower_layer::Layer<S> for RequireToken {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Authenticated<S> {
        Authenticated {
            inner,
            require: self.clone(),
        }
    }
}

/// A service behind the token check.
#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    require: RequireToken,
}

type AuthFuture<F, E> =
    futures::future::Either<F, std::future::Ready<Result<http::Response<tonic::body::Body>, E>>>;

impl<S, B> tower_service::Service<http::Request<B>> for Authenticated<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = AuthFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let Some(token) = &self.require.token else {
            return futures::future::Either::Left(self.inner.call(request));
        };
        if request.uri().path().starts_with(OPEN_PREFIX) {
            return futures::future::Either::Left(self.inner.call(request));
        }
        let header = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        match check(header, token) {
            Ok(()) => futures::future::Either::Left(self.inner.call(request)),
            Err(err) => {
                self.require.metrics.count_unauthenticated();
                tracing::debug!(path = request.uri().path(), error = %err, "request not authenticated");
                let response = Status::from(ApiError::from(err)).into_http();
                futures::future::Either::Right(std::future::ready(Ok(response)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> AuthToken {
        AuthToken::parse("s3cret-token-0123456789").unwrap()
    }

    #[test]
    fn the_header_must_be_bearer_with_the_token() {
        let t = token();
        assert_eq!(check(Some(b"Bearer s3cret-token-0123456789"), &t), Ok(()));
        assert_eq!(check(Some(b"bearer s3cret-token-0123456789"), &t), Ok(()));
        assert_eq!(check(None, &t), Err(AuthError::Missing));
        assert_eq!(
            check(Some(b"s3cret-token-0123456789"), &t),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            check(Some(b"Basic s3cret-token-0123456789"), &t),
            Err(AuthError::Malformed)
        );
        assert_eq!(check(Some(b"Bearer "), &t), Err(AuthError::Malformed));
        assert_eq!(
            check(Some(b"Bearer s3cret-token-0123456788"), &t),
            Err(AuthError::Invalid)
        );
        assert_eq!(check(Some(b"Bearer s3cret"), &t), Err(AuthError::Invalid));
        assert_eq!(
            check(Some(b"Bearer s3cret-token-0123456789 "), &t),
            Err(AuthError::Invalid)
        );
    }
}
