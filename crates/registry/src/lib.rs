//! A client for the OCI distribution spec (and Docker's registry API, which it grew from),
//! and `pull`/`push` between registries and berth's image store.
//!
//! The HTTP stack is blocking (`ureq` with rustls): a pull is a handful of small requests
//! and one long stream per layer, so a thread per layer is all the concurrency it needs, and
//! each thread streams its layer through hashing, the blob store and unpacking in one pass.
//!
//! - `client` — one registry: transport (HTTPS, or plain HTTP for loopback and insecure
//!   registries), authentication, and the endpoints (manifests, blobs, uploads, mounts).
//! - `auth` — `WWW-Authenticate` challenges and bearer tokens, cached per scope.
//! - `credentials` — Docker's `config.json`: credentials for `login`, `logout` and requests.
//! - `pull` / `push` — whole images, layers in parallel, with progress events.

pub mod auth;
pub mod client;
pub mod credentials;
mod download;
mod error;
mod pull;
mod push;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use image::digest::Digest;

pub use client::Client;
pub use credentials::{AuthFile, Credentials};
pub use error::{Error, ErrorKind};
pub use pull::pull;
pub use push::push;

/// How to reach registries; the same for every registry of one command.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Allow plain HTTP and TLS without certificate checks for every registry (the CLI's
    /// `--tls-verify=false`). Loopback registries get plain HTTP without it, as in Docker.
    pub insecure: bool,
    /// The Docker-style `config.json` holding credentials; `None` means
    /// `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
    pub auth_file: Option<PathBuf>,
}

impl Options {
    /// The credentials file these options point at.
    pub fn auth_file(&self) -> AuthFile {
        match &self.auth_file {
            Some(path) => AuthFile::new(path.clone()),
            None => AuthFile::default_location(),
        }
    }
}

/// What happened to one layer blob, for progress displays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The blob's digest, as the manifest lists it.
    pub digest: Digest,
    pub progress: Progress,
}

/// The steps a blob goes through. A pull shows `Waiting`, then either `Exists`, or
/// `Downloading` (unpacked while it arrives) then `Verifying`, or `Extracting` (from a blob
/// already in the store); then `Done`. A push shows `Waiting`, then `Exists`, `Mounted` or
/// `Uploading`, then `Done`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Waiting,
    /// The blob and its snapshot were already in the store (pull), or the blob already in the
    /// repository (push).
    Exists,
    /// `done` of `total` bytes received.
    Downloading {
        done: u64,
        total: u64,
    },
    /// All bytes are in; checking the digest and making blob and snapshot durable.
    Verifying,
    /// Unpacking a blob the store already had.
    Extracting,
    /// `done` of `total` bytes sent.
    Uploading {
        done: u64,
        total: u64,
    },
    /// Mounted from another repository of the same registry: nothing sent.
    Mounted {
        from: String,
    },
    Done,
}

/// Login: checks `credentials` against the registry's `/v2/` (through its token service, if
/// it has one) and only then stores them in the credentials file.
pub fn login(registry: &str, credentials: &Credentials, options: &Options) -> Result<(), Error> {
    let registry = credentials::registry_of_key(registry);
    let context = || format!("login {registry}");
    let client = Client::connect_with(&registry, options, Some(credentials.clone()))
        .map_err(|kind| Error::new(context(), kind))?;
    client
        .check_login()
        .map_err(|kind| Error::new(context(), kind))?;
    options
        .auth_file()
        .store(&registry, credentials)
        .map_err(|kind| Error::new(context(), kind))
}

/// Logout: removes the registry's credentials. Returns whether there were any.
pub fn logout(registry: &str, options: &Options) -> Result<bool, Error> {
    let registry = credentials::registry_of_key(registry);
    options
        .auth_file()
        .remove(&registry)
        .map_err(|kind| Error::new(format!("logout {registry}"), kind))
}

/// Runs `work` on every item, `workers` at a time. The first error stops new work, raises
/// the flag passed to running work (so long transfers can stop early) and is returned.
pub(crate) fn for_each_parallel<T: Sync>(
    items: &[T],
    workers: usize,
    work: impl Fn(&T, &AtomicBool) -> Result<(), ErrorKind> + Sync,
) -> Result<(), ErrorKind> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers.min(items.len()) {
            s.spawn(|| {
                while !failed.load(Ordering::SeqCst) {
                    let Some(item) = items.get(next.fetch_add(1, Ordering::SeqCst)) else {
                        break;
                    };
                    if let Err(e) = work(item, &failed) {
                        // Recorded before the flag is raised, so the work it cancels can
                        // never get its "cancelled" in first.
                        first_error
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert(e);
                        failed.store(true, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    match first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
