//! Report: the results as JSON, a Markdown table and an SVG chart of calls against SFU CPU,
//! loss and latency.

use std::path::Path;

use anyhow::{Context, anyhow};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use super::ramp::RampResult;

/// The machine a run was on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Cores online.
    pub cores: usize,
    /// Kernel release.
    pub kernel: String,
}

impl Machine {
    /// This machine.
    pub fn here() -> Machine {
        Machine {
            cpu: super::procfs::cpu_model(),
            // Not available_parallelism: the tester may be pinned to one core.
            cores: std::fs::read_to_string("/proc/cpuinfo")
                .map(|s| s.lines().filter(|l| l.starts_with("processor")).count())
                .unwrap_or(1)
                .max(1),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
        }
    }
}

/// Everything one invocation measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The machine.
    pub machine: Machine,
    /// The command line.
    pub command: String,
    /// One ramp per SFU.
    pub runs: Vec<RampResult>,
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format!("{x:.digits$}"))
}

/// The step to quote for a run: the last one within the loss limit where the tester was not
/// saturated (else the last within the loss limit, else the first).
fn best_step(r: &RampResult) -> Option<&super::ramp::StepResult> {
    let ok = |s: &&super::ramp::StepResult| {
        s.loss_pct <= r.config.max_loss_pct
            && s.latency_p99_us
                .is_none_or(|us| us <= r.config.max_p99_ms * 1000.0)
    };
    r.steps
        .iter()
        .rfind(|s| ok(s) && !s.tester_saturated)
        .or_else(|| r.steps.iter().rfind(ok))
        .or_else(|| r.steps.first())
}

/// A Markdown summary: one row per run, at its largest good step.
pub fn summary_table(report: &Report) -> String {
    let mut t = String::from(
        "| SFU | max calls (loss <= 1%, p99 <= limit) | SFU CPU there | calls per core (CPU time) | CPU per forwarded packet | \
         RSS per call | join p50 / p99 | latency p50 / p99 | tester CPU | stopped because |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &report.runs {
        let Some(s) = best_step(r) else { continue };
        let per_core = s
            .sfu_cpu_pct
            .filter(|p| *p > 0.0)
            .map(|p| s.calls as f64 / (p / 100.0));
        t.push_str(&format!(
            "| {} | {}{} | {}% | {} | {} ns | {} KiB | {} / {} ms | {} / {} us | {:.0}%{} | {} |\n",
            r.target,
            r.max_calls_ok_any,
            if r.max_calls_ok < r.max_calls_ok_any {
                " (tester saturated)"
            } else {
                ""
            },
            opt(s.sfu_cpu_pct, 0),
            opt(per_core, 0),
            opt(s.sfu_ns_per_forwarded_packet, 0),
            opt(s.sfu_rss_per_call_bytes.map(|b| b / 1024.0), 0),
            opt(s.join_p50_ms, 0),
            opt(s.join_p99_ms, 0),
            opt(s.latency_p50_us, 0),
            opt(s.latency_p99_us, 0),
            s.tester_cpu_pct,
            if s.tester_saturated {
                " (saturated)"
            } else {
                ""
            },
            r.stop_reason,
        ));
    }
    t
}

/// Every step of every run, as a Markdown table.
pub fn steps_table(report: &Report) -> String {
    let mut t = String::from(
        "| SFU | calls | sent pps | recv pps | loss % | latency p50 / p99 us | join p50 / p99 ms | \
         SFU CPU % | SFU core % (others) | ns/pkt | RSS MiB | tester CPU % | client core % (others) | CPU pressure % |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &report.runs {
        for s in &r.steps {
            t.push_str(&format!(
                "| {} | {} | {:.0} | {:.0} | {:.3} | {} / {} | {} / {} | {} | {} ({}) | {} | {} | {:.0} | {} ({}){} | {} |\n",
                r.target,
                s.calls,
                s.sent_pps,
                s.recv_pps,
                s.loss_pct,
                opt(s.latency_p50_us, 0),
                opt(s.latency_p99_us, 0),
                opt(s.join_p50_ms, 0),
                opt(s.join_p99_ms, 0),
                opt(s.sfu_cpu_pct, 1),
                opt(s.sfu_core_busy_pct, 0),
                opt(s.sfu_core_other_pct, 0),
                opt(s.sfu_ns_per_forwarded_packet, 0),
                opt(s.sfu_rss_bytes.map(|b| b as f64 / 1048576.0), 1),
                s.tester_cpu_pct,
                opt(s.client_core_busy_pct, 0),
                opt(s.client_core_other_pct, 0),
                if s.tester_saturated {
                    " tester-saturated"
                } else if s.client_bound {
                    " client-bound"
                } else {
                    ""
                },
                opt(s.cpu_pressure_pct, 0),
            ));
        }
    }
    t
}

