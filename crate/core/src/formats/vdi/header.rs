//! The 512-byte VDI 1.1 header (VirtualBox's VDIHEADER1PLUS after its 72-byte preheader),
//! all little-endian. UUIDs are stored as Microsoft GUIDs (first three fields little-endian).
use alloc::{format, string::String, vec::Vec};

use crate::formats::bytes::{is_zero, le32, le64, ms_guid};
use crate::formats::fmt::{c_string, field, size};
use crate::model::Field;

pub const HEADER_BYTES: usize = 512;
pub const SIGNATURE: u32 = 0xbeda_107f;
pub const VERSION_1_1: u32 = 0x0001_0001;

pub const TYPE_NORMAL: u32 = 1;
pub const TYPE_FIXED: u32 = 2;
pub const TYPE_UNDO: u32 = 3;
pub const TYPE_DIFF: u32 = 4;

/// Byte offsets of the fields in the file.
pub mod at {
    pub const TEXT: usize = 0;
    pub const SIGNATURE: usize = 64;
    pub const VERSION: usize = 68;
    pub const HEADER_SIZE: usize = 72;
    pub const IMAGE_TYPE: usize = 76;
    pub const IMAGE_FLAGS: usize = 80;
    pub const DESCRIPTION: usize = 84;
    pub const OFFSET_BMAP: usize = 340;
    pub const OFFSET_DATA: usize = 344;
    pub const CYLINDERS: usize = 348;
    pub const HEADS: usize = 352;
    pub const SECTORS: usize = 356;
    pub const SECTOR_SIZE: usize = 360;
    pub const UNUSED1: usize = 364;
    pub const DISK_SIZE: usize = 368;
    pub const BLOCK_SIZE: usize = 376;
    pub const BLOCK_EXTRA: usize = 380;
    pub const BLOCKS_IN_IMAGE: usize = 384;
    pub const BLOCKS_ALLOCATED: usize = 388;
    pub const UUID_IMAGE: usize = 392;
    pub const UUID_LAST_SNAP: usize = 408;
    pub const UUID_LINK: usize = 424;
    pub const UUID_PARENT: usize = 440;
    pub const LCHS: usize = 456;
}

#[derive(Clone)]
pub struct Header {
    pub raw: Vec<u8>,
    pub signature: u32,
    pub version: u32,
    pub header_size: u32,
    pub image_type: u32,
    pub image_flags: u32,
    pub offset_bmap: u32,
    pub offset_data: u32,
    pub sector_size: u32,
    pub disk_size: u64,
    pub block_size: u32,
    pub block_extra: u32,
    pub blocks_in_image: u32,
    pub blocks_allocated: u32,
}

impl Header {
    /// Decode the fields of `raw` (at least [`HEADER_BYTES`] long).
    pub fn parse(raw: &[u8]) -> Header {
        Header {
            raw: raw[..HEADER_BYTES].to_vec(),
            signature: le32(raw, at::SIGNATURE),
            version: le32(raw, at::VERSION),
            header_size: le32(raw, at::HEADER_SIZE),
            image_type: le32(raw, at::IMAGE_TYPE),
            image_flags: le32(raw, at::IMAGE_FLAGS),
            offset_bmap: le32(raw, at::OFFSET_BMAP),
            offset_data: le32(raw, at::OFFSET_DATA),
            sector_size: le32(raw, at::SECTOR_SIZE),
            disk_size: le64(raw, at::DISK_SIZE),
            block_size: le32(raw, at::BLOCK_SIZE),
            block_extra: le32(raw, at::BLOCK_EXTRA),
            blocks_in_image: le32(raw, at::BLOCKS_IN_IMAGE),
            blocks_allocated: le32(raw, at::BLOCKS_ALLOCATED),
        }
    }

    pub fn uuid(&self, at: usize) -> &[u8] {
        &self.raw[at..at + 16]
    }

