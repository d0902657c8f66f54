//! Extended attributes of one node, never through a symlink at it: by an open fd (the
//! `f*xattr` calls), or by a name in an open directory (the `l*xattr` calls on
//! `/proc/self/fd/DIR/NAME`, since they have no `*at` form), for what cannot be opened
//! without following it or opening a device (symlinks, devices, fifos).

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;

/// overlayfs's own bookkeeping (opaque, origin, redirect, impure…).
pub const OVERLAY_PREFIX: &[u8] = b"trusted.overlay.";

/// Values larger than this are refused (the kernel's own limit is 64 KiB).
const VALUE_MAX: usize = 1 << 20;

pub enum Node<'a> {
    Fd(BorrowedFd<'a>),
    /// `/proc/self/fd/DIR/NAME`: the last part is not followed by the `l*` calls.
    Path(CString),
}

impl Node<'_> {
    /// `name` in the open directory `dir`.
    pub fn at(dir: BorrowedFd, name: &OsStr) -> nix::Result<Node<'static>> {
        let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
        path.extend_from_slice(name.as_bytes());
        CString::new(path)
            .map(Node::Path)
            .map_err(|_| Errno::EINVAL)
    }

    fn list_into(&self, buf: &mut [u8]) -> nix::Result<usize> {
        let n = match self {
            // SAFETY: the fd is open; buf is writable for its whole length.
            Node::Fd(fd) => unsafe {
                libc::flistxattr(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
            },
            // SAFETY: path is NUL-terminated; buf is writable for its whole length.
            Node::Path(path) => unsafe {
                libc::llistxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
            },
        };
        Errno::result(n).map(|n| n as usize)
    }

    /// The names of its xattrs; none on a filesystem without them.
    pub fn names(&self) -> nix::Result<Vec<CString>> {
        let mut buf = vec![0u8; 1024];
        let len = loop {
            match self.list_into(&mut buf) {
                Ok(n) => break n,
                Err(Errno::ERANGE) if buf.len() < VALUE_MAX => buf.resize(buf.len() * 4, 0),
                Err(Errno::ENOTSUP) => return Ok(vec![]),
                Err(e) => return Err(e),
            }
        };
        buf[..len]
            .split(|b| *b == 0)
            .filter(|k| !k.is_empty())
            .map(|k| CString::new(k).map_err(|_| Errno::EINVAL))
            .collect()
    }

    /// One xattr's value; None when it is not set.
    pub fn get(&self, key: &CStr) -> nix::Result<Option<Vec<u8>>> {
        let mut value = vec![0u8; 256];
        loop {
            let n = match self {
                // SAFETY: the fd is open; key is NUL-terminated; value is writable for its
                // whole length.
                Node::Fd(fd) => unsafe {
                    libc::fgetxattr(
                        fd.as_raw_fd(),
                        key.as_ptr(),
                        value.as_mut_ptr().cast(),
                        value.len(),
                    )
                },
                // SAFETY: path and key are NUL-terminated; value is writable for its length.
                Node::Path(path) => unsafe {
                    libc::lgetxattr(
                        path.as_ptr(),
                        key.as_ptr(),
                        value.as_mut_ptr().cast(),
                        value.len(),
                    )
                },
            };
            match Errno::result(n) {
                Ok(n) => {
                    value.truncate(n as usize);
                    return Ok(Some(value));
                }
                Err(Errno::ERANGE) if value.len() < VALUE_MAX => value.resize(value.len() * 4, 0),
                Err(Errno::ENODATA | Errno::ENOTSUP) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    pub fn set(&self, key: &CStr, value: &[u8]) -> nix::Result<()> {
        let rc = match self {
            // SAFETY: the fd is open; key is NUL-terminated; value's pointer and length go
            // together; the call only reads them.
            Node::Fd(fd) => unsafe {
                libc::fsetxattr(
                    fd.as_raw_fd(),
                    key.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            },
            // SAFETY: path and key are NUL-terminated; value's pointer and length go
            // together; the call only reads them.
            Node::Path(path) => unsafe {
                libc::lsetxattr(
                    path.as_ptr(),
                    key.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            },
        };
        Errno::result(rc).map(drop)
    }

    pub fn remove(&self, key: &CStr) -> nix::Result<()> {
        let rc = match self {
            // SAFETY: the fd is open; key is NUL-terminated.
            Node::Fd(fd) => unsafe { libc::fremovexattr(fd.as_raw_fd(), key.as_ptr()) },
            // SAFETY: path and key are NUL-terminated.
            Node::Path(path) => unsafe { libc::lremovexattr(path.as_ptr(), key.as_ptr()) },
        };
        Errno::result(rc).map(drop)
    }

    /// Every xattr with its value but overlayfs's own, which mean nothing outside the
    /// overlay and would steer any overlay the node ends up in.
    pub fn all_but_overlay(&self) -> nix::Result<Vec<(CString, Vec<u8>)>> {
        let mut out = Vec::new();
        for key in self.names()? {
            if key.as_bytes().starts_with(OVERLAY_PREFIX) {
                continue;
            }
            if let Some(value) = self.get(&key)? {
                out.push((key, value));
            }
        }
        Ok(out)
    }
}
