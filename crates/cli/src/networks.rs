//! How containers' networks show: `inspect`'s `NetworkSettings`, the PORTS column of
//! `ps`. (`berth port` prints [`engine::container::Engine::port_pairs`].)

use engine::container::Engine;
use engine::network::PortBinding;
use engine::store::Container;
use serde_json::{json, Map, Value};

/// Docker's `NetworkSettings` for what berth has: the address on the bridge and the
/// published ports while the container runs.
pub fn settings(engine: &Engine, c: &Container) -> Value {
    let mut ports = Map::new();
    for b in engine.published_ports(c) {
        let entry = ports.entry(b.private()).or_insert_with(|| json!([]));
        if let Some(list) = entry.as_array_mut() {
            list.push(
                json!({"HostIp": b.host_ip.to_string(), "HostPort": b.host_port.to_string()}),
            );
        }
    }
    let mut networks = Map::new();
    let entries = engine.networks(c);
    // The top-level fields are the first network's, as Docker's for the default bridge.
    let (address, prefix, gateway) = match entries.first().and_then(|e| e.address) {
        Some((a, p, g)) => (a.to_string(), p, g.to_string()),
        None => (String::new(), 0, String::new()),
    };
    for e in &entries {
        let (ip, len, gw) = match e.address {
            Some((a, p, g)) => (a.to_string(), p, g.to_string()),
            None => (String::new(), 0, String::new()),
        };
        let mut v = json!({
            "MacAddress": mac(&ip),
            "IPAddress": ip,
            "IPPrefixLen": len,
            "Gateway": gw,
            "Aliases": if e.aliases.is_empty() { Value::Null } else { json!(e.aliases) },
        });
        if !e.dns_names.is_empty() {
            v["DNSNames"] = json!(e.dns_names);
        }
        networks.insert(e.name.clone(), v);
    }
    json!({
        "Bridge": "",
        "SandboxKey": if address.is_empty() { String::new() } else {
            engine.netns_path(&c.id).to_string_lossy().into_owned()
        },
        "Ports": ports,
        "IPAddress": address,
        "IPPrefixLen": prefix,
        "Gateway": gateway,
        "MacAddress": mac(&address),
        "Networks": networks,
    })
}

/// The MAC address of a container's `eth0` at `address` ("" when it has none).
fn mac(address: &str) -> String {
    address
        .parse()
        .map(engine::network::mac_text)
        .unwrap_or_default()
}

/// `ps`'s PORTS: `0.0.0.0:8080->80/tcp, 0.0.0.0:5353->53/udp`.
pub fn ps_ports(bindings: &[PortBinding]) -> String {
    bindings
        .iter()
        .map(|b| format!("{}->{}", b.public(), b.private()))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------
// `berth network create|ls|inspect|rm|prune`

use crate::format::{render, render_named, Format};
use crate::App;
use anyhow::Result;
use clap::{Args, Subcommand};
use engine::network::user::{self, Network, NewNetwork};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Subcommand)]
#[command(defer = true)]
pub enum NetworkCmd {
    /// Create a network
    Create(CreateArgs),
    /// List networks
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove all unused networks
    Prune(PruneArgs),
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
}

#[derive(Args)]
pub struct ConnectArgs {
    /// Add network-scoped alias for the container
    #[arg(long)]
    pub alias: Vec<String>,
    pub network: String,
    pub container: String,
}

#[derive(Args)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short, long)]
    pub force: bool,
    pub network: String,
    pub container: String,
}

#[derive(Args)]
pub struct CreateArgs {
    /// Driver to manage the Network
    #[arg(short, long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long)]
    pub subnet: Option<String>,
    /// IPv4 Gateway for the master subnet
    #[arg(long)]
    pub gateway: Option<String>,
    /// Restrict external access to the network
    #[arg(long)]
    pub internal: bool,
    /// Set metadata on a network
    #[arg(long)]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short, long)]
    pub opt: Vec<String>,
    /// Name servers the network's DNS server forwards to, instead of the host's (as podman)
    #[arg(long)]
    pub dns: Vec<String>,
    pub name: String,
}

