//! berth: Docker's command line without a daemon. Each command opens the store under
//! `--root`, does its work and exits.

mod archives;
mod format;
mod images;
mod mounts;
mod progress;
mod system;
mod transfer;
mod units;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "Containers without a daemon, with Docker's command line"
)]
pub struct App {
    /// Where images, containers and volumes are kept.
    #[arg(long, global = true, default_value = "/var/lib/berth")]
    pub root: PathBuf,
    /// Where runtime state (sockets, locks) is kept.
    #[arg(long, global = true, default_value = "/run/berth")]
    pub runroot: PathBuf,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// List images
    Images(images::ListArgs),
    /// Manage images
    #[command(subcommand)]
    Image(images::ImageCmd),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(images::TagArgs),
    /// Remove one or more images
    Rmi(images::RmiArgs),
    /// Show the history of an image
    History(images::HistoryArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(images::ImportArgs),
    /// Load an image from a tar archive or STDIN
    Load(archives::LoadArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(archives::SaveArgs),
    /// Download an image from a registry
    Pull(transfer::PullArgs),
    /// Upload an image to a registry
    Push(transfer::PushArgs),
    /// Log in to a registry
    Login(transfer::LoginArgs),
    /// Log out from a registry
    Logout(transfer::LogoutArgs),
    /// Manage berth
    #[command(subcommand)]
    System(system::SystemCmd),
}

fn main() {
    let app = match App::try_parse() {
        Ok(a) => a,
        Err(e) => {
            // Help and --version are not errors; usage errors exit 125 as docker's do.
            let code = if e.use_stderr() { 125 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let result = match &app.cmd {
        Cmd::Images(a) => images::list(&app, a),
        Cmd::Image(c) => images::image_cmd(&app, c),
        Cmd::Tag(a) => images::tag(&app, a),
        Cmd::Rmi(a) => images::rmi(&app, a),
        Cmd::History(a) => images::history(&app, a),
        Cmd::Import(a) => images::import(&app, a),
        Cmd::Load(a) => archives::load(&app, a),
        Cmd::Save(a) => archives::save(&app, a),
        Cmd::Pull(a) => transfer::pull(&app, a),
        Cmd::Push(a) => transfer::push(&app, a),
        Cmd::Login(a) => transfer::login(&app, a),
        Cmd::Logout(a) => transfer::logout(&app, a),
        Cmd::System(c) => system::system(&app, c),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("Error: {}", one_line(&e));
            std::process::exit(1);
        }
    }
}

/// The error and its causes on one line. Many of our errors already include their cause in
/// their own text, so a cause whose text is already there is not repeated.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg.replace('\n', " ")
}
