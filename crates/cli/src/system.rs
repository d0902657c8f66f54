//! `berth system df`: disk usage as docker prints it. Containers, volumes and the build
//! cache do not exist yet in berth, so those rows are zero until their issues land.

use crate::images::open_store;
use crate::units::human_size;
use crate::App;
use anyhow::Result;
use clap::{Args, Subcommand};
use std::collections::HashSet;

#[derive(Subcommand)]
pub enum SystemCmd {
    /// Show docker disk usage
    Df(DfArgs),
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
        row("Images", images.len(), 0, size, size),
        row("Containers", 0, 0, 0, 0),
        row("Local Volumes", 0, 0, 0, 0),
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
