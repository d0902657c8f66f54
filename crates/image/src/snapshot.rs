//! Snapshots: each layer unpacked once into `<root>/snapshots/<chain hex>/fs`, shared by every
//! image whose stack contains it, and the overlayfs mounts that stack them for containers.
//!
//! A snapshot is named by the layer's chain id (the layer with everything below it), so two
//! images share a snapshot exactly when they share the layer stack up to it. Its directory
//! holds only that layer's own files; overlayfs combines the stack at mount time.
//!
//! Creation is crash-safe and happens once, even with many processes pulling at the same time:
//! the creator holds an exclusive `flock` on `<chain hex>.lock` (others wait, then find the
//! snapshot done), unpacks into `tmp-<pid>-<n>/fs`, checks the diff_id, writes a `done`
//! marker, syncs, and renames the whole directory to `<chain hex>`. A process killed on the
//! way leaves only a `tmp-*` directory, which `clean` removes once no live process holds its
//! `tmp-*.lock`. Nothing half-unpacked ever appears under a chain id.
//!
//! A builder that has just made a layer from a directory can `adopt` that directory as the
//! snapshot instead (the same lock, `tmp-*`, marker and rename), so the layer's files are
//! not written a second time by unpacking the blob.
//!
//! Layout:
//!
//! ```text
//! snapshots/<chain hex>/fs      the layer's files (an overlay lower dir)
//! snapshots/<chain hex>/done    marker: the diff_id that was verified (and, for an
//!                               adopted snapshot not synced, `unsynced-boot <boot id>`)
//! snapshots/<chain hex>.lock    flock serialising creation and removal of that snapshot
//! snapshots/tmp-<pid>-<n>[.lock] work in progress (or a crashed one), and its flock
//! ```

use std::collections::BTreeSet;
use std::error::Error as StdError;
use std::ffi::{CStr, CString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::mount::{MntFlags, MsFlags};

use crate::digest::{Algorithm, Digest};
use crate::unpack::{self, unpack_layer};

const DONE: &str = "done";
const FS: &str = "fs";
const TMP_PREFIX: &str = "tmp-";
const LOCK_SUFFIX: &str = ".lock";

/// How many scratch names to try before giving up (a collision needs a stale leftover from an
/// earlier process with our pid).
const NAME_ATTEMPTS: u32 = 100;

/// mount(2) copies at most one page of option data; longer strings are cut off.
const MOUNT_DATA_MAX: usize = 4095;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The layer content could not be opened (a missing blob, a failed download).
    #[error("layer {layer}: opening its content: {source}")]
    Open {
        layer: Digest,
        source: Box<dyn StdError + Send + Sync>,
    },
    /// The caller's check of the layer's source failed (`ensure_verified`).
    #[error("layer {layer}: {source}")]
    Verify {
        layer: Digest,
        source: Box<dyn StdError + Send + Sync>,
    },
    #[error("layer {layer}: {source}")]
    Unpack {
        layer: Digest,
        source: unpack::Error,
    },
    /// `layer` is the diff_id the image config promised.
    #[error("layer {layer}: unpacked content has diff_id {actual}")]
    DiffIdMismatch { layer: Digest, actual: String },
    #[error("mounting {} on {}: {step}: {source}{}", what, target.display(), kernel_says(.log))]
    Mount {
        what: &'static str,
        target: PathBuf,
        step: String,
        source: Errno,
        /// What the kernel wrote to the filesystem context's log, if anything.
        log: String,
    },
    #[error("mounting overlay on {}: {reason}", target.display())]
    MountRefused { target: PathBuf, reason: String },
    #[error("unmounting {}: {source}", target.display())]
    Unmount { target: PathBuf, source: Errno },
}

fn kernel_says(log: &str) -> String {
    if log.is_empty() {
        String::new()
    } else {
        format!(" (kernel: {log})")
    }
}

pub type Result<T> = std::result::Result<T, SnapshotError>;

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn errno_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> SnapshotError + 'a {
    move |errno| io_err(action, path)(errno.into())
}

/// The snapshot directories under one root. Holds no open files.
#[derive(Debug, Clone)]
pub struct Snapshots {
    dir: PathBuf,
    /// Whether a new snapshot is made durable before it is marked done (see `unsynced`).
    sync: bool,
}

impl Snapshots {
    /// Opens `<root>/snapshots`, creating it if missing.
    pub fn open(root: &Path) -> Result<Snapshots> {
        let dir = root.join("snapshots");
        fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        Ok(Snapshots { dir, sync: true })
    }

    /// The same snapshots, but a new one is marked done and renamed into place without
    /// waiting for the disk. Only for chains listed in a `pending::Pending` record, which
    /// has them unpacked again if a crash comes before they were synced.
    pub fn unsynced(&self) -> Snapshots {
        Snapshots {
            sync: false,
            ..self.clone()
        }
    }

    /// The `snapshots` directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The layer's files (an overlay lower dir), whether or not the snapshot exists yet.
    pub fn path(&self, chain: &Digest) -> PathBuf {
        self.chain_dir(chain).join(FS)
    }

    fn chain_dir(&self, chain: &Digest) -> PathBuf {
        // The hex alone is unambiguous: sha256 and sha512 hashes differ in length.
        self.dir.join(chain.hex())
    }

    fn chain_lock(&self, chain: &Digest) -> PathBuf {
        self.dir.join(format!("{}{LOCK_SUFFIX}", chain.hex()))
    }

    /// Whether the snapshot is complete (and, for an adopted one not yet on disk, made
    /// since the last boot, so its files cannot have been lost with the page cache).
    pub fn contains(&self, chain: &Digest) -> bool {
        let Ok(marker) = fs::read_to_string(self.chain_dir(chain).join(DONE)) else {
            return false;
        };
        match marker.lines().find_map(|l| l.strip_prefix(UNSYNCED_BOOT)) {
            None => true,
            Some(boot) => boot_id().is_some_and(|now| now == boot),
        }
    }

    /// Whether the chain has a snapshot directory that was marked done, trusted or not:
    /// what GC may remove.
    fn marked(&self, chain: &Digest) -> bool {
        self.chain_dir(chain).join(DONE).symlink_metadata().is_ok()
    }

    /// Returns the snapshot of `chain`, unpacking the layer first if it is not there yet.
    ///
    /// `open_layer` is called only when this call does the unpacking, so a caller can stream
    /// a download into it and nothing is read for a layer that is already present. The stream
    /// may be compressed; its uncompressed content must hash to `diff_id`, or the snapshot is
    /// discarded and an error names the layer. Concurrent callers for the same chain, in this
    /// process or others, wait for the first one and unpack nothing.
    pub fn ensure<R, E, F>(
        &self,
        chain: &Digest,
        diff_id: &Digest,
        open_layer: F,
    ) -> Result<PathBuf>
    where
        R: Read,
        E: Into<Box<dyn StdError + Send + Sync>>,
        F: FnOnce() -> std::result::Result<R, E>,
    {
        self.ensure_verified(chain, diff_id, open_layer, |_| Ok::<(), E>(()))
    }

