//! berth's firewall: one nftables table, `ip berth`, written through `nft -j -f -` (the
//! JSON interface netavark uses) in atomic batches. berth never lists, flushes or edits
//! any other table.
//!
//! ```text
//! table ip berth {
//!   map ports { type ipv4_addr . inet_proto . inet_service : verdict; flags interval; }
//!   chain prerouting  { nat    hook prerouting  -100: fib daddr type local  → vmap @ports }
//!   chain output      { nat    hook output      -100: fib daddr type local  → vmap @ports }
//!   chain postrouting { nat    hook postrouting  100: masquerade the subnet going out,
//!                       127/8 going to the bridge (route_localnet), and hairpin DNAT }
//!   chain forward     { filter hook forward        0: replies, bridge-internal and DNATed
//!                       traffic to the bridge pass; anything else new to it is dropped }
//!   chain c-<id12>    { one `dnat` rule per published port of that container }
//! }
//! ```
//!
//! A container's ports are map elements (`hostip/0-or-32 . proto . hostport : jump
//! c-<id12>`) plus its own chain, so setup and teardown are a single batch each and need
//! no rule handles: teardown first *adds* the chain and elements (a no-op when present),
//! then deletes them, which succeeds whether or not a crash left them behind.
//!
//! The base chains are flushed and rewritten in every batch that touches the table, so a
//! table damaged by hand is repaired by the next `run -p`, and concurrent batches (the
//! kernel serialises them) never see half a table.

use crate::ports::PortBinding;
use crate::Error;
use serde_json::{json, Value};
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

pub const TABLE: &str = "berth";
const MAP: &str = "ports";

/// A bridge and subnet the base rules are written for: every network berth has.
#[derive(Debug, Clone)]
pub struct Net {
    pub bridge: String,
    pub subnet: Ipv4Addr,
    pub prefix: u8,
    /// `network create --internal`: no masquerade, nothing leaves the bridge.
    pub internal: bool,
}

fn chain_name(id: &str) -> String {
    format!("c-{}", &id[..id.len().min(12)])
}

fn table() -> Value {
    json!({"table": {"family": "ip", "name": TABLE}})
}

fn map() -> Value {
    json!({"map": {"family": "ip", "table": TABLE, "name": MAP,
        "type": ["ipv4_addr", "inet_proto", "inet_service"],
        "map": "verdict", "flags": ["interval"]}})
}

fn rule(chain: &str, expr: Vec<Value>) -> Value {
    json!({"add": {"rule": {"family": "ip", "table": TABLE, "chain": chain, "expr": expr}}})
}

fn matches(left: Value, op: &str, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}

fn oifname() -> Value {
    json!({"meta": {"key": "oifname"}})
}

fn iifname() -> Value {
    json!({"meta": {"key": "iifname"}})
}

fn saddr() -> Value {
    json!({"payload": {"protocol": "ip", "field": "saddr"}})
}

fn prefix(addr: Ipv4Addr, len: u8) -> Value {
    json!({"prefix": {"addr": addr.to_string(), "len": len}})
}

/// add table, map and base chains; flush the base chains and write their rules for
/// every network in `nets`.
fn base(nets: &[Net]) -> Vec<Value> {
    let mut out = vec![json!({"add": table()}), json!({"add": map()})];
    for (name, kind, hook, prio) in [
        ("prerouting", "nat", "prerouting", -100),
        ("output", "nat", "output", -100),
        ("postrouting", "nat", "postrouting", 100),
        ("forward", "filter", "forward", 0),
    ] {
        let chain = json!({"family": "ip", "table": TABLE, "name": name,
            "type": kind, "hook": hook, "prio": prio, "policy": "accept"});
        out.push(json!({"add": {"chain": chain}}));
        out.push(json!({"flush": {"chain": {"family": "ip", "table": TABLE, "name": name}}}));
    }
    let dispatch = || {
        vec![
            matches(
                json!({"fib": {"result": "type", "flags": ["daddr"]}}),
                "==",
                json!("local"),
            ),
            json!({"vmap": {"key": {"concat": [
                {"payload": {"protocol": "ip", "field": "daddr"}},
                {"meta": {"key": "l4proto"}},
                {"payload": {"protocol": "th", "field": "dport"}}
            ]}, "data": format!("@{MAP}")}}),
        ]
    };
    out.push(rule("prerouting", dispatch()));
    out.push(rule("output", dispatch()));
    for b in nets {
        out.extend(net_rules(b));
    }
    out
}

