//! Seccomp support: turns the OCI runtime spec's `linux.seccomp` section into
//! a libseccomp filter, loads it into the kernel, and hands the user
//! notification fd (`SCMP_ACT_NOTIFY`) to the seccomp agent listening on
//! `linux.seccomp.listenerPath`.
//!
//! The translation follows runc (`libcontainer/seccomp`), since containers are
//! written and tested against runc's behaviour:
//!
//! * syscall names unknown to libseccomp (or to this architecture) are skipped
//!   silently, so one profile serves several kernels and architectures;
//! * a rule whose action equals the default action is skipped, because
//!   libseccomp refuses such rules;
//! * `SCMP_ACT_KILL` means kill-thread, `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE`
//!   return `EPERM` when no `errnoRet` is given;
//! * argument conditions of one rule are ANDed, unless some argument index is
//!   used more than once: then every condition becomes a rule of its own, so
//!   they are ORed (libseccomp cannot AND two conditions on one argument);
//! * the filter's no-new-privs attribute is turned off: the runtime sets
//!   `PR_SET_NO_NEW_PRIVS` itself when `process.noNewPrivileges` asks for it.
//!   Loading a filter without no-new-privs needs `CAP_SYS_ADMIN`, which the
//!   container init still holds when it loads the filter.
//!
//! The typed `oci_spec` structures can only hold known actions, architectures,
//! operators and flags: an unknown string fails when `config.json` is parsed.
//! [`validate_json`] checks the raw JSON first so that such a mistake is
//! reported with the field it is in (`linux.seccomp.syscalls[3].action:
//! unknown action SCMP_ACT_FOO`) rather than as a bare serde error.

use std::fs::File;
use std::io::{IoSlice, Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};

/// Linux system calls take at most six arguments.
const MAX_SYSCALL_ARGS: usize = 6;

/// Above this many rules, ask libseccomp for a binary-tree filter (as runc
/// does): a linear filter gets slow for big profiles such as Docker's default,
/// while libseccomp <= 2.5.4 misbehaves with the tree and an empty rule set.
const OPTIMIZE_THRESHOLD: usize = 32;

/// Lowest libseccomp API level that supports user notification.
const NOTIFY_MIN_API: u32 = 6;

/// Syscalls that must not be sent to the seccomp agent. Once the filter is
/// loaded, the container init still has to pass the notify fd to its parent,
/// which forwards it to the agent: if that step were itself notified it would
/// wait for an agent that can never get the fd. runc refuses `write` (its
/// init writes the fd to a pipe); this runtime's init sends it with
/// sendmsg(2), so `sendmsg` is refused too.
const NOTIFY_FORBIDDEN: &[&str] = &["write", "sendmsg"];

/// Field prefix used in error messages.
const SECCOMP_FIELD: &str = "linux.seccomp";

/// Why a seccomp profile could not be compiled, loaded or handed to an agent.
/// Every variant that comes from the profile names the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// A string that is not one of the values the runtime spec defines, e.g.
    /// `linux.seccomp.syscalls[3].action: unknown action SCMP_ACT_FOO`.
    #[error("{field}: unknown {kind} {value}")]
    Unknown {
        /// Path of the field, e.g. `linux.seccomp.syscalls[3].action`.
        field: String,
        /// What the field holds: `action`, `architecture`, `operator`, `flag`.
        kind: &'static str,
        /// The value found.
        value: String,
    },
    /// A field whose value is known but not usable here (out of range,
    /// wrong type, or a combination the runtime cannot honour).
    #[error("{field}: {reason}")]
    Invalid {
        /// Path of the field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// libseccomp refused a part of the profile.
    #[error("{field}: {what}: {source}")]
    Libseccomp {
        /// Path of the field being applied.
        field: String,
        /// What was being done.
        what: String,
        /// libseccomp's error.
        #[source]
        source: libseccomp::error::SeccompError,
    },
    /// libseccomp failed to load the filter into the kernel.
    #[error("loading the seccomp filter into the kernel: {0}")]
    Load(#[source] libseccomp::error::SeccompError),
    /// The kernel refused the filter when it was loaded with seccomp(2)
    /// directly (only done for flags this libseccomp cannot set).
    #[error(
        "loading the seccomp filter into the kernel with seccomp(2) flags {flags:#x}: {source}"
    )]
    LoadRaw {
        /// The `SECCOMP_FILTER_FLAG_*` bits passed.
        flags: libc::c_ulong,
        /// The kernel's error.
        #[source]
        source: Errno,
    },
    /// libseccomp could not give out the user notification fd after loading.
    #[error("getting the seccomp notify fd: {0}")]
    NotifyFd(#[source] libseccomp::error::SeccompError),
    /// Exporting the compiled BPF program failed.
    #[error("exporting the seccomp filter as BPF: {0}")]
    Export(#[source] std::io::Error),
    /// Sending the notify fd to the seccomp agent failed.
    #[error("sending the seccomp notify fd to {}: {step}: {source}", path.display())]
    Listener {
        /// `linux.seccomp.listenerPath`.
        path: PathBuf,
        /// The step that failed (`socket`, `connect`, `sendmsg`, ...).
        step: &'static str,
        /// The system error.
        #[source]
        source: Errno,
    },
}

/// A filter built from a spec, ready to be loaded by [`CompiledFilter::load`].
pub struct CompiledFilter {
    ctx: ScmpFilterContext,
    /// A rule with `SCMP_ACT_NOTIFY` made it into the filter, so loading it
    /// creates a listener fd.
    notify: bool,
    /// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` was asked for, the filter has a
    /// listener, and this libseccomp (< 2.6) cannot set that flag: `load` then
    /// calls seccomp(2) itself with the flags below.
    raw_flags: Option<libc::c_ulong>,
}

impl std::fmt::Debug for CompiledFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledFilter")
            .field("notify", &self.notify)
            .field("raw_flags", &self.raw_flags)
            .finish_non_exhaustive()
    }
}

