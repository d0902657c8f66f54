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
//! Two pulls sharing a layer (threads or processes) serialise on the snapshot's lock: the
//! first downloads and unpacks, the second waits, then finds snapshot and blob in place.
//! (Layers shared at different heights have different chain ids, so they are fetched by
//! both: the snapshots differ anyway.)

use std::sync::atomic::AtomicBool;

use image::digest::Digest;
use image::images::ImageStore;
use image::manifest::{self, Parsed, Platform};
use image::meta::{chain_ids, ImageRow, NewImage};
use image::reference::Reference;
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
    store
        .blobs
        .ingest(&digest, Some(bytes.len() as u64), bytes.as_slice())?;
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
    let job = Job {
        store,
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

/// The config blob, from the store or downloaded (verified as it is stored).
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
    if !store.blobs.contains(config) {
        let stream = client.get_blob(repository, config)?;
        check_length(config, stream.length, size)?;
        store.blobs.ingest(config, Some(size), stream.reader)?;
    }
    Ok(store.blobs.read(config)?)
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
    store: &'a ImageStore,
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
        let (blobs, snapshots) = (&self.store.blobs, &self.store.snapshots);
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
        let blob = self.store.blobs.writer(&layer.blob, Some(layer.size))?;
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
