//! cgroup v1 controllers: one directory per hierarchy, one file per knob.

use crate::fsx::{self, keyed, read_keyed, read_opt, read_u64};
use crate::stats::{self, BlkioEntry, Hugetlb, Stats};
use crate::{Cgroup, Error, Result};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources};
use std::path::Path;
use std::time::{Duration, Instant};

/// USER_HZ: cpuacct.stat counts in ticks of 1/100 s on every Linux ABI.
const NS_PER_TICK: u64 = 10_000_000;

pub fn apply(cg: &Cgroup, r: &LinuxResources) -> Result<()> {
    if let (Some(d), Some(m)) = (cg.v1_dir("memory"), r.memory()) {
        if let Some(v) = m.reservation() {
            fsx::write(d, "memory.soft_limit_in_bytes", &v.to_string())?;
        }
        memory_and_swap(d, m.limit(), m.swap())?;
        #[allow(deprecated)]
        if let Some(v) = m.kernel() {
            write_if_present(d, "memory.kmem.limit_in_bytes", &v.to_string())?;
        }
        if let Some(v) = m.kernel_tcp() {
            fsx::write(d, "memory.kmem.tcp.limit_in_bytes", &v.to_string())?;
        }
        if let Some(v) = m.swappiness() {
            if v > 100 {
                return Err(Error::Invalid(format!(
                    "linux.resources.memory.swappiness {v} is out of range 0-100"
                )));
            }
            fsx::write(d, "memory.swappiness", &v.to_string())?;
        }
        if m.disable_oom_killer() == Some(true) {
            fsx::write(d, "memory.oom_control", "1")?;
        }
    }
    if let (Some(d), Some(c)) = (cg.v1_dir("cpu"), r.cpu()) {
        if let Some(v) = c.shares() {
            fsx::write(d, "cpu.shares", &v.to_string())?;
        }
        cpu_quota(d, c.quota(), c.period())?;
        if let Some(v) = c.burst() {
            fsx::write(d, "cpu.cfs_burst_us", &v.to_string())?;
        }
        // rt period before runtime: the kernel checks runtime against the period.
        if let Some(v) = c.realtime_period() {
            fsx::write(d, "cpu.rt_period_us", &v.to_string())?;
        }
        if let Some(v) = c.realtime_runtime() {
            fsx::write(d, "cpu.rt_runtime_us", &v.to_string())?;
        }
        if let Some(v) = c.idle() {
            fsx::write(d, "cpu.idle", &v.to_string())?;
        }
    }
    if let (Some(d), Some(c)) = (cg.v1_dir("cpuset"), r.cpu()) {
        if let Some(v) = c.cpus().as_deref().filter(|v| !v.is_empty()) {
            fsx::write(d, "cpuset.cpus", v)?;
        }
        if let Some(v) = c.mems().as_deref().filter(|v| !v.is_empty()) {
            fsx::write(d, "cpuset.mems", v)?;
        }
    }
    if let (Some(d), Some(p)) = (cg.v1_dir("pids"), r.pids()) {
        let v = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".to_string()
        };
        fsx::write(d, "pids.max", &v)?;
    }
    if let (Some(d), Some(b)) = (cg.v1_dir("blkio"), r.block_io()) {
        if let Some(w) = b.weight() {
            let file = if d.join("blkio.weight").exists() {
                "blkio.weight"
            } else {
                "blkio.bfq.weight"
            };
            fsx::write(d, file, &w.to_string())?;
        }
        if let Some(w) = b.leaf_weight() {
            fsx::write(d, "blkio.leaf_weight", &w.to_string())?;
        }
        for wd in b.weight_device().iter().flatten() {
            if let Some(w) = wd.weight() {
                let file = if d.join("blkio.weight_device").exists() {
                    "blkio.weight_device"
                } else {
                    "blkio.bfq.weight_device"
                };
                fsx::write(d, file, &format!("{}:{} {w}", wd.major(), wd.minor()))?;
            }
            if let Some(w) = wd.leaf_weight() {
                fsx::write(
                    d,
                    "blkio.leaf_weight_device",
                    &format!("{}:{} {w}", wd.major(), wd.minor()),
                )?;
            }
        }
        let throttles = [
            (
                "blkio.throttle.read_bps_device",
                b.throttle_read_bps_device(),
            ),
            (
                "blkio.throttle.write_bps_device",
                b.throttle_write_bps_device(),
            ),
            (
                "blkio.throttle.read_iops_device",
                b.throttle_read_iops_device(),
            ),
            (
                "blkio.throttle.write_iops_device",
                b.throttle_write_iops_device(),
            ),
        ];
        for (file, list) in throttles {
            for t in list.iter().flatten() {
                fsx::write(
                    d,
                    file,
                    &format!("{}:{} {}", t.major(), t.minor(), t.rate()),
                )?;
            }
        }
    }
    if let Some(d) = cg.v1_dir("hugetlb") {
        for h in r.hugepage_limits().iter().flatten() {
            fsx::write(
                d,
                &format!("hugetlb.{}.limit_in_bytes", h.page_size()),
                &h.limit().to_string(),
            )?;
        }
    }
    if let Some(n) = r.network() {
        if let (Some(d), Some(id)) = (cg.v1_dir("net_cls"), n.class_id()) {
            fsx::write(d, "net_cls.classid", &id.to_string())?;
        }
        if let Some(d) = cg.v1_dir("net_prio") {
            for p in n.priorities().iter().flatten() {
                fsx::write(
                    d,
                    "net_prio.ifpriomap",
                    &format!("{} {}", p.name(), p.priority()),
                )?;
            }
        }
    }
    if let (Some(d), Some(rules)) = (cg.v1_dir("devices"), r.devices()) {
        // One open per file, one write(2) per rule (the kernel takes one rule per write):
        // a container start writes some twenty rules.
        let mut files = fsx::Writers::new(d);
        for rule in rules {
            let (file, line) = device_line(rule);
            files.write(file, &line)?;
        }
    }
    Ok(())
}

