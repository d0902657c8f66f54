//! Namespace types, their clone flags and /proc names, and which ones a spec creates or joins.

use crate::error::{Context, Error, Result};
use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

pub fn flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// The name under /proc/PID/ns/.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// Order for joining: the user namespace first (it grants the capabilities for the rest),
/// the mount namespace last (it changes how later paths resolve).
pub const JOIN_ORDER: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Mount,
];

pub struct Plan {
    /// Created by clone(2) (pid, mount, uts, ipc, net, user).
    pub clone_flags: CloneFlags,
    /// Created by unshare(2) in the init once it sits in its cgroup.
    pub new_cgroupns: bool,
    /// Created in the runtime by unshare(2) before clone, so the init is born inside it.
    pub new_timens: bool,
    /// Joined by setns(2), opened up front so a bad path fails before anything starts.
    pub join: Vec<(LinuxNamespaceType, OwnedFd)>,
    pub new_userns: bool,
    pub has_userns: bool,
    pub has_mountns: bool,
    pub has_pidns: bool,
}

/// A network namespace made by a helper thread while the runtime reads the config and
/// prepares the cgroup: creating one is the slowest part of clone(2) (~0.5 ms here), and
/// unshare(2) in a thread affects that thread only. The init joins it with setns(2).
/// Only without a user namespace: a netns must belong to the container's user namespace.
///
/// The thread starts before the config is parsed (the typed parse and validation take
/// longer than a look at `linux.namespaces` alone), so it decides from its own quick read
/// of config.json; `finish` then trusts only the full parse and drops or ignores what the
/// thread made when the two disagree.
pub struct NetnsMaker(std::thread::JoinHandle<Option<std::io::Result<OwnedFd>>>);

/// Just the part of config.json that says whether a new network namespace is wanted.
#[derive(serde::Deserialize)]
struct Quick {
    linux: Option<QuickLinux>,
}

#[derive(serde::Deserialize)]
struct QuickLinux {
    namespaces: Option<Vec<QuickNs>>,
}

#[derive(serde::Deserialize)]
struct QuickNs {
    #[serde(rename = "type")]
    typ: String,
    path: Option<String>,
}

/// Whether the config asks for a new network namespace outside any user namespace.
fn wants_own_netns(config: &[u8]) -> bool {
    let Ok(q) = serde_json::from_slice::<Quick>(config) else {
        return false;
    };
    let nss = q.linux.and_then(|l| l.namespaces).unwrap_or_default();
    let new_net = nss
        .iter()
        .any(|n| n.typ == "network" && n.path.as_deref().unwrap_or("").is_empty());
    new_net && !nss.iter().any(|n| n.typ == "user")
}

impl NetnsMaker {
    pub fn start(bundle: &std::path::Path) -> NetnsMaker {
        let config = bundle.join("config.json");
        let thread = std::thread::spawn(move || {
            if !wants_own_netns(&std::fs::read(config).ok()?) {
                return None;
            }
            Some(
                nix::sched::unshare(CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from)
                    .and_then(|()| {
                        std::fs::File::open("/proc/thread-self/ns/net").map(OwnedFd::from)
                    }),
            )
        });
        keep_off_this_cpu(&thread);
        NetnsMaker(thread)
    }

    /// Waits for the thread, then moves a new network namespace from the clone flags to
    /// the joins when the thread made one. The thread has ended when this returns, so the
    /// runtime is single-threaded again for clone(2).
    pub fn finish(self, plan: &mut Plan) -> Result<()> {
        let made = self
            .0
            .join()
            .map_err(|_| Error::Other("network namespace thread panicked".into()))?;
        let wanted = plan.clone_flags.contains(CloneFlags::CLONE_NEWNET) && !plan.has_userns;
        match made {
            Some(fd) if wanted => {
                let fd = fd.ctx(|| "create network namespace")?;
                plan.clone_flags.remove(CloneFlags::CLONE_NEWNET);
                plan.join.push((LinuxNamespaceType::Network, fd));
            }
            // The config changed between the two reads: clone(2) makes the namespace, or
            // the one made here is closed unused.
            _ => {}
        }
        Ok(())
    }
}

