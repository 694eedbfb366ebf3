//! qcow2, QEMU's copy-on-write format (versions 2 and 3): a header with extensions, a
//! two-level table (L1 -> L2 -> cluster) with zero, compressed and extended (subcluster)
//! entries, internal snapshots, refcounts, and optionally an external data file.
//! Spec: QEMU docs/interop/qcow2.rst. Entries are read as QEMU reads them, so the map
//! matches `qemu-img map --output=json`; where QEMU would fail a read (a corrupt entry)
//! or silently read zeros past the file's end, the map says Invalid and names the entry.
use alloc::{boxed::Box, format, string::String, sync::Arc, vec, vec::Vec};
use core::cell::{Cell, RefCell};

use crate::formats::bytes::{be16, be32, be64};
use crate::formats::tables;
use crate::codec::{self, Codec};
use crate::error::{Error, Result};
use crate::formats::fmt;
use crate::image::{Driver, Image, OpenCtx};
use crate::io::{read_clipped, read_exact_at, ReadAt};
use crate::limits;
use crate::model::*;

mod check;
pub mod header;
mod snapshot;
#[cfg(any(test, feature = "samples"))]
pub(crate) mod sample;
#[cfg(test)]
pub(crate) mod tests;
use header::*;

pub static DRIVER: Driver = Driver { name: "qcow2", probe, open };

fn probe(head: &[u8], _file: &dyn ReadAt) -> bool {
    head.starts_with(&MAGIC) && be32(head, 4) >= 2
}

pub const L1E_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
pub const L1E_RESERVED_MASK: u64 = 0x7f00_0000_0000_01ff;
pub const L2E_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
pub const L2E_STD_RESERVED_MASK: u64 = 0x3f00_0000_0000_01fe;
pub const REFT_OFFSET_MASK: u64 = 0xffff_ffff_ffff_fe00;
pub const OFLAG_COPIED: u64 = 1 << 63;
pub const OFLAG_COMPRESSED: u64 = 1 << 62;
pub const OFLAG_ZERO: u64 = 1;

/// L2 entries read per step: bounds memory for the largest (2 MiB) L2 tables.
const L2_WINDOW: u64 = 1 << 16;
/// L2 table bytes fetched at least, from the first entry a map needs.
const L2_AHEAD_BYTES: u64 = 64 << 10;
/// Guest bytes of compressed clusters whose data is prefetched in one go when converting.
const COMPRESSED_AHEAD: u64 = 16 << 20;

/// Where guest clusters are stored.
pub(crate) enum DataFile {
    /// In the image file (file 0).
    Own,
    /// In the external data file (file 1).
    External(Arc<dyn ReadAt>),
    /// In an external data file that was not found.
    Missing,
}

/// The image file or data file as the map sees it. QEMU asks the host whether a data
/// cluster's bytes are a hole only when it finds the image metadata-preallocated (more
/// clusters with a refcount than the host has allocated, by more than a ninth); otherwise
/// qemu-img map reports every stored cluster as data. So the host allocation is passed on
/// only in that case.
struct HostView {
    inner: Arc<dyn ReadAt>,
    detect: Arc<Preallocation>,
}

/// QEMU's qcow2_detect_metadata_preallocation, decided once, on first use.
struct Preallocation {
    file: Arc<dyn ReadAt>,
    cluster: u64,
    reftable_offset: u64,
    reftable_bytes: u64,
    refcount_order: u32,
    decided: core::cell::OnceCell<bool>,
}

impl Preallocation {
    fn preallocated(&self) -> bool {
        *self.decided.get_or_init(|| self.detect().unwrap_or(false))
    }

    fn detect(&self) -> Option<bool> {
        // QEMU counts the host's allocated bytes (st_blocks). The host here tells data from
        // holes only, and zero-filled ranges QEMU preallocates read as holes, so count the
        // clusters that hold any data: a cluster QEMU wrote to is allocated on the host.
        let size = self.file.size();
        let mut real = 0u64;
        let mut counted_to = 0u64; // clusters below this are counted
        let mut pos = 0u64;
        while pos < size {
            let (data, n) = self.file.allocation(pos, size - pos)?;
            let n = n.max(1);
            if data {
                let (a, b) = ((pos / self.cluster).max(counted_to), (pos + n).div_ceil(self.cluster));
                real += b.saturating_sub(a);
                counted_to = counted_to.max(b);
            }
            pos += n;
        }
        let threshold = (real * 10 / 9).max(real + 2);
        let mut table = vec![0u8; self.reftable_bytes.min(MAX_REFTABLE_BYTES) as usize];
        read_clipped(&*self.file, self.reftable_offset, &mut table).ok()?;
        let bits = 1u64 << self.refcount_order;
        let per_block = self.cluster * 8 / bits;
        let clusters = size.div_ceil(self.cluster);
        let mut count = 0u64;
        let mut block = vec![0u8; self.cluster as usize];
        for (i, e) in table.chunks_exact(8).enumerate() {
            let first = i as u64 * per_block;
            if first >= clusters || count > threshold {
                break;
            }
            let off = be64(e, 0) & REFT_OFFSET_MASK;
            if off == 0 || off % self.cluster != 0 || read_exact_at(&*self.file, off, &mut block, "refcount block").is_err() {
                continue;
            }
            let n = per_block.min(clusters - first);
            count += (0..n).filter(|&j| refcount_entry(&block, j, bits as u32) != 0).count() as u64;
        }
        Some(count > threshold)
    }
}