    pub fn type_name(t: u32) -> &'static str {
        match t {
            TYPE_NORMAL => "normal (dynamic: blocks allocated on first write)",
            TYPE_FIXED => "fixed (static: every block allocated at creation)",
            TYPE_UNDO => "undo (changes kept apart from a base image)",
            TYPE_DIFF => "differencing (a child of the image whose UUID is uuid_link)",
            _ => "unknown",
        }
    }

    pub fn fields(&self) -> Vec<Field> {
        let b = &self.raw[..];
        let f = |name: &str, off: usize, len: usize, value: String, note: &str| field(b, name, off, len, value, note);
        let (text, _) = c_string(&b[at::TEXT..at::TEXT + 64]);
        let (desc, _) = c_string(&b[at::DESCRIPTION..at::DESCRIPTION + 256]);
        let guid = |a: usize| {
            let g = &b[a..a + 16];
            if is_zero(g) {
                String::from("(none)")
            } else {
                ms_guid(g)
            }
        };
        let mut v = alloc::vec![
            f("text", at::TEXT, 64, format!("{:?}", text.trim_end()), "free text naming the program that made the image; not interpreted"),
            f("signature", at::SIGNATURE, 4, format!("{:#010x}", self.signature), "0xbeda107f identifies a VDI image"),
            f("version", at::VERSION, 4, format!("{}.{}", self.version >> 16, self.version & 0xffff), "header version; QEMU and diskscope read 1.1"),
            f("header_size", at::HEADER_SIZE, 4, format!("{} bytes", self.header_size), "size of the header after the version field (0x180, or 0x190 with the LCHS geometry)"),
            f("image_type", at::IMAGE_TYPE, 4, format!("{} = {}", self.image_type, Header::type_name(self.image_type)), "how blocks are allocated, and whether the image has a parent"),
            f("image_flags", at::IMAGE_FLAGS, 4, format!("{:#x}", self.image_flags), "VirtualBox image flags (0x100: zero-expand); not needed to read the data"),
            f("description", at::DESCRIPTION, 256, format!("{:?}", desc), "free-text comment"),
            f("offset_bmap", at::OFFSET_BMAP, 4, format!("{}", self.offset_bmap), "byte offset of the block map (one 32-bit entry per block)"),
            f("offset_data", at::OFFSET_DATA, 4, format!("{}", self.offset_data), "byte offset of block 0 of the data area; block n is at offset_data + n * block_size"),
            f("cylinders", at::CYLINDERS, 4, format!("{}", le32(b, at::CYLINDERS)), "legacy disk geometry; not used to read the data"),
            f("heads", at::HEADS, 4, format!("{}", le32(b, at::HEADS)), "legacy disk geometry"),
            f("sectors", at::SECTORS, 4, format!("{}", le32(b, at::SECTORS)), "legacy disk geometry (sectors per track)"),
            f("sector_size", at::SECTOR_SIZE, 4, format!("{} bytes", self.sector_size), "must be 512"),
            f("unused1", at::UNUSED1, 4, format!("{:#x}", le32(b, at::UNUSED1)), "unused"),
            f("disk_size", at::DISK_SIZE, 8, size(self.disk_size), "size of the disk the guest sees (QEMU rounds it up to 512 bytes)"),
            f("block_size", at::BLOCK_SIZE, 4, size(self.block_size as u64), "bytes per block, the unit of allocation (QEMU requires 1 MiB)"),
            f("block_extra", at::BLOCK_EXTRA, 4, format!("{} bytes", self.block_extra), "bytes of per-block extra data; 0 in every image QEMU and VirtualBox make"),
            f("blocks_in_image", at::BLOCKS_IN_IMAGE, 4, format!("{}", self.blocks_in_image), "entries in the block map"),
            f("blocks_allocated", at::BLOCKS_ALLOCATED, 4, format!("{}", self.blocks_allocated), "blocks stored in the data area; new blocks are appended at this index"),
            f("uuid_image", at::UUID_IMAGE, 16, guid(at::UUID_IMAGE), "this image's identity (VirtualBox uuidCreate); children name it in uuid_link"),
            f("uuid_last_snap", at::UUID_LAST_SNAP, 16, guid(at::UUID_LAST_SNAP), "changed on every modification (VirtualBox uuidModify)"),
            f("uuid_link", at::UUID_LINK, 16, guid(at::UUID_LINK), "the parent's uuid_image (VirtualBox uuidLinkage); none for a base image"),
            f("uuid_parent", at::UUID_PARENT, 16, guid(at::UUID_PARENT), "the parent's uuid_last_snap when this child was made (VirtualBox uuidParentModify)"),
        ];
        if self.header_size >= 0x190 {
            v.push(f("lchs_cylinders", at::LCHS, 4, format!("{}", le32(b, at::LCHS)), "logical CHS geometry the guest BIOS sees"));
            v.push(f("lchs_heads", at::LCHS + 4, 4, format!("{}", le32(b, at::LCHS + 4)), "logical CHS geometry"));
            v.push(f("lchs_sectors", at::LCHS + 8, 4, format!("{}", le32(b, at::LCHS + 8)), "logical CHS geometry"));
            v.push(f("lchs_sector_size", at::LCHS + 12, 4, format!("{}", le32(b, at::LCHS + 12)), "logical CHS geometry"));
        }
        v
    }
}
