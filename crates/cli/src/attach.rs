//! Foreground containers: `berth run` without `-d` and `start -a`. The CLI attaches to
//! the monitor's socket before the process starts, copies output to its own stdout and
//! stderr, feeds its stdin with `-i`, mirrors its terminal size with `-t`, forwards
//! signals (`--sig-proxy`), and exits with the container's status.

use crate::containers::start_failed;
use anyhow::Result;
use engine::attach;
use engine::container::Engine;
use engine::store::Container;
use nix::sys::signal::{SigSet, Signal};
use std::io::{IsTerminal, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Signals a foreground `run` passes on to the container (Docker's proxy skips SIGCHLD,
/// SIGPIPE, SIGURG and SIGWINCH; these are the ones people send).
const PROXIED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

pub fn run_attached(engine: &Engine, c: &Container, sig_proxy: bool) -> Result<i32> {
    let tty = c.options.run.tty;
    let interactive = c.options.run.interactive;
    // Blocked before any thread exists so that only the signal thread receives them.
    let mut set = SigSet::empty();
    for s in PROXIED {
        set.add(s);
    }
    set.add(Signal::SIGWINCH);
    set.thread_block()?;

    let starting = match engine.start(c, true) {
        Ok(s) => s,
        Err(e) => return Err(start_failed(engine, c, e)),
    };
    let sock = match connect(engine, c, &starting) {
        Some(sock) => sock,
        None => {
            let e = match starting.wait() {
                Err(e) => e,
                Ok(_) => engine::container::EngineError::Other(
                    "could not attach to the container's monitor".into(),
                ),
            };
            return Err(start_failed(engine, c, e));
        }
    };

    let raw = (tty && interactive && std::io::stdin().is_terminal())
        .then(RawMode::enter)
        .flatten();
    if tty {
        if let Some((rows, cols)) = terminal_size() {
            let _ = attach::resize(&mut &sock, rows, cols);
        }
    }

    // Signals: resizes, and with the proxy the rest go to the container.
    {
        let mut sock = sock.try_clone()?;
        let kill = engine.kill_command(c);
        std::thread::spawn(move || loop {
            let Ok(sig) = set.wait() else { return };
            if sig == Signal::SIGWINCH {
                if let Some((rows, cols)) = terminal_size() {
                    let _ = attach::resize(&mut sock, rows, cols);
                }
            } else if sig_proxy && !tty {
                let mut k = kill(sig as i32);
                let _ = k.status();
            }
        });
    }
    if interactive {
        let mut sock = sock.try_clone()?;
        // Not joined: a read of our stdin may block forever after the container is gone.
        std::thread::spawn(move || {
            let mut buf = [0u8; 32 * 1024];
            let mut stdin = std::io::stdin().lock();
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if attach::write_frame(&mut sock, attach::STDIN, &buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = attach::write_frame(&mut sock, attach::CLOSE_STDIN, &[]);
        });
    }

    let mut reader = sock.try_clone()?;
    let pump = std::thread::spawn(move || {
        let mut out = std::io::stdout();
        let mut err = std::io::stderr();
        attach::pump_output(&mut reader, &mut out, &mut err)
    });
    if let Err(e) = starting.wait() {
        let _ = sock.shutdown(std::net::Shutdown::Both);
        let _ = pump.join();
        drop(raw);
        return Err(start_failed(engine, c, e));
    }
    let result = pump.join();
    drop(raw);
    match result {
        Ok(Ok(Some(code))) => Ok(code),
        // The monitor went away without a status: what the store says.
        _ => {
            let now = engine.find(&c.id).and_then(|c| engine.reconcile(c));
            Ok(now.map(|c| c.exit_code).unwrap_or(125))
        }
    }
}

/// Connects to the monitor's attach socket, which appears shortly after the monitor
/// starts. `None` if the monitor answered on its sync pipe first (it failed) or never
/// listened.
fn connect(
    engine: &Engine,
    c: &Container,
    starting: &engine::container::Starting<'_>,
) -> Option<UnixStream> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let dir = engine.state_dir(&c.id);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match attach::connect(&dir) {
            Ok(s) => return Some(s),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) => {}
            Err(_) => return None,
        }
        match starting.sync_fd() {
            Some(fd) => {
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                if let Ok(n) = poll(&mut fds, PollTimeout::from(1u8)) {
                    if n > 0 {
                        return None;
                    }
                }
            }
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    None
}

fn terminal_size() -> Option<(u16, u16)> {
    let out = std::io::stdout();
    let fd = if out.is_terminal() {
        out.as_fd()
    } else {
        return None;
    };
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we pass; fd is a terminal.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
    (r == 0 && size.ws_row > 0).then_some((size.ws_row, size.ws_col))
}

/// The terminal in raw mode (keys go to the container as typed, Ctrl-C included), put
/// back on drop.
struct RawMode {
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    fn enter() -> Option<RawMode> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        use nix::sys::termios::{tcsetattr, SetArg};
        let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
        let _ = std::io::stdout().flush();
    }
}