/// Refcount `j` of a refcount block with `bits`-bit entries (big-endian; sub-byte widths
/// start at the least significant bit).
pub(crate) fn refcount_entry(block: &[u8], j: u64, bits: u32) -> u64 {
    match bits {
        64 => be64(block, j as usize * 8),
        32 => be32(block, j as usize * 4) as u64,
        16 => be16(block, j as usize * 2) as u64,
        8 => block.get(j as usize).copied().unwrap_or(0) as u64,
        b => {
            let bit = j * b as u64;
            let byte = block.get((bit / 8) as usize).copied().unwrap_or(0);
            ((byte >> (bit % 8)) & ((1u16 << b) - 1) as u8) as u64
        }
    }
}

impl ReadAt for HostView {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn allocation(&self, offset: u64, len: u64) -> Option<(bool, u64)> {
        if self.detect.preallocated() {
            self.inner.allocation(offset, len)
        } else {
            None
        }
    }
    fn prefetch(&self, ranges: &mut [(u64, u64)]) {
        self.inner.prefetch(ranges)
    }
}

/// What an L2 entry (or one subcluster of it) says, before clipping to a guest range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cls {
    /// Not here: the backing file, or zeros.
    Unalloc,
    /// Not here, though a host cluster is reserved at this offset (an extended L2 entry
    /// whose subcluster is not allocated). qemu-img map prints the offset when the disk
    /// has no backing file; diskscope's map has no place for it yet.
    UnallocAt(u64),
    Zero,
    /// Reads as zeros; a host cluster is preallocated at this offset.
    ZeroAt(u64),
    Data(u64),
    /// Compressed data starting at this host offset.
    Compressed(u64),
    Invalid,
}

pub(crate) struct Qcow2 {
    pub(crate) file: Arc<dyn ReadAt>,
    /// The image file and the external data file as [`Image::file`] hands them out.
    host: Arc<dyn ReadAt>,
    data_host: Option<Arc<dyn ReadAt>>,
    pub(crate) name: String,
    pub(crate) h: Header,
    info: ImageInfo,
    pub(crate) cluster: u64,
    /// Entries per L2 table, and bytes per entry (8, or 16 with extended L2).
    pub(crate) l2_entries: u64,
    pub(crate) eb: u64,
    /// The L1 entries of the opened view that cover the disk.
    l1: Vec<u64>,
    /// Where that L1 table is, and how many of its entries lie inside the file.
    l1_offset: u64,
    l1_in_file: u64,
    /// The snapshot whose L1 table is the view, if one was asked for.
    view: Option<usize>,
    pub(crate) snaps: snapshot::Table,
    pub(crate) data: DataFile,
    codec: Codec,
    pub(crate) file_size: u64,
    /// Mask of a compressed entry's host offset, and the shift of its sector count.
    coff_mask: u64,
    csize_shift: u32,
    /// The last compressed cluster decoded: its L2 entry and its bytes.
    decoded: RefCell<Option<(u64, Vec<u8>)>>,
    /// Guest range whose compressed data has been prefetched.
    ahead: Cell<(u64, u64)>,
}

fn invalid(offset: u64, message: String) -> Error {
    Error::Invalid { format: "qcow2", offset, message }
}

fn open(file: Arc<dyn ReadAt>, ctx: &OpenCtx) -> Result<Box<dyn Image>> {
    Ok(Box::new(Qcow2::open(file, ctx)?))
}

/// The first cluster of an image (up to 2 MiB), zeros past the file's end.
pub(crate) fn read_head(file: &dyn ReadAt) -> Result<Vec<u8>> {
    let size = file.size();
    let mut head = vec![0u8; size.min(65536) as usize];
    read_clipped(file, 0, &mut head)?;
    let bits = be32(&head, 20);
    if (17..=21).contains(&bits) && size > head.len() as u64 {
        head = vec![0u8; size.min(1 << bits) as usize];
        read_clipped(file, 0, &mut head)?;
    }
    Ok(head)
}

