//! VHDX (MS-VHDX 1.0): a 1 MiB header section (file identifier, two headers chosen by
//! sequence number, two copies of the region table), a log of metadata updates, a metadata
//! region (block size, sector sizes, disk size, parent locator), and a BAT whose 64-bit
//! entries give each payload block's state and place, with one sector bitmap entry after
//! every `chunk_ratio` payload entries (for differencing disks: which sectors of a
//! partially present block this file holds; the rest are the parent's).
//!
//! A non-zero log_guid means the log holds updates not yet applied: we replay them in
//! memory (an [`log::Overlay`] over the file, never written) before reading any metadata,
//! as QEMU's block/vhdx.c does on the file; `OpenOptions::as_stored` shows the file as it
//! is instead. Payload states read as QEMU reads them (NOT_PRESENT, UNDEFINED, ZERO and
//! UNMAPPED as zeros, FULLY_PRESENT from the file), and PARTIALLY_PRESENT through the
//! sector bitmap over the parent, which QEMU does not support.
use alloc::{boxed::Box, format, string::String, sync::Arc, vec::Vec};

use crate::error::{Error, Result};
use crate::formats::bitmap::CowBitmap;
use crate::formats::bytes::{is_zero, le32, le64, ms_guid, utf16};
use crate::image::{Driver, Image, OpenCtx};
use crate::io::{read_clipped, read_entries, read_exact_at, table_buf, NoHoles, ReadAt};
use crate::limits;
use crate::model::*;

mod check;
pub mod log;
pub mod structs;
#[cfg(any(test, feature = "samples"))]
pub(crate) mod sample;
#[cfg(test)]
pub(crate) mod tests;

use log::{Log, Overlay};
use structs::*;

pub static DRIVER: Driver = Driver { name: "vhdx", probe, open };

fn probe(head: &[u8], _file: &dyn ReadAt) -> bool {
    head.starts_with(b"vhdxfile")
}

fn invalid(offset: u64, message: String) -> Error {
    Error::Invalid { format: "vhdx", offset, message }
}

fn unsupported(offset: u64, message: String) -> Error {
    Error::Unsupported { format: "vhdx", offset, message }
}

pub const NOT_PRESENT: u64 = 0;
pub const UNDEFINED: u64 = 1;
pub const ZERO: u64 = 2;
/// UNMAPPED as the 0.95 draft of the spec numbered it; QEMU still reads it as zeros.
pub const UNMAPPED_V095: u64 = 3;
pub const UNMAPPED: u64 = 5;
pub const FULLY_PRESENT: u64 = 6;
pub const PARTIALLY_PRESENT: u64 = 7;
/// Sector bitmap entries: 0 not present, 6 present.
pub const SB_PRESENT: u64 = 6;
/// Sectors one 1 MiB sector bitmap block covers.
const SECTORS_PER_BITMAP: u64 = 1 << 23;

pub fn state_name(s: u64) -> &'static str {
    match s {
        NOT_PRESENT => "NOT_PRESENT",
        UNDEFINED => "UNDEFINED",
        ZERO => "ZERO",
        UNMAPPED_V095 => "UNMAPPED (0.95 numbering)",
        UNMAPPED => "UNMAPPED",
        FULLY_PRESENT => "FULLY_PRESENT",
        PARTIALLY_PRESENT => "PARTIALLY_PRESENT",
        _ => "invalid state",
    }
}

/// The metadata items that size and shape the disk.
#[derive(Clone, Default)]
pub(crate) struct Meta {
    pub at: u64,
    pub length: u64,
    pub table: Vec<u8>,
    pub entries: Vec<MetaEntry>,
    pub block_size: u32,
    pub flags: u32,
    pub virtual_size: u64,
    pub page83: [u8; 16],
    pub logical: u32,
    pub physical: u32,
    pub parent: Option<ParentLocator>,
}

