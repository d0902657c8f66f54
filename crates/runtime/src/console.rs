//! The container's terminal: the init opens a pty in the container's devpts, passes the
//! master to the caller's --console-socket with SCM_RIGHTS (the payload is the pty's
//! name, as runc sends it), and makes the slave its controlling terminal and stdio.
//! `process.consoleSize` is set on the pty before anything can read it, so a program
//! that asks for its size at once (`stty size`) never sees 0x0.

use crate::error::{Context, Error, Result};
use nix::fcntl::OFlag;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

nix::ioctl_write_int_bad!(tiocsctty, libc::TIOCSCTTY);

pub fn setup_pty(socket: RawFd, process: &oci_spec::runtime::Process) -> Result<()> {
    let (uid, gid) = (process.user().uid(), process.user().gid());
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .ctx(|| "open /dev/ptmx in the container (is /dev/pts mounted?)")?;
    nix::pty::grantpt(&master).ctx(|| "grantpt")?;
    nix::pty::unlockpt(&master).ctx(|| "unlockpt")?;
    let name = nix::pty::ptsname_r(&master).ctx(|| "ptsname")?;
    // TIOCGPTPEER opens the slave through the master, never through a path someone
    // could have swapped.
    // SAFETY: TIOCGPTPEER on a valid pty master returns a new fd or -1.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(Error::Sys {
            context: "open pty slave".into(),
            errno: nix::errno::Errno::last(),
        });
    }
    // SAFETY: the ioctl just returned this new descriptor to us.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    let _ = nix::unistd::fchown(
        &slave,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    );
    if let Some(size) = process.console_size() {
        let ws = libc::winsize {
            ws_row: u16::try_from(size.height()).unwrap_or(u16::MAX),
            ws_col: u16::try_from(size.width()).unwrap_or(u16::MAX),
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize struct from the pointer.
        if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
            return Err(Error::Sys {
                context: "set the terminal's size (process.consoleSize)".into(),
                errno: nix::errno::Errno::last(),
            });
        }
    }
    let fds = [master.as_raw_fd()];
    let iov = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(
        socket,
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .ctx(|| "send pty master to --console-socket")?;
    drop(master);
    for target in 0..3 {
        // SAFETY: dup2 onto stdio replaces them with the slave; we own both ends.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(Error::Sys {
                context: "dup2 pty slave".into(),
                errno: nix::errno::Errno::last(),
            });
        }
    }
    // SAFETY: TIOCSCTTY on our own session's new terminal.
    unsafe { tiocsctty(0, 0) }.ctx(|| "make the pty the controlling terminal")?;
    Ok(())
}
