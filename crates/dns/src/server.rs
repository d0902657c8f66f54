//! The server: a UDP loop, a TCP accept loop, a thread per forwarded UDP query and per
//! TCP connection (both bounded), and the main thread's check whether the server is
//! still wanted.
//!
//! What it answers, in order:
//! - a query that does not parse: FORMERR (or nothing, when even the header is short);
//! - a name of a container with an address on the network (its name, short id,
//!   hostname or a `--network-alias`, any case): its A records, authoritative; AAAA and
//!   other types get an empty NOERROR (the name exists, with no such record);
//! - PTR for an address of the network's subnet: the container's name, or NXDOMAIN;
//! - any other single-label name: NXDOMAIN (it could only have been a container's, and
//!   the host's resolvers have no business with it);
//! - anything else is forwarded verbatim to the network's `--dns` servers or else the
//!   host's resolvers (127.x ones included: the server runs in the host's namespace),
//!   and their answer relayed; an `--internal` network forwards nothing (REFUSED), so
//!   its DNS server is no way out of it.

use crate::NetworkInfo;
use dns::message::{self, Name, Query, Rcode, Record, Rejected};
use network::state::State;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Answers about containers are not to be cached: containers come and go.
const TTL: u32 = 0;
const MAX_FORWARDS: usize = 64;
const MAX_TCP: usize = 32;
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
const TCP_IDLE: Duration = Duration::from_secs(10);
const CHECK_EVERY: Duration = Duration::from_secs(2);

pub struct Server {
    net: NetworkInfo,
    dir: PathBuf,
    db: Mutex<State>,
    forwards: AtomicUsize,
    connections: AtomicUsize,
}

/// What to do with a message.
enum Action {
    Reply(Vec<u8>),
    Forward(Query),
    Drop,
}

impl Server {
    pub fn new(net: NetworkInfo, dir: PathBuf, db: State) -> Arc<Server> {
        Arc::new(Server {
            net,
            dir,
            db: Mutex::new(db),
            forwards: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
        })
    }

    /// Serves until the network no longer wants a server; the exit code.
    pub fn run(self: Arc<Self>, udp: UdpSocket, tcp: TcpListener) -> i32 {
        let udp = Arc::new(udp);
        let s = self.clone();
        let u = udp.clone();
        if std::thread::Builder::new()
            .name("udp".into())
            .spawn(move || s.serve_udp(u))
            .is_err()
        {
            return 1;
        }
        let s = self.clone();
        if std::thread::Builder::new()
            .name("tcp".into())
            .spawn(move || s.serve_tcp(tcp))
            .is_err()
        {
            return 1;
        }
        loop {
            std::thread::sleep(CHECK_EVERY);
            if !self.still_wanted() {
                return 0;
            }
        }
    }

    /// Under the lock that starts and stops servers: the network still exists, has an
    /// address leased, and its pid file names this process. When not, the pid file is
    /// removed (if ours) before the lock is let go.
    fn still_wanted(&self) -> bool {
        let Ok(_lock) = network::dns::lock(&self.dir) else {
            return true;
        };
        let me = std::process::id() as i32;
        let ours = network::dns::running(&self.dir, &self.net.id) == Some(me);
        let wanted = {
            let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
            match (db.def_by_id(&self.net.id), db.lease_count(&self.net.name)) {
                (Ok(def), Ok(n)) => def.is_some() && n > 0,
                // The database cannot be read right now: keep serving, ask again later.
                _ => true,
            }
        };
        if ours && !wanted {
            let _ = std::fs::remove_file(network::dns::pid_file(&self.dir, &self.net.id));
        }
        ours && wanted
    }

