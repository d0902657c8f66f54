//! The container's first process, from clone(2) to execve(2). It runs in the runtime's
//! copied address space on its own stack and never returns: it execs the user program or
//! reports its error over the sync channel and exits.
//!
//! Order matters and follows runc: namespaces, hostname, mounts, (runtime hooks),
//! createContainer hooks, pivot_root, sysctl, read-only and masked paths, console,
//! process attributes, early seccomp, capabilities and user, "ready", wait for `start`,
//! startContainer hooks, late seccomp (with noNewPrivileges), exec.

use crate::error::{Context, Error, Result};
use crate::namespaces::Plan;
use crate::sync::{Channel, Msg};
use crate::{caps, hooks, process, rootfs, seccomp};
use oci_spec::runtime::Spec;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::Path;

pub struct Args<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub chan: &'a Channel,
    pub plan: &'a Plan,
    pub start_listener: RawFd,
    pub console_socket: Option<RawFd>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: i32,
    pub cgroup_mounts: &'a [rootfs::CgroupMount],
    /// Moves this process into the container's cgroup (see `cgroups::Joiner`).
    pub cgroup: &'a cgroups::Joiner,
    /// Set in the child when clone3 placed it in the cgroup2 directory already.
    pub born_in_cgroup2: bool,
    /// `linux.seccomp`, compiled (or taken from the cache) by the runtime before the clone.
    pub seccomp: Option<&'a seccomp::Prepared>,
}

