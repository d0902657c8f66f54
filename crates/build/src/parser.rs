//! From logical lines to typed instructions and stages: each instruction's flags and argument
//! forms as BuildKit's frontend/dockerfile/instructions accepts them.

use std::time::Duration;

use crate::error::{ErrorKind, ParseError};
use crate::flags::{self, FlagKind, Flags};
use crate::instructions::*;
use crate::lexer::{heredoc_marker, lex, split_keyword, split_words};

/// Parses a Dockerfile into its directives, global ARGs and stages.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let (directives, nodes) = lex(text)?;
    let escape = directives.escape;
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    let last_line = nodes.last().map_or(0, |n| n.line);
    if nodes.is_empty() {
        return Err(ErrorKind::Empty.at(0));
    }
    for node in nodes {
        let instruction = instruction(&node.keyword, &node.rest, &node.heredocs, escape)
            .map_err(|k| k.at(node.line))?;
        // Catch bad quoting and substitutions now, with the line, rather than mid-build.
        instruction
            .expand(escape, &|_| Some("x".to_string()))
            .map_err(|e| ErrorKind::Expand(e).at(node.line))?;
        let step = Step {
            line: node.line,
            end_line: node.end_line,
            original: format!("{} {}", node.keyword, node.rest)
                .trim_end()
                .to_string(),
            instruction,
        };
        match (&step.instruction, stages.last_mut()) {
            (Instruction::From(from), _) => {
                if let Some(name) = &from.name {
                    if stages.iter().any(|st| st.name.as_ref() == Some(name)) {
                        return Err(ErrorKind::Syntax(format!("duplicate stage name {name:?}"))
                            .at(step.line));
                    }
                }
                stages.push(Stage {
                    name: from.name.clone(),
                    from: from.clone(),
                    line: step.line,
                    steps: Vec::new(),
                })
            }
            (Instruction::Arg(_), None) => global_args.push(step),
            (_, None) => return Err(ErrorKind::NoStage.at(step.line)),
            (_, Some(stage)) => stage.steps.push(step),
        }
    }
    if stages.is_empty() {
        return Err(ErrorKind::NoStage.at(last_line));
    }
    Ok(Dockerfile {
        directives,
        global_args,
        stages,
    })
}

