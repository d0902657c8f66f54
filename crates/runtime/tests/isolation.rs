//! The runtime spec's process and Linux settings, checked from inside real containers.

mod common;
use common::*;
use serde_json::json;

fn run_ok(b: &Bundle, id: &str) -> String {
    let (code, out, err) = b.run(id);
    assert_eq!(code, 0, "{id}: stderr {err}, stdout {out}");
    b.assert_no_leftovers(id);
    out
}

#[test]
fn namespaces_are_new() {
    let b = Bundle::new(&[
        "sh",
        "-c",
        "echo $$; for n in pid net ipc uts mnt cgroup; do readlink /proc/self/ns/$n; done",
    ]);
    let out = run_ok(&b, "ns1");
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("1"),
        "the container's process is pid 1 in its namespace"
    );
    for (line, kind) in lines.zip(["pid", "net", "ipc", "uts", "mnt", "cgroup"]) {
        let host = std::fs::read_link(format!("/proc/self/ns/{kind}")).unwrap();
        assert_ne!(
            line,
            host.to_str().unwrap(),
            "{kind} namespace is the host's"
        );
    }
}

#[test]
fn joins_a_namespace_by_path() {
    let b = Bundle::new(&["readlink", "/proc/self/ns/net"]);
    let mut b = b;
    let nss = b.spec["linux"]["namespaces"].as_array_mut().unwrap();
    nss.retain(|n| n["type"] != "network");
    let ours = format!("/proc/{}/ns/net", std::process::id());
    nss.push(json!({"type": "network", "path": ours}));
    let out = run_ok(&b, "ns2");
    let host = std::fs::read_link(&ours).unwrap();
    assert_eq!(out.trim(), host.to_str().unwrap());
}

#[test]
fn hostname_domainname_env_cwd() {
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "hostname; cat /proc/sys/kernel/domainname; echo $FOO; pwd; echo $HOME",
    ]);
    b.spec["hostname"] = json!("boxy");
    b.spec["domainname"] = json!("example.test");
    b.spec["process"]["env"] = json!(["PATH=/bin", "FOO=bar baz"]);
    b.spec["process"]["cwd"] = json!("/tmp/work/dir");
    let out = run_ok(&b, "h1");
    assert_eq!(out, "boxy\nexample.test\nbar baz\n/tmp/work/dir\n/root\n");
}

#[test]
fn user_groups_and_umask() {
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "id -u; id -g; cat /proc/self/status | grep ^Groups; umask",
    ]);
    b.spec["process"]["user"] =
        json!({"uid": 1234, "gid": 4321, "additionalGids": [7, 8], "umask": 63});
    let out = run_ok(&b, "u1");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1234");
    assert_eq!(lines[1], "4321");
    assert_eq!(
        lines[2].split_whitespace().skip(1).collect::<Vec<_>>(),
        ["7", "8"]
    );
    assert_eq!(lines[3], "0077");
}

#[test]
fn capabilities_and_no_new_privileges() {
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs)' /proc/self/status",
    ]);
    let caps = json!(["CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    b.spec["process"]["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps, "inheritable": caps, "ambient": caps});
    let out = run_ok(&b, "c1");
    // CAP_KILL = 5, CAP_NET_BIND_SERVICE = 10: mask 0x420.
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        let line = out.lines().find(|l| l.starts_with(set)).unwrap();
        assert!(line.ends_with("0000000000000420"), "{line}");
    }
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");

    b.spec["process"]["noNewPrivileges"] = json!(false);
    b.spec["process"]["capabilities"] = json!({});
    let out = run_ok(&b, "c2");
    assert!(out.contains("NoNewPrivs:\t0"), "{out}");
    assert!(out
        .lines()
        .find(|l| l.starts_with("CapBnd"))
        .unwrap()
        .ends_with("0000000000000000"));
}

#[test]
fn rlimits_and_oom_score_adj() {
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "ulimit -n; ulimit -Hn; cat /proc/self/oom_score_adj",
    ]);
    b.spec["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 200, "hard": 300}]);
    b.spec["process"]["oomScoreAdj"] = json!(500);
    let out = run_ok(&b, "rl1");
    assert_eq!(out, "200\n300\n500\n");
}

#[test]
fn raising_a_hard_rlimit_without_cap_sys_resource_is_reported() {
    let mut b = Bundle::new(&["true"]);
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    b.spec["process"]["rlimits"] =
        json!([{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": hard.saturating_add(1)}]);
    b.write();
    let o = b.rt(&["run", "rl2"]);
    if o.status.success() {
        // This host grants CAP_SYS_RESOURCE: raising works and there is nothing to report.
        return;
    }
    let err = stderr_line(&o);
    assert!(
        err.contains("process.rlimits") && err.contains("RLIMIT_NOFILE"),
        "{err}"
    );
    b.assert_no_leftovers("rl2");
}

#[test]
fn mounts_bind_tmpfs_and_options() {
    let mut b = Bundle::new(&["sh", "-c", "cat /data/f; echo x > /data/g 2>/dev/null && echo writable || echo readonly; grep ' /scratch ' /proc/self/mountinfo; echo y > /scratch/z && cat /scratch/z"]);
    let host = b.tmp.path().join("hostdata");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("f"), "from host\n").unwrap();
    b.spec["mounts"].as_array_mut().unwrap().extend([
        json!({"destination": "/data", "type": "bind", "source": host, "options": ["rbind", "ro"]}),
        json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "size=1m", "mode=700"]}),
    ]);
    let out = run_ok(&b, "m1");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "from host");
    assert_eq!(lines[1], "readonly");
    assert!(
        lines[2].contains("nosuid") && lines[2].contains("nodev"),
        "{}",
        lines[2]
    );
    assert_eq!(lines[3], "y");
    assert!(!host.join("g").exists());
}

