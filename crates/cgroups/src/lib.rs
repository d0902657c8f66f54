//! cgroup v1, v2 and hybrid hierarchies behind one interface.
//!
//! A [`Cgroup`] is the set of directories one container owns: one per mounted v1 hierarchy
//! and, where cgroup2 is mounted, one in the unified hierarchy. Which controllers live where
//! is read from `/proc/self/mountinfo` at run time, so the same code serves a v1 host, a
//! hybrid host (v1 controllers plus a cgroup2 mount, like this machine) and a v2-only host.
//! Resources go to v1 when the controller is mounted there, else to cgroup2.
//!
//! A `Cgroup` is plain data (serde), so the runtime stores it in its state and later commands
//! act on exactly the directories `create` made, whatever cgroup they themselves run in.

mod devices_bpf;
mod fsx;
mod layout;
mod stats;
mod v1;
mod v2;

pub use fsx::read_text;
pub use layout::{Hierarchy, Layout};
pub use stats::Stats;

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} {path}: {err}")]
    Io {
        what: String,
        path: PathBuf,
        err: std::io::Error,
    },
    #[error("cgroup file {file} does not exist in {dir} (is the controller enabled?)")]
    Missing { file: String, dir: PathBuf },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// One v1 hierarchy directory of a container.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct V1Dir {
    /// Controllers (and `name=` hierarchies) mounted together at this hierarchy.
    pub controllers: Vec<String>,
    pub dir: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Cgroup {
    /// The directories in v1 hierarchies; empty on a v2-only host.
    pub v1: Vec<V1Dir>,
    /// The directory in the cgroup2 hierarchy, if one is mounted.
    pub unified: Option<PathBuf>,
    /// The cgroup2 mount point (where `cgroup.controllers` lists what the kernel offers).
    pub unified_root: Option<PathBuf>,
}

impl Cgroup {
    /// The cgroup for an OCI `cgroupsPath` on this host's layout. Absolute paths are relative
    /// to each hierarchy's root, relative ones to this process's own cgroup (as runc does),
    /// and systemd's `slice:prefix:name` form maps to the cgroupfs path systemd would use.
    pub fn open(path: &str) -> Result<Cgroup> {
        Self::open_in(&Layout::detect()?, path)
    }

    /// [`Cgroup::open`] on a layout the caller already read.
    pub fn open_in(layout: &Layout, path: &str) -> Result<Cgroup> {
        let own = layout::own_cgroups(
            &read_text(std::path::Path::new("/proc/self/cgroup")).map_err(|e| Error::Io {
                what: "read".into(),
                path: "/proc/self/cgroup".into(),
                err: e,
            })?,
        );
        Self::resolve(layout, &own, path)
    }

    fn resolve(layout: &Layout, own: &layout::Own, path: &str) -> Result<Cgroup> {
        let path = layout::normalize(path)?;
        let join = |mountpoint: &Path, mount_root: &str, own_path: Option<&str>| -> PathBuf {
            if path.absolute {
                return mountpoint.join(&path.rel);
            }
            let own_path = own_path.unwrap_or("/");
            let below = own_path
                .strip_prefix(mount_root)
                .unwrap_or(own_path)
                .trim_start_matches('/');
            mountpoint.join(below).join(&path.rel)
        };
        let v1 = layout
            .v1
            .iter()
            .map(|h| V1Dir {
                controllers: h.controllers.clone(),
                dir: join(&h.mountpoint, &h.root, own.v1_path(&h.controllers)),
            })
            .collect();
        let unified = layout
            .unified
            .as_ref()
            .map(|u| join(&u.mountpoint, &u.root, own.v2.as_deref()));
        Ok(Cgroup {
            v1,
            unified,
            unified_root: layout.unified.as_ref().map(|u| u.mountpoint.clone()),
        })
    }

    /// True when no v1 hierarchy is mounted: everything goes through cgroup2.
    pub fn is_v2_only(&self) -> bool {
        self.v1.is_empty()
    }

