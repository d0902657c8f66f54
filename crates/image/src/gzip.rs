//! A gzip reader for layer streams (RFC 1952) that does not compute the CRC-32 of the data.
//!
//! A layer's uncompressed stream is hashed anyway (its diff_id) and refused when the hash
//! does not match, which checks every byte far more strongly than a CRC-32 can; computing
//! the CRC as well cost about 5 % of a pull's CPU time. So this reader parses the gzip
//! framing itself and inflates raw deflate with zlib-rs, and it is only for streams whose
//! output is verified by digest: everything else uses flate2's `MultiGzDecoder`.
//!
//! Everything else is checked as strictly as Go's gzip reader (the one Docker and
//! containerd use) does: magic and method, reserved flag bits, the header CRC when the
//! header carries one, each member's trailer (its length field against the bytes inflated),
//! and that the stream ends exactly after a member or with a truncated-stream error.
//! Members follow one another like in `MultiGzDecoder`; anything after the last one that is
//! not another member is an error.

use std::io::{self, Read};

use flate2::{Crc, Decompress, FlushDecompress, Status};

const ID1: u8 = 0x1f;
const ID2: u8 = 0x8b;
/// CM: deflate, the only method defined.
const DEFLATE: u8 = 8;
const FHCRC: u8 = 1 << 1;
const FEXTRA: u8 = 1 << 2;
const FNAME: u8 = 1 << 3;
const FCOMMENT: u8 = 1 << 4;
const RESERVED: u8 = 0xe0;
/// Compressed bytes read from the source at once.
const INPUT: usize = 128 << 10;

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a member's header; `first` when no member has been read yet.
    Header {
        first: bool,
    },
    Body,
    Done,
}

/// Decompresses a gzip stream of one or more members; see the module comment.
pub(crate) struct Gunzip<R> {
    source: R,
    input: Box<[u8]>,
    pos: usize,
    end: usize,
    /// Whether `source` has reported its end.
    source_done: bool,
    inflate: Decompress,
    state: State,
    /// Bytes inflated from the current member, for its trailer's length field.
    member_out: u64,
}

impl<R: Read> Gunzip<R> {
    pub(crate) fn new(source: R) -> Self {
        Gunzip {
            source,
            input: vec![0; INPUT].into_boxed_slice(),
            pos: 0,
            end: 0,
            source_done: false,
            inflate: Decompress::new(false),
            state: State::Header { first: true },
            member_out: 0,
        }
    }

