//! The flags of `berth run` and `berth create`, read as the docker CLI reads them, and
//! their conversion into the engine's [`CreateOptions`].
//!
//! clap only splits the command line here: values stay strings and are parsed in
//! [`RunFlags::to_options`] by the engine's parsers, so a bad value fails with Docker's
//! own sentence (`invalid argument "12x" for "-m, --memory" flag: invalid suffix: 'x'`)
//! rather than clap's. Options that take a value take the next word whatever it looks
//! like (`--name -x`), and booleans accept `--rm=false`, as pflag does.
//!
//! The flattening command must `disable_help_flag`, since `-h` is `--hostname`; `--help`
//! is provided here, and so is `args_override_self` (the last `--name` wins, as in
//! pflag). To read `berth run IMAGE --flag` as docker does (everything after the image is
//! the command), the image must be the first value of the trailing var-arg:
//! `#[arg(value_name = "IMAGE [COMMAND] [ARG...]", required = true,
//! trailing_var_arg = true)] args: Vec<String>`; with a separate `image: String`
//! positional, clap still reads our flags right after the image.

use clap::{ArgAction, Args};
use engine::flags::{self, FlagError, MountSpec, NetworkMode, RunOptions, Ulimit};
use engine::options::{parse_duration, CreateOptions, HealthCheck, LogDriver, RestartPolicy};
use std::collections::BTreeMap;
use std::path::PathBuf;

// `docker run`/`docker create` flags. See the module comment for how values are parsed.
#[derive(Args, Debug)]
#[command(args_override_self = true)]
pub struct RunFlags {
    /// Run container in background and print container ID
    #[arg(short, long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", hide_default_value = true,
          value_parser = go_bool, value_name = "BOOL")]
    pub detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short, long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", hide_default_value = true,
          value_parser = go_bool, value_name = "BOOL")]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", hide_default_value = true,
          value_parser = go_bool, value_name = "BOOL")]
    pub tty: bool,
    /// Remove the container and its anonymous volumes when it exits
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", hide_default_value = true,
          value_parser = go_bool, value_name = "BOOL")]
    pub rm: bool,
    /// Assign a name to the container
    #[arg(long, allow_hyphen_values = true)]
    pub name: Option<String>,
    /// Set environment variables
    #[arg(short, long, value_name = "KEY[=VALUE]", allow_hyphen_values = true)]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long, value_name = "FILE", allow_hyphen_values = true)]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container
    #[arg(short, long, allow_hyphen_values = true)]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long, allow_hyphen_values = true)]
    pub user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long, allow_hyphen_values = true)]
    pub entrypoint: Option<String>,
    /// Container host name
    #[arg(short, long, allow_hyphen_values = true)]
    pub hostname: Option<String>,
    /// Set meta data on a container
    #[arg(short, long, value_name = "KEY[=VALUE]", allow_hyphen_values = true)]
    pub label: Vec<String>,
    /// Read in a line delimited file of labels
    #[arg(long, value_name = "FILE", allow_hyphen_values = true)]
    pub label_file: Vec<PathBuf>,
    /// Bind mount a volume
    #[arg(
        short,
        long,
        value_name = "[SRC:]DST[:MODE]",
        allow_hyphen_values = true
    )]
    pub volume: Vec<String>,
    /// Attach a filesystem mount to the container
    #[arg(long, allow_hyphen_values = true)]
    pub mount: Vec<String>,
    /// Mount a tmpfs directory
    #[arg(long, value_name = "DST[:OPTIONS]", allow_hyphen_values = true)]
    pub tmpfs: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", hide_default_value = true,
          value_parser = go_bool, value_name = "BOOL")]
    pub read_only: bool,
    /// Memory limit
    #[arg(short, long, value_name = "BYTES", allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: -1 for unlimited swap
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Memory soft limit
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    pub memory_reservation: Option<String>,
    /// Number of CPUs
    #[arg(long, value_name = "DECIMAL", allow_hyphen_values = true)]
    pub cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long, value_name = "INT", allow_hyphen_values = true)]
    pub cpu_shares: Option<String>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long, allow_hyphen_values = true)]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long, allow_hyphen_values = true)]
    pub cpuset_mems: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long, value_name = "INT", allow_hyphen_values = true)]
    pub pids_limit: Option<String>,
    /// Ulimit options
    #[arg(long, value_name = "NAME=SOFT[:HARD]", allow_hyphen_values = true)]
    pub ulimit: Vec<String>,
    /// Add Linux capabilities
    #[arg(long, value_name = "CAP", allow_hyphen_values = true)]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long, value_name = "CAP", allow_hyphen_values = true)]
    pub cap_drop: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", hide_default_value = true,
          value_parser = go_bool, value_name = "BOOL")]
    pub privileged: bool,
    /// Security Options
    #[arg(long, allow_hyphen_values = true)]
    pub security_opt: Vec<String>,
    /// Add a host device to the container
    #[arg(
        long,
        value_name = "HOST[:CONTAINER][:PERMS]",
        allow_hyphen_values = true
    )]
    pub device: Vec<String>,
    /// Restart policy to apply when a container exits
    #[arg(long, default_value = "no", allow_hyphen_values = true)]
    pub restart: String,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", hide_default_value = true,
          value_parser = go_bool, value_name = "BOOL")]
    pub init: bool,
    /// Signal to stop the container
    #[arg(long, allow_hyphen_values = true)]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long, value_name = "INT", allow_hyphen_values = true)]
    pub stop_timeout: Option<String>,
    /// Command to run to check health
    #[arg(long, value_name = "CMD", allow_hyphen_values = true)]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h)
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h)
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long, value_name = "INT", allow_hyphen_values = true)]
    pub health_retries: Option<String>,
    /// Start period for the container to initialize (ms|s|m|h)
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub health_start_period: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", hide_default_value = true,
          value_parser = go_bool, value_name = "BOOL")]
    pub no_healthcheck: bool,
    /// Connect a container to a network
    #[arg(long, alias = "net", allow_hyphen_values = true)]
    pub network: Vec<String>,
    /// Add network-scoped alias for the container
    #[arg(long, alias = "net-alias", allow_hyphen_values = true)]
    pub network_alias: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long, value_name = "HOST:IP", allow_hyphen_values = true)]
    pub add_host: Vec<String>,
    /// Set custom DNS servers
    #[arg(long, value_name = "IP", allow_hyphen_values = true)]
    pub dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long, value_name = "DOMAIN", allow_hyphen_values = true)]
    pub dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long, value_name = "OPTION", allow_hyphen_values = true)]
    pub dns_option: Vec<String>,
    /// Proxy received signals to the process
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "true", default_missing_value = "true", hide_default_value = true,
          value_parser = go_bool, value_name = "BOOL")]
    pub sig_proxy: bool,
    /// Logging driver for the container (json-file or none)
    #[arg(long, allow_hyphen_values = true)]
    pub log_driver: Option<String>,
    /// Log driver options (max-size, max-file)
    #[arg(long, value_name = "KEY=VALUE", allow_hyphen_values = true)]
    pub log_opt: Vec<String>,
    /// Attach to STDIN, STDOUT or STDERR
    #[arg(short, long, value_name = "STREAM", allow_hyphen_values = true)]
    pub attach: Vec<String>,
    /// Runtime to use for this container
    #[arg(long, allow_hyphen_values = true)]
    pub runtime: Option<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long, allow_hyphen_values = true)]
    pub platform: Option<String>,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long, default_value = "missing", allow_hyphen_values = true)]
    pub pull: String,
    /// Suppress the pull output
    #[arg(short, long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", hide_default_value = true,
          value_parser = go_bool, value_name = "BOOL")]
    pub quiet: bool,
    /// Size of /dev/shm
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    pub shm_size: Option<String>,
    /// Sysctl options
    #[arg(long, value_name = "KEY=VALUE", allow_hyphen_values = true)]
    pub sysctl: Vec<String>,
    /// Add additional groups to join
    #[arg(long, value_name = "GROUP", allow_hyphen_values = true)]
    pub group_add: Vec<String>,
    /// Tune host's OOM preferences (-1000 to 1000)
    #[arg(long, value_name = "INT", allow_hyphen_values = true)]
    pub oom_score_adj: Option<String>,
    /// Disable OOM Killer
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", hide_default_value = true,
          value_parser = go_bool, value_name = "BOOL")]
    pub oom_kill_disable: bool,
    /// IPC mode to use
    #[arg(long, allow_hyphen_values = true)]
    pub ipc: Option<String>,
    /// PID namespace to use
    #[arg(long, allow_hyphen_values = true)]
    pub pid: Option<String>,
    /// UTS namespace to use
    #[arg(long, allow_hyphen_values = true)]
    pub uts: Option<String>,
    /// Write the container ID to the file
    #[arg(long, value_name = "FILE", allow_hyphen_values = true)]
    pub cidfile: Option<PathBuf>,
    /// Publish a container's port(s) to the host
    #[arg(short, long, allow_hyphen_values = true)]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", hide_default_value = true,
          value_parser = go_bool, value_name = "BOOL")]
    pub publish_all: bool,
    /// Expose a port or a range of ports
    #[arg(long, allow_hyphen_values = true)]
    pub expose: Vec<String>,
    /// Print help
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
}

