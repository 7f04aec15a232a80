//! shopcalld: the shopcall SFU as a daemon, driven over gRPC by a signaling service.
//!
//! A thin shell around `sfu::SfuHandle`; it holds no media logic:
//!
//! * `config.rs` — flags, `SHOPCALL_*` environment, optional TOML file, validation;
//! * `telemetry.rs` — logs (human or JSON), with the WebRTC stack's `log` records bridged in;
//! * `grpc/` — `shopcall.v1.CallService`, `shopcall.v1.NodeService`, `grpc.health.v1`,
//!   server reflection; bearer token, request checks, rate limits, TLS;
//! * `metrics.rs` — Prometheus `/metrics` and `/healthz`;
//! * `drain.rs` — graceful drain (Drain RPC, SIGTERM): no new calls, existing calls until a
//!   deadline;
//! * `node.rs` — load over time (rates, CPU, memory) for NodeStats;
//! * `shutdown.rs` — the final stop after a drain, exit 0.
//!
//! `cargo run --release -p shopcalld` starts it with defaults: gRPC on 127.0.0.1:50051,
//! metrics on 127.0.0.1:9464, media on UDP 0.0.0.0:40000. See `docs/grpc.md` for the API.

mod config;
mod drain;
mod grpc;
mod metrics;
mod node;
mod shutdown;
mod telemetry;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sfu::SfuHandle;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::config::Config;
use crate::drain::Drainer;
use crate::metrics::Metrics;
use crate::shutdown::{Drain, GRPC_STOP_TIMEOUT, ServingState, Signals};

/// How often the daemon repeats its warning about an unauthenticated public gRPC API.
const INSECURE_WARNING_EVERY: Duration = Duration::from_secs(300);

