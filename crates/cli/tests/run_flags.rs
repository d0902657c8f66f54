//! Every `berth run`/`create` flag of issue #4 on real containers: each test checks what
//! the flag does inside the container (its environment, files, credentials, /proc) or on
//! the host (its cgroup, its log files, its state), not just that the command succeeded.
//!
//! Flags with a test elsewhere: `-i` and `--rm` (containers.rs), `-it` under a PTY
//! (terminal.rs), `--restart on-failure:N`, `--memory` OOM, `--pids-limit`, `--init`,
//! `--health-*` (containers.rs), `--runtime` (runtimes.rs). Volumes and `-p` are not
//! here: they belong to the volume and network work.
//!
//! No test sends traffic off this machine: images are local, and the pull tests name a
//! registry on 127.0.0.1 where nothing listens.

mod support;

use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::{wait_for, Berth};

/// `{{…}}` of `berth container inspect` on `name`, trimmed.
fn inspect(b: &Berth, name: &str, format: &str) -> String {
    b.ok(&["container", "inspect", "-f", format, name])
        .trim()
        .to_string()
}

/// `berth run --rm FLAGS… IMAGE sh -c SCRIPT`: (exit code, stdout, stderr).
fn sh(b: &Berth, flags: &[&str], image: &str, script: &str) -> (i32, String, String) {
    let mut args = vec!["run", "--rm"];
    args.extend(flags);
    args.extend([image, "sh", "-c", script]);
    b.code(&args)
}

/// As [`sh`], which must succeed; its stdout.
fn sh_ok(b: &Berth, flags: &[&str], script: &str) -> String {
    let (rc, out, err) = sh(b, flags, "bb:1", script);
    assert_eq!(rc, 0, "{flags:?} {script}: {out}{err}");
    out
}

