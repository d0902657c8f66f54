//! OCI hooks: each runs with the container state on stdin, its own args and env, and an
//! optional timeout. A failing or hanging hook is an error that names the hook.

use crate::error::{Error, Result};
use oci_spec::runtime::Hook;
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn run_all(kind: &str, hooks: Option<&Vec<Hook>>, state: &[u8]) -> Result<()> {
    for (i, h) in hooks.into_iter().flatten().enumerate() {
        run(h, state)
            .map_err(|e| Error::Other(format!("{kind} hook #{i} ({}): {e}", h.path().display())))?;
    }
    Ok(())
}

fn run(h: &Hook, state: &[u8]) -> std::result::Result<(), String> {
    let mut cmd = Command::new(h.path());
    let args = h.args().clone().unwrap_or_default();
    if let Some(a0) = args.first() {
        cmd.arg0(a0);
    }
    if args.len() > 1 {
        cmd.args(&args[1..]);
    }
    cmd.env_clear();
    for kv in h.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine: ignore EPIPE.
        let _ = stdin.write_all(state);
    }
    let deadline = h
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let mut delay = Duration::from_micros(200);
    loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(st) if st.success() => return Ok(()),
            Some(st) => {
                return Err(match (st.code(), st.signal()) {
                    (Some(c), _) => format!("exited with status {c}"),
                    (_, Some(s)) => format!("killed by signal {s}"),
                    _ => format!("{st}"),
                })
            }
            None => {}
        }
        if let Some(d) = deadline {
            if Instant::now() >= d {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {}s", h.timeout().unwrap_or(0)));
            }
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(10));
    }
}
