//! `berth exec`: a new process in a running container, started by the container's OCI
//! runtime straight from the CLI. With no daemon and no shim, the CLI is what holds the
//! process: it runs `RUNTIME exec --detach --pid-file P --process F ID` as a child
//! subreaper, so when the runtime exits the process becomes the CLI's own child, which it
//! waits for (its exit status is the command's), signals by pidfd, and feeds: stdin and
//! stdout pass straight through, stderr through a pipe so the runtime's own error text
//! never reaches the user's stderr, or with `-t` a terminal whose master the runtime
//! sends over a console socket (docs/architecture.md, "exec").

use crate::attach::{terminal_size, RawMode};
use crate::containers::open_engine;
use crate::App;
use anyhow::{bail, Context, Result};
use clap::Args;
use engine::container::Engine;
use engine::exec::{runtime_error, ExecFiles, ExecOptions};
use engine::store::Container;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use std::io::{IsTerminal, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

/// dockerd's exit status for an exec that could not start (it sets 126 for every start
/// failure, "executable file not found" included).
const CANNOT_START: i32 = 126;

/// Signals a foreground exec passes on to its process.
const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

// `docker exec` flags; everything after the container is the command, flags included
// (pflag's SetInterspersed(false)), hence one trailing positional.
#[derive(Args)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Set environment variables
    #[arg(short, long, value_name = "KEY=VALUE", allow_hyphen_values = true)]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long, value_name = "FILE", allow_hyphen_values = true)]
    pub env_file: Vec<PathBuf>,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short, long, allow_hyphen_values = true)]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short, long, allow_hyphen_values = true)]
    pub workdir: Option<String>,
    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,
    #[arg(
        value_name = "CONTAINER COMMAND [ARG...]",
        required = true,
        trailing_var_arg = true
    )]
    pub args: Vec<String>,
}

pub fn exec(app: &App, a: &ExecArgs) -> Result<i32> {
    let (name, command) = match a.args.split_first() {
        Some((name, command)) if !command.is_empty() => (name, command),
        _ => bail!("\"berth exec\" requires at least 2 arguments"),
    };
    let env = exec_env(a)?;
    let engine = open_engine(app)?;
    let c = match engine.exec_target(name) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Error response from daemon: {e}");
            return Ok(1);
        }
    };
    if a.tty && a.interactive && !a.detach && !std::io::stdin().is_terminal() {
        bail!("the input device is not a TTY");
    }
    let opts = ExecOptions {
        command: command.to_vec(),
        env,
        user: a.user.clone(),
        workdir: a.workdir.clone(),
        tty: a.tty,
        privileged: a.privileged,
        console_size: a.tty.then(terminal_size).flatten(),
    };
    let process = match engine.exec_process(&c, &opts) {
        Ok(p) => p,
        Err(e) => return Ok(cannot_start(&e.to_string())),
    };
    let files = Files::new(&serde_json::to_vec(&process)?, a.tty)?;
    let mode = match (a.detach, a.tty) {
        (true, _) => Mode::Detached,
        (false, false) => Mode::Pipes,
        (false, true) => Mode::Terminal,
    };
    run(&engine, &c, &files, mode, a.interactive)
}

/// `--env-file` lines, then `-e` values. A bare `-e KEY` takes KEY from our environment,
/// or, when we have none, unsets it in the process (docker's CLI passes it on bare and
/// dockerd's ReplaceOrAppendEnvValues drops the variable).
fn exec_env(a: &ExecArgs) -> Result<Vec<String>> {
    let lookup = |k: &str| std::env::var(k).ok();
    let mut env = vec![];
    for path in &a.env_file {
        env.extend(engine::flags::read_kv_file(path, Some(&lookup))?);
    }
    for e in &a.env {
        env.push(engine::flags::parse_env(e, &lookup)?.unwrap_or_else(|| e.clone()));
    }
    Ok(env)
}

/// An exec that did not start: dockerd's status, and the reason on one line.
fn cannot_start(message: &str) -> i32 {
    eprintln!("{message}");
    CANNOT_START
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `-d`: stdio /dev/null (a terminal is held by a small process of its own).
    Detached,
    /// stdin (with `-i`) and stdout inherited, stderr relayed.
    Pipes,
    /// `-t`: the terminal's master relayed to our stdio.
    Terminal,
}

/// The runtime's files for one exec, in a private temporary directory that goes with
/// this value, whatever path we leave by.
struct Files {
    dir: tempfile::TempDir,
    console: Option<UnixListener>,
}