#[derive(Args)]
pub struct LsArgs {
    /// Only display network IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Provide filter values (e.g. "name=mynet")
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// Do not truncate the output
    #[arg(long)]
    pub no_trunc: bool,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub networks: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    #[arg(required = true)]
    pub networks: Vec<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (e.g. "label=<key>=<value>")
    #[arg(long)]
    pub filter: Vec<String>,
}

pub fn network_cmd(app: &App, c: &NetworkCmd) -> Result<i32> {
    match c {
        NetworkCmd::Connect(a) => connect(app, a),
        NetworkCmd::Disconnect(a) => disconnect(app, a),
        NetworkCmd::Create(a) => create(app, a),
        NetworkCmd::Ls(a) => ls(a),
        NetworkCmd::Inspect(a) => inspect(a),
        NetworkCmd::Rm(a) => rm(a),
        NetworkCmd::Prune(a) => prune(a),
    }
}

fn dir() -> &'static Path {
    Path::new(engine::network::STATE_DIR)
}

/// Errors the daemon would have answered, printed as docker prints them (exit 1).
fn daemon_error(e: impl std::fmt::Display) -> i32 {
    eprintln!("Error response from daemon: {e}");
    1
}

fn key_values(items: &[String]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

fn create(app: &App, a: &CreateArgs) -> Result<i32> {
    if a.driver != "bridge" {
        return Ok(daemon_error(format!(
            "plugin \"{}\" not found (berth has the bridge driver only)",
            a.driver
        )));
    }
    let subnet = match a.subnet.as_deref().map(user::parse_cidr).transpose() {
        Ok(s) => s,
        Err(e) => return Ok(daemon_error(e)),
    };
    let gateway = match &a.gateway {
        Some(g) if subnet.is_none() => {
            return Ok(daemon_error(format!(
                "invalid pool request: gateway {g} needs a --subnet"
            )))
        }
        Some(g) => match g.parse() {
            Ok(ip) => Some(ip),
            Err(_) => return Ok(daemon_error(format!("invalid gateway address: {g}"))),
        },
        None => None,
    };
    let mut dns = Vec::new();
    for d in &a.dns {
        match d.parse() {
            Ok(ip) => dns.push(ip),
            Err(_) => return Ok(daemon_error(format!("invalid DNS server address: {d}"))),
        }
    }
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let req = NewNetwork {
        dns,
        root: app.root.clone(),
        name: a.name.clone(),
        subnet,
        gateway,
        internal: a.internal,
        labels: key_values(&a.label),
        options: key_values(&a.opt),
        created: image::time::format_rfc3339(secs),
    };
    match user::create(dir(), &req) {
        Ok(n) => {
            println!("{}", n.def.id);
            Ok(0)
        }
        Err(e) => Ok(daemon_error(e)),
    }
}

/// `network connect`: Docker's daemon errors, exit 1; nothing recorded on error.
fn connect(app: &App, a: &ConnectArgs) -> Result<i32> {
    let engine = crate::containers::open_engine(app)?;
    let c = match engine.find(&a.container) {
        Ok(c) => c,
        Err(e) => return Ok(daemon_error(e)),
    };
    match engine.connect(&c, &a.network, &a.alias) {
        Ok(()) => Ok(0),
        Err(e) => Ok(daemon_error(e)),
    }
}

/// `network disconnect`.
fn disconnect(app: &App, a: &DisconnectArgs) -> Result<i32> {
    let engine = crate::containers::open_engine(app)?;
    let c = match engine.find(&a.container) {
        Ok(c) => c,
        Err(e) => return Ok(daemon_error(e)),
    };
    match engine.disconnect(&c, &a.network, a.force) {
        Ok(()) => Ok(0),
        Err(e) => Ok(daemon_error(e)),
    }
}

/// One network as `ls` and `inspect` see it: the predefined ones too.
struct Shown {
    id: String,
    name: String,
    driver: &'static str,
    value: Value,
}

fn shown(n: &Network) -> Result<Shown> {
    let mut containers = Map::new();
    for ep in user::endpoints(dir(), &n.row.name)? {
        if let Some((addr, prefix)) = ep.address {
            containers.insert(
                ep.id.clone(),
                json!({
                    "Name": ep.name,
                    "EndpointID": "",
                    "MacAddress": engine::network::mac_text(addr),
                    "IPv4Address": format!("{addr}/{prefix}"),
                    "IPv6Address": "",
                }),
            );
        }
    }
    Ok(Shown {
        id: n.def.id.clone(),
        name: n.def.name.clone(),
        driver: "bridge",
        value: json!({
            "Name": n.def.name,
            "Id": n.def.id,
            "Created": n.def.created,
            "Scope": "local",
            "Driver": "bridge",
            "EnableIPv4": true,
            "EnableIPv6": false,
            "IPAM": {
                "Driver": "default",
                "Options": {},
                "Config": [{
                    "Subnet": format!("{}/{}", n.row.subnet, n.row.prefix),
                    "Gateway": n.row.gateway.to_string(),
                }],
            },
            "Internal": n.def.internal,
            "Attachable": false,
            "Ingress": false,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": false,
            "Containers": containers,
            "Options": n.def.options,
            "Labels": n.def.labels,
        }),
    })
}

/// `bridge`, `host` and `none`, as docker lists them.
fn predefined() -> Result<Vec<Shown>> {
    let mut out = vec![];
    for (name, driver) in [("bridge", "bridge"), ("host", "host"), ("none", "null")] {
        let id = user::builtin_id(dir(), name)?;
        let config = match (name, user::default_row(dir())?) {
            ("bridge", Some(r)) => json!([{
                "Subnet": format!("{}/{}", r.subnet, r.prefix),
                "Gateway": r.gateway.to_string(),
            }]),
            _ => json!([]),
        };
        let options = if name == "bridge" {
            json!({"com.docker.network.bridge.name": engine::network::BRIDGE})
        } else {
            json!({})
        };
        out.push(Shown {
            value: json!({
                "Name": name,
                "Id": id,
                "Created": "",
                "Scope": "local",
                "Driver": driver,
                "EnableIPv4": true,
                "EnableIPv6": false,
                "IPAM": {"Driver": "default", "Options": null, "Config": config},
                "Internal": false,
                "Attachable": false,
                "Ingress": false,
                "ConfigFrom": {"Network": ""},
                "ConfigOnly": false,
                "Containers": {},
                "Options": options,
                "Labels": {},
            }),
            id,
            name: name.to_string(),
            driver,
        });
    }
    Ok(out)
}

fn all() -> Result<Vec<Shown>> {
    let mut out = predefined()?;
    for n in user::list(dir())? {
        out.push(shown(&n)?);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn ls(a: &LsArgs) -> Result<i32> {
    let filters = match crate::volumes::filters(&a.filter, &["name", "id", "driver", "label"]) {
        Ok(f) => f,
        Err(e) => return Ok(daemon_error(e)),
    };
    let any = |key: &str, f: &dyn Fn(&str) -> bool| {
        let values: Vec<&str> = filters
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect();
        values.is_empty() || values.into_iter().any(f)
    };
    let list: Vec<Shown> = all()?
        .into_iter()
        .filter(|n| {
            any("name", &|v| n.name.contains(v))
                && any("id", &|v| n.id.starts_with(v))
                && any("driver", &|v| n.driver == v)
                && filters.iter().filter(|(k, _)| k == "label").all(|(_, l)| {
                    let labels = &n.value["Labels"];
                    match l.split_once('=') {
                        Some((k, v)) => labels[k].as_str() == Some(v),
                        None => labels.get(l).is_some(),
                    }
                })
        })
        .collect();
    let id = |n: &Shown| {
        if a.no_trunc {
            n.id.clone()
        } else {
            n.id[..n.id.len().min(12)].to_string()
        }
    };
    if a.quiet && a.format.is_none() {
        for n in &list {
            println!("{}", id(n));
        }
        return Ok(0);
    }
    let rows: Vec<Map<String, Value>> = list
        .iter()
        .map(|n| {
            let mut m = Map::new();
            m.insert("ID".into(), json!(id(n)));
            m.insert("Name".into(), json!(n.name));
            m.insert("Driver".into(), json!(n.driver));
            m.insert("Scope".into(), json!("local"));
            m.insert("IPv6".into(), json!("false"));
            m.insert(
                "Internal".into(),
                json!(n.value["Internal"].as_bool().unwrap_or(false).to_string()),
            );
            m.insert("CreatedAt".into(), n.value["Created"].clone());
            m
        })
        .collect();
    let fmt = Format::parse(a.format.as_deref());
    print!(
        "{}",
        render_named(
            &rows,
            &fmt,
            "{{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
            &[("ID", "NETWORK ID")],
        )?
    );
    Ok(0)
}

fn inspect(a: &InspectArgs) -> Result<i32> {
    let mut found = vec![];
    let mut errors = vec![];
    let everything = all()?;
    for key in &a.networks {
        let hit = everything.iter().find(|n| &n.name == key).or_else(|| {
            let hits: Vec<&Shown> = everything
                .iter()
                .filter(|n| n.id.starts_with(key.as_str()))
                .collect();
            (hits.len() == 1).then(|| hits[0])
        });
        match hit {
            Some(n) => found.push(n.value.clone()),
            None => errors.push(format!("network {key} not found")),
        }
    }
    match &a.format {
        Some(f) => {
            let fmt = Format::parse(Some(f));
            for v in &found {
                let row = v.as_object().cloned().unwrap_or_default();
                print!("{}", render(&[row], &fmt, "")?);
            }
        }
        None => println!("{}", crate::volumes::pretty(&Value::Array(found))?),
    }
    let mut code = 0;
    for e in errors {
        code = daemon_error(e);
    }
    Ok(code)
}

fn rm(a: &RmArgs) -> Result<i32> {
    let mut code = 0;
    for key in &a.networks {
        match user::remove(dir(), key, &engine::net::is_gone) {
            Ok(_) => println!("{key}"),
            Err(e) => code = daemon_error(e),
        }
    }
    Ok(code)
}

/// `system prune`'s networks: the user networks this store created that no container
/// uses. Networks are the host's, but a store's prune stays within what the store made
/// (as a daemon's prune removes its own networks); `network prune` takes them all.
pub fn prune_store_networks(app: &App) -> Result<Vec<String>> {
    let root = app.root.to_string_lossy();
    let mut deleted = vec![];
    for n in user::list(dir())? {
        if n.def.root != root || user::in_use(dir(), &n.row.name, &engine::net::is_gone)? {
            continue;
        }
        if user::remove(dir(), &n.def.name, &engine::net::is_gone).is_ok() {
            deleted.push(n.def.name);
        }
    }
    Ok(deleted)
}

const PRUNE_WARNING: &str =
    "WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue?";

/// Docker's label filter: `KEY` present, or `KEY=VALUE` equal.
fn has_label(labels: &BTreeMap<String, String>, want: &str) -> bool {
    match want.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(want),
    }
}

fn prune(a: &PruneArgs) -> Result<i32> {
    let filters = match crate::volumes::filters(&a.filter, &["label", "label!"]) {
        Ok(f) => f,
        Err(e) => return Ok(daemon_error(e)),
    };
    if !a.force && !crate::volumes::confirm(PRUNE_WARNING) {
        return Ok(0);
    }
    let mut deleted = vec![];
    for n in user::list(dir())? {
        // Networks are the host's: `label=` narrows a prune to some of them.
        let keep = filters.iter().any(|(k, v)| match k.as_str() {
            "label" => !has_label(&n.def.labels, v),
            _ => has_label(&n.def.labels, v),
        });
        if keep {
            continue;
        }
        if user::in_use(dir(), &n.row.name, &engine::net::is_gone)? {
            continue;
        }
        // A container may have joined since: remove refuses then, and it stays.
        if user::remove(dir(), &n.def.name, &engine::net::is_gone).is_ok() {
            deleted.push(n.def.name);
        }
    }
    if !deleted.is_empty() {
        println!("Deleted Networks:");
        for name in &deleted {
            println!("{name}");
        }
        println!();
    }
    Ok(0)
}
