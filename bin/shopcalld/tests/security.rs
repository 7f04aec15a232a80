//! The control API's front door, against the real daemon on loopback: the bearer token
//! (required, refused, accepted; health stays open), mutual TLS (a client certificate from
//! the configured CA is required), the refusal to serve a public address without either,
//! rate limits on CreateCall and Join, unknown fields and oversized strings refused with
//! INVALID_ARGUMENT, and the request timeout that does not cut streams.

mod common;

use std::time::Duration;

use common::{Daemon, daemon_command};
use shopcall_proto::v1 as pb;
use shopcall_proto::v1::call_service_client::CallServiceClient;
use shopcall_proto::v1::node_service_client::NodeServiceClient;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

const TOKEN: &str = "test-token-0123456789abcdef";

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone)]
struct Bearer(&'static str);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.0).parse().expect("ASCII header"),
        );
        Ok(req)
    }
}

/// A file in a fresh temporary directory of this test process.
fn temp_file(name: &str, contents: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("shopcalld-security-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write temp file");
    path
}

/// The value of a metric line `name` (with labels, as rendered) on `/metrics`.
async fn metric(daemon: &Daemon, name: &str) -> f64 {
    let (code, body) = daemon.http_get("/metrics").await;
    assert_eq!(code, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} not in:\n{body}"))
}

#[tokio::test]
async fn the_bearer_token_is_required_refused_when_wrong_and_accepted() {
    let token_file = temp_file("token", &format!("{TOKEN}\n"));
    let daemon = Daemon::start(&["--auth-token-file", token_file.to_str().unwrap()]);
    let channel = daemon.channel().await;

    // No token: refused before any service runs, on both services and on reflection.
    let mut anonymous = CallServiceClient::new(channel.clone());
    let err = anonymous
        .create_call(pb::CreateCallRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    assert!(
        err.message().contains("missing credentials"),
        "{}",
        err.message()
    );
    let err = NodeServiceClient::new(channel.clone())
        .node_stats(pb::NodeStatsRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // A wrong token, and a token without the Bearer scheme.
    let mut wrong =
        CallServiceClient::with_interceptor(channel.clone(), Bearer("not-the-token-0123456789"));
    let err = wrong.list_calls(pb::ListCallsRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(
        err.message().contains("invalid credentials"),
        "{}",
        err.message()
    );
    let mut request = tonic::Request::new(pb::ListCallsRequest {});
    request
        .metadata_mut()
        .insert("authorization", TOKEN.parse().unwrap());
    let err = anonymous.list_calls(request).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("malformed"), "{}", err.message());

    // The right token works for both services.
    let mut client = CallServiceClient::with_interceptor(channel.clone(), Bearer(TOKEN));
    let call = client
        .create_call(pb::CreateCallRequest::default())
        .await
        .expect("the token is accepted")
        .into_inner()
        .call_id;
    assert_eq!(
        client
            .list_calls(pb::ListCallsRequest {})
            .await
            .unwrap()
            .into_inner()
            .call_ids,
        vec![call]
    );
    let stats = NodeServiceClient::with_interceptor(channel.clone(), Bearer(TOKEN))
        .node_stats(pb::NodeStatsRequest {})
        .await
        .expect("NodeStats with the token")
        .into_inner();
    assert_eq!(stats.active_calls, 1);

    // Health stays open: orchestrators' probes cannot send a token.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "shopcall.v1.CallService".into(),
        })
        .await
        .expect("health needs no token")
        .into_inner();
    assert_eq!(status.status, 1, "SERVING");

    assert_eq!(
        metric(&daemon, "shopcall_grpc_unauthenticated_total").await,
        4.0
    );
    let logs = daemon.logs().join("\n");
    assert!(
        logs.contains("bearer token"),
        "the start-up log names the security"
    );
    assert!(!logs.contains(TOKEN), "the token must never be logged");
}

