//! `berth run/ps/logs/stop/kill/rm/wait` on real containers: berth-runtime and
//! berth-monitor from this workspace (built beside the berth binary), a busybox image
//! imported into a store of the test's own.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use support::{wait_for, Berth};

#[test]
fn foreground_run_streams_output_and_exit_code_and_rm_leaves_nothing() {
    let b = Berth::with_busybox();
    let (rc, out, err) = b.code(&[
        "run",
        "--rm",
        "bb:1",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!((rc, out.as_str(), err.as_str()), (3, "out\n", "err\n"));
    b.assert_nothing_left();

    // stdin with -i reaches the process, and its end closes the process's stdin.
    let mut child = b
        .cmd(&["run", "--rm", "-i", "bb:1", "sh", "-c", "cat; echo done"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hello\ndone\n");
    assert!(o.status.success());

    // The container's view: its own hostname (the short ID) and files.
    let out = b.ok(&[
        "run", "--rm", "--name", "named", "-h", "box", "bb:1", "hostname",
    ]);
    assert_eq!(out, "box\n");
    b.assert_nothing_left();
}

#[test]
fn exit_codes_are_dockers() {
    let b = Berth::with_busybox();
    let (rc, _, err) = b.code(&["run", "--rm", "bb:1", "no-such-command"]);
    assert_eq!(rc, 127, "{err}");
    assert!(err.contains("executable file not found"), "{err}");
    let (rc, _, err) = b.code(&["run", "--rm", "bb:1", "/etc"]);
    assert_eq!(rc, 126, "{err}");
    let (rc, _, err) = b.code(&["run", "--rm", "-m", "12x", "bb:1", "true"]);
    assert_eq!(rc, 125, "{err}");
    assert!(
        err.contains("invalid argument \"12x\" for \"-m, --memory\" flag"),
        "{err}"
    );
    let (rc, _, err) = b.code(&["run", "--rm", "--bogus-flag", "bb:1", "true"]);
    assert_eq!(rc, 125, "{err}");
    let (rc, _, err) = b.code(&["run", "--rm", "--pull", "never", "nothere:1", "true"]);
    assert_eq!(rc, 125, "{err}");
    assert!(err.contains("No such image: nothere:1"), "{err}");
    let (rc, _, err) = b.code(&[
        "run",
        "--rm",
        "--mount",
        "type=bind,src=/no/such/dir,dst=/x",
        "bb:1",
        "true",
    ]);
    assert_eq!(rc, 125, "{err}");
    assert!(err.contains("/no/such/dir"), "{err}");
    b.assert_nothing_left();

    b.ok(&["create", "--name", "taken", "bb:1"]);
    let (rc, _, err) = b.code(&["run", "--name", "taken", "bb:1", "true"]);
    assert_eq!(rc, 125);
    assert!(
        err.contains("The container name \"/taken\" is already in use"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    b.ok(&["rm", "taken"]);
    b.assert_nothing_left();
}

#[test]
fn detached_logs_stop_restart_and_rm() {
    let b = Berth::with_busybox();
    let id = b.ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "bb:1",
        "sh",
        "-c",
        "trap 'echo bye; exit 0' TERM; i=0; while true; do echo tick $i; echo warn $i >&2; i=$((i+1)); sleep 0.1; done",
    ]);
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64);
    wait_for("three ticks", || {
        b.ok(&["logs", "ticker"]).contains("tick 2")
    });
    let o = b.run(&["logs", "--tail", "1", "ticker"]);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(out.lines().count() + err.lines().count(), 1, "{out}{err}");
    // stderr stays stderr.
    let o = b.run(&["logs", "ticker"]);
    assert!(String::from_utf8_lossy(&o.stderr).starts_with("warn 0\n"));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("tick 0\n"));
    let ts = b.ok(&["logs", "-t", "ticker"]);
    assert!(ts.starts_with("20") && ts.contains("Z tick 0\n"), "{ts}");

    let ps = b.ok(&["ps"]);
    let lines: Vec<&str> = ps.lines().collect();
    assert!(lines[0].starts_with("CONTAINER ID   IMAGE"), "{ps}");
    assert!(
        lines[1].starts_with(&id[..12]) && lines[1].contains(" Up "),
        "{ps}"
    );
    assert!(lines[1].ends_with("ticker"), "{ps}");
    assert_eq!(b.ok(&["ps", "-q"]), format!("{}\n", &id[..12]));
    assert_eq!(
        b.ok(&[
            "container",
            "inspect",
            "-f",
            "{{.State.Status}} {{.Name}}",
            "ticker"
        ]),
        "running /ticker\n"
    );

    // Removing a running container needs -f.
    let (rc, _, err) = b.code(&["rm", "ticker"]);
    assert_eq!(rc, 1);
    assert!(
        err.contains("Stop the container before attempting removal"),
        "{err}"
    );

    // `logs -f` follows until the container stops.
    let follower = b
        .cmd(&["logs", "-f", "ticker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(b.ok(&["stop", "ticker"]), "ticker\n");
    let followed = follower.wait_with_output().unwrap();
    let followed = String::from_utf8_lossy(&followed.stdout);
    assert!(followed.ends_with("bye\n"), "{followed}");

    let inspect = b.ok(&[
        "container",
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}} {{.State.Running}}",
        "ticker",
    ]);
    assert_eq!(inspect, "exited 0 false\n");
    assert_eq!(b.ok(&["wait", "ticker"]), "0\n");
    assert!(b.ok(&["ps"]).lines().count() == 1);
    assert!(b.ok(&["ps", "-a"]).contains("Exited (0)"));

    // Start again: the same container, its log continues.
    assert_eq!(b.ok(&["start", "ticker"]), "ticker\n");
    wait_for("running again", || b.ok(&["ps", "-q"]).trim() == &id[..12]);
    assert_eq!(b.ok(&["kill", "ticker"]), "ticker\n");
    assert_eq!(b.ok(&["wait", "ticker"]), "137\n");
    b.ok(&["rm", "ticker"]);
    let (rc, _, err) = b.code(&["rm", "ticker"]);
    assert_eq!(rc, 1);
    assert!(err.contains("No such container: ticker"), "{err}");
    b.assert_nothing_left();
}

#[test]
fn container_outlives_a_killed_cli_and_a_killed_monitor_is_noticed() {
    let b = Berth::with_busybox();
    let mut cli = b
        .cmd(&["run", "--name", "fg", "bb:1", "sleep", "1000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("running", || b.ok(&["ps"]).contains(" Up "));
    cli.kill().unwrap();
    cli.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        b.ok(&["ps"]).contains(" Up "),
        "still running after the CLI died"
    );

    let id = b.ok(&["container", "inspect", "-f", "{{.Id}}", "fg"]);
    let pidfile = b
        .tmp
        .path()
        .join("run/containers")
        .join(id.trim())
        .join("monitor.pid");
    let monitor: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let pid: i32 = b
        .ok(&["container", "inspect", "-f", "{{.State.Pid}}", "fg"])
        .trim()
        .parse()
        .unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    // SAFETY: kill(2) with a pid we read and a signal number; no memory involved.
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    wait_for("exited", || b.ok(&["ps", "-a"]).contains("Exited (137)"));
    let err = b.ok(&["container", "inspect", "-f", "{{.State.Error}}", "fg"]);
    assert!(err.contains("monitor"), "{err}");
    wait_for("the process gone", || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "))
    });
    b.ok(&["rm", "fg"]);
    b.assert_nothing_left();
}

#[test]
fn restart_on_failure_counts_exactly() {
    let b = Berth::with_busybox();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:3",
        "bb:1",
        "sh",
        "-c",
        "exit 4",
    ]);
    wait_for("three restarts then exited", || {
        let s = b.ok(&[
            "container",
            "inspect",
            "-f",
            "{{.RestartCount}} {{.State.Status}}",
            "flaky",
        ]);
        s == "3 exited\n"
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        b.ok(&[
            "container",
            "inspect",
            "-f",
            "{{.RestartCount}} {{.State.ExitCode}}",
            "flaky"
        ]),
        "3 4\n"
    );
    b.ok(&["rm", "flaky"]);
    b.assert_nothing_left();
}

#[test]
fn memory_limit_oom_is_reported() {
    let b = Berth::with_busybox();
    let (rc, _, err) = b.code(&[
        "run",
        "--name",
        "hog",
        "--memory",
        "32m",
        "--memory-swap",
        "32m",
        "bb:1",
        "sh",
        "-c",
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
    ]);
    assert_eq!(rc, 137, "{err}");
    assert_eq!(
        b.ok(&[
            "container",
            "inspect",
            "-f",
            "{{.State.OOMKilled}} {{.State.ExitCode}}",
            "hog"
        ]),
        "true 137\n"
    );
    b.ok(&["rm", "hog"]);
    b.assert_nothing_left();
}

#[test]
fn twenty_parallel_runs_with_rm() {
    let b = Berth::with_busybox();
    let children: Vec<_> = (0..20)
        .map(|i| {
            b.cmd(&["run", "--rm", "bb:1", "echo", &format!("n{i}")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let o = c.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "run {i}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout), format!("n{i}\n"));
    }
    b.assert_nothing_left();
}

/// `--pids-limit 50` holds a fork bomb to 50 processes, and `rm -f` still ends it all.
#[test]
fn pids_limit_stops_a_fork_bomb() {
    let b = Berth::with_busybox();
    let id = b.ok(&[
        "run",
        "-d",
        "--pids-limit",
        "50",
        "bb:1",
        "sh",
        "-c",
        "bomb() { bomb | bomb & }; bomb; sleep 100",
    ]);
    let id = id.trim();
    let cg = format!("/sys/fs/cgroup/pids/berth/{id}");
    assert_eq!(
        std::fs::read_to_string(format!("{cg}/pids.max"))
            .unwrap()
            .trim(),
        "50"
    );
    let current = || -> u64 {
        std::fs::read_to_string(format!("{cg}/pids.current"))
            .map(|s| s.trim().parse().unwrap())
            .unwrap_or(0)
    };
    wait_for("the bomb to hit the limit", || {
        let events = std::fs::read_to_string(format!("{cg}/pids.events")).unwrap_or_default();
        events.trim() != "max 0" && !events.is_empty()
    });
    assert!(current() <= 50, "{} processes", current());
    b.ok(&["rm", "-f", id]);
    assert!(!std::path::Path::new(&cg).exists());
    b.assert_nothing_left();
}

fn health_status(b: &Berth, id: &str) -> String {
    b.ok(&["container", "inspect", "-f", "{{.State.Health.Status}}", id])
        .trim()
        .to_string()
}

/// The monitor runs the check in the container: it fails until the file exists
/// (unhealthy after 2 failures), passes once it does, and fails again once it is gone.
#[test]
fn health_check_turns_a_container_unhealthy_and_healthy() {
    let b = Berth::with_busybox();
    let id = b.ok(&[
        "run",
        "-d",
        "--health-cmd",
        "cat /tmp/ok",
        "--health-interval",
        "100ms",
        "--health-retries",
        "2",
        "bb:1",
        "sh",
        "-c",
        "sleep 1; echo fine > /tmp/ok; sleep 1; rm /tmp/ok; sleep 100",
    ]);
    let id = id.trim();
    assert_eq!(health_status(&b, id), "starting");
    wait_for("unhealthy", || health_status(&b, id) == "unhealthy");
    let ps = b.ok(&["ps", "--format", "{{.Status}}"]);
    assert!(ps.ends_with("(unhealthy)\n"), "{ps}");
    wait_for("healthy", || health_status(&b, id) == "healthy");
    assert_eq!(
        b.ok(&["ps", "-q", "--filter", "health=healthy"]).trim(),
        &id[..12]
    );
    let last = b.ok(&["container", "inspect", "-f", "{{json .State.Health}}", id]);
    let v: serde_json::Value = serde_json::from_str(&last).unwrap();
    let log = v["Log"].as_array().unwrap();
    assert_eq!(log.last().unwrap()["Output"], "fine\n");
    assert_eq!(log.last().unwrap()["ExitCode"], 0);
    assert_eq!(v["FailingStreak"], 0);
    wait_for("unhealthy again", || health_status(&b, id) == "unhealthy");
    // Kept after the container is gone, as Docker's.
    b.ok(&["kill", id]);
    b.ok(&["wait", id]);
    assert_eq!(health_status(&b, id), "unhealthy");
    b.ok(&["rm", id]);
    b.assert_nothing_left();
}

/// A check that outlives its timeout is killed inside the container and counts as a
/// failure with Docker's message.
#[test]
fn health_check_timeout_kills_the_check() {
    let b = Berth::with_busybox();
    let id = b.ok(&[
        "run",
        "-d",
        "--health-cmd",
        "sleep 30",
        "--health-interval",
        "100ms",
        "--health-timeout",
        "300ms",
        "--health-retries",
        "1",
        "bb:1",
        "sleep",
        "100",
    ]);
    let id = id.trim();
    wait_for("unhealthy", || health_status(&b, id) == "unhealthy");
    let v: serde_json::Value =
        serde_json::from_str(&b.ok(&["container", "inspect", "-f", "{{json .State.Health}}", id]))
            .unwrap();
    let entry = &v["Log"][0];
    assert_eq!(entry["ExitCode"], -1);
    assert_eq!(entry["Output"], "Health check exceeded timeout (300ms)");
    // Killed checks are gone from the container: after three timeouts, at most the
    // check running now is in its cgroup.
    wait_for("three checks", || {
        let v = b.ok(&["container", "inspect", "-f", "{{json .State.Health}}", id]);
        serde_json::from_str::<serde_json::Value>(&v).unwrap()["Log"]
            .as_array()
            .unwrap()
            .len()
            >= 3
    });
    let procs =
        std::fs::read_to_string(format!("/sys/fs/cgroup/pids/berth/{id}/cgroup.procs")).unwrap();
    let checks = procs
        .lines()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default() == b"sleep\x0030\x00"
        })
        .count();
    assert!(checks <= 1, "{checks} checks still running");
    b.ok(&["rm", "-f", id]);
    b.assert_nothing_left();
}

/// `--init`: berth-init is PID 1, the command runs under it, orphans are reaped (no
/// zombie), signals reach the command, and its exit status is the container's.
#[test]
fn init_reaps_orphans_and_forwards_signals() {
    let b = Berth::with_busybox();
    let (rc, out, err) = b.code(&[
        "run",
        "--rm",
        "--init",
        "bb:1",
        "sh",
        "-c",
        "ps -o pid,args; exit 7",
    ]);
    assert_eq!(rc, 7, "{err}");
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert!(
        rows[0].trim_start().starts_with("1 ") && rows[0].contains("/sbin/docker-init -- sh -c"),
        "{out}"
    );
    assert!(rows[1].trim_start().starts_with("2 "), "{out}");

    // An orphan of a command that never waits (exec sleep): without an init it stays a
    // zombie; with one it is reaped.
    let zombies = |init: bool| {
        let mut args = vec!["run", "-d"];
        if init {
            args.push("--init");
        }
        args.extend(["bb:1", "sh", "-c", "(sleep 0.1 &); exec sleep 100"]);
        let id = b.ok(&args).trim().to_string();
        std::thread::sleep(Duration::from_millis(600));
        // Zombies have left the cgroup already: look at the children of PID 1.
        let pid = b.ok(&["container", "inspect", "-f", "{{.State.Pid}}", &id]);
        let pid = pid.trim();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
        let n = children
            .split_whitespace()
            .filter(|child| {
                let stat =
                    std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
                stat.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('Z'))
            })
            .count();
        b.ok(&["rm", "-f", &id]);
        n
    };
    assert_eq!(
        zombies(false),
        1,
        "the orphan should be a zombie without an init"
    );
    assert_eq!(zombies(true), 0);

    let id = b.ok(&[
        "run",
        "-d",
        "--init",
        "bb:1",
        "sh",
        "-c",
        "trap 'echo got TERM; exit 9' TERM; sleep 100 & wait",
    ]);
    let id = id.trim();
    // The trap is set once the shell runs: give it a moment.
    std::thread::sleep(Duration::from_millis(300));
    let t0 = std::time::Instant::now();
    b.ok(&["stop", id]);
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "SIGTERM did not arrive"
    );
    assert_eq!(b.ok(&["logs", id]), "got TERM\n");
    let code = b.ok(&["container", "inspect", "-f", "{{.State.ExitCode}}", id]);
    assert_eq!(code.trim(), "9");
    b.ok(&["rm", id]);

    let (rc, _, err) = b.code(&["run", "--rm", "--init", "bb:1", "no-such-cmd"]);
    assert_eq!(rc, 127);
    assert!(
        err.starts_with("berth-init: exec no-such-cmd failed"),
        "{err}"
    );
    b.assert_nothing_left();
}

