//! Growth: whether a soak's memory and file descriptor series grew, after a warm-up.
//!
//! Pure functions over samples (time, RSS, fds, threads), so the verdict can be tested with
//! synthetic series. RSS: a least-squares slope over the samples after the warm-up, in KiB
//! per minute, against a limit given as a share of the RSS per 10 minutes; the means of the
//! first and last quarters after the warm-up are compared too, as a second view. File
//! descriptors: flat when their spread after the warm-up stays within a small tolerance.

use serde::{Deserialize, Serialize};

/// One sample of the process, as the verdict sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Point {
    /// Seconds since the soak's steady phase began.
    pub t_secs: f64,
    /// Resident memory, KiB.
    pub rss_kib: f64,
    /// Open file descriptors.
    pub fds: u64,
    /// Threads.
    pub threads: u64,
}

/// What counts as growth.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Limits {
    /// Samples before this are the warm-up and not judged, seconds.
    pub warmup_secs: f64,
    /// Largest RSS slope that is flat: percent of the mean RSS per 10 minutes.
    pub rss_pct_per_10min: f64,
    /// Largest spread (max - min) of the fd count after the warm-up that is flat.
    pub fd_tolerance: u64,
    /// Fewer samples than this after the warm-up: no verdict.
    pub min_samples: usize,
}

/// The verdict and the numbers behind it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Growth {
    /// Samples judged (after the warm-up).
    pub samples: usize,
    /// Time of the first judged sample, seconds.
    pub from_secs: f64,
    /// Time of the last judged sample, seconds.
    pub to_secs: f64,
    /// RSS of the first judged sample, KiB.
    pub rss_start_kib: f64,
    /// RSS of the last sample, KiB.
    pub rss_end_kib: f64,
    /// Smallest RSS judged, KiB.
    pub rss_min_kib: f64,
    /// Largest RSS judged, KiB.
    pub rss_max_kib: f64,
    /// Mean RSS judged, KiB.
    pub rss_mean_kib: f64,
    /// Least-squares slope of RSS, KiB per minute.
    pub rss_slope_kib_per_min: f64,
    /// The limit that slope is held to, KiB per minute.
    pub rss_slope_limit_kib_per_min: f64,
    /// Mean RSS of the first quarter of the judged samples, KiB.
    pub rss_first_quarter_kib: f64,
    /// Mean RSS of the last quarter, KiB.
    pub rss_last_quarter_kib: f64,
    /// (last quarter - first quarter) / the time between their mean times, KiB per minute.
    pub rss_quarter_rate_kib_per_min: f64,
    /// fd count of the first judged sample.
    pub fd_start: u64,
    /// fd count of the last sample.
    pub fd_end: u64,
    /// Smallest fd count judged.
    pub fd_min: u64,
    /// Largest fd count judged.
    pub fd_max: u64,
    /// Least-squares slope of the fd count, per minute.
    pub fd_slope_per_min: f64,
    /// Smallest thread count judged.
    pub threads_min: u64,
    /// Largest thread count judged.
    pub threads_max: u64,
    /// RSS slope above the limit.
    pub rss_grew: bool,
    /// fd count not flat.
    pub fds_grew: bool,
    /// Too few samples after the warm-up to judge.
    pub inconclusive: bool,
    /// Why it is not "no growth", one line each (empty when it is).
    pub reasons: Vec<String>,
}

impl Growth {
    /// Neither grew and there were enough samples.
    pub fn flat(&self) -> bool {
        !self.inconclusive && !self.rss_grew && !self.fds_grew
    }
}

