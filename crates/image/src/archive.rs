//! `berth load` and `berth save`: images moved as one tar stream, in the two formats the
//! peers write.
//!
//! - docker-archive, as `docker save` and `podman save` write it: `manifest.json` lists each
//!   image's config and layer files by path (`<id>/layer.tar`, `<hex>.tar`, or, since Docker
//!   25, `blobs/sha256/<hex>`), with its `RepoTags`. Layer files may be symlinks to others.
//! - oci-archive: an OCI image layout (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`) in a
//!   tar, tags in the descriptors' `org.opencontainers.image.ref.name` /
//!   `io.containerd.image.name` annotations.
//!
//! Loading never writes a path taken from the archive to the file system: the tar is read
//! as a stream, and every file that may be a blob goes straight into the blob store (files
//! named `blobs/<alg>/<hex>` are verified against that name as they stream; others are
//! hashed into an unnamed temporary file in the store's ingest directory first, since the
//! store wants the digest up front). Only then, with `manifest.json` or `index.json` known,
//! are the images put together and checked: layer counts against the config's diff_ids,
//! docker-archive layers against their diff_ids, OCI descriptors against blob sizes.
//!
//! `save` writes the layout newer Docker writes: an OCI layout plus `manifest.json` and
//! `repositories`, which `docker load` and `podman load` both read; or a plain OCI layout.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde::{Deserialize, Serialize};
use tar::{EntryType, Header};

use crate::digest::{Digest, DigestReader};
use crate::manifest::{self, Compression, Parsed};
use crate::reference::Reference;
use crate::store::{BlobStore, StoreError};

/// The most JSON (manifest.json, index.json, manifests, configs) read into memory.
const MAX_JSON: u64 = 16 << 20;
/// Symlinks followed to resolve one path in an archive.
const MAX_LINK_HOPS: usize = 16;
/// Indexes nested in indexes followed before giving up.
const MAX_INDEX_DEPTH: usize = 4;

const MANIFEST_JSON: &str = "manifest.json";
const INDEX_JSON: &str = "index.json";
const OCI_LAYOUT: &str = "oci-layout";
const REPOSITORIES: &str = "repositories";
const OCI_LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// The OCI annotation for an image's name in a layout: a tag (`latest`), or a full name as
/// podman writes it.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's (and Docker 25's) annotation for the full image name.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The tar stream itself, or its compression, is broken or cut short.
    #[error("reading archive {}: {source}", position(.after))]
    Read { after: String, source: io::Error },
    #[error("archive entry {path:?}: {reason}")]
    Entry { path: String, reason: String },
    #[error("archive entry {path:?}: {source}")]
    Blob { path: String, source: StoreError },
    #[error("{file}: {path:?} points outside the archive")]
    Outside { file: String, path: String },
    #[error("{file}: {path:?} is not in the archive")]
    Missing { file: String, path: String },
    #[error("malformed {file}: {reason}")]
    Malformed { file: String, reason: String },
    #[error("{file}: {source}")]
    Manifest {
        file: String,
        source: manifest::Error,
    },
    #[error("layer {path:?}: content has diff_id {actual}, the image config says {expected}")]
    DiffId {
        path: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("image config {config}: {layers} layers, but {diff_ids} diff_ids in rootfs")]
    LayerCount {
        config: String,
        layers: usize,
        diff_ids: usize,
    },
    #[error("blob {digest} ({what}) is not in the archive")]
    MissingBlob { digest: String, what: String },
    #[error("blob {digest} ({what}): descriptor says {expected} bytes, blob has {actual}")]
    SizeMismatch {
        digest: Digest,
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("{0}")]
    Unsupported(String),
    #[error("not an image archive: no manifest.json (docker-archive) or index.json (oci-archive)")]
    NotAnArchive,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing archive: {0}")]
    Write(io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

fn position(after: &str) -> String {
    if after.is_empty() {
        "before the first entry".to_string()
    } else {
        format!("after entry {after:?}")
    }
}

/// One image found in an archive, its blobs now in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveImage {
    /// The image manifest (OCI or Docker schema 2). For a docker-archive without one, a
    /// manifest berth wrote; for an index in an oci-archive, the host platform's manifest.
    pub manifest: Digest,
    pub config: Digest,
    /// Layer blobs as stored (possibly compressed), bottom first.
    pub layers: Vec<Digest>,
    pub tags: Vec<Reference>,
}

/// A file of the archive, now a blob in the store.
#[derive(Debug, Clone)]
struct Stored {
    digest: Digest,
    size: u64,
}

enum Link {
    /// Relative to the link's directory.
    Symbolic(String),
    /// Relative to the archive root.
    Hard(String),
}

/// What reading the tar stream left: blobs by archive path, links, and the index files.
#[derive(Default)]
struct Contents {
    files: HashMap<String, Stored>,
    links: HashMap<String, Link>,
    manifest_json: Option<Vec<u8>>,
    index_json: Option<Vec<u8>>,
}

/// Loads every image in a docker-archive or oci-archive (plain, gzip or zstd) into `store`.
///
/// On error no partial blob remains (the ingest directory is left as found), but blobs
/// already stored stay until garbage collection.
pub fn load(archive: impl Read, store: &BlobStore) -> Result<Vec<ArchiveImage>> {
    let contents = read_entries(archive, store)?;
    let images = if let Some(json) = &contents.manifest_json {
        docker_images(json, &contents, store)?
    } else if let Some(json) = &contents.index_json {
        oci_images(json, store)?
    } else {
        return Err(Error::NotAnArchive);
    };
    Ok(merge_same_manifest(images))
}

fn read_entries(archive: impl Read, store: &BlobStore) -> Result<Contents> {
    let stream = decompress(archive).map_err(|source| Error::Read {
        after: String::new(),
        source,
    })?;
    let mut tar = tar::Archive::new(stream);
    let mut contents = Contents::default();
    let mut last = String::new();
    let entries = tar.entries().map_err(|source| Error::Read {
        after: String::new(),
        source,
    })?;
    for entry in entries {
        let mut entry = entry.map_err(|source| Error::Read {
            after: last.clone(),
            source,
        })?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        contents.add(&mut entry, &raw, store)?;
        last = raw;
    }
    Ok(contents)
}

/// Picks the decompressor from the first bytes of the stream.
fn decompress<'a, R: Read + 'a>(mut reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let head = read_head(&mut reader)?;
    let whole = io::Cursor::new(head.clone()).chain(reader);
    Ok(match Compression::detect(&head) {
        // Multi-member, like Go's gzip reader that the peers use.
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(whole)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(whole)?),
        // tar reads 512-byte headers one at a time; the decoders above buffer for it.
        Compression::None => Box::new(io::BufReader::with_capacity(COPY_BUFFER, whole)),
    })
}

