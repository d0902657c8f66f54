//! Image metadata: which images exist, their layers, and the tags that name them, in SQLite at
//! `<root>/berth.db`.
//!
//! Many `berth` processes open the database at once (a pull, an `images`, an `rmi`), so it runs
//! in WAL mode (readers never wait for the writer), waits up to 10 s for a busy lock instead of
//! failing, and makes every change that takes more than one statement a single `BEGIN
//! IMMEDIATE` transaction: the write lock is taken up front, so a transaction never has to
//! upgrade from reader to writer, which is the one case where SQLite fails with "database is
//! locked" without waiting.
//!
//! Schema (version 1, in `PRAGMA user_version`):
//!
//! ```text
//! images       id TEXT PRIMARY KEY          the config digest (Docker's image id)
//!              manifest TEXT NOT NULL       the manifest digest last registered for it
//!              created INTEGER              unix seconds from the config, may be NULL
//!              size INTEGER                 sum of the layer blob sizes
//!              added INTEGER NOT NULL       unix seconds when first registered here
//! image_layers image → images(id) ON DELETE CASCADE, idx (0 = bottom), blob, diff_id, chain_id
//!              PRIMARY KEY (image, idx)
//! tags         name TEXT PRIMARY KEY        full normalised reference, docker.io/library/busybox:latest
//!              image → images(id) ON DELETE CASCADE
//! ```
//!
//! A newer schema version is refused rather than misread; migrations go beside `SCHEMA`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{
    params, Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior,
};

use crate::digest::Digest;
use crate::reference::{Reference, ReferenceError};

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS images (
    id       TEXT PRIMARY KEY,
    manifest TEXT NOT NULL,
    created  INTEGER,
    size     INTEGER,
    added    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS image_layers (
    image    TEXT REFERENCES images(id) ON DELETE CASCADE,
    idx      INTEGER,
    blob     TEXT,
    diff_id  TEXT,
    chain_id TEXT,
    PRIMARY KEY (image, idx)
);
CREATE INDEX IF NOT EXISTS image_layers_chain ON image_layers(chain_id);
CREATE TABLE IF NOT EXISTS tags (
    name  TEXT PRIMARY KEY,
    image TEXT REFERENCES images(id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS tags_image ON tags(image);
";

/// How long a statement waits for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Shortest id prefix accepted, as Docker.
const MIN_PREFIX: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("image database {}: {action}: {source}", path.display())]
    Db {
        path: PathBuf,
        action: String,
        source: rusqlite::Error,
    },
    /// A bare SQLite error inside this module; public methods turn it into `Db`.
    #[error("image database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("image database {}: schema version {found} is newer than this berth knows ({SCHEMA_VERSION})", path.display())]
    NewerSchema { path: PathBuf, found: i64 },
    #[error("image database {}: {what} {value:?} is not valid: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error("no such image: {0}")]
    NotFound(String),
    #[error("image id prefix {prefix:?} is ambiguous: it matches several images")]
    Ambiguous { prefix: String },
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("cannot tag as {0}: a tag cannot carry a digest")]
    DigestTag(String),
    #[error("image {image}: size {size} does not fit the database")]
    TooLarge { image: Digest, size: u64 },
}

pub type Result<T> = std::result::Result<T, MetaError>;

/// An image to record: what a pull, load, import or build produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewImage {
    pub manifest: Digest,
    /// The config digest, which is the image id.
    pub config: Digest,
    /// `(blob, diff_id)` per layer, bottom first.
    pub layers: Vec<(Digest, Digest)>,
    /// Unix seconds of the config's `created`, when it has one.
    pub created: Option<i64>,
    /// Sum of the layer blob sizes.
    pub size: u64,
}

/// One image as recorded, with the tags naming it (sorted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRow {
    pub id: Digest,
    pub manifest: Digest,
    pub created: Option<i64>,
    pub size: u64,
    /// Unix seconds when the image was first registered here.
    pub added: i64,
    pub tags: Vec<Reference>,
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRow {
    /// Position from the bottom, 0 first.
    pub index: usize,
    pub blob: Digest,
    pub diff_id: Digest,
    pub chain_id: Digest,
}

/// What removing a tag did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untagged {
    /// The image the tag named.
    pub image: Digest,
    /// Whether the image went too, because that was its last tag.
    pub image_deleted: bool,
}

/// What `delete_image_if` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletion {
    NotFound,
    /// The check said no; these are the image's tags it was shown.
    Refused(Vec<Reference>),
    /// Deleted, with the tags that went with it.
    Deleted(Vec<Reference>),
}