/// A run that berth must refuse before anything runs: exit 125, one line naming the
/// problem, no container left.
fn refused(b: &Berth, args: &[&str], want: &str) {
    let (rc, out, err) = b.code(args);
    assert_eq!(rc, 125, "{args:?}: {out}{err}");
    assert!(err.contains(want), "{args:?}: want {want:?} in {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    b.assert_nothing_left();
}

/// Another image from the busybox tree of `bb:1`, with `files` (path, contents) added
/// and Dockerfile `changes` applied.
fn image(b: &Berth, tag: &str, files: &[(&str, &str)], changes: &[&str]) {
    let dir = b.tmp.path().join("bbfs");
    for (path, text) in files {
        let p = dir.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let tar = b.tar_of(&dir, &format!("{}.tar", tag.replace([':', '/'], "-")));
    let mut args = vec!["import"];
    for c in changes {
        args.extend(["-c", c]);
    }
    args.extend([tar.to_str().unwrap(), tag]);
    b.ok(&args);
}

/// A file of the container's cgroup in a v1 controller's hierarchy, read on the host.
fn cgroup(controller: &str, id: &str, file: &str) -> String {
    let path = format!("/sys/fs/cgroup/{controller}/berth/{id}/{file}");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim()
        .to_string()
}

/// A detached `sleep` with `flags`; its full ID.
fn sleeper(b: &Berth, flags: &[&str]) -> String {
    let mut args = vec!["run", "-d"];
    args.extend(flags);
    args.extend(["bb:1", "sleep", "100"]);
    b.ok(&args).trim().to_string()
}

/// The value of `Field:` in the text of a /proc/PID/status.
fn status_field<'a>(status: &'a str, field: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {status}"))
        .trim()
}

// ---------------------------------------------------------------------------------
// Process: environment, working directory, user, entrypoint

#[test]
fn env_and_env_file_reach_the_process_in_dockers_order() {
    let b = Berth::with_busybox();
    image(
        &b,
        "envimg:1",
        &[],
        &["CMD [\"sh\"]", "ENV FROM_IMAGE=image", "ENV KEPT=image"],
    );
    let file = b.tmp.path().join("env.list");
    std::fs::write(
        &file,
        "# a comment\n\nA=from-file\nFROM_IMAGE=from-file\nFROM_CALLER\nQUOTED=\"q\" \n",
    )
    .unwrap();
    let o = b
        .cmd(&[
            "run",
            "--rm",
            "--env-file",
            file.to_str().unwrap(),
            "-e",
            "A=from-flag",
            "-e",
            "CALLER_TOO",
            "-e",
            "BERTH_TEST_UNSET_VARIABLE",
            "-e",
            "EMPTY=",
            "envimg:1",
            "env",
        ])
        .env("FROM_CALLER", "caller 1")
        .env("CALLER_TOO", "caller 2")
        .env_remove("BERTH_TEST_UNSET_VARIABLE")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    let mut env: Vec<&str> = out.lines().collect();
    env.sort_unstable();
    for want in [
        "A=from-flag",
        "FROM_IMAGE=from-file",
        "KEPT=image",
        "FROM_CALLER=caller 1",
        "CALLER_TOO=caller 2",
        "QUOTED=\"q\" ",
        "EMPTY=",
    ] {
        assert!(env.contains(&want), "{want:?} in {env:?}");
    }
    // `-e` wins over the file, and a variable is set once.
    assert_eq!(env.iter().filter(|e| e.starts_with("A=")).count(), 1);
    assert!(!out.contains("BERTH_TEST_UNSET_VARIABLE"), "{out}");
    b.assert_nothing_left();
}

#[test]
fn workdir_is_the_cwd_and_is_made_when_missing() {
    let b = Berth::with_busybox();
    assert_eq!(sh_ok(&b, &["-w", "/tmp"], "pwd"), "/tmp\n");
    // Docker creates a working directory the image lacks.
    assert_eq!(
        sh_ok(&b, &["-w", "/new/dir"], "pwd; ls -d /new/dir"),
        "/new/dir\n/new/dir\n"
    );
    image(&b, "wd:1", &[], &["CMD [\"pwd\"]", "WORKDIR /srv/app"]);
    assert_eq!(b.ok(&["run", "--rm", "wd:1"]), "/srv/app\n");
    assert_eq!(b.ok(&["run", "--rm", "-w", "/etc", "wd:1"]), "/etc\n");
    // Refused at create, as the daemon does.
    refused(
        &b,
        &["create", "-w", "relative", "bb:1"],
        "the working directory 'relative' is invalid, it needs to be an absolute path",
    );
}

#[test]
fn user_by_id_by_id_and_group_and_by_name() {
    let b = Berth::with_busybox();
    image(
        &b,
        "users:1",
        &[
            (
                "etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n",
            ),
            (
                "etc/group",
                "root:x:0:\napp:x:1001:\nwheel:x:10:app\nstaff:x:50:\n",
            ),
        ],
        &["CMD [\"sh\"]"],
    );
    let ids = |flags: &[&str]| {
        let (rc, out, err) = sh(
            &b,
            flags,
            "users:1",
            "echo $(id -u) $(id -g) $(id -G); touch /dev/shm/f; stat -c '%u:%g' /dev/shm/f; grep CapEff /proc/self/status",
        );
        assert_eq!(rc, 0, "{flags:?}: {out}{err}");
        out
    };
    // A uid with no passwd entry gets gid 0, as with runc.
    let out = ids(&["-u", "1234"]);
    assert!(out.starts_with("1234 0 0\n1234:0\n"), "{out}");
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    let out = ids(&["-u", "1234:5678"]);
    assert!(out.starts_with("1234 5678 5678\n1234:5678\n"), "{out}");
    // A name: its uid, primary group and supplementary groups from /etc/group.
    let out = ids(&["-u", "app"]);
    assert!(out.starts_with("1000 1001 1001 10\n1000:1001\n"), "{out}");
    let out = ids(&["-u", "app:staff"]);
    // An explicit group leaves out the supplementary ones (runc's rule).
    assert!(out.starts_with("1000 50 50\n1000:50\n"), "{out}");
    let out = ids(&["-u", "root"]);
    assert!(out.starts_with("0 0 0\n0:0\n"), "{out}");
    assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");

    let (rc, _, err) = sh(&b, &["-u", "nosuch"], "users:1", "id");
    assert_eq!(rc, 125, "{err}");
    assert!(
        err.contains("unable to find user nosuch: no matching entries in passwd file"),
        "{err}"
    );
    b.assert_nothing_left();
}

#[test]
fn entrypoint_replaces_the_images_and_drops_its_cmd() {
    let b = Berth::with_busybox();
    image(
        &b,
        "ep:1",
        &[],
        &["ENTRYPOINT [\"echo\", \"image-ep\"]", "CMD [\"image-cmd\"]"],
    );
    assert_eq!(b.ok(&["run", "--rm", "ep:1"]), "image-ep image-cmd\n");
    assert_eq!(b.ok(&["run", "--rm", "ep:1", "arg"]), "image-ep arg\n");
    // --entrypoint drops the image's CMD too.
    assert_eq!(
        b.ok(&["run", "--rm", "--entrypoint", "/bin/echo", "ep:1"]),
        "\n"
    );
    assert_eq!(
        b.ok(&["run", "--rm", "--entrypoint", "/bin/echo", "ep:1", "a", "b"]),
        "a b\n"
    );
    // `--entrypoint ''` clears it: the command runs as it is.
    assert_eq!(
        b.ok(&["run", "--rm", "--entrypoint", "", "ep:1", "echo", "plain"]),
        "plain\n"
    );
    b.ok(&[
        "create",
        "--name",
        "epc",
        "--entrypoint",
        "/bin/echo",
        "ep:1",
        "x",
    ]);
    assert_eq!(
        inspect(
            &b,
            "epc",
            "{{.Path}} {{json .Args}} {{json .Config.Entrypoint}} {{json .Config.Cmd}}"
        ),
        "/bin/echo [\"x\"] [\"/bin/echo\"] [\"x\"]"
    );
    b.ok(&["rm", "epc"]);
    // Nothing left to run: refused at create, as the daemon does.
    refused(
        &b,
        &["create", "--entrypoint", "", "ep:1"],
        "No command specified",
    );
    refused(
        &b,
        &["run", "--rm", "--entrypoint", "", "ep:1"],
        "No command specified",
    );
}

// ---------------------------------------------------------------------------------
// Identity: host name, labels, names, cidfile

#[test]
fn hostname_is_the_uts_name_the_file_and_the_variable() {
    let b = Berth::with_busybox();
    let script = "hostname; cat /etc/hostname; echo $HOSTNAME";
    assert_eq!(sh_ok(&b, &["-h", "box"], script), "box\nbox\nbox\n");
    let out = b.ok(&["run", "--name", "hst", "bb:1", "sh", "-c", script]);
    let id = inspect(&b, "hst", "{{.Id}}");
    assert_eq!(out, format!("{0}\n{0}\n{0}\n", &id[..12]));
    assert_eq!(inspect(&b, "hst", "{{.Config.Hostname}}"), &id[..12]);
    b.ok(&["rm", "hst"]);

    // The host's network, and with it the host's name; unless -h names another (the
    // container keeps a UTS namespace of its own, as Docker's does).
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = host.trim();
    assert_eq!(
        sh_ok(&b, &["--network", "host"], script),
        format!("{host}\n{host}\n{host}\n")
    );
    assert_eq!(
        sh_ok(&b, &["--network", "host", "--hostname", "other"], script),
        "other\nother\nother\n"
    );
    b.ok(&["create", "--name", "hostnet", "--network", "host", "bb:1"]);
    assert_eq!(inspect(&b, "hostnet", "{{.Config.Hostname}}"), host);
    b.ok(&["rm", "hostnet"]);
    let now = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(now.trim(), host, "the host's name is untouched");
    b.assert_nothing_left();
}

#[test]
fn labels_from_flags_files_and_image_in_inspect_and_ps_filters() {
    let b = Berth::with_busybox();
    image(
        &b,
        "labelled:1",
        &[],
        &["CMD [\"sh\"]", "LABEL from.image=yes tier=image"],
    );
    let file = b.tmp.path().join("labels");
    std::fs::write(&file, "# comment\ntier=file\nowner=file\nflag-only\n").unwrap();
    b.ok(&[
        "create",
        "--name",
        "lab",
        "--label-file",
        file.to_str().unwrap(),
        "-l",
        "owner=flag",
        "--label",
        "empty",
        "labelled:1",
    ]);
    b.ok(&["create", "--name", "other", "-l", "owner=else", "bb:1"]);
    let labels: serde_json::Value =
        serde_json::from_str(&inspect(&b, "lab", "{{json .Config.Labels}}")).unwrap();
    assert_eq!(
        labels,
        serde_json::json!({
            "empty": "", "flag-only": "", "from.image": "yes", "owner": "flag", "tier": "file"
        })
    );
    let filter = |f: &str| b.ok(&["ps", "-a", "--format", "{{.Names}}", "--filter", f]);
    assert_eq!(filter("label=owner=flag"), "lab\n");
    assert_eq!(filter("label=owner=file"), "");
    assert_eq!(filter("label=from.image"), "lab\n");
    assert_eq!(filter("label=empty"), "lab\n");
    let mut both: Vec<String> = filter("label=owner").lines().map(String::from).collect();
    both.sort();
    assert_eq!(both, ["lab", "other"]);
    assert_eq!(
        b.ok(&[
            "ps",
            "-a",
            "--format",
            "{{.Labels}}",
            "--filter",
            "name=other"
        ]),
        "owner=else\n"
    );
    b.ok(&["rm", "lab", "other"]);
    b.assert_nothing_left();
}

#[test]
fn names_cidfile_and_rm_with_detach() {
    let b = Berth::with_busybox();
    refused(
        &b,
        &["run", "--name", "bad name", "bb:1", "true"],
        "Invalid container name (bad name), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
    );
    let cid = b.tmp.path().join("cid");
    let id = b.ok(&[
        "run",
        "-d",
        "--name",
        "first",
        "--cidfile",
        cid.to_str().unwrap(),
        "bb:1",
        "sleep",
        "100",
    ]);
    assert_eq!(std::fs::read_to_string(&cid).unwrap(), id.trim());
    let (rc, _, err) = b.code(&["run", "--name", "first", "bb:1", "true"]);
    assert_eq!(rc, 125, "{err}");
    assert!(
        err.contains(&format!(
            "The container name \"/first\" is already in use by container \"{}\"",
            id.trim()
        )),
        "{err}"
    );
    // A cidfile that exists is refused and no container is made.
    let (rc, _, err) = b.code(&["run", "--cidfile", cid.to_str().unwrap(), "bb:1", "true"]);
    assert_eq!(rc, 125, "{err}");
    assert!(err.contains("container ID file found"), "{err}");
    assert_eq!(b.ok(&["ps", "-aq"]).lines().count(), 1);
    b.ok(&["rm", "-f", "first"]);

    // -d --rm: gone once it exits by itself, and once stopped.
    b.ok(&[
        "run", "-d", "--rm", "--name", "brief", "bb:1", "sleep", "0.3",
    ]);
    wait_for("the --rm container to go", || {
        b.ok(&["ps", "-aq"]).is_empty()
    });
    b.ok(&[
        "run", "-d", "--rm", "--name", "stopped", "bb:1", "sleep", "100",
    ]);
    b.ok(&["stop", "-t", "0", "stopped"]);
    wait_for("the stopped --rm container to go", || {
        b.ok(&["ps", "-aq"]).is_empty()
    });
    b.assert_nothing_left();
}

// ---------------------------------------------------------------------------------
// Filesystem: binds, tmpfs, read-only root

#[test]
fn bind_mounts_rw_ro_and_readonly_mounts() {
    let b = Berth::with_busybox();
    let host = b.tmp.path().join("shared");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("in"), "from the host\n").unwrap();
    let h = host.to_str().unwrap();

    let ro = format!("{h}:/ro:ro");
    let rw = format!("{h}:/rw");
    let out = sh_ok(
        &b,
        &["-v", &ro, "-v", &rw],
        "cat /ro/in; echo x > /ro/new 2>/dev/null || echo ro-refused; echo from-container > /rw/out; cat /ro/out",
    );
    assert_eq!(out, "from the host\nro-refused\nfrom-container\n");
    assert_eq!(
        std::fs::read_to_string(host.join("out")).unwrap(),
        "from-container\n"
    );
    assert!(!host.join("new").exists());

    let mount = format!("type=bind,source={h},target=/m,readonly");
    let (rc, out, err) = sh(
        &b,
        &["--mount", &mount],
        "bb:1",
        "cat /m/in; grep ' /m ' /proc/mounts; touch /m/x",
    );
    assert_ne!(rc, 0, "{out}");
    assert!(out.starts_with("from the host\n"), "{out}");
    let line = out.lines().nth(1).unwrap_or_default();
    assert!(line.split(' ').nth(3).unwrap().starts_with("ro,"), "{line}");
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(!host.join("x").exists());

    // `-v` makes a missing host directory, as Docker does (`--mount` refuses it:
    // containers.rs).
    let missing = b.tmp.path().join("made/by/berth");
    let spec = format!("{}:/made", missing.display());
    assert_eq!(
        sh_ok(&b, &["-v", &spec], "echo hi > /made/f; echo ok"),
        "ok\n"
    );
    assert_eq!(std::fs::read_to_string(missing.join("f")).unwrap(), "hi\n");
    b.assert_nothing_left();
}

