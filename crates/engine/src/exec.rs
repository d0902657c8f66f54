//! `docker exec` without a daemon: which container an exec may enter, the process JSON
//! Docker would hand the runtime (built from the running container's own `config.json`),
//! and the runtime command that starts it. The caller owns what dockerd and the shim
//! own for Docker: the process's stdio or terminal, its signals and its exit status
//! (docs/architecture.md, "exec").

use crate::container::{Engine, EngineError, Result};
use crate::spec::{self, SpecError, DEFAULT_PATH};
use crate::store::{Container, State};
use crate::user::{self, RootfsUsers};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

/// What `docker exec` takes besides stdio.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub command: Vec<String>,
    /// `--env-file` lines then `-e` values, in order; a bare `KEY` unsets KEY.
    pub env: Vec<String>,
    /// `-u`; the container's user when absent.
    pub user: Option<String>,
    /// `-w`; the container's working directory when absent.
    pub workdir: Option<String>,
    pub tty: bool,
    pub privileged: bool,
    /// The terminal's size (rows, cols) for runtimes that honour `process.consoleSize`.
    pub console_size: Option<(u16, u16)>,
}

/// The files of one runtime `exec`, in a directory the caller owns and removes.
pub struct ExecFiles<'a> {
    pub process: &'a Path,
    pub pid_file: &'a Path,
    pub log: &'a Path,
    /// Where the runtime sends the terminal's master (SCM_RIGHTS) with `-t`.
    pub console_socket: Option<&'a Path>,
}

impl Engine {
    /// The container `key` names, if an exec may enter it now: running, not paused.
    /// The errors are dockerd's.
    pub fn exec_target(&self, key: &str) -> Result<Container> {
        let c = self.reconcile(self.find(key)?)?;
        match c.state {
            State::Running => Ok(c),
            // dockerd names the container as the client did here, and by ID below.
            State::Paused => Err(EngineError::Other(format!(
                "Container {key} is paused, unpause the container before exec"
            ))),
            State::Restarting => Err(EngineError::Other(format!(
                "Container {} is restarting, wait until the container is running",
                c.id
            ))),
            _ => Err(EngineError::Other(format!(
                "container {} is not running",
                c.id
            ))),
        }
    }

    /// The runtime-spec `process` of an exec, as dockerd builds it: the container's own
    /// process (rlimits, noNewPrivileges, apparmor, oom score, capabilities) with the
    /// command, Docker's exec environment, the user resolved in the container's
    /// /etc/passwd and /etc/group, and the working directory.
    pub fn exec_process(&self, c: &Container, o: &ExecOptions) -> Result<Value> {
        let path = self.container_dir(&c.id).join("config.json");
        let text = std::fs::read(&path).map_err(|source| EngineError::Io {
            what: "reading",
            path: path.clone(),
            source,
        })?;
        let config: Value = serde_json::from_slice(&text).map_err(|e| {
            EngineError::Other(format!("{}: not a runtime spec: {e}", path.display()))
        })?;
        let mut p = match config.get("process") {
            Some(p @ Value::Object(_)) => p.clone(),
            _ => {
                return Err(EngineError::Other(format!(
                    "{}: has no process",
                    path.display()
                )))
            }
        };
        if o.command.is_empty() {
            return Err(EngineError::Other("No exec command specified".into()));
        }
        p["args"] = json!(o.command);
        p["terminal"] = json!(o.tty);
        p["env"] = json!(exec_env(&p, &self.env(c), o));
        if let Some(dir) = o.workdir.as_deref().filter(|d| !d.is_empty()) {
            p["cwd"] = json!(dir);
        }
        if p["cwd"].as_str().is_none_or(str::is_empty) {
            p["cwd"] = json!("/");
        }
        if let Some(spec) = o.user.as_deref().filter(|u| !u.is_empty()) {
            let users = RootfsUsers::open(&self.rootfs(&c.id)).map_err(SpecError::from)?;
            let u =
                user::resolve(spec, &c.options.run.group_add, &users).map_err(SpecError::from)?;
            p["user"] = json!({
                "uid": u.uid,
                "gid": u.gid,
                "additionalGids": u.additional_gids,
            });
        }
        let uid = p["user"]["uid"].as_u64().unwrap_or(0);
        p["capabilities"] = exec_capabilities(&p["capabilities"], uid, o.privileged);
        if o.privileged && p.get("apparmorProfile").is_some() {
            p["apparmorProfile"] = json!("unconfined");
        }
        let obj = p.as_object_mut().expect("checked above");
        match o.console_size.filter(|_| o.tty) {
            Some((rows, cols)) => {
                obj.insert("consoleSize".into(), json!({"height": rows, "width": cols}));
            }
            None => {
                obj.remove("consoleSize");
            }
        }
        Ok(p)
    }

