//! The commands on a running container's processes: `exec`, `attach`, `top`, `stats`
//! and `port` (here and in `exec.rs`, `attach.rs`), with Docker's output and errors.
//! Errors dockerd would return are printed as the docker CLI shows them, "Error
//! response from daemon: …", with exit status 1.

use crate::containers::open_engine;
use crate::format::{render, tabwrite, Format};
use crate::units::{bytes_size, human_size};
use crate::App;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use engine::container::Engine;
use engine::stats::{cpu_percent, memory_percent, Sample};
use engine::store::{Container, State};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

/// Flattened into `berth` and `berth container`.
#[derive(Subcommand)]
#[command(defer = true)]
pub enum ProcCmd {
    /// Execute a command in a running container
    Exec(crate::exec::ExecArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(crate::attach::AttachArgs),
    /// Display the running processes of a container
    Top(TopArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(StatsArgs),
    /// List port mappings or a specific mapping for the container
    Port(PortArgs),
}

pub fn run(app: &App, c: &ProcCmd) -> Result<i32> {
    match c {
        ProcCmd::Exec(a) => crate::exec::exec(app, a),
        ProcCmd::Attach(a) => crate::attach::attach(app, a),
        ProcCmd::Top(a) => top(app, a),
        ProcCmd::Stats(a) => stats(app, a),
        ProcCmd::Port(a) => port(app, a),
    }
}

/// An error of the kind dockerd returns, shown as the docker CLI shows it.
fn daemon_error(e: impl std::fmt::Display) -> i32 {
    eprintln!("Error response from daemon: {e}");
    1
}

#[derive(Args)]
pub struct TopArgs {
    /// The container, then options for ps(1) (default -ef)
    #[arg(
        value_name = "CONTAINER [ps OPTIONS]",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<String>,
}

/// `docker top`: the host's `ps` (default `-ef`), only the lines of processes the
/// container's runtime lists, in a table.
pub fn top(app: &App, a: &TopArgs) -> Result<i32> {
    let name = &a.args[0];
    let ps_args = if a.args.len() > 1 {
        a.args[1..].join(" ")
    } else {
        "-ef".to_string()
    };
    if let Err(e) = check_ps_args(&ps_args) {
        return Ok(daemon_error(e));
    }
    let engine = open_engine(app)?;
    let c = match engine.find(name).and_then(|c| engine.reconcile(c)) {
        Ok(c) => c,
        Err(e) => return Ok(daemon_error(e)),
    };
    match c.state {
        State::Running | State::Paused => {}
        State::Restarting => {
            return Ok(daemon_error(format!(
                "Container {} is restarting, wait until the container is running",
                c.id
            )))
        }
        _ => return Ok(daemon_error(format!("container {} is not running", c.id))),
    }
    let pids = match engine.pids(&c) {
        Ok(p) => p,
        Err(e) => return Ok(daemon_error(e)),
    };
    let output = match run_ps(&ps_args, &pids) {
        Ok(o) => o,
        Err(e) => return Ok(daemon_error(e)),
    };
    let (titles, rows) = match parse_ps(&output, &pids) {
        Ok(t) => t,
        Err(e) => return Ok(daemon_error(e)),
    };
    let mut text = titles.join("\t");
    for r in rows {
        text.push('\n');
        text.push_str(&r.join("\t"));
    }
    print!("{}", tabwrite(&text, 20, 3));
    Ok(0)
}

/// dockerd refuses ps options that rename the PID column (`-o pid=PID`), which would
/// hide which line is which process.
fn check_ps_args(args: &str) -> Result<()> {
    let words: Vec<&str> = args.split_whitespace().collect();
    for (i, w) in words.iter().enumerate().skip(1) {
        let Some(eq) = w.rfind('=') else { continue };
        let key = &w[..eq];
        let value = match &w[eq + 1..] {
            "" => words.get(i + 1).copied().unwrap_or(""),
            v => v,
        };
        if value.starts_with("PID") && key != "pid" {
            bail!("specifying \"{key}={value}\" is not allowed");
        }
    }
    Ok(())
}

/// `ps ARGS -qPID,…` (only those processes, as dockerd asks); some options do not
/// combine with `q`, so without it when that fails.
fn run_ps(args: &str, pids: &[i32]) -> Result<String> {
    let args: Vec<&str> = args.split(' ').collect();
    let only = format!(
        "-q{}",
        pids.iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    if !pids.is_empty() {
        if let Ok(out) = std::process::Command::new("ps")
            .args(&args)
            .arg(&only)
            .output()
        {
            if out.status.success() {
                return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
            }
        }
    }
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("ps")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        match err.lines().next().filter(|l| !l.is_empty()) {
            Some(line) => bail!("ps: {line}"),
            None => bail!("ps: {}", out.status),
        }
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// dockerd's parsePSOutput: the header's titles (the last `PID` column identifies a
/// line), then each line of a listed process, its overhanging fields joined into the
/// last column; thread lines (`-` as PID) follow their process.
fn parse_ps(output: &str, pids: &[i32]) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let mut lines = output.split('\n');
    let titles: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split_ascii_whitespace()
        .map(String::from)
        .collect();
    let Some(pid_col) = titles.iter().rposition(|t| t == "PID") else {
        bail!("Couldn't find PID field in ps output");
    };
    let mut rows = Vec::new();
    let mut in_listed = false;
    for line in lines.filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        let Some(pid) = fields.get(pid_col) else {
            continue;
        };
        let listed = if *pid == "-" {
            in_listed
        } else {
            let p: i32 = pid
                .parse()
                .map_err(|e| anyhow::anyhow!("Unexpected pid '{pid}': {e}"))?;
            in_listed = pids.contains(&p);
            in_listed
        };
        if listed {
            let last = titles.len() - 1;
            let mut row: Vec<String> = fields[..last.min(fields.len())]
                .iter()
                .map(|s| s.to_string())
                .collect();
            row.push(fields.get(last..).map(|f| f.join(" ")).unwrap_or_default());
            rows.push(row);
        }
    }
    Ok((titles, rows))
}

#[derive(Args)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long)]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json' or a Go
    /// template
    #[arg(long)]
    pub format: Option<String>,
    pub containers: Vec<String>,
}

const STATS_TABLE: &str =
    "{{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

/// dockerd's stats interval: CPU % is the share of the host's CPU time over it.
const INTERVAL: Duration = Duration::from_secs(1);

/// `docker stats`: one row per container, CPU % over the last second; with
/// `--no-stream` once, else redrawn every second until interrupted. Without names:
/// the running containers (all with `-a`), as they come and go.
pub fn stats(app: &App, a: &StatsArgs) -> Result<i32> {
    let engine = open_engine(app)?;
    let fmt = Format::parse(a.format.as_deref());
    // Named containers are looked up once, as the docker CLI subscribes to each.
    let mut named = Vec::new();
    let mut missing = false;
    for name in &a.containers {
        match engine.find(name) {
            Ok(c) => named.push((name.clone(), c.id)),
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                missing = true;
            }
        }
    }
    if missing {
        return Ok(1);
    }
    let mut prev: HashMap<String, Sample> = HashMap::new();
    for (_, c) in watched(&engine, a, &named)? {
        if let Some(c) = c {
            prev.insert(c.id.clone(), engine.stats(&c)?);
        }
    }
    let mut out = std::io::stdout();
    loop {
        std::thread::sleep(INTERVAL);
        let mut rows = Vec::new();
        for (label, c) in watched(&engine, a, &named)? {
            let row = match c {
                Some(c) => {
                    let cur = engine.stats(&c)?;
                    let cpu = prev.get(&c.id).map_or(0.0, |p| cpu_percent(p, &cur));
                    let row = stats_row(&label, &c, cpu, &cur, a.no_trunc);
                    prev.insert(c.id.clone(), cur);
                    row
                }
                None => invalid_row(&label),
            };
            rows.push(row);
        }
        let mut text = String::new();
        if !a.no_stream {
            text.push_str("\x1b[2J\x1b[H");
        }
        text.push_str(&stats_text(&rows, &fmt)?);
        if out
            .write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            return Ok(0);
        }
        if a.no_stream {
            return Ok(0);
        }
    }
}

