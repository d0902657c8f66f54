//! Copy-up: when an empty volume is first mounted where the image has a directory, Docker
//! fills the volume with that directory (files, directories, symlinks, devices, fifos, hard
//! links; owner, mode, xattrs and times; the directory's own metadata goes onto the volume's
//! root).
//!
//! The source is the image, so it is hostile. The mount target is resolved with
//! openat2(RESOLVE_IN_ROOT) under the container's mounted rootfs, as the runtime resolves it
//! for the mount itself, so symlinks on the way (`/data -> /etc`, `../../..`) stay inside the
//! rootfs. Below it every directory is opened with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS and
//! every entry with O_NOFOLLOW: symlinks are copied as symlinks and never followed.
//!
//! The destination may be shared with a running container that could race the copy, so it
//! is written the same way: relative to directory fds opened without following symlinks,
//! new files with O_EXCL | O_NOFOLLOW, metadata set through fds or with AT_SYMLINK_NOFOLLOW.
//!
//! The walk is iterative and holds a few fds at a time, so a deep hostile tree exhausts
//! neither the stack nor the fd table (paths past PATH_MAX fail with ENAMETOOLONG).

use nix::errno::Errno;
use nix::fcntl::{open, openat, openat2, readlinkat, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstat, fstatat, futimens, mkdirat, mknodat, utimensat, FchmodatFlags,
    FileStat, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, Gid, Uid};
use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What a copy-up did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Copied,
    /// The volume already has content: it is left alone.
    NotEmpty,
    /// Nothing at the target in the image, or not a directory: nothing to copy.
    NoSource,
}

#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {source}")]
pub struct CopyError {
    pub what: &'static str,
    /// The path in the container.
    pub path: String,
    pub source: Errno,
}

/// How often openat2 is retried when RESOLVE_IN_ROOT reports a concurrent rename (EAGAIN).
const RESOLVE_RETRIES: usize = 64;

/// xattrs overlayfs acts on; they never travel.
const OVERLAY_XATTR_PREFIX: &[u8] = b"trusted.overlay.";

/// Copies directory `target` of the container's rootfs (mounted at `rootfs`) into `volume`,
/// an existing directory, if `volume` is empty. On an error after writing began, whatever
/// was copied is removed again, so the volume is left as empty as it was found.
pub fn copy_up(rootfs: &Path, target: &str, volume: &Path) -> Result<Outcome, CopyError> {
    let err = |what, source| CopyError {
        what,
        path: target.to_string(),
        source,
    };
    let root = open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err("opening the rootfs for", e))?;
    let rel = Path::new(target.trim_start_matches('/'));
    let in_root = ResolveFlag::RESOLVE_IN_ROOT
        | ResolveFlag::RESOLVE_NO_MAGICLINKS
        | ResolveFlag::RESOLVE_NO_XDEV;
    let src = match resolve(
        root.as_fd(),
        rel,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        in_root,
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(Outcome::NoSource),
        Err(e) => return Err(err("resolving in the image", e)),
    };
    let dst = open(
        volume,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| CopyError {
        what: "opening volume directory",
        path: volume.display().to_string(),
        source: e,
    })?;
    if !entries(dst.as_fd())
        .map_err(|e| err("listing the volume for", e))?
        .is_empty()
    {
        return Ok(Outcome::NotEmpty);
    }
    let mut copy = Copy {
        target: target.trim_end_matches('/').to_string(),
        src,
        dst,
        links: HashMap::new(),
        dirs: Vec::new(),
    };
    match copy.run() {
        Ok(()) => Ok(Outcome::Copied),
        Err(e) => {
            clear(copy.dst.as_fd());
            Err(e)
        }
    }
}

struct Copy {
    /// The mount target, for messages.
    target: String,
    src: OwnedFd,
    dst: OwnedFd,
    /// Files with more than one link already copied, by (device, inode) of the source:
    /// later names become hard links to the first copy.
    links: HashMap<(u64, u64), PathBuf>,
    /// Directories copied, with their source times, set once their content is in place.
    dirs: Vec<(PathBuf, FileStat)>,
}

