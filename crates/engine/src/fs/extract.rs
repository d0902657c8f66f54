//! Entries written into a directory of a root, never outside the root.
//!
//! Each entry's name is cleaned first (`..` that would climb above the destination is
//! refused, as Docker's `Untar` does); its parent is then opened with
//! openat2(RESOLVE_IN_ROOT) under the root, as `<destination>/<parent>` (missing
//! directories are made one at a time the same way), and the entry is created there with
//! `*at` calls on its single name: O_CREAT|O_EXCL|O_NOFOLLOW, mkdirat, symlinkat, linkat
//! (which does not follow a symlink at its target), mknodat, and fchownat, fchmodat and
//! utimensat with AT_SYMLINK_NOFOLLOW. So neither a symlink the archive planted nor one a
//! running container swaps in can send a write outside the root.
//!
//! As Docker's copy (`NoOverwriteDirNonDir`), a directory never replaces a file or the other
//! way round; other existing files are replaced, existing directories merged.

use super::resolve::{is_dir, open_in_root};
use super::walk::{Entry, Kind, Sink};
use super::{io_err, FsError, Result};
use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmodat, fstatat, makedev, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag,
    UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use std::ffi::{CString, OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Whose files the extracted ones become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The uid and gid in the entry (into a container, as Docker).
    Entry,
    /// These (`docker cp -a` into a container that has a user).
    Fixed(u32, u32),
    /// Whoever runs berth (out of a container, as Docker's `NoLchown`).
    Caller,
}

/// A [`Sink`] that creates the entries under `dest` of `root`.
pub struct Extract<'a> {
    root: BorrowedFd<'a>,
    /// The destination, a path inside the root (`/` for the root itself).
    dest: PathBuf,
    owner: Owner,
    /// Directory mtimes, applied last because creating children changes them.
    dir_times: Vec<(PathBuf, i64)>,
    /// The last parent directory entries went into (its parts below `dest`): a tree's
    /// entries come directory by directory, so most need no new resolution. Extraction
    /// never removes or replaces a directory, so the parts keep naming it.
    last_dir: Option<(Vec<OsString>, OwnedFd)>,
}

impl<'a> Extract<'a> {
    pub fn new(root: BorrowedFd<'a>, dest: &str, owner: Owner) -> Self {
        Extract {
            root,
            dest: PathBuf::from(dest),
            owner,
            dir_times: Vec::new(),
            last_dir: None,
        }
    }

    /// Applies the directory mtimes, deepest first. Call once every entry is in.
    pub fn finish(mut self) -> Result<()> {
        let mut dirs = std::mem::take(&mut self.dir_times);
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (path, mtime) in dirs {
            let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
                continue;
            };
            let parent = match open_in_root(self.root, parent, OFlag::O_PATH | OFlag::O_DIRECTORY) {
                // Gone since (a running container): nothing to date.
                Err(Errno::ENOENT | Errno::ENOTDIR) => continue,
                other => other.map_err(io_err("opening", parent.display()))?,
            };
            let t = TimeSpec::new(mtime, 0);
            match utimensat(&parent, name, &t, &t, UtimensatFlags::NoFollowSymlink) {
                Err(Errno::ENOENT) => {}
                other => other.map_err(io_err("setting mtime of", path.display()))?,
            }
        }
        Ok(())
    }

    /// The entry's name as parts below `dest`, `..` applied; refused if it climbs out.
    fn parts(&self, raw: &Path) -> Result<Vec<OsString>> {
        clean_parts(raw.as_os_str().as_bytes()).ok_or_else(|| FsError::Breakout {
            name: raw.display().to_string(),
            dest: self.dest.display().to_string(),
        })
    }

    /// Opens (making what is missing) the directory `dest/parts`.
    fn make_dirs(&self, parts: &[OsString]) -> Result<OwnedFd> {
        let mut path = self.dest.clone();
        let mut fd = open_in_root(self.root, &path, OFlag::O_PATH | OFlag::O_DIRECTORY)
            .map_err(io_err("opening", path.display()))?;
        for part in parts {
            path.push(part);
            fd = match open_in_root(self.root, &path, OFlag::O_PATH | OFlag::O_DIRECTORY) {
                Err(Errno::ENOENT) => {
                    match mkdirat(&fd, part.as_os_str(), Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(io_err("creating directory", path.display())(e)),
                    }
                    open_in_root(self.root, &path, OFlag::O_PATH | OFlag::O_DIRECTORY)
                        .map_err(io_err("opening", path.display()))?
                }
                other => other.map_err(io_err("opening", path.display()))?,
            };
        }
        Ok(fd)
    }
}

