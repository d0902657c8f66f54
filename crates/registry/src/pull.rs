//! Pull: manifest (through an index to the wanted platform), config, then every layer at
//! once, each streamed from the registry in one pass through a tee: into the blob store's
//! ingest file (hashed as it is written) and through decompression into the layer's
//! snapshot. Only when the whole blob has arrived and its digest matches is the blob
//! committed, and only then is the snapshot marked done (`Snapshots::ensure_verified`); on
//! any error both are discarded.
//!
//! Crash safety comes from the store: a killed pull leaves an ingest file and a `tmp-*`
//! snapshot directory, which nothing reads and GC removes, and the image is only in the
//! database once `register` ran. The store's writer lock is held from the first blob to
//! the registration, so GC cannot collect blobs in between.
//!
//! Nothing in a pull waits for the disk but one small file: once manifest and config are
//! verified in memory, the blobs and snapshots the store lacks are listed in a durable
//! record (`image::pending`), then written unsynced; the record's drop syncs them in a
//! detached process. A power cut before that sync has the next boot check them again
//! (blobs re-hashed, snapshots unpacked again, images missing a blob deleted).
//!
//! Two pulls sharing a layer (threads or processes) serialise on the snapshot's lock: the
//! first downloads and unpacks, the second waits, then finds snapshot and blob in place.
//! (Layers shared at different heights have different chain ids, so they are fetched by
//! both: the snapshots differ anyway.)

use std::io::Read;
use std::sync::atomic::AtomicBool;

use image::digest::Digest;
use image::images::ImageStore;
use image::manifest::{self, Parsed, Platform};
use image::meta::{chain_ids, ImageRow, NewImage};
use image::pending::Pending;
use image::reference::Reference;
use image::snapshot::Snapshots;
use image::store::{BlobStore, StoreError};
use oci_spec::image::ImageManifest;
use serde::Deserialize;

use crate::auth::repository_scope;
use crate::client::{BlobStream, Client};
use crate::download::Download;
use crate::error::{Error, ErrorKind};
use crate::{for_each_parallel, Event, Options, Progress};

/// Image configs larger than this are refused (containerd's limit for configs is similar).
const CONFIG_MAX: u64 = 16 << 20;
/// Layers fetched at the same time, as Docker's default `max-concurrent-downloads`.
const DOWNLOADS: usize = 3;

/// Pulls `reference` into `store` and tags it (unless pulled by digest, as Docker does).
/// `platform` picks from a multi-platform index; `None` means this host's.
pub fn pull(
    store: &ImageStore,
    reference: &Reference,
    platform: Option<&Platform>,
    options: &Options,
    progress: &(dyn Fn(Event) + Sync),
) -> Result<ImageRow, Error> {
    pull_image(store, reference, platform, options, progress)
        .map_err(|kind| Error::new(format!("pull {reference}"), kind))
}

/// One layer to fetch.
struct Layer {
    blob: Digest,
    size: u64,
    diff_id: Digest,
    chain: Digest,
}

#[derive(Deserialize)]
struct ConfigProbe {
    created: Option<String>,
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<Digest>,
}

fn pull_image(
    store: &ImageStore,
    reference: &Reference,
    platform: Option<&Platform>,
    options: &Options,
    progress: &(dyn Fn(Event) + Sync),
) -> Result<ImageRow, ErrorKind> {
    let repository = &reference.repository;
    let client = Client::connect(&reference.registry, options)?
        .with_scopes(vec![repository_scope(repository, false)]);
    let (digest, bytes, manifest) = resolve_manifest(&client, reference, platform)?;

    let _writer = store.writer_lock()?;
    let config = Digest::try_from(manifest.config().digest())?;
    let config_bytes = fetch_config(
        store,
        &client,
        repository,
        &config,
        manifest.config().size(),
    )?;
    let probe: ConfigProbe =
        serde_json::from_slice(&config_bytes).map_err(|e| ErrorKind::Content {
            what: "config",
            digest: config.clone(),
            reason: format!("malformed image config: {e}"),
        })?;
    let layers = layers_of(&manifest, &config, probe.rootfs.diff_ids)?;
    for layer in &layers {
        progress(Event {
            digest: layer.blob.clone(),
            progress: Progress::Waiting,
        });
    }
    // From here on nothing waits for the disk: what is missing is listed in a durable
    // record first, which has it checked again should the machine go down before the
    // record's background sync (image::pending).
    let _pending = begin_pending(store, &digest, &config, &layers)?;
    let (blobs, snapshots) = (store.blobs.unsynced(), store.snapshots.unsynced());
    blobs.ingest(&digest, Some(bytes.len() as u64), bytes.as_slice())?;
    blobs.ingest(
        &config,
        Some(config_bytes.len() as u64),
        config_bytes.as_slice(),
    )?;
    let job = Job {
        blobs,
        snapshots,
        client: &client,
        repository,
        progress,
    };
    for_each_parallel(&layers, DOWNLOADS, |layer, cancel| {
        job.fetch_layer(layer, cancel)
    })?;

    let image = NewImage {
        manifest: digest,
        config,
        size: layers.iter().map(|l| l.size).sum(),
        layers: layers.into_iter().map(|l| (l.blob, l.diff_id)).collect(),
        created: probe
            .created
            .as_deref()
            .and_then(image::time::parse_rfc3339),
    };
    // Pulled by digest, the image gets no tag (as Docker); the digest names it already.
    let tags = match reference.digest {
        None => vec![reference.clone()],
        Some(_) => Vec::new(),
    };
    Ok(store.register(image, &tags)?)
}

