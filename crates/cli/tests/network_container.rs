//! `--network container:NAME`: a container joins another running container's network
//! namespace (its pinned one on a bridge network, or its process's with `--network
//! none`), takes its host name, /etc/hosts and /etc/resolv.conf as Docker does, has no
//! veth or lease of its own, and is refused with Docker's words when the other is not
//! running or options conflict. When the other stops, the joined container loses the
//! network and nothing of it is left on the host.
//!
//! Traffic stays inside the containers' namespaces (127.0.0.1 there).

mod support;

use support::{leases_of, links, wait_for, Berth};

#[test]
fn a_container_shares_a_running_containers_network_namespace() {
    let b = Berth::with_busybox();
    let pid = std::process::id();
    let owner = format!("owner-{pid}");
    let owner_id = b
        .ok(&[
            "run",
            "-d",
            "--name",
            &owner,
            "--hostname",
            "ownerhost",
            "bb:1",
            "sh",
            "-c",
            "mkdir -p /www && echo shared-ok > /www/index.html && exec httpd -f -p 8080 -h /www",
        ])
        .trim()
        .to_string();
    let owner_ip = b
        .ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &owner])
        .trim()
        .to_string();
    let owner_ns = b.ok(&["exec", &owner, "readlink", "/proc/self/ns/net"]);

    // The same namespace: the owner's address, its loopback server, its files.
    let script = "readlink /proc/self/ns/net; hostname; echo HOSTNAME=$HOSTNAME; \
         ip -4 -o addr show eth0; tail -1 /etc/hosts; \
         for i in $(seq 30); do \
           printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 127.0.0.1 8080 | grep shared && break; \
           sleep 0.1; done";
    let joined = format!("joined-{pid}");
    let joined_id = b
        .ok(&[
            "run",
            "-d",
            "--name",
            &joined,
            "--network",
            &format!("container:{owner}"),
            "bb:1",
            "sh",
            "-c",
            &format!("{script}; exec sleep 1000"),
        ])
        .trim()
        .to_string();
    let mut out = String::new();
    wait_for("the joined container's output", || {
        out = b.ok(&["logs", &joined]);
        out.contains("shared-ok")
    });
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some(owner_ns.trim()), "{out}");
    assert_eq!(lines.next(), Some("ownerhost"), "{out}");
    assert!(out.contains("HOSTNAME=ownerhost"), "{out}");
    assert!(out.contains(&format!("inet {owner_ip}/")), "{out}");
    assert!(out.contains(&format!("{owner_ip}\townerhost")), "{out}");
    // No network of its own: no lease, no veth, nothing in inspect but the mode.
    assert_eq!(leases_of(&b), [owner_id.as_str()]);
    assert!(!links().contains(&format!("vb{}", &joined_id[..12])));
    assert_eq!(
        b.ok(&["inspect", "-f", "{{.HostConfig.NetworkMode}}", &joined])
            .trim(),
        format!("container:{owner}")
    );
    assert_eq!(
        b.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &joined])
            .trim(),
        ""
    );
    // It cannot join other networks.
    let (code, _, err) = b.code(&["network", "connect", "bridge", &joined]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "Error response from daemon: container sharing network namespace with another container or host cannot be connected to any other network\n"
    );

    // The owner stops: the joined container keeps running without its network, and the
    // owner's veth and lease are gone (not kept alive by the joined one's processes).
    b.ok(&["stop", "-t", "0", &owner]);
    let veth = format!("vb{}", &owner_id[..12]);
    wait_for("the owner's veth to go", || !links().contains(&veth));
    assert!(leases_of(&b).is_empty());
    let inside = b.ok(&["exec", &joined, "ip", "-o", "link"]);
    assert!(!inside.contains("eth0"), "{inside}");

    // A stopped, a missing and an own container: Docker's refusals, exit 125.
    let to_owner = format!("container:{owner}");
    let to_joined = format!("container:{joined}");
    for (args, want) in [
        (
            vec!["--network", to_owner.as_str()],
            format!("cannot join network of a non running container: {owner}"),
        ),
        (
            vec!["--network", "container:nobody-here"],
            "No such container: nobody-here".to_string(),
        ),
        (
            vec!["--network", to_joined.as_str(), "-p", "80:80"],
            "conflicting options: port publishing and the container type network mode".into(),
        ),
        (
            vec!["--network", to_joined.as_str(), "-h", "x"],
            "conflicting options: hostname and the network mode".into(),
        ),
        (
            vec!["--network", to_joined.as_str(), "--dns", "1.1.1.1"],
            "conflicting options: dns and the network mode".into(),
        ),
    ] {
        let before = b.ok(&["ps", "-aq"]);
        let mut a = vec!["run", "--rm"];
        a.extend(args.iter().copied());
        a.extend(["bb:1", "true"]);
        let (code, _, err) = b.code(&a);
        assert_eq!(code, 125, "{a:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{a:?}: {err}");
        assert!(err.contains(&want), "{a:?}: {err}");
        // Refused at create: nothing; refused at the start: only the created container
        // stays, as with Docker, and `--rm` does not apply to a start that failed.
        let after = b.ok(&["ps", "-aq"]);
        if after != before {
            let extra: Vec<&str> = after.lines().filter(|l| !before.contains(l)).collect();
            assert_eq!(extra.len(), 1, "{a:?}");
            b.ok(&["rm", extra[0]]);
        }
    }

    // A `--network none` owner: its process's namespace is joined.
    let lone = b
        .ok(&["run", "-d", "--network", "none", "bb:1", "sleep", "1000"])
        .trim()
        .to_string();
    let lone_ns = b.ok(&["exec", &lone, "readlink", "/proc/self/ns/net"]);
    let out = b.ok(&[
        "run",
        "--rm",
        "--network",
        &format!("container:{}", &lone[..12]),
        "bb:1",
        "readlink",
        "/proc/self/ns/net",
    ]);
    assert_eq!(out, lone_ns);

    let ids = b.ok(&["ps", "-aq"]);
    let mut rm = vec!["rm", "-f"];
    rm.extend(ids.lines());
    b.ok(&rm);
    assert!(leases_of(&b).is_empty());
    b.assert_nothing_left();
}
