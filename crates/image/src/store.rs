//! The content-addressed blob store: every layer, config and manifest lives once under
//! `<root>/blobs/<algorithm>/<hex>`, named by the digest of its content.
//!
//! Writes are two-phase, as in containerd: content streams into a uniquely named file in
//! `<root>/blobs/ingest/`, hashed as it is written; only once size and digest match is the file
//! fsynced and renamed to its final name. A writer killed at any moment leaves at most a file in
//! `ingest/`, never a partial blob under its final name. Each writer holds an exclusive `flock`
//! on its ingest file for as long as it writes, so `clean_ingest` can tell abandoned files (no
//! lock: the writer is gone) from live ones.
//!
//! Two writers of the same blob do not coordinate: both write their own ingest file, and the
//! second rename replaces the first with identical content.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::digest::{Algorithm, Digest, Hasher};

/// Size of the copy buffer for ingest and verify.
const CHUNK: usize = 64 * 1024;

/// How many ingest file names to try before giving up (collisions need a stale file left by
/// an earlier process with the same pid, so more than one retry is already rare).
const NAME_ATTEMPTS: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("blob {expected}: content has digest {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest}: expected {expected} bytes, got more")]
    TooLarge { digest: Digest, expected: u64 },
    #[error("blob {digest}: expected {expected} bytes, got only {actual}")]
    TooSmall {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob {0}: not found")]
    NotFound(Digest),
    /// The source stream (a download, a tar file) failed, not the store.
    #[error("blob {digest}: reading content: {source}")]
    Read { digest: Digest, source: io::Error },
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

pub type Result<T> = std::result::Result<T, StoreError>;

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Blobs by digest under one root directory. Cheap to clone; holds no open files.
#[derive(Debug, Clone)]
pub struct BlobStore {
    blobs: PathBuf,
    ingest: PathBuf,
    /// Whether a commit waits for the disk (see `unsynced`).
    sync: bool,
}

impl BlobStore {
    /// Opens the store at `root`, creating `blobs/sha256` and `blobs/ingest` if missing.
    pub fn open(root: &Path) -> Result<BlobStore> {
        let blobs = root.join("blobs");
        let store = BlobStore {
            ingest: blobs.join("ingest"),
            blobs,
            sync: true,
        };
        for dir in [store.algorithm_dir(Algorithm::Sha256), store.ingest.clone()] {
            fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        }
        Ok(store)
    }

    /// The same store, but commits do not wait for the disk: a blob is renamed into place
    /// as soon as its digest matches, with neither its data nor the rename synced. Only for
    /// blobs listed in a `pending::Pending` record, which keeps them from being trusted
    /// after a crash until they are verified again.
    pub fn unsynced(&self) -> BlobStore {
        BlobStore {
            sync: false,
            ..self.clone()
        }
    }

    /// Where the blob lives (or would live) on disk.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.algorithm_dir(digest.algorithm()).join(digest.hex())
    }

    /// The directory of in-progress writes.
    pub fn ingest_dir(&self) -> &Path {
        &self.ingest
    }

    fn algorithm_dir(&self, algorithm: Algorithm) -> PathBuf {
        self.blobs.join(algorithm.name())
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        fs::metadata(self.path(digest)).is_ok_and(|m| m.is_file())
    }

    /// Opens a blob for reading. The content is trusted as written; use `verify` or `read` to
    /// check it against its digest.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.path(digest);
        File::open(&path).map_err(|e| self.lookup_err(digest, &path, "opening", e))
    }

    /// Reads a whole blob into memory, checking its digest: for manifests and configs, which
    /// are small and parsed right after.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.path(digest);
        let bytes = fs::read(&path).map_err(|e| self.lookup_err(digest, &path, "reading", e))?;
        let actual = Digest::of(digest.algorithm(), &bytes);
        if &actual != digest {
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    pub fn size(&self, digest: &Digest) -> Result<u64> {
        let path = self.path(digest);
        let meta = fs::metadata(&path).map_err(|e| self.lookup_err(digest, &path, "stat", e))?;
        Ok(meta.len())
    }

    /// Removes a blob; a blob that is already gone is not an error.
    pub fn remove(&self, digest: &Digest) -> Result<()> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("removing", &path)(e)),
            _ => Ok(()),
        }
    }

    /// Every blob in the store, sorted. Files whose names are not valid digests are ignored.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let mut digests = Vec::new();
        for algorithm in Algorithm::ALL {
            let dir = self.algorithm_dir(algorithm);
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("listing", &dir)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(io_err("listing", &dir))?;
                let name = entry.file_name();
                let Some(hex) = name.to_str() else { continue };
                if let Ok(digest) = Digest::from_parts(algorithm, hex) {
                    digests.push(digest);
                }
            }
        }
        digests.sort();
        Ok(digests)
    }

    /// Re-hashes a blob from disk and checks it still matches its name.
    pub fn verify(&self, digest: &Digest) -> Result<()> {
        let path = self.path(digest);
        let mut file = self.open_blob(digest)?;
        let mut hasher = Hasher::new(digest.algorithm());
        io::copy(&mut file, &mut hasher).map_err(io_err("reading", &path))?;
        let actual = hasher.finish();
        if &actual != digest {
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// Stores `bytes` (a config or manifest we generated) and returns its sha256 digest.
    pub fn ingest_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::sha256_of(bytes);
        self.ingest(&digest, Some(bytes.len() as u64), bytes)?;
        Ok(digest)
    }

    /// Streams `reader` into the store as blob `expected` and returns the blob's path.
    ///
    /// The content must hash to `expected` and, if `expected_size` is given, be exactly that
    /// long; at most one byte past the declared size is read before giving up, so a lying
    /// server cannot fill the disk. On any error the ingest file is removed and no blob
    /// appears. If the blob is already present, nothing is read.
    pub fn ingest(
        &self,
        expected: &Digest,
        expected_size: Option<u64>,
        reader: impl Read,
    ) -> Result<PathBuf> {
        let dest = self.path(expected);
        if self.contains(expected) {
            return Ok(dest);
        }
        let mut writer = self.writer(expected, expected_size)?;
        // One byte past the declared size is enough to know the source lied.
        let limit = expected_size.map_or(u64::MAX, |n| n.saturating_add(1));
        let mut reader = reader.take(limit);
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(StoreError::Read {
                        digest: expected.clone(),
                        source,
                    })
                }
            };
            writer.append(&buf[..n])?;
        }
        writer.commit()
    }

    /// Starts writing blob `expected` piece by piece, for a caller that has the content as a
    /// stream it also sends elsewhere (a download that is unpacked while it arrives).
    /// `append` hashes and writes, refusing bytes past `expected_size`; `commit` checks size
    /// and digest, syncs and renames into place. Dropping the writer without a successful
    /// `commit` removes the ingest file, so no partial blob ever appears.
    pub fn writer(&self, expected: &Digest, expected_size: Option<u64>) -> Result<BlobWriter> {
        Ok(BlobWriter {
            file: IngestFile::create(&self.ingest, expected)?,
            hasher: Hasher::new(expected.algorithm()),
            expected: expected.clone(),
            size: expected_size,
            dir: self.algorithm_dir(expected.algorithm()),
            sync: self.sync,
        })
    }

    /// Removes ingest files that no live writer holds (left by a process killed mid-write),
    /// and returns how many were removed. Files a writer is still locking are kept.
    pub fn clean_ingest(&self) -> Result<usize> {
        let entries = fs::read_dir(&self.ingest).map_err(io_err("listing", &self.ingest))?;
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(io_err("listing", &self.ingest))?;
            if remove_if_abandoned(&entry.path())? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn lookup_err(
        &self,
        digest: &Digest,
        path: &Path,
        action: &'static str,
        e: io::Error,
    ) -> StoreError {
        if e.kind() == io::ErrorKind::NotFound {
            StoreError::NotFound(digest.clone())
        } else {
            io_err(action, path)(e)
        }
    }
}

