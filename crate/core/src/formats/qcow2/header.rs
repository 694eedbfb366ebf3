//! The qcow2 header and its extensions (QEMU docs/interop/qcow2.rst), all big-endian.
//! Validated as QEMU validates them when it opens an image, so what QEMU refuses is
//! refused here with the byte at fault, and what it reads is read.
use alloc::{format, string::String, vec::Vec};

use crate::error::{Error, Result};
use crate::formats::bytes::{be16, be32, be64};
use crate::formats::fmt::{field, quoted, size};
use crate::limits;
use crate::model::{Field, Hex};

pub const MAGIC: [u8; 4] = *b"QFI\xfb";

pub const INCOMPAT_DIRTY: u64 = 1 << 0;
pub const INCOMPAT_CORRUPT: u64 = 1 << 1;
pub const INCOMPAT_DATA_FILE: u64 = 1 << 2;
pub const INCOMPAT_COMPRESSION: u64 = 1 << 3;
pub const INCOMPAT_EXTL2: u64 = 1 << 4;
pub const INCOMPAT_KNOWN: u64 = 0x1f;
pub const COMPAT_LAZY_REFCOUNTS: u64 = 1 << 0;
pub const AUTOCLEAR_BITMAPS: u64 = 1 << 0;
pub const AUTOCLEAR_DATA_FILE_RAW: u64 = 1 << 1;

pub const EXT_END: u32 = 0;
pub const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
pub const EXT_FEATURE_TABLE: u32 = 0x6803_f857;
pub const EXT_BITMAPS: u32 = 0x2385_2875;
pub const EXT_CRYPTO: u32 = 0x0537_be77;
pub const EXT_DATA_FILE: u32 = 0x4441_5441;

/// QEMU's limits (block/qcow2.h): L1 table 32 MiB, refcount table 8 MiB, snapshots.
pub const MAX_L1_BYTES: u64 = 32 << 20;
pub const MAX_REFTABLE_BYTES: u64 = 8 << 20;
pub const MAX_SNAPSHOTS: u64 = 65536;

pub const CRYPT_NONE: u32 = 0;
pub const CRYPT_AES: u32 = 1;
pub const CRYPT_LUKS: u32 = 2;

fn invalid(offset: u64, message: String) -> Error {
    Error::Invalid { format: "qcow2", offset, message }
}

/// One header extension as stored: where its data starts and what it decoded to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ext {
    /// Byte offset of the extension's type field.
    pub at: u64,
    pub kind: u32,
    pub len: u32,
    pub data: Vec<u8>,
}

impl Ext {
    pub fn data_at(&self) -> u64 {
        self.at + 8
    }
}

/// A feature-name table entry: (type 0/1/2, bit, name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureName {
    pub at: u64,
    pub kind: u8,
    pub bit: u8,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitmapsExt {
    pub at: u64,
    pub nb_bitmaps: u32,
    pub reserved: u32,
    pub dir_size: u64,
    pub dir_offset: u64,
}

/// The decoded header, plus the bytes of the first cluster it was read from.
#[derive(Debug, Clone)]
pub struct Header {
    /// The first cluster (or less, if the file is shorter), zeros past the file's end.
    pub head: Vec<u8>,
    pub version: u32,
    pub backing_file_offset: u64,
    pub backing_file_size: u32,
    pub cluster_bits: u32,
    pub size: u64,
    pub crypt_method: u32,
    pub l1_size: u32,
    pub l1_table_offset: u64,
    pub refcount_table_offset: u64,
    pub refcount_table_clusters: u32,
    pub nb_snapshots: u32,
    pub snapshots_offset: u64,
    pub incompatible: u64,
    pub compatible: u64,
    pub autoclear: u64,
    pub refcount_order: u32,
    pub header_length: u32,
    /// 0 deflate, 1 zstd.
    pub compression_type: u8,
    pub exts: Vec<Ext>,
    /// Where the extension area ended (the end marker's offset, or the area's end).
    pub ext_end: u64,
    pub backing_format: Option<String>,
    pub data_file: Option<(String, u64)>,
    pub feature_names: Vec<FeatureName>,
    pub bitmaps: Option<BitmapsExt>,
    /// (offset, length) of the full-disk-encryption header, and where the extension is.
    pub crypto: Option<(u64, u64, u64)>,
    /// Problems that do not stop reading, for check: (offset, message).
    pub problems: Vec<(u64, String)>,
}