/// `--pull`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    Missing,
    Never,
}

impl RunFlags {
    /// The options the engine creates the container with. `image` and `command` are the
    /// positional arguments after the flags. Checks each value with Docker's parsers and
    /// wording, and the combinations the docker CLI refuses; the daemon's checks on the
    /// result stay with the engine (`RunOptions::validate`, the name, the working dir).
    pub fn to_options(&self, image: &str, command: &[String]) -> Result<CreateOptions, FlagError> {
        let lookup = |key: &str| std::env::var(key).ok();
        self.build(image, command, &lookup)
    }

    /// `--pull`; an empty value is Docker's default, `missing`.
    pub fn pull_policy(&self) -> Result<PullPolicy, FlagError> {
        match self.pull.as_str() {
            "always" => Ok(PullPolicy::Always),
            "missing" | "" => Ok(PullPolicy::Missing),
            "never" => Ok(PullPolicy::Never),
            other => Err(FlagError::Invalid(format!(
                "invalid pull option: '{other}': must be one of \"always\", \"missing\" or \"never\""
            ))),
        }
    }

    fn build(
        &self,
        image: &str,
        command: &[String],
        lookup: flags::EnvLookup,
    ) -> Result<CreateOptions, FlagError> {
        let run = self.run_options(command, lookup)?;
        let restart = RestartPolicy::parse(&self.restart)?;
        let stop_timeout = self
            .stop_timeout
            .as_deref()
            .map(|v| go_int("--stop-timeout", v))
            .transpose()?;
        let health = self.health()?;
        let (log_driver, log_max_size, log_max_files) = self.logging()?;
        let attach = self.attach_streams()?;
        self.pull_policy()?;

        if self.rm && restart != RestartPolicy::No {
            return Err(FlagError::Invalid(
                "Conflicting options: --restart and --rm".into(),
            ));
        }
        if self.detach && !attach.is_empty() {
            return Err(FlagError::Invalid("Conflicting options: -a and -d".into()));
        }
        Ok(CreateOptions {
            name: self.name.clone().filter(|n| !n.is_empty()),
            image: image.to_string(),
            run,
            auto_remove: self.rm,
            restart,
            stop_timeout,
            log_driver,
            log_max_size,
            log_max_files,
            health,
            runtime: self.runtime.clone().filter(|r| !r.is_empty()),
            attach,
            sig_proxy: self.sig_proxy,
        })
    }

