//! `berth volume create|ls|inspect|rm|prune` with docker's flags and output, and the
//! `Mounts` of `container inspect`.

use crate::containers::open_engine;
use crate::format::{render, render_named, Format};
use crate::units::human_size_with_precision;
use crate::App;
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use engine::container::Engine;
use engine::flags::MountSpec;
use engine::store::Container;
use engine::volumes::{NewVolume, Volume, LOCAL};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};

#[derive(Subcommand)]
#[command(defer = true)]
pub enum VolumeCmd {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes
    Inspect(InspectArgs),
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove unused local volumes
    Prune(PruneArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// Specify volume driver name
    #[arg(short, long, default_value = LOCAL)]
    pub driver: String,
    /// Specify volume name
    #[arg(long, hide = true)]
    pub name: Option<String>,
    /// Set metadata for a volume
    #[arg(long)]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short, long)]
    pub opt: Vec<String>,
    pub volume: Option<String>,
}

#[derive(Args)]
pub struct LsArgs {
    /// Only display volume names
    #[arg(short, long)]
    pub quiet: bool,
    /// Provide filter values (e.g. "dangling=true")
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub volumes: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Force the removal of one or more volumes
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub volumes: Vec<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (e.g. "label=<label>")
    #[arg(long)]
    pub filter: Vec<String>,
}

pub fn volume_cmd(app: &App, c: &VolumeCmd) -> Result<i32> {
    match c {
        VolumeCmd::Create(a) => create(app, a),
        VolumeCmd::Ls(a) => ls(app, a),
        VolumeCmd::Inspect(a) => inspect(app, a),
        VolumeCmd::Rm(a) => rm(app, a),
        VolumeCmd::Prune(a) => prune(app, a),
    }
}

/// Errors the daemon would have answered, printed as docker prints them.
fn daemon_error(e: impl std::fmt::Display) -> i32 {
    eprintln!("Error response from daemon: {e}");
    1
}

/// `KEY=VALUE` or `KEY` (an empty value), as docker's map options read them.
fn key_values(items: &[String]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|i| match i.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (i.clone(), String::new()),
        })
        .collect()
}

fn create(app: &App, a: &CreateArgs) -> Result<i32> {
    if a.name.is_some() && a.volume.is_some() {
        bail!("Conflicting options: either specify --name or provide positional arg, not both");
    }
    let engine = open_engine(app)?;
    let req = NewVolume {
        name: a.name.clone().or_else(|| a.volume.clone()),
        driver: Some(a.driver.clone()),
        labels: key_values(&a.label),
        options: key_values(&a.opt),
    };
    match engine.volumes.create(req) {
        Ok(v) => {
            println!("{}", v.name);
            Ok(0)
        }
        Err(e) => Ok(daemon_error(e)),
    }
}

/// `--filter KEY=VALUE` as pairs, checked against the keys a command accepts.
pub(crate) fn filters(
    items: &[String],
    accepted: &[&str],
) -> std::result::Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for f in items {
        let Some((k, v)) = f.split_once('=') else {
            return Err(format!("bad format of filter (expected name=value): {f}"));
        };
        if !accepted.contains(&k) {
            return Err(format!("invalid filter '{k}'"));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Docker's label filter: `KEY` present, or `KEY=VALUE` equal.
fn label_matches(labels: &Option<BTreeMap<String, String>>, want: &str) -> bool {
    let labels = labels.as_ref();
    match want.split_once('=') {
        Some((k, v)) => labels.and_then(|l| l.get(k)).is_some_and(|x| x == v),
        None => labels.is_some_and(|l| l.contains_key(want)),
    }
}

fn parse_bool_filter(key: &str, value: &str) -> std::result::Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("invalid filter '{key}={value}'")),
    }
}

/// Names compared as docker's CLI sorts them: runs of digits by value (`v2` before `v10`).
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for ((da, x), (db, y)) in ca.iter().zip(cb.iter()) {
        let ord = if *da && *db {
            let (tx, ty) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
            tx.len().cmp(&ty.len()).then(tx.cmp(ty))
        } else {
            x.cmp(y)
        };
        if ord != std::cmp::Ordering::Equal {
            return ord;
        }
    }
    ca.len().cmp(&cb.len()).then(a.cmp(b))
}

