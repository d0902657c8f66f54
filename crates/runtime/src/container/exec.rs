//! `exec`: a new process inside a running container.
//!
//! The runtime forks a helper that enters the container's namespaces; the helper clones
//! the final process with CLONE_PARENT, so it is the runtime's own child (the runtime can
//! wait for it and report its exit code) yet born inside the container's pid namespace.
//! The process joins the container's cgroup before it runs anything of its own.

use crate::error::{Context, Error, Result};
use crate::namespaces::{self, JOIN_ORDER};
use crate::state::{Container, Status};
use crate::sync::{self, Channel, Msg};
use crate::{caps, process, seccomp};
use nix::sched::CloneFlags;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Process};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

pub struct ExecOptions {
    pub process: Process,
    pub console_socket: Option<PathBuf>,
    pub pidfd_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: i32,
}

/// Starts the process; returns its pid (our child).
pub fn exec(c: &Container, o: &ExecOptions) -> Result<i32> {
    match c.status() {
        Status::Running | Status::Created => {}
        Status::Paused => return Err(Error::State("cannot exec in a paused container".into())),
        Status::Stopped => return Err(Error::State("cannot exec in a stopped container".into())),
    }
    let args = o.process.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(Error::Other(
            "exec: no command given (process.args is empty)".into(),
        ));
    }
    if o.process.terminal() == Some(true) && o.console_socket.is_none() {
        return Err(Error::Other(
            "exec: a terminal needs --console-socket".into(),
        ));
    }
    let nss = open_namespaces(c.stored.pid)?;
    let joiner = c.stored.cgroup.joiner()?;
    let console = match &o.console_socket {
        Some(p) => Some(
            crate::sockpath::connect(p)
                .ctx(|| format!("connect to console socket {}", p.display()))?,
        ),
        None => None,
    };
    // The container's filter, compiled (or cached) here: the final process only loads it.
    let filter = c
        .stored
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .map(|sc| {
            let root = c.dir.parent().unwrap_or(&c.dir);
            seccomp::prepare(sc, Some(&root.join(seccomp::CACHE_DIR)))
        })
        .transpose()?;
    let (parent, child) = sync::pair()?;
    let job = Job {
        seccomp: filter.as_ref(),
        c,
        o,
        nss: &nss,
        chan: &child,
        console: console.as_ref().map(|s| s.as_raw_fd()),
        cgroup: &joiner,
    };
    // SAFETY: the runtime is single-threaded; the child runs `helper` and always _exits.
    let helper = match unsafe { nix::unistd::fork() }.ctx(|| "fork exec helper")? {
        nix::unistd::ForkResult::Child => {
            let code = match job.helper() {
                Ok(()) => 0,
                Err(e) => {
                    let _ = child.send(&Msg::Error(e.to_string()));
                    1
                }
            };
            // SAFETY: leave without running the runtime's destructors in the copy.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    drop(child);
    let _ = nix::sys::wait::waitpid(helper, None);
    let pid = match parent.recv()? {
        Some((Msg::Go(pid), _)) => pid
            .parse::<i32>()
            .map_err(|_| Error::Other("exec: bad pid from helper".into()))?,
        Some((Msg::Error(e), _)) => return Err(Error::Other(e)),
        _ => return Err(Error::Other("exec: helper died".into())),
    };
    let proc_pid = Pid::from_raw(pid);
    let kill_it = || {
        let _ = nix::sys::signal::kill(proc_pid, nix::sys::signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(proc_pid, None);
    };
    if let Err(e) = process::set_oom_score_adj(pid, &o.process) {
        kill_it();
        return Err(e);
    }
    parent.send(&Msg::Go(String::new()))?;
    // The channel is close-on-exec: end of file means the program is running.
    loop {
        match parent.recv()? {
            None => break,
            Some((Msg::Error(e), _)) => {
                kill_it();
                return Err(Error::Other(e));
            }
            Some((Msg::SeccompFd, Some(fd))) => send_notify(c, pid, fd)?,
            Some(_) => {}
        }
    }
    if let Some(pf) = &o.pid_file {
        std::fs::write(pf, pid.to_string()).ctx(|| format!("write pid file {}", pf.display()))?;
    }
    if let Some(sock) = &o.pidfd_socket {
        crate::pidfd::send(sock, pid)?;
    }
    Ok(pid)
}

fn send_notify(c: &Container, pid: i32, fd: OwnedFd) -> Result<()> {
    let sc = c
        .stored
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref());
    let Some(path) = sc.and_then(|s| s.listener_path().as_ref()) else {
        return Ok(());
    };
    let st = c.oci_state();
    let msg = serde_json::json!({
        "ociVersion": crate::state::OCI_VERSION, "fds": ["seccompFd"], "pid": pid,
        "metadata": sc.and_then(|s| s.listener_metadata().clone()).unwrap_or_default(),
        "state": st,
    })
    .to_string();
    Ok(seccomp::send_listener(
        path,
        crate::init::borrowed(fd.as_raw_fd()),
        msg.as_bytes(),
    )?)
}

/// The init's namespaces that differ from ours, in join order.
fn open_namespaces(pid: i32) -> Result<Vec<(LinuxNamespaceType, OwnedFd)>> {
    let mut out = vec![];
    for t in JOIN_ORDER {
        let name = namespaces::proc_name(t);
        let theirs = format!("/proc/{pid}/ns/{name}");
        let (Ok(a), Ok(b)) = (
            std::fs::read_link(&theirs),
            std::fs::read_link(format!("/proc/self/ns/{name}")),
        ) else {
            continue; // a kernel without this namespace type
        };
        if a == b {
            continue;
        }
        let fd = nix::fcntl::open(
            theirs.as_str(),
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ctx(|| format!("open {theirs}"))?;
        out.push((t, fd));
    }
    Ok(out)
}

struct Job<'a> {
    c: &'a Container,
    o: &'a ExecOptions,
    nss: &'a [(LinuxNamespaceType, OwnedFd)],
    chan: &'a Channel,
    console: Option<RawFd>,
    cgroup: &'a cgroups::Joiner,
    seccomp: Option<&'a seccomp::Prepared>,
}

impl Job<'_> {
    /// In the forked helper: enter the namespaces, clone the final process, report its pid.
    fn helper(&self) -> Result<()> {
        // Not dumpable: processes in the container cannot open /proc/PID/exe of this
        // runtime binary while it runs in their pid namespace (CVE-2019-5736).
        nix::sys::prctl::set_dumpable(false).ctx(|| "prctl(PR_SET_DUMPABLE)")?;
        // Joined here, by the helper itself (cheap, see cgroups::Joiner), so the process
        // cloned below starts inside the container's cgroup.
        self.cgroup.join_self(false)?;
        for (t, fd) in self.nss {
            nix::sched::setns(fd, namespaces::flag(*t))
                .ctx(|| format!("join {} namespace", namespaces::proc_name(*t)))?;
        }
        let mut stack = vec![0u8; 1 << 20];
        let cb = Box::new(|| self.final_process());
        // SAFETY: single-threaded copy; the callback ends in exec or _exit.
        let pid = unsafe { nix::sched::clone(cb, &mut stack, CloneFlags::CLONE_PARENT, None) }
            .ctx(|| "clone exec process")?;
        self.chan.send(&Msg::Go(pid.as_raw().to_string()))
    }

    fn final_process(&self) -> isize {
        let e = match self.setup_and_exec() {
            Ok(never) => match never {},
            Err(e) => e,
        };
        let _ = self.chan.send(&Msg::Error(e.to_string()));
        // SAFETY: see helper.
        unsafe { libc::_exit(1) }
    }

    fn setup_and_exec(&self) -> Result<std::convert::Infallible> {
        let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
        match self.chan.recv()? {
            Some((Msg::Go(_), _)) => {}
            _ => return Err(Error::Other("runtime went away".into())),
        }
        // A detached exec outlives the runtime; the death signal would survive execve.
        nix::sys::prctl::set_pdeathsig(None).ctx(|| "clear parent death signal")?;
        let p = &self.o.process;
        let spec = &self.c.stored.spec;
        let linux = spec.linux().as_ref();
        if self.nss.iter().any(|(t, _)| *t == LinuxNamespaceType::User) {
            use nix::unistd::{setresgid, setresuid, Gid, Uid};
            let (g, u) = (Gid::from_raw(0), Uid::from_raw(0));
            setresgid(g, g, g).ctx(|| "setgid 0 in user namespace")?;
            setresuid(u, u, u).ctx(|| "setuid 0 in user namespace")?;
        }
        nix::unistd::setsid().ctx(|| "setsid")?;
        if p.terminal() == Some(true) {
            let sock = self.console.expect("checked in exec()");
            crate::console::setup_pty(sock, p)?;
        }
        process::set_rlimits(p)?;
        process::set_sched(p, linux)?;
        let nnp = p.no_new_privileges() == Some(true);
        let mut late = None;
        if let Some(f) = self.seccomp {
            if nnp && !f.needs_notify() {
                late = Some(f);
            } else {
                if nnp {
                    nix::sys::prctl::set_no_new_privs().ctx(|| "prctl(PR_SET_NO_NEW_PRIVS)")?;
                }
                if let Some(fd) = f.load()? {
                    self.chan
                        .send_with_fd(&Msg::SeccompFd, Some(fd.as_raw_fd()))?;
                }
            }
        }
        let caps = p.capabilities().as_ref();
        caps::drop_bounding(caps)?;
        caps::switch_user(p.user(), true)?;
        caps::apply(caps)?;
        nix::unistd::chdir(p.cwd().as_path()).ctx(|| format!("cwd {}", p.cwd().display()))?;
        nix::unistd::getcwd()
            .ctx(|| format!("cwd {} is outside the container", p.cwd().display()))?;
        if nnp {
            nix::sys::prctl::set_no_new_privs().ctx(|| "prctl(PR_SET_NO_NEW_PRIVS)")?;
        }
        let env = process::environment(p);
        let args = p.args().clone().unwrap_or_default();
        let program = process::find_program(&args[0], &env)?;
        process::seal_fds(self.o.preserve_fds)?;
        if let Some(f) = late {
            f.load()?;
        }
        process::reset_signals();
        Err(process::exec(&program, &args, &env))
    }
}
