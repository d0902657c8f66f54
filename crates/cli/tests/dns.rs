//! The embedded DNS server of user networks (`berth-dns`): containers reach each other
//! by name (TCP, busybox `nc` and `httpd`) on their network and not across networks;
//! unknown names are NXDOMAIN; other names are forwarded to the network's `--dns`
//! server (a responder this test runs on a 127.x address of its own); the server stands
//! hostile packets; it starts with the first container, stops with the last and with
//! `network rm`, and never answers with a removed container's address.
//!
//! Traffic goes only to 127.0.0.0/8 and to addresses on the test's own networks.
//! Networks are the host's, shared with every test running now: names carry the pid,
//! subnets are chosen by berth, the upstream address is 127.53.<pid % 250>.<n>.

mod support;

use dns::message::{self, parse_response, query, TYPE_A, TYPE_AAAA};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::{wait_for, Berth};

/// Removes the test's containers and networks when it fails half-way (networks are the
/// host's).
struct Nets<'a>(&'a Berth, Vec<String>);

impl Drop for Nets<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let ids = self.0.code(&["ps", "-aq", "--no-trunc"]).1;
        let ids: Vec<&str> = ids.lines().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            let _ = self.0.code(&args);
        }
        for n in &self.1 {
            let _ = self.0.code(&["network", "rm", n]);
        }
    }
}

fn net_inspect(b: &Berth, name: &str, template: &str) -> String {
    b.ok(&["network", "inspect", "-f", template, name])
        .trim()
        .to_string()
}

fn gateway_of(b: &Berth, name: &str) -> Ipv4Addr {
    let v: serde_json::Value =
        serde_json::from_str(&net_inspect(b, name, "{{json .IPAM.Config}}")).unwrap();
    v[0]["Gateway"].as_str().unwrap().parse().unwrap()
}

/// Pids of `berth-dns` processes serving network `id` (zombies do not count).
fn servers(id: &str) -> Vec<i32> {
    let ps = Command::new("ps")
        .args(["-eo", "pid,stat,args"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|l| l.contains("berth-dns") && l.contains(id))
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|s| !s.contains('Z'))
        })
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

fn assert_no_server(id: &str) {
    wait_for(&format!("the DNS server of {id:.12} to go"), || {
        servers(id).is_empty()
    });
    assert!(
        !std::path::Path::new(engine::network::STATE_DIR)
            .join("dns")
            .join(id)
            .exists(),
        "pid file of {id:.12} left"
    );
}

/// A detached busybox httpd serving `body`.
fn httpd(b: &Berth, extra: &[&str], body: &str) -> String {
    let script =
        format!("mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 80 -h /www");
    let mut args = vec!["run", "-d"];
    args.extend_from_slice(extra);
    args.extend(["bb:1", "sh", "-c", &script]);
    b.ok(&args).trim().to_string()
}

/// A shell line that GETs `/index.html` from `host` (a name) with busybox nc, retrying
/// while the server starts; prints the body or `unreachable`.
fn get_by_name(host: &str) -> String {
    format!(
        "(for i in $(seq 30); do \
           printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {host} 80 2>&1 | grep hello && exit 0; \
           sleep 0.1; done; echo unreachable)"
    )
}

/// Asks `server` over UDP; the parsed answer.
fn ask_udp(server: Ipv4Addr, name: &str, qtype: u16) -> message::Answer {
    let s = UdpSocket::bind("0.0.0.0:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let id = (std::process::id() & 0xffff) as u16;
    s.send_to(&query(id, name, qtype), (server, 53)).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.recv(&mut buf).expect("an answer over UDP");
    let a = parse_response(&buf[..n]).expect("a well-formed answer");
    assert_eq!(a.id, id);
    a
}

/// Asks `server` over TCP (two queries on one connection, as RFC 7766 allows).
fn ask_tcp(server: Ipv4Addr, names: &[&str]) -> Vec<message::Answer> {
    let mut s = TcpStream::connect_timeout(&SocketAddr::from((server, 53)), Duration::from_secs(5))
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let q = query(i as u16 + 1, name, TYPE_A);
            let mut framed = (q.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&q);
            s.write_all(&framed).unwrap();
            let mut len = [0u8; 2];
            s.read_exact(&mut len).unwrap();
            let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
            s.read_exact(&mut msg).unwrap();
            parse_response(&msg).unwrap()
        })
        .collect()
}