impl Files {
    fn new(process: &[u8], tty: bool) -> Result<Files> {
        // Socket addresses hold 107 bytes; runc dials the console socket by its path, so
        // a long $TMPDIR falls back to /tmp.
        let tmp = std::env::temp_dir();
        let mut dir = tempfile::Builder::new()
            .prefix("berth-exec-")
            .tempdir_in(&tmp)
            .with_context(|| format!("creating a directory in {}", tmp.display()))?;
        if dir.path().join("console.sock").as_os_str().len() > 100 {
            dir = tempfile::Builder::new()
                .prefix("berth-exec-")
                .tempdir_in("/tmp")
                .context("creating a directory in /tmp")?;
        }
        let files = Files { dir, console: None };
        std::fs::write(files.process(), process).context("writing the exec's process")?;
        let console = if tty {
            let path = files.path("console.sock");
            let l =
                UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
            l.set_nonblocking(true)?;
            Some(l)
        } else {
            None
        };
        Ok(Files { console, ..files })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn process(&self) -> PathBuf {
        self.path("process.json")
    }
}

fn run(
    engine: &Engine,
    c: &Container,
    files: &Files,
    mode: Mode,
    interactive: bool,
) -> Result<i32> {
    let (process, pid_file, log) = (files.process(), files.path("pid"), files.path("log"));
    let console = files.console.as_ref().map(|_| files.path("console.sock"));
    let mut cmd = engine.exec_command(
        c,
        &ExecFiles {
            process: &process,
            pid_file: &pid_file,
            log: &log,
            console_socket: console.as_deref(),
        },
    );
    if mode != Mode::Detached {
        // The process is the runtime's child; when `exec --detach` exits it becomes ours.
        nix::sys::prctl::set_child_subreaper(true).context("prctl(PR_SET_CHILD_SUBREAPER)")?;
    }
    // Blocked before any thread exists, so only the signal thread takes them.
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGWINCH);
    let target = Arc::new(Mutex::new(Target::default()));
    if mode != Mode::Detached {
        set.thread_block()?;
        let target = Arc::clone(&target);
        std::thread::spawn(move || forward_signals(&set, &target));
    }

    // The process inherits the runtime's stdio unless it has a terminal. Our stderr is
    // replaced by a pipe so that what the runtime prints when it fails is not shown
    // (the log says why); what the process prints is copied on once it runs.
    let (err_read, err_write) = match mode {
        Mode::Detached => (None, None),
        _ => {
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            (Some(r), Some(w))
        }
    };
    let stdin = if mode == Mode::Pipes && interactive {
        Stdio::inherit()
    } else {
        Stdio::null()
    };
    let stdout = if mode == Mode::Pipes {
        Stdio::inherit()
    } else {
        Stdio::null()
    };
    cmd.stdin(stdin).stdout(stdout).stderr(match err_write {
        Some(w) => Stdio::from(w),
        None => Stdio::null(),
    });
    let spawned = cmd.spawn();
    // The Command holds our copy of the pipe's write end: closed now, or the relay
    // would never see the end of the process's stderr.
    drop(cmd);
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            return Ok(cannot_start(&format!(
                "OCI runtime exec failed: {}: {e}",
                c.runtime.display()
            )))
        }
    };
    let (status, early) = wait_runtime(&mut child, err_read.as_ref())?;
    if !status.success() {
        let text = String::from_utf8_lossy(&early);
        let why = runtime_error(&log, &text).unwrap_or_else(|| format!("the runtime {status}"));
        return Ok(cannot_start(&format!(
            "OCI runtime exec failed: {why}: unknown"
        )));
    }
    let pid = read_pid(&pid_file)?;
    if mode == Mode::Detached {
        // Not ours (init or our caller's subreaper has it now), and maybe done already.
        if let Some(l) = &files.console {
            if let Err(e) = receive_master(l).and_then(hold_terminal) {
                if let Ok(p) = Pidfd::open(pid) {
                    p.signal(libc::SIGKILL);
                }
                return Err(e);
            }
        }
        return Ok(0);
    }
    // From here on the process runs and is our child: it is waited for, or ended if we
    // cannot serve it.
    let process = Process::adopt(pid)?;
    let served = serve(&process, files, &target, err_read, &early, interactive);
    if served.is_err() {
        process.kill();
    }
    served
}