/// Reads a `report.json` written by [`write`].
pub fn read(path: &Path) -> anyhow::Result<Report> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Writes `report.json`, `report.md` and `chart.svg` into `dir`.
pub fn write(report: &Report, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(dir.join("report.json"), json)?;
    let md = format!(
        "Machine: {} ({} cores), kernel {}\n\nCommand: `{}`\n\n{}\n{}",
        report.machine.cpu,
        report.machine.cores,
        report.machine.kernel,
        report.command,
        summary_table(report),
        steps_table(report)
    );
    std::fs::write(dir.join("report.md"), md)?;
    chart(report, &dir.join("chart.svg"))
}

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// Three panels over calls: SFU CPU (and the tester's, dashed), loss, latency p99.
pub fn chart(report: &Report, path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let panels = root.split_evenly((3, 1));
    let max_calls = report
        .runs
        .iter()
        .flat_map(|r| r.steps.iter().map(|s| s.calls))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    type Getter = fn(&super::ramp::StepResult) -> Option<f64>;
    // Latency spans orders of magnitude: that panel plots log10(ms), labelled in ms.
    let metrics: [(&str, Getter, bool); 3] = [
        (
            "CPU, % of one core (dashed: tester)",
            |s| s.sfu_cpu_pct,
            false,
        ),
        ("loss, %", |s| Some(s.loss_pct), false),
        (
            "one-way latency p99, ms (log scale)",
            |s| s.latency_p99_us.map(|u| (u / 1000.0).max(0.01).log10()),
            true,
        ),
    ];
    for (panel, (label, get, log)) in panels.iter().zip(metrics) {
        let mut ymax = report
            .runs
            .iter()
            .flat_map(|r| r.steps.iter().filter_map(get))
            .fold(f64::MIN, f64::max);
        let ymin = if log {
            report
                .runs
                .iter()
                .flat_map(|r| r.steps.iter().filter_map(get))
                .fold(f64::MAX, f64::min)
                .floor()
                .min(0.0)
        } else {
            0.0
        };
        if label.starts_with("CPU") {
            ymax = ymax.max(
                report
                    .runs
                    .iter()
                    .flat_map(|r| r.steps.iter().map(|s| s.tester_cpu_pct))
                    .fold(0.0, f64::max),
            );
        }
        let ymax = if log {
            ymax.ceil().max(ymin + 1.0)
        } else if ymax <= 0.0 {
            1.0
        } else {
            ymax * 1.1
        };
        let mut chart = ChartBuilder::on(panel)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .caption(label, ("sans-serif", 18))
            .build_cartesian_2d(0.0..max_calls * 1.05, ymin..ymax)
            .map_err(|e| anyhow!("{e}"))?;
        let y_label = |v: &f64| {
            if log {
                let ms = 10f64.powf(*v);
                if ms < 1.0 {
                    format!("{ms:.2}")
                } else {
                    format!("{ms:.0}")
                }
            } else {
                format!("{v:.1}")
            }
        };
        chart
            .configure_mesh()
            .x_desc("concurrent 1:1 calls")
            .y_label_formatter(&y_label)
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        for (i, r) in report.runs.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let points: Vec<(f64, f64)> = r
                .steps
                .iter()
                .filter_map(|s| get(s).map(|y| (s.calls as f64, y)))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(|e| anyhow!("{e}"))?
                .label(r.target.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            chart
                .draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))
                .map_err(|e| anyhow!("{e}"))?;
            if label.starts_with("CPU") {
                let tester: Vec<(f64, f64)> = r
                    .steps
                    .iter()
                    .map(|s| (s.calls as f64, s.tester_cpu_pct))
                    .collect();
                chart
                    .draw_series(DashedLineSeries::new(tester, 6, 4, color.stroke_width(1)))
                    .map_err(|e| anyhow!("{e}"))?;
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
