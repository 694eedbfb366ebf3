//! Small formatters for header values, shared by the formats.
use alloc::{format, string::String};

/// "64 KiB (65536 bytes)" for exact binary multiples, "1000 B" otherwise.
pub fn size(v: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut i = 0;
    while i + 1 < UNITS.len() && v >= 1u64 << (10 * (i + 1)) && v % (1u64 << (10 * (i + 1))) == 0 {
        i += 1;
    }
    if i == 0 {
        format!("{} B", v)
    } else {
        format!("{} {} ({} bytes)", v >> (10 * i), UNITS[i], v)
    }
}

/// A Unix time as an ISO date (UTC), without std: days-to-civil from Howard Hinnant's
/// public-domain algorithm description.
pub fn unix_time(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC", year, month, day, rem / 3600, rem / 60 % 60, rem % 60)
}

/// A fixed-size name field: the text up to the first NUL, and whether a NUL was there.
pub fn c_string(raw: &[u8]) -> (String, bool) {
    let end = raw.iter().position(|&b| b == 0);
    (String::from_utf8_lossy(&raw[..end.unwrap_or(raw.len())]).into_owned(), end.is_some())
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        assert_eq!(super::unix_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::unix_time(1_311_033_600), "2011-07-19 00:00:00 UTC");
        assert_eq!(super::unix_time(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}

/// A header field from the bytes it occupies (`bytes` starts at file offset 0).
pub fn field(bytes: &[u8], name: &str, off: usize, len: usize, value: String, note: &str) -> crate::model::Field {
    crate::model::Field {
        name: String::from(name),
        offset: off as u64,
        size: len as u64,
        raw: bytes.get(off..off + len).map(|b| b.to_vec()).unwrap_or_default(),
        value,
        note: String::from(note),
    }
}

/// A name field's value as shown: quoted, or "(none)".
pub fn quoted(name: &str) -> String {
    if name.is_empty() {
        String::from("(none)")
    } else {
        format!("\"{}\"", name)
    }
}
