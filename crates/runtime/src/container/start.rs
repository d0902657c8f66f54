//! `start`: release a created container's init to exec the user program.

use crate::error::{Context, Error, Result};
use crate::state::{Container, Status, START_SOCKET};
use std::io::{Read, Write};

pub fn start(c: &Container) -> Result<()> {
    match c.status() {
        Status::Created => {}
        Status::Stopped => {
            return Err(Error::State(format!(
                "cannot start a container that has stopped: {}",
                c.id()
            )))
        }
        Status::Running | Status::Paused => {
            return Err(Error::State(format!(
                "cannot start an already running container: {}",
                c.id()
            )))
        }
    }
    let path = c.dir.join(START_SOCKET);
    let mut conn = crate::sockpath::connect(&path).ctx(|| format!("start {}", c.id()))?;
    // Removing the socket is what turns "created" into "running" for `state`.
    std::fs::remove_file(&path).ctx(|| format!("remove {}", path.display()))?;
    conn.write_all(&[1]).ctx(|| format!("start {}", c.id()))?;
    // The init closes this connection by exec (it is close-on-exec) or writes why it failed.
    let mut why = String::new();
    let _ = conn.read_to_string(&mut why);
    if !why.is_empty() {
        return Err(Error::Other(format!("start {}: {why}", c.id())));
    }
    let state = super::create::hook_state(&c.stored, "running");
    let hooks = c.stored.spec.hooks().as_ref();
    // The spec says a failing poststart hook is logged, not fatal.
    if let Err(e) = crate::hooks::run_all(
        "poststart",
        hooks.and_then(|h| h.poststart().as_ref()),
        state.as_bytes(),
    ) {
        eprintln!("warning: {e}");
    }
    Ok(())
}
