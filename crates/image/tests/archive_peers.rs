//! `berth load` / `berth save` against the peers that write and read the same formats:
//! podman (docker-archive and oci-archive) and dockerd 20.10 (docker-archive). Each test
//! uses its own podman root or its own private dockerd in a temporary directory, so it
//! neither needs nor touches the host's images. The peers come from Debian.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use image::archive::{self, ArchiveImage, Format};
use image::digest::{Digest, DigestReader};
use image::reference::Reference;
use image::store::BlobStore;

const BUSYBOX: &str = "/bin/busybox";

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

fn ok(o: Output) -> String {
    assert!(o.status.success(), "command failed");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A busybox rootfs tarball in `dir`, as `import` takes it.
fn rootfs_tar(dir: &Path) -> PathBuf {
    let fs = dir.join("rootfs");
    for d in ["bin", "etc", "tmp"] {
        std::fs::create_dir_all(fs.join(d)).unwrap();
    }
    std::fs::copy(BUSYBOX, fs.join("bin/busybox")).expect("busybox-static is installed");
    std::os::unix::fs::symlink("busybox", fs.join("bin/sh")).unwrap();
    std::fs::write(fs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    let tar = dir.join("rootfs.tar");
    ok(run(Command::new("tar")
        .arg("-C")
        .arg(&fs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")));
    tar
}

fn load_file(path: &Path, store: &BlobStore) -> Vec<ArchiveImage> {
    let file = BufReader::new(File::open(path).unwrap());
    archive::load(file, store).unwrap_or_else(|e| panic!("berth load {}: {e}", path.display()))
}

fn save_file(path: &Path, store: &BlobStore, images: &[(Digest, Vec<Reference>)], format: Format) {
    let out = File::create(path).unwrap();
    archive::save(images, store, std::io::BufWriter::new(out), format).unwrap();
}

/// The diff_id of a stored layer: the sha256 of its uncompressed tar.
fn diff_id(store: &BlobStore, layer: &Digest) -> Digest {
    let mut blob = store.open_blob(layer).unwrap();
    let mut head = [0u8; 2];
    blob.read_exact(&mut head).unwrap();
    let blob = store.open_blob(layer).unwrap();
    let tar: Box<dyn Read> = if head == [0x1f, 0x8b] {
        Box::new(flate2::read::GzDecoder::new(blob))
    } else {
        Box::new(blob)
    };
    let mut reader = DigestReader::new(tar);
    std::io::copy(&mut reader, &mut std::io::sink()).unwrap();
    reader.digest()
}

fn store_in(dir: &Path) -> BlobStore {
    BlobStore::open(dir).unwrap()
}

fn ingest_is_empty(store: &BlobStore) -> bool {
    std::fs::read_dir(store.ingest_dir())
        .unwrap()
        .next()
        .is_none()
}

/// podman with its own root and runroot under `root` (vfs: plain directories, no mounts
/// left behind, so the temporary directory's removal cleans up).
struct Podman {
    root: PathBuf,
}

impl Podman {
    fn new(root: PathBuf) -> Podman {
        Podman { root }
    }

    fn run(&self, args: &[&str]) -> Output {
        run(Command::new("podman")
            .arg("--root")
            .arg(self.root.join("root"))
            .arg("--runroot")
            .arg(self.root.join("runroot"))
            .args(["--storage-driver", "vfs"])
            .args(args))
    }

    fn inspect(&self, image: &str, format: &str) -> String {
        ok(self.run(&["image", "inspect", "--format", format, image]))
    }
}

fn check_podman_image(store: &BlobStore, image: &ArchiveImage, id: &str, diff_ids: &[Digest]) {
    assert_eq!(
        image.tags,
        vec![Reference::parse("localhost/bb:1").unwrap()]
    );
    assert_eq!(image.config.hex(), id, "config digest is podman's image id");
    let layers: Vec<Digest> = image.layers.iter().map(|l| diff_id(store, l)).collect();
    assert_eq!(layers, diff_ids);
    assert!(ingest_is_empty(store));
}

#[test]
fn podman_archives_load_and_save() {
    let t = tempfile::tempdir().unwrap();
    let tar = rootfs_tar(t.path());
    let podman = Podman::new(t.path().join("podman"));
    ok(podman.run(&["import", tar.to_str().unwrap(), "localhost/bb:1"]));
    let id = podman.inspect("localhost/bb:1", "{{.Id}}");
    let diff_ids: Vec<Digest> = podman
        .inspect(
            "localhost/bb:1",
            "{{range .RootFS.Layers}}{{println .}}{{end}}",
        )
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(diff_ids.len(), 1);

    let docker_tar = t.path().join("podman-docker.tar");
    let oci_tar = t.path().join("podman-oci.tar");
    ok(podman.run(&[
        "save",
        "--format",
        "docker-archive",
        "-o",
        docker_tar.to_str().unwrap(),
        "localhost/bb:1",
    ]));
    ok(podman.run(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        oci_tar.to_str().unwrap(),
        "localhost/bb:1",
    ]));

    let store = store_in(&t.path().join("berth-docker"));
    let from_docker = load_file(&docker_tar, &store);
    assert_eq!(from_docker.len(), 1);
    check_podman_image(&store, &from_docker[0], &id, &diff_ids);

    let oci_store = store_in(&t.path().join("berth-oci"));
    let from_oci = load_file(&oci_tar, &oci_store);
    assert_eq!(from_oci.len(), 1);
    check_podman_image(&oci_store, &from_oci[0], &id, &diff_ids);

    // skopeo's oci-archive: the name given after the path lands in ref.name; without one,
    // the image has no name.
    let skopeo_tar = t.path().join("skopeo-oci.tar");
    for (name, tags) in [(":localhost/bb:1", 1), ("", 0)] {
        let _ = std::fs::remove_file(&skopeo_tar);
        ok(run(Command::new("skopeo").args([
            "copy",
            "-q",
            &format!("docker-archive:{}", docker_tar.display()),
            &format!("oci-archive:{}{name}", skopeo_tar.display()),
        ])));
        let skopeo_store = store_in(&t.path().join(format!("berth-skopeo{tags}")));
        let loaded = load_file(&skopeo_tar, &skopeo_store);
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].tags.len(), tags);
        if tags == 1 {
            check_podman_image(&skopeo_store, &loaded[0], &id, &diff_ids);
        }
    }

    // berth save → podman load, in fresh podman roots. Docker format with a second name:
    // podman reads our index.json as an oci-archive when it lists one image, and falls back
    // to manifest.json when it lists more.
    let out = t.path().join("berth-docker.tar");
    let image = &from_docker[0];
    for (n, extra) in [None, Some("example.com/bb:2")].into_iter().enumerate() {
        let mut tags = image.tags.clone();
        tags.extend(extra.map(|e| Reference::parse(e).unwrap()));
        save_file(
            &out,
            &store,
            &[(image.manifest.clone(), tags)],
            Format::Docker,
        );
        let fresh = Podman::new(t.path().join(format!("podman-docker-{n}")));
        ok(fresh.run(&["load", "-i", out.to_str().unwrap()]));
        let mut want = vec!["localhost/bb:1"];
        want.extend(extra);
        for name in &want {
            assert_eq!(fresh.inspect(name, "{{.Id}}"), id, "{name}");
        }
        let names = fresh.inspect("localhost/bb:1", "{{range .RepoTags}}{{println .}}{{end}}");
        let mut names: Vec<&str> = names.lines().collect();
        names.sort();
        want.sort();
        assert_eq!(names, want);
    }

    // OCI format: podman 4.3 loads an oci-archive only if index.json lists one image.
    let out = t.path().join("berth-oci.tar");
    let image = &from_oci[0];
    save_file(
        &out,
        &oci_store,
        &[(image.manifest.clone(), image.tags.clone())],
        Format::Oci,
    );
    let fresh = Podman::new(t.path().join("podman-oci"));
    ok(fresh.run(&["load", "-i", out.to_str().unwrap()]));
    assert_eq!(fresh.inspect("localhost/bb:1", "{{.Id}}"), id);
    assert_eq!(
        fresh.inspect("localhost/bb:1", "{{.RepoTags}}"),
        "[localhost/bb:1]"
    );

    // With several names, skopeo picks one by its ref.name.
    let tags = vec![
        Reference::parse("localhost/bb:1").unwrap(),
        Reference::parse("example.com/bb:2").unwrap(),
    ];
    save_file(
        &out,
        &oci_store,
        &[(image.manifest.clone(), tags)],
        Format::Oci,
    );
    for name in ["localhost/bb:1", "example.com/bb:2"] {
        let raw = run(Command::new("skopeo").args([
            "inspect",
            "--raw",
            &format!("oci-archive:{}:{name}", out.display()),
        ]));
        assert!(raw.status.success(), "skopeo inspect {name}");
        assert_eq!(Digest::sha256_of(&raw.stdout), image.manifest, "{name}");
    }
}

/// A private dockerd: own data, exec root and socket, no bridge or iptables, and a network
/// namespace of its own (a dockerd without a bridge deletes `docker0`, which on the host
/// would break the running dockerd). Killed when dropped (unshare execs dockerd).
struct Dockerd {
    child: Child,
    host: String,
}

impl Dockerd {
    fn start(dir: &Path) -> Dockerd {
        let sock = dir.join("docker.sock");
        let host = format!("unix://{}", sock.display());
        let log = File::create(dir.join("dockerd.log")).unwrap();
        let child = Command::new("unshare")
            .args(["--net", "dockerd"])
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .args(["-H", &host])
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false"])
            .args(["--storage-driver", "vfs"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker.io is installed");
        let dockerd = Dockerd { child, host };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !dockerd.ready() {
            assert!(Instant::now() < deadline, "dockerd did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        dockerd
    }

    fn ready(&self) -> bool {
        Command::new("docker")
            .args(["-H", &self.host, "version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn run(&self, args: &[&str]) -> Output {
        run(Command::new("docker").args(["-H", &self.host]).args(args))
    }
}

impl Drop for Dockerd {
    /// SIGTERM first, so dockerd stops the containerd it started; SIGKILL if it hangs.
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn docker_archives_load_and_save() {
    let t = tempfile::tempdir().unwrap();
    let tar = rootfs_tar(t.path());
    let docker = Dockerd::start(t.path());
    ok(docker.run(&["import", tar.to_str().unwrap(), "bb:latest"]));
    let id = ok(docker.run(&["image", "inspect", "--format", "{{.Id}}", "bb:latest"]));
    let diff_ids = ok(docker.run(&[
        "image",
        "inspect",
        "--format",
        "{{range .RootFS.Layers}}{{println .}}{{end}}",
        "bb:latest",
    ]));
    let saved = t.path().join("docker-save.tar");
    ok(docker.run(&["save", "-o", saved.to_str().unwrap(), "bb:latest"]));

    let store = store_in(&t.path().join("berth"));
    let loaded = load_file(&saved, &store);
    assert_eq!(loaded.len(), 1);
    let image = &loaded[0];
    assert_eq!(image.tags, vec![Reference::parse("bb:latest").unwrap()]);
    assert_eq!(image.config.to_string(), id);
    let layers: Vec<String> = image
        .layers
        .iter()
        .map(|l| diff_id(&store, l).to_string())
        .collect();
    assert_eq!(layers, diff_ids.lines().collect::<Vec<_>>());
    assert!(ingest_is_empty(&store));

    // berth save → docker load: the image comes back under its own and a new name.
    ok(docker.run(&["rmi", "bb:latest"]));
    let out = t.path().join("berth-save.tar");
    let tags = vec![
        Reference::parse("bb:latest").unwrap(),
        Reference::parse("localhost:5000/berth/bb:2").unwrap(),
    ];
    save_file(
        &out,
        &store,
        &[(image.manifest.clone(), tags)],
        Format::Docker,
    );
    ok(docker.run(&["load", "-i", out.to_str().unwrap()]));
    for name in ["bb:latest", "localhost:5000/berth/bb:2"] {
        let got = ok(docker.run(&["image", "inspect", "--format", "{{.Id}}", name]));
        assert_eq!(got, id, "{name}");
    }
}
