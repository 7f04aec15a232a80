//! shopcall-load: drives a real SFU with real WebRTC clients and finds how many one-to-one
//! calls it carries at <= 1% loss.
//!
//! It plays the signaling tier (gRPC to `shopcalld`, or HTTP to Janus's videoroom with
//! `--target janus` / `--compare janus`) and every client (sans-IO `rtc` peer connections on
//! one media thread: each publishes 50 pps Opus-like audio and ~150 pps, ~1.5 Mbit/s VP8-like
//! video with keyframes, and receives the other side). Calls are added in steps; each step is
//! measured once steady. Results: `<out>/report.json`, `report.md`, `chart.svg`.
//!
//! `--soak DURATION --calls N` holds N calls instead (with `--churn-every SECS`, the oldest
//! call, or the newest with `--churn-pick newest`, ends and a new one starts that often), samples the daemon's RSS, open file
//! descriptors, threads, CPU and the window's loss every `--sample-secs`, and exits non-zero
//! if RSS or fds grew after the warm-up (least-squares slope over `--rss-growth-limit`
//! percent per 10 minutes, fd spread over `--fd-tolerance`), if loss stayed above
//! `--max-loss` for `--loss-windows` samples, or if calls were left in the daemon. Results:
//! `<out>/soak.json`, `soak.md`, `soak.svg`.
//!
//! ```text
//! cargo build --release -p shopcalld -p shopcall-benches
//! target/release/shopcall-load --sfu-cpu 0 --client-cpu 1          # the full ramp
//! target/release/shopcall-load --smoke                             # CI: 3 calls, ~5 s
//! target/release/shopcall-load --sfu-cpu 0 --client-cpu 1 --soak 30m --calls 60 --churn-every 5
//! bash benches/compare.sh                                          # side by side with Janus
//! ```
//!
//! Everything stays on loopback (or inside the network namespaces compare.sh makes), and every
//! phase is bounded in time.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use shopcall_benches::load::net::{NetConfig, NetHandle};
use shopcall_benches::load::ramp::{self, RampConfig, RampResult};
use shopcall_benches::load::report::{self, Machine, Report};
use shopcall_benches::load::shopcall::{Daemon, DaemonOptions, Shopcall, default_daemon_path};
use shopcall_benches::load::{
    CallHandle, CustomerCamera, Target, clock_base, end_calls, janus::Janus,
};
use shopcall_benches::load::{growth, soak, soak_report};

/// SFU to compare shopcall with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Other {
    /// Janus videoroom (needs --janus-url).
    Janus,
}

/// The load client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ClientKind {
    /// Sans-IO `rtc` peer connections on one media thread, one socket (the default).
    Lean,
    /// One async `webrtc` TestPeer per participant (shopcall only): measures what that client
    /// costs the tester; stops when the tester's core is full.
    Webrtc,
}

/// The SFU under load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TargetKind {
    /// shopcalld (started by the tester unless --grpc is given).
    Shopcall,
    /// A running Janus (--janus-url).
    Janus,
}

#[derive(Debug, Parser)]
#[command(name = "shopcall-load", version, about, long_about = None)]
struct Args {
    /// CI smoke run: 3 calls for ~5 s; exits non-zero unless media flowed both ways, intact.
    #[arg(long)]
    smoke: bool,
    /// The SFU to load.
    #[arg(long, value_enum, default_value = "shopcall")]
    target: TargetKind,
    /// Run the same ramp against shopcall and then this SFU, and compare.
    #[arg(long, value_enum)]
    compare: Option<Other>,
    /// The load client.
    #[arg(long, value_enum, default_value = "lean")]
    client: ClientKind,

    /// The shopcalld binary to start (default: next to this one).
    #[arg(long)]
    shopcalld: Option<PathBuf>,
    /// Address shopcalld binds and announces when the tester starts it.
    #[arg(long, default_value = "127.0.0.1")]
    sfu_ip: IpAddr,
    /// Start shopcalld inside this network namespace (`ip netns exec`).
    #[arg(long)]
    sfu_netns: Option<String>,
    /// Use an already running shopcalld at this gRPC URL (http://host:port).
    #[arg(long)]
    grpc: Option<String>,
    /// Pid of the running shopcalld given by --grpc, for its CPU and RSS.
    #[arg(long)]
    sfu_pid: Option<u32>,
    /// Janus HTTP API root, e.g. http://10.200.0.1:8088/janus.
    #[arg(long)]
    janus_url: Option<String>,
    /// Pid of that Janus, for its CPU and RSS.
    #[arg(long)]
    janus_pid: Option<u32>,

