//! Node: this daemon's load over time, as NodeStats reports it.
//!
//! Counters only say how much happened since start; a signaling tier placing calls needs
//! rates. A sampler task reads the SFU's counters ([`sfu::EngineMetrics`]) and the process's
//! CPU time once a second and keeps the last [`WINDOW`] of samples; the rates are the
//! difference between the oldest and the newest sample over the time between them.
//!
//! * CPU: `utime + stime` of `/proc/self/stat` (every thread of the process), in clock ticks
//!   (`sysconf(_SC_CLK_TCK)`), as cores busy: 1.0 is one core for the whole window.
//! * Memory: resident pages of `/proc/self/statm` times the page size.
//!
//! Off Linux (no `/proc`), CPU and memory read as 0.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sfu::{EngineMetrics, SfuHandle};

/// How often the sampler reads the counters.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// How much history the rates cover (at most).
pub const WINDOW: Duration = Duration::from_secs(5);

/// One reading of the counters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When it was taken.
    pub at: Instant,
    /// Datagrams read from the media socket, since start.
    pub datagrams_in: u64,
    /// Datagrams written to it.
    pub datagrams_out: u64,
    /// RTP packets received from participants.
    pub packets_in: u64,
    /// RTP packets forwarded.
    pub packets_out: u64,
    /// RTP bytes received.
    pub bytes_in: u64,
    /// RTP bytes forwarded.
    pub bytes_out: u64,
    /// CPU time of the process.
    pub cpu: Duration,
}

impl Sample {
    /// A sample of `m` and `cpu` taken at `at`.
    pub fn of(at: Instant, m: &EngineMetrics, cpu: Duration) -> Sample {
        Sample {
            at,
            datagrams_in: m.datagrams_in,
            datagrams_out: m.datagrams_out,
            packets_in: m.received.audio.packets + m.received.video.packets,
            packets_out: m.forwarded.audio.packets + m.forwarded.video.packets,
            bytes_in: m.received.audio.bytes + m.received.video.bytes,
            bytes_out: m.forwarded.audio.bytes + m.forwarded.video.bytes,
            cpu,
        }
    }
}

/// Rates between two samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    /// The time between the samples.
    pub window: Duration,
    /// Datagrams read per second.
    pub datagrams_in: f64,
    /// Datagrams written per second.
    pub datagrams_out: f64,
    /// RTP packets received per second.
    pub packets_in: f64,
    /// RTP packets forwarded per second.
    pub packets_out: f64,
    /// RTP bits received per second.
    pub bits_in: f64,
    /// RTP bits forwarded per second.
    pub bits_out: f64,
    /// CPU cores busy on average.
    pub cpu_cores: f64,
}

impl Rates {
    /// The rates from `old` to `new`; `None` when no time passed between them.
    pub fn between(old: &Sample, new: &Sample) -> Option<Rates> {
        let window = new.at.checked_duration_since(old.at)?;
        let secs = window.as_secs_f64();
        if secs <= 0.0 {
            return None;
        }
        let per_sec = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
        Some(Rates {
            window,
            datagrams_in: per_sec(old.datagrams_in, new.datagrams_in),
            datagrams_out: per_sec(old.datagrams_out, new.datagrams_out),
            packets_in: per_sec(old.packets_in, new.packets_in),
            packets_out: per_sec(old.packets_out, new.packets_out),
            bits_in: per_sec(old.bytes_in, new.bytes_in) * 8.0,
            bits_out: per_sec(old.bytes_out, new.bytes_out) * 8.0,
            cpu_cores: new.cpu.saturating_sub(old.cpu).as_secs_f64() / secs,
        })
    }
}

/// The samples of the last [`WINDOW`].
#[derive(Debug, Default)]
pub struct Load {
    samples: Mutex<VecDeque<Sample>>,
}

impl Load {
    /// No samples yet.
    pub fn new() -> Load {
        Load::default()
    }

