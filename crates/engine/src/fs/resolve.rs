//! Paths inside a container's root, resolved by the kernel as if that root were `/`.
//!
//! openat2(RESOLVE_IN_ROOT) treats the root fd as `/` for the whole lookup: absolute
//! symlinks restart there, `..` stops there, and a symlink swapped in by a running
//! container in the middle of the lookup still resolves inside. Magic links
//! (`/proc/self/root` inside a container's tree) are refused outright.
//!
//! Docker's path rules sit on top: [`locate`] is its `ResolvePath` (symlinks followed in
//! the directory part, not at the last name, except that a trailing `/` or `/.` names the
//! directory itself) and [`follow_in_scope`] its `FollowSymlinkInScope` (every symlink
//! followed, lexically, as the daemon's `stat` reports a link target).

use nix::errno::Errno;
use nix::fcntl::{openat2, readlinkat, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstatat, FileStat, SFlag};
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// How often openat2 is retried when RESOLVE_IN_ROOT reports a concurrent rename (EAGAIN).
const RESOLVE_RETRIES: usize = 64;

/// Symlinks followed by [`follow_in_scope`] before giving up (Docker's limit).
const MAX_LINKS: usize = 255;

/// openat2 of `path` under `root` with RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS.
pub fn open_in_root(root: BorrowedFd, path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let mut tries = 0;
    loop {
        match openat2(root, path, how) {
            Err(Errno::EAGAIN) if tries < RESOLVE_RETRIES => tries += 1,
            result => return result,
        }
    }
}

