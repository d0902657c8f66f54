//! What `docker run`/`docker create` accept that shapes the container's spec, and the
//! parsers for their value syntaxes.
//!
//! [`RunOptions`] is plain data: the CLI fills it (with clap) through the `parse_*`
//! functions here, and [`crate::spec::build_spec`] reads it. Errors carry Docker's own
//! wording where we could match it, because scripts and users grep for those lines:
//! flag syntax errors look like the docker CLI's
//! (`invalid argument "12x" for "-m, --memory" flag: invalid suffix: 'x'`), checks that
//! Docker makes in the daemon look like the daemon's (`invalid volume specification: …`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// A bad flag value, worded as Docker words it.
#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    /// The docker CLI's flag-parsing error (pflag's wording).
    #[error("invalid argument \"{value}\" for \"{flag}\" flag: {reason}")]
    Argument {
        value: String,
        flag: &'static str,
        reason: String,
    },
    /// An error Docker reports with its own sentence (mostly the daemon's checks).
    #[error("{0}")]
    Invalid(String),
    /// A file named by a flag (`--env-file`, `--label-file`, `seccomp=FILE`).
    #[error("open {}: {}", .path.display(), io_reason(.source))]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Looks a variable up in the caller's environment (`-e KEY`, `KEY` in an env file).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

fn argument(flag: &'static str, value: &str, reason: impl Into<String>) -> FlagError {
    FlagError::Argument {
        value: value.to_string(),
        flag,
        reason: reason.into(),
    }
}

fn invalid(msg: impl Into<String>) -> FlagError {
    FlagError::Invalid(msg.into())
}

/// Everything from `docker run` that affects config.json. `None`/empty means "not given".
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunOptions {
    /// `-e`, `--env-file`, in order, each `KEY=VALUE` (already looked up for `-e KEY`).
    pub env: Vec<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u`: `user[:group]`, names or ids.
    pub user: Option<String>,
    /// `--entrypoint`: `Some("")` clears the image's entrypoint.
    pub entrypoint: Option<String>,
    /// The command after the image name.
    pub command: Vec<String>,
    /// `-h`.
    pub hostname: Option<String>,
    /// `-l`, `--label-file`; at create the engine adds the image's labels the user did
    /// not set (Docker's `Config.Labels`). Kept in the store, not in config.json.
    pub labels: BTreeMap<String, String>,
    /// `-v`, `--mount`, `--tmpfs`, in the order given.
    pub mounts: Vec<MountSpec>,
    /// `--read-only`.
    pub read_only: bool,
    /// `-m` in bytes.
    pub memory: Option<i64>,
    /// `--memory-swap` in bytes, -1 for unlimited.
    pub memory_swap: Option<i64>,
    /// `--memory-reservation` in bytes.
    pub memory_reservation: Option<i64>,
    /// `--cpus` in billionths of a CPU.
    pub nano_cpus: Option<i64>,
    /// `-c`, `--cpu-shares`.
    pub cpu_shares: Option<u64>,
    /// `--cpuset-cpus`.
    pub cpuset_cpus: Option<String>,
    /// `--cpuset-mems`.
    pub cpuset_mems: Option<String>,
    /// `--pids-limit`; -1 or 0 mean unlimited.
    pub pids_limit: Option<i64>,
    /// `--ulimit`.
    pub ulimits: Vec<Ulimit>,
    /// `--cap-add`, normalised (`CAP_NET_ADMIN`, or `ALL`).
    pub cap_add: Vec<String>,
    /// `--cap-drop`, normalised.
    pub cap_drop: Vec<String>,
    /// `--privileged`.
    pub privileged: bool,
    /// `--security-opt`.
    pub security: SecurityOptions,
    /// `--device`.
    pub devices: Vec<DeviceMapping>,
    /// `--stop-signal`, as given (checked by [`parse_signal`]).
    pub stop_signal: Option<String>,
    /// `--init`.
    pub init: bool,
    /// `--shm-size` in bytes.
    pub shm_size: Option<i64>,
    /// `--sysctl`.
    pub sysctls: BTreeMap<String, String>,
    /// `--group-add`: names or ids, resolved in the container's /etc/group.
    pub group_add: Vec<String>,
    /// `--add-host`: (name, address). Written to /etc/hosts by the network module.
    pub extra_hosts: Vec<(String, String)>,
    /// `--dns`, `--dns-search`, `--dns-option`: for /etc/resolv.conf, written later.
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    /// `--network`.
    pub network: NetworkMode,
    /// `--network-alias` (and `--network name=N,alias=A`): more names for the container
    /// on its user network's DNS.
    #[serde(default)]
    pub network_aliases: Vec<String>,
    /// `-p/--publish`, parsed (ranges expanded).
    #[serde(default)]
    pub publish: Vec<network::PortSpec>,
    /// `-P/--publish-all`: the image's exposed ports and `--expose` on random host ports.
    #[serde(default)]
    pub publish_all: bool,
    /// `--expose`, parsed (ranges expanded).
    #[serde(default)]
    pub expose: Vec<(u16, network::Proto)>,
    /// `--oom-score-adj`.
    pub oom_score_adj: Option<i32>,
    /// `--oom-kill-disable`.
    pub oom_kill_disable: bool,
    /// `--ipc`.
    pub ipc: IpcMode,
    /// `--pid host`.
    pub pid_host: bool,
    /// `--uts host`.
    pub uts_host: bool,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub interactive: bool,
}

/// One of `-v`, `--mount`, `--tmpfs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountSpec {
    /// A host path bound into the container.
    Bind {
        source: PathBuf,
        target: String,
        read_only: bool,
        /// `rprivate` unless given.
        propagation: Option<String>,
        /// From `--mount`: the source must exist (`-v` creates it instead).
        must_exist: bool,
    },
    /// A named volume, or an anonymous one (`name: None`, `-v /data`). The volume
    /// manager resolves it to a host directory before the spec is built.
    Volume {
        name: Option<String>,
        target: String,
        read_only: bool,
        nocopy: bool,
        /// `--mount`'s `volume-driver`, `volume-label`, `volume-opt`: how the volume is
        /// created if it does not exist yet.
        #[serde(default, skip_serializing_if = "VolumeOptions::is_empty")]
        create: VolumeOptions,
    },
    /// A tmpfs; `options` are the user's (`size=…`, `mode=…`, `exec`, …).
    Tmpfs {
        target: String,
        options: Vec<String>,
    },
}

/// What `--mount` says about a volume it creates (Docker's `VolumeOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeOptions {
    pub driver: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

impl VolumeOptions {
    pub fn is_empty(&self) -> bool {
        self.driver.is_none() && self.labels.is_empty() && self.options.is_empty()
    }
}

impl MountSpec {
    pub fn target(&self) -> &str {
        match self {
            MountSpec::Bind { target, .. }
            | MountSpec::Volume { target, .. }
            | MountSpec::Tmpfs { target, .. } => target,
        }
    }
}

/// `--ulimit name=soft[:hard]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// Docker's short name (`nofile`).
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

impl Ulimit {
    /// The OCI name: `RLIMIT_NOFILE`.
    pub fn oci_name(&self) -> String {
        format!("RLIMIT_{}", self.name.to_uppercase())
    }
}

/// `--security-opt`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SecurityOptions {
    pub no_new_privileges: bool,
    pub seccomp: SeccompChoice,
    /// `systempaths=unconfined`: no masked or read-only /proc paths.
    pub unmask_system_paths: bool,
    /// Options accepted but not acted on (`apparmor=…`, `label=…`), for a warning.
    pub ignored: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeccompChoice {
    /// Docker's default profile (none at all with `--privileged`).
    #[default]
    Default,
    Unconfined,
    /// The contents of `seccomp=FILE` (Docker or OCI format).
    Profile(String),
}

/// `--device HOST[:CONTAINER[:PERMS]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceMapping {
    pub host: PathBuf,
    pub container: String,
    /// Some of `rwm`.
    pub permissions: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    /// Not given, or `bridge`: Docker's default bridge network.
    #[default]
    Default,
    None,
    Host,
    /// `container:ID` or a user-defined network: not yet supported.
    Other(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum IpcMode {
    /// `private` or `shareable` (Docker's default is shareable; both get a new namespace).
    #[default]
    Private,
    Host,
    /// A private namespace with no /dev/shm.
    None,
}

// ---------------------------------------------------------------------------------
// Sizes

/// Docker's `RAMInBytes` (go-units): a number, an optional space, and a binary unit
/// `b k m g t p` with an optional `b` or `ib` after it, case-insensitive.
pub fn parse_size(s: &str) -> Result<i64, String> {
    parse_units(s, 1024.0)
}

/// go-units `FromHumanSize`: as [`parse_size`] but with decimal units (`10m` is
/// 10,000,000 bytes). Docker reads the json-file log's `max-size` this way.
pub fn parse_human_size(s: &str) -> Result<i64, String> {
    parse_units(s, 1000.0)
}

/// A go-units size with `base` between units.
fn parse_units(s: &str, base: f64) -> Result<i64, String> {
    let Some(sep) = s.rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ') else {
        return Err(format!("invalid size: '{s}'"));
    };
    let (num, suffix) = if s.as_bytes()[sep] == b' ' {
        (&s[..sep], &s[sep + 1..])
    } else {
        (&s[..=sep], &s[sep + 1..])
    };
    let size: f64 = num
        .parse()
        .map_err(|_| format!("strconv.ParseFloat: parsing \"{num}\": invalid syntax"))?;
    if size < 0.0 || num.starts_with('-') {
        return Err(format!("invalid size: '{s}'"));
    }
    let power =
        unit_power(suffix).ok_or_else(|| format!("invalid suffix: '{}'", suffix.to_lowercase()))?;
    // Truncation towards zero is what Go's int64(float) does.
    #[allow(clippy::cast_possible_truncation)]
    Ok((size * base.powi(power)) as i64)
}

/// The power of the base a unit suffix stands for: none or `b` 0, `k` 1 … `p` 5, each
/// optionally followed by `b` or `ib`.
fn unit_power(suffix: &str) -> Option<i32> {
    if suffix.is_empty() {
        return Some(0);
    }
    let sfx = suffix.to_lowercase();
    if sfx.len() > 3 {
        return None;
    }
    let mut chars = sfx.chars();
    let unit = chars.next()?;
    let rest: String = chars.collect();
    if unit == 'b' {
        return rest.is_empty().then_some(0);
    }
    let power = match unit {
        'k' => 1,
        'm' => 2,
        'g' => 3,
        't' => 4,
        'p' => 5,
        _ => return None,
    };
    matches!(rest.as_str(), "" | "b" | "ib").then_some(power)
}

fn size_flag(flag: &'static str, value: &str) -> Result<i64, FlagError> {
    parse_size(value).map_err(|e| argument(flag, value, e))
}

/// `-m, --memory`.
pub fn parse_memory(value: &str) -> Result<i64, FlagError> {
    size_flag("-m, --memory", value)
}

/// `--memory-swap`: a size, or -1 for unlimited.
pub fn parse_memory_swap(value: &str) -> Result<i64, FlagError> {
    if value == "-1" {
        return Ok(-1);
    }
    size_flag("--memory-swap", value)
}

/// `--memory-reservation`.
pub fn parse_memory_reservation(value: &str) -> Result<i64, FlagError> {
    size_flag("--memory-reservation", value)
}

/// `--shm-size`.
pub fn parse_shm_size(value: &str) -> Result<i64, FlagError> {
    size_flag("--shm-size", value)
}

// ---------------------------------------------------------------------------------
// Numbers

/// Go's strconv.ParseInt(s, 10, 64) error wording, which Docker shows as is.
fn go_int(value: &str) -> Result<i64, String> {
    value.parse::<i64>().map_err(|e| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                "value out of range"
            }
            _ => "invalid syntax",
        };
        format!("strconv.ParseInt: parsing \"{value}\": {why}")
    })
}

