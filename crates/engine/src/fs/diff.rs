//! `docker diff`: what the container changed, from its overlay upper directory.
//!
//! Each name in the upper directory is compared with the image's own tree (its layers in
//! a read-only overlay, walked in step):
//! - a whiteout (character device 0/0) is `D` when the image has that name;
//! - an opaque directory (`trusted.overlay.opaque=y`) hides the image's directory: every
//!   name the image has there and the upper directory does not is `D`;
//! - anything else is `A` when the image does not have it, `C` when it does; a directory
//!   the image has counts as changed only when its mode or owner differ or something
//!   below it changed (the parent-directory `C` lines Docker prints).
//!
//! Mount points the runtime made for a container whose image lacks them (`/proc`, `/sys`,
//! `/dev`, `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`), while still empty, are not
//! changes: Docker keeps them in a layer of their own under the container's. The output
//! is sorted by path, as Docker sorts it.

use super::view::{image_root, upper_dir, ContainerRoot};
use super::walk::{get_xattr, is_whiteout, list_dir, OPAQUE_XATTR};
use super::{io_err, Result};
use crate::container::Engine;
use crate::store::Container;
use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, FileStat, Mode};
use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Changed,
    Added,
    Deleted,
}

/// One line of `docker diff`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub path: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = match self.kind {
            ChangeKind::Changed => 'C',
            ChangeKind::Added => 'A',
            ChangeKind::Deleted => 'D',
        };
        write!(f, "{k} {}", self.path)
    }
}

/// What the runtime creates in the upper directory as mount points (Docker's "init
/// layer"): left out of `diff` and `commit` while they are empty and the image lacks them.
pub const MOUNT_STUBS: &[&str] = &[
    "/.dockerenv",
    "/dev",
    "/dev/console",
    "/dev/mqueue",
    "/dev/pts",
    "/dev/shm",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/mtab",
    "/etc/resolv.conf",
    "/proc",
    "/sys",
];

/// True for a mount point the runtime made: a stub path, empty, absent from the image.
pub fn is_mount_stub(path: &str, st: &FileStat, in_image: bool) -> bool {
    if in_image || !MOUNT_STUBS.contains(&path) {
        return false;
    }
    let ty = super::walk::file_type(st);
    (ty == nix::sys::stat::SFlag::S_IFREG && st.st_size == 0)
        || ty == nix::sys::stat::SFlag::S_IFDIR
}

/// `docker diff` of container `c`, sorted by path.
pub fn diff(engine: &Engine, c: &Container) -> Result<Vec<Change>> {
    let view = ContainerRoot::open(engine, c)?;
    let upper = upper_dir(engine, &view.container)?;
    let image = image_root(engine, &view.container)?;
    let mut out = Vec::new();
    compare_dir(upper.as_fd(), Some(image.as_fd()), "", false, &mut out)?;
    out.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    Ok(out)
}

fn lstat(dir: BorrowedFd, name: &OsStr) -> nix::Result<Option<FileStat>> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT | Errno::ENOTDIR) => Ok(None),
        Err(e) => Err(e),
    }
}

fn open_sub(dir: BorrowedFd, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Whether the image has `name` in `dir` (its whiteouts are absences).
fn image_has(dir: Option<BorrowedFd>, name: &OsStr, shown: &str) -> Result<Option<FileStat>> {
    let Some(dir) = dir else {
        return Ok(None);
    };
    let st = lstat(dir, name).map_err(io_err("lstat", shown))?;
    Ok(st.filter(|s| !is_whiteout(s)))
}

/// Compares upper directory `upper` (at `path`) with the image's `image` there; pushes
/// the changes found below it and says whether there were any.
fn compare_dir(
    upper: BorrowedFd,
    image: Option<BorrowedFd>,
    path: &str,
    opaque: bool,
    out: &mut Vec<Change>,
) -> Result<bool> {
    let shown = if path.is_empty() { "/" } else { path };
    let names = match list_dir(upper) {
        Ok(n) => n,
        Err(Errno::ENOENT) => return Ok(false),
        Err(e) => return Err(io_err("listing", shown)(e)),
    };
    let mut changed = false;
    if opaque {
        if let Some(image) = image {
            let present: BTreeSet<&OsString> = names.iter().collect();
            for name in list_dir(image).map_err(io_err("listing", shown))? {
                let st = lstat(image, &name).map_err(io_err("lstat", shown))?;
                if !present.contains(&name) && st.is_some_and(|s| !is_whiteout(&s)) {
                    out.push(Change {
                        kind: ChangeKind::Deleted,
                        path: format!("{path}/{}", name.to_string_lossy()),
                    });
                    changed = true;
                }
            }
        }
    }
    for name in &names {
        let child = format!("{path}/{}", name.to_string_lossy());
        // Gone since the listing: a running container removed it.
        let Some(st) = lstat(upper, name).map_err(io_err("lstat", &child))? else {
            continue;
        };
        let before = image_has(image, name, &child)?;
        if is_whiteout(&st) {
            if before.is_some() {
                out.push(Change {
                    kind: ChangeKind::Deleted,
                    path: child,
                });
                changed = true;
            }
            continue;
        }
        if is_mount_stub(&child, &st, before.is_some()) && stub_is_empty(upper, name, &st) {
            continue;
        }
        if !super::resolve::is_dir(&st) {
            let kind = if before.is_some() {
                ChangeKind::Changed
            } else {
                ChangeKind::Added
            };
            out.push(Change { kind, path: child });
            changed = true;
            continue;
        }
        let sub = match open_sub(upper, name) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(io_err("opening", &child)(e)),
        };
        let sub_opaque = get_xattr(sub.as_fd(), OsStr::new("."), OPAQUE_XATTR)
            .map_err(io_err("reading xattrs of", &child))?
            .is_some_and(|v| v == b"y");
        let image_sub = match (&before, image) {
            (Some(b), Some(image)) if super::resolve::is_dir(b) => {
                Some(open_sub(image, name).map_err(io_err("opening image's", &child))?)
            }
            _ => None,
        };
        let at = out.len();
        let inner = compare_dir(
            sub.as_fd(),
            image_sub.as_ref().map(|f| f.as_fd()),
            &child,
            sub_opaque,
            out,
        )?;
        let kind = match &before {
            None if !inner && is_stub_parent(&child) => continue,
            None => Some(ChangeKind::Added),
            Some(b) if !super::resolve::is_dir(b) => Some(ChangeKind::Changed),
            Some(b)
                if inner
                    || b.st_mode != st.st_mode
                    || b.st_uid != st.st_uid
                    || b.st_gid != st.st_gid =>
            {
                Some(ChangeKind::Changed)
            }
            Some(_) => None,
        };
        if let Some(kind) = kind {
            out.insert(at, Change { kind, path: child });
            changed = true;
        }
    }
    Ok(changed)
}

