//! `pull ROOT REFERENCE`: pulls an image into the store at ROOT and prints how long it took
//! (for timing against `podman pull` until the CLI has `berth pull`).

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, root, reference] = &args[..] else {
        eprintln!("usage: pull ROOT REFERENCE");
        std::process::exit(2);
    };
    let start = Instant::now();
    let store = image::images::ImageStore::open(std::path::Path::new(root)).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let reference = image::reference::Reference::parse(reference).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let options = registry::Options::default();
    // PULL_TRACE=1 prints each layer's steps with the time since start.
    let trace = std::env::var_os("PULL_TRACE").is_some();
    let progress = |e: registry::Event| {
        let quiet = matches!(e.progress, registry::Progress::Downloading { done, .. } if done > 0);
        if trace && !quiet {
            eprintln!(
                "{:>8.3?} {} {:?}",
                start.elapsed(),
                e.digest.short(),
                e.progress
            );
        }
    };
    match registry::pull(&store, &reference, None, &options, &progress) {
        Ok(row) => println!("{} in {:.2?}", row.id, start.elapsed()),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1)
        }
    }
}
