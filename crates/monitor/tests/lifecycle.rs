//! A detached container from start to exit: the sync fd, the log, the exit file, the
//! exit command, failures of the runtime, and what the container inherits.

mod common;
use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::Write;
use std::process::Stdio;

#[test]
fn detached_run_logs_stdout_and_stderr_in_json_file_format() {
    let mut f = Fixture::new(&[
        "sh",
        "-c",
        "echo out; echo err >&2; echo '<tab>\t\"q\"'; printf tail",
    ]);
    let l = f.launch(&["--log"]);
    let monitor = l.monitor;
    assert!(l.pid() > 0);
    assert_eq!(f.wait_monitor(), 0);
    assert_eq!(f.exit_file()["exit_code"], 0);
    assert!(is_rfc3339_nanos(
        f.exit_file()["finished_at"].as_str().unwrap()
    ));
    let mut entries = f.entries(&f.log);
    // Entries of one stream keep their order; the two streams may interleave.
    let err: Vec<_> = entries
        .iter()
        .filter(|(s, _)| s == "stderr")
        .cloned()
        .collect();
    entries.retain(|(s, _)| s == "stdout");
    assert_eq!(err, [("stderr".to_string(), "err\n".to_string())]);
    let out: Vec<&str> = entries.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(out, ["out\n", "<tab>\t\"q\"\n", "tail"]);
    // Byte for byte as Docker writes it.
    let raw = std::fs::read_to_string(&f.log).unwrap();
    assert!(raw.starts_with("{\"log\":\""), "{raw}");
    assert!(
        raw.contains(r#"{"log":"\u003ctab\u003e\u0009\"q\"\n","stream":"stdout","time":""#),
        "{raw}"
    );
    // The monitor is gone and its sockets with it; the runtime still has the container
    // (deleting it is the exit command's job).
    assert!(!f.state.join("attach.sock").exists());
    assert_eq!(
        std::fs::read_to_string(f.state.join("monitor.pid"))
            .unwrap()
            .trim(),
        monitor.to_string()
    );
    assert_eq!(f.runtime_ids(), [f.id.clone()]);
}

#[test]
fn no_log_without_log_path() {
    let mut f = Fixture::new(&["echo", "hi"]);
    assert!(f.launch(&[]).pid() > 0);
    assert_eq!(f.wait_monitor(), 0);
    assert_eq!(f.exit_file()["exit_code"], 0);
    assert!(!f.log.exists());
}

#[test]
fn runtime_error_is_reported_and_nothing_is_left() {
    let mut f = Fixture::new(&["/no/such/program"]);
    let marker = f.path("exit-command-ran");
    let cmd = format!("touch {}", marker.display());
    let out = f
        .launch(&[
            "--log",
            "--exit-command",
            "/bin/sh",
            "--exit-arg",
            "-c",
            "--exit-arg",
            &cmd,
        ])
        .outcome();
    let msg = out["error"].as_str().unwrap_or_else(|| panic!("{out}"));
    assert!(msg.contains("/no/such/program"), "{msg}");
    assert_eq!(f.wait_monitor(), 1);
    assert_eq!(f.runtime_ids(), Vec::<String>::new());
    assert!(!f.state.join("exit").exists());
    assert!(!marker.exists(), "the exit command must not run");
    assert!(!f.state.join("attach.sock").exists());
    let why = std::fs::read_to_string(f.state.join("monitor.log")).unwrap();
    assert!(why.contains("/no/such/program"), "{why}");
}

#[test]
fn missing_runtime_is_reported() {
    let mut f = Fixture::new(&["true"]);
    // A second --runtime replaces the fixture's.
    let out = f.launch(&["--runtime", "/no/such/runtime"]).outcome();
    let msg = out["error"].as_str().unwrap_or_else(|| panic!("{out}"));
    assert!(msg.contains("/no/such/runtime"), "{msg}");
    assert_eq!(f.wait_monitor(), 1);
}

#[test]
fn exit_code_is_recorded() {
    let mut f = Fixture::new(&["sh", "-c", "exit 3"]);
    f.launch(&[]).pid();
    assert_eq!(f.wait_monitor(), 0);
    assert_eq!(f.exit_file()["exit_code"], 3);
}

#[test]
fn killed_by_a_signal_is_128_plus_the_signal() {
    let mut f = Fixture::new(&["sleep", "100"]);
    let pid = f.launch(&[]).pid();
    // From outside: inside its pid namespace the init ignores unhandled signals.
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    assert_eq!(f.wait_monitor(), 0);
    assert_eq!(f.exit_file()["exit_code"], 137);
}

#[test]
fn exit_command_runs_after_the_exit_file_is_written() {
    let mut f = Fixture::new(&["sh", "-c", "exit 5"]);
    let out = f.path("seen");
    let script = format!(
        "cat {}/exit > {out}; echo \" args=$*\" >> {out}",
        f.state.display(),
        out = out.display()
    );
    f.launch(&[
        "--exit-command",
        "/bin/sh",
        "--exit-arg",
        "-c",
        "--exit-arg",
        &script,
        "--exit-arg",
        "sh",
        "--exit-arg",
        "one",
        "--exit-arg",
        "two words",
    ])
    .pid();
    assert_eq!(f.wait_monitor(), 0);
    let seen = std::fs::read_to_string(&out).unwrap();
    assert!(
        seen.starts_with("{\"exit_code\":5,\"finished_at\":\""),
        "{seen}"
    );
    assert!(seen.ends_with(" args=one two words\n"), "{seen}");
}

#[test]
fn the_exit_command_inherits_no_descriptor_of_the_monitor() {
    let mut f = Fixture::new(&["true"]);
    let out = f.path("fds");
    let script = format!("ls -l /proc/self/fd > {}", out.display());
    f.launch(&[
        "--log",
        "--stdin",
        "--exit-command",
        "/bin/sh",
        "--exit-arg",
        "-c",
        "--exit-arg",
        &script,
    ])
    .pid();
    assert_eq!(f.wait_monitor(), 0);
    let listing = std::fs::read_to_string(&out).unwrap();
    // Not counting ls's own handle on the directory it lists.
    let links: Vec<&str> = listing
        .lines()
        .filter(|l| l.contains(" -> ") && !l.contains(" -> /proc/"))
        .collect();
    // stdin and stderr /dev/null, stdout the file; nothing else.
    assert_eq!(links.len(), 3, "{listing}");
    assert_eq!(
        links.iter().filter(|l| l.ends_with("/dev/null")).count(),
        2,
        "{listing}"
    );
}

#[test]
fn log_rotation_keeps_exactly_n_files() {
    // 300 entries of ~80 bytes: far more than three files of 2000 bytes hold.
    let mut f = Fixture::new(&[
        "sh",
        "-c",
        "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done",
    ]);
    f.launch(&["--log", "--log-max-size", "2000", "--log-max-files", "3"])
        .pid();
    assert_eq!(f.wait_monitor(), 0);
    let dir = f.log.parent().unwrap();
    let name = f.log.file_name().unwrap().to_str().unwrap();
    let mut logs: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(name))
        .collect();
    logs.sort();
    assert_eq!(
        logs,
        [name.to_string(), format!("{name}.1"), format!("{name}.2")]
    );
    let mut lines = vec![];
    for n in [format!("{name}.2"), format!("{name}.1"), name.to_string()] {
        let p = dir.join(&n);
        assert!(std::fs::metadata(&p).unwrap().len() <= 2000, "{n}");
        lines.extend(f.entries(&p).into_iter().map(|(_, l)| l));
    }
    // The newest lines survive, in order, up to the last one.
    let first: usize = lines[0].trim()["line-".len()..].parse().unwrap();
    let want: Vec<String> = (first..300).map(|i| format!("line-{i}\n")).collect();
    assert_eq!(lines, want);
}

