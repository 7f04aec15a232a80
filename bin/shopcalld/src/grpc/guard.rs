//! Guard: every request message is checked on the wire before tonic decodes it.
//!
//! prost skips fields it does not know and accepts any string length up to the message size,
//! so neither would ever reach the service as an error. This [`tower_layer::Layer`] reads the
//! request body of each `shopcall.v1` RPC (every one takes a single request message, at most
//! [`MAX_REQUEST_BYTES`](super::MAX_REQUEST_BYTES)), walks the protobuf wire format against the
//! API's own descriptors (the [`FILE_DESCRIPTOR_SET`](shopcall_proto::FILE_DESCRIPTOR_SET)
//! compiled into the proto crate), and refuses, with INVALID_ARGUMENT:
//!
//! * a field number the message does not define (a client built from another schema, or a
//!   probe), naming the message and the number;
//! * a string longer than its cap ([`string_cap`]: 64 KiB for an SDP offer, 4 KiB for any
//!   other string; fields with their own tighter rule, ids, refs and profile names, keep
//!   their specific message from `convert.rs`), or one that is not UTF-8;
//! * a wire type that does not fit the field, a truncated varint or length, or nesting
//!   deeper than [`MAX_DEPTH`]: malformed input that prost would otherwise report as
//!   INTERNAL.
//!
//! A body over the size limit is OUT_OF_RANGE, as gRPC itself answers. Non-canonical but
//! valid encodings (a default value written out, an unpacked repeated scalar, a field sent
//! twice) pass: the check is by field number and type, not by comparing lengths.
//!
//! Other services (health, reflection, whose streams must not be buffered) pass untouched.
//! The walk costs one pass over at most 256 KiB and no allocation but the buffered body.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Full, Limited};
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use tonic::Status;

use super::status::ApiError;
use crate::metrics::{InvalidRequest, Metrics};

/// Deepest message nesting accepted (the API nests at most four levels).
pub const MAX_DEPTH: usize = 32;
/// Longest SDP offer accepted (browsers' offers are a few KiB).
pub const MAX_SDP_BYTES: usize = 64 * 1024;
/// Longest value of any other string field.
pub const MAX_STRING_BYTES: usize = 4 * 1024;

/// Why a request message was refused before decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// A field number the message does not define.
    #[error(
        "unknown field number {number} in {message}: this daemon's API does not define it \
         (built from another version of shopcall.proto?)"
    )]
    UnknownField {
        /// The message's full name.
        message: String,
        /// The field number.
        number: u32,
    },
    /// A string over its cap.
    #[error("{field} is {len} bytes long; at most {max} are accepted")]
    StringTooLong {
        /// `Message.field`.
        field: String,
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// A string that is not UTF-8.
    #[error("{field} is not valid UTF-8")]
    NotUtf8 {
        /// `Message.field`.
        field: String,
    },
    /// The bytes are not a well-formed message of the expected type.
    #[error("malformed request message: {0}")]
    Malformed(String),
    /// The body is larger than the request limit.
    #[error("request larger than the {limit}-byte limit")]
    TooLarge {
        /// The limit, in bytes of message.
        limit: usize,
    },
}

impl WireError {
    /// The metrics label of this refusal.
    pub fn kind(&self) -> InvalidRequest {
        match self {
            WireError::UnknownField { .. } => InvalidRequest::UnknownField,
            WireError::StringTooLong { .. } => InvalidRequest::StringTooLong,
            WireError::NotUtf8 { .. } | WireError::Malformed(_) => InvalidRequest::Malformed,
            WireError::TooLarge { .. } => InvalidRequest::TooLarge,
        }
    }
}

/// The cap of a string field, by name.
pub fn string_cap(field: &str) -> usize {
    match field {
        "sdp_offer" => MAX_SDP_BYTES,
        _ => MAX_STRING_BYTES,
    }
}

