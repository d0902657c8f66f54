//! `cp`, `diff`, `export`, `commit`: Docker's command line over `engine::fs`.

use crate::containers::open_engine;
use crate::App;
use anyhow::{bail, Context, Result};
use clap::Args;
use engine::fs::{CommitOptions, CopyFrom, CopyTo, Source};
use image::reference::Reference;
use std::io::{IsTerminal, Write};
use std::path::Path;

#[derive(Args)]
#[command(
    override_usage = "berth cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n       berth cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH"
)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// Suppress progress output during copy. Progress output is automatically suppressed if no terminal is attached
    #[arg(short, long)]
    pub quiet: bool,
    pub source: String,
    pub destination: String,
}

#[derive(Args)]
pub struct DiffArgs {
    pub container: String,
}

#[derive(Args)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub output: Option<String>,
    pub container: String,
}

#[derive(Args)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long)]
    pub author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long)]
    pub change: Vec<String>,
    /// Commit message
    #[arg(short, long)]
    pub message: Option<String>,
    /// Pause container during commit
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub pause: bool,
    pub container: String,
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
}

/// Docker's `splitCpArg`: `CONTAINER:PATH`, unless the argument is a local path (absolute,
/// or starting with `.`, so `./file:name` is a file).
fn split_cp_arg(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.starts_with('.') => (Some(c), p),
        _ => (None, arg),
    }
}

pub fn cp(app: &App, a: &CpArgs) -> Result<i32> {
    if a.source.is_empty() {
        bail!("source can not be empty");
    }
    if a.destination.is_empty() {
        bail!("destination can not be empty");
    }
    let (src_container, src) = split_cp_arg(&a.source);
    let (dst_container, dst) = split_cp_arg(&a.destination);
    // Docker's default: quiet unless stdout is a terminal.
    let quiet = a.quiet || !std::io::stdout().is_terminal();
    let engine = open_engine(app)?;
    let copied = match (src_container, dst_container) {
        (Some(_), Some(_)) => bail!("copying between containers is not supported"),
        (None, None) => bail!("must specify at least one container source"),
        (Some(name), None) => {
            let c = engine.find(name)?;
            let req = CopyFrom {
                source: src,
                dest: (dst != "-").then(|| Path::new(dst)),
                follow: a.follow_link,
            };
            let mut out = std::io::stdout().lock();
            engine::fs::copy_from_container(&engine, &c, name, &req, &mut out)?
        }
        (None, Some(name)) => {
            let c = engine.find(name)?;
            let mut stdin = std::io::stdin().lock();
            let source = if src == "-" {
                Source::Tar(&mut stdin)
            } else {
                Source::Path(Path::new(src))
            };
            let req = CopyTo {
                source,
                dest: dst,
                archive: a.archive,
                follow: a.follow_link,
            };
            engine::fs::copy_to_container(&engine, &c, name, req)?
        }
    };
    if !quiet && copied.dest != "-" {
        eprintln!(
            "Successfully copied {} to {}",
            crate::units::human_size(copied.bytes),
            copied.dest
        );
    }
    Ok(0)
}

pub fn diff(app: &App, a: &DiffArgs) -> Result<i32> {
    let engine = open_engine(app)?;
    let c = engine.find(&a.container)?;
    let mut out = std::io::stdout().lock();
    for change in engine::fs::diff(&engine, &c)? {
        if let Err(e) = writeln!(out, "{change}") {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(0);
            }
            return Err(e.into());
        }
    }
    Ok(0)
}

pub fn export(app: &App, a: &ExportArgs) -> Result<i32> {
    let output = a.output.as_deref().filter(|o| !o.is_empty());
    if output.is_none() && std::io::stdout().is_terminal() {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let engine = open_engine(app)?;
    let c = engine.find(&a.container)?;
    match output {
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            engine::fs::export(&engine, &c, &mut out)?;
        }
        Some(path) => {
            // Written beside the target and renamed: a failed export leaves no half file.
            let target = Path::new(path);
            let dir = target
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !dir.is_dir() {
                bail!(
                    "failed to export container: invalid output path: directory {:?} does not exist",
                    dir.display().to_string()
                );
            }
            let tmp = tempfile::Builder::new()
                .prefix(".berth-export-")
                .tempfile_in(dir)
                .with_context(|| format!("create {path}"))?;
            let mut w = std::io::BufWriter::new(tmp.as_file());
            engine::fs::export(&engine, &c, &mut w)?;
            w.flush()?;
            drop(w);
            tmp.persist(target)
                .with_context(|| format!("write {path}"))?;
        }
    }
    Ok(0)
}

pub fn commit(app: &App, a: &CommitArgs) -> Result<i32> {
    let changes = a
        .change
        .iter()
        .map(|c| crate::images::parse_change(c))
        .collect::<Result<Vec<_>>>()?;
    let reference = a.reference.as_deref().map(Reference::parse).transpose()?;
    if reference.as_ref().is_some_and(|r| r.digest.is_some()) {
        bail!("refusing to create a tag with a digest reference");
    }
    let engine = open_engine(app)?;
    let c = engine.find(&a.container)?;
    let opts = CommitOptions {
        author: a.author.clone(),
        message: a.message.clone(),
        changes,
        pause: a.pause,
        reference,
    };
    let id = engine::fs::commit(&engine, &c, &opts)?;
    println!("{id}");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp_args_split_like_docker() {
        assert_eq!(split_cp_arg("c1:/etc"), (Some("c1"), "/etc"));
        assert_eq!(split_cp_arg("c1:"), (Some("c1"), ""));
        assert_eq!(split_cp_arg("/abs:x"), (None, "/abs:x"));
        assert_eq!(split_cp_arg("./f:x"), (None, "./f:x"));
        assert_eq!(split_cp_arg("file"), (None, "file"));
        assert_eq!(split_cp_arg("-"), (None, "-"));
    }
}
