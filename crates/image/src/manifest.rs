//! Image manifests and indexes as registries and archives hand them over: OCI and Docker
//! schema 2, told apart by media type (or, when nobody says, by shape), parsed into
//! oci-spec's types; platform selection in an index (`--platform`, default the host); and
//! layer compression by media type or by magic bytes.
//!
//! Docker schema 2 documents have the same shape as OCI ones, so both parse into
//! `ImageManifest` / `ImageIndex`; their Docker media types stay in `media_type()` as
//! `MediaType::Other`. Docker schema 1 (signed JSON with `fsLayers`, deprecated since 2017)
//! is refused.

use std::fmt;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, Platform as OciPlatform};
use serde::de::IgnoredAny;
use serde::Deserialize;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const OCI_LAYER_NONDISTRIBUTABLE: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar";
pub const OCI_LAYER_NONDISTRIBUTABLE_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
pub const OCI_LAYER_NONDISTRIBUTABLE_ZSTD: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Windows base layers that registries may not serve; fetched from the descriptor's `urls`.
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Media types that say nothing about the document (some servers send them for anything).
const GENERIC_TYPES: [&str; 3] = ["application/json", "application/octet-stream", "text/plain"];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Docker schema 1 manifests are not supported (deprecated since 2017): re-push the image with a current client")]
    Schema1,
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    #[error("manifest served as {served:?} but its mediaType field says {declared:?}")]
    MediaTypeMismatch { served: String, declared: String },
    #[error("unsupported manifest schemaVersion {0} (expected 2)")]
    SchemaVersion(u64),
    #[error("document is neither an image manifest (\"layers\") nor an index (\"manifests\")")]
    UnknownShape,
    #[error("malformed {what}: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("invalid platform {input:?}: {reason}")]
    InvalidPlatform { input: String, reason: String },
    #[error("no image for platform {wanted} in the index (available: {available})")]
    NoPlatform { wanted: Platform, available: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// What a manifest document turned out to be.
// One value lives briefly per document read; boxing would only make every match noisier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Manifest(ImageManifest),
    Index(ImageIndex),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Manifest,
    Index,
}

/// Just enough of a document to decide what it is before parsing it for real.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<u64>,
    media_type: Option<String>,
    manifests: Option<IgnoredAny>,
    layers: Option<IgnoredAny>,
}

/// Parses a manifest or index. `media_type` is what the server or the referring descriptor
/// said the document is; it wins over the document's own `mediaType` field only in the
/// sense that the two must agree. Without either, the shape decides.
pub fn parse(bytes: &[u8], media_type: Option<&str>) -> Result<Parsed> {
    let probe: Probe = serde_json::from_slice(bytes).map_err(|source| Error::Json {
        what: "manifest JSON",
        source,
    })?;
    // Schema 1 is recognised before anything else, so its users get the clear message.
    let served = media_type
        .map(essence)
        .filter(|t| !GENERIC_TYPES.contains(t));
    if probe.schema_version == Some(1) || served.is_some_and(is_schema1) {
        return Err(Error::Schema1);
    }
    if let Some(version) = probe.schema_version.filter(|&v| v != 2) {
        return Err(Error::SchemaVersion(version));
    }
    let declared = probe.media_type.as_deref().map(essence);
    if let (Some(served), Some(declared)) = (served, declared) {
        if served != declared {
            return Err(Error::MediaTypeMismatch {
                served: served.to_string(),
                declared: declared.to_string(),
            });
        }
    }
    let kind = match served.or(declared) {
        Some(t) => kind_of(t)?,
        None => kind_by_shape(&probe)?,
    };
    match kind {
        Kind::Manifest => serde_json::from_slice(bytes)
            .map(Parsed::Manifest)
            .map_err(|source| Error::Json {
                what: "image manifest",
                source,
            }),
        Kind::Index => serde_json::from_slice(bytes)
            .map(Parsed::Index)
            .map_err(|source| Error::Json {
                what: "image index",
                source,
            }),
    }
}

/// `type/subtype` without parameters (`; charset=utf-8`), as HTTP headers may carry them.
fn essence(media_type: &str) -> &str {
    media_type.split(';').next().unwrap_or("").trim()
}

