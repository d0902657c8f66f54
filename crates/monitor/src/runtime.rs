//! The OCI runtime, driven only through runc's command line, so any runc-compatible
//! binary works. Failures are explained by the runtime's own JSON log.

use crate::json;
use std::ffi::OsString;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Runtime {
    pub path: PathBuf,
    pub root: Option<PathBuf>,
    pub args: Vec<OsString>,
    /// STATE/runtime.log, absolute: runc resolves paths after moving into the bundle.
    pub log: PathBuf,
    /// A read-only view of the runtime's file (see [`readonly_view`]), when one could be
    /// made.
    pub view: Option<OwnedFd>,
}

impl Runtime {
    /// `RUNTIME [--root R] [ARGS] --log LOG --log-format json SUBCOMMAND`, with stdio
    /// /dev/null unless the caller sets it.
    pub fn command(&self, sub: &str) -> Command {
        let mut c = match &self.view {
            // The fd is close-on-exec: an ELF binary is opened before that happens, and
            // nothing of it reaches the runtime's process.
            Some(fd) => {
                let mut c = Command::new(format!("/proc/self/fd/{}", fd.as_raw_fd()));
                c.arg0(&self.path);
                c
            }
            None => Command::new(&self.path),
        };
        if let Some(r) = &self.root {
            c.arg("--root").arg(r);
        }
        c.args(&self.args)
            .arg("--log")
            .arg(&self.log)
            .args(["--log-format", "json", sub])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// Where the runtime's log ends now: errors written after this belong to the next
    /// command, not to an earlier run of this container.
    pub fn log_mark(&self) -> u64 {
        std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    /// The message of the last `"level":"error"` line logged since `mark`.
    pub fn error_since(&self, mark: u64) -> Option<String> {
        last_error(&self.log, mark).ok().flatten()
    }
}

fn last_error(path: &Path, mark: u64) -> io::Result<Option<String>> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    // A runtime's error is a few lines; a log that grew by megabytes (a --debug runtime)
    // is read from its tail only.
    let from = mark.max(len.saturating_sub(64 * 1024));
    f.seek(SeekFrom::Start(from))?;
    let mut text = Vec::new();
    f.read_to_end(&mut text)?;
    let text = String::from_utf8_lossy(&text);
    Ok(text
        .lines()
        .rev()
        .filter(|l| l.contains("\"level\":\"error\"") || l.contains("\"level\": \"error\""))
        .find_map(|l| json::string_field(l, "msg")))
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// The runtime's file on a detached, read-only bind mount (open_tree + mount_setattr: in
/// no mount table, gone with the last fd or process using it). Executed from there, the
/// runtime's process cannot be written through /proc/PID/exe from inside a container
/// (CVE-2019-5736), so berth-runtime, finding itself on a read-only mount, skips the
/// re-exec it would otherwise do for that protection (~0.45 ms of every container start;
/// runc and crun protect themselves as before). None for a runtime found through PATH, a
/// script, or where the kernel refuses; the runtime is then executed by its path.
pub fn readonly_view(path: &Path) -> Option<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const MOUNT_ATTR_NOSUID: u64 = 0x2;
    const MOUNT_ATTR_NODEV: u64 = 0x4;
    if !path.is_absolute() {
        return None;
    }
    let cpath = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: open_tree takes a NUL-terminated path and flags; it returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            cpath.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: a successful open_tree returns a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
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
    if r != 0 {
        return None;
    }
    // Only for an ELF binary: a script executed as /proc/self/fd/N would have its
    // interpreter open that path after the close-on-exec fd is gone.
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    file.read_exact(&mut magic).ok()?;
    (magic == *b"\x7fELF").then_some(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_runtime_is_run_by_its_path() {
        let d = tempfile::tempdir().unwrap();
        let script = d.path().join("runtime.sh");
        std::fs::write(&script, "#!/bin/sh\nexec runc \"$@\"\n").unwrap();
        assert!(readonly_view(&script).is_none());
        assert!(readonly_view(Path::new("/bin/sleep")).is_some());
    }

    #[test]
    fn runtime_runs_from_a_read_only_view() {
        // A copy nobody else runs: while any process executes the file, a reopen for
        // writing fails with ETXTBSY before the mount is looked at.
        let d = tempfile::tempdir().unwrap();
        let copy = d.path().join("sleep");
        std::fs::copy("/bin/sleep", &copy).unwrap();
        let sleep = copy.as_path();
        let rt = Runtime {
            path: sleep.into(),
            root: None,
            args: vec![],
            log: "/dev/null".into(),
            view: readonly_view(sleep),
        };
        assert!(
            rt.view.is_some(),
            "open_tree/mount_setattr refused (not root?)"
        );
        // The program `command` runs (its runc-style arguments mean nothing to sleep).
        let program = rt.command("run").get_program().to_owned();
        assert!(program.to_string_lossy().starts_with("/proc/self/fd/"));
        let mut c = Command::new(program);
        c.arg0(sleep).arg("5");
        let mut child = c.spawn().unwrap();
        let exe = format!("/proc/{}/exe", child.id());
        let vfs = nix::sys::statvfs::statvfs(exe.as_str()).unwrap();
        // CVE-2019-5736's way in: a handle on the running binary, reopened for writing
        // once nothing runs it any more (never written to here).
        let handle = nix::fcntl::open(
            exe.as_str(),
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        );
        let _ = child.kill();
        let _ = child.wait();
        let handle = handle.unwrap();
        let reopened = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{}", handle.as_raw_fd()));
        assert!(vfs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
        assert_eq!(reopened.unwrap_err().raw_os_error(), Some(libc::EROFS));
    }

    #[test]
    fn last_error_after_the_mark() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("runtime.log");
        let old = "{\"level\":\"error\",\"msg\":\"old failure\",\"time\":\"t\"}\n";
        std::fs::write(&log, old).unwrap();
        let rt = Runtime {
            path: "runc".into(),
            root: None,
            args: vec![],
            log: log.clone(),
            view: None,
        };
        let mark = rt.log_mark();
        assert_eq!(rt.error_since(0).as_deref(), Some("old failure"));
        assert_eq!(rt.error_since(mark), None);
        let new = "{\"level\":\"warning\",\"msg\":\"w\",\"time\":\"t\"}\n\
                   {\"level\":\"error\",\"msg\":\"exec: \\\"nope\\\": no such file\",\"time\":\"t\"}\n\
                   {\"level\":\"info\",\"msg\":\"bye\",\"time\":\"t\"}\n";
        std::fs::write(&log, format!("{old}{new}")).unwrap();
        assert_eq!(
            rt.error_since(mark).as_deref(),
            Some("exec: \"nope\": no such file")
        );
    }
}
