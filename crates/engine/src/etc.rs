//! The per-container `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` Docker writes
//! and binds over the image's.

use crate::container::{EngineError, Result};
use crate::flags::NetworkMode;
use crate::spec::EtcFiles;
use crate::store::Container;
use std::net::Ipv4Addr;
use std::path::Path;

const HOSTS: &str = "127.0.0.1\tlocalhost\n\
::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\n\
ff00::0\tip6-mcastprefix\n\
ff02::1\tip6-allnodes\n\
ff02::2\tip6-allrouters\n";

/// Docker's fallback when the host has only loopback name servers (which would not
/// answer inside the container's own network namespace).
const DEFAULT_NAMESERVERS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// Writes the three files into the container's directory `dir`; `address` is the
/// container's own on the bridge, listed in /etc/hosts with its hostname as Docker does;
/// `dns` the address of its network's DNS server (user networks).
pub fn write(
    dir: &Path,
    c: &Container,
    addresses: &[Ipv4Addr],
    dns: Option<Ipv4Addr>,
) -> Result<EtcFiles> {
    let run = &c.options.run;
    let host_net = run.network == NetworkMode::Host;
    let hostname = hostname(c);
    let hosts = hosts_text(c, addresses);
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolv = match dns {
        // `--dns` names other servers: those are asked (Podman's way; Docker would still
        // ask its embedded server and have it forward there).
        Some(server) if run.dns.is_empty() => {
            embedded_resolv_conf(&host_resolv, server, &run.dns_search, &run.dns_options)
        }
        _ => resolv_conf(
            &host_resolv,
            host_net,
            &run.dns,
            &run.dns_search,
            &run.dns_options,
        ),
    };

    let files = EtcFiles {
        hostname: Some(dir.join("hostname")),
        hosts: Some(dir.join("hosts")),
        resolv_conf: Some(dir.join("resolv.conf")),
    };
    for (path, text) in [
        (&files.hostname, format!("{hostname}\n")),
        (&files.hosts, hosts),
        (&files.resolv_conf, resolv),
    ] {
        let path = path
            .as_ref()
            .ok_or_else(|| EngineError::Other("no path".into()))?;
        crate::container::write_atomic(path, text.as_bytes())?;
    }
    Ok(files)
}

fn hostname(c: &Container) -> String {
    let run = &c.options.run;
    match (
        &run.hostname,
        run.network == NetworkMode::Host || run.uts_host,
    ) {
        (Some(h), _) => h.clone(),
        (None, true) => nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".into()),
        (None, false) => c.id[..12].to_string(),
    }
}

/// /etc/hosts: Docker's base (the host's with `--network host`), `--add-host`, and a
/// line with the hostname for each of the container's addresses.
fn hosts_text(c: &Container, addresses: &[Ipv4Addr]) -> String {
    let run = &c.options.run;
    let mut hosts = if run.network == NetworkMode::Host {
        std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| HOSTS.to_string())
    } else {
        HOSTS.to_string()
    };
    for (name, addr) in &run.extra_hosts {
        hosts.push_str(&format!("{addr}\t{name}\n"));
    }
    let hostname = hostname(c);
    for addr in addresses {
        hosts.push_str(&format!("{addr}\t{hostname}\n"));
    }
    hosts
}

/// Rewrites a running container's /etc/hosts for `addresses` in place: the file is
/// bind-mounted into the container, so replacing it would not be seen there.
pub fn rewrite_hosts(dir: &Path, c: &Container, addresses: &[Ipv4Addr]) -> Result<()> {
    use std::io::Write;
    let path = dir.join("hosts");
    let text = hosts_text(c, addresses);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .map_err(|source| EngineError::Io {
            what: "writing",
            path: path.clone(),
            source,
        })?;
    f.write_all(text.as_bytes())
        .map_err(|source| EngineError::Io {
            what: "writing",
            path,
            source,
        })
}

