//! Instruction flags (`--from=`, `--link`, `--mount=`…): read from the front of an
//! instruction's arguments, then checked against what each instruction accepts.

use crate::error::ErrorKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagKind {
    /// `--link` or `--link=true|false`.
    Bool,
    /// `--from=x`, at most once.
    Value,
    /// `--mount=…`, any number of times.
    Many,
}

/// The flags given to one instruction, after validation.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    given: Vec<(String, Option<String>)>,
}

/// Splits leading `--name[=value]` words off `rest`; a bare `--` ends the flags.
pub(crate) fn extract(rest: &str) -> (Vec<(String, Option<String>)>, &str) {
    let mut flags = Vec::new();
    let mut rest = rest.trim_start();
    while let Some(after) = rest.strip_prefix("--") {
        let (word, remainder) = take_word(after);
        rest = remainder.trim_start();
        if word.is_empty() {
            break;
        }
        match word.split_once('=') {
            Some((name, value)) => flags.push((name.to_string(), Some(value.to_string()))),
            None => flags.push((word, None)),
        }
    }
    (flags, rest)
}

/// One blank-delimited word with its quotes removed (quotes may group blanks).
fn take_word(text: &str) -> (String, &str) {
    let mut word = String::new();
    let mut quote: Option<char> = None;
    for (i, c) in text.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.push(c),
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c.is_whitespace() => return (word, &text[i..]),
            None => word.push(c),
        }
    }
    (word, "")
}

impl Flags {
    pub(crate) fn check(
        instruction: &'static str,
        given: Vec<(String, Option<String>)>,
        allowed: &[(&str, FlagKind)],
    ) -> Result<Flags, ErrorKind> {
        for (i, (name, value)) in given.iter().enumerate() {
            let Some((_, kind)) = allowed.iter().find(|(n, _)| n == name) else {
                return Err(ErrorKind::UnknownFlag {
                    instruction,
                    flag: name.clone(),
                });
            };
            if *kind != FlagKind::Many && given[..i].iter().any(|(n, _)| n == name) {
                return Err(ErrorKind::DuplicateFlag(name.clone()));
            }
            match (kind, value.as_deref()) {
                (FlagKind::Bool, None | Some("true" | "false")) => {}
                (FlagKind::Bool, Some(other)) => {
                    return Err(invalid(
                        name,
                        format!("expecting boolean value, got {other:?}"),
                    ))
                }
                (_, None) => return Err(invalid(name, "missing a value".to_string())),
                (_, Some(_)) => {}
            }
        }
        Ok(Flags { given })
    }

    pub(crate) fn value(&self, name: &str) -> Option<String> {
        self.given
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.clone())
    }

    pub(crate) fn all(&self, name: &str) -> Vec<String> {
        self.given
            .iter()
            .filter(|(n, _)| n == name)
            .filter_map(|(_, v)| v.clone())
            .collect()
    }

    pub(crate) fn bool(&self, name: &str) -> bool {
        self.given
            .iter()
            .any(|(n, v)| n == name && v.as_deref() != Some("false"))
    }
}

pub(crate) fn invalid(flag: &str, reason: String) -> ErrorKind {
    ErrorKind::InvalidFlag {
        flag: flag.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extract_table() {
        type Expected<'a> = (&'a [(&'a str, Option<&'a str>)], &'a str);
        let cases: &[(&str, Expected)] = &[
            ("a b", (&[], "a b")),
            ("--link a b", (&[("link", None)], "a b")),
            (
                "--from=build --chown=1:1 /a /b",
                (&[("from", Some("build")), ("chown", Some("1:1"))], "/a /b"),
            ),
            (
                "--mount=type=cache,target=/c  --network=none  make",
                (
                    &[
                        ("mount", Some("type=cache,target=/c")),
                        ("network", Some("none")),
                    ],
                    "make",
                ),
            ),
            ("--label=\"a b\" x", (&[("label", Some("a b"))], "x")),
            ("-- --not-a-flag", (&[], "--not-a-flag")),
            ("x --late", (&[], "x --late")),
        ];
        for (text, (flags, rest)) in cases {
            let (got, got_rest) = extract(text);
            let want: Vec<(String, Option<String>)> = flags
                .iter()
                .map(|(n, v)| (n.to_string(), v.map(str::to_string)))
                .collect();
            assert_eq!(got, want, "text {text:?}");
            assert_eq!(got_rest, *rest, "text {text:?}");
        }
    }

    #[test]
    fn check_rules() {
        let allowed = [
            ("link", FlagKind::Bool),
            ("from", FlagKind::Value),
            ("exclude", FlagKind::Many),
        ];
        let f = |text: &str| Flags::check("COPY", extract(text).0, &allowed);
        assert_eq!(
            f("--chown=1 a").unwrap_err(),
            ErrorKind::UnknownFlag {
                instruction: "COPY",
                flag: "chown".into()
            }
        );
        assert_eq!(
            f("--from=a --from=b x").unwrap_err(),
            ErrorKind::DuplicateFlag("from".into())
        );
        assert_eq!(
            f("--from x").unwrap_err(),
            invalid("from", "missing a value".into())
        );
        assert!(matches!(
            f("--link=maybe x"),
            Err(ErrorKind::InvalidFlag { .. })
        ));
        let ok = f("--exclude=a --exclude=b --link=false --from=s x").unwrap();
        assert_eq!(ok.all("exclude"), vec!["a", "b"]);
        assert!(!ok.bool("link"));
        assert_eq!(ok.value("from").as_deref(), Some("s"));
        assert!(f("--link x").unwrap().bool("link"));
    }
}
