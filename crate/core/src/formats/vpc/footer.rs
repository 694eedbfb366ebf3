//! The VHD footer (512 bytes, at the end of every VHD and copied at offset 0 of dynamic
//! and differencing disks) and the dynamic disk header (1024 bytes), both big-endian, as
//! Microsoft's "Virtual Hard Disk Image Format Specification" 1.0 lays them out.
use alloc::{format, string::String, vec::Vec};

use crate::formats::fmt::{field, size, unix_time};
use crate::formats::bytes::{be16, be32, be64, code4, is_zero, utf16, uuid};
use crate::model::Field;

pub const FOOTER_BYTES: usize = 512;
pub const HEADER_BYTES: usize = 1024;
pub const COOKIE: &[u8; 8] = b"conectix";
pub const HEADER_COOKIE: &[u8; 8] = b"cxsparse";
/// Seconds from the Unix epoch to 2000-01-01 00:00:00 UTC, where VHD time stamps start.
pub const EPOCH_2000: i64 = 946_684_800;

pub const TYPE_FIXED: u32 = 2;
pub const TYPE_DYNAMIC: u32 = 3;
pub const TYPE_DIFFERENCING: u32 = 4;

/// 65535 cylinders, 16 heads, 255 sectors: the largest CHS geometry, which says "use
/// current_size" whoever made the image.
pub const MAX_GEOMETRY: u64 = 65535 * 16 * 255;

pub mod at {
    pub const COOKIE: usize = 0;
    pub const FEATURES: usize = 8;
    pub const VERSION: usize = 12;
    pub const DATA_OFFSET: usize = 16;
    pub const TIMESTAMP: usize = 24;
    pub const CREATOR_APP: usize = 28;
    pub const CREATOR_VERSION: usize = 32;
    pub const CREATOR_OS: usize = 36;
    pub const ORIGINAL_SIZE: usize = 40;
    pub const CURRENT_SIZE: usize = 48;
    pub const CYLINDERS: usize = 56;
    pub const HEADS: usize = 58;
    pub const SECTORS: usize = 59;
    pub const DISK_TYPE: usize = 60;
    pub const CHECKSUM: usize = 64;
    pub const UUID: usize = 68;
    pub const SAVED_STATE: usize = 84;

    pub mod dyn_ {
        pub const COOKIE: usize = 0;
        pub const DATA_OFFSET: usize = 8;
        pub const TABLE_OFFSET: usize = 16;
        pub const VERSION: usize = 24;
        pub const MAX_TABLE_ENTRIES: usize = 28;
        pub const BLOCK_SIZE: usize = 32;
        pub const CHECKSUM: usize = 36;
        pub const PARENT_UUID: usize = 40;
        pub const PARENT_TIMESTAMP: usize = 56;
        pub const RESERVED: usize = 60;
        pub const PARENT_NAME: usize = 64;
        pub const LOCATORS: usize = 576;
    }
}

/// One's complement of the byte sum, with the checksum field counted as zeros.
pub fn checksum(bytes: &[u8], field: usize) -> u32 {
    let sum = bytes.iter().enumerate().filter(|(i, _)| !(field..field + 4).contains(i)).fold(0u32, |s, (_, &b)| s.wrapping_add(b as u32));
    !sum
}

#[derive(Clone)]
pub struct Footer {
    pub raw: Vec<u8>,
    /// Where in the file these bytes were read.
    pub at: u64,
}

impl Footer {
    pub fn new(raw: &[u8], at: u64) -> Footer {
        Footer { raw: raw[..FOOTER_BYTES].to_vec(), at }
    }
    pub fn cookie_ok(&self) -> bool {
        &self.raw[..8] == COOKIE
    }
    pub fn data_offset(&self) -> u64 {
        be64(&self.raw, at::DATA_OFFSET)
    }
    pub fn creator_app(&self) -> &[u8] {
        &self.raw[at::CREATOR_APP..at::CREATOR_APP + 4]
    }
    pub fn current_size(&self) -> u64 {
        be64(&self.raw, at::CURRENT_SIZE)
    }
    /// Sectors of the CHS geometry.
    pub fn chs_sectors(&self) -> u64 {
        be16(&self.raw, at::CYLINDERS) as u64 * self.raw[at::HEADS] as u64 * self.raw[at::SECTORS] as u64
    }
    pub fn disk_type(&self) -> u32 {
        be32(&self.raw, at::DISK_TYPE)
    }
    pub fn stored_checksum(&self) -> u32 {
        be32(&self.raw, at::CHECKSUM)
    }
    pub fn computed_checksum(&self) -> u32 {
        checksum(&self.raw, at::CHECKSUM)
    }
    pub fn uuid(&self) -> &[u8] {
        &self.raw[at::UUID..at::UUID + 16]
    }
    pub fn timestamp(&self) -> u32 {
        be32(&self.raw, at::TIMESTAMP)
    }

