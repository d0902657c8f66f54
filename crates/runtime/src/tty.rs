//! A foreground `run` or `exec` of a process with a terminal and no --console-socket:
//! as runc does, berth-runtime receives the pty master itself and relays it to its own
//! stdin/stdout, with the caller's terminal in raw mode and resizes passed on.

use anyhow::{Context, Result};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::termios::{self, SetArg, Termios};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The socket the runtime hands to its own create/exec as --console-socket.
pub struct Relay {
    path: PathBuf,
    listener: UnixListener,
}

impl Relay {
    pub fn new(root: &Path, id: &str) -> Result<Relay> {
        std::fs::create_dir_all(root).with_context(|| format!("create {}", root.display()))?;
        let path = root.join(format!(".tty-{id}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = runtime::sockpath::short(&path)
            .and_then(|p| UnixListener::bind(&p.path))
            .with_context(|| format!("bind {}", path.display()))?;
        Ok(Relay { path, listener })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the pty master the process sent and starts copying in both directions.
    pub fn start(self) -> Result<Running> {
        self.listener.set_nonblocking(true)?;
        let conn = match self.listener.accept() {
            Ok((c, _)) => c,
            Err(e) => return Err(e).context("the process sent no terminal"),
        };
        conn.set_nonblocking(false)?;
        let mut buf = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .context("receive the terminal")?;
        let fd = msg
            .cmsgs()?
            .find_map(|c| match c {
                ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
                _ => None,
            })
            .context("the process sent no terminal")?;
        // SAFETY: SCM_RIGHTS just gave us this descriptor; nothing else owns it.
        let master = Arc::new(unsafe { File::from_raw_fd(fd) });
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            termios::cfmakeraw(&mut raw);
            let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        }
        let mut running = Running {
            master: master.clone(),
            saved,
            out: None,
        };
        running.resize();
        let m = master.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut stdin = std::io::stdin();
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 || (&*m).write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut out = std::io::stdout();
            // EIO once every slave descriptor is closed: the process tree is gone.
            while let Ok(n) = (&*master).read(&mut buf) {
                if n == 0 || out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                    break;
                }
            }
            let _ = tx.send(());
        });
        running.out = Some(rx);
        Ok(running)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

pub struct Running {
    master: Arc<File>,
    saved: Option<Termios>,
    out: Option<std::sync::mpsc::Receiver<()>>,
}

impl Running {
    /// Gives the pty the size of our terminal (on start and on SIGWINCH).
    pub fn resize(&self) {
        let mut ws = winsize();
        // SAFETY: TIOCGWINSZ fills the winsize we pass; failure leaves it untouched.
        if unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) } == 0 {
            // SAFETY: TIOCSWINSZ reads the winsize we pass.
            unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        }
    }

    /// Waits briefly for the last output to be copied, then restores the terminal.
    pub fn finish(mut self) {
        if let Some(rx) = self.out.take() {
            let _ = rx.recv_timeout(Duration::from_secs(2));
        }
    }
}

fn winsize() -> libc::winsize {
    libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}
