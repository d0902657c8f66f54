//! `docker commit`: the container's upper directory as a new layer on top of its image.
//!
//! The upper directory is walked as a layer: overlayfs whiteouts become OCI `.wh.NAME`
//! files and opaque directories a `.wh..wh..opq` entry, overlayfs's own xattrs are
//! dropped, and the mount points the runtime made are left out (as [`super::diff`]). The
//! tar is gzip-compressed into an unnamed temporary file in the blob store's ingest
//! directory while both digests are computed (the blob's, and the diff_id over the
//! uncompressed stream), then ingested. The config is the image's, with the container's
//! Env, Cmd, Entrypoint, WorkingDir, User, Labels, ExposedPorts and Volumes, then the
//! `--change` instructions; history and diff_ids grow by one. Registration (and the tag)
//! comes last, in one transaction: a failure before it removes the blobs this commit
//! added, so nothing half-made is named or kept.
//!
//! A running container is paused for the walk unless asked not to be (Docker's default).

use super::diff::is_mount_stub;
use super::view::{image_id, image_root, upper_dir, Locked};
use super::walk::{walk, TarSink, WalkOptions};
use super::{FsError, Result};
use crate::container::Engine;
use crate::store::{Container, State};
use image::digest::{Digest, DigestWriter};
use image::images::ImageStore;
use image::manifest::{
    DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST,
};
use image::meta::NewImage;
use image::reference::Reference;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use serde_json::{json, Map, Value};
use std::ffi::OsStr;
use std::io::{Seek, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

/// What `docker commit` takes besides the container.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    pub author: Option<String>,
    pub message: Option<String>,
    /// Parsed `--change` instructions: (config key, value), as `berth import` parses them.
    pub changes: Vec<(String, Value)>,
    /// Pause a running container while its files are read.
    pub pause: bool,
    pub reference: Option<Reference>,
}

/// Unpauses the container it paused, whatever happens after.
struct Unpause<'a> {
    engine: &'a Engine,
    id: Option<String>,
}

impl Drop for Unpause<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            if let Ok(c) = self.engine.find(&id) {
                let _ = self.engine.pause(&c, false);
            }
        }
    }
}

/// The blobs one image write added to the store, removed on drop unless kept
/// ([`NewBlobs::keep`]): nothing half-made stays behind when a commit, or a build step,
/// fails part-way.
pub struct NewBlobs<'a> {
    store: &'a ImageStore,
    added: Vec<Digest>,
    keep: bool,
}

impl<'a> NewBlobs<'a> {
    pub fn new(store: &'a ImageStore) -> NewBlobs<'a> {
        NewBlobs {
            store,
            added: Vec::new(),
            keep: false,
        }
    }

    /// Ingests `bytes` and remembers the blob if it was not there before.
    pub fn bytes(&mut self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::sha256_of(bytes);
        let existed = self.store.blobs.contains(&digest);
        self.store
            .blobs
            .ingest(&digest, Some(bytes.len() as u64), bytes)
            .map_err(image::images::ImageError::from)?;
        if !existed {
            self.added.push(digest.clone());
        }
        Ok(digest)
    }

    /// The blobs stay: something references them now.
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for NewBlobs<'_> {
    fn drop(&mut self) {
        if !self.keep {
            for blob in &self.added {
                let _ = self.store.blobs.remove(blob);
            }
        }
    }
}

/// One layer of an image: its descriptor as the manifest lists it, and its diff_id.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub descriptor: Value,
    pub diff_id: Digest,
}

/// The layers of image `id` (bottom first), and whether its manifest is Docker's schema2
/// (a child's manifest then is too, as `docker commit` keeps the parent's format).
pub fn layers_of(store: &ImageStore, id: &Digest) -> Result<(Vec<Layer>, bool)> {
    let row = store
        .meta
        .image(id)
        .map_err(image::images::ImageError::from)?
        .ok_or_else(|| FsError::Invalid(format!("no such image: {id}")))?;
    let manifest: Value = serde_json::from_slice(
        &store
            .blobs
            .read(&row.manifest)
            .map_err(image::images::ImageError::from)?,
    )
    .map_err(|e| FsError::Invalid(format!("image {id}: manifest is not JSON: {e}")))?;
    let rows = store
        .meta
        .layers_of(id)
        .map_err(image::images::ImageError::from)?;
    let descriptors = manifest["layers"].as_array().cloned().unwrap_or_default();
    if descriptors.len() != rows.len() {
        return Err(FsError::Invalid(format!(
            "image {id}: the manifest lists {} layers, the store {}",
            descriptors.len(),
            rows.len()
        )));
    }
    let layers = descriptors
        .into_iter()
        .zip(rows)
        .map(|(descriptor, row)| Layer {
            descriptor,
            diff_id: row.diff_id,
        })
        .collect();
    Ok((
        layers,
        manifest["mediaType"].as_str() == Some(DOCKER_MANIFEST),
    ))
}

