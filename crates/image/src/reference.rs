//! Image references (`busybox`, `localhost:5000/app:1`, `name@sha256:…`), parsed and
//! normalised the way Docker does (distribution/reference `ParseNormalizedNamed`), so a name
//! typed for `docker pull` means the same image to berth.
//!
//! Grammar, from distribution/reference:
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [registry "/"] path
//! registry         := host [ ":" port ]          host: dns name, IPv4, or [IPv6]
//! path             := component [ "/" component ]*
//! component        := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//! tag              := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
//! ```
//!
//! The first path element is a registry only if it contains '.' or ':' or is `localhost`;
//! otherwise the image is on Docker Hub (`docker.io`), where one-element names live under
//! `library/`. A name without tag or digest gets the tag `latest`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::Digest;

/// Docker Hub, as it appears in normalised names.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// Docker Hub's old name, normalised to `DEFAULT_REGISTRY`.
const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";
/// Docker Hub's namespace for official images (`busybox` is `library/busybox`).
const OFFICIAL_PREFIX: &str = "library/";
pub const DEFAULT_TAG: &str = "latest";
/// Longest `registry/repository`, as in distribution/reference.
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// A reference that breaks the grammar; names the input and the rule broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid reference {input:?}: {reason}")]
pub struct ReferenceError {
    input: String,
    reason: String,
}

impl ReferenceError {
    fn new(input: &str, reason: impl Into<String>) -> ReferenceError {
        ReferenceError {
            input: input.to_string(),
            reason: reason.into(),
        }
    }

    /// The rule broken, without the input.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// A normalised image reference. After `parse`, `tag` is `None` only when `digest` is set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `docker.io`, `localhost:5000`, `[::1]:5000`…
    pub registry: String,
    /// The path inside the registry: `library/busybox`, `foo/bar`.
    pub repository: String,
    pub tag: Option<String>,
    /// When set, the digest decides what is pulled; the tag is only kept for display.
    pub digest: Option<Digest>,
}

impl Reference {
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        parse(input).map_err(|reason| ReferenceError::new(input, reason))
    }

    /// `registry/repository`, without tag or digest: `docker.io/library/busybox`.
    pub fn repo_name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// Docker's short name, without tag or digest: `busybox`, `foo/bar`, `localhost:5000/x`.
    pub fn familiar_name(&self) -> String {
        if self.registry != DEFAULT_REGISTRY {
            return self.repo_name();
        }
        match self.repository.strip_prefix(OFFICIAL_PREFIX) {
            Some(name) if !name.contains('/') => name.to_string(),
            _ => self.repository.clone(),
        }
    }

    /// Docker's short form, as `docker images` shows it: `busybox:latest`, `foo/bar:1`.
    pub fn familiar(&self) -> String {
        self.fmt_with_name(self.familiar_name())
    }

    /// The same repository with another tag (any digest is kept).
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        check_tag(tag).map_err(|reason| ReferenceError::new(tag, reason))?;
        Ok(Reference {
            tag: Some(tag.to_string()),
            ..self.clone()
        })
    }

    /// The same repository pinned to `digest`.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// What to ask the registry for (`/v2/<name>/manifests/<this>`): the digest when there is
    /// one, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    fn fmt_with_name(&self, mut name: String) -> String {
        if let Some(tag) = &self.tag {
            name.push(':');
            name.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            name.push('@');
            name.push_str(&digest.to_string());
        }
        name
    }
}

/// Parses and normalises; the error is the reason only, the caller adds the input.
fn parse(input: &str) -> Result<Reference, String> {
    if input.is_empty() {
        return Err("reference is empty".into());
    }
    if input.len() == 64
        && input
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        // Docker refuses these so an image ID is never taken for a repository name.
        return Err("a 64-character hex string is an image ID, not a repository name".into());
    }
    let (rest, digest) = split_digest(input)?;
    let (name, tag) = split_tag(rest);
    if let Some(tag) = tag {
        check_tag(tag)?;
    }
    if name.is_empty() {
        return Err("repository name is empty".into());
    }
    let (registry, repository) = split_registry(name);
    check_registry(&registry)?;
    check_repository(&repository)?;
    let full = registry.len() + 1 + repository.len();
    if full > NAME_MAX {
        return Err(format!(
            "name must be at most {NAME_MAX} characters, got {full}"
        ));
    }
    let tag = match (tag, &digest) {
        (Some(tag), _) => Some(tag.to_string()),
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_TAG.to_string()),
    };
    Ok(Reference {
        registry,
        repository,
        tag,
        digest,
    })
}

