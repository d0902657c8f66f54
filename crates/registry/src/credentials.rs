//! Credentials in Docker's `config.json` (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`), so `docker login` and `berth login` share them:
//! `{"auths": {"<registry>": {"auth": base64("user:password")}}}`. Docker Hub's key is
//! `https://index.docker.io/v1/`; keys with a scheme or path match by host.
//!
//! Credential helpers (`credsStore`, `credHelpers`) and identity tokens are not supported;
//! everything else in the file is kept as it is when berth writes it.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::error::ErrorKind;

/// Docker Hub's key in `auths`, as `docker login` writes it.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

// Hand-written so a password never lands in a log through `{:?}`.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    pub fn new(username: &str, password: &str) -> Credentials {
        Credentials {
            username: username.to_string(),
            password: password.to_string(),
        }
    }

    /// The value of an `Authorization: Basic` header.
    pub fn basic_header(&self) -> String {
        format!("Basic {}", self.encoded())
    }

    fn encoded(&self) -> String {
        STANDARD.encode(format!("{}:{}", self.username, self.password))
    }
}

/// The registry a config key names: `https://index.docker.io/v1/` → `docker.io`,
/// `http://localhost:5000/v2/` → `localhost:5000`.
pub fn registry_of_key(key: &str) -> String {
    let host = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = host.split('/').next().unwrap_or(host);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        other => other.to_string(),
    }
}

/// The key to write for a registry: Docker's own for Docker Hub, the bare host otherwise.
fn key_of_registry(registry: &str) -> String {
    if registry == "docker.io" {
        DOCKER_HUB_KEY.to_string()
    } else {
        registry.to_string()
    }
}

/// One credentials file.
#[derive(Debug, Clone)]
pub struct AuthFile {
    path: PathBuf,
}

impl AuthFile {
    pub fn new(path: PathBuf) -> AuthFile {
        AuthFile { path }
    }

    /// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    pub fn default_location() -> AuthFile {
        let home = std::env::var_os("HOME").or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.dir.into_os_string())
        });
        AuthFile::new(location(
            std::env::var_os("DOCKER_CONFIG").as_deref(),
            home.as_deref(),
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The credentials stored for `registry`, if any.
    pub fn get(&self, registry: &str) -> Result<Option<Credentials>, ErrorKind> {
        let Some(config) = self.read()? else {
            return Ok(None);
        };
        let Some(auths) = config.get("auths").and_then(Value::as_object) else {
            return Ok(None);
        };
        // An exact key first, so a file holding both `host` and `https://host` is read the
        // way Docker reads it.
        let entry = auths.get(&key_of_registry(registry)).or_else(|| {
            auths
                .iter()
                .find(|(key, _)| registry_of_key(key) == registry)
                .map(|(_, v)| v)
        });
        match entry {
            Some(entry) => self.decode(registry, entry).map(Some),
            None => Ok(None),
        }
    }

    fn decode(&self, registry: &str, entry: &Value) -> Result<Credentials, ErrorKind> {
        let field = |name| entry.get(name).and_then(Value::as_str).unwrap_or("");
        if !field("auth").is_empty() {
            let bytes = STANDARD
                .decode(field("auth"))
                .map_err(|e| self.invalid(format!("auths.{registry}.auth: {e}")))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| self.invalid(format!("auths.{registry}.auth is not UTF-8")))?;
            let (user, pass) = text.split_once(':').ok_or_else(|| {
                self.invalid(format!("auths.{registry}.auth is not user:password"))
            })?;
            return Ok(Credentials::new(user, pass));
        }
        // Old files (and some tools) write the two fields instead.
        Ok(Credentials::new(field("username"), field("password")))
    }

    /// Adds or replaces the credentials for `registry`, keeping the rest of the file.
    pub fn store(&self, registry: &str, credentials: &Credentials) -> Result<(), ErrorKind> {
        let mut config = self.read()?.unwrap_or_default();
        let auths = config
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        let Some(auths) = auths.as_object_mut() else {
            return Err(self.invalid("\"auths\" is not an object".into()));
        };
        auths.retain(|key, _| registry_of_key(key) != registry);
        auths.insert(
            key_of_registry(registry),
            serde_json::json!({ "auth": credentials.encoded() }),
        );
        self.write(&config)
    }

    /// Removes every entry for `registry`. Returns whether there was one.
    pub fn remove(&self, registry: &str) -> Result<bool, ErrorKind> {
        let Some(mut config) = self.read()? else {
            return Ok(false);
        };
        let Some(auths) = config.get_mut("auths").and_then(Value::as_object_mut) else {
            return Ok(false);
        };
        let before = auths.len();
        auths.retain(|key, _| registry_of_key(key) != registry);
        if auths.len() == before {
            return Ok(false);
        }
        self.write(&config)?;
        Ok(true)
    }

    fn read(&self) -> Result<Option<Map<String, Value>>, ErrorKind> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.invalid(format!("reading: {e}"))),
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(map)) => Ok(Some(map)),
            Ok(_) => Err(self.invalid("not a JSON object".into())),
            Err(e) => Err(self.invalid(format!("malformed JSON: {e}"))),
        }
    }

    /// Writes a temp file (mode 0600) next to the real one, syncs it and renames it over, so
    /// a crash leaves the old file or the new one, and the secrets are never world-readable.
    fn write(&self, config: &Map<String, Value>) -> Result<(), ErrorKind> {
        let fail = |what: &str, e: io::Error| self.invalid(format!("{what}: {e}"));
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| fail("creating its directory", e))?;
        let mut text =
            serde_json::to_vec_pretty(config).map_err(|e| fail("encoding", io::Error::other(e)))?;
        text.push(b'\n');
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            self.path
                .file_name()
                .and_then(OsStr::to_str)
                .unwrap_or("config.json"),
            std::process::id()
        ));
        let result = write_new(&tmp, &text).and_then(|()| fs::rename(&tmp, &self.path));
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(fail("writing", e));
        }
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| fail("syncing its directory", e))
    }

    fn invalid(&self, reason: String) -> ErrorKind {
        ErrorKind::Credentials {
            path: self.path.clone(),
            reason,
        }
    }
}

fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let _ = fs::remove_file(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Where the file is, from `$DOCKER_CONFIG` and `$HOME` (separate for testing).
pub fn location(docker_config: Option<&OsStr>, home: Option<&OsStr>) -> PathBuf {
    match docker_config.filter(|d| !d.is_empty()) {
        Some(dir) => Path::new(dir).join("config.json"),
        None => Path::new(home.unwrap_or(OsStr::new("/")))
            .join(".docker")
            .join("config.json"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn location_from_env() {
        assert_eq!(
            location(Some(OsStr::new("/cfg")), Some(OsStr::new("/home/u"))),
            Path::new("/cfg/config.json")
        );
        assert_eq!(
            location(None, Some(OsStr::new("/home/u"))),
            Path::new("/home/u/.docker/config.json")
        );
        assert_eq!(
            location(Some(OsStr::new("")), Some(OsStr::new("/root"))),
            Path::new("/root/.docker/config.json")
        );
    }

    #[test]
    fn keys_name_registries() {
        assert_eq!(registry_of_key(DOCKER_HUB_KEY), "docker.io");
        assert_eq!(registry_of_key("docker.io"), "docker.io");
        assert_eq!(
            registry_of_key("http://localhost:5000/v2/"),
            "localhost:5000"
        );
        assert_eq!(registry_of_key("[::1]:5000"), "[::1]:5000");
    }

    #[test]
    fn store_get_remove_keep_other_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.json");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        // Docker's file as `docker login` leaves it, with settings berth must not lose.
        let docker = format!(
            r#"{{"auths":{{"{DOCKER_HUB_KEY}":{{"auth":"{}"}}}},"detachKeys":"ctrl-x"}}"#,
            STANDARD.encode("hub:secret")
        );
        fs::write(&path, docker).unwrap();
        let file = AuthFile::new(path.clone());
        assert_eq!(
            file.get("docker.io").unwrap(),
            Some(Credentials::new("hub", "secret"))
        );
        assert_eq!(file.get("localhost:5000").unwrap(), None);

        file.store("localhost:5000", &Credentials::new("me", "p:w"))
            .unwrap();
        assert_eq!(
            file.get("localhost:5000").unwrap(),
            Some(Credentials::new("me", "p:w")),
            "a password may contain ':'"
        );
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"detachKeys\": \"ctrl-x\""), "{text}");
        assert!(!text.contains("p:w"), "stored encoded");

        assert!(file.remove("docker.io").unwrap());
        assert!(!file.remove("docker.io").unwrap());
        assert_eq!(file.get("docker.io").unwrap(), None);
        assert!(file.get("localhost:5000").unwrap().is_some());
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temp file left");
    }

    #[test]
    fn missing_and_broken_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/config.json");
        let file = AuthFile::new(path.clone());
        assert_eq!(file.get("x").unwrap(), None);
        assert!(!file.remove("x").unwrap());
        file.store("x", &Credentials::new("u", "p")).unwrap();
        let dir_mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);

        fs::write(&path, "{not json").unwrap();
        let err = file.get("x").unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "credentials file {}: malformed JSON",
                path.display()
            )),
            "{err}"
        );
        fs::write(&path, r#"{"auths":{"x":{"auth":"%%%"}}}"#).unwrap();
        let err = file.get("x").unwrap_err().to_string();
        assert!(err.contains("auths.x.auth"), "{err}");
        assert!(
            !format!("{:?}", Credentials::new("u", "hunter2")).contains("hunter2"),
            "Debug hides the password"
        );
    }
}