/// A directory under `root`, every symlink on the way (the last one too) followed inside.
pub fn open_dir(root: BorrowedFd, path: &Path) -> nix::Result<OwnedFd> {
    open_in_root(root, path, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
}

/// `/` joined with `path`, cleaned like Go's `filepath.Clean`: no empty or `.` parts, `..`
/// applied (and stopped at `/`).
pub fn clean_abs(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Docker's test for a path that names a directory's contents or the directory itself:
/// it ends in `/` or its last part is `.`.
pub fn asserts_dir(path: &str) -> bool {
    path.ends_with('/') || path == "." || path.ends_with("/.")
}

/// Docker's `SplitPathDirEntry`: the cleaned directory and last part of `path`, the last
/// part `.` when the path ends in `/.`.
pub fn split(path: &str) -> (String, String) {
    let clean = clean_abs(path);
    if path == "." || path.ends_with("/.") {
        return (clean, ".".into());
    }
    match clean.rsplit_once('/') {
        Some(("", "")) | None => ("/".into(), "/".into()),
        Some(("", base)) => ("/".into(), base.into()),
        Some((dir, base)) => (dir.into(), base.into()),
    }
}

/// A node of the container's tree, named by its (open) parent directory and its name in
/// it; the name is `.` for a directory named by a trailing `/` or `/.`.
pub struct Located {
    pub parent: OwnedFd,
    pub name: OsString,
    /// Where it is in the container, cleaned (`/etc/hosts`).
    pub path: String,
}

impl Located {
    /// lstat of the node itself.
    pub fn stat(&self) -> nix::Result<FileStat> {
        fstatat(
            &self.parent,
            self.name.as_os_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
    }

    pub fn parent(&self) -> BorrowedFd<'_> {
        self.parent.as_fd()
    }
}

/// Docker's `ResolvePath`: symlinks in the directory part of `path` are followed (inside
/// the root), the last part is not, unless the path ends in `/` or `/.`, which name the
/// directory itself.
pub fn locate(root: BorrowedFd, path: &str) -> nix::Result<Located> {
    let clean = clean_abs(path);
    if asserts_dir(path) || clean == "/" {
        return Ok(Located {
            parent: open_dir(root, Path::new(&clean))?,
            name: ".".into(),
            path: clean,
        });
    }
    let (dir, base) = clean.rsplit_once('/').unwrap_or(("", &clean));
    let dir = if dir.is_empty() { "/" } else { dir };
    Ok(Located {
        parent: open_dir(root, Path::new(dir))?,
        name: OsString::from(base),
        path: clean.clone(),
    })
}

pub fn is_symlink(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK
}

pub fn is_dir(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

pub fn is_file(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG
}

/// Docker's `FollowSymlinkInScope`: `path` with every symlink followed, each one read
/// from the container and applied to the part already resolved (which holds no
/// symlinks, so `..` can be applied to it by text). Missing parts are kept as they are.
/// The answer is a cleaned absolute path in the container; opening it still goes through
/// [`open_in_root`], so a link swapped in meanwhile cannot lead outside.
pub fn follow_in_scope(root: BorrowedFd, path: &str) -> nix::Result<String> {
    let mut todo: Vec<OsString> = components(clean_abs(path).as_bytes());
    todo.reverse();
    let mut done: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(part) = todo.pop() {
        match part.as_bytes() {
            b"" | b"." => continue,
            b".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let st = match open_dir(root, &joined(&done))
            .and_then(|parent| fstatat(&parent, part.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW))
        {
            Err(Errno::ENOENT) => {
                done.push(part);
                continue;
            }
            other => other?,
        };
        if !is_symlink(&st) {
            done.push(part);
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(Errno::ELOOP);
        }
        let parent = open_dir(root, &joined(&done))?;
        let target = readlinkat(&parent, part.as_os_str())?;
        if target.as_bytes().starts_with(b"/") {
            done.clear();
        }
        let mut more = components(target.as_bytes());
        more.reverse();
        todo.extend(more);
    }
    Ok(joined(&done).to_string_lossy().into_owned())
}

fn components(path: &[u8]) -> Vec<OsString> {
    path.split(|b| *b == b'/')
        .filter(|p| !p.is_empty())
        .map(|p| OsStr::from_bytes(p).to_os_string())
        .collect()
}

fn joined(parts: &[OsString]) -> std::path::PathBuf {
    let mut p = std::path::PathBuf::from("/");
    for part in parts {
        p.push(part);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn cleans_like_go() {
        assert_eq!(clean_abs(""), "/");
        assert_eq!(clean_abs("etc//hosts/"), "/etc/hosts");
        assert_eq!(clean_abs("/../../etc/./x/.."), "/etc");
        assert_eq!(split("/etc/hosts"), ("/etc".into(), "hosts".into()));
        assert_eq!(split("/etc/"), ("/".into(), "etc".into()));
        assert_eq!(split("/etc/."), ("/etc".into(), ".".into()));
        assert_eq!(split("/"), ("/".into(), "/".into()));
        assert_eq!(split("x"), ("/".into(), "x".into()));
        assert!(asserts_dir("/a/") && asserts_dir("/a/.") && !asserts_dir("/a"));
    }

    #[test]
    fn links_resolve_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("d/e")).unwrap();
        std::fs::write(root.join("etc/passwd"), "inside").unwrap();
        symlink("/etc/passwd", root.join("abs")).unwrap();
        symlink("../../../../../../etc", root.join("d/e/up")).unwrap();
        symlink("/", root.join("d/slash")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        let fd = nix::fcntl::open(
            &root,
            OFlag::O_PATH | OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        let r = fd.as_fd();
        assert_eq!(follow_in_scope(r, "/abs").unwrap(), "/etc/passwd");
        assert_eq!(follow_in_scope(r, "d/e/up/passwd").unwrap(), "/etc/passwd");
        assert_eq!(follow_in_scope(r, "/d/slash/etc").unwrap(), "/etc");
        assert_eq!(follow_in_scope(r, "/d/nope/x").unwrap(), "/d/nope/x");
        assert_eq!(follow_in_scope(r, "/loop1"), Err(Errno::ELOOP));

        // The directory part is followed inside the root; the last name is not.
        let l = locate(r, "/d/e/up/passwd").unwrap();
        assert_eq!(l.name, "passwd");
        assert_eq!(l.path, "/d/e/up/passwd");
        assert!(is_file(&l.stat().unwrap()));
        let st = l.stat().unwrap();
        let inside = std::fs::metadata(root.join("etc/passwd")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(st.st_ino, inside.ino());
        assert!(is_symlink(&locate(r, "/abs").unwrap().stat().unwrap()));
        assert!(is_dir(&locate(r, "/d/slash/").unwrap().stat().unwrap()));
        assert_eq!(locate(r, "/nope/x").err(), Some(Errno::ENOENT));
    }
}