fn instruction(
    keyword: &str,
    rest: &str,
    heredocs: &[Heredoc],
    escape: char,
) -> Result<Instruction, ErrorKind> {
    let upper = keyword.to_ascii_uppercase();
    let (given, args) = flags::extract(rest);
    let name: &'static str = match upper.as_str() {
        "FROM" => "FROM",
        "RUN" => "RUN",
        "CMD" => "CMD",
        "ENTRYPOINT" => "ENTRYPOINT",
        "SHELL" => "SHELL",
        "COPY" => "COPY",
        "ADD" => "ADD",
        "ENV" => "ENV",
        "ARG" => "ARG",
        "LABEL" => "LABEL",
        "WORKDIR" => "WORKDIR",
        "USER" => "USER",
        "EXPOSE" => "EXPOSE",
        "VOLUME" => "VOLUME",
        "HEALTHCHECK" => "HEALTHCHECK",
        "STOPSIGNAL" => "STOPSIGNAL",
        "ONBUILD" => "ONBUILD",
        "MAINTAINER" => "MAINTAINER",
        _ => return Err(ErrorKind::UnknownInstruction(upper)),
    };
    let allowed: &[(&str, FlagKind)] = match name {
        "FROM" => &[("platform", FlagKind::Value)],
        "RUN" => &[
            ("mount", FlagKind::Many),
            ("network", FlagKind::Value),
            ("security", FlagKind::Value),
        ],
        "COPY" => &[
            ("from", FlagKind::Value),
            ("chown", FlagKind::Value),
            ("chmod", FlagKind::Value),
            ("link", FlagKind::Bool),
            ("parents", FlagKind::Bool),
            ("exclude", FlagKind::Many),
        ],
        "ADD" => &[
            ("chown", FlagKind::Value),
            ("chmod", FlagKind::Value),
            ("link", FlagKind::Bool),
            ("keep-git-dir", FlagKind::Bool),
            ("checksum", FlagKind::Value),
            ("exclude", FlagKind::Many),
        ],
        "HEALTHCHECK" => &[
            ("interval", FlagKind::Value),
            ("timeout", FlagKind::Value),
            ("start-period", FlagKind::Value),
            ("start-interval", FlagKind::Value),
            ("retries", FlagKind::Value),
        ],
        // ONBUILD's flags belong to the wrapped instruction.
        "ONBUILD" => &[],
        _ => &[],
    };
    if name == "ONBUILD" {
        return onbuild(rest, heredocs, escape);
    }
    let flags = Flags::check(name, given, allowed)?;
    let required = |s: &str| {
        if s.is_empty() {
            Err(ErrorKind::MissingArguments(name))
        } else {
            Ok(s.to_string())
        }
    };
    Ok(match name {
        "FROM" => Instruction::From(from(args, flags)?),
        "RUN" => Instruction::Run(Run {
            command: command(name, args)?,
            mounts: flags
                .all("mount")
                .iter()
                .map(|m| mount(m))
                .collect::<Result<_, _>>()?,
            network: flags.value("network").map(|n| network(&n)).transpose()?,
            security: flags
                .value("security")
                .map(|s| match s.as_str() {
                    "sandbox" | "insecure" => Ok(s),
                    _ => Err(flags::invalid(
                        "security",
                        format!("unsupported value {s:?}"),
                    )),
                })
                .transpose()?,
            heredocs: heredocs.to_vec(),
        }),
        "CMD" => Instruction::Cmd(command(name, args)?),
        "ENTRYPOINT" => Instruction::Entrypoint(command(name, args)?),
        "SHELL" => match json_array(args) {
            Some(Ok(v)) if v.is_empty() => return Err(ErrorKind::MissingArguments(name)),
            Some(Ok(v)) => Instruction::Shell(v),
            _ => return Err(ErrorKind::JsonRequired(name)),
        },
        "COPY" => {
            let (sources, dest) = sources_and_dest(name, args)?;
            Instruction::Copy(Copy {
                sources,
                dest,
                from: flags.value("from"),
                chown: flags.value("chown"),
                chmod: flags.value("chmod"),
                link: flags.bool("link"),
                parents: flags.bool("parents"),
                exclude: flags.all("exclude"),
                heredocs: heredocs.to_vec(),
            })
        }
        "ADD" => {
            let (sources, dest) = sources_and_dest(name, args)?;
            Instruction::Add(Add {
                sources,
                dest,
                chown: flags.value("chown"),
                chmod: flags.value("chmod"),
                link: flags.bool("link"),
                keep_git_dir: flags.bool("keep-git-dir"),
                checksum: flags.value("checksum"),
                exclude: flags.all("exclude"),
                heredocs: heredocs.to_vec(),
            })
        }
        "ENV" => Instruction::Env(name_values(name, args, escape)?),
        "LABEL" => Instruction::Label(name_values(name, args, escape)?),
        "ARG" => Instruction::Arg(arg_defs(args, escape)?),
        "WORKDIR" => Instruction::Workdir(required(args)?),
        "USER" => Instruction::User(required(args)?),
        "STOPSIGNAL" => Instruction::StopSignal(required(args)?),
        "MAINTAINER" => Instruction::Maintainer(required(args)?),
        "EXPOSE" => {
            required(args)?;
            Instruction::Expose(args.split_whitespace().map(str::to_string).collect())
        }
        "VOLUME" => {
            let list = json_or_fields(args);
            if list.is_empty() {
                return Err(ErrorKind::MissingArguments(name));
            }
            if list.iter().any(|v| v.trim().is_empty()) {
                return Err(ErrorKind::Syntax(
                    "VOLUME specified can not be an empty string".into(),
                ));
            }
            Instruction::Volume(list)
        }
        "HEALTHCHECK" => Instruction::Healthcheck(healthcheck(args, &flags)?),
        _ => unreachable!("every known instruction is handled"),
    })
}

fn onbuild(rest: &str, heredocs: &[Heredoc], escape: char) -> Result<Instruction, ErrorKind> {
    let (keyword, inner) = split_keyword(rest);
    if keyword.is_empty() {
        return Err(ErrorKind::MissingArguments("ONBUILD"));
    }
    match keyword.to_ascii_uppercase().as_str() {
        "ONBUILD" => Err(ErrorKind::OnbuildChained),
        forbidden @ ("FROM" | "MAINTAINER") => {
            Err(ErrorKind::OnbuildForbidden(forbidden.to_string()))
        }
        _ => Ok(Instruction::Onbuild(Box::new(instruction(
            keyword, inner, heredocs, escape,
        )?))),
    }
}

