//! The OCI runtime spec (config.json) Docker would generate for `docker run`.
//!
//! [`build_spec`] merges the image config and [`RunOptions`] with Docker's defaults:
//! its capability set, namespaces, mounts, masked and read-only paths, device rules,
//! environment, sysctls and seccomp profile. The values were checked against
//! config.json files written by dockerd 20.10.24 on this machine; where berth differs
//! on purpose it says so below.
//!
//! The spec is assembled as JSON in config.json's own shape and then decoded into
//! `oci_spec`'s types, so a field we get wrong fails here, before any runtime sees it.
//! Everything host-specific comes in through [`SpecContext`]; the only host reads here
//! are device nodes (`--device`, `--privileged`) and the host name (`--network host`).

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::flags::{
    FlagError, IpcMode, MountSpec, NetworkMode, RunOptions, SeccompChoice, ALL_CAPS, DEFAULT_CAPS,
};
use crate::seccomp::{self, SeccompError, Target};
use crate::user::{self, UserError, UserLookup};

/// Docker's PATH when the image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where `--init` puts the init binary in the container (Docker's path, which some
/// images and scripts look for).
pub const INIT_PATH: &str = "/sbin/docker-init";

/// Docker's default /dev/shm size: 64 MiB.
pub const DEFAULT_SHM_SIZE: i64 = 64 << 20;

const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    // Docker ≥ 20.10.x upstream (CVE-2020-8694); Debian's 20.10.24 lacks it.
    "/sys/devices/virtual/powercap",
];

const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error(transparent)]
    Flag(#[from] FlagError),
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    /// Docker's message when neither the image nor the flags give a command.
    #[error("No command specified")]
    NoCommand,
    #[error("the working directory '{0}' is invalid, it needs to be an absolute path")]
    RelativeWorkdir(String),
    #[error("invalid image config: {0}")]
    ImageConfig(serde_json::Error),
    #[error("no host directory was prepared for volume {0}")]
    MissingVolume(String),
    #[error("--init: no init binary is configured")]
    NoInit,
    #[error("error gathering device information while adding custom device \"{}\": {reason}", path.display())]
    Device { path: PathBuf, reason: String },
    #[error("network {0} not found")]
    Network(String),
    /// The assembled spec did not decode: a bug here, not a user error.
    #[error("generated spec is invalid: {0}")]
    Generated(serde_json::Error),
}

/// The image config fields that shape a container (Docker's `ContainerConfig` names).
/// Fields the spec does not use (ExposedPorts, Healthcheck, StopSignal, Labels) are the
/// engine's business and are not read here.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub volumes: Option<BTreeMap<String, Value>>,
}

impl ImageConfig {
    /// Reads either a whole image config blob (`{"config": {...}, "rootfs": ...}`) or
    /// just its `config` object.
    pub fn from_value(v: &Value) -> Result<ImageConfig, SpecError> {
        let inner = match v.get("config") {
            Some(c) if c.is_object() => c,
            Some(Value::Null) => return Ok(ImageConfig::default()),
            _ => v,
        };
        serde_json::from_value(inner.clone()).map_err(SpecError::ImageConfig)
    }
}

/// The files the engine wrote for the container, bound over the image's.
#[derive(Debug, Default, Clone)]
pub struct EtcFiles {
    pub hosts: Option<PathBuf>,
    pub hostname: Option<PathBuf>,
    pub resolv_conf: Option<PathBuf>,
}

/// What the engine prepared before the spec is built.
pub struct SpecContext<'a> {
    /// The mounted rootfs (overlay snapshot).
    pub rootfs: PathBuf,
    /// The full container id; its first 12 characters are the default host name.
    pub id: String,
    /// Host paths of /etc/hosts, /etc/hostname, /etc/resolv.conf.
    pub etc: EtcFiles,
    /// Named volumes (`-v NAME:/path`, `--mount src=NAME`) → host directories.
    pub volumes: HashMap<String, PathBuf>,
    /// Anonymous volumes (`-v /path`, image VOLUMEs) by container path → host directory.
    pub anonymous_volumes: HashMap<String, PathBuf>,
    /// `linux.cgroupsPath`, e.g. `/berth/<id>`.
    pub cgroups_path: String,
    /// The container's /etc/passwd and /etc/group.
    pub users: &'a dyn UserLookup,
    /// A private cgroup namespace (Docker's default on cgroup2-only hosts).
    pub cgroup_namespace: bool,
    /// A network namespace prepared by the network module, joined for the default
    /// network; without one the container gets an empty namespace (as `none`).
    pub network_namespace: Option<PathBuf>,
    /// The host binary `--init` binds at [`INIT_PATH`].
    pub init_binary: Option<PathBuf>,
}