pub(crate) struct Vhdx {
    /// The file as read: the overlay when the log was replayed.
    file: Arc<dyn ReadAt>,
    overlay: Option<Arc<Overlay>>,
    name: String,
    info: ImageInfo,
    pub(crate) headers: [Header; 2],
    pub(crate) current: usize,
    pub(crate) regions: RegionTable,
    /// The other copy of the region table (None when unreadable).
    pub(crate) regions_other: Option<RegionTable>,
    pub(crate) bat_region: RegionEntry,
    pub(crate) meta: Meta,
    pub(crate) bat: Vec<u64>,
    pub(crate) block: u64,
    pub(crate) chunk: u64,
    pub(crate) differencing: bool,
    pub(crate) log: Log,
    pub(crate) dirty: bool,
    pub(crate) as_stored: bool,
    pub(crate) creator: String,
}

fn open(file: Arc<dyn ReadAt>, ctx: &OpenCtx) -> Result<Box<dyn Image>> {
    Ok(Box::new(Vhdx::open(file, ctx.name, ctx.options.as_stored)?))
}

/// QEMU's choice of header: the valid one, or of two valid ones the larger sequence
/// number; equal numbers are fine only if the headers are identical (Disk2VHD writes so).
fn choose(h: &[Header; 2]) -> Result<usize> {
    match (h[0].valid(), h[1].valid()) {
        (true, false) => Ok(0),
        (false, true) => Ok(1),
        (false, false) => Err(invalid(HEADER1_AT, String::from("neither header is valid (signature \"head\", version 1, CRC-32C): not a readable VHDX"))),
        (true, true) => match h[0].sequence().cmp(&h[1].sequence()) {
            core::cmp::Ordering::Greater => Ok(0),
            core::cmp::Ordering::Less => Ok(1),
            core::cmp::Ordering::Equal if h[0].raw[..80] == h[1].raw[..80] => Ok(0),
            _ => Err(invalid(HEADER2_AT + 8, String::from("both headers are valid, differ, and have the same sequence number: which is current cannot be told"))),
        },
    }
}