    /// `ensure`, with one more check before the snapshot is marked done: once the layer is
    /// unpacked and its diff_id matches, `verify` gets the stream back (to drain what the
    /// decompressor left, check the compressed digest, commit a blob written on the way).
    /// If it fails the snapshot is discarded, so a download can be unpacked while it arrives
    /// and still never leave a done snapshot of content whose digest did not match.
    pub fn ensure_verified<R, E, F, V>(
        &self,
        chain: &Digest,
        diff_id: &Digest,
        open_layer: F,
        verify: V,
    ) -> Result<PathBuf>
    where
        R: Read,
        E: Into<Box<dyn StdError + Send + Sync>>,
        F: FnOnce() -> std::result::Result<R, E>,
        V: FnOnce(R) -> std::result::Result<(), E>,
    {
        let path = self.path(chain);
        if self.contains(chain) {
            return Ok(path);
        }
        let lock = self.lock_chain(chain)?;
        if self.contains(chain) {
            return Ok(path);
        }
        self.discard_incomplete(chain)?;
        mark_top_dir(&self.dir);
        let scratch = Scratch::reserve(&self.dir)?;
        let fs_dir = scratch.dir.join(FS);
        for dir in [&scratch.dir, &fs_dir] {
            fs::create_dir(dir).map_err(io_err("creating", dir))?;
        }
        let mut reader = open_layer().map_err(|e| SnapshotError::Open {
            layer: diff_id.clone(),
            source: e.into(),
        })?;
        let unpacked = if self.sync {
            unpack_layer(&mut reader, &fs_dir)
        } else {
            unpack::unpack_layer_unsynced(&mut reader, &fs_dir)
        }
        .map_err(|source| SnapshotError::Unpack {
            layer: diff_id.clone(),
            source,
        })?;
        if unpacked.diff_id != diff_id.to_string() {
            return Err(SnapshotError::DiffIdMismatch {
                layer: diff_id.clone(),
                actual: unpacked.diff_id,
            });
        }
        verify(reader).map_err(|e| SnapshotError::Verify {
            layer: diff_id.clone(),
            source: e.into(),
        })?;
        write_done(&scratch.dir, diff_id, self.sync)?;
        scratch.persist(&self.chain_dir(chain))?;
        if self.sync {
            sync_dir(&self.dir)?;
        }
        drop(lock);
        Ok(path)
    }

    /// Makes the directory `dir` the snapshot of `chain` instead of unpacking its layer: for
    /// a layer that was just made from that directory (a build step's overlay upper
    /// directory, whose tar hashed to `diff_id`), so the files need not be written twice.
    ///
    /// `dir` must be on the store's filesystem and hold nothing else than the layer (the
    /// caller removes what the layer tar left out, such as a runtime's mount points).
    /// It is put into snapshot form ([`crate::adopt::prepare`]), renamed into a `tmp-*`
    /// directory, marked done and renamed to its chain id, as `ensure` does, so a killed
    /// process leaves either nothing or a complete snapshot. Unlike `ensure` it does not
    /// wait for the files to reach the disk: the marker names the boot it was made in, and
    /// [`Snapshots::contains`] trusts it only during that boot. A crash of the machine (the
    /// only way to lose what the page cache holds) means a new boot, after which the
    /// snapshot counts as missing and is unpacked from the layer's blob, which is on disk.
    ///
    /// Returns what happened; on [`Adoption::Present`] and [`Adoption::Refused`] `dir` is
    /// left where it was for the caller to delete (then the layer is unpacked from its
    /// blob when a container needs it).
    pub fn adopt(&self, chain: &Digest, diff_id: &Digest, dir: &Path) -> Result<Adoption> {
        if self.contains(chain) {
            return Ok(Adoption::Present);
        }
        let lock = self.lock_chain(chain)?;
        if self.contains(chain) {
            return Ok(Adoption::Present);
        }
        // Files still in the page cache are safe from anything but a crash of the
        // machine, which changes the boot id: so the data need not be waited for.
        let boot = boot_id();
        match crate::adopt::prepare(dir, boot.is_none()) {
            Ok(()) => {}
            Err(e @ crate::adopt::PrepareError::Dependent { .. }) => {
                return Ok(Adoption::Refused(e.to_string()))
            }
            Err(crate::adopt::PrepareError::Io { path, what, source }) => {
                return Err(SnapshotError::Io {
                    action: what,
                    path: dir.join(path.trim_start_matches('/')),
                    source,
                })
            }
        }
        self.discard_incomplete(chain)?;
        let scratch = Scratch::reserve(&self.dir)?;
        fs::create_dir(&scratch.dir).map_err(io_err("creating", &scratch.dir))?;
        match fs::rename(dir, scratch.dir.join(FS)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                return Ok(Adoption::Refused(format!(
                    "{} is not on the filesystem of {}",
                    dir.display(),
                    self.dir.display()
                )))
            }
            Err(e) => return Err(io_err("moving into the snapshots", dir)(e)),
        }
        match boot {
            Some(boot) => {
                let path = scratch.dir.join(DONE);
                fs::write(&path, format!("{diff_id}\n{UNSYNCED_BOOT}{boot}\n"))
                    .map_err(io_err("writing", &path))?;
                scratch.persist(&self.chain_dir(chain))?;
            }
            None => {
                write_done(&scratch.dir, diff_id, true)?;
                scratch.persist(&self.chain_dir(chain))?;
                sync_dir(&self.dir)?;
            }
        }
        drop(lock);
        Ok(Adoption::Adopted)
    }

    /// A chain directory without its `done` marker was not made by `ensure` (which renames
    /// only complete ones); move it out of the way rather than trust it.
    fn discard_incomplete(&self, chain: &Digest) -> Result<()> {
        let dir = self.chain_dir(chain);
        if dir.symlink_metadata().is_err() {
            return Ok(());
        }
        let trash = Scratch::reserve(&self.dir)?;
        fs::rename(&dir, &trash.dir).map_err(io_err("moving aside", &dir))
    }

    /// Removes a snapshot. Returns whether there was one. Callers make sure nothing mounts
    /// it (GC only removes chains no image references).
    pub fn remove(&self, chain: &Digest) -> Result<bool> {
        let lock = self.lock_chain(chain)?;
        let dir = self.chain_dir(chain);
        let existed = dir.symlink_metadata().is_ok();
        if existed {
            // Renamed away first, so a crash mid-delete leaves a tmp-* directory for `clean`,
            // never a partial snapshot under the chain id.
            let trash = Scratch::reserve(&self.dir)?;
            fs::rename(&dir, &trash.dir).map_err(io_err("moving aside", &dir))?;
        }
        lock.unlink()?;
        Ok(existed)
    }

    /// The chain ids of all snapshots marked done (an adopted one from before a reboot
    /// too, which `ensure` would replace), sorted.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let entries = fs::read_dir(&self.dir).map_err(io_err("listing", &self.dir))?;
        let mut chains = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("listing", &self.dir))?;
            let Some(chain) = entry.file_name().to_str().and_then(chain_of_name) else {
                continue;
            };
            if self.marked(&chain) {
                chains.push(chain);
            }
        }
        chains.sort();
        Ok(chains)
    }

    /// Removes `tmp-*` directories that no live process is working in (left by a crash), and
    /// returns how many directories went.
    pub fn clean(&self) -> Result<usize> {
        let entries = fs::read_dir(&self.dir).map_err(io_err("listing", &self.dir))?;
        let mut names = BTreeSet::new();
        for entry in entries {
            let entry = entry.map_err(io_err("listing", &self.dir))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with(TMP_PREFIX) {
                let base = name.strip_suffix(LOCK_SUFFIX).unwrap_or(&name);
                names.insert(base.to_string());
            }
        }
        let mut removed = 0;
        for name in names {
            if let Some(scratch) = Scratch::claim_abandoned(&self.dir, &name)? {
                if scratch.dir.symlink_metadata().is_ok() {
                    removed += 1;
                }
                scratch.discard()?;
            }
        }
        Ok(removed)
    }

    /// Waits for the exclusive lock on a chain. The lock file may be unlinked by `remove`
    /// while we wait; then the lock we got guards nothing and we take the new file's.
    fn lock_chain(&self, chain: &Digest) -> Result<ChainLock> {
        let path = self.chain_lock(chain);
        loop {
            let file = open_lock_file(&path, false).map_err(io_err("opening", &path))?;
            let file = Flock::lock(file, FlockArg::LockExclusive)
                .map_err(|(_, errno)| errno_err("locking", &path)(errno))?;
            if names_file(&path, &file) {
                return Ok(ChainLock { path, _file: file });
            }
        }
    }
}

