//! Which cgroup hierarchies are mounted where, and which cgroup this process is in.

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// A mounted cgroup hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    /// v1: the controllers and `name=` options of the mount; empty for cgroup2.
    pub controllers: Vec<String>,
    pub mountpoint: PathBuf,
    /// The cgroup mounted there (mountinfo's root field), usually `/`.
    pub root: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    pub v1: Vec<Hierarchy>,
    pub unified: Option<Hierarchy>,
}

/// v1 controllers the kernel can mount; anything else in a mount's options is not one.
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "hugetlb",
    "net_cls",
    "net_prio",
    "perf_event",
    "rdma",
    "misc",
];

impl Layout {
    /// The cgroup hierarchies mounted under /sys/fs/cgroup, from /proc/self/mountinfo.
    /// Read once per process: a berth command asks several times (the spec, the OOM
    /// check), and the mount table of /sys/fs/cgroup does not change under it.
    pub fn detect() -> Result<Layout> {
        static LAYOUT: std::sync::OnceLock<Layout> = std::sync::OnceLock::new();
        if let Some(l) = LAYOUT.get() {
            return Ok(l.clone());
        }
        let l = Layout::read()?;
        Ok(LAYOUT.get_or_init(|| l).clone())
    }

    fn read() -> Result<Layout> {
        let text =
            crate::fsx::read_text(std::path::Path::new("/proc/self/mountinfo")).map_err(|e| {
                Error::Io {
                    what: "read".into(),
                    path: "/proc/self/mountinfo".into(),
                    err: e,
                }
            })?;
        let l = Layout::parse(&text);
        if l.v1.is_empty() && l.unified.is_none() {
            return Err(Error::Invalid(
                "no cgroup hierarchy is mounted under /sys/fs/cgroup".into(),
            ));
        }
        Ok(l)
    }

    /// Reads mountinfo. Only mounts under /sys/fs/cgroup count, and a later mount on or
    /// above an earlier one hides it (a cgroup2 mounted over a v1 tree in a private mount
    /// namespace makes the host look v2-only, as it should).
    pub fn parse(mountinfo: &str) -> Layout {
        let base = Path::new("/sys/fs/cgroup");
        let mut mounts: Vec<(PathBuf, Option<Hierarchy>)> = Vec::new();
        for line in mountinfo.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let Some(sep) = fields.iter().position(|f| *f == "-") else {
                continue;
            };
            if fields.len() < 5 || fields.len() < sep + 4 {
                continue;
            }
            let mountpoint = PathBuf::from(unescape(fields[4]));
            if !mountpoint.starts_with(base) {
                continue;
            }
            mounts.retain(|(m, _)| !m.starts_with(&mountpoint));
            let fstype = fields[sep + 1];
            let root = unescape(fields[3]);
            let h = match fstype {
                "cgroup2" => Some(Hierarchy {
                    controllers: Vec::new(),
                    mountpoint: mountpoint.clone(),
                    root,
                }),
                "cgroup" => {
                    let controllers = fields[sep + 3]
                        .split(',')
                        .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                        .map(str::to_string)
                        .collect();
                    Some(Hierarchy {
                        controllers,
                        mountpoint: mountpoint.clone(),
                        root,
                    })
                }
                _ => None,
            };
            mounts.push((mountpoint, h));
        }
        let mut l = Layout::default();
        for h in mounts.into_iter().filter_map(|(_, h)| h) {
            if h.controllers.is_empty() {
                if l.unified.is_none() {
                    l.unified = Some(h);
                }
            } else if !l.v1.iter().any(|x| x.controllers == h.controllers) {
                l.v1.push(h);
            }
        }
        l
    }

    pub fn is_v2(&self) -> bool {
        self.v1.is_empty()
    }

    /// The hierarchies a container's `cgroup` mount recreates: (directory name under the
    /// mount, mount options). The options are empty for the cgroup2 hierarchy of a hybrid
    /// host; the list is empty on a v2-only host (one cgroup2 mount serves).
    pub fn v1_mounts(&self) -> Vec<(String, String)> {
        if self.v1.is_empty() {
            return Vec::new();
        }
        let name = |h: &Hierarchy| {
            h.mountpoint
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let mut out: Vec<(String, String)> = self
            .v1
            .iter()
            .map(|h| (name(h), h.controllers.join(",")))
            .collect();
        if let Some(u) = &self.unified {
            if u.mountpoint != Path::new("/sys/fs/cgroup") {
                out.push((name(u), String::new()));
            }
        }
        out
    }
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// This process's cgroups, from /proc/self/cgroup.
#[derive(Debug, Default)]
pub struct Own {
    v1: Vec<(Vec<String>, String)>,
    pub v2: Option<String>,
}

impl Own {
    pub fn v1_path(&self, controllers: &[String]) -> Option<&str> {
        self.v1
            .iter()
            .find(|(c, _)| c.iter().any(|x| controllers.contains(x)))
            .map(|(_, p)| p.as_str())
    }
}

pub fn own_cgroups(text: &str) -> Own {
    let mut own = Own::default();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if ctrls.is_empty() {
            own.v2 = Some(path.to_string());
        } else {
            own.v1.push((
                ctrls.split(',').map(str::to_string).collect(),
                path.to_string(),
            ));
        }
    }
    own
}

