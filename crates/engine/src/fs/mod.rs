//! A container's files from the host: `berth diff`, `export`, `cp` and `commit`.
//!
//! Every path that comes from inside a container is hostile: the container (or the image
//! it came from) chose its symlinks, and a running container can swap a directory for a
//! symlink between two of our syscalls. So nothing here opens a container path with plain
//! `open(2)`. The container's root is an fd ([`view`]): the overlay mounted for a running
//! container, or for a stopped one an overlay mounted nowhere (a detached mount that goes
//! away with its fd). Paths are resolved under it with openat2(RESOLVE_IN_ROOT)
//! ([`resolve`]), so `..` and absolute symlinks stop at the container's `/`; files are then
//! created, read and changed with `*at` calls on single names, never following a symlink
//! at the last step ([`walk`], [`extract`]).
//!
//! - [`view`] — the container's root (running or stopped) under the container's lock, and
//!   the image's own layers for comparison.
//! - [`resolve`] — in-root resolution; Docker's path rules (`ResolvePath`,
//!   `FollowSymlinkInScope`) on top of it.
//! - [`walk`] — a tree read through fds as a stream of [`Entry`]s; tar in and out.
//! - [`extract`] — entries written under a directory of a root, never outside it.
//! - [`diff`] — `docker diff` from the container's upper directory.
//! - [`copy`] — `docker cp` in both directions and `docker export`.
//! - [`commit`] — `docker commit`: the upper directory as a new layer on the image.

pub mod commit;
pub mod copy;
pub mod diff;
pub mod extract;
pub mod resolve;
pub mod view;
pub mod walk;

pub use commit::{commit, CommitOptions};
pub use copy::{copy_from_container, copy_to_container, export, CopyFrom, CopyTo, Source};
pub use diff::{diff, Change, ChangeKind};
pub use walk::{Entry, Kind};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// Docker's wording for a path missing in the container.
    #[error("Could not find the file {path} in container {container}")]
    NotFound { path: String, container: String },
    #[error("{0}")]
    Engine(#[from] crate::container::EngineError),
    #[error("{0}")]
    Image(#[from] image::images::ImageError),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    /// A host path of the caller's.
    #[error("{}: {source}", path.display())]
    Local {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A tar entry whose name (after `..` is applied) leaves the directory it is
    /// extracted to.
    #[error("{name:?} is outside of {dest:?}")]
    Breakout { name: String, dest: String },
    #[error("reading the archive: {0}")]
    Archive(std::io::Error),
    #[error("writing the archive: {0}")]
    Output(std::io::Error),
    /// A usage error with Docker's text.
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, FsError>;

/// Maps a failed syscall on `path` to an error saying what was being done.
pub(crate) fn io_err<E: Into<std::io::Error>>(
    what: &'static str,
    path: impl std::fmt::Display,
) -> impl FnOnce(E) -> FsError {
    let path = path.to_string();
    move |e| FsError::Io {
        what,
        path,
        source: e.into(),
    }
}
