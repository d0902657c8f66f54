//! `exec` into running containers: flag form, --process form, detach, errors.

mod common;
use common::*;
use serde_json::json;

fn running(id: &str) -> Bundle {
    let b = Bundle::new(&["sleep", "1000"]);
    let o = b.rt(&["run", "-d", id]);
    assert!(o.status.success(), "{}", stderr_line(&o));
    b
}

#[test]
fn exec_runs_inside_with_exit_code_and_flags() {
    let b = running("ex1");
    let o = b.rt(&[
        "exec",
        "ex1",
        "sh",
        "-c",
        "echo $$; ps -o pid,comm | grep -c sleep; exit 4",
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr_line(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let mut lines = out.lines();
    assert_ne!(
        lines.next(),
        Some("1"),
        "exec'd process must not be the init"
    );
    assert_eq!(
        lines.next(),
        Some("1"),
        "the container's sleep is visible: same pid namespace"
    );

    let o = b.rt(&[
        "exec",
        "--env",
        "A=b",
        "--user",
        "1000:1001",
        "--cwd",
        "/tmp",
        "ex1",
        "sh",
        "-c",
        "echo $A; id -u; id -g; pwd",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "b\n1000\n1001\n/tmp\n",
        "{}",
        stderr_line(&o)
    );

    // It joins the container's cgroup and namespaces.
    let o = b.rt(&[
        "exec",
        "ex1",
        "sh",
        "-c",
        "cat /proc/self/cgroup; readlink /proc/self/ns/net; readlink /proc/1/ns/net",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    let n = lines.len();
    assert_eq!(lines[n - 1], lines[n - 2]);
    assert!(b.rt(&["delete", "--force", "ex1"]).status.success());
    b.assert_no_leftovers("ex1");
}

#[test]
fn exec_with_process_file_and_detach() {
    let b = running("ex2");
    let proc_file = b.tmp.path().join("process.json");
    let marker = "/dev/shm/exec-marker";
    std::fs::write(
        &proc_file,
        serde_json::to_vec(&json!({
            "args": ["sh", "-c", format!("echo $X > {marker}; sleep 1000")],
            "env": ["PATH=/bin", "X=from-process-json"],
            "cwd": "/",
            "user": {"uid": 0, "gid": 0}
        }))
        .unwrap(),
    )
    .unwrap();
    let pidfile = b.tmp.path().join("exec.pid");
    let o = b.rt(&[
        "exec",
        "--process",
        proc_file.to_str().unwrap(),
        "--detach",
        "--pid-file",
        pidfile.to_str().unwrap(),
        "ex2",
    ]);
    assert!(o.status.success(), "{}", stderr_line(&o));
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().parse().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    let mut seen = String::new();
    for _ in 0..200 {
        let o = b.rt(&["exec", "ex2", "cat", marker]);
        seen = String::from_utf8_lossy(&o.stdout).into_owned();
        if !seen.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(seen, "from-process-json\n");
    // kill --all reaches the exec'd process too.
    assert!(b.rt(&["kill", "--all", "ex2", "KILL"]).status.success());
    b.wait_status("ex2", "stopped");
    assert!(b.rt(&["delete", "ex2"]).status.success());
    b.assert_no_leftovers("ex2");
}

#[test]
fn exec_errors() {
    let b = running("ex3");
    let o = b.rt(&["exec", "ex3", "no-such-binary"]);
    assert!(!o.status.success());
    assert!(
        stderr_line(&o).contains("executable file not found"),
        "{}",
        stderr_line(&o)
    );
    let o = b.rt(&["exec", "nope", "true"]);
    assert!(stderr_line(&o).contains("does not exist"));
    assert!(b.rt(&["kill", "ex3", "KILL"]).status.success());
    b.wait_status("ex3", "stopped");
    let o = b.rt(&["exec", "ex3", "true"]);
    assert!(!o.status.success());
    assert!(stderr_line(&o).contains("stopped"), "{}", stderr_line(&o));
    assert!(b.rt(&["delete", "ex3"]).status.success());
}
