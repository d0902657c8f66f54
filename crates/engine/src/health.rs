//! Health checks: which check a container has (its `--health-*` flags merged over the
//! image's HEALTHCHECK as Docker merges them), the exec process the monitor runs for it,
//! and the state the monitor reports in STATE/health.json (docs/monitor.md).

use crate::options::HealthCheck;
use serde_json::Value;
use std::ffi::OsString;
use std::path::Path;

/// Docker's defaults for a zero field.
const DEFAULT_INTERVAL: i64 = 30_000_000_000;
const DEFAULT_TIMEOUT: i64 = 30_000_000_000;
const DEFAULT_RETRIES: i64 = 3;

/// The process file the monitor hands to `RUNTIME exec --process`, in the bundle.
pub const PROCESS_FILE: &str = "health-process.json";
/// Where the monitor keeps the state, and where it is kept once the container exited.
pub const STATE_FILE: &str = "health.json";

/// The check in force: the user's fields where set, else the image's (Docker's `merge`
/// in daemon/commit.go); `None` when there is none or it is `NONE`.
pub fn effective(user: Option<&HealthCheck>, image_config: &Value) -> Option<HealthCheck> {
    let image: Option<HealthCheck> = image_config.get("Healthcheck").and_then(|h| {
        let ns = |k: &str| h.get(k).and_then(Value::as_i64).unwrap_or(0);
        Some(HealthCheck {
            test: serde_json::from_value(h.get("Test")?.clone()).ok()?,
            interval: ns("Interval"),
            timeout: ns("Timeout"),
            start_period: ns("StartPeriod"),
            retries: ns("Retries"),
        })
    });
    let merged = match (user, image) {
        (None, image) => image?,
        (Some(u), None) => u.clone(),
        (Some(u), Some(i)) => {
            let or = |a: i64, b: i64| if a != 0 { a } else { b };
            HealthCheck {
                test: if u.test.is_empty() {
                    i.test
                } else {
                    u.test.clone()
                },
                interval: or(u.interval, i.interval),
                timeout: or(u.timeout, i.timeout),
                start_period: or(u.start_period, i.start_period),
                retries: or(u.retries, i.retries),
            }
        }
    };
    match merged.test.first().map(String::as_str) {
        Some("CMD") | Some("CMD-SHELL") => Some(merged),
        _ => None,
    }
}

/// The check's command line: `CMD` args as they are, `CMD-SHELL` through the image's
/// SHELL (default `/bin/sh -c`).
pub fn argv(h: &HealthCheck, image_config: &Value) -> Vec<String> {
    match h.test.split_first() {
        Some((kind, rest)) if kind == "CMD-SHELL" => {
            let mut shell: Vec<String> = image_config
                .get("Shell")
                .and_then(|s| serde_json::from_value(s.clone()).ok())
                .filter(|s: &Vec<String>| !s.is_empty())
                .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
            shell.push(rest.join(" "));
            shell
        }
        Some((_, rest)) => rest.to_vec(),
        None => vec![],
    }
}

/// The exec process: the container's own (env, user, cwd, capabilities, seccomp…) running
/// the check instead, without a terminal, as `docker exec` would.
pub fn process(spec: &Value, argv: Vec<String>) -> Value {
    let mut p = spec["process"].clone();
    p["args"] = Value::from(argv);
    p["terminal"] = Value::Bool(false);
    if let Some(o) = p.as_object_mut() {
        o.remove("consoleSize");
    }
    p
}

/// The monitor's `--health-*` arguments, defaults applied.
pub fn monitor_args(h: &HealthCheck, process_file: &Path) -> Vec<OsString> {
    let or = |v: i64, d: i64| if v > 0 { v } else { d };
    vec![
        "--health-process".into(),
        process_file.into(),
        "--health-interval".into(),
        or(h.interval, DEFAULT_INTERVAL).to_string().into(),
        "--health-timeout".into(),
        or(h.timeout, DEFAULT_TIMEOUT).to_string().into(),
        "--health-retries".into(),
        or(h.retries, DEFAULT_RETRIES).to_string().into(),
        "--health-start-period".into(),
        h.start_period.max(0).to_string().into(),
    ]
}

/// Docker's `State.Health`: what the monitor last wrote, or `starting` before it has.
pub fn read(path: &Path) -> Value {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| serde_json::json!({"Status": "starting", "FailingStreak": 0, "Log": []}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(test: &[&str]) -> HealthCheck {
        HealthCheck {
            test: test.iter().map(|s| s.to_string()).collect(),
            ..HealthCheck::default()
        }
    }

    #[test]
    fn user_fields_win_and_zero_fields_inherit_the_image() {
        let image = json!({"Healthcheck": {"Test": ["CMD", "true"], "Interval": 5, "Retries": 7}});
        let mut user = check(&[]);
        user.interval = 9;
        let h = effective(Some(&user), &image).unwrap();
        assert_eq!(h.test, ["CMD", "true"]);
        assert_eq!((h.interval, h.retries), (9, 7));
        assert!(effective(Some(&check(&["NONE"])), &image).is_none());
        assert!(effective(None, &json!({})).is_none());
        assert_eq!(effective(None, &image).unwrap().interval, 5);
    }

    #[test]
    fn shell_form_uses_the_image_shell() {
        let h = check(&["CMD-SHELL", "curl -f localhost"]);
        assert_eq!(argv(&h, &json!({})), ["/bin/sh", "-c", "curl -f localhost"]);
        let img = json!({"Shell": ["/bin/bash", "-ec"]});
        assert_eq!(argv(&h, &img), ["/bin/bash", "-ec", "curl -f localhost"]);
        assert_eq!(argv(&check(&["CMD", "a", "b c"]), &img), ["a", "b c"]);
    }

    #[test]
    fn the_process_is_the_containers_without_a_terminal() {
        let spec = json!({"process": {"args": ["sh"], "terminal": true, "consoleSize": {}, "env": ["A=1"]}});
        let p = process(&spec, vec!["true".into()]);
        assert_eq!(
            p,
            json!({"args": ["true"], "terminal": false, "env": ["A=1"]})
        );
    }
}