impl Header {
    pub fn cluster(&self) -> u64 {
        1u64 << self.cluster_bits
    }
    pub fn extended_l2(&self) -> bool {
        self.incompatible & INCOMPAT_EXTL2 != 0
    }

    /// The name of feature `bit` of type `kind` from the image's own table, if it has one.
    pub fn feature_name(&self, kind: u8, bit: u32) -> Option<&str> {
        self.feature_names.iter().find(|f| f.kind == kind && f.bit as u32 == bit).map(|f| f.name.as_str())
    }

    /// Parse and validate. `head` holds the file's first cluster-or-so: at least 72 bytes
    /// (the caller reads `min(file, 2 MiB)` and then this trims it to one cluster).
    pub fn parse(mut head: Vec<u8>, file_size: u64) -> Result<Header> {
        if head.len() < 72 {
            return Err(Error::PastEnd { what: "qcow2 header", offset: 0, len: 72, file_size });
        }
        if head[0..4] != MAGIC {
            return Err(invalid(0, String::from("bad magic: not a qcow2 image")));
        }
        let version = be32(&head, 4);
        if version != 2 && version != 3 {
            return Err(Error::Unsupported { format: "qcow2", offset: 4, message: format!("version {} (diskscope reads versions 2 and 3, as QEMU does)", version) });
        }
        if version == 3 && head.len() < 104 {
            // Zeros read past the end would be blamed on header_length instead.
            return Err(Error::PastEnd { what: "qcow2 version 3 header", offset: 0, len: 104, file_size });
        }
        let cluster_bits = be32(&head, 20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(invalid(20, format!("cluster_bits {} is outside 9 to 21 (512 bytes to 2 MiB), the sizes QEMU opens", cluster_bits)));
        }
        let cluster = 1u64 << cluster_bits;
        head.truncate(cluster as usize);
        head.resize(cluster as usize, 0);
        let mut h = Header {
            version,
            backing_file_offset: be64(&head, 8),
            backing_file_size: be32(&head, 16),
            cluster_bits,
            size: be64(&head, 24),
            crypt_method: be32(&head, 32),
            l1_size: be32(&head, 36),
            l1_table_offset: be64(&head, 40),
            refcount_table_offset: be64(&head, 48),
            refcount_table_clusters: be32(&head, 56),
            nb_snapshots: be32(&head, 60),
            snapshots_offset: be64(&head, 64),
            incompatible: 0,
            compatible: 0,
            autoclear: 0,
            refcount_order: 4,
            header_length: 72,
            compression_type: 0,
            exts: Vec::new(),
            ext_end: 72,
            backing_format: None,
            data_file: None,
            feature_names: Vec::new(),
            bitmaps: None,
            crypto: None,
            problems: Vec::new(),
            head,
        };
        if version == 3 {
            h.incompatible = be64(&h.head, 72);
            h.compatible = be64(&h.head, 80);
            h.autoclear = be64(&h.head, 88);
            h.refcount_order = be32(&h.head, 96);
            h.header_length = be32(&h.head, 100);
            if h.header_length < 104 {
                return Err(invalid(100, format!("header_length {} is shorter than the 104 bytes of a version 3 header", h.header_length)));
            }
            if h.header_length as u64 > cluster {
                return Err(invalid(100, format!("header_length {} is longer than the {}-byte cluster that holds it", h.header_length, cluster)));
            }
            if h.header_length % 8 != 0 {
                h.problems.push((100, format!("header_length {} is not a multiple of 8", h.header_length)));
            }
            if h.header_length > 104 {
                h.compression_type = h.head[104];
            }
        }
        // Extensions come first so an unknown feature bit can be named from the image's table.
        h.read_extensions()?;
        let unknown = h.incompatible & !INCOMPAT_KNOWN;
        if unknown != 0 {
            let names: Vec<String> = (0..64)
                .filter(|b| unknown & (1u64 << b) != 0)
                .map(|b| match h.feature_name(0, b) {
                    Some(n) => format!("bit {} (\"{}\")", b, n),
                    None => format!("bit {}", b),
                })
                .collect();
            return Err(Error::Unsupported {
                format: "qcow2",
                offset: 72,
                message: format!("unknown incompatible feature {}; QEMU refuses to open this image too", names.join(", ")),
            });
        }
        if h.refcount_order > 6 {
            return Err(invalid(96, format!("refcount_order {} is above 6 (64-bit refcounts)", h.refcount_order)));
        }
        if h.extended_l2() && cluster_bits < 14 {
            return Err(invalid(20, format!("extended L2 entries need clusters of 16 KiB or more (512-byte subclusters); this image has {}", size(cluster))));
        }
        match (h.compression_type, h.incompatible & INCOMPAT_COMPRESSION != 0) {
            (0, false) | (1, true) => {}
            (0, true) => return Err(invalid(72, String::from("the compression type bit is set but compression_type is 0 (deflate)"))),
            (1, false) => return Err(invalid(104, String::from("compression_type is 1 (zstd) but the compression type bit is not set"))),
            (t, _) => return Err(Error::Unsupported { format: "qcow2", offset: 104, message: format!("unknown compression type {}", t) }),
        }
        if h.crypt_method > CRYPT_LUKS {
            return Err(Error::Unsupported { format: "qcow2", offset: 32, message: format!("unknown encryption method {}", h.crypt_method) });
        }
        if h.crypt_method == CRYPT_LUKS && h.crypto.is_none() {
            return Err(invalid(32, String::from("LUKS encryption without the full disk encryption header extension")));
        }
        if h.backing_file_offset > cluster {
            return Err(invalid(8, format!("backing_file_offset {} lies outside the first cluster", h.backing_file_offset)));
        }
        if h.backing_file_offset != 0 && h.backing_file_size > 1023 {
            return Err(invalid(16, format!("backing_file_size {} is longer than the 1023 bytes allowed", h.backing_file_size)));
        }
        if h.size > limits::MAX_VIRTUAL_SIZE {
            return Err(Error::Limit { what: "qcow2 virtual size", needed: h.size, limit: limits::MAX_VIRTUAL_SIZE });
        }
        let l2_entries = cluster / if h.extended_l2() { 16 } else { 8 };
        let needed = h.size.div_ceil(l2_entries * cluster);
        if h.l1_size as u64 * 8 > MAX_L1_BYTES {
            return Err(invalid(36, format!("l1_size {} entries is larger than QEMU's 32 MiB L1 limit", h.l1_size)));
        }
        if (h.l1_size as u64) < needed {
            return Err(invalid(36, format!("l1_size {} is too small: the {}-byte disk needs {} L1 entries", h.l1_size, h.size, needed)));
        }
        if h.l1_table_offset % cluster != 0 || h.l1_table_offset.checked_add(h.l1_size as u64 * 8).is_none() {
            return Err(invalid(40, format!("l1_table_offset {:#x} is not cluster-aligned", h.l1_table_offset)));
        }
        if h.refcount_table_offset % cluster != 0 {
            return Err(invalid(48, format!("refcount_table_offset {:#x} is not cluster-aligned", h.refcount_table_offset)));
        }
        if h.refcount_table_clusters as u64 * cluster > MAX_REFTABLE_BYTES {
            return Err(invalid(56, format!("the refcount table ({} clusters) is larger than QEMU's 8 MiB limit", h.refcount_table_clusters)));
        }
        if h.nb_snapshots as u64 > MAX_SNAPSHOTS {
            return Err(invalid(60, format!("{} snapshots is more than QEMU's 65536", h.nb_snapshots)));
        }
        if h.nb_snapshots > 0 && h.snapshots_offset % cluster != 0 {
            return Err(invalid(64, format!("snapshots_offset {:#x} is not cluster-aligned", h.snapshots_offset)));
        }
        if h.autoclear & AUTOCLEAR_DATA_FILE_RAW != 0 && h.incompatible & INCOMPAT_DATA_FILE == 0 {
            h.problems.push((88, String::from("the raw external data bit is set without the external data file bit")));
        }
        if h.autoclear & AUTOCLEAR_BITMAPS != 0 && h.bitmaps.is_none() {
            h.problems.push((88, String::from("the bitmaps autoclear bit is set but there is no bitmaps extension")));
        }
        Ok(h)
    }

