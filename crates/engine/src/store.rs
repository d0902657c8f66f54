//! Containers in SQLite: the `containers` table of `<root>/berth.db`, beside the image
//! store's tables, on a connection set up the same way (WAL, busy timeout).
//!
//! Many `berth` processes change containers at once (20 parallel `run --rm`, a monitor's
//! exit command while `ps` reads), so every change is one statement or one `BEGIN
//! IMMEDIATE` transaction, and state changes are guarded by the state they expect
//! (`UPDATE … WHERE state = 'starting'`): whoever comes second sees 0 rows changed instead
//! of overwriting a newer state.

use crate::options::CreateOptions;
use image::meta::rusqlite::{self, params, Connection, OptionalExtension, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS containers (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    image         TEXT NOT NULL,
    image_name    TEXT NOT NULL,
    created       INTEGER NOT NULL,
    options       TEXT NOT NULL,
    runtime       TEXT NOT NULL,
    state         TEXT NOT NULL,
    pid           INTEGER NOT NULL DEFAULT 0,
    monitor_pid   INTEGER NOT NULL DEFAULT 0,
    monitor_start INTEGER NOT NULL DEFAULT 0,
    exit_code     INTEGER NOT NULL DEFAULT 0,
    oom_killed    INTEGER NOT NULL DEFAULT 0,
    started_at    INTEGER NOT NULL DEFAULT 0,
    finished_at   INTEGER NOT NULL DEFAULT 0,
    restart_count INTEGER NOT NULL DEFAULT 0,
    stopped       INTEGER NOT NULL DEFAULT 0,
    error         TEXT NOT NULL DEFAULT ''
);
";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("container database {}: {action}: {source}", path.display())]
    Db {
        path: PathBuf,
        action: String,
        source: rusqlite::Error,
    },
    #[error("container database: {what} of {id} is not valid: {reason}")]
    Corrupt {
        id: String,
        what: &'static str,
        reason: String,
    },
}

type Result<T> = std::result::Result<T, StoreError>;

/// Docker's container states, plus `starting` (between `start` and the monitor's answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Created,
    Starting,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Starting => "starting",
            State::Running => "running",
            State::Paused => "paused",
            State::Restarting => "restarting",
            State::Removing => "removing",
            State::Exited => "exited",
        }
    }

    fn parse(s: &str) -> Option<State> {
        Some(match s {
            "created" => State::Created,
            "starting" => State::Starting,
            "running" => State::Running,
            "paused" => State::Paused,
            "restarting" => State::Restarting,
            "removing" => State::Removing,
            "exited" => State::Exited,
            _ => return None,
        })
    }

    /// Docker's `State.Status`: `starting` is shown as `created` (the start has not
    /// happened yet as far as a client can tell).
    pub fn docker_status(self) -> &'static str {
        match self {
            State::Starting => "created",
            s => s.as_str(),
        }
    }

    /// A process is (or may be) alive under a monitor.
    pub fn is_live(self) -> bool {
        matches!(self, State::Starting | State::Running | State::Paused)
    }
}

/// One container as stored. Times are Unix nanoseconds, 0 for never.
#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    pub name: String,
    /// The image ID (config digest).
    pub image: String,
    /// The image as the user named it.
    pub image_name: String,
    pub created: i64,
    pub options: CreateOptions,
    /// The OCI runtime binary's path.
    pub runtime: PathBuf,
    pub state: State,
    pub pid: i32,
    pub monitor_pid: i32,
    /// The monitor's start time (clock ticks since boot, /proc/PID/stat field 22), so a
    /// reused pid is not mistaken for the monitor.
    pub monitor_start: u64,
    pub exit_code: i32,
    pub oom_killed: bool,
    pub started_at: i64,
    pub finished_at: i64,
    pub restart_count: u32,
    /// Stopped by `stop`/`kill`/`rm -f`: restart policies other than `always` hold off.
    pub stopped: bool,
    pub error: String,
}

impl Container {
    /// A container as `create` records it: nothing run yet.
    pub fn new(
        id: String,
        name: String,
        image: String,
        options: CreateOptions,
        runtime: PathBuf,
    ) -> Container {
        Container {
            id,
            name,
            image,
            image_name: options.image.clone(),
            created: crate::container::now_nanos(),
            options,
            runtime,
            state: State::Created,
            pid: 0,
            monitor_pid: 0,
            monitor_start: 0,
            exit_code: 0,
            oom_killed: false,
            started_at: 0,
            finished_at: 0,
            restart_count: 0,
            stopped: false,
            error: String::new(),
        }
    }
}

/// What the monitor reported when a container stopped.
#[derive(Debug, Clone, Default)]
pub struct Exit {
    pub exit_code: i32,
    pub oom_killed: bool,
    pub finished_at: i64,
    pub error: String,
}