impl Vhdx {
    pub(crate) fn open(raw: Arc<dyn ReadAt>, name: &str, as_stored: bool) -> Result<Vhdx> {
        // The file identifier, both headers and both region tables: one read.
        raw.prefetch(&mut [(0, 320 * KIB)]);
        let mut id = [0u8; 520];
        read_exact_at(&*raw, 0, &mut id, "VHDX file identifier")?;
        if &id[..8] != b"vhdxfile" {
            return Err(invalid(0, String::from("no \"vhdxfile\" signature: not a VHDX image")));
        }
        let creator = utf16(&id[8..520], false);
        let mut hb = [0u8; HEADER_BYTES];
        read_exact_at(&*raw, HEADER1_AT, &mut hb, "VHDX header 1")?;
        let h1 = Header::new(&hb, HEADER1_AT);
        read_exact_at(&*raw, HEADER2_AT, &mut hb, "VHDX header 2")?;
        let h2 = Header::new(&hb, HEADER2_AT);
        let headers = [h1, h2];
        let current = choose(&headers)?;
        let h = &headers[current];
        let dirty = !is_zero(h.log_guid());
        let mut log = Log::read(&*raw, h.log_offset(), h.log_length() as u64, h.log_guid());
        let (file, overlay): (Arc<dyn ReadAt>, Option<Arc<Overlay>>) = if dirty && !as_stored && !log.active.is_empty() {
            let mut o = Overlay::new(raw.clone());
            log.replay(&mut o);
            let o = Arc::new(o);
            (o.clone(), Some(o))
        } else {
            (Arc::new(NoHoles(raw.clone())), None)
        };
        // Region tables, read after the replay as QEMU does.
        let mut rb = table_buf("VHDX region table", REGION_BYTES as u64)?;
        read_exact_at(&*file, REGION1_AT, &mut rb, "VHDX region table")?;
        let r1 = RegionTable::new(&rb, REGION1_AT);
        let r2 = read_exact_at(&*file, REGION2_AT, &mut rb, "VHDX region table 2").ok().map(|_| RegionTable::new(&rb, REGION2_AT));
        let (regions, regions_other) = match (r1.valid(), r2) {
            (true, r2) => (r1, r2),
            (false, Some(r2)) if r2.valid() => (r2, Some(r1)),
            _ => return Err(invalid(REGION1_AT, String::from("neither region table is valid (signature \"regi\", CRC-32C)"))),
        };
        let (mut bat_region, mut meta_region) = (None, None);
        for (i, e) in regions.entries.iter().enumerate() {
            let at = regions.at + 16 + 32 * i as u64;
            let slot = if e.guid == BAT_GUID {
                &mut bat_region
            } else if e.guid == METADATA_GUID {
                &mut meta_region
            } else if e.required {
                return Err(unsupported(at, format!("a required region {} that this reader does not know", ms_guid(&e.guid))));
            } else {
                continue;
            };
            if slot.replace(e.clone()).is_some() {
                return Err(invalid(at, String::from("a region appears twice in the region table")));
            }
        }
        let (Some(bat_region), Some(meta_region)) = (bat_region, meta_region) else {
            return Err(invalid(regions.at + 8, String::from("the region table lacks the BAT or the metadata region")));
        };
        let meta = read_meta(&*file, &meta_region)?;
        let block = meta.block_size as u64;
        let lss = meta.logical as u64;
        let differencing = meta.flags & 2 != 0;
        if differencing && meta.parent.is_none() {
            return Err(invalid(meta.at, String::from("the file parameters say the disk has a parent, but there is no parent locator")));
        }
        let vsize = meta.virtual_size;
        if vsize > limits::MAX_VIRTUAL_SIZE {
            return Err(Error::Limit { what: "VHDX disk size", needed: vsize, limit: limits::MAX_VIRTUAL_SIZE });
        }
        let chunk = SECTORS_PER_BITMAP * lss / block;
        let data_blocks = vsize.div_ceil(block);
        let entries = if differencing {
            data_blocks.div_ceil(chunk) * (chunk + 1)
        } else if data_blocks == 0 {
            0
        } else {
            data_blocks + (data_blocks - 1) / chunk
        };
        if entries * 8 > bat_region.length as u64 {
            return Err(invalid(bat_region.offset, format!("a BAT of {} bytes cannot hold the {} entries a disk of {} bytes needs", bat_region.length, entries, vsize)));
        }
        let bat = read_entries(&*file, "VHDX BAT", bat_region.offset, entries, 8, true, |c| le64(c, 0))?;
        let backing = meta.parent.as_ref().filter(|_| differencing).map(|p| parent_ref(p, &meta));
        let variant = format!("VHDX {}{}", if differencing { "differencing" } else if meta.flags & 1 != 0 { "fixed" } else { "dynamic" },
            if dirty { if overlay.is_some() { ", log replayed in memory" } else { ", log not replayed" } } else { "" });
        Ok(Vhdx {
            file,
            overlay,
            name: String::from(name),
            info: ImageInfo {
                format: "vhdx",
                variant,
                layout: LayoutStatus::Confirmed,
                virtual_size: vsize,
                cluster_size: block,
                backing,
                dirty,
                companions: Vec::new(),
            },
            headers,
            current,
            regions,
            regions_other,
            bat_region,
            meta,
            bat,
            block,
            chunk,
            differencing,
            log,
            dirty,
            as_stored,
            creator,
        })
    }

