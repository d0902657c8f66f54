//! The command line of docs/monitor.md, parsed by hand: a small fixed set of flags, and
//! the engine is its only caller, so one clear line on error is all the help needed.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Default, PartialEq)]
pub struct Args {
    pub id: String,
    pub bundle: PathBuf,
    pub runtime: PathBuf,
    pub state_dir: PathBuf,
    pub runtime_root: Option<PathBuf>,
    pub runtime_args: Vec<OsString>,
    pub log_path: Option<PathBuf>,
    /// 0: never rotate.
    pub log_max_size: u64,
    pub log_max_files: u32,
    pub tty: bool,
    pub stdin: bool,
    pub stdin_once: bool,
    pub start_on_attach: bool,
    pub sync_fd: Option<i32>,
    pub exit_command: Option<PathBuf>,
    pub exit_args: Vec<OsString>,
    /// `--health-process` and its timings (nanoseconds, as Docker's HealthConfig).
    pub health: Option<crate::health::Config>,
}

pub fn parse<I: IntoIterator<Item = OsString>>(argv: I) -> Result<Args, String> {
    let mut a = Args {
        log_max_files: 1,
        ..Args::default()
    };
    let (mut id, mut bundle, mut runtime, mut state) = (None, None, None, None);
    let mut health_process = None;
    let mut health_ns = [0u64; 3]; // interval, timeout, start period
    let mut health_retries = 0u32;
    let mut it = argv.into_iter();
    while let Some(arg) = it.next() {
        let bytes = arg.as_bytes();
        // `--flag=value` as well as `--flag value`.
        let (name, inline) = match bytes.iter().position(|&b| b == b'=') {
            Some(i) if bytes.starts_with(b"--") => (
                OsStr::from_bytes(&bytes[..i]).to_owned(),
                Some(OsStr::from_bytes(&bytes[i + 1..]).to_owned()),
            ),
            _ => (arg.clone(), None),
        };
        let name = name.to_string_lossy().into_owned();
        let flag = match name.as_str() {
            "--tty" => Some(&mut a.tty),
            "--stdin" => Some(&mut a.stdin),
            "--stdin-once" => Some(&mut a.stdin_once),
            "--start-on-attach" => Some(&mut a.start_on_attach),
            _ => None,
        };
        if let Some(flag) = flag {
            if inline.is_some() {
                return Err(format!("{name} takes no value"));
            }
            *flag = true;
            continue;
        }
        let mut value = || -> Result<OsString, String> {
            match inline.clone().or_else(|| it.next()) {
                Some(v) => Ok(v),
                None => Err(format!("{name} needs a value")),
            }
        };
        match name.as_str() {
            "--id" => id = Some(value()?),
            "--bundle" => bundle = Some(PathBuf::from(value()?)),
            "--runtime" => runtime = Some(PathBuf::from(value()?)),
            "--state-dir" => state = Some(PathBuf::from(value()?)),
            "--runtime-root" => a.runtime_root = Some(PathBuf::from(value()?)),
            "--runtime-arg" => a.runtime_args.push(value()?),
            "--log-path" => a.log_path = Some(PathBuf::from(value()?)),
            "--log-max-size" => a.log_max_size = number(&name, &value()?)?,
            "--log-max-files" => {
                a.log_max_files = number(&name, &value()?)?;
                if a.log_max_files == 0 {
                    return Err("--log-max-files must be at least 1".into());
                }
            }
            "--sync-fd" => a.sync_fd = Some(number(&name, &value()?)?),
            "--exit-command" => a.exit_command = Some(PathBuf::from(value()?)),
            "--exit-arg" => a.exit_args.push(value()?),
            "--health-process" => health_process = Some(PathBuf::from(value()?)),
            "--health-interval" => health_ns[0] = number(&name, &value()?)?,
            "--health-timeout" => health_ns[1] = number(&name, &value()?)?,
            "--health-start-period" => health_ns[2] = number(&name, &value()?)?,
            "--health-retries" => health_retries = number(&name, &value()?)?,
            _ => return Err(format!("unknown argument {:?}", arg.to_string_lossy())),
        }
    }
    let missing = |n: &str| format!("missing {n}");
    let id = id.ok_or_else(|| missing("--id"))?;
    a.id = id
        .into_string()
        .map_err(|_| "--id is not valid UTF-8".to_string())?;
    if a.id.is_empty() || a.id.contains('/') {
        return Err(format!("invalid --id {:?}", a.id));
    }
    a.bundle = bundle.ok_or_else(|| missing("--bundle"))?;
    a.runtime = runtime.ok_or_else(|| missing("--runtime"))?;
    a.state_dir = state.ok_or_else(|| missing("--state-dir"))?;
    if let Some(process) = health_process {
        let [interval, timeout, start_period] = health_ns.map(Duration::from_nanos);
        if interval.is_zero() || timeout.is_zero() || health_retries == 0 {
            return Err("--health-process needs --health-interval, --health-timeout and --health-retries above 0".into());
        }
        a.health = Some(crate::health::Config {
            process,
            interval,
            timeout,
            retries: health_retries,
            start_period,
        });
    }
    Ok(a)
}

