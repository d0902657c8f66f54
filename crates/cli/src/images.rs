//! Image commands: images, image ls/inspect/rm/prune/history/tag/import, tag, rmi,
//! history, import.

use crate::format::{render, Format};
use crate::units::{ago, human_size};
use crate::App;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use image::digest::{Digest, DigestWriter};
use image::images::ImageStore;
use image::meta::{ImageRow, NewImage};
use image::reference::Reference;
use image::time::{format_rfc3339 as rfc3339, parse_rfc3339};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::io::{Read, Write};

#[derive(Subcommand)]
#[command(defer = true)]
pub enum ImageCmd {
    /// List images
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Display detailed information on one or more images
    Inspect(InspectArgs),
    /// Remove one or more images
    #[command(alias = "remove")]
    Rm(RmiArgs),
    /// Remove unused images
    Prune(PruneArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Load an image from a tar archive or STDIN
    Load(crate::archives::LoadArgs),
    /// Mount an image's root filesystem read-only and print where
    Mount(crate::mounts::MountArgs),
    /// Unmount an image mounted with `image mount`
    #[command(alias = "umount")]
    Unmount(crate::mounts::MountArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(crate::archives::SaveArgs),
}

#[derive(Args)]
pub struct ListArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short, long)]
    pub all: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Filter output based on conditions provided (reference=, dangling=, before=, since=)
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format output using a Go template, "table", or "json"
    #[arg(long)]
    pub format: Option<String>,
    /// Only images matching this reference
    pub repository: Option<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a Go template
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short, long)]
    pub force: bool,
    /// Accepted for compatibility; untagged parents are always removed
    #[arg(long = "no-prune")]
    pub no_prune: bool,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Remove all images without tags... and, with -a, all images not used by containers
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args)]
pub struct HistoryArgs {
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub human: bool,
    /// Format output using a Go template, "table", or "json"
    #[arg(long)]
    pub format: Option<String>,
    pub image: String,
}

#[derive(Args)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

#[derive(Args)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long)]
    pub change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short, long)]
    pub message: Option<String>,
    /// Set platform if server is multi-platform capable (only the host's)
    #[arg(long)]
    pub platform: Option<String>,
    /// A tar file, or - for standard input
    pub file: String,
    pub reference: Option<String>,
}

pub fn open_store(app: &App) -> Result<ImageStore> {
    ImageStore::open(&app.root).with_context(|| format!("open image store {}", app.root.display()))
}

