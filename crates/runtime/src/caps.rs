//! Capabilities, user and groups of the container process, in the order that keeps the
//! needed privileges until the end: bounding set first (needs CAP_SETPCAP), then the
//! uid/gid switch with keep-caps, then the final sets.

use crate::error::{Context, Error, Result};
use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::{LinuxCapabilities, User};

/// The capabilities this kernel knows. Probing takes a prctl per capability (41), and the
/// bounding drop and each of the five sets need the answer: ask once per process.
fn supported() -> &'static CapsHashSet {
    static SUPPORTED: std::sync::OnceLock<CapsHashSet> = std::sync::OnceLock::new();
    SUPPORTED.get_or_init(caps::runtime::thread_all_supported)
}

fn to_set(list: &Option<oci_spec::runtime::Capabilities>) -> CapsHashSet {
    let supported = supported();
    let mut out = CapsHashSet::new();
    for c in list.iter().flatten() {
        // oci-spec serializes to the kernel's CAP_* names, which is what caps parses.
        let name = serde_json::to_string(c).unwrap_or_default();
        if let Ok(cap) = name.trim_matches('"').parse::<Capability>() {
            if supported.contains(&cap) {
                out.insert(cap);
            }
        }
    }
    out
}

fn caps_err(what: &str, e: caps::errors::CapsError) -> Error {
    Error::Other(format!("capabilities: {what}: {e}"))
}

pub fn drop_bounding(c: Option<&LinuxCapabilities>) -> Result<()> {
    let keep = c.map(|c| to_set(c.bounding())).unwrap_or_default();
    for &cap in supported() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap).map_err(|e| caps_err("drop bounding", e))?;
        }
    }
    Ok(())
}

pub fn apply(c: Option<&LinuxCapabilities>) -> Result<()> {
    let get = |f: fn(&LinuxCapabilities) -> &Option<oci_spec::runtime::Capabilities>| {
        c.map(|c| to_set(f(c))).unwrap_or_default()
    };
    let effective = get(|c| c.effective());
    let permitted = get(|c| c.permitted());
    let inheritable = get(|c| c.inheritable());
    let ambient = get(|c| c.ambient());
    // The kernel checks effective ⊆ permitted on every capset, so shrink effective before
    // permitted; inheritable goes first while permitted still covers it.
    caps::set(None, CapSet::Inheritable, &inheritable).map_err(|e| caps_err("inheritable", e))?;
    caps::set(None, CapSet::Effective, &effective).map_err(|e| caps_err("effective", e))?;
    caps::set(None, CapSet::Permitted, &permitted).map_err(|e| caps_err("permitted", e))?;
    caps::clear(None, CapSet::Ambient).map_err(|e| caps_err("clear ambient", e))?;
    for cap in ambient {
        // Ambient needs the cap in both permitted and inheritable; the kernel says EPERM
        // otherwise, which runc ignores with a warning. Do the same.
        let _ = caps::raise(None, CapSet::Ambient, cap);
    }
    Ok(())
}

/// setgroups/setresgid/setresuid with PR_SET_KEEPCAPS so the permitted set survives the
/// switch away from uid 0.
pub fn switch_user(user: &User, setgroups_allowed: bool) -> Result<()> {
    use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
    nix::sys::prctl::set_keepcaps(true).ctx(|| "prctl(PR_SET_KEEPCAPS)")?;
    if setgroups_allowed {
        let groups: Vec<Gid> = user
            .additional_gids()
            .iter()
            .flatten()
            .map(|g| Gid::from_raw(*g))
            .collect();
        setgroups(&groups).ctx(|| "setgroups (process.user.additionalGids)")?;
    }
    let gid = Gid::from_raw(user.gid());
    setresgid(gid, gid, gid).ctx(|| format!("setgid {} (process.user.gid)", user.gid()))?;
    let uid = Uid::from_raw(user.uid());
    setresuid(uid, uid, uid).ctx(|| format!("setuid {} (process.user.uid)", user.uid()))?;
    nix::sys::prctl::set_keepcaps(false).ctx(|| "prctl(PR_SET_KEEPCAPS, 0)")?;
    if let Some(mask) = user.umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    Ok(())
}
