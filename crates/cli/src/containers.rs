//! Container commands: `create`, `run`, `start`, `ps`, `logs`, `stop`, `kill`, `rm`,
//! `wait`, `pause`, `unpause`, `rename`, `restart`, `container inspect|ls|prune|cleanup`
//! (and `container cp|diff|export|commit`, which live in `filesystem`).

use crate::format::{render, Format};
use crate::run_flags::{PullPolicy, RunFlags};
use crate::units::{ago, human_duration};
use crate::App;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use engine::container::{Engine, EngineError};
use engine::store::{Container, State};
use serde_json::{json, Map, Value};
use std::io::{IsTerminal, Write};
use std::time::Duration;

pub fn open_engine(app: &App) -> Result<Engine> {
    open_engine_at(&app.root, &app.runroot)
}

/// The engine of `--root` and `--runroot`, for a thread that outlives the `App`.
pub fn open_engine_at(root: &std::path::Path, runroot: &std::path::Path) -> Result<Engine> {
    let exe = std::env::current_exe().context("finding the berth binary")?;
    let exit_command = vec![
        exe.into_os_string(),
        "--root".into(),
        root.as_os_str().to_owned(),
        "--runroot".into(),
        runroot.as_os_str().to_owned(),
        "container".into(),
        "cleanup".into(),
    ];
    Ok(Engine::open(root, runroot, exit_command)?)
}

// `IMAGE [COMMAND] [ARG...]` is one positional: docker passes everything after the
// image to the command, flags included (`run busybox ls -h`).
#[derive(Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    #[command(flatten)]
    pub flags: RunFlags,
    #[arg(
        value_name = "IMAGE [COMMAND] [ARG...]",
        required = true,
        trailing_var_arg = true
    )]
    pub args: Vec<String>,
}

impl RunArgs {
    fn image(&self) -> &str {
        &self.args[0]
    }

    fn command(&self) -> &[String] {
        &self.args[1..]
    }
}

#[derive(Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    pub attach: bool,
    /// Attach container's STDIN
    #[arg(short, long)]
    pub interactive: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show the latest created container (includes all states)
    #[arg(short, long)]
    pub latest: bool,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long = "last", default_value_t = -1)]
    pub last: i64,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Filter output based on conditions provided
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format output using a Go template
    #[arg(long)]
    pub format: Option<String>,
    /// Display total file sizes (not supported)
    #[arg(short, long)]
    pub size: bool,
}

#[derive(Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    pub follow: bool,
    /// Show logs since timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m)
    #[arg(long)]
    pub since: Option<String>,
    /// Show logs before a timestamp or relative time
    #[arg(long)]
    pub until: Option<String>,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    /// Show extra details (accepted; there are none)
    #[arg(long)]
    pub details: bool,
    pub container: String,
}

#[derive(Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(
        short = 't',
        long = "time",
        visible_alias = "timeout",
        allow_negative_numbers = true
    )]
    pub time: Option<i64>,
    /// Signal to send to the container
    #[arg(short, long)]
    pub signal: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    pub force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short, long)]
    pub volumes: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args)]
pub struct NamesArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args)]
pub struct RenameArgs {
    pub container: String,
    pub new_name: String,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a Go template
    #[arg(short, long)]
    pub format: Option<String>,
    /// Display total file sizes (not supported)
    #[arg(short, long)]
    pub size: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    #[arg(long)]
    pub filter: Vec<String>,
}

