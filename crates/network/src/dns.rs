//! The lifetime of a user network's DNS server (`berth-dns`, crates/dns): started by
//! the first container that gets an address on the network, stopped when the last one
//! gives its address back or the network is removed. There is no daemon: whoever
//! changes a network's leases starts or stops its server, under `DIR/dns.lock`.
//!
//! The order makes it race-free: [`ensure`] runs after the caller's lease is recorded,
//! [`stop_unused`] after a lease is released, and both look at the leases under the
//! lock. So a stop either sees the new lease and keeps the server, or ends before the
//! start looks, which then starts a new one. The server does the same check itself
//! every few seconds under the same lock (a CLI killed between its release and its
//! stop would otherwise leave it running).
//!
//! `DIR/dns/<network id>` holds the server's pid and start time (so a reused pid is
//! never signalled).

use crate::state::State;
use crate::Error;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to bind its sockets and report.
const START_LIMIT: Duration = Duration::from_secs(10);

/// Holds `DIR/dns.lock`: starting and stopping servers, and a server's own check
/// whether it is still needed.
pub fn lock(dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, Error> {
    crate::lock_file(dir, "dns.lock", nix::fcntl::FlockArg::LockExclusive)
}

/// `DIR/dns/<id>`: the pid file of network `id`'s server.
pub fn pid_file(dir: &Path, id: &str) -> PathBuf {
    dir.join("dns").join(id)
}

/// The process recorded in network `id`'s pid file, if it still runs.
pub fn running(dir: &Path, id: &str) -> Option<i32> {
    let text = std::fs::read_to_string(pid_file(dir, id)).ok()?;
    let (pid, start) = text.trim().split_once(' ')?;
    let (pid, start): (i32, u64) = (pid.parse().ok()?, start.parse().ok()?);
    (start_time(pid) == Some(start)).then_some(pid)
}

/// Records `pid` as network `id`'s server. The caller holds the lock.
pub fn record(dir: &Path, id: &str, pid: i32) -> Result<(), Error> {
    let start =
        start_time(pid).ok_or_else(|| Error::Other(format!("DNS server {pid} exited at once")))?;
    let path = pid_file(dir, id);
    let io = |source| Error::Netns {
        what: "writing",
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir.join("dns")).map_err(io)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{pid} {start}\n")).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)
}

/// Starts the DNS server of network `name` (id `id`) unless it runs; returns once it
/// answers on the gateway. `binary` is `berth-dns`.
pub fn ensure(dir: &Path, id: &str, name: &str, binary: &Path) -> Result<(), Error> {
    let _lock = lock(dir)?;
    if running(dir, id).is_some() {
        return Ok(());
    }
    let failed = |why: String| Error::Other(format!("DNS server for network {name}: {why}"));
    // The server forks: this child exits as soon as the grandchild runs, and the
    // grandchild (setsid, its own session) reports on stdout once its sockets are bound,
    // then lets go of the pipe.
    let mut child = Command::new(binary)
        .arg("--state-dir")
        .arg(dir)
        .arg("--network-id")
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .current_dir("/")
        .spawn()
        .map_err(|e| failed(format!("{}: {e}", binary.display())))?;
    let out = child.stdout.take().map(OwnedFd::from);
    let _ = child.wait();
    let report = match out {
        Some(fd) => read_report(fd, START_LIMIT),
        None => String::new(),
    };
    match report.trim().split_once(' ') {
        Some(("ready", pid)) => {
            let pid: i32 = pid
                .parse()
                .map_err(|_| failed(format!("bad report {report:?}")))?;
            record(dir, id, pid)
        }
        Some(("error", why)) => Err(failed(why.to_string())),
        _ if report.is_empty() => Err(failed("it exited without a word".into())),
        _ => Err(failed(format!("bad report {report:?}"))),
    }
}

/// Reads the server's one-line report until EOF or `limit`.
fn read_report(fd: OwnedFd, limit: Duration) -> String {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = Instant::now() + limit;
    let mut file = std::fs::File::from(fd);
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || out.len() > 4096 {
            break;
        }
        let ms = PollTimeout::try_from(left.as_millis().min(10_000) as i32 + 1)
            .unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(0) => continue,
            Ok(_) => match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    if out.contains(&b'\n') {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            },
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Stops network `network`'s server if no address is leased on it any more. `state`
/// is the caller's open database.
pub fn stop_unused(dir: &Path, state: &State, network: &str) -> Result<(), Error> {
    let Some(def) = state.defs()?.into_iter().find(|d| d.name == network) else {
        return Ok(());
    };
    let _lock = lock(dir)?;
    if state.lease_count(network)? > 0 {
        return Ok(());
    }
    stop_locked(dir, &def.id)
}

/// Stops network `id`'s server whatever its leases (`network rm`).
pub fn stop(dir: &Path, id: &str) -> Result<(), Error> {
    let _lock = lock(dir)?;
    stop_locked(dir, id)
}

fn stop_locked(dir: &Path, id: &str) -> Result<(), Error> {
    let path = pid_file(dir, id);
    if let Some(pid) = running(dir, id) {
        kill_and_wait(pid)?;
    }
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Netns {
            what: "removing",
            path,
            source: e,
        }),
        _ => Ok(()),
    }
}

/// SIGTERM, then SIGKILL after a second; returns once the process is gone, so its
/// sockets are closed and a new server can bind the same address.
fn kill_and_wait(pid: i32) -> Result<(), Error> {
    let Some(start) = start_time(pid) else {
        return Ok(());
    };
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if ret < 0 {
        return Ok(()); // gone already (ESRCH)
    }
    // SAFETY: the syscall just returned this fd; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(ret as i32) };
    // Checked after opening: if the start time still matches, the fd is that process.
    if start_time(pid) != Some(start) {
        return Ok(());
    }
    for (sig, wait) in [
        (libc::SIGTERM, Duration::from_secs(1)),
        (libc::SIGKILL, Duration::from_secs(5)),
    ] {
        // SAFETY: pidfd_send_signal on a pidfd we own, no siginfo, no flags.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r < 0 {
            return Ok(()); // it has exited
        }
        if wait_exit(&fd, wait) {
            return Ok(());
        }
    }
    Err(Error::Other(format!("DNS server {pid} does not exit")))
}

fn wait_exit(fd: &OwnedFd, limit: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = PollTimeout::try_from(left.as_millis().min(10_000) as i32 + 1)
            .unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(n) if n > 0 => return true,
            Ok(_) if Instant::now() >= deadline => return false,
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return true,
        }
    }
}

/// A live process's start time (/proc/PID/stat field 22); `None` for a zombie.
pub fn start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    if matches!(fields.next(), Some("Z" | "X")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}