/// Build the filter from the OCI spec section. Called before pivot_root/exec,
/// in the container init process.
///
/// Nothing is loaded yet: see [`CompiledFilter::load`].
pub fn compile(seccomp: &LinuxSeccomp) -> Result<CompiledFilter, SeccompError> {
    let default_action = scmp_action(
        seccomp.default_action(),
        seccomp.default_errno_ret(),
        &format!("{SECCOMP_FIELD}.defaultErrnoRet"),
    )?;
    if default_action == ScmpAction::Notify {
        // Every syscall, write(2) included, would wait for an agent that the
        // runtime has not yet been able to hand the fd to.
        return Err(invalid(
            format!("{SECCOMP_FIELD}.defaultAction"),
            "SCMP_ACT_NOTIFY cannot be the default action",
        ));
    }
    let syscalls: &[LinuxSyscall] = seccomp.syscalls().as_deref().unwrap_or_default();

    let mut ctx = ScmpFilterContext::new(default_action).map_err(|e| {
        libseccomp_err(
            format!("{SECCOMP_FIELD}.defaultAction"),
            "creating the filter",
            e,
        )
    })?;
    ctx.set_ctl_nnp(false).map_err(|e| {
        libseccomp_err(
            SECCOMP_FIELD.to_string(),
            "turning off the filter's no-new-privs attribute",
            e,
        )
    })?;

    for (i, arch) in seccomp.architectures().iter().flatten().enumerate() {
        ctx.add_arch(scmp_arch(*arch)).map_err(|e| {
            libseccomp_err(
                format!("{SECCOMP_FIELD}.architectures[{i}]"),
                format!("adding architecture {arch}"),
                e,
            )
        })?;
    }

    let mut wait_killable = false;
    for (i, flag) in seccomp.flags().iter().flatten().enumerate() {
        let field = format!("{SECCOMP_FIELD}.flags[{i}]");
        let what = format!("setting {flag}");
        match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => ctx
                .set_ctl_tsync(true)
                .map(drop)
                .map_err(|e| libseccomp_err(field, what, e))?,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => ctx
                .set_ctl_log(true)
                .map(drop)
                .map_err(|e| libseccomp_err(field, what, e))?,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                ctx.set_ctl_ssb(true)
                    .map(drop)
                    .map_err(|e| libseccomp_err(field, what, e))?
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                // libseccomp only knows this attribute from 2.6 on; older
                // ones get the flag from our own seccomp(2) call in `load`.
                wait_killable = ctx.set_ctl_waitkill(true).is_err();
            }
        }
    }

    if syscalls.len() > OPTIMIZE_THRESHOLD {
        // Not fatal: an older libseccomp simply builds a linear filter.
        let _ = ctx.set_ctl_optimize(2);
    }

    let mut notify = false;
    for (i, syscall) in syscalls.iter().enumerate() {
        notify |= add_syscall_rules(&mut ctx, i, syscall, default_action)?;
    }

    // The kernel only accepts WAIT_KILLABLE_RECV together with a listener; it
    // has no meaning without one, so it is dropped then rather than failing.
    let raw_flags = (wait_killable && notify).then(|| {
        let mut flags =
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
        for flag in seccomp.flags().iter().flatten() {
            flags |= match flag {
                // TSYNC reports a failing thread id in the return value, which
                // NEW_LISTENER needs for the fd: TSYNC_ESRCH makes TSYNC
                // report ESRCH instead, as libseccomp does.
                LinuxSeccompFilterFlag::SeccompFilterFlagTsync => {
                    libc::SECCOMP_FILTER_FLAG_TSYNC | libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH
                }
                LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
                LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                    libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
                }
                LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 0,
            };
        }
        flags
    });

    Ok(CompiledFilter {
        ctx,
        notify,
        raw_flags,
    })
}

impl CompiledFilter {
    /// Whether the filter has a rule with `SCMP_ACT_NOTIFY`, so that
    /// [`load`](Self::load) returns a notify fd to hand to the agent.
    ///
    /// Rules whose syscalls are all unknown to this kernel/libseccomp are not
    /// in the filter and do not count.
    pub fn needs_notify(&self) -> bool {
        self.notify
    }

    /// Load it into the kernel for the calling thread (all threads with
    /// `SECCOMP_FILTER_FLAG_TSYNC`). Returns the notify fd if `SCMP_ACT_NOTIFY`
    /// is used (`SECCOMP_FILTER_FLAG_NEW_LISTENER`), else `None`.
    ///
    /// The fd is close-on-exec. Call this once per process: libseccomp keeps
    /// one listener per process and would hand back the same fd number again.
    pub fn load(self) -> Result<Option<OwnedFd>, SeccompError> {
        if let Some(flags) = self.raw_flags {
            return self.load_raw(flags).map(Some);
        }
        self.ctx.load().map_err(SeccompError::Load)?;
        if !self.notify {
            return Ok(None);
        }
        let fd = self.ctx.get_notify_fd().map_err(SeccompError::NotifyFd)?;
        // SAFETY: `fd` is the listener the kernel created for this filter in
        // seccomp_load (close-on-exec). libseccomp only remembers its number
        // and closes it solely in seccomp_reset(NULL, ..), which this runtime
        // never calls, so we are its only owner from here on.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Load the filter with seccomp(2) directly, for flags libseccomp cannot
    /// express. Only used when a listener is wanted, so the return value is
    /// always the listener fd.
    fn load_raw(self, flags: libc::c_ulong) -> Result<OwnedFd, SeccompError> {
        let mut program = export_bpf(&self.ctx)?;
        let len = u16::try_from(program.len()).map_err(|_| {
            invalid(
                SECCOMP_FIELD.to_string(),
                format!(
                    "the filter has {} BPF instructions, over 65535",
                    program.len()
                ),
            )
        })?;
        let fprog = libc::sock_fprog {
            len,
            filter: program.as_mut_ptr(),
        };
        // SAFETY: `fprog` points at `program`, `len` instructions that stay
        // alive across the call; the kernel copies the program and does not
        // keep the pointer. The no-new-privs attribute is off, as in the
        // libseccomp path, so nothing else needs setting up first.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                flags,
                &fprog as *const libc::sock_fprog,
            )
        };
        if ret < 0 {
            return Err(SeccompError::LoadRaw {
                flags,
                source: Errno::last(),
            });
        }
        let fd = RawFd::try_from(ret).map_err(|_| SeccompError::LoadRaw {
            flags,
            source: Errno::EBADF,
        })?;
        // SAFETY: with SECCOMP_FILTER_FLAG_NEW_LISTENER, a successful
        // seccomp(2) returns a new close-on-exec fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// A filter ready to load: the BPF program libseccomp made for a spec section, the
/// seccomp(2) flags the section asks for, and whether loading it makes a listener.
///
/// Made by the runtime process before it clones the init (which inherits it), from a
/// cache when the same section was compiled before: libseccomp takes ~10 ms here for
/// Docker's default profile (hundreds of rules on three architectures), on every
/// container start and exec, for the same program every time. crun caches the same way.
pub struct Prepared {
    program: Vec<libc::sock_filter>,
    flags: libc::c_ulong,
    notify: bool,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("instructions", &self.program.len())
            .field("flags", &self.flags)
            .field("notify", &self.notify)
            .finish()
    }
}

/// The cache's directory in the runtime's state root. Not a valid container id's shape in
/// practice (engines use hex ids), and `list` skips what has no state.json.
pub const CACHE_DIR: &str = ".seccomp-cache";

/// The cache file's first line; a new layout gets a new number.
const CACHE_MAGIC: &[u8] = b"berth-seccomp-cache 1\n";

/// [`compile`]s `seccomp`, or reads what an earlier compile of the same section with the
/// same libseccomp left in `cache` (a directory only root writes: the runtime's state
/// root). The cache file holds the whole key, compared byte for byte, so only an equal
/// section ever gets a cached program; a file that is unreadable or malformed is
/// recompiled and replaced. Cache failures never fail the container.
pub fn prepare(seccomp: &LinuxSeccomp, cache: Option<&Path>) -> Result<Prepared, SeccompError> {
    let key = cache_key(seccomp);
    let path = cache.map(|dir| dir.join(format!("{}.bpf", sha256_hex(&key))));
    if let Some(p) = &path {
        if let Some((program, notify)) = read_cache(p, &key) {
            return Ok(Prepared {
                program,
                flags: load_flags(seccomp, notify),
                notify,
            });
        }
    }
    let compiled = compile(seccomp)?;
    let notify = compiled.notify;
    let program = export_bpf(&compiled.ctx)?;
    if let Some(p) = &path {
        write_cache(p, &key, &program, notify);
    }
    Ok(Prepared {
        program,
        flags: load_flags(seccomp, notify),
        notify,
    })
}

