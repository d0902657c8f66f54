//! Device rules on cgroup2: a BPF_PROG_TYPE_CGROUP_DEVICE program built from the OCI rules
//! and attached to the container's cgroup, as runc and crun do.
//!
//! The kernel calls the program with `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major;
//! u32 minor; }`, where access_type is `(access << 16) | type`. The rules are emitted last
//! first, each returning its verdict on a match, so the last matching rule wins (the v1
//! semantics of devices.allow/deny written in order); nothing matching means deny.

use crate::{Error, Result};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    /// src register in the high nibble, dst in the low one.
    regs: u8,
    off: i16,
    imm: i32,
}

const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const AND32_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const RSH32_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const MOV32_K: u8 = 0xb4; // BPF_ALU | BPF_MOV | BPF_K
const MOV32_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JNE_X: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

/// The program for `rules`.
pub fn program(rules: &[LinuxDeviceCgroup]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),        // r2 = access_type
        insn(AND32_K, 2, 0, 0, 0xffff), // r2 = type
        insn(LDX_W, 3, 1, 0, 0),
        insn(RSH32_K, 3, 0, 0, 16), // r3 = access
        insn(LDX_W, 4, 1, 4, 0),    // r4 = major
        insn(LDX_W, 5, 1, 8, 0),    // r5 = minor
    ];
    for r in rules.iter().rev() {
        let typ = match r.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => None,
            LinuxDeviceType::B => Some(DEV_BLOCK),
            LinuxDeviceType::C | LinuxDeviceType::U => Some(DEV_CHAR),
            // The device cgroup never sees fifos.
            LinuxDeviceType::P => continue,
        };
        let access = r
            .access()
            .as_deref()
            .filter(|a| !a.is_empty())
            .unwrap_or("rwm")
            .chars()
            .fold(0, |m, c| {
                m | match c {
                    'r' => ACC_READ,
                    'w' => ACC_WRITE,
                    'm' => ACC_MKNOD,
                    _ => 0,
                }
            });
        // Jumps are filled in once the block's length is known: all go past its end.
        let mut block: Vec<(Insn, bool)> = Vec::new();
        if let Some(t) = typ {
            block.push((insn(JNE_K, 2, 0, 0, t), true));
        }
        if access != ACC_READ | ACC_WRITE | ACC_MKNOD {
            block.push((insn(MOV32_X, 1, 3, 0, 0), false));
            block.push((insn(AND32_K, 1, 0, 0, access), false));
            block.push((insn(JNE_X, 1, 3, 0, 0), true));
        }
        if let Some(m) = r.major().filter(|m| *m >= 0) {
            block.push((insn(JNE_K, 4, 0, 0, m as i32), true));
        }
        if let Some(m) = r.minor().filter(|m| *m >= 0) {
            block.push((insn(JNE_K, 5, 0, 0, m as i32), true));
        }
        block.push((insn(MOV32_K, 0, 0, 0, i32::from(r.allow())), false));
        block.push((insn(EXIT, 0, 0, 0, 0), false));
        let n = block.len();
        let unconditional = block.iter().all(|(_, jump)| !jump);
        p.extend(block.into_iter().enumerate().map(|(i, (mut ins, jump))| {
            if jump {
                ins.off = (n - i - 1) as i16;
            }
            ins
        }));
        // A rule that matches everything ends the program: the verifier refuses
        // unreachable instructions after it.
        if unconditional {
            return p;
        }
    }
    p.push(insn(MOV32_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<i64> {
    // SAFETY: attr is a live, fully initialised repr(C) bpf_attr prefix of the size passed;
    // the kernel reads (and for logs writes) only within it and the buffers it points to,
    // which the caller keeps alive for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn load(prog: &[Insn], with_log: bool) -> std::result::Result<OwnedFd, (std::io::Error, String)> {
    let license = b"Apache\0";
    let mut log = vec![0u8; if with_log { 1 << 16 } else { 0 }];
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"berth_device");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: u32::from(with_log),
        log_size: log.len() as u32,
        log_buf: if with_log { log.as_mut_ptr() as u64 } else { 0 },
        prog_name: name,
        ..Default::default()
    };
    match bpf(BPF_PROG_LOAD, &mut attr) {
        // SAFETY: a successful BPF_PROG_LOAD returns a new fd that nothing else owns.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(e) => {
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            Err((e, String::from_utf8_lossy(&log[..end]).trim().to_string()))
        }
    }
}

/// Loads the program for `rules` and attaches it to the cgroup2 directory `dir`, replacing
/// the one a previous call attached (exclusive attach replaces, so `update` works too).
pub fn apply(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let prog = program(rules);
    let fd = load(&prog, false)
        .or_else(|_| load(&prog, true))
        .map_err(|(e, log)| {
            Error::Invalid(format!(
                "load the cgroup2 device program: {e}{}",
                if log.is_empty() {
                    String::new()
                } else {
                    format!(" ({log})")
                }
            ))
        })?;
    let cg = std::fs::File::open(dir).map_err(|e| Error::Io {
        what: "open".into(),
        path: dir.into(),
        err: e,
    })?;
    let mut attr = ProgAttachAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_bpf_fd: fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|e| Error::Io {
        what: "attach the device program to".into(),
        path: dir.into(),
        err: e,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    fn rule(
        allow: bool,
        typ: LinuxDeviceType,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(typ)
            .access(access);
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build().unwrap()
    }

    #[test]
    fn blocks_jump_past_their_end() {
        let p = program(&[rule(true, LinuxDeviceType::C, Some(1), Some(3), "rw")]);
        // prologue 6, block: jne type, mov, and, jne access, jne major, jne minor, mov, exit; tail 2
        assert_eq!(p.len(), 6 + 8 + 2);
        assert_eq!(p[6], insn(JNE_K, 2, 0, 7, DEV_CHAR));
        assert_eq!(p[9], insn(JNE_X, 1, 3, 4, 0));
        assert_eq!(p[10], insn(JNE_K, 4, 0, 3, 1));
        assert_eq!(p[11], insn(JNE_K, 5, 0, 2, 3));
        assert_eq!(p[12], insn(MOV32_K, 0, 0, 0, 1));
    }

    /// On a real cgroup2 mount: deny all, allow /dev/null; a shell moved into the cgroup can
    /// read /dev/null and not /dev/zero.
    #[test]
    fn kernel_enforces_program() {
        let layout = crate::Layout::detect().unwrap();
        let Some(u) = layout.unified else {
            panic!("this test needs a cgroup2 mount");
        };
        let dir = u
            .mountpoint
            .join(format!("berth-bpf-test-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let rules = [
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(1), Some(3), "rwm"),
        ];
        let applied = apply(&dir, &rules);
        let out = applied.as_ref().ok().map(|_| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "echo $$ > {}/cgroup.procs && head -c1 /dev/null && ! head -c1 /dev/zero 2>/dev/null",
                    dir.display()
                ))
                .status()
                .unwrap()
        });
        let _ = std::fs::remove_dir(&dir);
        applied.unwrap();
        assert!(out.unwrap().success());
    }
}
