//! `berth pull`, `push`, `login` and `logout` against a private `docker-registry` on
//! 127.0.0.1, checked from the other side with skopeo.

#[path = "../../registry/tests/common/mod.rs"]
mod common;

use common::Registry;
use std::process::{Command, Stdio};

mod support;

use support::Berth;

fn skopeo(args: &[&str]) -> String {
    let o = Command::new("skopeo")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("skopeo is installed (scripts/deps.sh)");
    assert!(
        o.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn push_then_pull_round_trip_and_output() {
    let reg = Registry::start();
    let b = Berth::new();
    let id = b.import("local/bb:1");
    let dest = format!("{}/team/bb:v1", reg.host());

    // podman's form: push SOURCE DESTINATION.
    let out = b.ok(&["push", "local/bb:1", &dest]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        format!("The push refers to repository [{}/team/bb]", reg.host())
    );
    let last = lines.last().unwrap();
    assert!(last.starts_with("v1: digest: sha256:"), "{out}");
    assert!(last.contains(" size: "), "{out}");

    // Another client sees a well-formed image with our layers and config.
    let inspect: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{dest}"),
    ]))
    .unwrap();
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 1);
    let raw: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--config",
        &format!("docker://{dest}"),
    ]))
    .unwrap();
    assert_eq!(raw["config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    let pushed_digest = last
        .split_whitespace()
        .nth(2)
        .expect("digest on the last line");
    assert_eq!(inspect["Digest"], pushed_digest);

    // Pull into a fresh store: the same image ID, docker's output shape.
    let c = Berth::new();
    let out = c.ok(&["pull", &dest]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("v1: Pulling from {}/team/bb", reg.host()));
    assert!(out.contains(&format!("Digest: {pushed_digest}")), "{out}");
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {dest}")),
        "{out}"
    );
    assert_eq!(*lines.last().unwrap(), dest);
    assert_eq!(c.image_id(&dest), id);

    // Again: up to date, and -q prints only the reference.
    let out = c.ok(&["pull", &dest]);
    assert!(
        out.contains(&format!("Status: Image is up to date for {dest}")),
        "{out}"
    );
    assert_eq!(c.ok(&["pull", "-q", &dest]), format!("{dest}\n"));

    // By digest, too.
    let by_digest = format!("{}/team/bb@{pushed_digest}", reg.host());
    assert_eq!(c.ok(&["pull", "-q", &by_digest]), format!("{by_digest}\n"));
}

#[test]
fn pull_of_what_is_not_there_fails_cleanly() {
    let reg = Registry::start();
    let b = Berth::new();
    b.import("local/bb:1");
    let before = b.files();

    let err = b.fails(&["pull", &format!("{}/nope/nothing:1", reg.host())]);
    assert!(
        err.contains("nope/nothing") && err.to_lowercase().contains("unknown"),
        "{err}"
    );

    // Nothing listens on port 1 of loopback.
    let err = b.fails(&["pull", "127.0.0.1:1/x/y:z"]);
    assert!(err.contains("127.0.0.1:1"), "{err}");

    let err = b.fails(&["pull", "Upper/Case"]);
    assert!(err.contains("Upper/Case"), "{err}");

    let err = b.fails(&["push", "local/missing:1", &format!("{}/x:1", reg.host())]);
    assert!(err.contains("local/missing:1"), "{err}");

    // Failed pulls leave no blobs, temporary files or images behind.
    assert_eq!(b.files(), before);
}