/// Up to four bytes, enough for any magic number; fewer only at the end of the stream.
fn read_head(reader: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut head = [0u8; 4];
    let mut len = 0;
    while len < head.len() {
        match reader.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(head[..len].to_vec())
}

impl Contents {
    fn add<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        raw: &str,
        store: &BlobStore,
    ) -> Result<()> {
        let path = match clean_entry_path(raw) {
            Ok(Some(path)) => path,
            Ok(None) => return Ok(()),
            Err(reason) => {
                return Err(Error::Entry {
                    path: raw.to_string(),
                    reason: reason.to_string(),
                })
            }
        };
        match entry.header().entry_type() {
            EntryType::Regular | EntryType::Continuous => self.add_file(entry, path, store),
            kind @ (EntryType::Symlink | EntryType::Link) => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                let link = if kind == EntryType::Symlink {
                    Link::Symbolic(target)
                } else {
                    Link::Hard(target)
                };
                self.files.remove(&path);
                self.links.insert(path, link);
                Ok(())
            }
            // Directories, PAX headers, devices: nothing an image is made of.
            _ => Ok(()),
        }
    }

    fn add_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        path: String,
        store: &BlobStore,
    ) -> Result<()> {
        match path.as_str() {
            MANIFEST_JSON => self.manifest_json = Some(read_small_entry(entry, &path)?),
            INDEX_JSON => self.index_json = Some(read_small_entry(entry, &path)?),
            // Nothing in them that manifest.json or index.json does not say better.
            OCI_LAYOUT | REPOSITORIES => {}
            // Docker's v1 metadata beside each `<id>/layer.tar`; configs replaced it.
            p if p.ends_with("/json") || p.ends_with("/VERSION") => {}
            _ => {
                let stored = spool(entry, &path, store)?;
                self.links.remove(&path);
                self.files.insert(path, stored);
            }
        }
        Ok(())
    }

    /// The blob a path in `file` (manifest.json) names, following links inside the archive.
    fn resolve(&self, file: &str, raw: &str) -> Result<&Stored> {
        let outside = || Error::Outside {
            file: file.to_string(),
            path: raw.to_string(),
        };
        let mut path = clean_relative(raw, "").ok_or_else(outside)?;
        for _ in 0..MAX_LINK_HOPS {
            if let Some(stored) = self.files.get(&path) {
                return Ok(stored);
            }
            path = match self.links.get(&path) {
                Some(Link::Symbolic(target)) => {
                    let dir = path.rsplit_once('/').map_or("", |(dir, _)| dir);
                    clean_relative(target, dir).ok_or_else(outside)?
                }
                Some(Link::Hard(target)) => clean_relative(target, "").ok_or_else(outside)?,
                None => break,
            };
        }
        Err(Error::Missing {
            file: file.to_string(),
            path: raw.to_string(),
        })
    }
}

/// An entry's name relative to the archive root: `None` for the root itself; an error for
/// absolute names and `..`, which no image archive has and which would only serve to
/// confuse tools that do extract archives.
fn clean_entry_path(raw: &str) -> std::result::Result<Option<String>, &'static str> {
    if raw.starts_with('/') {
        return Err("absolute path in archive");
    }
    if raw.split('/').any(|c| c == "..") {
        return Err("'..' in path");
    }
    let path = clean_relative(raw, "").expect("no '..' to leave the root");
    Ok((!path.is_empty()).then_some(path))
}

/// Resolves `path` against directory `dir` (both relative to the archive root) without
/// touching any file system: `None` if it is absolute or climbs out of the root.
fn clean_relative(path: &str, dir: &str) -> Option<String> {
    if path.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|c| !c.is_empty()).collect();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

fn read_small_entry<R: Read>(entry: &mut tar::Entry<R>, path: &str) -> Result<Vec<u8>> {
    if entry.size() > MAX_JSON {
        return Err(too_large(path, entry.size()));
    }
    let mut bytes = Vec::new();
    entry
        .read_to_end(&mut bytes)
        .map_err(|source| Error::Read {
            after: path.to_string(),
            source,
        })?;
    if (bytes.len() as u64) < entry.size() {
        return Err(truncated(path, bytes.len() as u64, entry.size()));
    }
    Ok(bytes)
}

fn too_large(path: &str, size: u64) -> Error {
    Error::Entry {
        path: path.to_string(),
        reason: format!("{size} bytes is too large for a JSON document (limit {MAX_JSON})"),
    }
}

fn truncated(path: &str, got: u64, size: u64) -> Error {
    Error::Entry {
        path: path.to_string(),
        reason: format!("archive ends after {got} of {size} bytes"),
    }
}

/// Streams one file of the archive into the store and returns its digest.
fn spool<R: Read>(entry: &mut tar::Entry<R>, path: &str, store: &BlobStore) -> Result<Stored> {
    let size = entry.size();
    let blob_err = |source| Error::Blob {
        path: path.to_string(),
        source,
    };
    if let Some(digest) = blob_name(path) {
        // The name is a claim: ingest checks the content against it.
        store
            .ingest(&digest, Some(size), &mut *entry)
            .map_err(blob_err)?;
        return Ok(Stored { digest, size });
    }
    let spool_err = |e: io::Error| Error::Entry {
        path: path.to_string(),
        reason: format!("spooling into {}: {e}", store.ingest_dir().display()),
    };
    let mut file = unnamed_file(store.ingest_dir()).map_err(spool_err)?;
    let mut reader = DigestReader::new(&mut *entry);
    let copied = {
        let mut writer = BufWriter::with_capacity(COPY_BUFFER, &file);
        let copied = copy(&mut reader, &mut writer).map_err(|e| match e {
            Copy::Read(source) => Error::Read {
                after: path.to_string(),
                source,
            },
            Copy::Write(e) => spool_err(e),
        })?;
        writer.flush().map_err(spool_err)?;
        copied
    };
    if copied < size {
        return Err(truncated(path, copied, size));
    }
    let digest = reader.digest();
    file.rewind().map_err(spool_err)?;
    store.ingest(&digest, Some(size), file).map_err(blob_err)?;
    Ok(Stored { digest, size })
}

const COPY_BUFFER: usize = 128 * 1024;

/// Which side of a copy failed: the archive or the temporary file.
enum Copy {
    Read(io::Error),
    Write(io::Error),
}

fn copy(reader: &mut impl Read, writer: &mut impl Write) -> std::result::Result<u64, Copy> {
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut copied = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(copied),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Copy::Read(e)),
        };
        writer.write_all(&buf[..n]).map_err(Copy::Write)?;
        copied += n as u64;
    }
}

/// The digest an OCI layout path `blobs/<alg>/<hex>` claims, if it is one.
fn blob_name(path: &str) -> Option<Digest> {
    let mut parts = path.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("blobs"), Some(algorithm), Some(hex), None) => {
            format!("{algorithm}:{hex}").parse().ok()
        }
        _ => None,
    }
}

/// A temporary file with no name, so nothing is left behind whatever happens to this
/// process: O_TMPFILE where the file system has it, else a name removed right away.
fn unnamed_file(dir: &Path) -> io::Result<File> {
    let tmpfile = OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
        .open(dir);
    match tmpfile {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR)) => {
            named_then_removed(dir)
        }
        other => other,
    }
}