/// Connects the running process to our stdio (its terminal, or its stderr pipe) and
/// signals until it exits; its exit status.
fn serve(
    process: &Process,
    files: &Files,
    target: &Mutex<Target>,
    err: Option<OwnedFd>,
    early: &[u8],
    interactive: bool,
) -> Result<i32> {
    let master = files.console.as_ref().map(receive_master).transpose()?;
    {
        let mut t = target.lock().unwrap_or_else(|e| e.into_inner());
        t.pidfd = Some(process.pidfd.try_clone()?);
        t.master = master.as_ref().map(OwnedFd::try_clone).transpose()?;
        for s in std::mem::take(&mut t.pending) {
            t.deliver(s);
        }
    }
    let Some(m) = master else {
        let err = err.context("no stderr pipe")?;
        let _ = std::io::stderr().write_all(early);
        return relay(process, &err, &mut std::io::stderr());
    };
    let raw = (interactive && std::io::stdin().is_terminal())
        .then(RawMode::enter)
        .flatten();
    if let Some((rows, cols)) = terminal_size() {
        let _ = set_size(m.as_fd(), rows, cols);
    }
    if interactive {
        let m = m.try_clone()?;
        // Not joined: a read of our stdin may block after the process is gone.
        std::thread::spawn(move || copy_stdin(&m));
    }
    let code = relay(process, &m, &mut std::io::stdout());
    drop(raw);
    code
}

