//! The default bridge on real namespaces: addresses, container-to-container traffic,
//! published TCP and UDP ports from the host, port conflicts, and teardown that leaves
//! no veth, namespace, nftables rule or lease (after `rm -f`, `run --rm` cycles, a dead
//! monitor, and a store that vanished).
//!
//! Traffic goes only to 127.0.0.1, to addresses inside the containers' namespaces, and
//! between the host and a client namespace the test makes itself (10.253.N.0/30).
//! Tests run in parallel on the shared bridge `berth0`: each uses host ports of its own
//! (18080–18139) and never assumes it is alone on the bridge.

mod support;

use engine::network;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::{fetch, leases_of, links, wait_for, Berth};

/// A detached busybox httpd serving `/index.html` with `body`.
fn httpd(b: &Berth, extra: &[&str], body: &str) -> String {
    let script =
        format!("mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 80 -h /www");
    let mut args = vec!["run", "-d"];
    args.extend_from_slice(extra);
    args.extend(["bb:1", "sh", "-c", &script]);
    b.ok(&args).trim().to_string()
}

fn inspect(b: &Berth, id: &str, template: &str) -> String {
    b.ok(&["inspect", "-f", template, id]).trim().to_string()
}

fn address(b: &Berth, id: &str) -> Ipv4Addr {
    let a = inspect(b, id, "{{.NetworkSettings.IPAddress}}");
    a.parse()
        .unwrap_or_else(|_| panic!("no address for {id}: {a:?}"))
}

