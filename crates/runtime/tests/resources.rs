//! cgroup limits enforced on real containers, and the commands that read and change them.

mod common;
use common::*;
use serde_json::json;

#[test]
fn memory_hog_is_oom_killed() {
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
    ]);
    b.spec["linux"]["resources"]["memory"] =
        json!({"limit": 32 * 1024 * 1024, "swap": 32 * 1024 * 1024});
    let (code, out, err) = b.run("oom1");
    assert_eq!(code, 137, "stdout {out} stderr {err}");
    assert!(!out.contains("survived"));
    b.assert_no_leftovers("oom1");
}

#[test]
fn fork_bomb_stops_at_the_pids_limit() {
    // The forking subshell dies when fork fails (busybox sh exits 2); the count is taken
    // with a glob, which needs no fork, while the sleeps still fill the cgroup.
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "(i=0; while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); done) 2>/dev/null; set -- /proc/[0-9]*; echo $#",
    ]);
    b.spec["linux"]["resources"]["pids"] = json!({"limit": 20});
    let (code, out, err) = b.run("pids1");
    assert_eq!(code, 0, "{err}");
    let n: usize = out.trim().parse().unwrap_or(999);
    assert!((10..=20).contains(&n), "{n} processes under a limit of 20");
    b.assert_no_leftovers("pids1");
}

#[test]
fn limits_are_written_to_the_cgroup() {
    let mut b = Bundle::new(&["sleep", "1000"]);
    b.spec["linux"]["resources"] = json!({
        "memory": {"limit": 50 * 1024 * 1024},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000},
        "pids": {"limit": 64}
    });
    b.write();
    assert!(b.rt(&["run", "-d", "lim1"]).status.success());
    let st = b.rt(&["events", "--stats", "lim1"]);
    assert!(st.status.success(), "{}", stderr_line(&st));
    let ev: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(ev["type"], "stats");
    assert_eq!(ev["id"], "lim1");
    assert_eq!(
        ev["data"]["memory"]["usage"]["limit"],
        json!(50 * 1024 * 1024)
    );
    assert_eq!(ev["data"]["pids"]["limit"], json!(64));
    assert!(ev["data"]["pids"]["current"].as_u64().unwrap() >= 1);

    let o = b.rt(&["update", "--memory", "80m", "--pids-limit", "100", "lim1"]);
    assert!(o.status.success(), "{}", stderr_line(&o));
    let st = b.rt(&["events", "--stats", "lim1"]);
    let ev: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(
        ev["data"]["memory"]["usage"]["limit"],
        json!(80 * 1024 * 1024)
    );
    assert_eq!(ev["data"]["pids"]["limit"], json!(100));

    let res = b.tmp.path().join("res.json");
    std::fs::write(&res, r#"{"pids": {"limit": 42}}"#).unwrap();
    let o = b.rt(&["update", "--resources", res.to_str().unwrap(), "lim1"]);
    assert!(o.status.success(), "{}", stderr_line(&o));
    let st = b.rt(&["events", "--stats", "lim1"]);
    let ev: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(ev["data"]["pids"]["limit"], json!(42));

    assert!(b.rt(&["delete", "--force", "lim1"]).status.success());
    b.assert_no_leftovers("lim1");
}

#[test]
fn pause_resume_and_ps() {
    let b = Bundle::new(&["sh", "-c", "while true; do sleep 0.01; done"]);
    assert!(b.rt(&["run", "-d", "pz1"]).status.success());
    let init = b.state("pz1")["pid"].as_i64().unwrap();

    let o = b.rt(&["ps", "--format", "json", "pz1"]);
    let pids: Vec<i64> = serde_json::from_slice(&o.stdout).unwrap();
    assert!(pids.contains(&init), "{pids:?}");
    let o = b.rt(&["ps", "pz1"]);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.lines().next().unwrap().contains("PID"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(&init.to_string())),
        "{table}"
    );

    assert!(b.rt(&["pause", "pz1"]).status.success());
    assert_eq!(b.status("pz1"), "paused");
    // Frozen: the shell's loop makes no progress (its children do not change).
    let before = b.rt(&["ps", "--format", "json", "pz1"]).stdout;
    std::thread::sleep(std::time::Duration::from_millis(100));
    let after = b.rt(&["ps", "--format", "json", "pz1"]).stdout;
    assert_eq!(before, after);
    let o = b.rt(&["exec", "pz1", "true"]);
    assert!(!o.status.success());
    assert!(b.rt(&["resume", "pz1"]).status.success());
    assert_eq!(b.status("pz1"), "running");
    let o = b.rt(&["resume", "pz1"]);
    assert!(!o.status.success());

    // A paused container can still be force-deleted.
    assert!(b.rt(&["pause", "pz1"]).status.success());
    let o = b.rt(&["delete", "--force", "pz1"]);
    assert!(o.status.success(), "{}", stderr_line(&o));
    b.assert_no_leftovers("pz1");
}

#[test]
fn features_lists_what_is_supported() {
    let o = std::process::Command::new(bin())
        .arg("features")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ociVersionMin"], "1.0.0");
    assert!(v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .contains(&json!("user")));
    assert!(v["linux"]["capabilities"]
        .as_array()
        .unwrap()
        .contains(&json!("CAP_SYS_ADMIN")));
    assert_eq!(v["linux"]["seccomp"]["enabled"], true);
}

