//! From text to logical lines, as BuildKit's frontend/dockerfile/parser reads them: parser
//! directives at the top, comments, continuations with the escape character (comment and
//! empty lines inside a continuation are skipped), and heredoc bodies after RUN, COPY and ADD.

use crate::error::{ErrorKind, ParseError};
use crate::instructions::{Directives, Heredoc};

/// One instruction's logical line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub line: usize,
    pub end_line: usize,
    pub keyword: String,
    pub rest: String,
    pub heredocs: Vec<Heredoc>,
}

pub(crate) fn lex(text: &str) -> Result<(Directives, Vec<Node>), ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let (directives, mut i) = directives(&lines)?;
    let escape = directives.escape;
    let mut nodes = Vec::new();
    while i < lines.len() {
        let start = i + 1;
        let first = lines[i].trim_start();
        i += 1;
        if first.starts_with('#') || first.trim().is_empty() {
            continue;
        }
        let (head, mut done) = trim_continuation(first, escape);
        let mut logical = head.to_string();
        let mut end = start;
        while !done && i < lines.len() {
            let raw = lines[i];
            i += 1;
            if raw.trim_start().starts_with('#') || raw.trim().is_empty() {
                continue;
            }
            end = i;
            let (more, finished) = trim_continuation(raw, escape);
            logical.push_str(more);
            done = finished;
        }
        let logical = logical.trim();
        if logical.is_empty() {
            continue;
        }
        let (keyword, rest) = split_keyword(logical);
        let mut heredocs = Vec::new();
        for marker in heredoc_markers(keyword, rest, escape) {
            let mut content = String::new();
            let mut terminated = false;
            while i < lines.len() {
                let raw = lines[i];
                i += 1;
                let candidate = if marker.strip_tabs {
                    raw.trim_start_matches('\t')
                } else {
                    raw
                };
                if candidate == marker.name {
                    terminated = true;
                    break;
                }
                content.push_str(candidate);
                content.push('\n');
            }
            if !terminated {
                return Err(ErrorKind::UnterminatedHeredoc(marker.name).at(start));
            }
            end = i;
            heredocs.push(Heredoc { content, ..marker });
        }
        nodes.push(Node {
            line: start,
            end_line: end,
            keyword: keyword.to_string(),
            rest: rest.to_string(),
            heredocs,
        });
    }
    Ok((directives, nodes))
}

/// Reads the directive lines at the top; returns them and the index of the first other line.
fn directives(lines: &[&str]) -> Result<(Directives, usize), ParseError> {
    let mut d = Directives::default();
    let mut seen: Vec<String> = Vec::new();
    let mut i = 0;
    while let Some((name, value)) = lines.get(i).and_then(|l| directive(l)) {
        if !matches!(name.as_str(), "syntax" | "escape" | "check") {
            // An unknown directive is a comment, and a comment ends the directives.
            break;
        }
        if seen.contains(&name) {
            return Err(ErrorKind::DuplicateDirective(name).at(i + 1));
        }
        match name.as_str() {
            "escape" => {
                d.escape = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    _ => return Err(ErrorKind::InvalidEscape(value).at(i + 1)),
                }
            }
            "syntax" => d.syntax = Some(value),
            _ => d.check = Some(value),
        }
        seen.push(name);
        i += 1;
    }
    Ok((d, i))
}

/// `# name = value` with a name of letters and digits; the name is lowercased.
fn directive(line: &str) -> Option<(String, String)> {
    let body = line.strip_prefix('#')?;
    let (name, value) = body.split_once('=')?;
    let name = name.trim_matches([' ', '\t']);
    let value = value.trim_matches([' ', '\t']);
    let mut chars = name.chars();
    let valid = chars.next()?.is_ascii_alphabetic() && chars.all(|c| c.is_ascii_alphanumeric());
    (valid && !value.is_empty()).then(|| (name.to_ascii_lowercase(), value.to_string()))
}

