//! `berth inspect`: any object by name or id, as `docker inspect` finds it: a container
//! first, then an image, then a volume (`--type` narrows it).

use crate::containers::{inspect_value, open_engine};
use crate::images::{inspect_json, open_store};
use crate::App;
use anyhow::{bail, Result};
use clap::Args;

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a Go template
    #[arg(short, long)]
    pub format: Option<String>,
    /// Display total file sizes if the type is container (not supported)
    #[arg(short, long)]
    pub size: bool,
    /// Return JSON for specified type (container, image or volume)
    #[arg(long = "type")]
    pub kind: Option<String>,
    #[arg(required = true, value_name = "NAME|ID")]
    pub names: Vec<String>,
}

pub fn inspect(app: &App, a: &InspectArgs) -> Result<i32> {
    let (containers, images, volumes) = match a.kind.as_deref() {
        None => (true, true, true),
        Some("container") => (true, false, false),
        Some("image") => (false, true, false),
        Some("volume") => (false, false, true),
        Some(other) => bail!("\"{other}\" is not a valid value for --type"),
    };
    let engine = if containers || volumes {
        Some(open_engine(app)?)
    } else {
        None
    };
    let store = if images { Some(open_store(app)?) } else { None };
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for name in &a.names {
        if let Some(engine) = engine.as_ref().filter(|_| containers) {
            if let Ok(c) = engine.find(name).and_then(|c| engine.reconcile(c)) {
                out.push(inspect_value(engine, &c));
                continue;
            }
        }
        if let Some(store) = &store {
            if let Ok(img) = store.meta.resolve(name) {
                out.push(inspect_json(store, &img)?);
                continue;
            }
        }
        if let Some(engine) = engine.as_ref().filter(|_| volumes) {
            if let Ok(v) = engine.volumes.get(name) {
                out.push(crate::volumes::inspect_value(engine, &v));
                continue;
            }
        }
        missing.push(name);
    }
    crate::format::print_inspect(out, a.format.as_deref())?;
    for name in &missing {
        eprintln!("Error: No such object: {name}");
    }
    Ok(if missing.is_empty() { 0 } else { 1 })
}
