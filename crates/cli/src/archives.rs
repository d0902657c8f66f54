//! `berth load` and `berth save`: docker-archive and oci-archive tarballs.

use crate::images::open_store;
use crate::App;
use anyhow::{bail, Context, Result};
use clap::Args;
use image::archive::{self, Format};
use image::digest::Digest;
use image::images::ImageStore;
use image::meta::NewImage;
use image::reference::Reference;
use std::io::{IsTerminal, Read, Write};

#[derive(Args)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short, long)]
    pub input: Option<String>,
    /// Suppress the load output
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub output: Option<String>,
    /// docker-archive (what docker save writes) or oci-archive
    #[arg(long, default_value = "docker-archive")]
    pub format: String,
    #[arg(required = true)]
    pub images: Vec<String>,
}

pub fn load(app: &App, a: &LoadArgs) -> Result<i32> {
    let input: Box<dyn Read> = match a.input.as_deref() {
        None | Some("-") => {
            if std::io::stdin().is_terminal() {
                bail!("requested load from stdin, but stdin is empty");
            }
            Box::new(std::io::stdin())
        }
        Some(p) => Box::new(std::fs::File::open(p).with_context(|| format!("open {p}"))?),
    };
    let store = open_store(app)?;
    let loaded = {
        let _writer = store.writer_lock()?;
        archive::load(std::io::BufReader::new(input), &store.blobs)
            .map_err(anyhow::Error::from)
            .and_then(|images| register_all(&store, images))
    };
    let lines = match loaded {
        Ok(lines) => lines,
        Err(e) => {
            // Blobs of a failed load are referenced by nothing: collect them now that our
            // writer lock is gone.
            let _ = store.try_gc();
            return Err(e);
        }
    };
    if !a.quiet {
        lines.iter().for_each(|l| println!("{l}"));
    }
    Ok(0)
}

fn register_all(store: &ImageStore, images: Vec<archive::ArchiveImage>) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for img in images {
        let config: serde_json::Value = serde_json::from_slice(&store.blobs.read(&img.config)?)
            .with_context(|| format!("image config {} is not JSON", img.config))?;
        let diff_ids: Vec<Digest> = config
            .pointer("/rootfs/diff_ids")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|d| d.as_str()?.parse().ok()).collect())
            .unwrap_or_default();
        if diff_ids.len() != img.layers.len() {
            bail!(
                "image {}: config lists {} layers, manifest {}",
                img.config,
                diff_ids.len(),
                img.layers.len()
            );
        }
        let size = img
            .layers
            .iter()
            .map(|l| store.blobs.size(l).unwrap_or(0))
            .sum();
        let created = config
            .get("created")
            .and_then(|c| c.as_str())
            .and_then(image::time::parse_rfc3339);
        let row = store.register(
            NewImage {
                manifest: img.manifest.clone(),
                config: img.config.clone(),
                layers: img.layers.iter().cloned().zip(diff_ids).collect(),
                created,
                size,
            },
            &img.tags,
        )?;
        if img.tags.is_empty() {
            lines.push(format!("Loaded image ID: {}", row.id));
        }
        lines.extend(
            img.tags
                .iter()
                .map(|t| format!("Loaded image: {}", t.familiar())),
        );
    }
    Ok(lines)
}

pub fn save(app: &App, a: &SaveArgs) -> Result<i32> {
    let format: Format = a
        .format
        .parse()
        .with_context(|| format!("--format {}: use docker-archive or oci-archive", a.format))?;
    let store = open_store(app)?;
    let mut images: Vec<(Digest, Vec<Reference>)> = Vec::new();
    for name in &a.images {
        let img = store
            .meta
            .resolve(name)
            .with_context(|| format!("No such image: {name}"))?;
        // Saved by name, the archive carries that name; by id, no name (as docker).
        let tag = Reference::parse(name)
            .ok()
            .filter(|r| img.tags.contains(r) && r.digest.is_none());
        match images.iter_mut().find(|(m, _)| *m == img.manifest) {
            Some((_, tags)) => tags.extend(tag),
            None => images.push((img.manifest.clone(), tag.into_iter().collect())),
        }
    }
    match a.output.as_deref() {
        None | Some("-") => {
            if std::io::stdout().is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            let out = std::io::stdout().lock();
            archive::save(&images, &store.blobs, std::io::BufWriter::new(out), format)?;
        }
        Some(path) => {
            // Written beside the target and renamed, so a failed save leaves no half file.
            let target = std::path::Path::new(path);
            let dir = target.parent().filter(|d| !d.as_os_str().is_empty());
            let tmp = tempfile::Builder::new()
                .prefix(".berth-save-")
                .tempfile_in(dir.unwrap_or(std::path::Path::new(".")))
                .with_context(|| format!("create {path}"))?;
            let mut w = std::io::BufWriter::new(tmp.as_file());
            archive::save(&images, &store.blobs, &mut w, format)?;
            w.flush()?;
            drop(w);
            tmp.persist(target)
                .with_context(|| format!("write {path}"))?;
        }
    }
    Ok(0)
}