/// Images under containers stay: `rmi` of the last tag needs -f and then only untags,
/// deleting by id is refused while a container uses it, `image prune -a` skips it.
#[test]
fn rmi_and_prune_leave_images_that_containers_use() {
    let b = Berth::with_busybox();
    let image = b.image_id("bb:1");
    let short = &image.trim_start_matches("sha256:")[..12];
    let id = b.ok(&["run", "-d", "bb:1", "sleep", "100"]);
    let id = id.trim();
    let err = b.fails(&["rmi", "bb:1"]);
    assert_eq!(
        err,
        format!("Error: conflict: unable to remove repository reference \"bb:1\" (must force) - container {} is using its referenced image {short}\n", &id[..12])
    );
    let err = b.fails(&["rmi", "-f", short]);
    assert!(
        err.ends_with(&format!(
            "(cannot be forced) - image is being used by running container {}\n",
            &id[..12]
        )),
        "{err}"
    );
    b.ok(&["tag", "bb:1", "other:2"]);
    assert_eq!(b.ok(&["rmi", "other:2"]), "Untagged: other:2\n");
    assert_eq!(b.ok(&["rmi", "-f", "bb:1"]), "Untagged: bb:1\n");
    b.ok(&["image", "prune", "-a", "-f"]);
    assert_eq!(b.ok(&["images", "-q", "-a"]).trim(), short);
    // Still startable after all that.
    b.ok(&["rm", "-f", id]);
    b.ok(&["run", "--rm", &image, "true"]);
    b.ok(&["image", "prune", "-a", "-f"]);
    assert_eq!(b.ok(&["images", "-q", "-a"]), "");
    b.assert_nothing_left();
}

