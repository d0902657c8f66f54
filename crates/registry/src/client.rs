//! One registry, as the distribution spec sees it: `/v2/` ping, manifests, blobs, uploads
//! and cross-repository mounts, with authentication woven into every request.
//!
//! Transport: HTTPS with the system's roots by default. Loopback registries (`localhost`,
//! `127.0.0.0/8`, `::1`) are spoken to over plain HTTP, as Docker treats them as insecure;
//! `Options::insecure` allows any registry to use HTTPS without certificate checks, falling
//! back to plain HTTP when the registry does not speak TLS at all.
//!
//! Authentication: a request goes out with whatever the last challenge calls for (a cached
//! bearer token for its scopes, or Basic credentials); a 401 teaches the client the
//! challenge and the request is retried once with fresh authorization. Redirects are
//! followed by hand, so `Authorization` only ever goes to the registry's own origin (blob
//! storage behind a redirect gets a signed URL, not our token).

use std::io::{self, Read};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use image::digest::Digest;
use serde::Deserialize;
use ureq::http::{Response, StatusCode};
use ureq::tls::{RootCerts, TlsConfig};
use ureq::Body;

use crate::auth::{self, Challenge, TokenKey, TokenResponse};
use crate::credentials::Credentials;
use crate::error::{reason_phrase, ErrorKind};
use crate::Options;

/// Every manifest type berth understands, so a registry never has to convert (or pick a
/// deprecated schema 1 for an old client).
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// Manifests and indexes larger than this are refused (containerd's limit).
pub const MANIFEST_MAX: u64 = 4 << 20;
/// Error bodies and token answers are read up to this much.
const SMALL_BODY_MAX: u64 = 1 << 20;
const MAX_REDIRECTS: usize = 10;
/// Upload chunk size: big enough that PATCH round trips do not matter, small enough to hold
/// in memory (a chunk is re-sent after a 401, so it cannot be a one-shot stream).
pub const UPLOAD_CHUNK: usize = 16 << 20;

/// A registry connection: where it is, how to authenticate, which scopes requests need.
/// Shared by the threads of one pull or push.
pub struct Client {
    /// As references spell it: `localhost:5000`, `docker.io`.
    registry: String,
    /// `scheme://host[:port]` of the API.
    base: String,
    agent: ureq::Agent,
    credentials: Option<Credentials>,
    scopes: Vec<String>,
    upload_chunk: usize,
    /// The challenge of the registry's last 401; `None` until one came (or if none will).
    challenge: Mutex<Option<Challenge>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("registry", &self.registry)
            .field("base", &self.base)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// A request, before authorization is added.
struct Req<'a> {
    method: &'static str,
    url: String,
    headers: Vec<(&'static str, String)>,
    /// `None` for GET and HEAD; an (even empty) body otherwise, so it has a Content-Length.
    body: Option<&'a [u8]>,
}

impl<'a> Req<'a> {
    fn new(method: &'static str, url: String) -> Req<'a> {
        let body = match method {
            "GET" | "HEAD" => None,
            _ => Some(&[][..]),
        };
        Req {
            method,
            url,
            headers: Vec::new(),
            body,
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Req<'a> {
        self.headers.push((name, value.into()));
        self
    }

    fn body(mut self, body: &'a [u8]) -> Req<'a> {
        self.body = Some(body);
        self
    }
}

/// A blob being downloaded.
pub struct BlobStream {
    pub reader: Box<dyn Read + Send>,
    /// The Content-Length the registry announced, if any.
    pub length: Option<u64>,
}

/// What `HEAD` on a manifest told: all optional, registries differ in what they send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    pub digest: Option<Digest>,
    pub media_type: Option<String>,
    pub size: Option<u64>,
}

/// What a cross-repository mount did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    Mounted,
    /// The registry would not mount, and opened an upload session instead (at this URL).
    Upload(String),
}

impl Client {
    /// Connects to `registry` with the credentials stored for it, and pings `/v2/`.
    pub fn connect(registry: &str, options: &Options) -> Result<Client, ErrorKind> {
        let credentials = options.auth_file().get(registry)?;
        Client::connect_with(registry, options, credentials)
    }

