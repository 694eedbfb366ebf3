//! Fields at byte offsets, as the formats decode them: integers, GUID and UUID text,
//! UTF-16 names, signatures. An integer whose bytes the buffer does not hold reads as 0, so
//! a short header or table decodes as empty fields, never a panic.
use alloc::{format, string::String, vec::Vec};

pub fn le16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2).map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}
pub fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}
pub fn le64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |s| u64::from_le_bytes(s.try_into().expect("8 bytes")))
}
pub fn be16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2).map_or(0, |s| u16::from_be_bytes([s[0], s[1]]))
}
pub fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map_or(0, |s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}
pub fn be64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |s| u64::from_be_bytes(s.try_into().expect("8 bytes")))
}

/// 16 bytes as a Microsoft GUID (first three fields little-endian), the way VirtualBox,
/// Hyper-V and Windows print them: `{data1}-{data2}-{data3}-{data4[0..2]}-{data4[2..8]}`.
pub fn ms_guid(b: &[u8]) -> String {
    if b.len() < 16 {
        return String::new();
    }
    format!(
        "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        le32(b, 0),
        le16(b, 4),
        le16(b, 6),
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    )
}

/// 16 bytes as an RFC 4122 UUID, in stored byte order.
pub fn uuid(b: &[u8]) -> String {
    if b.len() < 16 {
        return String::new();
    }
    let h = |r: core::ops::Range<usize>| b[r].iter().map(|x| format!("{:02x}", x)).collect::<String>();
    format!("{}-{}-{}-{}-{}", h(0..4), h(4..6), h(6..8), h(8..10), h(10..16))
}

pub fn is_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

/// UTF-16 text (little- or big-endian) up to the first NUL; unpaired surrogates become U+FFFD.
pub fn utf16(b: &[u8], big_endian: bool) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| if big_endian { u16::from_be_bytes([c[0], c[1]]) } else { u16::from_le_bytes([c[0], c[1]]) })
        .take_while(|&u| u != 0)
        .collect();
    char::decode_utf16(units).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)).collect()
}

/// A printable form of a 4-byte signature or creator code ("qemu", "Wi2k", "tap\0").
pub fn code4(b: &[u8]) -> String {
    let s: String = b.iter().map(|&c| if (0x20..0x7f).contains(&c) { c as char } else { '.' }).collect();
    format!("\"{}\"", s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_and_uuid_text() {
        let b: Vec<u8> = (0u8..16).collect();
        assert_eq!(ms_guid(&b), "03020100-0504-0706-0809-0a0b0c0d0e0f");
        assert_eq!(uuid(&b), "00010203-0405-0607-0809-0a0b0c0d0e0f");
        assert_eq!(utf16(&[b'a', 0, b'b', 0, 0, 0, b'c', 0], false), "ab");
        assert_eq!(utf16(&[0, b'a', 0xd8, 0x00], true), "a\u{fffd}");
        assert_eq!(code4(b"tap\0"), "\"tap.\"");
    }
}