fn nft_table() -> String {
    let o = Command::new("nft")
        .args(["list", "table", "ip", "berth"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Nothing of container `id`'s network is left on the host.
fn assert_network_gone(b: &Berth, id: &str) {
    let short = &id[..12];
    // The kernel deletes the veth with the container's namespace, in its own time
    // (cleanup_net runs from a workqueue): usually gone already, allowed a moment.
    let veth = format!("vb{short}");
    wait_for(&format!("veth {veth} to go"), || !links().contains(&veth));
    assert!(
        !nft_table().contains(short),
        "nft rules of {short} left:\n{}",
        nft_table()
    );
    let state = network::state::State::open(Path::new(network::STATE_DIR)).unwrap();
    assert!(
        state.lease_of(id).unwrap().is_none(),
        "lease of {short} left"
    );
    assert!(
        state.ports_of(id).unwrap().is_empty(),
        "ports of {short} left"
    );
    assert!(
        !b.tmp.path().join("run/netns").join(id).exists(),
        "netns file of {short} left"
    );
}

fn netns_files(b: &Berth) -> Vec<String> {
    std::fs::read_dir(b.tmp.path().join("run/netns"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn containers_get_an_address_reach_the_gateway_and_each_other() {
    let b = Berth::with_busybox();
    let web = httpd(&b, &[], "hello-from-web");
    let ip = address(&b, &web);
    let gateway: Ipv4Addr = inspect(&b, &web, "{{.NetworkSettings.Gateway}}")
        .parse()
        .unwrap();
    let prefix: u8 = inspect(&b, &web, "{{.NetworkSettings.IPPrefixLen}}")
        .parse()
        .unwrap();
    let mask = u32::MAX << (32 - u32::from(prefix));
    assert_eq!(u32::from(ip) & mask, u32::from(gateway) & mask);

    // A second container: eth0 in the same subnet, lo up, the default route via the
    // gateway, the gateway answers, and the first container's httpd is reached by IP.
    let script = format!(
        "ip -4 -o addr show eth0; ip -o link show lo; ip route; \
         ping -c 1 -W 2 {gateway} >/dev/null && echo gateway-ok; \
         for i in $(seq 100); do \
           printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} 80 | grep hello && break; \
           sleep 0.1; done; \
         grep \"$(hostname)\" /etc/hosts"
    );
    let out = b.ok(&["run", "--rm", "bb:1", "sh", "-c", &script]);
    let own: Ipv4Addr = out
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no eth0 address: {out}"));
    assert_ne!(own, ip);
    assert_eq!(u32::from(own) & mask, u32::from(gateway) & mask, "{out}");
    assert!(out.contains("UP"), "lo is up: {out}");
    assert!(
        out.contains(&format!("default via {gateway} dev eth0")),
        "{out}"
    );
    assert!(out.contains("gateway-ok"), "{out}");
    assert!(out.contains("hello-from-web"), "{out}");
    assert!(
        out.contains(&format!("{own}\t")),
        "/etc/hosts has the container's own address: {out}"
    );

    // The MTU is the host's default route interface's (eth0 here) and the bridge's.
    let mtu = b.ok(&["run", "--rm", "bb:1", "cat", "/sys/class/net/eth0/mtu"]);
    let bridge_mtu = std::fs::read_to_string("/sys/class/net/berth0/mtu").unwrap();
    assert_eq!(mtu.trim(), bridge_mtu.trim());

    // resolv.conf: the host's resolvers without loopback ones.
    let resolv = b.ok(&["run", "--rm", "bb:1", "cat", "/etc/resolv.conf"]);
    assert!(!resolv.contains("nameserver 127."), "{resolv}");

    // `none` and `host` are as before: no eth0 of ours, no lease.
    let none = b.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "bb:1",
        "ip",
        "-o",
        "link",
    ]);
    assert_eq!(none.lines().count(), 1, "only lo: {none}");
    let host = b.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "bb:1",
        "ip",
        "-o",
        "link",
    ]);
    assert!(host.contains("berth0"), "the host's links: {host}");
    assert_eq!(leases_of(&b), vec![web.clone()]);

    b.ok(&["rm", "-f", &web]);
    assert_network_gone(&b, &web);
    b.assert_nothing_left();
}

#[test]
fn published_ports_reach_the_container_from_the_host() {
    let b = Berth::with_busybox();
    let web = httpd(
        &b,
        &["-p", "18080:80", "-p", "127.0.0.1:18081:5353/udp"],
        "hello-published",
    );
    let ip = address(&b, &web);
    // From the host through loopback (DNAT in output + route_localnet + masquerade),
    // and straight to the container's address on the bridge.
    assert_eq!(
        fetch("127.0.0.1:18080".parse().unwrap()).trim(),
        "hello-published"
    );
    assert_eq!(fetch(SocketAddr::from((ip, 80))).trim(), "hello-published");
    assert_eq!(
        inspect(&b, &web, "{{json .NetworkSettings.Ports}}"),
        r#"{"5353/udp":[{"HostIp":"127.0.0.1","HostPort":"18081"}],"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"18080"}]}"#
    );
    let ps = b.ok(&["ps", "--format", "{{.Ports}}"]);
    assert!(ps.contains("0.0.0.0:18080->80/tcp"), "{ps}");
    assert_eq!(
        b.ok(&["port", &web]),
        "5353/udp -> 127.0.0.1:18081\n80/tcp -> 0.0.0.0:18080\n"
    );
    assert_eq!(b.ok(&["port", &web, "80"]), "0.0.0.0:18080\n");

    // UDP: a socket bound inside the container's namespace (berth's netns file) gets
    // what the host sends to 127.0.0.1:18081, and its answer comes back.
    let netns = std::fs::File::open(b.tmp.path().join("run/netns").join(&web)).unwrap();
    let inside = std::thread::spawn(move || {
        nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        UdpSocket::bind("0.0.0.0:5353").unwrap()
    })
    .join()
    .unwrap();
    inside
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.send_to(b"ping", "127.0.0.1:18081").unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = inside.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ping");
    inside.send_to(b"pong", from).unwrap();
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"pong");
    // A socket holds its namespace: this one must not keep the container's alive.
    drop(inside);

    // -P: the image's EXPOSE on a random host port.
    let tar = b.tmp.path().join("bb.tar");
    b.ok(&[
        "import",
        "-c",
        "CMD [\"sh\"]",
        "-c",
        "EXPOSE 80",
        tar.to_str().unwrap(),
        "bb:exposed",
    ]);
    let all = b
        .ok(&[
            "run",
            "-d",
            "-P",
            "bb:exposed",
            "sh",
            "-c",
            "mkdir -p /www && echo hello-random > /www/index.html && exec httpd -f -p 80 -h /www",
        ])
        .trim()
        .to_string();
    let ports: serde_json::Value =
        serde_json::from_str(&inspect(&b, &all, "{{json .NetworkSettings.Ports}}")).unwrap();
    let port: u16 = ports["80/tcp"][0]["HostPort"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("80/tcp published: {ports}"));
    assert!(port >= 1024);
    assert_eq!(
        fetch(SocketAddr::from(([127, 0, 0, 1], port))).trim(),
        "hello-random"
    );
    b.ok(&["rm", "-f", &web, &all]);
    assert_network_gone(&b, &web);
    assert_network_gone(&b, &all);
    b.assert_nothing_left();
}

#[test]
fn a_host_port_in_use_fails_in_one_line_and_leaves_nothing() {
    let b = Berth::with_busybox();
    let first = httpd(&b, &["-p", "18090:80"], "first");
    for args in [
        vec!["run", "-d", "-p", "18090:80", "bb:1", "true"],
        vec!["run", "--rm", "-p", "127.0.0.1:18090:8080", "bb:1", "true"],
        vec!["create", "-p", "18090:80", "bb:1"],
    ] {
        let (rc, out, err) = b.code(&args);
        assert_eq!(rc, 125, "{args:?}: {err}");
        assert_eq!(out, "");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains("18090"), "names the port: {err}");
        assert!(err.contains("port is already allocated"), "{err}");
    }
    // A port some host program listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:18091").unwrap();
    let (rc, _, err) = b.code(&["run", "-d", "-p", "18091:80", "bb:1", "true"]);
    assert_eq!(rc, 125, "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("18091"), "names the port: {err}");
    drop(listener);
    // A bad -p is a usage error, before anything exists.
    let (rc, _, err) = b.code(&["run", "-d", "-p", "18092:http", "bb:1", "true"]);
    assert_eq!(
        (rc, err.trim()),
        (125, "Error: invalid containerPort: http")
    );

    assert_eq!(b.ok(&["ps", "-aq", "--no-trunc"]).trim(), first);
    assert_eq!(leases_of(&b), vec![first.clone()]);
    assert_eq!(netns_files(&b), vec![first.clone()]);
    // Other tests add and remove veths and rules meanwhile: count this store's only.
    let short = &first[..12];
    assert!(nft_table().contains(&format!("c-{short}")));
    assert!(links().contains(&format!("vb{short}")));
    // The first container still serves.
    assert_eq!(fetch("127.0.0.1:18090".parse().unwrap()).trim(), "first");
    b.ok(&["rm", "-f", &first]);
    assert_network_gone(&b, &first);
    // The port is free again.
    let again = httpd(&b, &["-p", "18090:80"], "again");
    assert_eq!(fetch("127.0.0.1:18090".parse().unwrap()).trim(), "again");
    b.ok(&["rm", "-f", &again]);
    assert_network_gone(&b, &again);
    b.assert_nothing_left();
}

#[test]
fn run_rm_cycles_stop_restart_and_a_dead_monitor_leave_no_network_behind() {
    let b = Berth::with_busybox();
    const CYCLES: usize = 500; // issue #5: 500 `run --rm -p` cycles leave nothing
    let mut ids = Vec::new();
    for _ in 0..CYCLES {
        let out = b.ok(&[
            "run",
            "--rm",
            "-p",
            "18100:80",
            "bb:1",
            "cat",
            "/proc/self/cgroup",
        ]);
        let id = out
            .lines()
            .find_map(|l| l.split_once(":/berth/").map(|(_, id)| id.to_string()))
            .unwrap_or_else(|| panic!("no berth cgroup in {out:?}"));
        ids.push(id);
    }
    for id in &ids {
        assert_network_gone(&b, id);
    }
    assert!(leases_of(&b).is_empty());
    assert!(netns_files(&b).is_empty(), "{:?}", netns_files(&b));

    // Exit releases the network; a start sets it up again.
    let c = b
        .ok(&["run", "-d", "-p", "18101:80", "bb:1", "sleep", "1000"])
        .trim()
        .to_string();
    let first = address(&b, &c);
    b.ok(&["stop", "-t", "0", &c]);
    assert_network_gone(&b, &c);
    b.ok(&["start", &c]);
    let second = address(&b, &c);
    assert!(links().contains(&format!("vb{}", &c[..12])));
    assert_ne!(first, second, "a released address is not reused at once");
    let eth0 = b.ok(&[
        "run",
        "--rm",
        "bb:1",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        &second.to_string(),
    ]);
    assert!(eth0.contains("1 packets received"), "{eth0}");

    // A monitor killed with SIGKILL: the next command that looks reconciles the
    // container, and its network goes with it.
    let ps = Command::new("ps")
        .args(["-eo", "pid,args"])
        .output()
        .unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    let mpid: i32 = ps
        .lines()
        .find(|l| l.contains("berth-monitor") && l.contains(&c))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .expect("the monitor");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(mpid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("the monitor to die", || {
        !Path::new(&format!("/proc/{mpid}")).exists()
            || std::fs::read_to_string(format!("/proc/{mpid}/stat"))
                .is_ok_and(|s| s.contains(") Z"))
    });
    b.ok(&["ps", "-a"]);
    assert_network_gone(&b, &c);
    b.ok(&["rm", "-f", &c]);
    b.assert_nothing_left();
}

#[test]
fn a_lease_whose_store_is_gone_is_reclaimed() {
    let b = Berth::with_busybox();
    let gone = Berth::with_busybox();
    let c = gone
        .ok(&["run", "-d", "-p", "18110:80", "bb:1", "sleep", "1000"])
        .trim()
        .to_string();
    // The store vanishes under a running container, with its monitor and process
    // killed (a crash, then someone deleting the directory): nobody runs its teardown.
    let ps = Command::new("ps")
        .args(["-eo", "pid,args"])
        .output()
        .unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    let mpid: i32 = ps
        .lines()
        .find(|l| l.contains("berth-monitor") && l.contains(&c))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .expect("the monitor");
    let pid: i32 = inspect(&gone, &c, "{{.State.Pid}}").parse().unwrap();
    for p in [mpid, pid] {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let aside = gone.tmp.path().join("aside");
    std::fs::create_dir_all(&aside).unwrap();
    for f in ["berth.db", "berth.db-wal", "berth.db-shm"] {
        let _ = std::fs::rename(gone.root().join(f), aside.join(f));
    }
    assert!(links().contains(&format!("vb{}", &c[..12])));

    // Another store asks for the same host port: the stale holder is torn down.
    let web = httpd(&b, &["-p", "18110:80"], "reclaimed");
    assert_eq!(
        fetch("127.0.0.1:18110".parse().unwrap()).trim(),
        "reclaimed"
    );
    assert_network_gone(&gone, &c);
    b.ok(&["rm", "-f", &web]);
    assert_network_gone(&b, &web);
    b.assert_nothing_left();

    // The store comes back: its dead container is reconciled and removed as usual.
    for f in ["berth.db", "berth.db-wal", "berth.db-shm"] {
        let _ = std::fs::rename(aside.join(f), gone.root().join(f));
    }
    gone.ok(&["rm", "-f", &c]);
    gone.assert_nothing_left();
}

/// A network namespace with a veth to the host, standing in for another machine: it
/// reaches a published port through the host's address on that link (DNAT in
/// prerouting, forwarding to berth0), as a remote client would. Removed on drop.
struct ClientNamespace {
    name: String,
    host_link: String,
    host_ip: Ipv4Addr,
}

impl ClientNamespace {
    fn new() -> ClientNamespace {
        // A /30 of our own from a range berth's IPAM does not use, per test process.
        let n = std::process::id() % 250;
        let name = format!("berth-client-{}", std::process::id());
        let host_link = format!("bch{}", std::process::id() % 100_000);
        let peer = format!("bcc{}", std::process::id() % 100_000);
        let host_ip = Ipv4Addr::new(10, 253, n as u8, 1);
        let client_ip = Ipv4Addr::new(10, 253, n as u8, 2);
        let sh = |script: &str| {
            let o = Command::new("sh").args(["-ec", script]).output().unwrap();
            assert!(
                o.status.success(),
                "{script}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        };
        sh(&format!(
            "ip netns add {name}
             ip link add {host_link} type veth peer name {peer}
             ip link set {peer} netns {name}
             ip addr add {host_ip}/30 dev {host_link}
             ip link set {host_link} up
             ip netns exec {name} ip addr add {client_ip}/30 dev {peer}
             ip netns exec {name} ip link set {peer} up
             ip netns exec {name} ip link set lo up
             ip netns exec {name} ip route add default via {host_ip}"
        ));
        ClientNamespace {
            name,
            host_link,
            host_ip,
        }
    }

    /// `GET /index.html` from inside the namespace.
    fn fetch(&self, addr: SocketAddr) -> String {
        let ns = std::fs::File::open(format!("/run/netns/{}", self.name)).unwrap();
        std::thread::spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            fetch(addr)
        })
        .join()
        .unwrap()
    }
}

impl Drop for ClientNamespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

#[test]
fn a_published_port_serves_another_machine_through_the_hosts_address() {
    let b = Berth::with_busybox();
    let client = ClientNamespace::new();
    let web = httpd(&b, &["-p", "18120:80"], "hello-remote");
    let body = client.fetch(SocketAddr::from((client.host_ip, 18120)));
    assert_eq!(body.trim(), "hello-remote");
    b.ok(&["rm", "-f", &web]);
    assert_network_gone(&b, &web);
    b.assert_nothing_left();
}

// ---------------------------------------------------------------------------------
// User networks. Names carry the test's pid (networks are the host's, shared with every
// test running now); host ports 18140–18179 are theirs.

/// Removes a test's networks when it ends, also when it fails half-way (networks are
/// the host's: a failed test must not leave bridges behind). Its containers go first.
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

/// `network inspect -f TEMPLATE NAME`, trimmed.
fn net_inspect(b: &Berth, name: &str, template: &str) -> String {
    b.ok(&["network", "inspect", "-f", template, name])
        .trim()
        .to_string()
}

/// Network `name`'s subnet and gateway.
fn net_config(b: &Berth, name: &str) -> (String, String) {
    let v: serde_json::Value =
        serde_json::from_str(&net_inspect(b, name, "{{json .IPAM.Config}}")).unwrap();
    (
        v[0]["Subnet"].as_str().unwrap().to_string(),
        v[0]["Gateway"].as_str().unwrap().to_string(),
    )
}

/// Nothing of network `name` (bridge `bridge`, subnet `subnet`) is left on the host.
fn assert_user_network_gone(b: &Berth, name: &str, bridge: &str, subnet: &str) {
    assert!(
        !links().contains(bridge),
        "bridge {bridge} left:\n{}",
        links()
    );
    let table = nft_table();
    assert!(
        !table.contains(bridge),
        "nft rules of {bridge} left:\n{table}"
    );
    assert!(
        !table.contains(subnet),
        "nft rules of {subnet} left:\n{table}"
    );
    let state = network::state::State::open(Path::new(network::STATE_DIR)).unwrap();
    assert!(
        !state.leases().unwrap().iter().any(|l| l.network == name),
        "leases on {name} left"
    );
    assert!(
        state.network(name).unwrap().is_none(),
        "{name} still recorded"
    );
    let (code, _, err) = b.code(&["network", "inspect", name]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!("Error response from daemon: network {name} not found\n")
    );
}

#[test]
fn user_networks_are_created_listed_inspected_and_removed_as_docker_shows_them() {
    let b = Berth::new();
    let pid = std::process::id();
    let one = format!("un-a-{pid}");
    let two = format!("un-b-{pid}");
    let _nets = Nets(
        &b,
        ["a", "b", "c", "d"]
            .iter()
            .map(|x| format!("un-{x}-{pid}"))
            .collect(),
    );
    let id = b
        .ok(&["network", "create", "--label", "team=x", "-o", "k=v", &one])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "{id}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));

    let ls = b.ok(&["network", "ls"]);
    let mut lines = ls.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("  ")
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        header.iter().map(|s| s.trim()).collect::<Vec<_>>(),
        ["NETWORK ID", "NAME", "DRIVER", "SCOPE"]
    );
    let row = |name: &str| {
        ls.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("{name} not listed:\n{ls}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(row(&one), [&id[..12], &one, "bridge", "local"]);
    assert_eq!(row("bridge")[2..], ["bridge", "local"]);
    assert_eq!(row("host")[2..], ["host", "local"]);
    assert_eq!(row("none")[2..], ["null", "local"]);
    assert_eq!(
        b.ok(&["network", "ls", "-q", "--filter", &format!("name={one}")]),
        format!("{}\n", &id[..12])
    );
    assert_eq!(
        b.ok(&[
            "network",
            "ls",
            "--filter",
            &format!("name={one}"),
            "--format",
            "{{.Name}} {{.Driver}}"
        ]),
        format!("{one} bridge\n")
    );

    let v: serde_json::Value = serde_json::from_str(&b.ok(&["network", "inspect", &one])).unwrap();
    let n = &v[0];
    assert_eq!(n["Name"], one.as_str());
    assert_eq!(n["Id"], id.as_str());
    assert_eq!(n["Scope"], "local");
    assert_eq!(n["Driver"], "bridge");
    assert_eq!(n["EnableIPv6"], false);
    assert_eq!(n["Internal"], false);
    assert_eq!(n["Labels"], serde_json::json!({"team": "x"}));
    assert_eq!(n["Options"], serde_json::json!({"k": "v"}));
    assert_eq!(n["Containers"], serde_json::json!({}));
    assert!(n["Created"].as_str().unwrap().ends_with('Z'));
    let subnet = n["IPAM"]["Config"][0]["Subnet"]
        .as_str()
        .unwrap()
        .to_string();
    let gateway = n["IPAM"]["Config"][0]["Gateway"]
        .as_str()
        .unwrap()
        .to_string();
    let (net, len) = subnet.split_once('/').unwrap();
    let net: Ipv4Addr = net.parse().unwrap();
    let gw: Ipv4Addr = gateway.parse().unwrap();
    assert_eq!(u32::from(gw), u32::from(net) + 1, "{subnet} {gateway}");
    // Its bridge holds the gateway; no other network or host address overlaps it.
    let bridge = format!("br-{}", &id[..12]);
    let addrs = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-4", "-br", "addr"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    let on_bridge = addrs
        .lines()
        .find(|l| l.starts_with(&bridge))
        .unwrap_or_else(|| panic!("{addrs}"));
    assert!(
        on_bridge.contains(&format!("{gateway}/{len}")),
        "{on_bridge}"
    );
    assert_eq!(
        addrs
            .lines()
            .filter(|l| l.contains(&format!(
                "{}.",
                net.octets()[..2]
                    .iter()
                    .map(|o| o.to_string())
                    .collect::<Vec<_>>()
                    .join(".")
            )))
            .count(),
        1,
        "one link in {subnet}:\n{addrs}"
    );
    // Inspect by id prefix too.
    assert_eq!(net_inspect(&b, &id[..12], "{{.Name}}"), one);

    // The same subnet again: docker's words, one line, exit 1, nothing left.
    let (code, out, err) = b.code(&["network", "create", "--subnet", &subnet, &two]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(
        err,
        "Error response from daemon: Pool overlaps with other one on this address space\n"
    );
    assert!(out.is_empty());
    assert!(!b.ok(&["network", "ls"]).contains(&two));
    // The name again.
    let (code, _, err) = b.code(&["network", "create", &one]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!("Error response from daemon: network with name {one} already exists\n")
    );
    // A subnet containing the one above is refused as well.
    let third = format!("un-c-{pid}");
    let (code, _, err) = b.code(&["network", "create", "--subnet", "10.0.0.0/8", &third]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("Pool overlaps"), "{err}");
    // A given subnet and gateway are used as given (a /24 per test pid, far above the
    // /16s that networks get by default).
    let x = pid % 250;
    let given = format!("10.251.{x}.0/24");
    let gw = format!("10.251.{x}.254");
    b.ok(&[
        "network",
        "create",
        "--subnet",
        &given,
        "--gateway",
        &gw,
        "--label",
        &format!("test={pid}"),
        &third,
    ]);
    assert_eq!(net_config(&b, &third), (given.clone(), gw.clone()));
    let third_id = net_inspect(&b, &third, "{{.Id}}");
    let third_bridge = format!("br-{}", &third_id[..12]);
    let addrs = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-4", "-br", "addr", "show", &third_bridge])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(addrs.contains(&format!("{gw}/24")), "{addrs}");
    // A gateway outside the subnet is refused, and nothing is made.
    let (code, _, err) = b.code(&[
        "network",
        "create",
        "--subnet",
        "10.252.0.0/24",
        "--gateway",
        "10.253.0.1",
        &format!("un-d-{pid}"),
    ]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!b.ok(&["network", "ls"]).contains(&format!("un-d-{pid}")));
    b.ok(&["network", "rm", &third]);
    assert_user_network_gone(&b, &third, &third_bridge, &given);

    // rm prints the name; prune removes what no container uses.
    let mine = format!("test={pid}");
    let two_id = b
        .ok(&["network", "create", "--internal", "--label", &mine, &two])
        .trim()
        .to_string();
    assert_eq!(net_inspect(&b, &two, "{{.Internal}}"), "true");
    let two_subnet = net_config(&b, &two).0;
    assert_eq!(b.ok(&["network", "rm", &one]), format!("{one}\n"));
    assert_user_network_gone(&b, &one, &bridge, &subnet);
    // Networks are the host's and other tests run now: prune only this test's.
    let pruned = b.ok(&[
        "network",
        "prune",
        "-f",
        "--filter",
        &format!("label={mine}"),
    ]);
    assert!(pruned.starts_with("Deleted Networks:\n"), "{pruned}");
    assert!(pruned.lines().any(|l| l == two), "{pruned}");
    assert_user_network_gone(&b, &two, &format!("br-{}", &two_id[..12]), &two_subnet);
    // Predefined networks stay.
    let (code, _, err) = b.code(&["network", "rm", "bridge"]);
    assert_eq!(code, 1);
    assert!(err.contains("pre-defined"), "{err}");
}

#[test]
fn containers_on_a_user_network_reach_each_other_and_no_one_else_does() {
    let b = Berth::with_busybox();
    let pid = std::process::id();
    let front = format!("un-front-{pid}");
    let back = format!("un-back-{pid}");
    let closed = format!("un-closed-{pid}");
    let _nets = Nets(&b, vec![front.clone(), back.clone(), closed.clone()]);
    let mine = format!("test={pid}");
    let front_id = b
        .ok(&["network", "create", "--label", &mine, &front])
        .trim()
        .to_string();
    b.ok(&["network", "create", &back]);
    b.ok(&["network", "create", "--internal", &closed]);
    let (subnet, gateway) = net_config(&b, &front);

    let web = httpd(
        &b,
        &["--network", &front, "--name", &format!("web-{pid}")],
        "hello-front",
    );
    let ip = address(&b, &web);
    let (net, len) = subnet.split_once('/').unwrap();
    let mask = u32::MAX << (32 - len.parse::<u32>().unwrap());
    assert_eq!(
        u32::from(ip) & mask,
        u32::from(net.parse::<Ipv4Addr>().unwrap())
    );
    assert_eq!(inspect(&b, &web, "{{.NetworkSettings.Gateway}}"), gateway);
    let nets: serde_json::Value =
        serde_json::from_str(&inspect(&b, &web, "{{json .NetworkSettings.Networks}}")).unwrap();
    assert_eq!(nets[&front]["IPAddress"], ip.to_string().as_str(), "{nets}");
    assert_eq!(inspect(&b, &web, "{{.HostConfig.NetworkMode}}"), front);
    assert_eq!(
        b.ok(&[
            "ps",
            "--filter",
            &format!("id={web}"),
            "--format",
            "{{.Networks}}"
        ])
        .trim(),
        front
    );
    assert_eq!(
        b.ok(&[
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("network={front}")
        ]),
        format!("{web}\n")
    );
    assert_eq!(
        b.ok(&["ps", "-q", "--filter", &format!("network={back}")]),
        ""
    );
    // The network lists it.
    let v: serde_json::Value =
        serde_json::from_str(&b.ok(&["network", "inspect", &front])).unwrap();
    let ep = &v[0]["Containers"][&web];
    assert_eq!(ep["Name"], format!("web-{pid}").as_str());
    assert_eq!(ep["IPv4Address"], format!("{ip}/{len}").as_str());
    assert_eq!(ep["MacAddress"], network::mac_text(ip).as_str());

    let get = format!(
        "for i in $(seq 50); do \
           printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip} 80 | grep hello && exit 0; \
           sleep 0.1; done; echo unreachable"
    );
    let once = format!(
        "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip} 80 | grep hello || echo unreachable"
    );
    // Same network: reached by address; the default route goes via its gateway.
    let out = b.ok(&[
        "run",
        "--rm",
        "--network",
        &front,
        "bb:1",
        "sh",
        "-c",
        &format!(
            "ip route; ip -4 -o addr show eth0; echo mac=$(cat /sys/class/net/eth0/address); {get}"
        ),
    ]);
    assert!(out.contains("hello-front"), "{out}");
    // Its MAC follows from its address (Docker's 02:42 rule), as inspect shows it.
    let own: Ipv4Addr = out
        .lines()
        .find(|l| l.contains("eth0") && l.contains("inet "))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no eth0 address: {out}"));
    assert!(
        out.contains(&format!("mac={}", network::mac_text(own))),
        "{out}"
    );
    assert!(
        out.contains(&format!("default via {gateway} dev eth0")),
        "{out}"
    );
    // Another user network, and the default bridge: not reached.
    // (Each client has a working network of its own: it reaches its gateway.)
    let probe = format!(
        "gw=$(ip route | sed -n 's/^default via \\([0-9.]*\\).*/\\1/p'); \
         ping -c 1 -W 2 $gw >/dev/null && echo own-gateway-ok; {once}"
    );
    for extra in [vec!["--network", back.as_str()], vec![]] {
        let mut args = vec!["run", "--rm"];
        args.extend(extra);
        args.extend(["bb:1", "sh", "-c", &probe]);
        let out = b.ok(&args);
        assert!(out.contains("own-gateway-ok"), "{out}");
        assert!(
            out.contains("unreachable") && !out.contains("hello"),
            "{out}"
        );
    }
    // The host itself reaches it (as docker's host reaches its bridges' containers).
    assert_eq!(fetch(SocketAddr::from((ip, 80))).trim(), "hello-front");
    // An internal network: an address, no default route, and no way to the others.
    let out = b.ok(&[
        "run",
        "--rm",
        "--network",
        &closed,
        "bb:1",
        "sh",
        "-c",
        &format!("ip -4 -o addr show eth0; ip route; {once}"),
    ]);
    assert!(out.contains("eth0"), "{out}");
    assert!(
        !out.contains("default"),
        "an internal network has no default route: {out}"
    );
    assert!(out.contains("unreachable"), "{out}");

    // In use (running, or only created): refused with docker's text, and it still works.
    let in_use = format!(
        "Error response from daemon: error while removing network: network {front} id {front_id} has active endpoints\n"
    );
    let (code, _, err) = b.code(&["network", "rm", &front]);
    assert_eq!((code, err.as_str()), (1, in_use.as_str()));
    let out = b.ok(&["run", "--rm", "--network", &front, "bb:1", "sh", "-c", &get]);
    assert!(out.contains("hello-front"), "{out}");
    b.ok(&["rm", "-f", &web]);
    assert_network_gone(&b, &web);
    let created = b
        .ok(&["create", "--network", &front, "bb:1", "true"])
        .trim()
        .to_string();
    let (code, _, err) = b.code(&["network", "rm", &front]);
    assert_eq!((code, err.as_str()), (1, in_use.as_str()));
    // prune keeps it too.
    let pruned = b.ok(&[
        "network",
        "prune",
        "-f",
        "--filter",
        &format!("label={mine}"),
    ]);
    assert!(!pruned.contains(&front), "{pruned}");
    b.ok(&["rm", &created]);

    // An unknown network: one line, exit 125, no container.
    let (code, _, err) = b.code(&[
        "run",
        "--rm",
        "--network",
        &format!("nope-{pid}"),
        "bb:1",
        "true",
    ]);
    assert_eq!(code, 125);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("network nope-{pid} not found")),
        "{err}"
    );
    assert_eq!(b.ok(&["ps", "-aq"]), "");

    let bridge = format!("br-{}", &front_id[..12]);
    assert_eq!(
        b.ok(&["network", "rm", &front, &back, &closed]),
        format!("{front}\n{back}\n{closed}\n")
    );
    assert_user_network_gone(&b, &front, &bridge, &subnet);
    assert!(leases_of(&b).is_empty());
    b.assert_nothing_left();
}

#[test]
fn user_network_containers_leave_nothing_after_rm_run_rm_stop_and_a_dead_monitor() {
    let b = Berth::with_busybox();
    let pid = std::process::id();
    let name = format!("un-down-{pid}");
    let _nets = Nets(&b, vec![name.clone()]);
    let id = b
        .ok(&[
            "network",
            "create",
            "--label",
            &format!("test={pid}"),
            &name,
        ])
        .trim()
        .to_string();
    let (subnet, _) = net_config(&b, &name);

    // A published port works on a user network too, from the host's loopback.
    let web = httpd(
        &b,
        &["--network", &name, "-p", "18140:80"],
        "hello-user-port",
    );
    assert_eq!(
        fetch("127.0.0.1:18140".parse().unwrap()).trim(),
        "hello-user-port"
    );
    b.ok(&["rm", "-f", &web]);
    assert_network_gone(&b, &web);

    // run --rm, a few times, with a port.
    for _ in 0..5 {
        let out = b.ok(&[
            "run",
            "--rm",
            "--network",
            &name,
            "-p",
            "18141:80",
            "bb:1",
            "cat",
            "/proc/self/cgroup",
        ]);
        let c = out
            .lines()
            .find_map(|l| l.split_once(":/berth/").map(|(_, id)| id.to_string()))
            .unwrap_or_else(|| panic!("no berth cgroup in {out:?}"));
        assert_network_gone(&b, &c);
    }

    // Stop releases it, start takes a new lease on the same network.
    let c = b
        .ok(&["run", "-d", "--network", &name, "bb:1", "sleep", "1000"])
        .trim()
        .to_string();
    b.ok(&["stop", "-t", "0", &c]);
    assert_network_gone(&b, &c);
    b.ok(&["start", &c]);
    let ip = address(&b, &c);
    let (net, len) = subnet.split_once('/').unwrap();
    let mask = u32::MAX << (32 - len.parse::<u32>().unwrap());
    assert_eq!(
        u32::from(ip) & mask,
        u32::from(net.parse::<Ipv4Addr>().unwrap())
    );

    // A monitor killed with SIGKILL: the next look reconciles, the network goes.
    let ps = Command::new("ps")
        .args(["-eo", "pid,args"])
        .output()
        .unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    let mpid: i32 = ps
        .lines()
        .find(|l| l.contains("berth-monitor") && l.contains(&c))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .expect("the monitor");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(mpid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("the monitor to die", || {
        !Path::new(&format!("/proc/{mpid}")).exists()
            || std::fs::read_to_string(format!("/proc/{mpid}/stat"))
                .is_ok_and(|s| s.contains(") Z"))
    });
    b.ok(&["ps", "-a"]);
    assert_network_gone(&b, &c);
    // Still a member until it is removed.
    let (code, _, _) = b.code(&["network", "rm", &name]);
    assert_eq!(code, 1);
    b.ok(&["rm", "-f", &c]);

    assert_eq!(
        b.ok(&["network", "rm", &id[..12]]),
        format!("{}\n", &id[..12])
    );
    assert_user_network_gone(&b, &name, &format!("br-{}", &id[..12]), &subnet);
    b.assert_nothing_left();
}

/// The host end of a container's veth is named after the container, and the kernel
/// deletes the old one with the old namespace in its own time: a start that finds one
/// (here made by the test, as a restart right after a stop can) replaces it instead of
/// failing with "File exists".
#[test]
fn a_start_replaces_a_leftover_veth_of_the_same_container() {
    let b = Berth::with_busybox();
    let id = b.ok(&["create", "bb:1", "sleep", "100"]).trim().to_string();
    let host = format!("vb{}", &id[..12]);
    let peer = format!("vx{}", &id[..12]);
    let ok = Command::new("ip")
        .args(["link", "add", &host, "type", "veth", "peer", "name", &peer])
        .status()
        .unwrap();
    assert!(ok.success());
    // Pass or fail, the test's pair does not outlive it.
    struct Unlink(String);
    impl Drop for Unlink {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["link", "del", &self.0]).output();
        }
    }
    let _unlink = Unlink(peer.clone());
    b.ok(&["start", &id]);
    // The container's own pair now: its eth0 is up with an address, ours is gone.
    let inside = b.ok(&["exec", &id, "ip", "-o", "-4", "addr", "show", "eth0"]);
    assert!(inside.contains("inet "), "{inside}");
    assert!(!links().contains(&peer), "{}", links());
    b.ok(&["rm", "-f", &id]);
    wait_for("the veth to go", || !links().contains(&host));
    b.assert_nothing_left();
}
