//! The attach protocol of docs/monitor.md: Docker's stdcopy frames (`[stream, 0, 0, 0,
//! len u32 BE]` + payload) in both directions over `STATE/attach.sock`.

use crate::sys;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

pub const STDIN: u8 = 0;
pub const EXIT: u8 = 3;
pub const RESIZE: u8 = 4;
pub const STDIN_END: u8 = 5;
/// Client → monitor, empty: "after the exit, send me the status first; I clean up".
pub const CLEANUP: u8 = 6;
/// Client → monitor, empty: "cleaned up": the exit command is not needed.
pub const DONE: u8 = 7;

pub fn header(stream: u8, len: usize) -> [u8; 8] {
    let n = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    [stream, 0, 0, 0, n[0], n[1], n[2], n[3]]
}

#[derive(Debug, PartialEq)]
pub enum Event<'a> {
    Stdin(&'a [u8]),
    Resize { rows: u16, cols: u16 },
    StdinEnd,
    Cleanup,
    Done,
}

/// Turns the bytes a client sends into events, whatever way they are cut. Stdin payloads
/// are passed on as they arrive, never buffered whole (a frame may claim 4 GiB).
#[derive(Default)]
pub struct Decoder {
    header: [u8; 8],
    have: usize,
    /// Payload bytes still to come in the current frame.
    left: u32,
    resize: [u8; 4],
    resize_have: usize,
}

impl Decoder {
    pub fn feed<'a>(&mut self, mut data: &'a [u8], mut on: impl FnMut(Event<'a>)) {
        while !data.is_empty() {
            if self.have < 8 {
                let n = (8 - self.have).min(data.len());
                self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
                self.have += n;
                data = &data[n..];
                if self.have < 8 {
                    return;
                }
                let h = &self.header;
                self.left = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                self.resize_have = 0;
                if self.left == 0 {
                    self.end_frame(&mut on);
                }
                continue;
            }
            let n = data.len().min(self.left as usize);
            let (chunk, rest) = data.split_at(n);
            data = rest;
            self.left -= n as u32;
            match self.header[0] {
                STDIN => on(Event::Stdin(chunk)),
                RESIZE => {
                    // Only the first four bytes mean anything.
                    let k = (4 - self.resize_have).min(chunk.len());
                    self.resize[self.resize_have..self.resize_have + k]
                        .copy_from_slice(&chunk[..k]);
                    self.resize_have += k;
                }
                _ => {} // unknown or monitor-to-client streams: skipped
            }
            if self.left == 0 {
                self.end_frame(&mut on);
            }
        }
    }

    fn end_frame<'a>(&mut self, on: &mut impl FnMut(Event<'a>)) {
        match self.header[0] {
            RESIZE if self.resize_have == 4 => {
                let r = &self.resize;
                on(Event::Resize {
                    rows: u16::from_be_bytes([r[0], r[1]]),
                    cols: u16::from_be_bytes([r[2], r[3]]),
                });
            }
            STDIN_END => on(Event::StdinEnd),
            CLEANUP => on(Event::Cleanup),
            DONE => on(Event::Done),
            _ => {}
        }
        self.have = 0;
    }
}

pub struct Client {
    pub sock: UnixStream,
    pub decoder: Decoder,
    /// Still reading from it: false once it sent STDIN_END or shut down its side.
    pub reading: bool,
    /// The first client ever: with --stdin-once its stdin is the container's.
    pub first: bool,
    pub dead: bool,
    /// It sent CLEANUP, and then DONE.
    pub cleans_up: bool,
    pub done: bool,
}

impl Client {
    pub fn new(sock: UnixStream, first: bool) -> Client {
        Client {
            sock,
            decoder: Decoder::default(),
            reading: true,
            first,
            dead: false,
            cleans_up: false,
            done: false,
        }
    }

    /// Connected, still reading, and it will clean up after the exit.
    pub fn will_clean_up(&self) -> bool {
        self.cleans_up && self.reading && !self.dead
    }

    /// Sends one frame, or marks the client dead if it cannot take it now (docs: a slow
    /// client is disconnected, the log has everything).
    pub fn send(&mut self, stream: u8, payload: &[u8]) {
        if !self.dead
            && !sys::send_frame(self.sock.as_fd(), &header(stream, payload.len()), payload)
        {
            self.dead = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(chunks: &[&[u8]]) -> Vec<String> {
        let mut d = Decoder::default();
        let mut out = vec![];
        for c in chunks {
            d.feed(c, |e| out.push(format!("{e:?}")));
        }
        out
    }

    #[test]
    fn frames_in_one_piece_and_byte_by_byte() {
        let mut wire = vec![];
        wire.extend_from_slice(&header(STDIN, 5));
        wire.extend_from_slice(b"hello");
        wire.extend_from_slice(&header(RESIZE, 4));
        wire.extend_from_slice(&[0, 30, 0, 100]);
        wire.extend_from_slice(&header(9, 3));
        wire.extend_from_slice(b"???");
        wire.extend_from_slice(&header(STDIN, 0));
        wire.extend_from_slice(&header(STDIN_END, 0));
        assert_eq!(
            decode(&[&wire]),
            [
                "Stdin([104, 101, 108, 108, 111])",
                "Resize { rows: 30, cols: 100 }",
                "StdinEnd"
            ]
        );
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        let events = decode(&bytes);
        assert_eq!(events.len(), 7, "{events:?}");
        assert_eq!(events[5], "Resize { rows: 30, cols: 100 }");
        assert_eq!(events[6], "StdinEnd");
    }

    #[test]
    fn resize_with_extra_or_missing_bytes() {
        let mut wire = header(RESIZE, 6).to_vec();
        wire.extend_from_slice(&[0, 1, 0, 2, 9, 9]);
        wire.extend_from_slice(&header(RESIZE, 2));
        wire.extend_from_slice(&[0, 1]);
        assert_eq!(decode(&[&wire]), ["Resize { rows: 1, cols: 2 }"]);
    }
}