/// Image config + `docker run` options → the OCI spec Docker would generate.
pub fn build_spec(
    image_config: &Value,
    opts: &RunOptions,
    ctx: &SpecContext,
) -> Result<Spec, SpecError> {
    let image = ImageConfig::from_value(image_config)?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    opts.validate(cpus)?;

    let hostname = hostname(opts, ctx);
    let user_spec = opts.user.clone().or(image.user.clone()).unwrap_or_default();
    let exec_user = user::resolve(&user_spec, &opts.group_add, ctx.users)?;
    let bounding = capabilities(opts);

    let mut process = json!({
        "terminal": opts.tty,
        "user": {
            "uid": exec_user.uid,
            "gid": exec_user.gid,
            "additionalGids": exec_user.additional_gids,
        },
        "args": args(&image, opts, ctx)?,
        "env": env(&image, opts, hostname.as_deref().unwrap_or_default()),
        "cwd": cwd(&image, opts)?,
        "capabilities": capability_sets(&bounding, exec_user.uid),
        "oomScoreAdj": opts.oom_score_adj.unwrap_or(0),
    });
    if !opts.ulimits.is_empty() {
        process["rlimits"] = opts
            .ulimits
            .iter()
            .map(|u| json!({"type": u.oci_name(), "soft": u.soft, "hard": u.hard}))
            .collect();
    }
    if opts.security.no_new_privileges {
        process["noNewPrivileges"] = json!(true);
    }

    let mut linux = json!({
        "cgroupsPath": ctx.cgroups_path,
        "namespaces": namespaces(opts, ctx)?,
        "resources": resources(opts)?,
    });
    let sysctl = sysctls(opts);
    if !sysctl.is_empty() {
        linux["sysctl"] = json!(sysctl);
    }
    if !(opts.privileged || opts.security.unmask_system_paths) {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
    }
    let devices = devices(opts)?;
    if !devices.is_empty() {
        linux["devices"] = Value::Array(devices);
    }
    if let Some(seccomp) = seccomp_profile(opts, &bounding)? {
        linux["seccomp"] = seccomp;
    }

    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": ctx.rootfs, "readonly": opts.read_only},
        "mounts": mounts(&image, opts, ctx)?,
        "linux": linux,
    });
    if let Some(h) = hostname {
        spec["hostname"] = json!(h);
    }
    serde_json::from_value(spec).map_err(SpecError::Generated)
}

/// The daemon's checks at `docker create` that need the image but not the container's
/// files: something to run, and an absolute working directory. (`build_spec` makes them
/// again at start; these make `create` fail as Docker's does, with nothing left behind.)
pub fn check_create(image_config: &Value, opts: &RunOptions) -> Result<(), SpecError> {
    let image = ImageConfig::from_value(image_config)?;
    let (entrypoint, cmd) = entrypoint_and_cmd(&image, opts);
    if entrypoint.is_empty() && cmd.is_empty() {
        return Err(SpecError::NoCommand);
    }
    cwd(&image, opts)?;
    Ok(())
}

/// Gives a built spec another host name (`--network container:NAME` takes the other
/// container's, as Docker): `hostname` and the `HOSTNAME` variable.
pub fn set_hostname(spec: &mut oci_spec::runtime::Spec, name: &str) {
    spec.set_hostname(Some(name.to_string()));
    if let Some(process) = spec.process_mut() {
        if let Some(env) = process.env_mut() {
            for e in env.iter_mut().filter(|e| e.starts_with("HOSTNAME=")) {
                *e = format!("HOSTNAME={name}");
            }
        }
    }
}

/// `-h`; else the host's name with `--network host`, else the first 12 characters of
/// the id; none at all with `--uts host` (the host's UTS namespace is shared). With
/// `--network host -h NAME` the container's own UTS namespace gets NAME, as in Docker.
fn hostname(opts: &RunOptions, ctx: &SpecContext) -> Option<String> {
    if opts.uts_host {
        return None;
    }
    if let Some(h) = &opts.hostname {
        return Some(h.clone());
    }
    if opts.network == NetworkMode::Host {
        return nix::unistd::gethostname()
            .ok()
            .map(|h| h.to_string_lossy().into_owned());
    }
    Some(ctx.id.chars().take(12).collect())
}

/// Docker's rules: a command replaces the image's Cmd; `--entrypoint` replaces the
/// image's Entrypoint and drops its Cmd (unless a command is given); `--entrypoint ""`
/// clears it.
/// Docker's `Config.Entrypoint` and `Config.Cmd`: `--entrypoint` replaces the image's
/// entrypoint and drops its Cmd; a command after the image replaces Cmd.
pub fn entrypoint_and_cmd(image: &ImageConfig, opts: &RunOptions) -> (Vec<String>, Vec<String>) {
    let entrypoint: Vec<String> = match opts.entrypoint.as_deref() {
        Some("") => vec![],
        Some(e) => vec![e.to_string()],
        None => image.entrypoint.clone().unwrap_or_default(),
    };
    let cmd: Vec<String> = if !opts.command.is_empty() {
        opts.command.clone()
    } else if opts.entrypoint.is_some() {
        vec![]
    } else {
        image.cmd.clone().unwrap_or_default()
    };
    (entrypoint, cmd)
}

fn args(
    image: &ImageConfig,
    opts: &RunOptions,
    ctx: &SpecContext,
) -> Result<Vec<String>, SpecError> {
    let (entrypoint, cmd) = entrypoint_and_cmd(image, opts);
    let mut args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    if opts.init {
        if ctx.init_binary.is_none() {
            return Err(SpecError::NoInit);
        }
        args.splice(0..0, [INIT_PATH.to_string(), "--".to_string()]);
    }
    Ok(args)
}

fn env_key(e: &str) -> &str {
    e.split_once('=').map_or(e, |(k, _)| k)
}

/// Replaces variables by key or appends them; a bare `KEY` removes KEY (Docker's
/// ReplaceOrAppendEnvValues).
pub(crate) fn replace_or_append(base: &mut Vec<String>, overrides: &[String]) {
    for o in overrides {
        let key = env_key(o);
        let pos = base.iter().position(|b| env_key(b) == key);
        match (pos, o.contains('=')) {
            (Some(i), true) => base[i] = o.clone(),
            (Some(i), false) => {
                base.remove(i);
            }
            (None, true) => base.push(o.clone()),
            (None, false) => {}
        }
    }
}

/// Docker's `Config.Env`: the user's variables, then the image's the user did not set.
pub fn config_env(image: &ImageConfig, opts: &RunOptions) -> Vec<String> {
    let mut config_env = opts.env.clone();
    for e in image.env.iter().flatten() {
        if !opts.env.iter().any(|u| env_key(u) == env_key(e)) {
            config_env.push(e.clone());
        }
    }
    config_env
}

