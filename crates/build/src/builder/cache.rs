//! The layer cache: which image a build step made from which state, in `berth.db`.
//!
//! Every step of a build ends in an image (as Docker's classic builder does: metadata
//! steps make an image with an empty layer in its history). The cache maps the step's key
//! to that image:
//!
//! ```text
//! build_cache  key TEXT PRIMARY KEY       sha256 over the parent's key, the instruction after
//!                                         substitution, and what it reads (see builder docs)
//!              image → images(id) ON DELETE CASCADE   the image the step made
//!              parent TEXT                the image the step started from (NULL: scratch)
//!              created INTEGER NOT NULL   unix seconds
//!              final INTEGER              1 once a whole build ended in the image
//! ```
//!
//! Images are the cache's values, so the image store's GC keeps their blobs and snapshots
//! for as long as they are images; removing an image (`rmi`, `image prune`) drops the
//! cache entries that led to it. Untagged images that are only steps of builds (another
//! step built on them, or no build ended in them, as after a failed build) are Docker's
//! intermediate images: `berth images` hides them (`-a` shows them).

use image::digest::Digest;
use image::meta::Shared;
use rusqlite::{params, OptionalExtension};
use std::collections::HashSet;

const TABLE: &str = "build_cache";
const DDL: &str = "
CREATE TABLE IF NOT EXISTS build_cache (
    key     TEXT PRIMARY KEY,
    image   TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    parent  TEXT,
    created INTEGER NOT NULL,
    final   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS build_cache_image ON build_cache(image);
CREATE INDEX IF NOT EXISTS build_cache_parent ON build_cache(parent);
";

#[derive(Debug, thiserror::Error)]
#[error("build cache: {0}")]
pub struct CacheError(#[from] rusqlite::Error);

pub struct Cache {
    conn: Shared,
}

impl Cache {
    /// The cache in the image store's database (the table is made on first use).
    pub fn open(conn: Shared) -> Result<Cache, CacheError> {
        {
            let c = conn.lock().unwrap_or_else(|e| e.into_inner());
            image::meta::ensure_tables(&c, TABLE, DDL)?;
        }
        Ok(Cache { conn })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The image a step with `key` made, if it is still there.
    pub fn get(&self, key: &str) -> Result<Option<Digest>, CacheError> {
        let id: Option<String> = self
            .lock()
            .query_row(
                "SELECT c.image FROM build_cache c JOIN images i ON i.id = c.image
                 WHERE c.key = ?1",
                [key],
                |r| r.get(0),
            )
            .optional()?;
        Ok(id.and_then(|id| id.parse().ok()))
    }

    /// Records that the step `key`, started from `parent`, made `image`.
    pub fn put(
        &self,
        key: &str,
        image: &Digest,
        parent: Option<&Digest>,
    ) -> Result<(), CacheError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.lock().execute(
            "INSERT OR REPLACE INTO build_cache (key, image, parent, created)
             VALUES (?1, ?2, ?3, ?4)",
            params![key, image.to_string(), parent.map(|p| p.to_string()), now],
        )?;
        Ok(())
    }

    /// Marks `image` as what a whole build made: it is shown even untagged.
    pub fn mark_final(&self, image: &Digest) -> Result<(), CacheError> {
        self.lock().execute(
            "UPDATE build_cache SET final = 1 WHERE image = ?1",
            [image.to_string()],
        )?;
        Ok(())
    }

    /// Docker's intermediate images: those other steps started from, and those only
    /// steps ended in.
    pub fn intermediates(&self) -> Result<HashSet<String>, CacheError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT parent FROM build_cache WHERE parent IS NOT NULL AND parent != image
             UNION
             SELECT image FROM build_cache GROUP BY image HAVING MAX(final) = 0",
        )?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect::<Result<_, _>>().map_err(CacheError::from)
    }

    /// Every image the cache holds, and forgets them all (`builder prune`): the caller
    /// removes those that are neither tagged nor used.
    pub fn clear(&self) -> Result<Vec<String>, CacheError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let images: Vec<String> = {
            let mut stmt = tx.prepare(
                "SELECT image FROM build_cache UNION SELECT parent FROM build_cache
                 WHERE parent IS NOT NULL",
            )?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect::<Result<_, _>>()?
        };
        tx.execute("DELETE FROM build_cache", [])?;
        tx.commit()?;
        Ok(images)
    }
}

/// Intermediate images in the store at `conn` (no table yet: none).
pub fn intermediate_images(conn: &Shared) -> HashSet<String> {
    Cache::open(conn.clone())
        .and_then(|c| c.intermediates())
        .unwrap_or_default()
}
