//! The runtime's error type. Every variant carries the context a user needs to act:
//! which container, which file, which field of config.json.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A failed system call, with what we were doing when it failed.
    #[error("{context}: {errno}")]
    Sys {
        context: String,
        errno: nix::errno::Errno,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// config.json is unreadable, malformed, or asks for something invalid.
    #[error("{path}: {msg}")]
    Config { path: PathBuf, msg: String },
    #[error("container {0} does not exist")]
    NotExist(String),
    #[error("container with id exists: {0}")]
    Exists(String),
    #[error(
        "invalid container id {0:?}: ids may contain only letters, digits, '_', '+', '-' and '.'"
    )]
    InvalidId(String),
    #[error("container not running")]
    NotRunning,
    #[error("{0}")]
    State(String),
    #[error(transparent)]
    Cgroup(#[from] cgroups::Error),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds context to syscall and io errors: `mount(...).sys(|| format!("mount {dst}"))?`.
pub trait Context<T> {
    fn ctx<S: Into<String>, F: FnOnce() -> S>(self, f: F) -> Result<T>;
}

impl<T> Context<T> for nix::Result<T> {
    fn ctx<S: Into<String>, F: FnOnce() -> S>(self, f: F) -> Result<T> {
        self.map_err(|errno| Error::Sys {
            context: f().into(),
            errno,
        })
    }
}

impl<T> Context<T> for std::io::Result<T> {
    fn ctx<S: Into<String>, F: FnOnce() -> S>(self, f: F) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: f().into(),
            source,
        })
    }
}
