//! `-p/--publish`, `--expose` and `-P`: Docker's syntax (go-connections' `nat`
//! package, with its error texts), and the host-side check that a port is free.

use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddrV4};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn parse(s: &str) -> Option<Proto> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" | "" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One container port to publish, as asked for: `host_ports` is `None` for "any free
/// port", or an inclusive range to pick the first free port from (a single port is a
/// range of one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// `0.0.0.0` for every host address.
    pub host_ip: Ipv4Addr,
    pub host_ports: Option<(u16, u16)>,
    pub container_port: u16,
    pub proto: Proto,
}

/// A port as published: what `berth port` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortBinding {
    pub proto: Proto,
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
    pub container_port: u16,
}

impl PortBinding {
    /// Docker's key for the container side: `80/tcp`.
    pub fn private(&self) -> String {
        format!("{}/{}", self.container_port, self.proto.as_str())
    }

    /// Docker's host side: `0.0.0.0:8080`.
    pub fn public(&self) -> String {
        format!("{}:{}", self.host_ip, self.host_port)
    }
}

fn parse_range(s: &str) -> Option<(u16, u16)> {
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (a.parse::<u16>().ok()?, b.parse::<u16>().ok()?),
        None => {
            let p = s.parse::<u16>().ok()?;
            (p, p)
        }
    };
    (lo <= hi).then_some((lo, hi))
}

/// One `-p` value: `[ip:][hostPort:]containerPort[/proto]`, ports or ranges. Ranges of
/// equal length map port by port; a host range with one container port means "the
/// first free port of the range".
pub fn parse_publish(value: &str) -> Result<Vec<PortSpec>, String> {
    let (rest, proto) = match value.rsplit_once('/') {
        Some((r, p)) => (r, p),
        None => (value, "tcp"),
    };
    let proto = match proto {
        "sctp" => return Err(format!("{value}: sctp ports are not supported by berth")),
        p => Proto::parse(p).ok_or_else(|| format!("invalid proto: {p}"))?,
    };
    if rest.starts_with('[') {
        return Err(format!(
            "{value}: publishing on IPv6 addresses is not supported by berth yet"
        ));
    }
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => ("", "", *c),
        [h, c] => ("", *h, *c),
        [ip, h, c] => (*ip, *h, *c),
        _ => return Err(format!("invalid port format for --publish: {value}")),
    };
    let host_ip = if ip.is_empty() {
        Ipv4Addr::UNSPECIFIED
    } else {
        ip.parse::<Ipv4Addr>().map_err(|_| {
            if ip.parse::<std::net::Ipv6Addr>().is_ok() {
                format!("{value}: publishing on IPv6 addresses is not supported by berth yet")
            } else {
                format!("invalid IP address: {ip}")
            }
        })?
    };
    if container.is_empty() {
        return Err(format!("no port specified: {value}<empty>"));
    }
    let (clo, chi) =
        parse_range(container).ok_or_else(|| format!("invalid containerPort: {container}"))?;
    if clo == 0 {
        return Err(format!("invalid containerPort: {container}"));
    }
    let host = if host.is_empty() {
        None
    } else {
        Some(parse_range(host).ok_or_else(|| format!("invalid hostPort: {host}"))?)
    };
    if let Some((hlo, hhi)) = host {
        let clen = chi - clo;
        let hlen = hhi - hlo;
        if clen != 0 && clen != hlen {
            return Err(format!(
                "invalid ranges specified for container and host Ports: {container} and {}",
                parts[parts.len() - 2]
            ));
        }
        if hlo == 0 && hhi != 0 {
            return Err(format!("invalid hostPort: {}", parts[parts.len() - 2]));
        }
    }
    Ok((clo..=chi)
        .enumerate()
        .map(|(i, cport)| PortSpec {
            host_ip,
            host_ports: match host {
                // hostPort 0 is Docker's spelling of "any".
                Some((0, 0)) | None => None,
                Some((hlo, hhi)) if clo == chi => Some((hlo, hhi)),
                Some((hlo, _)) => {
                    let p = hlo + i as u16;
                    Some((p, p))
                }
            },
            container_port: cport,
            proto,
        })
        .collect())
}

