//! `kill`: a signal to the init, or with `all` to every process in the container's cgroup.

use crate::error::{Error, Result};
use crate::state::{Container, Status};

pub fn kill(c: &Container, signal: i32, all: bool) -> Result<()> {
    if c.status() == Status::Stopped {
        return Err(Error::NotRunning);
    }
    if all {
        let cg = &c.stored.cgroup;
        return Ok(cg.kill_all(signal)?);
    }
    // SAFETY: kill(2) with a pid we verified is our init and a validated signal number.
    let r = unsafe { libc::kill(c.stored.pid, signal) };
    if r != 0 {
        let errno = nix::errno::Errno::last();
        if errno == nix::errno::Errno::ESRCH {
            return Err(Error::Other("no such process".into()));
        }
        return Err(Error::Sys {
            context: format!("kill {} with signal {signal}", c.id()),
            errno,
        });
    }
    Ok(())
}
