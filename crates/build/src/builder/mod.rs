//! The builder: a parsed Dockerfile's stages run into images, with a layer cache.
//!
//! It works as Docker's classic builder does, on berth's own pieces. A stage's state is an
//! image config and its layers. Every instruction after FROM ends in a new image in the
//! store: metadata instructions (ENV, LABEL, CMD, …) change the config and add a history
//! entry with `empty_layer`; RUN runs in a real container of the state's image (the
//! engine's create/start under a monitor, the stage's env, user, workdir and shell) whose
//! upper directory becomes the layer, as `berth commit` makes it; COPY and ADD write
//! into a fresh upper directory over the state's layers (a detached overlay, so nothing
//! can stay mounted) through the engine's in-root extraction, and that directory is the
//! layer. The step's image is recorded in the cache under a key over its parent's key, the
//! instruction after substitution and the checksum of what it reads ([`cache`]).
//!
//! Stages the target does not need are not built; the stages a stage needs (its FROM,
//! `COPY --from`) are built first, in parallel threads.

pub mod archive;
pub mod cache;
mod sources;

use crate::expand::ExpandError;
use crate::ignore::IgnoreRules;
use crate::instructions::{Command, Healthcheck, Heredoc, Instruction, Network, Step};
use crate::{parse, Dockerfile, ParseError};
use cache::Cache;
use engine::container::Engine;
use engine::flags::{MountSpec, NetworkMode, RunOptions};
use engine::fs::commit::{layers_of, register_image, write_layer, Layer, NewBlobs};
use engine::fs::extract::{Extract, Owner};
use engine::fs::resolve::open_in_root;
use engine::fs::walk::{read_tar, Entry, Kind, Sink};
use engine::{CreateOptions, HealthCheck, LogDriver};
use image::digest::Digest;
use image::reference::Reference;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use serde_json::{json, Map, Value};
use sources::{file_entry, Checksum, Item, Tree};
use std::collections::{BTreeSet, HashSet};
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// Bumped when the meaning of a cache key changes, so old entries are not matched.
const CACHE_VERSION: &str = "berth-build-1";
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Build args every Dockerfile may use without declaring them; kept out of history and
/// cache keys, as Docker does.
const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// What `berth build` asks for.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The Dockerfile's text.
    pub dockerfile: String,
    /// The context directory; None when the Dockerfile came alone on stdin.
    pub context: Option<PathBuf>,
    pub tags: Vec<Reference>,
    /// `--build-arg K=V`, in order.
    pub build_args: Vec<(String, String)>,
    pub target: Option<String>,
    pub no_cache: bool,
    /// `--pull`: pull FROM images even when the store has them.
    pub pull: bool,
    pub labels: Vec<(String, String)>,
    pub platform: Option<String>,
    /// `-q`: no progress, only the id at the end (the caller prints it).
    pub quiet: bool,
    /// Set from elsewhere to stop the build.
    pub interrupt: std::sync::Arc<Interrupt>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A step failed: the Dockerfile line, and what went wrong.
    #[error("Dockerfile:{line}: {message}")]
    Step { line: usize, message: String },
    #[error("{0}")]
    Other(String),
    /// [`Interrupt::interrupt`] was called (a signal): the build stopped and cleaned up.
    #[error("the build was interrupted")]
    Interrupted,
}

/// Stops a build from another thread (a signal's): no further step starts, and the RUN
/// containers that run are for the caller to kill ([`Interrupt::running`]), after which
/// the build returns [`BuildError::Interrupted`], cleaning up as on any error.
#[derive(Debug, Default)]
pub struct Interrupt {
    set: std::sync::atomic::AtomicBool,
    running: Mutex<Vec<String>>,
}

impl Interrupt {
    pub fn interrupt(&self) {
        let _running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        self.set.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_set(&self) -> bool {
        self.set.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The RUN containers of the build that may be running.
    pub fn running(&self) -> Vec<String> {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn check(&self) -> Result<(), BuildError> {
        if self.is_set() {
            return Err(BuildError::Interrupted);
        }
        Ok(())
    }

    /// Records a container about to start, unless the build is interrupted already (under
    /// the lock `interrupt` takes, so a container is either refused or listed).
    fn enter(&self, id: &str) -> Result<(), BuildError> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        self.check()?;
        running.push(id.to_string());
        Ok(())
    }

    fn leave(&self, id: &str) {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|r| r != id);
    }
}

impl BuildError {
    fn at(self, line: usize) -> BuildError {
        match self {
            BuildError::Other(message) => BuildError::Step { line, message },
            other => other,
        }
    }
}

macro_rules! other {
    ($($t:tt)*) => { BuildError::Other(format!($($t)*)) };
}

pub mod mounts;

fn err(e: impl std::fmt::Display) -> BuildError {
    BuildError::Other(e.to_string())
}

impl From<ExpandError> for BuildError {
    fn from(e: ExpandError) -> Self {
        err(e)
    }
}

/// Progress lines, shared by the threads of parallel stages; one line is written whole.
struct Progress {
    out: Mutex<Box<dyn Write + Send>>,
    quiet: bool,
}

impl Progress {
    fn line(&self, text: &str) {
        if !self.quiet {
            let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        }
    }
}

/// A RUN step's output, streamed to the progress.
struct Output<'a>(&'a Progress);

impl Write for Output<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.0.quiet {
            let mut out = self.0.out.lock().unwrap_or_else(|e| e.into_inner());
            out.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.out.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

/// A stage's state between steps.
#[derive(Debug, Clone)]
struct State {
    /// The image of this state; None only for `scratch` before its first step.
    image: Option<Digest>,
    config: Value,
    layers: Vec<Layer>,
    /// Whether manifests are Docker schema2 (the base image's was).
    docker: bool,
    /// The cache key of this state: what the next step's key chains from.
    key: String,
}

impl State {
    fn scratch() -> State {
        State {
            image: None,
            config: json!({
                "architecture": host_arch(),
                "os": "linux",
                "config": {"Env": [DEFAULT_PATH]},
                "rootfs": {"type": "layers", "diff_ids": []},
                "history": [],
            }),
            layers: vec![],
            docker: false,
            key: "scratch".into(),
        }
    }

    fn of_image(engine: &Engine, id: &Digest, key: String) -> Result<State, BuildError> {
        let bytes = engine.images.blobs.read(id).map_err(err)?;
        let mut config: Value =
            serde_json::from_slice(&bytes).map_err(|e| other!("image {id}: config: {e}"))?;
        let (layers, docker) = layers_of(&engine.images, id).map_err(err)?;
        if let Some(obj) = config.as_object_mut() {
            for k in ["container", "container_config", "docker_version"] {
                obj.remove(k);
            }
            if !obj.get("config").is_some_and(Value::is_object) {
                obj.insert("config".into(), json!({}));
            }
        }
        Ok(State {
            image: Some(id.clone()),
            config,
            layers,
            docker,
            key,
        })
    }

    fn inner(&mut self) -> &mut Map<String, Value> {
        if !self.config["config"].is_object() {
            self.config["config"] = json!({});
        }
        self.config["config"]
            .as_object_mut()
            .expect("made an object above")
    }

    fn get(&self, key: &str) -> &Value {
        &self.config["config"][key]
    }

    fn env(&self) -> Vec<String> {
        strings(self.get("Env"))
    }

    fn shell(&self) -> Vec<String> {
        let shell = strings(self.get("Shell"));
        if shell.is_empty() {
            vec!["/bin/sh".into(), "-c".into()]
        } else {
            shell
        }
    }

