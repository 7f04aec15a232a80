//! Soak: a fixed number of calls held for a bounded time, with optional churn, while the
//! SFU's memory, file descriptors and threads are sampled; then whether they grew.
//!
//! The calls are set up as the ramp sets them up. Every `churn_every_secs` one call ends
//! (EndCall, then its clients go) and a new one is set up and must get media both ways, so
//! per-call state that teardown leaves behind accumulates and shows. The call ended is the
//! oldest ([`ChurnPick::Oldest`]: every call lives `calls x churn_every_secs`) or the newest
//! ([`ChurnPick::Newest`]: the others live the whole soak, so long-call state is exercised
//! too, and the churned calls are short). Every `sample_secs`:
//! the SFU's RSS (`VmRSS`), open fds (`/proc/<pid>/fd`), threads and CPU, the window's
//! packets and loss, the calls the tester holds and the calls and participants the daemon
//! reports (NodeStats). It stops at the duration, or early (failed) when loss stays above
//! the limit for `loss_windows` samples in a row or the SFU is gone. After the calls are
//! ended, one more sample shows what the daemon keeps with no call.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use super::growth::{self, Growth, Limits, Point};
use super::net::{NetHandle, Snapshot};
use super::ramp::{self, RampConfig};
use super::report::Machine;
use super::{CallHandle, CustomerCamera, Target, procfs};

/// How a soak runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoakConfig {
    /// Calls held.
    pub calls: usize,
    /// Length of the steady phase (after the calls are up), seconds.
    pub duration_secs: f64,
    /// End a call and set up a new one this often, seconds (0: never).
    pub churn_every_secs: f64,
    /// Which call churn ends.
    #[serde(default)]
    pub churn_pick: ChurnPick,
    /// Seconds between samples.
    pub sample_secs: f64,
    /// Wait after the calls got media, before the steady phase, seconds.
    pub settle_secs: f64,
    /// What counts as growth (the warm-up is part of it).
    pub limits: Limits,
    /// Loss above this, percent, counts against `loss_windows`.
    pub max_loss_pct: f64,
    /// Stop (failed) after this many samples in a row above `max_loss_pct`.
    pub loss_windows: usize,
    /// Calls set up at once.
    pub setup_concurrency: usize,
    /// At most this many new calls per second (0: no limit).
    pub setup_rate: f64,
    /// How long a new call may take to get media both ways, seconds.
    pub join_timeout_secs: f64,
    /// The SFU's pid.
    pub sfu_pid: u32,
    /// The core the SFU is pinned to.
    pub sfu_cpu: Option<usize>,
    /// The core the tester is pinned to.
    pub client_cpu: Option<usize>,
}

/// Which call a churn step ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChurnPick {
    /// The oldest: each call lives `calls x churn_every_secs`.
    #[default]
    Oldest,
    /// The newest: the first calls live the whole soak; one slot churns.
    Newest,
}

impl SoakConfig {
    /// The default warm-up: 10 % of the duration, at least 2 minutes, at most half of it.
    pub fn default_warmup_secs(duration_secs: f64) -> f64 {
        (duration_secs * 0.1).max(120.0).min(duration_secs / 2.0)
    }
}

