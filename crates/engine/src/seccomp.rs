//! Seccomp profiles in Docker's format, and their OCI form for one container.
//!
//! Docker's profile format is the OCI `linux.seccomp` object plus three things the OCI
//! form lacks: an `archMap` (the native architecture and the ones it can also run),
//! and per-rule `includes`/`excludes` on the container's capabilities, the machine's
//! architecture and the kernel version. So the profile is resolved per container: with
//! `--cap-add SYS_ADMIN`, `mount` and `unshare` become allowed, because the capability
//! already grants what the filter would otherwise withhold.
//!
//! `seccomp_default.json` is berth's equivalent of Docker's default profile: the
//! allow-list Docker 20.10.24 generates on x86_64 (checked against a config.json it
//! wrote, see the tests), with the conditional rules of moby's
//! profiles/seccomp/default.json. A `--security-opt seccomp=FILE` may be in Docker's
//! format or already in the OCI one; both go through [`resolve`].

use serde_json::{json, Map, Value};

/// Berth's default profile, in Docker's format.
pub const DEFAULT_PROFILE: &str = include_str!("seccomp_default.json");

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("decoding seccomp profile failed: {0}")]
    Json(#[from] serde_json::Error),
    #[error("decoding seccomp profile failed: {0}")]
    Shape(String),
}

/// The machine and container a profile is resolved for.
#[derive(Debug, Clone)]
pub struct Target {
    /// Go's name for the architecture (`amd64`, `arm64`), as profiles use it.
    pub arch: &'static str,
    /// libseccomp's name for the native architecture (`SCMP_ARCH_X86_64`).
    pub scmp_arch: &'static str,
    /// The kernel's (major, minor).
    pub kernel: (u32, u32),
    /// The container's bounding capabilities (`CAP_…`).
    pub caps: Vec<String>,
}

impl Target {
    /// This machine, for a container with `caps`.
    pub fn host(caps: Vec<String>) -> Target {
        let (arch, scmp_arch) = host_arch();
        Target {
            arch,
            scmp_arch,
            kernel: host_kernel(),
            caps,
        }
    }
}

fn host_arch() -> (&'static str, &'static str) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", "SCMP_ARCH_X86_64"),
        "x86" => ("386", "SCMP_ARCH_X86"),
        "aarch64" => ("arm64", "SCMP_ARCH_AARCH64"),
        "arm" => ("arm", "SCMP_ARCH_ARM"),
        "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", "SCMP_ARCH_PPC64LE"),
        "powerpc64" => ("ppc64", "SCMP_ARCH_PPC64"),
        "s390x" => ("s390x", "SCMP_ARCH_S390X"),
        "riscv64" => ("riscv64", "SCMP_ARCH_RISCV64"),
        "mips64" => ("mips64", "SCMP_ARCH_MIPS64"),
        other => (other, "SCMP_ARCH_NATIVE"),
    }
}

fn host_kernel() -> (u32, u32) {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    parse_kernel(&release).unwrap_or((0, 0))
}

