//! `berth volume …` and volumes in `run`/`create`/`rm` on real containers: berth-runtime
//! and berth-monitor from this workspace, images imported into a store of the test's own.

mod support;

use serde_json::Value;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::Berth;

const INVALID_NAME: &str = "\"a/b\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path";

/// A busybox root filesystem in `<tmp>/NAME`, changed by `edit`, imported as `tag` with
/// `CMD ["sh"]` and the extra `changes` (`VOLUME /data`).
fn image(b: &Berth, name: &str, tag: &str, changes: &[&str], edit: impl FnOnce(&Path)) {
    let dir = b.tmp.path().join(name);
    for d in ["bin", "etc", "tmp"] {
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
    edit(&dir);
    let tar = b.tar_of(&dir, &format!("{name}.tar"));
    let mut args = vec!["import", "-c", "CMD [\"sh\"]"];
    for c in changes {
        args.push("-c");
        args.push(c);
    }
    args.push(tar.to_str().unwrap());
    args.push(tag);
    b.ok(&args);
}

fn plain_image(b: &Berth) {
    image(b, "plainfs", "bb:1", &[], |_| {});
}

/// (exit code, stdout, stderr).
fn code(b: &Berth, args: &[&str]) -> (i32, String, String) {
    let o = b.run(args);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Fails with exit `rc` and exactly one stderr line; returns it.
fn fails(b: &Berth, rc: i32, args: &[&str]) -> String {
    let (got, _, err) = code(b, args);
    assert_eq!(got, rc, "berth {args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    err
}

fn names(b: &Berth) -> Vec<String> {
    b.ok(&["volume", "ls", "-q"])
        .lines()
        .map(str::to_string)
        .collect()
}

fn mountpoint(b: &Berth, name: &str) -> PathBuf {
    b.root().join("volumes").join(name).join("_data")
}

fn inspect(b: &Berth, name: &str) -> Value {
    let v: Value = serde_json::from_str(&b.ok(&["volume", "inspect", name])).unwrap();
    v[0].clone()
}

fn anonymous(b: &Berth) -> Vec<String> {
    names(b)
        .into_iter()
        .filter(|n| n.len() == 64 && n.bytes().all(|c| c.is_ascii_hexdigit()))
        .collect()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// No mounts under the test's directory, no containers; the volumes directory holds
/// exactly `volumes` (and the lock file).
fn assert_left(b: &Berth, volumes: &[&str]) {
    let tmp = b.tmp.path().to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&tmp)).collect();
    assert!(left.is_empty(), "mounts left: {left:?}");
    assert_eq!(b.ok(&["ps", "-aq"]), "");
    let mut dirs: Vec<String> = std::fs::read_dir(b.root().join("volumes"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != ".lock")
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    let mut want: Vec<String> = volumes.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(dirs, want, "volume directories");
    let mut listed = names(b);
    listed.sort();
    assert_eq!(listed, want, "volume ls");
}

#[test]
fn create_ls_inspect_rm_with_dockers_output() {
    let b = Berth::new();
    // No name: a random one, and the volume counts as anonymous.
    let random = b.ok(&["volume", "create"]).trim().to_string();
    assert_eq!(random.len(), 64, "{random}");
    assert_eq!(
        inspect(&b, &random)["Labels"]["com.docker.volume.anonymous"],
        ""
    );
    assert_eq!(
        b.ok(&["volume", "create", "--label", "env=prod", "--label", "tier", "web"]),
        "web\n"
    );
    // Creating it again answers with the existing one, unchanged.
    assert_eq!(b.ok(&["volume", "create", "--name", "web"]), "web\n");
    for n in ["v10", "v2"] {
        b.ok(&["volume", "create", n]);
    }

    let v = inspect(&b, "web");
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "CreatedAt",
            "Driver",
            "Labels",
            "Mountpoint",
            "Name",
            "Options",
            "Scope"
        ]
    );
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Name"], "web");
    assert_eq!(v["Labels"], serde_json::json!({"env": "prod", "tier": ""}));
    assert_eq!(v["Options"], serde_json::json!({}));
    let created = v["CreatedAt"].as_str().unwrap();
    assert!(
        created.starts_with("20") && created.ends_with('Z'),
        "{created}"
    );
    let mp = PathBuf::from(v["Mountpoint"].as_str().unwrap());
    assert_eq!(mp, mountpoint(&b, "web"));
    assert!(mp.is_dir());
    assert_eq!(
        std::fs::metadata(&mp).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let raw = b.ok(&["volume", "inspect", "web"]);
    assert!(raw.starts_with("[\n    {\n        \"CreatedAt\""), "{raw}");
    assert_eq!(
        b.ok(&[
            "volume",
            "inspect",
            "-f",
            "{{.Name}} {{.Driver}}",
            "web",
            "v2"
        ]),
        "web local\nv2 local\n"
    );
    // docker inspect finds volumes too, after containers and images.
    assert_eq!(
        b.ok(&["inspect", "-f", "{{.Mountpoint}}", "web"]),
        format!("{}\n", mountpoint(&b, "web").display())
    );
    assert_eq!(
        b.ok(&["inspect", "--type", "volume", "-f", "{{.Name}}", "web"]),
        "web\n"
    );
    assert_eq!(code(&b, &["inspect", "--type", "image", "web"]).0, 1);
    let (rc, out, err) = code(&b, &["volume", "inspect", "nope"]);
    assert_eq!((rc, out.as_str()), (1, "[]\n"));
    assert_eq!(
        err,
        "Error response from daemon: get nope: no such volume\n"
    );

    // ls: docker's table, names in natural order.
    let ls = b.ok(&["volume", "ls"]);
    let want = format!(
        "DRIVER    VOLUME NAME\nlocal     {random}\nlocal     v2\nlocal     v10\nlocal     web\n"
    );
    assert_eq!(ls, want);
    assert_eq!(
        b.ok(&["volume", "ls", "-q", "--filter", "name=v"]),
        "v2\nv10\n"
    );
    assert_eq!(
        b.ok(&["volume", "ls", "-q", "-f", "label=env=prod"]),
        "web\n"
    );
    assert_eq!(b.ok(&["volume", "ls", "-q", "-f", "label=tier"]), "web\n");
    assert_eq!(b.ok(&["volume", "ls", "-q", "-f", "label=env=dev"]), "");
    assert_eq!(
        b.ok(&["volume", "ls", "-q", "-f", "label=env", "-f", "label=nope"]),
        "",
        "label filters must all match"
    );
    assert_eq!(
        b.ok(&["volume", "ls", "-q", "-f", "driver=local"])
            .lines()
            .count(),
        4
    );
    assert_eq!(
        b.ok(&[
            "volume",
            "ls",
            "--format",
            "{{.Name}}|{{.Labels}}",
            "-f",
            "name=web"
        ]),
        "web|env=prod,tier=\n"
    );
    let table = b.ok(&[
        "volume",
        "ls",
        "--format",
        "table {{.Name}}\t{{.Scope}}",
        "-f",
        "name=v1",
    ]);
    assert_eq!(table, "VOLUME NAME   SCOPE\nv10           local\n");
    let err = fails(&b, 1, &["volume", "ls", "-f", "dangling=maybe"]);
    assert_eq!(
        err,
        "Error response from daemon: invalid filter 'dangling=maybe'\n"
    );
    let err = fails(&b, 1, &["volume", "ls", "-f", "colour=red"]);
    assert_eq!(err, "Error response from daemon: invalid filter 'colour'\n");

    // Refusals name the problem and create nothing.
    let err = fails(&b, 1, &["volume", "create", "a/b"]);
    assert_eq!(
        err,
        format!("Error response from daemon: create a/b: {INVALID_NAME}\n")
    );
    let err = fails(&b, 1, &["volume", "create", "-d", "nfsplug", "x1"]);
    assert_eq!(
        err,
        "Error response from daemon: create x1: error looking up volume plugin nfsplug: plugin \"nfsplug\" not found\n"
    );
    let err = fails(&b, 1, &["volume", "create", "-o", "colour=red", "x1"]);
    assert_eq!(
        err,
        "Error response from daemon: create x1: invalid option: \"colour\"\n"
    );
    let err = fails(&b, 1, &["volume", "create", "-o", "type=tmpfs", "x1"]);
    assert_eq!(
        err,
        "Error response from daemon: create x1: missing required option: \"device\"\n"
    );
    let err = fails(&b, 1, &["volume", "create", "--name", "x1", "x2"]);
    assert!(
        err.contains(
            "Conflicting options: either specify --name or provide positional arg, not both"
        ),
        "{err}"
    );
    assert_eq!(names(&b).len(), 4);

    // df counts them.
    std::fs::write(mountpoint(&b, "v2").join("f"), vec![0u8; 2000]).unwrap();
    let df = b.ok(&[
        "system",
        "df",
        "--format",
        "{{.Type}} {{.TotalCount}} {{.Active}} {{.Size}}",
    ]);
    assert!(df.contains("Local Volumes 4 0 2kB\n"), "{df}");

    assert_eq!(b.ok(&["volume", "rm", "web", "v2"]), "web\nv2\n");
    assert!(!b.root().join("volumes/web").exists());
    let err = fails(&b, 1, &["volume", "rm", "web"]);
    assert_eq!(err, "Error response from daemon: get web: no such volume\n");
    assert_eq!(b.ok(&["volume", "rm", "-f", "web"]), "web\n");
    b.ok(&["volume", "rm", &random, "v10"]);
    assert_left(&b, &[]);
}

#[test]
fn a_named_volume_is_shared_and_cannot_go_while_used() {
    let b = Berth::new();
    plain_image(&b);
    let id = b
        .ok(&[
            "run",
            "-d",
            "--name",
            "writer",
            "-v",
            "shared:/data",
            "bb:1",
            "sh",
            "-c",
            "echo from-writer > /data/note; sleep 1000",
        ])
        .trim()
        .to_string();
    wait_for("the note", || {
        mountpoint(&b, "shared").join("note").exists()
    });
    // Another container sees what the first wrote, and writes back.
    assert_eq!(
        b.ok(&[
            "run",
            "--rm",
            "--mount",
            "type=volume,src=shared,dst=/mnt",
            "bb:1",
            "sh",
            "-c",
            "cat /mnt/note; echo reply > /mnt/reply",
        ]),
        "from-writer\n"
    );
    assert_eq!(
        std::fs::read_to_string(mountpoint(&b, "shared").join("reply")).unwrap(),
        "reply\n"
    );

    let mounts: Value =
        serde_json::from_str(&b.ok(&["container", "inspect", "-f", "{{json .Mounts}}", "writer"]))
            .unwrap();
    assert_eq!(
        mounts,
        serde_json::json!([{
            "Type": "volume",
            "Name": "shared",
            "Source": mountpoint(&b, "shared"),
            "Destination": "/data",
            "Driver": "local",
            "Mode": "z",
            "RW": true,
            "Propagation": "",
        }])
    );
    assert_eq!(
        b.ok(&["volume", "ls", "-q", "-f", "dangling=false"]),
        "shared\n"
    );
    assert_eq!(b.ok(&["volume", "ls", "-q", "-f", "dangling=true"]), "");

    // In use by a running container, then by a stopped one: refused with docker's text.
    let in_use = format!("Error response from daemon: remove shared: volume is in use - [{id}]\n");
    assert_eq!(fails(&b, 1, &["volume", "rm", "shared"]), in_use);
    assert_eq!(fails(&b, 1, &["volume", "rm", "-f", "shared"]), in_use);
    b.ok(&["stop", "-t", "0", "writer"]);
    assert_eq!(fails(&b, 1, &["volume", "rm", "shared"]), in_use);
    let pruned = b.ok(&["volume", "prune", "-f", "-a"]);
    assert_eq!(
        pruned, "Total reclaimed space: 0B\n",
        "used volumes are not pruned"
    );
    let df = b.ok(&[
        "system",
        "df",
        "--format",
        "{{.Type}} {{.TotalCount}} {{.Active}}",
    ]);
    assert!(df.contains("Local Volumes 1 1\n"), "{df}");

    // rm -v never removes a named volume.
    b.ok(&["rm", "-v", "writer"]);
    assert_eq!(
        std::fs::read_to_string(mountpoint(&b, "shared").join("note")).unwrap(),
        "from-writer\n"
    );
    assert_eq!(b.ok(&["volume", "rm", "shared"]), "shared\n");
    assert_left(&b, &[]);
}

/// An image whose /data has content: files with owners and modes, a symlink, a
/// subdirectory; /data itself 0750 and owned by 1000:1000.
fn content_image(b: &Berth) {
    image(b, "contentfs", "content:1", &["VOLUME /data"], |dir| {
        let data = dir.join("data");
        std::fs::create_dir_all(data.join("sub")).unwrap();
        std::fs::write(data.join("greeting"), "hello\n").unwrap();
        std::fs::write(data.join("sub/deep"), "deep\n").unwrap();
        std::os::unix::fs::symlink("greeting", data.join("link")).unwrap();
        std::fs::set_permissions(
            data.join("greeting"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::os::unix::fs::chown(data.join("greeting"), Some(1000), Some(1000)).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o750)).unwrap();
        std::os::unix::fs::chown(&data, Some(1000), Some(1000)).unwrap();
    });
}

#[test]
fn image_content_is_copied_into_empty_volumes_only() {
    let b = Berth::new();
    content_image(&b);
    // A new named volume gets the image's /data, metadata included.
    let out = b.ok(&[
        "run", "--rm", "-v", "fresh:/data", "content:1", "sh", "-c",
        "cat /data/greeting /data/sub/deep; stat -c '%a %u:%g' /data /data/greeting; readlink /data/link",
    ]);
    assert_eq!(out, "hello\ndeep\n750 1000:1000\n640 1000:1000\ngreeting\n");
    let host = mountpoint(&b, "fresh");
    let m = std::fs::metadata(host.join("greeting")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1000, 1000, 0o640));
    assert_eq!(
        std::fs::read_link(host.join("link")).unwrap(),
        Path::new("greeting")
    );

    // A volume with content of its own is left as it is.
    b.ok(&["volume", "create", "mine"]);
    std::fs::write(mountpoint(&b, "mine").join("own"), "own\n").unwrap();
    assert_eq!(
        b.ok(&[
            "run",
            "--rm",
            "-v",
            "mine:/data",
            "content:1",
            "ls",
            "/data"
        ]),
        "own\n"
    );
    // nocopy, both spellings: the volume stays empty.
    assert_eq!(
        b.ok(&[
            "run",
            "--rm",
            "-v",
            "nc1:/data:nocopy",
            "content:1",
            "ls",
            "-A",
            "/data"
        ]),
        ""
    );
    assert_eq!(
        b.ok(&[
            "run",
            "--rm",
            "--mount",
            "type=volume,src=nc2,dst=/data,volume-nocopy",
            "content:1",
            "ls",
            "-A",
            "/data",
        ]),
        ""
    );
    // Where the image has nothing there is nothing to copy.
    assert_eq!(
        b.ok(&[
            "run",
            "--rm",
            "-v",
            "elsewhere:/srv",
            "content:1",
            "ls",
            "-A",
            "/srv"
        ]),
        ""
    );
    // The image's anonymous volume is filled the same way.
    assert_eq!(
        b.ok(&["run", "--rm", "content:1", "cat", "/data/greeting"]),
        "hello\n"
    );

    // Once per container, as Docker copies at create: emptied, it stays empty.
    b.ok(&[
        "run",
        "--name",
        "once",
        "-v",
        "once:/data",
        "content:1",
        "sh",
        "-c",
        "ls /data; rm -rf /data/*",
    ]);
    assert_eq!(b.ok(&["start", "-a", "once"]), "");
    b.ok(&["rm", "once"]);
    assert_eq!(
        std::fs::read_dir(mountpoint(&b, "once")).unwrap().count(),
        0
    );

    for v in ["fresh", "mine", "nc1", "nc2", "elsewhere", "once"] {
        b.ok(&["volume", "rm", v]);
    }
    assert_left(&b, &[]);
}

#[test]
fn anonymous_volumes_go_with_rm_v_and_run_rm_named_ones_stay() {
    let b = Berth::new();
    content_image(&b);
    // run --rm: the image's VOLUME goes, the named volume stays.
    b.ok(&[
        "run",
        "--rm",
        "-v",
        "keep:/keep",
        "content:1",
        "sh",
        "-c",
        "echo k > /keep/k",
    ]);
    assert_eq!(names(&b), ["keep"]);

    // create records the anonymous volume at once; inspect shows it without a mode.
    b.ok(&["create", "--name", "c1", "content:1"]);
    let anon = anonymous(&b);
    assert_eq!(anon.len(), 1, "{:?}", names(&b));
    assert_eq!(
        inspect(&b, &anon[0])["Labels"],
        serde_json::json!({"com.docker.volume.anonymous": ""})
    );
    let mounts: Value =
        serde_json::from_str(&b.ok(&["container", "inspect", "-f", "{{json .Mounts}}", "c1"]))
            .unwrap();
    assert_eq!(mounts[0]["Name"], anon[0].as_str());
    assert_eq!(mounts[0]["Destination"], "/data");
    assert_eq!(mounts[0]["Mode"], "");
    b.ok(&["rm", "-v", "c1"]);
    assert_eq!(names(&b), ["keep"]);

    // An anonymous volume another container mounts by name stays with rm -v; that
    // container, having named it, does not take it with it either.
    b.ok(&["create", "--name", "c3", "content:1"]);
    let a3 = anonymous(&b).remove(0);
    b.ok(&[
        "create",
        "--name",
        "c4",
        "-v",
        &format!("{a3}:/other"),
        "content:1",
    ]);
    assert_eq!(anonymous(&b).len(), 2, "c4's own /data");
    b.ok(&["rm", "-v", "c3"]);
    assert!(anonymous(&b).contains(&a3), "still used by c4");
    b.ok(&["rm", "-v", "c4"]);
    assert_eq!(anonymous(&b), std::slice::from_ref(&a3));
    b.ok(&["volume", "rm", &a3]);

    // Without -v they stay behind, dangling; prune takes the anonymous ones only.
    b.ok(&[
        "create",
        "--name",
        "c2",
        "-v",
        "/anon",
        "--mount",
        "type=volume,dst=/anon2",
        "-v",
        "keep:/keep",
        "content:1",
    ]);
    assert_eq!(anonymous(&b).len(), 3);
    b.ok(&["rm", "c2"]);
    let left = anonymous(&b);
    assert_eq!(left.len(), 3);
    let mut dangling: Vec<String> = b
        .ok(&["volume", "ls", "-q", "-f", "dangling=true"])
        .lines()
        .map(str::to_string)
        .collect();
    dangling.sort();
    let mut want = left.clone();
    want.push("keep".into());
    want.sort();
    assert_eq!(dangling, want);
    // A detached --rm run loses its anonymous volume when it exits.
    b.ok(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "bg",
        "content:1",
        "sleep",
        "1000",
    ]);
    assert_eq!(anonymous(&b).len(), 4);
    b.ok(&["stop", "-t", "0", "bg"]);
    wait_for("bg removed", || b.ok(&["ps", "-aq"]).is_empty());
    assert_eq!(anonymous(&b).len(), 3);

    // The prompt: anything but y keeps everything.
    let mut child = b
        .cmd(&["volume", "prune"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"n\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "WARNING! This will remove anonymous local volumes not used by at least one container.\nAre you sure you want to continue? [y/N] Total reclaimed space: 0B\n"
    );
    assert_eq!(anonymous(&b).len(), 3);

    let mut pruned = b.ok(&["volume", "prune", "-f"]);
    assert!(pruned.starts_with("Deleted Volumes:\n"), "{pruned}");
    assert!(
        pruned.ends_with("\n\nTotal reclaimed space: 0B\n"),
        "{pruned}"
    );
    pruned = pruned.replace("Deleted Volumes:\n", "");
    let mut deleted: Vec<&str> = pruned.lines().take_while(|l| !l.is_empty()).collect();
    deleted.sort();
    let mut left = left;
    left.sort();
    assert_eq!(deleted, left);
    assert_eq!(names(&b), ["keep"]);
    // --filter keeps what it excludes; -a also takes named volumes.
    b.ok(&["volume", "create", "--label", "hold=1", "held"]);
    assert_eq!(
        b.ok(&["volume", "prune", "-f", "-a", "--filter", "label!=hold"]),
        "Deleted Volumes:\nkeep\n\nTotal reclaimed space: 2B\n"
    );
    assert_eq!(names(&b), ["held"]);
    b.ok(&["volume", "prune", "-f", "--filter", "all=true"]);
    assert_left(&b, &[]);
}

#[test]
fn a_hostile_volume_path_never_copies_host_files() {
    let b = Berth::new();
    // VOLUME paths that are symlinks out of the image: absolute to /etc, and `..` far
    // past the root. Both must resolve inside the image.
    image(&b, "hostilefs", "hostile:1", &["VOLUME /data"], |dir| {
        std::fs::write(dir.join("etc/image-only"), "image\n").unwrap();
        std::os::unix::fs::symlink("/etc", dir.join("data")).unwrap();
        std::os::unix::fs::symlink("../../../../../../..", dir.join("up")).unwrap();
    });
    b.ok(&["create", "--name", "hx", "-v", "upvol:/up", "hostile:1"]);
    // Starting copies up; the process itself may fail: the runtime mounts at the same
    // in-image paths, so a copy of the image lands on the container's `/`.
    let _ = b.run(&["start", "-a", "hx"]);
    let mounts: Value =
        serde_json::from_str(&b.ok(&["container", "inspect", "-f", "{{json .Mounts}}", "hx"]))
            .unwrap();
    let source = |dest: &str| -> PathBuf {
        let m = mounts
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["Destination"] == dest)
            .unwrap_or_else(|| panic!("no mount at {dest}: {mounts}"));
        PathBuf::from(m["Source"].as_str().unwrap())
    };
    // The runtime makes empty files in the container's /etc (here the volume) to bind
    // hostname, hosts and resolv.conf onto: those may be there, empty.
    let listing = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| {
                let target = ["hostname", "hosts", "resolv.conf"].contains(&n.as_str());
                !(target && std::fs::metadata(dir.join(n)).unwrap().len() == 0)
            })
            .collect();
        v.sort();
        v
    };
    // /data -> /etc is the image's /etc, not the host's.
    assert_eq!(
        listing(&source("/data")),
        ["group", "image-only", "passwd"],
        "host /etc leaked"
    );
    // /up -> ../../.. stops at the image's root: its files, none of the store's.
    let up = listing(&source("/up"));
    assert!(
        up.contains(&"bin".to_string()) && up.contains(&"etc".to_string()),
        "{up:?}"
    );
    for host in ["containers", "volumes", "berth.db", "root", "blobs"] {
        assert!(!up.contains(&host.to_string()), "{host} leaked: {up:?}");
    }
    assert!(source("/up").join("bin/busybox").is_file());
    assert!(!Path::new("/etc/image-only").exists());
    b.ok(&["rm", "-v", "hx"]);
    b.ok(&["volume", "rm", "upvol"]);

    // A named volume on the same path gets the same, and the container sees it.
    assert_eq!(
        b.ok(&[
            "run",
            "--rm",
            "-v",
            "named:/data",
            "hostile:1",
            "/bin/cat",
            "/data/image-only"
        ]),
        "image\n"
    );
    assert_eq!(
        listing(&mountpoint(&b, "named")),
        ["group", "image-only", "passwd"]
    );
    b.ok(&["volume", "rm", "named"]);
    assert_left(&b, &[]);
}

