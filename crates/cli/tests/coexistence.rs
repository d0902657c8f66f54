//! berth beside the host's Docker and Podman, each with a user network of its own and a
//! published port: berth's default bridge, a berth user network (with names through its
//! DNS server) and berth's published ports work while Docker's iptables rules
//! (`FORWARD` policy DROP, its DOCKER chains) and netavark's are present, and Docker's and
//! Podman's containers still serve their ports with berth's table in place, and after
//! berth's containers and network are gone.
//!
//! Uses the host's dockerd when one answers (`../shared/peers-setup.sh` starts it);
//! otherwise (a fresh CI machine) it starts one of its own in the host's network
//! namespace, with Docker's default bridge and iptables rules, so that Docker's
//! networking is there to coexist with; that dockerd's `docker0` and iptables chains stay
//! after it stops, as they do after any dockerd. Podman must be installed. Traffic goes
//! only to 127.0.0.1 and between containers on the test's own networks. Host ports
//! 18190–18193.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::Berth;

/// The page on 127.0.0.1:`port`, trimmed.
fn fetch(port: u16) -> String {
    support::fetch(SocketAddr::from(([127, 0, 0, 1], port)))
        .trim()
        .to_string()
}

fn ok(o: Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// `-H` for the test's own dockerd, when the host has none running.
static DOCKER_HOST: OnceLock<String> = OnceLock::new();

fn docker(args: &[&str]) -> Output {
    let mut c = Command::new("docker");
    if let Some(host) = DOCKER_HOST.get() {
        c.args(["-H", host]);
    }
    c.args(args).output().unwrap()
}

fn docker_answers() -> bool {
    docker(&["version", "--format", "{{.Server.Version}}"])
        .status
        .success()
}

/// A dockerd of the test's own (data, exec root, socket) in the host's network namespace,
/// with its default networking: started only when the host runs none. Stopped when
/// dropped: SIGTERM, so it stops the containerd it started.
/// Its directory is not the Berth's: that one must hold nothing mounted when the test
/// checks it, and dockerd keeps its data root mounted until it stops.
struct OwnDockerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl OwnDockerd {
    fn start() -> OwnDockerd {
        let tmp = tempfile::Builder::new()
            .prefix("berth-cx-dockerd")
            .tempdir()
            .unwrap();
        let dir = tmp.path().to_path_buf();
        let sock = format!("unix://{}", dir.join("docker.sock").display());
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .args(["-H", &sock, "--storage-driver", "vfs"])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("docker.io is installed (scripts/deps.sh --peers)");
        let own = OwnDockerd { child, dir: tmp };
        DOCKER_HOST.set(sock).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !docker_answers() {
            assert!(
                Instant::now() < deadline,
                "the test's dockerd did not come up: {}",
                std::fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        own
    }
}

impl Drop for OwnDockerd {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        unmount_under(self.dir.path());
    }
}

/// Detaches every mount at or below `dir`, deepest first: a dockerd that did not get to
/// clean up leaves its data root bind-mounted onto itself in the host's table.
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

/// Podman on a store of the test's own (its networks are the host's, in
/// /etc/containers/networks), with the settings of peers-setup.sh.
struct Podman {
    dir: PathBuf,
}

impl Podman {
    fn cmd(&self, args: &[&str]) -> Output {
        Command::new("podman")
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .args(args)
            .output()
            .expect("podman is installed (../shared/peers-setup.sh)")
    }
}

/// Whatever the peers were given is removed, pass or fail.
struct Peers<'a> {
    podman: &'a Podman,
    docker_containers: Vec<String>,
    docker_networks: Vec<String>,
    docker_images: Vec<String>,
    podman_containers: Vec<String>,
    podman_networks: Vec<String>,
}

impl Drop for Peers<'_> {
    fn drop(&mut self) {
        for c in &self.docker_containers {
            let _ = docker(&["rm", "-f", c]);
        }
        for n in &self.docker_networks {
            let _ = docker(&["network", "rm", n]);
        }
        for i in &self.docker_images {
            let _ = docker(&["rmi", "-f", i]);
        }
        for c in &self.podman_containers {
            let _ = self.podman.cmd(&["rm", "-f", "-t", "0", c]);
        }
        for n in &self.podman_networks {
            let _ = self.podman.cmd(&["network", "rm", "-f", n]);
        }
    }
}

fn httpd_script(body: &str) -> String {
    format!("mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 80 -h /www")
}

