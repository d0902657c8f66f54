//! Foreground containers: `berth run` without `-d` and `start -a`. The CLI attaches to
//! the monitor's socket before the process starts, copies output to its own stdout and
//! stderr, feeds its stdin with `-i`, mirrors its terminal size with `-t`, forwards
//! signals (`--sig-proxy`), and exits with the container's status. `berth attach` does
//! the same for a container that already runs, and detaches on Ctrl-P Ctrl-Q.

use crate::containers::{open_engine, start_failed};
use crate::App;
use anyhow::{bail, Result};
use clap::{ArgAction, Args};
use engine::attach;
use engine::container::Engine;
use engine::store::{Container, State};
use nix::sys::signal::{SigSet, Signal};
use std::io::{IsTerminal, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
    // Signals we do not pass on keep their default action: SIGTERM still ends us.
    let mut set = SigSet::empty();
    if sig_proxy && !tty {
        for s in PROXIED {
            set.add(s);
        }
    }
    set.add(Signal::SIGWINCH);
    set.thread_block()?;

    let starting = match engine.start(c, true) {
        Ok(s) => s,
        Err(e) => return Err(start_failed(engine, c, e)),
    };
    let sock = match attach::connect_starting(engine, c, &starting) {
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

    // This process is up and has the store open: it does the cleanup after the exit
    // (record it, unmount, --rm) sooner than the monitor's exit command, a new berth
    // process, could. Not with a restart policy: restarts are the monitor's to run.
    let cleans_up = c.options.restart == engine::RestartPolicy::No
        && attach::write_frame(&mut &sock, attach::CLEANUP, &[]).is_ok();

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
    let running = match starting.wait() {
        Ok(running) => running,
        Err(e) => {
            let _ = sock.shutdown(std::net::Shutdown::Both);
            let _ = pump.join();
            drop(raw);
            return Err(start_failed(engine, c, e));
        }
    };
    let result = pump.join();
    drop(raw);
    if let (true, Ok(Ok(Some(_)))) = (cleans_up, &result) {
        // Failing, it says nothing: without DONE the monitor runs the exit command, which
        // tries again.
        if engine.cleanup(&c.id).is_ok() {
            let _ = attach::write_frame(&mut &sock, attach::DONE, &[]);
        }
    }
    // The monitor exits once the cleanup (ours, or its exit command's) is done: once we
    // return, nothing of the run is left, as with docker, whose `run --rm` returns once
    // the container is removed.
    engine.wait_monitor(&running, Some(Duration::from_secs(2)));
    match result {
        Ok(Ok(Some(code))) => Ok(code),
        // The monitor went away without a status: what the store says.
        _ => {
            let now = engine.find(&c.id).and_then(|c| engine.reconcile(c));
            Ok(now.map(|c| c.exit_code).unwrap_or(125))
        }
    }
}

// `docker attach` flags.
#[derive(Args)]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long)]
    pub no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "true", default_missing_value = "true", hide_default_value = true,
          value_parser = crate::run_flags::go_bool, value_name = "BOOL")]
    pub sig_proxy: bool,
    /// Override the key sequence for detaching a container
    #[arg(long, value_name = "KEYS")]
    pub detach_keys: Option<String>,
    pub container: String,
}

/// Docker's default detach keys: Ctrl-P Ctrl-Q.
const DETACH_KEYS: [u8; 2] = [0x10, 0x11];

