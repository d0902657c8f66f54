//! Container lifecycle: create, start under a monitor, the monitor's exit command
//! (cleanup, `--rm`, restart policy), kill/stop, remove, and noticing dead monitors.
//!
//! Where things live for container ID:
//! - `<root>/containers/ID/`: `config.json` (the bundle), `rootfs/` (the overlay mount,
//!   only while the container runs), `upper/` and `work/` (its writable layer),
//!   `hostname`, `hosts`, `resolv.conf`, `ID-json.log`, `lock`.
//! - `<runroot>/containers/ID/`: the monitor's state (docs/monitor.md).
//! - `<runroot>/runtimes/NAME/`: the OCI runtime's `--root`.

use crate::etc;
use crate::health;
use crate::names;
pub use crate::names::valid_name;
use crate::options::{CreateOptions, LogDriver, RestartPolicy};
use crate::spec::{build_spec, SpecContext};
use crate::store::{Container, Exit, State, Store, StoreError};
use crate::user::RootfsUsers;
use crate::volumes::{self, Volumes};
use image::digest::Digest;
use image::images::ImageStore;
use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    #[error("Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.")]
    NameInUse { name: String, id: String },
    #[error("Invalid container name ({0}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    #[error("unknown or invalid runtime name: {0}")]
    UnknownRuntime(String),
    #[error("cannot {action} container {id}: container is not running")]
    NotRunning { action: &'static str, id: String },
    #[error("You cannot remove a {state} container {id}. Stop the container before attempting removal or force remove")]
    Running { state: &'static str, id: String },
    #[error("container {id} is {state}: cannot {action} it now")]
    Busy {
        id: String,
        state: &'static str,
        action: &'static str,
    },
    /// The OCI runtime or the container's process failed to start; `exit_code` is the
    /// status Docker gives (127 not found, 126 cannot execute, 125 otherwise).
    #[error("failed to start container {id}: {message}")]
    Start {
        id: String,
        message: String,
        exit_code: i32,
    },
    #[error("{0}")]
    Flag(#[from] crate::flags::FlagError),
    #[error("{0}")]
    Spec(#[from] crate::spec::SpecError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Image(#[from] image::images::ImageError),
    #[error("{0}")]
    Volume(#[from] volumes::VolumeError),
    #[error("{0}")]
    Network(#[from] network::Error),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, EngineError>;

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> EngineError + 'a {
    move |source| EngineError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The engine over one `--root`/`--runroot` pair.
pub struct Engine {
    pub root: PathBuf,
    pub runroot: PathBuf,
    pub images: ImageStore,
    pub store: Store,
    pub volumes: Volumes,
    /// The `berth-monitor` binary.
    pub monitor: PathBuf,
    /// The `berth-dns` binary: the DNS server of user networks.
    pub dns_server: PathBuf,
    /// The command (and its first arguments) the monitor runs after the container exits;
    /// the container ID is appended. The CLI passes itself: `berth --root R --runroot RR
    /// container cleanup`.
    pub exit_command: Vec<OsString>,
    /// The runtime for containers created without `--runtime`.
    pub default_runtime: String,
}

impl Engine {
    pub fn open(root: &Path, runroot: &Path, exit_command: Vec<OsString>) -> Result<Engine> {
        let images = ImageStore::open(root)?;
        let store = Store::open_shared(root, images.meta.shared())?;
        let volumes = Volumes::open_shared(root, images.meta.shared())?;
        let monitor = beside_self("berth-monitor").unwrap_or_else(|| "berth-monitor".into());
        let dns_server = beside_self("berth-dns").unwrap_or_else(|| "berth-dns".into());
        let default_runtime =
            std::env::var("BERTH_RUNTIME").unwrap_or_else(|_| "berth-runtime".into());
        Ok(Engine {
            root: root.to_path_buf(),
            runroot: runroot.to_path_buf(),
            images,
            store,
            volumes,
            monitor,
            dns_server,
            exit_command,
            default_runtime,
        })
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.runroot.join("containers").join(id)
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.container_dir(id).join(format!("{id}-json.log"))
    }

    pub(crate) fn rootfs(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("rootfs")
    }

    pub(crate) fn runtime_root(&self, runtime: &Path) -> PathBuf {
        let name = runtime
            .file_name()
            .map_or_else(|| "runtime".into(), |n| n.to_string_lossy().into_owned());
        self.runroot.join("runtimes").join(name)
    }

    /// Docker's lookup of a container by ID, name or unique ID prefix.
    pub fn find(&self, key: &str) -> Result<Container> {
        match self.store.find(key)? {
            Some(Ok(c)) => Ok(c),
            Some(Err(_)) => Err(EngineError::Other(format!(
                "Multiple IDs found with provided prefix: {key}"
            ))),
            None => Err(EngineError::NoSuchContainer(key.to_string())),
        }
    }

    /// `docker create`: checks the options, records the container and makes its
    /// directories. Nothing runs yet; nothing is left behind on error.
    pub fn create(&self, mut opts: CreateOptions, image: &Digest) -> Result<Container> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        opts.run.validate(cpus)?;
        opts.run.check_bind_sources()?;
        self.network_check(&opts.run)?;
        for (requested, what, file) in [
            (&opts.run.cpuset_cpus, "CPUs", "cpus"),
            (&opts.run.cpuset_mems, "memory nodes", "mems"),
        ] {
            if let (Some(requested), Some(available)) = (requested, host_cpuset(file)) {
                crate::flags::check_cpuset_available(requested, &available, what)?;
            }
        }
        if let Some(name) = &opts.name {
            if !names::valid_name(name) {
                return Err(EngineError::InvalidName(name.clone()));
            }
        }
        let runtime = resolve_runtime(opts.runtime.as_deref().unwrap_or(&self.default_runtime))?;
        let config = self.read_image_config(image)?;
        crate::spec::check_create(&config["config"], &opts.run)?;
        // Docker's Config.Labels: the image's, then the user's over them.
        if let Some(labels) = config["config"]["Labels"].as_object() {
            for (k, v) in labels {
                if let Some(v) = v.as_str() {
                    opts.run
                        .labels
                        .entry(k.clone())
                        .or_insert_with(|| v.to_string());
                }
            }
        }
        let id = names::new_id();
        let dir = self.container_dir(&id);
        for sub in ["upper", "work", "rootfs"] {
            if let Err(e) = fs::create_dir_all(dir.join(sub)) {
                let _ = fs::remove_dir_all(&dir);
                return Err(io("creating", &dir)(e));
            }
        }
        let mut c = Container::new(id, String::new(), image.to_string(), opts, runtime);
        let inserted = match c.options.name.clone() {
            Some(name) => {
                c.name = name.trim_start_matches('/').to_string();
                self.store.insert(&c)
            }
            None => (0..10)
                .find_map(|retry| {
                    c.name = names::random_name(retry);
                    match self.store.insert(&c) {
                        Ok(false) => None,
                        other => Some(other),
                    }
                })
                .unwrap_or(Ok(false)),
        };
        match inserted {
            Ok(true) => {
                let wants = volumes::wanted(&c.options.run, &self.image_volumes(image));
                if let Err(e) = self.network_join(&c) {
                    let _ = self.store.delete(&c.id);
                    let _ = fs::remove_dir_all(&dir);
                    return Err(e);
                }
                match self.volumes.attach(&c.id, &wants) {
                    Ok(_) => Ok(c),
                    Err(e) => {
                        self.network_leave(&c);
                        let _ = self.store.delete(&c.id);
                        let _ = fs::remove_dir_all(&dir);
                        Err(e.into())
                    }
                }
            }
            Ok(false) => {
                let _ = fs::remove_dir_all(&dir);
                let holder = self.store.find(&c.name).ok().flatten().and_then(|r| r.ok());
                Err(EngineError::NameInUse {
                    name: c.name,
                    id: holder.map(|h| h.id).unwrap_or_default(),
                })
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                Err(e.into())
            }
        }
    }

    /// Starts a created or exited container under a new monitor. With `attach`, the
    /// monitor waits for a client on its attach socket before the process starts (the
    /// caller connects, then calls [`Starting::wait`]).
    pub fn start(&self, c: &Container, attach: bool) -> Result<Starting<'_>> {
        let from = [State::Created, State::Exited, State::Restarting];
        // A start by the user forgets an earlier `stop`: the restart policy applies again.
        if !self.store.begin_start(&c.id, &from)? {
            let now = self.find(&c.id)?;
            return Err(EngineError::Busy {
                id: c.id.clone(),
                state: now.state.docker_status(),
                action: "start",
            });
        }
        let back = if c.state == State::Created {
            State::Created
        } else {
            State::Exited
        };
        self.begin(c, attach, back)
    }

    /// The start of a container already recorded as `starting`; `back` is the state a
    /// failure returns it to.
    fn begin(&self, c: &Container, attach: bool, back: State) -> Result<Starting<'_>> {
        match self.spawn(c, attach) {
            Ok(sync) => Ok(Starting {
                engine: self,
                container: c.clone(),
                sync: Some(sync),
                back,
            }),
            Err(e) => {
                self.undo_start(c, back, &e);
                Err(e)
            }
        }
    }

    /// Mount, files, spec, monitor. Returns the read end of the monitor's sync pipe.
    fn spawn(&self, c: &Container, attach: bool) -> Result<fs::File> {
        let dir = self.container_dir(&c.id);
        let rootfs = self.rootfs(&c.id);
        let image: Digest = c
            .image
            .parse()
            .map_err(|e| EngineError::Other(format!("container {}: image id: {e}", c.id)))?;
        let lowers = self.images.rootfs_layers(&image)?;
        // Not while `cp`/`export`/`diff`/`commit` have the stopped container's overlay
        // (two overlays must never share an upper directory).
        let _lock = self.lock(&c.id)?;
        // A crash may have left the previous mount behind; it would be stacked on.
        let _ = image::snapshot::unmount(&rootfs);
        let upper = dir.join("upper");
        let work = dir.join("work");
        // A --rm container's writes go with it: no need to sync them at unmount.
        if c.options.auto_remove {
            image::snapshot::mount_overlay_volatile(&lowers, (&upper, &work), &rootfs)
        } else {
            image::snapshot::mount_overlay(&lowers, Some((&upper, &work)), &rootfs)
        }
        .map_err(image::images::ImageError::from)?;

        let config = self.read_image_config(&image)?;
        // Torn down on any error below; kept once the monitor runs.
        let shared = self.shared_network(c)?;
        let net = self.network_attach(c, &config["config"])?;
        let mut addresses: Vec<std::net::Ipv4Addr> = net.iter().map(|n| n.address).collect();
        if net.is_some() {
            addresses.extend(self.network_join_connected(c)?.iter().map(|j| j.address));
        }
        // On a user network the container asks the network's DNS server, on its gateway.
        let dns = net
            .as_ref()
            .filter(|_| crate::net::user_network(&c.options.run).is_some())
            .map(|n| n.gateway);
        // `--network container:NAME`: the other's files (and below its host name).
        let etc_files = match &shared {
            Some(s) => s.etc.clone(),
            None => etc::write(&dir, c, &addresses, dns)?,
        };
        let users = RootfsUsers::open(&rootfs).map_err(crate::spec::SpecError::from)?;
        let wants = volumes::wanted(&c.options.run, &volumes::image_volumes(&config));
        let (volumes, anonymous) = self.volumes.prepare(&c.id, &wants, &rootfs)?;
        make_bind_sources(&c.options.run)?;
        let ctx = SpecContext {
            rootfs: rootfs.clone(),
            id: c.id.clone(),
            etc: etc_files,
            volumes,
            anonymous_volumes: anonymous,
            cgroups_path: cgroups_path(&c.id),
            users: &users,
            cgroup_namespace: cgroups::Layout::detect()
                .map(|l| l.is_v2())
                .unwrap_or(false),
            network_namespace: net
                .as_ref()
                .map(|n| n.netns.clone())
                .or_else(|| shared.as_ref().map(|s| s.netns.clone())),
            init_binary: beside_self("berth-init"),
        };
        let mut spec = build_spec(&config["config"], &c.options.run, &ctx)?;
        if let Some(s) = &shared {
            crate::spec::set_hostname(&mut spec, &s.hostname);
        }
        let spec_path = dir.join("config.json");
        let json = serde_json::to_vec_pretty(&spec)
            .map_err(|e| EngineError::Other(format!("writing config.json: {e}")))?;
        write_atomic(&spec_path, &json)?;
        // A new run's health starts over; the last run's state was kept for inspect.
        let _ = fs::remove_file(dir.join(health::STATE_FILE));
        let health_args = match health::effective(c.options.health.as_ref(), &config["config"]) {
            Some(h) => {
                let argv = health::argv(&h, &config["config"]);
                let file = dir.join(health::PROCESS_FILE);
                let process = serde_json::to_value(&spec)
                    .and_then(|spec| serde_json::to_vec(&health::process(&spec, argv)))
                    .map_err(|e| EngineError::Other(format!("health check process: {e}")))?;
                write_atomic(&file, &process)?;
                health::monitor_args(&h, &file)
            }
            None => vec![],
        };

        let state = self.state_dir(&c.id);
        let _ = fs::remove_dir_all(&state);
        fs::create_dir_all(&state).map_err(io("creating", &state))?;
        let runtime_root = self.runtime_root(&c.runtime);
        fs::create_dir_all(&runtime_root).map_err(io("creating", &runtime_root))?;

        let mut cmd = Command::new(&self.monitor);
        cmd.arg("--id")
            .arg(&c.id)
            .arg("--bundle")
            .arg(&dir)
            .arg("--runtime")
            .arg(&c.runtime)
            .arg("--runtime-root")
            .arg(&runtime_root)
            .arg("--state-dir")
            .arg(&state)
            .arg("--sync-fd")
            .arg("3");
        if c.options.log_driver == LogDriver::JsonFile {
            cmd.arg("--log-path").arg(self.log_path(&c.id));
            if c.options.log_max_size > 0 {
                cmd.arg("--log-max-size")
                    .arg(c.options.log_max_size.to_string())
                    .arg("--log-max-files")
                    .arg(c.options.log_max_files.max(1).to_string());
            }
        }
        let run = &c.options.run;
        if run.tty {
            cmd.arg("--tty");
        }
        if run.interactive {
            cmd.arg("--stdin");
            if attach {
                cmd.arg("--stdin-once");
            }
        }
        if attach {
            cmd.arg("--start-on-attach");
        }
        cmd.args(health_args);
        if let Some((program, args)) = self.exit_command.split_first() {
            cmd.arg("--exit-command").arg(program);
            for a in args {
                cmd.arg("--exit-arg").arg(a);
            }
            cmd.arg("--exit-arg").arg(&c.id);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir("/");

        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| EngineError::Other(format!("pipe: {e}")))?;
        let write_raw = write.as_raw_fd();
        // SAFETY: between fork and exec only dup2/fcntl run, which are async-signal-safe; they
        // puts the sync pipe at fd 3 without CLOEXEC, where --sync-fd says it is.
        unsafe {
            cmd.pre_exec(move || {
                // dup2 onto itself keeps CLOEXEC: then clear the flag instead.
                let r = if write_raw == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0)
                } else {
                    libc::dup2(write_raw, 3)
                };
                if r < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| EngineError::Io {
            what: "running",
            path: self.monitor.clone(),
            source: e,
        })?;
        drop(write);
        // The monitor forks and its first process exits at once; reap it.
        let _ = child.wait();
        // From here a failed start is undone by `undo_start`, an exit by `finish`.
        if let Some(n) = net {
            n.keep();
        }
        Ok(fs::File::from(read))
    }

    /// The image's VOLUMEs (empty if its config cannot be read: the start reports that).
    fn image_volumes(&self, image: &Digest) -> Vec<String> {
        self.images
            .blobs
            .read(image)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .map(|v| volumes::image_volumes(&v))
            .unwrap_or_default()
    }

    /// A start that failed before the monitor took over: unmount and record the error.
    fn undo_start(&self, c: &Container, back: State, e: &EngineError) {
        let lock = self.lock(&c.id);
        let _ = image::snapshot::unmount(&self.rootfs(&c.id));
        drop(lock);
        let _ = self.volumes.release(&c.id);
        self.network_detach(c);
        let _ = fs::remove_dir_all(self.state_dir(&c.id));
        let code = match e {
            EngineError::Start { exit_code, .. } => *exit_code,
            _ => 125,
        };
        let _ = self
            .store
            .set_start_failed(&c.id, back, &e.to_string(), code);
    }

    /// Runs the OCI runtime for container `c`: `RUNTIME --root R ARGS… ID`.
    fn runtime(&self, c: &Container, args: &[&str]) -> Result<()> {
        self.runtime_with(c, args, &[])
    }

    /// `RUNTIME --root R delete --force ID`, skipped when the runtime keeps no state for
    /// the container: runc, crun, youki and berth-runtime all keep it in `ROOT/ID/`. A
    /// `--rm` container reaches here twice (finish, then remove), and a runtime run costs
    /// about as much as the rest of the removal.
    ///
    /// Left running while the caller removes the rest (mount, network, directories): the
    /// runtime's part (cgroup directories in every v1
    /// hierarchy, its state, a new process) is the slowest piece of a removal, and it
    /// depends on none of the others. The returned guard waits for it.
    fn runtime_delete_started(&self, c: &Container) -> RuntimeDelete {
        if !self.runtime_root(&c.runtime).join(&c.id).exists() {
            return RuntimeDelete(None);
        }
        let child = Command::new(&c.runtime)
            .arg("--root")
            .arg(self.runtime_root(&c.runtime))
            .args(["delete", "--force"])
            .arg(&c.id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        RuntimeDelete(child.ok())
    }

    /// `RUNTIME --root R kill [--all] ID SIGNAL`.
    fn runtime_kill(&self, c: &Container, all: bool, signal: i32) -> Result<()> {
        let args: &[&str] = if all { &["kill", "--all"] } else { &["kill"] };
        self.runtime_with(c, args, &[&signal.to_string()])
    }

    /// `RUNTIME --root R ARGS… ID AFTER…`; the error is the runtime's last line.
    fn runtime_with(&self, c: &Container, args: &[&str], after: &[&str]) -> Result<()> {
        let out = Command::new(&c.runtime)
            .arg("--root")
            .arg(self.runtime_root(&c.runtime))
            .args(args)
            .arg(&c.id)
            .args(after)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(io("running", &c.runtime))?;
        if out.status.success() {
            return Ok(());
        }
        let err = String::from_utf8_lossy(&out.stderr);
        Err(EngineError::Other(
            err.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("the runtime failed")
                .to_string(),
        ))
    }

    /// A `runtime kill` of this container by signal number, for a thread that outlives
    /// borrows of the engine (a foreground run's signal proxy).
    pub fn kill_command(&self, c: &Container) -> impl Fn(i32) -> Command + Send + 'static {
        let runtime = c.runtime.clone();
        let root = self.runtime_root(&c.runtime);
        let id = c.id.clone();
        move |signal| {
            let mut cmd = Command::new(&runtime);
            cmd.arg("--root")
                .arg(&root)
                .arg("kill")
                .arg(&id)
                .arg(signal.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            cmd
        }
    }

    /// Sends `signal` to the container's process (`docker kill`).
    pub fn kill(&self, c: &Container, signal: i32) -> Result<()> {
        let c = self.reconcile(c.clone())?;
        if !matches!(c.state, State::Running | State::Paused) {
            return Err(EngineError::NotRunning {
                action: "kill",
                id: c.id,
            });
        }
        self.store.set_stopped(&c.id, true)?;
        self.runtime_kill(&c, false, signal)
            .map_err(|e| match self.find(&c.id) {
                Ok(now) if !now.state.is_live() => EngineError::NotRunning {
                    action: "kill",
                    id: c.id.clone(),
                },
                _ => e,
            })
    }

    /// `docker stop`: the stop signal, then SIGKILL after `timeout` seconds (-1: wait
    /// forever). Stopping a stopped container is not an error.
    pub fn stop(&self, c: &Container, timeout: Option<i64>) -> Result<()> {
        // Recorded before the state is read. A restart the policy has not begun yet sees
        // it and gives up (`cleanup`: exited, restarting); one it has begun is found
        // starting or running here, and stopped.
        self.store.set_stopped(&c.id, true)?;
        let now = self.settled(&c.id)?;
        if now.state == State::Restarting {
            // Between two runs: exited at once, not when the back-off ends.
            self.store
                .transition(&now.id, &[State::Restarting], State::Exited)?;
            return Ok(());
        }
        if !now.state.is_live() {
            return Ok(());
        }
        // The caller's options: `stop --signal` replaces the stop signal.
        let c = Container {
            options: c.options.clone(),
            ..now
        };
        if c.state == State::Paused {
            let _ = self.runtime(&c, &["resume"]);
        }
        let signal = c
            .options
            .run
            .stop_signal
            .as_deref()
            .map(crate::flags::parse_signal)
            .transpose()?
            .unwrap_or(libc::SIGTERM);
        let timeout = timeout.or(c.options.stop_timeout).unwrap_or(10);
        if self.runtime_kill(&c, false, signal).is_ok() {
            let limit = (timeout >= 0).then(|| Duration::from_secs(timeout as u64));
            if self.wait_monitor(&c, limit) {
                return Ok(());
            }
        }
        let _ = self.runtime_kill(&c, true, libc::SIGKILL);
        let _ = self.runtime_kill(&c, false, libc::SIGKILL);
        if !self.wait_monitor(&c, Some(Duration::from_secs(30))) {
            return Err(EngineError::Other(format!(
                "container {} did not stop after SIGKILL",
                c.id
            )));
        }
        Ok(())
    }

    /// The container as recorded once a start in progress is over (running, or failed);
    /// after 30 s, as it is.
    fn settled(&self, id: &str) -> Result<Container> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let c = self.reconcile(self.find(id)?)?;
            if c.state != State::Starting || Instant::now() >= deadline {
                return Ok(c);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the container's monitor is gone (its exit recorded and cleaned up).
    /// False on timeout.
    pub fn wait_monitor(&self, c: &Container, limit: Option<Duration>) -> bool {
        let deadline = limit.map(|l| Instant::now() + l);
        let mut pid = c.monitor_pid;
        let mut start = c.monitor_start;
        loop {
            if pid == 0 {
                // Still starting: the monitor is not recorded yet.
                match self.store.get(&c.id) {
                    Ok(Some(now)) if now.state == State::Starting => {
                        pid = now.monitor_pid;
                        start = now.monitor_start;
                    }
                    Ok(Some(now)) if now.state.is_live() => {
                        pid = now.monitor_pid;
                        start = now.monitor_start;
                        if pid == 0 {
                            return true;
                        }
                    }
                    _ => return true,
                }
                if pid == 0 {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return false;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
            }
            return match Pidfd::open(pid, start) {
                None => true,
                Some(fd) => {
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    fd.wait(left)
                }
            };
        }
    }

    /// A container recorded as live whose monitor is gone (killed, or the machine
    /// rebooted) is stopped for real and recorded as exited; anything else is returned
    /// as it is.
    pub fn reconcile(&self, c: Container) -> Result<Container> {
        let c = self.reconcile_start(c)?;
        if !matches!(c.state, State::Running | State::Paused) || c.monitor_pid == 0 {
            return Ok(c);
        }
        if Pidfd::open(c.monitor_pid, c.monitor_start).is_some() {
            return Ok(c);
        }
        let _lock = self.lock(&c.id)?;
        let Some(now) = self.store.get(&c.id)? else {
            return Ok(c);
        };
        if !matches!(now.state, State::Running | State::Paused) || now.monitor_pid != c.monitor_pid
        {
            return Ok(now);
        }
        // Without its monitor nobody collects the container's status or output: stop it.
        let _ = self.runtime_kill(&now, true, libc::SIGKILL);
        let _ = self.runtime_kill(&now, false, libc::SIGKILL);
        let mut exit = read_exit(&self.state_dir(&now.id)).unwrap_or(Exit {
            exit_code: 137,
            finished_at: now_nanos(),
            ..Exit::default()
        });
        exit.error = "the container's monitor exited unexpectedly".into();
        self.finish(&now, exit)?;
        Ok(self.store.get(&c.id)?.unwrap_or(now))
    }

    /// A start whose CLI died before recording it (killed between the monitor's start and
    /// its report): once the monitor and the container's process both exist, the
    /// container runs, whoever records it.
    fn reconcile_start(&self, c: Container) -> Result<Container> {
        if c.state != State::Starting {
            return Ok(c);
        }
        let state = self.state_dir(&c.id);
        let Some(monitor) = read_monitor_pid(&state) else {
            return Ok(c);
        };
        let pid = fs::read_to_string(state.join("pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok());
        if let Some(pid) = pid.filter(|p| start_time(*p).is_some()) {
            self.store.set_running(&c.id, pid, monitor, now_nanos())?;
            return Ok(self.store.get(&c.id)?.unwrap_or(c));
        }
        Ok(c)
    }

    /// The monitor's exit command: records how the container ended, releases what it
    /// held, and applies `--rm` or the restart policy.
    pub fn cleanup(&self, id: &str) -> Result<()> {
        // The monitor runs us from its state directory, which `finish` removes; a restart
        // must not inherit a deleted working directory.
        let _ = std::env::set_current_dir("/");
        let lock = self.lock(id)?;
        let Some(c) = self.store.get(id)? else {
            return Ok(());
        };
        // The attached CLI and the monitor's exit command may both come here (the CLI
        // first; the exit command only if the CLI went away before it said it was done):
        // what is recorded as ended was finished already.
        let finished = matches!(c.state, State::Exited | State::Created | State::Removing);
        let exit = if finished {
            None
        } else {
            let exit = read_exit(&self.state_dir(id)).unwrap_or(Exit {
                exit_code: 255,
                finished_at: now_nanos(),
                error: "the monitor recorded no exit status".into(),
                ..Exit::default()
            });
            self.finish(&c, exit.clone())?;
            Some(exit)
        };
        drop(lock);
        let c = self.store.get(id)?.unwrap_or(c);
        if c.options.auto_remove {
            return self.remove(&c, true, true);
        }
        let Some(exit) = exit else {
            return Ok(());
        };
        if let Some(delay) = restart_delay(&c, &exit) {
            // A stop recorded since `c` was read wins here; one recorded after this update
            // finds the container restarting.
            if !self.store.begin_backoff(id)? {
                return Ok(());
            }
            std::thread::sleep(delay);
            // A stop recorded by now cancels the restart; one recorded after this update
            // finds the container starting, and stops it (`stop`).
            if !self.store.begin_restart(id)? {
                self.store
                    .transition(id, &[State::Restarting], State::Exited)?;
                return Ok(());
            }
            self.store.bump_restart_count(id)?;
            let now = self.find(id)?;
            self.begin(&now, false, State::Exited)?.wait()?;
        }
        Ok(())
    }

    /// Everything after the process is gone: OOM check, runtime state, mount, record.
    fn finish(&self, c: &Container, mut exit: Exit) -> Result<()> {
        if let Ok(cg) = cgroups::Cgroup::open(&cgroups_path(&c.id)) {
            exit.oom_killed = cg.oom_kills().unwrap_or(0) > 0;
        }
        let deleting = self.runtime_delete_started(c);
        self.network_detach(c);
        let _ = image::snapshot::unmount(&self.rootfs(&c.id));
        // Renamed away first: the old monitor may still unlink its sockets by relative
        // name, and a restart is about to make a new directory at this path.
        let state = self.state_dir(&c.id);
        // The last health state stays for inspect, as Docker's does.
        let _ = fs::rename(
            state.join(health::STATE_FILE),
            self.container_dir(&c.id).join(health::STATE_FILE),
        );
        let gone = state.with_extension(format!("old-{}", names::new_id()));
        if fs::rename(&state, &gone).is_ok() {
            let _ = fs::remove_dir_all(&gone);
        }
        // Recorded as exited only once the runtime has let go of it (a start may follow).
        drop(deleting);
        self.store.set_exited(&c.id, &exit)?;
        // Volumes with options (a tmpfs) are unmounted once no running container uses them.
        let _ = self.volumes.release(&c.id);
        Ok(())
    }

    /// `docker rm`: `force` kills a live container first; `volumes` also removes its
    /// anonymous volumes.
    pub fn remove(&self, c: &Container, force: bool, volumes: bool) -> Result<()> {
        let mut c = self.reconcile(c.clone())?;
        if c.state.is_live() || c.state == State::Restarting {
            if !force {
                return Err(EngineError::Running {
                    state: if c.state == State::Paused {
                        "paused"
                    } else {
                        "running"
                    },
                    id: c.id.clone(),
                });
            }
            self.store.set_stopped(&c.id, true)?;
            if c.state.is_live() {
                let _ = self.runtime_kill(&c, true, libc::SIGKILL);
                let _ = self.runtime_kill(&c, false, libc::SIGKILL);
                self.wait_monitor(&c, Some(Duration::from_secs(30)));
            }
            c = match self.store.get(&c.id)? {
                Some(now) => self.reconcile(now)?,
                None => return Ok(()),
            };
        }
        let from = [State::Created, State::Exited, State::Restarting];
        if !self.store.transition(&c.id, &from, State::Removing)? {
            return match self.store.get(&c.id)? {
                None => Ok(()),
                Some(now) if now.state == State::Removing => Ok(()),
                Some(now) => Err(EngineError::Busy {
                    id: c.id.clone(),
                    state: now.state.docker_status(),
                    action: "remove",
                }),
            };
        }
        let anonymous = if volumes {
            match self.volumes.anonymous_of(&c.id) {
                Ok(names) => names,
                Err(e) => {
                    let _ = self
                        .store
                        .transition(&c.id, &[State::Removing], State::Exited);
                    return Err(e.into());
                }
            }
        } else {
            Vec::new()
        };
        let deleting = self.runtime_delete_started(&c);
        self.network_detach(&c);
        self.network_leave(&c);
        // Waits for a `cp`/`export`/`diff`/`commit` that is reading the container.
        let _lock = self.lock(&c.id).ok();
        let rootfs = self.rootfs(&c.id);
        let _ = image::snapshot::unmount(&rootfs);
        let _ = fs::remove_dir_all(self.state_dir(&c.id));
        let dir = self.container_dir(&c.id);
        if let Err(e) = fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                let _ = self
                    .store
                    .transition(&c.id, &[State::Removing], State::Exited);
                return Err(io("removing", &dir)(e));
            }
        }
        drop(deleting);
        self.store.delete(&c.id)?;
        // As Docker: an anonymous volume another container also mounts stays.
        for name in anonymous {
            match self.volumes.remove(&name, true) {
                Ok(()) | Err(volumes::VolumeError::InUse { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// `docker pause` / `unpause`.
    pub fn pause(&self, c: &Container, pause: bool) -> Result<()> {
        let c = self.reconcile(c.clone())?;
        let (want, to, action, verb) = if pause {
            (State::Running, State::Paused, "pause", "pause")
        } else {
            (State::Paused, State::Running, "unpause", "resume")
        };
        if c.state != want {
            return Err(EngineError::Other(format!(
                "Container {} is not {}",
                c.id,
                if pause { "running" } else { "paused" }
            )));
        }
        self.runtime(&c, &[verb])
            .map_err(|e| EngineError::Other(format!("cannot {action} container {}: {e}", c.id)))?;
        self.store.transition(&c.id, &[want], to)?;
        Ok(())
    }

    /// The image's config blob as JSON.
    fn read_image_config(&self, image: &Digest) -> Result<serde_json::Value> {
        let config = self
            .images
            .blobs
            .read(image)
            .map_err(image::images::ImageError::from)?;
        serde_json::from_slice(&config)
            .map_err(|e| EngineError::Other(format!("image {image}: config is not JSON: {e}")))
    }

    /// The container's image config blob, or `null` when it cannot be read (the image
    /// was removed with `rmi -f`): what is shown about a container must not fail on it.
    fn container_image_config(&self, c: &Container) -> serde_json::Value {
        c.image
            .parse::<Digest>()
            .ok()
            .and_then(|d| self.read_image_config(&d).ok())
            .unwrap_or_default()
    }

    fn image_config(&self, c: &Container) -> crate::spec::ImageConfig {
        crate::spec::ImageConfig::from_value(&self.container_image_config(c)).unwrap_or_default()
    }

    /// The health check in force (the user's over the image's), if any.
    pub fn health_check(&self, c: &Container) -> Option<crate::options::HealthCheck> {
        let config = self.container_image_config(c);
        health::effective(c.options.health.as_ref(), &config["config"])
    }

    /// Docker's `State.Health` for a container that has a check: the monitor's live
    /// state while it runs, the last one after.
    pub fn health(&self, c: &Container) -> Option<serde_json::Value> {
        self.health_check(c)?;
        let path = if c.state.is_live() {
            self.state_dir(&c.id).join(health::STATE_FILE)
        } else {
            self.container_dir(&c.id).join(health::STATE_FILE)
        };
        Some(health::read(&path))
    }

    /// `Config.Entrypoint` as Docker shows it.
    pub fn entrypoint(&self, c: &Container) -> Vec<String> {
        crate::spec::entrypoint_and_cmd(&self.image_config(c), &c.options.run).0
    }

    /// `Config.Cmd` as Docker shows it.
    pub fn cmd(&self, c: &Container) -> Vec<String> {
        crate::spec::entrypoint_and_cmd(&self.image_config(c), &c.options.run).1
    }

    /// What runs: entrypoint then cmd (`docker ps`'s COMMAND, inspect's Path and Args).
    pub fn command_line(&self, c: &Container) -> Vec<String> {
        let (mut e, cmd) = crate::spec::entrypoint_and_cmd(&self.image_config(c), &c.options.run);
        e.extend(cmd);
        e
    }

    /// `Config.Env`.
    pub fn env(&self, c: &Container) -> Vec<String> {
        crate::spec::config_env(&self.image_config(c), &c.options.run)
    }

    /// Serialises cleanups of one container (the monitor's exit command, a `ps` that
    /// found the monitor dead, `rm -f`), its mount and unmount, and `fs`'s work on its
    /// files (which mounts a stopped container's overlay itself).
    pub(crate) fn lock(&self, id: &str) -> Result<nix::fcntl::Flock<fs::File>> {
        let path = self.container_dir(id).join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("opening", &path))?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| EngineError::Other(format!("lock {}: {e}", path.display())))
    }
}

/// A start in progress: the monitor runs; [`Starting::wait`] gives its answer.
pub struct Starting<'a> {
    engine: &'a Engine,
    pub container: Container,
    sync: Option<fs::File>,
    back: State,
}

impl Starting<'_> {
    pub fn attach_socket(&self) -> PathBuf {
        self.engine
            .state_dir(&self.container.id)
            .join("attach.sock")
    }

    /// The sync pipe, to poll while connecting to the attach socket: readable means the
    /// monitor has answered (an error, since with attach it starts only after a client).
    pub fn sync_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.sync.as_ref().map(|f| f.as_fd())
    }

    /// Reads the monitor's report and records the container as running.
    pub fn wait(mut self) -> Result<Container> {
        let e = self.engine;
        let c = self.container.clone();
        let mut line = String::new();
        if let Some(sync) = self.sync.take() {
            let _ = BufReader::new(sync).read_line(&mut line);
        }
        let monitor = read_monitor_pid(&e.state_dir(&c.id));
        if let Some(m) = monitor {
            let _ = e.store.set_monitor(&c.id, m);
        }
        if let Some(pid) = json_field(&line, "pid").and_then(|p| p.parse::<i32>().ok()) {
            let (mpid, mstart) = monitor.unwrap_or((0, 0));
            e.store
                .set_running(&c.id, pid, (mpid, mstart), now_nanos())?;
            return Ok(e.store.get(&c.id)?.unwrap_or(c));
        }
        let message = json_field(&line, "error")
            .unwrap_or_else(|| "the monitor exited before reporting".into());
        let err = EngineError::Start {
            id: c.id.clone(),
            exit_code: start_exit_code(&message),
            message,
        };
        e.undo_start(&c, self.back, &err);
        Err(err)
    }
}

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        // Dropped without `wait` (the caller failed to attach): the start still gets
        // recorded or undone.
        if self.sync.is_some() {
            let s = Starting {
                engine: self.engine,
                container: self.container.clone(),
                sync: self.sync.take(),
                back: self.back,
            };
            let _ = s.wait();
        }
    }
}

/// Docker's exit status for a process that could not be started.
fn start_exit_code(message: &str) -> i32 {
    let m = message.to_lowercase();
    if m.contains("executable file not found") || m.contains("no such file or directory") {
        127
    } else if m.contains("permission denied")
        || m.contains("is a directory")
        || m.contains("exec format error")
    {
        126
    } else {
        125
    }
}

/// When the restart policy restarts this exit, after how long (Docker's back-off:
/// 100 ms doubling per restart, reset after a run of 10 s or more).
fn restart_delay(c: &Container, exit: &Exit) -> Option<Duration> {
    let restart = match c.options.restart {
        RestartPolicy::No => false,
        RestartPolicy::Always => !c.stopped,
        RestartPolicy::UnlessStopped => !c.stopped,
        RestartPolicy::OnFailure { max } => {
            !c.stopped && exit.exit_code != 0 && (max == 0 || c.restart_count < max)
        }
    };
    if !restart {
        return None;
    }
    let ran = Duration::from_nanos((exit.finished_at - c.started_at).max(0) as u64);
    let step = if ran >= Duration::from_secs(10) {
        0
    } else {
        c.restart_count.min(7)
    };
    Some(Duration::from_millis(100 << step))
}

/// `<runroot>/containers/ID/exit`, as the monitor writes it.
fn read_exit(state: &Path) -> Option<Exit> {
    let text = fs::read_to_string(state.join("exit")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let exit_code = i32::try_from(v["exit_code"].as_i64()?).ok()?;
    let finished_at = v["finished_at"]
        .as_str()
        .and_then(parse_time)
        .unwrap_or_else(now_nanos);
    Some(Exit {
        exit_code,
        oom_killed: false,
        finished_at,
        error: String::new(),
    })
}

/// RFC 3339 with optional fraction → Unix nanoseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    let secs = image::time::parse_rfc3339(s)?;
    let frac = s
        .split_once('.')
        .map(|(_, f)| f.trim_end_matches(|c: char| !c.is_ascii_digit()))
        .unwrap_or("");
    let digits: String = frac
        .chars()
        .take_while(char::is_ascii_digit)
        .take(9)
        .collect();
    let nanos = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse::<i64>().ok()?
    };
    Some(secs * 1_000_000_000 + nanos)
}

fn read_monitor_pid(state: &Path) -> Option<(i32, u64)> {
    let pid: i32 = fs::read_to_string(state.join("monitor.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some((pid, start_time(pid)?))
}

/// A live process's start time in clock ticks since boot (/proc/PID/stat field 22);
/// `None` for a zombie, which has exited but waits for its parent (or an init that is
/// slow to reap) and must count as gone.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    if matches!(fields.next(), Some("Z" | "X")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// The value of `"name":…` in a one-line JSON object, as a string.
fn json_field(line: &str, name: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    match &v[name] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A process to wait for, opened only if it is still the one that started at `start`.
struct Pidfd(OwnedFd);

impl Pidfd {
    fn open(pid: i32, start: u64) -> Option<Pidfd> {
        if pid <= 0 {
            return None;
        }
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if ret < 0 {
            return None;
        }
        // SAFETY: the syscall just returned this fd; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(ret as i32) };
        // Checked after opening: if the start time matches now, the fd is that process.
        (start_time(pid) == Some(start)).then_some(Pidfd(fd))
    }

    /// Until the process exits (true) or `limit` passes (false).
    fn wait(&self, limit: Option<Duration>) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let deadline = limit.map(|l| Instant::now() + l);
        loop {
            let timeout = match deadline {
                None => PollTimeout::NONE,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    PollTimeout::try_from(left.as_millis().min(60_000) as i32 + 1)
                        .unwrap_or(PollTimeout::MAX)
                }
            };
            let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, timeout) {
                Ok(n) if n > 0 => return true,
                Ok(_) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return false;
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return true,
            }
        }
    }
}

/// `-v /host:/ctr` makes a missing host directory (root's, 0755), as Docker does at each
/// start; `--mount type=bind` refuses a missing source at create instead.
fn make_bind_sources(run: &crate::flags::RunOptions) -> Result<()> {
    for m in &run.mounts {
        if let crate::flags::MountSpec::Bind {
            source,
            must_exist: false,
            ..
        } = m
        {
            if fs::symlink_metadata(source).is_err() {
                fs::create_dir_all(source).map_err(io("creating the bind source", source))?;
            }
        }
    }
    Ok(())
}

/// What containers may be given of `cpus` or `mems`: the cpuset hierarchy's root (v1),
/// or cgroup2's effective set, as the daemon reads it. `None` without a cpuset.
fn host_cpuset(file: &str) -> Option<String> {
    let layout = cgroups::Layout::detect().ok()?;
    let path = match layout
        .v1
        .iter()
        .find(|h| h.controllers.iter().any(|c| c == "cpuset"))
    {
        Some(h) => h.mountpoint.join(format!("cpuset.{file}")),
        None => layout
            .unified?
            .mountpoint
            .join(format!("cpuset.{file}.effective")),
    };
    fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Docker's cgroup parent is `/docker`; ours is `/berth`.
pub fn cgroups_path(id: &str) -> String {
    format!("/berth/{id}")
}

/// A runtime by name (looked up beside this binary, then in PATH) or by path.
pub fn resolve_runtime(name: &str) -> Result<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return if is_executable(&p) {
            Ok(p)
        } else {
            Err(EngineError::UnknownRuntime(name.to_string()))
        };
    }
    if let Some(p) = beside_self(name) {
        return Ok(p);
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(name))
                .find(|p| is_executable(p))
        })
        .ok_or_else(|| EngineError::UnknownRuntime(name.to_string()))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A binary installed next to the running one (`target/debug/berth-monitor` beside
/// `target/debug/berth`).
fn beside_self(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.join(name);
    is_executable(&p).then_some(p)
}

pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, data).map_err(io("writing", &tmp))?;
    fs::rename(&tmp, path).map_err(io("writing", path))
}

/// A `RUNTIME delete` in progress; waited for (and reaped) when dropped, on every path.
struct RuntimeDelete(Option<std::process::Child>);

impl Drop for RuntimeDelete {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_failures_map_to_docker_codes() {
        assert_eq!(
            start_exit_code("exec: \"nope\": executable file not found in $PATH"),
            127
        );
        assert_eq!(start_exit_code("exec /etc: Permission denied"), 126);
        assert_eq!(start_exit_code("cgroup: invalid"), 125);
    }

    #[test]
    fn times_with_fractions() {
        assert_eq!(
            parse_time("2023-11-14T22:13:20.5Z"),
            Some(1_700_000_000_500_000_000)
        );
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000_000_000)
        );
    }

    #[test]
    fn own_start_time_is_readable() {
        let me = std::process::id() as i32;
        assert!(start_time(me).is_some());
        assert!(Pidfd::open(me, start_time(me).unwrap()).is_some());
        assert!(
            Pidfd::open(me, 1).is_none(),
            "another start time is another process"
        );
    }
}