/// `berth inspect` finds containers, then images; `system df` counts containers and
/// their writable layers.
#[test]
fn inspect_any_object_and_system_df_counts_containers() {
    let b = Berth::with_busybox();
    let image = b.image_id("bb:1");
    let id = b.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "bb:1",
        "sh",
        "-c",
        "head -c 300000 /dev/zero > /big; sleep 100",
    ]);
    let id = id.trim();
    b.ok(&[
        "run",
        "--name",
        "done",
        "bb:1",
        "sh",
        "-c",
        "head -c 100000 /dev/zero > /big",
    ]);
    let out = b.ok(&["inspect", "-f", "{{.Id}}", "web", "bb:1"]);
    assert_eq!(out, format!("{id}\n{image}\n"));
    assert_eq!(
        b.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}}",
            "--type",
            "container",
            "web"
        ]),
        "running\n"
    );
    let o = b.run(&["inspect", "--type", "image", "web"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "Error: No such object: web\n"
    );
    wait_for("the file", || {
        b.ok(&[
            "system",
            "df",
            "--format",
            "{{.Type}} {{.TotalCount}} {{.Active}} {{.Size}}",
        ])
        .contains("Containers 2 1 400kB")
    });
    let df = b.ok(&[
        "system",
        "df",
        "--format",
        "{{.Type}} {{.Active}} {{.Reclaimable}}",
    ]);
    assert!(df.contains("Images 1 0B (0%)"), "{df}");
    assert!(df.contains("Containers 1 100kB (25%)"), "{df}");
    b.ok(&["rm", "-f", "web", "done"]);
    b.assert_nothing_left();
}