    /// Walk the extension area: from the header's end to the backing file name (or the end
    /// of the first cluster), as QEMU's qcow2_read_extensions bounds it.
    fn read_extensions(&mut self) -> Result<()> {
        let cluster = self.cluster();
        let start = self.header_length as u64;
        let end = if self.backing_file_offset != 0 { self.backing_file_offset.min(cluster) } else { cluster };
        let mut at = start;
        while at < end {
            if end - at < 8 {
                return Err(invalid(at, format!("a header extension at byte {} has no room for its type and length before byte {}", at, end)));
            }
            let kind = be32(&self.head, at as usize);
            let len = be32(&self.head, at as usize + 4);
            if kind == EXT_END {
                self.exts.push(Ext { at, kind, len, data: Vec::new() });
                self.ext_end = at;
                return Ok(());
            }
            let data_at = at + 8;
            if len as u64 > end - data_at {
                return Err(invalid(at + 4, format!("header extension {:#010x} at byte {} is {} bytes long and runs past byte {}", kind, at, len, end)));
            }
            let data = self.head[data_at as usize..(data_at + len as u64) as usize].to_vec();
            self.decode_ext(at, kind, &data)?;
            self.exts.push(Ext { at, kind, len, data });
            at = data_at + (len as u64).next_multiple_of(8);
        }
        self.ext_end = end;
        Ok(())
    }