#[test]
fn a_tmpfs_volume_is_mounted_while_used() {
    let b = Berth::new();
    plain_image(&b);
    b.ok(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=1m,mode=0770",
        "fast",
    ]);
    assert_eq!(
        inspect(&b, "fast")["Options"],
        serde_json::json!({"device": "tmpfs", "o": "size=1m,mode=0770", "type": "tmpfs"})
    );
    let out = b.ok(&[
        "run", "--rm", "-v", "fast:/fast", "bb:1", "sh", "-c",
        "grep ' /fast ' /proc/mounts | cut -d' ' -f3; stat -c %a /fast; echo x > /fast/f; cat /fast/f",
    ]);
    assert_eq!(out, "tmpfs\n770\nx\n");
    // No container runs: unmounted on the host, and (as with Docker) the content is gone.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(mountpoint(&b, "fast").to_str().unwrap()));
    assert_eq!(
        b.ok(&[
            "run",
            "--rm",
            "-v",
            "fast:/fast",
            "bb:1",
            "ls",
            "-A",
            "/fast"
        ]),
        ""
    );
    // Not pruned even with -a: Docker never prunes volumes with options.
    assert_eq!(
        b.ok(&["volume", "prune", "-f", "-a"]),
        "Total reclaimed space: 0B\n"
    );
    b.ok(&["volume", "rm", "fast"]);

    // --mount makes one on the fly, anonymous here, gone with --rm; a quoted field
    // keeps its commas.
    let out = b.ok(&[
        "run", "--rm", "--mount",
        "type=volume,dst=/scratch,volume-opt=type=tmpfs,volume-opt=device=tmpfs,\"volume-opt=o=size=1m,mode=0700\",volume-label=kind=scratch",
        "bb:1", "sh", "-c", "grep ' /scratch ' /proc/mounts | cut -d' ' -f3; stat -c %a /scratch",
    ]);
    assert_eq!(out, "tmpfs\n700\n");

    // A mount that fails fails the start, and nothing stays mounted or created.
    b.ok(&[
        "volume",
        "create",
        "-o",
        "type=ext4",
        "-o",
        "device=/no/such/disk",
        "broken",
    ]);
    let err = fails(&b, 125, &["run", "--rm", "-v", "broken:/b", "bb:1", "true"]);
    assert!(
        err.contains("failed to mount local volume: mount /no/such/disk:")
            && err.contains("No such file or directory"),
        "{err}"
    );
    b.ok(&["volume", "rm", "broken"]);
    assert_left(&b, &[]);
}

