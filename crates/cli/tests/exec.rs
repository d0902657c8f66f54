//! `berth exec`, `attach`, `top`, `stats` and `port` on real containers (berth-runtime and
//! berth-monitor built beside the berth binary, a busybox image imported into a store of
//! the test's own). Terminals are real ptys (openpty), driven as a user would type.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::Berth;

/// A store holding `bb:1`: busybox with its applets, `CMD ["sh"]`, a root and an `app`
/// user (1000:1000, also in group `staff`).
fn berth_with_busybox() -> Berth {
    let b = Berth::new();
    let dir = b.tmp.path().join("bbfs");
    for d in ["bin", "etc", "tmp", "home/app"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet));
        }
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("etc/group"),
        "root:x:0:\napp:x:1000:\nstaff:x:50:app\n",
    )
    .unwrap();
    let tar = b.tar_of(&dir, "bb.tar");
    b.ok(&[
        "import",
        "-c",
        "CMD [\"sh\"]",
        tar.to_str().unwrap(),
        "bb:1",
    ]);
    std::fs::create_dir_all(temp_dir(&b)).unwrap();
    b
}

/// The TMPDIR berth runs with, so that the test can see its exec files go.
fn temp_dir(b: &Berth) -> PathBuf {
    b.tmp.path().join("t")
}

fn cmd(b: &Berth, args: &[&str]) -> Command {
    let mut c = b.cmd(args);
    c.env("TMPDIR", temp_dir(b));
    c
}

/// (status, stdout, stderr)
fn code(b: &Berth, args: &[&str]) -> (i32, String, String) {
    let o = cmd(b, args).stdin(Stdio::null()).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ok(b: &Berth, args: &[&str]) -> String {
    let (rc, out, err) = code(b, args);
    assert_eq!(rc, 0, "berth {args:?}: {err}");
    out
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills berth if it has not exited after 30 s, so that a broken build fails the test
/// instead of hanging it.
struct Deadline(std::sync::mpsc::Sender<()>);

impl Deadline {
    fn new(child: &Child) -> Deadline {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        // A pidfd, so that a late kill can only reach this child, never a reused pid.
        // SAFETY: pidfd_open takes a pid and flags; the child is not reaped yet.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as i32, 0) };
        assert!(fd >= 0, "pidfd_open");
        // SAFETY: the syscall just returned this descriptor to us alone.
        let pidfd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                rx.recv_timeout(Duration::from_secs(30))
            {
                // SAFETY: pidfd_send_signal with our descriptor, no siginfo, no flags.
                let r = unsafe {
                    libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        pidfd.as_raw_fd(),
                        libc::SIGKILL,
                        std::ptr::null::<libc::siginfo_t>(),
                        0,
                    )
                };
                if r == 0 {
                    eprintln!("berth still running after 30 s: killed");
                }
            }
        });
        Deadline(tx)
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// The container's full ID.
fn id_of(b: &Berth, name: &str) -> String {
    ok(b, &["container", "inspect", "-f", "{{.Id}}", name])
        .trim()
        .to_string()
}

/// A process is gone once it has no /proc entry or is a zombie.
fn gone(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "))
}

/// Nothing of the store's containers left on the host: no mounts, container or state
/// directories, no monitor or other berth process serving them, no exec files.
fn assert_nothing_left(b: &Berth) {
    let tmp = b.tmp.path().to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&tmp), "mounts left under {tmp}");
    for dir in ["root/containers", "run/containers"] {
        let entries: Vec<_> = std::fs::read_dir(b.tmp.path().join(dir))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(entries.is_empty(), "{dir}: {entries:?}");
    }
    // Whatever berth started for this store (monitors, a detached exec's terminal
    // holder) names the store's directory on its command line.
    wait_for("no process of this store", || {
        let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
        !String::from_utf8_lossy(&ps.stdout)
            .lines()
            .any(|l| l.contains(&tmp) && !l.starts_with("ps "))
    });
    let left: Vec<_> = std::fs::read_dir(temp_dir(b))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "exec files left: {left:?}");
    assert_eq!(ok(b, &["ps", "-aq"]), "");
}

/// `run -d --name NAME [FLAGS] bb:1 ARGS`.
fn run_d(b: &Berth, name: &str, flags: &[&str], args: &[&str]) -> String {
    let mut all = vec!["run", "-d", "--name", name];
    all.extend(flags);
    all.push("bb:1");
    all.extend(args);
    ok(b, &all).trim().to_string()
}