/// `berth attach`: the running container's output from now on, our stdin to it (if it
/// was created with `-i`), until it exits (its status is ours) or, with a terminal, the
/// detach keys are typed.
pub fn attach(app: &App, a: &AttachArgs) -> Result<i32> {
    let engine = open_engine(app)?;
    let c = match engine.find(&a.container).and_then(|c| engine.reconcile(c)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Error response from daemon: {e}");
            return Ok(1);
        }
    };
    check_attachable(c.state)?;
    let tty = c.options.run.tty;
    if tty && !a.no_stdin && !std::io::stdin().is_terminal() {
        bail!("the input device is not a TTY");
    }
    let keys = match &a.detach_keys {
        None => DETACH_KEYS.to_vec(),
        Some(k) => match detach_keys(k) {
            Ok(keys) => keys,
            Err(_) => {
                eprintln!("Error response from daemon: Invalid detach keys ({k}) provided");
                return Ok(1);
            }
        },
    };
    let stdin = !a.no_stdin && c.options.run.interactive;
    // docker proxies signals only without a terminal (a terminal sends ^C as a key).
    let proxy = a.sig_proxy && !tty;

    // Blocked before any thread exists so that only the signal thread receives them.
    // Signals we do not pass on keep their default action: SIGTERM still ends us.
    let mut set = SigSet::empty();
    if proxy {
        for s in PROXIED {
            set.add(s);
        }
    }
    set.add(Signal::SIGWINCH);
    set.thread_block()?;

    let sock = match attach::connect(&engine.state_dir(&c.id)) {
        Ok(s) => s,
        Err(e) => {
            // It stopped since we looked: say so as Docker does; else why we could not.
            let now = engine.find(&c.id).and_then(|c| engine.reconcile(c))?;
            check_attachable(now.state)?;
            bail!("attaching to container {}: {e}", c.id);
        }
    };
    let raw = (tty && stdin && std::io::stdin().is_terminal())
        .then(RawMode::enter)
        .flatten();
    if tty {
        if let Some((rows, cols)) = terminal_size() {
            // As docker's CLI: one size off, then the real one, so that the program
            // redraws even when the size has not changed since the last client.
            let _ = attach::resize(&mut &sock, rows.saturating_add(1), cols.saturating_add(1));
            let _ = attach::resize(&mut &sock, rows, cols);
        }
    }
    {
        let mut sock = sock.try_clone()?;
        let kill = engine.kill_command(&c);
        std::thread::spawn(move || loop {
            let Ok(sig) = set.wait() else { return };
            if sig == Signal::SIGWINCH {
                if let Some((rows, cols)) = terminal_size() {
                    let _ = attach::resize(&mut sock, rows, cols);
                }
            } else if proxy {
                let _ = kill(sig as i32).status();
            }
        });
    }
    let detached = Arc::new(AtomicBool::new(false));
    if stdin {
        let mut sock = sock.try_clone()?;
        let detached = Arc::clone(&detached);
        // Only a terminal has detach keys (dockerd copies other input as it is).
        let mut escape = tty.then(|| Escape::new(keys));
        // Not joined: a read of our stdin may block forever after the container is gone.
        std::thread::spawn(move || {
            let mut buf = [0u8; 32 * 1024];
            let mut stdin = std::io::stdin().lock();
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let (pass, detach) = match escape.as_mut() {
                    Some(e) => e.feed(&buf[..n]),
                    None => (buf[..n].to_vec(), false),
                };
                if !pass.is_empty() && attach::write_frame(&mut sock, attach::STDIN, &pass).is_err()
                {
                    return;
                }
                if detach {
                    detached.store(true, Ordering::SeqCst);
                    let _ = sock.shutdown(std::net::Shutdown::Both);
                    return;
                }
            }
            let _ = attach::write_frame(&mut sock, attach::CLOSE_STDIN, &[]);
        });
    }

    let mut reader = sock.try_clone()?;
    let mut out = Watched::new(std::io::stdout());
    let mut err = Watched::new(std::io::stderr());
    let result = attach::pump_output(&mut reader, &mut out, &mut err);
    drop(raw);
    if detached.load(Ordering::SeqCst) {
        eprintln!("read escape sequence");
        return Ok(1);
    }
    match result {
        Ok(Some(code)) => Ok(code),
        // Nobody reads our output any more (`attach | head`): done, as `logs` is.
        _ if out.failed || err.failed => Ok(0),
        // Dropped by the monitor (we read too slowly) or it went away: the status comes
        // from the store once the container has exited.
        _ => exit_status(&engine, &c),
    }
}

/// A writer that remembers that it failed, to tell our closed stdout from the monitor
/// going away.
struct Watched<W> {
    inner: W,
    failed: bool,
}

impl<W: Write> Watched<W> {
    fn new(inner: W) -> Watched<W> {
        Watched {
            inner,
            failed: false,
        }
    }
}

impl<W: Write> Write for Watched<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let r = self.inner.write(buf);
        self.failed |= matches!(&r, Err(e) if e.kind() != std::io::ErrorKind::Interrupted);
        r
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let r = self.inner.flush();
        self.failed |= r.is_err();
        r
    }
}

