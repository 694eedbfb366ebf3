//! QED, the QEMU Enhanced Disk: a two-level table (L1 -> L2 -> cluster) over a backing file.
//! Spec: QEMU docs/interop/qed_spec.rst, FORMATS.md section 5; validity rules as QEMU's
//! block/qed.c applies them, so we refuse what QEMU refuses and read what it reads.
use alloc::{boxed::Box, format, string::String, sync::Arc, vec::Vec};
use zerocopy::{FromBytes, IntoBytes};

use crate::formats::tables;
use crate::error::{Error, Result};
use crate::image::{Driver, Image, OpenCtx};
use crate::io::{read_exact_at, table_buf, ReadAt};
use crate::limits;
use crate::model::*;

mod check;
pub mod header;
#[cfg(any(test, feature = "samples"))]
pub(crate) mod sample;
#[cfg(test)]
pub(crate) mod tests;
use header::*;

pub static DRIVER: Driver = Driver { name: "qed", probe, open };

fn probe(head: &[u8], _file: &dyn ReadAt) -> bool {
    head.starts_with(&MAGIC)
}

/// L2 entries read per step: bounds memory whatever `table_size * cluster_size` says.
const L2_WINDOW: u64 = 1 << 20;
/// An L2 entry of 1: the cluster reads as zeros and the backing file is not consulted.
const ZERO_CLUSTER: u64 = 1;

pub(crate) struct Qed {
    file: Arc<dyn ReadAt>,
    name: String,
    header: Header,
    info: ImageInfo,
    cluster: u64,
    /// Entries per table (`table_size * cluster_size / 8`).
    entries: u64,
    /// The L1 entries that cover the disk (not the whole table: the rest is never read).
    l1: Vec<u64>,
    /// File size rounded down to a cluster, as QEMU uses it to validate offsets.
    file_size: u64,
}

fn invalid(offset: u64, message: String) -> Error {
    Error::Invalid { format: "qed", offset, message }
}

fn open(file: Arc<dyn ReadAt>, ctx: &OpenCtx) -> Result<Box<dyn Image>> {
    Ok(Box::new(Qed::open(file, ctx.name)?))
}

impl Qed {
    fn open(file: Arc<dyn ReadAt>, name: &str) -> Result<Qed> {
        let mut header = Header::read_from_bytes(&[0u8; 64]).expect("64 bytes");
        read_exact_at(&*file, 0, header.as_mut_bytes(), "QED header")?;
        if header.magic != MAGIC {
            return Err(invalid(0, String::from("bad magic: not a QED image")));
        }
        let cluster = header.cluster_size.get() as u64;
        if !cluster.is_power_of_two() || !(1 << 12..=1 << 26).contains(&cluster) {
            return Err(invalid(4, format!("cluster_size {} is not a power of two from 4 KiB to 64 MiB", cluster)));
        }
        let table_size = header.table_size.get() as u64;
        if !table_size.is_power_of_two() || table_size > 16 {
            return Err(invalid(8, format!("table_size {} is not a power of two from 1 to 16", table_size)));
        }
        let features = header.features.get();
        if features & !KNOWN_FEATURES != 0 {
            return Err(Error::Unsupported {
                format: "qed",
                offset: 16,
                message: format!("unknown incompatible feature bits {:#x}; QEMU refuses to open this image too", features & !KNOWN_FEATURES),
            });
        }
        let header_bytes = cluster * header.header_size.get() as u64;
        if header_bytes > u32::MAX as u64 {
            return Err(invalid(12, format!("header_size {} clusters is larger than 4 GiB", header.header_size.get())));
        }
        let entries = table_size * cluster / 8;
        let l2_cover = entries * cluster;
        let image_size = header.image_size.get();
        let max_size = (entries as u128 * l2_cover as u128).min(limits::MAX_VIRTUAL_SIZE as u128) as u64;
        if image_size % 512 != 0 || image_size > max_size {
            return Err(invalid(48, format!("image_size {} is not a multiple of 512 or exceeds the largest disk these tables can map ({})", image_size, max_size)));
        }
        let file_size = file.size() / cluster * cluster;
        let mut q = Qed {
            file,
            name: String::from(name),
            header: header.clone(),
            info: ImageInfo {
                format: "qed",
                variant: String::from("QED"),
                layout: LayoutStatus::Confirmed,
                virtual_size: image_size,
                cluster_size: cluster,
                backing: None,
                dirty: features & F_NEED_CHECK != 0,
                companions: Vec::new(),
            },
            cluster,
            entries,
            l1: Vec::new(),
            file_size,
        };
        let l1_offset = header.l1_table_offset.get();
        if !q.valid_table(l1_offset) {
            return Err(invalid(40, format!("l1_table_offset {} is not a cluster-aligned table inside the file ({} bytes)", l1_offset, q.file.size())));
        }
        if features & F_BACKING_FILE != 0 {
            q.info.backing = Some(q.read_backing_name(header_bytes, features)?);
        }
        let needed = image_size.div_ceil(l2_cover);
        q.l1 = q.read_table(l1_offset, 0, needed, "L1 table")?;
        Ok(q)
    }

