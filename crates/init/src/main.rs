//! berth-init: PID 1 for `berth run --init`, bind-mounted at /sbin/docker-init and run as
//! `docker-init -- COMMAND [ARG...]`, as Docker runs tini there. A shell or an app made to
//! be PID 1 of nothing gets what PID 1 owes it:
//!
//! - signals reach it: PID 1 of a namespace gets only the signals it has handlers for,
//!   so every signal sent to the container would otherwise vanish; here each one is
//!   forwarded to the command;
//! - orphans are reaped, so zombies do not pile up in the container;
//! - the container exits with the command's status (128 + signal if it was killed).
//!
//! As tini does, the command gets its own process group and, on a terminal, the
//! foreground, so a shell's job control and Ctrl-C work.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Signals the kernel sends for a fault of this process itself; they cannot be waited for.
const SYNCHRONOUS: [libc::c_int; 7] = [
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGABRT,
    libc::SIGTRAP,
    libc::SIGSYS,
];

fn main() {
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "--") {
        args.remove(0);
    }
    let Some((program, rest)) = args.split_first() else {
        fail(2, "usage: berth-init [--] COMMAND [ARG...]");
    };

    // Blocked before the child exists, so no signal is lost between fork and the wait.
    // SAFETY: sigset_t is plain data that sigfillset/sigdelset initialise and edit;
    // sigprocmask only reads it.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for s in SYNCHRONOUS {
            libc::sigdelset(&mut set, s);
        }
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        set
    };
    // Outside a pid namespace of its own (`--pid host`) orphans would go to the host's
    // init: be their reaper anyway.
    // SAFETY: prctl with an integer argument; failure only means we reap less.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };

    let mut cmd = Command::new(program);
    cmd.args(rest);
    // SAFETY: between fork and exec only setpgid, isatty, tcsetpgrp and sigprocmask run,
    // all async-signal-safe. SIGTTOU is still blocked while the child takes the terminal's
    // foreground from the background, so that does not stop it; then the command gets an
    // empty mask (std does not reset it: with ours it would never see a signal).
    unsafe {
        cmd.pre_exec(|| {
            libc::setpgid(0, 0);
            if libc::isatty(0) == 1 {
                libc::tcsetpgrp(0, libc::getpid());
            }
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            Ok(())
        });
    }
    let child = match cmd.spawn() {
        Ok(c) => c.id() as libc::pid_t,
        Err(e) => {
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            fail(
                code,
                &format!("exec {} failed: {e}", program.to_string_lossy()),
            );
        }
    };

    loop {
        // SAFETY: siginfo_t is plain data sigwaitinfo fills in; `set` is initialised.
        let sig = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::sigwaitinfo(&set, &mut info)
        };
        if sig < 0 {
            continue; // EINTR
        }
        if sig != libc::SIGCHLD {
            // SAFETY: kill with a pid we spawned; it fails harmlessly if it is gone.
            unsafe { libc::kill(child, sig) };
            continue;
        }
        // Every exited child, ours or an orphan.
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes the status into our integer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if pid == child {
                let code = if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    128 + libc::WTERMSIG(status)
                };
                std::process::exit(code);
            }
        }
    }
}

fn fail(code: i32, msg: &str) -> ! {
    let _ = writeln!(std::io::stderr(), "berth-init: {msg}");
    std::process::exit(code)
}
