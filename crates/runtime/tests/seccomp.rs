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