#[test]
fn berth_docker_and_podman_networks_work_side_by_side() {
    let b = Berth::with_busybox();
    // Declared before the peers' guard, so it is stopped after their cleanup.
    let _own_dockerd = (!docker_answers()).then(OwnDockerd::start);
    let pid = std::process::id();
    let tar = b.tmp.path().join("bb.tar");
    let tar = tar.to_str().unwrap();
    let pdir = b.tmp.path().join("podman");
    std::fs::create_dir_all(&pdir).unwrap();
    std::fs::write(
        pdir.join("containers.conf"),
        "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n\
         [engine]\nruntime = \"runc\"\n",
    )
    .unwrap();
    let podman = Podman { dir: pdir };
    let image = format!("berth-cx-{pid}:1");
    let dnet = format!("berth-cx-d-{pid}");
    let pnet = format!("berth-cx-p-{pid}");
    let bnet = format!("berth-cx-b-{pid}");
    let mut peers = Peers {
        podman: &podman,
        docker_containers: vec![],
        docker_networks: vec![],
        docker_images: vec![],
        podman_containers: vec![],
        podman_networks: vec![],
    };

    // Docker: its own user network and a published port.
    ok(docker(&["import", tar, &image]), "docker import");
    peers.docker_images.push(image.clone());
    ok(
        docker(&["network", "create", &dnet]),
        "docker network create",
    );
    peers.docker_networks.push(dnet.clone());
    let script = httpd_script("hello-docker");
    let d = ok(
        docker(&[
            "run",
            "-d",
            "--network",
            &dnet,
            "-p",
            "127.0.0.1:18190:80",
            &image,
            "sh",
            "-c",
            &script,
        ]),
        "docker run",
    );
    peers.docker_containers.push(d);

    // Podman: the same, through netavark.
    ok(
        podman.cmd(&["import", "-q", tar, &format!("localhost/{image}")]),
        "podman import",
    );
    ok(
        podman.cmd(&["network", "create", &pnet]),
        "podman network create",
    );
    peers.podman_networks.push(pnet.clone());
    let script = httpd_script("hello-podman");
    let p = ok(
        podman.cmd(&[
            "run",
            "-d",
            "--network",
            &pnet,
            "-p",
            "127.0.0.1:18191:80",
            &format!("localhost/{image}"),
            "sh",
            "-c",
            &script,
        ]),
        "podman run",
    );
    peers.podman_containers.push(p);
    assert_eq!(fetch(18190), "hello-docker");
    assert_eq!(fetch(18191), "hello-podman");

    // berth: the default bridge and a user network, each with a published port, and a
    // name resolved by the user network's DNS server.
    let nets_guard = NetGuard(&b, bnet.clone());
    b.ok(&["network", "create", &bnet]);
    let on_bridge = b
        .ok(&[
            "run",
            "-d",
            "-p",
            "127.0.0.1:18192:80",
            "bb:1",
            "sh",
            "-c",
            &httpd_script("hello-berth-bridge"),
        ])
        .trim()
        .to_string();
    let web = format!("cx-web-{pid}");
    b.ok(&[
        "run",
        "-d",
        "--name",
        &web,
        "--network",
        &bnet,
        "-p",
        "127.0.0.1:18193:80",
        "bb:1",
        "sh",
        "-c",
        &httpd_script("hello-berth-user"),
    ]);
    assert_eq!(fetch(18192), "hello-berth-bridge");
    assert_eq!(fetch(18193), "hello-berth-user");
    let out = b.ok(&[
        "run",
        "--rm",
        "--network",
        &bnet,
        "bb:1",
        "sh",
        "-c",
        &format!(
            "for i in $(seq 30); do \
               printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {web} 80 | grep hello && exit 0; \
               sleep 0.1; done; echo unreachable"
        ),
    ]);
    assert!(out.contains("hello-berth-user"), "{out}");
    // Container to container on the default bridge, through Docker's FORWARD DROP.
    let ip = b
        .ok(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.IPAddress}}",
            &on_bridge,
        ])
        .trim()
        .to_string();
    let out = b.ok(&[
        "run",
        "--rm",
        "bb:1",
        "sh",
        "-c",
        &format!(
            "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} 80 | grep hello || echo unreachable"
        ),
    ]);
    assert!(out.contains("hello-berth-bridge"), "{out}");
    // Theirs still serve with berth's table and bridges in place.
    assert_eq!(fetch(18190), "hello-docker");
    assert_eq!(fetch(18191), "hello-podman");

    // berth's go; theirs are untouched.
    let ids = b.ok(&["ps", "-aq"]);
    let mut rm = vec!["rm", "-f"];
    rm.extend(ids.lines());
    b.ok(&rm);
    b.ok(&["network", "rm", &bnet]);
    std::mem::forget(nets_guard);
    assert_eq!(fetch(18190), "hello-docker");
    assert_eq!(fetch(18191), "hello-podman");
    assert!(docker(&["network", "inspect", &dnet]).status.success());
    drop(peers);
    assert!(!Path::new(&format!("/etc/containers/networks/{pnet}.json")).exists());
    b.assert_nothing_left();
}

/// Removes the berth network if the test fails before it does.
struct NetGuard<'a>(&'a Berth, String);

impl Drop for NetGuard<'_> {
    fn drop(&mut self) {
        let ids = self.0.code(&["ps", "-aq", "--no-trunc"]).1;
        let ids: Vec<&str> = ids.lines().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            let _ = self.0.code(&args);
        }
        let _ = self.0.code(&["network", "rm", &self.1]);
    }
}
