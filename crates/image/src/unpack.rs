//! Layer unpacking: applies one OCI image layer (a tar stream, plain or gzip or zstd
//! compressed) to an empty snapshot directory that overlayfs will later stack.
//!
//! The `tar` crate only parses; every file is created here with *at syscalls relative to a
//! parent directory resolved by openat2(RESOLVE_IN_ROOT) under an O_PATH fd of the snapshot.
//! Absolute names, `..` inside symlinks and symlinks planted by earlier entries therefore
//! resolve inside the snapshot and can never redirect a write to the host. Names with a `..`
//! component are refused outright, as Docker does.
//!
//! The parent directory's fd is kept for the next entry with the same parent (tar lists a
//! directory's entries together) until anything is removed from the snapshot: creating a
//! name that did not exist cannot change what an existing path resolves to, only removing
//! or replacing one can (a directory or symlink on the way becoming something else), and
//! every removal goes through `Snapshot::clear`, which drops the kept fd. A stale fd would
//! put files in the wrong directory, still one resolved inside the snapshot.
//!
//! OCI whiteouts become what overlayfs understands: `.wh.NAME` a character device 0/0 named
//! NAME, `.wh..wh..opq` the xattr `trusted.overlay.opaque=y` on its directory.
//!
//! The stream is decompressed on the calling thread and hashed and applied on a worker,
//! so the two halves of the work run side by side.
//!
//! On error the snapshot is left half-written; the caller deletes it.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstatat, futimens, makedev, mkdirat, mknodat, utimensat, FchmodatFlags, Mode,
    SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use sha2::{Digest, Sha256};
use tar::EntryType;

use crate::gzip::Gunzip;
use crate::xattr;

/// What one layer left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// `sha256:<hex>` of the uncompressed tar stream (the layer's diff_id in the image config).
    pub diff_id: String,
    /// Tar entries applied, whiteouts included; PAX global headers and the like not counted.
    pub entries: u64,
    /// Length of the uncompressed tar stream, end padding included.
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("opening snapshot directory {}: {source}", path.display())]
    Dest { path: PathBuf, source: io::Error },
    /// `after` is the last entry read, empty before the first.
    #[error("reading layer stream {}: {source}", stream_position(.after))]
    Stream { after: String, source: io::Error },
    #[error("layer entry {path:?}: {reason}")]
    Refused { path: String, reason: String },
    #[error("layer entry {path:?}: {what}: {source}")]
    Apply {
        path: String,
        what: &'static str,
        source: io::Error,
    },
    #[error("starting the thread that creates the layer's files: {0}")]
    Thread(io::Error),
}

fn stream_position(after: &str) -> String {
    if after.is_empty() {
        "before the first entry".to_owned()
    } else {
        format!("(last entry {after:?})")
    }
}

/// Unpacks the layer read from `blob` into `dest`, an existing, empty directory.
///
/// The metadata of `dest` itself is left alone (entries named `/` or `.` are counted but not
/// applied). Hard links get no metadata of their own: they share their target's inode.
/// `trusted.overlay.*` xattrs in the layer are dropped: overlayfs acts on them (redirects,
/// metacopy) and only whiteouts may steer the mount.
///
/// On error `dest` holds a partial layer and the caller must delete it.
///
/// Returns once the files' data is on disk (their metadata is the caller's to sync); see
/// [`unpack_layer_unsynced`] for not waiting.
pub fn unpack_layer(blob: impl Read, dest: &Path) -> Result<Unpacked, Error> {
    unpack(blob, dest, true)
}

/// [`unpack_layer`] without waiting for the disk: the files are left to the kernel's
/// writeback. For a caller that records the layer as not yet durable and syncs later
/// (`pending`).
pub fn unpack_layer_unsynced(blob: impl Read, dest: &Path) -> Result<Unpacked, Error> {
    unpack(blob, dest, false)
}

fn unpack(blob: impl Read, dest: &Path, wait_for_data: bool) -> Result<Unpacked, Error> {
    let root = nix::fcntl::open(
        dest,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::Dest {
        path: dest.to_path_buf(),
        source: e.into(),
    })?;
    let mut stream = decompress(blob).map_err(|source| Error::Stream {
        after: String::new(),
        source,
    })?;
    // Decompressing (this thread), and hashing and creating the files (a worker) take about
    // the same time for a typical layer; side by side they take half as long.
    let (blocks, received) = sync_channel(IN_FLIGHT);
    let (recycle, recycled) = channel();
    let (fed, (last, applied)) = std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("layer-unpack".into())
            .spawn_scoped(scope, move || {
                apply_all(Blocks::new(received, recycle), root, wait_for_data)
            })
            .map_err(Error::Thread)?;
        let fed = feed(&mut stream, &blocks, &recycled);
        // Without the end marker the worker reads an error, not a clean end.
        drop(blocks);
        let applied = worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        Ok((fed, applied))
    })?;
    // A failed stream is the error, whatever the worker made of its end. Otherwise, if the
    // worker stopped taking blocks, `applied` holds its error.
    if let Err(source) = fed {
        return Err(Error::Stream {
            after: last,
            source,
        });
    }
    applied
}

/// Blocks of the uncompressed stream queued for the worker: enough to ride out a slow file
/// create without holding much memory (each is `BLOCK` bytes).
const IN_FLIGHT: usize = 4;

/// A block of the uncompressed stream; `len == 0` marks its end.
struct Block {
    data: Box<[u8]>,
    len: usize,
}

/// Reads the whole stream into blocks for the worker, reusing the blocks it hands back:
/// tar stops at the end-of-archive blocks, but the diff_id covers the record padding after
/// them too (and a compressor's trailer must be checked). Returns false if the worker
/// stopped taking blocks (it failed, and says why).
fn feed(
    stream: &mut impl Read,
    blocks: &SyncSender<Block>,
    recycled: &Receiver<Box<[u8]>>,
) -> io::Result<bool> {
    loop {
        let mut data = match recycled.try_recv() {
            Ok(data) if data.len() == BLOCK => data,
            _ => vec![0; BLOCK].into_boxed_slice(),
        };
        let len = fill(stream, &mut data)?;
        if blocks.send(Block { data, len }).is_err() {
            return Ok(false);
        }
        if len == 0 {
            return Ok(true);
        }
    }
}

