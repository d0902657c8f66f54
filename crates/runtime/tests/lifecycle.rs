//! The runc lifecycle on real containers: run, create/start/state/kill/delete, list.

mod common;
use common::*;
use serde_json::json;

#[test]
fn run_prints_output_and_passes_exit_code() {
    let b = Bundle::new(&["sh", "-c", "echo hello; echo oops >&2; exit 7"]);
    let (code, out, err) = b.run("run1");
    assert_eq!(code, 7, "stderr: {err}");
    assert_eq!(out, "hello\n");
    assert_eq!(err, "oops\n");
    b.assert_no_leftovers("run1");
}

/// A container that marks itself ready (its trap is installed) in its rootfs.
fn trapping_bundle(trap: &str) -> Bundle {
    let script = format!("{trap}; touch /ready; while true; do sleep 0.02; done");
    let mut b = Bundle::new(&["sh", "-c", &script]);
    b.spec["root"]["readonly"] = json!(false);
    b.write();
    b
}

fn wait_ready(b: &Bundle) {
    for _ in 0..500 {
        if b.rootfs().join("ready").exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("container never became ready");
}

#[test]
fn foreground_run_forwards_signals_and_reports_signal_death() {
    let b = trapping_bundle("trap 'exit 42' TERM");
    let mut child = b.cmd(&["run", "fw1"]).spawn().unwrap();
    wait_ready(&b);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(42));
    b.assert_no_leftovers("fw1");

    std::fs::remove_file(b.rootfs().join("ready")).unwrap();
    let mut child = b.cmd(&["run", "fw2"]).spawn().unwrap();
    wait_ready(&b);
    assert!(b.rt(&["kill", "fw2", "KILL"]).status.success());
    assert_eq!(child.wait().unwrap().code(), Some(137));
    b.assert_no_leftovers("fw2");
}

#[test]
fn create_start_state_kill_delete() {
    let b = Bundle::new(&["sleep", "1000"]);
    let pidfile = b.tmp.path().join("pid");
    let o = b.rt(&["create", "--pid-file", pidfile.to_str().unwrap(), "c1"]);
    assert!(o.status.success(), "{}", stderr_line(&o));
    let st = b.state("c1");
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], "c1");
    assert_eq!(st["ociVersion"], runtime::state::OCI_VERSION);
    assert_eq!(st["bundle"], json!(b.dir.canonicalize().unwrap()));
    let pid: i64 = std::fs::read_to_string(&pidfile).unwrap().parse().unwrap();
    assert_eq!(st["pid"], json!(pid));
    // The init waits for start: its command line is not yet the user's program.
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(!cmdline.starts_with("sleep"));

    let o = b.rt(&["start", "c1"]);
    assert!(o.status.success(), "{}", stderr_line(&o));
    assert_eq!(b.status("c1"), "running");
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(cmdline, "sleep\x001000\x00");

    let o = b.rt(&["start", "c1"]);
    assert!(!o.status.success());
    assert!(
        stderr_line(&o).contains("already running"),
        "{}",
        stderr_line(&o)
    );

    let o = b.rt(&["delete", "c1"]);
    assert!(!o.status.success());
    assert!(
        stderr_line(&o).contains("not stopped"),
        "{}",
        stderr_line(&o)
    );

    let o = b.rt(&["kill", "c1", "KILL"]);
    assert!(o.status.success(), "{}", stderr_line(&o));
    b.wait_status("c1", "stopped");
    assert_eq!(b.state("c1")["pid"], 0);

    let o = b.rt(&["kill", "c1", "TERM"]);
    assert!(!o.status.success());
    assert!(stderr_line(&o).contains("container not running"));

    let o = b.rt(&["delete", "c1"]);
    assert!(o.status.success(), "{}", stderr_line(&o));
    b.assert_no_leftovers("c1");
    let o = b.rt(&["state", "c1"]);
    assert!(!o.status.success());
    assert!(stderr_line(&o).contains("does not exist"));
    // runc: a forced delete of a missing container succeeds.
    assert!(b.rt(&["delete", "--force", "c1"]).status.success());
}

#[test]
fn delete_force_kills_a_running_container() {
    let b = Bundle::new(&["sh", "-c", "sleep 1000 & sleep 1000"]);
    assert!(b.rt(&["run", "-d", "f1"]).status.success());
    assert_eq!(b.status("f1"), "running");
    let o = b.rt(&["delete", "--force", "f1"]);
    assert!(o.status.success(), "{}", stderr_line(&o));
    b.assert_no_leftovers("f1");
}

#[test]
fn delete_of_created_container_needs_no_force() {
    let b = Bundle::new(&["true"]);
    assert!(b.rt(&["create", "d1"]).status.success());
    let pid = b.state("d1")["pid"].as_i64().unwrap();
    let o = b.rt(&["delete", "d1"]);
    assert!(o.status.success(), "{}", stderr_line(&o));
    b.assert_no_leftovers("d1");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}/cmdline")).exists() || {
            // The pid may have been reused; then it is not our init.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(" Z "))
                .unwrap_or(true)
        }
    );
}