    /// `RUNTIME --root R --log L --log-format json exec --detach --pid-file P --process F
    /// [--console-socket S] ID`: the process starts and the runtime exits, so the caller
    /// (a child subreaper) inherits the process and waits for it itself. A failure is
    /// the runtime's exit status, with the reason in the log ([`runtime_error`]).
    pub fn exec_command(&self, c: &Container, files: &ExecFiles) -> Command {
        let mut cmd = Command::new(&c.runtime);
        cmd.arg("--root")
            .arg(self.runtime_root(&c.runtime))
            .arg("--log")
            .arg(files.log)
            .arg("--log-format")
            .arg("json")
            .arg("exec")
            .arg("--detach")
            .arg("--pid-file")
            .arg(files.pid_file)
            .arg("--process")
            .arg(files.process);
        if let Some(sock) = files.console_socket {
            cmd.arg("--console-socket").arg(sock);
        }
        cmd.arg(&c.id);
        cmd
    }

    /// The pids of the container's processes, as its runtime lists them
    /// (`RUNTIME ps --format json ID`).
    pub fn pids(&self, c: &Container) -> Result<Vec<i32>> {
        let out = Command::new(&c.runtime)
            .arg("--root")
            .arg(self.runtime_root(&c.runtime))
            .args(["ps", "--format", "json"])
            .arg(&c.id)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|source| EngineError::Io {
                what: "running",
                path: c.runtime.clone(),
                source,
            })?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let line = err.lines().rev().find(|l| !l.trim().is_empty());
            return Err(EngineError::Other(format!(
                "listing the processes of container {}: {}",
                c.id,
                line.unwrap_or("the runtime failed")
            )));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| {
            EngineError::Other(format!(
                "listing the processes of container {}: the runtime's ps: {e}",
                c.id
            ))
        })
    }
}

/// Docker's exec environment: PATH, the container's HOSTNAME, TERM with `-t`, then the
/// container's `Config.Env`, then the exec's own variables (CreateDaemonEnvironment +
/// ReplaceOrAppendEnvValues).
fn exec_env(process: &Value, config_env: &[String], o: &ExecOptions) -> Vec<String> {
    let mut env = vec![format!("PATH={DEFAULT_PATH}")];
    let hostname = process["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|e| e.starts_with("HOSTNAME="));
    env.extend(hostname.map(String::from));
    if o.tty {
        env.push("TERM=xterm".into());
    }
    spec::replace_or_append(&mut env, config_env);
    spec::replace_or_append(&mut env, &o.env);
    env
}

/// The container's bounding set (every capability with `--privileged`); effective and
/// permitted only for root, as for the container's own process, or everything with
/// `--privileged` whoever the user (dockerd's execSetPlatformOpt).
fn exec_capabilities(container: &Value, uid: u64, privileged: bool) -> Value {
    let bounding = if privileged {
        json!(spec::host_capabilities())
    } else {
        container.get("bounding").cloned().unwrap_or(json!([]))
    };
    let mut caps = json!({ "bounding": bounding });
    if privileged || uid == 0 {
        caps["effective"] = bounding.clone();
        caps["permitted"] = bounding;
    }
    caps
}

/// Why a runtime command failed: the last `"level":"error"` message of its JSON log,
/// else the last line it printed on stderr.
pub fn runtime_error(log: &Path, stderr: &str) -> Option<String> {
    let from_log = std::fs::read_to_string(log).ok().and_then(|text| {
        text.lines().rev().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v["level"] == "error").then(|| v["msg"].as_str().map(String::from))?
        })
    });
    from_log.or_else(|| {
        stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_is_dockers_exec_environment() {
        let process = json!({"env": ["PATH=/x", "HOSTNAME=abc", "TERM=xterm", "A=1"]});
        let config = vec!["A=1".to_string(), "B=2".to_string()];
        let o = ExecOptions {
            env: vec!["B=3".into(), "A".into(), "C=4".into()],
            ..ExecOptions::default()
        };
        assert_eq!(
            exec_env(&process, &config, &o),
            vec![
                format!("PATH={DEFAULT_PATH}"),
                "HOSTNAME=abc".into(),
                "B=3".into(),
                "C=4".into()
            ]
        );
        let tty = ExecOptions {
            tty: true,
            ..ExecOptions::default()
        };
        let env = exec_env(&process, &["PATH=/bin".into()], &tty);
        assert_eq!(env, vec!["PATH=/bin", "HOSTNAME=abc", "TERM=xterm"]);
    }

    #[test]
    fn capabilities_follow_the_user() {
        let container = json!({"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]});
        assert_eq!(
            exec_capabilities(&container, 0, false),
            json!({"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]})
        );
        assert_eq!(
            exec_capabilities(&container, 1000, false),
            json!({"bounding": ["CAP_KILL"]})
        );
        let all = exec_capabilities(&container, 1000, true);
        assert!(all["effective"]
            .as_array()
            .unwrap()
            .contains(&json!("CAP_SYS_ADMIN")));
    }

    #[test]
    fn runtime_errors_come_from_the_log_then_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        std::fs::write(
            &log,
            "{\"level\":\"warning\",\"msg\":\"w\"}\n{\"level\":\"error\",\"msg\":\"first\"}\n{\"level\":\"error\",\"msg\":\"exec: \\\"x\\\": not found\"}\nnot json\n",
        )
        .unwrap();
        assert_eq!(
            runtime_error(&log, "noise").as_deref(),
            Some("exec: \"x\": not found")
        );
        let none = dir.path().join("absent");
        assert_eq!(
            runtime_error(&none, "a\nlast line\n\n").as_deref(),
            Some("last line")
        );
        assert_eq!(runtime_error(&none, ""), None);
    }
}
