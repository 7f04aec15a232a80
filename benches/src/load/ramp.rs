//! Ramp: adds calls in steps and measures each step once it is steady.
//!
//! Per step: set up the new calls (bounded concurrency and rate), wait until every receiver of
//! every new call got media (join time: CreateCall to first media received), let it settle,
//! then measure over a fixed window: packets sent and received, loss, one-way latency, the
//! SFU's CPU and RSS, the tester's CPU and its core. The ramp stops at the first step above
//! the loss limit or the CPU ceiling, at the time limit, or after the last step.

use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use super::hist::Histogram;
use super::net::{Counters, NetHandle, Snapshot};
use super::procfs;
use super::{CallHandle, Target};

/// How a ramp runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RampConfig {
    /// Calls in each step, ascending.
    pub steps: Vec<usize>,
    /// Measurement window per step.
    pub step_secs: f64,
    /// Wait after the last new call got media, before measuring.
    pub settle_secs: f64,
    /// Calls set up at once.
    pub setup_concurrency: usize,
    /// At most this many new calls per second (0: no limit).
    pub setup_rate: f64,
    /// How long a new call may take to get media both ways.
    pub join_timeout_secs: f64,
    /// Stop after the first step with more loss than this (percent).
    pub max_loss_pct: f64,
    /// Stop after the first step where the SFU used more than this share of one core.
    pub cpu_ceiling_pct: f64,
    /// Stop after the first step whose p99 one-way latency is above this, milliseconds: an
    /// SFU that queues instead of dropping is past its limit too.
    #[serde(default = "default_max_p99_ms")]
    pub max_p99_ms: f64,
    /// The SFU's pid, for its CPU and RSS.
    pub sfu_pid: Option<u32>,
    /// The core the SFU is pinned to.
    pub sfu_cpu: Option<usize>,
    /// The core the tester is pinned to.
    pub client_cpu: Option<usize>,
    /// The whole ramp ends by then, whatever the steps say.
    #[serde(skip)]
    pub deadline: Option<Instant>,
}

fn default_max_p99_ms() -> f64 {
    50.0
}

/// What one step measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StepResult {
    /// Calls running (set up successfully) during the window.
    pub calls: usize,
    /// Calls whose setup failed so far (not running).
    pub setup_failures: usize,
    /// Calls of this step that did not get media both ways within the join timeout.
    pub join_failures: usize,
    /// Client peer connections connected.
    pub peers_connected: u64,
    /// Window length, seconds.
    pub window_secs: f64,
    /// Packets/s the clients sent that the SFU should forward.
    pub sent_pps: f64,
    /// Packets/s the clients received.
    pub recv_pps: f64,
    /// 1 - received/sent, in percent (never negative).
    pub loss_pct: f64,
    /// One-way latency, client to client through the SFU, microseconds.
    pub latency_p50_us: Option<f64>,
    /// p99 of the same.
    pub latency_p99_us: Option<f64>,
    /// Largest of the same.
    pub latency_max_us: Option<f64>,
    /// Join time (CreateCall to first media at every receiver) of this step's new calls, ms.
    pub join_p50_ms: Option<f64>,
    /// p99 of the same.
    pub join_p99_ms: Option<f64>,
    /// SFU process CPU over the window, percent of one core (user + system, all threads).
    pub sfu_cpu_pct: Option<f64>,
    /// How busy the SFU's core was (includes interrupts and softirqs), percent.
    pub sfu_core_busy_pct: Option<f64>,
    /// SFU resident memory at the end of the window.
    pub sfu_rss_bytes: Option<u64>,
    /// (RSS - RSS before any call) / calls.
    pub sfu_rss_per_call_bytes: Option<f64>,
    /// SFU CPU per packet received by the clients (= forwarded), nanoseconds.
    pub sfu_ns_per_forwarded_packet: Option<f64>,
    /// Tester process CPU over the window, percent of one core.
    pub tester_cpu_pct: f64,
    /// How busy the tester's core was, percent.
    pub client_core_busy_pct: Option<f64>,
    /// The tester's core was above 90% busy, or its media clock fell behind: the tester may
    /// have been the bottleneck.
    pub client_bound: bool,
    /// The tester itself was saturated (its process above 90% of a core, or its media clock
    /// late), as opposed to its core being busy with other processes.
    pub tester_saturated: bool,
    /// Busy time of the SFU's core not spent in the SFU process (other processes, and
    /// interrupts and softirqs), percent.
    pub sfu_core_other_pct: Option<f64>,
    /// Busy time of the tester's core not spent in the tester process, percent.
    pub client_core_other_pct: Option<f64>,
    /// Times a client fell more than 100 ms behind its media clock in the window.
    pub late: u64,
    /// Corrupt packets in the window.
    pub corrupt: u64,
    /// Datagrams the tester's socket refused in the window.
    pub send_errors: u64,
    /// Keyframe requests the clients got in the window.
    pub keyframe_requests: u64,
    /// Longest loop turn of the tester's media thread in the window, microseconds.
    pub tester_max_turn_us: u64,
    /// CPU pressure at the end of the window (`/proc/pressure/cpu` some avg10), percent:
    /// how much of the time some task was waiting for a core.
    pub cpu_pressure_pct: Option<f64>,
}

