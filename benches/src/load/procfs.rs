//! Procfs: CPU time and memory of a process, and how busy a core is, from `/proc`.

use std::time::Duration;

use anyhow::Context;

/// Clock ticks per second for `/proc` CPU times.
fn ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

/// User + system CPU time a process has used (all its threads), from `/proc/<pid>/stat`.
pub fn process_cpu(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may hold spaces: fields count from after its closing parenthesis.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")": state is field 3 overall, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    let hz = ticks_per_second();
    Ok(Duration::from_nanos((utime + stime) * 1_000_000_000 / hz))
}

/// Resident set size of a process in bytes, from `/proc/<pid>/status` (`VmRSS`).
pub fn process_rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .context("no VmRSS in /proc/<pid>/status")
}

/// Threads of a process, from `/proc/<pid>/status` (`Threads`).
pub fn process_threads(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .context("no Threads in /proc/<pid>/status")
}

/// Open file descriptors of a process: the entries of `/proc/<pid>/fd` (the process must
/// belong to the same user, or the tester be root).
pub fn process_fds(pid: u32) -> anyhow::Result<u64> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("listing /proc/{pid}/fd"))?;
    Ok(dir.filter(|e| e.is_ok()).count() as u64)
}

/// Busy and total time of one core since boot, from `/proc/stat` (`cpuN`): busy is everything
/// but idle and iowait, so it includes interrupts and softirqs (the kernel's packet work).
#[derive(Debug, Clone, Copy, Default)]
pub struct CoreTimes {
    /// Non-idle ticks.
    pub busy: u64,
    /// All ticks.
    pub total: u64,
}

impl CoreTimes {
    /// Fraction of `later - self` that was busy (0..=1).
    pub fn busy_since(&self, earlier: &CoreTimes) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        self.busy.saturating_sub(earlier.busy) as f64 / total as f64
    }
}

/// The times of core `cpu`.
pub fn core_times(cpu: usize) -> anyhow::Result<CoreTimes> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let name = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))
        .with_context(|| format!("no {name} in /proc/stat"))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Ok(CoreTimes {
        busy: total - idle,
        total,
    })
}

/// CPU pressure: the share of the last 10 s in which some runnable task waited for a CPU
/// (`/proc/pressure/cpu`, `some avg10`), percent. High values mean other work competed for
/// the cores during a measurement.
pub fn cpu_pressure() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/pressure/cpu").ok()?;
    s.lines()
        .find(|l| l.starts_with("some"))?
        .split_whitespace()
        .find_map(|f| f.strip_prefix("avg10="))?
        .parse()
        .ok()
}

/// The CPU model, from `/proc/cpuinfo`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process_and_cores() {
        let pid = std::process::id();
        let mut x = 0u64;
        for i in 0..3_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(process_cpu(pid).is_ok());
        assert!(process_rss(pid).unwrap() > 1 << 20);
        // The test harness runs this on a thread of its own, besides the main one.
        assert!(process_threads(pid).unwrap() >= 1);
        let fds = process_fds(pid).unwrap();
        assert!(fds >= 3, "stdin, stdout and stderr at least: {fds}");
        let a = core_times(0).unwrap();
        assert!(a.total > 0 && a.busy <= a.total);
        assert!(!cpu_model().is_empty());
    }
}