/// PATH, HOSTNAME and (with -t) TERM first, then the container's variables: the
/// user's, followed by the image's that the user did not set.
fn env(image: &ImageConfig, opts: &RunOptions, hostname: &str) -> Vec<String> {
    let config_env = config_env(image, opts);
    let mut env = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={hostname}"),
    ];
    if opts.tty {
        env.push("TERM=xterm".to_string());
    }
    replace_or_append(&mut env, &config_env);
    env
}

fn cwd(image: &ImageConfig, opts: &RunOptions) -> Result<String, SpecError> {
    let dir = opts
        .workdir
        .clone()
        .or(image.working_dir.clone())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "/".to_string());
    if !dir.starts_with('/') {
        return Err(SpecError::RelativeWorkdir(dir));
    }
    Ok(dir)
}

/// Docker's TweakCapabilities: all with --privileged; with `--cap-add ALL` every
/// capability not dropped; otherwise the defaults minus drops (all of them with
/// `--cap-drop ALL`) plus adds.
fn capabilities(opts: &RunOptions) -> Vec<String> {
    let all: Vec<String> = host_capabilities();
    if opts.privileged {
        return all;
    }
    let dropped = |c: &str| opts.cap_drop.iter().any(|d| d == c || d == "ALL");
    let mut caps: Vec<String> = vec![];
    if opts.cap_add.iter().any(|c| c == "ALL") {
        caps.extend(all.into_iter().filter(|c| !opts.cap_drop.contains(c)));
        return caps;
    }
    caps.extend(
        DEFAULT_CAPS
            .iter()
            .filter(|c| !dropped(c))
            .map(|c| c.to_string()),
    );
    for c in &opts.cap_add {
        if !caps.contains(c) {
            caps.push(c.clone());
        }
    }
    caps
}

/// The capabilities this kernel has that our own bounding set still holds, as Docker's
/// initCaps does: a container cannot be given more than its engine has (this machine lacks
/// CAP_SYS_RESOURCE, and asking for it makes the runtime's capset fail with EPERM).
pub(crate) fn host_capabilities() -> Vec<String> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(ALL_CAPS.len() - 1);
    let bounding = bounding_set().unwrap_or(u64::MAX);
    let mut by_number: Vec<&str> = ALL_CAPS.to_vec();
    by_number.sort_by_key(|c| cap_number(c));
    by_number
        .into_iter()
        .filter(|c| cap_number(c) <= last && bounding & (1 << cap_number(c)) != 0)
        .map(String::from)
        .collect()
}

/// `CapBnd` of this process, from /proc/self/status.
fn bounding_set() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapBnd:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

fn cap_number(name: &str) -> usize {
    crate::flags::ALL_CAPS
        .iter()
        .position(|c| *c == name)
        .unwrap_or(usize::MAX)
}

/// Bounding, effective and permitted; never inheritable or ambient (Docker ≥ 20.10.14,
/// CVE-2022-24769). A non-root user starts with no effective or permitted capabilities,
/// as in Docker: it can only gain them by executing a file that has them.
fn capability_sets(bounding: &[String], uid: u32) -> Value {
    let mut sets = json!({ "bounding": bounding });
    if uid == 0 {
        sets["effective"] = json!(bounding);
        sets["permitted"] = json!(bounding);
    }
    sets
}

/// Docker's order: mount, network, uts, pid, ipc (+ cgroup when private).
fn namespaces(opts: &RunOptions, ctx: &SpecContext) -> Result<Vec<Value>, SpecError> {
    let mut ns = vec![json!({"type": "mount"})];
    match &opts.network {
        NetworkMode::Host => {}
        NetworkMode::None => ns.push(json!({"type": "network"})),
        // Another container's namespace, found by the engine at the start.
        NetworkMode::Other(name) if name.starts_with("container:") => {
            match &ctx.network_namespace {
                Some(path) => ns.push(json!({"type": "network", "path": path})),
                None => return Err(SpecError::Network(name.clone())),
            }
        }
        NetworkMode::Default | NetworkMode::Other(_) => match &ctx.network_namespace {
            Some(path) => ns.push(json!({"type": "network", "path": path})),
            None => ns.push(json!({"type": "network"})),
        },
    }
    if !opts.uts_host {
        ns.push(json!({"type": "uts"}));
    }
    if !opts.pid_host {
        ns.push(json!({"type": "pid"}));
    }
    if opts.ipc != IpcMode::Host {
        ns.push(json!({"type": "ipc"}));
    }
    if ctx.cgroup_namespace {
        ns.push(json!({"type": "cgroup"}));
    }
    Ok(ns)
}

/// Docker's sysctls for a container with its own network namespace (unprivileged ping
/// and low ports, Docker ≥ 20.10), then the user's.
fn sysctls(opts: &RunOptions) -> BTreeMap<String, String> {
    let mut s = BTreeMap::new();
    if opts.network != NetworkMode::Host {
        s.insert("net.ipv4.ip_unprivileged_port_start".into(), "0".into());
        s.insert("net.ipv4.ping_group_range".into(), "0 2147483647".into());
    }
    s.extend(opts.sysctls.clone());
    s
}

