//! The container's log in Docker's json-file format: one JSON object per line of output,
//! with size-based rotation. Lines longer than 16 KiB, and a last line without a newline,
//! become entries of their own, as Docker's copier cuts them.

use crate::clock::Stamp;
use crate::json;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Docker's line buffer: a longer line is logged in pieces of this size.
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Stream {
    Stdout = 1,
    Stderr = 2,
}

impl Stream {
    fn name(self) -> &'static [u8] {
        match self {
            Stream::Stdout => b"stdout",
            Stream::Stderr => b"stderr",
        }
    }
}

pub struct JsonLog {
    path: PathBuf,
    file: File,
    /// Bytes in the current file.
    size: u64,
    max_size: u64,
    max_files: u32,
    /// The unfinished last line of each stream (stdout, stderr).
    partial: [Vec<u8>; 2],
    /// Encoded entries not yet written: one write(2) per chunk of output.
    out: Vec<u8>,
}

impl JsonLog {
    /// Opens (appending to) the log at `path`: a restarted container continues its log.
    pub fn open(path: &Path, max_size: u64, max_files: u32) -> io::Result<JsonLog> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(JsonLog {
            path: path.to_path_buf(),
            file,
            size,
            max_size,
            max_files: max_files.max(1),
            partial: [vec![], vec![]],
            out: vec![],
        })
    }

    /// Logs a chunk of output read at `now`.
    pub fn write(&mut self, stream: Stream, data: &[u8], now: &Stamp) -> io::Result<()> {
        let mut rest = data;
        while !rest.is_empty() {
            let partial = &self.partial[stream as usize - 1];
            let room = MAX_LINE - partial.len();
            let window = &rest[..rest.len().min(room)];
            let take = match window.iter().position(|&b| b == b'\n') {
                Some(i) => i + 1,
                None if window.len() == room => room,
                None => {
                    self.partial[stream as usize - 1].extend_from_slice(window);
                    break;
                }
            };
            let (line, tail) = rest.split_at(take);
            rest = tail;
            if self.partial[stream as usize - 1].is_empty() {
                self.entry(stream, line, now)?;
            } else {
                let mut joined = std::mem::take(&mut self.partial[stream as usize - 1]);
                joined.extend_from_slice(line);
                self.entry(stream, &joined, now)?;
                joined.clear();
                // Keep the allocation for the next partial line, unless it grew large.
                if joined.capacity() <= 4096 {
                    self.partial[stream as usize - 1] = joined;
                }
            }
        }
        self.flush()
    }

    /// Logs what is left of a stream's last line (the stream ended).
    pub fn finish(&mut self, stream: Stream, now: &Stamp) -> io::Result<()> {
        let line = std::mem::take(&mut self.partial[stream as usize - 1]);
        if !line.is_empty() {
            self.entry(stream, &line, now)?;
        }
        self.flush()
    }

    fn entry(&mut self, stream: Stream, line: &[u8], now: &Stamp) -> io::Result<()> {
        let start = self.out.len();
        self.out.extend_from_slice(b"{\"log\":");
        json::push_str(&mut self.out, line);
        self.out.extend_from_slice(b",\"stream\":\"");
        self.out.extend_from_slice(stream.name());
        self.out.extend_from_slice(b"\",\"time\":\"");
        self.out.extend_from_slice(now.as_str().as_bytes());
        self.out.extend_from_slice(b"\"}\n");
        let len = (self.out.len() - start) as u64;
        let before = self.size + start as u64;
        // Rotate before the write that would pass the limit; an entry larger than the
        // limit on its own still goes into a fresh file whole.
        if self.max_size > 0 && before > 0 && before + len > self.max_size {
            self.file.write_all(&self.out[..start])?;
            self.out.drain(..start);
            self.rotate()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        let r = self.file.write_all(&self.out);
        if r.is_ok() {
            self.size += self.out.len() as u64;
        }
        self.out.clear();
        // A burst of output must not leave a large buffer behind for an idle container.
        if self.out.capacity() > 64 * 1024 {
            self.out = Vec::new();
        }
        r
    }

    /// FILE.(N-2) → FILE.(N-1) … FILE → FILE.1 and a fresh FILE; with one file, truncate.
    fn rotate(&mut self) -> io::Result<()> {
        if self.max_files == 1 {
            self.file.set_len(0)?;
        } else {
            let name = |i: u32| {
                let mut p = self.path.clone().into_os_string();
                p.push(format!(".{i}"));
                PathBuf::from(p)
            };
            for i in (1..self.max_files - 1).rev() {
                rename_if_exists(&name(i), &name(i + 1))?;
            }
            rename_if_exists(&self.path, &name(1))?;
            self.file = open_append(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    // Docker's log files are 0640; std opens close-on-exec.
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "2026-11-23T10:00:00.123456789Z";

    fn stamp() -> Stamp {
        Stamp::at(1_795_428_000, 123_456_789)
    }

    fn entries(path: &Path) -> Vec<(String, String)> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                assert_eq!(v["time"], T);
                (
                    v["log"].as_str().unwrap().to_string(),
                    v["stream"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn lines_streams_and_partials() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut log = JsonLog::open(&p, 0, 1).unwrap();
        log.write(Stream::Stdout, b"one\ntw", &stamp()).unwrap();
        log.write(Stream::Stderr, b"err\n", &stamp()).unwrap();
        log.write(Stream::Stdout, b"o\nthree", &stamp()).unwrap();
        log.finish(Stream::Stdout, &stamp()).unwrap();
        log.finish(Stream::Stderr, &stamp()).unwrap();
        let e = entries(&p);
        let want = [
            ("one\n", "stdout"),
            ("err\n", "stderr"),
            ("two\n", "stdout"),
            ("three", "stdout"),
        ];
        assert_eq!(e.len(), want.len());
        for ((l, s), (wl, ws)) in e.iter().zip(want) {
            assert_eq!((l.as_str(), s.as_str()), (wl, ws));
        }
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with(&format!(
            "{{\"log\":\"one\\n\",\"stream\":\"stdout\",\"time\":\"{T}\"}}\n"
        )));
    }

    #[test]
    fn long_lines_are_cut_at_16k() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut log = JsonLog::open(&p, 0, 1).unwrap();
        let mut data = vec![b'x'; MAX_LINE * 2 + 10];
        data.push(b'\n');
        // In two chunks, split inside the first piece.
        log.write(Stream::Stdout, &data[..100], &stamp()).unwrap();
        log.write(Stream::Stdout, &data[100..], &stamp()).unwrap();
        let lens: Vec<usize> = entries(&p).iter().map(|(l, _)| l.len()).collect();
        assert_eq!(lens, [MAX_LINE, MAX_LINE, 11]);
    }

    #[test]
    fn rotation_keeps_n_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut log = JsonLog::open(&p, 200, 3).unwrap();
        for i in 0..20 {
            log.write(
                Stream::Stdout,
                format!("line {i:02}\n").as_bytes(),
                &stamp(),
            )
            .unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["c.log", "c.log.1", "c.log.2"]);
        for n in &names {
            assert!(std::fs::metadata(d.path().join(n)).unwrap().len() <= 200);
        }
        // The newest lines are in FILE, older ones in FILE.1, and so on, in order.
        let all: Vec<String> = ["c.log.2", "c.log.1", "c.log"]
            .iter()
            .flat_map(|n| entries(&d.path().join(n)))
            .map(|(l, _)| l)
            .collect();
        assert_eq!(all.last().unwrap(), "line 19\n");
        let nums: Vec<u32> = all.iter().map(|l| l[5..7].parse().unwrap()).collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
    }

    #[test]
    fn one_file_is_truncated() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut log = JsonLog::open(&p, 200, 1).unwrap();
        for i in 0..20 {
            log.write(
                Stream::Stdout,
                format!("line {i:02}\n").as_bytes(),
                &stamp(),
            )
            .unwrap();
        }
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        let e = entries(&p);
        assert_eq!(e.last().unwrap().0, "line 19\n");
        assert!(std::fs::metadata(&p).unwrap().len() <= 200);
    }
}
