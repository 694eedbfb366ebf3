//! FVD (Fast Virtual Disk, IBM 2010-2011, never merged into QEMU), in its three on-disk
//! variants (DECISIONS.md 1, FORMATS.md 3):
//!
//! - C, seed 002's header: "FVD\0" then a page-sized `header_size` (reconstructed).
//! - A, the Jan-2011 driver: bytes A9 F5 43 51, version 1 (confirmed from its source).
//! - B, the QEMU wiki specification: "FVD\0" then version 1 (header confirmed).
//!
//! One mapping for all three. Below `base_img_size` a bitmap (one bit per `block_size`)
//! says whether a block is still in the base image (0: the backing file) or in the FVD
//! data (1); past it everything is FVD data. FVD data is guest offset X at `data start + X`,
//! or, in a compact image, chunk `X / chunk_size` through a table of u32 entries
//! (0xFFFFFFFF = empty, reads zeros; bit 31 = dirty, masked). Data is in this file from
//! `data_offset` (A: `metadata_size`), or in `data_file` from its byte 0 (variant A's rule,
//! applied to all three).
//!
//! A journal of bitmap and table updates is decoded and listed; when the image was not
//! shut down cleanly it is replayed in memory (never on the file) before mapping, unless
//! [`OpenOptions::as_stored`](crate::image::OpenOptions) asks for the metadata as stored.
use alloc::{boxed::Box, format, string::String, sync::Arc, vec, vec::Vec};

use super::bitmap::CowBitmap;
use crate::chain::{Chain, Resolver};
use crate::error::{Error, Result};
use crate::image::{Driver, Image, OpenCtx};
use crate::io::{read_clipped, read_exact_at, table_buf, MemFile, ReadAt};
use crate::limits;
use crate::model::*;

mod check;
pub mod header;
pub mod journal;
#[cfg(any(test, feature = "samples"))]
pub(crate) mod sample;
#[cfg(test)]
mod tests;

pub use header::Variant;
use header::Header;
pub use journal::{JKind, JRecord};
use journal::{DIRTY, EMPTY};

pub const MAGIC_A: [u8; 4] = [0xA9, 0xF5, 0x43, 0x51];
pub const MAGIC_BC: [u8; 4] = *b"FVD\0";

pub static DRIVER: Driver = Driver { name: "fvd", probe: |h, _| h.starts_with(&MAGIC_A) || h.starts_with(&MAGIC_BC), open };

/// Largest block or chunk size accepted: anything larger is not a real image.
const MAX_UNIT: u64 = 1 << 32;
/// Table entries read per step.
const TABLE_WINDOW: u64 = 16 * 1024;
/// Guest bytes of bitmap runs gathered per step.
const BITMAP_WINDOW: u64 = 64 << 20;

/// Tell the variant from the first 8 bytes; say why when none fits.
pub fn detect(head: &[u8]) -> Result<Variant> {
    let word = |at: usize| head.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let Some(second) = word(4) else {
        return Err(Error::PastEnd { what: "FVD header", offset: 0, len: 8, file_size: head.len() as u64 });
    };
    if head.starts_with(&MAGIC_A) {
        if second != 1 {
            return Err(Error::Unsupported { format: "fvd", offset: 4, message: format!("FVD variant A version {}; only version 1 exists", second) });
        }
        return Ok(Variant::A);
    }
    if !head.starts_with(&MAGIC_BC) {
        return Err(Error::Invalid { format: "fvd", offset: 0, message: String::from("bad magic: not an FVD image") });
    }
    let c_min = Variant::C.struct_size() as u32;
    if second % 4096 == 0 && second >= c_min {
        Ok(Variant::C)
    } else if second == 1 {
        Ok(Variant::B)
    } else if second < 4096 {
        Err(Error::Unsupported { format: "fvd", offset: 4, message: format!("FVD variant B (wiki) version {}; only version 1 exists", second) })
    } else {
        Err(Error::Invalid {
            format: "fvd",
            offset: 4,
            message: format!(
                "after \"FVD\\0\" comes {}: neither version 1 (variant B) nor a header_size that is a multiple of 4096 and at least {} (variant C)",
                second, c_min
            ),
        })
    }
}

