//! Reading and writing cgroup files with errors that name the file and the value.

use crate::{Error, Result};
use std::io::ErrorKind;
use std::path::Path;

pub fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    let path = dir.join(file);
    std::fs::write(&path, value).map_err(|e| {
        if e.kind() == ErrorKind::NotFound && dir.is_dir() {
            Error::Missing {
                file: file.into(),
                dir: dir.into(),
            }
        } else {
            Error::Io {
                what: format!("write {value:?} to"),
                path,
                err: e,
            }
        }
    })
}

/// Several values written to the same few files of one directory, each file opened once
/// and each value in a write(2) of its own.
pub struct Writers<'a> {
    dir: &'a Path,
    open: Vec<(&'static str, std::fs::File)>,
}

impl<'a> Writers<'a> {
    pub fn new(dir: &'a Path) -> Writers<'a> {
        Writers { dir, open: vec![] }
    }

    pub fn write(&mut self, file: &'static str, value: &str) -> Result<()> {
        use std::io::Write;
        let i = match self.open.iter().position(|(f, _)| *f == file) {
            Some(i) => i,
            None => {
                let path = self.dir.join(file);
                let f = std::fs::OpenOptions::new().write(true).open(&path);
                let f = match f {
                    Ok(f) => f,
                    // The same errors as `write`, which opens it again to say so.
                    Err(_) => return write(self.dir, file, value),
                };
                self.open.push((file, f));
                self.open.len() - 1
            }
        };
        self.open[i]
            .1
            .write_all(value.as_bytes())
            .map_err(|e| Error::Io {
                what: format!("write {value:?} to"),
                path: self.dir.join(file),
                err: e,
            })
    }
}

/// A kernel-generated text file (procfs, cgroupfs) in as few read(2) calls as possible.
/// These report a size of 0, so `std::fs::read_to_string` starts from a 32-byte probe
/// and doubles: mountinfo took a dozen reads, each resuming the kernel's generator.
pub fn read_text(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut buf = Vec::with_capacity(8192);
    std::fs::File::open(path)?.read_to_end(&mut buf)?;
    String::from_utf8(buf).map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))
}

pub fn read(dir: &Path, file: &str) -> Result<String> {
    let path = dir.join(file);
    read_text(&path).map_err(|e| Error::Io {
        what: "read".into(),
        path,
        err: e,
    })
}

/// Reads a file that may be absent (a controller feature this kernel lacks).
pub fn read_opt(dir: &Path, file: &str) -> Option<String> {
    read_text(&dir.join(file)).ok()
}

/// A single number; `max` reads as `u64::MAX`.
pub fn read_u64(dir: &Path, file: &str) -> Option<u64> {
    parse_u64(read_opt(dir, file)?.trim())
}

pub fn parse_u64(s: &str) -> Option<u64> {
    if s == "max" {
        return Some(u64::MAX);
    }
    s.parse().ok()
}

/// `key value` lines (memory.stat, cpu.stat, cgroup.events…).
pub fn read_keyed(dir: &Path, file: &str) -> Vec<(String, u64)> {
    read_opt(dir, file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?;
            let v = parse_u64(it.next()?)?;
            Some((k.to_string(), v))
        })
        .collect()
}

pub fn keyed(map: &[(String, u64)], key: &str) -> u64 {
    map.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| *v)
        .unwrap_or(0)
}

pub fn mkdir_all(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        what: "create cgroup".into(),
        path: dir.into(),
        err: e,
    })
}

/// Pids in `dir`'s cgroup.procs and in every child cgroup's.
pub fn collect_procs(dir: &Path, out: &mut Vec<i32>) -> Result<()> {
    let text = match read_text(&dir.join("cgroup.procs")) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(Error::Io {
                what: "read".into(),
                path: dir.join("cgroup.procs"),
                err: e,
            })
        }
    };
    out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    for child in subdirs(dir) {
        collect_procs(&child, out)?;
    }
    Ok(())
}

fn subdirs(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// rmdir of a cgroup and the cgroups the container made inside it, deepest first.
/// Files in a cgroup directory are kernel interfaces and go with the rmdir.
pub fn remove_tree(dir: &Path) -> Result<()> {
    for child in subdirs(dir) {
        remove_tree(&child)?;
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io {
            what: "remove cgroup".into(),
            path: dir.into(),
            err: e,
        }),
    }
}
