//! `system prune` removes the user networks its store created that no container uses,
//! after the stopped containers, and leaves networks in use and other stores' networks
//! alone (networks are the host's; other tests' networks exist meanwhile).

mod support;

use support::Berth;

#[test]
fn system_prune_removes_this_stores_unused_networks_only() {
    let a = Berth::with_busybox();
    let other = Berth::new();
    let pid = std::process::id();
    let unused = format!("pr-unused-{pid}");
    let busy = format!("pr-busy-{pid}");
    let stopped = format!("pr-stopped-{pid}");
    let foreign = format!("pr-foreign-{pid}");
    let cleanup = |b: &Berth, names: &[&str]| {
        for n in names {
            let _ = b.code(&["network", "rm", n]);
        }
    };
    for n in [&unused, &busy, &stopped] {
        a.ok(&["network", "create", n]);
    }
    other.ok(&["network", "create", &foreign]);
    let running = a
        .ok(&["run", "-d", "--network", &busy, "bb:1", "sleep", "1000"])
        .trim()
        .to_string();
    let done = a
        .ok(&["run", "-d", "--network", &stopped, "bb:1", "true"])
        .trim()
        .to_string();
    a.ok(&["wait", &done]);

    let out = a.ok(&["system", "prune", "-f"]);
    let section = out
        .split("Deleted Networks:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no networks section: {out}"));
    let mut deleted: Vec<&str> = section.lines().take_while(|l| !l.is_empty()).collect();
    deleted.sort();
    let mut want = vec![unused.as_str(), stopped.as_str()];
    want.sort();
    assert_eq!(deleted, want, "{out}");
    assert!(out.contains(&done[..12]) || out.contains(&done), "{out}");
    let ls = a.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(ls.lines().any(|l| l == busy), "{ls}");
    assert!(ls.lines().any(|l| l == foreign), "{ls}");
    assert!(!ls.lines().any(|l| l == unused || l == stopped), "{ls}");

    // The other store's prune takes its own.
    let out = other.ok(&["system", "prune", "-f"]);
    assert!(
        out.contains(&format!("Deleted Networks:\n{foreign}\n")),
        "{out}"
    );

    a.ok(&["rm", "-f", &running]);
    let out = a.ok(&["system", "prune", "-f"]);
    assert!(
        out.contains(&format!("Deleted Networks:\n{busy}\n")),
        "{out}"
    );
    cleanup(&a, &[&unused, &busy, &stopped, &foreign]);
    a.assert_nothing_left();
}
