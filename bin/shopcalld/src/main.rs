//! shopcalld: the shopcall SFU as a daemon, driven over gRPC by a signaling service.
//!
//! A thin shell around `sfu::SfuHandle`; it holds no media logic:
//!
//! * `config.rs` — flags, `SHOPCALL_*` environment, optional TOML file, validation;
//! * `telemetry.rs` — logs (human or JSON), with the WebRTC stack's `log` records bridged in;
//! * `grpc/` — `shopcall.v1.CallService`, `grpc.health.v1`, server reflection;
//! * `metrics.rs` — Prometheus `/metrics` and `/healthz`;
//! * `shutdown.rs` — SIGTERM/SIGINT → graceful drain, exit 0.
//!
//! `cargo run --release -p shopcalld` starts it with defaults: gRPC on 127.0.0.1:50051,
//! metrics on 127.0.0.1:9464, media on UDP 0.0.0.0:40000. See `docs/grpc.md` for the API.

mod config;
mod grpc;
mod metrics;
mod shutdown;
mod telemetry;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use sfu::SfuHandle;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::shutdown::{Drain, ServingState, Signals};

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

    let api = grpc::CallApi::new(handle.clone(), metrics.clone(), serving.clone());
    let in_flight = grpc::InFlight::new();
    let (grpc_stop, grpc_stopped) = oneshot::channel::<()>();
    let mut grpc_task = tokio::spawn(grpc::serve(
        grpc_listener,
        api,
        in_flight.clone(),
        health_service,
        health.clone(),
        async {
            let _ = grpc_stopped.await;
        },
    ));
    tracing::info!(addr = %grpc_addr, "gRPC listening (shopcall.v1.CallService, health, reflection)");

    let mut signals = signals;
    let failed = tokio::select! {
        name = signals.recv() => {
            tracing::info!(signal = name, "shutting down");
            None
        }
        ended = &mut grpc_task => Some(match ended {
            Ok(Ok(())) => anyhow::anyhow!("gRPC server stopped unexpectedly"),
            Ok(Err(e)) => anyhow::Error::new(e).context("gRPC server failed"),
            Err(e) => anyhow::Error::new(e).context("gRPC server task failed"),
        }),
    };
    if let Some(err) = failed {
        // Still end the calls cleanly, then report the failure.
        let _ = handle.shutdown().await;
        return Err(err);
    }

    Drain {
        serving,
        health,
        services: vec![grpc::CALL_SERVICE_NAME],
        handle,
        grpc_stop,
        grpc_task,
        in_flight,
        metrics_stop,
        metrics_task,
        timeout: config.shutdown_timeout,
    }
    .run(signals)
    .await
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
}