impl Qcow2 {
    pub(crate) fn open(file: Arc<dyn ReadAt>, ctx: &OpenCtx) -> Result<Qcow2> {
        let file_size = file.size();
        let h = Header::parse(read_head(&*file)?, file_size)?;
        let cluster = h.cluster();
        let backing = if h.backing_file_offset != 0 {
            let len = h.backing_file_size as u64;
            if len > cluster - h.backing_file_offset {
                return Err(invalid(16, format!("the backing file name ({} bytes at {}) runs past the first cluster", len, h.backing_file_offset)));
            }
            let mut raw = vec![0u8; len as usize];
            read_exact_at(&*file, h.backing_file_offset, &mut raw, "backing file name")?;
            let name = String::from_utf8_lossy(&raw).into_owned();
            (!name.is_empty()).then(|| BackingRef { name, format: h.backing_format.clone(), offset: h.backing_file_offset })
        } else {
            None
        };
        let mut companions = Vec::new();
        let data = if h.incompatible & INCOMPAT_DATA_FILE != 0 {
            let (name, at) = h.data_file.clone().unwrap_or((String::new(), 72));
            let found = if name.is_empty() { None } else { ctx.resolver.resolve(&name, ctx.name) };
            companions.push(Companion { role: "external data file", name, offset: at, found: found.as_ref().map(|(k, _)| k.clone()) });
            match found {
                Some((_, f)) => DataFile::External(f),
                None => DataFile::Missing,
            }
        } else {
            DataFile::Own
        };
        let snaps = snapshot::read(&*file, &h);
        let extended = h.extended_l2();
        let eb = if extended { 16 } else { 8 };
        let l2_entries = cluster / eb;
        let csize_shift = 62 - (h.cluster_bits - 8);
        let mut variant = format!("qcow2 version {}{}", h.version, if h.version == 2 { " (compat=0.10)" } else { " (compat=1.1)" });
        let (view, l1_offset, l1_size) = match &ctx.options.snapshot {
            None => (None, h.l1_table_offset, h.l1_size as u64),
            Some(key) => {
                let Some((i, sn)) = snapshot::find(&snaps.entries, key) else {
                    let names: Vec<String> = snaps.entries.iter().map(|s| format!("{} \"{}\"", s.id, s.name)).collect();
                    return Err(invalid(h.snapshots_offset, if names.is_empty() {
                        format!("no snapshot '{}': the image has no internal snapshots", key)
                    } else {
                        format!("no snapshot '{}' (by ID or name); the image has: {}", key, names.join(", "))
                    }));
                };
                if sn.l1_table_offset % cluster != 0 || sn.l1_size * 8 > MAX_L1_BYTES {
                    return Err(invalid(sn.offset, format!("snapshot '{}' has an invalid L1 table ({} entries at {:#x})", sn.name, sn.l1_size, sn.l1_table_offset)));
                }
                variant = format!("{}, snapshot {} \"{}\"", variant, sn.id, sn.name);
                (Some(i), sn.l1_table_offset, sn.l1_size)
            }
        };
        let needed = h.size.div_ceil(l2_entries * cluster).min(l1_size);
        let l1 = crate::io::read_be64_table(&*file, "L1 table", l1_offset, needed)?;
        let l1_in_file = file_size.saturating_sub(l1_offset) / 8;
        let info = ImageInfo {
            format: "qcow2",
            variant,
            layout: LayoutStatus::Confirmed,
            virtual_size: h.size,
            cluster_size: cluster,
            backing,
            dirty: h.incompatible & INCOMPAT_DIRTY != 0,
            companions,
        };
        let detect = Arc::new(Preallocation {
            file: file.clone(),
            cluster,
            reftable_offset: h.refcount_table_offset,
            reftable_bytes: h.refcount_table_clusters as u64 * cluster,
            refcount_order: h.refcount_order,
            decided: core::cell::OnceCell::new(),
        });
        let host: Arc<dyn ReadAt> = Arc::new(HostView { inner: file.clone(), detect: detect.clone() });
        let data_host = match &data {
            DataFile::External(f) => Some(Arc::new(HostView { inner: f.clone(), detect }) as Arc<dyn ReadAt>),
            _ => None,
        };
        Ok(Qcow2 {
            host,
            data_host,
            name: String::from(ctx.name),
            info,
            cluster,
            l2_entries,
            eb,
            l1,
            l1_offset,
            l1_in_file,
            view,
            snaps,
            data,
            codec: if h.compression_type == 1 { Codec::Zstd } else { Codec::Deflate },
            file_size,
            coff_mask: (1u64 << csize_shift) - 1,
            csize_shift,
            decoded: RefCell::new(None),
            ahead: Cell::new((0, 0)),
            h,
            file,
        })
    }