/// Removes one ingest file if nobody holds its lock. Returns whether it was removed.
fn remove_if_abandoned(path: &Path) -> Result<bool> {
    let file = match File::open(path) {
        Ok(file) => file,
        // Committed or cleaned by someone else since the directory was listed.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err("opening", path)(e)),
    };
    if !file
        .metadata()
        .map_err(io_err("stat", path))?
        .file_type()
        .is_file()
    {
        return Ok(false);
    }
    let locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(locked) => locked,
        Err((_, Errno::EWOULDBLOCK)) => return Ok(false),
        Err((_, errno)) => return Err(io_err("locking", path)(errno.into())),
    };
    // Holding the lock, the writer is gone. The name may have been committed away between
    // open and lock; then the path no longer names this file and there is nothing to remove.
    if !names_file(path, &locked) {
        return Ok(false);
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("removing", path)(e)),
    }
}

/// Whether `path` currently names the open file `file` (same device and inode).
fn names_file(path: &Path, file: &File) -> bool {
    match (fs::metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing", dir))
}

/// An in-progress write in `ingest/`, locked for its whole life. Dropping it without
/// `commit` removes the file, so every early return cleans up.
struct IngestFile {
    path: PathBuf,
    file: Flock<File>,
    committed: bool,
}

impl IngestFile {
    fn create(dir: &Path, digest: &Digest) -> Result<IngestFile> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        for _ in 0..NAME_ATTEMPTS {
            let seq = SEQ.fetch_add(1, Ordering::Relaxed);
            let name = format!(
                "{}-{}.{}.{}",
                digest.algorithm(),
                digest.hex(),
                std::process::id(),
                seq
            );
            let path = dir.join(name);
            let file = match open_new(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("creating", &path)(e)),
            };
            let locked = Flock::lock(file, FlockArg::LockExclusive)
                .map_err(|(_, errno)| io_err("locking", &path)(errno.into()))?;
            // clean_ingest may have found the file in the instant between create and lock,
            // seen it unlocked and removed it. Then the name is gone: start over.
            if names_file(&path, &locked) {
                return Ok(IngestFile {
                    path,
                    file: locked,
                    committed: false,
                });
            }
        }
        Err(io_err("creating a unique file in", dir)(io::Error::from(
            io::ErrorKind::AlreadyExists,
        )))
    }

    fn sync(&self) -> Result<()> {
        self.file.sync_all().map_err(io_err("syncing", &self.path))
    }

    /// Renames the file to its final name. Replacing an existing blob is harmless: a
    /// concurrent writer of the same digest wrote the same bytes.
    fn commit(mut self, dest: &Path) -> Result<()> {
        fs::rename(&self.path, dest).map_err(io_err("renaming into place", dest))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for IngestFile {
    fn drop(&mut self) {
        // Removed while still locked (the lock is released after this, when `file` drops), so
        // clean_ingest never sees it unlocked under this name.
        if !self.committed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A blob being written: see `BlobStore::writer`.
pub struct BlobWriter {
    file: IngestFile,
    hasher: Hasher,
    expected: Digest,
    size: Option<u64>,
    /// `blobs/<algorithm>`, where the blob goes on commit.
    dir: PathBuf,
    sync: bool,
}

impl BlobWriter {
    /// Hashes and writes `data`. Refuses (and writes nothing of) data that would take the
    /// blob past its declared size.
    pub fn append(&mut self, data: &[u8]) -> Result<()> {
        if let Some(max) = self
            .size
            .filter(|&max| self.hasher.byte_count() + data.len() as u64 > max)
        {
            return Err(StoreError::TooLarge {
                digest: self.expected.clone(),
                expected: max,
            });
        }
        self.hasher.update(data);
        self.file
            .file
            .write_all(data)
            .map_err(io_err("writing", &self.file.path))
    }

    /// Bytes appended so far.
    pub fn written(&self) -> u64 {
        self.hasher.byte_count()
    }

    /// The digest the blob must have.
    pub fn expected(&self) -> &Digest {
        &self.expected
    }

    /// Checks size and digest, makes the content durable and gives it its final name.
    pub fn commit(self) -> Result<PathBuf> {
        let BlobWriter {
            file,
            hasher,
            expected,
            size,
            dir,
            sync,
        } = self;
        check_content(&expected, size, hasher)?;
        if sync {
            file.sync()?;
        }
        fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        let dest = dir.join(expected.hex());
        file.commit(&dest)?;
        // The rename is only durable once the directory is. If this fails the blob is already
        // in place and valid; the error reports that durability is not guaranteed.
        if sync {
            sync_dir(&dir)?;
        }
        Ok(dest)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.append(buf).map_err(io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn open_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        // std sets O_CLOEXEC already; stated because no store fd may leak into a container.
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

fn check_content(expected: &Digest, size: Option<u64>, hasher: Hasher) -> Result<()> {
    if let Some(size) = size {
        if hasher.byte_count() < size {
            return Err(StoreError::TooSmall {
                digest: expected.clone(),
                expected: size,
                actual: hasher.byte_count(),
            });
        }
    }
    let actual = hasher.finish();
    if &actual != expected {
        return Err(StoreError::DigestMismatch {
            expected: expected.clone(),
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};
    use std::sync::{Arc, Barrier};
    use std::time::{Duration, Instant};

    fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        (dir, store)
    }

    fn ingest_files(store: &BlobStore) -> Vec<PathBuf> {
        let mut files: Vec<_> = fs::read_dir(store.ingest_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
    }

    fn sha256_files(store: &BlobStore) -> usize {
        fs::read_dir(store.algorithm_dir(Algorithm::Sha256))
            .unwrap()
            .count()
    }

    /// Nothing visible and nothing left behind.
    fn assert_empty(store: &BlobStore) {
        assert_eq!(sha256_files(store), 0, "blobs/sha256 must be empty");
        assert_eq!(
            ingest_files(store),
            Vec::<PathBuf>::new(),
            "ingest must be empty"
        );
    }

    /// A reader that counts how many bytes were taken from it.
    struct Counting<R> {
        inner: R,
        taken: Arc<AtomicU64>,
    }

    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.taken.fetch_add(n as u64, Ordering::SeqCst);
            Ok(n)
        }
    }

    #[test]
    fn open_creates_layout() {
        let dir = tempfile::tempdir().unwrap();
        BlobStore::open(dir.path()).unwrap();
        assert!(dir.path().join("blobs/sha256").is_dir());
        assert!(dir.path().join("blobs/ingest").is_dir());
    }

    #[test]
    fn ingest_ok() {
        let (dir, store) = store();
        let data = b"layer content".repeat(10_000);
        let digest = Digest::sha256_of(&data);
        let path = store
            .ingest(&digest, Some(data.len() as u64), &data[..])
            .unwrap();
        assert_eq!(
            path,
            dir.path().join("blobs/sha256").join(digest.hex()),
            "blob lands at blobs/sha256/<hex>"
        );
        assert!(store.contains(&digest));
        assert_eq!(store.size(&digest).unwrap(), data.len() as u64);
        assert_eq!(store.read(&digest).unwrap(), data);
        let mut content = Vec::new();
        store
            .open_blob(&digest)
            .unwrap()
            .read_to_end(&mut content)
            .unwrap();
        assert_eq!(content, data);
        store.verify(&digest).unwrap();
        assert!(ingest_files(&store).is_empty());
    }

    #[test]
    fn ingest_without_size_and_sha512() {
        let (_dir, store) = store();
        let digest = Digest::of(Algorithm::Sha512, b"abc");
        store.ingest(&digest, None, &b"abc"[..]).unwrap();
        assert_eq!(store.read(&digest).unwrap(), b"abc");
        assert_eq!(store.list().unwrap(), vec![digest]);
    }

    #[test]
    fn ingest_bytes_and_existing_blob_is_not_read() {
        let (_dir, store) = store();
        let digest = store.ingest_bytes(b"{\"config\":1}").unwrap();
        assert_eq!(digest, Digest::sha256_of(b"{\"config\":1}"));
        // A second ingest of a present blob returns without touching the reader.
        let taken = Arc::new(AtomicU64::new(0));
        let reader = Counting {
            inner: io::repeat(0),
            taken: taken.clone(),
        };
        store.ingest(&digest, None, reader).unwrap();
        assert_eq!(taken.load(Ordering::SeqCst), 0);
        assert_eq!(store.ingest_bytes(b"{\"config\":1}").unwrap(), digest);
    }

    #[test]
    fn digest_mismatch_leaves_nothing() {
        let (_dir, store) = store();
        let expected = Digest::sha256_of(b"what the manifest says");
        let err = store
            .ingest(&expected, None, &b"what the server sent"[..])
            .unwrap_err();
        let actual = Digest::sha256_of(b"what the server sent");
        assert_eq!(
            err.to_string(),
            format!("blob {expected}: content has digest {actual}")
        );
        assert!(!store.contains(&expected));
        assert_empty(&store);
    }

    #[test]
    fn more_bytes_than_declared_is_cut_off() {
        let (_dir, store) = store();
        let expected = Digest::sha256_of(b"0123456789");
        let taken = Arc::new(AtomicU64::new(0));
        // An endless source: ingest must stop right after the declared size.
        let reader = Counting {
            inner: io::repeat(b'x'),
            taken: taken.clone(),
        };
        let err = store.ingest(&expected, Some(10), reader).unwrap_err();
        assert!(
            matches!(err, StoreError::TooLarge { expected: 10, .. }),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!("blob {expected}: expected 10 bytes, got more")
        );
        assert_eq!(
            taken.load(Ordering::SeqCst),
            11,
            "reads one byte past the size"
        );
        assert_empty(&store);
    }

    #[test]
    fn fewer_bytes_than_declared_is_an_error() {
        let (_dir, store) = store();
        let data = b"short";
        let digest = Digest::sha256_of(data);
        let err = store.ingest(&digest, Some(6), &data[..]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("blob {digest}: expected 6 bytes, got only 5")
        );
        assert_empty(&store);
    }

    #[test]
    fn reader_error_leaves_nothing() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"));
                }
                self.0 -= 1;
                buf[0] = b'a';
                Ok(1)
            }
        }
        let (_dir, store) = store();
        let digest = Digest::sha256_of(b"aaaaaaaa");
        let err = store.ingest(&digest, None, Failing(3)).unwrap_err();
        assert!(matches!(err, StoreError::Read { .. }), "{err}");
        assert!(err.to_string().contains("reading content: reset"), "{err}");
        assert_empty(&store);
    }

    #[test]
    fn concurrent_ingest_of_same_blob() {
        /// Hands out data in small chunks after both writers have started, so their writes
        /// overlap.
        struct Slow<'a> {
            data: &'a [u8],
            start: Arc<Barrier>,
            started: bool,
        }
        impl Read for Slow<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if !self.started {
                    self.start.wait();
                    self.started = true;
                }
                std::thread::sleep(Duration::from_millis(1));
                let n = buf.len().min(self.data.len()).min(1000);
                buf[..n].copy_from_slice(&self.data[..n]);
                self.data = &self.data[n..];
                Ok(n)
            }
        }
        let (_dir, store) = store();
        let data = b"shared layer ".repeat(2000);
        let digest = Digest::sha256_of(&data);
        let start = Arc::new(Barrier::new(2));
        let data = &data;
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let reader = Slow {
                        data,
                        start: start.clone(),
                        started: false,
                    };
                    let (store, digest) = (&store, &digest);
                    s.spawn(move || store.ingest(digest, Some(data.len() as u64), reader))
                })
                .collect();
            for h in handles {
                h.join().unwrap().unwrap();
            }
        });
        assert_eq!(store.list().unwrap(), vec![digest.clone()]);
        store.verify(&digest).unwrap();
        assert!(ingest_files(&store).is_empty());
    }

    #[test]
    fn leftover_ingest_file_is_not_served_and_is_cleaned() {
        let (_dir, store) = store();
        let digest = Digest::sha256_of(b"full content");
        // A writer killed mid-download: a partial file, no lock.
        let stale = store
            .ingest_dir()
            .join(format!("sha256-{}.999.0", digest.hex()));
        fs::write(&stale, b"full").unwrap();
        // A live writer: the test holds the lock.
        let live_path = store.ingest_dir().join("sha256-live.1.0");
        let live = Flock::lock(
            File::create(&live_path).unwrap(),
            FlockArg::LockExclusiveNonblock,
        )
        .unwrap();

        assert!(!store.contains(&digest));
        assert!(store.list().unwrap().is_empty());
        assert!(matches!(
            store.open_blob(&digest),
            Err(StoreError::NotFound(_))
        ));

        assert_eq!(store.clean_ingest().unwrap(), 1);
        assert_eq!(ingest_files(&store), vec![live_path.clone()]);

        // The next ingest of the same blob works.
        store
            .ingest(&digest, Some(12), &b"full content"[..])
            .unwrap();
        store.verify(&digest).unwrap();

        drop(live);
        assert_eq!(store.clean_ingest().unwrap(), 1);
        assert!(ingest_files(&store).is_empty());
    }

    #[test]
    fn writer_appends_and_commits_only_matching_content() {
        let (_dir, store) = store();
        let data = b"streamed in pieces";
        let digest = Digest::sha256_of(data);
        let mut writer = store.writer(&digest, Some(data.len() as u64)).unwrap();
        writer.append(&data[..5]).unwrap();
        writer.write_all(&data[5..]).unwrap();
        assert_eq!(writer.written(), data.len() as u64);
        assert!(!store.contains(&digest), "not visible before commit");
        assert_eq!(writer.commit().unwrap(), store.path(&digest));
        assert_eq!(store.read(&digest).unwrap(), data);

        // Past the declared size: refused, nothing written of it.
        let other = Digest::sha256_of(b"other");
        let mut writer = store.writer(&other, Some(3)).unwrap();
        let err = writer.append(b"four").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("blob {other}: expected 3 bytes, got more")
        );
        drop(writer);
        // Wrong content, or dropped without commit: no blob, no ingest file.
        let mut writer = store.writer(&other, None).unwrap();
        writer.append(b"not other").unwrap();
        assert!(writer.commit().is_err());
        let mut writer = store.writer(&other, None).unwrap();
        writer.append(b"other").unwrap();
        drop(writer);
        assert!(!store.contains(&other));
        assert!(ingest_files(&store).is_empty());
    }

    #[test]
    fn verify_detects_corruption() {
        let (_dir, store) = store();
        let digest = store.ingest_bytes(b"pristine").unwrap();
        store.verify(&digest).unwrap();
        fs::write(store.path(&digest), b"tampered").unwrap();
        let err = store.verify(&digest).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "blob {digest}: content has digest {}",
                Digest::sha256_of(b"tampered")
            )
        );
        assert!(store.read(&digest).is_err());
    }

    #[test]
    fn list_ignores_foreign_names_and_remove() {
        let (_dir, store) = store();
        let a = store.ingest_bytes(b"a").unwrap();
        let b = store.ingest_bytes(b"b").unwrap();
        let dir = store.algorithm_dir(Algorithm::Sha256);
        fs::write(dir.join("not-a-digest"), b"x").unwrap();
        fs::write(dir.join(a.hex().to_uppercase()), b"x").unwrap();
        let mut want = vec![a.clone(), b.clone()];
        want.sort();
        assert_eq!(store.list().unwrap(), want);

        store.remove(&a).unwrap();
        assert!(!store.contains(&a));
        store.remove(&a).unwrap(); // already gone: fine
        assert_eq!(store.list().unwrap(), vec![b]);
        assert!(matches!(store.size(&a), Err(StoreError::NotFound(_))));
        assert_eq!(
            store.verify(&a).unwrap_err().to_string(),
            format!("blob {a}: not found")
        );
    }

    #[test]
    fn io_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, b"").unwrap();
        let err = BlobStore::open(&file).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("creating "), "{msg}");
        assert!(msg.contains(&file.display().to_string()), "{msg}");
    }

    const CHILD_ENV: &str = "BERTH_TEST_KILLED_WRITER_ROOT";

    /// Run as a child process by `sigkill_mid_ingest_leaves_only_ingest_file`: ingests from
    /// stdin until killed. A no-op in a normal test run.
    #[test]
    fn killed_writer_child() {
        let Some(root) = std::env::var_os(CHILD_ENV) else {
            return;
        };
        let store = BlobStore::open(Path::new(&root)).unwrap();
        let digest = Digest::sha256_of(&[7u8; 4096]);
        let _ = store.ingest(&digest, Some(4096), io::stdin().lock());
        panic!("the parent should have killed this process");
    }

    #[test]
    fn sigkill_mid_ingest_leaves_only_ingest_file() {
        let (dir, store) = store();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "store::tests::killed_writer_child",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&[7u8; 1000]).unwrap();
        stdin.flush().unwrap();

        // Wait until the partial content is on disk, then SIGKILL the writer mid-blob.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let written = ingest_files(&store)
                .iter()
                .map(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
                .sum::<u64>();
            if written == 1000 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "child never wrote its ingest file"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        drop(stdin);

        assert_eq!(
            sha256_files(&store),
            0,
            "no partial blob under its final name"
        );
        assert_eq!(ingest_files(&store).len(), 1);
        assert_eq!(
            store.clean_ingest().unwrap(),
            1,
            "the dead writer's lock is gone"
        );
        assert!(ingest_files(&store).is_empty());

        let digest = Digest::sha256_of(&[7u8; 4096]);
        store.ingest(&digest, Some(4096), &[7u8; 4096][..]).unwrap();
        store.verify(&digest).unwrap();
    }
}