/// The parts of a relative name after dropping empty and `.` parts and applying `..`;
/// None if `..` climbs above the start. A leading `/` is ignored (names are relative to
/// the destination, as in Docker's `Untar`).
pub fn clean_parts(raw: &[u8]) -> Option<Vec<OsString>> {
    let mut parts: Vec<OsString> = Vec::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop()?;
            }
            p => parts.push(OsStr::from_bytes(p).to_os_string()),
        }
    }
    Some(parts)
}

impl Sink for Extract<'_> {
    fn put(&mut self, e: &Entry, data: &mut dyn Read) -> Result<()> {
        let mut parts = self.parts(&e.path)?;
        let Some(name) = parts.pop() else {
            // The destination itself (`./`): it exists as a directory; Docker skips it.
            if e.kind == Kind::Dir {
                return Ok(());
            }
            return Err(FsError::Invalid(format!(
                "cannot overwrite directory {:?} with non-directory {:?}",
                self.dest.display().to_string(),
                self.dest.display().to_string()
            )));
        };
        let full = {
            let mut p = self.dest.clone();
            p.extend(&parts);
            p.push(&name);
            p
        };
        let parent = match self.last_dir.take() {
            Some((cached, fd)) if cached == parts => fd,
            _ => self.make_dirs(&parts)?,
        };
        let result = self.put_in(parent.as_fd(), &name, &full, e, data);
        self.last_dir = Some((parts, parent));
        result
    }
}

