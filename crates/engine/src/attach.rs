//! A client of the monitor's attach socket (docs/monitor.md): frames with docker's
//! stdcopy header, `[stream, 0, 0, 0, len u32 BE]` + payload.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::container::{Engine, EngineError, Starting};
use crate::store::Container;

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const EXIT: u8 = 3;
pub const RESIZE: u8 = 4;
pub const CLOSE_STDIN: u8 = 5;
/// To the monitor: this client runs the cleanup after the exit (docs/monitor.md).
pub const CLEANUP: u8 = 6;
/// To the monitor: the cleanup is done.
pub const DONE: u8 = 7;

/// Frames larger than this from the monitor mean the stream is not what we think.
const MAX_FRAME: usize = 1 << 20;

/// Connects to `STATE/attach.sock`. The path holds a 64-character ID and may pass the
/// 108-byte limit of socket addresses, so it is reached through an `O_PATH` fd of `STATE`.
pub fn connect(state_dir: &Path) -> std::io::Result<UnixStream> {
    let dir: OwnedFd = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(state_dir)?
        .into();
    UnixStream::connect(format!("/proc/self/fd/{}/attach.sock", dir.as_raw_fd()))
}

pub fn write_frame(w: &mut impl Write, stream: u8, payload: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(payload.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let mut head = [stream, 0, 0, 0, 0, 0, 0, 0];
    head[4..].copy_from_slice(&len.to_be_bytes());
    w.write_all(&head)?;
    w.write_all(payload)
}

/// The next frame, or `None` at a clean end of stream.
pub fn read_frame(r: &mut impl Read) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 8];
    match r.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("attach: a frame of {len} bytes"),
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((head[0], payload)))
}

pub fn resize(w: &mut impl Write, rows: u16, cols: u16) -> std::io::Result<()> {
    let mut p = [0u8; 4];
    p[..2].copy_from_slice(&rows.to_be_bytes());
    p[2..].copy_from_slice(&cols.to_be_bytes());
    write_frame(w, RESIZE, &p)
}

/// Copies output frames to `out`/`err` until the exit frame; returns the exit code, or
/// `None` if the monitor went away without one.
pub fn pump_output(
    sock: &mut impl Read,
    out: &mut impl Write,
    err: &mut impl Write,
) -> std::io::Result<Option<i32>> {
    while let Some((stream, payload)) = read_frame(sock)? {
        match stream {
            STDOUT => {
                out.write_all(&payload)?;
                out.flush()?;
            }
            STDERR => {
                err.write_all(&payload)?;
                err.flush()?;
            }
            EXIT => {
                return Ok(String::from_utf8_lossy(&payload).trim().parse().ok());
            }
            _ => {}
        }
    }
    Ok(None)
}

/// Connects to the attach socket of a container being started with `attach`, which
/// appears shortly after its monitor starts. `None` if the monitor answered on its sync
/// pipe first (it failed) or never listened.
pub fn connect_starting(
    engine: &Engine,
    c: &Container,
    starting: &Starting<'_>,
) -> Option<UnixStream> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    use std::time::{Duration, Instant};
    let dir = engine.state_dir(&c.id);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match connect(&dir) {
            Ok(s) => return Some(s),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) => {}
            Err(_) => return None,
        }
        match starting.sync_fd() {
            Some(fd) => {
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                if let Ok(n) = poll(&mut fds, PollTimeout::from(1u8)) {
                    if n > 0 {
                        return None;
                    }
                }
            }
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    None
}

/// Starts a created container, copies its output to `out` and `err` until it exits, and
/// records the exit (unmounting its root) before returning its status. No stdin, no
/// terminal, no signals passed on: for the builder's RUN steps, whose caller removes the
/// container afterwards.
pub fn run_to_exit(
    engine: &Engine,
    c: &Container,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> Result<i32, EngineError> {
    let starting = engine.start(c, true)?;
    let Some(sock) = connect_starting(engine, c, &starting) else {
        return match starting.wait() {
            Err(e) => Err(e),
            Ok(_) => Err(EngineError::Other(
                "could not attach to the container's monitor".into(),
            )),
        };
    };
    // We do the cleanup after the exit, as `run` does, so it is done when we return.
    let cleans_up = write_frame(&mut &sock, CLEANUP, &[]).is_ok();
    let mut reader = sock
        .try_clone()
        .map_err(|e| EngineError::Other(format!("attach: {e}")))?;
    let result = std::thread::scope(|s| {
        let pump = s.spawn(move || pump_output(&mut reader, &mut &mut *out, &mut &mut *err));
        let running = match starting.wait() {
            Ok(running) => running,
            Err(e) => {
                let _ = sock.shutdown(std::net::Shutdown::Both);
                let _ = pump.join();
                return Err(e);
            }
        };
        let result = pump.join();
        Ok((running, result))
    });
    let (running, result) = result?;
    if let (true, Ok(Ok(Some(_)))) = (cleans_up, &result) {
        if engine.cleanup(&c.id).is_ok() {
            let _ = write_frame(&mut &sock, DONE, &[]);
        }
    }
    engine.wait_monitor(&running, Some(std::time::Duration::from_secs(2)));
    match result {
        Ok(Ok(Some(code))) => Ok(code),
        _ => {
            let now = engine.find(&c.id).and_then(|c| engine.reconcile(c))?;
            Ok(now.exit_code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_pump_stops_at_exit() {
        let mut buf = Vec::new();
        write_frame(&mut buf, STDOUT, b"out\n").unwrap();
        write_frame(&mut buf, STDERR, b"err\n").unwrap();
        write_frame(&mut buf, EXIT, b"3").unwrap();
        write_frame(&mut buf, STDOUT, b"after").unwrap();
        assert_eq!(&buf[..8], &[1, 0, 0, 0, 0, 0, 0, 4]);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = pump_output(&mut buf.as_slice(), &mut out, &mut err).unwrap();
        assert_eq!(code, Some(3));
        assert_eq!(out, b"out\n");
        assert_eq!(err, b"err\n");
        let mut r = Vec::new();
        resize(&mut r, 30, 100).unwrap();
        assert_eq!(
            read_frame(&mut r.as_slice()).unwrap(),
            Some((RESIZE, vec![0, 30, 0, 100]))
        );
        assert_eq!(read_frame(&mut [].as_slice()).unwrap(), None);
    }
}
