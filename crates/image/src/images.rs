//! The image store as the CLI sees it: blobs, metadata and snapshots under one root, with
//! registration, removal like `docker rmi`, and garbage collection.
//!
//! GC and writers coordinate through `<root>/gc.lock`: anything that ingests blobs and then
//! registers them (pull, load, import, build) holds a *shared* lock from the first blob to
//! the registration (`ImageStore::writer_lock`), and GC takes it *exclusively*. So GC never
//! sees a blob that is on disk but not yet referenced by its image, and writers never wait
//! for one another. Neither lock may be held by a thread that then calls `gc` (it would wait
//! for itself); `remove` only tries GC and skips it while writers are busy.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::digest::Digest;
use crate::meta::{Deletion, ImageRow, LayerRow, Meta, MetaError, NewImage};
use crate::pending;
use crate::reference::Reference;
use crate::snapshot::{SnapshotError, Snapshots};
use crate::store::{BlobStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// Unpacking a layer of `image` failed; the source names the layer.
    #[error("image {image}: {source}")]
    Layer {
        image: Digest,
        source: Box<SnapshotError>,
    },
    #[error("image {image}: blob {blob} is not in the store")]
    MissingBlob { image: Digest, blob: Digest },
    /// Docker's wording, which scripts match on.
    #[error("conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories")]
    MultipleRepositories { short: String },
    #[error("conflict: unable to remove repository reference \"{reference}\" (must force) - container {container} is using its referenced image {image}")]
    ReferenceInUse {
        reference: String,
        container: String,
        image: String,
    },
    #[error("conflict: unable to delete {image} ({how}) - image is being used by {state} container {container}")]
    ImageInUse {
        image: String,
        how: &'static str,
        state: &'static str,
        container: String,
    },
    #[error("{action} {}: {source}", path.display())]
    Lock {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

pub type Result<T> = std::result::Result<T, ImageError>;

/// What a garbage collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub blobs: Vec<Digest>,
    /// Chain ids of the snapshots removed.
    pub snapshots: Vec<Digest>,
    /// Bytes of the blobs removed (snapshots are not measured).
    pub blob_bytes: u64,
}

/// A shared hold on `gc.lock`: while it lives, GC does not run. Released on drop.
#[derive(Debug)]
pub struct WriterLock {
    _lock: Flock<File>,
}

/// Blobs, metadata and snapshots under one root.
#[derive(Debug)]
pub struct ImageStore {
    pub blobs: BlobStore,
    pub meta: Meta,
    pub snapshots: Snapshots,
    root: PathBuf,
}

impl ImageStore {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<ImageStore> {
        // The blob store creates `root` itself; the others expect it.
        let blobs = BlobStore::open(root)?;
        let store = ImageStore {
            blobs,
            meta: Meta::open(root)?,
            snapshots: Snapshots::open(root)?,
            root: root.to_path_buf(),
        };
        store.recover()?;
        Ok(store)
    }

    /// Checks what earlier boots wrote without syncing (`pending`): a record still there
    /// means the machine went down before the sync, so each blob it names is hashed again
    /// and removed unless it matches, each snapshot is removed (unpacked again from its
    /// blob on first use), and images that now miss a blob are deleted. GC is held off
    /// meanwhile; the record goes only once the repairs are on disk.
    fn recover(&self) -> Result<()> {
        let pending_dir = self.root.join("pending");
        let records = pending::stale(&self.root)
            .map_err(|source| lock_err("checking unsynced writes in", &pending_dir, source))?;
        if records.is_empty() {
            return Ok(());
        }
        let _lock = self.gc_lock(FlockArg::LockExclusive)?;
        for record in records {
            for blob in &record.blobs {
                if self.blobs.contains(blob) && self.blobs.verify(blob).is_err() {
                    self.blobs.remove(blob)?;
                }
            }
            for chain in &record.chains {
                self.snapshots.remove(chain)?;
            }
            self.delete_incomplete_images()?;
            File::open(&self.root)
                .and_then(|root| Ok(nix::unistd::syncfs(&root)?))
                .and_then(|()| record.forget())
                .map_err(|source| lock_err("syncing the repairs of", &pending_dir, source))?;
        }
        Ok(())
    }

    /// Deletes (with their tags) the images one of whose blobs is not in the store.
    fn delete_incomplete_images(&self) -> Result<()> {
        for image in self.meta.list()? {
            let layers = self.meta.layers_of(&image.id)?;
            let blobs = [&image.manifest, &image.id]
                .into_iter()
                .chain(layers.iter().map(|l| &l.blob));
            let complete = blobs.into_iter().all(|b| self.blobs.contains(b));
            if !complete {
                self.meta.delete_image(&image.id)?;
            }
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn gc_lock_path(&self) -> PathBuf {
        self.root.join("gc.lock")
    }

    /// Keeps GC away while blobs are ingested and registered. Take it before the first blob
    /// of an image is written and drop it after `register`.
    pub fn writer_lock(&self) -> Result<WriterLock> {
        let lock = self
            .gc_lock(FlockArg::LockShared)?
            .expect("a blocking lock is always taken");
        Ok(WriterLock { _lock: lock })
    }

    /// Locks `gc.lock`; None if `arg` is non-blocking and the lock is busy.
    fn gc_lock(&self, arg: FlockArg) -> Result<Option<Flock<File>>> {
        let path = self.gc_lock_path();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(|source| lock_err("opening", &path, source))?;
        match Flock::lock(file, arg) {
            Ok(lock) => Ok(Some(lock)),
            Err((_, Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, errno)) => Err(lock_err("locking", &path, errno.into())),
        }
    }

    /// Records an image whose blobs (manifest, config, layers) are all in the store, and
    /// points `tags` at it.
    pub fn register(&self, image: NewImage, tags: &[Reference]) -> Result<ImageRow> {
        let _writer = self.writer_lock()?;
        self.check_blobs(&image)?;
        self.meta.put_image(&image, tags)?;
        self.meta
            .image(&image.config)?
            .ok_or_else(|| MetaError::NotFound(image.config.to_string()).into())
    }

    /// Metadata must never name a blob that is not there: GC and push trust it.
    fn check_blobs(&self, image: &NewImage) -> Result<()> {
        let layers = image.layers.iter().map(|(blob, _)| blob);
        for blob in [&image.manifest, &image.config].into_iter().chain(layers) {
            if !self.blobs.contains(blob) {
                return Err(ImageError::MissingBlob {
                    image: image.config.clone(),
                    blob: blob.clone(),
                });
            }
        }
        Ok(())
    }

    /// The snapshot directories of an image's layers, top first (as `mount_overlay` takes
    /// them), unpacking from the layer blobs any that are missing, several at a time.
    pub fn rootfs_layers(&self, id: &Digest) -> Result<Vec<PathBuf>> {
        // Held so GC cannot remove a snapshot between its unpacking and the caller's mount.
        let _writer = self.writer_lock()?;
        let layers = self.meta.layers_of(id)?;
        if layers.is_empty() && self.meta.image(id)?.is_none() {
            return Err(MetaError::NotFound(id.to_string()).into());
        }
        self.ensure_layers(id, &layers)?;
        Ok(layers
            .iter()
            .rev()
            .map(|l| self.snapshots.path(&l.chain_id))
            .collect())
    }

    /// Unpacks the missing layers in parallel: each snapshot holds only its own layer, so
    /// none waits for the one below. The first error stops new work and is returned.
    fn ensure_layers(&self, image: &Digest, layers: &[LayerRow]) -> Result<()> {
        let missing: Vec<&LayerRow> = layers
            .iter()
            .filter(|l| !self.snapshots.contains(&l.chain_id))
            .collect();
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(missing.len());
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let first_error = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    while !failed.load(Ordering::SeqCst) {
                        let Some(layer) = missing.get(next.fetch_add(1, Ordering::SeqCst)) else {
                            break;
                        };
                        if let Err(e) = self.ensure_layer(layer) {
                            failed.store(true, Ordering::SeqCst);
                            first_error
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .get_or_insert(e);
                        }
                    }
                });
            }
        });
        match first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(source) => Err(ImageError::Layer {
                image: image.clone(),
                source: Box::new(source),
            }),
            None => Ok(()),
        }
    }

    fn ensure_layer(&self, layer: &LayerRow) -> std::result::Result<PathBuf, SnapshotError> {
        self.snapshots.ensure(&layer.chain_id, &layer.diff_id, || {
            self.blobs.open_blob(&layer.blob)
        })
    }

    /// Removes an image the way `docker rmi` does and returns its report lines.
    ///
    /// A name removes that tag, and the image with it when no tag is left. An id (full,
    /// `sha256:…`, or a prefix), or a `name@digest`, removes the image with all its tags, but
    /// only with `force` when the tags span several repositories. Then the blobs and
    /// snapshots nothing uses any more are collected, unless a writer is busy (the next GC
    /// gets them).
    pub fn remove(&self, reference_or_id: &str, force: bool) -> Result<Vec<String>> {
        self.remove_unless_used(reference_or_id, force, &|_| None)
    }

    /// [`Images::remove`] as Docker's `rmi` does it when containers use images: `user_of`
    /// names a container using an image, if any. Removing the last tag of a used image
    /// needs `force` and then only untags (the image stays, dangling, for its
    /// containers); deleting a used image by id needs `force`, and is refused outright
    /// while the container runs.
    pub fn remove_unless_used(
        &self,
        reference_or_id: &str,
        force: bool,
        user_of: &dyn Fn(&Digest) -> Option<ImageUser>,
    ) -> Result<Vec<String>> {
        let image = self.meta.resolve(reference_or_id)?;
        if let Some(user) = user_of(&image.id) {
            let short = |s: &str| s.chars().take(12).collect::<String>();
            match tag_named(&image, reference_or_id) {
                Some(_) if image.tags.len() > 1 => {}
                Some(reference) => {
                    if !force {
                        return Err(ImageError::ReferenceInUse {
                            reference: reference_or_id.to_string(),
                            container: short(&user.container),
                            image: short(image.id.hex()),
                        });
                    }
                    self.meta.untag(&reference)?;
                    return Ok(vec![format!("Untagged: {}", reference.familiar())]);
                }
                None if user.running || !force => {
                    return Err(ImageError::ImageInUse {
                        image: short(image.id.hex()),
                        how: if user.running {
                            "cannot be forced"
                        } else {
                            "must be forced"
                        },
                        state: if user.running { "running" } else { "stopped" },
                        container: short(&user.container),
                    });
                }
                None => {}
            }
        }
        let chains: Vec<Digest> = self
            .meta
            .layers_of(&image.id)?
            .into_iter()
            .rev()
            .map(|l| l.chain_id)
            .collect();
        let mut lines = Vec::new();
        let deleted = match tag_named(&image, reference_or_id) {
            Some(reference) => self.untag(&reference, &mut lines)?,
            None => self.delete(&image.id, force, &mut lines)?,
        };
        if deleted {
            if let Some(report) = self.try_gc()? {
                for chain in chains.iter().filter(|c| report.snapshots.contains(c)) {
                    lines.push(format!("Deleted: {chain}"));
                }
            }
        }
        Ok(lines)
    }

    fn untag(&self, reference: &Reference, lines: &mut Vec<String>) -> Result<bool> {
        let untagged = self
            .meta
            .untag_and_prune(reference)?
            .ok_or_else(|| MetaError::NotFound(reference.familiar()))?;
        lines.push(format!("Untagged: {}", reference.familiar()));
        if untagged.image_deleted {
            lines.push(format!("Deleted: {}", untagged.image));
        }
        Ok(untagged.image_deleted)
    }

    fn delete(&self, id: &Digest, force: bool, lines: &mut Vec<String>) -> Result<bool> {
        match self
            .meta
            .delete_image_if(id, |tags| force || one_repository(tags))?
        {
            Deletion::NotFound => Err(MetaError::NotFound(id.to_string()).into()),
            Deletion::Refused(_) => Err(ImageError::MultipleRepositories {
                short: id.hex()[..12].to_string(),
            }),
            Deletion::Deleted(tags) => {
                lines.extend(tags.iter().map(|t| format!("Untagged: {}", t.familiar())));
                lines.push(format!("Deleted: {id}"));
                Ok(true)
            }
        }
    }

    /// Deletes every blob and snapshot no image references, and abandoned partial writes.
    /// Waits for writers (pulls, loads) to finish first.
    pub fn gc(&self) -> Result<GcReport> {
        let _lock = self.gc_lock(FlockArg::LockExclusive)?;
        self.collect()
    }

    /// `gc`, unless a writer holds the lock: then None, at once.
    pub fn try_gc(&self) -> Result<Option<GcReport>> {
        match self.gc_lock(FlockArg::LockExclusiveNonblock)? {
            Some(_lock) => self.collect().map(Some),
            None => Ok(None),
        }
    }

    fn collect(&self) -> Result<GcReport> {
        let mut report = GcReport::default();
        let pending_dir = self.root.join("pending");
        pending::settle_abandoned(&self.root)
            .map_err(|source| lock_err("settling unsynced writes in", &pending_dir, source))?;
        self.blobs.clean_ingest()?;
        self.snapshots.clean()?;
        let blobs = self.meta.referenced_blobs()?;
        for blob in self.blobs.list()? {
            if blobs.contains(&blob) {
                continue;
            }
            report.blob_bytes += self.blobs.size(&blob).unwrap_or(0);
            self.blobs.remove(&blob)?;
            report.blobs.push(blob);
        }
        let chains = self.meta.referenced_chains()?;
        for chain in self.snapshots.list()? {
            if !chains.contains(&chain) && self.snapshots.remove(&chain)? {
                report.snapshots.push(chain);
            }
        }
        Ok(report)
    }
}

