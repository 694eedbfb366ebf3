//! The two add-cow header generations (DECISIONS.md 2, FORMATS.md 2.2), decoded into one
//! shape the reader uses. All little-endian.
use alloc::{format, string::String, vec::Vec};

use crate::formats::bytes::le64;
use crate::formats::fmt::{c_string, field, quoted, size};
use crate::model::Field;

pub const MAGIC_V11: &[u8; 8] = b"ADD_COW\xff";
pub const MAGIC_ACOW: &[u8; 4] = b"ACOW";

/// v11 feature bits.
pub const V11_BACKING_FILE: u64 = 0x01;
pub const V11_IMAGE_FILE: u64 = 0x02;
pub const V11_ALL_ALLOCATED: u64 = 0x04;
/// ACOW compatible feature bit 0.
pub const ACOW_ALL_ALLOCATED: u64 = 0x01;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    V11,
    Acow,
}

/// A name stored in the header: where, how long, and its text.
#[derive(Debug, Clone)]
pub struct NameRef {
    pub offset: u64,
    pub size: u64,
    /// Byte offset of the header field that holds `offset`.
    pub field_at: u64,
}

pub struct Header {
    pub generation: Generation,
    pub bytes: Vec<u8>,
    pub backing: NameRef,
    pub image: NameRef,
    pub cluster: u64,
    pub header_size: u64,
    /// Incompatible bits this reader does not know (refuse to open when non-zero).
    pub unknown_features: u64,
    pub all_allocated: bool,
    pub backing_fmt: String,
    pub image_fmt: String,
    /// Where the names may lie: [names_start, header_size).
    pub names_start: u64,
}

/// add-cow's 32-bit fields are offsets and sizes, held as u64.
fn le32(b: &[u8], at: usize) -> u64 {
    crate::formats::bytes::le32(b, at).into()
}

/// Bytes needed to decode the fixed part of each generation.
pub const FIXED_V11: usize = 80;
pub const FIXED_ACOW: usize = 76;

impl Header {
    /// Decode the fixed part (`b` holds at least FIXED_* bytes). Names are read later.
    pub fn decode(b: &[u8]) -> Option<Header> {
        if b.starts_with(MAGIC_V11) && b.len() >= FIXED_V11 {
            let features = le64(b, 28);
            let optional = le64(b, 36);
            let pages = le32(b, 44);
            Some(Header {
                generation: Generation::V11,
                bytes: b[..FIXED_V11].to_vec(),
                backing: NameRef { offset: le32(b, 12), size: le32(b, 16), field_at: 12 },
                image: NameRef { offset: le32(b, 20), size: le32(b, 24), field_at: 20 },
                cluster: 64 * 1024,
                header_size: pages * 4096,
                unknown_features: (features & !(V11_BACKING_FILE | V11_IMAGE_FILE | V11_ALL_ALLOCATED)) | optional,
                all_allocated: features & V11_ALL_ALLOCATED != 0,
                backing_fmt: c_string(&b[48..64]).0,
                image_fmt: c_string(&b[64..80]).0,
                names_start: FIXED_V11 as u64,
            })
        } else if b.starts_with(MAGIC_ACOW) && b.len() >= FIXED_ACOW {
            let bits = le32(b, 20);
            Some(Header {
                generation: Generation::Acow,
                bytes: b[..FIXED_ACOW].to_vec(),
                backing: NameRef { offset: le32(b, 4), size: le32(b, 8), field_at: 4 },
                image: NameRef { offset: le32(b, 12), size: le32(b, 16), field_at: 12 },
                cluster: if (9..=21).contains(&bits) { 1 << bits } else { 0 },
                header_size: le32(b, 40),
                unknown_features: le64(b, 24),
                all_allocated: le64(b, 32) & ACOW_ALL_ALLOCATED != 0,
                backing_fmt: c_string(&b[44..60]).0,
                image_fmt: c_string(&b[60..76]).0,
                names_start: FIXED_ACOW as u64,
            })
        } else {
            None
        }
    }