/// What [`WalkOptions::skip`] takes.
pub type Skip<'a> = &'a dyn Fn(&str, &nix::sys::stat::FileStat) -> bool;

/// A directory read as a layer (an overlay upper directory: whiteouts become `.wh.`
/// files, opaque directories get `.wh..wh..opq`), gzip-compressed into an unnamed
/// temporary file while both digests are computed, then ingested. `docker` picks the
/// media type for a Docker schema2 manifest.
pub fn write_layer(
    blobs: &mut NewBlobs,
    dir: BorrowedFd,
    skip: Option<Skip>,
    docker: bool,
) -> Result<Layer> {
    let store = blobs.store;
    let ingest = store.blobs.ingest_dir();
    let mut tmp = tempfile::tempfile_in(ingest).map_err(|source| FsError::Local {
        path: ingest.to_path_buf(),
        source,
    })?;
    let opts = WalkOptions {
        oci_whiteouts: true,
        skip,
    };
    let compressed = DigestWriter::new(std::io::BufWriter::new(&mut tmp));
    let gz = flate2::write::GzEncoder::new(compressed, flate2::Compression::default());
    let mut tar = TarSink::new(DigestWriter::new(gz));
    walk(dir, OsStr::new("."), Path::new(""), false, &opts, &mut tar)?;
    let (gz, diff_id, _) = tar.finish()?.into_parts();
    let (mut buffered, blob, size) = gz.finish().map_err(FsError::Output)?.into_parts();
    buffered.flush().map_err(FsError::Output)?;
    drop(buffered);
    tmp.rewind().map_err(FsError::Output)?;
    let existed = store.blobs.contains(&blob);
    store
        .blobs
        .ingest(&blob, Some(size), &mut tmp)
        .map_err(image::images::ImageError::from)?;
    if !existed {
        blobs.added.push(blob.clone());
    }
    let media_type = if docker {
        DOCKER_LAYER_GZIP
    } else {
        OCI_LAYER_GZIP
    };
    Ok(Layer {
        descriptor: json!({
            "mediaType": media_type,
            "digest": blob.to_string(),
            "size": size,
        }),
        diff_id,
    })
}

/// Writes `config` (whose `rootfs.diff_ids` must be `layers`') and a manifest over
/// `layers`, then registers the image and moves `tags` to it in one transaction.
/// Returns the image id.
pub fn register_image(
    blobs: &mut NewBlobs,
    config: &Value,
    layers: &[Layer],
    docker: bool,
    tags: &[Reference],
) -> Result<Digest> {
    let store = blobs.store;
    let config_bytes =
        serde_json::to_vec(config).map_err(|e| FsError::Invalid(format!("image config: {e}")))?;
    let config_digest = blobs.bytes(&config_bytes)?;
    let (manifest_type, config_type) = if docker {
        (DOCKER_MANIFEST, DOCKER_CONFIG)
    } else {
        (OCI_MANIFEST, OCI_CONFIG)
    };
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {
            "mediaType": config_type,
            "digest": config_digest.to_string(),
            "size": config_bytes.len(),
        },
        "layers": layers.iter().map(|l| l.descriptor.clone()).collect::<Vec<_>>(),
    });
    let manifest_bytes = serde_json::to_vec(&manifest)
        .map_err(|e| FsError::Invalid(format!("image manifest: {e}")))?;
    let manifest_digest = blobs.bytes(&manifest_bytes)?;
    let mut image_layers = Vec::with_capacity(layers.len());
    let mut size = 0;
    for l in layers {
        let blob: Digest = l.descriptor["digest"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .map_err(|e| FsError::Invalid(format!("layer descriptor: {e}")))?;
        size += store.blobs.size(&blob).unwrap_or(0);
        image_layers.push((blob, l.diff_id.clone()));
    }
    let created = config["created"]
        .as_str()
        .and_then(image::time::parse_rfc3339)
        .unwrap_or_else(now);
    let row = store.register(
        NewImage {
            manifest: manifest_digest,
            config: config_digest,
            layers: image_layers,
            created: Some(created),
            size,
        },
        tags,
    )?;
    Ok(row.id)
}

