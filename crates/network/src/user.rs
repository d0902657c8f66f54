//! User networks (`network create|ls|inspect|rm|prune`): each its own bridge
//! `br-<12 hex of its id>` with a subnet of its own, recorded in the host-wide state
//! database next to the default network, so every store sees the same networks (as a
//! Docker daemon has one set). Containers that name one are its members from `create`
//! to `rm`, running or not: `network rm` refuses while any of them exists.

use crate::rtnl::Rtnl;
use crate::state::{Connected, Member, NetDef, NetworkRow, State};
use crate::{
    ensure_locked, firewall_lock, free_subnet, host_used, lock, nets_of, nft, overlap, Error,
};
use crate::{BRIDGE, DEFAULT_NETWORK};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

/// Whether container `id` of the store at `root` no longer exists at all (its row or its
/// store is gone). The engine answers.
pub type IsGone<'a> = &'a dyn Fn(&Path, &str) -> bool;

/// What `network create` asks for.
#[derive(Debug, Clone, Default)]
pub struct NewNetwork {
    pub name: String,
    pub subnet: Option<(Ipv4Addr, u8)>,
    pub gateway: Option<Ipv4Addr>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    /// `--dns`: where the network's DNS server forwards names that are not its
    /// containers' (the host's resolvers when empty).
    pub dns: Vec<std::net::IpAddr>,
    /// The store (`--root`) that creates it.
    pub root: std::path::PathBuf,
    /// RFC 3339, as the CLI formats it.
    pub created: String,
}

/// A network as `ls` and `inspect` show it.
#[derive(Debug, Clone)]
pub struct Network {
    pub row: NetworkRow,
    pub def: NetDef,
}

/// A running member's address.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: String,
    pub name: String,
    pub address: Option<(Ipv4Addr, u8)>,
}

/// Parses `A.B.C.D/N` into the network address and prefix; host bits must be zero,
/// as Docker requires.
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), Error> {
    let bad = || Error::Invalid(format!("invalid CIDR address: {s}"));
    let (a, p) = s.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
    let prefix: u8 = p.parse().map_err(|_| bad())?;
    if prefix > 30 || prefix == 0 {
        return Err(Error::Invalid(format!(
            "invalid subnet {s}: berth needs a prefix length from 1 to 30"
        )));
    }
    if u32::from(addr) & !crate::rtnl::prefix_mask(prefix) != 0 {
        return Err(Error::Invalid(format!(
            "invalid subnet {s}: it has host bits set (the network is {}/{prefix})",
            Ipv4Addr::from(u32::from(addr) & crate::rtnl::prefix_mask(prefix))
        )));
    }
    Ok((addr, prefix))
}

