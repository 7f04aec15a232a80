//! Status: the one table from errors to gRPC status codes.
//!
//! This is the only place in shopcall that builds a [`tonic::Status`]. Every failure of the
//! API is an [`ApiError`]: an [`sfu::Error`] from the SFU, a [`RequestError`] from checking
//! the request's fields, or one of the daemon's own refusals before a service runs: missing
//! or wrong credentials ([`AuthError`]), a malformed or oversized message on the wire
//! ([`WireError`]), a client over its rate limit ([`RateLimited`]). The message is the
//! error's own text, which says what is wrong (and for a bad SDP offer, which part).
//!
//! | error                                   | code                |
//! |-----------------------------------------|---------------------|
//! | bad request field ([`RequestError`]: id, enum, empty, duplicate, out of range) | INVALID_ARGUMENT |
//! | [`WireError`]: unknown field number, string over its cap, not UTF-8, malformed | INVALID_ARGUMENT |
//! | [`WireError::TooLarge`]: a message over 256 KiB | OUT_OF_RANGE |
//! | [`AuthError`]: no, malformed or wrong bearer token | UNAUTHENTICATED |
//! | [`RateLimited`]: CreateCall or Join over the client's rate limit | RESOURCE_EXHAUSTED |
//! | `InvalidOffer`, `InvalidCandidate`      | INVALID_ARGUMENT    |
//! | `InvalidProfile`, `InvalidArgument`     | INVALID_ARGUMENT    |
//! | `CallNotFound`, `ParticipantNotFound`   | NOT_FOUND           |
//! | `CallFull`, `RoleTaken`, `CallEnded`    | FAILED_PRECONDITION |
//! | `WrongState` (answering a call that is not ringing, the initiator answering) | FAILED_PRECONDITION |
//! | `PolicyRefused` (the policy's reason), `NotEligible` (the eligibility reason) | PERMISSION_DENIED |
//! | `RecordingNotAllowed`, `ConsentMissing` (names who), `RecordingNotReady`, `AlreadyRecording`, `NotRecording` | FAILED_PRECONDITION |
//! | `RecordingUnavailable` (no recording_dir, or it cannot be written: says which and where) | FAILED_PRECONDITION |
//! | `AtCapacity`                            | RESOURCE_EXHAUSTED  |
//! | `ShuttingDown`, `Stopped`               | UNAVAILABLE         |
//! | `Internal` (a bug)                      | INTERNAL            |

use tonic::{Code, Status};

use super::auth::AuthError;
use super::convert::RequestError;
use super::guard::WireError;
use super::rate_limit::RateLimited;

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The SFU refused or failed the request.
    #[error(transparent)]
    Sfu(#[from] sfu::Error),
    /// A request field cannot be used.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The request carries no valid credentials.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The request message is not acceptable on the wire.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The client sent too many requests of this kind.
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
}

/// The gRPC code of an SFU error.
pub fn sfu_code(err: &sfu::Error) -> Code {
    use sfu::Error as E;
    match err {
        E::CallNotFound(_) | E::ParticipantNotFound(_) => Code::NotFound,
        E::InvalidOffer(_)
        | E::InvalidCandidate(_)
        | E::InvalidProfile(_)
        | E::InvalidArgument(_) => Code::InvalidArgument,
        E::CallFull(_) | E::RoleTaken { .. } | E::CallEnded(_) | E::WrongState { .. } => {
            Code::FailedPrecondition
        }
        E::PolicyRefused(_) | E::NotEligible(_) => Code::PermissionDenied,
        // Recording preconditions: the profile, consent, the call's state, the server's
        // recording directory.
        E::RecordingNotAllowed(_)
        | E::ConsentMissing { .. }
        | E::RecordingNotReady { .. }
        | E::AlreadyRecording(_)
        | E::NotRecording(_)
        | E::RecordingUnavailable(_) => Code::FailedPrecondition,
        E::AtCapacity { .. } => Code::ResourceExhausted,
        E::ShuttingDown | E::Stopped => Code::Unavailable,
        E::Internal { .. } => Code::Internal,
        // A variant newer than this table: treat it as a bug until it gets its own row.
        _ => Code::Internal,
    }
}