fn net_rules(b: &Net) -> Vec<Value> {
    let mut out = vec![];
    let subnet = prefix(b.subnet, b.prefix);
    let masq = json!({"masquerade": null});
    if b.internal {
        // An internal network's traffic stays on its bridge, both ways.
        out.push(rule(
            "forward",
            vec![
                matches(iifname(), "==", json!(b.bridge)),
                matches(oifname(), "!=", json!(b.bridge)),
                json!({"drop": null}),
            ],
        ));
    } else {
        // Outbound traffic of the containers leaves with the host's address.
        out.push(rule(
            "postrouting",
            vec![
                matches(saddr(), "==", subnet.clone()),
                matches(oifname(), "!=", json!(b.bridge)),
                masq.clone(),
            ],
        ));
    }
    // 127.0.0.1:PORT from the host, DNATed to a container: the reply must come back to
    // an address the container can reach (with route_localnet on the bridge).
    out.push(rule(
        "postrouting",
        vec![
            matches(saddr(), "==", prefix(Ipv4Addr::new(127, 0, 0, 0), 8)),
            matches(oifname(), "==", json!(b.bridge)),
            masq.clone(),
        ],
    ));
    // A container reaching a published port (its own or a neighbour's) through a host
    // address: without SNAT the reply would bypass the DNAT.
    out.push(rule(
        "postrouting",
        vec![
            matches(json!({"ct": {"key": "status"}}), "in", json!("dnat")),
            matches(saddr(), "==", subnet),
            matches(oifname(), "==", json!(b.bridge)),
            masq,
        ],
    ));
    let to_bridge = || matches(oifname(), "==", json!(b.bridge));
    out.push(rule(
        "forward",
        vec![
            to_bridge(),
            matches(
                json!({"ct": {"key": "state"}}),
                "in",
                json!(["established", "related"]),
            ),
            json!({"accept": null}),
        ],
    ));
    // Containers of one network reach each other; a container of another network
    // (another bridge) comes in by another interface and is dropped below, as Docker
    // isolates its networks.
    out.push(rule(
        "forward",
        vec![
            to_bridge(),
            matches(iifname(), "==", json!(b.bridge)),
            json!({"accept": null}),
        ],
    ));
    out.push(rule(
        "forward",
        vec![
            to_bridge(),
            matches(json!({"ct": {"key": "status"}}), "in", json!("dnat")),
            json!({"accept": null}),
        ],
    ));
    // Like Docker with its FORWARD policy: containers are reached from outside only
    // through published ports.
    out.push(rule("forward", vec![to_bridge(), json!({"drop": null})]));
    out
}

fn element_key(p: &PortBinding) -> Value {
    let host = if p.host_ip.is_unspecified() {
        prefix(Ipv4Addr::UNSPECIFIED, 0)
    } else {
        json!(p.host_ip.to_string())
    };
    json!({"concat": [host, p.proto.as_str(), p.host_port]})
}

fn element(id: &str, bindings: &[PortBinding], with_data: bool) -> Value {
    let elem: Vec<Value> = bindings
        .iter()
        .map(|p| {
            if with_data {
                json!([element_key(p), {"jump": {"target": chain_name(id)}}])
            } else {
                element_key(p)
            }
        })
        .collect();
    json!({"element": {"family": "ip", "table": TABLE, "name": MAP, "elem": elem}})
}

fn chain(id: &str) -> Value {
    json!({"chain": {"family": "ip", "table": TABLE, "name": chain_name(id)}})
}

/// Creates (or repairs) the table for `nets`.
pub fn ensure(nets: &[Net]) -> Result<(), Error> {
    apply("setting up the firewall", base(nets))
}

