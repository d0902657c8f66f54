//! Container networking for berth: Docker's default `bridge` network.
//!
//! - [`attach`] gives a container its own network namespace (pinned by a bind mount at a
//!   path the OCI runtime joins), a veth pair (host end `vb<id12>` on bridge `berth0`,
//!   container end `eth0` with an address from the bridge's subnet, `lo` up, default
//!   route via the gateway), and its published ports (nftables, [`nft`]).
//! - [`detach`] undoes all of it, whatever is left: it is driven by the records in the
//!   state database and by names derived from the container id, so it works after a
//!   crash at any point of [`attach`], and twice in a row.
//! - The bridge itself is made on first use ([`Bridge::ensure`]) with the first /16 from
//!   10.89.0.0 upward that no route or address of the host overlaps, the MTU of the
//!   interface of the default route, IPv4 forwarding and masquerading.
//!
//! State is the host's, not a store's (see [`state`]): `STATE_DIR/network.db` and a
//! lock file. It lives under /run, like the kernel objects it describes, which a reboot
//! also clears.
//!
//! No async runtime: netlink requests are sent on blocking sockets ([`rtnl`]).

pub mod dns;
pub mod netns;
pub mod nft;
pub mod ports;
pub mod rtnl;
pub mod state;
pub mod user;

pub use ports::{parse_expose, parse_publish, PortBinding, PortSpec, Proto};

use rtnl::Rtnl;
use state::{Blocked, Holder, Lease, NetworkRow, State};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use user::find;

/// The host's network state: the IPAM database and the bridge lock.
pub const STATE_DIR: &str = "/run/berth/network";
/// The default bridge (Docker's `docker0`).
pub const BRIDGE: &str = "berth0";
/// The default network's name (Docker's `bridge`).
pub const DEFAULT_NETWORK: &str = "bridge";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("network: {what}: {source}")]
    Netlink {
        what: String,
        source: std::io::Error,
    },
    #[error("network namespace: {what} {}: {source}", path.display())]
    Netns {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("firewall: {what}: {reason}")]
    Firewall { what: String, reason: String },
    #[error("network database {}: {action}: {source}", path.display())]
    Db {
        path: PathBuf,
        action: String,
        source: rusqlite::Error,
    },
    /// Docker's words for a host port another container publishes.
    #[error("Bind for {0} failed: port is already allocated")]
    PortAllocated(String),
    /// A host port some other program listens on.
    #[error("Bind for {0} failed: address already in use")]
    PortInUse(String),
    #[error("no free address left in network {network} ({subnet})")]
    Exhausted { network: String, subnet: String },
    #[error("no free subnet for bridge {0}: every 10.89-10.255 and 172.18-172.31 /16 overlaps a route or address of the host")]
    NoSubnet(String),
    #[error("network {0} not found")]
    NotFound(String),
    /// Docker's words for a `--subnet` that overlaps another network or the host's.
    #[error("Pool overlaps with other one on this address space")]
    PoolOverlap,
    #[error("network with name {0} already exists")]
    Exists(String),
    #[error("error while removing network: network {name} id {id} has active endpoints")]
    InUse { name: String, id: String },
    #[error("{0}")]
    Invalid(String),
    #[error("network: {0}")]
    Other(String),
}

/// Whether the container `id` of the store at `root` no longer holds its network: its
/// row is gone or it is not running. The engine answers; this crate knows no stores.
pub type IsStale<'a> = &'a dyn Fn(&Path, &str) -> bool;

/// The default bridge as it is on the host.
#[derive(Debug, Clone)]
pub struct Bridge {
    pub name: String,
    pub index: u32,
    pub subnet: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mtu: u32,
}