/// The image manifest to pull: its digest, bytes and parsed form. A tag is trusted to name
/// whatever the registry serves; a digest is checked against the bytes, and so is every
/// manifest an index points to.
fn resolve_manifest(
    client: &Client,
    reference: &Reference,
    platform: Option<&Platform>,
) -> Result<(Digest, Vec<u8>, ImageManifest), ErrorKind> {
    let repository = &reference.repository;
    let (bytes, media_type) = client.get_manifest(repository, &reference.manifest_ref())?;
    let digest = match &reference.digest {
        Some(expected) => {
            check_digest("manifest", expected, &bytes)?;
            expected.clone()
        }
        None => Digest::sha256_of(&bytes),
    };
    let index = match manifest::parse(&bytes, media_type.as_deref())? {
        Parsed::Manifest(m) => return Ok((digest, bytes, m)),
        Parsed::Index(index) => index,
    };
    let wanted = platform.cloned().unwrap_or_else(manifest::host_platform);
    let descriptor = manifest::select(&index, &wanted)?;
    let digest = Digest::try_from(descriptor.digest())?;
    let (bytes, media_type) = client.get_manifest(repository, &digest.to_string())?;
    check_size("manifest", &digest, descriptor.size(), bytes.len() as u64)?;
    check_digest("manifest", &digest, &bytes)?;
    let declared = descriptor.media_type().to_string();
    match manifest::parse(&bytes, media_type.as_deref().or(Some(&declared)))? {
        Parsed::Manifest(m) => Ok((digest, bytes, m)),
        Parsed::Index(_) => Err(ErrorKind::Unsupported(format!(
            "manifest {digest}: an index inside an index is not supported"
        ))),
    }
}

/// Records the blobs and snapshots of the image that the store lacks, before they are
/// written without syncs. Those present are someone else's: synced, or in their record.
fn begin_pending(
    store: &ImageStore,
    manifest: &Digest,
    config: &Digest,
    layers: &[Layer],
) -> Result<Option<Pending>, ErrorKind> {
    let blobs: Vec<Digest> = [manifest, config]
        .into_iter()
        .chain(layers.iter().map(|l| &l.blob))
        .filter(|b| !store.blobs.contains(b))
        .cloned()
        .collect();
    let chains: Vec<Digest> = layers
        .iter()
        .map(|l| &l.chain)
        .filter(|c| !store.snapshots.contains(c))
        .cloned()
        .collect();
    Pending::begin(store.root(), &blobs, &chains).map_err(|source| {
        ErrorKind::Store(StoreError::Io {
            action: "recording unsynced writes in",
            path: store.root().join("pending"),
            source,
        })
    })
}

/// The config's bytes, from the store or downloaded into memory (stored later, under the
/// pull's record), verified either way.
fn fetch_config(
    store: &ImageStore,
    client: &Client,
    repository: &str,
    config: &Digest,
    size: u64,
) -> Result<Vec<u8>, ErrorKind> {
    if size > CONFIG_MAX {
        return Err(ErrorKind::Content {
            what: "config",
            digest: config.clone(),
            reason: format!("{size} bytes is more than the {CONFIG_MAX} allowed"),
        });
    }
    if store.blobs.contains(config) {
        return Ok(store.blobs.read(config)?);
    }
    let stream = client.get_blob(repository, config)?;
    check_length(config, stream.length, size)?;
    let mut bytes = Vec::new();
    // One byte past the declared size is enough to know the registry lied.
    stream
        .reader
        .take(size + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ErrorKind::Content {
            what: "config",
            digest: config.clone(),
            reason: format!("downloading: {e}"),
        })?;
    check_size("config", config, size, bytes.len() as u64)?;
    check_digest("config", config, &bytes)?;
    Ok(bytes)
}

