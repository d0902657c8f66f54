//! cgroup2: one directory, controllers enabled along the path, unified file names.
//! On a hybrid host only controllers that no v1 hierarchy serves are used here.

use crate::fsx::{self, keyed, read_keyed, read_opt, read_u64};
use crate::stats::{self, BlkioEntry, Hugetlb, Stats};
use crate::{devices_bpf, Cgroup, Error, Result};
use oci_spec::runtime::LinuxResources;
use std::path::Path;
use std::time::{Duration, Instant};

/// Writes `+ctrl` into cgroup.subtree_control of each ancestor below the mount, so the
/// controller files exist in `dir`. Failures are left for the resource write to report
/// with the file's name (a parent with processes in it cannot delegate, for example).
pub fn enable_controllers(root: &Path, dir: &Path, wanted: &[String]) {
    let Ok(rel) = dir.strip_prefix(root) else {
        return;
    };
    let mut cur = root.to_path_buf();
    for c in rel.components() {
        for w in wanted {
            let _ = std::fs::write(cur.join("cgroup.subtree_control"), format!("+{w}"));
        }
        cur.push(c);
    }
}

/// The directory where cgroup2 serves `controller` for this cgroup. On a v2-only host it is
/// always the unified directory, so a missing controller shows up as a missing file.
fn at<'a>(cg: &'a Cgroup, controller: &str) -> Option<&'a Path> {
    if cg.is_v2_only() {
        cg.unified.as_deref()
    } else {
        cg.v2_dir_for(controller)
    }
}

/// cpu.shares (2–262144) to cpu.weight (1–10000), the linear map runc and crun use.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

/// blkio.weight (10–1000) to io.weight (1–10000).
pub fn blkio_to_io_weight(w: u16) -> u64 {
    if w == 0 {
        return 0;
    }
    1 + (u64::from(w).clamp(10, 1000) - 10) * 9999 / 990
}

