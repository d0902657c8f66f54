//! What the init and exec'd processes share once they are inside the container: rlimits,
//! scheduling, the environment, finding the program, and the final execve.

use crate::error::{Context, Error, Result};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
use oci_spec::runtime::{PosixRlimitType, Process};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub fn set_rlimits(p: &Process) -> Result<()> {
    for rl in p.rlimits().iter().flatten() {
        let res = rlimit_resource(rl.typ());
        let lim = libc::rlimit {
            rlim_cur: rl.soft(),
            rlim_max: rl.hard(),
        };
        // SAFETY: prlimit with a valid resource number and a pointer to a live struct.
        let r = unsafe { libc::prlimit(0, res, &lim, std::ptr::null_mut()) };
        if r != 0 {
            let errno = nix::errno::Errno::last();
            let hint = if errno == nix::errno::Errno::EPERM {
                " (raising a hard limit needs CAP_SYS_RESOURCE, which this host does not grant)"
            } else {
                ""
            };
            let name = serde_json::to_string(&rl.typ()).unwrap_or_default();
            return Err(Error::Other(format!(
                "process.rlimits: {} soft={} hard={}: {errno}{hint}",
                name.trim_matches('"'),
                rl.soft(),
                rl.hard()
            )));
        }
    }
    Ok(())
}

fn rlimit_resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    use PosixRlimitType::*;
    match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

pub fn set_oom_score_adj(pid: i32, p: &Process) -> Result<()> {
    if let Some(adj) = p.oom_score_adj() {
        std::fs::write(format!("/proc/{pid}/oom_score_adj"), adj.to_string()).map_err(|e| {
            Error::Other(format!(
                "process.oomScoreAdj {adj}: {e}{}",
                if e.raw_os_error() == Some(libc::EACCES) {
                    " (lowering it needs CAP_SYS_RESOURCE)"
                } else {
                    ""
                }
            ))
        })?;
    }
    Ok(())
}

/// ioPriority, scheduler and personality: attributes of the calling process.
pub fn set_sched(p: &Process, linux: Option<&oci_spec::runtime::Linux>) -> Result<()> {
    if let Some(io) = p.io_priority() {
        use oci_spec::runtime::IOPriorityClass::*;
        let class: i64 = match io.class() {
            IoprioClassRt => 1,
            IoprioClassBe => 2,
            IoprioClassIdle => 3,
        };
        let prio = (class << 13) | (io.priority() & 0x1fff);
        // SAFETY: ioprio_set(IOPRIO_WHO_PROCESS, self, prio) takes plain integers.
        let r = unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, prio) };
        if r != 0 {
            return Err(Error::Other(format!(
                "process.ioPriority: {}",
                nix::errno::Errno::last()
            )));
        }
    }
    if let Some(s) = p.scheduler() {
        set_scheduler(s)?;
    }
    if let Some(per) = linux.and_then(|l| l.personality().as_ref()) {
        use oci_spec::runtime::LinuxPersonalityDomain::*;
        let persona = match per.domain() {
            PerLinux => nix::sys::personality::Persona::empty(),
            PerLinux32 => nix::sys::personality::Persona::from_bits_retain(0x0008),
        };
        nix::sys::personality::set(persona).ctx(|| "linux.personality")?;
    }
    Ok(())
}

#[repr(C)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

fn set_scheduler(s: &oci_spec::runtime::Scheduler) -> Result<()> {
    use oci_spec::runtime::LinuxSchedulerFlag as F;
    use oci_spec::runtime::LinuxSchedulerPolicy::*;
    let policy = match s.policy() {
        SchedOther => 0,
        SchedFifo => 1,
        SchedRr => 2,
        SchedBatch => 3,
        SchedIso => 4,
        SchedIdle => 5,
        SchedDeadline => 6,
    };
    let mut flags = 0u64;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            F::SchedResetOnFork => 0x01,
            F::SchedFlagReclaim => 0x02,
            F::SchedFlagDLOverrun => 0x04,
            F::SchedFlagKeepPolicy => 0x08,
            F::SchedFlagKeepParams => 0x10,
            F::SchedFlagUtilClampMin => 0x20,
            F::SchedFlagUtilClampMax => 0x40,
        };
    }
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy,
        flags,
        nice: s.nice().unwrap_or(0),
        priority: s.priority().unwrap_or(0) as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
    };
    // SAFETY: sched_setattr(self, &attr, 0) with a fully initialised struct of the size we pass.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if r != 0 {
        return Err(Error::Other(format!(
            "process.scheduler: {}",
            nix::errno::Errno::last()
        )));
    }
    Ok(())
}

/// The process environment, with HOME filled in from /etc/passwd as runc does.
pub fn environment(p: &Process) -> Vec<String> {
    let mut env: Vec<String> = p.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let home = home_of(p.user().uid()).unwrap_or_else(|| "/".to_string());
        env.push(format!("HOME={home}"));
    }
    env
}

fn home_of(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 6 && f[2].parse::<u32>().ok()? == uid).then(|| f[5].to_string())
    })
}

/// Finds the program the way execvp would, with the container's PATH, inside the
/// container's root. Done before the container reports "created", so a missing program
/// fails `create`, not `start`.
pub fn find_program(arg0: &str, env: &[String]) -> Result<PathBuf> {
    if arg0.contains('/') {
        let p = PathBuf::from(arg0);
        return match std::fs::metadata(&p) {
            Ok(m) if m.is_file() => Ok(p),
            Ok(_) => Err(Error::Other(format!("exec: {arg0:?}: is a directory"))),
            Err(e) => Err(Error::Other(format!("exec: {arg0:?}: {e}"))),
        };
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let cand = Path::new(dir).join(arg0);
        if let Ok(m) = std::fs::metadata(&cand) {
            use std::os::unix::fs::PermissionsExt;
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                return Ok(cand);
            }
        }
    }
    Err(Error::Other(format!(
        "exec: {arg0:?}: executable file not found in $PATH"
    )))
}

/// Restores what a runtime process changed about signals (Rust ignores SIGPIPE; the
/// runtime may block some) so the container starts with the defaults.
pub fn reset_signals() {
    // SAFETY: setting a signal's disposition to SIG_DFL installs no handler code.
    unsafe {
        let _ = nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl);
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

pub fn exec(program: &Path, args: &[String], env: &[String]) -> Error {
    let to_c = |s: &str| CString::new(s.as_bytes()).unwrap_or_default();
    let Ok(prog) = CString::new(program.as_os_str().as_bytes()) else {
        return Error::Other("program path contains NUL".into());
    };
    let argv: Vec<CString> = args.iter().map(|a| to_c(a)).collect();
    let envp: Vec<CString> = env.iter().map(|e| to_c(e)).collect();
    match nix::unistd::execve(&prog, &argv, &envp) {
        Err(e) => Error::Other(format!("exec {}: {e}", program.display())),
        Ok(never) => match never {},
    }
}

/// Marks every descriptor from `first` up close-on-exec, so nothing of the runtime leaks
/// into the container (CVE-2024-21626); `preserve` descriptors after stdio stay open.
pub fn seal_fds(preserve: i32) -> Result<()> {
    for fd in 3..3 + preserve {
        let _ = nix::fcntl::fcntl(
            // SAFETY: only flags of a descriptor the caller asked us to pass on are changed.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        );
    }
    let first = (3 + preserve) as libc::c_uint;
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on our own fds.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r != 0 {
        return Err(Error::Other(format!(
            "close_range: {}",
            nix::errno::Errno::last()
        )));
    }
    Ok(())
}