#[test]
fn kill_accepts_names_and_numbers_and_all() {
    let b = trapping_bundle("trap 'exit 0' USR1");
    assert!(b.rt(&["run", "-d", "k1"]).status.success());
    wait_ready(&b);
    let o = b.rt(&["kill", "k1", "SIGUSR1"]);
    assert!(o.status.success(), "{}", stderr_line(&o));
    b.wait_status("k1", "stopped");
    assert!(b.rt(&["delete", "k1"]).status.success());

    assert!(b.rt(&["run", "-d", "k2"]).status.success());
    let o = b.rt(&["kill", "k2", "SIGNOPE"]);
    assert!(!o.status.success());
    assert!(stderr_line(&o).contains("SIGNOPE"), "{}", stderr_line(&o));
    assert_eq!(b.status("k2"), "running");
    let o = b.rt(&["kill", "--all", "k2", "9"]);
    assert!(o.status.success(), "{}", stderr_line(&o));
    b.wait_status("k2", "stopped");
    assert!(b.rt(&["delete", "k2"]).status.success());
    b.assert_no_leftovers("k2");
}

#[test]
fn list_shows_containers_in_table_and_json() {
    let b = Bundle::new(&["sleep", "1000"]);
    assert!(b.rt(&["create", "l1"]).status.success());
    assert!(b.rt(&["run", "-d", "l2"]).status.success());
    let o = b.rt(&["list"]);
    let text = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("ID          PID         STATUS"),
        "{text}"
    );
    assert!(lines
        .iter()
        .any(|l| l.starts_with("l1 ") && l.contains("created")));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("l2 ") && l.contains("running")));
    let o = b.rt(&["list", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    let o = b.rt(&["list", "-q"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "l1\nl2\n");
    for id in ["l1", "l2"] {
        assert!(b.rt(&["delete", "--force", id]).status.success());
        b.assert_no_leftovers(id);
    }
}

#[test]
fn version_is_printed_like_runc() {
    let o = std::process::Command::new(bin())
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("berth-runtime version "), "{text}");
    assert!(lines[1].starts_with("commit: "));
    assert_eq!(lines[2], format!("spec: {}", runtime::state::OCI_VERSION));
}

/// Accepts one connection on `sock` and returns the pid of the pidfd it carries.
fn receive_pidfd(l: std::os::unix::net::UnixListener) -> std::thread::JoinHandle<i32> {
    std::thread::spawn(move || {
        let (fd, _) = accept_fd(&l);
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
        let pid = info
            .lines()
            .find_map(|l| l.strip_prefix("Pid:"))
            .expect("a pidfd")
            .trim()
            .parse()
            .unwrap();
        nix::unistd::close(fd).unwrap();
        pid
    })
}

#[test]
fn pidfd_socket_receives_the_process() {
    let b = Bundle::new(&["sleep", "1000"]);
    let sock = b.tmp.path().join("pidfd.sock");
    let got = receive_pidfd(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let o = b.rt(&["create", "--pidfd-socket", sock.to_str().unwrap(), "pfd"]);
    assert!(o.status.success(), "{}", stderr_line(&o));
    assert_eq!(
        i64::from(got.join().unwrap()),
        b.state("pfd")["pid"].as_i64().unwrap()
    );

    let sock2 = b.tmp.path().join("pidfd2.sock");
    let got = receive_pidfd(std::os::unix::net::UnixListener::bind(&sock2).unwrap());
    let pidfile = b.tmp.path().join("exec.pid");
    let o = b.rt(&[
        "exec",
        "-d",
        "--pidfd-socket",
        sock2.to_str().unwrap(),
        "--pid-file",
        pidfile.to_str().unwrap(),
        "pfd",
        "sleep",
        "100",
    ]);
    assert!(o.status.success(), "{}", stderr_line(&o));
    let want: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(got.join().unwrap(), want);
    assert!(b.rt(&["delete", "--force", "pfd"]).status.success());
    b.assert_no_leftovers("pfd");
}

/// --preserve-fds N passes the caller's descriptors 3..3+N into the container.
#[test]
fn preserve_fds_passes_descriptors() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let b = Bundle::new(&["sh", "-c", "echo through-fd-3 >&3"]);
    let out = b.tmp.path().join("fd3.txt");
    let f = std::fs::File::create(&out).unwrap();
    let raw = f.as_raw_fd();
    let mut cmd = b.cmd(&["run", "--preserve-fds", "1", "pf1"]);
    // SAFETY: dup2 in the child between fork and exec touches only descriptors.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself would keep close-on-exec, so clear it explicitly.
            let r = if raw == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(raw, 3)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let st = cmd.stdin(std::process::Stdio::null()).status().unwrap();
    assert!(st.success());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "through-fd-3\n");
    b.assert_no_leftovers("pf1");
}

/// `events` without --stats streams stats every --interval until the container stops.
#[test]
fn events_stream_at_the_interval() {
    let b = Bundle::new(&["sleep", "1000"]);
    assert!(b.rt(&["run", "-d", "ev1"]).status.success());
    let mut child = b
        .cmd(&["events", "--interval", "100ms", "ev1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    for _ in 0..2 {
        let l = lines.next().unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["type"], "stats");
        assert_eq!(v["id"], "ev1");
    }
    assert!(b.rt(&["kill", "ev1", "KILL"]).status.success());
    let st = child.wait().unwrap();
    assert!(
        st.success(),
        "events did not end when the container stopped"
    );
    assert!(b.rt(&["delete", "ev1"]).status.success());
    b.assert_no_leftovers("ev1");
}
