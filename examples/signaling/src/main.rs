//! shopcall-signaling: an example signaling tier for shopcall.
//!
//! It plays the part of an e-commerce platform's customer-service backend: it serves two pages,
//! the **merchant console** (`/merchant`) and the **customer chat** (`/customer`), and drives
//! the real `shopcalld` daemon over gRPC for them. The browsers send media straight to
//! shopcalld; this service only carries signaling:
//!
//! ```text
//!   browser ──fetch (JSON) + server-sent events──▶ shopcall-signaling ──gRPC──▶ shopcalld
//!   browser ◀────────────── WebRTC media (UDP) ───────────────────────────────▶ shopcalld
//! ```
//!
//! * `chat.rs` — the conversation between one merchant and one customer, and the gRPC calls
//!   made for each button (CreateCall, Join, Decline, SetCamera, RequestCamera, Leave, ...);
//! * `page_event.rs` — shopcalld's events (WatchEvents) turned into what each page shows;
//! * `routes.rs` — the HTTP API the pages use, and the pages themselves (`static/`).
//!
//! Run `shopcalld`, then `cargo run -p shopcall-signaling-example`, and open
//! <http://127.0.0.1:8080/merchant> and <http://127.0.0.1:8080/customer> (see the README).
//!
//! It is a demo: one conversation, roles taken from the page's URL. A real platform takes the
//! role from the authenticated session and never from the request; shopcall trusts whatever
//! role the signaling tier vouches for.

mod chat;
mod page_event;
mod routes;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use shopcall_proto::v1::call_service_client::CallServiceClient;
use tonic::transport::Channel;

use crate::chat::Chat;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "shopcall-signaling",
    about = "Example signaling tier: merchant console and customer chat pages, calls through shopcalld"
)]
struct Args {
    /// shopcalld's gRPC address (`http://host:port`, or `host:port`).
    #[arg(
        long,
        env = "SHOPCALL_SIGNALING_GRPC",
        default_value = "http://127.0.0.1:50051"
    )]
    grpc: String,
    /// Address this service serves the pages and their API on.
    #[arg(
        long,
        env = "SHOPCALL_SIGNALING_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    listen: SocketAddr,
    /// Ring timeout of the calls it creates, in seconds; unset keeps shopcalld's (45 s by
    /// default). A call nobody answers in time ends as missed.
    #[arg(long, env = "SHOPCALL_SIGNALING_RING_TIMEOUT_SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    ring_timeout_secs: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_ansi(std::io::stdout().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let uri = if args.grpc.contains("://") {
        args.grpc.clone()
    } else {
        format!("http://{}", args.grpc)
    };
    // Lazy: the service starts even if shopcalld is not up yet; each request connects.
    let channel = Channel::from_shared(uri.clone())
        .with_context(|| format!("invalid gRPC address {uri:?}"))?
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy();
    let chat = Arc::new(Chat::new(
        CallServiceClient::new(channel),
        args.ring_timeout_secs.map(Duration::from_secs),
    ));

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    // The first line names the address (the browser test reads it when started on port 0).
    println!("listening on http://{addr}");
    println!("  merchant console: http://{addr}/merchant");
    println!("  customer chat:    http://{addr}/customer");
    println!("  shopcalld gRPC:   {uri}");

    axum::serve(listener, routes::router(chat))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("HTTP server failed")
}