/// What a field holds, as far as the walk cares.
#[derive(Debug, Clone)]
enum Kind {
    /// A UTF-8 string with a cap.
    Str(usize),
    /// Bytes with a cap.
    Bytes(usize),
    /// A nested message (its full name, without the leading dot).
    Message(String),
    /// A scalar of this wire type (0 varint, 1 fixed64, 5 fixed32); also packed (2) when
    /// repeated.
    Scalar { wire_type: u8, repeated: bool },
}

#[derive(Debug, Clone)]
struct Field {
    /// `Message.field`, for messages.
    path: String,
    kind: Kind,
}

#[derive(Debug, Default)]
struct MessageSchema {
    fields: HashMap<u32, Field>,
}

/// The request types of the API's RPCs and the shape of every message, from the descriptors.
#[derive(Debug, Default)]
pub struct Schema {
    messages: HashMap<String, MessageSchema>,
    /// `/package.Service/Method` → its input message's full name.
    methods: HashMap<String, String>,
}

impl Schema {
    /// The schema of every service and message of `shopcall.v1` (and the well-known types
    /// it uses), from the compiled descriptor set.
    pub fn api() -> Schema {
        let set = prost_types::FileDescriptorSet::decode(shopcall_proto::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set compiled into shopcall-proto decodes");
        Schema::from_set(&set)
    }

    fn from_set(set: &prost_types::FileDescriptorSet) -> Schema {
        let mut schema = Schema::default();
        for file in &set.file {
            let package = file.package();
            for message in &file.message_type {
                schema.add_message(package, message);
            }
            if package != "shopcall.v1" {
                continue;
            }
            for service in &file.service {
                for method in &service.method {
                    schema.methods.insert(
                        format!("/{package}.{}/{}", service.name(), method.name()),
                        method.input_type().trim_start_matches('.').to_owned(),
                    );
                }
            }
        }
        schema
    }

    fn add_message(&mut self, scope: &str, message: &prost_types::DescriptorProto) {
        let full = if scope.is_empty() {
            message.name().to_owned()
        } else {
            format!("{scope}.{}", message.name())
        };
        for nested in &message.nested_type {
            self.add_message(&full, nested);
        }
        let mut fields = HashMap::new();
        for f in &message.field {
            let Ok(number) = u32::try_from(f.number()) else {
                continue;
            };
            let repeated = f.label() == Label::Repeated;
            let scalar = |wire_type| Kind::Scalar {
                wire_type,
                repeated,
            };
            let kind = match f.r#type() {
                Type::String => Kind::Str(string_cap(f.name())),
                Type::Bytes => Kind::Bytes(MAX_STRING_BYTES),
                Type::Message | Type::Group => {
                    Kind::Message(f.type_name().trim_start_matches('.').to_owned())
                }
                Type::Double | Type::Fixed64 | Type::Sfixed64 => scalar(1),
                Type::Float | Type::Fixed32 | Type::Sfixed32 => scalar(5),
                _ => scalar(0),
            };
            fields.insert(
                number,
                Field {
                    path: format!("{}.{}", message.name(), f.name()),
                    kind,
                },
            );
        }
        self.messages.insert(full, MessageSchema { fields });
    }

    /// The request message type of an RPC path, if it is one of the API's.
    pub fn request_type(&self, path: &str) -> Option<&str> {
        self.methods.get(path).map(String::as_str)
    }

    /// Checks one encoded message of type `message` (see the module docs).
    pub fn check(&self, message: &str, bytes: &[u8]) -> Result<(), WireError> {
        self.check_at(message, bytes, 0)
    }

