//! berth: Docker's command line without a daemon. Each command opens the store under
//! `--root`, does its work and exits.

mod archives;
mod attach;
mod building;
mod containers;
mod exec;
mod filesystem;
mod format;
mod images;
mod info;
mod inspect;
mod mounts;
mod networks;
mod procs;
mod progress;
mod run_flags;
mod system;
mod transfer;
mod units;
mod volumes;

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

/// Subcommands are deferred (here and in every nested command enum): clap then builds
/// only the arguments of the command being run, not all ~1000 of the CLI, which took
/// 0.46 ms of every `berth` invocation. Deferred, an `Args` struct's doc comment would
/// replace the command's description in `--help`, so those structs have `//` comments.
#[derive(Subcommand)]
#[command(defer = true)]
pub enum Cmd {
    /// Build an image from a Dockerfile
    Build(building::BuildArgs),
    /// Manage builds
    #[command(subcommand)]
    Builder(building::BuilderCmd),
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
    /// Create and run a new container from an image
    Run(containers::RunArgs),
    /// Create a new container
    Create(containers::RunArgs),
    /// Start one or more stopped containers
    Start(containers::StartArgs),
    /// List containers
    Ps(containers::PsArgs),
    /// Fetch the logs of a container
    Logs(containers::LogsArgs),
    /// Stop one or more running containers
    Stop(containers::StopArgs),
    /// Restart one or more containers
    Restart(containers::StopArgs),
    /// Kill one or more running containers
    Kill(containers::KillArgs),
    /// Remove one or more containers
    Rm(containers::RmArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(containers::NamesArgs),
    /// Pause all processes within one or more containers
    Pause(containers::NamesArgs),
    /// Unpause all processes within one or more containers
    Unpause(containers::NamesArgs),
    /// Rename a container
    Rename(containers::RenameArgs),
    #[command(flatten)]
    Procs(procs::ProcCmd),
    /// Manage containers
    #[command(subcommand)]
    Container(containers::ContainerCmd),
    /// Copy files/folders between a container and the local filesystem
    Cp(filesystem::CpArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(filesystem::DiffArgs),
    /// Export a container's filesystem as a tar archive
    Export(filesystem::ExportArgs),
    /// Create a new image from a container's changes
    Commit(filesystem::CommitArgs),
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
    /// Return low-level information on berth objects
    Inspect(inspect::InspectArgs),
    /// Display system-wide information
    Info(info::InfoArgs),
    /// Manage volumes
    #[command(subcommand)]
    Volume(volumes::VolumeCmd),
    /// Manage networks
    #[command(subcommand)]
    Network(networks::NetworkCmd),
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
        Cmd::Build(a) => building::build(&app, a),
        Cmd::Builder(c) => building::builder_cmd(&app, c),
        Cmd::Images(a) => images::list(&app, a),
        Cmd::Image(c) => images::image_cmd(&app, c),
        Cmd::Tag(a) => images::tag(&app, a),
        Cmd::Rmi(a) => images::rmi(&app, a),
        Cmd::History(a) => images::history(&app, a),
        Cmd::Import(a) => images::import(&app, a),
        Cmd::Load(a) => archives::load(&app, a),
        Cmd::Save(a) => archives::save(&app, a),
        Cmd::Run(a) => containers::run(&app, a),
        Cmd::Create(a) => containers::create(&app, a),
        Cmd::Start(a) => containers::start(&app, a),
        Cmd::Ps(a) => containers::ps(&app, a),
        Cmd::Logs(a) => containers::logs(&app, a),
        Cmd::Stop(a) => containers::stop(&app, a),
        Cmd::Restart(a) => containers::restart(&app, a),
        Cmd::Kill(a) => containers::kill(&app, a),
        Cmd::Rm(a) => containers::rm(&app, a),
        Cmd::Wait(a) => containers::wait(&app, a),
        Cmd::Pause(a) => containers::pause(&app, a, true),
        Cmd::Unpause(a) => containers::pause(&app, a, false),
        Cmd::Rename(a) => containers::rename(&app, a),
        Cmd::Procs(c) => procs::run(&app, c),
        Cmd::Container(c) => containers::container_cmd(&app, c),
        Cmd::Cp(a) => filesystem::cp(&app, a),
        Cmd::Diff(a) => filesystem::diff(&app, a),
        Cmd::Export(a) => filesystem::export(&app, a),
        Cmd::Commit(a) => filesystem::commit(&app, a),
        Cmd::Pull(a) => transfer::pull(&app, a),
        Cmd::Push(a) => transfer::push(&app, a),
        Cmd::Login(a) => transfer::login(&app, a),
        Cmd::Logout(a) => transfer::logout(&app, a),
        Cmd::System(c) => system::system(&app, c),
        Cmd::Inspect(a) => inspect::inspect(&app, a),
        Cmd::Info(a) => info::info(&app, a),
        Cmd::Volume(c) => volumes::volume_cmd(&app, c),
        Cmd::Network(c) => networks::network_cmd(&app, c),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("Error: {}", one_line(&e));
            // Container commands carry Docker's exit codes (125, 126, 127).
            let code = e.downcast_ref::<containers::Exit>().map_or(1, |x| x.0);
            std::process::exit(code);
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
