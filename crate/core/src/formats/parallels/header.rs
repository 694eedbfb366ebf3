//! The 64-byte Parallels header (QEMU docs/interop/parallels.txt), all little-endian.
use alloc::{format, string::String, vec::Vec};

use crate::formats::fmt::{field, size};
use crate::formats::bytes::{le32, le64};
use crate::model::Field;

pub const HEADER_BYTES: usize = 64;
/// BAT entries in sectors; only the low 32 bits of nb_sectors count.
pub const MAGIC_OLD: &[u8; 16] = b"WithoutFreeSpace";
/// BAT entries in clusters; data_off must be cluster-aligned.
pub const MAGIC_EXT: &[u8; 16] = b"WithouFreSpacExt";
pub const VERSION: u32 = 2;
/// in_use while a writer has the image open; left set, the image was not closed cleanly.
pub const INUSE_DIRTY: u32 = 0x746f_6e59;
/// in_use once a writer closed the image ("v2.1").
pub const INUSE_CLOSED: u32 = 0x312e_3276;

pub mod at {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 16;
    pub const HEADS: usize = 20;
    pub const CYLINDERS: usize = 24;
    pub const TRACKS: usize = 28;
    pub const BAT_ENTRIES: usize = 32;
    pub const NB_SECTORS: usize = 36;
    pub const INUSE: usize = 44;
    pub const DATA_OFF: usize = 48;
    pub const FLAGS: usize = 52;
    pub const EXT_OFF: usize = 56;
}

#[derive(Clone)]
pub struct Header {
    pub raw: Vec<u8>,
    /// "WithouFreSpacExt": BAT entries count clusters.
    pub ext_magic: bool,
    pub version: u32,
    pub tracks: u32,
    pub bat_entries: u32,
    pub nb_sectors: u64,
    pub inuse: u32,
    pub data_off: u32,
    pub flags: u32,
    pub ext_off: u64,
}

impl Header {
    /// None when neither magic is there.
    pub fn parse(raw: &[u8]) -> Option<Header> {
        let ext_magic = match &raw[..16] {
            m if m == MAGIC_EXT => true,
            m if m == MAGIC_OLD => false,
            _ => return None,
        };
        Some(Header {
            raw: raw[..HEADER_BYTES].to_vec(),
            ext_magic,
            version: le32(raw, at::VERSION),
            tracks: le32(raw, at::TRACKS),
            bat_entries: le32(raw, at::BAT_ENTRIES),
            nb_sectors: le64(raw, at::NB_SECTORS),
            inuse: le32(raw, at::INUSE),
            data_off: le32(raw, at::DATA_OFF),
            flags: le32(raw, at::FLAGS),
            ext_off: le64(raw, at::EXT_OFF),
        })
    }

    /// Disk size in sectors as QEMU takes it: the old magic keeps only the low 32 bits.
    pub fn total_sectors(&self) -> u64 {
        if self.ext_magic {
            self.nb_sectors
        } else {
            self.nb_sectors & 0xffff_ffff
        }
    }

    pub fn fields(&self) -> Vec<Field> {
        let b = &self.raw[..];
        let f = |name: &str, off: usize, len: usize, value: String, note: &str| field(b, name, off, len, value, note);
        let inuse = match self.inuse {
            0 => String::from("0 (closed by software without Format Extension support)"),
            INUSE_DIRTY => String::from("0x746f6e59 \"Ynot\": open for writing, or not closed cleanly"),
            INUSE_CLOSED => String::from("0x312e3276 \"v2.1\": closed cleanly"),
            v => format!("{:#010x} (not a defined value)", v),
        };
        let cluster = self.tracks as u64 * 512;
        let unit = if self.ext_magic { "clusters" } else { "sectors" };
        alloc::vec![
            f("magic", at::MAGIC, 16, format!("\"{}\"", String::from_utf8_lossy(&b[..16])),
              if self.ext_magic { "\"WithouFreSpacExt\": BAT entries are in clusters" } else { "\"WithoutFreeSpace\": BAT entries are in sectors" }),
            f("version", at::VERSION, 4, format!("{}", self.version), "must be 2"),
            f("heads", at::HEADS, 4, format!("{}", le32(b, at::HEADS)), "disk geometry for the guest; not used to read the data"),
            f("cylinders", at::CYLINDERS, 4, format!("{}", le32(b, at::CYLINDERS)), "disk geometry for the guest"),
            f("tracks", at::TRACKS, 4, format!("{} sectors = {}", self.tracks, size(cluster)), "cluster size, in 512-byte sectors"),
            f("bat_entries", at::BAT_ENTRIES, 4, format!("{}", self.bat_entries), "entries in the BAT (clusters the disk can map)"),
            f("nb_sectors", at::NB_SECTORS, 8, format!("{} sectors = {}", self.total_sectors(), size(self.total_sectors().saturating_mul(512))),
              if self.ext_magic { "disk size in sectors" } else { "disk size in sectors; only the low 32 bits count with this magic" }),
            f("in_use", at::INUSE, 4, inuse, "dirty flag: QEMU's check counts a set flag as one error"),
            f("data_off", at::DATA_OFF, 4, format!("{} sectors = byte {}", self.data_off, self.data_off as u64 * 512),
              "start of the data area; 0 in an old-magic image means right after the BAT"),
            f("flags", at::FLAGS, 4, format!("{:#x}{}", self.flags, if self.flags & 1 != 0 { " (empty image)" } else { "" }),
              "bit 0: the image should be considered empty (QEMU ignores it)"),
            f("ext_off", at::EXT_OFF, 8, if self.ext_off == 0 { String::from("0 (no Format Extension)") } else { format!("{} sectors = byte {}", self.ext_off, self.ext_off.saturating_mul(512)) },
              "the Format Extension cluster (dirty bitmaps), in sectors"),
            Field {
                name: String::from("BAT"),
                offset: HEADER_BYTES as u64,
                size: self.bat_entries as u64 * 4,
                raw: Vec::new(),
                value: format!("{} entries of 32 bits, in {}", self.bat_entries, unit),
                note: String::from("cluster i of the disk is at entry * (1 sector or 1 cluster); 0: not allocated"),
            },
        ]
    }
}