/// The rows to show now: each named container (None once it is gone), or the live
/// containers (all with `-a`) labelled by short ID.
fn watched(
    engine: &Engine,
    a: &StatsArgs,
    named: &[(String, String)],
) -> Result<Vec<(String, Option<Container>)>> {
    if !named.is_empty() {
        return Ok(named
            .iter()
            .map(|(label, id)| {
                let c = engine.find(id).and_then(|c| engine.reconcile(c)).ok();
                (label.clone(), c)
            })
            .collect());
    }
    let mut out = Vec::new();
    for c in engine.store.list()? {
        let c = engine.reconcile(c)?;
        if a.all || matches!(c.state, State::Running | State::Paused) {
            out.push((c.id[..12].to_string(), Some(c)));
        }
    }
    Ok(out)
}

fn stats_row(
    label: &str,
    c: &Container,
    cpu: f64,
    s: &Sample,
    no_trunc: bool,
) -> Map<String, Value> {
    let id = if no_trunc { &c.id[..] } else { &c.id[..12] };
    let mut m = Map::new();
    m.insert("Container".into(), json!(label));
    m.insert("Name".into(), json!(c.name));
    m.insert("ID".into(), json!(id));
    m.insert("CPUPerc".into(), json!(format!("{cpu:.2}%")));
    m.insert(
        "MemUsage".into(),
        json!(format!(
            "{} / {}",
            bytes_size(s.memory),
            bytes_size(s.memory_limit)
        )),
    );
    m.insert(
        "MemPerc".into(),
        json!(format!("{:.2}%", memory_percent(s))),
    );
    m.insert(
        "NetIO".into(),
        json!(format!(
            "{} / {}",
            human_size(s.net_rx),
            human_size(s.net_tx)
        )),
    );
    m.insert(
        "BlockIO".into(),
        json!(format!(
            "{} / {}",
            human_size(s.block_read),
            human_size(s.block_write)
        )),
    );
    m.insert("PIDs".into(), json!(s.pids.to_string()));
    m
}

