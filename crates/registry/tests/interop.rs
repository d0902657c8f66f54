//! berth against a real registry (`docker-registry`, distribution v2) and real peers
//! (skopeo): pushes read back by skopeo, skopeo's pushes pulled by berth, htpasswd auth.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;
use registry::{Credentials, Progress};

fn skopeo() -> Command {
    let mut cmd = Command::new("skopeo");
    cmd.arg("--insecure-policy");
    cmd
}

fn round_trip(how: Compress) {
    let registry = Registry::start();
    let (dir, store) = store();
    let opts = options(dir.path());
    let image = test_image(&[busybox_tar()], how, &format!("{how:?}"));
    add_to_store(&store, &image, "local/busybox:1");
    let dest = r(&format!("{}/berth/busybox:{how:?}", registry.host()));

    let events = Events::default();
    let digest = registry::push(&store, "local/busybox:1", &dest, &opts, &events.sink()).unwrap();
    assert_eq!(digest, image.manifest_digest, "the manifest went as stored");
    let done: Vec<_> = events
        .all()
        .into_iter()
        .filter(|e| e.progress == Progress::Done)
        .map(|e| e.digest)
        .collect();
    // The config goes too (skopeo reads it below) but, as in docker, without progress lines.
    assert_eq!(
        done,
        vec![image.layers[0].0.clone()],
        "the layer was uploaded"
    );

    // skopeo sees the same manifest, and copies it out unchanged.
    let url = format!("docker://{dest}");
    let inspect = run(skopeo().args(["inspect", "--tls-verify=false", &url]));
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["Digest"], digest.to_string());
    let oci = dir.path().join("oci");
    let target = format!("oci:{}:copy", oci.display());
    run(skopeo().args([
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--preserve-digests",
        &url,
        &target,
    ]));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(oci.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.to_string());

    // Pulled back into a fresh store: the same image.
    let (dir2, store2) = common::store();
    let row = registry::pull(&store2, &dest, None, &options(dir2.path()), &|_| {}).unwrap();
    assert_eq!(row.id, image.config_digest);
    assert_eq!(row.manifest, digest);
    assert_eq!(row.tags, vec![dest.clone()]);
    let lowers = store2.rootfs_layers(&row.id).unwrap();
    assert!(lowers[0].join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_link(lowers[0].join("bin/sh")).unwrap(),
        std::path::Path::new("busybox")
    );

    // Pushing again sends nothing.
    let events = Events::default();
    registry::push(&store, "local/busybox:1", &dest, &opts, &events.sink()).unwrap();
    let exists = events
        .all()
        .iter()
        .filter(|e| e.progress == Progress::Exists)
        .count();
    assert_eq!(exists, 1, "the layer already exists");

    // From the store that pulled it, a push to another repository mounts the blobs from the
    // repository the image came from.
    let other = r(&format!("{}/berth/mounted:1", registry.host()));
    let events = Events::default();
    let digest2 =
        registry::push(&store2, &dest.to_string(), &other, &opts, &events.sink()).unwrap();
    assert_eq!(digest2, digest);
    let mounted = events
        .all()
        .iter()
        .filter(|e| {
            e.progress
                == Progress::Mounted {
                    from: "berth/busybox".into(),
                }
        })
        .count();
    assert_eq!(mounted, 1, "{:?}", events.all());
    let inspect = run(skopeo().args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{other}"),
    ]));
    assert!(inspect.contains(&digest.to_string()));
}

#[test]
fn push_gzip_image_read_by_skopeo_and_pulled_back() {
    round_trip(Compress::Gzip);
}

#[test]
fn push_zstd_image_read_by_skopeo_and_pulled_back() {
    round_trip(Compress::Zstd);
}

#[test]
fn pull_what_skopeo_pushed_as_docker_schema2_and_oci() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let image = test_image(&[busybox_tar()], Compress::Gzip, "skopeo");
    let layout = dir.path().join("layout");
    write_oci_layout(&layout, &image, "v1");
    for (format, media_type) in [
        (
            "v2s2",
            "application/vnd.docker.distribution.manifest.v2+json",
        ),
        ("oci", "application/vnd.oci.image.manifest.v1+json"),
    ] {
        let dest = r(&format!("{}/skopeo/busybox:{format}", registry.host()));
        run(skopeo().args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--format",
            format,
            &format!("oci:{}:v1", layout.display()),
            &format!("docker://{dest}"),
        ]));
        let raw = run(skopeo().args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{dest}"),
        ]));
        assert!(raw.contains(media_type), "{format}: {raw}");

        let (root, store) = store();
        let row = registry::pull(&store, &dest, None, &options(root.path()), &|_| {}).unwrap();
        assert_eq!(row.id, image.config_digest, "{format}: same config");
        assert_eq!(
            row.manifest,
            image::digest::Digest::sha256_of(raw.as_bytes()),
            "{format}: the manifest skopeo wrote"
        );
        let lowers = store.rootfs_layers(&row.id).unwrap();
        assert!(lowers[0].join("bin/busybox").is_file(), "{format}");
    }
}