#[test]
fn readonly_root_masked_and_readonly_paths() {
    let b = Bundle::new(&["sh", "-c", "touch /x 2>/dev/null && echo rw-root || echo ro-root; cat /proc/kcore | wc -c; ls /sys/firmware | wc -l; echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo rw-sys || echo ro-sys"]);
    let out = run_ok(&b, "ro1");
    assert_eq!(out, "ro-root\n0\n0\nro-sys\n");
}

#[test]
fn default_devices_and_dev_symlinks() {
    let b = Bundle::new(&["sh", "-c", "ls -l /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty | awk '{print $1, $5, $6}'; readlink /dev/fd; readlink /dev/ptmx; echo hi > /dev/null && head -c 3 /dev/zero | wc -c"]);
    let out = run_ok(&b, "dev1");
    let lines: Vec<&str> = out.lines().collect();
    for l in &lines[..6] {
        assert!(l.starts_with("crw-rw-rw-"), "{l}");
    }
    assert_eq!(lines[6], "/proc/self/fd");
    assert_eq!(lines[7], "pts/ptmx");
    assert_eq!(lines[8], "3");
}

#[test]
fn linux_devices_are_created() {
    let mut b = Bundle::new(&["sh", "-c", "ls -ln /dev/mynull | awk '{print $1, $3, $4, $5, $6}'; echo ok > /dev/mynull && echo written"]);
    b.spec["linux"]["devices"] = json!([{"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o620, "uid": 0, "gid": 6}]);
    let out = run_ok(&b, "dev2");
    assert_eq!(out, "crw--w---- 0 6 1, 3\nwritten\n");
}

#[test]
fn sysctl_is_applied_in_the_container() {
    let mut b = Bundle::new(&[
        "cat",
        "/proc/sys/net/ipv4/ip_forward",
        "/proc/sys/kernel/msgmax",
    ]);
    b.spec["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.msgmax": "12345"});
    let out = run_ok(&b, "sys1");
    assert_eq!(out, "1\n12345\n");
    // The host's own values are untouched.
    assert_ne!(
        std::fs::read_to_string("/proc/sys/kernel/msgmax")
            .unwrap()
            .trim(),
        "12345"
    );
}

#[test]
fn user_namespace_with_mappings() {
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map /proc/self/gid_map",
    ]);
    b.spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    b.spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.spec["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    // The rootfs must be owned by the mapped root to be usable.
    let out = std::process::Command::new("chown")
        .args(["-R", "100000:100000"])
        .arg(b.rootfs())
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = run_ok(&b, "user1");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
}

#[test]
fn annotations_appear_in_state() {
    let mut b = Bundle::new(&["sleep", "100"]);
    b.spec["annotations"] = json!({"org.example.key": "value"});
    b.write();
    assert!(b.rt(&["create", "a1"]).status.success());
    assert_eq!(b.state("a1")["annotations"]["org.example.key"], "value");
    assert!(b.rt(&["delete", "a1"]).status.success());
}

#[test]
fn no_pivot_runs_with_move_and_chroot() {
    let b = Bundle::new(&["sh", "-c", "ls /bin/busybox"]);
    b.write();
    let o = b.rt(&["run", "--no-pivot", "np1"]);
    assert!(o.status.success(), "{}", stderr_line(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "/bin/busybox\n");
    b.assert_no_leftovers("np1");
}

/// The time namespace with offsets, personality, I/O priority, scheduler policy and the
/// rootfs propagation, each read back from inside.
#[test]
fn time_personality_ioprio_scheduler_propagation() {
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "cut -d. -f1 /proc/uptime; uname -m; ionice; grep -o 'policy.*' /proc/self/sched | tr -d ' '; \
         awk '$5 == \"/\"' /proc/self/mountinfo | grep -c shared:",
    ]);
    let year = 365 * 86400;
    b.spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "time"}));
    b.spec["linux"]["timeOffsets"] = json!({
        "monotonic": {"secs": year, "nanosecs": 0},
        "boottime": {"secs": year, "nanosecs": 0}
    });
    b.spec["linux"]["personality"] = json!({"domain": "LINUX32"});
    b.spec["linux"]["rootfsPropagation"] = json!("shared");
    b.spec["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 6});
    b.spec["process"]["scheduler"] = json!({"policy": "SCHED_BATCH"});
    let out = run_ok(&b, "misc1");
    let lines: Vec<&str> = out.lines().collect();
    let uptime: u64 = lines[0].parse().unwrap();
    assert!(
        uptime >= year as u64,
        "boottime offset not applied: {uptime}"
    );
    assert_eq!(lines[1], "i686");
    assert_eq!(lines[2], "best-effort: prio 6");
    assert_eq!(lines[3], "policy:3");
    assert_eq!(lines[4], "1", "rootfs is not a shared mount");
}
