//! The engine's side of networking: which containers get the default bridge, the ports
//! they ask for (`-p`, `-P` with the image's `ExposedPorts` and `--expose`), and the
//! answer to the network crate's question "is this lease's holder gone?".
//!
//! A container's network lives exactly as long as its process: it is set up in `spawn`
//! (before config.json is written, which names the namespace) and released by `finish`
//! (the monitor's exit command, or `reconcile` after a dead monitor), by a failed start,
//! and by `rm`.

use crate::container::{Engine, EngineError, Result};
use crate::flags::{NetworkMode, RunOptions};
use crate::store::{Container, State};
use image::meta::rusqlite::{self, OpenFlags, OptionalExtension};
use network::{PortBinding, PortSpec};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Whether container `id` of the store at `root` no longer holds a network: its store or
/// row is gone, or it is not starting, running or paused. When the store cannot be read,
/// the holder is presumed alive: a lease is never taken from a container that may run.
pub(crate) fn is_stale(root: &Path, id: &str) -> bool {
    let db = root.join("berth.db");
    if root.as_os_str().is_empty() || !db.exists() {
        return !root.as_os_str().is_empty();
    }
    let Ok(conn) = rusqlite::Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return false;
    };
    let _ = conn.busy_timeout(std::time::Duration::from_secs(10));
    match conn
        .query_row("SELECT state FROM containers WHERE id = ?1", [id], |r| {
            r.get::<_, String>(0)
        })
        .optional()
    {
        Ok(None) => true,
        Ok(Some(state)) => !matches!(state.as_str(), "starting" | "running" | "paused"),
        Err(_) => false,
    }
}

/// What a container that joins another's network uses of it.
pub(crate) struct SharedNetwork {
    pub netns: PathBuf,
    pub etc: crate::spec::EtcFiles,
    pub hostname: String,
}

/// The container named by `--network container:NAME`.
pub(crate) fn shared_with(run: &RunOptions) -> Option<&str> {
    match &run.network {
        NetworkMode::Other(n) => n.strip_prefix("container:"),
        _ => None,
    }
}

/// Docker's refusal of `--network-alias` (and `connect --alias`) off user networks.
const ALIAS_ON_DEFAULT: &str =
    "network-scoped alias is supported only for containers in user defined networks";

/// One of a container's networks, as inspect shows it.
#[derive(Debug, Clone)]
pub struct NetworkEntry {
    pub name: String,
    pub aliases: Vec<String>,
    pub dns_names: Vec<String>,
    /// Address, prefix length and gateway while the container runs.
    pub address: Option<(Ipv4Addr, u8, Ipv4Addr)>,
}

/// The bridge network applies: not `none`, `host` or another container's.
pub(crate) fn on_bridge(run: &RunOptions) -> bool {
    network_name(run).is_some()
}

/// The network whose bridge the container joins: `bridge` (the default) or a user
/// network's name; `None` for `none`, `host` and `container:NAME`.
pub fn network_name(run: &RunOptions) -> Option<&str> {
    match &run.network {
        NetworkMode::Default => Some(network::DEFAULT_NETWORK),
        NetworkMode::Other(n) if !n.starts_with("container:") => Some(n),
        _ => None,
    }
}

/// A user network (not the default bridge), if the container names one.
pub(crate) fn user_network(run: &RunOptions) -> Option<&str> {
    network_name(run).filter(|n| *n != network::DEFAULT_NETWORK)
}

/// The names a user network's DNS server answers with the container's address, as
/// Docker's `DNSNames`: its name, its aliases on that network, its short id, and its
/// hostname, without repeats.
pub(crate) fn dns_names(c: &Container, aliases: &[String]) -> Vec<String> {
    let mut names = vec![c.name.clone()];
    names.extend(aliases.iter().cloned());
    names.push(c.id[..12].to_string());
    if let Some(h) = &c.options.run.hostname {
        names.push(h.clone());
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| !n.is_empty() && seen.insert(n.clone()));
    names
}

const HOST_NETWORK: &str =
    "container cannot be disconnected from host network or connected to host network";
const NONE_NETWORK: &str = "container cannot be connected to multiple networks with one of the networks in private (none) mode";
const SHARED_NETWORK: &str = "container sharing network namespace with another container or host cannot be connected to any other network";

/// Whether container `id` of the store at `root` is gone for good (row or store).
pub fn is_gone(root: &Path, id: &str) -> bool {
    let db = root.join("berth.db");
    if root.as_os_str().is_empty() || !db.exists() {
        return true;
    }
    let Ok(conn) = rusqlite::Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return false;
    };
    let _ = conn.busy_timeout(std::time::Duration::from_secs(10));
    matches!(
        conn.query_row("SELECT 1 FROM containers WHERE id = ?1", [id], |r| {
            r.get::<_, i64>(0)
        })
        .optional(),
        Ok(None)
    )
}

