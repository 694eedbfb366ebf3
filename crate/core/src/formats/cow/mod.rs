//! QEMU's old `cow` (UML-style COW v2; FORMATS.md 4.2-4.3) and the raw-cow RFC (seed 004;
//! DECISIONS.md 3). Both: a big-endian header, then one bit per 512-byte sector; a set bit
//! means the sector is stored here (cow: in this file's data area; raw-cow: at the same
//! offset of a separate raw file), a clear bit means read the backing file.
//!
//! The header struct was never packed, so its layout depends on the ABI of the machine
//! that wrote it: x86_64 pads `size` to 8 bytes, i386 does not. We tell the layouts apart
//! by where `sectorsize` (always 512) stands.
use alloc::{boxed::Box, format, string::String, sync::Arc, vec, vec::Vec};

use super::bitmap::CowBitmap;
use super::bytes::be64;
use super::fmt::{c_string, field, quoted, size, unix_time};
use crate::error::{Error, Result};
use crate::image::{Driver, Image, OpenCtx};
use crate::io::{read_exact_at, ReadAt};
use crate::limits;
use crate::model::*;

pub static COW: Driver = Driver { name: "cow", probe: |h, _| matches!(detect(h), Some(l) if !l.raw_cow()) || is_unlaid_cow(h), open };
pub static RAW_COW: Driver = Driver { name: "raw-cow", probe: |h, _| matches!(detect(h), Some(l) if l.raw_cow()), open };

const MAGIC: [u8; 8] = *b"OOOM\0\0\0\x02";
const SECTOR: u64 = 512;
const NAME: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Cow64,
    Cow32,
    RawCow64,
    RawCowPacked,
}

/// Where the fields after the names stand in each layout.
struct Geometry {
    raw_file: Option<usize>,
    mtime: usize,
    size: usize,
    sectorsize: usize,
    header: usize,
}

impl Layout {
    const ALL: [Layout; 4] = [Layout::Cow64, Layout::Cow32, Layout::RawCow64, Layout::RawCowPacked];

    fn raw_cow(self) -> bool {
        matches!(self, Layout::RawCow64 | Layout::RawCowPacked)
    }

    fn geometry(self) -> Geometry {
        match self {
            Layout::Cow64 => Geometry { raw_file: None, mtime: 1032, size: 1040, sectorsize: 1048, header: 1056 },
            Layout::Cow32 => Geometry { raw_file: None, mtime: 1032, size: 1036, sectorsize: 1044, header: 1048 },
            Layout::RawCow64 => Geometry { raw_file: Some(1032), mtime: 2056, size: 2064, sectorsize: 2072, header: 2080 },
            Layout::RawCowPacked => Geometry { raw_file: Some(1032), mtime: 2056, size: 2060, sectorsize: 2068, header: 2072 },
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Layout::Cow64 => "cow v2, x86_64 header layout (1056 bytes)",
            Layout::Cow32 => "cow v2, i386 header layout (1048 bytes)",
            Layout::RawCow64 => "raw-cow, x86_64 header layout (2080 bytes)",
            Layout::RawCowPacked => "raw-cow, packed header layout (2072 bytes)",
        }
    }
}

