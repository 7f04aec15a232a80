//! Soak report: `soak.json` (every sample), `soak.md` (the verdict and a table) and
//! `soak.svg` (RSS, file descriptors and threads, and loss over time).

use std::path::Path;

use anyhow::{Context, anyhow};
use plotters::prelude::*;

use super::soak::{Sample, SoakReport};

/// Writes `soak.json` into `dir`.
pub fn write_json(report: &SoakReport, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("soak.json"), serde_json::to_string_pretty(report)?)?;
    Ok(())
}

/// Reads a `soak.json` written by [`write_json`].
pub fn read(path: &Path) -> anyhow::Result<SoakReport> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Writes `soak.json`, `soak.md` and `soak.svg` into `dir`.
pub fn write(report: &SoakReport, dir: &Path) -> anyhow::Result<()> {
    write_json(report, dir)?;
    std::fs::write(dir.join("soak.md"), markdown(report))?;
    chart(report, &dir.join("soak.svg"))
}

fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format!("{x:.digits$}"))
}

fn opt_u(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_owned(), |x| x.to_string())
}

/// The verdict line: "no growth", or what grew.
pub fn verdict(report: &SoakReport) -> String {
    if report.passed {
        "PASS: no growth".to_owned()
    } else {
        format!("FAIL: {}", report.problems.join("; "))
    }
}

