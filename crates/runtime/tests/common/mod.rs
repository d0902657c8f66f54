//! Shared setup for the runtime's integration tests: real containers from a busybox
//! rootfs, each test with its own state root and cgroup path so tests run in parallel.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub const BUSYBOX: &str = "/bin/busybox";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_berth-runtime")
}

pub struct Bundle {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub dir: PathBuf,
    pub spec: Value,
    /// A cgroup path unique to this test.
    pub cgroup: String,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
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
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
}

impl Bundle {
    pub fn new(args: &[&str]) -> Bundle {
        let tmp = tempfile::Builder::new()
            .prefix("berth-rt-test")
            .tempdir()
            .unwrap();
        let root = tmp.path().join("state");
        let dir = tmp.path().join("bundle");
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        make_rootfs(&dir.join("rootfs"));
        let out = Command::new(bin())
            .args(["spec", "--bundle"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "spec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut spec: Value =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        spec["process"]["terminal"] = json!(false);
        spec["process"]["args"] = json!(args);
        let cgroup = format!("/berth-test/{}", unique("cg"));
        spec["linux"]["cgroupsPath"] = json!(cgroup);
        let b = Bundle {
            tmp,
            root,
            dir,
            spec,
            cgroup,
        };
        b.write();
        b
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    pub fn write(&self) {
        std::fs::write(
            self.dir.join("config.json"),
            serde_json::to_vec_pretty(&self.spec).unwrap(),
        )
        .unwrap();
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("--root").arg(&self.root).args(args);
        c.current_dir(&self.dir);
        c
    }

    /// Runs a runtime command with stdin closed and output captured. Output goes through
    /// files, not pipes: a created container inherits them and would hold a pipe open.
    pub fn rt(&self, args: &[&str]) -> Output {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let out_path = self.tmp.path().join(format!("out.{n}"));
        let err_path = self.tmp.path().join(format!("err.{n}"));
        let status = self
            .cmd(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .status()
            .expect("run berth-runtime");
        Output {
            status,
            stdout: std::fs::read(&out_path).unwrap(),
            stderr: std::fs::read(&err_path).unwrap(),
        }
    }

    /// `run` in the foreground: (exit code, stdout, stderr).
    pub fn run(&self, id: &str) -> (i32, String, String) {
        self.write();
        let out = self.rt(&["run", "--bundle", self.dir.to_str().unwrap(), id]);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn state(&self, id: &str) -> Value {
        let out = self.rt(&["state", id]);
        assert!(
            out.status.success(),
            "state: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap().to_string()
    }

    /// Cgroup directories of this bundle's container that exist on the host.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let mut found = vec![];
        for base in cgroup_roots() {
            let p = base.join(self.cgroup.trim_start_matches('/'));
            if p.exists() {
                found.push(p);
            }
        }
        found
    }

    /// Nothing of container `id` may remain: state dir, cgroup, mounts.
    pub fn assert_no_leftovers(&self, id: &str) {
        assert!(
            !self.root.join(id).exists(),
            "state directory of {id} left behind"
        );
        assert_eq!(
            self.cgroup_dirs(),
            Vec::<PathBuf>::new(),
            "cgroup left behind"
        );
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let rootfs = self.rootfs();
        assert!(
            !mounts.contains(rootfs.to_str().unwrap()),
            "mount of the rootfs left behind"
        );
    }

    pub fn wait_status(&self, id: &str, want: &str) {
        for _ in 0..500 {
            if self.status(id) == want {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("{id} never reached {want}: {}", self.status(id));
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        // Best effort: a failed test must not leave containers running.
        if let Ok(rd) = std::fs::read_dir(&self.root) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = self.rt(&["delete", "--force", &id]);
            }
        }
        for d in self.cgroup_dirs() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

pub fn cgroup_roots() -> Vec<PathBuf> {
    let mut roots = vec![];
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for line in info.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        if f[sep + 1] == "cgroup" || f[sep + 1] == "cgroup2" {
            roots.push(PathBuf::from(f[4]));
        }
    }
    roots
}

pub fn stderr_line(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

/// Accepts one connection and receives a message with one file descriptor:
/// (the descriptor, the message bytes).
pub fn accept_fd(l: &std::os::unix::net::UnixListener) -> (std::os::fd::RawFd, Vec<u8>) {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::AsRawFd;
    let (conn, _) = l.accept().unwrap();
    let mut buf = vec![0u8; 65536];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .unwrap();
    let n = msg.bytes;
    let fd = msg
        .cmsgs()
        .unwrap()
        .find_map(|c| match c {
            ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
            _ => None,
        })
        .expect("a file descriptor");
    buf.truncate(n);
    (fd, buf)
}
