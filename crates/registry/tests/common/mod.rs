//! Test helpers: a private `docker-registry`, a tiny scriptable HTTP server standing in for
//! hostile or token-protected registries, and images built in memory.
// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use image::digest::Digest;
use image::images::ImageStore;
use image::manifest::host_platform;
use image::meta::NewImage;
use image::reference::Reference;
use registry::{Event, Options};

pub fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

pub fn store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    (dir, store)
}

/// Options with an empty credentials file of its own, so tests never read ~/.docker.
pub fn options(dir: &Path) -> Options {
    Options {
        insecure: false,
        auth_file: Some(dir.join("docker-config/config.json")),
    }
}

/// Collects progress events.
#[derive(Default)]
pub struct Events(pub Mutex<Vec<Event>>);

impl Events {
    pub fn sink(&self) -> impl Fn(Event) + Sync + '_ {
        move |e| self.0.lock().unwrap().push(e)
    }

    pub fn all(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `docker-registry serve` on 127.0.0.1 with its own storage, killed on drop.
pub struct Registry {
    pub port: u16,
    child: Child,
    pub dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        Registry::start_in(tempfile::tempdir().unwrap(), String::new())
    }

    /// With htpasswd auth for `users` (name, password).
    pub fn with_htpasswd(users: &[(&str, &str)]) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        let lines: String = users
            .iter()
            .map(|(u, p)| format!("{u}:{}\n", bcrypt::hash(p, 5).unwrap()))
            .collect();
        std::fs::write(&file, lines).unwrap();
        let auth = format!(
            "auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n",
            file.display()
        );
        Registry::start_in(dir, auth)
    }

    fn start_in(dir: tempfile::TempDir, extra: String) -> Registry {
        for _ in 0..5 {
            let port = free_port();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                     http:\n  addr: 127.0.0.1:{port}\n{extra}",
                    dir.path().join("data").display()
                ),
            )
            .unwrap();
            let log = std::fs::File::create(dir.path().join("log")).unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("docker-registry is installed (apt-get install docker-registry)");
            if wait_ready(&mut child, port) {
                return Registry { port, child, dir };
            }
            // Most likely the port was taken in between: try another.
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("docker-registry did not start");
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Until `/v2/` answers (200, or 401 with auth), or the process died (port taken).
fn wait_ready(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = conn.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
            let mut head = [0u8; 12];
            if conn.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") {
                return true;
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Runs a command, panicking with its output if it fails; returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

// ---------------------------------------------------------------------------------------
// Images in memory.

/// A tar of `files` (name, content); directories are implied.
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o755);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_600_000_000);
        builder.append_data(&mut header, name, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// A busybox root filesystem: the static binary and a few applet links.
pub fn busybox_tar() -> Vec<u8> {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static is installed");
    let mut builder = tar::Builder::new(Vec::new());
    let header = || {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h
    };
    let mut dir = |name: &str| {
        let mut h = header();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(1_600_000_000);
        builder.append_data(&mut h, name, &[][..]).unwrap();
    };
    for d in ["bin/", "etc/", "tmp/"] {
        dir(d);
    }
    let mut h = header();
    h.set_mode(0o755);
    h.set_size(busybox.len() as u64);
    h.set_mtime(1_600_000_000);
    builder
        .append_data(&mut h, "bin/busybox", busybox.as_slice())
        .unwrap();
    for applet in ["sh", "ls", "cat", "echo"] {
        let mut h = header();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_mtime(1_600_000_000);
        builder
            .append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    let hostname = b"berth-test\n";
    let mut h = header();
    h.set_mode(0o644);
    h.set_size(hostname.len() as u64);
    h.set_mtime(1_600_000_000);
    builder
        .append_data(&mut h, "etc/hostname", &hostname[..])
        .unwrap();
    builder.into_inner().unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compress {
    Gzip,
    Zstd,
}

pub fn compress(data: &[u8], how: Compress) -> Vec<u8> {
    match how {
        Compress::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(data).unwrap();
            enc.finish().unwrap()
        }
        Compress::Zstd => zstd::encode_all(data, 3).unwrap(),
    }
}

/// An image as a registry holds it: manifest, config and layer blobs.
#[derive(Debug, Clone)]
pub struct TestImage {
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    pub config: Vec<u8>,
    pub config_digest: Digest,
    /// (blob digest, blob bytes, diff_id), bottom first.
    pub layers: Vec<(Digest, Vec<u8>, Digest)>,
}

/// An OCI image of the given uncompressed layers; `label` makes the config unique.
pub fn test_image(tars: &[Vec<u8>], how: Compress, label: &str) -> TestImage {
    let layers: Vec<(Digest, Vec<u8>, Digest)> = tars
        .iter()
        .map(|tar| {
            let blob = compress(tar, how);
            (Digest::sha256_of(&blob), blob, Digest::sha256_of(tar))
        })
        .collect();
    test_image_of_blobs(layers, how, label, None)
}

/// Like `test_image`, from ready blobs, optionally with lying layer sizes in the manifest.
pub fn test_image_of_blobs(
    layers: Vec<(Digest, Vec<u8>, Digest)>,
    how: Compress,
    label: &str,
    sizes: Option<&[u64]>,
) -> TestImage {
    let host = host_platform();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": host.architecture,
        "os": host.os,
        "created": "2024-01-02T03:04:05Z",
        "config": { "Cmd": ["sh"], "Labels": { "test": label } },
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.2.to_string()).collect::<Vec<_>>(),
        },
        "history": layers.iter().map(|_| serde_json::json!({"created_by": "test"})).collect::<Vec<_>>(),
    }))
    .unwrap();
    let config_digest = Digest::sha256_of(&config);
    let media = match how {
        Compress::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Compress::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
    };
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest.to_string(),
            "size": config.len(),
        },
        "layers": layers.iter().enumerate().map(|(i, (d, b, _))| serde_json::json!({
            "mediaType": media,
            "digest": d.to_string(),
            "size": sizes.map_or(b.len() as u64, |s| s[i]),
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    TestImage {
        manifest_digest: Digest::sha256_of(&manifest),
        manifest,
        config,
        config_digest,
        layers,
    }
}

/// Puts a `TestImage` into a store and tags it, as build/import would.
pub fn add_to_store(store: &ImageStore, image: &TestImage, tag: &str) -> NewImage {
    for (digest, blob, _) in &image.layers {
        assert_eq!(&store.blobs.ingest_bytes(blob).unwrap(), digest);
    }
    store.blobs.ingest_bytes(&image.config).unwrap();
    store.blobs.ingest_bytes(&image.manifest).unwrap();
    let new = NewImage {
        manifest: image.manifest_digest.clone(),
        config: image.config_digest.clone(),
        layers: image
            .layers
            .iter()
            .map(|(d, _, diff)| (d.clone(), diff.clone()))
            .collect(),
        created: None,
        size: image.layers.iter().map(|l| l.1.len() as u64).sum(),
    };
    store.register(new.clone(), &[r(tag)]).unwrap();
    new
}

/// Writes an OCI image layout (what `skopeo copy oci:DIR:tag` reads).
pub fn write_oci_layout(dir: &Path, image: &TestImage, tag: &str) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |d: &Digest, bytes: &[u8]| std::fs::write(blobs.join(d.hex()), bytes).unwrap();
    for (d, b, _) in &image.layers {
        put(d, b);
    }
    put(&image.config_digest, &image.config);
    put(&image.manifest_digest, &image.manifest);
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": image.manifest_digest.to_string(),
            "size": image.manifest.len(),
            "annotations": { "org.opencontainers.image.ref.name": tag },
        }],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
}

