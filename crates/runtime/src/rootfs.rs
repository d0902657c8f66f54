//! The container's filesystem view, built inside the new mount namespace before the user
//! process runs: the bundle's mounts, devices, pivot_root, then masked and read-only paths.
//!
//! Every destination comes from a config that may be hostile and a rootfs that may hold
//! planted symlinks (the CVE-2021-30465 family). Destinations are therefore resolved with
//! openat2(RESOLVE_IN_ROOT) against a handle on the rootfs, created component by component
//! with mkdirat, and mounted through the resulting /proc/self/fd/N handle, so a symlink can
//! never carry a mount outside the rootfs.

use crate::error::{Context, Error, Result};
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{mkdirat, mknodat, Mode, SFlag};
use nix::sys::statvfs::{statvfs, FsFlags};
use nix::unistd::{chdir, fchdir, pivot_root};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// An O_PATH handle on the rootfs that resolves paths strictly inside it.
pub struct Root {
    fd: OwnedFd,
}

impl Root {
    pub fn open(path: &Path) -> Result<Root> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("open rootfs {}", path.display()))?;
        Ok(Root { fd })
    }

    fn how(flags: OFlag) -> OpenHow {
        OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
    }

    /// Opens an existing path inside the root (following symlinks, but only inside it).
    pub fn resolve(&self, path: &Path) -> nix::Result<OwnedFd> {
        openat2(self.fd.as_fd(), &rel(path), Self::how(OFlag::O_PATH))
    }

    /// `mkdir -p` inside the root; returns a handle on the final directory. A dangling
    /// symlink on the way is followed (inside the root) and its target created, as
    /// runc's secure join does, so `/var/run -> /run` works without `/run` existing.
    pub fn mkdir_all(&self, path: &Path) -> Result<OwnedFd> {
        let mut todo: Vec<PathBuf> = vec![rel(path)];
        let mut links = 0;
        'restart: while let Some(path) = todo.pop() {
            let mut cur = PathBuf::new();
            let mut dir = self.resolve(Path::new(".")).ctx(|| "open rootfs")?;
            let comps: Vec<Component> = path.components().collect();
            for (i, comp) in comps.iter().enumerate() {
                let name = match comp {
                    Component::Normal(n) => *n,
                    Component::ParentDir => {
                        cur.pop();
                        dir = self.resolve(&rel(&cur)).ctx(|| "open parent in rootfs")?;
                        continue;
                    }
                    _ => continue,
                };
                cur.push(name);
                let made = match self.resolve(&cur) {
                    Ok(fd) => {
                        dir = fd;
                        continue;
                    }
                    Err(nix::errno::Errno::ENOENT) => {
                        mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(0o755))
                    }
                    Err(e) => return Err(e).ctx(|| format!("open {} in rootfs", cur.display())),
                };
                match made {
                    Ok(()) => {}
                    Err(nix::errno::Errno::EEXIST) => {
                        // A dangling symlink: create what it points at, inside the root.
                        let target = nix::fcntl::readlinkat(dir.as_fd(), name)
                            .ctx(|| format!("readlink {} in rootfs", cur.display()))?;
                        links += 1;
                        if links > 40 {
                            return Err(Error::Other(format!(
                                "{}: too many levels of symbolic links",
                                path.display()
                            )));
                        }
                        let mut next = if Path::new(&target).is_absolute() {
                            rel(Path::new(&target))
                        } else {
                            cur.parent().unwrap_or(Path::new("")).join(&target)
                        };
                        for c in &comps[i + 1..] {
                            next.push(c);
                        }
                        todo.push(next);
                        continue 'restart;
                    }
                    Err(e) => return Err(e).ctx(|| format!("mkdir {} in rootfs", cur.display())),
                }
                dir = self
                    .resolve(&cur)
                    .ctx(|| format!("open {} in rootfs", cur.display()))?;
            }
            return Ok(dir);
        }
        unreachable!("the loop returns once the path is done")
    }

    /// Makes sure a mount target exists (a directory, or an empty file when the source is
    /// not a directory) and returns an O_PATH handle on it.
    pub fn mount_target(&self, path: &Path, is_dir: bool) -> Result<OwnedFd> {
        if is_dir {
            return self.mkdir_all(path);
        }
        if let Ok(fd) = self.resolve(path) {
            return Ok(fd);
        }
        let parent = path.parent().unwrap_or(Path::new("/"));
        let name = path
            .file_name()
            .ok_or_else(|| Error::Other(format!("bad mount destination {}", path.display())))?;
        let dir = self.mkdir_all(parent)?;
        let _ = nix::fcntl::openat(
            dir.as_fd(),
            name,
            OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        );
        self.resolve(path)
            .ctx(|| format!("create mount target {} in rootfs", path.display()))
    }
}