    fn read_backing_name(&self, header_bytes: u64, features: u64) -> Result<BackingRef> {
        let off = self.header.backing_filename_offset.get() as u64;
        let len = self.header.backing_filename_size.get() as u64;
        if off + len > header_bytes {
            return Err(invalid(56, format!("backing file name ({} bytes at {}) lies outside the {}-byte header", len, off, header_bytes)));
        }
        if len >= limits::MAX_NAME_BYTES {
            return Err(Error::Limit { what: "backing file name length", needed: len, limit: limits::MAX_NAME_BYTES - 1 });
        }
        let mut raw = alloc::vec![0u8; len as usize];
        read_exact_at(&*self.file, off, &mut raw, "backing file name")?;
        let name = String::from_utf8(raw).map_err(|_| invalid(off, String::from("backing file name is not UTF-8")))?;
        let format = if features & F_BACKING_FORMAT_NO_PROBE != 0 { Some(String::from("raw")) } else { None };
        Ok(BackingRef { name, format, offset: off })
    }

    /// QEMU's qed_check_cluster_offset.
    fn valid_cluster(&self, off: u64) -> bool {
        off % self.cluster == 0 && off >= self.header_bytes() && off < self.file_size
    }

    /// QEMU's qed_check_table_offset: first and last cluster of the table are valid.
    fn valid_table(&self, off: u64) -> bool {
        let last = (self.header.table_size.get() as u64 - 1) * self.cluster;
        off.checked_add(last).is_some_and(|end| self.valid_cluster(off) && self.valid_cluster(end))
    }

    fn header_bytes(&self) -> u64 {
        self.cluster * self.header.header_size.get() as u64
    }

    fn table_bytes(&self) -> u64 {
        self.header.table_size.get() as u64 * self.cluster
    }

    fn l2_cover(&self) -> u64 {
        self.entries * self.cluster
    }

    /// Entries `[first, first+count)` of the table at `offset` (already validated).
    fn read_table(&self, offset: u64, first: u64, count: u64, what: &'static str) -> Result<Vec<u64>> {
        let mut buf = table_buf(what, count * 8)?;
        read_exact_at(&*self.file, offset + first * 8, &mut buf, what)?;
        let table = <[zerocopy::little_endian::U64]>::ref_from_bytes(&buf).expect("multiple of 8");
        Ok(table.iter().map(|e| e.get()).collect())
    }

    /// Tell the cache which L2 entries guest `[start, end)` needs; returns the guest offset
    /// the prefetched batch reaches.
    fn prefetch_l2(&self, start: u64, end: u64) -> u64 {
        let shape = tables::Shape { cover: self.l2_cover(), unit: self.cluster, entry: 8, table: self.table_bytes(), ahead: 0 };
        tables::prefetch(&*self.file, &shape, start, end, |i| Some(self.l1[i as usize]).filter(|&l2| l2 != 0 && self.valid_table(l2)))
    }
}

