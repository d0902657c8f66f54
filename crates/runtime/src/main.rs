//! berth-runtime: runc's command line over the `runtime` library, so containerd, Podman
//! and dockerd can use it in place of runc.

mod cli;
mod early;
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
    // The entry point has done it already on x86_64 unless something was unusual.
    if !early::exe_is_read_only() && enters_container(&argv) {
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

/// Whether the command is one that puts this binary inside a container (create, run, exec):
/// the entry point's answer (`early`), so the two paths agree.
fn enters_container(argv: &[String]) -> bool {
    let c: Vec<std::ffi::CString> = argv
        .iter()
        .map(|a| std::ffi::CString::new(a.as_str()).unwrap_or_default())
        .collect();
    let p: Vec<*const u8> = c.iter().map(|a| a.as_ptr().cast()).collect();
    // SAFETY: p holds p.len() live NUL-terminated strings.
    unsafe { early::enters_container(p.as_ptr(), p.len()) }
}