impl Prepared {
    /// See [`CompiledFilter::needs_notify`].
    pub fn needs_notify(&self) -> bool {
        self.notify
    }

    /// Loads the program for the calling thread with seccomp(2), as libseccomp's
    /// `seccomp_load` does with the same attributes (no-new-privs off). Returns the
    /// listener fd when the filter has `SCMP_ACT_NOTIFY` rules.
    pub fn load(&self) -> Result<Option<OwnedFd>, SeccompError> {
        let len = u16::try_from(self.program.len()).map_err(|_| {
            invalid(
                SECCOMP_FIELD.to_string(),
                format!(
                    "the filter has {} BPF instructions, over 65535",
                    self.program.len()
                ),
            )
        })?;
        let fprog = libc::sock_fprog {
            len,
            filter: self.program.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: `fprog` points at `len` instructions of `self.program`, alive across the
        // call; the kernel copies the program and never writes through the pointer.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &fprog as *const libc::sock_fprog,
            )
        };
        if ret < 0 {
            return Err(SeccompError::LoadRaw {
                flags: self.flags,
                source: Errno::last(),
            });
        }
        if !self.notify {
            return Ok(None);
        }
        let fd = RawFd::try_from(ret).map_err(|_| SeccompError::LoadRaw {
            flags: self.flags,
            source: Errno::EBADF,
        })?;
        // SAFETY: with SECCOMP_FILTER_FLAG_NEW_LISTENER a successful seccomp(2) returns
        // a new close-on-exec fd that nothing else owns.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
    }
}

/// The seccomp(2) flags libseccomp would pass for this section's attributes.
fn load_flags(seccomp: &LinuxSeccomp, notify: bool) -> libc::c_ulong {
    let mut flags = 0;
    if notify {
        flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
    }
    for flag in seccomp.flags().iter().flatten() {
        flags |= match flag {
            // With a listener, TSYNC must report ESRCH rather than a thread id (the
            // return value is the fd), as libseccomp does.
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync if notify => {
                libc::SECCOMP_FILTER_FLAG_TSYNC | libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            // Meaningless (and refused by the kernel) without a listener.
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv if notify => {
                libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 0,
        };
    }
    flags
}

/// What the program depends on: the section itself, libseccomp's version (its syscall
/// tables and code generator) and the architecture it runs on.
fn cache_key(seccomp: &LinuxSeccomp) -> Vec<u8> {
    let v = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    let mut key = format!("libseccomp {v} {}\n", std::env::consts::ARCH).into_bytes();
    key.extend(serde_json::to_vec(seccomp).unwrap_or_default());
    key
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The program and the notify bit, if `path` holds a well-formed entry for exactly `key`.
fn read_cache(path: &Path, key: &[u8]) -> Option<(Vec<libc::sock_filter>, bool)> {
    let data = std::fs::read(path).ok()?;
    let rest = data.strip_prefix(CACHE_MAGIC)?;
    let (klen, rest) = rest.split_first_chunk::<4>()?;
    let klen = u32::from_le_bytes(*klen) as usize;
    if rest.len() < klen || &rest[..klen] != key {
        return None;
    }
    let (&notify, rest) = rest[klen..].split_first()?;
    let (n, rest) = rest.split_first_chunk::<4>()?;
    let n = u32::from_le_bytes(*n) as usize;
    const INSN: usize = std::mem::size_of::<libc::sock_filter>();
    if n == 0 || n > u16::MAX as usize || rest.len() != n * INSN || notify > 1 {
        return None;
    }
    let program = rest
        .chunks_exact(INSN)
        .map(|b| libc::sock_filter {
            code: u16::from_ne_bytes([b[0], b[1]]),
            jt: b[2],
            jf: b[3],
            k: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        })
        .collect();
    Some((program, notify == 1))
}

/// Best effort: written whole under a temporary name, then renamed into place.
fn write_cache(path: &Path, key: &[u8], program: &[libc::sock_filter], notify: bool) {
    let mut data = CACHE_MAGIC.to_vec();
    data.extend((key.len() as u32).to_le_bytes());
    data.extend(key);
    data.push(u8::from(notify));
    data.extend((program.len() as u32).to_le_bytes());
    for i in program {
        data.extend(i.code.to_ne_bytes());
        data.push(i.jt);
        data.push(i.jf);
        data.extend(i.k.to_ne_bytes());
    }
    let Some(dir) = path.parent() else { return };
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        })
        .and_then(|()| std::fs::write(&tmp, &data))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// Send the notify fd and the container state JSON to `listener_path` (a unix
/// stream socket), as runc does for `linux.seccomp.listenerPath`: one
/// sendmsg(2) with the state JSON (runtime-spec "ContainerProcessState":
/// `{"ociVersion","fds":["seccompFd"],"pid","metadata","state":{...}}`) as
/// data and the fd in `SCM_RIGHTS`.
///
/// Should the kernel take only part of the JSON in the first sendmsg, the rest
/// follows in plain sends on the same connection; the fd rides with the first
/// byte.
pub fn send_listener(
    listener_path: &Path,
    notify_fd: BorrowedFd<'_>,
    process_state_json: &[u8],
) -> Result<(), SeccompError> {
    let fail = |step: &'static str, source: Errno| SeccompError::Listener {
        path: listener_path.to_path_buf(),
        step,
        source,
    };
    if process_state_json.is_empty() {
        // Linux drops ancillary data sent with no bytes on a stream socket.
        return Err(fail("sendmsg", Errno::EINVAL));
    }
    let short = crate::sockpath::short(listener_path).map_err(|e| {
        fail(
            "socket address",
            Errno::from_raw(e.raw_os_error().unwrap_or(libc::EINVAL)),
        )
    })?;
    let addr = socket::UnixAddr::new(&short.path).map_err(|e| fail("socket address", e))?;
    let sock = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| fail("socket", e))?;
    retry_eintr(|| socket::connect(sock.as_raw_fd(), &addr)).map_err(|e| fail("connect", e))?;

    let fds = [notify_fd.as_raw_fd()];
    let cmsgs = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(process_state_json)];
    // MSG_NOSIGNAL: an agent that hangs up must give an error, not SIGPIPE.
    let mut sent = retry_eintr(|| {
        socket::sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsgs, MsgFlags::MSG_NOSIGNAL, None)
    })
    .map_err(|e| fail("sendmsg", e))?;
    while sent < process_state_json.len() {
        sent += retry_eintr(|| {
            socket::send(
                sock.as_raw_fd(),
                &process_state_json[sent..],
                MsgFlags::MSG_NOSIGNAL,
            )
        })
        .map_err(|e| fail("send", e))?;
    }
    Ok(())
}

