//! The three FVD header layouts as tables of fields (packed, little-endian): one decoder
//! and one header view for all of them.
//!
//! - A: the Jan-2011 driver's `FvdHeader` (FORMATS.md 3.1; offsets confirmed from fvd.h).
//! - B: the QEMU wiki specification's `FvdHeader` (FORMATS.md 3.9).
//! - C: seed 002's `FvdHeader` (DECISIONS.md 1 computes the offsets; reconstructed).
use alloc::{format, string::String, vec::Vec};

use crate::formats::fmt::{c_string, field, quoted, size};
use crate::model::Field;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    A,
    B,
    C,
}

/// How a field's bytes read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Magic,
    /// An unsigned count or version.
    Num,
    /// A C boolean (0 = false).
    Bool,
    /// Bytes.
    Size,
    /// A byte offset in this file.
    Offset,
    /// Signed seconds; -1 = disabled.
    Secs,
    Ms,
    Kbps,
    /// 0 to 100.
    Pct,
    /// A NUL-terminated name or command.
    Text,
    /// Space that must stay zero (B's reserved area, A's unused fields).
    Reserved,
    /// C's incompatible_features: any non-zero byte means refuse.
    Incompat,
}

pub struct Spec {
    pub name: &'static str,
    pub off: usize,
    pub size: usize,
    pub ty: Ty,
    pub note: &'static str,
}

const fn f(name: &'static str, off: usize, size: usize, ty: Ty, note: &'static str) -> Spec {
    Spec { name, off, size, ty, note }
}

// Meanings shared by the variants.
const N_VSIZE: &str = "disk size the guest sees, in bytes";
const N_DATA_FILE: &str = "file that holds the disk data instead of this one (its byte 0 is data byte 0); \"\" = data in this file";
const N_DATA_FMT: &str = "format of the data file; \"\" = raw";
const N_BASE: &str = "base (backing) image, read where the bitmap has 0; \"\" = none";
const N_BASE_FMT: &str = "format of the base image; \"\" = probe it";
const N_BASE_SIZE: &str = "bytes of the base image the bitmap covers; guest offsets from here on never read the base";
const N_BITMAP_OFF: &str = "where the bitmap starts: one bit per block of the base image, LSB first, 1 = the block is in this image";
const N_BITMAP_SIZE: &str = "bytes reserved for the bitmap (rounded up to 4 KiB)";
const N_BLOCK: &str = "guest bytes per bitmap bit; a multiple of 512";
const N_COR: &str = "true: blocks read from the base image are copied into this image";
const N_COR_MAX: &str = "copy-on-read bytes allowed in flight at once";
const N_PF_DELAY: &str = "seconds after start before whole-image prefetching of the base begins; -1 = never";
const N_PF_SLOTS: &str = "prefetch writes allowed in flight at once";
const N_PF_BYTES: &str = "bytes copied from the base image per prefetch step";
const N_PF_RMT: &str = "milliseconds over which prefetch read throughput is measured";
const N_PF_WMT: &str = "milliseconds over which prefetch write throughput is measured";
const N_PF_MINR: &str = "prefetching pauses when reads from the base run slower than this";
const N_PF_MINW: &str = "prefetching pauses when writes to this image run slower than this";
const N_PF_MAXR: &str = "prefetch reads are capped at this rate";
const N_PF_MAXW: &str = "prefetch writes are capped at this rate";
const N_PF_THROTTLE: &str = "when throughput is low, prefetching pauses for a random time up to this long";
const N_TABLE_OFF: &str = "where the chunk table starts: one LE u32 per chunk, 0xFFFFFFFF = empty (reads zeros), bit 31 = dirty";
const N_CHUNK: &str = "guest bytes per table entry (chunk); chunk id i is stored at data start + i * chunk_size";
const N_GROW: &str = "bytes the data storage grows by when it is full";
const N_ADD_CMD: &str = "command run to add storage when it runs out";
const N_JOURNAL_OFF: &str = "where the journal starts: 512-byte sectors of bitmap and table update records";
const N_JOURNAL_SIZE: &str = "bytes of journal; 0 = no journal";
const N_CLEAN: &str = "true: closed cleanly. false: the journal may hold updates the bitmap and table lack (replayed in memory here)";
const N_EPOCH: &str = "table update records with an epoch below this are stale: recovery ignores them";
const N_ZERO_INIT: &str = "true: the data storage must read zeros where it was never written";
const N_FULLY: &str = "true once the whole base image has been copied in: the base image is no longer read";

