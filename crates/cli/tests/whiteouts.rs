//! A three-layer image that deletes a file, replaces a directory (opaque) and re-adds a
//! name shows exactly the right tree inside a container: berth load, berth image mount,
//! and berth-runtime running a bundle on the mounted root.

use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

fn header() -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

/// A tar of (path, Some(content) for files | None for directories) plus extra raw entries.
fn layer(files: &[(&str, Option<&[u8]>)], with_busybox: bool) -> Vec<u8> {
    let mut t = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut h = header();
        match content {
            Some(c) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(c.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                t.append_data(&mut h, path, *c).unwrap();
            }
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                h.set_mode(0o755);
                h.set_cksum();
                t.append_data(&mut h, path, std::io::empty()).unwrap();
            }
        }
    }
    if with_busybox {
        let mut f = std::fs::File::open("/bin/busybox").unwrap();
        t.append_file("bin/busybox", &mut f).unwrap();
        for applet in ["sh", "find", "sort", "cat"] {
            let mut h = header();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_mode(0o777);
            t.append_link(&mut h, format!("bin/{applet}"), "busybox")
                .unwrap();
        }
    }
    t.into_inner().unwrap()
}

/// An oci-archive holding one image made of `layers` (plain tars), named `name`.
fn oci_archive(layers: &[Vec<u8>], name: &str) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&config), "size": config.len()},
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(l), "size": l.len()
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(&manifest),
                       "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": name}}],
    }))
    .unwrap();
    let mut t = tar::Builder::new(Vec::new());
    let mut add = |path: String, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        t.append_data(&mut h, path, data).unwrap();
    };
    add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json".into(), &index);
    for blob in layers
        .iter()
        .map(Vec::as_slice)
        .chain([config.as_slice(), manifest.as_slice()])
    {
        add(format!("blobs/sha256/{}", &sha(blob)[7..]), blob);
    }
    t.into_inner().unwrap()
}

/// berth-runtime from the same target directory as this test (the workspace builds it).
fn runtime_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("berth-runtime");
    assert!(
        p.exists(),
        "{} is missing: build the workspace first",
        p.display()
    );
    p
}

#[test]
fn whiteouts_show_the_right_tree_in_a_container() {
    let t = tempfile::Builder::new()
        .prefix("berth-wh")
        .tempdir()
        .unwrap();
    let base: Vec<(&str, Option<&[u8]>)> = vec![
        ("bin", None),
        ("proc", None),
        ("dev", None),
        ("sys", None),
        ("tmp", None),
        ("a", None),
        ("a/keep", Some(b"keep")),
        ("a/del", Some(b"first")),
        ("d", None),
        ("d/old", Some(b"old")),
    ];
    let l1 = layer(&base, true);
    let l2 = layer(
        &[
            ("a/.wh.del", Some(b"")),
            ("d", None),
            ("d/.wh..wh..opq", Some(b"")),
            ("d/new", Some(b"new")),
        ],
        false,
    );
    let l3 = layer(&[("a/del", Some(b"back"))], false);
    let archive = t.path().join("wh.tar");
    std::fs::write(&archive, oci_archive(&[l1, l2, l3], "localhost/wh:1")).unwrap();

    let root = t.path().join("root");
    let runroot = t.path().join("run");
    let berth = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("--root")
            .arg(&root)
            .arg("--runroot")
            .arg(&runroot)
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "berth {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    berth(&["load", "-i", archive.to_str().unwrap()]);
    let mnt = PathBuf::from(berth(&["image", "mount", "localhost/wh:1"]).trim());
    // A failure in between must not leave the image mounted on the host.
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            if self.0.exists() {
                let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
    let guard = Unmount(mnt.clone());
    let result = run_in_container(t.path(), &mnt);
    berth(&["image", "unmount", "localhost/wh:1"]);
    drop(guard);
    assert!(!mnt.exists(), "unmount removes the mount point");
    let tmp = t.path().to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&tmp), "mounts left under {tmp}");
    let out = result;
    assert_eq!(out, "/a\n/a/del\n/a/keep\n/d\n/d/new\nback\n");
    // rmi frees everything once unmounted.
    berth(&["rmi", "localhost/wh:1"]);
    assert_eq!(
        std::fs::read_dir(root.join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
}

fn run_in_container(tmp: &Path, rootfs: &Path) -> String {
    let rt = runtime_bin();
    let bundle = tmp.join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    let st = Command::new(&rt)
        .args(["spec", "--bundle"])
        .arg(&bundle)
        .status()
        .unwrap();
    assert!(st.success());
    let p = bundle.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    spec["root"]["path"] = serde_json::json!(rootfs);
    spec["process"]["terminal"] = serde_json::json!(false);
    spec["process"]["args"] =
        serde_json::json!(["sh", "-c", "find /a /d | sort; cat /a/del; echo"]);
    spec["linux"]["cgroupsPath"] =
        serde_json::json!(format!("/berth-test/wh-{}", std::process::id()));
    std::fs::write(&p, serde_json::to_vec(&spec).unwrap()).unwrap();
    let o = Command::new(&rt)
        .arg("--root")
        .arg(tmp.join("rt-state"))
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(format!("wh-{}", std::process::id()))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "runtime: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}