pub struct Store {
    path: PathBuf,
    conn: image::meta::Shared,
}

const COLUMNS: &str = "id, name, image, image_name, created, options, runtime, state, pid, \
    monitor_pid, monitor_start, exit_code, oom_killed, started_at, finished_at, \
    restart_count, stopped, error";

impl Store {
    /// Opens the containers table in `<root>/berth.db`, creating it if missing.
    pub fn open(root: &Path) -> Result<Store> {
        let path = root.join("berth.db");
        let conn = image::meta::connect(root).map_err(db(&path, "opening"))?;
        Store::open_shared(root, std::sync::Arc::new(Mutex::new(conn)))
    }

    /// The same on a connection other components use too (the image store's).
    pub fn open_shared(root: &Path, conn: image::meta::Shared) -> Result<Store> {
        let path = root.join("berth.db");
        image::meta::ensure_tables(
            &conn.lock().unwrap_or_else(|e| e.into_inner()),
            "containers",
            SCHEMA,
        )
        .map_err(db(&path, "creating the containers table"))?;
        Ok(Store { path, conn })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a container. `Ok(false)` if the name is taken (the caller names the error).
    pub fn insert(&self, c: &Container) -> Result<bool> {
        let options = serde_json::to_string(&c.options).map_err(|e| StoreError::Corrupt {
            id: c.id.clone(),
            what: "options",
            reason: e.to_string(),
        })?;
        let r = self.conn().execute(
            "INSERT INTO containers (id, name, image, image_name, created, options, runtime, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                c.id,
                c.name,
                c.image,
                c.image_name,
                c.created,
                options,
                c.runtime.to_string_lossy(),
                c.state.as_str()
            ],
        );
        match r {
            Ok(_) => Ok(true),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Ok(false)
            }
            Err(e) => Err(db(&self.path, "adding a container")(e)),
        }
    }

    pub fn get(&self, id: &str) -> Result<Option<Container>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM containers WHERE id = ?1"))
            .map_err(db(&self.path, "reading a container"))?;
        let row = stmt
            .query_row([id], raw_row)
            .optional()
            .map_err(db(&self.path, "reading a container"))?;
        row.map(decode).transpose()
    }

    /// Every container, newest first (as `docker ps` lists them).
    pub fn list(&self) -> Result<Vec<Container>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM containers ORDER BY created DESC, id"
            ))
            .map_err(db(&self.path, "listing containers"))?;
        let rows = stmt
            .query_map([], raw_row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(db(&self.path, "listing containers"))?;
        rows.into_iter().map(decode).collect()
    }

    /// Live containers that may join another's network namespace (`--network
    /// container:…`): only rows whose options mention it are decoded, so a store's
    /// every container exit does not parse every container.
    pub fn live_network_joiners(&self) -> Result<Vec<Container>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM containers
                 WHERE state IN ('starting', 'running', 'paused')
                 AND instr(options, '\"container:') > 0"
            ))
            .map_err(db(&self.path, "listing containers"))?;
        let rows = stmt
            .query_map([], raw_row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(db(&self.path, "listing containers"))?;
        rows.into_iter().map(decode).collect()
    }

    /// Docker's lookup: a full ID, a name, or a unique ID prefix. `Ok(None)` if nothing
    /// matches; an ambiguous prefix is an error naming it.
    pub fn find(&self, key: &str) -> Result<Option<Result<Container>>> {
        let key = key.strip_prefix('/').unwrap_or(key);
        // An exact id or name wins over prefixes (docker's order).
        if let Some(c) = self.get_exact(key)? {
            return Ok(Some(Ok(c)));
        }
        let ids: Vec<String> = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id FROM containers WHERE substr(id, 1, length(?1)) = ?1 LIMIT 2",
                )
                .map_err(db(&self.path, "finding a container"))?;
            stmt.query_map([key], |r| r.get(0))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
                .map_err(db(&self.path, "finding a container"))?
        };
        match ids.as_slice() {
            [] => Ok(None),
            [id] => Ok(self.get(id)?.map(Ok)),
            _ => Ok(Some(Err(StoreError::Corrupt {
                id: key.to_string(),
                what: "prefix",
                reason: "matches more than one container".into(),
            }))),
        }
    }

    fn get_exact(&self, key: &str) -> Result<Option<Container>> {
        if let Some(c) = self.get(key)? {
            return Ok(Some(c));
        }
        let conn = self.conn();
        let id: Option<String> = conn
            .query_row("SELECT id FROM containers WHERE name = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db(&self.path, "finding a container"))?;
        drop(conn);
        match id {
            Some(id) => self.get(&id),
            None => Ok(None),
        }
    }

    /// Moves `id` from one of `from` to `to`; false if it was in none of them.
    pub fn transition(&self, id: &str, from: &[State], to: State) -> Result<bool> {
        let list: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        let placeholders = (0..list.len())
            .map(|i| format!("?{}", i + 3))
            .collect::<Vec<_>>()
            .join(",");
        let sql =
            format!("UPDATE containers SET state = ?2 WHERE id = ?1 AND state IN ({placeholders})");
        let values = [id, to.as_str()].into_iter().chain(list.iter().copied());
        let n = self
            .conn()
            .execute(&sql, rusqlite::params_from_iter(values))
            .map_err(db(&self.path, "changing a container's state"))?;
        Ok(n == 1)
    }

    /// A start the user asked for: `from` → `starting`, and an earlier stop forgotten in
    /// the same update (so a stop that comes after it is never lost). False if the
    /// container was in none of the `from` states.
    pub fn begin_start(&self, id: &str, from: &[State]) -> Result<bool> {
        let list: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        let placeholders = (0..list.len())
            .map(|i| format!("?{}", i + 2))
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!(
            "UPDATE containers SET state = 'starting', stopped = 0
             WHERE id = ?1 AND state IN ({placeholders})"
        );
        let values = std::iter::once(id).chain(list.iter().copied());
        let n = self
            .conn()
            .execute(&sql, rusqlite::params_from_iter(values))
            .map_err(db(&self.path, "starting a container"))?;
        Ok(n == 1)
    }

    /// `exited` → `restarting` for the restart policy, unless a stop is recorded: in one
    /// update, so a `stop` either comes first and cancels the restart, or finds the
    /// container restarting and ends it there. False if it did not change.
    pub fn begin_backoff(&self, id: &str) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "UPDATE containers SET state = 'restarting'
                 WHERE id = ?1 AND state = 'exited' AND stopped = 0",
                [id],
            )
            .map_err(db(&self.path, "restarting a container"))?;
        Ok(n == 1)
    }

    /// The restart policy's start: `restarting` → `starting` unless a stop has been
    /// recorded, checked in the same update. False if stopped (or no longer restarting).
    pub fn begin_restart(&self, id: &str) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "UPDATE containers SET state = 'starting'
                 WHERE id = ?1 AND state = 'restarting' AND stopped = 0",
                [id],
            )
            .map_err(db(&self.path, "restarting a container"))?;
        Ok(n == 1)
    }

    /// `starting` → `running` with the process and its monitor; false if the container
    /// is no longer starting (its exit was already recorded).
    pub fn set_running(&self, id: &str, pid: i32, monitor: (i32, u64), at: i64) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "UPDATE containers SET state = 'running', pid = ?2, monitor_pid = ?3,
                 monitor_start = ?4, started_at = ?5, error = ''
                 WHERE id = ?1 AND state = 'starting'",
                params![id, pid, monitor.0, monitor.1 as i64, at],
            )
            .map_err(db(&self.path, "recording a start"))?;
        Ok(n == 1)
    }

    /// Records the monitor before it reports (so a crash in between is noticed).
    pub fn set_monitor(&self, id: &str, monitor: (i32, u64)) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE containers SET monitor_pid = ?2, monitor_start = ?3 WHERE id = ?1",
                params![id, monitor.0, monitor.1 as i64],
            )
            .map_err(db(&self.path, "recording a monitor"))?;
        Ok(())
    }

    /// A start that failed: back to `to` with the error.
    pub fn set_start_failed(&self, id: &str, to: State, error: &str, exit_code: i32) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE containers SET state = ?2, error = ?3, exit_code = ?4, pid = 0,
                 monitor_pid = 0, monitor_start = 0 WHERE id = ?1",
                params![id, to.as_str(), error, exit_code],
            )
            .map_err(db(&self.path, "recording a failed start"))?;
        Ok(())
    }

    /// The container stopped: `exited`, with its status.
    pub fn set_exited(&self, id: &str, exit: &Exit) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE containers SET state = 'exited', exit_code = ?2, oom_killed = ?3,
                 finished_at = ?4, error = ?5, pid = 0, monitor_pid = 0, monitor_start = 0
                 WHERE id = ?1",
                params![
                    id,
                    exit.exit_code,
                    exit.oom_killed,
                    exit.finished_at,
                    exit.error
                ],
            )
            .map_err(db(&self.path, "recording an exit"))?;
        Ok(())
    }

    pub fn set_stopped(&self, id: &str, stopped: bool) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE containers SET stopped = ?2 WHERE id = ?1",
                params![id, stopped],
            )
            .map_err(db(&self.path, "recording a stop"))?;
        Ok(())
    }

    pub fn bump_restart_count(&self, id: &str) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE containers SET restart_count = restart_count + 1 WHERE id = ?1",
                [id],
            )
            .map_err(db(&self.path, "counting a restart"))?;
        Ok(())
    }

    /// Renames; false if the new name is taken.
    pub fn rename(&self, id: &str, name: &str) -> Result<bool> {
        match self.conn().execute(
            "UPDATE containers SET name = ?2 WHERE id = ?1",
            params![id, name],
        ) {
            Ok(_) => Ok(true),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Ok(false)
            }
            Err(e) => Err(db(&self.path, "renaming a container")(e)),
        }
    }

    pub fn delete(&self, id: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db(&self.path, "removing a container"))?;
        tx.execute("DELETE FROM containers WHERE id = ?1", [id])
            .and_then(|_| tx.commit())
            .map_err(db(&self.path, "removing a container"))?;
        Ok(())
    }

    /// Image IDs that some container uses (they cannot be removed without `-f`).
    pub fn images_in_use(&self) -> Result<Vec<(String, String)>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT image, id FROM containers")
            .map_err(db(&self.path, "listing containers"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(db(&self.path, "listing containers"))?;
        Ok(rows)
    }
}

