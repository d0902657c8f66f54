//! A tree as a stream of [`Entry`]s: read from directories through fds ([`walk`]) or
//! from a tar ([`read_tar`]), and written as a tar ([`TarSink`]) or into a tree
//! ([`super::extract::Extract`]).
//!
//! The walk never follows a symlink: each directory is opened with O_NOFOLLOW relative
//! to its parent's fd, each file with O_NOFOLLOW | O_NONBLOCK (a fifo cannot hang it) and
//! checked to be the regular file that was listed. A file that disappears under a
//! running container is left out; one that shrinks is padded, one that grows is cut, so
//! the tar stays well-formed. Sockets are left out, as Docker does.

use super::{io_err, FsError, Result};
use image::xattr::Node;
use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, major, minor, FileStat, Mode, SFlag};
use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink(OsString),
    /// A second name for a file earlier in the same stream (its path there).
    HardLink(PathBuf),
    Char(u64, u64),
    Block(u64, u64),
    Fifo,
}

/// One node of a tree, as a tar header describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative, `/`-separated; from a tar it is whatever the archive says.
    pub path: PathBuf,
    pub kind: Kind,
    /// Content length (regular files only).
    pub size: u64,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch (tar, and Docker's layers, keep whole seconds).
    pub mtime: i64,
    pub xattrs: Vec<(CString, Vec<u8>)>,
}

/// Where entries go. `data` yields exactly `entry.size` bytes for a file, nothing else.
pub trait Sink {
    fn put(&mut self, entry: &Entry, data: &mut dyn Read) -> Result<()>;
}

pub const WHITEOUT_PREFIX: &str = ".wh.";
pub const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
pub const OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";

/// How [`walk`] reads a tree.
#[derive(Default)]
pub struct WalkOptions<'a> {
    /// Read an overlay upper directory as a layer: whiteouts (character devices 0/0)
    /// become OCI `.wh.NAME` files and opaque directories get a `.wh..wh..opq` entry.
    pub oci_whiteouts: bool,
    /// Leaves out a node (and what is under it); gets the node's path from the walk's
    /// start (`/etc/hosts`) and its lstat.
    #[allow(clippy::type_complexity)]
    pub skip: Option<&'a dyn Fn(&str, &FileStat) -> bool>,
}

/// A directory being walked: its fd, its names (sorted, as Docker's walk), the next one.
struct Frame {
    dir: OwnedFd,
    names: Vec<OsString>,
    next: usize,
    /// Path in the output (`top/sub`).
    out: PathBuf,
    /// Path from the walk's start (`/sub`), for `skip`.
    rel: String,
}

/// Walks the node `name` of directory `parent` (`.` for `parent` itself) and everything
/// under it, giving each node to `sink` under `top` joined with its path below the
/// node. With `include_top` false the node itself is not given (an export's root).
pub fn walk(
    parent: BorrowedFd,
    name: &OsStr,
    top: &Path,
    include_top: bool,
    opts: &WalkOptions,
    sink: &mut dyn Sink,
) -> Result<()> {
    let shown = top.display().to_string();
    let st =
        fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(io_err("lstat", &shown))?;
    let mut links = HashMap::new();
    if include_top {
        emit(parent, name, top, &st, &mut links, sink)?;
    }
    if !super::resolve::is_dir(&st) {
        return Ok(());
    }
    let mut stack = vec![open_frame(parent, name, top.to_path_buf(), String::new())?];
    if opts.oci_whiteouts && include_top {
        opaque_marker(&stack[0], &st, sink)?;
    }
    while let Some(frame) = stack.last_mut() {
        let Some(child) = frame.names.get(frame.next).cloned() else {
            stack.pop();
            continue;
        };
        frame.next += 1;
        let out = frame.out.join(&child);
        let rel = format!("{}/{}", frame.rel, child.to_string_lossy());
        let st = match fstatat(&frame.dir, child.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            // Removed since the listing (a running container): not there any more.
            Err(Errno::ENOENT) => continue,
            other => other.map_err(io_err("lstat", out.display()))?,
        };
        if opts.skip.is_some_and(|skip| skip(&rel, &st)) {
            continue;
        }
        let kind = file_type(&st);
        if kind == SFlag::S_IFSOCK {
            continue;
        }
        if opts.oci_whiteouts && is_whiteout(&st) {
            let mut name = OsString::from(WHITEOUT_PREFIX);
            name.push(&child);
            let entry = Entry {
                path: frame.out.join(name),
                kind: Kind::File,
                size: 0,
                mode: 0o600,
                uid: st.st_uid,
                gid: st.st_gid,
                mtime: st.st_mtime,
                xattrs: vec![],
            };
            sink.put(&entry, &mut io::empty())?;
            continue;
        }
        let dir = frame.dir.as_fd();
        if !emit(dir, &child, &out, &st, &mut links, sink)? || kind != SFlag::S_IFDIR {
            continue;
        }
        let sub = match open_frame(dir, &child, out, rel) {
            Ok(sub) => sub,
            Err(FsError::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
                continue
            }
            Err(e) => return Err(e),
        };
        if opts.oci_whiteouts {
            opaque_marker(&sub, &st, sink)?;
        }
        stack.push(sub);
    }
    Ok(())
}