fn from(args: &str, flags: Flags) -> Result<From, ErrorKind> {
    let words: Vec<&str> = args.split_whitespace().collect();
    let name = match words.as_slice() {
        [] => return Err(ErrorKind::MissingArguments("FROM")),
        [_] => None,
        [_, r#as, name] if r#as.eq_ignore_ascii_case("as") => {
            let name = name.to_ascii_lowercase();
            let mut chars = name.chars();
            let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
                && chars.all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !valid {
                return Err(ErrorKind::Syntax(format!(
                    "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
                )));
            }
            Some(name)
        }
        _ => {
            return Err(ErrorKind::Syntax(
                "FROM requires either one or three arguments".into(),
            ))
        }
    };
    Ok(From {
        image: words[0].to_string(),
        name,
        platform: flags.value("platform"),
    })
}

/// A JSON array of strings, if `args` is one; `Some(Err)` for an array holding non-strings.
fn json_array(args: &str) -> Option<Result<Vec<String>, ()>> {
    if !args.starts_with('[') {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(args).ok()?;
    let array = value.as_array()?;
    Some(
        array
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or(()))
            .collect(),
    )
}

/// Exec form when the arguments are a JSON array of strings, shell form otherwise.
fn command(name: &'static str, args: &str) -> Result<Command, ErrorKind> {
    match json_array(args) {
        Some(Ok(v)) => Ok(Command::Exec(v)),
        _ if args.is_empty() => Err(ErrorKind::MissingArguments(name)),
        _ => Ok(Command::Shell(args.to_string())),
    }
}

fn json_or_fields(args: &str) -> Vec<String> {
    match json_array(args) {
        Some(Ok(v)) => v,
        _ => args.split_whitespace().map(str::to_string).collect(),
    }
}

/// COPY/ADD arguments: the last is the destination; heredoc markers are sources whose
/// content is in the instruction's heredocs.
fn sources_and_dest(name: &'static str, args: &str) -> Result<(Vec<String>, String), ErrorKind> {
    let mut list = json_or_fields(args);
    if list.len() < 2 {
        return Err(ErrorKind::Syntax(format!(
            "{name} requires at least two arguments, but only {} provided. Destination could not be determined",
            if list.is_empty() { "none was" } else { "one was" }
        )));
    }
    let dest = list.pop().unwrap_or_default();
    list.retain(|s| heredoc_marker(s).is_none());
    Ok((list, dest))
}

/// ENV and LABEL: `key value` (legacy, one pair) or `k=v k2="v 2"`, kept unexpanded.
fn name_values(
    name: &'static str,
    args: &str,
    escape: char,
) -> Result<Vec<(String, String)>, ErrorKind> {
    let (words, closed) = split_words(args, escape);
    if !closed {
        return Err(ErrorKind::UnterminatedQuote);
    }
    let Some(first) = words.first() else {
        return Err(ErrorKind::MissingArguments(name));
    };
    if !first.contains('=') {
        let (key, value) = split_keyword(args);
        if value.is_empty() {
            return Err(ErrorKind::Syntax(format!("{name} must have two arguments")));
        }
        return Ok(vec![(key.to_string(), value.to_string())]);
    }
    words
        .iter()
        .map(|w| match w.split_once('=') {
            Some(("", _)) => Err(ErrorKind::Syntax(format!("{name} names can not be blank"))),
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(ErrorKind::Syntax(format!(
                "Syntax error - can't find = in {w:?}. Must be of the form: name=value"
            ))),
        })
        .collect()
}

fn arg_defs(args: &str, escape: char) -> Result<Vec<ArgDef>, ErrorKind> {
    let (words, closed) = split_words(args, escape);
    if !closed {
        return Err(ErrorKind::UnterminatedQuote);
    }
    if words.is_empty() {
        return Err(ErrorKind::MissingArguments("ARG"));
    }
    words
        .into_iter()
        .map(|w| {
            let (name, default) = match w.split_once('=') {
                Some((n, d)) => (n.to_string(), Some(d.to_string())),
                None => (w, None),
            };
            if name.is_empty() {
                return Err(ErrorKind::Syntax("ARG names can not be blank".into()));
            }
            Ok(ArgDef { name, default })
        })
        .collect()
}

