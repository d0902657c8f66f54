//! attach.sock: a client that attaches before the start sees all output and the exit
//! code; stdin, --stdin-once, the PTY and resizes; a client that does not read.

mod common;
use common::*;
use serde_json::json;
use std::io::Read;
use std::net::Shutdown;

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const EXIT: u8 = 3;
const RESIZE: u8 = 4;
const STDIN_END: u8 = 5;

#[test]
fn start_on_attach_client_gets_all_output_then_the_exit_code() {
    let mut f = Fixture::new(&["sh", "-c", "echo one; echo two >&2; echo three; exit 7"]);
    let l = f.launch(&["--log", "--start-on-attach"]);
    let mut c = f.attach();
    // The container starts only now that a client is attached.
    assert!(l.pid() > 0);
    let frames = read_frames(&mut c);
    assert_eq!(stream_text(&frames, STDOUT), "one\nthree\n");
    assert_eq!(stream_text(&frames, STDERR), "two\n");
    assert_eq!(frames.last().unwrap(), &(EXIT, b"7".to_vec()), "{frames:?}");
    assert_eq!(frames.iter().filter(|(s, _)| *s == EXIT).count(), 1);
    assert_eq!(f.wait_monitor(), 0);
    assert_eq!(f.entries(&f.log).len(), 3);
}

#[test]
fn clients_get_the_exit_code_after_the_exit_command_ran() {
    let mut f = Fixture::new(&["sh", "-c", "exit 2"]);
    let marker = f.path("cleaned-up");
    let script = format!("sleep 0.2; touch {}", marker.display());
    let l = f.launch(&[
        "--start-on-attach",
        "--exit-command",
        "/bin/sh",
        "--exit-arg",
        "-c",
        "--exit-arg",
        &script,
    ]);
    let mut c = f.attach();
    l.pid();
    let frames = read_frames(&mut c);
    assert!(
        marker.exists(),
        "the exit code came before the exit command ended"
    );
    assert_eq!(frames, [(EXIT, b"2".to_vec())]);
    assert_eq!(f.wait_monitor(), 0);
}

#[test]
fn stdin_once_goes_to_the_container_and_ends_it() {
    let mut f = Fixture::new(&["cat"]);
    let l = f.launch(&["--stdin", "--stdin-once", "--start-on-attach"]);
    let mut c = f.attach();
    l.pid();
    send(&mut c, STDIN, b"hel");
    send(&mut c, STDIN, b"lo\n");
    send(&mut c, STDIN_END, b"");
    let frames = read_frames(&mut c);
    assert_eq!(stream_text(&frames, STDOUT), "hello\n");
    assert_eq!(frames.last().unwrap(), &(EXIT, b"0".to_vec()), "{frames:?}");
    assert_eq!(f.wait_monitor(), 0);
    assert_eq!(f.exit_file()["exit_code"], 0);
}

#[test]
fn stdin_once_ends_when_the_client_shuts_down_its_side() {
    let mut f = Fixture::new(&["sh", "-c", "cat; echo done"]);
    let l = f.launch(&["--stdin", "--stdin-once", "--start-on-attach"]);
    let mut c = f.attach();
    l.pid();
    send(&mut c, STDIN, b"hello\n");
    // Half-closed: the client still reads the output and the exit code.
    c.shutdown(Shutdown::Write).unwrap();
    let frames = read_frames(&mut c);
    assert_eq!(stream_text(&frames, STDOUT), "hello\ndone\n");
    assert_eq!(frames.last().unwrap(), &(EXIT, b"0".to_vec()));
    assert_eq!(f.wait_monitor(), 0);
}

#[test]
fn without_stdin_once_stdin_stays_open_for_the_next_client() {
    let mut f = Fixture::new(&["sh", "-c", "read a; read b; echo $a-$b"]);
    let l = f.launch(&["--stdin", "--start-on-attach"]);
    let mut first = f.attach();
    l.pid();
    send(&mut first, STDIN, b"x\n");
    send(&mut first, STDIN_END, b"");
    drop(first);
    let mut second = f.attach();
    send(&mut second, STDIN, b"y\n");
    let frames = read_frames(&mut second);
    assert_eq!(stream_text(&frames, STDOUT), "x-y\n");
    assert_eq!(frames.last().unwrap(), &(EXIT, b"0".to_vec()));
    assert_eq!(f.wait_monitor(), 0);
}