fn be32(h: &[u8], at: usize) -> Option<u32> {
    h.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn detect(head: &[u8]) -> Option<Layout> {
    if !head.starts_with(&MAGIC) {
        return None;
    }
    Layout::ALL.into_iter().find(|l| be32(head, l.geometry().sectorsize) == Some(SECTOR as u32))
}

/// The magic without a sectorsize we can place: still cow, so open can say what is wrong.
fn is_unlaid_cow(head: &[u8]) -> bool {
    head.starts_with(&MAGIC) && detect(head).is_none()
}

struct Cow {
    file: Arc<dyn ReadAt>,
    /// raw-cow's raw file (file 1), when found.
    raw: Option<Arc<dyn ReadAt>>,
    name: String,
    layout: Layout,
    header: Vec<u8>,
    info: ImageInfo,
    bitmap: CowBitmap,
    /// cow: where sector 0's data is stored.
    data_start: u64,
    backing_terminated: bool,
}

fn open(file: Arc<dyn ReadAt>, ctx: &OpenCtx) -> Result<Box<dyn Image>> {
    let mut probe = vec![0u8; 2080];
    let n = file.size().min(2080) as usize;
    file.read_at(0, &mut probe[..n])?;
    let format = if matches!(detect(&probe[..n]), Some(l) if l.raw_cow()) { "raw-cow" } else { "cow" };
    if n < 1048 {
        // Shorter than the smallest layout: the layout cannot be told, the header is cut.
        return Err(Error::PastEnd { what: "cow header", offset: 0, len: 1048, file_size: n as u64 });
    }
    let layout = detect(&probe[..n]).ok_or_else(|| Error::Invalid {
        format,
        offset: 1044,
        message: String::from("sectorsize is not 512 where either header layout puts it (byte 1044 or 1048): not a cow image, or a damaged one"),
    })?;
    let g = layout.geometry();
    let mut header = vec![0u8; g.header];
    read_exact_at(&*file, 0, &mut header, "cow header")?;
    let bytes = be64(&header, g.size);
    if bytes > limits::MAX_VIRTUAL_SIZE {
        return Err(Error::Limit { what: "disk size", needed: bytes, limit: limits::MAX_VIRTUAL_SIZE });
    }
    let sectors = bytes / SECTOR;
    let (backing, backing_terminated) = c_string(&header[8..8 + NAME]);
    let bitmap = CowBitmap { offset: g.header as u64, bits: sectors, granule: SECTOR };
    let data_start = (g.header as u64 + bitmap.bytes()).next_multiple_of(SECTOR);
    let mut companions = Vec::new();
    let mut raw = None;
    if let Some(at) = g.raw_file {
        let (raw_name, _) = c_string(&header[at..at + NAME]);
        if raw_name.is_empty() {
            return Err(Error::Invalid { format, offset: at as u64, message: String::from("the header names no raw file, and raw-cow keeps its data there") });
        }
        let found = ctx.resolver.resolve(&raw_name, ctx.name);
        companions.push(Companion { role: "raw data file", name: raw_name, offset: at as u64, found: found.as_ref().map(|(k, _)| k.clone()) });
        raw = found.map(|(_, f)| f);
    }
    let info = ImageInfo {
        format,
        variant: String::from(layout.describe()),
        layout: if layout.raw_cow() { LayoutStatus::Reconstructed } else { LayoutStatus::Confirmed },
        virtual_size: sectors * SECTOR,
        cluster_size: SECTOR,
        backing: (!backing.is_empty()).then(|| BackingRef { name: backing, format: None, offset: 8 }),
        dirty: false,
        companions,
    };
    Ok(Box::new(Cow { file, raw, name: String::from(ctx.name), layout, header, info, bitmap, data_start, backing_terminated }))
}

impl Cow {
    fn finding(&self, severity: Severity, code: &'static str, offset: u64, length: u64, message: String) -> Finding {
        Finding { severity, code, file: self.name.clone(), offset: Some(offset), length, guest: None, message }
    }
}

impl Image for Cow {
    fn cluster_fields(&self, guest: u64) -> Result<Vec<Field>> {
        let here = if self.layout.raw_cow() { "the sector is read from the raw file, at the same offset" } else { "the sector is stored in this file's data area" };
        Ok(self.bitmap.field(&*self.file, guest, here, "the sector is read from the backing file (zeros without one)")?.into_iter().collect())
    }

    fn info(&self) -> &ImageInfo {
        &self.info
    }

    fn header_fields(&self) -> Vec<Field> {
        let h = &self.header;
        let g = self.layout.geometry();
        let name = |at: usize| quoted(&c_string(&h[at..at + NAME]).0);
        let mtime = be32(h, g.mtime).unwrap_or(0) as i32;
        let mut f = vec![
            field(h, "magic", 0, 4, String::from("\"OOOM\" (0x4f4f4f4d)"), "identifies a cow header (QEMU's source calls it MOOO)"),
            field(h, "version", 4, 4, format!("{}", be32(h, 4).unwrap_or(0)), "always 2"),
            field(h, "backing_file", 8, NAME, name(8), "the image this one's clear bits read from; NUL-terminated, \"\" = none"),
        ];
        if let Some(at) = g.raw_file {
            f.push(field(h, "raw_file", at, NAME, name(at), "the raw file holding the sectors whose bits are set, at their own offsets"));
        }
        f.push(field(h, "mtime", g.mtime, 4, if mtime == 0 { String::from("0 (unknown)") } else { unix_time(mtime as i64) },
            "the backing file's modification time when this image was made; QEMU no longer checks it"));
        if g.size - g.mtime == 8 {
            f.push(field(h, "(padding)", g.mtime + 4, 4, format!("{:#x}", be32(h, g.mtime + 4).unwrap_or(0)), "alignment of the 64-bit size in the x86_64 struct layout"));
        }
        f.push(field(h, "size", g.size, 8, size(be64(h, g.size)), "disk size in bytes; the disk is size / 512 whole sectors"));
        f.push(field(h, "sectorsize", g.sectorsize, 4, format!("{}", be32(h, g.sectorsize).unwrap_or(0)), "bytes per bitmap bit; always 512. Where it stands tells the header layout"));
        if g.header - g.sectorsize > 4 {
            f.push(field(h, "(padding)", g.sectorsize + 4, g.header - g.sectorsize - 4, String::from("struct tail padding"), "the struct's size rounded to 8 bytes"));
        }
        f
    }

    fn regions(&self) -> Result<Vec<Region>> {
        let mut r = vec![
            Region { name: String::from("header"), kind: RegionKind::Header, offset: 0, length: self.header.len() as u64 },
            Region { name: String::from("bitmap"), kind: RegionKind::Bitmap, offset: self.bitmap.offset, length: self.bitmap.bytes() },
        ];
        if !self.layout.raw_cow() && self.file.size() > self.data_start {
            r.push(Region { name: String::from("data"), kind: RegionKind::Data, offset: self.data_start, length: self.file.size() - self.data_start });
        }
        Ok(r)
    }

    fn runs_end(&self, pos: u64, runs: u64) -> u64 {
        self.bitmap.runs_end(&*self.file, pos, runs)
    }

    fn map(&self, start: u64, len: u64, out: &mut Vec<Extent>) -> Result<()> {
        let raw_cow = self.layout.raw_cow();
        let have_raw = self.raw.is_some();
        self.bitmap.runs(&*self.file, start, start + len, |a, b, set| {
            let kind = match (set, raw_cow) {
                (false, _) => Kind::Unallocated,
                (true, false) => Kind::Data { file: 0, offset: self.data_start + a },
                (true, true) if have_raw => Kind::Data { file: 1, offset: a },
                (true, true) => Kind::Missing { file: 1 },
            };
            Extent::push(out, Extent { start: a, length: b - a, kind });
        })
    }

    fn file(&self, index: u16) -> Option<&Arc<dyn ReadAt>> {
        match index {
            0 => Some(&self.file),
            1 => self.raw.as_ref(),
            _ => None,
        }
    }

    fn check(&self) -> Result<CheckResult> {
        let mut r = CheckResult::default();
        let g = self.layout.geometry();
        let h = &self.header;
        let bytes = be64(h, g.size);
        r.total_clusters = self.bitmap.bits;
        if bytes % SECTOR != 0 {
            r.add(self.finding(Severity::Warning, "size-unaligned", g.size as u64, 8, format!(
                "size {} is not a multiple of 512: the last {} bytes are not part of the disk", bytes, bytes % SECTOR)));
        }
        if !self.backing_terminated {
            r.add(self.finding(Severity::Warning, "name-unterminated", 8, NAME as u64, String::from(
                "backing_file has no NUL within its 1024 bytes; the name was cut there")));
        }
        if let (Some(c), Some(b)) = (self.info.companions.first(), &self.info.backing) {
            if c.name == b.name {
                r.add(self.finding(Severity::Corruption, "names-equal", c.offset, NAME as u64, format!(
                    "raw_file and backing_file are both '{}': set bits and clear bits would read the same file", b.name)));
            }
        }
        let pad: Vec<(usize, usize)> = match self.layout {
            Layout::Cow64 => vec![(1036, 4), (1052, 4)],
            Layout::RawCow64 => vec![(2060, 4), (2076, 4)],
            _ => vec![],
        };
        for (at, n) in pad {
            if h[at..at + n].iter().any(|&b| b != 0) {
                r.add(self.finding(Severity::Warning, "padding-nonzero", at as u64, n as u64, String::from(
                    "struct padding is not zero: written by something other than QEMU, or damaged")));
            }
        }
        let stored = self.file.size().saturating_sub(self.bitmap.offset);
        if stored < self.bitmap.bytes() {
            r.add(self.finding(Severity::Warning, "bitmap-short", self.bitmap.offset + stored, self.bitmap.bytes() - stored, format!(
                "the file ends {} bytes into the {}-byte bitmap; the missing bits read as clear (backing file)", stored, self.bitmap.bytes())));
        }
        let (set, tail) = self.bitmap.count(&*self.file)?;
        r.allocated_clusters = set;
        if tail {
            r.add(self.finding(Severity::Warning, "bits-past-end", self.bitmap.offset + self.bitmap.bytes() - 1, 1, String::from(
                "bits are set past the last sector of the disk; they are ignored")));
        }
        r.add(self.finding(Severity::Info, "bits-set", self.bitmap.offset, self.bitmap.bytes(), format!(
            "{} of {} sectors are stored in this image ({} bits set)", set, self.bitmap.bits, set)));
        if self.layout.raw_cow() {
            match (&self.raw, self.info.companions.first()) {
                (None, Some(c)) => r.add(self.finding(Severity::Warning, "raw-file-missing", c.offset, NAME as u64, format!(
                    "the raw file '{}' is missing: add it to read the sectors this image holds", c.name))),
                (Some(raw), Some(c)) if raw.size() != self.info.virtual_size => r.add(self.finding(Severity::Warning, "raw-file-size", c.offset, NAME as u64, format!(
                    "the raw file '{}' is {} bytes, the header says the disk is {}", c.name, raw.size(), self.info.virtual_size))),
                _ => {}
            }
        } else {
            // Set bits whose sectors lie past the end of this sparse file read as zeros.
            let eof = self.file.size();
            let mut past = 0u64;
            self.bitmap.runs(&*self.file, 0, self.info.virtual_size, |a, b, set| {
                if set {
                    past += (self.data_start + b).saturating_sub(eof.max(self.data_start + a));
                }
            })?;
            if past > 0 {
                r.add(self.finding(Severity::Info, "data-past-eof", eof, 0, format!(
                    "{} sectors marked as stored lie past the end of the file and read as zeros", past / SECTOR)));
            }
        }
        Ok(r)
    }
}

#[cfg(any(test, feature = "samples"))]
pub(crate) mod sample;
#[cfg(test)]
mod tests;
