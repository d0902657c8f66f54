//! IPAM and port reservations in SQLite: `networks`, `leases` and `ports` in
//! `network.db` of the host's network state directory.
//!
//! The database is the host's, not a store's: the bridge is a host-wide object that
//! every `--root` shares, so two stores handing out addresses from their own tables
//! would give the same address twice on one wire. Each lease names its holder's store
//! (`root`), so a lease whose container is gone can be recognised from any store.
//!
//! Many `berth` processes allocate at once (parallel `run --rm -p`), so an allocation is
//! one `BEGIN IMMEDIATE` transaction on a WAL database with a busy timeout: it reads
//! the leases, picks, and writes before anyone else can pick.

use crate::ports::{self, PortBinding, PortSpec, Proto};
use crate::Error;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS networks (
    name     TEXT PRIMARY KEY,
    bridge   TEXT NOT NULL,
    subnet   INTEGER NOT NULL,
    prefix   INTEGER NOT NULL,
    gateway  INTEGER NOT NULL,
    -- the last address handed out: the next search starts after it, so an address
    -- just released is not reused at once (as Docker's IPAM).
    last     INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS leases (
    network  TEXT NOT NULL,
    address  INTEGER NOT NULL,
    holder   TEXT NOT NULL,
    root     TEXT NOT NULL,
    netns    TEXT NOT NULL,
    created  INTEGER NOT NULL,
    -- the names the network's DNS server answers with this address (JSON array):
    -- the container's name, short id, hostname and aliases on this network.
    names    TEXT NOT NULL DEFAULT '[]',
    -- the interface inside the container: eth0 for the network it was started on,
    -- eth1... for those `network connect` added.
    ifname   TEXT NOT NULL DEFAULT 'eth0',
    PRIMARY KEY (network, address),
    UNIQUE (holder, network)
);
-- networks a container joined with `network connect`, running or not, beside the one
-- it was created on (`members`): it gets an interface on each at every start.
CREATE TABLE IF NOT EXISTS connections (
    holder   TEXT NOT NULL,
    network  TEXT NOT NULL,
    root     TEXT NOT NULL,
    name     TEXT NOT NULL,
    aliases  TEXT NOT NULL,
    created  INTEGER NOT NULL,
    PRIMARY KEY (holder, network)
);
CREATE TABLE IF NOT EXISTS ports (
    proto          TEXT NOT NULL,
    host_ip        TEXT NOT NULL,
    host_port      INTEGER NOT NULL,
    container_port INTEGER NOT NULL,
    holder         TEXT NOT NULL,
    PRIMARY KEY (proto, host_ip, host_port)
);
CREATE INDEX IF NOT EXISTS ports_holder ON ports (holder);
-- user networks (`network create`): what docker's inspect shows beyond the addressing.
CREATE TABLE IF NOT EXISTS netdefs (
    name     TEXT PRIMARY KEY,
    id       TEXT NOT NULL UNIQUE,
    created  TEXT NOT NULL,
    internal INTEGER NOT NULL,
    labels   TEXT NOT NULL,
    options  TEXT NOT NULL,
    -- `network create --dns`: where its DNS server forwards (JSON array; empty: the
    -- host's resolvers).
    dns      TEXT NOT NULL DEFAULT '[]',
    -- the store (--root) whose `network create` made it: its `system prune` may remove
    -- it when unused.
    root     TEXT NOT NULL DEFAULT ''
);
-- containers that name a user network, running or not: `network rm` refuses while any
-- of them still exists.
CREATE TABLE IF NOT EXISTS builtins (
    name     TEXT PRIMARY KEY,
    id       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS members (
    holder   TEXT PRIMARY KEY,
    network  TEXT NOT NULL,
    root     TEXT NOT NULL,
    name     TEXT NOT NULL
);
";

/// A user network's definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetDef {
    pub name: String,
    pub id: String,
    pub created: String,
    pub internal: bool,
    pub labels: std::collections::BTreeMap<String, String>,
    pub options: std::collections::BTreeMap<String, String>,
    /// Upstream name servers of its DNS server (`--dns`); empty: the host's.
    pub dns: Vec<String>,
    /// The store that created it ("" when unknown).
    pub root: String,
}

/// A container that names a user network.
#[derive(Debug, Clone)]
pub struct Member {
    pub holder: String,
    pub network: String,
    pub root: PathBuf,
    pub name: String,
}

/// A network's addressing as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRow {
    pub name: String,
    pub bridge: String,
    pub subnet: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
}

/// One container's address.
#[derive(Debug, Clone)]
pub struct Lease {
    pub network: String,
    pub address: Ipv4Addr,
    pub holder: String,
    pub root: PathBuf,
    pub netns: PathBuf,
    /// The interface inside the container.
    pub ifname: String,
}

/// A network a container joined with `network connect`.
#[derive(Debug, Clone)]
pub struct Connected {
    pub holder: String,
    pub network: String,
    pub root: PathBuf,
    pub name: String,
    pub aliases: Vec<String>,
}

/// Who asks: a container of a store, with its namespace file.
pub struct Holder<'a> {
    pub id: &'a str,
    pub root: &'a Path,
    pub netns: &'a Path,
    /// What the network's DNS server answers with its address.
    pub names: &'a [String],
    /// Its interface inside the container.
    pub ifname: &'a str,
}

/// What an allocation failed on: a holder in the way may be stale.
pub enum Blocked {
    /// The port is held by another container (which may be gone).
    Port { binding: String, holder: String },
    /// Every address is leased.
    Full,
}

pub struct State {
    path: PathBuf,
    conn: Connection,
}

fn db(path: &Path, action: &str) -> impl FnOnce(rusqlite::Error) -> Error {
    let path = path.to_path_buf();
    let action = action.to_string();
    move |source| Error::Db {
        path,
        action,
        source,
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == rusqlite::ErrorCode::DatabaseBusy || f.code == rusqlite::ErrorCode::DatabaseLocked)
}

impl State {
    /// Opens (creating) `DIR/network.db`.
    pub fn open(dir: &Path) -> Result<State, Error> {
        let path = dir.join("network.db");
        std::fs::create_dir_all(dir).map_err(|source| Error::Netns {
            what: "creating",
            path: dir.to_path_buf(),
            source,
        })?;
        let conn = Connection::open(&path).map_err(db(&path, "opening"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .and_then(|()| conn.pragma_update(None, "synchronous", "NORMAL"))
            .map_err(db(&path, "configuring"))?;
        // Switching to WAL needs a moment alone and is not retried by the busy handler.
        let deadline = Instant::now() + BUSY_TIMEOUT;
        loop {
            match conn
                .pragma_update_and_check(None, "journal_mode", "wal", |r| r.get::<_, String>(0))
            {
                Ok(_) => break,
                Err(e) if is_busy(&e) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => return Err(db(&path, "switching to WAL")(e)),
            }
        }
        conn.execute_batch(SCHEMA)
            .map_err(db(&path, "creating tables"))?;
        let mut state = State { path, conn };
        state.migrate()?;
        Ok(state)
    }

    /// Brings a database made by an earlier berth up to the schema above: `leases`
    /// gains `names` and loses the one-lease-per-holder constraint (a container may be
    /// on several networks), `netdefs` gains `dns`. The database is the host's and other
    /// berth processes use it meanwhile, so it is one IMMEDIATE transaction, checked
    /// again inside; earlier binaries keep working on the new tables (they name their
    /// columns, and the new ones have defaults).
    fn migrate(&mut self) -> Result<(), Error> {
        let has = |conn: &Connection, table: &str, column: &str| -> rusqlite::Result<bool> {
            let mut st = conn.prepare(&format!("PRAGMA table_info({table})"))?;
            let cols = st.query_map([], |r| r.get::<_, String>(1))?;
            for c in cols {
                if c? == column {
                    return Ok(true);
                }
            }
            Ok(false)
        };
        let path = self.path.clone();
        let current = |conn: &Connection| -> rusqlite::Result<bool> {
            Ok(has(conn, "leases", "names")?
                && has(conn, "leases", "ifname")?
                && has(conn, "netdefs", "dns")?
                && has(conn, "netdefs", "root")?)
        };
        if current(&self.conn).map_err(db(&path, "reading the schema"))? {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db(&path, "starting a transaction"))?;
        if !has(&tx, "leases", "names").map_err(db(&path, "reading the schema"))? {
            tx.execute_batch(
                "CREATE TABLE leases_new (
                    network  TEXT NOT NULL,
                    address  INTEGER NOT NULL,
                    holder   TEXT NOT NULL,
                    root     TEXT NOT NULL,
                    netns    TEXT NOT NULL,
                    created  INTEGER NOT NULL,
                    names    TEXT NOT NULL DEFAULT '[]',
                    PRIMARY KEY (network, address),
                    UNIQUE (holder, network)
                );
                INSERT INTO leases_new (network, address, holder, root, netns, created)
                    SELECT network, address, holder, root, netns, created FROM leases;
                DROP TABLE leases;
                ALTER TABLE leases_new RENAME TO leases;",
            )
            .map_err(db(&path, "upgrading leases"))?;
        }
        if !has(&tx, "leases", "ifname").map_err(db(&path, "reading the schema"))? {
            tx.execute_batch("ALTER TABLE leases ADD COLUMN ifname TEXT NOT NULL DEFAULT 'eth0';")
                .map_err(db(&path, "upgrading leases"))?;
        }
        if !has(&tx, "netdefs", "dns").map_err(db(&path, "reading the schema"))? {
            tx.execute_batch("ALTER TABLE netdefs ADD COLUMN dns TEXT NOT NULL DEFAULT '[]';")
                .map_err(db(&path, "upgrading netdefs"))?;
        }
        if !has(&tx, "netdefs", "root").map_err(db(&path, "reading the schema"))? {
            tx.execute_batch("ALTER TABLE netdefs ADD COLUMN root TEXT NOT NULL DEFAULT '';")
                .map_err(db(&path, "upgrading netdefs"))?;
        }
        tx.commit().map_err(db(&path, "committing"))
    }

    /// The state directory the database is in.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("/"))
    }

    pub fn network(&self, name: &str) -> Result<Option<NetworkRow>, Error> {
        self.conn
            .query_row(
                "SELECT name, bridge, subnet, prefix, gateway FROM networks WHERE name = ?1",
                params![name],
                |r| {
                    Ok(NetworkRow {
                        name: r.get(0)?,
                        bridge: r.get(1)?,
                        subnet: Ipv4Addr::from(r.get::<_, u32>(2)?),
                        prefix: r.get(3)?,
                        gateway: Ipv4Addr::from(r.get::<_, u32>(4)?),
                    })
                },
            )
            .optional()
            .map_err(db(&self.path, "reading networks"))
    }

    /// Records `n`; leases of an older subnet of the same network are dropped (the
    /// bridge they were on no longer has that subnet).
    pub fn put_network(&mut self, n: &NetworkRow) -> Result<(), Error> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db(&self.path, "starting a transaction"))?;
        tx.execute(
            "INSERT INTO networks (name, bridge, subnet, prefix, gateway) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (name) DO UPDATE SET bridge = ?2, subnet = ?3, prefix = ?4, gateway = ?5",
            params![n.name, n.bridge, u32::from(n.subnet), n.prefix, u32::from(n.gateway)],
        )
        .map_err(db(&self.path, "recording a network"))?;
        tx.commit().map_err(db(&self.path, "committing"))
    }

    pub fn networks(&self) -> Result<Vec<NetworkRow>, Error> {
        let mut st = self
            .conn
            .prepare("SELECT name, bridge, subnet, prefix, gateway FROM networks ORDER BY name")
            .map_err(db(&self.path, "reading networks"))?;
        let rows = st
            .query_map([], |r| {
                Ok(NetworkRow {
                    name: r.get(0)?,
                    bridge: r.get(1)?,
                    subnet: Ipv4Addr::from(r.get::<_, u32>(2)?),
                    prefix: r.get(3)?,
                    gateway: Ipv4Addr::from(r.get::<_, u32>(4)?),
                })
            })
            .map_err(db(&self.path, "reading networks"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(db(&self.path, "reading networks"))
    }

    /// Records a user network: its addressing and its definition, together.
    pub fn define(&mut self, n: &NetworkRow, d: &NetDef) -> Result<(), Error> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db(&self.path, "starting a transaction"))?;
        tx.execute(
            "INSERT INTO networks (name, bridge, subnet, prefix, gateway) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![n.name, n.bridge, u32::from(n.subnet), n.prefix, u32::from(n.gateway)],
        )
        .map_err(db(&self.path, "recording a network"))?;
        tx.execute(
            "INSERT INTO netdefs (name, id, created, internal, labels, options, dns, root)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                d.name,
                d.id,
                d.created,
                d.internal,
                serde_json::to_string(&d.labels).unwrap_or_default(),
                serde_json::to_string(&d.options).unwrap_or_default(),
                serde_json::to_string(&d.dns).unwrap_or_default(),
                d.root
            ],
        )
        .map_err(db(&self.path, "recording a network"))?;
        tx.commit().map_err(db(&self.path, "committing"))
    }

    /// Forgets network `name` (addressing, definition, leftover members).
    pub fn undefine(&mut self, name: &str) -> Result<(), Error> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db(&self.path, "starting a transaction"))?;
        for sql in [
            "DELETE FROM networks WHERE name = ?1",
            "DELETE FROM netdefs WHERE name = ?1",
            "DELETE FROM members WHERE network = ?1",
            "DELETE FROM connections WHERE network = ?1",
        ] {
            tx.execute(sql, params![name])
                .map_err(db(&self.path, "removing a network"))?;
        }
        tx.commit().map_err(db(&self.path, "committing"))
    }

    pub fn defs(&self) -> Result<Vec<NetDef>, Error> {
        let mut st = self
            .conn
            .prepare(
                "SELECT name, id, created, internal, labels, options, dns, root FROM netdefs ORDER BY name",
            )
            .map_err(db(&self.path, "reading networks"))?;
        let rows = st
            .query_map([], netdef_row)
            .map_err(db(&self.path, "reading networks"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(db(&self.path, "reading networks"))
    }

    /// The id of predefined network `name`, `fresh` when it has none yet.
    pub fn builtin_id(&mut self, name: &str, fresh: &str) -> Result<String, Error> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO builtins (name, id) VALUES (?1, ?2)",
                params![name, fresh],
            )
            .map_err(db(&self.path, "recording a network"))?;
        self.conn
            .query_row(
                "SELECT id FROM builtins WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .map_err(db(&self.path, "reading networks"))
    }

    /// Records that container `m.holder` names network `m.network`.
    pub fn join(&mut self, m: &Member) -> Result<(), Error> {
        self.conn
            .execute(
                "INSERT INTO members (holder, network, root, name) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (holder) DO UPDATE SET network = ?2, root = ?3, name = ?4",
                params![m.holder, m.network, m.root.to_string_lossy(), m.name],
            )
            .map(|_| ())
            .map_err(db(&self.path, "recording a network's container"))
    }

    /// Container `holder` is removed: it is no network's member or connection.
    pub fn leave(&mut self, holder: &str) -> Result<(), Error> {
        self.conn
            .execute("DELETE FROM members WHERE holder = ?1", params![holder])
            .and_then(|_| {
                self.conn
                    .execute("DELETE FROM connections WHERE holder = ?1", params![holder])
            })
            .map(|_| ())
            .map_err(db(&self.path, "forgetting a network's container"))
    }

    pub fn members_of(&self, network: &str) -> Result<Vec<Member>, Error> {
        let mut st = self
            .conn
            .prepare("SELECT holder, network, root, name FROM members WHERE network = ?1 ORDER BY holder")
            .map_err(db(&self.path, "reading members"))?;
        let rows = st
            .query_map(params![network], |r| {
                Ok(Member {
                    holder: r.get(0)?,
                    network: r.get(1)?,
                    root: PathBuf::from(r.get::<_, String>(2)?),
                    name: r.get(3)?,
                })
            })
            .map_err(db(&self.path, "reading members"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(db(&self.path, "reading members"))
    }

    pub fn lease_of(&self, holder: &str) -> Result<Option<Lease>, Error> {
        self.conn
            .query_row(
                "SELECT network, address, holder, root, netns, ifname FROM leases
                 WHERE holder = ?1 ORDER BY ifname LIMIT 1",
                params![holder],
                lease_row,
            )
            .optional()
            .map_err(db(&self.path, "reading leases"))
    }

    pub fn leases(&self) -> Result<Vec<Lease>, Error> {
        let mut st = self
            .conn
            .prepare("SELECT network, address, holder, root, netns, ifname FROM leases")
            .map_err(db(&self.path, "reading leases"))?;
        let rows = st
            .query_map([], lease_row)
            .map_err(db(&self.path, "reading leases"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(db(&self.path, "reading leases"))
    }

    /// Every lease of container `holder`, its first interface first.
    pub fn leases_of(&self, holder: &str) -> Result<Vec<Lease>, Error> {
        let mut st = self
            .conn
            .prepare(
                "SELECT network, address, holder, root, netns, ifname FROM leases
                 WHERE holder = ?1 ORDER BY ifname",
            )
            .map_err(db(&self.path, "reading leases"))?;
        let rows = st
            .query_map(params![holder], lease_row)
            .map_err(db(&self.path, "reading leases"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(db(&self.path, "reading leases"))
    }

    /// Releases container `holder`'s address on `network` only.
    pub fn release_one(&mut self, holder: &str, network: &str) -> Result<(), Error> {
        self.conn
            .execute(
                "DELETE FROM leases WHERE holder = ?1 AND network = ?2",
                params![holder, network],
            )
            .map(|_| ())
            .map_err(db(&self.path, "releasing a lease"))
    }

    /// Records `network connect`: false when it was recorded already.
    pub fn connect(&mut self, c: &Connected) -> Result<bool, Error> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        self.conn
            .execute(
                "INSERT OR IGNORE INTO connections (holder, network, root, name, aliases, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    c.holder,
                    c.network,
                    c.root.to_string_lossy(),
                    c.name,
                    serde_json::to_string(&c.aliases).unwrap_or_default(),
                    now
                ],
            )
            .map(|n| n == 1)
            .map_err(db(&self.path, "recording a connection"))
    }

    /// Forgets a `network connect`: false when there was none.
    pub fn disconnect(&mut self, holder: &str, network: &str) -> Result<bool, Error> {
        self.conn
            .execute(
                "DELETE FROM connections WHERE holder = ?1 AND network = ?2",
                params![holder, network],
            )
            .map(|n| n == 1)
            .map_err(db(&self.path, "forgetting a connection"))
    }

    /// The networks `holder` was connected to, in the order it was.
    pub fn connections_of(&self, holder: &str) -> Result<Vec<Connected>, Error> {
        self.connections_where("holder", holder)
    }

    /// The containers connected to `network` with `network connect`.
    pub fn connections_on(&self, network: &str) -> Result<Vec<Connected>, Error> {
        self.connections_where("network", network)
    }

    fn connections_where(&self, column: &str, value: &str) -> Result<Vec<Connected>, Error> {
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT holder, network, root, name, aliases FROM connections
                 WHERE {column} = ?1 ORDER BY created, network"
            ))
            .map_err(db(&self.path, "reading connections"))?;
        let rows = st
            .query_map(params![value], |r| {
                let aliases: String = r.get(4)?;
                Ok(Connected {
                    holder: r.get(0)?,
                    network: r.get(1)?,
                    root: PathBuf::from(r.get::<_, String>(2)?),
                    name: r.get(3)?,
                    aliases: serde_json::from_str(&aliases).unwrap_or_default(),
                })
            })
            .map_err(db(&self.path, "reading connections"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(db(&self.path, "reading connections"))
    }

    /// The definition of the user network with id `id`.
    pub fn def_by_id(&self, id: &str) -> Result<Option<NetDef>, Error> {
        self.conn
            .prepare_cached(
                "SELECT name, id, created, internal, labels, options, dns, root FROM netdefs WHERE id = ?1",
            )
            .and_then(|mut st| st.query_row(params![id], netdef_row).optional())
            .map_err(db(&self.path, "reading networks"))
    }

    /// What network `network`'s DNS server answers: each lease's address and names.
    /// A lease exists from the allocation of its address until the container's network
    /// is gone, and no other container can hold that address meanwhile, so a name never
    /// resolves to another container's address.
    pub fn dns_entries(&self, network: &str) -> Result<Vec<(Ipv4Addr, Vec<String>)>, Error> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT address, names FROM leases WHERE network = ?1 ORDER BY created, address",
            )
            .map_err(db(&self.path, "reading leases"))?;
        let rows = st
            .query_map(params![network], |r| {
                let names: String = r.get(1)?;
                Ok((
                    Ipv4Addr::from(r.get::<_, u32>(0)?),
                    serde_json::from_str(&names).unwrap_or_default(),
                ))
            })
            .map_err(db(&self.path, "reading leases"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(db(&self.path, "reading leases"))
    }

    /// Container `holder` was renamed from `old` to `new`: its DNS names and its
    /// member record follow, in one transaction.
    pub fn rename(&mut self, holder: &str, old: &str, new: &str) -> Result<(), Error> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db(&path, "starting a transaction"))?;
        let rows: Vec<(String, String)> = {
            let mut st = tx
                .prepare("SELECT network, names FROM leases WHERE holder = ?1")
                .map_err(db(&path, "reading leases"))?;
            let rows = st
                .query_map(params![holder], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db(&path, "reading leases"))?;
            rows.collect::<Result<_, _>>()
                .map_err(db(&path, "reading leases"))?
        };
        for (network, names) in rows {
            let mut names: Vec<String> = serde_json::from_str(&names).unwrap_or_default();
            for n in names.iter_mut().filter(|n| *n == old) {
                *n = new.to_string();
            }
            tx.execute(
                "UPDATE leases SET names = ?3 WHERE holder = ?1 AND network = ?2",
                params![
                    holder,
                    network,
                    serde_json::to_string(&names).unwrap_or_default()
                ],
            )
            .map_err(db(&path, "renaming"))?;
        }
        for table in ["members", "connections"] {
            tx.execute(
                &format!("UPDATE {table} SET name = ?2 WHERE holder = ?1"),
                params![holder, new],
            )
            .map_err(db(&path, "renaming"))?;
        }
        tx.commit().map_err(db(&path, "committing"))
    }

    /// How many addresses are leased on network `network`.
    pub fn lease_count(&self, network: &str) -> Result<i64, Error> {
        self.conn
            .query_row(
                "SELECT count(*) FROM leases WHERE network = ?1",
                params![network],
                |r| r.get(0),
            )
            .map_err(db(&self.path, "reading leases"))
    }

    pub fn ports_of(&self, holder: &str) -> Result<Vec<PortBinding>, Error> {
        let mut st = self
            .conn
            .prepare(
                "SELECT proto, host_ip, host_port, container_port FROM ports WHERE holder = ?1
                 ORDER BY container_port, proto, host_ip, host_port",
            )
            .map_err(db(&self.path, "reading ports"))?;
        let rows = st
            .query_map(params![holder], |r| {
                let proto: String = r.get(0)?;
                let ip: String = r.get(1)?;
                Ok(PortBinding {
                    proto: Proto::parse(&proto).unwrap_or(Proto::Tcp),
                    host_ip: ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED),
                    host_port: r.get(2)?,
                    container_port: r.get(3)?,
                })
            })
            .map_err(db(&self.path, "reading ports"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(db(&self.path, "reading ports"))
    }

    /// Releases everything `holder` has.
    pub fn release(&mut self, holder: &str) -> Result<(), Error> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db(&self.path, "starting a transaction"))?;
        tx.execute("DELETE FROM ports WHERE holder = ?1", params![holder])
            .map_err(db(&self.path, "releasing ports"))?;
        tx.execute("DELETE FROM leases WHERE holder = ?1", params![holder])
            .map_err(db(&self.path, "releasing a lease"))?;
        tx.commit().map_err(db(&self.path, "committing"))
    }

    /// The holder of a published host port that `spec` would collide with, if any.
    pub fn port_holder(
        &self,
        proto: Proto,
        ip: Ipv4Addr,
        port: u16,
    ) -> Result<Option<String>, Error> {
        port_holder(&self.conn, proto, ip, port).map_err(db(&self.path, "reading ports"))
    }

    /// One address in `net` and host ports for `wants`, for `who`, in one transaction.
    /// `Err(Ok(blocked))` says what was in the way, so the caller can reclaim stale
    /// holders and try again.
    pub fn allocate(
        &mut self,
        net: &NetworkRow,
        who: &Holder,
        wants: &[PortSpec],
    ) -> Result<Result<(Ipv4Addr, Vec<PortBinding>), Blocked>, Error> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db(&path, "starting a transaction"))?;
        let mut chosen: Vec<PortBinding> = Vec::new();
        for want in wants {
            match pick_port(&tx, want, &chosen).map_err(db(&path, "reading ports"))? {
                Ok(b) => chosen.push(b),
                Err(blocked) => return Ok(Err(blocked)),
            }
        }

        let taken: HashSet<u32> = {
            let mut st = tx
                .prepare("SELECT address FROM leases WHERE network = ?1")
                .map_err(db(&path, "reading leases"))?;
            let rows = st
                .query_map(params![net.name], |r| r.get::<_, u32>(0))
                .map_err(db(&path, "reading leases"))?;
            rows.collect::<Result<_, _>>()
                .map_err(db(&path, "reading leases"))?
        };
        let last: u32 = tx
            .query_row(
                "SELECT last FROM networks WHERE name = ?1",
                params![net.name],
                |r| r.get(0),
            )
            .optional()
            .map_err(db(&path, "reading networks"))?
            .unwrap_or(0);
        let Some(address) = next_free(net, last, &taken) else {
            return Ok(Err(Blocked::Full));
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        tx.execute(
            "INSERT INTO leases (network, address, holder, root, netns, created, names, ifname)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                net.name,
                u32::from(address),
                who.id,
                who.root.to_string_lossy(),
                who.netns.to_string_lossy(),
                now,
                serde_json::to_string(who.names).unwrap_or_default(),
                who.ifname
            ],
        )
        .map_err(db(&path, "recording a lease"))?;
        tx.execute(
            "UPDATE networks SET last = ?2 WHERE name = ?1",
            params![net.name, u32::from(address)],
        )
        .map_err(db(&path, "recording a lease"))?;
        for b in &chosen {
            tx.execute(
                "INSERT INTO ports (proto, host_ip, host_port, container_port, holder)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    b.proto.as_str(),
                    b.host_ip.to_string(),
                    b.host_port,
                    b.container_port,
                    who.id
                ],
            )
            .map_err(db(&path, "reserving a port"))?;
        }
        tx.commit().map_err(db(&path, "committing"))?;
        Ok(Ok((address, chosen)))
    }
}