    fn run_options(
        &self,
        command: &[String],
        lookup: flags::EnvLookup,
    ) -> Result<RunOptions, FlagError> {
        let mut run = RunOptions {
            command: command.to_vec(),
            workdir: self.workdir.clone().filter(|w| !w.is_empty()),
            user: self.user.clone().filter(|u| !u.is_empty()),
            entrypoint: self.entrypoint.clone(),
            hostname: self.hostname.clone().filter(|h| !h.is_empty()),
            read_only: self.read_only,
            privileged: self.privileged,
            init: self.init,
            oom_kill_disable: self.oom_kill_disable,
            tty: self.tty,
            interactive: self.interactive,
            group_add: self.group_add.clone(),
            dns_options: self.dns_option.clone(),
            ..RunOptions::default()
        };

        // Docker's ReadKVEnvStrings: the files first, then `-e`, so `-e` wins.
        for path in &self.env_file {
            run.env.extend(flags::read_kv_file(path, Some(lookup))?);
        }
        for e in &self.env {
            run.env.extend(flags::parse_env(e, lookup)?);
        }
        let mut label_lines = vec![];
        for path in &self.label_file {
            label_lines.extend(flags::read_kv_file(path, None)?);
        }
        for line in label_lines.iter().chain(&self.label) {
            let (k, v) = flags::parse_label(line)?;
            run.labels.insert(k, v);
        }

        for v in &self.volume {
            run.mounts.push(flags::parse_volume(v)?);
        }
        for m in &self.mount {
            run.mounts.push(flags::parse_mount(m)?);
        }
        for t in &self.tmpfs {
            push_tmpfs(&mut run.mounts, flags::parse_tmpfs(t)?);
        }

        run.memory = opt(&self.memory, flags::parse_memory)?;
        run.memory_swap = opt(&self.memory_swap, flags::parse_memory_swap)?;
        run.memory_reservation = opt(&self.memory_reservation, flags::parse_memory_reservation)?;
        run.nano_cpus = opt(&self.cpus, flags::parse_cpus)?;
        run.cpu_shares = opt(&self.cpu_shares, flags::parse_cpu_shares)?;
        run.cpuset_cpus = opt(&self.cpuset_cpus, |v| flags::parse_cpuset(v, "cpus"))?;
        run.cpuset_mems = opt(&self.cpuset_mems, |v| flags::parse_cpuset(v, "mems"))?;
        run.pids_limit = opt(&self.pids_limit, flags::parse_pids_limit)?;
        run.shm_size = opt(&self.shm_size, flags::parse_shm_size)?;
        run.oom_score_adj = opt(&self.oom_score_adj, flags::parse_oom_score_adj)?;
        for u in &self.ulimit {
            push_ulimit(&mut run.ulimits, flags::parse_ulimit(u)?);
        }

        for c in &self.cap_add {
            run.cap_add.push(flags::parse_capability(c, "CapAdd")?);
        }
        for c in &self.cap_drop {
            run.cap_drop.push(flags::parse_capability(c, "CapDrop")?);
        }
        for s in &self.security_opt {
            flags::parse_security_opt(s, &mut run.security, &|p| std::fs::read_to_string(p))?;
        }
        for d in &self.device {
            run.devices.push(flags::parse_device(d)?);
        }
        if let Some(sig) = self.stop_signal.as_deref().filter(|s| !s.is_empty()) {
            flags::parse_signal(sig)?;
            run.stop_signal = Some(sig.to_string());
        }
        for s in &self.sysctl {
            let (k, v) = flags::parse_sysctl(s)?;
            run.sysctls.insert(k, v);
        }

        for h in &self.add_host {
            run.extra_hosts.push(flags::parse_add_host(h)?);
        }
        for d in &self.dns {
            run.dns.push(flags::parse_dns(d)?);
        }
        for d in &self.dns_search {
            run.dns_search.push(validate_dns_search(d)?);
        }
        run.network = self.network_mode()?;
        run.network_aliases = self.network_alias.clone();
        for value in &self.network {
            run.network_aliases.extend(network_aliases(value));
        }
        for p in &self.publish {
            run.publish
                .extend(engine::network::parse_publish(p).map_err(FlagError::Invalid)?);
        }
        run.publish_all = self.publish_all;
        for e in &self.expose {
            run.expose
                .extend(engine::network::parse_expose(e).map_err(FlagError::Invalid)?);
        }
        run.ipc = flags::parse_ipc(self.ipc.as_deref().unwrap_or(""))?;
        run.pid_host = flags::parse_pid(self.pid.as_deref().unwrap_or(""))?;
        run.uts_host = flags::parse_uts(self.uts.as_deref().unwrap_or(""))?;
        Ok(run)
    }

    /// Docker's rules for `--network` given more than once; berth joins one network.
    fn network_mode(&self) -> Result<NetworkMode, FlagError> {
        let mut targets: Vec<String> = vec![];
        for value in &self.network {
            let target = network_target(value)?;
            if targets.contains(&target) {
                return Err(FlagError::Invalid(format!(
                    "network \"{target}\" is specified multiple times"
                )));
            }
            targets.push(target);
        }
        let user_defined = |t: &String| {
            !matches!(t.as_str(), "default" | "bridge" | "host" | "none")
                && !t.starts_with("container:")
        };
        let any_user = targets.iter().any(user_defined);
        if any_user && !targets.iter().all(user_defined) {
            return Err(FlagError::Invalid(
                "conflicting options: cannot attach both user-defined and non-user-defined network-modes"
                    .into(),
            ));
        }
        match targets.as_slice() {
            [] => Ok(NetworkMode::Default),
            [one] => Ok(flags::parse_network(one)),
            _ => Err(FlagError::Invalid(
                "berth cannot connect a container to more than one network yet".into(),
            )),
        }
    }

    /// `--health-*` and `--no-healthcheck`, with the CLI's checks and then the daemon's.
    fn health(&self) -> Result<Option<HealthCheck>, FlagError> {
        let duration = |v: &Option<String>, flag: &'static str| -> Result<i64, FlagError> {
            v.as_deref().map_or(Ok(0), |s| parse_duration(s, flag))
        };
        let interval = duration(&self.health_interval, "--health-interval")?;
        let timeout = duration(&self.health_timeout, "--health-timeout")?;
        let start_period = duration(&self.health_start_period, "--health-start-period")?;
        let retries = self
            .health_retries
            .as_deref()
            .map_or(Ok(0), |v| go_int("--health-retries", v))?;
        let cmd = self.health_cmd.as_deref().unwrap_or("");