#[test]
fn tmpfs_mounts_have_their_size_mode_and_options() {
    let b = Berth::with_busybox();
    let script = "grep ' /t ' /proc/mounts; df -k /t | tail -1 | awk '{print $2}'; stat -c %a /t; \
                  head -c 300000 /dev/zero > /t/a && echo fits; \
                  head -c 2000000 /dev/zero > /t/b 2>/dev/null || echo full";
    let out = sh_ok(
        &b,
        &[
            "--mount",
            "type=tmpfs,destination=/t,tmpfs-size=1m,tmpfs-mode=1770",
        ],
        script,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("tmpfs /t tmpfs rw,"), "{out}");
    assert!(lines[0].contains("nosuid,nodev,noexec"), "{out}");
    assert_eq!(&lines[1..], ["1024", "1770", "fits", "full"], "{out}");

    let out = sh_ok(&b, &["--tmpfs", "/t:size=512k,exec"], script);
    let lines: Vec<&str> = out.lines().collect();
    assert!(!lines[0].contains("noexec"), "exec given: {out}");
    // Docker's default mode for a tmpfs is 1777.
    assert_eq!(&lines[1..], ["512", "1777", "fits", "full"], "{out}");
    b.assert_nothing_left();
}

#[test]
fn read_only_root_refuses_writes_but_tmpfs_takes_them() {
    let b = Berth::with_busybox();
    let script = "touch /new 2>/dev/null || echo root-ro; \
                  echo x >> /etc/hosts 2>/dev/null || echo hosts-ro; \
                  echo x > /tmp/f 2>/dev/null && echo tmp-ok; echo x > /dev/shm/f && echo shm-ok";
    assert_eq!(
        sh_ok(&b, &["--read-only"], script),
        "root-ro\nhosts-ro\nshm-ok\n"
    );
    assert_eq!(
        sh_ok(&b, &["--read-only", "--tmpfs", "/tmp"], script),
        "root-ro\nhosts-ro\ntmp-ok\nshm-ok\n"
    );
    // Without the flag the same writes land.
    assert_eq!(sh_ok(&b, &[], script), "tmp-ok\nshm-ok\n");
    assert_eq!(
        b.ok(&["create", "--name", "ro", "--read-only", "bb:1"])
            .len(),
        65
    );
    assert_eq!(inspect(&b, "ro", "{{.HostConfig.ReadonlyRootfs}}"), "true");
    b.ok(&["rm", "ro"]);
    b.assert_nothing_left();
}