    /// BAT index of payload block `i`, and of the sector bitmap of its chunk.
    pub(crate) fn payload_index(&self, i: u64) -> u64 {
        i + i / self.chunk
    }
    pub(crate) fn bitmap_index(&self, i: u64) -> u64 {
        (i / self.chunk) * (self.chunk + 1) + self.chunk
    }
    pub(crate) fn entry_at(&self, index: u64) -> u64 {
        self.bat_region.offset + 8 * index
    }
    pub(crate) fn file_size(&self) -> u64 {
        self.file.size()
    }
    /// A block's file offset if it can hold data: past the header section, inside the file.
    pub(crate) fn usable(&self, e: u64) -> Option<u64> {
        let off = e >> 20 << 20;
        (off >= MIB && off < self.file_size()).then_some(off)
    }

    /// Push `[a, b)` stored at host `host` (block-relative math done by the caller), split
    /// where the replayed log changed the bytes (those are read through the overlay).
    fn push_data(&self, a: u64, b: u64, host: u64, out: &mut Vec<Extent>) {
        let Some(o) = self.overlay.as_ref().filter(|o| o.touches(host, host + (b - a))) else {
            Extent::push(out, Extent { start: a, length: b - a, kind: Kind::Data { file: 0, offset: host } });
            return;
        };
        let mut g = a;
        for (s, e) in o.patched(host, host + (b - a)) {
            let (gs, ge) = (a + (s - host), a + (e - host));
            Extent::push(out, Extent { start: g, length: gs - g, kind: Kind::Data { file: 0, offset: host + (g - a) } });
            Extent::push(out, Extent { start: gs, length: ge - gs, kind: Kind::Computed { file: 0 } });
            g = ge;
        }
        Extent::push(out, Extent { start: g, length: b - g, kind: Kind::Data { file: 0, offset: host + (g - a) } });
    }

    /// Host offset of guest byte `g` when it is stored in this file (for computed reads).
    fn host_of(&self, g: u64) -> Option<u64> {
        let i = g / self.block;
        let e = *self.bat.get(self.payload_index(i) as usize)?;
        matches!(e & 7, FULLY_PRESENT | PARTIALLY_PRESENT).then_some(())?;
        Some(self.usable(e)? + g % self.block)
    }

    fn map_block(&self, i: u64, pos: u64, stop: u64, out: &mut Vec<Extent>) -> Result<()> {
        let base = i * self.block;
        let pidx = self.payload_index(i);
        let e = self.bat.get(pidx as usize).copied().unwrap_or(0);
        let invalid = Kind::Invalid { entry: self.entry_at(pidx) };
        let mut push = |kind| Extent::push(out, Extent { start: pos, length: stop - pos, kind });
        match e & 7 {
            NOT_PRESENT => push(Kind::Unallocated),
            UNDEFINED | ZERO | UNMAPPED_V095 | UNMAPPED => push(Kind::Zero),
            FULLY_PRESENT => match self.usable(e) {
                Some(off) => self.push_data(pos, stop, off + (pos - base), out),
                None => push(invalid),
            },
            PARTIALLY_PRESENT if self.differencing => {
                let sidx = self.bitmap_index(i);
                let sb = self.bat.get(sidx as usize).copied().unwrap_or(0);
                let (Some(off), Some(bm)) = (self.usable(e), (sb & 7 == SB_PRESENT).then(|| self.usable(sb)).flatten()) else {
                    let entry = if self.usable(e).is_none() { pidx } else { sidx };
                    Extent::push(out, Extent { start: pos, length: stop - pos, kind: Kind::Invalid { entry: self.entry_at(entry) } });
                    return Ok(());
                };
                let lss = self.meta.logical as u64;
                let spb = self.block / lss;
                let bitmap = CowBitmap { offset: bm + (i % self.chunk) * spb / 8, bits: spb, granule: lss };
                let mut runs = Vec::new();
                bitmap.runs(&*self.file, pos - base, stop - base, |a, b, set| runs.push((a, b, set)))?;
                for (a, b, set) in runs {
                    if set {
                        self.push_data(base + a, base + b, off + a, out);
                    } else {
                        Extent::push(out, Extent { start: base + a, length: b - a, kind: Kind::Unallocated });
                    }
                }
            }
            _ => push(invalid),
        }
        Ok(())
    }
}

