//! `pause` and `resume`: the freezer.

use crate::error::{Error, Result};
use crate::state::{Container, Status};

pub fn pause(c: &Container) -> Result<()> {
    match c.status() {
        Status::Running | Status::Created => {}
        Status::Paused => {
            return Err(Error::State(format!(
                "container {} is already paused",
                c.id()
            )))
        }
        Status::Stopped => return Err(Error::NotRunning),
    }
    Ok(c.stored.cgroup.freeze()?)
}

pub fn resume(c: &Container) -> Result<()> {
    if c.status() != Status::Paused {
        return Err(Error::State(format!("container {} is not paused", c.id())));
    }
    Ok(c.stored.cgroup.thaw()?)
}
