//! `update`: new resource limits for a running container, remembered in its state so a
//! later `update` or `events` sees them.

use crate::error::{Error, Result};
use crate::state::{Container, Status};
use oci_spec::runtime::LinuxResources;

pub fn update(c: &mut Container, res: &LinuxResources) -> Result<()> {
    if c.status() == Status::Stopped {
        return Err(Error::NotRunning);
    }
    c.stored.cgroup.apply(res)?;
    let mut merged = serde_json::to_value(
        c.stored
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().clone())
            .unwrap_or_default(),
    )
    .map_err(|e| Error::Other(e.to_string()))?;
    merge(
        &mut merged,
        serde_json::to_value(res).map_err(|e| Error::Other(e.to_string()))?,
    );
    let merged: LinuxResources =
        serde_json::from_value(merged).map_err(|e| Error::Other(e.to_string()))?;
    if let Some(linux) = c.stored.spec.linux_mut().as_mut() {
        linux.set_resources(Some(merged));
    }
    Container::save(&c.dir, &c.stored)
}

/// Objects merge key by key; anything else is replaced.
fn merge(base: &mut serde_json::Value, new: serde_json::Value) {
    match (base, new) {
        (serde_json::Value::Object(b), serde_json::Value::Object(n)) => {
            for (k, v) in n {
                merge(b.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, n) => *b = n,
    }
}
