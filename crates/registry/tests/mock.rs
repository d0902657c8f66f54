//! berth against scripted registries: token auth, redirects, platform selection, hostile
//! answers, a pull killed mid-download, and concurrent pulls sharing a layer.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use image::digest::Digest;
use image::images::ImageStore;
use registry::{Credentials, Progress};

/// A layer of `n` files with varied content (so gzip cannot shrink it to nothing).
fn many_files(prefix: &str, n: usize, size: usize) -> Vec<u8> {
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}/f{i}")).collect();
    let mut seed = 0x2545_f491_4f6c_dd1du64 ^ prefix.len() as u64;
    let contents: Vec<Vec<u8>> = (0..n)
        .map(|_| {
            (0..size)
                .map(|_| {
                    // xorshift: incompressible enough, and reproducible.
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect()
        })
        .collect();
    let files: Vec<(&str, &[u8])> = names
        .iter()
        .zip(&contents)
        .map(|(n, c)| (n.as_str(), c.as_slice()))
        .collect();
    tar_of(&files)
}

fn small_image(label: &str) -> TestImage {
    test_image(
        &[
            tar_of(&[("etc/base", b"base\n")]),
            tar_of(&[("app/bin", label.as_bytes())]),
        ],
        Compress::Gzip,
        label,
    )
}

/// Nothing of a failed pull is visible: no image, no snapshot, no ingest file, and none of
/// the layer blobs.
fn assert_nothing_pulled(store: &ImageStore, root: &Path, image: &TestImage) {
    assert!(store.meta.list().unwrap().is_empty(), "no image registered");
    assert!(
        store.snapshots.list().unwrap().is_empty(),
        "no snapshot done"
    );
    for (digest, _, _) in &image.layers {
        assert!(!store.blobs.contains(digest), "no layer blob {digest}");
    }
    assert_eq!(
        files_under(&root.join("blobs/ingest")),
        Vec::<std::path::PathBuf>::new()
    );
    let tmp = std::fs::read_dir(root.join("snapshots"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("tmp-")
        })
        .count();
    assert_eq!(tmp, 0, "no scratch snapshot left");
}

#[test]
fn bearer_token_flow_and_redirected_blobs() {
    let image = small_image("bearer");
    let mut content = Content::default();
    content.add("a/b", "1", &image);
    // Blob storage elsewhere: the registry redirects there for one layer.
    let storage_content = content.clone();
    let storage = Mock::start(move |req| {
        let digest = req.path.trim_start_matches("/storage/");
        match storage_content.blobs.get(digest) {
            Some(bytes) => Reply::new(200, bytes.clone()),
            None => Reply::new(404, ""),
        }
    });
    let redirected = image.layers[1].0.clone();
    let storage_host = storage.host();
    let tokens = Arc::new(AtomicUsize::new(0));
    let tokens2 = tokens.clone();
    let mock = Mock::start(move |req| {
        let host = req.header("host").unwrap_or("").to_string();
        if let Some(query) = req.path.strip_prefix("/token?") {
            let n = tokens2.fetch_add(1, Ordering::SeqCst);
            assert!(query.contains("service=x"), "{query}");
            assert!(query.contains("scope=repository%3Aa%2Fb%3Apull"), "{query}");
            return Reply::new(200, format!(r#"{{"token":"T{n}","expires_in":300}}"#));
        }
        let authorized = req
            .header("authorization")
            .is_some_and(|a| a.starts_with("Bearer T"));
        if !authorized {
            return Reply::error(401, "UNAUTHORIZED", "authentication required").header(
                "WWW-Authenticate",
                format!(
                    r#"Bearer realm="http://{host}/token",service="x",scope="repository:a/b:pull""#
                ),
            );
        }
        if req.path == format!("/v2/a/b/blobs/{redirected}") {
            return Reply::new(307, "").header(
                "Location",
                format!("http://{storage_host}/storage/{redirected}"),
            );
        }
        content.serve(req)
    });

    let (root, store) = store();
    let opts = options(root.path());
    let reference = r(&format!("{}/a/b:1", mock.host()));
    let row = registry::pull(&store, &reference, None, &opts, &|_| {}).unwrap();
    assert_eq!(row.id, image.config_digest);
    assert_eq!(
        tokens.load(Ordering::SeqCst),
        1,
        "one token, cached for the pull"
    );
    let requests = mock.requests();
    let token_req = requests
        .iter()
        .find(|r| r.path.starts_with("/token"))
        .unwrap();
    assert_eq!(token_req.header("authorization"), None, "anonymous token");
    // The ping's 401 taught the challenge: every request after it carried the token.
    let unauthorized: Vec<_> = requests
        .iter()
        .filter(|r| !r.path.starts_with("/token") && r.header("authorization").is_none())
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(unauthorized, vec!["/v2/".to_string()]);
    // The redirect target got the blob request, without our token.
    let stored = storage.requests();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].header("authorization"), None);

    // With credentials: the token request authenticates with them.
    let auth_file = opts.auth_file.clone().unwrap();
    registry::AuthFile::new(auth_file)
        .store(&mock.host(), &Credentials::new("u", "p"))
        .unwrap();
    let (root2, store2) = common::store();
    let _ = root2;
    registry::pull(&store2, &reference, None, &opts, &|_| {}).unwrap();
    let requests = mock.requests();
    let with_user: Vec<_> = requests
        .iter()
        .filter(|r| r.path.starts_with("/token") && r.path.contains("account=u"))
        .collect();
    assert_eq!(with_user.len(), 1);
    let basic = base64::engine::general_purpose::STANDARD.encode("u:p");
    assert_eq!(
        with_user[0].header("authorization"),
        Some(format!("Basic {basic}").as_str())
    );
}

#[test]
fn index_selects_the_platform() {
    let host_image = small_image("host");
    let other = test_image(&[tar_of(&[("arch", b"arm64\n")])], Compress::Gzip, "arm64");
    let host = image::manifest::host_platform();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": other.manifest_digest.to_string(),
                "size": other.manifest.len(),
                "platform": {"os": "linux", "architecture": "riscv64"},
            },
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": host_image.manifest_digest.to_string(),
                "size": host_image.manifest.len(),
                "platform": {"os": host.os, "architecture": host.architecture},
            },
        ],
    }))
    .unwrap();
    let mut content = Content::default();
    content.add("multi", "x", &host_image);
    content.add("multi", "y", &other);
    content.manifests.insert(
        "multi:1".into(),
        ("application/vnd.oci.image.index.v1+json".into(), index),
    );
    let mock = Mock::start(move |req| content.serve(req));

    let (root, store) = store();
    let opts = options(root.path());
    let reference = r(&format!("{}/multi:1", mock.host()));
    let row = registry::pull(&store, &reference, None, &opts, &|_| {}).unwrap();
    assert_eq!(row.id, host_image.config_digest);
    assert_eq!(row.manifest, host_image.manifest_digest);
    let riscv = image::manifest::parse_platform("linux/riscv64").unwrap();
    let row = registry::pull(&store, &reference, Some(&riscv), &opts, &|_| {}).unwrap();
    assert_eq!(row.id, other.config_digest);
    let s390 = image::manifest::parse_platform("linux/s390x").unwrap();
    let err = registry::pull(&store, &reference, Some(&s390), &opts, &|_| {}).unwrap_err();
    assert!(
        err.to_string()
            .contains("no image for platform linux/s390x"),
        "{err}"
    );
}