/// Check the raw JSON of `linux.seccomp` (the object itself, not the whole
/// config) for strings the runtime spec does not define, and report the first
/// one with its field path, e.g. `linux.seccomp.syscalls[3].action: unknown
/// action SCMP_ACT_FOO`.
///
/// Call it before deserializing `config.json` into `oci_spec` types, whose
/// own error for the same mistake does not say where it is. Only the
/// enumerated strings are checked here; [`compile`] checks the rest.
pub fn validate_json(seccomp: &serde_json::Value) -> Result<(), SeccompError> {
    let Some(obj) = seccomp.as_object() else {
        return Err(invalid(SECCOMP_FIELD.to_string(), "expected an object"));
    };
    match obj.get("defaultAction") {
        Some(v) => check_enum::<LinuxSeccompAction>(
            v,
            &format!("{SECCOMP_FIELD}.defaultAction"),
            "action",
        )?,
        None => {
            return Err(invalid(
                format!("{SECCOMP_FIELD}.defaultAction"),
                "missing (it is required)",
            ))
        }
    }
    for (i, v) in json_array(obj.get("architectures"), "architectures")?
        .iter()
        .enumerate()
    {
        check_enum::<Arch>(
            v,
            &format!("{SECCOMP_FIELD}.architectures[{i}]"),
            "architecture",
        )?;
    }
    for (i, v) in json_array(obj.get("flags"), "flags")?.iter().enumerate() {
        check_enum::<LinuxSeccompFilterFlag>(v, &format!("{SECCOMP_FIELD}.flags[{i}]"), "flag")?;
    }
    for (i, call) in json_array(obj.get("syscalls"), "syscalls")?
        .iter()
        .enumerate()
    {
        let field = format!("{SECCOMP_FIELD}.syscalls[{i}]");
        let Some(call) = call.as_object() else {
            return Err(invalid(field, "expected an object"));
        };
        match call.get("action") {
            Some(v) => check_enum::<LinuxSeccompAction>(v, &format!("{field}.action"), "action")?,
            None => {
                return Err(invalid(
                    format!("{field}.action"),
                    "missing (it is required)",
                ))
            }
        }
        let args_field = format!("{field}.args");
        for (j, arg) in json_array(call.get("args"), &args_field)?
            .iter()
            .enumerate()
        {
            let op_field = format!("{field}.args[{j}].op");
            match arg.get("op") {
                Some(v) => check_enum::<LinuxSeccompOperator>(v, &op_field, "operator")?,
                None => return Err(invalid(op_field, "missing (it is required)")),
            }
        }
    }
    Ok(())
}

/// Add the rules of `linux.seccomp.syscalls[index]`. Returns whether a
/// `SCMP_ACT_NOTIFY` rule went into the filter.
fn add_syscall_rules(
    ctx: &mut ScmpFilterContext,
    index: usize,
    syscall: &LinuxSyscall,
    default_action: ScmpAction,
) -> Result<bool, SeccompError> {
    let field = format!("{SECCOMP_FIELD}.syscalls[{index}]");
    let action = scmp_action(
        syscall.action(),
        syscall.errno_ret(),
        &format!("{field}.errnoRet"),
    )?;

    // Check the whole entry before anything is skipped, so a mistake in a
    // profile shows on every machine, not only where the rule applies.
    for (j, name) in syscall.names().iter().enumerate() {
        if name.is_empty() {
            return Err(invalid(format!("{field}.names[{j}]"), "empty syscall name"));
        }
        if action == ScmpAction::Notify && NOTIFY_FORBIDDEN.contains(&name.as_str()) {
            return Err(invalid(
                format!("{field}.names[{j}]"),
                format!("SCMP_ACT_NOTIFY cannot be used for the {name} syscall"),
            ));
        }
    }
    if action == ScmpAction::Notify && libseccomp::get_api() < NOTIFY_MIN_API {
        return Err(invalid(
            format!("{field}.action"),
            format!(
                "SCMP_ACT_NOTIFY needs libseccomp API level {NOTIFY_MIN_API} \
                 (libseccomp >= 2.5.0, Linux >= 5.7), this one has {}",
                libseccomp::get_api()
            ),
        ));
    }
    let args: &[LinuxSeccompArg] = syscall.args().as_deref().unwrap_or_default();
    let mut conditions = Vec::with_capacity(args.len());
    let mut uses_per_index = [0usize; MAX_SYSCALL_ARGS];
    for (j, arg) in args.iter().enumerate() {
        let arg_index = arg.index();
        if arg_index >= MAX_SYSCALL_ARGS {
            return Err(invalid(
                format!("{field}.args[{j}].index"),
                format!("argument index {arg_index} is out of range 0..=5"),
            ));
        }
        uses_per_index[arg_index] += 1;
        conditions.push(arg_condition(arg));
    }

    if action == default_action {
        // libseccomp rejects rules that repeat the default action; they
        // change nothing anyway.
        return Ok(false);
    }

    // runc's rule: conditions on distinct arguments are ANDed in one rule;
    // if any argument is compared more than once, every condition gets a rule
    // of its own, which ORs them all.
    let or_each = uses_per_index.iter().any(|&n| n > 1);

    let mut added = false;
    for name in syscall.names() {
        // An unknown name is a syscall this libseccomp or architecture lacks:
        // skip it, so a profile naming newer syscalls still loads.
        let Ok(nr) = ScmpSyscall::from_name(name) else {
            continue;
        };
        let what = || format!("adding a rule for syscall {name}");
        if conditions.is_empty() {
            ctx.add_rule(action, nr)
                .map_err(|e| libseccomp_err(field.clone(), what(), e))?;
        } else if or_each {
            for condition in &conditions {
                ctx.add_rule_conditional(action, nr, std::slice::from_ref(condition))
                    .map_err(|e| libseccomp_err(field.clone(), what(), e))?;
            }
        } else {
            ctx.add_rule_conditional(action, nr, &conditions)
                .map_err(|e| libseccomp_err(field.clone(), what(), e))?;
        }
        added = true;
    }
    Ok(added && action == ScmpAction::Notify)
}

/// Map a spec action (with its `errnoRet`) to libseccomp's.
fn scmp_action(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    errno_field: &str,
) -> Result<ScmpAction, SeccompError> {
    // SECCOMP_RET_DATA is 16 bits wide; libseccomp would silently truncate.
    let data = || -> Result<u16, SeccompError> {
        match errno_ret {
            None => Ok(libc::EPERM as u16),
            Some(v) => u16::try_from(v).map_err(|_| {
                invalid(
                    errno_field.to_string(),
                    format!("{v} does not fit in the 16-bit SECCOMP_RET_DATA"),
                )
            }),
        }
    };
    Ok(match action {
        // runc treats the legacy SCMP_ACT_KILL as kill-thread, as the kernel
        // does (SECCOMP_RET_KILL == SECCOMP_RET_KILL_THREAD).
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(i32::from(data()?)),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(data()?),
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
    })
}

/// Map a spec architecture to libseccomp's.
fn scmp_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

/// Map one spec argument condition to libseccomp's.
fn arg_condition(arg: &LinuxSeccompArg) -> ScmpArgCompare {
    // The index was checked to be below 6 by the caller.
    let index = arg.index() as u32;
    let value = arg.value();
    let op = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        // As in runc and libseccomp: `value` is the mask and `valueTwo` the
        // value the masked argument must equal: (arg & value) == valueTwo.
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            return ScmpArgCompare::new(
                index,
                ScmpCompareOp::MaskedEqual(value),
                arg.value_two().unwrap_or(0),
            );
        }
    };
    ScmpArgCompare::new(index, op, value)
}

