//! Shared setup for the monitor's integration tests: real containers from a busybox
//! rootfs under the workspace's berth-runtime, each test with its own runtime root, state
//! directory and cgroup, so tests run in parallel.
//!
//! The test process makes itself a child subreaper: the monitor detaches (its first
//! process exits at once), and the real monitor then becomes our child, so a test can
//! wait for it and see its exit status.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const BUSYBOX: &str = "/bin/busybox";
static SEQ: AtomicU32 = AtomicU32::new(0);

pub fn monitor_bin() -> &'static str {
    env!("CARGO_BIN_EXE_berth-monitor")
}

/// The berth-runtime binary of this workspace: `target/<profile>/berth-runtime`, which
/// a workspace build (nextest, `cargo test --workspace`) puts next to our binary.
pub fn runtime_bin() -> PathBuf {
    let bin = Path::new(monitor_bin()).with_file_name("berth-runtime");
    assert!(
        bin.exists(),
        "{} is missing: build the workspace (`cargo build -p berth-runtime`)",
        bin.display()
    );
    bin
}

/// A rootfs holding a static busybox and its applets.
pub fn make_rootfs(dir: &Path) {
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
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
}

/// `name` from PATH, if it is installed.
pub fn installed(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

pub fn cgroup_roots() -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            matches!(f[sep + 1], "cgroup" | "cgroup2").then(|| PathBuf::from(f[4]))
        })
        .collect()
}

fn become_subreaper() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| nix::sys::prctl::set_child_subreaper(true).unwrap());
}

/// One container: a bundle, a runtime root and a monitor state directory of its own.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub id: String,
    pub bundle: PathBuf,
    pub rt_root: PathBuf,
    pub state: PathBuf,
    pub log: PathBuf,
    pub spec: Value,
    /// The OCI runtime: the workspace's berth-runtime unless a test picks another.
    pub runtime: PathBuf,
    cgroup: String,
    /// The monitor, killed and reaped at the end if it still runs.
    monitor: Option<i32>,
}

impl Fixture {
    pub fn new(args: &[&str]) -> Fixture {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        Fixture::with_id(&format!("mon-{}-{n}", std::process::id()), args)
    }

    pub fn with_id(id: &str, args: &[&str]) -> Fixture {
        become_subreaper();
        let tmp = tempfile::Builder::new()
            .prefix("berth-monitor-test")
            .tempdir()
            .unwrap();
        let bundle = tmp.path().join("bundle");
        make_rootfs(&bundle.join("rootfs"));
        let out = Command::new(runtime_bin())
            .args(["spec", "--bundle"])
            .arg(&bundle)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut spec: Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
        spec["process"]["terminal"] = json!(false);
        spec["process"]["args"] = json!(args);
        spec["process"]["env"] = json!(["PATH=/bin", "TERM=xterm"]);
        let cgroup = format!("/berth-test/{id}-{}", std::process::id());
        spec["linux"]["cgroupsPath"] = json!(cgroup);
        let f = Fixture {
            id: id.to_string(),
            rt_root: tmp.path().join("runtime"),
            // As the engine lays it out: a directory named by the full id.
            state: tmp.path().join("containers").join(id),
            log: tmp.path().join("containers").join(format!("{id}-json.log")),
            bundle,
            spec,
            runtime: runtime_bin(),
            cgroup,
            tmp,
            monitor: None,
        };
        f.write_spec();
        f
    }

