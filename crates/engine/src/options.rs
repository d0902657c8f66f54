//! What `docker create`/`run` accept beyond the spec: the container's name, image, restart
//! policy, log options, health check. [`CreateOptions`] is what the engine stores for a
//! container and what `inspect` shows back.

use crate::flags::{FlagError, RunOptions};
use serde::{Deserialize, Serialize};

/// Everything `berth create` needs. `run` is the part that shapes config.json.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateOptions {
    /// `--name`; `None` picks a random docker-style name.
    pub name: Option<String>,
    /// The image as the user wrote it (`busybox`, `localhost:5000/app:1`, an ID).
    pub image: String,
    pub run: RunOptions,
    /// `--rm`.
    pub auto_remove: bool,
    /// `--restart`.
    pub restart: RestartPolicy,
    /// `--stop-timeout` in seconds; `None` means Docker's 10.
    pub stop_timeout: Option<i64>,
    /// `--log-driver`: `json-file` (default) or `none`.
    pub log_driver: LogDriver,
    /// `--log-opt max-size=…` in bytes; 0 means unlimited.
    pub log_max_size: u64,
    /// `--log-opt max-file=…`; 1 unless given.
    pub log_max_files: u32,
    /// `--health-*` (or the image's HEALTHCHECK, merged at create).
    pub health: Option<HealthCheck>,
    /// `--runtime`: a name (`runc`, `crun`, `youki`, `berth-runtime`) or a path; `None`
    /// is the configured default.
    pub runtime: Option<String>,
    /// `-a STDIN|STDOUT|STDERR`; empty means Docker's default for the mode.
    pub attach: Vec<String>,
    /// `--sig-proxy` (default true): signals to a foreground `run` reach the container.
    pub sig_proxy: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogDriver {
    #[default]
    JsonFile,
    None,
}

/// `--restart no|on-failure[:N]|always|unless-stopped`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    #[default]
    No,
    /// At most `max` restarts (0: no limit) after a non-zero exit.
    OnFailure {
        max: u32,
    },
    Always,
    UnlessStopped,
}

impl RestartPolicy {
    /// Docker's `HostConfig.RestartPolicy.Name`.
    pub fn name(&self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure { .. } => "on-failure",
            RestartPolicy::Always => "always",
            RestartPolicy::UnlessStopped => "unless-stopped",
        }
    }

    pub fn parse(value: &str) -> Result<RestartPolicy, FlagError> {
        let (name, count) = match value.split_once(':') {
            Some((n, c)) => (n, Some(c)),
            None => (value, None),
        };
        let policy = match name {
            "" | "no" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "unless-stopped" => RestartPolicy::UnlessStopped,
            "on-failure" => {
                let max = match count {
                    None => 0,
                    Some(c) => c.parse::<u32>().map_err(|_| {
                        FlagError::Invalid(format!(
                            "invalid restart policy: maximum retry count must be an integer: {c}"
                        ))
                    })?,
                };
                return Ok(RestartPolicy::OnFailure { max });
            }
            _ => {
                return Err(FlagError::Invalid(format!(
                    "invalid restart policy: unknown policy '{name}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
                )))
            }
        };
        if count.is_some() {
            return Err(FlagError::Invalid(
                "invalid restart policy: maximum retry count can only be used with 'on-failure'"
                    .to_string(),
            ));
        }
        Ok(policy)
    }
}

/// Docker's `HealthConfig`: durations in nanoseconds, 0 meaning the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// `["CMD", args…]`, `["CMD-SHELL", "cmd"]` or `["NONE"]`.
    pub test: Vec<String>,
    pub interval: i64,
    pub timeout: i64,
    pub start_period: i64,
    pub retries: i64,
}

/// Go's `time.ParseDuration` for the forms people use (`30s`, `1m30s`, `500ms`, `1.5h`),
/// in nanoseconds. `flag` names the flag in the error.
pub fn parse_duration(value: &str, flag: &'static str) -> Result<i64, FlagError> {
    let bad = |reason: &str| FlagError::Argument {
        value: value.to_string(),
        flag,
        reason: reason.to_string(),
    };
    if value == "0" {
        return Ok(0);
    }
    let (negative, mut rest) = match value.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, value.strip_prefix('+').unwrap_or(value)),
    };
    if rest.is_empty() {
        return Err(bad(&format!("time: invalid duration \"{value}\"")));
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..num_len]
            .parse()
            .map_err(|_| bad(&format!("time: invalid duration \"{value}\"")))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(bad(&format!("time: missing unit in duration \"{value}\""))),
            u => {
                return Err(bad(&format!(
                    "time: unknown unit \"{u}\" in duration \"{value}\""
                )))
            }
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    if total > i64::MAX as f64 {
        return Err(bad(&format!("time: invalid duration \"{value}\"")));
    }
    let ns = total.round() as i64;
    Ok(if negative { -ns } else { ns })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies_as_docker_reads_them() {
        assert_eq!(RestartPolicy::parse("no").unwrap(), RestartPolicy::No);
        assert_eq!(
            RestartPolicy::parse("on-failure:3").unwrap(),
            RestartPolicy::OnFailure { max: 3 }
        );
        assert_eq!(
            RestartPolicy::parse("on-failure").unwrap(),
            RestartPolicy::OnFailure { max: 0 }
        );
        assert_eq!(
            RestartPolicy::parse("always").unwrap(),
            RestartPolicy::Always
        );
        let e = RestartPolicy::parse("sometimes").unwrap_err().to_string();
        assert!(e.contains("unknown policy 'sometimes'"), "{e}");
        let e = RestartPolicy::parse("always:3").unwrap_err().to_string();
        assert!(e.contains("only be used with 'on-failure'"), "{e}");
        let e = RestartPolicy::parse("on-failure:x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be an integer"), "{e}");
    }

    #[test]
    fn durations_like_go() {
        assert_eq!(
            parse_duration("30s", "--health-interval").unwrap(),
            30_000_000_000
        );
        assert_eq!(parse_duration("1m30s", "x").unwrap(), 90_000_000_000);
        assert_eq!(parse_duration("500ms", "x").unwrap(), 500_000_000);
        assert_eq!(parse_duration("1.5h", "x").unwrap(), 5_400_000_000_000);
        assert_eq!(parse_duration("0", "x").unwrap(), 0);
        let e = parse_duration("10", "--health-interval")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "invalid argument \"10\" for \"--health-interval\" flag: time: missing unit in duration \"10\""
        );
        assert!(parse_duration("5x", "x").is_err());
        assert!(parse_duration("", "x").is_err());
    }
}