fn labels_text(v: &Volume) -> String {
    v.labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn ls(app: &App, a: &LsArgs) -> Result<i32> {
    let filters = match filters(&a.filter, &["name", "label", "dangling", "driver"]) {
        Ok(f) => f,
        Err(e) => return Ok(daemon_error(e)),
    };
    let mut dangling = None;
    for (k, v) in &filters {
        if k == "dangling" {
            match parse_bool_filter(k, v) {
                Ok(d) => dangling = Some(d),
                Err(e) => return Ok(daemon_error(e)),
            }
        }
    }
    let engine = open_engine(app)?;
    let users = engine.volumes.users()?;
    let any = |key: &str, f: &dyn Fn(&str) -> bool| {
        let values: Vec<&str> = filters
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect();
        values.is_empty() || values.into_iter().any(f)
    };
    let mut list: Vec<Volume> = engine
        .volumes
        .list()?
        .into_iter()
        .filter(|v| {
            // Names match by substring (docker takes a regular expression); labels must
            // all match; drivers any.
            any("name", &|n| v.name.contains(n))
                && any("driver", &|d| v.driver == d)
                && filters
                    .iter()
                    .filter(|(k, _)| k == "label")
                    .all(|(_, l)| label_matches(&v.labels, l))
                && dangling.is_none_or(|d| d != users.contains_key(&v.name))
        })
        .collect();
    list.sort_by(|x, y| natural_cmp(&x.name, &y.name));
    if a.quiet && a.format.is_none() {
        for v in &list {
            println!("{}", v.name);
        }
        return Ok(0);
    }
    let rows: Vec<Map<String, Value>> = list
        .iter()
        .map(|v| {
            let mut m = Map::new();
            m.insert("Name".into(), json!(v.name));
            m.insert("Driver".into(), json!(v.driver));
            m.insert("Scope".into(), json!("local"));
            m.insert(
                "Mountpoint".into(),
                json!(engine.volumes.mountpoint(&v.name)),
            );
            m.insert("Labels".into(), json!(labels_text(v)));
            m.insert("Links".into(), json!("N/A"));
            m.insert("Size".into(), json!("N/A"));
            m
        })
        .collect();
    let fmt = Format::parse(a.format.as_deref());
    let text = render_named(
        &rows,
        &fmt,
        "{{.Driver}}\t{{.Name}}",
        &[("Name", "VOLUME NAME"), ("Mountpoint", "MOUNTPOINT")],
    )?;
    print!("{text}");
    Ok(0)
}

/// Docker's `volume inspect` object.
pub fn inspect_value(engine: &Engine, v: &Volume) -> Value {
    let secs = v.created.div_euclid(1_000_000_000);
    json!({
        "CreatedAt": image::time::format_rfc3339(secs),
        "Driver": v.driver,
        "Labels": v.labels,
        "Mountpoint": engine.volumes.mountpoint(&v.name),
        "Name": v.name,
        "Options": v.options,
        "Scope": "local",
    })
}

/// JSON with docker's four-space indent.
pub(crate) fn pretty(v: &Value) -> Result<String> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    serde::Serialize::serialize(v, &mut ser)?;
    Ok(String::from_utf8(out)?)
}

fn inspect(app: &App, a: &InspectArgs) -> Result<i32> {
    let engine = open_engine(app)?;
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for name in &a.volumes {
        match engine.volumes.get(name) {
            Ok(v) => found.push(inspect_value(&engine, &v)),
            Err(e) => errors.push(e.to_string()),
        }
    }
    match &a.format {
        Some(f) => {
            let fmt = Format::parse(Some(f));
            for v in &found {
                let row = v.as_object().cloned().unwrap_or_default();
                print!("{}", render(&[row], &fmt, "")?);
            }
        }
        None => println!("{}", pretty(&Value::Array(found))?),
    }
    let mut code = 0;
    for e in errors {
        code = daemon_error(e);
    }
    Ok(code)
}

fn rm(app: &App, a: &RmArgs) -> Result<i32> {
    let engine = open_engine(app)?;
    let mut code = 0;
    for name in &a.volumes {
        match engine.volumes.remove(name, a.force) {
            Ok(()) => println!("{name}"),
            Err(e) => code = daemon_error(e),
        }
    }
    Ok(code)
}

const ANONYMOUS_WARNING: &str = "WARNING! This will remove anonymous local volumes not used by at least one container.\nAre you sure you want to continue?";
const ALL_WARNING: &str = "WARNING! This will remove all local volumes not used by at least one container.\nAre you sure you want to continue?";