/// A container's /sys/fs/cgroup shows its own cgroup and limits, with and without a cgroup
/// namespace (without one, the directories are bound rather than the host tree mounted).
#[test]
fn cgroup_mount_shows_the_containers_own_cgroup() {
    for cgroupns in [true, false] {
        let mut b = Bundle::new(&[
            "sh",
            "-c",
            "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes; ls /sys/fs/cgroup/memory | grep -c berth-test; touch /sys/fs/cgroup/pids/x 2>/dev/null && echo WRITABLE; true",
        ]);
        b.spec["linux"]["resources"] =
            json!({"pids": {"limit": 33}, "memory": {"limit": 50 * 1024 * 1024}});
        let nss: Vec<serde_json::Value> = b.spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| cgroupns || n["type"] != "cgroup")
            .cloned()
            .collect();
        b.spec["linux"]["namespaces"] = json!(nss);
        let id = format!("cgmnt{cgroupns}");
        let (code, out, err) = b.run(&id);
        assert_eq!(code, 0, "{err}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines, ["33", "52428800", "0"], "cgroupns {cgroupns}");
        b.assert_no_leftovers(&id);
    }
}

fn read(p: &std::path::Path, f: &str) -> String {
    std::fs::read_to_string(p.join(f))
        .unwrap_or_else(|e| panic!("{}: {e}", p.join(f).display()))
        .trim()
        .to_string()
}

/// The rest of linux.resources on this hybrid host, read back from the cgroup files:
/// memory reservation, swap and OOM killer, cpuset and cpu, blkio throttles, hugetlb (served
/// by the cgroup2 hierarchy here), and device rules that the kernel enforces.
#[test]
fn every_resource_reaches_its_cgroup_file() {
    let mut b = Bundle::new(&["sleep", "1000"]);
    b.spec["linux"]["resources"] = json!({
        "memory": {"limit": 64 << 20, "reservation": 32 << 20, "swap": 128 << 20, "disableOOMKiller": true},
        "cpu": {"shares": 512, "quota": 20000, "period": 100000, "cpus": "0", "mems": "0"},
        "blockIO": {"throttleReadBpsDevice": [{"major": 254, "minor": 0, "rate": 1048576}],
                    "throttleWriteIOPSDevice": [{"major": 254, "minor": 0, "rate": 100}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 21}],
        "devices": [{"allow": false, "access": "rwm"}]
    });
    b.write();
    let o = b.rt(&["run", "-d", "res1"]);
    assert!(o.status.success(), "{}", stderr_line(&o));
    let dir = |ctrl: &str| std::path::PathBuf::from(format!("/sys/fs/cgroup/{ctrl}{}", b.cgroup));
    let mem = dir("memory");
    assert_eq!(
        read(&mem, "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(
        read(&mem, "memory.soft_limit_in_bytes"),
        (32u64 << 20).to_string()
    );
    assert_eq!(
        read(&mem, "memory.memsw.limit_in_bytes"),
        (128u64 << 20).to_string()
    );
    assert!(read(&mem, "memory.oom_control").contains("oom_kill_disable 1"));
    assert_eq!(read(&dir("cpu"), "cpu.shares"), "512");
    assert_eq!(read(&dir("cpu"), "cpu.cfs_quota_us"), "20000");
    assert_eq!(read(&dir("cpuset"), "cpuset.cpus"), "0");
    assert_eq!(
        read(&dir("blkio"), "blkio.throttle.read_bps_device"),
        "254:0 1048576"
    );
    assert_eq!(
        read(&dir("blkio"), "blkio.throttle.write_iops_device"),
        "254:0 100"
    );
    assert_eq!(
        read(&dir("unified"), "hugetlb.2MB.max"),
        (4u64 << 21).to_string()
    );
    // Device rules: the defaults the runtime adds (null, zero, tty, …) and nothing else.
    let o = b.rt(&[
        "exec", "--cap", "CAP_MKNOD", "res1", "sh", "-c",
        "head -c1 /dev/zero | wc -c; mknod /dev/vdx b 254 0 && head -c1 /dev/vdx 2>&1 | grep -c 'not permitted'",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "1\n1",
        "{}",
        stderr_line(&o)
    );
    assert!(b.rt(&["delete", "--force", "res1"]).status.success());
    b.assert_no_leftovers("res1");
}

/// A relative cgroupsPath is placed under the runtime's own cgroup, per hierarchy.
#[test]
fn relative_cgroups_path_is_under_our_own_cgroup() {
    let mut b = Bundle::new(&["cat", "/proc/self/cgroup"]);
    let rel = unique("berth-rel");
    b.spec["linux"]["cgroupsPath"] = json!(rel);
    // Without a cgroup namespace the container sees host cgroup paths.
    let nss: Vec<serde_json::Value> = b.spec["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["type"] != "cgroup")
        .cloned()
        .collect();
    b.spec["linux"]["namespaces"] = json!(nss);
    let (code, out, err) = b.run("rel1");
    assert_eq!(code, 0, "{err}");
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let own_mem = own.lines().find(|l| l.contains(":memory:")).unwrap();
    let theirs = out.lines().find(|l| l.contains(":memory:")).unwrap();
    let want = format!("{}/{rel}", own_mem.trim_end_matches('/'));
    assert_eq!(theirs, want);
    let own_path = own_mem
        .splitn(3, ':')
        .nth(2)
        .unwrap()
        .trim_start_matches('/');
    let dir = std::path::Path::new("/sys/fs/cgroup/memory")
        .join(own_path)
        .join(&rel);
    assert!(!dir.exists(), "{} left behind", dir.display());
    b.assert_no_leftovers("rel1");
}