/// A `--rm` container's root is a volatile overlay (never synced: it is deleted at exit);
/// a kept container's is not.
#[test]
fn only_rm_containers_get_a_volatile_root() {
    let b = Berth::with_busybox();
    let opts = |rm: bool| {
        let mut args = vec!["run"];
        if rm {
            args.push("--rm");
        }
        args.extend([
            "bb:1",
            "sh",
            "-c",
            "grep -c 'overlay.*volatile' /proc/mounts || true",
        ]);
        b.ok(&args)
    };
    assert_eq!(opts(true), "1\n");
    assert_eq!(opts(false), "0\n");
    b.ok(&["container", "prune", "-f"]);
    b.assert_nothing_left();
}

/// `berth info` counts this store's containers and images and names the runtimes found.
#[test]
fn info_reports_the_store() {
    let b = Berth::with_busybox();
    let id = b.ok(&["run", "-d", "bb:1", "sleep", "100"]);
    b.ok(&["create", "bb:1", "true"]);
    let fmt =
        "{{.Containers}} {{.ContainersRunning}} {{.ContainersStopped}} {{.Images}} {{.Driver}}";
    assert_eq!(b.ok(&["info", "-f", fmt]), "2 1 1 1 overlay2\n");
    let text = b.ok(&["info"]);
    assert!(text.contains(" Runtimes: berth-runtime"), "{text}");
    assert!(
        text.contains(&format!(" Docker Root Dir: {}\n", b.root().display())),
        "{text}"
    );
    b.ok(&["rm", "-f", id.trim()]);
    b.ok(&["container", "prune", "-f"]);
    b.assert_nothing_left();
}