/// The OCI chain ids of a layer stack (bottom first): ChainID(L0) = DiffID(L0),
/// ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)) over the digest strings. A chain id
/// names a layer *with everything under it*, so equal chain ids are interchangeable snapshots.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut chains: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let chain = match chains.last() {
            None => diff_id.clone(),
            Some(parent) => Digest::sha256_of(format!("{parent} {diff_id}").as_bytes()),
        };
        chains.push(chain);
    }
    chains
}

/// One connection to `berth.db`, shared by the threads of a process and by the other
/// components that keep tables there (the engine's containers and volumes): each
/// connection parses the whole schema again, and that was most of a `berth` command's
/// own CPU time.
pub type Shared = std::sync::Arc<Mutex<Connection>>;

/// The image database. One connection, shared by the threads of a process.
#[derive(Debug)]
pub struct Meta {
    path: PathBuf,
    conn: Shared,
}

impl Meta {
    /// Opens `<root>/berth.db`, creating it and its schema if missing.
    pub fn open(root: &Path) -> Result<Meta> {
        let path = root.join("berth.db");
        let conn = Connection::open(&path).map_err(db_err(&path, "opening"))?;
        configure(&conn).map_err(db_err(&path, "configuring"))?;
        let meta = Meta {
            path,
            conn: std::sync::Arc::new(Mutex::new(conn)),
        };
        meta.migrate()?;
        Ok(meta)
    }