// ---------------------------------------------------------------------------------
// Resources: cgroups and rlimits

#[test]
fn memory_and_swap_limits_land_in_the_memory_cgroup() {
    let b = Berth::with_busybox();
    let only = sleeper(&b, &["-m", "64m"]);
    let swap = sleeper(&b, &["--memory", "64m", "--memory-swap", "100m"]);
    let unlimited = sleeper(&b, &["-m", "64m", "--memory-swap", "-1"]);
    let limit = |id: &str| cgroup("memory", id, "memory.limit_in_bytes");
    let memsw = |id: &str| cgroup("memory", id, "memory.memsw.limit_in_bytes");
    // Docker: -m alone allows as much swap again.
    assert_eq!(
        (limit(&only), memsw(&only)),
        ("67108864".into(), "134217728".into())
    );
    assert_eq!(
        (limit(&swap), memsw(&swap)),
        ("67108864".into(), "104857600".into())
    );
    assert_eq!(limit(&unlimited), "67108864");
    assert_eq!(memsw(&unlimited), cgroup_unlimited());
    assert_eq!(
        inspect(
            &b,
            &swap,
            "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}}"
        ),
        "67108864 104857600"
    );
    b.ok(&["rm", "-f", &only, &swap, &unlimited]);

    refused(
        &b,
        &["run", "--rm", "--memory-swap", "1g", "bb:1", "true"],
        "You should always set the Memory limit when using Memoryswap limit, see usage",
    );
    refused(
        &b,
        &[
            "run",
            "--rm",
            "-m",
            "64m",
            "--memory-swap",
            "32m",
            "bb:1",
            "true",
        ],
        "Minimum memoryswap limit should be larger than memory limit, see usage",
    );
    refused(
        &b,
        &["run", "--rm", "-m", "1m", "bb:1", "true"],
        "Minimum memory limit allowed is 6MB",
    );
}