fn device_rule(
    allow: bool,
    typ: Option<&str>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> Value {
    let mut r = json!({"allow": allow, "access": access});
    if let Some(t) = typ {
        r["type"] = json!(t);
    }
    if let Some(m) = major {
        r["major"] = json!(m);
    }
    if let Some(m) = minor {
        r["minor"] = json!(m);
    }
    r
}

/// Docker 20.10's device cgroup rules: deny everything, allow the basic nodes, keep
/// fuse out. (The runtime appends /dev/pts, ptmx, tun and `mknod` of anything, as runc
/// does.) `--device` nodes are allowed with their permissions; `--privileged` allows all.
fn device_rules(opts: &RunOptions, devices: &[Value]) -> Vec<Value> {
    if opts.privileged {
        return vec![device_rule(true, None, None, None, "rwm")];
    }
    let mut rules = vec![device_rule(false, None, None, None, "rwm")];
    for (major, minor) in [(1, 5), (1, 3), (1, 9), (1, 8), (5, 0), (5, 1)] {
        rules.push(device_rule(
            true,
            Some("c"),
            Some(major),
            Some(minor),
            "rwm",
        ));
    }
    rules.push(device_rule(false, Some("c"), Some(10), Some(229), "rwm"));
    for (d, m) in devices.iter().zip(&opts.devices) {
        rules.push(device_rule(
            true,
            d["type"].as_str(),
            d["major"].as_i64(),
            d["minor"].as_i64(),
            &m.permissions,
        ));
    }
    rules
}

fn resources(opts: &RunOptions) -> Result<Value, SpecError> {
    let user_devices = user_devices(opts)?;
    let mut r = json!({ "devices": device_rules(opts, &user_devices) });
    let mut memory = Map::new();
    if let Some(m) = opts.memory.filter(|m| *m > 0) {
        memory.insert("limit".into(), json!(m));
        // Docker: with only -m, swap is twice the memory (the same again in swap).
        let swap = match opts.memory_swap {
            Some(s) if s != 0 => s,
            _ => m * 2,
        };
        memory.insert("swap".into(), json!(swap));
    } else if opts.memory_swap == Some(-1) {
        memory.insert("swap".into(), json!(-1));
    }
    if let Some(res) = opts.memory_reservation.filter(|m| *m > 0) {
        memory.insert("reservation".into(), json!(res));
    }
    if opts.oom_kill_disable {
        memory.insert("disableOOMKiller".into(), json!(true));
    }
    if !memory.is_empty() {
        r["memory"] = Value::Object(memory);
    }
    let mut cpu = Map::new();
    if let Some(s) = opts.cpu_shares.filter(|s| *s > 0) {
        cpu.insert("shares".into(), json!(s));
    }
    if let Some(nano) = opts.nano_cpus.filter(|n| *n > 0) {
        const PERIOD: i64 = 100_000;
        cpu.insert("period".into(), json!(PERIOD));
        cpu.insert("quota".into(), json!(nano * PERIOD / 1_000_000_000));
    }
    if let Some(c) = &opts.cpuset_cpus {
        cpu.insert("cpus".into(), json!(c));
    }
    if let Some(m) = &opts.cpuset_mems {
        cpu.insert("mems".into(), json!(m));
    }
    if !cpu.is_empty() {
        r["cpu"] = Value::Object(cpu);
    }
    // -1 and 0 mean unlimited, which a new cgroup already is.
    if let Some(p) = opts.pids_limit.filter(|p| *p > 0) {
        r["pids"] = json!({ "limit": p });
    }
    Ok(r)
}

/// linux.devices: the `--device` nodes, or every host device with `--privileged`.
fn devices(opts: &RunOptions) -> Result<Vec<Value>, SpecError> {
    if opts.privileged {
        let mut all = vec![];
        host_devices(Path::new("/dev"), &mut all);
        return Ok(all);
    }
    user_devices(opts)
}

fn user_devices(opts: &RunOptions) -> Result<Vec<Value>, SpecError> {
    opts.devices
        .iter()
        .map(|d| {
            device_node(&d.host, &d.container).map_err(|reason| SpecError::Device {
                path: d.host.clone(),
                reason,
            })
        })
        .collect()
}

/// A device node on the host as a linux.devices entry at `container_path`.
fn device_node(host: &Path, container_path: &str) -> Result<Value, String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(host).map_err(|e| e.to_string())?;
    let typ = if meta.file_type().is_char_device() {
        "c"
    } else if meta.file_type().is_block_device() {
        "b"
    } else {
        return Err("not a device node".to_string());
    };
    let rdev = meta.rdev();
    Ok(json!({
        "path": container_path,
        "type": typ,
        "major": libc::major(rdev),
        "minor": libc::minor(rdev),
        "fileMode": meta.mode() & 0o777,
        "uid": meta.uid(),
        "gid": meta.gid(),
    }))
}

/// Every device node under /dev, skipping what the runtime mounts itself (as runc's
/// HostDevices does).
fn host_devices(dir: &Path, out: &mut Vec<Value>) {
    const SKIP: [&str; 6] = ["pts", "shm", "fd", "mqueue", ".lxc", ".udev"];
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            if !SKIP.iter().any(|s| e.file_name() == *s) {
                host_devices(&path, out);
            }
        } else if (ft.is_char_device() || ft.is_block_device()) && path != Path::new("/dev/console")
        {
            if let Ok(d) = device_node(&path, &path.to_string_lossy()) {
                out.push(d);
            }
        }
    }
}

