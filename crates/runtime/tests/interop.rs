//! berth-runtime driven by the engines that use runc: Podman (through conmon), containerd
//! (`ctr --runc-binary`, through its runc shim) and dockerd (`--add-runtime`). Each test
//! starts its own daemon or store in a temporary directory, so it neither needs nor touches
//! the host's. The peers come from Debian (scripts/deps.sh installs them).

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn run(cmd: &mut Command) -> Output {
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .expect("peer is installed");
    eprintln!(
        "$ {cmd:?}\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A busybox rootfs and its tarball in `dir`.
fn rootfs(dir: &Path) -> (PathBuf, PathBuf) {
    let fs = dir.join("rootfs");
    make_rootfs(&fs);
    let tar = dir.join("rootfs.tar");
    assert!(run(Command::new("tar")
        .arg("-C")
        .arg(&fs)
        .arg("-cf")
        .arg(&tar)
        .arg("."))
    .status
    .success());
    (fs, tar)
}

/// A daemon that is killed (and reaped) when the test ends, however it ends.
/// Asked to stop with SIGTERM (SIGKILL after 20 s); then whatever it left mounted under its
/// directory is unmounted: dockerd bind-mounts its data root onto itself and a killed one
/// leaves that mount in the host's table for good.
struct Daemon {
    child: Child,
    dir: PathBuf,
}

impl Daemon {
    fn new(child: Child, dir: &Path) -> Daemon {
        Daemon {
            child,
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        unmount_under(&self.dir);
    }
}

/// Detaches every mount at or below `dir`, deepest first.
fn unmount_under(dir: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "{what} did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn podman_runs_containers_with_berth_runtime() {
    let t = tempfile::tempdir().unwrap();
    let (_, tar) = rootfs(t.path());
    // This machine has no CAP_SYS_RESOURCE, so Podman's default ulimits (raised hard limits)
    // cannot be applied; same settings as ../shared/peers-setup.sh.
    let conf = t.path().join("containers.conf");
    std::fs::write(
        &conf,
        "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n",
    )
    .unwrap();
    let podman = |args: &[&str]| {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", &conf)
            .arg("--root")
            .arg(t.path().join("root"))
            .arg("--runroot")
            .arg(t.path().join("runroot"))
            .arg("--tmpdir")
            .arg(t.path().join("tmp"))
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .args(["--runtime", bin()])
            .args(args);
        run(&mut c)
    };
    assert!(
        podman(&["import", "-q", tar.to_str().unwrap(), "localhost/bb:latest"])
            .status
            .success()
    );
    let o = podman(&[
        "run",
        "--rm",
        "--network",
        "none",
        "localhost/bb",
        "echo",
        "ok",
    ]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "ok");

    // Limits reach the container's own cgroup, which its /sys/fs/cgroup shows.
    let o = podman(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--memory",
        "32m",
        "--pids-limit",
        "20",
        "localhost/bb",
        "cat",
        "/sys/fs/cgroup/pids/pids.max",
    ]);
    assert_eq!(stdout(&o), "20");
    assert_eq!(
        podman(&[
            "run",
            "--rm",
            "--network",
            "none",
            "localhost/bb",
            "sh",
            "-c",
            "exit 7"
        ])
        .status
        .code(),
        Some(7)
    );

    // A detached container: exec, pause/unpause, stop.
    let o = podman(&[
        "run",
        "-d",
        "--name",
        "pd1",
        "--network",
        "none",
        "localhost/bb",
        "sleep",
        "100",
    ]);
    assert!(o.status.success());
    let o = podman(&["exec", "pd1", "sh", "-c", "echo exec-ok"]);
    assert_eq!(stdout(&o), "exec-ok");
    assert!(podman(&["pause", "pd1"]).status.success());
    let o = podman(&["inspect", "--format", "{{.State.Status}}", "pd1"]);
    assert_eq!(stdout(&o), "paused");
    assert!(podman(&["unpause", "pd1"]).status.success());
    assert!(podman(&["stop", "-t", "1", "pd1"]).status.success());
    assert!(podman(&["rm", "pd1"]).status.success());
}

#[test]
fn containerd_runs_containers_with_berth_runtime() {
    let t = tempfile::tempdir().unwrap();
    let (fs, _) = rootfs(t.path());
    let sock = t.path().join("c.sock");
    let conf = t.path().join("config.toml");
    std::fs::write(
        &conf,
        format!(
            "version = 2\nroot = {:?}\nstate = {:?}\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = {:?}\n[ttrpc]\n  address = {:?}\n[debug]\n  address = {:?}\n",
            t.path().join("root"),
            t.path().join("state"),
            sock,
            t.path().join("c.sock.ttrpc"),
            t.path().join("debug.sock"),
        ),
    )
    .unwrap();
    let log = std::fs::File::create(t.path().join("containerd.log")).unwrap();
    let _d = Daemon::new(
        Command::new("containerd")
            .arg("--config")
            .arg(&conf)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("containerd is installed"),
        t.path(),
    );
    wait_for("containerd", || sock.exists());
    let ctr = |args: &[&str]| {
        let mut c = Command::new("ctr");
        c.arg("-a").arg(&sock).args(["-n", "berth"]).args(args);
        run(&mut c)
    };
    let fs = fs.to_str().unwrap();
    let o = ctr(&[
        "run",
        "--rm",
        "--runc-binary",
        bin(),
        "--rootfs",
        fs,
        "c1",
        "/bin/sh",
        "-c",
        "echo ok",
    ]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "ok");

    let o = ctr(&[
        "run",
        "-d",
        "--runc-binary",
        bin(),
        "--rootfs",
        fs,
        "c2",
        "/bin/sleep",
        "100",
    ]);
    assert!(o.status.success());
    let o = ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "c2",
        "/bin/sh",
        "-c",
        "echo exec-ok",
    ]);
    assert_eq!(stdout(&o), "exec-ok");
    assert!(ctr(&["task", "pause", "c2"]).status.success());
    assert!(stdout(&ctr(&["task", "ls"])).contains("PAUSED"));
    assert!(ctr(&["task", "resume", "c2"]).status.success());
    assert!(stdout(&ctr(&["task", "ls"])).contains("RUNNING"));
    assert!(ctr(&["task", "kill", "-s", "SIGKILL", "c2"])
        .status
        .success());
    wait_for("task c2 to stop", || {
        stdout(&ctr(&["task", "ls"])).contains("STOPPED")
    });
    assert!(ctr(&["task", "delete", "c2"]).status.success());
    assert!(ctr(&["container", "delete", "c2"]).status.success());
}