impl Copy {
    fn run(&mut self) -> Result<(), CopyError> {
        let mut pending = vec![PathBuf::new()];
        while let Some(dir) = pending.pop() {
            let (sdir, ddir) = if dir.as_os_str().is_empty() {
                let dup = |fd: &OwnedFd| fd.try_clone().map_err(io_errno);
                (
                    dup(&self.src).map_err(self.failed(&dir, "opening"))?,
                    dup(&self.dst).map_err(self.failed(&dir, "opening"))?,
                )
            } else {
                (
                    beneath(self.src.as_fd(), &dir).map_err(self.failed(&dir, "opening"))?,
                    beneath(self.dst.as_fd(), &dir)
                        .map_err(self.failed(&dir, "opening the copy of"))?,
                )
            };
            let names = entries(sdir.as_fd()).map_err(self.failed(&dir, "listing"))?;
            for name in names {
                let path = dir.join(&name);
                if self.entry(sdir.as_fd(), ddir.as_fd(), &name, &path)? {
                    pending.push(path);
                }
            }
        }
        // Deepest first: creating entries in a directory changes its times.
        for (dir, st) in std::mem::take(&mut self.dirs).iter().rev() {
            let fd =
                beneath(self.dst.as_fd(), dir).map_err(self.failed(dir, "opening the copy of"))?;
            futimens(&fd, &atime(st), &mtime(st)).map_err(self.failed(dir, "setting times of"))?;
        }
        // The directory itself: its metadata goes onto the volume's root.
        let st = fstat(&self.src).map_err(self.failed(Path::new(""), "reading"))?;
        let root = Path::new("");
        fchown(&self.dst, Some(uid(&st)), Some(gid(&st)))
            .map_err(self.failed(root, "setting owner of"))?;
        fchmod(&self.dst, mode(&st)).map_err(self.failed(root, "setting mode of"))?;
        copy_xattrs(Node::Fd(self.src.as_fd()), Node::Fd(self.dst.as_fd()))
            .map_err(self.failed(root, "copying xattrs of"))?;
        futimens(&self.dst, &atime(&st), &mtime(&st)).map_err(self.failed(root, "setting times of"))
    }

