//! `berth pull`, `push`, `login` and `logout`.

use crate::images::open_store;
use crate::progress::{Display, Mode};
use crate::App;
use anyhow::{bail, Context, Result};
use clap::Args;
use image::reference::Reference;
use std::io::{BufRead, IsTerminal};

#[derive(Args)]
pub struct PullArgs {
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    /// Set platform if server is multi-platform capable (os/arch[/variant])
    #[arg(long)]
    pub platform: Option<String>,
    /// Require HTTPS and verify certificates for registries that are not loopback
    #[arg(long = "tls-verify", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub tls_verify: bool,
    /// Download all tagged images in the repository (not supported)
    #[arg(short = 'a', long = "all-tags")]
    pub all_tags: bool,
    pub image: String,
}

#[derive(Args)]
pub struct PushArgs {
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(long = "tls-verify", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub tls_verify: bool,
    pub image: String,
    /// Where to push, if not the image's own name (as podman push SOURCE DEST)
    pub destination: Option<String>,
}

#[derive(Args)]
pub struct LoginArgs {
    #[arg(short, long)]
    pub username: Option<String>,
    #[arg(short, long)]
    pub password: Option<String>,
    /// Take the password from stdin
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
    #[arg(long = "tls-verify", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub tls_verify: bool,
    /// Registry (default docker.io)
    pub server: Option<String>,
}

#[derive(Args)]
pub struct LogoutArgs {
    pub server: Option<String>,
}

fn options(tls_verify: bool) -> registry::Options {
    registry::Options {
        insecure: !tls_verify,
        auth_file: None,
    }
}

pub fn pull(app: &App, a: &PullArgs) -> Result<i32> {
    if a.all_tags {
        bail!("--all-tags is not supported yet");
    }
    let reference = Reference::parse(&a.image)?;
    let platform = a
        .platform
        .as_deref()
        .map(image::manifest::parse_platform)
        .transpose()?;
    let store = open_store(app)?;
    let display = Display::new(Mode::pick(a.quiet), false);
    if !a.quiet {
        println!(
            "{}: Pulling from {}",
            reference.tag.as_deref().unwrap_or("latest"),
            reference.familiar_name()
        );
    }
    let before = store
        .meta
        .resolve(&reference.to_string())
        .ok()
        .map(|r| r.id);
    let row = registry::pull(
        &store,
        &reference,
        platform.as_ref(),
        &options(a.tls_verify),
        &|e| display.event(e),
    )?;
    display.finish();
    if !a.quiet {
        println!("Digest: {}", row.manifest);
        let status = if before.as_ref() == Some(&row.id) {
            format!("Image is up to date for {}", reference.familiar())
        } else {
            format!("Downloaded newer image for {}", reference.familiar())
        };
        println!("Status: {status}");
    }
    println!("{reference}");
    Ok(0)
}

pub fn push(app: &App, a: &PushArgs) -> Result<i32> {
    let dest = Reference::parse(a.destination.as_deref().unwrap_or(&a.image))?;
    let store = open_store(app)?;
    let display = Display::new(Mode::pick(a.quiet), true);
    if !a.quiet {
        println!("The push refers to repository [{}]", dest.repo_name());
    }
    let digest = registry::push(&store, &a.image, &dest, &options(a.tls_verify), &|e| {
        display.event(e)
    })?;
    display.finish();
    if !a.quiet {
        let size = store.blobs.size(&digest).unwrap_or(0);
        println!(
            "{}: digest: {digest} size: {size}",
            dest.tag.as_deref().unwrap_or("latest")
        );
    }
    Ok(0)
}

fn server_of(s: Option<&str>) -> String {
    s.map(|s| {
        s.trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string()
    })
    .unwrap_or_else(|| "docker.io".into())
}

pub fn login(_app: &App, a: &LoginArgs) -> Result<i32> {
    let server = server_of(a.server.as_deref());
    let Some(user) = a.username.clone() else {
        bail!("login to {server}: --username is required (no interactive prompt)");
    };
    let password = match (&a.password, a.password_stdin) {
        (Some(_), true) => bail!("--password and --password-stdin are mutually exclusive"),
        (Some(p), false) => p.clone(),
        (None, true) => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("read password from stdin")?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => {
            if std::io::stdin().is_terminal() {
                bail!("login to {server}: give --password or --password-stdin");
            }
            bail!("login to {server}: cannot perform an interactive login from a non TTY device");
        }
    };
    if password.is_empty() {
        bail!("login to {server}: password is empty");
    }
    registry::login(
        &server,
        &registry::Credentials::new(&user, &password),
        &options(a.tls_verify),
    )?;
    println!("Login Succeeded");
    Ok(0)
}

pub fn logout(_app: &App, a: &LogoutArgs) -> Result<i32> {
    let server = server_of(a.server.as_deref());
    if registry::logout(&server, &options(true))? {
        println!("Removing login credentials for {server}");
    } else {
        println!("Not logged in to {server}");
    }
    Ok(0)
}
