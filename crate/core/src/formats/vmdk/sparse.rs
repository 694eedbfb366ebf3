//! Sparse extents: the hosted sparse extent ("KDMV", VMDK4: monolithicSparse,
//! twoGbMaxExtentSparse, streamOptimized) and the ESX sparse extent ("COWD": VMFSSPARSE).
//! Both map a grain through a grain directory (GD) of 32-bit sector numbers of grain
//! tables (GT), whose 32-bit entries (GTE) are sector numbers of grains. Validity rules are
//! QEMU's (block/vmdk.c), so what QEMU refuses is refused and what it reads is read.
use alloc::{format, string::String, vec, vec::Vec};
use core::cell::Cell;

use crate::codec::{self, Codec, Fill};
use crate::error::{Error, Result};
use crate::formats::bytes::{le16, le32, le64};
use crate::formats::fmt::{field, size};
use crate::io::{read_clipped, table_buf, ReadAt};
use crate::limits;
use crate::model::{Extent, Field, Kind};

pub const SECTOR: u64 = 512;
pub const MAGIC_KDMV: &[u8; 4] = b"KDMV";
pub const MAGIC_COWD: &[u8; 4] = b"COWD";

pub const FLAG_NL_DETECT: u32 = 1 << 0;
pub const FLAG_RGD: u32 = 1 << 1;
pub const FLAG_ZERO_GRAIN: u32 = 1 << 2;
pub const FLAG_COMPRESS: u32 = 1 << 16;
pub const FLAG_MARKER: u32 = 1 << 17;
const KNOWN_FLAGS: u32 = FLAG_NL_DETECT | FLAG_RGD | FLAG_ZERO_GRAIN | FLAG_COMPRESS | FLAG_MARKER;
pub const GD_AT_END: u64 = u64::MAX;
/// A GTE of 1 reads as zeros when the zeroed-grain flag is set (version 2).
pub const GTE_ZEROED: u32 = 1;

/// Metadata marker types (stream-optimized extents).
pub const MARKER_EOS: u32 = 0;
pub const MARKER_GT: u32 = 1;
pub const MARKER_GD: u32 = 2;
pub const MARKER_FOOTER: u32 = 3;

/// QEMU's limits: at most 1 GiB grains, 32 Mi grain-directory entries, 512 GTEs per GT.
const MAX_GRAIN_SECTORS: u64 = 0x20_0000;
const MAX_GD_ENTRIES: u64 = 32 * 1024 * 1024;
/// Grain tables read per prefetch batch.
const GT_BATCH_BYTES: u64 = limits::SPAN_CACHE_BYTES as u64 / 2;

fn invalid(offset: u64, message: String) -> Error {
    Error::Invalid { format: "vmdk", offset, message }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// "KDMV": the hosted sparse extent of VMware's spec (QEMU's VMDK4).
    Hosted,
    /// "COWD": the ESX Server sparse extent (QEMU's VMDK3, VMFSSPARSE).
    Cowd,
}

/// A sparse extent file, opened: header values, the grain directory, what the flags say.
#[derive(Debug, Clone)]
pub struct Sparse {
    pub file: u16,
    pub flavour: Flavour,
    /// The header as stored at offset 0 (512 bytes hosted, 2048 COWD; zeros past the file's end).
    pub raw: Vec<u8>,
    /// Stream-optimized with the GD at the end: the footer's byte offset (its magic) and
    /// its 512 bytes, whose values are the ones in force.
    pub footer: Option<(u64, Vec<u8>)>,
    pub version: u32,
    pub flags: u32,
    /// Disk bytes this extent holds.
    pub capacity: u64,
    /// Grain size in bytes.
    pub grain: u64,
    /// Grain table entries per grain table.
    pub gtes: u64,
    /// Embedded descriptor: byte offset and length (hosted only; 0 length = none).
    pub desc: (u64, u64),
    /// Byte offsets; GD_AT_END when the sector number does not fit a byte offset.
    pub gd_offset: u64,
    pub rgd_offset: Option<u64>,
    /// Bytes of metadata before the first grain (hosted overHead).
    pub overhead: u64,
    /// Byte offset of the header field that gives the GD's offset (for findings).
    pub gd_field: u64,
    /// The grain directory: one sector number per grain table (0 = none).
    pub gd: Vec<u32>,
    /// Entries whose bytes lie inside the file (the rest read as 0, as QEMU reads them).
    pub gd_stored: u64,
    pub compressed: bool,
    pub markers: bool,
    pub zero_grain: bool,
    pub unclean: bool,
    pub file_size: u64,
    /// The host's last two answers where grain tables lie (start, end, whether a hole): a
    /// disk qemu-img made and nobody wrote has its tables in two holes (the directory's and
    /// the redundant directory's, 4 GB for 60 TiB, which check visits in turn), and a walk
    /// asks of each table twice (prefetch, then map); asking the host every time cost two
    /// system calls each.
    known: Cell<[(u64, u64, bool); 2]>,
}