/// A stub directory counts as empty when it holds nothing (the runtime mounts over it,
/// so the container's writes never land in it).
fn stub_is_empty(dir: BorrowedFd, name: &OsStr, st: &FileStat) -> bool {
    if !super::resolve::is_dir(st) {
        return true;
    }
    open_sub(dir, name)
        .and_then(|fd| list_dir(fd.as_fd()))
        .is_ok_and(|names| names.is_empty())
}

/// A directory the runtime makes to hold mount points (`/etc`, `/dev`) when the image
/// lacks it.
fn is_stub_parent(path: &str) -> bool {
    MOUNT_STUBS.iter().any(|s| {
        s.strip_prefix(path)
            .is_some_and(|rest| rest.starts_with('/'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::stat::{makedev, mknod, SFlag};
    use std::path::Path;

    fn fd(p: &Path) -> OwnedFd {
        nix::fcntl::open(p, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap()
    }

    fn set_opaque(p: &Path) {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: both strings are NUL-terminated; the value is a live one-byte slice.
        let rc = unsafe {
            libc::lsetxattr(
                c.as_ptr(),
                OPAQUE_XATTR.as_ptr(),
                b"y".as_ptr().cast(),
                1,
                0,
            )
        };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    }

    #[test]
    fn upper_against_image() {
        let tmp = tempfile::tempdir().unwrap();
        let (img, up) = (tmp.path().join("image"), tmp.path().join("upper"));
        for d in ["etc", "d/sub", "keep", "var/lib"] {
            std::fs::create_dir_all(img.join(d)).unwrap();
        }
        for f in [
            "etc/passwd",
            "etc/gone",
            "d/old",
            "d/sub/x",
            "keep/k",
            "var/lib/f",
        ] {
            std::fs::write(img.join(f), "x").unwrap();
        }
        for d in ["etc", "d", "keep", "new/deep", "proc", "var/lib"] {
            std::fs::create_dir_all(up.join(d)).unwrap();
        }
        std::fs::write(up.join("etc/passwd"), "changed").unwrap();
        std::fs::write(up.join("etc/hosts"), "").unwrap();
        mknod(
            &up.join("etc/gone"),
            SFlag::S_IFCHR,
            Mode::empty(),
            makedev(0, 0),
        )
        .unwrap();
        mknod(
            &up.join("nothere"),
            SFlag::S_IFCHR,
            Mode::empty(),
            makedev(0, 0),
        )
        .unwrap();
        set_opaque(&up.join("d"));
        std::fs::write(up.join("d/new"), "n").unwrap();
        std::fs::write(up.join("new/deep/f"), "f").unwrap();
        std::fs::set_permissions(
            up.join("var/lib"),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        // `keep` was copied up without a change below it: not a change.
        let mut out = Vec::new();
        let (u, i) = (fd(&up), fd(&img));
        compare_dir(u.as_fd(), Some(i.as_fd()), "", false, &mut out).unwrap();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        let lines: Vec<String> = out.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            lines,
            [
                "C /d",
                "A /d/new",
                "D /d/old",
                "D /d/sub",
                "C /etc",
                "D /etc/gone",
                "C /etc/passwd",
                "A /new",
                "A /new/deep",
                "A /new/deep/f",
                "C /var",
                "C /var/lib",
            ]
        );
    }
}
