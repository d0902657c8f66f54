//! `--pidfd-socket`: a pidfd of the container's process, sent over a unix socket (as runc
//! 1.2 does), so a caller can wait for or signal exactly that process with no pid reuse race.

use crate::error::{Context, Error, Result};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

pub fn open(pid: i32) -> Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(Error::Sys {
            context: format!("pidfd_open {pid}"),
            errno: nix::errno::Errno::last(),
        });
    }
    // SAFETY: the fd was just returned to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

pub fn send(socket: &Path, pid: i32) -> Result<()> {
    let fd = open(pid)?;
    let conn = crate::sockpath::connect(socket)
        .ctx(|| format!("connect to --pidfd-socket {}", socket.display()))?;
    let fds = [fd.as_raw_fd()];
    let iov = [IoSlice::new(b"pidfd")];
    sendmsg::<()>(
        conn.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .ctx(|| format!("send pidfd to {}", socket.display()))?;
    Ok(())
}
