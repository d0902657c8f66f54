//! The event loop: one poll(2) over the signalfd, the container's output (pipes or PTY
//! master), its stdin while it has bytes pending, the attach clients and the listener.
//! Every handler does one non-blocking read or write, so nothing waits on a slow peer.

use super::{note, Monitor};
use crate::attach::{Client, Event};
use crate::clock::Stamp;
use crate::log::Stream;
use crate::sys;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

/// A stream of the container's output: a pipe, or the PTY master.
pub(super) struct Output {
    pub(super) fd: Option<OwnedFd>,
    pub(super) stream: Stream,
}

/// The container's stdin: a pipe, or a duplicate of the PTY master.
pub(super) struct Stdin {
    pub(super) fd: OwnedFd,
    /// What the container has not taken yet. Clients are not read while it is non-empty,
    /// so it stays within a few reads.
    pub(super) pending: Vec<u8>,
    pub(super) close_when_flushed: bool,
}

impl Stdin {
    /// Writes what it can now and keeps the rest; false if the container's stdin is gone.
    fn write(&mut self, data: &[u8]) -> bool {
        if !self.pending.is_empty() {
            self.pending.extend_from_slice(data);
            return true;
        }
        match write_some(self.fd.as_fd(), data) {
            Ok(n) => {
                self.pending.extend_from_slice(&data[n..]);
                true
            }
            Err(_) => false,
        }
    }

    fn flush(&mut self) -> bool {
        match write_some(self.fd.as_fd(), &self.pending) {
            Ok(n) => {
                self.pending.drain(..n);
                if self.pending.is_empty() && self.pending.capacity() > 64 * 1024 {
                    self.pending = Vec::new();
                }
                true
            }
            Err(_) => false,
        }
    }
}

