//! Content written without waiting for the disk, and what happens to it after a crash.
//!
//! A pull writes hundreds of MB and thousands of files; waiting for all of it to reach the
//! disk (each blob's fsync, each file's writeback) cost about a second of a 2-3 s pull here.
//! Instead, before the first unsynced byte, a pull writes a *record* naming the blobs and
//! snapshots (chain ids) it is about to write, and makes that one small file durable. Then
//! it writes everything without syncing (`BlobStore::unsynced`, `Snapshots::unsynced`) and
//! registers the image. When the record is dropped, a detached process syncs the filesystem
//! and removes the record; the pull does not wait for it.
//!
//! Within the boot that wrote them, unsynced blobs and snapshots are as good as synced ones:
//! every reader goes through the same page cache. A record left by an earlier boot means a
//! crash may have come before the sync, so `recover` (run by `ImageStore::open`) distrusts
//! what it names: blobs are hashed again and removed unless they match, snapshots are
//! removed (they are unpacked again from their blob on first use), and images that now miss
//! a blob are deleted. Only then is the record removed. So after a power cut the store
//! never claims content it does not fully have, though some of it may be fetched again.
//!
//! Layout: `<root>/pending/<boot id>-<pid>-<n>`, lines `blob <digest>` and
//! `snapshot <chain id>`. The boot id is the kernel's (`/proc/sys/kernel/random/boot_id`).

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{Flock, FlockArg};

use crate::digest::Digest;

const DIR: &str = "pending";

/// The kernel's id of this boot.
pub fn boot_id() -> io::Result<String> {
    Ok(fs::read_to_string("/proc/sys/kernel/random/boot_id")?
        .trim()
        .to_string())
}

/// A durable list of what is being written without syncs. Dropping it syncs the filesystem
/// in a detached process and then removes the list.
#[derive(Debug)]
pub struct Pending {
    path: PathBuf,
    /// `pending/`, whose filesystem (the store's) is synced before the record is removed
    /// from it; by descriptor, so a store moved meanwhile still loses its record.
    dir: File,
    /// The record, flock'ed while it is in use (the writer, then the settling grandchild),
    /// so `settle_abandoned` leaves it alone. A plain `File`, not a `Flock`: dropping that
    /// would unlock the open file description the grandchild shares.
    lock: File,
}

impl Pending {
    /// Records, durably, that `blobs` and `chains` are about to be written unsynced under
    /// `root`. Nothing is recorded (and no file made) when both are empty.
    pub fn begin(root: &Path, blobs: &[Digest], chains: &[Digest]) -> io::Result<Option<Pending>> {
        if blobs.is_empty() && chains.is_empty() {
            return Ok(None);
        }
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = root.join(DIR);
        fs::create_dir_all(&dir)?;
        let boot = boot_id()?;
        let mut text = String::new();
        for blob in blobs {
            text += &format!("blob {blob}\n");
        }
        for chain in chains {
            text += &format!("snapshot {chain}\n");
        }
        let (path, file) = loop {
            let seq = SEQ.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("{boot}-{}-{seq}", std::process::id()));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_CLOEXEC)
                .open(&path)
            {
                Ok(file) => break (path, file),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        };
        let mut lock = file;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        let written = if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        };
        let written = written
            .and_then(|()| lock.write_all(text.as_bytes()))
            .and_then(|()| lock.sync_all())
            .and_then(|()| File::open(&dir)?.sync_all());
        if let Err(e) = written {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        Ok(Some(Pending {
            dir: File::open(&dir)?,
            path,
            lock,
        }))
    }

    /// The record's file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Pending {
    /// Syncs the filesystem and removes the record in a detached grandchild, so the caller
    /// does not wait for the disk. If no process can be made, syncs here.
    fn drop(&mut self) {
        let name = self.path.file_name().unwrap_or_default();
        let Ok(record) = CString::new(name.as_bytes()) else {
            return;
        };
        let devnull = match File::options()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open("/dev/null")
        {
            Ok(f) => f,
            Err(_) => return sync_and_forget(self.dir.as_raw_fd(), &record),
        };
        let fds = Fds {
            dir: self.dir.as_raw_fd(),
            lock: self.lock.as_raw_fd(),
            devnull: devnull.as_raw_fd(),
        };
        if !settle_detached(fds, &record) {
            sync_and_forget(self.dir.as_raw_fd(), &record);
        }
    }
}

