//! An overlay upper directory put into the form of an unpacked layer, so that it can become
//! that layer's snapshot without the layer being unpacked again ([`Snapshots::adopt`]).
//!
//! An upper directory already holds its layer the way overlayfs stacks it: whiteouts are
//! character devices 0/0 and opaque directories carry `trusted.overlay.opaque=y`, exactly
//! what [`crate::unpack`] makes of `.wh.` entries. What differs is overlayfs's bookkeeping
//! (`trusted.overlay.origin`, `impure`, …, which would steer an overlay that stacks the
//! directory as a lower one; the layer tar leaves them out) and sockets (not in a layer).
//! Both are removed here. A redirected directory or a metacopy file (an upper that only
//! makes sense over its old lowers) cannot be adopted: [`prepare`] says so and leaves the
//! caller to unpack the layer from its blob instead.
//!
//! With `sync`, file data is flushed to disk as in an unpack (writeback of our files only,
//! no syncfs); otherwise the snapshot's marker limits its trust to the current boot
//! (snapshot.rs, `adopt`).
//!
//! [`Snapshots::adopt`]: crate::snapshot::Snapshots::adopt

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstatat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::unpack::Writeback;
use crate::xattr::{Node, OVERLAY_PREFIX};

const OPAQUE: &[u8] = b"trusted.overlay.opaque";
/// Xattrs that make an upper entry depend on the lower layers it was made over.
const NOT_ADOPTABLE: [&[u8]; 2] = [b"trusted.overlay.redirect", b"trusted.overlay.metacopy"];

/// Why a directory was not put into snapshot form.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// It depends on the lower layers it was written over (redirect_dir or metacopy).
    #[error("{path}: has overlayfs's {xattr}, which needs the layers it was written over")]
    Dependent { path: String, xattr: String },
    #[error("{path}: {what}: {source}")]
    Io {
        path: String,
        what: &'static str,
        source: io::Error,
    },
}

fn failed<'a>(path: &'a str, what: &'static str) -> impl FnOnce(Errno) -> PrepareError + 'a {
    move |e| PrepareError::Io {
        path: path.to_string(),
        what,
        source: e.into(),
    }
}

/// Puts the upper directory `dir` into the form [`crate::unpack`] gives its layer: drops
/// overlayfs's own xattrs (all but `opaque=y`) and sockets, gives the root the mode of an
/// unpacked snapshot's root (0755), and with `sync` waits until every file's data is on
/// disk.
pub fn prepare(dir: &Path, sync: bool) -> Result<(), PrepareError> {
    let shown = dir.display().to_string();
    let root = nix::fcntl::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(failed(&shown, "opening"))?;
    fchmod(&root, Mode::from_bits_truncate(0o755)).map_err(failed(&shown, "chmod"))?;
    clean_xattrs(&Node::Fd(root.as_fd()), "/")?;
    let mut writeback = Writeback::new(sync);
    // Directories still to visit, with their path for messages.
    let mut todo: Vec<(OwnedFd, String)> = vec![(root, String::new())];
    while let Some((dir, path)) = todo.pop() {
        for name in names(dir.as_fd()).map_err(failed(&path, "listing"))? {
            let shown = format!("{path}/{}", name.to_string_lossy());
            let st = fstatat(&dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(failed(&shown, "lstat"))?;
            match kind(&st) {
                SFlag::S_IFSOCK => {
                    unlinkat(&dir, name.as_os_str(), UnlinkatFlags::NoRemoveDir)
                        .map_err(failed(&shown, "removing socket"))?;
                }
                SFlag::S_IFDIR => {
                    let sub = openat(
                        &dir,
                        name.as_os_str(),
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(failed(&shown, "opening"))?;
                    clean_xattrs(&Node::Fd(sub.as_fd()), &shown)?;
                    todo.push((sub, shown));
                }
                SFlag::S_IFREG if sync => {
                    let file = openat(
                        &dir,
                        name.as_os_str(),
                        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(failed(&shown, "opening"))?;
                    clean_xattrs(&Node::Fd(file.as_fd()), &shown)?;
                    writeback
                        .push(File::from(file))
                        .map_err(|e| PrepareError::Io {
                            path: shown.clone(),
                            what: "writing to disk",
                            source: e,
                        })?;
                }
                // Regular files too when their data need not be synced: no open.
                _ => clean_xattrs(
                    &Node::at(dir.as_fd(), &name).map_err(failed(&shown, "naming"))?,
                    &shown,
                )?,
            }
        }
    }
    writeback.wait().map_err(|e| PrepareError::Io {
        path: dir.display().to_string(),
        what: "writing file contents to disk",
        source: e,
    })
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

fn names(dir: BorrowedFd) -> nix::Result<Vec<OsString>> {
    let mut listing = nix::dir::Dir::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut out = Vec::new();
    for item in listing.iter() {
        let name = item?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            out.push(OsStr::from_bytes(&name).to_os_string());
        }
    }
    Ok(out)
}

/// Removes overlayfs's xattrs from one node, keeping `opaque=y`; refuses the ones that
/// tie it to its lower layers.
fn clean_xattrs(node: &Node, shown: &str) -> Result<(), PrepareError> {
    for key in node.names().map_err(failed(shown, "listing xattrs"))? {
        let name = key.as_bytes();
        if !name.starts_with(OVERLAY_PREFIX) {
            continue;
        }
        if NOT_ADOPTABLE.contains(&name) {
            return Err(PrepareError::Dependent {
                path: shown.to_string(),
                xattr: String::from_utf8_lossy(name).into_owned(),
            });
        }
        if name == OPAQUE && matches!(node.get(&key), Ok(Some(v)) if v == b"y") {
            continue;
        }
        node.remove(&key)
            .map_err(failed(shown, "removing an overlayfs xattr"))?;
    }
    Ok(())
}
