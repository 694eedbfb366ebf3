//! VHD (qemu-img's "vpc"): Microsoft's Virtual Hard Disk, version 1.0.
//!
//! - fixed: the guest's bytes, then a 512-byte footer at the end of the file;
//! - dynamic: a copy of the footer at offset 0, a dynamic disk header naming the BAT, the
//!   BAT (one big-endian sector number per block, 0xffffffff: not allocated), and blocks,
//!   each a sector bitmap (one bit per sector, most significant bit first) then the data;
//!   the footer again at the end;
//! - differencing: dynamic, plus the parent's UUID and its name in parent locators; a
//!   clear bitmap bit (or an unallocated block) means "read the parent".
//!
//! QEMU's block/vpc.c is the behaviour matched: the disk size rule (CHS geometry for
//! images made by Virtual PC and old QEMU, current_size for the others), and blocks of
//! dynamic disks read as stored. Unlike QEMU we read the bitmaps (a dynamic disk's clear
//! bit reads as zeros, as the spec says; QEMU writes full bitmaps, so its images agree),
//! follow differencing disks to their parents, and open damaged images to report them.
use alloc::{boxed::Box, format, string::String, sync::Arc, vec, vec::Vec};

use crate::error::{Error, Result};
use crate::image::{Driver, Image, OpenCtx};
use crate::io::{read_clipped, read_entries, read_exact_at, NoHoles, ReadAt};
use crate::limits;
use crate::model::*;

mod check;
pub mod footer;
#[cfg(any(test, feature = "samples"))]
pub(crate) mod sample;
#[cfg(test)]
pub(crate) mod tests;

use crate::formats::bytes::{be32, is_zero, utf16, uuid};
use footer::{at, DynHeader, Footer, Locator, COOKIE, FOOTER_BYTES, HEADER_BYTES, TYPE_DIFFERENCING, TYPE_DYNAMIC, TYPE_FIXED};

pub static DRIVER: Driver = Driver { name: "vpc", probe, open };

/// A BAT entry for a block not stored in this file.
pub const UNALLOCATED: u32 = 0xffff_ffff;

/// A footer at offset 0 (dynamic, differencing), or a footer of a fixed disk at the end of
/// the file; also a dynamic disk whose first sector is damaged but whose end footer is whole.
fn probe(head: &[u8], file: &dyn ReadAt) -> bool {
    if head.starts_with(COOKIE) {
        return true;
    }
    let size = file.size();
    let mut tail = [0u8; FOOTER_BYTES];
    if size < FOOTER_BYTES as u64 || file.read_at(size - FOOTER_BYTES as u64, &mut tail).is_err() || !tail.starts_with(COOKIE) {
        return false;
    }
    // Another image can end with a VHD footer (one that holds a VHD file in its guest's
    // data): take the file only if the footer describes this file.
    let f = Footer::new(&tail, size - FOOTER_BYTES as u64);
    if f.stored_checksum() != f.computed_checksum() {
        return false;
    }
    let data_end = size - FOOTER_BYTES as u64;
    match f.disk_type() {
        TYPE_FIXED => f.current_size() <= data_end && data_end - f.current_size() < 1 << 20,
        TYPE_DYNAMIC | TYPE_DIFFERENCING => {
            let mut cookie = [0u8; 8];
            f.data_offset().checked_add(HEADER_BYTES as u64).is_some_and(|e| e <= size)
                && file.read_at(f.data_offset(), &mut cookie).is_ok()
                && &cookie == footer::HEADER_COOKIE
        }
        _ => false,
    }
}