fn lock_err(action: &'static str, path: &Path, source: io::Error) -> ImageError {
    ImageError::Lock {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The tag of `image` that `input` names, or None when the input named the image by id or
/// digest. Docker asks instead whether the input is a prefix of the id, so with it `rmi a`
/// deletes every tag of an image whose id happens to start with "a"; `resolve` already
/// preferred the tag, and so does this.
/// A container that uses an image, for [`Images::remove_unless_used`].
#[derive(Debug, Clone)]
pub struct ImageUser {
    pub container: String,
    pub running: bool,
}

fn tag_named(image: &ImageRow, input: &str) -> Option<Reference> {
    Reference::parse(input)
        .ok()
        .filter(|r| r.digest.is_none() && image.tags.contains(r))
}

/// Docker lets `rmi <id>` untag several tags without force only if they share a repository.
fn one_repository(tags: &[Reference]) -> bool {
    tags.windows(2)
        .all(|w| w[0].repo_name() == w[1].repo_name())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{mount_overlay, unmount};
    use std::fs;
    use std::io::Write;

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
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

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    /// A layer as stored: `(blob bytes, diff_id)`; gzip-compressed when `gz`.
    fn layer(files: &[(&str, &str)], gz: bool) -> (Vec<u8>, Digest) {
        let tar = tar_of(files);
        let diff_id = Digest::sha256_of(&tar);
        (if gz { gzip(&tar) } else { tar }, diff_id)
    }

    fn config_json(label: &str, diff_ids: &[&Digest]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Labels": { "name": label } },
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        }))
        .unwrap()
    }

    /// Ingests layers, a minimal config and manifest, and returns the image to register.
    fn build(store: &ImageStore, label: &str, layers: &[&(Vec<u8>, Digest)]) -> NewImage {
        let mut pairs = Vec::new();
        let mut size = 0;
        for (blob, diff_id) in layers {
            pairs.push((store.blobs.ingest_bytes(blob).unwrap(), diff_id.clone()));
            size += blob.len() as u64;
        }
        let diff_ids: Vec<&Digest> = layers.iter().map(|(_, d)| d).collect();
        let config_bytes = config_json(label, &diff_ids);
        let config = store.blobs.ingest_bytes(&config_bytes).unwrap();
        register_manifest(store, config, config_bytes.len(), pairs, size)
    }

    fn register_manifest(
        store: &ImageStore,
        config: Digest,
        config_size: usize,
        layers: Vec<(Digest, Digest)>,
        size: u64,
    ) -> NewImage {
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config,
                "size": config_size,
            },
            "layers": layers.iter().map(|(blob, _)| serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": blob,
                "size": store.blobs.size(blob).unwrap(),
            })).collect::<Vec<_>>(),
        });
        let manifest = store
            .blobs
            .ingest_bytes(&serde_json::to_vec(&manifest).unwrap())
            .unwrap();
        NewImage {
            manifest,
            config,
            layers,
            created: None,
            size,
        }
    }

    fn store() -> (tempfile::TempDir, ImageStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        (dir, store)
    }

    /// Unmounts on drop, so a failed assertion does not leave the mount behind.
    struct Mounted<'a>(&'a Path);

    impl Drop for Mounted<'_> {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }

    /// What a pull leaves when the machine goes down before its background sync: a record
    /// of an earlier boot naming what was written unsynced. The blob whose data did not
    /// survive goes, with the image that needs it; the intact blob stays; every snapshot
    /// named is dropped and unpacked again on first use, so a file whose data was lost comes
    /// back. A record of this boot belongs to a pull still running or settling: untouched.
    #[test]
    fn unsynced_writes_of_an_earlier_boot_are_checked_again() {
        let (dir, store) = store();
        let base = layer(&[("etc/kept", "yes")], true);
        let top = layer(&[("etc/lost", "gone")], true);
        let kept = build(&store, "kept", &[&base]);
        let lost = build(&store, "lost", &[&base, &top]);
        store.register(kept.clone(), &[]).unwrap();
        store.register(lost.clone(), &[]).unwrap();
        store.rootfs_layers(&kept.config).unwrap();
        store.rootfs_layers(&lost.config).unwrap();
        let chains: Vec<Digest> = store
            .meta
            .layers_of(&lost.config)
            .unwrap()
            .into_iter()
            .map(|l| l.chain_id)
            .collect();
        let (base_blob, top_blob) = (&lost.layers[0].0, &lost.layers[1].0);

        // The power cut: the top blob's data never reached the disk, nor one of the base
        // snapshot's files.
        fs::write(store.blobs.path(top_blob), b"").unwrap();
        let file = store.snapshots.path(&chains[0]).join("etc/kept");
        fs::write(&file, b"").unwrap();
        let pending = dir.path().join("pending");
        fs::create_dir_all(&pending).unwrap();
        let earlier = "00000000-0000-4000-8000-000000000000";
        let boot = pending::boot_id().unwrap();
        assert_ne!(boot, earlier);
        let record = pending.join(format!("{earlier}-4242-0"));
        fs::write(
            &record,
            format!(
                "blob {base_blob}\nblob {top_blob}\nsnapshot {}\nsnapshot {}\n",
                chains[0], chains[1]
            ),
        )
        .unwrap();
        let running = pending.join(format!("{boot}-4242-1"));
        fs::write(&running, format!("blob {base_blob}\n")).unwrap();
        drop(store);

        let store = ImageStore::open(dir.path()).unwrap();
        assert!(!record.exists(), "the earlier boot's record is done with");
        assert!(running.exists(), "this boot's record is left to its writer");
        assert!(
            !store.blobs.contains(top_blob),
            "a blob that fails its digest goes"
        );
        store.blobs.verify(base_blob).unwrap();
        assert!(
            store.meta.image(&lost.config).unwrap().is_none(),
            "an image missing a blob is not claimed"
        );
        assert!(store.meta.image(&kept.config).unwrap().is_some());
        assert!(!store.snapshots.contains(&chains[0]));
        assert!(!store.snapshots.contains(&chains[1]));
        let lowers = store.rootfs_layers(&kept.config).unwrap();
        assert_eq!(
            fs::read_to_string(lowers[0].join("etc/kept")).unwrap(),
            "yes"
        );
        // Opening again finds nothing more to check.
        drop(store);
        ImageStore::open(dir.path()).unwrap();
        assert!(running.exists());
    }

    #[test]
    fn shared_base_survives_until_the_last_image_goes() {
        let (dir, store) = store();
        let base = layer(&[("etc/os-release", "base"), ("bin/sh", "shell")], true);
        let top_a = layer(&[("app/a", "A"), ("etc/os-release", "patched by a")], false);
        let top_b = layer(&[("app/b", "B")], true);
        let a = build(&store, "a", &[&base, &top_a]);
        let b = build(&store, "b", &[&base, &top_b]);
        let row_a = store.register(a.clone(), &[r("a")]).unwrap();
        assert_eq!(row_a.id, a.config);
        assert_eq!(row_a.tags, vec![r("a")]);
        store.register(b.clone(), &[r("b")]).unwrap();

        let lowers_a = store.rootfs_layers(&a.config).unwrap();
        let lowers_b = store.rootfs_layers(&b.config).unwrap();
        assert_eq!(lowers_a.len(), 2);
        assert_eq!(lowers_a[1], lowers_b[1], "one snapshot for the shared base");
        assert_ne!(lowers_a[0], lowers_b[0]);
        assert_eq!(store.snapshots.list().unwrap().len(), 3);

        // The stack mounts as the image's filesystem.
        let merged = dir.path().join("merged");
        std::fs::create_dir(&merged).unwrap();
        mount_overlay(&lowers_a, None, &merged).unwrap();
        let mounted = Mounted(&merged);
        let read = |p: &str| std::fs::read_to_string(merged.join(p)).unwrap();
        assert_eq!(read("etc/os-release"), "patched by a");
        assert_eq!(read("bin/sh"), "shell");
        assert_eq!(read("app/a"), "A");
        unmount(&merged).unwrap();
        std::mem::forget(mounted);

        let layers_a = store.meta.layers_of(&a.config).unwrap();
        let lines = store.remove("a", false).unwrap();
        assert_eq!(
            lines,
            vec![
                "Untagged: a:latest".to_string(),
                format!("Deleted: {}", a.config),
                format!("Deleted: {}", layers_a[1].chain_id),
            ]
        );
        let (base_blob, top_a_blob) = (&a.layers[0].0, &a.layers[1].0);
        assert!(store.blobs.contains(base_blob), "shared blob kept");
        assert!(!store.blobs.contains(top_a_blob));
        assert!(!store.blobs.contains(&a.config));
        assert!(!store.blobs.contains(&a.manifest));
        assert!(
            store.snapshots.contains(&layers_a[0].chain_id),
            "shared snapshot kept"
        );
        assert!(!store.snapshots.contains(&layers_a[1].chain_id));
        assert!(store.blobs.contains(&b.manifest));

        let lines = store.remove("b", false).unwrap();
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(store.blobs.list().unwrap().is_empty());
        assert!(store.snapshots.list().unwrap().is_empty());
        assert!(store.meta.list().unwrap().is_empty());
        let err = store.remove("b", false).unwrap_err();
        assert_eq!(err.to_string(), "no such image: b");
    }

    #[test]
    fn tag_untag_and_resolve() {
        let (_dir, store) = store();
        let base = layer(&[("f", "x")], false);
        let img = build(&store, "one", &[&base]);
        store
            .register(img.clone(), &[r("localhost:5000/one:1")])
            .unwrap();
        store.meta.tag(&r("other"), &img.config).unwrap();

        let hex = img.config.hex();
        for input in [
            "localhost:5000/one:1",
            "other",
            "other:latest",
            &img.config.to_string(),
            &hex[..12],
            &hex[..4],
        ] {
            assert_eq!(store.meta.resolve(input).unwrap().id, img.config, "{input}");
        }
        assert!(store.meta.untag(&r("other")).unwrap());
        assert!(store.meta.resolve("other").is_err());
        assert_eq!(
            store.meta.resolve(&hex[..12]).unwrap().tags,
            vec![r("localhost:5000/one:1")]
        );
    }

    #[test]
    fn ambiguous_prefix() {
        let (_dir, store) = store();
        let base = layer(&[("f", "x")], false);
        let blob = store.blobs.ingest_bytes(&base.0).unwrap();
        // Configs differing only in a label, until two ids share their first 4 hex digits.
        let mut seen = std::collections::HashMap::new();
        let (first, second) = (0..)
            .find_map(|i| {
                let bytes = config_json(&i.to_string(), &[&base.1]);
                let id = Digest::sha256_of(&bytes);
                seen.insert(id.hex()[..4].to_string(), bytes.clone())
                    .map(|prev| (prev, bytes))
            })
            .unwrap();
        let mut ids = Vec::new();
        for bytes in [first, second] {
            let config = store.blobs.ingest_bytes(&bytes).unwrap();
            let img = register_manifest(
                &store,
                config,
                bytes.len(),
                vec![(blob.clone(), base.1.clone())],
                1,
            );
            ids.push(store.register(img, &[]).unwrap().id);
        }
        let prefix = &ids[0].hex()[..4];
        let err = store.remove(prefix, false).unwrap_err();
        assert!(err.to_string().contains("is ambiguous"), "{err}");
        assert_eq!(store.meta.list().unwrap().len(), 2, "nothing removed");
        assert_eq!(
            store.remove(&ids[0].hex()[..16], false).unwrap(),
            vec![format!("Deleted: {}", ids[0])]
        );
    }

    #[test]
    fn rmi_by_id_of_image_in_two_repositories_needs_force() {
        let (_dir, store) = store();
        let img = build(&store, "x", &[&layer(&[("f", "x")], false)]);
        store
            .register(img.clone(), &[r("app:1"), r("other/app:1")])
            .unwrap();
        let short = img.config.hex()[..12].to_string();
        let err = store.remove(&short, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories"
            )
        );
        assert_eq!(store.meta.tags_of(&img.config).unwrap().len(), 2);
        assert!(store.blobs.contains(&img.config));

        // By name, one tag at a time, works without force.
        assert_eq!(
            store.remove("app:1", false).unwrap(),
            vec!["Untagged: app:1"]
        );
        store.meta.tag(&r("app:1"), &img.config).unwrap();

        let lines = store.remove(&short, true).unwrap();
        assert_eq!(
            lines[..3],
            [
                "Untagged: app:1".to_string(),
                "Untagged: other/app:1".to_string(),
                format!("Deleted: {}", img.config),
            ]
        );
        assert!(store.blobs.list().unwrap().is_empty());
    }

    #[test]
    fn rmi_by_id_with_tags_in_one_repository_needs_no_force() {
        let (_dir, store) = store();
        let img = build(&store, "x", &[&layer(&[("f", "x")], false)]);
        store
            .register(img.clone(), &[r("app:1"), r("app:2")])
            .unwrap();
        let lines = store.remove(&img.config.to_string(), false).unwrap();
        assert_eq!(
            lines[..3],
            [
                "Untagged: app:1".to_string(),
                "Untagged: app:2".to_string(),
                format!("Deleted: {}", img.config),
            ]
        );
    }

    #[test]
    fn register_refuses_missing_blobs() {
        let (_dir, store) = store();
        let mut img = build(&store, "x", &[&layer(&[("f", "x")], false)]);
        let missing = Digest::sha256_of(b"never ingested");
        img.layers.push((missing.clone(), missing.clone()));
        let err = store.register(img.clone(), &[r("x")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("image {}: blob {missing} is not in the store", img.config)
        );
        assert!(store.meta.list().unwrap().is_empty());
    }

    #[test]
    fn wrong_diff_id_is_reported_with_image_and_layer() {
        let (_dir, store) = store();
        let (blob, _) = layer(&[("f", "x")], true);
        let lie = Digest::sha256_of(b"another layer");
        let img = build(&store, "liar", &[&(blob, lie.clone())]);
        store.register(img.clone(), &[]).unwrap();
        let err = store.rootfs_layers(&img.config).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "image {}: layer {lie}: unpacked content has diff_id ",
                img.config
            )),
            "{msg}"
        );
        assert!(store.snapshots.list().unwrap().is_empty());
    }

    #[test]
    fn gc_waits_for_writers() {
        let (_dir, store) = store();
        let writer = store.writer_lock().unwrap();
        let stray = store.blobs.ingest_bytes(b"being registered").unwrap();
        assert_eq!(store.try_gc().unwrap(), None, "a writer is busy");
        assert!(store.blobs.contains(&stray));
        std::thread::scope(|s| {
            let gc = s.spawn(|| store.gc().unwrap());
            std::thread::sleep(std::time::Duration::from_millis(100));
            assert!(!gc.is_finished(), "gc waits for the writer");
            assert!(store.blobs.contains(&stray));
            drop(writer);
            let report = gc.join().unwrap();
            assert_eq!(report.blobs, vec![stray.clone()]);
            assert_eq!(report.blob_bytes, 16);
        });
        assert!(!store.blobs.contains(&stray));
    }

    #[test]
    fn concurrent_register_and_tag() {
        let dir = tempfile::tempdir().unwrap();
        let base = layer(&[("etc/base", "base")], true);
        std::thread::scope(|s| {
            for i in 0..20 {
                let (root, base) = (dir.path(), &base);
                s.spawn(move || {
                    // Each thread has its own store and connection, like a separate process.
                    let store = ImageStore::open(root).unwrap();
                    let top = layer(&[("n", &i.to_string())], false);
                    let img = build(&store, &i.to_string(), &[base, &top]);
                    let id = store
                        .register(img, &[r(&format!("img{i}")), r("shared")])
                        .unwrap()
                        .id;
                    store.meta.tag(&r(&format!("also{i}:x")), &id).unwrap();
                    store.meta.tag(&r("shared:moving"), &id).unwrap();
                    assert_eq!(store.meta.resolve(&format!("img{i}")).unwrap().id, id);
                    store.rootfs_layers(&id).unwrap();
                });
            }
        });
        let store = ImageStore::open(dir.path()).unwrap();
        let images = store.meta.list().unwrap();
        assert_eq!(images.len(), 20);
        let tags: usize = images.iter().map(|i| i.tags.len()).sum();
        assert_eq!(
            tags,
            20 * 2 + 2,
            "img<i> and also<i> each, shared and shared:moving once"
        );
        // One base snapshot plus one per image.
        assert_eq!(store.snapshots.list().unwrap().len(), 21);
        assert_eq!(
            store.gc().unwrap(),
            GcReport::default(),
            "nothing unreferenced"
        );
    }
}