/// A device rule as devices.allow/devices.deny take it: `c 1:3 rwm`, `a` for all.
pub fn device_line(r: &LinuxDeviceCgroup) -> (&'static str, String) {
    let file = if r.allow() {
        "devices.allow"
    } else {
        "devices.deny"
    };
    let typ = r.typ().map_or("a".to_string(), |t| t.as_str().to_string());
    let num = |n: Option<i64>| {
        n.filter(|n| *n >= 0)
            .map_or("*".to_string(), |n| n.to_string())
    };
    let access = r
        .access()
        .clone()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "rwm".into());
    if typ == "a" && r.major().is_none() && r.minor().is_none() && access == "rwm" {
        return (file, "a".into());
    }
    (
        file,
        format!("{typ} {}:{} {access}", num(r.major()), num(r.minor())),
    )
}

fn write_if_present(d: &Path, file: &str, v: &str) -> Result<()> {
    if d.join(file).exists() {
        fsx::write(d, file, v)?;
    }
    Ok(())
}

/// memory.memsw.limit_in_bytes (memory + swap) must never be below memory.limit_in_bytes,
/// so the order of the two writes depends on whether the limits go up or down.
fn memory_and_swap(d: &Path, limit: Option<i64>, swap: Option<i64>) -> Result<()> {
    let has_memsw = d.join("memory.memsw.limit_in_bytes").exists();
    let swap = match swap {
        Some(s) if !has_memsw => {
            if s == -1 || Some(s) == limit {
                None
            } else {
                return Err(Error::Invalid(
                    "linux.resources.memory.swap needs swap accounting (memory.memsw.*), which this kernel does not have".into(),
                ));
            }
        }
        // Unlimited memory with swap unset means unlimited swap too (runc's rule).
        None if limit == Some(-1) && has_memsw => Some(-1),
        s => s,
    };
    if let (Some(l), Some(s)) = (limit, swap) {
        if l != -1 && s != -1 && s < l {
            return Err(Error::Invalid(format!(
                "linux.resources.memory.swap ({s}) must be at least the memory limit ({l})"
            )));
        }
    }
    // memsw may be set first only if it stays at or above the current memory limit.
    let current_limit = read_u64(d, "memory.limit_in_bytes").unwrap_or(u64::MAX);
    let raising = match swap {
        Some(-1) => true,
        Some(s) => s as u64 > current_limit,
        None => false,
    };
    let set_limit = || {
        limit.map_or(Ok(()), |l| {
            fsx::write(d, "memory.limit_in_bytes", &l.to_string())
        })
    };
    let set_swap = || {
        swap.map_or(Ok(()), |s| {
            fsx::write(d, "memory.memsw.limit_in_bytes", &s.to_string())
        })
    };
    if raising {
        set_swap()?;
        set_limit()
    } else {
        set_limit()?;
        set_swap()
    }
}

/// The kernel checks quota against period, so a new period that is too small for the old
/// quota (or the reverse) is retried in the other order.
fn cpu_quota(d: &Path, quota: Option<i64>, period: Option<u64>) -> Result<()> {
    let set_period = || {
        period.map_or(Ok(()), |p| {
            fsx::write(d, "cpu.cfs_period_us", &p.to_string())
        })
    };
    let set_quota = || {
        quota.map_or(Ok(()), |q| {
            fsx::write(d, "cpu.cfs_quota_us", &q.to_string())
        })
    };
    if set_period().is_err() {
        set_quota()?;
        return set_period();
    }
    set_quota()
}