/// Lets `thread` run anywhere but on the CPU the caller runs on. The scheduler often puts
/// a new thread on its creator's CPU, where it waits for the creator's time slice to end
/// (0.5-1.5 ms here) instead of starting on the idle one: the point of the thread is to
/// run beside us. Moving a thread that has not run yet is immediate; where nothing else
/// is allowed (one CPU, a cpuset), nothing changes. Returns the CPU kept off.
fn keep_off_this_cpu<T>(thread: &std::thread::JoinHandle<T>) -> Option<usize> {
    use std::os::unix::thread::JoinHandleExt;
    let here = nix::sched::sched_getcpu().ok()?;
    let mut allowed = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok()?;
    allowed.unset(here).ok()?;
    if !(0..nix::sched::CpuSet::count()).any(|c| allowed.is_set(c).unwrap_or(false)) {
        return None;
    }
    // SAFETY: the handle's pthread_t is alive until it is joined; the set is a valid
    // cpu_set_t of the size passed.
    unsafe {
        libc::pthread_setaffinity_np(
            thread.as_pthread_t(),
            std::mem::size_of::<nix::sched::CpuSet>(),
            (&allowed as *const nix::sched::CpuSet).cast(),
        ) == 0
    }
    .then_some(here)
}

pub fn plan(nss: &[LinuxNamespace]) -> Result<Plan> {
    let mut p = Plan {
        clone_flags: CloneFlags::empty(),
        new_cgroupns: false,
        new_timens: false,
        join: vec![],
        new_userns: false,
        has_userns: false,
        has_mountns: false,
        has_pidns: false,
    };
    for t in JOIN_ORDER {
        let Some(ns) = nss.iter().find(|n| n.typ() == t) else {
            continue;
        };
        match t {
            LinuxNamespaceType::User => p.has_userns = true,
            LinuxNamespaceType::Mount => p.has_mountns = true,
            LinuxNamespaceType::Pid => p.has_pidns = true,
            _ => {}
        }
        match ns.path() {
            Some(path) => {
                let fd = open_ns(path)?;
                p.join.push((t, fd));
            }
            None => match t {
                LinuxNamespaceType::Cgroup => p.new_cgroupns = true,
                LinuxNamespaceType::Time => p.new_timens = true,
                LinuxNamespaceType::User => {
                    p.new_userns = true;
                    p.clone_flags |= flag(t);
                }
                _ => p.clone_flags |= flag(t),
            },
        }
    }
    Ok(p)
}

fn open_ns(path: &PathBuf) -> Result<OwnedFd> {
    nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| format!("open namespace {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::{keep_off_this_cpu, wants_own_netns};
    use nix::sched::{sched_getaffinity, CpuSet};
    use nix::unistd::Pid;

    #[test]
    fn quick_look_at_the_namespaces() {
        let ns =
            |list: &str| format!(r#"{{"ociVersion":"1.2.0","linux":{{"namespaces":[{list}]}}}}"#);
        assert!(wants_own_netns(
            ns(r#"{"type":"pid"},{"type":"network"}"#).as_bytes()
        ));
        assert!(wants_own_netns(
            ns(r#"{"type":"network","path":""}"#).as_bytes()
        ));
        assert!(!wants_own_netns(
            ns(r#"{"type":"network","path":"/proc/1/ns/net"}"#).as_bytes()
        ));
        assert!(!wants_own_netns(
            ns(r#"{"type":"network"},{"type":"user"}"#).as_bytes()
        ));
        assert!(!wants_own_netns(ns(r#"{"type":"pid"}"#).as_bytes()));
        assert!(!wants_own_netns(br#"{"linux":{}}"#));
        assert!(!wants_own_netns(b"not json"));
    }

    #[test]
    fn a_helper_thread_may_run_anywhere_but_on_its_creators_cpu() {
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            wait.recv().unwrap();
            sched_getaffinity(Pid::from_raw(0)).unwrap()
        });
        let avoided = keep_off_this_cpu(&t);
        go.send(()).unwrap();
        let mask = t.join().unwrap();
        let ours = sched_getaffinity(Pid::from_raw(0)).unwrap();
        let cpus = |m: &CpuSet| {
            (0..CpuSet::count())
                .filter(|&c| m.is_set(c).unwrap())
                .count()
        };
        match avoided {
            Some(cpu) => {
                assert!(
                    !mask.is_set(cpu).unwrap(),
                    "the thread may still run on CPU {cpu}"
                );
                assert_eq!(cpus(&mask), cpus(&ours) - 1);
            }
            None => assert_eq!(cpus(&ours), 1, "nothing was avoided with several CPUs"),
        }
    }
}