    /// Connects with the given credentials (or anonymously), and pings `/v2/`.
    pub fn connect_with(
        registry: &str,
        options: &Options,
        credentials: Option<Credentials>,
    ) -> Result<Client, ErrorKind> {
        let host = api_host(registry);
        let local = is_loopback(&host);
        let schemes: &[&str] = match (local, options.insecure) {
            (true, _) => &["http"],
            (false, true) => &["https", "http"],
            (false, false) => &["https"],
        };
        let agent = new_agent(options.insecure, local);
        let mut last_err = None;
        for scheme in schemes {
            let client = Client {
                registry: registry.to_string(),
                base: format!("{scheme}://{host}"),
                agent: agent.clone(),
                credentials: credentials.clone(),
                scopes: Vec::new(),
                upload_chunk: UPLOAD_CHUNK,
                challenge: Mutex::new(None),
            };
            match client.ping() {
                Ok(()) => return Ok(client),
                // Only a registry that does not answer at all is retried without TLS.
                Err(e @ ErrorKind::Transport { .. }) => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.expect("at least one scheme is tried"))
    }

    /// The scopes tokens are requested for (`auth::repository_scope`).
    pub fn with_scopes(mut self, scopes: Vec<String>) -> Client {
        self.scopes = scopes;
        self
    }

    /// Blobs larger than this are uploaded in PATCH chunks of this size (default
    /// `UPLOAD_CHUNK`).
    pub fn with_upload_chunk(mut self, bytes: usize) -> Client {
        self.upload_chunk = bytes.max(1);
        self
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// `http://127.0.0.1:5000`, `https://registry-1.docker.io`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /v2/`: 200 (open registry) and 401 (auth needed, and how) both mean a v2 registry.
    fn ping(&self) -> Result<(), ErrorKind> {
        let url = format!("{}/v2/", self.base);
        let resp = self.run(&Req::new("GET", url.clone()), None)?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            401 => {
                self.learn_challenge(&resp);
                Ok(())
            }
            _ => Err(registry_error(resp)),
        }
    }

    /// For `login`: `/v2/` must answer 200 with our credentials (through the token service,
    /// when the registry uses one).
    pub fn check_login(&self) -> Result<(), ErrorKind> {
        let resp = self.send(Req::new("GET", format!("{}/v2/", self.base)))?;
        expect(resp, &[200]).map(drop)
    }

    fn url(&self, repository: &str, kind: &str, reference: &str) -> String {
        format!("{}/v2/{repository}/{kind}/{reference}", self.base)
    }

    /// `GET /v2/<name>/manifests/<reference>`: the document and the media type it was
    /// served as. The digest is the caller's to check.
    pub fn get_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<(Vec<u8>, Option<String>), ErrorKind> {
        let url = self.url(repository, "manifests", reference);
        let req = Req::new("GET", url.clone()).header("Accept", MANIFEST_ACCEPT);
        let resp = expect(self.send(req)?, &[200])?;
        let media_type = header(&resp, "content-type");
        let bytes = read_limited(resp, MANIFEST_MAX, &url, "manifest")?;
        Ok((bytes, media_type))
    }

    /// `HEAD /v2/<name>/manifests/<reference>`: the digest, media type and size the registry
    /// reports, or `None` if there is no such manifest.
    pub fn head_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<ManifestHead>, ErrorKind> {
        let url = self.url(repository, "manifests", reference);
        let resp = self.send(Req::new("HEAD", url).header("Accept", MANIFEST_ACCEPT))?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = expect(resp, &[200])?;
        let digest = header(&resp, "docker-content-digest").and_then(|d| d.parse().ok());
        let length = header(&resp, "content-length").and_then(|l| l.parse().ok());
        Ok(Some(ManifestHead {
            digest,
            media_type: header(&resp, "content-type"),
            size: length,
        }))
    }

    /// `PUT /v2/<name>/manifests/<reference>` with the bytes as they are, so the digest the
    /// registry computes is the one we have. Checks the digest the registry reports.
    pub fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(), ErrorKind> {
        let url = self.url(repository, "manifests", reference);
        let req = Req::new("PUT", url.clone())
            .header("Content-Type", media_type)
            .body(bytes);
        let resp = expect(self.send(req)?, &[200, 201, 202])?;
        let ours = Digest::sha256_of(bytes);
        match header(&resp, "docker-content-digest").map(|d| d.parse::<Digest>()) {
            Some(Ok(theirs)) if theirs.algorithm() == ours.algorithm() && theirs != ours => {
                Err(ErrorKind::DigestMismatch {
                    what: "pushed manifest",
                    expected: ours,
                    actual: theirs,
                })
            }
            _ => Ok(()),
        }
    }

    /// `GET /v2/<name>/blobs/<digest>`, following redirects; `Authorization` only goes to
    /// the registry's own origin.
    pub fn get_blob(&self, repository: &str, digest: &Digest) -> Result<BlobStream, ErrorKind> {
        let mut url = self.url(repository, "blobs", &digest.to_string());
        for _ in 0..=MAX_REDIRECTS {
            let req = Req::new("GET", url.clone());
            let resp = if origin(&url) == origin(&self.base) {
                self.send(req)?
            } else {
                self.run(&req, None)?
            };
            let status = resp.status().as_u16();
            if matches!(status, 301 | 302 | 303 | 307 | 308) {
                let location = header(&resp, "location").ok_or_else(|| ErrorKind::Protocol {
                    url: url.clone(),
                    reason: format!("redirect ({status}) without a Location"),
                })?;
                url = resolve(&url, &location);
                continue;
            }
            let resp = expect(resp, &[200])?;
            let length = header(&resp, "content-length").and_then(|l| l.parse().ok());
            return Ok(BlobStream {
                reader: Box::new(resp.into_body().into_reader()),
                length,
            });
        }
        Err(ErrorKind::Protocol {
            url,
            reason: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    /// `HEAD /v2/<name>/blobs/<digest>`: whether the repository has the blob.
    pub fn blob_exists(&self, repository: &str, digest: &Digest) -> Result<bool, ErrorKind> {
        let url = self.url(repository, "blobs", &digest.to_string());
        let resp = self.send(Req::new("HEAD", url))?;
        match resp.status().as_u16() {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(registry_error(resp)),
        }
    }

    /// `POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<repository>`: 201 means the blob
    /// is now in `repository`; 202 means the registry opened an upload instead.
    pub fn mount_blob(
        &self,
        repository: &str,
        digest: &Digest,
        from: &str,
    ) -> Result<Mount, ErrorKind> {
        let url = format!(
            "{}/v2/{repository}/blobs/uploads/?mount={}&from={}",
            self.base,
            auth::query_escape(&digest.to_string()),
            auth::query_escape(from)
        );
        let resp = expect(self.send(Req::new("POST", url.clone()))?, &[201, 202])?;
        if resp.status() == StatusCode::CREATED {
            return Ok(Mount::Mounted);
        }
        Ok(Mount::Upload(location(&resp, &url)?))
    }

    /// `POST /v2/<name>/blobs/uploads/`: opens an upload session and returns its URL.
    pub fn start_upload(&self, repository: &str) -> Result<String, ErrorKind> {
        let url = format!("{}/v2/{repository}/blobs/uploads/", self.base);
        let resp = expect(self.send(Req::new("POST", url.clone()))?, &[202])?;
        location(&resp, &url)
    }

    /// Sends a blob into an upload session: a single `PUT ?digest=` when it fits one chunk,
    /// else `PATCH` chunks (`Content-Range: start-end`) and a closing `PUT ?digest=`.
    /// `sent` is called with the bytes sent so far.
    pub fn upload_blob(
        &self,
        session: String,
        digest: &Digest,
        mut content: impl Read,
        sent: &mut dyn FnMut(u64),
    ) -> Result<(), ErrorKind> {
        let mut url = session;
        let mut buf = vec![0u8; self.upload_chunk];
        let mut offset = 0u64;
        loop {
            let n = read_full(&mut content, &mut buf).map_err(|e| ErrorKind::Content {
                what: "blob",
                digest: digest.clone(),
                reason: format!("reading from the store: {e}"),
            })?;
            if offset == 0 && n < buf.len() {
                // All of it fits in one request: the monolithic upload.
                self.finish_upload(&url, digest, &buf[..n])?;
                sent(n as u64);
                return Ok(());
            }
            if n == 0 {
                break;
            }
            let end = offset + n as u64 - 1;
            let req = Req::new("PATCH", url.clone())
                .header("Content-Type", "application/octet-stream")
                .header("Content-Range", format!("{offset}-{end}"))
                .body(&buf[..n]);
            let resp = expect(self.send(req)?, &[202])?;
            url = location(&resp, &url)?;
            offset += n as u64;
            sent(offset);
        }
        self.finish_upload(&url, digest, &[])
    }

    fn finish_upload(&self, session: &str, digest: &Digest, last: &[u8]) -> Result<(), ErrorKind> {
        let sep = if session.contains('?') { '&' } else { '?' };
        let url = format!(
            "{session}{sep}digest={}",
            auth::query_escape(&digest.to_string())
        );
        let req = Req::new("PUT", url)
            .header("Content-Type", "application/octet-stream")
            .body(last);
        expect(self.send(req)?, &[201, 204]).map(drop)
    }

    /// Sends a request with authorization; on a 401 learns the challenge and retries once.
    fn send(&self, req: Req<'_>) -> Result<Response<Body>, ErrorKind> {
        let auth = self.authorization(&self.scopes, false)?;
        let resp = self.run(&req, auth.as_deref())?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let Some(challenge) = self.learn_challenge(&resp) else {
            return Ok(resp);
        };
        let mut scopes = self.scopes.clone();
        match &challenge {
            Challenge::Basic { .. } if self.credentials.is_none() => return Ok(resp),
            Challenge::Bearer {
                scope: Some(scope), ..
            } => {
                // The registry says which scope it wants; ask for it too.
                for s in scope.split(' ') {
                    if !scopes.iter().any(|have| have == s) {
                        scopes.push(s.to_string());
                    }
                }
            }
            _ => {}
        }
        let auth = self.authorization(&scopes, true)?;
        self.run(&req, auth.as_deref())
    }

    /// Records the challenge of a 401 (Bearer preferred over Basic) and returns it.
    fn learn_challenge(&self, resp: &Response<Body>) -> Option<Challenge> {
        let mut challenges: Vec<Challenge> = resp
            .headers()
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(auth::parse_challenges)
            .collect();
        challenges.sort_by_key(|c| matches!(c, Challenge::Basic { .. }));
        let challenge = challenges.into_iter().next()?;
        *self.challenge.lock().unwrap_or_else(|e| e.into_inner()) = Some(challenge.clone());
        Some(challenge)
    }

    /// The Authorization header for `scopes` under the known challenge; `fresh` skips the
    /// token cache (the cached token was just refused).
    fn authorization(&self, scopes: &[String], fresh: bool) -> Result<Option<String>, ErrorKind> {
        let challenge = self
            .challenge
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic { .. }) => {
                Ok(self.credentials.as_ref().map(Credentials::basic_header))
            }
            Some(Challenge::Bearer { realm, service, .. }) => {
                let mut scopes = scopes.to_vec();
                scopes.sort();
                scopes.dedup();
                let key = TokenKey {
                    realm,
                    service,
                    scopes,
                    user: self.credentials.as_ref().map(|c| c.username.clone()),
                };
                if !fresh {
                    if let Some(token) = auth::cached_token(&key) {
                        return Ok(Some(format!("Bearer {token}")));
                    }
                }
                auth::forget_token(&key);
                let token = self.fetch_token(&key)?;
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// `GET <realm>?service=…&scope=…`, with Basic credentials when we have them
    /// (anonymous otherwise), and caches the token.
    fn fetch_token(&self, key: &TokenKey) -> Result<String, ErrorKind> {
        let mut query = Vec::new();
        if let Some(service) = &key.service {
            query.push(format!("service={}", auth::query_escape(service)));
        }
        for scope in &key.scopes {
            query.push(format!("scope={}", auth::query_escape(scope)));
        }
        if let Some(c) = &self.credentials {
            query.push(format!("account={}", auth::query_escape(&c.username)));
        }
        let sep = if key.realm.contains('?') { '&' } else { '?' };
        let url = if query.is_empty() {
            key.realm.clone()
        } else {
            format!("{}{sep}{}", key.realm, query.join("&"))
        };
        let fail = |source| ErrorKind::Token {
            realm: key.realm.clone(),
            source: Box::new(source),
        };
        let basic = self.credentials.as_ref().map(Credentials::basic_header);
        let resp = self
            .run(&Req::new("GET", url.clone()), basic.as_deref())
            .map_err(fail)?;
        let resp = expect(resp, &[200]).map_err(fail)?;
        let body = read_limited(resp, SMALL_BODY_MAX, &url, "token response").map_err(fail)?;
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            fail(ErrorKind::Protocol {
                url: key.realm.clone(),
                reason: format!("malformed token response: {e}"),
            })
        })?;
        let (token, lifetime) = parsed.into_token().ok_or_else(|| {
            fail(ErrorKind::Protocol {
                url: key.realm.clone(),
                reason: "token response holds no token".into(),
            })
        })?;
        auth::store_token(key.clone(), token.clone(), lifetime);
        Ok(token)
    }

    /// One HTTP exchange, no retries.
    fn run(&self, req: &Req<'_>, authorization: Option<&str>) -> Result<Response<Body>, ErrorKind> {
        let fail = |source| ErrorKind::Transport {
            method: req.method,
            url: req.url.clone(),
            source,
        };
        let mut builder = ureq::http::Request::builder()
            .method(req.method)
            .uri(&req.url);
        for (name, value) in &req.headers {
            builder = builder.header(*name, value);
        }
        if let Some(value) = authorization {
            builder = builder.header("Authorization", value);
        }
        let result = match req.body {
            Some(body) => builder.body(body).map(|r| self.agent.run(r)),
            None => builder.body(()).map(|r| self.agent.run(r)),
        };
        result
            .map_err(|e| fail(ureq::Error::Http(e)))?
            .map_err(fail)
    }
}

fn new_agent(insecure: bool, loopback: bool) -> ureq::Agent {
    let tls = TlsConfig::builder()
        .root_certs(RootCerts::PlatformVerifier)
        .disable_verification(insecure)
        .build();
    let mut config = ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .timeout_connect(Some(Duration::from_secs(30)))
        // A registry that stops sending for this long is gone; without it a pull could hang
        // forever on a dead connection.
        .timeout_per_read(Some(Duration::from_secs(120)));
    if loopback {
        config = config.proxy(None);
    }
    config.build().new_agent()
}

/// The host that serves a registry's API (Docker Hub's differs from its name).
fn api_host(registry: &str) -> String {
    match registry {
        "docker.io" | "index.docker.io" => "registry-1.docker.io".to_string(),
        other => other.to_string(),
    }
}

/// `localhost`, `127.0.0.0/8` and `::1`, with or without a port: registries Docker talks to
/// over plain HTTP without being told.
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `scheme://authority` of a URL.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| after_scheme + i);
    &url[..end]
}

/// A Location header against the URL it answered.
fn resolve(current: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else if location.starts_with("//") {
        let scheme = current.split("://").next().unwrap_or("https");
        format!("{scheme}:{location}")
    } else if location.starts_with('/') {
        format!("{}{location}", origin(current))
    } else {
        let path = current.split(['?', '#']).next().unwrap_or(current);
        let dir = &path[..path.rfind('/').map_or(path.len(), |i| i + 1)];
        format!("{dir}{location}")
    }
}

fn header(resp: &Response<Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn location(resp: &Response<Body>, url: &str) -> Result<String, ErrorKind> {
    header(resp, "location")
        .map(|l| resolve(url, &l))
        .ok_or_else(|| ErrorKind::Protocol {
            url: url.to_string(),
            reason: format!("{} without a Location", resp.status().as_u16()),
        })
}

/// The response if its status is one of `ok`, else the registry's error.
fn expect(resp: Response<Body>, ok: &[u16]) -> Result<Response<Body>, ErrorKind> {
    if ok.contains(&resp.status().as_u16()) {
        Ok(resp)
    } else {
        Err(registry_error(resp))
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    code: Option<String>,
    message: Option<String>,
}

/// The registry's error: status plus the first entry of its JSON error body, if any.
fn registry_error(resp: Response<Body>) -> ErrorKind {
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .with_config()
        .limit(SMALL_BODY_MAX)
        .read_to_vec()
        .unwrap_or_default();
    let entry = serde_json::from_slice::<ErrorBody>(&body)
        .ok()
        .and_then(|b| b.errors.into_iter().next());
    let (code, message) = match entry {
        Some(e) => (e.code, e.message.unwrap_or_default()),
        // HEAD answers have no body; the status is all there is.
        None => (None, reason_phrase(status).to_ascii_lowercase()),
    };
    ErrorKind::Registry {
        status,
        code,
        message,
    }
}

fn read_limited(
    resp: Response<Body>,
    limit: u64,
    url: &str,
    what: &str,
) -> Result<Vec<u8>, ErrorKind> {
    resp.into_body()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => ErrorKind::Protocol {
                url: url.to_string(),
                reason: format!("{what} is larger than {limit} bytes"),
            },
            source => ErrorKind::Transport {
                method: "GET",
                url: url.to_string(),
                source,
            },
        })
}

/// Fills `buf` unless the reader ends first; returns how much it read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "localhost:5000",
            "LOCALHOST:1",
            "127.0.0.1",
            "127.1.2.3:5000",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "example.com",
            "10.0.0.1:5000",
            "[::2]:5000",
            "localhost.example.com",
            "128.0.0.1",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn urls() {
        assert_eq!(origin("http://a:5000/v2/x?y"), "http://a:5000");
        assert_eq!(origin("https://a"), "https://a");
        let cur = "http://a:5000/v2/x/blobs/uploads/?mount=1";
        assert_eq!(resolve(cur, "https://b/c"), "https://b/c");
        assert_eq!(
            resolve(cur, "/v2/x/blobs/uploads/u1"),
            "http://a:5000/v2/x/blobs/uploads/u1"
        );
        assert_eq!(
            resolve(cur, "u2?s=1"),
            "http://a:5000/v2/x/blobs/uploads/u2?s=1"
        );
        assert_eq!(resolve(cur, "//c/d"), "http://c/d");
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("localhost:5000"), "localhost:5000");
    }
}
