//! DNS messages (RFC 1035), as much as the embedded server needs: the header and the one
//! question of a query, and responses with A and PTR answers. Queries are parsed without
//! trusting anything in them: every read is bounds-checked, a compressed name may only
//! point backwards (so pointer loops end), and a name is at most 255 bytes of at most
//! 63-byte labels. Whatever does not parse is answered with FORMERR when its header
//! could be read, and dropped when not.

use std::net::Ipv4Addr;

pub const TYPE_A: u16 = 1;
pub const TYPE_PTR: u16 = 12;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_ANY: u16 = 255;
pub const CLASS_IN: u16 = 1;

pub const HEADER_LEN: usize = 12;
/// The largest UDP response without EDNS (RFC 1035 4.2.1).
pub const UDP_LIMIT: usize = 512;

const QR: u16 = 0x8000;
const AA: u16 = 0x0400;
const TC: u16 = 0x0200;
const RD: u16 = 0x0100;
const RA: u16 = 0x0080;
const OPCODE_MASK: u16 = 0x7800;
const MAX_NAME: usize = 255;
const MAX_LABEL: usize = 63;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError = 0,
    FormErr = 1,
    ServFail = 2,
    NxDomain = 3,
    NotImp = 4,
    Refused = 5,
}

/// A name as a list of labels, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(pub Vec<Vec<u8>>);

impl Name {
    /// The name as text (`web.example`, no trailing dot), lower-cased, when every label
    /// is printable ASCII without a dot; `None` for names that can match nothing of ours.
    pub fn text(&self) -> Option<String> {
        let mut out = String::new();
        for (i, l) in self.0.iter().enumerate() {
            if l.iter().any(|b| !(0x21..0x7f).contains(b) || *b == b'.') {
                return None;
            }
            if i > 0 {
                out.push('.');
            }
            out.extend(l.iter().map(|b| b.to_ascii_lowercase() as char));
        }
        Some(out)
    }

    /// `a.b.c` as labels (empty labels dropped: `web.` is `web`).
    pub fn parse(text: &str) -> Name {
        Name(
            text.split('.')
                .filter(|l| !l.is_empty())
                .map(|l| l.as_bytes().to_vec())
                .collect(),
        )
    }

    fn encode(&self, out: &mut Vec<u8>) {
        for l in &self.0 {
            out.push(l.len() as u8);
            out.extend_from_slice(l);
        }
        out.push(0);
    }

    /// Whether it fits the wire format's limits (labels ≤ 63, whole name ≤ 255 bytes).
    pub fn is_valid(&self) -> bool {
        self.0.iter().all(|l| !l.is_empty() && l.len() <= MAX_LABEL)
            && self.0.iter().map(|l| l.len() + 1).sum::<usize>() < MAX_NAME
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub name: Name,
    pub qtype: u16,
    pub qclass: u16,
}

/// A query with exactly one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    pub flags: u16,
    pub question: Question,
}

/// Why a message is not a query we answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// Too short for a header, or a response: nothing is sent back.
    Drop,
    /// Answer with this code (FORMERR, NOTIMP) and no question.
    Reply { id: u16, flags: u16, rcode: Rcode },
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Reads the name at `at`; returns it and the offset just after it (after the first
/// pointer, if it was compressed).
pub fn read_name(msg: &[u8], at: usize) -> Option<(Name, usize)> {
    let mut labels = Vec::new();
    let mut pos = at;
    let mut end = None;
    let mut total = 0usize;
    // Each pointer must go strictly backwards from the lowest offset seen so far, so a
    // chain of them ends after at most msg.len() steps.
    let mut floor = at;
    loop {
        let len = *msg.get(pos)? as usize;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    return Some((Name(labels), end.unwrap_or(pos + 1)));
                }
                let label = msg.get(pos + 1..pos + 1 + len)?;
                total += len + 1;
                if total >= MAX_NAME {
                    return None;
                }
                labels.push(label.to_vec());
                pos += 1 + len;
            }
            0xc0 => {
                let target = (u16_at(msg, pos)? & 0x3fff) as usize;
                if target >= floor {
                    return None;
                }
                end.get_or_insert(pos + 2);
                floor = target;
                pos = target;
            }
            // 0x40 and 0x80 are extended label types (RFC 6891 retired them): refuse.
            _ => return None,
        }
    }
}