/// Least-squares slope of y over x (units of y per unit of x); `None` for fewer than two
/// distinct x.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    Some(sxy / sxx)
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// Judges a series: samples at or after `warmup_secs` only.
pub fn assess(points: &[Point], limits: &Limits) -> Growth {
    let judged: Vec<Point> = points
        .iter()
        .copied()
        .filter(|p| p.t_secs >= limits.warmup_secs)
        .collect();
    let mut g = Growth {
        samples: judged.len(),
        ..Growth::default()
    };
    if judged.len() < limits.min_samples.max(2) {
        g.inconclusive = true;
        g.reasons.push(format!(
            "{} samples after the {:.0} s warm-up, {} needed",
            judged.len(),
            limits.warmup_secs,
            limits.min_samples.max(2)
        ));
        return g;
    }
    let (first, last) = (judged[0], judged[judged.len() - 1]);
    g.from_secs = first.t_secs;
    g.to_secs = last.t_secs;
    g.rss_start_kib = first.rss_kib;
    g.rss_end_kib = last.rss_kib;
    g.rss_min_kib = judged.iter().map(|p| p.rss_kib).fold(f64::MAX, f64::min);
    g.rss_max_kib = judged.iter().map(|p| p.rss_kib).fold(f64::MIN, f64::max);
    g.rss_mean_kib = mean(judged.iter().map(|p| p.rss_kib));
    let per_min = |pts: Vec<(f64, f64)>| slope(&pts).map_or(0.0, |s| s * 60.0);
    g.rss_slope_kib_per_min = per_min(judged.iter().map(|p| (p.t_secs, p.rss_kib)).collect());
    g.rss_slope_limit_kib_per_min = g.rss_mean_kib * limits.rss_pct_per_10min / 100.0 / 10.0;
    let quarter = (judged.len() / 4).max(1);
    let (head, tail) = (&judged[..quarter], &judged[judged.len() - quarter..]);
    g.rss_first_quarter_kib = mean(head.iter().map(|p| p.rss_kib));
    g.rss_last_quarter_kib = mean(tail.iter().map(|p| p.rss_kib));
    let span_min =
        (mean(tail.iter().map(|p| p.t_secs)) - mean(head.iter().map(|p| p.t_secs))) / 60.0;
    g.rss_quarter_rate_kib_per_min = if span_min > 0.0 {
        (g.rss_last_quarter_kib - g.rss_first_quarter_kib) / span_min
    } else {
        0.0
    };
    g.fd_start = first.fds;
    g.fd_end = last.fds;
    g.fd_min = judged.iter().map(|p| p.fds).min().unwrap_or(0);
    g.fd_max = judged.iter().map(|p| p.fds).max().unwrap_or(0);
    g.fd_slope_per_min = per_min(judged.iter().map(|p| (p.t_secs, p.fds as f64)).collect());
    g.threads_min = judged.iter().map(|p| p.threads).min().unwrap_or(0);
    g.threads_max = judged.iter().map(|p| p.threads).max().unwrap_or(0);

    if g.rss_slope_kib_per_min > g.rss_slope_limit_kib_per_min {
        g.rss_grew = true;
        g.reasons.push(format!(
            "RSS grew {:.1} KiB/min (least squares; limit {:.1} KiB/min = {}% of {:.1} MiB per \
             10 min): {:.1} -> {:.1} MiB, quarter means {:.1} -> {:.1} MiB",
            g.rss_slope_kib_per_min,
            g.rss_slope_limit_kib_per_min,
            limits.rss_pct_per_10min,
            g.rss_mean_kib / 1024.0,
            g.rss_start_kib / 1024.0,
            g.rss_end_kib / 1024.0,
            g.rss_first_quarter_kib / 1024.0,
            g.rss_last_quarter_kib / 1024.0,
        ));
    }
    let spread = g.fd_max - g.fd_min;
    if spread > limits.fd_tolerance || g.fd_end.abs_diff(g.fd_start) > limits.fd_tolerance {
        g.fds_grew = true;
        g.reasons.push(format!(
            "open fds not flat: {} -> {} (min {}, max {}, {:+.2}/min; tolerance {})",
            g.fd_start, g.fd_end, g.fd_min, g.fd_max, g.fd_slope_per_min, limits.fd_tolerance
        ));
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        warmup_secs: 180.0,
        rss_pct_per_10min: 1.0,
        fd_tolerance: 2,
        min_samples: 10,
    };

    /// Deterministic noise in [-1, 1] (a small LCG: no dependency, same series every run).
    fn noise(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    /// 30 minutes sampled every 5 s.
    fn series(rss: impl Fn(f64, f64) -> f64, fds: impl Fn(f64) -> u64) -> Vec<Point> {
        let mut seed = 7;
        (0..=360)
            .map(|i| {
                let t = i as f64 * 5.0;
                Point {
                    t_secs: t,
                    rss_kib: rss(t, noise(&mut seed)),
                    fds: fds(t),
                    threads: 5,
                }
            })
            .collect()
    }

    #[test]
    fn slope_of_a_line_and_of_nothing() {
        let pts: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 * i as f64 + 7.0)).collect();
        assert!((slope(&pts).unwrap() - 3.0).abs() < 1e-9);
        assert_eq!(slope(&[(1.0, 2.0)]), None);
        assert_eq!(slope(&[(1.0, 2.0), (1.0, 5.0)]), None);
    }

    #[test]
    fn a_flat_noisy_series_is_not_growth() {
        // 64 MiB +- 1 MiB of noise, fds 40 or 41.
        let pts = series(|_, n| 65_536.0 + 1024.0 * n, |t| 40 + (t as u64 / 5) % 2);
        let g = assess(&pts, &LIMITS);
        assert!(g.flat(), "{:?}", g.reasons);
        assert!(g.rss_slope_kib_per_min.abs() < g.rss_slope_limit_kib_per_min);
        assert_eq!((g.fd_min, g.fd_max), (40, 41));
        assert_eq!(g.samples, 361 - 36);
    }

    #[test]
    fn a_slow_leak_under_noise_is_growth() {
        // 100 KiB/min on 64 MiB (limit: 65.5 KiB/min), under +- 1 MiB of noise.
        let pts = series(|t, n| 65_536.0 + 100.0 * t / 60.0 + 1024.0 * n, |_| 40);
        let g = assess(&pts, &LIMITS);
        assert!(g.rss_grew && !g.fds_grew && !g.flat(), "{g:?}");
        assert!((g.rss_slope_kib_per_min - 100.0).abs() < 15.0, "{g:?}");
        assert!(g.rss_quarter_rate_kib_per_min > 60.0, "{g:?}");
        assert_eq!(g.reasons.len(), 1);
    }

    #[test]
    fn an_fd_leak_is_growth() {
        // One fd more every 2 minutes: about 13 over the judged 27 minutes.
        let pts = series(|_, n| 65_536.0 + 512.0 * n, |t| 40 + (t / 120.0) as u64);
        let g = assess(&pts, &LIMITS);
        assert!(g.fds_grew && !g.rss_grew, "{g:?}");
        assert!(g.fd_end > g.fd_start + 10);
        assert!((g.fd_slope_per_min - 0.5).abs() < 0.05, "{g:?}");
    }

    #[test]
    fn a_one_off_fd_blip_within_tolerance_is_flat() {
        let pts = series(
            |_, _| 65_536.0,
            |t| if (900.0..905.0).contains(&t) { 42 } else { 40 },
        );
        assert!(assess(&pts, &LIMITS).flat());
    }

    #[test]
    fn the_warm_up_is_not_judged() {
        // Grows 20 MiB over the first 3 minutes (allocator pools filling), then flat.
        let pts = series(
            |t, n| 45_000.0 + 20_480.0 * (t / 180.0).min(1.0) + 256.0 * n,
            |t| {
                if t < 180.0 {
                    30 + (t / 20.0) as u64
                } else {
                    40
                }
            },
        );
        assert!(assess(&pts, &LIMITS).flat());
        let no_warmup = Limits {
            warmup_secs: 0.0,
            ..LIMITS
        };
        let g = assess(&pts, &no_warmup);
        assert!(g.rss_grew && g.fds_grew, "{g:?}");
    }

    #[test]
    fn too_few_samples_give_no_verdict() {
        let pts = series(|_, _| 65_536.0, |_| 40);
        let g = assess(&pts[..40], &LIMITS);
        assert!(g.inconclusive && !g.flat());
    }
}
