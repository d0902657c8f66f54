//! A container's resource usage as `docker stats` shows it: read from its cgroup (the
//! cgroups crate), its network namespace and the host's /proc, with dockerd's and the
//! docker CLI's arithmetic (memory without inactive page cache, the limit capped at the
//! host's memory, CPU % from two samples).

use crate::container::{cgroups_path, Engine, Result};
use crate::flags::NetworkMode;
use crate::store::{Container, State};

/// One reading. A container that is not running reads as zeros (dockerd's empty stats).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// CPU time of the container's cgroup, in nanoseconds.
    pub cpu_total: u64,
    /// CPU time of the whole host, in nanoseconds (/proc/stat).
    pub system_total: u64,
    pub online_cpus: u32,
    /// Memory in use without the inactive file cache (the docker CLI's "MEM USAGE").
    pub memory: u64,
    /// The cgroup's limit, or the host's memory when that is lower (no limit).
    pub memory_limit: u64,
    pub net_rx: u64,
    pub net_tx: u64,
    pub block_read: u64,
    pub block_write: u64,
    pub pids: u64,
}

impl Engine {
    /// A reading of the container's usage now.
    pub fn stats(&self, c: &Container) -> Result<Sample> {
        let mut s = Sample {
            system_total: system_cpu_usage(),
            online_cpus: online_cpus(),
            ..Sample::default()
        };
        if !matches!(c.state, State::Running | State::Paused) {
            return Ok(s);
        }
        let cg = cgroups::Cgroup::open(&cgroups_path(&c.id)).map_err(|e| {
            crate::container::EngineError::Other(format!("container {}: {e}", c.id))
        })?;
        if !cg.exists() {
            // Gone between the lookup and now: it stopped.
            return Ok(s);
        }
        let st = cg.stats().map_err(|e| {
            crate::container::EngineError::Other(format!("container {}: {e}", c.id))
        })?;
        s.cpu_total = st.cpu.usage.total;
        let usage = st.memory.usage.usage;
        // The docker CLI's calculateMemUsageUnixNoCache: v1 has total_inactive_file,
        // v2 inactive_file.
        let inactive = st
            .memory
            .raw
            .get("total_inactive_file")
            .or_else(|| st.memory.raw.get("inactive_file"))
            .copied()
            .unwrap_or(0);
        s.memory = if inactive < usage {
            usage - inactive
        } else {
            usage
        };
        let host = host_memory();
        s.memory_limit = match st.memory.usage.limit {
            l if host > 0 && l > host => host,
            l => l,
        };
        for e in &st.blkio.io_service_bytes_recursive {
            match e.op.chars().next() {
                Some('r' | 'R') => s.block_read += e.value,
                Some('w' | 'W') => s.block_write += e.value,
                _ => {}
            }
        }
        s.pids = st.pids.current;
        // With the host's network the container has no interfaces of its own (dockerd
        // shows 0B / 0B); otherwise every interface of its namespace but loopback.
        if c.options.run.network != NetworkMode::Host && c.pid > 0 {
            if let Ok(text) = std::fs::read_to_string(format!("/proc/{}/net/dev", c.pid)) {
                (s.net_rx, s.net_tx) = net_dev_totals(&text);
            }
        }
        Ok(s)
    }
}

/// The docker CLI's calculateCPUPercentUnix: the container's share of the host's CPU
/// time between two readings, times the number of CPUs.
pub fn cpu_percent(prev: &Sample, cur: &Sample) -> f64 {
    let cpu = cur.cpu_total as f64 - prev.cpu_total as f64;
    let system = cur.system_total as f64 - prev.system_total as f64;
    if system > 0.0 && cpu > 0.0 {
        cpu / system * f64::from(cur.online_cpus) * 100.0
    } else {
        0.0
    }
}

/// The docker CLI's memory percentage; 0 without a limit (a container not running).
pub fn memory_percent(s: &Sample) -> f64 {
    if s.memory_limit == 0 {
        0.0
    } else {
        s.memory as f64 / s.memory_limit as f64 * 100.0
    }
}

/// dockerd's getSystemCPUUsage: user, nice, system, idle, iowait, irq and softirq of the
/// first line of /proc/stat, from clock ticks to nanoseconds.
fn system_cpu_usage() -> u64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    parse_proc_stat(&text, clock_ticks())
}

fn parse_proc_stat(text: &str, ticks: u64) -> u64 {
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    let sum: u64 = line
        .split_whitespace()
        .skip(1)
        .take(7)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    sum * 1_000_000_000 / ticks.max(1)
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|t| *t > 0).unwrap_or(100)
}

fn online_cpus() -> u32 {
    // SAFETY: sysconf only reads a system constant.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u32::try_from(n).ok().filter(|n| *n > 0).unwrap_or(1)
}

/// MemTotal in bytes: dockerd's limit for containers without one.
fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Received and sent bytes over every interface of a /proc/PID/net/dev but loopback.
fn net_dev_totals(text: &str) -> (u64, u64) {
    let mut rx = 0;
    let mut tx = 0;
    for line in text.lines().skip(2) {
        let Some((name, fields)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = fields
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if f.len() >= 9 {
            rx += f[0];
            tx += f[8];
        }
    }
    (rx, tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_percent_is_dockers() {
        let prev = Sample {
            cpu_total: 1_000,
            system_total: 10_000,
            online_cpus: 2,
            ..Sample::default()
        };
        let cur = Sample {
            cpu_total: 1_500,
            system_total: 12_000,
            online_cpus: 2,
            ..Sample::default()
        };
        assert!((cpu_percent(&prev, &cur) - 50.0).abs() < 1e-9);
        assert_eq!(cpu_percent(&cur, &cur), 0.0);
        assert_eq!(memory_percent(&Sample::default()), 0.0);
    }

    #[test]
    fn proc_files_parse() {
        let stat = "cpu  10 1 5 100 2 0 3 7 0 0\ncpu0 5 0 2 50 1 0 1 0 0 0\n";
        assert_eq!(parse_proc_stat(stat, 100), 121 * 10_000_000);
        let dev = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     500       5    0    0    0     0          0         0      500       5    0    0    0     0       0          0\n  eth0:    1200      10    0    0    0     0          0         0      800       8    0    0    0     0       0          0\n";
        assert_eq!(net_dev_totals(dev), (1200, 800));
    }
}
