//! `berth system df`: disk usage as docker prints it. The build cache row is zero
//! until its issue lands.

use crate::images::open_store;
use crate::units::human_size;
use crate::App;
use anyhow::Result;
use clap::{Args, Subcommand};
use std::collections::HashSet;

#[derive(Subcommand)]
#[command(defer = true)]
pub enum SystemCmd {
    /// Show docker disk usage
    Df(DfArgs),
    /// Remove unused data
    Prune(PruneArgs),
}

#[derive(Args)]
pub struct PruneArgs {
    /// Remove all unused images not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Prune anonymous volumes
    #[arg(long)]
    pub volumes: bool,
}

#[derive(Args)]
pub struct DfArgs {
    /// Format output using a Go template, "table", or "json"
    #[arg(long)]
    pub format: Option<String>,
}

pub fn system(app: &App, c: &SystemCmd) -> Result<i32> {
    match c {
        SystemCmd::Df(a) => df(app, a),
        SystemCmd::Prune(a) => prune(app, a),
    }
}

/// `docker system prune`: stopped containers, the user networks this store created that
/// no container uses, then (anonymous) volumes no container uses, then dangling (with
/// `-a`, unused) images; build cache when it exists.
fn prune(app: &App, a: &PruneArgs) -> Result<i32> {
    if !a.force {
        let mut warning = String::from(
            "WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n",
        );
        if a.volumes {
            warning += "  - all anonymous volumes not used by at least one container\n";
        }
        warning += if a.all {
            "  - all images without at least one container associated to them\n"
        } else {
            "  - all dangling images\n"
        };
        warning += "\nAre you sure you want to continue?";
        if !crate::volumes::confirm(&warning) {
            return Ok(0);
        }
    }
    let engine = crate::containers::open_engine(app)?;
    let mut total = 0;
    let (containers, bytes) = crate::containers::prune_containers(&engine)?;
    total += bytes;
    section("Deleted Containers:", &containers);
    section(
        "Deleted Networks:",
        &crate::networks::prune_store_networks(app)?,
    );
    if a.volumes {
        let (volumes, bytes) = crate::volumes::prune_volumes(&engine, false, &[])?;
        total += bytes;
        section("Deleted Volumes:", &volumes);
    }
    let (images, bytes) = crate::images::prune_images(app, a.all)?;
    total += bytes;
    section("Deleted Images:", &images);
    println!("Total reclaimed space: {}", human_size(total));
    Ok(0)
}

fn section(title: &str, lines: &[String]) {
    if !lines.is_empty() {
        println!("{title}");
        for l in lines {
            println!("{l}");
        }
        println!();
    }
}

fn df(app: &App, a: &DfArgs) -> Result<i32> {
    let store = open_store(app)?;
    let images = store.meta.list()?;
    // Layers shared between images count once, as docker's SIZE does.
    let mut seen = HashSet::new();
    let mut size = 0u64;
    for img in &images {
        for l in store.meta.layers_of(&img.id)? {
            if seen.insert(l.blob.clone()) {
                size += store.blobs.size(&l.blob).unwrap_or(0);
            }
        }
    }
    // Containers: their writable layers (overlay upper dirs); images in use by any.
    let containers = engine::store::Store::open(&app.root)?.list()?;
    let used: HashSet<&str> = containers.iter().map(|c| c.image.as_str()).collect();
    let mut unused_size = 0u64;
    let mut seen_unused = HashSet::new();
    for img in images
        .iter()
        .filter(|i| !used.contains(i.id.to_string().as_str()))
    {
        for l in store.meta.layers_of(&img.id)? {
            if seen_unused.insert(l.blob.clone()) {
                unused_size += store.blobs.size(&l.blob).unwrap_or(0);
            }
        }
    }
    let active_images = images
        .iter()
        .filter(|i| used.contains(i.id.to_string().as_str()))
        .count();
    let (mut c_size, mut c_reclaim, mut c_active) = (0u64, 0u64, 0usize);
    for c in &containers {
        let upper = app.root.join("containers").join(&c.id).join("upper");
        let size = dir_size(&upper);
        c_size += size;
        if c.state.is_live() {
            c_active += 1;
        } else {
            c_reclaim += size;
        }
    }
    let engine = crate::containers::open_engine(app)?;
    let (volumes, volumes_active, volumes_size, volumes_reclaimable) =
        crate::volumes::disk_usage(&engine)?;
    let pct = |part: u64, whole: u64| (part * 100).checked_div(whole).unwrap_or(0);
    let row = |t: &str, total: usize, active: usize, size: u64, reclaim: u64| {
        let mut m = serde_json::Map::new();
        m.insert("Type".into(), t.into());
        m.insert("TotalCount".into(), total.to_string().into());
        m.insert("Active".into(), active.to_string().into());
        m.insert("Size".into(), human_size(size).into());
        let r = if size == 0 {
            human_size(reclaim)
        } else {
            format!("{} ({}%)", human_size(reclaim), pct(reclaim, size))
        };
        m.insert("Reclaimable".into(), r.into());
        m
    };
    let rows = vec![
        row("Images", images.len(), active_images, size, unused_size),
        row("Containers", containers.len(), c_active, c_size, c_reclaim),
        row(
            "Local Volumes",
            volumes,
            volumes_active,
            volumes_size,
            volumes_reclaimable,
        ),
        row("Build Cache", 0, 0, 0, 0),
    ];
    let default = "{{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}";
    let text = crate::format::render(
        &rows,
        &crate::format::Format::parse(a.format.as_deref()),
        default,
    )?;
    print!("{text}");
    Ok(0)
}

/// Bytes of the regular files under `dir` (each hard-linked inode once), without
/// following symlinks; what cannot be read counts as empty.
pub fn dir_size(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            if md.is_dir() {
                stack.push(e.path());
            } else if md.is_file() && seen.insert((md.dev(), md.ino())) {
                total += md.len();
            }
        }
    }
    total
}