    fn workdir(&self) -> String {
        self.get("WorkingDir")
            .as_str()
            .filter(|w| !w.is_empty())
            .unwrap_or("/")
            .to_string()
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn short(id: &Digest) -> String {
    id.hex().chars().take(12).collect()
}

fn key_of(parent: &str, text: &str) -> String {
    Digest::sha256_of(format!("{CACHE_VERSION}\n{parent}\n{text}").as_bytes())
        .hex()
        .to_string()
}

/// Go's `path.Clean` of an absolute path.
fn clean_abs(path: &str) -> String {
    engine::fs::resolve::clean_abs(path)
}

/// Builds the Dockerfile in `opts`; progress goes to `out`. Returns the image id, tagged
/// with every `opts.tags` (only once everything succeeded).
pub fn build(
    engine: &Engine,
    opts: &BuildOptions,
    out: Box<dyn Write + Send>,
) -> Result<Digest, BuildError> {
    let df = parse(&opts.dockerfile)?;
    let host = format!("linux/{}", host_arch());
    if let Some(p) = &opts.platform {
        check_platform(p, &host)?;
    }
    let target = match &opts.target {
        Some(t) => {
            let name = t.to_ascii_lowercase();
            df.stages
                .iter()
                .position(|s| s.name.as_deref() == Some(name.as_str()))
                .ok_or_else(|| other!("target stage \"{t}\" could not be found"))?
        }
        None => df.stages.len() - 1,
    };
    let context = match &opts.context {
        Some(dir) => {
            let ignore = match std::fs::read_to_string(dir.join(".dockerignore")) {
                Ok(text) => IgnoreRules::parse(&text).map_err(err)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => IgnoreRules::default(),
                Err(e) => return Err(other!("reading .dockerignore: {e}")),
            };
            Tree::context(dir, ignore)?
        }
        None => Tree::none(),
    };
    // What killed builds left (best effort: a build does not fail for it).
    let _ = clean_stale(engine);
    let cache = Cache::open(engine.images.meta.shared()).map_err(err)?;
    // GC keeps away from the blobs of this build until they are registered.
    let _writer = engine.images.writer_lock().map_err(err)?;
    let progress = Progress {
        out: Mutex::new(out),
        quiet: opts.quiet,
    };

    let mut b = Builder {
        engine,
        opts,
        df: &df,
        cache,
        context,
        global: Vec::new(),
        progress,
        results: (0..df.stages.len()).map(|_| OnceLock::new()).collect(),
        numbers: vec![0; df.stages.len()],
        total: 0,
        consumed: Mutex::new(HashSet::new()),
    };
    b.global_args(&host)?;
    let needed = b.needed(target);
    let mut n = 0;
    for (i, stage) in df.stages.iter().enumerate() {
        if needed.contains(&i) {
            b.numbers[i] = n;
            n += 1 + stage.steps.len();
        }
    }
    b.total = n;

    let mut state = b.stage(target)?;
    if !opts.labels.is_empty() {
        let text = opts
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        let mut run = StageRun::new(&b, target, state);
        run.metadata(format!("LABEL {text}"), |s| {
            let mut labels = s.get("Labels").as_object().cloned().unwrap_or_default();
            for (k, v) in &opts.labels {
                labels.insert(k.clone(), json!(v));
            }
            s.inner().insert("Labels".into(), Value::Object(labels));
        })
        .map_err(|e| e.at(df.stages[target].line))?;
        state = run.state;
    }
    let id = match &state.image {
        Some(id) => id.clone(),
        None => {
            // `FROM scratch` and nothing else: an image with no layers.
            let mut blobs = NewBlobs::new(&engine.images);
            let id = register_image(&mut blobs, &state.config, &[], false, &[]).map_err(err)?;
            blobs.keep();
            id
        }
    };
    b.cache.mark_final(&id).map_err(err)?;
    let unused: BTreeSet<&str> = {
        let consumed = b.consumed.lock().unwrap_or_else(|e| e.into_inner());
        opts.build_args
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !consumed.contains(*k) && !PROXY_ARGS.contains(k))
            .collect()
    };
    if !unused.is_empty() {
        b.progress.line(&format!(
            "[Warning] One or more build-args [{}] were not consumed",
            unused.into_iter().collect::<Vec<_>>().join(" ")
        ));
    }
    for tag in &opts.tags {
        engine.images.meta.tag(tag, &id).map_err(err)?;
    }
    b.progress
        .line(&format!("Successfully built {}", short(&id)));
    for tag in &opts.tags {
        b.progress
            .line(&format!("Successfully tagged {}", tag.familiar()));
    }
    Ok(id)
}

fn check_platform(p: &str, host: &str) -> Result<(), BuildError> {
    let want = image::manifest::parse_platform(p).map_err(err)?;
    if want.os != "linux" || want.architecture != host_arch() {
        return Err(other!(
            "platform {p}: only the host platform ({host}) can be built"
        ));
    }
    Ok(())
}

struct Builder<'a> {
    engine: &'a Engine,
    opts: &'a BuildOptions,
    df: &'a Dockerfile,
    cache: Cache,
    context: Tree,
    /// ARGs before the first FROM with their values (and the platform ARGs).
    global: Vec<(String, Option<String>)>,
    progress: Progress,
    results: Vec<OnceLock<Result<State, BuildError>>>,
    /// The step number of each needed stage's FROM, from 0.
    numbers: Vec<usize>,
    total: usize,
    /// Build args some ARG declared.
    consumed: Mutex<HashSet<String>>,
}

impl Builder<'_> {
    fn build_arg(&self, name: &str) -> Option<String> {
        self.opts
            .build_args
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    fn global_args(&mut self, host: &str) -> Result<(), BuildError> {
        let (os, arch) = host.split_once('/').unwrap_or(("linux", host));
        for prefix in ["TARGET", "BUILD"] {
            self.global
                .push((format!("{prefix}PLATFORM"), Some(host.to_string())));
            self.global.push((format!("{prefix}OS"), Some(os.into())));
            self.global
                .push((format!("{prefix}ARCH"), Some(arch.into())));
            self.global
                .push((format!("{prefix}VARIANT"), Some(String::new())));
        }
        let escape = self.df.directives.escape;
        for step in &self.df.global_args {
            let Instruction::Arg(defs) = &step.instruction else {
                continue;
            };
            for def in defs {
                let value = match self.build_arg(&def.name) {
                    Some(v) => Some(v),
                    None => match &def.default {
                        Some(d) => Some(
                            crate::expand_with_escape(d, escape, &|k| self.global_value(k))
                                .map_err(|e| BuildError::from(e).at(step.line))?,
                        ),
                        None => None,
                    },
                };
                self.consume(&def.name);
                self.global.retain(|(k, _)| k != &def.name);
                self.global.push((def.name.clone(), value));
            }
        }
        Ok(())
    }

    fn global_value(&self, name: &str) -> Option<String> {
        self.global
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.clone())
    }

    fn consume(&self, name: &str) {
        self.consumed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string());
    }

    /// The stage `name` refers to (a name or an index), among those before `before`.
    fn stage_ref(&self, name: &str, before: usize) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        if let Some(i) = self.df.stages[..before]
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
        {
            return Some(i);
        }
        name.parse::<usize>().ok().filter(|i| *i < before)
    }

    fn expand_global(&self, word: &str) -> String {
        crate::expand_with_escape(word, self.df.directives.escape, &|k| {
            self.build_arg(k).or_else(|| self.global_value(k))
        })
        .unwrap_or_else(|_| word.to_string())
    }

    /// The stages stage `i` reads from: its FROM, and the `COPY --from`s and
    /// `RUN --mount=from=`s that name stages.
    fn deps(&self, i: usize) -> Vec<usize> {
        let stage = &self.df.stages[i];
        let mut deps = BTreeSet::new();
        if let Some(d) = self.stage_ref(&self.expand_global(&stage.from.image), i) {
            deps.insert(d);
        }
        for step in &stage.steps {
            let froms: Vec<&String> = match &step.instruction {
                Instruction::Copy(c) => c.from.iter().collect(),
                Instruction::Run(r) => r.mounts.iter().filter_map(|m| m.from.as_ref()).collect(),
                _ => vec![],
            };
            for from in froms {
                if let Some(d) = self.stage_ref(&self.expand_global(from), i) {
                    deps.insert(d);
                }
            }
        }
        deps.into_iter().collect()
    }

    fn needed(&self, target: usize) -> BTreeSet<usize> {
        let mut needed = BTreeSet::new();
        let mut todo = vec![target];
        while let Some(i) = todo.pop() {
            if needed.insert(i) {
                todo.extend(self.deps(i));
            }
        }
        needed
    }

    /// Stage `i`'s final state, built once; the stages it needs are built first, those
    /// not yet started in threads of their own.
    fn stage(&self, i: usize) -> Result<State, BuildError> {
        self.results[i]
            .get_or_init(|| {
                let deps = self.deps(i);
                let failed = std::thread::scope(|s| {
                    let handles: Vec<_> = deps
                        .iter()
                        .map(|&d| s.spawn(move || self.stage(d)))
                        .collect();
                    handles
                        .into_iter()
                        .filter_map(|h| match h.join() {
                            Ok(Ok(_)) => None,
                            Ok(Err(e)) => Some(e),
                            Err(_) => Some(other!("a build thread panicked")),
                        })
                        .next()
                });
                if let Some(e) = failed {
                    return Err(e);
                }
                self.run_stage(i)
            })
            .clone()
    }

    fn run_stage(&self, i: usize) -> Result<State, BuildError> {
        let stage = &self.df.stages[i];
        let mut n = self.numbers[i] + 1;
        self.progress.line(&format!(
            "Step {n}/{} : {}",
            self.total,
            stage_from_text(stage)
        ));
        let mut run = StageRun::new(self, i, State::scratch());
        run.from().map_err(|e| e.at(stage.line))?;
        for step in &stage.steps {
            self.opts.interrupt.check()?;
            n += 1;
            self.progress
                .line(&format!("Step {n}/{} : {}", self.total, step.original));
            run.step(step).map_err(|e| {
                // Whatever a step failed with after an interrupt, the interrupt is why.
                if self.opts.interrupt.is_set() {
                    BuildError::Interrupted
                } else {
                    e.at(step.line)
                }
            })?;
        }
        self.opts.interrupt.check()?;
        Ok(run.state)
    }
}

