//! The runc command-line surface: clap structs, and a thin dispatch onto the library.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use runtime::container::{self, CreateOptions};
use runtime::state::{self, Container};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const DEFAULT_ROOT: &str = "/run/berth-runtime";

pub fn version_text() -> String {
    format!(
        "berth-runtime version {}\ncommit: {}\nspec: {}\n",
        env!("CARGO_PKG_VERSION"),
        option_env!("BERTH_COMMIT").unwrap_or("unknown"),
        state::OCI_VERSION
    )
}

#[derive(Parser)]
#[command(
    name = "berth-runtime",
    about = "An OCI runtime, compatible with runc's command line",
    disable_version_flag = true
)]
pub struct App {
    /// Directory for container state.
    #[arg(long, global = true, default_value = DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Log file (errors are also printed on stderr).
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long = "log-format", global = true, default_value = "text")]
    pub log_format: String,
    /// Accepted for compatibility; berth-runtime drives cgroupfs directly.
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// Accepted for compatibility (true, false or auto).
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,
    #[arg(long, global = true)]
    pub debug: bool,
    /// Accepted for compatibility with runc's --criu.
    #[arg(long, global = true, hide = true)]
    pub criu: Option<String>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Create a container from a bundle; it waits for `start`.
    Create(Create),
    /// Start a created container.
    Start { id: String },
    /// Create and start a container.
    Run(RunCmd),
    /// Print the state of a container as JSON.
    State { id: String },
    /// Send a signal to a container's init (or all its processes).
    Kill(KillCmd),
    /// Delete a container and its resources.
    Delete(DeleteCmd),
    /// List containers.
    #[command(alias = "ls")]
    List(ListCmd),
    /// Run a new process inside a container.
    Exec(ExecCmd),
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// List the processes of a container.
    Ps(PsCmd),
    /// Print container events: resource statistics and OOM kills.
    Events(EventsCmd),
    /// Change a running container's resource limits.
    Update(UpdateCmd),
    /// Print the features this runtime supports (runtime-spec features.json).
    Features,
    /// Write an example config.json.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
}

#[derive(Args)]
pub struct Create {
    #[command(flatten)]
    pub common: CreateArgs,
}

#[derive(Args)]
pub struct CreateArgs {
    /// Path to the bundle directory.
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    #[arg(long = "pidfd-socket")]
    pub pidfd_socket: Option<PathBuf>,
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: i32,
    pub id: String,
}

#[derive(Args)]
pub struct RunCmd {
    #[command(flatten)]
    pub common: CreateArgs,
    /// Do not wait for the container to exit.
    #[arg(short, long)]
    pub detach: bool,
    #[arg(long = "keep")]
    pub keep: bool,
}

#[derive(Args)]
pub struct ExecCmd {
    /// A JSON file with the process to run (runtime-spec `process`).
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    #[arg(short, long)]
    pub tty: bool,
    #[arg(short, long)]
    pub env: Vec<String>,
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// uid[:gid]
    #[arg(short, long)]
    pub user: Option<String>,
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    #[arg(short = 'c', long = "cap")]
    pub cap: Vec<String>,
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    #[arg(short, long)]
    pub detach: bool,
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    #[arg(long = "pidfd-socket")]
    pub pidfd_socket: Option<PathBuf>,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: i32,
    #[arg(long = "process-label")]
    pub process_label: Option<String>,
    #[arg(long)]
    pub apparmor: Option<String>,
    #[arg(long = "ignore-paused")]
    pub ignore_paused: bool,
    pub id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Args)]
pub struct PsCmd {
    #[arg(short, long, default_value = "table")]
    pub format: String,
    pub id: String,
    /// Options for ps(1) in table format (default -ef).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

#[derive(Args)]
pub struct EventsCmd {
    /// Print statistics once and exit.
    #[arg(long)]
    pub stats: bool,
    /// Interval between statistics events.
    #[arg(long, default_value = "5s")]
    pub interval: String,
    pub id: String,
}

#[derive(Args)]
pub struct UpdateCmd {
    /// JSON file with runtime-spec linux.resources, or - for standard input.
    #[arg(short, long)]
    pub resources: Option<PathBuf>,
    #[arg(long)]
    pub memory: Option<String>,
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    #[arg(long = "memory-swap")]
    pub memory_swap: Option<String>,
    #[arg(long = "kernel-memory")]
    pub kernel_memory: Option<String>,
    #[arg(long = "cpu-shares")]
    pub cpu_shares: Option<u64>,
    #[arg(long = "cpu-quota")]
    pub cpu_quota: Option<i64>,
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<u64>,
    #[arg(long = "cpu-rt-runtime")]
    pub cpu_rt_runtime: Option<i64>,
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    pub id: String,
}

#[derive(Args)]
pub struct KillCmd {
    #[arg(short, long)]
    pub all: bool,
    pub id: String,
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

#[derive(Args)]
pub struct DeleteCmd {
    #[arg(short, long)]
    pub force: bool,
    pub id: String,
}

#[derive(Args)]
pub struct ListCmd {
    #[arg(short, long, default_value = "table")]
    pub format: String,
    #[arg(short, long)]
    pub quiet: bool,
}

pub struct Log {
    file: Option<std::fs::File>,
    json: bool,
}

impl Log {
    pub fn new(path: Option<&Path>, format: &str) -> Log {
        let file = path.and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
        });
        Log {
            file,
            json: format == "json",
        }
    }