/// Holds `DIR/bridge.lock`: serialises bridge creation, subnet choice and network
/// removal across processes.
fn lock(dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, Error> {
    lock_file(dir, "bridge.lock", nix::fcntl::FlockArg::LockExclusive)
}

/// `DIR/firewall.lock`: a publish reads the list of networks and writes the base rules
/// for it under a shared lock; `network create` and `rm` change that list and rewrite
/// the rules under an exclusive one, so a publish racing them never writes a stale list
/// (which would drop a new network's rules or bring back a removed one's).
pub(crate) fn firewall_lock(
    dir: &Path,
    exclusive: bool,
) -> Result<nix::fcntl::Flock<std::fs::File>, Error> {
    let how = if exclusive {
        nix::fcntl::FlockArg::LockExclusive
    } else {
        nix::fcntl::FlockArg::LockShared
    };
    lock_file(dir, "firewall.lock", how)
}

fn lock_file(
    dir: &Path,
    file: &str,
    how: nix::fcntl::FlockArg,
) -> Result<nix::fcntl::Flock<std::fs::File>, Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Netns {
        what: "creating",
        path: dir.to_path_buf(),
        source,
    })?;
    let lock_path = dir.join(file);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| Error::Netns {
            what: "opening",
            path: lock_path.clone(),
            source,
        })?;
    nix::fcntl::Flock::lock(lock, how).map_err(|(_, e)| Error::Netns {
        what: "locking",
        path: lock_path,
        source: e.into(),
    })
}

impl Bridge {
    /// The default bridge, made if missing; also repairs berth's firewall table when it
    /// is gone. Serialised across processes by a lock file, so two first runs agree on
    /// a subnet.
    pub fn ensure(dir: &Path) -> Result<Bridge, Error> {
        let _lock = lock(dir)?;
        ensure_locked(dir, BRIDGE, None, false)
    }

    fn row(&self, network: &str) -> NetworkRow {
        NetworkRow {
            name: network.to_string(),
            bridge: self.name.clone(),
            subnet: self.subnet,
            prefix: self.prefix,
            gateway: self.gateway,
        }
    }
}

/// Bridge `name`, made if missing, with `want` (gateway, prefix) as its address or, when
/// `None`, a free /16. The lock is the caller's.
fn ensure_locked(
    dir: &Path,
    name: &str,
    want: Option<(Ipv4Addr, u8)>,
    internal: bool,
) -> Result<Bridge, Error> {
    let mut rtnl = Rtnl::open()?;
    let mut fresh = false;
    let link = match rtnl.link(name)? {
        Some(l) => l,
        None => {
            let mtu = default_route_mtu(&mut rtnl)?;
            rtnl.add_bridge(name, mtu)?;
            fresh = true;
            rtnl.link(name)?
                .ok_or_else(|| Error::Other(format!("bridge {name} vanished")))?
        }
    };
    let index = link.header.index;
    let mtu = link
        .attributes
        .iter()
        .find_map(|a| match a {
            netlink_packet_route::link::LinkAttribute::Mtu(m) => Some(*m),
            _ => None,
        })
        .unwrap_or(1500);
    let own = rtnl.addresses()?.into_iter().find(|(i, _, _)| *i == index);
    let (gateway, prefix) = match own {
        Some((_, addr, prefix)) => (addr, prefix),
        None => {
            let (gateway, prefix) = match want {
                Some(w) => w,
                None => {
                    let (subnet, prefix) = free_subnet(&mut rtnl, &[])?;
                    (Ipv4Addr::from(u32::from(subnet) + 1), prefix)
                }
            };
            rtnl.add_address(index, gateway, prefix)?;
            fresh = true;
            (gateway, prefix)
        }
    };
    if !link
        .header
        .flags
        .contains(netlink_packet_route::link::LinkFlags::Up)
    {
        rtnl.set_up(index)?;
    }
    let subnet = Ipv4Addr::from(u32::from(gateway) & rtnl::prefix_mask(prefix));
    let bridge = Bridge {
        name: name.to_string(),
        index,
        subnet,
        prefix,
        gateway,
        mtu,
    };
    // Traffic from 127.0.0.1 DNATed to a container must be routable to the bridge.
    sysctl_on(&format!("net/ipv4/conf/{name}/route_localnet"))?;
    if fresh || !nft::table_exists() {
        sysctl_on("net/ipv4/ip_forward")?;
        let mut nets = firewall_nets(dir)?;
        if !nets.iter().any(|n| n.bridge == name) {
            nets.push(nft::Net {
                bridge: name.to_string(),
                subnet,
                prefix,
                internal,
            });
        }
        nft::ensure(&nets)?;
        nft::iptables_compat(name)?;
    }
    Ok(bridge)
}