/// Variant A (FORMATS.md 3.1): sizeof 4336.
pub const A: &[Spec] = &[
    f("magic", 0, 4, Ty::Magic, "A9 F5 43 51 (LE 0x5143F5A9): FVD variant A, the Jan-2011 driver"),
    f("version", 4, 4, Ty::Num, "format version; only 1 exists"),
    f("all_data_in_fvd_img", 8, 4, Ty::Bool, "true once prefetching finished (or there is no base): the base image and the bitmap are no longer read"),
    f("virtual_disk_size", 12, 8, Ty::Size, N_VSIZE),
    f("metadata_size", 20, 8, Ty::Size, "bytes of metadata before the data: where guest data starts in this file (not used with a data file)"),
    f("base_img", 28, 1024, Ty::Text, N_BASE),
    f("base_img_fmt", 1052, 16, Ty::Text, N_BASE_FMT),
    f("base_img_size", 1068, 8, Ty::Size, N_BASE_SIZE),
    f("bitmap_offset", 1076, 8, Ty::Offset, N_BITMAP_OFF),
    f("bitmap_size", 1084, 8, Ty::Size, N_BITMAP_SIZE),
    f("block_size", 1092, 4, Ty::Size, N_BLOCK),
    f("copy_on_read", 1096, 4, Ty::Bool, N_COR),
    f("max_outstanding_copy_on_read_data", 1100, 8, Ty::Size, N_COR_MAX),
    f("data_file", 1108, 1024, Ty::Text, N_DATA_FILE),
    f("data_file_fmt", 2132, 16, Ty::Text, N_DATA_FMT),
    f("prefetch_start_delay", 2148, 4, Ty::Secs, N_PF_DELAY),
    f("prefetch_profile_offset", 2152, 8, Ty::Offset, "where a prefetch profile would be stored (never implemented)"),
    f("prefetch_profile_entries", 2160, 8, Ty::Num, "entries in the prefetch profile (never implemented; 0)"),
    f("num_prefetch_slots", 2168, 4, Ty::Num, N_PF_SLOTS),
    f("bytes_per_prefetch", 2172, 4, Ty::Size, N_PF_BYTES),
    f("prefetch_read_throughput_measure_time", 2176, 4, Ty::Ms, N_PF_RMT),
    f("prefetch_write_throughput_measure_time", 2180, 4, Ty::Ms, N_PF_WMT),
    f("prefetch_perf_calc_alpha", 2184, 4, Ty::Pct, "weight (0 to 100) of the newest sample in the throughput moving average"),
    f("prefetch_min_read_throughput", 2188, 4, Ty::Kbps, N_PF_MINR),
    f("prefetch_min_write_throughput", 2192, 4, Ty::Kbps, N_PF_MINW),
    f("prefetch_max_read_throughput", 2196, 4, Ty::Kbps, N_PF_MAXR),
    f("prefetch_max_write_throughput", 2200, 4, Ty::Kbps, N_PF_MAXW),
    f("prefetch_throttle_time", 2204, 4, Ty::Ms, N_PF_THROTTLE),
    f("compact_image", 2208, 4, Ty::Bool, "true: a chunk table maps the disk (compact image); false: guest offset X is stored at data start + X"),
    f("table_offset", 2212, 8, Ty::Offset, N_TABLE_OFF),
    f("chunk_size", 2220, 8, Ty::Size, N_CHUNK),
    f("storage_grow_unit", 2228, 8, Ty::Size, N_GROW),
    f("add_storage_cmd", 2236, 2048, Ty::Text, N_ADD_CMD),
    f("journal_offset", 4284, 8, Ty::Offset, N_JOURNAL_OFF),
    f("journal_size", 4292, 8, Ty::Size, N_JOURNAL_SIZE),
    f("clean_shutdown", 4300, 4, Ty::Bool, N_CLEAN),
    f("need_zero_init", 4304, 4, Ty::Bool, N_ZERO_INIT),
    f("generate_prefetch_profile", 4308, 4, Ty::Bool, "dump a prefetch profile at shutdown (never implemented)"),
    f("unit_of_PrefetchProfileEntry_len", 4312, 4, Ty::Size, "unit of a profile entry's length (never implemented)"),
    f("profile_directed_prefetch_start_delay", 4316, 4, Ty::Secs, "seconds before profile-directed prefetching starts; -1 = never (never implemented)"),
    f("write_updates_base_img", 4320, 16, Ty::Text, "\"no\", \"writethrough\", \"writeback\" or \"writenocache\" (never implemented)"),
];

