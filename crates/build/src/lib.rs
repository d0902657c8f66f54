//! The Dockerfile front end of `berth build`: parser directives, logical lines, heredocs,
//! typed instructions grouped into stages, Docker's variable substitution and
//! `.dockerignore` matching, and the [`builder`] that runs the stages into images.

mod error;
pub mod expand;
mod flags;
pub mod ignore;
mod instructions;
mod lexer;
mod parser;

pub use error::{ErrorKind, ParseError};
pub use expand::{expand, expand_with_escape, ExpandError};
pub use ignore::{IgnoreError, IgnoreRules};
pub use instructions::*;
pub use parser::parse;
pub mod builder;
pub use builder::{build, BuildError, BuildOptions, Interrupt};