    /// Adds a sample and forgets those older than the window (keeping at least two).
    pub fn record(&self, sample: Sample) {
        let mut samples = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        samples.push_back(sample);
        while samples.len() > 2
            && samples
                .get(1)
                .and_then(|s| sample.at.checked_duration_since(s.at))
                .is_some_and(|age| age >= WINDOW)
        {
            samples.pop_front();
        }
    }

    /// The rates over the window; `None` before two samples.
    pub fn rates(&self) -> Option<Rates> {
        let samples = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Rates::between(samples.front()?, samples.back()?)
    }

    /// Samples the SFU and the process every [`SAMPLE_EVERY`] until the SFU stops.
    pub async fn run_sampler(self: Arc<Load>, handle: SfuHandle) {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match handle.metrics().await {
                Ok(m) => self.record(Sample::of(Instant::now(), &m, process_cpu_time())),
                Err(_) => return,
            }
        }
    }
}

/// CPU time (user + system) of this process so far; zero where it cannot be read.
pub fn process_cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    let ticks_per_sec = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)
        .unwrap_or(100);
    cpu_ticks(&stat).map_or(Duration::ZERO, |ticks| {
        Duration::from_secs_f64(ticks as f64 / ticks_per_sec as f64)
    })
}

/// `utime + stime` (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name (field
/// 2) is in parentheses and may hold spaces and parentheses itself, so fields are counted
/// after its last `)`.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // Field 3 (state) is the first after the name: utime is the 12th from there.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory of this process in bytes; zero where it cannot be read.
pub fn rss_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|p| u64::try_from(p).ok())
        .unwrap_or(4096);
    resident_pages(&statm).map_or(0, |pages| pages.saturating_mul(page))
}

/// The resident pages (second field) of a `/proc/<pid>/statm` line.
pub fn resident_pages(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

/// Cores this process may run on.
pub fn cpu_count() -> u32 {
    std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_fields_are_found_after_the_command_name() {
        let stat = "4242 (shop call) d) S 1 4242 4242 0 -1 4194560 1200 0 0 0 \
                    150 37 0 0 20 0 9 0 123456 987654321 2048 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some(187));
        assert_eq!(cpu_ticks("garbage"), None);
        assert_eq!(resident_pages("52000 2048 900 10 0 4000 0\n"), Some(2048));
        assert_eq!(resident_pages(""), None);
    }

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        // Burn a little CPU so the reading is above zero even on a coarse clock.
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(process_cpu_time() > Duration::ZERO);
        assert!(rss_bytes() > 1024 * 1024);
        assert!(cpu_count() >= 1);
    }

    #[test]
    fn rates_come_from_the_oldest_and_newest_sample_of_the_window() {
        let load = Load::new();
        let t0 = Instant::now();
        assert_eq!(load.rates(), None);
        let sample = |secs: u64, n: u64| Sample {
            at: t0 + Duration::from_secs(secs),
            datagrams_in: n,
            datagrams_out: 2 * n,
            packets_in: n,
            packets_out: n,
            bytes_in: 100 * n,
            bytes_out: 50 * n,
            cpu: Duration::from_millis(100 * secs),
        };
        load.record(sample(0, 0));
        load.record(sample(1, 1000));
        let r = load.rates().unwrap();
        assert_eq!(r.window, Duration::from_secs(1));
        assert_eq!(r.datagrams_in, 1000.0);
        assert_eq!(r.datagrams_out, 2000.0);
        assert_eq!(r.bits_in, 800_000.0);
        assert_eq!(r.bits_out, 400_000.0);
        assert!((r.cpu_cores - 0.1).abs() < 1e-9);
        for s in 2..=20 {
            load.record(sample(s, 1000 * s));
        }
        let r = load.rates().unwrap();
        assert_eq!(r.window, WINDOW);
        assert_eq!(r.packets_in, 1000.0);
    }
}