/// Variant B (FORMATS.md 3.9, the wiki's struct): sizeof 7412 packed.
pub const B: &[Spec] = &[
    f("magic", 0, 4, Ty::Magic, "\"FVD\\0\": an FVD image; a small version next means variant B (the wiki specification)"),
    f("version", 4, 4, Ty::Num, "format version; only 1 exists"),
    f("virtual_disk_size", 8, 8, Ty::Size, N_VSIZE),
    f("data_offset", 16, 8, Ty::Offset, "where data (chunk 0, or guest byte 0) starts in this file"),
    f("data_file", 24, 1024, Ty::Text, N_DATA_FILE),
    f("data_file_fmt", 1048, 16, Ty::Text, N_DATA_FMT),
    f("base_img", 1064, 1024, Ty::Text, N_BASE),
    f("base_img_fmt", 2088, 16, Ty::Text, N_BASE_FMT),
    f("base_img_size", 2104, 8, Ty::Size, N_BASE_SIZE),
    f("bitmap_offset", 2112, 8, Ty::Offset, N_BITMAP_OFF),
    f("bitmap_size", 2120, 8, Ty::Size, N_BITMAP_SIZE),
    f("block_size", 2128, 8, Ty::Size, N_BLOCK),
    f("table_offset", 2136, 8, Ty::Offset, N_TABLE_OFF),
    f("table_size", 2144, 8, Ty::Size, "bytes of the chunk table; 0 = no table (guest offset X is stored at data_offset + X)"),
    f("chunk_size", 2152, 8, Ty::Size, N_CHUNK),
    f("storage_grow_unit", 2160, 8, Ty::Size, N_GROW),
    f("add_storage_cmd", 2168, 1024, Ty::Text, N_ADD_CMD),
    f("journal_offset", 3192, 8, Ty::Offset, N_JOURNAL_OFF),
    f("journal_size", 3200, 8, Ty::Size, N_JOURNAL_SIZE),
    f("stable_journal_epoch", 3208, 8, Ty::Num, N_EPOCH),
    f("clean_shutdown", 3216, 4, Ty::Bool, N_CLEAN),
    f("copy_on_read", 3220, 4, Ty::Bool, N_COR),
    f("max_outstanding_copy_on_read_data", 3224, 8, Ty::Size, N_COR_MAX),
    f("prefetch_start_delay", 3232, 8, Ty::Secs, N_PF_DELAY),
    f("base_img_fully_prefetched", 3240, 4, Ty::Bool, N_FULLY),
    f("num_prefetch_slots", 3244, 4, Ty::Num, N_PF_SLOTS),
    f("bytes_per_prefetch", 3248, 8, Ty::Size, N_PF_BYTES),
    f("prefetch_min_read_throughput", 3256, 8, Ty::Kbps, N_PF_MINR),
    f("prefetch_max_read_throughput", 3264, 8, Ty::Kbps, N_PF_MAXR),
    f("prefetch_min_write_throughput", 3272, 8, Ty::Kbps, N_PF_MINW),
    f("prefetch_max_write_throughput", 3280, 8, Ty::Kbps, N_PF_MAXW),
    f("prefetch_throttle_time", 3288, 8, Ty::Ms, N_PF_THROTTLE),
    f("prefetch_read_throughput_measure_time", 3296, 8, Ty::Ms, N_PF_RMT),
    f("prefetch_write_throughput_measure_time", 3304, 8, Ty::Ms, N_PF_WMT),
    f("need_zero_init", 3312, 4, Ty::Bool, N_ZERO_INIT),
    f("reserved", 3316, 4096, Ty::Reserved, "space for future extensions; zero"),
];

