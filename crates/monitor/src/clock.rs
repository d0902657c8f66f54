//! RFC 3339 timestamps in UTC with nanoseconds, as the log and the exit file carry them.
//! Written by hand: a date library would cost more binary and memory than this page.

use std::time::{SystemTime, UNIX_EPOCH};

/// `2026-11-23T10:00:00.123456789Z`: always 30 bytes, so it lives on the stack.
#[derive(Clone, Copy)]
pub struct Stamp([u8; 30]);

impl Stamp {
    pub fn now() -> Stamp {
        // Before 1970 only on a broken clock; the epoch is as good an answer as any.
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Stamp::at(d.as_secs(), d.subsec_nanos())
    }

    pub fn at(secs: u64, nanos: u32) -> Stamp {
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days);
        let mut b = *b"0000-00-00T00:00:00.000000000Z";
        put(&mut b[0..4], y);
        put(&mut b[5..7], m);
        put(&mut b[8..10], d);
        put(&mut b[11..13], rem / 3600);
        put(&mut b[14..16], rem % 3600 / 60);
        put(&mut b[17..19], rem % 60);
        put(&mut b[20..29], u64::from(nanos));
        Stamp(b)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

/// Writes `v` as zero-padded decimal filling `out` (higher digits are dropped).
fn put(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        // `v % 10` is a single digit.
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`, for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(Stamp::at(0, 0).as_str(), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            Stamp::at(1_795_428_000, 123_456_789).as_str(),
            "2026-11-23T10:00:00.123456789Z"
        );
        // A leap day, and the last second of a century year that is not a leap year.
        assert_eq!(
            Stamp::at(951_782_400, 1).as_str(),
            "2000-02-29T00:00:00.000000001Z"
        );
        assert_eq!(
            Stamp::at(4_107_542_399, 999_999_999).as_str(),
            "2100-02-28T23:59:59.999999999Z"
        );
    }

    #[test]
    fn now_is_well_formed() {
        let s = Stamp::now();
        let s = s.as_str();
        assert_eq!(s.len(), 30);
        assert!(s.starts_with("20") && s.ends_with('Z'), "{s}");
    }
}