#[tokio::test]
async fn the_token_may_come_from_the_environment() {
    let daemon = Daemon::start_with(&[], &[("SHOPCALL_AUTH_TOKEN", TOKEN)]);
    let channel = daemon.channel().await;
    let err = CallServiceClient::new(channel.clone())
        .list_calls(pb::ListCallsRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    CallServiceClient::with_interceptor(channel, Bearer(TOKEN))
        .list_calls(pb::ListCallsRequest {})
        .await
        .expect("the token from SHOPCALL_AUTH_TOKEN is accepted");
}

/// A CA, a server certificate for localhost / 127.0.0.1, and client certificates.
struct Pki {
    ca_pem: String,
    server_pem: String,
    server_key: String,
    client_pem: String,
    client_key: String,
    /// A client certificate from another CA.
    stranger_pem: String,
    stranger_key: String,
}

fn ca(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
}

fn leaf(
    issuer: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    names: &[&str],
    usage: rcgen::ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    params.extended_key_usages = vec![usage];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn pki() -> Pki {
    let ca = ca("shopcall test CA");
    let other = ca_other();
    let (server_pem, server_key) = leaf(
        &ca,
        &["localhost", "127.0.0.1"],
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_pem, client_key) = leaf(
        &ca,
        &["signaling-tier"],
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    );
    let (stranger_pem, stranger_key) = leaf(
        &other,
        &["signaling-tier"],
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    );
    Pki {
        ca_pem: ca.pem(),
        server_pem,
        server_key,
        client_pem,
        client_key,
        stranger_pem,
        stranger_key,
    }
}

fn ca_other() -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    ca("someone else's CA")
}

/// A TLS channel to the daemon, trusting `ca_pem`, with a client identity if given.
async fn tls_channel(
    daemon: &Daemon,
    ca_pem: &str,
    identity: Option<(&str, &str)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://localhost:{}", daemon.grpc.port()))
        .expect("valid uri")
        .tls_config(tls)?
        .connect()
        .await
}

#[tokio::test]
async fn mutual_tls_needs_a_client_certificate_from_the_configured_ca() {
    let pki = pki();
    let cert = temp_file("server.pem", &pki.server_pem);
    let key = temp_file("server.key", &pki.server_key);
    let client_ca = temp_file("ca.pem", &pki.ca_pem);
    let daemon = Daemon::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--tls-client-ca",
        client_ca.to_str().unwrap(),
    ]);
    assert!(daemon.logs().join("\n").contains("mutual TLS"));

    // With a certificate from the CA: accepted.
    let channel = tls_channel(
        &daemon,
        &pki.ca_pem,
        Some((&pki.client_pem, &pki.client_key)),
    )
    .await
    .expect("mutual TLS handshake");
    CallServiceClient::new(channel)
        .create_call(pb::CreateCallRequest::default())
        .await
        .expect("an authenticated client creates a call");

    // Without a certificate, or with one from another CA: the handshake fails, and no
    // request gets through.
    for identity in [
        None,
        Some((pki.stranger_pem.as_str(), pki.stranger_key.as_str())),
    ] {
        let refused = match tls_channel(&daemon, &pki.ca_pem, identity).await {
            Err(_) => true,
            Ok(channel) => CallServiceClient::new(channel)
                .list_calls(pb::ListCallsRequest {})
                .await
                .is_err(),
        };
        assert!(
            refused,
            "a client with {:?} got through",
            identity.map(|_| "a stranger's certificate")
        );
    }

    // Plaintext to a TLS port gets nowhere either.
    let plaintext = Channel::from_shared(format!("http://{}", daemon.grpc))
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = plaintext {
        assert!(
            CallServiceClient::new(channel)
                .list_calls(pb::ListCallsRequest {})
                .await
                .is_err()
        );
    }
}

