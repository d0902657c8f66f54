//! The engine is runtime-agnostic: the same containers under runc (this machine's hybrid
//! cgroups) and under crun (which refuses hybrid cgroups, so in a private mount namespace
//! whose /sys/fs/cgroup is a bare cgroup2 mount, as on a cgroup2-only host).

mod support;

use std::process::Command;
use support::Berth;

/// `--runtime NAME` resolves through PATH; a detached container gets its memory limit in
/// the v1 hierarchy, stops, and leaves nothing in runc's state directory.
#[test]
fn runc_runs_foreground_and_detached_containers() {
    let b = Berth::with_busybox();
    let (rc, out, err) = b.code(&[
        "run",
        "--rm",
        "--runtime",
        "runc",
        "bb:1",
        "sh",
        "-c",
        "echo hi from runc; echo err >&2; exit 3",
    ]);
    assert_eq!(
        (rc, out.as_str(), err.as_str()),
        (3, "hi from runc\n", "err\n")
    );

    let id = b.ok(&[
        "run",
        "-d",
        "--runtime",
        "runc",
        "--memory",
        "64m",
        "bb:1",
        "sh",
        "-c",
        "trap 'exit 42' TERM; echo started; sleep 100 & wait",
    ]);
    let id = id.trim();
    let limit = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory/berth/{id}/memory.limit_in_bytes"
    ))
    .unwrap();
    assert_eq!(limit.trim(), "67108864");
    let state = b.ok(&[
        "container",
        "inspect",
        "-f",
        "{{.State.Status}} {{.HostConfig.Runtime}}",
        id,
    ]);
    assert_eq!(state.trim(), "running runc");
    // runc's own view agrees, under the runtime root the engine gave it.
    let runc_root = b.tmp.path().join("run/runtimes/runc");
    let st = Command::new("runc")
        .arg("--root")
        .arg(&runc_root)
        .args(["state", id])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&st.stdout).contains("\"status\": \"running\""));
    let t0 = std::time::Instant::now();
    b.ok(&["stop", "-t", "5", id]);
    // The shell's trap ends it on SIGTERM: no wait for the SIGKILL.
    assert!(t0.elapsed() < std::time::Duration::from_secs(4));
    assert_eq!(b.ok(&["logs", id]), "started\n");
    let status = b.ok(&["container", "inspect", "-f", "{{.State.ExitCode}}", id]);
    assert_eq!(status.trim(), "42");
    b.ok(&["rm", id]);
    assert!(!std::path::Path::new(&format!("/sys/fs/cgroup/memory/berth/{id}")).exists());
    let left: Vec<_> = std::fs::read_dir(&runc_root)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "runc state left: {left:?}");
    b.assert_nothing_left();
}

/// An unknown runtime is Docker's one-line engine error, exit 125, nothing created.
#[test]
fn unknown_runtime_is_refused() {
    let b = Berth::with_busybox();
    let (rc, _, err) = b.code(&["run", "--rm", "--runtime", "no-such-rt", "bb:1", "true"]);
    assert_eq!(rc, 125);
    assert_eq!(err, "Error: unknown or invalid runtime name: no-such-rt\n");
    b.assert_nothing_left();
}

/// crun on a cgroup2-only layout. crun 1.8 raises RLIMIT_MEMLOCK to infinity before it
/// loads the eBPF device filter, which this machine refuses (no CAP_SYS_RESOURCE, a hard
/// limit of 8 MiB), so the device-filtered case can only pass where the limit allows it;
/// `--privileged` (all devices allowed, no filter) runs everywhere.
#[test]
fn crun_runs_containers_on_a_cgroup2_only_layout() {
    let b = Berth::with_busybox();
    let berth = env!("CARGO_BIN_EXE_berth");
    let root = b.root();
    let run = b.tmp.path().join("run");
    let script = format!(
        r#"
set -u
umount -R /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup || exit 99
berth() {{ {berth} --root {root} --runroot {run} "$@"; }}
berth run --rm --privileged --runtime crun bb:1 sh -c 'echo hi from crun; exit 4'
echo "fg: $?"
id=$(berth run -d --privileged --runtime crun bb:1 sh -c "trap 'exit 42' TERM; sleep 100 & wait")
# the shell and its sleep
for i in $(seq 200); do n=$(wc -l < /sys/fs/cgroup/berth/$id/cgroup.procs); [ "$n" = 2 ] && break; sleep 0.02; done
echo "cgroup: $n"
echo "inside: $(berth logs $id; crun --root {run}/runtimes/crun state $id | grep -o '"status": "[a-z]*"')"
berth stop -t 5 $id >/dev/null
echo "stopped: $(berth container inspect -f '{{{{.State.Status}}}} {{{{.State.ExitCode}}}}' $id)"
berth rm $id >/dev/null
test -e /sys/fs/cgroup/berth/$id || echo "cgroup: removed"
out=$(berth run --rm --runtime crun bb:1 echo filtered 2>&1)
case "$out" in
  filtered) echo filtered ;;
  *"setrlimit (RLIM_MEMLOCK): Operation not permitted") echo "refused: memlock $(ulimit -Hl)" ;;
  *) echo "other: $out" ;;
esac
"#,
        root = root.display(),
        run = run.display(),
    );
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    let got: Vec<&str> = out.lines().collect();
    // Refused only where the hard limit is finite, and then as one engine error.
    let last = match got.last() {
        Some(l) if l.starts_with("refused: memlock ") && !l.ends_with("unlimited") => *l,
        _ => "filtered",
    };
    assert_eq!(
        got,
        [
            "hi from crun",
            "fg: 4",
            "cgroup: 2",
            "inside: \"status\": \"running\"",
            "stopped: exited 42",
            "cgroup: removed",
            last,
        ],
        "{err}"
    );
    b.assert_nothing_left();
}
