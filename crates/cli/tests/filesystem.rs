//! `berth diff`, `export`, `cp` and `commit` on real containers, running and stopped:
//! berth-runtime and berth-monitor from this workspace, a busybox image imported into a
//! store of the test's own. The hostile cases plant symlinks inside the container that
//! point at the host's `/etc` and check that nothing of the host is read or written.

mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::Berth;

/// A store holding `bb:1`: busybox with its applets, `CMD ["sh"]`, and a few files to
/// change: `/etc/hello` (0640), `/d/old1`, `/d/old2`, `/keep/k`.
fn berth_with_busybox() -> Berth {
    let b = Berth::new();
    let dir = b.tmp.path().join("bbfs");
    for d in ["bin", "etc", "tmp", "d", "keep"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet));
        }
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
    std::fs::write(dir.join("etc/hello"), "hello\n").unwrap();
    std::fs::set_permissions(dir.join("etc/hello"), PermissionsExt::from_mode(0o640)).unwrap();
    std::fs::set_permissions(dir.join("tmp"), PermissionsExt::from_mode(0o1777)).unwrap();
    for f in ["d/old1", "d/old2", "keep/k"] {
        std::fs::write(dir.join(f), f).unwrap();
    }
    let tar = b.tar_of(&dir, "bb.tar");
    b.ok(&[
        "import",
        "-c",
        "CMD [\"sh\"]",
        tar.to_str().unwrap(),
        "bb:1",
    ]);
    b
}