    fn serve_udp(self: Arc<Self>, udp: Arc<UdpSocket>) {
        let mut buf = [0u8; 4096];
        loop {
            let (n, from) = match udp.recv_from(&mut buf) {
                Ok(x) => x,
                Err(_) => {
                    // Never a busy loop, whatever the error.
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            match self.decide(&buf[..n], from.ip(), message::UDP_LIMIT) {
                Action::Reply(r) => {
                    let _ = udp.send_to(&r, from);
                }
                Action::Drop => {}
                Action::Forward(q) => {
                    if self.forwards.fetch_add(1, Ordering::SeqCst) >= MAX_FORWARDS {
                        self.forwards.fetch_sub(1, Ordering::SeqCst);
                        let _ = udp.send_to(&servfail(&q), from);
                        continue;
                    }
                    let msg = buf[..n].to_vec();
                    let (s, u) = (self.clone(), udp.clone());
                    let spawned =
                        std::thread::Builder::new()
                            .name("forward".into())
                            .spawn(move || {
                                let reply = s.forward_udp(&msg).unwrap_or_else(|| servfail(&q));
                                let _ = u.send_to(&reply, from);
                                s.forwards.fetch_sub(1, Ordering::SeqCst);
                            });
                    if spawned.is_err() {
                        self.forwards.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            }
        }
    }

    fn serve_tcp(self: Arc<Self>, tcp: TcpListener) {
        for conn in tcp.incoming() {
            let Ok(conn) = conn else {
                // Out of descriptors, say: wait instead of spinning.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            if self.connections.fetch_add(1, Ordering::SeqCst) >= MAX_TCP {
                self.connections.fetch_sub(1, Ordering::SeqCst);
                continue; // dropped: the client retries
            }
            let s = self.clone();
            let spawned = std::thread::Builder::new()
                .name("conn".into())
                .spawn(move || {
                    s.serve_conn(conn);
                    s.connections.fetch_sub(1, Ordering::SeqCst);
                });
            if spawned.is_err() {
                self.connections.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// Length-prefixed messages (RFC 1035 4.2.2), one after another, until EOF, an
    /// idle timeout or garbage.
    fn serve_conn(&self, mut conn: TcpStream) {
        let _ = conn.set_read_timeout(Some(TCP_IDLE));
        let _ = conn.set_write_timeout(Some(TCP_IDLE));
        let Ok(peer) = conn.peer_addr() else { return };
        while let Some(msg) = read_framed(&mut conn) {
            let reply = match self.decide(&msg, peer.ip(), usize::from(u16::MAX)) {
                Action::Reply(r) => r,
                Action::Drop => return,
                Action::Forward(q) => self.forward_tcp(&msg).unwrap_or_else(|| servfail(&q)),
            };
            if write_framed(&mut conn, &reply).is_err() {
                return;
            }
        }
    }

    fn decide(&self, msg: &[u8], from: IpAddr, limit: usize) -> Action {
        let q = match message::parse_query(msg) {
            Ok(q) => q,
            Err(Rejected::Drop) => return Action::Drop,
            Err(Rejected::Reply { id, flags, rcode }) => {
                return Action::Reply(message::bare_response(id, flags, rcode))
            }
        };
        if !may_ask(&self.net, from) {
            return Action::Reply(message::response(
                &q,
                Rcode::Refused,
                false,
                &[],
                TTL,
                limit,
            ));
        }
        let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        let entries = match db.dns_entries(&self.net.name) {
            Ok(e) => e,
            Err(_) => return Action::Reply(servfail(&q)),
        };
        drop(db);
        match answer(&self.net, &entries, &q, limit) {
            Some(reply) => Action::Reply(reply),
            None if self.net.internal => Action::Reply(message::response(
                &q,
                Rcode::Refused,
                false,
                &[],
                TTL,
                limit,
            )),
            None => Action::Forward(q),
        }
    }

    /// The network's `--dns` servers, else the host's resolvers; never ourselves.
    fn upstreams(&self) -> Vec<SocketAddr> {
        let configured = {
            let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
            db.def_by_id(&self.net.id)
                .ok()
                .flatten()
                .map(|d| d.dns)
                .unwrap_or_default()
        };
        let list: Vec<String> = if configured.is_empty() {
            let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            host_resolvers(&conf)
        } else {
            configured
        };
        let me = SocketAddr::from((self.net.gateway, 53));
        list.iter()
            .filter_map(|s| s.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
            .filter(|a| *a != me)
            .take(3)
            .collect()
    }

    /// The first answer of an upstream, tried in turn.
    fn forward_udp(&self, msg: &[u8]) -> Option<Vec<u8>> {
        let id = message::id_of(msg)?;
        for up in self.upstreams() {
            let local: SocketAddr = if up.is_ipv4() {
                (Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let Ok(sock) = UdpSocket::bind(local) else {
                continue;
            };
            if sock.connect(up).is_err()
                || sock.set_read_timeout(Some(UPSTREAM_TIMEOUT)).is_err()
                || sock.send(msg).is_err()
            {
                continue;
            }
            let mut buf = vec![0u8; 65535];
            // A connected socket only hears from `up`; a reply must carry our id, and
            // replies with other ids do not extend the wait.
            let deadline = std::time::Instant::now() + UPSTREAM_TIMEOUT;
            while let Ok(n) = sock.recv(&mut buf) {
                if message::id_of(&buf[..n]) == Some(id) && n >= message::HEADER_LEN {
                    buf.truncate(n);
                    return Some(buf);
                }
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() || sock.set_read_timeout(Some(left)).is_err() {
                    break;
                }
            }
        }
        None
    }

    fn forward_tcp(&self, msg: &[u8]) -> Option<Vec<u8>> {
        let id = message::id_of(msg)?;
        for up in self.upstreams() {
            let Ok(mut s) = TcpStream::connect_timeout(&up, UPSTREAM_TIMEOUT) else {
                continue;
            };
            let _ = s.set_read_timeout(Some(UPSTREAM_TIMEOUT));
            let _ = s.set_write_timeout(Some(UPSTREAM_TIMEOUT));
            if write_framed(&mut s, msg).is_err() {
                continue;
            }
            if let Some(reply) = read_framed(&mut s) {
                if message::id_of(&reply) == Some(id) && reply.len() >= message::HEADER_LEN {
                    return Some(reply);
                }
            }
        }
        None
    }
}

/// Who may ask: the network's own containers, and the host itself (whose queries to the
/// gateway come from any of its addresses, usually its main one). The gateway is
/// reachable from every network's containers through the host, and networks must not
/// learn each other's names: anyone else is refused.
fn may_ask(net: &NetworkInfo, from: IpAddr) -> bool {
    in_network(net, from) || is_host_address(from)
}

fn in_network(net: &NetworkInfo, from: IpAddr) -> bool {
    match from {
        IpAddr::V4(a) => {
            let mask = network::rtnl::prefix_mask(net.prefix);
            a.is_loopback() || u32::from(a) & mask == u32::from(net.subnet)
        }
        IpAddr::V6(a) => a.is_loopback(),
    }
}

/// An address of the host (asked over netlink, so only for sources outside the subnet).
fn is_host_address(from: IpAddr) -> bool {
    let IpAddr::V4(a) = from else {
        return false;
    };
    network::rtnl::Rtnl::open()
        .and_then(|mut r| r.addresses())
        .is_ok_and(|all| all.iter().any(|(_, addr, _)| *addr == a))
}

fn servfail(q: &Query) -> Vec<u8> {
    message::response(q, Rcode::ServFail, false, &[], TTL, message::UDP_LIMIT)
}

/// The answer from the network's own names, or `None` when the name is not the
/// network's to answer (it is forwarded, or refused on an internal network).
fn answer(
    net: &NetworkInfo,
    entries: &[(Ipv4Addr, Vec<String>)],
    q: &Query,
    limit: usize,
) -> Option<Vec<u8>> {
    let qn = &q.question;
    if qn.qclass != message::CLASS_IN && qn.qclass != message::TYPE_ANY {
        return None;
    }
    let name = qn.name.text()?;
    let reply = |rcode, answers: &[Record]| message::response(q, rcode, true, answers, TTL, limit);
    if qn.qtype == message::TYPE_PTR {
        let addr = reverse_address(&name)?;
        let mask = network::rtnl::prefix_mask(net.prefix);
        if u32::from(addr) & mask != u32::from(net.subnet) {
            return None;
        }
        let names: Vec<Record> = entries
            .iter()
            .filter(|(a, n)| *a == addr && !n.is_empty())
            .map(|(_, n)| Record::Ptr(Name::parse(&n[0])))
            .filter(|r| matches!(r, Record::Ptr(n) if n.is_valid()))
            .collect();
        return Some(if names.is_empty() {
            reply(Rcode::NxDomain, &[])
        } else {
            reply(Rcode::NoError, &names)
        });
    }
    let mut found: Vec<Ipv4Addr> = entries
        .iter()
        .filter(|(_, names)| names.iter().any(|n| n.eq_ignore_ascii_case(&name)))
        .map(|(a, _)| *a)
        .collect();
    if !found.is_empty() {
        // Several containers under one alias: rotate, as Docker does, so clients that
        // take the first address spread over them.
        let turn = usize::from(q.id) % found.len();
        found.rotate_left(turn);
        let answers: Vec<Record> = match qn.qtype {
            message::TYPE_A | message::TYPE_ANY => found.into_iter().map(Record::A).collect(),
            _ => vec![],
        };
        return Some(reply(Rcode::NoError, &answers));
    }
    if !name.is_empty() && !name.contains('.') {
        return Some(reply(Rcode::NxDomain, &[]));
    }
    None
}

/// `4.3.2.1.in-addr.arpa` → 1.2.3.4.
fn reverse_address(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_suffix(".in-addr.arpa")?;
    let parts: Vec<u8> = rest
        .split('.')
        .map(|p| p.parse::<u8>().ok())
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [d, c, b, a] => Some(Ipv4Addr::new(*a, *b, *c, *d)),
        _ => None,
    }
}

/// `nameserver` lines of a resolv.conf, loopback ones included.
fn host_resolvers(conf: &str) -> Vec<String> {
    conf.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next().map(String::from))?
        })
        .collect()
}

fn read_framed(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let len = usize::from(u16::from_be_bytes(len));
    let mut msg = vec![0u8; len];
    s.read_exact(&mut msg).ok()?;
    Some(msg)
}

fn write_framed(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(msg.len()).map_err(|_| std::io::ErrorKind::InvalidData)?;
    let mut out = Vec::with_capacity(msg.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    s.write_all(&out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dns::message::{parse_response, query, TYPE_A, TYPE_AAAA, TYPE_ANY, TYPE_PTR};

    fn net(internal: bool) -> NetworkInfo {
        NetworkInfo {
            id: "x".into(),
            name: "n".into(),
            gateway: Ipv4Addr::new(10, 90, 0, 1),
            subnet: Ipv4Addr::new(10, 90, 0, 0),
            prefix: 16,
            internal,
        }
    }

    fn entries() -> Vec<(Ipv4Addr, Vec<String>)> {
        vec![
            (
                Ipv4Addr::new(10, 90, 0, 2),
                vec!["web".into(), "0123456789ab".into(), "app".into()],
            ),
            (Ipv4Addr::new(10, 90, 0, 3), vec!["db".into(), "app".into()]),
        ]
    }

    fn ask(name: &str, qtype: u16) -> Option<message::Answer> {
        let q = message::parse_query(&query(42, name, qtype)).unwrap();
        answer(&net(false), &entries(), &q, 512).map(|r| parse_response(&r).unwrap())
    }

    #[test]
    fn container_names_ids_and_aliases_resolve_in_any_case() {
        let a = ask("web", TYPE_A).unwrap();
        assert_eq!((a.rcode, a.authoritative), (0, true));
        assert_eq!(a.addresses, [Ipv4Addr::new(10, 90, 0, 2)]);
        assert_eq!(ask("WEB.", TYPE_A).unwrap().addresses.len(), 1);
        assert_eq!(ask("0123456789ab", TYPE_ANY).unwrap().addresses.len(), 1);
        let mut both = ask("app", TYPE_A).unwrap().addresses;
        both.sort();
        assert_eq!(
            both,
            [Ipv4Addr::new(10, 90, 0, 2), Ipv4Addr::new(10, 90, 0, 3)]
        );
        // The name exists, without an IPv6 address.
        let a = ask("db", TYPE_AAAA).unwrap();
        assert_eq!(a.rcode, 0);
        assert!(a.addresses.is_empty());
    }

    #[test]
    fn unknown_bare_names_are_nxdomain_and_others_forwarded() {
        let a = ask("nope", TYPE_A).unwrap();
        assert_eq!((a.rcode, a.authoritative), (3, true));
        assert!(ask("example.org", TYPE_A).is_none());
        assert!(ask("web.example.org", TYPE_A).is_none());
    }

    #[test]
    fn reverse_lookups_inside_the_subnet_only() {
        assert_eq!(
            ask("2.0.90.10.in-addr.arpa", TYPE_PTR).unwrap().names,
            ["web"]
        );
        assert_eq!(ask("9.0.90.10.in-addr.arpa", TYPE_PTR).unwrap().rcode, 3);
        assert!(ask("1.1.1.1.in-addr.arpa", TYPE_PTR).is_none());
        assert!(ask("bogus.in-addr.arpa", TYPE_PTR).is_none());
    }

    #[test]
    fn only_the_networks_own_addresses_and_the_host_may_ask() {
        let n = net(false);
        assert!(in_network(&n, "10.90.3.4".parse().unwrap()));
        assert!(in_network(&n, "10.90.0.1".parse().unwrap()));
        assert!(in_network(&n, "127.0.0.1".parse().unwrap()));
        assert!(!in_network(&n, "10.91.0.2".parse().unwrap()));
        assert!(!may_ask(&n, "192.0.2.123".parse().unwrap()));
        assert!(!may_ask(&n, "2001:db8::1".parse().unwrap()));
        // The host's own addresses may (its loopback is one).
        assert!(is_host_address("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn resolv_conf_servers_are_read_with_loopback_ones() {
        assert_eq!(
            host_resolvers("# x\nnameserver 127.0.0.53\nsearch a\nnameserver 10.0.0.2 \n"),
            ["127.0.0.53", "10.0.0.2"]
        );
    }
}