#[test]
fn exec_output_and_exit_codes_are_dockers() {
    let b = berth_with_busybox();
    let id = run_d(&b, "box", &[], &["sleep", "1000"]);

    let (rc, out, err) = code(
        &b,
        &["exec", "box", "sh", "-c", "echo out; echo err >&2; exit 3"],
    );
    assert_eq!((rc, out.as_str(), err.as_str()), (3, "out\n", "err\n"));
    assert_eq!(
        ok(&b, &["exec", "box", "hostname"]),
        format!("{}\n", &id[..12])
    );
    // Flags after the container belong to the command.
    assert_eq!(
        ok(&b, &["exec", "box", "echo", "-n", "x", "--help"]),
        "x --help"
    );
    assert_eq!(ok(&b, &["container", "exec", "box", "true"]), "");

    // A command that cannot start: dockerd's 126, the runtime's reason on one line, and
    // nothing of the runtime's own output.
    let (rc, out, err) = code(&b, &["exec", "box", "no-such-command"]);
    assert_eq!(rc, 126, "{err}");
    assert_eq!(out, "");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("OCI runtime exec failed: "), "{err}");
    assert!(err.contains("executable file not found in $PATH"), "{err}");
    let (rc, _, err) = code(&b, &["exec", "box", "/etc"]);
    assert_eq!(rc, 126, "{err}");
    // The shell's own "not found" is the process's status, as in docker.
    let (rc, _, err) = code(&b, &["exec", "box", "sh", "-c", "no-such-command"]);
    assert_eq!(rc, 127, "{err}");
    let (rc, _, err) = code(&b, &["exec", "-u", "nobody", "box", "id"]);
    assert_eq!(rc, 126);
    assert_eq!(
        err,
        "unable to find user nobody: no matching entries in passwd file\n"
    );
    let (rc, _, err) = code(&b, &["exec", "-w", "/no/such/dir", "box", "true"]);
    assert_eq!(rc, 126, "{err}");
    assert!(err.contains("/no/such/dir"), "{err}");

    let (rc, _, err) = code(&b, &["exec", "nosuch", "true"]);
    assert_eq!(
        (rc, err.as_str()),
        (1, "Error response from daemon: No such container: nosuch\n")
    );
    ok(&b, &["pause", "box"]);
    let (rc, _, err) = code(&b, &["exec", "box", "true"]);
    assert_eq!(
        (rc, err.as_str()),
        (
            1,
            "Error response from daemon: Container box is paused, unpause the container before exec\n"
        )
    );
    ok(&b, &["unpause", "box"]);
    assert_eq!(ok(&b, &["exec", "box", "echo", "again"]), "again\n");
    ok(&b, &["stop", "-t", "0", "box"]);
    let (rc, _, err) = code(&b, &["exec", "box", "true"]);
    assert_eq!(rc, 1);
    assert_eq!(
        err,
        format!("Error response from daemon: container {id} is not running\n")
    );
    ok(&b, &["rm", "box"]);
    assert_nothing_left(&b);
}

