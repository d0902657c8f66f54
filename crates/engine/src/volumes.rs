//! Volumes as Docker's `local` driver keeps them: a row per volume in `berth.db`, data in
//! `<root>/volumes/NAME/_data`, and a row per (container, mount destination) saying which
//! volume a container mounts there.
//!
//! Schema (beside the containers table, same connection set-up):
//!
//! ```text
//! volumes            name TEXT PRIMARY KEY    [a-zA-Z0-9][a-zA-Z0-9_.-]+, or 64 random hex
//!                    driver TEXT              always "local"
//!                    created INTEGER          Unix nanoseconds
//!                    labels, options TEXT     JSON objects, or null when none were given
//!                    anonymous INTEGER        created without a name (run -v /path, image
//!                                             VOLUMEs, volume create without a name)
//! container_volumes  container → containers(id) ON DELETE CASCADE
//!                    destination TEXT         the mount path in the container
//!                    volume → volumes(name)   no cascade: a volume in use cannot go
//!                    anonymous INTEGER        the container asked for no name: `rm -v` and
//!                                             `--rm` remove the volume with the container
//!                    populate INTEGER         copy-up still to do at the next start
//!                    PRIMARY KEY (container, destination)
//! ```
//!
//! Concurrency: many `berth` processes at once. Creating and removing volumes (rows and
//! directories together) holds an flock of `volumes/.lock`, so a removal never deletes the
//! directory of a volume being re-created under the same name; the row changes are single
//! `BEGIN IMMEDIATE` transactions. Copy-up and the mounts of volumes with options hold an
//! flock of the volume's own directory.
//!
//! Volumes with options (`-o type=tmpfs,device=tmpfs,o=size=64m`) are mounted on `_data`
//! when a container using them starts and unmounted when the last such container stops,
//! as Docker's local driver does (a tmpfs volume is empty again after that).

mod copy_up;

use crate::flags::{MountSpec, RunOptions, VolumeOptions};
use image::meta::rusqlite::{self, params, Connection, OptionalExtension, TransactionBehavior};
use nix::fcntl::{Flock, FlockArg};
use nix::mount::{MntFlags, MsFlags};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use copy_up::Outcome as CopyOutcome;

/// The label Docker (≥ 23) puts on volumes created without a name; `volume prune` without
/// `--all` removes only these.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// The only driver there is.
pub const LOCAL: &str = "local";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS volumes (
    name      TEXT PRIMARY KEY,
    driver    TEXT NOT NULL,
    created   INTEGER NOT NULL,
    labels    TEXT NOT NULL,
    options   TEXT NOT NULL,
    anonymous INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS container_volumes (
    container   TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
    destination TEXT NOT NULL,
    volume      TEXT NOT NULL REFERENCES volumes(name),
    anonymous   INTEGER NOT NULL,
    populate    INTEGER NOT NULL,
    PRIMARY KEY (container, destination)
);
CREATE INDEX IF NOT EXISTS container_volumes_volume ON container_volumes(volume);
";

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("get {0}: no such volume")]
    NoSuchVolume(String),
    #[error("remove {name}: volume is in use - [{}]", containers.join(", "))]
    InUse {
        name: String,
        containers: Vec<String>,
    },
    #[error("create {0}: \"{0}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path")]
    InvalidName(String),
    #[error(
        "create {name}: error looking up volume plugin {driver}: plugin \"{driver}\" not found"
    )]
    UnknownDriver { name: String, driver: String },
    #[error("create {name}: {reason}")]
    InvalidOption { name: String, reason: String },
    #[error("error while mounting volume '{}': failed to mount local volume: {reason}", path.display())]
    Mount { path: PathBuf, reason: String },
    #[error("volume {name}: {} is still mounted", path.display())]
    StillMounted { name: String, path: PathBuf },
    #[error("copying image content into volume {name}: {source}")]
    CopyUp {
        name: String,
        source: copy_up::CopyError,
    },
    #[error("volume database {}: {action}: {source}", path.display())]
    Db {
        path: PathBuf,
        action: &'static str,
        source: rusqlite::Error,
    },
    #[error("volume database: {what} of volume {name} is not valid: {reason}")]
    Corrupt {
        name: String,
        what: &'static str,
        reason: String,
    },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, VolumeError>;

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> VolumeError + 'a {
    move |source| VolumeError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// One volume as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    pub driver: String,
    /// Unix nanoseconds.
    pub created: i64,
    /// `None` when created without any (Docker shows `null`).
    pub labels: Option<BTreeMap<String, String>>,
    pub options: Option<BTreeMap<String, String>>,
    pub anonymous: bool,
}

impl Volume {
    pub fn has_options(&self) -> bool {
        self.options.as_ref().is_some_and(|o| !o.is_empty())
    }
}

/// What `volume create` asks for.
#[derive(Debug, Clone, Default)]
pub struct NewVolume {
    /// `None`: a random 64-hex name, and the volume is anonymous.
    pub name: Option<String>,
    pub driver: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

/// A volume a container mounts: from `-v`/`--mount` or an image VOLUME.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    pub destination: String,
    /// `None`: an anonymous volume, made for this container.
    pub name: Option<String>,
    /// Copy the image's content into the volume if it is empty (not `nocopy`).
    pub copy: bool,
    /// How to create the volume if it does not exist (`--mount`'s `volume-*` keys).
    pub create: VolumeOptions,
}

/// One of a container's volume mounts, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub destination: String,
    pub volume: String,
    pub anonymous: bool,
    pub populate: bool,
}