        let any =
            !cmd.is_empty() || interval != 0 || timeout != 0 || start_period != 0 || retries != 0;
        if self.no_healthcheck {
            if any {
                return Err(FlagError::Invalid(
                    "--no-healthcheck conflicts with --health-* options".into(),
                ));
            }
            return Ok(Some(HealthCheck {
                test: vec!["NONE".into()],
                ..HealthCheck::default()
            }));
        }
        if !any {
            return Ok(None);
        }
        for (value, flag) in [
            (interval, "--health-interval"),
            (timeout, "--health-timeout"),
            (retries, "--health-retries"),
            (start_period, "--health-start-period"),
        ] {
            if value < 0 {
                return Err(FlagError::Invalid(format!("{flag} cannot be negative")));
            }
        }
        // The daemon's floor: 1ms (0 means "the default").
        const MINIMUM: i64 = 1_000_000;
        for (value, what) in [
            (interval, "Interval"),
            (timeout, "Timeout"),
            (start_period, "StartPeriod"),
        ] {
            if value != 0 && value < MINIMUM {
                return Err(FlagError::Invalid(format!(
                    "{what} in Healthcheck cannot be less than 1ms"
                )));
            }
        }
        let test = if cmd.is_empty() {
            vec![]
        } else {
            vec!["CMD-SHELL".to_string(), cmd.to_string()]
        };
        Ok(Some(HealthCheck {
            test,
            interval,
            timeout,
            start_period,
            retries,
        }))
    }

    /// `--log-driver` and `--log-opt`: (driver, max-size in bytes, max-file).
    fn logging(&self) -> Result<(LogDriver, u64, u32), FlagError> {
        let invalid = |msg: String| FlagError::Invalid(msg);
        let driver = match self.log_driver.as_deref().unwrap_or("") {
            "" | "json-file" => LogDriver::JsonFile,
            "none" => LogDriver::None,
            other => return Err(invalid(format!("logging driver not supported: {other}"))),
        };
        // Docker's ConvertKVStringsToMap: a missing `=` is an empty value, the last wins.
        let opts: BTreeMap<&str, &str> = self
            .log_opt
            .iter()
            .map(|o| o.split_once('=').unwrap_or((o.as_str(), "")))
            .collect();
        if driver == LogDriver::None {
            if !opts.is_empty() {
                return Err(invalid("invalid logging opts for driver none".into()));
            }
            return Ok((driver, 0, 1));
        }
        // The daemon checks the keys at create and the values when the logger starts.
        for key in opts.keys() {
            if !JSON_FILE_OPTS.contains(key) {
                return Err(invalid(format!(
                    "unknown log opt '{key}' for json-file log driver"
                )));
            }
        }
        let init_err = |why: String| invalid(format!("failed to initialize logging driver: {why}"));
        let mut max_size = 0;
        if let Some(v) = opts.get("max-size") {
            let n = engine::flags::parse_human_size(v).map_err(init_err)?;
            if n <= 0 {
                return Err(init_err("max-size must be a positive number".into()));
            }
            max_size = n.unsigned_abs();
        }
        let mut max_files = 1;
        if let Some(v) = opts.get("max-file") {
            let n = v.parse::<i64>().map_err(|e| {
                init_err(format!(
                    "strconv.Atoi: parsing \"{v}\": {}",
                    go_int_reason(&e)
                ))
            })?;
            if n < 1 {
                return Err(init_err("max-file cannot be less than 1".into()));
            }
            max_files = u32::try_from(n).map_err(|_| {
                init_err(format!("strconv.Atoi: parsing \"{v}\": value out of range"))
            })?;
        }
        if let Some(v) = opts.get("compress") {
            let compress = go_bool(v).map_err(init_err)?;
            if compress && (max_files == 1 || max_size == 0) {
                return Err(init_err(
                    "compress cannot be true when max-file is less than 2 or max-size is not set"
                        .into(),
                ));
            }
            if compress {
                return Err(invalid(
                    "log opt 'compress=true' is not supported by berth yet".into(),
                ));
            }
        }
        for key in ["labels", "labels-regex", "env", "env-regex", "tag"] {
            if opts.contains_key(key) {
                return Err(invalid(format!(
                    "log opt '{key}' is not supported by berth yet"
                )));
            }
        }
        Ok((driver, max_size, max_files))
    }

    /// `-a`: canonical upper-case names, each once.
    fn attach_streams(&self) -> Result<Vec<String>, FlagError> {
        let mut out: Vec<String> = vec![];
        for a in &self.attach {
            let stream = a.to_ascii_uppercase();
            if !matches!(stream.as_str(), "STDIN" | "STDOUT" | "STDERR") {
                return Err(FlagError::Argument {
                    value: a.clone(),
                    flag: "-a, --attach",
                    reason: "valid streams are STDIN, STDOUT and STDERR".into(),
                });
            }
            if !out.contains(&stream) {
                out.push(stream);
            }
        }
        Ok(out)
    }
}

/// The keys Docker's json-file driver knows (its `ValidateLogOpt`).
const JSON_FILE_OPTS: [&str; 8] = [
    "max-file",
    "max-size",
    "compress",
    "labels",
    "labels-regex",
    "env",
    "env-regex",
    "tag",
];

fn opt<T>(
    value: &Option<String>,
    parse: impl Fn(&str) -> Result<T, FlagError>,
) -> Result<Option<T>, FlagError> {
    value.as_deref().map(parse).transpose()
}

/// Docker keeps `--tmpfs` in a map by target: a repeated target replaces the earlier one.
fn push_tmpfs(mounts: &mut Vec<MountSpec>, tmpfs: MountSpec) {
    let same = |m: &MountSpec| matches!(m, MountSpec::Tmpfs { .. }) && m.target() == tmpfs.target();
    match mounts.iter_mut().find(|m| same(m)) {
        Some(m) => *m = tmpfs,
        None => mounts.push(tmpfs),
    }
}

/// Docker keeps `--ulimit` in a map by name: the last one given for a name wins.
fn push_ulimit(ulimits: &mut Vec<Ulimit>, u: Ulimit) {
    match ulimits.iter_mut().find(|x| x.name == u.name) {
        Some(x) => *x = u,
        None => ulimits.push(u),
    }
}

/// The `alias=` fields of a `--network` value's CSV form.
fn network_aliases(value: &str) -> Vec<String> {
    if !value.contains('=') {
        return vec![];
    }
    value
        .split(',')
        .filter_map(|f| f.split_once('='))
        .filter(|(k, _)| k.eq_ignore_ascii_case("alias"))
        .map(|(_, v)| v.to_string())
        .collect()
}