/// Where FVD data is read from.
enum DataFile {
    /// This file, from the data start.
    Own,
    /// A raw data file (file 1).
    Raw(Arc<dyn ReadAt>),
    /// A data file in another format, read through its own chain.
    Nested(Chain),
    /// Named but not given, or not readable (the reason).
    Absent(Option<String>),
}

/// The bitmap in use (the base image is consulted).
struct Bits {
    /// The image file, or the replayed copy in memory.
    src: Arc<dyn ReadAt>,
    map: CowBitmap,
    /// Guest bytes the bitmap governs: min(base_img_size, disk size).
    base_end: u64,
}

/// The chunk table in use.
struct Table {
    /// The image file, or the replayed copy in memory.
    src: Arc<dyn ReadAt>,
    /// Offset of entry 0 in `src`.
    at: u64,
    /// Entries that can be read (the rest of the disk maps through no entry: invalid).
    readable: u64,
    /// Entries the disk needs: ceil(disk size / chunk size).
    needed: u64,
}

/// The header's numbers, checked and named alike for all variants.
#[derive(Debug, Clone)]
struct Geo {
    vsize: u64,
    /// Where guest data (or chunk 0) starts in the file that holds it.
    data_base: u64,
    block: u64,
    chunk: u64,
    base_named: bool,
    /// The base image is consulted: named, and not fully prefetched.
    base_used: bool,
    base_size: u64,
    bitmap_offset: u64,
    bitmap_size: u64,
    compact: bool,
    table_offset: u64,
    /// Bytes of the table region (A: computed, as the driver does).
    table_bytes: u64,
    journal_offset: u64,
    journal_size: u64,
    clean: bool,
    stable_epoch: Option<u64>,
    /// Bytes of the header region.
    header_len: u64,
}

/// An opened FVD image.
pub struct Fvd {
    file: Arc<dyn ReadAt>,
    name: String,
    h: Header,
    g: Geo,
    info: ImageInfo,
    bitmap: Option<Bits>,
    table: Option<Table>,
    data: DataFile,
    data_name: String,
    journal: Vec<JRecord>,
    /// Journal bytes decoded (the journal clipped to the file and to the table limit).
    journal_read: u64,
    /// Decoding stopped at journal::MAX_RECORDS.
    journal_truncated: bool,
    /// The journal was applied to the bitmap and table in memory.
    replayed: bool,
}

fn invalid(offset: u64, message: String) -> Error {
    Error::Invalid { format: "fvd", offset, message }
}

/// A resolver that will not hand out the FVD image or its data file again, so that a data
/// file whose chain leads back here ends as "missing" instead of recursing for ever.
struct Guard<'a> {
    inner: &'a dyn Resolver,
    seen: [String; 2],
}

impl Resolver for Guard<'_> {
    fn resolve(&self, name: &str, by: &str) -> Option<(String, Arc<dyn ReadAt>)> {
        self.inner.resolve(name, by).filter(|(k, _)| !self.seen.iter().any(|s| s == k))
    }

    fn candidates(&self, by: &str) -> Vec<(String, Arc<dyn ReadAt>)> {
        self.inner.candidates(by).into_iter().filter(|(k, _)| !self.seen.iter().any(|s| s == k)).collect()
    }
}

fn open(file: Arc<dyn ReadAt>, ctx: &OpenCtx) -> Result<Box<dyn Image>> {
    Ok(Box::new(Fvd::open(file, ctx)?))
}

/// A size that must be a non-zero multiple of 512 and not absurd.
fn unit(h: &Header, name: &str, what: &str) -> Result<u64> {
    let v = h.get(name);
    if v == 0 || v % 512 != 0 || v > MAX_UNIT {
        return Err(invalid(h.off(name), format!("{} is {}: it must be a non-zero multiple of 512 of at most 4 GiB", what, v)));
    }
    Ok(v)
}