    pub(crate) fn encrypted(&self) -> bool {
        self.h.crypt_method != CRYPT_NONE
    }

    fn refuse_encrypted(&self) -> Result<()> {
        if !self.encrypted() {
            return Ok(());
        }
        Err(Error::Unsupported {
            format: "qcow2",
            offset: 32,
            message: format!(
                "the guest data is encrypted ({}); diskscope shows the header and the metadata but cannot decrypt, so it does not map, read or convert the data",
                if self.h.crypt_method == CRYPT_LUKS { "LUKS" } else { "legacy AES" }
            ),
        })
    }

    pub(crate) fn has_data_file(&self) -> bool {
        !matches!(self.data, DataFile::Own)
    }

    /// Guest bytes one L2 table covers.
    pub(crate) fn l2_cover(&self) -> u64 {
        self.l2_entries * self.cluster
    }

    /// Host offset and byte length of a compressed cluster's data (QEMU's rule: the
    /// sector count is of sectors after the one holding the offset).
    pub(crate) fn compressed_range(&self, e: u64) -> (u64, u64) {
        let off = e & self.coff_mask;
        let sectors = ((e >> self.csize_shift) & ((1u64 << (self.h.cluster_bits - 8)) - 1)) + 1;
        (off, sectors * 512 - (off & 511))
    }

    /// The L2 table for L1 index `i` of the view: Ok(None) unallocated, Err(entry offset)
    /// when the entry is unusable (unaligned, or the table lies past the file's end).
    fn l2_table(&self, i: u64) -> core::result::Result<Option<u64>, u64> {
        let Some(&e) = self.l1.get(i as usize) else { return Ok(None) };
        let at = self.l1_offset.saturating_add(i * 8);
        if i >= self.l1_in_file {
            return Err(at);
        }
        let off = e & L1E_OFFSET_MASK;
        if off == 0 {
            return Ok(None);
        }
        if off % self.cluster != 0 || off.checked_add(self.cluster).is_none_or(|end| end > self.file_size) {
            return Err(at);
        }
        Ok(Some(off))
    }

    /// What a standard (non-extended) L2 entry says for guest cluster `cs`.
    pub(crate) fn classify(&self, e: u64, cs: u64) -> Cls {
        if e & OFLAG_COMPRESSED != 0 {
            let (off, _) = self.compressed_range(e);
            if self.has_data_file() || off >= self.file_size || off == 0 {
                return Cls::Invalid;
            }
            return Cls::Compressed(off);
        }
        let off = e & L2E_OFFSET_MASK;
        if e & OFLAG_ZERO != 0 && !self.h.extended_l2() {
            if self.h.version < 3 {
                return Cls::Invalid; // QEMU: "Zero cluster entry found in pre-v3 image"
            }
            if off == 0 {
                return Cls::Zero;
            }
            return if off % self.cluster != 0 { Cls::Invalid } else { Cls::ZeroAt(off) };
        }
        if off == 0 && !(self.has_data_file() && e & OFLAG_COPIED != 0) {
            return Cls::Unalloc;
        }
        self.host_ok(off, cs).map_or(Cls::Invalid, Cls::Data)
    }

    /// A standard cluster's host offset, if QEMU would read it: aligned, 1:1 in an external
    /// data file, inside the file otherwise.
    fn host_ok(&self, off: u64, cs: u64) -> Option<u64> {
        if off % self.cluster != 0 {
            return None;
        }
        match self.data {
            DataFile::Own => (off < self.file_size).then_some(off),
            _ => (off == cs).then_some(off),
        }
    }

    fn data_index(&self) -> u16 {
        if self.has_data_file() { 1 } else { 0 }
    }

    fn kind(&self, c: Cls, host_at: impl Fn(u64) -> u64, entry: u64) -> Kind {
        match c {
            Cls::Unalloc | Cls::UnallocAt(_) => Kind::Unallocated,
            Cls::Zero => Kind::Zero,
            Cls::ZeroAt(h) => Kind::Hole { file: self.data_index(), offset: host_at(h) },
            Cls::Data(_) if matches!(self.data, DataFile::Missing) => Kind::Missing { file: 1 },
            Cls::Data(h) => Kind::Data { file: self.data_index(), offset: host_at(h) },
            Cls::Compressed(off) => Kind::Compressed { file: 0, offset: off },
            Cls::Invalid => Kind::Invalid { entry },
        }
    }

