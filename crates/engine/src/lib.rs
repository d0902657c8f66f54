//! The engine: containers with Docker's behaviour on top of any runc-compatible runtime.
//!
//! So far one self-contained slice: turning `docker run`/`create` flags plus an image
//! config into the OCI runtime spec (config.json) Docker would generate.
//!
//! - [`flags`] — [`flags::RunOptions`] and the parsers for the value syntaxes of
//!   `docker run` (sizes, `-v`, `--mount`, `--ulimit`, …), with Docker's error texts.
//! - [`spec`] — [`spec::build_spec`]: image config + options + context → `Spec`.
//! - [`user`] — `-u` resolved against the container's /etc/passwd and /etc/group,
//!   read safely from a hostile rootfs.
//! - [`seccomp`] — Docker's default profile (shipped as JSON) and the conversion of
//!   Docker-format profiles into the OCI form for a container's capabilities.
//! - [`fs`] — a container's files from the host: `diff`, `export`, `cp`, `commit`.
//! - [`volumes`] — Docker's local volumes: the `volumes` table, mounts of volumes with
//!   options, and copy-up of image content into empty volumes.

pub mod attach;
pub mod container;
mod etc;
pub mod exec;
pub mod flags;
pub mod fs;
pub mod health;
pub mod logs;
mod names;
pub mod net;
pub mod options;
pub mod seccomp;
pub mod spec;
pub mod stats;
pub mod store;
pub mod user;
pub mod volumes;

pub use flags::{FlagError, RunOptions};
/// The network crate, for the CLI's port syntax and types.
pub use network;
pub use options::{CreateOptions, HealthCheck, LogDriver, RestartPolicy};
pub use spec::{build_spec, EtcFiles, SpecContext, SpecError};
pub use user::{ExecUser, RootfsUsers, StaticUsers, UserError, UserLookup};