#[test]
fn sigterm_and_sigint_do_not_stop_the_monitor() {
    let mut f = Fixture::new(&["sh", "-c", "read line; echo got-$line"]);
    let l = f.launch(&["--log", "--stdin"]);
    let monitor = l.monitor;
    l.pid();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        kill(Pid::from_raw(monitor), s).unwrap();
    }
    // Still serving: input reaches the container, and its exit is recorded.
    let mut c = f.attach();
    c.write_all(&frame(0, b"hi\n")).unwrap();
    assert_eq!(f.wait_monitor(), 0);
    assert_eq!(f.exit_file()["exit_code"], 0);
    assert_eq!(
        f.entries(&f.log),
        [("stdout".to_string(), "got-hi\n".to_string())]
    );
}

#[test]
fn the_container_inherits_only_its_stdio() {
    // `ls` as the init, no shell: it lists its own descriptors, which are the
    // container's stdio plus the one it opened to read the directory.
    let mut f = Fixture::new(&["ls", "-l", "/proc/self/fd"]);
    f.launch(&["--log", "--stdin"]).pid();
    assert_eq!(f.wait_monitor(), 0);
    let entries = f.entries(&f.log);
    let listing: String = entries.iter().map(|(_, l)| l.as_str()).collect();
    let fds: Vec<(u32, String)> = listing
        .lines()
        .filter(|l| l.starts_with('l'))
        .filter_map(|l| {
            let name = l.split(" -> ").next()?.split_whitespace().last()?;
            let target = l.split(" -> ").nth(1).unwrap_or("").to_string();
            Some((name.parse().ok()?, target))
        })
        .collect();
    let nums: Vec<u32> = fds.iter().map(|(n, _)| *n).collect();
    assert_eq!(&nums[..3], [0, 1, 2], "{listing}");
    for (n, target) in &fds[..3] {
        assert!(target.starts_with("pipe:"), "fd {n}: {listing}");
    }
    // At most ls's own handle on /proc/self/fd, which is gone by the time it is read.
    assert!(fds.len() <= 4, "{listing}");
    assert!(!listing.contains("socket:"), "{listing}");
}

