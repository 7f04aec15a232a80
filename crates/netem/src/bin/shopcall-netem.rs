//! shopcall-netem: a UDP impairment relay in front of an SFU (or any UDP server).
//!
//! ```text
//! shopcall-netem --listen 127.0.0.1:5000 --upstream 127.0.0.1:40000 \
//!     --down "rate=3mbit queue=500ms delay=40ms" --up "delay=40ms" \
//!     --phase "10s down rate=300kbit" --phase "20s down rate=60kbit" \
//!     --phase "30s down rate=3mbit" --duration 40s
//! ```
//!
//! Point clients at `--listen` (rewrite the SFU's host candidates to it). Every
//! `--stats-every` a line per direction goes to stdout.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use netem::params::parse_duration;
use netem::{Direction, LinkParams, Phase, Relay, RelayConfig, Schedule};

#[derive(Parser, Debug)]
#[command(
    name = "shopcall-netem",
    version,
    about = "A UDP impairment relay: loss, delay, jitter and a rate-limited bottleneck queue per \
             direction, scriptable over time.",
    after_help = "Link keys: rate=3mbit|300kbit|off queue=64kb|500ms loss=10% delay=75ms \
                  jitter=10ms reorder=on|off overhead=28.\n\
                  Phases: \"<at> <up|down|both> <keys>\", e.g. \"10s down rate=300kbit\"."
)]
struct Args {
    /// Address clients send to (keep it on loopback or in a test namespace).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Where datagrams go (the SFU's media address).
    #[arg(long)]
    upstream: SocketAddr,
    /// Client-to-upstream link at start.
    #[arg(long, default_value = "", value_parser = parse_link)]
    up: LinkParams,
    /// Upstream-to-client link at start.
    #[arg(long, default_value = "", value_parser = parse_link)]
    down: LinkParams,
    /// Both directions at start (overrides --up and --down).
    #[arg(long, value_parser = parse_link)]
    both: Option<LinkParams>,
    /// A scheduled change; repeat for more.
    #[arg(long = "phase", value_parser = parse_phase)]
    phases: Vec<Phase>,
    /// Seed for loss and jitter.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print counters this often (0 = never).
    #[arg(long, default_value = "1s", value_parser = parse_dur)]
    stats_every: Duration,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long, value_parser = parse_dur)]
    duration: Option<Duration>,
}

fn parse_link(s: &str) -> Result<LinkParams, String> {
    s.parse().map_err(|e| format!("{e}"))
}

fn parse_phase(s: &str) -> Result<Phase, String> {
    s.parse().map_err(|e| format!("{e}"))
}

fn parse_dur(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| format!("{e}"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let (up, down) = match args.both {
        Some(p) => (p, p),
        None => (args.up, args.down),
    };
    let config = RelayConfig::new(args.listen, args.upstream)
        .up(up)
        .down(down)
        .schedule(Schedule::new(args.phases))
        .seed(args.seed);
    let relay = Relay::start(config)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    println!(
        "relay {} -> {}\n  up:   {up}\n  down: {down}",
        relay.local_addr(),
        relay.upstream()
    );

    let stop = async {
        match args.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::pin!(stop);
    let mut ticker = tokio::time::interval(if args.stats_every.is_zero() {
        Duration::from_secs(3600)
    } else {
        args.stats_every
    });
    ticker.tick().await;
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = ticker.tick(), if !args.stats_every.is_zero() => {
                let s = relay.stats().await?;
                for d in [Direction::Up, Direction::Down] {
                    let l = s.link(d);
                    println!(
                        "{:>7.1}s {d:<4} in {:>7} out {:>7} lost {:>6} queue-drop {:>6} queued {:>6}B delay avg {:>5}ms max {:>5}ms [{}]",
                        s.elapsed.as_secs_f64(),
                        l.received,
                        l.delivered,
                        l.dropped_random_loss,
                        l.dropped_queue_full,
                        l.queued_bytes,
                        l.queue_delay.mean().unwrap_or_default().as_millis(),
                        l.queue_delay.max.as_millis(),
                        s.params(d),
                    );
                }
            }
        }
    }
    relay.shutdown().await;
    Ok(())
}