/// One `--expose` value, or a key of the image's `ExposedPorts`: `80`, `80/udp`,
/// `8000-8010/tcp`.
pub fn parse_expose(value: &str) -> Result<Vec<(u16, Proto)>, String> {
    let (port, proto) = value.rsplit_once('/').unwrap_or((value, "tcp"));
    let proto = Proto::parse(proto).ok_or_else(|| format!("invalid proto: {proto}"))?;
    let (lo, hi) = parse_range(port)
        .filter(|(lo, _)| *lo > 0)
        .ok_or_else(|| format!("invalid range format for --expose: {value}"))?;
    Ok((lo..=hi).map(|p| (p, proto)).collect())
}

/// Whether nothing on the host holds `ip:port` now: a listening TCP socket or a bound
/// UDP socket there (or on the wildcard) makes our own bind fail.
pub fn host_port_free(proto: Proto, ip: Ipv4Addr, port: u16) -> Result<(), std::io::Error> {
    let addr = SocketAddrV4::new(ip, port);
    match proto {
        // std sets SO_REUSEADDR on listeners, so connections in TIME_WAIT do not count;
        // a socket that listens does.
        Proto::Tcp => std::net::TcpListener::bind(addr).map(drop),
        Proto::Udp => std::net::UdpSocket::bind(addr).map(drop),
    }
}

/// The kernel's ephemeral range, where Docker also picks ports for `-P`.
pub fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .filter(|(lo, hi)| lo <= hi)
        .unwrap_or((32768, 60999))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ip: [u8; 4], host: Option<(u16, u16)>, c: u16, proto: Proto) -> PortSpec {
        PortSpec {
            host_ip: Ipv4Addr::from(ip),
            host_ports: host,
            container_port: c,
            proto,
        }
    }

    #[test]
    fn publish_syntax() {
        assert_eq!(
            parse_publish("8080:80").unwrap(),
            [spec([0; 4], Some((8080, 8080)), 80, Proto::Tcp)]
        );
        assert_eq!(
            parse_publish("127.0.0.1:53:53/udp").unwrap(),
            [spec([127, 0, 0, 1], Some((53, 53)), 53, Proto::Udp)]
        );
        assert_eq!(
            parse_publish("127.0.0.1::80").unwrap(),
            [spec([127, 0, 0, 1], None, 80, Proto::Tcp)]
        );
        assert_eq!(
            parse_publish("80").unwrap(),
            [spec([0; 4], None, 80, Proto::Tcp)]
        );
        assert_eq!(
            parse_publish("9000-9001:90-91").unwrap(),
            [
                spec([0; 4], Some((9000, 9000)), 90, Proto::Tcp),
                spec([0; 4], Some((9001, 9001)), 91, Proto::Tcp)
            ]
        );
        assert_eq!(
            parse_publish("9000-9010:90").unwrap(),
            [spec([0; 4], Some((9000, 9010)), 90, Proto::Tcp)]
        );
        assert_eq!(
            parse_publish("0:80").unwrap(),
            [spec([0; 4], None, 80, Proto::Tcp)]
        );
    }

    #[test]
    fn publish_errors_are_dockers() {
        for (v, e) in [
            ("8080:http", "invalid containerPort: http"),
            ("x:80", "invalid hostPort: x"),
            ("1.2.3:8080:80", "invalid IP address: 1.2.3"),
            ("8080:80/icmp", "invalid proto: icmp"),
            (
                "9000-9002:90-91",
                "invalid ranges specified for container and host Ports: 90-91 and 9000-9002",
            ),
            ("1:2:3:4", "invalid port format for --publish: 1:2:3:4"),
            ("70000:80", "invalid hostPort: 70000"),
        ] {
            assert_eq!(parse_publish(v).unwrap_err(), e, "{v}");
        }
        assert!(parse_publish("[::1]:80:80").unwrap_err().contains("IPv6"));
    }

    #[test]
    fn expose_syntax() {
        assert_eq!(parse_expose("80").unwrap(), [(80, Proto::Tcp)]);
        assert_eq!(
            parse_expose("53-54/udp").unwrap(),
            [(53, Proto::Udp), (54, Proto::Udp)]
        );
        assert!(parse_expose("x").is_err());
    }

    #[test]
    fn bindings_print_like_docker() {
        let b = PortBinding {
            proto: Proto::Udp,
            host_ip: Ipv4Addr::UNSPECIFIED,
            host_port: 5353,
            container_port: 53,
        };
        assert_eq!(
            (b.private(), b.public()),
            ("53/udp".into(), "0.0.0.0:5353".into())
        );
    }
}