fn read_meta(file: &dyn ReadAt, region: &RegionEntry) -> Result<Meta> {
    let mut m = Meta { at: region.offset, length: region.length as u64, ..Meta::default() };
    // The table and the items after it (QEMU and Hyper-V put them 64 KiB in): one read.
    file.prefetch(&mut [(region.offset, (region.length as u64).min(256 * KIB))]);
    let n = (region.length as u64).min(METADATA_TABLE_BYTES as u64);
    let mut table = table_buf("VHDX metadata table", n)?;
    read_exact_at(file, region.offset, &mut table, "VHDX metadata table")?;
    if n < 32 || &table[..8] != b"metadata" {
        return Err(invalid(region.offset, String::from("no \"metadata\" signature at the start of the metadata region")));
    }
    table.resize(METADATA_TABLE_BYTES, 0);
    m.entries = meta_entries(&table);
    m.table = table;
    let mut seen: Vec<[u8; 16]> = Vec::new();
    let item = |e: &MetaEntry, min: u32| -> Result<Vec<u8>> {
        let at = region.offset + 32 + 32 * e.index as u64;
        if e.length < min || e.offset as u64 + e.length as u64 > region.length as u64 {
            return Err(invalid(at, format!("metadata item {} ({} bytes at {}) is too short or lies outside the metadata region", item_name(&e.id), e.length, e.offset)));
        }
        let mut b = table_buf("VHDX metadata item", e.length as u64)?;
        read_exact_at(file, region.offset + e.offset as u64, &mut b, "VHDX metadata item")?;
        Ok(b)
    };
    for e in m.entries.clone() {
        let at = region.offset + 32 + 32 * e.index as u64;
        let known = [FILE_PARAMETERS, VIRTUAL_DISK_SIZE, PAGE83, LOGICAL_SECTOR, PHYSICAL_SECTOR, PARENT_LOCATOR];
        if !known.contains(&e.id) {
            if e.required() {
                return Err(unsupported(at, format!("a required metadata item {} that this reader does not know", ms_guid(&e.id))));
            }
            continue;
        }
        if seen.contains(&e.id) {
            return Err(invalid(at, format!("metadata item {} appears twice", item_name(&e.id))));
        }
        seen.push(e.id);
        match e.id {
            x if x == FILE_PARAMETERS => {
                let b = item(&e, 8)?;
                (m.block_size, m.flags) = (le32(&b, 0), le32(&b, 4));
            }
            x if x == VIRTUAL_DISK_SIZE => m.virtual_size = le64(&item(&e, 8)?, 0),
            x if x == PAGE83 => m.page83.copy_from_slice(&item(&e, 16)?[..16]),
            x if x == LOGICAL_SECTOR => m.logical = le32(&item(&e, 4)?, 0),
            x if x == PHYSICAL_SECTOR => m.physical = le32(&item(&e, 4)?, 0),
            _ => m.parent = Some(ParentLocator::parse(&item(&e, 20)?, region.offset + e.offset as u64)),
        }
    }
    for (id, what) in [(FILE_PARAMETERS, "file parameters"), (VIRTUAL_DISK_SIZE, "virtual disk size"), (PAGE83, "page 83 data"), (LOGICAL_SECTOR, "logical sector size"), (PHYSICAL_SECTOR, "physical sector size")] {
        if !seen.contains(&id) {
            return Err(unsupported(region.offset, format!("the required metadata item \"{}\" is missing", what)));
        }
    }
    let bs = m.block_size as u64;
    if !bs.is_power_of_two() || !(MIB..=256 * MIB).contains(&bs) {
        return Err(invalid(region.offset, format!("block size {} is not a power of two from 1 MiB to 256 MiB", bs)));
    }
    if m.logical != 512 && m.logical != 4096 {
        return Err(invalid(region.offset, format!("logical sector size {} is neither 512 nor 4096", m.logical)));
    }
    Ok(m)
}