/// Parses a query: a header with QR clear, opcode QUERY, exactly one question.
pub fn parse_query(msg: &[u8]) -> Result<Query, Rejected> {
    if msg.len() < HEADER_LEN {
        return Err(Rejected::Drop);
    }
    let id = u16_at(msg, 0).ok_or(Rejected::Drop)?;
    let flags = u16_at(msg, 2).ok_or(Rejected::Drop)?;
    if flags & QR != 0 {
        return Err(Rejected::Drop);
    }
    let reply = |rcode| Rejected::Reply { id, flags, rcode };
    if flags & OPCODE_MASK != 0 {
        return Err(reply(Rcode::NotImp));
    }
    let qdcount = u16_at(msg, 4).ok_or(Rejected::Drop)?;
    if qdcount != 1 {
        return Err(reply(Rcode::FormErr));
    }
    let (name, after) = read_name(msg, HEADER_LEN).ok_or(reply(Rcode::FormErr))?;
    let qtype = u16_at(msg, after).ok_or(reply(Rcode::FormErr))?;
    let qclass = u16_at(msg, after + 2).ok_or(reply(Rcode::FormErr))?;
    Ok(Query {
        id,
        flags,
        question: Question {
            name,
            qtype,
            qclass,
        },
    })
}

/// One answer record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    A(Ipv4Addr),
    Ptr(Name),
}

/// A response to `q` with `answers` (all for the question's name), authoritative when
/// `authoritative`. Cut to `limit` bytes: answers that do not fit are left out and TC
/// is set, so the client asks again over TCP.
pub fn response(
    q: &Query,
    rcode: Rcode,
    authoritative: bool,
    answers: &[Record],
    ttl: u32,
    limit: usize,
) -> Vec<u8> {
    let mut flags = QR | (q.flags & (OPCODE_MASK | RD)) | RA | rcode as u16;
    if authoritative {
        flags |= AA;
    }
    let mut out = Vec::with_capacity(UDP_LIMIT);
    header(&mut out, q.id, flags, 1, 0);
    q.question.name.encode(&mut out);
    out.extend_from_slice(&q.question.qtype.to_be_bytes());
    out.extend_from_slice(&q.question.qclass.to_be_bytes());
    let mut count: u16 = 0;
    for a in answers {
        let mut rr = Vec::new();
        // The question's name, by a pointer to it (right after the header).
        rr.extend_from_slice(&0xc00cu16.to_be_bytes());
        let (rtype, rdata) = match a {
            Record::A(ip) => (TYPE_A, ip.octets().to_vec()),
            Record::Ptr(n) => {
                let mut d = Vec::new();
                n.encode(&mut d);
                (TYPE_PTR, d)
            }
        };
        rr.extend_from_slice(&rtype.to_be_bytes());
        rr.extend_from_slice(&CLASS_IN.to_be_bytes());
        rr.extend_from_slice(&ttl.to_be_bytes());
        rr.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        rr.extend_from_slice(&rdata);
        if out.len() + rr.len() > limit {
            flags |= TC;
            out[2..4].copy_from_slice(&flags.to_be_bytes());
            break;
        }
        out.extend_from_slice(&rr);
        count += 1;
    }
    out[6..8].copy_from_slice(&count.to_be_bytes());
    out
}

/// A response with only a header: FORMERR, NOTIMP, or SERVFAIL when a query's question
/// is not at hand.
pub fn bare_response(id: u16, query_flags: u16, rcode: Rcode) -> Vec<u8> {
    let flags = QR | (query_flags & (OPCODE_MASK | RD)) | RA | rcode as u16;
    let mut out = Vec::with_capacity(HEADER_LEN);
    header(&mut out, id, flags, 0, 0);
    out
}

fn header(out: &mut Vec<u8>, id: u16, flags: u16, qd: u16, an: u16) {
    for v in [id, flags, qd, an, 0, 0] {
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// A query for `name` and `qtype` (for tests and for clients such as the test's).
pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut out = Vec::new();
    header(&mut out, id, RD, 1, 0);
    Name::parse(name).encode(&mut out);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out
}

/// What a client reads from a response: its id, rcode, whether TC is set, and its A
/// records' addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub id: u16,
    pub rcode: u8,
    pub authoritative: bool,
    pub truncated: bool,
    pub addresses: Vec<Ipv4Addr>,
    pub names: Vec<String>,
}