/// Every network recorded in the state database, as the firewall sees them.
fn firewall_nets(dir: &Path) -> Result<Vec<nft::Net>, Error> {
    let state = State::open(dir)?;
    nets_of(&state)
}

fn nets_of(state: &State) -> Result<Vec<nft::Net>, Error> {
    let defs = state.defs()?;
    Ok(state
        .networks()?
        .into_iter()
        .map(|n| nft::Net {
            internal: defs.iter().any(|d| d.name == n.name && d.internal),
            bridge: n.bridge,
            subnet: n.subnet,
            prefix: n.prefix,
        })
        .collect())
}

/// Writes 1 to `/proc/sys/KEY` unless it is 1 already.
fn sysctl_on(key: &str) -> Result<(), Error> {
    let path = Path::new("/proc/sys").join(key);
    if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    std::fs::write(&path, "1").map_err(|source| Error::Netns {
        what: "setting",
        path,
        source,
    })
}

/// The MTU of the interface the default route leaves by (1500 without one).
fn default_route_mtu(rtnl: &mut Rtnl) -> Result<u32, Error> {
    let oif = rtnl
        .routes()?
        .into_iter()
        .find(|r| r.prefix == 0 && r.table == 254)
        .and_then(|r| r.oif);
    Ok(match oif {
        Some(i) => rtnl.link_mtu(i)?.unwrap_or(1500),
        None => 1500,
    })
}

/// The first /16 (10.89 … 10.255, then 172.18 … 172.31) that overlaps no route (other
/// than default routes) and no address of the host. Docker's 172.17/16 and Podman's
/// 10.88/16 are never candidates, whether their bridges exist right now or not.
fn free_subnet(rtnl: &mut Rtnl, also: &[(u32, u8)]) -> Result<(Ipv4Addr, u8), Error> {
    let mut used: Vec<(u32, u8)> = host_used(rtnl)?;
    used.extend_from_slice(also);
    let candidates = (89..=255u8)
        .map(|b| Ipv4Addr::new(10, b, 0, 0))
        .chain((18..=31u8).map(|b| Ipv4Addr::new(172, b, 0, 0)));
    for c in candidates {
        if !used
            .iter()
            .any(|(a, p)| overlap((u32::from(c), 16), (*a, *p)))
        {
            return Ok((c, 16));
        }
    }
    Err(Error::NoSubnet(BRIDGE.to_string()))
}

/// The host's routes (other than default routes) and addresses, as (address, prefix).
fn host_used(rtnl: &mut Rtnl) -> Result<Vec<(u32, u8)>, Error> {
    let mut used: Vec<(u32, u8)> = rtnl
        .routes()?
        .into_iter()
        .filter(|r| r.prefix > 0)
        .map(|r| (u32::from(r.destination), r.prefix))
        .collect();
    used.extend(
        rtnl.addresses()?
            .into_iter()
            .map(|(_, a, p)| (u32::from(a), p.max(1))),
    );
    Ok(used)
}

fn overlap(a: (u32, u8), b: (u32, u8)) -> bool {
    let p = a.1.min(b.1);
    let m = rtnl::prefix_mask(p);
    a.0 & m == b.0 & m
}

/// The MAC address of a container's `eth0`: Docker's rule, `02:42` and the four bytes
/// of its IPv4 address (locally administered, unicast), so it follows from the lease.
pub fn mac_of(address: Ipv4Addr) -> [u8; 6] {
    let o = address.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// `mac_of` as text: `02:42:0a:59:00:02`.
pub fn mac_text(address: Ipv4Addr) -> String {
    mac_of(address)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The host end of container `id`'s veth: `vb` and 12 hex digits, within IFNAMSIZ.
pub fn veth_name(id: &str) -> String {
    format!("vb{}", &id[..id.len().min(12)])
}

/// What [`attach`] needs: the container, its store (for stale checks by others) and
/// where to pin its namespace, plus the ports to publish.
pub struct Request<'a> {
    pub id: &'a str,
    /// `bridge` (the default) or a user network's name.
    pub network: &'a str,
    pub root: &'a Path,
    pub netns: &'a Path,
    pub ports: &'a [PortSpec],
    /// What the network's DNS server answers with the container's address (user
    /// networks): its name, short id, hostname and aliases.
    pub names: &'a [String],
    /// The `berth-dns` binary, started for a user network's first container.
    pub dns_server: &'a Path,
}

/// A container's network, set up. Dropped without [`Attachment::keep`], it is torn
/// down, so an error between [`attach`] and the container's start leaks nothing.
pub struct Attachment {
    pub id: String,
    pub netns: PathBuf,
    pub bridge: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub ports: Vec<PortBinding>,
    dir: PathBuf,
    armed: bool,
}

impl Attachment {
    /// The container owns its network now; [`detach`] releases it.
    pub fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if self.armed {
            let _ = detach_in(&self.dir, &self.id);
        }
    }
}