/// Waits for the runtime's `exec` to finish, keeping what it writes on the stderr pipe
/// meanwhile (the process may write there too once it runs).
fn wait_runtime(child: &mut Child, err: Option<&OwnedFd>) -> Result<(ExitStatus, Vec<u8>)> {
    let mut early = Vec::new();
    let Some(err) = err else {
        return Ok((child.wait()?, early));
    };
    let runtime = Pidfd::open(child.id() as i32)?;
    let mut err_open = true;
    loop {
        let mut fds = vec![PollFd::new(runtime.0.as_fd(), PollFlags::POLLIN)];
        if err_open {
            fds.push(PollFd::new(err.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        let exited = fds[0].any().unwrap_or(false);
        if err_open && fds[1].any().unwrap_or(false) {
            let mut buf = [0u8; 8192];
            match nix::unistd::read(err, &mut buf) {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => early.extend_from_slice(&buf[..n]),
            }
        }
        if exited {
            drain(err, &mut early);
            return Ok((child.wait()?, early));
        }
    }
}

fn read_pid(path: &Path) -> Result<i32> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("the runtime wrote no pid file {}", path.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("the runtime's pid file holds {text:?}"))
}

/// The exec'd process, once the runtime has exited: our child (we are its subreaper),
/// held by a pidfd so that a signal can never reach a later process with its pid.
struct Process {
    pid: i32,
    pidfd: Pidfd,
}

impl Process {
    fn adopt(pid: i32) -> Result<Process> {
        let pidfd = Pidfd::open(pid).with_context(|| format!("the exec's process {pid}"))?;
        Ok(Process { pid, pidfd })
    }

    /// Ends a process we cannot serve, and reaps it.
    fn kill(&self) {
        self.pidfd.signal(libc::SIGKILL);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(self.pid), None);
    }

    /// Its exit status as a shell reports it (128 + signal when killed).
    fn wait(&self) -> Result<i32> {
        use nix::sys::wait::{waitpid, WaitStatus};
        loop {
            match waitpid(nix::unistd::Pid::from_raw(self.pid), None) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(code),
                Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::ECHILD) => bail!(
                    "process {} is not a child of berth (the runtime kept it): its exit status is unknown",
                    self.pid
                ),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Copies `from` (the stderr pipe, or the terminal's master) to `to` until the process
/// exits; then what is left and already readable, and the exit status. Output that
/// processes left behind in the container write later is not waited for.
fn relay(process: &Process, from: &OwnedFd, to: &mut dyn Write) -> Result<i32> {
    let mut open = true;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let mut fds = vec![PollFd::new(process.pidfd.0.as_fd(), PollFlags::POLLIN)];
        if open {
            fds.push(PollFd::new(from.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        let exited = fds[0].any().unwrap_or(false);
        if open && fds[1].any().unwrap_or(false) {
            match nix::unistd::read(from, &mut buf) {
                // EIO: the terminal's last slave closed.
                Ok(0) | Err(_) => open = false,
                Ok(n) => {
                    if to.write_all(&buf[..n]).and_then(|()| to.flush()).is_err() {
                        open = false;
                    }
                }
            }
        }
        if exited {
            let code = process.wait()?;
            if open {
                let mut rest = Vec::new();
                drain(from, &mut rest);
                let _ = to.write_all(&rest).and_then(|()| to.flush());
            }
            return Ok(code);
        }
    }
}

/// Reads what `fd` holds now, without waiting for more.
fn drain(fd: &OwnedFd, into: &mut Vec<u8>) {
    let mut buf = [0u8; 8192];
    loop {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        if !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0) {
            return;
        }
        match nix::unistd::read(fd, &mut buf) {
            Ok(n) if n > 0 => into.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
}

/// What the signal thread acts on: the process once it exists (signals that arrive
/// before are kept), and its terminal for SIGWINCH.
#[derive(Default)]
struct Target {
    pidfd: Option<Pidfd>,
    master: Option<OwnedFd>,
    pending: Vec<Signal>,
}

impl Target {
    fn deliver(&mut self, sig: Signal) {
        if sig == Signal::SIGWINCH {
            if let (Some(m), Some((rows, cols))) = (&self.master, terminal_size()) {
                let _ = set_size(m.as_fd(), rows, cols);
            }
            return;
        }
        match &self.pidfd {
            Some(p) => p.signal(sig as i32),
            None => self.pending.push(sig),
        }
    }
}

fn forward_signals(set: &SigSet, target: &Mutex<Target>) {
    while let Ok(sig) = set.wait() {
        target
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .deliver(sig);
    }
}

/// Our stdin to the terminal, as typed (raw mode), until our stdin ends.
fn copy_stdin(master: &OwnedFd) {
    let mut buf = [0u8; 4096];
    let mut stdin = std::io::stdin().lock();
    loop {
        match stdin.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if write_all(master.as_fd(), &buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

fn write_all(fd: BorrowedFd, mut data: &[u8]) -> nix::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn set_size(fd: BorrowedFd, rows: u16, cols: u16) -> std::io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize struct from the pointer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The terminal's master, which the runtime has sent (SCM_RIGHTS) on the console socket
/// by the time its `exec` returns.
fn receive_master(listener: &UnixListener) -> Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let (conn, _) = listener
        .accept()
        .context("the runtime did not connect to the console socket")?;
    let mut buf = [0u8; 512];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .context("receiving the terminal from the runtime")?;
    let mut fds = vec![];
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(list) = c {
            // SAFETY: SCM_RIGHTS installed these descriptors in our table just now and
            // nothing else refers to them.
            fds.extend(
                list.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    if fds.is_empty() {
        bail!("the runtime sent no terminal on the console socket");
    }
    Ok(fds.swap_remove(0))
}

/// `exec -d -t`: the process keeps a terminal after we exit. A small process of its own
/// (setsid, stdio /dev/null) holds the master and discards the output, as dockerd does
/// when nobody is attached; it ends when the terminal's last user closes it.
fn hold_terminal(master: OwnedFd) -> Result<()> {
    let null = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    // Above the standard descriptors whatever ours are, so the dup2s below spare it.
    let master = nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10))?;
    // SAFETY: this process has a single thread here (`-d` starts none), so the child may
    // run ordinary code; it only makes syscalls and leaves with _exit.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { .. } => {
            // SAFETY: F_DUPFD_CLOEXEC returned this descriptor to us alone.
            drop(unsafe { OwnedFd::from_raw_fd(master) });
            Ok(())
        }
        nix::unistd::ForkResult::Child => {
            let _ = nix::unistd::setsid();
            // SAFETY: dup2 and close_range on this process's own descriptor table: stdio
            // becomes /dev/null, the master fd 3, and nothing else of the CLI (the store,
            // our caller's pipes) stays open here.
            unsafe {
                for target in 0..3 {
                    libc::dup2(null.as_raw_fd(), target);
                }
                libc::dup2(master, 3);
                libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32);
            }
            // SAFETY: fd 3 is the master, set up just above and owned by this process.
            let master = unsafe { BorrowedFd::borrow_raw(3) };
            let mut buf = [0u8; 4096];
            while let Ok(n) = nix::unistd::read(master, &mut buf) {
                if n == 0 {
                    break;
                }
            }
            // SAFETY: leave without running the parent's destructors in this copy.
            unsafe { libc::_exit(0) }
        }
    }
}

/// A process descriptor: signals reach that process or nothing, never a reused pid.
struct Pidfd(OwnedFd);

impl Pidfd {
    fn open(pid: i32) -> std::io::Result<Pidfd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the syscall just returned this descriptor; nothing else owns it.
        Ok(Pidfd(unsafe { OwnedFd::from_raw_fd(r as RawFd) }))
    }

    fn try_clone(&self) -> std::io::Result<Pidfd> {
        self.0.try_clone().map(Pidfd)
    }

    fn signal(&self, sig: i32) {
        // SAFETY: pidfd_send_signal with our descriptor, a signal number, no siginfo and
        // no flags; a process that has exited gives ESRCH.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
    }
}