/// Strips a trailing escape character (and the blanks after it); `true` when the line ends
/// the logical line.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    match trimmed.strip_suffix(escape) {
        Some(head) => (head, false),
        None => (line, true),
    }
}

pub(crate) fn split_keyword(line: &str) -> (&str, &str) {
    match line.find(char::is_whitespace) {
        Some(i) => (&line[..i], line[i..].trim()),
        None => (line, ""),
    }
}

/// The heredocs announced on a RUN, COPY or ADD line (also behind ONBUILD), in order, with
/// empty contents.
fn heredoc_markers(keyword: &str, rest: &str, escape: char) -> Vec<Heredoc> {
    let (keyword, rest) = if keyword.eq_ignore_ascii_case("onbuild") {
        split_keyword(rest)
    } else {
        (keyword, rest)
    };
    if !["run", "copy", "add"]
        .iter()
        .any(|k| keyword.eq_ignore_ascii_case(k))
    {
        return Vec::new();
    }
    split_words(rest, escape)
        .0
        .iter()
        .filter_map(|w| heredoc_marker(w))
        .collect()
}

/// Parses a word like `<<EOF`, `<<-EOF`, `<<"EOF"` or `3<<EOF` into an empty heredoc.
pub(crate) fn heredoc_marker(word: &str) -> Option<Heredoc> {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = rest.strip_prefix("<<")?;
    let (strip_tabs, raw) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if raw.is_empty() || raw.starts_with('<') {
        return None;
    }
    let quoted = raw.contains(['"', '\'']);
    let name: String = raw.chars().filter(|c| *c != '"' && *c != '\'').collect();
    if name.is_empty() {
        return None;
    }
    Some(Heredoc {
        name,
        content: String::new(),
        expand: !quoted,
        strip_tabs,
    })
}