/// The compiled BPF program, as libseccomp would load it. libseccomp < 2.6 has
/// no in-memory export, so it goes through a memfd.
fn export_bpf(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>, SeccompError> {
    let memfd =
        nix::sys::memfd::memfd_create(c"seccomp-bpf", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(|e| SeccompError::Export(e.into()))?;
    ctx.export_bpf(&memfd)
        .map_err(|e| SeccompError::Export(std::io::Error::other(e)))?;
    let mut file = File::from(memfd);
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(SeccompError::Export)?;

    // struct sock_filter { __u16 code; __u8 jt; __u8 jf; __u32 k; } in host
    // byte order, 8 bytes each.
    const INSN: usize = std::mem::size_of::<libc::sock_filter>();
    if bytes.is_empty() || bytes.len() % INSN != 0 {
        return Err(SeccompError::Export(std::io::Error::other(format!(
            "{} bytes is not a whole number of BPF instructions",
            bytes.len()
        ))));
    }
    Ok(bytes
        .chunks_exact(INSN)
        .map(|b| libc::sock_filter {
            code: u16::from_ne_bytes([b[0], b[1]]),
            jt: b[2],
            jf: b[3],
            k: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        })
        .collect())
}

/// Check that a JSON value is a string naming a variant of `T`, as serde
/// would read it into the typed config.
fn check_enum<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
    field: &str,
    kind: &'static str,
) -> Result<(), SeccompError> {
    let Some(s) = value.as_str() else {
        return Err(invalid(
            field.to_string(),
            format!("expected a string ({kind})"),
        ));
    };
    serde_json::from_value::<T>(value.clone())
        .map(drop)
        .map_err(|_| SeccompError::Unknown {
            field: field.to_string(),
            kind,
            value: s.to_string(),
        })
}

/// An optional JSON array (absent and `null` read as empty).
fn json_array<'a>(
    value: Option<&'a serde_json::Value>,
    field: &str,
) -> Result<&'a [serde_json::Value], SeccompError> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(&[]),
        Some(serde_json::Value::Array(items)) => Ok(items),
        Some(_) => {
            let field = if field.starts_with(SECCOMP_FIELD) {
                field.to_string()
            } else {
                format!("{SECCOMP_FIELD}.{field}")
            };
            Err(invalid(field, "expected an array"))
        }
    }
}

fn retry_eintr<T>(mut f: impl FnMut() -> nix::Result<T>) -> nix::Result<T> {
    loop {
        match f() {
            Err(Errno::EINTR) => continue,
            other => return other,
        }
    }
}