    /// The classes of the subclusters of an extended L2 entry (`e`, `bitmap`) for guest
    /// cluster `cs`: one for the whole cluster, or 32.
    pub(crate) fn classify_ext(&self, e: u64, bitmap: u64, cs: u64) -> Result<Cls, [Cls; 32]> {
        if e & OFLAG_COMPRESSED != 0 {
            return Ok(self.classify(e, cs));
        }
        let off = e & L2E_OFFSET_MASK;
        let (alloc, zero) = (bitmap as u32, (bitmap >> 32) as u32);
        if alloc & zero != 0 {
            return Ok(Cls::Invalid);
        }
        let sc = self.cluster / 32;
        let unallocated = off == 0 && !(self.has_data_file() && e & OFLAG_COPIED != 0);
        if unallocated {
            if alloc != 0 {
                return Ok(Cls::Invalid);
            }
            if zero == 0 {
                return Ok(Cls::Unalloc);
            }
            if zero == u32::MAX {
                return Ok(Cls::Zero);
            }
            return Err(core::array::from_fn(|j| if zero & (1 << j) != 0 { Cls::Zero } else { Cls::Unalloc }));
        }
        let host = if off % self.cluster != 0 {
            None
        } else if alloc == 0 {
            Some(off) // nothing is read from it
        } else {
            self.host_ok(off, cs)
        };
        let Some(host) = host else { return Ok(Cls::Invalid) };
        Err(core::array::from_fn(|j| {
            let at = host + j as u64 * sc;
            if zero & (1 << j) != 0 {
                Cls::ZeroAt(at)
            } else if alloc & (1 << j) != 0 {
                Cls::Data(at)
            } else {
                Cls::UnallocAt(at)
            }
        }))
    }

    /// Append the extents of guest `[a, b)` inside cluster `cs` from its L2 entry.
    fn push_entry(&self, e: u64, bitmap: u64, entry: u64, cs: u64, a: u64, b: u64, out: &mut Vec<Extent>) {
        let whole = if self.h.extended_l2() { self.classify_ext(e, bitmap, cs) } else { Ok(self.classify(e, cs)) };
        match whole {
            Ok(c) => Extent::push(out, Extent { start: a, length: b - a, kind: self.kind(c, |h| h + (a - cs), entry) }),
            Err(subs) => {
                let sc = self.cluster / 32;
                let mut x = a;
                while x < b {
                    let j = (x - cs) / sc;
                    let end = (cs + (j + 1) * sc).min(b);
                    let sa = cs + j * sc;
                    Extent::push(out, Extent { start: x, length: end - x, kind: self.kind(subs[j as usize], |h| h + (x - sa), entry) });
                    x = end;
                }
            }
        }
    }

    /// Read L2 entries `[first, first+count)` of the table at `l2`: (entry, bitmap) pairs.
    pub(crate) fn read_l2(&self, l2: u64, first: u64, count: u64) -> Result<Vec<(u64, u64)>> {
        let mut buf = crate::io::table_buf("L2 table", count * self.eb)?;
        read_exact_at(&*self.file, l2 + first * self.eb, &mut buf, "L2 table")?;
        Ok(buf.chunks_exact(self.eb as usize).map(|c| (be64(c, 0), if self.eb == 16 { be64(c, 8) } else { 0 })).collect())
    }

    /// Tell the cache which L2 entries guest `[start, end)` needs, as much as it can hold
    /// at once; returns the guest offset the prefetched batch reaches. Small requests
    /// (reading a few clusters) take some of the table ahead, so the next ones are served
    /// from the same read.
    fn prefetch_l2(&self, start: u64, end: u64) -> u64 {
        let shape = tables::Shape { cover: self.l2_cover(), unit: self.cluster, entry: self.eb, table: self.cluster, ahead: L2_AHEAD_BYTES };
        tables::prefetch(&*self.file, &shape, start, end, |i| self.l2_table(i).ok().flatten())
    }

    /// The L2 entry (and bitmap) that maps guest cluster `cs`, with its byte offset.
    fn entry_for(&self, cs: u64) -> Result<(u64, u64, u64)> {
        let i = cs / self.l2_cover();
        match self.l2_table(i) {
            Ok(None) => Ok((0, 0, 0)),
            Err(at) => Err(Error::CorruptMapping { guest: cs, file: self.name.clone(), offset: at }),
            Ok(Some(l2)) => {
                let k = cs % self.l2_cover() / self.cluster;
                let (e, bm) = self.read_l2(l2, k, 1)?[0];
                Ok((e, bm, l2 + k * self.eb))
            }
        }
    }