/// Sets up container `req.id` on the default bridge (see the crate docs). On error,
/// nothing of it is left: no lease, port, namespace, veth or rule.
pub fn attach(req: &Request, is_stale: IsStale) -> Result<Attachment, Error> {
    attach_in(Path::new(STATE_DIR), req, is_stale)
}

/// The bridge of network `key` (`bridge` or a user network's name, id or id prefix),
/// made if missing: the bridge, whether the network is internal, its id (user
/// networks) and its name.
fn resolve(dir: &Path, key: &str) -> Result<(Bridge, bool, Option<String>, String), Error> {
    if key == DEFAULT_NETWORK {
        let bridge = Bridge::ensure(dir)?;
        let mut state = State::open(dir)?;
        let row = bridge.row(DEFAULT_NETWORK);
        if state.network(DEFAULT_NETWORK)?.as_ref() != Some(&row) {
            state.put_network(&row)?;
        }
        return Ok((bridge, false, None, DEFAULT_NETWORK.to_string()));
    }
    let state = State::open(dir)?;
    let (row, def) = find(&state, key)?.ok_or_else(|| Error::NotFound(key.to_string()))?;
    drop(state);
    // Made by `network create`; made again if something deleted it.
    let _lock = lock(dir)?;
    let bridge = ensure_locked(
        dir,
        &row.bridge,
        Some((row.gateway, row.prefix)),
        def.internal,
    )?;
    Ok((bridge, def.internal, Some(def.id), row.name))
}

pub fn attach_in(dir: &Path, req: &Request, is_stale: IsStale) -> Result<Attachment, Error> {
    let (bridge, internal, user_id, network) = resolve(dir, req.network)?;
    let mut state = State::open(dir)?;
    // A previous run of this container that was never torn down (a crash).
    if state.lease_of(req.id)?.is_some() {
        detach_with(&mut state, req.id, Detach::Thorough)?;
    }
    let holder = Holder {
        id: req.id,
        root: req.root,
        netns: req.netns,
        names: req.names,
        ifname: "eth0",
    };
    let row = bridge.row(&network);
    let mut reclaimed = false;
    let (address, ports) = loop {
        match state.allocate(&row, &holder, req.ports)? {
            Ok(got) => break got,
            Err(blocked) => {
                // Whoever is in the way may be a container that is gone without its
                // teardown (a crash): reclaim once, then give up.
                if !reclaimed && reclaim(&mut state, &blocked, is_stale)? {
                    reclaimed = true;
                    continue;
                }
                return Err(match blocked {
                    Blocked::Port { binding, holder } if holder.is_empty() => {
                        Error::PortInUse(binding)
                    }
                    Blocked::Port { binding, .. } => Error::PortAllocated(binding),
                    Blocked::Full => Error::Exhausted {
                        network: network.clone(),
                        subnet: format!("{}/{}", bridge.subnet, bridge.prefix),
                    },
                });
            }
        }
    };
    let att = Attachment {
        id: req.id.to_string(),
        netns: req.netns.to_path_buf(),
        bridge: bridge.name.clone(),
        address,
        prefix: bridge.prefix,
        gateway: bridge.gateway,
        ports,
        dir: dir.to_path_buf(),
        armed: true,
    };

    sweep(&mut state, &bridge);
    let mut inside = netns::create(req.netns)?;
    let ns = std::fs::File::open(req.netns).map_err(|source| Error::Netns {
        what: "opening",
        path: req.netns.to_path_buf(),
        source,
    })?;
    let mut host = Rtnl::open()?;
    add_own_veth(
        &mut host,
        &veth_name(req.id),
        bridge.index,
        "eth0",
        mac_of(address),
        ns.as_fd(),
        bridge.mtu,
    )?;
    drop(ns);
    // A new namespace has only `lo`, always index 1.
    inside.set_up(1)?;
    let eth0 = inside
        .link_index("eth0")?
        .ok_or_else(|| Error::Other("eth0 is missing in the container's namespace".into()))?;
    inside.set_up(eth0)?;
    inside.add_address(eth0, address, bridge.prefix)?;
    // An internal network has no way out: no default route (as Docker).
    if !internal {
        inside.add_default_route(eth0, bridge.gateway)?;
    }
    if !att.ports.is_empty() {
        let _fw = firewall_lock(dir, false)?;
        nft::publish(&nets_of(&state)?, req.id, address, &att.ports)?;
    }
    // Last: the lease it answers from is recorded (see dns.rs on the order).
    if let Some(id) = user_id {
        dns::ensure(dir, &id, &network, req.dns_server)?;
    }
    Ok(att)
}

