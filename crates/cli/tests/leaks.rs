//! 1000 `run --rm` cycles leave nothing behind: no mounts, cgroups, monitors or other
//! processes, open descriptors into the store, runtime state, or rows.

mod support;

use std::collections::HashSet;
use support::Berth;

const CYCLES: usize = 1000;
const WORKERS: usize = 4;

#[test]
fn a_thousand_runs_leave_nothing_behind() {
    let b = Berth::with_busybox();
    let ids = std::sync::Mutex::new(HashSet::new());
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| {
                for _ in 0..CYCLES / WORKERS {
                    let (rc, out, err) =
                        b.code(&["run", "--rm", "bb:1", "cat", "/proc/self/cgroup"]);
                    assert_eq!(rc, 0, "{err}");
                    // The container's own cgroup names it: `N:memory:/berth/ID`.
                    let id = out
                        .lines()
                        .find_map(|l| l.split_once(":/berth/").map(|(_, id)| id.to_string()))
                        .unwrap_or_else(|| panic!("no berth cgroup in {out:?}"));
                    assert!(ids.lock().unwrap().insert(id));
                }
            });
        }
    });
    let ids = ids.into_inner().unwrap();
    assert_eq!(ids.len(), CYCLES);

    let mut left = Vec::new();
    for entry in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        for id in &ids {
            let cg = entry.path().join("berth").join(id);
            if cg.exists() {
                left.push(cg);
            }
        }
    }
    assert!(left.is_empty(), "cgroups left: {left:?}");

    // No process anywhere holds a descriptor into this store or has it on its command
    // line (a monitor, a runtime, a container).
    let tmp = b.tmp.path().to_string_lossy().into_owned();
    let mut holders = Vec::new();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = p.file_name();
        if pid.to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&tmp) {
            holders.push(format!("{pid:?}: {}", String::from_utf8_lossy(&cmdline)));
        }
        for fd in std::fs::read_dir(p.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                if target.to_string_lossy().contains(&tmp) {
                    holders.push(format!(
                        "{pid:?} fd {:?} → {}",
                        fd.file_name(),
                        target.display()
                    ));
                }
            }
        }
    }
    assert!(holders.is_empty(), "{holders:#?}");

    let runtime_state: Vec<_> = std::fs::read_dir(b.tmp.path().join("run/runtimes/berth-runtime"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name())
                // Compiled seccomp filters, one per distinct profile: kept on purpose.
                .filter(|n| n != ".seccomp-cache")
                .collect()
        })
        .unwrap_or_default();
    assert!(runtime_state.is_empty(), "{runtime_state:?}");
    b.assert_nothing_left();
}