#[test]
fn registry_errors_name_registry_repository_and_status() {
    let mock = Mock::start(|req| Content::default().serve(req));
    let (root, store) = store();
    let reference = r(&format!("{}/x:1", mock.host()));
    let err = registry::pull(&store, &reference, None, &options(root.path()), &|_| {}).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("pull {}/x:1: manifest unknown (404)", mock.host())
    );
    assert_eq!(err.status(), Some(404));

    let port = free_port();
    let reference = r(&format!("127.0.0.1:{port}/x:1"));
    let err = registry::pull(&store, &reference, None, &options(root.path()), &|_| {}).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "pull 127.0.0.1:{port}/x:1: GET http://127.0.0.1:{port}/v2/: "
        )),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
}

#[test]
fn manifest_not_matching_the_digest_pulled_by_is_refused() {
    let image = small_image("liar");
    let mut content = Content::default();
    content.add("a", "1", &image);
    let wanted = Digest::sha256_of(b"the manifest the user asked for");
    // Whatever is asked for, the registry answers with this image's manifest.
    let bytes = image.manifest.clone();
    content.manifests.insert(
        format!("a:{wanted}"),
        ("application/vnd.oci.image.manifest.v1+json".into(), bytes),
    );
    let mock = Mock::start(move |req| content.serve(req));
    let (root, store) = store();
    let reference = r(&format!("{}/a@{wanted}", mock.host()));
    let err = registry::pull(&store, &reference, None, &options(root.path()), &|_| {}).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "pull {reference}: manifest {wanted}: content has digest {}",
            image.manifest_digest
        )
    );
    assert_nothing_pulled(&store, root.path(), &image);
    assert_eq!(mock.count("GET", "/v2/a/blobs/"), 0, "nothing fetched");

    // By its true digest it pulls, untagged.
    let reference = r(&format!("{}/a@{}", mock.host(), image.manifest_digest));
    let row = registry::pull(&store, &reference, None, &options(root.path()), &|_| {}).unwrap();
    assert!(row.tags.is_empty());
}

