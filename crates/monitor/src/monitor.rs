//! The monitor's life after it has detached: create and start the container through the
//! runtime, then one poll(2) loop serves the container's output, the log, attached
//! clients and SIGCHLD until the container exits; then the exit file, the exit command
//! and the exit code for the clients. The steps and their order are docs/monitor.md's.
//!
//! The process works from inside the state directory (its cwd), so every file of the
//! container is named relative to it: socket paths must fit in 108 bytes.

use crate::args::Args;
use crate::attach::{self, Client};
use crate::clock::Stamp;
use crate::health::Health;
use crate::log::{JsonLog, Stream};
use crate::reaper::Reaper;
use crate::runtime::Runtime;
use crate::sys::{self, Exit};
use nix::sys::signalfd::SignalFd;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod events;
use events::{Output, Stdin, Token};

const ATTACH_SOCK: &str = "attach.sock";
const CONSOLE_SOCK: &str = "console.sock";
const START_ON_ATTACH_WAIT: Duration = Duration::from_secs(30);
const DRAIN_WAIT: Duration = Duration::from_secs(1);
const EXIT_COMMAND_WAIT: Duration = Duration::from_secs(60);
const DELETE_WAIT: Duration = Duration::from_secs(30);
/// One read of output or client input. Reads are one per descriptor per turn, so a
/// chatty container cannot starve the rest of the loop.
const CHUNK: usize = 16 * 1024;

/// Appends a line to STATE/monitor.log: the monitor's stdio is /dev/null.
pub fn note(msg: &str) {
    let line = format!("{} {msg}\n", Stamp::now().as_str());
    let _ = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open("monitor.log")
        .and_then(|mut f| f.write_all(line.as_bytes()));
}

/// Runs the monitor to the end; the process's exit code.
pub fn run(args: Args, sync: Option<OwnedFd>) -> i32 {
    let mut sync = sync.map(std::fs::File::from);
    let mut report = |line: &[u8]| {
        if let Some(mut f) = sync.take() {
            let _ = f.write_all(line);
        }
    };
    let mut m = match Monitor::new(args) {
        Ok(m) => m,
        Err(e) => {
            let msg = format!("set up: {e}");
            note(&msg);
            report(&crate::json::error_line(&msg));
            return 1;
        }
    };
    let pid = match m.start() {
        Ok(pid) => pid,
        Err(msg) => {
            note(&msg);
            m.delete();
            report(&crate::json::error_line(&msg));
            m.close();
            return 1;
        }
    };
    report(format!("{{\"pid\":{pid}}}\n").as_bytes());
    match m.serve(pid) {
        Ok((code, finished_at)) => {
            m.finish(code, &finished_at);
            0
        }
        Err(e) => {
            // poll(2) itself failed: nothing can be served any more. The container may
            // still run, so there is no exit file to write: the engine finds a dead
            // monitor, as after a crash.
            note(&format!("serve: {e}"));
            m.close();
            1
        }
    }
}

struct Monitor {
    args: Args,
    rt: Runtime,
    sig: SignalFd,
    reaper: Reaper,
    listener: Option<UnixListener>,
    /// (dev, ino) of our attach.sock: it is removed at the end only if still ours.
    listener_id: (u64, u64),
    console: Option<UnixListener>,
    clients: Vec<Client>,
    attached_once: bool,
    outputs: Vec<Output>,
    /// Output is read only once `start` succeeded: before that the pipes can hold only
    /// what the runtime itself printed (its error, on a failed create), which is not the
    /// container's output. The container cannot run before `start`, so nothing waits on
    /// us meanwhile (but a createRuntime hook that writes more than a pipe holds would).
    serving: bool,
    stdin: Option<Stdin>,
    /// The container's ends of the pipes until `create` has them.
    child_stdio: Option<[Stdio; 3]>,
    winsize: Option<(u16, u16)>,
    log: Option<JsonLog>,
    /// The last log write failed (a full disk): noted once, not once per chunk.
    log_failing: bool,
    buf: Vec<u8>,
    pollfds: Vec<libc::pollfd>,
    tokens: Vec<Token>,
}

