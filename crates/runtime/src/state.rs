//! What the runtime remembers about a container between invocations: `<root>/<id>/state.json`,
//! written atomically (temp file + rename), and the derived status.
//!
//! Status is never stored: it is read from the world. The init pid with its start time
//! (so a recycled pid is not mistaken for ours), the presence of the start socket
//! (created, not yet started) and the freezer (paused) decide it.

use crate::error::{Context, Error, Result};
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const OCI_VERSION: &str = "1.2.1";
/// The unix socket the created init waits on until `start` connects.
pub const START_SOCKET: &str = "start.sock";
const STATE_FILE: &str = "state.json";
/// The next state.json, until it is renamed into place.
const PENDING_FILE: &str = ".state.json.tmp";

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Stored {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub pid: i32,
    /// Field 22 of /proc/PID/stat when the init was created.
    pub pid_start_time: u64,
    pub created: String,
    pub owner: String,
    /// The cgroup directories `create` made, so later commands act on exactly those.
    pub cgroup: cgroups::Cgroup,
    /// The container's config, kept for exec, poststop hooks and update.
    pub spec: Spec,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// The state document of the OCI runtime spec, in the field order runc prints it.
#[derive(Serialize, Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<HashMap<String, String>>,
}

pub struct Container {
    pub dir: PathBuf,
    pub stored: Stored,
}

impl Container {
    pub fn load(root: &Path, id: &str) -> Result<Container> {
        crate::spec::validate_id(id)?;
        let dir = root.join(id);
        let data = match std::fs::read(dir.join(STATE_FILE)) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotExist(id.to_string()))
            }
            Err(e) => return Err(e).ctx(|| format!("read state of container {id}")),
        };
        let stored = serde_json::from_slice(&data)
            .map_err(|e| Error::State(format!("container {id}: corrupt state.json: {e}")))?;
        Ok(Container { dir, stored })
    }

    pub fn save(dir: &Path, stored: &Stored) -> Result<()> {
        Self::write_pending(dir, stored)?;
        Self::commit(dir)
    }

    /// Writes the state beside `state.json`, where no other command looks: `create`
    /// writes it while the init sets itself up, and commits it once the init is ready.
    pub fn write_pending(dir: &Path, stored: &Stored) -> Result<()> {
        let tmp = dir.join(PENDING_FILE);
        let data =
            serde_json::to_vec(stored).map_err(|e| Error::Other(format!("encode state: {e}")))?;
        std::fs::write(&tmp, data).ctx(|| format!("write {}", tmp.display()))
    }

    /// Makes the pending state `state.json`, in one rename.
    pub fn commit(dir: &Path) -> Result<()> {
        let tmp = dir.join(PENDING_FILE);
        std::fs::rename(&tmp, dir.join(STATE_FILE)).ctx(|| format!("commit {}", tmp.display()))
    }

    pub fn id(&self) -> &str {
        &self.stored.id
    }

    /// True when the recorded init is still the process we created (alive, not a zombie,
    /// same start time).
    pub fn init_alive(&self) -> bool {
        self.stored.pid > 0
            && matches!(proc_start_time(self.stored.pid), Some((t, state)) if t == self.stored.pid_start_time && state != 'Z' && state != 'X')
    }

    pub fn status(&self) -> Status {
        if !self.init_alive() {
            return Status::Stopped;
        }
        if self.dir.join(START_SOCKET).exists() {
            return Status::Created;
        }
        if self.stored.cgroup.is_frozen().unwrap_or(false) {
            return Status::Paused;
        }
        Status::Running
    }

    pub fn oci_state(&self) -> OciState {
        let status = self.status();
        oci_state(&self.stored, status)
    }
}

pub fn oci_state(s: &Stored, status: Status) -> OciState {
    OciState {
        oci_version: OCI_VERSION.to_string(),
        id: s.id.clone(),
        pid: if status == Status::Stopped { 0 } else { s.pid },
        status: status.as_str().to_string(),
        bundle: s.bundle.clone(),
        rootfs: s.rootfs.clone(),
        created: s.created.clone(),
        owner: s.owner.clone(),
        annotations: s.spec.annotations().clone().filter(|a| !a.is_empty()),
    }
}

/// Start time (clock ticks since boot) and state letter of a process, from /proc/PID/stat.
pub fn proc_start_time(pid: i32) -> Option<(u64, char)> {
    let stat = cgroups::read_text(std::path::Path::new(&format!("/proc/{pid}/stat"))).ok()?;
    // The command name may contain spaces and ')', so split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    // `rest` starts at field 3; start time is field 22.
    let start = fields.nth(18)?.parse().ok()?;
    Some((start, state))
}

/// RFC 3339 with nanoseconds in UTC, as Go's time.RFC3339Nano prints it (trailing zeros trimmed).
pub fn rfc3339_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs() as i64, now.subsec_nanos())
}

pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_like_go() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(1_700_000_000, 120_000_000),
            "2023-11-14T22:13:20.12Z"
        );
        assert_eq!(rfc3339(951_782_400, 1), "2000-02-29T00:00:00.000000001Z");
    }

    #[test]
    fn reads_own_start_time() {
        let (t, state) = proc_start_time(std::process::id() as i32).unwrap();
        assert!(t > 0);
        // The main thread may be running or waiting on the test thread; never a zombie.
        assert!(matches!(state, 'R' | 'S'), "{state}");
        assert_eq!(proc_start_time(std::process::id() as i32).unwrap().0, t);
    }
}