    /// Prefetch the compressed data of the clusters from `cs` on (a few MiB of guest), so
    /// converting a compressed image reads its data in a few large reads.
    fn prefetch_compressed(&self, cs: u64) {
        let (a, b) = self.ahead.get();
        if cs >= a && cs < b {
            return;
        }
        let cover = self.l2_cover();
        let end = (cs + COMPRESSED_AHEAD).min(self.h.size.next_multiple_of(self.cluster));
        self.ahead.set((cs, end));
        self.prefetch_l2(cs, end);
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        let mut g = cs;
        while g < end {
            let table_end = end.min((g / cover + 1) * cover);
            if let Ok(Some(l2)) = self.l2_table(g / cover) {
                let first = g % cover / self.cluster;
                if let Ok(entries) = self.read_l2(l2, first, (table_end - g).div_ceil(self.cluster)) {
                    ranges.extend(entries.iter().filter(|(e, _)| e & OFLAG_COMPRESSED != 0).map(|&(e, _)| self.compressed_range(e)));
                }
            }
            g = table_end;
        }
        let size = self.file_size;
        for r in ranges.iter_mut() {
            r.1 = r.1.min(size.saturating_sub(r.0));
        }
        self.file.prefetch(&mut ranges);
    }

    /// Decode the compressed cluster of L2 entry `e` (at byte `at`, for guest `cs`) into
    /// the one-cluster cache.
    fn decode(&self, e: u64, at: u64, cs: u64) -> Result<()> {
        if matches!(&*self.decoded.borrow(), Some((k, _)) if *k == e) {
            return Ok(());
        }
        let (off, len) = self.compressed_range(e);
        let mut input = vec![0u8; len as usize];
        read_clipped(&*self.file, off, &mut input)?;
        let mut out = vec![0u8; self.cluster as usize];
        codec::decode(self.codec, &input, &mut out).map_err(|m| invalid(at, format!(
            "the compressed cluster for guest offset {:#x} ({} data at {:#x}, {} bytes; L2 entry at byte {}) cannot be decoded: {}",
            cs, if self.codec == Codec::Zstd { "zstd" } else { "deflate" }, off, len, at, m)))?;
        *self.decoded.borrow_mut() = Some((e, out));
        Ok(())
    }

    /// The bitmap directory entries (when the extension is in force): (entry offset,
    /// table offset, table entries, flags, type, granularity bits, name).
    pub(crate) fn bitmaps(&self) -> Vec<BitmapEntry> {
        let Some(b) = &self.h.bitmaps else { return Vec::new() };
        if self.h.autoclear & AUTOCLEAR_BITMAPS == 0 || b.dir_size > 1 << 20 {
            return Vec::new();
        }
        let mut dir = vec![0u8; b.dir_size as usize];
        if read_exact_at(&*self.file, b.dir_offset, &mut dir, "bitmap directory").is_err() {
            return Vec::new();
        }
        let mut v = Vec::new();
        let mut at = 0usize;
        while v.len() < b.nb_bitmaps as usize && at + 24 <= dir.len() {
            let name_len = be16(&dir, at + 18) as usize;
            let extra = be32(&dir, at + 20) as usize;
            let name_at = at + 24 + extra;
            let name = dir.get(name_at..name_at + name_len).map(|n| String::from_utf8_lossy(n).into_owned()).unwrap_or_default();
            v.push(BitmapEntry {
                at: b.dir_offset + at as u64,
                table_offset: be64(&dir, at),
                table_size: be32(&dir, at + 8),
                flags: be32(&dir, at + 12),
                kind: dir[at + 16],
                granularity_bits: dir[at + 17],
                name,
            });
            at = (name_at + name_len).next_multiple_of(8);
        }
        v
    }
}

#[derive(Debug, Clone)]
pub(crate) struct BitmapEntry {
    pub at: u64,
    pub table_offset: u64,
    pub table_size: u32,
    pub flags: u32,
    pub kind: u8,
    pub granularity_bits: u8,
    pub name: String,
}