#[test]
fn blob_not_matching_its_digest_is_refused_and_nothing_registered() {
    let image = small_image("tampered");
    let mut content = Content::default();
    content.add("a", "1", &image);
    // Same length, same uncompressed tar (so unpacking succeeds and the diff_id matches),
    // different bytes: the gzip header's mtime. Only the blob digest can tell.
    let (digest, good, _) = &image.layers[1];
    let mut evil = good.clone();
    evil[4] ^= 0xff;
    content.blobs.insert(digest.to_string(), evil.clone());
    let mock = Mock::start(move |req| content.serve(req));
    let (root, store) = store();
    let reference = r(&format!("{}/a:1", mock.host()));
    let err = registry::pull(&store, &reference, None, &options(root.path()), &|_| {}).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "blob {digest}: content has digest {}",
            Digest::sha256_of(&evil)
        )),
        "{msg}"
    );
    assert!(store.meta.list().unwrap().is_empty());
    assert!(!store.blobs.contains(digest));
    assert!(
        !store.snapshots.list().unwrap().iter().any(|c| {
            // The tampered layer's snapshot is not done (the good base may be).
            c != &image.layers[0].2
        }),
        "{:?}",
        store.snapshots.list().unwrap()
    );
    assert!(files_under(&root.path().join("blobs/ingest")).is_empty());
}

#[test]
fn manifest_lying_about_a_layer_size_is_refused() {
    let tar = many_files("data", 8, 1000);
    let blob = compress(&tar, Compress::Gzip);
    let layer = (
        Digest::sha256_of(&blob),
        blob.clone(),
        Digest::sha256_of(&tar),
    );
    for lie in [blob.len() as u64 - 100, blob.len() as u64 + 100] {
        let image = test_image_of_blobs(vec![layer.clone()], Compress::Gzip, "sizes", Some(&[lie]));
        let mut content = Content::default();
        content.add("a", "1", &image);
        let mock = Mock::start(move |req| content.serve(req));
        let (root, store) = store();
        let reference = r(&format!("{}/a:1", mock.host()));
        let err =
            registry::pull(&store, &reference, None, &options(root.path()), &|_| {}).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("pull {reference}: ")), "{msg}");
        assert!(
            msg.ends_with(&format!(
                "blob {}: the registry sends {} bytes, the manifest says {lie}",
                layer.0,
                blob.len()
            )),
            "{msg}"
        );
        assert_nothing_pulled(&store, root.path(), &image);
    }
}