impl Fvd {
    /// Open an FVD image of any variant. `ctx.options.as_stored` keeps the metadata as
    /// stored even when the journal would be replayed.
    pub fn open(file: Arc<dyn ReadAt>, ctx: &OpenCtx) -> Result<Fvd> {
        let mut head = [0u8; 8];
        let n = file.size().min(8) as usize;
        file.read_at(0, &mut head[..n])?;
        let variant = detect(&head[..n])?;
        let mut bytes = vec![0u8; variant.struct_size()];
        read_exact_at(&*file, 0, &mut bytes, "FVD header")?;
        let h = Header { variant, bytes };
        if variant == Variant::C {
            let at = h.off("incompatible_features") as usize;
            if let Some(i) = h.bytes[at..].iter().position(|&b| b != 0) {
                return Err(Error::Unsupported {
                    format: "fvd",
                    offset: (at + i) as u64,
                    message: format!(
                        "incompatible_features has a non-zero byte ({:#04x}): the image uses a feature this reader does not know, and FVD requires refusing such images",
                        h.bytes[at + i]
                    ),
                });
            }
        }
        let g = Self::geometry(&h)?;
        let name = String::from(ctx.name);

        // The data file, when the data is not in this file.
        let (data_name, _) = h.text("data_file");
        let mut companions = Vec::new();
        let data = if data_name.is_empty() {
            DataFile::Own
        } else {
            let (fmt, _) = h.text("data_file_fmt");
            let fmt = if fmt.is_empty() { String::from("raw") } else { fmt };
            let found = ctx.resolver.resolve(&data_name, ctx.name);
            companions.push(Companion { role: "data file", name: data_name.clone(), offset: h.off("data_file"), found: found.as_ref().map(|(k, _)| k.clone()) });
            match found {
                None => DataFile::Absent(None),
                Some((key, _)) if key == ctx.name => DataFile::Absent(Some(String::from("it names this image itself"))),
                Some((_, f)) if fmt == "raw" => DataFile::Raw(f),
                Some((key, f)) => {
                    let guard = Guard { inner: ctx.resolver, seen: [String::from(ctx.name), key.clone()] };
                    match Chain::open(&key, f, Some(&fmt), &guard) {
                        Ok(c) if c.layers.len() == 1 && c.top().info().format == "raw" => match c.top().file(0) {
                            Some(f) => DataFile::Raw(f.clone()),
                            None => DataFile::Nested(c),
                        },
                        Ok(c) => DataFile::Nested(c),
                        Err(e) => DataFile::Absent(Some(format!("{}", e))),
                    }
                }
            }
        };

        // Bits the header provides for; those the file does not hold read as 0 (the base),
        // so the stored view reads only what is there. A bitmap whose end would overflow
        // is not read at all (check reports it).
        let declared_bits = g.base_size.div_ceil(g.block.max(1)).min(g.bitmap_size.saturating_mul(8));
        let bits_in_file = file.size().saturating_sub(g.bitmap_offset).saturating_mul(8);
        let bitmap_fits = g.bitmap_offset.checked_add(g.bitmap_size).is_some();
        let mut bitmap = g.base_used.then(|| Bits {
            src: file.clone(),
            map: CowBitmap { offset: g.bitmap_offset, bits: if bitmap_fits { declared_bits.min(bits_in_file) } else { 0 }, granule: g.block },
            base_end: g.base_size,
        });
        let mut table = g.compact.then(|| {
            let needed = g.vsize.div_ceil(g.chunk);
            let in_file = file.size().saturating_sub(g.table_offset) / 4;
            Table { src: file.clone(), at: g.table_offset, readable: needed.min(g.table_bytes / 4).min(in_file), needed }
        });

        // The journal: decoded always (to list it), applied when the image is dirty.
        let mut journal = Vec::new();
        let (mut journal_read, mut journal_truncated, mut replayed) = (0, false, false);
        if g.journal_size > 0 {
            let len = g.journal_size.min(file.size().saturating_sub(g.journal_offset)).min(limits::MAX_TABLE_BYTES);
            journal_read = len;
            let mut buf = table_buf("FVD journal", len)?;
            if len > 0 {
                read_exact_at(&*file, g.journal_offset, &mut buf, "FVD journal")?;
            }
            let (records, truncated) = journal::parse(variant, &buf, g.journal_offset, g.stable_epoch);
            journal = records;
            journal_truncated = truncated || len < g.journal_size;
            if !g.clean && !ctx.options.as_stored {
                let wants_bits = journal.iter().any(|r| matches!(r.kind, JKind::Bitmap { .. }));
                let wants_table = journal.iter().any(|r| matches!(r.kind, JKind::Table { .. }) && !r.stale);
                // In memory the bitmap has every bit the header provides for, so that the
                // journal can set bits the file does not hold.
                let mut bits_mem = match bitmap.as_mut() {
                    Some(b) if wants_bits && bitmap_fits => {
                        b.map.bits = declared_bits;
                        let mut m = table_buf("FVD bitmap", b.map.bytes())?;
                        read_clipped(&*file, b.map.offset, &mut m)?;
                        Some(m)
                    }
                    _ => None,
                };
                let mut table_mem = match &table {
                    Some(t) if wants_table => {
                        let mut m = table_buf("FVD table", t.readable * 4)?;
                        if !m.is_empty() {
                            read_exact_at(&*file, t.at, &mut m, "FVD table")?;
                        }
                        Some(m)
                    }
                    _ => None,
                };
                let targets = journal::Targets {
                    bitmap: match (&mut bits_mem, &bitmap) {
                        (Some(m), Some(b)) => Some((&mut m[..], b.map.bits, g.block, b.base_end)),
                        _ => None,
                    },
                    table: table_mem.as_deref_mut(),
                    virtual_size: g.vsize,
                };
                journal::replay(variant, &mut journal, &buf, g.journal_offset, targets);
                if let (Some(m), Some(b)) = (bits_mem, bitmap.as_mut()) {
                    b.src = Arc::new(MemFile(m));
                    b.map.offset = 0;
                }
                if let (Some(m), Some(t)) = (table_mem, table.as_mut()) {
                    t.src = Arc::new(MemFile(m));
                    t.at = 0;
                }
                replayed = true;
            }
        }

        let applied = journal.iter().filter(|r| r.applied).count();
        let mut variant_text = String::from(match variant {
            Variant::A => "FVD variant A (magic A9 F5 43 51, version 1): layout confirmed from the Jan-2011 driver source (fvd.h)",
            Variant::B => "FVD variant B (\"FVD\\0\", version 1): header confirmed from the QEMU wiki specification; table encoding as in variant A",
            Variant::C => "FVD variant C (\"FVD\\0\" + header_size): seed 002's FvdHeader, offsets reconstructed in DECISIONS.md",
        });
        if g.compact {
            variant_text.push_str(", compact (chunk table)");
        }
        if !g.clean {
            variant_text.push_str(&if replayed {
                format!("; NOT SHUT DOWN CLEANLY: journal replayed in memory ({} records applied)", applied)
            } else if g.journal_size == 0 {
                String::from("; NOT SHUT DOWN CLEANLY and without a journal: the metadata may be inconsistent")
            } else {
                String::from("; NOT SHUT DOWN CLEANLY: shown as stored, journal not applied")
            });
        }
        let base = h.text("base_img").0;
        let base_fmt = h.text("base_img_fmt").0;
        let info = ImageInfo {
            format: "fvd",
            variant: variant_text,
            layout: if variant == Variant::C { LayoutStatus::Reconstructed } else { LayoutStatus::Confirmed },
            virtual_size: g.vsize,
            cluster_size: if g.compact {
                g.chunk
            } else if g.block != 0 {
                g.block
            } else {
                65536
            },
            // Only a base that is still read is a backing file the chain must find.
            backing: g.base_used.then(|| BackingRef {
                name: base,
                format: (!base_fmt.is_empty()).then_some(base_fmt),
                offset: h.off("base_img"),
            }),
            dirty: !g.clean,
            companions,
        };
        Ok(Fvd { file, name, h, g, info, bitmap, table, data, data_name, journal, journal_read, journal_truncated, replayed })
    }