impl Image for Qcow2 {
    fn cluster_fields(&self, guest: u64) -> Result<Vec<Field>> {
        let cs = guest / self.cluster * self.cluster;
        let (e, bm, at) = self.entry_for(cs)?;
        if at == 0 {
            return Ok(alloc::vec![Field { name: format!("L1 entry {}", cs / self.l2_cover()), offset: self.l1_offset + cs / self.l2_cover() * 8, size: 8, raw: alloc::vec![0; 8], value: String::from("0: no L2 table, the whole range is unallocated"), note: String::new() }]);
        }
        let meaning = match self.classify(e, cs) {
            Cls::Compressed(_) => {
                let (off, len) = self.compressed_range(e);
                format!("compressed: {} bytes of compressed data at byte {} of the file", len, off)
            }
            Cls::Data(h) => format!("data at byte {} of the {}", h, if self.has_data_file() { "data file" } else { "file" }),
            Cls::Zero | Cls::ZeroAt(_) => String::from("reads as zeros (zero flag)"),
            Cls::Unalloc | Cls::UnallocAt(_) => String::from("unallocated: read from the backing file (zeros without one)"),
            Cls::Invalid => String::from("invalid"),
        };
        let mut raw = e.to_be_bytes().to_vec();
        if self.eb == 16 {
            raw.extend_from_slice(&bm.to_be_bytes());
        }
        Ok(alloc::vec![Field { name: format!("L2 entry {}", cs / self.cluster), offset: at, size: self.eb, raw, value: meaning, note: String::from("the guest cluster's entry in its L2 table") }])
    }
    fn info(&self) -> &ImageInfo {
        &self.info
    }

    fn header_fields(&self) -> Vec<Field> {
        let mut fields = self.h.fields();
        if self.h.backing_file_offset != 0 {
            let (at, len) = (self.h.backing_file_offset, self.h.backing_file_size as u64);
            let mut raw = vec![0u8; len.min(1023) as usize];
            let _ = read_exact_at(&*self.file, at, &mut raw, "backing file name");
            fields.push(Field {
                name: String::from("backing file name"),
                offset: at,
                size: raw.len() as u64,
                value: fmt::quoted(&String::from_utf8_lossy(&raw)),
                raw,
                note: String::from(match &self.h.backing_format {
                    Some(_) => "backing file, opened as the format the backing format extension names",
                    None => "backing file; no backing format extension, so its format is probed",
                }),
            });
        }
        if let Some((off, len, _)) = self.h.crypto {
            let mut luks = vec![0u8; 592];
            if len >= 592 && read_exact_at(&*self.file, off, &mut luks, "LUKS header").is_ok() {
                fields.extend(luks_fields(&luks, off));
            }
        }
        for b in self.bitmaps() {
            let mut raw = vec![0u8; 24];
            let _ = read_exact_at(&*self.file, b.at, &mut raw, "bitmap directory entry");
            let flags: Vec<&str> = [(1, "in_use"), (2, "auto"), (4, "extra_data_compatible")].iter().filter(|(m, _)| b.flags & m != 0).map(|(_, n)| *n).collect();
            fields.push(Field {
                name: format!("bitmap \"{}\"", b.name),
                offset: b.at,
                size: 24,
                raw,
                value: format!("{}granularity {}, flags {}, table of {} entries at {:#x}", if b.kind == 1 { "" } else { "UNKNOWN TYPE, " }, fmt::size(1u64 << b.granularity_bits.min(63)),
                    if flags.is_empty() { String::from("none") } else { flags.join(", ") }, b.table_size, b.table_offset),
                note: String::from(if b.flags & 1 != 0 {
                    "dirty tracking bitmap; in_use: it was not saved cleanly and may be inconsistent"
                } else {
                    "dirty tracking bitmap (bitmap directory entry)"
                }),
            });
        }
        for s in &self.snaps.entries {
            let mut raw = vec![0u8; 40];
            let _ = read_exact_at(&*self.file, s.offset, &mut raw, "snapshot table entry");
            fields.push(Field {
                name: format!("snapshot {} \"{}\"", s.id, s.name),
                offset: s.offset,
                size: 40,
                raw,
                value: format!("{}, L1 table of {} entries at {:#x}", fmt::unix_time(s.date_sec as i64), s.l1_size, s.l1_table_offset),
                note: format!("snapshot table entry; VM clock {}, VM state {} bytes{}", snapshot::vm_clock(s), s.vm_state_size,
                    s.virtual_size.map(|v| format!(", disk size {}", fmt::size(v))).unwrap_or_default()),
            });
        }
        fields
    }

