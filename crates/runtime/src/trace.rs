//! Start-up timeline for performance work: with `BERTH_RUNTIME_TRACE=1` in the environment,
//! each mark prints `berth-trace <pid> <CLOCK_MONOTONIC µs> <label>` to stderr. The clock is
//! shared by the runtime and the init, so their lines merge into one timeline.

use std::sync::OnceLock;

static ON: OnceLock<bool> = OnceLock::new();

pub fn mark(label: &str) {
    if !*ON.get_or_init(|| std::env::var_os("BERTH_RUNTIME_TRACE").is_some()) {
        return;
    }
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
        .unwrap_or(0);
    // One write(2) per line, so lines from the runtime and the init do not interleave.
    let line = format!("berth-trace {} {t} {label}\n", std::process::id());
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
}