fn code(b: &Berth, args: &[&str]) -> (i32, String, String) {
    let o = b.run(args);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Runs berth with `input` on stdin; (exit code, stdout bytes, stderr).
fn piped(b: &Berth, args: &[&str], input: &[u8]) -> (i32, Vec<u8>, String) {
    use std::io::Write;
    let mut child = b
        .cmd(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let o = child.wait_with_output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        o.stdout,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Mounts under the test's directory (a running container has exactly one: its root).
fn mounts(b: &Berth) -> Vec<String> {
    let tmp = b.tmp.path().to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        // A running bridge container's network namespace is pinned under the runroot
        // (an nsfs mount): not a root filesystem.
        .filter(|l| l.contains(&tmp) && !l.contains(" - nsfs "))
        .map(str::to_string)
        .collect()
}

/// A stopped container: runs `script` in bb:1 to the end; its name.
fn stopped(b: &Berth, name: &str, script: &str) -> String {
    b.ok(&["run", "--name", name, "bb:1", "sh", "-c", script]);
    // The monitor's cleanup unmounts the root just after the run returns.
    let id = b.ok(&["container", "inspect", "-f", "{{.Id}}", name]);
    wait_for("the root unmounted", || {
        !mounts(b).iter().any(|m| m.contains(id.trim()))
    });
    name.to_string()
}

/// A running container that ran `script` and then waits; its name.
fn running(b: &Berth, name: &str, script: &str) -> String {
    let full = format!("{script}; touch /ready; exec sleep 1000");
    b.ok(&["run", "-d", "--name", name, "bb:1", "sh", "-c", &full]);
    wait_for("the container's script", || {
        b.run(&["cp", &format!("{name}:/ready"), "-"])
            .status
            .success()
    });
    name.to_string()
}

/// Entry names of a tar (`tar -t`).
fn tar_names(tar: &Path) -> BTreeSet<String> {
    let o = Command::new("tar").arg("-tf").arg(tar).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// One member's content (`tar -xO`).
fn tar_member(tar: &Path, name: &str) -> String {
    let o = Command::new("tar")
        .arg("-xOf")
        .arg(tar)
        .arg(name)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `tar -tv` line of one member.
fn tar_line(tar: &Path, name: &str) -> String {
    let o = Command::new("tar")
        .arg("-tvf")
        .arg(tar)
        .arg(name)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn write(path: &Path, bytes: &[u8]) -> PathBuf {
    std::fs::write(path, bytes).unwrap();
    path.to_path_buf()
}

const CHANGES: &str = "echo more >> /etc/hello; rm /etc/group; echo new > /new; \
                       rm -rf /d; mkdir /d; echo z > /d/z; mkdir -p /var/lib; echo v > /var/lib/v; \
                       cat /keep/k > /dev/null";

const CHANGES_DIFF: &[&str] = &[
    "C /d",
    "D /d/old1",
    "D /d/old2",
    "A /d/z",
    "C /etc",
    "D /etc/group",
    "C /etc/hello",
    "A /new",
    "A /var",
    "A /var/lib",
    "A /var/lib/v",
];

#[test]
fn diff_of_stopped_and_running_containers() {
    let b = berth_with_busybox();
    let c = stopped(&b, "stopped", CHANGES);
    let diff = b.ok(&["diff", &c]);
    assert_eq!(diff.lines().collect::<Vec<_>>(), CHANGES_DIFF, "{diff}");
    // The opaque directory really is one in the upper dir (what the D lines come from).
    assert!(mounts(&b).is_empty(), "{:?}", mounts(&b));

    let r = running(&b, "running", CHANGES);
    let diff = b.ok(&["container", "diff", &r]);
    let mut want: Vec<&str> = CHANGES_DIFF.to_vec();
    want.push("A /ready");
    want.sort_by_key(|line| &line[2..]);
    assert_eq!(diff.lines().collect::<Vec<_>>(), want, "{diff}");

    // Nothing changed: no lines, not even the mount points the runtime made.
    let quiet = stopped(&b, "quiet", "cat /etc/hello");
    assert_eq!(b.ok(&["diff", &quiet]), "");

    let err = b.fails(&["diff", "nosuch"]);
    assert_eq!(err, "Error: No such container: nosuch\n");
    b.ok(&["rm", "-f", &r, &c, &quiet]);
    assert!(mounts(&b).is_empty(), "{:?}", mounts(&b));
}

#[test]
fn export_of_running_and_stopped_containers() {
    let b = berth_with_busybox();
    let script =
        "echo secret > /tmp/out; chmod 600 /tmp/out; mkdir /made; ln -s /etc/hello /made/link; \
                  ln /etc/hello /etc/hello2";
    let r = running(&b, "running", script);
    let out = b.tmp.path().join("running.tar");
    b.ok(&["export", "-o", out.to_str().unwrap(), &r]);
    let check = |tar: &Path| {
        let names = tar_names(tar);
        for want in [
            "bin/busybox",
            "etc/hello",
            "tmp/out",
            "made/",
            "made/link",
            "d/old1",
        ] {
            assert!(names.contains(want), "{want} missing: {names:?}");
        }
        assert!(
            !names.iter().any(|n| n.starts_with('/') || n == "./"),
            "{names:?}"
        );
        assert_eq!(tar_member(tar, "tmp/out"), "secret\n");
        assert_eq!(tar_member(tar, "etc/hello"), "hello\n");
        assert!(
            tar_line(tar, "tmp/out").starts_with("-rw------- 0/0"),
            "{}",
            tar_line(tar, "tmp/out")
        );
        assert!(
            tar_line(tar, "tmp/").starts_with("drwxrwxrwt"),
            "{}",
            tar_line(tar, "tmp/")
        );
        assert!(tar_line(tar, "made/link").contains("made/link -> /etc/hello"));
        // Hard links stay hard links.
        let hello2 = tar_line(tar, "etc/hello2");
        assert!(
            hello2.starts_with('h') || hello2.contains("link to"),
            "{hello2}"
        );
    };
    check(&out);
    assert_eq!(mounts(&b).len(), 1, "the running container's own root only");

    b.ok(&["stop", "-t", "0", &r]);
    assert!(mounts(&b).is_empty(), "{:?}", mounts(&b));
    let o = b.cmd(&["export", &r]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let piped = write(&b.tmp.path().join("stopped.tar"), &o.stdout);
    check(&piped);
    // The stopped container's overlay was mounted nowhere: nothing left behind.
    assert!(mounts(&b).is_empty(), "{:?}", mounts(&b));

    // A terminal is refused, as docker does.
    let cmdline = b
        .cmd(&["export", &r])
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let o = Command::new("script")
        .args([
            "-qec",
            &format!("{} {cmdline}", env!("CARGO_BIN_EXE_berth")),
            "/dev/null",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("cowardly refusing to save to a terminal. Use the -o flag or redirect"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let err = b.fails(&[
        "export",
        "-o",
        b.tmp.path().join("x.tar").to_str().unwrap(),
        "nosuch",
    ]);
    assert_eq!(err, "Error: No such container: nosuch\n");
    assert!(!b.tmp.path().join("x.tar").exists());
    b.ok(&["rm", &r]);
}

/// Copies out of container `c` into a fresh host directory and checks what arrived.
fn copy_out_cases(b: &Berth, c: &str, host: &Path) {
    std::fs::create_dir_all(host).unwrap();
    let h = |p: &str| host.join(p).to_str().unwrap().to_string();
    // A file to a new name, and into an existing directory.
    b.ok(&["cp", &format!("{c}:/etc/hello"), &h("hello")]);
    assert_eq!(
        std::fs::read_to_string(host.join("hello")).unwrap(),
        "hello\n"
    );
    assert_eq!(
        std::fs::metadata(host.join("hello")).unwrap().mode() & 0o777,
        0o640
    );
    std::fs::create_dir(host.join("into")).unwrap();
    b.ok(&["cp", &format!("{c}:etc/hello"), &h("into")]);
    assert_eq!(
        std::fs::read_to_string(host.join("into/hello")).unwrap(),
        "hello\n"
    );
    // A directory to a new name (created), into an existing one, and its contents (/.).
    b.ok(&["cp", &format!("{c}:/d"), &h("dnew")]);
    assert!(host.join("dnew/old1").is_file());
    b.ok(&["cp", &format!("{c}:/d"), &h("into")]);
    assert!(host.join("into/d/old2").is_file());
    std::fs::create_dir(host.join("contents")).unwrap();
    b.ok(&["cp", &format!("{c}:/d/."), &h("contents")]);
    assert!(host.join("contents/old1").is_file() && !host.join("contents/d").exists());
    // A file onto an existing file replaces it; a directory onto a file is refused.
    write(&host.join("existing"), b"old");
    b.ok(&["cp", &format!("{c}:/etc/hello"), &h("existing")]);
    assert_eq!(
        std::fs::read_to_string(host.join("existing")).unwrap(),
        "hello\n"
    );
    let err = b.fails(&["cp", &format!("{c}:/d"), &h("existing")]);
    assert_eq!(err, "Error: cannot copy directory\n");
    // `-` is a tar on stdout, named after what was asked for.
    let o = b.cmd(&["cp", &format!("{c}:/d"), "-"]).output().unwrap();
    assert!(o.status.success());
    let tar = write(&host.join("d.tar"), &o.stdout);
    assert_eq!(
        tar_names(&tar),
        ["d/", "d/old1", "d/old2"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    assert_eq!(tar_member(&tar, "d/old1"), "d/old1");
    // Errors: a missing path, a missing container.
    let err = b.fails(&["cp", &format!("{c}:/nope"), &h("x")]);
    assert_eq!(
        err,
        format!("Error: Could not find the file /nope in container {c}\n")
    );
    let err = b.fails(&["cp", "nosuch:/etc", &h("x")]);
    assert_eq!(err, "Error: No such container: nosuch\n");
    assert!(!host.join("x").exists());
    let err = b.fails(&["cp", &h("hello"), &h("x")]);
    assert_eq!(err, "Error: must specify at least one container source\n");
    let err = b.fails(&["cp", &format!("{c}:/etc"), "other:/etc"]);
    assert_eq!(err, "Error: copying between containers is not supported\n");
    let err = b.fails(&["cp", &format!("{c}:/etc/hello"), &h("no/dir/x")]);
    assert!(
        err.starts_with("Error: invalid output path: directory"),
        "{err}"
    );
}

#[test]
fn cp_out_of_running_and_stopped_containers() {
    let b = berth_with_busybox();
    let s = stopped(&b, "stopped", "true");
    copy_out_cases(&b, &s, &b.tmp.path().join("from-stopped"));
    assert!(mounts(&b).is_empty(), "{:?}", mounts(&b));
    let r = running(&b, "running", "true");
    copy_out_cases(&b, &r, &b.tmp.path().join("from-running"));
    assert_eq!(mounts(&b).len(), 1);
    b.ok(&["rm", "-f", &r, &s]);
    assert!(mounts(&b).is_empty(), "{:?}", mounts(&b));
}

/// A host tree to copy in: `src/a` (owned 1234:5678, mode 0604), `src/sub/b`.
fn host_tree(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    write(&src.join("a"), b"a-content");
    std::fs::set_permissions(src.join("a"), PermissionsExt::from_mode(0o604)).unwrap();
    std::os::unix::fs::chown(src.join("a"), Some(1234), Some(5678)).unwrap();
    write(&src.join("sub/b"), b"b-content");
    src
}

/// The tar `berth cp C:PATH -` gives, saved in `dir`.
fn tar_out(b: &Berth, c: &str, path: &str, dir: &Path) -> PathBuf {
    let o = b
        .cmd(&["cp", &format!("{c}:{path}"), "-"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "cp {path}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    write(
        &dir.join(format!("out-{}.tar", path.replace('/', "_"))),
        &o.stdout,
    )
}

fn copy_in_cases(b: &Berth, c: &str, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let src = host_tree(dir);
    let s = |p: &str| src.join(p).to_str().unwrap().to_string();
    // A file into a directory; ownership and mode as on the host (as docker).
    b.ok(&["cp", &s("a"), &format!("{c}:/etc/")]);
    let t = tar_out(b, c, "/etc/a", dir);
    assert_eq!(tar_member(&t, "a"), "a-content");
    assert!(
        tar_line(&t, "a").starts_with("-rw----r-- 1234/5678"),
        "{}",
        tar_line(&t, "a")
    );
    // A file to a new name; onto an existing file.
    b.ok(&["cp", &s("a"), &format!("{c}:/etc/renamed")]);
    assert_eq!(
        tar_member(&tar_out(b, c, "/etc/renamed", dir), "renamed"),
        "a-content"
    );
    b.ok(&["cp", &s("sub/b"), &format!("{c}:/etc/hello")]);
    assert_eq!(
        tar_member(&tar_out(b, c, "/etc/hello", dir), "hello"),
        "b-content"
    );
    // A directory to a new name, into an existing directory, and its contents.
    b.ok(&["cp", &s(""), &format!("{c}:/newdir")]);
    assert_eq!(
        tar_member(&tar_out(b, c, "/newdir", dir), "newdir/sub/b"),
        "b-content"
    );
    b.ok(&["cp", &s(""), &format!("{c}:/keep")]);
    assert_eq!(
        tar_member(&tar_out(b, c, "/keep", dir), "keep/src/a"),
        "a-content"
    );
    b.ok(&["cp", &format!("{}/.", s("sub")), &format!("{c}:/d")]);
    let names = tar_names(&tar_out(b, c, "/d", dir));
    assert!(
        names.contains("d/b") && names.contains("d/old1"),
        "{names:?}"
    );
    // A tar on stdin, into a directory; -a makes the files the container user's.
    let stream = b.tar_of(&src, "in.tar");
    let (rc, _, err) = piped(
        b,
        &["cp", "-", &format!("{c}:/tmp")],
        &std::fs::read(&stream).unwrap(),
    );
    assert_eq!(rc, 0, "{err}");
    let t = tar_out(b, c, "/tmp", dir);
    assert_eq!(tar_member(&t, "tmp/sub/b"), "b-content");
    assert!(
        tar_line(&t, "tmp/a").contains(" 1234/5678 "),
        "{}",
        tar_line(&t, "tmp/a")
    );
    // Errors: `-` needs a directory; a missing parent; a directory onto a file.
    let (rc, _, err) = piped(b, &["cp", "-", &format!("{c}:/etc/hello")], b"");
    assert_eq!(
        (rc, err.as_str()),
        (
            1,
            format!("Error: destination \"{c}:/etc/hello\" must be a directory\n").as_str()
        )
    );
    let err = b.fails(&["cp", &s("a"), &format!("{c}:/no/such/x")]);
    assert_eq!(
        err,
        format!("Error: Could not find the file /no/such in container {c}\n")
    );
    let err = b.fails(&["cp", &s(""), &format!("{c}:/etc/hello")]);
    assert_eq!(err, "Error: cannot copy directory\n");
    let err = b.fails(&["cp", &s("missing"), &format!("{c}:/etc/")]);
    assert_eq!(
        err,
        format!("Error: lstat {}: no such file or directory\n", s("missing"))
    );
}

#[test]
fn cp_into_running_and_stopped_containers() {
    let b = berth_with_busybox();
    let s = stopped(&b, "stopped", "true");
    copy_in_cases(&b, &s, &b.tmp.path().join("to-stopped"));
    assert!(mounts(&b).is_empty(), "{:?}", mounts(&b));

    // The running container sees what is copied in, through its own root.
    let r = running(&b, "running", "true");
    copy_in_cases(&b, &r, &b.tmp.path().join("to-running"));
    let w = b.ok(&[
        "run",
        "-d",
        "--name",
        "waiter",
        "bb:1",
        "sh",
        "-c",
        "until [ -f /in/flag ]; do sleep 0.05; done; cat /in/flag",
    ]);
    assert_eq!(w.trim().len(), 64);
    let flag = b.tmp.path().join("in");
    std::fs::create_dir_all(&flag).unwrap();
    write(&flag.join("flag"), b"seen inside\n");
    b.ok(&["cp", flag.to_str().unwrap(), "waiter:/"]);
    assert_eq!(b.ok(&["wait", "waiter"]), "0\n");
    assert_eq!(b.ok(&["logs", "waiter"]), "seen inside\n");

    // -a: files become the container's user's.
    b.ok(&["run", "--name", "user", "-u", "4321:4322", "bb:1", "true"]);
    let src = b.tmp.path().join("to-stopped/src/a");
    b.ok(&["cp", "-a", src.to_str().unwrap(), "user:/tmp/"]);
    let t = tar_out(&b, "user", "/tmp/a", b.tmp.path());
    assert!(
        tar_line(&t, "a").contains(" 4321/4322 "),
        "{}",
        tar_line(&t, "a")
    );

    // A read-only root is refused.
    b.ok(&["create", "--name", "ro", "--read-only", "bb:1"]);
    let err = b.fails(&["cp", src.to_str().unwrap(), "ro:/tmp/"]);
    assert_eq!(err, "Error: container rootfs is marked read-only\n");
    b.ok(&["rm", "-f", &r, &s, "waiter", "user", "ro"]);
    assert!(mounts(&b).is_empty(), "{:?}", mounts(&b));
}

/// A name no host has in /etc.
fn planted(what: &str) -> String {
    format!("berth-fscmds-{what}-{}", std::process::id())
}

fn hostile_cases(b: &Berth, c: &str, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let host_passwd = std::fs::read("/etc/passwd").unwrap();
    let d = |p: &str| dir.join(p).to_str().unwrap().to_string();
    // Out: a symlink is copied as a symlink, never as the host file it names.
    b.ok(&["cp", &format!("{c}:/evil"), &d("evil")]);
    assert_eq!(
        std::fs::read_link(dir.join("evil")).unwrap(),
        Path::new("/etc/passwd")
    );
    b.ok(&["cp", &format!("{c}:/up"), &d("up")]);
    assert_eq!(
        std::fs::read_link(dir.join("up")).unwrap(),
        Path::new("../../../../etc")
    );
    // -L follows it inside the container: the container's passwd.
    b.ok(&["cp", "-L", &format!("{c}:/evil"), &d("evil-followed")]);
    let got = std::fs::read(dir.join("evil-followed")).unwrap();
    assert_eq!(got, b"root:x:0:0:root:/root:/bin/sh\n");
    assert_ne!(got, host_passwd);
    b.ok(&["cp", "-L", &format!("{c}:/up"), &d("up-followed")]);
    assert_eq!(std::fs::read(dir.join("up-followed/passwd")).unwrap(), got);
    // A symlink in the middle of the path is followed inside too.
    b.ok(&["cp", &format!("{c}:/up/passwd"), &d("via-up")]);
    assert_eq!(std::fs::read(dir.join("via-up")).unwrap(), got);
    b.ok(&["cp", &format!("{c}:/deep/root/etc/passwd"), &d("via-root")]);
    assert_eq!(std::fs::read(dir.join("via-root")).unwrap(), got);

    // In: parents that are symlinks to / or climb out land in the container's root.
    let file = write(&dir.join("payload"), b"payload");
    let one = planted("one");
    b.ok(&[
        "cp",
        file.to_str().unwrap(),
        &format!("{c}:/deep/root/etc/{one}"),
    ]);
    let two = planted("two");
    b.ok(&["cp", file.to_str().unwrap(), &format!("{c}:/up/{two}")]);
    // A parent that is a symlink to /etc: the container's /etc.
    let three = planted("three");
    b.ok(&[
        "cp",
        file.to_str().unwrap(),
        &format!("{c}:/etclink/{three}"),
    ]);
    // A hostile tar: a symlink to / then a file through it; `..` out is refused.
    let four = planted("four");
    let evil_tar = hostile_tar(&four);
    let (rc, _, err) = piped(b, &["cp", "-", &format!("{c}:/tmp")], &evil_tar);
    assert_eq!(rc, 0, "{err}");
    let (rc, _, err) = piped(b, &["cp", "-", &format!("{c}:/tmp")], &dotdot_tar());
    assert_eq!(rc, 1);
    assert_eq!(err, "Error: \"../../../escape\" is outside of \"/tmp\"\n");
    for name in [&one, &two, &three, &four] {
        assert!(
            !Path::new("/etc").join(name).exists(),
            "{name} reached the host"
        );
        let t = tar_out(b, c, &format!("/etc/{name}"), dir);
        assert_eq!(
            tar_member(&t, name),
            if name == &four { "four" } else { "payload" }
        );
    }
    assert!(!Path::new("/escape").exists() && !Path::new("/tmp/escape").exists());
    // A destination that is itself a symlink to /etc/passwd: its target in the container
    // is what gets replaced.
    b.ok(&["cp", file.to_str().unwrap(), &format!("{c}:/evil")]);
    let t = tar_out(b, c, "/etc/passwd", dir);
    assert_eq!(tar_member(&t, "passwd"), "payload");
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), host_passwd);
}

/// A tar with `x -> /` and then `x/etc/NAME` through it.
fn hostile_tar(name: &str) -> Vec<u8> {
    let mut t = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    t.append_link(&mut h, "x", "/").unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    h.set_cksum();
    t.append_data(&mut h, format!("x/etc/{name}"), &b"four"[..])
        .unwrap();
    t.into_inner().unwrap()
}

/// A tar whose one entry climbs out of the destination with `..`.
fn dotdot_tar() -> Vec<u8> {
    let mut t = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    let name = b"../../../escape";
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_size(1);
    h.set_mode(0o644);
    h.set_cksum();
    t.append(&h, &b"x"[..]).unwrap();
    t.into_inner().unwrap()
}

const HOSTILE: &str = "ln -s /etc/passwd /evil; ln -s ../../../../etc /up; mkdir -p /deep; \
                       ln -s / /deep/root; ln -s /etc /etclink";

#[test]
fn hostile_symlinks_never_reach_the_host() {
    let b = berth_with_busybox();
    let s = stopped(&b, "stopped", HOSTILE);
    hostile_cases(&b, &s, &b.tmp.path().join("stopped"));
    assert!(mounts(&b).is_empty(), "{:?}", mounts(&b));
    let r = running(&b, "running", HOSTILE);
    hostile_cases(&b, &r, &b.tmp.path().join("running"));
    b.ok(&["rm", "-f", &r, &s]);
    assert!(mounts(&b).is_empty(), "{:?}", mounts(&b));
}

#[test]
fn commit_makes_an_image_that_runs_with_the_changes() {
    let b = berth_with_busybox();
    let c = stopped(&b, "changed", CHANGES);
    let blobs = b.blobs();
    // A bad tag fails before anything is written.
    let err = b.fails(&["commit", &c, "Bad:Tag:x"]);
    assert!(err.starts_with("Error: "), "{err}");
    let err = b.fails(&["commit", "nosuch", "x:1"]);
    assert_eq!(err, "Error: No such container: nosuch\n");
    assert_eq!(b.blobs(), blobs);

    let id = b.ok(&[
        "commit",
        "-a",
        "Ann <ann@example.com>",
        "-m",
        "the changes",
        "-c",
        "CMD [\"cat\", \"/etc/hello\"]",
        "-c",
        "ENV GREETING=hi",
        &c,
        "changed:1",
    ]);
    let id = id.trim().to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    assert_eq!(b.blobs(), blobs + 3, "layer, config, manifest");
    assert_eq!(b.image_id("changed:1"), id);
    // The new CMD runs; the changes are there, the deleted file stays deleted.
    assert_eq!(b.ok(&["run", "--rm", "changed:1"]), "hello\nmore\n");
    let ls = b.ok(&[
        "run",
        "--rm",
        "changed:1",
        "sh",
        "-c",
        "ls /etc /d; cat /new /var/lib/v; echo $GREETING",
    ]);
    // (hostname, hosts and resolv.conf are the new container's own mounts)
    assert_eq!(
        ls,
        "/d:\nz\n\n/etc:\nhello\nhostname\nhosts\npasswd\nresolv.conf\nnew\nv\nhi\n"
    );
    let (rc, _, _) = code(
        &b,
        &["run", "--rm", "changed:1", "test", "-e", "/etc/group"],
    );
    assert_eq!(rc, 1, "/etc/group must stay deleted");
    // history: the new layer on top, made by the container's command.
    let history = b.ok(&["history", "--no-trunc", "changed:1"]);
    let top = history.lines().nth(1).unwrap();
    assert!(
        top.starts_with(&id[7..19]) || top.starts_with(&id),
        "{history}"
    );
    assert!(top.contains(&format!("sh -c {CHANGES}")), "{top}");
    assert!(top.contains("the changes"), "{top}");
    assert_eq!(history.lines().count(), 3, "{history}");
    let cfg = b.ok(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config.Cmd}} {{.Author}}",
        "changed:1",
    ]);
    assert_eq!(cfg, "[\"cat\",\"/etc/hello\"] Ann <ann@example.com>\n");
    // Nothing of the container changed in the image's own layer stack: diff of a container
    // of the new image is empty.
    b.ok(&["run", "--name", "fresh", "changed:1", "true"]);
    assert_eq!(b.ok(&["diff", "fresh"]), "");

    // A running container is paused for the commit and runs on afterwards.
    let r = running(&b, "running", "echo live > /live");
    let id2 = b.ok(&["commit", &r]).trim().to_string();
    assert!(id2.starts_with("sha256:"), "{id2}");
    let status = b.ok(&["container", "inspect", "-f", "{{.State.Status}}", &r]);
    assert_eq!(status, "running\n");
    let id3 = b
        .ok(&["commit", "--pause=false", &r, "live:1"])
        .trim()
        .to_string();
    assert_eq!(b.image_id("live:1"), id3);
    assert_eq!(b.ok(&["run", "--rm", "live:1", "cat", "/live"]), "live\n");
    // Untagged commit: a dangling image, listed by id.
    assert!(b.ok(&["images", "-q", "--no-trunc"]).contains(&id2[7..]));
    b.ok(&["rm", "-f", &r, &c, "fresh"]);
    assert!(mounts(&b).is_empty(), "{:?}", mounts(&b));
}

fn set_xattr(path: &Path, key: &str, value: &[u8]) {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let k = std::ffi::CString::new(key).unwrap();
    // SAFETY: both strings are NUL-terminated; value is a live slice passed with its length.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            k.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
}

fn get_xattr(path: &Path, key: &str) -> Option<Vec<u8>> {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let k = std::ffi::CString::new(key).unwrap();
    let mut buf = [0u8; 256];
    // SAFETY: both strings are NUL-terminated; buf is writable for its whole length.
    let n = unsafe { libc::lgetxattr(p.as_ptr(), k.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).ok().map(|n| buf[..n].to_vec())
}

/// What a tar says about one member: (uid, gid, mtime, type, device, xattrs).
type Member = (
    u64,
    u64,
    u64,
    tar::EntryType,
    Option<(u32, u32)>,
    Vec<(String, Vec<u8>)>,
);

fn tar_members(bytes: &[u8]) -> std::collections::BTreeMap<String, Member> {
    let mut out = std::collections::BTreeMap::new();
    let mut ar = tar::Archive::new(bytes);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let mut xattrs = Vec::new();
        if let Some(pax) = e.pax_extensions().unwrap() {
            for r in pax {
                let r = r.unwrap();
                if let Some(k) = r.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs.push((k.to_string(), r.value_bytes().to_vec()));
                }
            }
        }
        let h = e.header();
        let dev = match h.entry_type() {
            tar::EntryType::Char | tar::EntryType::Block => Some((
                h.device_major().unwrap().unwrap(),
                h.device_minor().unwrap().unwrap(),
            )),
            _ => None,
        };
        let m = (
            h.uid().unwrap(),
            h.gid().unwrap(),
            h.mtime().unwrap(),
            h.entry_type(),
            dev,
            xattrs,
        );
        out.insert(name, m);
    }
    out
}

#[test]
fn owners_devices_xattrs_and_times_survive_export_and_cp() {
    let b = berth_with_busybox();
    let c = stopped(
        &b,
        "meta",
        "echo x > /tmp/owned; chown 1234:5678 /tmp/owned; touch -d '2001-02-03 04:05:06' /tmp/owned; \
         mknod /tmp/null c 1 3; mkfifo /tmp/fifo",
    );
    // An xattr set on the container's writable layer from outside.
    let id = b.ok(&["container", "inspect", "-f", "{{.Id}}", &c]);
    let upper = b.root().join("containers").join(id.trim()).join("upper");
    set_xattr(&upper.join("tmp/owned"), "user.berth", b"yes");

    let o = b.cmd(&["export", &c]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let members = tar_members(&o.stdout);
    let owned = &members["tmp/owned"];
    assert_eq!((owned.0, owned.1, owned.2), (1234, 5678, 981_173_106));
    assert_eq!(owned.5, vec![("user.berth".to_string(), b"yes".to_vec())]);
    assert_eq!(
        (members["tmp/null"].3, members["tmp/null"].4),
        (tar::EntryType::Char, Some((1, 3)))
    );
    assert_eq!(members["tmp/fifo"].3, tar::EntryType::Fifo);
    // No overlay bookkeeping leaks into the archive.
    assert!(!members
        .values()
        .any(|m| m.5.iter().any(|(k, _)| k.starts_with("trusted.overlay."))));

    // cp out keeps mode, time and xattrs (owner: the caller's, as docker).
    let host = b.tmp.path().join("meta-out");
    std::fs::create_dir(&host).unwrap();
    b.ok(&["cp", &format!("{c}:/tmp/owned"), host.to_str().unwrap()]);
    let md = std::fs::metadata(host.join("owned")).unwrap();
    assert_eq!((md.uid(), md.mtime()), (0, 981_173_106));
    assert_eq!(
        get_xattr(&host.join("owned"), "user.berth").as_deref(),
        Some(&b"yes"[..])
    );
    // cp in keeps the host file's xattrs and owner.
    let file = write(&host.join("tagged"), b"t");
    set_xattr(&file, "user.tag", b"1");
    std::os::unix::fs::chown(&file, Some(42), Some(43)).unwrap();
    b.ok(&["cp", file.to_str().unwrap(), &format!("{c}:/tmp/")]);
    let o = b
        .cmd(&["cp", &format!("{c}:/tmp/tagged"), "-"])
        .output()
        .unwrap();
    let m = &tar_members(&o.stdout)["tagged"];
    assert_eq!((m.0, m.1), (42, 43));
    assert_eq!(m.5, vec![("user.tag".to_string(), b"1".to_vec())]);
    b.ok(&["rm", &c]);
    assert!(mounts(&b).is_empty(), "{:?}", mounts(&b));
}
