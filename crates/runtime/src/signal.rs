//! Signal names and numbers as runc accepts them: "KILL", "SIGKILL", "9".

use crate::error::{Error, Result};
use nix::sys::signal::Signal;
use std::str::FromStr;

pub fn parse(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(Error::Other(format!("invalid signal number {n}")));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    if let Some(rt) = name.strip_prefix("SIGRTMIN") {
        return realtime(libc::SIGRTMIN(), rt, s);
    }
    if let Some(rt) = name.strip_prefix("SIGRTMAX") {
        return realtime(libc::SIGRTMAX(), rt, s);
    }
    match name.as_str() {
        "SIGIOT" => return Ok(libc::SIGABRT),
        "SIGCLD" => return Ok(libc::SIGCHLD),
        "SIGPOLL" => return Ok(libc::SIGIO),
        _ => {}
    }
    Signal::from_str(&name)
        .map(|s| s as i32)
        .map_err(|_| Error::Other(format!("unknown signal {s:?}")))
}

fn realtime(base: i32, offset: &str, orig: &str) -> Result<i32> {
    if offset.is_empty() {
        return Ok(base);
    }
    offset
        .parse::<i32>()
        .ok()
        .map(|o| base + o)
        .filter(|n| (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(n))
        .ok_or_else(|| Error::Other(format!("unknown signal {orig:?}")))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("KILL").unwrap(), 9);
        assert_eq!(parse("SIGTERM").unwrap(), 15);
        assert_eq!(parse("term").unwrap(), 15);
        assert_eq!(parse("9").unwrap(), 9);
        assert_eq!(parse("RTMIN+1").unwrap(), libc::SIGRTMIN() + 1);
        assert!(parse("SIGFOO").is_err());
        assert!(parse("0").is_err());
        assert!(parse("65").is_err());
    }
}