fn open_frame(parent: BorrowedFd, name: &OsStr, out: PathBuf, rel: String) -> Result<Frame> {
    let shown = out.display().to_string();
    let dir = openat(
        parent,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err("opening directory", &shown))?;
    let names = list_dir(dir.as_fd()).map_err(io_err("listing", &shown))?;
    Ok(Frame {
        dir,
        names,
        next: 0,
        out,
        rel,
    })
}

/// The names in a directory, sorted bytewise.
pub fn list_dir(dir: BorrowedFd) -> nix::Result<Vec<OsString>> {
    let mut listing = Dir::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for item in listing.iter() {
        let item = item?;
        let name = OsStr::from_bytes(item.file_name().to_bytes());
        if name != "." && name != ".." {
            names.push(name.to_os_string());
        }
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// An opaque directory of an upper dir gets `DIR/.wh..wh..opq` right after its own entry.
fn opaque_marker(frame: &Frame, st: &FileStat, sink: &mut dyn Sink) -> Result<()> {
    let value = get_xattr(frame.dir.as_fd(), OsStr::new("."), OPAQUE_XATTR)
        .map_err(io_err("reading xattrs of", frame.out.display()))?;
    if value.as_deref() != Some(b"y") {
        return Ok(());
    }
    let entry = Entry {
        path: frame.out.join(WHITEOUT_OPAQUE),
        kind: Kind::File,
        size: 0,
        mode: st.st_mode & 0o777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime: st.st_mtime,
        xattrs: vec![],
    };
    sink.put(&entry, &mut io::empty())
}

pub fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

/// overlayfs's whiteout: a character device 0/0.
pub fn is_whiteout(st: &FileStat) -> bool {
    file_type(st) == SFlag::S_IFCHR && st.st_rdev == 0
}

/// Gives one node to the sink. False when it vanished before it could be read.
fn emit(
    dir: BorrowedFd,
    name: &OsStr,
    out: &Path,
    st: &FileStat,
    links: &mut HashMap<(u64, u64), PathBuf>,
    sink: &mut dyn Sink,
) -> Result<bool> {
    let shown = out.display().to_string();
    let ty = file_type(st);
    let mut entry = Entry {
        path: out.to_path_buf(),
        kind: Kind::File,
        size: 0,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime: st.st_mtime,
        xattrs: vec![],
    };
    if ty != SFlag::S_IFDIR && st.st_nlink > 1 {
        let key = (st.st_dev, st.st_ino);
        if let Some(first) = links.get(&key) {
            entry.kind = Kind::HardLink(first.clone());
            sink.put(&entry, &mut io::empty())?;
            return Ok(true);
        }
        links.insert(key, out.to_path_buf());
    }
    if ty == SFlag::S_IFREG {
        // Opened first, so its xattrs are read through the fd.
        let file = match open_regular(dir, name, st) {
            Ok(f) => f,
            Err(Errno::ENOENT) => return Ok(false),
            Err(e) => return Err(io_err("opening", &shown)(e)),
        };
        entry.xattrs = Node::Fd(file.as_fd())
            .all_but_overlay()
            .map_err(io_err("reading xattrs of", &shown))?;
        entry.size = st.st_size.max(0) as u64;
        let mut data = Exact::new(file, entry.size);
        sink.put(&entry, &mut data)?;
        if let Some(e) = data.error.take() {
            return Err(io_err("reading", &shown)(e));
        }
        return Ok(true);
    }
    entry.xattrs = match list_xattrs(dir, name) {
        Ok(x) => x,
        Err(Errno::ENOENT) => return Ok(false),
        Err(e) => return Err(io_err("reading xattrs of", &shown)(e)),
    };
    let dev = |st: &FileStat| (major(st.st_rdev), minor(st.st_rdev));
    entry.kind = match ty {
        SFlag::S_IFDIR => Kind::Dir,
        SFlag::S_IFLNK => match readlinkat(dir, name) {
            Ok(target) => Kind::Symlink(target),
            Err(Errno::ENOENT) => return Ok(false),
            Err(e) => return Err(io_err("reading link", &shown)(e)),
        },
        SFlag::S_IFCHR => Kind::Char(dev(st).0, dev(st).1),
        SFlag::S_IFBLK => Kind::Block(dev(st).0, dev(st).1),
        SFlag::S_IFIFO => Kind::Fifo,
        _ => Kind::File,
    };
    if entry.kind != Kind::File {
        sink.put(&entry, &mut io::empty())?;
        return Ok(true);
    }
    let file = match open_regular(dir, name, st) {
        Ok(f) => f,
        Err(Errno::ENOENT) => return Ok(false),
        Err(e) => return Err(io_err("opening", &shown)(e)),
    };
    entry.size = st.st_size.max(0) as u64;
    let mut data = Exact::new(file, entry.size);
    sink.put(&entry, &mut data)?;
    if let Some(e) = data.error.take() {
        return Err(io_err("reading", &shown)(e));
    }
    Ok(true)
}

/// Opens `name` for reading if it is still the regular file `st` describes (a container
/// may have swapped in a fifo, a device or a symlink meanwhile).
fn open_regular(dir: BorrowedFd, name: &OsStr, st: &FileStat) -> nix::Result<std::fs::File> {
    let fd = openat(
        dir,
        name,
        OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_CLOEXEC
            | OFlag::O_NOCTTY,
        Mode::empty(),
    )?;
    let now = fstat(&fd)?;
    if file_type(&now) != SFlag::S_IFREG || now.st_ino != st.st_ino || now.st_dev != st.st_dev {
        return Err(Errno::ENOENT);
    }
    Ok(std::fs::File::from(fd))
}

/// Exactly `left` bytes of a file that may change while it is read: short content is
/// padded with zeros, anything past the size is not read. A read error ends the data
/// (zeros follow) and is kept for the caller, since the tar writer cannot tell it apart.
struct Exact<R> {
    inner: R,
    left: u64,
    eof: bool,
    error: Option<io::Error>,
}

impl<R: Read> Exact<R> {
    fn new(inner: R, left: u64) -> Self {
        Exact {
            inner,
            left,
            eof: false,
            error: None,
        }
    }
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = if self.eof {
            buf[..want].fill(0);
            want
        } else {
            match self.inner.read(&mut buf[..want]) {
                Ok(0) => {
                    self.eof = true;
                    buf[..want].fill(0);
                    want
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
                Err(e) => {
                    self.eof = true;
                    self.error = Some(e);
                    buf[..want].fill(0);
                    want
                }
            }
        };
        self.left -= n as u64;
        Ok(n)
    }
}

/// The xattrs of `name` in `dir` (not following a symlink), overlayfs's own left out.
pub fn list_xattrs(dir: BorrowedFd, name: &OsStr) -> nix::Result<Vec<(CString, Vec<u8>)>> {
    Node::at(dir, name)?.all_but_overlay()
}

/// One xattr of `name` in `dir`, None when it is not set.
pub fn get_xattr(dir: BorrowedFd, name: &OsStr, key: &CStr) -> nix::Result<Option<Vec<u8>>> {
    Node::at(dir, name)?.get(key)
}

/// Writes entries as a tar (ustar headers, PAX records for long names and xattrs), as
/// Docker's archives: directories end in `/`, times are whole seconds.
pub struct TarSink<W: Write> {
    builder: tar::Builder<W>,
}

impl<W: Write> TarSink<W> {
    pub fn new(out: W) -> Self {
        TarSink {
            builder: tar::Builder::new(out),
        }
    }

    /// Writes the end-of-archive blocks and returns the writer.
    pub fn finish(self) -> Result<W> {
        self.builder.into_inner().map_err(FsError::Output)
    }
}

const NAME_FIELD: usize = 100;

impl<W: Write> Sink for TarSink<W> {
    fn put(&mut self, e: &Entry, data: &mut dyn Read) -> Result<()> {
        let mut header = tar::Header::new_ustar();
        let mut name = e.path.as_os_str().as_bytes().to_vec();
        if e.kind == Kind::Dir && !name.ends_with(b"/") {
            name.push(b'/');
        }
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        if name.len() > NAME_FIELD {
            pax.push(("path".into(), name.clone()));
            name.truncate(NAME_FIELD);
        }
        header.as_old_mut().name[..name.len()].copy_from_slice(&name);
        let (ty, link): (tar::EntryType, Option<&[u8]>) = match &e.kind {
            Kind::File => (tar::EntryType::Regular, None),
            Kind::Dir => (tar::EntryType::Directory, None),
            Kind::Symlink(t) => (tar::EntryType::Symlink, Some(t.as_bytes())),
            Kind::HardLink(t) => (tar::EntryType::Link, Some(t.as_os_str().as_bytes())),
            Kind::Char(..) => (tar::EntryType::Char, None),
            Kind::Block(..) => (tar::EntryType::Block, None),
            Kind::Fifo => (tar::EntryType::Fifo, None),
        };
        header.set_entry_type(ty);
        if let Some(link) = link {
            if link.len() > NAME_FIELD {
                pax.push(("linkpath".into(), link.to_vec()));
            }
            let n = link.len().min(NAME_FIELD);
            header.as_old_mut().linkname[..n].copy_from_slice(&link[..n]);
        }
        if let Kind::Char(ma, mi) | Kind::Block(ma, mi) = e.kind {
            let field = |v: u64| u32::try_from(v).map_err(|_| Errno::EOVERFLOW);
            let (ma, mi) = (field(ma), field(mi));
            let (Ok(ma), Ok(mi)) = (ma, mi) else {
                return Err(io_err("device numbers of", e.path.display())(
                    Errno::EOVERFLOW,
                ));
            };
            header.set_device_major(ma).map_err(FsError::Output)?;
            header.set_device_minor(mi).map_err(FsError::Output)?;
        }
        for (key, value) in &e.xattrs {
            if let Ok(key) = key.to_str() {
                pax.push((format!("SCHILY.xattr.{key}"), value.clone()));
            }
        }
        let size = if e.kind == Kind::File { e.size } else { 0 };
        header.set_size(size);
        header.set_mode(e.mode);
        header.set_uid(e.uid.into());
        header.set_gid(e.gid.into());
        header.set_mtime(e.mtime.max(0) as u64);
        header.set_cksum();
        if !pax.is_empty() {
            self.builder
                .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(FsError::Output)?;
        }
        self.builder
            .append(&header, data.take(size))
            .map_err(FsError::Output)
    }
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// A tar stream, gzip or zstd compressed or plain (as Docker's `cp -` accepts), given
/// to `sink` entry by entry. Names are passed on as the archive has them.
pub fn read_tar(input: impl Read, sink: &mut dyn Sink) -> Result<()> {
    let mut input = io::BufReader::new(input);
    let head = io::BufRead::fill_buf(&mut input)
        .map_err(FsError::Archive)?
        .to_vec();
    let stream: Box<dyn Read> = if head.starts_with(GZIP_MAGIC) {
        Box::new(flate2::read::MultiGzDecoder::new(input))
    } else if head.starts_with(ZSTD_MAGIC) {
        Box::new(zstd::stream::read::Decoder::new(input).map_err(FsError::Archive)?)
    } else {
        Box::new(input)
    };
    let mut archive = tar::Archive::new(stream);
    for item in archive.entries().map_err(FsError::Archive)? {
        let mut item = item.map_err(FsError::Archive)?;
        let Some(entry) = entry_of(&mut item)? else {
            continue;
        };
        sink.put(&entry, &mut item)?;
    }
    Ok(())
}

/// The entry a tar header describes; None for headers that describe no file.
fn entry_of<R: Read>(item: &mut tar::Entry<R>) -> Result<Option<Entry>> {
    let raw = item.path_bytes().into_owned();
    let shown = String::from_utf8_lossy(&raw).into_owned();
    let bad = |e: io::Error| FsError::Archive(io::Error::new(e.kind(), format!("{shown}: {e}")));
    let h = item.header();
    let link = || {
        item.link_name_bytes()
            .map(|l| OsStr::from_bytes(&l).to_os_string())
            .ok_or_else(|| bad(io::Error::new(io::ErrorKind::InvalidData, "no link target")))
    };
    let dev = || -> Result<(u64, u64)> {
        Ok((
            h.device_major().map_err(bad)?.unwrap_or(0).into(),
            h.device_minor().map_err(bad)?.unwrap_or(0).into(),
        ))
    };
    let kind = match h.entry_type() {
        tar::EntryType::Regular if h.as_old().linkflag[0] == 0 && raw.ends_with(b"/") => Kind::Dir,
        tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
        tar::EntryType::Directory => Kind::Dir,
        tar::EntryType::Symlink => Kind::Symlink(link()?),
        tar::EntryType::Link => Kind::HardLink(PathBuf::from(link()?)),
        tar::EntryType::Char => {
            let (a, b) = dev()?;
            Kind::Char(a, b)
        }
        tar::EntryType::Block => {
            let (a, b) = dev()?;
            Kind::Block(a, b)
        }
        tar::EntryType::Fifo => Kind::Fifo,
        tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => return Ok(None),
        other if other.as_byte() == b'V' => return Ok(None),
        other => {
            return Err(bad(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("unsupported entry type {other:?}"),
            )))
        }
    };
    let mut entry = Entry {
        path: PathBuf::from(OsStr::from_bytes(&raw)),
        size: if kind == Kind::File {
            h.size().map_err(bad)?
        } else {
            0
        },
        kind,
        mode: h.mode().map_err(bad)? & 0o7777,
        // Empty numeric fields read as 0, as Go's archive/tar (Docker's) reads them.
        uid: h
            .uid()
            .ok()
            .and_then(|u| u32::try_from(u).ok())
            .unwrap_or(0),
        gid: h
            .gid()
            .ok()
            .and_then(|g| u32::try_from(g).ok())
            .unwrap_or(0),
        mtime: h
            .mtime()
            .ok()
            .and_then(|t| i64::try_from(t).ok())
            .unwrap_or(0),
        xattrs: vec![],
    };
    if let Some(records) = item.pax_extensions().map_err(bad)? {
        for record in records {
            let record = record.map_err(bad)?;
            if let Some(key) = record.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                if let Ok(key) = CString::new(key) {
                    entry.xattrs.push((key, record.value_bytes().to_vec()));
                }
            }
        }
    }
    Ok(Some(entry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// Collects entries with their data.
    #[derive(Default)]
    struct Collect(Vec<(Entry, Vec<u8>)>);

    impl Sink for Collect {
        fn put(&mut self, entry: &Entry, data: &mut dyn Read) -> Result<()> {
            let mut buf = Vec::new();
            data.read_to_end(&mut buf).unwrap();
            assert_eq!(buf.len() as u64, entry.size);
            self.0.push((entry.clone(), buf));
            Ok(())
        }
    }

    fn dir_fd(p: &Path) -> OwnedFd {
        nix::fcntl::open(p, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap()
    }

    #[test]
    fn walks_sorted_without_following_links_and_round_trips_through_tar() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("d");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("b"), "bee").unwrap();
        std::fs::write(d.join("sub/a"), "a".repeat(3000)).unwrap();
        std::fs::hard_link(d.join("b"), d.join("c")).unwrap();
        symlink("/etc", d.join("etc")).unwrap();
        let long = "x".repeat(150);
        std::fs::write(d.join(&long), "long").unwrap();
        let fd = dir_fd(tmp.path());
        let mut got = Collect::default();
        let opts = WalkOptions::default();
        walk(
            fd.as_fd(),
            OsStr::new("d"),
            Path::new("top"),
            true,
            &opts,
            &mut got,
        )
        .unwrap();
        let names: Vec<String> = got
            .0
            .iter()
            .map(|(e, _)| e.path.display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "top",
                "top/b",
                "top/c",
                "top/etc",
                "top/sub",
                "top/sub/a",
                &format!("top/{long}")
            ]
        );
        assert_eq!(got.0[2].0.kind, Kind::HardLink("top/b".into()));
        assert_eq!(got.0[3].0.kind, Kind::Symlink("/etc".into()));
        assert_eq!(got.0[5].1.len(), 3000);

        let mut tar = TarSink::new(Vec::new());
        for (e, data) in &got.0 {
            tar.put(e, &mut data.as_slice()).unwrap();
        }
        let bytes = tar.finish().unwrap();
        let mut back = Collect::default();
        read_tar(bytes.as_slice(), &mut back).unwrap();
        let mut want = got.0.clone();
        want[0].0.path = "top/".into();
        want[4].0.path = "top/sub/".into();
        assert_eq!(back.0, want);

        // The same stream gzip-compressed reads the same.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&bytes).unwrap();
        let mut again = Collect::default();
        read_tar(gz.finish().unwrap().as_slice(), &mut again).unwrap();
        assert_eq!(again.0, want);
    }

    #[test]
    fn exact_reader_pads_and_cuts() {
        let mut out = Vec::new();
        Exact::new(&b"abc"[..], 5).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abc\0\0");
        out.clear();
        Exact::new(&b"abcdef"[..], 2).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"ab");
    }
}
