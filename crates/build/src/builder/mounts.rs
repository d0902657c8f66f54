//! `RUN --mount`, as BuildKit's: what a RUN sees besides its image, never in the layer.
//!
//! - `type=cache`: a directory under `<root>/build/cache/` kept across steps and builds,
//!   named by its `id` (default: the target). Made on first use with `mode` (0755), `uid`
//!   and `gid` (0), seeded from `from` (a stage, an image, or the context) at `source`.
//!   `sharing=shared` (the default) lets every RUN use it at once (a shared flock),
//!   `locked` makes them take turns (exclusive), `private` gives a RUN that finds it in
//!   use another instance of its own (`<key>-1`, …). `builder prune` removes those not in
//!   use.
//! - `type=bind`: `source` (default the root) of the context or of `from`, read-only
//!   unless `rw`, whose writes are discarded. A read-only bind of the context is the
//!   context's own directory when `.dockerignore` leaves nothing out; otherwise (and for
//!   `rw`, and for stages and images, whose roots are detached overlays) the source is
//!   copied into the step's scratch directory first. The step's cache key covers the
//!   source's content, as COPY's does.
//! - `type=tmpfs`: a tmpfs (`size` optional).
//!
//! The mount points the runtime has to create for them are removed from the layer again
//! (when still empty and not in the image), as BuildKit's stub cleaner does.

use super::{err, BuildError};
use crate::instructions::{Mount, MountKind};
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::path::{Path, PathBuf};

/// How RUNs share one cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

/// A `--mount` checked and with its defaults, its target absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    Cache {
        target: String,
        id: String,
        sharing: Sharing,
        mode: u32,
        uid: u32,
        gid: u32,
        from: Option<String>,
        source: String,
        readonly: bool,
    },
    Bind {
        target: String,
        from: Option<String>,
        source: String,
        rw: bool,
    },
    Tmpfs {
        target: String,
        size: Option<String>,
    },
}

impl Planned {
    pub fn target(&self) -> &str {
        match self {
            Planned::Cache { target, .. }
            | Planned::Bind { target, .. }
            | Planned::Tmpfs { target, .. } => target,
        }
    }
}

/// Checks the mounts of a RUN whose working directory is `workdir` (relative targets are
/// under it, as in BuildKit).
pub fn plan(mounts: &[Mount], workdir: &str) -> Result<Vec<Planned>, BuildError> {
    let mut out = Vec::new();
    for m in mounts {
        let kind = match m.kind {
            MountKind::Bind => "bind",
            MountKind::Cache => "cache",
            MountKind::Tmpfs => "tmpfs",
            MountKind::Secret => "secret",
            MountKind::Ssh => "ssh",
        };
        if matches!(m.kind, MountKind::Secret | MountKind::Ssh) {
            return Err(other!("RUN --mount=type={kind} is not supported yet"));
        }
        let raw = m
            .target
            .as_deref()
            .ok_or_else(|| other!("--mount=type={kind}: a target is needed"))?;
        let target = if raw.starts_with('/') {
            super::clean_abs(raw)
        } else {
            super::clean_abs(&format!("{workdir}/{raw}"))
        };
        if target == "/" {
            return Err(other!("--mount=type={kind}: cannot mount over /"));
        }
        let allowed: &[&str] = match m.kind {
            MountKind::Cache => &["mode", "uid", "gid"],
            MountKind::Tmpfs => &["size"],
            _ => &[],
        };
        for (key, _) in &m.options {
            if !allowed.contains(&key.as_str()) {
                return Err(other!("--mount=type={kind}: unknown option {key:?}"));
            }
        }
        let option = |key: &str| {
            m.options
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let number = |key: &str, radix: u32, default: u32| -> Result<u32, BuildError> {
            match option(key) {
                None => Ok(default),
                Some(v) => u32::from_str_radix(v, radix)
                    .map_err(|_| other!("--mount=type={kind}: invalid {key}={v}")),
            }
        };
        let source = m.source.clone().unwrap_or_else(|| "/".into());
        out.push(match m.kind {
            MountKind::Cache => Planned::Cache {
                id: m.id.clone().unwrap_or_else(|| target.clone()),
                target,
                sharing: match m.sharing.as_deref() {
                    None | Some("shared") => Sharing::Shared,
                    Some("private") => Sharing::Private,
                    _ => Sharing::Locked,
                },
                mode: number("mode", 8, 0o755)?,
                uid: number("uid", 10, 0)?,
                gid: number("gid", 10, 0)?,
                from: m.from.clone(),
                source,
                readonly: m.readonly,
            },
            MountKind::Bind => Planned::Bind {
                target,
                from: m.from.clone(),
                source,
                rw: !m.readonly,
            },
            _ => Planned::Tmpfs {
                target,
                size: option("size").map(str::to_string),
            },
        });
    }
    let mut targets: Vec<&str> = out.iter().map(Planned::target).collect();
    targets.sort();
    if let Some(w) = targets.windows(2).find(|w| w[0] == w[1]) {
        return Err(other!("two --mounts on {}", w[0]));
    }
    Ok(out)
}

/// A cache mount's directory, locked as its sharing says for as long as this lives.
pub struct CacheDir {
    pub path: PathBuf,
    _lock: Flock<File>,
}

/// Where cache mounts live.
pub fn cache_root(root: &Path) -> PathBuf {
    root.join("build").join("cache")
}

fn cache_key(id: &str) -> String {
    image::digest::Digest::sha256_of(format!("cache-mount\n{id}").as_bytes())
        .hex()
        .to_string()
}

fn open_lock(path: &Path) -> Result<File, BuildError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| other!("{}: {e}", path.display()))
}

