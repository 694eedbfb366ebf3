//! Parallels expandable images, version 2 (QEMU docs/interop/parallels.txt): a 64-byte
//! header, a BAT of 32-bit entries right after it, and a data area of clusters. A BAT entry
//! is the cluster's place in the file, in sectors ("WithoutFreeSpace") or in clusters
//! ("WithouFreSpacExt"); 0 means not allocated (zeros). An optional Format Extension
//! cluster carries dirty bitmaps. Reading rules as QEMU's block/parallels.c applies them.
use alloc::{boxed::Box, format, string::String, sync::Arc, vec::Vec};

use crate::error::{Error, Result};
use crate::image::{Driver, Image, OpenCtx};
use crate::io::{read_entries, read_exact_at, NoHoles, ReadAt};
use crate::limits;
use crate::model::*;

mod check;
pub mod ext;
pub mod header;
mod md5;
#[cfg(any(test, feature = "samples"))]
pub(crate) mod sample;
#[cfg(test)]
mod tests;

use crate::formats::bytes::le32;
use header::{at, Header, HEADER_BYTES, VERSION};

pub static DRIVER: Driver = Driver { name: "parallels", probe, open };

fn probe(head: &[u8], _file: &dyn ReadAt) -> bool {
    head.len() >= HEADER_BYTES && Header::parse(head).is_some_and(|h| h.version == VERSION)
}

fn invalid(offset: usize, message: String) -> Error {
    Error::Invalid { format: "parallels", offset: offset as u64, message }
}

pub(crate) struct Parallels {
    file: Arc<dyn ReadAt>,
    name: String,
    header: Header,
    info: ImageInfo,
    bat: Vec<u32>,
    cluster: u64,
    /// Sectors per BAT unit: 1 for the old magic, a cluster's sectors for the new one.
    multiplier: u64,
    /// Start of the data area, in sectors, as QEMU settles it (a bad data_off is replaced
    /// by the smallest valid value).
    data_start: u64,
    data_off_ok: bool,
    /// Bytes of the BAT the file holds (a shorter file reads the rest as zeros).
    bat_stored: u64,
    ext: Option<ext::Extension>,
}

fn open(file: Arc<dyn ReadAt>, ctx: &OpenCtx) -> Result<Box<dyn Image>> {
    Ok(Box::new(Parallels::open(file, ctx.name)?))
}

impl Parallels {
    fn open(file: Arc<dyn ReadAt>, name: &str) -> Result<Parallels> {
        // The header and the BAT's start: one read.
        file.prefetch(&mut [(0, file.size().min(256 << 10))]);
        let mut raw = [0u8; HEADER_BYTES];
        read_exact_at(&*file, 0, &mut raw, "Parallels header")?;
        let h = Header::parse(&raw).ok_or_else(|| invalid(at::MAGIC, String::from("bad magic: not a Parallels image")))?;
        if h.version != VERSION {
            return Err(invalid(at::VERSION, format!("version {} (only 2 exists)", h.version)));
        }
        let tracks = h.tracks as u64;
        if tracks == 0 {
            return Err(invalid(at::TRACKS, String::from("zero sectors per cluster")));
        }
        if tracks > i32::MAX as u64 / 513 {
            return Err(invalid(at::TRACKS, format!("a cluster of {} sectors is too big (QEMU's limit is {})", tracks, i32::MAX / 513)));
        }
        if h.bat_entries as u64 > i32::MAX as u64 / 4 {
            return Err(invalid(at::BAT_ENTRIES, format!("a BAT of {} entries is too large", h.bat_entries)));
        }
        let virtual_size = h.total_sectors().checked_mul(512).filter(|&v| v <= limits::MAX_VIRTUAL_SIZE);
        let Some(virtual_size) = virtual_size else {
            return Err(Error::Limit { what: "Parallels disk size", needed: h.total_sectors().saturating_mul(512), limit: limits::MAX_VIRTUAL_SIZE });
        };
        let cluster = tracks * 512;
        let multiplier = if h.ext_magic { tracks } else { 1 };
        // The BAT: one read. Bytes past the end of the file read as zeros (not allocated),
        // as QEMU reads them.
        let bat_bytes = h.bat_entries as u64 * 4;
        let bat = read_entries(&*file, "Parallels BAT", HEADER_BYTES as u64, h.bat_entries as u64, 4, false, |c| le32(c, 0))?;
        let bat_stored = file.size().saturating_sub(HEADER_BYTES as u64).min(bat_bytes);
        // QEMU's parallels_test_data_off.
        let file_sectors = file.size() / 512;
        let mut min_off = (HEADER_BYTES as u64 + bat_bytes).div_ceil(512);
        if h.ext_magic {
            min_off = min_off.next_multiple_of(tracks);
        }
        let data_off = h.data_off as u64;
        let (data_start, data_off_ok) = if data_off == 0 && !h.ext_magic {
            (min_off, true)
        } else if data_off < min_off || data_off > file_sectors {
            (min_off, false)
        } else {
            (data_off, true)
        };
        let ext = (h.ext_off != 0).then(|| ext::parse(&*file, h.ext_off.saturating_mul(512), cluster, h.total_sectors()));
        let variant = format!("Parallels v2, {}", if h.ext_magic { "\"WithouFreSpacExt\" (BAT in clusters)" } else { "\"WithoutFreeSpace\" (BAT in sectors)" });
        Ok(Parallels {
            file: Arc::new(NoHoles(file)),
            name: String::from(name),
            info: ImageInfo {
                format: "parallels",
                variant,
                layout: LayoutStatus::Confirmed,
                virtual_size,
                cluster_size: cluster,
                backing: None,
                dirty: h.inuse == header::INUSE_DIRTY,
                companions: Vec::new(),
            },
            header: h,
            bat,
            cluster,
            multiplier,
            data_start,
            data_off_ok,
            bat_stored,
            ext,
        })
    }