/// `5.10.0-23-amd64` → (5, 10).
fn parse_kernel(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Resolves a profile (Docker's or OCI format) into the OCI `linux.seccomp` object.
pub fn resolve(profile: &str, target: &Target) -> Result<Value, SeccompError> {
    let v: Value = serde_json::from_str(profile)?;
    let obj = v
        .as_object()
        .ok_or_else(|| SeccompError::Shape("not a JSON object".into()))?;
    let mut out = Map::new();
    for key in [
        "defaultAction",
        "defaultErrnoRet",
        "flags",
        "listenerPath",
        "listenerMetadata",
    ] {
        if let Some(x) = obj.get(key) {
            out.insert(key.into(), x.clone());
        }
    }
    if let Some(arches) = architectures(obj, target) {
        out.insert("architectures".into(), arches);
    }
    let mut syscalls = vec![];
    for rule in obj
        .get("syscalls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(r) = resolve_rule(rule, target)? {
            syscalls.push(r);
        }
    }
    out.insert("syscalls".into(), Value::Array(syscalls));
    Ok(Value::Object(out))
}

/// `architectures` as given, or from `archMap`: the native one and its sub-architectures.
fn architectures(obj: &Map<String, Value>, target: &Target) -> Option<Value> {
    if let Some(a) = obj.get("architectures").filter(|a| !a.is_null()) {
        return Some(a.clone());
    }
    let map = obj.get("archMap")?.as_array()?;
    let entry = map
        .iter()
        .find(|e| e.get("architecture").and_then(Value::as_str) == Some(target.scmp_arch))?;
    let mut arches = vec![json!(target.scmp_arch)];
    arches.extend(
        entry
            .get("subArchitectures")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .cloned(),
    );
    Some(Value::Array(arches))
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// One rule, or `None` when its includes/excludes leave it out for this target.
fn resolve_rule(rule: &Value, target: &Target) -> Result<Option<Value>, SeccompError> {
    let obj = rule
        .as_object()
        .ok_or_else(|| SeccompError::Shape("a syscall rule is not an object".into()))?;
    if !included(obj.get("includes"), target) || excluded(obj.get("excludes"), target) {
        return Ok(None);
    }
    let mut names: Vec<Value> = strings(obj.get("names"))
        .into_iter()
        .map(|s| json!(s))
        .collect();
    // The old single-name form.
    if let Some(name) = obj.get("name").and_then(Value::as_str) {
        names.push(json!(name));
    }
    if names.is_empty() {
        return Err(SeccompError::Shape(
            "a syscall rule names no syscall".into(),
        ));
    }
    let mut out = Map::new();
    out.insert("names".into(), Value::Array(names));
    for key in ["action", "errnoRet", "args"] {
        if let Some(x) = obj.get(key).filter(|x| !x.is_null()) {
            out.insert(key.into(), x.clone());
        }
    }
    Ok(Some(Value::Object(out)))
}

/// Every condition in `includes` must hold.
fn included(inc: Option<&Value>, target: &Target) -> bool {
    let Some(inc) = inc else { return true };
    let arches = strings(inc.get("arches"));
    if !arches.is_empty() && !arches.contains(&target.arch) {
        return false;
    }
    let caps = strings(inc.get("caps"));
    if !caps.iter().all(|c| target.caps.iter().any(|t| t == c)) {
        return false;
    }
    match inc
        .get("minKernel")
        .and_then(Value::as_str)
        .and_then(parse_kernel)
    {
        Some(min) => target.kernel >= min,
        None => true,
    }
}

/// Any condition in `excludes` removes the rule.
fn excluded(exc: Option<&Value>, target: &Target) -> bool {
    let Some(exc) = exc else { return false };
    strings(exc.get("arches")).contains(&target.arch)
        || strings(exc.get("caps"))
            .iter()
            .any(|c| target.caps.iter().any(|t| t == c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::DEFAULT_CAPS;
    use std::collections::BTreeSet;

    fn amd64(caps: &[&str]) -> Target {
        Target {
            arch: "amd64",
            scmp_arch: "SCMP_ARCH_X86_64",
            kernel: (5, 10),
            caps: caps.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// (names, action, args, errnoRet) of every rule, one entry per name.
    fn flat(p: &Value) -> BTreeSet<String> {
        let mut set = BTreeSet::new();
        for r in p["syscalls"].as_array().unwrap() {
            for n in r["names"].as_array().unwrap() {
                set.insert(format!(
                    "{} {} {} {}",
                    n.as_str().unwrap(),
                    r["action"],
                    r.get("args").unwrap_or(&Value::Null),
                    r.get("errnoRet").unwrap_or(&Value::Null)
                ));
            }
        }
        set
    }

    #[test]
    fn default_profile_matches_docker_20_10() {
        // linux.seccomp of a config.json written by dockerd 20.10.24 on x86_64 for
        // `docker run busybox` (default capabilities).
        let docker: Value = serde_json::from_str(include_str!(
            "../tests/data/docker-20.10.24-default-seccomp.json"
        ))
        .unwrap();
        let ours = resolve(DEFAULT_PROFILE, &amd64(&DEFAULT_CAPS)).unwrap();
        assert_eq!(ours["defaultAction"], docker["defaultAction"]);
        assert_eq!(ours["architectures"], docker["architectures"]);
        assert_eq!(
            ours["defaultErrnoRet"], 1,
            "EPERM, which runc also uses when unset"
        );
        assert_eq!(flat(&ours), flat(&docker));
    }

    #[test]
    fn capabilities_open_syscalls() {
        let base = flat(&resolve(DEFAULT_PROFILE, &amd64(&DEFAULT_CAPS)).unwrap());
        let mut caps = DEFAULT_CAPS.to_vec();
        caps.push("CAP_SYS_ADMIN");
        let admin = flat(&resolve(DEFAULT_PROFILE, &amd64(&caps)).unwrap());
        assert!(admin.contains("mount \"SCMP_ACT_ALLOW\" null null"));
        assert!(admin.contains("unshare \"SCMP_ACT_ALLOW\" null null"));
        assert!(!base.iter().any(|r| r.starts_with("unshare ")));
        // clone is unconditional with CAP_SYS_ADMIN, and clone3 no longer ENOSYS.
        assert!(admin.contains("clone \"SCMP_ACT_ALLOW\" null null"));
        assert!(!admin.iter().any(|r| r.contains("38")));
        // Dropping CAP_SYS_CHROOT takes chroot away.
        let no_chroot: Vec<&str> = DEFAULT_CAPS
            .iter()
            .copied()
            .filter(|c| *c != "CAP_SYS_CHROOT")
            .collect();
        let p = flat(&resolve(DEFAULT_PROFILE, &amd64(&no_chroot)).unwrap());
        assert!(!p.iter().any(|r| r.starts_with("chroot ")));
    }

    #[test]
    fn arches_and_kernels() {
        let mut t = amd64(&DEFAULT_CAPS);
        t.kernel = (4, 4);
        let old = flat(&resolve(DEFAULT_PROFILE, &t).unwrap());
        assert!(!old.iter().any(|r| r.starts_with("ptrace ")));
        let arm = Target {
            arch: "arm64",
            scmp_arch: "SCMP_ARCH_AARCH64",
            ..amd64(&DEFAULT_CAPS)
        };
        let p = resolve(DEFAULT_PROFILE, &arm).unwrap();
        assert_eq!(
            p["architectures"],
            json!(["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"])
        );
        let f = flat(&p);
        assert!(f.iter().any(|r| r.starts_with("set_tls ")));
        assert!(!f.iter().any(|r| r.starts_with("arch_prctl ")));
        assert_eq!(parse_kernel("6.1.0-13-amd64"), Some((6, 1)));
    }

    #[test]
    fn oci_profiles_pass_through() {
        let oci = r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],
            "syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#;
        let p = resolve(oci, &amd64(&[])).unwrap();
        assert_eq!(p["syscalls"][0]["errnoRet"], 13);
        assert_eq!(p["architectures"], json!(["SCMP_ARCH_X86_64"]));
        assert!(resolve("[]", &amd64(&[])).is_err());
        assert!(resolve("{", &amd64(&[])).is_err());
    }
}