/// syncfs on the filesystem of `dir`, then unlink `record` from `dir` (only once the sync
/// succeeded). Async-signal-safe: it runs in a forked child of a threaded process.
fn sync_and_forget(dir: RawFd, record: &CString) {
    // SAFETY: plain syscalls on a descriptor and a NUL-terminated name that outlive them.
    unsafe {
        if libc::syncfs(dir) == 0 {
            libc::unlinkat(dir, record.as_ptr(), 0);
        }
    }
}

/// What the settling grandchild keeps.
#[derive(Clone, Copy)]
struct Fds {
    /// `pending/`, to sync and to remove the record from.
    dir: RawFd,
    /// The record's lock, kept so GC sees the record as in hand (`settle_abandoned`).
    lock: RawFd,
    devnull: RawFd,
}

/// Forks twice; the grandchild (in its own session, stdio on /dev/null, only the directory
/// and the lock open) syncs and removes the record. Returns false if the first fork failed.
fn settle_detached(fds: Fds, record: &CString) -> bool {
    // SAFETY: between fork and _exit the children only make async-signal-safe calls
    // (setsid, fcntl, dup2, close_range, syncfs, unlinkat, fork, _exit) on values prepared before
    // the fork; nothing allocates or takes a lock another thread may hold.
    unsafe {
        let child = libc::fork();
        if child < 0 {
            return false;
        }
        if child == 0 {
            if libc::fork() != 0 {
                // The first child (or a failed fork): done either way; a failed fork
                // leaves the record for recovery, which is safe.
                libc::_exit(0);
            }
            libc::setsid();
            // Copies above 3 and 4 (and stdio, which may be closed), so no dup2 below
            // overwrites a descriptor still to be moved.
            let dir = libc::fcntl(fds.dir, libc::F_DUPFD, 10);
            let lock = libc::fcntl(fds.lock, libc::F_DUPFD, 10);
            for fd in 0..3 {
                libc::dup2(fds.devnull, fd);
            }
            libc::dup2(dir, 3);
            libc::dup2(lock, 4);
            libc::syscall(libc::SYS_close_range, 5, libc::c_uint::MAX, 0);
            sync_and_forget(3, record);
            libc::_exit(0);
        }
        let mut status = 0;
        while libc::waitpid(child, &mut status, 0) < 0 && *libc::__errno_location() == libc::EINTR {
        }
    }
    true
}