    fn decode_ext(&mut self, at: u64, kind: u32, data: &[u8]) -> Result<()> {
        let data_at = at + 8;
        match kind {
            EXT_BACKING_FORMAT => {
                if data.len() >= 16 {
                    return Err(invalid(at + 4, format!("the backing format name is {} bytes; QEMU allows at most 15", data.len())));
                }
                self.backing_format = Some(String::from_utf8_lossy(data).into_owned());
            }
            EXT_FEATURE_TABLE => {
                for (i, e) in data.chunks_exact(48).enumerate() {
                    let name = crate::formats::fmt::c_string(&e[2..48]).0;
                    self.feature_names.push(FeatureName { at: data_at + i as u64 * 48, kind: e[0], bit: e[1], name });
                }
                if data.len() % 48 != 0 {
                    self.problems.push((at + 4, format!("the feature name table is {} bytes, not a multiple of 48", data.len())));
                }
            }
            EXT_BITMAPS => {
                if data.len() != 24 {
                    return Err(invalid(at + 4, format!("the bitmaps extension is {} bytes; it must be 24", data.len())));
                }
                let b = BitmapsExt { at: data_at, nb_bitmaps: be32(data, 0), reserved: be32(data, 4), dir_size: be64(data, 8), dir_offset: be64(data, 16) };
                if self.autoclear & AUTOCLEAR_BITMAPS == 0 {
                    self.problems.push((88, String::from(
                        "a bitmaps extension is present but the bitmaps autoclear bit is clear: a program without bitmap support wrote the image, so QEMU considers every bitmap inconsistent")));
                } else if b.nb_bitmaps == 0 || b.nb_bitmaps > 65535 || b.reserved != 0 || b.dir_offset % self.cluster() != 0 || b.dir_size > 64 << 20 {
                    self.problems.push((data_at, String::from(
                        "the bitmaps extension is malformed (no bitmaps, more than 65535, reserved bits, an unaligned directory or one over 64 MiB); QEMU refuses to open it")));
                }
                self.bitmaps = Some(b);
            }
            EXT_CRYPTO => {
                if self.crypt_method != CRYPT_LUKS {
                    return Err(invalid(at, String::from("a full disk encryption header extension in an image that is not LUKS-encrypted")));
                }
                if data.len() != 16 {
                    return Err(invalid(at + 4, format!("the full disk encryption header extension is {} bytes; it must be 16", data.len())));
                }
                self.crypto = Some((be64(data, 0), be64(data, 8), at));
            }
            EXT_DATA_FILE => {
                self.data_file = Some((String::from_utf8_lossy(data).into_owned(), data_at));
            }
            _ => {}
        }
        Ok(())
    }