fn stage_from_text(stage: &crate::Stage) -> String {
    let mut text = String::from("FROM ");
    if let Some(p) = &stage.from.platform {
        text += &format!("--platform={p} ");
    }
    text += &stage.from.image;
    if let Some(name) = &stage.name {
        text += &format!(" AS {name}");
    }
    text
}

/// One stage being run.
struct StageRun<'b, 'a> {
    b: &'b Builder<'a>,
    index: usize,
    state: State,
    /// ARGs this stage declared, with their values.
    args: Vec<(String, Option<String>)>,
    /// Whether a CMD came in this stage (then ENTRYPOINT keeps it).
    cmd_set: bool,
}

impl<'b, 'a> StageRun<'b, 'a> {
    fn new(b: &'b Builder<'a>, index: usize, state: State) -> Self {
        StageRun {
            b,
            index,
            state,
            args: Vec::new(),
            cmd_set: false,
        }
    }

    fn engine(&self) -> &'a Engine {
        self.b.engine
    }

    /// A variable as the stage sees it: ENV first, then ARGs.
    fn lookup(&self, name: &str) -> Option<String> {
        let prefix = format!("{name}=");
        if let Some(v) = self
            .state
            .env()
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix(&prefix).map(str::to_string))
        {
            return Some(v);
        }
        self.args
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.clone())
    }

    fn from(&mut self) -> Result<(), BuildError> {
        let stage = &self.b.df.stages[self.index];
        let name = self.b.expand_global(&stage.from.image);
        if let Some(p) = &stage.from.platform {
            let p = self.b.expand_global(p);
            check_platform(&p, &format!("linux/{}", host_arch()))?;
        }
        if let Some(dep) = self.b.stage_ref(&name, self.index) {
            self.state = self.b.stage(dep)?;
        } else if name.eq_ignore_ascii_case("scratch") {
            self.state = State::scratch();
        } else {
            let id = self.base_image(&name)?;
            self.state = State::of_image(self.engine(), &id, format!("image {id}"))?;
        }
        if let Some(id) = &self.state.image {
            self.b.progress.line(&format!(" ---> {}", short(id)));
        }
        self.onbuild(stage.line)
    }

    /// An image by name or id, pulled when absent (always with `--pull`).
    fn base_image(&self, name: &str) -> Result<Digest, BuildError> {
        let store = &self.engine().images;
        if !self.b.opts.pull {
            if let Ok(row) = store.meta.resolve(name) {
                return Ok(row.id);
            }
        }
        let reference = Reference::parse(name).map_err(err)?;
        let platform = image::manifest::parse_platform(&format!("linux/{}", host_arch())).ok();
        registry::pull(
            store,
            &reference,
            platform.as_ref(),
            &registry::Options::default(),
            &|_| {},
        )
        .map(|row| row.id)
        .map_err(|e| other!("{name}: not in the store, and pulling it failed: {e}"))
    }

    /// The base's ONBUILD triggers, run as if they followed FROM.
    fn onbuild(&mut self, line: usize) -> Result<(), BuildError> {
        let triggers = strings(self.state.get("OnBuild"));
        if triggers.is_empty() {
            return Ok(());
        }
        self.state.inner().remove("OnBuild");
        let n = triggers.len();
        self.b.progress.line(&format!(
            "# Executing {n} build trigger{}",
            if n == 1 { "" } else { "s" }
        ));
        for trigger in triggers {
            let df = parse(&format!("FROM scratch\n{trigger}\n"))
                .map_err(|e| other!("ONBUILD trigger {trigger:?}: {}", e.kind))?;
            let step = df.stages[0]
                .steps
                .first()
                .ok_or_else(|| other!("ONBUILD trigger {trigger:?}: no instruction"))?;
            self.step(step).map_err(|e| e.at(line))?;
        }
        Ok(())
    }

    fn step(&mut self, step: &Step) -> Result<(), BuildError> {
        let escape = self.b.df.directives.escape;
        let expanded = step
            .instruction
            .expand(escape, &|k| self.lookup(k))
            .map_err(err)?;
        match expanded {
            Instruction::Arg(defs) => {
                for def in defs {
                    self.b.consume(&def.name);
                    let value = self
                        .b
                        .build_arg(&def.name)
                        .or(def.default)
                        .or_else(|| self.b.global_value(&def.name));
                    self.args.push((def.name, value));
                }
                if let Some(id) = &self.state.image {
                    self.b.progress.line(&format!(" ---> {}", short(id)));
                }
                Ok(())
            }
            Instruction::Env(vars) => {
                let text = pairs(&vars);
                self.metadata(format!("ENV {text}"), |s| {
                    let mut env = s.env();
                    for (k, v) in &vars {
                        let prefix = format!("{k}=");
                        env.retain(|e| !e.starts_with(&prefix));
                        env.push(format!("{k}={v}"));
                    }
                    s.inner().insert("Env".into(), json!(env));
                })
            }
            Instruction::Label(labels) => self.metadata(format!("LABEL {}", pairs(&labels)), |s| {
                let mut map = s.get("Labels").as_object().cloned().unwrap_or_default();
                for (k, v) in &labels {
                    map.insert(k.clone(), json!(v));
                }
                s.inner().insert("Labels".into(), Value::Object(map));
            }),
            Instruction::User(u) => self.metadata(format!("USER {u}"), |s| {
                s.inner().insert("User".into(), json!(u));
            }),
            Instruction::StopSignal(sig) => self.metadata(format!("STOPSIGNAL {sig}"), |s| {
                s.inner().insert("StopSignal".into(), json!(sig));
            }),
            Instruction::Maintainer(m) => self.metadata(format!("MAINTAINER {m}"), |s| {
                s.config["author"] = json!(m);
            }),
            Instruction::Shell(shell) => self.metadata(format!("SHELL {}", json!(shell)), |s| {
                s.inner().insert("Shell".into(), json!(shell));
            }),
            Instruction::Cmd(c) => {
                let argv = self.argv(&c);
                self.cmd_set = true;
                self.metadata(format!("CMD {}", json!(argv)), |s| {
                    s.inner().insert("Cmd".into(), json!(argv));
                })
            }
            Instruction::Entrypoint(c) => {
                let argv = self.argv(&c);
                let keep_cmd = self.cmd_set;
                self.metadata(format!("ENTRYPOINT {}", json!(argv)), |s| {
                    s.inner().insert("Entrypoint".into(), json!(argv));
                    if !keep_cmd {
                        s.inner().insert("Cmd".into(), Value::Null);
                    }
                })
            }
            Instruction::Expose(ports) => {
                let ports = expose_ports(&ports)?;
                self.metadata(format!("EXPOSE {}", ports.join(" ")), |s| {
                    let mut map = s
                        .get("ExposedPorts")
                        .as_object()
                        .cloned()
                        .unwrap_or_default();
                    for p in &ports {
                        map.insert(p.clone(), json!({}));
                    }
                    s.inner().insert("ExposedPorts".into(), Value::Object(map));
                })
            }
            Instruction::Volume(vols) => self.metadata(format!("VOLUME {}", json!(vols)), |s| {
                let mut map = s.get("Volumes").as_object().cloned().unwrap_or_default();
                for v in &vols {
                    map.insert(v.clone(), json!({}));
                }
                s.inner().insert("Volumes".into(), Value::Object(map));
            }),
            Instruction::Healthcheck(h) => {
                let value = self.healthcheck(&h);
                self.metadata(format!("HEALTHCHECK {value}"), |s| {
                    s.inner().insert("Healthcheck".into(), value.clone());
                })
            }
            Instruction::Onbuild(_) => {
                let trigger = onbuild_text(step);
                self.metadata(format!("ONBUILD {trigger}"), |s| {
                    let mut list = strings(s.get("OnBuild"));
                    list.push(trigger.clone());
                    s.inner().insert("OnBuild".into(), json!(list));
                })
            }
            Instruction::Workdir(dir) => self.workdir(&dir),
            Instruction::Run(run) => self.run(&run),
            Instruction::Copy(c) => self.copy(CopyStep {
                name: "COPY",
                sources: c.sources,
                dest: c.dest,
                from: c.from,
                chown: c.chown,
                chmod: c.chmod,
                heredocs: c.heredocs,
                exclude: c.exclude,
                parents: c.parents,
                link: c.link,
                add: false,
            }),
            Instruction::Add(a) => {
                if a.checksum.is_some() || a.keep_git_dir {
                    return Err(other!(
                        "ADD --checksum and --keep-git-dir are for remote sources, which berth does not fetch yet"
                    ));
                }
                self.copy(CopyStep {
                    name: "ADD",
                    sources: a.sources,
                    dest: a.dest,
                    from: None,
                    chown: a.chown,
                    chmod: a.chmod,
                    heredocs: a.heredocs,
                    exclude: a.exclude,
                    parents: false,
                    link: a.link,
                    add: true,
                })
            }
            Instruction::From(_) => Err(other!("FROM inside a stage")),
        }
    }

    /// A command as it goes into the config or the container: exec form as written,
    /// shell form through the stage's SHELL.
    fn argv(&self, c: &Command) -> Vec<String> {
        match c {
            Command::Exec(v) => v.clone(),
            Command::Shell(text) => {
                let mut v = self.state.shell();
                v.push(text.clone());
                v
            }
        }
    }

    fn healthcheck(&self, h: &Healthcheck) -> Value {
        match h {
            Healthcheck::None => json!({"Test": ["NONE"]}),
            Healthcheck::Cmd {
                command,
                interval,
                timeout,
                start_period,
                start_interval,
                retries,
            } => {
                let test = match command {
                    Command::Exec(v) => {
                        let mut t = vec!["CMD".to_string()];
                        t.extend(v.iter().cloned());
                        t
                    }
                    Command::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
                };
                let mut map = Map::new();
                map.insert("Test".into(), json!(test));
                for (k, d) in [
                    ("Interval", interval),
                    ("Timeout", timeout),
                    ("StartPeriod", start_period),
                    ("StartInterval", start_interval),
                ] {
                    if let Some(d) = d {
                        map.insert(k.into(), json!(d.as_nanos() as u64));
                    }
                }
                if let Some(r) = retries {
                    map.insert("Retries".into(), json!(r));
                }
                Value::Object(map)
            }
        }
    }

    /// Looks the step up in the cache; on a hit the state becomes the cached image's.
    fn cached(&mut self, key: &str) -> Result<bool, BuildError> {
        if self.b.opts.no_cache {
            return Ok(false);
        }
        let Some(id) = self.b.cache.get(key).map_err(err)? else {
            return Ok(false);
        };
        let state = match State::of_image(self.engine(), &id, key.to_string()) {
            Ok(s) => s,
            // Removed since the lookup: build the step again.
            Err(_) => return Ok(false),
        };
        self.state = state;
        self.b.progress.line(" ---> Using cache");
        self.b.progress.line(&format!(" ---> {}", short(&id)));
        Ok(true)
    }

    /// A step that changes only the config: `created_by` is its history line and the
    /// text its cache key covers.
    fn metadata(
        &mut self,
        created_by: String,
        change: impl FnOnce(&mut State),
    ) -> Result<(), BuildError> {
        let key = key_of(&self.state.key, &created_by);
        if self.cached(&key)? {
            return Ok(());
        }
        change(&mut self.state);
        let blobs = NewBlobs::new(&self.engine().images);
        self.commit(key, created_by, None, blobs)
    }

    /// Records the new state as an image (with a history entry, and the layer if any) and
    /// in the cache.
    fn commit(
        &mut self,
        key: String,
        created_by: String,
        layer: Option<Layer>,
        mut blobs: NewBlobs,
    ) -> Result<(), BuildError> {
        let created = image::time::format_rfc3339(now());
        let s = &mut self.state;
        s.config["created"] = json!(created);
        let mut entry = Map::new();
        entry.insert("created".into(), json!(created));
        entry.insert("created_by".into(), json!(created_by));
        match layer {
            Some(layer) => {
                let mut diff_ids = s.config["rootfs"]["diff_ids"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                diff_ids.push(json!(layer.diff_id.to_string()));
                s.config["rootfs"] = json!({"type": "layers", "diff_ids": diff_ids});
                s.layers.push(layer);
            }
            None => {
                entry.insert("empty_layer".into(), json!(true));
            }
        }
        let mut history = s.config["history"].as_array().cloned().unwrap_or_default();
        history.push(Value::Object(entry));
        s.config["history"] = Value::Array(history);
        let id = register_image(&mut blobs, &s.config, &s.layers, s.docker, &[]).map_err(err)?;
        blobs.keep();
        self.b.cache.put(&key, &id, s.image.as_ref()).map_err(err)?;
        s.image = Some(id.clone());
        s.key = key;
        self.b.progress.line(&format!(" ---> {}", short(&id)));
        Ok(())
    }

    fn workdir(&mut self, dir: &str) -> Result<(), BuildError> {
        let dir = if dir.starts_with('/') {
            clean_abs(dir)
        } else {
            clean_abs(&format!("{}/{dir}", self.state.workdir()))
        };
        let created_by = format!("WORKDIR {dir}");
        let key = key_of(&self.state.key, &created_by);
        if self.cached(&key)? {
            return Ok(());
        }
        self.state.inner().insert("WorkingDir".into(), json!(dir));
        let mut blobs = NewBlobs::new(&self.engine().images);
        let ws = Workspace::open(self.engine(), &self.state)?;
        let layer = match open_in_root(
            ws.root(),
            Path::new(&dir),
            OFlag::O_PATH | OFlag::O_DIRECTORY,
        ) {
            Ok(_) => None,
            Err(_) => {
                mkdir_p(ws.root(), &dir, (0, 0))?;
                Some(ws.into_layer(self.engine(), &self.state, &mut blobs)?)
            }
        };
        self.commit(key, created_by, layer, blobs)
    }

    /// ARGs with values, for RUN's environment: not those ENV sets, nor proxy args
    /// unless `proxies`.
    fn arg_env(&self, proxies: bool) -> Vec<String> {
        let env = self.state.env();
        let set = |k: &str| {
            env.iter()
                .any(|e| e.split_once('=').map(|(n, _)| n) == Some(k))
        };
        let mut out: Vec<String> = Vec::new();
        let mut seen = HashSet::new();
        for (k, v) in self.args.iter().rev() {
            if let Some(v) = v {
                if !set(k) && seen.insert(k.clone()) {
                    out.push(format!("{k}={v}"));
                }
            }
        }
        out.reverse();
        if proxies {
            for p in PROXY_ARGS {
                if let Some(v) = self.b.build_arg(p) {
                    if seen.insert(p.to_string()) {
                        out.push(format!("{p}={v}"));
                    }
                }
            }
        }
        out
    }

    fn run(&mut self, run: &crate::instructions::Run) -> Result<(), BuildError> {
        let plans = mounts::plan(&run.mounts, &self.state.workdir())?;
        let argv = match &run.command {
            Command::Exec(v) => v.clone(),
            Command::Shell(text) => {
                let mut v = self.state.shell();
                v.push(shell_script(text, &run.heredocs));
                v
            }
        };
        if argv.is_empty() {
            return Err(other!("RUN needs a command"));
        }
        let args = self.arg_env(false);
        let mut created_by = argv.join(" ");
        if !args.is_empty() {
            created_by = format!("|{} {} {created_by}", args.len(), args.join(" "));
        }
        let network = run.network.unwrap_or(Network::Default);
        let key = key_of(
            &self.state.key,
            &format!(
                "RUN {} {:?} {}{}",
                json!(argv),
                network,
                json!(args),
                self.mounts_key(&plans)?
            ),
        );
        if self.cached(&key)? {
            return Ok(());
        }
        let Some(image) = self
            .state
            .image
            .clone()
            .filter(|_| !self.state.layers.is_empty())
        else {
            return Err(other!(
                "The command '{}' cannot run: the stage has no files (FROM scratch)",
                argv.join(" ")
            ));
        };
        let engine = self.engine();
        // Copies of bind sources live here for the step, and go with it.
        let scratch = scratch_dir(engine)?;
        let (mounts, _cache_locks) = self.mounts(&plans, scratch.path())?;
        let opts = CreateOptions {
            image: image.to_string(),
            run: RunOptions {
                mounts,
                env: self.arg_env(true),
                entrypoint: Some(argv[0].clone()),
                command: argv[1..].to_vec(),
                network: match network {
                    Network::None => NetworkMode::None,
                    Network::Host => NetworkMode::Host,
                    Network::Default => NetworkMode::Default,
                },
                ..Default::default()
            },
            log_driver: LogDriver::None,
            health: Some(HealthCheck {
                test: vec!["NONE".into()],
                interval: 0,
                timeout: 0,
                start_period: 0,
                retries: 0,
            }),
            ..Default::default()
        };
        let c = engine.create(opts, &image).map_err(err)?;
        let guard = Intermediate {
            engine,
            id: c.id.clone(),
        };
        // For the cleaner, should this process be killed before the guard can act.
        let id_file = scratch.path().join(CONTAINER_FILE);
        std::fs::write(&id_file, &c.id).map_err(|e| other!("{}: {e}", id_file.display()))?;
        self.b
            .progress
            .line(&format!(" ---> Running in {}", &c.id[..12]));
        let mut out = Output(&self.b.progress);
        let mut errs = Output(&self.b.progress);
        let interrupt = &self.b.opts.interrupt;
        interrupt.enter(&c.id)?;
        let code = engine::attach::run_to_exit(engine, &c, &mut out, &mut errs);
        interrupt.leave(&c.id);
        interrupt.check()?;
        let code = code.map_err(err)?;
        if code != 0 {
            return Err(other!(
                "The command '{}' returned a non-zero code: {code}",
                argv.join(" ")
            ));
        }
        let mut blobs = NewBlobs::new(&engine.images);
        let c = engine.find(&c.id).map_err(err)?;
        let layer = {
            // Holds the container's lock, so it must go before the container is removed.
            let targets: Vec<&str> = plans.iter().map(mounts::Planned::target).collect();
            let upper = engine::fs::commit::container_upper_layer(
                engine,
                &c,
                &mut blobs,
                self.state.docker,
                &targets,
            )
            .map_err(err)?;
            adopt(engine, &self.state, &upper.layer, &upper.dir)?;
            upper.layer
        };
        drop(guard);
        self.b
            .progress
            .line(&format!("Removing intermediate container {}", &c.id[..12]));
        self.commit(key, created_by, Some(layer), blobs)
    }

    /// What a RUN's mounts add to its cache key: how they are asked for, and for binds a
    /// checksum of what they show, as COPY's key has (a cache mount's content is not in it,
    /// as in BuildKit).
    fn mounts_key(&self, plans: &[mounts::Planned]) -> Result<String, BuildError> {
        let mut text = String::new();
        for p in plans {
            text += &format!("\n{p:?}");
            if let mounts::Planned::Bind { from, source, .. } = p {
                let (tree, key, _ws) = self.tree_of(from.as_deref())?;
                let tree = tree.as_ref().unwrap_or(&self.b.context);
                let mut items = tree.find(std::slice::from_ref(source))?;
                let mut sum = Checksum::default();
                sum_items(&mut sum, tree, &mut items, None)?;
                text += &format!(" {key} {}", sum.finish());
            }
        }
        Ok(text)
    }

    /// The tree of a `from=` (None: the context), its cache key, and what keeps it open.
    #[allow(clippy::type_complexity)]
    fn tree_of(
        &self,
        from: Option<&str>,
    ) -> Result<(Option<Tree>, String, Option<Workspace>), BuildError> {
        match from {
            None => Ok((None, String::new(), None)),
            Some(from) => {
                let (tree, key, ws) = self.source_tree(from)?;
                Ok((Some(tree), key, ws))
            }
        }
    }

    /// The engine's mounts for a RUN's `--mount`s, with the locks of its cache mounts.
    fn mounts(
        &self,
        plans: &[mounts::Planned],
        scratch: &Path,
    ) -> Result<(Vec<MountSpec>, Vec<mounts::CacheDir>), BuildError> {
        let mut specs = Vec::new();
        let mut locks = Vec::new();
        for (i, p) in plans.iter().enumerate() {
            let bind = |source: PathBuf, target: &str, read_only: bool| MountSpec::Bind {
                source,
                target: target.to_string(),
                read_only,
                propagation: None,
                must_exist: true,
            };
            match p {
                mounts::Planned::Tmpfs { target, size } => specs.push(MountSpec::Tmpfs {
                    target: target.clone(),
                    options: size.iter().map(|s| format!("size={s}")).collect(),
                }),
                mounts::Planned::Cache {
                    target,
                    id,
                    sharing,
                    mode,
                    uid,
                    gid,
                    from,
                    source,
                    readonly,
                } => {
                    let dir = mounts::open_cache(
                        &self.engine().root,
                        id,
                        *sharing,
                        (*mode, *uid, *gid),
                        |dir| match from {
                            Some(from) => self.copy_out(Some(from), source, dir),
                            None => Ok(()),
                        },
                    )?;
                    specs.push(bind(dir.path.clone(), target, *readonly));
                    locks.push(dir);
                }
                mounts::Planned::Bind {
                    target,
                    from,
                    source,
                    rw,
                } => {
                    // The context's own files, when nothing of it must be hidden or kept
                    // from being written.
                    if from.is_none() && !rw {
                        let items = self.b.context.find(std::slice::from_ref(source))?;
                        if let Some(path) = items.first().and_then(|i| self.b.context.host_path(i))
                        {
                            specs.push(bind(path, target, true));
                            continue;
                        }
                    }
                    let copy = scratch.join(format!("mount-{i}"));
                    self.copy_out(from.as_deref(), source, &copy)?;
                    specs.push(bind(copy, target, !rw));
                }
            }
        }
        Ok((specs, locks))
    }

    /// Copies `source` of the context or of `from` to the host path `dest` (a directory's
    /// contents into `dest`, made if missing; a file as `dest`), owners and modes kept.
    fn copy_out(&self, from: Option<&str>, source: &str, dest: &Path) -> Result<(), BuildError> {
        let (tree, _, _ws) = self.tree_of(from)?;
        let tree = tree.as_ref().unwrap_or(&self.b.context);
        let mut items = tree.find(&[source.to_string()])?;
        let [item] = &mut items[..] else {
            return Err(other!(
                "--mount source {source:?} names {} paths",
                items.len()
            ));
        };
        let open = |p: &Path| {
            nix::fcntl::open(
                p,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| other!("{}: {e}", p.display()))
        };
        match item {
            Item::Dir { rel, dir } => {
                match std::fs::create_dir(dest) {
                    Ok(()) => {
                        // The directory itself as the source's.
                        let st = nix::sys::stat::fstat(&*dir).map_err(err)?;
                        std::os::unix::fs::chown(dest, Some(st.st_uid), Some(st.st_gid))
                            .and_then(|()| {
                                std::fs::set_permissions(
                                    dest,
                                    std::os::unix::fs::PermissionsExt::from_mode(
                                        st.st_mode & 0o7777,
                                    ),
                                )
                            })
                            .map_err(|e| other!("{}: {e}", dest.display()))?;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(other!("{}: {e}", dest.display())),
                }
                let root = open(dest)?;
                let mut x = Extract::new(root.as_fd(), "/", Owner::Entry);
                let rel = rel.clone();
                tree.walk_dir(&rel, dir.as_fd(), Path::new(""), None, &mut x)?;
                x.finish().map_err(err)
            }
            Item::File { file, st, .. } => {
                let (Some(parent), Some(name)) = (dest.parent(), dest.file_name()) else {
                    return Err(other!("{}: not a file path", dest.display()));
                };
                if dest.exists() {
                    return Err(other!(
                        "--mount source {source:?} is a file; a directory is needed here"
                    ));
                }
                let root = open(parent)?;
                let mut x = Extract::new(root.as_fd(), "/", Owner::Entry);
                x.put(&file_entry(PathBuf::from(name), st), file)
                    .map_err(err)?;
                x.finish().map_err(err)
            }
        }
    }

    /// The tree `--from` names: a stage's result or an image, opened read-only.
    fn source_tree(&self, from: &str) -> Result<(Tree, String, Option<Workspace>), BuildError> {
        let state = match self.b.stage_ref(from, self.index) {
            Some(i) => self.b.stage(i)?,
            None if self.b.df.stages[self.index].name.as_deref()
                == Some(from.to_ascii_lowercase().as_str()) =>
            {
                return Err(other!(
                    "invalid from flag value {from}: refers to the current stage"
                ))
            }
            None => {
                let id = self.base_image(from).map_err(|_| {
                    other!("invalid from flag value {from}: no stage or image of that name")
                })?;
                State::of_image(self.engine(), &id, format!("image {id}"))?
            }
        };
        let key = state.key.clone();
        if state.layers.is_empty() {
            return Ok((Tree::image(None), key, None));
        }
        let ws = Workspace::open(self.engine(), &state)?;
        let root = ws
            .root()
            .try_clone_to_owned()
            .map_err(|e| other!("--from={from}: {e}"))?;
        Ok((Tree::image(Some(root)), key, Some(ws)))
    }

    fn copy(&mut self, c: CopyStep) -> Result<(), BuildError> {
        if let Some(url) = c.sources.iter().find(|s| {
            s.starts_with("http://") || s.starts_with("https://") || s.starts_with("git@")
        }) {
            return Err(other!(
                "{} of a remote source ({url}) is not supported yet",
                c.name
            ));
        }
        if c.sources.is_empty() && c.heredocs.is_empty() {
            return Err(other!("{} needs a source", c.name));
        }
        let (from_tree, from_key, _from_ws) = match &c.from {
            Some(from) => {
                let (tree, key, ws) = self.source_tree(from)?;
                (Some(tree), key, ws)
            }
            None => (None, String::new(), None),
        };
        let tree_ref: &Tree = from_tree.as_ref().unwrap_or(&self.b.context);
        // `--exclude`: a file source by its name, a directory's contents by their path
        // below it.
        let exclude = if c.exclude.is_empty() {
            None
        } else {
            Some(IgnoreRules::from_patterns(c.exclude.iter().map(String::as_str)).map_err(err)?)
        };
        let mut items = Vec::new();
        // Per item, its path under the destination with `--parents`.
        let mut kept = Vec::new();
        for src in &c.sources {
            for item in tree_ref.find(std::slice::from_ref(src))? {
                if matches!(item, Item::File { .. })
                    && exclude
                        .as_ref()
                        .is_some_and(|e| e.is_excluded(&item.base()))
                {
                    continue;
                }
                kept.push(kept_path(src, item.rel()));
                items.push(item);
            }
        }
        if items.is_empty() && c.heredocs.is_empty() {
            return Err(other!("no source files were specified: all are --excluded"));
        }

        // What the step reads, for its cache key.
        let mut sum = Checksum::default();
        sum.add(from_key.as_bytes());
        sum_items(&mut sum, tree_ref, &mut items, exclude.as_ref())?;
        let escape = self.b.df.directives.escape;
        let mut docs = Vec::new();
        for h in &c.heredocs {
            let content = if h.expand {
                crate::expand_with_escape(&h.content, escape, &|k| self.lookup(k))
                    .unwrap_or_else(|_| h.content.clone())
            } else {
                h.content.clone()
            };
            sum.add(h.name.as_bytes());
            sum.add(content.as_bytes());
            docs.push((h.name.clone(), content));
        }
        let checksum = sum.finish();
        let mut created_by = c.name.to_string();
        for (flag, v) in [("from", &c.from), ("chown", &c.chown), ("chmod", &c.chmod)] {
            if let Some(v) = v {
                created_by += &format!(" --{flag}={v}");
            }
        }
        let shown: Vec<String> = c
            .sources
            .iter()
            .cloned()
            .chain(c.heredocs.iter().map(|h| format!("<<{}", h.name)))
            .collect();
        for pattern in &c.exclude {
            created_by += &format!(" --exclude={pattern}");
        }
        if c.parents {
            created_by += " --parents";
        }
        if c.link {
            created_by += " --link";
        }
        created_by += &format!(" {} {}", shown.join(" "), c.dest);
        let key = key_of(&self.state.key, &format!("{created_by}\n{checksum}"));
        if self.cached(&key)? {
            return Ok(());
        }
        // A linked layer is the same over any parent: its own key leaves the parent out
        // (not the WORKDIR a relative destination is under). Owner names are looked up
        // in the parent, so a --chown by name keeps the parent in the key.
        let by_name = c
            .chown
            .as_deref()
            .is_some_and(|o| o.split(':').any(|p| p.parse::<u32>().is_err()));
        let link_key = (c.link && !by_name).then(|| {
            key_of(
                "link",
                &format!("{created_by}\n{checksum}\n{}", self.state.workdir()),
            )
        });
        if let Some(link_key) = &link_key {
            if self.relink(link_key, &key, &created_by)? {
                return Ok(());
            }
        }

        let chmod = c
            .chmod
            .as_deref()
            .map(|m| {
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| other!("invalid --chmod={m}: an octal mode is expected"))
            })
            .transpose()?;
        let engine = self.engine();
        let mut blobs = NewBlobs::new(&engine.images);
        // --link writes into an empty tree: nothing of the parent is read or followed.
        let ws = if c.link {
            Workspace::open(engine, &State::scratch())?
        } else {
            Workspace::open(engine, &self.state)?
        };
        let root = ws.root();
        let owner = match &c.chown {
            Some(spec) if c.link => {
                let parent = Workspace::open(engine, &self.state)?;
                chown_ids(parent.root(), spec)?
            }
            Some(spec) => chown_ids(root, spec)?,
            None => (0, 0),
        };
        let dest = if c.dest.starts_with('/') {
            c.dest.clone()
        } else {
            format!("{}/{}", self.state.workdir(), c.dest)
        };
        let dest_abs = clean_abs(&dest);
        let count = items.len() + docs.len();
        let dest_is_dir = open_in_root(
            root,
            Path::new(&dest_abs),
            OFlag::O_PATH | OFlag::O_DIRECTORY,
        )
        .is_ok();
        let into_dir = dest.ends_with('/') || dest.ends_with("/.") || dest_is_dir || c.parents;
        if count > 1 && !into_dir {
            return Err(other!(
                "When using {} with more than one source file, the destination must be a directory and end with a /",
                c.name
            ));
        }
        let rel_of = |p: &str| PathBuf::from(p.trim_start_matches('/'));
        let mut x = Extract::new(root, "/", Owner::Fixed(owner.0, owner.1));
        {
            let mut sink = Chmod {
                inner: &mut x,
                mode: chmod,
                interrupt: &self.b.opts.interrupt,
            };
            for (item, kept) in items.iter_mut().zip(&kept) {
                let base = item.base();
                // With --parents, the source's path (after any `/./`) is kept.
                let under = if c.parents {
                    clean_abs(&format!("{dest_abs}/{kept}"))
                } else {
                    dest_abs.clone()
                };
                match item {
                    Item::Dir { rel, dir } => {
                        mkdir_p(root, &under, owner)?;
                        let rel = rel.clone();
                        tree_ref.walk_dir(
                            &rel,
                            dir.as_fd(),
                            &rel_of(&under),
                            exclude.as_ref(),
                            &mut sink,
                        )?;
                    }
                    Item::File { file, .. } if c.add && archive::is_archive(file) => {
                        mkdir_p(root, &dest_abs, owner)?;
                        let mut tx = Extract::new(root, &dest_abs, Owner::Entry);
                        let stream =
                            archive::open(file).map_err(|e| other!("reading the archive: {e}"))?;
                        read_tar(stream, &mut tx).map_err(err)?;
                        tx.finish().map_err(err)?;
                    }
                    Item::File { file, st, .. } => {
                        let target = if c.parents {
                            under
                        } else if into_dir {
                            format!("{dest_abs}/{base}")
                        } else {
                            dest_abs.clone()
                        };
                        let target = clean_abs(&target);
                        let (parent, _) = target.rsplit_once('/').unwrap_or(("", ""));
                        mkdir_p(root, parent, owner)?;
                        sink.put(&file_entry(rel_of(&target), st), file)
                            .map_err(err)?;
                    }
                }
            }
            for (name, content) in &docs {
                let target = if into_dir {
                    clean_abs(&format!("{dest_abs}/{name}"))
                } else {
                    dest_abs.clone()
                };
                let (parent, _) = target.rsplit_once('/').unwrap_or(("", ""));
                mkdir_p(root, parent, owner)?;
                let entry = Entry {
                    path: rel_of(&target),
                    kind: Kind::File,
                    size: content.len() as u64,
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    mtime: now(),
                    xattrs: vec![],
                };
                sink.put(&entry, &mut content.as_bytes()).map_err(err)?;
            }
        }
        x.finish().map_err(err)?;
        let layer = ws.into_layer(engine, &self.state, &mut blobs)?;
        let parent = self.state.image.clone();
        self.commit(key, created_by, Some(layer), blobs)?;
        if let (Some(link_key), Some(id)) = (link_key, &self.state.image) {
            self.b
                .cache
                .put(&link_key, id, parent.as_ref())
                .map_err(err)?;
        }
        Ok(())
    }

    /// A `--link` step whose layer was made before, over whatever parent: that layer goes
    /// on this state as it is (no file is copied), under the step's own key too.
    fn relink(&mut self, link_key: &str, key: &str, created_by: &str) -> Result<bool, BuildError> {
        if self.b.opts.no_cache {
            return Ok(false);
        }
        let Some(made) = self.b.cache.get(link_key).map_err(err)? else {
            return Ok(false);
        };
        let Ok((layers, _)) = layers_of(&self.engine().images, &made) else {
            return Ok(false);
        };
        let Some(mut layer) = layers.last().cloned() else {
            return Ok(false);
        };
        // The media type follows this image's manifest, Docker's or OCI's.
        let media_type = match (self.state.docker, layer.descriptor["mediaType"].as_str()) {
            (true, Some(image::manifest::OCI_LAYER_GZIP)) => image::manifest::DOCKER_LAYER_GZIP,
            (false, Some(image::manifest::DOCKER_LAYER_GZIP)) => image::manifest::OCI_LAYER_GZIP,
            (_, Some(t)) => t,
            (_, None) => return Ok(false),
        }
        .to_string();
        layer.descriptor["mediaType"] = json!(media_type);
        self.b.progress.line(" ---> Using cache (linked layer)");
        let blobs = NewBlobs::new(&self.engine().images);
        self.commit(key.to_string(), created_by.to_string(), Some(layer), blobs)?;
        Ok(true)
    }
}

