//! Variable substitution as Docker's shell lexer does it for the instructions that expand
//! their arguments (ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR,
//! ARG defaults). Quotes are removed, the escape character escapes the next character, and
//! single quotes suppress expansion. RUN/CMD/ENTRYPOINT text is left to the shell.

use thiserror::Error;

/// Why a word could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExpandError {
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    #[error("unexpected end of statement while looking for matching }}")]
    MissingBrace,
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    #[error("{0}")]
    Unset(String),
}

/// Expands `word` with `\` as the escape character; `lookup` returns `None` for an unset
/// variable, which expands to the empty string.
pub fn expand(word: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    expand_with_escape(word, '\\', lookup)
}

/// Like [`expand`], with the escape character chosen by the `# escape=` directive.
pub fn expand_with_escape(
    word: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let mut lexer = Lexer {
        chars: word.chars().collect(),
        pos: 0,
        escape,
        lookup,
    };
    lexer.until(None)
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Reads up to `stop` (consumed) or the end of the word.
    fn until(&mut self, stop: Option<char>) -> Result<String, ExpandError> {
        let mut out = String::new();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                return Ok(out);
            }
            match ch {
                '\'' => out.push_str(&self.single_quoted()?),
                '"' => out.push_str(&self.double_quoted()?),
                '$' => out.push_str(&self.dollar()?),
                _ => {
                    self.pos += 1;
                    if ch == self.escape {
                        match self.next() {
                            Some(escaped) => out.push(escaped),
                            None => break,
                        }
                    } else {
                        out.push(ch);
                    }
                }
            }
        }
        if stop.is_some() {
            return Err(ExpandError::MissingBrace);
        }
        Ok(out)
    }

    fn single_quoted(&mut self) -> Result<String, ExpandError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.next() {
                None => return Err(ExpandError::UnterminatedSingleQuote),
                Some('\'') => return Ok(out),
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String, ExpandError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(ExpandError::UnterminatedDoubleQuote),
                Some('"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some('$') => out.push_str(&self.dollar()?),
                Some(c) => {
                    self.pos += 1;
                    // Inside double quotes only ", $ and the escape character itself can be
                    // escaped; any other escape character is kept as written.
                    if c == self.escape {
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.escape => {
                                self.pos += 1;
                                out.push(n);
                                continue;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(c);
                }
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        if let Some(c) = self.peek() {
            if c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if "@*#?-$!".contains(c) {
                self.pos += 1;
                return c.to_string();
            }
        }
        while let Some(c) = self.peek() {
            if !(c.is_alphanumeric() || c == '_') {
                break;
            }
            name.push(c);
            self.pos += 1;
        }
        name
    }

    fn dollar(&mut self) -> Result<String, ExpandError> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok((self.lookup)(&name).unwrap_or_default());
        }
        self.pos += 1;
        let name = self.name();
        let value = (self.lookup)(&name);
        match self.next() {
            Some('}') => Ok(value.unwrap_or_default()),
            Some(':') => {
                let modifier = self.next().ok_or(ExpandError::MissingBrace)?;
                let word = self.until(Some('}'))?;
                let value = value.unwrap_or_default();
                match modifier {
                    '-' if value.is_empty() => Ok(word),
                    '-' => Ok(value),
                    '+' if value.is_empty() => Ok(String::new()),
                    '+' => Ok(word),
                    '?' if value.is_empty() => Err(unset_error(&name, word)),
                    '?' => Ok(value),
                    other => Err(ExpandError::UnsupportedModifier(format!(":{other}"))),
                }
            }
            Some(modifier @ ('-' | '+' | '?')) => {
                let word = self.until(Some('}'))?;
                match (modifier, value) {
                    ('-', None) => Ok(word),
                    ('+', Some(_)) => Ok(word),
                    ('+', None) => Ok(String::new()),
                    ('?', None) => Err(unset_error(&name, word)),
                    (_, Some(v)) => Ok(v),
                    _ => unreachable!("modifier is one of - + ?"),
                }
            }
            Some(other) => Err(ExpandError::UnsupportedModifier(other.to_string())),
            None => Err(ExpandError::MissingBrace),
        }
    }
}