/// Pairs the manifest's layers with the config's diff_ids.
fn layers_of(
    manifest: &ImageManifest,
    config: &Digest,
    diff_ids: Vec<Digest>,
) -> Result<Vec<Layer>, ErrorKind> {
    if diff_ids.len() != manifest.layers().len() {
        return Err(ErrorKind::Content {
            what: "config",
            digest: config.clone(),
            reason: format!(
                "lists {} layers, the manifest {}",
                diff_ids.len(),
                manifest.layers().len()
            ),
        });
    }
    let chains = chain_ids(&diff_ids);
    manifest
        .layers()
        .iter()
        .zip(diff_ids)
        .zip(chains)
        .map(|((descriptor, diff_id), chain)| {
            Ok(Layer {
                blob: Digest::try_from(descriptor.digest())?,
                size: descriptor.size(),
                diff_id,
                chain,
            })
        })
        .collect()
}

fn check_digest(what: &'static str, expected: &Digest, bytes: &[u8]) -> Result<(), ErrorKind> {
    let actual = Digest::of(expected.algorithm(), bytes);
    if &actual != expected {
        return Err(ErrorKind::DigestMismatch {
            what,
            expected: expected.clone(),
            actual,
        });
    }
    Ok(())
}

fn check_size(
    what: &'static str,
    digest: &Digest,
    expected: u64,
    actual: u64,
) -> Result<(), ErrorKind> {
    if expected != actual {
        return Err(ErrorKind::Content {
            what,
            digest: digest.clone(),
            reason: format!("{actual} bytes, but its descriptor says {expected}"),
        });
    }
    Ok(())
}

/// A Content-Length that contradicts the descriptor is refused before any byte is read.
fn check_length(digest: &Digest, length: Option<u64>, size: u64) -> Result<(), ErrorKind> {
    match length {
        Some(length) if length != size => Err(ErrorKind::Content {
            what: "blob",
            digest: digest.clone(),
            reason: format!("the registry sends {length} bytes, the manifest says {size}"),
        }),
        _ => Ok(()),
    }
}

/// What every layer of one pull shares.
struct Job<'a> {
    /// The store's blobs and snapshots, unsynced (the pull's record covers them).
    blobs: BlobStore,
    snapshots: Snapshots,
    client: &'a Client,
    repository: &'a str,
    progress: &'a (dyn Fn(Event) + Sync),
}

impl Job<'_> {
    fn event(&self, layer: &Layer, progress: Progress) {
        (self.progress)(Event {
            digest: layer.blob.clone(),
            progress,
        });
    }

    /// Makes sure the store has the layer's blob and snapshot, fetching what is missing.
    fn fetch_layer(&self, layer: &Layer, cancel: &AtomicBool) -> Result<(), ErrorKind> {
        let (blobs, snapshots) = (&self.blobs, &self.snapshots);
        let have_blob = blobs.contains(&layer.blob);
        if have_blob && snapshots.contains(&layer.chain) {
            self.event(layer, Progress::Exists);
            return Ok(());
        }
        if have_blob {
            self.event(layer, Progress::Extracting);
            snapshots.ensure(&layer.chain, &layer.diff_id, || {
                blobs.open_blob(&layer.blob)
            })?;
            self.event(layer, Progress::Done);
            return Ok(());
        }
        let mut downloaded = false;
        snapshots.ensure_verified(
            &layer.chain,
            &layer.diff_id,
            || {
                downloaded = true;
                self.download(layer, cancel)
            },
            Download::finish,
        )?;
        if !downloaded {
            // Someone else unpacked it meanwhile (another pull, or another image with the
            // same layer compressed differently); the blob may still be missing.
            if blobs.contains(&layer.blob) {
                self.event(layer, Progress::Exists);
                return Ok(());
            }
            self.download(layer, cancel)?.finish()?;
        }
        self.event(layer, Progress::Done);
        Ok(())
    }

    fn download<'b>(
        &'b self,
        layer: &'b Layer,
        cancel: &'b AtomicBool,
    ) -> Result<Download<'b>, ErrorKind> {
        let BlobStream { reader, length } = self.client.get_blob(self.repository, &layer.blob)?;
        check_length(&layer.blob, length, layer.size)?;
        let blob = self.blobs.writer(&layer.blob, Some(layer.size))?;
        let progress = Box::new(move |p| self.event(layer, p));
        Download::start(reader, blob, layer.size, progress, cancel).map_err(|e| {
            ErrorKind::Content {
                what: "blob",
                digest: layer.blob.clone(),
                reason: format!("starting the download thread: {e}"),
            }
        })
    }
}
