//! The Dockerfile front end of `berth build`: parser directives, logical lines, heredocs,
//! typed instructions grouped into stages, Docker's variable substitution and
//! `.dockerignore` matching. The builder that runs the stages comes on top of this.

pub mod expand;
pub mod ignore;
