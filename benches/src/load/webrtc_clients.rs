//! The async `webrtc` client (`shopcall_peer::TestPeer`) as the load client, to measure what
//! it costs the tester per packet next to the lean sans-IO client ([`super::net`]).
//!
//! `shopcall-load --client webrtc` adds calls in steps like the ramp, with one `TestPeer` per
//! participant (its own socket, driver task and media tasks), and reports the tester's CPU
//! per packet it sent or received. It stops when the tester's core is saturated: that is the
//! most calls this client can drive, which is the point of measuring it.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use shopcall_peer::{MediaPlan, PeerConfig, TestPeer};
use shopcall_proto::v1::call_service_client::CallServiceClient;
use shopcall_proto::v1::{CreateCallRequest, JoinRequest, Lens, Role, SetCameraRequest};
use tonic::transport::Channel;

use super::procfs;

/// One step of the async-client measurement.
#[derive(Debug, Clone, Serialize)]
pub struct ClientCostStep {
    /// Calls running.
    pub calls: usize,
    /// Packets per second the clients sent.
    pub sent_pps: f64,
    /// Packets per second the clients received.
    pub recv_pps: f64,
    /// 1 - received/sent, percent.
    pub loss_pct: f64,
    /// Tester process CPU, percent of one core.
    pub tester_cpu_pct: f64,
    /// Tester CPU per packet sent or received, nanoseconds.
    pub tester_ns_per_packet: f64,
}

async fn join(
    client: &mut CallServiceClient<Channel>,
    call_id: &str,
    role: Role,
) -> anyhow::Result<TestPeer> {
    let peer = TestPeer::new(PeerConfig::named(format!("{role:?}"))).await?;
    let offer = peer.create_offer().await?;
    let answer = client
        .join(JoinRequest {
            call_id: call_id.to_owned(),
            role: role as i32,
            sdp_offer: offer,
            ..Default::default()
        })
        .await
        .context("Join")?
        .into_inner();
    peer.set_answer(&answer.sdp_answer).await?;
    Ok(peer)
}

fn totals(peers: &[TestPeer]) -> (u64, u64) {
    peers.iter().fold((0, 0), |(s, r), p| {
        let st = p.stats();
        (
            s + st.audio.packets_sent + st.video.packets_sent,
            r + st.audio.packets_received + st.video.packets_received,
        )
    })
}

/// Runs the steps against the daemon at `url`; stops once the tester uses more than 90% of
/// a core or loses more than 1%, or at `deadline`.
pub async fn measure(
    url: &str,
    steps: &[usize],
    step_secs: f64,
    deadline: Instant,
) -> anyhow::Result<Vec<ClientCostStep>> {
    let channel = Channel::from_shared(url.to_owned())?.connect().await?;
    let mut client = CallServiceClient::new(channel);
    let mut peers: Vec<TestPeer> = Vec::new();
    let mut results = Vec::new();
    for &want in steps {
        if Instant::now() >= deadline {
            break;
        }
        while peers.len() < want * 2 {
            let call_id = client
                .create_call(CreateCallRequest::default())
                .await?
                .into_inner()
                .call_id;
            let m = join(&mut client, &call_id, Role::Merchant).await?;
            let c = join(&mut client, &call_id, Role::Customer).await?;
            client
                .set_camera(SetCameraRequest {
                    call_id: call_id.clone(),
                    actor: Role::Customer as i32,
                    target: Role::Customer as i32,
                    on: true,
                    lens: Lens::Rear as i32,
                })
                .await?;
            for p in [&m, &c] {
                p.wait_connected(Duration::from_secs(20)).await?;
                p.start_media(MediaPlan::default());
            }
            peers.push(m);
            peers.push(c);
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let pid = std::process::id();
        let (s0, r0) = totals(&peers);
        let (c0, t0) = (procfs::process_cpu(pid)?, Instant::now());
        tokio::time::sleep(Duration::from_secs_f64(step_secs)).await;
        let (s1, r1) = totals(&peers);
        let (c1, t1) = (procfs::process_cpu(pid)?, Instant::now());
        let secs = t1.duration_since(t0).as_secs_f64();
        let (sent, recv) = ((s1 - s0) as f64, (r1 - r0) as f64);
        let cpu = c1.saturating_sub(c0);
        let step = ClientCostStep {
            calls: want,
            sent_pps: sent / secs,
            recv_pps: recv / secs,
            loss_pct: if sent > 0.0 {
                ((sent - recv) / sent * 100.0).max(0.0)
            } else {
                0.0
            },
            tester_cpu_pct: cpu.as_secs_f64() / secs * 100.0,
            tester_ns_per_packet: cpu.as_nanos() as f64 / (sent + recv).max(1.0),
        };
        println!(
            "webrtc clients {:>4} calls | {:>7.0} pps sent {:>7.0} recv | loss {:>6.2}% | tester cpu {:>5.1}% | {:>6.0} ns per packet sent or received",
            step.calls,
            step.sent_pps,
            step.recv_pps,
            step.loss_pct,
            step.tester_cpu_pct,
            step.tester_ns_per_packet
        );
        let stop = step.tester_cpu_pct > 90.0 || step.loss_pct > 1.0;
        results.push(step);
        if stop {
            break;
        }
    }
    for p in peers {
        p.close().await;
    }
    Ok(results)
}