#[test]
fn containers_on_a_user_network_find_each_other_by_name_and_not_across_networks() {
    let b = Berth::with_busybox();
    let pid = std::process::id();
    let front = format!("dns-front-{pid}");
    let back = format!("dns-back-{pid}");
    let _nets = Nets(&b, vec![front.clone(), back.clone()]);
    let front_id = b.ok(&["network", "create", &front]).trim().to_string();
    let back_id = b.ok(&["network", "create", &back]).trim().to_string();
    let gateway = gateway_of(&b, &front);
    // No container, no server.
    assert!(servers(&front_id).is_empty());

    // Port 53 of the gateway taken: the start fails in one line and undoes its network
    // (lease, veth, namespace); only the created container stays, as with Docker.
    let squatter = UdpSocket::bind((gateway, 53)).unwrap();
    let (code, _, err) = b.code(&["run", "-d", "--network", &front, "bb:1", "true"]);
    assert_eq!(code, 125, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("DNS server for network") && err.contains(":53"),
        "{err}"
    );
    drop(squatter);
    let state =
        engine::network::state::State::open(std::path::Path::new(engine::network::STATE_DIR))
            .unwrap();
    assert!(
        !state.leases().unwrap().iter().any(|l| l.root == b.root()),
        "a lease is left"
    );
    assert!(servers(&front_id).is_empty());
    let left = b.ok(&["ps", "-aq", "--no-trunc"]);
    assert_eq!(left.lines().count(), 1, "{left}");
    let veth = format!("vb{}", &left[..12]);
    wait_for("the failed start's veth to go", || {
        let links = Command::new("ip").args(["-br", "link"]).output().unwrap();
        !String::from_utf8_lossy(&links.stdout).contains(&veth)
    });
    b.ok(&["rm", left.trim()]);

    let web = format!("web-{pid}");
    let web_id = httpd(
        &b,
        &["--network", &front, "--name", &web, "--hostname", "www"],
        "hello-by-name",
    );
    let web_ip: Ipv4Addr = b
        .ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &web])
        .trim()
        .parse()
        .unwrap();
    // The first container started the network's server, which outlived `run -d`; the
    // other network has none.
    assert_eq!(servers(&front_id).len(), 1);
    assert!(servers(&back_id).is_empty());

    // By name, short id and hostname, over TCP with nc; resolv.conf names the gateway.
    let script = format!(
        "cat /etc/resolv.conf; {} ; {} ; {}",
        get_by_name(&web),
        get_by_name(&web_id[..12]),
        get_by_name("www")
    );
    let out = b.ok(&[
        "run",
        "--rm",
        "--network",
        &front,
        "bb:1",
        "sh",
        "-c",
        &script,
    ]);
    assert!(out.contains(&format!("nameserver {gateway}\n")), "{out}");
    assert!(out.contains("options ndots:0"), "{out}");
    assert_eq!(out.matches("hello-by-name").count(), 3, "{out}");
    assert!(!out.contains("unreachable"), "{out}");

    // nslookup: the address, any case; an unknown name is NXDOMAIN; AAAA is empty.
    let out = b.ok(&[
        "run",
        "--rm",
        "--network",
        &front,
        "bb:1",
        "sh",
        "-c",
        &format!(
            "nslookup {}; nslookup no-such-{pid}; nslookup -type=AAAA {web}; true",
            web.to_uppercase()
        ),
    ]);
    assert!(out.contains(&format!("Address: {web_ip}")), "{out}");
    assert!(
        out.contains(&format!("can't find no-such-{pid}: NXDOMAIN")),
        "{out}"
    );
    assert!(!out.contains("::"), "no IPv6 address: {out}");

    // From the other user network and from the default bridge, the name is unknown.
    // (The default bridge's resolvers are the host's, out of reach here: a loopback
    // one of the container's own namespace fails at once instead of timing out.)
    for extra in [vec!["--network", back.as_str()], vec!["--dns", "127.0.0.1"]] {
        let mut args = vec!["run", "--rm"];
        args.extend(extra.iter().copied());
        let probe = format!("nslookup {web} 2>&1; {}", get_by_name(&web));
        args.extend(["bb:1", "sh", "-c", &probe]);
        let out = b.ok(&args);
        assert!(!out.contains("hello-by-name"), "{extra:?}: {out}");
        assert!(!out.contains(&web_ip.to_string()), "{extra:?}: {out}");
        assert!(out.contains("unreachable"), "{extra:?}: {out}");
    }
    // `back`'s containers reach `front`'s gateway through the host, but its server
    // refuses them: networks do not learn each other's names.
    let out = b.ok(&[
        "run",
        "--rm",
        "--network",
        &back,
        "bb:1",
        "sh",
        "-c",
        &format!("nslookup {web} {gateway} 2>&1; true"),
    ]);
    assert!(out.contains("REFUSED"), "{out}");
    assert!(!out.contains(&web_ip.to_string()), "{out}");
    // Starting a container on `back` started its server; it stops with that container.
    assert_no_server(&back_id);

    // Removed: the name is gone at once (never a stale address), and a new container
    // under the name is found at its own address.
    b.ok(&["rm", "-f", &web]);
    assert_no_server(&front_id);
    let keep = b
        .ok(&["run", "-d", "--network", &front, "bb:1", "sleep", "1000"])
        .trim()
        .to_string();
    let a = ask_udp(gateway, &web, TYPE_A);
    assert_eq!((a.rcode, a.addresses.len()), (3, 0), "{a:?}");
    let web2 = httpd(&b, &["--network", &front, "--name", &web], "hello-again");
    let ip2: Ipv4Addr = b
        .ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &web2])
        .trim()
        .parse()
        .unwrap();
    assert_ne!(ip2, web_ip);
    assert_eq!(ask_udp(gateway, &web, TYPE_A).addresses, [ip2]);
    let out = b.ok(&[
        "run",
        "--rm",
        "--network",
        &front,
        "bb:1",
        "sh",
        "-c",
        &get_by_name(&web),
    ]);
    assert!(out.contains("hello-again"), "{out}");
    // A stopped container's name goes too, and comes back with its start.
    b.ok(&["stop", "-t", "0", &web2]);
    assert_eq!(ask_udp(gateway, &web, TYPE_A).rcode, 3);
    b.ok(&["start", &web2]);
    let ip3: Ipv4Addr = b
        .ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &web2])
        .trim()
        .parse()
        .unwrap();
    assert_eq!(ask_udp(gateway, &web, TYPE_A).addresses, [ip3]);
    // Renamed: the new name is answered, the old one no longer.
    let renamed = format!("renamed-{pid}");
    b.ok(&["rename", &web, &renamed]);
    assert_eq!(ask_udp(gateway, &renamed, TYPE_A).addresses, [ip3]);
    assert_eq!(ask_udp(gateway, &web, TYPE_A).rcode, 3);

    // One server for the network, whatever came and went; none once it is empty, and
    // none after `network rm`.
    assert_eq!(servers(&front_id).len(), 1);
    b.ok(&["rm", "-f", &web2]);
    assert_eq!(servers(&front_id).len(), 1, "one container is left");
    b.ok(&["rm", "-f", &keep]);
    assert_no_server(&front_id);
    b.ok(&["network", "rm", &front, &back]);
    assert_no_server(&front_id);
    assert_no_server(&back_id);
    b.assert_nothing_left();
}

