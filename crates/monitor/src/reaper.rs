//! Every child of the monitor is reaped here, from the SIGCHLD loop, and only here: the
//! runtime's `create`, `start` and `delete`, the container's init (ours once `create`
//! exits, as we are a child subreaper), whatever the runtime leaves behind, and the exit
//! command. Nothing else calls waitpid, so no status is stolen; statuses wait here until
//! asked for.

use crate::sys::{self, Exit};

#[derive(Default)]
pub struct Reaper {
    done: Vec<(i32, Exit)>,
    /// Pids whose status will be asked for.
    watched: Vec<i32>,
    /// Until the container's pid is known, any status may be the container's.
    keep_all: bool,
}

impl Reaper {
    pub fn new() -> Reaper {
        Reaper {
            keep_all: true,
            ..Reaper::default()
        }
    }

    /// Reaps every child that has exited.
    pub fn reap(&mut self) {
        while let Some((pid, exit)) = sys::reap_one() {
            if self.keep_all || self.watched.contains(&pid) {
                self.done.push((pid, exit));
            }
        }
    }

    /// Keeps the status of `pid` when it comes.
    pub fn watch(&mut self, pid: i32) {
        if !self.watched.contains(&pid) {
            self.watched.push(pid);
        }
    }

    /// From now on only watched pids are kept: the container's pid is known, so the
    /// rest are leftovers nobody will ask about.
    pub fn keep_watched_only(&mut self) {
        self.keep_all = false;
        let watched = &self.watched;
        self.done.retain(|(pid, _)| watched.contains(pid));
    }

    /// The status of `pid`, if it has exited; it is forgotten once taken.
    pub fn take(&mut self, pid: i32) -> Option<Exit> {
        let i = self.done.iter().position(|(p, _)| *p == pid)?;
        self.watched.retain(|p| *p != pid);
        Some(self.done.swap_remove(i).1)
    }
}