/// Publishes `bindings` of container `id` at `addr`: its chain of DNAT rules and the map
/// elements that jump to it, with the base rules, in one batch.
pub fn publish(
    nets: &[Net],
    id: &str,
    addr: Ipv4Addr,
    bindings: &[PortBinding],
) -> Result<(), Error> {
    let mut batch = base(nets);
    let name = chain_name(id);
    batch.push(json!({"add": chain(id)}));
    batch.push(json!({"flush": chain(id)}));
    for p in bindings {
        batch.push(rule(
            &name,
            vec![
                matches(
                    json!({"meta": {"key": "l4proto"}}),
                    "==",
                    json!(p.proto.as_str()),
                ),
                matches(
                    json!({"payload": {"protocol": "th", "field": "dport"}}),
                    "==",
                    json!(p.host_port),
                ),
                json!({"dnat": {"addr": addr.to_string(), "port": p.container_port}}),
            ],
        ));
    }
    if !bindings.is_empty() {
        batch.push(json!({"add": element(id, bindings, true)}));
    }
    apply(
        &format!("publishing the ports of container {}", short(id)),
        batch,
    )
}

/// Removes what [`publish`] made for container `id`, whether or not it is all there.
pub fn unpublish(id: &str, bindings: &[PortBinding]) -> Result<(), Error> {
    let mut batch = vec![
        json!({"add": table()}),
        json!({"add": map()}),
        json!({"add": chain(id)}),
    ];
    if !bindings.is_empty() {
        batch.push(json!({"add": element(id, bindings, true)}));
        batch.push(json!({"delete": element(id, bindings, false)}));
    }
    batch.push(json!({"flush": chain(id)}));
    batch.push(json!({"delete": chain(id)}));
    apply(
        &format!("removing the ports of container {}", short(id)),
        batch,
    )
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Runs one batch through `nft -j -f -`.
fn apply(what: &str, batch: Vec<Value>) -> Result<(), Error> {
    let doc = json!({"nftables": batch});
    let text = serde_json::to_vec(&doc).map_err(|e| Error::Firewall {
        what: what.to_string(),
        reason: e.to_string(),
    })?;
    let mut child = Command::new("nft")
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Firewall {
            what: what.to_string(),
            reason: format!("running nft: {e}"),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&text);
    }
    let out = child.wait_with_output().map_err(|e| Error::Firewall {
        what: what.to_string(),
        reason: format!("running nft: {e}"),
    })?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let reason = err
        .lines()
        .find(|l| l.contains("Error"))
        .or_else(|| err.lines().find(|l| !l.trim().is_empty()))
        .unwrap_or("nft failed")
        .trim()
        .to_string();
    Err(Error::Firewall {
        what: what.to_string(),
        reason,
    })
}

/// Whether table `ip berth` exists, asked over nfnetlink (microseconds, where running
/// `nft` costs milliseconds): the check every container start can afford.
pub fn table_exists() -> bool {
    probe_table().unwrap_or(false)
}

fn probe_table() -> std::io::Result<bool> {
    use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
    const NFNL_SUBSYS_NFTABLES: u16 = 10;
    const NFT_MSG_GETTABLE: u16 = 1;
    const NFTA_TABLE_NAME: u16 = 1;
    const NFPROTO_IPV4: u8 = 2;
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let name = b"berth\0";
    let attr_len = 4 + name.len();
    let attr_padded = (attr_len + 3) & !3;
    let len = 16 + 4 + attr_padded;
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&(len as u32).to_ne_bytes());
    msg.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE).to_ne_bytes());
    let flags: u16 = 1 | 4; // NLM_F_REQUEST | NLM_F_ACK
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id
    msg.extend_from_slice(&[NFPROTO_IPV4, 0, 0, 0]); // nfgenmsg: family, version, res_id
    msg.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    msg.extend_from_slice(&NFTA_TABLE_NAME.to_ne_bytes());
    msg.extend_from_slice(name);
    msg.resize(len, 0);
    socket.send(&msg, 0)?;
    let mut buf = vec![0u8; 8192];
    let mut found = false;
    loop {
        let n = socket.recv(&mut &mut buf[..], 0)?;
        let mut off = 0;
        while off + 16 <= n {
            let mlen =
                u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
            let mtype = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
            if mlen < 16 {
                return Ok(found);
            }
            match mtype {
                // NLMSG_ERROR: code 0 is the ACK; ENOENT means no such table.
                2 => {
                    let code = i32::from_ne_bytes([
                        buf[off + 16],
                        buf[off + 17],
                        buf[off + 18],
                        buf[off + 19],
                    ]);
                    return if code == 0 || code == -libc::ENOENT {
                        Ok(found)
                    } else {
                        Err(std::io::Error::from_raw_os_error(-code))
                    };
                }
                3 => return Ok(found), // NLMSG_DONE
                t if t >> 8 == NFNL_SUBSYS_NFTABLES => found = true,
                _ => {}
            }
            off += (mlen + 3) & !3;
        }
    }
}