/// Docker's refusals of an attach.
fn check_attachable(state: State) -> Result<()> {
    match state {
        State::Running => Ok(()),
        State::Paused => bail!("cannot attach to a paused container, unpause it first"),
        State::Restarting => {
            bail!("cannot attach to a restarting container, wait until it is running")
        }
        _ => bail!("cannot attach to a stopped container, start it first"),
    }
}

/// The container's exit status once it has exited.
fn exit_status(engine: &Engine, c: &Container) -> Result<i32> {
    loop {
        let now = match engine.find(&c.id).and_then(|c| engine.reconcile(c)) {
            Ok(now) => now,
            Err(_) => bail!(
                "the output of container {} was cut off and it is gone: its exit status is unknown",
                c.id
            ),
        };
        match now.state {
            State::Exited | State::Restarting => return Ok(now.exit_code),
            State::Running | State::Paused => {
                engine.wait_monitor(&now, None);
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// `--detach-keys` as docker reads it (moby/term's ToBytes): comma-separated keys, each a
/// single character, `ctrl-@` … `ctrl-z`, `ctrl-[`, `ctrl-\`, `ctrl-]`, `ctrl-^`,
/// `ctrl-_`, or `DEL`.
fn detach_keys(spec: &str) -> std::result::Result<Vec<u8>, String> {
    const CTRL: &[u8] = b"@abcdefghijklmnopqrstuvwxyz[\\]^_";
    spec.split(',')
        .map(|key| {
            if key.len() == 1 {
                return Ok(key.as_bytes()[0]);
            }
            if key == "DEL" {
                return Ok(127);
            }
            match key.strip_prefix("ctrl-").map(str::as_bytes) {
                Some([c]) => CTRL
                    .iter()
                    .position(|x| x == c)
                    .map(|i| i as u8)
                    .ok_or_else(|| format!("Unknown character: '{key}'")),
                _ => Err(format!("Unknown character: '{key}'")),
            }
        })
        .collect()
}

/// Recognises the detach keys in typed input. Keys that start the sequence are held
/// back until it completes or breaks off (then they pass on as typed).
struct Escape {
    keys: Vec<u8>,
    matched: usize,
}

impl Escape {
    fn new(keys: Vec<u8>) -> Escape {
        Escape { keys, matched: 0 }
    }

    /// The bytes to pass on, and whether the sequence is complete (the rest of the input
    /// is dropped, as the client detaches).
    fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        if self.keys.is_empty() {
            out.extend_from_slice(input);
            return (out, false);
        }
        for &b in input {
            if b != self.keys[self.matched] {
                out.extend_from_slice(&self.keys[..self.matched]);
                self.matched = 0;
                if b != self.keys[0] {
                    out.push(b);
                    continue;
                }
            }
            self.matched += 1;
            if self.matched == self.keys.len() {
                self.matched = 0;
                return (out, true);
            }
        }
        (out, false)
    }
}

pub(crate) fn terminal_size() -> Option<(u16, u16)> {
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
pub(crate) struct RawMode {
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    pub(crate) fn enter() -> Option<RawMode> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse_as_dockers() {
        assert_eq!(detach_keys("ctrl-p,ctrl-q").unwrap(), DETACH_KEYS);
        assert_eq!(
            detach_keys("a,ctrl-@,ctrl-_,DEL").unwrap(),
            vec![b'a', 0, 31, 127]
        );
        assert_eq!(
            detach_keys("ctrl-P").unwrap_err(),
            "Unknown character: 'ctrl-P'"
        );
        assert!(detach_keys("ab").is_err());
    }

    #[test]
    fn escape_holds_back_a_started_sequence() {
        let mut e = Escape::new(DETACH_KEYS.to_vec());
        assert_eq!(e.feed(b"ls\r"), (b"ls\r".to_vec(), false));
        assert_eq!(e.feed(&[0x10]), (vec![], false));
        // Broken off: the held key passes on with the next.
        assert_eq!(e.feed(b"x"), (vec![0x10, b'x'], false));
        assert_eq!(e.feed(&[0x10, 0x10]), (vec![0x10], false));
        assert_eq!(e.feed(&[0x11, b'z']), (vec![], true));
        assert_eq!(e.feed(b"ab\x10\x11"), (b"ab".to_vec(), true));
    }
}