fn is_schema1(media_type: &str) -> bool {
    media_type == DOCKER_SCHEMA1 || media_type == DOCKER_SCHEMA1_SIGNED
}

fn kind_of(media_type: &str) -> Result<Kind> {
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => Ok(Kind::Manifest),
        OCI_INDEX | DOCKER_MANIFEST_LIST => Ok(Kind::Index),
        t if is_schema1(t) => Err(Error::Schema1),
        t => Err(Error::UnsupportedMediaType(t.to_string())),
    }
}

fn kind_by_shape(probe: &Probe) -> Result<Kind> {
    match (probe.manifests.is_some(), probe.layers.is_some()) {
        (true, false) => Ok(Kind::Index),
        (false, true) => Ok(Kind::Manifest),
        _ => Err(Error::UnknownShape),
    }
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

impl Compression {
    /// From the first bytes of a blob (four are enough).
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(GZIP_MAGIC) {
            Compression::Gzip
        } else if head.starts_with(ZSTD_MAGIC) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The OCI layer media type for a layer compressed this way.
    pub fn oci_layer_media_type(self) -> &'static str {
        match self {
            Compression::None => OCI_LAYER,
            Compression::Gzip => OCI_LAYER_GZIP,
            Compression::Zstd => OCI_LAYER_ZSTD,
        }
    }
}

/// The compression a layer media type announces. Unknown types (and plain tar) are `None`;
/// readers should still trust the magic bytes over the label.
pub fn layer_compression(media_type: &str) -> Compression {
    let t = essence(media_type);
    if t.ends_with("+gzip") || t.ends_with(".gzip") {
        Compression::Gzip
    } else if t.ends_with("+zstd") || t.ends_with(".zstd") {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// An OS/architecture/variant triple with OCI's (Go's) names: `linux/arm64/v8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// Spells aliases the OCI way and fills in the variant a bare `arm`/`arm64` implies, so
    /// `linux/aarch64` and `linux/arm64/v8` compare equal (containerd's normalisation).
    fn normalized(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        let os = os.to_ascii_lowercase();
        let variant = variant
            .filter(|v| !v.is_empty())
            .map(str::to_ascii_lowercase);
        let (architecture, variant) = match (architecture.to_ascii_lowercase().as_str(), variant) {
            ("x86_64" | "x86-64" | "amd64", v) => ("amd64".to_string(), v),
            ("i386" | "i686" | "386", v) => ("386".to_string(), v),
            ("aarch64" | "arm64", v) => ("arm64".to_string(), Some(arm64_variant(v))),
            ("armhf", _) => ("arm".to_string(), Some("v7".to_string())),
            ("armel", _) => ("arm".to_string(), Some("v6".to_string())),
            ("arm", v) => ("arm".to_string(), Some(arm_variant(v))),
            (arch, v) => (arch.to_string(), v),
        };
        Platform {
            os,
            architecture,
            variant,
        }
    }

    fn of_descriptor(platform: &OciPlatform) -> Platform {
        Platform::normalized(
            &platform.os().to_string(),
            &platform.architecture().to_string(),
            platform.variant().as_deref(),
        )
    }
}

fn arm64_variant(variant: Option<String>) -> String {
    match variant.as_deref() {
        None | Some("8" | "v8" | "v8.0") => "v8".to_string(),
        Some(v) if !v.starts_with('v') => format!("v{v}"),
        Some(v) => v.to_string(),
    }
}

fn arm_variant(variant: Option<String>) -> String {
    match variant.as_deref() {
        None => "v7".to_string(),
        Some(v) if !v.starts_with('v') => format!("v{v}"),
        Some(v) => v.to_string(),
    }
}

/// The platform this binary runs on, in OCI names.
pub fn host_platform() -> Platform {
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc" => "ppc",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "mips" if cfg!(target_endian = "little") => "mipsle",
        "mips64" if cfg!(target_endian = "little") => "mips64le",
        "loongarch64" => "loong64",
        "sparc64" => "sparc64",
        // s390x, riscv64, mips, mips64 have the same names in Rust and Go.
        other => other,
    };
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    };
    Platform::normalized(os, architecture, None)
}