/// The worker: applies every entry of the tar stream to the snapshot at `root`, and hashes
/// the stream. Also returns the last entry's name (for errors).
fn apply_all(
    mut stream: Blocks,
    root: OwnedFd,
    wait_for_data: bool,
) -> (String, Result<Unpacked, Error>) {
    let mut snapshot = Snapshot::new(root, wait_for_data);
    let mut last = String::new();
    let applied = (|| {
        for entry in tar::Archive::new(&mut stream)
            .entries()
            .map_err(|source| Error::Stream {
                after: String::new(),
                source,
            })?
        {
            let mut entry = entry.map_err(|source| Error::Stream {
                after: last.clone(),
                source,
            })?;
            last = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            snapshot.apply(&mut entry, &last)?;
        }
        // The rest is part of the diff_id too.
        io::copy(&mut stream, &mut io::sink()).map_err(|source| Error::Stream {
            after: last.clone(),
            source,
        })?;
        snapshot.set_dir_times()?;
        snapshot
            .writeback
            .wait()
            .map_err(failed(&last, "writing file contents to disk"))?;
        Ok(Unpacked {
            diff_id: format!("sha256:{}", hex::encode(stream.sha.finalize_reset())),
            entries: snapshot.entries,
            bytes: stream.bytes,
        })
    })();
    (last, applied)
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// Picks the decompressor from the first bytes of the blob.
fn decompress<'a, R: Read + 'a>(mut blob: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut magic = [0u8; 4];
    let mut len = 0;
    while len < magic.len() {
        match blob.read(&mut magic[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let head = &magic[..len];
    let whole = io::Cursor::new(head.to_vec()).chain(blob);
    Ok(if head.starts_with(GZIP_MAGIC) {
        // Multi-member, like Go's gzip reader that Docker uses; no CRC, as the diff_id
        // covers the output.
        Box::new(Gunzip::new(whole))
    } else if head.starts_with(ZSTD_MAGIC) {
        Box::new(zstd::stream::read::Decoder::new(whole)?)
    } else {
        Box::new(whole)
    })
}

/// Uncompressed bytes decompressed at once. Large blocks matter: tar reads 512-byte
/// headers and small files, and small reads straight from a decompressor cost a call into
/// it each (zlib also leaves its fast path without room for a whole match), which had
/// inflate run at half its speed.
const BLOCK: usize = 256 << 10;

/// Fills `block` as far as the stream goes; 0 at its end.
fn fill(stream: &mut impl Read, block: &mut [u8]) -> io::Result<usize> {
    let mut len = 0;
    while len < block.len() {
        match stream.read(&mut block[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(len)
}

/// The worker's side of the stream: tar's reads served from the blocks the feeding thread
/// sends, each hashed and counted as it arrives and handed back for reuse once read.
struct Blocks {
    blocks: Receiver<Block>,
    recycle: Sender<Box<[u8]>>,
    current: Block,
    pos: usize,
    /// The end marker arrived.
    ended: bool,
    sha: Sha256,
    bytes: u64,
}

impl Blocks {
    fn new(blocks: Receiver<Block>, recycle: Sender<Box<[u8]>>) -> Self {
        Blocks {
            blocks,
            recycle,
            current: Block {
                data: Box::new([]),
                len: 0,
            },
            pos: 0,
            ended: false,
            sha: Sha256::new(),
            bytes: 0,
        }
    }
}

impl Read for Blocks {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len {
            if self.ended {
                return Ok(0);
            }
            let Ok(next) = self.blocks.recv() else {
                // The feeding thread failed; it reports why.
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "layer stream stopped",
                ));
            };
            let done = std::mem::replace(&mut self.current, next);
            // The feeding thread may be gone already: then nothing needs the block.
            let _ = self.recycle.send(done.data);
            self.pos = 0;
            self.ended = self.current.len == 0;
            self.sha.update(&self.current.data[..self.current.len]);
            self.bytes += self.current.len as u64;
        }
        let n = out.len().min(self.current.len - self.pos);
        out[..n].copy_from_slice(&self.current.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A layer path, relative to the snapshot root: its parent directory and final name.
struct LayerPath {
    parent: PathBuf,
    /// `None` for the root itself (`/`, `.`, empty).
    name: Option<OsString>,
}

impl LayerPath {
    /// Drops leading `/`, `.` and empty components; refuses `..`.
    fn parse(raw: &[u8]) -> Result<LayerPath, &'static str> {
        let mut parts = Vec::new();
        for part in raw.split(|b| *b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => return Err("path has a `..` component"),
                _ => parts.push(OsStr::from_bytes(part)),
            }
        }
        let name = parts.pop().map(OsStr::to_os_string);
        Ok(LayerPath {
            parent: parts.iter().collect(),
            name,
        })
    }

    fn join(&self, name: &OsStr) -> PathBuf {
        self.parent.join(name)
    }
}

/// What a name inside a layer means to overlayfs.
enum Whiteout {
    /// `.wh..wh..opq`: hide everything below this directory in lower layers.
    Opaque,
    /// `.wh.NAME`: hide NAME of lower layers.
    Hide(OsString),
    /// Other `.wh..wh.*` names: AUFS bookkeeping, never created.
    Skip,
}

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";

fn whiteout(name: &OsStr) -> Result<Option<Whiteout>, &'static str> {
    let bytes = name.as_bytes();
    if bytes == WHITEOUT_OPAQUE {
        return Ok(Some(Whiteout::Opaque));
    }
    if bytes.starts_with(WHITEOUT_META_PREFIX) {
        return Ok(Some(Whiteout::Skip));
    }
    match bytes.strip_prefix(WHITEOUT_PREFIX) {
        None => Ok(None),
        Some(b"" | b".") => Err("whiteout names no file"),
        Some(b"..") => Err("whiteout name has a `..` component"),
        Some(hidden) => Ok(Some(Whiteout::Hide(OsStr::from_bytes(hidden).into()))),
    }
}

/// The kinds of node metadata is applied to differently by name (regular files get theirs
/// through their fd: `set_file_meta`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Node {
    Dir,
    Symlink,
    Special,
}

/// Ownership, mode, xattrs and mtime of one entry.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: TimeSpec,
    xattrs: Vec<(CString, Vec<u8>)>,
}

const XATTR_PAX_PREFIX: &[u8] = b"SCHILY.xattr.";
const OVERLAY_XATTR_PREFIX: &[u8] = b"trusted.overlay.";

impl Meta {
    fn read<R: Read>(entry: &mut tar::Entry<R>, shown: &str) -> Result<Meta, Error> {
        let header = entry.header();
        let bad_header = |source| Error::Apply {
            path: shown.to_owned(),
            what: "reading header",
            source,
        };
        let uid = header.uid().map_err(bad_header)?;
        let gid = header.gid().map_err(bad_header)?;
        let mode = header.mode().map_err(bad_header)? & 0o7777;
        let mtime = header.mtime().map_err(bad_header)?;
        let out_of_range = |what: &str| refused(shown, format!("{what} out of range"));
        let mut meta = Meta {
            uid: u32::try_from(uid).map_err(|_| out_of_range("uid"))?,
            gid: u32::try_from(gid).map_err(|_| out_of_range("gid"))?,
            mode,
            mtime: TimeSpec::new(i64::try_from(mtime).map_err(|_| out_of_range("mtime"))?, 0),
            xattrs: Vec::new(),
        };
        meta.read_pax(entry, shown)?;
        Ok(meta)
    }

    /// Takes xattrs and the sub-second mtime from the entry's PAX records.
    fn read_pax<R: Read>(&mut self, entry: &mut tar::Entry<R>, shown: &str) -> Result<(), Error> {
        let bad_pax = |source| Error::Apply {
            path: shown.to_owned(),
            what: "reading PAX records",
            source,
        };
        let Some(records) = entry.pax_extensions().map_err(bad_pax)? else {
            return Ok(());
        };
        for record in records {
            let record = record.map_err(bad_pax)?;
            let key = record.key_bytes();
            if key == b"mtime" {
                if let Some(mtime) = parse_pax_time(record.value_bytes()) {
                    self.mtime = mtime;
                }
            } else if let Some(name) = key.strip_prefix(XATTR_PAX_PREFIX) {
                if name.starts_with(OVERLAY_XATTR_PREFIX) {
                    continue;
                }
                let name = CString::new(name)
                    .map_err(|_| refused(shown, "xattr name contains NUL".into()))?;
                self.xattrs.push((name, record.value_bytes().to_vec()));
            }
        }
        Ok(())
    }
}

fn device_number<R: Read>(entry: &tar::Entry<R>, shown: &str) -> Result<libc::dev_t, Error> {
    let header = entry.header();
    let major = header
        .device_major()
        .map_err(failed(shown, "reading device numbers"))?;
    let minor = header
        .device_minor()
        .map_err(failed(shown, "reading device numbers"))?;
    Ok(makedev(
        major.unwrap_or(0).into(),
        minor.unwrap_or(0).into(),
    ))
}

/// Parses a PAX time, `SECONDS[.FRACTION]`, possibly negative.
fn parse_pax_time(value: &[u8]) -> Option<TimeSpec> {
    let value = std::str::from_utf8(value).ok()?;
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().chain("000000000".chars()).take(9).collect();
    let nanos: i64 = digits.parse().ok()?;
    if value.starts_with('-') && nanos > 0 {
        return Some(TimeSpec::new(secs - 1, 1_000_000_000 - nanos));
    }
    Some(TimeSpec::new(secs, nanos))
}

fn refused(shown: &str, reason: String) -> Error {
    Error::Refused {
        path: shown.to_owned(),
        reason,
    }
}

/// Maps a failed syscall on entry `shown` to an error saying what was being done.
fn failed<'a, E: Into<io::Error>>(
    shown: &'a str,
    what: &'static str,
) -> impl FnOnce(E) -> Error + 'a {
    move |e| Error::Apply {
        path: shown.to_owned(),
        what,
        source: e.into(),
    }
}