    pub fn error(&self, msg: &str) {
        let Some(mut f) = self.file.as_ref() else {
            return;
        };
        let time = state::rfc3339_now();
        let line = if self.json {
            serde_json::json!({"level": "error", "msg": msg, "time": time}).to_string()
        } else {
            format!("time={time:?} level=error msg={msg:?}")
        };
        let _ = writeln!(f, "{line}");
    }
}

fn create_options(a: &CreateArgs) -> CreateOptions {
    CreateOptions {
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        terminal_fallback: None,
        pidfd_socket: a.pidfd_socket.clone(),
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        preserve_fds: a.preserve_fds,
    }
}

pub fn run(app: App) -> Result<i32> {
    let root = app.root.as_path();
    runtime::trace::mark("main");
    match &app.cmd {
        Cmd::Create(c) => {
            container::create(root, &create_options(&c.common))?;
            Ok(0)
        }
        Cmd::Start { id } => {
            container::start(&Container::load(root, id)?)?;
            Ok(0)
        }
        Cmd::Run(r) => crate::cli::run_container(root, r),
        Cmd::State { id } => {
            let c = Container::load(root, id)?;
            println!("{}", serde_json::to_string_pretty(&c.oci_state())?);
            Ok(0)
        }
        Cmd::Kill(k) => {
            let sig = runtime::signal::parse(&k.signal)?;
            container::kill(&Container::load(root, &k.id)?, sig, k.all)?;
            Ok(0)
        }
        Cmd::Delete(d) => {
            match Container::load(root, &d.id) {
                Ok(c) => container::delete(&c, d.force)?,
                // runc: deleting a missing container with --force is not an error.
                Err(runtime::Error::NotExist(_)) if d.force => {}
                Err(e) => return Err(e.into()),
            }
            Ok(0)
        }
        Cmd::List(l) => list(root, l),
        Cmd::Exec(e) => exec(root, e),
        Cmd::Pause { id } => {
            container::pause(&Container::load(root, id)?)?;
            Ok(0)
        }
        Cmd::Resume { id } => {
            container::resume(&Container::load(root, id)?)?;
            Ok(0)
        }
        Cmd::Ps(p) => ps(root, p),
        Cmd::Events(e) => events(root, e),
        Cmd::Update(u) => {
            let mut c = Container::load(root, &u.id)?;
            container::update(&mut c, &update_resources(u)?)?;
            Ok(0)
        }
        Cmd::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&runtime::spec::features())?
            );
            Ok(0)
        }
        Cmd::Spec { bundle } => {
            // `spec --rootless` is the global --rootless flag given after the command.
            let rootless = app.rootless.as_deref() == Some("true");
            let path = bundle.join("config.json");
            if path.exists() {
                bail!("File {} exists. Remove it first", path.display());
            }
            let text = serde_json::to_string_pretty(&runtime::spec::example(rootless))?;
            std::fs::write(&path, text + "\n")
                .with_context(|| format!("write {}", path.display()))?;
            Ok(0)
        }
    }
}