#[test]
fn a_public_address_without_authentication_is_refused_at_start() {
    let base = [
        "--grpc-listen",
        "0.0.0.0:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--udp-bind",
        "127.0.0.1:0",
        "--announce-ip",
        "127.0.0.1",
        "--log-format",
        "json",
    ];
    let out = daemon_command(&base, &[], &[])
        .output()
        .expect("shopcalld runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "grpc_listen 0.0.0.0:0 (from --grpc-listen) is not a loopback address, and the gRPC \
             API has no authentication"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("--insecure-allow-public-grpc"), "{stderr}");

    // IPv6 too, from the environment this time.
    let mut cmd = daemon_command(&base[2..], &[], &[("SHOPCALL_GRPC_LISTEN", "[::]:0")]);
    let out = cmd.output().expect("shopcalld runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("from SHOPCALL_GRPC_LISTEN"));
}

#[tokio::test]
async fn the_override_serves_a_public_address_and_warns_loudly() {
    let base = [
        "--grpc-listen",
        "0.0.0.0:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--udp-bind",
        "127.0.0.1:0",
        "--announce-ip",
        "127.0.0.1",
        "--log-format",
        "json",
    ];
    let daemon = Daemon::start_from(&base, &["--insecure-allow-public-grpc"], &[]);
    daemon
        .client()
        .await
        .list_calls(pb::ListCallsRequest {})
        .await
        .expect("served without authentication");
    let logs = daemon.logs().join("\n");
    assert!(logs.contains("INSECURE"), "{logs}");
    assert!(logs.contains("\"level\":\"WARN\""), "{logs}");
    assert_eq!(metric(&daemon, "shopcall_grpc_insecure_public").await, 1.0);
}

#[tokio::test]
async fn create_call_and_join_are_rate_limited_per_client() {
    let daemon = Daemon::start(&[
        "--create-call-rate",
        "1",
        "--create-call-burst",
        "3",
        "--join-rate",
        "1",
        "--join-burst",
        "1",
    ]);
    let mut client = daemon.client().await;
    let mut calls = Vec::new();
    for _ in 0..3 {
        calls.push(
            client
                .create_call(pb::CreateCallRequest::default())
                .await
                .expect("within the burst")
                .into_inner()
                .call_id,
        );
    }
    let err = client
        .create_call(pb::CreateCallRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert!(
        err.message()
            .starts_with("rate limit: more than 1 CreateCall requests per second (burst 3) from 127.0.0.1; retry in"),
        "{}",
        err.message()
    );

    // Join has its own bucket: the first (with a bad offer) is answered on its merits, the
    // second is refused before its offer is even looked at.
    let join = |call: String| pb::JoinRequest {
        call_id: call,
        role: pb::Role::Merchant as i32,
        sdp_offer: "not sdp".into(),
        ..Default::default()
    };
    let err = client.join(join(calls[0].clone())).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    let err = client.join(join(calls[1].clone())).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");

    // Tokens come back with time.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client
        .create_call(pb::CreateCallRequest::default())
        .await
        .expect("a token came back after a second");

    assert_eq!(
        metric(
            &daemon,
            "shopcall_grpc_rate_limited_total{operation=\"create_call\"}"
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(
            &daemon,
            "shopcall_grpc_rate_limited_total{operation=\"join\"}"
        )
        .await,
        1.0
    );
}

/// A CreateCallRequest from a newer schema: field 99 does not exist in ours.
#[derive(Clone, PartialEq, prost::Message)]
struct CreateCallFromTheFuture {
    #[prost(string, tag = "5")]
    merchant_ref: String,
    #[prost(uint32, tag = "99")]
    priority: u32,
}

/// CreateCall with `limits` carrying an unknown field 9.
#[derive(Clone, PartialEq, prost::Message)]
struct CreateCallWithFutureLimits {
    #[prost(message, optional, tag = "7")]
    limits: Option<FutureLimits>,
}

/// CallLimits with a field 9 ours does not have.
#[derive(Clone, PartialEq, prost::Message)]
struct FutureLimits {
    #[prost(uint32, tag = "9")]
    grace: u32,
}

/// GetCallRequest with `call_id` as raw bytes, to send invalid UTF-8.
#[derive(Clone, PartialEq, prost::Message)]
struct RawGetCall {
    #[prost(bytes = "vec", tag = "1")]
    call_id: Vec<u8>,
}

/// Any response: every field unknown, skipped.
#[derive(Clone, PartialEq, prost::Message)]
struct AnyResponse {}

/// Sends `message` to `path` as it is encoded, bypassing the generated client.
async fn raw<M: prost::Message + Default + Send + Sync + 'static>(
    channel: Channel,
    path: &'static str,
    message: M,
) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unknown(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<M, AnyResponse>::default();
    grpc.unary(
        tonic::Request::new(message),
        PathAndQuery::from_static(path),
        codec,
    )
    .await
    .map(drop)
}

#[tokio::test]
async fn unknown_fields_and_oversized_strings_are_invalid_argument() {
    let daemon = Daemon::start(&[]);
    let channel = daemon.channel().await;

    let err = raw(
        channel.clone(),
        "/shopcall.v1.CallService/CreateCall",
        CreateCallFromTheFuture {
            merchant_ref: "shop-7".into(),
            priority: 3,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(
        err.message()
            .starts_with("unknown field number 99 in shopcall.v1.CreateCallRequest"),
        "{}",
        err.message()
    );
    let err = raw(
        channel.clone(),
        "/shopcall.v1.CallService/CreateCall",
        CreateCallWithFutureLimits {
            limits: Some(FutureLimits { grace: 5 }),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains("unknown field number 9 in shopcall.v1.CallLimits"),
        "{}",
        err.message()
    );
    // The same bytes without the unknown field pass: the check is not a length comparison.
    raw(
        channel.clone(),
        "/shopcall.v1.CallService/CreateCall",
        CreateCallFromTheFuture {
            merchant_ref: "shop-7".into(),
            priority: 0,
        },
    )
    .await
    .expect("a known field only");

    let err = raw(
        channel.clone(),
        "/shopcall.v1.CallService/GetCall",
        RawGetCall {
            call_id: vec![0xff, 0xfe, 0x00],
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("not valid UTF-8"),
        "{}",
        err.message()
    );

    let mut client = daemon.client().await;
    // A string over the generic 4 KiB cap.
    let err = client
        .set_camera(pb::SetCameraRequest {
            call_id: "c".repeat(5000),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.message(),
        "SetCameraRequest.call_id is 5000 bytes long; at most 4096 are accepted"
    );
    // An SDP offer over 64 KiB (but under the 256 KiB request limit).
    let err = client
        .join(pb::JoinRequest {
            call_id: "0000000000000001".into(),
            role: pb::Role::Merchant as i32,
            sdp_offer: "v=0\r\n".repeat(20_000),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .starts_with("JoinRequest.sdp_offer is 100000 bytes long; at most 65536"),
        "{}",
        err.message()
    );
    // Nested strings are capped too.
    let err = client
        .create_call(pb::CreateCallRequest {
            profile: "p".repeat(70_000),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // The daemon is fine afterwards.
    client
        .create_call(pb::CreateCallRequest::default())
        .await
        .expect("still serving");

    for (reason, n) in [
        ("unknown_field", 2.0),
        ("malformed", 1.0),
        ("string_too_long", 3.0),
    ] {
        assert_eq!(
            metric(
                &daemon,
                &format!("shopcall_grpc_invalid_requests_total{{reason=\"{reason}\"}}")
            )
            .await,
            n,
            "{reason}"
        );
    }
}

#[tokio::test]
async fn the_request_timeout_does_not_cut_streams() {
    let daemon = Daemon::start(&["--request-timeout-secs", "1"]);
    let mut client = daemon.client().await;
    let mut events = client
        .watch_events(pb::WatchEventsRequest::default())
        .await
        .expect("WatchEvents starts")
        .into_inner();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let call = client
        .create_call(pb::CreateCallRequest::default())
        .await
        .unwrap()
        .into_inner()
        .call_id;
    let event = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("an event within 5 s")
        .expect("the stream is still open")
        .expect("not an error");
    assert_eq!(event.event.unwrap().call_id, call);

    // A client deadline (grpc-timeout) shorter than the server's is accepted and used.
    let mut node = NodeServiceClient::new(daemon.channel().await);
    let mut request = tonic::Request::new(pb::NodeStatsRequest {});
    request.set_timeout(Duration::from_millis(300));
    node.node_stats(request)
        .await
        .expect("a quick RPC within its deadline");
}