#[test]
fn dockerd_runs_containers_with_berth_runtime() {
    let t = tempfile::tempdir().unwrap();
    let (_, tar) = rootfs(t.path());
    let sock = t.path().join("docker.sock");
    let host = format!("unix://{}", sock.display());
    let log = std::fs::File::create(t.path().join("dockerd.log")).unwrap();
    // A private dockerd: own data, exec root and socket, no bridge or iptables, and a
    // network namespace of its own: a dockerd without a bridge deletes `docker0`, which
    // on the host would break the running dockerd.
    let _d = Daemon::new(
        Command::new("unshare")
            .args(["--net", "dockerd"])
            .arg("--data-root")
            .arg(t.path().join("data"))
            .arg("--exec-root")
            .arg(t.path().join("exec"))
            .arg("--pidfile")
            .arg(t.path().join("docker.pid"))
            .args([
                "-H",
                &host,
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
            ])
            .args(["--storage-driver", "vfs"])
            .args([
                "--default-ulimit",
                "nofile=1024:1024",
                "--default-ulimit",
                "nproc=4096:4096",
            ])
            .arg(format!("--add-runtime=berth={}", bin()))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker.io is installed"),
        t.path(),
    );
    let docker = |args: &[&str]| {
        let mut c = Command::new("docker");
        c.args(["-H", &host]).args(args);
        run(&mut c)
    };
    wait_for("dockerd", || {
        Command::new("docker")
            .args(["-H", &host, "version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    assert!(docker(&["import", tar.to_str().unwrap(), "bb:latest"])
        .status
        .success());
    let o = docker(&[
        "run",
        "--rm",
        "--runtime",
        "berth",
        "--network",
        "none",
        "bb",
        "echo",
        "ok",
    ]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "ok");
    let o = docker(&[
        "run",
        "--rm",
        "--runtime",
        "berth",
        "--network",
        "none",
        "-m",
        "32m",
        "--cpus",
        "0.5",
        "bb",
        "cat",
        "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
    ]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "50000");
    let o = docker(&[
        "run",
        "--rm",
        "--runtime",
        "berth",
        "--network",
        "none",
        "bb",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3));

    assert!(docker(&[
        "run",
        "-d",
        "--name",
        "dk1",
        "--runtime",
        "berth",
        "--network",
        "none",
        "bb",
        "sleep",
        "100"
    ])
    .status
    .success());
    assert_eq!(
        stdout(&docker(&["exec", "dk1", "sh", "-c", "echo exec-ok"])),
        "exec-ok"
    );
    assert!(docker(&["pause", "dk1"]).status.success());
    assert_eq!(
        stdout(&docker(&["inspect", "-f", "{{.State.Status}}", "dk1"])),
        "paused"
    );
    assert!(docker(&["unpause", "dk1"]).status.success());
    assert!(docker(&["rm", "-f", "dk1"]).status.success());
}