/// The marker line of a snapshot whose files may not be on disk yet: valid during the
/// boot it names (`/proc/sys/kernel/random/boot_id`).
const UNSYNCED_BOOT: &str = "unsynced-boot ";

/// This boot's id, read once; None if the kernel does not say (then nothing is trusted
/// across a crash, and adoption waits for the disk).
fn boot_id() -> Option<&'static str> {
    static BOOT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    BOOT.get_or_init(|| {
        fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    })
    .as_deref()
}

/// What [`Snapshots::adopt`] did with the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adoption {
    /// It is the snapshot now.
    Adopted,
    /// The chain had a snapshot already; the directory is untouched.
    Present,
    /// It cannot be a snapshot (why); it is left where it was, maybe with overlayfs's
    /// xattrs removed.
    Refused(String),
}

/// An exclusive lock on one chain id, released on drop.
struct ChainLock {
    path: PathBuf,
    _file: Flock<File>,
}

impl ChainLock {
    /// Removes the lock file while still holding it (waiters notice and retry), so removed
    /// snapshots leave no lock files behind.
    fn unlink(self) -> Result<()> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("removing", &self.path)(e)),
            _ => Ok(()),
        }
    }
}

/// A `tmp-<pid>-<n>` directory name reserved under an exclusive flock of `tmp-<pid>-<n>.lock`.
/// Dropping it deletes the directory (unless persisted) and the lock file, lock still held.
struct Scratch {
    dir: PathBuf,
    lock_path: PathBuf,
    _lock: Flock<File>,
    persisted: bool,
}

impl Scratch {
    /// Reserves a fresh name; the directory itself is not created.
    fn reserve(parent: &Path) -> Result<Scratch> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        for _ in 0..NAME_ATTEMPTS {
            let seq = SEQ.fetch_add(1, Ordering::Relaxed);
            let name = format!("{TMP_PREFIX}{}-{seq}", std::process::id());
            let lock_path = parent.join(format!("{name}{LOCK_SUFFIX}"));
            let file = match open_lock_file(&lock_path, true) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("creating", &lock_path)(e)),
            };
            // `clean` may lock (and then remove) the file in the instant between create and
            // lock; then the name is not ours and we try the next.
            let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
                continue;
            };
            if !names_file(&lock_path, &lock) {
                continue;
            }
            return Ok(Scratch {
                dir: parent.join(name),
                lock_path,
                _lock: lock,
                persisted: false,
            });
        }
        Err(io_err("creating a unique directory in", parent)(
            io::ErrorKind::AlreadyExists.into(),
        ))
    }

    /// Takes over `name` if no live process holds its lock.
    fn claim_abandoned(parent: &Path, name: &str) -> Result<Option<Scratch>> {
        let lock_path = parent.join(format!("{name}{LOCK_SUFFIX}"));
        // Created if missing, so a creator racing us for this name fails its create_new
        // and moves on, instead of us deleting a directory it is about to make.
        let file = open_lock_file(&lock_path, false).map_err(io_err("opening", &lock_path))?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
            Err((_, errno)) => return Err(errno_err("locking", &lock_path)(errno)),
        };
        if !names_file(&lock_path, &lock) {
            return Ok(None);
        }
        Ok(Some(Scratch {
            dir: parent.join(name),
            lock_path,
            _lock: lock,
            persisted: false,
        }))
    }

    /// Renames the directory to `dest` (which must not exist) and keeps it.
    fn persist(mut self, dest: &Path) -> Result<()> {
        fs::rename(&self.dir, dest).map_err(io_err("renaming into place", dest))?;
        self.persisted = true;
        Ok(())
    }

    /// Deletes the directory and lock file now, reporting errors that drop would swallow.
    fn discard(mut self) -> Result<()> {
        remove_tree(&self.dir)?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = remove_tree(&self.dir);
        }
        // Removed while still locked (the lock goes when `_lock` drops, after this), so no
        // cleaner sees this name unlocked while it still means something.
        let _ = fs::remove_file(&self.lock_path);
    }
}

fn remove_tree(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("removing", dir)(e)),
        _ => Ok(()),
    }
}

fn open_lock_file(path: &Path, create_new: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).mode(0o600);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true);
    }
    // std sets O_CLOEXEC already; stated because no store fd may leak into a container.
    options.custom_flags(libc::O_CLOEXEC).open(path)
}

/// Whether `path` currently names the open file `file` (same device and inode).
fn names_file(path: &Path, file: &File) -> bool {
    match (fs::metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// A snapshot directory name back to its chain id: 64 hex characters for sha256, 128 for
/// sha512; anything else (locks, tmp-*, strays) is not a snapshot.
fn chain_of_name(name: &str) -> Option<Digest> {
    let algorithm = Algorithm::ALL
        .into_iter()
        .find(|a| a.hex_len() == name.len())?;
    Digest::from_parts(algorithm, name).ok()
}

/// Marks `dir` as the top of unrelated directory trees for ext2/3/4's Orlov allocator
/// (`chattr +T`, FS_TOPDIR_FL), best effort: filesystems without the flag ignore it.
///
/// Without it every snapshot directory (and so every inode of the layer) is allocated in
/// the flex group of `snapshots/` itself, which is where the snapshots of a store deleted a
/// moment ago were, too. On ext4 without a journal (this machine's root filesystem) the
/// allocator skips inodes freed less than 60 s ago (5 min while their inode table block is
/// dirty) by scanning them one by one from the start of the group, for every new inode;
/// after an `rm -rf` of a 10k-file store a pull spent 3-5 s of system time in that scan
/// (`recently_deleted` in fs/ext4/ialloc.c; docs/kernel-notes.md). With the flag, each new
/// snapshot directory goes to a flex group with few directories and free space above the
/// average, chosen from a hash of its name, and its subtree follows it there.
fn mark_top_dir(dir: &Path) {
    const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;
    let Ok(file) = File::open(dir) else { return };
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int to the pointer, which points to a live local.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) } != 0
        || flags & FS_TOPDIR_FL != 0
    {
        return;
    }
    flags |= FS_TOPDIR_FL;
    // SAFETY: FS_IOC_SETFLAGS reads one int from the pointer, which points to a live local.
    let _ = unsafe { libc::ioctl(file.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) };
}