/// One grain table entry as the map sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gte {
    Unallocated,
    Zero,
    /// Byte offset of the grain (or of its marker, when compressed).
    At(u64),
    /// Points at or past the end of the file.
    PastEnd(u64),
}

/// What decoding one compressed grain found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrainMarker {
    /// The grain marker's LBA (sector of the disk), when markers are used.
    pub lba: Option<u64>,
    /// Bytes of compressed data.
    pub size: u64,
}

impl Sparse {
    /// Open a hosted sparse extent ("KDMV" at offset 0). `head` is its first 512 bytes.
    pub fn hosted(file: &dyn ReadAt, id: u16, head: &[u8; 512]) -> Result<Sparse> {
        let file_size = file.size();
        // The header's fields end at byte 79 (compressAlgorithm); zeros read past the end
        // would be blamed on numGTEsPerGT instead.
        if file_size < 79 {
            return Err(Error::PastEnd { what: "VMDK sparse extent header", offset: 0, len: 79, file_size });
        }
        let mut h: &[u8] = head;
        let mut footer = None;
        let mut gd_field = 56;
        let gd_at_end = le64(head, 56) == GD_AT_END;
        let mut foot = [0u8; 1536];
        if gd_at_end {
            // The footer takes precedence: a footer marker, the footer (a header copy) and
            // the end-of-stream marker fill the file's last three sectors.
            let total = file_size.div_ceil(SECTOR) * SECTOR;
            if total < 1536 + SECTOR {
                return Err(invalid(56, String::from("gdOffset says the grain directory is in the footer, but the file is too small to hold one")));
            }
            let at = total - 1536;
            read_clipped(file, at, &mut foot)?;
            let ok = le32(&foot, 8) == 0
                && le32(&foot, 12) == MARKER_FOOTER
                && &foot[512..516] == MAGIC_KDMV
                && le64(&foot, 1024) == 0
                && le32(&foot, 1032) == 0
                && le32(&foot, 1036) == MARKER_EOS;
            if !ok {
                return Err(invalid(at, String::from(
                    "gdOffset says the grain directory is in the footer, but the last three sectors are not a footer marker, a footer and an end-of-stream marker")));
            }
            h = &foot[512..1024];
            if le64(h, 56) == GD_AT_END {
                return Err(invalid(at + 512 + 56, String::from("the footer's gdOffset also says 'at the end': the grain directory cannot be found")));
            }
            footer = Some((at + 512, h.to_vec()));
            gd_field = at + 512 + 56;
        }
        let base = if gd_at_end { gd_field - 56 } else { 0 };
        let version = le32(h, 4);
        if version > 3 {
            return Err(Error::Unsupported { format: "vmdk", offset: base + 4, message: format!("sparse extent version {}; QEMU reads versions 1 to 3", version) });
        }
        let flags = le32(h, 8);
        let gtes = le32(h, 44) as u64;
        if gtes > 512 {
            return Err(invalid(base + 44, format!("numGTEsPerGT is {}; QEMU refuses more than 512", gtes)));
        }
        let grain_sectors = le64(h, 20);
        if gtes == 0 || grain_sectors == 0 {
            return Err(invalid(base + if gtes == 0 { 44 } else { 20 }, String::from("numGTEsPerGT and grainSize must both be non-zero")));
        }
        if grain_sectors > MAX_GRAIN_SECTORS {
            return Err(invalid(base + 20, format!("grainSize is {} sectors; QEMU refuses grains over 1 GiB", grain_sectors)));
        }
        let cap_sectors = le64(h, 12);
        let capacity = cap_sectors.checked_mul(SECTOR).filter(|&c| c <= limits::MAX_VIRTUAL_SIZE).ok_or_else(|| {
            invalid(base + 12, format!("capacity {} sectors is larger than any disk diskscope reads", cap_sectors))
        })?;
        let l1 = cap_sectors.div_ceil(gtes * grain_sectors);
        if l1 > MAX_GD_ENTRIES {
            return Err(invalid(base + 12, format!("the grain directory would have {} entries; QEMU refuses more than {}", l1, MAX_GD_ENTRIES)));
        }
        let gd_offset = le64(h, 56).checked_mul(SECTOR).unwrap_or(GD_AT_END);
        let rgd_offset = (flags & FLAG_RGD != 0).then(|| le64(h, 48).checked_mul(SECTOR).unwrap_or(GD_AT_END));
        let desc = (le64(head, 28).saturating_mul(SECTOR), le64(head, 36).saturating_mul(SECTOR));
        let compressed = le16(h, 77) == 1;
        let mut s = Sparse {
            file: id,
            flavour: Flavour::Hosted,
            raw: head.to_vec(),
            footer,
            version,
            flags,
            capacity,
            grain: grain_sectors * SECTOR,
            gtes,
            desc,
            gd_offset,
            rgd_offset,
            overhead: le64(h, 64).saturating_mul(SECTOR),
            gd_field,
            gd: Vec::new(),
            gd_stored: 0,
            compressed,
            markers: flags & FLAG_MARKER != 0,
            zero_grain: flags & FLAG_ZERO_GRAIN != 0,
            unclean: h[72] != 0,
            file_size,
            known: Cell::new([(0, 0, false); 2]),
        };
        if compressed && s.grain > limits::MAX_TABLE_BYTES {
            return Err(Error::Limit { what: "compressed grain size", needed: s.grain, limit: limits::MAX_TABLE_BYTES });
        }
        (s.gd, s.gd_stored) = read_dir(file, s.gd_offset, l1, "grain directory")?;
        Ok(s)
    }