/// Adds what `items` hold (each one's path, then its entries with content) to `sum`, and
/// leaves file sources at their start for reading again.
fn sum_items(
    sum: &mut Checksum,
    tree: &Tree,
    items: &mut [Item],
    exclude: Option<&IgnoreRules>,
) -> Result<(), BuildError> {
    for item in items {
        sum.add(item.rel().as_bytes());
        match item {
            Item::File { file, st, .. } => {
                sum.put(&file_entry(PathBuf::new(), st), file)
                    .map_err(err)?;
                file.rewind()
                    .map_err(|e| other!("reading the source: {e}"))?;
            }
            Item::Dir { rel, dir } => {
                let rel = rel.clone();
                tree.walk_dir(&rel, dir.as_fd(), Path::new(""), exclude, sum)?;
            }
        }
    }
    Ok(())
}

/// COPY `--parents`: the part of a source's path that is kept under the destination,
/// all of it, or what follows a `/./` pivot in the source as written.
fn kept_path(source: &str, rel: &str) -> String {
    let rel = if rel == "." { "" } else { rel };
    let raw = source.trim_start_matches("./");
    let Some((before, _)) = raw.split_once("/./") else {
        return rel.to_string();
    };
    let prefix = crate::ignore::clean_path(before);
    let prefix = prefix.trim_start_matches('/');
    match rel.strip_prefix(prefix) {
        Some(rest) if prefix.is_empty() || rest.is_empty() || rest.starts_with('/') => {
            rest.trim_start_matches('/').to_string()
        }
        _ => rel.to_string(),
    }
}