/// Settles the records of this boot that no live process holds (a pull or its settling
/// grandchild killed before the record was removed): one syncfs, then they are removed. Returns how many
/// went. Without this they would wait for the next boot, which would then distrust
/// content that has long been on disk.
pub fn settle_abandoned(root: &Path) -> io::Result<usize> {
    let dir = root.join(DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let boot = boot_id()?;
    let mut held = Vec::new();
    for entry in entries {
        let entry = entry?;
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(&format!("{boot}-"))
        {
            continue;
        }
        let Ok(file) = File::open(entry.path()) else {
            continue;
        };
        if let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            held.push((entry.path(), lock));
        }
    }
    if held.is_empty() {
        return Ok(0);
    }
    // Everything their writers wrote was written before those writers let go of the lock.
    nix::unistd::syncfs(&File::open(&dir)?)?;
    let mut removed = 0;
    for (path, lock) in held {
        let same = fs::metadata(&path)
            .ok()
            .zip(lock.metadata().ok())
            .is_some_and(|(a, b)| a.ino() == b.ino() && a.dev() == b.dev());
        if same && fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// One record of an earlier boot, locked: what it names must be checked before the store is
/// trusted.
#[derive(Debug)]
pub struct Stale {
    path: PathBuf,
    pub blobs: Vec<Digest>,
    pub chains: Vec<Digest>,
    _lock: Flock<File>,
}

impl Stale {
    /// Removes the record: call once what it names is checked and the repairs are durable.
    pub fn forget(self) -> io::Result<()> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Records under `root` left by other boots, each locked (waiting for another process
/// that is checking it) and parsed. Cheap when there are none: one failed open.
pub fn stale(root: &Path) -> io::Result<Vec<Stale>> {
    let dir = root.join(DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    // Read only when there is a record: every berth command opens the store.
    let mut boot = None;
    let mut records = Vec::new();
    for entry in entries {
        let entry = entry?;
        let boot = match &boot {
            Some(boot) => boot,
            None => boot.insert(boot_id()?),
        };
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&format!("{boot}-")) {
            continue;
        }
        let path = entry.path();
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let lock =
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| io::Error::from(e))?;
        // Another process may have checked and removed it while we waited.
        let same = fs::metadata(&path)
            .ok()
            .zip(lock.metadata().ok())
            .is_some_and(|(a, b)| a.ino() == b.ino() && a.dev() == b.dev());
        if !same {
            continue;
        }
        let text = fs::read_to_string(&path)?;
        let (mut blobs, mut chains) = (Vec::new(), Vec::new());
        for line in text.lines() {
            // The record was synced before anything it names was written, so a torn
            // record (a crash inside `begin`) names nothing that exists unsynced.
            let Some((kind, digest)) = line.split_once(' ') else {
                continue;
            };
            let Ok(digest) = digest.parse::<Digest>() else {
                continue;
            };
            match kind {
                "blob" => blobs.push(digest),
                "snapshot" => chains.push(digest),
                _ => {}
            }
        }
        records.push(Stale {
            path,
            blobs,
            chains,
            _lock: lock,
        });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn record_is_durable_then_settled_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let blob = Digest::sha256_of(b"blob");
        let chain = Digest::sha256_of(b"chain");
        assert!(Pending::begin(dir.path(), &[], &[]).unwrap().is_none());
        let pending = Pending::begin(
            dir.path(),
            std::slice::from_ref(&blob),
            std::slice::from_ref(&chain),
        )
        .unwrap()
        .unwrap();
        let path = pending.path().to_path_buf();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(&format!("{}-{}-", boot_id().unwrap(), std::process::id())));
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("blob {blob}\nsnapshot {chain}\n")
        );
        assert!(
            stale(dir.path()).unwrap().is_empty(),
            "this boot's record is not stale"
        );
        drop(pending);
        // The detached sync removes it; syncfs can take long on a busy disk.
        let deadline = Instant::now() + Duration::from_secs(120);
        while path.exists() {
            assert!(Instant::now() < deadline, "the record was never settled");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn abandoned_records_of_this_boot_are_settled_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let blob = Digest::sha256_of(b"blob");
        let live = Pending::begin(dir.path(), std::slice::from_ref(&blob), &[])
            .unwrap()
            .unwrap();
        // A writer killed before its drop: the record, with no lock on it.
        let killed = dir
            .path()
            .join(DIR)
            .join(format!("{}-999999-0", boot_id().unwrap()));
        fs::write(&killed, format!("blob {blob}\n")).unwrap();
        // Another boot's record is recovery's, not this.
        let earlier = dir
            .path()
            .join(DIR)
            .join("00000000-0000-4000-8000-000000000000-1-0");
        fs::write(&earlier, format!("blob {blob}\n")).unwrap();

        assert_eq!(settle_abandoned(dir.path()).unwrap(), 1);
        assert!(!killed.exists());
        assert!(live.path().exists(), "a live writer's record stays");
        assert!(earlier.exists());
        drop(live);
    }

    #[test]
    fn stale_parses_records_of_other_boots() {
        let dir = tempfile::tempdir().unwrap();
        let pending = dir.path().join(DIR);
        fs::create_dir_all(&pending).unwrap();
        let blob = Digest::sha256_of(b"blob");
        let chain = Digest::sha256_of(b"chain");
        fs::write(
            pending.join("00000000-0000-4000-8000-000000000000-1-0"),
            format!("blob {blob}\nsnapshot {chain}\nblob not-a-digest\ntorn"),
        )
        .unwrap();
        let records = stale(dir.path()).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].blobs, vec![blob]);
        assert_eq!(records[0].chains, vec![chain]);
        for record in records {
            record.forget().unwrap();
        }
        assert_eq!(fs::read_dir(&pending).unwrap().count(), 0);
    }
}