/// `docker commit`; returns the new image's id.
pub fn commit(engine: &Engine, c: &Container, opts: &CommitOptions) -> Result<Digest> {
    let c = engine.reconcile(c.clone())?;
    let _unpause = Unpause {
        engine,
        id: if opts.pause && c.state == State::Running {
            engine.pause(&c, true)?;
            Some(c.id.clone())
        } else {
            None
        },
    };
    // Dropped (unlocking) before `_unpause` runs: unpausing may need the lock.
    let locked = Locked::take(engine, &c)?;
    commit_locked(engine, &locked.container, opts)
}

fn commit_locked(engine: &Engine, c: &Container, opts: &CommitOptions) -> Result<Digest> {
    let store = &engine.images;
    let parent = image_id(c)?;
    if store
        .meta
        .image(&parent)
        .map_err(image::images::ImageError::from)?
        .is_none()
    {
        return Err(FsError::Invalid(format!(
            "the image of container {} is gone",
            c.id
        )));
    }
    let parent_config: Value = serde_json::from_slice(
        &store
            .blobs
            .read(&parent)
            .map_err(image::images::ImageError::from)?,
    )
    .map_err(|e| FsError::Invalid(format!("image {parent}: config is not JSON: {e}")))?;
    let (mut layers, docker) = layers_of(store, &parent)?;

    // GC stays away from the first blob to the registration.
    let _writer = store.writer_lock()?;
    let mut blobs = NewBlobs::new(store);
    let layer = container_layer(engine, c, &mut blobs, docker)?;
    let created = image::time::format_rfc3339(now());
    let config = new_config(engine, c, &parent_config, opts, &layer.diff_id, &created);
    layers.push(layer);
    let id = register_image(
        &mut blobs,
        &config,
        &layers,
        docker,
        opts.reference.as_slice(),
    )?;
    blobs.keep();
    Ok(id)
}

/// The container's upper directory as a layer, without the mount points the runtime made.
pub fn container_layer(
    engine: &Engine,
    c: &Container,
    blobs: &mut NewBlobs,
    docker: bool,
) -> Result<Layer> {
    let upper = upper_dir(engine, c)?;
    let image = image_root(engine, c)?;
    let skip = |path: &str, st: &nix::sys::stat::FileStat| {
        is_mount_stub(path, st, in_image(image.as_fd(), path))
            && stub_empty(upper.as_fd(), path, st)
    };
    write_layer(blobs, upper.as_fd(), Some(&skip), docker)
}

/// A stopped container's upper directory made into exactly its layer, and that layer:
/// for a builder that keeps the directory as the layer's snapshot (`Snapshots::adopt`)
/// rather than unpacking the blob again. The container stays locked while this lives.
pub struct UpperLayer {
    pub layer: Layer,
    /// The upper directory, which now holds what the layer holds and nothing else.
    pub dir: std::path::PathBuf,
    _locked: Locked,
}

/// [`container_layer`] for a container that has exited: the runtime's mount points are
/// removed from the upper directory first (the walk would leave them out, with the same
/// test), so the directory and the layer hold the same files. `mount_points` are more
/// (a build's RUN mounts): each one and the directories above it that the image lacks are
/// removed too while empty, deepest first, as BuildKit's stub cleaner does.
pub fn container_upper_layer(
    engine: &Engine,
    c: &Container,
    blobs: &mut NewBlobs,
    docker: bool,
    mount_points: &[&str],
) -> Result<UpperLayer> {
    let locked = Locked::take(engine, c)?;
    let c = &locked.container;
    let mounted = nix::sys::statfs::statfs(&engine.rootfs(&c.id))
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC);
    if matches!(c.state, State::Running | State::Paused) || mounted {
        return Err(FsError::Invalid(format!(
            "container {} is still running; its upper directory cannot be taken",
            c.id
        )));
    }
    let dir = engine.container_dir(&c.id).join("upper");
    let upper = upper_dir(engine, c)?;
    let image = image_root(engine, c)?;
    // In the walk's order (parents first), so a stub directory is tested before its
    // children are removed, as the walk tests it.
    for path in super::diff::MOUNT_STUBS {
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
        let parent_path = if parent.is_empty() { "." } else { &parent[1..] };
        let Ok(parent_fd) = openat2(upper.as_fd(), parent_path, how) else {
            continue;
        };
        let Ok(st) =
            nix::sys::stat::fstatat(&parent_fd, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        else {
            continue;
        };
        if is_mount_stub(path, &st, in_image(image.as_fd(), path))
            && stub_empty(upper.as_fd(), path, &st)
        {
            let flag = if super::resolve::is_dir(&st) {
                nix::unistd::UnlinkatFlags::RemoveDir
            } else {
                nix::unistd::UnlinkatFlags::NoRemoveDir
            };
            nix::unistd::unlinkat(&parent_fd, name, flag)
                .map_err(super::io_err("removing the mount point", path))?;
        }
    }
    let mut made: Vec<String> = Vec::new();
    for point in mount_points {
        let mut path = super::resolve::clean_abs(point);
        while path != "/" && !in_image(image.as_fd(), &path) {
            made.push(path.clone());
            path = match path.rsplit_once('/') {
                Some(("", _)) | None => "/".into(),
                Some((parent, _)) => parent.into(),
            };
        }
    }
    made.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
    made.dedup();
    for path in &made {
        remove_if_empty(upper.as_fd(), path)?;
    }
    let layer = write_layer(blobs, upper.as_fd(), None, docker)?;
    Ok(UpperLayer {
        layer,
        dir,
        _locked: locked,
    })
}

