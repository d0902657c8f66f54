//! The system calls nix does not wrap the way the monitor needs them, each behind a safe
//! function. All `unsafe` of the crate lives here.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Marks every descriptor from 3 up close-on-exec. The CLI may hand us more than it
/// meant to (and the sync fd must not reach the runtime either); after this, a
/// descriptor reaches a child only by being made its stdio on purpose.
pub fn cloexec_from_3() {
    // SAFETY: close_range only changes descriptor flags; CLOSE_RANGE_CLOEXEC = 1 << 2.
    let r = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 1u32 << 2) };
    if r == 0 {
        return;
    }
    // Kernels before 5.11: walk the table instead.
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd >= 3)
        .collect();
    for fd in fds {
        // SAFETY: F_SETFD on a number that may or may not be open (the read_dir handle
        // is closed by now) changes flags or fails with EBADF; nothing is closed.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// Takes ownership of an inherited descriptor after checking that it is open. Not 0-2:
/// the detached monitor replaces its stdio with /dev/null.
pub fn inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 3 {
        return Err(io::Error::other("must be 3 or above"));
    }
    // SAFETY: F_GETFD only reads flags; it fails with EBADF if `fd` is not open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: the descriptor is open, and the command line gave it to us to own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub enum Forked {
    Parent(i32),
    Child,
}

/// fork(2). Called while the process has a single thread, before anything else runs.
pub fn fork() -> io::Result<Forked> {
    // SAFETY: the monitor is single-threaded (no thread is ever spawned), so the child
    // may run any code, not only async-signal-safe calls.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Ends the process without running anything else (the forked parent's exit).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches nothing shared with the child.
    unsafe { libc::_exit(code) }
}

pub fn set_nonblocking(fd: BorrowedFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let fl = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(fl | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// A pipe with both ends close-on-exec: (read, write).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)
}

/// poll(2) over `fds`; EINTR counts as "nothing ready".
pub fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<()> {
    let ms = match timeout {
        None => -1,
        // Round up, so a deadline 0.5 ms away does not spin with a zero timeout.
        Some(t) => i32::try_from(t.as_micros().div_ceil(1000)).unwrap_or(i32::MAX),
    };
    let n = libc::nfds_t::try_from(fds.len()).unwrap_or(libc::nfds_t::MAX);
    // SAFETY: `fds` is a valid, exclusively borrowed array of `n` pollfd structs.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), n, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// A child's end, as waitpid(2) reports it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The shell's convention, which Docker reports too: 128 + signal.
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit status {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// Reaps one exited child of any pid without blocking. libc rather than nix: nix turns a
/// real-time signal number into an error after the child is already reaped.
pub fn reap_one() -> Option<(i32, Exit)> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes one int into `status`.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        if pid <= 0 {
            return None;
        }
        let exit = if libc::WIFSIGNALED(status) {
            Exit::Signal(libc::WTERMSIG(status))
        } else {
            Exit::Code(libc::WEXITSTATUS(status))
        };
        return Some((pid, exit));
    }
}

pub fn set_winsize(fd: BorrowedFd, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize struct from the pointer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one descriptor sent with SCM_RIGHTS (the runtime's PTY master), close-on-exec
/// from the moment it arrives. Any extra descriptors in the message are closed.
pub fn recv_fd(sock: BorrowedFd) -> io::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 512];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
    )?;
    let mut fds = vec![];
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(list) = c {
            for fd in list {
                // SAFETY: SCM_RIGHTS installed these descriptors in our table just now
                // and nothing else refers to them.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    if fds.is_empty() {
        return Err(io::Error::other("no file descriptor in the message"));
    }
    Ok(fds.swap_remove(0))
}

/// Sends a whole attach frame (header and payload) without blocking or SIGPIPE. Returns
/// false when it did not fit in the socket buffer at once or the peer is gone: the
/// caller drops the client rather than leave half a frame on the wire.
pub fn send_frame(sock: BorrowedFd, header: &[u8; 8], payload: &[u8]) -> bool {
    use nix::sys::socket::{sendmsg, MsgFlags};
    let iov = [io::IoSlice::new(header), io::IoSlice::new(payload)];
    let flags = MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT;
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, &[], flags, None) {
            Ok(n) => return n == header.len() + payload.len(),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
}

/// Blocks the signals the monitor handles, so they queue on a signalfd instead of
/// interrupting it: SIGCHLD to reap, SIGTERM/SIGINT/SIGHUP/SIGQUIT to ignore (the
/// container decides when it ends). Children start with an empty mask again: Rust's
/// `Command` resets it between fork and exec.
pub fn signal_fd() -> io::Result<nix::sys::signalfd::SignalFd> {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        set.add(s);
    }
    set.thread_block()?;
    Ok(SignalFd::with_flags(
        &set,
        SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
    )?)
}

/// The pollfd for `fd`.
pub fn pollfd(fd: BorrowedFd, events: i16) -> libc::pollfd {
    libc::pollfd {
        fd: fd.as_fd().as_raw_fd(),
        events,
        revents: 0,
    }
}

extern "C" {
    /// The start of this executable's mapping and the end of its code, from the linker.
    static __executable_start: u8;
    static etext: u8;
}

/// Drops the code pages that setup touched (argument parsing, the runtime's create and
/// start, the console) from our page tables, so that for the long steady state only the
/// code the serve loop runs is mapped: 1.03 MB → 0.24 MB (idle) to 0.68 MB (logging) of
/// RSS here. The pages stay in
/// the page cache; one that is needed again is mapped back on its next use (with the
/// kernel's 64 KiB fault-around, which MADV_RANDOM does not turn off on 6.x; it is set
/// anyway for kernels where it does).
pub fn trim_resident_code() {
    // Only the addresses of the linker's symbols are taken; they are never read.
    let (start, end) = (
        std::ptr::addr_of!(__executable_start) as usize,
        std::ptr::addr_of!(etext) as usize,
    );
    let page = 4096;
    let start = start & !(page - 1);
    let len = (end - start + page - 1) & !(page - 1);
    // SAFETY: the range is our own read-only, file-backed text mapping; MADV_RANDOM only
    // changes read-ahead, and MADV_DONTNEED on a private file mapping only unmaps pages
    // that are refaulted from the file, unchanged (text is never written).
    unsafe {
        libc::madvise(start as *mut libc::c_void, len, libc::MADV_RANDOM);
        libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED);
    }
}