    /// Open an ESX sparse extent ("COWD" at offset 0).
    pub fn cowd(file: &dyn ReadAt, id: u16) -> Result<Sparse> {
        let file_size = file.size();
        let mut h = vec![0u8; 2048];
        read_clipped(file, 0, &mut h)?;
        let grain_sectors = le32(&h, 16) as u64;
        if grain_sectors == 0 || grain_sectors > MAX_GRAIN_SECTORS {
            return Err(invalid(16, format!("grainSize is {} sectors; it must be 1 to {}", grain_sectors, MAX_GRAIN_SECTORS)));
        }
        let entries = le32(&h, 24) as u64;
        if entries > MAX_GD_ENTRIES {
            return Err(invalid(24, format!("numGDEntries is {}; QEMU refuses more than {}", entries, MAX_GD_ENTRIES)));
        }
        let capacity = le32(&h, 12) as u64 * SECTOR;
        let mut s = Sparse {
            file: id,
            flavour: Flavour::Cowd,
            version: le32(&h, 4),
            flags: le32(&h, 8),
            capacity,
            grain: grain_sectors * SECTOR,
            gtes: 4096,
            desc: (0, 0),
            gd_offset: le32(&h, 20) as u64 * SECTOR,
            rgd_offset: None,
            overhead: 0,
            gd_field: 20,
            gd: Vec::new(),
            gd_stored: 0,
            compressed: false,
            markers: false,
            zero_grain: false,
            unclean: le32(&h, 1648) != 0,
            file_size,
            known: Cell::new([(0, 0, false); 2]),
            raw: h,
            footer: None,
        };
        (s.gd, s.gd_stored) = read_dir(file, s.gd_offset, entries, "grain directory")?;
        Ok(s)
    }

    /// The header values in force: the footer's when there is one.
    pub fn live(&self) -> (&[u8], u64) {
        match &self.footer {
            Some((at, b)) => (b, *at),
            None => (&self.raw, 0),
        }
    }