impl Monitor {
    fn new(args: Args) -> io::Result<Monitor> {
        let sig = sys::signal_fd()?;
        // Leftovers of an earlier run of this container must not be mistaken for ours.
        for stale in ["pid", "exit", CONSOLE_SOCK] {
            let _ = std::fs::remove_file(stale);
        }
        let rt = Runtime {
            path: args.runtime.clone(),
            root: args.runtime_root.clone(),
            args: args.runtime_args.clone(),
            log: args.state_dir.join("runtime.log"),
            view: crate::runtime::readonly_view(&args.runtime),
        };
        let log = match &args.log_path {
            Some(p) => Some(
                JsonLog::open(p, args.log_max_size, args.log_max_files)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?,
            ),
            None => None,
        };
        let mut m = Monitor {
            args,
            rt,
            sig,
            reaper: Reaper::new(),
            listener: None,
            listener_id: (0, 0),
            console: None,
            clients: vec![],
            attached_once: false,
            outputs: vec![],
            serving: false,
            stdin: None,
            child_stdio: None,
            winsize: None,
            log,
            log_failing: false,
            buf: vec![0; CHUNK],
            pollfds: vec![],
            tokens: vec![],
        };
        if m.args.tty {
            let l = UnixListener::bind(CONSOLE_SOCK)?;
            l.set_nonblocking(true)?;
            m.console = Some(l);
        } else {
            let (out_r, out_w) = sys::pipe()?;
            let (err_r, err_w) = sys::pipe()?;
            let stdin = if m.args.stdin {
                let (in_r, in_w) = sys::pipe()?;
                sys::set_nonblocking(in_w.as_fd())?;
                m.stdin = Some(Stdin {
                    fd: in_w,
                    pending: vec![],
                    close_when_flushed: false,
                });
                Stdio::from(in_r)
            } else {
                Stdio::null()
            };
            for (fd, stream) in [(out_r, Stream::Stdout), (err_r, Stream::Stderr)] {
                sys::set_nonblocking(fd.as_fd())?;
                m.outputs.push(Output {
                    fd: Some(fd),
                    stream,
                });
            }
            m.child_stdio = Some([stdin, Stdio::from(out_w), Stdio::from(err_w)]);
        }
        // Last, so a failed setup leaves no socket behind.
        let (listener, id) = bind_attach()?;
        m.listener = Some(listener);
        m.listener_id = id;
        Ok(m)
    }

    /// Steps 4 to 6: `create`, the PTY, the wait for a client, `start`. The container's
    /// pid, or the error to report (the caller deletes what was created).
    ///
    /// Without a terminal it is one `RUNTIME run --detach` and then the wait: the runtime
    /// is started once instead of twice, and nothing is lost by starting first, because
    /// the pipes are not read before a client is there (a container that writes more than
    /// a pipe holds waits for it). With a terminal the wait comes before `start`: the
    /// client's first resize must size the terminal before the process can look at it.
    fn start(&mut self) -> Result<i32, String> {
        if !self.args.tty {
            return self.run_detached();
        }
        let mut create = self.rt.command("create");
        create
            .arg("--bundle")
            .arg(&self.args.bundle)
            .arg("--pid-file")
            .arg(self.args.state_dir.join("pid"));
        if self.args.tty {
            // Not the relative name: runc and youki resolve it after moving into the
            // bundle or their state directory. /proc/PID/cwd is our STATE at any depth,
            // and short enough for sun_path.
            create
                .arg("--console-socket")
                .arg(format!("/proc/{}/cwd/{CONSOLE_SOCK}", std::process::id()));
        }
        create.arg(&self.args.id);
        if let Some([i, o, e]) = self.child_stdio.take() {
            // Pass-through: the container inherits create's stdio.
            create.stdin(i).stdout(o).stderr(e);
        }
        let mark = self.rt.log_mark();
        let pid = self.spawn(create, "create")?;
        let exit = self.wait_for(pid, None).map_err(|e| e.to_string())?;
        if let Some(exit) = exit.filter(|e| *e != Exit::Code(0)) {
            return Err(self.runtime_error("create", mark, exit));
        }

        if self.args.tty {
            self.take_console()
                .map_err(|e| format!("receive the container's terminal: {e}"))?;
        }
        let pid = read_pid().map_err(|e| format!("read the runtime's pid file: {e}"))?;
        self.reaper.watch(pid);
        self.reaper.keep_watched_only();

        if self.args.start_on_attach {
            self.wait_for_first_client().map_err(|e| e.to_string())?;
        }

        let mut start = self.rt.command("start");
        start.arg(&self.args.id);
        let mark = self.rt.log_mark();
        let start_pid = self.spawn(start, "start")?;
        let exit = self.wait_for(start_pid, None).map_err(|e| e.to_string())?;
        if let Some(exit) = exit.filter(|e| *e != Exit::Code(0)) {
            return Err(self.runtime_error("start", mark, exit));
        }
        Ok(pid)
    }

