//! CVE-2019-5736: the runtime binary must not be writable from inside a container.
//!
//! The init and every exec'd process are this binary until they exec the container's
//! program; a program that is `#!/proc/self/exe` makes the kernel run *this binary* inside
//! the container, where another container process can open `/proc/PID/exe` and, once we
//! exit, write through it to the host's file. So before entering a container the runtime
//! re-executes itself from a read-only view of its own file:
//!
//! 1. a binary already on a read-only mount needs nothing;
//! 2. otherwise a detached, read-only bind mount of the file (open_tree + mount_setattr):
//!    it costs one execve, appears in no mount table, and writes through it fail with EROFS;
//! 3. where that is not allowed (no CAP_SYS_ADMIN over the mount namespace), a sealed memfd
//!    copy, runc's old and slower way.

use crate::error::{Context, Error, Result};
use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

/// Set across the re-exec so a second pass never loops (a memfd is not a read-only mount).
const MARK: &str = "_BERTH_RUNTIME_SEALED";

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;

/// The mount attributes of the read-only view (also made by the binary's entry point,
/// before glibc starts).
pub const VIEW_ATTRS: u64 = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
const OPEN_TREE_CLONE: libc::c_uint = 1;

/// Re-executes through a read-only view unless the binary already is one. Returns only
/// when no re-exec is needed.
pub fn ensure() -> Result<()> {
    if std::env::var_os(MARK).is_some() {
        // SAFETY: called at the start of main, before any thread exists.
        std::env::remove_var(MARK);
        return Ok(());
    }
    let exe = std::fs::File::open("/proc/self/exe").ctx(|| "open /proc/self/exe")?;
    let vfs = nix::sys::statvfs::fstatvfs(&exe).ctx(|| "statvfs /proc/self/exe")?;
    if vfs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) {
        return Ok(());
    }
    let fd = match readonly_bind() {
        Ok(fd) => fd,
        Err(_) => sealed_memfd(exe)?,
    };
    reexec(fd)
}

fn readonly_bind() -> std::io::Result<OwnedFd> {
    // SAFETY: open_tree takes a NUL-terminated path and flags; it returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c"/proc/self/exe".as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a successful open_tree returns a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attr = MountAttr {
        attr_set: VIEW_ATTRS,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: attr is a live mount_attr of the size passed; the path is an empty C string.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

fn sealed_memfd(mut exe: std::fs::File) -> Result<OwnedFd> {
    use nix::fcntl::{fcntl, FcntlArg, SealFlag};
    use nix::sys::memfd::{memfd_create, MFdFlags};
    let fd = memfd_create(
        c"berth-runtime",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .ctx(|| "memfd_create for a sealed copy of the runtime")?;
    let mut f = std::fs::File::from(fd);
    std::io::copy(&mut exe, &mut f).ctx(|| "copy the runtime binary into a memfd")?;
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    fcntl(&f, FcntlArg::F_ADD_SEALS(seals)).ctx(|| "seal the runtime's memfd copy")?;
    Ok(OwnedFd::from(f))
}

fn reexec(fd: OwnedFd) -> Result<()> {
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.into_vec()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::Other("argument with a NUL byte".into()))?;
    let mut env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv: OsString = k;
            kv.push("=");
            kv.push(v);
            CString::new(kv.into_vec()).ok()
        })
        .collect();
    env.push(CString::new(format!("{MARK}=1")).expect("no NUL"));
    let argv: Vec<*const libc::c_char> = args
        .iter()
        .map(|a| a.as_ptr())
        .chain([std::ptr::null()])
        .collect();
    let envp: Vec<*const libc::c_char> = env
        .iter()
        .map(|e| e.as_ptr())
        .chain([std::ptr::null()])
        .collect();
    // SAFETY: argv and envp are NULL-terminated arrays of live C strings; on success this
    // never returns, on failure nothing was changed.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Err(std::io::Error::last_os_error()).ctx(|| "re-execute the runtime from its read-only copy")
}