#[test]
fn bad_volume_input_leaves_nothing_behind() {
    let b = Berth::new();
    plain_image(&b);
    b.ok(&["create", "--name", "taken", "bb:1"]);
    let cid = b.tmp.path().join("cid");
    std::fs::write(&cid, "x").unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "--rm", "-v", ":/x", "bb:1", "true"],
            "invalid volume specification: ':/x'",
        ),
        (
            &["run", "--rm", "-v", "a/b:/x", "bb:1", "true"],
            INVALID_NAME,
        ),
        (&["create", "-v", "a/b:/x", "bb:1"], INVALID_NAME),
        (
            &[
                "run",
                "--rm",
                "--mount",
                "type=volume,src=a/b,dst=/x",
                "bb:1",
                "true",
            ],
            INVALID_NAME,
        ),
        (
            &[
                "run",
                "--rm",
                "--mount",
                "type=volume,dst=/x,readonly",
                "bb:1",
                "true",
            ],
            "must not set ReadOnly mode when using anonymous volumes",
        ),
        (
            &["run", "--rm", "-v", "ok:x", "bb:1", "true"],
            "mount path must be absolute",
        ),
        (
            &["run", "--rm", "-v", "ok:/x", "-v", "ok2:/x", "bb:1", "true"],
            "Duplicate mount point: /x",
        ),
        (
            &[
                "run", "--name", "taken", "-v", "new1:/x", "-v", "/anon", "bb:1", "true",
            ],
            "is already in use",
        ),
        (
            &[
                "run",
                "--cidfile",
                cid.to_str().unwrap(),
                "-v",
                "new2:/x",
                "bb:1",
                "true",
            ],
            "container ID file found",
        ),
        (
            &[
                "run",
                "--rm",
                "-v",
                "/anon",
                "--mount",
                "src=new3,dst=/x,volume-opt=colour=red",
                "bb:1",
                "true",
            ],
            "create new3: invalid option: \"colour\"",
        ),
        (
            &["create", "--mount", "dst=/x,volume-opt=type=tmpfs", "bb:1"],
            "missing required option: \"device\"",
        ),
    ];
    for (args, want) in cases {
        let err = fails(&b, 125, args);
        assert!(err.contains(want), "berth {args:?}: {err}");
    }
    let err = fails(&b, 1, &["volume", "create", "a/b"]);
    assert!(err.contains(INVALID_NAME), "{err}");
    assert_eq!(
        std::fs::read_to_string(&cid).unwrap(),
        "x",
        "someone else's cidfile"
    );
    b.ok(&["rm", "taken"]);
    assert_left(&b, &[]);
}

#[test]
fn parallel_runs_share_one_new_volume_and_copy_up_once() {
    let b = Berth::new();
    content_image(&b);
    let children: Vec<_> = (0..8)
        .map(|i| {
            b.cmd(&[
                "run",
                "--rm",
                "-v",
                "together:/data",
                "content:1",
                "sh",
                "-c",
                &format!("cat /data/greeting; echo {i} > /data/n{i}"),
            ])
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
        // A copy-up that raced another would fail on the files already there; one that
        // ran after a container wrote would not have happened at all.
        assert_eq!(String::from_utf8_lossy(&o.stdout), "hello\n", "run {i}");
    }
    let mut files: Vec<String> = std::fs::read_dir(mountpoint(&b, "together"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut want: Vec<String> = (0..8).map(|i| format!("n{i}")).collect();
    want.extend(["greeting", "link", "sub"].map(String::from));
    want.sort();
    assert_eq!(files, want);
    assert_eq!(
        names(&b),
        ["together"],
        "one volume, the anonymous ones gone"
    );
    b.ok(&["volume", "rm", "together"]);
    assert_left(&b, &[]);
}
