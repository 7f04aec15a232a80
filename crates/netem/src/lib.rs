//! shopcall-netem: bad networks on demand, for shopcall's weak-network tests, benches and
//! load tester.
//!
//! This machine's kernel has `tc tbf` but no `tc netem`, so loss, delay and jitter are made in
//! userspace: a UDP [`Relay`] sits between a WebRTC client and the SFU and pushes every
//! datagram through a [`Link`] per direction:
//!
//! ```text
//!  client ──▶ relay.listen ──[ up link ]──▶ per-client socket ──▶ SFU
//!  client ◀── relay.listen ◀──[ down link ]── per-client socket ◀── SFU
//!
//!  link = random loss ─▶ FIFO bottleneck at rate_bps (drop-tail queue) ─▶ delay ± jitter
//! ```
//!
//! # A tour
//!
//! 1. [`LinkParams`] says what a direction does (rate, queue, loss, delay, jitter, reorder);
//!    it parses from text (`"rate=300kbit loss=1% delay=75ms"`), see [`params`].
//! 2. [`Link`] is the sans-IO core: datagrams in with `now`, out at their computed arrival
//!    time, the next deadline out; no clock, no sockets, so its tests run on a synthetic
//!    clock and its rate is exact.
//! 3. [`Relay`] is the tokio driver: sockets, clock, NAT-like flows (one upstream socket per
//!    client address), a [`Schedule`] of phases (`10s down rate=300kbit`), live changes from a
//!    test ([`Relay::set`], [`Relay::change`]) and counters ([`Relay::stats`]).
//! 4. [`sdp::rewrite_host_candidates`] points a client at the relay: rewrite the SFU answer's
//!    host candidates to [`Relay::local_addr`] before the client applies it.
//! 5. [`netns`] makes throwaway network namespaces joined by veth pairs (a [`netns::Star`]:
//!    the SFU's namespace and one per client), runs code and tokio runtimes inside them and
//!    cleans up on drop; it can also put a kernel `tbf` rate limit on a veth.
//! 6. With the `plot` feature, `netem::plot` writes a time series as CSV and an SVG chart.
//!
//! # A relay in front of the SFU
//!
//! ```no_run
//! # async fn demo(sfu_media_addr: std::net::SocketAddr, answer_from_sfu: String)
//! # -> std::io::Result<()> {
//! use netem::{Directions, LinkParams, Relay, RelayConfig};
//! use std::time::Duration;
//!
//! let relay = Relay::start(
//!     RelayConfig::loopback(sfu_media_addr)
//!         .down(LinkParams::clean().rate(3_000_000).delay(Duration::from_millis(40))),
//! )
//! .await?;
//! let answer = netem::sdp::rewrite_host_candidates(&answer_from_sfu, relay.local_addr());
//! // ... the client applies `answer` and connects through the relay; later:
//! relay.set(Directions::Down, "rate=300kbit delay=40ms".parse().unwrap()).await.ok();
//! let stats = relay.stats().await.ok();
//! # Ok(())
//! # }
//! ```
//!
//! The `shopcall-netem` binary runs the same relay from the command line (`--help`).

#![warn(missing_docs)]

pub mod link;
pub mod netns;
pub mod params;
#[cfg(feature = "plot")]
pub mod plot;
pub mod relay;
pub mod schedule;
pub mod sdp;

pub use link::{DelaySummary, DropReason, Link, LinkStats, Verdict};
pub use params::{LinkChange, LinkParams, QueueLimit};
pub use relay::{Relay, RelayConfig, RelayStats, RelayStopped};
pub use schedule::{Direction, Directions, Phase, Schedule};