/// One sample: the SFU's state at its time, and the traffic of the window before it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Sample {
    /// Seconds since the steady phase began.
    pub t_secs: f64,
    /// SFU resident memory, KiB.
    pub rss_kib: u64,
    /// SFU open file descriptors.
    pub fds: u64,
    /// SFU threads.
    pub threads: u64,
    /// SFU CPU over the window, percent of one core.
    pub sfu_cpu_pct: f64,
    /// Window length, seconds.
    pub window_secs: f64,
    /// Packets the clients sent in the window that the SFU should forward.
    pub sent: u64,
    /// Packets the clients received in the window.
    pub received: u64,
    /// 1 - received/sent, percent (never negative).
    pub loss_pct: f64,
    /// One-way latency p99 in the window, microseconds.
    pub latency_p99_us: Option<f64>,
    /// Calls the tester holds (set up, not ended).
    pub calls: usize,
    /// Client peer connections connected.
    pub peers_connected: u64,
    /// Calls that exist in the daemon (NodeStats).
    pub daemon_calls: Option<u64>,
    /// Participants that exist in the daemon (NodeStats).
    pub daemon_participants: Option<u64>,
    /// RTP packets the daemon received per second (NodeStats, its own rate window): when
    /// loss shows, whether the packets reached the SFU.
    pub daemon_packets_in_per_sec: Option<f64>,
    /// RTP packets the daemon forwarded per second (NodeStats).
    pub daemon_packets_out_per_sec: Option<f64>,
    /// Calls ended and replaced so far.
    pub churned: u64,
    /// Churn steps that failed so far (setup, media or EndCall).
    pub churn_failures: u64,
    /// Corrupt packets in the window.
    pub corrupt: u64,
    /// Times a client fell behind its media clock in the window (the tester was late).
    pub late: u64,
    /// CPU pressure (`/proc/pressure/cpu` some avg10), percent.
    pub cpu_pressure_pct: Option<f64>,
}

impl Sample {
    fn point(&self) -> Point {
        Point {
            t_secs: self.t_secs,
            rss_kib: self.rss_kib as f64,
            fds: self.fds,
            threads: self.threads,
        }
    }
}

/// The SFU with no load on it: before the first call and after the last one ended.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Rest {
    /// Resident memory, KiB.
    pub rss_kib: u64,
    /// Open file descriptors.
    pub fds: u64,
    /// Threads.
    pub threads: u64,
    /// Calls in the daemon (NodeStats).
    pub daemon_calls: Option<u64>,
    /// Participants in the daemon (NodeStats).
    pub daemon_participants: Option<u64>,
}

/// A whole soak.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoakReport {
    /// The machine.
    pub machine: Machine,
    /// The command line.
    pub command: String,
    /// `shopcall` (or `janus`).
    pub target: String,
    /// The customer's camera.
    pub customer_camera: CustomerCamera,
    /// How it ran.
    pub config: SoakConfig,
    /// The SFU before any call.
    pub before: Option<Rest>,
    /// Join times of the first calls, p50 and p99, ms.
    pub join_ms: (Option<f64>, Option<f64>),
    /// Join times of the calls set up by churn, p50 and p99, ms.
    pub churn_join_ms: (Option<f64>, Option<f64>),
    /// Every sample of the steady phase.
    pub samples: Vec<Sample>,
    /// The SFU after every call ended.
    pub after: Option<Rest>,
    /// Growth after the warm-up (none when the soak did not get that far).
    pub growth: Option<Growth>,
    /// Why the soak stopped.
    pub stop_reason: String,
    /// Everything wrong, one line each: growth, loss, calls left behind, failures.
    pub problems: Vec<String>,
    /// No problem.
    pub passed: bool,
}

/// Parses a duration: `90`, `90s`, `30m`, `1h`, `1h30m`, `2.5m` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".to_owned());
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| format!("{s}: {e}"));
    }
    let mut total = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{s}: a number without a unit at the end"))?;
        if digits == 0 {
            return Err(format!("{s}: expected a number before {rest}"));
        }
        let value: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{s}: bad number {}", &rest[..digits]))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" | "min" => 60.0,
            "s" => 1.0,
            other => return Err(format!("{s}: unknown unit {other:?} (h, m, s)")),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|e| format!("{s}: {e}"))
}

struct Probe {
    at: Instant,
    snap: Snapshot,
    sfu_cpu: Duration,
}

async fn probe(net: &NetHandle, pid: u32) -> anyhow::Result<Probe> {
    Ok(Probe {
        at: Instant::now(),
        snap: net.snapshot().await?,
        sfu_cpu: procfs::process_cpu(pid)?,
    })
}