#[derive(Subcommand)]
#[command(defer = true)]
pub enum ContainerCmd {
    /// Create a new container
    Create(RunArgs),
    /// Create and run a new container from an image
    Run(RunArgs),
    /// Start one or more stopped containers
    Start(StartArgs),
    /// List containers
    #[command(visible_alias = "ps", alias = "list")]
    Ls(PsArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Restart one or more containers
    Restart(StopArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Remove one or more containers
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(NamesArgs),
    /// Pause all processes within one or more containers
    Pause(NamesArgs),
    /// Unpause all processes within one or more containers
    Unpause(NamesArgs),
    /// Rename a container
    Rename(RenameArgs),
    /// Display detailed information on one or more containers
    Inspect(InspectArgs),
    /// Remove all stopped containers
    Prune(PruneArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(crate::filesystem::CpArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(crate::filesystem::DiffArgs),
    /// Export a container's filesystem as a tar archive
    Export(crate::filesystem::ExportArgs),
    /// Create a new image from a container's changes
    Commit(crate::filesystem::CommitArgs),
    #[command(flatten)]
    Procs(crate::procs::ProcCmd),
    /// Run by a container's monitor after the container exits
    #[command(hide = true)]
    Cleanup { id: String },
}

pub fn container_cmd(app: &App, c: &ContainerCmd) -> Result<i32> {
    match c {
        ContainerCmd::Create(a) => create(app, a),
        ContainerCmd::Run(a) => run(app, a),
        ContainerCmd::Start(a) => start(app, a),
        ContainerCmd::Ls(a) => ps(app, a),
        ContainerCmd::Logs(a) => logs(app, a),
        ContainerCmd::Stop(a) => stop(app, a),
        ContainerCmd::Restart(a) => restart(app, a),
        ContainerCmd::Kill(a) => kill(app, a),
        ContainerCmd::Rm(a) => rm(app, a),
        ContainerCmd::Wait(a) => wait(app, a),
        ContainerCmd::Pause(a) => pause(app, a, true),
        ContainerCmd::Unpause(a) => pause(app, a, false),
        ContainerCmd::Rename(a) => rename(app, a),
        ContainerCmd::Inspect(a) => inspect(app, a),
        ContainerCmd::Prune(a) => prune(app, a),
        ContainerCmd::Cp(a) => crate::filesystem::cp(app, a),
        ContainerCmd::Diff(a) => crate::filesystem::diff(app, a),
        ContainerCmd::Export(a) => crate::filesystem::export(app, a),
        ContainerCmd::Commit(a) => crate::filesystem::commit(app, a),
        ContainerCmd::Procs(c) => crate::procs::run(app, c),
        ContainerCmd::Cleanup { id } => {
            open_engine(app)?.cleanup(id)?;
            Ok(0)
        }
    }
}

/// An engine error as the command's result: the usage and start failures keep Docker's
/// exit codes (125 for the engine, 126/127 for a command that cannot run).
pub struct Exit(pub i32, pub String);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::fmt::Debug for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for Exit {}

fn code(code: i32, e: impl std::fmt::Display) -> anyhow::Error {
    Exit(code, e.to_string()).into()
}

/// Parses flags and finds (or pulls) the image, then creates the container. A `--cidfile`
/// is claimed first, as docker's CLI does, so a taken one fails before anything (a volume)
/// is created; it is removed again if the create fails.
fn create_container(engine: &Engine, a: &RunArgs) -> Result<Container> {
    let opts = a
        .flags
        .to_options(a.image(), a.command())
        .map_err(|e| code(125, e))?;
    let mut cidfile = match &a.flags.cidfile {
        Some(path) => Some((path, open_cidfile(path).map_err(|e| code(125, e))?)),
        None => None,
    };
    let drop_cidfile = |cidfile: &Option<(&std::path::PathBuf, std::fs::File)>| {
        if let Some((path, _)) = cidfile {
            let _ = std::fs::remove_file(path);
        }
    };
    let created = find_or_pull(engine, &a.flags, a.image())
        .and_then(|image| engine.create(opts, &image).map_err(|e| code(125, e)));
    let c = match created {
        Ok(c) => c,
        Err(e) => {
            drop_cidfile(&cidfile);
            return Err(e);
        }
    };
    if let Some((_, f)) = &mut cidfile {
        if let Err(e) = f.write_all(c.id.as_bytes()) {
            let _ = engine.remove(&c, true, true);
            drop_cidfile(&cidfile);
            return Err(code(
                125,
                format!("failed to write the container ID file: {e}"),
            ));
        }
    }
    Ok(c)
}

fn open_cidfile(path: &std::path::Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                anyhow::anyhow!("container ID file found, make sure the other container isn't running or delete {}", path.display())
            }
            _ => anyhow::anyhow!("failed to create the container ID file: {e}"),
        })
}

/// The image by name or ID; with `--pull missing` (the default) pulled if absent, or if
/// the local one is not of the `--platform` asked for (as Docker does).
fn find_or_pull(engine: &Engine, flags: &RunFlags, name: &str) -> Result<image::digest::Digest> {
    let pull = flags.pull_policy().map_err(|e| code(125, e))?;
    let platform = flags
        .platform
        .as_deref()
        .map(image::manifest::parse_platform)
        .transpose()
        .map_err(|e| code(125, e))?;
    if pull != PullPolicy::Always {
        match engine.images.meta.resolve(name) {
            Ok(row) => match (&platform, image_platform(engine, &row.id)) {
                (Some(want), Some(have)) if !platform_matches(want, &have) => {
                    if pull == PullPolicy::Never {
                        return Err(code(125, format!("image with reference {name} was found but does not match the specified platform: wanted {want}, actual: {have}")));
                    }
                }
                _ => return Ok(row.id),
            },
            Err(_) if pull == PullPolicy::Never => {
                return Err(code(125, format!("No such image: {name}")));
            }
            Err(_) => {}
        }
    }
    let reference = image::reference::Reference::parse(name).map_err(|e| code(125, e))?;
    if pull != PullPolicy::Always {
        eprintln!("Unable to find image '{}' locally", reference.familiar());
    }
    let quiet = flags.quiet;
    let display = crate::progress::Display::new(crate::progress::Mode::pick(quiet), false);
    let row = registry::pull(
        &engine.images,
        &reference,
        platform.as_ref(),
        &registry::Options::default(),
        &|e| display.event(e),
    )
    .map_err(|e| code(125, e))?;
    display.finish();
    Ok(row.id)
}

/// The platform an image's config says it is for; `None` if it does not say.
fn image_platform(
    engine: &Engine,
    id: &image::digest::Digest,
) -> Option<image::manifest::Platform> {
    let blob = engine.images.blobs.read(id).ok()?;
    let config: Value = serde_json::from_slice(&blob).ok()?;
    let os = config["os"].as_str().filter(|s| !s.is_empty())?;
    let arch = config["architecture"].as_str().filter(|s| !s.is_empty())?;
    let text = match config["variant"].as_str().filter(|s| !s.is_empty()) {
        Some(variant) => format!("{os}/{arch}/{variant}"),
        None => format!("{os}/{arch}"),
    };
    image::manifest::parse_platform(&text).ok()
}

/// containerd's platforms.Only, for one platform: OS and architecture equal, and the
/// variants too where both name one.
fn platform_matches(want: &image::manifest::Platform, have: &image::manifest::Platform) -> bool {
    want.os == have.os
        && want.architecture == have.architecture
        && (want.variant.is_none() || have.variant.is_none() || want.variant == have.variant)
}

pub fn create(app: &App, a: &RunArgs) -> Result<i32> {
    let engine = open_engine(app).map_err(|e| code(125, e))?;
    let c = create_container(&engine, a)?;
    println!("{}", c.id);
    Ok(0)
}

pub fn run(app: &App, a: &RunArgs) -> Result<i32> {
    // The docker CLI's check, before anything is created: a terminal in the container
    // fed from ours needs ours to be one (exit 1, as docker's).
    let f = &a.flags;
    if f.tty && f.interactive && !f.detach && !std::io::stdin().is_terminal() {
        bail!("the input device is not a TTY");
    }
    let engine = open_engine(app).map_err(|e| code(125, e))?;
    let c = create_container(&engine, a)?;
    if a.flags.detach {
        let started = engine.start(&c, false).and_then(|s| s.wait());
        if let Err(e) = started {
            return Err(start_failed(&engine, &c, e));
        }
        println!("{}", c.id);
        return Ok(0);
    }
    let code = crate::attach::run_attached(&engine, &c, a.flags.sig_proxy)?;
    Ok(code)
}

/// A failed start: with `--rm` the container goes too; Docker's exit code.
pub fn start_failed(engine: &Engine, c: &Container, e: EngineError) -> anyhow::Error {
    let status = match &e {
        EngineError::Start { exit_code, .. } => *exit_code,
        _ => 125,
    };
    if c.options.auto_remove {
        if let Ok(now) = engine.find(&c.id) {
            let _ = engine.remove(&now, true, true);
        }
    }
    code(status, e)
}

pub fn start(app: &App, a: &StartArgs) -> Result<i32> {
    let engine = open_engine(app)?;
    if a.attach || a.interactive {
        if a.containers.len() > 1 {
            bail!("you cannot start and attach multiple containers at once");
        }
        let c = engine.find(&a.containers[0])?;
        if c.state.is_live() {
            bail!("container {} is already running; use attach", c.id);
        }
        return crate::attach::run_attached(&engine, &c, true);
    }
    let mut failed = false;
    for name in &a.containers {
        let result = engine.find(name).and_then(|c| {
            if c.state.is_live() {
                return Ok(());
            }
            engine.start(&c, false)?.wait().map(|_| ())
        });
        match result {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                failed = true;
            }
        }
    }
    if failed {
        bail!("failed to start containers: {}", a.containers.join(", "));
    }
    Ok(0)
}