fn seccomp_profile(opts: &RunOptions, caps: &[String]) -> Result<Option<Value>, SpecError> {
    let profile = match &opts.security.seccomp {
        _ if opts.privileged => return Ok(None),
        SeccompChoice::Unconfined => return Ok(None),
        SeccompChoice::Default => seccomp::DEFAULT_PROFILE,
        SeccompChoice::Profile(text) => text.as_str(),
    };
    Ok(Some(seccomp::resolve(
        profile,
        &Target::host(caps.to_vec()),
    )?))
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Value {
    json!({"destination": dest, "type": typ, "source": source, "options": options})
}

fn bind(dest: &str, source: &Path, read_only: bool, propagation: Option<&str>) -> Value {
    let mut options = vec!["rbind"];
    if read_only {
        options.push("ro");
    }
    options.push(propagation.unwrap_or("rprivate"));
    json!({"destination": dest, "type": "bind", "source": source, "options": options})
}

/// Docker's default mounts, less those a user mount replaces.
fn default_mounts(opts: &RunOptions, taken: &dyn Fn(&str) -> bool) -> Vec<Value> {
    // --privileged gets writable /sys and cgroupfs, as in Docker.
    let sys_ro: &[&str] = if opts.privileged { &[] } else { &["ro"] };
    let sys_opts: Vec<&str> = ["nosuid", "noexec", "nodev"]
        .iter()
        .chain(sys_ro)
        .copied()
        .collect();
    let cgroup_opts: Vec<&str> = sys_ro
        .iter()
        .chain(&["nosuid", "noexec", "nodev"])
        .copied()
        .collect();
    let mut m = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount("/sys", "sysfs", "sysfs", &sys_opts),
        mount("/sys/fs/cgroup", "cgroup", "cgroup", &cgroup_opts),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
    ];
    match opts.ipc {
        IpcMode::Private => {
            let size = format!(
                "size={}",
                opts.shm_size.filter(|s| *s > 0).unwrap_or(DEFAULT_SHM_SIZE)
            );
            m.push(mount(
                "/dev/shm",
                "tmpfs",
                "shm",
                &["nosuid", "noexec", "nodev", "mode=1777", &size],
            ));
        }
        IpcMode::Host => m.push(bind("/dev/shm", Path::new("/dev/shm"), false, None)),
        IpcMode::None => {}
    }
    m.retain(|v| !taken(v["destination"].as_str().unwrap_or_default()));
    m
}

/// tmpfs options: Docker's `noexec,nosuid,nodev,rprivate`, then the user's, where a
/// user's `exec`, `suid` or `dev` removes the matching default.
fn tmpfs_options(user: &[String]) -> Vec<String> {
    let mut opts: Vec<String> = ["noexec", "nosuid", "nodev", "rprivate"]
        .iter()
        .filter(|d| {
            let opposite = d.trim_start_matches("no");
            !user.iter().any(|u| u == opposite)
        })
        .map(|s| s.to_string())
        .collect();
    opts.extend(user.iter().cloned());
    opts
}

fn user_mount(m: &MountSpec, ctx: &SpecContext) -> Result<Value, SpecError> {
    Ok(match m {
        MountSpec::Bind {
            source,
            target,
            read_only,
            propagation,
            ..
        } => bind(target, source, *read_only, propagation.as_deref()),
        MountSpec::Volume {
            name,
            target,
            read_only,
            ..
        } => {
            let host = match name {
                Some(n) => ctx.volumes.get(n),
                None => ctx.anonymous_volumes.get(target),
            };
            let host = host.ok_or_else(|| {
                SpecError::MissingVolume(name.clone().unwrap_or_else(|| target.clone()))
            })?;
            bind(target, host, *read_only, None)
        }
        MountSpec::Tmpfs { target, options } => json!({
            "destination": target,
            "type": "tmpfs",
            "source": "tmpfs",
            "options": tmpfs_options(options),
        }),
    })
}

fn depth(dest: &str) -> usize {
    dest.split('/').filter(|s| !s.is_empty()).count()
}