/// `system prune`: stopped containers, their anonymous volumes (with --volumes) and
/// dangling images go, with what they held counted; a running container and its image stay.
#[test]
fn system_prune_removes_what_nothing_uses() {
    let b = Berth::with_busybox();
    let running = b.ok(&["run", "-d", "bb:1", "sleep", "100"]);
    let stopped = b.ok(&[
        "run",
        "-v",
        "/data",
        "bb:1",
        "sh",
        "-c",
        "head -c 200000 /dev/zero > /big",
    ]);
    assert!(stopped.is_empty());
    let stopped = b.ok(&["ps", "-aq", "--no-trunc", "--filter", "status=exited"]);
    let stopped = stopped.trim();
    // A dangling image: bb:1 moves to a new import.
    let old = b.image_id("bb:1");
    let tar = b.rootfs_tar();
    b.ok(&["import", tar.to_str().unwrap(), "other:1"]);
    b.ok(&["tag", "other:1", "bb:2"]);
    b.ok(&["rmi", "other:1"]);
    let out = b.ok(&["system", "prune", "-f", "--volumes"]);
    assert!(
        out.starts_with(&format!(
            "Deleted Containers:\n{stopped}\n\nDeleted Volumes:\n"
        )),
        "{out}"
    );
    assert!(
        !out.contains("Deleted Images:"),
        "bb:1 is tagged and used: {out}"
    );
    let total = out.lines().last().unwrap();
    assert!(total.starts_with("Total reclaimed space: 2"), "{out}");
    assert_eq!(b.ok(&["volume", "ls", "-q"]), "");
    assert_eq!(b.ok(&["ps", "-aq", "--no-trunc"]).trim(), running.trim());
    // -a: images no container uses go too (bb:2), the running one's stays.
    let out = b.ok(&["system", "prune", "-a", "-f"]);
    assert!(out.contains("Deleted Images:\nuntagged: bb:2\n"), "{out}");
    assert_eq!(b.ok(&["images", "-q", "--no-trunc"]).trim(), old);
    b.ok(&["rm", "-f", running.trim()]);
    b.assert_nothing_left();
}