/// Docker sets the `FORWARD` policy of iptables' `filter` table to DROP, and in
/// netfilter an accept in berth's table does not overrule a drop in another: every
/// base chain on a hook must accept. So where an iptables `filter` table exists, berth
/// appends two rules of its own (marked with a comment) that accept its bridge's
/// traffic there; which of that traffic may pass is decided in `ip berth`'s forward
/// chain. Rules are added with the `iptables` binary, so the table stays in the format
/// iptables-nft (and docker, and podman) can read. Nothing is added when iptables is
/// missing or has no filter table.
pub fn iptables_compat(bridge: &str) -> Result<(), Error> {
    let list = Command::new("iptables")
        .args(["-w", "-S", "FORWARD"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(list, Ok(s) if s.success()) {
        return Ok(());
    }
    let comment = format!("berth: {bridge} is filtered in table ip berth");
    for dir in ["-i", "-o"] {
        let spec = [
            "FORWARD",
            dir,
            bridge,
            "-m",
            "comment",
            "--comment",
            &comment,
            "-j",
            "ACCEPT",
        ];
        let present = Command::new("iptables")
            .arg("-w")
            .arg("-C")
            .args(spec)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if present {
            continue;
        }
        let out = Command::new("iptables")
            .arg("-w")
            .arg("-A")
            .args(spec)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::Firewall {
                what: "adding berth's rules to iptables' FORWARD chain".into(),
                reason: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(Error::Firewall {
                what: "adding berth's rules to iptables' FORWARD chain".into(),
                reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
    }
    Ok(())
}

/// Removes the rules [`iptables_compat`] added for `bridge` (a network being removed).
pub fn iptables_compat_remove(bridge: &str) {
    let comment = format!("berth: {bridge} is filtered in table ip berth");
    for dir in ["-i", "-o"] {
        // Deleting twice would fail harmlessly; one rule each was appended.
        let _ = Command::new("iptables")
            .args([
                "-w",
                "-D",
                "FORWARD",
                dir,
                bridge,
                "-m",
                "comment",
                "--comment",
                &comment,
                "-j",
                "ACCEPT",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::Proto;

    #[test]
    fn batches_name_the_container_chain() {
        let b = PortBinding {
            proto: Proto::Tcp,
            host_ip: Ipv4Addr::UNSPECIFIED,
            host_port: 8080,
            container_port: 80,
        };
        let e = element("0123456789abcdef", &[b], true);
        assert_eq!(
            e["element"]["elem"][0][1]["jump"]["target"],
            "c-0123456789ab"
        );
        assert_eq!(e["element"]["elem"][0][0]["concat"][0]["prefix"]["len"], 0);
        let net = |bridge: &str, internal| Net {
            bridge: bridge.into(),
            subnet: Ipv4Addr::new(10, 89, 0, 0),
            prefix: 16,
            internal,
        };
        let base = base(&[net("berth0", false)]);
        assert!(base.iter().any(|v| v.to_string().contains("masquerade")));
        // An internal network gets no outbound masquerade, and a drop out of its bridge.
        let internal = base_rules_for(&net("br-x", true));
        assert!(!internal
            .iter()
            .any(|v| v.to_string().contains("!=") && v.to_string().contains("masquerade")));
        assert!(internal.iter().any(|v| {
            let t = v.to_string();
            t.contains("iifname") && t.contains("!=") && t.contains("drop")
        }));
    }

    fn base_rules_for(n: &Net) -> Vec<Value> {
        net_rules(n)
    }
}
