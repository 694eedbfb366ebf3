//! The merged allocation map of a chain, in qemu-img map's terms, and its picture as one
//! class per cell for the page's canvas.
use alloc::vec::Vec;

use crate::chain::Chain;
use crate::error::Result;
use crate::limits;
use crate::model::{Extent, Kind};

/// One run of the merged map: qemu-img map --output=json's fields, plus where to read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct MapEntry {
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::model::ser_u64"))]
    pub start: u64,
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::model::ser_u64"))]
    pub length: u64,
    /// Layer the bytes come from (0 = top), or the deepest layer consulted.
    pub depth: u32,
    /// Some layer defines these bytes (allocated, or an explicit zero).
    pub present: bool,
    /// The bytes read as zero.
    pub zero: bool,
    /// Stored bytes back the range.
    pub data: bool,
    pub compressed: bool,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_opt"))]
    pub offset: Option<u64>,
    /// Bytes are decoded by the layer (compressed, or through a nested image).
    #[cfg_attr(feature = "serde", serde(skip))]
    pub computed: bool,
    /// Byte offset of the invalid table entry that maps this range (qemu-img fails here).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_opt"))]
    pub invalid: Option<u64>,
    /// The range needs a backing file that is missing or unreadable.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "core::ops::Not::not"))]
    pub missing: bool,
    #[cfg_attr(feature = "serde", serde(skip))]
    pub file: u16,
}

#[cfg(feature = "serde")]
fn ser_opt<S: serde::Serializer>(v: &Option<u64>, s: S) -> core::result::Result<S::Ok, S::Error> {
    crate::model::ser_u64(&v.unwrap_or(0), s)
}

impl MapEntry {
    fn new(start: u64, length: u64, depth: usize) -> MapEntry {
        MapEntry {
            start,
            length,
            depth: depth as u32,
            present: false,
            zero: false,
            data: false,
            compressed: false,
            offset: None,
            computed: false,
            invalid: None,
            missing: false,
            file: 0,
        }
    }

    /// qemu-img map's merge rule: same flags, same depth, contiguous offsets.
    fn continues(&self, n: &MapEntry) -> bool {
        self.start + self.length == n.start
            && (self.depth, self.present, self.zero, self.data, self.compressed, self.computed, self.missing, self.file)
                == (n.depth, n.present, n.zero, n.data, n.compressed, n.computed, n.missing, n.file)
            && self.invalid == n.invalid
            && match (self.offset, n.offset) {
                (None, None) => true,
                (Some(a), Some(b)) => a + self.length == b,
                _ => false,
            }
    }
}

fn push(out: &mut Vec<MapEntry>, e: MapEntry) {
    if e.length == 0 {
        return;
    }
    match out.last_mut() {
        Some(last) if last.continues(&e) => last.length += e.length,
        _ => out.push(e),
    }
}

impl Chain {
    /// Append the merged map of `[start, start+len)` (clipped to the virtual size).
    pub fn map(&self, start: u64, len: u64, out: &mut Vec<MapEntry>) -> Result<()> {
        let mut runs = Vec::new();
        self.layer_runs(start, len, &mut runs)?;
        for e in &runs {
            self.host_pieces(e, |p| {
                push(out, p);
                Ok(())
            })?;
        }
        Ok(())
    }

    /// [`Chain::map`] before data runs are split where their host bytes are holes: runs as
    /// the layers' tables say, as many as [`Chain::walk_steps`] bounds. Host holes can split
    /// one run of data a million ways (a 64 KiB cluster written 4 KiB at a time), so walks
    /// split as they go ([`Chain::host_pieces`]) instead of holding the pieces.
    pub fn layer_runs(&self, start: u64, len: u64, out: &mut Vec<MapEntry>) -> Result<()> {
        let end = start.saturating_add(len).min(self.virtual_size());
        if start < end {
            self.map_layer(0, start, end, out)?;
        }
        Ok(())
    }