fn run_container(root: &Path, r: &RunCmd) -> Result<i32> {
    let all = block_forwarded_signals(!r.detach)?;
    let relay = match (r.detach, &r.common.console_socket) {
        (false, None) => Some(crate::tty::Relay::new(root, &r.common.id)?),
        _ => None,
    };
    let mut opts = create_options(&r.common);
    opts.terminal_fallback = relay.as_ref().map(|t| t.path().to_path_buf());
    let created = container::create(root, &opts)?;
    runtime::trace::mark("created");
    let c = created.container;
    let tty = match relay.filter(|_| created.terminal).map(|t| t.start()) {
        Some(Err(e)) => {
            let _ = container::delete(&c, true);
            return Err(e);
        }
        Some(Ok(t)) => Some(t),
        None => None,
    };
    if let Err(e) = container::start(&c) {
        let _ = container::delete(&c, true);
        return Err(e.into());
    }
    if r.detach {
        return Ok(0);
    }
    runtime::trace::mark("started");
    let code = wait_forwarding(created.pid, &all, tty.as_ref())?;
    if let Some(t) = tty {
        t.finish();
    }
    runtime::trace::mark("exited");
    if !r.keep {
        // What create stored is what delete needs (the cgroup, the poststop hooks, the
        // directory); reading state.json back would only parse the whole spec again.
        container::delete(&c, true)?;
    }
    runtime::trace::mark("deleted");
    Ok(code)
}

/// Waits for our child `pid`, forwarding every other signal to it; returns its exit code
/// the way a shell reports it (128 + signal when killed).
/// In the foreground, signals for the container are forwarded: block them now and take
/// them with sigwaitinfo (the container's process unblocks everything before it execs).
/// Faults stay deliverable so a crash of ours is not swallowed.
fn block_forwarded_signals(foreground: bool) -> Result<nix::sys::signal::SigSet> {
    use nix::sys::signal::{SigSet, SigmaskHow, SIGBUS, SIGFPE, SIGILL, SIGSEGV};
    let mut all = SigSet::all();
    if foreground {
        for s in [SIGSEGV, SIGBUS, SIGILL, SIGFPE] {
            all.remove(s);
        }
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), None)?;
    }
    Ok(all)
}

/// Waits for our child `pid`, passing on the signals we receive; SIGWINCH resizes the
/// terminal we relay, if any, instead.
fn wait_forwarding(
    pid: i32,
    set: &nix::sys::signal::SigSet,
    tty: Option<&crate::tty::Running>,
) -> Result<i32> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let child = nix::unistd::Pid::from_raw(pid);
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG))? {
            WaitStatus::Exited(_, code) => return Ok(code),
            WaitStatus::Signaled(_, sig, _) => return Ok(128 + sig as i32),
            _ => {}
        }
        let sig = set.wait()?;
        if sig == nix::sys::signal::SIGWINCH {
            if let Some(t) = tty {
                t.resize();
                continue;
            }
        }
        if sig != nix::sys::signal::SIGCHLD {
            let _ = nix::sys::signal::kill(child, sig);
        }
    }
}

fn exec(root: &Path, e: &ExecCmd) -> Result<i32> {
    let c = Container::load(root, &e.id)?;
    let process = exec_process(&c, e)?;
    let all = block_forwarded_signals(!e.detach)?;
    let relay = match (e.detach, &e.console_socket, process.terminal()) {
        (false, None, Some(true)) => Some(crate::tty::Relay::new(root, &e.id)?),
        _ => None,
    };
    let pid = container::exec(
        &c,
        &container::ExecOptions {
            process,
            console_socket: relay
                .as_ref()
                .map(|t| t.path().to_path_buf())
                .or_else(|| e.console_socket.clone()),
            pidfd_socket: e.pidfd_socket.clone(),
            pid_file: e.pid_file.clone(),
            preserve_fds: e.preserve_fds,
        },
    )?;
    if e.detach {
        return Ok(0);
    }
    let tty = relay.map(|t| t.start()).transpose()?;
    let code = wait_forwarding(pid, &all, tty.as_ref())?;
    if let Some(t) = tty {
        t.finish();
    }
    Ok(code)
}