/// `--cpus`: a decimal number of CPUs, stored in billionths as Docker's NanoCPUs.
pub fn parse_cpus(value: &str) -> Result<i64, FlagError> {
    let bad = || {
        argument(
            "--cpus",
            value,
            format!("failed to parse {value} as a rational number"),
        )
    };
    let (int, frac) = value.split_once('.').unwrap_or((value, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return Err(bad());
    }
    let frac_trim = frac.trim_end_matches('0');
    if frac_trim.len() > 9 {
        return Err(argument("--cpus", value, "value is too precise"));
    }
    let whole: i64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| bad())?
    };
    let frac_nanos: i64 = format!("{frac_trim:0<9}").parse().map_err(|_| bad())?;
    whole
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(frac_nanos))
        .ok_or_else(bad)
}

/// `-c, --cpu-shares`.
pub fn parse_cpu_shares(value: &str) -> Result<u64, FlagError> {
    let flag = "-c, --cpu-shares";
    let n = go_int(value).map_err(|e| argument(flag, value, e))?;
    // Docker passes a negative value to the kernel, which refuses it; say so earlier.
    u64::try_from(n).map_err(|_| argument(flag, value, "must not be negative"))
}

/// `--pids-limit`: -1 or 0 mean unlimited.
pub fn parse_pids_limit(value: &str) -> Result<i64, FlagError> {
    go_int(value).map_err(|e| argument("--pids-limit", value, e))
}

/// `--oom-score-adj`, with the daemon's range check.
pub fn parse_oom_score_adj(value: &str) -> Result<i32, FlagError> {
    let n = go_int(value).map_err(|e| argument("--oom-score-adj", value, e))?;
    if !(-1000..=1000).contains(&n) {
        return Err(invalid(format!(
            "Invalid value {n}, range for oom score adj is [-1000, 1000]"
        )));
    }
    Ok(i32::try_from(n).expect("in range"))
}

