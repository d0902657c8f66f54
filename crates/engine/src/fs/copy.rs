//! `docker cp` in both directions, and `docker export`.
//!
//! The path rules are Docker's (its CLI's `archive.CopyTo`/`PrepareArchiveCopy` and its
//! daemon's `ResolvePath`/`ContainerExtractToDir`), applied here without the tar round
//! trip in the middle: a source is walked straight into the destination, named the way
//! Docker's rebased archive would name it. `-` on either side is a real tar stream.
//!
//! Container paths go through [`super::resolve`] under the container's root fd and are
//! read and written only through fds ([`super::walk`], [`super::extract`]); a symlink in
//! the container, wherever it points, is copied as a symlink (or, with `-L` at the source,
//! followed *inside* the container), never followed on the host. Host paths are the
//! caller's own and are resolved as the caller's shell would, except that what is
//! extracted there stays under the destination directory.
//!
//! Not reached: volumes, bind mounts and tmpfs mounts of the container (and the
//! `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf` berth binds in), which live outside
//! the container's root; a path on one of them is refused rather than silently copied
//! from or to the directory underneath.

use super::extract::{Extract, Owner};
use super::resolve::{
    asserts_dir, clean_abs, follow_in_scope, is_dir, is_file, is_symlink, locate, split, Located,
};
use super::view::ContainerRoot;
use super::walk::{read_tar, walk, Entry, Kind, Sink, TarSink, WalkOptions};
use super::{FsError, Result};
use crate::container::Engine;
use crate::store::Container;
use nix::errno::Errno;
use nix::fcntl::{open, AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// Where `cp` reads from when the destination is in the container.
pub enum Source<'a> {
    /// A host path, as the user typed it (relative to the current directory).
    Path(&'a Path),
    /// A tar stream (`-`), extracted into the destination directory.
    Tar(&'a mut dyn Read),
}

/// `cp SRC|- CONTAINER:DEST`.
pub struct CopyTo<'a> {
    pub source: Source<'a>,
    /// The destination in the container, as typed.
    pub dest: &'a str,
    /// `-a`: files become the container's user's (when it has one).
    pub archive: bool,
    /// `-L`: follow a symlink at the host source.
    pub follow: bool,
}

/// `cp CONTAINER:SRC DEST|-`.
pub struct CopyFrom<'a> {
    /// The source in the container, as typed.
    pub source: &'a str,
    /// A host path as typed, or None for a tar stream to `out`.
    pub dest: Option<&'a Path>,
    /// `-L`: follow a symlink at the container source (inside the container).
    pub follow: bool,
}

/// What a copy moved: regular file bytes, and where to (for Docker's summary line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Copied {
    pub bytes: u64,
    pub dest: String,
}

/// Counts the bytes of regular files going through.
struct Counting<'a> {
    inner: &'a mut dyn Sink,
    bytes: u64,
}

impl Sink for Counting<'_> {
    fn put(&mut self, e: &Entry, data: &mut dyn Read) -> Result<()> {
        if e.kind == Kind::File {
            self.bytes += e.size;
        }
        self.inner.put(e, data)
    }
}

/// `docker export`: the container's whole root as a tar on `out`.
pub fn export(engine: &Engine, c: &Container, out: &mut dyn Write) -> Result<()> {
    let view = ContainerRoot::open(engine, c)?;
    let mut tar = TarSink::new(out);
    walk(
        view.fd(),
        OsStr::new("."),
        Path::new(""),
        false,
        &WalkOptions::default(),
        &mut tar,
    )?;
    tar.finish()?.flush().map_err(FsError::Output)
}

/// Docker's errors for a path that is missing, or that cannot be gone through.
fn not_found(path: &str, container: &str) -> impl FnOnce(Errno) -> FsError {
    let (path, container) = (path.to_string(), container.to_string());
    move |e| match e {
        Errno::ENOENT => FsError::NotFound { path, container },
        e => FsError::Io {
            what: "lstat",
            path,
            source: e.into(),
        },
    }
}