#[test]
fn tty_output_and_resize() {
    // The engine's layout: a 64-character id, so the state directory's sockets are
    // reached through descriptors, never by their long paths.
    let id = format!("{:0>64}", format!("tty{}", std::process::id()));
    let mut f = Fixture::with_id(
        &id,
        &[
            "sh",
            "-c",
            "read x; stty size; tty; echo fds $(ls /proc/self/fd); echo err >&2; exit 4",
        ],
    );
    f.spec["process"]["terminal"] = json!(true);
    f.write_spec();
    assert!(f.state.join("console.sock").as_os_str().len() > 108);
    let l = f.launch(&["--log", "--tty", "--stdin", "--start-on-attach"]);
    let mut c = f.attach();
    // Frames are handled in order: the resize reaches the terminal before the line the
    // container waits for.
    send(&mut c, RESIZE, &[0, 30, 0, 100]);
    l.pid();
    send(&mut c, STDIN, b"go\n");
    let frames = read_frames(&mut c);
    let out = stream_text(&frames, STDOUT);
    assert!(out.contains("30 100\r\n"), "{out:?}");
    assert!(out.contains("/dev/pts/0\r\n"), "{out:?}");
    // With a terminal everything is stdout, and the container holds only the terminal.
    assert!(out.contains("err\r\n"), "{out:?}");
    // 3 is ls's own handle on the directory.
    assert!(out.contains("fds 0 1 2 3\r\n"), "{out:?}");
    assert!(!frames.iter().any(|(s, _)| *s == STDERR));
    assert_eq!(frames.last().unwrap(), &(EXIT, b"4".to_vec()));
    assert_eq!(f.wait_monitor(), 0);
    assert!(f.entries(&f.log).iter().all(|(s, _)| s == "stdout"));
    assert!(!f.state.join("console.sock").exists());
}

/// runc resolves --console-socket after moving into the bundle, so the monitor must
/// not pass a relative name; and runc's pass-through and error log work as ours do.
#[test]
fn runc_gets_the_terminal_and_reports_errors() {
    let Some(runc) = installed("runc") else {
        eprintln!("runc is not installed; skipped");
        return;
    };
    let mut f = Fixture::new(&["sh", "-c", "read x; stty size; exit 6"]);
    f.runtime = runc.clone();
    f.spec["process"]["terminal"] = json!(true);
    f.write_spec();
    let l = f.launch(&["--tty", "--stdin", "--start-on-attach"]);
    let mut c = f.attach();
    send(&mut c, RESIZE, &[0, 40, 0, 120]);
    l.pid();
    send(&mut c, STDIN, b"go\n");
    let frames = read_frames(&mut c);
    assert!(
        stream_text(&frames, STDOUT).contains("40 120\r\n"),
        "{frames:?}"
    );
    assert_eq!(frames.last().unwrap(), &(EXIT, b"6".to_vec()));
    assert_eq!(f.wait_monitor(), 0);
    assert!(f.runtime(&["delete", &f.id]).0);

    let mut f = Fixture::new(&["/no/such/program"]);
    f.runtime = runc;
    let out = f.launch(&[]).outcome();
    let msg = out["error"].as_str().unwrap_or_else(|| panic!("{out}"));
    assert!(msg.contains("/no/such/program"), "{msg}");
    assert_eq!(f.wait_monitor(), 1);
    assert_eq!(f.runtime_ids(), Vec::<String>::new());
}

#[test]
fn a_client_that_does_not_read_does_not_stall_the_container() {
    const TOTAL: usize = 20_000_000;
    let line = "x".repeat(999);
    let script = format!("yes {line} | head -c {TOTAL}");
    let mut f = Fixture::new(&["sh", "-c", &script]);
    let l = f.launch(&["--log", "--start-on-attach"]);
    let mut c = f.attach();
    l.pid();
    // Only once the container is gone does the client read: it was dropped on the way.
    assert_eq!(f.wait_monitor(), 0);
    assert_eq!(f.exit_file()["exit_code"], 0);
    let mut rest = vec![];
    c.read_to_end(&mut rest).unwrap();
    assert!(rest.len() < TOTAL, "the slow client was not dropped");
    let entries = f.entries(&f.log);
    let logged: usize = entries.iter().map(|(_, l)| l.len()).sum();
    assert_eq!(logged, TOTAL);
    assert_eq!(entries.len(), TOTAL / 1000);
    assert!(entries
        .iter()
        .all(|(s, l)| s == "stdout" && l.len() == 1000));
}
