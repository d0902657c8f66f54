//! `create`: everything up to the point where the init waits for `start`.
//!
//! Anything made here (state directory, cgroup, init process) is owned by a `Cleanup`
//! guard until the container is fully created, so every error path takes it all back.

use crate::error::{Context, Error, Result};
use crate::namespaces::{self, Plan};
use crate::state::{self, Container, Stored, START_SOCKET};
use crate::sync::{self, Msg};
use crate::{hooks, init, process, rootfs, seccomp, spec};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

#[derive(Default, Clone)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    /// Used as the console socket when the process wants a terminal and no
    /// --console-socket was given (a foreground `run` relays the terminal itself).
    pub terminal_fallback: Option<PathBuf>,
    pub pidfd_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: i32,
}

pub struct Created {
    pub pid: i32,
    /// The process has a terminal, sent to the console socket.
    pub terminal: bool,
    pub container: Container,
}

struct Cleanup {
    dir: Option<PathBuf>,
    cgroup: Option<cgroups::Cgroup>,
    child: Option<Pid>,
}

impl Cleanup {
    fn disarm(&mut self) {
        self.dir = None;
        self.cgroup = None;
        self.child = None;
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(pid) = self.child.take() {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
        if let Some(cg) = self.cgroup.take() {
            let _ = cg.kill_all(libc::SIGKILL);
            let _ = cg.remove();
        }
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub fn create(root: &Path, o: &CreateOptions) -> Result<Created> {
    spec::validate_id(&o.id)?;
    let netns = namespaces::NetnsMaker::start(&o.bundle);
    let bundle = spec::load(&o.bundle)?;
    crate::trace::mark("spec loaded");
    let s = &bundle.spec;
    let linux = s.linux().as_ref().expect("validated");
    let nss = linux.namespaces().clone().unwrap_or_default();
    let mut plan = namespaces::plan(&nss)?;
    if !plan.has_mountns {
        return Err(Error::Config {
            path: bundle.dir.join("config.json"),
            msg: "linux.namespaces: a mount namespace is required".into(),
        });
    }
    let process = s.process().as_ref().expect("validated");
    let terminal = process.terminal() == Some(true);
    let console_socket = match (&o.console_socket, &o.terminal_fallback) {
        (Some(p), _) => Some(p),
        (None, Some(p)) if terminal => Some(p),
        (None, _) if terminal => {
            return Err(Error::Other(
                "process.terminal is true: a --console-socket is required".into(),
            ))
        }
        (None, _) => None,
    };

    std::fs::create_dir_all(root).ctx(|| format!("create state root {}", root.display()))?;
    let dir = root.join(&o.id);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::Exists(o.id.clone()))
        }
        Err(e) => return Err(e).ctx(|| format!("create {}", dir.display())),
    }
    let mut cleanup = Cleanup {
        dir: Some(dir.clone()),
        cgroup: None,
        child: None,
    };