    pub fn write_spec(&self) {
        std::fs::write(
            self.bundle.join("config.json"),
            serde_json::to_vec_pretty(&self.spec).unwrap(),
        )
        .unwrap();
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// The monitor's command line for this container, without the sync fd.
    pub fn command(&self, extra: &[&str]) -> Command {
        let mut c = Command::new(monitor_bin());
        c.arg("--id")
            .arg(&self.id)
            .arg("--bundle")
            .arg(&self.bundle)
            .arg("--runtime")
            .arg(&self.runtime)
            .arg("--runtime-root")
            .arg(&self.rt_root)
            .arg("--state-dir")
            .arg(&self.state)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// Starts a monitor as the engine does: stdio /dev/null, a pipe as --sync-fd 3, and
    /// the first process reaped at once. With `--log` in `extra` the log goes to
    /// `self.log`.
    pub fn launch(&mut self, extra: &[&str]) -> Launched {
        std::fs::create_dir_all(self.state.parent().unwrap()).unwrap();
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if let Some(i) = args.iter().position(|a| a == "--log") {
            args[i] = "--log-path".into();
            args.insert(i + 1, self.log.to_str().unwrap().into());
        }
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let w_raw = w.as_raw_fd();
        let mut cmd = self.command(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>());
        cmd.args(["--sync-fd", "3"]);
        // SAFETY: between fork and exec only dup2/fcntl run, both async-signal-safe. The
        // write end is close-on-exec everywhere else, so a test's other children (tests
        // share a process under `cargo test`) never hold it and EOF means the monitor.
        unsafe {
            cmd.pre_exec(move || {
                if w_raw == 3 {
                    nix::fcntl::fcntl(
                        std::os::fd::BorrowedFd::borrow_raw(3),
                        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
                    )?;
                } else if libc::dup2(w_raw, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let status = cmd.status().expect("run berth-monitor");
        drop(w);
        assert!(status.success(), "the monitor's first process: {status}");
        let pid: i32 = std::fs::read_to_string(self.state.join("monitor.pid"))
            .expect("monitor.pid is written before the first process exits")
            .trim()
            .parse()
            .unwrap();
        self.monitor = Some(pid);
        Launched {
            sync: std::fs::File::from(r),
            monitor: pid,
        }
    }

    /// Waits for the monitor to exit and reaps it: its exit code.
    pub fn wait_monitor(&mut self) -> i32 {
        let pid = self.monitor.take().expect("a monitor was launched");
        wait_pid(pid, Duration::from_secs(60))
            .unwrap_or_else(|| panic!("monitor {pid} still running"))
    }

    /// Runs the runtime with output through files (a created container would hold a pipe).
    pub fn runtime(&self, args: &[&str]) -> (bool, String) {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let out = self.path(&format!("rt-out.{n}"));
        let status = Command::new(&self.runtime)
            .arg("--root")
            .arg(&self.rt_root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        (status.success(), std::fs::read_to_string(out).unwrap())
    }

    /// Ids the runtime knows, from `list -q`.
    pub fn runtime_ids(&self) -> Vec<String> {
        let (ok, out) = self.runtime(&["list", "-q"]);
        assert!(ok);
        out.lines().map(str::to_string).collect()
    }

    pub fn exit_file(&self) -> Value {
        let text = std::fs::read_to_string(self.state.join("exit")).expect("the exit file");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    /// Log entries (stream, log) of `path`, checking each line's format.
    pub fn entries(&self, path: &Path) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(path).unwrap();
        text.lines()
            .map(|line| {
                let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
                let obj = v.as_object().unwrap();
                assert_eq!(obj.len(), 3, "{line}");
                assert!(is_rfc3339_nanos(v["time"].as_str().unwrap()), "{line}");
                (
                    v["stream"].as_str().unwrap().to_string(),
                    v["log"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Connects to attach.sock as the engine does: through an O_PATH handle on the state
    /// directory, whatever its length. Waits for the socket to appear.
    pub fn attach(&self) -> UnixStream {
        let sock = self.state.join("attach.sock");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !sock.exists() {
            assert!(Instant::now() < deadline, "no attach.sock");
            std::thread::sleep(Duration::from_millis(5));
        }
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(&self.state)
            .unwrap();
        UnixStream::connect(format!("/proc/self/fd/{}/attach.sock", dir.as_raw_fd())).unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Best effort: a failed test must leave no monitor, container or cgroup behind.
        if let Some(pid) = self.monitor.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            wait_pid(pid, Duration::from_secs(10));
        }
        let container: Option<i32> = std::fs::read_to_string(self.state.join("pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let _ = self.runtime(&["delete", "--force", &self.id]);
        if let Some(pid) = container {
            // Ours only if its monitor died first; otherwise this finds nothing.
            let _ = nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
        }
        for root in cgroup_roots() {
            let _ = std::fs::remove_dir(root.join(self.cgroup.trim_start_matches('/')));
        }
    }
}

/// Waits for our child `pid` to exit (up to `timeout`) and reaps it: its exit code, or
/// 128 + signal.
pub fn wait_pid(pid: i32, timeout: Duration) -> Option<i32> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let deadline = Instant::now() + timeout;
    loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => return Some(c),
            Ok(WaitStatus::Signaled(_, s, _)) => return Some(128 + s as i32),
            Ok(_) => {}
            Err(e) => panic!("waitpid {pid}: {e}"),
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn is_rfc3339_nanos(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 30
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'.',
            29 => c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

pub struct Launched {
    sync: std::fs::File,
    pub monitor: i32,
}

impl Launched {
    /// The line the monitor reports on the sync fd, then EOF (the monitor closed it).
    pub fn outcome(mut self) -> Value {
        let mut text = String::new();
        // The monitor closes the pipe after the line (or by dying), so this ends.
        self.sync.read_to_string(&mut text).unwrap();
        assert!(
            text.ends_with('\n') && text.lines().count() == 1,
            "{text:?}"
        );
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    /// The container's pid from a successful outcome.
    pub fn pid(self) -> i32 {
        let v = self.outcome();
        v["pid"].as_i64().unwrap_or_else(|| panic!("no pid: {v}")) as i32
    }
}

/// One frame of the attach protocol.
pub fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![stream, 0, 0, 0];
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// Reads frames until the monitor closes the connection: (stream, payload) in order.
pub fn read_frames(sock: &mut UnixStream) -> Vec<(u8, Vec<u8>)> {
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut frames = vec![];
    loop {
        let mut h = [0u8; 8];
        match sock.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return frames,
            Err(e) => panic!("reading frames: {e} after {frames:?}"),
        }
        let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
        let mut payload = vec![0; len];
        sock.read_exact(&mut payload).unwrap();
        frames.push((h[0], payload));
    }
}

/// The payloads of `stream`, concatenated, as text.
pub fn stream_text(frames: &[(u8, Vec<u8>)], stream: u8) -> String {
    let bytes: Vec<u8> = frames
        .iter()
        .filter(|(s, _)| *s == stream)
        .flat_map(|(_, p)| p.clone())
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

pub fn send(sock: &mut UnixStream, stream: u8, payload: &[u8]) {
    sock.write_all(&frame(stream, payload)).unwrap();
}