    /// Pin the SFU the tester starts to this core (and read this core's load).
    #[arg(long)]
    sfu_cpu: Option<usize>,
    /// Pin the tester to this core (and read this core's load).
    #[arg(long)]
    client_cpu: Option<usize>,

    /// Calls per step, ascending (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "25,50,100,150,200,250,300,350,400,450,500,600,700,800,900,1000,1200,1400,1600"
    )]
    steps: Vec<usize>,
    /// Measurement window of each step, seconds.
    #[arg(long, default_value_t = 10.0)]
    step_secs: f64,
    /// Wait after a step's calls all got media, before measuring, seconds.
    #[arg(long, default_value_t = 3.0)]
    settle_secs: f64,
    /// Calls set up at once.
    #[arg(long, default_value_t = 8)]
    setup_concurrency: usize,
    /// At most this many new shopcall calls per second (0: no limit).
    #[arg(long, default_value_t = 0.0)]
    setup_rate: f64,
    /// At most this many new Janus calls per second (it sets up about 3 per second).
    #[arg(long, default_value_t = 3.0)]
    janus_setup_rate: f64,
    /// Seconds a new call may take to get media both ways.
    #[arg(long, default_value_t = 30.0)]
    join_timeout: f64,
    /// Stop after the first step with more loss than this, percent.
    #[arg(long, default_value_t = 1.0)]
    max_loss: f64,
    /// Stop after the first step where the SFU used more than this percent of one core.
    #[arg(long, default_value_t = 92.0)]
    cpu_ceiling: f64,
    /// Stop after the first step whose p99 one-way latency is above this, milliseconds (an
    /// SFU that queues instead of dropping is past its limit too).
    #[arg(long, default_value_t = 50.0)]
    max_p99_ms: f64,
    /// Stop each ramp after this many seconds, whatever the steps say.
    #[arg(long, default_value_t = 1500)]
    time_limit: u64,
    /// The customer's camera.
    #[arg(long, value_enum, default_value = "on")]
    customer_camera: CustomerCamera,

    /// The clients' address block: one address per peer connection, all on one port.
    #[arg(long, default_value = "127.1.0.0/16")]
    client_ips: String,
    /// Device the clients' socket is bound to ("" for none).
    #[arg(long, default_value = "lo")]
    bind_device: String,
    /// Where report.json, report.md and chart.svg go.
    #[arg(long, default_value = "target/load")]
    out: PathBuf,
    /// Load nothing: rewrite report.md and chart.svg in --out from this report.json (or
    /// soak.md and soak.svg from a soak.json).
    #[arg(long)]
    replot: Option<PathBuf>,

    /// Soak instead of a ramp: hold --calls calls for this long (`30m`, `1h30m`, `90s`, or
    /// seconds), sample the SFU's RSS, open fds and threads, and exit non-zero if they grew
    /// (or loss stayed above --max-loss for --loss-windows samples). Writes soak.json,
    /// soak.md and soak.svg in --out.
    #[arg(long, value_parser = soak::parse_duration)]
    soak: Option<Duration>,
    /// Soak: calls to hold (required with --soak; half the capacity the ramp measured on the
    /// same machine is the usual choice, see docs/benchmarks.md).
    #[arg(long)]
    calls: Option<usize>,
    /// Soak: end the oldest call and set up a new one every this many seconds (0: no churn).
    #[arg(long, default_value_t = 0.0)]
    churn_every: f64,
    /// Soak: the call churn ends: the oldest (each call lives --calls x --churn-every), or
    /// the newest (the others live the whole soak).
    #[arg(long, value_enum, default_value = "oldest")]
    churn_pick: soak::ChurnPick,
    /// Soak: seconds between samples.
    #[arg(long, default_value_t = 5.0)]
    sample_secs: f64,
    /// Soak: the warm-up, not judged (default: 10% of --soak, at least 2 minutes, at most
    /// half of --soak).
    #[arg(long, value_parser = soak::parse_duration)]
    warmup: Option<Duration>,
    /// Soak: the largest RSS growth that is "no growth", percent of the RSS per 10 minutes
    /// (least-squares slope over the samples after the warm-up).
    #[arg(long, default_value_t = 1.0)]
    rss_growth_limit: f64,
    /// Soak: the largest spread of the SFU's open fd count after the warm-up that is flat.
    #[arg(long, default_value_t = 2)]
    fd_tolerance: u64,
    /// Soak: stop (failed) after this many samples in a row above --max-loss.
    #[arg(long, default_value_t = 3)]
    loss_windows: usize,
}