/// The parent as the chain should look for it: the relative path, else the file name of an
/// absolute or volume path (the parent is then looked for beside the child, and found by
/// its data_write_guid if the name does not resolve).
fn parent_ref(p: &ParentLocator, meta: &Meta) -> BackingRef {
    let slashes = |s: &str| s.replace('\\', "/");
    let with_at = |key: &str| p.entries.iter().find(|(k, v, _)| k == key && !v.is_empty()).map(|(_, v, at)| (v.clone(), *at));
    let (name, offset) = if let Some((v, at)) = with_at("relative_path") {
        let s = slashes(&v);
        (String::from(s.strip_prefix("./").unwrap_or(&s)), at)
    } else if let Some((v, at)) = with_at("absolute_win32_path").or_else(|| with_at("volume_path")) {
        (String::from(slashes(&v).rsplit('/').next().unwrap_or_default()), at)
    } else {
        (String::new(), meta.at)
    };
    BackingRef { name, format: Some(String::from("vhdx")), offset }
}

/// A GUID as written in a parent locator ("{xxxxxxxx-...}"), in our form.
fn normal_guid(s: &str) -> String {
    s.trim().trim_start_matches('{').trim_end_matches('}').to_ascii_lowercase()
}

impl Image for Vhdx {
    fn info(&self) -> &ImageInfo {
        &self.info
    }