/// The arguments of a COPY or ADD.
struct CopyStep {
    name: &'static str,
    sources: Vec<String>,
    dest: String,
    from: Option<String>,
    chown: Option<String>,
    chmod: Option<String>,
    heredocs: Vec<Heredoc>,
    exclude: Vec<String>,
    parents: bool,
    /// `--link`: copied into an empty tree, a layer that does not depend on the parent.
    link: bool,
    add: bool,
}

/// Applies `--chmod` to what goes through (not to symlinks).
/// Stops at the first entry after an interrupt, so a large COPY ends at once too.
struct Chmod<'a> {
    inner: &'a mut dyn Sink,
    mode: Option<u32>,
    interrupt: &'a Interrupt,
}

impl Sink for Chmod<'_> {
    fn put(&mut self, e: &Entry, data: &mut dyn Read) -> engine::fs::Result<()> {
        if self.interrupt.is_set() {
            return Err(engine::fs::FsError::Invalid("interrupted".into()));
        }
        match self.mode {
            Some(mode) if !matches!(e.kind, Kind::Symlink(_) | Kind::HardLink(_)) => {
                let mut e = e.clone();
                e.mode = mode;
                self.inner.put(&e, data)
            }
            _ => self.inner.put(e, data),
        }
    }
}

/// A RUN container, removed (with its anonymous volumes) however the step ends.
struct Intermediate<'a> {
    engine: &'a Engine,
    id: String,
}