/// Removes `path` (absolute, in the upper directory `upper`, reached without following
/// symlinks) if it is an empty directory or an empty file.
fn remove_if_empty(upper: BorrowedFd, path: &str) -> Result<()> {
    let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    let parent_path = if parent.is_empty() { "." } else { &parent[1..] };
    let Ok(parent_fd) = openat2(upper, parent_path, how) else {
        return Ok(());
    };
    let Ok(st) =
        nix::sys::stat::fstatat(&parent_fd, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
    else {
        return Ok(());
    };
    let flag = if super::resolve::is_dir(&st) {
        if !stub_empty(upper, path, &st) {
            return Ok(());
        }
        nix::unistd::UnlinkatFlags::RemoveDir
    } else if super::resolve::is_file(&st) && st.st_size == 0 {
        nix::unistd::UnlinkatFlags::NoRemoveDir
    } else {
        return Ok(());
    };
    nix::unistd::unlinkat(&parent_fd, name, flag)
        .map_err(super::io_err("removing the mount point", path))
}

/// Whether the image has `path` (its whiteouts count as absent).
fn in_image(image: BorrowedFd, path: &str) -> bool {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(image, path, how)
        .and_then(|fd| nix::sys::stat::fstat(&fd))
        .is_ok_and(|st| !super::walk::is_whiteout(&st))
}

/// A stub directory counts only while empty (see `diff`).
fn stub_empty(upper: BorrowedFd, path: &str, st: &nix::sys::stat::FileStat) -> bool {
    if !super::resolve::is_dir(st) {
        return true;
    }
    super::resolve::open_dir(upper, Path::new(path))
        .and_then(|fd| super::walk::list_dir(fd.as_fd()))
        .is_ok_and(|n| n.is_empty())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The new image's config: the image's, with the container's settings and the changes.
fn new_config(
    engine: &Engine,
    c: &Container,
    parent: &Value,
    opts: &CommitOptions,
    diff_id: &Digest,
    created: &str,
) -> Value {
    let run = &c.options.run;
    let mut cfg = parent.clone();
    if !cfg.is_object() {
        cfg = json!({});
    }
    let image_inner = parent["config"].as_object().cloned().unwrap_or_default();
    let mut inner = image_inner.clone();
    let list = |v: Vec<String>| if v.is_empty() { Value::Null } else { json!(v) };
    inner.insert("Env".into(), list(engine.env(c)));
    inner.insert("Cmd".into(), list(engine.cmd(c)));
    inner.insert("Entrypoint".into(), list(engine.entrypoint(c)));
    if let Some(w) = &run.workdir {
        inner.insert("WorkingDir".into(), json!(w));
    }
    if let Some(u) = &run.user {
        inner.insert("User".into(), json!(u));
    }
    if let Some(s) = &run.stop_signal {
        inner.insert("StopSignal".into(), json!(s));
    }
    let mut labels = image_inner
        .get("Labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (k, v) in &run.labels {
        labels.insert(k.clone(), json!(v));
    }
    if !labels.is_empty() {
        inner.insert("Labels".into(), Value::Object(labels));
    }
    let mut volumes = image_inner
        .get("Volumes")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for m in &run.mounts {
        if let crate::flags::MountSpec::Volume {
            name: None, target, ..
        } = m
        {
            volumes.insert(target.clone(), json!({}));
        }
    }
    if !volumes.is_empty() {
        inner.insert("Volumes".into(), Value::Object(volumes));
    }
    apply_changes(&mut inner, &opts.changes);

    let obj = cfg.as_object_mut().expect("made an object above");
    obj.insert("config".into(), Value::Object(inner));
    obj.insert("created".into(), json!(created));
    obj.insert("container".into(), json!(c.id));
    obj.remove("container_config");
    obj.remove("docker_version");
    match &opts.author {
        Some(a) => obj.insert("author".into(), json!(a)),
        None => obj.remove("author"),
    };
    match &opts.message {
        Some(m) => obj.insert("comment".into(), json!(m)),
        None => obj.remove("comment"),
    };
    let mut diff_ids = obj
        .get("rootfs")
        .and_then(|r| r["diff_ids"].as_array())
        .cloned()
        .unwrap_or_default();
    diff_ids.push(json!(diff_id.to_string()));
    obj.insert(
        "rootfs".into(),
        json!({"type": "layers", "diff_ids": diff_ids}),
    );
    let mut history = obj
        .get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut entry = Map::new();
    entry.insert("created".into(), json!(created));
    entry.insert("created_by".into(), json!(engine.cmd(c).join(" ")));
    if let Some(a) = &opts.author {
        entry.insert("author".into(), json!(a));
    }
    if let Some(m) = &opts.message {
        entry.insert("comment".into(), json!(m));
    }
    history.push(Value::Object(entry));
    obj.insert("history".into(), Value::Array(history));
    cfg
}

/// `--change` instructions applied as a Dockerfile would: ENV replaces a variable of the
/// same name, LABEL/EXPOSE/VOLUME add to what is there, ENTRYPOINT clears the Cmd unless a
/// CMD is among the changes, a relative WORKDIR is taken from the current one.
pub fn apply_changes(config: &mut Map<String, Value>, changes: &[(String, Value)]) {
    let cmd_set = changes.iter().any(|(k, _)| k == "Cmd");
    for (key, value) in changes {
        match (key.as_str(), value) {
            ("Env", Value::Array(vars)) => {
                let mut env: Vec<Value> = config
                    .get("Env")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for var in vars {
                    let text = var.as_str().unwrap_or_default();
                    let name = text.split_once('=').map_or(text, |(k, _)| k);
                    let same = |e: &Value| {
                        e.as_str()
                            .is_some_and(|e| e.split_once('=').map_or(e, |(k, _)| k) == name)
                    };
                    match env.iter().position(same) {
                        Some(i) => env[i] = var.clone(),
                        None => env.push(var.clone()),
                    }
                }
                config.insert("Env".into(), Value::Array(env));
            }
            ("Labels" | "ExposedPorts" | "Volumes", Value::Object(add)) => {
                let mut map = config
                    .get(key)
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                map.extend(add.clone());
                config.insert(key.clone(), Value::Object(map));
            }
            ("Entrypoint", v) => {
                config.insert(key.clone(), v.clone());
                if !cmd_set {
                    config.insert("Cmd".into(), Value::Null);
                }
            }
            ("WorkingDir", Value::String(dir)) if !dir.starts_with('/') => {
                let base = config
                    .get("WorkingDir")
                    .and_then(Value::as_str)
                    .filter(|b| !b.is_empty())
                    .unwrap_or("/")
                    .to_string();
                let joined = super::resolve::clean_abs(&format!("{base}/{dir}"));
                config.insert(key.clone(), json!(joined));
            }
            _ => {
                config.insert(key.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_apply_like_a_dockerfile() {
        let mut config = json!({
            "Env": ["PATH=/bin", "A=1"],
            "Cmd": ["sh"],
            "Labels": {"a": "1"},
            "WorkingDir": "/srv",
        })
        .as_object()
        .cloned()
        .unwrap();
        apply_changes(
            &mut config,
            &[
                ("Env".into(), json!(["A=2", "B=3"])),
                ("Labels".into(), json!({"b": "2"})),
                ("WorkingDir".into(), json!("app")),
                ("Entrypoint".into(), json!(["/bin/x"])),
            ],
        );
        assert_eq!(config["Env"], json!(["PATH=/bin", "A=2", "B=3"]));
        assert_eq!(config["Labels"], json!({"a": "1", "b": "2"}));
        assert_eq!(config["WorkingDir"], json!("/srv/app"));
        assert_eq!(config["Cmd"], Value::Null);
        apply_changes(
            &mut config,
            &[
                ("Entrypoint".into(), json!(["/bin/y"])),
                ("Cmd".into(), json!(["-v"])),
            ],
        );
        assert_eq!(config["Cmd"], json!(["-v"]));
        assert_eq!(config["Entrypoint"], json!(["/bin/y"]));
    }
}