fn split_digest(input: &str) -> Result<(&str, Option<Digest>), String> {
    let Some((rest, digest)) = input.split_once('@') else {
        return Ok((input, None));
    };
    let digest = digest
        .parse::<Digest>()
        .map_err(|e| format!("bad digest {digest:?}: {}", e.reason()))?;
    Ok((rest, Some(digest)))
}

/// The tag is after the last ':' that follows the last '/'; an earlier ':' is a port.
fn split_tag(rest: &str) -> (&str, Option<&str>) {
    match rest.rfind(':') {
        Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    }
}

/// Splits off the registry by Docker's rule and applies Docker Hub's normalisation.
fn split_registry(name: &str) -> (String, String) {
    let (registry, path) = match name.split_once('/') {
        Some((first, path)) if looks_like_registry(first) => (first, path),
        _ => (DEFAULT_REGISTRY, name),
    };
    let registry = if registry == LEGACY_DEFAULT_REGISTRY {
        DEFAULT_REGISTRY
    } else {
        registry
    };
    if registry == DEFAULT_REGISTRY && !path.contains('/') {
        return (registry.to_string(), format!("{OFFICIAL_PREFIX}{path}"));
    }
    (registry.to_string(), path.to_string())
}

fn looks_like_registry(first: &str) -> bool {
    first.contains(['.', ':']) || first == "localhost"
}

fn check_tag(tag: &str) -> Result<(), String> {
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    if bytes.is_empty() {
        return Err("tag is empty".into());
    }
    if bytes.len() > TAG_MAX {
        return Err(format!(
            "tag must be at most {TAG_MAX} characters, got {}",
            bytes.len()
        ));
    }
    if !is_word(bytes[0]) {
        return Err(format!(
            "tag {tag:?} must start with a letter, digit or '_'"
        ));
    }
    if !bytes.iter().all(|&b| is_word(b) || b == b'.' || b == b'-') {
        return Err(format!(
            "tag {tag:?} may contain only letters, digits, '_', '.' and '-'"
        ));
    }
    Ok(())
}

/// `host[:port]`, host a DNS name, IPv4 address or bracketed IPv6 address.
fn check_registry(registry: &str) -> Result<(), String> {
    let port = match registry.strip_prefix('[') {
        Some(v6) => check_ipv6_host(v6),
        None => {
            let (host, port) = match registry.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (registry, None),
            };
            if host.split('.').all(is_host_label) {
                Ok(port)
            } else {
                Err("is not a valid host name")
            }
        }
    };
    let valid_port = |p: &str| p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok();
    match port {
        Ok(Some(port)) if !valid_port(port) => Err("has an invalid port (want 0-65535)"),
        Ok(_) => Ok(()),
        Err(why) => Err(why),
    }
    .map_err(|why| format!("registry {registry:?} {why}"))
}

/// Checks `::1]` or `::1]:port` (the part after '['); returns the port, if any.
fn check_ipv6_host(v6: &str) -> Result<Option<&str>, &'static str> {
    let Some((addr, rest)) = v6.split_once(']') else {
        return Err("is missing ']'");
    };
    if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
        return Err("has an invalid IPv6 address");
    }
    match rest {
        "" => Ok(None),
        _ => rest
            .strip_prefix(':')
            .map(Some)
            .ok_or("has junk after the IPv6 address"),
    }
}

/// A DNS label: letters, digits and inner '-'. Case is allowed: host names are not
/// case-sensitive, unlike repository paths.
fn is_host_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
        }
        _ => false,
    }
}