    fn geometry(h: &Header) -> Result<Geo> {
        let v = h.variant;
        let vsize = h.get("virtual_disk_size");
        if vsize > limits::MAX_VIRTUAL_SIZE {
            return Err(Error::Limit { what: "FVD virtual_disk_size", needed: vsize, limit: limits::MAX_VIRTUAL_SIZE });
        }
        let base_named = !h.text("base_img").0.is_empty();
        let fully = h.get(if v == Variant::A { "all_data_in_fvd_img" } else { "base_img_fully_prefetched" }) != 0;
        let base_used = base_named && !fully;
        let block_raw = h.get("block_size");
        let block = if base_used {
            unit(h, "block_size", "block_size (guest bytes per bitmap bit)")?
        } else if block_raw % 512 == 0 && block_raw <= MAX_UNIT {
            block_raw
        } else {
            0
        };
        let compact = match v {
            Variant::A => h.get("compact_image") != 0,
            _ => h.get("table_offset") != 0 && h.get("table_size") != 0,
        };
        let chunk = if compact { unit(h, "chunk_size", "chunk_size (guest bytes per table entry)")? } else { h.get("chunk_size") };
        let table_bytes = match v {
            // The driver's size: ceil(disk / chunk) entries, rounded up to a page.
            Variant::A if compact => vsize.div_ceil(chunk).saturating_mul(4).next_multiple_of(4096),
            Variant::A => 0,
            _ => h.get("table_size"),
        };
        if compact && vsize.div_ceil(chunk) > 1 << 31 {
            return Err(invalid(h.off("chunk_size"), format!(
                "the disk needs {} chunks of {} bytes, more than the 2^31 a table entry can number", vsize.div_ceil(chunk), chunk)));
        }
        let has_data_file = !h.text("data_file").0.is_empty();
        let data_field = if v == Variant::A { "metadata_size" } else { "data_offset" };
        let data_base = if has_data_file { 0 } else { h.get(data_field) };
        if data_base.checked_add(vsize).is_none_or(|e| e > i64::MAX as u64) {
            return Err(invalid(h.off(data_field), format!("{} {} puts the disk's data past 2^63 bytes", data_field, data_base)));
        }
        Ok(Geo {
            vsize,
            data_base,
            block,
            chunk,
            base_named,
            base_used,
            base_size: h.get("base_img_size").min(vsize),
            bitmap_offset: h.get("bitmap_offset"),
            bitmap_size: h.get("bitmap_size"),
            compact,
            table_offset: h.get("table_offset"),
            table_bytes,
            journal_offset: h.get("journal_offset"),
            journal_size: h.get("journal_size"),
            clean: h.get("clean_shutdown") != 0,
            stable_epoch: h.num("stable_journal_epoch"),
            header_len: if v == Variant::C { h.get("header_size") } else { v.struct_size() as u64 },
        })
    }

