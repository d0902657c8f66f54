//! The typed instructions of a Dockerfile, as written (before substitution), and
//! [`Instruction::expand`], which substitutes variables in the instructions where Docker does.

use std::time::Duration;

use crate::expand::{expand_with_escape, ExpandError};

/// A parsed Dockerfile: its directives, the ARGs before the first FROM, and its stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub directives: Directives,
    pub global_args: Vec<Step>,
    pub stages: Vec<Stage>,
}

/// Parser directives from the top of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    pub syntax: Option<String>,
    pub escape: char,
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            syntax: None,
            escape: '\\',
            check: None,
        }
    }
}

/// One build stage: its FROM and the instructions after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// The `AS` name, lowercased.
    pub name: Option<String>,
    pub from: From,
    pub line: usize,
    pub steps: Vec<Step>,
}

/// An instruction with the lines it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub line: usize,
    pub end_line: usize,
    /// The logical line as written (continuations joined), for history and cache keys.
    pub original: String,
    pub instruction: Instruction,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    From(From),
    Run(Run),
    Cmd(Command),
    Entrypoint(Command),
    Shell(Vec<String>),
    Copy(Copy),
    Add(Add),
    Env(Vec<(String, String)>),
    Arg(Vec<ArgDef>),
    Label(Vec<(String, String)>),
    Workdir(String),
    User(String),
    Expose(Vec<String>),
    Volume(Vec<String>),
    Healthcheck(Healthcheck),
    StopSignal(String),
    Onbuild(Box<Instruction>),
    Maintainer(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    pub image: String,
    pub name: Option<String>,
    pub platform: Option<String>,
}

/// Exec form (a JSON array) or shell form (text for the stage's SHELL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Exec(Vec<String>),
    Shell(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub command: Command,
    pub mounts: Vec<Mount>,
    pub network: Option<Network>,
    pub security: Option<String>,
    pub heredocs: Vec<Heredoc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Default,
    None,
    Host,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

/// A `RUN --mount=` as BuildKit reads it; options berth does not model are kept in `options`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: MountKind,
    pub target: Option<String>,
    pub source: Option<String>,
    pub from: Option<String>,
    pub id: Option<String>,
    pub readonly: bool,
    pub sharing: Option<String>,
    pub options: Vec<(String, String)>,
}

/// A here-document body following the instruction's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    /// The lines between the instruction and the delimiter, each ending in `\n`; with
    /// `<<-` leading tabs are already removed.
    pub content: String,
    /// False when the delimiter was quoted: the body is then taken literally.
    pub expand: bool,
    /// `<<-`: leading tabs stripped.
    pub strip_tabs: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// Paths (or, for ADD, URLs) from the context; heredoc sources are in `heredocs`.
    pub sources: Vec<String>,
    pub dest: String,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
    pub heredocs: Vec<Heredoc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Add {
    pub sources: Vec<String>,
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub keep_git_dir: bool,
    pub checksum: Option<String>,
    pub exclude: Vec<String>,
    pub heredocs: Vec<Heredoc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDef {
    pub name: String,
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    None,
    Cmd {
        command: Command,
        interval: Option<Duration>,
        timeout: Option<Duration>,
        start_period: Option<Duration>,
        start_interval: Option<Duration>,
        retries: Option<u32>,
    },
}

type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Instruction {
    /// The instruction with variables substituted where Docker substitutes: ADD, COPY, ENV,
    /// EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR and ARG defaults. RUN, CMD,
    /// ENTRYPOINT, SHELL, HEALTHCHECK, MAINTAINER and ONBUILD are returned unchanged.
    pub fn expand(&self, escape: char, lookup: Lookup<'_>) -> Result<Instruction, ExpandError> {
        let word = |w: &str| expand_with_escape(w, escape, lookup);
        let opt = |w: &Option<String>| w.as_deref().map(word).transpose();
        let list = |ws: &[String]| ws.iter().map(|w| word(w)).collect::<Result<Vec<_>, _>>();
        let pairs = |ps: &[(String, String)]| {
            ps.iter()
                .map(|(k, v)| Ok((word(k)?, word(v)?)))
                .collect::<Result<Vec<_>, ExpandError>>()
        };
        Ok(match self {
            Instruction::From(f) => Instruction::From(From {
                image: word(&f.image)?,
                name: f.name.clone(),
                platform: opt(&f.platform)?,
            }),
            Instruction::Copy(c) => Instruction::Copy(Copy {
                sources: list(&c.sources)?,
                dest: word(&c.dest)?,
                from: opt(&c.from)?,
                chown: opt(&c.chown)?,
                chmod: opt(&c.chmod)?,
                exclude: list(&c.exclude)?,
                ..c.clone()
            }),
            Instruction::Add(a) => Instruction::Add(Add {
                sources: list(&a.sources)?,
                dest: word(&a.dest)?,
                chown: opt(&a.chown)?,
                chmod: opt(&a.chmod)?,
                checksum: opt(&a.checksum)?,
                exclude: list(&a.exclude)?,
                ..a.clone()
            }),
            Instruction::Env(kv) => Instruction::Env(pairs(kv)?),
            Instruction::Label(kv) => Instruction::Label(pairs(kv)?),
            Instruction::Arg(args) => Instruction::Arg(
                args.iter()
                    .map(|a| {
                        Ok(ArgDef {
                            name: a.name.clone(),
                            default: opt(&a.default)?,
                        })
                    })
                    .collect::<Result<Vec<_>, ExpandError>>()?,
            ),
            Instruction::Workdir(w) => Instruction::Workdir(word(w)?),
            Instruction::User(u) => Instruction::User(word(u)?),
            Instruction::StopSignal(s) => Instruction::StopSignal(word(s)?),
            Instruction::Expose(ports) => Instruction::Expose(list(ports)?),
            Instruction::Volume(vols) => Instruction::Volume(list(vols)?),
            other => other.clone(),
        })
    }
}