fn netdef_row(r: &rusqlite::Row) -> rusqlite::Result<NetDef> {
    let labels: String = r.get(4)?;
    let options: String = r.get(5)?;
    let dns: String = r.get(6)?;
    Ok(NetDef {
        name: r.get(0)?,
        id: r.get(1)?,
        created: r.get(2)?,
        internal: r.get(3)?,
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        options: serde_json::from_str(&options).unwrap_or_default(),
        dns: serde_json::from_str(&dns).unwrap_or_default(),
        root: r.get(7)?,
    })
}

fn lease_row(r: &rusqlite::Row) -> rusqlite::Result<Lease> {
    Ok(Lease {
        network: r.get(0)?,
        address: Ipv4Addr::from(r.get::<_, u32>(1)?),
        holder: r.get(2)?,
        root: PathBuf::from(r.get::<_, String>(3)?),
        netns: PathBuf::from(r.get::<_, String>(4)?),
        ifname: r.get(5)?,
    })
}

/// Another container's reservation that overlaps `ip:port`: the same address, or either
/// side on every address.
fn port_holder(
    conn: &Connection,
    proto: Proto,
    ip: Ipv4Addr,
    port: u16,
) -> rusqlite::Result<Option<String>> {
    let any = Ipv4Addr::UNSPECIFIED.to_string();
    conn.query_row(
        "SELECT holder FROM ports WHERE proto = ?1 AND host_port = ?2
         AND (host_ip = ?3 OR host_ip = ?4 OR ?3 = ?4) LIMIT 1",
        params![proto.as_str(), port, ip.to_string(), any],
        |r| r.get(0),
    )
    .optional()
}

