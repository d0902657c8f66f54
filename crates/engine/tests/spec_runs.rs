//! Specs from `build_spec` run as real containers under the workspace's berth-runtime,
//! and Docker's defaults are checked from inside: capabilities, masked and read-only
//! /proc paths, environment, user, limits, mounts and the default seccomp profile.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use engine::flags::{self, RunOptions, SeccompChoice};
use engine::{build_spec, EtcFiles, RootfsUsers, SpecContext};
use serde_json::json;

const BUSYBOX: &str = "/bin/busybox";
static SEQ: AtomicU32 = AtomicU32::new(0);
/// The first 12 characters of the container id given to `build_spec`: the host name.
const HOST_ID: &str = "abcdef012345";

/// The berth-runtime binary of this workspace: `target/<profile>/berth-runtime`.
fn runtime_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("berth-runtime");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p berth-runtime` (or `cargo test --workspace`)",
        bin.display()
    );
    bin
}

/// A rootfs holding a static busybox and its applets (as the runtime's tests make one).
fn make_rootfs(dir: &Path) {
    for d in ["bin", "proc", "sys", "dev", "etc", "tmp", "root"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy(BUSYBOX, dir.join("bin/busybox")).expect("busybox-static is installed");
    let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet));
        }
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
}

fn cgroup_roots() -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            matches!(f[sep + 1], "cgroup" | "cgroup2").then(|| PathBuf::from(f[4]))
        })
        .collect()
}

struct Container {
    tmp: tempfile::TempDir,
    id: String,
    cgroup: String,
}

impl Container {
    fn new() -> Container {
        let tmp = tempfile::Builder::new()
            .prefix("berth-engine-test")
            .tempdir()
            .unwrap();
        make_rootfs(&tmp.path().join("bundle/rootfs"));
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let id = format!("engine-{}-{n}", std::process::id());
        let cgroup = format!("/berth-test/{id}");
        Container { tmp, id, cgroup }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    /// Builds the spec for `opts` over a busybox image config and runs it in the
    /// foreground: (exit code, stdout, stderr).
    fn run(&self, opts: &RunOptions) -> (i32, String, String) {
        let bundle = self.path("bundle");
        let rootfs = bundle.join("rootfs");
        for (name, text) in [
            ("hosts", "127.0.0.1\tlocalhost\n"),
            ("hostname", "engine-test\n"),
            ("resolv.conf", "nameserver 127.0.0.1\n"),
        ] {
            std::fs::write(self.path(name), text).unwrap();
        }
        let users = RootfsUsers::open(&rootfs).unwrap();
        let ctx = SpecContext {
            rootfs: rootfs.clone(),
            id: format!("{HOST_ID}{}", "0".repeat(52)),
            etc: EtcFiles {
                hosts: Some(self.path("hosts")),
                hostname: Some(self.path("hostname")),
                resolv_conf: Some(self.path("resolv.conf")),
            },
            volumes: HashMap::new(),
            anonymous_volumes: HashMap::new(),
            cgroups_path: self.cgroup.clone(),
            users: &users,
            cgroup_namespace: false,
            network_namespace: None,
            init_binary: None,
        };
        let image = json!({"config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]}});
        let spec = build_spec(&image, opts, &ctx).expect("build_spec");
        std::fs::write(
            bundle.join("config.json"),
            serde_json::to_vec_pretty(&spec).unwrap(),
        )
        .unwrap();

        // Output through files: a pipe could be held open by a leftover process.
        let (out, err) = (self.path("stdout"), self.path("stderr"));
        let status = Command::new(runtime_bin())
            .arg("--root")
            .arg(self.path("state"))
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(&self.id)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .status()
            .unwrap();
        (
            status.code().unwrap_or(-1),
            std::fs::read_to_string(out).unwrap(),
            std::fs::read_to_string(err).unwrap(),
        )
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new(runtime_bin())
            .arg("--root")
            .arg(self.path("state"))
            .args(["delete", "--force", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for root in cgroup_roots() {
            let _ = std::fs::remove_dir(root.join(self.cgroup.trim_start_matches('/')));
        }
    }
}

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

/// Docker's default capability mask (CapBnd of `docker run busybox`).
const DOCKER_CAPS: &str = "00000000a80425fb";

#[test]
fn docker_defaults_inside_the_container() {
    let c = Container::new();
    let opts = RunOptions {
        command: sh(
            "grep Cap /proc/self/status; \
             for f in /proc/kcore /proc/keys /proc/timer_list; do [ -e $f ] && echo masked $f=$(wc -c < $f); done; \
             echo acpi=$(ls /proc/acpi 2>/dev/null | wc -l); \
             echo 1 > /proc/sys/kernel/domainname || echo sys-write-failed; \
             echo host=$(hostname) env=$HOSTNAME; \
             cat /etc/hostname; \
             echo shm=$(df -k /dev/shm | tail -1 | awk '{print $2}'); \
             echo pipe=$(echo a b c | tr ' ' '\\n' | sort -r | head -1)",
        ),
        ..Default::default()
    };
    let (code, out, err) = c.run(&opts);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    for set in ["CapBnd", "CapEff", "CapPrm"] {
        assert!(
            out.contains(&format!("{set}:\t{DOCKER_CAPS}")),
            "{set} in:\n{out}"
        );
    }
    assert!(out.contains("CapInh:\t0000000000000000"), "{out}");
    assert!(out.contains("CapAmb:\t0000000000000000"), "{out}");
    // /proc/kcore is absent on some kernels: check the masked files this one has.
    let masked: Vec<&str> = out.lines().filter(|l| l.starts_with("masked ")).collect();
    assert!(!masked.is_empty(), "{out}");
    assert!(
        masked.iter().all(|l| l.ends_with("=0")),
        "masked files read empty: {out}\n{err}"
    );
    assert!(out.contains("acpi=0"), "/proc/acpi is masked: {out}");
    assert!(
        out.contains("sys-write-failed"),
        "/proc/sys is read-only: {out}"
    );
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(
        out.contains(&format!("host={HOST_ID} env={HOST_ID}")),
        "{out}"
    );
    assert!(
        out.contains("engine-test"),
        "/etc/hostname is the engine's file: {out}"
    );
    assert!(out.contains("shm=65536"), "/dev/shm is 64m: {out}");
    assert!(out.contains("pipe=c"), "{out}");
}

#[test]
fn flags_take_effect() {
    let c = Container::new();
    let host_dir = c.path("shared");
    std::fs::create_dir(&host_dir).unwrap();
    std::fs::write(host_dir.join("file"), "from-host\n").unwrap();
    let lookup = |_: &str| None;
    let opts = RunOptions {
        env: vec![flags::parse_env("FOO=bar baz", &lookup).unwrap().unwrap()],
        workdir: Some("/tmp".into()),
        user: Some("nobody".into()),
        memory: Some(flags::parse_memory("64m").unwrap()),
        pids_limit: Some(flags::parse_pids_limit("50").unwrap()),
        read_only: true,
        mounts: vec![
            flags::parse_volume(&format!("{}:/shared:ro", host_dir.display())).unwrap(),
            flags::parse_tmpfs("/scratch:size=1m").unwrap(),
        ],
        command: sh(
            "echo foo=$FOO; echo cwd=$(pwd); echo id=$(id -u):$(id -g); \
             echo mem=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes); \
             echo pids=$(cat /sys/fs/cgroup/pids/pids.max); \
             grep CapEff /proc/self/status; \
             touch /rootfile 2>/dev/null || echo root-ro; \
             cat /shared/file; touch /shared/x 2>/dev/null || echo bind-ro; \
             echo data > /scratch/f && echo tmpfs=$(cat /scratch/f); \
             grep ' /scratch ' /proc/mounts",
        ),
        ..Default::default()
    };
    let (code, out, err) = c.run(&opts);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("foo=bar baz"), "{out}");
    assert!(out.contains("cwd=/tmp"), "{out}");
    assert!(out.contains("id=65534:65534"), "{out}");
    assert!(out.contains("mem=67108864"), "{out}");
    assert!(out.contains("pids=50"), "{out}");
    assert!(
        out.contains("CapEff:\t0000000000000000"),
        "a non-root user has no effective caps: {out}"
    );
    assert!(out.contains("root-ro"), "--read-only: {out}");
    assert!(out.contains("from-host"), "-v bind: {out}");
    assert!(out.contains("bind-ro"), "-v …:ro: {out}");
    assert!(out.contains("tmpfs=data"), "--tmpfs: {out}");
    let tmpfs_line = out
        .lines()
        .find(|l| l.contains(" /scratch "))
        .unwrap_or_default();
    assert!(
        tmpfs_line.starts_with("tmpfs /scratch tmpfs rw,"),
        "{tmpfs_line}"
    );
    assert!(tmpfs_line.contains("nosuid,nodev,noexec"), "{tmpfs_line}");
    assert!(tmpfs_line.contains("size=1024k"), "{tmpfs_line}");
}

/// Whether this kernel lets a process without CAP_SYS_ADMIN create a user namespace,
/// which is what `unshare -U` needs when seccomp does not stop it.
fn userns_allowed() -> bool {
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string());
    read("/proc/sys/kernel/unprivileged_userns_clone").map_or(true, |v| v != "0")
        && read("/proc/sys/user/max_user_namespaces").map_or(true, |v| v != "0")
}

#[test]
fn default_seccomp_profile_blocks_unshare() {
    let script = "echo start; unshare -U true && echo unshared; echo done";
    let c = Container::new();
    let opts = RunOptions {
        command: sh(script),
        ..Default::default()
    };
    let (code, out, err) = c.run(&opts);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("start") && out.contains("done"), "{out}");
    assert!(
        !out.contains("unshared"),
        "unshare(2) must be refused: {out}"
    );
    assert!(
        err.contains("Operation not permitted"),
        "EPERM from the filter: {err}"
    );

    // Without the profile the same call succeeds: it was seccomp, not a missing
    // capability, that refused it.
    if !userns_allowed() {
        eprintln!("skipping the unconfined half: user namespaces are disabled here");
        return;
    }
    let c = Container::new();
    let mut opts = RunOptions {
        command: sh(script),
        ..Default::default()
    };
    opts.security.seccomp = SeccompChoice::Unconfined;
    let (code, out, err) = c.run(&opts);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("unshared"), "unconfined: {out}\n{err}");
}