/// The cache mount `id`'s directory, made (mode, owner, then `seed` fills it) if it is
/// not there yet, and locked for `sharing`.
pub fn open_cache(
    root: &Path,
    id: &str,
    sharing: Sharing,
    (mode, uid, gid): (u32, u32, u32),
    seed: impl FnOnce(&Path) -> Result<(), BuildError>,
) -> Result<CacheDir, BuildError> {
    let dir = cache_root(root);
    std::fs::create_dir_all(&dir).map_err(|e| other!("{}: {e}", dir.display()))?;
    let key = cache_key(id);
    let mut n = 0;
    let (path, lock) = loop {
        let name = format!("{key}-{n}");
        let file = open_lock(&dir.join(format!("{name}.lock")))?;
        let how = match sharing {
            Sharing::Shared => FlockArg::LockShared,
            Sharing::Locked => FlockArg::LockExclusive,
            Sharing::Private => FlockArg::LockExclusiveNonblock,
        };
        match Flock::lock(file, how) {
            Ok(lock) => break (dir.join(name), lock),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) if sharing == Sharing::Private => n += 1,
            Err((_, e)) => return Err(other!("locking the cache mount {id}: {e}")),
        }
    };
    if !path.exists() {
        // Made aside and renamed, so nobody sees it half seeded.
        let new = tempfile::Builder::new()
            .prefix(".new-")
            .tempdir_in(&dir)
            .map_err(|e| other!("{}: {e}", dir.display()))?;
        seed(new.path())?;
        let p = new.path();
        nix::unistd::chown(
            p,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .map_err(|e| other!("{}: {e}", p.display()))?;
        nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            p,
            nix::sys::stat::Mode::from_bits_truncate(mode & 0o7777),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| other!("{}: {e}", p.display()))?;
        match std::fs::rename(p, &path) {
            Ok(()) => {
                let _ = new.keep();
            }
            // Another build made it meanwhile (shared users race here): use theirs.
            Err(_) if path.exists() => {}
            Err(e) => return Err(other!("{}: {e}", path.display())),
        }
    }
    Ok(CacheDir { path, _lock: lock })
}

