//! berth's OCI runtime as a library: a runtime-spec bundle in, an isolated process out.
//! The `berth-runtime` binary puts runc's command line on top of `container::*`.

pub mod caps;
pub mod console;
pub mod container;
pub mod error;
pub mod exeseal;
pub mod hooks;
pub mod init;
pub mod namespaces;
pub mod pidfd;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod signal;
pub mod sockpath;
pub mod spec;
pub mod state;
pub mod sync;
pub mod trace;

pub use error::{Error, Result};