    pub(crate) fn v1_dir(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|d| d.controllers.iter().any(|c| c == controller))
            .map(|d| d.dir.as_path())
    }

    /// The cgroup2 directory, if `controller` is offered there (and not served by v1).
    pub(crate) fn v2_dir_for(&self, controller: &str) -> Option<&Path> {
        if self.v1_dir(controller).is_some() {
            return None;
        }
        let root = self.unified_root.as_ref()?;
        let offered = read_text(&root.join("cgroup.controllers")).unwrap_or_default();
        offered
            .split_whitespace()
            .any(|c| c == controller)
            .then_some(self.unified.as_deref())
            .flatten()
    }

    /// Every directory of this cgroup.
    pub fn dirs(&self) -> Vec<&Path> {
        self.v1
            .iter()
            .map(|d| d.dir.as_path())
            .chain(self.unified.as_deref())
            .collect()
    }

    /// The directory whose `cgroup.procs` lists the container's processes.
    fn procs_dir(&self) -> Option<&Path> {
        ["freezer", "pids", "memory", "cpu"]
            .iter()
            .find_map(|c| self.v1_dir(c))
            .or_else(|| self.v1.first().map(|d| d.dir.as_path()))
            .or(self.unified.as_deref())
    }

    pub fn exists(&self) -> bool {
        self.procs_dir().is_some_and(|d| d.is_dir())
    }

    /// Makes the directories. In v1 cpuset a new cgroup starts with no cpus or mems and
    /// refuses tasks, so those are copied down from the parent; in cgroup2 the controllers
    /// are enabled along the path so their files appear.
    pub fn create(&self) -> Result<()> {
        for d in &self.v1 {
            if d.controllers.iter().any(|c| c == "cpuset") {
                v1::create_cpuset(&d.dir)?;
            } else {
                fsx::mkdir_all(&d.dir)?;
            }
        }
        if let (Some(dir), Some(root)) = (&self.unified, &self.unified_root) {
            fsx::mkdir_all(dir)?;
            let wanted: Vec<String> = read_text(&root.join("cgroup.controllers"))
                .unwrap_or_default()
                .split_whitespace()
                .filter(|c| self.v1_dir(c).is_none())
                .map(str::to_string)
                .collect();
            v2::enable_controllers(root, dir, &wanted);
        }
        Ok(())
    }

    /// Opens what a new process needs to join this cgroup by itself (see [`Joiner`]).
    pub fn joiner(&self) -> Result<Joiner> {
        let open = |path: PathBuf, dir: bool| {
            let mut o = std::fs::OpenOptions::new();
            if dir {
                o.read(true)
                    .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC);
            } else {
                o.write(true).custom_flags(libc::O_CLOEXEC);
            }
            o.open(&path).map_err(|e| Error::Io {
                what: "open".into(),
                path,
                err: e,
            })
        };
        let tasks = self
            .v1
            .iter()
            .map(|d| open(d.dir.join("tasks"), false).map(|f| (d.dir.join("tasks"), f)))
            .collect::<Result<_>>()?;
        let (v2_dir, v2_procs) = match &self.unified {
            Some(d) => (
                Some(open(d.clone(), true)?),
                Some((d.join("cgroup.procs"), open(d.join("cgroup.procs"), false)?)),
            ),
            None => (None, None),
        };
        Ok(Joiner {
            tasks,
            v2_dir,
            v2_procs,
        })
    }

    pub fn add_task(&self, pid: i32) -> Result<()> {
        for d in self.dirs() {
            fsx::write(d, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// Applies the resources that are set; unset ones are left as they are.
    pub fn apply(&self, r: &LinuxResources) -> Result<()> {
        let r = zeros_unset(r);
        v1::apply(self, &r)?;
        v2::apply(self, &r)
    }

    pub fn stats(&self) -> Result<Stats> {
        let mut s = Stats::default();
        v1::stats(self, &mut s)?;
        v2::stats(self, &mut s)?;
        Ok(s)
    }

    /// How many processes the kernel's OOM killer has killed in this cgroup (`oom_kill` in
    /// v1 `memory.oom_control` or v2 `memory.events`); 0 when the memory controller is not
    /// there to ask. Engines read it after the container exits, before the cgroup goes.
    pub fn oom_kills(&self) -> Result<u64> {
        let (dir, file) = match (self.v1_dir("memory"), self.v2_dir_for("memory")) {
            (Some(d), _) => (d, "memory.oom_control"),
            (None, Some(d)) => (d, "memory.events"),
            (None, None) => return Ok(0),
        };
        let path = dir.join(file);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(err) => {
                return Err(Error::Io {
                    what: "read".into(),
                    path,
                    err,
                })
            }
        };
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0))
    }

    fn uses_v1_freezer(&self) -> Option<&Path> {
        self.v1_dir("freezer")
    }

    pub fn freeze(&self) -> Result<()> {
        match self.uses_v1_freezer() {
            Some(d) => v1::freeze(d),
            None => v2::freeze(self.unified_dir()?, true),
        }
    }

    pub fn thaw(&self) -> Result<()> {
        match self.uses_v1_freezer() {
            Some(d) => fsx::write(d, "freezer.state", "THAWED"),
            None => v2::freeze(self.unified_dir()?, false),
        }
    }

    pub fn is_frozen(&self) -> Result<bool> {
        match self.uses_v1_freezer() {
            Some(d) => Ok(fsx::read(d, "freezer.state")?.trim() == "FROZEN"),
            None => {
                let d = self.unified_dir()?;
                if !d.join("cgroup.freeze").exists() {
                    return Ok(false);
                }
                Ok(fsx::read(d, "cgroup.freeze")?.trim() == "1")
            }
        }
    }

    fn unified_dir(&self) -> Result<&Path> {
        self.unified.as_deref().ok_or_else(|| {
            Error::Invalid("no freezer: neither v1 freezer nor cgroup2 is mounted".into())
        })
    }

    /// Every process in the cgroup and its descendants.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let Some(dir) = self.procs_dir() else {
            return Ok(Vec::new());
        };
        let mut pids = Vec::new();
        fsx::collect_procs(dir, &mut pids)?;
        Ok(pids)
    }

    /// Signals every process. cgroup2's `cgroup.kill` does SIGKILL atomically; otherwise the
    /// cgroup is frozen while the list is read and signalled, so nothing forks past it.
    pub fn kill_all(&self, signal: i32) -> Result<()> {
        if signal == libc::SIGKILL && self.uses_v1_freezer().is_none() {
            if let Some(d) = &self.unified {
                if d.join("cgroup.kill").exists() {
                    return fsx::write(d, "cgroup.kill", "1");
                }
            }
        }
        let was_frozen = self.is_frozen().unwrap_or(false);
        let froze = !was_frozen && self.freeze().is_ok();
        let result = self.pids().map(|pids| {
            for pid in pids {
                // SAFETY: kill(2) takes plain integers; a pid that exited meanwhile gives ESRCH.
                unsafe { libc::kill(pid, signal) };
            }
        });
        if froze {
            self.thaw()?;
        }
        result
    }

    /// Removes every directory, children first. A cgroup whose last task is still exiting
    /// reports EBUSY for a moment, so that is retried briefly.
    pub fn remove(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(2);
        for d in self.dirs() {
            let mut delay = Duration::from_millis(1);
            loop {
                match fsx::remove_tree(d) {
                    Ok(()) => break,
                    Err(Error::Io { err: source, .. })
                        if source.raw_os_error() == Some(libc::EBUSY)
                            && Instant::now() < deadline =>
                    {
                        std::thread::sleep(delay);
                        delay = (delay * 2).min(Duration::from_millis(100));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

/// Engines send 0 for "not set" (Docker's blkio weight and cpu shares, for example), and
/// runc reads it so; the kernel would refuse most of those zeros. Also swappiness -1
/// (u64::MAX once through the spec's unsigned field) means unset.
fn zeros_unset(r: &LinuxResources) -> LinuxResources {
    let mut r = r.clone();
    if let Some(mut m) = *r.memory() {
        let nz = |v: Option<i64>| v.filter(|v| *v != 0);
        m.set_limit(nz(m.limit()));
        m.set_reservation(nz(m.reservation()));
        m.set_swap(nz(m.swap()));
        #[allow(deprecated)]
        m.set_kernel(nz(m.kernel()));
        m.set_kernel_tcp(nz(m.kernel_tcp()));
        m.set_swappiness(m.swappiness().filter(|v| *v != u64::MAX && *v as i64 != -1));
        r.set_memory(Some(m));
    }
    if let Some(mut c) = r.cpu().clone() {
        c.set_shares(c.shares().filter(|v| *v != 0));
        c.set_quota(c.quota().filter(|v| *v != 0));
        c.set_period(c.period().filter(|v| *v != 0));
        c.set_realtime_runtime(c.realtime_runtime().filter(|v| *v != 0));
        c.set_realtime_period(c.realtime_period().filter(|v| *v != 0));
        r.set_cpu(Some(c));
    }
    if r.pids().is_some_and(|p| p.limit() == 0) {
        r.set_pids(None);
    }
    if let Some(mut b) = r.block_io().clone() {
        b.set_weight(b.weight().filter(|v| *v != 0));
        b.set_leaf_weight(b.leaf_weight().filter(|v| *v != 0));
        r.set_block_io(Some(b));
    }
    r
}

/// Files a process uses to move *itself* into a cgroup.
///
/// Moving another process (its pid into `cgroup.procs`) takes the kernel's global
/// threadgroup lock for writing, which waits for an RCU grace period: 5–15 ms on this
/// machine, most of a container's start. A single-threaded process writing `0` to a v1
/// `tasks` file moves only itself and skips that lock; on cgroup2 a child is best born in
/// its cgroup (clone3 with CLONE_INTO_CGROUP and [`Joiner::v2_dir`]).
pub struct Joiner {
    tasks: Vec<(PathBuf, std::fs::File)>,
    v2_dir: Option<std::fs::File>,
    v2_procs: Option<(PathBuf, std::fs::File)>,
}

impl Joiner {
    /// The cgroup2 directory, for CLONE_INTO_CGROUP.
    pub fn v2_dir(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.v2_dir.as_ref().map(|f| f.as_fd())
    }

    /// Moves the calling process, which must be single-threaded, into every v1 hierarchy
    /// and, unless it was born there, into cgroup2.
    pub fn join_self(&self, born_in_v2: bool) -> Result<()> {
        use std::io::Write;
        let procs = self.v2_procs.iter().filter(|_| !born_in_v2);
        for (path, mut f) in self.tasks.iter().chain(procs).map(|(p, f)| (p, f)) {
            f.write_all(b"0").map_err(|e| Error::Io {
                what: "join cgroup through".into(),
                path: path.clone(),
                err: e,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hybrid() -> Layout {
        Layout::parse(
            "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
             32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
             35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
             40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n\
             41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n",
        )
    }

    #[test]
    fn absolute_and_relative_paths() {
        let own =
            layout::own_cgroups("4:memory:/process_api/abc\n1:cpu:/\n0::/\n9:name=systemd:/sys\n");
        let cg = Cgroup::resolve(&hybrid(), &own, "/berth/c1").unwrap();
        assert_eq!(
            cg.v1_dir("memory").unwrap(),
            Path::new("/sys/fs/cgroup/memory/berth/c1")
        );
        assert_eq!(
            cg.unified.as_deref().unwrap(),
            Path::new("/sys/fs/cgroup/unified/berth/c1")
        );
        let cg = Cgroup::resolve(&hybrid(), &own, "c1").unwrap();
        assert_eq!(
            cg.v1_dir("memory").unwrap(),
            Path::new("/sys/fs/cgroup/memory/process_api/abc/c1")
        );
        assert_eq!(
            cg.v1_dir("cpu").unwrap(),
            Path::new("/sys/fs/cgroup/cpu/c1")
        );
        assert_eq!(
            cg.v1_dir("name=systemd").unwrap(),
            Path::new("/sys/fs/cgroup/systemd/sys/c1")
        );
    }

    #[test]
    fn zeros_mean_unset() {
        let r: LinuxResources = serde_json::from_str(
            r#"{"memory": {"limit": 0, "swappiness": 18446744073709551615},
                "cpu": {"shares": 0, "quota": 0, "period": 0},
                "pids": {"limit": 0}, "blockIO": {"weight": 0}}"#,
        )
        .unwrap();
        let z = zeros_unset(&r);
        assert_eq!(z.memory().unwrap().limit(), None);
        assert_eq!(z.memory().unwrap().swappiness(), None);
        assert_eq!(z.cpu().as_ref().unwrap().shares(), None);
        assert!(z.pids().is_none());
        assert_eq!(z.block_io().as_ref().unwrap().weight(), None);
    }

    #[test]
    fn hostile_paths_are_refused() {
        let own = layout::own_cgroups("0::/\n");
        for p in ["/../../etc", "a/../../b", "/x/../.."] {
            assert!(Cgroup::resolve(&hybrid(), &own, p).is_err(), "{p}");
        }
    }

    #[test]
    fn systemd_form_maps_to_scope() {
        let own = layout::own_cgroups("0::/\n");
        let cg = Cgroup::resolve(&hybrid(), &own, "machine-web.slice:docker:abc").unwrap();
        assert_eq!(
            cg.v1_dir("memory").unwrap(),
            Path::new("/sys/fs/cgroup/memory/machine.slice/machine-web.slice/docker-abc.scope")
        );
        let cg = Cgroup::resolve(&hybrid(), &own, ":libpod:abc").unwrap();
        assert_eq!(
            cg.v1_dir("memory").unwrap(),
            Path::new("/sys/fs/cgroup/memory/system.slice/libpod-abc.scope")
        );
    }
}