pub fn apply(cg: &Cgroup, r: &LinuxResources) -> Result<()> {
    if let (Some(d), Some(m)) = (at(cg, "memory"), r.memory()) {
        let limit = m.limit();
        if let Some(v) = m.reservation() {
            fsx::write(d, "memory.low", &max_or(v))?;
        }
        // OCI swap is memory+swap; cgroup2's swap.max is the swap alone.
        match (limit, m.swap()) {
            (_, None) => {}
            (_, Some(-1)) => fsx::write(d, "memory.swap.max", "max")?,
            (Some(l), Some(s)) if l > 0 => {
                if s < l {
                    return Err(Error::Invalid(format!(
                        "linux.resources.memory.swap ({s}) must be at least the memory limit ({l})"
                    )));
                }
                fsx::write(d, "memory.swap.max", &(s - l).to_string())?;
            }
            (_, Some(s)) => {
                return Err(Error::Invalid(format!(
                    "linux.resources.memory.swap ({s}) needs a memory limit on cgroup v2"
                )))
            }
        }
        if let Some(l) = limit {
            fsx::write(d, "memory.max", &max_or(l))?;
        }
        if m.disable_oom_killer() == Some(true) {
            // cgroup2 has no such switch; memory.oom.group is the nearest and not the same.
            return Err(Error::Invalid(
                "linux.resources.memory.disableOOMKiller is not supported on cgroup v2".into(),
            ));
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(d) = at(cg, "cpu") {
            if let Some(s) = c.shares().filter(|s| *s > 0) {
                fsx::write(d, "cpu.weight", &shares_to_weight(s).to_string())?;
            }
            if c.quota().is_some() || c.period().is_some() {
                let quota = match c.quota() {
                    Some(q) if q > 0 => q.to_string(),
                    Some(_) => "max".into(),
                    None => read_opt(d, "cpu.max")
                        .and_then(|s| s.split_whitespace().next().map(str::to_string))
                        .unwrap_or_else(|| "max".into()),
                };
                let period = c.period().unwrap_or(100_000);
                fsx::write(d, "cpu.max", &format!("{quota} {period}"))?;
            }
            if let Some(b) = c.burst() {
                fsx::write(d, "cpu.max.burst", &b.to_string())?;
            }
            if let Some(i) = c.idle() {
                fsx::write(d, "cpu.idle", &i.to_string())?;
            }
            if c.realtime_runtime().is_some_and(|v| v != 0)
                || c.realtime_period().is_some_and(|v| v != 0)
            {
                return Err(Error::Invalid(
                    "linux.resources.cpu.realtimeRuntime/realtimePeriod are not supported on cgroup v2".into(),
                ));
            }
        }
        if let Some(d) = at(cg, "cpuset") {
            if let Some(v) = c.cpus().as_deref().filter(|v| !v.is_empty()) {
                fsx::write(d, "cpuset.cpus", v)?;
            }
            if let Some(v) = c.mems().as_deref().filter(|v| !v.is_empty()) {
                fsx::write(d, "cpuset.mems", v)?;
            }
        }
    }
    if let (Some(d), Some(p)) = (at(cg, "pids"), r.pids()) {
        fsx::write(
            d,
            "pids.max",
            &if p.limit() > 0 {
                p.limit().to_string()
            } else {
                "max".into()
            },
        )?;
    }
    if let (Some(d), Some(b)) = (at(cg, "io"), r.block_io()) {
        let bfq = d.join("io.bfq.weight").exists();
        if let Some(w) = b.weight() {
            if bfq {
                fsx::write(d, "io.bfq.weight", &w.to_string())?;
            } else {
                fsx::write(
                    d,
                    "io.weight",
                    &format!("default {}", blkio_to_io_weight(w)),
                )?;
            }
        }
        for wd in b.weight_device().iter().flatten() {
            if let Some(w) = wd.weight() {
                let dev = format!("{}:{}", wd.major(), wd.minor());
                if bfq {
                    fsx::write(d, "io.bfq.weight", &format!("{dev} {w}"))?;
                } else {
                    fsx::write(d, "io.weight", &format!("{dev} {}", blkio_to_io_weight(w)))?;
                }
            }
        }
        let throttles = [
            ("rbps", b.throttle_read_bps_device()),
            ("wbps", b.throttle_write_bps_device()),
            ("riops", b.throttle_read_iops_device()),
            ("wiops", b.throttle_write_iops_device()),
        ];
        for (key, list) in throttles {
            for t in list.iter().flatten() {
                let rate = if t.rate() == 0 {
                    "max".to_string()
                } else {
                    t.rate().to_string()
                };
                fsx::write(
                    d,
                    "io.max",
                    &format!("{}:{} {key}={rate}", t.major(), t.minor()),
                )?;
            }
        }
    }
    if let Some(d) = at(cg, "hugetlb") {
        for h in r.hugepage_limits().iter().flatten() {
            fsx::write(
                d,
                &format!("hugetlb.{}.max", h.page_size()),
                &h.limit().to_string(),
            )?;
        }
    }
    if let Some(u) = r.unified().as_ref().filter(|u| !u.is_empty()) {
        let d = cg.unified.as_deref().ok_or_else(|| {
            Error::Invalid("linux.resources.unified needs cgroup v2, which is not mounted".into())
        })?;
        for (k, v) in u {
            if k.contains('/') || k.starts_with('.') || !k.contains('.') {
                return Err(Error::Invalid(format!(
                    "linux.resources.unified: {k:?} is not a cgroup file name"
                )));
            }
            fsx::write(d, k, v)?;
        }
    }
    if let Some(rules) = r.devices() {
        if cg.v1_dir("devices").is_none() {
            if let Some(d) = &cg.unified {
                devices_bpf::apply(d, rules)?;
            }
        }
    }
    Ok(())
}

fn max_or(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

/// Sets cgroup.freeze and, when freezing, waits until cgroup.events reports `frozen 1`.
pub fn freeze(d: &Path, on: bool) -> Result<()> {
    fsx::write(d, "cgroup.freeze", if on { "1" } else { "0" })?;
    if !on {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut delay = Duration::from_micros(100);
    while keyed(&read_keyed(d, "cgroup.events"), "frozen") != 1 {
        if Instant::now() > deadline {
            let _ = fsx::write(d, "cgroup.freeze", "0");
            return Err(Error::Invalid(format!(
                "freezing {} did not finish in 10s",
                d.display()
            )));
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(10));
    }
    Ok(())
}

pub fn stats(cg: &Cgroup, s: &mut Stats) -> Result<()> {
    if let Some(d) = at(cg, "cpu") {
        let st = read_keyed(d, "cpu.stat");
        s.cpu.usage.total = keyed(&st, "usage_usec") * 1000;
        s.cpu.usage.user = keyed(&st, "user_usec") * 1000;
        s.cpu.usage.kernel = keyed(&st, "system_usec") * 1000;
        s.cpu.throttling.periods = keyed(&st, "nr_periods");
        s.cpu.throttling.throttled_periods = keyed(&st, "nr_throttled");
        s.cpu.throttling.throttled_time = keyed(&st, "throttled_usec") * 1000;
    }
    if let Some(d) = at(cg, "cpuset") {
        s.cpuset.cpus =
            stats::parse_cpu_list(&read_opt(d, "cpuset.cpus.effective").unwrap_or_default());
        s.cpuset.mems =
            stats::parse_cpu_list(&read_opt(d, "cpuset.mems.effective").unwrap_or_default());
    }
    if let Some(d) = at(cg, "memory") {
        let m = &mut s.memory;
        m.raw = read_keyed(d, "memory.stat").into_iter().collect();
        m.cache = m.raw.get("file").copied().unwrap_or(0);
        let events = read_keyed(d, "memory.events");
        m.usage.usage = read_u64(d, "memory.current").unwrap_or(0);
        m.usage.limit = read_u64(d, "memory.max").unwrap_or(0);
        m.usage.max = read_u64(d, "memory.peak").unwrap_or(0);
        m.usage.failcnt = keyed(&events, "max");
        // runc reports swap as memory+swap, matching v1's memsw.
        let swap = read_u64(d, "memory.swap.current").unwrap_or(0);
        let swap_max = read_u64(d, "memory.swap.max").unwrap_or(0);
        m.swap.usage = swap.saturating_add(m.usage.usage);
        m.swap.limit = swap_max.saturating_add(m.usage.limit);
    }
    if let Some(d) = at(cg, "pids") {
        s.pids.current = read_u64(d, "pids.current").unwrap_or(0);
        s.pids.limit = read_u64(d, "pids.max")
            .filter(|v| *v != u64::MAX)
            .unwrap_or(0);
    }
    if let Some(d) = at(cg, "io") {
        for line in read_opt(d, "io.stat").unwrap_or_default().lines() {
            let mut it = line.split_whitespace();
            let Some((ma, mi)) = it.next().and_then(|dev| dev.split_once(':')) else {
                continue;
            };
            let (Ok(major), Ok(minor)) = (ma.parse::<u64>(), mi.parse::<u64>()) else {
                continue;
            };
            for kv in it {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let Ok(value) = v.parse::<u64>() else {
                    continue;
                };
                let (list, op) = match k {
                    "rbytes" => (&mut s.blkio.io_service_bytes_recursive, "Read"),
                    "wbytes" => (&mut s.blkio.io_service_bytes_recursive, "Write"),
                    "rios" => (&mut s.blkio.io_serviced_recursive, "Read"),
                    "wios" => (&mut s.blkio.io_serviced_recursive, "Write"),
                    _ => continue,
                };
                list.push(BlkioEntry {
                    major,
                    minor,
                    op: op.into(),
                    value,
                });
            }
        }
    }
    if let Some(d) = at(cg, "hugetlb") {
        for size in stats::hugepage_sizes() {
            if !d.join(format!("hugetlb.{size}.current")).exists() {
                continue;
            }
            let events = read_keyed(d, &format!("hugetlb.{size}.events"));
            s.hugetlb.insert(
                size.clone(),
                Hugetlb {
                    usage: read_u64(d, &format!("hugetlb.{size}.current")).unwrap_or(0),
                    max: 0,
                    failcnt: keyed(&events, "max"),
                },
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder,
        LinuxResourcesBuilder, LinuxThrottleDeviceBuilder,
    };

    /// A fake cgroup2 tree: a mount with every controller offered and a container directory.
    fn fake() -> (tempfile::TempDir, Cgroup) {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(
            t.path().join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids",
        )
        .unwrap();
        let dir = t.path().join("berth/c1");
        std::fs::create_dir_all(&dir).unwrap();
        let cg = Cgroup {
            v1: vec![],
            unified: Some(dir),
            unified_root: Some(t.path().into()),
        };
        (t, cg)
    }

    fn read(cg: &Cgroup, f: &str) -> String {
        std::fs::read_to_string(cg.unified.as_ref().unwrap().join(f)).unwrap()
    }

    #[test]
    fn conversions() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
    }

    #[test]
    fn resource_files() {
        let (_t, cg) = fake();
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64 << 20)
                    .swap(128 << 20)
                    .reservation(32 << 20)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(1024u64)
                    .quota(50_000i64)
                    .period(100_000u64)
                    .cpus("0")
                    .mems("0")
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(50).build().unwrap())
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(500u16)
                    .throttle_read_bps_device(vec![LinuxThrottleDeviceBuilder::default()
                        .major(8)
                        .minor(0)
                        .rate(1_000_000u64)
                        .build()
                        .unwrap()])
                    .build()
                    .unwrap(),
            )
            .unified(
                [("memory.high".to_string(), "60000000".to_string())]
                    .into_iter()
                    .collect::<std::collections::HashMap<_, _>>(),
            )
            .build()
            .unwrap();
        apply(&cg, &r).unwrap();
        assert_eq!(read(&cg, "memory.max"), (64u64 << 20).to_string());
        assert_eq!(read(&cg, "memory.swap.max"), (64u64 << 20).to_string());
        assert_eq!(read(&cg, "memory.low"), (32u64 << 20).to_string());
        assert_eq!(read(&cg, "cpu.weight"), "39");
        assert_eq!(read(&cg, "cpu.max"), "50000 100000");
        assert_eq!(read(&cg, "cpuset.cpus"), "0");
        assert_eq!(read(&cg, "pids.max"), "50");
        assert_eq!(
            read(&cg, "io.weight"),
            format!("default {}", blkio_to_io_weight(500))
        );
        assert_eq!(read(&cg, "io.max"), "8:0 rbps=1000000");
        assert_eq!(read(&cg, "memory.high"), "60000000");
    }

    #[test]
    fn unlimited_and_bad_values() {
        let (_t, cg) = fake();
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(-1)
                    .swap(-1)
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(-1).build().unwrap())
            .build()
            .unwrap();
        apply(&cg, &r).unwrap();
        assert_eq!(read(&cg, "memory.max"), "max");
        assert_eq!(read(&cg, "memory.swap.max"), "max");
        assert_eq!(read(&cg, "pids.max"), "max");
        let bad = LinuxResourcesBuilder::default()
            .unified(
                [("../../etc/passwd".to_string(), "x".to_string())]
                    .into_iter()
                    .collect::<std::collections::HashMap<_, _>>(),
            )
            .build()
            .unwrap();
        assert!(apply(&cg, &bad)
            .unwrap_err()
            .to_string()
            .contains("unified"));
        let bad = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(100)
                    .swap(50)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        assert!(apply(&cg, &bad)
            .unwrap_err()
            .to_string()
            .contains("memory.swap"));
    }

    #[test]
    fn stats_from_files() {
        let (_t, cg) = fake();
        let d = cg.unified.clone().unwrap();
        std::fs::write(
            d.join("cpu.stat"),
            "usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 2\n",
        )
        .unwrap();
        std::fs::write(d.join("memory.current"), "4096\n").unwrap();
        std::fs::write(d.join("memory.max"), "max\n").unwrap();
        std::fs::write(d.join("memory.events"), "low 0\nhigh 0\nmax 3\noom 1\n").unwrap();
        std::fs::write(d.join("pids.current"), "4\n").unwrap();
        std::fs::write(d.join("pids.max"), "50\n").unwrap();
        std::fs::write(
            d.join("io.stat"),
            "8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0\n",
        )
        .unwrap();
        let mut s = Stats::default();
        stats(&cg, &mut s).unwrap();
        assert_eq!(s.cpu.usage.total, 10_000);
        assert_eq!(s.cpu.usage.user, 6_000);
        assert_eq!(s.memory.usage.usage, 4096);
        assert_eq!(s.memory.usage.limit, u64::MAX);
        assert_eq!(s.memory.usage.failcnt, 3);
        assert_eq!(s.pids.limit, 50);
        assert_eq!(s.blkio.io_service_bytes_recursive.len(), 2);
        assert_eq!(s.blkio.io_serviced_recursive[1].value, 2);
    }

    #[test]
    fn freeze_writes_and_waits() {
        let (_t, cg) = fake();
        let d = cg.unified.clone().unwrap();
        std::fs::write(d.join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        freeze(&d, true).unwrap();
        assert_eq!(read(&cg, "cgroup.freeze"), "1");
        assert!(cg.is_frozen().unwrap());
        cg.thaw().unwrap();
        assert!(!cg.is_frozen().unwrap());
    }

    #[test]
    fn create_enables_controllers_along_the_path() {
        let (t, cg) = fake();
        std::fs::remove_dir_all(t.path().join("berth")).unwrap();
        cg.create().unwrap();
        // Each level got the last controller written (a plain file keeps only the last write).
        assert_eq!(
            std::fs::read_to_string(t.path().join("cgroup.subtree_control")).unwrap(),
            "+pids"
        );
        assert_eq!(
            std::fs::read_to_string(t.path().join("berth/cgroup.subtree_control")).unwrap(),
            "+pids"
        );
        assert!(!t.path().join("berth/c1/cgroup.subtree_control").exists());
    }
}