pub fn image_cmd(app: &App, c: &ImageCmd) -> Result<i32> {
    match c {
        ImageCmd::Ls(a) => list(app, a),
        ImageCmd::Inspect(a) => inspect(app, a),
        ImageCmd::Rm(a) => rmi(app, a),
        ImageCmd::Prune(a) => prune(app, a),
        ImageCmd::History(a) => history(app, a),
        ImageCmd::Tag(a) => tag(app, a),
        ImageCmd::Import(a) => import(app, a),
        ImageCmd::Load(a) => crate::archives::load(app, a),
        ImageCmd::Mount(a) => crate::mounts::mount(app, a),
        ImageCmd::Unmount(a) => crate::mounts::unmount(app, a),
        ImageCmd::Save(a) => crate::archives::save(app, a),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn short_id(d: &Digest, no_trunc: bool) -> String {
    if no_trunc {
        d.to_string()
    } else {
        d.hex()[..12].to_string()
    }
}

/// One row per tag (docker lists an image once per repository:tag), untagged images as
/// `<none>`.
fn image_rows(img: &ImageRow, a: &ListArgs) -> Vec<Map<String, Value>> {
    let base = |repo: String, tag: String, digest: String| {
        let v = json!({
            "Repository": repo,
            "Tag": tag,
            "Digest": digest,
            "ID": short_id(&img.id, a.no_trunc),
            "CreatedSince": ago(img.created, now()),
            "CreatedAt": img.created.map(rfc3339).unwrap_or_default(),
            "Size": human_size(img.size),
            "VirtualSize": human_size(img.size),
            "SharedSize": "N/A",
            "UniqueSize": "N/A",
            "Containers": "N/A",
        });
        v.as_object().cloned().unwrap_or_default()
    };
    if img.tags.is_empty() {
        return vec![base(
            "<none>".into(),
            "<none>".into(),
            img.manifest.to_string(),
        )];
    }
    img.tags
        .iter()
        .map(|t| {
            base(
                t.familiar_name(),
                t.tag.clone().unwrap_or_else(|| "<none>".into()),
                img.manifest.to_string(),
            )
        })
        .collect()
}

/// Docker's filters for `images`: reference=PATTERN (glob on repo[:tag]), dangling=BOOL,
/// before=IMAGE, since=IMAGE.
fn keep(
    img: &ImageRow,
    row: &Map<String, Value>,
    filters: &[(String, String)],
    store: &ImageStore,
) -> Result<bool> {
    for (k, v) in filters {
        let ok = match k.as_str() {
            "reference" => {
                let repo = row["Repository"].as_str().unwrap_or_default();
                let tag = row["Tag"].as_str().unwrap_or_default();
                glob(v, repo) || glob(v, &format!("{repo}:{tag}"))
            }
            "dangling" => match v.as_str() {
                "true" | "1" => img.tags.is_empty(),
                "false" | "0" => !img.tags.is_empty(),
                _ => bail!("invalid filter 'dangling={v}': use true or false"),
            },
            "before" | "since" => {
                let other = store.meta.resolve(v)?;
                if k == "before" {
                    img.added < other.added
                } else {
                    img.added > other.added
                }
            }
            "label" => false,
            _ => bail!("invalid filter '{k}'"),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Shell-style `*` and `?` matching, as docker's reference filter (path.Match).
fn glob(pattern: &str, s: &str) -> bool {
    fn rec(p: &[char], s: &[char]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some('*'), _) => rec(&p[1..], s) || (!s.is_empty() && s[0] != '/' && rec(p, &s[1..])),
            (Some('?'), Some(c)) if *c != '/' => rec(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => rec(&p[1..], &s[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    rec(&p, &s)
}

fn parse_filters(f: &[String]) -> Result<Vec<(String, String)>> {
    f.iter()
        .map(|x| match x.split_once('=') {
            Some((k, v)) => {
                let k = k.trim().to_lowercase();
                if !matches!(
                    k.as_str(),
                    "reference" | "dangling" | "before" | "since" | "label"
                ) {
                    bail!("invalid filter '{k}'");
                }
                Ok((k, v.to_string()))
            }
            None => bail!("bad format of filter (expected name=value): {x}"),
        })
        .collect()
}

pub fn list(app: &App, a: &ListArgs) -> Result<i32> {
    let store = open_store(app)?;
    let mut filters = parse_filters(&a.filter)?;
    if let Some(r) = &a.repository {
        filters.push(("reference".into(), r.clone()));
    }
    // Docker hides intermediate images (steps of builds) unless asked for all.
    let hidden = if a.all {
        Default::default()
    } else {
        build::builder::cache::intermediate_images(&store.meta.shared())
    };
    let mut rows = Vec::new();
    for img in store.meta.list()? {
        if img.tags.is_empty() && hidden.contains(&img.id.to_string()) {
            continue;
        }
        for row in image_rows(&img, a) {
            if keep(&img, &row, &filters, &store)? {
                rows.push(row);
            }
        }
    }
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for r in &rows {
            let id = r["ID"].as_str().unwrap_or_default().to_string();
            if seen.insert(id.clone()) {
                println!("{id}");
            }
        }
        return Ok(0);
    }
    let default = if a.digests {
        "{{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    } else {
        "{{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    };
    print!(
        "{}",
        render(&rows, &Format::parse(a.format.as_deref()), default)?
    );
    Ok(0)
}

fn config_of(store: &ImageStore, img: &ImageRow) -> Result<Value> {
    let bytes = store.blobs.read(&img.id)?;
    serde_json::from_slice(&bytes).with_context(|| format!("image {}: config is not JSON", img.id))
}

/// `docker image inspect`'s JSON for the fields that apply without a daemon.
pub fn inspect_json(store: &ImageStore, img: &ImageRow) -> Result<Value> {
    let cfg = config_of(store, img)?;
    let repo_digests: Vec<String> = img
        .tags
        .iter()
        .map(|t| format!("{}@{}", t.familiar_name(), img.manifest))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut v = json!({
        "Id": img.id.to_string(),
        "RepoTags": img.tags.iter().map(|t| t.familiar()).collect::<Vec<_>>(),
        "RepoDigests": repo_digests,
        "Parent": "",
        "Comment": cfg.pointer("/history/0/comment").cloned().unwrap_or(json!("")),
        "Created": cfg.get("created").cloned().unwrap_or(json!("")),
        "DockerVersion": cfg.get("docker_version").cloned().unwrap_or(json!("")),
        "Author": cfg.get("author").cloned().unwrap_or(json!("")),
        "Config": cfg.get("config").cloned().unwrap_or(Value::Null),
        "Architecture": cfg.get("architecture").cloned().unwrap_or(json!("")),
        "Os": cfg.get("os").cloned().unwrap_or(json!("")),
        "Size": img.size,
        "VirtualSize": img.size,
        "RootFS": {
            "Type": "layers",
            "Layers": cfg.pointer("/rootfs/diff_ids").cloned().unwrap_or(json!([])),
        },
        "Metadata": {"LastTagTime": rfc3339(img.added)},
    });
    if let Some(variant) = cfg.get("variant") {
        v["Variant"] = variant.clone();
    }
    Ok(v)
}

pub fn inspect(app: &App, a: &InspectArgs) -> Result<i32> {
    let store = open_store(app)?;
    let mut out = Vec::new();
    let mut code = 0;
    for name in &a.images {
        match store.meta.resolve(name) {
            Ok(img) => out.push(inspect_json(&store, &img)?),
            Err(e) => {
                eprintln!("Error: No such image: {name} ({e})");
                code = 1;
            }
        }
    }
    crate::format::print_inspect(out, a.format.as_deref())?;
    Ok(code)
}

/// The containers using each image (by image id): one of them, and whether any runs.
/// Images in use are not removed from under their containers.
fn image_users(app: &App, store: &ImageStore) -> Result<HashMap<String, image::images::ImageUser>> {
    let containers = engine::store::Store::open_shared(&app.root, store.meta.shared())?;
    let mut users: HashMap<String, image::images::ImageUser> = HashMap::new();
    for c in containers.list()? {
        let running = c.state.is_live();
        let user = users
            .entry(c.image.clone())
            .or_insert(image::images::ImageUser {
                container: c.id.clone(),
                running,
            });
        if running && !user.running {
            *user = image::images::ImageUser {
                container: c.id,
                running,
            };
        }
    }
    Ok(users)
}

pub fn rmi(app: &App, a: &RmiArgs) -> Result<i32> {
    let store = open_store(app)?;
    let users = image_users(app, &store)?;
    let user_of = |id: &Digest| users.get(&id.to_string()).cloned();
    let mut code = 0;
    for name in &a.images {
        // The layers of a mounted image are in use: removing them would pull files from
        // under the mount.
        if let Ok(img) = store.meta.resolve(name) {
            if crate::mounts::mounted_image(app, &img.id) {
                eprintln!("Error: image {name} is mounted; run `berth image unmount {name}` first");
                code = 1;
                continue;
            }
        }
        match store.remove_unless_used(name, a.force, &user_of) {
            Ok(lines) => lines.iter().for_each(|l| println!("{l}")),
            Err(e) => {
                eprintln!("Error: {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

pub fn prune(app: &App, a: &PruneArgs) -> Result<i32> {
    let warning = if a.all {
        "WARNING! This will remove all images without at least one container associated to them.\nAre you sure you want to continue?"
    } else {
        "WARNING! This will remove all dangling images.\nAre you sure you want to continue?"
    };
    if !a.force && !crate::volumes::confirm(warning) {
        return Ok(0);
    }
    let (lines, bytes) = prune_images(app, a.all)?;
    if !lines.is_empty() {
        println!("Deleted Images:");
        for l in &lines {
            println!("{l}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", human_size(bytes));
    Ok(0)
}

/// Removes the dangling images (with `all`, every image no container uses) and collects
/// what they held: docker's `untagged:`/`deleted:` lines and the bytes of the blobs freed.
pub fn prune_images(app: &App, all: bool) -> Result<(Vec<String>, u64)> {
    let store = open_store(app)?;
    let users = image_users(app, &store)?;
    let before = store.meta.referenced_blobs()?;
    let sizes: HashMap<Digest, u64> = before
        .iter()
        .map(|d| (d.clone(), store.blobs.size(d).unwrap_or(0)))
        .collect();
    // Intermediate images are build cache, not dangling (`builder prune` removes them).
    let intermediate = if all {
        Default::default()
    } else {
        build::builder::cache::intermediate_images(&store.meta.shared())
    };
    let mut lines = Vec::new();
    for img in store.meta.list()? {
        if intermediate.contains(&img.id.to_string()) {
            continue;
        }
        let used = users.contains_key(&img.id.to_string());
        if (img.tags.is_empty() || all) && !used && !crate::mounts::mounted_image(app, &img.id) {
            match store.remove(&img.id.to_string(), true) {
                Ok(l) => lines.extend(l.into_iter().map(|l| {
                    l.replacen("Untagged: ", "untagged: ", 1)
                        .replacen("Deleted: ", "deleted: ", 1)
                })),
                Err(e) => eprintln!("Error: {e}"),
            }
        }
    }
    store.gc()?;
    let after = store.meta.referenced_blobs()?;
    let bytes = sizes
        .iter()
        .filter(|(d, _)| !after.contains(*d))
        .map(|(_, n)| n)
        .sum();
    Ok((lines, bytes))
}

pub fn tag(app: &App, a: &TagArgs) -> Result<i32> {
    let store = open_store(app)?;
    let img = store
        .meta
        .resolve(&a.source)
        .with_context(|| format!("No such image: {}", a.source))?;
    let target = Reference::parse(&a.target)?;
    if target.digest.is_some() {
        bail!("refusing to create a tag with a digest reference");
    }
    store.meta.tag(&target, &img.id)?;
    Ok(0)
}

pub fn history(app: &App, a: &HistoryArgs) -> Result<i32> {
    let store = open_store(app)?;
    let img = store
        .meta
        .resolve(&a.image)
        .with_context(|| format!("No such image: {}", a.image))?;
    let cfg = config_of(&store, &img)?;
    let layers = store.meta.layers_of(&img.id)?;
    let mut layer_sizes = layers
        .iter()
        .map(|l| store.blobs.size(&l.blob).unwrap_or(0));
    let mut rows = Vec::new();
    let history = cfg
        .get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for h in &history {
        let empty = h
            .get("empty_layer")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let size = if empty {
            0
        } else {
            layer_sizes.next().unwrap_or(0)
        };
        let created = h.get("created").and_then(Value::as_str).unwrap_or_default();
        let by = h
            .get("created_by")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let by = if a.no_trunc || by.chars().count() <= 45 {
            by.to_string()
        } else {
            format!("{}…", by.chars().take(44).collect::<String>())
        };
        let row = json!({
            "ID": "<missing>",
            "CreatedSince": created_since(created),
            "CreatedAt": created,
            "CreatedBy": by,
            "Size": if a.human { human_size(size) } else { size.to_string() },
            "Comment": h.get("comment").and_then(Value::as_str).unwrap_or_default(),
        });
        rows.push(row.as_object().cloned().unwrap_or_default());
    }
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top.insert("ID".into(), json!(short_id(&img.id, a.no_trunc)));
    }
    if a.quiet {
        rows.iter()
            .for_each(|r| println!("{}", r["ID"].as_str().unwrap_or_default()));
        return Ok(0);
    }
    let default = "{{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}";
    print!(
        "{}",
        render(&rows, &Format::parse(a.format.as_deref()), default)?
    );
    Ok(0)
}

/// "2 months ago" from an RFC 3339 time (only its date and clock matter here).
fn created_since(rfc: &str) -> String {
    parse_rfc3339(rfc).map_or_else(|| "N/A".into(), |t| ago(Some(t), now()))
}

/// `docker import`: a root filesystem tarball becomes a one-layer image.
pub fn import(app: &App, a: &ImportArgs) -> Result<i32> {
    if let Some(p) = &a.platform {
        let host = format!("linux/{}", host_arch());
        if p != &host {
            bail!("--platform {p}: only the host platform ({host}) can be imported");
        }
    }
    let changes = a
        .change
        .iter()
        .map(|c| parse_change(c))
        .collect::<Result<Vec<_>>>()?;
    let tag = a.reference.as_deref().map(Reference::parse).transpose()?;
    let store = open_store(app)?;
    let _writer = store.writer_lock()?;
    let input: Box<dyn Read> = if a.file == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(&a.file).with_context(|| format!("open {}", a.file))?)
    };
    let (layer, size) = ingest_unknown(&store, input).context("import")?;
    let checked =
        diff_id_of(&store, &layer).and_then(|d| Ok((d, layer_media_type(&store, &layer)?)));
    let (diff_id, media) = match checked {
        Ok(x) => x,
        Err(e) => {
            // Nothing references the blob yet, and GC is held off by our lock: remove it.
            let _ = store.blobs.remove(&layer);
            return Err(e.context(format!("import {}", a.file)));
        }
    };
    let created = rfc3339(now());
    let mut config = Map::new();
    for (k, v) in changes {
        merge_change(&mut config, k, v);
    }
    let source = if a.file == "-" { "-" } else { a.file.as_str() };
    let cfg = json!({
        "architecture": host_arch(),
        "os": "linux",
        "created": created,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        "history": [{"created": created, "comment": a.message.clone().unwrap_or_else(|| format!("Imported from {source}"))}],
    });
    let cfg_bytes = serde_json::to_vec(&cfg)?;
    let config_digest = store.blobs.ingest_bytes(&cfg_bytes)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": cfg_bytes.len()},
        "layers": [{"mediaType": media, "digest": layer.to_string(), "size": size}],
    });
    let manifest_digest = store.blobs.ingest_bytes(&serde_json::to_vec(&manifest)?)?;
    let row = store.register(
        NewImage {
            manifest: manifest_digest,
            config: config_digest,
            layers: vec![(layer, diff_id)],
            created: Some(now()),
            size,
        },
        tag.as_slice(),
    )?;
    println!("{}", row.id);
    Ok(0)
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Streams an input of unknown digest into the store: to a temporary file while hashing,
/// then into the store with the digest now known. Returns (digest, size).
pub fn ingest_unknown(store: &ImageStore, mut input: impl Read) -> Result<(Digest, u64)> {
    let tmp = tempfile::Builder::new()
        .prefix("import-")
        .tempfile_in(store.blobs.ingest_dir())?;
    let mut w = DigestWriter::new(tmp.as_file());
    std::io::copy(&mut input, &mut w).context("read the tarball")?;
    w.flush()?;
    let (_, digest, size) = w.into_parts();
    store
        .blobs
        .ingest(&digest, Some(size), std::fs::File::open(tmp.path())?)?;
    Ok((digest, size))
}

/// The layer's diff id: the sha256 of its uncompressed tar, which must be a valid tar.
fn diff_id_of(store: &ImageStore, blob: &Digest) -> Result<Digest> {
    let mut r = image::digest::DigestReader::new(decompress(store.blobs.open_blob(blob)?)?);
    {
        let mut ar = tar::Archive::new(&mut r);
        for e in ar.entries().context("not a tar archive")? {
            let mut e = e.context("not a tar archive")?;
            std::io::copy(&mut e, &mut std::io::sink()).context("truncated tar archive")?;
        }
    }
    // The end-of-archive padding is part of what the diff id covers.
    std::io::copy(&mut r, &mut std::io::sink())?;
    Ok(r.digest())
}

fn magic(store: &ImageStore, blob: &Digest) -> Result<[u8; 4]> {
    let mut m = [0u8; 4];
    let mut f = store.blobs.open_blob(blob)?;
    let _ = f.read(&mut m)?;
    Ok(m)
}

fn layer_media_type(store: &ImageStore, blob: &Digest) -> Result<&'static str> {
    Ok(match magic(store, blob)? {
        [0x1f, 0x8b, ..] => "application/vnd.oci.image.layer.v1.tar+gzip",
        [0x28, 0xb5, 0x2f, 0xfd] => "application/vnd.oci.image.layer.v1.tar+zstd",
        _ => "application/vnd.oci.image.layer.v1.tar",
    })
}

fn decompress(f: std::fs::File) -> Result<Box<dyn Read>> {
    let mut r = std::io::BufReader::new(f);
    let head = std::io::BufRead::fill_buf(&mut r)?.to_vec();
    Ok(match head.as_slice() {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(r)),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Box::new(zstd::stream::read::Decoder::new(r)?),
        _ => Box::new(r),
    })
}

/// One `--change` instruction: (config key, value).
pub(crate) fn parse_change(c: &str) -> Result<(String, Value)> {
    let c = c.trim();
    let (instr, rest) = c.split_once(char::is_whitespace).unwrap_or((c, ""));
    let rest = rest.trim();
    let list = |rest: &str| -> Value {
        match serde_json::from_str::<Vec<String>>(rest) {
            Ok(v) => json!(v),
            Err(_) => json!(["/bin/sh", "-c", rest]),
        }
    };
    Ok(match instr.to_uppercase().as_str() {
        "CMD" => ("Cmd".into(), list(rest)),
        "ENTRYPOINT" => ("Entrypoint".into(), list(rest)),
        "ENV" => ("Env".into(), json!(env_pairs(rest)?)),
        "USER" => ("User".into(), json!(rest)),
        "WORKDIR" => ("WorkingDir".into(), json!(rest)),
        "STOPSIGNAL" => ("StopSignal".into(), json!(rest)),
        "EXPOSE" => {
            let ports: Map<String, Value> = rest
                .split_whitespace()
                .map(|p| {
                    let p = if p.contains('/') { p.to_string() } else { format!("{p}/tcp") };
                    (p, json!({}))
                })
                .collect();
            ("ExposedPorts".into(), Value::Object(ports))
        }
        "VOLUME" => {
            let v: Vec<String> = serde_json::from_str(rest)
                .unwrap_or_else(|_| rest.split_whitespace().map(str::to_string).collect());
            let m: Map<String, Value> = v.into_iter().map(|p| (p, json!({}))).collect();
            ("Volumes".into(), Value::Object(m))
        }
        "LABEL" => {
            let m: Map<String, Value> = env_pairs(rest)?
                .into_iter()
                .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), json!(v))))
                .collect();
            ("Labels".into(), Value::Object(m))
        }
        other => bail!("--change {c:?}: {other} is not a valid change command (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)"),
    })
}

/// `A=1 B="two words"` or the legacy `A value with spaces` form.
fn env_pairs(s: &str) -> Result<Vec<String>> {
    let first = s.split_whitespace().next().unwrap_or_default();
    if !first.contains('=') {
        let (k, v) = s.split_once(char::is_whitespace).unwrap_or((s, ""));
        return Ok(vec![format!("{k}={}", v.trim())]);
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for ch in s.chars() {
        match (ch, quote) {
            ('"' | '\'', None) => quote = Some(ch),
            (c, Some(q)) if c == q => quote = None,
            (c, None) if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            (c, _) => cur.push(c),
        }
    }
    if quote.is_some() {
        bail!("--change: unterminated quote in {s:?}");
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

fn merge_change(config: &mut Map<String, Value>, key: String, v: Value) {
    match (config.get_mut(&key), v) {
        (Some(Value::Array(a)), Value::Array(b)) if key == "Env" => a.extend(b),
        (Some(Value::Object(a)), Value::Object(b)) => a.extend(b),
        (_, v) => {
            config.insert(key, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_like_path_match() {
        assert!(glob("busy*", "busybox"));
        assert!(glob("*:1.0", "app:1.0"));
        assert!(!glob("busy*", "library/busybox"));
        assert!(glob("b?sybox", "busybox"));
    }

    #[test]
    fn changes_become_config() {
        assert_eq!(
            parse_change("CMD [\"a\", \"b\"]").unwrap(),
            ("Cmd".into(), json!(["a", "b"]))
        );
        assert_eq!(
            parse_change("CMD echo hi").unwrap(),
            ("Cmd".into(), json!(["/bin/sh", "-c", "echo hi"]))
        );
        assert_eq!(
            parse_change("ENV A=1 B=\"x y\"").unwrap(),
            ("Env".into(), json!(["A=1", "B=x y"]))
        );
        assert_eq!(
            parse_change("ENV A x y").unwrap(),
            ("Env".into(), json!(["A=x y"]))
        );
        assert_eq!(
            parse_change("EXPOSE 80 53/udp").unwrap().1,
            json!({"80/tcp": {}, "53/udp": {}})
        );
        let e = parse_change("FROB x").unwrap_err().to_string();
        assert!(e.contains("FROB is not a valid change command"), "{e}");
    }
}