    /// The connection, for other components' tables in the same file.
    pub fn shared(&self) -> Shared {
        self.conn.clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(&self) -> Result<()> {
        let path = self.path.clone();
        let mut conn = self.lock();
        // Without a write lock first: nearly always the schema is there already.
        let current: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(db_err(&path, "reading the schema version"))?;
        if current == SCHEMA_VERSION {
            return Ok(());
        }
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err(&path, "creating the schema"))?;
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(db_err(&path, "reading the schema version"))?;
        if version > SCHEMA_VERSION {
            return Err(MetaError::NewerSchema {
                path,
                found: version,
            });
        }
        if version < SCHEMA_VERSION {
            tx.execute_batch(SCHEMA)
                .and_then(|()| tx.pragma_update(None, "user_version", SCHEMA_VERSION))
                .and_then(|()| tx.commit())
                .map_err(db_err(&path, "creating the schema"))?;
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic in another thread mid-statement leaves the connection usable: SQLite rolls
        // back an unfinished transaction when it is dropped.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction, committed if it returns Ok.
    fn write<T>(&self, action: &str, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let run = || {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        };
        run().map_err(|e| self.context(action, e))
    }

    /// Runs `f` in one read transaction, so its queries see one state of the database.
    fn read<T>(&self, action: &str, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let run = || {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            f(&tx)
        };
        run().map_err(|e| self.context(action, e))
    }

    fn context(&self, action: &str, e: MetaError) -> MetaError {
        match e {
            MetaError::Sql(source) => MetaError::Db {
                path: self.path.clone(),
                action: action.to_string(),
                source,
            },
            other => other,
        }
    }

    /// Records an image and its layers, replacing what was recorded for the same id, and
    /// moves `tags` to it (a tag names one image; like `docker tag`, it leaves its old one).
    pub fn put_image(&self, image: &NewImage, tags: &[Reference]) -> Result<()> {
        for tag in tags {
            check_tag(tag)?;
        }
        let size = i64::try_from(image.size).map_err(|_| MetaError::TooLarge {
            image: image.config.clone(),
            size: image.size,
        })?;
        let id = image.config.to_string();
        self.write(&format!("recording image {id}"), |tx| {
            // An upsert, not INSERT OR REPLACE: replacing would delete the row first and
            // cascade to the image's tags.
            tx.execute(
                "INSERT INTO images (id, manifest, created, size, added) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(id) DO UPDATE SET
                     manifest = excluded.manifest, created = excluded.created, size = excluded.size",
                params![id, image.manifest.to_string(), image.created, size, now()],
            )?;
            tx.execute("DELETE FROM image_layers WHERE image = ?1", [&id])?;
            let diff_ids: Vec<Digest> = image.layers.iter().map(|(_, d)| d.clone()).collect();
            let chains = chain_ids(&diff_ids);
            let mut insert = tx.prepare(
                "INSERT INTO image_layers (image, idx, blob, diff_id, chain_id)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (idx, ((blob, diff_id), chain)) in image.layers.iter().zip(&chains).enumerate() {
                insert.execute(params![
                    id,
                    idx as i64,
                    blob.to_string(),
                    diff_id.to_string(),
                    chain.to_string()
                ])?;
            }
            for tag in tags {
                set_tag(tx, tag, &id)?;
            }
            Ok(())
        })
    }

    /// Points `reference` at `image`, moving it from any image it named before.
    pub fn tag(&self, reference: &Reference, image: &Digest) -> Result<()> {
        check_tag(reference)?;
        let id = image.to_string();
        self.write(&format!("tagging {id} as {reference}"), |tx| {
            if !image_exists(tx, &id)? {
                return Err(MetaError::NotFound(id.clone()));
            }
            set_tag(tx, reference, &id)
        })
    }

    /// Removes a tag; false if there was no such tag. The image stays, even untagged.
    pub fn untag(&self, reference: &Reference) -> Result<bool> {
        let name = reference.to_string();
        self.write(&format!("untagging {name}"), |tx| {
            Ok(tx.execute("DELETE FROM tags WHERE name = ?1", [&name])? > 0)
        })
    }

    /// Removes a tag and, if it was the image's last one, the image (as `docker rmi NAME`),
    /// in one transaction so two concurrent removals cannot both leave the image behind.
    pub fn untag_and_prune(&self, reference: &Reference) -> Result<Option<Untagged>> {
        let name = reference.to_string();
        self.write(&format!("untagging {name}"), |tx| {
            let image: Option<String> = tx
                .query_row("SELECT image FROM tags WHERE name = ?1", [&name], |r| {
                    r.get(0)
                })
                .optional()?;
            let Some(image) = image else {
                return Ok(None);
            };
            tx.execute("DELETE FROM tags WHERE name = ?1", [&name])?;
            let left: i64 = tx.query_row(
                "SELECT count(*) FROM tags WHERE image = ?1",
                [&image],
                |r| r.get(0),
            )?;
            if left == 0 {
                tx.execute("DELETE FROM images WHERE id = ?1", [&image])?;
            }
            Ok(Some(Untagged {
                image: self.digest("image id", &image)?,
                image_deleted: left == 0,
            }))
        })
    }

    /// The image with this id, if recorded.
    pub fn image(&self, id: &Digest) -> Result<Option<ImageRow>> {
        let id = id.to_string();
        self.read(&format!("reading image {id}"), |tx| self.image_in(tx, &id))
    }

    fn image_in(&self, tx: &Transaction, id: &str) -> Result<Option<ImageRow>> {
        let row = tx
            .query_row(
                "SELECT id, manifest, created, size, added FROM images WHERE id = ?1",
                [id],
                RawImage::from_row,
            )
            .optional()?;
        let Some(row) = row else { return Ok(None) };
        let mut image = self.image_row(row)?;
        image.tags = self.tags_in(tx, id)?;
        Ok(Some(image))
    }

    /// Finds an image the way `docker image inspect` does: a reference (`busybox`,
    /// `foo:1`, `name@sha256:…` by manifest digest), a full `sha256:…` id, or an id prefix of at
    /// least 4 hex characters (with or without `sha256:`) that matches exactly one image. A
    /// name is tried before a prefix, so a tag called `abcd` wins over ids starting `abcd`.
    pub fn resolve(&self, input: &str) -> Result<ImageRow> {
        let action = format!("looking up {input}");
        if let Some(hex) = input.strip_prefix("sha256:") {
            return self.read(&action, |tx| self.by_id_prefix(tx, input, hex));
        }
        let reference = Reference::parse(input);
        self.read(&action, |tx| {
            if let Ok(reference) = &reference {
                if let Some(id) = by_reference(tx, reference)? {
                    return self
                        .image_in(tx, &id)?
                        .ok_or_else(|| MetaError::NotFound(input.to_string()));
                }
            }
            if is_hex(input) {
                return self.by_id_prefix(tx, input, input);
            }
            match &reference {
                Err(e) => Err(e.clone().into()),
                Ok(_) => Err(MetaError::NotFound(input.to_string())),
            }
        })
    }

    fn by_id_prefix(&self, tx: &Transaction, input: &str, hex: &str) -> Result<ImageRow> {
        if hex.len() < MIN_PREFIX || !is_hex(hex) {
            return Err(MetaError::NotFound(input.to_string()));
        }
        // GLOB is case-sensitive and `hex` holds no wildcard characters (checked above).
        let mut stmt = tx.prepare("SELECT id FROM images WHERE id GLOB ?1 LIMIT 2")?;
        let ids: Vec<String> = stmt
            .query_map([format!("sha256:{hex}*")], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        match ids.as_slice() {
            [] => Err(MetaError::NotFound(input.to_string())),
            [id] => self
                .image_in(tx, id)?
                .ok_or_else(|| MetaError::NotFound(input.to_string())),
            _ => Err(MetaError::Ambiguous {
                prefix: input.to_string(),
            }),
        }
    }

    /// Every image with its tags, most recently added first (as `docker images`).
    pub fn list(&self) -> Result<Vec<ImageRow>> {
        self.read("listing images", |tx| {
            let mut tags: BTreeMap<String, Vec<Reference>> = BTreeMap::new();
            let mut stmt = tx.prepare("SELECT image, name FROM tags ORDER BY name")?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            for row in rows {
                let (image, name) = row?;
                tags.entry(image).or_default().push(self.reference(&name)?);
            }
            let mut stmt = tx.prepare(
                "SELECT id, manifest, created, size, added FROM images ORDER BY added DESC, id",
            )?;
            let rows = stmt.query_map([], RawImage::from_row)?;
            let mut images = Vec::new();
            for row in rows {
                let mut image = self.image_row(row?)?;
                image.tags = tags.remove(&image.id.to_string()).unwrap_or_default();
                images.push(image);
            }
            Ok(images)
        })
    }

    /// The tags naming an image, sorted.
    pub fn tags_of(&self, id: &Digest) -> Result<Vec<Reference>> {
        let id = id.to_string();
        self.read(&format!("reading tags of {id}"), |tx| self.tags_in(tx, &id))
    }

    fn tags_in(&self, tx: &Transaction, id: &str) -> Result<Vec<Reference>> {
        let mut stmt = tx.prepare("SELECT name FROM tags WHERE image = ?1 ORDER BY name")?;
        let names: Vec<String> = stmt
            .query_map([id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        names.iter().map(|n| self.reference(n)).collect()
    }

    /// The layers of an image, bottom first; empty if the image is unknown.
    pub fn layers_of(&self, id: &Digest) -> Result<Vec<LayerRow>> {
        let id = id.to_string();
        self.read(&format!("reading layers of {id}"), |tx| {
            let mut stmt = tx.prepare(
                "SELECT idx, blob, diff_id, chain_id FROM image_layers WHERE image = ?1 ORDER BY idx",
            )?;
            let rows = stmt.query_map([&id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?;
            let mut layers = Vec::new();
            for row in rows {
                let (idx, blob, diff_id, chain_id) = row?;
                layers.push(LayerRow {
                    index: usize::try_from(idx).map_err(|_| {
                        self.corrupt("layer index", &idx.to_string(), "negative".into())
                    })?,
                    blob: self.digest("layer blob", &blob)?,
                    diff_id: self.digest("layer diff_id", &diff_id)?,
                    chain_id: self.digest("layer chain_id", &chain_id)?,
                });
            }
            Ok(layers)
        })
    }

    /// Deletes an image with its layers and tags. Returns the tags it had, or None if there
    /// was no such image.
    pub fn delete_image(&self, id: &Digest) -> Result<Option<Vec<Reference>>> {
        Ok(match self.delete_image_if(id, |_| true)? {
            Deletion::Deleted(tags) => Some(tags),
            Deletion::NotFound | Deletion::Refused(_) => None,
        })
    }

    /// Deletes an image only if `allow` accepts its current tags, deciding and deleting in one
    /// transaction (so a tag added meanwhile is seen by the check).
    pub fn delete_image_if(
        &self,
        id: &Digest,
        allow: impl FnOnce(&[Reference]) -> bool,
    ) -> Result<Deletion> {
        let id = id.to_string();
        self.write(&format!("deleting image {id}"), |tx| {
            if !image_exists(tx, &id)? {
                return Ok(Deletion::NotFound);
            }
            let tags = self.tags_in(tx, &id)?;
            if !allow(&tags) {
                return Ok(Deletion::Refused(tags));
            }
            tx.execute("DELETE FROM images WHERE id = ?1", [&id])?;
            Ok(Deletion::Deleted(tags))
        })
    }

    /// Every blob some image needs: manifests, configs and layer blobs.
    pub fn referenced_blobs(&self) -> Result<HashSet<Digest>> {
        self.digest_set(
            "listing referenced blobs",
            "SELECT id FROM images UNION SELECT manifest FROM images
             UNION SELECT blob FROM image_layers",
        )
    }

    /// Every layer chain id some image needs (the snapshots to keep).
    pub fn referenced_chains(&self) -> Result<HashSet<Digest>> {
        self.digest_set(
            "listing referenced snapshots",
            "SELECT DISTINCT chain_id FROM image_layers",
        )
    }

    fn digest_set(&self, action: &str, sql: &str) -> Result<HashSet<Digest>> {
        self.read(action, |tx| {
            let mut stmt = tx.prepare(sql)?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            let mut set = HashSet::new();
            for row in rows {
                set.insert(self.digest("digest", &row?)?);
            }
            Ok(set)
        })
    }

    fn image_row(&self, raw: RawImage) -> Result<ImageRow> {
        Ok(ImageRow {
            id: self.digest("image id", &raw.id)?,
            manifest: self.digest("manifest digest", &raw.manifest)?,
            created: raw.created,
            size: u64::try_from(raw.size.unwrap_or(0))
                .map_err(|_| self.corrupt("image size", &raw.id, "negative".into()))?,
            added: raw.added,
            tags: Vec::new(),
        })
    }

    fn digest(&self, what: &'static str, value: &str) -> Result<Digest> {
        Digest::from_str(value).map_err(|e| self.corrupt(what, value, e.reason().to_string()))
    }

    fn reference(&self, value: &str) -> Result<Reference> {
        Reference::parse(value).map_err(|e| self.corrupt("tag", value, e.reason().to_string()))
    }

    fn corrupt(&self, what: &'static str, value: &str, reason: String) -> MetaError {
        MetaError::Corrupt {
            path: self.path.clone(),
            what,
            value: value.to_string(),
            reason,
        }
    }
}

/// A row of `images` before its text is parsed.
struct RawImage {
    id: String,
    manifest: String,
    created: Option<i64>,
    size: Option<i64>,
    added: i64,
}

impl RawImage {
    fn from_row(r: &rusqlite::Row) -> rusqlite::Result<RawImage> {
        Ok(RawImage {
            id: r.get(0)?,
            manifest: r.get(1)?,
            created: r.get(2)?,
            size: r.get(3)?,
            added: r.get(4)?,
        })
    }
}

/// The SQLite crate this store is built with, for components that keep their own tables in
/// `berth.db` (the engine's containers) without a second, possibly different, copy.
pub use rusqlite;

/// A connection to `<root>/berth.db` set up as the image store's own (WAL, busy timeout,
/// foreign keys), for other components' tables. `root` must exist.
pub fn connect(root: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(root.join("berth.db"))?;
    configure(&conn)?;
    Ok(conn)
}

/// Creates another component's tables with `ddl` unless `table` exists already: a
/// lookup in the schema the connection has parsed anyway, where running the DDL would
/// parse it all again and take the write lock on every open.
pub fn ensure_tables(conn: &Connection, table: &str, ddl: &str) -> rusqlite::Result<()> {
    let present: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        [table],
        |r| r.get(0),
    )?;
    if !present {
        conn.execute_batch(ddl)?;
    }
    Ok(())
}

/// Per-connection settings. WAL is a property of the file, but switching to it needs a
/// moment alone with the database, and SQLite reports "database is locked" for that without
/// calling the busy handler, so the switch is retried here for up to the busy timeout.
///
/// `synchronous=NORMAL`: in WAL mode a commit is then not fsynced (the WAL is, at each
/// checkpoint). A power cut can lose the last commits but never corrupts the database;
/// what they recorded is re-derivable (running containers do not survive a power cut, and
/// a pull whose tag was lost is pulled again: its blobs are verified files). Every `berth
/// run` commits five or six times, and a full fsync on each cost milliseconds here.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Pages of the database file through a shared mapping, not one pread(2) each: every
    // berth command is a new process with a cold page cache of its own.
    conn.pragma_update(None, "mmap_size", 256i64 << 20)?;
    // The last connection to close would checkpoint and delete the WAL, and the next
    // process (every berth command is one) would recreate it, fsyncing its header: two
    // syncs per command. The WAL is checkpointed as it grows instead, and kept short:
    // the first connection of every process rebuilds the WAL index by reading all of the
    // WAL's valid frames (SQLite cannot trust the -shm file once nobody has the database
    // open): near SQLite's default of 1000 pages (4 MB) that made opening the database
    // ~0.35 ms slower. The checkpoint every few commands costs two ~0.1 ms fsyncs here.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )?;
    conn.pragma_update(None, "wal_autocheckpoint", 64)?;
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        let mode: rusqlite::Result<String> =
            conn.pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0));
        match mode {
            Ok(_) => return Ok(()),
            Err(e) if is_busy(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

fn db_err<'a>(path: &'a Path, action: &'a str) -> impl FnOnce(rusqlite::Error) -> MetaError + 'a {
    move |source| MetaError::Db {
        path: path.to_path_buf(),
        action: action.to_string(),
        source,
    }
}

fn check_tag(reference: &Reference) -> Result<()> {
    if reference.digest.is_some() || reference.tag.is_none() {
        return Err(MetaError::DigestTag(reference.to_string()));
    }
    Ok(())
}

fn set_tag(tx: &Transaction, reference: &Reference, id: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO tags (name, image) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET image = excluded.image",
        params![reference.to_string(), id],
    )?;
    Ok(())
}

fn image_exists(tx: &Transaction, id: &str) -> Result<bool> {
    Ok(tx
        .query_row("SELECT 1 FROM images WHERE id = ?1", [id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// The image a reference names: by tag, or by manifest digest for `name@sha256:…` (berth does
/// not record which repository a digest was pulled from, so any image with that manifest
/// matches).
fn by_reference(tx: &Transaction, reference: &Reference) -> Result<Option<String>> {
    let found = match &reference.digest {
        Some(digest) => tx
            .query_row(
                "SELECT id FROM images WHERE manifest = ?1 LIMIT 1",
                [digest.to_string()],
                |r| r.get(0),
            )
            .optional()?,
        None => tx
            .query_row(
                "SELECT image FROM tags WHERE name = ?1",
                [reference.to_string()],
                |r| r.get(0),
            )
            .optional()?,
    };
    Ok(found)
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Digest {
        Digest::sha256_of(s.as_bytes())
    }

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    fn meta() -> (tempfile::TempDir, Meta) {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open(dir.path()).unwrap();
        (dir, meta)
    }

    fn image(name: &str, layers: &[&str]) -> NewImage {
        NewImage {
            manifest: d(&format!("manifest {name}")),
            config: d(&format!("config {name}")),
            layers: layers
                .iter()
                .map(|l| (d(&format!("blob {l}")), d(&format!("diff {l}"))))
                .collect(),
            created: Some(1_700_000_000),
            size: 42,
        }
    }

    #[test]
    fn chain_ids_match_sha256sum() {
        // Computed independently:
        //   printf 'sha256:<sha256 of a> sha256:<sha256 of b>' | sha256sum
        // and that result chained with sha256("c") the same way.
        let diff_ids = [d("a"), d("b"), d("c")];
        let chains = chain_ids(&diff_ids);
        let want = [
            "sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb",
            "sha256:51c0c8ace48498d6f5fee6b0592cc06f2da0f3cbe09c5a34a97dce85c3889676",
            "sha256:2fce7f8ce91bcf0a1428b36e1024639fdbd9469eea762dba98aa749631885106",
        ];
        let got: Vec<String> = chains.iter().map(|c| c.to_string()).collect();
        assert_eq!(got, want);
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn open_sets_up_wal_schema_and_foreign_keys() {
        let (dir, meta) = meta();
        drop(meta);
        let conn = Connection::open(dir.path().join("berth.db")).unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        // Reopening an existing database is fine.
        Meta::open(dir.path()).unwrap();
    }

    #[test]
    fn newer_schema_is_refused() {
        let (dir, meta) = meta();
        drop(meta);
        let conn = Connection::open(dir.path().join("berth.db")).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = Meta::open(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("schema version 99 is newer"),
            "{err}"
        );
    }

    #[test]
    fn put_image_records_layers_and_tags() {
        let (_dir, meta) = meta();
        let img = image("one", &["base", "top"]);
        meta.put_image(&img, &[r("one"), r("one:v1")]).unwrap();

        let row = meta.image(&img.config).unwrap().unwrap();
        assert_eq!(row.id, img.config);
        assert_eq!(row.manifest, img.manifest);
        assert_eq!(row.created, Some(1_700_000_000));
        assert_eq!(row.size, 42);
        assert_eq!(row.tags, vec![r("one:latest"), r("one:v1")]);

        let layers = meta.layers_of(&img.config).unwrap();
        let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
        assert_eq!(diff_ids, vec![d("diff base"), d("diff top")]);
        let chains: Vec<Digest> = layers.iter().map(|l| l.chain_id.clone()).collect();
        assert_eq!(chains, chain_ids(&diff_ids));
        assert_eq!(layers[1].index, 1);
        assert_eq!(layers[1].blob, d("blob top"));

        // Registering again replaces the layers and keeps the tags and first-added time.
        let mut again = img.clone();
        again.layers.pop();
        again.manifest = d("other manifest");
        meta.put_image(&again, &[]).unwrap();
        let row2 = meta.image(&img.config).unwrap().unwrap();
        assert_eq!(row2.manifest, d("other manifest"));
        assert_eq!(row2.tags, row.tags);
        assert_eq!(row2.added, row.added);
        assert_eq!(meta.layers_of(&img.config).unwrap().len(), 1);
    }

    #[test]
    fn tags_move_between_images() {
        let (_dir, meta) = meta();
        let a = image("a", &["x"]);
        let b = image("b", &["x"]);
        meta.put_image(&a, &[r("app")]).unwrap();
        meta.put_image(&b, &[r("app")]).unwrap();
        assert!(meta.tags_of(&a.config).unwrap().is_empty());
        assert_eq!(meta.tags_of(&b.config).unwrap(), vec![r("app")]);

        meta.tag(&r("app:old"), &a.config).unwrap();
        meta.tag(&r("app"), &a.config).unwrap();
        assert_eq!(meta.resolve("app").unwrap().id, a.config);
        assert!(meta.untag(&r("app:old")).unwrap());
        assert!(!meta.untag(&r("app:old")).unwrap());
        assert_eq!(meta.tags_of(&a.config).unwrap(), vec![r("app")]);

        let err = meta.tag(&r("x"), &d("nothing")).unwrap_err();
        assert!(matches!(err, MetaError::NotFound(_)), "{err}");
        let pinned = r("app").with_digest(d("m"));
        let err = meta.tag(&pinned, &a.config).unwrap_err();
        assert!(err.to_string().contains("cannot carry a digest"), "{err}");
    }

    #[test]
    fn resolve_by_name_id_prefix_and_manifest() {
        let (_dir, meta) = meta();
        let a = image("a", &["x"]);
        meta.put_image(&a, &[r("localhost:5000/app:1")]).unwrap();
        let hex = a.config.hex().to_string();

        for input in [
            "localhost:5000/app:1".to_string(),
            a.config.to_string(),
            hex.clone(),
            hex[..4].to_string(),
            format!("sha256:{}", &hex[..12]),
            format!("localhost:5000/app@{}", a.manifest),
        ] {
            assert_eq!(meta.resolve(&input).unwrap().id, a.config, "{input}");
        }
        for input in ["app:1", &hex[..3], "busybox", "sha256:zz", "0000"] {
            let err = meta.resolve(input).unwrap_err();
            assert_eq!(err.to_string(), format!("no such image: {input}"));
        }
        let err = meta.resolve("Not A Ref").unwrap_err();
        assert!(matches!(err, MetaError::Reference(_)), "{err}");
    }

    #[test]
    fn ambiguous_prefix_is_an_error() {
        let (_dir, meta) = meta();
        // Find two configs whose ids share their first 4 hex characters.
        let mut seen: BTreeMap<String, NewImage> = BTreeMap::new();
        let (first, second) = (0..)
            .find_map(|i| {
                let img = image(&i.to_string(), &[]);
                let key = img.config.hex()[..4].to_string();
                seen.insert(key, img.clone()).map(|prev| (prev, img))
            })
            .unwrap();
        meta.put_image(&first, &[]).unwrap();
        meta.put_image(&second, &[]).unwrap();
        let prefix = &first.config.hex()[..4];
        let err = meta.resolve(prefix).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("image id prefix {prefix:?} is ambiguous: it matches several images")
        );
        // A longer prefix tells them apart.
        let long = &first.config.hex()[..20];
        assert_eq!(meta.resolve(long).unwrap().id, first.config);
    }

    #[test]
    fn name_wins_over_id_prefix() {
        let (_dir, meta) = meta();
        let a = image("a", &[]);
        let b = image("b", &[]);
        let prefix = a.config.hex()[..6].to_string();
        meta.put_image(&a, &[]).unwrap();
        meta.put_image(&b, &[r(&prefix)]).unwrap();
        assert_eq!(meta.resolve(&prefix).unwrap().id, b.config);
    }

    #[test]
    fn list_orders_and_groups_tags() {
        let (_dir, meta) = meta();
        let a = image("a", &["x"]);
        let b = image("b", &["y"]);
        meta.put_image(&a, &[r("a:2"), r("a:1")]).unwrap();
        meta.put_image(&b, &[]).unwrap();
        let list = meta.list().unwrap();
        assert_eq!(list.len(), 2);
        let a_row = list.iter().find(|i| i.id == a.config).unwrap();
        assert_eq!(a_row.tags, vec![r("a:1"), r("a:2")]);
        let b_row = list.iter().find(|i| i.id == b.config).unwrap();
        assert!(b_row.tags.is_empty());
    }

    #[test]
    fn delete_cascades_and_references_follow() {
        let (_dir, meta) = meta();
        let a = image("a", &["base", "a-top"]);
        let b = image("b", &["base", "b-top"]);
        meta.put_image(&a, &[r("a")]).unwrap();
        meta.put_image(&b, &[r("b"), r("b:2")]).unwrap();

        let blobs = meta.referenced_blobs().unwrap();
        for digest in [&a.config, &a.manifest, &b.config, &b.manifest] {
            assert!(blobs.contains(digest));
        }
        for l in ["base", "a-top", "b-top"] {
            assert!(blobs.contains(&d(&format!("blob {l}"))));
        }
        assert_eq!(blobs.len(), 7);
        assert_eq!(meta.referenced_chains().unwrap().len(), 3);

        let refused = meta
            .delete_image_if(&b.config, |tags| tags.len() < 2)
            .unwrap();
        assert_eq!(refused, Deletion::Refused(vec![r("b:2"), r("b")]));
        assert_eq!(meta.delete_image(&a.config).unwrap(), Some(vec![r("a")]));
        assert_eq!(meta.delete_image(&a.config).unwrap(), None);
        assert!(meta.layers_of(&a.config).unwrap().is_empty());
        assert!(!meta.referenced_blobs().unwrap().contains(&d("blob a-top")));
        assert!(meta.referenced_blobs().unwrap().contains(&d("blob base")));
        assert_eq!(meta.referenced_chains().unwrap().len(), 2);

        // Untagging the last tag prunes the image.
        let first = meta.untag_and_prune(&r("b")).unwrap().unwrap();
        assert!(!first.image_deleted);
        let last = meta.untag_and_prune(&r("b:2")).unwrap().unwrap();
        assert_eq!(last.image, b.config);
        assert!(last.image_deleted);
        assert!(meta.untag_and_prune(&r("b")).unwrap().is_none());
        assert!(meta.list().unwrap().is_empty());
        assert!(meta.referenced_blobs().unwrap().is_empty());
    }

    #[test]
    fn concurrent_writers_from_many_connections() {
        let dir = tempfile::tempdir().unwrap();
        std::thread::scope(|s| {
            for t in 0..16 {
                let root = dir.path();
                s.spawn(move || {
                    // Each thread opens its own connection, like a separate process.
                    let meta = Meta::open(root).unwrap();
                    for i in 0..10 {
                        let img = image(&format!("{t}-{i}"), &["base", &format!("{t}-{i}")]);
                        meta.put_image(&img, &[r("shared"), r(&format!("t{t}:{i}"))])
                            .unwrap();
                        meta.resolve("shared").unwrap();
                    }
                });
            }
        });
        let meta = Meta::open(dir.path()).unwrap();
        assert_eq!(meta.list().unwrap().len(), 160);
        assert_eq!(meta.referenced_chains().unwrap().len(), 161);
    }

    const CHILD_ENV: &str = "BERTH_TEST_META_WRITER_ROOT";

    /// Run as a child process by `concurrent_writers_from_many_processes`. A no-op in a normal
    /// test run.
    #[test]
    fn meta_writer_child() {
        let Some(root) = std::env::var_os(CHILD_ENV) else {
            return;
        };
        let meta = Meta::open(Path::new(&root)).unwrap();
        let me = std::process::id();
        for i in 0..20 {
            let img = image(&format!("{me}-{i}"), &["base", &format!("{me}-{i}")]);
            meta.put_image(&img, &[r("shared"), r(&format!("p{me}:{i}"))])
                .unwrap();
            // Both may find the image gone: "shared" moves on, and the last tag takes it.
            let pruned = meta.untag_and_prune(&r(&format!("p{me}:{i}"))).unwrap();
            if pruned.is_some_and(|u| u.image_deleted) {
                meta.put_image(&img, &[]).unwrap();
            }
            meta.tag(&r(&format!("p{me}:{i}")), &img.config).unwrap();
            meta.list().unwrap();
        }
    }

    /// SQLite shares one set of file locks among the connections of a process, so only
    /// separate processes show whether "database is locked" can escape the busy timeout.
    #[test]
    fn concurrent_writers_from_many_processes() {
        let dir = tempfile::tempdir().unwrap();
        let children: Vec<_> = (0..8)
            .map(|_| {
                std::process::Command::new(std::env::current_exe().unwrap())
                    .args([
                        "--exact",
                        "meta::tests::meta_writer_child",
                        "--test-threads=1",
                    ])
                    .env(CHILD_ENV, dir.path())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "child failed ({}): {stdout}",
                out.status
            );
        }
        let meta = Meta::open(dir.path()).unwrap();
        let images = meta.list().unwrap();
        assert_eq!(images.len(), 8 * 20);
        let tags: usize = images.iter().map(|i| i.tags.len()).sum();
        assert_eq!(tags, 8 * 20 + 1);
    }
}