/// Operating systems Go knows, so `--platform linux` means "linux on this architecture" and
/// `--platform arm64` means "arm64 on this OS", as in containerd.
const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "illumos",
    "ios",
    "js",
    "linux",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
];

/// Parses `--platform os/arch[/variant]` (or a lone OS or architecture, completed from the
/// host).
pub fn parse_platform(input: &str) -> Result<Platform> {
    let invalid = |reason: &str| Error::InvalidPlatform {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    let parts: Vec<&str> = input.split('/').collect();
    if parts.len() > 3 {
        return Err(invalid("expected os/arch[/variant]"));
    }
    for part in &parts {
        if part.is_empty() {
            return Err(invalid("empty component"));
        }
        if !part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Err(invalid(
                "components may only contain letters, digits, '_', '-' and '.'",
            ));
        }
    }
    let host = host_platform();
    Ok(match parts[..] {
        [one] if KNOWN_OS.contains(&one.to_ascii_lowercase().as_str()) => {
            Platform::normalized(one, &host.architecture, host.variant.as_deref())
        }
        [one] => Platform::normalized(&host.os, one, None),
        [os, arch] => Platform::normalized(os, arch, None),
        [os, arch, variant] => Platform::normalized(os, arch, Some(variant)),
        _ => return Err(invalid("expected os/arch[/variant]")),
    })
}

/// Picks the manifest for `wanted` from an index: OS and architecture must match exactly;
/// the variant must match or be unspecified on either side. An exact variant beats an
/// unspecified one; entries without a platform are the last resort, as in containerd.
pub fn select(index: &ImageIndex, wanted: &Platform) -> Result<Descriptor> {
    let wanted = Platform::normalized(&wanted.os, &wanted.architecture, wanted.variant.as_deref());
    index
        .manifests()
        .iter()
        .filter_map(|d| rank(d, &wanted).map(|r| (r, d)))
        // min_by_key keeps the first of equal ranks: the index's order breaks ties.
        .min_by_key(|(r, _)| *r)
        .map(|(_, d)| d.clone())
        .ok_or_else(|| Error::NoPlatform {
            wanted,
            available: available(index),
        })
}

/// Lower is better; `None` means the entry cannot run on `wanted`.
fn rank(descriptor: &Descriptor, wanted: &Platform) -> Option<u8> {
    let Some(platform) = descriptor.platform() else {
        return Some(3);
    };
    let have = Platform::of_descriptor(platform);
    if have.os != wanted.os || have.architecture != wanted.architecture {
        return None;
    }
    match (&have.variant, &wanted.variant) {
        (a, b) if a == b => Some(0),
        (None, _) => Some(1),
        // The user did not ask for a variant: any will do, after an unspecified one.
        (Some(_), None) => Some(2),
        (Some(_), Some(_)) => None,
    }
}

