//! GOW ("Grow On Write", Virtual Bridges: Win4Lin v1, VERDE v2 and v3). No driver code was
//! ever published, only seed 000's description; the layout read here is the one fixed in
//! DECISIONS.md section 4, and every report says it is reconstructed.
//!
//! A 24-byte preamble, then a fixed map of N little-endian u32 entries, one per logical
//! 64 KiB block (0 = never written, reads zero; k >= 1 = data block k-1), and in v3 a second
//! array of N u32 version numbers (the session that last changed the block). Data block b
//! starts at D + b * 64 KiB, where D is the header length (v1, unaligned) or the header
//! length rounded up to 512 (v2, v3).
//!
//! The map and version entries that cover the disk are read once, at open, in a few large
//! reads (a 256 GiB v3 image has a 32 MiB header; the browser pays per read, not per byte).
//! `check` streams the whole arrays the same way.
use alloc::{boxed::Box, format, string::String, sync::Arc, vec, vec::Vec};

use super::bytes::le32;
use super::fmt::{field, size};
use crate::error::{Error, Result};
use crate::image::{Driver, Image, OpenCtx};
use crate::io::{read_clipped, read_exact_at, ReadAt};
use crate::limits;
use crate::model::*;

mod check;
/// The tests' writer (also the CLI tests'), and the demo samples.
#[cfg(any(test, feature = "samples"))]
pub mod sample;
#[cfg(test)]
mod tests;

pub static DRIVER: Driver = Driver { name: "gow", probe, open };

/// Guest bytes per logical block, and bytes per data block in the file.
pub const BLOCK: u64 = 64 << 10;
/// Bytes before the map: magic, flags, virtual size, allocated blocks, session.
pub const PREAMBLE: u64 = 24;
/// Flags bit 0: a read-only (gold) image.
pub const FLAG_READ_ONLY: u32 = 1;
/// Map and version entries read per step (8 MiB of entries).
pub(crate) const WINDOW_ENTRIES: u64 = limits::MAX_COALESCED_READ / 4;
/// Bytes of an array shown as its field's raw bytes.
const RAW_SHOWN: usize = 16;

const RECONSTRUCTED: &str = "reconstructed from the published description (no driver code was ever published)";

fn probe(head: &[u8], _file: &dyn ReadAt) -> bool {
    version_of(head).is_some()
}

fn version_of(head: &[u8]) -> Option<u8> {
    match head.get(0..4)? {
        b"GOW1" => Some(1),
        b"GOW2" => Some(2),
        b"GOW3" => Some(3),
        _ => None,
    }
}

/// Where things stand in a GOW file of one version (DECISIONS.md 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub version: u8,
    /// Map entries (logical blocks the format can address).
    pub entries: u64,
    /// Byte offset of the version array (v3), else of where it would be.
    pub versions_at: u64,
    /// Header length H.
    pub header: u64,
    /// Data area start D.
    pub data: u64,
}

impl Geometry {
    pub fn of(version: u8) -> Geometry {
        let entries: u64 = if version == 1 { 1 << 20 } else { 1 << 22 };
        let versions_at = PREAMBLE + 4 * entries;
        let header = if version == 3 { versions_at + 4 * entries } else { versions_at };
        let data = if version == 1 { header } else { header.next_multiple_of(512) };
        Geometry { version, entries, versions_at, header, data }
    }

    pub fn has_versions(&self) -> bool {
        self.version == 3
    }

    /// Byte offset of the map entry of logical block `i`.
    pub fn entry_at(&self, i: u64) -> u64 {
        PREAMBLE + 4 * i
    }

    /// Byte offset of the version entry of logical block `i`.
    pub fn version_at(&self, i: u64) -> u64 {
        self.versions_at + 4 * i
    }

    /// Byte offset of data block `b` (a map entry of `b + 1`).
    pub fn block_at(&self, b: u64) -> u64 {
        self.data + b * BLOCK
    }

    /// Largest virtual size the map can address.
    pub fn max_size(&self) -> u64 {
        self.entries * BLOCK
    }
}

