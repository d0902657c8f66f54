//! The one error a Dockerfile parse returns: what went wrong and on which line.

use std::fmt;

use thiserror::Error;

use crate::expand::ExpandError;

/// A parse error on a line of the Dockerfile (1-based; 0 when it concerns the whole file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub kind: ErrorKind,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "Dockerfile: {}", self.kind)
        } else {
            write!(f, "Dockerfile:{}: {}", self.line, self.kind)
        }
    }
}

impl std::error::Error for ParseError {}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ErrorKind {
    #[error("unknown instruction: {0}")]
    UnknownInstruction(String),
    #[error("unterminated heredoc: {0}")]
    UnterminatedHeredoc(String),
    #[error("unterminated quote")]
    UnterminatedQuote,
    #[error(transparent)]
    Expand(#[from] ExpandError),
    #[error("{0} requires the arguments to be in JSON form")]
    JsonRequired(&'static str),
    #[error("{0} requires at least one argument")]
    MissingArguments(&'static str),
    #[error("{0}")]
    Syntax(String),
    #[error("{0} isn't allowed as an ONBUILD trigger")]
    OnbuildForbidden(String),
    #[error("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")]
    OnbuildChained,
    #[error("unknown flag: --{flag} for {instruction}")]
    UnknownFlag {
        instruction: &'static str,
        flag: String,
    },
    #[error("duplicate flag specified: --{0}")]
    DuplicateFlag(String),
    #[error("invalid value for --{flag}: {reason}")]
    InvalidFlag { flag: String, reason: String },
    #[error("invalid escape token '{0}' does not match ` or \\")]
    InvalidEscape(String),
    #[error("only one {0} parser directive can be used")]
    DuplicateDirective(String),
    #[error("file with no instructions")]
    Empty,
    #[error("no build stage in current context")]
    NoStage,
}

impl ErrorKind {
    pub(crate) fn at(self, line: usize) -> ParseError {
        ParseError { line, kind: self }
    }
}
