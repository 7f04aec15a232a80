//! Test harness: runs the real `shopcalld` binary on loopback and talks to it.
//!
//! Ports are free ones chosen by the OS: the daemon is started with port 0 for gRPC, metrics
//! and media, and the harness reads the bound addresses from its JSON start-up log, so
//! parallel tests never collide.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shopcall_peer::TestPeer;
use shopcall_proto::v1 as pb;
use shopcall_proto::v1::call_service_client::CallServiceClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

/// How long the daemon may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running daemon. Killed on drop if still running.
pub struct Daemon {
    child: Child,
    /// The gRPC address.
    pub grpc: SocketAddr,
    /// The metrics address.
    pub metrics: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

/// The loopback-only arguments every test daemon gets (before the test's own).
pub const LOOPBACK_ARGS: [&str; 10] = [
    "--grpc-listen",
    "127.0.0.1:0",
    "--metrics-listen",
    "127.0.0.1:0",
    "--udp-bind",
    "127.0.0.1:0",
    "--announce-ip",
    "127.0.0.1",
    "--log-format",
    "json",
];

impl Daemon {
    /// Starts the daemon on loopback with `extra` arguments.
    pub fn start(extra: &[&str]) -> Daemon {
        Daemon::start_with(extra, &[])
    }

    /// Starts the daemon on loopback with `extra` arguments and `env` variables. Any
    /// `SHOPCALL_*` variable of the test process is removed first.
    pub fn start_with(extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        Daemon::start_from(&LOOPBACK_ARGS, extra, env)
    }

    /// Starts the daemon with `base` instead of [`LOOPBACK_ARGS`] (then `extra`), for tests
    /// that choose their own listen addresses. A gRPC address reported as unspecified
    /// (`0.0.0.0`) is reached on loopback.
    pub fn start_from(base: &[&str], extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        Daemon::from_command(daemon_command(base, extra, env))
    }

    /// Starts the daemon with a command built by the caller (for example inside a network
    /// namespace, through `ip netns exec`); it must log JSON to stdout.
    pub fn from_command(mut cmd: Command) -> Daemon {
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("shopcalld starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<(String, SocketAddr)>();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // Kept before it is announced: a test that reads the logs once the daemon
                // is up must find the line that said so.
                let found = listening(&line);
                sink.lock().unwrap().push(line);
                if let Some(found) = found {
                    let _ = tx.send(found);
                }
            }
        });

        let deadline = Instant::now() + START_TIMEOUT;
        let (mut grpc, mut metrics) = (None, None);
        while grpc.is_none() || metrics.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((what, addr)) if what.starts_with("gRPC") => grpc = Some(addr),
                Ok((_, addr)) => metrics = Some(addr),
                Err(_) => {
                    let status = child.try_wait().ok().flatten();
                    let _ = child.kill();
                    panic!(
                        "shopcalld did not start listening (exit status {status:?}); logs:\n{}",
                        logs.lock().unwrap().join("\n")
                    );
                }
            }
        }
        let mut grpc = grpc.expect("set above");
        if grpc.ip().is_unspecified() {
            grpc.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        Daemon {
            child,
            grpc,
            metrics: metrics.expect("set above"),
            logs,
        }
    }

    /// A connected gRPC client.
    pub async fn client(&self) -> CallServiceClient<Channel> {
        CallServiceClient::new(self.channel().await)
    }

    /// A connected gRPC channel.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.grpc))
            .expect("valid uri")
            .connect()
            .await
            .expect("gRPC connects")
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait works") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "shopcalld did not exit within {limit:?}; logs:\n{}",
                    self.logs().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log lines so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// `GET path` on the metrics server: (status code, body).
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.metrics, path).await
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The daemon command with `base` then `extra` arguments and `env` (SHOPCALL_* cleared).
pub fn daemon_command(base: &[&str], extra: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shopcalld"));
    for (key, _) in std::env::vars() {
        if key.starts_with("SHOPCALL_") {
            cmd.env_remove(key);
        }
    }
    cmd.args(base).args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// `("gRPC listening ...", addr)` or `("metrics listening ...", addr)` from a JSON log line.
fn listening(line: &str) -> Option<(String, SocketAddr)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = v.get("fields")?;
    let message = fields.get("message")?.as_str()?;
    if !message.contains("listening") {
        return None;
    }
    let addr = fields.get("addr")?.as_str()?.parse().ok()?;
    Some((message.to_owned(), addr))
}

/// A minimal HTTP/1.1 GET: (status code, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("metrics server accepts");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("read response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("an HTTP response has a head");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line has a code");
    (code, body.to_owned())
}

/// Polls `f` every 20 ms until it returns `Some`, at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every event of `call` (or of every call when `call` is empty), moved into a channel by a
/// task, so a test can wait for them in order.
pub async fn watch_events(
    client: &mut CallServiceClient<Channel>,
    call: &str,
) -> tokio::sync::mpsc::UnboundedReceiver<pb::Event> {
    use tokio_stream::StreamExt;
    let mut stream = client
        .watch_events(pb::WatchEventsRequest {
            call_id: call.to_owned(),
        })
        .await
        .expect("WatchEvents starts")
        .into_inner();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            if let Some(e) = msg.event {
                let _ = tx.send(e);
            }
        }
    });
    rx
}

/// Joins `peer` to `call` as `role` with the declared `tracks` (none: the daemon's defaults)
/// and applies the answer; panics with the peer's name on a refusal.
pub async fn join_peer(
    client: &mut CallServiceClient<Channel>,
    peer: &TestPeer,
    call: &str,
    role: pb::Role,
    tracks: impl FnOnce(&str) -> Vec<pb::DeclaredTrack>,
) -> pb::JoinResponse {
    let name = peer.name().to_owned();
    let offer = peer.create_offer().await.expect("peer offers");
    let joined = client
        .join(pb::JoinRequest {
            call_id: call.to_owned(),
            role: role as i32,
            tracks: tracks(&offer),
            sdp_offer: offer,
        })
        .await
        .unwrap_or_else(|e| panic!("{name} could not join: {e}"))
        .into_inner();
    peer.set_answer(&joined.sdp_answer)
        .await
        .unwrap_or_else(|e| panic!("{name} refused the answer: {e}\n{}", joined.sdp_answer));
    joined
}

/// No declared tracks (for [`join_peer`]).
pub fn no_tracks(_offer: &str) -> Vec<pb::DeclaredTrack> {
    Vec::new()
}