/// A `--network` value's target: a name, or the CSV form's `name=` field.
fn network_target(value: &str) -> Result<String, FlagError> {
    if !value.contains('=') {
        return Ok(value.to_string());
    }
    let mut name = None;
    for field in value.split(',') {
        let Some((key, val)) = field.split_once('=') else {
            return Err(FlagError::Invalid(format!(
                "invalid field '{field}' must be a key=value pair"
            )));
        };
        match key.to_ascii_lowercase().as_str() {
            "name" => name = Some(val.to_string()),
            "alias" => {}
            "driver-opt" | "ip" | "ip6" | "mac-address" | "link-local-ip" | "gw-priority" => {
                return Err(FlagError::Invalid(format!(
                    "--network option '{key}' is not supported by berth yet"
                )))
            }
            _ => return Err(FlagError::Invalid(format!("invalid field key {key}"))),
        }
    }
    name.ok_or_else(|| {
        FlagError::Invalid(format!(
            "invalid network option: '{value}': name is required"
        ))
    })
}

/// Go's strconv.ParseBool, as pflag reads `--flag=VALUE`.
pub(crate) fn go_bool(value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "strconv.ParseBool: parsing \"{value}\": invalid syntax"
        )),
    }
}

fn go_int_reason(e: &std::num::ParseIntError) -> &'static str {
    match e.kind() {
        std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
            "value out of range"
        }
        _ => "invalid syntax",
    }
}

/// pflag's int flags: `invalid argument "x" for "--flag" flag: strconv.ParseInt: …`.
fn go_int(flag: &'static str, value: &str) -> Result<i64, FlagError> {
    value.parse::<i64>().map_err(|e| FlagError::Argument {
        value: value.to_string(),
        flag,
        reason: format!(
            "strconv.ParseInt: parsing \"{value}\": {}",
            go_int_reason(&e)
        ),
    })
}