    /// Every header field and extension, in file order.
    pub fn fields(&self) -> Vec<Field> {
        let b = &self.head;
        let f = |name: &str, off: usize, len: usize, value: String, note: &str| field(b, name, off, len, value, note);
        let cluster = self.cluster();
        let mut v = alloc::vec![
            f("magic", 0, 4, String::from("\"QFI\\xfb\""), "identifies a qcow image"),
            f("version", 4, 4, format!("{}", self.version), if self.version == 2 { "qcow2 version 2 (compat=0.10)" } else { "qcow2 version 3 (compat=1.1)" }),
            f("backing_file_offset", 8, 8, format!("{}", self.backing_file_offset), "where the backing file name is stored; 0: no backing file"),
            f("backing_file_size", 16, 4, format!("{} bytes", self.backing_file_size), "length of the backing file name (not NUL-terminated)"),
            f("cluster_bits", 20, 4, format!("{} ({})", self.cluster_bits, size(cluster)), "cluster size = 1 << cluster_bits; 9 to 21"),
            f("size", 24, 8, size(self.size), "virtual disk size"),
            f("crypt_method", 32, 4, String::from(match self.crypt_method {
                CRYPT_NONE => "0 (none)",
                CRYPT_AES => "1 (AES-CBC, legacy)",
                CRYPT_LUKS => "2 (LUKS)",
                _ => "unknown",
            }), "encryption of guest data; metadata is never encrypted"),
            f("l1_size", 36, 4, format!("{} entries", self.l1_size), "entries in the active L1 table"),
            f("l1_table_offset", 40, 8, format!("{:#x}", self.l1_table_offset), "the active L1 table (cluster-aligned)"),
            f("refcount_table_offset", 48, 8, format!("{:#x}", self.refcount_table_offset), "the refcount table (cluster-aligned)"),
            f("refcount_table_clusters", 56, 4, format!("{}", self.refcount_table_clusters), "clusters the refcount table occupies"),
            f("nb_snapshots", 60, 4, format!("{}", self.nb_snapshots), "internal snapshots in the snapshot table"),
            f("snapshots_offset", 64, 8, format!("{:#x}", self.snapshots_offset), "the snapshot table (cluster-aligned)"),
        ];
        if self.version >= 3 {
            v.push(f("incompatible_features", 72, 8, self.bits_named(0, self.incompatible), "a reader must understand every bit set"));
            v.push(f("compatible_features", 80, 8, self.bits_named(1, self.compatible), "safe to ignore"));
            v.push(f("autoclear_features", 88, 8, self.bits_named(2, self.autoclear), "cleared by writers that do not know them"));
            v.push(f("refcount_order", 96, 4, format!("{} ({}-bit refcounts)", self.refcount_order, 1u64 << self.refcount_order.min(6)), "refcount width = 1 << refcount_order bits"));
            v.push(f("header_length", 100, 4, format!("{} bytes", self.header_length), "length of the header structure; extensions follow it"));
            if self.header_length > 104 {
                v.push(f("compression_type", 104, 1, String::from(match self.compression_type {
                    0 => "0 (deflate, called zlib by QEMU)",
                    1 => "1 (zstd)",
                    _ => "unknown",
                }), "codec of compressed clusters"));
                let pad = self.header_length as usize - 105;
                if pad > 0 {
                    v.push(f("padding", 105, pad, String::from(if b[105..105 + pad].iter().all(|&x| x == 0) { "zeros" } else { "NOT ZERO" }), "header padding; must be zero"));
                }
            }
        }
        for e in &self.exts {
            v.extend(self.ext_fields(e));
        }
        v
    }

    /// Feature bits with their names (the spec's, else the image's own feature name table).
    fn bits_named(&self, kind: u8, v: u64) -> String {
        const SPEC: [&[&str]; 3] = [
            &["dirty", "corrupt", "external data file", "compression type", "extended L2 entries"],
            &["lazy refcounts"],
            &["bitmaps", "raw external data"],
        ];
        if v == 0 {
            return String::from("none");
        }
        let names: Vec<String> = (0..64u32)
            .filter(|b| v & (1u64 << b) != 0)
            .map(|b| match SPEC[kind as usize].get(b as usize) {
                Some(n) => String::from(*n),
                None => match self.feature_name(kind, b) {
                    Some(n) => format!("unknown bit {} (\"{}\")", b, n),
                    None => format!("unknown bit {}", b),
                },
            })
            .collect();
        format!("{:#x}: {}", v, names.join(", "))
    }