fn rel(path: &Path) -> PathBuf {
    let r = path.strip_prefix("/").unwrap_or(path);
    if r.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        r.to_path_buf()
    }
}

fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Mount flags from OCI mount options; anything not a flag is filesystem data.
pub struct MountOpts {
    pub flags: MsFlags,
    pub clear: MsFlags,
    pub propagation: Vec<MsFlags>,
    pub data: Vec<String>,
    pub bind: bool,
}

pub fn parse_options(options: &[String]) -> MountOpts {
    let mut o = MountOpts {
        flags: MsFlags::empty(),
        clear: MsFlags::empty(),
        propagation: vec![],
        data: vec![],
        bind: false,
    };
    for opt in options {
        let (set, clear, prop) = match opt.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty(), None),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY, None),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty(), None),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID, None),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty(), None),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV, None),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty(), None),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC, None),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty(), None),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS, None),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty(), None),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty(), None),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty(), None),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK, None),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME, None),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty(), None),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME, None),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty(), None),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty(), None),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME, None),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty(), None),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME, None),
            "lazytime" => (MsFlags::MS_LAZYTIME, MsFlags::empty(), None),
            "nolazytime" => (MsFlags::empty(), MsFlags::MS_LAZYTIME, None),
            "silent" => (MsFlags::MS_SILENT, MsFlags::empty(), None),
            "loud" => (MsFlags::empty(), MsFlags::MS_SILENT, None),
            "bind" => {
                o.bind = true;
                (MsFlags::MS_BIND, MsFlags::empty(), None)
            }
            "rbind" => {
                o.bind = true;
                (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty(), None)
            }
            "private" => (
                MsFlags::empty(),
                MsFlags::empty(),
                Some(MsFlags::MS_PRIVATE),
            ),
            "rprivate" => (
                MsFlags::empty(),
                MsFlags::empty(),
                Some(MsFlags::MS_PRIVATE | MsFlags::MS_REC),
            ),
            "shared" => (MsFlags::empty(), MsFlags::empty(), Some(MsFlags::MS_SHARED)),
            "rshared" => (
                MsFlags::empty(),
                MsFlags::empty(),
                Some(MsFlags::MS_SHARED | MsFlags::MS_REC),
            ),
            "slave" => (MsFlags::empty(), MsFlags::empty(), Some(MsFlags::MS_SLAVE)),
            "rslave" => (
                MsFlags::empty(),
                MsFlags::empty(),
                Some(MsFlags::MS_SLAVE | MsFlags::MS_REC),
            ),
            "unbindable" => (
                MsFlags::empty(),
                MsFlags::empty(),
                Some(MsFlags::MS_UNBINDABLE),
            ),
            "runbindable" => (
                MsFlags::empty(),
                MsFlags::empty(),
                Some(MsFlags::MS_UNBINDABLE | MsFlags::MS_REC),
            ),
            // Extensions of other runtimes that need no action here.
            "tmpcopyup" | "idmap" | "ridmap" => continue,
            other => {
                o.data.push(other.to_string());
                continue;
            }
        };
        o.flags |= set;
        o.flags &= !clear;
        o.clear |= clear;
        if let Some(p) = prop {
            o.propagation.push(p);
        }
    }
    o
}

/// Flags of an existing mount that an unprivileged (user namespace) remount must keep.
fn locked_flags(path: &str) -> MsFlags {
    let Ok(st) = statvfs(path) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut m = MsFlags::empty();
    for (s, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(s) {
            m |= ms;
        }
    }
    m
}

