//! What the driver reads from the operating system (Linux `/proc`): a process's resident set
//! size (`VmRSS`), a sampler of its peak, its CPU time, the load average and the CPU count.
//! Everything degrades to `None` when `/proc` is not there or says something unexpected.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The `VmRSS` line of a `/proc/<pid>/status` text, in KiB.
pub fn parse_vmrss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => Some(value),
        Some("mB") => Some(value * 1024),
        _ => None,
    }
}

/// The resident set size of process `pid` in MiB, if it can be read.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vmrss_kib(&status).map(|kib| kib as f64 / 1024.0)
}

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`; 100 on every mainstream Linux).
const USER_HZ: f64 = 100.0;

/// User + system CPU ticks of a `/proc/<pid>/stat` text (fields 14 and 15; the command name
/// in parentheses may itself hold spaces and parentheses, so fields are counted after the
/// last `)`).
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state is field 3, so utime (14) is the 12th field here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU seconds (user + system) process `pid` has used so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat).map(|t| t as f64 / USER_HZ)
}

/// CPU seconds `pid` used between `before` (from [`cpu_seconds`]) and now.
pub fn cpu_since(pid: Option<u32>, before: Option<f64>) -> Option<f64> {
    Some(cpu_seconds(pid?)? - before?)
}

/// The 1-minute load average.
pub fn loadavg1() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// How many CPUs this process may use.
pub fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(std::num::NonZeroUsize::get)
        .unwrap_or(1)
}

/// Samples a process's RSS every 50 ms in the background and keeps the peak.
pub struct RssSampler {
    peak_kib: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    /// Starts sampling `pid` (call from inside a Tokio runtime).
    pub fn start(pid: u32) -> Self {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let peak = peak_kib.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            loop {
                tick.tick().await;
                if let Some(mib) = rss_mib(pid) {
                    peak.fetch_max((mib * 1024.0) as u64, Ordering::Relaxed);
                }
            }
        });
        RssSampler { peak_kib, task }
    }

    /// Stops sampling; the peak in MiB, if any sample was read.
    pub fn stop(self) -> Option<f64> {
        self.task.abort();
        let kib = self.peak_kib.load(Ordering::Relaxed);
        (kib > 0).then(|| kib as f64 / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vmrss_from_a_status_text() {
        let status = "Name:\tscaff\nVmPeak:\t  900 kB\nVmRSS:\t   51234 kB\nThreads:\t5\n";
        assert_eq!(parse_vmrss_kib(status), Some(51234));
    }

    #[test]
    fn no_vmrss_in_odd_texts() {
        assert_eq!(parse_vmrss_kib(""), None);
        assert_eq!(parse_vmrss_kib("VmRSS:\tlots kB\n"), None);
        assert_eq!(parse_vmrss_kib("VmRSS:\t12 GB\n"), None);
        // Kernel threads have no VmRSS line at all.
        assert_eq!(parse_vmrss_kib("Name:\tkthreadd\nState:\tS\n"), None);
    }

    #[test]
    fn reads_cpu_ticks_after_the_command_name() {
        let stat = "4242 (scaff (x) y) S 1 4242 4242 0 -1 4194304 100 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parse_cpu_ticks("4242 (short) S 1 2"), None);
        assert_eq!(parse_cpu_ticks("no parenthesis"), None);
        assert_eq!(parse_cpu_ticks(""), None);
    }

    #[test]
    fn reads_our_own_cpu_time() {
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(cpu_seconds(std::process::id()).is_some());
        }
    }

    #[test]
    fn reads_our_own_rss() {
        if std::path::Path::new("/proc/self/status").exists() {
            let mib = rss_mib(std::process::id()).expect("our own RSS is readable");
            assert!(mib > 0.0);
        }
    }
}
