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