/// A container whose stats cannot be read any more (removed meanwhile).
fn invalid_row(label: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("Container".into(), json!(label));
    m.insert("Name".into(), json!("--"));
    m.insert("ID".into(), json!(""));
    for k in ["CPUPerc", "MemPerc", "NetIO", "BlockIO", "PIDs"] {
        m.insert(k.into(), json!("--"));
    }
    m.insert("MemUsage".into(), json!("-- / --"));
    m
}

/// The docker CLI's stats table: its own headers ("CPU %", "MEM USAGE / LIMIT"), which a
/// `table` template shows through the template itself, as Go's formatter does.
fn stats_text(rows: &[Map<String, Value>], fmt: &Format) -> Result<String> {
    let (table, text) = match fmt {
        Format::Json => return render(rows, fmt, ""),
        Format::Default => (true, STATS_TABLE.to_string()),
        Format::Template { table, text } => (*table, text.clone()),
    };
    let plain = Format::Template {
        table: false,
        text: text.clone(),
    };
    if !table {
        return render(rows, &plain, "");
    }
    let mut header = Map::new();
    for (k, v) in [
        ("Container", "CONTAINER"),
        ("Name", "NAME"),
        ("ID", "CONTAINER ID"),
        ("CPUPerc", "CPU %"),
        ("MemUsage", "MEM USAGE / LIMIT"),
        ("MemPerc", "MEM %"),
        ("NetIO", "NET I/O"),
        ("BlockIO", "BLOCK I/O"),
        ("PIDs", "PIDS"),
    ] {
        header.insert(k.into(), json!(v));
    }
    let mut lines = render(&[header], &plain, "")?;
    lines.push_str(&render(rows, &plain, "")?);
    Ok(tabwrite(&lines, 10, 3))
}