    /// Guest bytes one grain table covers.
    pub fn gt_cover(&self) -> u64 {
        self.gtes * self.grain
    }

    pub fn gt_bytes(&self) -> u64 {
        self.gtes * 4
    }

    /// The grain table of directory entry `i`: its byte offset, when it lies wholly inside
    /// the file. None for an empty entry; Err(entry offset) for one pointing outside.
    pub fn gt_at(&self, i: u64) -> core::result::Result<Option<u64>, u64> {
        match self.gd.get(i as usize) {
            None => Err(self.gd_field),
            Some(0) => Ok(None),
            Some(&e) => {
                let at = e as u64 * SECTOR;
                if at + self.gt_bytes() <= self.file_size {
                    Ok(Some(at))
                } else {
                    Err(self.gd_offset.saturating_add(i * 4))
                }
            }
        }
    }

    /// What GTE value `e` means.
    pub fn gte(&self, e: u32) -> Gte {
        match e {
            0 => Gte::Unallocated,
            GTE_ZEROED if self.zero_grain => Gte::Zero,
            e => {
                let at = e as u64 * SECTOR;
                let need = if self.compressed && self.markers { 12 } else { 1 };
                if at + need <= self.file_size {
                    Gte::At(at)
                } else {
                    Gte::PastEnd(at)
                }
            }
        }
    }

    /// Whether file bytes `[at, at+len)` are a hole in the host file: grain-table bytes there
    /// read as zeros (every grain unallocated) without reading them.
    pub fn is_hole(&self, file: &dyn ReadAt, at: u64, len: u64) -> bool {
        let known = self.known.get();
        if let Some(&(_, _, hole)) = known.iter().find(|&&(a, b, _)| a <= at && at.saturating_add(len) <= b) {
            return hole;
        }
        match file.allocation(at, file.size().saturating_sub(at)) {
            Some((data, n)) => {
                self.known.set([(at, at.saturating_add(n), !data), known[0]]);
                !data && n >= len
            }
            None => false,
        }
    }

    /// [`Sparse::gt_at`], with a table in a host hole (every entry 0) as no table.
    pub fn stored_gt_at(&self, file: &dyn ReadAt, i: u64) -> core::result::Result<Option<u64>, u64> {
        Ok(self.gt_at(i)?.filter(|&gt| !self.is_hole(file, gt, self.gt_bytes())))
    }