pub(crate) struct Gow {
    file: Arc<dyn ReadAt>,
    name: String,
    geo: Geometry,
    /// The 24-byte preamble as stored.
    head: [u8; PREAMBLE as usize],
    flags: u32,
    virtual_size: u64,
    allocated: u32,
    session: u32,
    /// Map entries of the blocks covering the disk (`ceil(virtual_size / 64 KiB)` of them).
    map: Vec<u32>,
    /// v3: version entries of the same blocks; empty before v3.
    versions: Vec<u32>,
    /// First bytes of each array, for the header view.
    map_raw: Vec<u8>,
    versions_raw: Vec<u8>,
    info: ImageInfo,
}

fn invalid(offset: u64, message: String) -> Error {
    Error::Invalid { format: "gow", offset, message }
}

/// Replace `words` with `count` u32 entries read from `offset` in one read (callers keep
/// `count` to a window). Bytes past the end of the file read as zero.
fn read_words(file: &dyn ReadAt, offset: u64, count: u64, words: &mut Vec<u32>) -> Result<()> {
    let mut bytes = vec![0u8; (count * 4) as usize];
    read_clipped(file, offset, &mut bytes)?;
    words.clear();
    words.extend(bytes.chunks_exact(4).map(|c| le32(c, 0)));
    Ok(())
}

/// `count` u32 entries from `offset`, which must all lie inside the file.
fn read_entries(file: &dyn ReadAt, offset: u64, count: u64, what: &'static str) -> Result<Vec<u32>> {
    let bytes = count * 4;
    if bytes > limits::MAX_TABLE_BYTES {
        return Err(Error::Limit { what, needed: bytes, limit: limits::MAX_TABLE_BYTES });
    }
    let file_size = file.size();
    if offset + bytes > file_size {
        return Err(Error::PastEnd { what, offset, len: bytes, file_size });
    }
    let mut out = Vec::with_capacity(count as usize);
    let mut words = Vec::new();
    let mut done = 0;
    while done < count {
        let n = (count - done).min(WINDOW_ENTRIES);
        read_words(file, offset + done * 4, n, &mut words)?;
        out.extend_from_slice(&words);
        done += n;
    }
    Ok(out)
}

/// The first [`RAW_SHOWN`] bytes of an array, from the entries already read when there are
/// enough of them (no read), else from the file.
fn first_bytes(file: &dyn ReadAt, offset: u64, entries: &[u32]) -> Result<Vec<u8>> {
    let shown = RAW_SHOWN / 4;
    if entries.len() >= shown {
        return Ok(entries[..shown].iter().flat_map(|e| e.to_le_bytes()).collect());
    }
    let mut raw = vec![0u8; RAW_SHOWN];
    read_clipped(file, offset, &mut raw)?;
    Ok(raw)
}

fn open(file: Arc<dyn ReadAt>, ctx: &OpenCtx) -> Result<Box<dyn Image>> {
    Ok(Box::new(Gow::open(file, ctx.name)?))
}