    fn header_fields(&self) -> Vec<Field> {
        let mut v = Vec::new();
        let fx = |name: &str, offset: u64, size: u64, value: String, note: &str| Field { name: String::from(name), offset, size, raw: Vec::new(), value, note: String::from(note) };
        v.push(fx("signature", 0, 8, String::from("\"vhdxfile\""), "identifies a VHDX file"));
        v.push(fx("creator", 8, 512, format!("{:?}", self.creator), "the program that made the file (UTF-16), for diagnosis only"));
        for (k, h) in self.headers.iter().enumerate() {
            let label = if k == 0 { "header 1" } else { "header 2" };
            if h.valid() || h.raw[..4] == *b"head" {
                v.extend(h.fields(label, k == self.current));
            } else {
                v.push(fx(label, h.at, HEADER_BYTES as u64, String::from("not a valid header"), "the other header is used"));
            }
        }
        v.extend(self.regions.fields());
        if let Some(o) = &self.regions_other {
            v.push(fx("region table copy", o.at, REGION_BYTES as u64,
                if o.raw == self.regions.raw { format!("identical to the table at {}", self.regions.at) } else { String::from("differs from the table in use (or is damaged)") },
                "the region table is kept twice, at 192 KiB and 256 KiB"));
        }
        let m = &self.meta;
        v.push(fx("metadata entry_count", m.at + 10, 2, format!("{}", m.entries.len()), "items in the metadata table"));
        for e in &m.entries {
            let flags = format!("{}{}{}", if e.flags & 1 != 0 { " user" } else { "" }, if e.flags & 2 != 0 { " virtual-disk" } else { "" }, if e.required() { " required" } else { "" });
            v.push(fx(&format!("metadata item {}", e.index), m.at + 32 + 32 * e.index as u64, 32,
                format!("{} {}: {} bytes at {}{}", item_name(&e.id), ms_guid(&e.id), e.length, e.offset, flags), "item GUID, offset in the metadata region, length, flags"));
        }
        let at_of = |id: [u8; 16]| m.entries.iter().find(|e| e.id == id).map_or(m.at, |e| m.at + e.offset as u64);
        let bs = m.block_size as u64;
        v.push(fx("block_size", at_of(FILE_PARAMETERS), 4, crate::formats::fmt::size(bs), "payload block size: the unit of allocation"));
        v.push(fx("file parameter flags", at_of(FILE_PARAMETERS) + 4, 4, format!("{:#x}{}{}", m.flags,
            if m.flags & 1 != 0 { " LeaveBlocksAllocated (fixed)" } else { "" }, if m.flags & 2 != 0 { " HasParent (differencing)" } else { "" }),
            "bit 0: blocks stay allocated (fixed disk); bit 1: the disk has a parent"));
        v.push(fx("virtual_disk_size", at_of(VIRTUAL_DISK_SIZE), 8, crate::formats::fmt::size(m.virtual_size), "the size the guest sees"));
        v.push(fx("page_83_data", at_of(PAGE83), 16, ms_guid(&m.page83), "the disk's SCSI identity (VPD page 0x83)"));
        v.push(fx("logical_sector_size", at_of(LOGICAL_SECTOR), 4, format!("{} bytes", m.logical), "the guest's sector size; one sector bitmap bit per logical sector"));
        v.push(fx("physical_sector_size", at_of(PHYSICAL_SECTOR), 4, format!("{} bytes", m.physical), "the sector size reported to the guest as physical"));
        if let Some(p) = &m.parent {
            v.push(fx("parent locator type", at_of(PARENT_LOCATOR), 16, format!("{}{}", ms_guid(&p.locator_type), if p.locator_type == VHDX_PARENT_TYPE { " (VHDX parent)" } else { "" }), "the kind of parent"));
            for (k, val, at) in &p.entries {
                v.push(fx(&format!("parent {}", k), *at, val.len() as u64 * 2, format!("{:?}", val), match k.as_str() {
                    "parent_linkage" => "the parent's data_write_guid: the chain checks the parent has it",
                    "parent_linkage2" => "another data_write_guid the parent may have",
                    "relative_path" => "the parent's path relative to this file",
                    "volume_path" => "the parent's path by volume GUID",
                    "absolute_win32_path" => "the parent's absolute Windows path",
                    _ => "a parent locator key/value pair",
                }));
            }
        }
        v.push(fx("BAT", self.bat_region.offset, self.bat.len() as u64 * 8, format!(
            "{} entries ({} payload blocks, a sector bitmap entry after every {})", self.bat.len(), self.info.virtual_size.div_ceil(self.block), self.chunk),
            "state in bits 0-2, file offset in MiB in bits 20-63"));
        let lg = &self.log;
        v.push(fx("log", lg.offset, lg.length, format!("{} entries, {} in the sequence to replay; {}", lg.entries.len(), lg.active.len(),
            match (self.dirty, lg.replayed) {
                (false, _) => "clean (log_guid is zero)",
                (true, true) => "dirty: replayed in memory",
                (true, false) if self.as_stored => "dirty: shown as stored",
                (true, false) => "dirty, but nothing could be replayed",
            }), "metadata updates written before they are applied"));
        v
    }

    fn regions(&self) -> Result<Vec<Region>> {
        let reg = |name: &str, kind, offset, length| Region { name: String::from(name), kind, offset, length };
        let mut r = alloc::vec![
            reg("file identifier", RegionKind::Header, 0, 64 * KIB),
            reg("header 1", RegionKind::Header, HEADER1_AT, 64 * KIB),
            reg("header 2", RegionKind::Header, HEADER2_AT, 64 * KIB),
            reg("region table 1", RegionKind::Header, REGION1_AT, 64 * KIB),
            reg("region table 2", RegionKind::Header, REGION2_AT, 64 * KIB),
            reg("metadata region", RegionKind::Table, self.meta.at, self.meta.length),
            reg("BAT", RegionKind::Table, self.bat_region.offset, self.bat_region.length as u64),
        ];
        if self.log.length > 0 {
            r.push(reg("log", RegionKind::Journal, self.log.offset, self.log.length));
        }
        let mut listed = 0;
        for (k, &e) in self.bat.iter().enumerate() {
            let is_bitmap = (k as u64 + 1).is_multiple_of(self.chunk + 1);
            let Some(off) = self.usable(e) else { continue };
            if listed >= 4096 {
                break;
            }
            match (is_bitmap, e & 7) {
                (true, SB_PRESENT) => r.push(Region { name: format!("sector bitmap {}", k as u64 / (self.chunk + 1)), kind: RegionKind::Bitmap, offset: off, length: MIB }),
                (false, FULLY_PRESENT | PARTIALLY_PRESENT) => {
                    let i = k as u64 - k as u64 / (self.chunk + 1);
                    r.push(Region { name: format!("payload block {}", i), kind: RegionKind::Data, offset: off, length: self.block });
                }
                _ => continue,
            }
            listed += 1;
        }
        Ok(r)
    }