/// write(2) without blocking: the bytes taken, 0 if none fit.
fn write_some(fd: BorrowedFd, data: &[u8]) -> io::Result<usize> {
    match nix::unistd::write(fd, data) {
        Ok(n) => Ok(n),
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

#[derive(Clone, Copy)]
pub(super) enum Token {
    Signal,
    Listener,
    Output(usize),
    Stdin,
    Client(usize),
}

impl Monitor {
    /// One round of the event loop: waits up to `timeout` and handles what is ready.
    pub(super) fn turn(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        const IN: i16 = libc::POLLIN;
        self.pollfds.clear();
        self.tokens.clear();
        let mut add = |fds: &mut Vec<libc::pollfd>, fd: BorrowedFd, ev: i16, t: Token| {
            fds.push(sys::pollfd(fd, ev));
            self.tokens.push(t);
        };
        add(&mut self.pollfds, self.sig.as_fd(), IN, Token::Signal);
        if self.serving {
            for (i, o) in self.outputs.iter().enumerate() {
                if let Some(fd) = &o.fd {
                    add(&mut self.pollfds, fd.as_fd(), IN, Token::Output(i));
                }
            }
        }
        let stdin_busy = self.stdin.as_ref().is_some_and(|s| !s.pending.is_empty());
        if let Some(s) = self.stdin.as_ref().filter(|_| stdin_busy) {
            add(&mut self.pollfds, s.fd.as_fd(), libc::POLLOUT, Token::Stdin);
        }
        for (i, c) in self.clients.iter().enumerate() {
            if c.reading && stdin_busy {
                // Back-pressure: not read until the container takes its stdin. Not
                // polled at all, or a hangup would wake the loop for nothing; a gone
                // client shows when output is sent to it.
                continue;
            }
            let ev = if c.reading { IN } else { 0 };
            add(&mut self.pollfds, c.sock.as_fd(), ev, Token::Client(i));
        }
        // Last: what clients already sent is handled before a new client's first frames.
        if let Some(l) = &self.listener {
            add(&mut self.pollfds, l.as_fd(), IN, Token::Listener);
        }

        sys::poll(&mut self.pollfds, timeout)?;

        for k in 0..self.pollfds.len() {
            let rev = self.pollfds[k].revents;
            if rev == 0 {
                continue;
            }
            match self.tokens[k] {
                Token::Client(i) if self.clients[i].dead => {}
                Token::Signal => self.on_signal(),
                Token::Listener => self.accept(),
                Token::Output(i) => self.read_output(i),
                Token::Stdin => self.flush_stdin(),
                Token::Client(i) => {
                    if rev & IN != 0 {
                        self.read_client(i);
                    } else {
                        // POLLHUP/POLLERR with nothing left to read.
                        self.drop_client(i);
                    }
                }
            }
        }
        // However the first client went (it left, or was too slow), its stdin ended.
        if self.clients.iter().any(|c| c.dead && c.first && c.reading) {
            self.end_stdin_once();
        }
        self.clients.retain(|c| !c.dead);
        Ok(())
    }

    fn on_signal(&mut self) {
        // SIGTERM and the like are read and dropped: the container decides when to end.
        while let Ok(Some(_)) = self.sig.read_signal() {}
        self.reaper.reap();
    }

    fn accept(&mut self) {
        let Some(l) = &self.listener else { return };
        let sock = match l.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => return note(&format!("attach: accept: {e}")),
        };
        if let Err(e) = sock.set_nonblocking(true) {
            return note(&format!("attach: {e}"));
        }
        let first = !self.attached_once;
        self.attached_once = true;
        self.clients.push(Client::new(sock, first));
        // Frames a client sent right after connecting (a resize) are applied now, before
        // a --start-on-attach container is started.
        self.read_client(self.clients.len() - 1);
    }

    fn read_output(&mut self, i: usize) {
        let Some(fd) = &self.outputs[i].fd else {
            return;
        };
        let n = match nix::unistd::read(fd.as_fd(), &mut self.buf) {
            Ok(n) => n,
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => return,
            // EIO: the PTY's last slave descriptor is closed.
            Err(_) => 0,
        };
        if n == 0 {
            return self.close_output(i);
        }
        let stream = self.outputs[i].stream;
        let data = &self.buf[..n];
        if let Some(log) = &mut self.log {
            let r = log.write(stream, data, &Stamp::now());
            self.log_failing = noted_once(r, self.log_failing);
        }
        for c in &mut self.clients {
            c.send(stream as u8, data);
        }
    }

    pub(super) fn close_output(&mut self, i: usize) {
        if self.outputs[i].fd.take().is_none() {
            return;
        }
        if let Some(log) = &mut self.log {
            let r = log.finish(self.outputs[i].stream, &Stamp::now());
            self.log_failing = noted_once(r, self.log_failing);
        }
    }

    fn flush_stdin(&mut self) {
        let Some(s) = &mut self.stdin else { return };
        if !s.flush() || (s.pending.is_empty() && s.close_when_flushed) {
            self.stdin = None;
        }
    }

    fn read_client(&mut self, i: usize) {
        let c = &mut self.clients[i];
        let n = match io::Read::read(&mut c.sock, &mut self.buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return,
            Err(_) => return self.drop_client(i),
        };
        if n == 0 {
            // The client shut down its side (or left): it may still want the output.
            c.reading = false;
            if c.first {
                self.end_stdin_once();
            }
            return;
        }
        let Monitor {
            clients,
            stdin,
            outputs,
            winsize,
            buf,
            args,
            ..
        } = self;
        let c = &mut clients[i];
        let mut stdin_ended = false;
        c.decoder.feed(&buf[..n], |e| match e {
            Event::Stdin(data) => {
                let gone = match stdin.as_mut() {
                    Some(s) if !s.close_when_flushed => !s.write(data),
                    _ => false,
                };
                if gone {
                    // The container closed its stdin or is gone.
                    *stdin = None;
                }
            }
            Event::Resize { rows, cols } => {
                *winsize = Some((rows, cols));
                if args.tty {
                    if let Some(fd) = outputs.first().and_then(|o| o.fd.as_ref()) {
                        let _ = sys::set_winsize(fd.as_fd(), rows, cols);
                    }
                }
            }
            Event::StdinEnd => stdin_ended = true,
            Event::Cleanup => c.cleans_up = true,
            Event::Done => c.done = true,
        });
        if stdin_ended && c.first {
            self.end_stdin_once();
        }
    }

    fn drop_client(&mut self, i: usize) {
        self.clients[i].dead = true;
    }

    /// --stdin-once: the first client's stdin is the container's, and ends with it.
    fn end_stdin_once(&mut self) {
        if !self.args.stdin_once {
            return;
        }
        if let Some(s) = &mut self.stdin {
            s.close_when_flushed = true;
            if s.pending.is_empty() {
                // A pipe's write end closes: the container reads EOF. With a PTY only
                // our duplicate of the master closes and input stops, as in conmon.
                self.stdin = None;
            }
        }
    }
}

/// Notes a log error unless the previous write failed too; whether this one failed.
fn noted_once(r: io::Result<()>, failing: bool) -> bool {
    match r {
        Ok(()) => false,
        Err(e) => {
            if !failing {
                note(&format!("log: {e}"));
            }
            true
        }
    }
}