/// What the daemon says of itself (NodeStats), when it answers within 2 s.
async fn node_stats(target: &Target) -> Option<shopcall_proto::v1::NodeStatsResponse> {
    match target {
        Target::Shopcall(s) => tokio::time::timeout(Duration::from_secs(2), s.node_stats())
            .await
            .ok()
            .and_then(Result::ok),
        Target::Janus(_) => None,
    }
}

async fn daemon_counts(target: &Target) -> (Option<u64>, Option<u64>) {
    node_stats(target).await.map_or((None, None), |n| {
        (Some(n.active_calls), Some(n.active_participants))
    })
}

async fn rest(target: &Target, pid: u32) -> anyhow::Result<Rest> {
    let (daemon_calls, daemon_participants) = daemon_counts(target).await;
    Ok(Rest {
        rss_kib: procfs::process_rss(pid)? / 1024,
        fds: procfs::process_fds(pid)?,
        threads: procfs::process_threads(pid)?,
        daemon_calls,
        daemon_participants,
    })
}

fn quantiles(mut v: Vec<f64>) -> (Option<f64>, Option<f64>) {
    v.sort_by(f64::total_cmp);
    let q = |q: f64| {
        (!v.is_empty()).then(|| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1])
    };
    (q(0.5), q(0.99))
}