    let cgroups_path = linux
        .cgroups_path()
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| format!("/{}", o.id));
    let layout = cgroups::Layout::detect()?;
    let cg = cgroups::Cgroup::open_in(&layout, &cgroups_path)?;
    cg.create()?;
    cleanup.cgroup = Some(cg);
    let cg = cleanup.cgroup.as_ref().expect("just set");
    cg.apply(&device_rules(linux))?;
    let cgroup_mounts = cgroup_mounts_for_container(&layout, cg);
    let joiner = cg.joiner()?;
    crate::trace::mark("cgroup ready");

    let start_sock = dir.join(START_SOCKET);
    let listener = crate::sockpath::short(&start_sock)
        .and_then(|p| UnixListener::bind(&p.path))
        .ctx(|| format!("bind {}", start_sock.display()))?;
    let console = match console_socket {
        Some(p) => Some(
            crate::sockpath::connect(p)
                .ctx(|| format!("connect to console socket {}", p.display()))?,
        ),
        None => None,
    };
    let (parent_chan, child_chan) = sync::pair()?;

    netns.finish(&mut plan)?;
    join_before_clone(&plan, linux)?;

    let seccomp = linux
        .seccomp()
        .as_ref()
        .map(|sc| crate::seccomp::prepare(sc, Some(&root.join(crate::seccomp::CACHE_DIR))))
        .transpose()?;
    crate::trace::mark("seccomp ready");
    let args = init::Args {
        spec: s,
        seccomp: seccomp.as_ref(),
        rootfs: &bundle.rootfs,
        bundle: &bundle.dir,
        chan: &child_chan,
        plan: &plan,
        start_listener: listener.as_raw_fd(),
        console_socket: console.as_ref().map(|c| c.as_raw_fd()),
        no_pivot: o.no_pivot,
        no_new_keyring: o.no_new_keyring,
        preserve_fds: o.preserve_fds,
        cgroup_mounts: &cgroup_mounts,
        cgroup: &joiner,
        born_in_cgroup2: false,
    };
    let pid = spawn_init(&args, &plan)?;
    crate::trace::mark("cloned");
    cleanup.child = Some(pid);
    drop(child_chan);
    drop(listener);
    drop(console);

    if plan.new_userns {
        write_id_map(
            pid,
            "uid_map",
            linux.uid_mappings().as_deref().unwrap_or(&[]),
        )?;
        write_id_map(
            pid,
            "gid_map",
            linux.gid_mappings().as_deref().unwrap_or(&[]),
        )?;
    }
    process::set_oom_score_adj(pid.as_raw(), process)?;

    let mut stored = Stored {
        id: o.id.clone(),
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        pid: pid.as_raw(),
        pid_start_time: state::proc_start_time(pid.as_raw())
            .map(|(t, _)| t)
            .unwrap_or(0),
        created: state::rfc3339_now(),
        owner: String::new(),
        cgroup: cg.clone(),
        // Moved, not copied: the init has its own copy since the clone.
        spec: bundle.spec,
    };
    let creating = hook_state(&stored, "creating");
    parent_chan.send(&Msg::Go(creating.clone()))?;
    // While the init mounts, so that writing it costs the start nothing; it becomes
    // state.json once the init is ready.
    Container::write_pending(&dir, &stored)?;

    let s = &stored.spec;
    let linux = s.linux().as_ref().expect("validated");
    parent_chan.expect(Msg::RunHooks)?;
    crate::trace::mark("child at hooks");
    let h = s.hooks().as_ref();
    #[allow(deprecated)]
    let prestart = h.and_then(|h| h.prestart().as_ref());
    hooks::run_all("prestart", prestart, creating.as_bytes())?;
    hooks::run_all(
        "createRuntime",
        h.and_then(|h| h.create_runtime().as_ref()),
        creating.as_bytes(),
    )?;
    parent_chan.send(&Msg::HooksDone)?;

    loop {
        match parent_chan.recv()? {
            Some((Msg::Ready, _)) => break,
            Some((Msg::SeccompFd, Some(fd))) => {
                let sc = linux.seccomp().as_ref();
                let Some(path) = sc.and_then(|sc| sc.listener_path().as_ref()) else {
                    return Err(Error::Other(
                        "linux.seccomp: SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath".into(),
                    ));
                };
                let meta = sc
                    .and_then(|sc| sc.listener_metadata().clone())
                    .unwrap_or_default();
                let msg = process_state(&stored, &meta);
                seccomp::send_listener(path, init::borrowed(fd.as_raw_fd()), msg.as_bytes())?;
            }
            Some((Msg::Error(e), _)) => return Err(Error::Other(e)),
            Some((m, _)) => return Err(Error::Other(format!("unexpected {m:?} from init"))),
            None => {
                return Err(Error::Other(
                    "container init exited before it was set up".into(),
                ))
            }
        }
    }
    // The start time is read again now that init is surely past exec-free setup.
    if stored.pid_start_time == 0 {
        stored.pid_start_time = state::proc_start_time(pid.as_raw())
            .map(|(t, _)| t)
            .unwrap_or(0);
        Container::write_pending(&dir, &stored)?;
    }
    Container::commit(&dir)?;
    crate::trace::mark("state saved");
    if let Some(pf) = &o.pid_file {
        write_pid_file(pf, pid.as_raw())?;
    }
    if let Some(sock) = &o.pidfd_socket {
        crate::pidfd::send(sock, pid.as_raw())?;
    }
    cleanup.disarm();
    Ok(Created {
        pid: pid.as_raw(),
        terminal,
        container: Container { dir, stored },
    })
}

/// The spec's resources with the device rules every container needs appended: the
/// default device nodes and ptys (runc's AllowedDevices). The nodes listed in
/// linux.devices get no rule of their own, as in runc: what they may do is up to the
/// spec's rules, so `docker run --device X:Y:r` stays read-only.
fn device_rules(linux: &oci_spec::runtime::Linux) -> oci_spec::runtime::LinuxResources {
    use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType as T};
    let mut res = linux.resources().clone().unwrap_or_default();
    let Some(rules) = res.devices().clone() else {
        return res;
    };
    let mut rules = rules;
    let rule = |typ: T, major: Option<i64>, minor: Option<i64>| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some("rwm".into()));
        r
    };
    for (major, minor) in [
        (1, 3),
        (1, 5),
        (1, 7),
        (1, 8),
        (1, 9),
        (5, 0),
        (5, 1),
        (5, 2),
        (10, 200),
    ] {
        rules.push(rule(T::C, Some(major), Some(minor)));
    }
    rules.push(rule(T::C, Some(136), None));
    // mknod of any node is allowed (using it is not), as in runc.
    for typ in [T::C, T::B] {
        let mut r = rule(typ, None, None);
        r.set_access(Some("m".into()));
        rules.push(r);
    }
    res.set_devices(Some(rules));
    res
}