    /// Read entries `[first, first+count)` of the grain table at `gt` (inside the file).
    pub fn read_gt(&self, file: &dyn ReadAt, gt: u64, first: u64, count: u64) -> Result<Vec<u32>> {
        let mut buf = table_buf("grain table", count * 4)?;
        crate::io::read_exact_at(file, gt + first * 4, &mut buf, "grain table")?;
        Ok(buf.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    /// Runs grain table `i` can yield in a map: one where it is absent, outside the file or a
    /// host hole (every grain unallocated), else one per grain.
    pub fn gt_runs(&self, file: &dyn ReadAt, i: u64) -> u64 {
        match self.stored_gt_at(file, i) {
            Ok(Some(_)) => self.gtes,
            _ => 1,
        }
    }

    /// Tell the cache which grain-table bytes `[pos, end)` (extent-relative) needs, up to
    /// one batch; returns the extent-relative offset the batch reaches.
    pub fn prefetch(&self, file: &dyn ReadAt, pos: u64, end: u64) -> u64 {
        let cover = self.gt_cover();
        let mut ranges = Vec::new();
        let mut bytes = 0;
        let mut i = pos / cover;
        while i * cover < end {
            if let Ok(Some(gt)) = self.stored_gt_at(file, i) {
                let a = pos.max(i * cover) - i * cover;
                let b = end.min((i + 1) * cover) - i * cover;
                let (ea, eb) = (a / self.grain * 4, b.div_ceil(self.grain) * 4);
                ranges.push((gt + ea, eb - ea));
                bytes += eb - ea;
                if bytes >= GT_BATCH_BYTES {
                    file.prefetch(&mut ranges);
                    return end.min((i + 1) * cover);
                }
            }
            i += 1;
        }
        file.prefetch(&mut ranges);
        end
    }

    /// Append the extents of `[pos, end)` (extent-relative) at guest offset `base + pos`.
    pub fn map(&self, file: &dyn ReadAt, mut pos: u64, end: u64, base: u64, out: &mut Vec<Extent>) -> Result<()> {
        let cover = self.gt_cover();
        let mut reached = pos;
        while pos < end {
            if pos >= reached {
                reached = self.prefetch(file, pos, end);
            }
            let i = pos / cover;
            let span_end = end.min((i + 1) * cover);
            match self.stored_gt_at(file, i) {
                // Absent, or in a host hole (every entry 0): all of it unallocated.
                Ok(None) => Extent::push(out, Extent { start: base + pos, length: span_end - pos, kind: Kind::Unallocated }),
                Err(entry) => Extent::push(out, Extent { start: base + pos, length: span_end - pos, kind: Kind::Invalid { entry } }),
                Ok(Some(gt)) => {
                    let first = (pos - i * cover) / self.grain;
                    let last = (span_end - i * cover).div_ceil(self.grain);
                    let table = self.read_gt(file, gt, first, last - first)?;
                    for (k, &e) in table.iter().enumerate() {
                        let g = i * cover + (first + k as u64) * self.grain;
                        let (a, b) = (g.max(pos), (g + self.grain).min(span_end));
                        let kind = match self.gte(e) {
                            Gte::Unallocated => Kind::Unallocated,
                            Gte::Zero => Kind::Zero,
                            Gte::PastEnd(_) => Kind::Invalid { entry: gt + (first + k as u64) * 4 },
                            Gte::At(at) if self.compressed => Kind::Compressed { file: self.file, offset: at },
                            Gte::At(at) => Kind::Data { file: self.file, offset: at + (a - g) },
                        };
                        Extent::push(out, Extent { start: base + a, length: b - a, kind });
                    }
                }
            }
            pos = span_end;
        }
        Ok(())
    }

    /// Decode the compressed grain stored at `at` into `out` (a grain's bytes). `valid` is
    /// how many of the grain's bytes lie inside the extent: the last grain of a disk whose
    /// size is not a multiple of the grain may decode to just those bytes, as QEMU writes it.
    pub fn decode(&self, file: &dyn ReadAt, at: u64, valid: u64, out: &mut [u8]) -> core::result::Result<GrainMarker, String> {
        let grain = self.grain;
        let (marker, data_at, len) = if self.markers {
            let mut m = [0u8; 12];
            crate::io::read_exact_at(file, at, &mut m, "grain marker").map_err(|e| format!("{}", e))?;
            let size = le32(&m, 8) as u64;
            if size == 0 {
                return Err(String::from("a metadata marker (size 0) is where a grain marker should be"));
            }
            if size > 2 * grain {
                return Err(format!("the grain marker says {} bytes of compressed data, more than the {} QEMU reads for a {}-byte grain", size, 2 * grain, grain));
            }
            (GrainMarker { lba: Some(le64(&m, 0)), size }, at + 12, size)
        } else {
            (GrainMarker { lba: None, size: grain }, at, grain)
        };
        // Only bytes the file has (bounded by the file, not by the marker). QEMU reads zeros
        // past the end; a stream that would need them is reported as cut short here.
        let have = file.size().saturating_sub(data_at).min(len);
        let mut input = vec![0u8; have as usize];
        read_clipped(file, data_at, &mut input).map_err(|e| format!("{}", e))?;
        match codec::decode(Codec::Zlib, &input, out) {
            Ok(Fill::Exact) => Ok(marker),
            Ok(Fill::Overflow) => Err(format!("the grain decodes to more than its {} bytes", grain)),
            Err(e) if valid < grain => match codec::decode(Codec::Zlib, &input, &mut out[..valid as usize]) {
                Ok(Fill::Exact) => {
                    out[valid as usize..].fill(0);
                    Ok(marker)
                }
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Bytes a compressed grain occupies in the file (marker and data, in whole sectors).
    pub fn stored_len(&self, m: &GrainMarker) -> u64 {
        (if self.markers { 12 } else { 0 } + m.size).div_ceil(SECTOR) * SECTOR
    }

    /// The header's fields, in file order; `prefix` names the file for extents other than
    /// the image file itself.
    pub fn fields(&self, prefix: &str) -> Vec<Field> {
        match self.flavour {
            Flavour::Hosted => hosted_fields(&self.raw, 0, prefix, ""),
            Flavour::Cowd => cowd_fields(&self.raw, prefix),
        }
    }

    /// The footer's fields (stream-optimized with the grain directory at the end).
    pub fn footer_fields(&self, prefix: &str) -> Vec<Field> {
        match &self.footer {
            Some((at, b)) => hosted_fields(b, *at, prefix, "footer "),
            None => Vec::new(),
        }
    }
}

/// Read a directory of `entries` u32 sector numbers at `offset`; bytes past the file's
/// end read as 0 (QEMU's reads past the end return zeros). Returns the table and how many
/// entries were inside the file.
fn read_dir(file: &dyn ReadAt, offset: u64, entries: u64, what: &'static str) -> Result<(Vec<u32>, u64)> {
    let stored = if offset == GD_AT_END { 0 } else { file.size().saturating_sub(offset).min(entries * 4) / 4 };
    // A MiB at a time: a directory at the table limit held as bytes and as entries was 64 MiB.
    let gd = crate::io::read_entries(file, what, offset, entries, 4, false, |c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))?;
    Ok((gd, stored))
}

/// Read the directory at `offset` (the redundant GD, for check).
pub fn read_gd(file: &dyn ReadAt, offset: u64, entries: u64) -> Result<(Vec<u32>, u64)> {
    read_dir(file, offset, entries, "redundant grain directory")
}

fn flag_names(v: u32) -> String {
    let names: Vec<&str> = [
        (FLAG_NL_DETECT, "valid newline detection"),
        (FLAG_RGD, "redundant grain table"),
        (FLAG_ZERO_GRAIN, "zeroed-grain GTEs"),
        (FLAG_COMPRESS, "compressed grains"),
        (FLAG_MARKER, "markers"),
    ]
    .iter()
    .filter(|(b, _)| v & b != 0)
    .map(|(_, n)| *n)
    .collect();
    let mut s = format!("{:#x}: {}", v, if names.is_empty() { String::from("none") } else { names.join(" | ") });
    if v & !KNOWN_FLAGS != 0 {
        s.push_str(&format!(" | unknown {:#x}", v & !KNOWN_FLAGS));
    }
    s
}

fn sectors(v: u64) -> String {
    match v.checked_mul(SECTOR) {
        Some(b) => format!("{} sectors ({})", v, size(b)),
        None => format!("{} sectors", v),
    }
}

fn char_value(c: u8) -> String {
    match c {
        b'\n' => String::from("0x0a (\\n)"),
        b'\r' => String::from("0x0d (\\r)"),
        b' ' => String::from("0x20 (space)"),
        c => format!("{:#04x}", c),
    }
}

/// The fields of a hosted sparse header stored at `at` (512 bytes in `b`).
fn hosted_fields(b: &[u8], at: u64, prefix: &str, which: &str) -> Vec<Field> {
    let f = |name: &str, off: usize, len: usize, value: String, note: &str| {
        let mut x = field(b, &format!("{}{}{}", prefix, which, name), off, len, value, note);
        x.offset += at;
        x
    };
    let gd = le64(b, 56);
    vec![
        f("magicNumber", 0, 4, String::from("\"KDMV\""), "identifies a hosted sparse extent"),
        f("version", 4, 4, format!("{}", le32(b, 4)), "1; 2 when zeroed-grain GTEs may be used; 3 for stream-optimized or changed-block-tracking disks"),
        f("flags", 8, 4, flag_names(le32(b, 8)), "bit 0 newline test valid, bit 1 redundant grain table, bit 2 zeroed-grain GTEs, bit 16 compressed grains, bit 17 markers"),
        f("capacity", 12, 8, sectors(le64(b, 12)), "disk size this extent holds, in 512-byte sectors"),
        f("grainSize", 20, 8, sectors(le64(b, 20)), "allocation unit (grain) in sectors: a power of two, at least 8 (4 KiB)"),
        f("descriptorOffset", 28, 8, format!("sector {}", le64(b, 28)), "where the embedded descriptor starts (0: none)"),
        f("descriptorSize", 36, 8, sectors(le64(b, 36)), "space reserved for the embedded descriptor"),
        f("numGTEsPerGT", 44, 4, format!("{}", le32(b, 44)), "grain table entries per grain table (512: each table maps 512 grains)"),
        f("rgdOffset", 48, 8, format!("sector {}", le64(b, 48)), "the redundant (backup) grain directory, used when flag bit 1 is set"),
        f("gdOffset", 56, 8, if gd == GD_AT_END { String::from("GD_AT_END (0xffffffffffffffff)") } else { format!("sector {}", gd) },
          "the grain directory; GD_AT_END: read the footer at the end of the file for the real value"),
        f("overHead", 64, 8, sectors(le64(b, 64)), "metadata before the first grain (header, descriptor, directories, tables)"),
        f("uncleanShutdown", 72, 1, format!("{}", b[72]), "1: the extent was open for writing and not closed cleanly"),
        f("singleEndLineChar", 73, 1, char_value(b[73]), "must be \\n: with the next three, detects a file altered by a text-mode transfer"),
        f("nonEndLineChar", 74, 1, char_value(b[74]), "must be a space"),
        f("doubleEndLineChar1", 75, 1, char_value(b[75]), "must be \\r"),
        f("doubleEndLineChar2", 76, 1, char_value(b[76]), "must be \\n"),
        f("compressAlgorithm", 77, 2, match le16(b, 77) { 0 => String::from("0 (none)"), 1 => String::from("1 (deflate, zlib streams)"), v => format!("{} (unknown)", v) },
          "how grains are compressed: 1 = deflate in zlib streams (stream-optimized)"),
    ]
}

fn cowd_fields(b: &[u8], prefix: &str) -> Vec<Field> {
    let f = |name: &str, off: usize, len: usize, value: String, note: &str| field(b, &format!("{}{}", prefix, name), off, len, value, note);
    let text = |off: usize, len: usize| crate::formats::fmt::quoted(&crate::formats::fmt::c_string(&b[off..off + len]).0);
    vec![
        f("magicNumber", 0, 4, String::from("\"COWD\""), "identifies an ESX Server sparse (COWD) extent"),
        f("version", 4, 4, format!("{}", le32(b, 4)), "format version (1)"),
        f("flags", 8, 4, format!("{:#x}", le32(b, 8)), "flags; readers of the data do not need them"),
        f("numSectors", 12, 4, sectors(le32(b, 12) as u64), "disk size this extent holds"),
        f("grainSize", 16, 4, sectors(le32(b, 16) as u64), "allocation unit (grain) in sectors"),
        f("gdOffset", 20, 4, format!("sector {}", le32(b, 20)), "the grain directory"),
        f("numGDEntries", 24, 4, format!("{}", le32(b, 24)), "grain directory entries; each grain table has 4096 entries"),
        f("freeSector", 28, 4, format!("sector {}", le32(b, 28)), "the next free sector of the file"),
        f("parentFileName / geometry", 32, 1024, text(32, 1024), "a child disk's parent file name, or a root disk's cylinders, heads and sectors"),
        f("parentGeneration", 1056, 4, format!("{}", le32(b, 1056)), "the parent's generation when this child was made"),
        f("generation", 1060, 4, format!("{}", le32(b, 1060)), "incremented on changes"),
        f("name", 1064, 60, text(1064, 60), "the disk's name"),
        f("description", 1124, 512, text(1124, 512), "the disk's description"),
        f("savedGeneration", 1636, 4, format!("{}", le32(b, 1636)), "generation at the last clean close"),
        f("uncleanShutdown", 1648, 4, format!("{}", le32(b, 1648)), "non-zero: not closed cleanly"),
    ]
}

/// The hosted header fields of a header that is not opened as an extent (capacity 0 with an
/// embedded descriptor that lists the extents).
pub fn header_fields(head: &[u8; 512]) -> Vec<Field> {
    hosted_fields(head, 0, "", "")
}