/// Ends `old` (if any), then sets up call number `index` and waits until both sides got
/// media. Returns the new call and its join time (ms). A new call that gets no media is
/// ended again.
async fn churn_one(
    target: Target,
    net: NetHandle,
    old: Option<CallHandle>,
    index: u64,
    join_timeout: Duration,
) -> anyhow::Result<(CallHandle, f64)> {
    if let Some(old) = old {
        let ended = tokio::time::timeout(Duration::from_secs(10), target.end_call(&old)).await;
        for p in &old.peers {
            net.remove(*p);
        }
        ended
            .context("EndCall timed out")?
            .with_context(|| format!("ending call {}", old.id))?;
    }
    let call = tokio::time::timeout(join_timeout, target.setup_call(&net, index))
        .await
        .context("call setup timed out")??;
    let deadline = Instant::now() + join_timeout;
    loop {
        let info = net.info(call.receivers.clone()).await?;
        if let Some(times) = info.iter().map(|i| i.first_rx).collect::<Option<Vec<_>>>() {
            let last = times.into_iter().max().unwrap_or(call.created);
            let ms = last.saturating_duration_since(call.created).as_secs_f64() * 1000.0;
            return Ok((call, ms));
        }
        if Instant::now() >= deadline {
            let _ = tokio::time::timeout(Duration::from_secs(10), target.end_call(&call)).await;
            for p in &call.peers {
                net.remove(*p);
            }
            anyhow::bail!("new call {} got no media within {join_timeout:?}", call.id);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sample_line(s: &Sample) -> String {
    format!(
        "{t:>7.0} s | rss {rss:>7.1} MiB fds {fds:>4} threads {thr:>3} cpu {cpu:>5.1}% | \
         {pps:>7.0} pps loss {loss:>6.3}% (SFU in {pin} out {pout}) | calls {calls} (daemon {dc}) churned {ch} failed {cf} | psi {psi}%",
        t = s.t_secs,
        rss = s.rss_kib as f64 / 1024.0,
        fds = s.fds,
        thr = s.threads,
        cpu = s.sfu_cpu_pct,
        pps = s.received as f64 / s.window_secs.max(1e-3),
        loss = s.loss_pct,
        pin = s
            .daemon_packets_in_per_sec
            .map_or_else(|| "-".to_owned(), |p| format!("{p:.0}")),
        pout = s
            .daemon_packets_out_per_sec
            .map_or_else(|| "-".to_owned(), |p| format!("{p:.0}")),
        calls = s.calls,
        dc = s
            .daemon_calls
            .map_or_else(|| "-".to_owned(), |c| c.to_string()),
        ch = s.churned,
        cf = s.churn_failures,
        psi = s
            .cpu_pressure_pct
            .map_or_else(|| "-".to_owned(), |p| format!("{p:.0}")),
    )
}

/// Runs a soak against `target` (the SFU with pid `c.sfu_pid`), ends its calls, and judges
/// the samples. `out` gets `soak.json` once a minute while it runs (the caller writes the
/// final report).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    target: &Target,
    net: &NetHandle,
    c: &SoakConfig,
    camera: CustomerCamera,
    machine: Machine,
    command: String,
    out: &Path,
) -> anyhow::Result<SoakReport> {
    let pid = c.sfu_pid;
    let mut report = SoakReport {
        machine,
        command,
        target: target.name().to_owned(),
        customer_camera: camera,
        config: c.clone(),
        before: Some(rest(target, pid).await?),
        join_ms: (None, None),
        churn_join_ms: (None, None),
        samples: Vec::new(),
        after: None,
        growth: None,
        stop_reason: String::new(),
        problems: Vec::new(),
        passed: false,
    };
    let pb = ProgressBar::new(c.duration_secs.ceil() as u64);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>8} [{bar:24}] {elapsed_precise} / {len}s {msg}")
            .context("progress template")?
            .progress_chars("=> "),
    );
    pb.set_prefix("soak");
    pb.enable_steady_tick(Duration::from_millis(500));

    let setup = RampConfig {
        steps: vec![c.calls],
        step_secs: 0.0,
        settle_secs: c.settle_secs,
        setup_concurrency: c.setup_concurrency,
        setup_rate: c.setup_rate,
        join_timeout_secs: c.join_timeout_secs,
        max_loss_pct: c.max_loss_pct,
        cpu_ceiling_pct: 100.0,
        max_p99_ms: f64::MAX,
        sfu_pid: Some(pid),
        sfu_cpu: c.sfu_cpu,
        client_cpu: c.client_cpu,
        deadline: None,
    };
    let (mut calls, failed) = ramp::setup_calls(target, net, 0, c.calls, &setup, &pb).await;
    pb.set_message(format!("{} calls: waiting for media", calls.len()));
    let (joins, join_failures) = ramp::wait_joined(net, &calls, &setup, &pb).await?;
    report.join_ms = quantiles(joins);
    ramp::say(
        &pb,
        format!(
            "soak: {} of {} calls set up ({} failed to set up, {} got no media); join p50 {:.0} ms",
            calls.len(),
            c.calls,
            failed,
            join_failures,
            report.join_ms.0.unwrap_or(0.0)
        ),
    );
    if failed + join_failures > c.calls / 10 {
        report.stop_reason = format!(
            "{} of {} calls failed to set up or join",
            failed + join_failures,
            c.calls
        );
        report.problems.push(report.stop_reason.clone());
        pb.finish_and_clear();
        teardown(target, net, calls, &mut report, pid).await;
        return Ok(report);
    }
    tokio::time::sleep(Duration::from_secs_f64(c.settle_secs)).await;

    let start = Instant::now();
    let end = start + Duration::from_secs_f64(c.duration_secs);
    let sample_every = Duration::from_secs_f64(c.sample_secs.max(0.5));
    let mut sample_tick = tokio::time::interval_at((start + sample_every).into(), sample_every);
    sample_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let churn_every = Duration::from_secs_f64(c.churn_every_secs.max(0.0));
    let churning = !churn_every.is_zero();
    let mut churn_tick = tokio::time::interval_at(
        (start + churn_every.max(Duration::from_millis(1))).into(),
        churn_every.max(Duration::from_millis(1)),
    );
    churn_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut churn_task: JoinSet<anyhow::Result<(CallHandle, f64)>> = JoinSet::new();
    let join_timeout = Duration::from_secs_f64(c.join_timeout_secs);
    let mut next_index = c.calls as u64;
    let (mut churned, mut churn_failures) = (0u64, 0u64);
    let mut churn_joins = Vec::new();
    let mut lossy_in_a_row = 0usize;
    let mut prev = probe(net, pid).await?;
    report.stop_reason = "duration reached".to_owned();
    let mut failed_early = false;
    loop {
        tokio::select! {
            _ = sample_tick.tick() => {
                let now = probe(net, pid).await;
                let (rss, fds, threads) = (
                    procfs::process_rss(pid),
                    procfs::process_fds(pid),
                    procfs::process_threads(pid),
                );
                let (Ok(now), Ok(rss), Ok(fds), Ok(threads)) = (now, rss, fds, threads) else {
                    report.stop_reason = "the SFU process is gone".to_owned();
                    failed_early = true;
                    break;
                };
                let node = node_stats(target).await;
                let secs = now.at.duration_since(prev.at).as_secs_f64().max(1e-3);
                let d = ramp::delta(&prev.snap.counters, &now.snap.counters);
                let sent = d.sent_audio + d.sent_video;
                let received = d.recv_audio + d.recv_video;
                let s = Sample {
                    t_secs: now.at.duration_since(start).as_secs_f64(),
                    rss_kib: rss / 1024,
                    fds,
                    threads,
                    sfu_cpu_pct: now.sfu_cpu.saturating_sub(prev.sfu_cpu).as_secs_f64() / secs * 100.0,
                    window_secs: secs,
                    sent,
                    received,
                    loss_pct: if sent > 0 {
                        ((sent as f64 - received as f64) / sent as f64 * 100.0).max(0.0)
                    } else {
                        0.0
                    },
                    latency_p99_us: now.snap.latency.quantile(0.99).map(|ns| ns as f64 / 1000.0),
                    calls: calls.len(),
                    peers_connected: d.connected,
                    daemon_calls: node.as_ref().map(|n| n.active_calls),
                    daemon_participants: node.as_ref().map(|n| n.active_participants),
                    daemon_packets_in_per_sec: node.as_ref().map(|n| n.packets_in_per_second),
                    daemon_packets_out_per_sec: node.as_ref().map(|n| n.packets_out_per_second),
                    churned,
                    churn_failures,
                    corrupt: d.corrupt,
                    late: d.late,
                    cpu_pressure_pct: procfs::cpu_pressure(),
                };
                prev = now;
                pb.set_position(s.t_secs as u64);
                pb.set_message(format!(
                    "rss {:.1} MiB fds {} loss {:.3}% calls {} churned {}",
                    s.rss_kib as f64 / 1024.0, s.fds, s.loss_pct, s.calls, s.churned
                ));
                ramp::say(&pb, sample_line(&s));
                lossy_in_a_row = if s.loss_pct > c.max_loss_pct { lossy_in_a_row + 1 } else { 0 };
                report.samples.push(s);
                if report.samples.len().is_multiple_of(12) {
                    let _ = super::soak_report::write_json(&report, out);
                }
                if lossy_in_a_row >= c.loss_windows.max(1) {
                    report.stop_reason = format!(
                        "loss above {}% for {} samples in a row",
                        c.max_loss_pct, lossy_in_a_row
                    );
                    failed_early = true;
                    break;
                }
                if Instant::now() >= end {
                    break;
                }
            }
            _ = churn_tick.tick(), if churning && churn_task.is_empty() => {
                // Replace a call; refill without ending one after a failed step.
                let old = (calls.len() >= c.calls).then(|| match c.churn_pick {
                    ChurnPick::Oldest => calls.remove(0),
                    ChurnPick::Newest => calls.remove(calls.len() - 1),
                });
                churn_task.spawn(churn_one(target.clone(), net.clone(), old, next_index, join_timeout));
                next_index += 1;
            }
            Some(done) = churn_task.join_next(), if !churn_task.is_empty() => {
                match done {
                    Ok(Ok((call, ms))) => {
                        calls.push(call);
                        churn_joins.push(ms);
                        churned += 1;
                    }
                    Ok(Err(e)) => {
                        churn_failures += 1;
                        if churn_failures <= 5 {
                            ramp::say(&pb, format!("  churn failed: {e:#}"));
                        }
                    }
                    Err(e) => {
                        churn_failures += 1;
                        ramp::say(&pb, format!("  churn task failed: {e}"));
                    }
                }
            }
        }
    }
    // A churn step still running finishes (bounded by its own timeouts) before teardown.
    while let Some(done) = churn_task.join_next().await {
        if let Ok(Ok((call, ms))) = done {
            calls.push(call);
            churn_joins.push(ms);
            churned += 1;
        } else {
            churn_failures += 1;
        }
    }
    pb.finish_and_clear();
    report.churn_join_ms = quantiles(churn_joins);
    if failed_early {
        report.problems.push(report.stop_reason.clone());
    }
    if churn_failures > 0 {
        report.problems.push(format!(
            "{churn_failures} of {} churn steps failed",
            churned + churn_failures
        ));
    }
    let points: Vec<Point> = report.samples.iter().map(Sample::point).collect();
    let g = growth::assess(&points, &c.limits);
    report.problems.extend(g.reasons.iter().cloned());
    report.growth = Some(g);
    let most = report
        .samples
        .iter()
        .filter_map(|s| s.daemon_calls)
        .max()
        .unwrap_or(0);
    // A churn step ends the old call before it sets up the new one, so the daemon should
    // never hold more calls than the tester; one more is allowed for a call it is finishing.
    if most > c.calls as u64 + 1 {
        report.problems.push(format!(
            "the daemon held up to {most} calls while the tester held at most {}",
            c.calls
        ));
    }
    teardown(target, net, calls, &mut report, pid).await;
    report.passed = report.problems.is_empty();
    Ok(report)
}

