//! berth-monitor: one small process per running container, between the daemonless engine
//! and the OCI runtime. It holds the container's stdio or PTY, writes its log, serves
//! attach clients and records its exit status. The contract is docs/monitor.md.

mod args;
mod attach;
mod clock;
mod health;
mod json;
mod log;
mod monitor;
mod reaper;
mod runtime;
mod sys;

use std::io::Write;
use std::os::fd::OwnedFd;

fn main() {
    let mut args = match args::parse(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => fail(2, &e, None),
    };
    // Before anything opens a descriptor of its own: what we inherited must not reach
    // the runtime or the container.
    sys::cloexec_from_3();
    let sync = match args.sync_fd.map(sys::inherited_fd).transpose() {
        Ok(s) => s,
        Err(e) => fail(2, &format!("--sync-fd: {e}"), None),
    };
    match std::env::current_dir() {
        Ok(cwd) => args.make_absolute(&cwd),
        Err(e) => fail(1, &format!("current directory: {e}"), sync),
    }
    if let Err(e) = std::fs::create_dir_all(&args.state_dir) {
        let msg = format!("{}: {e}", args.state_dir.display());
        fail(1, &msg, sync);
    }
    match sys::fork() {
        Err(e) => fail(1, &format!("fork: {e}"), sync),
        Ok(sys::Forked::Parent(child)) => {
            // Written here rather than by the child, so it exists by the time the CLI
            // has reaped this process.
            let pid_file = args.state_dir.join("monitor.pid");
            let tmp = args.state_dir.join("monitor.pid.tmp");
            let written = std::fs::write(&tmp, child.to_string())
                .and_then(|()| std::fs::rename(&tmp, &pid_file));
            if let Err(e) = written {
                let _ = writeln!(
                    std::io::stderr(),
                    "berth-monitor: {}: {e}",
                    pid_file.display()
                );
            }
            sys::exit_now(0);
        }
        Ok(sys::Forked::Child) => {}
    }
    // A session of its own: no terminal's hangup or job control reaches the monitor. As
    // a child subreaper it inherits the container's init when `create` exits.
    detach_stdio();
    let _ = nix::unistd::setsid();
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let _ = nix::sys::prctl::set_name(c"berth-monitor");
    if let Err(e) = nix::unistd::chdir(&args.state_dir) {
        let msg = format!("chdir {}: {e}", args.state_dir.display());
        fail(1, &msg, sync);
    }
    std::process::exit(monitor::run(args, sync));
}

/// The CLI gives the monitor /dev/null as stdio; whatever it gave, the detached monitor
/// must not hold it open (a caller waiting for EOF on a pipe would wait for the container).
/// From here on, failures go to STATE/monitor.log.
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
}

/// Reports a failure before the monitor is running: one line on stderr and, when there
/// is a sync fd, the error line the engine waits for.
fn fail(code: i32, msg: &str, sync: Option<OwnedFd>) -> ! {
    let _ = writeln!(std::io::stderr(), "berth-monitor: {msg}");
    if let Some(fd) = sync {
        let _ = std::fs::File::from(fd).write_all(&json::error_line(msg));
    }
    std::process::exit(code)
}
