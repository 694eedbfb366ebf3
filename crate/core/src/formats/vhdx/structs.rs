//! VHDX structures (MS-VHDX 2.1-2.6), all little-endian: the file identifier, the two
//! 4 KiB headers, the 64 KiB region table, the metadata table and its known items.
//! GUIDs are Microsoft GUIDs: the first three fields little-endian.
use alloc::{format, string::String, vec::Vec};

use crate::formats::fmt::{field, size};
use crate::formats::bytes::{is_zero, le16, le32, le64, ms_guid, utf16};
use crate::model::Field;

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * 1024;
pub const HEADER1_AT: u64 = 64 * KIB;
pub const HEADER2_AT: u64 = 128 * KIB;
pub const REGION1_AT: u64 = 192 * KIB;
pub const REGION2_AT: u64 = 256 * KIB;
pub const HEADER_BYTES: usize = 4096;
pub const REGION_BYTES: usize = 64 * 1024;
/// The metadata table: a 32-byte header and at most 2047 entries of 32 bytes.
pub const METADATA_TABLE_BYTES: usize = 64 * 1024;

pub static CRC32C: crc::Crc<u32, crc::Table<16>> = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

/// CRC-32C of `bytes` with the four bytes at `field` counted as zeros (or none: `usize::MAX`).
pub fn crc32c(bytes: &[u8], field: usize) -> u32 {
    let mut d = CRC32C.digest();
    if field < bytes.len() {
        d.update(&bytes[..field]);
        d.update(&[0; 4]);
        d.update(&bytes[(field + 4).min(bytes.len())..]);
    } else {
        d.update(bytes);
    }
    d.finalize()
}

/// A GUID's 16 bytes from its text form's fields.
pub const fn guid(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> [u8; 16] {
    let a = d1.to_le_bytes();
    let b = d2.to_le_bytes();
    let c = d3.to_le_bytes();
    [a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4], d4[5], d4[6], d4[7]]
}

pub const BAT_GUID: [u8; 16] = guid(0x2dc2_7766, 0xf623, 0x4200, [0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08]);
pub const METADATA_GUID: [u8; 16] = guid(0x8b7c_a206, 0x4790, 0x4b9a, [0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e]);
pub const FILE_PARAMETERS: [u8; 16] = guid(0xcaa1_6737, 0xfa36, 0x4d43, [0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b]);
pub const VIRTUAL_DISK_SIZE: [u8; 16] = guid(0x2fa5_4224, 0xcd1b, 0x4876, [0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8]);
pub const PAGE83: [u8; 16] = guid(0xbeca_12ab, 0xb2e6, 0x4523, [0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7, 0x46]);
pub const LOGICAL_SECTOR: [u8; 16] = guid(0x8141_bf1d, 0xa96f, 0x4709, [0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f]);
pub const PHYSICAL_SECTOR: [u8; 16] = guid(0xcda3_48c7, 0x445d, 0x4471, [0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51, 0xc5, 0x56]);
pub const PARENT_LOCATOR: [u8; 16] = guid(0xa8d3_5f2d, 0xb30b, 0x454d, [0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c]);
pub const VHDX_PARENT_TYPE: [u8; 16] = guid(0xb04a_efb7, 0xd19e, 0x4a81, [0xb7, 0x89, 0x25, 0xb8, 0xe9, 0x44, 0x59, 0x13]);

pub fn item_name(id: &[u8]) -> &'static str {
    match id {
        x if x == FILE_PARAMETERS => "file parameters",
        x if x == VIRTUAL_DISK_SIZE => "virtual disk size",
        x if x == PAGE83 => "page 83 data",
        x if x == LOGICAL_SECTOR => "logical sector size",
        x if x == PHYSICAL_SECTOR => "physical sector size",
        x if x == PARENT_LOCATOR => "parent locator",
        _ => "unknown item",
    }
}

/// One of the two headers, with what makes it usable.
#[derive(Clone)]
pub struct Header {
    pub at: u64,
    pub raw: Vec<u8>,
    pub crc_ok: bool,
}