/// Each name in turn; errors are printed as Docker prints them and make the exit 1.
fn each(names: &[String], mut f: impl FnMut(&str) -> Result<Option<String>>) -> Result<i32> {
    let mut failed = false;
    for name in names {
        match f(name) {
            Ok(Some(out)) => println!("{out}"),
            Ok(None) => {}
            Err(e) => {
                eprintln!("Error response from daemon: {}", crate::one_line(&e));
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

pub fn stop(app: &App, a: &StopArgs) -> Result<i32> {
    let engine = open_engine(app)?;
    each(&a.containers, |name| {
        let c = engine.find(name)?;
        let c = match &a.signal {
            Some(sig) => {
                engine::flags::parse_signal(sig)?;
                let mut c = c;
                c.options.run.stop_signal = Some(sig.clone());
                c
            }
            None => c,
        };
        engine.stop(&c, a.time)?;
        Ok(Some(name.to_string()))
    })
}

pub fn restart(app: &App, a: &StopArgs) -> Result<i32> {
    let engine = open_engine(app)?;
    each(&a.containers, |name| {
        let c = engine.find(name)?;
        engine.stop(&c, a.time)?;
        let c = engine.find(name)?;
        engine.start(&c, false)?.wait()?;
        Ok(Some(name.to_string()))
    })
}

pub fn kill(app: &App, a: &KillArgs) -> Result<i32> {
    let engine = open_engine(app)?;
    let signal = engine::flags::parse_signal(&a.signal)?;
    each(&a.containers, |name| {
        let c = engine.find(name)?;
        engine.kill(&c, signal)?;
        Ok(Some(name.to_string()))
    })
}

pub fn rm(app: &App, a: &RmArgs) -> Result<i32> {
    let engine = open_engine(app)?;
    each(&a.containers, |name| {
        let c = engine.find(name)?;
        engine.remove(&c, a.force, a.volumes)?;
        Ok(Some(name.to_string()))
    })
}

pub fn wait(app: &App, a: &NamesArgs) -> Result<i32> {
    let engine = open_engine(app)?;
    each(&a.containers, |name| {
        let c = engine.reconcile(engine.find(name)?)?;
        loop {
            let now = engine.reconcile(engine.find(&c.id)?)?;
            match now.state {
                State::Exited => return Ok(Some(now.exit_code.to_string())),
                State::Running | State::Paused => {
                    engine.wait_monitor(&now, None);
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    })
}

pub fn pause(app: &App, a: &NamesArgs, on: bool) -> Result<i32> {
    let engine = open_engine(app)?;
    each(&a.containers, |name| {
        engine.pause(&engine.find(name)?, on)?;
        Ok(Some(name.to_string()))
    })
}

pub fn rename(app: &App, a: &RenameArgs) -> Result<i32> {
    let engine = open_engine(app)?;
    let c = engine.find(&a.container)?;
    let name = a.new_name.trim_start_matches('/');
    if !engine::container::valid_name(name) {
        bail!("Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed");
    }
    if !engine.store.rename(&c.id, name)? {
        let holder = engine.find(name).map(|h| h.id).unwrap_or_default();
        bail!("Conflict. The container name \"/{name}\" is already in use by container \"{holder}\". You have to remove (or rename) that container to be able to reuse that name.");
    }
    engine.network_rename(&c, name)?;
    Ok(0)
}

pub fn prune(app: &App, a: &PruneArgs) -> Result<i32> {
    if !a.filter.is_empty() {
        bail!("--filter is not supported by container prune yet");
    }
    if !a.force
        && !crate::volumes::confirm(
            "WARNING! This will remove all stopped containers.\nAre you sure you want to continue?",
        )
    {
        return Ok(0);
    }
    let engine = open_engine(app)?;
    let (removed, bytes) = prune_containers(&engine)?;
    if !removed.is_empty() {
        println!("Deleted Containers:");
        for id in &removed {
            println!("{id}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", crate::units::human_size(bytes));
    Ok(0)
}

/// Removes every container that is not running (created or exited); their ids and the
/// bytes their writable layers held.
pub fn prune_containers(engine: &Engine) -> Result<(Vec<String>, u64)> {
    let mut removed = Vec::new();
    let mut bytes = 0;
    for c in engine.store.list()? {
        let c = engine.reconcile(c)?;
        if matches!(c.state, State::Exited | State::Created) {
            let size = crate::system::dir_size(&engine.container_dir(&c.id).join("upper"));
            engine.remove(&c, false, false)?;
            bytes += size;
            removed.push(c.id);
        }
    }
    Ok((removed, bytes))
}

pub fn logs(app: &App, a: &LogsArgs) -> Result<i32> {
    let engine = open_engine(app)?;
    let c = engine.find(&a.container)?;
    if c.options.log_driver == engine::LogDriver::None {
        bail!("configured logging driver does not support reading");
    }
    let now = engine::container::now_nanos();
    let opts = engine::logs::LogOptions {
        follow: a.follow,
        since: a
            .since
            .as_deref()
            .map(|s| parse_since(s, now))
            .transpose()?,
        until: a
            .until
            .as_deref()
            .map(|s| parse_since(s, now))
            .transpose()?,
        tail: match a.tail.as_str() {
            "all" | "-1" => None,
            n => Some(
                n.parse()
                    .map_err(|_| anyhow::anyhow!("invalid value for \"tail\": {n}"))?,
            ),
        },
    };
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let live = || {
        engine
            .find(&c.id)
            .and_then(|c| engine.reconcile(c))
            .is_ok_and(|c| c.state.is_live() || c.state == State::Restarting)
    };
    let result = engine::logs::read(&engine.log_path(&c.id), &opts, &live, &mut |e| {
        let w: &mut dyn Write = if e.stderr && !c.options.run.tty {
            &mut err
        } else {
            &mut out
        };
        if a.timestamps {
            write!(w, "{} ", e.time_text)?;
        }
        w.write_all(&e.log)?;
        w.flush()
    });
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        other => other.map(|()| 0).context("reading the log"),
    }
}

/// `--since`/`--until`: RFC 3339, Unix seconds (with fraction), or a Go duration ago.
fn parse_since(s: &str, now: i64) -> Result<i64> {
    if let Some(t) = engine::container::parse_time(s) {
        return Ok(t);
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Ok((secs * 1e9) as i64);
    }
    let d = engine::options::parse_duration(s, "--since")
        .map_err(|_| anyhow::anyhow!("invalid value for \"since\": {s}"))?;
    Ok(now - d)
}

pub fn ps(app: &App, a: &PsArgs) -> Result<i32> {
    let engine = open_engine(app)?;
    let filters: Vec<(String, String)> = a
        .filter
        .iter()
        .map(|f| {
            f.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| anyhow::anyhow!("bad format of filter (expected name=value): {f}"))
        })
        .collect::<Result<_>>()?;
    let mut list = Vec::new();
    for c in engine.store.list()? {
        list.push(engine.reconcile(c)?);
    }
    let limit = if a.latest { 1 } else { a.last };
    let all = a.all || limit > 0;
    let mut rows = Vec::new();
    for c in list {
        if !all && !c.state.is_live() && c.state != State::Restarting {
            continue;
        }
        if !filters
            .iter()
            .all(|(k, v)| matches_filter(&engine, &c, k, v))
        {
            continue;
        }
        rows.push(c);
        if limit > 0 && rows.len() as i64 >= limit {
            break;
        }
    }
    if a.quiet {
        for c in &rows {
            println!("{}", if a.no_trunc { &c.id[..] } else { &c.id[..12] });
        }
        return Ok(0);
    }
    let now = engine::container::now_nanos();
    let table: Vec<Map<String, Value>> = rows
        .iter()
        .map(|c| ps_row(&engine, c, a.no_trunc, now))
        .collect();
    let default =
        "{{.ID}}\t{{.Image}}\t{{.Command}}\t{{.CreatedAt}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";
    let fmt = Format::parse(a.format.as_deref());
    let headers = matches!(fmt, Format::Default | Format::Template { table: true, .. });
    let mut text = render(&table, &fmt, default)?;
    if headers {
        // The shared header names say IMAGE ID for ID; a short ID is as wide as
        // "CONTAINER ID", so the columns stay aligned.
        let end = text.find('\n').unwrap_or(text.len());
        if let Some(rest) = text[..end].strip_prefix("IMAGE ID") {
            let pad = rest.len() - rest.trim_start_matches(' ').len();
            let first = format!(
                "CONTAINER ID{}{}",
                " ".repeat(pad.saturating_sub(4).max(3)),
                &rest[pad..]
            );
            text.replace_range(..end, &first);
        }
    }
    print!("{text}");
    Ok(0)
}

fn matches_filter(engine: &Engine, c: &Container, key: &str, value: &str) -> bool {
    match key {
        "id" => c.id.starts_with(value),
        "name" => c.name.contains(value),
        "status" => c.state.docker_status() == value,
        "ancestor" => c.image_name == value || c.image.contains(value),
        // By name, as the container was given it (docker also takes the network's id).
        "network" => network_names(engine, c).iter().any(|n| n == value),
        "label" => match value.split_once('=') {
            Some((k, v)) => c.options.run.labels.get(k).is_some_and(|x| x == v),
            None => c.options.run.labels.contains_key(value),
        },
        "exited" => c.state == State::Exited && value.parse() == Ok(c.exit_code),
        "health" => {
            let status = engine.health(c);
            let status = status.as_ref().and_then(|h| h["Status"].as_str());
            status.unwrap_or("none") == value
        }
        _ => false,
    }
}

/// Docker's STATUS column; `health` is `State.Health.Status` for a container with a check.
pub fn status_text(c: &Container, now: i64, health: Option<&str>) -> String {
    let since = |t: i64| human_duration((now - t).max(0) / 1_000_000_000);
    match c.state {
        State::Created | State::Starting => "Created".into(),
        State::Running => match health {
            Some("starting") => format!("Up {} (health: starting)", since(c.started_at)),
            Some(h) => format!("Up {} ({h})", since(c.started_at)),
            None => format!("Up {}", since(c.started_at)),
        },
        State::Paused => format!("Up {} (Paused)", since(c.started_at)),
        State::Restarting => format!("Restarting ({}) {} ago", c.exit_code, since(c.finished_at)),
        State::Removing => "Removal In Progress".into(),
        State::Exited => format!("Exited ({}) {} ago", c.exit_code, since(c.finished_at)),
    }
}

fn ps_row(engine: &Engine, c: &Container, no_trunc: bool, now: i64) -> Map<String, Value> {
    let command = engine
        .command_line(c)
        .iter()
        .map(|a| {
            if a.contains(' ') {
                format!("'{a}'")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    let command = if !no_trunc && command.chars().count() > 20 {
        format!("{}…", command.chars().take(19).collect::<String>())
    } else {
        command
    };
    let labels = c
        .options
        .run
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut m = Map::new();
    let id = if no_trunc {
        c.id.clone()
    } else {
        c.id[..12].to_string()
    };
    m.insert("ID".into(), json!(id));
    m.insert("Image".into(), json!(c.image_name));
    m.insert("Command".into(), json!(format!("\"{command}\"")));
    m.insert(
        "CreatedAt".into(),
        json!(ago(Some(c.created / 1_000_000_000), now / 1_000_000_000)),
    );
    m.insert(
        "RunningFor".into(),
        json!(human_duration((now - c.created) / 1_000_000_000)),
    );
    let health = engine.health(c);
    let health = health
        .as_ref()
        .and_then(|h| h["Status"].as_str().map(String::from));
    m.insert(
        "Status".into(),
        json!(status_text(c, now, health.as_deref())),
    );
    m.insert("State".into(), json!(c.state.docker_status()));
    m.insert(
        "Ports".into(),
        json!(crate::networks::ps_ports(&engine.published_ports(c))),
    );
    m.insert("Names".into(), json!(c.name));
    m.insert("Labels".into(), json!(labels));
    m.insert("Mounts".into(), json!(""));
    m.insert("Networks".into(), json!(network_names(engine, c).join(",")));
    m.insert("Size".into(), json!("0B"));
    m
}

/// `ps`'s NETWORKS: the network the container was created on, then those it was
/// connected to (`network connect`).
fn network_names(engine: &Engine, c: &Container) -> Vec<String> {
    let mut names = vec![network_name(c)];
    names.extend(engine.connected_networks(c));
    names
}

/// `HostConfig.NetworkMode`: `bridge`, a user network's name as given, `host`, `none`
/// (or `container:NAME`).
fn network_name(c: &Container) -> String {
    match &c.options.run.network {
        engine::flags::NetworkMode::Host => "host".into(),
        engine::flags::NetworkMode::Default => "bridge".into(),
        engine::flags::NetworkMode::None => "none".into(),
        engine::flags::NetworkMode::Other(n) => n.clone(),
    }
}

fn rfc3339_nanos(t: i64) -> String {
    if t == 0 {
        return "0001-01-01T00:00:00Z".into();
    }
    let secs = t.div_euclid(1_000_000_000);
    let nanos = t.rem_euclid(1_000_000_000);
    let base = image::time::format_rfc3339(secs);
    format!("{}.{nanos:09}Z", base.trim_end_matches('Z'))
}

pub fn inspect(app: &App, a: &InspectArgs) -> Result<i32> {
    let engine = open_engine(app)?;
    let mut out = Vec::new();
    let mut failed = Vec::new();
    for name in &a.containers {
        match engine.find(name).and_then(|c| engine.reconcile(c)) {
            Ok(c) => out.push(inspect_value(&engine, &c)),
            Err(e) => failed.push(e.to_string()),
        }
    }
    crate::format::print_inspect(out, a.format.as_deref())?;
    if !failed.is_empty() {
        for e in &failed {
            eprintln!("Error: {e}");
        }
        return Ok(1);
    }
    Ok(0)
}

/// `Config.Hostname`: `-h`, else the host's name with `--network host`, else the short ID.
fn hostname(c: &Container) -> String {
    let run = &c.options.run;
    if let Some(h) = &run.hostname {
        return h.clone();
    }
    if run.network == engine::flags::NetworkMode::Host {
        if let Ok(h) = nix::unistd::gethostname() {
            return h.to_string_lossy().into_owned();
        }
    }
    c.id[..12].to_string()
}

/// Docker's `ContainerJSON` for the fields berth has.
pub fn inspect_value(engine: &Engine, c: &Container) -> Value {
    let run = &c.options.run;
    let args = engine.command_line(c);
    let env = engine.env(c);
    let running = matches!(c.state, State::Running | State::Paused);
    let mut v = json!({
        "Id": c.id,
        "Created": rfc3339_nanos(c.created),
        "Path": args.first().cloned().unwrap_or_default(),
        "Args": args.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": c.state.docker_status(),
            "Running": running,
            "Paused": c.state == State::Paused,
            "Restarting": c.state == State::Restarting,
            "OOMKilled": c.oom_killed,
            "Dead": false,
            "Pid": if running { c.pid } else { 0 },
            "ExitCode": c.exit_code,
            "Error": c.error,
            "StartedAt": rfc3339_nanos(c.started_at),
            "FinishedAt": rfc3339_nanos(c.finished_at),
        },
        "Image": c.image,
        "ResolvConfPath": engine.container_dir(&c.id).join("resolv.conf"),
        "HostnamePath": engine.container_dir(&c.id).join("hostname"),
        "HostsPath": engine.container_dir(&c.id).join("hosts"),
        "LogPath": engine.log_path(&c.id),
        "Name": format!("/{}", c.name),
        "RestartCount": c.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "HostConfig": {
            "AutoRemove": c.options.auto_remove,
            "RestartPolicy": {
                "Name": c.options.restart.name(),
                "MaximumRetryCount": match c.options.restart {
                    engine::RestartPolicy::OnFailure { max } => max,
                    _ => 0,
                },
            },
            "NetworkMode": network_name(c),
            "Privileged": run.privileged,
            "ReadonlyRootfs": run.read_only,
            "Memory": run.memory.unwrap_or(0),
            "MemorySwap": run.memory_swap.unwrap_or(0),
            "NanoCpus": run.nano_cpus.unwrap_or(0),
            "CpuShares": run.cpu_shares.unwrap_or(0),
            "CpusetCpus": run.cpuset_cpus.clone().unwrap_or_default(),
            "PidsLimit": run.pids_limit,
            "CapAdd": run.cap_add,
            "CapDrop": run.cap_drop,
            // Docker shows the runtime's name; berth resolves names to paths at create.
            "Runtime": c.runtime.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
            "LogConfig": {
                "Type": match c.options.log_driver {
                    engine::LogDriver::JsonFile => "json-file",
                    engine::LogDriver::None => "none",
                },
            },
        },
        "Mounts": crate::volumes::container_mounts(engine, c),
        "Config": {
            "Hostname": hostname(c),
            "User": run.user.clone().unwrap_or_default(),
            "Tty": run.tty,
            "OpenStdin": run.interactive,
            "Env": env,
            "Cmd": engine.cmd(c),
            "Image": c.image_name,
            "WorkingDir": run.workdir.clone().unwrap_or_default(),
            "Entrypoint": engine.entrypoint(c),
            "Labels": run.labels,
            "StopSignal": run.stop_signal.clone().unwrap_or_else(|| "SIGTERM".into()),
        },
        "NetworkSettings": crate::networks::settings(engine, c),
    });
    if let Some(h) = engine.health_check(c) {
        v["Config"]["Healthcheck"] = json!({
            "Test": h.test,
            "Interval": h.interval,
            "Timeout": h.timeout,
            "StartPeriod": h.start_period,
            "Retries": h.retries,
        });
        v["State"]["Health"] = engine.health(c).unwrap_or_default();
    }
    v
}