    /// Which variant this image is.
    pub fn variant(&self) -> Variant {
        self.h.variant
    }

    /// Every decoded journal record, in file order.
    pub fn journal(&self) -> &[JRecord] {
        &self.journal
    }

    /// Whether the journal was applied in memory to the view this image maps.
    pub fn replayed(&self) -> bool {
        self.replayed
    }

    /// Call `f(start, end, loc)` for runs of `[start, end)` (guest bytes) in order.
    fn locate(&self, start: u64, end: u64, f: &mut dyn FnMut(u64, u64, Loc)) -> Result<()> {
        let mut pos = start;
        if let Some(b) = &self.bitmap {
            let covered = b.map.bits.saturating_mul(b.map.granule).min(b.base_end);
            let with_bits = end.min(covered);
            let mut runs = Vec::new();
            while pos < with_bits {
                let step = with_bits.min(pos.saturating_add(BITMAP_WINDOW));
                runs.clear();
                b.map.runs(&*b.src, pos, step, |a, e, set| runs.push((a, e, set)))?;
                for &(a, e, set) in &runs {
                    if set {
                        self.fvd_data(a, e, f)?;
                    } else {
                        f(a, e, Loc::Base);
                    }
                }
                pos = step;
            }
            // Blocks past the stored bitmap read as 0 bits: still the base image.
            let base_end = end.min(b.base_end);
            if pos < base_end {
                f(pos, base_end, Loc::Base);
                pos = base_end;
            }
        }
        if pos < end {
            self.fvd_data(pos, end, f)?;
        }
        Ok(())
    }

