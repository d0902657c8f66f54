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
    let (address, prefix, gateway) = match engine.network_address(c) {
        Some((a, p, g)) => (a.to_string(), p, g.to_string()),
        None => (String::new(), 0, String::new()),
    };
    if c.options.run.network == engine::flags::NetworkMode::Default {
        networks.insert(
            "bridge".into(),
            json!({
                "IPAddress": address,
                "IPPrefixLen": prefix,
                "Gateway": gateway,
            }),
        );
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
        "Networks": networks,
    })
}

/// `ps`'s PORTS: `0.0.0.0:8080->80/tcp, 0.0.0.0:5353->53/udp`.
pub fn ps_ports(bindings: &[PortBinding]) -> String {
    bindings
        .iter()
        .map(|b| format!("{}->{}", b.public(), b.private()))
        .collect::<Vec<_>>()
        .join(", ")
}
