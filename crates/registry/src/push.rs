//! Push: every layer and the config, several at a time, each skipped when the repository
//! has it (HEAD), else mounted from another repository of the same registry that this
//! image is also tagged in (the registry most likely has the blobs there), else uploaded;
//! then the manifest, byte for byte as stored, so its digest is the image's digest there.

use image::digest::Digest;
use image::images::ImageStore;
use image::manifest::{self, Parsed, OCI_MANIFEST};
use image::meta::ImageRow;
use image::reference::Reference;

use crate::auth::repository_scope;
use crate::client::{Client, Mount};
use crate::error::{Error, ErrorKind};
use crate::{for_each_parallel, Event, Options, Progress};

/// Blobs sent at the same time, as Docker's default `max-concurrent-uploads` (5) minus some:
/// uploads are bound by the registry's disk, not our CPU.
const UPLOADS: usize = 3;

/// Pushes the local image `local` (a name or id) as `destination`; returns the manifest
/// digest the registry now knows it by.
pub fn push(
    store: &ImageStore,
    local: &str,
    destination: &Reference,
    options: &Options,
    progress: &(dyn Fn(Event) + Sync),
) -> Result<Digest, Error> {
    push_image(store, local, destination, options, progress)
        .map_err(|kind| Error::new(format!("push {destination}"), kind))
}

fn push_image(
    store: &ImageStore,
    local: &str,
    destination: &Reference,
    options: &Options,
    progress: &(dyn Fn(Event) + Sync),
) -> Result<Digest, ErrorKind> {
    let image = store.meta.resolve(local)?;
    let bytes = store.blobs.read(&image.manifest)?;
    let manifest = match manifest::parse(&bytes, None)? {
        Parsed::Manifest(m) => m,
        Parsed::Index(_) => {
            return Err(ErrorKind::Unsupported(format!(
                "image {}: pushing a multi-platform index is not supported",
                image.id
            )))
        }
    };
    let media_type = manifest
        .media_type()
        .as_ref()
        .map_or_else(|| OCI_MANIFEST.to_string(), |m| m.to_string());
    let repository = &destination.repository;
    let sources = mount_sources(&image, destination);
    let mut scopes = vec![repository_scope(repository, true)];
    scopes.extend(sources.iter().map(|s| repository_scope(s, false)));
    let client = Client::connect(&destination.registry, options)?.with_scopes(scopes);

    let mut blobs = Vec::new();
    for descriptor in manifest.layers().iter().chain([manifest.config()]) {
        blobs.push((Digest::try_from(descriptor.digest())?, descriptor.size()));
    }
    let config = Digest::try_from(manifest.config().digest())?;
    // Docker shows layers only: the config is small and not something users recognise.
    for (digest, _) in blobs.iter().filter(|(d, _)| *d != config) {
        progress(Event {
            digest: digest.clone(),
            progress: Progress::Waiting,
        });
    }
    let job = Job {
        store,
        client: &client,
        repository,
        from: sources.first().map(String::as_str),
        config: &config,
        progress,
    };
    for_each_parallel(&blobs, UPLOADS, |(digest, size), _| {
        job.push_blob(digest, *size)
    })?;
    client.put_manifest(repository, &destination.manifest_ref(), &media_type, &bytes)?;
    Ok(image.manifest)
}

/// Other repositories of the destination registry that this image is tagged in.
fn mount_sources(image: &ImageRow, destination: &Reference) -> Vec<String> {
    let mut sources: Vec<String> = image
        .tags
        .iter()
        .filter(|t| t.registry == destination.registry && t.repository != destination.repository)
        .map(|t| t.repository.clone())
        .collect();
    sources.dedup();
    sources
}

struct Job<'a> {
    store: &'a ImageStore,
    client: &'a Client,
    repository: &'a str,
    /// The repository to try a mount from. Only one is tried: a refused mount opens an
    /// upload session, which is then used for the upload.
    from: Option<&'a str>,
    /// Pushed without progress events.
    config: &'a Digest,
    progress: &'a (dyn Fn(Event) + Sync),
}

impl Job<'_> {
    fn event(&self, digest: &Digest, progress: Progress) {
        if digest == self.config {
            return;
        }
        (self.progress)(Event {
            digest: digest.clone(),
            progress,
        });
    }

    fn push_blob(&self, digest: &Digest, size: u64) -> Result<(), ErrorKind> {
        if self.client.blob_exists(self.repository, digest)? {
            self.event(digest, Progress::Exists);
            return Ok(());
        }
        let mut session = None;
        if let Some(from) = self.from {
            match self.client.mount_blob(self.repository, digest, from)? {
                Mount::Mounted => {
                    self.event(
                        digest,
                        Progress::Mounted {
                            from: from.to_string(),
                        },
                    );
                    self.event(digest, Progress::Done);
                    return Ok(());
                }
                Mount::Upload(url) => session = Some(url),
            }
        }
        let session = match session {
            Some(url) => url,
            None => self.client.start_upload(self.repository)?,
        };
        let content = self.store.blobs.open_blob(digest)?;
        self.event(
            digest,
            Progress::Uploading {
                done: 0,
                total: size,
            },
        );
        self.client
            .upload_blob(session, digest, content, &mut |done| {
                self.event(digest, Progress::Uploading { done, total: size });
            })?;
        self.event(digest, Progress::Done);
        Ok(())
    }
}