// ---------------------------------------------------------------------------------------
// A scriptable HTTP/1.1 server: one request per connection (`Connection: close`).

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send only this many body bytes, then close (Content-Length still says all).
    pub cut_after: Option<usize>,
    /// Send this many body bytes, then wait while the flag is up, then the rest.
    pub stall_after: Option<(usize, Arc<AtomicBool>)>,
    /// Send this many body bytes, then pause this long, then the rest.
    pub pause_after: Option<(usize, Duration)>,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            body: body.into(),
            ..Reply::default()
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn error(status: u16, code: &str, message: &str) -> Reply {
        Reply::new(
            status,
            format!(r#"{{"errors":[{{"code":"{code}","message":"{message}"}}]}}"#),
        )
        .header("Content-Type", "application/json")
    }
}

pub type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

pub struct Mock {
    pub port: u16,
    log: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

impl Mock {
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (log2, stop2) = (log.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (handler, log, stop) = (handler.clone(), log2.clone(), stop2.clone());
                thread::spawn(move || serve(conn, &*handler, &log, &stop));
            }
        });
        Mock { port, log, stop }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }

    /// Requests with this method whose path starts with `prefix`.
    pub fn count(&self, method: &str, prefix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.path.starts_with(prefix))
            .count()
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(conn: TcpStream, handler: &Handler, log: &Mutex<Vec<Request>>, stop: &AtomicBool) {
    let Some(req) = read_request(&conn) else {
        return;
    };
    log.lock().unwrap().push(req.clone());
    let reply = handler(&req);
    let mut out = conn;
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    if out.write_all(head.as_bytes()).is_err() || req.method == "HEAD" {
        return;
    }
    let body = &reply.body;
    let first = reply
        .cut_after
        .or(reply.stall_after.as_ref().map(|s| s.0))
        .or(reply.pause_after.map(|p| p.0))
        .unwrap_or(body.len())
        .min(body.len());
    if out.write_all(&body[..first]).is_err() || out.flush().is_err() {
        return;
    }
    if reply.cut_after.is_some() {
        let _ = out.shutdown(std::net::Shutdown::Both);
        return;
    }
    if let Some((_, flag)) = &reply.stall_after {
        while flag.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(20));
        }
    }
    if let Some((_, pause)) = reply.pause_after {
        thread::sleep(pause);
    }
    let _ = out.write_all(&body[first..]);
}