fn overlaps(a: &PortBinding, proto: Proto, ip: Ipv4Addr, port: u16) -> bool {
    a.proto == proto
        && a.host_port == port
        && (a.host_ip == ip || a.host_ip.is_unspecified() || ip.is_unspecified())
}

/// A host port for `want`: the first free one of its range, or a random free one.
fn pick_port(
    conn: &Connection,
    want: &PortSpec,
    chosen: &[PortBinding],
) -> rusqlite::Result<Result<PortBinding, Blocked>> {
    let binding = |port| PortBinding {
        proto: want.proto,
        host_ip: want.host_ip,
        host_port: port,
        container_port: want.container_port,
    };
    let usable = |port: u16| -> rusqlite::Result<Result<(), Blocked>> {
        let name = format!("{}:{}", want.host_ip, port);
        if chosen
            .iter()
            .any(|c| overlaps(c, want.proto, want.host_ip, port))
        {
            return Ok(Err(Blocked::Port {
                binding: name,
                holder: String::new(),
            }));
        }
        if let Some(holder) = port_holder(conn, want.proto, want.host_ip, port)? {
            return Ok(Err(Blocked::Port {
                binding: name,
                holder,
            }));
        }
        if ports::host_port_free(want.proto, want.host_ip, port).is_err() {
            return Ok(Err(Blocked::Port {
                binding: name,
                holder: String::new(),
            }));
        }
        Ok(Ok(()))
    };
    match want.host_ports {
        Some((lo, hi)) => {
            let mut first = None;
            for port in lo..=hi {
                match usable(port)? {
                    Ok(()) => return Ok(Ok(binding(port))),
                    Err(b) => {
                        // A stale holder of the one port asked for may be reclaimed;
                        // in a range, the next port will do.
                        if first.is_none() {
                            first = Some(b);
                        }
                    }
                }
            }
            Ok(Err(first.unwrap_or(Blocked::Full)))
        }
        None => {
            let (lo, hi) = ports::ephemeral_range();
            let span = u32::from(hi - lo) + 1;
            let start = random_u32() % span;
            for i in 0..span.min(4096) {
                let port = lo + ((start + i) % span) as u16;
                if let Ok(()) = usable(port)? {
                    return Ok(Ok(binding(port)));
                }
            }
            Ok(Err(Blocked::Port {
                binding: format!("{}:{lo}-{hi}", want.host_ip),
                holder: String::new(),
            }))
        }
    }
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // SAFETY: getrandom writes at most b.len() bytes into the buffer we own.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 4 {
        u32::from_ne_bytes(b)
    } else {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    }
}

