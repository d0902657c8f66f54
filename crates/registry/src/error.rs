//! Errors: one line each, `<what we were doing>: <what went wrong>`, naming the registry and
//! repository in the first part and the blob, URL or file in the second, with the HTTP
//! status and the registry's own error message when it sent one.

use std::path::PathBuf;

use image::digest::{Digest, DigestError};
use image::images::ImageError;
use image::manifest;
use image::meta::MetaError;
use image::snapshot::SnapshotError;
use image::store::StoreError;

/// A failed registry operation: `context` says which (`pull localhost:5000/x:1`).
#[derive(Debug, thiserror::Error)]
#[error("{context}: {kind}")]
pub struct Error {
    context: String,
    kind: Box<ErrorKind>,
}

impl Error {
    pub fn new(context: impl Into<String>, kind: ErrorKind) -> Error {
        Error {
            context: context.into(),
            kind: Box::new(kind),
        }
    }

    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The HTTP status the registry answered with, if that is what failed.
    pub fn status(&self) -> Option<u16> {
        match self.kind.as_ref() {
            ErrorKind::Registry { status, .. } => Some(*status),
            ErrorKind::Token { source, .. } => match source.as_ref() {
                ErrorKind::Registry { status, .. } => Some(*status),
                _ => None,
            },
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// The registry answered with an error status. `code` and `message` come from its JSON
    /// error body (`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`),
    /// or are the status's reason phrase when it sent none.
    #[error("{}", registry_message(*.status, .code.as_deref(), .message))]
    Registry {
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// Getting a bearer token from `realm` failed.
    #[error("token from {realm}: {source}")]
    Token {
        realm: String,
        source: Box<ErrorKind>,
    },
    /// No answer: DNS, connection, TLS, or the connection broke.
    #[error("{method} {url}: {source}")]
    Transport {
        method: &'static str,
        url: String,
        source: ureq::Error,
    },
    /// The registry answered, but not as the protocol says it must.
    #[error("{url}: {reason}")]
    Protocol { url: String, reason: String },
    /// Content that does not hash to the digest it was asked for by.
    #[error("{what} {expected}: content has digest {actual}")]
    DigestMismatch {
        what: &'static str,
        expected: Digest,
        actual: Digest,
    },
    /// Content whose length is not what its descriptor says.
    #[error("{what} {digest}: {reason}")]
    Content {
        what: &'static str,
        digest: Digest,
        reason: String,
    },
    #[error(transparent)]
    Manifest(#[from] manifest::Error),
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("credentials file {}: {reason}", path.display())]
    Credentials { path: PathBuf, reason: String },
    #[error("{0}")]
    Unsupported(String),
    /// Another layer failed first; this one stopped early.
    #[error("cancelled")]
    Cancelled,
}

/// "manifest unknown (404)"; the code is spelled out when the message does not already say
/// it ("unauthorized: authentication required (401)"), as Docker prints them.
fn registry_message(status: u16, code: Option<&str>, message: &str) -> String {
    let mut text = message.trim().to_string();
    if let Some(code) = code {
        let words = code.to_ascii_lowercase().replace('_', " ");
        if text.is_empty() {
            text = words;
        } else if !text.to_ascii_lowercase().contains(&words) {
            text = format!("{words}: {text}");
        }
    }
    if text.is_empty() {
        text = reason_phrase(status).to_ascii_lowercase();
    }
    format!("{text} ({status})")
}

pub(crate) fn reason_phrase(status: u16) -> &'static str {
    ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("unexpected status")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(status: u16, code: Option<&str>, message: &str) -> String {
        ErrorKind::Registry {
            status,
            code: code.map(str::to_string),
            message: message.to_string(),
        }
        .to_string()
    }

    #[test]
    fn registry_errors_read_like_docker() {
        assert_eq!(
            registry(404, Some("MANIFEST_UNKNOWN"), "manifest unknown"),
            "manifest unknown (404)"
        );
        assert_eq!(
            registry(401, Some("UNAUTHORIZED"), "authentication required"),
            "unauthorized: authentication required (401)"
        );
        assert_eq!(registry(404, None, ""), "not found (404)");
        assert_eq!(registry(403, Some("DENIED"), ""), "denied (403)");
        let err = Error::new(
            "pull localhost:5001/x:1",
            ErrorKind::Registry {
                status: 404,
                code: Some("MANIFEST_UNKNOWN".into()),
                message: "manifest unknown".into(),
            },
        );
        assert_eq!(
            err.to_string(),
            "pull localhost:5001/x:1: manifest unknown (404)"
        );
        assert_eq!(err.status(), Some(404));
    }
}