/// The ports to publish: `-p` as given, then with `-P` every exposed port (the image's
/// and `--expose`) that `-p` does not already publish, on a random host port.
pub(crate) fn wanted_ports(run: &RunOptions, image_config: &serde_json::Value) -> Vec<PortSpec> {
    let mut specs = run.publish.clone();
    if run.publish_all {
        let mut exposed: Vec<(u16, network::Proto)> = image_config["ExposedPorts"]
            .as_object()
            .map(|m| {
                m.keys()
                    .filter_map(|k| network::parse_expose(k).ok())
                    .flatten()
                    .collect()
            })
            .unwrap_or_default();
        exposed.extend(run.expose.iter().copied());
        exposed.sort();
        exposed.dedup();
        for (port, proto) in exposed {
            if !specs
                .iter()
                .any(|s| s.container_port == port && s.proto == proto)
            {
                specs.push(PortSpec {
                    host_ip: Ipv4Addr::UNSPECIFIED,
                    host_ports: None,
                    container_port: port,
                    proto,
                });
            }
        }
    }
    specs
}

impl Engine {
    /// `<runroot>/netns/ID`: where the container's network namespace is pinned.
    pub fn netns_path(&self, id: &str) -> PathBuf {
        self.runroot.join("netns").join(id)
    }

    /// Sets up container `c`'s network for a start; `None` for `none` and `host`.
    pub(crate) fn network_attach(
        &self,
        c: &Container,
        image_config: &serde_json::Value,
    ) -> Result<Option<network::Attachment>> {
        if !on_bridge(&c.options.run) {
            return Ok(None);
        }
        let ports = wanted_ports(&c.options.run, image_config);
        let netns = self.netns_path(&c.id);
        let aliases = if user_network(&c.options.run).is_some() {
            c.options.run.network_aliases.as_slice()
        } else {
            &[]
        };
        let names = dns_names(c, aliases);
        let req = network::Request {
            id: &c.id,
            network: network_name(&c.options.run).unwrap_or(network::DEFAULT_NETWORK),
            root: &self.root,
            netns: &netns,
            ports: &ports,
            names: &names,
            dns_server: &self.dns_server,
        };
        network::attach(&req, &is_stale)
            .map(Some)
            .map_err(EngineError::from)
    }

    /// Releases container `id`'s network, if it has one. Failures keep the records, so
    /// the next detach or a reclaim finishes the job; the container's own state moves on.
    /// A container that was never on the bridge has nothing to release (and opening the
    /// host-wide network database would cost its exit path for nothing). When running
    /// containers share its namespace (`--network container:`), they keep the namespace
    /// alive, so its veths are deleted explicitly: they lose the network, as in Docker.
    pub(crate) fn network_detach(&self, c: &Container) {
        if on_bridge(&c.options.run) {
            let _ = if self.network_dependents(c) {
                network::detach_thorough(&c.id)
            } else {
                network::detach(&c.id)
            };
        }
    }

    /// Whether a live container of this store joins `c`'s network namespace.
    fn network_dependents(&self, c: &Container) -> bool {
        self.store.live_network_joiners().is_ok_and(|all| {
            all.iter().any(|x| {
                x.state.is_live()
                    && shared_with(&x.options.run)
                        .is_some_and(|k| k == c.name || (!k.is_empty() && c.id.starts_with(k)))
            })
        })
    }