/// The container's mounts that live outside its root (see the module's notes).
fn mount_targets(engine: &Engine, c: &Container) -> Vec<String> {
    let mut targets: Vec<String> = c
        .options
        .run
        .mounts
        .iter()
        .map(|m| clean_abs(m.target()))
        .collect();
    let config = super::view::image_id(c)
        .ok()
        .and_then(|d| engine.images.blobs.read(&d).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    if let Some(volumes) = config
        .as_ref()
        .and_then(|v| v["config"]["Volumes"].as_object())
    {
        targets.extend(volumes.keys().map(|k| clean_abs(k)));
    }
    let dir = engine.container_dir(&c.id);
    for (file, target) in [
        ("hosts", "/etc/hosts"),
        ("hostname", "/etc/hostname"),
        ("resolv.conf", "/etc/resolv.conf"),
    ] {
        if dir.join(file).exists() {
            targets.push(target.to_string());
        }
    }
    targets
}

/// Refuses a container path on a mount that the copy cannot reach.
fn check_not_on_mount(engine: &Engine, c: &Container, path: &str, name: &str) -> Result<()> {
    for target in mount_targets(engine, c) {
        let under = path == target
            || path
                .strip_prefix(target.as_str())
                .is_some_and(|r| r.starts_with('/'));
        if under {
            return Err(FsError::Invalid(format!(
                "{path} in container {name} is on a volume, bind mount or tmpfs ({target}); berth cp does not reach into mounts"
            )));
        }
    }
    Ok(())
}

/// Where `located` really is in the container: its directory with every symlink followed,
/// then its own name (not followed).
fn real_path(root: BorrowedFd, located: &Located) -> String {
    if located.name == "." {
        return follow_in_scope(root, &located.path).unwrap_or_else(|_| located.path.clone());
    }
    let (dir, base) = split(&located.path);
    match follow_in_scope(root, &dir) {
        Ok(d) if d == "/" => format!("/{base}"),
        Ok(d) => format!("{d}/{base}"),
        Err(_) => located.path.clone(),
    }
}

/// `docker cp CONTAINER:SRC DEST|-`. `name` is the container as the user named it (for
/// Docker's messages); `out` receives the tar when there is no host destination.
pub fn copy_from_container(
    engine: &Engine,
    c: &Container,
    name: &str,
    req: &CopyFrom,
    out: &mut dyn Write,
) -> Result<Copied> {
    let local = match req.dest {
        Some(dest) => {
            let abs = local_abs(dest)?;
            validate_output_path(&abs)?;
            Some(abs)
        }
        None => None,
    };
    let view = ContainerRoot::open(engine, c)?;
    let root = view.fd();
    let c = &view.container;

    // With -L a symlink at the source is replaced by what it resolves to in the
    // container, keeping the name it was asked by (Docker's GetRebaseName).
    let mut path = req.source.to_string();
    let mut top = archive_name(&path);
    if req.follow {
        let located = locate(root, &path).map_err(not_found(req.source, name))?;
        let st = located.stat().map_err(not_found(req.source, name))?;
        if is_symlink(&st) {
            let target =
                follow_in_scope(root, &located.path).map_err(not_found(req.source, name))?;
            path = preserve_trailing(&target, &path);
        }
    }
    let located = locate(root, &path).map_err(not_found(req.source, name))?;
    check_not_on_mount(engine, c, &real_path(root, &located), name)?;
    let st = located.stat().map_err(not_found(req.source, name))?;
    let src_is_dir = is_dir(&st);
    if top == "/" {
        top = ".".into();
    }

    let Some(dest) = local else {
        let mut tar = TarSink::new(out);
        let mut counting = Counting {
            inner: &mut tar,
            bytes: 0,
        };
        walk(
            located.parent.as_fd(),
            &located.name,
            Path::new(&top),
            true,
            &WalkOptions::default(),
            &mut counting,
        )?;
        let bytes = counting.bytes;
        tar.finish()?.flush().map_err(FsError::Output)?;
        return Ok(Copied {
            bytes,
            dest: "-".into(),
        });
    };

    let dest_text = dest.to_string_lossy().into_owned();
    let info = host_dest_info(&dest)?;
    let (dir, new_top) = prepare(&info, src_is_dir, &top)?;
    let dir_fd = open(
        Path::new(&dir),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| FsError::Local {
        path: dir.clone().into(),
        source: e.into(),
    })?;
    let mut x = Extract::new(dir_fd.as_fd(), "/", Owner::Caller);
    let mut counting = Counting {
        inner: &mut x,
        bytes: 0,
    };
    walk(
        located.parent.as_fd(),
        &located.name,
        Path::new(&new_top),
        true,
        &WalkOptions::default(),
        &mut counting,
    )?;
    let bytes = counting.bytes;
    x.finish()?;
    Ok(Copied {
        bytes,
        dest: dest_text,
    })
}

/// `docker cp SRC|- CONTAINER:DEST`.
pub fn copy_to_container(
    engine: &Engine,
    c: &Container,
    name: &str,
    req: CopyTo,
) -> Result<Copied> {
    // The host side first, as Docker's CLI: a missing source fails before the container
    // is looked at.
    let local = match &req.source {
        Source::Path(p) => Some(LocalSource::open(p, req.follow)?),
        Source::Tar(_) => None,
    };
    let view = ContainerRoot::open(engine, c)?;
    let root = view.fd();
    let c = &view.container;

    // Docker's CLI stats the destination; a symlink there is replaced by its target.
    let mut dest_path = req.dest.to_string();
    let mut info = DestInfo {
        path: dest_path.clone(),
        exists: false,
        is_dir: false,
    };
    if let Ok(located) = locate(root, &dest_path) {
        if let Ok(mut st) = located.stat() {
            let mut ok = true;
            if is_symlink(&st) {
                match follow_in_scope(root, &located.path)
                    .and_then(|t| locate(root, &t).and_then(|l| Ok((t, l.stat()?))))
                {
                    Ok((target, now)) => {
                        dest_path = target;
                        st = now;
                    }
                    Err(_) => ok = false,
                }
            }
            info.path = dest_path.clone();
            if ok {
                let ty = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
                if !is_dir(&st) && !is_file(&st) {
                    let got = if ty == SFlag::S_IFCHR || ty == SFlag::S_IFBLK {
                        "got a device"
                    } else {
                        "got an irregular file"
                    };
                    return Err(FsError::Invalid(format!(
                        "destination \"{name}:{}\" must be a directory or a regular file: {got}",
                        req.dest
                    )));
                }
                info.exists = true;
                info.is_dir = is_dir(&st);
            }
        }
    }

    let (extract_dir, top) = match &local {
        None => {
            if !(info.exists && info.is_dir) {
                return Err(FsError::Invalid(format!(
                    "destination \"{name}:{}\" must be a directory",
                    req.dest
                )));
            }
            (info.path.clone(), String::new())
        }
        Some(src) => prepare(&info, src.is_dir, &src.base)?,
    };

    // The daemon's side: the extraction point with every symlink followed, which must be
    // an existing directory of a writable root.
    let abs = follow_in_scope(root, &extract_dir).map_err(not_found(&extract_dir, name))?;
    match locate(root, &abs).and_then(|l| l.stat()) {
        Ok(st) if is_dir(&st) => {}
        Ok(_) | Err(Errno::ENOTDIR) => {
            return Err(FsError::Invalid(
                "extraction point is not a directory".into(),
            ))
        }
        Err(e) => return Err(not_found(&extract_dir, name)(e)),
    }
    check_not_on_mount(engine, c, &abs, name)?;
    if c.options.run.read_only {
        return Err(FsError::Invalid(
            "container rootfs is marked read-only".into(),
        ));
    }
    let owner = match (req.archive, container_user(engine, c)) {
        (true, Some(user)) => {
            let users =
                crate::user::RootfsUsers::from_fd(view.fd().try_clone_to_owned().map_err(|e| {
                    FsError::Io {
                        what: "duplicating",
                        path: "the container's root".into(),
                        source: e,
                    }
                })?);
            let u = crate::user::resolve(&user, &[], &users)
                .map_err(|e| FsError::Invalid(format!("cp -a: user {user}: {e}")))?;
            Owner::Fixed(u.uid, u.gid)
        }
        _ => Owner::Entry,
    };

    let mut x = Extract::new(root, &abs, owner);
    let mut counting = Counting {
        inner: &mut x,
        bytes: 0,
    };
    match (req.source, &local) {
        (Source::Tar(input), _) => read_tar(input, &mut counting)?,
        (Source::Path(_), Some(src)) => walk(
            src.parent.as_fd(),
            &src.name,
            Path::new(&top),
            true,
            &WalkOptions::default(),
            &mut counting,
        )?,
        (Source::Path(_), None) => unreachable!("a path source is opened above"),
    }
    let bytes = counting.bytes;
    x.finish()?;
    Ok(Copied {
        bytes,
        dest: format!("{name}:{}", info.path),
    })
}

/// The user the container runs as (`-u`, else the image's `User`), if any.
fn container_user(engine: &Engine, c: &Container) -> Option<String> {
    if let Some(u) = c.options.run.user.as_deref().filter(|u| !u.is_empty()) {
        return Some(u.to_string());
    }
    let config = super::view::image_id(c)
        .ok()
        .and_then(|d| engine.images.blobs.read(&d).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())?;
    config["config"]["User"]
        .as_str()
        .filter(|u| !u.is_empty())
        .map(str::to_string)
}

/// Docker's `CopyInfo` of a destination.
struct DestInfo {
    path: String,
    exists: bool,
    is_dir: bool,
}

/// Docker's `PrepareArchiveCopy`: the directory to extract into and the name the
/// source's top entry gets there (`.`: the source's contents go straight in).
fn prepare(dst: &DestInfo, src_is_dir: bool, src_base: &str) -> Result<(String, String)> {
    let (dst_dir, dst_base) = split(&dst.path);
    if dst.exists && dst.is_dir {
        return Ok((dst.path.clone(), src_base.to_string()));
    }
    if dst.exists && src_is_dir {
        return Err(FsError::Invalid("cannot copy directory".into()));
    }
    if !dst.exists && !src_is_dir && asserts_dir(&dst.path) {
        return Err(FsError::Invalid("no such directory".into()));
    }
    Ok((dst_dir, dst_base))
}

/// Docker's name for the archived resource: the last part of the path asked for (`.`
/// for a path ending in `/.`, `/` for the root).
fn archive_name(path: &str) -> String {
    split(path).1
}

/// `resolved` with the trailing `/` or `/.` that `original` had.
fn preserve_trailing(resolved: &str, original: &str) -> String {
    let mut p = resolved.to_string();
    if (original == "." || original.ends_with("/.")) && !p.ends_with("/.") {
        if !p.ends_with('/') {
            p.push('/');
        }
        p.push('.');
    } else if original.ends_with('/') && !p.ends_with('/') {
        p.push('/');
    }
    p
}

/// A host path made absolute against the current directory and cleaned, keeping a
/// trailing `/` or `/.` (Docker's `resolveLocalPath`).
fn local_abs(path: &Path) -> Result<PathBuf> {
    let text = path.to_string_lossy();
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| FsError::Local {
                path: ".".into(),
                source: e,
            })?
            .join(path)
    };
    let clean = clean_abs(&joined.to_string_lossy());
    Ok(PathBuf::from(preserve_trailing(&clean, &text)))
}