#[test]
fn login_push_pull_logout_with_htpasswd() {
    let reg = Registry::with_htpasswd(&[("alice", "s3cret")]);
    let b = Berth::new();
    b.import("local/bb:1");
    let dest = format!("{}/alice/bb:1", reg.host());

    let err = b.fails(&["push", "local/bb:1", &dest]);
    assert!(err.to_lowercase().contains("unauthorized"), "{err}");

    let err = b.fails(&["login", "-u", "alice", "-p", "wrong", &reg.host()]);
    assert!(err.to_lowercase().contains("unauthorized"), "{err}");
    assert!(!b.tmp.path().join("docker-config/config.json").exists());

    let mut login = b.cmd(&["login", "-u", "alice", "--password-stdin", &reg.host()]);
    let mut child = login
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout), "Login Succeeded\n");

    // The credentials are where docker keeps them, readable by docker and skopeo.
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(b.tmp.path().join("docker-config/config.json")).unwrap(),
    )
    .unwrap();
    assert!(config["auths"][reg.host()]["auth"].is_string(), "{config}");

    b.ok(&["push", "-q", "local/bb:1", &dest]);
    b.ok(&["rmi", "local/bb:1"]);
    b.ok(&["pull", "-q", &dest]);

    assert_eq!(
        b.ok(&["logout", &reg.host()]),
        format!("Removing login credentials for {}\n", reg.host())
    );
    assert_eq!(
        b.ok(&["logout", &reg.host()]),
        format!("Not logged in to {}\n", reg.host())
    );
    let err = b.fails(&["pull", &format!("{}/alice/other:1", reg.host())]);
    assert!(err.to_lowercase().contains("unauthorized"), "{err}");
}

#[test]
fn login_needs_a_password_source() {
    let b = Berth::new();
    let o = b
        .cmd(&["login", "-u", "u", "127.0.0.1:1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("non TTY"));
    let err = b.fails(&[
        "login",
        "-u",
        "u",
        "-p",
        "x",
        "--password-stdin",
        "127.0.0.1:1",
    ]);
    assert!(err.contains("mutually exclusive"), "{err}");
}

/// A power cut after a pull, before its background sync: the next boot finds the pull's
/// record of what it wrote unsynced (made here by hand, as `image::pending` writes it,
/// under another boot's id) and must not trust what it names. The layer blob lost its
/// data: the image is no longer listed, the blob and snapshots are gone, and the next
/// pull downloads and unpacks the layer again.
#[test]
fn a_pull_cut_off_before_its_sync_is_checked_after_the_reboot() {
    let reg = Registry::start();
    let b = Berth::new();
    b.import("local/bb:1");
    let dest = format!("{}/cut/bb:v1", reg.host());
    b.ok(&["push", "local/bb:1", &dest]);

    let c = Berth::new();
    c.ok(&["pull", "-q", &dest]);
    let id = c.image_id(&dest);
    let root = c.root();
    let names = |dir: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
            .collect();
        names.sort();
        names
    };
    let blobs = names("blobs/sha256");
    let snapshots = names("snapshots");
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    let layer = blobs
        .iter()
        .max_by_key(|b| {
            std::fs::metadata(root.join("blobs/sha256").join(b))
                .unwrap()
                .len()
        })
        .unwrap()
        .clone();
    std::fs::write(root.join("blobs/sha256").join(&layer), b"").unwrap();
    let mut record = String::new();
    for blob in &blobs {
        record += &format!("blob sha256:{blob}\n");
    }
    record += &format!("snapshot sha256:{}\n", snapshots[0]);
    let pending = root.join("pending");
    std::fs::create_dir_all(&pending).unwrap();
    let stale = pending.join("00000000-0000-4000-8000-000000000000-1-0");
    std::fs::write(&stale, record).unwrap();

    assert_eq!(
        c.ok(&["images", "-q"]),
        "",
        "an image missing its layer is not listed"
    );
    assert!(!stale.exists());
    assert!(!names("blobs/sha256").contains(&layer));
    assert!(
        names("snapshots").is_empty(),
        "the unsynced snapshot is not trusted"
    );

    let out = c.ok(&["pull", &dest]);
    assert!(out.contains("Downloaded newer image"), "{out}");
    assert_eq!(c.image_id(&dest), id);
    assert!(names("blobs/sha256").contains(&layer));
    assert_eq!(names("snapshots"), snapshots, "unpacked again");
    let hello = root
        .join("snapshots")
        .join(&snapshots[0])
        .join("fs/etc/hello");
    assert!(hello.is_file(), "{}", hello.display());
}