fn unset_error(name: &str, message: String) -> ExpandError {
    if message.is_empty() {
        ExpandError::Unset(format!("{name}: is not allowed to be unset"))
    } else {
        ExpandError::Unset(format!("{name}: {message}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/root".into()),
            "EMPTY" => Some(String::new()),
            "NAME" => Some("berth".into()),
            "SPACED" => Some("a b".into()),
            "1" => Some("one".into()),
            _ => None,
        }
    }

    #[test]
    fn substitution_table() {
        let cases: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("$HOME", "/root"),
            ("${HOME}", "/root"),
            ("${HOME}/bin", "/root/bin"),
            ("$HOME/bin", "/root/bin"),
            ("$HOMEx", ""),
            ("${HOME}x", "/rootx"),
            ("$UNSET", ""),
            ("${UNSET}", ""),
            ("a${UNSET}b", "ab"),
            ("${UNSET:-def}", "def"),
            ("${EMPTY:-def}", "def"),
            ("${HOME:-def}", "/root"),
            ("${UNSET-def}", "def"),
            ("${EMPTY-def}", ""),
            ("${HOME-def}", "/root"),
            ("${UNSET:+alt}", ""),
            ("${EMPTY:+alt}", ""),
            ("${HOME:+alt}", "alt"),
            ("${UNSET+alt}", ""),
            ("${EMPTY+alt}", "alt"),
            ("${HOME+alt}", "alt"),
            ("${UNSET:-$HOME}", "/root"),
            ("${UNSET:-${NAME:-x}/y}", "berth/y"),
            ("${UNSET:-a b}", "a b"),
            ("${HOME:?must be set}", "/root"),
            ("\\$HOME", "$HOME"),
            ("\\${HOME}", "${HOME}"),
            ("'$HOME'", "$HOME"),
            ("'${HOME}'", "${HOME}"),
            ("\"$HOME\"", "/root"),
            ("\"a $NAME b\"", "a berth b"),
            ("\"\\$HOME\"", "$HOME"),
            ("\"\\\"\"", "\""),
            ("\"a\\b\"", "a\\b"),
            ("\"'$NAME'\"", "'berth'"),
            ("'\"$NAME\"'", "\"$NAME\""),
            ("a\\ b", "a b"),
            ("\\\\", "\\"),
            ("trailing\\", "trailing"),
            ("$", "$"),
            ("a$", "a$"),
            ("$/x", "$/x"),
            ("$1", "one"),
            ("$$", ""),
            ("$SPACED", "a b"),
            ("\"$SPACED\"", "a b"),
            ("x${NAME}y${HOME}z", "xberthy/rootz"),
        ];
        for (word, want) in cases {
            assert_eq!(expand(word, &env).as_deref(), Ok(*want), "word {word:?}");
        }
    }

    #[test]
    fn backtick_escape() {
        let cases: &[(&str, &str)] = &[
            ("`$HOME", "$HOME"),
            ("C:\\dir\\$NAME", "C:\\dir\\berth"),
            ("\"`\"\"", "\""),
            ("a` b", "a b"),
        ];
        for (word, want) in cases {
            assert_eq!(
                expand_with_escape(word, '`', &env).as_deref(),
                Ok(*want),
                "word {word:?}"
            );
        }
    }

    #[test]
    fn errors() {
        let cases: &[(&str, ExpandError)] = &[
            ("'abc", ExpandError::UnterminatedSingleQuote),
            ("\"abc", ExpandError::UnterminatedDoubleQuote),
            ("\"abc\\\"", ExpandError::UnterminatedDoubleQuote),
            ("${HOME", ExpandError::MissingBrace),
            ("${UNSET:-abc", ExpandError::MissingBrace),
            ("${HOME:=x}", ExpandError::UnsupportedModifier(":=".into())),
            ("${HOME%x}", ExpandError::UnsupportedModifier("%".into())),
            (
                "${UNSET:?needed}",
                ExpandError::Unset("UNSET: needed".into()),
            ),
            (
                "${EMPTY:?}",
                ExpandError::Unset("EMPTY: is not allowed to be unset".into()),
            ),
            ("${UNSET?x}", ExpandError::Unset("UNSET: x".into())),
        ];
        for (word, want) in cases {
            assert_eq!(expand(word, &env).as_ref(), Err(want), "word {word:?}");
        }
        assert_eq!(expand("${EMPTY?x}", &env).as_deref(), Ok(""));
    }
}