    /// Copies one entry; true if it is a directory whose content is still to copy.
    fn entry(
        &mut self,
        sdir: BorrowedFd,
        ddir: BorrowedFd,
        name: &OsStr,
        path: &Path,
    ) -> Result<bool, CopyError> {
        let st = fstatat(sdir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(self.failed(path, "reading"))?;
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFDIR {
            self.dir(sdir, ddir, name, path, &st)?;
            return Ok(true);
        }
        if kind == SFlag::S_IFSOCK {
            // A socket is only meaningful to the process that bound it (tar skips them too).
            return Ok(false);
        }
        let key = (st.st_dev, st.st_ino);
        if st.st_nlink > 1 {
            if let Some(first) = self.links.get(&key) {
                let (parent, first_name) = split(first);
                let pfd = if parent.as_os_str().is_empty() {
                    self.dst.try_clone().map_err(io_errno)
                } else {
                    beneath(self.dst.as_fd(), parent)
                }
                .map_err(self.failed(path, "linking"))?;
                linkat(&pfd, first_name, ddir, name, AtFlags::empty())
                    .map_err(self.failed(path, "linking"))?;
                return Ok(false);
            }
        }
        if kind == SFlag::S_IFREG {
            self.file(sdir, ddir, name, path)?;
        } else if kind == SFlag::S_IFLNK {
            let to = readlinkat(sdir, name).map_err(self.failed(path, "reading link"))?;
            symlinkat(to.as_os_str(), ddir, name).map_err(self.failed(path, "creating symlink"))?;
            self.meta_at(sdir, ddir, name, path, &st, false)?;
        } else {
            // Character and block devices, fifos.
            mknodat(
                ddir,
                name,
                kind,
                Mode::from_bits_truncate(0o600),
                st.st_rdev,
            )
            .map_err(self.failed(path, "creating"))?;
            self.meta_at(sdir, ddir, name, path, &st, true)?;
        }
        if st.st_nlink > 1 {
            self.links.insert(key, path.to_path_buf());
        }
        Ok(false)
    }

    fn dir(
        &mut self,
        sdir: BorrowedFd,
        ddir: BorrowedFd,
        name: &OsStr,
        path: &Path,
        st: &FileStat,
    ) -> Result<(), CopyError> {
        mkdirat(ddir, name, Mode::from_bits_truncate(0o700))
            .map_err(self.failed(path, "creating directory"))?;
        let src =
            open_nofollow(sdir, name, OFlag::O_DIRECTORY).map_err(self.failed(path, "opening"))?;
        let dst = open_nofollow(ddir, name, OFlag::O_DIRECTORY)
            .map_err(self.failed(path, "opening the copy of"))?;
        self.meta_fd(src.as_fd(), dst.as_fd(), path, st)?;
        self.dirs.push((path.to_path_buf(), *st));
        Ok(())
    }

    fn file(
        &mut self,
        sdir: BorrowedFd,
        ddir: BorrowedFd,
        name: &OsStr,
        path: &Path,
    ) -> Result<(), CopyError> {
        let src = open_nofollow(sdir, name, OFlag::O_NOCTTY | OFlag::O_NONBLOCK)
            .map_err(self.failed(path, "opening"))?;
        // The file as opened, not as listed a moment earlier.
        let st = fstat(&src).map_err(self.failed(path, "reading"))?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return Err(self.failed(path, "copying")(Errno::EAGAIN));
        }
        let dst = openat(
            ddir,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(self.failed(path, "creating"))?;
        let mut from = File::from(src);
        let mut to = File::from(dst);
        std::io::copy(&mut from, &mut to).map_err(|e| self.failed(path, "copying")(io_errno(e)))?;
        self.meta_fd(from.as_fd(), to.as_fd(), path, &st)?;
        futimens(&to, &atime(&st), &mtime(&st)).map_err(self.failed(path, "setting times of"))
    }

    /// Owner, then mode (chown clears setuid bits), then xattrs (chown also drops
    /// security.capability), for something open on both sides.
    fn meta_fd(
        &self,
        src: BorrowedFd,
        dst: BorrowedFd,
        path: &Path,
        st: &FileStat,
    ) -> Result<(), CopyError> {
        fchown(dst, Some(uid(st)), Some(gid(st))).map_err(self.failed(path, "setting owner of"))?;
        fchmod(dst, mode(st)).map_err(self.failed(path, "setting mode of"))?;
        copy_xattrs(Node::Fd(src), Node::Fd(dst)).map_err(self.failed(path, "copying xattrs of"))
    }

    /// The same for a symlink or device node, named through its parent's fd.
    fn meta_at(
        &self,
        sdir: BorrowedFd,
        ddir: BorrowedFd,
        name: &OsStr,
        path: &Path,
        st: &FileStat,
        chmod: bool,
    ) -> Result<(), CopyError> {
        fchownat(
            ddir,
            name,
            Some(uid(st)),
            Some(gid(st)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(self.failed(path, "setting owner of"))?;
        if chmod {
            fchmodat(ddir, name, mode(st), FchmodatFlags::NoFollowSymlink)
                .map_err(self.failed(path, "setting mode of"))?;
        }
        copy_xattrs(Node::At(sdir, name), Node::At(ddir, name))
            .map_err(self.failed(path, "copying xattrs of"))?;
        utimensat(
            ddir,
            name,
            &atime(st),
            &mtime(st),
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(self.failed(path, "setting times of"))
    }

    fn failed<'a>(
        &'a self,
        path: &'a Path,
        what: &'static str,
    ) -> impl FnOnce(Errno) -> CopyError + 'a {
        move |source| CopyError {
            what,
            path: if path.as_os_str().is_empty() {
                self.target.clone()
            } else {
                format!("{}/{}", self.target, path.display())
            },
            source,
        }
    }
}

fn split(path: &Path) -> (&Path, &OsStr) {
    (
        path.parent().unwrap_or(Path::new("")),
        path.file_name().unwrap_or(OsStr::new(".")),
    )
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

fn uid(st: &FileStat) -> Uid {
    Uid::from_raw(st.st_uid)
}

fn gid(st: &FileStat) -> Gid {
    Gid::from_raw(st.st_gid)
}

fn mode(st: &FileStat) -> Mode {
    Mode::from_bits_truncate(st.st_mode & 0o7777)
}

fn atime(st: &FileStat) -> TimeSpec {
    TimeSpec::new(st.st_atime, st.st_atime_nsec)
}

fn mtime(st: &FileStat) -> TimeSpec {
    TimeSpec::new(st.st_mtime, st.st_mtime_nsec)
}

fn resolve(
    root: BorrowedFd,
    path: &Path,
    flags: OFlag,
    resolve: ResolveFlag,
) -> nix::Result<OwnedFd> {
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(resolve);
    let mut tries = 0;
    loop {
        match openat2(root, path, how) {
            Err(Errno::EAGAIN) if tries < RESOLVE_RETRIES => tries += 1,
            result => return result,
        }
    }
}

/// A directory below `root`, refusing any symlink, magic link or mount on the way.
fn beneath(root: BorrowedFd, dir: &Path) -> nix::Result<OwnedFd> {
    resolve(
        root,
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
        ResolveFlag::RESOLVE_BENEATH
            | ResolveFlag::RESOLVE_NO_SYMLINKS
            | ResolveFlag::RESOLVE_NO_MAGICLINKS
            | ResolveFlag::RESOLVE_NO_XDEV,
    )
}

fn open_nofollow(dir: BorrowedFd, name: &OsStr, extra: OFlag) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | extra,
        Mode::empty(),
    )
}

/// The names in a directory, `.` and `..` left out, sorted (so hard links and errors do
/// not depend on readdir order).
fn entries(dir: BorrowedFd) -> nix::Result<Vec<OsString>> {
    crate::fs::walk::list_dir(dir)
}

/// Removes everything in `dir` (a failed copy's partial content), never following
/// symlinks: std's remove_dir_all works with *at calls on Linux.
fn clear(dir: BorrowedFd) {
    let Ok(names) = entries(dir) else { return };
    let base = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    for name in names {
        let path = base.join(&name);
        let is_dir = fstatat(dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|st| {
            SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
        });
        let _ = if is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
}

/// Something whose xattrs are read or written: an open file or directory, or a symlink or
/// device named through its parent directory's fd (`/proc/self/fd/N/NAME` with the l*
/// calls, which resolve the fd and do not follow NAME).
#[derive(Clone, Copy)]
enum Node<'a> {
    Fd(BorrowedFd<'a>),
    At(BorrowedFd<'a>, &'a OsStr),
}

impl Node<'_> {
    fn path(&self) -> nix::Result<Option<CString>> {
        match self {
            Node::Fd(_) => Ok(None),
            Node::At(dir, name) => {
                let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
                p.extend_from_slice(name.as_bytes());
                CString::new(p).map(Some).map_err(|_| Errno::EINVAL)
            }
        }
    }

    /// Fills `buf` by calling `f(ptr, len)` twice: once for the size, once for the data
    /// (again if it grew in between).
    fn read_sized(mut f: impl FnMut(*mut libc::c_void, usize) -> isize) -> nix::Result<Vec<u8>> {
        loop {
            let size = f(std::ptr::null_mut(), 0);
            let size = usize::try_from(size).map_err(|_| Errno::last())?;
            let mut buf = vec![0u8; size];
            if size == 0 {
                return Ok(buf);
            }
            let got = f(buf.as_mut_ptr().cast(), buf.len());
            match usize::try_from(got) {
                Ok(n) => {
                    buf.truncate(n);
                    return Ok(buf);
                }
                Err(_) if Errno::last() == Errno::ERANGE => continue,
                Err(_) => return Err(Errno::last()),
            }
        }
    }

    fn list(&self) -> nix::Result<Vec<u8>> {
        let path = self.path()?;
        Self::read_sized(|ptr, len| match (self, &path) {
            // SAFETY: ptr/len describe a live buffer (or are null/0 to ask for the size);
            // the fd is open for the call.
            (Node::Fd(fd), _) => unsafe { libc::flistxattr(fd.as_raw_fd(), ptr.cast(), len) },
            // SAFETY: as above, and path is a NUL-terminated string that outlives the call.
            (_, Some(p)) => unsafe { libc::llistxattr(p.as_ptr(), ptr.cast(), len) },
            (_, None) => -1,
        })
    }

    fn get(&self, key: &CString) -> nix::Result<Vec<u8>> {
        let path = self.path()?;
        Self::read_sized(|ptr, len| match (self, &path) {
            // SAFETY: key is NUL-terminated; ptr/len describe a live buffer or are null/0.
            (Node::Fd(fd), _) => unsafe { libc::fgetxattr(fd.as_raw_fd(), key.as_ptr(), ptr, len) },
            // SAFETY: as above, and path is a NUL-terminated string that outlives the call.
            (_, Some(p)) => unsafe { libc::lgetxattr(p.as_ptr(), key.as_ptr(), ptr, len) },
            (_, None) => -1,
        })
    }

    fn set(&self, key: &CString, value: &[u8]) -> nix::Result<()> {
        let path = self.path()?;
        let rc = match (self, &path) {
            // SAFETY: key is NUL-terminated and value a live slice passed with its length;
            // fsetxattr only reads them.
            (Node::Fd(fd), _) => unsafe {
                libc::fsetxattr(
                    fd.as_raw_fd(),
                    key.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            },
            // SAFETY: as above, and path is a NUL-terminated string that outlives the call.
            (_, Some(p)) => unsafe {
                libc::lsetxattr(
                    p.as_ptr(),
                    key.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            },
            (_, None) => return Err(Errno::EINVAL),
        };
        Errno::result(rc).map(drop)
    }
}

/// Every xattr of `src` onto `dst`, except overlayfs's own. A file system without xattr
/// support on either side means there is nothing to copy.
fn copy_xattrs(src: Node, dst: Node) -> nix::Result<()> {
    let names = match src.list() {
        Ok(n) => n,
        Err(Errno::ENOTSUP) => return Ok(()),
        Err(e) => return Err(e),
    };
    for key in names.split(|b| *b == 0).filter(|k| !k.is_empty()) {
        if key.starts_with(OVERLAY_XATTR_PREFIX) {
            continue;
        }
        let key = CString::new(key).map_err(|_| Errno::EINVAL)?;
        let value = match src.get(&key) {
            Ok(v) => v,
            // Removed since it was listed.
            Err(Errno::ENODATA) => continue,
            Err(e) => return Err(e),
        };
        match dst.set(&key, &value) {
            Ok(()) | Err(Errno::ENOTSUP) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};

    fn set_xattr(p: &Path, k: &str, v: &[u8]) {
        let path = CString::new(p.as_os_str().as_bytes()).unwrap();
        let key = CString::new(k).unwrap();
        // SAFETY: path and key are NUL-terminated, v is a live slice passed with its length.
        let rc =
            unsafe { libc::lsetxattr(path.as_ptr(), key.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
        assert_eq!(rc, 0, "setxattr {k} on {}: {}", p.display(), Errno::last());
    }

    fn tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        let vol = tmp.path().join("vol");
        fs::create_dir_all(rootfs.join("data/sub")).unwrap();
        fs::create_dir_all(&vol).unwrap();
        (tmp, rootfs, vol)
    }

    #[test]
    fn copies_files_links_modes_and_the_directory_itself() {
        let (_tmp, rootfs, vol) = tree();
        let data = rootfs.join("data");
        fs::write(data.join("a"), "alpha").unwrap();
        fs::set_permissions(data.join("a"), fs::Permissions::from_mode(0o4751)).unwrap();
        fs::write(data.join("sub/b"), "beta").unwrap();
        fs::hard_link(data.join("a"), data.join("sub/a-link")).unwrap();
        symlink("/etc/passwd", data.join("abs")).unwrap();
        nix::unistd::mkfifo(&data.join("fifo"), Mode::from_bits_truncate(0o640)).unwrap();
        std::os::unix::fs::chown(data.join("sub/b"), Some(1234), Some(5678)).unwrap();
        set_xattr(&data.join("a"), "user.origin", b"image");
        set_xattr(&data, "user.dir", b"d");
        set_xattr(&data.join("sub"), "trusted.overlay.opaque", b"y");
        fs::set_permissions(&data, fs::Permissions::from_mode(0o1777)).unwrap();
        std::os::unix::fs::chown(&data, Some(42), Some(43)).unwrap();

        assert_eq!(copy_up(&rootfs, "/data", &vol).unwrap(), Outcome::Copied);
        assert_eq!(fs::read_to_string(vol.join("a")).unwrap(), "alpha");
        assert_eq!(fs::read_to_string(vol.join("sub/b")).unwrap(), "beta");
        let a = fs::metadata(vol.join("a")).unwrap();
        assert_eq!(a.mode() & 0o7777, 0o4751);
        assert_eq!(a.nlink(), 2);
        assert_eq!(a.ino(), fs::metadata(vol.join("sub/a-link")).unwrap().ino());
        let b = fs::metadata(vol.join("sub/b")).unwrap();
        assert_eq!((b.uid(), b.gid()), (1234, 5678));
        assert_eq!(
            fs::read_link(vol.join("abs")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert!(fs::symlink_metadata(vol.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
        let xattr = |p: &Path, k: &str| {
            let path = CString::new(p.as_os_str().as_bytes()).unwrap();
            let key = CString::new(k).unwrap();
            let mut buf = [0u8; 64];
            // SAFETY: path and key are NUL-terminated, buf is live for its length.
            let n = unsafe {
                libc::lgetxattr(
                    path.as_ptr(),
                    key.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            usize::try_from(n).ok().map(|n| buf[..n].to_vec())
        };
        assert_eq!(
            xattr(&vol.join("a"), "user.origin").as_deref(),
            Some(&b"image"[..])
        );
        assert_eq!(xattr(&vol, "user.dir").as_deref(), Some(&b"d"[..]));
        assert_eq!(xattr(&vol.join("sub"), "trusted.overlay.opaque"), None);
        let root = fs::metadata(&vol).unwrap();
        assert_eq!(
            (root.mode() & 0o7777, root.uid(), root.gid()),
            (0o1777, 42, 43)
        );
        assert_eq!(
            fs::metadata(vol.join("sub")).unwrap().mtime(),
            fs::metadata(data.join("sub")).unwrap().mtime()
        );

        // Content now: a second copy-up leaves it alone.
        fs::write(data.join("new"), "x").unwrap();
        assert_eq!(copy_up(&rootfs, "/data", &vol).unwrap(), Outcome::NotEmpty);
        assert!(!vol.join("new").exists());
    }

    #[test]
    fn symlinked_targets_resolve_inside_the_rootfs() {
        let (tmp, rootfs, vol) = tree();
        // The host side of the rootfs: a file that must never be copied.
        fs::write(tmp.path().join("host-secret"), "secret").unwrap();
        fs::create_dir_all(rootfs.join("etc")).unwrap();
        fs::write(rootfs.join("etc/image-file"), "image").unwrap();
        symlink("/etc", rootfs.join("abs")).unwrap();
        symlink("../../../..", rootfs.join("up")).unwrap();

        assert_eq!(copy_up(&rootfs, "/abs", &vol).unwrap(), Outcome::Copied);
        let names: Vec<_> = fs::read_dir(&vol)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("image-file")]);

        let vol2 = tmp.path().join("vol2");
        fs::create_dir(&vol2).unwrap();
        assert_eq!(copy_up(&rootfs, "/up", &vol2).unwrap(), Outcome::Copied);
        assert!(
            vol2.join("etc/image-file").exists(),
            "`..` stops at the rootfs"
        );
        assert!(!vol2.join("host-secret").exists());
        assert!(!vol2.join("rootfs").exists());

        let vol3 = tmp.path().join("vol3");
        fs::create_dir(&vol3).unwrap();
        assert_eq!(
            copy_up(&rootfs, "/missing", &vol3).unwrap(),
            Outcome::NoSource
        );
        fs::write(rootfs.join("file"), "f").unwrap();
        assert_eq!(copy_up(&rootfs, "/file", &vol3).unwrap(), Outcome::NoSource);
    }

    #[test]
    fn a_failed_copy_leaves_the_volume_empty() {
        let (_tmp, rootfs, vol) = tree();
        fs::write(rootfs.join("data/a"), "a").unwrap();
        fs::write(rootfs.join("data/sub/b"), "b").unwrap();
        // A tree deeper than PATH_MAX, built one directory at a time: the copy fails part
        // way through, after `a` and `sub/b` were written.
        let mut dir = open(
            &rootfs.join("data/sub"),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        let long = "y".repeat(200);
        for _ in 0..25 {
            mkdirat(&dir, long.as_str(), Mode::from_bits_truncate(0o755)).unwrap();
            dir = open_nofollow(dir.as_fd(), OsStr::new(&long), OFlag::O_DIRECTORY).unwrap();
        }
        let e = copy_up(&rootfs, "/data", &vol).unwrap_err();
        assert_eq!(e.source, Errno::ENAMETOOLONG, "{e}");
        assert_eq!(
            fs::read_dir(&vol).unwrap().count(),
            0,
            "partial copy removed"
        );
    }
}
