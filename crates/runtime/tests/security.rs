//! The classic runtime escapes, each refused.

mod common;
use common::*;
use serde_json::json;

/// CVE-2021-30465 family: a mount destination that goes through a symlink planted in the
/// rootfs must land inside the rootfs, never on the host.
#[test]
fn mount_destination_symlinks_stay_inside_the_rootfs() {
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "grep -c ' /abs/mnt \\| /rel/mnt ' /proc/self/mountinfo; true",
    ]);
    let outside = b.tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    // Absolute and relative links that point at the host directory if followed naively.
    std::os::unix::fs::symlink(&outside, b.rootfs().join("abs")).unwrap();
    let depth = b.rootfs().components().count();
    let rel = format!("{}{}", "../".repeat(depth), outside.display());
    std::os::unix::fs::symlink(&rel, b.rootfs().join("rel")).unwrap();
    b.spec["mounts"].as_array_mut().unwrap().extend([
        json!({"destination": "/abs/mnt", "type": "tmpfs", "source": "tmpfs"}),
        json!({"destination": "/rel/mnt", "type": "tmpfs", "source": "tmpfs"}),
    ]);
    b.spec["root"]["readonly"] = json!(false);
    let (code, _, err) = b.run("cve1");
    assert_eq!(code, 0, "{err}");
    assert!(
        !outside.join("mnt").exists(),
        "a mount point was created on the host"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(outside.to_str().unwrap()));
    // The links resolved inside the rootfs instead.
    assert!(b
        .rootfs()
        .join(outside.strip_prefix("/").unwrap())
        .join("mnt")
        .is_dir());
    b.assert_no_leftovers("cve1");
}

/// CVE-2024-21626: no descriptor of the runtime reaches the container, and a cwd through
/// /proc/self/fd is refused.
#[test]
fn no_fd_leaks_and_no_cwd_outside() {
    let b = Bundle::new(&["ls", "/proc/self/fd"]);
    let (code, out, err) = b.run("cve2");
    assert_eq!(code, 0, "{err}");
    let fds: Vec<&str> = out.lines().collect();
    // ls itself holds one descriptor for the directory it lists.
    assert_eq!(fds, ["0", "1", "2", "3"], "leaked descriptors: {out}");

    let mut b = Bundle::new(&["pwd"]);
    for n in 3..8 {
        b.spec["process"]["cwd"] = json!(format!("/proc/self/fd/{n}"));
        let (code, out, _) = b.run(&format!("cve2-{n}"));
        assert_ne!(code, 0, "cwd /proc/self/fd/{n} was accepted: {out}");
        b.assert_no_leftovers(&format!("cve2-{n}"));
    }
}

/// CVE-2019-5736: while the runtime binary runs inside the container's pid namespace
/// (the init before `start`, an exec before it execs), container processes cannot reach
/// it through /proc/PID/exe.
#[test]
fn runtime_binary_is_not_reachable_from_the_container() {
    let b = Bundle::new(&["true"]);
    assert!(b.rt(&["create", "cve3"]).status.success());
    // PID 1 of the container is still the runtime, waiting for `start`.
    let o = b.rt(&[
        "exec",
        "cve3",
        "sh",
        "-c",
        "readlink /proc/1/exe && echo REACHABLE; echo x >> /proc/1/exe && echo WRITABLE; true",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        !out.contains("REACHABLE") && !out.contains("WRITABLE"),
        "{out}"
    );
    assert!(b.rt(&["delete", "cve3"]).status.success());
    b.assert_no_leftovers("cve3");
}

/// CVE-2019-5736, the other half: even when a container gets hold of the runtime binary
/// (a `#!/proc/self/exe` program makes the kernel run it inside the container), the file it
/// reaches is a read-only view, so nothing can be written through it to the host's binary.
#[test]
fn runtime_binary_in_the_container_is_read_only() {
    use std::os::fd::AsRawFd;
    let b = Bundle::new(&["true"]);
    assert!(b.rt(&["create", "cve4"]).status.success());
    let pid = b.state("cve4")["pid"].as_i64().unwrap();
    let exe = std::fs::File::open(format!("/proc/{pid}/exe")).unwrap();
    let vfs = nix::sys::statvfs::fstatvfs(&exe).unwrap();
    let ro = vfs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY);
    let w = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/self/fd/{}", exe.as_raw_fd()));
    assert!(b.rt(&["delete", "cve4"]).status.success());
    assert!(
        ro,
        "the container's init runs a writable copy of the runtime"
    );
    assert!(w.is_err(), "the runtime binary could be opened for writing");
    b.assert_no_leftovers("cve4");
}
