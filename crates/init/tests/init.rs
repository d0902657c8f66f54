//! berth-init as a process: the status it exits with, the signals it passes on, and its
//! errors. (Inside a container, with orphans to reap, it is tested by the CLI's
//! `init_reaps_orphans_and_forwards_signals`.) Having an integration test also makes
//! `cargo test --workspace` build the binary, which the CLI's tests run.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn init() -> Command {
    Command::new(env!("CARGO_BIN_EXE_berth-init"))
}

#[test]
fn exits_with_the_commands_status() {
    for (args, code) in [
        (&["--", "sh", "-c", "exit 7"][..], 7),
        (&["sh", "-c", "exit 0"][..], 0),
        (&["sh", "-c", "kill -KILL $$"][..], 128 + 9),
    ] {
        let status = init().args(args).status().unwrap();
        assert_eq!(status.code(), Some(code), "{args:?}");
    }
}

#[test]
fn a_missing_command_is_127_and_no_command_is_a_usage_error() {
    let out = init().args(["--", "/nonexistent/cmd"]).output().unwrap();
    assert_eq!(out.status.code(), Some(127));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("berth-init: exec /nonexistent/cmd failed:") && err.lines().count() == 1,
        "{err}"
    );
    let out = init().arg("--").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: berth-init"));
}

#[test]
fn signals_reach_the_command() {
    // The command traps TERM and exits 42 with it: the status says the signal arrived
    // and was handled by the command, not by init.
    let mut child = init()
        .args([
            "sh",
            "-c",
            "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "ready\n");
    // SAFETY: kill with the pid of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(42));
            break;
        }
        assert!(Instant::now() < deadline, "init did not pass SIGTERM on");
        std::thread::sleep(Duration::from_millis(20));
    }
}