fn main() -> ExitCode {
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shopcalld: {e:#}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = telemetry::init(config.log_format, &config.log_level) {
        eprintln!("shopcalld: {e:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("shopcalld")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => {
            tracing::info!("shopcalld stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "shopcalld failed");
            eprintln!("shopcalld: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Starts everything, waits for a termination signal, drains.
async fn run(config: Config) -> anyhow::Result<()> {
    log_config(&config);
    let signals = Signals::install()?;

    let handle = SfuHandle::start(config.sfu.clone())
        .await
        .context("cannot start the SFU")?;
    tracing::info!(
        media_addr = %handle.media_addr(),
        candidates = ?handle.candidates(),
        "SFU started"
    );

    let metrics = Arc::new(Metrics::new());
    let events = handle
        .subscribe()
        .context("cannot subscribe to SFU events")?;
    tokio::spawn(metrics::record_events(events, metrics.clone()));

    let grpc_listener = TcpListener::bind(config.grpc_listen)
        .await
        .with_context(|| format!("cannot listen for gRPC on {}", config.grpc_listen))?;
    let metrics_listener = TcpListener::bind(config.metrics_listen)
        .await
        .with_context(|| format!("cannot listen for metrics on {}", config.metrics_listen))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let metrics_addr = metrics_listener.local_addr()?;

    let serving = Arc::new(ServingState::new());
    let (health, health_service) = tonic_health::server::health_reporter();

    let (metrics_stop, metrics_stopped) = oneshot::channel();
    let metrics_task = tokio::spawn(metrics::serve(
        metrics_listener,
        metrics.clone(),
        handle.clone(),
        serving.clone(),
        metrics_stopped,
    ));
    tracing::info!(addr = %metrics_addr, "metrics listening (/metrics, /healthz)");

    let security = &config.grpc_security;
    let insecure_public = security.insecure_public();
    metrics.set_insecure_public(insecure_public);
    if insecure_public {
        warn_insecure(grpc_addr);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(INSECURE_WARNING_EVERY);
            every.tick().await;
            loop {
                every.tick().await;
                warn_insecure(grpc_addr);
            }
        });
    }

    let load = Arc::new(node::Load::new());
    tokio::spawn(load.clone().run_sampler(handle.clone()));
    let drainer = Drainer::new(
        handle.clone(),
        serving.clone(),
        health.clone(),
        vec![grpc::CALL_SERVICE_NAME, grpc::NODE_SERVICE_NAME],
        metrics.clone(),
    );
    let limiter = Arc::new(grpc::rate_limit::RateLimiter::new(config.rate_limits));
    let api = grpc::CallApi::new(handle.clone(), metrics.clone(), serving.clone())
        .with_rate_limiter(limiter);
    let node_api = grpc::NodeApi::new(handle.clone(), drainer.clone(), load, config.sfu.max_calls);
    let options = grpc::ServeOptions {
        tls: security.tls.as_ref().map(|t| t.server_config()),
        auth_token: security.auth_token.clone(),
        request_timeout: config.request_timeout,
        metrics: metrics.clone(),
    };
    let in_flight = grpc::InFlight::new();
    let (grpc_stop, grpc_stopped) = oneshot::channel::<()>();
    let mut grpc_task = tokio::spawn(grpc::serve(
        grpc_listener,
        api,
        node_api,
        options,
        in_flight.clone(),
        health_service,
        health.clone(),
        async {
            let _ = grpc_stopped.await;
        },
    ));
    tracing::info!(
        addr = %grpc_addr,
        security = security.describe(),
        "gRPC listening (shopcall.v1.CallService, shopcall.v1.NodeService, health, reflection)"
    );

    let mut signals = signals;
    let failed = tokio::select! {
        name = signals.recv() => {
            tracing::info!(
                signal = name,
                timeout = ?config.shutdown_timeout,
                "shutting down: draining first (calls may finish until the shutdown timeout)"
            );
            drainer
                .begin(tokio::time::Instant::now() + config.shutdown_timeout, true)
                .await;
            tokio::select! {
                _ = drainer.exit_requested() => None,
                name = signals.recv() => {
                    tracing::warn!(signal = name, "second signal during the drain: exiting now");
                    std::process::exit(1);
                }
                ended = &mut grpc_task => Some(grpc_failure(ended)),
            }
        }
        _ = drainer.exit_requested() => {
            tracing::info!("drained on request (Drain with exit_when_drained): shutting down");
            None
        }
        ended = &mut grpc_task => Some(grpc_failure(ended)),
    };
    if let Some(err) = failed {
        // Still end the calls cleanly, then report the failure.
        let _ = handle.shutdown().await;
        return Err(err);
    }

    Drain {
        serving,
        health,
        services: vec![grpc::CALL_SERVICE_NAME, grpc::NODE_SERVICE_NAME],
        handle,
        grpc_stop,
        grpc_task,
        in_flight,
        metrics_stop,
        metrics_task,
        timeout: config.shutdown_timeout.min(GRPC_STOP_TIMEOUT),
    }
    .run(signals)
    .await
}

/// The error of a gRPC server task that ended by itself.
fn grpc_failure(
    ended: Result<Result<(), tonic::transport::Error>, tokio::task::JoinError>,
) -> anyhow::Error {
    match ended {
        Ok(Ok(())) => anyhow::anyhow!("gRPC server stopped unexpectedly"),
        Ok(Err(e)) => anyhow::Error::new(e).context("gRPC server failed"),
        Err(e) => anyhow::Error::new(e).context("gRPC server task failed"),
    }
}

/// The loud warning of `--insecure-allow-public-grpc`.
fn warn_insecure(addr: std::net::SocketAddr) {
    tracing::warn!(
        %addr,
        "INSECURE: gRPC serves a non-loopback address with no bearer token and no mutual TLS \
         (--insecure-allow-public-grpc): anyone who can reach it can create, join and end \
         calls; make sure a network policy or firewall admits only the signaling tier"
    );
}

/// Logs the effective configuration, each value with where it came from.
fn log_config(config: &Config) {
    let line = |name: &str| {
        config
            .settings()
            .iter()
            .find(|s| s.name == name)
            .map(|s| format!("{} ({})", s.value, s.source))
            .unwrap_or_default()
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config_file = ?config.config_file,
        grpc_listen = line("grpc_listen"),
        metrics_listen = line("metrics_listen"),
        udp_bind = line("udp_bind"),
        announce_ips = line("announce_ips"),
        max_calls = line("max_calls"),
        video_codecs = line("video_codecs"),
        connect_timeout_secs = line("connect_timeout_secs"),
        shutdown_timeout_secs = line("shutdown_timeout_secs"),
        log_format = line("log_format"),
        log_level = line("log_level"),
        ring_timeout_secs = line("ring_timeout_secs"),
        max_duration_secs = line("max_duration_secs"),
        inactivity_timeout_secs = line("inactivity_timeout_secs"),
        disconnect_timeout_secs = line("disconnect_timeout_secs"),
        reconnect_grace_secs = line("reconnect_grace_secs"),
        default_profile = line("default_profile"),
        profiles = line("profiles"),
        eligibility = line("eligibility"),
        "effective configuration"
    );
    tracing::info!(
        auth_token = line("auth_token"),
        tls_cert = line("tls_cert"),
        tls_key = line("tls_key"),
        tls_client_ca = line("tls_client_ca"),
        insecure_allow_public_grpc = line("insecure_allow_public_grpc"),
        request_timeout_secs = line("request_timeout_secs"),
        create_call_rate = line("create_call_rate"),
        create_call_burst = line("create_call_burst"),
        join_rate = line("join_rate"),
        join_burst = line("join_burst"),
        "effective gRPC security configuration"
    );
    for warning in &config.grpc_security.warnings {
        tracing::warn!("{warning}");
    }
}
