//! A blob download as a stream for unpacking, verified on the way: a producer thread reads
//! the HTTP body, appends each chunk to the blob's ingest file (hashing it, refusing bytes
//! past the declared size) and passes it on through a bounded channel; the reader side is
//! what unpacking (decompression, tar, files) consumes. Receiving, hashing and writing the
//! compressed blob thus run beside decompressing and unpacking it, on another core.
//!
//! When the body ends, the producer hands back the blob writer; `finish` drains whatever
//! unpacking left, and commits the blob only if size and digest match. Dropping a
//! `Download` early stops the producer at its next chunk and removes the ingest file.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use image::digest::Digest;
use image::store::{BlobWriter, StoreError};

use crate::error::ErrorKind;
use crate::Progress;

/// Bytes per read from the body (a read may return less).
const CHUNK: usize = 256 << 10;
/// Chunks in flight between producer and unpacker: enough to ride out a slow file create.
const IN_FLIGHT: usize = 16;
/// A `Downloading` event per this many bytes.
const PROGRESS_STEP: u64 = 512 << 10;

pub(crate) struct Download<'a> {
    digest: Digest,
    chunks: Option<Receiver<Vec<u8>>>,
    producer: Option<JoinHandle<Result<BlobWriter, ErrorKind>>>,
    /// The blob writer, once the producer is done and all went well.
    complete: Option<BlobWriter>,
    current: Vec<u8>,
    pos: usize,
    received: u64,
    total: u64,
    reported: u64,
    progress: Box<dyn Fn(Progress) + 'a>,
    cancel: &'a AtomicBool,
}

impl<'a> Download<'a> {
    /// Starts receiving `body` into `blob`, which must expect `total` bytes.
    pub fn start(
        body: Box<dyn Read + Send>,
        blob: BlobWriter,
        total: u64,
        progress: Box<dyn Fn(Progress) + 'a>,
        cancel: &'a AtomicBool,
    ) -> io::Result<Download<'a>> {
        let digest = blob.expected().clone();
        let (tx, rx) = sync_channel(IN_FLIGHT);
        let producer = std::thread::Builder::new()
            .name("blob-download".into())
            .spawn(move || receive(body, blob, total, tx))?;
        progress(Progress::Downloading { done: 0, total });
        Ok(Download {
            digest,
            chunks: Some(rx),
            producer: Some(producer),
            complete: None,
            current: Vec::new(),
            pos: 0,
            received: 0,
            total,
            reported: 0,
            progress,
            cancel,
        })
    }

    /// Reads what unpacking left (tar padding, or everything when only the blob is wanted),
    /// then checks and commits the blob.
    pub fn finish(mut self) -> Result<(), ErrorKind> {
        io::copy(&mut self, &mut io::sink()).map_err(|e| into_kind(e, &self.digest))?;
        (self.progress)(Progress::Verifying);
        let blob = self
            .complete
            .take()
            .expect("a download read to its end holds its blob");
        blob.commit()?;
        Ok(())
    }

    /// The producer's outcome, once the channel is closed.
    fn join(&mut self) -> io::Result<()> {
        self.chunks = None;
        let Some(producer) = self.producer.take() else {
            return Ok(());
        };
        match producer.join() {
            Ok(Ok(blob)) => {
                self.complete = Some(blob);
                Ok(())
            }
            Ok(Err(e)) => Err(io::Error::other(e)),
            Err(_) => Err(io::Error::other("the download thread panicked")),
        }
    }
}

impl Read for Download<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(io::Error::other(ErrorKind::Cancelled));
        }
        if self.pos == self.current.len() {
            let next = self.chunks.as_ref().and_then(|rx| rx.recv().ok());
            match next {
                Some(chunk) => {
                    self.current = chunk;
                    self.pos = 0;
                }
                None => {
                    self.join()?;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        self.received += n as u64;
        if self.received - self.reported >= PROGRESS_STEP || self.received == self.total {
            self.reported = self.received;
            (self.progress)(Progress::Downloading {
                done: self.received,
                total: self.total,
            });
        }
        Ok(n)
    }
}

impl Drop for Download<'_> {
    fn drop(&mut self) {
        // Closing the channel makes the producer's next send fail, so it stops (and drops
        // its blob writer, which removes the ingest file) after at most one more read.
        self.chunks = None;
        if let Some(producer) = self.producer.take() {
            let _ = producer.join();
        }
    }
}

/// The producer: body → blob writer → channel.
fn receive(
    mut body: Box<dyn Read + Send>,
    mut blob: BlobWriter,
    total: u64,
    tx: SyncSender<Vec<u8>>,
) -> Result<BlobWriter, ErrorKind> {
    loop {
        let mut chunk = vec![0u8; CHUNK];
        let n = loop {
            match body.read(&mut chunk) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(content_error(blob.expected(), format!("downloading: {e}")));
                }
            }
        };
        if n == 0 {
            let written = blob.written();
            if written < total {
                return Err(content_error(
                    blob.expected(),
                    format!("the download ended after {written} of {total} bytes"),
                ));
            }
            return Ok(blob);
        }
        blob.append(&chunk[..n])?;
        chunk.truncate(n);
        if tx.send(chunk).is_err() {
            return Err(ErrorKind::Cancelled);
        }
    }
}

fn content_error(digest: &Digest, reason: String) -> ErrorKind {
    ErrorKind::Content {
        what: "blob",
        digest: digest.clone(),
        reason,
    }
}

/// Unwraps our own or the store's error from an io::Error raised by the reader.
fn into_kind(e: io::Error, digest: &Digest) -> ErrorKind {
    let message = e.to_string();
    let Some(inner) = e.into_inner() else {
        return content_error(digest, message);
    };
    match inner.downcast::<ErrorKind>() {
        Ok(kind) => *kind,
        Err(inner) => match inner.downcast::<StoreError>() {
            Ok(store) => ErrorKind::Store(*store),
            Err(_) => content_error(digest, message),
        },
    }
}
