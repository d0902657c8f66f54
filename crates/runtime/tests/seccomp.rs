//! linux.seccomp through libseccomp, on real containers.

mod common;
use common::*;
use serde_json::json;

#[test]
fn profile_blocks_a_syscall_with_the_requested_errno() {
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "mkdir /dev/shm/x 2>&1; ls -d /dev/shm/x 2>&1; true",
    ]);
    b.spec["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    });
    let (code, out, err) = b.run("sc1");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Function not implemented"), "{out}");
    b.assert_no_leftovers("sc1");

    // Without noNewPrivileges the filter is loaded early, before capabilities are dropped.
    b.spec["process"]["noNewPrivileges"] = json!(false);
    let (code, out, err) = b.run("sc2");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Function not implemented"), "{out}");
}

#[test]
fn kill_action_ends_the_container_with_sigsys() {
    let mut b = Bundle::new(&["sh", "-c", "exec mkdir /dev/shm/y"]);
    b.spec["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS"}]
    });
    let (code, _, err) = b.run("sc3");
    assert_eq!(code, 128 + libc::SIGSYS, "{err}");
}

#[test]
fn unknown_action_is_named() {
    let mut b = Bundle::new(&["true"]);
    b.spec["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_FOO"}]
    });
    b.write();
    let o = b.rt(&["create", "sc4"]);
    assert!(!o.status.success());
    let err = stderr_line(&o);
    assert!(
        err.contains("linux.seccomp.syscalls[0].action") && err.contains("SCMP_ACT_FOO"),
        "{err}"
    );
    b.assert_no_leftovers("sc4");
}

/// SCMP_ACT_NOTIFY with a listenerPath: the runtime sends the notify fd and the process
/// state to the listener, which then decides the syscall's outcome (here: EACCES for
/// mkdir). Argument conditions and the arch list are part of the same profile.
#[test]
fn notify_action_reaches_the_listener() {
    use libseccomp::{ScmpNotifReq, ScmpNotifResp};
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "mkdir /dev/shm/z 2>&1; touch /dev/shm/f; chmod 777 /dev/shm/f 2>/dev/null || echo chmod-777-refused; \
         chmod 755 /dev/shm/f && echo chmod-755-ok",
    ]);
    let sock = b.tmp.path().join("seccomp.sock");
    let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    b.spec["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "listenerPath": sock,
        "listenerMetadata": "berth-test",
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"},
            // Mode 0777 is refused; any other mode does not match and is allowed.
            {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
             "args": [{"index": 1, "value": 511, "op": "SCMP_CMP_EQ"}]},
            {"names": ["fchmodat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
             "args": [{"index": 2, "value": 511, "op": "SCMP_CMP_EQ"}]}
        ]
    });
    let listener = std::thread::spawn(move || {
        let (fd, msg) = accept_fd(&l);
        let state: serde_json::Value = serde_json::from_slice(&msg).unwrap();
        let req = ScmpNotifReq::receive(fd).unwrap();
        ScmpNotifResp::new_error(
            req.id,
            -libc::EACCES,
            libseccomp::ScmpNotifRespFlags::empty(),
        )
        .respond(fd)
        .unwrap();
        state
    });
    let (code, out, err) = b.run("sc5");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Permission denied"), "{out}");
    assert!(out.contains("chmod-777-refused"), "{out}");
    assert!(out.contains("chmod-755-ok"), "{out}");
    let state = listener.join().unwrap();
    assert_eq!(state["metadata"], "berth-test");
    assert_eq!(state["state"]["id"], "sc5");
    assert_eq!(state["fds"][0], "seccompFd");
    b.assert_no_leftovers("sc5");
}