#[test]
fn truncated_download_fails_and_a_retry_completes() {
    let image = test_image(&[many_files("big", 64, 4096)], Compress::Gzip, "truncated");
    let mut content = Content::default();
    content.add("a", "1", &image);
    let (digest, blob, _) = image.layers[0].clone();
    let broken = Arc::new(AtomicBool::new(true));
    let broken2 = broken.clone();
    let mock = Mock::start(move |req| {
        let mut reply = content.serve(req);
        if broken2.load(Ordering::SeqCst) && req.path.ends_with(&digest.to_string()) {
            reply.cut_after = Some(blob.len() / 2);
        }
        reply
    });
    let (root, store) = store();
    let opts = options(root.path());
    let reference = r(&format!("{}/a:1", mock.host()));
    let err = registry::pull(&store, &reference, None, &opts, &|_| {}).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("pull {reference}: ")), "{msg}");
    assert!(msg.contains(&image.layers[0].0.to_string()), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
    assert_nothing_pulled(&store, root.path(), &image);

    broken.store(false, Ordering::SeqCst);
    let row = registry::pull(&store, &reference, None, &opts, &|_| {}).unwrap();
    assert_eq!(row.id, image.config_digest);
    store.blobs.verify(&image.layers[0].0).unwrap();
    let lowers = store.rootfs_layers(&row.id).unwrap();
    assert!(lowers[0].join("big/f63").is_file());
}

