//! Network namespaces kept alive by a bind mount of their nsfs file, as `ip netns` does,
//! so any OCI runtime (berth-runtime, runc, crun) can join them by path.
//!
//! The namespace is made by a short-lived thread: `unshare(CLONE_NEWNET)` moves only the
//! calling thread, so the process itself never changes namespace. The thread also opens a
//! route socket, which stays bound to the new namespace after the thread is gone: the
//! caller configures the inside through it.

use crate::rtnl::Rtnl;
use crate::Error;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use std::path::{Path, PathBuf};

fn ns_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(nix::errno::Errno) -> Error + 'a {
    move |e| Error::Netns {
        what,
        path: path.to_path_buf(),
        source: std::io::Error::from(e),
    }
}

/// Creates a new network namespace pinned at `path` and returns a route socket inside
/// it. On error nothing is left at `path`.
pub fn create(path: &Path) -> Result<Rtnl, Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| Error::Netns {
            what: "creating the directory of",
            path: path.to_path_buf(),
            source,
        })?;
    }
    // A crash may have left a pinned namespace here (the container id is reused only
    // by a restart of the same container): release it first.
    remove(path)?;
    let target: PathBuf = path.to_path_buf();
    let worker = std::thread::Builder::new()
        .name("berth-netns".into())
        .spawn(move || -> Result<Rtnl, Error> {
            std::fs::File::options()
                .write(true)
                .create_new(true)
                .open(&target)
                .map_err(|source| Error::Netns {
                    what: "creating",
                    path: target.clone(),
                    source,
                })?;
            let pinned = unshare(CloneFlags::CLONE_NEWNET)
                .map_err(ns_err("unsharing a network namespace for", &target))
                .and_then(|()| {
                    mount(
                        Some("/proc/thread-self/ns/net"),
                        &target,
                        None::<&str>,
                        MsFlags::MS_BIND,
                        None::<&str>,
                    )
                    .map_err(ns_err("bind-mounting the network namespace on", &target))
                });
            if let Err(e) = pinned {
                let _ = std::fs::remove_file(&target);
                return Err(e);
            }
            match Rtnl::open() {
                Ok(rtnl) => Ok(rtnl),
                Err(e) => {
                    let _ = remove(&target);
                    Err(e)
                }
            }
        })
        .map_err(|source| Error::Netns {
            what: "starting a thread for",
            path: path.to_path_buf(),
            source,
        })?;
    worker.join().unwrap_or_else(|_| {
        Err(Error::Netns {
            what: "creating (the thread panicked)",
            path: path.to_path_buf(),
            source: std::io::Error::other("panic"),
        })
    })
}

/// A route socket inside the existing namespace pinned at `path` (for an interface
/// added to a running container: `network connect`). A short-lived thread joins the
/// namespace and opens it, as [`create`] does.
pub fn enter(path: &Path) -> Result<Rtnl, Error> {
    let ns = std::fs::File::open(path).map_err(|source| Error::Netns {
        what: "opening",
        path: path.to_path_buf(),
        source,
    })?;
    let target = path.to_path_buf();
    let worker = std::thread::Builder::new()
        .name("berth-netns".into())
        .spawn(move || -> Result<Rtnl, Error> {
            nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)
                .map_err(ns_err("entering the network namespace", &target))?;
            Rtnl::open()
        })
        .map_err(|source| Error::Netns {
            what: "starting a thread for",
            path: path.to_path_buf(),
            source,
        })?;
    worker.join().unwrap_or_else(|_| {
        Err(Error::Netns {
            what: "entering (the thread panicked)",
            path: path.to_path_buf(),
            source: std::io::Error::other("panic"),
        })
    })
}

/// Unpins and deletes the namespace file at `path`; nothing there is not an error.
pub fn remove(path: &Path) -> Result<(), Error> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(ns_err("unmounting", path)(e)),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Netns {
            what: "removing",
            path: path.to_path_buf(),
            source,
        }),
    }
}
