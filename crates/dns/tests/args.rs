//! berth-dns as a process: what its starter reads when it cannot serve. (Serving a
//! network is tested with real containers by the CLI's `dns` tests.) Having an
//! integration test also makes `cargo test --workspace` build the binary, which the
//! CLI's tests start.

use std::process::Command;

fn dns(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_berth-dns"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn bad_arguments_and_unknown_networks_are_one_error_line() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_str().unwrap();
    for (args, says) in [
        (vec!["--bogus", "x"], "error unknown argument --bogus"),
        (vec!["--state-dir"], "error --state-dir needs a value"),
        (vec!["--state-dir", dir], "error --network-id is required"),
        (vec!["--network-id", "abc"], "error --state-dir is required"),
        (
            vec!["--state-dir", dir, "--network-id", "abc"],
            "error network abc not found",
        ),
    ] {
        let (code, out) = dns(&args);
        assert_eq!(code, 1, "{args:?}");
        assert_eq!(out, format!("{says}\n"), "{args:?}");
    }
}
