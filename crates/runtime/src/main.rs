//! berth-runtime: runc's command line over the `runtime` library, so containerd, Podman
//! and dockerd can use it in place of runc.

mod cli;
mod tty;

use clap::Parser;
use std::io::Write;

fn main() {
    // runc answers `--version`/`-v` with three lines that tools parse; clap's own format
    // would differ, so it is handled before clap sees the arguments.
    let argv: Vec<String> = std::env::args().collect();
    if argv.len() >= 2 && (argv[1] == "--version" || argv[1] == "-v") {
        print!("{}", cli::version_text());
        return;
    }
    // Before anything else, so the work before the re-exec is not done twice.
    if enters_container(&argv) {
        if let Err(e) = runtime::exeseal::ensure() {
            let _ = writeln!(std::io::stderr(), "berth-runtime: {e}");
            std::process::exit(1);
        }
    }
    let app = cli::App::parse();
    let log = cli::Log::new(app.log.as_deref(), &app.log_format);
    match cli::run(app) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let msg = format!("{e:#}");
            log.error(&msg);
            let _ = writeln!(std::io::stderr(), "berth-runtime: {msg}");
            std::process::exit(1);
        }
    }
}

/// Whether the command is one that puts this binary inside a container (create, run, exec).
/// The command is the first word that is neither a global flag nor the value of one.
fn enters_container(argv: &[String]) -> bool {
    let mut args = argv.iter().skip(1);
    while let Some(a) = args.next() {
        if matches!(
            a.as_str(),
            "--root" | "--log" | "--log-format" | "--criu" | "--rootless"
        ) {
            args.next();
        } else if !a.starts_with('-') {
            return matches!(a.as_str(), "create" | "run" | "exec");
        }
    }
    false
}