    /// Where FVD data for guest `[a, b)` is: direct, or through the chunk table.
    fn fvd_data(&self, a: u64, b: u64, f: &mut dyn FnMut(u64, u64, Loc)) -> Result<()> {
        let Some(t) = &self.table else {
            f(a, b, Loc::At(self.g.data_base + a));
            return Ok(());
        };
        let chunk = self.g.chunk;
        let (mut c, last) = (a / chunk, (b - 1) / chunk);
        let mut buf = Vec::new();
        while c <= last {
            if c >= t.readable {
                // Past the stored table: one invalid run, not one step per chunk (a 12 TB
                // disk over a short table took minutes; found by fuzzing, input kept).
                f((c * chunk).max(a), b, Loc::Invalid(self.g.table_offset.saturating_add(4 * c)));
                break;
            }
            let wend = (c + TABLE_WINDOW).min(last + 1);
            let readable = wend.min(t.readable).max(c);
            buf.clear();
            buf.resize(((readable - c) * 4) as usize, 0);
            if !buf.is_empty() {
                read_exact_at(&*t.src, t.at + c * 4, &mut buf, "FVD table")?;
            }
            for i in c..wend {
                let (s, e) = ((i * chunk).max(a), ((i + 1) * chunk).min(b));
                let entry_at = self.g.table_offset.saturating_add(4 * i);
                let loc = if i >= readable {
                    Loc::Invalid(entry_at)
                } else {
                    let k = ((i - c) * 4) as usize;
                    match u32::from_le_bytes([buf[k], buf[k + 1], buf[k + 2], buf[k + 3]]) {
                        EMPTY => Loc::Zero,
                        v => ((v & !DIRTY) as u64)
                            .checked_mul(chunk)
                            .and_then(|o| o.checked_add(self.g.data_base))
                            .and_then(|o| o.checked_add(s - i * chunk))
                            .filter(|&o| o <= i64::MAX as u64)
                            .map_or(Loc::Invalid(entry_at), Loc::At),
                    }
                };
                f(s, e, loc);
            }
            c = wend;
        }
        Ok(())
    }

    fn kind_at(&self, offset: u64) -> Kind {
        match &self.data {
            DataFile::Own => Kind::Data { file: 0, offset },
            DataFile::Raw(_) => Kind::Data { file: 1, offset },
            DataFile::Nested(_) => Kind::Computed { file: 1 },
            DataFile::Absent(_) => Kind::Missing { file: 1 },
        }
    }

    fn finding(&self, severity: Severity, code: &'static str, offset: u64, length: u64, message: String) -> Finding {
        Finding { severity, code, file: self.name.clone(), offset: Some(offset), length, guest: None, message }
    }

    /// Size of the data's storage (this file or the data file), when it is known.
    fn data_size(&self) -> Option<u64> {
        match &self.data {
            DataFile::Own => Some(self.file.size()),
            DataFile::Raw(f) => Some(f.size()),
            DataFile::Nested(c) => Some(c.virtual_size()),
            DataFile::Absent(_) => None,
        }
    }

