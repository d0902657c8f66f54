//! Registry authentication: the `WWW-Authenticate` challenge a registry answers 401 with, and
//! bearer tokens from its token service (Docker's token protocol, which every registry with
//! token auth speaks), cached for the process per realm, service, scope set and user.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// What the registry asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic {
        realm: Option<String>,
    },
    Bearer {
        realm: String,
        service: Option<String>,
        /// The scope the registry says the request needs, if it said.
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header value into the challenges it holds (RFC 7235:
/// `Scheme key=value, key="quoted", Scheme2 ...`). Schemes other than Basic and Bearer, and
/// Bearer without a realm, are skipped.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out = Vec::new();
    for (scheme, params) in split_challenges(header) {
        let get = |key: &str| {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.clone())
        };
        if scheme.eq_ignore_ascii_case("basic") {
            out.push(Challenge::Basic {
                realm: get("realm"),
            });
        } else if scheme.eq_ignore_ascii_case("bearer") {
            if let Some(realm) = get("realm") {
                out.push(Challenge::Bearer {
                    realm,
                    service: get("service"),
                    scope: get("scope"),
                });
            }
        }
    }
    out
}

type Params = Vec<(String, String)>;

/// A tiny tokenizer: a token followed by `=` is a parameter of the current challenge, any
/// other token starts a new challenge.
fn split_challenges(header: &str) -> Vec<(String, Params)> {
    let mut out: Vec<(String, Params)> = Vec::new();
    let mut rest = header.trim_start();
    while !rest.is_empty() {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        let end = rest
            .find(|c: char| c == '=' || c == ',' || c.is_whitespace())
            .unwrap_or(rest.len());
        let token = &rest[..end];
        rest = rest[end..].trim_start();
        if token.is_empty() {
            // A stray '=' or similar: skip one character so the loop always advances.
            rest = rest.get(1..).unwrap_or("");
            continue;
        }
        if let Some(after) = rest.strip_prefix('=') {
            let (value, after) = read_value(after.trim_start());
            rest = after;
            if let Some((_, params)) = out.last_mut() {
                params.push((token.to_string(), value));
            }
        } else {
            out.push((token.to_string(), Vec::new()));
        }
    }
    out
}

/// A quoted string (with backslash escapes) or a bare token; returns it and the rest.
fn read_value(s: &str) -> (String, &str) {
    if let Some(quoted) = s.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                }
                '"' => return (value, &quoted[i + 1..]),
                c => value.push(c),
            }
        }
        (value, "")
    } else {
        let end = s.find(',').unwrap_or(s.len());
        (s[..end].trim().to_string(), &s[end..])
    }
}

/// `repository:NAME:pull` / `repository:NAME:pull,push`.
pub fn repository_scope(repository: &str, push: bool) -> String {
    let actions = if push { "pull,push" } else { "pull" };
    format!("repository:{repository}:{actions}")
}

/// A token service's answer. Docker's spec says `token`; OAuth2-style servers send
/// `access_token`; either may come alone.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenResponse {
    pub token: Option<String>,
    pub access_token: Option<String>,
    pub expires_in: Option<u64>,
}

impl TokenResponse {
    pub fn into_token(self) -> Option<(String, Duration)> {
        let token = self.token.or(self.access_token).filter(|t| !t.is_empty())?;
        // The spec's default lifetime is 60 s; a minimum keeps a clock-skewed server from
        // making every request fetch a new token.
        let lifetime = Duration::from_secs(self.expires_in.unwrap_or(60).max(60));
        Some((token, lifetime))
    }
}

/// Tokens are reused until shortly before they expire, not to the last second, so a long
/// layer download does not start with a token about to lapse.
const EXPIRY_MARGIN: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct TokenKey {
    pub realm: String,
    pub service: Option<String>,
    pub scopes: Vec<String>,
    pub user: Option<String>,
}

fn cache() -> &'static Mutex<HashMap<TokenKey, (String, Instant)>> {
    static CACHE: OnceLock<Mutex<HashMap<TokenKey, (String, Instant)>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

pub(crate) fn cached_token(key: &TokenKey) -> Option<String> {
    let cache = cache().lock().unwrap_or_else(|e| e.into_inner());
    cache
        .get(key)
        .filter(|(_, expires)| Instant::now() + EXPIRY_MARGIN < *expires)
        .map(|(token, _)| token.clone())
}

pub(crate) fn store_token(key: TokenKey, token: String, lifetime: Duration) {
    let mut cache = cache().lock().unwrap_or_else(|e| e.into_inner());
    cache.insert(key, (token, Instant::now() + lifetime));
}

pub(crate) fn forget_token(key: &TokenKey) {
    let mut cache = cache().lock().unwrap_or_else(|e| e.into_inner());
    cache.remove(key);
}

/// Percent-encodes a query value (everything but RFC 3986's unreserved characters).
pub(crate) fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#;
        assert_eq!(
            parse_challenges(h),
            vec![Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            }]
        );
    }

    #[test]
    fn basic_and_several_challenges() {
        assert_eq!(
            parse_challenges(r#"Basic realm="basic-realm""#),
            vec![Challenge::Basic {
                realm: Some("basic-realm".into())
            }]
        );
        let h = r#"Negotiate, Basic realm="a \"quoted\" realm", bearer realm=http://x/token,service=svc, error="invalid_token""#;
        assert_eq!(
            parse_challenges(h),
            vec![
                Challenge::Basic {
                    realm: Some("a \"quoted\" realm".into())
                },
                Challenge::Bearer {
                    realm: "http://x/token".into(),
                    service: Some("svc".into()),
                    scope: None,
                },
            ]
        );
        assert_eq!(parse_challenges(""), vec![]);
        assert_eq!(parse_challenges("Bearer service=x"), vec![], "no realm");
        assert_eq!(parse_challenges("= , ==,"), vec![]);
    }

    #[test]
    fn scopes_and_escaping() {
        assert_eq!(repository_scope("a/b", false), "repository:a/b:pull");
        assert_eq!(repository_scope("a/b", true), "repository:a/b:pull,push");
        assert_eq!(
            query_escape("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }

    #[test]
    fn token_cache_expires() {
        let key = TokenKey {
            realm: "http://test-realm/token".into(),
            service: None,
            scopes: vec!["repository:a:pull".into()],
            user: None,
        };
        store_token(key.clone(), "t".into(), Duration::from_secs(60));
        assert_eq!(cached_token(&key).as_deref(), Some("t"));
        store_token(key.clone(), "old".into(), Duration::from_secs(10));
        assert_eq!(
            cached_token(&key),
            None,
            "within the margin counts as expired"
        );
        forget_token(&key);
        let parsed: TokenResponse =
            serde_json::from_str(r#"{"access_token":"a","expires_in":300}"#).unwrap();
        assert_eq!(
            parsed.into_token(),
            Some(("a".to_string(), Duration::from_secs(300)))
        );
        let empty: TokenResponse = serde_json::from_str(r#"{"token":""}"#).unwrap();
        assert_eq!(empty.into_token(), None);
    }
}