/// mkdir for each missing level of a cpuset path, copying cpus and mems from the parent
/// (a v1 cpuset starts empty and refuses tasks until both are set).
pub fn create_cpuset(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_cpuset(parent)?;
        if let Err(e) = std::fs::create_dir(dir) {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(Error::Io {
                    what: "create cgroup".into(),
                    path: dir.into(),
                    err: e,
                });
            }
        }
        for f in ["cpuset.cpus", "cpuset.mems"] {
            let mine = read_opt(dir, f).unwrap_or_default();
            if mine.trim().is_empty() {
                let v = fsx::read(parent, f)?;
                fsx::write(dir, f, v.trim())?;
            }
        }
    }
    Ok(())
}

/// FROZEN goes through FREEZING; a task in an uninterruptible sleep can hold it there, so
/// the write is repeated until the state settles (as runc does).
pub fn freeze(d: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut delay = Duration::from_micros(100);
    loop {
        fsx::write(d, "freezer.state", "FROZEN")?;
        if fsx::read(d, "freezer.state")?.trim() == "FROZEN" {
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = fsx::write(d, "freezer.state", "THAWED");
            return Err(Error::Invalid(format!(
                "freezing {} did not finish in 10s",
                d.display()
            )));
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(10));
    }
}

pub fn stats(cg: &Cgroup, s: &mut Stats) -> Result<()> {
    if let Some(d) = cg.v1_dir("cpuacct") {
        let u = &mut s.cpu.usage;
        u.total = read_u64(d, "cpuacct.usage").unwrap_or(0);
        u.percpu = numbers(&read_opt(d, "cpuacct.usage_percpu").unwrap_or_default());
        u.percpu_kernel = numbers(&read_opt(d, "cpuacct.usage_percpu_sys").unwrap_or_default());
        u.percpu_user = numbers(&read_opt(d, "cpuacct.usage_percpu_user").unwrap_or_default());
        let st = read_keyed(d, "cpuacct.stat");
        u.user = keyed(&st, "user") * NS_PER_TICK;
        u.kernel = keyed(&st, "system") * NS_PER_TICK;
    }
    if let Some(d) = cg.v1_dir("cpu") {
        let st = read_keyed(d, "cpu.stat");
        s.cpu.throttling.periods = keyed(&st, "nr_periods");
        s.cpu.throttling.throttled_periods = keyed(&st, "nr_throttled");
        s.cpu.throttling.throttled_time = keyed(&st, "throttled_time");
    }
    if let Some(d) = cg.v1_dir("cpuset") {
        s.cpuset.cpus = stats::parse_cpu_list(&read_opt(d, "cpuset.cpus").unwrap_or_default());
        s.cpuset.mems = stats::parse_cpu_list(&read_opt(d, "cpuset.mems").unwrap_or_default());
    }
    if let Some(d) = cg.v1_dir("memory") {
        let m = &mut s.memory;
        let entry = |prefix: &str| crate::stats::MemoryEntry {
            limit: read_u64(d, &format!("{prefix}.limit_in_bytes")).unwrap_or(0),
            usage: read_u64(d, &format!("{prefix}.usage_in_bytes")).unwrap_or(0),
            max: read_u64(d, &format!("{prefix}.max_usage_in_bytes")).unwrap_or(0),
            failcnt: read_u64(d, &format!("{prefix}.failcnt")).unwrap_or(0),
        };
        m.usage = entry("memory");
        m.swap = entry("memory.memsw");
        m.kernel = entry("memory.kmem");
        m.kernel_tcp = entry("memory.kmem.tcp");
        m.raw = read_keyed(d, "memory.stat").into_iter().collect();
        m.cache = m.raw.get("cache").copied().unwrap_or(0);
    }
    if let Some(d) = cg.v1_dir("pids") {
        s.pids.current = read_u64(d, "pids.current").unwrap_or(0);
        s.pids.limit = read_u64(d, "pids.max")
            .filter(|v| *v != u64::MAX)
            .unwrap_or(0);
    }
    if let Some(d) = cg.v1_dir("blkio") {
        let pick = |a: &str, b: &str| {
            let v = blkio_entries(&read_opt(d, a).unwrap_or_default());
            if v.is_empty() {
                blkio_entries(&read_opt(d, b).unwrap_or_default())
            } else {
                v
            }
        };
        s.blkio.io_service_bytes_recursive = pick(
            "blkio.io_service_bytes_recursive",
            "blkio.throttle.io_service_bytes_recursive",
        );
        s.blkio.io_serviced_recursive = pick(
            "blkio.io_serviced_recursive",
            "blkio.throttle.io_serviced_recursive",
        );
    }
    if let Some(d) = cg.v1_dir("hugetlb") {
        for size in stats::hugepage_sizes() {
            let f = |k: &str| read_u64(d, &format!("hugetlb.{size}.{k}")).unwrap_or(0);
            s.hugetlb.insert(
                size.clone(),
                Hugetlb {
                    usage: f("usage_in_bytes"),
                    max: f("max_usage_in_bytes"),
                    failcnt: f("failcnt"),
                },
            );
        }
    }
    Ok(())
}

