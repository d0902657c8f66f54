//! `.dockerignore` with Docker's semantics (moby/patternmatcher): patterns are cleaned like
//! Go's `filepath.Clean` with a leading `/` dropped; `*` and `?` stay within one path
//! element, `**` spans directories, `[...]` is a character class; patterns apply in order and
//! the last one that matches a path decides, `!` patterns re-including; a pattern that matches
//! a parent directory matches everything beneath it.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid .dockerignore pattern {pattern:?}: {reason}")]
pub struct IgnoreError {
    pub pattern: String,
    pub reason: &'static str,
}

/// The parsed rules of one `.dockerignore`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IgnoreRules {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    exclusion: bool,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `?`: one character other than `/`.
    One,
    /// `*`: any run of characters other than `/`.
    Star,
    /// `**` followed by more pattern: any number of whole directories, even none.
    Dirs,
    /// `**` at the end: anything at all.
    Rest,
    Class {
        negated: bool,
        items: Vec<(char, char)>,
    },
}

impl IgnoreRules {
    /// Parses the text of a `.dockerignore` file.
    pub fn parse(text: &str) -> Result<Self, IgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Self::from_patterns(text.lines().filter(|line| !line.starts_with('#')))
    }

    /// Builds rules from pattern lines (blank ones are skipped).
    pub fn from_patterns<'a>(
        lines: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, IgnoreError> {
        let mut patterns = Vec::new();
        for line in lines {
            let mut pattern = line.trim();
            if pattern.is_empty() {
                continue;
            }
            let exclusion = pattern.starts_with('!');
            if exclusion {
                pattern = pattern[1..].trim();
            }
            let mut cleaned = clean_path(pattern);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            let tokens = compile(&cleaned).map_err(|reason| IgnoreError {
                pattern: line.trim().to_string(),
                reason,
            })?;
            patterns.push(Pattern { exclusion, tokens });
        }
        Ok(IgnoreRules { patterns })
    }

    /// Whether `path` (relative to the context root, `/`-separated) is left out of the
    /// build context, by its own name or by one of its parent directories.
    /// Whether there are no patterns (nothing can be excluded).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn is_excluded(&self, path: &str) -> bool {
        let file = clean_path(path);
        let file = file.trim_start_matches('/');
        let parents: Vec<&str> = match file.rfind('/') {
            Some(i) => file[..i].split('/').collect(),
            None => Vec::new(),
        };
        let mut matched = false;
        for pattern in &self.patterns {
            // An inclusion cannot change an already excluded path, nor an exception a path
            // that is not excluded.
            if pattern.exclusion != matched {
                continue;
            }
            let mut hit = matches(&pattern.tokens, file);
            if !hit {
                for i in 1..=parents.len() {
                    if matches(&pattern.tokens, &parents[..i].join("/")) {
                        hit = true;
                        break;
                    }
                }
            }
            if hit {
                matched = !pattern.exclusion;
            }
        }
        matched
    }
}

/// Go's `filepath.Match` for one path element, as COPY and ADD match wildcard sources:
/// `*`, `?`, `[...]` classes and `\` escapes. Errors on a malformed pattern.
pub fn glob_match(pattern: &str, name: &str) -> Result<bool, IgnoreError> {
    let tokens = compile(pattern).map_err(|reason| IgnoreError {
        pattern: pattern.to_string(),
        reason,
    })?;
    Ok(matches(&tokens, name))
}

/// Whether a COPY/ADD source has wildcards.
pub fn has_wildcards(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

fn compile(pattern: &str) -> Result<Vec<Token>, &'static str> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                tokens.push(if i == chars.len() {
                    Token::Rest
                } else {
                    Token::Dirs
                });
            }
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::One),
            '\\' => match chars.get(i) {
                Some(&n) => {
                    tokens.push(Token::Literal(n));
                    i += 1;
                }
                None => return Err("trailing escape character"),
            },
            '[' => {
                let (token, next) = class(&chars, i)?;
                tokens.push(token);
                i = next;
            }
            other => tokens.push(Token::Literal(other)),
        }
    }
    Ok(tokens)
}

/// Parses a character class whose `[` is just before `start`; returns the index after `]`.
fn class(chars: &[char], start: usize) -> Result<(Token, usize), &'static str> {
    let mut i = start;
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut items = Vec::new();
    loop {
        let mut lo = match chars.get(i) {
            None => return Err("unterminated character class"),
            Some(']') if !items.is_empty() || i > start + usize::from(negated) => {
                return Ok((Token::Class { negated, items }, i + 1));
            }
            Some(&c) => c,
        };
        i += 1;
        if lo == '\\' {
            lo = *chars.get(i).ok_or("unterminated character class")?;
            i += 1;
        }
        let mut hi = lo;
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&c| c != ']') {
            hi = chars[i + 1];
            i += 2;
            if hi == '\\' {
                hi = *chars.get(i).ok_or("unterminated character class")?;
                i += 1;
            }
            if hi < lo {
                return Err("invalid character class range");
            }
        }
        items.push((lo, hi));
    }
}

fn matches(tokens: &[Token], path: &str) -> bool {
    let chars: Vec<char> = path.chars().collect();
    match_from(tokens, &chars)
}