    fn record(&self, r: &JRecord) -> Record {
        let v = self.h.variant;
        let mut fields = Vec::new();
        let mut push = |k: &str, val: String| fields.push((String::from(k), val));
        let (kind, what) = match &r.kind {
            JKind::Bitmap { sectors, begin } => {
                let (n, b) = if v == Variant::A { ("nb_sectors", "sector_num") } else { ("num_dirty_sectors", "dirty_sector_begin") };
                push("type", String::from("0x3f2ab8ed (bitmap update)"));
                push(n, format!("{}", sectors));
                push(b, format!("{}", begin));
                let start = begin.saturating_mul(512);
                push("guest bytes", format!("{} to {}", start, start.saturating_add(*sectors as u64 * 512)));
                ("bitmap update", format!("marks guest sectors {} to {} as stored in this image", begin, begin.saturating_add(*sectors as u64)))
            }
            JKind::Table { epoch, first, count } => {
                push("type", String::from("0xb4e6f7ac (table update)"));
                if let Some(e) = epoch {
                    push("journal_epoch", format!("{}", e));
                    push("num_dirty_table_entries", format!("{}", count));
                    push("dirty_table_begin", format!("{}", first));
                } else {
                    push("first_chunk", format!("{}", first));
                    push("count", format!("{}", count));
                }
                // The entries, read again from the file (at most a sector's worth).
                let hdr = JRecord::table_header(v) as u64;
                let shown = (*count).min(16) as usize;
                let mut raw = vec![0u8; shown * 4];
                let text = match read_exact_at(&*self.file, r.offset + hdr, &mut raw, "FVD journal record") {
                    Ok(()) => {
                        let mut parts: Vec<String> = raw
                            .chunks(4)
                            .enumerate()
                            .map(|(k, b)| {
                                let e = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                                let chunk = *first as u64 + k as u64;
                                match e {
                                    EMPTY => format!("chunk {}: empty", chunk),
                                    e if e & DIRTY != 0 => format!("chunk {}: id {} (dirty)", chunk, e & !DIRTY),
                                    e => format!("chunk {}: id {}", chunk, e),
                                }
                            })
                            .collect();
                        if (*count as usize) > shown {
                            parts.push(format!("and {} more", *count as usize - shown));
                        }
                        parts.join(", ")
                    }
                    Err(e) => format!("unreadable: {}", e),
                };
                push("entries", text);
                ("table update", format!("sets the table entries of chunks {} to {}", first, *first as u64 + *count as u64))
            }
            JKind::Malformed { word, reason } => {
                push("type", format!("{:#010x}", word));
                ("malformed", reason.clone())
            }
        };
        let status = if matches!(r.kind, JKind::Malformed { .. }) {
            String::from("not a record")
        } else if r.stale {
            let (e, s) = match r.kind {
                JKind::Table { epoch, .. } => (epoch.unwrap_or(0), self.g.stable_epoch.unwrap_or(0)),
                _ => (0, 0),
            };
            format!("stale: its epoch {} is below stable_journal_epoch {}, so recovery ignores it", e, s)
        } else if r.applied {
            String::from("applied in memory (the file is not changed)")
        } else if self.g.clean {
            String::from("not applied: the image was shut down cleanly, so the bitmap and table already hold it")
        } else if !self.replayed {
            String::from("not applied: the metadata is shown as stored")
        } else if matches!(r.kind, JKind::Bitmap { .. }) {
            String::from("not applied: this image reads no bitmap (no base image, or it was fully prefetched)")
        } else {
            String::from("not applied: this image has no chunk table")
        };
        let mut note = format!("{}; {}", what, status);
        if let Some(p) = &r.problem {
            note.push_str("; ");
            note.push_str(p);
        }
        Record { kind: String::from(kind), offset: r.offset, length: r.length, fields, note, stale: r.stale, applied: r.applied }
    }
}

/// Where guest bytes are, before they become a [`Kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loc {
    /// The base image (backing file).
    Base,
    /// An empty chunk: zeros.
    Zero,
    /// FVD data at this offset of the file holding the data.
    At(u64),
    /// Through the table entry at this byte offset, which is missing or unusable.
    Invalid(u64),
}

impl Image for Fvd {
    fn grids(&self) -> Vec<Grid> {
        let mut g = Vec::new();
        if self.bitmap.is_some() {
            g.push(Grid { name: String::from("bitmap block (one bit of the bitmap)"), size: self.g.block });
        }
        if self.table.is_some() {
            g.push(Grid { name: String::from("table chunk (one entry of the chunk table)"), size: self.g.chunk });
        }
        g
    }

    fn info(&self) -> &ImageInfo {
        &self.info
    }

    fn header_fields(&self) -> Vec<Field> {
        self.h.fields()
    }