type Raw = (
    (String, String, String, String, i64, String, String, String),
    (i32, i32, i64, i32, bool, i64, i64, u32, bool, String),
);

fn raw_row(r: &rusqlite::Row) -> rusqlite::Result<Raw> {
    Ok((
        (
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
        ),
        (
            r.get(8)?,
            r.get(9)?,
            r.get(10)?,
            r.get(11)?,
            r.get(12)?,
            r.get(13)?,
            r.get(14)?,
            r.get(15)?,
            r.get(16)?,
            r.get(17)?,
        ),
    ))
}

fn decode(raw: Raw) -> Result<Container> {
    let (
        (id, name, image, image_name, created, options, runtime, state),
        (
            pid,
            monitor_pid,
            monitor_start,
            exit_code,
            oom_killed,
            started_at,
            finished_at,
            restart_count,
            stopped,
            error,
        ),
    ) = raw;
    let options = serde_json::from_str(&options).map_err(|e| StoreError::Corrupt {
        id: id.clone(),
        what: "options",
        reason: e.to_string(),
    })?;
    let state = State::parse(&state).ok_or_else(|| StoreError::Corrupt {
        id: id.clone(),
        what: "state",
        reason: format!("unknown state {state:?}"),
    })?;
    Ok(Container {
        id,
        name,
        image,
        image_name,
        created,
        options,
        runtime: PathBuf::from(runtime),
        state,
        pid,
        monitor_pid,
        monitor_start: monitor_start as u64,
        exit_code,
        oom_killed,
        started_at,
        finished_at,
        restart_count,
        stopped,
        error,
    })
}

