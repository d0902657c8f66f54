//! `berth` run on a store of its own in a temporary directory.
// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub struct Berth {
    pub tmp: tempfile::TempDir,
}

impl Berth {
    pub fn new() -> Berth {
        // berth runs these from beside itself. Cargo builds a package's binaries only for
        // that package's own integration tests: `cargo test --workspace` (or
        // `cargo build --workspace`) builds them, `cargo test -p berth-cli` alone does not.
        let dir = Path::new(env!("CARGO_BIN_EXE_berth")).parent().unwrap();
        for bin in ["berth-runtime", "berth-monitor", "berth-init", "berth-dns"] {
            assert!(
                dir.join(bin).exists(),
                "{} is missing: build the workspace's binaries first (cargo build --workspace)",
                dir.join(bin).display()
            );
        }
        Berth {
            tmp: tempfile::Builder::new()
                .prefix("berth-cli-test")
                .tempdir()
                .unwrap(),
        }
    }

    /// A store holding `bb:1`: busybox with its applets, `CMD ["sh"]`.
    pub fn with_busybox() -> Berth {
        let b = Berth::new();
        let dir = b.tmp.path().join("bbfs");
        for d in ["bin", "etc", "tmp"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
        let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" {
                let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet));
            }
        }
        std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
        let tar = b.tar_of(&dir, "bb.tar");
        b.ok(&[
            "import",
            "-c",
            "CMD [\"sh\"]",
            tar.to_str().unwrap(),
            "bb:1",
        ]);
        b
    }

    pub fn code(&self, args: &[&str]) -> (i32, String, String) {
        let o = self.run(args);
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// Nothing of the store's containers left on the host: no mounts under the test's
    /// directory, no container or state directories, no monitor serving them.
    pub fn assert_nothing_left(&self) {
        let tmp = self.tmp.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(&tmp),
            "mounts left: {}",
            mounts
                .lines()
                .filter(|l| l.contains(&tmp))
                .collect::<Vec<_>>()
                .join("\n")
        );
        for dir in ["root/containers", "run/containers"] {
            let entries: Vec<_> = std::fs::read_dir(self.tmp.path().join(dir))
                .map(|d| d.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            assert!(entries.is_empty(), "{dir}: {entries:?}");
        }
        let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
        let ps = String::from_utf8_lossy(&ps.stdout);
        assert!(
            !ps.lines()
                .any(|l| l.contains("berth-monitor") && l.contains(&tmp)),
            "a monitor is left"
        );
        assert_eq!(self.ok(&["ps", "-aq"]), "");
    }

    pub fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
        c.arg("--root")
            .arg(self.root())
            .arg("--runroot")
            .arg(self.tmp.path().join("run"))
            .args(args)
            // Registry credentials of this test only, never the host's ~/.docker.
            .env("DOCKER_CONFIG", self.tmp.path().join("docker-config"));
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "berth {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Fails with exit 1 and a single `Error:` line; returns that line.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(1), "berth {args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.starts_with("Error: "), "{err}");
        err
    }

    /// A tarball of a small root filesystem: busybox, /bin/sh and /etc/hello.
    pub fn rootfs_tar(&self) -> PathBuf {
        let dir = self.tmp.path().join("rootfs");
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
        let _ = std::os::unix::fs::symlink("busybox", dir.join("bin/sh"));
        std::fs::write(dir.join("etc/hello"), "hello\n").unwrap();
        self.tar_of(&dir, "rootfs.tar")
    }

    /// `dir` as a tarball named `name` in the test's directory.
    pub fn tar_of(&self, dir: &Path, name: &str) -> PathBuf {
        let tar = self.tmp.path().join(name);
        let st = Command::new("tar")
            .arg("-C")
            .arg(dir)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        tar
    }

    /// `berth import` of [`Berth::rootfs_tar`] with `CMD ["/bin/sh"]`, tagged `tag`; the ID.
    pub fn import(&self, tag: &str) -> String {
        let tar = self.rootfs_tar();
        let id = self.ok(&[
            "import",
            "-c",
            "CMD [\"/bin/sh\"]",
            tar.to_str().unwrap(),
            tag,
        ]);
        id.trim().to_string()
    }

    pub fn image_id(&self, name: &str) -> String {
        let id = self.ok(&["image", "inspect", "--format", "{{.Id}}", name]);
        id.trim().to_string()
    }

    /// How many blobs the store holds.
    pub fn blobs(&self) -> usize {
        std::fs::read_dir(self.root().join("blobs/sha256"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Every file under the store, sorted.
    pub fn files(&self) -> Vec<PathBuf> {
        fn walk(p: &Path, out: &mut Vec<PathBuf>) {
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    let path = e.path();
                    if e.file_type().unwrap().is_dir() {
                        walk(&path, out);
                    } else {
                        out.push(path);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root(), &mut out);
        out.sort();
        out
    }
}

impl Drop for Berth {
    /// A test that fails half-way must not leave containers running: remove whatever
    /// this store still holds (a store without containers answers at once).
    fn drop(&mut self) {
        if !self.root().join("containers").is_dir() {
            return;
        }
        let Ok(o) = self.cmd(&["ps", "-aq", "--no-trunc"]).output() else {
            return;
        };
        let ids = String::from_utf8_lossy(&o.stdout).into_owned();
        let ids: Vec<&str> = ids.lines().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids);
            let _ = self.cmd(&args).output();
        }
    }
}

/// Polls `f` every 20 ms for up to 20 s.
pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `GET /index.html` over HTTP/1.0 to `addr`; the body.
pub fn http_get(addr: std::net::SocketAddr) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default())
}

/// The first non-empty body [`http_get`] gets from `addr`, waiting for the server.
pub fn fetch(addr: std::net::SocketAddr) -> String {
    let mut body = String::new();
    wait_for(&format!("http://{addr}/"), || {
        body = http_get(addr).unwrap_or_default();
        !body.is_empty()
    });
    body
}

/// The host's network interfaces, `ip -br link`.
pub fn links() -> String {
    let o = Command::new("ip").args(["-br", "link"]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Holders of the host-wide leases that belong to containers of `b`'s store.
pub fn leases_of(b: &Berth) -> Vec<String> {
    use engine::network;
    let state = network::state::State::open(Path::new(network::STATE_DIR)).unwrap();
    state
        .leases()
        .unwrap()
        .into_iter()
        .filter(|l| l.root == b.root())
        .map(|l| l.holder)
        .collect()
}