    /// `RUNTIME run --detach`, then (with --start-on-attach) the wait for a client.
    fn run_detached(&mut self) -> Result<i32, String> {
        let mut run = self.rt.command("run");
        run.arg("--detach")
            .arg("--bundle")
            .arg(&self.args.bundle)
            .arg("--pid-file")
            .arg(self.args.state_dir.join("pid"))
            .arg(&self.args.id);
        if let Some([i, o, e]) = self.child_stdio.take() {
            run.stdin(i).stdout(o).stderr(e);
        }
        let mark = self.rt.log_mark();
        let run_pid = self.spawn(run, "run")?;
        let exit = self.wait_for(run_pid, None).map_err(|e| e.to_string())?;
        if let Some(exit) = exit.filter(|e| *e != Exit::Code(0)) {
            return Err(self.runtime_error("run", mark, exit));
        }
        let pid = read_pid().map_err(|e| format!("read the runtime's pid file: {e}"))?;
        self.reaper.watch(pid);
        self.reaper.keep_watched_only();
        if self.args.start_on_attach {
            self.wait_for_first_client().map_err(|e| e.to_string())?;
        }
        Ok(pid)
    }

    /// Up to 30 s for the first client (--start-on-attach).
    fn wait_for_first_client(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + START_ON_ATTACH_WAIT;
        while !self.attached_once {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                note("no client attached within 30 s; starting anyway");
                break;
            };
            self.turn(Some(left))?;
        }
        Ok(())
    }

    fn runtime_error(&self, what: &str, mark: u64, exit: Exit) -> String {
        self.rt
            .error_since(mark)
            .unwrap_or_else(|| format!("runtime {what}: {exit}"))
    }

    /// After a failed start: `RUNTIME delete --force ID`, so nothing of the container is
    /// left in the runtime (runc answers a missing container with success).
    fn delete(&mut self) {
        let mut delete = self.rt.command("delete");
        delete.args(["--force", &self.args.id]);
        let pid = match self.spawn(delete, "delete") {
            Ok(pid) => pid,
            Err(e) => return note(&e),
        };
        match self.wait_for(pid, Some(DELETE_WAIT)) {
            Ok(Some(Exit::Code(0))) => {}
            Ok(Some(e)) => note(&format!("runtime delete --force: {e}")),
            Ok(None) => {
                note("runtime delete --force did not finish in 30 s; killed");
                self.kill_and_reap(pid);
            }
            Err(e) => note(&format!("runtime delete --force: {e}")),
        }
    }

    fn spawn(&mut self, mut cmd: Command, what: &str) -> Result<i32, String> {
        let child = cmd
            .spawn()
            .map_err(|e| format!("run {} {what}: {e}", cmd.get_program().to_string_lossy()))?;
        // Dropping `cmd` closes our copies of the descriptors it passed. The `Child` is
        // dropped without waiting: the reaper collects every status.
        let pid = child.id() as i32;
        self.reaper.watch(pid);
        Ok(pid)
    }

    fn wait_for(&mut self, pid: i32, timeout: Option<Duration>) -> io::Result<Option<Exit>> {
        self.reaper.watch(pid);
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(exit) = self.reaper.take(pid) {
                return Ok(Some(exit));
            }
            let left = match deadline {
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) => Some(left),
                    None => return Ok(None),
                },
            };
            self.turn(left)?;
        }
    }

    fn kill_and_reap(&mut self, pid: i32) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.wait_for(pid, None);
    }

    /// The PTY master the runtime sent to console.sock during `create`. A runtime sends
    /// it before it reports the container created, so it is waiting in the socket.
    fn take_console(&mut self) -> io::Result<()> {
        let listener = self.console.take().ok_or(io::ErrorKind::NotFound)?;
        let _ = std::fs::remove_file(CONSOLE_SOCK);
        let (conn, _) = listener.accept().map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock => {
                io::Error::other("the runtime sent none (is process.terminal true?)")
            }
            _ => e,
        })?;
        let master = sys::recv_fd(conn.as_fd())?;
        sys::set_nonblocking(master.as_fd())?;
        if let Some((rows, cols)) = self.winsize {
            sys::set_winsize(master.as_fd(), rows, cols)?;
        }
        if self.args.stdin {
            self.stdin = Some(Stdin {
                fd: master.try_clone()?,
                pending: vec![],
                close_when_flushed: false,
            });
        }
        self.outputs.push(Output {
            fd: Some(master),
            stream: Stream::Stdout,
        });
        Ok(())
    }

    /// Steps 8 and 9 (first half): serve until the container has exited and its output
    /// is drained.
    fn serve(&mut self, pid: i32) -> io::Result<(i32, Stamp)> {
        self.serving = true;
        sys::trim_resident_code();
        let mut health = self.args.health.clone().map(Health::new);
        let exit = loop {
            if let Some(exit) = self.reaper.take(pid) {
                break exit;
            }
            let wake = health
                .as_mut()
                .map(|h| h.step(&self.rt, &self.args.id, &mut self.reaper));
            self.turn(wake)?;
        };
        let finished_at = Stamp::now();
        // A process outside the container's pid namespace (or one that escaped it) may
        // still hold the pipes: the drain is bounded.
        let deadline = Instant::now() + DRAIN_WAIT;
        while self.outputs.iter().any(|o| o.fd.is_some()) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            self.turn(Some(left))?;
        }
        Ok((exit.code(), finished_at))
    }

    /// Step 9 (second half) and 10.
    fn finish(&mut self, code: i32, finished_at: &Stamp) {
        for i in 0..self.outputs.len() {
            self.close_output(i);
        }
        // Closed before the exit command, which may remove the container and its log.
        self.log = None;
        self.stdin = None;
        if let Err(e) = write_exit_file(code, finished_at) {
            note(&format!("write exit file: {e}"));
        }
        let code = code.to_string();
        if self.clients.iter().any(|c| c.will_clean_up()) {
            // The attached CLI does the exit command's work itself (it is running and has
            // the store open already): it gets the status first, and the exit command
            // runs only if it goes away without saying it is done.
            for c in &mut self.clients {
                c.send(attach::EXIT, code.as_bytes());
            }
            if !self.wait_for_cleanup() {
                self.run_exit_command();
            }
        } else {
            self.run_exit_command();
            for c in &mut self.clients {
                c.send(attach::EXIT, code.as_bytes());
            }
        }
        self.close();
    }

    /// Serves until a client that took the cleanup on says DONE (true), or none that
    /// could is left, or the exit command's time limit passes (false).
    fn wait_for_cleanup(&mut self) -> bool {
        let deadline = Instant::now() + EXIT_COMMAND_WAIT;
        loop {
            if self.clients.iter().any(|c| c.cleans_up && c.done) {
                return true;
            }
            if !self.clients.iter().any(|c| c.will_clean_up()) {
                return false;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                note("the attached client did not finish the cleanup in 60 s");
                return false;
            };
            if self.turn(Some(left)).is_err() {
                return false;
            }
        }
    }

    fn run_exit_command(&mut self) {
        let Some(path) = self.args.exit_command.clone() else {
            return;
        };
        let mut cmd = Command::new(&path);
        cmd.args(&self.args.exit_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let pid = match self.spawn(cmd, "(exit command)") {
            Ok(pid) => pid,
            Err(e) => return note(&e),
        };
        match self.wait_for(pid, Some(EXIT_COMMAND_WAIT)) {
            Ok(Some(Exit::Code(0))) => {}
            Ok(Some(e)) => note(&format!("exit command: {e}")),
            Ok(None) => {
                note("exit command did not finish in 60 s; killed");
                self.kill_and_reap(pid);
            }
            Err(e) => note(&format!("exit command: {e}")),
        }
    }

    /// Closes the clients and removes the sockets; children that have exited are reaped.
    fn close(&mut self) {
        self.clients.clear();
        if self.listener.take().is_some() {
            // The exit command may have started a new monitor for this container, with
            // an attach.sock of its own under the same name: only ours is removed.
            if let Ok(md) = std::fs::symlink_metadata(ATTACH_SOCK) {
                if (md.dev(), md.ino()) == self.listener_id {
                    let _ = std::fs::remove_file(ATTACH_SOCK);
                }
            }
        }
        if self.console.take().is_some() {
            let _ = std::fs::remove_file(CONSOLE_SOCK);
        }
        self.reaper.reap();
    }
}

/// Binds attach.sock (mode 0600) so that it appears only when it accepts connections:
/// bound and listening under a temporary name, then renamed. A client that sees the
/// file can connect.
fn bind_attach() -> io::Result<(UnixListener, (u64, u64))> {
    let tmp = format!("{ATTACH_SOCK}.{}", std::process::id());
    let _ = std::fs::remove_file(&tmp);
    let l = UnixListener::bind(&tmp)?;
    l.set_nonblocking(true)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, ATTACH_SOCK)?;
    let md = std::fs::symlink_metadata(ATTACH_SOCK)?;
    Ok((l, (md.dev(), md.ino())))
}

fn read_pid() -> io::Result<i32> {
    let text = std::fs::read_to_string("pid")?;
    text.trim()
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{text:?}")))
}

/// STATE/exit, atomically: readers see the whole file or none.
fn write_exit_file(code: i32, finished_at: &Stamp) -> io::Result<()> {
    let body = format!(
        "{{\"exit_code\":{code},\"finished_at\":\"{}\"}}",
        finished_at.as_str()
    );
    std::fs::write("exit.tmp", body)?;
    std::fs::rename("exit.tmp", "exit")
}