fn match_from(tokens: &[Token], s: &[char]) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return s.is_empty();
    };
    match first {
        Token::Literal(c) => s.first() == Some(c) && match_from(rest, &s[1..]),
        Token::One => s.first().is_some_and(|&c| c != '/') && match_from(rest, &s[1..]),
        Token::Class { negated, items } => {
            s.first()
                .is_some_and(|&c| items.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated)
                && match_from(rest, &s[1..])
        }
        Token::Star => {
            for n in 0..=s.len() {
                if match_from(rest, &s[n..]) {
                    return true;
                }
                if s.get(n) == Some(&'/') {
                    break;
                }
            }
            false
        }
        Token::Rest => true,
        // `(.*/)?`: nothing, or any prefix ending just after a `/`.
        Token::Dirs => {
            match_from(rest, s)
                || (0..s.len()).any(|i| s[i] == '/' && match_from(rest, &s[i + 1..]))
        }
    }
}

/// Go's `path.Clean`: collapses `//`, removes `.` elements, resolves `..` lexically.
pub(crate) fn clean_path(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_like_go() {
        let cases = [
            ("", "."),
            (".", "."),
            ("./foo", "foo"),
            ("foo/", "foo"),
            ("a//b", "a/b"),
            ("a/./b", "a/b"),
            ("a/../b", "b"),
            ("../a", "../a"),
            ("/../a", "/a"),
            ("/", "/"),
        ];
        for (input, want) in cases {
            assert_eq!(clean_path(input), want, "clean {input:?}");
        }
    }

    /// (patterns, path, excluded) — from the .dockerignore section of Docker's build
    /// documentation and moby/patternmatcher's behaviour.
    #[test]
    fn dockerignore_table() {
        let cases: &[(&[&str], &str, bool)] = &[
            (&["*/temp*"], "somedir/temporary.txt", true),
            (&["*/temp*"], "somedir/temp", true),
            (&["*/temp*"], "temp", false),
            (&["*/temp*"], "a/b/temp.txt", false),
            (&["*/*/temp*"], "somedir/subdir/temporary.txt", true),
            (&["*/*/temp*"], "somedir/temporary.txt", false),
            (&["temp?"], "temp1", true),
            (&["temp?"], "tempa", true),
            (&["temp?"], "temp", false),
            (&["temp?"], "temp12", false),
            (&["temp?"], "dir/temp1", false),
            (&["**/*.go"], "main.go", true),
            (&["**/*.go"], "a/b/c/main.go", true),
            (&["**/*.go"], "a/b/main.rs", false),
            (&["a/**/b"], "a/b", true),
            (&["a/**/b"], "a/x/y/b", true),
            (&["a/**/b"], "a/x/y/c", false),
            (&["foo/**"], "foo/bar", true),
            (&["foo/**"], "foo/bar/baz", true),
            (&["foo/**"], "foo", false),
            (&["**"], "anything/at/all", true),
            (&["*.md", "!README.md"], "README.md", false),
            (&["*.md", "!README.md"], "CHANGES.md", true),
            (
                &["*.md", "!README*.md", "README-secret.md"],
                "README-secret.md",
                true,
            ),
            (
                &["*.md", "!README*.md", "README-secret.md"],
                "README-public.md",
                false,
            ),
            (
                &["*.md", "README-secret.md", "!README*.md"],
                "README-secret.md",
                false,
            ),
            (&["docs", "!docs/README.md"], "docs/README.md", false),
            (&["docs", "!docs/README.md"], "docs/guide.md", true),
            (&["docs"], "docs/a/b/c.txt", true),
            (&["docs"], "docsy", false),
            (&["/docs"], "docs/x", true),
            (&["./docs/"], "docs/x", true),
            (&["docs//"], "docs", true),
            (&["a/../b"], "b/c", true),
            (&["*"], "anything/below", true),
            (&["*", "!keep"], "keep/file", false),
            (&["*", "!keep", "keep/tmp"], "keep/tmp/x", true),
            (&["[a-c]at"], "bat", true),
            (&["[a-c]at"], "dat", false),
            (&["[^a-c]at"], "dat", true),
            (&["[^a-c]at"], "cat", false),
            (&["file\\*"], "file*", true),
            (&["file\\*"], "filex", false),
            (&["  spaced.txt  "], "spaced.txt", true),
            (&["!important"], "important", false),
            (&[], "anything", false),
            (&["*.log"], "sub/x.log", false),
            (&["**/*.log"], "sub/x.log", true),
            (&["node_modules"], "node_modules/pkg/index.js", true),
            (
                &["node_modules", "!node_modules/pkg"],
                "node_modules/pkg/index.js",
                false,
            ),
            (
                &["node_modules", "!node_modules/pkg"],
                "node_modules/other/x.js",
                true,
            ),
            (&["*.txt"], "./notes.txt", true),
        ];
        for (patterns, path, want) in cases {
            let rules = IgnoreRules::from_patterns(patterns.iter().copied()).unwrap();
            assert_eq!(
                rules.is_excluded(path),
                *want,
                "patterns {patterns:?} path {path:?}"
            );
        }
    }

    #[test]
    fn file_comments_and_blank_lines() {
        let rules = IgnoreRules::parse("# comment\n\n*.tmp\n   \n!keep.tmp\n#*.rs\n").unwrap();
        assert!(rules.is_excluded("a.tmp"));
        assert!(!rules.is_excluded("keep.tmp"));
        assert!(!rules.is_excluded("main.rs"));
        assert!(!rules.is_excluded("# comment"));
        assert_eq!(rules.patterns.len(), 2);
    }

    #[test]
    fn bad_patterns() {
        let err = IgnoreRules::from_patterns(["[abc"]).unwrap_err();
        assert_eq!(err.reason, "unterminated character class");
        assert_eq!(
            IgnoreRules::from_patterns(["[z-a]"]).unwrap_err().reason,
            "invalid character class range"
        );
    }
}