/// `--cpuset-cpus` / `--cpuset-mems`: `0-3,5`.
pub fn parse_cpuset(value: &str, what: &str) -> Result<String, FlagError> {
    let ok = !value.is_empty()
        && value.split(',').all(|part| {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            match (a.parse::<u32>(), b.parse::<u32>()) {
                (Ok(a), Ok(b)) => a <= b,
                _ => false,
            }
        });
    if ok {
        Ok(value.to_string())
    } else {
        Err(invalid(format!(
            "Invalid value {value} for cpuset {what}: invalid format: {value}"
        )))
    }
}

/// The daemon's check at create that `--cpuset-cpus` (`what` = "CPUs") or
/// `--cpuset-mems` ("memory nodes") names only what the host's cgroup offers:
/// `available` in the kernel's list format (`0-3,8`).
pub fn check_cpuset_available(
    requested: &str,
    available: &str,
    what: &str,
) -> Result<(), FlagError> {
    let ranges = |list: &str| -> Option<Vec<(u32, u32)>> {
        list.trim()
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|part| {
                let (a, b) = part.split_once('-').unwrap_or((part, part));
                Some((a.parse().ok()?, b.parse().ok()?))
            })
            .collect()
    };
    let have = ranges(available).unwrap_or_default();
    let offered = |n: u32| have.iter().any(|&(a, b)| a <= n && n <= b);
    // Stops at the first number not offered, so a huge range costs no more than the
    // host has CPUs.
    let all_offered = ranges(requested)
        .unwrap_or_default()
        .iter()
        .all(|&(a, b)| (a..=b).all(offered));
    if all_offered {
        Ok(())
    } else {
        Err(invalid(format!(
            "Requested {what} are not available - requested {requested}, available: {}",
            available.trim()
        )))
    }
}

// ---------------------------------------------------------------------------------
// Environment and labels

/// `-e KEY=VALUE`, or `-e KEY` which takes KEY from the caller's environment (and is
/// dropped when the caller has no such variable, as Docker does).
pub fn parse_env(
    value: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, FlagError> {
    let (key, val) = match value.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (value, None),
    };
    if key.is_empty() {
        return Err(argument(
            "-e, --env",
            value,
            format!("invalid environment variable: {value}"),
        ));
    }
    Ok(match val {
        Some(_) => Some(value.to_string()),
        None => lookup(key).map(|v| format!("{key}={v}")),
    })
}

/// The lines of an `--env-file` or `--label-file` (Docker's format: `KEY=VALUE`,
/// `# comments`, blank lines, and `KEY` alone, which for env files is looked up in
/// the caller's environment). Values are kept verbatim, quotes and trailing spaces too.
pub fn parse_kv_file(text: &str, lookup: Option<EnvLookup>) -> Result<Vec<String>, FlagError> {
    let mut out = vec![];
    for raw in text.lines() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, val) = match line.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (line, None),
        };
        if key.is_empty() {
            return Err(invalid(format!(
                "poorly formatted environment: no variable name on line '{line}'"
            )));
        }
        if key.contains(char::is_whitespace) {
            return Err(invalid(format!(
                "poorly formatted environment: variable '{key}' contains whitespaces"
            )));
        }
        match (val, lookup) {
            (Some(_), _) => out.push(line.to_string()),
            (None, Some(lookup)) => {
                if let Some(v) = lookup(key) {
                    out.push(format!("{key}={v}"));
                }
            }
            (None, None) => out.push(line.to_string()),
        }
    }
    Ok(out)
}

/// Reads an `--env-file` / `--label-file`.
pub fn read_kv_file(path: &Path, lookup: Option<EnvLookup>) -> Result<Vec<String>, FlagError> {
    let text = std::fs::read_to_string(path).map_err(|source| FlagError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    parse_kv_file(&text, lookup)
}

/// `-l KEY=VALUE` or `-l KEY` (an empty value).
pub fn parse_label(value: &str) -> Result<(String, String), FlagError> {
    let (k, v) = value.split_once('=').unwrap_or((value, ""));
    if k.is_empty() {
        return Err(argument(
            "-l, --label",
            value,
            format!("invalid label format: {value}"),
        ));
    }
    Ok((k.to_string(), v.to_string()))
}

// ---------------------------------------------------------------------------------
// Volumes and mounts

const PROPAGATIONS: [&str; 6] = [
    "shared", "slave", "private", "rshared", "rslave", "rprivate",
];

/// The modes of `-v SRC:DST:MODE`, validated as Docker does: at most one of each kind.
#[derive(Debug, Default, PartialEq, Eq)]
struct VolumeMode {
    read_only: bool,
    propagation: Option<String>,
    nocopy: bool,
}

fn parse_volume_mode(mode: &str) -> Option<VolumeMode> {
    let mut m = VolumeMode::default();
    let (mut rw, mut label, mut prop, mut copy, mut consistency) = (0, 0, 0, 0, 0);
    for opt in mode.split(',') {
        match opt {
            "ro" | "rw" => {
                rw += 1;
                m.read_only = opt == "ro";
            }
            // SELinux relabelling: accepted, nothing to do without SELinux.
            "z" | "Z" => label += 1,
            "nocopy" => {
                copy += 1;
                m.nocopy = true;
            }
            "consistent" | "cached" | "delegated" => consistency += 1,
            p if PROPAGATIONS.contains(&p) => {
                prop += 1;
                m.propagation = Some(p.to_string());
            }
            _ => return None,
        }
    }
    let at_most_one = [rw, label, prop, copy, consistency].iter().all(|n| *n <= 1);
    at_most_one.then_some(m)
}

/// Docker's names for local volumes.
pub(crate) fn valid_volume_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    first_ok
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// `-v [SRC:]DST[:MODE]`. A SRC that is not an absolute path names a volume.
pub fn parse_volume(raw: &str) -> Result<MountSpec, FlagError> {
    let spec_err = || invalid(format!("invalid volume specification: '{raw}'"));
    if raw.matches(':').count() > 2 || raw.is_empty() || raw.starts_with(':') {
        return Err(spec_err());
    }
    let parts: Vec<&str> = raw.splitn(3, ':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [dst] => (None, *dst, VolumeMode::default()),
        [src, dst] => {
            // `/foo:rw` is a destination with a mode, which volumes cannot have.
            if parse_volume_mode(dst).is_some() {
                return Err(spec_err());
            }
            (Some(*src), *dst, VolumeMode::default())
        }
        [src, dst, mode] => {
            let m =
                parse_volume_mode(mode).ok_or_else(|| invalid(format!("invalid mode: {mode}")))?;
            (Some(*src), *dst, m)
        }
        _ => return Err(spec_err()),
    };
    let is_bind = source.is_some_and(|s| s.starts_with('/'));
    let kind = if is_bind { "bind" } else { "volume" };
    if !target.starts_with('/') {
        return Err(invalid(format!(
            "invalid volume specification: '{raw}': invalid mount config for type \"{kind}\": invalid mount path: '{target}' mount path must be absolute"
        )));
    }
    if is_bind && clean_path(target) == "/" {
        return Err(invalid(format!(
            "invalid volume specification: '{raw}': invalid mount config for type \"bind\": invalid specification: destination can't be '/'"
        )));
    }
    match source {
        Some(src) if is_bind => {
            if mode.nocopy {
                return Err(invalid(format!("invalid mode: {}", parts[2])));
            }
            Ok(MountSpec::Bind {
                source: PathBuf::from(src),
                target: clean_path(target),
                read_only: mode.read_only,
                propagation: mode.propagation,
                must_exist: false,
            })
        }
        Some(name) => {
            if !valid_volume_name(name) {
                return Err(invalid(format!(
                    "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
                )));
            }
            Ok(MountSpec::Volume {
                name: Some(name.to_string()),
                target: clean_path(target),
                read_only: mode.read_only,
                nocopy: mode.nocopy,
                create: VolumeOptions::default(),
            })
        }
        None => Ok(MountSpec::Volume {
            name: None,
            target: clean_path(target),
            read_only: false,
            nocopy: false,
            create: VolumeOptions::default(),
        }),
    }
}

/// Lexical clean-up of a container path (`/a//b/./` → `/a/b`), like Go's path.Clean for
/// absolute paths; `..` is kept for the runtime to resolve inside the rootfs.
pub(crate) fn clean_path(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" => Some(true),
        "0" | "f" | "false" => Some(false),
        _ => None,
    }
}