/// docker's prompt: `[y/N]`, yes only for `y` or `Y`.
pub fn confirm(warning: &str) -> bool {
    print!("{warning} [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    matches!(answer.trim(), "y" | "Y")
}

fn prune(app: &App, a: &PruneArgs) -> Result<i32> {
    let filters = match filters(&a.filter, &["label", "label!", "all"]) {
        Ok(f) => f,
        Err(e) => return Ok(daemon_error(e)),
    };
    let mut all = a.all;
    for (k, v) in &filters {
        if k == "all" {
            if a.all {
                bail!("conflicting options: cannot specify both --all and --filter all=1");
            }
            match parse_bool_filter(k, v) {
                Ok(b) => all = b,
                Err(e) => return Ok(daemon_error(e)),
            }
        }
    }
    let warning = if all { ALL_WARNING } else { ANONYMOUS_WARNING };
    if !a.force && !confirm(warning) {
        println!("Total reclaimed space: 0B");
        return Ok(0);
    }
    let engine = open_engine(app)?;
    let (deleted, reclaimed) = prune_volumes(&engine, all, &filters)?;
    if !deleted.is_empty() {
        println!("Deleted Volumes:");
        for name in &deleted {
            println!("{name}");
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        human_size_with_precision(reclaimed, 4)
    );
    Ok(0)
}

/// The volumes part of `volume prune` and `system prune --volumes`: `label=`/`label!=`
/// filters keep what they exclude.
pub fn prune_volumes(
    engine: &Engine,
    all: bool,
    filters: &[(String, String)],
) -> Result<(Vec<String>, u64)> {
    let keep = |v: &Volume| {
        filters.iter().any(|(k, f)| match k.as_str() {
            "label" => !label_matches(&v.labels, f),
            "label!" => label_matches(&v.labels, f),
            _ => false,
        })
    };
    Ok(engine.volumes.prune(all, &keep)?)
}

/// `container inspect`'s `Mounts`: binds and volumes, by destination.
pub fn container_mounts(engine: &Engine, c: &Container) -> Value {
    let attached: HashMap<String, String> = engine
        .volumes
        .of_container(&c.id)
        .unwrap_or_default()
        .into_iter()
        .map(|a| (a.destination, a.volume))
        .collect();
    let mut out: Vec<(String, Value)> = Vec::new();
    for m in &c.options.run.mounts {
        match m {
            MountSpec::Bind {
                source,
                target,
                read_only,
                propagation,
                ..
            } => out.push((
                target.clone(),
                json!({
                    "Type": "bind",
                    "Source": source,
                    "Destination": target,
                    "Mode": if *read_only { "ro" } else { "" },
                    "RW": !read_only,
                    "Propagation": propagation.as_deref().unwrap_or("rprivate"),
                }),
            )),
            MountSpec::Volume {
                target, read_only, ..
            } => {
                if let Some(name) = attached.get(target) {
                    // The local driver's default mode for -v and --mount volumes is "z".
                    let mode = if *read_only { "ro" } else { "z" };
                    out.push((
                        target.clone(),
                        volume_mount(engine, name, target, mode, !read_only),
                    ));
                }
            }
            MountSpec::Tmpfs { .. } => {}
        }
    }
    // The image's VOLUMEs: no mode of their own.
    for (dest, name) in &attached {
        if !out.iter().any(|(d, _)| d == dest) {
            out.push((dest.clone(), volume_mount(engine, name, dest, "", true)));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Value::Array(out.into_iter().map(|(_, v)| v).collect())
}

fn volume_mount(engine: &Engine, name: &str, dest: &str, mode: &str, rw: bool) -> Value {
    json!({
        "Type": "volume",
        "Name": name,
        "Source": engine.volumes.mountpoint(name),
        "Destination": dest,
        "Driver": LOCAL,
        "Mode": mode,
        "RW": rw,
        "Propagation": "",
    })
}

/// `system df`'s volumes row: (count, in use, size, size of the unused).
pub fn disk_usage(engine: &Engine) -> Result<(usize, usize, u64, u64)> {
    let users = engine.volumes.users()?;
    let list = engine.volumes.list()?;
    let mut active = 0;
    let mut size = 0;
    let mut reclaimable = 0;
    for v in &list {
        let s = engine.volumes.size(&v.name);
        size += s;
        if users.contains_key(&v.name) {
            active += 1;
        } else {
            reclaimable += s;
        }
    }
    Ok((list.len(), active, size, reclaimable))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_naturally() {
        let mut names = vec!["v10", "v2", "a", "v1", "B", "v02x"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(names, vec!["B", "a", "v1", "v2", "v02x", "v10"]);
    }

    #[test]
    fn filters_and_labels() {
        assert_eq!(
            filters(&["x".into()], &["name"]).unwrap_err(),
            "bad format of filter (expected name=value): x"
        );
        assert_eq!(
            filters(&["foo=1".into()], &["name"]).unwrap_err(),
            "invalid filter 'foo'"
        );
        let labels = Some(BTreeMap::from([("a".to_string(), "1".to_string())]));
        assert!(label_matches(&labels, "a"));
        assert!(label_matches(&labels, "a=1"));
        assert!(!label_matches(&labels, "a=2"));
        assert!(!label_matches(&None, "a"));
        assert_eq!(
            parse_bool_filter("dangling", "maybe").unwrap_err(),
            "invalid filter 'dangling=maybe'"
        );
    }
}
