//! `-u user[:group]` and `--group-add` resolved to ids, as Docker does it (through runc's
//! libcontainer/user rules), against the container's own /etc/passwd and /etc/group.
//!
//! The rootfs comes from an image, so it is hostile: /etc/passwd may be a symlink to a
//! host file, a fifo, or gigabytes long. [`RootfsUsers`] opens the files with
//! openat2(RESOLVE_IN_ROOT) under an fd of the rootfs, so every symlink resolves inside
//! it, refuses anything but a regular file, and reads at most [`MAX_ETC_FILE`] bytes.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{open, openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

/// Larger /etc/passwd or /etc/group files are refused rather than read.
pub const MAX_ETC_FILE: u64 = 4 << 20;

/// The highest uid/gid runc accepts.
const MAX_ID: i64 = i32::MAX as i64;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
    #[error("uids and gids must be in range 0-{MAX_ID}")]
    Range,
    #[error("opening the container's root {}: {source}", path.display())]
    Rootfs { path: PathBuf, source: nix::Error },
    #[error("reading the container's {name}: {source}")]
    Read {
        name: String,
        source: std::io::Error,
    },
    #[error("the container's {0} is larger than {MAX_ETC_FILE} bytes")]
    TooLarge(String),
    #[error("the container's {0} is not a regular file")]
    NotAFile(String),
}

/// Where the container's /etc/passwd and /etc/group come from.
pub trait UserLookup {
    /// The text of `/etc/<name>` in the container, or `None` when it does not exist.
    fn read_etc(&self, name: &str) -> Result<Option<String>, UserError>;
}

/// The files of a rootfs on disk, read without leaving it.
pub struct RootfsUsers {
    root: OwnedFd,
}

impl RootfsUsers {
    pub fn open(rootfs: &Path) -> Result<RootfsUsers, UserError> {
        let root = open(
            rootfs,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|source| UserError::Rootfs {
            path: rootfs.to_path_buf(),
            source,
        })?;
        Ok(RootfsUsers { root })
    }

    /// A root already open (a container's root held by `fs`).
    pub fn from_fd(root: OwnedFd) -> RootfsUsers {
        RootfsUsers { root }
    }
}

impl UserLookup for RootfsUsers {
    fn read_etc(&self, name: &str) -> Result<Option<String>, UserError> {
        let rel = format!("etc/{name}");
        // O_NONBLOCK: a fifo planted as /etc/passwd must not hang the engine.
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let fd = match openat2(&self.root, rel.as_str(), how) {
            Ok(fd) => fd,
            Err(nix::Error::ENOENT) | Err(nix::Error::ENOTDIR) => return Ok(None),
            Err(e) => {
                return Err(UserError::Read {
                    name: rel,
                    source: e.into(),
                })
            }
        };
        let file = std::fs::File::from(fd);
        let read_err = |source| UserError::Read {
            name: rel.clone(),
            source,
        };
        if !file.metadata().map_err(read_err)?.is_file() {
            return Err(UserError::NotAFile(rel));
        }
        let mut text = String::new();
        let mut limited = file.take(MAX_ETC_FILE + 1);
        let mut bytes = vec![];
        limited.read_to_end(&mut bytes).map_err(read_err)?;
        if bytes.len() as u64 > MAX_ETC_FILE {
            return Err(UserError::TooLarge(rel));
        }
        text.push_str(&String::from_utf8_lossy(&bytes));
        Ok(Some(text))
    }
}

/// Files given as text: for tests, and for images inspected without a rootfs.
#[derive(Debug, Default, Clone)]
pub struct StaticUsers {
    pub passwd: Option<String>,
    pub group: Option<String>,
}

impl UserLookup for StaticUsers {
    fn read_etc(&self, name: &str) -> Result<Option<String>, UserError> {
        Ok(match name {
            "passwd" => self.passwd.clone(),
            "group" => self.group.clone(),
            _ => None,
        })
    }
}

/// The ids the container's process runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    /// The primary gid first (Docker ≥ 20.10.24 puts it there, so a process cannot
    /// drop it with setgroups), then the groups listing the user, then `--group-add`.
    pub additional_gids: Vec<u32>,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Lines that do not parse are skipped, as libcontainer/user does.