/// What a v1 memory cgroup reads as "no limit" (PAGE_COUNTER_MAX pages), from the
/// root of the hierarchy.
fn cgroup_unlimited() -> String {
    std::fs::read_to_string("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn cpu_flags_land_in_the_cpu_and_cpuset_cgroups() {
    let b = Berth::with_busybox();
    let quota = sleeper(&b, &["--cpus", "0.5", "--cpu-shares", "512"]);
    assert_eq!(cgroup("cpu", &quota, "cpu.cfs_period_us"), "100000");
    assert_eq!(cgroup("cpu", &quota, "cpu.cfs_quota_us"), "50000");
    assert_eq!(cgroup("cpu", &quota, "cpu.shares"), "512");
    assert_eq!(
        inspect(
            &b,
            &quota,
            "{{.HostConfig.NanoCpus}} {{.HostConfig.CpuShares}}"
        ),
        "500000000 512"
    );
    let pinned = sleeper(&b, &["--cpuset-cpus", "0"]);
    assert_eq!(cgroup("cpuset", &pinned, "cpuset.cpus"), "0");
    // A container without the flags has no quota.
    let free = sleeper(&b, &[]);
    assert_eq!(cgroup("cpu", &free, "cpu.cfs_quota_us"), "-1");
    assert_eq!(cgroup("cpu", &free, "cpu.shares"), "1024");
    b.ok(&["rm", "-f", &quota, &pinned, &free]);
    // The process sees its CPU set.
    assert_eq!(
        sh_ok(
            &b,
            &["--cpuset-cpus", "0"],
            "grep Cpus_allowed_list /proc/self/status"
        ),
        "Cpus_allowed_list:\t0\n"
    );

    let cpus = std::thread::available_parallelism().unwrap().get();
    let too_many = (cpus + 1).to_string();
    refused(
        &b,
        &["run", "--rm", "--cpus", &too_many, "bb:1", "true"],
        &format!(
            "Range of CPUs is from 0.01 to {cpus}.00, as there are only {cpus} CPUs available"
        ),
    );
    let absent = (cpus + 5).to_string();
    refused(
        &b,
        &["create", "--cpuset-cpus", &absent, "bb:1"],
        &format!("Requested CPUs are not available - requested {absent}, available: "),
    );
}

#[test]
fn ulimits_lower_the_limits_and_raising_the_hard_one_is_a_clear_error() {
    let b = Berth::with_busybox();
    assert_eq!(
        sh_ok(
            &b,
            &["--ulimit", "nofile=100:200", "--ulimit", "nproc=500"],
            "ulimit -n; ulimit -Hn; ulimit -u; ulimit -Hu"
        ),
        "100\n200\n500\n500\n"
    );
    // The container inherits our limits; above our hard limit needs CAP_SYS_RESOURCE,
    // which this machine does not grant.
    let mut hard = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we pass.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut hard) };
    assert_eq!(r, 0);
    let has_sys_resource = {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let eff = u64::from_str_radix(status_field(&status, "CapEff"), 16).unwrap();
        eff & (1 << 24) != 0 // CAP_SYS_RESOURCE
    };
    if hard.rlim_max == libc::RLIM_INFINITY || has_sys_resource {
        eprintln!("skipping the raise: this process may raise its limits");
    } else {
        let above = format!("nofile={0}:{0}", hard.rlim_max + 1);
        let (rc, out, err) = sh(&b, &["--ulimit", &above], "bb:1", "ulimit -n");
        assert_eq!(rc, 125, "{out}{err}");
        assert!(err.contains("RLIMIT_NOFILE"), "{err}");
        assert!(err.contains("CAP_SYS_RESOURCE"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    b.assert_nothing_left();
}

// ---------------------------------------------------------------------------------
// Security: capabilities, privileged, no-new-privileges, seccomp, /proc, devices

/// Docker's default capabilities as a mask (CapEff of `docker run busybox`).
const DEFAULT_CAPS: u64 = 0xa80425fb;

fn caps(b: &Berth, flags: &[&str]) -> u64 {
    let out = sh_ok(b, flags, "cat /proc/self/status");
    u64::from_str_radix(status_field(&out, "CapEff"), 16).unwrap()
}

#[test]
fn cap_add_and_cap_drop_change_the_effective_set() {
    let b = Berth::with_busybox();
    const CHOWN: u64 = 1 << 0;
    const NET_ADMIN: u64 = 1 << 12;
    const NET_RAW: u64 = 1 << 13;
    assert_eq!(caps(&b, &[]), DEFAULT_CAPS);
    assert_eq!(
        caps(&b, &["--cap-add", "NET_ADMIN"]),
        DEFAULT_CAPS | NET_ADMIN
    );
    assert_eq!(
        caps(&b, &["--cap-drop", "net_raw"]),
        DEFAULT_CAPS & !NET_RAW
    );
    assert_eq!(
        caps(&b, &["--cap-drop", "ALL", "--cap-add", "CAP_CHOWN"]),
        CHOWN
    );
    // The kernel agrees: without CAP_CHOWN, chown fails.
    let script = "touch /tmp/f; chown 1:1 /tmp/f && echo chowned";
    assert_eq!(sh_ok(&b, &[], script), "chowned\n");
    let (rc, _, err) = sh(&b, &["--cap-drop", "CHOWN"], "bb:1", script);
    assert_ne!(rc, 0);
    assert!(err.contains("Operation not permitted"), "{err}");
    b.assert_nothing_left();
}

#[test]
fn privileged_gets_every_capability_devices_and_no_confinement() {
    let b = Berth::with_busybox();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let ours = u64::from_str_radix(status_field(&status, "CapBnd"), 16).unwrap();
    let script = "cat /proc/self/status; echo devices=$(ls /dev | wc -l); \
                  grep ' /sys ' /proc/mounts; wc -c < /proc/timer_list; \
                  echo 0 > /proc/sys/kernel/ns_last_pid && echo proc-sys-rw";
    let out = sh_ok(&b, &["--privileged"], script);
    // Every capability we have ourselves (the host lacks some: CAP_SYS_RESOURCE here).
    let eff = u64::from_str_radix(status_field(&out, "CapEff"), 16).unwrap();
    assert_eq!(eff, ours & ((1 << 41) - 1), "{out}");
    assert_eq!(status_field(&out, "Seccomp"), "0", "{out}");
    let in_dev = |out: &str| -> usize {
        out.lines()
            .find_map(|l| l.strip_prefix("devices="))
            .unwrap()
            .parse()
            .unwrap()
    };
    // The host's device nodes (loop devices, ttys…), not just the default handful.
    let host_devices = std::fs::read_dir("/dev")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_type()
                .is_ok_and(|t| t.is_char_device() || t.is_block_device())
        })
        .count();
    assert!(in_dev(&out) >= host_devices.min(20), "{out}");
    assert!(out.contains("sysfs /sys sysfs rw,"), "{out}");
    let timer_list = out.lines().rev().nth(1).unwrap();
    assert_ne!(timer_list, "0", "/proc/timer_list unmasked: {out}");
    assert!(out.ends_with("proc-sys-rw\n"), "{out}");

    let out = sh_ok(&b, &[], "echo devices=$(ls /dev | wc -l)");
    assert!(in_dev(&out) < 20, "{out}");
    b.assert_nothing_left();
}

#[test]
fn default_confinement_masked_and_read_only_proc_and_seccomp() {
    let b = Berth::with_busybox();
    let script = "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; \
                  for f in /proc/kcore /proc/timer_list /proc/keys; do [ -e $f ] && echo $f=$(wc -c < $f); done; \
                  echo acpi=$(ls /proc/acpi | wc -l); \
                  echo x > /proc/sys/kernel/domainname || echo proc-sys-ro; \
                  grep -E ' /proc/(sys|bus|fs|irq) ' /proc/mounts | cut -d' ' -f2,4 | cut -d, -f1";
    let (rc, out, err) = sh(&b, &[], "bb:1", script);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.starts_with("NoNewPrivs:\t0\nSeccomp:\t2\n"), "{out}");
    let masked: Vec<&str> = out.lines().filter(|l| l.starts_with("/proc/")).collect();
    assert!(
        masked.iter().any(|l| l.starts_with("/proc/timer_list=")),
        "{out}"
    );
    for l in &masked {
        if l.contains('=') {
            assert!(l.ends_with("=0"), "masked: {l}");
        }
    }
    assert!(out.contains("acpi=0"), "{out}");
    assert!(out.contains("proc-sys-ro"), "{out}");
    assert!(err.contains("Read-only file system"), "{err}");
    for dir in ["sys", "bus", "fs", "irq"] {
        let want = format!("/proc/{dir} ro");
        if Path::new(&format!("/proc/{dir}")).exists() {
            assert!(out.contains(&want), "{want} in {out}");
        }
    }

    // `systempaths=unconfined` lifts the masks.
    let out = sh_ok(
        &b,
        &["--security-opt", "systempaths=unconfined"],
        "wc -c < /proc/timer_list; echo x > /proc/sys/kernel/domainname 2>/dev/null || echo ro",
    );
    assert_ne!(out.lines().next(), Some("0"), "{out}");
    b.assert_nothing_left();
}

/// Whether this kernel lets an unprivileged process make a user namespace (what
/// `unshare -U` needs once seccomp lets it through).
fn userns_allowed() -> bool {
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string());
    read("/proc/sys/kernel/unprivileged_userns_clone").map_or(true, |v| v != "0")
        && read("/proc/sys/user/max_user_namespaces").map_or(true, |v| v != "0")
}