/// Remounts a bind mount with new flags, keeping the flags the kernel locks.
fn remount_bind(target: &str, flags: MsFlags) -> nix::Result<()> {
    let base = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | (flags & !MsFlags::MS_REC);
    match mount(None::<&str>, target, None::<&str>, base, None::<&str>) {
        Err(nix::errno::Errno::EPERM) => mount(
            None::<&str>,
            target,
            None::<&str>,
            base | locked_flags(target),
            None::<&str>,
        ),
        r => r,
    }
}

/// One cgroup hierarchy as a container's `cgroup` mount shows it.
pub struct CgroupMount {
    /// Directory under the mount; empty on a cgroup2-only host, where the hierarchy is the
    /// mount itself.
    pub name: String,
    /// v1 mount options (`memory`, `name=systemd`); empty for cgroup2.
    pub options: String,
    /// The container's cgroup directory on the host.
    pub dir: std::path::PathBuf,
}

pub struct Setup<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    /// The hierarchies a `cgroup` mount shows.
    pub cgroup_mounts: &'a [CgroupMount],
    /// The container has a cgroup namespace of its own (new or joined).
    pub cgroupns: bool,
    pub in_userns: bool,
}

/// Everything up to, not including, pivot_root: the caller runs hooks in between.
pub fn prepare(s: &Setup) -> Result<()> {
    let prop = root_propagation(s.spec)?.unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    mount(None::<&str>, "/", None::<&str>, prop, None::<&str>)
        .ctx(|| "set propagation of / in the container mount namespace")?;
    // pivot_root refuses a new root whose parent mount is shared. After a recursive
    // slave, private or unbindable change of `/` no mount is shared, so mountinfo need
    // not be read (the default, and what Docker and Podman ask for).
    if !prop.contains(MsFlags::MS_REC) || prop.contains(MsFlags::MS_SHARED) {
        make_parent_mount_private(s.rootfs)?;
    }
    // pivot_root needs the new root to be a mount point.
    mount(
        Some(s.rootfs),
        s.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .ctx(|| format!("bind mount rootfs {}", s.rootfs.display()))?;

    let root = Root::open(s.rootfs)?;
    for m in s.spec.mounts().iter().flatten() {
        mount_one(s, &root, m)
            .map_err(|e| Error::Other(format!("mount {}: {e}", m.destination().display())))?;
    }
    create_devices(s, &root)?;
    // runc creates a missing working directory; so do we, inside the rootfs.
    if let Some(p) = s.spec.process().as_ref() {
        root.mkdir_all(p.cwd())?;
    }
    Ok(())
}

fn mount_one(s: &Setup, root: &Root, m: &Mount) -> Result<()> {
    let opts = parse_options(m.options().as_deref().unwrap_or(&[]));
    let typ = m.typ().as_deref().unwrap_or("");
    let dest = m.destination();
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroup(s, root, dest, &opts);
    }
    if opts.bind || typ == "bind" {
        let src = m
            .source()
            .as_ref()
            .ok_or_else(|| Error::Other("bind mount without a source".into()))?;
        let src = if src.is_absolute() {
            src.clone()
        } else {
            s.bundle.join(src)
        };
        let meta = std::fs::metadata(&src).ctx(|| format!("source {}", src.display()))?;
        let target = root.mount_target(dest, meta.is_dir())?;
        let tpath = fd_path(&target);
        let flags = MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC);
        mount(
            Some(&src),
            tpath.as_str(),
            None::<&str>,
            flags,
            None::<&str>,
        )
        .ctx(|| format!("bind {}", src.display()))?;
        // Re-open: the handle above points at the directory beneath the new mount.
        let target = root.resolve(dest).ctx(|| "reopen bind target")?;
        let tpath = fd_path(&target);
        let extra = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
        if !extra.is_empty() {
            remount_bind(&tpath, extra | (opts.flags & MsFlags::MS_REC))
                .ctx(|| "remount with requested flags")?;
        }
        for p in &opts.propagation {
            mount(None::<&str>, tpath.as_str(), None::<&str>, *p, None::<&str>)
                .ctx(|| "set propagation")?;
        }
        return Ok(());
    }
    let target = root.mount_target(dest, true)?;
    let tpath = fd_path(&target);
    let data = opts.data.join(",");
    let source = m.source().as_ref().map(|p| p.as_path());
    let source = source.unwrap_or(Path::new(if typ.is_empty() { "none" } else { typ }));
    let r = mount(
        Some(source),
        tpath.as_str(),
        Some(typ),
        opts.flags,
        (!data.is_empty()).then_some(data.as_str()),
    );
    match r {
        // sysfs cannot be mounted in a user namespace that does not own the network
        // namespace: fall back to a recursive bind of the host's, read-only, as runc does.
        Err(nix::errno::Errno::EPERM) if typ == "sysfs" && s.in_userns => {
            mount(
                Some("/sys"),
                tpath.as_str(),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .ctx(|| "bind /sys")?;
            let t = root.resolve(dest).ctx(|| "reopen sysfs target")?;
            remount_bind(&fd_path(&t), MsFlags::MS_RDONLY | opts.flags).ctx(|| "remount /sys")?;
        }
        r => r.ctx(|| format!("mount {typ}"))?,
    }
    if !opts.propagation.is_empty() {
        let t = root.resolve(dest).ctx(|| "reopen mount target")?;
        for p in &opts.propagation {
            mount(
                None::<&str>,
                fd_path(&t).as_str(),
                None::<&str>,
                *p,
                None::<&str>,
            )
            .ctx(|| "set propagation")?;
        }
    }
    Ok(())
}