    /// QEMU's rule (block/vpc.c since QEMU 10): Virtual PC ("vpc ") and old QEMU ("qemu")
    /// size the disk by its CHS geometry; every other creator by current_size; and the
    /// largest geometry always means current_size.
    pub fn uses_chs(&self) -> bool {
        matches!(self.creator_app(), b"vpc " | b"qemu") && self.chs_sectors() != MAX_GEOMETRY
    }

    /// The guest-visible size, as QEMU computes it (whole sectors).
    pub fn virtual_size(&self) -> u64 {
        if self.uses_chs() {
            self.chs_sectors() * 512
        } else {
            self.current_size() / 512 * 512
        }
    }

    pub fn type_name(t: u32) -> &'static str {
        match t {
            0 => "none",
            1 => "reserved (deprecated)",
            TYPE_FIXED => "fixed",
            TYPE_DYNAMIC => "dynamic",
            TYPE_DIFFERENCING => "differencing",
            _ => "reserved",
        }
    }

    pub fn fields(&self, what: &str) -> Vec<Field> {
        let b = &self.raw[..];
        let base = self.at;
        let f = |name: &str, off: usize, len: usize, value: String, note: &str| {
            let mut x = field(b, &format!("{}{}", what, name), off, len, value, note);
            x.offset += base;
            x
        };
        let features = be32(b, at::FEATURES);
        let ts = self.timestamp();
        let app = self.creator_app();
        let app_note = match app {
            b"vpc " => "Virtual PC: QEMU sizes the disk by its CHS geometry",
            b"qemu" => "QEMU before force_size: QEMU sizes the disk by its CHS geometry",
            b"qem2" => "QEMU with force_size=on: the disk size is current_size",
            b"win " => "Hyper-V / Windows: the disk size is current_size",
            b"d2v " => "Disk2vhd: the disk size is current_size",
            b"tap\0" => "XenServer: the disk size is current_size",
            b"CTXS" => "XenConverter: the disk size is current_size",
            b"wa\0\0" => "Windows Azure: the disk size is current_size",
            _ => "the program that made the image; for any but \"vpc \" and \"qemu\" QEMU takes current_size as the disk size",
        };
        let chs = self.chs_sectors();
        let saved = b[at::SAVED_STATE];
        let chk = self.stored_checksum();
        let chk_value = if chk == self.computed_checksum() { format!("{:#010x} (correct)", chk) } else { format!("{:#010x} (wrong: the bytes sum to {:#010x})", chk, self.computed_checksum()) };
        alloc::vec![
            f("cookie", at::COOKIE, 8, format!("\"{}\"", String::from_utf8_lossy(&b[..8])), "\"conectix\" identifies a VHD footer"),
            f("features", at::FEATURES, 4, format!("{:#x}{}{}", features, if features & 1 != 0 { " temporary" } else { "" }, if features & 2 != 0 { " (reserved bit set, as required)" } else { "" }),
              "bit 0: temporary disk; bit 1: reserved, always set"),
            f("file_format_version", at::VERSION, 4, format!("{}.{}", be16(b, at::VERSION), be16(b, at::VERSION + 2)), "1.0"),
            f("data_offset", at::DATA_OFFSET, 8, if self.data_offset() == u64::MAX { String::from("0xffffffffffffffff (none: a fixed disk)") } else { format!("{}", self.data_offset()) },
              "byte offset of the dynamic disk header"),
            f("timestamp", at::TIMESTAMP, 4, format!("{} = {}", ts, unix_time(ts as i64 + EPOCH_2000)), "creation time, seconds since 2000-01-01 UTC"),
            f("creator_application", at::CREATOR_APP, 4, code4(app), app_note),
            f("creator_version", at::CREATOR_VERSION, 4, format!("{}.{}", be16(b, at::CREATOR_VERSION), be16(b, at::CREATOR_VERSION + 2)), "version of the creator application"),
            f("creator_host_os", at::CREATOR_OS, 4, code4(&b[at::CREATOR_OS..at::CREATOR_OS + 4]), "\"Wi2k\": Windows, \"Mac \": Macintosh"),
            f("original_size", at::ORIGINAL_SIZE, 8, size(be64(b, at::ORIGINAL_SIZE)), "disk size when the image was made"),
            f("current_size", at::CURRENT_SIZE, 8, size(self.current_size()), if self.uses_chs() { "current disk size (QEMU uses the CHS geometry for this creator)" } else { "current disk size: the size the guest sees" }),
            f("disk_geometry", at::CYLINDERS, 4, format!("{} cylinders, {} heads, {} sectors/track = {} sectors ({})", be16(b, at::CYLINDERS), b[at::HEADS], b[at::SECTORS], chs, size(chs * 512)),
              if self.uses_chs() { "CHS geometry: the size the guest sees, as QEMU reads this creator's images" } else { "CHS geometry for the BIOS" }),
            f("disk_type", at::DISK_TYPE, 4, format!("{} = {}", self.disk_type(), Footer::type_name(self.disk_type())), "2 fixed, 3 dynamic, 4 differencing"),
            f("checksum", at::CHECKSUM, 4, chk_value, "one's complement of the sum of the footer's bytes, this field excluded"),
            f("unique_id", at::UUID, 16, uuid(self.uuid()), "this disk's identity; a differencing child names it as its parent"),
            f("saved_state", at::SAVED_STATE, 1, format!("{}", saved), "1: the disk is in a saved state (a VM was suspended with it)"),
        ]
    }
}