fn number<T: std::str::FromStr>(name: &str, v: &OsStr) -> Result<T, String> {
    v.to_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{name}: not a number: {:?}", v.to_string_lossy()))
}

impl Args {
    /// The monitor works from inside the state directory, so every path the caller gave
    /// relative to its own cwd is made absolute first. A bare runtime name (`runc`) is
    /// left to PATH lookup.
    pub fn make_absolute(&mut self, cwd: &Path) {
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = cwd.join(&*p);
            }
        };
        abs(&mut self.bundle);
        abs(&mut self.state_dir);
        self.runtime_root.as_mut().map(abs);
        self.log_path.as_mut().map(abs);
        if let Some(h) = self.health.as_mut() {
            abs(&mut h.process);
        }
        for cmd in [Some(&mut self.runtime), self.exit_command.as_mut()]
            .into_iter()
            .flatten()
        {
            if cmd.as_os_str().as_bytes().contains(&b'/') {
                abs(cmd);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Args, String> {
        parse(args.iter().map(OsString::from))
    }

    const BASE: [&str; 8] = [
        "--id",
        "c1",
        "--bundle",
        "/b",
        "--runtime",
        "runc",
        "--state-dir",
        "/s",
    ];

    #[test]
    fn full_command_line() {
        let mut v = BASE.to_vec();
        v.extend([
            "--runtime-root",
            "/r",
            "--runtime-arg",
            "--systemd-cgroup",
            "--runtime-arg=--debug",
            "--log-path",
            "/l",
            "--log-max-size=100",
            "--log-max-files",
            "3",
            "--tty",
            "--stdin",
            "--stdin-once",
            "--start-on-attach",
            "--sync-fd",
            "5",
            "--exit-command",
            "/bin/berth",
            "--exit-arg",
            "cleanup",
            "--exit-arg",
            "c1",
        ]);
        let a = p(&v).unwrap();
        assert_eq!(a.id, "c1");
        assert_eq!(a.runtime_root, Some("/r".into()));
        assert_eq!(a.runtime_args, ["--systemd-cgroup", "--debug"]);
        assert_eq!((a.log_max_size, a.log_max_files), (100, 3));
        assert!(a.tty && a.stdin && a.stdin_once && a.start_on_attach);
        assert_eq!(a.sync_fd, Some(5));
        assert_eq!(a.exit_args, ["cleanup", "c1"]);
    }

    #[test]
    fn defaults() {
        let a = p(&BASE).unwrap();
        assert_eq!((a.log_max_size, a.log_max_files), (0, 1));
        assert!(a.log_path.is_none() && a.sync_fd.is_none() && !a.tty);
    }

    #[test]
    fn errors() {
        assert_eq!(p(&BASE[2..]).unwrap_err(), "missing --id");
        let mut v = BASE.to_vec();
        v.push("--bogus");
        assert!(p(&v).unwrap_err().contains("unknown argument"));
        let mut v = BASE.to_vec();
        v.push("--log-max-size");
        assert!(p(&v).unwrap_err().contains("needs a value"));
        let mut v = BASE.to_vec();
        v.extend(["--sync-fd", "x"]);
        assert!(p(&v).unwrap_err().contains("not a number"));
        let mut v = BASE.to_vec();
        v.push("--tty=1");
        assert!(p(&v).unwrap_err().contains("takes no value"));
    }

    #[test]
    fn relative_paths_become_absolute() {
        let mut a = p(&[
            "--id",
            "c",
            "--bundle",
            "b",
            "--runtime",
            "./rt",
            "--state-dir",
            "s",
            "--exit-command",
            "berth",
        ])
        .unwrap();
        a.make_absolute(Path::new("/w"));
        assert_eq!(a.bundle, Path::new("/w/b"));
        assert_eq!(a.state_dir, Path::new("/w/s"));
        assert_eq!(a.runtime, Path::new("/w/./rt"));
        assert_eq!(a.exit_command, Some("berth".into()));
    }
}
