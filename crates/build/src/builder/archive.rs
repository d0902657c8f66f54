//! Local tar archives as ADD unpacks them and as `berth build -` takes a context: plain,
//! or compressed with gzip, bzip2, xz or zstd (Docker's `DetectCompression`), told from
//! other files by their magic bytes and then by a valid first tar header, as Docker's
//! `isArchive` does (a gzip file that holds no tar is copied as a file).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

/// The compression a stream starting with `head` is in.
pub fn compression(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(b"BZh") {
        Compression::Bzip2
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Compression::Xz
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// `input` decompressed, whatever of the known compressions it is in.
pub fn decompressed<'a, R: Read + 'a>(input: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut input = BufReader::new(input);
    let kind = compression(input.fill_buf()?);
    Ok(match kind {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(input)),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(input)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
    })
}

/// Whether `block` is a tar header: its checksum (the bytes summed with the checksum
/// field as blanks) is the one it records.
fn is_tar_header(block: &[u8; 512]) -> bool {
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    let Ok(recorded) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    sum == recorded
}

/// Whether the stream (decompressed) starts with a tar header.
pub fn starts_with_tar(input: impl Read) -> bool {
    let Ok(mut stream) = decompressed(input) else {
        return false;
    };
    let mut block = [0u8; 512];
    stream.read_exact(&mut block).is_ok() && is_tar_header(&block)
}

/// Reads a file from its start through `pread`, leaving its offset alone.
struct ReadAt<'a> {
    file: &'a File,
    at: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// Whether ADD unpacks this file.
pub fn is_archive(file: &File) -> bool {
    starts_with_tar(ReadAt { file, at: 0 })
}

/// The archive in `file`, decompressed, from its start.
pub fn open(file: &File) -> io::Result<Box<dyn Read + '_>> {
    decompressed(ReadAt { file, at: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "dir/f", &b"abc"[..]).unwrap();
        b.into_inner().unwrap()
    }

    fn unpacked(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut a = tar::Archive::new(decompressed(bytes).unwrap());
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (e.path().unwrap().display().to_string(), data)
            })
            .collect()
    }

    #[test]
    fn every_compression_is_read_and_only_tars_are_archives() {
        let plain = tar();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&plain).unwrap();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&plain).unwrap();
        let zst = zstd::encode_all(&plain[..], 1).unwrap();
        let streams = [
            (plain.clone(), Compression::None),
            (gz.finish().unwrap(), Compression::Gzip),
            (bz.finish().unwrap(), Compression::Bzip2),
            (xz.finish().unwrap(), Compression::Xz),
            (zst, Compression::Zstd),
        ];
        for (bytes, kind) in &streams {
            assert_eq!(compression(bytes), *kind);
            assert!(starts_with_tar(&bytes[..]), "{kind:?}");
            assert_eq!(unpacked(bytes), [("dir/f".to_string(), b"abc".to_vec())]);
        }
        // Compressed, but not a tar; and text that is neither.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&[b'x'; 600]).unwrap();
        assert!(!starts_with_tar(&gz.finish().unwrap()[..]));
        assert!(!starts_with_tar(&b"FROM scratch\nCOPY . /\n"[..]));
        assert!(!starts_with_tar(&[0u8; 1024][..]));
    }
}