/// A `cgroup` mount. With a cgroup namespace (new or joined) the kernel roots a fresh mount
/// of each hierarchy at the container's cgroup. Without one a fresh mount would show the
/// host's whole tree, so, as runc does, the container's own cgroup directories are bound
/// there instead. On a cgroup2-only host that is one mount; otherwise a tmpfs with one
/// mount per hierarchy.
fn mount_cgroup(s: &Setup, root: &Root, dest: &Path, opts: &MountOpts) -> Result<()> {
    let flags = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
    let one = |m: &CgroupMount, at: &Path| -> Result<()> {
        let t = root.mount_target(at, true)?;
        if s.cgroupns {
            let fstype = if m.options.is_empty() {
                "cgroup2"
            } else {
                "cgroup"
            };
            mount(
                Some("cgroup"),
                fd_path(&t).as_str(),
                Some(fstype),
                flags & !MsFlags::MS_RDONLY,
                (!m.options.is_empty()).then_some(m.options.as_str()),
            )
            .ctx(|| format!("mount cgroup {}", m.name))?;
        } else {
            mount(
                Some(&m.dir),
                fd_path(&t).as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .ctx(|| format!("bind the container's cgroup {}", m.dir.display()))?;
        }
        let t = root.resolve(at).ctx(|| "reopen cgroup mount")?;
        remount_bind(&fd_path(&t), flags).ctx(|| "remount cgroup with the mount's flags")
    };
    if let [m] = s.cgroup_mounts {
        if m.name.is_empty() {
            return one(m, dest);
        }
    }
    let target = root.mount_target(dest, true)?;
    mount(
        Some("tmpfs"),
        fd_path(&target).as_str(),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=755"),
    )
    .ctx(|| "mount tmpfs for cgroups")?;
    for m in s.cgroup_mounts {
        one(m, &dest.join(&m.name))?;
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        let t = root.resolve(dest).ctx(|| "reopen cgroup tmpfs")?;
        mount(
            None::<&str>,
            fd_path(&t).as_str(),
            None::<&str>,
            MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC,
            Some("mode=755"),
        )
        .ctx(|| "remount cgroup tmpfs read-only")?;
    }
    Ok(())
}

fn default_devices() -> [(&'static str, u64, u64); 6] {
    [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
}

fn create_devices(s: &Setup, root: &Root) -> Result<()> {
    let listed = s
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().clone())
        .unwrap_or_default();
    for d in &listed {
        create_device(s, root, d)?;
    }
    for (path, major, minor) in default_devices() {
        if listed.iter().any(|d| d.path() == Path::new(path)) {
            continue;
        }
        let mut d = LinuxDevice::default();
        d.set_path(PathBuf::from(path));
        d.set_typ(LinuxDeviceType::C);
        d.set_major(major as i64);
        d.set_minor(minor as i64);
        d.set_file_mode(Some(0o666));
        d.set_uid(Some(0));
        d.set_gid(Some(0));
        create_device(s, root, &d)?;
    }
    // The symlinks every program expects in /dev.
    if let Ok(dev) = root.resolve(Path::new("/dev")) {
        let dev = nix::fcntl::openat(
            dev.as_fd(),
            ".",
            OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        );
        if let Ok(dev) = dev {
            for (name, target) in [
                ("fd", "/proc/self/fd"),
                ("stdin", "/proc/self/fd/0"),
                ("stdout", "/proc/self/fd/1"),
                ("stderr", "/proc/self/fd/2"),
            ] {
                match nix::unistd::symlinkat(target, dev.as_fd(), name) {
                    Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                    Err(e) => return Err(e).ctx(|| format!("symlink /dev/{name}")),
                }
            }
            let has_pts = s
                .spec
                .mounts()
                .iter()
                .flatten()
                .any(|m| m.destination() == Path::new("/dev/pts"));
            if has_pts {
                // /dev/ptmx must be the devpts instance's, not the host's.
                let _ = nix::unistd::unlinkat(
                    dev.as_fd(),
                    "ptmx",
                    nix::unistd::UnlinkatFlags::NoRemoveDir,
                );
                nix::unistd::symlinkat("pts/ptmx", dev.as_fd(), "ptmx")
                    .ctx(|| "symlink /dev/ptmx")?;
            }
        }
    }
    Ok(())
}

fn create_device(s: &Setup, root: &Root, d: &LinuxDevice) -> Result<()> {
    let path = d.path();
    let ctx = || format!("device {}", path.display());
    let name = path
        .file_name()
        .ok_or_else(|| Error::Other(format!("linux.devices: bad path {}", path.display())))?;
    let dir = root.mkdir_all(path.parent().unwrap_or(Path::new("/dev")))?;
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(Error::Other(format!(
                "linux.devices: {} has type 'a', which is only for cgroup rules",
                path.display()
            )))
        }
    };
    let mode = Mode::from_bits_truncate(d.file_mode().unwrap_or(0o666));
    let dev = nix::sys::stat::makedev(d.major() as u64, d.minor() as u64);
    let made = if s.in_userns {
        Err(nix::errno::Errno::EPERM)
    } else {
        mknodat(dir.as_fd(), name, kind, mode, dev)
    };
    match made {
        Ok(()) => {
            nix::unistd::fchownat(
                dir.as_fd(),
                name,
                d.uid().map(nix::unistd::Uid::from_raw),
                d.gid().map(nix::unistd::Gid::from_raw),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .ctx(ctx)?;
            // mknod applies the umask; set the mode exactly as asked.
            nix::sys::stat::fchmodat(
                dir.as_fd(),
                name,
                mode,
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )
            .ctx(ctx)?;
        }
        Err(nix::errno::Errno::EEXIST) => {}
        // Without CAP_MKNOD (a user namespace) bind the host's device node instead.
        Err(nix::errno::Errno::EPERM) => {
            let target = root.mount_target(path, false)?;
            mount(
                Some(path),
                fd_path(&target).as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .ctx(ctx)?;
        }
        Err(e) => return Err(e).ctx(ctx),
    }
    Ok(())
}

/// linux.rootfsPropagation as mount flags; None when unset.
fn root_propagation(spec: &Spec) -> Result<Option<MsFlags>> {
    match spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
    {
        None | Some("") => Ok(None),
        Some(p) => match parse_options(&[p.to_string()]).propagation.first() {
            Some(f) => Ok(Some(*f)),
            None => Err(Error::Other(format!(
                "linux.rootfsPropagation: unknown value {p:?}"
            ))),
        },
    }
}

/// Makes the mount that holds `path` private, in the container's mount namespace.
fn make_parent_mount_private(path: &Path) -> Result<()> {
    let info = cgroups::read_text(Path::new("/proc/self/mountinfo")).ctx(|| "read mountinfo")?;
    let mut best: Option<(&str, bool)> = None;
    for line in info.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        if f.len() < 5 {
            continue;
        }
        let mp = f[4];
        if path.starts_with(mp) && best.is_none_or(|(b, _)| mp.len() >= b.len()) {
            let shared = f[6..sep].iter().any(|o| o.starts_with("shared:"));
            best = Some((mp, shared));
        }
    }
    if let Some((mp, true)) = best {
        mount(
            None::<&str>,
            mp,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .ctx(|| format!("make {mp} private for pivot_root"))?;
    }
    Ok(())
}

/// Sets linux.rootfsPropagation on the new root; shared mounts cannot be pivoted into,
/// so this comes after pivot_root.
pub fn apply_root_propagation(spec: &Spec) -> Result<()> {
    if let Some(p) = root_propagation(spec)? {
        mount(None::<&str>, "/", None::<&str>, p, None::<&str>)
            .ctx(|| "apply linux.rootfsPropagation to /")?;
    }
    Ok(())
}

/// Makes the rootfs the process's root and detaches the old root.
pub fn pivot(rootfs: &Path, no_pivot: bool) -> Result<()> {
    if no_pivot {
        chdir(rootfs).ctx(|| "chdir rootfs")?;
        mount(
            Some(rootfs),
            "/",
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        )
        .ctx(|| "move rootfs to /")?;
        nix::unistd::chroot(".").ctx(|| "chroot")?;
        return chdir("/").ctx(|| "chdir /");
    }
    let flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let old = nix::fcntl::open("/", flags, Mode::empty()).ctx(|| "open /")?;
    let new = nix::fcntl::open(rootfs, flags, Mode::empty()).ctx(|| "open rootfs")?;
    fchdir(new.as_fd()).ctx(|| "chdir rootfs")?;
    pivot_root(".", ".").ctx(|| format!("pivot_root {}", rootfs.display()))?;
    fchdir(old.as_fd()).ctx(|| "chdir old root")?;
    // Keep the unmount of the old root from propagating to the host.
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .ctx(|| "make old root a slave")?;
    umount2(".", MntFlags::MNT_DETACH).ctx(|| "unmount old root")?;
    chdir("/").ctx(|| "chdir /")
}

/// After pivot_root: masked and read-only paths, then the read-only root.
pub fn finalize(spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    let root = Root::open(Path::new("/"))?;
    for p in linux
        .and_then(|l| l.readonly_paths().clone())
        .unwrap_or_default()
    {
        let Ok(fd) = root.resolve(Path::new(&p)) else {
            continue;
        };
        let tp = fd_path(&fd);
        mount(
            Some(tp.as_str()),
            tp.as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .ctx(|| format!("readonlyPaths {p}"))?;
        let fd = root
            .resolve(Path::new(&p))
            .ctx(|| format!("readonlyPaths {p}"))?;
        let tp = fd_path(&fd);
        remount_bind(
            &tp,
            MsFlags::MS_RDONLY
                | MsFlags::MS_REC
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC,
        )
        .or_else(|_| remount_bind(&tp, MsFlags::MS_RDONLY | MsFlags::MS_REC))
        .ctx(|| format!("readonlyPaths {p}"))?;
    }
    for p in linux
        .and_then(|l| l.masked_paths().clone())
        .unwrap_or_default()
    {
        let Ok(fd) = root.resolve(Path::new(&p)) else {
            continue;
        };
        let tp = fd_path(&fd);
        let is_dir = std::fs::metadata(&tp).map(|m| m.is_dir()).unwrap_or(false);
        let r = if is_dir {
            mount(
                Some("tmpfs"),
                tp.as_str(),
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None::<&str>,
            )
        } else {
            mount(
                Some("/dev/null"),
                tp.as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        };
        r.ctx(|| format!("maskedPaths {p}"))?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        remount_bind("/", MsFlags::MS_RDONLY).ctx(|| "remount / read-only")?;
    }
    Ok(())
}