fn numbers(s: &str) -> Vec<u64> {
    s.split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// `8:0 Read 4096` lines; the `Total N` line is left out as runc does.
fn blkio_entries(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (dev, op, value) = match f.as_slice() {
                [dev, op, value] => (*dev, op.to_string(), *value),
                [dev, value] if dev.contains(':') => (*dev, String::new(), *value),
                _ => return None,
            };
            let (ma, mi) = dev.split_once(':')?;
            Some(BlkioEntry {
                major: ma.parse().ok()?,
                minor: mi.parse().ok()?,
                op,
                value: value.parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxDeviceType, LinuxMemoryBuilder, LinuxResourcesBuilder};

    fn fake(controllers: &[&str]) -> (tempfile::TempDir, Cgroup) {
        let t = tempfile::tempdir().unwrap();
        let v1 = controllers
            .iter()
            .map(|c| {
                let dir = t.path().join(c).join("box");
                std::fs::create_dir_all(&dir).unwrap();
                crate::V1Dir {
                    controllers: vec![c.to_string()],
                    dir,
                }
            })
            .collect();
        (
            t,
            Cgroup {
                v1,
                unified: None,
                unified_root: None,
            },
        )
    }

    #[test]
    fn memory_raise_writes_swap_first() {
        let (_t, cg) = fake(&["memory"]);
        let d = cg.v1_dir("memory").unwrap();
        std::fs::write(d.join("memory.memsw.limit_in_bytes"), "1000").unwrap();
        std::fs::write(d.join("memory.limit_in_bytes"), "1000").unwrap();
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(2000)
                    .swap(4000)
                    .reservation(500)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        apply(&cg, &r).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.join("memory.limit_in_bytes")).unwrap(),
            "2000"
        );
        assert_eq!(
            std::fs::read_to_string(d.join("memory.memsw.limit_in_bytes")).unwrap(),
            "4000"
        );
        assert_eq!(
            std::fs::read_to_string(d.join("memory.soft_limit_in_bytes")).unwrap(),
            "500"
        );
    }

    #[test]
    fn swap_below_memory_is_refused() {
        let (_t, cg) = fake(&["memory"]);
        let d = cg.v1_dir("memory").unwrap();
        std::fs::write(d.join("memory.memsw.limit_in_bytes"), "1000").unwrap();
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(2000)
                    .swap(1000)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let e = apply(&cg, &r).unwrap_err().to_string();
        assert!(e.contains("memory.swap"), "{e}");
    }

    #[test]
    fn device_lines() {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(false);
        r.set_access(Some("rwm".into()));
        assert_eq!(device_line(&r), ("devices.deny", "a".to_string()));
        r.set_allow(true);
        r.set_typ(Some(LinuxDeviceType::C));
        r.set_major(Some(136));
        r.set_access(Some("rw".into()));
        assert_eq!(device_line(&r), ("devices.allow", "c 136:* rw".to_string()));
    }

    #[test]
    fn blkio_parsing() {
        let e = blkio_entries("8:0 Read 4096\n8:0 Write 0\nTotal 4096\n");
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].op, "Read");
        assert_eq!(e[0].value, 4096);
    }

    #[test]
    fn stats_read_files() {
        let (_t, cg) = fake(&["memory", "pids"]);
        let m = cg.v1_dir("memory").unwrap();
        std::fs::write(m.join("memory.usage_in_bytes"), "123\n").unwrap();
        std::fs::write(m.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        std::fs::write(m.join("memory.stat"), "cache 7\nrss 9\n").unwrap();
        let p = cg.v1_dir("pids").unwrap();
        std::fs::write(p.join("pids.current"), "3\n").unwrap();
        std::fs::write(p.join("pids.max"), "max\n").unwrap();
        let mut s = Stats::default();
        stats(&cg, &mut s).unwrap();
        assert_eq!(s.memory.usage.usage, 123);
        assert_eq!(s.memory.usage.limit, 9223372036854771712);
        assert_eq!(s.memory.cache, 7);
        assert_eq!(s.pids.current, 3);
        assert_eq!(s.pids.limit, 0);
    }
}