fn network(value: &str) -> Result<Network, ErrorKind> {
    match value {
        "default" => Ok(Network::Default),
        "none" => Ok(Network::None),
        "host" => Ok(Network::Host),
        other => Err(flags::invalid(
            "network",
            format!("unsupported network mode {other:?}"),
        )),
    }
}

/// `type=cache,target=/root/.cache,sharing=locked`, as BuildKit's `--mount` reads it.
fn mount(spec: &str) -> Result<Mount, ErrorKind> {
    let bad = |reason: String| flags::invalid("mount", reason);
    let mut m = Mount {
        kind: MountKind::Bind,
        target: None,
        source: None,
        from: None,
        id: None,
        readonly: false,
        sharing: None,
        options: Vec::new(),
    };
    let mut readonly = None;
    for field in spec.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_string())),
            None => (field.to_ascii_lowercase(), None),
        };
        let need = |v: Option<String>| v.ok_or_else(|| bad(format!("{key} requires a value")));
        match key.as_str() {
            "type" => {
                m.kind = match need(value)?.as_str() {
                    "bind" => MountKind::Bind,
                    "cache" => MountKind::Cache,
                    "tmpfs" => MountKind::Tmpfs,
                    "secret" => MountKind::Secret,
                    "ssh" => MountKind::Ssh,
                    other => return Err(bad(format!("unsupported mount type {other:?}"))),
                }
            }
            "target" | "dst" | "destination" => m.target = Some(need(value)?),
            "source" | "src" => m.source = Some(need(value)?),
            "from" => m.from = Some(need(value)?),
            "id" => m.id = Some(need(value)?),
            "ro" | "readonly" => readonly = Some(value.as_deref() != Some("false")),
            "rw" | "readwrite" => readonly = Some(value.as_deref() == Some("false")),
            "sharing" => {
                let v = need(value)?;
                if !matches!(v.as_str(), "shared" | "private" | "locked") {
                    return Err(bad(format!("unsupported sharing value {v:?}")));
                }
                m.sharing = Some(v);
            }
            _ => m.options.push((key.clone(), value.unwrap_or_default())),
        }
    }
    // BuildKit mounts bind sources read-only unless told otherwise.
    m.readonly = readonly.unwrap_or(m.kind == MountKind::Bind);
    if m.target.is_none()
        && matches!(
            m.kind,
            MountKind::Bind | MountKind::Cache | MountKind::Tmpfs
        )
    {
        return Err(bad("mount target must be specified".into()));
    }
    Ok(m)
}

fn healthcheck(args: &str, flags: &Flags) -> Result<Healthcheck, ErrorKind> {
    let (kind, rest) = split_keyword(args);
    match kind.to_ascii_uppercase().as_str() {
        "" => Err(ErrorKind::MissingArguments("HEALTHCHECK")),
        "NONE" if rest.is_empty() => Ok(Healthcheck::None),
        "NONE" => Err(ErrorKind::Syntax(
            "HEALTHCHECK NONE takes no arguments".into(),
        )),
        "CMD" => {
            let duration = |name: &str| {
                flags
                    .value(name)
                    .map(|v| go_duration(&v).map_err(|r| flags::invalid(name, r)))
                    .transpose()
            };
            let retries = flags
                .value("retries")
                .map(|v| {
                    v.parse::<u32>()
                        .map_err(|_| flags::invalid("retries", format!("{v:?} is not a count")))
                })
                .transpose()?;
            Ok(Healthcheck::Cmd {
                command: command("HEALTHCHECK", rest)?,
                interval: duration("interval")?,
                timeout: duration("timeout")?,
                start_period: duration("start-period")?,
                start_interval: duration("start-interval")?,
                retries,
            })
        }
        other => Err(ErrorKind::Syntax(format!(
            "Unknown type {other:?} in HEALTHCHECK (try CMD)"
        ))),
    }
}

/// Go's `time.ParseDuration` for the non-negative values Docker accepts: `1h2m3.5s`, `500ms`.
/// Like Docker, a non-zero duration under 1ms is refused.
fn go_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?}");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    let d = Duration::from_secs_f64(total);
    if d != Duration::ZERO && d < Duration::from_millis(1) {
        return Err(format!("{text:?} cannot be less than 1ms"));
    }
    Ok(d)
}

#[cfg(test)]
#[path = "parser_tests.rs"]
mod tests;