    /// Host byte offset of a nonzero BAT entry (checked math: None on overflow).
    fn host(&self, e: u32) -> Option<u64> {
        (e as u64).checked_mul(self.multiplier)?.checked_mul(512)
    }

    fn entry_at(i: u64) -> u64 {
        HEADER_BYTES as u64 + 4 * i
    }
}

impl Image for Parallels {
    fn info(&self) -> &ImageInfo {
        &self.info
    }

    fn header_fields(&self) -> Vec<Field> {
        let mut v = self.header.fields();
        if let Some(x) = &self.ext {
            let f = |name: String, offset: u64, size: u64, value: String, note: &str| Field { name, offset, size, raw: Vec::new(), value, note: String::from(note) };
            v.push(f(String::from("extension magic"), x.offset, 8, format!("{:#018x}", x.magic), "0xab234cef23dcea87 starts the Format Extension"));
            let md5 = match x.computed_md5 {
                Some(c) if c == x.stored_md5 => format!("{} (matches)", Hex(&x.stored_md5)),
                Some(c) => format!("{} (the cluster's MD5 is {}: corrupted)", Hex(&x.stored_md5), Hex(&c)),
                None => format!("{} (not verified)", Hex(&x.stored_md5)),
            };
            v.push(f(String::from("extension checksum"), x.offset.saturating_add(8), 16, md5, "MD5 of the rest of the extension cluster"));
            for (k, feat) in x.features.iter().enumerate() {
                let what = match feat.magic {
                    ext::END_OF_FEATURES => String::from("end of features"),
                    ext::DIRTY_BITMAP => String::from("dirty bitmap"),
                    m => format!("unknown ({:#018x})", m),
                };
                v.push(f(format!("feature {}", k), feat.offset, 24, format!("{}, flags {:#x}, {} bytes of data", what, feat.flags, feat.data_size),
                    "feature header: magic, flags, data size"));
                if let Some(b) = &feat.bitmap {
                    let gran = b.granularity_sectors as u64 * 512;
                    v.push(f(format!("feature {} bitmap", k), b.offset, 32, format!(
                        "id {}, {} sectors, one bit per {}, L1 table of {} entries", b.id_text(), b.size_sectors, crate::formats::fmt::size(gran), b.l1.len()),
                        "dirty bitmap: size in sectors, id (a UUID), granularity in sectors, L1 size"));
                    let ranges: Vec<String> = b.ranges.iter().map(|(a, e)| format!("{:#x}-{:#x}", a, e)).collect();
                    v.push(f(format!("feature {} dirty ranges", k), b.offset.saturating_add(32), b.l1.len() as u64 * 8, format!(
                        "{} granules dirty ({} bytes){}{}{}", b.dirty_granules, b.dirty_granules.saturating_mul(gran),
                        if ranges.is_empty() { String::new() } else { format!(": {}", ranges.join(", ")) },
                        if b.ranges.len() == 64 { " ..." } else { "" },
                        if b.complete { "" } else { " (some bitmap clusters could not be read)" }),
                        "guest byte ranges marked dirty (changed since the bitmap was started)"));
                }
            }
        }
        v
    }

    fn regions(&self) -> Result<Vec<Region>> {
        let mut r = alloc::vec![
            Region { name: String::from("header"), kind: RegionKind::Header, offset: 0, length: HEADER_BYTES as u64 },
            Region { name: String::from("BAT"), kind: RegionKind::Table, offset: HEADER_BYTES as u64, length: self.bat.len() as u64 * 4 },
        ];
        let start = self.data_start * 512;
        if self.file.size() > start {
            r.push(Region { name: String::from("data area"), kind: RegionKind::Data, offset: start, length: self.file.size() - start });
        }
        if let Some(x) = &self.ext {
            r.push(Region { name: String::from("Format Extension"), kind: RegionKind::Header, offset: x.offset, length: self.cluster });
            for b in x.features.iter().filter_map(|f| f.bitmap.as_ref()) {
                for (i, &e) in b.l1.iter().enumerate().filter(|(_, &e)| e > 1) {
                    r.push(Region { name: format!("dirty bitmap {} cluster {}", b.id_text(), i), kind: RegionKind::Bitmap, offset: e.saturating_mul(512), length: self.cluster });
                }
            }
        }
        Ok(r)
    }

    fn run_granule(&self) -> u64 {
        self.info.cluster_size
    }

    fn map(&self, start: u64, len: u64, out: &mut Vec<Extent>) -> Result<()> {
        let end = start + len;
        let size = self.file.size();
        let mut pos = start;
        while pos < end {
            let i = pos / self.cluster;
            if i >= self.bat.len() as u64 {
                // Past the block table nothing is allocated: one run, however large the disk
                // claims to be (a hostile size must not mean billions of steps).
                Extent::push(out, Extent { start: pos, length: end - pos, kind: Kind::Unallocated });
                break;
            }
            let base = i * self.cluster;
            let stop = end.min(base + self.cluster);
            let kind = match self.bat[i as usize] {
                0 => Kind::Unallocated,
                e => match self.host(e) {
                    Some(h) if h < size => Kind::Data { file: 0, offset: h + (pos - base) },
                    _ => Kind::Invalid { entry: Parallels::entry_at(i) },
                },
            };
            Extent::push(out, Extent { start: pos, length: stop - pos, kind });
            pos = stop;
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