    fn ext_fields(&self, e: &Ext) -> Vec<Field> {
        let b = &self.head;
        let at = e.at as usize;
        let d = at + 8;
        let f = |name: &str, off: usize, len: usize, value: String, note: &str| field(b, name, off, len, value, note);
        let (what, note) = match e.kind {
            EXT_END => ("end of extensions", "no more header extensions"),
            EXT_BACKING_FORMAT => ("backing format extension", "the backing file's format"),
            EXT_FEATURE_TABLE => ("feature name table extension", "names of feature bits, for tools that do not know them"),
            EXT_BITMAPS => ("bitmaps extension", "persistent dirty bitmaps"),
            EXT_CRYPTO => ("full disk encryption header extension", "where the LUKS header is"),
            EXT_DATA_FILE => ("external data file name extension", "the file that holds the guest data"),
            _ => ("unknown header extension", "not defined by the spec; QEMU ignores it"),
        };
        let mut v = alloc::vec![
            f(&format!("{}: type", what), at, 4, format!("{:#010x}", e.kind), note),
            f(&format!("{}: length", what), at + 4, 4, format!("{} bytes", e.len), "length of the extension data, padded to 8 bytes"),
        ];
        match e.kind {
            EXT_BACKING_FORMAT => v.push(f("backing format", d, e.data.len(), quoted(&String::from_utf8_lossy(&e.data)), "the format QEMU opens the backing file as (no probing)")),
            EXT_DATA_FILE => v.push(f("external data file name", d, e.data.len(), quoted(&String::from_utf8_lossy(&e.data)), "guest data is stored in this file")),
            EXT_FEATURE_TABLE => {
                for n in self.feature_names.iter().filter(|n| n.at >= d as u64 && n.at < (d + e.data.len()) as u64) {
                    let t = match n.kind {
                        0 => "incompatible",
                        1 => "compatible",
                        2 => "autoclear",
                        _ => "unknown type",
                    };
                    v.push(f(&format!("feature name: {} bit {}", t, n.bit), n.at as usize, 48, quoted(&n.name), "type (1 byte), bit number (1 byte), name (46 bytes)"));
                }
            }
            EXT_BITMAPS => {
                v.push(f("nb_bitmaps", d, 4, format!("{}", be32(b, d)), "bitmaps in the bitmap directory"));
                v.push(f("bitmaps reserved", d + 4, 4, format!("{:#x}", be32(b, d + 4)), "must be zero"));
                v.push(f("bitmap_directory_size", d + 8, 8, format!("{} bytes", be64(b, d + 8)), "size of the bitmap directory"));
                v.push(f("bitmap_directory_offset", d + 16, 8, format!("{:#x}", be64(b, d + 16)), "the bitmap directory (cluster-aligned)"));
            }
            EXT_CRYPTO => {
                v.push(f("encryption header offset", d, 8, format!("{:#x}", be64(b, d)), "where the LUKS header starts (cluster-aligned)"));
                v.push(f("encryption header length", d + 8, 8, format!("{} bytes", be64(b, d + 8)), "bytes the LUKS header and key material occupy"));
            }
            EXT_END => {}
            _ => v.push(f("extension data", d, e.data.len(), format!("{} bytes: {}", e.data.len(), Hex(&e.data[..e.data.len().min(32)])), "shown raw")),
        }
        v
    }
}

/// The fields of a LUKS v1 partition header (`luks` holds its first 592 bytes, read from
/// `base`), as the LUKS on-disk format describes them.
pub fn luks_fields(luks: &[u8], base: u64) -> Vec<Field> {
    let text = |r: core::ops::Range<usize>| quoted(&crate::formats::fmt::c_string(&luks[r]).0);
    let mk = |name: &str, off: usize, len: usize, value: String, note: &str| Field {
        name: String::from(name),
        offset: base + off as u64,
        size: len as u64,
        raw: luks[off..off + len].to_vec(),
        value,
        note: String::from(note),
    };
    if luks.len() < 592 {
        return Vec::new();
    }
    let magic_ok = luks[0..6] == *b"LUKS\xba\xbe";
    let mut v = alloc::vec![
        mk("LUKS magic", 0, 6, String::from(if magic_ok { "\"LUKS\\xba\\xbe\"" } else { "NOT a LUKS header" }), "the encryption header"),
        mk("LUKS version", 6, 2, format!("{}", be16(luks, 6)), "LUKS header version"),
        mk("LUKS cipher name", 8, 32, text(8..40), "cipher"),
        mk("LUKS cipher mode", 40, 32, text(40..72), "cipher mode and IV generator"),
        mk("LUKS hash spec", 72, 32, text(72..104), "hash for key derivation"),
        mk("LUKS payload offset", 104, 4, format!("{} sectors", be32(luks, 104)), "unused inside qcow2: qcow2's tables place the data"),
        mk("LUKS key bytes", 108, 4, format!("{} bytes", be32(luks, 108)), "master key length"),
        mk("LUKS UUID", 168, 40, text(168..208), "identifies the encrypted volume"),
    ];
    for slot in 0..8 {
        let at = 208 + slot * 48;
        let state = match be32(luks, at) {
            0x00AC_71F3 => "active",
            0x0000_DEAD => "inactive",
            _ => "invalid state",
        };
        v.push(mk(&format!("LUKS key slot {}", slot), at, 48, format!("{} (key material at {:#x})", state, be32(luks, at + 40) as u64 * 512),
            "state, iterations, salt, key material offset (sectors from the LUKS header), stripes"));
    }
    v
}