fn available(index: &ImageIndex) -> String {
    let names: Vec<String> = index
        .manifests()
        .iter()
        .map(|d| match d.platform() {
            Some(p) => Platform::of_descriptor(p).to_string(),
            None => "(no platform)".to_string(),
        })
        .collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn oci_manifest() -> String {
        format!(
            r#"{{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.manifest.v1+json",
  "config": {{
    "mediaType": "application/vnd.oci.image.config.v1+json",
    "digest": "{D1}",
    "size": 7023
  }},
  "layers": [
    {{
      "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
      "digest": "{D2}",
      "size": 32654
    }}
  ],
  "annotations": {{ "com.example.key1": "value1" }}
}}"#
        )
    }

    /// As `docker push` writes it (docker 20.10).
    fn docker_manifest() -> String {
        format!(
            r#"{{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {{
      "mediaType": "application/vnd.docker.container.image.v1+json",
      "size": 1457,
      "digest": "{D1}"
   }},
   "layers": [
      {{
         "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "size": 772788,
         "digest": "{D2}"
      }}
   ]
}}"#
        )
    }

    fn oci_index() -> String {
        format!(
            r#"{{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.index.v1+json",
  "manifests": [
    {{
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "size": 7143,
      "digest": "{D1}",
      "platform": {{ "architecture": "ppc64le", "os": "linux" }}
    }},
    {{
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "size": 7682,
      "digest": "{D2}",
      "platform": {{ "architecture": "amd64", "os": "linux" }}
    }}
  ]
}}"#
        )
    }

    /// A multi-platform list like busybox's on Docker Hub (trimmed).
    fn docker_list() -> String {
        let entry = |arch: &str, variant: Option<&str>, n: u8| {
            let variant = variant.map_or(String::new(), |v| format!(r#", "variant": "{v}""#));
            format!(
                r#"{{
      "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
      "size": 527,
      "digest": "sha256:{}",
      "platform": {{ "architecture": "{arch}", "os": "linux"{variant} }}
    }}"#,
                format!("{n:x}").repeat(64)
            )
        };
        format!(
            r#"{{
  "manifests": [
    {},
    {},
    {},
    {},
    {},
    {{
      "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
      "size": 527,
      "digest": "sha256:{}",
      "platform": {{ "architecture": "unknown", "os": "unknown" }}
    }}
  ],
  "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
  "schemaVersion": 2
}}"#,
            entry("amd64", None, 1),
            entry("arm", Some("v5"), 2),
            entry("arm", Some("v7"), 3),
            entry("arm64", Some("v8"), 4),
            entry("s390x", None, 5),
            "6".repeat(64),
        )
    }

    const SCHEMA1: &str = r#"{
   "schemaVersion": 1,
   "name": "library/hello-world",
   "tag": "latest",
   "architecture": "amd64",
   "fsLayers": [
      { "blobSum": "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4" }
   ],
   "history": [ { "v1Compatibility": "{}" } ],
   "signatures": []
}"#;

    fn manifest_of(parsed: Parsed) -> ImageManifest {
        match parsed {
            Parsed::Manifest(m) => m,
            Parsed::Index(_) => panic!("expected a manifest"),
        }
    }

    fn index_of(parsed: Parsed) -> ImageIndex {
        match parsed {
            Parsed::Index(i) => i,
            Parsed::Manifest(_) => panic!("expected an index"),
        }
    }

    #[test]
    fn parses_oci_manifest() {
        let m = manifest_of(parse(oci_manifest().as_bytes(), Some(OCI_MANIFEST)).unwrap());
        assert_eq!(m.config().digest().to_string(), D1);
        assert_eq!(m.config().media_type().as_ref(), OCI_CONFIG);
        assert_eq!(m.layers().len(), 1);
        assert_eq!(m.layers()[0].size(), 32654);
        assert_eq!(
            layer_compression(m.layers()[0].media_type().as_ref()),
            Compression::Gzip
        );
    }

    #[test]
    fn parses_docker_manifest() {
        let m = manifest_of(parse(docker_manifest().as_bytes(), Some(DOCKER_MANIFEST)).unwrap());
        assert_eq!(m.media_type().as_ref().unwrap().as_ref(), DOCKER_MANIFEST);
        assert_eq!(m.config().media_type().as_ref(), DOCKER_CONFIG);
        assert_eq!(m.layers()[0].digest().to_string(), D2);
        assert_eq!(
            layer_compression(m.layers()[0].media_type().as_ref()),
            Compression::Gzip
        );
    }

    #[test]
    fn parses_indexes() {
        let i = index_of(parse(oci_index().as_bytes(), Some(OCI_INDEX)).unwrap());
        assert_eq!(i.manifests().len(), 2);
        let l = index_of(
            parse(
                docker_list().as_bytes(),
                Some("application/vnd.docker.distribution.manifest.list.v2+json; charset=utf-8"),
            )
            .unwrap(),
        );
        assert_eq!(l.manifests().len(), 6);
    }

    #[test]
    fn kind_from_field_or_shape() {
        // No media type given: the document's field decides.
        manifest_of(parse(docker_manifest().as_bytes(), None).unwrap());
        index_of(parse(docker_list().as_bytes(), Some("application/json")).unwrap());
        // Neither: the shape decides (index.json of an OCI layout has no mediaType).
        let bare_index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":1}}]}}"#
        );
        index_of(parse(bare_index.as_bytes(), None).unwrap());
        let bare_manifest = oci_manifest().replace(
            r#""mediaType": "application/vnd.oci.image.manifest.v1+json","#,
            "",
        );
        assert!(!bare_manifest.contains(OCI_MANIFEST));
        manifest_of(parse(bare_manifest.as_bytes(), None).unwrap());
        let err = parse(br#"{"schemaVersion":2}"#, None).unwrap_err();
        assert!(matches!(err, Error::UnknownShape), "{err}");
    }

    #[test]
    fn refuses_schema1() {
        for media_type in [None, Some(DOCKER_SCHEMA1), Some(DOCKER_SCHEMA1_SIGNED)] {
            let err = parse(SCHEMA1.as_bytes(), media_type).unwrap_err();
            assert!(matches!(err, Error::Schema1), "{err}");
            assert!(err.to_string().contains("schema 1"), "{err}");
        }
        // Even when the body is not schema 1, the served type says it is.
        let err = parse(docker_manifest().as_bytes(), Some(DOCKER_SCHEMA1_SIGNED)).unwrap_err();
        assert!(matches!(err, Error::Schema1), "{err}");
    }

    #[test]
    fn errors_name_the_problem() {
        let cases: Vec<(Vec<u8>, Option<&str>, &str)> = vec![
            (b"{not json".to_vec(), None, "malformed manifest JSON"),
            (
                oci_manifest().into_bytes(),
                Some(OCI_INDEX),
                "served as \"application/vnd.oci.image.index.v1+json\" but its mediaType field says \"application/vnd.oci.image.manifest.v1+json\"",
            ),
            (
                oci_manifest().into_bytes(),
                Some("application/vnd.example+json"),
                "served as",
            ),
            (
                br#"{"schemaVersion":2,"layers":[]}"#.to_vec(),
                Some("application/vnd.example+json"),
                "unsupported manifest media type \"application/vnd.example+json\"",
            ),
            (
                br#"{"schemaVersion":3,"layers":[]}"#.to_vec(),
                None,
                "schemaVersion 3",
            ),
            (
                br#"{"schemaVersion":2,"layers":[]}"#.to_vec(),
                None,
                "malformed image manifest: missing field `config`",
            ),
            (
                format!(r#"{{"schemaVersion":2,"manifests":[{{"digest":"{D1}","size":1}}]}}"#)
                    .into_bytes(),
                None,
                "malformed image index: missing field `mediaType`",
            ),
            (
                br#"{"schemaVersion":2,"config":{"mediaType":"a/b","digest":"sha256:xyz","size":1},"layers":[]}"#.to_vec(),
                None,
                "malformed image manifest",
            ),
        ];
        for (bytes, media_type, want) in cases {
            let msg = parse(&bytes, media_type).unwrap_err().to_string();
            assert!(msg.contains(want), "{msg:?} should contain {want:?}");
            assert!(!msg.contains('\n'), "{msg:?}");
        }
    }

    #[test]
    fn compression_by_media_type_and_magic() {
        for (t, want) in [
            (OCI_LAYER, Compression::None),
            (OCI_LAYER_GZIP, Compression::Gzip),
            (OCI_LAYER_ZSTD, Compression::Zstd),
            (OCI_LAYER_NONDISTRIBUTABLE_GZIP, Compression::Gzip),
            (OCI_LAYER_NONDISTRIBUTABLE_ZSTD, Compression::Zstd),
            (DOCKER_LAYER, Compression::None),
            (DOCKER_LAYER_GZIP, Compression::Gzip),
            (DOCKER_FOREIGN_LAYER, Compression::Gzip),
            ("application/octet-stream", Compression::None),
        ] {
            assert_eq!(layer_compression(t), want, "{t}");
        }
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"bin/"), Compression::None);
        assert_eq!(Compression::detect(&[]), Compression::None);
        assert_eq!(Compression::Zstd.oci_layer_media_type(), OCI_LAYER_ZSTD);
    }

    #[test]
    fn host_platform_uses_oci_names() {
        let host = host_platform();
        assert_eq!(host.os, "linux");
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            other => (other, None),
        };
        assert_eq!(host.architecture, arch);
        assert_eq!(host.variant.as_deref(), variant);
    }

    #[test]
    fn parses_platforms() {
        let p = |s: &str| parse_platform(s).unwrap().to_string();
        assert_eq!(p("linux/amd64"), "linux/amd64");
        assert_eq!(p("linux/x86_64"), "linux/amd64");
        assert_eq!(p("Linux/AMD64"), "linux/amd64");
        assert_eq!(p("linux/arm64"), "linux/arm64/v8");
        assert_eq!(p("linux/aarch64"), "linux/arm64/v8");
        assert_eq!(p("linux/arm64/8"), "linux/arm64/v8");
        assert_eq!(p("linux/arm"), "linux/arm/v7");
        assert_eq!(p("linux/arm/v6"), "linux/arm/v6");
        assert_eq!(p("linux/armhf"), "linux/arm/v7");
        assert_eq!(p("linux/386"), "linux/386");
        assert_eq!(p("linux"), host_platform().to_string());
        assert_eq!(
            p("s390x"),
            format!("{}/s390x", host_platform().os),
            "a lone architecture gets the host OS"
        );
        for bad in ["", "linux/", "/amd64", "linux/amd64/v8/x", "linux/am d64"] {
            let err = parse_platform(bad).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("invalid platform {bad:?}")),
                "{err}"
            );
        }
    }

    #[test]
    fn selects_platforms() {
        let list = index_of(parse(docker_list().as_bytes(), None).unwrap());
        let pick = |s: &str| {
            select(&list, &parse_platform(s).unwrap())
                .map(|d| d.digest().to_string()[7..8].to_string())
        };
        assert_eq!(pick("linux/amd64").unwrap(), "1");
        assert_eq!(pick("linux/arm/v5").unwrap(), "2");
        assert_eq!(pick("linux/arm").unwrap(), "3", "bare arm means v7");
        assert_eq!(pick("linux/arm64").unwrap(), "4");
        assert_eq!(pick("linux/aarch64/v8").unwrap(), "4");
        assert_eq!(pick("linux/s390x").unwrap(), "5");
        let err = pick("linux/arm/v6").unwrap_err().to_string();
        assert_eq!(
            err,
            "no image for platform linux/arm/v6 in the index (available: linux/amd64, \
             linux/arm/v5, linux/arm/v7, linux/arm64/v8, linux/s390x, unknown/unknown)"
        );
        assert!(pick("windows/amd64").is_err());

        // A variant on one side only: the unspecified side matches; exact wins.
        let index = |entries: &[(&str, Option<&str>)]| -> ImageIndex {
            let manifests: Vec<String> = entries
                .iter()
                .enumerate()
                .map(|(n, (arch, variant))| {
                    let variant =
                        variant.map_or(String::new(), |v| format!(r#","variant":"{v}""#));
                    format!(
                        r#"{{"mediaType":"{OCI_MANIFEST}","size":1,"digest":"sha256:{}","platform":{{"os":"linux","architecture":"{arch}"{variant}}}}}"#,
                        n.to_string().repeat(64)
                    )
                })
                .collect();
            let json = format!(
                r#"{{"schemaVersion":2,"manifests":[{}]}}"#,
                manifests.join(",")
            );
            index_of(parse(json.as_bytes(), None).unwrap())
        };
        let want = |s: &str| parse_platform(s).unwrap();
        let i = index(&[("amd64", Some("v3")), ("amd64", None)]);
        assert!(select(&i, &want("linux/amd64"))
            .unwrap()
            .digest()
            .to_string()
            .ends_with('1'));
        let i = index(&[("amd64", Some("v3"))]);
        assert!(select(&i, &want("linux/amd64")).is_ok());
        assert!(select(&i, &want("linux/amd64/v2")).is_err());
        let i = index(&[("amd64", None), ("amd64", Some("v2"))]);
        assert!(select(&i, &want("linux/amd64/v2"))
            .unwrap()
            .digest()
            .to_string()
            .ends_with('1'));

        // No platform at all: taken only when nothing matches better.
        let json = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":1}}]}}"#
        );
        let i = index_of(parse(json.as_bytes(), None).unwrap());
        assert_eq!(
            select(&i, &host_platform()).unwrap().digest().to_string(),
            D1
        );
        let empty = index_of(parse(br#"{"schemaVersion":2,"manifests":[]}"#, None).unwrap());
        let err = select(&empty, &want("linux/amd64")).unwrap_err();
        assert!(err.to_string().ends_with("(available: none)"), "{err}");
    }
}