/// A whole ramp.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RampResult {
    /// `shopcall` or `janus`.
    pub target: String,
    /// The customer's camera.
    pub customer_camera: super::CustomerCamera,
    /// How it ran.
    pub config: RampConfig,
    /// SFU RSS before the first call.
    pub baseline_rss_bytes: Option<u64>,
    /// Every measured step.
    pub steps: Vec<StepResult>,
    /// The most calls of a step with loss and p99 latency at or under their limits where the
    /// tester was not saturated.
    pub max_calls_ok: usize,
    /// The most calls of a step with loss and p99 latency at or under their limits, whatever
    /// the tester did.
    pub max_calls_ok_any: usize,
    /// Why the ramp stopped.
    pub stop_reason: String,
}

struct Probe {
    at: Instant,
    snap: Snapshot,
    sfu_cpu: Option<Duration>,
    sfu_core: Option<procfs::CoreTimes>,
    tester_cpu: Duration,
    client_core: Option<procfs::CoreTimes>,
}

async fn probe(net: &NetHandle, c: &RampConfig) -> anyhow::Result<Probe> {
    let snap = net.snapshot().await?;
    Ok(Probe {
        at: Instant::now(),
        snap,
        sfu_cpu: c.sfu_pid.and_then(|p| procfs::process_cpu(p).ok()),
        sfu_core: c.sfu_cpu.and_then(|n| procfs::core_times(n).ok()),
        tester_cpu: procfs::process_cpu(std::process::id()).unwrap_or_default(),
        client_core: c.client_cpu.and_then(|n| procfs::core_times(n).ok()),
    })
}

fn us(v: Option<u64>) -> Option<f64> {
    v.map(|ns| ns as f64 / 1000.0)
}

pub(super) fn delta(a: &Counters, b: &Counters) -> Counters {
    Counters {
        sent_audio: b.sent_audio - a.sent_audio,
        sent_video: b.sent_video - a.sent_video,
        sent_unforwarded: b.sent_unforwarded - a.sent_unforwarded,
        recv_audio: b.recv_audio - a.recv_audio,
        recv_video: b.recv_video - a.recv_video,
        corrupt: b.corrupt - a.corrupt,
        keyframe_requests: b.keyframe_requests - a.keyframe_requests,
        refused_writes: b.refused_writes - a.refused_writes,
        late: b.late - a.late,
        send_errors: b.send_errors - a.send_errors,
        datagrams_in: b.datagrams_in - a.datagrams_in,
        datagrams_out: b.datagrams_out - a.datagrams_out,
        unrouted: b.unrouted - a.unrouted,
        connected: b.connected,
        failed: b.failed,
        max_turn_us: b.max_turn_us,
    }
}