#[test]
fn htpasswd_basic_auth() {
    let registry = Registry::with_htpasswd(&[("alice", "s3cret")]);
    let host = registry.host();
    let (dir, store) = store();
    let opts = options(dir.path());
    let image = test_image(&[tar_of(&[("hello", b"auth\n")])], Compress::Gzip, "auth");
    add_to_store(&store, &image, "local/auth:1");
    let dest = r(&format!("{host}/private/auth:1"));

    let err = registry::push(&store, "local/auth:1", &dest, &opts, &|_| {}).unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    assert!(err.to_string().contains("unauthorized"), "{err}");
    assert!(
        err.to_string().starts_with(&format!("push {dest}: ")),
        "{err}"
    );

    let err = registry::login(&host, &Credentials::new("alice", "wrong"), &opts).unwrap_err();
    assert!(err.to_string().contains("unauthorized"), "{err}");
    let auth_file = opts.auth_file.clone().unwrap();
    assert!(!auth_file.exists(), "a failed login stores nothing");

    registry::login(&host, &Credentials::new("alice", "s3cret"), &opts).unwrap();
    let mode = std::fs::metadata(&auth_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    registry::push(&store, "local/auth:1", &dest, &opts, &|_| {}).unwrap();

    let (dir2, store2) = common::store();
    let row = registry::pull(&store2, &dest, None, &opts, &|_| {}).unwrap();
    assert_eq!(row.id, image.config_digest);

    // The credentials file found through $DOCKER_CONFIG, as docker and podman find it.
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "docker_config_pull_child", "--nocapture"])
        .env("DOCKER_CONFIG", auth_file.parent().unwrap())
        .env("BERTH_TEST_CHILD_ROOT", dir2.path().join("child"))
        .env("BERTH_TEST_CHILD_REF", dest.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    assert!(registry::logout(&host, &opts).unwrap());
    assert!(!registry::logout(&host, &opts).unwrap());
    let (_dir3, store3) = common::store();
    let err = registry::pull(&store3, &dest, None, &opts, &|_| {}).unwrap_err();
    assert!(err.to_string().contains("unauthorized"), "{err}");
    assert!(store3.meta.list().unwrap().is_empty());
}

/// Run by `htpasswd_basic_auth` in a child process with `DOCKER_CONFIG` set; does nothing
/// in a normal test run.
#[test]
fn docker_config_pull_child() {
    let (Some(root), Some(reference)) = (
        std::env::var_os("BERTH_TEST_CHILD_ROOT"),
        std::env::var("BERTH_TEST_CHILD_REF").ok(),
    ) else {
        return;
    };
    let store = image::images::ImageStore::open(std::path::Path::new(&root)).unwrap();
    registry::pull(
        &store,
        &r(&reference),
        None,
        &registry::Options::default(),
        &|_| {},
    )
    .unwrap();
}

#[test]
fn chunked_upload_head_mount_and_manifest_through_the_client() {
    use image::digest::Digest;
    use registry::client::{Client, Mount};
    use std::io::Read;

    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let client = Client::connect(&registry.host(), &options(dir.path()))
        .unwrap()
        .with_scopes(vec![registry::auth::repository_scope("c/one", true)])
        .with_upload_chunk(1000);
    assert_eq!(client.base_url(), format!("http://{}", registry.host()));
    let blob: Vec<u8> = (0..4500u32).map(|i| (i * 7 % 251) as u8).collect();
    let digest = Digest::sha256_of(&blob);
    assert!(!client.blob_exists("c/one", &digest).unwrap());

    let session = client.start_upload("c/one").unwrap();
    let mut sent = Vec::new();
    client
        .upload_blob(session, &digest, blob.as_slice(), &mut |n| sent.push(n))
        .unwrap();
    assert_eq!(
        sent,
        vec![1000, 2000, 3000, 4000, 4500],
        "five PATCH chunks"
    );
    assert!(client.blob_exists("c/one", &digest).unwrap());
    let mut back = Vec::new();
    let mut stream = client.get_blob("c/one", &digest).unwrap();
    assert_eq!(stream.length, Some(blob.len() as u64));
    stream.reader.read_to_end(&mut back).unwrap();
    assert_eq!(back, blob);

    // A wrong digest at the end of an upload is the registry's to refuse.
    let session = client.start_upload("c/one").unwrap();
    let wrong = Digest::sha256_of(b"something else");
    let err = client
        .upload_blob(session, &wrong, blob.as_slice(), &mut |_| {})
        .unwrap_err();
    assert!(err.to_string().contains("(400)"), "{err}");

    // Mount into another repository; a blob the source lacks falls back to an upload.
    let two = Client::connect(&registry.host(), &options(dir.path()))
        .unwrap()
        .with_scopes(vec![
            registry::auth::repository_scope("c/two", true),
            registry::auth::repository_scope("c/one", false),
        ]);
    assert_eq!(
        two.mount_blob("c/two", &digest, "c/one").unwrap(),
        Mount::Mounted
    );
    assert!(two.blob_exists("c/two", &digest).unwrap());
    match two.mount_blob("c/two", &wrong, "c/one").unwrap() {
        Mount::Upload(url) => assert!(url.contains("/v2/c/two/blobs/uploads/"), "{url}"),
        Mount::Mounted => panic!("mounted a blob that does not exist"),
    }

    // A manifest by tag, then HEAD and GET agree with it.
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = Digest::sha256_of(config);
    let session = client.start_upload("c/one").unwrap();
    client
        .upload_blob(session, &config_digest, &config[..], &mut |_| {})
        .unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[]}}"#,
        config.len()
    );
    client
        .put_manifest(
            "c/one",
            "t1",
            "application/vnd.oci.image.manifest.v1+json",
            manifest.as_bytes(),
        )
        .unwrap();
    let head = client.head_manifest("c/one", "t1").unwrap().unwrap();
    assert_eq!(head.digest, Some(Digest::sha256_of(manifest.as_bytes())));
    assert_eq!(head.size, Some(manifest.len() as u64));
    let (bytes, media_type) = client.get_manifest("c/one", "t1").unwrap();
    assert_eq!(bytes, manifest.as_bytes());
    assert_eq!(
        media_type.as_deref(),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    assert_eq!(client.head_manifest("c/one", "nope").unwrap(), None);
}
