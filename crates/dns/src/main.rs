//! berth-dns: the embedded DNS server of one user network, as Podman's aardvark-dns is
//! for netavark's networks. It listens on the network's gateway, port 53, UDP and TCP,
//! answers the names of the network's running containers from the host's network
//! database (read per query, so a container that leaves is never answered), and
//! forwards other names to the network's `--dns` servers or the host's resolvers.
//!
//! Started by the network crate (`network::dns::ensure`) for the first container on
//! the network: it binds its sockets, forks, starts a session of its own, reports
//! `ready PID` (or `error TEXT`) on stdout and lets go of it. It is stopped when the
//! last container leaves or the network is removed, and checks every few seconds
//! itself whether it is still wanted.

mod server;

use network::state::State;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

struct Args {
    state_dir: PathBuf,
    network_id: String,
}

fn parse_args() -> Result<Args, String> {
    let mut state_dir = None;
    let mut network_id = None;
    let mut it = std::env::args_os().skip(1);
    while let Some(a) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{} needs a value", a.to_string_lossy()))?;
        match a.to_str() {
            Some("--state-dir") => state_dir = Some(PathBuf::from(value)),
            Some("--network-id") => {
                network_id = Some(
                    value
                        .into_string()
                        .map_err(|_| "--network-id: not text".to_string())?,
                )
            }
            _ => return Err(format!("unknown argument {}", a.to_string_lossy())),
        }
    }
    Ok(Args {
        state_dir: state_dir.ok_or("--state-dir is required")?,
        network_id: network_id.ok_or("--network-id is required")?,
    })
}

/// The first line on stdout is what the starter reads.
fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn fail(msg: &str) -> ! {
    report(&format!("error {msg}"));
    std::process::exit(1)
}

/// What the server needs to know of its network, read once: a network's name,
/// addressing and `--internal` never change while it exists.
pub struct NetworkInfo {
    pub id: String,
    pub name: String,
    pub gateway: Ipv4Addr,
    pub subnet: Ipv4Addr,
    pub prefix: u8,
    pub internal: bool,
}

fn network_info(args: &Args) -> Result<NetworkInfo, String> {
    let state = State::open(&args.state_dir).map_err(|e| e.to_string())?;
    let def = state
        .def_by_id(&args.network_id)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("network {} not found", args.network_id))?;
    let row = state
        .network(&def.name)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("network {} has no addressing", def.name))?;
    Ok(NetworkInfo {
        id: def.id,
        name: def.name,
        gateway: row.gateway,
        subnet: row.subnet,
        prefix: row.prefix,
        internal: def.internal,
    })
}

/// Binds UDP and TCP on `addr`. A server that was just stopped may not have closed its
/// sockets yet (it exits in its own time after giving up the lock): retry a little.
fn bind(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), String> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let r = UdpSocket::bind(addr).and_then(|u| Ok((u, TcpListener::bind(addr)?)));
        match r {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => return Err(format!("binding {addr}: {e}")),
        }
    }
}

/// Closes every descriptor but `keep`: whatever the starter's caller left open without
/// close-on-exec (a pipe someone waits on for EOF) must not live as long as the server.
/// Runs while the process has one thread.
fn close_inherited(keep: &[RawFd]) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| !keep.contains(fd))
        .collect();
    for fd in fds {
        // SAFETY: nothing in this single-threaded process owns these descriptors (the
        // sockets and stdio are kept; the read_dir handle is closed by now, so closing its
        // number fails with EBADF at worst).
        unsafe { libc::close(fd) };
    }
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| fail(&e));
    let net = network_info(&args).unwrap_or_else(|e| fail(&e));
    let (udp, tcp) = bind(SocketAddr::from((net.gateway, 53))).unwrap_or_else(|e| fail(&e));
    // SAFETY: no thread has been started yet (the sockets and the database connection,
    // closed above, are the only state), so the child may run any code.
    match unsafe { libc::fork() } {
        -1 => fail(&format!("fork: {}", std::io::Error::last_os_error())),
        0 => {}
        // SAFETY: _exit ends the parent at once, without running anything shared.
        _ => unsafe { libc::_exit(0) },
    }
    let _ = nix::unistd::setsid();
    let _ = nix::sys::prctl::set_name(c"berth-dns");
    // The starter may block or ignore signals (a foreground `run` holds SIGTERM for its
    // container) and both are inherited: SIGTERM must end the server at once.
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
    // SAFETY: restoring the default action of SIGTERM installs no handler of ours.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGTERM,
            nix::sys::signal::SigHandler::SigDfl,
        )
    };
    close_inherited(&[udp.as_raw_fd(), tcp.as_raw_fd(), 0, 1, 2]);
    report(&format!("ready {}", std::process::id()));
    // Nothing of the starter's is kept: a caller waiting for EOF on its pipes must not
    // wait for us.
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
    let state = match State::open(&args.state_dir) {
        Ok(s) => s,
        Err(_) => std::process::exit(1),
    };
    let server = server::Server::new(net, args.state_dir, state);
    std::process::exit(server.run(udp, tcp));
}