/// The container's resolv.conf from the host's: loopback name servers dropped unless the
/// container shares the host's network; `--dns*` replace what they name.
fn resolv_conf(
    host: &str,
    host_net: bool,
    dns: &[String],
    search: &[String],
    options: &[String],
) -> String {
    let mut servers: Vec<String> = Vec::new();
    let mut host_search: Vec<String> = Vec::new();
    let mut host_options: Vec<String> = Vec::new();
    for line in host.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(s) = words.next() {
                    let loopback = s
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                    if host_net || !loopback {
                        servers.push(s.to_string());
                    }
                }
            }
            Some("search") | Some("domain") => host_search = words.map(String::from).collect(),
            Some("options") => host_options.extend(words.map(String::from)),
            _ => {}
        }
    }
    if !dns.is_empty() {
        servers = dns.to_vec();
    } else if servers.is_empty() {
        servers = DEFAULT_NAMESERVERS.iter().map(|s| s.to_string()).collect();
    }
    let search = if search.is_empty() {
        host_search
    } else {
        search.to_vec()
    };
    let options = if options.is_empty() {
        host_options
    } else {
        options.to_vec()
    };
    let mut out = String::new();
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !search.is_empty() && search != ["."] {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

/// The resolv.conf of a container on a user network: the network's DNS server only
/// (it forwards what is not a container's name), the host's (or `--dns-search`'s)
/// search domains, and Docker's `ndots:0` unless an `ndots` is given, so a bare name is
/// asked as it is before any search domain is tried on the host's resolvers.
fn embedded_resolv_conf(
    host: &str,
    server: Ipv4Addr,
    search: &[String],
    options: &[String],
) -> String {
    let base = resolv_conf(host, false, &[server.to_string()], search, options);
    let mut out = String::new();
    let mut has_options = false;
    for line in base.lines() {
        if let Some(opts) = line.strip_prefix("options ") {
            has_options = true;
            if opts.split_whitespace().any(|o| o.starts_with("ndots:")) {
                out.push_str(&format!("{line}\n"));
            } else {
                out.push_str(&format!("options ndots:0 {opts}\n"));
            }
        } else {
            out.push_str(&format!("{line}\n"));
        }
    }
    if !has_options {
        out.push_str("options ndots:0\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_like_docker() {
        let host =
            "nameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch corp.example\noptions edns0\n";
        assert_eq!(
            resolv_conf(host, false, &[], &[], &[]),
            "nameserver 10.0.0.2\nsearch corp.example\noptions edns0\n"
        );
        assert_eq!(
            resolv_conf("nameserver 127.0.0.53\n", false, &[], &[], &[]),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(
            resolv_conf("nameserver 127.0.0.53\n", true, &[], &[], &[]),
            "nameserver 127.0.0.53\n"
        );
        assert_eq!(
            resolv_conf(
                host,
                false,
                &["1.1.1.1".into()],
                &["a.b".into()],
                &["ndots:2".into()]
            ),
            "nameserver 1.1.1.1\nsearch a.b\noptions ndots:2\n"
        );
    }

    #[test]
    fn a_user_network_asks_its_gateway_with_docker_ndots() {
        let gw = Ipv4Addr::new(10, 90, 0, 1);
        let host =
            "nameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch corp.example\noptions edns0\n";
        assert_eq!(
            embedded_resolv_conf(host, gw, &[], &[]),
            "nameserver 10.90.0.1\nsearch corp.example\noptions ndots:0 edns0\n"
        );
        assert_eq!(
            embedded_resolv_conf("nameserver 10.0.0.2\n", gw, &[], &[]),
            "nameserver 10.90.0.1\noptions ndots:0\n"
        );
        assert_eq!(
            embedded_resolv_conf(host, gw, &[], &["ndots:3".into()]),
            "nameserver 10.90.0.1\nsearch corp.example\noptions ndots:3\n"
        );
    }
}