/// Measures one window between two probes (the latency is what the second one collected).
fn measure(
    p0: &Probe,
    p1: &Probe,
    calls: usize,
    baseline_rss: Option<u64>,
    c: &RampConfig,
) -> StepResult {
    let secs = p1.at.duration_since(p0.at).as_secs_f64().max(1e-3);
    let d = delta(&p0.snap.counters, &p1.snap.counters);
    let sent = (d.sent_audio + d.sent_video) as f64;
    let recv = (d.recv_audio + d.recv_video) as f64;
    let loss = if sent > 0.0 {
        ((sent - recv) / sent * 100.0).max(0.0)
    } else {
        0.0
    };
    let lat: &Histogram = &p1.snap.latency;
    let sfu_cpu = match (p0.sfu_cpu, p1.sfu_cpu) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let sfu_rss = c.sfu_pid.and_then(|p| procfs::process_rss(p).ok());
    let tester = p1.tester_cpu.saturating_sub(p0.tester_cpu).as_secs_f64() / secs * 100.0;
    let client_core = match (&p0.client_core, &p1.client_core) {
        (Some(a), Some(b)) => Some(b.busy_since(a) * 100.0),
        _ => None,
    };
    let sfu_core = match (&p0.sfu_core, &p1.sfu_core) {
        (Some(a), Some(b)) => Some(b.busy_since(a) * 100.0),
        _ => None,
    };
    let client_bound = client_core.unwrap_or(tester) > 90.0 || d.late > 0;
    let tester_saturated = tester > 90.0 || d.late > 0;
    let sfu_cpu_pct = sfu_cpu.map(|d| d.as_secs_f64() / secs * 100.0);
    StepResult {
        calls,
        peers_connected: d.connected,
        window_secs: secs,
        sent_pps: sent / secs,
        recv_pps: recv / secs,
        loss_pct: loss,
        latency_p50_us: us(lat.quantile(0.5)),
        latency_p99_us: us(lat.quantile(0.99)),
        latency_max_us: (lat.count() > 0).then(|| lat.max() as f64 / 1000.0),
        sfu_cpu_pct,
        sfu_core_other_pct: sfu_core
            .zip(sfu_cpu_pct)
            .map(|(busy, own)| (busy - own).max(0.0)),
        client_core_other_pct: client_core.map(|busy| (busy - tester).max(0.0)),
        tester_saturated,
        sfu_core_busy_pct: sfu_core,
        sfu_rss_bytes: sfu_rss,
        sfu_rss_per_call_bytes: match (sfu_rss, baseline_rss) {
            (Some(r), Some(b)) if calls > 0 => Some((r.saturating_sub(b)) as f64 / calls as f64),
            _ => None,
        },
        sfu_ns_per_forwarded_packet: sfu_cpu
            .filter(|_| recv > 0.0)
            .map(|d| d.as_nanos() as f64 / recv),
        tester_cpu_pct: tester,
        client_core_busy_pct: client_core,
        client_bound,
        late: d.late,
        corrupt: d.corrupt,
        send_errors: d.send_errors,
        keyframe_requests: d.keyframe_requests,
        tester_max_turn_us: d.max_turn_us,
        cpu_pressure_pct: procfs::cpu_pressure(),
        ..StepResult::default()
    }
}

/// Sets up `n` calls numbered from `first`, `concurrency` at a time and at most `rate` per
/// second. Returns the calls that were set up and how many failed.
pub(super) async fn setup_calls(
    target: &Target,
    net: &NetHandle,
    first: u64,
    n: usize,
    c: &RampConfig,
    pb: &ProgressBar,
) -> (Vec<CallHandle>, usize) {
    let mut set = JoinSet::new();
    let mut done = Vec::with_capacity(n);
    let mut failed = 0;
    let gap = if c.setup_rate > 0.0 {
        Duration::from_secs_f64(1.0 / c.setup_rate)
    } else {
        Duration::ZERO
    };
    let mut next_start = Instant::now();
    let mut started = 0;
    let mut first_error: Option<String> = None;
    while started < n || !set.is_empty() {
        if started < n && set.len() < c.setup_concurrency.max(1) {
            let now = Instant::now();
            if now < next_start {
                tokio::time::sleep(next_start - now).await;
            }
            next_start = Instant::now() + gap;
            let (t, netc) = (target.clone(), net.clone());
            let index = first + started as u64;
            set.spawn(async move { t.setup_call(&netc, index).await });
            started += 1;
            continue;
        }
        match set.join_next().await {
            Some(Ok(Ok(call))) => done.push(call),
            Some(Ok(Err(e))) => {
                failed += 1;
                if first_error.is_none() {
                    first_error = Some(format!("{e:#}"));
                    say(pb, format!("  call setup failed: {e:#}"));
                }
            }
            Some(Err(e)) => {
                failed += 1;
                say(pb, format!("  call setup task failed: {e}"));
            }
            None => {}
        }
        pb.set_message(format!("setting up calls: {}/{n}", done.len() + failed));
    }
    (done, failed)
}