#[test]
fn security_opts_seccomp_profiles_and_no_new_privileges() {
    let b = Berth::with_busybox();
    let nnp = |flags: &[&str]| {
        let out = sh_ok(&b, flags, "grep NoNewPrivs /proc/self/status");
        out.trim().to_string()
    };
    assert_eq!(nnp(&[]), "NoNewPrivs:\t0");
    assert_eq!(
        nnp(&["--security-opt", "no-new-privileges"]),
        "NoNewPrivs:\t1"
    );
    assert_eq!(
        nnp(&["--security-opt", "no-new-privileges=true"]),
        "NoNewPrivs:\t1"
    );

    // The default profile refuses unshare(2) to a container without CAP_SYS_ADMIN.
    let script = "grep Seccomp: /proc/self/status; unshare -U true && echo unshared";
    let (rc, out, err) = sh(&b, &[], "bb:1", script);
    assert_ne!(rc, 0, "{out}");
    assert_eq!(out, "Seccomp:\t2\n");
    assert!(err.contains("Operation not permitted"), "{err}");
    let out = sh_ok(
        &b,
        &["--security-opt", "seccomp=unconfined"],
        "grep Seccomp: /proc/self/status; unshare -U true && echo unshared || true",
    );
    assert!(out.starts_with("Seccomp:\t0\n"), "{out}");
    if userns_allowed() {
        assert!(out.contains("unshared"), "{out}");
    }

    // A profile of our own: mkdir(2) and mkdirat(2) fail with EPERM, the rest works.
    let profile = b.tmp.path().join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let (rc, out, err) = sh(
        &b,
        &["--security-opt", &opt],
        "bb:1",
        "touch /tmp/file && echo touched; mkdir /tmp/dir && echo made",
    );
    assert_ne!(rc, 0);
    assert_eq!(out, "touched\n");
    assert!(
        err.contains("can't create directory '/tmp/dir': Operation not permitted"),
        "{err}"
    );

    let missing = b.tmp.path().join("none.json");
    refused(
        &b,
        &[
            "run",
            "--rm",
            "--security-opt",
            &format!("seccomp={}", missing.display()),
            "bb:1",
            "true",
        ],
        "opening seccomp profile",
    );
}

#[test]
fn device_nodes_appear_with_their_permissions() {
    let b = Berth::with_busybox();
    let script = "stat -c '%F %t:%T' /dev/mynull; echo data > /dev/mynull && echo wrote; \
                  cat /dev/mynull | wc -c";
    let out = sh_ok(&b, &["--device", "/dev/null:/dev/mynull"], script);
    assert_eq!(out, "character special file 1:3\nwrote\n0\n");
    // The device cgroup allows what the permissions say. A node with no driver behind
    // it tells the two refusals apart: the cgroup's is EPERM, the kernel's ENXIO.
    let node = b.tmp.path().join("nodriver");
    let dev = libc::makedev(1, 42);
    let path = std::ffi::CString::new(node.to_str().unwrap()).unwrap();
    // SAFETY: mknod with a NUL-terminated path we own.
    let r = unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o666, dev) };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    let probe = "cat /dev/nodrv 2>&1; (echo x > /dev/nodrv) 2>&1; true";
    let map = |perms: &str| format!("{}:/dev/nodrv{perms}", node.display());
    let out = sh_ok(&b, &["--device", &map(":r")], probe);
    assert_eq!(
        out,
        "cat: can't open '/dev/nodrv': No such device or address\n\
         sh: can't create /dev/nodrv: Operation not permitted\n"
    );
    let out = sh_ok(&b, &["--device", &map("")], probe);
    assert_eq!(
        out,
        "cat: can't open '/dev/nodrv': No such device or address\n\
         sh: can't create /dev/nodrv: No such device or address\n"
    );
    // Without the flag there is no such node.
    let (rc, _, _) = sh(&b, &[], "bb:1", "test -e /dev/mynull");
    assert_eq!(rc, 1);
    refused(
        &b,
        &[
            "run",
            "--rm",
            "--device",
            "/dev/nonexistent",
            "bb:1",
            "true",
        ],
        "/dev/nonexistent",
    );
}

// ---------------------------------------------------------------------------------
// Lifecycle: restart policies, stop signal and timeout, signal proxy

#[test]
fn restart_always_and_unless_stopped_until_stopped() {
    let b = Berth::with_busybox();
    for policy in ["always", "unless-stopped"] {
        b.ok(&[
            "run",
            "-d",
            "--name",
            policy,
            "--restart",
            policy,
            "bb:1",
            "sh",
            "-c",
            // Short runs: most of the time is spent between two of them.
            "echo run",
        ]);
    }
    for policy in ["always", "unless-stopped"] {
        // Restarted after exit 0.
        wait_for("two restarts", || {
            inspect(&b, policy, "{{.RestartCount}}")
                .parse::<u32>()
                .unwrap()
                >= 2
        });
        assert_eq!(
            inspect(&b, policy, "{{.HostConfig.RestartPolicy.Name}}"),
            policy
        );
        wait_for("three runs logged", || {
            b.ok(&["logs", policy]).lines().count() >= 3
        });
        b.ok(&["stop", "-t", "1", policy]);
        // Exited when stop returns, not at the end of the back-off, and not restarting
        // because the policy decided on a restart just as the stop came.
        assert_eq!(inspect(&b, policy, "{{.State.Status}}"), "exited");
    }
    // Stopped for good: no further runs.
    let counts = |b: &Berth| {
        ["always", "unless-stopped"].map(|p| inspect(b, p, "{{.RestartCount}} {{.State.Status}}"))
    };
    let before = counts(&b);
    assert!(before.iter().all(|c| c.ends_with(" exited")), "{before:?}");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(counts(&b), before);
    b.ok(&["rm", "always", "unless-stopped"]);
    b.assert_nothing_left();
}