fn db<'a>(path: &'a Path, action: &'a str) -> impl FnOnce(rusqlite::Error) -> StoreError + 'a {
    move |source| StoreError::Db {
        path: path.to_path_buf(),
        action: action.to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(id: &str, name: &str) -> Container {
        let options = CreateOptions {
            image: "busybox".into(),
            ..CreateOptions::default()
        };
        Container::new(
            id.into(),
            name.into(),
            "sha256:abc".into(),
            options,
            "/usr/bin/runc".into(),
        )
    }

    #[test]
    fn names_unique_lookup_by_prefix_and_guarded_transitions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.insert(&container("abc123", "web")).unwrap());
        assert!(store.insert(&container("abd456", "db")).unwrap());
        assert!(
            !store.insert(&container("fff", "web")).unwrap(),
            "name taken"
        );

        assert_eq!(store.find("web").unwrap().unwrap().unwrap().id, "abc123");
        assert_eq!(store.find("/web").unwrap().unwrap().unwrap().id, "abc123");
        assert_eq!(store.find("abc").unwrap().unwrap().unwrap().id, "abc123");
        assert!(store.find("ab").unwrap().unwrap().is_err(), "ambiguous");
        assert!(store.find("zzz").unwrap().is_none());
        assert!(
            store.find("a%").unwrap().is_none(),
            "LIKE wildcards are literal"
        );

        assert!(store
            .transition("abc123", &[State::Created, State::Exited], State::Starting)
            .unwrap());
        assert!(!store
            .transition("abc123", &[State::Created], State::Starting)
            .unwrap());
        store
            .set_exited(
                "abc123",
                &Exit {
                    exit_code: 3,
                    ..Exit::default()
                },
            )
            .unwrap();
        assert!(
            !store.set_running("abc123", 42, (43, 44), 5).unwrap(),
            "an exit recorded first is not overwritten"
        );
        let c = store.get("abc123").unwrap().unwrap();
        assert_eq!((c.state, c.exit_code), (State::Exited, 3));

        assert!(!store.rename("abd456", "web").unwrap());
        assert!(store.rename("abd456", "db2").unwrap());
        store.delete("abd456").unwrap();
        assert_eq!(store.list().unwrap().len(), 1);
    }
}