impl Image for Qed {
    fn cluster_fields(&self, guest: u64) -> Result<Vec<Field>> {
        let cover = self.l2_cover();
        let i = guest / cover;
        let Some(&l2) = self.l1.get(i as usize) else { return Ok(Vec::new()) };
        let l1_at = self.header.l1_table_offset.get() + i * 8;
        if l2 == 0 || !self.valid_table(l2) {
            let value = if l2 == 0 { String::from("0: no L2 table, the range reads from the backing file (zeros without one)") } else { format!("{}: not a table inside the file", l2) };
            return Ok(alloc::vec![Field { name: format!("L1 entry {}", i), offset: l1_at, size: 8, raw: l2.to_le_bytes().to_vec(), value, note: String::new() }]);
        }
        let k = guest % cover / self.cluster;
        let e = self.read_table(l2, k, 1, "L2 table")?.first().copied().unwrap_or(0);
        let value = match e {
            0 => String::from("0: unallocated, read from the backing file (zeros without one)"),
            ZERO_CLUSTER => String::from("1: reads as zeros"),
            e if self.valid_cluster(e) => format!("data at byte {} of the file", e),
            e => format!("{}: invalid, outside the file", e),
        };
        Ok(alloc::vec![Field { name: format!("L2 entry {}", guest / self.cluster), offset: l2 + k * 8, size: 8, raw: e.to_le_bytes().to_vec(), value, note: String::from("the guest cluster's entry in its L2 table") }])
    }
    fn info(&self) -> &ImageInfo {
        &self.info
    }

    fn header_fields(&self) -> Vec<Field> {
        let mut fields = self.header.fields();
        if let Some(b) = &self.info.backing {
            fields.push(Field {
                name: String::from("backing file name"),
                offset: b.offset,
                size: b.name.len() as u64,
                raw: b.name.as_bytes().to_vec(),
                value: format!("\"{}\"", b.name),
                note: String::from(if b.format.is_some() {
                    "backing file, read as raw (BACKING_FORMAT_NO_PROBE)"
                } else {
                    "backing file; its format is probed"
                }),
            });
        }
        fields
    }

    fn regions(&self) -> Result<Vec<Region>> {
        let mut r = alloc::vec![
            Region { name: String::from("header"), kind: RegionKind::Header, offset: 0, length: self.header_bytes() },
            Region {
                name: String::from("L1 table"),
                kind: RegionKind::Table,
                offset: self.header.l1_table_offset.get(),
                length: self.table_bytes(),
            },
        ];
        for (i, &l2) in self.l1.iter().enumerate() {
            if l2 != 0 && self.valid_table(l2) {
                r.push(Region { name: format!("L2 table {}", i), kind: RegionKind::Table, offset: l2, length: self.table_bytes() });
            }
        }
        Ok(r)
    }

    fn run_granule(&self) -> u64 {
        self.info.cluster_size
    }

    fn map(&self, start: u64, len: u64, out: &mut Vec<Extent>) -> Result<()> {
        let end = start + len;
        let cover = self.l2_cover();
        let l1_offset = self.header.l1_table_offset.get();
        let mut pos = start;
        let mut prefetched = start;
        while pos < end {
            let i = pos / cover;
            let base = i * cover;
            let span_end = end.min(base + cover);
            if pos >= prefetched {
                prefetched = self.prefetch_l2(pos, end);
            }
            let l2 = self.l1[i as usize];
            if l2 == 0 {
                Extent::push(out, Extent { start: pos, length: span_end - pos, kind: Kind::Unallocated });
            } else if !self.valid_table(l2) {
                Extent::push(out, Extent { start: pos, length: span_end - pos, kind: Kind::Invalid { entry: l1_offset + i * 8 } });
            } else {
                let mut idx = (pos - base) / self.cluster;
                let last = (span_end - base).div_ceil(self.cluster);
                while idx < last {
                    let count = (last - idx).min(L2_WINDOW);
                    let table = self.read_table(l2, idx, count, "L2 table")?;
                    for (k, &e) in table.iter().enumerate() {
                        let cs = base + (idx + k as u64) * self.cluster;
                        let (a, b) = (cs.max(pos), (cs + self.cluster).min(span_end));
                        let kind = match e {
                            0 => Kind::Unallocated,
                            ZERO_CLUSTER => Kind::Zero,
                            e if self.valid_cluster(e) => Kind::Data { file: 0, offset: e + (a - cs) },
                            _ => Kind::Invalid { entry: l2 + (idx + k as u64) * 8 },
                        };
                        Extent::push(out, Extent { start: a, length: b - a, kind });
                    }
                    idx += count;
                }
            }
            pos = span_end;
        }
        Ok(())
    }

    fn file(&self, index: u16) -> Option<&Arc<dyn ReadAt>> {
        (index == 0).then_some(&self.file)
    }

    fn check(&self) -> Result<CheckResult> {
        check::run(self)
    }
}
