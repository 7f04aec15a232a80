//! Shutdown: the daemon's serving state and the final stop after a drain.
//!
//! SIGTERM/SIGINT (or a Drain RPC with `exit_when_drained`) first drains (`drain.rs`): health
//! NOT_SERVING, no new calls, existing calls run until they end or until the deadline
//! (`--shutdown-timeout-secs` for a signal), then the rest end with `server_shutdown`. Once
//! drained, [`Drain::run`] stops the process; its first two steps are already done by then
//! and repeating them is harmless. In order:
//! 1. health turns NOT_SERVING (gRPC `grpc.health.v1` and `/healthz`), so load balancers and
//!    the signaling tier stop sending new calls here;
//! 2. CreateCall is refused with UNAVAILABLE (the SFU stops accepting calls; participants
//!    of existing calls may still join until the next step ends them);
//! 3. `SfuHandle::shutdown` ends every call still there with reason `server_shutdown` (none
//!    after a drain; each publishes `CallEnded` with its record), then the SFU driver stops,
//!    which ends every WatchEvents stream;
//! 4. health statuses are cleared, which ends health Watch streams; the gRPC server stops
//!    accepting connections and finishes in-flight requests, for at most
//!    [`Drain::timeout`] (the shutdown timeout, at most [`GRPC_STOP_TIMEOUT`]; it is stopped
//!    as soon as no request is in flight, see `stop_grpc`);
//! 5. the metrics server stops, and the process exits 0.
//!
//! A second signal during the drain exits at once with status 1.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use sfu::SfuHandle;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::grpc::InFlight;

/// The longest in-flight gRPC requests get once the calls are gone (after the drain).
pub const GRPC_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the SFU gets to end its calls and stop.
const SFU_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long no request must be in flight before the gRPC server is stopped without waiting
/// for its connections to close (time for the last response frames to be written).
const QUIET_PERIOD: Duration = Duration::from_millis(200);
/// How often the drain looks at the in-flight count.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Whether the daemon still takes new calls. Shared by the gRPC service and `/healthz`.
#[derive(Debug, Default)]
pub struct ServingState {
    draining: AtomicBool,
}

impl ServingState {
    /// A daemon that is serving.
    pub fn new() -> ServingState {
        ServingState::default()
    }

    /// Whether shutdown has begun: no new calls or participants are taken.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Marks the drain: CreateCall is refused from now on, `/healthz` answers 503.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

/// The termination signals the daemon reacts to.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the SIGTERM and SIGINT handlers. Do this before serving, so that an early
    /// signal drains rather than kills.
    pub fn install() -> anyhow::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?,
        })
    }

    /// Waits for the next SIGTERM or SIGINT and returns its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// What the drain stops, besides the SFU.
pub struct Drain {
    /// The serving state the gRPC service and `/healthz` read.
    pub serving: Arc<ServingState>,
    /// The gRPC health reporter.
    pub health: HealthReporter,
    /// The gRPC service names whose health is reported (besides the server-wide "").
    pub services: Vec<&'static str>,
    /// The SFU.
    pub handle: SfuHandle,
    /// Tells the gRPC server to stop accepting and finish in-flight requests.
    pub grpc_stop: oneshot::Sender<()>,
    /// The gRPC server task.
    pub grpc_task: JoinHandle<Result<(), tonic::transport::Error>>,
    /// The gRPC requests in flight.
    pub in_flight: InFlight,
    /// Tells the metrics server to stop.
    pub metrics_stop: oneshot::Sender<()>,
    /// The metrics server task.
    pub metrics_task: JoinHandle<()>,
    /// How long in-flight gRPC requests get to finish.
    pub timeout: Duration,
}

impl Drain {
    /// Runs the drain (see the module docs). Returns `Ok` when everything stopped cleanly.
    pub async fn run(self, mut signals: Signals) -> anyhow::Result<()> {
        // A second signal means "now".
        tokio::spawn(async move {
            let name = signals.recv().await;
            tracing::warn!(signal = name, "second signal during shutdown: exiting now");
            std::process::exit(1);
        });

        self.health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        for service in &self.services {
            self.health
                .set_service_status(service, ServingStatus::NotServing)
                .await;
        }
        self.serving.begin_drain();
        if let Err(e) = self.handle.stop_accepting().await {
            tracing::warn!(error = %e, "SFU was already stopped");
        }
        tracing::info!("health NOT_SERVING; refusing new calls");

        match tokio::time::timeout(SFU_SHUTDOWN_TIMEOUT, self.handle.shutdown()).await {
            Ok(Ok(())) => tracing::info!("every call ended with reason server_shutdown"),
            Ok(Err(e)) => tracing::warn!(error = %e, "SFU was already stopped"),
            Err(_) => tracing::error!(
                timeout = ?SFU_SHUTDOWN_TIMEOUT,
                "SFU did not stop in time; going on with the shutdown"
            ),
        }

        // Health Watch streams never end by themselves and would hold the graceful stop for
        // the whole timeout: forgetting the statuses ends them (they have seen NOT_SERVING).
        let mut health = self.health.clone();
        health.clear_service_status("").await;
        for service in &self.services {
            health.clear_service_status(service).await;
        }

        let _ = self.grpc_stop.send(());
        let grpc = stop_grpc(self.grpc_task, &self.in_flight, self.timeout).await;

        let _ = self.metrics_stop.send(());
        if let Err(e) = self.metrics_task.await {
            tracing::warn!(error = %e, "metrics server task failed");
        }
        grpc
    }
}

/// Waits for the gRPC server to stop after its shutdown signal: until it returns, or until no
/// request has been in flight for [`QUIET_PERIOD`] (hyper may otherwise wait forever on a
/// connection that never finished its handshake, hyperium/hyper#4170), or until `timeout`.
async fn stop_grpc(
    mut task: JoinHandle<Result<(), tonic::transport::Error>>,
    in_flight: &InFlight,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut quiet_since: Option<tokio::time::Instant> = None;
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            tracing::warn!(
                ?timeout,
                in_flight = in_flight.count(),
                "gRPC requests still in flight after the shutdown timeout; closing them"
            );
            task.abort();
            return Ok(());
        }
        if in_flight.count() == 0 {
            let since = *quiet_since.get_or_insert(now);
            if now.duration_since(since) >= QUIET_PERIOD {
                tracing::info!("gRPC server stopped (no request in flight)");
                task.abort();
                return Ok(());
            }
        } else {
            quiet_since = None;
        }
        match tokio::time::timeout(DRAIN_POLL, &mut task).await {
            Ok(Ok(Ok(()))) => {
                tracing::info!("gRPC server stopped");
                return Ok(());
            }
            Ok(Ok(Err(e))) => return Err(anyhow::Error::new(e).context("gRPC server failed")),
            Ok(Err(e)) => return Err(anyhow::Error::new(e).context("gRPC server task failed")),
            Err(_) => {}
        }
    }
}