/// Writes the marker and makes the whole snapshot durable before it gets its real name.
///
/// Without this a power cut could leave a snapshot marked done whose files are empty (ext4
/// allocates on writeback), which nothing would notice later: the diff_id was checked on
/// the stream, not on disk. The files' data is already on disk (the unpack waited for its
/// own writeback); what is left is the metadata of every file and directory. On ext4 and
/// XFS one fsync commits the journal up to that point, all of it included. Elsewhere
/// (btrfs logs per file) syncfs: one call instead of thousands of fsyncs.
/// Without `sync` only the marker is written (an unsynced snapshot, see `unsynced`).
fn write_done(dir: &Path, diff_id: &Digest, sync: bool) -> Result<()> {
    let path = dir.join(DONE);
    let mut file = File::create(&path).map_err(io_err("creating", &path))?;
    file.write_all(format!("{diff_id}\n").as_bytes())
        .map_err(io_err("writing", &path))?;
    if !sync {
        return Ok(());
    }
    if journal_commits_all(&file) {
        file.sync_all().map_err(io_err("syncing", &path))
    } else {
        nix::unistd::syncfs(&file).map_err(errno_err("syncing the filesystem of", &path))
    }
}

/// Filesystems whose fsync of one file commits every metadata change made before it.
///
/// ext4 only with a journal: without one (as this machine's root) fsync writes the file,
/// its inode and the directories that name it, and nothing else, so the layer's other
/// inodes and directories could be lost behind a durable marker.
fn journal_commits_all(file: &File) -> bool {
    const EXT4_SUPER_MAGIC: i64 = 0xEF53;
    const XFS_SUPER_MAGIC: i64 = 0x5846_5342;
    match nix::sys::statfs::fstatfs(file).map(|s| s.filesystem_type().0) {
        Ok(EXT4_SUPER_MAGIC) => ext4_has_journal(file),
        Ok(XFS_SUPER_MAGIC) => true,
        _ => false,
    }
}

/// Whether the ext4 filesystem holding `file` has a journal, from
/// `/sys/fs/ext4/<device>/journal_task` ("<none>" without one). Unknown counts as no.
fn ext4_has_journal(file: &File) -> bool {
    let Ok(meta) = file.metadata() else {
        return false;
    };
    let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
    let Ok(device) = fs::read_link(format!("/sys/dev/block/{major}:{minor}")) else {
        return false;
    };
    let Some(name) = device.file_name() else {
        return false;
    };
    let task = Path::new("/sys/fs/ext4").join(name).join("journal_task");
    fs::read_to_string(task).is_ok_and(|t| t.trim() != "<none>")
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing", dir))
}

/// Mounts overlayfs on `target` with `lowers` (top layer first) and, for a writable mount,
/// `upper = Some((upperdir, workdir))`; without an upper the mount is read-only.
///
/// The new mount API is used always: `fsopen("overlay")`, one `fsconfig("lowerdir+", dir)`
/// per layer, `fsmount`, `move_mount`. mount(2) takes its options as one string of at most a
/// page, which ~100 layers under /var/lib/berth already exceed (Docker works around it with
/// short symlinks); `lowerdir+` (Linux 6.8) has no such limit and needs no escaping of `:` or
/// `,` in paths (overlayfs itself still stops at 500 layers). Older kernels reject
/// `lowerdir+` (or lack fsopen); for them we fall back to mount(2) when the string fits.
///
/// overlayfs refuses a single lower dir without an upper ("at least 2 lowerdir are needed"),
/// so that case is a read-only bind mount of the one layer.
pub fn mount_overlay(
    lowers: &[PathBuf],
    upper: Option<(&Path, &Path)>,
    target: &Path,
) -> Result<()> {
    mount_overlay_with(lowers, upper, target, false)
}

/// [`mount_overlay`] with overlayfs's `volatile` option: the upper layer is never synced,
/// not even at unmount. For an upper that is thrown away when the container is (`--rm`):
/// the unmount's syncfs flushes the whole host filesystem's dirty data, not just the
/// container's, and took 15 ms to almost a second here under load. After a crash the
/// kernel refuses to mount such an upper again, which is fine for something deleted anyway.
pub fn mount_overlay_volatile(
    lowers: &[PathBuf],
    upper: (&Path, &Path),
    target: &Path,
) -> Result<()> {
    mount_overlay_with(lowers, Some(upper), target, true)
}

fn mount_overlay_with(
    lowers: &[PathBuf],
    upper: Option<(&Path, &Path)>,
    target: &Path,
    volatile: bool,
) -> Result<()> {
    if lowers.is_empty() {
        return Err(SnapshotError::MountRefused {
            target: target.to_path_buf(),
            reason: "no lower directories".into(),
        });
    }
    if lowers.len() == 1 && upper.is_none() {
        return bind_readonly(&lowers[0], target);
    }
    let err = match fsmount_overlay(lowers, upper, target, volatile) {
        Ok(()) => return Ok(()),
        Err(err) => err,
    };
    let old_kernel = matches!(
        err,
        SnapshotError::Mount {
            source: Errno::EINVAL | Errno::ENOSYS,
            ..
        }
    );
    if old_kernel {
        if let Some(mut options) = legacy_options(lowers, upper) {
            if volatile {
                options += ",volatile";
            }
            if mount_legacy(&options, upper.is_none(), target).is_ok() {
                return Ok(());
            }
        }
    }
    Err(err)
}

fn fsmount_overlay(
    lowers: &[PathBuf],
    upper: Option<(&Path, &Path)>,
    target: &Path,
    volatile: bool,
) -> Result<()> {
    let mnt = overlay_mount_fd(lowers, upper, target, false, volatile)?;
    move_mount(&mnt, target).map_err(mount_err("overlay", target, "move_mount".into(), None))
}

/// An overlay of `lowers` (top first) and `upper`, mounted nowhere: the returned fd is the
/// root of a detached mount, which the kernel releases with the last fd or file opened
/// through it. Nothing appears in any mount table, so nothing can be left mounted, whatever
/// happens to the caller; `berth cp`/`export`/`diff`/`commit` use it to see a stopped
/// container's files. `name` only labels errors.
///
/// Unlike [`mount_overlay`], a single lower without an upper is refused (the caller can
/// open that directory itself), and kernels without `lowerdir+` get the option string
/// through fsconfig when it fits a page.
pub fn overlay_detached(
    lowers: &[PathBuf],
    upper: Option<(&Path, &Path)>,
    name: &Path,
) -> Result<OwnedFd> {
    if lowers.is_empty() || (lowers.len() == 1 && upper.is_none()) {
        return Err(SnapshotError::MountRefused {
            target: name.to_path_buf(),
            reason: "an overlay needs two lower directories, or one and an upper".into(),
        });
    }
    match overlay_mount_fd(lowers, upper, name, false, false) {
        Err(
            first @ SnapshotError::Mount {
                source: Errno::EINVAL,
                ..
            },
        ) => overlay_mount_fd(lowers, upper, name, true, false).map_err(|_| first),
        other => other,
    }
}