/// Variant C (DECISIONS.md 1, seed 002's struct): sizeof 7440.
pub const C: &[Spec] = &[
    f("magic", 0, 4, Ty::Magic, "\"FVD\\0\": an FVD image; a page-sized header_size next means variant C (seed 002)"),
    f("header_size", 4, 4, Ty::Size, "bytes of header before the other regions: a multiple of 4096, at least 7440 (sizeof FvdHeader)"),
    f("create_version", 8, 4, Ty::Num, "version of the FVD software that created the image"),
    f("last_open_version", 12, 4, Ty::Num, "version of the FVD software that opened the image last; newer fields may be stale if it is older"),
    f("virtual_disk_size", 16, 8, Ty::Size, N_VSIZE),
    f("data_offset", 24, 8, Ty::Offset, "where data (chunk 0, or guest byte 0) starts in this file"),
    f("data_file", 32, 1024, Ty::Text, N_DATA_FILE),
    f("data_file_fmt", 1056, 16, Ty::Text, N_DATA_FMT),
    f("base_img", 1072, 1024, Ty::Text, N_BASE),
    f("base_img_fmt", 2096, 16, Ty::Text, N_BASE_FMT),
    f("base_img_size", 2112, 8, Ty::Size, N_BASE_SIZE),
    f("bitmap_offset", 2120, 8, Ty::Offset, N_BITMAP_OFF),
    f("bitmap_size", 2128, 8, Ty::Size, N_BITMAP_SIZE),
    f("block_size", 2136, 8, Ty::Size, N_BLOCK),
    f("journal_offset", 2144, 8, Ty::Offset, N_JOURNAL_OFF),
    f("journal_size", 2152, 8, Ty::Size, N_JOURNAL_SIZE),
    f("clean_shutdown", 2160, 4, Ty::Bool, N_CLEAN),
    f("stable_journal_epoch", 2164, 8, Ty::Num, N_EPOCH),
    f("journal_buf_size", 2172, 8, Ty::Size, "bytes of the in-memory journal buffer"),
    f("journal_clean_buf_period", 2180, 8, Ty::Ms, "milliseconds between flushes of the journal buffer"),
    f("table_offset", 2188, 8, Ty::Offset, N_TABLE_OFF),
    f("table_size", 2196, 8, Ty::Size, "bytes of the chunk table; 0 = no table (guest offset X is stored at data_offset + X)"),
    f("chunk_size", 2204, 8, Ty::Size, N_CHUNK),
    f("storage_grow_unit", 2212, 8, Ty::Size, N_GROW),
    f("add_storage_cmd", 2220, 1024, Ty::Text, N_ADD_CMD),
    f("chunks_relocated", 3244, 4, Ty::Bool, "true: chunks were moved to grow the table (journal epochs matter; zero-init cannot be assumed)"),
    f("copy_on_read", 3248, 4, Ty::Bool, N_COR),
    f("max_outstanding_copy_on_read_data", 3252, 8, Ty::Size, N_COR_MAX),
    f("prefetch_start_delay", 3260, 8, Ty::Secs, N_PF_DELAY),
    f("base_img_fully_prefetched", 3268, 4, Ty::Bool, N_FULLY),
    f("num_prefetch_slots", 3272, 4, Ty::Num, N_PF_SLOTS),
    f("bytes_per_prefetch", 3276, 8, Ty::Size, N_PF_BYTES),
    f("prefetch_read_throughput_measure_time", 3284, 8, Ty::Ms, N_PF_RMT),
    f("prefetch_write_throughput_measure_time", 3292, 8, Ty::Ms, N_PF_WMT),
    f("prefetch_min_read_throughput", 3300, 8, Ty::Kbps, N_PF_MINR),
    f("prefetch_min_write_throughput", 3308, 8, Ty::Kbps, N_PF_MINW),
    f("prefetch_max_read_throughput", 3316, 8, Ty::Kbps, N_PF_MAXR),
    f("prefetch_max_write_throughput", 3324, 8, Ty::Kbps, N_PF_MAXW),
    f("prefetch_throttle_time", 3332, 8, Ty::Ms, N_PF_THROTTLE),
    f("need_zero_init", 3340, 4, Ty::Bool, N_ZERO_INIT),
    f("incompatible_features", 3344, 4096, Ty::Incompat, "one bit per incompatible feature; any non-zero byte means an FVD reader must refuse the image"),
];