/// The process for `exec`: the --process file as is, or the container's own process
/// with the flags applied, as runc builds it.
fn exec_process(c: &Container, e: &ExecCmd) -> Result<oci_spec::runtime::Process> {
    if let Some(path) = &e.process {
        let data =
            std::fs::read(path).with_context(|| format!("read --process {}", path.display()))?;
        let de = &mut serde_json::Deserializer::from_slice(&data);
        return serde_path_to_error::deserialize(de).map_err(|err| {
            anyhow::anyhow!(
                "--process {}: {}: {}",
                path.display(),
                err.path(),
                err.inner()
            )
        });
    }
    if e.command.is_empty() {
        bail!("exec: no command given");
    }
    let mut p = c.stored.spec.process().clone().unwrap_or_default();
    p.set_args(Some(e.command.clone()));
    p.set_terminal(Some(e.tty));
    if let Some(cwd) = &e.cwd {
        p.set_cwd(cwd.clone());
    }
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &e.env {
        let key = kv.split('=').next().unwrap_or_default();
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if let Some(u) = &e.user {
        let mut user = p.user().clone();
        let (uid, gid) = u.split_once(':').unwrap_or((u, ""));
        user.set_uid(
            uid.parse()
                .with_context(|| format!("--user {u:?}: uid must be a number"))?,
        );
        user.set_gid(if gid.is_empty() {
            0
        } else {
            gid.parse()
                .with_context(|| format!("--user {u:?}: gid must be a number"))?
        });
        p.set_user(user);
    }
    if !e.additional_gids.is_empty() {
        let mut user = p.user().clone();
        user.set_additional_gids(Some(e.additional_gids.clone()));
        p.set_user(user);
    }
    if e.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !e.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &e.cap {
            let cap: oci_spec::runtime::Capability =
                serde_json::from_value(serde_json::json!(name))
                    .map_err(|_| anyhow::anyhow!("--cap {name:?}: unknown capability"))?;
            let add = |s: &Option<oci_spec::runtime::Capabilities>| {
                let mut s = s.clone().unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            caps.set_bounding(add(caps.bounding()));
            caps.set_effective(add(caps.effective()));
            caps.set_permitted(add(caps.permitted()));
        }
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

fn ps(root: &Path, p: &PsCmd) -> Result<i32> {
    let c = Container::load(root, &p.id)?;
    let pids = c.stored.cgroup.pids()?;
    match p.format.as_str() {
        "json" => println!("{}", serde_json::to_string(&pids)?),
        "table" => {
            let args = if p.ps_args.is_empty() {
                vec!["-ef".to_string()]
            } else {
                p.ps_args.clone()
            };
            let out = std::process::Command::new("ps")
                .args(&args)
                .output()
                .context("run ps")?;
            if !out.status.success() {
                bail!(
                    "ps {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            let col = header
                .split_whitespace()
                .position(|h| h == "PID")
                .context("ps output has no PID column")?;
            println!("{header}");
            for line in lines {
                let pid: Option<i32> = line
                    .split_whitespace()
                    .nth(col)
                    .and_then(|x| x.parse().ok());
                if pid.is_some_and(|pid| pids.contains(&pid)) {
                    println!("{line}");
                }
            }
        }
        f => bail!("invalid --format {f:?}: use table or json"),
    }
    Ok(0)
}

/// Stats once (--stats) or every --interval; the stream ends, successfully, when the
/// container stops or is deleted.
fn events(root: &Path, e: &EventsCmd) -> Result<i32> {
    let interval = parse_duration(&e.interval)?;
    let mut first = true;
    loop {
        let c = match Container::load(root, &e.id) {
            Ok(c) => c,
            Err(runtime::Error::NotExist(_)) if !first => return Ok(0),
            Err(err) => return Err(err.into()),
        };
        if c.status() == state::Status::Stopped {
            if first {
                bail!("container {} is not running", e.id);
            }
            return Ok(0);
        }
        first = false;
        let stats = c.stored.cgroup.stats()?;
        let ev = serde_json::json!({"type": "stats", "id": e.id, "data": stats});
        println!("{ev}");
        if e.stats {
            return Ok(0);
        }
        std::thread::sleep(interval);
    }
}

/// Go-style durations as runc takes them: "5s", "100ms", "1m".
fn parse_duration(s: &str) -> Result<std::time::Duration> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: f64 = num
        .parse()
        .with_context(|| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "ns" => n / 1e9,
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => bail!("invalid duration {s:?}"),
    };
    if secs <= 0.0 {
        bail!("duration {s:?} must be positive");
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// Byte sizes as runc's update takes them: 1024, 64k, 512m, 1g; -1 for unlimited.
fn parse_bytes(flag: &str, s: &str) -> Result<i64> {
    if s == "-1" {
        return Ok(-1);
    }
    let lower = s.to_ascii_lowercase();
    let t = lower.trim_end_matches('b');
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: i64 = num
        .parse()
        .with_context(|| format!("--{flag} {s:?}: not a size"))?;
    n.checked_mul(mult)
        .with_context(|| format!("--{flag} {s:?}: too large"))
}

fn update_resources(u: &UpdateCmd) -> Result<oci_spec::runtime::LinuxResources> {
    use oci_spec::runtime::{LinuxMemory, LinuxPids, LinuxResources};
    let mut res: LinuxResources = match &u.resources {
        Some(p) if p.as_os_str() == "-" => {
            let de = &mut serde_json::Deserializer::from_reader(std::io::stdin());
            serde_path_to_error::deserialize(de)
                .map_err(|e| anyhow::anyhow!("--resources (stdin): {}: {}", e.path(), e.inner()))?
        }
        Some(p) => {
            let data =
                std::fs::read(p).with_context(|| format!("read --resources {}", p.display()))?;
            let de = &mut serde_json::Deserializer::from_slice(&data);
            serde_path_to_error::deserialize(de).map_err(|e| {
                anyhow::anyhow!("--resources {}: {}: {}", p.display(), e.path(), e.inner())
            })?
        }
        None => LinuxResources::default(),
    };
    let mut mem = res.memory().unwrap_or_default();
    let mut mem_set = res.memory().is_some();
    for (flag, val, set) in [
        (
            "memory",
            &u.memory,
            LinuxMemory::set_limit as fn(&mut LinuxMemory, Option<i64>) -> &mut LinuxMemory,
        ),
        (
            "memory-reservation",
            &u.memory_reservation,
            LinuxMemory::set_reservation,
        ),
        ("memory-swap", &u.memory_swap, LinuxMemory::set_swap),
    ] {
        if let Some(v) = val {
            set(&mut mem, Some(parse_bytes(flag, v)?));
            mem_set = true;
        }
    }
    if mem_set {
        res.set_memory(Some(mem));
    }
    let mut cpu = res.cpu().clone().unwrap_or_default();
    let cpu_set = res.cpu().is_some()
        || u.cpu_shares.is_some()
        || u.cpu_quota.is_some()
        || u.cpu_period.is_some()
        || u.cpu_rt_period.is_some()
        || u.cpu_rt_runtime.is_some()
        || u.cpuset_cpus.is_some()
        || u.cpuset_mems.is_some();
    if let Some(v) = u.cpu_shares {
        cpu.set_shares(Some(v));
    }
    if let Some(v) = u.cpu_quota {
        cpu.set_quota(Some(v));
    }
    if let Some(v) = u.cpu_period {
        cpu.set_period(Some(v));
    }
    if let Some(v) = u.cpu_rt_period {
        cpu.set_realtime_period(Some(v));
    }
    if let Some(v) = u.cpu_rt_runtime {
        cpu.set_realtime_runtime(Some(v));
    }
    if let Some(v) = &u.cpuset_cpus {
        cpu.set_cpus(Some(v.clone()));
    }
    if let Some(v) = &u.cpuset_mems {
        cpu.set_mems(Some(v.clone()));
    }
    if cpu_set {
        res.set_cpu(Some(cpu));
    }
    if let Some(v) = u.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(v);
        res.set_pids(Some(p));
    }
    if let Some(v) = u.blkio_weight {
        let mut b = res.block_io().clone().unwrap_or_default();
        b.set_weight(Some(v));
        res.set_block_io(Some(b));
    }
    Ok(res)
}

fn list(root: &Path, l: &ListCmd) -> Result<i32> {
    let mut containers = vec![];
    if let Ok(rd) = std::fs::read_dir(root) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Ok(c) = Container::load(root, &name) {
                containers.push(c);
            }
        }
    }
    containers.sort_by(|a, b| a.stored.created.cmp(&b.stored.created));
    if l.quiet {
        for c in &containers {
            println!("{}", c.id());
        }
        return Ok(0);
    }
    match l.format.as_str() {
        "json" => {
            let states: Vec<_> = containers.iter().map(|c| c.oci_state()).collect();
            println!("{}", serde_json::to_string(&states)?);
        }
        "table" => {
            let mut rows = vec![[
                "ID".to_string(),
                "PID".into(),
                "STATUS".into(),
                "BUNDLE".into(),
                "CREATED".into(),
                "OWNER".into(),
            ]];
            for c in &containers {
                let s = c.oci_state();
                rows.push([
                    s.id,
                    s.pid.to_string(),
                    s.status,
                    s.bundle.display().to_string(),
                    s.created,
                    if s.owner.is_empty() {
                        "root".into()
                    } else {
                        s.owner
                    },
                ]);
            }
            print!("{}", tabulate(&rows));
        }
        f => bail!("invalid --format {f:?}: use table or json"),
    }
    Ok(0)
}

/// Columns as Go's tabwriter prints them for runc (min width 12, padding 3); the last
/// column is not padded.
pub fn tabulate<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count() + 3).max(12);
        }
    }
    let mut out = String::new();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i + 1 == N {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}", w = widths[i]));
            }
        }
        out.push('\n');
    }
    out
}