/// Ends every call, waits until the daemon reports none (at most 15 s, then 3 s more for
/// its timers), and records the SFU at rest.
async fn teardown(
    target: &Target,
    net: &NetHandle,
    calls: Vec<CallHandle>,
    report: &mut SoakReport,
    pid: u32,
) {
    super::end_calls(target, net, calls).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (left, _) = daemon_counts(target).await;
        if left.is_none_or(|n| n == 0) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    match rest(target, pid).await {
        Ok(after) => {
            if let Some(n) = after.daemon_calls.filter(|n| *n > 0) {
                report.problems.push(format!(
                    "{n} calls left in the daemon after every call ended"
                ));
            }
            if let Some(n) = after.daemon_participants.filter(|n| *n > 0) {
                report.problems.push(format!(
                    "{n} participants left in the daemon after every call ended"
                ));
            }
            if let Some(before) = &report.before
                && after.fds > before.fds + report.config.limits.fd_tolerance
            {
                report.problems.push(format!(
                    "open fds {} after every call ended, {} before the first",
                    after.fds, before.fds
                ));
            }
            report.after = Some(after);
        }
        Err(e) => report
            .problems
            .push(format!("the SFU after teardown: {e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let d = |s| parse_duration(s).unwrap().as_secs_f64();
        assert_eq!(d("90"), 90.0);
        assert_eq!(d("90s"), 90.0);
        assert_eq!(d("30m"), 1800.0);
        assert_eq!(d("30min"), 1800.0);
        assert_eq!(d("1h30m"), 5400.0);
        assert_eq!(d("2.5m"), 150.0);
        assert_eq!(d("1h0m5s"), 3605.0);
        for bad in ["", "m", "10x", "5m3", "-3", "1h-2m"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn default_warmup() {
        assert_eq!(SoakConfig::default_warmup_secs(1800.0), 180.0);
        assert_eq!(SoakConfig::default_warmup_secs(600.0), 120.0);
        assert_eq!(SoakConfig::default_warmup_secs(60.0), 30.0);
    }

    #[test]
    fn quantiles_of_join_times() {
        assert_eq!(quantiles(vec![]), (None, None));
        let v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(quantiles(v), (Some(50.0), Some(99.0)));
    }
}