impl Variant {
    pub fn spec(self) -> &'static [Spec] {
        match self {
            Variant::A => A,
            Variant::B => B,
            Variant::C => C,
        }
    }

    /// sizeof(FvdHeader): the bytes the header struct occupies.
    pub fn struct_size(self) -> usize {
        let last = self.spec().last().expect("non-empty table");
        last.off + last.size
    }

    pub fn letter(self) -> &'static str {
        match self {
            Variant::A => "A",
            Variant::B => "B",
            Variant::C => "C",
        }
    }
}

/// The header bytes (exactly `struct_size`) and the table that reads them.
pub struct Header {
    pub variant: Variant,
    pub bytes: Vec<u8>,
}

fn le(b: &[u8]) -> u64 {
    b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64)
}

impl Header {
    pub fn spec(&self, name: &str) -> Option<&'static Spec> {
        self.variant.spec().iter().find(|s| s.name == name)
    }

    /// Byte offset of a field (0 when this variant has none of that name).
    pub fn off(&self, name: &str) -> u64 {
        self.spec(name).map_or(0, |s| s.off as u64)
    }

    /// A numeric field as unsigned (4- or 8-byte LE); None when this variant lacks it.
    pub fn num(&self, name: &str) -> Option<u64> {
        let s = self.spec(name)?;
        self.bytes.get(s.off..s.off + s.size).filter(|_| s.size <= 8).map(le)
    }

    /// A numeric field, 0 when absent.
    pub fn get(&self, name: &str) -> u64 {
        self.num(name).unwrap_or(0)
    }

    /// A text field: its text up to the first NUL, and whether a NUL was there.
    pub fn text(&self, name: &str) -> (String, bool) {
        match self.spec(name).and_then(|s| self.bytes.get(s.off..s.off + s.size)) {
            Some(b) => c_string(b),
            None => (String::new(), true),
        }
    }

    fn signed(&self, s: &Spec) -> i64 {
        let v = le(&self.bytes[s.off..s.off + s.size]);
        if s.size == 4 {
            v as u32 as i32 as i64
        } else {
            v as i64
        }
    }

    fn value(&self, s: &Spec) -> String {
        let raw = &self.bytes[s.off..s.off + s.size];
        match s.ty {
            Ty::Magic => match self.variant {
                Variant::A => String::from("a9 f5 43 51 (0x5143f5a9)"),
                _ => String::from("\"FVD\\0\" (0x00445646)"),
            },
            Ty::Num => format!("{}", le(raw)),
            Ty::Bool => match le(raw) {
                0 => String::from("false (0)"),
                1 => String::from("true (1)"),
                v => format!("true ({})", v),
            },
            Ty::Size => size(le(raw)),
            Ty::Offset => format!("{} ({:#x})", le(raw), le(raw)),
            Ty::Secs => match self.signed(s) {
                -1 => String::from("-1 (disabled)"),
                v => format!("{} s", v),
            },
            Ty::Ms => format!("{} ms", le(raw)),
            Ty::Kbps => format!("{} KB/s", le(raw)),
            Ty::Pct => format!("{} %", le(raw)),
            Ty::Text => {
                let (t, terminated) = c_string(raw);
                if terminated {
                    quoted(&t)
                } else {
                    format!("{} (no NUL within {} bytes: cut there)", quoted(&t), s.size)
                }
            }
            Ty::Reserved | Ty::Incompat => match raw.iter().position(|&b| b != 0) {
                None => String::from("all zero"),
                Some(i) => format!(
                    "{} non-zero bytes, the first at byte {}",
                    raw.iter().filter(|&&b| b != 0).count(),
                    s.off + i
                ),
            },
        }
    }

    /// Every field of the header, in file order.
    pub fn fields(&self) -> Vec<Field> {
        self.variant.spec().iter().map(|s| field(&self.bytes, s.name, s.off, s.size, self.value(s), s.note)).collect()
    }
}
