//! Loading and validating a bundle's config.json. Validation happens before anything is
//! created, so a bad config leaves nothing behind; each message names the field.

use crate::error::{Error, Result};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub struct Bundle {
    pub dir: PathBuf,
    pub spec: Spec,
    /// Absolute path of the root filesystem.
    pub rootfs: PathBuf,
}

pub fn load(bundle: &Path) -> Result<Bundle> {
    let dir = std::fs::canonicalize(bundle).map_err(|e| Error::Config {
        path: bundle.to_path_buf(),
        msg: format!("bundle directory: {e}"),
    })?;
    let path = dir.join("config.json");
    let data = std::fs::read(&path).map_err(|e| Error::Config {
        path: path.clone(),
        msg: e.to_string(),
    })?;
    // One typed pass in the common case. A config that fails it goes the slower way, a
    // `Value` first, whose error names the field at fault (and which decides, as before,
    // what the few configs only that way accepts mean, e.g. one with a duplicate key).
    let spec = match serde_json::from_slice::<Spec>(&data) {
        Ok(spec) => spec,
        Err(_) => parse_checked(&data, &path)?,
    };
    let rootfs = validate(&spec, &dir).map_err(|msg| Error::Config { path, msg })?;
    Ok(Bundle { dir, spec, rootfs })
}

/// config.json through a `Value`, with the seccomp section's names checked first, so an
/// error says which field is wrong.
fn parse_checked(data: &[u8], path: &Path) -> Result<Spec> {
    let path = path.to_path_buf();
    let value: serde_json::Value = serde_json::from_slice(data).map_err(|e| Error::Config {
        path: path.clone(),
        msg: format!("invalid JSON: {e}"),
    })?;
    // The typed parse below cannot say *which* seccomp field holds an unknown name.
    if let Some(sc) = value.get("linux").and_then(|l| l.get("seccomp")) {
        crate::seccomp::validate_json(sc).map_err(|e| Error::Config {
            path: path.clone(),
            msg: e.to_string(),
        })?;
    }
    // serde_path_to_error names the field: "linux.namespaces[6].type: unknown variant ...".
    serde_path_to_error::deserialize(value).map_err(|e| Error::Config {
        path,
        msg: format!("{}: {}", e.path(), e.inner()),
    })
}

fn validate(spec: &Spec, dir: &Path) -> std::result::Result<PathBuf, String> {
    let root = spec.root().as_ref().ok_or("root: missing")?;
    let rootfs = dir.join(root.path());
    let rootfs = std::fs::canonicalize(&rootfs)
        .map_err(|e| format!("root.path: rootfs {}: {e}", rootfs.display()))?;
    if !rootfs.is_dir() {
        return Err(format!(
            "root.path: {} is not a directory",
            rootfs.display()
        ));
    }
    let process = spec.process().as_ref().ok_or("process: missing")?;
    match process.args() {
        Some(a) if !a.is_empty() => {}
        _ => return Err("process.args: must name a program to run".into()),
    }
    if !process.cwd().is_absolute() {
        return Err(format!(
            "process.cwd: {:?} must be an absolute path",
            process.cwd()
        ));
    }
    let linux = spec.linux().as_ref().ok_or("linux: missing")?;
    let mut seen = HashSet::new();
    let nss = linux.namespaces().clone().unwrap_or_default();
    for ns in &nss {
        if !seen.insert(ns.typ()) {
            return Err(format!(
                "linux.namespaces: {} appears twice",
                crate::namespaces::proc_name(ns.typ())
            ));
        }
        if let Some(p) = ns.path() {
            if let Err(e) = std::fs::metadata(p) {
                return Err(format!(
                    "linux.namespaces: {} path {}: {e}",
                    crate::namespaces::proc_name(ns.typ()),
                    p.display()
                ));
            }
        }
    }
    let has = |t: LinuxNamespaceType| nss.iter().any(|n| n.typ() == t);
    let new_userns = nss
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    if new_userns && linux.uid_mappings().as_ref().is_none_or(|m| m.is_empty()) {
        return Err("linux.uidMappings: a new user namespace needs uid mappings".into());
    }
    if new_userns && linux.gid_mappings().as_ref().is_none_or(|m| m.is_empty()) {
        return Err("linux.gidMappings: a new user namespace needs gid mappings".into());
    }
    if spec.hostname().is_some() && !has(LinuxNamespaceType::Uts) {
        return Err("hostname: setting a hostname needs a private uts namespace".into());
    }
    if spec.domainname().is_some() && !has(LinuxNamespaceType::Uts) {
        return Err("domainname: setting a domainname needs a private uts namespace".into());
    }
    if let Some(sysctl) = linux.sysctl() {
        for key in sysctl.keys() {
            if key.contains('/') || key.split('.').any(|p| p.is_empty() || p == "..") {
                return Err(format!("linux.sysctl: invalid key {key:?}"));
            }
        }
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if !m.destination().is_absolute() {
            return Err(format!(
                "mounts[{i}].destination: {:?} must be absolute",
                m.destination()
            ));
        }
    }
    Ok(rootfs)
}

/// A container id becomes a directory name and a cgroup name: keep it boring.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_string()))
    }
}

/// The config `spec` writes: the same defaults runc's `spec` command gives, so bundles
/// made for one run on the other.
pub fn example(rootless: bool) -> serde_json::Value {
    let caps = serde_json::json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    let mut v = serde_json::json!({
        "ociVersion": crate::state::OCI_VERSION,
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [format!("PATH={}", crate::process::DEFAULT_PATH), "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "berth",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    });
    if rootless {
        let linux = &mut v["linux"];
        linux["resources"] = serde_json::json!({});
        linux["namespaces"]
            .as_array_mut()
            .expect("literal above")
            .push(serde_json::json!({"type": "user"}));
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        linux["uidMappings"] = serde_json::json!([{"containerID": 0, "hostID": uid, "size": 1}]);
        linux["gidMappings"] = serde_json::json!([{"containerID": 0, "hostID": gid, "size": 1}]);
    }
    v
}

/// What `features` prints: the runtime-spec features document.
pub fn features() -> serde_json::Value {
    let mount_options: Vec<&str> = vec![
        "async",
        "atime",
        "bind",
        "dev",
        "diratime",
        "dirsync",
        "exec",
        "lazytime",
        "loud",
        "mand",
        "noatime",
        "nodev",
        "nodiratime",
        "noexec",
        "nolazytime",
        "nomand",
        "norelatime",
        "nostrictatime",
        "nosuid",
        "private",
        "rbind",
        "relatime",
        "remount",
        "ro",
        "rprivate",
        "rshared",
        "rslave",
        "runbindable",
        "rw",
        "shared",
        "silent",
        "slave",
        "strictatime",
        "suid",
        "sync",
        "unbindable",
    ];
    let caps: Vec<String> = caps::runtime::thread_all_supported()
        .iter()
        .map(|c| c.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": crate::state::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": mount_options,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                              "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64",
                          "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32",
                          "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_RISCV64",
                          "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_X32", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64"],
                "knownFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_LOG",
                               "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
                "supportedFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_LOG",
                                   "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}}
        },
        "annotations": {
            "org.opencontainers.runtime-spec.features": "berth-runtime",
            "io.github.berth.runtime.version": env!("CARGO_PKG_VERSION")
        }
    })
}
