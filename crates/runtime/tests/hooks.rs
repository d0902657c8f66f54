//! All six hook kinds run, in order, with the container state on stdin.

mod common;
use common::*;
use serde_json::{json, Value};

fn hook(name: &str, sh: &str, log: &str) -> Value {
    json!({"path": sh, "args": ["sh", "-c", format!("{{ printf '{name} '; cat; echo; }} >> {log}")]})
}

#[test]
fn hooks_run_in_order_with_state() {
    let mut b = Bundle::new(&["true"]);
    let logdir = b.tmp.path().join("hooklog");
    std::fs::create_dir(&logdir).unwrap();
    let host_log = logdir.join("log");
    let host_log = host_log.to_str().unwrap();
    b.spec["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/hooklog", "type": "bind", "source": logdir, "options": ["rbind"]}),
    );
    b.spec["hooks"] = json!({
        "prestart": [hook("prestart", "/bin/sh", host_log)],
        "createRuntime": [hook("createRuntime", "/bin/sh", host_log)],
        "createContainer": [hook("createContainer", "/bin/sh", host_log)],
        // Runs after pivot_root: paths are the container's.
        "startContainer": [hook("startContainer", "/bin/sh", "/hooklog/log")],
        "poststart": [hook("poststart", "/bin/sh", host_log)],
        "poststop": [hook("poststop", "/bin/sh", host_log)],
    });
    b.write();
    assert!(b.rt(&["create", "hk"]).status.success());
    let pid = b.state("hk")["pid"].as_i64().unwrap();
    let o = b.rt(&["start", "hk"]);
    assert!(o.status.success(), "{}", stderr_line(&o));
    b.wait_status("hk", "stopped");
    let o = b.rt(&["delete", "hk"]);
    assert!(o.status.success(), "{}", stderr_line(&o));
    b.assert_no_leftovers("hk");

    let log = std::fs::read_to_string(host_log).unwrap();
    let entries: Vec<(String, Value)> = log
        .lines()
        .map(|l| {
            let (name, st) = l.split_once(' ').unwrap();
            (name.to_string(), serde_json::from_str(st).unwrap())
        })
        .collect();
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ]
    );
    for (name, st) in &entries {
        assert_eq!(st["id"], "hk", "{name}");
        assert_eq!(st["bundle"], json!(b.dir.canonicalize().unwrap()), "{name}");
        let want = match name.as_str() {
            "prestart" | "createRuntime" | "createContainer" => "creating",
            "poststop" => "stopped",
            _ => "running",
        };
        assert_eq!(st["status"], want, "{name}");
        if name != "poststop" {
            assert_eq!(st["pid"], json!(pid), "{name}");
        }
    }
}

#[test]
fn hook_args_and_env_are_passed() {
    let mut b = Bundle::new(&["true"]);
    let out = b.tmp.path().join("hookout");
    b.spec["hooks"] = json!({"prestart": [{
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("echo \"$0 $1 $GREETING\" > {}", out.display()), "first", "second"],
        "env": ["GREETING=hello"]
    }]});
    let (code, _, err) = b.run("hk2");
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(out).unwrap(),
        "first second hello\n"
    );
}