impl Gow {
    fn open(file: Arc<dyn ReadAt>, name: &str) -> Result<Gow> {
        let mut head = [0u8; PREAMBLE as usize];
        read_exact_at(&*file, 0, &mut head, "GOW header")?;
        let version = version_of(&head).ok_or_else(|| invalid(0, String::from("bad magic: not GOW1, GOW2 or GOW3")))?;
        let geo = Geometry::of(version);
        let flags = le32(&head, 4);
        let virtual_size = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
        let allocated = le32(&head, 16);
        let session = le32(&head, 20);
        if virtual_size % 512 != 0 || virtual_size > geo.max_size() {
            return Err(invalid(8, format!(
                "virtual size {} is not a multiple of 512 or is larger than the {} a GOW{} map addresses ({} blocks of 64 KiB)",
                virtual_size, size(geo.max_size()), version, geo.entries)));
        }
        let blocks = virtual_size.div_ceil(BLOCK);
        let map = read_entries(&*file, PREAMBLE, blocks, "GOW map entries covering the disk")?;
        let versions = if geo.has_versions() {
            read_entries(&*file, geo.versions_at, blocks, "GOW version entries covering the disk")?
        } else {
            Vec::new()
        };
        let map_raw = first_bytes(&*file, PREAMBLE, &map)?;
        let versions_raw = if geo.has_versions() { first_bytes(&*file, geo.versions_at, &versions)? } else { Vec::new() };
        let what = match version {
            1 => "GOW1 (Win4Lin; up to 64 GiB, data area unaligned)",
            2 => "GOW2 (VERDE user image; up to 256 GiB, data area 512-aligned)",
            _ => "GOW3 (VERDE gold image; up to 256 GiB, 512-aligned, block versions)",
        };
        let info = ImageInfo {
            format: "gow",
            variant: format!("{}; layout {}", what, RECONSTRUCTED),
            layout: LayoutStatus::Reconstructed,
            virtual_size,
            cluster_size: BLOCK,
            backing: None,
            dirty: false,
            companions: Vec::new(),
        };
        Ok(Gow { file, name: String::from(name), geo, head, flags, virtual_size, allocated, session, map, versions, map_raw, versions_raw, info })
    }

    /// The file offset an entry points to, or None when the entry is 0 (never written).
    fn data_offset(&self, entry: u32) -> Option<u64> {
        (entry != 0).then(|| self.geo.block_at(entry as u64 - 1))
    }

    fn finding(&self, severity: Severity, code: &'static str, offset: u64, length: u64, guest: Option<u64>, message: String) -> Finding {
        Finding { severity, code, file: self.name.clone(), offset: Some(offset), length, guest, message }
    }
}

fn flags_text(flags: u32) -> String {
    let mut s = String::from(if flags & FLAG_READ_ONLY != 0 { "read-only (gold image)" } else { "read-write" });
    if flags & !FLAG_READ_ONLY != 0 {
        s = format!("{} | unknown bits {:#x}", s, flags & !FLAG_READ_ONLY);
    }
    s
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", n, if n == 1 { one } else { many })
}

impl Image for Gow {
    fn cluster_fields(&self, guest: u64) -> Result<Vec<Field>> {
        let i = guest / BLOCK;
        let Some(&e) = self.map.get(i as usize) else { return Ok(Vec::new()) };
        let meaning = match self.data_offset(e) {
            None => String::from("0: never written, reads as zeros"),
            Some(at) => format!("{}: data block {}, at byte {} of the file", e, e - 1, at),
        };
        let mut out = alloc::vec![Field { name: format!("map entry {}", i), offset: self.geo.entry_at(i), size: 4, raw: e.to_le_bytes().to_vec(), value: meaning, note: String::from("the logical block's entry in the map (0 = not written, k = data block k-1)") }];
        if let Some(&v) = self.versions.get(i as usize) {
            out.push(Field { name: format!("version entry {}", i), offset: self.geo.version_at(i), size: 4, raw: v.to_le_bytes().to_vec(), value: format!("{}", v), note: String::from("the session that last wrote this block (0: never)") });
        }
        Ok(out)
    }
    fn info(&self) -> &ImageInfo {
        &self.info
    }