pub struct Normalized {
    pub absolute: bool,
    /// The path without leading slash, `.` or `..` components.
    pub rel: PathBuf,
}

/// Checks a cgroupsPath: no `..` may climb out of where it is rooted. The systemd form
/// `slice:prefix:name` becomes the path systemd would create (`a-b.slice` nests in `a.slice`).
pub fn normalize(path: &str) -> Result<Normalized> {
    let parts: Vec<&str> = path.split(':').collect();
    if parts.len() == 3 && !path.contains('/') {
        let slice = if parts[0].is_empty() {
            "system.slice"
        } else {
            parts[0]
        };
        if !slice.ends_with(".slice") || parts[2].is_empty() {
            return Err(Error::Invalid(format!(
                "cgroupsPath {path:?}: expected slice:prefix:name"
            )));
        }
        let mut rel = PathBuf::new();
        let stem = slice.trim_end_matches(".slice");
        if stem != "-" {
            let mut acc = String::new();
            for piece in stem.split('-') {
                if piece.is_empty() {
                    return Err(Error::Invalid(format!(
                        "cgroupsPath {path:?}: bad slice name"
                    )));
                }
                if !acc.is_empty() {
                    acc.push('-');
                }
                acc.push_str(piece);
                rel.push(format!("{acc}.slice"));
            }
        }
        let unit = if parts[1].is_empty() {
            format!("{}.scope", parts[2])
        } else {
            format!("{}-{}.scope", parts[1], parts[2])
        };
        if unit.contains("..") {
            return Err(Error::Invalid(format!(
                "cgroupsPath {path:?}: bad unit name"
            )));
        }
        rel.push(unit);
        return Ok(Normalized {
            absolute: true,
            rel,
        });
    }
    let mut rel = PathBuf::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if !rel.pop() {
                    return Err(Error::Invalid(format!(
                        "cgroupsPath {path:?} climbs above its cgroup root"
                    )));
                }
            }
            c => rel.push(c),
        }
    }
    Ok(Normalized {
        absolute: path.starts_with('/'),
        rel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_mounted_over_v1_hides_it() {
        let l = Layout::parse(
            "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
             32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             99 31 0:40 / /sys/fs/cgroup rw - cgroup2 none rw,nsdelegate\n",
        );
        assert!(l.is_v2());
        assert_eq!(l.unified.unwrap().mountpoint, Path::new("/sys/fs/cgroup"));
    }

    #[test]
    fn hybrid_mounts_for_containers() {
        let l = Layout::parse(
            "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n\
             41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
             50 1 0:38 / /elsewhere rw - cgroup cgroup rw,memory\n",
        );
        assert_eq!(
            l.v1_mounts(),
            vec![
                ("cpu,cpuacct".to_string(), "cpu,cpuacct".to_string()),
                ("systemd".to_string(), "name=systemd".to_string()),
                ("unified".to_string(), String::new()),
            ]
        );
    }

    #[test]
    fn escaped_mountpoints() {
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(unescape(r"\"), r"\");
    }
}