/// Entry point in the child. Never returns.
pub fn main(a: &Args) -> isize {
    // If the runtime dies while we are being set up, do not linger half-made.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    // Until exec, this process is the runtime binary: keep /proc/PID/exe out of reach of
    // processes in a joined pid namespace (CVE-2019-5736). execve makes it dumpable again.
    let _ = nix::sys::prctl::set_dumpable(false);
    let err = match a
        .cgroup
        .join_self(a.born_in_cgroup2)
        .map_err(Error::from)
        .and_then(|()| run(a))
    {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = a.chan.send(&Msg::Error(err.to_string()));
    // SAFETY: _exit skips atexit handlers and destructors of the runtime's copied state.
    unsafe { libc::_exit(1) }
}

fn run(a: &Args) -> Result<std::convert::Infallible> {
    crate::trace::mark("init start");
    let state_json = match a.chan.recv()? {
        Some((Msg::Go(s), _)) => s,
        _ => return Err(Error::Other("runtime went away".into())),
    };
    let spec = a.spec;
    let process = spec.process().as_ref().expect("validated");
    let linux = spec.linux().as_ref();

    if a.plan.new_userns {
        become_ns_root()?;
    }
    for (t, fd) in &a.plan.join {
        if *t == oci_spec::runtime::LinuxNamespaceType::Pid
            || *t == oci_spec::runtime::LinuxNamespaceType::Time
        {
            continue; // joined by the runtime before clone
        }
        nix::sched::setns(fd, crate::namespaces::flag(*t))
            .ctx(|| format!("join {} namespace", crate::namespaces::proc_name(*t)))?;
        if *t == oci_spec::runtime::LinuxNamespaceType::User {
            become_ns_root()?;
        }
    }
    if a.plan.new_cgroupns {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
            .ctx(|| "create cgroup namespace")?;
    }
    if let Some(h) = spec.hostname() {
        nix::unistd::sethostname(h).ctx(|| format!("sethostname {h:?}"))?;
    }
    if let Some(d) = spec.domainname() {
        // SAFETY: the pointer and length describe a live byte slice.
        let r = unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) };
        if r != 0 {
            return Err(Error::Sys {
                context: format!("setdomainname {d:?}"),
                errno: nix::errno::Errno::last(),
            });
        }
    }

    let setup = rootfs::Setup {
        spec,
        rootfs: a.rootfs,
        bundle: a.bundle,
        cgroup_mounts: a.cgroup_mounts,
        cgroupns: a.plan.new_cgroupns
            || a.plan
                .join
                .iter()
                .any(|(t, _)| *t == oci_spec::runtime::LinuxNamespaceType::Cgroup),
        in_userns: a.plan.has_userns,
    };
    rootfs::prepare(&setup)?;
    crate::trace::mark("init mounts done");

    a.chan.send(&Msg::RunHooks)?;
    a.chan.expect(Msg::HooksDone)?;
    let hooks = spec.hooks().as_ref();
    hooks::run_all(
        "createContainer",
        hooks.and_then(|h| h.create_container().as_ref()),
        state_json.as_bytes(),
    )?;

    rootfs::pivot(a.rootfs, a.no_pivot)?;
    rootfs::apply_root_propagation(spec)?;
    crate::trace::mark("init pivoted");
    for (k, v) in linux
        .and_then(|l| l.sysctl().as_ref())
        .into_iter()
        .flatten()
    {
        let path = format!("/proc/sys/{}", k.replace('.', "/"));
        std::fs::write(&path, v).ctx(|| format!("linux.sysctl {k}={v}"))?;
    }
    rootfs::finalize(spec)?;
    crate::trace::mark("init finalized");

    if !a.no_new_keyring {
        // A fresh session keyring, so the container cannot see the host's keys. Some
        // kernels or seccomp profiles refuse keyctl: that is not fatal, as in runc.
        // SAFETY: KEYCTL_JOIN_SESSION_KEYRING with a NUL-terminated name.
        unsafe {
            libc::syscall(
                libc::SYS_keyctl,
                1, /* KEYCTL_JOIN_SESSION_KEYRING */
                c"_ses".as_ptr(),
            )
        };
    }

    nix::unistd::setsid().ctx(|| "setsid")?;
    if process.terminal() == Some(true) {
        let sock = a.console_socket.ok_or_else(|| {
            Error::Other("process.terminal is true but no --console-socket was given".into())
        })?;
        crate::console::setup_pty(sock, process)?;
    }

    process::set_rlimits(process)?;
    process::set_sched(process, linux)?;

    let nnp = process.no_new_privileges() == Some(true);
    let mut late_filter = None;
    if let Some(f) = a.seccomp {
        if nnp && !f.needs_notify() {
            late_filter = Some(f);
        } else {
            if nnp {
                nix::sys::prctl::set_no_new_privs().ctx(|| "prctl(PR_SET_NO_NEW_PRIVS)")?;
            }
            if let Some(fd) = f.load()? {
                a.chan.send_with_fd(&Msg::SeccompFd, Some(fd.as_raw_fd()))?;
            }
        }
    }

    let caps = process.capabilities().as_ref();
    caps::drop_bounding(caps)?;
    let cwd = process.cwd();
    let early_cd = nix::unistd::chdir(cwd.as_path());
    caps::switch_user(process.user(), setgroups_allowed(a.plan))?;
    caps::apply(caps)?;
    if early_cd.is_err() {
        nix::unistd::chdir(cwd.as_path()).ctx(|| format!("process.cwd {}", cwd.display()))?;
    }
    // A cwd that resolves outside the root (a leaked directory fd, CVE-2024-21626) makes
    // getcwd fail: refuse to run there.
    nix::unistd::getcwd()
        .ctx(|| format!("process.cwd {} is outside the container", cwd.display()))?;
    if nnp {
        nix::sys::prctl::set_no_new_privs().ctx(|| "prctl(PR_SET_NO_NEW_PRIVS)")?;
    }

    let env = process::environment(process);
    let args = process.args().clone().unwrap_or_default();
    let program = process::find_program(&args[0], &env)?;
    process::seal_fds(a.preserve_fds)?;

    // From here the init outlives the runtime process that created it.
    nix::sys::prctl::set_pdeathsig(None).ctx(|| "clear parent death signal")?;
    crate::trace::mark("init ready");
    a.chan.send(&Msg::Ready)?;

    // Block until `start` connects to the start socket and sends its byte.
    // SAFETY: the listener fd was created for us by the runtime and is owned by no one else here.
    let listener = unsafe { UnixListener::from_raw_fd(a.start_listener) };
    let mut conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).ctx(|| "wait for start"),
        }
    };
    let mut b = [0u8; 1];
    if conn.read(&mut b).unwrap_or(0) != 1 {
        // SAFETY: see main().
        unsafe { libc::_exit(1) }
    }
    let fail = |conn: &mut std::os::unix::net::UnixStream, e: Error| -> ! {
        let _ = conn.write_all(e.to_string().as_bytes());
        // SAFETY: see main().
        unsafe { libc::_exit(1) }
    };
    let mut running_state = state_json.clone();
    running_state = running_state.replacen("\"creating\"", "\"running\"", 1);
    if let Err(e) = hooks::run_all(
        "startContainer",
        hooks.and_then(|h| h.start_container().as_ref()),
        running_state.as_bytes(),
    ) {
        fail(&mut conn, e);
    }
    if let Some(f) = late_filter {
        if let Err(e) = f.load() {
            fail(&mut conn, e.into());
        }
    }
    crate::trace::mark("init exec");
    process::reset_signals();
    let e = process::exec(&program, &args, &env);
    fail(&mut conn, e)
}

/// After entering a user namespace we hold its capabilities but not its uid 0; switch to it.
fn become_ns_root() -> Result<()> {
    use nix::unistd::{setresgid, setresuid, Gid, Uid};
    setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .ctx(|| "setgid 0 in user namespace (is gid 0 mapped?)")?;
    setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .ctx(|| "setuid 0 in user namespace (is uid 0 mapped?)")
}

fn setgroups_allowed(plan: &Plan) -> bool {
    if !plan.has_userns {
        return true;
    }
    cgroups::read_text(std::path::Path::new("/proc/self/setgroups"))
        .map(|s| s.trim() == "allow")
        .unwrap_or(true)
}

pub fn borrowed(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: used only for descriptors that live until exec.
    unsafe { BorrowedFd::borrow_raw(fd) }
}