fn read_request(conn: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

/// What a mock registry serves: manifests by `repo:reference` and blobs by digest.
#[derive(Debug, Clone, Default)]
pub struct Content {
    pub manifests: HashMap<String, (String, Vec<u8>)>,
    pub blobs: HashMap<String, Vec<u8>>,
}

impl Content {
    /// Adds an image under `repo:tag` and `repo@digest`.
    pub fn add(&mut self, repo: &str, tag: &str, image: &TestImage) {
        let media = "application/vnd.oci.image.manifest.v1+json".to_string();
        for reference in [tag.to_string(), image.manifest_digest.to_string()] {
            self.manifests.insert(
                format!("{repo}:{reference}"),
                (media.clone(), image.manifest.clone()),
            );
        }
        self.blobs
            .insert(image.config_digest.to_string(), image.config.clone());
        for (d, b, _) in &image.layers {
            self.blobs.insert(d.to_string(), b.clone());
        }
    }

    /// Answers as a registry would: `/v2/`, manifests and blobs, else 404.
    pub fn serve(&self, req: &Request) -> Reply {
        if req.path == "/v2/" {
            return Reply::new(200, "{}");
        }
        let Some(rest) = req.path.strip_prefix("/v2/") else {
            return Reply::new(404, "");
        };
        if let Some((repo, reference)) = rest.rsplit_once("/manifests/") {
            return match self.manifests.get(&format!("{repo}:{reference}")) {
                Some((media, bytes)) => Reply::new(200, bytes.clone())
                    .header("Content-Type", media.clone())
                    .header(
                        "Docker-Content-Digest",
                        Digest::sha256_of(bytes).to_string(),
                    ),
                None => Reply::error(404, "MANIFEST_UNKNOWN", "manifest unknown"),
            };
        }
        if let Some((_, digest)) = rest.rsplit_once("/blobs/") {
            return match self.blobs.get(digest) {
                Some(bytes) => Reply::new(200, bytes.clone())
                    .header("Content-Type", "application/octet-stream"),
                None => Reply::error(404, "BLOB_UNKNOWN", "blob unknown to registry"),
            };
        }
        Reply::new(404, "")
    }
}

/// Files (not directories) under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}
