//! The OCI runtime, driven only through runc's command line, so any runc-compatible
//! binary works. Failures are explained by the runtime's own JSON log.

use crate::json;
use std::ffi::OsString;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Runtime {
    pub path: PathBuf,
    pub root: Option<PathBuf>,
    pub args: Vec<OsString>,
    /// STATE/runtime.log, absolute: runc resolves paths after moving into the bundle.
    pub log: PathBuf,
}

impl Runtime {
    /// `RUNTIME [--root R] [ARGS] --log LOG --log-format json SUBCOMMAND`, with stdio
    /// /dev/null unless the caller sets it.
    pub fn command(&self, sub: &str) -> Command {
        let mut c = Command::new(&self.path);
        if let Some(r) = &self.root {
            c.arg("--root").arg(r);
        }
        c.args(&self.args)
            .arg("--log")
            .arg(&self.log)
            .args(["--log-format", "json", sub])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// Where the runtime's log ends now: errors written after this belong to the next
    /// command, not to an earlier run of this container.
    pub fn log_mark(&self) -> u64 {
        std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    /// The message of the last `"level":"error"` line logged since `mark`.
    pub fn error_since(&self, mark: u64) -> Option<String> {
        last_error(&self.log, mark).ok().flatten()
    }
}

fn last_error(path: &Path, mark: u64) -> io::Result<Option<String>> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    // A runtime's error is a few lines; a log that grew by megabytes (a --debug runtime)
    // is read from its tail only.
    let from = mark.max(len.saturating_sub(64 * 1024));
    f.seek(SeekFrom::Start(from))?;
    let mut text = Vec::new();
    f.read_to_end(&mut text)?;
    let text = String::from_utf8_lossy(&text);
    Ok(text
        .lines()
        .rev()
        .filter(|l| l.contains("\"level\":\"error\"") || l.contains("\"level\": \"error\""))
        .find_map(|l| json::string_field(l, "msg")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_error_after_the_mark() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("runtime.log");
        let old = "{\"level\":\"error\",\"msg\":\"old failure\",\"time\":\"t\"}\n";
        std::fs::write(&log, old).unwrap();
        let rt = Runtime {
            path: "runc".into(),
            root: None,
            args: vec![],
            log: log.clone(),
        };
        let mark = rt.log_mark();
        assert_eq!(rt.error_since(0).as_deref(), Some("old failure"));
        assert_eq!(rt.error_since(mark), None);
        let new = "{\"level\":\"warning\",\"msg\":\"w\",\"time\":\"t\"}\n\
                   {\"level\":\"error\",\"msg\":\"exec: \\\"nope\\\": no such file\",\"time\":\"t\"}\n\
                   {\"level\":\"info\",\"msg\":\"bye\",\"time\":\"t\"}\n";
        std::fs::write(&log, format!("{old}{new}")).unwrap();
        assert_eq!(
            rt.error_since(mark).as_deref(),
            Some("exec: \"nope\": no such file")
        );
    }
}
