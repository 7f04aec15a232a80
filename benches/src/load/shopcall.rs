//! Shopcall: the load tester as a signaling tier of `shopcalld`, over its gRPC API, and the
//! daemon started by the tester itself.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use shopcall_proto::v1::call_service_client::CallServiceClient;
use shopcall_proto::v1::node_service_client::NodeServiceClient;
use shopcall_proto::v1::{
    CreateCallRequest, EndCallRequest, JoinRequest, Lens, NodeStatsRequest, NodeStatsResponse,
    Role, SetCameraRequest,
};
use tonic::transport::Channel;

use super::net::NetHandle;
use super::peer::PeerSpec;
use super::{CallHandle, CustomerCamera};

/// The daemon, started by the tester. Killed on drop.
pub struct Daemon {
    child: Child,
    /// Its gRPC address.
    pub grpc: SocketAddr,
}

/// How to start the daemon.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// The binary.
    pub path: PathBuf,
    /// The address it binds (media, gRPC, metrics) and announces.
    pub ip: IpAddr,
    /// Pin it to this core (taskset).
    pub cpu: Option<usize>,
    /// Run it in this network namespace (`ip netns exec`).
    pub netns: Option<String>,
    /// Extra arguments.
    pub extra: Vec<String>,
}

/// `target/<profile>/shopcalld`, next to the running tester.
pub fn default_daemon_path() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("shopcalld")))
        .unwrap_or_else(|| PathBuf::from("target/release/shopcalld"))
}

impl Daemon {
    /// Starts the daemon and waits (at most 30 s) until it listens.
    pub fn start(o: &DaemonOptions) -> anyhow::Result<Daemon> {
        if !o.path.exists() {
            bail!(
                "{} does not exist: build it first (cargo build --release -p shopcalld), or pass \
                 --shopcalld PATH or --grpc URL",
                o.path.display()
            );
        }
        let mut argv: Vec<String> = Vec::new();
        if let Some(ns) = &o.netns {
            argv.extend(["ip", "netns", "exec", ns].map(str::to_owned));
        }
        if let Some(cpu) = o.cpu {
            argv.extend(["taskset".to_owned(), "-c".to_owned(), cpu.to_string()]);
        }
        let ip = o.ip;
        argv.push(o.path.display().to_string());
        argv.extend(
            [
                "--grpc-listen",
                &format!("{ip}:0"),
                "--metrics-listen",
                &format!("{ip}:0"),
                "--udp-bind",
                &format!("{ip}:0"),
                "--announce-ip",
                &ip.to_string(),
                "--log-format",
                "json",
                "--log-level",
                "warn,shopcalld=info",
                "--max-calls",
                "100000",
                // The tester is one client address setting up calls as fast as it can: the
                // daemon's per-address rate limits would refuse it.
                "--create-call-rate",
                "0",
                "--join-rate",
                "0",
            ]
            .map(str::to_owned),
        );
        if !ip.is_loopback() {
            // Only inside network namespaces the tester's caller made (benches/compare.sh):
            // nothing outside them can reach the address.
            argv.push("--insecure-allow-public-grpc".to_owned());
        }
        argv.extend(o.extra.iter().cloned());
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (key, _) in std::env::vars() {
            if key.starts_with("SHOPCALL_") {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", argv.join(" ")))?;
        let stdout = child.stdout.take().context("stdout is piped")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = grpc_listening(&line) {
                    let _ = tx.send(addr);
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(grpc) => Ok(Daemon { child, grpc }),
            Err(_) => {
                let status = child.try_wait().ok().flatten();
                let _ = child.kill();
                Err(anyhow!(
                    "shopcalld did not start listening within 30 s (exit status {status:?})"
                ))
            }
        }
    }

    /// The daemon's pid (`ip netns exec` and `taskset` exec it in place).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks it to stop (SIGTERM) and waits up to 15 s, then kills it.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// The gRPC address from a JSON start-up log line ("gRPC listening", field `addr`).
fn grpc_listening(line: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = v.get("fields")?;
    let message = fields.get("message")?.as_str()?;
    if !(message.starts_with("gRPC") && message.contains("listening")) {
        return None;
    }
    fields.get("addr")?.as_str()?.parse().ok()
}

/// The signaling side of shopcall.
#[derive(Clone)]
pub struct Shopcall {
    client: CallServiceClient<Channel>,
    /// For NodeStats, on the same connection (boxed: the call client alone is large).
    node: Box<NodeServiceClient<Channel>>,
    camera: CustomerCamera,
}

impl Shopcall {
    /// Connects to the daemon's gRPC endpoint (`http://host:port`).
    pub async fn connect(url: &str, camera: CustomerCamera) -> anyhow::Result<Shopcall> {
        let channel = Channel::from_shared(url.to_owned())
            .with_context(|| format!("bad gRPC URL {url}"))?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .with_context(|| format!("connecting to {url}"))?;
        Ok(Shopcall {
            client: CallServiceClient::new(channel.clone()),
            node: Box::new(NodeServiceClient::new(channel)),
            camera,
        })
    }

    /// Creates a call and joins both participants, as a signaling tier would: CreateCall,
    /// Join (merchant, then customer), and SetCamera by the customer when its camera is on.
    pub async fn setup_call(&self, net: &NetHandle) -> anyhow::Result<CallHandle> {
        let created = Instant::now();
        let mut c = self.client.clone();
        let call_id = c
            .create_call(CreateCallRequest::default())
            .await
            .context("CreateCall")?
            .into_inner()
            .call_id;
        let customer_video = self.camera != CustomerCamera::Off;
        let mut handle = CallHandle {
            id: call_id.clone(),
            created,
            peers: Vec::new(),
            receivers: Vec::new(),
            janus: None,
        };
        for (role, video) in [(Role::Merchant, true), (Role::Customer, customer_video)] {
            let spec = PeerSpec {
                offerer: true,
                audio: true,
                video,
                audio_forwarded: true,
                // Customer video is forwarded only after its SetCamera (below).
                video_forwarded: role == Role::Merchant || self.camera == CustomerCamera::On,
            };
            let (key, offer) = net.add(spec).await?;
            handle.peers.push(key);
            handle.receivers.push(key);
            let answer = c
                .join(JoinRequest {
                    call_id: call_id.clone(),
                    role: role as i32,
                    sdp_offer: offer.context("an offerer has an offer")?,
                    ..Default::default()
                })
                .await
                .with_context(|| format!("Join as {role:?}"))?
                .into_inner();
            net.accept_answer(key, answer.sdp_answer).await?;
        }
        if self.camera == CustomerCamera::On {
            c.set_camera(SetCameraRequest {
                call_id: call_id.clone(),
                actor: Role::Customer as i32,
                target: Role::Customer as i32,
                on: true,
                lens: Lens::Rear as i32,
            })
            .await
            .context("SetCamera (customer, rear)")?;
        }
        Ok(handle)
    }

    /// The daemon's own view of its load (NodeStats): calls and participants that exist.
    pub async fn node_stats(&self) -> anyhow::Result<NodeStatsResponse> {
        let mut n = (*self.node).clone();
        Ok(n.node_stats(NodeStatsRequest {})
            .await
            .context("NodeStats")?
            .into_inner())
    }

    /// Ends a call (EndCall).
    pub async fn end_call(&self, call: &CallHandle) -> anyhow::Result<()> {
        let mut c = self.client.clone();
        c.end_call(EndCallRequest {
            call_id: call.id.clone(),
        })
        .await
        .context("EndCall")?;
        Ok(())
    }
}