/// The gRPC code of an API error.
pub fn code(err: &ApiError) -> Code {
    match err {
        ApiError::Sfu(e) => sfu_code(e),
        ApiError::Request(_) => Code::InvalidArgument,
        ApiError::Auth(_) => Code::Unauthenticated,
        ApiError::Wire(WireError::TooLarge { .. }) => Code::OutOfRange,
        ApiError::Wire(_) => Code::InvalidArgument,
        ApiError::RateLimited(_) => Code::ResourceExhausted,
    }
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Status {
        let code = code(&err);
        if code == Code::Internal {
            tracing::error!(error = %err, "internal error");
        } else {
            tracing::debug!(error = %err, ?code, "request refused");
        }
        Status::new(code, err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sfu::policy::{Ineligible, ProfileError, ProfileProblem, Reason};
    use sfu::recording::RecordingDirError;
    use sfu::{CallId, LifecycleError, MediaKind, OfferError, ParticipantId, Role};

    fn status(err: impl Into<ApiError>) -> Status {
        Status::from(err.into())
    }

    #[test]
    fn every_sfu_error_has_its_code_and_says_what_is_wrong() {
        let call = CallId::from_raw(0x1234);
        let participant = ParticipantId::from_raw(0x5678);
        let cases: Vec<(sfu::Error, Code, &str)> = vec![
            (
                sfu::Error::CallNotFound(call),
                Code::NotFound,
                "call 0000000000001234 not found",
            ),
            (
                sfu::Error::ParticipantNotFound(participant),
                Code::NotFound,
                "participant 0000000000005678 not found",
            ),
            (
                sfu::Error::CallEnded(call),
                Code::FailedPrecondition,
                "has ended",
            ),
            (
                sfu::Error::CallFull(call),
                Code::FailedPrecondition,
                "already has two participants",
            ),
            (
                sfu::Error::RoleTaken {
                    call,
                    role: Role::Customer,
                },
                Code::FailedPrecondition,
                "already has a customer",
            ),
            (
                sfu::Error::InvalidOffer(OfferError::NoRtcpMux { mid: "0".into() }),
                Code::InvalidArgument,
                "invalid SDP offer: m-line \"0\" lacks a=rtcp-mux",
            ),
            (
                sfu::Error::InvalidOffer(OfferError::TooManyMLines {
                    kind: MediaKind::Audio,
                    count: 3,
                    max: 1,
                }),
                Code::InvalidArgument,
                "3 audio m-lines",
            ),
            (
                sfu::Error::InvalidCandidate("longer than 1024 bytes".into()),
                Code::InvalidArgument,
                "invalid ICE candidate: longer than 1024 bytes",
            ),
            (
                sfu::Error::AtCapacity { max_calls: 2 },
                Code::ResourceExhausted,
                "at capacity: 2 concurrent calls",
            ),
            (
                sfu::Error::InvalidProfile(ProfileError::UnknownProfile {
                    name: "nope".into(),
                    known: vec!["audio-only".into()],
                }),
                Code::InvalidArgument,
                "invalid profile: unknown profile \"nope\"",
            ),
            (
                sfu::Error::InvalidArgument("merchant_ref is longer than 256 bytes".into()),
                Code::InvalidArgument,
                "merchant_ref is longer than 256 bytes",
            ),
            (
                sfu::Error::WrongState {
                    call,
                    error: LifecycleError::NotRinging { state: "connected" },
                },
                Code::FailedPrecondition,
                "the call is connected, not ringing",
            ),
            (
                sfu::Error::PolicyRefused(Reason::NotOwnCamera {
                    actor: Role::Merchant,
                    target: Role::Customer,
                }),
                Code::PermissionDenied,
                "refused by policy: the merchant may not switch the customer's camera",
            ),
            (
                sfu::Error::NotEligible(Ineligible::NotOptedIn),
                Code::PermissionDenied,
                "not eligible for a video call: merchant has not opted in",
            ),
            (
                sfu::Error::NotEligible(Ineligible::RatingBelow {
                    rating: 4.1,
                    min: 4.5,
                }),
                Code::PermissionDenied,
                "rating 4.1 below 4.5",
            ),
            (
                sfu::Error::PolicyRefused(Reason::CameraNotAllowed {
                    role: Role::Customer,
                }),
                Code::PermissionDenied,
                "the call's profile allows no camera for the customer",
            ),
            (
                sfu::Error::InvalidProfile(ProfileError::Invalid {
                    profile: "rear-camera-off".into(),
                    per_call_override: true,
                    problem: ProfileProblem::CustomerCameraOnAtJoin,
                }),
                Code::InvalidArgument,
                "profile \"rear-camera-off\" with the call's overrides: customer.camera_at_join \
                 is on",
            ),
            (
                sfu::Error::WrongState {
                    call,
                    error: LifecycleError::NotCallee {
                        by: Role::Merchant,
                        callee: Role::Customer,
                    },
                },
                Code::FailedPrecondition,
                "only the callee (customer) can answer or decline",
            ),
            (
                sfu::Error::RecordingNotAllowed(call),
                Code::FailedPrecondition,
                "may not be recorded: its profile does not allow recording",
            ),
            (
                sfu::Error::ConsentMissing {
                    call,
                    role: Role::Customer,
                },
                Code::FailedPrecondition,
                "the customer has not consented to recording",
            ),
            (
                sfu::Error::RecordingNotReady {
                    call,
                    absent: Role::Merchant,
                },
                Code::FailedPrecondition,
                "cannot be recorded yet: the merchant has not joined",
            ),
            (
                sfu::Error::AlreadyRecording(call),
                Code::FailedPrecondition,
                "is already being recorded",
            ),
            (
                sfu::Error::NotRecording(call),
                Code::FailedPrecondition,
                "is not being recorded",
            ),
            (
                sfu::Error::RecordingUnavailable(RecordingDirError::NotConfigured),
                Code::FailedPrecondition,
                "recording unavailable: no recording directory is configured",
            ),
            (
                sfu::Error::RecordingUnavailable(RecordingDirError::NotWritable {
                    path: "/rec".into(),
                    kind: std::io::ErrorKind::ReadOnlyFilesystem,
                }),
                Code::FailedPrecondition,
                "recording directory /rec is not writable: read-only filesystem",
            ),
            (sfu::Error::ShuttingDown, Code::Unavailable, "shutting down"),
            (sfu::Error::Stopped, Code::Unavailable, "stopped"),
            (
                sfu::Error::Internal {
                    operation: "accept_offer",
                    message: "boom".into(),
                },
                Code::Internal,
                "internal error in accept_offer: boom",
            ),
        ];
        for (err, want_code, want_message) in cases {
            let debug = format!("{err:?}");
            let s = status(err);
            assert_eq!(s.code(), want_code, "{debug}");
            assert!(
                s.message().contains(want_message),
                "{debug}: message {:?} lacks {want_message:?}",
                s.message()
            );
        }
    }

    #[test]
    fn the_daemons_own_refusals_have_their_codes() {
        use super::super::rate_limit::Operation;
        let cases: Vec<(ApiError, Code, &str)> = vec![
            (
                AuthError::Missing.into(),
                Code::Unauthenticated,
                "missing credentials",
            ),
            (
                AuthError::Malformed.into(),
                Code::Unauthenticated,
                "must be `Bearer <token>`",
            ),
            (
                AuthError::Invalid.into(),
                Code::Unauthenticated,
                "invalid credentials",
            ),
            (
                WireError::UnknownField {
                    message: "shopcall.v1.CreateCallRequest".into(),
                    number: 99,
                }
                .into(),
                Code::InvalidArgument,
                "unknown field number 99 in shopcall.v1.CreateCallRequest",
            ),
            (
                WireError::StringTooLong {
                    field: "JoinRequest.sdp_offer".into(),
                    len: 70_000,
                    max: 65_536,
                }
                .into(),
                Code::InvalidArgument,
                "JoinRequest.sdp_offer is 70000 bytes long",
            ),
            (
                WireError::NotUtf8 {
                    field: "GetCallRequest.call_id".into(),
                }
                .into(),
                Code::InvalidArgument,
                "not valid UTF-8",
            ),
            (
                WireError::Malformed("truncated varint".into()).into(),
                Code::InvalidArgument,
                "malformed request message: truncated varint",
            ),
            (
                WireError::TooLarge { limit: 262_144 }.into(),
                Code::OutOfRange,
                "larger than the 262144-byte limit",
            ),
            (
                RateLimited {
                    operation: Operation::Join,
                    client: "127.0.0.1".parse().unwrap(),
                    per_second: 1,
                    burst: 2,
                    retry_after: std::time::Duration::from_millis(250),
                }
                .into(),
                Code::ResourceExhausted,
                "more than 1 Join requests per second (burst 2) from 127.0.0.1; retry in 250 ms",
            ),
        ];
        for (err, want_code, want_message) in cases {
            let debug = format!("{err:?}");
            let s = Status::from(err);
            assert_eq!(s.code(), want_code, "{debug}");
            assert!(
                s.message().contains(want_message),
                "{debug}: message {:?} lacks {want_message:?}",
                s.message()
            );
        }
    }

    #[test]
    fn request_errors_are_invalid_argument_naming_the_field() {
        let source = "nope".parse::<CallId>().unwrap_err();
        let cases: Vec<(RequestError, &str)> = vec![
            (
                RequestError::Missing { field: "call_id" },
                "call_id is required",
            ),
            (
                RequestError::InvalidId {
                    field: "call_id",
                    source,
                },
                "call_id: invalid call id",
            ),
            (
                RequestError::InvalidEnum {
                    field: "role".into(),
                    expected: "ROLE_MERCHANT or ROLE_CUSTOMER",
                    got: "ROLE_UNSPECIFIED".into(),
                },
                "role must be ROLE_MERCHANT or ROLE_CUSTOMER, got ROLE_UNSPECIFIED",
            ),
            (
                RequestError::MissingWhen {
                    field: "lens",
                    when: "on is true",
                },
                "lens is required when on is true",
            ),
            (
                RequestError::Duplicate {
                    field: "tracks".into(),
                    item: "mid \"1\"".into(),
                },
                "tracks lists mid \"1\" twice",
            ),
            (
                RequestError::DurationOutOfRange {
                    field: "limits.ring_timeout",
                    got: "-1s 0ns".into(),
                },
                "limits.ring_timeout must be more than 0 s and at most 86400 s, got -1s 0ns",
            ),
            (
                RequestError::TooLong {
                    field: "merchant_ref",
                    max: 256,
                },
                "merchant_ref is longer than 256 bytes",
            ),
        ];
        for (err, want) in cases {
            let debug = format!("{err:?}");
            let s = status(err);
            assert_eq!(s.code(), Code::InvalidArgument, "{debug}");
            assert!(
                s.message().starts_with(want),
                "{debug}: message {:?} lacks {want:?}",
                s.message()
            );
        }
    }
}