/// Waits until every receiver of `calls` got media, or the join timeout. Returns the join
/// times (ms) of the calls that made it, and how many did not.
pub(super) async fn wait_joined(
    net: &NetHandle,
    calls: &[CallHandle],
    c: &RampConfig,
    pb: &ProgressBar,
) -> anyhow::Result<(Vec<f64>, usize)> {
    let deadline = Instant::now() + Duration::from_secs_f64(c.join_timeout_secs);
    let keys: Vec<_> = calls
        .iter()
        .flat_map(|c| c.receivers.iter().copied())
        .collect();
    loop {
        let info = net.info(keys.clone()).await?;
        let all = info.iter().all(|i| i.first_rx.is_some());
        if all || Instant::now() >= deadline {
            let mut joins = Vec::new();
            let mut failures = 0;
            let mut i = 0;
            for call in calls {
                let mine = &info[i..i + call.receivers.len()];
                i += call.receivers.len();
                match mine.iter().map(|x| x.first_rx).collect::<Option<Vec<_>>>() {
                    Some(times) => {
                        let last = times.into_iter().max().unwrap_or(call.created);
                        joins.push(
                            last.saturating_duration_since(call.created).as_secs_f64() * 1000.0,
                        );
                    }
                    None => {
                        if failures == 0 {
                            say(
                                pb,
                                format!(
                                    "  call {} got no media within {:.0} s: receivers {:?}",
                                    call.id, c.join_timeout_secs, mine
                                ),
                            );
                        }
                        failures += 1;
                    }
                }
            }
            return Ok((joins, failures));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

/// Runs the ramp against `target`. The calls stay up at the end; they are returned for
/// teardown.
pub async fn run(
    target: &Target,
    net: &NetHandle,
    c: &RampConfig,
    camera: super::CustomerCamera,
) -> anyhow::Result<(RampResult, Vec<CallHandle>)> {
    let baseline_rss = c.sfu_pid.and_then(|p| procfs::process_rss(p).ok());
    let pb = ProgressBar::new(c.steps.len() as u64);
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix:>8} [{bar:24}] step {pos}/{len} {elapsed_precise} {msg}",
        )
        .context("progress template")?
        .progress_chars("=> "),
    );
    pb.set_prefix(target.name());
    pb.enable_steady_tick(Duration::from_millis(250));
    let mut calls: Vec<CallHandle> = Vec::new();
    let mut result = RampResult {
        target: target.name().to_owned(),
        customer_camera: camera,
        config: c.clone(),
        baseline_rss_bytes: baseline_rss,
        steps: Vec::new(),
        max_calls_ok: 0,
        max_calls_ok_any: 0,
        stop_reason: "all steps done".to_owned(),
    };
    let mut failed_total = 0;
    let mut next_index = 0u64;
    for &want in &c.steps {
        if c.deadline.is_some_and(|d| Instant::now() >= d) {
            result.stop_reason = "time limit".to_owned();
            break;
        }
        let n = want.saturating_sub(calls.len());
        let (new, failed) = setup_calls(target, net, next_index, n, c, &pb).await;
        next_index += n as u64;
        failed_total += failed;
        pb.set_message(format!("{want} calls: waiting for media"));
        let (mut joins, join_failures) = wait_joined(net, &new, c, &pb).await?;
        calls.extend(new);
        pb.set_message(format!("{} calls: settling", calls.len()));
        tokio::time::sleep(Duration::from_secs_f64(c.settle_secs)).await;
        pb.set_message(format!(
            "{} calls: measuring {:.0} s",
            calls.len(),
            c.step_secs
        ));
        let p0 = probe(net, c).await?;
        tokio::time::sleep(Duration::from_secs_f64(c.step_secs)).await;
        let p1 = probe(net, c).await?;
        let mut step = measure(&p0, &p1, calls.len(), baseline_rss, c);
        joins.sort_by(f64::total_cmp);
        step.join_p50_ms = quantile(&joins, 0.5);
        step.join_p99_ms = quantile(&joins, 0.99);
        step.setup_failures = failed_total;
        step.join_failures = join_failures;
        pb.inc(1);
        say(&pb, step_line(target.name(), &step));
        let loss_ok = step.loss_pct <= c.max_loss_pct;
        let latency_ok = step
            .latency_p99_us
            .is_none_or(|us| us <= c.max_p99_ms * 1000.0);
        if loss_ok && latency_ok {
            result.max_calls_ok_any = result.max_calls_ok_any.max(step.calls);
            if !step.tester_saturated {
                result.max_calls_ok = result.max_calls_ok.max(step.calls);
            }
        }
        let over_cpu = step.sfu_cpu_pct.is_some_and(|p| p > c.cpu_ceiling_pct);
        let over_latency = step
            .latency_p99_us
            .is_some_and(|us| us > c.max_p99_ms * 1000.0);
        let too_many_failures = failed + join_failures > n / 10 + 1;
        result.steps.push(step);
        if !loss_ok {
            result.stop_reason = format!("loss above {}%", c.max_loss_pct);
            break;
        }
        if over_latency {
            result.stop_reason = format!("p99 latency above {} ms", c.max_p99_ms);
            break;
        }
        if over_cpu {
            result.stop_reason = format!("SFU CPU above {}% of a core", c.cpu_ceiling_pct);
            break;
        }
        if too_many_failures {
            result.stop_reason = format!(
                "{} of {n} new calls failed to set up or join",
                failed + join_failures
            );
            break;
        }
    }
    pb.finish_and_clear();
    Ok((result, calls))
}