    fn regions(&self) -> Result<Vec<Region>> {
        let g = &self.g;
        let mut r = vec![Region { name: String::from("header"), kind: RegionKind::Header, offset: 0, length: g.header_len }];
        if g.bitmap_size > 0 {
            r.push(Region { name: String::from("bitmap"), kind: RegionKind::Bitmap, offset: g.bitmap_offset, length: g.bitmap_size });
        }
        if g.compact {
            r.push(Region { name: String::from("chunk table"), kind: RegionKind::Table, offset: g.table_offset, length: g.table_bytes });
        }
        if g.journal_size > 0 {
            r.push(Region { name: String::from("journal"), kind: RegionKind::Journal, offset: g.journal_offset, length: g.journal_size });
        }
        if matches!(self.data, DataFile::Own) && self.file.size() > g.data_base {
            r.push(Region { name: String::from("data"), kind: RegionKind::Data, offset: g.data_base, length: self.file.size() - g.data_base });
        }
        r.sort_by_key(|x| x.offset);
        Ok(r)
    }

    fn run_granule(&self) -> u64 {
        // Bitmap runs are whole blocks, table runs whole chunks; with neither, one run.
        let bits = self.bitmap.as_ref().map_or(u64::MAX, |b| b.map.granule);
        let table = self.table.as_ref().map_or(u64::MAX, |_| self.g.chunk);
        bits.min(table).min(self.g.vsize)
    }

    fn map(&self, start: u64, len: u64, out: &mut Vec<Extent>) -> Result<()> {
        let end = start.saturating_add(len).min(self.g.vsize);
        if start >= end {
            return Ok(());
        }
        self.locate(start, end, &mut |a, b, loc| {
            let kind = match loc {
                Loc::Base => Kind::Unallocated,
                Loc::Zero => Kind::Zero,
                Loc::At(off) => self.kind_at(off),
                Loc::Invalid(entry) => Kind::Invalid { entry },
            };
            Extent::push(out, Extent { start: a, length: b - a, kind });
        })
    }

    fn file(&self, index: u16) -> Option<&Arc<dyn ReadAt>> {
        match (index, &self.data) {
            (0, _) => Some(&self.file),
            (1, DataFile::Raw(f)) => Some(f),
            _ => None,
        }
    }

    fn read_computed(&self, _extent: &Extent, guest: u64, buf: &mut [u8]) -> Result<()> {
        let DataFile::Nested(chain) = &self.data else {
            return Err(Error::MissingFile { name: self.data_name.clone(), by: self.name.clone(), offset: self.h.off("data_file") });
        };
        let end = guest.saturating_add(buf.len() as u64).min(self.g.vsize);
        let mut locs = Vec::new();
        self.locate(guest, end, &mut |a, b, loc| locs.push((a, b, loc)))?;
        let nested = chain.virtual_size();
        for (a, b, loc) in locs {
            let part = &mut buf[(a - guest) as usize..(b - guest) as usize];
            match loc {
                Loc::At(off) => {
                    // The data file's guest space: past its end reads zeros, as a short file does.
                    let have = nested.saturating_sub(off).min(part.len() as u64) as usize;
                    if have > 0 {
                        chain.read(off, &mut part[..have])?;
                    }
                    part[have..].fill(0);
                }
                Loc::Invalid(entry) => return Err(Error::CorruptMapping { guest: a, file: self.name.clone(), offset: entry }),
                Loc::Base | Loc::Zero => part.fill(0),
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<CheckResult> {
        check::check(self)
    }

    /// At most `limits::MAX_FINDINGS` records, then one line saying how many more there are.
    fn records(&self) -> Vec<Record> {
        let mut out: Vec<Record> = self.journal.iter().take(limits::MAX_FINDINGS).map(|r| self.record(r)).collect();
        let more = self.journal.len().saturating_sub(limits::MAX_FINDINGS);
        if more > 0 {
            let last = &self.journal[self.journal.len() - 1];
            out.push(Record {
                kind: String::from("more records"),
                offset: last.offset,
                length: 0,
                fields: Vec::new(),
                note: format!("{} more records are not listed (the journal view stops at {})", more, limits::MAX_FINDINGS),
                stale: false,
                applied: false,
            });
        }
        out
    }
}
