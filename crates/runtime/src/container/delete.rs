//! `delete`: remove a stopped container's cgroup and state (running poststop hooks), or
//! with `force` kill it first.

use crate::error::{Error, Result};
use crate::state::{Container, Status};
use std::time::{Duration, Instant};

pub fn delete(c: &Container, force: bool) -> Result<()> {
    let status = c.status();
    let cg = c.stored.cgroup.clone();
    match status {
        Status::Stopped => {}
        // A created container never ran user code: runc deletes it without --force.
        Status::Created => kill_and_wait(c, &cg)?,
        Status::Running | Status::Paused if force => kill_and_wait(c, &cg)?,
        Status::Running | Status::Paused => {
            return Err(Error::State(format!(
                "cannot delete container {} that is not stopped: {}",
                c.id(),
                status.as_str()
            )))
        }
    }
    // Leftover processes (a stopped init with stray children) must not pin the cgroup.
    if cg.exists() {
        if !cg.pids().unwrap_or_default().is_empty() {
            kill_and_wait(c, &cg)?;
        }
        cg.remove()?;
    }
    let state = super::create::hook_state(&c.stored, "stopped");
    let hooks = c.stored.spec.hooks().as_ref();
    if let Err(e) = crate::hooks::run_all(
        "poststop",
        hooks.and_then(|h| h.poststop().as_ref()),
        state.as_bytes(),
    ) {
        eprintln!("warning: {e}");
    }
    std::fs::remove_dir_all(&c.dir).map_err(|e| Error::Io {
        context: format!("remove state of {}", c.id()),
        source: e,
    })
}

fn kill_and_wait(c: &Container, cg: &cgroups::Cgroup) -> Result<()> {
    if cg.exists() {
        if cg.is_frozen().unwrap_or(false) {
            // Frozen tasks do not die until thawed.
            cg.kill_all(libc::SIGKILL)?;
            cg.thaw()?;
        } else {
            cg.kill_all(libc::SIGKILL)?;
        }
    }
    if c.init_alive() {
        // SAFETY: kill(2) of our verified init pid.
        unsafe { libc::kill(c.stored.pid, libc::SIGKILL) };
    }
    // Wait for the processes to be gone; the init may be reaped by someone else (its
    // parent or a subreaper), so poll rather than waitpid.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut delay = Duration::from_micros(100);
    loop {
        let empty = !cg.exists() || cg.pids().map(|p| p.is_empty()).unwrap_or(true);
        if empty && !c.init_alive() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Other(format!(
                "container {}: processes did not exit after SIGKILL",
                c.id()
            )));
        }
        // Our own child (foreground run) must be reaped to stop being a zombie.
        let _ = nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(c.stored.pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(20));
    }
}
