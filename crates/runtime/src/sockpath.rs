//! Unix socket paths longer than sun_path (108 bytes) are common: containerd and dockerd put
//! runtime state several directories deep. Such a path is reached through an O_PATH handle
//! on its directory, `/proc/self/fd/N/NAME`, which the kernel resolves like any path.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Room in sockaddr_un.sun_path, less the terminating NUL.
const MAX: usize = 107;

/// A path to bind or connect to; keep it alive until the call is made.
pub struct SockPath {
    _dir: Option<File>,
    pub path: PathBuf,
}

pub fn short(path: &Path) -> std::io::Result<SockPath> {
    if path.as_os_str().len() <= MAX {
        return Ok(SockPath {
            _dir: None,
            path: path.to_path_buf(),
        });
    }
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    };
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(parent)?;
    let p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
    if p.as_os_str().len() > MAX {
        return Err(std::io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    Ok(SockPath {
        _dir: Some(dir),
        path: p,
    })
}

/// Connects to a unix socket at any path length.
pub fn connect(path: &Path) -> std::io::Result<std::os::unix::net::UnixStream> {
    std::os::unix::net::UnixStream::connect(&short(path)?.path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::{UnixListener, UnixStream};

    #[test]
    fn long_paths_bind_and_connect() {
        let t = tempfile::tempdir().unwrap();
        let deep = t.path().join("d".repeat(60)).join("e".repeat(60));
        std::fs::create_dir_all(&deep).unwrap();
        let sock = deep.join("start.sock");
        assert!(sock.as_os_str().len() > MAX);
        let l = UnixListener::bind(&short(&sock).unwrap().path).unwrap();
        assert!(sock.exists());
        let _c = UnixStream::connect(&short(&sock).unwrap().path).unwrap();
        l.accept().unwrap();
    }
}
