//! Reading a container's docker json-file log (as the monitor writes it): `docker logs`
//! with `--since`, `--until`, `--tail`, `-t` and `-f`.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub follow: bool,
    /// Unix nanoseconds; entries before are skipped.
    pub since: Option<i64>,
    /// Unix nanoseconds; entries after are skipped (and `follow` ends there).
    pub until: Option<i64>,
    /// Only the last N entries (before following).
    pub tail: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub stderr: bool,
    /// Unix nanoseconds.
    pub time: i64,
    /// As the log holds it (RFC 3339 with nanoseconds), for `-t`.
    pub time_text: String,
    pub log: Vec<u8>,
}

/// One line of the log; `None` for a line that is not an entry (a torn last line).
pub fn parse_line(line: &str) -> Option<Entry> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let time_text = v["time"].as_str()?.to_string();
    Some(Entry {
        stderr: v["stream"].as_str() == Some("stderr"),
        time: crate::container::parse_time(&time_text).unwrap_or(0),
        time_text,
        log: v["log"].as_str()?.as_bytes().to_vec(),
    })
}

/// The log files oldest first: `FILE.N-1` … `FILE.1`, `FILE`.
fn files(path: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u32, PathBuf)> = Vec::new();
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
        let prefix = format!("{}.", name.to_string_lossy());
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if let Some(k) = n.strip_prefix(&prefix).and_then(|k| k.parse().ok()) {
                    rotated.push((k, e.path()));
                }
            }
        }
    }
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    rotated
        .into_iter()
        .map(|(_, p)| p)
        .chain(std::iter::once(path.to_path_buf()))
        .collect()
}

/// Sends the selected entries to `sink`. With `follow`, keeps reading new entries until
/// `live()` turns false (checked between reads, with a last read after).
pub fn read(
    path: &Path,
    opts: &LogOptions,
    live: &dyn Fn() -> bool,
    sink: &mut dyn FnMut(&Entry) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let keep = |e: &Entry| {
        opts.since.is_none_or(|s| e.time >= s) && opts.until.is_none_or(|u| e.time <= u)
    };
    let mut entries = Vec::new();
    for f in files(path) {
        let Ok(file) = File::open(&f) else { continue };
        for line in BufReader::new(file).lines() {
            if let Some(e) = parse_line(&line?) {
                if keep(&e) {
                    entries.push(e);
                }
            }
        }
    }
    let skip = opts.tail.map_or(0, |n| entries.len().saturating_sub(n));
    for e in &entries[skip..] {
        sink(e)?;
    }
    if !opts.follow {
        return Ok(());
    }
    // Follow from where the current file ends now.
    let mut file = File::open(path).ok();
    let mut pos = file.as_mut().map_or(Ok(0), |f| f.seek(SeekFrom::End(0)))?;
    let mut partial = String::new();
    loop {
        let alive = live();
        // Rotation: the path now names a new file; finish the old one, then switch.
        let current = std::fs::metadata(path).ok().map(|m| m.ino());
        let held = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| m.ino());
        let rotated = current.is_some() && current != held;
        if let Some(f) = file.as_mut() {
            f.seek(SeekFrom::Start(pos))?;
            let mut reader = BufReader::new(&*f);
            loop {
                let mut line = String::new();
                let n = reader.read_line(&mut line)?;
                if n == 0 {
                    break;
                }
                pos += n as u64;
                if !line.ends_with('\n') {
                    partial.push_str(&line);
                    continue;
                }
                let whole = std::mem::take(&mut partial) + &line;
                if let Some(e) = parse_line(&whole) {
                    if opts.until.is_some_and(|u| e.time > u) {
                        return Ok(());
                    }
                    if keep(&e) {
                        sink(&e)?;
                    }
                }
            }
        }
        if rotated {
            file = File::open(path).ok();
            pos = 0;
            partial.clear();
            continue;
        }
        if !alive {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(stream: &str, t: &str, log: &str) -> String {
        serde_json::json!({"log": log, "stream": stream, "time": t}).to_string() + "\n"
    }

    #[test]
    fn reads_rotated_files_in_order_with_filters() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c-json.log");
        std::fs::write(
            p.with_extension("log.2"),
            line("stdout", "2023-11-14T22:13:20.000000001Z", "a\n"),
        )
        .unwrap();
        std::fs::write(
            p.with_extension("log.1"),
            line("stderr", "2023-11-14T22:13:21Z", "b\n"),
        )
        .unwrap();
        std::fs::write(
            &p,
            line("stdout", "2023-11-14T22:13:22Z", "c\n") + "{\"torn",
        )
        .unwrap();
        let collect = |opts: &LogOptions| {
            let mut out = Vec::new();
            read(&p, opts, &|| false, &mut |e| {
                out.push((e.stderr, String::from_utf8(e.log.clone()).unwrap()));
                Ok(())
            })
            .unwrap();
            out
        };
        let all = collect(&LogOptions::default());
        assert_eq!(
            all,
            vec![
                (false, "a\n".into()),
                (true, "b\n".into()),
                (false, "c\n".into())
            ]
        );
        let tail = collect(&LogOptions {
            tail: Some(1),
            ..Default::default()
        });
        assert_eq!(tail, vec![(false, "c\n".into())]);
        let since = collect(&LogOptions {
            since: Some(1_700_000_001_000_000_000),
            until: Some(1_700_000_001_000_000_000),
            ..Default::default()
        });
        assert_eq!(since, vec![(true, "b\n".into())]);
    }
}