impl Header {
    pub fn new(raw: &[u8], at: u64) -> Header {
        let crc_ok = le32(raw, 4) == crc32c(&raw[..HEADER_BYTES], 4);
        Header { at, raw: raw[..HEADER_BYTES].to_vec(), crc_ok }
    }
    /// QEMU's test: the CRC, the "head" signature and version 1.
    pub fn valid(&self) -> bool {
        self.crc_ok && &self.raw[..4] == b"head" && self.version() == 1
    }
    pub fn sequence(&self) -> u64 {
        le64(&self.raw, 8)
    }
    pub fn file_write_guid(&self) -> &[u8] {
        &self.raw[16..32]
    }
    pub fn data_write_guid(&self) -> &[u8] {
        &self.raw[32..48]
    }
    pub fn log_guid(&self) -> &[u8] {
        &self.raw[48..64]
    }
    pub fn log_version(&self) -> u16 {
        le16(&self.raw, 64)
    }
    pub fn version(&self) -> u16 {
        le16(&self.raw, 66)
    }
    pub fn log_length(&self) -> u32 {
        le32(&self.raw, 68)
    }
    pub fn log_offset(&self) -> u64 {
        le64(&self.raw, 72)
    }

    pub fn fields(&self, label: &str, current: bool) -> Vec<Field> {
        let b = &self.raw[..];
        let at = self.at;
        let f = |name: &str, off: usize, len: usize, value: String, note: &str| {
            let mut x = field(b, &format!("{} {}", label, name), off, len, value, note);
            x.offset += at;
            x
        };
        let stored = le32(b, 4);
        let crc = if self.crc_ok { format!("{:#010x} (correct)", stored) } else { format!("{:#010x} (wrong: CRC-32C is {:#010x})", stored, crc32c(b, 4)) };
        let g = |o: usize| if is_zero(&b[o..o + 16]) { String::from("(zero)") } else { ms_guid(&b[o..o + 16]) };
        alloc::vec![
            f("signature", 0, 4, format!("\"{}\"", String::from_utf8_lossy(&b[..4])), "\"head\" identifies a header"),
            f("checksum", 4, 4, crc, "CRC-32C of the 4 KiB header with this field zeroed"),
            f("sequence_number", 8, 8, format!("{}{}", self.sequence(), if current { " (current: the valid header with the larger number)" } else { "" }),
              "the valid header with the larger sequence number is the current one"),
            f("file_write_guid", 16, 16, g(16), "changed the first time the file is opened for writing"),
            f("data_write_guid", 32, 16, g(32), "changed before the first change of the disk's contents; children name it as parent_linkage"),
            f("log_guid", 48, 16, g(48), "zero: the log is empty; otherwise log entries with this GUID must be replayed"),
            f("log_version", 64, 2, format!("{}", self.log_version()), "0"),
            f("version", 66, 2, format!("{}", self.version()), "1"),
            f("log_length", 68, 4, size(self.log_length() as u64), "size of the log, a multiple of 1 MiB"),
            f("log_offset", 72, 8, format!("{}", self.log_offset()), "byte offset of the log, a multiple of 1 MiB"),
        ]
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionEntry {
    pub guid: [u8; 16],
    pub offset: u64,
    pub length: u32,
    pub required: bool,
}

/// A region table (one of two copies), decoded as far as it goes.
#[derive(Clone)]
pub struct RegionTable {
    pub at: u64,
    pub raw: Vec<u8>,
    pub crc_ok: bool,
    pub entries: Vec<RegionEntry>,
}

impl RegionTable {
    pub fn new(raw: &[u8], at: u64) -> RegionTable {
        let crc_ok = le32(raw, 4) == crc32c(&raw[..REGION_BYTES], 4);
        let count = (le32(raw, 8) as usize).min(2047);
        let entries = (0..count)
            .map(|i| {
                let o = 16 + 32 * i;
                RegionEntry { guid: raw[o..o + 16].try_into().expect("16"), offset: le64(raw, o + 16), length: le32(raw, o + 24), required: le32(raw, o + 28) & 1 != 0 }
            })
            .collect();
        RegionTable { at, raw: raw[..REGION_BYTES].to_vec(), crc_ok, entries }
    }
    pub fn valid(&self) -> bool {
        self.crc_ok && &self.raw[..4] == b"regi" && le32(&self.raw, 8) <= 2047
    }
    pub fn entry_count(&self) -> u32 {
        le32(&self.raw, 8)
    }

    pub fn fields(&self) -> Vec<Field> {
        let b = &self.raw[..];
        let at = self.at;
        let f = |name: String, off: usize, len: usize, value: String, note: &str| {
            let mut x = field(b, &name, off, len, value, note);
            x.offset += at;
            x
        };
        let stored = le32(b, 4);
        let crc = if self.crc_ok { format!("{:#010x} (correct)", stored) } else { format!("{:#010x} (wrong: CRC-32C is {:#010x})", stored, crc32c(b, 4)) };
        let mut v = alloc::vec![
            f(String::from("region table signature"), 0, 4, format!("\"{}\"", String::from_utf8_lossy(&b[..4])), "\"regi\""),
            f(String::from("region table checksum"), 4, 4, crc, "CRC-32C of the 64 KiB table with this field zeroed"),
            f(String::from("region table entry_count"), 8, 4, format!("{}", self.entry_count()), "regions described (at most 2047)"),
        ];
        for (i, e) in self.entries.iter().enumerate() {
            let what = if e.guid == BAT_GUID { "BAT" } else if e.guid == METADATA_GUID { "metadata" } else { "unknown region" };
            v.push(f(format!("region {}", i), 16 + 32 * i, 32, format!(
                "{} {}: {} bytes at {}{}", what, ms_guid(&e.guid), e.length, e.offset, if e.required { ", required" } else { "" }),
                "GUID, file offset (a multiple of 1 MiB), length, required flag"));
        }
        v
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaEntry {
    pub index: usize,
    pub id: [u8; 16],
    /// Offset relative to the metadata region.
    pub offset: u32,
    pub length: u32,
    pub flags: u32,
}

impl MetaEntry {
    pub fn required(&self) -> bool {
        self.flags & 4 != 0
    }
}

pub fn meta_entries(table: &[u8]) -> Vec<MetaEntry> {
    let count = (le16(table, 10) as usize).min(2047);
    (0..count)
        .map(|i| {
            let o = 32 + 32 * i;
            MetaEntry { index: i, id: table[o..o + 16].try_into().expect("16"), offset: le32(table, o + 16), length: le32(table, o + 20), flags: le32(table, o + 24) }
        })
        .collect()
}

/// The parent locator item: its type and key/value pairs (UTF-16LE, no NULs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParentLocator {
    pub locator_type: [u8; 16],
    /// (key, value, file offset of the value).
    pub entries: Vec<(String, String, u64)>,
    pub problems: Vec<String>,
}

impl ParentLocator {
    /// Decode the item's bytes (`item`, read from file offset `at`).
    pub fn parse(item: &[u8], at: u64) -> ParentLocator {
        let mut p = ParentLocator::default();
        if item.len() < 20 {
            p.problems.push(String::from("the parent locator is shorter than its 20-byte header"));
            return p;
        }
        p.locator_type.copy_from_slice(&item[..16]);
        let count = le16(item, 18) as usize;
        for k in 0..count {
            let o = 20 + 12 * k;
            if o + 12 > item.len() {
                p.problems.push(format!("entry {} runs past the parent locator", k));
                break;
            }
            let (ko, vo, kl, vl) = (le32(item, o) as usize, le32(item, o + 4) as usize, le16(item, o + 8) as usize, le16(item, o + 10) as usize);
            let get = |off: usize, len: usize| item.get(off..off.checked_add(len)?).map(|b| utf16(b, false));
            match (get(ko, kl), get(vo, vl)) {
                (Some(key), Some(value)) => p.entries.push((key, value, at + vo as u64)),
                _ => p.problems.push(format!("entry {}: its key or value lies outside the parent locator", k)),
            }
        }
        p
    }
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.iter().find(|(k, _, _)| k == key).map(|(_, v, _)| v.as_str()).filter(|v| !v.is_empty())
    }
}