    fn header_fields(&self) -> Vec<Field> {
        let h = &self.head;
        let g = self.geo;
        let blocks = self.map.len() as u64;
        let magic = core::str::from_utf8(&h[0..4]).unwrap_or("?");
        let mut f = vec![
            field(h, "magic", 0, 4, format!("\"{}\" (version {})", magic, g.version), "identifies a GOW image and its version (reconstructed: no driver code was published)"),
            field(h, "flags", 4, 4, flags_text(self.flags), "bit 0: read-only (gold) image; other bits are not defined"),
            field(h, "virtual size", 8, 8, size(self.virtual_size), "size of the disk the guest sees; a multiple of 512, at most the map's reach"),
            field(h, "allocated blocks", 16, 4, format!("{} ({} of data)", plural(self.allocated as u64, "block", "blocks"), size(self.allocated as u64 * BLOCK)),
                "64 KiB data blocks the file holds; the file should be the data area's start plus this many blocks"),
            field(h, "session", 20, 4,
                if g.has_versions() { format!("{}", self.session) } else { format!("{} (unused before GOW3)", self.session) },
                if g.has_versions() { "the current session: the version stamped on blocks changed in the last session" } else { "reserved before GOW3; 0" }),
        ];
        let used = self.map.iter().filter(|&&e| e != 0).count() as u64;
        f.push(Field {
            name: String::from("block map"),
            offset: PREAMBLE,
            size: 4 * g.entries,
            raw: self.map_raw.clone(),
            value: format!("{} of {} entries used ({} cover the disk)", used, g.entries, blocks),
            note: format!(
                "u32 per logical 64 KiB block: 0 = never written (reads zero), k = data block k-1 at byte {} + (k-1) * 65536{}",
                g.data,
                if g.version == 1 { " (data area not aligned)" } else { " (data area rounded up to 512)" }
            ),
        });
        if g.has_versions() {
            let max = self.versions.iter().copied().max().unwrap_or(0);
            let stamped = self.versions.iter().filter(|&&v| v != 0).count() as u64;
            f.push(Field {
                name: String::from("block versions"),
                offset: g.versions_at,
                size: 4 * g.entries,
                raw: self.versions_raw.clone(),
                value: format!("{} of {} blocks versioned, newest version {}", stamped, blocks, max),
                note: String::from("u32 per logical block: the session that last changed it (0 = never written); a local copy fetches the blocks whose master version is newer"),
            });
        }
        f
    }

    fn regions(&self) -> Result<Vec<Region>> {
        let g = self.geo;
        let mut r = vec![
            Region { name: String::from("header"), kind: RegionKind::Header, offset: 0, length: PREAMBLE },
            Region { name: String::from("block map"), kind: RegionKind::Table, offset: PREAMBLE, length: 4 * g.entries },
        ];
        if g.has_versions() {
            r.push(Region { name: String::from("block versions"), kind: RegionKind::Table, offset: g.versions_at, length: 4 * g.entries });
        }
        let end = self.file.size();
        if end > g.data {
            r.push(Region { name: String::from("data blocks"), kind: RegionKind::Data, offset: g.data, length: end - g.data });
        }
        Ok(r)
    }

    fn run_granule(&self) -> u64 {
        BLOCK
    }

    fn map(&self, start: u64, len: u64, out: &mut Vec<Extent>) -> Result<()> {
        let end = (start + len).min(self.virtual_size);
        let eof = self.file.size();
        let mut pos = start;
        while pos < end {
            let i = pos / BLOCK;
            let block_end = ((i + 1) * BLOCK).min(end);
            let kind = match self.data_offset(self.map[i as usize]) {
                None => Kind::Unallocated,
                // A block wholly past the end of the file: the map names data that is not there.
                Some(at) if at >= eof => Kind::Invalid { entry: self.geo.entry_at(i) },
                // A short final block reads as zero past the end of the file.
                Some(at) => Kind::Data { file: 0, offset: at + (pos - i * BLOCK) },
            };
            Extent::push(out, Extent { start: pos, length: block_end - pos, kind });
            pos = block_end;
        }
        Ok(())
    }

    fn file(&self, index: u16) -> Option<&Arc<dyn ReadAt>> {
        (index == 0).then_some(&self.file)
    }

    fn check(&self) -> Result<CheckResult> {
        check::run(self)
    }

    fn block_versions(&self, first_block: u64, count: u64) -> Result<Option<BlockVersions>> {
        if !self.geo.has_versions() {
            return Ok(None);
        }
        let n = self.versions.len() as u64;
        let a = first_block.min(n);
        let b = first_block.saturating_add(count).min(n);
        Ok(Some(BlockVersions { granularity: BLOCK, first_block: a, versions: self.versions[a as usize..b as usize].to_vec() }))
    }
}
