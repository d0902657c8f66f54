//! process.terminal: the pty master arrives on --console-socket and drives the container.

mod common;
use common::*;
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use serde_json::json;
use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

fn receive_master(listener: &UnixListener) -> (String, std::fs::File) {
    let (conn, _) = listener.accept().unwrap();
    let mut buf = [0u8; 4096];
    let mut cbuf = nix::cmsg_space!(RawFd);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cbuf),
        MsgFlags::empty(),
    )
    .unwrap();
    let mut fd = None;
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = c {
            fd = fds.first().copied();
        }
    }
    let n = msg.bytes;
    let name = String::from_utf8_lossy(&buf[..n]).into_owned();
    // SAFETY: the fd just arrived by SCM_RIGHTS and is ours.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd.expect("an fd")) });
    (name, file)
}

fn read_until(f: &mut std::fs::File, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut all = String::new();
    let mut buf = [0u8; 1024];
    nix::fcntl::fcntl(
        &*f,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    while Instant::now() < deadline {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                all.push_str(&String::from_utf8_lossy(&buf[..n]));
                if all.contains(needle) {
                    return all;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(_) => break,
        }
    }
    panic!("never saw {needle:?} on the terminal; got {all:?}");
}

#[test]
fn console_socket_receives_a_working_pty() {
    let mut b = Bundle::new(&["sh"]);
    b.spec["process"]["terminal"] = json!(true);
    b.spec["process"]["env"] = json!(["PATH=/bin", "TERM=xterm", "PS1=$ "]);
    b.spec["process"]["consoleSize"] = json!({"height": 33, "width": 111});
    b.write();
    let sock = b.tmp.path().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let b_ref = &b;
    let (name, mut master) = std::thread::scope(|s| {
        let h = s.spawn(|| receive_master(&listener));
        let o = b_ref.rt(&["create", "--console-socket", sock.to_str().unwrap(), "tty1"]);
        assert!(o.status.success(), "{}", stderr_line(&o));
        h.join().unwrap()
    });
    assert!(name.starts_with("/dev/pts/"), "{name}");
    assert!(b.rt(&["start", "tty1"]).status.success());
    master
        .write_all(b"tty; stty size; echo marker-$((6*7))\n")
        .unwrap();
    let out = read_until(&mut master, "marker-42");
    assert!(out.contains("/dev/pts/0"), "{out:?}");
    // process.consoleSize is the terminal's size from the start.
    assert!(out.contains("33 111"), "{out:?}");
    master.write_all(b"exit 3\n").unwrap();
    b.wait_status("tty1", "stopped");
    assert!(b.rt(&["delete", "tty1"]).status.success());
    b.assert_no_leftovers("tty1");
}

#[test]
fn terminal_without_console_socket_is_an_error() {
    let mut b = Bundle::new(&["sh"]);
    b.spec["process"]["terminal"] = json!(true);
    b.write();
    let o = b.rt(&["create", "tty2"]);
    assert!(!o.status.success());
    assert!(
        stderr_line(&o).contains("console-socket"),
        "{}",
        stderr_line(&o)
    );
    b.assert_no_leftovers("tty2");
}

/// A foreground `run` with a terminal and no --console-socket relays the pty itself, as
/// runc does: the process sees a tty, reads what we type, and its exit code comes back.
#[test]
fn foreground_run_relays_the_terminal() {
    let mut b = Bundle::new(&["sh", "-c", "tty; read line; echo got-$line; exit 5"]);
    b.spec["process"]["terminal"] = json!(true);
    b.write();
    // `script` gives berth-runtime a terminal of its own, and types the line for us.
    let cmd = format!(
        "{} --root {} run --bundle {} tty3",
        bin(),
        b.root.display(),
        b.dir.display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/0"), "{text}");
    assert!(text.contains("got-hello"), "{text}");
    assert_eq!(out.status.code(), Some(5), "{text}");
    b.assert_no_leftovers("tty3");
}