fn parse_block(s: &str) -> anyhow::Result<(Ipv4Addr, u32)> {
    let (ip, bits) = s.split_once('/').context("expected ADDRESS/BITS")?;
    let ip: Ipv4Addr = ip.parse().with_context(|| format!("bad address in {s}"))?;
    let bits: u32 = bits.parse().with_context(|| format!("bad prefix in {s}"))?;
    if !(8..=30).contains(&bits) {
        bail!("prefix /{bits} out of range (8..=30)");
    }
    let size = (1u32 << (32 - bits)) - 2;
    let base = u32::from(ip) & !((1u32 << (32 - bits)) - 1);
    Ok((Ipv4Addr::from(base), size))
}

fn pin_self(cpu: usize) -> anyhow::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).context("bad --client-cpu")?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .with_context(|| format!("pinning the tester to core {cpu}"))
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOAD_LOG").unwrap_or_else(|_| {
                "warn,rtc=error,rtc_dtls=error,rtc_ice=error,rtc_srtp=error,rtc_sctp=error".into()
            }),
        )
        .with_writer(std::io::stderr)
        .try_init();
    if args.smoke {
        args.steps = vec![3];
        args.step_secs = 5.0;
        args.settle_secs = 1.0;
        args.time_limit = 60;
        args.join_timeout = 20.0;
    }
    // Before any other thread exists, so all inherit it.
    if let Some(cpu) = args.client_cpu
        && let Err(e) = pin_self(cpu)
    {
        eprintln!("shopcall-load: {e:#}");
        return ExitCode::from(2);
    }
    clock_base();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("shopcall-load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let hard_limit = match args.soak {
        // The soak, the calls' setup and teardown, and a margin.
        Some(d) => d + Duration::from_secs_f64(args.join_timeout * 2.0) + Duration::from_secs(600),
        None => Duration::from_secs(args.time_limit * 2 + 300),
    };
    match runtime.block_on(async { tokio::time::timeout(hard_limit, run(args)).await }) {
        Ok(Ok(true)) => ExitCode::SUCCESS,
        Ok(Ok(false)) => ExitCode::FAILURE,
        Ok(Err(e)) => {
            eprintln!("shopcall-load: {e:#}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("shopcall-load: hard time limit reached");
            ExitCode::FAILURE
        }
    }
}

fn ramp_config(args: &Args, rate: f64, sfu_pid: Option<u32>) -> RampConfig {
    RampConfig {
        steps: args.steps.clone(),
        step_secs: args.step_secs,
        settle_secs: args.settle_secs,
        setup_concurrency: args.setup_concurrency,
        setup_rate: rate,
        join_timeout_secs: args.join_timeout,
        max_loss_pct: args.max_loss,
        cpu_ceiling_pct: args.cpu_ceiling,
        max_p99_ms: args.max_p99_ms,
        sfu_pid,
        sfu_cpu: args.sfu_cpu,
        client_cpu: args.client_cpu,
        deadline: Some(Instant::now() + Duration::from_secs(args.time_limit)),
    }
}