/// Parses a response (as strictly as a query); `None` when malformed.
pub fn parse_response(msg: &[u8]) -> Option<Answer> {
    let id = u16_at(msg, 0)?;
    let flags = u16_at(msg, 2)?;
    if flags & QR == 0 {
        return None;
    }
    let qd = u16_at(msg, 4)?;
    let an = u16_at(msg, 6)?;
    let mut pos = HEADER_LEN;
    for _ in 0..qd {
        let (_, after) = read_name(msg, pos)?;
        pos = after.checked_add(4)?;
        if pos > msg.len() {
            return None;
        }
    }
    let mut addresses = Vec::new();
    let mut names = Vec::new();
    for _ in 0..an {
        let (_, after) = read_name(msg, pos)?;
        let rtype = u16_at(msg, after)?;
        let rdlen = u16_at(msg, after + 8)? as usize;
        let data_at = after + 10;
        let rdata = msg.get(data_at..data_at + rdlen)?;
        match rtype {
            TYPE_A if rdlen == 4 => {
                addresses.push(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]))
            }
            TYPE_PTR => names.push(read_name(msg, data_at)?.0.text()?),
            _ => {}
        }
        pos = data_at + rdlen;
    }
    Some(Answer {
        id,
        rcode: (flags & 0xf) as u8,
        authoritative: flags & AA != 0,
        truncated: flags & TC != 0,
        addresses,
        names,
    })
}

