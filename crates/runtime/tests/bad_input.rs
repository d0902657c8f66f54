//! Bad input: one clear error line naming the problem, non-zero exit, nothing left behind.

mod common;
use common::*;
use serde_json::json;

fn expect_create_error(b: &Bundle, id: &str, needle: &str) {
    b.write();
    let o = b.rt(&["create", id]);
    let err = stderr_line(&o);
    assert!(!o.status.success(), "create succeeded, expected {needle:?}");
    assert!(
        err.contains(needle),
        "error {err:?} does not mention {needle:?}"
    );
    assert_eq!(err.lines().count(), 1, "more than one line: {err}");
    b.assert_no_leftovers(id);
}

#[test]
fn malformed_json() {
    let b = Bundle::new(&["true"]);
    std::fs::write(b.dir.join("config.json"), "{\"ociVersion\": ").unwrap();
    let o = b.rt(&["create", "m1"]);
    assert!(!o.status.success());
    let err = stderr_line(&o);
    assert!(
        err.contains("config.json") && err.contains("invalid JSON"),
        "{err}"
    );
    b.assert_no_leftovers("m1");
}

#[test]
fn missing_rootfs() {
    let mut b = Bundle::new(&["true"]);
    b.spec["root"]["path"] = json!("nope");
    expect_create_error(&b, "r1", "root.path");
}

#[test]
fn unknown_namespace() {
    let mut b = Bundle::new(&["true"]);
    b.spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "bogus"}));
    expect_create_error(&b, "n1", "bogus");
}

#[test]
fn namespace_path_that_does_not_exist() {
    let mut b = Bundle::new(&["true"]);
    b.spec["linux"]["namespaces"] =
        json!([{"type": "mount"}, {"type": "network", "path": "/proc/999999999/ns/net"}]);
    expect_create_error(&b, "n2", "/proc/999999999/ns/net");
}

#[test]
fn missing_program() {
    let b = Bundle::new(&["no-such-program"]);
    expect_create_error(&b, "p1", "executable file not found");
}

#[test]
fn invalid_id() {
    let b = Bundle::new(&["true"]);
    let o = b.rt(&["create", "../escape"]);
    assert!(!o.status.success());
    assert!(stderr_line(&o).contains("invalid container id"));
    assert!(!b.root.join("../escape").exists());
}

#[test]
fn duplicate_id_keeps_the_first() {
    let b = Bundle::new(&["sleep", "100"]);
    assert!(b.rt(&["create", "dup"]).status.success());
    let o = b.rt(&["create", "dup"]);
    assert!(!o.status.success());
    assert!(
        stderr_line(&o).contains("container with id exists: dup"),
        "{}",
        stderr_line(&o)
    );
    // The first container is untouched.
    assert_eq!(b.status("dup"), "created");
    assert!(b.rt(&["delete", "dup"]).status.success());
    b.assert_no_leftovers("dup");
}

#[test]
fn failing_hook() {
    let mut b = Bundle::new(&["true"]);
    b.spec["hooks"] = json!({"createRuntime": [{"path": "/bin/false"}]});
    expect_create_error(
        &b,
        "h1",
        "createRuntime hook #0 (/bin/false): exited with status 1",
    );
}

#[test]
fn hook_timeout() {
    let mut b = Bundle::new(&["true"]);
    b.spec["hooks"] =
        json!({"prestart": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]});
    let t = std::time::Instant::now();
    expect_create_error(&b, "h2", "timed out after 1s");
    assert!(t.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn error_goes_to_json_log() {
    let b = Bundle::new(&["true"]);
    let log = b.tmp.path().join("log.json");
    let o = b.rt(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        "nothere",
    ]);
    assert!(!o.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(v["level"], "error");
    assert!(v["msg"].as_str().unwrap().contains("does not exist"));
    assert!(v["time"].as_str().unwrap().ends_with('Z'));
}