/// Docker's `ValidateOutputPath`.
fn validate_output_path(path: &Path) -> Result<()> {
    let clean = clean_abs(&path.to_string_lossy());
    let dir = split(&clean).0;
    if !Path::new(&dir).exists() {
        return Err(FsError::Invalid(format!(
            "invalid output path: directory {dir:?} does not exist"
        )));
    }
    if let Ok(md) = std::fs::metadata(path) {
        let ft = md.file_type();
        if !md.is_dir() && !md.is_file() {
            let got = if ft.is_char_device() || ft.is_block_device() {
                "got a device"
            } else {
                "got an irregular file"
            };
            return Err(FsError::Invalid(format!(
                "invalid output path: {:?} must be a directory or a regular file: {got}",
                path.display().to_string()
            )));
        }
    }
    Ok(())
}

/// Docker's `CopyInfoDestinationPath` for a host destination: symlinks at the end are
/// followed (the copy goes to their target), a missing destination needs its parent.
fn host_dest_info(path: &Path) -> Result<DestInfo> {
    let local = |p: &Path| {
        let p = p.to_path_buf();
        move |source| FsError::Local { path: p, source }
    };
    let mut p = path.to_string_lossy().into_owned();
    let mut hops = 0;
    loop {
        match std::fs::symlink_metadata(&p) {
            Ok(md) if md.file_type().is_symlink() => {
                hops += 1;
                if hops > 10 {
                    return Err(FsError::Invalid(format!(
                        "too many symlinks in {}",
                        path.display()
                    )));
                }
                let target = std::fs::read_link(&p).map_err(local(Path::new(&p)))?;
                let target = target.to_string_lossy();
                p = if target.starts_with('/') {
                    target.into_owned()
                } else {
                    clean_abs(&format!("{}/{target}", split(&p).0))
                };
            }
            Ok(md) => {
                return Ok(DestInfo {
                    path: p,
                    exists: true,
                    is_dir: md.is_dir(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let parent = split(&p).0;
                let md = std::fs::metadata(&parent).map_err(local(Path::new(&parent)))?;
                if !md.is_dir() {
                    return Err(FsError::Invalid("not a directory".into()));
                }
                return Ok(DestInfo {
                    path: p,
                    exists: false,
                    is_dir: false,
                });
            }
            Err(e) => return Err(local(Path::new(&p))(e)),
        }
    }
}

/// A host source (Docker's `CopyInfoSourcePath`): symlinks in its directory part
/// followed, at its end only with `-L` (or a trailing `/`).
struct LocalSource {
    parent: OwnedFd,
    name: OsString,
    /// The name its top entry has in Docker's archive.
    base: String,
    is_dir: bool,
}

impl LocalSource {
    fn open(path: &Path, follow: bool) -> Result<LocalSource> {
        let abs = local_abs(path)?;
        let text = abs.to_string_lossy().into_owned();
        let missing = |p: &str| {
            let p = PathBuf::from(p);
            move |source| FsError::Local { path: p, source }
        };
        let (dir, base) = split(&text);
        let (parent_path, name, base) = if follow || asserts_dir(&text) || text == "/" {
            let full = std::fs::canonicalize(&abs).map_err(|e| lstat_error(&text, e))?;
            let md = std::fs::symlink_metadata(&full).map_err(missing(&text))?;
            let base = if base == "/" { ".".to_string() } else { base };
            if md.is_dir() {
                (full, OsString::from("."), base)
            } else {
                let name = full
                    .file_name()
                    .map(OsStr::to_os_string)
                    .unwrap_or_default();
                (
                    full.parent().map(Path::to_path_buf).unwrap_or_default(),
                    name,
                    base,
                )
            }
        } else {
            let dir = std::fs::canonicalize(&dir).map_err(|e| lstat_error(&text, e))?;
            (dir, OsString::from(&base), base)
        };
        let parent = open(
            &parent_path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| lstat_error(&text, e.into()))?;
        let stat = fstatat(&parent, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| lstat_error(&text, e.into()))?;
        Ok(LocalSource {
            parent,
            name,
            base,
            is_dir: is_dir(&stat),
        })
    }
}

/// Go's `lstat PATH: no such file or directory`, which Docker prints for a missing
/// host source.
fn lstat_error(path: &str, e: std::io::Error) -> FsError {
    let text = match e.raw_os_error() {
        Some(libc::ENOENT) => "no such file or directory".to_string(),
        Some(libc::ENOTDIR) => "not a directory".to_string(),
        _ => e.to_string(),
    };
    FsError::Invalid(format!("lstat {path}: {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(path: &str, exists: bool, is_dir: bool) -> DestInfo {
        DestInfo {
            path: path.into(),
            exists,
            is_dir,
        }
    }

    #[test]
    fn docker_copy_rules() {
        // Into an existing directory: the source keeps its name ("." = its contents).
        assert_eq!(
            prepare(&info("/d", true, true), false, "f").unwrap(),
            ("/d".into(), "f".into())
        );
        assert_eq!(
            prepare(&info("/d", true, true), true, ".").unwrap(),
            ("/d".into(), ".".into())
        );
        // Onto an existing file: it is replaced; a directory cannot be.
        assert_eq!(
            prepare(&info("/d/x", true, false), false, "f").unwrap(),
            ("/d".into(), "x".into())
        );
        assert_eq!(
            prepare(&info("/d/x", true, false), true, "dir")
                .unwrap_err()
                .to_string(),
            "cannot copy directory"
        );
        // A new name: a file or a directory is created under it.
        assert_eq!(
            prepare(&info("/d/new", false, false), true, "dir").unwrap(),
            ("/d".into(), "new".into())
        );
        assert_eq!(
            prepare(&info("/d/new", false, false), false, "f").unwrap(),
            ("/d".into(), "new".into())
        );
        assert_eq!(
            prepare(&info("/d/new/", false, false), false, "f")
                .unwrap_err()
                .to_string(),
            "no such directory"
        );
        assert_eq!(archive_name("/etc/"), "etc");
        assert_eq!(archive_name("/etc/."), ".");
        assert_eq!(archive_name("hosts"), "hosts");
        assert_eq!(preserve_trailing("/target", "/link/."), "/target/.");
        assert_eq!(preserve_trailing("/target", "/link/"), "/target/");
        assert_eq!(preserve_trailing("/target", "/link"), "/target");
    }

    #[test]
    fn host_destinations() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        std::fs::create_dir(t.join("dir")).unwrap();
        std::os::unix::fs::symlink("dir", t.join("link")).unwrap();
        let i = host_dest_info(&t.join("link")).unwrap();
        assert_eq!(
            (i.path, i.exists, i.is_dir),
            (t.join("dir").display().to_string(), true, true)
        );
        let i = host_dest_info(&t.join("new")).unwrap();
        assert!(!i.exists);
        assert!(host_dest_info(&t.join("no/new")).is_err());
        let e = validate_output_path(&t.join("no/new"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid output path: directory"), "{e}");
        let e = validate_output_path(Path::new("/dev/null"))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "invalid output path: \"/dev/null\" must be a directory or a regular file: got a device");
    }
}