/// Removes the cache mounts no RUN is using, with their locks; returns how many went.
pub fn prune_caches(root: &Path) -> Result<usize, BuildError> {
    let dir = cache_root(root);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(other!("{}: {e}", dir.display())),
    };
    let mut removed = 0;
    for entry in entries {
        let name = entry.map_err(err)?.file_name();
        let name = name.to_string_lossy();
        if let Some(base) = name.strip_suffix(".lock") {
            let lock_path = dir.join(&*name);
            let Ok(lock) = Flock::lock(open_lock(&lock_path)?, FlockArg::LockExclusiveNonblock)
            else {
                continue;
            };
            let path = dir.join(base);
            if path.exists() {
                std::fs::remove_dir_all(&path).map_err(|e| other!("{}: {e}", path.display()))?;
                removed += 1;
            }
            let _ = std::fs::remove_file(&lock_path);
            drop(lock);
        } else if name.starts_with(".new-") {
            // A seed interrupted by a kill; nobody renames it any more.
            let path = dir.join(&*name);
            std::fs::remove_dir_all(&path).map_err(|e| other!("{}: {e}", path.display()))?;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(kind: MountKind, target: &str, options: &[(&str, &str)]) -> Mount {
        Mount {
            kind,
            target: Some(target.into()),
            source: None,
            from: None,
            id: None,
            readonly: kind == MountKind::Bind,
            sharing: None,
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn plans_take_buildkit_defaults() {
        let plans = plan(
            &[
                mount(MountKind::Cache, "cache", &[("mode", "0700"), ("uid", "5")]),
                mount(MountKind::Bind, "/src/", &[]),
                mount(MountKind::Tmpfs, "/t", &[("size", "1m")]),
            ],
            "/work",
        )
        .unwrap();
        assert_eq!(
            plans[0],
            Planned::Cache {
                target: "/work/cache".into(),
                id: "/work/cache".into(),
                sharing: Sharing::Shared,
                mode: 0o700,
                uid: 5,
                gid: 0,
                from: None,
                source: "/".into(),
                readonly: false,
            }
        );
        assert_eq!(
            plans[1],
            Planned::Bind {
                target: "/src".into(),
                from: None,
                source: "/".into(),
                rw: false
            }
        );
        assert_eq!(
            plans[2],
            Planned::Tmpfs {
                target: "/t".into(),
                size: Some("1m".into())
            }
        );
    }

    #[test]
    fn bad_mounts_are_refused() {
        for (m, want) in [
            (
                mount(MountKind::Secret, "/s", &[]),
                "type=secret is not supported",
            ),
            (mount(MountKind::Bind, "/", &[]), "cannot mount over /"),
            (
                mount(MountKind::Cache, "/c", &[("mode", "9")]),
                "invalid mode=9",
            ),
            (
                mount(MountKind::Bind, "/b", &[("size", "1")]),
                "unknown option \"size\"",
            ),
        ] {
            let e = plan(&[m], "/").unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
        let twice = [
            mount(MountKind::Tmpfs, "/x", &[]),
            mount(MountKind::Cache, "/x/", &[]),
        ];
        assert!(plan(&twice, "/")
            .unwrap_err()
            .to_string()
            .contains("two --mounts on /x"));
    }

    #[test]
    fn cache_sharing_locks_as_buildkit_shares() {
        let tmp = tempfile::tempdir().unwrap();
        let seeded = std::cell::Cell::new(0);
        let seed = |p: &Path| {
            seeded.set(seeded.get() + 1);
            std::fs::write(p.join("seed"), "x").map_err(err)
        };
        let owner = (0o750, 0, 0);
        let a = open_cache(tmp.path(), "id", Sharing::Shared, owner, seed).unwrap();
        let b = open_cache(tmp.path(), "id", Sharing::Shared, owner, seed).unwrap();
        assert_eq!(a.path, b.path, "shared: one directory");
        assert_eq!(seeded.get(), 1, "seeded once");
        assert!(a.path.join("seed").exists());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&a.path).unwrap().permissions().mode() & 0o7777,
            0o750
        );
        // In use: a private user gets an instance of its own.
        let p = open_cache(tmp.path(), "id", Sharing::Private, owner, seed).unwrap();
        assert_ne!(p.path, a.path);
        assert_eq!(seeded.get(), 2);
        // Another id is another directory.
        let c = open_cache(tmp.path(), "other", Sharing::Locked, owner, seed).unwrap();
        assert_ne!(c.path, a.path);
        // Prune takes only what nobody holds.
        drop(p);
        assert_eq!(prune_caches(tmp.path()).unwrap(), 1);
        assert!(a.path.exists() && c.path.exists());
        drop((a, b, c));
        assert_eq!(prune_caches(tmp.path()).unwrap(), 2);
        let left: Vec<_> = std::fs::read_dir(cache_root(tmp.path())).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
