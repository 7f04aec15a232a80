//! The load tester behind `shopcall-load`: real WebRTC clients against a real SFU.
//!
//! * [`net`]: one media thread drives every client peer ([`peer`], on the sans-IO `rtc`
//!   crate) over one UDP socket, with pre-built media ([`media`]) and plain counters.
//! * [`shopcall`] and [`janus`]: the signaling side, as a signaling tier would do it, for
//!   `shopcalld` (gRPC) and Janus's videoroom (HTTP).
//! * [`ramp`]: adds calls in steps and measures each step: packets, loss, latency
//!   ([`hist`]), join time, the SFU's CPU and memory and the tester's own CPU ([`procfs`]).
//! * [`report`]: JSON, a table and an SVG chart.
//! * [`soak`]: a fixed number of calls for a bounded time, with churn, sampling the SFU's
//!   memory, file descriptors and threads; [`growth`] judges whether they grew, and
//!   [`soak_report`] writes JSON, a table and an SVG chart.
//! * [`webrtc_clients`]: the async `webrtc` client instead, to measure what it costs.

pub mod growth;
pub mod hist;
pub mod janus;
pub mod media;
pub mod net;
pub mod peer;
pub mod procfs;
pub mod ramp;
pub mod report;
pub mod shopcall;
pub mod soak;
pub mod soak_report;
mod tap;
pub mod webrtc_clients;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use net::{NetHandle, PeerKey};

/// The tester's clock origin: payload stamps are nanoseconds since it.
pub fn clock_base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// The customer's camera during the load.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "PascalCase")]
pub enum CustomerCamera {
    /// The customer publishes video and turns its camera on (shopcall: SetCamera with the
    /// rear lens), so video flows both ways.
    On,
    /// The customer publishes audio only (the product's default: camera off at join).
    Off,
    /// The customer publishes video but never turns the camera on: shopcall drops it at
    /// ingress by policy (its cost is receive + decrypt only). Not for Janus.
    Dropped,
}

/// One call the tester set up.
#[derive(Debug, Clone)]
pub struct CallHandle {
    /// The SFU's id of the call (Janus: the room).
    pub id: String,
    /// When the tester started creating it.
    pub created: Instant,
    /// Every client peer of the call.
    pub peers: Vec<PeerKey>,
    /// The peers that receive the other side's media (join time waits for all of them).
    pub receivers: Vec<PeerKey>,
    /// Janus teardown data.
    pub janus: Option<janus::JanusCall>,
}

/// The SFU under load, behind its signaling API.
#[derive(Clone)]
pub enum Target {
    /// shopcalld over gRPC.
    Shopcall(shopcall::Shopcall),
    /// Janus videoroom over HTTP.
    Janus(janus::Janus),
}

impl Target {
    /// Short name for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Target::Shopcall(_) => "shopcall",
            Target::Janus(_) => "janus",
        }
    }

    /// Creates call number `index` and joins both participants.
    pub async fn setup_call(&self, net: &NetHandle, index: u64) -> anyhow::Result<CallHandle> {
        match self {
            Target::Shopcall(s) => s.setup_call(net).await,
            Target::Janus(j) => j.setup_call(net, index).await,
        }
    }

    /// Ends a call.
    pub async fn end_call(&self, call: &CallHandle) -> anyhow::Result<()> {
        match self {
            Target::Shopcall(s) => s.end_call(call).await,
            Target::Janus(j) => j.end_call(call).await,
        }
    }
}

/// Ends calls, 16 at a time (each EndCall bounded to 10 s), and removes their clients.
pub async fn end_calls(target: &Target, net: &NetHandle, calls: Vec<CallHandle>) {
    let mut set = tokio::task::JoinSet::new();
    for call in calls {
        while set.len() >= 16 {
            set.join_next().await;
        }
        let t = target.clone();
        let n = net.clone();
        set.spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), t.end_call(&call)).await;
            for p in &call.peers {
                n.remove(*p);
            }
        });
    }
    while set.join_next().await.is_some() {}
}