impl Extract<'_> {
    /// Creates entry `e` as `name` in `parent` (`full` is its path in the root).
    fn put_in(
        &mut self,
        parent: BorrowedFd,
        name: &OsStr,
        full: &Path,
        e: &Entry,
        data: &mut dyn Read,
    ) -> Result<()> {
        let shown = full.display().to_string();
        if e.kind == Kind::File {
            // Most files are new: try that first, and look at what is there only if not.
            match create_file(parent, name) {
                Ok(file) => return self.write_file_meta(file, e, data, &shown),
                Err(Errno::EEXIST) => {}
                Err(err) => return Err(io_err("creating", &shown)(err)),
            }
        }
        let existing = match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Some(st),
            Err(Errno::ENOENT) => None,
            Err(e) => return Err(io_err("lstat", &shown)(e)),
        };
        let dest = self.dest.display().to_string();
        if let Some(st) = &existing {
            match (is_dir(st), e.kind == Kind::Dir) {
                (true, false) => {
                    return Err(FsError::Invalid(format!(
                        "cannot overwrite directory {shown:?} with non-directory {dest:?}"
                    )))
                }
                (false, true) => {
                    return Err(FsError::Invalid(format!(
                        "cannot overwrite non-directory {shown:?} with directory {dest:?}"
                    )))
                }
                (true, true) => {}
                (false, false) => unlinkat(parent, name, UnlinkatFlags::NoRemoveDir)
                    .map_err(io_err("replacing", &shown))?,
            }
        }
        match &e.kind {
            Kind::Dir => {
                if existing.is_none() {
                    mkdirat(parent, name, Mode::from_bits_truncate(0o700))
                        .map_err(io_err("creating directory", &shown))?;
                }
            }
            Kind::File => {
                let file = create_file(parent, name).map_err(io_err("creating", &shown))?;
                return self.write_file_meta(file, e, data, &shown);
            }
            Kind::Symlink(target) => symlinkat(target.as_os_str(), parent, name)
                .map_err(io_err("creating symlink", &shown))?,
            Kind::HardLink(target) => {
                let mut tparts = self.parts(target)?;
                let Some(tname) = tparts.pop() else {
                    return Err(FsError::Invalid(format!(
                        "{shown}: hard link to a directory"
                    )));
                };
                let mut tpath = self.dest.clone();
                tpath.extend(&tparts);
                let tparent = open_in_root(self.root, &tpath, OFlag::O_PATH | OFlag::O_DIRECTORY)
                    .map_err(io_err("opening", tpath.display()))?;
                linkat(&tparent, tname.as_os_str(), parent, name, AtFlags::empty())
                    .map_err(io_err("creating hard link", &shown))?;
                // A second name shares its inode's metadata; nothing more to apply.
                return Ok(());
            }
            Kind::Char(ma, mi) | Kind::Block(ma, mi) => {
                let kind = if matches!(e.kind, Kind::Char(..)) {
                    SFlag::S_IFCHR
                } else {
                    SFlag::S_IFBLK
                };
                mknodat(
                    parent,
                    name,
                    kind,
                    Mode::from_bits_truncate(0o600),
                    makedev(*ma, *mi),
                )
                .map_err(io_err("creating device", &shown))?;
            }
            Kind::Fifo => mknodat(
                parent,
                name,
                SFlag::S_IFIFO,
                Mode::from_bits_truncate(0o600),
                0,
            )
            .map_err(io_err("creating fifo", &shown))?,
        }
        self.set_meta(parent, name, full, e)
    }

    /// A new file's content, then its owner, mode, xattrs and mtime, all through its fd.
    fn write_file_meta(
        &self,
        mut file: std::fs::File,
        e: &Entry,
        data: &mut dyn Read,
        shown: &str,
    ) -> Result<()> {
        write_data(&mut file, e.size, data, shown)?;
        let owner = match self.owner {
            Owner::Entry => Some((e.uid, e.gid)),
            Owner::Fixed(u, g) => Some((u, g)),
            Owner::Caller => None,
        };
        if let Some((uid, gid)) = owner {
            nix::unistd::fchown(&file, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .map_err(io_err("setting owner of", shown))?;
        }
        nix::sys::stat::fchmod(&file, Mode::from_bits_truncate(e.mode & 0o7777))
            .map_err(io_err("setting mode of", shown))?;
        for (key, value) in &e.xattrs {
            if key.as_bytes().starts_with(b"trusted.overlay.") {
                continue;
            }
            match image::xattr::Node::Fd(file.as_fd()).set(key, value) {
                Ok(()) | Err(Errno::ENOTSUP) => {}
                Err(err) => return Err(io_err("setting xattrs of", shown)(err)),
            }
        }
        let t = TimeSpec::new(e.mtime, 0);
        nix::sys::stat::futimens(&file, &t, &t).map_err(io_err("setting mtime of", shown))
    }
    /// Owner first (chown clears setuid and file capabilities), then mode, xattrs, mtime
    /// (deferred for directories).
    fn set_meta(&mut self, parent: BorrowedFd, name: &OsStr, full: &Path, e: &Entry) -> Result<()> {
        let shown = full.display().to_string();
        let owner = match self.owner {
            Owner::Entry => Some((e.uid, e.gid)),
            Owner::Fixed(u, g) => Some((u, g)),
            Owner::Caller => None,
        };
        if let Some((uid, gid)) = owner {
            fchownat(
                parent,
                name,
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(io_err("setting owner of", &shown))?;
        }
        let symlink = matches!(e.kind, Kind::Symlink(_));
        if !symlink {
            fchmodat(
                parent,
                name,
                Mode::from_bits_truncate(e.mode & 0o7777),
                FchmodatFlags::NoFollowSymlink,
            )
            .map_err(io_err("setting mode of", &shown))?;
        }
        for (key, value) in &e.xattrs {
            if key.as_bytes().starts_with(b"trusted.overlay.") {
                continue;
            }
            match set_xattr(parent, name, key, value) {
                // A file system without xattrs, or symlinks that take none (user.*).
                Ok(()) | Err(Errno::ENOTSUP) => {}
                Err(Errno::EPERM) if symlink => {}
                Err(err) => return Err(io_err("setting xattrs of", &shown)(err)),
            }
        }
        if e.kind == Kind::Dir {
            self.dir_times.push((full.to_path_buf(), e.mtime));
            return Ok(());
        }
        let t = TimeSpec::new(e.mtime, 0);
        utimensat(parent, name, &t, &t, UtimensatFlags::NoFollowSymlink)
            .map_err(io_err("setting mtime of", &shown))
    }
}

/// A new regular file `name` in `parent`, never through a symlink or over anything.
fn create_file(parent: BorrowedFd, name: &OsStr) -> nix::Result<std::fs::File> {
    openat(
        parent,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map(std::fs::File::from)
}

/// Exactly `size` bytes of `data` into `file`.
fn write_data(file: &mut std::fs::File, size: u64, data: &mut dyn Read, shown: &str) -> Result<()> {
    // Small files (most of a tree) need no 64 KiB buffer.
    let mut buf = vec![
        0u8;
        usize::try_from(size)
            .unwrap_or(usize::MAX)
            .clamp(1, 64 * 1024)
    ];
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match data.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(FsError::Archive(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{shown}: content ends early"),
                )))
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FsError::Archive(e)),
        };
        file.write_all(&buf[..n])
            .map_err(io_err("writing", shown))?;
        left -= n as u64;
    }
    Ok(())
}