fn random_id() -> String {
    let mut b = [0u8; 32];
    // SAFETY: getrandom writes at most b.len() bytes into the buffer we own.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != 32 {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b[..16].copy_from_slice(&t.to_ne_bytes());
        b[16..20].copy_from_slice(&std::process::id().to_ne_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A network by name, full id or unique id prefix (names first, as Docker).
pub(crate) fn find(state: &State, key: &str) -> Result<Option<(NetworkRow, NetDef)>, Error> {
    let defs = state.defs()?;
    let def = match defs.iter().find(|d| d.name == key) {
        Some(d) => Some(d.clone()),
        None => {
            let hits: Vec<&NetDef> = defs
                .iter()
                .filter(|d| !key.is_empty() && d.id.starts_with(key))
                .collect();
            match hits.as_slice() {
                [one] => Some((*one).clone()),
                [] => None,
                _ => {
                    return Err(Error::Invalid(format!(
                        "network {key} is ambiguous ({} matches found based on ID prefix)",
                        hits.len()
                    )))
                }
            }
        }
    };
    let Some(def) = def else { return Ok(None) };
    Ok(state.network(&def.name)?.map(|row| (row, def)))
}

/// Creates a user network: its bridge (up, with the gateway's address), its firewall
/// rules and its records. On error nothing of it is left.
pub fn create(dir: &Path, req: &NewNetwork) -> Result<Network, Error> {
    if matches!(req.name.as_str(), "bridge" | "host" | "none" | "default") {
        return Err(Error::Invalid(format!(
            "operation is not permitted on predefined {} network ",
            req.name
        )));
    }
    let _lock = lock(dir)?;
    let mut state = State::open(dir)?;
    if find(&state, &req.name)?.is_some_and(|(r, _)| r.name == req.name) {
        return Err(Error::Exists(req.name.clone()));
    }
    let ours: Vec<(u32, u8)> = state
        .networks()?
        .iter()
        .map(|n| (u32::from(n.subnet), n.prefix))
        .collect();
    let mut rtnl = Rtnl::open()?;
    let (subnet, prefix) = match req.subnet {
        Some((s, p)) => {
            let mut used = host_used(&mut rtnl)?;
            used.extend_from_slice(&ours);
            if used.iter().any(|u| overlap((u32::from(s), p), *u)) {
                return Err(Error::PoolOverlap);
            }
            (s, p)
        }
        None => free_subnet(&mut rtnl, &ours)?,
    };
    let mask = crate::rtnl::prefix_mask(prefix);
    let gateway = match req.gateway {
        Some(g) => {
            let broadcast = u32::from(subnet) | !mask;
            if u32::from(g) & mask != u32::from(subnet) || g == subnet || u32::from(g) == broadcast
            {
                return Err(Error::Invalid(format!(
                    "no matching subnet for gateway {g}"
                )));
            }
            g
        }
        None => Ipv4Addr::from(u32::from(subnet) + 1),
    };
    let id = random_id();
    let row = NetworkRow {
        name: req.name.clone(),
        bridge: format!("br-{}", &id[..12]),
        subnet,
        prefix,
        gateway,
    };
    let def = NetDef {
        name: req.name.clone(),
        id,
        created: req.created.clone(),
        internal: req.internal,
        labels: req.labels.clone(),
        options: req.options.clone(),
        dns: req.dns.iter().map(|a| a.to_string()).collect(),
        root: req.root.to_string_lossy().into_owned(),
    };
    // Records first, so the firewall batch that `ensure_locked` writes includes it.
    let _fw = firewall_lock(dir, true)?;
    state.define(&row, &def)?;
    if let Err(e) = ensure_locked(dir, &row.bridge, Some((gateway, prefix)), req.internal) {
        let _ = teardown(&mut state, &row);
        return Err(e);
    }
    Ok(Network { row, def })
}

/// Deletes network `row`'s bridge, compat rules and records, and rewrites the firewall
/// without it.
fn teardown(state: &mut State, row: &NetworkRow) -> Result<(), Error> {
    let mut first = None;
    if let Err(e) = Rtnl::open().and_then(|mut r| r.del_link(&row.bridge)) {
        first.get_or_insert(e);
    }
    nft::iptables_compat_remove(&row.bridge);
    if let Err(e) = state.undefine(&row.name) {
        first.get_or_insert(e);
    }
    if let Err(e) = nets_of(state).and_then(|nets| nft::ensure(&nets)) {
        first.get_or_insert(e);
    }
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Every user network, by name.
pub fn list(dir: &Path) -> Result<Vec<Network>, Error> {
    if !dir.join("network.db").exists() {
        return Ok(vec![]);
    }
    let state = State::open(dir)?;
    let rows = state.networks()?;
    Ok(state
        .defs()?
        .into_iter()
        .filter_map(|def| {
            rows.iter().find(|r| r.name == def.name).map(|row| Network {
                row: row.clone(),
                def,
            })
        })
        .collect())
}

/// The network `key` names (name, id or id prefix).
pub fn get(dir: &Path, key: &str) -> Result<Option<Network>, Error> {
    if !dir.join("network.db").exists() {
        return Ok(None);
    }
    let state = State::open(dir)?;
    Ok(find(&state, key)?.map(|(row, def)| Network { row, def }))
}

/// The default network's addressing, once its bridge was made.
pub fn default_row(dir: &Path) -> Result<Option<NetworkRow>, Error> {
    if !dir.join("network.db").exists() {
        return Ok(None);
    }
    State::open(dir)?.network(DEFAULT_NETWORK)
}

/// A stable id for a predefined network (`bridge`, `host`, `none`), made on first ask.
pub fn builtin_id(dir: &Path, name: &str) -> Result<String, Error> {
    let mut state = State::open(dir)?;
    state.builtin_id(name, &random_id())
}

/// The members of network `name` (and the containers connected to it) and, for those
/// running, their addresses.
pub fn endpoints(dir: &Path, name: &str) -> Result<Vec<Endpoint>, Error> {
    if !dir.join("network.db").exists() {
        return Ok(vec![]);
    }
    let state = State::open(dir)?;
    let prefix = state.network(name)?.map(|n| n.prefix).unwrap_or(0);
    let mut who: Vec<(String, String)> = state
        .members_of(name)?
        .into_iter()
        .map(|m| (m.holder, m.name))
        .collect();
    for c in state.connections_on(name)? {
        if !who.iter().any(|(h, _)| *h == c.holder) {
            who.push((c.holder, c.name));
        }
    }
    let mut out = vec![];
    for (holder, cname) in who {
        let address = state
            .leases_of(&holder)?
            .into_iter()
            .find(|l| l.network == name)
            .map(|l| (l.address, prefix));
        out.push(Endpoint {
            id: holder,
            name: cname,
            address,
        });
    }
    Ok(out)
}

/// Records `network connect NET` of container `holder` (named `cname`, of the store at
/// `root`) with `aliases`: the network's name, or `NotFound`; `Ok(None)` when the
/// container was connected to it already.
pub fn connect(
    dir: &Path,
    key: &str,
    holder: &str,
    root: &Path,
    cname: &str,
    aliases: &[String],
) -> Result<Option<String>, Error> {
    let mut state = State::open(dir)?;
    let network = if key == DEFAULT_NETWORK {
        DEFAULT_NETWORK.to_string()
    } else {
        find(&state, key)?
            .ok_or_else(|| Error::NotFound(key.to_string()))?
            .0
            .name
    };
    let fresh = state.connect(&Connected {
        holder: holder.to_string(),
        network: network.clone(),
        root: root.to_path_buf(),
        name: cname.to_string(),
        aliases: aliases.to_vec(),
    })?;
    Ok(fresh.then_some(network))
}

/// Forgets `network connect NETWORK` of container `holder`; false when there was none.
pub fn disconnect(dir: &Path, network: &str, holder: &str) -> Result<bool, Error> {
    if !dir.join("network.db").exists() {
        return Ok(false);
    }
    State::open(dir)?.disconnect(holder, network)
}

/// The networks container `holder` was connected to with `network connect`.
pub fn connections(dir: &Path, holder: &str) -> Result<Vec<Connected>, Error> {
    if !dir.join("network.db").exists() {
        return Ok(vec![]);
    }
    State::open(dir)?.connections_of(holder)
}

/// The name of the network `key` names (`bridge`, or a user network's name, id or
/// prefix).
pub fn name_of(dir: &Path, key: &str) -> Result<Option<String>, Error> {
    if matches!(key, DEFAULT_NETWORK | "default") {
        return Ok(Some(DEFAULT_NETWORK.to_string()));
    }
    Ok(get(dir, key)?.map(|n| n.row.name))
}

/// Records that container `holder` (named `cname`, of the store at `root`) is on
/// network `key`; the network's name, or `NotFound`.
pub fn join(
    dir: &Path,
    key: &str,
    holder: &str,
    root: &Path,
    cname: &str,
) -> Result<String, Error> {
    let mut state = State::open(dir)?;
    let (row, _) = find(&state, key)?.ok_or_else(|| Error::NotFound(key.to_string()))?;
    state.join(&Member {
        holder: holder.to_string(),
        network: row.name.clone(),
        root: root.to_path_buf(),
        name: cname.to_string(),
    })?;
    Ok(row.name)
}

/// Container `holder` is gone: it no longer keeps its network from being removed.
pub fn leave(dir: &Path, holder: &str) -> Result<(), Error> {
    if !dir.join("network.db").exists() {
        return Ok(());
    }
    State::open(dir)?.leave(holder)
}

/// `network rm`: refused while a container that names the network exists (members
/// whose container is gone are forgotten) or holds an address on it.
pub fn remove(dir: &Path, key: &str, gone: IsGone) -> Result<NetDef, Error> {
    if matches!(key, "bridge" | "host" | "none" | "default" | BRIDGE) {
        return Err(Error::Invalid(format!(
            "{key} is a pre-defined network and cannot be removed"
        )));
    }
    let _lock = lock(dir)?;
    let mut state = State::open(dir)?;
    let (row, def) = find(&state, key)?.ok_or_else(|| Error::NotFound(key.to_string()))?;
    let in_use = || Error::InUse {
        name: def.name.clone(),
        id: def.id.clone(),
    };
    for m in state.members_of(&row.name)? {
        if gone(&m.root, &m.holder) {
            state.leave(&m.holder)?;
        } else {
            return Err(in_use());
        }
    }
    for c in state.connections_on(&row.name)? {
        if gone(&c.root, &c.holder) {
            state.leave(&c.holder)?;
        } else {
            return Err(in_use());
        }
    }
    if state.leases()?.iter().any(|l| l.network == row.name) {
        return Err(in_use());
    }
    crate::dns::stop(dir, &def.id)?;
    let _fw = firewall_lock(dir, true)?;
    teardown(&mut state, &row)?;
    Ok(def)
}

/// Whether network `name` has members (for `prune`).
pub fn in_use(dir: &Path, name: &str, gone: IsGone) -> Result<bool, Error> {
    let state = State::open(dir)?;
    Ok(state
        .members_of(name)?
        .iter()
        .any(|m| !gone(&m.root, &m.holder))
        || state
            .connections_on(name)?
            .iter()
            .any(|c| !gone(&c.root, &c.holder))
        || state.leases()?.iter().any(|l| l.network == name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_need_a_network_address() {
        assert_eq!(
            parse_cidr("10.99.0.0/24").unwrap(),
            (Ipv4Addr::new(10, 99, 0, 0), 24)
        );
        assert!(parse_cidr("10.99.0.1/24").is_err());
        assert!(parse_cidr("10.99.0.0").is_err());
        assert!(parse_cidr("10.99.0.0/31").is_err());
        assert!(parse_cidr("bogus/8").is_err());
    }

    #[test]
    fn ids_are_64_hex() {
        let a = random_id();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, random_id());
    }
}