#[derive(Args)]
pub struct PortArgs {
    pub container: String,
    /// PRIVATE_PORT[/PROTO]
    pub port: Option<String>,
}

/// `docker port`: the container's published ports, or where one private port is
/// published.
pub fn port(app: &App, a: &PortArgs) -> Result<i32> {
    let engine = open_engine(app)?;
    let c = match engine.find(&a.container) {
        Ok(c) => c,
        Err(e) => return Ok(daemon_error(e)),
    };
    let bindings = engine.port_pairs(&c);
    let mut out: Vec<String> = match &a.port {
        Some(spec) => {
            let (port, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
            let proto = if proto.is_empty() { "tcp" } else { proto };
            if let Err(why) = port.parse::<u16>() {
                let why = match why.kind() {
                    std::num::IntErrorKind::PosOverflow => "value out of range",
                    _ => "invalid syntax",
                };
                eprintln!(
                    "Error: invalid port ({port}): strconv.ParseUint: parsing \"{port}\": {why}"
                );
                return Ok(1);
            }
            let key = format!("{port}/{proto}");
            let hosts: Vec<String> = bindings
                .iter()
                .filter(|(private, _)| *private == key)
                .map(|(_, host)| host.clone())
                .collect();
            if hosts.is_empty() {
                eprintln!(
                    "Error: No public port '{spec}' published for {}",
                    a.container
                );
                return Ok(1);
            }
            hosts
        }
        None => bindings
            .iter()
            .map(|(private, host)| format!("{private} -> {host}"))
            .collect(),
    };
    out.sort();
    for line in out {
        println!("{line}");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PS: &str = "UID          PID    PPID  C STIME TTY          TIME CMD\n\
        root           1       0  0 10:00 ?        00:00:01 /sbin/init\n\
        root         100       1  0 10:01 ?        00:00:00 sleep 1000 with args\n\
        root         101     100  0 10:01 pts/0    00:00:00 sh\n";

    #[test]
    fn ps_output_is_filtered_to_the_containers_pids() {
        let (titles, rows) = parse_ps(PS, &[100, 101]).unwrap();
        assert_eq!(titles.len(), 8);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][1], "100");
        assert_eq!(rows[0][7], "sleep 1000 with args");
        assert_eq!(rows[1][5], "pts/0");
        let threads =
            "PID LWP CMD\n100 - sleep\n- 100 sleep\n- 102 sleep\n200 - other\n- 200 other\n";
        let (_, rows) = parse_ps(threads, &[100]).unwrap();
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert!(parse_ps("USER CMD\nroot x\n", &[1]).is_err());
    }

    #[test]
    fn ps_args_may_not_rename_the_pid_column() {
        assert!(check_ps_args("-ef").is_ok());
        assert!(check_ps_args("-o pid=PID,comm").is_ok());
        assert_eq!(
            check_ps_args("-o ppid=PID").unwrap_err().to_string(),
            "specifying \"ppid=PID\" is not allowed"
        );
    }

    #[test]
    fn stats_table_has_dockers_headers() {
        let c = |label: &str| {
            let mut m = invalid_row(label);
            m.insert("Name".into(), json!("web"));
            m
        };
        let text = stats_text(&[c("abc")], &Format::Default).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "CONTAINER ID   NAME      CPU %     MEM USAGE / LIMIT   MEM %     NET I/O   BLOCK I/O   PIDS"
        );
        let custom = Format::parse(Some("table {{.Container}}\\t{{lower .CPUPerc}}"));
        assert_eq!(
            stats_text(&[c("abc")], &custom).unwrap(),
            "CONTAINER   cpu %\nabc         --\n"
        );
        let plain = Format::parse(Some("{{.Name}}: {{.PIDs}}"));
        assert_eq!(stats_text(&[c("abc")], &plain).unwrap(), "web: --\n");
    }
}