#[test]
fn stop_signal_and_stop_timeout() {
    let b = Berth::with_busybox();
    let id = b.ok(&[
        "run",
        "-d",
        "--stop-signal",
        "SIGUSR1",
        "bb:1",
        "sh",
        "-c",
        "trap 'echo got USR1; exit 3' USR1; trap 'echo got TERM; exit 4' TERM; echo ready; while :; do sleep 0.1; done",
    ]);
    let id = id.trim();
    wait_for("the trap", || b.ok(&["logs", id]) == "ready\n");
    assert_eq!(inspect(&b, id, "{{.Config.StopSignal}}"), "SIGUSR1");
    b.ok(&["stop", id]);
    assert_eq!(b.ok(&["logs", id]), "ready\ngot USR1\n");
    assert_eq!(inspect(&b, id, "{{.State.ExitCode}}"), "3");
    b.ok(&["rm", id]);

    // A process that ignores the stop signal gets SIGKILL after --stop-timeout seconds.
    let id = b.ok(&[
        "run",
        "-d",
        "--stop-timeout",
        "1",
        "bb:1",
        "sh",
        "-c",
        "trap '' TERM; echo ready; while :; do sleep 0.1; done",
    ]);
    let id = id.trim();
    wait_for("the trap", || b.ok(&["logs", id]) == "ready\n");
    let t0 = Instant::now();
    b.ok(&["stop", id]);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(inspect(&b, id, "{{.State.ExitCode}}"), "137");
    b.ok(&["rm", id]);
    b.assert_nothing_left();
}

