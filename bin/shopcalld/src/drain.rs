//! Drain: taking the daemon out of service without cutting the calls it has.
//!
//! A drain starts from the Drain RPC or from SIGTERM (deadline `--shutdown-timeout-secs`,
//! exit when drained) and, once started, runs to its end:
//!
//! 1. health turns NOT_SERVING (gRPC `grpc.health.v1` for the server and every service, and
//!    `/healthz` 503), so load balancers and the signaling tier stop placing calls here;
//! 2. CreateCall is refused with UNAVAILABLE (`SfuHandle::stop_accepting`); the calls that
//!    exist go on, and their participants may still join, answer, restart ICE, leave;
//! 3. the drain task watches the calls (every [`POLL_EVERY`]) and publishes its
//!    [`Progress`]; when none is left the daemon is drained;
//! 4. at the deadline, the calls still running end with `server_shutdown` (each publishes its
//!    `CallEnded` with the record) and the number is logged;
//! 5. drained: the last progress says so; if any request asked for it (SIGTERM always does),
//!    [`Drainer::exit_requested`] resolves and `main` runs the shutdown of `shutdown.rs`.
//!
//! A later request may bring the deadline forward or ask for the exit; nothing postpones
//! them, and nothing undoes a drain (restart the daemon to serve again).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sfu::{EndReason, SfuHandle};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::metrics::Metrics;
use crate::shutdown::ServingState;

/// How often the drain looks at the calls that are left.
pub const POLL_EVERY: Duration = Duration::from_millis(200);

/// Where the daemon is in its drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Taking calls.
    Serving,
    /// Refusing new calls, waiting for the existing ones.
    Draining,
    /// No call is left.
    Drained,
}

/// The state of the drain, as the Drain stream and NodeStats report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The phase.
    pub phase: Phase,
    /// Calls that still exist.
    pub remaining_calls: u64,
    /// Participants that still exist.
    pub remaining_participants: u64,
    /// When the remaining calls are ended (while draining).
    pub deadline: Option<Instant>,
    /// Calls ended at the deadline.
    pub ended_at_deadline: u64,
    /// Whether the daemon exits once drained.
    pub exit_when_drained: bool,
}

impl Progress {
    fn serving() -> Progress {
        Progress {
            phase: Phase::Serving,
            remaining_calls: 0,
            remaining_participants: 0,
            deadline: None,
            ended_at_deadline: 0,
            exit_when_drained: false,
        }
    }
}

/// What the requests so far asked for: the earliest deadline, and exit if anyone asked.
#[derive(Debug, Clone, Copy)]
struct Plan {
    deadline: Instant,
    exit_when_drained: bool,
}

struct Inner {
    handle: SfuHandle,
    serving: Arc<ServingState>,
    health: HealthReporter,
    services: Vec<&'static str>,
    metrics: Arc<Metrics>,
    plan: Mutex<Option<Plan>>,
    /// Wakes the drain task when the plan changes.
    replanned: Notify,
    progress: watch::Sender<Progress>,
    /// True once drained with the exit requested.
    exit: watch::Sender<bool>,
}

/// Starts and follows the daemon's one drain. Cheap to clone.
#[derive(Clone)]
pub struct Drainer {
    inner: Arc<Inner>,
}

impl Drainer {
    /// A drainer for the SFU behind `handle`. `health` must report for the services the gRPC
    /// server serves (`services`, besides the server-wide `""`).
    pub fn new(
        handle: SfuHandle,
        serving: Arc<ServingState>,
        health: HealthReporter,
        services: Vec<&'static str>,
        metrics: Arc<Metrics>,
    ) -> Drainer {
        Drainer {
            inner: Arc::new(Inner {
                handle,
                serving,
                health,
                services,
                metrics,
                plan: Mutex::new(None),
                replanned: Notify::new(),
                progress: watch::channel(Progress::serving()).0,
                exit: watch::channel(false).0,
            }),
        }
    }

