//! `berth build` (Docker's classic builder output) and `berth builder prune`.

use crate::containers::open_engine;
use crate::App;
use anyhow::{bail, Context, Result};
use build::Interrupt;
use clap::{Args, Subcommand};
use image::reference::Reference;
use nix::sys::signal::{SigSet, Signal};
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

// `docker build` flags.
#[derive(Args)]
pub struct BuildArgs {
    /// Name and optionally a tag in the 'name:tag' format
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    pub tags: Vec<String>,
    /// Name of the Dockerfile (default: 'PATH/Dockerfile'; '-' reads it from STDIN)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<String>,
    /// Set build-time variables
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use cache when building the image
    #[arg(long)]
    pub no_cache: bool,
    /// Always attempt to pull a newer version of the image
    #[arg(long)]
    pub pull: bool,
    /// Set metadata for an image
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Set platform if server is multi-platform capable (the host's only)
    #[arg(long)]
    pub platform: Option<String>,
    /// Suppress the build output and print image ID on success
    #[arg(short, long)]
    pub quiet: bool,
    /// Write the image ID to the file
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// The build context: a directory, or '-' for a Dockerfile on STDIN and no context
    #[arg(value_name = "PATH | -")]
    pub context: String,
}

/// Signals that stop a build: its RUN containers are killed and removed, its step
/// directories deleted, nothing tagged.
const STOPPING: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// Takes the stopping signals (blocked before any thread exists, so that only this
/// thread receives them) and interrupts the build with the first: no step starts after
/// it, and the RUN containers running are killed until the build has let go of them
/// (one may be between its creation and its start). A second signal ends the process
/// at once, leaving what is left to the next build's cleaner. Returns the first signal.
fn stop_on_signals(app: &App, interrupt: Arc<Interrupt>) -> Result<Arc<AtomicI32>> {
    let mut set = SigSet::empty();
    for s in STOPPING {
        set.add(s);
    }
    set.thread_block()?;
    let received = Arc::new(AtomicI32::new(0));
    let seen = received.clone();
    let (root, runroot) = (app.root.clone(), app.runroot.clone());
    std::thread::spawn(move || {
        let Ok(sig) = set.wait() else { return };
        seen.store(sig as i32, Ordering::SeqCst);
        interrupt.interrupt();
        // Lives until the process exits with the build's result.
        std::thread::spawn(move || {
            let Ok(engine) = crate::containers::open_engine_at(&root, &runroot) else {
                return;
            };
            loop {
                for id in interrupt.running() {
                    if let Ok(c) = engine.find(&id) {
                        let _ = engine.kill(&c, libc::SIGKILL);
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        });
        if let Ok(again) = set.wait() {
            eprintln!("Error: the build was interrupted");
            std::process::exit(128 + again as i32);
        }
    });
    Ok(received)
}

pub fn build(app: &App, a: &BuildArgs) -> Result<i32> {
    let interrupt = Arc::new(Interrupt::default());
    let received = stop_on_signals(app, interrupt.clone())?;
    let engine = open_engine(app)?;
    // A context that came as a tar on stdin, unpacked for the build.
    let mut _unpacked = None;
    let (dockerfile, context) = if a.context == "-" {
        let mut input = Vec::new();
        std::io::stdin()
            .read_to_end(&mut input)
            .context("reading STDIN")?;
        if build::builder::archive::starts_with_tar(&input[..]) {
            let (dir, text) = unpack_context(&engine, &input, a.file.as_deref())?;
            let context = dir.path().join("context");
            _unpacked = Some(dir);
            (text, Some(context))
        } else {
            if a.file.is_some() {
                bail!("--file cannot be used with a Dockerfile on STDIN ('-')");
            }
            let text = String::from_utf8(input)
                .map_err(|_| anyhow::anyhow!("the Dockerfile on STDIN is not UTF-8 text"))?;
            (text, None)
        }
    } else {
        let dir = PathBuf::from(&a.context);
        if !dir.is_dir() {
            bail!("unable to prepare context: path {:?} not found", a.context);
        }
        let text = match a.file.as_deref() {
            Some("-") => {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("reading the Dockerfile from STDIN")?;
                text
            }
            Some(f) => {
                // As Docker: relative to the current directory, else to the context.
                let p = PathBuf::from(f);
                let p = if p.exists() { p } else { dir.join(f) };
                std::fs::read_to_string(&p)
                    .with_context(|| format!("unable to read the Dockerfile {}", p.display()))?
            }
            None => {
                let p = dir.join("Dockerfile");
                std::fs::read_to_string(&p)
                    .with_context(|| format!("unable to read the Dockerfile {}", p.display()))?
            }
        };
        (text, Some(dir))
    };
    let tags = a
        .tags
        .iter()
        .map(|t| Reference::parse(t).with_context(|| format!("invalid tag {t:?}")))
        .collect::<Result<Vec<_>>>()?;
    let build_args = a
        .build_args
        .iter()
        .filter_map(|kv| match kv.split_once('=') {
            Some((k, v)) => Some((k.to_string(), v.to_string())),
            // `--build-arg NAME` takes the value from our environment, if there.
            None => std::env::var(kv).ok().map(|v| (kv.clone(), v)),
        })
        .collect();
    let labels = a
        .labels
        .iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    let opts = build::BuildOptions {
        dockerfile,
        context,
        tags,
        build_args,
        target: a.target.clone(),
        no_cache: a.no_cache,
        pull: a.pull,
        labels,
        platform: a.platform.clone(),
        quiet: a.quiet,
        interrupt,
    };
    let id = match build::build(&engine, &opts, Box::new(std::io::stdout())) {
        Ok(id) => id,
        Err(e @ build::BuildError::Interrupted) => {
            // As a shell reports a command a signal ended: 128 + the signal.
            let sig = received.load(Ordering::SeqCst);
            return Err(crate::containers::Exit(128 + sig, e.to_string()).into());
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(f) = &a.iidfile {
        std::fs::write(f, id.to_string())
            .with_context(|| format!("writing the image ID to {}", f.display()))?;
    }
    if a.quiet {
        println!("{id}");
    }
    Ok(0)
}

/// A build context sent as a tar (plain or compressed) on stdin, as `docker build -`
/// takes one: unpacked into a step directory of the store (removed with it, or by the
/// next build if this one is killed), with the Dockerfile read from inside it (`-f`,
/// else `Dockerfile`), never through a symlink out of it.
fn unpack_context(
    engine: &engine::container::Engine,
    input: &[u8],
    file: Option<&str>,
) -> Result<(build::builder::StepDir, String)> {
    use engine::fs::extract::{Extract, Owner};
    use nix::fcntl::OFlag;
    use std::os::fd::AsFd;
    let dir = build::builder::StepDir::new(engine)?;
    let root = dir.path().join("context");
    std::fs::create_dir(&root).with_context(|| format!("creating {}", root.display()))?;
    let fd = nix::fcntl::open(
        &root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let stream = build::builder::archive::decompressed(input)?;
    let mut x = Extract::new(fd.as_fd(), "/", Owner::Entry);
    engine::fs::walk::read_tar(stream, &mut x).context("unpacking the context from STDIN")?;
    x.finish().context("unpacking the context from STDIN")?;
    let name = file.unwrap_or("Dockerfile");
    let df =
        engine::fs::resolve::open_in_root(fd.as_fd(), std::path::Path::new(name), OFlag::O_RDONLY)
            .map_err(|e| {
                anyhow::anyhow!("unable to read the Dockerfile {name} in the context: {e}")
            })?;
    let mut text = String::new();
    std::fs::File::from(df)
        .read_to_string(&mut text)
        .with_context(|| format!("reading the Dockerfile {name}"))?;
    Ok((dir, text))
}

#[derive(Subcommand)]
#[command(defer = true)]
pub enum BuilderCmd {
    /// Remove build cache
    Prune(PruneArgs),
}

#[derive(Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

pub fn builder_cmd(app: &App, c: &BuilderCmd) -> Result<i32> {
    match c {
        BuilderCmd::Prune(a) => prune(app, a),
    }
}

/// Forgets the cache and removes the images only it kept (untagged, unused by containers)
/// and the cache mounts of RUN steps.
fn prune(app: &App, a: &PruneArgs) -> Result<i32> {
    if !a.force
        && !crate::volumes::confirm(
            "WARNING! This will remove all dangling build cache.\nAre you sure you want to continue?",
        )
    {
        return Ok(0);
    }
    let engine = open_engine(app)?;
    // Step directories (and their RUN containers) of builds that were killed.
    let mut removed = build::builder::clean_stale(&engine)?;
    let cache = build::builder::cache::Cache::open(engine.images.meta.shared())?;
    let images = cache.clear()?;
    let used: std::collections::HashSet<String> = engine
        .store
        .images_in_use()?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    for id in images {
        let Ok(digest) = id.parse::<image::digest::Digest>() else {
            continue;
        };
        let tagged = !engine.images.meta.tags_of(&digest)?.is_empty();
        if tagged || used.contains(&id) {
            continue;
        }
        if engine.images.meta.delete_image(&digest)?.is_some() {
            removed += 1;
        }
    }
    // RUN --mount=type=cache directories no build is using, as docker's prune removes them.
    removed += build::builder::mounts::prune_caches(&engine.root)?;
    let freed = engine.images.try_gc()?.map_or(0, |r| r.blob_bytes);
    println!("Deleted build cache objects: {removed}");
    println!("Total reclaimed space: {}", crate::units::human_size(freed));
    Ok(0)
}