/// The volumes a container mounts: its `-v`/`--mount` volumes, then the image's VOLUMEs
/// that no mount of the user covers (each an anonymous volume; destinations cleaned).
pub fn wanted(run: &RunOptions, image_volumes: &[String]) -> Vec<Want> {
    let mut out: Vec<Want> = Vec::new();
    for m in &run.mounts {
        if let MountSpec::Volume {
            name,
            target,
            nocopy,
            create,
            ..
        } = m
        {
            out.push(Want {
                destination: target.clone(),
                name: name.clone(),
                copy: !nocopy,
                create: create.clone(),
            });
        }
    }
    let taken: HashSet<String> = run.mounts.iter().map(|m| m.target().to_string()).collect();
    for v in image_volumes {
        let dest = crate::flags::clean_path(v);
        if !taken.contains(&dest) && !out.iter().any(|w| w.destination == dest) {
            out.push(Want {
                destination: dest,
                name: None,
                copy: true,
                create: VolumeOptions::default(),
            });
        }
    }
    out
}

/// The image config's `Volumes` keys (a whole config blob, or its `config` object).
pub fn image_volumes(config: &Value) -> Vec<String> {
    let inner = match config.get("config") {
        Some(c) if c.is_object() => c,
        _ => config,
    };
    inner["Volumes"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Docker's rule for local volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    crate::flags::valid_volume_name(name)
}

/// The local driver's options, checked as Docker checks them.
pub fn validate_options(name: &str, options: &BTreeMap<String, String>) -> Result<()> {
    let invalid = |reason: String| VolumeError::InvalidOption {
        name: name.to_string(),
        reason,
    };
    for key in options.keys() {
        if !matches!(key.as_str(), "type" | "o" | "device" | "size") {
            return Err(invalid(format!("invalid option: {key:?}")));
        }
    }
    if let Some(size) = options.get("size") {
        let bytes = crate::flags::parse_size(size).map_err(|e| invalid(e.to_string()))?;
        if bytes > 0 {
            return Err(invalid("quota size requested but no quota support".into()));
        }
    }
    for (opt, needs) in [
        ("device", &["type"][..]),
        ("o", &["device", "type"][..]),
        ("type", &["device"][..]),
    ] {
        if options.contains_key(opt) {
            if let Some(missing) = needs.iter().find(|n| !options.contains_key(**n)) {
                return Err(invalid(format!("missing required option: {missing:?}")));
            }
        }
    }
    Ok(())
}

/// Volumes of one `--root`.
pub struct Volumes {
    /// `<root>/volumes`.
    dir: PathBuf,
    db: PathBuf,
    conn: image::meta::Shared,
}

/// What a container's start needs for its spec: named volumes by name, anonymous ones by
/// destination, each its host directory.
pub type Prepared = (HashMap<String, PathBuf>, HashMap<String, PathBuf>);

impl Volumes {
    /// Opens the volume tables in `<root>/berth.db` (the containers table must exist: the
    /// engine's store creates it) and makes `<root>/volumes`.
    pub fn open(root: &Path) -> Result<Volumes> {
        let db = root.join("berth.db");
        let conn = image::meta::connect(root).map_err(db_err(&db, "opening"))?;
        Volumes::open_shared(root, std::sync::Arc::new(Mutex::new(conn)))
    }

    /// The same on a connection other components use too (the image store's).
    pub fn open_shared(root: &Path, conn: image::meta::Shared) -> Result<Volumes> {
        let db = root.join("berth.db");
        image::meta::ensure_tables(
            &conn.lock().unwrap_or_else(|e| e.into_inner()),
            "container_volumes",
            SCHEMA,
        )
        .map_err(db_err(&db, "creating the volume tables"))?;
        let dir = root.join("volumes");
        // 0701 as Docker: others may pass through to a mounted `_data`, not list names.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o701)
            .create(&dir)
            .map_err(io("creating", &dir))?;
        Ok(Volumes { dir, db, conn })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `<root>/volumes/NAME`.
    pub fn dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Where the data is and what containers mount: `<root>/volumes/NAME/_data`.
    pub fn mountpoint(&self, name: &str) -> PathBuf {
        self.dir(name).join("_data")
    }

    /// Serialises creating and removing volumes across processes.
    fn lock_all(&self) -> Result<Flock<fs::File>> {
        let path = self.dir.join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("opening", &path))?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| VolumeError::Io {
            what: "locking",
            path,
            source: e.into(),
        })
    }

    /// Serialises copy-up and mounting of one volume.
    fn lock_one(&self, name: &str) -> Result<Flock<fs::File>> {
        lock_dir(&self.dir(name), FlockArg::LockExclusive)
    }

    /// `<root>/volumes/NAME` (0701) and its `_data` (0755), as Docker makes them.
    fn make_dirs(&self, name: &str) -> Result<()> {
        let dir = self.dir(name);
        match fs::DirBuilder::new().mode(0o701).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("creating volume directory", &dir)(e)),
        }
        let data = self.mountpoint(name);
        match fs::DirBuilder::new().mode(0o755).create(&data) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(io("creating volume directory", &data)(e)),
        }
    }

    /// `docker volume create`: the new volume, or the existing one of that name as it is.
    pub fn create(&self, req: NewVolume) -> Result<Volume> {
        let anonymous = req.name.is_none();
        let name = req.name.clone().unwrap_or_else(crate::names::new_id);
        if !valid_name(&name) {
            return Err(VolumeError::InvalidName(name));
        }
        let driver = req.driver.clone().unwrap_or_else(|| LOCAL.to_string());
        if driver != LOCAL {
            return Err(VolumeError::UnknownDriver { name, driver });
        }
        validate_options(&name, &req.options)?;
        let mut labels = req.labels.clone();
        if anonymous {
            labels.insert(ANONYMOUS_LABEL.to_string(), String::new());
        }
        let v = Volume {
            anonymous: anonymous || labels.contains_key(ANONYMOUS_LABEL),
            name,
            driver,
            created: crate::container::now_nanos(),
            labels: Some(labels),
            options: Some(req.options),
        };
        let _lock = self.lock_all()?;
        let inserted = {
            let conn = self.conn();
            insert_volume(&conn, &v).map_err(db_err(&self.db, "adding a volume"))?
        };
        if !inserted {
            return self.get(&v.name);
        }
        if let Err(e) = self.make_dirs(&v.name) {
            let _ = self
                .conn()
                .execute("DELETE FROM volumes WHERE name = ?1", [&v.name]);
            let _ = fs::remove_dir_all(self.dir(&v.name));
            return Err(e);
        }
        Ok(v)
    }

    pub fn get(&self, name: &str) -> Result<Volume> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT name, driver, created, labels, options, anonymous FROM volumes WHERE name = ?1",
                [name],
                raw_row,
            )
            .optional()
            .map_err(db_err(&self.db, "reading a volume"))?;
        match row {
            Some(raw) => decode(raw),
            None => Err(VolumeError::NoSuchVolume(name.to_string())),
        }
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<Volume>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT name, driver, created, labels, options, anonymous FROM volumes ORDER BY name",
            )
            .map_err(db_err(&self.db, "listing volumes"))?;
        let rows = stmt
            .query_map([], raw_row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(db_err(&self.db, "listing volumes"))?;
        rows.into_iter().map(decode).collect()
    }

    /// The containers (any state) that mount each volume, sorted.
    pub fn users(&self) -> Result<HashMap<String, Vec<String>>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT DISTINCT volume, container FROM container_volumes ORDER BY container",
            )
            .map_err(db_err(&self.db, "listing volume users"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(db_err(&self.db, "listing volume users"))?;
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for (volume, container) in rows {
            out.entry(volume).or_default().push(container);
        }
        Ok(out)
    }

    /// `docker volume rm`: refused while any container (running or not) mounts it.
    /// With `force` a missing volume is not an error.
    pub fn remove(&self, name: &str, force: bool) -> Result<()> {
        let lock = self.lock_all()?;
        let trash = {
            let mut conn = self.conn();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err(&self.db, "removing a volume"))?;
            let exists: bool = tx
                .query_row("SELECT 1 FROM volumes WHERE name = ?1", [name], |_| Ok(()))
                .optional()
                .map_err(db_err(&self.db, "removing a volume"))?
                .is_some();
            if !exists {
                return if force {
                    Ok(())
                } else {
                    Err(VolumeError::NoSuchVolume(name.to_string()))
                };
            }
            let containers: Vec<String> = {
                let mut stmt = tx
                    .prepare(
                        "SELECT DISTINCT container FROM container_volumes WHERE volume = ?1 ORDER BY container",
                    )
                    .map_err(db_err(&self.db, "removing a volume"))?;
                let rows = stmt
                    .query_map([name], |r| r.get(0))
                    .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
                    .map_err(db_err(&self.db, "removing a volume"))?;
                rows
            };
            if !containers.is_empty() {
                return Err(VolumeError::InUse {
                    name: name.to_string(),
                    containers,
                });
            }
            tx.execute("DELETE FROM volumes WHERE name = ?1", [name])
                .map_err(db_err(&self.db, "removing a volume"))?;
            // The directory goes out of the way before the row is gone for good, so a
            // failure leaves both.
            let trash = self.move_away(name)?;
            if let Err(e) = tx.commit() {
                if let Some(t) = &trash {
                    let _ = fs::rename(t, self.dir(name));
                }
                return Err(db_err(&self.db, "removing a volume")(e));
            }
            trash
        };
        let Some(trash) = trash else {
            return Ok(());
        };
        // Deleted outside the lock (a big volume takes a while), but marked as ours
        // first, so clean_trash leaves it alone.
        let mine = lock_dir(&trash, FlockArg::LockExclusive)?;
        drop(lock);
        let removed = fs::remove_dir_all(&trash).map_err(io("removing", &trash));
        drop(mine);
        removed
    }

    /// Unmounts a left-over mount of the volume and renames its directory to
    /// `.removing-NAME-RANDOM`; `None` if it had none.
    fn move_away(&self, name: &str) -> Result<Option<PathBuf>> {
        let dir = self.dir(name);
        if fs::symlink_metadata(&dir).is_err() {
            return Ok(None);
        }
        let data = self.mountpoint(name);
        if is_mounted(&data) {
            let _ = nix::mount::umount2(&data, MntFlags::UMOUNT_NOFOLLOW);
        }
        // Deleting through a mount would delete what is mounted (a bind of a host
        // directory): refuse instead.
        if let Some(path) = mounts_under(&dir).into_iter().next() {
            return Err(VolumeError::StillMounted {
                name: name.to_string(),
                path,
            });
        }
        let trash = self.dir.join(format!(
            ".removing-{name}-{}",
            &crate::names::new_id()[..12]
        ));
        fs::rename(&dir, &trash).map_err(io("removing", &dir))?;
        Ok(Some(trash))
    }

    /// Deletes what removals killed half-way left under `.removing-*`. A live removal may
    /// be deleting its own at the same time; whoever comes second finds less to do.
    fn clean_trash(&self) {
        let stale: Vec<(PathBuf, Flock<fs::File>)> = {
            let Ok(_lock) = self.lock_all() else { return };
            let Ok(entries) = fs::read_dir(&self.dir) else {
                return;
            };
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(".removing-"))
                .filter(|e| mounts_under(&e.path()).is_empty())
                // A removal in progress holds its lock: skip it.
                .filter_map(|e| {
                    let lock = lock_dir(&e.path(), FlockArg::LockExclusiveNonblock).ok()?;
                    Some((e.path(), lock))
                })
                .collect()
        };
        for (path, _lock) in stale {
            let _ = fs::remove_dir_all(&path);
        }
    }

    /// Bytes in a volume as Docker counts them: every non-directory once (hard links
    /// counted once), symlinks by their own size.
    pub fn size(&self, name: &str) -> u64 {
        fn walk(dir: &Path, seen: &mut HashSet<(u64, u64)>, total: &mut u64) {
            let Ok(rd) = fs::read_dir(dir) else { return };
            for e in rd.flatten() {
                let Ok(m) = fs::symlink_metadata(e.path()) else {
                    continue;
                };
                if m.is_dir() {
                    walk(&e.path(), seen, total);
                } else if m.len() > 0 && seen.insert((m.dev(), m.ino())) {
                    *total += m.len();
                }
            }
        }
        let mut seen = HashSet::new();
        let mut total = 0;
        walk(&self.mountpoint(name), &mut seen, &mut total);
        total
    }

    /// `docker volume prune`: unused local volumes without options, only anonymous ones
    /// unless `all`, that `keep` does not keep. Returns the names removed and their size.
    pub fn prune(&self, all: bool, keep: &dyn Fn(&Volume) -> bool) -> Result<(Vec<String>, u64)> {
        self.clean_trash();
        let users = self.users()?;
        let mut deleted = Vec::new();
        let mut reclaimed = 0;
        for v in self.list()? {
            if v.driver != LOCAL
                || users.contains_key(&v.name)
                || v.has_options()
                || !(all || v.anonymous)
                || keep(&v)
            {
                continue;
            }
            let size = self.size(&v.name);
            match self.remove(&v.name, false) {
                Ok(()) => {
                    deleted.push(v.name);
                    reclaimed += size;
                }
                // Taken by a container since it was listed, or removed by someone else.
                Err(VolumeError::InUse { .. } | VolumeError::NoSuchVolume(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((deleted, reclaimed))
    }

    /// Records the volumes container `id` mounts, creating those that do not exist (named
    /// ones under their name, anonymous ones under a random name). Destinations already
    /// recorded are kept as they are, so this is also how a container created before
    /// volumes were recorded gets its rows. Returns all the container's mounts (none
    /// without `wants`). On error nothing this call made is left.
    pub fn attach(&self, id: &str, wants: &[Want]) -> Result<Vec<Attached>> {
        if wants.is_empty() {
            return Ok(Vec::new());
        }
        for w in wants {
            if let Some(n) = &w.name {
                if !valid_name(n) {
                    return Err(VolumeError::InvalidName(n.clone()));
                }
            }
        }
        let _lock = self.lock_all()?;
        let now = crate::container::now_nanos();
        let mut created = Vec::new();
        let mut added = Vec::new();
        let db = |e| db_err(&self.db, "recording a container's volumes")(e);
        let result = (|| -> Result<()> {
            let mut conn = self.conn();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            for w in wants {
                let have: Option<String> = tx
                    .query_row(
                        "SELECT volume FROM container_volumes WHERE container = ?1 AND destination = ?2",
                        params![id, w.destination],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db)?;
                if have.is_some() {
                    continue;
                }
                let v = new_volume(w, now)?;
                if insert_volume(&tx, &v).map_err(db)? {
                    created.push(v.name.clone());
                }
                tx.execute(
                    "INSERT INTO container_volumes (container, destination, volume, anonymous, populate)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, w.destination, v.name, w.name.is_none(), w.copy],
                )
                .map_err(db)?;
                added.push(w.destination.clone());
            }
            tx.commit().map_err(db)
        })();
        result?;
        let rows = self.of_container(id);
        let dirs = rows.as_ref().map_or(Ok(()), |rows| {
            rows.iter().try_for_each(|a| self.make_dirs(&a.volume))
        });
        match (rows, dirs) {
            (Ok(rows), Ok(())) => Ok(rows),
            (Err(e), _) | (_, Err(e)) => {
                self.undo_attach(id, &added, &created);
                Err(e)
            }
        }
    }

    /// Takes back an [`attach`](Self::attach) whose directories could not be made.
    fn undo_attach(&self, id: &str, added: &[String], created: &[String]) {
        {
            let conn = self.conn();
            for destination in added {
                let _ = conn.execute(
                    "DELETE FROM container_volumes WHERE container = ?1 AND destination = ?2",
                    params![id, destination],
                );
            }
            for name in created {
                let _ = conn.execute("DELETE FROM volumes WHERE name = ?1", [name]);
            }
        }
        for name in created {
            let _ = fs::remove_dir_all(self.dir(name));
        }
    }

    /// A container's volume mounts, by destination.
    pub fn of_container(&self, id: &str) -> Result<Vec<Attached>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT destination, volume, anonymous, populate FROM container_volumes
                 WHERE container = ?1 ORDER BY destination",
            )
            .map_err(db_err(&self.db, "reading a container's volumes"))?;
        let rows = stmt
            .query_map([id], |r| {
                Ok(Attached {
                    destination: r.get(0)?,
                    volume: r.get(1)?,
                    anonymous: r.get(2)?,
                    populate: r.get(3)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(db_err(&self.db, "reading a container's volumes"))?;
        Ok(rows)
    }

    /// Before container `id` starts, with its rootfs mounted at `rootfs`: records volumes
    /// it lacks rows for, mounts volumes that have options, and copies the image's content
    /// into volumes still to be populated. Returns the host directories for the spec.
    /// On error, mounts it made are released by [`release`](Self::release).
    pub fn prepare(&self, id: &str, wants: &[Want], rootfs: &Path) -> Result<Prepared> {
        let mut named = HashMap::new();
        let mut anonymous = HashMap::new();
        if wants.is_empty() {
            return Ok((named, anonymous));
        }
        let mut rows = self.of_container(id)?;
        if wants
            .iter()
            .any(|w| !rows.iter().any(|r| r.destination == w.destination))
        {
            rows = self.attach(id, wants)?;
        }
        let mut mounted = HashSet::new();
        for a in &rows {
            if mounted.insert(a.volume.clone()) {
                self.mount(&a.volume)?;
            }
        }
        for a in rows.iter().filter(|a| a.populate) {
            self.populate(id, a, rootfs)?;
        }
        for w in wants {
            let Some(a) = rows.iter().find(|r| r.destination == w.destination) else {
                continue;
            };
            let dir = self.mountpoint(&a.volume);
            match &w.name {
                Some(n) => {
                    named.insert(n.clone(), dir);
                }
                None => {
                    anonymous.insert(w.destination.clone(), dir);
                }
            }
        }
        Ok((named, anonymous))
    }

    /// Copy-up of one mount, once per container (Docker copies when the container is
    /// created; here it happens at its first start, when the rootfs is mounted).
    fn populate(&self, id: &str, a: &Attached, rootfs: &Path) -> Result<CopyOutcome> {
        let _lock = self.lock_one(&a.volume)?;
        let data = self.mountpoint(&a.volume);
        let outcome = copy_up::copy_up(rootfs, &a.destination, &data).map_err(|source| {
            VolumeError::CopyUp {
                name: a.volume.clone(),
                source,
            }
        })?;
        self.conn()
            .execute(
                "UPDATE container_volumes SET populate = 0 WHERE container = ?1 AND destination = ?2",
                params![id, a.destination],
            )
            .map_err(db_err(&self.db, "recording a copy-up"))?;
        Ok(outcome)
    }

    /// Mounts a volume with options on its `_data`, unless it is mounted already.
    fn mount(&self, name: &str) -> Result<()> {
        let v = self.get(name)?;
        // Recreated if it went missing (a crash between the row and the directory).
        self.make_dirs(name)?;
        let Some(options) = v.options.filter(|o| !o.is_empty()) else {
            return Ok(());
        };
        let _lock = self.lock_one(name)?;
        let data = self.mountpoint(name);
        if is_mounted(&data) {
            return Ok(());
        }
        mount_local(&options, &data)
    }

    /// After container `id` stopped (or failed to start): unmounts its volumes with
    /// options that no other live container mounts.
    pub fn release(&self, id: &str) -> Result<()> {
        let names: Vec<String> = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT DISTINCT v.name FROM container_volumes cv JOIN volumes v ON v.name = cv.volume
                     WHERE cv.container = ?1 AND v.options NOT IN ('null', '{}')",
                )
                .map_err(db_err(&self.db, "reading a container's volumes"))?;
            let rows = stmt
                .query_map([id], |r| r.get(0))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
                .map_err(db_err(&self.db, "reading a container's volumes"))?;
            rows
        };
        for name in names {
            let _lock = self.lock_one(&name)?;
            let live: i64 = self
                .conn()
                .query_row(
                    "SELECT COUNT(*) FROM container_volumes cv JOIN containers c ON c.id = cv.container
                     WHERE cv.volume = ?1 AND cv.container != ?2
                       AND c.state IN ('starting', 'running', 'paused')",
                    params![name, id],
                    |r| r.get(0),
                )
                .map_err(db_err(&self.db, "counting a volume's users"))?;
            let data = self.mountpoint(&name);
            if live == 0 && is_mounted(&data) {
                nix::mount::umount2(&data, MntFlags::UMOUNT_NOFOLLOW).map_err(|e| {
                    VolumeError::Mount {
                        path: data.clone(),
                        reason: format!("unmount: {e}"),
                    }
                })?;
            }
        }
        Ok(())
    }

    /// The anonymous volumes container `id` asked for (what `rm -v` removes with it).
    pub fn anonymous_of(&self, id: &str) -> Result<Vec<String>> {
        Ok(self
            .of_container(id)?
            .into_iter()
            .filter(|a| a.anonymous)
            .map(|a| a.volume)
            .collect())
    }
}

/// The volume a container's mount creates if none of its name exists: Docker's
/// anonymous label on anonymous ones, `--mount`'s labels and options checked as
/// `volume create` checks them.
fn new_volume(w: &Want, now: i64) -> Result<Volume> {
    let name = w.name.clone().unwrap_or_else(crate::names::new_id);
    if let Some(driver) = w.create.driver.as_ref().filter(|d| *d != LOCAL) {
        return Err(VolumeError::UnknownDriver {
            name,
            driver: driver.clone(),
        });
    }
    validate_options(&name, &w.create.options)?;
    let mut labels = w.create.labels.clone();
    if w.name.is_none() {
        labels.insert(ANONYMOUS_LABEL.to_string(), String::new());
    }
    let options = &w.create.options;
    Ok(Volume {
        anonymous: w.name.is_none() || labels.contains_key(ANONYMOUS_LABEL),
        name,
        driver: LOCAL.into(),
        created: now,
        labels: (!labels.is_empty()).then_some(labels),
        options: (!options.is_empty()).then(|| options.clone()),
    })
}

/// An flock of a directory (held by its open fd, so a rename does not lose it).
fn lock_dir(path: &Path, how: FlockArg) -> Result<Flock<fs::File>> {
    let file = fs::File::open(path).map_err(io("opening", path))?;
    Flock::lock(file, how).map_err(|(_, e)| VolumeError::Io {
        what: "locking",
        path: path.to_path_buf(),
        source: e.into(),
    })
}

fn insert_volume(conn: &Connection, v: &Volume) -> rusqlite::Result<bool> {
    let json = |m: &Option<BTreeMap<String, String>>| {
        serde_json::to_string(m).unwrap_or_else(|_| "null".into())
    };
    let n = conn.execute(
        "INSERT OR IGNORE INTO volumes (name, driver, created, labels, options, anonymous)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            v.name,
            v.driver,
            v.created,
            json(&v.labels),
            json(&v.options),
            v.anonymous
        ],
    )?;
    Ok(n == 1)
}

type Raw = (String, String, i64, String, String, bool);

fn raw_row(r: &rusqlite::Row) -> rusqlite::Result<Raw> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn decode((name, driver, created, labels, options, anonymous): Raw) -> Result<Volume> {
    let map = |what, text: &str| {
        serde_json::from_str::<Option<BTreeMap<String, String>>>(text).map_err(|e| {
            VolumeError::Corrupt {
                name: name.clone(),
                what,
                reason: e.to_string(),
            }
        })
    };
    Ok(Volume {
        labels: map("labels", &labels)?,
        options: map("options", &options)?,
        name,
        driver,
        created,
        anonymous,
    })
}

fn db_err<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl FnOnce(rusqlite::Error) -> VolumeError + 'a {
    move |source| VolumeError::Db {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// Mount points in this mount namespace, from /proc/self/mountinfo (octal escapes
/// decoded).
fn mount_points() -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .collect()
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
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

fn canonical(p: &Path) -> PathBuf {
    fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn is_mounted(path: &Path) -> bool {
    let want = canonical(path);
    mount_points().contains(&want)
}

/// Mount points at or below `dir`.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let want = canonical(dir);
    mount_points()
        .into_iter()
        .filter(|m| m.starts_with(&want))
        .collect()
}

/// mount(8)'s option words that are flags; the rest is passed to the file system.
/// (name, clears the flag instead of setting it, flag)
const MOUNT_FLAGS: &[(&str, bool, MsFlags)] = &[
    ("defaults", false, MsFlags::empty()),
    ("ro", false, MsFlags::MS_RDONLY),
    ("rw", true, MsFlags::MS_RDONLY),
    ("suid", true, MsFlags::MS_NOSUID),
    ("nosuid", false, MsFlags::MS_NOSUID),
    ("dev", true, MsFlags::MS_NODEV),
    ("nodev", false, MsFlags::MS_NODEV),
    ("exec", true, MsFlags::MS_NOEXEC),
    ("noexec", false, MsFlags::MS_NOEXEC),
    ("sync", false, MsFlags::MS_SYNCHRONOUS),
    ("async", true, MsFlags::MS_SYNCHRONOUS),
    ("dirsync", false, MsFlags::MS_DIRSYNC),
    ("mand", false, MsFlags::MS_MANDLOCK),
    ("nomand", true, MsFlags::MS_MANDLOCK),
    ("atime", true, MsFlags::MS_NOATIME),
    ("noatime", false, MsFlags::MS_NOATIME),
    ("diratime", true, MsFlags::MS_NODIRATIME),
    ("nodiratime", false, MsFlags::MS_NODIRATIME),
    ("bind", false, MsFlags::MS_BIND),
    ("rbind", false, MsFlags::MS_BIND.union(MsFlags::MS_REC)),
    ("relatime", false, MsFlags::MS_RELATIME),
    ("norelatime", true, MsFlags::MS_RELATIME),
    ("strictatime", false, MsFlags::MS_STRICTATIME),
    ("nostrictatime", true, MsFlags::MS_STRICTATIME),
];

const PROPAGATION_FLAGS: &[(&str, MsFlags)] = &[
    ("private", MsFlags::MS_PRIVATE),
    ("rprivate", MsFlags::MS_PRIVATE.union(MsFlags::MS_REC)),
    ("shared", MsFlags::MS_SHARED),
    ("rshared", MsFlags::MS_SHARED.union(MsFlags::MS_REC)),
    ("slave", MsFlags::MS_SLAVE),
    ("rslave", MsFlags::MS_SLAVE.union(MsFlags::MS_REC)),
    ("unbindable", MsFlags::MS_UNBINDABLE),
    ("runbindable", MsFlags::MS_UNBINDABLE.union(MsFlags::MS_REC)),
];

/// `o=…` as mount(8) reads it: (flags, propagation flags, file system data).
fn parse_mount_options(o: &str) -> (MsFlags, MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut propagation = MsFlags::empty();
    let mut data = Vec::new();
    for word in o.split(',').filter(|w| !w.is_empty()) {
        if let Some((_, clear, f)) = MOUNT_FLAGS.iter().find(|(n, _, _)| *n == word) {
            if *clear {
                flags.remove(*f);
            } else {
                flags.insert(*f);
            }
        } else if let Some((_, f)) = PROPAGATION_FLAGS.iter().find(|(n, _)| *n == word) {
            propagation.insert(*f);
        } else {
            data.push(word);
        }
    }
    (flags, propagation, data.join(","))
}

/// Docker's local driver's mount: `mount -t TYPE -o O DEVICE _data`, then the
/// propagation, then a read-only remount for a read-only bind.
fn mount_local(options: &BTreeMap<String, String>, target: &Path) -> Result<()> {
    let device = options
        .get("device")
        .map(String::as_str)
        .unwrap_or_default();
    let fstype = options.get("type").map(String::as_str).unwrap_or_default();
    let o = options.get("o").map(String::as_str).unwrap_or_default();
    let (flags, propagation, data) = parse_mount_options(o);
    // Docker's wording: `mount DEVICE:TARGET, flags: 0x…, data: …: ERROR`.
    let fail = |step: &str, f: MsFlags, e: nix::Error| {
        let data = if data.is_empty() || !step.is_empty() {
            String::new()
        } else {
            format!(", data: {data}")
        };
        VolumeError::Mount {
            path: target.to_path_buf(),
            reason: format!(
                "{step}mount {device}:{}, flags: {:#x}{data}: {}",
                target.display(),
                f.bits(),
                e.desc()
            ),
        }
    };
    if device.is_empty() {
        return Err(VolumeError::Mount {
            path: target.to_path_buf(),
            reason: "missing device in volume options".into(),
        });
    }
    let fstype = (!fstype.is_empty() && fstype != "none").then_some(fstype);
    let data_opt = (!data.is_empty()).then_some(data.as_str());
    nix::mount::mount(Some(device), target, fstype, flags, data_opt)
        .map_err(|e| fail("", flags, e))?;
    let undo = || {
        let _ = nix::mount::umount2(target, MntFlags::UMOUNT_NOFOLLOW);
    };
    if !propagation.is_empty() {
        if let Err(e) = nix::mount::mount(
            None::<&str>,
            target,
            None::<&str>,
            propagation,
            None::<&str>,
        ) {
            undo();
            return Err(fail("propagation: ", propagation, e));
        }
    }
    let bind_ro = MsFlags::MS_BIND | MsFlags::MS_RDONLY;
    if flags.contains(bind_ro) {
        let remount = flags | MsFlags::MS_REMOUNT;
        if let Err(e) = nix::mount::mount(None::<&str>, target, None::<&str>, remount, None::<&str>)
        {
            undo();
            return Err(fail("read-only remount: ", remount, e));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::{parse_mount, parse_volume};
    use crate::options::CreateOptions;
    use crate::store::{Container, State, Store};

    fn open() -> (tempfile::TempDir, Store, Volumes) {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let volumes = Volumes::open(tmp.path()).unwrap();
        (tmp, store, volumes)
    }

    fn container(store: &Store, id: &str) {
        let opts = CreateOptions {
            image: "img".into(),
            ..CreateOptions::default()
        };
        let c = Container::new(
            id.into(),
            format!("n-{id}"),
            "sha256:x".into(),
            opts,
            "/bin/true".into(),
        );
        assert!(store.insert(&c).unwrap());
    }

    fn want(dest: &str, name: Option<&str>) -> Want {
        Want {
            destination: dest.into(),
            name: name.map(str::to_string),
            copy: true,
            create: VolumeOptions::default(),
        }
    }

    #[test]
    fn wanted_mounts_then_uncovered_image_volumes() {
        let run = RunOptions {
            mounts: vec![
                parse_volume("data:/data:nocopy").unwrap(),
                parse_volume("/anon").unwrap(),
                parse_mount("type=tmpfs,dst=/cache").unwrap(),
            ],
            ..RunOptions::default()
        };
        let image = [
            "/cache".to_string(),
            "/logs/".into(),
            "/logs".into(),
            "/data".into(),
        ];
        assert_eq!(
            wanted(&run, &image),
            vec![
                Want {
                    destination: "/data".into(),
                    name: Some("data".into()),
                    copy: false,
                    create: VolumeOptions::default(),
                },
                want("/anon", None),
                want("/logs", None),
            ]
        );
    }

    #[test]
    fn create_is_idempotent_and_validates_like_docker() {
        let (_tmp, _store, vols) = open();
        let v = vols
            .create(NewVolume {
                name: Some("web".into()),
                labels: BTreeMap::from([("a".into(), "1".into())]),
                ..NewVolume::default()
            })
            .unwrap();
        assert!(!v.anonymous);
        assert!(vols.mountpoint("web").is_dir());
        let again = vols
            .create(NewVolume {
                name: Some("web".into()),
                ..NewVolume::default()
            })
            .unwrap();
        assert_eq!(again, v, "an existing volume is returned as it is");

        let anon = vols.create(NewVolume::default()).unwrap();
        assert_eq!(anon.name.len(), 64);
        assert!(anon.anonymous);
        assert_eq!(anon.labels.unwrap()[ANONYMOUS_LABEL], "");

        let err = |req: NewVolume| vols.create(req).unwrap_err().to_string();
        assert_eq!(
            err(NewVolume {
                name: Some("a/b".into()),
                ..NewVolume::default()
            }),
            "create a/b: \"a/b\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        );
        assert_eq!(
            err(NewVolume {
                name: Some("x1".into()),
                driver: Some("nfsplug".into()),
                ..NewVolume::default()
            }),
            "create x1: error looking up volume plugin nfsplug: plugin \"nfsplug\" not found"
        );
        let opts = |kv: &[(&str, &str)]| NewVolume {
            name: Some("x1".into()),
            options: kv
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..NewVolume::default()
        };
        assert_eq!(
            err(opts(&[("foo", "1")])),
            "create x1: invalid option: \"foo\""
        );
        assert_eq!(
            err(opts(&[("type", "tmpfs")])),
            "create x1: missing required option: \"device\""
        );
        assert_eq!(
            err(opts(&[("size", "10m")])),
            "create x1: quota size requested but no quota support"
        );
        assert_eq!(
            vols.list().unwrap().len(),
            2,
            "failed creates leave nothing"
        );
        assert!(!vols.dir("x1").exists());
    }

    #[test]
    fn in_use_volumes_stay_and_anonymous_ones_are_per_container() {
        let (_tmp, store, vols) = open();
        container(&store, "c1");
        container(&store, "c2");
        let a = vols
            .attach("c1", &[want("/data", Some("shared")), want("/anon", None)])
            .unwrap();
        assert_eq!(a.len(), 2);
        let anon = vols.anonymous_of("c1").unwrap();
        assert_eq!(anon.len(), 1);
        // Attaching again changes nothing.
        assert_eq!(
            vols.attach("c1", &[want("/data", Some("shared")), want("/anon", None)])
                .unwrap(),
            a
        );
        vols.attach("c2", &[want("/x", Some("shared"))]).unwrap();

        let e = vols.remove("shared", false).unwrap_err().to_string();
        assert_eq!(e, "remove shared: volume is in use - [c1, c2]");
        assert!(vols.mountpoint("shared").is_dir());
        assert_eq!(
            vols.remove("nope", false).unwrap_err().to_string(),
            "get nope: no such volume"
        );
        vols.remove("nope", true).unwrap();

        // A prune keeps what is used; deleting the containers frees them.
        assert!(vols.prune(true, &|_| false).unwrap().0.is_empty());
        store.delete("c1").unwrap();
        let e = vols.remove("shared", false).unwrap_err().to_string();
        assert_eq!(e, "remove shared: volume is in use - [c2]");
        store.delete("c2").unwrap();
        let (deleted, _) = vols.prune(false, &|_| false).unwrap();
        assert_eq!(deleted, anon, "without all only anonymous volumes go");
        assert!(!vols.dir(&anon[0]).exists());
        fs::write(vols.mountpoint("shared").join("f"), "12345").unwrap();
        assert_eq!(vols.size("shared"), 5);
        let (deleted, reclaimed) = vols.prune(true, &|_| false).unwrap();
        assert_eq!((deleted, reclaimed), (vec!["shared".to_string()], 5));
        assert!(vols.list().unwrap().is_empty());
        let left: Vec<_> = fs::read_dir(&vols.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != ".lock")
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn mounts_create_volumes_with_their_options_or_nothing() {
        let (_tmp, store, vols) = open();
        container(&store, "c1");
        let parse = |m: &str| {
            wanted(
                &RunOptions {
                    mounts: vec![parse_mount(m).unwrap()],
                    ..RunOptions::default()
                },
                &[],
            )
        };
        let w = parse("dst=/f,volume-label=team=db,volume-opt=type=tmpfs,volume-opt=device=tmpfs");
        let a = vols.attach("c1", &w).unwrap();
        let v = vols.get(&a[0].volume).unwrap();
        assert!(v.anonymous);
        assert_eq!(
            v.labels.unwrap(),
            BTreeMap::from([
                (ANONYMOUS_LABEL.to_string(), String::new()),
                ("team".to_string(), "db".to_string())
            ])
        );
        assert_eq!(v.options.unwrap()["type"], "tmpfs");
        // A named volume made by a plain -v has neither labels nor options (null).
        vols.attach("c1", &[want("/n", Some("plain"))]).unwrap();
        let p = vols.get("plain").unwrap();
        assert_eq!((p.labels, p.options), (None, None));

        container(&store, "c2");
        for (m, e) in [
            (
                "src=bad1,dst=/x,volume-opt=colour=red",
                "create bad1: invalid option: \"colour\"",
            ),
            (
                "src=bad2,dst=/x,volume-driver=nfsplug",
                "create bad2: error looking up volume plugin nfsplug: plugin \"nfsplug\" not found",
            ),
        ] {
            let w = [parse(m).remove(0), want("/anon", None)];
            assert_eq!(vols.attach("c2", &w).unwrap_err().to_string(), e);
        }
        assert!(
            vols.of_container("c2").unwrap().is_empty(),
            "nothing recorded"
        );
        assert_eq!(vols.list().unwrap().len(), 2, "nothing created");
    }

    #[test]
    fn release_keeps_mounts_other_live_containers_use() {
        let (_tmp, store, vols) = open();
        vols.create(NewVolume {
            name: Some("fast".into()),
            options: BTreeMap::from([
                ("type".into(), "tmpfs".into()),
                ("device".into(), "tmpfs".into()),
                ("o".into(), "size=1m,mode=0750".into()),
            ]),
            ..NewVolume::default()
        })
        .unwrap();
        container(&store, "c1");
        container(&store, "c2");
        let rootfs = vols.dir.join("empty-rootfs");
        fs::create_dir(&rootfs).unwrap();
        let w = [want("/fast", Some("fast"))];
        vols.prepare("c1", &w, &rootfs).unwrap();
        vols.prepare("c2", &w, &rootfs).unwrap();
        let data = vols.mountpoint("fast");
        assert!(is_mounted(&data));
        assert_eq!(fs::metadata(&data).unwrap().mode() & 0o777, 0o750);
        store
            .transition("c2", &[State::Created], State::Running)
            .unwrap();
        vols.release("c1").unwrap();
        assert!(is_mounted(&data), "c2 still runs");
        store
            .transition("c2", &[State::Running], State::Exited)
            .unwrap();
        vols.release("c1").unwrap();
        assert!(!is_mounted(&data), "nobody runs: unmounted");
        store.delete("c1").unwrap();
        store.delete("c2").unwrap();
        vols.remove("fast", false).unwrap();
    }

    #[test]
    fn prune_deletes_stale_removals_but_not_live_ones() {
        let (_tmp, _store, vols) = open();
        let stale = vols.dir.join(".removing-old-123");
        let live = vols.dir.join(".removing-busy-456");
        for d in [&stale, &live] {
            fs::create_dir_all(d.join("_data/deep")).unwrap();
        }
        let held = lock_dir(&live, FlockArg::LockExclusive).unwrap();
        vols.prune(true, &|_| false).unwrap();
        assert!(!stale.exists());
        assert!(live.exists(), "a removal in progress keeps its directory");
        drop(held);
        vols.prune(true, &|_| false).unwrap();
        assert!(!live.exists());
    }

    #[test]
    fn mount_options_split_like_mount8() {
        let (flags, prop, data) = parse_mount_options("bind,ro,size=1m,nosuid,rshared,uid=5");
        assert_eq!(
            flags,
            MsFlags::MS_BIND | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID
        );
        assert_eq!(prop, MsFlags::MS_SHARED | MsFlags::MS_REC);
        assert_eq!(data, "size=1m,uid=5");
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
    }
}