/// Splits on blanks outside quotes, keeping quotes and escapes in the words. The flag is
/// false when a quote was left open.
pub(crate) fn split_words(text: &str, escape: char) -> (Vec<String>, bool) {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == escape && quote != Some('\'') {
            word.push(c);
            if let Some(n) = chars.next() {
                word.push(n);
            }
            continue;
        }
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                continue;
            }
            None => {}
        }
        word.push(c);
    }
    if !word.is_empty() {
        words.push(word);
    }
    (words, quote.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<(usize, usize, String, String)> {
        lex(text)
            .unwrap()
            .1
            .into_iter()
            .map(|n| (n.line, n.end_line, n.keyword, n.rest))
            .collect()
    }

    fn node(line: usize, end: usize, k: &str, r: &str) -> (usize, usize, String, String) {
        (line, end, k.to_string(), r.to_string())
    }

    #[test]
    fn directives_table() {
        let cases: &[(&str, Option<&str>, char)] = &[
            (
                "# syntax=docker/dockerfile:1\nFROM a",
                Some("docker/dockerfile:1"),
                '\\',
            ),
            ("# escape=`\nFROM a", None, '`'),
            ("#escape=\\\nFROM a", None, '\\'),
            ("# ESCAPE = `\nFROM a", None, '`'),
            ("#\tsyntax =  x \n# escape=`\nFROM a", Some("x"), '`'),
            // Directives only count before any comment, blank line or instruction.
            ("FROM a\n# escape=`", None, '\\'),
            ("# comment\n# escape=`\nFROM a", None, '\\'),
            ("\n# escape=`\nFROM a", None, '\\'),
            ("# unknown=1\n# escape=`\nFROM a", None, '\\'),
            // Leading blanks make it an ordinary comment.
            (" # escape=`\nFROM a", None, '\\'),
        ];
        for (text, syntax, escape) in cases {
            let (d, _) = lex(text).unwrap();
            assert_eq!(d.syntax.as_deref(), *syntax, "text {text:?}");
            assert_eq!(d.escape, *escape, "text {text:?}");
        }
        assert_eq!(
            lex("# escape=x\nFROM a").unwrap_err(),
            ErrorKind::InvalidEscape("x".into()).at(1)
        );
        assert_eq!(
            lex("# escape=`\n# escape=\\\nFROM a").unwrap_err(),
            ErrorKind::DuplicateDirective("escape".into()).at(2)
        );
    }

    #[test]
    fn continuations_and_comments() {
        assert_eq!(
            lines("FROM a\nRUN echo a \\\n    b\n"),
            vec![node(1, 1, "FROM", "a"), node(2, 3, "RUN", "echo a     b")]
        );
        assert_eq!(
            lines("FROM a\nRUN a \\\n# inside\n\n  \\\n  b\\  \n  c\nCMD x"),
            vec![
                node(1, 1, "FROM", "a"),
                node(2, 7, "RUN", "a     b  c"),
                node(8, 8, "CMD", "x")
            ]
        );
        assert_eq!(
            lines("# escape=`\nFROM a\nRUN dir c:\\ `\n  d:\\\n"),
            vec![
                node(2, 2, "FROM", "a"),
                node(3, 4, "RUN", "dir c:\\   d:\\")
            ]
        );
        assert_eq!(
            lines("  # indented comment\r\nfrom a  \r\n\r\n\trun  x\r\n"),
            vec![node(2, 2, "from", "a"), node(4, 4, "run", "x")]
        );
        // A continuation at the end of the file still ends the instruction.
        assert_eq!(lines("FROM a \\"), vec![node(1, 1, "FROM", "a")]);
    }

    #[test]
    fn heredocs() {
        let (_, nodes) = lex("FROM a\nRUN <<EOF\necho $X\n  EOF\nEOF\nCMD y\n").unwrap();
        assert_eq!(nodes[1].rest, "<<EOF");
        assert_eq!((nodes[1].line, nodes[1].end_line), (2, 5));
        assert_eq!(
            nodes[1].heredocs,
            vec![Heredoc {
                name: "EOF".into(),
                content: "echo $X\n  EOF\n".into(),
                expand: true,
                strip_tabs: false
            }]
        );
        assert_eq!((nodes[2].keyword.as_str(), nodes[2].line), ("CMD", 6));

        let (_, nodes) =
            lex("FROM a\nRUN <<-\"A\" cat - && cat 3<<'B'\n\tone\n\t\tnot A\n\tA\ntwo\nB\n")
                .unwrap();
        let docs = &nodes[1].heredocs;
        assert_eq!(docs.len(), 2);
        assert_eq!(
            (
                docs[0].name.as_str(),
                docs[0].content.as_str(),
                docs[0].expand,
                docs[0].strip_tabs
            ),
            ("A", "one\nnot A\n", false, true)
        );
        assert_eq!(
            (
                docs[1].name.as_str(),
                docs[1].content.as_str(),
                docs[1].expand
            ),
            ("B", "two\n", false)
        );
        assert_eq!(nodes[1].end_line, 7);

        // Quoted or non-heredoc words are not markers; heredocs only after RUN/COPY/ADD.
        let (_, nodes) = lex("FROM a\nRUN echo \"<<EOF\" '<<X' a<<<b\nLABEL x=<<EOF\n").unwrap();
        assert!(nodes.iter().all(|n| n.heredocs.is_empty()));
        assert_eq!(nodes.len(), 3);

        assert_eq!(
            lex("FROM a\nCOPY <<EOF /x\nno end\n").unwrap_err(),
            ErrorKind::UnterminatedHeredoc("EOF".into()).at(2)
        );
    }

    #[test]
    fn words() {
        let cases: &[(&str, &[&str], bool)] = &[
            ("a b  c", &["a", "b", "c"], true),
            ("a=\"x y\" b='1 2'", &["a=\"x y\"", "b='1 2'"], true),
            ("a\\ b c", &["a\\ b", "c"], true),
            ("\"open", &["\"open"], false),
            ("'it\\' x", &["'it\\'", "x"], true),
        ];
        for (text, want, closed) in cases {
            let (words, ok) = split_words(text, '\\');
            assert_eq!(words, *want, "text {text:?}");
            assert_eq!(ok, *closed, "text {text:?}");
        }
    }
}