    fn map_layer(&self, depth: usize, start: u64, end: u64, out: &mut Vec<MapEntry>) -> Result<()> {
        let layer = &self.layers[depth];
        let mut extents = Vec::new();
        layer.image.map(start, end - start, &mut extents)?;
        for Extent { start, length, kind } in extents {
            let mut e = MapEntry::new(start, length, depth);
            match kind {
                Kind::Data { file, offset } => {
                    e.present = true;
                    e.data = true;
                    e.file = file;
                    e.offset = Some(offset);
                }
                Kind::Hole { file, offset } => {
                    (e.present, e.zero, e.file, e.offset) = (true, true, file, Some(offset));
                }
                Kind::Zero => (e.present, e.zero) = (true, true),
                Kind::Compressed { file, .. } => {
                    (e.present, e.data, e.compressed, e.computed, e.file) = (true, true, true, true, file)
                }
                Kind::Computed { file } => (e.present, e.data, e.computed, e.file) = (true, true, true, file),
                Kind::Missing { file } => (e.present, e.missing, e.file) = (true, true, file),
                Kind::Invalid { entry } => (e.present, e.invalid) = (true, Some(entry)),
                Kind::Unallocated => {
                    let below = depth + 1;
                    if below < self.layers.len() {
                        // Inside the backing file: ask it. Past its end: zeros, decided here.
                        let bsize = self.layers[below].image.info().virtual_size;
                        let split = (start + length).min(bsize.max(start));
                        if split > start {
                            self.map_layer(below, start, split, out)?;
                        }
                        let mut rest = MapEntry::new(split, start + length - split, depth);
                        rest.zero = true;
                        push(out, rest);
                        continue;
                    } else if self.broken.is_some() && layer.image.info().backing.is_some() {
                        e.missing = true;
                    } else {
                        e.zero = true;
                    }
                }
            }
            push(out, e);
        }
        Ok(())
    }

    /// `e` in pieces where its host bytes change between data and holes: a hole reads as
    /// zeros, and QEMU says so. Runs that are not stored data pass through whole.
    pub fn host_pieces(&self, e: &MapEntry, mut emit: impl FnMut(MapEntry) -> Result<()>) -> Result<()> {
        let file = self.layers.get(e.depth as usize).and_then(|l| l.image.file(e.file));
        let (Some(file), Some(offset), true, false) = (file, e.offset, e.data, e.computed) else {
            return emit(*e);
        };
        let mut done = 0;
        while done < e.length {
            // A host that answers with nothing (past its end, say) has said all it can: one
            // piece for the rest, not a byte at a time.
            let left = e.length - done;
            let (is_data, n) = file.allocation(offset + done, left).map(|(d, n)| (d, if n == 0 { left } else { n.min(left) })).unwrap_or((true, left));
            let mut part = *e;
            part.start = e.start + done;
            part.length = n;
            part.offset = Some(offset + done);
            part.zero = !is_data;
            emit(part)?;
            done += n;
        }
        Ok(())
    }

    /// Walk the whole map in steps of [`Chain::walk_steps`], joining runs that cross step
    /// edges so each run comes out once, as qemu-img map prints it.
    pub fn for_each_entry(&self, f: impl FnMut(&MapEntry) -> Result<()>) -> Result<()> {
        self.for_each_entry_in(0, self.virtual_size(), f)
    }

    /// Where one step of a walk from a guest offset ends: where some layer could have
    /// yielded `limits::MAP_WINDOW_RUNS` runs ([`Image::runs_end`](crate::Image::runs_end)),
    /// so a step holds a bounded number of runs whatever the image, and a stretch a layer
    /// knows to be one run (unallocated blocks, a bitmap's holes) is crossed in one step.
    /// The window once grew over empty stretches instead, and a disk empty for 32 GiB and
    /// then dense was mapped 32 GiB at a time (544 MiB held); fixed at 256 MiB, an empty
    /// 5 PiB FVD of 64 KiB chunks took 22 million steps (12 s). Host holes do not shorten a
    /// step: they split data runs as the walk goes ([`Chain::layer_runs`]).
    pub fn walk_steps(&self) -> impl Fn(u64) -> u64 + '_ {
        move |pos| {
            let runs = limits::MAP_WINDOW_RUNS;
            let end = self.layers.iter().map(|l| l.image.runs_end(pos, runs)).min().unwrap_or(u64::MAX);
            end.max(pos + 1)
        }
    }

    /// [`Chain::for_each_entry`] over guest bytes `[start, end)` only (clipped to the disk).
    pub fn for_each_entry_in(&self, start: u64, end: u64, mut f: impl FnMut(&MapEntry) -> Result<()>) -> Result<()> {
        let size = end.min(self.virtual_size());
        let mut pos = start;
        let mut buf = Vec::new();
        let mut pending: Option<MapEntry> = None;
        let step_end = self.walk_steps();
        while pos < size {
            let len = step_end(pos).min(size) - pos;
            buf.clear();
            self.layer_runs(pos, len, &mut buf)?;
            for e in &buf {
                self.host_pieces(e, |e| {
                    match pending.as_mut() {
                        Some(p) if p.continues(&e) => p.length += e.length,
                        _ => {
                            if let Some(p) = pending.replace(e) {
                                f(&p)?;
                            }
                        }
                    }
                    Ok(())
                })?;
            }
            pos += len;
        }
        if let Some(p) = pending {
            f(&p)?;
        }
        Ok(())
    }
}