/// A foreground `run` passes SIGTERM on to the container; with `--sig-proxy=false` the
/// CLI dies of it as any program would, and the container goes on.
#[test]
fn sig_proxy_forwards_signals_or_leaves_the_container_alone() {
    let b = Berth::with_busybox();
    let script = "trap 'echo got TERM; exit 5' TERM; echo ready; while :; do sleep 0.1; done";
    let attached = |name: &str, flags: &[&str]| {
        let mut args = vec!["run", "--name", name];
        args.extend(flags);
        args.extend(["bb:1", "sh", "-c", script]);
        let child = b
            .cmd(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for("ready", || {
            b.run(&["logs", name]).stdout.starts_with(b"ready\n")
        });
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        // Bounded: a CLI that ignores the signal must fail the test, not hang it.
        let mut child = child;
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let o = child.wait_with_output().unwrap();
                panic!("{name}: the CLI ignored SIGTERM: {o:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    };

    let o = attached("proxied", &[]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ready\ngot TERM\n");
    assert_eq!(o.status.code(), Some(5));

    let o = attached("unproxied", &["--sig-proxy=false"]);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(o.status.signal(), Some(libc::SIGTERM), "{o:?}");
    assert_eq!(inspect(&b, "unproxied", "{{.State.Status}}"), "running");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(b.ok(&["logs", "unproxied"]), "ready\n");
    b.ok(&["rm", "-f", "proxied", "unproxied"]);
    b.assert_nothing_left();
}

// ---------------------------------------------------------------------------------
// Network: none, host, /etc/hosts, /etc/resolv.conf

fn interfaces(dev: &str) -> Vec<String> {
    let mut names: Vec<String> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn network_none_has_only_loopback_and_host_sees_the_hosts() {
    let b = Berth::with_busybox();
    let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
    let ours = ours.to_str().unwrap();
    let script = "readlink /proc/self/ns/net; cat /proc/net/dev";
    let out = sh_ok(&b, &["--network", "none"], script);
    let (ns, dev) = out.split_once('\n').unwrap();
    assert_ne!(ns, ours);
    assert_eq!(interfaces(dev), ["lo"]);
    // The host's own namespace. Other tests add and remove interfaces meanwhile: the
    // container sees at least every one that was there throughout.
    let before = interfaces(&std::fs::read_to_string("/proc/net/dev").unwrap());
    let out = sh_ok(&b, &["--network", "host"], script);
    let after = interfaces(&std::fs::read_to_string("/proc/net/dev").unwrap());
    let (ns, dev) = out.split_once('\n').unwrap();
    assert_eq!(ns, ours);
    let seen = interfaces(dev);
    assert!(before.len() > 1, "{before:?}");
    for name in before.iter().filter(|n| after.contains(n)) {
        assert!(seen.contains(name), "{name} missing from {seen:?}");
    }
    b.ok(&["create", "--name", "net", "--network", "host", "bb:1"]);
    assert_eq!(inspect(&b, "net", "{{.HostConfig.NetworkMode}}"), "host");
    b.ok(&["rm", "net"]);
    b.assert_nothing_left();
}

#[test]
fn add_host_and_dns_write_the_containers_etc_files() {
    let b = Berth::with_busybox();
    let out = sh_ok(
        &b,
        &[
            "--network",
            "none",
            "--add-host",
            "db.example:1.2.3.4",
            "--add-host",
            "v6.example:fd00::1",
            "--dns",
            "1.1.1.1",
            "--dns",
            "9.9.9.9",
            "--dns-search",
            "corp.example",
            "--dns-option",
            "ndots:2",
        ],
        "cat /etc/hosts; echo ---; cat /etc/resolv.conf",
    );
    let (hosts, resolv) = out.split_once("---\n").unwrap();
    assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"), "{hosts}");
    assert!(
        hosts.ends_with("1.2.3.4\tdb.example\nfd00::1\tv6.example\n"),
        "{hosts}"
    );
    assert_eq!(
        resolv,
        "nameserver 1.1.1.1\nnameserver 9.9.9.9\nsearch corp.example\noptions ndots:2\n"
    );
    // With the host's network, the host's hosts file plus the extra names.
    let host_hosts = std::fs::read_to_string("/etc/hosts").unwrap();
    let out = sh_ok(
        &b,
        &["--network", "host", "--add-host", "extra.example:5.6.7.8"],
        "cat /etc/hosts",
    );
    assert_eq!(out, format!("{host_hosts}5.6.7.8\textra.example\n"));
    b.assert_nothing_left();
}

// ---------------------------------------------------------------------------------
// Logging

#[test]
fn log_opts_rotate_the_json_file_on_disk() {
    let b = Berth::with_busybox();
    let (rc, out, _) = b.code(&[
        "run",
        "--name",
        "chatty",
        "--log-opt",
        "max-size=1k",
        "--log-opt",
        "max-file=2",
        "bb:1",
        "sh",
        "-c",
        "i=0; while [ $i -lt 100 ]; do echo line $i; i=$((i+1)); done",
    ]);
    assert_eq!(rc, 0);
    assert_eq!(out.lines().count(), 100, "attached output is whole");
    let id = inspect(&b, "chatty", "{{.Id}}");
    let log = Path::new(&inspect(&b, "chatty", "{{.LogPath}}")).to_path_buf();
    let dir = log.parent().unwrap();
    let mut logs: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("-json.log"))
        .collect();
    logs.sort();
    assert_eq!(logs, [format!("{id}-json.log"), format!("{id}-json.log.1")]);
    for name in &logs {
        let size = std::fs::metadata(dir.join(name)).unwrap().len();
        assert!(size > 0 && size <= 1000, "{name}: {size} bytes");
    }
    // `logs` reads what is kept: the end, in order, not the beginning.
    let kept = b.ok(&["logs", "chatty"]);
    assert!(kept.ends_with("line 98\nline 99\n"), "{kept}");
    assert!(!kept.contains("line 0\n"), "{kept}");
    let n: Vec<u32> = kept
        .lines()
        .map(|l| l.trim_start_matches("line ").parse().unwrap())
        .collect();
    assert!(n.windows(2).all(|w| w[1] == w[0] + 1), "{kept}");
    b.ok(&["rm", "chatty"]);
    b.assert_nothing_left();
}

#[test]
fn log_driver_none_keeps_no_log_and_logs_is_refused() {
    let b = Berth::with_busybox();
    let (rc, out, _) = b.code(&[
        "run",
        "--name",
        "quiet",
        "--log-driver",
        "none",
        "bb:1",
        "echo",
        "still attached",
    ]);
    assert_eq!((rc, out.as_str()), (0, "still attached\n"));
    let log = inspect(&b, "quiet", "{{.LogPath}}");
    assert!(!Path::new(&log).exists(), "{log}");
    assert_eq!(
        inspect(&b, "quiet", "{{.HostConfig.LogConfig.Type}}"),
        "none"
    );
    let err = b.fails(&["logs", "quiet"]);
    assert_eq!(
        err,
        "Error: configured logging driver does not support reading\n"
    );
    b.ok(&["rm", "quiet"]);
    b.assert_nothing_left();
}

// ---------------------------------------------------------------------------------
// Image selection: --platform, --pull

#[test]
fn platform_of_the_host_runs_and_a_foreign_one_is_refused() {
    let b = Berth::with_busybox();
    let host = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let foreign = if host == "s390x" { "ppc64le" } else { "s390x" };
    assert_eq!(
        b.ok(&[
            "run",
            "--rm",
            "--platform",
            &format!("linux/{host}"),
            "bb:1",
            "echo",
            "ran"
        ]),
        "ran\n"
    );
    refused(
        &b,
        &[
            "run",
            "--rm",
            "--pull",
            "never",
            "--platform",
            &format!("linux/{foreign}"),
            "bb:1",
            "echo",
            "ran",
        ],
        &format!(
            "image with reference bb:1 was found but does not match the specified platform: wanted linux/{foreign}, actual: linux/{host}"
        ),
    );
    // Without --pull never the platform asked for is pulled, as Docker does; this
    // registry is one on 127.0.0.1 where nothing listens.
    let local = "127.0.0.1:1/local/bb:1";
    b.ok(&["tag", "bb:1", local]);
    let (rc, _, err) = b.code(&[
        "run",
        "--rm",
        "--platform",
        &format!("linux/{foreign}"),
        local,
        "true",
    ]);
    assert_eq!(rc, 125, "{err}");
    assert!(
        err.starts_with(&format!("Unable to find image '{local}' locally\n")),
        "{err}"
    );
    refused(
        &b,
        &["create", "--platform", "linux/a/b/c", "bb:1"],
        "linux/a/b/c",
    );
}

#[test]
fn pull_policies_with_a_local_only_image() {
    let b = Berth::with_busybox();
    // A registry on this machine where nothing listens: a pull fails at once.
    let local = "127.0.0.1:1/local/bb:1";
    b.ok(&["tag", "bb:1", local]);
    for policy in ["never", "missing"] {
        let (rc, out, err) = b.code(&["run", "--rm", "--pull", policy, local, "echo", "ok"]);
        assert_eq!((rc, out.as_str()), (0, "ok\n"), "{policy}: {err}");
        assert!(!err.contains("Unable to find image"), "{policy}: {err}");
    }
    // `always` pulls first, and a failed pull is the run's failure.
    let (rc, _, err) = b.code(&["run", "--rm", "--pull", "always", local, "echo", "ok"]);
    assert_eq!(rc, 125, "{err}");
    assert!(err.contains("127.0.0.1:1"), "{err}");
    b.assert_nothing_left();

    let absent = "127.0.0.1:1/local/absent:1";
    let (rc, _, err) = b.code(&["run", "--rm", absent, "true"]);
    assert_eq!(rc, 125, "{err}");
    assert!(
        err.starts_with(&format!("Unable to find image '{absent}' locally\n")),
        "{err}"
    );
    refused(
        &b,
        &["run", "--rm", "--pull", "never", absent, "true"],
        &format!("No such image: {absent}"),
    );
    refused(
        &b,
        &["run", "--rm", "--pull", "sometimes", "bb:1", "true"],
        "invalid pull option: 'sometimes'",
    );
}

// ---------------------------------------------------------------------------------
// Terminal

#[test]
fn tty_without_stdin_and_stdin_that_is_not_a_terminal() {
    let b = Berth::with_busybox();
    let o = b
        .cmd(&[
            "run",
            "--rm",
            "-t",
            "bb:1",
            "sh",
            "-c",
            "tty; echo TERM=$TERM; [ -t 1 ] && echo out-is-tty; echo err >&2",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    // A terminal's output: CR LF line ends, stderr on the same stream.
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "/dev/pts/0\r\nTERM=xterm\r\nout-is-tty\r\nerr\r\n"
    );
    assert!(o.stderr.is_empty(), "{o:?}");
    let o = b
        .cmd(&["run", "--rm", "bb:1", "sh", "-c", "tty; echo TERM=$TERM"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "not a tty\nTERM=\n");

    // -it needs a terminal on our side, as docker says.
    let o = b
        .cmd(&["run", "--rm", "-it", "bb:1", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "Error: the input device is not a TTY\n"
    );
    b.assert_nothing_left();
}
