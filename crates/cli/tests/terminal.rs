//! `berth run -it` under a real terminal: the test holds the master side of a PTY whose
//! slave is berth's controlling terminal, as a terminal emulator would, and types.

mod support;

use nix::pty::{openpty, Winsize};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::Berth;

struct Terminal {
    master: std::fs::File,
    output: mpsc::Receiver<Vec<u8>>,
    seen: String,
}

impl Terminal {
    /// Reads until `want` has appeared after what was already consumed.
    fn expect(&mut self, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(i) = self.seen.find(want) {
                self.seen.drain(..i + want.len());
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(chunk) => self.seen.push_str(&String::from_utf8_lossy(&chunk)),
                Err(_) => panic!("no {want:?} in {:?}", self.seen),
            }
        }
    }

    fn send(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).unwrap();
    }

    fn resize(&self, rows: u16, cols: u16) {
        let ws = Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer; the fd is our master.
        let r = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(r, 0);
    }
}

/// Starts `berth ARGS` with the slave of a new 24x80 PTY as its controlling terminal.
fn spawn_on_pty(b: &Berth, args: &[&str]) -> (std::process::Child, Terminal) {
    let size = Winsize {
        ws_row: 24,
        ws_col: 80,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = openpty(Some(&size), None).unwrap();
    let slave: OwnedFd = pty.slave;
    let mut cmd = b.cmd(args);
    cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    // SAFETY: setsid and ioctl(TIOCSCTTY) are async-signal-safe; stdin is the slave.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    let master = std::fs::File::from(pty.master);
    let mut reader = master.try_clone().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        // EIO once the slave side is closed by everyone.
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    (
        child,
        Terminal {
            master,
            output: rx,
            seen: String::new(),
        },
    )
}

#[test]
fn run_it_gives_a_shell_a_terminal_with_resize_and_ctrl_c() {
    let b = Berth::with_busybox();
    let (mut child, mut t) = spawn_on_pty(&b, &["run", "-it", "--rm", "bb:1", "sh"]);
    t.expect("# ");
    // A terminal inside, of the size of ours.
    t.send("tty; stty size\r");
    t.expect("/dev/pts/0");
    t.expect("24 80");
    t.expect("# ");
    // Resizing our terminal reaches the container's.
    t.resize(50, 132);
    std::thread::sleep(Duration::from_millis(300));
    t.send("stty size\r");
    t.expect("50 132");
    t.expect("# ");
    // Ctrl-C interrupts the foreground job inside, not berth, and the shell goes on.
    t.send("sleep 100\r");
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    t.send("\x03");
    t.expect("^C");
    t.expect("# ");
    assert!(t0.elapsed() < Duration::from_secs(10));
    t.send("echo status $?\r");
    t.expect("status 130");
    t.send("exit 3\r");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "berth run -it did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(3));
    drop(t);
    b.assert_nothing_left();
}