fn invalid(offset: u64, message: String) -> Error {
    Error::Invalid { format: "vpc", offset, message }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Variant {
    Fixed,
    Dynamic,
    Differencing,
}

pub(crate) struct Vpc {
    file: Arc<dyn ReadAt>,
    name: String,
    info: ImageInfo,
    variant: Variant,
    /// The footer the image is read by.
    footer: Footer,
    /// The other copy (the end footer of a dynamic disk read by its copy at 0, or the reverse).
    other: Option<Footer>,
    dynh: Option<DynHeader>,
    locators: Vec<Locator>,
    bat: Vec<u32>,
    block: u64,
    bitmap_bytes: u64,
}

fn open(file: Arc<dyn ReadAt>, ctx: &OpenCtx) -> Result<Box<dyn Image>> {
    Ok(Box::new(Vpc::open(file, ctx.name)?))
}

/// Sector bitmap bytes before each block's data: one bit per sector, in whole sectors.
fn bitmap_bytes(block: u64) -> u64 {
    (block / 512).div_ceil(8).next_multiple_of(512)
}

impl Vpc {
    fn open(file: Arc<dyn ReadAt>, name: &str) -> Result<Vpc> {
        let size = file.size();
        // The footer copy, the dynamic disk header and the BAT's start: one read.
        file.prefetch(&mut [(0, size.min(64 * 1024))]);
        let mut buf = [0u8; FOOTER_BYTES];
        read_exact_at(&*file, 0, &mut buf, "VHD footer")?;
        let head = Footer::new(&buf, 0);
        let tail_at = size - FOOTER_BYTES as u64;
        read_exact_at(&*file, tail_at, &mut buf, "VHD footer")?;
        let tail = Footer::new(&buf, tail_at);
        let sound = |f: &Footer| f.cookie_ok() && f.stored_checksum() == f.computed_checksum();
        // The copy at 0 first, as QEMU reads it; the end footer when the first is damaged.
        let (footer, other) = match (sound(&head), sound(&tail)) {
            _ if tail_at == 0 => (head, None),
            (true, _) => (head, Some(tail)),
            (false, true) => (tail, Some(head)),
            _ if head.cookie_ok() => (head, Some(tail)),
            _ if tail.cookie_ok() => (tail, Some(head)),
            _ => return Err(invalid(0, String::from("no \"conectix\" footer at the start or the end of the file: not a VHD image"))),
        };
        let virtual_size = footer.virtual_size();
        if virtual_size > limits::MAX_VIRTUAL_SIZE {
            return Err(Error::Limit { what: "VHD disk size", needed: virtual_size, limit: limits::MAX_VIRTUAL_SIZE });
        }
        let at_ = |rel: usize| footer.at + rel as u64;
        let mut v = Vpc {
            file: file.clone(),
            name: String::from(name),
            info: ImageInfo {
                format: "vpc",
                variant: String::new(),
                layout: LayoutStatus::Confirmed,
                virtual_size,
                cluster_size: 0,
                backing: None,
                dirty: false,
                companions: Vec::new(),
            },
            variant: Variant::Fixed,
            other: other.filter(|o| o.at != footer.at),
            footer: footer.clone(),
            dynh: None,
            locators: Vec::new(),
            bat: Vec::new(),
            block: 0,
            bitmap_bytes: 0,
        };
        if footer.disk_type() == TYPE_FIXED {
            v.info.variant = String::from("VHD fixed");
            // The footer at the end says where the data stops; the copy at 0 (not normal for
            // a fixed disk) is guest data.
            return Ok(v);
        }
        let hdr_at = footer.data_offset();
        let mut raw = [0u8; HEADER_BYTES];
        read_exact_at(&*file, hdr_at, &mut raw, "VHD dynamic disk header").map_err(|_| {
            invalid(at_(at::DATA_OFFSET), format!("the dynamic disk header at {:#x} lies past the end of the file ({} bytes)", hdr_at, size))
        })?;
        let h = DynHeader::new(&raw, hdr_at);
        if !h.cookie_ok() {
            return Err(invalid(hdr_at, format!("no \"cxsparse\" dynamic disk header at {:#x} (disk type {})", hdr_at, footer.disk_type())));
        }
        let block = h.block_size() as u64;
        if !block.is_power_of_two() || block < 512 {
            return Err(invalid(hdr_at + at::dyn_::BLOCK_SIZE as u64, format!("block size {} is not a power of two of at least 512", block)));
        }
        if virtual_size / block > u32::MAX as u64 {
            return Err(invalid(hdr_at + at::dyn_::BLOCK_SIZE as u64, format!("{} blocks of {} bytes are too many", virtual_size / block, block)));
        }
        let entries = h.max_table_entries() as u64;
        if entries * block < virtual_size {
            return Err(invalid(hdr_at + at::dyn_::MAX_TABLE_ENTRIES as u64, format!(
                "a BAT of {} entries of {} bytes cannot map a disk of {} bytes", entries, block, virtual_size)));
        }
        v.bat = read_entries(&*file, "VHD BAT", h.table_offset(), entries, 4, true, |c| be32(c, 0))?;
        v.block = block;
        v.bitmap_bytes = bitmap_bytes(block);
        v.info.cluster_size = block;
        let differencing = footer.disk_type() == TYPE_DIFFERENCING;
        v.variant = if differencing { Variant::Differencing } else { Variant::Dynamic };
        v.info.variant = String::from(if differencing { "VHD differencing" } else { "VHD dynamic" });
        v.locators = read_locators(&*file, &h);
        if differencing {
            v.info.backing = Some(parent_name(&h, &v.locators));
        }
        v.dynh = Some(h);
        // QEMU reports allocated blocks as data whatever the host holds under them.
        v.file = Arc::new(NoHoles(file));
        Ok(v)
    }

    fn entry_at(&self, i: u64) -> u64 {
        self.dynh.as_ref().map_or(0, |h| h.table_offset()) + 4 * i
    }

    /// Host offset of block `i`'s bitmap, if allocated.
    fn block_at(&self, i: u64) -> Option<u64> {
        match self.bat.get(i as usize).copied() {
            None | Some(UNALLOCATED) => None,
            Some(e) => Some(e as u64 * 512),
        }
    }

    /// Map `[pos, stop)` of allocated block `i` (bitmap at `bm`) by its sector bitmap.
    fn map_block(&self, i: u64, bm: u64, pos: u64, stop: u64, out: &mut Vec<Extent>) -> Result<()> {
        let base = i * self.block;
        let data = bm + self.bitmap_bytes;
        if data >= self.file.size() {
            Extent::push(out, Extent { start: pos, length: stop - pos, kind: Kind::Invalid { entry: self.entry_at(i) } });
            return Ok(());
        }
        let clear = if self.variant == Variant::Differencing { Kind::Unallocated } else { Kind::Zero };
        let (s0, s1) = ((pos - base) / 512, (stop - base - 1) / 512);
        let mut bits = vec![0u8; (s1 / 8 - s0 / 8 + 1) as usize];
        read_clipped(&*self.file, bm + s0 / 8, &mut bits)?;
        let mut emit = |from: u64, to: u64, set: bool| {
            let (a, b) = ((base + from * 512).max(pos), (base + to * 512).min(stop));
            let kind = if set { Kind::Data { file: 0, offset: data + (a - base) } } else { clear };
            Extent::push(out, Extent { start: a, length: b - a, kind });
        };
        let mut run: Option<(u64, bool)> = None;
        let mut s = s0;
        while s <= s1 {
            let byte = bits[(s / 8 - s0 / 8) as usize];
            let (n, set) = if s % 8 == 0 && s + 7 <= s1 && (byte == 0 || byte == 0xff) { (8, byte == 0xff) } else { (1, byte >> (7 - s % 8) & 1 == 1) };
            match run {
                Some((_, v)) if v == set => {}
                _ => {
                    if let Some((from, v)) = run.replace((s, set)) {
                        emit(from, s, v);
                    }
                }
            }
            s += n;
        }
        if let Some((from, v)) = run {
            emit(from, s1 + 1, v);
        }
        Ok(())
    }
}

/// Read and decode each parent locator's data (bounded, one coalesced prefetch).
fn read_locators(file: &dyn ReadAt, h: &DynHeader) -> Vec<Locator> {
    let mut locs = h.locators();
    let mut ranges: Vec<(u64, u64)> = locs.iter().map(|l| (l.data_offset, l.data_length as u64)).collect();
    file.prefetch(&mut ranges);
    for l in &mut locs {
        let len = l.data_length as u64;
        if len > 4 * limits::MAX_NAME_BYTES {
            l.problem = Some(format!("{} bytes is longer than any path diskscope reads", len));
            continue;
        }
        if l.data_offset.checked_add(len).is_none_or(|e| e > file.size()) {
            l.problem = Some(format!("its data at {:#x} runs past the end of the file", l.data_offset));
            continue;
        }
        let mut b = vec![0u8; len as usize];
        if let Err(e) = file.read_at(l.data_offset, &mut b) {
            l.problem = Some(format!("{}", e));
            continue;
        }
        l.path = match &l.code {
            b"W2ru" | b"W2ku" => Some(utf16(&b, false)),
            b"Wi2r" | b"Wi2k" | b"MacX" => {
                let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
                Some(String::from_utf8_lossy(&b[..end]).into_owned())
            }
            _ => None,
        };
    }
    locs
}

/// The name the chain should look for: a relative locator as a relative path, a Mac file
/// URL as its path, otherwise the file name alone of a Windows absolute path or of the
/// parent's unicode name (the parent is then found beside the child, and its UUID checked).
fn parent_name(h: &DynHeader, locs: &[Locator]) -> BackingRef {
    let pick = |code: &[u8; 4]| locs.iter().find(|l| &l.code == code && l.path.as_deref().is_some_and(|p| !p.is_empty()));
    let slashes = |p: &str| p.replace('\\', "/");
    let base = |p: &str| String::from(slashes(p).rsplit('/').next().unwrap_or_default());
    let rel = |p: &str| {
        let s = slashes(p);
        String::from(s.strip_prefix("./").unwrap_or(&s))
    };
    let mac = |p: &str| {
        let s = p.strip_prefix("file://").unwrap_or(p);
        String::from(s.strip_prefix("localhost").unwrap_or(s))
    };
    let found = pick(b"W2ru").map(|l| (rel(l.path.as_deref().unwrap_or_default()), l.data_offset))
        .or_else(|| pick(b"Wi2r").map(|l| (rel(l.path.as_deref().unwrap_or_default()), l.data_offset)))
        .or_else(|| pick(b"MacX").map(|l| (mac(l.path.as_deref().unwrap_or_default()), l.data_offset)))
        .or_else(|| pick(b"W2ku").map(|l| (base(l.path.as_deref().unwrap_or_default()), l.data_offset)))
        .or_else(|| pick(b"Wi2k").map(|l| (base(l.path.as_deref().unwrap_or_default()), l.data_offset)));
    let (name, offset) = found.unwrap_or_else(|| (base(&h.parent_name()), h.at + at::dyn_::PARENT_NAME as u64));
    BackingRef { name, format: Some(String::from("vpc")), offset }
}

impl Image for Vpc {
    fn cluster_fields(&self, guest: u64) -> Result<Vec<Field>> {
        if self.variant == Variant::Fixed || guest >= self.info.virtual_size {
            return Ok(Vec::new());
        }
        let i = guest / self.block;
        let entry = self.bat.get(i as usize).copied().unwrap_or(u32::MAX);
        let mut out = alloc::vec![Field {
            name: format!("BAT entry {}", i),
            offset: self.entry_at(i),
            size: 4,
            raw: entry.to_be_bytes().to_vec(),
            value: if entry == u32::MAX { String::from("0xffffffff: the block is not allocated") } else { format!("sector {}: the block's bitmap is at byte {}", entry, entry as u64 * 512) },
            note: String::from("the block's entry in the block allocation table"),
        }];
        if let Some(bm) = self.block_at(i) {
            let s = guest % self.block / 512;
            let mut b = [0u8; 1];
            read_clipped(&*self.file, bm + s / 8, &mut b)?;
            let set = b[0] >> (7 - s % 8) & 1 == 1;
            let clear = if self.variant == Variant::Differencing { "read from the parent" } else { "reads as zeros" };
            out.push(Field {
                name: format!("sector bitmap bit {}", s),
                offset: bm + s / 8,
                size: 1,
                raw: b.to_vec(),
                value: format!("{}: the sector {}", if set { "set" } else { "clear" }, if set { "is stored in the block" } else { clear }),
                note: format!("bit {} of this byte (most significant first), one bit per 512-byte sector of block {}", s % 8, i),
            });
        }
        Ok(out)
    }
    fn info(&self) -> &ImageInfo {
        &self.info
    }

    fn header_fields(&self) -> Vec<Field> {
        let mut v = self.footer.fields("");
        if let Some(o) = &self.other {
            let same = o.raw == self.footer.raw;
            v.push(Field {
                name: String::from(if o.at == 0 { "footer copy at the start" } else { "footer at the end" }),
                offset: o.at,
                size: FOOTER_BYTES as u64,
                raw: Vec::new(),
                value: if same {
                    format!("identical to the footer at {}", self.footer.at)
                } else if !o.cookie_ok() {
                    String::from("missing or damaged (no \"conectix\")")
                } else {
                    let first = o.raw.iter().zip(&self.footer.raw).position(|(a, b)| a != b).unwrap_or(0);
                    format!("differs from the footer at {} from byte {} on", self.footer.at, first)
                },
                note: String::from("a dynamic disk keeps two copies of its footer, at the start and at the end"),
            });
        }
        if let Some(h) = &self.dynh {
            v.extend(h.fields(self.variant == Variant::Differencing, &self.locators));
        }
        v
    }

    fn regions(&self) -> Result<Vec<Region>> {
        let reg = |name: &str, kind, offset, length| Region { name: String::from(name), kind, offset, length };
        let mut r = Vec::new();
        let size = self.file.size();
        let Some(h) = &self.dynh else {
            r.push(reg("disk data", RegionKind::Data, 0, size - FOOTER_BYTES as u64));
            r.push(reg("footer", RegionKind::Header, size - FOOTER_BYTES as u64, FOOTER_BYTES as u64));
            return Ok(r);
        };
        r.push(reg("footer copy", RegionKind::Header, 0, FOOTER_BYTES as u64));
        r.push(reg("dynamic disk header", RegionKind::Header, h.at, HEADER_BYTES as u64));
        r.push(reg("BAT", RegionKind::Table, h.table_offset(), self.bat.len() as u64 * 4));
        for l in &self.locators {
            r.push(Region { name: format!("parent locator {} data", l.index), kind: RegionKind::Header, offset: l.data_offset, length: l.data_length as u64 });
        }
        let allocated: Vec<(usize, u64)> = (0..self.bat.len()).filter_map(|i| self.block_at(i as u64).map(|b| (i, b))).collect();
        if allocated.len() <= 4096 {
            for (i, b) in allocated {
                r.push(Region { name: format!("block {} bitmap", i), kind: RegionKind::Bitmap, offset: b, length: self.bitmap_bytes });
                r.push(Region { name: format!("block {} data", i), kind: RegionKind::Data, offset: b + self.bitmap_bytes, length: self.block });
            }
        } else if let (Some(first), Some(last)) = (allocated.iter().map(|a| a.1).min(), allocated.iter().map(|a| a.1).max()) {
            r.push(reg("blocks (sector bitmap and data each)", RegionKind::Data, first, last + self.bitmap_bytes + self.block - first));
        }
        if size >= 2 * FOOTER_BYTES as u64 {
            r.push(reg("footer", RegionKind::Header, size - FOOTER_BYTES as u64, FOOTER_BYTES as u64));
        }
        Ok(r)
    }

    fn runs_end(&self, pos: u64, runs: u64) -> u64 {
        if self.variant == Variant::Fixed {
            // The file's bytes, then (for a file shorter than its disk) one invalid run.
            let data_end = self.file.size().saturating_sub(FOOTER_BYTES as u64);
            return if runs >= 2 || pos >= data_end { u64::MAX } else { data_end };
        }
        // An unallocated block is one run; an allocated one up to a run per sector.
        let sectors = self.block / 512;
        crate::formats::walk::by_blocks(pos, self.block, self.bat.len() as u64, 512, runs, |i| match self.block_at(i) {
            None => 1,
            Some(_) => sectors + 1,
        })
    }

    fn map(&self, start: u64, len: u64, out: &mut Vec<Extent>) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let end = start + len;
        if self.variant == Variant::Fixed {
            // The guest's bytes are the file's, up to the footer (the last 512 bytes).
            let data_end = self.file.size() - FOOTER_BYTES as u64;
            let stored = end.min(data_end.max(start));
            Extent::push(out, Extent { start, length: stored - start, kind: Kind::Data { file: 0, offset: start } });
            let entry = self.footer.at + at::CURRENT_SIZE as u64;
            Extent::push(out, Extent { start: stored, length: end - stored, kind: Kind::Invalid { entry } });
            return Ok(());
        }
        // The bitmaps of the blocks in range, in one coalesced prefetch.
        let (first, last) = (start / self.block, (end - 1) / self.block);
        let mut ranges: Vec<(u64, u64)> = (first..=last).filter_map(|i| self.block_at(i).map(|b| (b, self.bitmap_bytes))).take(1 << 20).collect();
        self.file.prefetch(&mut ranges);
        let mut pos = start;
        while pos < end {
            let i = pos / self.block;
            let stop = end.min((i + 1) * self.block);
            match self.block_at(i) {
                None if self.variant == Variant::Differencing => Extent::push(out, Extent { start: pos, length: stop - pos, kind: Kind::Unallocated }),
                // QEMU reports a dynamic disk's unallocated blocks as zeros it defines.
                None => Extent::push(out, Extent { start: pos, length: stop - pos, kind: Kind::Zero }),
                Some(bm) => self.map_block(i, bm, pos, stop, out)?,
            }
            pos = stop;
        }
        Ok(())
    }

    fn file(&self, index: u16) -> Option<&Arc<dyn ReadAt>> {
        (index == 0).then_some(&self.file)
    }

    fn identity(&self) -> Option<String> {
        let id = self.footer.uuid();
        (!is_zero(id)).then(|| format!("vhd-uuid:{}", uuid(id)))
    }

    fn backing_identity(&self) -> Option<String> {
        let h = self.dynh.as_ref().filter(|_| self.variant == Variant::Differencing)?;
        (!is_zero(h.parent_uuid())).then(|| format!("vhd-uuid:{}", uuid(h.parent_uuid())))
    }

    fn check(&self) -> Result<CheckResult> {
        check::run(self)
    }
}