/// The data of the files written so far, on its way to disk: writeback of each file starts
/// as soon as it is complete (so the disk works while the stream is still being read), and
/// [`Writeback::wait`] returns once all of it has been written. Only our own files: a
/// syncfs would also wait for every other dirty page of the filesystem, which made a pull
/// right after another engine's (or an `rm -rf`) take seconds. Metadata is left to the
/// journal commit of the snapshot's marker (snapshot.rs, `write_done`).
pub(crate) struct Writeback {
    /// False: nothing is written back early or waited for.
    enabled: bool,
    pending: Vec<File>,
}

impl Writeback {
    /// Files waited for at once; bounds the descriptors held open.
    const BATCH: usize = 256;

    pub(crate) fn new(enabled: bool) -> Writeback {
        Writeback {
            enabled,
            pending: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, file: File) -> io::Result<()> {
        if !self.enabled {
            return Ok(());
        }
        sync_range(&file, libc::SYNC_FILE_RANGE_WRITE)?;
        self.pending.push(file);
        if self.pending.len() >= Self::BATCH {
            self.wait()?;
        }
        Ok(())
    }

    pub(crate) fn wait(&mut self) -> io::Result<()> {
        let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        for file in self.pending.drain(..) {
            sync_range(&file, flags)?;
        }
        Ok(())
    }
}

/// sync_file_range(2) over the whole file.
fn sync_range(file: &File, flags: libc::c_uint) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on an open descriptor we own; offset 0 and length 0 mean the
    // whole file.
    let r = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, flags) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How often openat2 is retried when RESOLVE_IN_ROOT reports a concurrent rename (EAGAIN).
const RESOLVE_RETRIES: usize = 64;

/// The snapshot being written, and what must wait until every entry is in place.
struct Snapshot {
    root: OwnedFd,
    /// Directory mtimes, applied last because creating children changes them.
    dir_times: BTreeMap<PathBuf, TimeSpec>,
    entries: u64,
    buf: Vec<u8>,
    writeback: Writeback,
    /// The last parent directory resolved, while nothing has been removed since.
    parent: Option<(PathBuf, Rc<OwnedFd>)>,
}

/// Bytes of file content written at once.
const WRITE: usize = 256 << 10;

impl Snapshot {
    fn new(root: OwnedFd, wait_for_data: bool) -> Self {
        Snapshot {
            root,
            dir_times: BTreeMap::new(),
            entries: 0,
            buf: vec![0; WRITE],
            writeback: Writeback::new(wait_for_data),
            parent: None,
        }
    }