/// `--mount type=bind|volume|tmpfs,src=…,dst=…,…` (the CLI's CSV syntax).
pub fn parse_mount(value: &str) -> Result<MountSpec, FlagError> {
    let arg = |reason: String| argument("--mount", value, reason);
    let mut typ = "volume".to_string();
    let mut source: Option<String> = None;
    let mut target: Option<String> = None;
    let mut read_only = false;
    let mut propagation = None;
    let mut nocopy = false;
    let mut tmpfs_size: Option<i64> = None;
    let mut tmpfs_mode: Option<u32> = None;
    let mut create = VolumeOptions::default();
    let fields = csv_fields(value).ok_or_else(|| arg("unterminated quote".to_string()))?;
    for field in &fields {
        let field = field.as_str();
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        let flag_value = |key: &str| -> Result<bool, FlagError> {
            match val {
                None => Ok(true),
                Some(v) => {
                    parse_bool(v).ok_or_else(|| arg(format!("invalid value for {key}: {v}")))
                }
            }
        };
        match key.as_str() {
            "readonly" | "ro" => read_only = flag_value(&key)?,
            "volume-nocopy" => nocopy = flag_value(&key)?,
            _ if val.is_none() => {
                return Err(arg(format!(
                    "invalid field '{field}' must be a key=value pair"
                )))
            }
            "type" => typ = val.unwrap_or_default().to_string(),
            "source" | "src" => source = val.map(str::to_string),
            "target" | "dst" | "destination" => target = val.map(str::to_string),
            "bind-propagation" => {
                let p = val.unwrap_or_default();
                if !PROPAGATIONS.contains(&p) {
                    return Err(arg(format!("invalid bind propagation: {p}")));
                }
                propagation = Some(p.to_string());
            }
            "tmpfs-size" => {
                let v = val.unwrap_or_default();
                tmpfs_size = Some(parse_size(v).map_err(arg)?);
            }
            "tmpfs-mode" => {
                let v = val.unwrap_or_default();
                let m = u32::from_str_radix(v, 8).map_err(|_| {
                    arg(format!(
                        "strconv.ParseUint: parsing \"{v}\": invalid syntax"
                    ))
                })?;
                tmpfs_mode = Some(m);
            }
            "volume-driver" => create.driver = val.map(str::to_string),
            "volume-label" | "volume-opt" => {
                let v = val.unwrap_or_default();
                let (k, v) = v.split_once('=').unwrap_or((v, ""));
                let map = if key == "volume-label" {
                    &mut create.labels
                } else {
                    &mut create.options
                };
                map.insert(k.to_string(), v.to_string());
            }
            // Accepted for compatibility; it only matters on Docker Desktop.
            "consistency" => {}
            _ => return Err(arg(format!("unexpected key '{key}' in '{field}'"))),
        }
    }
    let target = target.ok_or_else(|| arg("target is required".to_string()))?;
    let config_err = |why: &str| invalid(format!("invalid mount config for type \"{typ}\": {why}"));
    if !target.starts_with('/') {
        return Err(config_err(&format!(
            "invalid mount path: '{target}' mount path must be absolute"
        )));
    }
    if typ != "volume" && !create.is_empty() {
        return Err(config_err("field VolumeOptions must not be specified"));
    }
    match typ.as_str() {
        "bind" => {
            let source = source
                .filter(|s| !s.is_empty())
                .ok_or_else(|| config_err("field Source must not be empty"))?;
            if !source.starts_with('/') {
                return Err(config_err(&format!(
                    "invalid mount path: '{source}' mount path must be absolute"
                )));
            }
            if clean_path(&target) == "/" {
                return Err(config_err(
                    "invalid specification: destination can't be '/'",
                ));
            }
            Ok(MountSpec::Bind {
                source: PathBuf::from(source),
                target: clean_path(&target),
                read_only,
                propagation,
                must_exist: true,
            })
        }
        "volume" => {
            match source.as_deref().filter(|s| !s.is_empty()) {
                // The local driver's refusal, as the daemon reports it for -v too.
                Some(name) if !valid_volume_name(name) => {
                    return Err(invalid(format!(
                        "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
                    )));
                }
                None if read_only => {
                    return Err(config_err(
                        "must not set ReadOnly mode when using anonymous volumes",
                    ));
                }
                _ => {}
            }
            Ok(MountSpec::Volume {
                name: source.filter(|s| !s.is_empty()),
                target: clean_path(&target),
                read_only,
                nocopy,
                create,
            })
        }
        "tmpfs" => {
            if source.is_some_and(|s| !s.is_empty()) {
                return Err(config_err("field Source must not be specified"));
            }
            let mut options = vec![];
            if read_only {
                options.push("ro".to_string());
            }
            if let Some(m) = tmpfs_mode {
                options.push(format!("mode={m:o}"));
            }
            if let Some(size) = tmpfs_size.filter(|s| *s > 0) {
                options.push(format!("size={}", tmpfs_size_string(size)));
            }
            Ok(MountSpec::Tmpfs {
                target: clean_path(&target),
                options,
            })
        }
        _ => Err(config_err("mount type unknown")),
    }
}

/// One line of CSV as Go's encoding/csv reads `--mount`: a field in double quotes may
/// hold commas, `""` is a quote inside it. `None` for an unterminated quote.
fn csv_fields(line: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => break,
                    c => field.push(c),
                }
            }
            // Anything after the closing quote up to the comma belongs to the field.
            while let Some(c) = chars.next_if(|c| *c != ',') {
                field.push(c);
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                field.push(c);
            }
        }
        out.push(field);
        if chars.next().is_none() {
            return Some(out);
        }
    }
}