/// Default mounts, then the user's (and image VOLUMEs) sorted parents-first, then the
/// engine's /etc files — each skipped where the user mounted something at that path.
fn mounts(
    image: &ImageConfig,
    opts: &RunOptions,
    ctx: &SpecContext,
) -> Result<Vec<Value>, SpecError> {
    let user_targets: Vec<&str> = opts.mounts.iter().map(MountSpec::target).collect();
    let taken = |dest: &str| user_targets.contains(&dest);
    let mut all = default_mounts(opts, &taken);

    let mut user: Vec<Value> = opts
        .mounts
        .iter()
        .map(|m| user_mount(m, ctx))
        .collect::<Result<_, _>>()?;
    // Image VOLUMEs not covered by a user mount become anonymous volumes (`/data/` and
    // `/data` are one).
    let mut image_dests: Vec<String> = image
        .volumes
        .iter()
        .flatten()
        .map(|(d, _)| crate::flags::clean_path(d))
        .collect();
    image_dests.sort();
    image_dests.dedup();
    for dest in &image_dests {
        if !taken(dest) {
            let host = ctx
                .anonymous_volumes
                .get(dest)
                .ok_or_else(|| SpecError::MissingVolume(dest.clone()))?;
            user.push(bind(dest, host, false, None));
        }
    }
    user.sort_by_key(|m| depth(m["destination"].as_str().unwrap_or_default()));
    all.extend(user);

    if opts.init {
        let init = ctx.init_binary.as_ref().ok_or(SpecError::NoInit)?;
        all.push(json!({"destination": INIT_PATH, "type": "bind", "source": init, "options": ["bind", "ro"]}));
    }
    for (dest, host) in [
        ("/etc/resolv.conf", &ctx.etc.resolv_conf),
        ("/etc/hostname", &ctx.etc.hostname),
        ("/etc/hosts", &ctx.etc.hosts),
    ] {
        if let Some(h) = host.as_ref().filter(|_| !taken(dest)) {
            all.push(bind(dest, h, opts.read_only, None));
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::*;
    use crate::user::StaticUsers;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn users() -> StaticUsers {
        StaticUsers {
            passwd: Some(
                "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n".into(),
            ),
            group: Some("root:x:0:\napp:x:1000:\nwheel:x:10:app\n".into()),
        }
    }

    fn image() -> Value {
        json!({
            "architecture": "amd64",
            "config": {
                "Env": ["PATH=/usr/bin:/bin", "LANG=C.UTF-8"],
                "Cmd": ["sh"],
                "WorkingDir": "",
            },
        })
    }

    /// Builds with the given options and returns config.json as JSON.
    fn build(image: &Value, opts: &RunOptions) -> Result<Value, SpecError> {
        let users = users();
        let ctx = SpecContext {
            rootfs: "/rootfs".into(),
            id: ID.into(),
            etc: EtcFiles {
                hosts: Some("/c/hosts".into()),
                hostname: Some("/c/hostname".into()),
                resolv_conf: Some("/c/resolv.conf".into()),
            },
            volumes: HashMap::from([("data".to_string(), PathBuf::from("/vol/data"))]),
            anonymous_volumes: HashMap::from([("/anon".to_string(), PathBuf::from("/vol/anon"))]),
            cgroups_path: "/berth/x".into(),
            users: &users,
            cgroup_namespace: false,
            network_namespace: None,
            init_binary: Some("/usr/libexec/berth-init".into()),
        };
        build_spec(image, opts, &ctx).map(|s| serde_json::to_value(s).unwrap())
    }

    fn sorted(v: &Value) -> Vec<String> {
        let mut s: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect();
        s.sort();
        s
    }

    fn dests(spec: &Value) -> Vec<String> {
        spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap().to_string())
            .collect()
    }

    fn find_mount<'a>(spec: &'a Value, dest: &str) -> &'a Value {
        spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == dest)
            .unwrap()
    }

    #[test]
    fn docker_defaults() {
        let s = build(&image(), &RunOptions::default()).unwrap();
        let p = &s["process"];
        assert_eq!(p["args"], json!(["sh"]));
        assert_eq!(p["cwd"], "/");
        assert_eq!(
            p["env"],
            json!([
                "PATH=/usr/bin:/bin",
                "HOSTNAME=0123456789ab",
                "LANG=C.UTF-8"
            ])
        );
        assert_eq!(s["hostname"], "0123456789ab");
        assert_eq!(
            p["user"],
            json!({"uid": 0, "gid": 0, "additionalGids": [0]})
        );
        let mut defaults: Vec<String> = DEFAULT_CAPS.iter().map(|c| c.to_string()).collect();
        defaults.sort();
        for set in ["bounding", "effective", "permitted"] {
            assert_eq!(sorted(&p["capabilities"][set]), defaults, "{set}");
        }
        assert!(p["capabilities"]
            .get("inheritable")
            .is_none_or(Value::is_null));
        assert!(p["capabilities"].get("ambient").is_none_or(Value::is_null));
        assert_eq!(
            dests(&s),
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/sys",
                "/sys/fs/cgroup",
                "/dev/mqueue",
                "/dev/shm",
                "/etc/resolv.conf",
                "/etc/hostname",
                "/etc/hosts"
            ]
        );
        assert_eq!(
            find_mount(&s, "/dev/shm")["options"],
            json!(["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"])
        );
        assert_eq!(
            find_mount(&s, "/sys")["options"],
            json!(["nosuid", "noexec", "nodev", "ro"])
        );
        assert_eq!(
            find_mount(&s, "/etc/hosts")["options"],
            json!(["rbind", "rprivate"])
        );
        let l = &s["linux"];
        let ns: Vec<&str> = l["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["mount", "network", "uts", "pid", "ipc"]);
        assert_eq!(l["maskedPaths"].as_array().unwrap().len(), 11);
        assert_eq!(l["readonlyPaths"], json!(READONLY_PATHS));
        assert_eq!(l["sysctl"]["net.ipv4.ping_group_range"], "0 2147483647");
        assert_eq!(l["cgroupsPath"], "/berth/x");
        assert_eq!(l["resources"]["devices"].as_array().unwrap().len(), 8);
        assert_eq!(
            l["resources"]["devices"][0],
            json!({"allow": false, "access": "rwm"})
        );
        assert_eq!(l["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert!(s["root"]["readonly"] == json!(false) || s["root"].get("readonly").is_none());
        assert!(p.get("rlimits").is_none_or(Value::is_null));
    }

    #[test]
    fn entrypoint_and_cmd() {
        let img = json!({"Entrypoint": ["/ep"], "Cmd": ["a", "b"]});
        let run = |ep: Option<&str>, cmd: &[&str]| {
            let opts = RunOptions {
                entrypoint: ep.map(String::from),
                command: cmd.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            };
            build(&img, &opts)
                .map(|s| s["process"]["args"].clone())
                .map_err(|e| e.to_string())
        };
        assert_eq!(run(None, &[]), Ok(json!(["/ep", "a", "b"])));
        assert_eq!(run(None, &["x"]), Ok(json!(["/ep", "x"])));
        assert_eq!(run(Some("/new"), &[]), Ok(json!(["/new"])));
        assert_eq!(run(Some("/new"), &["x"]), Ok(json!(["/new", "x"])));
        assert_eq!(run(Some(""), &["x"]), Ok(json!(["x"])));
        assert_eq!(run(Some(""), &[]), Err("No command specified".to_string()));
        let opts = RunOptions {
            init: true,
            ..Default::default()
        };
        let s = build(&img, &opts).unwrap();
        assert_eq!(
            s["process"]["args"],
            json!([INIT_PATH, "--", "/ep", "a", "b"])
        );
        assert_eq!(
            find_mount(&s, INIT_PATH)["source"],
            "/usr/libexec/berth-init"
        );
    }

    #[test]
    fn env_user_cwd() {
        let opts = RunOptions {
            env: vec!["LANG=fr".into(), "PATH=/x".into(), "NEW=1".into()],
            tty: true,
            workdir: Some("/work".into()),
            user: Some("app".into()),
            group_add: vec!["root".into()],
            ..Default::default()
        };
        let s = build(&image(), &opts).unwrap();
        let p = &s["process"];
        assert_eq!(
            p["env"],
            json!([
                "PATH=/x",
                "HOSTNAME=0123456789ab",
                "TERM=xterm",
                "LANG=fr",
                "NEW=1"
            ])
        );
        assert_eq!(p["terminal"], true);
        assert_eq!(p["cwd"], "/work");
        assert_eq!(
            p["user"],
            json!({"uid": 1000, "gid": 1000, "additionalGids": [1000, 10, 0]})
        );
        // Not root: no effective or permitted capabilities, as Docker.
        assert!(p["capabilities"]
            .get("effective")
            .is_none_or(Value::is_null));
        assert_eq!(p["capabilities"]["bounding"].as_array().unwrap().len(), 14);
        let img = json!({"Cmd": ["sh"]});
        let no_path = build(&img, &RunOptions::default()).unwrap();
        assert_eq!(no_path["process"]["env"][0], format!("PATH={DEFAULT_PATH}"));
        let bad = RunOptions {
            workdir: Some("rel".into()),
            ..Default::default()
        };
        assert_eq!(
            build(&img, &bad).unwrap_err().to_string(),
            "the working directory 'rel' is invalid, it needs to be an absolute path"
        );
        let nouser = RunOptions {
            user: Some("ghost".into()),
            ..Default::default()
        };
        assert_eq!(
            build(&img, &nouser).unwrap_err().to_string(),
            "unable to find user ghost: no matching entries in passwd file"
        );
    }

    #[test]
    fn capabilities_add_drop() {
        let caps = |add: &[&str], drop: &[&str]| {
            let opts = RunOptions {
                cap_add: add
                    .iter()
                    .map(|c| parse_capability(c, "CapAdd").unwrap())
                    .collect(),
                cap_drop: drop
                    .iter()
                    .map(|c| parse_capability(c, "CapDrop").unwrap())
                    .collect(),
                ..Default::default()
            };
            sorted(&build(&image(), &opts).unwrap()["process"]["capabilities"]["bounding"])
        };
        let c = caps(&["sys_admin"], &["chown"]);
        assert!(c.contains(&"CAP_SYS_ADMIN".to_string()) && !c.contains(&"CAP_CHOWN".to_string()));
        assert_eq!(caps(&["NET_ADMIN"], &["ALL"]), ["CAP_NET_ADMIN"]);
        assert!(caps(&["ALL"], &["CAP_SYS_ADMIN"]).len() > 30);
        assert!(!caps(&["ALL"], &["CAP_SYS_ADMIN"]).contains(&"CAP_SYS_ADMIN".to_string()));
        // The seccomp profile follows the capabilities.
        let opts = RunOptions {
            cap_add: vec!["CAP_SYS_ADMIN".into()],
            ..Default::default()
        };
        let s = build(&image(), &opts).unwrap();
        let names: Vec<&str> = s["linux"]["seccomp"]["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| {
                r["names"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n.as_str().unwrap())
            })
            .collect();
        assert!(names.contains(&"mount"));
    }

    #[test]
    fn privileged() {
        let opts = RunOptions {
            privileged: true,
            ..Default::default()
        };
        let s = build(&image(), &opts).unwrap();
        let l = &s["linux"];
        assert!(l.get("maskedPaths").is_none_or(Value::is_null));
        assert!(l.get("readonlyPaths").is_none_or(Value::is_null));
        assert!(l.get("seccomp").is_none_or(Value::is_null));
        assert_eq!(
            l["resources"]["devices"],
            json!([{"allow": true, "access": "rwm"}])
        );
        assert!(l["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["path"] == "/dev/null"));
        assert_eq!(
            find_mount(&s, "/sys")["options"],
            json!(["nosuid", "noexec", "nodev"])
        );
        assert!(
            s["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len()
                > 30
        );
    }

    #[test]
    fn mounts_from_flags() {
        let opts = RunOptions {
            mounts: vec![
                parse_volume("/host/a/b:/deep/er:ro").unwrap(),
                parse_volume("data:/data").unwrap(),
                parse_volume("/anon").unwrap(),
                parse_tmpfs("/t:size=1m,exec").unwrap(),
                parse_mount("type=tmpfs,dst=/m,tmpfs-mode=1700").unwrap(),
                parse_volume("/h/hosts:/etc/hosts").unwrap(),
            ],
            read_only: true,
            shm_size: Some(1 << 20),
            ..Default::default()
        };
        let s = build(&image(), &opts).unwrap();
        assert_eq!(s["root"]["readonly"], true);
        assert_eq!(
            &dests(&s)[7..],
            [
                "/data",
                "/anon",
                "/t",
                "/m",
                "/deep/er",
                "/etc/hosts",
                "/etc/resolv.conf",
                "/etc/hostname"
            ]
        );
        assert_eq!(
            find_mount(&s, "/deep/er")["options"],
            json!(["rbind", "ro", "rprivate"])
        );
        assert_eq!(find_mount(&s, "/data")["source"], "/vol/data");
        assert_eq!(find_mount(&s, "/anon")["source"], "/vol/anon");
        assert_eq!(
            find_mount(&s, "/t")["options"],
            json!(["nosuid", "nodev", "rprivate", "size=1m", "exec"])
        );
        assert_eq!(
            find_mount(&s, "/m")["options"],
            json!(["noexec", "nosuid", "nodev", "rprivate", "mode=1700"])
        );
        assert_eq!(find_mount(&s, "/etc/hosts")["source"], "/h/hosts");
        // --read-only makes the engine's /etc files read-only too, as Docker does.
        assert_eq!(
            find_mount(&s, "/etc/hostname")["options"],
            json!(["rbind", "ro", "rprivate"])
        );
        assert_eq!(find_mount(&s, "/dev/shm")["options"][4], "size=1048576");

        let missing = RunOptions {
            mounts: vec![parse_volume("nope:/x").unwrap()],
            ..Default::default()
        };
        assert_eq!(
            build(&image(), &missing).unwrap_err().to_string(),
            "no host directory was prepared for volume nope"
        );
        let img_vol = json!({"Cmd": ["sh"], "Volumes": {"/anon": {}}});
        let s = build(&img_vol, &RunOptions::default()).unwrap();
        assert!(dests(&s).contains(&"/anon".to_string()));
    }

    #[test]
    fn resources_and_limits() {
        let mb = 1 << 20;
        let opts = RunOptions {
            memory: Some(100 * mb),
            memory_reservation: Some(50 * mb),
            nano_cpus: Some(parse_cpus("1.5").unwrap()),
            cpu_shares: Some(512),
            cpuset_cpus: Some("0".into()),
            pids_limit: Some(10),
            ulimits: vec![parse_ulimit("nofile=100:200").unwrap()],
            oom_score_adj: Some(5),
            sysctls: BTreeMap::from([("net.core.somaxconn".into(), "100".into())]),
            security: SecurityOptions {
                no_new_privileges: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let s = build(&image(), &opts).unwrap();
        let r = &s["linux"]["resources"];
        assert_eq!(
            r["memory"],
            json!({"limit": 100 * mb, "swap": 200 * mb, "reservation": 50 * mb})
        );
        assert_eq!(
            r["cpu"],
            json!({"shares": 512, "period": 100000, "quota": 150000, "cpus": "0"})
        );
        assert_eq!(r["pids"], json!({"limit": 10}));
        assert_eq!(
            s["process"]["rlimits"],
            json!([{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}])
        );
        assert_eq!(s["process"]["oomScoreAdj"], 5);
        assert_eq!(s["process"]["noNewPrivileges"], true);
        assert_eq!(s["linux"]["sysctl"]["net.core.somaxconn"], "100");
        let unlimited = RunOptions {
            memory: Some(100 * mb),
            memory_swap: Some(-1),
            pids_limit: Some(-1),
            ..Default::default()
        };
        let s = build(&image(), &unlimited).unwrap();
        assert_eq!(s["linux"]["resources"]["memory"]["swap"], -1);
        assert!(s["linux"]["resources"]
            .get("pids")
            .is_none_or(Value::is_null));
    }

    #[test]
    fn create_checks_the_command_and_working_directory() {
        let entry = json!({"config": {"Entrypoint": ["echo"], "Cmd": ["hi"]}});
        assert!(check_create(&entry, &RunOptions::default()).is_ok());
        let cleared = RunOptions {
            entrypoint: Some(String::new()),
            ..Default::default()
        };
        assert_eq!(
            check_create(&entry, &cleared).unwrap_err().to_string(),
            "No command specified"
        );
        let with_command = RunOptions {
            command: vec!["true".into()],
            ..cleared
        };
        assert!(check_create(&entry, &with_command).is_ok());
        assert_eq!(
            check_create(&json!({"config": {}}), &RunOptions::default())
                .unwrap_err()
                .to_string(),
            "No command specified"
        );
        let relative = RunOptions {
            workdir: Some("rel".into()),
            ..Default::default()
        };
        assert_eq!(
            check_create(&image(), &relative).unwrap_err().to_string(),
            "the working directory 'rel' is invalid, it needs to be an absolute path"
        );
    }

    #[test]
    fn namespaces_and_network() {
        let host = RunOptions {
            network: NetworkMode::Host,
            pid_host: true,
            ipc: IpcMode::Host,
            ..Default::default()
        };
        let s = build(&image(), &host).unwrap();
        let ns: Vec<&str> = s["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["mount", "uts"]);
        assert!(s["linux"].get("sysctl").is_none_or(Value::is_null));
        let me = nix::unistd::gethostname()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert_eq!(s["hostname"], me);
        assert_eq!(find_mount(&s, "/dev/shm")["type"], "bind");
        let named = RunOptions {
            network: NetworkMode::Host,
            hostname: Some("box".into()),
            ..Default::default()
        };
        let s = build(&image(), &named).unwrap();
        assert_eq!(s["hostname"], "box");
        assert!(s["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "uts"));
        // With host networking the engine's resolv.conf copy is still bound.
        assert!(dests(&s).contains(&"/etc/resolv.conf".to_string()));
        let other = RunOptions {
            network: NetworkMode::Other("container:bogus".into()),
            ..Default::default()
        };
        assert_eq!(
            build(&image(), &other).unwrap_err().to_string(),
            "network container:bogus not found"
        );
        let no_shm = RunOptions {
            ipc: IpcMode::None,
            ..Default::default()
        };
        assert!(!dests(&build(&image(), &no_shm).unwrap()).contains(&"/dev/shm".to_string()));
    }

    #[test]
    fn devices_from_flags() {
        let opts = RunOptions {
            devices: vec![parse_device("/dev/null:/dev/mynull:r").unwrap()],
            ..Default::default()
        };
        let s = build(&image(), &opts).unwrap();
        let d = &s["linux"]["devices"][0];
        assert_eq!(
            (
                d["path"].as_str(),
                d["type"].as_str(),
                d["major"].as_i64(),
                d["minor"].as_i64()
            ),
            (Some("/dev/mynull"), Some("c"), Some(1), Some(3))
        );
        let rules = s["linux"]["resources"]["devices"].as_array().unwrap();
        assert_eq!(
            rules.last().unwrap(),
            &json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "r"})
        );
        let bad = RunOptions {
            devices: vec![parse_device("/etc/passwd").unwrap()],
            ..Default::default()
        };
        assert_eq!(
            build(&image(), &bad).unwrap_err().to_string(),
            "error gathering device information while adding custom device \"/etc/passwd\": not a device node"
        );
    }
}