fn invalid(field: String, reason: impl Into<String>) -> SeccompError {
    SeccompError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn libseccomp_err(
    field: String,
    what: impl Into<String>,
    source: libseccomp::error::SeccompError,
) -> SeccompError {
    SeccompError::Libseccomp {
        field,
        what: what.into(),
        source,
    }
}

// These tests load real filters, so each one does it in a forked child: a
// seccomp filter can never be removed from a process. The child makes raw
// syscalls (glibc wrappers may pick different syscalls, e.g. mkdirat for
// mkdir) and reports what it saw through its exit code.
#[cfg(test)]
mod tests {
    use super::*;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::signal::Signal;
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult, Pid};
    use serde_json::json;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixListener;
    use std::time::{Duration, Instant};

    /// Exit codes the child harness uses for its own failures.
    const LOAD_FAILED: i32 = 200;
    const PANICKED: i32 = 201;

    fn spec(value: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(value).expect("test profile must parse")
    }

    fn compile_json(value: serde_json::Value) -> CompiledFilter {
        compile(&spec(value)).expect("test profile must compile")
    }

    /// errno of the last raw syscall if it failed, else 0.
    fn errno_of(ret: libc::c_long) -> i32 {
        if ret == -1 {
            Errno::last_raw()
        } else {
            0
        }
    }

    fn getppid_errno() -> i32 {
        // SAFETY: getppid takes no arguments and cannot fail in memory terms.
        errno_of(unsafe { libc::syscall(libc::SYS_getppid) })
    }

    fn getpriority_errno(which: libc::c_long, who: libc::c_long) -> i32 {
        // SAFETY: getpriority only reads its two integer arguments.
        errno_of(unsafe { libc::syscall(libc::SYS_getpriority, which, who) })
    }

    /// Fork; the child loads `filter`, runs `body` with the notify fd and
    /// exits with its return value. Returns the child's wait status.
    fn run_filtered(
        filter: CompiledFilter,
        body: impl FnOnce(Option<OwnedFd>) -> i32,
    ) -> WaitStatus {
        run_filtered_with(filter, body, |_| {})
    }

    /// As [`run_filtered`], running `parent` in the parent (with the child's
    /// pid) before waiting for the child.
    fn run_filtered_with(
        filter: CompiledFilter,
        body: impl FnOnce(Option<OwnedFd>) -> i32,
        parent: impl FnOnce(Pid),
    ) -> WaitStatus {
        // SAFETY: the child only loads the filter, runs the test body (raw
        // syscalls, no locks shared with other test threads) and _exits; it
        // never returns into the test harness.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    // No core files from the SIGSYS kills under test.
                    let no_core = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    // SAFETY: setrlimit reads the struct we pass.
                    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
                    match filter.load() {
                        Ok(fd) => body(fd),
                        Err(_) => LOAD_FAILED,
                    }
                }))
                .unwrap_or(PANICKED);
                // SAFETY: _exit ends the child without running the parent's
                // atexit handlers or destructors twice.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                parent(child);
                waitpid(child, None).expect("waitpid")
            }
        }
    }

    fn program_bytes(p: &Prepared) -> Vec<(u16, u8, u8, u32)> {
        p.program
            .iter()
            .map(|i| (i.code, i.jt, i.jf, i.k))
            .collect()
    }

    #[test]
    fn prepared_filters_come_from_the_cache_only_for_the_same_section() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let getppid = spec(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 33}]}));
        let fresh = prepare(&getppid, None).unwrap();
        let first = prepare(&getppid, Some(&cache)).unwrap();
        let files: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
        assert_eq!(files.len(), 1);
        let second = prepare(&getppid, Some(&cache)).unwrap();
        assert_eq!(program_bytes(&fresh), program_bytes(&second));
        assert_eq!(program_bytes(&first), program_bytes(&second));

        // Another section never gets that program, even under a colliding file name.
        let other = spec(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 34}]}));
        std::fs::copy(
            files[0].path(),
            cache.join(format!("{}.bpf", sha256_hex(&cache_key(&other)))),
        )
        .unwrap();
        let o = prepare(&other, Some(&cache)).unwrap();
        assert_ne!(program_bytes(&o), program_bytes(&fresh));

        // A damaged entry is recompiled and replaced.
        std::fs::write(files[0].path(), b"berth-seccomp-cache 1\ngarbage").unwrap();
        let again = prepare(&getppid, Some(&cache)).unwrap();
        assert_eq!(program_bytes(&again), program_bytes(&fresh));
        assert!(read_cache(&files[0].path(), &cache_key(&getppid)).is_some());

        // And what the cache gives still filters.
        // SAFETY: the child only loads the filter, makes one raw syscall and _exits.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                let code = match again.load() {
                    Ok(_) => getppid_errno(),
                    Err(_) => LOAD_FAILED,
                };
                // SAFETY: leave the forked test process without running destructors.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => assert_exit(waitpid(child, None).unwrap(), 33),
        }
    }

    fn assert_exit(status: WaitStatus, code: i32) {
        match status {
            WaitStatus::Exited(_, c) => assert_eq!(c, code, "child exit code"),
            other => panic!("child did not exit normally: {other:?}"),
        }
    }

    fn assert_sigsys(status: WaitStatus) {
        match status {
            WaitStatus::Signaled(_, Signal::SIGSYS, _) => {}
            other => panic!("child was not killed by SIGSYS: {other:?}"),
        }
    }

    fn allow_with(syscalls: serde_json::Value) -> CompiledFilter {
        compile_json(json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": syscalls }))
    }

    #[test]
    fn errno_rule_with_errno_ret() {
        let dir = std::env::temp_dir().join(format!("berth-seccomp-mkdir-{}", std::process::id()));
        let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        let filter = allow_with(json!([{
            "names": ["mkdir", "mkdirat"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": libc::ENOSYS,
        }]));
        assert!(!filter.needs_notify());
        let status = run_filtered(filter, |_| {
            // SAFETY: `path` is a valid NUL-terminated string.
            let ret =
                unsafe { libc::syscall(libc::SYS_mkdirat, libc::AT_FDCWD, path.as_ptr(), 0o700) };
            errno_of(ret)
        });
        let created = dir.exists();
        let _ = std::fs::remove_dir(&dir);
        assert_exit(status, libc::ENOSYS);
        assert!(!created, "mkdirat ran despite the filter");
    }

    #[test]
    fn errno_defaults_to_eperm() {
        let filter = allow_with(json!([{ "names": ["getppid"], "action": "SCMP_ACT_ERRNO" }]));
        assert_exit(run_filtered(filter, |_| getppid_errno()), libc::EPERM);
    }

    #[test]
    fn unknown_syscall_names_are_skipped() {
        let filter = allow_with(json!([{
            "names": ["no_such_syscall_berth", "getppid"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": libc::EXDEV,
        }]));
        assert_exit(run_filtered(filter, |_| getppid_errno()), libc::EXDEV);

        let only_unknown = allow_with(json!([{
            "names": ["no_such_syscall_berth"],
            "action": "SCMP_ACT_NOTIFY",
        }]));
        assert!(!only_unknown.needs_notify());
    }

    #[test]
    fn rules_repeating_the_default_action_are_skipped() {
        // Without skipping, libseccomp refuses both rules.
        let filter = compile_json(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                { "names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1 },
                { "names": ["getpid"], "action": "SCMP_ACT_ERRNO" },
            ],
        }));
        drop(filter);
        let filter = allow_with(json!([
            { "names": ["getppid"], "action": "SCMP_ACT_ALLOW" },
            { "names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 7 },
        ]));
        let status = run_filtered(filter, |_| {
            // SAFETY: getpid takes no arguments.
            let pid = errno_of(unsafe { libc::syscall(libc::SYS_getpid) });
            if getppid_errno() != 0 {
                return 100;
            }
            pid
        });
        assert_exit(status, 7);
    }

    #[test]
    fn default_errno_with_allow_list() {
        // Everything the child needs to finish is allowed; getppid is not.
        let filter = compile_json(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": libc::EOPNOTSUPP,
            "syscalls": [{
                "names": ["exit_group", "exit", "rt_sigreturn", "rt_sigprocmask",
                          "brk", "mmap", "munmap", "madvise", "futex", "sigaltstack",
                          "getpid"],
                "action": "SCMP_ACT_ALLOW",
            }],
        }));
        let status = run_filtered(filter, |_| {
            // SAFETY: getpid takes no arguments.
            if unsafe { libc::syscall(libc::SYS_getpid) } < 0 {
                return 100;
            }
            getppid_errno()
        });
        assert_exit(status, libc::EOPNOTSUPP);
    }

    #[test]
    fn argument_condition_personality() {
        // personality(0xffffffff) only queries; anything else is refused.
        let filter = allow_with(json!([{
            "names": ["personality"],
            "action": "SCMP_ACT_ERRNO",
            "args": [{ "index": 0, "value": 0xffff_ffffu64, "op": "SCMP_CMP_NE" }],
        }]));
        let status = run_filtered(filter, |_| {
            // SAFETY: personality takes one integer.
            let query = unsafe { libc::syscall(libc::SYS_personality, 0xffff_ffffu64) };
            if query == -1 {
                return 100;
            }
            // SAFETY: as above; PER_LINUX is the usual persona anyway.
            errno_of(unsafe { libc::syscall(libc::SYS_personality, 0u64) })
        });
        assert_exit(status, libc::EPERM);
    }

    /// `(which, who, expect_blocked)` for getpriority(which, who).
    type Probe = (libc::c_long, libc::c_long, bool);

    /// Child that probes getpriority(PRIO_PROCESS or PRIO_PGRP, who) and
    /// returns 0 when exactly the `blocked` probes were refused with EACCES,
    /// else 1 + the index of the first wrong probe.
    fn probe_getpriority(filter: CompiledFilter, probes: &'static [Probe]) -> WaitStatus {
        run_filtered(filter, move |_| {
            for (i, &(which, who, blocked)) in probes.iter().enumerate() {
                if (getpriority_errno(which, who) == libc::EACCES) != blocked {
                    return 1 + i as i32;
                }
            }
            0
        })
    }

    const PRIO_PROCESS: libc::c_long = libc::PRIO_PROCESS as libc::c_long;
    const PRIO_PGRP: libc::c_long = libc::PRIO_PGRP as libc::c_long;

    #[test]
    fn args_on_different_indexes_are_anded() {
        let filter = allow_with(json!([{
            "names": ["getpriority"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": libc::EACCES,
            "args": [
                { "index": 0, "value": PRIO_PGRP, "op": "SCMP_CMP_EQ" },
                { "index": 1, "value": 0, "op": "SCMP_CMP_EQ" },
            ],
        }]));
        let status = probe_getpriority(
            filter,
            &[
                (PRIO_PGRP, 0, true),
                (PRIO_PROCESS, 0, false),
                (PRIO_PGRP, 1, false),
            ],
        );
        assert_exit(status, 0);
    }

    #[test]
    fn args_on_the_same_index_are_ored() {
        // runc: one index used twice turns every condition into its own rule,
        // including the one on index 0.
        let filter = allow_with(json!([{
            "names": ["getpriority"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": libc::EACCES,
            "args": [
                { "index": 1, "value": 11111, "op": "SCMP_CMP_EQ" },
                { "index": 1, "value": 22222, "op": "SCMP_CMP_EQ" },
                { "index": 0, "value": PRIO_PGRP, "op": "SCMP_CMP_EQ" },
            ],
        }]));
        let status = probe_getpriority(
            filter,
            &[
                (PRIO_PROCESS, 11111, true),
                (PRIO_PROCESS, 22222, true),
                (PRIO_PGRP, 0, true),
                (PRIO_PROCESS, 0, false),
                (PRIO_PROCESS, 33333, false),
            ],
        );
        assert_exit(status, 0);
    }

    #[test]
    fn every_operator() {
        let cases: [(&str, u64, Option<u64>, &'static [Probe]); 7] = [
            (
                "SCMP_CMP_NE",
                0,
                None,
                &[(PRIO_PROCESS, 0, false), (PRIO_PROCESS, 5, true)],
            ),
            (
                "SCMP_CMP_LT",
                5000,
                None,
                &[(PRIO_PROCESS, 4999, true), (PRIO_PROCESS, 5000, false)],
            ),
            (
                "SCMP_CMP_LE",
                5000,
                None,
                &[(PRIO_PROCESS, 5000, true), (PRIO_PROCESS, 5001, false)],
            ),
            (
                "SCMP_CMP_EQ",
                5000,
                None,
                &[(PRIO_PROCESS, 5000, true), (PRIO_PROCESS, 0, false)],
            ),
            (
                "SCMP_CMP_GE",
                5000,
                None,
                &[(PRIO_PROCESS, 5000, true), (PRIO_PROCESS, 4999, false)],
            ),
            (
                "SCMP_CMP_GT",
                5000,
                None,
                &[(PRIO_PROCESS, 5001, true), (PRIO_PROCESS, 5000, false)],
            ),
            // value is the mask, valueTwo what the masked argument must equal.
            (
                "SCMP_CMP_MASKED_EQ",
                0xff00,
                Some(0x1200),
                &[
                    (PRIO_PROCESS, 0x1234, true),
                    (PRIO_PROCESS, 0x1334, false),
                    (PRIO_PROCESS, 0, false),
                ],
            ),
        ];
        for (op, value, value_two, probes) in cases {
            let mut arg = json!({ "index": 1, "value": value, "op": op });
            if let Some(v2) = value_two {
                arg["valueTwo"] = json!(v2);
            }
            let filter = allow_with(json!([{
                "names": ["getpriority"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": libc::EACCES,
                "args": [arg],
            }]));
            let status = probe_getpriority(filter, probes);
            match status {
                WaitStatus::Exited(_, 0) => {}
                other => panic!("{op}: {other:?}"),
            }
        }
    }

    #[test]
    fn kill_actions_terminate_with_sigsys() {
        for action in [
            "SCMP_ACT_KILL_PROCESS",
            "SCMP_ACT_KILL_THREAD",
            "SCMP_ACT_KILL",
            "SCMP_ACT_TRAP",
        ] {
            let filter = allow_with(json!([{ "names": ["getppid"], "action": action }]));
            let status = run_filtered(filter, |_| {
                getppid_errno();
                0
            });
            match status {
                WaitStatus::Signaled(_, Signal::SIGSYS, _) => {}
                other => panic!("{action}: child was not killed by SIGSYS: {other:?}"),
            }
        }
        let filter =
            allow_with(json!([{ "names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS" }]));
        assert_sigsys(run_filtered(filter, |_| getppid_errno()));
    }

    #[test]
    fn trace_without_tracer_fails_with_enosys() {
        // With no ptracer attached the kernel skips the syscall with ENOSYS.
        let filter = allow_with(json!([{
            "names": ["getppid"],
            "action": "SCMP_ACT_TRACE",
            "errnoRet": 5,
        }]));
        assert_exit(run_filtered(filter, |_| getppid_errno()), libc::ENOSYS);
    }

    #[test]
    fn log_allows_the_syscall() {
        let filter = compile_json(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                      "SECCOMP_FILTER_FLAG_TSYNC"],
            "syscalls": [
                { "names": ["getppid"], "action": "SCMP_ACT_LOG" },
                { "names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 9 },
            ],
        }));
        let status = run_filtered(filter, |_| {
            if getppid_errno() != 0 {
                return 100;
            }
            // SAFETY: getpid takes no arguments.
            errno_of(unsafe { libc::syscall(libc::SYS_getpid) })
        });
        assert_exit(status, 9);
    }

    #[test]
    fn multiple_architectures_and_large_profile() {
        // A Docker-like shape: three x86 ABIs, syscalls that exist on only
        // some of them, a masked clone rule, and more than 32 entries so the
        // binary-tree optimisation is on.
        let mut syscalls = vec![
            json!({ "names": ["socketcall", "arch_prctl", "modify_ldt"], "action": "SCMP_ACT_ERRNO" }),
            json!({
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "args": [{ "index": 0, "value": 0x7E02_0000u64, "valueTwo": 0x7E02_0000u64,
                           "op": "SCMP_CMP_MASKED_EQ" }],
            }),
            json!({ "names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EROFS }),
        ];
        for n in [
            "acct",
            "add_key",
            "bpf",
            "clock_adjtime",
            "clock_settime",
            "create_module",
            "delete_module",
            "finit_module",
            "get_kernel_syms",
            "get_mempolicy",
            "init_module",
            "ioperm",
            "iopl",
            "kcmp",
            "kexec_file_load",
            "kexec_load",
            "keyctl",
            "lookup_dcookie",
            "mbind",
            "mount",
            "move_pages",
            "nfsservctl",
            "open_by_handle_at",
            "perf_event_open",
            "pivot_root",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
            "query_module",
            "quotactl",
            "reboot",
            "request_key",
            "set_mempolicy",
            "setns",
            "settimeofday",
            "swapon",
            "swapoff",
            "sysfs",
            "umount2",
            "unshare",
            "uselib",
            "userfaultfd",
            "vm86",
        ] {
            syscalls.push(json!({ "names": [n], "action": "SCMP_ACT_ERRNO" }));
        }
        let filter = compile_json(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": syscalls,
        }));
        assert_exit(run_filtered(filter, |_| getppid_errno()), libc::EROFS);
    }

    /// Accept one connection, giving up after `timeout`.
    fn accept_within(listener: &UnixListener, timeout: Duration) -> std::os::unix::net::UnixStream {
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    return stream;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "no connection from the child");
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }

    /// Receive the state JSON and the fd sent by [`send_listener`].
    fn recv_state_and_fd(stream: &std::os::unix::net::UnixStream) -> (Vec<u8>, OwnedFd) {
        let mut data = vec![0u8; 4096];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [std::io::IoSliceMut::new(&mut data)];
        let msg = socket::recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .expect("recvmsg");
        let mut fd = None;
        for c in msg.cmsgs().expect("cmsgs") {
            if let socket::ControlMessageOwned::ScmRights(fds) = c {
                // SAFETY: SCM_RIGHTS gave this process new fds that it owns.
                fd = fds.first().map(|&f| unsafe { OwnedFd::from_raw_fd(f) });
            }
        }
        let len = msg.bytes;
        (data[..len].to_vec(), fd.expect("no fd in SCM_RIGHTS"))
    }

    /// Wait for a notification on `fd` (bounded), answer it with `answer`.
    fn answer_one(fd: &OwnedFd, child: Pid, answer: impl FnOnce(u64) -> libseccomp::ScmpNotifResp) {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let ready = poll(&mut fds, PollTimeout::from(10_000u16)).expect("poll");
        assert_eq!(ready, 1, "no seccomp notification within 10 s");
        let req = libseccomp::ScmpNotifReq::receive(fd.as_raw_fd()).expect("notif receive");
        assert_eq!(req.pid, child.as_raw() as u32);
        assert_eq!(req.data.syscall, ScmpSyscall::from_name("getppid").unwrap());
        answer(req.id)
            .respond(fd.as_raw_fd())
            .expect("notif respond");
    }

    fn notify_round_trip(flags: serde_json::Value) {
        let wait_killable = flags
            .as_array()
            .unwrap()
            .contains(&json!("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"));
        let dir = tempfile::tempdir().unwrap();
        let sock_path = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&sock_path).unwrap();
        let state =
            br#"{"ociVersion":"1.2.0","fds":["seccompFd"],"pid":1,"metadata":"m","state":{}}"#;

        let filter = compile_json(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": flags,
            "listenerPath": sock_path,
            "syscalls": [{ "names": ["getppid"], "action": "SCMP_ACT_NOTIFY" }],
        }));
        assert!(filter.needs_notify());
        let libseccomp_has_waitkill =
            libseccomp::check_api(7, libseccomp::ScmpVersion::from((2, 6, 0))).unwrap_or(false);
        assert_eq!(
            filter.raw_flags.is_some(),
            wait_killable && !libseccomp_has_waitkill,
            "seccomp(2) is used exactly when libseccomp cannot set WAIT_KILLABLE_RECV"
        );

        let child_path = sock_path.clone();
        let status = run_filtered_with(
            filter,
            move |fd| {
                let Some(fd) = fd else { return 100 };
                if send_listener(&child_path, fd.as_fd(), state).is_err() {
                    return 101;
                }
                // First call: the agent makes it return 4242.
                // SAFETY: getppid takes no arguments.
                if unsafe { libc::syscall(libc::SYS_getppid) } != 4242 {
                    return 102;
                }
                // Second call: the agent makes it fail with EXDEV.
                getppid_errno()
            },
            |child| {
                let stream = accept_within(&listener, Duration::from_secs(10));
                let (data, fd) = recv_state_and_fd(&stream);
                assert_eq!(data, state);
                answer_one(&fd, child, |id| {
                    libseccomp::ScmpNotifResp::new_val(
                        id,
                        4242,
                        libseccomp::ScmpNotifRespFlags::empty(),
                    )
                });
                answer_one(&fd, child, |id| {
                    libseccomp::ScmpNotifResp::new_error(
                        id,
                        -libc::EXDEV,
                        libseccomp::ScmpNotifRespFlags::empty(),
                    )
                });
            },
        );
        assert_exit(status, libc::EXDEV);
    }

    #[test]
    fn notify_through_listener() {
        notify_round_trip(json!([]));
    }

    #[test]
    fn notify_with_wait_killable_tsync_and_log() {
        // libseccomp < 2.6 cannot set WAIT_KILLABLE_RECV, so this also covers
        // loading through seccomp(2) with NEW_LISTENER | TSYNC_ESRCH.
        notify_round_trip(json!([
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
            "SECCOMP_FILTER_FLAG_TSYNC",
            "SECCOMP_FILTER_FLAG_LOG",
        ]));
    }

    #[test]
    fn wait_killable_without_notify_is_ignored() {
        let filter = compile_json(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
            "syscalls": [{ "names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 3 }],
        }));
        assert!(filter.raw_flags.is_none());
        assert_exit(
            run_filtered(
                filter,
                |fd| if fd.is_some() { 100 } else { getppid_errno() },
            ),
            3,
        );
    }

    #[test]
    fn send_listener_reports_connect_failure() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nobody.sock");
        let (a, _b) = socket::socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let err = send_listener(&missing, a.as_fd(), b"{}").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("nobody.sock") && msg.contains("connect"),
            "{msg}"
        );
    }

    fn compile_err(value: serde_json::Value) -> String {
        compile(&spec(value)).unwrap_err().to_string()
    }

    #[test]
    fn compile_errors_name_the_field() {
        assert_eq!(
            compile_err(json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    { "names": ["getpid"], "action": "SCMP_ACT_ERRNO" },
                    { "names": ["getppid"], "action": "SCMP_ACT_ERRNO",
                      "args": [{ "index": 6, "value": 0, "op": "SCMP_CMP_EQ" }] },
                ],
            })),
            "linux.seccomp.syscalls[1].args[0].index: argument index 6 is out of range 0..=5"
        );
        assert_eq!(
            compile_err(json!({ "defaultAction": "SCMP_ACT_NOTIFY" })),
            "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default action"
        );
        assert_eq!(
            compile_err(json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{ "names": ["read", "write"], "action": "SCMP_ACT_NOTIFY" }],
            })),
            "linux.seccomp.syscalls[0].names[1]: SCMP_ACT_NOTIFY cannot be used for the write syscall"
        );
        assert_eq!(
            compile_err(json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{ "names": ["sendmsg"], "action": "SCMP_ACT_NOTIFY" }],
            })),
            "linux.seccomp.syscalls[0].names[0]: SCMP_ACT_NOTIFY cannot be used for the sendmsg syscall"
        );
        assert_eq!(
            compile_err(json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{ "names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000 }],
            })),
            "linux.seccomp.syscalls[0].errnoRet: 70000 does not fit in the 16-bit SECCOMP_RET_DATA"
        );
        assert_eq!(
            compile_err(json!({ "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 65536 })),
            "linux.seccomp.defaultErrnoRet: 65536 does not fit in the 16-bit SECCOMP_RET_DATA"
        );
        assert_eq!(
            compile_err(json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{ "names": [""], "action": "SCMP_ACT_ERRNO" }],
            })),
            "linux.seccomp.syscalls[0].names[0]: empty syscall name"
        );
    }

    #[test]
    fn validate_json_names_unknown_values() {
        let good = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [
                { "names": ["read"], "action": "SCMP_ACT_ALLOW" },
                { "names": ["clone"], "action": "SCMP_ACT_ALLOW",
                  "args": [{ "index": 0, "value": 2114060288u64, "op": "SCMP_CMP_MASKED_EQ" }] },
            ],
        });
        validate_json(&good).unwrap();

        let with = |pointer: &str, value: serde_json::Value| {
            let mut v = good.clone();
            *v.pointer_mut(pointer).unwrap() = value;
            validate_json(&v).unwrap_err().to_string()
        };
        assert_eq!(
            with("/defaultAction", json!("SCMP_ACT_FOO")),
            "linux.seccomp.defaultAction: unknown action SCMP_ACT_FOO"
        );
        assert_eq!(
            with("/syscalls/1/action", json!("SCMP_ACT_FOO")),
            "linux.seccomp.syscalls[1].action: unknown action SCMP_ACT_FOO"
        );
        assert_eq!(
            with("/architectures/1", json!("SCMP_ARCH_FOO")),
            "linux.seccomp.architectures[1]: unknown architecture SCMP_ARCH_FOO"
        );
        assert_eq!(
            with("/flags/0", json!("SECCOMP_FILTER_FLAG_FOO")),
            "linux.seccomp.flags[0]: unknown flag SECCOMP_FILTER_FLAG_FOO"
        );
        assert_eq!(
            with("/syscalls/1/args/0/op", json!("SCMP_CMP_FOO")),
            "linux.seccomp.syscalls[1].args[0].op: unknown operator SCMP_CMP_FOO"
        );
        assert_eq!(
            with("/syscalls/0/action", json!(3)),
            "linux.seccomp.syscalls[0].action: expected a string (action)"
        );
        assert_eq!(
            with("/architectures", json!("SCMP_ARCH_X86_64")),
            "linux.seccomp.architectures: expected an array"
        );

        // The typed parse fails on the same input, without saying where:
        // that is why validate_json exists.
        let mut bad = good.clone();
        bad["syscalls"][1]["action"] = json!("SCMP_ACT_FOO");
        assert!(serde_json::from_value::<LinuxSeccomp>(bad).is_err());
    }
}
