//! The lifecycle on a cgroup2-only host. This machine is hybrid, so the test makes the
//! layout in a private mount namespace: the v1 tree unmounted and cgroup2 mounted at
//! /sys/fs/cgroup, which is what a v2-only host looks like to the runtime (the v1
//! controllers stay bound to their hierarchies, so cgroup2 here offers only hugetlb;
//! the freezer and cgroup.kill are core files and work).

mod common;
use common::*;
use std::process::Command;

#[test]
fn lifecycle_on_a_cgroup2_only_layout() {
    let b = Bundle::new(&["sleep", "1000"]);
    let script = format!(
        r#"
set -e
umount -R /sys/fs/cgroup
mount -t cgroup2 none /sys/fs/cgroup
rt() {{ {bin} --root {root} "$@"; }}
cg=/sys/fs/cgroup{cgroup}
status() {{ rt state v2 | sed -n 's/.*"status": "\(.*\)".*/\1/p'; }}
rt create --bundle {bundle} v2
echo "created: $(status)"
rt start v2
echo "started: $(status)"
echo "procs: $(wc -l < $cg/cgroup.procs)"
echo "inside: $(rt exec v2 grep '^0::' /proc/self/cgroup)"
echo "mount: $(rt exec v2 sh -c 'test -e /sys/fs/cgroup/cgroup.procs && echo cgroup2')"
echo "devices: $(rt exec --cap CAP_MKNOD v2 sh -c 'head -c0 /dev/null && echo null-ok; mknod /dev/sda b 8 0 && head -c1 /dev/sda 2>&1 | grep -o "not permitted"' | tr '\n' ' ')"
rt pause v2
echo "paused: $(status) freeze=$(cat $cg/cgroup.freeze)"
rt resume v2
echo "resumed: $(status)"
rt events --stats v2 >/dev/null && echo "stats: ok"
rt kill v2 KILL
for i in $(seq 100); do [ "$(status)" = stopped ] && break; sleep 0.05; done
echo "killed: $(status)"
rt delete v2
test -e $cg || echo "cgroup: removed"
"#,
        bin = bin(),
        root = b.root.display(),
        bundle = b.dir.display(),
        cgroup = b.cgroup,
    );
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{out}\n{err}");
    let want = [
        "created: created",
        "started: running",
        "procs: 1",
        "inside: 0::/",
        "mount: cgroup2",
        "devices: null-ok not permitted ",
        "paused: paused freeze=1",
        "resumed: running",
        "stats: ok",
        "killed: stopped",
        "cgroup: removed",
    ];
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got, want, "{err}");
    b.assert_no_leftovers("v2");
}