#[test]
fn exec_environment_user_workdir_and_capabilities() {
    let b = berth_with_busybox();
    run_d(
        &b,
        "box",
        &[
            "-e",
            "KEEP=run",
            "-e",
            "DROP_ME_BERTH_TEST=x",
            "-w",
            "/home",
        ],
        &["sleep", "1000"],
    );
    let env_file = b.tmp.path().join("exec.env");
    std::fs::write(&env_file, "# from a file\nFROM_FILE=f\nNEW=file\n").unwrap();
    let out = ok(
        &b,
        &[
            "exec",
            "--env-file",
            env_file.to_str().unwrap(),
            "-e",
            "NEW=exec",
            // Not set in our environment: unset in the process, as docker does.
            "-e",
            "DROP_ME_BERTH_TEST",
            "box",
            "sh",
            "-c",
            "echo \"$KEEP|$NEW|$FROM_FILE|${DROP_ME_BERTH_TEST-unset}|${TERM-none}|$PATH\"",
        ],
    );
    assert_eq!(
        out,
        "run|exec|f|unset|none|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );

    // The container's working directory, or -w.
    assert_eq!(ok(&b, &["exec", "box", "pwd"]), "/home\n");
    assert_eq!(ok(&b, &["exec", "-w", "/tmp", "box", "pwd"]), "/tmp\n");

    // Users resolved in the container's /etc/passwd and /etc/group.
    assert_eq!(
        ok(&b, &["exec", "box", "id"]),
        "uid=0(root) gid=0(root) groups=0(root)\n"
    );
    assert_eq!(
        ok(&b, &["exec", "-u", "app", "box", "id"]),
        "uid=1000(app) gid=1000(app) groups=50(staff),1000(app)\n"
    );
    assert_eq!(
        ok(&b, &["exec", "-u", "1000:staff", "box", "id", "-u"]),
        "1000\n"
    );
    assert_eq!(
        ok(&b, &["exec", "-u", "1000:staff", "box", "id", "-g"]),
        "50\n"
    );
    assert_eq!(ok(&b, &["exec", "-u", "4242", "box", "id", "-u"]), "4242\n");

    // Capabilities: the container's for root, none for another user, all with
    // --privileged.
    let cap_eff = |args: &[&str]| {
        let mut all = vec!["exec"];
        all.extend(args);
        all.extend(["box", "grep", "CapEff", "/proc/self/status"]);
        let out = ok(&b, &all);
        u64::from_str_radix(out.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    let root = cap_eff(&[]);
    assert_ne!(root, 0);
    assert_eq!(root & (1 << 21), 0, "no CAP_SYS_ADMIN by default");
    assert_eq!(cap_eff(&["-u", "app"]), 0);
    let privileged = cap_eff(&["--privileged"]);
    assert_ne!(privileged & (1 << 21), 0, "CAP_SYS_ADMIN with --privileged");
    assert_eq!(privileged & root, root);

    ok(&b, &["rm", "-f", "box"]);
    assert_nothing_left(&b);
}

#[test]
fn exec_stdin_and_signals() {
    let b = berth_with_busybox();
    run_d(&b, "box", &[], &["sleep", "1000"]);

    let mut child = cmd(&b, &["exec", "-i", "box", "sh", "-c", "cat; echo done"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let _deadline = Deadline::new(&child);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello\nworld\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hello\nworld\ndone\n");
    assert!(o.status.success());

    // Without -i the process's stdin is empty.
    let mut child = cmd(&b, &["exec", "box", "sh", "-c", "cat; echo done"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let _deadline = Deadline::new(&child);
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(b"not for the process\n");
    let o = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "done\n");

    // SIGTERM and SIGINT to a foreground exec reach its process.
    for (signal, want) in [(libc::SIGTERM, "TERM"), (libc::SIGINT, "INT")] {
        let script = format!(
            "trap 'echo got-{want}; exit 9' {want}; echo ready; while true; do sleep 0.1; done"
        );
        let mut child = cmd(&b, &["exec", "box", "sh", "-c", &script])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let _deadline = Deadline::new(&child);
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n");
        // SAFETY: kill(2) on our own child's pid; no memory involved.
        unsafe { libc::kill(child.id() as i32, signal) };
        let status = child.wait().unwrap();
        // (Checked first: if berth had to be killed, the process may still hold stdout.)
        assert_eq!(status.code(), Some(9));
        let mut rest = String::new();
        out.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, format!("got-{want}\n"));
    }
    // Nothing of those execs is left in the container.
    let top = ok(&b, &["top", "box"]);
    assert_eq!(top.lines().count(), 2, "{top}");

    ok(&b, &["rm", "-f", "box"]);
    assert_nothing_left(&b);
}

/// The host pids of the container's processes whose command line contains `needle`,
/// from `berth top`.
fn top_pids(b: &Berth, name: &str, needle: &str) -> Vec<i32> {
    let top = ok(b, &["top", name]);
    top.lines()
        .skip(1)
        .filter(|l| l.contains(needle))
        .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        .collect()
}

#[test]
fn detached_exec_and_top_and_nothing_outlives_the_container() {
    let b = berth_with_busybox();
    run_d(&b, "box", &[], &["sleep", "1000"]);
    let (rc, out, err) = code(&b, &["exec", "-d", "box", "sleep", "777"]);
    assert_eq!((rc, out.as_str(), err.as_str()), (0, "", ""));
    // A detached exec with a terminal keeps it after we return.
    ok(
        &b,
        &[
            "exec",
            "-d",
            "-t",
            "box",
            "sh",
            "-c",
            "tty > /tmp/tty; stty size > /tmp/size; sleep 888",
        ],
    );
    wait_for("the detached terminal", || {
        code(&b, &["exec", "box", "cat", "/tmp/tty"])
            .1
            .starts_with("/dev/pts/")
    });

    let top = ok(&b, &["top", "box"]);
    let mut lines = top.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    );
    assert!(top.lines().nth(1).unwrap().starts_with("root "), "{top}");
    // Columns are at least 20 wide, as docker's tabwriter makes them.
    assert!(top.starts_with("UID                 PID "), "{top}");
    for cmdline in ["sleep 1000", "sleep 777", "sleep 888"] {
        assert!(top.contains(cmdline), "{cmdline} in {top}");
    }
    // (sh execs its last command: 888 is a sleep of its own by now.)
    assert_eq!(top.lines().count(), 4, "{top}");
    let sleep_pid: i32 = top_pids(&b, "box", "sleep 777")[0];
    let pid1: i32 = ok(&b, &["container", "inspect", "-f", "{{.State.Pid}}", "box"])
        .trim()
        .parse()
        .unwrap();
    assert_eq!(top_pids(&b, "box", "sleep 1000"), vec![pid1]);
    // ps options pass through.
    let custom = ok(&b, &["top", "box", "-o", "pid,args"]);
    assert!(custom.starts_with("PID "), "{custom}");
    assert!(custom.contains(&format!("{sleep_pid}")), "{custom}");
    assert_eq!(custom.lines().count(), 4, "{custom}");
    let (rc, _, err) = code(&b, &["top", "box", "-o", "ppid=PID"]);
    assert_eq!(rc, 1);
    assert_eq!(
        err,
        "Error response from daemon: specifying \"ppid=PID\" is not allowed\n"
    );

    // Removing the container ends its execs, detached or not.
    ok(&b, &["rm", "-f", "box"]);
    assert!(gone(sleep_pid), "the exec'd sleep survived the container");
    let (rc, _, err) = code(&b, &["top", "box"]);
    assert_eq!(
        (rc, err.as_str()),
        (1, "Error response from daemon: No such container: box\n")
    );
    assert_nothing_left(&b);

    run_d(&b, "stopped", &[], &["true"]);
    ok(&b, &["wait", "stopped"]);
    let id = id_of(&b, "stopped");
    let (rc, _, err) = code(&b, &["top", "stopped"]);
    assert_eq!(rc, 1);
    assert_eq!(
        err,
        format!("Error response from daemon: container {id} is not running\n")
    );
    ok(&b, &["rm", "stopped"]);
    assert_nothing_left(&b);
}

/// `berth ARGS` on a new pty of `rows` x `cols`, as its session leader with the pty
/// as controlling terminal, as when a user runs it in a terminal.
struct Pty {
    master: OwnedFd,
    child: Child,
    seen: String,
    _deadline: Deadline,
}

impl Pty {
    fn spawn(b: &Berth, args: &[&str], rows: u16, cols: u16) -> Pty {
        let size = nix::pty::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&size), None).unwrap();
        let mut c = cmd(b, args);
        c.stdin(Stdio::from(pty.slave.try_clone().unwrap()))
            .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
            .stderr(Stdio::from(pty.slave));
        // SAFETY: setsid and ioctl are async-signal-safe; the child then execs.
        unsafe {
            c.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = c.spawn().unwrap();
        // The Command holds the slave's copies: closed, so the master sees EIO at the end.
        drop(c);
        nix::fcntl::fcntl(
            &pty.master,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .unwrap();
        Pty {
            master: pty.master,
            _deadline: Deadline::new(&child),
            child,
            seen: String::new(),
        }
    }

    fn type_in(&self, text: &str) {
        let mut f = std::fs::File::from(self.master.try_clone().unwrap());
        f.write_all(text.as_bytes()).unwrap();
    }

    /// Reads until `needle` has appeared since the last call; returns what was read.
    fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 4096];
        loop {
            if let Some(i) = self.seen.find(needle) {
                let upto = i + needle.len();
                let out = self.seen[..upto].to_string();
                self.seen.drain(..upto);
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "never saw {needle:?} on the terminal; got {:?}",
                self.seen
            );
            match nix::unistd::read(&self.master, &mut buf) {
                Ok(0) | Err(nix::errno::Errno::EIO) => {
                    panic!("terminal closed before {needle:?}; got {:?}", self.seen)
                }
                Ok(n) => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    fn resize(&self, rows: u16, cols: u16) {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer; the kernel then sends
        // SIGWINCH to the terminal's foreground process group (berth).
        let r = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(r, 0);
    }

    /// berth's exit status and the rest of what it wrote.
    fn wait(&mut self) -> (i32, String) {
        let status = self.child.wait().unwrap();
        let mut buf = [0u8; 4096];
        while let Ok(n) = nix::unistd::read(&self.master, &mut buf) {
            if n == 0 {
                break;
            }
            self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        (status.code().unwrap_or(-1), std::mem::take(&mut self.seen))
    }

    /// The terminal's local flags (ECHO, ICANON…): raw mode shows here.
    fn lflags(&self) -> nix::sys::termios::LocalFlags {
        nix::sys::termios::tcgetattr(self.master.as_fd())
            .unwrap()
            .local_flags
    }
}

#[test]
fn exec_with_a_terminal_under_a_real_pty() {
    let b = berth_with_busybox();
    run_d(&b, "box", &[], &["sleep", "1000"]);

    let mut t = Pty::spawn(&b, &["exec", "-it", "box", "sh"], 30, 100);
    let cooked = nix::sys::termios::LocalFlags::ECHO | nix::sys::termios::LocalFlags::ICANON;
    t.expect("# ");
    assert!(
        !t.lflags().intersects(cooked),
        "our terminal is raw while attached"
    );
    t.type_in("stty size; tty; echo $TERM; echo mark-$((6*7))\r");
    let out = t.expect("mark-42\r\n");
    assert!(out.contains("30 100\r\n"), "{out:?}");
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert!(out.contains("xterm\r\n"), "{out:?}");
    // The keys a terminal sends reach the shell: ^C interrupts what runs, not berth.
    t.type_in("sleep 100\r");
    std::thread::sleep(Duration::from_millis(300));
    t.type_in("\x03");
    t.expect("# ");
    // A resize of our terminal reaches the container's.
    t.resize(40, 120);
    std::thread::sleep(Duration::from_millis(200));
    t.type_in("stty size\r");
    t.expect("40 120\r\n");
    t.type_in("exit 5\r");
    let (rc, _) = t.wait();
    assert_eq!(rc, 5);
    // Our terminal is back as it was.
    assert!(t.lflags().contains(cooked), "{:?}", t.lflags());

    // -t without -i: the size is the terminal's from the start, output comes back.
    let mut t = Pty::spawn(&b, &["exec", "-t", "box", "stty", "size"], 25, 81);
    let (rc, out) = t.wait();
    assert_eq!((rc, out.as_str()), (0, "25 81\r\r\n"));

    // -it needs a terminal on stdin.
    let (rc, _, err) = code(&b, &["exec", "-it", "box", "sh"]);
    assert_eq!(
        (rc, err.as_str()),
        (1, "Error: the input device is not a TTY\n")
    );

    ok(&b, &["rm", "-f", "box"]);
    assert_nothing_left(&b);
}

#[test]
fn attach_streams_output_forwards_stdin_and_signals_and_returns_the_exit_code() {
    let b = berth_with_busybox();
    run_d(
        &b,
        "ticker",
        &[],
        &[
            "sh",
            "-c",
            "i=0; while [ ! -e /tmp/stop ]; do echo tick $i; i=$((i+1)); sleep 0.1; done; echo bye >&2; exit 7",
        ],
    );
    let mut child = cmd(&b, &["attach", "ticker"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _deadline = Deadline::new(&child);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("tick "), "{line}");
    ok(&b, &["exec", "ticker", "touch", "/tmp/stop"]);
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(err, "bye\n");
    assert_eq!(status.code(), Some(7));
    let (rc, _, err) = code(&b, &["attach", "ticker"]);
    assert_eq!(
        (rc, err.as_str()),
        (
            1,
            "Error: cannot attach to a stopped container, start it first\n"
        )
    );

    // stdin reaches a container created with -i.
    run_d(
        &b,
        "reader",
        &["-i"],
        &["sh", "-c", "read x; echo got $x; exit 4"],
    );
    let mut child = cmd(&b, &["attach", "reader"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let _deadline = Deadline::new(&child);
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "got hello\n");
    assert_eq!(o.status.code(), Some(4));

    // Signals to attach go to the container (--sig-proxy is on by default).
    run_d(
        &b,
        "trapper",
        &[],
        &[
            "sh",
            "-c",
            "trap 'echo trapped; exit 11' TERM; while true; do echo alive; sleep 0.1; done",
        ],
    );
    let mut child = cmd(&b, &["attach", "trapper"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let _deadline = Deadline::new(&child);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "alive\n");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(rest.ends_with("trapped\n"), "{rest}");
    assert_eq!(status.code(), Some(11));
    assert_eq!(ok(&b, &["wait", "trapper"]), "11\n");

    for name in ["ticker", "reader", "trapper"] {
        ok(&b, &["rm", name]);
    }
    assert_nothing_left(&b);
}

#[test]
fn attach_to_a_terminal_and_detach_with_ctrl_p_ctrl_q() {
    let b = berth_with_busybox();
    run_d(&b, "shell", &["-i", "-t"], &["sh"]);
    let mut t = Pty::spawn(&b, &["attach", "shell"], 30, 100);
    let cooked = nix::sys::termios::LocalFlags::ECHO | nix::sys::termios::LocalFlags::ICANON;
    // Attaching makes the shell redraw (a resize); then it is ours to type into.
    std::thread::sleep(Duration::from_millis(300));
    t.type_in("stty size; echo hi-$((1+1))\r");
    let out = t.expect("hi-2\r\n");
    assert!(out.contains("30 100"), "{out:?}");
    t.type_in("\x10\x11");
    let (rc, out) = t.wait();
    assert_eq!(rc, 1);
    assert!(out.ends_with("read escape sequence\r\n"), "{out:?}");
    assert!(t.lflags().contains(cooked), "the terminal is restored");
    // Detached, not stopped: the shell still runs and keeps its state.
    assert!(ok(&b, &["ps"]).contains("shell"));
    let mut t = Pty::spawn(&b, &["attach", "shell"], 30, 100);
    std::thread::sleep(Duration::from_millis(300));
    t.type_in("exit 6\r");
    let (rc, _) = t.wait();
    assert_eq!(rc, 6);
    ok(&b, &["rm", "shell"]);

    // Without stdin a terminal is not needed; output stops mattering when our reader
    // goes, and SIGTERM (not proxied with a terminal) ends attach, not the container.
    run_d(
        &b,
        "talker",
        &["-t"],
        &["sh", "-c", "while true; do echo talk; sleep 0.1; done"],
    );
    for how in ["reader gone", "SIGTERM"] {
        let mut child = cmd(&b, &["attach", "--no-stdin", "talker"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let _deadline = Deadline::new(&child);
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line, "talk\r\n", "{how}");
        if how == "SIGTERM" {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let status = child.wait().unwrap();
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(status.signal(), Some(libc::SIGTERM), "{how}");
        } else {
            drop(out);
            assert_eq!(child.wait().unwrap().code(), Some(0), "{how}");
        }
        assert!(ok(&b, &["ps"]).contains("talker"), "{how}: still running");
    }
    ok(&b, &["rm", "-f", "talker"]);
    assert_nothing_left(&b);
}

/// The columns of a stats row (separated by runs of 3+ spaces).
fn columns(line: &str) -> Vec<String> {
    line.split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect()
}

/// "12.5MiB" → bytes.
fn binary_size(s: &str) -> f64 {
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap();
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().unwrap();
    let k = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        other => panic!("unit {other}"),
    };
    n * k
}

#[test]
fn stats_show_usage_and_limits() {
    let b = berth_with_busybox();
    let id = run_d(
        &b,
        "mem",
        &["--memory", "64m", "--network", "none"],
        // Holds ~8 MB in a shell variable.
        // (sleep is not the last command, or sh would exec it and free x).
        &[
            "sh",
            "-c",
            "x=$(head -c 8000000 /dev/zero | tr '\\0' a); sleep 1000; echo ${#x}",
        ],
    );
    run_d(&b, "burn", &[], &["sh", "-c", "while true; do :; done"]);
    ok(&b, &["create", "--name", "idle", "bb:1"]);
    wait_for("the shell's memory", || {
        let out = ok(
            &b,
            &["stats", "--no-stream", "--format", "{{.MemUsage}}", "mem"],
        );
        binary_size(out.split(" / ").next().unwrap()) > 4_000_000.0
    });

    let out = ok(&b, &["stats", "--no-stream", "mem", "burn"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("CONTAINER ID   NAME      CPU %     MEM USAGE / LIMIT"),
        "{out}"
    );
    assert_eq!(
        columns(lines[0]),
        [
            "CONTAINER ID",
            "NAME",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "NET I/O",
            "BLOCK I/O",
            "PIDS"
        ]
    );
    let mem = columns(lines[1]);
    assert_eq!(mem[0], &id[..12]);
    assert_eq!(mem[1], "mem");
    let (used, limit) = mem[3].split_once(" / ").unwrap();
    assert_eq!(limit, "64MiB");
    let used = binary_size(used);
    assert!(used > 4_000_000.0 && used < 64.0 * 1024.0 * 1024.0, "{out}");
    let percent: f64 = mem[4].trim_end_matches('%').parse().unwrap();
    let want = used / (64.0 * 1024.0 * 1024.0) * 100.0;
    assert!((percent - want).abs() < 1.0, "{percent} vs {want}: {out}");
    assert_eq!(mem[5], "0B / 0B", "network none has no traffic");
    assert_eq!(mem[7], "2", "sh and sleep");
    let burn = columns(lines[2]);
    let cpu: f64 = burn[2].trim_end_matches('%').parse().unwrap();
    assert!(cpu > 10.0, "a busy loop uses CPU: {out}");
    let (_, limit) = burn[3].split_once(" / ").unwrap();
    assert!(
        binary_size(limit) > 64.0 * 1024.0 * 1024.0,
        "no limit: the host's memory"
    );

    // All running containers without names; -a adds the others, with zeros.
    let running = ok(&b, &["stats", "--no-stream", "--format", "{{.Name}}"]);
    let mut names: Vec<&str> = running.lines().collect();
    names.sort();
    assert_eq!(names, ["burn", "mem"]);
    let all = ok(
        &b,
        &[
            "stats",
            "--no-stream",
            "-a",
            "--format",
            "{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.PIDs}}",
        ],
    );
    assert!(all.lines().any(|l| l == "idle 0.00% 0B / 0B 0"), "{all}");
    let json = ok(
        &b,
        &[
            "stats",
            "--no-stream",
            "--no-trunc",
            "--format",
            "json",
            "mem",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["ID"], id.as_str());
    assert_eq!(v["Container"], "mem");
    assert!(v["MemUsage"].as_str().unwrap().ends_with(" / 64MiB"));

    // Streaming redraws until interrupted.
    let mut child = cmd(&b, &["stats", "mem"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let _deadline = Deadline::new(&child);
    std::thread::sleep(Duration::from_millis(2600));
    child.kill().unwrap();
    let o = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.matches("\x1b[2J\x1b[H").count() >= 2, "{text:?}");
    assert!(text.matches("mem ").count() >= 2, "{text:?}");

    let (rc, _, err) = code(&b, &["stats", "--no-stream", "nosuch"]);
    assert_eq!(
        (rc, err.as_str()),
        (1, "Error response from daemon: No such container: nosuch\n")
    );

    // No container can publish ports yet: none to list, none to find.
    assert_eq!(
        code(&b, &["port", "mem"]),
        (0, String::new(), String::new())
    );
    assert_eq!(
        code(&b, &["port", "mem", "80/tcp"]),
        (
            1,
            String::new(),
            "Error: No public port '80/tcp' published for mem\n".into()
        )
    );
    assert_eq!(
        code(&b, &["container", "port", "mem", "53/udp"]).2,
        "Error: No public port '53/udp' published for mem\n"
    );
    assert_eq!(
        code(&b, &["port", "mem", "http"]).2,
        "Error: invalid port (http): strconv.ParseUint: parsing \"http\": invalid syntax\n"
    );
    assert_eq!(
        code(&b, &["port", "nosuch"]),
        (
            1,
            String::new(),
            "Error response from daemon: No such container: nosuch\n".into()
        )
    );

    ok(&b, &["rm", "-f", "mem", "burn", "idle"]);
    assert_nothing_left(&b);
}