#[test]
fn killed_pull_leaves_a_store_the_next_pull_completes() {
    let image = test_image(
        &[
            tar_of(&[("etc/base", b"base\n")]),
            many_files("big", 256, 4096),
        ],
        Compress::Gzip,
        "killed",
    );
    let mut content = Content::default();
    content.add("a", "1", &image);
    let (big, blob, _) = image.layers[1].clone();
    let half = blob.len() / 2;
    let stall = Arc::new(AtomicBool::new(true));
    let stall2 = stall.clone();
    let mock = Mock::start(move |req| {
        let mut reply = content.serve(req);
        if req.path.ends_with(&big.to_string()) {
            reply.stall_after = Some((half, stall2.clone()));
        }
        reply
    });
    let (root, store) = store();
    let reference = r(&format!("{}/a:1", mock.host()));
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture"])
        .env("BERTH_TEST_CHILD_ROOT", root.path())
        .env("BERTH_TEST_CHILD_REF", reference.to_string())
        .env("BERTH_TEST_CHILD_AUTH", root.path().join("no-auth.json"))
        .spawn()
        .unwrap();
    // Wait until the child has the big layer half-way: its ingest file and a scratch
    // snapshot exist, with content in them.
    let ingest = root.path().join("blobs/ingest");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let partial = files_under(&ingest)
            .iter()
            .any(|f| std::fs::metadata(f).is_ok_and(|m| m.len() as usize >= half));
        if partial {
            break;
        }
        assert!(Instant::now() < deadline, "the child never got half-way");
        assert!(child.try_wait().unwrap().is_none(), "the child ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    stall.store(false, Ordering::SeqCst);
    assert!(store.meta.list().unwrap().is_empty(), "nothing registered");
    assert!(!store.blobs.contains(&image.layers[1].0));
    assert!(!store.snapshots.contains(&image.layers[1].2));

    let row = registry::pull(&store, &reference, None, &options(root.path()), &|_| {}).unwrap();
    assert_eq!(row.id, image.config_digest);
    let listed = store.meta.list().unwrap();
    assert_eq!(listed.len(), 1);
    let lowers = store.rootfs_layers(&row.id).unwrap();
    assert!(lowers[0].join("big/f255").is_file());
    // The dead pull's leftovers go with the next GC.
    store.gc().unwrap();
    assert!(files_under(&ingest).is_empty());
    let tmp = std::fs::read_dir(root.path().join("snapshots"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("tmp-")
        })
        .count();
    assert_eq!(tmp, 0);
    assert_eq!(store.meta.list().unwrap(), listed);
}

/// The pull `killed_pull_leaves_a_store_the_next_pull_completes` kills; does nothing in a
/// normal test run.
#[test]
fn crash_child() {
    let (Some(root), Some(reference), Some(auth)) = (
        std::env::var_os("BERTH_TEST_CHILD_ROOT"),
        std::env::var("BERTH_TEST_CHILD_REF").ok(),
        std::env::var_os("BERTH_TEST_CHILD_AUTH"),
    ) else {
        return;
    };
    let store = ImageStore::open(Path::new(&root)).unwrap();
    let opts = registry::Options {
        insecure: false,
        auth_file: Some(auth.into()),
    };
    registry::pull(&store, &r(&reference), None, &opts, &|_| {}).unwrap();
}

#[test]
fn concurrent_pulls_share_the_base_layer() {
    let base = many_files("base", 64, 4096);
    let a = test_image(
        &[base.clone(), tar_of(&[("app", b"a\n")])],
        Compress::Gzip,
        "a",
    );
    let b = test_image(&[base, tar_of(&[("app", b"b\n")])], Compress::Gzip, "b");
    let base_blob = a.layers[0].0.clone();
    assert_eq!(base_blob, b.layers[0].0);
    let base_len = a.layers[0].1.len();
    let mut content = Content::default();
    content.add("a", "1", &a);
    content.add("b", "1", &b);
    let slow = base_blob.to_string();
    let mock = Mock::start(move |req| {
        let mut reply = content.serve(req);
        if req.path.ends_with(&slow) {
            // Slow enough that both pulls are at the base layer at the same time.
            reply.pause_after = Some((base_len / 3, Duration::from_millis(400)));
        }
        reply
    });
    let root = tempfile::tempdir().unwrap();
    let start = Barrier::new(2);
    let events: Mutex<Vec<(usize, registry::Event)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for (i, name) in ["a", "b"].into_iter().enumerate() {
            let (root, start, events, host) = (root.path(), &start, &events, mock.host());
            s.spawn(move || {
                // Its own store and database connection, as a second process would have.
                let store = ImageStore::open(root).unwrap();
                let reference = r(&format!("{host}/{name}:1"));
                start.wait();
                registry::pull(&store, &reference, None, &options(root), &|e| {
                    events.lock().unwrap().push((i, e))
                })
                .unwrap();
            });
        }
    });
    assert_eq!(
        mock.count("GET", &format!("/v2/a/blobs/{base_blob}"))
            + mock.count("GET", &format!("/v2/b/blobs/{base_blob}")),
        1,
        "the shared base layer is downloaded once"
    );
    let events = events.into_inner().unwrap();
    let unpacked_by: Vec<usize> = events
        .iter()
        .filter(|(_, e)| {
            e.digest == base_blob
                && matches!(
                    e.progress,
                    Progress::Downloading { done: 0, .. } | Progress::Extracting
                )
        })
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(unpacked_by.len(), 1, "unpacked once: {unpacked_by:?}");
    let other = 1 - unpacked_by[0];
    assert!(
        events
            .iter()
            .any(|(i, e)| *i == other && e.digest == base_blob && e.progress == Progress::Exists),
        "the other pull found it in place"
    );
    let store = ImageStore::open(root.path()).unwrap();
    assert_eq!(store.meta.list().unwrap().len(), 2);
    let la = store.rootfs_layers(&a.config_digest).unwrap();
    let lb = store.rootfs_layers(&b.config_digest).unwrap();
    assert_eq!(la[1], lb[1], "one snapshot for the base");
    assert_eq!(store.snapshots.list().unwrap().len(), 3);
}
