//! One file per operation on a container, as the runc command line names them.

mod create;
mod delete;
mod exec;
mod kill;
mod pause;
mod start;
mod update;

pub use create::{create, CreateOptions, Created};
pub use delete::delete;
pub use exec::{exec, ExecOptions};
pub use kill::kill;
pub use pause::{pause, resume};
pub use start::start;
pub use update::update;