#[test]
fn a_killed_monitor_leaves_the_container_running() {
    let mut f = Fixture::new(&["sleep", "100"]);
    let l = f.launch(&[]);
    let monitor = l.monitor;
    let pid = l.pid();
    // It is called berth-monitor, and holds the container as its child.
    let comm = std::fs::read_to_string(format!("/proc/{monitor}/comm")).unwrap();
    assert_eq!(comm.trim(), "berth-monitor");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let ppid: i32 = stat
        .rsplit(") ")
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(ppid, monitor);
    report_rss(monitor);
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let sock = std::fs::metadata(f.state.join("attach.sock")).unwrap();
    assert!(sock.file_type().is_socket());
    assert_eq!(sock.permissions().mode() & 0o777, 0o600);

    kill(Pid::from_raw(monitor), Signal::SIGKILL).unwrap();
    assert_eq!(f.wait_monitor(), 128 + 9);
    let (ok, state) = f.runtime(&["state", &f.id]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(v["status"], "running", "{state}");
    assert!(!f.state.join("exit").exists());
    // The Fixture deletes it; its init is reparented to us (a subreaper) and reaped.
}

/// Prints the monitor's memory (see docs/monitor.md for the budget); measured, not
/// asserted: a debug build is not what runs in production.
fn report_rss(monitor: i32) {
    let status = std::fs::read_to_string(format!("/proc/{monitor}/status")).unwrap();
    for line in status
        .lines()
        .filter(|l| l.starts_with("VmRSS") || l.starts_with("Rss"))
    {
        eprintln!("monitor of an idle container: {line}");
    }
}

#[test]
fn bad_command_lines_exit_2() {
    let f = Fixture::new(&["true"]);
    for args in [
        vec!["--bogus"],
        vec!["--log-max-files", "x"],
        vec!["--sync-fd", "1000"],
        vec!["--sync-fd", "1"],
    ] {
        let out = f.command(&args).stderr(Stdio::piped()).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("berth-monitor: ") && err.lines().count() == 1,
            "{err}"
        );
    }
    let out = std::process::Command::new(monitor_bin())
        .args(["--id", "x"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing --bundle"));
}