    fn runs_end(&self, pos: u64, runs: u64) -> u64 {
        // A block is one run unless its data is split: by a sector bitmap (partially
        // present), by the replayed log, or by holes in the host file (at most one a sector).
        let sectors = self.block / 512 + 1;
        // The BAT covers every block (the open refuses one that does not).
        let blocks = self.info.virtual_size.div_ceil(self.block);
        crate::formats::walk::by_blocks(pos, self.block, blocks, 512, runs, |i| {
            match self.bat.get(self.payload_index(i) as usize).map_or(NOT_PRESENT, |&e| e & 7) {
                FULLY_PRESENT | PARTIALLY_PRESENT => sectors,
                _ => 1,
            }
        })
    }

    fn map(&self, start: u64, len: u64, out: &mut Vec<Extent>) -> Result<()> {
        let end = start + len;
        if self.differencing {
            // The sector bitmap slices of the partially present blocks in range, in one go.
            let spb = self.block / self.meta.logical as u64;
            let mut ranges: Vec<(u64, u64)> = (start / self.block..end.div_ceil(self.block))
                .filter(|&i| self.bat.get(self.payload_index(i) as usize).is_some_and(|&e| e & 7 == PARTIALLY_PRESENT))
                .filter_map(|i| {
                    let sb = *self.bat.get(self.bitmap_index(i) as usize)?;
                    Some((self.usable(sb)? + (i % self.chunk) * spb / 8, spb / 8))
                })
                .take(1 << 16)
                .collect();
            self.file.prefetch(&mut ranges);
        }
        let mut pos = start;
        while pos < end {
            let i = pos / self.block;
            let stop = end.min((i + 1) * self.block);
            self.map_block(i, pos, stop, out)?;
            pos = stop;
        }
        Ok(())
    }

    fn read_computed(&self, extent: &Extent, guest: u64, buf: &mut [u8]) -> Result<()> {
        // Bytes the replayed log changed: read through the overlay, block by block.
        let mut done = 0usize;
        while done < buf.len() {
            let g = guest + done as u64;
            let n = ((self.block - g % self.block) as usize).min(buf.len() - done);
            let host = self.host_of(g).ok_or(Error::Invalid { format: "vhdx", offset: extent.start, message: String::from("no stored block for computed bytes") })?;
            read_clipped(&*self.file, host, &mut buf[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    fn file(&self, index: u16) -> Option<&Arc<dyn ReadAt>> {
        (index == 0).then_some(&self.file)
    }

    fn identity(&self) -> Option<String> {
        let g = self.headers[self.current].data_write_guid();
        (!is_zero(g)).then(|| format!("vhdx-guid:{}", ms_guid(g)))
    }

    fn backing_identity(&self) -> Option<String> {
        let p = self.meta.parent.as_ref().filter(|_| self.differencing)?;
        p.get("parent_linkage").map(|g| format!("vhdx-guid:{}", normal_guid(g)))
    }

    fn check(&self) -> Result<CheckResult> {
        check::run(self)
    }

    fn records(&self) -> Vec<Record> {
        self.log.records(self.dirty)
    }
}