/// A line above the progress bar, or on stdout when there is no bar (not a terminal).
pub(super) fn say(pb: &ProgressBar, line: impl AsRef<str>) {
    if pb.is_hidden() {
        println!("{}", line.as_ref());
    } else {
        pb.println(line);
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format!("{x:.digits$}"))
}

/// One line per step, for the terminal.
pub fn step_line(name: &str, s: &StepResult) -> String {
    format!(
        "{name:>8} {calls:>5} calls | {sent:>8.0} pps sent {recv:>8.0} recv | loss {loss:>6.3}% | \
         latency p50 {p50:>7} p99 {p99:>7} us | join p50 {j50:>6} p99 {j99:>6} ms | SFU cpu {cpu:>5}% \
         rss {rss:>6} MiB {nspp:>6} ns/pkt | tester {tcpu:>5.1}% turn {turn} us late {late} | psi {psi}%{bound}",
        calls = s.calls,
        sent = s.sent_pps,
        recv = s.recv_pps,
        loss = s.loss_pct,
        p50 = opt(s.latency_p50_us, 0),
        p99 = opt(s.latency_p99_us, 0),
        j50 = opt(s.join_p50_ms, 0),
        j99 = opt(s.join_p99_ms, 0),
        cpu = opt(s.sfu_cpu_pct, 1),
        rss = opt(s.sfu_rss_bytes.map(|b| b as f64 / 1048576.0), 1),
        nspp = opt(s.sfu_ns_per_forwarded_packet, 0),
        tcpu = s.tester_cpu_pct,
        turn = s.tester_max_turn_us,
        late = s.late,
        psi = opt(s.cpu_pressure_pct, 0),
        bound = if s.client_bound { " CLIENT-BOUND" } else { "" },
    )
}