/// fsopen/fsconfig/fsmount of an overlay; with `legacy`, the lower dirs go in one
/// `lowerdir` string (kernels before 6.8 lack `lowerdir+`); `volatile` as in
/// [`mount_overlay_volatile`].
fn overlay_mount_fd(
    lowers: &[PathBuf],
    upper: Option<(&Path, &Path)>,
    target: &Path,
    legacy: bool,
    volatile: bool,
) -> Result<OwnedFd> {
    let fail = |step: String, fs| mount_err("overlay", target, step, fs);
    let fs = fsopen(c"overlay").map_err(fail("fsopen".into(), None))?;
    if legacy {
        let joined = legacy_options(lowers, None).ok_or_else(|| SnapshotError::MountRefused {
            target: target.to_path_buf(),
            reason: "the lower directories do not fit one option string".into(),
        })?;
        let value = joined.trim_start_matches("lowerdir=");
        fsconfig_path(&fs, c"lowerdir", Path::new(value))
            .map_err(fail("lower dirs".into(), Some(&fs)))?;
    } else {
        for lower in lowers {
            fsconfig_path(&fs, c"lowerdir+", lower)
                .map_err(fail(format!("lower dir {}", lower.display()), Some(&fs)))?;
        }
    }
    if let Some((upperdir, workdir)) = upper {
        fsconfig_path(&fs, c"upperdir", upperdir)
            .map_err(fail(format!("upper dir {}", upperdir.display()), Some(&fs)))?;
        fsconfig_path(&fs, c"workdir", workdir)
            .map_err(fail(format!("work dir {}", workdir.display()), Some(&fs)))?;
        if volatile {
            fsconfig_flag(&fs, c"volatile").map_err(fail("volatile".into(), Some(&fs)))?;
        }
    }
    fsconfig_create(&fs).map_err(fail("creating the filesystem".into(), Some(&fs)))?;
    let attrs = if upper.is_none() {
        libc::MOUNT_ATTR_RDONLY
    } else {
        0
    };
    fsmount(&fs, attrs).map_err(fail("fsmount".into(), Some(&fs)))
}

/// Builds the error for a failed mount step; the kernel's log is read only when it fails.
fn mount_err<'a>(
    what: &'static str,
    target: &'a Path,
    step: String,
    fs: Option<&'a OwnedFd>,
) -> impl FnOnce(Errno) -> SnapshotError + 'a {
    move |source| SnapshotError::Mount {
        what,
        target: target.to_path_buf(),
        step,
        source,
        log: fs.map(kernel_log).unwrap_or_default(),
    }
}

/// The classic `lowerdir=a:b,upperdir=…,workdir=…` string, or None if it would not fit in
/// mount(2)'s page or a path holds a character the option parser splits on.
fn legacy_options(lowers: &[PathBuf], upper: Option<(&Path, &Path)>) -> Option<String> {
    let text = |p: &Path| {
        p.to_str()
            .filter(|s| !s.contains([',', ':', '\\']))
            .map(str::to_string)
    };
    let lowers: Vec<String> = lowers.iter().map(|p| text(p)).collect::<Option<_>>()?;
    let mut options = format!("lowerdir={}", lowers.join(":"));
    if let Some((upperdir, workdir)) = upper {
        options += &format!(",upperdir={},workdir={}", text(upperdir)?, text(workdir)?);
    }
    (options.len() <= MOUNT_DATA_MAX).then_some(options)
}

fn mount_legacy(options: &str, readonly: bool, target: &Path) -> Result<()> {
    let flags = if readonly {
        MsFlags::MS_RDONLY
    } else {
        MsFlags::empty()
    };
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        flags,
        Some(options),
    )
    .map_err(mount_err("overlay", target, "mount(2)".into(), None))
}

/// A read-only bind mount of `dir` on `target` (open_tree + mount_setattr + move_mount, so
/// the mount is read-only from the moment it appears).
fn bind_readonly(dir: &Path, target: &Path) -> Result<()> {
    let what = "read-only bind of the layer";
    let fail = |step: &str| mount_err(what, target, step.to_string(), None);
    let tree = open_tree_clone(dir).map_err(fail("open_tree"))?;
    set_readonly(&tree).map_err(fail("mount_setattr"))?;
    move_mount(&tree, target).map_err(fail("move_mount"))
}

/// Unmounts what `mount_overlay` mounted. Not lazy: a mount still in use is an error
/// (EBUSY) rather than a mount that silently lives on.
pub fn unmount(target: &Path) -> Result<()> {
    nix::mount::umount2(target, MntFlags::UMOUNT_NOFOLLOW).map_err(|source| {
        SnapshotError::Unmount {
            target: target.to_path_buf(),
            source,
        }
    })
}

fn c_path(path: &Path) -> std::result::Result<CString, Errno> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)
}

/// Takes ownership of the fd a syscall returned, or its errno.
fn owned_fd(ret: libc::c_long) -> nix::Result<OwnedFd> {
    if ret < 0 {
        return Err(Errno::last());
    }
    let raw = RawFd::try_from(ret).map_err(|_| Errno::EBADF)?;
    // SAFETY: the syscall just returned this fd, so it is open and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn fsopen(fstype: &CStr) -> nix::Result<OwnedFd> {
    // SAFETY: fstype is NUL-terminated and outlives the call; fsopen returns a new fd or -1.
    let ret = unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), libc::FSOPEN_CLOEXEC) };
    owned_fd(ret)
}

fn fsconfig_path(fs: &OwnedFd, key: &CStr, path: &Path) -> nix::Result<()> {
    let value = c_path(path)?;
    // SAFETY: fs is an open fs context; key and value are NUL-terminated strings that outlive
    // the call, as FSCONFIG_SET_STRING expects; aux must be 0.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            libc::FSCONFIG_SET_STRING,
            key.as_ptr(),
            value.as_ptr(),
            0,
        )
    };
    Errno::result(ret).map(drop)
}

fn fsconfig_flag(fs: &OwnedFd, key: &CStr) -> nix::Result<()> {
    // SAFETY: FSCONFIG_SET_FLAG takes a NUL-terminated key that outlives the call, a null
    // value and aux 0.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            libc::FSCONFIG_SET_FLAG,
            key.as_ptr(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    Errno::result(ret).map(drop)
}

fn fsconfig_create(fs: &OwnedFd) -> nix::Result<()> {
    // SAFETY: FSCONFIG_CMD_CREATE takes no key or value (both null) and aux 0.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            libc::FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    Errno::result(ret).map(drop)
}

fn fsmount(fs: &OwnedFd, attrs: u64) -> nix::Result<OwnedFd> {
    let attrs = libc::c_uint::try_from(attrs).map_err(|_| Errno::EINVAL)?;
    // SAFETY: fs is a created fs context; flags and attrs are plain integers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            libc::FSMOUNT_CLOEXEC,
            attrs,
        )
    };
    owned_fd(ret)
}

fn move_mount(mnt: &OwnedFd, target: &Path) -> nix::Result<()> {
    let target = c_path(target)?;
    // SAFETY: mnt is a detached mount fd; the empty path with MOVE_MOUNT_F_EMPTY_PATH means
    // "mnt itself"; target is NUL-terminated and outlives the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    Errno::result(ret).map(drop)
}

fn open_tree_clone(dir: &Path) -> nix::Result<OwnedFd> {
    let dir = c_path(dir)?;
    // SAFETY: dir is NUL-terminated and outlives the call; open_tree returns a new fd or -1.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            dir.as_ptr(),
            libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC,
        )
    };
    owned_fd(ret)
}

fn set_readonly(tree: &OwnedFd) -> nix::Result<()> {
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: attr is a live mount_attr of the size passed; the empty path with AT_EMPTY_PATH
    // means the detached tree itself.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    Errno::result(ret).map(drop)
}