/// The id of a message (a forwarded reply is matched to its query by it).
pub fn id_of(msg: &[u8]) -> Option<u16> {
    u16_at(msg, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_parses_and_its_answer_carries_the_address() {
        let q = parse_query(&query(0x1234, "Web.Example", TYPE_A)).unwrap();
        assert_eq!(q.id, 0x1234);
        assert_eq!(q.question.name.text().as_deref(), Some("web.example"));
        assert_eq!(q.question.qtype, TYPE_A);
        let r = response(
            &q,
            Rcode::NoError,
            true,
            &[Record::A(Ipv4Addr::new(10, 89, 0, 2))],
            0,
            UDP_LIMIT,
        );
        let a = parse_response(&r).unwrap();
        assert_eq!(a.id, 0x1234);
        assert_eq!(a.rcode, 0);
        assert!(a.authoritative && !a.truncated);
        assert_eq!(a.addresses, [Ipv4Addr::new(10, 89, 0, 2)]);
        // RD is echoed, RA set, QR set.
        assert_eq!(r[2] & 0x81, 0x81);
        assert_eq!(r[3] & 0x80, 0x80);
    }

    #[test]
    fn too_many_answers_for_udp_set_tc() {
        let q = parse_query(&query(1, "many", TYPE_A)).unwrap();
        let answers: Vec<Record> = (0..100)
            .map(|i| Record::A(Ipv4Addr::new(10, 0, 0, i)))
            .collect();
        let r = response(&q, Rcode::NoError, true, &answers, 0, UDP_LIMIT);
        assert!(r.len() <= UDP_LIMIT);
        let a = parse_response(&r).unwrap();
        assert!(a.truncated);
        assert!(!a.addresses.is_empty() && a.addresses.len() < 100);
        let r = response(&q, Rcode::NoError, true, &answers, 0, 65535);
        assert_eq!(parse_response(&r).unwrap().addresses.len(), 100);
    }

    #[test]
    fn ptr_answers_carry_a_name() {
        let q = parse_query(&query(7, "2.0.89.10.in-addr.arpa", TYPE_PTR)).unwrap();
        let r = response(
            &q,
            Rcode::NoError,
            true,
            &[Record::Ptr(Name::parse("web"))],
            0,
            UDP_LIMIT,
        );
        assert_eq!(parse_response(&r).unwrap().names, ["web"]);
    }

    #[test]
    fn responses_opcodes_and_counts_are_rejected() {
        let mut m = query(9, "a", TYPE_A);
        m[2] |= 0x80; // QR: a response
        assert_eq!(parse_query(&m), Err(Rejected::Drop));
        let mut m = query(9, "a", TYPE_A);
        m[2] |= 0x10; // opcode 2 (STATUS)
        assert!(matches!(
            parse_query(&m),
            Err(Rejected::Reply {
                rcode: Rcode::NotImp,
                ..
            })
        ));
        let mut m = query(9, "a", TYPE_A);
        m[5] = 2; // two questions
        assert!(matches!(
            parse_query(&m),
            Err(Rejected::Reply {
                rcode: Rcode::FormErr,
                ..
            })
        ));
        let r = bare_response(9, 0x0100, Rcode::FormErr);
        let a = parse_response(&r).unwrap();
        assert_eq!((a.id, a.rcode), (9, 1));
    }

    #[test]
    fn every_truncation_of_a_query_is_rejected_without_panicking() {
        let m = query(5, "some.longer.name.example", TYPE_AAAA);
        for n in 0..m.len() {
            let r = parse_query(&m[..n]);
            assert!(r.is_err(), "{n} bytes parsed");
            if n < HEADER_LEN {
                assert_eq!(r, Err(Rejected::Drop));
            }
        }
        assert!(parse_query(&m).is_ok());
    }

    #[test]
    fn pointer_loops_and_forward_pointers_are_refused() {
        let mut head = query(1, "", TYPE_A)[..HEADER_LEN].to_vec();
        // A pointer to itself.
        let mut m = head.clone();
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert!(matches!(parse_query(&m), Err(Rejected::Reply { .. })));
        // Two labels pointing at each other: 12 -> 17 -> 12.
        let mut m = head.clone();
        m.extend_from_slice(&[3, b'a', b'b', b'c', 0xc0, 17, 0xc0, 12, 0, 1, 0, 1]);
        assert!(read_name(&m, 12).is_none());
        // A pointer past the end.
        let mut m = head.clone();
        m.extend_from_slice(&[0xff, 0xff]);
        assert!(read_name(&m, 12).is_none());
        // A backward pointer into the header is allowed (and reads garbage safely).
        head.extend_from_slice(&[1, b'x', 0xc0, 4]);
        let _ = read_name(&head, 12);
        // A long chain of backward pointers ends.
        let mut m = vec![0u8; HEADER_LEN];
        m.push(0);
        for i in 0..2000usize {
            let target = HEADER_LEN + if i == 0 { 0 } else { 1 + (i - 1) * 2 };
            m.extend_from_slice(&(0xc000u16 | target as u16).to_be_bytes());
        }
        let (n, _) = read_name(&m, m.len() - 2).unwrap();
        assert!(n.0.is_empty());
    }

    #[test]
    fn names_over_the_limits_are_refused() {
        let mut m = query(1, "", TYPE_A)[..HEADER_LEN].to_vec();
        m.push(64);
        m.extend_from_slice(&[b'a'; 64]);
        m.push(0);
        assert!(read_name(&m, 12).is_none(), "a 64-byte label");
        let mut m = query(1, "", TYPE_A)[..HEADER_LEN].to_vec();
        for _ in 0..5 {
            m.push(60);
            m.extend_from_slice(&[b'a'; 60]);
        }
        m.push(0);
        assert!(read_name(&m, 12).is_none(), "a 305-byte name");
        // Extended label types.
        let mut m = query(1, "", TYPE_A)[..HEADER_LEN].to_vec();
        m.extend_from_slice(&[0x41, 0]);
        assert!(read_name(&m, 12).is_none());
    }

    #[test]
    fn names_that_cannot_be_ours_have_no_text() {
        let n = Name(vec![b"a.b".to_vec()]);
        assert_eq!(n.text(), None);
        let n = Name(vec![b"we b".to_vec()]);
        assert_eq!(n.text(), None);
        let n = Name(vec![vec![0xff]]);
        assert_eq!(n.text(), None);
        assert_eq!(Name::parse("A.b.").text().as_deref(), Some("a.b"));
    }

    /// xorshift: the same garbage on every run.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn garbage_and_mutated_queries_never_panic() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let len = (rng.next() % 300) as usize;
            let m: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if let Ok(q) = parse_query(&m) {
                let r = response(&q, Rcode::NoError, true, &[], 0, UDP_LIMIT);
                assert!(parse_response(&r).is_some());
            }
            let _ = parse_response(&m);
        }
        let base = query(77, "web.some.example", TYPE_A);
        for _ in 0..20_000 {
            let mut m = base.clone();
            for _ in 0..(1 + rng.next() % 4) {
                let i = (rng.next() as usize) % m.len();
                m[i] = rng.next() as u8;
            }
            if rng.next().is_multiple_of(3) {
                m.truncate((rng.next() as usize) % (m.len() + 1));
            }
            if let Ok(q) = parse_query(&m) {
                // Whatever parsed re-encodes into something that parses back.
                let r = response(
                    &q,
                    Rcode::NoError,
                    true,
                    &[Record::A(Ipv4Addr::LOCALHOST)],
                    0,
                    UDP_LIMIT,
                );
                assert!(parse_response(&r).is_some(), "{m:?}");
            }
        }
    }
}