/// Releases container `id`'s network once its processes are gone: rules, namespace
/// (and with it the veth), then the records. Keeps going past errors and returns the
/// first; the records stay until everything went, so a later detach (or a reclaim)
/// finishes the job.
pub fn detach(id: &str) -> Result<(), Error> {
    detach_in(Path::new(STATE_DIR), id)
}

pub fn detach_in(dir: &Path, id: &str) -> Result<(), Error> {
    if !dir.join("network.db").exists() {
        return Ok(());
    }
    let mut state = State::open(dir)?;
    detach_with(&mut state, id, Detach::Quick)
}

/// [`detach`] for a container whose namespace other processes may still hold (another
/// container joined it): its veths are deleted explicitly.
pub fn detach_thorough(id: &str) -> Result<(), Error> {
    let dir = Path::new(STATE_DIR);
    if !dir.join("network.db").exists() {
        return Ok(());
    }
    let mut state = State::open(dir)?;
    detach_with(&mut state, id, Detach::Thorough)
}

/// How sure [`detach_with`] may be that nothing else holds the container's namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detach {
    /// The container's processes are gone (its runtime state was deleted).
    Quick,
    /// A crash left it: processes may remain; cut the veth explicitly.
    Thorough,
}

fn detach_with(state: &mut State, id: &str, mode: Detach) -> Result<(), Error> {
    let leases = state.leases_of(id)?;
    let ports = state.ports_of(id)?;
    if leases.is_empty() && ports.is_empty() {
        return Ok(());
    }
    let mut first: Option<Error> = None;
    if !ports.is_empty() {
        if let Err(e) = nft::unpublish(id, &ports) {
            first.get_or_insert(e);
        }
    }
    // Unpinning the namespace of a container whose processes are gone destroys it, and
    // the kernel deletes its devices with it (in cleanup_net, asynchronously): the
    // container's ends of its veths, and so the host's. Deleting a veth ourselves costs
    // an RCU grace period under RTNL, 15-20 ms in this VM, on the critical path of
    // every `run --rm`. So a quick detach only unpins; a thorough one (a reclaim, where
    // a process may still hold the namespace) deletes the veths too. A veth is made only
    // after its namespace is pinned, so no pin means no namespace to wait for.
    let pinned = leases.first().is_some_and(|l| l.netns.exists());
    if let Some(l) = leases.first() {
        if let Err(e) = netns::remove(&l.netns) {
            first.get_or_insert(e);
        }
    }
    if mode == Detach::Thorough || !pinned {
        let mut names: Vec<String> = leases.iter().map(|l| host_veth(id, &l.ifname)).collect();
        if names.is_empty() {
            names.push(veth_name(id));
        }
        for name in names {
            if let Err(e) = Rtnl::open().and_then(|mut r| r.del_link(&name)) {
                first.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first {
        return Err(e);
    }
    state.release(id)?;
    // A network's DNS server goes with its last lease.
    for l in leases.iter().filter(|l| l.network != DEFAULT_NETWORK) {
        dns::stop_unused(state.dir(), state, &l.network)?;
    }
    Ok(())
}

/// Creates a container's veth pair. Its host end's name is derived from the container's
/// id, so one that exists already is this container's own from its previous run: a quick
/// detach leaves the kernel to delete it with the old namespace, asynchronously, and a
/// restart can come before that. It is deleted and the pair made again, once.
fn add_own_veth(
    rtnl: &mut Rtnl,
    host: &str,
    master: u32,
    peer: &str,
    peer_mac: [u8; 6],
    netns: BorrowedFd<'_>,
    mtu: u32,
) -> Result<(), Error> {
    match rtnl.add_veth(host, master, peer, peer_mac, netns, mtu) {
        Err(Error::Netlink { source, .. }) if source.raw_os_error() == Some(libc::EEXIST) => {
            rtnl.del_link(host)?;
            rtnl.add_veth(host, master, peer, peer_mac, netns, mtu)
        }
        other => other,
    }
}

/// The host end of container `id`'s veth for its interface `ifname`: `vb<id12>` for
/// eth0, `vc<id11><n>` for eth<n> (within IFNAMSIZ, derived, so teardown needs no
/// record of it). Another prefix for eth<n>: `vb<id11>1` is `vb<id12>` whenever the
/// id's twelfth digit is 1, which made one `network connect` in sixteen replace eth0.
pub fn host_veth(id: &str, ifname: &str) -> String {
    match ifname
        .strip_prefix("eth")
        .and_then(|n| n.parse::<u8>().ok())
    {
        Some(n) if n > 0 => format!("vc{}{n}", &id[..id.len().min(11)]),
        _ => veth_name(id),
    }
}

/// What [`join`] needs: a running container (its namespace pinned) and a network to
/// add an interface on.
pub struct Join<'a> {
    pub id: &'a str,
    /// A user network's name, id or id prefix, or `bridge`.
    pub network: &'a str,
    pub root: &'a Path,
    pub netns: &'a Path,
    pub names: &'a [String],
    pub dns_server: &'a Path,
}

/// An interface [`join`] added.
#[derive(Debug, Clone)]
pub struct Joined {
    pub network: String,
    pub ifname: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
}

/// Adds an interface on network `j.network` to the running container `j.id`: a lease,
/// a veth whose inside end is the next free `ethN`, its address (no default route: the
/// first network keeps it, as in Docker) and the network's DNS server. On error nothing
/// of it is left.
pub fn join(j: &Join, is_stale: IsStale) -> Result<Joined, Error> {
    join_in(Path::new(STATE_DIR), j, is_stale)
}

pub fn join_in(dir: &Path, j: &Join, is_stale: IsStale) -> Result<Joined, Error> {
    let (bridge, _internal, user_id, network) = resolve(dir, j.network)?;
    let mut state = State::open(dir)?;
    let taken = state.leases_of(j.id)?;
    if taken.iter().any(|l| l.network == network) {
        return Err(Error::Invalid(format!(
            "container {} already has an address on network {network}",
            j.id
        )));
    }
    let n = (1..10u8)
        .find(|n| !taken.iter().any(|l| l.ifname == format!("eth{n}")))
        .ok_or_else(|| Error::Invalid("berth gives a container at most 10 networks".into()))?;
    let ifname = format!("eth{n}");
    let holder = Holder {
        id: j.id,
        root: j.root,
        netns: j.netns,
        names: j.names,
        ifname: &ifname,
    };
    let row = bridge.row(&network);
    let mut reclaimed = false;
    let address = loop {
        match state.allocate(&row, &holder, &[])? {
            Ok((address, _)) => break address,
            Err(blocked) => {
                if !reclaimed && reclaim(&mut state, &blocked, is_stale)? {
                    reclaimed = true;
                    continue;
                }
                return Err(Error::Exhausted {
                    network: network.clone(),
                    subnet: format!("{}/{}", bridge.subnet, bridge.prefix),
                });
            }
        }
    };
    let joined = Joined {
        network: network.clone(),
        ifname: ifname.clone(),
        address,
        prefix: bridge.prefix,
        gateway: bridge.gateway,
    };
    let plugged = (|| {
        sweep(&mut state, &bridge);
        let mut inside = netns::enter(j.netns)?;
        let ns = std::fs::File::open(j.netns).map_err(|source| Error::Netns {
            what: "opening",
            path: j.netns.to_path_buf(),
            source,
        })?;
        add_own_veth(
            &mut Rtnl::open()?,
            &host_veth(j.id, &ifname),
            bridge.index,
            &ifname,
            mac_of(address),
            ns.as_fd(),
            bridge.mtu,
        )?;
        let index = inside.link_index(&ifname)?.ok_or_else(|| {
            Error::Other(format!("{ifname} is missing in the container's namespace"))
        })?;
        inside.set_up(index)?;
        inside.add_address(index, address, bridge.prefix)?;
        if let Some(id) = &user_id {
            dns::ensure(dir, id, &network, j.dns_server)?;
        }
        Ok(())
    })();
    match plugged {
        Ok(()) => Ok(joined),
        Err(e) => {
            let _ = leave_with(&mut state, j.id, &network);
            Err(e)
        }
    }
}

/// Removes container `id`'s interface on network `key` (its veth, then its lease, and
/// the network's DNS server if it was the last); nothing to remove is not an error.
pub fn leave(id: &str, key: &str) -> Result<(), Error> {
    let dir = Path::new(STATE_DIR);
    if !dir.join("network.db").exists() {
        return Ok(());
    }
    let mut state = State::open(dir)?;
    let network = if key == DEFAULT_NETWORK {
        key.to_string()
    } else {
        match find(&state, key)? {
            Some((r, _)) => r.name,
            None => key.to_string(),
        }
    };
    leave_with(&mut state, id, &network)
}

fn leave_with(state: &mut State, id: &str, network: &str) -> Result<(), Error> {
    let Some(l) = state
        .leases_of(id)?
        .into_iter()
        .find(|l| l.network == network)
    else {
        return Ok(());
    };
    // Deleting one end deletes the pair; the container's namespace stays.
    Rtnl::open()?.del_link(&host_veth(id, &l.ifname))?;
    state.release_one(id, network)?;
    if network != DEFAULT_NETWORK {
        dns::stop_unused(state.dir(), state, network)?;
    }
    Ok(())
}

/// Container `id`'s addresses while it runs, its first interface first: (network,
/// interface, address, prefix length, gateway).
pub fn addresses(id: &str) -> Vec<(String, String, Ipv4Addr, u8, Ipv4Addr)> {
    let dir = Path::new(STATE_DIR);
    if !dir.join("network.db").exists() {
        return vec![];
    }
    let Ok(s) = State::open(dir) else {
        return vec![];
    };
    s.leases_of(id)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|l| {
            let n = s.network(&l.network).ok()??;
            Some((l.network, l.ifname, l.address, n.prefix, n.gateway))
        })
        .collect()
}

/// Deletes berth veths on the bridge that no lease accounts for: a quick detach leaves
/// the veth to the kernel, which deletes it with the namespace unless something else
/// still held that namespace (an `nsenter` shell, a socket made inside it). Such a veth
/// is cut at the next attach. A veth is only made after its lease is recorded, so one
/// being set up right now always has a lease.
fn sweep(state: &mut State, bridge: &Bridge) {
    let Ok(mut rtnl) = Rtnl::open() else {
        return;
    };
    let Ok(ports) = rtnl.ports_of(bridge.index) else {
        return;
    };
    let orphans: Vec<String> = ports
        .into_iter()
        .filter(|n| {
            (n.starts_with("vb") && n.len() == 14) || (n.starts_with("vc") && n.len() >= 14)
        })
        .collect();
    if orphans.is_empty() {
        return;
    }
    let Ok(leases) = state.leases() else {
        return;
    };
    for name in orphans {
        if !leases
            .iter()
            .any(|l| host_veth(&l.holder, &l.ifname) == name)
        {
            let _ = rtnl.del_link(&name);
        }
    }
}

/// Tears down the holders that `blocked` names (or, for a full subnet, every holder)
/// that are stale. True if any was.
fn reclaim(state: &mut State, blocked: &Blocked, is_stale: IsStale) -> Result<bool, Error> {
    let candidates: Vec<Lease> = match blocked {
        Blocked::Port { holder, .. } if holder.is_empty() => return Ok(false),
        Blocked::Port { holder, .. } => match state.lease_of(holder)? {
            Some(l) => vec![l],
            // Ports and lease are written and deleted together: no lease, no ports.
            None => return Ok(false),
        },
        Blocked::Full => state.leases()?,
    };
    let mut any = false;
    for l in candidates {
        if is_stale(&l.root, &l.holder) {
            detach_with(state, &l.holder, Detach::Thorough)?;
            any = true;
        }
    }
    Ok(any)
}

/// The ports container `id` publishes now (none when it does not run).
pub fn ports(id: &str) -> Vec<PortBinding> {
    let dir = Path::new(STATE_DIR);
    if !dir.join("network.db").exists() {
        return vec![];
    }
    State::open(dir)
        .and_then(|s| s.ports_of(id))
        .unwrap_or_default()
}

/// Container `id` was renamed: the DNS servers answer the new name from now on, and
/// no longer the old one.
pub fn rename(id: &str, old: &str, new: &str) -> Result<(), Error> {
    let dir = Path::new(STATE_DIR);
    if !dir.join("network.db").exists() {
        return Ok(());
    }
    State::open(dir)?.rename(id, old, new)
}

/// Container `id`'s address on its network while it runs.
pub fn lease(id: &str) -> Option<(Ipv4Addr, u8, Ipv4Addr)> {
    let dir = Path::new(STATE_DIR);
    if !dir.join("network.db").exists() {
        return None;
    }
    let s = State::open(dir).ok()?;
    let l = s.lease_of(id).ok()??;
    let n = s.network(&l.network).ok()??;
    Some((l.address, n.prefix, n.gateway))
}

/// Before a container is created: is any fixed host port of `specs` taken now, by a
/// running container or by a program on the host? Catches the common conflict before
/// anything exists; the start checks again, atomically.
pub fn check_ports(specs: &[PortSpec], is_stale: IsStale) -> Result<(), Error> {
    let dir = Path::new(STATE_DIR);
    let state = if dir.join("network.db").exists() {
        Some(State::open(dir)?)
    } else {
        None
    };
    for s in specs {
        let Some((lo, hi)) = s.host_ports else {
            continue;
        };
        if lo != hi {
            continue;
        }
        let name = format!("{}:{}", s.host_ip, lo);
        if let Some(state) = &state {
            if let Some(holder) = state.port_holder(s.proto, s.host_ip, lo)? {
                let root = state.lease_of(&holder)?.map(|l| l.root).unwrap_or_default();
                if !is_stale(&root, &holder) {
                    return Err(Error::PortAllocated(name));
                }
                continue;
            }
        }
        if ports::host_port_free(s.proto, s.host_ip, lo).is_err() {
            return Err(Error::PortInUse(name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_overlap_by_the_shorter_prefix() {
        let a = (u32::from(Ipv4Addr::new(10, 89, 0, 0)), 16);
        assert!(overlap(a, (u32::from(Ipv4Addr::new(10, 89, 3, 0)), 24)));
        assert!(overlap(a, (u32::from(Ipv4Addr::new(10, 0, 0, 0)), 8)));
        assert!(!overlap(a, (u32::from(Ipv4Addr::new(10, 88, 0, 0)), 16)));
    }

    #[test]
    fn veth_names_fit_ifnamsiz() {
        let n = veth_name(&"ab".repeat(32));
        assert_eq!(n.len(), 14);
        assert!(n.starts_with("vb"));
    }

    #[test]
    fn a_containers_host_veths_never_share_a_name() {
        for id in ["6dddc7b82ab1f00d", "0123456789a1bcde", "ffffffffffffffff"] {
            let names: Vec<String> = (0..=20)
                .map(|n| host_veth(id, &format!("eth{n}")))
                .collect();
            for (i, a) in names.iter().enumerate() {
                assert!(a.len() <= 15, "{a}");
                assert!(!names[i + 1..].contains(a), "{a} twice for {id}");
            }
            assert_eq!(names[0], veth_name(id));
        }
    }
}
