//! Health checks, as Docker's daemon runs them (daemon/health.go): every interval, the
//! check runs in the container (`RUNTIME exec --process FILE ID`); exit 0 is healthy,
//! anything else a failure; `retries` failures in a row make the container unhealthy,
//! except failures before the first success within the start period; a check that
//! outlives its timeout is killed and counts as a failure. The state is written to
//! STATE/health.json in Docker's `State.Health` shape after every check, so `inspect`
//! and `ps` read it without asking us.

use crate::clock::Stamp;
use crate::json;
use crate::reaper::Reaper;
use crate::runtime::Runtime;
use crate::sys::Exit;
use std::collections::VecDeque;
use std::io::{self, Read};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Docker keeps the last five results and 4 KiB of each one's output.
const LOG_ENTRIES: usize = 5;
const OUTPUT_MAX: u64 = 4096;
const OUT_FILE: &str = "health.out";
const PID_FILE: &str = "health.pid";
const STATE_FILE: &str = "health.json";

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The exec process JSON: the container's process with the check's args.
    pub process: PathBuf,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

struct Entry {
    start: Stamp,
    end: Stamp,
    exit_code: i32,
    output: Vec<u8>,
}

struct Probe {
    /// The runtime's `exec`.
    pid: i32,
    start: Stamp,
    deadline: Instant,
    timed_out: bool,
}

pub struct Health {
    cfg: Config,
    started: Instant,
    next: Instant,
    probe: Option<Probe>,
    status: &'static str,
    streak: u32,
    log: VecDeque<Entry>,
}

impl Health {
    /// The first check runs one interval after the container started, as Docker's.
    pub fn new(cfg: Config) -> Health {
        let now = Instant::now();
        let h = Health {
            next: now + cfg.interval,
            cfg,
            started: now,
            probe: None,
            status: "starting",
            streak: 0,
            log: VecDeque::new(),
        };
        h.save();
        h
    }

    /// Starts a check when one is due, collects one that ended, kills one that ran out
    /// of time. How long the caller may sleep before the next call.
    pub fn step(&mut self, rt: &Runtime, id: &str, reaper: &mut Reaper) -> Duration {
        let now = Instant::now();
        if let Some(p) = &mut self.probe {
            if let Some(exit) = reaper.take(p.pid) {
                let timed_out = p.timed_out;
                let start = p.start;
                self.probe = None;
                self.record(start, exit, timed_out);
                self.next = Instant::now() + self.cfg.interval;
            } else if !p.timed_out && now >= p.deadline {
                // The exec'd process first (the runtime waits for it), then the runtime.
                if let Some(pid) = read_pid() {
                    kill(pid);
                }
                kill(p.pid);
                p.timed_out = true;
            }
        } else if now >= self.next {
            match self.spawn(rt, id, reaper) {
                Ok(probe) => self.probe = Some(probe),
                Err(e) => {
                    let start = Stamp::now();
                    self.push(start, -1, format!("{e}").into_bytes());
                    self.next = now + self.cfg.interval;
                }
            }
        }
        let wake = match &self.probe {
            // A killed check ends as soon as the runtime notices: SIGCHLD wakes us.
            Some(p) if p.timed_out => return Duration::from_secs(1),
            Some(p) => p.deadline,
            None => self.next,
        };
        wake.saturating_duration_since(Instant::now())
    }

    fn spawn(&self, rt: &Runtime, id: &str, reaper: &mut Reaper) -> io::Result<Probe> {
        let _ = std::fs::remove_file(PID_FILE);
        let out = std::fs::File::create(OUT_FILE)?;
        let mut cmd = rt.command("exec");
        cmd.arg("--process")
            .arg(&self.cfg.process)
            .arg("--pid-file")
            .arg(PID_FILE)
            .arg(id)
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out));
        let child = cmd.spawn()?;
        let pid = child.id() as i32;
        reaper.watch(pid);
        Ok(Probe {
            pid,
            start: Stamp::now(),
            deadline: Instant::now() + self.cfg.timeout,
            timed_out: false,
        })
    }

    fn record(&mut self, start: Stamp, exit: Exit, timed_out: bool) {
        let (code, output) = if timed_out {
            let msg = format!(
                "Health check exceeded timeout ({})",
                go_duration(self.cfg.timeout)
            );
            (-1, msg.into_bytes())
        } else {
            (exit.code(), read_output())
        };
        self.push(start, code, output);
    }

    /// Docker's handleProbeResult.
    fn push(&mut self, start: Stamp, exit_code: i32, output: Vec<u8>) {
        if exit_code == 0 {
            self.streak = 0;
            self.status = "healthy";
        } else {
            let in_start_period =
                self.status == "starting" && self.started.elapsed() < self.cfg.start_period;
            if !in_start_period {
                self.streak += 1;
                if self.streak >= self.cfg.retries {
                    self.status = "unhealthy";
                }
            }
        }
        if self.log.len() == LOG_ENTRIES {
            self.log.pop_front();
        }
        self.log.push_back(Entry {
            start,
            end: Stamp::now(),
            exit_code,
            output,
        });
        self.save();
    }

    /// STATE/health.json, atomically.
    fn save(&self) {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"{\"Status\":\"");
        out.extend_from_slice(self.status.as_bytes());
        out.extend_from_slice(format!("\",\"FailingStreak\":{},\"Log\":[", self.streak).as_bytes());
        for (i, e) in self.log.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"Start\":\"");
            out.extend_from_slice(e.start.as_str().as_bytes());
            out.extend_from_slice(b"\",\"End\":\"");
            out.extend_from_slice(e.end.as_str().as_bytes());
            out.extend_from_slice(
                format!("\",\"ExitCode\":{},\"Output\":", e.exit_code).as_bytes(),
            );
            json::push_str(&mut out, &e.output);
            out.push(b'}');
        }
        out.extend_from_slice(b"]}");
        let tmp = format!("{STATE_FILE}.tmp");
        let written = std::fs::write(&tmp, &out).and_then(|()| std::fs::rename(&tmp, STATE_FILE));
        if let Err(e) = written {
            crate::monitor::note(&format!("write {STATE_FILE}: {e}"));
        }
    }
}

fn read_pid() -> Option<i32> {
    std::fs::read_to_string(PID_FILE).ok()?.trim().parse().ok()
}

fn kill(pid: i32) {
    if pid > 0 {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

fn read_output() -> Vec<u8> {
    let mut out = Vec::new();
    if let Ok(f) = std::fs::File::open(OUT_FILE) {
        let _ = f.take(OUTPUT_MAX).read_to_end(&mut out);
    }
    out
}

/// Go's `time.Duration.String()` for whole milliseconds and up: `30s`, `1m30s`, `500ms`.
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m) = (ms / 3_600_000, ms / 60_000 % 60);
    let s = (ms % 60_000) as f64 / 1000.0;
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{s}s"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    }
}