    /// Makes sure some input is buffered; false at the end of the source.
    fn fill(&mut self) -> io::Result<bool> {
        while self.pos == self.end {
            if self.source_done {
                return Ok(false);
            }
            match self.source.read(&mut self.input) {
                Ok(0) => self.source_done = true,
                Ok(n) => (self.pos, self.end) = (0, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// The next byte of the member's framing; the stream must not end here.
    fn byte(&mut self) -> io::Result<u8> {
        if !self.fill()? {
            return Err(truncated("header or trailer"));
        }
        let b = self.input[self.pos];
        self.pos += 1;
        Ok(b)
    }

    fn bytes<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let mut out = [0; N];
        for b in &mut out {
            *b = self.byte()?;
        }
        Ok(out)
    }

    /// Reads a member's header. Returns false if the stream ended cleanly before it, which
    /// only a stream that already had a member may do.
    fn header(&mut self, first: bool) -> io::Result<bool> {
        if !self.fill()? {
            return if first {
                Err(truncated("header"))
            } else {
                Ok(false)
            };
        }
        // The magic first, so data after the last member is told apart from a cut member.
        let magic: [u8; 2] = self.bytes()?;
        if magic != [ID1, ID2] {
            return Err(invalid(if first {
                "not a gzip stream"
            } else {
                "data after the last gzip member"
            }));
        }
        let rest: [u8; 8] = self.bytes()?;
        let mut fixed = [0; 10];
        fixed[..2].copy_from_slice(&magic);
        fixed[2..].copy_from_slice(&rest);
        if fixed[2] != DEFLATE {
            return Err(invalid("unknown gzip compression method"));
        }
        let flags = fixed[3];
        if flags & RESERVED != 0 {
            return Err(invalid("reserved gzip header flags set"));
        }
        // The header CRC covers every header byte before it; only kept when it is checked.
        let mut crc = (flags & FHCRC != 0).then(|| {
            let mut crc = Crc::new();
            crc.update(&fixed);
            crc
        });
        let mut next = |this: &mut Self| -> io::Result<u8> {
            let b = this.byte()?;
            if let Some(crc) = crc.as_mut() {
                crc.update(&[b]);
            }
            Ok(b)
        };
        if flags & FEXTRA != 0 {
            let len = u16::from_le_bytes([next(self)?, next(self)?]);
            for _ in 0..len {
                next(self)?;
            }
        }
        for field in [FNAME, FCOMMENT] {
            if flags & field != 0 {
                while next(self)? != 0 {}
            }
        }
        if let Some(crc) = crc {
            let stored = u16::from_le_bytes(self.bytes()?);
            // The low 16 bits of the CRC-32 of the header (RFC 1952, 2.3.1).
            if stored != (crc.sum() & 0xffff) as u16 {
                return Err(invalid("gzip header CRC does not match"));
            }
        }
        Ok(true)
    }

    /// Reads a member's trailer: its CRC-32 (not checked, see the module comment) and the
    /// length of its data modulo 2^32.
    fn trailer(&mut self) -> io::Result<()> {
        let trailer: [u8; 8] = self.bytes()?;
        let size = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
        if u64::from(size) != self.member_out & 0xffff_ffff {
            return Err(invalid("gzip member length does not match its data"));
        }
        Ok(())
    }

    /// Inflates into `out` until it is full or the member ends; returns the bytes written.
    fn inflate(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut written = 0;
        while written < out.len() {
            if !self.fill()? {
                return Err(truncated("compressed data"));
            }
            let (in_before, out_before) = (self.inflate.total_in(), self.inflate.total_out());
            let status = self
                .inflate
                .decompress(
                    &self.input[self.pos..self.end],
                    &mut out[written..],
                    FlushDecompress::None,
                )
                .map_err(|e| invalid_owned(format!("gzip data: {e}")))?;
            let consumed = (self.inflate.total_in() - in_before) as usize;
            let produced = (self.inflate.total_out() - out_before) as usize;
            self.pos += consumed;
            written += produced;
            self.member_out += produced as u64;
            match status {
                Status::StreamEnd => {
                    self.state = State::Header { first: false };
                    self.trailer()?;
                    self.inflate.reset(false);
                    self.member_out = 0;
                    break;
                }
                // No progress with input left and room in `out` would loop forever.
                Status::BufError if consumed == 0 && produced == 0 && self.pos < self.end => {
                    return Err(invalid("gzip data: inflate made no progress"));
                }
                _ => {}
            }
        }
        Ok(written)
    }
}

impl<R: Read> Read for Gunzip<R> {
    /// Fills as much of `out` as the stream allows before returning, so large reads mean
    /// few calls into zlib.
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut written = 0;
        while written < out.len() {
            match self.state {
                State::Done => break,
                State::Header { first } => {
                    self.state = if self.header(first)? {
                        State::Body
                    } else {
                        State::Done
                    };
                }
                State::Body => written += self.inflate(&mut out[written..])?,
            }
        }
        Ok(written)
    }
}

fn truncated(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("gzip stream truncated in its {what}"),
    )
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

fn invalid_owned(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut enc =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    /// A member with the given flags and optional fields, built by hand so every header
    /// field can be exercised (flate2 never writes FHCRC).
    fn member(data: &[u8], flags: u8, extra: &[u8], name: &[u8], comment: &[u8]) -> Vec<u8> {
        let mut out = vec![ID1, ID2, DEFLATE, flags, 0, 0, 0, 0, 0, 3];
        if flags & FEXTRA != 0 {
            out.extend_from_slice(&(extra.len() as u16).to_le_bytes());
            out.extend_from_slice(extra);
        }
        if flags & FNAME != 0 {
            out.extend_from_slice(name);
            out.push(0);
        }
        if flags & FCOMMENT != 0 {
            out.extend_from_slice(comment);
            out.push(0);
        }
        if flags & FHCRC != 0 {
            let mut crc = Crc::new();
            crc.update(&out);
            out.extend_from_slice(&((crc.sum() & 0xffff) as u16).to_le_bytes());
        }
        out.extend_from_slice(&deflate(data));
        let mut crc = Crc::new();
        crc.update(data);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out
    }

    fn gunzip(stream: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Gunzip::new(stream).read_to_end(&mut out)?;
        Ok(out)
    }

    /// Reads through a source that hands out one byte per read, so every field is split
    /// across refills of the input buffer.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(buf.len()).min(1);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn data() -> Vec<u8> {
        (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn reads_what_flate2_writes() {
        let data = data();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&data).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(gunzip(&gz).unwrap(), data);
        let mut out = Vec::new();
        Gunzip::new(Trickle(&gz)).read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn every_header_field_is_parsed() {
        let data = data();
        let all = FEXTRA | FNAME | FCOMMENT | FHCRC;
        for flags in [0, FEXTRA, FNAME, FCOMMENT, FHCRC, all, all | 1] {
            let gz = member(&data, flags, b"AB\x02\x00xy", b"layer.tar", b"a comment");
            assert_eq!(gunzip(&gz).unwrap(), data, "flags {flags:#x}");
            let mut out = Vec::new();
            Gunzip::new(Trickle(&gz)).read_to_end(&mut out).unwrap();
            assert_eq!(out, data, "flags {flags:#x}, byte by byte");
        }
    }

    #[test]
    fn members_are_concatenated() {
        let (a, b) = (b"first member ".repeat(1000), b"second".to_vec());
        let mut gz = member(&a, FNAME, b"", b"a", b"");
        gz.extend(member(&b, 0, b"", b"", b""));
        gz.extend(member(b"", 0, b"", b"", b""));
        let mut want = a.clone();
        want.extend_from_slice(&b);
        assert_eq!(gunzip(&gz).unwrap(), want);
        let mut out = Vec::new();
        Gunzip::new(Trickle(&gz)).read_to_end(&mut out).unwrap();
        assert_eq!(out, want);
    }

    #[test]
    fn refuses_bad_headers() {
        let data = b"data".to_vec();
        let good = member(&data, FHCRC | FNAME, b"", b"n", b"");
        let mut bad_crc = good.clone();
        bad_crc[10] = b'm';
        let mut method = good.clone();
        method[2] = 7;
        let mut reserved = good.clone();
        reserved[3] |= 0x20;
        let mut magic = good.clone();
        magic[1] = 0x8c;
        for (what, stream) in [
            ("header CRC", bad_crc),
            ("method", method),
            ("reserved flags", reserved),
            ("magic", magic),
        ] {
            let err = gunzip(&stream).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{what}: {err}");
        }
        assert_eq!(
            gunzip(&[]).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn refuses_every_truncation() {
        let data = b"some layer data ".repeat(100);
        let all = FEXTRA | FNAME | FCOMMENT | FHCRC;
        let gz = member(&data, all, b"xx", b"name", b"comment");
        for len in 1..gz.len() {
            let err = gunzip(&gz[..len]).unwrap_err();
            assert_eq!(
                err.kind(),
                io::ErrorKind::UnexpectedEof,
                "cut at {len}: {err}"
            );
        }
        // A second member cut anywhere, even right after its magic.
        let mut two = gz.clone();
        two.extend(member(&data, 0, b"", b"", b""));
        for len in gz.len() + 1..two.len() {
            let err = gunzip(&two[..len]).unwrap_err();
            assert_eq!(
                err.kind(),
                io::ErrorKind::UnexpectedEof,
                "cut at {len}: {err}"
            );
        }
    }

    #[test]
    fn refuses_wrong_length_and_trailing_garbage() {
        let data = b"x".repeat(5000);
        let mut gz = member(&data, 0, b"", b"", b"");
        let n = gz.len();
        gz[n - 4] ^= 1;
        let err = gunzip(&gz).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");

        let mut garbage = member(&data, 0, b"", b"", b"");
        garbage.extend_from_slice(b"\0\0\0\0");
        let err = gunzip(&garbage).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    #[test]
    fn refuses_corrupt_deflate_data() {
        let mut gz = member(&data(), 0, b"", b"", b"");
        gz[10] = 0xff; // block type 3, reserved
        let err = gunzip(&gz).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }
}
