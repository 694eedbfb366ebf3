//! The 64-byte QED header (QEMU docs/interop/qed_spec.rst; FORMATS.md 5.2), all LE.
use alloc::{format, string::String, vec::Vec};
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::formats::fmt::{field, size};
use crate::model::Field;

pub const MAGIC: [u8; 4] = *b"QED\0";
pub const F_BACKING_FILE: u64 = 0x01;
pub const F_NEED_CHECK: u64 = 0x02;
pub const F_BACKING_FORMAT_NO_PROBE: u64 = 0x04;
pub const KNOWN_FEATURES: u64 = F_BACKING_FILE | F_NEED_CHECK | F_BACKING_FORMAT_NO_PROBE;

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone)]
#[repr(C)]
pub struct Header {
    pub magic: [u8; 4],
    pub cluster_size: U32,
    pub table_size: U32,
    pub header_size: U32,
    pub features: U64,
    pub compat_features: U64,
    pub autoclear_features: U64,
    pub l1_table_offset: U64,
    pub image_size: U64,
    pub backing_filename_offset: U32,
    pub backing_filename_size: U32,
}
const _: () = assert!(core::mem::size_of::<Header>() == 64);

fn feature_names(v: u64) -> String {
    let names: Vec<&str> = [
        (F_BACKING_FILE, "BACKING_FILE"),
        (F_NEED_CHECK, "NEED_CHECK"),
        (F_BACKING_FORMAT_NO_PROBE, "BACKING_FORMAT_NO_PROBE"),
    ]
    .iter()
    .filter(|(b, _)| v & b != 0)
    .map(|(_, n)| *n)
    .collect();
    let unknown = v & !KNOWN_FEATURES;
    let mut s = if names.is_empty() { String::from("none") } else { names.join(" | ") };
    if unknown != 0 {
        s = format!("{} | unknown {:#x}", s, unknown);
    }
    s
}

impl Header {
    pub fn fields(&self) -> Vec<Field> {
        let b = self.as_bytes();
        let f = |name: &str, off: usize, len: usize, value: String, note: &str| field(b, name, off, len, value, note);
        let cs = self.cluster_size.get() as u64;
        alloc::vec![
            f("magic", 0, 4, String::from("\"QED\\0\""), "identifies a QED image"),
            f("cluster_size", 4, 4, size(cs), "unit of allocation; power of two, 4 KiB to 64 MiB"),
            f("table_size", 8, 4, format!("{} cluster{}", self.table_size.get(), if self.table_size.get() == 1 { "" } else { "s" }),
              "clusters per L1 or L2 table; power of two, 1 to 16"),
            f("header_size", 12, 4, format!("{} cluster{} ({} bytes)", self.header_size.get(), if self.header_size.get() == 1 { "" } else { "s" },
              cs.saturating_mul(self.header_size.get() as u64)),
              "clusters taken by the header and the backing file name"),
            f("features", 16, 8, feature_names(self.features.get()),
              "incompatible features: a reader must understand every bit set"),
            f("compat_features", 24, 8, format!("{:#x}", self.compat_features.get()),
              "compatible features: none defined, safe to ignore"),
            f("autoclear_features", 32, 8, format!("{:#x}", self.autoclear_features.get()),
              "cleared by writers that do not know them: none defined"),
            f("l1_table_offset", 40, 8, format!("{}", self.l1_table_offset.get()),
              "byte offset of the L1 table (cluster-aligned)"),
            f("image_size", 48, 8, size(self.image_size.get()), "size of the disk the guest sees"),
            f("backing_filename_offset", 56, 4, format!("{}", self.backing_filename_offset.get()),
              "byte offset of the backing file name (used only with BACKING_FILE)"),
            f("backing_filename_size", 60, 4, format!("{} bytes", self.backing_filename_size.get()),
              "length of the backing file name; not NUL-terminated"),
        ]
    }
}