/// Sets an xattr on `name` in `parent` without following a symlink there.
fn set_xattr(parent: BorrowedFd, name: &OsStr, key: &CString, value: &[u8]) -> nix::Result<()> {
    image::xattr::Node::at(parent, name)?.set(key, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::walk::read_tar;
    use std::os::unix::fs::MetadataExt;

    fn tar_of(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, ty, link, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_entry_type(*ty);
            h.set_size(data.len() as u64);
            h.set_mode(if *ty == tar::EntryType::Directory {
                0o755
            } else {
                0o640
            });
            h.set_uid(1234);
            h.set_gid(5678);
            h.set_mtime(1_600_000_000);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn extract(root: &Path, dest: &str, owner: Owner, tar: &[u8]) -> Result<()> {
        let fd = nix::fcntl::open(root, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        let mut x = Extract::new(fd.as_fd(), dest, owner);
        read_tar(tar, &mut x)?;
        x.finish()
    }

    #[test]
    fn symlinks_planted_by_the_archive_stay_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("dst")).unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let tar = tar_of(&[
            ("up", tar::EntryType::Symlink, "../../../..", b""),
            ("up/escape", tar::EntryType::Regular, "", b"x"),
            ("h", tar::EntryType::Link, "up/escape", b""),
        ]);
        extract(&root, "/dst", Owner::Entry, &tar).unwrap();
        // `up` resolves to the root.
        assert_eq!(std::fs::read(root.join("escape")).unwrap(), b"x");
        assert!(!tmp.path().join("escape").exists());
        let h = std::fs::metadata(root.join("dst/h")).unwrap();
        assert_eq!(
            h.ino(),
            std::fs::metadata(root.join("escape")).unwrap().ino()
        );
        assert_eq!((h.uid(), h.gid(), h.mode() & 0o777), (1234, 5678, 0o640));

        // An absolute link to the host's directory: the write fails or lands inside.
        let abs = tar_of(&[
            (
                "abs",
                tar::EntryType::Symlink,
                outside.to_str().unwrap(),
                b"",
            ),
            ("abs/escape2", tar::EntryType::Regular, "", b"y"),
        ]);
        assert!(extract(&root, "/dst", Owner::Entry, &abs).is_err());
        assert!(!outside.join("escape2").exists());
        let inside = root.join(outside.strip_prefix("/").unwrap());
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::remove_file(root.join("dst/abs")).unwrap();
        extract(&root, "/dst", Owner::Entry, &abs).unwrap();
        assert_eq!(std::fs::read(inside.join("escape2")).unwrap(), b"y");
        assert!(!outside.join("escape2").exists());
    }

    #[test]
    fn dotdot_out_of_the_destination_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("root/dst")).unwrap();
        let tar = tar_of(&[("a/../../x", tar::EntryType::Regular, "", b"x")]);
        let err = extract(&tmp.path().join("root"), "/dst", Owner::Entry, &tar).unwrap_err();
        assert_eq!(err.to_string(), "\"a/../../x\" is outside of \"/dst\"");
        assert!(!tmp.path().join("root/x").exists());
        let tar = tar_of(&[("a/../x", tar::EntryType::Regular, "", b"x")]);
        extract(&tmp.path().join("root"), "/dst", Owner::Caller, &tar).unwrap();
        let x = std::fs::metadata(tmp.path().join("root/dst/x")).unwrap();
        assert_eq!((x.uid(), x.mtime()), (0, 1_600_000_000));
    }

    #[test]
    fn a_file_replaces_a_symlink_without_following_it() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("target"), "untouched").unwrap();
        std::os::unix::fs::symlink("/target", root.join("d/f")).unwrap();
        let tar = tar_of(&[("d/f", tar::EntryType::Regular, "", b"mine")]);
        extract(&root, "/", Owner::Entry, &tar).unwrap();
        let f = std::fs::symlink_metadata(root.join("d/f")).unwrap();
        assert!(f.is_file());
        assert_eq!(std::fs::read(root.join("d/f")).unwrap(), b"mine");
        assert_eq!((f.uid(), f.gid(), f.mode() & 0o7777), (1234, 5678, 0o640));
        assert_eq!(f.mtime(), 1_600_000_000);
        assert_eq!(std::fs::read(root.join("target")).unwrap(), b"untouched");
    }

    #[test]
    fn entries_land_in_their_directories_in_any_order() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        // Parents alternate, repeat, and one becomes a symlink's target in between.
        let tar = tar_of(&[
            ("a/1", tar::EntryType::Regular, "", b"a1"),
            ("b/1", tar::EntryType::Regular, "", b"b1"),
            ("a/2", tar::EntryType::Regular, "", b"a2"),
            ("a/2", tar::EntryType::Regular, "", b"a2 again"),
            ("c", tar::EntryType::Symlink, "b", b""),
            ("c/2", tar::EntryType::Regular, "", b"via c"),
            ("a/sub/3", tar::EntryType::Regular, "", b"deep"),
            ("a/4", tar::EntryType::Regular, "", b"a4"),
        ]);
        extract(&root, "/", Owner::Caller, &tar).unwrap();
        for (path, want) in [
            ("a/1", "a1"),
            ("b/1", "b1"),
            ("a/2", "a2 again"),
            ("b/2", "via c"),
            ("a/sub/3", "deep"),
            ("a/4", "a4"),
        ] {
            assert_eq!(
                std::fs::read_to_string(root.join(path)).unwrap(),
                want,
                "{path}"
            );
        }
    }

    #[test]
    fn directories_and_files_do_not_replace_each_other() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("f"), "old").unwrap();
        let err = extract(
            &root,
            "/",
            Owner::Entry,
            &tar_of(&[("d", tar::EntryType::Regular, "", b"")]),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot overwrite directory \"/d\" with non-directory \"/\""
        );
        let err = extract(
            &root,
            "/",
            Owner::Entry,
            &tar_of(&[("f/", tar::EntryType::Directory, "", b"")]),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot overwrite non-directory"),
            "{err}"
        );
        extract(
            &root,
            "/",
            Owner::Entry,
            &tar_of(&[("f", tar::EntryType::Regular, "", b"new")]),
        )
        .unwrap();
        assert_eq!(std::fs::read(root.join("f")).unwrap(), b"new");
    }
}