fn named_then_removed(dir: &Path) -> io::Result<File> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    loop {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("load-{}.{seq}", std::process::id()));
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(file) => {
                fs::remove_file(&path)?;
                return Ok(file);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// One element of Docker's manifest.json.
#[derive(Debug, Serialize, Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// The part of an image config that ties it to its layers.
#[derive(Deserialize)]
struct ConfigRootfs {
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Option<Vec<Digest>>,
}

fn docker_images(json: &[u8], contents: &Contents, store: &BlobStore) -> Result<Vec<ArchiveImage>> {
    let entries: Vec<DockerEntry> = serde_json::from_slice(json).map_err(|e| Error::Malformed {
        file: MANIFEST_JSON.to_string(),
        reason: e.to_string(),
    })?;
    let known = match &contents.index_json {
        Some(index) => manifests_by_content(index, store)?,
        None => HashMap::new(),
    };
    entries
        .iter()
        .map(|entry| docker_image(entry, contents, store, &known))
        .collect()
}

/// (config, layers) of an image, with their sizes: what a manifest says, and all it says
/// that matters for matching one to a manifest.json entry.
type ImageContent = (Digest, u64, Vec<(Digest, u64)>);

fn docker_image(
    entry: &DockerEntry,
    contents: &Contents,
    store: &BlobStore,
    known: &HashMap<ImageContent, Digest>,
) -> Result<ArchiveImage> {
    let config = contents.resolve(MANIFEST_JSON, &entry.config)?;
    let diff_ids = read_diff_ids(store, config, &entry.config)?;
    let layers = entry
        .layers
        .iter()
        .map(|path| contents.resolve(MANIFEST_JSON, path))
        .collect::<Result<Vec<_>>>()?;
    if layers.len() != diff_ids.len() {
        return Err(Error::LayerCount {
            config: entry.config.clone(),
            layers: layers.len(),
            diff_ids: diff_ids.len(),
        });
    }
    let mut compressions = Vec::new();
    for ((path, layer), diff_id) in entry.layers.iter().zip(&layers).zip(&diff_ids) {
        compressions.push(check_diff_id(store, layer, diff_id, path)?);
    }
    let tags = entry
        .repo_tags
        .iter()
        .flatten()
        .map(|tag| {
            Reference::parse(tag).map_err(|e| Error::Malformed {
                file: MANIFEST_JSON.to_string(),
                reason: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let content: ImageContent = (
        config.digest.clone(),
        config.size,
        layers.iter().map(|l| (l.digest.clone(), l.size)).collect(),
    );
    let manifest = match known.get(&content) {
        // Docker 25 and `berth save` ship the image's own manifest: keep its digest.
        Some(digest) => digest.clone(),
        None => store.ingest_bytes(&oci_manifest_json(config, &layers, &compressions)?)?,
    };
    Ok(ArchiveImage {
        manifest,
        config: config.digest.clone(),
        layers: layers.iter().map(|l| l.digest.clone()).collect(),
        tags,
    })
}

fn read_diff_ids(store: &BlobStore, config: &Stored, path: &str) -> Result<Vec<Digest>> {
    let bytes = read_json_blob(store, config, path)?;
    let parsed: ConfigRootfs = serde_json::from_slice(&bytes).map_err(|e| Error::Malformed {
        file: format!("image config {path}"),
        reason: e.to_string(),
    })?;
    Ok(parsed.rootfs.diff_ids.unwrap_or_default())
}

fn read_json_blob(store: &BlobStore, blob: &Stored, path: &str) -> Result<Vec<u8>> {
    if blob.size > MAX_JSON {
        return Err(too_large(path, blob.size));
    }
    Ok(store.read(&blob.digest)?)
}

/// Checks a layer against its diff_id (the digest of the uncompressed tar) and returns how
/// it is compressed. An uncompressed layer's blob digest is its diff_id; a compressed one is
/// decompressed and hashed.
fn check_diff_id(
    store: &BlobStore,
    layer: &Stored,
    expected: &Digest,
    path: &str,
) -> Result<Compression> {
    let mut blob = store.open_blob(&layer.digest)?;
    let layer_err = |e: io::Error| Error::Entry {
        path: path.to_string(),
        reason: format!("reading layer: {e}"),
    };
    let compression = Compression::detect(&read_head(&mut blob).map_err(layer_err)?);
    let actual =
        if compression == Compression::None && layer.digest.algorithm() == expected.algorithm() {
            layer.digest.clone()
        } else {
            blob.rewind().map_err(layer_err)?;
            let tar = decompress(blob).map_err(layer_err)?;
            let mut reader = DigestReader::with_algorithm(tar, expected.algorithm());
            io::copy(&mut reader, &mut io::sink()).map_err(layer_err)?;
            reader.digest()
        };
    if &actual != expected {
        return Err(Error::DiffId {
            path: path.to_string(),
            expected: expected.clone(),
            actual,
        });
    }
    Ok(compression)
}

/// A descriptor as berth writes it: fields in the order the peers write them, annotations
/// sorted, so the same image always gives the same bytes.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DescriptorOut {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<&'static str, String>,
}

impl DescriptorOut {
    fn new(media_type: &str, digest: &Digest, size: u64) -> DescriptorOut {
        DescriptorOut {
            media_type: media_type.to_string(),
            digest: digest.to_string(),
            size,
            annotations: BTreeMap::new(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ManifestOut {
    schema_version: u32,
    media_type: &'static str,
    config: DescriptorOut,
    layers: Vec<DescriptorOut>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexOut {
    schema_version: u32,
    media_type: &'static str,
    manifests: Vec<DescriptorOut>,
}

/// An OCI manifest for a docker-archive image, which has none of its own.
fn oci_manifest_json(
    config: &Stored,
    layers: &[&Stored],
    compressions: &[Compression],
) -> Result<Vec<u8>> {
    let manifest = ManifestOut {
        schema_version: 2,
        media_type: manifest::OCI_MANIFEST,
        config: DescriptorOut::new(manifest::OCI_CONFIG, &config.digest, config.size),
        layers: layers
            .iter()
            .zip(compressions)
            .map(|(l, c)| DescriptorOut::new(c.oci_layer_media_type(), &l.digest, l.size))
            .collect(),
    };
    Ok(serde_json::to_vec(&manifest).expect("plain structs serialize"))
}

/// The image manifests listed in a hybrid archive's index.json, by what they contain, so a
/// manifest.json entry can be matched to the manifest the image already has.
fn manifests_by_content(index: &[u8], store: &BlobStore) -> Result<HashMap<ImageContent, Digest>> {
    let index = parse_index(index)?;
    let mut known = HashMap::new();
    for descriptor in index.manifests() {
        let Ok(digest) = Digest::try_from(descriptor.digest()) else {
            continue;
        };
        let blob = Stored {
            size: descriptor.size(),
            digest,
        };
        if store.size(&blob.digest).ok() != Some(blob.size) || blob.size > MAX_JSON {
            continue;
        }
        let Ok(bytes) = store.read(&blob.digest) else {
            continue;
        };
        let Ok(Parsed::Manifest(m)) =
            manifest::parse(&bytes, Some(descriptor.media_type().as_ref()))
        else {
            continue;
        };
        if let Some(content) = content_of(&m) {
            known.insert(content, blob.digest);
        }
    }
    Ok(known)
}

fn content_of(m: &ImageManifest) -> Option<ImageContent> {
    let config = Digest::try_from(m.config().digest()).ok()?;
    let layers = m
        .layers()
        .iter()
        .map(|l| Some((Digest::try_from(l.digest()).ok()?, l.size())))
        .collect::<Option<Vec<_>>>()?;
    Some((config, m.config().size(), layers))
}

fn parse_index(json: &[u8]) -> Result<ImageIndex> {
    let parsed =
        manifest::parse(json, Some(manifest::OCI_INDEX)).map_err(|source| Error::Manifest {
            file: INDEX_JSON.to_string(),
            source,
        })?;
    match parsed {
        Parsed::Index(index) => Ok(index),
        Parsed::Manifest(_) => unreachable!("parsed as the index media type"),
    }
}

fn oci_images(json: &[u8], store: &BlobStore) -> Result<Vec<ArchiveImage>> {
    let index = parse_index(json)?;
    let mut images = Vec::new();
    for descriptor in index.manifests() {
        let tags = tags_of(descriptor)?;
        let (manifest, image) = image_of(store, descriptor, 0)?;
        let config = verified(store, image.config(), "config")?;
        let layers = image
            .layers()
            .iter()
            .map(|l| verified(store, l, "layer"))
            .collect::<Result<Vec<_>>>()?;
        check_layer_count(store, &image, &config, layers.len())?;
        images.push(ArchiveImage {
            manifest,
            config,
            layers,
            tags,
        });
    }
    Ok(images)
}

/// The image manifest a descriptor leads to, choosing the host platform in an index.
fn image_of(
    store: &BlobStore,
    descriptor: &Descriptor,
    depth: usize,
) -> Result<(Digest, ImageManifest)> {
    let digest = verified(store, descriptor, "manifest")?;
    let bytes = read_json_blob(
        store,
        &Stored {
            digest: digest.clone(),
            size: descriptor.size(),
        },
        &format!("blob {digest}"),
    )?;
    let parsed =
        manifest::parse(&bytes, Some(descriptor.media_type().as_ref())).map_err(|source| {
            Error::Manifest {
                file: format!("blob {digest}"),
                source,
            }
        })?;
    match parsed {
        Parsed::Manifest(m) => Ok((digest, m)),
        Parsed::Index(_) if depth >= MAX_INDEX_DEPTH => Err(Error::Unsupported(format!(
            "blob {digest}: indexes nested more than {MAX_INDEX_DEPTH} deep"
        ))),
        Parsed::Index(index) => {
            let child = manifest::select(&index, &manifest::host_platform()).map_err(|source| {
                Error::Manifest {
                    file: format!("index {digest}"),
                    source,
                }
            })?;
            image_of(store, &child, depth + 1)
        }
    }
}

/// The blob a descriptor names, checked to be in the store with the size it claims (the
/// digest was checked when it was stored).
fn verified(store: &BlobStore, descriptor: &Descriptor, what: &str) -> Result<Digest> {
    let digest = Digest::try_from(descriptor.digest()).map_err(|e| {
        Error::Unsupported(format!("{what} {}: {}", descriptor.digest(), e.reason()))
    })?;
    let actual = match store.size(&digest) {
        Ok(size) => size,
        Err(StoreError::NotFound(_)) => {
            return Err(Error::MissingBlob {
                digest: digest.to_string(),
                what: what.to_string(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    if actual != descriptor.size() {
        return Err(Error::SizeMismatch {
            digest,
            what: what.to_string(),
            expected: descriptor.size(),
            actual,
        });
    }
    Ok(digest)
}

fn check_layer_count(
    store: &BlobStore,
    image: &ImageManifest,
    config: &Digest,
    layers: usize,
) -> Result<()> {
    let media_type = image.config().media_type().as_ref();
    if media_type != manifest::OCI_CONFIG && media_type != manifest::DOCKER_CONFIG {
        return Err(Error::Unsupported(format!(
            "config {config}: {media_type:?} is not a container image config"
        )));
    }
    let stored = Stored {
        digest: config.clone(),
        size: image.config().size(),
    };
    let diff_ids = read_diff_ids(store, &stored, &config.to_string())?;
    if diff_ids.len() != layers {
        return Err(Error::LayerCount {
            config: config.to_string(),
            layers,
            diff_ids: diff_ids.len(),
        });
    }
    Ok(())
}

/// The image name in a descriptor's annotations. A bare tag (`latest`, as containerd and
/// skopeo write `ref.name`) names no repository, so it gives no tag.
fn tags_of(descriptor: &Descriptor) -> Result<Vec<Reference>> {
    let Some(annotations) = descriptor.annotations() else {
        return Ok(Vec::new());
    };
    let name = annotations.get(ANNOTATION_IMAGE_NAME).or_else(|| {
        annotations
            .get(ANNOTATION_REF_NAME)
            .filter(|n| n.contains('/') || n.contains(':'))
    });
    match name {
        Some(name) => Reference::parse(name)
            .map(|r| vec![r])
            .map_err(|e| Error::Malformed {
                file: INDEX_JSON.to_string(),
                reason: e.to_string(),
            }),
        None => Ok(Vec::new()),
    }
}

/// One image per manifest, with the tags of every entry that named it.
fn merge_same_manifest(images: Vec<ArchiveImage>) -> Vec<ArchiveImage> {
    let mut merged: Vec<ArchiveImage> = Vec::new();
    for image in images {
        match merged.iter_mut().find(|m| m.manifest == image.manifest) {
            Some(existing) => {
                for tag in image.tags {
                    if !existing.tags.contains(&tag) {
                        existing.tags.push(tag);
                    }
                }
            }
            None => merged.push(image),
        }
    }
    merged
}

/// What `save` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// docker-archive: OCI layout plus `manifest.json` and `repositories`, as Docker 25
    /// writes it; `docker load` and `podman load` read it.
    Docker,
    /// oci-archive: the OCI layout alone, names in `ref.name` as podman writes them.
    Oci,
}

impl FromStr for Format {
    type Err = Error;

    fn from_str(s: &str) -> Result<Format> {
        match s {
            "docker-archive" | "docker" => Ok(Format::Docker),
            "oci-archive" | "oci" => Ok(Format::Oci),
            other => Err(Error::Unsupported(format!(
                "unknown archive format {other:?} (use docker-archive or oci-archive)"
            ))),
        }
    }
}

/// One image to save, read from the store and checked before anything is written.
struct Planned {
    manifest: Stored,
    media_type: String,
    config: Stored,
    layers: Vec<Stored>,
    tags: Vec<Reference>,
}

impl Planned {
    fn blobs(&self) -> impl Iterator<Item = &Stored> {
        std::iter::once(&self.manifest)
            .chain(std::iter::once(&self.config))
            .chain(&self.layers)
    }

    /// Tags with a tag: `RepoTags` and `ref.name` cannot express a digest-only name.
    fn tagged(&self) -> impl Iterator<Item = (&Reference, &str)> {
        self.tags
            .iter()
            .filter_map(|r| r.tag.as_deref().map(|tag| (r, tag)))
    }
}

/// Writes `images` (manifest digest and the names to give it) from `store` to `out` as one
/// tar stream. Every blob appears once, however many images share it; headers carry no
/// time, owner or host detail, so the same images give the same bytes.
pub fn save(
    images: &[(Digest, Vec<Reference>)],
    store: &BlobStore,
    out: impl Write,
    format: Format,
) -> Result<()> {
    let planned = images
        .iter()
        .map(|(digest, tags)| plan(store, digest, tags))
        .collect::<Result<Vec<_>>>()?;
    let mut tar = tar::Builder::new(out);
    append_bytes(&mut tar, OCI_LAYOUT, OCI_LAYOUT_CONTENT)?;
    append_bytes(&mut tar, INDEX_JSON, &index_json(&planned, format))?;
    if format == Format::Docker {
        append_bytes(&mut tar, MANIFEST_JSON, &docker_manifest_json(&planned))?;
        if let Some(repositories) = repositories_json(&planned) {
            append_bytes(&mut tar, REPOSITORIES, &repositories)?;
        }
    }
    append_blobs(&mut tar, store, &planned)?;
    tar.into_inner()
        .and_then(|mut out| out.flush())
        .map_err(Error::Write)
}

fn plan(store: &BlobStore, digest: &Digest, tags: &[Reference]) -> Result<Planned> {
    let bytes = store.read(digest)?;
    let parsed = manifest::parse(&bytes, None).map_err(|source| Error::Manifest {
        file: format!("manifest {digest}"),
        source,
    })?;
    let Parsed::Manifest(m) = parsed else {
        return Err(Error::Unsupported(format!(
            "{digest} is an image index: save one of its platform manifests"
        )));
    };
    let config = verified(store, m.config(), "config")?;
    let layers = m
        .layers()
        .iter()
        .map(|l| {
            let digest = verified(store, l, "layer")?;
            Ok(Stored {
                digest,
                size: l.size(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let media_type = match m.media_type() {
        Some(t) => t.to_string(),
        None if m.config().media_type().as_ref() == manifest::DOCKER_CONFIG => {
            manifest::DOCKER_MANIFEST.to_string()
        }
        None => manifest::OCI_MANIFEST.to_string(),
    };
    Ok(Planned {
        manifest: Stored {
            digest: digest.clone(),
            size: bytes.len() as u64,
        },
        media_type,
        config: Stored {
            digest: config,
            size: m.config().size(),
        },
        layers,
        tags: tags.to_vec(),
    })
}

/// index.json: one descriptor per name (as Docker and podman write it), or one without a
/// name for an untagged image.
fn index_json(planned: &[Planned], format: Format) -> Vec<u8> {
    let mut manifests = Vec::new();
    for p in planned {
        let descriptor = || DescriptorOut::new(&p.media_type, &p.manifest.digest, p.manifest.size);
        let mut named = false;
        for (reference, tag) in p.tagged() {
            let full = format!("{}:{tag}", reference.repo_name());
            let mut d = descriptor();
            match format {
                Format::Docker => {
                    d.annotations.insert(ANNOTATION_IMAGE_NAME, full);
                    d.annotations.insert(ANNOTATION_REF_NAME, tag.to_string());
                }
                Format::Oci => {
                    d.annotations.insert(ANNOTATION_REF_NAME, full);
                }
            }
            manifests.push(d);
            named = true;
        }
        if !named {
            manifests.push(descriptor());
        }
    }
    let index = IndexOut {
        schema_version: 2,
        media_type: manifest::OCI_INDEX,
        manifests,
    };
    serde_json::to_vec(&index).expect("plain structs serialize")
}

fn blob_path(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm(), digest.hex())
}

fn docker_manifest_json(planned: &[Planned]) -> Vec<u8> {
    let entries: Vec<DockerEntry> = planned
        .iter()
        .map(|p| DockerEntry {
            config: blob_path(&p.config.digest),
            repo_tags: Some(
                p.tagged()
                    .map(|(r, tag)| format!("{}:{tag}", r.familiar_name()))
                    .collect(),
            ),
            layers: p.layers.iter().map(|l| blob_path(&l.digest)).collect(),
        })
        .collect();
    serde_json::to_vec(&entries).expect("plain structs serialize")
}

/// Docker's legacy `repositories`: `{"name": {"tag": "<id>"}}`. Nothing reads it while
/// manifest.json is there, but older tools look for it.
fn repositories_json(planned: &[Planned]) -> Option<Vec<u8>> {
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for p in planned {
        for (reference, tag) in p.tagged() {
            repositories
                .entry(reference.familiar_name())
                .or_default()
                .insert(tag.to_string(), p.config.digest.hex().to_string());
        }
    }
    (!repositories.is_empty())
        .then(|| serde_json::to_vec(&repositories).expect("plain maps serialize"))
}

fn header(path: &str, size: u64, kind: EntryType, mode: u32) -> Result<Header> {
    let mut header = Header::new_ustar();
    header.set_path(path).map_err(Error::Write)?;
    header.set_size(size);
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_cksum();
    Ok(header)
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, path: &str, bytes: &[u8]) -> Result<()> {
    let header = header(path, bytes.len() as u64, EntryType::Regular, 0o644)?;
    tar.append(&header, bytes).map_err(Error::Write)
}

fn append_blobs<W: Write>(
    tar: &mut tar::Builder<W>,
    store: &BlobStore,
    planned: &[Planned],
) -> Result<()> {
    let mut dirs = HashSet::new();
    let mut written = HashSet::new();
    for blob in planned.iter().flat_map(Planned::blobs) {
        if !written.insert(&blob.digest) {
            continue;
        }
        let algorithm = blob.digest.algorithm();
        if dirs.is_empty() {
            tar.append(
                &header("blobs/", 0, EntryType::Directory, 0o755)?,
                io::empty(),
            )
            .map_err(Error::Write)?;
        }
        if dirs.insert(algorithm) {
            let dir = format!("blobs/{algorithm}/");
            tar.append(&header(&dir, 0, EntryType::Directory, 0o755)?, io::empty())
                .map_err(Error::Write)?;
        }
        append_blob(tar, store, blob)?;
    }
    Ok(())
}

/// Copies one blob into the archive, checking it against its digest on the way: a blob
/// damaged on disk fails the save instead of producing an archive the peers refuse.
fn append_blob<W: Write>(
    tar: &mut tar::Builder<W>,
    store: &BlobStore,
    blob: &Stored,
) -> Result<()> {
    let file = store.open_blob(&blob.digest)?;
    let header = header(
        &blob_path(&blob.digest),
        blob.size,
        EntryType::Regular,
        0o644,
    )?;
    let mut reader = DigestReader::with_algorithm(file.take(blob.size), blob.digest.algorithm());
    tar.append(&header, &mut reader).map_err(Error::Write)?;
    if reader.byte_count() < blob.size {
        return Err(StoreError::TooSmall {
            digest: blob.digest.clone(),
            expected: blob.size,
            actual: reader.byte_count(),
        }
        .into());
    }
    let actual = reader.digest();
    if actual != blob.digest {
        return Err(StoreError::DigestMismatch {
            expected: blob.digest.clone(),
            actual,
        }
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::OnceLock;

    fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        (dir, store)
    }

    fn ingest_files(store: &BlobStore) -> Vec<PathBuf> {
        fs::read_dir(store.ingest_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    /// A tar entry for hand-made archives; names are written raw, so hostile ones are
    /// possible.
    enum Item<'a> {
        File(&'a str, Vec<u8>),
        Dir(&'a str),
        Symlink(&'a str, &'a str),
        Hardlink(&'a str, &'a str),
    }

    fn tar_of(items: &[Item]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for item in items {
            let (name, kind, data, link): (&str, EntryType, &[u8], Option<&str>) = match item {
                Item::File(name, data) => (name, EntryType::Regular, data, None),
                Item::Dir(name) => (name, EntryType::Directory, &[], None),
                Item::Symlink(name, target) => (name, EntryType::Symlink, &[], Some(target)),
                Item::Hardlink(name, target) => (name, EntryType::Link, &[], Some(target)),
            };
            let mut h = Header::new_ustar();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            if let Some(target) = link {
                h.set_link_name_literal(target).unwrap();
            }
            h.set_cksum();
            builder.append(&h, data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    /// A layer: a small busybox rootfs as an uncompressed tar.
    fn busybox_layer() -> &'static [u8] {
        static LAYER: OnceLock<Vec<u8>> = OnceLock::new();
        LAYER.get_or_init(|| {
            let mut b = tar::Builder::new(Vec::new());
            b.mode(tar::HeaderMode::Deterministic);
            b.append_path_with_name("/bin/busybox", "bin/busybox")
                .expect("busybox-static is installed");
            let mut h = Header::new_ustar();
            h.set_entry_type(EntryType::Symlink);
            h.set_size(0);
            h.set_mode(0o777);
            b.append_link(&mut h, "bin/sh", "busybox").unwrap();
            let mut h = Header::new_ustar();
            h.set_size(3);
            h.set_mode(0o644);
            b.append_data(&mut h, "etc/hi", &b"hi\n"[..]).unwrap();
            b.into_inner().unwrap()
        })
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn config_json(diff_ids: &[Digest]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "architecture": manifest::host_platform().architecture,
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap()
    }

    struct TestImage {
        manifest: Digest,
        config: Digest,
        layers: Vec<Digest>,
    }

    /// Stores an OCI image made of `layers` (each as stored: plain or compressed).
    fn store_image(store: &BlobStore, layers: &[(Vec<u8>, Digest)]) -> TestImage {
        let diff_ids: Vec<Digest> = layers.iter().map(|(_, d)| d.clone()).collect();
        let config_bytes = config_json(&diff_ids);
        let config = store.ingest_bytes(&config_bytes).unwrap();
        let mut descriptors = Vec::new();
        let mut digests = Vec::new();
        for (blob, _) in layers {
            let digest = store.ingest_bytes(blob).unwrap();
            let media_type = Compression::detect(blob).oci_layer_media_type();
            descriptors.push(DescriptorOut::new(media_type, &digest, blob.len() as u64));
            digests.push(digest);
        }
        let manifest = ManifestOut {
            schema_version: 2,
            media_type: manifest::OCI_MANIFEST,
            config: DescriptorOut::new(manifest::OCI_CONFIG, &config, config_bytes.len() as u64),
            layers: descriptors,
        };
        let manifest = store
            .ingest_bytes(&serde_json::to_vec(&manifest).unwrap())
            .unwrap();
        TestImage {
            manifest,
            config,
            layers: digests,
        }
    }

    fn busybox_image(store: &BlobStore, compressed: bool) -> TestImage {
        let layer = busybox_layer().to_vec();
        let diff_id = Digest::sha256_of(&layer);
        let blob = if compressed { gzip(&layer) } else { layer };
        store_image(store, &[(blob, diff_id)])
    }

    fn reference(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    fn save_to_vec(
        store: &BlobStore,
        images: &[(Digest, Vec<Reference>)],
        format: Format,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        save(images, store, &mut out, format).unwrap();
        out
    }

    fn entry_names(archive: &[u8]) -> Vec<String> {
        let mut tar = tar::Archive::new(archive);
        tar.entries()
            .unwrap()
            .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
            .collect()
    }

    fn entry_bytes(archive: &[u8], name: &str) -> Vec<u8> {
        let mut tar = tar::Archive::new(archive);
        for entry in tar.entries().unwrap() {
            let mut entry = entry.unwrap();
            if *entry.path_bytes() == *name.as_bytes() {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).unwrap();
                return bytes;
            }
        }
        panic!("{name} not in archive");
    }

    #[test]
    fn round_trip_oci_format() {
        let (_d1, source) = store();
        let image = busybox_image(&source, true);
        let tags = vec![reference("localhost/bb:1"), reference("busybox")];
        let archive = save_to_vec(
            &source,
            &[(image.manifest.clone(), tags.clone())],
            Format::Oci,
        );
        let names = entry_names(&archive);
        assert_eq!(&names[..2], ["oci-layout", "index.json"]);
        assert!(!names.contains(&MANIFEST_JSON.to_string()));
        let index: serde_json::Value =
            serde_json::from_slice(&entry_bytes(&archive, INDEX_JSON)).unwrap();
        let refs: Vec<&str> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["annotations"][ANNOTATION_REF_NAME].as_str().unwrap())
            .collect();
        assert_eq!(refs, ["localhost/bb:1", "docker.io/library/busybox:latest"]);

        let (_d2, dest) = store();
        let loaded = load(&archive[..], &dest).unwrap();
        assert_eq!(
            loaded,
            vec![ArchiveImage {
                manifest: image.manifest,
                config: image.config,
                layers: image.layers,
                tags,
            }]
        );
        assert!(ingest_files(&dest).is_empty());
    }

    #[test]
    fn round_trip_docker_format() {
        let (_d1, source) = store();
        let image = busybox_image(&source, false);
        let tags = vec![reference("localhost/bb:1")];
        let archive = save_to_vec(
            &source,
            &[(image.manifest.clone(), tags.clone())],
            Format::Docker,
        );
        let manifest_json: serde_json::Value =
            serde_json::from_slice(&entry_bytes(&archive, MANIFEST_JSON)).unwrap();
        assert_eq!(
            manifest_json,
            serde_json::json!([{
                "Config": format!("blobs/sha256/{}", image.config.hex()),
                "RepoTags": ["localhost/bb:1"],
                "Layers": [format!("blobs/sha256/{}", image.layers[0].hex())],
            }])
        );
        let repositories: serde_json::Value =
            serde_json::from_slice(&entry_bytes(&archive, REPOSITORIES)).unwrap();
        assert_eq!(
            repositories,
            serde_json::json!({"localhost/bb": {"1": image.config.hex()}})
        );

        let (_d2, dest) = store();
        let loaded = load(&archive[..], &dest).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].config, image.config);
        assert_eq!(loaded[0].layers, image.layers);
        assert_eq!(loaded[0].tags, tags);
        assert_eq!(
            loaded[0].manifest, image.manifest,
            "the manifest shipped in the layout is kept"
        );
    }

    #[test]
    fn save_is_deterministic_and_writes_shared_blobs_once() {
        let (_d, store) = store();
        let base = busybox_layer().to_vec();
        let top = tar_of(&[Item::File("etc/top", b"top\n".to_vec())]);
        let one = store_image(&store, &[(base.clone(), Digest::sha256_of(&base))]);
        let two = store_image(
            &store,
            &[
                (base.clone(), Digest::sha256_of(&base)),
                (gzip(&top), Digest::sha256_of(&top)),
            ],
        );
        let images = vec![
            (one.manifest.clone(), vec![reference("one")]),
            (
                two.manifest.clone(),
                vec![reference("two:a"), reference("two:b")],
            ),
        ];
        for format in [Format::Docker, Format::Oci] {
            let a = save_to_vec(&store, &images, format);
            let b = save_to_vec(&store, &images, format);
            assert_eq!(a, b, "{format:?}");
            let names = entry_names(&a);
            let layer = blob_path(&one.layers[0]);
            assert_eq!(
                names.iter().filter(|n| **n == layer).count(),
                1,
                "{names:?}"
            );
            let mut tar = tar::Archive::new(&a[..]);
            for entry in tar.entries().unwrap() {
                let entry = entry.unwrap();
                let h = entry.header();
                assert_eq!(h.mtime().unwrap(), 0);
                assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
                let mode = if h.entry_type().is_dir() {
                    0o755
                } else {
                    0o644
                };
                assert_eq!(h.mode().unwrap(), mode);
            }
            let (_d2, dest) = self::store();
            let loaded = load(&a[..], &dest).unwrap();
            assert_eq!(loaded.len(), 2);
            assert_eq!(loaded[1].layers, two.layers);
            assert_eq!(loaded[1].tags, vec![reference("two:a"), reference("two:b")]);
            assert_eq!(loaded[1].manifest, two.manifest);
        }
    }

    #[test]
    fn save_refuses_missing_blobs_before_writing() {
        let (_d, store) = store();
        let image = busybox_image(&store, false);
        store.remove(&image.layers[0]).unwrap();
        let mut out = Vec::new();
        let err = save(
            &[(image.manifest, vec![])],
            &store,
            &mut out,
            Format::Docker,
        )
        .unwrap_err();
        assert!(matches!(err, Error::MissingBlob { .. }), "{err}");
        assert!(out.is_empty());
    }

    /// A docker-archive laid out as docker 20.10 writes it, with a second image sharing the
    /// layer through a symlink as podman writes it.
    fn docker_20_archive(layer: &[u8], diff_id: &Digest) -> Vec<u8> {
        let config = config_json(std::slice::from_ref(diff_id));
        let config_name = format!("{}.json", Digest::sha256_of(&config).hex());
        let manifest = serde_json::json!([
            {"Config": config_name, "RepoTags": ["bb:latest", "localhost/bb:1"], "Layers": ["aaaa/layer.tar"]},
            {"Config": format!("./{config_name}"), "RepoTags": null, "Layers": ["bbbb/layer.tar"]},
        ]);
        tar_of(&[
            Item::File(&config_name, config.clone()),
            Item::Dir("aaaa/"),
            Item::File("aaaa/VERSION", b"1.0".to_vec()),
            Item::File("aaaa/json", b"{}".to_vec()),
            Item::File("aaaa/layer.tar", layer.to_vec()),
            Item::Dir("bbbb/"),
            Item::Symlink("bbbb/layer.tar", "../aaaa/layer.tar"),
            Item::File("repositories", br#"{"bb":{"latest":"aaaa"}}"#.to_vec()),
            Item::File(MANIFEST_JSON, serde_json::to_vec(&manifest).unwrap()),
        ])
    }

    #[test]
    fn loads_docker_20_layout() {
        let layer = busybox_layer();
        let diff_id = Digest::sha256_of(layer);
        let archive = docker_20_archive(layer, &diff_id);
        let (_d, store) = store();
        let loaded = load(&archive[..], &store).unwrap();
        assert_eq!(loaded.len(), 1, "both entries are one image: {loaded:?}");
        let image = &loaded[0];
        assert_eq!(
            image.tags,
            vec![reference("bb:latest"), reference("localhost/bb:1")]
        );
        assert_eq!(image.layers, vec![diff_id.clone()]);
        let bytes = store.read(&image.manifest).unwrap();
        let Parsed::Manifest(m) = manifest::parse(&bytes, Some(manifest::OCI_MANIFEST)).unwrap()
        else {
            panic!("not a manifest");
        };
        assert_eq!(m.config().media_type().as_ref(), manifest::OCI_CONFIG);
        assert_eq!(Digest::try_from(m.config().digest()).unwrap(), image.config);
        assert_eq!(m.layers()[0].media_type().as_ref(), manifest::OCI_LAYER);
        assert_eq!(m.layers()[0].size(), layer.len() as u64);
        // Only blobs: the v1 json, VERSION and repositories files are not stored.
        let mut want = vec![image.manifest.clone(), image.config.clone(), diff_id];
        want.sort();
        assert_eq!(store.list().unwrap(), want);
        assert!(ingest_files(&store).is_empty());
    }

    #[test]
    fn loads_compressed_layers_and_archives() {
        let layer = busybox_layer();
        let diff_id = Digest::sha256_of(layer);
        let gz_layer = gzip(layer);
        let archive = docker_20_archive(&gz_layer, &diff_id);
        let zstd_archive = zstd::encode_all(&archive[..], 3).unwrap();
        for whole in [archive.clone(), gzip(&archive), zstd_archive] {
            let (_d, store) = store();
            let loaded = load(&whole[..], &store).unwrap();
            assert_eq!(loaded[0].layers, vec![Digest::sha256_of(&gz_layer)]);
            let bytes = store.read(&loaded[0].manifest).unwrap();
            let Parsed::Manifest(m) = manifest::parse(&bytes, None).unwrap() else {
                panic!("not a manifest");
            };
            assert_eq!(
                m.layers()[0].media_type().as_ref(),
                manifest::OCI_LAYER_GZIP
            );
        }
    }

    /// Loads `archive` expecting an error containing `want`; nothing may be left in ingest.
    fn load_fails(archive: &[u8], want: &str) -> Error {
        let (_d, store) = store();
        let err = load(archive, &store).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(want), "{msg:?} should contain {want:?}");
        assert!(!msg.contains('\n'), "{msg:?}");
        assert_eq!(ingest_files(&store), Vec::<PathBuf>::new());
        err
    }

    fn docker_archive_with(layers_field: serde_json::Value, items: Vec<Item>) -> Vec<u8> {
        let layer = tar_of(&[Item::File("etc/x", b"x".to_vec())]);
        let config = config_json(&[Digest::sha256_of(&layer)]);
        let manifest =
            serde_json::json!([{"Config": "c.json", "RepoTags": ["x:1"], "Layers": layers_field}]);
        let mut all = vec![
            Item::File("c.json", config),
            Item::File("l/layer.tar", layer),
            Item::File(MANIFEST_JSON, serde_json::to_vec(&manifest).unwrap()),
        ];
        all.extend(items);
        tar_of(&all)
    }

    #[test]
    fn hostile_docker_archives() {
        // The well-formed base loads.
        let (_d, s) = store();
        load(
            &docker_archive_with(serde_json::json!(["l/layer.tar"]), vec![])[..],
            &s,
        )
        .unwrap();

        let err = load_fails(
            &docker_archive_with(serde_json::json!(["../../etc/passwd"]), vec![]),
            "manifest.json: \"../../etc/passwd\" points outside the archive",
        );
        assert!(matches!(err, Error::Outside { .. }));
        load_fails(
            &docker_archive_with(serde_json::json!(["/etc/passwd"]), vec![]),
            "\"/etc/passwd\" points outside the archive",
        );
        load_fails(
            &docker_archive_with(serde_json::json!(["l/../../x"]), vec![]),
            "points outside the archive",
        );
        load_fails(
            &docker_archive_with(serde_json::json!(["nope/layer.tar"]), vec![]),
            "manifest.json: \"nope/layer.tar\" is not in the archive",
        );
        load_fails(
            &docker_archive_with(
                serde_json::json!(["s/layer.tar"]),
                vec![Item::Symlink("s/layer.tar", "../../outside.tar")],
            ),
            "\"s/layer.tar\" points outside the archive",
        );
        load_fails(
            &docker_archive_with(
                serde_json::json!(["s/layer.tar"]),
                vec![
                    Item::Symlink("s/layer.tar", "../t/layer.tar"),
                    Item::Symlink("t/layer.tar", "../s/layer.tar"),
                ],
            ),
            "\"s/layer.tar\" is not in the archive",
        );
        load_fails(
            &docker_archive_with(serde_json::json!(["repositories"]), vec![]),
            "\"repositories\" is not in the archive",
        );
        load_fails(
            &docker_archive_with(serde_json::json!(["l/layer.tar", "l/layer.tar"]), vec![]),
            "image config c.json: 2 layers, but 1 diff_ids in rootfs",
        );
        load_fails(
            &docker_archive_with(
                serde_json::json!(["l/layer.tar"]),
                vec![Item::File("../evil", b"x".to_vec())],
            ),
            "archive entry \"../evil\": '..' in path",
        );
        load_fails(
            &docker_archive_with(
                serde_json::json!(["l/layer.tar"]),
                vec![Item::File("/etc/evil", b"x".to_vec())],
            ),
            "archive entry \"/etc/evil\": absolute path",
        );
        // A hard link resolves from the archive root.
        let (_d, s) = store();
        load(
            &docker_archive_with(
                serde_json::json!(["h/layer.tar"]),
                vec![Item::Hardlink("h/layer.tar", "l/layer.tar")],
            )[..],
            &s,
        )
        .unwrap();
    }

    #[test]
    fn layer_must_match_diff_id() {
        let layer = busybox_layer();
        let other = tar_of(&[Item::File("etc/other", b"other".to_vec())]);
        let claimed = Digest::sha256_of(&other);
        let err = load_fails(
            &docker_20_archive(layer, &claimed),
            &format!(
                "layer \"aaaa/layer.tar\": content has diff_id {}, the image config says {claimed}",
                Digest::sha256_of(layer)
            ),
        );
        assert!(matches!(err, Error::DiffId { .. }));
        // Compressed: checked after decompression.
        load_fails(
            &docker_20_archive(&gzip(layer), &claimed),
            "content has diff_id",
        );
    }

    #[test]
    fn malformed_json_names_the_file() {
        let layer = tar_of(&[Item::File("etc/x", b"x".to_vec())]);
        load_fails(
            &tar_of(&[Item::File(MANIFEST_JSON, b"[{\"Config\": 1".to_vec())]),
            "malformed manifest.json: ",
        );
        load_fails(
            &tar_of(&[
                Item::File("c.json", br#"{"rootfs": {"diff_ids": "nope"}}"#.to_vec()),
                Item::File("l.tar", layer),
                Item::File(
                    MANIFEST_JSON,
                    br#"[{"Config":"c.json","Layers":["l.tar"]}]"#.to_vec(),
                ),
            ]),
            "malformed image config c.json: invalid type",
        );
        load_fails(
            &tar_of(&[Item::File(INDEX_JSON, b"{\"manifests\": {}}".to_vec())]),
            "index.json: malformed image index",
        );
        load_fails(
            &tar_of(&[Item::File("other", b"x".to_vec())]),
            "not an image archive",
        );
        load_fails(b"", "not an image archive");
    }

    #[test]
    fn truncated_archives_are_errors() {
        let layer = busybox_layer();
        let archive = docker_20_archive(layer, &Digest::sha256_of(layer));
        // Cut in the middle of the layer (plain and compressed), and in a header.
        let layer_start = archive
            .windows(b"aaaa/layer.tar".len())
            .position(|w| w == b"aaaa/layer.tar")
            .unwrap();
        load_fails(
            &archive[..layer_start + 512 + 100_000],
            "archive entry \"aaaa/layer.tar\": archive ends after 100000 of",
        );
        load_fails(
            &archive[..layer_start + 100],
            "reading archive after entry \"aaaa/json\"",
        );
        let gz = gzip(&archive);
        load_fails(
            &gz[..gz.len() / 2],
            "reading archive after entry \"aaaa/layer.tar\"",
        );
        // OCI layout: the blob's own size check catches it.
        let (_d, s) = store();
        let image = busybox_image(&s, false);
        let oci = save_to_vec(&s, &[(image.manifest, vec![])], Format::Oci);
        let err = load_fails(&oci[..oci.len() - 600_000], "expected");
        assert!(matches!(err, Error::Blob { .. }), "{err}");
    }

    /// An oci-archive built from a store image, with index.json replaced.
    fn oci_archive_with_index(
        source: &BlobStore,
        image: &TestImage,
        index: serde_json::Value,
        extra: Vec<Item>,
    ) -> Vec<u8> {
        let mut items = vec![
            Item::File(OCI_LAYOUT, OCI_LAYOUT_CONTENT.to_vec()),
            Item::File(INDEX_JSON, serde_json::to_vec(&index).unwrap()),
        ];
        let mut blobs = vec![image.manifest.clone(), image.config.clone()];
        blobs.extend(image.layers.iter().cloned());
        let paths: Vec<String> = blobs.iter().map(blob_path).collect();
        for (digest, path) in blobs.iter().zip(&paths) {
            items.push(Item::File(path, source.read(digest).unwrap()));
        }
        items.extend(extra);
        tar_of(&items)
    }

    fn descriptor_json(store: &BlobStore, media_type: &str, digest: &Digest) -> serde_json::Value {
        serde_json::json!({"mediaType": media_type, "digest": digest.to_string(), "size": store.size(digest).unwrap()})
    }

    #[test]
    fn oci_archive_tags_and_nested_index() {
        let (_d, source) = store();
        let image = busybox_image(&source, true);
        let manifest = descriptor_json(&source, manifest::OCI_MANIFEST, &image.manifest);
        let host = manifest::host_platform();
        let mut entry = manifest.clone();
        entry["platform"] = serde_json::json!({"os": host.os, "architecture": host.architecture});
        let missing = "sha256:".to_string() + &"9".repeat(64);
        // Another platform whose blobs are not in the archive: never looked at.
        let other = serde_json::json!({"mediaType": manifest::OCI_MANIFEST, "digest": missing, "size": 10,
            "platform": {"os": "linux", "architecture": "mips64"}});
        let nested = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": manifest::OCI_INDEX, "manifests": [other, entry]}))
        .unwrap();
        let nested_digest = Digest::sha256_of(&nested);
        let nested_path = blob_path(&nested_digest);
        let with = |annotations: serde_json::Value| {
            let mut d = manifest.clone();
            d["annotations"] = annotations;
            d
        };
        let mut list = serde_json::json!({"mediaType": manifest::OCI_INDEX, "digest": nested_digest.to_string(), "size": nested.len()});
        list["annotations"] = serde_json::json!({ANNOTATION_REF_NAME: "localhost/multi:2"});
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [
            with(serde_json::json!({ANNOTATION_REF_NAME: "latest"})),
            with(serde_json::json!({ANNOTATION_REF_NAME: "localhost/bb:1"})),
            with(serde_json::json!({ANNOTATION_REF_NAME: "latest", ANNOTATION_IMAGE_NAME: "docker.io/library/busybox:latest"})),
            list,
        ]});
        let archive = oci_archive_with_index(
            &source,
            &image,
            index,
            vec![Item::File(&nested_path, nested.clone())],
        );
        let (_d2, dest) = store();
        let loaded = load(&archive[..], &dest).unwrap();
        assert_eq!(loaded.len(), 1, "{loaded:?}");
        assert_eq!(loaded[0].manifest, image.manifest);
        assert_eq!(
            loaded[0].tags,
            vec![
                reference("localhost/bb:1"),
                reference("busybox"),
                reference("localhost/multi:2")
            ]
        );
    }

    #[test]
    fn hostile_oci_archives() {
        let (_d, source) = store();
        let image = busybox_image(&source, false);
        let mut lying = descriptor_json(&source, manifest::OCI_MANIFEST, &image.manifest);
        lying["size"] = serde_json::json!(3);
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [lying]});
        let err = load_fails(
            &oci_archive_with_index(&source, &image, index, vec![]),
            &format!(
                "blob {} (manifest): descriptor says 3 bytes, blob has",
                image.manifest
            ),
        );
        assert!(matches!(err, Error::SizeMismatch { .. }));

        let missing = format!("sha256:{}", "9".repeat(64));
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [
            {"mediaType": manifest::OCI_MANIFEST, "digest": missing, "size": 10}]});
        load_fails(
            &oci_archive_with_index(&source, &image, index, vec![]),
            &format!("blob {missing} (manifest) is not in the archive"),
        );

        // A blob whose content does not match its name.
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [
            descriptor_json(&source, manifest::OCI_MANIFEST, &image.manifest)]});
        let fake = blob_path(&Digest::sha256_of(b"something else"));
        load_fails(
            &oci_archive_with_index(
                &source,
                &image,
                index.clone(),
                vec![Item::File(&fake, b"not that".to_vec())],
            ),
            &format!("archive entry {fake:?}: blob sha256:"),
        );
        // A layer left out of the archive.
        let archive = oci_archive_with_index(&source, &image, index, vec![]);
        let layer_path = blob_path(&image.layers[0]);
        let mut tar = tar::Archive::new(&archive[..]);
        let mut items = Vec::new();
        for entry in tar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            if name != layer_path {
                items.push((name, data));
            }
        }
        let items: Vec<Item> = items
            .iter()
            .map(|(n, d)| Item::File(n, d.clone()))
            .collect();
        load_fails(
            &tar_of(&items),
            &format!("blob {} (layer) is not in the archive", image.layers[0]),
        );
    }

    #[test]
    fn format_names() {
        assert_eq!("docker-archive".parse::<Format>().unwrap(), Format::Docker);
        assert_eq!("oci-archive".parse::<Format>().unwrap(), Format::Oci);
        assert!("tar"
            .parse::<Format>()
            .unwrap_err()
            .to_string()
            .contains("\"tar\""));
    }

    #[test]
    fn path_cleaning() {
        assert_eq!(clean_relative("./a//b/./c", ""), Some("a/b/c".into()));
        assert_eq!(clean_relative("../x.tar", "dir"), Some("x.tar".into()));
        assert_eq!(clean_relative("../../x.tar", "dir"), None);
        assert_eq!(clean_relative("/x", ""), None);
        assert_eq!(clean_entry_path("./"), Ok(None));
        assert_eq!(
            clean_entry_path("./blobs/sha256/"),
            Ok(Some("blobs/sha256".into()))
        );
        assert!(clean_entry_path("a/../b").is_err());
        assert_eq!(
            blob_name(&format!("blobs/sha256/{}", Digest::sha256_of(b"").hex())),
            Some(Digest::sha256_of(b""))
        );
        assert_eq!(blob_name("blobs/sha256/abc"), None);
        assert_eq!(blob_name("x/blobs/sha256/abc"), None);
    }
}