    /// The directory `dir` of the layer, created if missing: the kept fd when it is the same
    /// directory as the previous entry's and nothing was removed since (module comment),
    /// else resolved anew.
    fn parent(&mut self, dir: &Path) -> nix::Result<Rc<OwnedFd>> {
        if let Some((path, fd)) = &self.parent {
            if path == dir {
                return Ok(Rc::clone(fd));
            }
        }
        let fd = Rc::new(self.make_dir(dir)?);
        self.parent = Some((dir.to_path_buf(), Rc::clone(&fd)));
        Ok(fd)
    }

    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<R>, shown: &str) -> Result<(), Error> {
        let raw = entry.path_bytes().into_owned();
        let kind = match entry.header().entry_type() {
            // Old V7 archives mark directories only with a trailing slash.
            EntryType::Regular
                if entry.header().as_old().linkflag[0] == 0 && raw.ends_with(b"/") =>
            {
                EntryType::Directory
            }
            // Metadata for the archive, not for a file.
            EntryType::XGlobalHeader | EntryType::XHeader => return Ok(()),
            kind if kind.as_byte() == b'V' => return Ok(()),
            kind => kind,
        };
        let path = LayerPath::parse(&raw).map_err(|r| refused(shown, r.into()))?;
        self.entries += 1;
        let Some(name) = path.name.as_deref() else {
            return Ok(());
        };
        if let Some(whiteout) = whiteout(name).map_err(|r| refused(shown, r.into()))? {
            return self.apply_whiteout(&path, whiteout, shown);
        }
        let meta = Meta::read(entry, shown)?;
        let parent = self
            .parent(&path.parent)
            .map_err(failed(shown, "creating parent directory"))?;
        let full = path.join(name);
        let node = match kind {
            EntryType::Directory => {
                self.put_dir(&parent, name, &full)
                    .map_err(failed(shown, "creating directory"))?;
                Node::Dir
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let file = self.put_file(&parent, name, &full, entry, shown)?;
                set_file_meta(&file, &meta, shown)?;
                return self
                    .writeback
                    .push(file)
                    .map_err(failed(shown, "writing file contents to disk"));
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refused(shown, "symlink has no target".into()))?;
                let target = OsStr::from_bytes(&target);
                match symlinkat(target, &parent, name) {
                    Err(Errno::EEXIST) => {
                        self.clear(&parent, name, &full, false)
                            .map_err(failed(shown, "removing what was there"))?;
                        symlinkat(target, &parent, name)
                    }
                    created => created,
                }
                .map_err(failed(shown, "creating symlink"))?;
                Node::Symlink
            }
            EntryType::Link => return self.put_hardlink(&parent, name, &full, entry, shown),
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                self.put_special(&parent, name, &full, kind, entry, shown)?;
                Node::Special
            }
            other => {
                return Err(refused(shown, format!("unsupported entry type {other:?}")));
            }
        };
        self.set_meta(&parent, name, &full, node, &meta, shown)
    }

    fn apply_whiteout(
        &mut self,
        path: &LayerPath,
        whiteout: Whiteout,
        shown: &str,
    ) -> Result<(), Error> {
        let parent = self
            .parent(&path.parent)
            .map_err(failed(shown, "creating parent directory"))?;
        match whiteout {
            Whiteout::Skip => Ok(()),
            Whiteout::Opaque => {
                let dir = openat(
                    &parent,
                    ".",
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(failed(shown, "opening directory"))?;
                xattr::Node::Fd(dir.as_fd())
                    .set(OPAQUE_XATTR, b"y")
                    .map_err(failed(shown, "setting trusted.overlay.opaque"))
            }
            Whiteout::Hide(hidden) => {
                self.clear(&parent, &hidden, &path.join(&hidden), false)
                    .map_err(failed(shown, "removing what was there"))?;
                mknodat(
                    &parent,
                    hidden.as_os_str(),
                    SFlag::S_IFCHR,
                    Mode::empty(),
                    makedev(0, 0),
                )
                .map_err(failed(shown, "creating whiteout device"))
            }
        }
    }

    fn put_dir(&mut self, parent: &OwnedFd, name: &OsStr, full: &Path) -> nix::Result<()> {
        let mode = Mode::from_bits_truncate(0o700);
        // Created first and cleared only if the name is taken: nearly every entry of a
        // layer is new, and a stat before each create was one syscall per entry.
        match mkdirat(parent, name, mode) {
            Err(Errno::EEXIST) => {}
            made => return made,
        }
        if self.clear(parent, name, full, true)? {
            return Ok(());
        }
        mkdirat(parent, name, mode)
    }

    fn put_file<R: Read>(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        full: &Path,
        entry: &mut tar::Entry<R>,
        shown: &str,
    ) -> Result<File, Error> {
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mode = Mode::from_bits_truncate(0o600);
        // O_EXCL fails on any existing name, a symlink included; only then is it cleared.
        let fd = match openat(parent, name, flags, mode) {
            Err(Errno::EEXIST) => {
                self.clear(parent, name, full, false)
                    .map_err(failed(shown, "removing what was there"))?;
                openat(parent, name, flags, mode)
            }
            created => created,
        }
        .map_err(failed(shown, "creating file"))?;
        let mut file = File::from(fd);
        // Copied by hand rather than io::copy so a broken stream is told apart from a full disk.
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => return Ok(file),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(Error::Stream {
                        after: shown.to_owned(),
                        source,
                    })
                }
            };
            file.write_all(&self.buf[..n])
                .map_err(failed(shown, "writing file contents"))?;
        }
    }

    /// Links to a path already in this layer. The target's parent is resolved inside the
    /// snapshot like any other path, and linkat does not follow a symlink at the target.
    fn put_hardlink<R: Read>(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        full: &Path,
        entry: &tar::Entry<R>,
        shown: &str,
    ) -> Result<(), Error> {
        let raw = entry
            .link_name_bytes()
            .ok_or_else(|| refused(shown, "hard link has no target".into()))?;
        let target =
            LayerPath::parse(&raw).map_err(|r| refused(shown, format!("hard link target: {r}")))?;
        let Some(target_name) = target.name.as_deref() else {
            return Err(refused(shown, "hard link to the root directory".into()));
        };
        if target.join(target_name) == full {
            return Ok(());
        }
        let target_parent = self
            .resolve_dir(&target.parent)
            .map_err(failed(shown, "resolving hard link target"))?;
        self.clear(parent, name, full, false)
            .map_err(failed(shown, "removing what was there"))?;
        linkat(&target_parent, target_name, parent, name, AtFlags::empty())
            .map_err(failed(shown, "creating hard link"))
    }

    fn put_special<R: Read>(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        full: &Path,
        kind: EntryType,
        entry: &tar::Entry<R>,
        shown: &str,
    ) -> Result<(), Error> {
        let (sflag, dev) = match kind {
            EntryType::Char => (SFlag::S_IFCHR, device_number(entry, shown)?),
            EntryType::Block => (SFlag::S_IFBLK, device_number(entry, shown)?),
            // A fifo's device fields are often left empty, which tar cannot parse.
            _ => (SFlag::S_IFIFO, 0),
        };
        self.clear(parent, name, full, false)
            .map_err(failed(shown, "removing what was there"))?;
        mknodat(parent, name, sflag, Mode::from_bits_truncate(0o600), dev)
            .map_err(failed(shown, "creating device node"))
    }

    /// Metadata of a node other than a regular file (`set_file_meta`), by its name in
    /// `parent`. Ownership first, because chown clears setuid and file capabilities; then
    /// mode, then xattrs (security.capability among them), then mtime (deferred for
    /// directories).
    fn set_meta(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        full: &Path,
        node: Node,
        meta: &Meta,
        shown: &str,
    ) -> Result<(), Error> {
        let (uid, gid) = (Uid::from_raw(meta.uid), Gid::from_raw(meta.gid));
        fchownat(
            parent,
            name,
            Some(uid),
            Some(gid),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(failed(shown, "setting owner"))?;
        if node != Node::Symlink {
            // Following is safe and cheap here: `name` is the directory, file or node this
            // pass just made (or a directory it kept, known not to be a symlink), and nothing
            // else writes the scratch tree. With NoFollowSymlink glibc emulates fchmodat by
            // an O_PATH open, an fstat and a chmod of /proc/self/fd/N: four syscalls and a
            // procfs walk per entry instead of one.
            let mode = Mode::from_bits_truncate(meta.mode);
            fchmodat(parent, name, mode, FchmodatFlags::FollowSymlink)
                .map_err(failed(shown, "setting mode"))?;
        }
        if !meta.xattrs.is_empty() {
            set_xattrs(parent, name, node, &meta.xattrs)
                .map_err(failed(shown, "setting xattrs"))?;
        }
        if node == Node::Dir {
            self.dir_times.insert(full.to_path_buf(), meta.mtime);
            return Ok(());
        }
        utimensat(
            parent,
            name,
            &meta.mtime,
            &meta.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(failed(shown, "setting mtime"))
    }

    /// Applies the collected directory mtimes. Setting a directory's times changes nothing
    /// in its parent, so the order is free: by parent, each resolved once (nothing is
    /// removed any more, so a resolved parent stays what its path names).
    fn set_dir_times(&mut self) -> Result<(), Error> {
        let mut dirs: Vec<_> = std::mem::take(&mut self.dir_times).into_iter().collect();
        dirs.sort_by(|(a, _), (b, _)| a.parent().cmp(&b.parent()));
        let mut resolved: Option<(&Path, OwnedFd)> = None;
        for (path, mtime) in &dirs {
            let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
                continue;
            };
            let shown = path.to_string_lossy();
            if resolved.as_ref().is_none_or(|(p, _)| *p != parent) {
                resolved = match self.resolve_dir(parent) {
                    // Gone since: a later entry replaced a directory on the way through a
                    // symlink.
                    Err(Errno::ENOENT | Errno::ENOTDIR) => continue,
                    other => Some((
                        parent,
                        other.map_err(failed(&shown, "resolving parent directory"))?,
                    )),
                };
            }
            let Some((_, fd)) = &resolved else {
                continue;
            };
            utimensat(fd, name, mtime, mtime, UtimensatFlags::NoFollowSymlink)
                .map_err(failed(&shown, "setting mtime"))?;
        }
        Ok(())
    }

    /// Opens directory `dir` of the layer as O_PATH, resolved with the snapshot as root.
    fn resolve_dir(&self, dir: &Path) -> nix::Result<OwnedFd> {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let mut tries = 0;
        loop {
            match openat2(&self.root, dir, how) {
                Err(Errno::EAGAIN) if tries < RESOLVE_RETRIES => tries += 1,
                result => return result,
            }
        }
    }

    /// Like `resolve_dir`, but creates missing directories (0755) one component at a time,
    /// each relative to its resolved parent.
    fn make_dir(&self, dir: &Path) -> nix::Result<OwnedFd> {
        match self.resolve_dir(dir) {
            Err(Errno::ENOENT) => {}
            found => return found,
        }
        let mut fd = self.resolve_dir(Path::new(""))?;
        let mut prefix = PathBuf::new();
        for part in dir.components() {
            prefix.push(part);
            fd = match self.resolve_dir(&prefix) {
                Err(Errno::ENOENT) => {
                    mkdirat(&fd, part.as_os_str(), Mode::from_bits_truncate(0o755))?;
                    self.resolve_dir(&prefix)?
                }
                found => found?,
            };
        }
        Ok(fd)
    }

    /// Makes room for a new node at `name`: removes whatever is there, except an existing
    /// directory when `keep_dir` (then returns true). A later entry wins over an earlier one.
    fn clear(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        full: &Path,
        keep_dir: bool,
    ) -> nix::Result<bool> {
        let stat = match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => return Ok(false),
            found => found?,
        };
        let is_dir = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
        if is_dir && keep_dir {
            return Ok(true);
        }
        // What the kept parent's path resolves to may change now (module comment).
        self.parent = None;
        self.dir_times.retain(|path, _| !path.starts_with(full));
        if is_dir {
            remove_tree(parent.as_fd(), name)?;
        } else {
            unlinkat(parent, name, UnlinkatFlags::NoRemoveDir)?;
        }
        Ok(false)
    }
}