/// Docker writes a tmpfs size with the largest unit that divides it: `1m`, `512k`.
fn tmpfs_size_string(size: i64) -> String {
    for (suffix, divisor) in [("g", 1i64 << 30), ("m", 1 << 20), ("k", 1 << 10)] {
        if size % divisor == 0 {
            return format!("{}{suffix}", size / divisor);
        }
    }
    size.to_string()
}

/// `--tmpfs DST[:OPTIONS]`.
pub fn parse_tmpfs(value: &str) -> Result<MountSpec, FlagError> {
    let (target, opts) = value.split_once(':').unwrap_or((value, ""));
    if !target.starts_with('/') {
        return Err(invalid(format!(
            "invalid mount path: '{target}' mount path must be absolute"
        )));
    }
    let options = opts
        .split(',')
        .filter(|o| !o.is_empty())
        .map(str::to_string)
        .collect();
    Ok(MountSpec::Tmpfs {
        target: clean_path(target),
        options,
    })
}

// ---------------------------------------------------------------------------------
// Limits, capabilities, security

/// The names `--ulimit` accepts (go-units' table).
pub const ULIMIT_NAMES: [&str; 16] = [
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// `--ulimit name=soft[:hard]`.
pub fn parse_ulimit(value: &str) -> Result<Ulimit, FlagError> {
    let arg = |reason: String| argument("--ulimit", value, reason);
    let (name, limits) = value
        .split_once('=')
        .ok_or_else(|| arg(format!("invalid ulimit argument: {value}")))?;
    if !ULIMIT_NAMES.contains(&name) {
        return Err(arg(format!("invalid ulimit type: {name}")));
    }
    let parts: Vec<&str> = limits.split(':').collect();
    if parts.len() > 2 {
        return Err(arg(format!(
            "too many limit value arguments - {limits}, can only have up to two, `soft[:hard]`"
        )));
    }
    let soft = go_int(parts[0]).map_err(arg)?;
    let hard = match parts.get(1) {
        Some(h) => go_int(h).map_err(arg)?,
        None => soft,
    };
    if soft > hard {
        return Err(arg(format!(
            "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
        )));
    }
    Ok(Ulimit {
        name: name.to_string(),
        soft,
        hard,
    })
}

/// Every capability Docker knows (as of Linux 5.9), in the kernel's order: the index is
/// the capability's number.
pub const ALL_CAPS: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Docker's default capabilities, in Docker's order.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// A `--cap-add`/`--cap-drop` value: case-insensitive, `CAP_` optional, or `ALL`.
/// `which` is `CapAdd` or `CapDrop`, for Docker's message.
pub fn parse_capability(value: &str, which: &str) -> Result<String, FlagError> {
    let upper = value.to_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let name = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if ALL_CAPS.contains(&name.as_str()) {
        Ok(name)
    } else {
        Err(invalid(format!(
            "invalid {which}: unknown capability: \"{name}\""
        )))
    }
}

/// One `--security-opt`. `read_file` reads `seccomp=FILE` (the CLI reads it, as Docker's).
pub fn parse_security_opt(
    value: &str,
    into: &mut SecurityOptions,
    read_file: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<(), FlagError> {
    if value == "no-new-privileges" {
        into.no_new_privileges = true;
        return Ok(());
    }
    // `key=value`, and the older `key:value`.
    let Some((key, val)) = value.split_once('=').or_else(|| value.split_once(':')) else {
        return Err(invalid(format!("Invalid --security-opt: \"{value}\"")));
    };
    match key {
        "no-new-privileges" => {
            into.no_new_privileges = parse_bool(val)
                .ok_or_else(|| invalid(format!("invalid --security-opt 2: \"{value}\"")))?;
        }
        "seccomp" if val == "unconfined" => into.seccomp = SeccompChoice::Unconfined,
        "seccomp" => {
            let path = Path::new(val);
            let text = read_file(path).map_err(|e| {
                invalid(format!(
                    "opening seccomp profile ({val}) failed: open {val}: {}",
                    io_reason(&e)
                ))
            })?;
            into.seccomp = SeccompChoice::Profile(text);
        }
        "systempaths" if val == "unconfined" => into.unmask_system_paths = true,
        "apparmor" | "label" => into.ignored.push(value.to_string()),
        _ => return Err(invalid(format!("Invalid --security-opt: \"{value}\""))),
    }
    Ok(())
}

/// An io error the way Go prints it: `no such file or directory`.
fn io_reason(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_lowercase(),
        None => e.to_string(),
    }
}

/// `--device HOST[:CONTAINER][:PERMS]`.
pub fn parse_device(value: &str) -> Result<DeviceMapping, FlagError> {
    let valid_mode =
        |m: &str| !m.is_empty() && m.len() <= 3 && m.chars().all(|c| "rwm".contains(c));
    let parts: Vec<&str> = value.split(':').collect();
    let (host, container, perms) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, p] if valid_mode(p) => (*h, *h, *p),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] => {
            if !valid_mode(p) {
                return Err(invalid(format!("bad mode specified: {p}")));
            }
            (*h, *c, *p)
        }
        _ => return Err(invalid(format!("invalid device specification: {value}"))),
    };
    if !container.starts_with('/') {
        return Err(invalid(format!("{container} is not an absolute path")));
    }
    Ok(DeviceMapping {
        host: PathBuf::from(host),
        container: container.to_string(),
        permissions: perms.to_string(),
    })
}