    fn check_at(&self, message: &str, mut buf: &[u8], depth: usize) -> Result<(), WireError> {
        if depth > MAX_DEPTH {
            return Err(WireError::Malformed(format!(
                "messages nested deeper than {MAX_DEPTH} levels"
            )));
        }
        let Some(schema) = self.messages.get(message) else {
            // A type outside the descriptor set: nothing to check it against.
            return Ok(());
        };
        while !buf.is_empty() {
            let key = varint(&mut buf)?;
            let number = u32::try_from(key >> 3)
                .ok()
                .filter(|n| *n != 0)
                .ok_or_else(|| {
                    WireError::Malformed(format!("field number {} in {message}", key >> 3))
                })?;
            let wire_type = (key & 7) as u8;
            let Some(field) = schema.fields.get(&number) else {
                return Err(WireError::UnknownField {
                    message: message.to_owned(),
                    number,
                });
            };
            let mismatch = || {
                WireError::Malformed(format!(
                    "{} sent with wire type {wire_type}, which does not fit its type",
                    field.path
                ))
            };
            match wire_type {
                0 => {
                    if !matches!(field.kind, Kind::Scalar { wire_type: 0, .. }) {
                        return Err(mismatch());
                    }
                    varint(&mut buf)?;
                }
                1 | 5 => {
                    if !matches!(field.kind, Kind::Scalar { wire_type: w, .. } if w == wire_type) {
                        return Err(mismatch());
                    }
                    let n = if wire_type == 1 { 8 } else { 4 };
                    take(&mut buf, n, &field.path)?;
                }
                2 => {
                    let len = usize::try_from(varint(&mut buf)?)
                        .map_err(|_| WireError::Malformed(format!("{} length", field.path)))?;
                    let value = take(&mut buf, len, &field.path)?;
                    match &field.kind {
                        Kind::Str(max) => {
                            if len > *max {
                                return Err(WireError::StringTooLong {
                                    field: field.path.clone(),
                                    len,
                                    max: *max,
                                });
                            }
                            if std::str::from_utf8(value).is_err() {
                                return Err(WireError::NotUtf8 {
                                    field: field.path.clone(),
                                });
                            }
                        }
                        Kind::Bytes(max) => {
                            if len > *max {
                                return Err(WireError::StringTooLong {
                                    field: field.path.clone(),
                                    len,
                                    max: *max,
                                });
                            }
                        }
                        Kind::Message(name) => self.check_at(name, value, depth + 1)?,
                        Kind::Scalar {
                            wire_type: w,
                            repeated: true,
                        } => packed(value, *w, &field.path)?,
                        Kind::Scalar { .. } => return Err(mismatch()),
                    }
                }
                _ => {
                    return Err(WireError::Malformed(format!(
                        "wire type {wire_type} (groups or invalid) for {}",
                        field.path
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Reads one varint (at most 10 bytes).
fn varint(buf: &mut &[u8]) -> Result<u64, WireError> {
    let mut value = 0u64;
    for i in 0..10 {
        let Some((&byte, rest)) = buf.split_first() else {
            return Err(WireError::Malformed("truncated varint".to_owned()));
        };
        *buf = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(WireError::Malformed(
        "varint longer than 10 bytes".to_owned(),
    ))
}

/// Takes `n` bytes.
fn take<'a>(buf: &mut &'a [u8], n: usize, field: &str) -> Result<&'a [u8], WireError> {
    if buf.len() < n {
        return Err(WireError::Malformed(format!(
            "{field} needs {n} bytes, {} left",
            buf.len()
        )));
    }
    let (value, rest) = buf.split_at(n);
    *buf = rest;
    Ok(value)
}

/// Checks a packed run of scalars of one wire type.
fn packed(mut value: &[u8], wire_type: u8, field: &str) -> Result<(), WireError> {
    match wire_type {
        0 => {
            while !value.is_empty() {
                varint(&mut value)?;
            }
            Ok(())
        }
        1 | 5 => {
            let size = if wire_type == 1 { 8 } else { 4 };
            if value.len() % size == 0 {
                Ok(())
            } else {
                Err(WireError::Malformed(format!(
                    "packed {field} is not a whole number of {size}-byte values"
                )))
            }
        }
        _ => Err(WireError::Malformed(format!("packed {field}"))),
    }
}

/// Splits a gRPC request body into its length-prefixed messages; `None` when the body is
/// compressed or not framed as gRPC (tonic then answers it as usual).
fn messages(mut body: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::with_capacity(1);
    while !body.is_empty() {
        if body.len() < 5 || body[0] != 0 {
            return None;
        }
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let rest = &body[5..];
        if rest.len() < len {
            return None;
        }
        out.push(&rest[..len]);
        body = &rest[len..];
    }
    Some(out)
}

/// The layer that checks requests against a [`Schema`].
#[derive(Clone)]
pub struct CheckRequests {
    schema: Arc<Schema>,
    limit: usize,
    metrics: Arc<Metrics>,
}

impl CheckRequests {
    /// Checks the API's requests, each at most `limit` bytes of message, counting refusals
    /// in `metrics`.
    pub fn new(schema: Arc<Schema>, limit: usize, metrics: Arc<Metrics>) -> CheckRequests {
        CheckRequests {
            schema,
            limit,
            metrics,
        }
    }
}

impl<S> tower_layer::Layer<S> for CheckRequests {
    type Service = Checked<S>;

    fn layer(&self, inner: S) -> Checked<S> {
        Checked {
            inner,
            check: self.clone(),
        }
    }
}

/// A service whose requests are checked first.
#[derive(Clone)]
pub struct Checked<S> {
    inner: S,
    check: CheckRequests,
}

type CheckedFuture<E> =
    Pin<Box<dyn Future<Output = Result<http::Response<tonic::body::Body>, E>> + Send>>;

impl<S> tower_service::Service<http::Request<tonic::body::Body>> for Checked<S>
where
    S: tower_service::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = CheckedFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let Some(message) = self
            .check
            .schema
            .request_type(request.uri().path())
            .map(str::to_owned)
        else {
            return Box::pin(self.inner.call(request));
        };
        // The ready service goes into the future; a clone takes its place (tower's rule for
        // services called from an async block).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let check = self.check.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            // The message limit plus its 5-byte frame header.
            let collected = Limited::new(body, check.limit + 5).collect().await;
            let bytes: Bytes = match collected {
                Ok(c) => c.to_bytes(),
                Err(e) => {
                    let err = if e.is::<http_body_util::LengthLimitError>() {
                        WireError::TooLarge { limit: check.limit }
                    } else {
                        WireError::Malformed(format!("the request body could not be read: {e}"))
                    };
                    return Ok(refuse(&check.metrics, err));
                }
            };
            if let Some(frames) = messages(bytes.chunk()) {
                for frame in frames {
                    if let Err(err) = check.schema.check(&message, frame) {
                        return Ok(refuse(&check.metrics, err));
                    }
                }
            }
            let body = tonic::body::Body::new(Full::new(bytes).map_err(|never| match never {}));
            inner.call(http::Request::from_parts(parts, body)).await
        })
    }
}

/// Counts and answers a refused request.
fn refuse(metrics: &Metrics, err: WireError) -> http::Response<tonic::body::Body> {
    metrics.count_invalid_request(err.kind());
    Status::from(ApiError::from(err)).into_http()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shopcall_proto::v1 as pb;

    fn encode(m: &impl Message) -> Vec<u8> {
        m.encode_to_vec()
    }

    #[test]
    fn every_rpc_has_its_request_type() {
        let schema = Schema::api();
        assert_eq!(
            schema.request_type("/shopcall.v1.CallService/CreateCall"),
            Some("shopcall.v1.CreateCallRequest")
        );
        assert_eq!(
            schema.request_type("/shopcall.v1.NodeService/Drain"),
            Some("shopcall.v1.DrainRequest")
        );
        assert_eq!(schema.request_type("/grpc.health.v1.Health/Check"), None);
    }

    #[test]
    fn valid_messages_pass_even_when_not_canonical() {
        let schema = Schema::api();
        let req = pb::CreateCallRequest {
            merchant_ref: "shop-7".into(),
            limits: Some(pb::CallLimits {
                ring_timeout: Some(prost_types::Duration {
                    seconds: 60,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            profile_override: Some(pb::ProfileOverride {
                customer: Some(pb::RoleOverride {
                    accepted_sources: Some(pb::SourceList {
                        sources: vec![pb::Source::Microphone as i32, pb::Source::CameraRear as i32],
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut bytes = encode(&req);
        schema
            .check("shopcall.v1.CreateCallRequest", &bytes)
            .unwrap();
        // A default written out (initiator = 0), and merchant_ref sent twice: valid protobuf.
        bytes.extend_from_slice(&[0x08, 0x00, 0x2a, 0x01, b'x']);
        schema
            .check("shopcall.v1.CreateCallRequest", &bytes)
            .unwrap();
    }

    #[test]
    fn unknown_fields_are_found_at_any_depth() {
        let schema = Schema::api();
        // Field 99, varint 1, at the top.
        let mut bytes = encode(&pb::CreateCallRequest::default());
        bytes.extend_from_slice(&[0x98, 0x06, 0x01]);
        assert_eq!(
            schema.check("shopcall.v1.CreateCallRequest", &bytes),
            Err(WireError::UnknownField {
                message: "shopcall.v1.CreateCallRequest".into(),
                number: 99
            })
        );
        // Field 9 inside `limits` (CallLimits has 1 to 3).
        let bytes = [0x3a, 0x02, 0x48, 0x01];
        assert_eq!(
            schema.check("shopcall.v1.CreateCallRequest", &bytes),
            Err(WireError::UnknownField {
                message: "shopcall.v1.CallLimits".into(),
                number: 9
            })
        );
    }

    #[test]
    fn long_strings_bad_utf8_and_malformed_input_are_refused() {
        let schema = Schema::api();
        let long = pb::JoinRequest {
            sdp_offer: "a".repeat(MAX_SDP_BYTES + 1),
            ..Default::default()
        };
        let err = schema
            .check("shopcall.v1.JoinRequest", &encode(&long))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "JoinRequest.sdp_offer is 65537 bytes long; at most 65536 are accepted"
        );
        let ok = pb::JoinRequest {
            sdp_offer: "a".repeat(MAX_SDP_BYTES),
            ..Default::default()
        };
        schema
            .check("shopcall.v1.JoinRequest", &encode(&ok))
            .unwrap();
        let long_ref = pb::CreateCallRequest {
            customer_ref: "r".repeat(MAX_STRING_BYTES + 1),
            ..Default::default()
        };
        assert!(matches!(
            schema.check("shopcall.v1.CreateCallRequest", &encode(&long_ref)),
            Err(WireError::StringTooLong { .. })
        ));
        // call_id (field 1) with bytes that are not UTF-8.
        assert!(matches!(
            schema.check("shopcall.v1.GetCallRequest", &[0x0a, 0x02, 0xff, 0xfe]),
            Err(WireError::NotUtf8 { .. })
        ));
        for bad in [
            &[0x0a, 0x05, b'a'][..], // length past the end
            &[0x08][..],             // truncated varint
            &[0x0d, 0, 0, 0, 0][..], // fixed32 for a string
            &[0x0b][..],             // a group
            &[0x00, 0x01][..],       // field number 0
            &[
                0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ][..],
        ] {
            assert!(
                matches!(
                    schema.check("shopcall.v1.GetCallRequest", bad),
                    Err(WireError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn frames_are_split_and_compressed_bodies_left_alone() {
        let body = [0, 0, 0, 0, 2, 0x08, 0x01, 0, 0, 0, 0, 0];
        assert_eq!(messages(&body), Some(vec![&[0x08, 0x01][..], &[][..]]));
        assert_eq!(messages(&[1, 0, 0, 0, 0]), None);
        assert_eq!(messages(&[0, 0, 0, 0, 9, 1]), None);
    }
}