/// Runs the ramp(s); returns whether the run passed (always true but for --smoke).
async fn run(args: Args) -> anyhow::Result<bool> {
    if let Some(json) = &args.replot
        && json.file_name().is_some_and(|n| n == "soak.json")
    {
        let report = soak_report::read(json)?;
        soak_report::write(&report, &args.out)?;
        println!("{}", soak_report::verdict(&report));
        return Ok(true);
    }
    if let Some(json) = &args.replot {
        let report = report::read(json)?;
        report::write(&report, &args.out)?;
        println!("{}", report::summary_table(&report));
        return Ok(true);
    }
    if args.client == ClientKind::Webrtc {
        return run_webrtc_clients(&args).await;
    }
    let (base, size) = parse_block(&args.client_ips)?;
    let (net, media_thread) = NetHandle::start(NetConfig {
        base,
        size,
        port: 0,
        device: (!args.bind_device.is_empty()).then(|| args.bind_device.clone()),
        ..NetConfig::default()
    })?;
    if let Some(duration) = args.soak {
        let passed = run_soak(&args, &net, duration).await;
        net.stop();
        let _ = media_thread.join();
        return passed;
    }
    let mut report = Report {
        machine: Machine::here(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        runs: Vec::new(),
    };
    let mut passed = true;
    let mut kinds = vec![args.target];
    if args.compare == Some(Other::Janus) {
        kinds = vec![TargetKind::Shopcall, TargetKind::Janus];
    }
    for kind in kinds {
        let (result, ok) = match kind {
            TargetKind::Shopcall => run_shopcall(&args, &net).await?,
            TargetKind::Janus => run_janus(&args, &net).await?,
        };
        passed &= ok;
        report.runs.push(result);
    }
    net.stop();
    let _ = media_thread.join();
    report::write(&report, &args.out)?;
    println!("\n{}", report::summary_table(&report));
    if let [a, b] = &report.runs[..]
        && b.max_calls_ok_any > 0
    {
        println!(
            "{} / {} calls within the limits: {:.2}x",
            a.target,
            b.target,
            a.max_calls_ok_any as f64 / b.max_calls_ok_any as f64
        );
    }
    println!(
        "results: {}/report.json, report.md, chart.svg",
        args.out.display()
    );
    Ok(passed)
}

/// The soak: shopcalld (started here, or --grpc with --sfu-pid), --calls calls for
/// `duration`; writes soak.json, soak.md and soak.svg and passes when nothing grew.
async fn run_soak(args: &Args, net: &NetHandle, duration: Duration) -> anyhow::Result<bool> {
    if args.target != TargetKind::Shopcall || args.compare.is_some() {
        bail!("--soak runs against shopcalld only");
    }
    let calls = args
        .calls
        .context("--soak needs --calls N (about half the capacity the ramp measured)")?;
    if calls == 0 {
        bail!("--calls must be at least 1");
    }
    let duration_secs = duration.as_secs_f64();
    let (daemon, url, pid) = match &args.grpc {
        Some(url) => (
            None,
            url.clone(),
            args.sfu_pid
                .context("--grpc with --soak needs --sfu-pid: the soak samples that process")?,
        ),
        None => {
            let d = start_daemon(args)?;
            let url = format!("http://{}", d.grpc);
            let pid = d.pid();
            (Some(d), url, pid)
        }
    };
    let target = Target::Shopcall(Shopcall::connect(&url, args.customer_camera).await?);
    let config = soak::SoakConfig {
        calls,
        duration_secs,
        churn_every_secs: args.churn_every,
        churn_pick: args.churn_pick,
        sample_secs: args.sample_secs,
        settle_secs: args.settle_secs,
        limits: growth::Limits {
            warmup_secs: args.warmup.map_or_else(
                || soak::SoakConfig::default_warmup_secs(duration_secs),
                |w| w.as_secs_f64(),
            ),
            rss_pct_per_10min: args.rss_growth_limit,
            fd_tolerance: args.fd_tolerance,
            min_samples: 4,
        },
        max_loss_pct: args.max_loss,
        loss_windows: args.loss_windows,
        setup_concurrency: args.setup_concurrency,
        setup_rate: args.setup_rate,
        join_timeout_secs: args.join_timeout,
        sfu_pid: pid,
        sfu_cpu: args.sfu_cpu,
        client_cpu: args.client_cpu,
    };
    let result = soak::run(
        &target,
        net,
        &config,
        args.customer_camera,
        Machine::here(),
        std::env::args().collect::<Vec<_>>().join(" "),
        &args.out,
    )
    .await;
    if let Some(d) = daemon {
        d.stop();
    }
    let report = result?;
    soak_report::write(&report, &args.out)?;
    println!("\n{}", soak_report::markdown(&report));
    println!("{}", soak_report::verdict(&report));
    println!(
        "results: {}/soak.json, soak.md, soak.svg",
        args.out.display()
    );
    Ok(report.passed)
}

async fn run_webrtc_clients(args: &Args) -> anyhow::Result<bool> {
    let daemon = start_daemon(args)?;
    let url = format!("http://{}", daemon.grpc);
    let deadline = Instant::now() + Duration::from_secs(args.time_limit);
    let steps = shopcall_benches::load::webrtc_clients::measure(
        &url,
        &args.steps,
        args.step_secs,
        deadline,
    )
    .await?;
    daemon.stop();
    std::fs::create_dir_all(&args.out)?;
    let path = args.out.join("webrtc-clients.json");
    std::fs::write(&path, serde_json::to_string_pretty(&steps)?)?;
    println!("results: {}", path.display());
    Ok(true)
}

async fn run_shopcall(args: &Args, net: &NetHandle) -> anyhow::Result<(RampResult, bool)> {
    let (daemon, url, pid) = match &args.grpc {
        Some(url) => (None, url.clone(), args.sfu_pid),
        None => {
            let d = start_daemon(args)?;
            let url = format!("http://{}", d.grpc);
            let pid = d.pid();
            (Some(d), url, Some(pid))
        }
    };
    let target = Target::Shopcall(Shopcall::connect(&url, args.customer_camera).await?);
    let config = ramp_config(args, args.setup_rate, pid);
    let (result, calls) = ramp::run(&target, net, &config, args.customer_camera).await?;
    let ok = if args.smoke {
        smoke_check(net, &calls, &result, args.customer_camera).await?
    } else {
        true
    };
    end_calls(&target, net, calls).await;
    if let Some(d) = daemon {
        d.stop();
    }
    Ok((result, ok))
}

async fn run_janus(args: &Args, net: &NetHandle) -> anyhow::Result<(RampResult, bool)> {
    let url = args
        .janus_url
        .as_deref()
        .context("--janus-url is required for Janus (see benches/compare.sh)")?;
    let janus = Janus::connect(url, args.customer_camera).await?;
    let target = Target::Janus(janus.clone());
    let config = ramp_config(args, args.janus_setup_rate, args.janus_pid);
    let (result, calls) = ramp::run(&target, net, &config, args.customer_camera).await?;
    let ok = if args.smoke {
        smoke_check(net, &calls, &result, args.customer_camera).await?
    } else {
        true
    };
    end_calls(&target, net, calls).await;
    janus.close().await;
    Ok((result, ok))
}

/// The smoke assertions: every call set up, every receiver got audio (and video where the
/// other side's video is forwarded), nothing corrupt, loss under 5%.
async fn smoke_check(
    net: &NetHandle,
    calls: &[CallHandle],
    result: &RampResult,
    camera: CustomerCamera,
) -> anyhow::Result<bool> {
    let mut problems = Vec::new();
    let want = result.config.steps.first().copied().unwrap_or(0);
    if calls.len() != want {
        problems.push(format!("{} of {want} calls set up", calls.len()));
    }
    let Some(step) = result.steps.last() else {
        println!(
            "SMOKE FAILED: no step was measured ({})",
            result.stop_reason
        );
        return Ok(false);
    };
    if step.recv_pps <= 0.0 {
        problems.push("no media received".to_owned());
    }
    if step.loss_pct > 5.0 {
        problems.push(format!("loss {:.2}% > 5%", step.loss_pct));
    }
    if step.corrupt > 0 {
        problems.push(format!("{} corrupt packets", step.corrupt));
    }
    for call in calls {
        let info = net.info(call.receivers.clone()).await?;
        for (i, p) in info.iter().enumerate() {
            // Receiver 0 is the merchant's side (gets the customer's media), 1 the customer's.
            let video_expected = i == 1 || camera == CustomerCamera::On;
            if p.rx_audio == 0 {
                problems.push(format!("call {}: receiver {i} got no audio", call.id));
            }
            if video_expected && p.rx_video == 0 {
                problems.push(format!("call {}: receiver {i} got no video", call.id));
            }
        }
    }
    if problems.is_empty() {
        println!(
            "SMOKE OK: {} calls, {:.0} packets/s forwarded, loss {:.3}%, latency p50 {:.0} us",
            step.calls,
            step.recv_pps,
            step.loss_pct,
            step.latency_p50_us.unwrap_or(0.0)
        );
        Ok(true)
    } else {
        println!("SMOKE FAILED: {}", problems.join("; "));
        Ok(false)
    }
}

/// Starts shopcalld as the flags say (binary, address, core, namespace).
fn start_daemon(args: &Args) -> anyhow::Result<Daemon> {
    Daemon::start(&DaemonOptions {
        path: args.shopcalld.clone().unwrap_or_else(default_daemon_path),
        ip: args.sfu_ip,
        cpu: args.sfu_cpu,
        netns: args.sfu_netns.clone(),
        extra: Vec::new(),
    })
}