    pub fn fields(&self, backing: &Option<String>, image: &Option<String>) -> Vec<Field> {
        let b = &self.bytes;
        let mut f = Vec::new();
        let name_fields = |f: &mut Vec<Field>, n: &NameRef, what: &str, text: &Option<String>| {
            f.push(field(b, &format!("{} name offset", what), n.field_at as usize, 4, format!("{}", n.offset),
                "byte offset of the name in this file; 0 = none"));
            f.push(field(b, &format!("{} name size", what), n.field_at as usize + 4, 4, format!("{} bytes", n.size),
                "length of the name; it is not NUL-terminated"));
            if let Some(t) = text {
                f.push(crate::model::Field {
                    name: format!("{} name", what),
                    offset: n.offset,
                    size: n.size,
                    raw: t.as_bytes().to_vec(),
                    value: quoted(t),
                    note: String::from(if what == "backing file" {
                        "read where the bitmap has 0 (zeros past its end)"
                    } else {
                        "holds the clusters whose bit is 1; its size is the disk's size"
                    }),
                });
            }
        };
        match self.generation {
            Generation::V11 => {
                f.push(field(b, "magic", 0, 8, String::from("\"ADD_COW\\xff\""), "identifies an add-cow v11 image"));
                f.push(field(b, "version", 8, 4, format!("{}", le32(b, 8)), "only 1 is valid"));
                name_fields(&mut f, &self.backing, "backing file", backing);
                name_fields(&mut f, &self.image, "image file", image);
                let feat = le64(b, 28);
                let names: Vec<&str> = [(V11_BACKING_FILE, "BACKING_FILE"), (V11_IMAGE_FILE, "IMAGE_FILE"), (V11_ALL_ALLOCATED, "ALL_ALLOCATED")]
                    .iter().filter(|(m, _)| feat & m != 0).map(|(_, n)| *n).collect();
                f.push(field(b, "features", 28, 8, if names.is_empty() { String::from("none") } else { names.join(" | ") },
                    "0x01 uses a backing file, 0x02 uses an image file, 0x04 every bit is 1 (the add-cow file can be dropped)"));
                f.push(field(b, "optional features", 36, 8, format!("{:#x}", le64(b, 36)), "must be 0"));
                f.push(field(b, "header pages", 44, 4, format!("{} ({} bytes)", le32(b, 44), self.header_size),
                    "HEADER_SIZE = 4096 * pages; the bitmap starts there"));
                f.push(field(b, "backing file format", 48, 16, quoted(&self.backing_fmt), "NUL-padded"));
                f.push(field(b, "image file format", 64, 16, quoted(&self.image_fmt), "NUL-padded; empty means raw"));
            }
            Generation::Acow => {
                f.push(field(b, "magic", 0, 4, String::from("\"ACOW\""), "identifies an add-cow image (V18 to V20)"));
                name_fields(&mut f, &self.backing, "backing file", backing);
                name_fields(&mut f, &self.image, "image file", image);
                f.push(field(b, "cluster_bits", 20, 4, format!("{} ({})", le32(b, 20), size(self.cluster)),
                    "one bitmap bit per 2^cluster_bits bytes; 12 to 21 (V18 allowed 9)"));
                f.push(field(b, "features", 24, 8, format!("{:#x}", le64(b, 24)), "incompatible features: none defined, any bit set means refuse"));
                f.push(field(b, "compat_features", 32, 8,
                    String::from(if self.all_allocated { "ALL_ALLOCATED" } else { "none" }),
                    "bit 0 ALL_ALLOCATED: everything is in the image file; bitmap and backing file unused"));
                f.push(field(b, "header_size", 40, 4, size(self.header_size), "bytes before the bitmap; must be max(cluster size, 4096)"));
                f.push(field(b, "backing_fmt", 44, 16, quoted(&self.backing_fmt), "format of the backing file"));
                f.push(field(b, "image_fmt", 60, 16, quoted(&self.image_fmt), "format of the image file; \"raw\" if omitted"));
            }
        }
        f
    }
}