/// The next address after `last` (wrapping) that is neither the subnet's own, its
/// broadcast, the gateway, nor taken.
fn next_free(net: &NetworkRow, last: u32, taken: &HashSet<u32>) -> Option<Ipv4Addr> {
    let base = u32::from(net.subnet);
    let size = 1u64 << (32 - u32::from(net.prefix));
    if size < 4 {
        return None;
    }
    let first = base + 1;
    let end = (u64::from(base) + size - 1) as u32; // broadcast, excluded
    let gateway = u32::from(net.gateway);
    let span = end - first;
    let start = if (first..end).contains(&last) {
        last + 1 - first
    } else {
        0
    };
    (0..span)
        .map(|i| first + (start + i) % span)
        .find(|a| *a != gateway && !taken.contains(a))
        .map(Ipv4Addr::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> NetworkRow {
        NetworkRow {
            name: "bridge".into(),
            bridge: "berth0".into(),
            subnet: Ipv4Addr::new(10, 89, 0, 0),
            prefix: 29,
            gateway: Ipv4Addr::new(10, 89, 0, 1),
        }
    }

    #[test]
    fn addresses_are_handed_out_in_turn_and_never_twice() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = State::open(tmp.path()).unwrap();
        s.put_network(&net()).unwrap();
        let mut got = Vec::new();
        for i in 0..5 {
            let id = format!("c{i}");
            let who = Holder {
                id: &id,
                root: tmp.path(),
                netns: tmp.path(),
                names: &[],
                ifname: "eth0",
            };
            let Ok(Ok((a, _))) = s.allocate(&net(), &who, &[]) else {
                panic!("allocation {i}")
            };
            got.push(a.to_string());
        }
        // /29: .1 is the gateway, .7 the broadcast: five addresses.
        assert_eq!(
            got,
            [
                "10.89.0.2",
                "10.89.0.3",
                "10.89.0.4",
                "10.89.0.5",
                "10.89.0.6"
            ]
        );
        let who = Holder {
            id: "c5",
            root: tmp.path(),
            netns: tmp.path(),
            names: &[],
            ifname: "eth0",
        };
        assert!(matches!(
            s.allocate(&net(), &who, &[]),
            Ok(Err(Blocked::Full))
        ));
        // Released: the next search starts after the last one handed out.
        s.release("c1").unwrap();
        let Ok(Ok((a, _))) = s.allocate(&net(), &who, &[]) else {
            panic!()
        };
        assert_eq!(a.to_string(), "10.89.0.3");
    }

    #[test]
    fn a_host_port_is_reserved_once() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = State::open(tmp.path()).unwrap();
        let mut n = net();
        n.prefix = 24;
        s.put_network(&n).unwrap();
        let spec = |ip: [u8; 4]| PortSpec {
            host_ip: Ipv4Addr::from(ip),
            host_ports: Some((1, 1)),
            container_port: 80,
            proto: Proto::Udp,
        };
        let who = |id| Holder {
            id,
            root: tmp.path(),
            netns: tmp.path(),
            names: &[],
            ifname: "eth0",
        };
        // Port 1 as root binds fine when nothing holds it; the DB is what conflicts.
        let first = s.allocate(&n, &who("a"), &[spec([127, 0, 0, 9])]).unwrap();
        assert!(first.is_ok());
        match s.allocate(&n, &who("b"), &[spec([0, 0, 0, 0])]).unwrap() {
            Err(Blocked::Port { binding, holder }) => {
                assert_eq!((binding.as_str(), holder.as_str()), ("0.0.0.0:1", "a"))
            }
            _ => panic!("the wildcard overlaps 127.0.0.9"),
        }
        assert!(s
            .allocate(&n, &who("c"), &[spec([127, 0, 0, 10])])
            .unwrap()
            .is_ok());
        assert_eq!(s.ports_of("a").unwrap().len(), 1);
        s.release("a").unwrap();
        assert!(s.ports_of("a").unwrap().is_empty());
        assert!(s.lease_of("a").unwrap().is_none());
    }

    #[test]
    fn a_database_of_an_earlier_berth_is_upgraded_in_place() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let c = Connection::open(tmp.path().join("network.db")).unwrap();
            c.execute_batch(
                "CREATE TABLE leases (network TEXT NOT NULL, address INTEGER NOT NULL,
                    holder TEXT NOT NULL UNIQUE, root TEXT NOT NULL, netns TEXT NOT NULL,
                    created INTEGER NOT NULL, PRIMARY KEY (network, address));
                 CREATE TABLE netdefs (name TEXT PRIMARY KEY, id TEXT NOT NULL UNIQUE,
                    created TEXT NOT NULL, internal INTEGER NOT NULL, labels TEXT NOT NULL,
                    options TEXT NOT NULL);
                 INSERT INTO leases VALUES ('bridge', 167837698, 'old', '/r', '/n', 1);
                 INSERT INTO netdefs VALUES ('n', 'abc', 'now', 0, '{}', '{}');",
            )
            .unwrap();
        }
        let mut s = State::open(tmp.path()).unwrap();
        assert_eq!(
            s.lease_of("old").unwrap().unwrap().address.to_string(),
            "10.1.0.2"
        );
        assert_eq!(
            s.dns_entries("bridge").unwrap(),
            [("10.1.0.2".parse().unwrap(), vec![])]
        );
        assert_eq!(
            s.def_by_id("abc").unwrap().unwrap().dns,
            Vec::<String>::new()
        );
        // One holder may now lease on two networks, never twice on one.
        let mut other = net();
        other.name = "other".into();
        s.put_network(&other).unwrap();
        let names = ["web".to_string()];
        let who = Holder {
            id: "old",
            root: tmp.path(),
            netns: tmp.path(),
            names: &names,
            ifname: "eth1",
        };
        let Ok(Ok((a, _))) = s.allocate(&other, &who, &[]) else {
            panic!()
        };
        assert_eq!(
            s.dns_entries("other").unwrap(),
            [(a, vec!["web".to_string()])]
        );
        assert!(s.allocate(&other, &who, &[]).is_err());
        drop(s);
        // Opening again changes nothing.
        let s = State::open(tmp.path()).unwrap();
        assert_eq!(s.leases().unwrap().len(), 2);
    }
}
