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
/// container's own on the bridge, listed in /etc/hosts with its hostname as Docker does.
pub fn write(dir: &Path, c: &Container, address: Option<Ipv4Addr>) -> Result<EtcFiles> {
    let run = &c.options.run;
    let host_net = run.network == NetworkMode::Host;
    let hostname = match (&run.hostname, host_net || run.uts_host) {
        (Some(h), _) => h.clone(),
        (None, true) => nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".into()),
        (None, false) => c.id[..12].to_string(),
    };
    let mut hosts = if host_net {
        std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| HOSTS.to_string())
    } else {
        HOSTS.to_string()
    };
    for (name, addr) in &run.extra_hosts {
        hosts.push_str(&format!("{addr}\t{name}\n"));
    }
    if let Some(addr) = address {
        hosts.push_str(&format!("{addr}\t{hostname}\n"));
    }
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolv = resolv_conf(
        &host_resolv,
        host_net,
        &run.dns,
        &run.dns_search,
        &run.dns_options,
    );

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
}
