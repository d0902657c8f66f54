//! A container's files as an fd: its merged root, its upper directory, its image's root.
//!
//! A running (or paused) container's overlay is mounted at `<root>/containers/ID/rootfs`
//! on the host; that mount's root is used as it is. A stopped one has no mount, so its
//! layers and upper directory are stacked in a *detached* overlay
//! ([`image::snapshot::overlay_detached`]): it appears in no mount table and the kernel
//! drops it with the last fd, so no error path and no crash can leave it mounted.
//!
//! Either way the container's lock is held for as long as the view lives: the monitor's
//! cleanup cannot unmount a root we are reading (its unmount is not lazy), `start` cannot
//! mount a second overlay over the upper directory we have mounted, and `rm` waits.

use super::{FsError, Result};
use crate::container::{Engine, EngineError};
use crate::store::{Container, State};
use image::digest::Digest;
use nix::fcntl::{open, Flock, OFlag};
use nix::sys::stat::Mode;
use nix::sys::statfs::{fstatfs, OVERLAYFS_SUPER_MAGIC};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// A container under its lock, as recorded once the lock was taken.
pub struct Locked {
    pub container: Container,
    _lock: Flock<File>,
}

impl Locked {
    pub fn take(engine: &Engine, c: &Container) -> Result<Locked> {
        // Before the lock: reconcile takes it itself when it finds the monitor dead.
        let c = engine.reconcile(c.clone())?;
        let lock = engine.lock(&c.id)?;
        let container = engine
            .store
            .get(&c.id)?
            .ok_or_else(|| EngineError::NoSuchContainer(c.id.clone()))?;
        if container.state == State::Removing {
            return Err(FsError::Invalid(format!(
                "removal of container {} is in progress",
                container.id
            )));
        }
        Ok(Locked {
            container,
            _lock: lock,
        })
    }
}

/// The container's merged root, locked.
pub struct ContainerRoot {
    root: OwnedFd,
    /// Whether this is the running container's own mount (else a detached one).
    pub live: bool,
    pub container: Container,
    _locked: Locked,
}

impl ContainerRoot {
    /// Takes the container's lock and opens its root.
    pub fn open(engine: &Engine, c: &Container) -> Result<ContainerRoot> {
        let locked = Locked::take(engine, c)?;
        let c = &locked.container;
        let rootfs = engine.rootfs(&c.id);
        let dir = open_dir(&rootfs)?;
        let mounted = fstatfs(&dir)
            .map_err(super::io_err("statfs", rootfs.display()))?
            .filesystem_type()
            == OVERLAYFS_SUPER_MAGIC;
        let (root, live) = if mounted {
            (dir, true)
        } else if matches!(c.state, State::Running | State::Paused) {
            // Its overlay should be there: something unmounted it behind berth's back,
            // and a second overlay on an upper directory in use is never made. (A start
            // in progress mounts only under the lock we hold, after we are done.)
            return Err(FsError::Invalid(format!(
                "container {} is {} but its root is not mounted",
                c.id,
                c.state.docker_status()
            )));
        } else {
            let lowers = image_layers(engine, c)?;
            let cdir = engine.container_dir(&c.id);
            let (upper, work) = (cdir.join("upper"), cdir.join("work"));
            let fd = image::snapshot::overlay_detached(&lowers, Some((&upper, &work)), &rootfs)
                .map_err(image::images::ImageError::from)?;
            (fd, false)
        };
        Ok(ContainerRoot {
            root,
            live,
            container: c.clone(),
            _locked: locked,
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }
}

/// The snapshot directories of the container's image, top first.
pub fn image_layers(engine: &Engine, c: &Container) -> Result<Vec<PathBuf>> {
    let image = image_id(c)?;
    Ok(engine.images.rootfs_layers(&image)?)
}

pub fn image_id(c: &Container) -> Result<Digest> {
    c.image
        .parse()
        .map_err(|e| FsError::Invalid(format!("container {}: image id: {e}", c.id)))
}

/// The image's root as the container started from it: its layers in a detached read-only
/// overlay, or the one layer's directory.
pub fn image_root(engine: &Engine, c: &Container) -> Result<OwnedFd> {
    let lowers = image_layers(engine, c)?;
    if lowers.len() == 1 {
        return open_dir(&lowers[0]);
    }
    Ok(
        image::snapshot::overlay_detached(&lowers, None, Path::new(&c.image))
            .map_err(image::images::ImageError::from)?,
    )
}

/// The container's writable layer (the overlay's upper directory).
pub fn upper_dir(engine: &Engine, c: &Container) -> Result<OwnedFd> {
    open_dir(&engine.container_dir(&c.id).join("upper"))
}

/// A directory of berth's own (not a container path), read-only, not through a symlink.
fn open_dir(path: &Path) -> Result<OwnedFd> {
    open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(super::io_err("opening", path.display()))
}
