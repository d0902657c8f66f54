//! `berth info`: what `docker info` reports, for the parts berth has: the store's
//! containers and images, where things live, the runtime, cgroups, the kernel and machine.

use crate::containers::open_engine;
use crate::App;
use anyhow::Result;
use clap::Args;
use engine::store::State;
use serde_json::{json, Value};

#[derive(Args)]
pub struct InfoArgs {
    /// Format output using a Go template, or "json"
    #[arg(short, long)]
    pub format: Option<String>,
}

pub fn info(app: &App, a: &InfoArgs) -> Result<i32> {
    let engine = open_engine(app)?;
    let mut containers = Vec::new();
    for c in engine.store.list()? {
        containers.push(engine.reconcile(c)?);
    }
    let count = |f: &dyn Fn(State) -> bool| containers.iter().filter(|c| f(c.state)).count();
    let running = count(&|s| s == State::Running);
    let paused = count(&|s| s == State::Paused);
    let images = engine.images.meta.list()?.len();
    let layout = cgroups::Layout::detect().ok();
    let uts = nix::sys::utsname::uname()?;
    let mem_total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?.to_string();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024);
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into());
    // The runc-compatible runtimes `--runtime NAME` finds here.
    let runtimes: serde_json::Map<String, Value> = ["berth-runtime", "runc", "crun", "youki"]
        .iter()
        .filter_map(|n| {
            let path = engine::container::resolve_runtime(n).ok()?;
            Some((n.to_string(), json!({"path": path})))
        })
        .collect();
    let v = json!({
        "ID": "",
        "Containers": containers.len(),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": containers.len() - running - paused,
        "Images": images,
        "Driver": "overlay2",
        "DockerRootDir": app.root,
        "ExecRoot": app.runroot,
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": match &layout {
            Some(l) if l.is_v2() => "2",
            Some(_) => "1",
            None => "",
        },
        "DefaultRuntime": engine.default_runtime,
        "Runtimes": runtimes,
        "LoggingDriver": "json-file",
        "KernelVersion": uts.release().to_string_lossy(),
        "OperatingSystem": os,
        "OSType": "linux",
        "Architecture": uts.machine().to_string_lossy(),
        "NCPU": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "MemTotal": mem_total,
        "Name": uts.nodename().to_string_lossy(),
        "ServerVersion": env!("CARGO_PKG_VERSION"),
    });
    match a.format.as_deref() {
        Some("json") => println!("{}", serde_json::to_string(&v)?),
        Some(f) => crate::format::print_inspect(vec![v], Some(f))?,
        None => print!("{}", text(&v)),
    }
    Ok(0)
}

/// Docker's human layout of the same fields.
fn text(v: &Value) -> String {
    let s = |k: &str| match &v[k] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mem = v["MemTotal"].as_u64().unwrap_or(0) as f64 / (1u64 << 30) as f64;
    format!(
        "Server:
 Containers: {}
  Running: {}
  Paused: {}
  Stopped: {}
 Images: {}
 Server Version: {}
 Storage Driver: {}
 Logging Driver: {}
 Cgroup Driver: {}
 Cgroup Version: {}
 Runtimes: {}
 Default Runtime: {}
 Kernel Version: {}
 Operating System: {}
 OSType: linux
 Architecture: {}
 CPUs: {}
 Total Memory: {mem:.2}GiB
 Name: {}
 Docker Root Dir: {}
",
        s("Containers"),
        s("ContainersRunning"),
        s("ContainersPaused"),
        s("ContainersStopped"),
        s("Images"),
        s("ServerVersion"),
        s("Driver"),
        s("LoggingDriver"),
        s("CgroupDriver"),
        s("CgroupVersion"),
        v["Runtimes"]
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
        s("DefaultRuntime"),
        s("KernelVersion"),
        s("OperatingSystem"),
        s("Architecture"),
        s("NCPU"),
        s("Name"),
        s("DockerRootDir"),
    )
}