/// Docker's `ValidateDNSSearch`: `.`, or a domain name (a trailing dot is dropped).
fn validate_dns_search(value: &str) -> Result<String, FlagError> {
    let val = value.trim_matches(' ');
    if val == "." {
        return Ok(val.to_string());
    }
    let bad = || FlagError::Argument {
        value: value.to_string(),
        flag: "--dns-search",
        reason: format!("{val} is not a valid domain"),
    };
    let domain = val.trim_end();
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    };
    let has_letter = val.chars().any(|c| c.is_ascii_alphabetic());
    if has_letter && domain.len() < 255 && domain.split('.').all(label_ok) {
        Ok(domain.to_string())
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use engine::flags::IpcMode;

    /// How `run`/`create` will use the flags.
    #[derive(Parser, Debug)]
    #[command(disable_help_flag = true)]
    struct Cmd {
        #[command(flatten)]
        flags: RunFlags,
        image: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    }

    fn parse(args: &[&str]) -> Cmd {
        Cmd::try_parse_from(std::iter::once("run").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn options(args: &[&str]) -> Result<CreateOptions, FlagError> {
        let c = parse(args);
        c.flags.build(&c.image, &c.command, &no_env)
    }

    fn error(args: &[&str]) -> String {
        match options(args) {
            Ok(o) => panic!("{args:?} parsed: {o:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_typical_run() {
        let c = parse(&[
            "-d",
            "--rm",
            "--name",
            "web",
            "-e",
            "A=1",
            "--env=B=2",
            "-w",
            "/app",
            "-u",
            "1000:1000",
            "--entrypoint",
            "",
            "-h",
            "box",
            "-l",
            "tier=web",
            "-v",
            "/srv:/data:ro",
            "-v",
            "cache:/cache",
            "--mount",
            "type=bind,src=/etc,dst=/host-etc",
            "--tmpfs",
            "/run:size=1m",
            "--read-only",
            "-m",
            "64m",
            "--memory-swap",
            "-1",
            "--memory-reservation",
            "32m",
            "--cpus",
            "1.5",
            "-c",
            "512",
            "--cpuset-cpus",
            "0-1",
            "--cpuset-mems",
            "0",
            "--pids-limit",
            "100",
            "--ulimit",
            "nofile=1024:2048",
            "--cap-add",
            "net_admin",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--device",
            "/dev/fuse",
            "--restart",
            "no",
            "--init",
            "--stop-signal",
            "SIGINT",
            "--stop-timeout",
            "5",
            "--health-cmd",
            "wget -q localhost",
            "--health-interval",
            "30s",
            "--health-timeout",
            "5s",
            "--health-retries",
            "3",
            "--health-start-period",
            "1m",
            "--net",
            "none",
            "--add-host",
            "db:10.0.0.2",
            "--dns",
            "1.1.1.1",
            "--dns-search",
            "example.com.",
            "--dns-option",
            "ndots:2",
            "--sig-proxy=false",
            "--log-driver",
            "json-file",
            "--log-opt",
            "max-size=10m",
            "--log-opt",
            "max-file=3",
            "--runtime",
            "runc",
            "--platform",
            "linux/amd64",
            "--pull",
            "never",
            "-q",
            "--shm-size",
            "128m",
            "--sysctl",
            "kernel.msgmax=65536",
            "--group-add",
            "audio",
            "--oom-score-adj",
            "-500",
            "--oom-kill-disable",
            "--ipc",
            "host",
            "--pid",
            "host",
            "--cidfile",
            "/tmp/cid",
            "-it",
            "busybox",
            "sh",
            "-c",
            "echo hi",
            "-x",
        ]);
        assert_eq!(c.image, "busybox");
        assert_eq!(c.command, strings(&["sh", "-c", "echo hi", "-x"]));
        let f = &c.flags;
        assert!(f.detach && f.quiet && f.interactive && f.tty);
        assert_eq!(f.platform.as_deref(), Some("linux/amd64"));
        assert_eq!(f.pull_policy().unwrap(), PullPolicy::Never);
        assert_eq!(f.cidfile, Some(PathBuf::from("/tmp/cid")));

        let o = f.build(&c.image, &c.command, &no_env).unwrap();
        assert_eq!(o.name.as_deref(), Some("web"));
        assert_eq!(o.image, "busybox");
        assert!(o.auto_remove);
        assert_eq!(o.restart, RestartPolicy::No);
        assert_eq!(o.stop_timeout, Some(5));
        assert_eq!(o.log_driver, LogDriver::JsonFile);
        assert_eq!((o.log_max_size, o.log_max_files), (10_000_000, 3));
        assert_eq!(
            o.health,
            Some(HealthCheck {
                test: strings(&["CMD-SHELL", "wget -q localhost"]),
                interval: 30_000_000_000,
                timeout: 5_000_000_000,
                start_period: 60_000_000_000,
                retries: 3,
            })
        );
        assert_eq!(o.runtime.as_deref(), Some("runc"));
        assert!(o.attach.is_empty());
        assert!(!o.sig_proxy);

        let r = &o.run;
        assert_eq!(r.command, strings(&["sh", "-c", "echo hi", "-x"]));
        assert_eq!(r.env, strings(&["A=1", "B=2"]));
        assert_eq!(r.workdir.as_deref(), Some("/app"));
        assert_eq!(r.user.as_deref(), Some("1000:1000"));
        assert_eq!(
            r.entrypoint.as_deref(),
            Some(""),
            "--entrypoint '' clears it"
        );
        assert_eq!(r.hostname.as_deref(), Some("box"));
        assert_eq!(r.labels.get("tier").map(String::as_str), Some("web"));
        assert_eq!(r.mounts.len(), 4);
        assert_eq!(
            r.mounts[0],
            MountSpec::Bind {
                source: "/srv".into(),
                target: "/data".into(),
                read_only: true,
                propagation: None,
                must_exist: false,
            }
        );
        assert!(matches!(&r.mounts[1], MountSpec::Volume { name: Some(n), .. } if n == "cache"));
        assert!(matches!(
            &r.mounts[2],
            MountSpec::Bind {
                must_exist: true,
                ..
            }
        ));
        assert_eq!(
            r.mounts[3],
            MountSpec::Tmpfs {
                target: "/run".into(),
                options: strings(&["size=1m"]),
            }
        );
        assert!(r.read_only && r.init && r.oom_kill_disable && r.tty && r.interactive);
        assert!(!r.privileged);
        assert_eq!(r.memory, Some(64 << 20));
        assert_eq!(r.memory_swap, Some(-1));
        assert_eq!(r.memory_reservation, Some(32 << 20));
        assert_eq!(r.nano_cpus, Some(1_500_000_000));
        assert_eq!(r.cpu_shares, Some(512));
        assert_eq!(r.cpuset_cpus.as_deref(), Some("0-1"));
        assert_eq!(r.cpuset_mems.as_deref(), Some("0"));
        assert_eq!(r.pids_limit, Some(100));
        assert_eq!(
            r.ulimits,
            vec![Ulimit {
                name: "nofile".into(),
                soft: 1024,
                hard: 2048
            }]
        );
        assert_eq!(r.cap_add, strings(&["CAP_NET_ADMIN"]));
        assert_eq!(r.cap_drop, strings(&["ALL"]));
        assert!(r.security.no_new_privileges);
        assert_eq!(r.devices.len(), 1);
        assert_eq!(r.devices[0].container, "/dev/fuse");
        assert_eq!(r.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(r.shm_size, Some(128 << 20));
        assert_eq!(
            r.sysctls.get("kernel.msgmax").map(String::as_str),
            Some("65536")
        );
        assert_eq!(r.group_add, strings(&["audio"]));
        assert_eq!(
            r.extra_hosts,
            vec![("db".to_string(), "10.0.0.2".to_string())]
        );
        assert_eq!(r.dns, strings(&["1.1.1.1"]));
        assert_eq!(r.dns_search, strings(&["example.com"]));
        assert_eq!(r.dns_options, strings(&["ndots:2"]));
        assert_eq!(r.network, NetworkMode::None);
        assert_eq!(r.oom_score_adj, Some(-500));
        assert_eq!(r.ipc, IpcMode::Host);
        assert!(r.pid_host && !r.uts_host);
    }

    #[test]
    fn defaults() {
        let c = parse(&["busybox"]);
        assert!(c.command.is_empty());
        assert_eq!(c.flags.pull_policy().unwrap(), PullPolicy::Missing);
        assert!(!c.flags.detach && !c.flags.quiet && c.flags.platform.is_none());
        let o = options(&["busybox"]).unwrap();
        assert!(o.name.is_none() && !o.auto_remove && o.health.is_none());
        assert_eq!(o.restart, RestartPolicy::No);
        assert_eq!(o.log_driver, LogDriver::JsonFile);
        assert_eq!((o.log_max_size, o.log_max_files), (0, 1));
        assert!(o.sig_proxy);
        assert_eq!(o.stop_timeout, None);
        assert_eq!(o.run.network, NetworkMode::Default);
        assert_eq!(o.run.entrypoint, None);
        assert!(o.run.env.is_empty() && o.run.mounts.is_empty());
    }

    /// The shape that reads the command as docker does: the image is the first value of
    /// a trailing var-arg, so everything after it belongs to the command.
    #[derive(Parser, Debug)]
    #[command(disable_help_flag = true)]
    struct DockerShaped {
        #[command(flatten)]
        flags: RunFlags,
        #[arg(
            value_name = "IMAGE [COMMAND] [ARG...]",
            required = true,
            trailing_var_arg = true
        )]
        args: Vec<String>,
    }

    fn docker_shaped(args: &[&str]) -> Result<DockerShaped, clap::Error> {
        DockerShaped::try_parse_from(std::iter::once("run").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_keeps_its_hyphens() {
        let c = parse(&[
            "-d", "--rm", "-e", "A=1", "busybox", "sh", "-c", "echo hi", "-x",
        ]);
        assert!(c.flags.detach && c.flags.rm);
        assert_eq!(c.flags.env, strings(&["A=1"]));
        assert_eq!(c.command, strings(&["sh", "-c", "echo hi", "-x"]));
        let c = parse(&["busybox", "sh", "--rm", "-d"]);
        assert!(!c.flags.rm && !c.flags.detach);
        assert_eq!(c.command, strings(&["sh", "--rm", "-d"]));
        // A value is the next word, whatever it looks like.
        let c = parse(&["--name", "-x", "-e", "-y", "busybox"]);
        assert_eq!(c.flags.name.as_deref(), Some("-x"));
        assert_eq!(c.flags.env, strings(&["-y"]));
        assert!(c.command.is_empty());
    }

    #[test]
    fn image_then_flags_needs_the_image_in_the_trailing_var_arg() {
        // With `image: String` before the var-arg, clap still reads our own flags right
        // after the image, where docker passes them to the command.
        let c = parse(&["busybox", "--rm"]);
        assert!(c.flags.rm && c.command.is_empty());

        // Docker's reading (pflag's SetInterspersed(false)).
        let c = docker_shaped(&["-d", "busybox", "--rm", "-d", "--name", "x"]).unwrap();
        assert!(c.flags.detach && !c.flags.rm && c.flags.name.is_none());
        assert_eq!(c.args, strings(&["busybox", "--rm", "-d", "--name", "x"]));
        let c = docker_shaped(&["busybox", "--", "ls", "-l"]).unwrap();
        assert_eq!(c.args, strings(&["busybox", "--", "ls", "-l"]));
        let c = docker_shaped(&["--", "busybox", "-x"]).unwrap();
        assert_eq!(c.args, strings(&["busybox", "-x"]));
        let e = docker_shaped(&["--bogus", "busybox"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument);
        let e = docker_shaped(&["-d"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn booleans_like_pflag() {
        let c = parse(&["-dit", "busybox"]);
        assert!(c.flags.detach && c.flags.interactive && c.flags.tty);
        let c = parse(&[
            "--rm=false",
            "-d=true",
            "-t=0",
            "--sig-proxy=False",
            "busybox",
        ]);
        assert!(!c.flags.rm && c.flags.detach && !c.flags.tty && !c.flags.sig_proxy);
        let c = parse(&["-d", "-d", "--sig-proxy", "busybox"]);
        assert!(c.flags.detach && c.flags.sig_proxy);
        let e = Cmd::try_parse_from(["run", "--rm=yes", "busybox"]).unwrap_err();
        assert!(
            e.to_string()
                .contains("strconv.ParseBool: parsing \"yes\": invalid syntax"),
            "{e}"
        );
        // The last value wins, as with pflag.
        let c = parse(&[
            "--name",
            "a",
            "--name",
            "b",
            "--restart",
            "always",
            "--restart=no",
            "x",
        ]);
        assert_eq!(c.flags.name.as_deref(), Some("b"));
        assert_eq!(c.flags.restart, "no");
    }

    #[test]
    fn dash_h_is_the_hostname_and_help_is_long() {
        let c = parse(&["-h", "box", "busybox"]);
        assert_eq!(c.flags.hostname.as_deref(), Some("box"));
        let e = Cmd::try_parse_from(["run", "--help"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
        assert!(e.to_string().contains("--hostname"));
        let c = parse(&["--net", "host", "busybox"]);
        assert_eq!(c.flags.network, strings(&["host"]));
    }

    #[test]
    fn docker_error_texts() {
        let cases: &[(&[&str], &str)] = &[
            (&["-m", "12x"], "invalid argument \"12x\" for \"-m, --memory\" flag: invalid suffix: 'x'"),
            (&["--rm", "--restart", "always"], "Conflicting options: --restart and --rm"),
            (&["--rm", "--restart", "on-failure:3"], "Conflicting options: --restart and --rm"),
            (&["-d", "-a", "stdout"], "Conflicting options: -a and -d"),
            (&["-a", "stdfoo"], "invalid argument \"stdfoo\" for \"-a, --attach\" flag: valid streams are STDIN, STDOUT and STDERR"),
            (&["--pull", "sometimes"], "invalid pull option: 'sometimes': must be one of \"always\", \"missing\" or \"never\""),
            (&["--log-driver", "syslog"], "logging driver not supported: syslog"),
            (&["--log-opt", "foo=bar"], "unknown log opt 'foo' for json-file log driver"),
            (&["--log-opt", "foo"], "unknown log opt 'foo' for json-file log driver"),
            (&["--log-driver", "none", "--log-opt", "max-size=1m"], "invalid logging opts for driver none"),
            (&["--log-opt", "max-size=10x"], "failed to initialize logging driver: invalid suffix: 'x'"),
            (&["--log-opt", "max-size=big"], "failed to initialize logging driver: invalid size: 'big'"),
            (&["--log-opt", "max-size=0"], "failed to initialize logging driver: max-size must be a positive number"),
            (&["--log-opt", "max-file=0"], "failed to initialize logging driver: max-file cannot be less than 1"),
            (&["--log-opt", "max-file=x"], "failed to initialize logging driver: strconv.Atoi: parsing \"x\": invalid syntax"),
            (&["--log-opt", "compress=true"], "failed to initialize logging driver: compress cannot be true when max-file is less than 2 or max-size is not set"),
            (&["--log-opt", "compress=true", "--log-opt", "max-size=1m", "--log-opt", "max-file=2"], "log opt 'compress=true' is not supported by berth yet"),
            (&["--log-opt", "tag=x"], "log opt 'tag' is not supported by berth yet"),
            (&["--no-healthcheck", "--health-cmd", "true"], "--no-healthcheck conflicts with --health-* options"),
            (&["--no-healthcheck", "--health-interval", "1s"], "--no-healthcheck conflicts with --health-* options"),
            (&["--health-retries", "-1"], "--health-retries cannot be negative"),
            (&["--health-interval", "-1s"], "--health-interval cannot be negative"),
            (&["--health-timeout", "-5s"], "--health-timeout cannot be negative"),
            (&["--health-start-period", "-1m"], "--health-start-period cannot be negative"),
            (&["--health-interval", "10"], "invalid argument \"10\" for \"--health-interval\" flag: time: missing unit in duration \"10\""),
            (&["--health-interval", "500us"], "Interval in Healthcheck cannot be less than 1ms"),
            (&["--health-retries", "x"], "invalid argument \"x\" for \"--health-retries\" flag: strconv.ParseInt: parsing \"x\": invalid syntax"),
            (&["--stop-timeout", "ten"], "invalid argument \"ten\" for \"--stop-timeout\" flag: strconv.ParseInt: parsing \"ten\": invalid syntax"),
            (&["--stop-signal", "SIGFOO"], "Invalid signal: SIGFOO"),
            (&["--restart", "sometimes"], "invalid restart policy: unknown policy 'sometimes'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"),
            (&["-p", "8080:http"], "invalid containerPort: http"),
            (&["-p", "8080:80/icmp"], "invalid proto: icmp"),
            (&["--expose", "x"], "invalid range format for --expose: x"),
            (&["--dns-search", "-bad-"], "invalid argument \"-bad-\" for \"--dns-search\" flag: -bad- is not a valid domain"),
            (&["--dns-search", "1.2.3.4"], "invalid argument \"1.2.3.4\" for \"--dns-search\" flag: 1.2.3.4 is not a valid domain"),
            (&["--network", "host", "--network", "mynet"], "conflicting options: cannot attach both user-defined and non-user-defined network-modes"),
            (&["--network", "a", "--network", "a"], "network \"a\" is specified multiple times"),
            (&["--network", "a", "--network", "b"], "berth cannot connect a container to more than one network yet"),
            (&["--network", "name=a,ip=10.1.0.9"], "--network option 'ip' is not supported by berth yet"),
            (&["--cpus", "abc"], "invalid argument \"abc\" for \"--cpus\" flag: failed to parse abc as a rational number"),
            (&["--cap-add", "foo"], "invalid CapAdd: unknown capability: \"CAP_FOO\""),
            (&["--env-file", "/nonexistent/env"], "open /nonexistent/env: no such file or directory"),
        ];
        for (args, want) in cases {
            let mut full = args.to_vec();
            full.push("busybox");
            assert_eq!(error(&full), *want, "{args:?}");
        }
    }

    #[test]
    fn allowed_combinations() {
        let o = options(&["-d", "--rm", "busybox"]).unwrap();
        assert!(o.auto_remove);
        let o = options(&["--rm", "--restart", "no", "busybox"]).unwrap();
        assert!(o.auto_remove);
        let o = options(&["-a", "stdin", "-a", "STDOUT", "-a", "Stdout", "busybox"]).unwrap();
        assert_eq!(o.attach, strings(&["STDIN", "STDOUT"]));
        // Zero values are "not given", so they do not conflict (Docker's rule).
        let o = options(&["--no-healthcheck", "--health-retries", "0", "busybox"]).unwrap();
        assert_eq!(o.health.unwrap().test, strings(&["NONE"]));
        // Intervals alone keep the image's test.
        let o = options(&["--health-interval", "5s", "busybox"]).unwrap();
        assert_eq!(o.health.unwrap().test, Vec::<String>::new());
        let o = options(&["--network", "name=host", "--pull", "", "busybox"]).unwrap();
        assert_eq!(o.run.network, NetworkMode::Host);
        let o = options(&["--log-driver", "none", "busybox"]).unwrap();
        assert_eq!(o.log_driver, LogDriver::None);
        let o = options(&["--ulimit", "nofile=1", "--ulimit", "nofile=2:3", "busybox"]).unwrap();
        assert_eq!((o.run.ulimits.len(), o.run.ulimits[0].hard), (1, 3));
    }

    #[test]
    fn log_opts() {
        let sizes = [
            ("10m", 10_000_000),
            ("1k", 1000),
            ("1K", 1000),
            ("1kb", 1000),
            ("1kib", 1000),
            ("1.5MB", 1_500_000),
            ("2g", 2_000_000_000),
            ("512", 512),
            ("512b", 512),
            ("3 m", 3_000_000),
        ];
        for (v, want) in sizes {
            assert_eq!(engine::flags::parse_human_size(v), Ok(want), "{v}");
            let o = options(&["--log-opt", &format!("max-size={v}"), "busybox"]).unwrap();
            assert_eq!(o.log_max_size, want.unsigned_abs(), "{v}");
        }
        assert_eq!(
            engine::flags::parse_human_size("-1m"),
            Err("invalid size: '-1m'".into())
        );
        assert_eq!(
            engine::flags::parse_human_size("1x"),
            Err("invalid suffix: 'x'".into())
        );
        assert_eq!(
            engine::flags::parse_human_size("1mbb"),
            Err("invalid suffix: 'mbb'".into())
        );
        assert_eq!(
            engine::flags::parse_human_size(""),
            Err("invalid size: ''".into())
        );

        let o = options(&[
            "--log-opt",
            "max-size=1m",
            "--log-opt",
            "max-file=5",
            "--log-opt",
            "max-file=4",
            "--log-opt",
            "compress=false",
            "busybox",
        ])
        .unwrap();
        assert_eq!(
            (o.log_max_size, o.log_max_files),
            (1_000_000, 4),
            "last wins"
        );
    }

    #[test]
    fn env_and_label_files() {
        let dir = tempfile::tempdir().unwrap();
        let env = dir.path().join("env");
        std::fs::write(
            &env,
            "# comment\n\nA=from-file\nB=\"quoted\" \nFROM_HOST\nMISSING\n",
        )
        .unwrap();
        let labels = dir.path().join("labels");
        std::fs::write(&labels, "tier=db\nempty\nowner=file\n").unwrap();
        let c = parse(&[
            "--env-file",
            env.to_str().unwrap(),
            "-e",
            "A=from-flag",
            "--label-file",
            labels.to_str().unwrap(),
            "-l",
            "owner=flag",
            "busybox",
        ]);
        let lookup = |k: &str| (k == "FROM_HOST").then(|| "host value".to_string());
        let o = c.flags.build(&c.image, &c.command, &lookup).unwrap();
        assert_eq!(
            o.run.env,
            strings(&[
                "A=from-file",
                "B=\"quoted\" ",
                "FROM_HOST=host value",
                "A=from-flag"
            ])
        );
        let labels: Vec<(&str, &str)> = o
            .run
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(labels, [("empty", ""), ("owner", "flag"), ("tier", "db")]);

        std::fs::write(&env, "BAD KEY=1\n").unwrap();
        let c = parse(&["--env-file", env.to_str().unwrap(), "busybox"]);
        let e = c.flags.build(&c.image, &c.command, &no_env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "poorly formatted environment: variable 'BAD KEY' contains whitespaces"
        );
    }

    #[test]
    fn env_key_alone_comes_from_our_environment() {
        // A name no other test or process sets.
        let key = "BERTH_RUN_FLAGS_TEST_LOOKUP";
        std::env::set_var(key, "from the caller");
        let c = parse(&[
            "-e",
            key,
            "-e",
            "BERTH_RUN_FLAGS_TEST_UNSET",
            "-e",
            "X=",
            "busybox",
        ]);
        let o = c.flags.to_options(&c.image, &c.command).unwrap();
        assert_eq!(
            o.run.env,
            strings(&["BERTH_RUN_FLAGS_TEST_LOOKUP=from the caller", "X="])
        );
        std::env::remove_var(key);
        assert_eq!(
            error(&["-e", "=x", "busybox"]),
            "invalid argument \"=x\" for \"-e, --env\" flag: invalid environment variable: =x"
        );
    }
}