/// A name server on `addr`:53 (UDP and TCP) that answers `*.example.test` with
/// 192.0.2.7, `missing.example.test` with NXDOMAIN, and counts what it was asked.
struct Upstream {
    stop: Arc<AtomicBool>,
    asked: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Upstream {
    fn start(addr: Ipv4Addr) -> Upstream {
        let stop = Arc::new(AtomicBool::new(false));
        let asked = Arc::new(AtomicUsize::new(0));
        let answer = |msg: &[u8]| -> Option<Vec<u8>> {
            let q = message::parse_query(msg).ok()?;
            let name = q.question.name.text()?;
            let (rcode, answers) = if name == "missing.example.test" {
                (message::Rcode::NxDomain, vec![])
            } else if name.ends_with(".example.test") && q.question.qtype == TYPE_A {
                (
                    message::Rcode::NoError,
                    vec![message::Record::A(Ipv4Addr::new(192, 0, 2, 7))],
                )
            } else {
                (message::Rcode::NoError, vec![])
            };
            Some(message::response(&q, rcode, false, &answers, 60, 512))
        };
        let udp = UdpSocket::bind((addr, 53)).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let tcp = TcpListener::bind((addr, 53)).unwrap();
        tcp.set_nonblocking(true).unwrap();
        let (s1, a1) = (stop.clone(), asked.clone());
        let t1 = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !s1.load(Ordering::SeqCst) {
                if let Ok((n, from)) = udp.recv_from(&mut buf) {
                    a1.fetch_add(1, Ordering::SeqCst);
                    if let Some(r) = answer(&buf[..n]) {
                        let _ = udp.send_to(&r, from);
                    }
                }
            }
        });
        let (s2, a2) = (stop.clone(), asked.clone());
        let t2 = std::thread::spawn(move || {
            while !s2.load(Ordering::SeqCst) {
                let Ok((mut c, _)) = tcp.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                c.set_nonblocking(false).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut len = [0u8; 2];
                if c.read_exact(&mut len).is_err() {
                    continue;
                }
                let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
                if c.read_exact(&mut msg).is_err() {
                    continue;
                }
                a2.fetch_add(1, Ordering::SeqCst);
                if let Some(r) = answer(&msg) {
                    let mut out = (r.len() as u16).to_be_bytes().to_vec();
                    out.extend_from_slice(&r);
                    let _ = c.write_all(&out);
                }
            }
        });
        Upstream {
            stop,
            asked,
            threads: vec![t1, t2],
        }
    }

    fn asked(&self) -> usize {
        self.asked.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn other_names_are_forwarded_to_the_networks_dns_and_hostile_packets_change_nothing() {
    let b = Berth::with_busybox();
    let pid = std::process::id();
    let up_addr = Ipv4Addr::new(127, 53, (pid % 250) as u8, 1);
    let upstream = Upstream::start(up_addr);
    let open = format!("dns-fwd-{pid}");
    let closed = format!("dns-int-{pid}");
    let _nets = Nets(
        &b,
        vec![open.clone(), closed.clone(), format!("dns-fg-{pid}")],
    );
    let up = up_addr.to_string();
    let open_id = b
        .ok(&["network", "create", "--dns", &up, &open])
        .trim()
        .to_string();
    b.ok(&["network", "create", "--internal", "--dns", &up, &closed]);
    let (code, _, err) = b.code(&["network", "create", "--dns", "nope", &format!("x-{pid}")]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "Error response from daemon: invalid DNS server address: nope\n"
    );
    let gateway = gateway_of(&b, &open);

    let name = format!("peer-{pid}");
    let peer = b
        .ok(&[
            "run",
            "-d",
            "--network",
            &open,
            "--name",
            &name,
            "bb:1",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    let peer_ip: Ipv4Addr = b
        .ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &peer])
        .trim()
        .parse()
        .unwrap();

    // From a container: forwarded names come back from the upstream, NXDOMAIN included.
    let out = b.ok(&[
        "run",
        "--rm",
        "--network",
        &open,
        "bb:1",
        "sh",
        "-c",
        "nslookup outside.example.test; nslookup missing.example.test; true",
    ]);
    assert!(out.contains("Address: 192.0.2.7"), "{out}");
    assert!(
        out.contains("can't find missing.example.test: NXDOMAIN"),
        "{out}"
    );
    assert!(upstream.asked() >= 2);

    // From the host to the gateway: UDP and TCP, forwarded over each.
    let a = ask_udp(gateway, "over-udp.example.test", TYPE_A);
    assert_eq!(a.addresses, [Ipv4Addr::new(192, 0, 2, 7)]);
    // As the upstream gave it (not authoritative), where local answers are.
    assert!(!a.authoritative, "{a:?}");
    let answers = ask_tcp(gateway, &[&name, "over-tcp.example.test"]);
    assert_eq!(answers[0].addresses, [peer_ip]);
    assert!(answers[0].authoritative);
    assert_eq!(answers[1].addresses, [Ipv4Addr::new(192, 0, 2, 7)]);
    // A PTR for the peer's address gives its name.
    let rev = peer_ip.octets();
    let ptr = format!("{}.{}.{}.{}.in-addr.arpa", rev[3], rev[2], rev[1], rev[0]);
    assert_eq!(ask_udp(gateway, &ptr, 12).names, [name.as_str()]);

    // Hostile packets: garbage, truncated queries, a pointer loop, a response, over UDP
    // and TCP. Malformed queries get FORMERR; the server goes on answering.
    let s = UdpSocket::bind("0.0.0.0:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut looped = query(0x4242, "", TYPE_A)[..12].to_vec();
    looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    s.send_to(&looped, (gateway, 53)).unwrap();
    let mut buf = [0u8; 512];
    let n = s.recv(&mut buf).unwrap();
    let a = parse_response(&buf[..n]).unwrap();
    assert_eq!((a.id, a.rcode), (0x4242, 1), "FORMERR");
    let full = query(7, &name, TYPE_AAAA);
    for bad in [
        vec![],
        vec![0xff; 3],
        full[..15].to_vec(),
        vec![0u8; 600],
        {
            let mut r = full.clone();
            r[2] |= 0x80;
            r
        },
    ] {
        s.send_to(&bad, (gateway, 53)).unwrap();
    }
    let mut t = TcpStream::connect((gateway, 53)).unwrap();
    t.write_all(&[0x00, 0x40, 1, 2, 3]).unwrap();
    drop(t);
    let mut t = TcpStream::connect((gateway, 53)).unwrap();
    t.write_all(&[0xff, 0xff]).unwrap();
    t.write_all(&[0u8; 100]).unwrap();
    drop(t);
    assert_eq!(ask_udp(gateway, &name, TYPE_A).addresses, [peer_ip]);
    assert_eq!(ask_tcp(gateway, &[&name])[0].addresses, [peer_ip]);
    assert_eq!(servers(&open_id).len(), 1);

    // An internal network forwards nothing: names outside it are refused, and its
    // containers still find each other.
    let asked = upstream.asked();
    let inner = format!("inner-{pid}");
    b.ok(&[
        "run",
        "-d",
        "--network",
        &closed,
        "--name",
        &inner,
        "bb:1",
        "sleep",
        "1000",
    ]);
    let out = b.ok(&[
        "run",
        "--rm",
        "--network",
        &closed,
        "bb:1",
        "sh",
        "-c",
        &format!("nslookup outside.example.test 2>&1; nslookup {inner}"),
    ]);
    assert!(out.contains("REFUSED"), "{out}");
    assert!(!out.contains("192.0.2.7"), "{out}");
    assert!(out.contains(&format!("Name:\t{inner}")), "{out}");
    assert_eq!(
        upstream.asked(),
        asked,
        "the internal network asked upstream"
    );

    // A server killed from outside is started again by the next container.
    let pid_before = servers(&open_id);
    assert_eq!(pid_before.len(), 1);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid_before[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("the server to die", || servers(&open_id).is_empty());
    let out = b.ok(&["run", "--rm", "--network", &open, "bb:1", "nslookup", &name]);
    assert!(out.contains(&format!("Address: {peer_ip}")), "{out}");

    // A server started by a foreground `run` (which blocks SIGTERM while it relays the
    // container's signals, and blocked signals are inherited) still ends on SIGTERM.
    let fg = format!("dns-fg-{pid}");
    let fg_id = b.ok(&["network", "create", &fg]).trim().to_string();
    let mut runner = b
        .cmd(&["run", "--rm", "--network", &fg, "bb:1", "sleep", "3"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the foreground run's server", || servers(&fg_id).len() == 1);
    let server = servers(&fg_id)[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let sent = std::time::Instant::now();
    while !servers(&fg_id).is_empty() && sent.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(servers(&fg_id).is_empty(), "SIGTERM did not end the server");
    assert!(runner.wait().unwrap().success());

    let ids = b.ok(&["ps", "-aq"]);
    let mut rm = vec!["rm", "-f"];
    rm.extend(ids.lines());
    b.ok(&rm);
    b.ok(&["network", "rm", &open, &closed, &fg]);
    assert_no_server(&open_id);
    assert_no_server(&fg_id);
    b.assert_nothing_left();
}

/// Leases and `network connect` records of container `id` on network `name`.
fn recorded_on(id: &str, name: &str) -> (usize, usize) {
    let state =
        engine::network::state::State::open(std::path::Path::new(engine::network::STATE_DIR))
            .unwrap();
    (
        state
            .leases_of(id)
            .unwrap()
            .iter()
            .filter(|l| l.network == name)
            .count(),
        state
            .connections_of(id)
            .unwrap()
            .iter()
            .filter(|c| c.network == name)
            .count(),
    )
}

#[test]
fn aliases_and_network_connect_and_disconnect_as_docker() {
    let b = Berth::with_busybox();
    let pid = std::process::id();
    let one = format!("dns-one-{pid}");
    let two = format!("dns-two-{pid}");
    let three = format!("dns-three-{pid}");
    let _nets = Nets(&b, vec![one.clone(), two.clone(), three.clone()]);
    let one_id = b.ok(&["network", "create", &one]).trim().to_string();
    let two_id = b.ok(&["network", "create", &two]).trim().to_string();
    b.ok(&["network", "create", &three]);
    let gw_one = gateway_of(&b, &one);
    let gw_two = gateway_of(&b, &two);

    // --network-alias, and an alias two containers share: both answered.
    let web = format!("web-{pid}");
    let web_id = httpd(
        &b,
        &[
            "--network",
            &one,
            "--name",
            &web,
            "--network-alias",
            "api",
            "--network-alias",
            "pool",
        ],
        "hello-alias",
    );
    let other = b
        .ok(&[
            "run",
            "-d",
            &format!("--network=name={one},alias=pool"),
            "bb:1",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    let web_ip = ask_udp(gw_one, &web, TYPE_A).addresses[0];
    assert_eq!(ask_udp(gw_one, "api", TYPE_A).addresses, [web_ip]);
    assert_eq!(ask_udp(gw_one, "pool", TYPE_A).addresses.len(), 2);
    let out = b.ok(&[
        "run",
        "--rm",
        "--network",
        &one,
        "bb:1",
        "sh",
        "-c",
        &get_by_name("api"),
    ]);
    assert!(out.contains("hello-alias"), "{out}");
    let nets: serde_json::Value =
        serde_json::from_str(&b.ok(&["inspect", "-f", "{{json .NetworkSettings.Networks}}", &web]))
            .unwrap();
    assert_eq!(nets[&one]["Aliases"], serde_json::json!(["api", "pool"]));
    assert_eq!(
        nets[&one]["DNSNames"],
        serde_json::json!([web, "api", "pool", &web_id[..12]])
    );

    // The alias off a user network: Docker's refusal, exit 125, no container.
    let before = b.ok(&["ps", "-aq"]);
    let (code, _, err) = b.code(&["run", "--rm", "--network-alias", "x", "bb:1", "true"]);
    assert_eq!(code, 125, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(
            "network-scoped alias is supported only for containers in user defined networks"
        ),
        "{err}"
    );
    assert_eq!(b.ok(&["ps", "-aq"]), before);

    // connect: a second interface on `two`, its alias answered there, reached by name
    // over TCP from `two`; /etc/hosts and inspect show both.
    assert!(servers(&two_id).is_empty());
    b.ok(&["network", "connect", "--alias", "web-two", &two, &web]);
    assert_eq!(
        servers(&two_id).len(),
        1,
        "connect starts the network's server"
    );
    let two_ip = ask_udp(gw_two, "web-two", TYPE_A).addresses[0];
    assert_eq!(ask_udp(gw_two, &web, TYPE_A).addresses, [two_ip]);
    // `api` is an alias on `one` only.
    assert_eq!(ask_udp(gw_two, "api", TYPE_A).rcode, 3);
    let inside = b.ok(&[
        "exec",
        &web,
        "sh",
        "-c",
        "ip -4 -o addr show eth1; cat /etc/hosts; ip route",
    ]);
    assert!(inside.contains(&format!("inet {two_ip}/")), "{inside}");
    assert!(inside.contains(&format!("{web_ip}\t")), "{inside}");
    assert!(inside.contains(&format!("{two_ip}\t")), "{inside}");
    assert!(
        inside.contains(&format!("default via {gw_one} dev eth0")),
        "the first network keeps the default route: {inside}"
    );
    let out = b.ok(&[
        "run",
        "--rm",
        "--network",
        &two,
        "bb:1",
        "sh",
        "-c",
        &format!("{}; {}", get_by_name("web-two"), get_by_name(&web)),
    ]);
    assert_eq!(out.matches("hello-alias").count(), 2, "{out}");
    let nets: serde_json::Value =
        serde_json::from_str(&b.ok(&["inspect", "-f", "{{json .NetworkSettings.Networks}}", &web]))
            .unwrap();
    assert_eq!(nets[&one]["IPAddress"], web_ip.to_string().as_str());
    assert_eq!(nets[&two]["IPAddress"], two_ip.to_string().as_str());
    assert_eq!(nets[&two]["Aliases"], serde_json::json!(["web-two"]));
    // ps lists and filters by every network.
    assert_eq!(
        b.ok(&[
            "ps",
            "--filter",
            &format!("network={two}"),
            "--format",
            "{{.Names}} {{.Networks}}"
        ]),
        format!("{web} {one},{two}\n")
    );
    let v: serde_json::Value = serde_json::from_str(&b.ok(&["network", "inspect", &two])).unwrap();
    assert_eq!(
        v[0]["Containers"][&web_id]["IPv4Address"]
            .as_str()
            .unwrap()
            .split('/')
            .next(),
        Some(two_ip.to_string().as_str())
    );

    // Docker's refusals, one line each, exit 1, and nothing recorded by them.
    let refused = |args: &[&str], want: &str| {
        let (code, out, err) = b.code(args);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert_eq!(
            err,
            format!("Error response from daemon: {want}\n"),
            "{args:?}"
        );
    };
    refused(
        &["network", "connect", &two, &web],
        &format!("endpoint with name {web} already exists in network {two}"),
    );
    refused(
        &["network", "connect", &one, &web],
        &format!("endpoint with name {web} already exists in network {one}"),
    );
    refused(
        &["network", "disconnect", &three, &web],
        &format!("container {web_id} is not connected to network {three}"),
    );
    refused(
        &["network", "connect", &format!("nope-{pid}"), &web],
        &format!("network nope-{pid} not found"),
    );
    refused(
        &["network", "connect", &three, &format!("nobody-{pid}")],
        &format!("No such container: nobody-{pid}"),
    );
    refused(
        &["network", "connect", "--alias", "a", "bridge", &web],
        "network-scoped alias is supported only for containers in user defined networks",
    );
    let lonely = b
        .ok(&["run", "-d", "--network", "none", "bb:1", "sleep", "1000"])
        .trim()
        .to_string();
    refused(
        &["network", "connect", &three, &lonely],
        "container cannot be connected to multiple networks with one of the networks in private (none) mode",
    );
    assert_eq!(recorded_on(&web_id, &two), (1, 1));
    assert_eq!(recorded_on(&web_id, &three), (0, 0));
    assert_eq!(recorded_on(&lonely, &three), (0, 0));

    // disconnect: the interface, the lease, the name on `two` and the hosts line go;
    // `two` has nobody left, so its server goes too.
    b.ok(&["network", "disconnect", &two, &web]);
    assert_eq!(recorded_on(&web_id, &two), (0, 0));
    assert_eq!(ask_udp(gw_one, "api", TYPE_A).addresses, [web_ip]);
    assert_no_server(&two_id);
    let inside = b.ok(&["exec", &web, "sh", "-c", "ip -o link; cat /etc/hosts"]);
    assert!(!inside.contains("eth1"), "{inside}");
    assert!(!inside.contains(&format!("{two_ip}\t")), "{inside}");
    let nets: serde_json::Value =
        serde_json::from_str(&b.ok(&["inspect", "-f", "{{json .NetworkSettings.Networks}}", &web]))
            .unwrap();
    assert_eq!(nets.as_object().unwrap().len(), 1, "{nets}");

    // A stopped container connected: recorded, joined at its next start; the network
    // cannot be removed meanwhile.
    b.ok(&["stop", "-t", "0", &other]);
    b.ok(&["network", "connect", &three, &other]);
    let (code, _, err) = b.code(&["network", "rm", &three]);
    assert_eq!(code, 1);
    assert!(err.contains("has active endpoints"), "{err}");
    b.ok(&["start", &other]);
    let inside = b.ok(&["exec", &other, "ip", "-4", "-o", "addr", "show", "eth1"]);
    let gw_three = gateway_of(&b, &three);
    let three_prefix: Vec<u8> = gw_three.octets()[..2].to_vec();
    assert!(
        inside.contains(&format!("inet {}.{}.", three_prefix[0], three_prefix[1])),
        "{inside}"
    );
    assert_eq!(recorded_on(&other, &three), (1, 1));

    let ids = b.ok(&["ps", "-aq"]);
    let mut rm = vec!["rm", "-f"];
    rm.extend(ids.lines());
    b.ok(&rm);
    assert_eq!(recorded_on(&other, &three), (0, 0));
    b.ok(&["network", "rm", &one, &two, &three]);
    assert_no_server(&one_id);
    b.assert_nothing_left();
}