impl Drop for Intermediate<'_> {
    fn drop(&mut self) {
        if let Ok(c) = self.engine.find(&self.id) {
            let _ = self.engine.remove(&c, true, true);
        }
    }
}

/// A fresh upper directory over a state's layers, for COPY, ADD and WORKDIR: the merged
/// tree is a detached overlay (in no mount table, gone with its fd), or the upper
/// directory itself when there are no layers yet. The directory goes on drop.
struct Workspace {
    // Fields drop in order: the mount before the directories under it.
    root: OwnedFd,
    upper: OwnedFd,
    _dir: StepDir,
}

impl Workspace {
    fn open(engine: &Engine, state: &State) -> Result<Workspace, BuildError> {
        let dir = scratch_dir(engine)?;
        let (upper, work) = (dir.path().join("upper"), dir.path().join("work"));
        for d in [&upper, &work] {
            std::fs::create_dir(d).map_err(|e| other!("{}: {e}", d.display()))?;
        }
        let open_dir = |p: &Path| {
            nix::fcntl::open(
                p,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| other!("{}: {e}", p.display()))
        };
        let root = match &state.image {
            Some(id) if !state.layers.is_empty() => {
                let lowers = engine.images.rootfs_layers(id).map_err(err)?;
                image::snapshot::overlay_detached(&lowers, Some((&upper, &work)), dir.path())
                    .map_err(err)?
            }
            _ => open_dir(&upper)?,
        };
        Ok(Workspace {
            root,
            upper: open_dir(&upper)?,
            _dir: dir,
        })
    }

    fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// The upper directory as the step's layer; the directory itself then becomes the
    /// layer's snapshot (over `state`'s layers), so the next step's container mounts it
    /// as it is instead of unpacking the blob just written.
    fn into_layer(
        self,
        engine: &Engine,
        state: &State,
        blobs: &mut NewBlobs,
    ) -> Result<Layer, BuildError> {
        let layer = write_layer(blobs, self.upper.as_fd(), None, state.docker).map_err(err)?;
        let Workspace {
            root,
            upper,
            _dir: dir,
        } = self;
        // The overlay goes before its upper directory is moved.
        drop(root);
        drop(upper);
        adopt(engine, state, &layer, &dir.path().join("upper"))?;
        Ok(layer)
    }
}

/// Keeps `dir`, the upper directory `layer` was just made from, as the layer's snapshot
/// on top of `state`'s layers. When the chain has a snapshot already, or the directory
/// cannot be one, it is left for the caller to delete (and the layer is unpacked from
/// its blob if a container needs it).
fn adopt(engine: &Engine, state: &State, layer: &Layer, dir: &Path) -> Result<(), BuildError> {
    let mut diff_ids: Vec<Digest> = state.layers.iter().map(|l| l.diff_id.clone()).collect();
    diff_ids.push(layer.diff_id.clone());
    let Some(chain) = image::meta::chain_ids(&diff_ids).pop() else {
        return Ok(());
    };
    engine
        .images
        .snapshots
        .adopt(&chain, &layer.diff_id, dir)
        .map_err(err)?;
    Ok(())
}

/// In a step directory: the id of the step's RUN container.
const CONTAINER_FILE: &str = "container";

/// A fresh directory `<root>/build/step-*` for one step, deleted when dropped. It holds an
/// flock on itself while it lives, so one that a killed build left is told apart from one
/// in use ([`clean_stale`]).
pub struct StepDir {
    // Fields drop in order: the directory goes while still locked.
    dir: tempfile::TempDir,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl StepDir {
    pub fn new(engine: &Engine) -> Result<StepDir, BuildError> {
        scratch_dir(engine)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn scratch_dir(engine: &Engine) -> Result<StepDir, BuildError> {
    use std::os::unix::fs::MetadataExt;
    let base = engine.root.join("build");
    std::fs::create_dir_all(&base).map_err(|e| other!("{}: {e}", base.display()))?;
    loop {
        let dir = tempfile::Builder::new()
            .prefix("step-")
            .tempdir_in(&base)
            .map_err(|e| other!("{}: {e}", base.display()))?;
        let file =
            std::fs::File::open(dir.path()).map_err(|e| other!("{}: {e}", dir.path().display()))?;
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| other!("locking {}: {e}", dir.path().display()))?;
        // A cleaner may have taken it for stale between the mkdir and the lock.
        let same = match (std::fs::metadata(dir.path()), lock.metadata()) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if same {
            return Ok(StepDir { dir, _lock: lock });
        }
    }
}

/// Removes the step directories of builds that were killed (no process holds their
/// lock), and the RUN containers recorded in them. Returns how many directories went.
pub fn clean_stale(engine: &Engine) -> Result<usize, BuildError> {
    let base = engine.root.join("build");
    let entries = match std::fs::read_dir(&base) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(other!("{}: {e}", base.display())),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| other!("{}: {e}", base.display()))?;
        if !entry.file_name().to_string_lossy().starts_with("step-") {
            continue;
        }
        let path = entry.path();
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        let Ok(_lock) = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        else {
            continue;
        };
        if let Ok(id) = std::fs::read_to_string(path.join(CONTAINER_FILE)) {
            if let Ok(c) = engine.find(id.trim()) {
                engine.remove(&c, true, true).map_err(err)?;
            }
        }
        std::fs::remove_dir_all(&path).map_err(|e| other!("{}: {e}", path.display()))?;
        removed += 1;
    }
    Ok(removed)
}