fn check_repository(repository: &str) -> Result<(), String> {
    // Checked before the grammar so the common mistake gets Docker's plain message.
    if repository.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("repository name must be lowercase".into());
    }
    for component in repository.split('/') {
        if component.is_empty() {
            return Err(
                "repository name has an empty path component (leading, trailing or double '/')"
                    .into(),
            );
        }
        if !is_path_component(component) {
            return Err(format!(
                "repository path component {component:?} must be lowercase letters and digits, \
                 separated by '.', '_', '__' or dashes"
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+ ( ("." | "_" | "__" | "-"+) [a-z0-9]+ )*`
fn is_path_component(component: &str) -> bool {
    let is_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) if is_alnum(first) && is_alnum(last) => {}
        _ => return false,
    }
    // Every maximal run of non-alphanumerics must be one allowed separator.
    let mut i = 0;
    while i < bytes.len() {
        if is_alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let dashes = separator.bytes().all(|b| b == b'-');
        if !(dashes || separator == "." || separator == "_" || separator == "__") {
            return false;
        }
    }
    true
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse(s)
    }
}

/// The full normalised form: `docker.io/library/busybox:latest`.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fmt_with_name(self.repo_name()))
    }
}

impl Serialize for Reference {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Reference {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Reference, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    fn sha(s: &str) -> String {
        s.replace("SHA", &format!("sha256:{HEX}"))
    }

    /// input, registry, repository, tag, has digest, Display, familiar()
    /// ("SHA" stands for `sha256:<HEX>`.)
    type Valid = (
        &'static str,
        &'static str,
        &'static str,
        Option<&'static str>,
        bool,
        &'static str,
        &'static str,
    );

    #[rustfmt::skip]
    const VALID: &[Valid] = &[
        ("busybox", "docker.io", "library/busybox", Some("latest"), false,
         "docker.io/library/busybox:latest", "busybox:latest"),
        ("foo/bar", "docker.io", "foo/bar", Some("latest"), false,
         "docker.io/foo/bar:latest", "foo/bar:latest"),
        ("foo/bar:1", "docker.io", "foo/bar", Some("1"), false,
         "docker.io/foo/bar:1", "foo/bar:1"),
        ("localhost/foo", "localhost", "foo", Some("latest"), false,
         "localhost/foo:latest", "localhost/foo:latest"),
        ("localhost:5000/foo", "localhost:5000", "foo", Some("latest"), false,
         "localhost:5000/foo:latest", "localhost:5000/foo:latest"),
        ("localhost:5000/x", "localhost:5000", "x", Some("latest"), false,
         "localhost:5000/x:latest", "localhost:5000/x:latest"),
        ("127.0.0.1:5000/x/y", "127.0.0.1:5000", "x/y", Some("latest"), false,
         "127.0.0.1:5000/x/y:latest", "127.0.0.1:5000/x/y:latest"),
        ("my.registry.io/x", "my.registry.io", "x", Some("latest"), false,
         "my.registry.io/x:latest", "my.registry.io/x:latest"),
        ("My.Registry.io/x:V1", "My.Registry.io", "x", Some("V1"), false,
         "My.Registry.io/x:V1", "My.Registry.io/x:V1"),
        ("[::1]:5000/foo", "[::1]:5000", "foo", Some("latest"), false,
         "[::1]:5000/foo:latest", "[::1]:5000/foo:latest"),
        ("index.docker.io/foo", "docker.io", "library/foo", Some("latest"), false,
         "docker.io/library/foo:latest", "foo:latest"),
        ("index.docker.io/foo/bar", "docker.io", "foo/bar", Some("latest"), false,
         "docker.io/foo/bar:latest", "foo/bar:latest"),
        ("docker.io/busybox", "docker.io", "library/busybox", Some("latest"), false,
         "docker.io/library/busybox:latest", "busybox:latest"),
        ("docker.io/library/busybox:1.36", "docker.io", "library/busybox", Some("1.36"), false,
         "docker.io/library/busybox:1.36", "busybox:1.36"),
        ("library/a/b", "docker.io", "library/a/b", Some("latest"), false,
         "docker.io/library/a/b:latest", "library/a/b:latest"),
        ("busybox:1.36.1-musl", "docker.io", "library/busybox", Some("1.36.1-musl"), false,
         "docker.io/library/busybox:1.36.1-musl", "busybox:1.36.1-musl"),
        ("busybox:Latest_", "docker.io", "library/busybox", Some("Latest_"), false,
         "docker.io/library/busybox:Latest_", "busybox:Latest_"),
        ("busybox:_x", "docker.io", "library/busybox", Some("_x"), false,
         "docker.io/library/busybox:_x", "busybox:_x"),
        ("busybox@SHA", "docker.io", "library/busybox", None, true,
         "docker.io/library/busybox@SHA", "busybox@SHA"),
        ("busybox:1@SHA", "docker.io", "library/busybox", Some("1"), true,
         "docker.io/library/busybox:1@SHA", "busybox:1@SHA"),
        ("localhost:5000/x:v1@SHA", "localhost:5000", "x", Some("v1"), true,
         "localhost:5000/x:v1@SHA", "localhost:5000/x:v1@SHA"),
        ("a/b/c/d", "docker.io", "a/b/c/d", Some("latest"), false,
         "docker.io/a/b/c/d:latest", "a/b/c/d:latest"),
        ("a__b/c.d_e/f-----g", "docker.io", "a__b/c.d_e/f-----g", Some("latest"), false,
         "docker.io/a__b/c.d_e/f-----g:latest", "a__b/c.d_e/f-----g:latest"),
        // Docker reads a lone `localhost:5000` as image "localhost", tag "5000".
        ("localhost:5000", "docker.io", "library/localhost", Some("5000"), false,
         "docker.io/library/localhost:5000", "localhost:5000"),
    ];

    #[test]
    fn valid_references() {
        for &(input, registry, repository, tag, has_digest, display, familiar) in VALID {
            let input = sha(input);
            let r = Reference::parse(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.registry, registry, "{input}");
            assert_eq!(r.repository, repository, "{input}");
            assert_eq!(r.tag.as_deref(), tag, "{input}");
            assert_eq!(r.digest.is_some(), has_digest, "{input}");
            assert_eq!(r.to_string(), sha(display), "{input}");
            assert_eq!(r.familiar(), sha(familiar), "{input}");
            // The normalised and the familiar forms parse back to the same reference.
            assert_eq!(Reference::parse(&r.to_string()).unwrap(), r, "{input}");
            assert_eq!(Reference::parse(&r.familiar()).unwrap(), r, "{input}");
        }
    }

    #[test]
    fn invalid_references() {
        let long_tag = format!("busybox:{}", "a".repeat(129));
        let long_name = "a".repeat(250);
        let cases: &[(&str, &str)] = &[
            ("", "reference is empty"),
            ("Foo", "repository name must be lowercase"),
            ("foo/Bar", "repository name must be lowercase"),
            ("LOCALHOST/foo", "repository name must be lowercase"),
            ("busybox:", "tag is empty"),
            (":tag", "repository name is empty"),
            ("@sha256:0", "bad digest"),
            ("foo/", "empty path component"),
            ("/foo", "empty path component"),
            ("foo//bar", "empty path component"),
            ("localhost:5000/", "empty path component"),
            (&long_tag, "tag must be at most 128 characters, got 129"),
            ("busybox:-x", "must start with a letter, digit or '_'"),
            ("busybox:a+b", "may contain only"),
            ("foo@sha256:abc", "bad digest \"sha256:abc\""),
            ("foo@", "bad digest"),
            ("foo@md5:abc", "unsupported algorithm"),
            ("a___b", "path component \"a___b\""),
            ("a..b", "path component"),
            ("a._b", "path component"),
            ("-a", "path component"),
            ("a-", "path component"),
            ("foo bar", "path component"),
            ("foo:bar:baz", "path component \"foo:bar\""),
            ("localhost:port/foo", "invalid port"),
            ("localhost:99999/foo", "invalid port"),
            ("localhost:/foo", "invalid port"),
            ("my..registry/foo", "not a valid host name"),
            ("-bad.io/foo", "not a valid host name"),
            ("[::1/foo", "missing ']'"),
            ("[zz]:5000/foo", "invalid IPv6"),
            (HEX, "image ID"),
            (&long_name, "name must be at most 255 characters, got 268"),
        ];
        for (input, want) in cases {
            let err = Reference::parse(input).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("invalid reference {input:?}: ")),
                "{msg}"
            );
            assert!(msg.contains(want), "{input:?}: got {msg:?}, want {want:?}");
            assert!(!msg.contains('\n'), "{msg}");
        }
    }

    #[test]
    fn error_message_format() {
        assert_eq!(
            Reference::parse("Foo").unwrap_err().to_string(),
            "invalid reference \"Foo\": repository name must be lowercase"
        );
    }

    #[test]
    fn longest_tag_and_name_accepted() {
        let tag = format!("busybox:{}", "a".repeat(128));
        assert!(Reference::parse(&tag).is_ok());
        // docker.io/library/ is 18 characters; 18 + 237 = 255.
        assert!(Reference::parse(&"a".repeat(237)).is_ok());
        assert!(Reference::parse(&"a".repeat(238)).is_err());
    }

    #[test]
    fn helpers() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.repo_name(), "docker.io/library/busybox");
        assert_eq!(r.familiar_name(), "busybox");
        assert_eq!(r.manifest_ref(), "latest");

        let tagged = r.with_tag("1.36").unwrap();
        assert_eq!(tagged.to_string(), "docker.io/library/busybox:1.36");
        let err = r.with_tag("bad tag").unwrap_err();
        assert!(err.to_string().contains("may contain only"), "{err}");

        let digest: Digest = format!("sha256:{HEX}").parse().unwrap();
        let pinned = tagged.with_digest(digest.clone());
        assert_eq!(
            pinned.manifest_ref(),
            digest.to_string(),
            "digest wins for pulling"
        );
        assert_eq!(pinned.familiar(), format!("busybox:1.36@{digest}"));

        let other = Reference::parse("localhost:5000/app/web:2").unwrap();
        assert_eq!(other.familiar_name(), "localhost:5000/app/web");
        assert_eq!(other.repo_name(), "localhost:5000/app/web");
    }

    #[test]
    fn serde_as_string() {
        let r = Reference::parse("foo/bar:1").unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, "\"docker.io/foo/bar:1\"");
        assert_eq!(serde_json::from_str::<Reference>(&json).unwrap(), r);
        assert!(serde_json::from_str::<Reference>("\"Foo\"").is_err());
    }
}