/// Namespaces that only affect children (pid, time) are entered here, in the runtime,
/// so that clone(2) puts the init inside them.
fn join_before_clone(plan: &Plan, linux: &oci_spec::runtime::Linux) -> Result<()> {
    for (t, fd) in &plan.join {
        if matches!(t, LinuxNamespaceType::Pid | LinuxNamespaceType::Time) {
            nix::sched::setns(fd, namespaces::flag(*t))
                .ctx(|| format!("join {} namespace", namespaces::proc_name(*t)))?;
        }
    }
    if plan.new_timens {
        nix::sched::unshare(namespaces::flag(LinuxNamespaceType::Time))
            .ctx(|| "create time namespace")?;
        if let Some(offsets) = linux.time_offsets() {
            let mut text = String::new();
            for (clock, off) in offsets {
                text.push_str(&format!(
                    "{clock} {} {}\n",
                    off.secs().unwrap_or(0),
                    off.nanosecs().unwrap_or(0)
                ));
            }
            std::fs::write("/proc/self/timens_offsets", text).ctx(|| "linux.timeOffsets")?;
        }
    }
    Ok(())
}

fn spawn_init(a: &init::Args, plan: &Plan) -> Result<Pid> {
    if let Some(cg) = a.cgroup.v2_dir() {
        if let Some(pid) = clone3_into_cgroup(a, plan, cg) {
            return Ok(pid);
        }
    }
    // The init runs on this stack in a copy of our memory; pages are only touched as used.
    let mut stack = vec![0u8; 1 << 20];
    let cb = Box::new(|| init::main(a));
    // SAFETY: the runtime is single-threaded, so the child's copy of memory is consistent;
    // the child only runs init::main on the 1 MiB stack above and ends in exec or _exit.
    let pid = unsafe { nix::sched::clone(cb, &mut stack, plan.clone_flags, Some(libc::SIGCHLD)) };
    pid.ctx(|| format!("clone with {:?}", plan.clone_flags))
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// clone3 like fork (a copy of our memory, continuing on a copy of this stack) with the
/// child born in the cgroup2 directory: no migration, so no wait for an RCU grace period.
/// None when the kernel refuses (older than 5.7, or the cgroup cannot take the process);
/// the caller then clones the classic way and the child joins by itself.
fn clone3_into_cgroup(a: &init::Args, plan: &Plan, cg: std::os::fd::BorrowedFd) -> Option<Pid> {
    let args = CloneArgs {
        flags: plan.clone_flags.bits() as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cg.as_raw_fd() as u64,
        ..Default::default()
    };
    // SAFETY: args is a live clone_args of the size passed. Without CLONE_VM the child gets
    // its own copy of memory like fork(2); the runtime is single-threaded here, so that copy
    // is consistent, and the child leaves only through exec or _exit.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match r {
        0 => {
            let child = init::Args {
                born_in_cgroup2: true,
                ..*a
            };
            let code = init::main(&child);
            // SAFETY: leaving the child without running the parent's destructors or atexit.
            unsafe { libc::_exit(code as i32) }
        }
        r if r > 0 => Some(Pid::from_raw(r as i32)),
        _ => None,
    }
}

fn write_id_map(pid: Pid, file: &str, maps: &[LinuxIdMapping]) -> Result<()> {
    let text: String = maps
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect();
    std::fs::write(format!("/proc/{pid}/{file}"), text)
        .ctx(|| format!("write {file} (linux.{}Mappings)", &file[..3]))
}

/// The hierarchies a container's `cgroup` mount shows, with the container's directory in
/// each (see rootfs::mount_cgroup).
fn cgroup_mounts_for_container(
    layout: &cgroups::Layout,
    cg: &cgroups::Cgroup,
) -> Vec<rootfs::CgroupMount> {
    if layout.is_v2() {
        return cg
            .unified
            .iter()
            .map(|d| rootfs::CgroupMount {
                name: String::new(),
                options: String::new(),
                dir: d.clone(),
            })
            .collect();
    }
    let dirs = cg.v1.iter().map(|d| &d.dir).chain(cg.unified.as_ref());
    layout
        .v1_mounts()
        .into_iter()
        .zip(dirs)
        .map(|((name, options), dir)| rootfs::CgroupMount {
            name,
            options,
            dir: dir.clone(),
        })
        .collect()
}

fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_extension("berth-tmp");
    std::fs::write(&tmp, pid.to_string()).ctx(|| format!("write pid file {}", tmp.display()))?;
    std::fs::rename(&tmp, path).ctx(|| format!("write pid file {}", path.display()))
}

/// The state document hooks read on stdin.
pub(crate) fn hook_state(s: &Stored, status: &str) -> String {
    let mut st = state::oci_state(s, state::Status::Running);
    st.status = status.to_string();
    st.pid = s.pid;
    serde_json::to_string(&st).unwrap_or_default()
}

fn process_state(s: &Stored, metadata: &str) -> String {
    let st = state::oci_state(s, state::Status::Created);
    serde_json::json!({
        "ociVersion": state::OCI_VERSION,
        "fds": ["seccompFd"],
        "pid": s.pid,
        "metadata": metadata,
        "state": st,
    })
    .to_string()
}