/// A parent locator entry of the dynamic disk header, and the name it leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Locator {
    pub index: usize,
    /// File offset of the 24-byte entry.
    pub entry_at: u64,
    pub code: [u8; 4],
    pub data_space: u32,
    pub data_length: u32,
    pub data_offset: u64,
    /// The path, decoded (None for a Mac alias or unreadable data).
    pub path: Option<String>,
    pub problem: Option<String>,
}

impl Locator {
    pub fn code_name(&self) -> &'static str {
        match &self.code {
            b"W2ru" => "W2ru: Windows relative path, UTF-16LE",
            b"W2ku" => "W2ku: Windows absolute path, UTF-16LE",
            b"Wi2r" => "Wi2r: Windows relative path (deprecated)",
            b"Wi2k" => "Wi2k: Windows absolute path (deprecated)",
            b"MacX" => "MacX: Mac OS X file URL, UTF-8",
            b"Mac " => "Mac: Mac OS alias record",
            _ => "unknown platform code",
        }
    }
}

#[derive(Clone)]
pub struct DynHeader {
    pub raw: Vec<u8>,
    pub at: u64,
}

impl DynHeader {
    pub fn new(raw: &[u8], at: u64) -> DynHeader {
        DynHeader { raw: raw[..HEADER_BYTES].to_vec(), at }
    }
    pub fn cookie_ok(&self) -> bool {
        &self.raw[..8] == HEADER_COOKIE
    }
    pub fn table_offset(&self) -> u64 {
        be64(&self.raw, at::dyn_::TABLE_OFFSET)
    }
    pub fn max_table_entries(&self) -> u32 {
        be32(&self.raw, at::dyn_::MAX_TABLE_ENTRIES)
    }
    pub fn block_size(&self) -> u32 {
        be32(&self.raw, at::dyn_::BLOCK_SIZE)
    }
    pub fn stored_checksum(&self) -> u32 {
        be32(&self.raw, at::dyn_::CHECKSUM)
    }
    pub fn computed_checksum(&self) -> u32 {
        checksum(&self.raw, at::dyn_::CHECKSUM)
    }
    pub fn parent_uuid(&self) -> &[u8] {
        &self.raw[at::dyn_::PARENT_UUID..at::dyn_::PARENT_UUID + 16]
    }
    pub fn parent_name(&self) -> String {
        utf16(&self.raw[at::dyn_::PARENT_NAME..at::dyn_::PARENT_NAME + 512], true)
    }
    /// The 8 locator entries with a platform code (data not read yet).
    pub fn locators(&self) -> Vec<Locator> {
        (0..8)
            .filter_map(|i| {
                let o = at::dyn_::LOCATORS + 24 * i;
                let b = &self.raw[o..o + 24];
                let code: [u8; 4] = b[..4].try_into().expect("4 bytes");
                (!is_zero(&code)).then(|| Locator {
                    index: i,
                    entry_at: self.at + o as u64,
                    code,
                    data_space: be32(b, 4),
                    data_length: be32(b, 8),
                    data_offset: be64(b, 16),
                    path: None,
                    problem: None,
                })
            })
            .collect()
    }

