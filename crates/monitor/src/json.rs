//! The little JSON the monitor speaks: strings written the way Docker's json-file driver
//! writes them (so `docker logs`-style readers see identical bytes), and the one string
//! value it reads back from the runtime's JSON log.

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` as a quoted JSON string, byte for byte as moby's json-file writer
/// (`jsonlog.ffjsonWriteJSONBytesAsString`): `<`, `>` and `&` escaped for HTML, control
/// characters other than `\n` and `\r` as `\u00XX`, U+2028/U+2029 escaped, and every byte
/// that does not start a valid UTF-8 sequence as `\ufffd` (one per byte, as Go's
/// `utf8.DecodeRune` reports them).
pub fn push_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b < 0x80 {
            if b >= 0x20 && !matches!(b, b'\\' | b'"' | b'<' | b'>' | b'&') {
                i += 1;
                continue;
            }
            out.extend_from_slice(&s[start..i]);
            match b {
                b'\\' | b'"' => out.extend_from_slice(&[b'\\', b]),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                _ => out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ]),
            }
            i += 1;
            start = i;
            continue;
        }
        match utf8_len(&s[i..]) {
            None => {
                out.extend_from_slice(&s[start..i]);
                out.extend_from_slice(b"\\ufffd");
                i += 1;
                start = i;
            }
            // U+2028 and U+2029 (E2 80 A8/A9) end lines in JavaScript.
            Some(3) if s[i] == 0xe2 && s[i + 1] == 0x80 && (s[i + 2] | 1) == 0xa9 => {
                out.extend_from_slice(&s[start..i]);
                out.extend_from_slice(b"\\u202");
                out.push(HEX[usize::from(s[i + 2] & 0xf)]);
                i += 3;
                start = i;
            }
            Some(n) => i += n,
        }
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
}

/// The sync fd's error report: `{"error":"MESSAGE"}` and a newline.
pub fn error_line(msg: &str) -> Vec<u8> {
    let mut v = b"{\"error\":".to_vec();
    push_str(&mut v, msg.as_bytes());
    v.extend_from_slice(b"}\n");
    v
}

/// The length of the valid UTF-8 sequence at the start of `s`, if there is one.
fn utf8_len(s: &[u8]) -> Option<usize> {
    let n = match s[0] {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return None,
    };
    // from_utf8 applies the rest of the rules: no overlong forms, no surrogates, nothing
    // past U+10FFFF, and continuation bytes where they belong.
    let seq = s.get(..n)?;
    std::str::from_utf8(seq).ok().map(|_| n)
}

/// The string value of `"key":` in one line of JSON, with escapes decoded. Enough for
/// the flat objects runtimes log (`{"level":"error","msg":"...","time":"..."}`); the key
/// is matched only where it is followed by a colon, so a value containing it is skipped.
pub fn string_field(line: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\"");
    let mut from = 0;
    while let Some(at) = line[from..].find(&pat) {
        let after = &line[from + at + pat.len()..];
        let rest = after.trim_start();
        if let Some(v) = rest.strip_prefix(':') {
            if let Some(s) = parse_string(v.trim_start()) {
                return Some(s);
            }
        }
        from += at + 1;
    }
    None
}

/// Parses the JSON string at the start of `s`.
fn parse_string(s: &str) -> Option<String> {
    let mut chars = s.strip_prefix('"')?.chars();
    let mut out = String::new();
    loop {
        match chars.next()? {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'u' => {
                    let hi = hex4(&mut chars)?;
                    let c = if (0xd800..0xdc00).contains(&hi) {
                        // A surrogate pair: the low half must follow as another \u.
                        let lo = match (chars.next(), chars.next()) {
                            (Some('\\'), Some('u')) => hex4(&mut chars)?,
                            _ => return Some(out + "\u{fffd}"),
                        };
                        (0xdc00..0xe000)
                            .contains(&lo)
                            .then(|| 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00))
                            .and_then(char::from_u32)
                    } else {
                        char::from_u32(hi)
                    };
                    out.push(c.unwrap_or('\u{fffd}'));
                }
                c => out.push(c), // \" \\ \/
            },
            c => out.push(c),
        }
    }
}

fn hex4(chars: &mut std::str::Chars) -> Option<u32> {
    let mut v = 0;
    for _ in 0..4 {
        v = v * 16 + chars.next()?.to_digit(16)?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &[u8]) -> String {
        let mut v = vec![];
        push_str(&mut v, s);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn escapes_like_docker() {
        assert_eq!(esc(b"hello\n"), r#""hello\n""#);
        assert_eq!(
            esc(b"a\"b\\c\r\t\x00\x1f"),
            r#""a\"b\\c\r\u0009\u0000\u001f""#
        );
        assert_eq!(esc(b"<a&b>"), r#""\u003ca\u0026b\u003e""#);
        assert_eq!(esc("héllo ✓ 😀".as_bytes()), "\"héllo ✓ 😀\"");
        assert_eq!(esc("a\u{2028}b\u{2029}".as_bytes()), r#""a\u2028b\u2029""#);
    }

    #[test]
    fn invalid_utf8_is_one_replacement_per_byte() {
        // A truncated 3-byte sequence is two bad bytes for Go, not one as in Rust's lossy
        // conversion; a lone continuation byte, an overlong form and a surrogate likewise.
        assert_eq!(esc(b"a\xe2\x82b"), r#""a\ufffd\ufffdb""#);
        assert_eq!(esc(b"\x80"), r#""\ufffd""#);
        assert_eq!(esc(b"\xc0\xaf"), r#""\ufffd\ufffd""#);
        assert_eq!(esc(b"\xed\xa0\x80"), r#""\ufffd\ufffd\ufffd""#);
        assert_eq!(esc(b"\xff\xfe"), r#""\ufffd\ufffd""#);
        // Cut at the end of the buffer, as a 16 KiB split can leave it.
        assert_eq!(esc(b"x\xf0\x9f\x98"), r#""x\ufffd\ufffd\ufffd""#);
    }

    #[test]
    fn output_is_valid_json_that_round_trips() {
        let input: Vec<u8> = (0u8..=255).collect();
        let mut v = vec![];
        push_str(&mut v, &input);
        let s: String = serde_json::from_slice(&v).unwrap();
        assert_eq!(s.len(), 128 + 3 * 128);
        assert!(s.starts_with('\0'));
    }

    #[test]
    fn reads_msg_from_a_runtime_log_line() {
        let line = r#"{"level":"error","msg":"exec: \"nope\": not found \u00e9 \ud83d\ude00 a\\b\nc","time":"2026-01-01T00:00:00Z"}"#;
        assert_eq!(
            string_field(line, "msg").unwrap(),
            "exec: \"nope\": not found é 😀 a\\b\nc"
        );
        assert_eq!(string_field(line, "level").unwrap(), "error");
        assert_eq!(string_field(line, "missing"), None);
        // A value that reads like the key is not the key.
        let tricky = r#"{"a":"msg","msg" : "real"}"#;
        assert_eq!(string_field(tricky, "msg").unwrap(), "real");
        assert_eq!(string_field(r#"{"msg":"unterminated"#, "msg"), None);
    }
}