    /// `--network container:NAME` at a start: the other container must be running; its
    /// pinned namespace (or its process's, when it has no bridge network), its
    /// /etc/hosts, /etc/hostname and /etc/resolv.conf, and its host name are used, as
    /// Docker does. No veth, no lease: the network is the other's.
    pub(crate) fn shared_network(&self, c: &Container) -> Result<Option<SharedNetwork>> {
        let Some(key) = shared_with(&c.options.run) else {
            return Ok(None);
        };
        let other = self.find(key)?;
        if other.id == c.id {
            return Err(EngineError::Other("cannot join own network".into()));
        }
        if !matches!(other.state, State::Running | State::Paused) {
            return Err(EngineError::Other(format!(
                "cannot join network of a non running container: {key}"
            )));
        }
        let netns = if on_bridge(&other.options.run) {
            self.netns_path(&other.id)
        } else {
            PathBuf::from(format!("/proc/{}/ns/net", other.pid))
        };
        if other.pid <= 0 || !netns.exists() {
            return Err(EngineError::Other(format!(
                "cannot join network of a non running container: {key}"
            )));
        }
        let dir = self.container_dir(&other.id);
        let hostname = std::fs::read_to_string(dir.join("hostname"))
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| other.id[..12].to_string());
        Ok(Some(SharedNetwork {
            netns,
            etc: crate::spec::EtcFiles {
                hostname: Some(dir.join("hostname")),
                hosts: Some(dir.join("hosts")),
                resolv_conf: Some(dir.join("resolv.conf")),
            },
            hostname,
        }))
    }

    /// At a start, after [`Engine::network_attach`]: an interface on each network the
    /// container was connected to (`network connect`). On error the caller drops the
    /// attachment, which releases these too.
    pub(crate) fn network_join_connected(&self, c: &Container) -> Result<Vec<network::Joined>> {
        let dir = Path::new(network::STATE_DIR);
        let mut out = vec![];
        for conn in network::user::connections(dir, &c.id)? {
            let names = dns_names(c, &conn.aliases);
            let netns = self.netns_path(&c.id);
            out.push(network::join(
                &network::Join {
                    id: &c.id,
                    network: &conn.network,
                    root: &self.root,
                    netns: &netns,
                    names: &names,
                    dns_server: &self.dns_server,
                },
                &is_stale,
            )?);
        }
        Ok(out)
    }

    /// The name of the network the container was created on, resolved (`bridge` for
    /// the default).
    fn primary_network(&self, c: &Container) -> Option<String> {
        let n = network_name(&c.options.run)?;
        network::user::name_of(Path::new(network::STATE_DIR), n)
            .ok()
            .flatten()
            .or_else(|| Some(n.to_string()))
    }

    /// `network connect [--alias A] NET CONTAINER`: recorded, and for a running
    /// container an interface at once (eth1, eth2…, its lease, /etc/hosts); a stopped one
    /// gets it at its next start. Docker's errors for the refusals.
    pub fn connect(&self, c: &Container, key: &str, aliases: &[String]) -> Result<()> {
        let dir = Path::new(network::STATE_DIR);
        match &c.options.run.network {
            NetworkMode::Host => return Err(EngineError::Other(HOST_NETWORK.into())),
            NetworkMode::None => return Err(EngineError::Other(NONE_NETWORK.into())),
            NetworkMode::Other(n) if n.starts_with("container:") => {
                return Err(EngineError::Other(SHARED_NETWORK.into()))
            }
            _ => {}
        }
        let name = network::user::name_of(dir, key)?
            .ok_or_else(|| network::Error::NotFound(key.to_string()))?;
        if name == network::DEFAULT_NETWORK && !aliases.is_empty() {
            return Err(EngineError::Other(ALIAS_ON_DEFAULT.into()));
        }
        let exists = || {
            EngineError::Other(format!(
                "endpoint with name {} already exists in network {name}",
                c.name
            ))
        };
        if self.primary_network(c).as_deref() == Some(name.as_str()) {
            return Err(exists());
        }
        if network::user::connect(dir, &name, &c.id, &self.root, &c.name, aliases)?.is_none() {
            return Err(exists());
        }
        if !c.state.is_live() {
            return Ok(());
        }
        let names = dns_names(c, aliases);
        let netns = self.netns_path(&c.id);
        let joined = network::join(
            &network::Join {
                id: &c.id,
                network: &name,
                root: &self.root,
                netns: &netns,
                names: &names,
                dns_server: &self.dns_server,
            },
            &is_stale,
        );
        if let Err(e) = joined {
            let _ = network::user::disconnect(dir, &name, &c.id);
            return Err(e.into());
        }
        self.rewrite_hosts(c)
    }

    /// `network disconnect [-f] NET CONTAINER`: a network the container was connected
    /// to; for a running container its interface goes at once.
    pub fn disconnect(&self, c: &Container, key: &str, force: bool) -> Result<()> {
        let dir = Path::new(network::STATE_DIR);
        if c.options.run.network == NetworkMode::Host {
            return Err(EngineError::Other(HOST_NETWORK.into()));
        }
        let name = match network::user::name_of(dir, key)? {
            Some(n) => n,
            // -f: a network that is gone may still be named, to drop what is left of it.
            None if force => key.to_string(),
            None => return Err(network::Error::NotFound(key.to_string()).into()),
        };
        if self.primary_network(c).as_deref() == Some(name.as_str()) {
            return Err(EngineError::Other(format!(
                "berth cannot disconnect a container from the network it was created on ({name}) yet"
            )));
        }
        if !network::user::disconnect(dir, &name, &c.id)? {
            return Err(EngineError::Other(format!(
                "container {} is not connected to network {name}",
                c.id
            )));
        }
        if c.state.is_live() {
            network::leave(&c.id, &name)?;
            self.rewrite_hosts(c)?;
        }
        Ok(())
    }

    /// A running container's /etc/hosts after its interfaces changed, written in place
    /// (it is bind-mounted: a new file would not be seen inside).
    fn rewrite_hosts(&self, c: &Container) -> Result<()> {
        let addresses: Vec<Ipv4Addr> = network::addresses(&c.id)
            .into_iter()
            .map(|(_, _, a, _, _)| a)
            .collect();
        crate::etc::rewrite_hosts(&self.container_dir(&c.id), c, &addresses)
    }

    /// The networks container `c` was connected to with `network connect`, in order.
    pub fn connected_networks(&self, c: &Container) -> Vec<String> {
        if !on_bridge(&c.options.run) {
            return vec![];
        }
        network::user::connections(Path::new(network::STATE_DIR), &c.id)
            .map(|v| v.into_iter().map(|c| c.network).collect())
            .unwrap_or_default()
    }

    /// Every network of container `c`: the one it was created on (a bridge network),
    /// then those it was connected to; with addresses while it runs.
    pub fn networks(&self, c: &Container) -> Vec<NetworkEntry> {
        let Some(primary) = self.primary_network(c) else {
            return vec![];
        };
        let live = c.state.is_live();
        let addresses = if live {
            network::addresses(&c.id)
        } else {
            vec![]
        };
        let address_on = |net: &str| {
            addresses
                .iter()
                .find(|(n, ..)| n == net)
                .map(|(_, _, a, p, g)| (*a, *p, *g))
        };
        let user = user_network(&c.options.run).is_some();
        let aliases = if user {
            c.options.run.network_aliases.clone()
        } else {
            vec![]
        };
        let mut out = vec![NetworkEntry {
            dns_names: if user { dns_names(c, &aliases) } else { vec![] },
            address: address_on(&primary),
            name: primary,
            aliases,
        }];
        let dir = Path::new(network::STATE_DIR);
        for conn in network::user::connections(dir, &c.id).unwrap_or_default() {
            out.push(NetworkEntry {
                dns_names: if conn.network == network::DEFAULT_NETWORK {
                    vec![]
                } else {
                    dns_names(c, &conn.aliases)
                },
                address: address_on(&conn.network),
                name: conn.network,
                aliases: conn.aliases,
            });
        }
        out
    }

    /// A created container on a user network is one of its members until `rm`.
    pub(crate) fn network_join(&self, c: &Container) -> Result<()> {
        if let Some(net) = user_network(&c.options.run) {
            network::user::join(
                Path::new(network::STATE_DIR),
                net,
                &c.id,
                &self.root,
                &c.name,
            )?;
        }
        Ok(())
    }

    /// Container `c` (with its old name) is now called `new`: its networks' DNS
    /// servers answer the new name (Docker does the same on rename).
    pub fn network_rename(&self, c: &Container, new: &str) -> Result<()> {
        if on_bridge(&c.options.run) {
            network::rename(&c.id, &c.name, new)?;
        }
        Ok(())
    }

    /// Container `c` is removed: its user network may go.
    pub(crate) fn network_leave(&self, c: &Container) {
        if on_bridge(&c.options.run) {
            let _ = network::user::leave(Path::new(network::STATE_DIR), &c.id);
        }
    }

    /// `create`'s early checks: the user network exists, aliases only on one, and fixed
    /// host ports are free (see [`network::check_ports`]).
    pub(crate) fn network_check(&self, run: &RunOptions) -> Result<()> {
        if !run.network_aliases.is_empty() && user_network(run).is_none() {
            return Err(EngineError::Other(ALIAS_ON_DEFAULT.into()));
        }
        if let Some(other) = shared_with(run) {
            self.find(other)?;
        }
        if let Some(net) = user_network(run) {
            if network::user::get(Path::new(network::STATE_DIR), net)?.is_none() {
                return Err(network::Error::NotFound(net.to_string()).into());
            }
        }
        if !on_bridge(run) || run.publish.is_empty() {
            return Ok(());
        }
        network::check_ports(&run.publish, &is_stale).map_err(EngineError::from)
    }

    /// What `docker port` lists: the container's published ports while it runs.
    pub fn published_ports(&self, c: &Container) -> Vec<PortBinding> {
        if !c.state.is_live() || !on_bridge(&c.options.run) {
            return vec![];
        }
        network::ports(&c.id)
    }

    /// `docker port`'s pairs: (`80/tcp`, `0.0.0.0:8080`), sorted.
    pub fn port_pairs(&self, c: &Container) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .published_ports(c)
            .iter()
            .map(|b| (b.private(), b.public()))
            .collect();
        v.sort();
        v
    }

    /// The container's address, prefix length and gateway while it runs on the bridge.
    pub fn network_address(&self, c: &Container) -> Option<(Ipv4Addr, u8, Ipv4Addr)> {
        if !c.state.is_live() || !on_bridge(&c.options.run) {
            return None;
        }
        network::lease(&c.id)
    }
}
