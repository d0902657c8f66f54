//! `berth image mount` / `unmount` (as podman's): an image's layers stacked read-only
//! under `<runroot>/image-mounts/<id>`, for inspection and for running a bundle on it.

use crate::images::open_store;
use crate::App;
use anyhow::{Context, Result};
use clap::Args;
use image::snapshot;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct MountArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
}

fn mount_dir(app: &App, id: &image::digest::Digest) -> PathBuf {
    app.runroot.join("image-mounts").join(id.hex())
}

/// True when `dir` is a mount point (its device differs from its parent's, or it is a bind
/// of the same file system: checked in mountinfo).
pub fn is_mounted(dir: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = dir.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| mp == want)
}

pub fn mounted_image(app: &App, id: &image::digest::Digest) -> bool {
    is_mounted(&mount_dir(app, id))
}

pub fn mount(app: &App, a: &MountArgs) -> Result<i32> {
    let store = open_store(app)?;
    for name in &a.images {
        let img = store
            .meta
            .resolve(name)
            .with_context(|| format!("No such image: {name}"))?;
        let dir = mount_dir(app, &img.id);
        if !is_mounted(&dir) {
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            let lowers = store.rootfs_layers(&img.id)?;
            if let Err(e) = snapshot::mount_overlay(&lowers, None, &dir) {
                let _ = std::fs::remove_dir(&dir);
                return Err(e.into());
            }
        }
        println!("{}", dir.display());
    }
    Ok(0)
}

pub fn unmount(app: &App, a: &MountArgs) -> Result<i32> {
    let store = open_store(app)?;
    let mut code = 0;
    for name in &a.images {
        let img = store
            .meta
            .resolve(name)
            .with_context(|| format!("No such image: {name}"))?;
        let dir = mount_dir(app, &img.id);
        if !is_mounted(&dir) {
            eprintln!("Error: image {name} is not mounted");
            code = 1;
            continue;
        }
        snapshot::unmount(&dir)?;
        let _ = std::fs::remove_dir(&dir);
        println!("{}", img.id);
    }
    Ok(code)
}
