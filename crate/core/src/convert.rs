//! Reading guest bytes through a chain, and conversion to raw: as a copy into a sink
//! (the CLI), or as a plan of file ranges and zero runs (the browser builds a Blob from it
//! without passing stored bytes through wasm).
use alloc::{vec, vec::Vec};

use crate::chain::Chain;
use crate::error::{Error, Result};
use crate::io::read_clipped;
use crate::map::MapEntry;
use crate::model::Extent;

/// One piece of the raw output, in guest order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize), serde(rename_all = "kebab-case", tag = "kind"))]
pub enum Part {
    /// Copy `length` bytes of file `file` of layer `layer` from `offset`.
    File { layer: u32, file: u16, offset: u64, length: u64 },
    /// `length` zero bytes.
    Zero { length: u64 },
    /// Bytes that must be computed (decoded): read them with [`Chain::read`] at `start`.
    Computed { start: u64, length: u64 },
}

/// Where conversion writes. Offsets are guest offsets; untouched ranges must read as zero.
pub trait Sink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()>;

    /// Copy `length` stored bytes of file `file` of layer `layer` from `from` to guest
    /// offset `to` without passing them through memory, if the platform can (the kernel's
    /// copy_file_range). Returns false to have them read and written instead.
    fn copy_stored(&mut self, layer: u32, file: u16, from: u64, to: u64, length: u64) -> Result<bool> {
        let _ = (layer, file, from, to, length);
        Ok(false)
    }
}

/// Bytes read per step when copying data: large reads, bounded memory.
pub const COPY_CHUNK: usize = 4 << 20;

impl Chain {
    fn entry_error(&self, e: &MapEntry) -> Option<Error> {
        if let Some(entry) = e.invalid {
            let file = self.layers[e.depth as usize].name.clone();
            return Some(Error::CorruptMapping { guest: e.start, file, offset: entry });
        }
        if e.missing {
            let layer = &self.layers[e.depth as usize];
            if e.present {
                // A companion of this layer, not its backing file.
                let c = layer.image.info().companions.get((e.file as usize).wrapping_sub(1));
                return c.map(|c| Error::MissingFile { name: c.name.clone(), by: layer.name.clone(), offset: c.offset });
            }
            return self.broken.as_ref().map(|b| b.error());
        }
        None
    }

    /// Read the bytes of `e` from `guest` into `buf` (within `e`).
    fn read_entry(&self, e: &MapEntry, guest: u64, buf: &mut [u8]) -> Result<()> {
        if let Some(err) = self.entry_error(e) {
            return Err(err);
        }
        let layer = &self.layers[e.depth as usize];
        if e.computed {
            let mut extents = Vec::new();
            layer.image.map(guest, buf.len() as u64, &mut extents)?;
            for x in extents {
                let at = (x.start - guest) as usize;
                let part = &mut buf[at..at + x.length as usize];
                layer.image.read_computed(&Extent { ..x }, x.start, part)?;
            }
            return Ok(());
        }
        match (e.data && !e.zero, e.offset) {
            (true, Some(off)) => {
                let file = layer.image.file(e.file).ok_or(Error::Invalid {
                    format: layer.image.info().format,
                    offset: 0,
                    message: alloc::format!("no file {} in this layer", e.file),
                })?;
                read_clipped(&**file, off + (guest - e.start), buf)
            }
            _ => {
                buf.fill(0);
                Ok(())
            }
        }
    }

    /// Read guest bytes `[guest, guest+buf.len())` as a virtual machine would see them.
    pub fn read(&self, guest: u64, buf: &mut [u8]) -> Result<()> {
        let size = self.virtual_size();
        let len = buf.len() as u64;
        if guest.checked_add(len).is_none_or(|end| end > size) {
            return Err(Error::PastEnd { what: "guest read", offset: guest, len, file_size: size });
        }
        let mut entries = Vec::new();
        self.map(guest, len, &mut entries)?;
        for e in &entries {
            let a = (e.start - guest) as usize;
            self.read_entry(e, e.start, &mut buf[a..a + e.length as usize])?;
        }
        Ok(())
    }