/// `--stop-signal`: a name (`SIGTERM`, `term`) or a number.
pub fn parse_signal(value: &str) -> Result<i32, FlagError> {
    let bad = || invalid(format!("Invalid signal: {value}"));
    if let Ok(n) = value.parse::<i32>() {
        return if n > 0 && n <= libc::SIGRTMAX() {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let upper = value.to_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    name.parse::<nix::sys::signal::Signal>()
        .or_else(|_| format!("SIG{name}").parse::<nix::sys::signal::Signal>())
        .map(|s| s as i32)
        .map_err(|_| bad())
}

/// The sysctls Docker lets a container set (its `ValidateSysctl`).
pub fn parse_sysctl(value: &str) -> Result<(String, String), FlagError> {
    const ALLOWED: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let not_allowed = || {
        argument(
            "--sysctl",
            value,
            format!("sysctl '{value}' is not allowed"),
        )
    };
    let (key, val) = value.split_once('=').ok_or_else(not_allowed)?;
    let allowed =
        ALLOWED.contains(&key) || key.starts_with("fs.mqueue.") || key.starts_with("net.");
    if !allowed {
        return Err(not_allowed());
    }
    Ok((key.to_string(), val.to_string()))
}

/// `--add-host NAME:ADDRESS` (`host-gateway` allowed as the address).
pub fn parse_add_host(value: &str) -> Result<(String, String), FlagError> {
    let flag = "--add-host";
    let (name, addr) = value
        .split_once(':')
        .filter(|(n, _)| !n.is_empty())
        .ok_or_else(|| argument(flag, value, format!("bad format for add-host: \"{value}\"")))?;
    if addr != "host-gateway" && addr.parse::<IpAddr>().is_err() {
        return Err(argument(
            flag,
            value,
            format!("invalid IP address in add-host: \"{addr}\""),
        ));
    }
    Ok((name.to_string(), addr.to_string()))
}

/// `--dns ADDRESS`.
pub fn parse_dns(value: &str) -> Result<String, FlagError> {
    value
        .parse::<IpAddr>()
        .map(|_| value.to_string())
        .map_err(|_| {
            argument(
                "--dns",
                value,
                format!("IP address is not correctly formatted: {value}"),
            )
        })
}

/// `--network`.
pub fn parse_network(value: &str) -> NetworkMode {
    match value {
        "" | "default" | "bridge" => NetworkMode::Default,
        "none" => NetworkMode::None,
        "host" => NetworkMode::Host,
        other => NetworkMode::Other(other.to_string()),
    }
}

/// `--ipc`.
pub fn parse_ipc(value: &str) -> Result<IpcMode, FlagError> {
    match value {
        "" | "private" | "shareable" => Ok(IpcMode::Private),
        "host" => Ok(IpcMode::Host),
        "none" => Ok(IpcMode::None),
        _ => Err(invalid("--ipc: invalid IPC mode")),
    }
}

/// `--pid`: only `host` so far (`container:ID` needs the store).
pub fn parse_pid(value: &str) -> Result<bool, FlagError> {
    match value {
        "" => Ok(false),
        "host" => Ok(true),
        _ => Err(invalid("--pid: invalid PID mode")),
    }
}

/// `--uts`.
pub fn parse_uts(value: &str) -> Result<bool, FlagError> {
    match value {
        "" => Ok(false),
        "host" => Ok(true),
        _ => Err(invalid("--uts: invalid UTS mode")),
    }
}

impl RunOptions {
    /// The checks Docker makes in the daemon on combinations of flags. `host_cpus` is
    /// the number of CPUs for the `--cpus` range.
    pub fn validate(&self, host_cpus: usize) -> Result<(), FlagError> {
        const MIN_MEMORY: i64 = 6 * 1024 * 1024;
        let memory = self.memory.unwrap_or(0);
        if memory > 0 && memory < MIN_MEMORY {
            return Err(invalid("Minimum memory limit allowed is 6MB"));
        }
        let swap = self.memory_swap.unwrap_or(0);
        if swap > 0 && memory == 0 {
            return Err(invalid(
                "You should always set the Memory limit when using Memoryswap limit, see usage",
            ));
        }
        if memory > 0 && swap > 0 && swap < memory {
            return Err(invalid(
                "Minimum memoryswap limit should be larger than memory limit, see usage",
            ));
        }
        let reservation = self.memory_reservation.unwrap_or(0);
        if reservation > 0 && reservation < MIN_MEMORY {
            return Err(invalid("Minimum memory reservation allowed is 6MB"));
        }
        if memory > 0 && reservation > 0 && memory < reservation {
            return Err(invalid(
                "Minimum memory limit can not be less than memory reservation limit, see usage",
            ));
        }
        if let Some(nano) = self.nano_cpus {
            let max = i64::try_from(host_cpus).unwrap_or(i64::MAX) * 1_000_000_000;
            if nano != 0 && !(10_000_000..=max).contains(&nano) {
                return Err(invalid(format!(
                    "Range of CPUs is from 0.01 to {host_cpus}.00, as there are only {host_cpus} CPUs available"
                )));
            }
        }
        // `--network host` with `-h` is allowed: the container keeps a UTS namespace of
        // its own (Docker refuses a host name only with `--network container:…`).
        if self.hostname.is_some() && self.uts_host {
            return Err(invalid("Conflicting options: hostname and the UTS mode"));
        }
        // Docker's runconfig checks for a container that joins another's network.
        if matches!(&self.network, NetworkMode::Other(n) if n.starts_with("container:")) {
            let conflict = |what: &str| Err(invalid(format!("conflicting options: {what}")));
            if self.hostname.is_some() {
                return conflict("hostname and the network mode");
            }
            if !self.dns.is_empty() || !self.dns_search.is_empty() || !self.dns_options.is_empty() {
                return conflict("dns and the network mode");
            }
            if !self.extra_hosts.is_empty() {
                return conflict("custom host-to-IP mapping and the network mode");
            }
            if !self.publish.is_empty() || self.publish_all {
                return conflict("port publishing and the container type network mode");
            }
            if !self.expose.is_empty() {
                return conflict("port exposing and the container type network mode");
            }
        }
        if let Some(sig) = &self.stop_signal {
            parse_signal(sig)?;
        }
        let mut targets = std::collections::HashSet::new();
        for m in &self.mounts {
            if !targets.insert(m.target()) {
                return Err(invalid(format!("Duplicate mount point: {}", m.target())));
            }
        }
        Ok(())
    }

    /// Host-side checks Docker makes when the container is created: `--mount` bind
    /// sources must exist (`-v` sources are made at start instead: `make_bind_sources`).
    pub fn check_bind_sources(&self) -> Result<(), FlagError> {
        for m in &self.mounts {
            if let MountSpec::Bind {
                source,
                must_exist: true,
                ..
            } = m
            {
                if !source.exists() {
                    return Err(invalid(format!(
                        "invalid mount config for type \"bind\": bind source path does not exist: {}",
                        source.display()
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let ok = [
            ("0", 0),
            ("12", 12),
            ("12b", 12),
            ("12B", 12),
            ("1k", 1024),
            ("1K", 1024),
            ("1kb", 1024),
            ("1KiB", 1024),
            ("64m", 64 << 20),
            ("64 m", 64 << 20),
            ("1.5g", 3 << 29),
            ("2t", 2 << 40),
            ("1p", 1 << 50),
        ];
        for (s, want) in ok {
            assert_eq!(parse_size(s), Ok(want), "{s}");
        }
        let bad = [
            ("12x", "invalid suffix: 'x'"),
            ("x", "invalid size: 'x'"),
            ("", "invalid size: ''"),
            ("-1", "invalid size: '-1'"),
            ("1kx", "invalid suffix: 'kx'"),
            ("1bb", "invalid suffix: 'bb'"),
            (
                "1.2.3m",
                "strconv.ParseFloat: parsing \"1.2.3\": invalid syntax",
            ),
        ];
        for (s, want) in bad {
            assert_eq!(parse_size(s), Err(want.to_string()), "{s}");
        }
    }

    #[test]
    fn flag_errors_match_docker() {
        let cases: Vec<(Result<(), FlagError>, &str)> = vec![
            (parse_memory("12x").map(drop), "invalid argument \"12x\" for \"-m, --memory\" flag: invalid suffix: 'x'"),
            (parse_shm_size("x").map(drop), "invalid argument \"x\" for \"--shm-size\" flag: invalid size: 'x'"),
            (parse_cpus("x").map(drop), "invalid argument \"x\" for \"--cpus\" flag: failed to parse x as a rational number"),
            (parse_ulimit("nofile").map(drop), "invalid argument \"nofile\" for \"--ulimit\" flag: invalid ulimit argument: nofile"),
            (parse_ulimit("foo=1").map(drop), "invalid argument \"foo=1\" for \"--ulimit\" flag: invalid ulimit type: foo"),
            (parse_ulimit("nofile=2:1").map(drop), "invalid argument \"nofile=2:1\" for \"--ulimit\" flag: ulimit soft limit must be less than or equal to hard limit: 2 > 1"),
            (parse_ulimit("nofile=1:2:3").map(drop), "invalid argument \"nofile=1:2:3\" for \"--ulimit\" flag: too many limit value arguments - 1:2:3, can only have up to two, `soft[:hard]`"),
            (parse_ulimit("nofile=x").map(drop), "invalid argument \"nofile=x\" for \"--ulimit\" flag: strconv.ParseInt: parsing \"x\": invalid syntax"),
            (parse_volume("a:b:c:d").map(drop), "invalid volume specification: 'a:b:c:d'"),
            (parse_volume("a:/b:xx").map(drop), "invalid mode: xx"),
            (parse_volume("/a:/b:ro,rw").map(drop), "invalid mode: ro,rw"),
            (parse_volume("/:/").map(drop), "invalid volume specification: '/:/': invalid mount config for type \"bind\": invalid specification: destination can't be '/'"),
            (parse_volume("x!:/y").map(drop), "create x!: \"x!\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"),
            (parse_volume("/data:rw").map(drop), "invalid volume specification: '/data:rw'"),
            (parse_mount("src=a/b,dst=/x").map(drop), "create a/b: \"a/b\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"),
            (parse_mount("type=volume,dst=/x,readonly").map(drop), "invalid mount config for type \"volume\": must not set ReadOnly mode when using anonymous volumes"),
            (parse_mount("type=foo,dst=/x").map(drop), "invalid mount config for type \"foo\": mount type unknown"),
            (parse_mount("type=bind,dst=/x").map(drop), "invalid mount config for type \"bind\": field Source must not be empty"),
            (parse_mount("type=volume,src=a,dst=/x,bogus=1").map(drop), "invalid argument \"type=volume,src=a,dst=/x,bogus=1\" for \"--mount\" flag: unexpected key 'bogus' in 'bogus=1'"),
            (parse_mount("type=tmpfs,src=/a,dst=/x").map(drop), "invalid mount config for type \"tmpfs\": field Source must not be specified"),
            (parse_mount("type=bind,src=/a,dst=/x,volume-opt=o=ro").map(drop), "invalid mount config for type \"bind\": field VolumeOptions must not be specified"),
            (parse_mount("dst").map(drop), "invalid argument \"dst\" for \"--mount\" flag: invalid field 'dst' must be a key=value pair"),
            (parse_tmpfs("x").map(drop), "invalid mount path: 'x' mount path must be absolute"),
            (parse_capability("foo", "CapAdd").map(drop), "invalid CapAdd: unknown capability: \"CAP_FOO\""),
            (parse_device("/dev/null:rel").map(drop), "rel is not an absolute path"),
            (parse_device("/dev/null:/x:q").map(drop), "bad mode specified: q"),
            (parse_signal("FOO").map(drop), "Invalid signal: FOO"),
            (parse_sysctl("foo").map(drop), "invalid argument \"foo\" for \"--sysctl\" flag: sysctl 'foo' is not allowed"),
            (parse_sysctl("kernel.foo=1").map(drop), "invalid argument \"kernel.foo=1\" for \"--sysctl\" flag: sysctl 'kernel.foo=1' is not allowed"),
            (parse_env("=x", &|_| None).map(drop), "invalid argument \"=x\" for \"-e, --env\" flag: invalid environment variable: =x"),
            (parse_add_host("foo").map(drop), "invalid argument \"foo\" for \"--add-host\" flag: bad format for add-host: \"foo\""),
            (parse_add_host("foo:bar").map(drop), "invalid argument \"foo:bar\" for \"--add-host\" flag: invalid IP address in add-host: \"bar\""),
            (parse_dns("x").map(drop), "invalid argument \"x\" for \"--dns\" flag: IP address is not correctly formatted: x"),
            (parse_pids_limit("x").map(drop), "invalid argument \"x\" for \"--pids-limit\" flag: strconv.ParseInt: parsing \"x\": invalid syntax"),
            (parse_cpu_shares("x").map(drop), "invalid argument \"x\" for \"-c, --cpu-shares\" flag: strconv.ParseInt: parsing \"x\": invalid syntax"),
            (parse_oom_score_adj("2000").map(drop), "Invalid value 2000, range for oom score adj is [-1000, 1000]"),
            (parse_pid("bogus").map(drop), "--pid: invalid PID mode"),
            (parse_cpuset("x", "cpus").map(drop), "Invalid value x for cpuset cpus: invalid format: x"),
        ];
        for (got, want) in cases {
            assert_eq!(got.unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn cpusets_must_be_available() {
        assert!(check_cpuset_available("0", "0-1", "CPUs").is_ok());
        assert!(check_cpuset_available("0-1,3", "0-1,3-7", "CPUs").is_ok());
        assert_eq!(
            check_cpuset_available("1-2", "0-1\n", "CPUs")
                .unwrap_err()
                .to_string(),
            "Requested CPUs are not available - requested 1-2, available: 0-1"
        );
        assert!(check_cpuset_available("0-4294967295", "0-1", "CPUs").is_err());
        assert!(check_cpuset_available("1", "0", "memory nodes")
            .unwrap_err()
            .to_string()
            .starts_with("Requested memory nodes are not available"));
    }

    #[test]
    fn security_opts() {
        let no_file = |_: &Path| Err(std::io::Error::from_raw_os_error(libc::ENOENT));
        let mut s = SecurityOptions::default();
        for opt in [
            "no-new-privileges",
            "seccomp=unconfined",
            "apparmor=foo",
            "label=disable",
        ] {
            parse_security_opt(opt, &mut s, &no_file).unwrap();
        }
        assert!(s.no_new_privileges);
        assert_eq!(s.seccomp, SeccompChoice::Unconfined);
        assert_eq!(s.ignored, ["apparmor=foo", "label=disable"]);
        parse_security_opt("no-new-privileges:false", &mut s, &no_file).unwrap();
        assert!(!s.no_new_privileges);
        let err = |v: &str| {
            parse_security_opt(v, &mut SecurityOptions::default(), &no_file)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(err("foo"), "Invalid --security-opt: \"foo\"");
        assert_eq!(
            err("no-new-privileges=maybe"),
            "invalid --security-opt 2: \"no-new-privileges=maybe\""
        );
        assert_eq!(
            err("seccomp=/nonexist"),
            "opening seccomp profile (/nonexist) failed: open /nonexist: no such file or directory"
        );
    }

    #[test]
    fn volumes() {
        assert_eq!(
            parse_volume("/src:/dst:ro,rslave").unwrap(),
            MountSpec::Bind {
                source: "/src".into(),
                target: "/dst".into(),
                read_only: true,
                propagation: Some("rslave".into()),
                must_exist: false
            }
        );
        assert_eq!(
            parse_volume("data:/var/lib/x:nocopy").unwrap(),
            MountSpec::Volume {
                name: Some("data".into()),
                target: "/var/lib/x".into(),
                read_only: false,
                nocopy: true,
                create: VolumeOptions::default(),
            }
        );
        assert_eq!(
            parse_volume("/anon/").unwrap(),
            MountSpec::Volume {
                name: None,
                target: "/anon".into(),
                read_only: false,
                nocopy: false,
                create: VolumeOptions::default(),
            }
        );
        assert!(parse_volume("/a:/b:z").is_ok());
        assert!(parse_volume("/a:/b:ro,Z,shared").is_ok());
        assert!(parse_volume("/a:/b:ro,z,Z").is_err());
    }

    #[test]
    fn mounts() {
        assert_eq!(
            parse_mount("type=tmpfs,dst=/t,tmpfs-size=1m,tmpfs-mode=1700").unwrap(),
            MountSpec::Tmpfs {
                target: "/t".into(),
                options: vec!["mode=1700".into(), "size=1m".into()]
            }
        );
        assert_eq!(
            parse_mount("type=bind,source=/a,target=/b,readonly,bind-propagation=shared").unwrap(),
            MountSpec::Bind {
                source: "/a".into(),
                target: "/b".into(),
                read_only: true,
                propagation: Some("shared".into()),
                must_exist: true
            }
        );
        assert_eq!(
            parse_mount("src=vol,dst=/v,ro=false,volume-nocopy").unwrap(),
            MountSpec::Volume {
                name: Some("vol".into()),
                target: "/v".into(),
                read_only: false,
                nocopy: true,
                create: VolumeOptions::default(),
            }
        );
        assert_eq!(
            parse_mount(
                "dst=/f,volume-driver=local,volume-label=team=db,\"volume-opt=o=size=1m,mode=0700\",volume-opt=type=tmpfs"
            )
            .unwrap(),
            MountSpec::Volume {
                name: None,
                target: "/f".into(),
                read_only: false,
                nocopy: false,
                create: VolumeOptions {
                    driver: Some("local".into()),
                    labels: BTreeMap::from([("team".into(), "db".into())]),
                    options: BTreeMap::from([
                        ("o".into(), "size=1m,mode=0700".into()),
                        ("type".into(), "tmpfs".into()),
                    ]),
                },
            }
        );
        assert_eq!(
            csv_fields("a,\"b,\"\"c\"\"\",,d").unwrap(),
            ["a", "b,\"c\"", "", "d"]
        );
        assert!(csv_fields("a,\"b").is_none());
        assert_eq!(
            parse_tmpfs("/run:rw,size=65536k,exec").unwrap(),
            MountSpec::Tmpfs {
                target: "/run".into(),
                options: vec!["rw".into(), "size=65536k".into(), "exec".into()]
            }
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_cpus("1.5").unwrap(), 1_500_000_000);
        assert_eq!(parse_cpus(".01").unwrap(), 10_000_000);
        assert_eq!(parse_cpus("2").unwrap(), 2_000_000_000);
        assert!(parse_cpus("0.0000000001").is_err());
        assert_eq!(parse_memory_swap("-1").unwrap(), -1);
        assert_eq!(
            parse_ulimit("nofile=100:200").unwrap().oci_name(),
            "RLIMIT_NOFILE"
        );
        assert_eq!(parse_ulimit("nproc=7").unwrap().hard, 7);
        assert_eq!(parse_signal("SIGTERM").unwrap(), 15);
        assert_eq!(parse_signal("kill").unwrap(), 9);
        assert_eq!(parse_signal("10").unwrap(), 10);
        assert_eq!(
            parse_capability("net_admin", "CapAdd").unwrap(),
            "CAP_NET_ADMIN"
        );
        assert_eq!(
            parse_capability("Cap_Chown", "CapDrop").unwrap(),
            "CAP_CHOWN"
        );
        assert_eq!(parse_capability("all", "CapDrop").unwrap(), "ALL");
        assert_eq!(parse_cpuset("0-2,4", "cpus").unwrap(), "0-2,4");
    }

    #[test]
    fn env_and_files() {
        let lookup = |k: &str| (k == "HOME").then(|| "/root".to_string());
        assert_eq!(
            parse_env("A=b=c", &lookup).unwrap().as_deref(),
            Some("A=b=c")
        );
        assert_eq!(
            parse_env("HOME", &lookup).unwrap().as_deref(),
            Some("HOME=/root")
        );
        assert_eq!(parse_env("NOPE", &lookup).unwrap(), None);
        let text = "# comment\n\n  A=1\nB= spaced \nHOME\nNOPE\nC=\"q\"\n";
        assert_eq!(
            parse_kv_file(text, Some(&lookup)).unwrap(),
            ["A=1", "B= spaced ", "HOME=/root", "C=\"q\""]
        );
        assert_eq!(parse_kv_file("X\n", None).unwrap(), ["X"]);
        assert_eq!(
            parse_kv_file("A B=1\n", None).unwrap_err().to_string(),
            "poorly formatted environment: variable 'A B' contains whitespaces"
        );
        let missing = read_kv_file(Path::new("/nonexist"), None).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "open /nonexist: no such file or directory"
        );
        assert_eq!(parse_label("a=b").unwrap(), ("a".into(), "b".into()));
        assert_eq!(parse_label("a").unwrap(), ("a".into(), String::new()));
    }

    #[test]
    fn daemon_checks() {
        let mb = 1 << 20;
        let check = |f: &dyn Fn(&mut RunOptions)| {
            let mut o = RunOptions::default();
            f(&mut o);
            o.validate(2).err().map(|e| e.to_string())
        };
        assert_eq!(
            check(&|o| o.memory = Some(1024)).unwrap(),
            "Minimum memory limit allowed is 6MB"
        );
        assert_eq!(
            check(&|o| o.memory_swap = Some(100 * mb)).unwrap(),
            "You should always set the Memory limit when using Memoryswap limit, see usage"
        );
        assert_eq!(
            check(&|o| {
                o.memory = Some(100 * mb);
                o.memory_swap = Some(50 * mb);
            })
            .unwrap(),
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        );
        assert_eq!(
            check(&|o| {
                o.memory = Some(100 * mb);
                o.memory_reservation = Some(200 * mb);
            })
            .unwrap(),
            "Minimum memory limit can not be less than memory reservation limit, see usage"
        );
        assert_eq!(
            check(&|o| o.nano_cpus = Some(1000 * 1_000_000_000)).unwrap(),
            "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"
        );
        assert_eq!(
            check(&|o| {
                o.mounts = vec![parse_tmpfs("/x").unwrap(), parse_volume("/a:/x").unwrap()];
            })
            .unwrap(),
            "Duplicate mount point: /x"
        );
        assert_eq!(check(&|o| o.memory_swap = Some(-1)), None);
    }
}