/// The messages the kernel left in an fs context's log ("e overlay: …"), joined; each read
/// returns one message, and ENODATA once the log is empty.
fn kernel_log(fs: &OwnedFd) -> String {
    let mut messages = Vec::new();
    let mut buf = [0u8; 1024];
    for _ in 0..8 {
        match nix::unistd::read(fs, &mut buf) {
            Ok(n) if n > 0 => {
                let text = String::from_utf8_lossy(&buf[..n]);
                messages.push(text.trim_end().to_string());
            }
            _ => break,
        }
    }
    messages.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    use std::os::unix::fs::FileTypeExt;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Barrier;

    /// A tar layer in memory holding `files`.
    fn layer(files: &[(&str, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(1_600_000_000);
            builder
                .append_data(&mut header, name, data.as_bytes())
                .unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn snapshots() -> (tempfile::TempDir, Snapshots) {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = Snapshots::open(dir.path()).unwrap();
        (dir, snapshots)
    }

    /// Everything in the snapshots directory, sorted.
    fn entries(snapshots: &Snapshots) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(snapshots.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn ensure_unpacks_once_under_concurrency() {
        let (_dir, snapshots) = snapshots();
        let tar = layer(&[("etc/hello", "world")]);
        let diff_id = Digest::sha256_of(&tar);
        let opened = AtomicUsize::new(0);
        let start = Barrier::new(8);
        let (snapshots, tar, opened, start, diff_id) =
            (&snapshots, &tar, &opened, &start, &diff_id);
        let paths: Vec<PathBuf> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(move || {
                        start.wait();
                        snapshots
                            .ensure(diff_id, diff_id, || {
                                opened.fetch_add(1, Ordering::SeqCst);
                                // Slow, so the others pile up on the lock.
                                std::thread::sleep(std::time::Duration::from_millis(50));
                                Ok::<_, io::Error>(tar.as_slice())
                            })
                            .unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(opened.load(Ordering::SeqCst), 1, "unpacked exactly once");
        assert!(paths.iter().all(|p| p == &snapshots.path(diff_id)));
        assert_eq!(
            fs::read_to_string(paths[0].join("etc/hello")).unwrap(),
            "world"
        );
        assert_eq!(snapshots.list().unwrap(), vec![diff_id.clone()]);
        assert_eq!(
            entries(snapshots),
            vec![diff_id.hex().to_string(), format!("{}.lock", diff_id.hex())],
            "no tmp-* left behind"
        );
        // Present now: the layer is not even opened.
        snapshots
            .ensure(diff_id, diff_id, || -> io::Result<&[u8]> {
                panic!("must not reopen a present layer")
            })
            .unwrap();
    }

    fn inode_flags(path: &Path) -> Option<libc::c_int> {
        let file = File::open(path).unwrap();
        let mut flags: libc::c_int = 0;
        // SAFETY: FS_IOC_GETFLAGS writes one int to a live local.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) };
        (r == 0).then_some(flags)
    }

    #[test]
    fn snapshots_dir_is_marked_as_top_of_unrelated_trees() {
        let (_dir, snapshots) = snapshots();
        let on_ext4 = nix::sys::statfs::statfs(snapshots.dir())
            .is_ok_and(|s| s.filesystem_type().0 == 0xEF53);
        if !on_ext4 {
            eprintln!("skipped: the temp dir is not on ext2/3/4");
            return;
        }
        let tar = layer(&[("etc/hello", "world")]);
        let diff_id = Digest::sha256_of(&tar);
        snapshots
            .ensure(&diff_id, &diff_id, || Ok::<_, io::Error>(tar.as_slice()))
            .unwrap();
        let flags = inode_flags(snapshots.dir()).expect("ext4 reports inode flags");
        assert_ne!(flags & 0x0002_0000, 0, "FS_TOPDIR_FL (chattr +T) is set");
        // Only the parent: the snapshot's own directories are plain.
        let fs_flags = inode_flags(&snapshots.path(&diff_id)).unwrap();
        assert_eq!(fs_flags & 0x0002_0000, 0);
    }

    #[test]
    fn diff_id_mismatch_leaves_nothing() {
        let (_dir, snapshots) = snapshots();
        let tar = layer(&[("f", "x")]);
        let promised = Digest::sha256_of(b"what the config says");
        let err = snapshots
            .ensure(&promised, &promised, || Ok::<_, io::Error>(tar.as_slice()))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "layer {promised}: unpacked content has diff_id {}",
                Digest::sha256_of(&tar)
            )
        );
        assert!(!snapshots.contains(&promised));
        assert!(snapshots.list().unwrap().is_empty());
        assert_eq!(
            entries(&snapshots),
            vec![format!("{}.lock", promised.hex())]
        );
    }

    #[test]
    fn failed_verify_discards_the_unpacked_snapshot() {
        let (_dir, snapshots) = snapshots();
        let tar = layer(&[("f", "x")]);
        let diff_id = Digest::sha256_of(&tar);
        let err = snapshots
            .ensure_verified(
                &diff_id,
                &diff_id,
                || Ok::<_, io::Error>(tar.as_slice()),
                |rest| {
                    assert!(rest.is_empty(), "the stream was read to its end");
                    Err(io::Error::other("blob digest mismatch"))
                },
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("layer {diff_id}: blob digest mismatch")
        );
        assert!(!snapshots.contains(&diff_id));
        assert!(entries(&snapshots).iter().all(|n| !n.starts_with("tmp-")));

        let verified = AtomicUsize::new(0);
        snapshots
            .ensure_verified(
                &diff_id,
                &diff_id,
                || Ok::<_, io::Error>(tar.as_slice()),
                |_| {
                    verified.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                },
            )
            .unwrap();
        assert!(snapshots.contains(&diff_id));
        assert_eq!(verified.load(Ordering::SeqCst), 1);
        // Present now: neither callback runs.
        snapshots
            .ensure_verified(
                &diff_id,
                &diff_id,
                || -> io::Result<&[u8]> { panic!("opened a present layer") },
                |_| panic!("verified a present layer"),
            )
            .unwrap();
    }

    #[test]
    fn open_and_unpack_errors_name_the_layer_and_leave_nothing() {
        let (_dir, snapshots) = snapshots();
        let chain = Digest::sha256_of(b"layer");
        let err = snapshots
            .ensure(&chain, &chain, || -> io::Result<&[u8]> {
                Err(io::Error::new(io::ErrorKind::NotFound, "blob missing"))
            })
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("layer {chain}: opening its content: blob missing")
        );
        let err = snapshots
            .ensure(&chain, &chain, || {
                Ok::<_, io::Error>(&b"not a tar at all"[..])
            })
            .unwrap_err();
        assert!(
            err.to_string().starts_with(&format!("layer {chain}: ")),
            "{err}"
        );
        assert!(entries(&snapshots).iter().all(|n| !n.starts_with("tmp-")));
    }

    #[test]
    fn stale_tmp_is_cleaned_and_live_one_kept() {
        let (_dir, snapshots) = snapshots();
        // A crash mid-unpack: directory, no lock holder. One with its lock file, one without.
        for name in ["tmp-999999-0", "tmp-999999-1"] {
            fs::create_dir_all(snapshots.dir().join(name).join("fs/usr/bin")).unwrap();
            fs::write(snapshots.dir().join(name).join("fs/usr/bin/sh"), "half").unwrap();
        }
        fs::write(snapshots.dir().join("tmp-999999-1.lock"), "").unwrap();
        // A lock file whose directory was never made.
        fs::write(snapshots.dir().join("tmp-999999-2.lock"), "").unwrap();
        // A live unpack in this process.
        let live = Scratch::reserve(snapshots.dir()).unwrap();
        fs::create_dir(&live.dir).unwrap();

        assert_eq!(snapshots.clean().unwrap(), 2);
        let live_name = live.dir.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(
            entries(&snapshots),
            vec![live_name.clone(), format!("{live_name}.lock")]
        );
        drop(live);
        assert_eq!(entries(&snapshots), Vec::<String>::new());
        assert_eq!(snapshots.clean().unwrap(), 0);
    }

    #[test]
    fn incomplete_chain_dir_is_replaced() {
        let (_dir, snapshots) = snapshots();
        let tar = layer(&[("good", "yes")]);
        let chain = Digest::sha256_of(&tar);
        // A chain directory without its marker (not something ensure makes).
        fs::create_dir_all(snapshots.path(&chain)).unwrap();
        fs::write(snapshots.path(&chain).join("bad"), "x").unwrap();
        assert!(snapshots.list().unwrap().is_empty());
        let path = snapshots
            .ensure(&chain, &chain, || Ok::<_, io::Error>(tar.as_slice()))
            .unwrap();
        assert!(path.join("good").exists());
        assert!(!path.join("bad").exists());
    }

    #[test]
    fn remove_deletes_snapshot_and_lock() {
        let (_dir, snapshots) = snapshots();
        let tar = layer(&[("f", "x")]);
        let chain = Digest::sha256_of(&tar);
        snapshots
            .ensure(&chain, &chain, || Ok::<_, io::Error>(tar.as_slice()))
            .unwrap();
        assert!(snapshots.remove(&chain).unwrap());
        assert!(!snapshots.contains(&chain));
        assert_eq!(entries(&snapshots), Vec::<String>::new());
        assert!(!snapshots.remove(&chain).unwrap());
    }

    fn xattr_names(path: &Path) -> Vec<String> {
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        let mut buf = vec![0u8; 4096];
        // SAFETY: c is NUL-terminated; buf is writable for its whole length.
        let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        assert!(n >= 0, "llistxattr {}", path.display());
        buf[..n as usize]
            .split(|b| *b == 0)
            .filter(|k| !k.is_empty())
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect()
    }

    fn set_xattr(path: &Path, key: &CStr, value: &[u8]) {
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: c and key are NUL-terminated; value's pointer and length go together.
        let r = unsafe {
            libc::lsetxattr(
                c.as_ptr(),
                key.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        assert_eq!(r, 0, "lsetxattr {}", path.display());
    }

    /// Every path under `dir` with overlayfs xattrs on it, and which.
    fn overlay_xattrs(dir: &Path) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(p) = todo.pop() {
            for key in xattr_names(&p) {
                if key.starts_with("trusted.overlay.") {
                    let rel = p.strip_prefix(dir).unwrap().display().to_string();
                    out.push((rel, key));
                }
            }
            if p.symlink_metadata().unwrap().is_dir() {
                for e in fs::read_dir(&p).unwrap() {
                    todo.push(e.unwrap().path());
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn an_upper_directory_is_adopted_as_the_snapshot() {
        let tmp = tempfile::tempdir().unwrap();
        let (_dir, snapshots) = snapshots();
        let dirs = mkdirs(
            tmp.path(),
            &["lower/a", "lower/opq", "upper", "work", "merged"],
        );
        let lower = tmp.path().join("lower");
        fs::write(lower.join("a/keep"), "keep").unwrap();
        fs::write(lower.join("a/gone"), "gone").unwrap();
        fs::write(lower.join("opq/old"), "old").unwrap();
        fs::write(lower.join("base"), "base").unwrap();
        let (upper, work, merged) = (&dirs[2], &dirs[3], &dirs[4]);
        // A step's writes through the overlay: a copy-up, a whiteout, an opaque directory,
        // a socket (which no layer holds).
        mount_overlay(std::slice::from_ref(&lower), Some((upper, work)), merged).unwrap();
        let mounted = Mounted(merged);
        fs::write(merged.join("a/new"), "new").unwrap();
        fs::remove_file(merged.join("a/gone")).unwrap();
        fs::remove_dir_all(merged.join("opq")).unwrap();
        fs::create_dir(merged.join("opq")).unwrap();
        fs::write(merged.join("opq/fresh"), "fresh").unwrap();
        fs::write(merged.join("base"), "changed").unwrap();
        let listener = std::os::unix::net::UnixListener::bind(merged.join("sock")).unwrap();
        drop(listener);
        unmount(merged).unwrap();
        std::mem::forget(mounted);
        assert!(upper.join("sock").exists());
        let before = overlay_xattrs(upper);
        assert!(
            before.iter().any(|(_, k)| k != "trusted.overlay.opaque"),
            "the kernel left bookkeeping to remove: {before:?}"
        );

        let diff_id = Digest::sha256_of(b"the layer made from upper");
        let chain = Digest::sha256_of(b"its chain");
        assert_eq!(
            snapshots.adopt(&chain, &diff_id, upper).unwrap(),
            Adoption::Adopted
        );
        assert!(!upper.exists(), "moved, not copied");
        assert!(snapshots.contains(&chain));
        assert_eq!(snapshots.list().unwrap(), vec![chain.clone()]);
        assert!(entries(&snapshots).iter().all(|n| !n.starts_with("tmp-")));
        let snap = snapshots.path(&chain);
        assert_eq!(
            overlay_xattrs(&snap),
            vec![("opq".to_string(), "trusted.overlay.opaque".to_string())]
        );
        assert!(!snap.join("sock").exists());
        let wh = fs::symlink_metadata(snap.join("a/gone")).unwrap();
        assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
        assert_eq!(fs::metadata(&snap).unwrap().mode() & 0o7777, 0o755);
        let marker = fs::read_to_string(snap.parent().unwrap().join(DONE)).unwrap();
        assert_eq!(
            marker,
            format!("{diff_id}\n{UNSYNCED_BOOT}{}\n", boot_id().unwrap())
        );

        // Stacked on its lower it is what the overlay showed.
        let view = &mkdirs(tmp.path(), &["view"])[0];
        mount_overlay(&[snap.clone(), lower.clone()], None, view).unwrap();
        let _view = Mounted(view);
        let mut seen = Vec::new();
        for d in ["", "a", "opq"] {
            for e in fs::read_dir(view.join(d)).unwrap() {
                let name = e.unwrap().file_name().into_string().unwrap();
                seen.push(if d.is_empty() {
                    name
                } else {
                    format!("{d}/{name}")
                });
            }
        }
        seen.sort();
        assert_eq!(
            seen,
            ["a", "a/keep", "a/new", "base", "opq", "opq/fresh"],
            "no gone, no old, no sock"
        );
        assert_eq!(fs::read_to_string(view.join("base")).unwrap(), "changed");
        unmount(view).unwrap();

        // The chain has its snapshot now: another directory is left alone.
        let other = &mkdirs(tmp.path(), &["other"])[0];
        fs::write(other.join("x"), "x").unwrap();
        assert_eq!(
            snapshots.adopt(&chain, &diff_id, other).unwrap(),
            Adoption::Present
        );
        assert!(other.join("x").exists());
    }

    #[test]
    fn an_upper_tied_to_its_lowers_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (_dir, snapshots) = snapshots();
        for key in [c"trusted.overlay.redirect", c"trusted.overlay.metacopy"] {
            let upper = &mkdirs(tmp.path(), &["upper/moved"])[0];
            set_xattr(upper, key, b"/elsewhere");
            let chain = Digest::sha256_of(key.to_bytes());
            let Adoption::Refused(why) = snapshots
                .adopt(&chain, &chain, &tmp.path().join("upper"))
                .unwrap()
            else {
                panic!("adopted an upper with {key:?}")
            };
            assert!(why.contains(key.to_str().unwrap()), "{why}");
            assert!(upper.exists(), "left where it was");
            assert!(!snapshots.contains(&chain));
            assert!(entries(&snapshots).iter().all(|n| !n.starts_with("tmp-")));
            fs::remove_dir_all(tmp.path().join("upper")).unwrap();
        }
    }

    #[test]
    fn an_unsynced_snapshot_from_another_boot_is_unpacked_again() {
        let (_dir, snapshots) = snapshots();
        let tar = layer(&[("f", "from the blob")]);
        let diff_id = Digest::sha256_of(&tar);
        // As adopt leaves it, but in a boot before this one: its files may be lost.
        let fs_dir = snapshots.path(&diff_id);
        fs::create_dir_all(&fs_dir).unwrap();
        fs::write(fs_dir.join("f"), "").unwrap();
        fs::write(
            fs_dir.parent().unwrap().join(DONE),
            format!("{diff_id}\n{UNSYNCED_BOOT}00000000-0000-0000-0000-000000000000\n"),
        )
        .unwrap();
        assert!(!snapshots.contains(&diff_id));
        assert_eq!(
            snapshots.list().unwrap(),
            vec![diff_id.clone()],
            "GC still sees it"
        );
        let path = snapshots
            .ensure(&diff_id, &diff_id, || Ok::<_, io::Error>(tar.as_slice()))
            .unwrap();
        assert_eq!(fs::read_to_string(path.join("f")).unwrap(), "from the blob");
        assert!(snapshots.contains(&diff_id));
        assert_eq!(
            fs::read_to_string(path.parent().unwrap().join(DONE)).unwrap(),
            format!("{diff_id}\n")
        );
        assert_eq!(
            snapshots.clean().unwrap(),
            0,
            "the old one went with ensure"
        );
    }

    #[test]
    fn chain_names() {
        let d = Digest::sha256_of(b"x");
        assert_eq!(chain_of_name(d.hex()), Some(d.clone()));
        assert_eq!(chain_of_name(&format!("{}.lock", d.hex())), None);
        assert_eq!(chain_of_name("tmp-1-2"), None);
        let long = Digest::of(Algorithm::Sha512, b"x");
        assert_eq!(chain_of_name(long.hex()), Some(long));
    }

    /// Unmounts on drop, so a failed assertion does not leave the mount behind.
    struct Mounted<'a>(&'a Path);

    impl Drop for Mounted<'_> {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(self.0, MntFlags::MNT_DETACH);
        }
    }

    fn mkdirs(base: &Path, names: &[&str]) -> Vec<PathBuf> {
        names
            .iter()
            .map(|n| {
                let p = base.join(n);
                fs::create_dir_all(&p).unwrap();
                p
            })
            .collect()
    }

    #[test]
    fn two_hundred_layers_with_a_whiteout() {
        let tmp = tempfile::tempdir().unwrap();
        // Bottom first while building; each layer adds one file.
        let mut lowers: Vec<PathBuf> = (0..200)
            .map(|i| {
                let dir = tmp.path().join(format!("layers/layer-number-{i:03}/fs"));
                fs::create_dir_all(&dir).unwrap();
                fs::write(dir.join(format!("file{i:03}")), i.to_string()).unwrap();
                dir
            })
            .collect();
        // One more layer deletes file007 with an overlay whiteout (char device 0/0).
        let top = tmp.path().join("layers/whiteout/fs");
        fs::create_dir_all(&top).unwrap();
        mknod(
            &top.join("file007"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o600),
            makedev(0, 0),
        )
        .unwrap();
        lowers.push(top);
        lowers.reverse(); // top first for mounting
        let joined: usize = lowers.iter().map(|p| p.as_os_str().len() + 1).sum();
        assert!(
            joined > 4096,
            "the option string must exceed a page ({joined})"
        );
        assert!(legacy_options(&lowers, None).is_none());

        let target = &mkdirs(tmp.path(), &["merged"])[0];
        mount_overlay(&lowers, None, target).unwrap();
        let mounted = Mounted(target);
        let mut names: Vec<String> = fs::read_dir(target)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names.len(), 199);
        assert!(
            !target.join("file007").exists(),
            "whiteout hides the lower file"
        );
        assert_eq!(fs::read_to_string(target.join("file000")).unwrap(), "0");
        assert_eq!(fs::read_to_string(target.join("file199")).unwrap(), "199");
        // No upper: read-only.
        let err = fs::write(target.join("new"), "x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS));

        unmount(target).unwrap();
        std::mem::forget(mounted);
        assert!(fs::read_dir(target).unwrap().next().is_none(), "unmounted");
    }

    #[test]
    fn upper_takes_the_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = mkdirs(tmp.path(), &["l1", "l2", "upper", "work", "merged"]);
        let [l1, l2, upper, work, merged] = &dirs[..] else {
            unreachable!()
        };
        fs::write(l1.join("base"), "l1").unwrap();
        fs::write(l2.join("base"), "l2").unwrap();
        fs::write(l1.join("only1"), "1").unwrap();
        mount_overlay(&[l2.clone(), l1.clone()], Some((upper, work)), merged).unwrap();
        let _mounted = Mounted(merged);
        assert_eq!(
            fs::read_to_string(merged.join("base")).unwrap(),
            "l2",
            "l2 is on top"
        );
        fs::write(merged.join("new"), "written").unwrap();
        fs::remove_file(merged.join("only1")).unwrap();
        assert_eq!(fs::read_to_string(upper.join("new")).unwrap(), "written");
        assert!(l1.join("only1").exists(), "lower untouched");
        let wh = fs::symlink_metadata(upper.join("only1")).unwrap();
        assert!(
            wh.file_type().is_char_device(),
            "deletion is a whiteout in upper"
        );
        assert!(!l2.join("new").exists());
        unmount(merged).unwrap();
        assert!(!merged.join("new").exists());
        let err = unmount(merged).unwrap_err();
        assert!(err.to_string().starts_with("unmounting "), "{err}");
    }

    #[test]
    fn single_lower_is_a_readonly_bind() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = mkdirs(tmp.path(), &["only", "merged"]);
        fs::write(dirs[0].join("f"), "x").unwrap();
        mount_overlay(&dirs[..1], None, &dirs[1]).unwrap();
        let _mounted = Mounted(&dirs[1]);
        assert_eq!(fs::read_to_string(dirs[1].join("f")).unwrap(), "x");
        let err = fs::write(dirs[1].join("g"), "y").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS));
        unmount(&dirs[1]).unwrap();
    }

    #[test]
    fn legacy_mount_when_options_fit() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = mkdirs(tmp.path(), &["a", "b", "merged"]);
        fs::write(dirs[1].join("f"), "b").unwrap();
        let options = legacy_options(&dirs[..2], None).unwrap();
        mount_legacy(&options, true, &dirs[2]).unwrap();
        let _mounted = Mounted(&dirs[2]);
        assert_eq!(fs::read_to_string(dirs[2].join("f")).unwrap(), "b");
        assert!(legacy_options(&[PathBuf::from("/a:b"), PathBuf::from("/c")], None).is_none());
    }

    #[test]
    fn mount_errors_say_which_dir_and_what_the_kernel_said() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = mkdirs(tmp.path(), &["a", "merged"]);
        let missing = tmp.path().join("missing");
        let err = mount_overlay(&[dirs[0].clone(), missing.clone()], None, &dirs[1]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("lower dir {}", missing.display())),
            "{msg}"
        );
        assert!(msg.contains("No such file or directory"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        let err = mount_overlay(&[], None, &dirs[1]).unwrap_err();
        assert!(err.to_string().contains("no lower directories"), "{err}");
    }
}