/// `Snapshot::set_meta` for a regular file, through the fd it was written by: one syscall
/// each instead of a lookup of its name for each, in the same order (owner, mode, xattrs,
/// mtime), the mtime last because writing the content sets it.
fn set_file_meta(file: &File, meta: &Meta, shown: &str) -> Result<(), Error> {
    let (uid, gid) = (Uid::from_raw(meta.uid), Gid::from_raw(meta.gid));
    fchown(file, Some(uid), Some(gid)).map_err(failed(shown, "setting owner"))?;
    fchmod(file, Mode::from_bits_truncate(meta.mode)).map_err(failed(shown, "setting mode"))?;
    let target = xattr::Node::Fd(file.as_fd());
    meta.xattrs
        .iter()
        .try_for_each(|(k, v)| target.set(k, v))
        .map_err(failed(shown, "setting xattrs"))?;
    futimens(file, &meta.mtime, &meta.mtime).map_err(failed(shown, "setting mtime"))
}

fn set_xattrs(
    parent: &OwnedFd,
    name: &OsStr,
    node: Node,
    xattrs: &[(CString, Vec<u8>)],
) -> nix::Result<()> {
    if node == Node::Dir {
        let fd = openat(
            parent,
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let target = xattr::Node::Fd(fd.as_fd());
        return xattrs.iter().try_for_each(|(k, v)| target.set(k, v));
    }
    // Symlinks, devices and fifos cannot be opened for fsetxattr without following or
    // opening the device; name them through the parent's fd instead.
    let target = xattr::Node::at(parent.as_fd(), name)?;
    xattrs.iter().try_for_each(|(k, v)| target.set(k, v))
}

/// Removes directory `name` in `parent` with everything below it, never following symlinks.
/// Iterative and holding one directory fd at a time, so a deep hostile tree can exhaust
/// neither the stack nor the fd table.
fn remove_tree(parent: BorrowedFd, name: &OsStr) -> nix::Result<()> {
    let mut names = vec![name.to_os_string()];
    let mut dir = open_dir(parent, name)?;
    loop {
        match scan_dir(&dir)? {
            Scan::Subdir(sub) => {
                dir = open_dir(dir.as_fd(), &sub)?;
                names.push(sub);
            }
            Scan::Progress => {}
            Scan::Empty => {
                let Some(done) = names.pop() else {
                    return Ok(());
                };
                if names.is_empty() {
                    return unlinkat(parent, done.as_os_str(), UnlinkatFlags::RemoveDir);
                }
                // Our own tree, nothing renames in it meanwhile: `..` is where we came from.
                let up = open_dir(dir.as_fd(), OsStr::new(".."))?;
                unlinkat(&up, done.as_os_str(), UnlinkatFlags::RemoveDir)?;
                dir = up;
            }
        }
    }
}

fn open_dir(parent: BorrowedFd, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        parent,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

enum Scan {
    Empty,
    /// Removed some non-directories; scan again.
    Progress,
    Subdir(OsString),
}

/// Unlinks the non-directories of `dir` until it meets a subdirectory, and returns it.
fn scan_dir(dir: &OwnedFd) -> nix::Result<Scan> {
    let mut listing = Dir::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut removed = false;
    for item in listing.iter() {
        let item = item?;
        let name = OsStr::from_bytes(item.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        let is_dir = match item.file_type() {
            Some(kind) => kind == Type::Directory,
            None => {
                let stat = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
                SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
            }
        };
        if is_dir {
            return Ok(Scan::Subdir(name.to_os_string()));
        }
        unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)?;
        removed = true;
    }
    Ok(if removed { Scan::Progress } else { Scan::Empty })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use tar::Header;

    /// Builds a layer in memory. Names are written into the header raw, because
    /// `tar::Builder` refuses the hostile ones these tests need.
    struct Layer(tar::Builder<Vec<u8>>);

    impl Layer {
        fn new() -> Self {
            Layer(tar::Builder::new(Vec::new()))
        }

        fn raw(
            &mut self,
            name: &str,
            kind: EntryType,
            link: &str,
            data: &[u8],
            edit: impl FnOnce(&mut Header),
        ) -> &mut Self {
            let mut header = Header::new_gnu();
            header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            header.set_entry_type(kind);
            header.set_size(data.len() as u64);
            header.set_mode(if kind == EntryType::Directory {
                0o755
            } else {
                0o644
            });
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(1_600_000_000);
            edit(&mut header);
            header.set_cksum();
            self.0.append(&header, data).unwrap();
            self
        }

        fn file(&mut self, name: &str, data: &str) -> &mut Self {
            self.raw(name, EntryType::Regular, "", data.as_bytes(), |_| {})
        }

        fn dir(&mut self, name: &str) -> &mut Self {
            self.raw(name, EntryType::Directory, "", b"", |_| {})
        }

        fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
            self.raw(name, EntryType::Symlink, target, b"", |_| {})
        }

        fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
            self.raw(name, EntryType::Link, target, b"", |_| {})
        }

        fn bytes(&mut self) -> Vec<u8> {
            std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()))
                .into_inner()
                .unwrap()
        }
    }

    /// A fresh snapshot directory inside a temp dir, so escapes have somewhere to land.
    fn snapshot() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("snap");
        fs::create_dir(&dest).unwrap();
        (tmp, dest)
    }

    fn unpack(layer: &mut Layer, dest: &Path) -> Result<Unpacked, Error> {
        unpack_layer(layer.bytes().as_slice(), dest)
    }

    fn xattr(path: &Path, name: &CStr) -> Option<Vec<u8>> {
        let path = CString::new(path.as_os_str().as_bytes()).unwrap();
        let mut buf = [0u8; 256];
        // SAFETY: path and name are NUL-terminated; buf is writable for its whole length.
        let n = unsafe {
            libc::lgetxattr(
                path.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        usize::try_from(n).ok().map(|n| buf[..n].to_vec())
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn refuses_dotdot_entry() {
        let (tmp, dest) = snapshot();
        let err = unpack(Layer::new().file("../escape", "x"), &dest).unwrap_err();
        assert!(err.to_string().contains("../escape"), "{err}");
        assert!(!tmp.path().join("escape").exists());
    }

    #[test]
    fn absolute_entry_lands_inside() {
        let (_tmp, dest) = snapshot();
        unpack(Layer::new().file("/abs/file", "x"), &dest).unwrap();
        assert_eq!(fs::read_to_string(dest.join("abs/file")).unwrap(), "x");
    }

    #[test]
    fn absolute_symlink_cannot_redirect_writes() {
        let (_tmp, dest) = snapshot();
        let mut layer = Layer::new();
        layer
            .symlink("lnk", "/")
            .file("lnk/etc/berth-escape-test", "x");
        unpack(&mut layer, &dest).unwrap();
        assert!(dest.join("etc/berth-escape-test").is_file());
        assert!(!Path::new("/etc/berth-escape-test").exists());
    }

    #[test]
    fn relative_symlink_chain_cannot_escape() {
        let (_tmp, dest) = snapshot();
        let mut layer = Layer::new();
        layer
            .dir("tmp/")
            .symlink("a", "../../../../..")
            .symlink("b", "a/tmp")
            .file("b/berth-escape2", "x");
        unpack(&mut layer, &dest).unwrap();
        assert!(dest.join("tmp/berth-escape2").is_file());
        assert!(!Path::new("/tmp/berth-escape2").exists());
    }

    #[test]
    fn hardlink_targets_stay_inside() {
        let (_tmp, dest) = snapshot();
        let err = unpack(Layer::new().hardlink("h", "../../etc/passwd"), &dest).unwrap_err();
        assert!(err.to_string().contains("\"h\""), "{err}");
        assert!(!dest.join("h").exists());

        let (_tmp, dest) = snapshot();
        let mut layer = Layer::new();
        layer.symlink("lnk", "/").hardlink("h", "lnk/etc/passwd");
        let err = unpack(&mut layer, &dest).unwrap_err();
        assert!(err.to_string().contains("No such file"), "{err}");

        let (_tmp, dest) = snapshot();
        let mut layer = Layer::new();
        layer
            .file("etc/passwd", "root:x:0:0::/root:/bin/sh\n")
            .symlink("lnk", "/")
            .hardlink("h", "lnk/etc/passwd");
        unpack(&mut layer, &dest).unwrap();
        let linked = fs::metadata(dest.join("h")).unwrap().ino();
        assert_eq!(linked, fs::metadata(dest.join("etc/passwd")).unwrap().ino());
        assert_ne!(linked, fs::metadata("/etc/passwd").unwrap().ino());
    }

    #[test]
    fn refuses_hostile_whiteouts() {
        for name in ["../.wh.x", ".wh...", "d/.wh..."] {
            let (tmp, dest) = snapshot();
            let err = unpack(Layer::new().file(name, ""), &dest).unwrap_err();
            assert!(matches!(err, Error::Refused { .. }), "{name}: {err}");
            assert!(err.to_string().contains(name), "{err}");
            assert!(!tmp.path().join("x").exists());
        }
    }

    #[test]
    fn broken_streams_are_errors() {
        let plain = Layer::new().file("f", &"x".repeat(100_000)).bytes();
        let gz = gzip(&plain);
        assert!(unpack_layer(&gz[..gz.len() / 2], &snapshot().1).is_err());
        // Only the trailer (CRC and length) missing: found by draining the stream.
        assert!(unpack_layer(&gz[..gz.len() - 4], &snapshot().1).is_err());

        let zst = zstd::encode_all(plain.as_slice(), 3).unwrap();
        assert!(unpack_layer(&zst[..zst.len() / 2], &snapshot().1).is_err());
        let mut corrupt = zst.clone();
        corrupt[4..12].fill(0xff);
        assert!(unpack_layer(corrupt.as_slice(), &snapshot().1).is_err());
    }

    /// The reader's own error comes back (the registry client finds its cancellation and
    /// download errors in it), not what the thread creating the files made of the cut.
    #[test]
    fn stream_errors_are_the_readers() {
        struct Failing(Vec<u8>, usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.1 == self.0.len() {
                    return Err(io::Error::other("download broke"));
                }
                let n = buf.len().min(self.0.len() - self.1).min(1000);
                buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
                self.1 += n;
                Ok(n)
            }
        }
        let mut layer = Layer::new();
        for i in 0..600 {
            layer.file(&format!("f{i}"), "data");
        }
        let plain = layer.bytes();
        for blob in [plain.clone(), gzip(&plain)] {
            let cut = blob.len() / 2;
            let err = unpack_layer(Failing(blob[..cut].to_vec(), 0), &snapshot().1).unwrap_err();
            let Error::Stream { after, source } = &err else {
                panic!("{err}");
            };
            assert_eq!(source.to_string(), "download broke");
            assert!(after.starts_with('f'), "{err}");
        }
    }

    /// A refused entry stops the unpack at once, with the stream still flowing.
    #[test]
    fn entry_errors_stop_the_stream() {
        let mut layer = Layer::new();
        layer.file("../x", "");
        for i in 0..2000 {
            layer.file(&format!("f{i}"), &"x".repeat(1000));
        }
        let (_tmp, dest) = snapshot();
        let err = unpack(&mut layer, &dest).unwrap_err();
        assert!(matches!(err, Error::Refused { .. }), "{err}");
        assert_eq!(fs::read_dir(&dest).unwrap().count(), 0);
    }

    #[test]
    fn detects_compression_and_hashes_the_tar() {
        let plain = Layer::new().dir("d/").file("d/f", "hello").bytes();
        let want = format!("sha256:{}", hex::encode(Sha256::digest(&plain)));
        let zst = zstd::encode_all(plain.as_slice(), 3).unwrap();
        for blob in [plain.clone(), gzip(&plain), zst] {
            let (_tmp, dest) = snapshot();
            let done = unpack_layer(blob.as_slice(), &dest).unwrap();
            assert_eq!(done.diff_id, want);
            assert_eq!(done.bytes, plain.len() as u64);
            assert_eq!(done.entries, 2);
            assert_eq!(fs::read_to_string(dest.join("d/f")).unwrap(), "hello");
        }
    }

    #[test]
    fn multi_member_gzip_is_one_stream() {
        let plain = Layer::new().dir("d/").file("d/f", "hello").bytes();
        let (head, tail) = plain.split_at(700);
        let mut blob = gzip(head);
        blob.extend(gzip(tail));
        let (_tmp, dest) = snapshot();
        let done = unpack_layer(blob.as_slice(), &dest).unwrap();
        let want = format!("sha256:{}", hex::encode(Sha256::digest(&plain)));
        assert_eq!(done.diff_id, want);
        assert_eq!(fs::read_to_string(dest.join("d/f")).unwrap(), "hello");
        // Anything after the last member that is not one is refused, as Go's reader does.
        blob.extend_from_slice(b"junk");
        assert!(unpack_layer(blob.as_slice(), &snapshot().1).is_err());
    }

    #[test]
    fn metadata_survives() {
        let (_tmp, dest) = snapshot();
        let mut layer = Layer::new();
        layer.raw("bin/", EntryType::Directory, "", b"", |h| {
            h.set_mtime(1_100_000_000)
        });
        layer.raw("bin/su", EntryType::Regular, "", b"su", |h| {
            h.set_uid(1234);
            h.set_gid(5678);
            h.set_mode(0o4755);
            h.set_mtime(1_000_000_000);
        });
        layer.raw("tmp/", EntryType::Directory, "", b"", |h| {
            h.set_mode(0o1777)
        });
        layer
            .0
            .append_pax_extensions([
                ("SCHILY.xattr.user.berth", b"1".as_slice()),
                ("mtime", b"1234567890.5"),
            ])
            .unwrap();
        layer.file("tagged", "t");
        layer.raw("s", EntryType::Symlink, "bin/su", b"", |h| {
            h.set_uid(1234);
            h.set_gid(5678);
        });
        layer.hardlink("h", "bin/su");
        layer.raw("null", EntryType::Char, "", b"", |h| {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
            h.set_mode(0o666);
        });
        layer.raw("p", EntryType::Fifo, "", b"", |_| {});
        unpack(&mut layer, &dest).unwrap();

        let su = fs::symlink_metadata(dest.join("bin/su")).unwrap();
        assert_eq!(
            (su.uid(), su.gid(), su.mode() & 0o7777),
            (1234, 5678, 0o4755)
        );
        assert_eq!(su.mtime(), 1_000_000_000);
        assert_eq!(
            fs::symlink_metadata(dest.join("bin")).unwrap().mtime(),
            1_100_000_000
        );
        assert_eq!(
            fs::symlink_metadata(dest.join("tmp")).unwrap().mode() & 0o7777,
            0o1777
        );
        assert_eq!(
            xattr(&dest.join("tagged"), c"user.berth").as_deref(),
            Some(b"1".as_slice())
        );
        let tagged = fs::symlink_metadata(dest.join("tagged")).unwrap();
        assert_eq!(
            (tagged.mtime(), tagged.mtime_nsec()),
            (1_234_567_890, 500_000_000)
        );
        let link = fs::symlink_metadata(dest.join("s")).unwrap();
        assert!(link.file_type().is_symlink());
        assert_eq!((link.uid(), link.gid()), (1234, 5678));
        assert_eq!(fs::read_link(dest.join("s")).unwrap(), Path::new("bin/su"));
        assert_eq!(
            fs::symlink_metadata(dest.join("h")).unwrap().ino(),
            su.ino()
        );
        let null = fs::symlink_metadata(dest.join("null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), makedev(1, 3));
        assert!(fs::symlink_metadata(dest.join("p"))
            .unwrap()
            .file_type()
            .is_fifo());
    }

    #[test]
    fn nested_directory_times_survive_their_children() {
        let (_tmp, dest) = snapshot();
        let mut layer = Layer::new();
        let dirs = ["a/", "a/b/", "a/b/c/", "a/d/", "e/"];
        for (i, dir) in dirs.iter().enumerate() {
            layer.raw(dir, EntryType::Directory, "", b"", |h| {
                h.set_mtime(1_000_000_000 + i as u64)
            });
        }
        layer
            .file("a/b/c/f", "f")
            .file("a/d/g", "g")
            .file("e/h", "h");
        layer.symlink("e/l", "../a");
        unpack(&mut layer, &dest).unwrap();
        for (i, dir) in dirs.iter().enumerate() {
            let mtime = fs::symlink_metadata(dest.join(dir)).unwrap().mtime();
            assert_eq!(mtime, 1_000_000_000 + i as i64, "{dir}");
        }
    }

    #[test]
    fn whiteouts_become_overlay_markers() {
        let (_tmp, dest) = snapshot();
        let mut layer = Layer::new();
        layer
            .file("gone", "earlier")
            .file(".wh.gone", "")
            .file("dir/.wh..wh..opq", "");
        unpack(&mut layer, &dest).unwrap();
        let gone = fs::symlink_metadata(dest.join("gone")).unwrap();
        assert!(gone.file_type().is_char_device());
        assert_eq!(gone.rdev(), makedev(0, 0));
        assert!(!dest.join(".wh.gone").exists());
        assert_eq!(
            xattr(&dest.join("dir"), OPAQUE_XATTR).as_deref(),
            Some(b"y".as_slice())
        );
        assert!(!dest.join("dir/.wh..wh..opq").exists());
    }

    /// Unmounts on drop, so a failed assertion does not leave the mount behind.
    struct Mounted<'a>(&'a Path);

    impl Drop for Mounted<'_> {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }

    #[test]
    fn layers_stack_in_overlayfs() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = |name: &str| {
            let path = tmp.path().join(name);
            fs::create_dir(&path).unwrap();
            path
        };
        let (l1, l2, l3, merged) = (dir("l1"), dir("l2"), dir("l3"), dir("merged"));
        let mut layer = Layer::new();
        unpack(
            layer
                .file("a/keep", "keep")
                .file("a/del", "del")
                .file("d/old", "old"),
            &l1,
        )
        .unwrap();
        unpack(
            layer
                .file("a/.wh.del", "")
                .file("d/.wh..wh..opq", "")
                .file("d/new", "new"),
            &l2,
        )
        .unwrap();
        unpack(layer.file("a/del", "back"), &l3).unwrap();

        let options = format!(
            "lowerdir={}:{}:{}",
            l3.display(),
            l2.display(),
            l1.display()
        );
        nix::mount::mount(
            Some("overlay"),
            &merged,
            Some("overlay"),
            nix::mount::MsFlags::MS_RDONLY,
            Some(options.as_str()),
        )
        .unwrap();
        let _mounted = Mounted(&merged);
        assert_eq!(fs::read_to_string(merged.join("a/keep")).unwrap(), "keep");
        assert_eq!(fs::read_to_string(merged.join("a/del")).unwrap(), "back");
        assert!(!merged.join("d/old").exists());
        assert_eq!(fs::read_to_string(merged.join("d/new")).unwrap(), "new");
    }

    /// The parent directory's fd is kept between entries; replacing a path component must
    /// make the next entry resolve its path anew.
    #[test]
    fn replaced_path_components_are_followed() {
        let (_tmp, dest) = snapshot();
        let mut layer = Layer::new();
        layer
            .dir("d1/")
            .dir("d2/")
            .symlink("l", "d1")
            .file("l/a", "a")
            .symlink("l", "/d2")
            .file("l/b", "b")
            .file(".wh.l", "")
            .symlink("l", "d1")
            .file("l/c", "c")
            .dir("x/")
            .file("x/d", "d")
            .symlink("x", "d2")
            .file("x/e", "e");
        unpack(&mut layer, &dest).unwrap();
        let names = |dir: &str| {
            let mut names: Vec<_> = fs::read_dir(dest.join(dir))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        };
        assert_eq!(names("d1"), ["a", "c"]);
        assert_eq!(names("d2"), ["b", "e"]);
    }

    /// An entry in the kept parent directory itself can change what that directory's path
    /// resolves to, when a symlink on the way walks through it and back out with `..`.
    #[test]
    fn entry_that_reroutes_its_own_parent_path() {
        let (_tmp, dest) = snapshot();
        let mut layer = Layer::new();
        layer
            .dir("c/b/n/")
            .dir("t/u/")
            .dir("b/")
            // a -> c, so a/b is c/b, as long as c/b/n is a directory.
            .symlink("a", "c/b/n/../..")
            .file("a/b/f1", "1")
            // Now c/b/n/../.. is /t/u/../.. = /, so a/b is b.
            .symlink("a/b/n", "/t/u")
            .file("a/b/f2", "2");
        unpack(&mut layer, &dest).unwrap();
        assert_eq!(fs::read_to_string(dest.join("c/b/f1")).unwrap(), "1");
        assert_eq!(fs::read_to_string(dest.join("b/f2")).unwrap(), "2");
        assert!(!dest.join("c/b/f2").exists());
    }

    #[test]
    fn later_entry_replaces_earlier() {
        let (tmp, dest) = snapshot();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("canary"), "alive").unwrap();
        let mut layer = Layer::new();
        layer
            .file("x", "file first")
            .dir("x/")
            .file("x/y", "child")
            .dir("z/")
            .file("z/c", "child")
            .file("z/deep/er/est/f", "deep")
            .symlink("z/deep/out", outside.to_str().unwrap())
            .file("z", "file last");
        unpack(&mut layer, &dest).unwrap();
        assert!(dest.join("x").is_dir());
        assert_eq!(fs::read_to_string(dest.join("x/y")).unwrap(), "child");
        assert_eq!(fs::read_to_string(dest.join("z")).unwrap(), "file last");
        // Removing the tree unlinked the symlink, not what it points to.
        assert_eq!(fs::read_to_string(outside.join("canary")).unwrap(), "alive");
    }
}