fn passwd_entries(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

fn group_entries(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// A numeric id, range-checked as runc does; `None` when `s` is not a number.
fn numeric_id(s: &str) -> Result<Option<u32>, UserError> {
    match s.parse::<i64>() {
        Ok(n) if (0..=MAX_ID).contains(&n) => Ok(Some(u32::try_from(n).expect("in range"))),
        Ok(_) => Err(UserError::Range),
        Err(_) => Ok(None),
    }
}

/// Resolves `-u` (empty means root) and `--group-add`.
pub fn resolve(
    spec: &str,
    group_add: &[String],
    lookup: &dyn UserLookup,
) -> Result<ExecUser, UserError> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = lookup.read_etc("passwd")?;
    let entries = passwd.as_deref().map(passwd_entries).unwrap_or_default();
    let user_id = numeric_id(user_part)?;
    let matched = entries.iter().find(|e| match user_id {
        Some(id) => e.uid == id || e.name == user_part,
        None => e.name == user_part,
    });
    let (uid, mut gid, name) = match (matched, user_id) {
        (Some(e), _) => (e.uid, e.gid, Some(e.name.clone())),
        (None, Some(id)) => (id, 0, None),
        (None, None) if user_part.is_empty() => (0, 0, None),
        (None, None) => return Err(UserError::NoUser(user_part.to_string())),
    };

    let groups_text = if group_part.is_some() || name.is_some() || !group_add.is_empty() {
        lookup.read_etc("group")?
    } else {
        None
    };
    let groups = groups_text
        .as_deref()
        .map(group_entries)
        .unwrap_or_default();
    let mut additional = vec![];
    match group_part.filter(|g| !g.is_empty()) {
        Some(g) => gid = group_id(g, &groups)?,
        None => {
            if let Some(name) = &name {
                additional.extend(
                    groups
                        .iter()
                        .filter(|g| g.members.iter().any(|m| m == name))
                        .map(|g| g.gid),
                );
            }
        }
    }
    for g in group_add {
        additional.push(group_id(g, &groups)?);
    }
    let mut additional_gids = vec![gid];
    for g in additional {
        if !additional_gids.contains(&g) {
            additional_gids.push(g);
        }
    }
    Ok(ExecUser {
        uid,
        gid,
        additional_gids,
    })
}

/// A group by name, else by number (a number need not exist in /etc/group).
fn group_id(spec: &str, groups: &[GroupEntry]) -> Result<u32, UserError> {
    if let Some(g) = groups.iter().find(|g| g.name == spec) {
        return Ok(g.gid);
    }
    numeric_id(spec)?.ok_or_else(|| UserError::NoGroup(spec.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        daemon:x:1:1::/:/bin/false\n\
        broken line\n\
        app:x:1000:1001:App:/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:app,other\nappgrp:x:1001:\naudio:x:29:app\n";

    fn files() -> StaticUsers {
        StaticUsers {
            passwd: Some(PASSWD.into()),
            group: Some(GROUP.into()),
        }
    }

    /// (uid, gid, additional gids) or the error text.
    type Ids = Result<(u32, u32, Vec<u32>), String>;

    fn ids(spec: &str, add: &[&str]) -> Ids {
        let add: Vec<String> = add.iter().map(|s| s.to_string()).collect();
        resolve(spec, &add, &files())
            .map(|u| (u.uid, u.gid, u.additional_gids))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn table() {
        let cases: [(&str, &[&str], Ids); 12] = [
            ("", &[], Ok((0, 0, vec![0]))),
            ("root", &[], Ok((0, 0, vec![0]))),
            ("app", &[], Ok((1000, 1001, vec![1001, 10, 29]))),
            ("1000", &[], Ok((1000, 1001, vec![1001, 10, 29]))),
            ("app:wheel", &[], Ok((1000, 10, vec![10]))),
            ("app:500", &[], Ok((1000, 500, vec![500]))),
            ("4242", &[], Ok((4242, 0, vec![0]))),
            (
                "4242:4243",
                &["audio", "77"],
                Ok((4242, 4243, vec![4243, 29, 77])),
            ),
            (
                "nobody",
                &[],
                Err("unable to find user nobody: no matching entries in passwd file".into()),
            ),
            (
                "app:nogroup",
                &[],
                Err("unable to find group nogroup: no matching entries in group file".into()),
            ),
            (
                "0",
                &["nogroup"],
                Err("unable to find group nogroup: no matching entries in group file".into()),
            ),
            (
                "-1",
                &[],
                Err("uids and gids must be in range 0-2147483647".into()),
            ),
        ];
        for (spec, add, want) in cases {
            assert_eq!(ids(spec, add), want, "-u {spec:?} --group-add {add:?}");
        }
    }

    #[test]
    fn missing_files() {
        let none = StaticUsers::default();
        assert_eq!(resolve("123", &[], &none).unwrap().uid, 123);
        assert_eq!(resolve("123:45", &[], &none).unwrap().gid, 45);
        assert!(resolve("app", &[], &none).is_err());
    }

    #[test]
    fn rootfs_is_contained() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        // An absolute symlink must resolve inside the rootfs, not to the host's file.
        std::fs::write(dir.path().join("outside"), "evil:x:7:7::/:/bin/sh\n").unwrap();
        std::fs::write(root.join("real"), "inside:x:8:8::/:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("/real", root.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("../../outside", root.join("etc/group")).unwrap();
        let users = RootfsUsers::open(&root).unwrap();
        assert_eq!(resolve("inside", &[], &users).unwrap().uid, 8);
        // ../../outside is clamped at the root: it names /outside, which is absent.
        assert_eq!(users.read_etc("group").unwrap(), None);

        std::fs::remove_file(root.join("etc/passwd")).unwrap();
        nix::unistd::mkfifo(&root.join("etc/passwd"), Mode::from_bits_truncate(0o600)).unwrap();
        assert!(matches!(
            users.read_etc("passwd"),
            Err(UserError::NotAFile(_))
        ));

        std::fs::remove_file(root.join("etc/passwd")).unwrap();
        let f = std::fs::File::create(root.join("etc/passwd")).unwrap();
        f.set_len(MAX_ETC_FILE + 10).unwrap();
        assert!(matches!(
            users.read_etc("passwd"),
            Err(UserError::TooLarge(_))
        ));
    }
}