/// Makes `path` (absolute, in `root`) and the directories above it that are missing,
/// owned by `owner`; symlinks on the way resolve inside `root`.
fn mkdir_p(root: BorrowedFd, path: &str, owner: (u32, u32)) -> Result<(), BuildError> {
    let mut cur = PathBuf::from("/");
    let mut fd = open_in_root(root, &cur, OFlag::O_PATH | OFlag::O_DIRECTORY)
        .map_err(|e| other!("opening the root: {e}"))?;
    for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
        cur.push(part);
        fd = match open_in_root(root, &cur, OFlag::O_PATH | OFlag::O_DIRECTORY) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                match nix::sys::stat::mkdirat(
                    &fd,
                    part,
                    nix::sys::stat::Mode::from_bits_truncate(0o755),
                ) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(other!("creating {}: {e}", cur.display())),
                }
                nix::unistd::fchownat(
                    &fd,
                    part,
                    Some(nix::unistd::Uid::from_raw(owner.0)),
                    Some(nix::unistd::Gid::from_raw(owner.1)),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| other!("chown {}: {e}", cur.display()))?;
                open_in_root(root, &cur, OFlag::O_PATH | OFlag::O_DIRECTORY)
                    .map_err(|e| other!("opening {}: {e}", cur.display()))?
            }
            Err(Errno::ENOTDIR) => return Err(other!("{} is not a directory", cur.display())),
            Err(e) => return Err(other!("opening {}: {e}", cur.display())),
        };
    }
    Ok(())
}

/// `--chown=user[:group]`, names looked up in the destination's /etc/passwd and /etc/group.
fn chown_ids(root: BorrowedFd, spec: &str) -> Result<(u32, u32), BuildError> {
    let users = engine::user::RootfsUsers::from_fd(
        root.try_clone_to_owned()
            .map_err(|e| other!("--chown: {e}"))?,
    );
    // A user alone: its primary group for a name, the same number for a uid (Docker).
    let spec = match spec.split_once(':') {
        None if spec.parse::<u32>().is_ok() => format!("{spec}:{spec}"),
        _ => spec.to_string(),
    };
    let u = engine::user::resolve(&spec, &[], &users).map_err(|e| other!("--chown={spec}: {e}"))?;
    Ok((u.uid, u.gid))
}

/// A RUN's shell text with its here-documents: `RUN <<EOF` alone runs the body as the
/// script; otherwise the bodies follow the line, for the shell to read as here-documents.
fn shell_script(text: &str, heredocs: &[Heredoc]) -> String {
    if let [only] = heredocs {
        let marker = text.trim();
        let bare = marker.trim_start_matches("<<").trim_start_matches('-');
        let bare = bare.trim_matches(|c| c == '"' || c == '\'');
        if marker.starts_with("<<") && bare == only.name {
            return only.content.clone();
        }
    }
    let mut script = text.to_string();
    for h in heredocs {
        script.push('\n');
        script.push_str(&h.content);
        script.push_str(&h.name);
    }
    script
}

/// An ONBUILD step's trigger as the config keeps it: the text after `ONBUILD`, with any
/// here-document bodies after it.
fn onbuild_text(step: &Step) -> String {
    let text = step
        .original
        .split_once(char::is_whitespace)
        .map_or("", |(_, rest)| rest)
        .trim()
        .to_string();
    let mut text = text;
    if let Instruction::Onbuild(inner) = &step.instruction {
        let docs: &[Heredoc] = match inner.as_ref() {
            Instruction::Run(r) => &r.heredocs,
            Instruction::Copy(c) => &c.heredocs,
            Instruction::Add(a) => &a.heredocs,
            _ => &[],
        };
        for h in docs {
            text.push('\n');
            text.push_str(&h.content);
            text.push_str(&h.name);
        }
    }
    text
}

fn pairs(kv: &[(String, String)]) -> String {
    kv.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// EXPOSE's `80`, `80/udp`, `8000-8002/tcp` as the config's `port/proto` keys.
fn expose_ports(ports: &[String]) -> Result<Vec<String>, BuildError> {
    let mut out = Vec::new();
    for p in ports {
        let (range, proto) = p.split_once('/').unwrap_or((p, "tcp"));
        let proto = proto.to_ascii_lowercase();
        if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
            return Err(other!("invalid proto: {proto}"));
        }
        let (lo, hi) = range.split_once('-').unwrap_or((range, range));
        let parse = |s: &str| {
            s.parse::<u16>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| other!("invalid containerPort: {range}"))
        };
        let (lo, hi) = (parse(lo)?, parse(hi)?);
        if hi < lo {
            return Err(other!("invalid range specified for containerPort: {range}"));
        }
        for n in lo..=hi {
            out.push(format!("{n}/{proto}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instructions::Heredoc;

    fn doc(name: &str, content: &str) -> Heredoc {
        Heredoc {
            name: name.into(),
            content: content.into(),
            expand: true,
            strip_tabs: false,
        }
    }

    #[test]
    fn heredocs_become_the_script_or_follow_the_line() {
        assert_eq!(
            shell_script("<<EOF", &[doc("EOF", "echo a\necho b\n")]),
            "echo a\necho b\n"
        );
        assert_eq!(shell_script("<<-'EOF'", &[doc("EOF", "x\n")]), "x\n");
        assert_eq!(
            shell_script("cat <<A > /f", &[doc("A", "body\n")]),
            "cat <<A > /f\nbody\nA"
        );
        assert_eq!(shell_script("echo plain", &[]), "echo plain");
    }

    #[test]
    fn parents_keep_the_path_after_a_pivot() {
        assert_eq!(kept_path("a/b/c.txt", "a/b/c.txt"), "a/b/c.txt");
        assert_eq!(kept_path("./a/./b/*.txt", "a/b/c.txt"), "b/c.txt");
        assert_eq!(kept_path("/a/b/./c", "a/b/c"), "c");
        assert_eq!(kept_path("./x/*", "x/y"), "x/y");
        assert_eq!(kept_path(".", "."), "");
    }

    #[test]
    fn expose_takes_protocols_and_ranges() {
        assert_eq!(
            expose_ports(&["80".into(), "53/UDP".into(), "8000-8002/tcp".into()]).unwrap(),
            ["80/tcp", "53/udp", "8000/tcp", "8001/tcp", "8002/tcp"]
        );
        for bad in ["0", "http", "80/icmp", "9-8"] {
            assert!(expose_ports(&[bad.into()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_chain_on_the_parent_and_the_text() {
        let a = key_of("image x", "ENV A=1");
        assert_eq!(a, key_of("image x", "ENV A=1"));
        assert_ne!(a, key_of("image y", "ENV A=1"));
        assert_ne!(a, key_of("image x", "ENV A=2"));
        assert_ne!(
            key_of(&a, "RUN x"),
            key_of(&key_of("image x", "ENV A=2"), "RUN x")
        );
    }

    #[test]
    fn onbuild_triggers_keep_their_text_and_heredocs() {
        let df = parse("FROM a\nONBUILD RUN echo hi\nONBUILD COPY <<F /f\nbody\nF\n").unwrap();
        let steps = &df.stages[0].steps;
        assert_eq!(onbuild_text(&steps[0]), "RUN echo hi");
        let text = onbuild_text(&steps[1]);
        assert_eq!(text, "COPY <<F /f\nbody\nF");
        // It parses back into the same instruction.
        let again = parse(&format!("FROM a\n{text}\n")).unwrap();
        let Instruction::Onbuild(inner) = &steps[1].instruction else {
            panic!()
        };
        assert_eq!(&again.stages[0].steps[0].instruction, inner.as_ref());
    }
}
