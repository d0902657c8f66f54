//! Content digests (`sha256:<hex>`), and hashing wrappers that compute one while bytes stream
//! through a reader or writer, so content is verified as it is read, never in a second pass.
//!
//! berth produces sha256 digests; sha512 is accepted where others produce it (parsing and
//! verifying). Other algorithms are rejected rather than carried along unverified.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256, Sha512};

/// A digest string that could not be parsed; names the input and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest {input:?}: {reason}")]
pub struct DigestError {
    input: String,
    reason: String,
}

impl DigestError {
    fn new(input: &str, reason: impl Into<String>) -> DigestError {
        DigestError {
            input: input.to_string(),
            reason: reason.into(),
        }
    }

    /// What is wrong with the input, without the input itself.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// The hash functions berth can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    /// All supported algorithms, e.g. to list every blob directory of a store.
    pub const ALL: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];

    /// The name used in digest strings and directory names.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hex-encoded hash.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An OCI content digest: algorithm plus lowercase hex hash. Always valid once constructed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// The sha256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        Digest::of(Algorithm::Sha256, bytes)
    }

    /// The digest of `bytes` under `algorithm`.
    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        let mut hasher = Hasher::new(algorithm);
        hasher.update(bytes);
        hasher.finish()
    }

    /// Builds a digest from an algorithm and its hex hash, checking the hex.
    pub fn from_parts(algorithm: Algorithm, hex: &str) -> Result<Digest, DigestError> {
        let input = format!("{algorithm}:{hex}");
        check_hex(&input, algorithm, hex)?;
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex-encoded hash, without the `sha256:` prefix (the blob's file name).
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// A short form for messages: `sha256:0123456789ab`.
    pub fn short(&self) -> String {
        format!("{}:{}", self.algorithm, &self.hex[..12])
    }
}

fn check_hex(input: &str, algorithm: Algorithm, hex: &str) -> Result<(), DigestError> {
    if hex.len() != algorithm.hex_len() {
        return Err(DigestError::new(
            input,
            format!(
                "{algorithm} hash must be {} hex characters, got {}",
                algorithm.hex_len(),
                hex.len()
            ),
        ));
    }
    // Uppercase is rejected, not folded: the digest string is also a file name, and two
    // spellings of one digest must not name two files.
    if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(DigestError::new(
            input,
            "hash must be lowercase hex (0-9, a-f)",
        ));
    }
    Ok(())
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Digest, DigestError> {
        let Some((name, hex)) = s.split_once(':') else {
            return Err(DigestError::new(
                s,
                "missing ':' between algorithm and hash",
            ));
        };
        let Some(algorithm) = Algorithm::from_name(name) else {
            return Err(DigestError::new(
                s,
                format!("unsupported algorithm {name:?} (supported: sha256, sha512)"),
            ));
        };
        check_hex(s, algorithm, hex)?;
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Manifests parsed with oci-spec carry its digest type; this bridges to the store's.
impl TryFrom<&oci_spec::image::Digest> for Digest {
    type Error = DigestError;

    fn try_from(d: &oci_spec::image::Digest) -> Result<Digest, DigestError> {
        d.to_string().parse()
    }
}

impl From<&Digest> for oci_spec::image::Digest {
    fn from(d: &Digest) -> oci_spec::image::Digest {
        // Our digests are a strict subset of what oci-spec accepts (lowercase hex of the
        // exact length for sha256/sha512), so this parse cannot fail.
        d.to_string()
            .parse()
            .expect("a valid berth digest is a valid OCI digest")
    }
}

enum State {
    Sha256(Sha256),
    Sha512(Sha512),
}

/// Incremental hashing with a byte count. Also an `io::Write` sink, so
/// `io::copy(&mut reader, &mut hasher)` digests a stream.
pub struct Hasher {
    state: State,
    bytes: u64,
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Hasher {
        let state = match algorithm {
            Algorithm::Sha256 => State::Sha256(Sha256::new()),
            Algorithm::Sha512 => State::Sha512(Sha512::new()),
        };
        Hasher { state, bytes: 0 }
    }

    pub fn sha256() -> Hasher {
        Hasher::new(Algorithm::Sha256)
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            State::Sha256(h) => h.update(data),
            State::Sha512(h) => h.update(data),
        }
        self.bytes += data.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn byte_count(&self) -> u64 {
        self.bytes
    }

    /// The digest of everything hashed so far; hashing may continue afterwards.
    pub fn digest(&self) -> Digest {
        let (algorithm, hex) = match &self.state {
            State::Sha256(h) => (Algorithm::Sha256, hex::encode(h.clone().finalize())),
            State::Sha512(h) => (Algorithm::Sha512, hex::encode(h.clone().finalize())),
        };
        Digest { algorithm, hex }
    }

    pub fn finish(self) -> Digest {
        self.digest()
    }
}

impl Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Wraps a writer and digests exactly the bytes the inner writer accepted.
pub struct DigestWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> DigestWriter<W> {
    pub fn new(inner: W) -> DigestWriter<W> {
        DigestWriter::with_algorithm(inner, Algorithm::Sha256)
    }

    pub fn with_algorithm(inner: W, algorithm: Algorithm) -> DigestWriter<W> {
        DigestWriter {
            inner,
            hasher: Hasher::new(algorithm),
        }
    }

    pub fn digest(&self) -> Digest {
        self.hasher.digest()
    }

    pub fn byte_count(&self) -> u64 {
        self.hasher.byte_count()
    }

    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Returns the inner writer with the digest and byte count of what went through.
    pub fn into_parts(self) -> (W, Digest, u64) {
        let digest = self.hasher.digest();
        let bytes = self.hasher.byte_count();
        (self.inner, digest, bytes)
    }
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Hash only what the inner writer took: a short write must not count the rest.
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Wraps a reader and digests every byte read through it.
pub struct DigestReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> DigestReader<R> {
    pub fn new(inner: R) -> DigestReader<R> {
        DigestReader::with_algorithm(inner, Algorithm::Sha256)
    }

    pub fn with_algorithm(inner: R, algorithm: Algorithm) -> DigestReader<R> {
        DigestReader {
            inner,
            hasher: Hasher::new(algorithm),
        }
    }

    pub fn digest(&self) -> Digest {
        self.hasher.digest()
    }

    pub fn byte_count(&self) -> u64 {
        self.hasher.byte_count()
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Returns the inner reader with the digest and byte count of what was read.
    pub fn into_parts(self) -> (R, Digest, u64) {
        let digest = self.hasher.digest();
        let bytes = self.hasher.byte_count();
        (self.inner, digest, bytes)
    }
}

impl<R: Read> Read for DigestReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // sha256("") and sha256("hello")
    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const HELLO: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn sha256_of_known_values() {
        assert_eq!(Digest::sha256_of(b"").to_string(), EMPTY);
        assert_eq!(Digest::sha256_of(b"hello").to_string(), HELLO);
    }

    #[test]
    fn parse_and_format_roundtrip() {
        let sha512 = Digest::of(Algorithm::Sha512, b"hello").to_string();
        for s in [EMPTY, HELLO, sha512.as_str()] {
            let d: Digest = s.parse().unwrap();
            assert_eq!(d.to_string(), s);
        }
        let d: Digest = HELLO.parse().unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.hex(), &HELLO[7..]);
        assert_eq!(d.short(), "sha256:2cf24dba5fb0");
        assert_eq!(Digest::from_parts(Algorithm::Sha256, d.hex()).unwrap(), d);
    }

    #[test]
    fn invalid_digests() {
        let upper = HELLO.to_uppercase().replace("SHA256", "sha256");
        let long = format!("{HELLO}0");
        let cases: &[(&str, &str)] = &[
            ("", "missing ':'"),
            ("sha256", "missing ':'"),
            (
                "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
                "missing ':'",
            ),
            ("sha256:", "must be 64 hex characters, got 0"),
            ("sha256:abc", "must be 64 hex characters, got 3"),
            (&long, "got 65"),
            (&upper, "lowercase hex"),
            (
                "sha256:zcf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
                "lowercase hex",
            ),
            (
                "md5:2cf24dba5fb0a30e26e83b2ac5b9e29e",
                "unsupported algorithm \"md5\"",
            ),
            (":abc", "unsupported algorithm \"\""),
            (
                &HELLO.replace("sha256", "sha512"),
                "must be 128 hex characters",
            ),
        ];
        for (input, want) in cases {
            let err = input.parse::<Digest>().unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(want), "{input:?}: {msg}");
            assert!(msg.contains(&format!("{input:?}")), "{input:?}: {msg}");
            assert!(!msg.contains('\n'));
        }
    }

    #[test]
    fn serde_as_string() {
        let d: Digest = HELLO.parse().unwrap();
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{HELLO}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        let err = serde_json::from_str::<Digest>("\"sha256:nope\"").unwrap_err();
        assert!(err.to_string().contains("invalid digest"), "{err}");
    }

    #[test]
    fn oci_spec_conversion() {
        let d: Digest = HELLO.parse().unwrap();
        let oci: oci_spec::image::Digest = (&d).into();
        assert_eq!(oci.to_string(), HELLO);
        assert_eq!(Digest::try_from(&oci).unwrap(), d);
    }

    #[test]
    fn writer_hashes_what_passed_through() {
        let mut w = DigestWriter::new(Vec::new());
        w.write_all(b"hel").unwrap();
        w.write_all(b"lo").unwrap();
        assert_eq!(w.byte_count(), 5);
        let (inner, digest, bytes) = w.into_parts();
        assert_eq!(inner, b"hello");
        assert_eq!(digest.to_string(), HELLO);
        assert_eq!(bytes, 5);
    }

    #[test]
    fn reader_hashes_what_was_read() {
        let mut r = DigestReader::new(&b"hello"[..]);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(r.digest().to_string(), HELLO);
        assert_eq!(r.byte_count(), 5);

        let mut r = DigestReader::with_algorithm(&b"hello"[..], Algorithm::Sha512);
        io::copy(&mut r, &mut io::sink()).unwrap();
        assert_eq!(r.digest(), Digest::of(Algorithm::Sha512, b"hello"));
    }

    #[test]
    fn hasher_as_sink() {
        let mut h = Hasher::sha256();
        io::copy(&mut &b"hello"[..], &mut h).unwrap();
        assert_eq!(h.byte_count(), 5);
        assert_eq!(h.finish().to_string(), HELLO);
    }
}
