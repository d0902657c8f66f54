//! `--format` as Docker reads it: a Go template over each row (`{{.Repository}}:{{.Tag}}`),
//! `table …` for a header and aligned columns, `json` for one JSON object per line. Only
//! the parts of text/template people use with docker are supported: fields, `json`,
//! `lower`, `upper`, `title`, `truncate`, `join`; anything else is an error naming it.

use anyhow::{bail, Result};
use serde_json::{Map, Value};

pub enum Format {
    /// The command's own table.
    Default,
    Json,
    Template {
        table: bool,
        text: String,
    },
}

impl Format {
    pub fn parse(s: Option<&str>) -> Format {
        match s.map(str::trim) {
            None | Some("") | Some("table") => Format::Default,
            Some("json") => Format::Json,
            Some(t) => {
                let (table, body) = match t.strip_prefix("table") {
                    Some(rest) if rest.starts_with(char::is_whitespace) => {
                        (true, rest.trim_start())
                    }
                    _ => (false, t),
                };
                // docker turns the two-character escapes into the characters.
                let text = body.replace("\\t", "\t").replace("\\n", "\n");
                Format::Template { table, text }
            }
        }
    }
}

/// Renders rows (objects keyed by docker's field names) with `fmt`; `default` is the
/// command's own table template, `headers` names its columns.
pub fn render(rows: &[Map<String, Value>], fmt: &Format, default: &str) -> Result<String> {
    match fmt {
        Format::Json => Ok(rows
            .iter()
            .map(|r| format!("{}\n", Value::Object(r.clone())))
            .collect()),
        Format::Default => table(rows, default),
        Format::Template { table: true, text } => table(rows, text),
        Format::Template { table: false, text } => {
            let t = parse(text)?;
            let mut out = String::new();
            for r in rows {
                out.push_str(&eval(&t, r)?);
                out.push('\n');
            }
            Ok(out)
        }
    }
}

/// [`render`] with some columns named otherwise than the shared header names (`volume ls`
/// heads `.Name` with VOLUME NAME).
pub fn render_named(
    rows: &[Map<String, Value>],
    fmt: &Format,
    default: &str,
    names: &[(&str, &str)],
) -> Result<String> {
    match fmt {
        Format::Default => table_named(rows, default, names),
        Format::Template { table: true, text } => table_named(rows, text, names),
        _ => render(rows, fmt, default),
    }
}

fn table(rows: &[Map<String, Value>], text: &str) -> Result<String> {
    table_named(rows, text, &[])
}

fn table_named(rows: &[Map<String, Value>], text: &str, names: &[(&str, &str)]) -> Result<String> {
    let t = parse(text)?;
    let header = header_of(&t, names);
    let mut lines = vec![header];
    for r in rows {
        lines.push(eval(&t, r)?);
    }
    Ok(tabwrite(&lines.join("\n"), 10, 3))
}

#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    /// A pipeline: function name (or none) and its arguments.
    Action {
        func: Option<String>,
        args: Vec<Arg>,
    },
}

#[derive(Debug, Clone)]
enum Arg {
    Dot,
    Field(String),
    Str(String),
    Int(i64),
}

fn parse(text: &str) -> Result<Vec<Piece>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            out.push(Piece::Text(rest[..start].to_string()));
        }
        let Some(end) = rest[start..].find("}}") else {
            bail!("template: unclosed action in {text:?}");
        };
        let inner = rest[start + 2..start + end].trim().trim_matches('-').trim();
        out.push(action(inner)?);
        rest = &rest[start + end + 2..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest.to_string()));
    }
    Ok(out)
}