    pub fn fields(&self, differencing: bool, locators: &[Locator]) -> Vec<Field> {
        use at::dyn_ as d;
        let b = &self.raw[..];
        let base = self.at;
        let f = |name: &str, off: usize, len: usize, value: String, note: &str| {
            let mut x = field(b, name, off, len, value, note);
            x.offset += base;
            x
        };
        let chk = self.stored_checksum();
        let chk_value = if chk == self.computed_checksum() { format!("{:#010x} (correct)", chk) } else { format!("{:#010x} (wrong: the bytes sum to {:#010x})", chk, self.computed_checksum()) };
        let bs = self.block_size() as u64;
        let mut v = alloc::vec![
            f("header cookie", d::COOKIE, 8, format!("\"{}\"", String::from_utf8_lossy(&b[..8])), "\"cxsparse\" identifies the dynamic disk header"),
            f("header data_offset", d::DATA_OFFSET, 8, format!("{:#x}", be64(b, d::DATA_OFFSET)), "unused: 0xffffffffffffffff"),
            f("table_offset", d::TABLE_OFFSET, 8, format!("{}", self.table_offset()), "byte offset of the BAT (block allocation table)"),
            f("header_version", d::VERSION, 4, format!("{}.{}", be16(b, d::VERSION), be16(b, d::VERSION + 2)), "1.0"),
            f("max_table_entries", d::MAX_TABLE_ENTRIES, 4, format!("{}", self.max_table_entries()), "BAT entries (32-bit sector numbers; 0xffffffff: not allocated)"),
            f("block_size", d::BLOCK_SIZE, 4, size(bs), "guest bytes per block; each stored block is preceded by a sector bitmap"),
            f("header checksum", d::CHECKSUM, 4, chk_value, "one's complement of the sum of the header's bytes, this field excluded"),
        ];
        if differencing || !is_zero(self.parent_uuid()) {
            let ts = be32(b, d::PARENT_TIMESTAMP);
            v.push(f("parent_unique_id", d::PARENT_UUID, 16, uuid(self.parent_uuid()), "the parent's unique_id: the chain checks the parent has it"));
            v.push(f("parent_timestamp", d::PARENT_TIMESTAMP, 4, format!("{} = {}", ts, unix_time(ts as i64 + EPOCH_2000)), "the parent's timestamp when this child was made"));
            v.push(f("parent_unicode_name", d::PARENT_NAME, 512, format!("{:?}", self.parent_name()), "the parent's file name, UTF-16 big-endian"));
        }
        for l in locators {
            let o = d::LOCATORS + 24 * l.index;
            let mut x = f(&format!("parent_locator[{}]", l.index), o, 24, format!(
                "{} {} bytes at {} (space {})", code4(&l.code), l.data_length, l.data_offset, l.data_space), l.code_name());
            x.offset = l.entry_at;
            v.push(x);
            let value = match (&l.path, &l.problem) {
                (Some(p), _) => format!("{:?}", p),
                (None, Some(p)) => format!("(unreadable: {})", p),
                (None, None) => String::from("(not a path)"),
            };
            v.push(Field {
                name: format!("parent_locator[{}] data", l.index),
                offset: l.data_offset,
                size: l.data_length as u64,
                raw: Vec::new(),
                value,
                note: String::from(l.code_name()),
            });
        }
        v
    }
}