/// Classes of the map picture; backing data at depth d is `BACKING + d - 1`.
pub mod class {
    pub const UNALLOCATED: u8 = 0;
    pub const ZERO: u8 = 1;
    pub const DATA: u8 = 2;
    pub const COMPRESSED: u8 = 3;
    pub const INVALID: u8 = 4;
    pub const MISSING: u8 = 5;
    pub const BACKING: u8 = 8;
    pub const COUNT: usize = BACKING as usize + crate::limits::MAX_CHAIN_DEPTH;
}

pub fn class_of(e: &MapEntry) -> u8 {
    if e.invalid.is_some() {
        class::INVALID
    } else if e.missing {
        class::MISSING
    } else if e.compressed {
        class::COMPRESSED
    } else if e.data && e.depth > 0 {
        class::BACKING + (e.depth - 1).min(limits::MAX_CHAIN_DEPTH as u32 - 1) as u8
    } else if e.data {
        class::DATA
    } else if e.present {
        class::ZERO
    } else {
        class::UNALLOCATED
    }
}

/// The map as a picture: one class per cell, and bytes per class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cells {
    /// Guest bytes per cell: the cluster size, or a power-of-two multiple of it for big disks.
    pub cell_size: u64,
    pub classes: Vec<u8>,
    /// Guest bytes of each class, indexed by class.
    pub totals: Vec<u64>,
}

impl Chain {
    /// Each cell takes the class covering most of its bytes, except that an invalid range
    /// always shows: corruption must not be averaged away.
    pub fn cells(&self, max_cells: u64) -> Result<Cells> {
        self.cells_at(self.top().info().cluster_size, max_cells)
    }

    /// [`Chain::cells`] with cells of `unit` guest bytes (one of the top image's grids, say),
    /// doubled until at most `max_cells` cover the disk.
    pub fn cells_at(&self, unit: u64, max_cells: u64) -> Result<Cells> {
        self.cells_in(0, self.virtual_size(), unit, max_cells)
    }

    /// [`Chain::cells_at`] for guest bytes `[start, start+len)` only (clipped to the disk):
    /// a zoomed-in map asks for the window it shows, at a finer cell size. Cell `i` covers
    /// `[start + i*cell_size, ...)`; totals count the window's bytes.
    pub fn cells_in(&self, start: u64, len: u64, unit: u64, max_cells: u64) -> Result<Cells> {
        let start = start.min(self.virtual_size());
        let end = start.saturating_add(len).min(self.virtual_size());
        let size = end - start;
        let max_cells = max_cells.clamp(1, limits::MAX_MAP_CELLS);
        let mut cell_size = unit.clamp(512, 1 << 62);
        while size.div_ceil(cell_size) > max_cells {
            cell_size *= 2;
        }
        let n = size.div_ceil(cell_size) as usize;
        let mut classes = alloc::vec![0u8; n];
        let mut totals = alloc::vec![0u64; class::COUNT];
        let mut acc = [0u64; class::COUNT];
        // The cell being accumulated from partial runs, if any.
        let mut pending: Option<usize> = None;
        let flush = |cell: usize, acc: &mut [u64; class::COUNT], classes: &mut Vec<u8>| {
            let best = if acc[class::INVALID as usize] > 0 {
                class::INVALID as usize
            } else {
                (0..class::COUNT).max_by_key(|&c| (acc[c], core::cmp::Reverse(c))).unwrap_or(0)
            };
            classes[cell] = best as u8;
            acc.fill(0);
        };
        self.for_each_entry_in(start, end, |e| {
            let c = class_of(e);
            // Window edges cut runs that start before or end after it.
            let (mut a, b) = (e.start.max(start) - start, (e.start + e.length).min(end) - start);
            totals[c as usize] += b.saturating_sub(a);
            while a < b {
                let cell = (a / cell_size) as usize;
                let cell_end = (cell as u64 + 1) * cell_size;
                if let Some(p) = pending.filter(|&p| p != cell) {
                    flush(p, &mut acc, &mut classes);
                    pending = None;
                }
                if a % cell_size == 0 && b >= cell_end {
                    // Whole cells: the hot path for long uniform runs of a big disk.
                    let last = ((b / cell_size) as usize).min(n);
                    classes[cell..last].fill(c);
                    a = last as u64 * cell_size;
                    continue;
                }
                let part = b.min(cell_end) - a;
                acc[c as usize] += part;
                pending = Some(cell);
                a += part;
            }
            Ok(())
        })?;
        if let Some(p) = pending {
            flush(p, &mut acc, &mut classes);
        }
        Ok(Cells { cell_size, classes, totals })
    }
}