fn action(s: &str) -> Result<Piece> {
    let words = split_words(s)?;
    let arg = |w: &str| -> Result<Arg> {
        Ok(if w == "." {
            Arg::Dot
        } else if let Some(f) = w.strip_prefix('.') {
            Arg::Field(f.to_string())
        } else if w.starts_with('"') {
            Arg::Str(w.trim_matches('"').to_string())
        } else if let Ok(n) = w.parse() {
            Arg::Int(n)
        } else {
            bail!("template: function {w:?} not defined")
        })
    };
    match words.first().map(String::as_str) {
        None => bail!("template: empty action"),
        Some(w) if w.starts_with('.') => Ok(Piece::Action {
            func: None,
            args: vec![arg(w)?],
        }),
        Some(f) => {
            if !matches!(
                f,
                "json" | "lower" | "upper" | "title" | "truncate" | "join"
            ) {
                bail!("template: function {f:?} not defined");
            }
            Ok(Piece::Action {
                func: Some(f.to_string()),
                args: words[1..].iter().map(|w| arg(w)).collect::<Result<_>>()?,
            })
        }
    }
}

fn split_words(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if quoted {
        bail!("template: unterminated quoted string in {s:?}");
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

fn lookup(arg: &Arg, row: &Map<String, Value>) -> Result<Value> {
    Ok(match arg {
        Arg::Dot => Value::Object(row.clone()),
        // `.State.Status`: each step into an object, as Go's template walks a struct.
        Arg::Field(f) => {
            let mut parts = f.split('.');
            let first = parts.next().unwrap_or_default();
            let mut v = row.get(f).or_else(|| row.get(first));
            if row.get(f).is_none() {
                for p in parts {
                    v = v.and_then(|x| x.get(p));
                }
            }
            match v {
                Some(v) => v.clone(),
                None => bail!("template: can't evaluate field {f}"),
            }
        }
        Arg::Str(s) => Value::String(s.clone()),
        Arg::Int(n) => Value::from(*n),
    })
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<no value>".into(),
        Value::Array(a) => format!("[{}]", a.iter().map(plain).collect::<Vec<_>>().join(" ")),
        v => v.to_string(),
    }
}

fn eval(t: &[Piece], row: &Map<String, Value>) -> Result<String> {
    let mut out = String::new();
    for p in t {
        match p {
            Piece::Text(s) => out.push_str(s),
            Piece::Action { func: None, args } => out.push_str(&plain(&lookup(&args[0], row)?)),
            Piece::Action {
                func: Some(f),
                args,
            } => {
                let vals: Vec<Value> =
                    args.iter().map(|a| lookup(a, row)).collect::<Result<_>>()?;
                out.push_str(&call(f, &vals)?);
            }
        }
    }
    Ok(out)
}

fn call(f: &str, v: &[Value]) -> Result<String> {
    let one = || -> Result<String> {
        match v {
            [x] => Ok(plain(x)),
            _ => bail!(
                "template: wrong number of args for {f}: want 1 got {}",
                v.len()
            ),
        }
    };
    Ok(match f {
        "json" => match v {
            [x] => x.to_string(),
            _ => bail!(
                "template: wrong number of args for json: want 1 got {}",
                v.len()
            ),
        },
        "lower" => one()?.to_lowercase(),
        "upper" => one()?.to_uppercase(),
        "title" => {
            let s = one()?;
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default()
        }
        "truncate" => match v {
            [x, Value::Number(n)] => plain(x)
                .chars()
                .take(n.as_u64().unwrap_or(0) as usize)
                .collect(),
            _ => bail!("template: truncate takes a value and a length"),
        },
        "join" => match v {
            [Value::Array(a), Value::String(sep)] => {
                a.iter().map(plain).collect::<Vec<_>>().join(sep)
            }
            [x, Value::String(_)] => plain(x),
            _ => bail!("template: join takes a list and a separator"),
        },
        _ => bail!("template: function {f:?} not defined"),
    })
}

/// Column headers for a table template: each field's name in docker's header style
/// (`.CreatedSince` → CREATED, `.ID` → IMAGE ID for images is set by the caller's names).
fn header_of(t: &[Piece], names: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for p in t {
        match p {
            Piece::Text(s) => out.push_str(s),
            Piece::Action { args, .. } => {
                if let Some(Arg::Field(f)) = args.iter().find(|a| matches!(a, Arg::Field(_))) {
                    match names.iter().find(|(field, _)| field == f) {
                        Some((_, name)) => out.push_str(name),
                        None => out.push_str(&header_name(f)),
                    }
                }
            }
        }
    }
    out
}

fn header_name(field: &str) -> String {
    match field {
        "ID" => "IMAGE ID".into(),
        "CreatedSince" | "CreatedAt" => "CREATED".into(),
        "Repository" => "REPOSITORY".into(),
        "TotalCount" => "TOTAL".into(),
        other => {
            // CamelCase to upper words: "CreatedBy" → "CREATED BY".
            let mut s = String::new();
            for (i, c) in other.char_indices() {
                if c.is_uppercase() && i > 0 && !other[..i].ends_with(|p: char| p.is_uppercase()) {
                    s.push(' ');
                }
                s.extend(c.to_uppercase());
            }
            s
        }
    }
}

/// Go's text/tabwriter with the settings docker uses (minwidth, padding, no flags): tabs end
/// cells, a column is as wide as its widest cell plus padding, the last cell of a line is
/// not aligned.
pub fn tabwrite(text: &str, minwidth: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for cells in &lines {
        for (i, c) in cells.iter().enumerate().take(cells.len().saturating_sub(1)) {
            let w = (c.chars().count() + padding).max(minwidth);
            if widths.len() <= i {
                widths.push(w);
            } else {
                widths[i] = widths[i].max(w);
            }
        }
    }
    let mut out = String::new();
    for cells in &lines {
        for (i, c) in cells.iter().enumerate() {
            out.push_str(c);
            if i + 1 < cells.len() {
                out.extend(std::iter::repeat_n(' ', widths[i] - c.chars().count()));
            }
        }
        out.push('\n');
    }
    out
}

/// What every `inspect` prints: a JSON array of the objects, or with `--format` the
/// template once per object.
pub fn print_inspect(objects: Vec<Value>, format: Option<&str>) -> anyhow::Result<()> {
    match format {
        None | Some("") | Some("json") => {
            println!("{}", serde_json::to_string_pretty(&Value::Array(objects))?);
        }
        // Each object on its own: they may be of different kinds.
        Some(f) => {
            let fmt = Format::parse(Some(f));
            for v in objects {
                let row = v.as_object().cloned().unwrap_or_default();
                print!("{}", render(&[row], &fmt, "")?);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn templates_render_fields_and_functions() {
        let r = vec![row(
            json!({"Repository": "busybox", "Tag": "latest", "Names": ["a", "b"]}),
        )];
        let f = Format::parse(Some("{{.Repository}}:{{.Tag}} {{upper .Tag}} {{join .Names \",\"}} {{truncate .Repository 3}}"));
        assert_eq!(
            render(&r, &f, "").unwrap(),
            "busybox:latest LATEST a,b bus\n"
        );
        let f = Format::parse(Some("{{json .Tag}}"));
        assert_eq!(render(&r, &f, "").unwrap(), "\"latest\"\n");
    }

    #[test]
    fn table_has_header_and_aligned_columns() {
        let r = vec![row(json!({"Repository": "busybox", "Tag": "latest"}))];
        let f = Format::parse(Some("table {{.Repository}}\\t{{.Tag}}"));
        assert_eq!(
            render(&r, &f, "").unwrap(),
            "REPOSITORY   TAG\nbusybox      latest\n"
        );
    }

    #[test]
    fn json_format_is_one_object_per_line() {
        let r = vec![row(json!({"A": 1})), row(json!({"A": 2}))];
        assert_eq!(
            render(&r, &Format::Json, "").unwrap(),
            "{\"A\":1}\n{\"A\":2}\n"
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let r = vec![row(json!({"A": 1}))];
        let e = render(&r, &Format::parse(Some("{{.B}}")), "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("can't evaluate field B"), "{e}");
        let e = render(&r, &Format::parse(Some("{{nope .A}}")), "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"nope\" not defined"), "{e}");
        assert!(render(&r, &Format::parse(Some("{{.A")), "").is_err());
    }
}