/// `rename`, `restart`, `start -a -i`, `ps -n`/`-l`, and `logs --since/--until` with
/// the timestamps `logs -t` prints.
#[test]
fn rename_restart_start_attach_and_log_windows() {
    let b = Berth::with_busybox();
    let id = b.ok(&[
        "run",
        "-d",
        "--name",
        "first",
        "bb:1",
        "sh",
        "-c",
        "echo one; sleep 0.3; echo two; sleep 100",
    ]);
    let id = id.trim();
    b.ok(&["run", "-d", "--name", "other", "bb:1", "sleep", "100"]);
    // rename: the new name finds it, the old one does not; a taken name is refused.
    b.ok(&["rename", "first", "renamed"]);
    assert_eq!(
        b.ok(&["container", "inspect", "-f", "{{.Name}}", id]),
        "/renamed\n"
    );
    assert_eq!(
        b.run(&["container", "inspect", "first"]).status.code(),
        Some(1)
    );
    let err = b.fails(&["rename", "renamed", "other"]);
    assert!(err.contains("\"/other\" is already in use"), "{err}");

    // logs -t, then a window between the two lines' timestamps.
    wait_for("two lines", || b.ok(&["logs", id]) == "one\ntwo\n");
    let stamped = b.ok(&["logs", "-t", id]);
    let times: Vec<&str> = stamped
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        stamped
            .lines()
            .map(|l| l.split_once(' ').unwrap().1)
            .collect::<Vec<_>>(),
        ["one", "two"]
    );
    assert_eq!(b.ok(&["logs", "--since", times[1], id]), "two\n");
    // Both ends are inclusive, as Docker's (it skips only what is before --since or
    // after --until).
    assert_eq!(b.ok(&["logs", "--until", times[0], id]), "one\n");
    assert_eq!(b.ok(&["logs", "--until", times[1], id]), "one\ntwo\n");

    // restart: the same container runs again, with a new start time and pid.
    let started = |b: &Berth| {
        b.ok(&[
            "container",
            "inspect",
            "-f",
            "{{.State.StartedAt}} {{.State.Pid}}",
            id,
        ])
    };
    let before = started(&b);
    b.ok(&["restart", "-t", "1", id]);
    assert_ne!(started(&b), before);
    assert_eq!(
        b.ok(&["container", "inspect", "-f", "{{.State.Status}}", id]),
        "running\n"
    );

    // ps -n 1 and -l show the newest container only.
    let newest = b.ok(&["create", "-i", "--name", "newest", "bb:1", "cat"]);
    assert_eq!(b.ok(&["ps", "-q", "--no-trunc", "-n", "1"]), newest);
    assert_eq!(b.ok(&["ps", "-q", "--no-trunc", "-l"]), newest);

    // start -a -i: stdin reaches the created container, its output and status come back.
    let mut child = b
        .cmd(&["start", "-a", "-i", "newest"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"through stdin\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through stdin\n");
    assert_eq!(out.status.code(), Some(0));

    b.ok(&["rm", "-f", id, "other", "newest"]);
    b.assert_nothing_left();
}
