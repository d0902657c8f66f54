//! Build script of the binaries that must be (or are better) static executables:
//! berth-init is bind-mounted into any image, which may have no dynamic loader and no libc;
//! berth-monitor stays resident beside every container, and a static binary keeps only
//! the pages it touches instead of mapping all of libc (its RSS is a budget); berth itself
//! runs twice per `berth run` (the command, then the monitor's exit command), and without
//! the dynamic loader it starts 0.7 ms sooner here. (glibc ≥ 2.34 has the files and dns
//! NSS modules built in, so name lookups work in a static binary.)
//!
//! Cargo cannot give one package `-C target-feature=+crt-static` (and the workspace-wide
//! flag breaks proc macros), and without it rustc links std's libraries with `-Bdynamic`.
//! So the linker is pointed first at a directory of ours that holds only static archives
//! under the names rustc asks for: ld takes the first directory holding either form of a
//! library, so every `-lc` (and `-lgcc_s`, which is libgcc_eh, the static unwinder)
//! resolves to an archive there.
use std::path::{Path, PathBuf};
use std::process::Command;

const LIBS: [&str; 7] = ["c", "m", "pthread", "dl", "rt", "util", "gcc_s"];

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    let dir = out.join("static-libs");
    std::fs::create_dir_all(&dir).unwrap();
    for lib in LIBS {
        let archive = if lib == "gcc_s" {
            "libgcc_eh.a".to_string()
        } else {
            format!("lib{lib}.a")
        };
        let path = cc_file(&archive);
        let link = dir.join(format!("lib{lib}.a"));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&path, &link)
            .unwrap_or_else(|e| panic!("{}: {e}", link.display()));
    }
    // For the executables only (ld applies -L to every -l wherever it appears): a test
    // harness is linked the usual, dynamic way, and static archives would break it.
    println!("cargo:rustc-link-arg-bins=-L{}", dir.display());
    // static-pie, not -static: these run as root (the monitor for as long as its
    // container, reading what the container writes; berth parsing registry responses and
    // layers with C decompressors), so they keep ASLR of their own code.
    //
    // Except berth-runtime: it is exec'd twice per container start (the CVE-2019-5736
    // re-exec) and once per delete, lives for milliseconds, and reads no untrusted data
    // beyond /etc/passwd and /etc/group lines (in safe Rust). A static-pie relocates
    // itself at every start: 16k relocations that copy-on-write ~80 pages of
    // .data.rel.ro, 0.18 ms of a 0.75 ms exec here (docs/kernel-notes.md). runc's Go
    // binaries were non-PIE for the same reason for years.
    if std::env::var("CARGO_PKG_NAME").as_deref() == Ok("berth-runtime") {
        println!("cargo:rustc-link-arg-bins=-static");
        println!("cargo:rustc-link-arg-bins=-no-pie");
        // Its entry point does the CVE-2019-5736 re-exec before glibc starts
        // (crates/runtime/src/early.rs), then jumps to glibc's `_start`.
        if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64") {
            println!("cargo:rustc-link-arg-bins=-Wl,--entry=berth_entry");
        }
    } else {
        println!("cargo:rustc-link-arg-bins=-static-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}

/// Where the C compiler finds `name` (it prints the bare name when it does not).
fn cc_file(name: &str) -> PathBuf {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let o = Command::new(&cc)
        .arg(format!("-print-file-name={name}"))
        .output()
        .unwrap_or_else(|e| panic!("{cc}: {e}"));
    let p = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
    assert!(
        p.is_absolute() && Path::new(&p).exists(),
        "{name} not found: install libc6-dev and libgcc-dev"
    );
    p
}