    fn regions(&self) -> Result<Vec<Region>> {
        let h = &self.h;
        let r = |name: String, kind: RegionKind, offset: u64, length: u64| Region { name, kind, offset, length };
        let mut v = vec![
            r(String::from("header"), RegionKind::Header, 0, self.cluster),
            r(String::from("L1 table"), RegionKind::Table, h.l1_table_offset, h.l1_size as u64 * 8),
            r(String::from("refcount table"), RegionKind::Table, h.refcount_table_offset, h.refcount_table_clusters as u64 * self.cluster),
        ];
        if self.view.is_none() {
            for i in 0..self.l1.len() as u64 {
                if let Ok(Some(l2)) = self.l2_table(i) {
                    v.push(r(format!("L2 table {}", i), RegionKind::Table, l2, self.cluster));
                }
            }
        }
        // Refcount blocks: the refcount table's non-zero entries (an unreadable table lists none).
        let mut table = vec![0u8; (h.refcount_table_clusters as u64 * self.cluster).min(MAX_REFTABLE_BYTES) as usize];
        if read_clipped(&*self.file, h.refcount_table_offset, &mut table).is_ok() {
            for (i, e) in table.chunks_exact(8).enumerate() {
                let off = be64(e, 0) & REFT_OFFSET_MASK;
                if off != 0 && off < self.file_size {
                    v.push(r(format!("refcount block {}", i), RegionKind::Table, off, self.cluster));
                }
            }
        }
        if h.nb_snapshots > 0 {
            v.push(r(String::from("snapshot table"), RegionKind::Table, h.snapshots_offset, self.snaps.bytes));
            for s in &self.snaps.entries {
                v.push(r(format!("snapshot {} L1 table", s.id), RegionKind::Table, s.l1_table_offset, s.l1_size * 8));
            }
        }
        if let Some((off, len, _)) = h.crypto {
            v.push(r(String::from("LUKS encryption header"), RegionKind::Header, off, len));
        }
        if let Some(b) = &h.bitmaps {
            v.push(r(String::from("bitmap directory"), RegionKind::Table, b.dir_offset, b.dir_size));
            for e in self.bitmaps() {
                v.push(r(format!("bitmap \"{}\" table", e.name), RegionKind::Bitmap, e.table_offset, e.table_size as u64 * 8));
            }
        }
        Ok(v)
    }

    fn run_granule(&self) -> u64 {
        // An extended L2 entry maps 32 subclusters.
        if self.eb == 16 { self.cluster / 32 } else { self.cluster }
    }

    fn map(&self, start: u64, len: u64, out: &mut Vec<Extent>) -> Result<()> {
        self.refuse_encrypted()?;
        let end = start + len;
        let cover = self.l2_cover();
        let mut pos = start;
        let mut prefetched = start;
        while pos < end {
            let i = pos / cover;
            let base = i * cover;
            let span_end = end.min(base + cover);
            if pos >= prefetched {
                prefetched = self.prefetch_l2(pos, end);
            }
            match self.l2_table(i) {
                Ok(None) => Extent::push(out, Extent { start: pos, length: span_end - pos, kind: Kind::Unallocated }),
                Err(at) => Extent::push(out, Extent { start: pos, length: span_end - pos, kind: Kind::Invalid { entry: at } }),
                Ok(Some(l2)) => {
                    let mut idx = (pos - base) / self.cluster;
                    let last = (span_end - base).div_ceil(self.cluster);
                    while idx < last {
                        let count = (last - idx).min(L2_WINDOW);
                        let table = self.read_l2(l2, idx, count)?;
                        for (k, &(e, bm)) in table.iter().enumerate() {
                            let cs = base + (idx + k as u64) * self.cluster;
                            let (a, b) = (cs.max(pos), (cs + self.cluster).min(span_end));
                            self.push_entry(e, bm, l2 + (idx + k as u64) * self.eb, cs, a, b, out);
                        }
                        idx += count;
                    }
                }
            }
            pos = span_end;
        }
        Ok(())
    }

    fn file(&self, index: u16) -> Option<&Arc<dyn ReadAt>> {
        match index {
            0 => Some(&self.host),
            1 => self.data_host.as_ref(),
            _ => None,
        }
    }

    fn read_computed(&self, _extent: &Extent, guest: u64, buf: &mut [u8]) -> Result<()> {
        self.refuse_encrypted()?;
        let mut done = 0usize;
        while done < buf.len() {
            let g = guest + done as u64;
            let cs = g / self.cluster * self.cluster;
            let n = (buf.len() - done).min((cs + self.cluster - g) as usize);
            let (e, _, at) = self.entry_for(cs)?;
            if e & OFLAG_COMPRESSED == 0 || self.classify(e, cs) == Cls::Invalid {
                return Err(invalid(at, format!("guest offset {:#x} is not mapped by a valid compressed cluster entry", g)));
            }
            self.prefetch_compressed(cs);
            self.decode(e, at, cs)?;
            let within = (g - cs) as usize;
            buf[done..done + n].copy_from_slice(&self.decoded.borrow().as_ref().expect("just decoded").1[within..within + n]);
            done += n;
        }
        Ok(())
    }

    fn check(&self) -> Result<CheckResult> {
        check::run(self)
    }

    fn snapshots(&self) -> Vec<Snapshot> {
        self.snaps.entries.clone()
    }

    fn host_map(&self, max_cells: u64) -> Result<Option<HostMap>> {
        check::host_map(self, max_cells).map(Some)
    }
}