    /// The raw image as parts: file ranges (merged where contiguous), zero runs, computed runs.
    pub fn plan(&self, mut f: impl FnMut(Part) -> Result<()>) -> Result<()> {
        let mut cur: Option<Part> = None;
        self.for_each_entry(|e| {
            if let Some(err) = self.entry_error(e) {
                return Err(err);
            }
            let mut parts = [None, None];
            if e.computed {
                parts[0] = Some(Part::Computed { start: e.start, length: e.length });
            } else {
                match (e.data && !e.zero, e.offset) {
                    (true, Some(offset)) => {
                        // Stored bytes past the end of a sparse file read as zeros.
                        let size = self.layers[e.depth as usize].image.file(e.file).map_or(0, |f| f.size());
                        let stored = size.saturating_sub(offset).min(e.length);
                        if stored > 0 {
                            parts[0] = Some(Part::File { layer: e.depth, file: e.file, offset, length: stored });
                        }
                        if stored < e.length {
                            parts[1] = Some(Part::Zero { length: e.length - stored });
                        }
                    }
                    _ => parts[0] = Some(Part::Zero { length: e.length }),
                }
            }
            for next in parts.into_iter().flatten() {
                cur = join(cur.take(), next, &mut f)?;
            }
            Ok(())
        })?;
        if let Some(p) = cur {
            f(p)?;
        }
        Ok(())
    }

    /// Copy the whole disk into `sink`, leaving zero runs unwritten (the sink starts as zeros)
    /// and skipping all-zero 4 KiB blocks of data as `qemu-img convert -S 4k` does.
    /// `progress(done, total)` returns false to cancel.
    pub fn convert(&self, sink: &mut dyn Sink, progress: &mut dyn FnMut(u64, u64) -> bool) -> Result<()> {
        let total = self.virtual_size();
        let mut buf = vec![0u8; COPY_CHUNK];
        let mut guest = 0u64;
        self.plan(|part| {
            let length = match part {
                Part::Zero { length } => length,
                Part::File { layer, file, offset, length } if sink.copy_stored(layer, file, offset, guest, length)? => length,
                Part::File { length, .. } | Part::Computed { length, .. } => {
                    let mut done = 0;
                    while done < length {
                        let n = (length - done).min(COPY_CHUNK as u64) as usize;
                        let chunk = &mut buf[..n];
                        match part {
                            Part::File { layer, file, offset, .. } => {
                                let f = self.layers[layer as usize].image.file(file).expect("plan names a layer's file");
                                read_clipped(&**f, offset + done, chunk)?;
                            }
                            _ => self.read(guest + done, chunk)?,
                        }
                        write_nonzero(sink, guest + done, chunk)?;
                        done += n as u64;
                        if !progress(guest + done, total) {
                            return Err(Error::Cancelled);
                        }
                    }
                    length
                }
            };
            guest += length;
            if !progress(guest, total) {
                return Err(Error::Cancelled);
            }
            Ok(())
        })
    }
}

/// Extend `cur` by `next` where they join (contiguous in the same file, or both zeros or
/// both computed); otherwise hand `cur` on and start again from `next`.
fn join(cur: Option<Part>, next: Part, f: &mut impl FnMut(Part) -> Result<()>) -> Result<Option<Part>> {
    Ok(match (cur, next) {
        (Some(Part::Zero { length: a }), Part::Zero { length: b }) => Some(Part::Zero { length: a + b }),
        (Some(Part::File { layer, file, offset, length }), Part::File { layer: l2, file: f2, offset: o2, length: n2 })
            if (layer, file) == (l2, f2) && offset + length == o2 =>
        {
            Some(Part::File { layer, file, offset, length: length + n2 })
        }
        (Some(Part::Computed { start, length }), Part::Computed { start: s2, length: n2 }) if start + length == s2 => {
            Some(Part::Computed { start, length: length + n2 })
        }
        (prev, next) => {
            if let Some(p) = prev {
                f(p)?;
            }
            Some(next)
        }
    })
}

/// Write the runs of `data` that are not all-zero 4 KiB blocks (`qemu-img convert -S 4k`).
pub fn write_nonzero(sink: &mut dyn Sink, offset: u64, data: &[u8]) -> Result<()> {
    const BLOCK: usize = 4096;
    let mut run: Option<usize> = None;
    for (i, block) in data.chunks(BLOCK).enumerate() {
        let zero = block.iter().all(|&b| b == 0);
        match (zero, run) {
            (false, None) => run = Some(i * BLOCK),
            (true, Some(s)) => {
                sink.write_at(offset + s as u64, &data[s..i * BLOCK])?;
                run = None;
            }
            _ => {}
        }
    }
    if let Some(s) = run {
        sink.write_at(offset + s as u64, &data[s..])?;
    }
    Ok(())
}