/// The summary: the verdict, the figures, then one row per minute (the last sample of it).
pub fn markdown(r: &SoakReport) -> String {
    let c = &r.config;
    let mut t = format!(
        "Machine: {} ({} cores), kernel {}\n\nCommand: `{}`\n\n\
         {} calls for {:.0} s, churn every {} s ({:?} call), a sample every {:.0} s, warm-up \
         {:.0} s; stopped: {}\n\n**{}**\n\n",
        r.machine.cpu,
        r.machine.cores,
        r.machine.kernel,
        r.command,
        c.calls,
        c.duration_secs,
        if c.churn_every_secs > 0.0 {
            format!("{:.0}", c.churn_every_secs)
        } else {
            "-".to_owned()
        },
        c.churn_pick,
        c.sample_secs,
        c.limits.warmup_secs,
        r.stop_reason,
        verdict(r),
    );
    let samples = &r.samples;
    let loss = |f: &dyn Fn(&Sample) -> f64| samples.iter().map(f).fold(0.0, f64::max);
    let (sent, recv) = samples
        .iter()
        .fold((0u64, 0u64), |(a, b), s| (a + s.sent, b + s.received));
    let total_loss = if sent > 0 {
        ((sent as f64 - recv as f64) / sent as f64 * 100.0).max(0.0)
    } else {
        0.0
    };
    t.push_str("| | value |\n|---|---|\n");
    let mut row = |k: &str, v: String| t.push_str(&format!("| {k} | {v} |\n"));
    if let Some(b) = &r.before {
        row(
            "before the first call",
            format!(
                "RSS {:.1} MiB, {} fds, {} threads, {} calls in the daemon",
                mib(b.rss_kib as f64),
                b.fds,
                b.threads,
                opt_u(b.daemon_calls)
            ),
        );
    }
    if let Some(g) = &r.growth
        && !g.inconclusive
    {
        row(
            "RSS after warm-up: start / end (min, max)",
            format!(
                "{:.1} / {:.1} MiB ({:.1}, {:.1})",
                mib(g.rss_start_kib),
                mib(g.rss_end_kib),
                mib(g.rss_min_kib),
                mib(g.rss_max_kib)
            ),
        );
        row(
            "RSS slope (least squares) / limit",
            format!(
                "{:+.1} / {:.1} KiB/min ({:+.3} % per 10 min; limit {} %)",
                g.rss_slope_kib_per_min,
                g.rss_slope_limit_kib_per_min,
                g.rss_slope_kib_per_min * 10.0 / g.rss_mean_kib.max(1.0) * 100.0,
                c.limits.rss_pct_per_10min
            ),
        );
        row(
            "RSS mean, first / last quarter after warm-up",
            format!(
                "{:.1} / {:.1} MiB ({:+.1} KiB/min)",
                mib(g.rss_first_quarter_kib),
                mib(g.rss_last_quarter_kib),
                g.rss_quarter_rate_kib_per_min
            ),
        );
        row(
            "open fds: start / end (min, max)",
            format!(
                "{} / {} ({}, {}), {:+.3}/min; tolerance {}",
                g.fd_start, g.fd_end, g.fd_min, g.fd_max, g.fd_slope_per_min, c.limits.fd_tolerance
            ),
        );
        row(
            "threads (min, max)",
            format!("{}, {}", g.threads_min, g.threads_max),
        );
    }
    if let Some(a) = &r.after {
        row(
            "after every call ended",
            format!(
                "RSS {:.1} MiB, {} fds, {} threads, {} calls and {} participants in the daemon",
                mib(a.rss_kib as f64),
                a.fds,
                a.threads,
                opt_u(a.daemon_calls),
                opt_u(a.daemon_participants)
            ),
        );
    }
    let last = samples.last();
    row(
        "calls churned (failed)",
        format!(
            "{} ({})",
            last.map_or(0, |s| s.churned),
            last.map_or(0, |s| s.churn_failures)
        ),
    );
    row(
        "join p50 / p99: first calls, churned calls",
        format!(
            "{} / {} ms, {} / {} ms",
            opt(r.join_ms.0, 0),
            opt(r.join_ms.1, 0),
            opt(r.churn_join_ms.0, 0),
            opt(r.churn_join_ms.1, 0)
        ),
    );
    row(
        "loss: whole soak / worst sample",
        format!(
            "{total_loss:.4} % of {sent} packets / {:.3} %",
            loss(&|s| s.loss_pct)
        ),
    );
    row(
        "SFU CPU: mean / max",
        format!(
            "{:.1} / {:.1} % of a core",
            samples.iter().map(|s| s.sfu_cpu_pct).sum::<f64>() / samples.len().max(1) as f64,
            loss(&|s| s.sfu_cpu_pct)
        ),
    );
    row(
        "corrupt packets, tester late",
        format!(
            "{}, {}",
            samples.iter().map(|s| s.corrupt).sum::<u64>(),
            samples.iter().map(|s| s.late).sum::<u64>()
        ),
    );
    t.push_str(
        "\n| t (min) | RSS MiB | fds | threads | SFU CPU % | pps received | SFU pps in / out | \
         loss % | p99 ms | calls (daemon) | churned (failed) | CPU pressure % |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut minute = 0u64;
    for (i, s) in samples.iter().enumerate() {
        let last_of_minute = samples
            .get(i + 1)
            .is_none_or(|n| (n.t_secs / 60.0) as u64 > minute);
        if !last_of_minute {
            continue;
        }
        minute = (s.t_secs / 60.0) as u64 + 1;
        t.push_str(&format!(
            "| {:.1} | {:.1} | {} | {} | {:.1} | {:.0} | {} / {} | {:.3} | {} | {} ({}) | {} ({}) | {} |\n",
            s.t_secs / 60.0,
            mib(s.rss_kib as f64),
            s.fds,
            s.threads,
            s.sfu_cpu_pct,
            s.received as f64 / s.window_secs.max(1e-3),
            opt(s.daemon_packets_in_per_sec, 0),
            opt(s.daemon_packets_out_per_sec, 0),
            s.loss_pct,
            opt(s.latency_p99_us.map(|u| u / 1000.0), 2),
            s.calls,
            opt_u(s.daemon_calls),
            s.churned,
            s.churn_failures,
            opt(s.cpu_pressure_pct, 0),
        ));
    }
    t
}

const BLUE: RGBColor = RGBColor(31, 119, 180);
const RED: RGBColor = RGBColor(214, 39, 40);
const GREEN: RGBColor = RGBColor(44, 160, 44);

/// Three panels over minutes: RSS (with the least-squares fit after the warm-up, dashed),
/// open fds and threads, loss. A grey line marks the end of the warm-up.
pub fn chart(r: &SoakReport, path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let panels = root.split_evenly((3, 1));
    let s = &r.samples;
    let xmax = (s.last().map_or(1.0, |x| x.t_secs) / 60.0).max(0.1) * 1.02;
    let warm = r.config.limits.warmup_secs / 60.0;
    let err = |e: &dyn std::fmt::Display| anyhow!("{e}");
    type Series = (&'static str, RGBColor, fn(&Sample) -> f64);
    let panel_series: [(&str, bool, Vec<Series>); 3] = [
        (
            "SFU RSS, MiB (dashed: least-squares fit after the warm-up)",
            false,
            vec![("RSS", BLUE, |x| x.rss_kib as f64 / 1024.0)],
        ),
        (
            "SFU open file descriptors and threads",
            true,
            vec![
                ("fds", RED, |x| x.fds as f64),
                ("threads", GREEN, |x| x.threads as f64),
            ],
        ),
        (
            "loss, % of the window's packets",
            false,
            vec![("loss", BLUE, |x| x.loss_pct)],
        ),
    ];
    for (panel, (caption, from_zero, series)) in panels.iter().zip(panel_series) {
        let values = s
            .iter()
            .flat_map(|x| series.iter().map(move |(_, _, f)| f(x)));
        let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
        let (lo, hi) = if lo > hi { (0.0, 1.0) } else { (lo, hi) };
        let pad = ((hi - lo) * 0.1).max(hi.abs() * 0.02).max(0.5);
        let ymin = if from_zero || caption.starts_with("loss") {
            0.0
        } else {
            (lo - pad).max(0.0)
        };
        let ymax = hi + pad;
        let mut chart = ChartBuilder::on(panel)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .caption(caption, ("sans-serif", 18))
            .build_cartesian_2d(0.0..xmax, ymin..ymax)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("minutes")
            .y_label_formatter(&|v: &f64| format!("{v:.1}"))
            .draw()
            .map_err(|e| err(&e))?;
        if warm > 0.0 && warm < xmax {
            let grey = RGBColor(110, 110, 110);
            chart
                .draw_series(DashedLineSeries::new(
                    [(warm, ymin), (warm, ymax)],
                    4,
                    4,
                    grey.stroke_width(2),
                ))
                .map_err(|e| err(&e))?
                .label("end of warm-up")
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey));
        }
        for (name, color, f) in series {
            let points: Vec<(f64, f64)> = s.iter().map(|x| (x.t_secs / 60.0, f(x))).collect();
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        if caption.starts_with("SFU RSS")
            && let Some(g) = r.growth.as_ref().filter(|g| !g.inconclusive)
        {
            // The fit passes through the judged samples' mean point.
            let judged: Vec<&Sample> = s
                .iter()
                .filter(|x| x.t_secs >= r.config.limits.warmup_secs)
                .collect();
            let n = judged.len().max(1) as f64;
            let mt = judged.iter().map(|x| x.t_secs).sum::<f64>() / n / 60.0;
            let line = |t: f64| mib(g.rss_mean_kib + g.rss_slope_kib_per_min * (t - mt));
            let (a, b) = (g.from_secs / 60.0, g.to_secs / 60.0);
            chart
                .draw_series(DashedLineSeries::new(
                    [(a, line(a)), (b, line(b))],
                    6,
                    4,
                    BLACK.stroke_width(1),
                ))
                .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::growth::{self, Limits, Point};
    use super::super::report::Machine;
    use super::super::soak::{Rest, SoakConfig};
    use super::*;

    fn report() -> SoakReport {
        let samples: Vec<Sample> = (1..=120)
            .map(|i| Sample {
                t_secs: i as f64 * 5.0,
                rss_kib: 60_000 + (i % 3) * 100,
                fds: 40,
                threads: 5,
                window_secs: 5.0,
                sent: 1000,
                received: 999,
                loss_pct: 0.1,
                calls: 10,
                ..Sample::default()
            })
            .collect();
        let limits = Limits {
            warmup_secs: 60.0,
            rss_pct_per_10min: 1.0,
            fd_tolerance: 2,
            min_samples: 10,
        };
        let points: Vec<Point> = samples
            .iter()
            .map(|s| Point {
                t_secs: s.t_secs,
                rss_kib: s.rss_kib as f64,
                fds: s.fds,
                threads: s.threads,
            })
            .collect();
        SoakReport {
            machine: Machine::here(),
            command: "shopcall-load --soak 10m --calls 10".to_owned(),
            target: "shopcall".to_owned(),
            customer_camera: crate::load::CustomerCamera::On,
            config: SoakConfig {
                calls: 10,
                duration_secs: 600.0,
                churn_every_secs: 5.0,
                churn_pick: super::super::soak::ChurnPick::Oldest,
                sample_secs: 5.0,
                settle_secs: 3.0,
                limits,
                max_loss_pct: 1.0,
                loss_windows: 3,
                setup_concurrency: 8,
                setup_rate: 0.0,
                join_timeout_secs: 30.0,
                sfu_pid: 1,
                sfu_cpu: None,
                client_cpu: None,
            },
            before: Some(Rest::default()),
            join_ms: (Some(200.0), Some(300.0)),
            churn_join_ms: (None, None),
            growth: Some(growth::assess(&points, &limits)),
            samples,
            after: Some(Rest::default()),
            stop_reason: "duration reached".to_owned(),
            problems: Vec::new(),
            passed: true,
        }
    }

    #[test]
    fn writes_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("soak-report-{}", std::process::id()));
        let r = report();
        write(&r, &dir).unwrap();
        let back = read(&dir.join("soak.json")).unwrap();
        assert_eq!(back.samples.len(), 120);
        let md = std::fs::read_to_string(dir.join("soak.md")).unwrap();
        assert!(md.contains("PASS: no growth"), "{md}");
        // The last sample of each minute (0.9, 1.9, ... 9.9) and the very last (10.0).
        let rows = md
            .lines()
            .skip_while(|l| !l.starts_with("| t (min)"))
            .skip(2)
            .count();
        assert_eq!(rows, 11, "{md}");
        let svg = std::fs::read_to_string(dir.join("soak.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("threads"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