    /// Starts the drain with `deadline` (or brings the running one's forward), asking for
    /// the exit once drained if `exit_when_drained`. Returns a receiver of its progress.
    pub async fn begin(
        &self,
        deadline: Instant,
        exit_when_drained: bool,
    ) -> watch::Receiver<Progress> {
        let first = {
            let mut plan = self
                .inner
                .plan
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match plan.as_mut() {
                Some(p) => {
                    p.deadline = p.deadline.min(deadline);
                    p.exit_when_drained |= exit_when_drained;
                    false
                }
                None => {
                    *plan = Some(Plan {
                        deadline,
                        exit_when_drained,
                    });
                    true
                }
            }
        };
        let receiver = self.inner.progress.subscribe();
        if first {
            // Mark the drain at once, so that a NodeStats or a CreateCall right after this
            // returns sees it, before the task gets to run; the first report counts the
            // calls the drain waits for.
            self.inner.serving.begin_drain();
            self.inner.metrics.set_draining(true);
            let m = self.inner.handle.metrics().await.unwrap_or_default();
            self.inner.progress.send_modify(|p| {
                p.phase = Phase::Draining;
                p.remaining_calls = m.active_calls;
                p.remaining_participants = m.active_participants;
                p.deadline = Some(deadline);
                p.exit_when_drained = exit_when_drained;
            });
            tokio::spawn(run(Arc::clone(&self.inner)));
        } else {
            self.inner.replanned.notify_one();
        }
        receiver
    }

    /// The drain's state now.
    pub fn progress(&self) -> Progress {
        self.inner.progress.borrow().clone()
    }

    /// Resolves once the daemon is drained and a request asked for the exit.
    pub async fn exit_requested(&self) {
        let mut rx = self.inner.exit.subscribe();
        let _ = rx.wait_for(|exit| *exit).await;
    }
}

impl Inner {
    fn plan(&self) -> Plan {
        self.plan
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .expect("the drain task runs only after a plan was set")
    }

    fn publish(&self, progress: Progress) {
        self.progress.send_if_modified(|p| {
            if *p == progress {
                false
            } else {
                *p = progress;
                true
            }
        });
    }
}

/// The drain task (see the module docs).
async fn run(inner: Arc<Inner>) {
    for service in std::iter::once("").chain(inner.services.iter().copied()) {
        inner
            .health
            .set_service_status(service, ServingStatus::NotServing)
            .await;
    }
    if let Err(e) = inner.handle.stop_accepting().await {
        tracing::warn!(error = %e, "SFU was already stopped");
    }
    let plan = inner.plan();
    let first = inner.handle.metrics().await.unwrap_or_default();
    tracing::info!(
        calls = first.active_calls,
        participants = first.active_participants,
        deadline_in = ?plan.deadline.saturating_duration_since(Instant::now()),
        exit_when_drained = plan.exit_when_drained,
        "draining: health NOT_SERVING, refusing new calls; existing calls go on until the deadline"
    );

    let mut ended_at_deadline = 0u64;
    let mut last_logged = Instant::now();
    loop {
        let plan = inner.plan();
        // A stopped SFU has no call left.
        let m = inner.handle.metrics().await.unwrap_or_default();
        if m.active_calls == 0 {
            break;
        }
        let now = Instant::now();
        if now >= plan.deadline {
            let ended = inner
                .handle
                .end_all_calls(EndReason::ServerShutdown)
                .await
                .unwrap_or(0);
            ended_at_deadline += ended as u64;
            tracing::warn!(
                calls = ended,
                "drain deadline reached: ended the calls still running with reason server_shutdown"
            );
            continue;
        }
        inner.publish(Progress {
            phase: Phase::Draining,
            remaining_calls: m.active_calls,
            remaining_participants: m.active_participants,
            deadline: Some(plan.deadline),
            ended_at_deadline,
            exit_when_drained: plan.exit_when_drained,
        });
        if now.duration_since(last_logged) >= Duration::from_secs(10) {
            last_logged = now;
            tracing::info!(
                calls = m.active_calls,
                deadline_in = ?plan.deadline.saturating_duration_since(now),
                "draining: calls still running"
            );
        }
        tokio::select! {
            _ = tokio::time::sleep_until(plan.deadline.min(now + POLL_EVERY)) => {}
            _ = inner.replanned.notified() => {}
        }
    }

    let plan = inner.plan();
    inner.publish(Progress {
        phase: Phase::Drained,
        remaining_calls: 0,
        remaining_participants: 0,
        deadline: None,
        ended_at_deadline,
        exit_when_drained: plan.exit_when_drained,
    });
    tracing::info!(
        ended_at_deadline,
        exit = plan.exit_when_drained,
        "drained: no call left"
    );
    // A request may still ask for the exit after this; wait for it.
    let mut plan = plan;
    loop {
        if plan.exit_when_drained {
            inner.exit.send_replace(true);
            return;
        }
        inner.replanned.notified().await;
        plan = inner.plan();
        // Clone first: the borrow must end before `publish` takes the write lock.
        let current = inner.progress.borrow().clone();
        inner.publish(Progress {
            exit_when_drained: plan.exit_when_drained,
            ..current
        });
    }
}
