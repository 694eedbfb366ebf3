//! VMDK, VMware's virtual disk: a text descriptor naming extents (flat files, sparse files
//! with grain tables, zero runs), either in its own file or embedded in a monolithic sparse
//! file; stream-optimized sparse files with compressed grains; parents named by file name
//! and checked by content ID (CID). Spec: VMware "Virtual Disk Format 1.1" (and 5.0 for
//! zeroed-grain GTEs); behaviour matched to QEMU's block/vmdk.c, with its differences from
//! the spec stated where they show (check findings, tests).
use alloc::{boxed::Box, format, string::String, sync::Arc, vec, vec::Vec};
use core::cell::RefCell;

use crate::error::{Error, Result};
use crate::image::{Driver, Image, OpenCtx};
use crate::io::{read_clipped, CachedFile, ReadAt};
use crate::limits;
use crate::model::*;
use crate::formats::walk;

mod check;
mod descriptor;
mod sparse;
#[cfg(any(test, feature = "samples"))]
pub(crate) mod sample;
#[cfg(test)]
mod tests;

use descriptor::Descriptor;
use crate::formats::bytes::{le32, le64};
use sparse::{Flavour, Sparse, MAGIC_COWD, MAGIC_KDMV, SECTOR};

pub static DRIVER: Driver = Driver { name: "vmdk", probe, open };

/// Most extents one descriptor may list.
pub const MAX_EXTENTS: usize = 4096;
/// Largest descriptor read (QEMU reads at most 1 MiB - 1 of a descriptor file).
pub const MAX_DESCRIPTOR: u64 = 1 << 20;
/// Compressed grains are read ahead in spans of this many bytes.
const READ_AHEAD: u64 = 8 << 20;
/// Sparse extent headers shown as fields, for descriptors with many extent files.
const MAX_EXTENT_HEADERS_SHOWN: usize = 32;

fn probe(head: &[u8], _file: &dyn ReadAt) -> bool {
    head.starts_with(MAGIC_KDMV) || head.starts_with(MAGIC_COWD) || descriptor::looks_like(head)
}

fn invalid(offset: u64, message: String) -> Error {
    Error::Invalid { format: "vmdk", offset, message }
}

fn open(file: Arc<dyn ReadAt>, ctx: &OpenCtx) -> Result<Box<dyn Image>> {
    Ok(Box::new(Vmdk::open(file, ctx)?))
}

enum ExtKind {
    /// The bytes as they are, from `offset` of file `file`.
    Flat { file: u16, offset: u64 },
    /// Reads as zeros; stored nowhere.
    Zero,
    Sparse(Box<Sparse>),
    /// The extent file was not given.
    Missing { file: u16 },
    /// The extent cannot be read (a bad line, an unreadable extent file): why.
    Broken { reason: String },
}

struct Ext {
    /// Guest bytes `[start, start+length)`.
    start: u64,
    length: u64,
    kind: ExtKind,
    /// The descriptor line that defines it, when there is one.
    line: Option<usize>,
}

pub(crate) struct Vmdk {
    name: String,
    /// File i of the layer: 0 the image (descriptor or monolithic file), then one per
    /// distinct extent file name (None when it was not found).
    files: Vec<Option<Arc<dyn ReadAt>>>,
    /// How findings name each file.
    file_names: Vec<String>,
    info: ImageInfo,
    /// A hosted sparse header that only carries a descriptor (capacity 0).
    carrier: Option<[u8; 512]>,
    desc: Option<Descriptor>,
    /// Where the descriptor text starts in file 0, and the bytes read for it.
    desc_base: u64,
    desc_area: u64,
    create_type: Option<String>,
    cid: Option<u32>,
    parent_cid: Option<u32>,
    extents: Vec<Ext>,
    /// File 0 is itself the one sparse extent (monolithicSparse, streamOptimized, COWD).
    mono: bool,
    /// Problems found while opening (extent files), reported by check.
    notes: Vec<Finding>,
    /// The last grain decoded: (file, offset, bytes).
    grain_cache: RefCell<Option<(u16, u64, Vec<u8>)>>,
    /// Per file, the span of compressed grains last read ahead.
    ahead: RefCell<Vec<(u64, u64)>>,
}

/// A CID as QEMU reads it (`%x`: hex, an optional 0x).
fn parse_cid(v: &str) -> Option<u32> {
    let t = v.trim();
    let t = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
    u32::from_str_radix(t, 16).ok()
}

impl Vmdk {
    fn open(file: Arc<dyn ReadAt>, ctx: &OpenCtx) -> Result<Vmdk> {
        let size = file.size();
        if size < 4 {
            return Err(invalid(0, format!("the file is {} bytes long, too small for a VMDK image", size)));
        }
        let mut head = [0u8; 512];
        read_clipped(&*file, 0, &mut head)?;
        let mut v = Vmdk {
            name: String::from(ctx.name),
            files: vec![Some(file.clone())],
            file_names: vec![String::from(ctx.name)],
            info: ImageInfo {
                format: "vmdk",
                variant: String::new(),
                layout: LayoutStatus::Confirmed,
                virtual_size: 0,
                cluster_size: 0,
                backing: None,
                dirty: false,
                companions: Vec::new(),
            },
            carrier: None,
            desc: None,
            desc_base: 0,
            desc_area: 0,
            create_type: None,
            cid: None,
            parent_cid: None,
            extents: Vec::new(),
            mono: false,
            notes: Vec::new(),
            grain_cache: RefCell::new(None),
            ahead: RefCell::new(Vec::new()),
        };
        if head.starts_with(MAGIC_KDMV) && le64(&head, 12) == 0 && le64(&head, 28) != 0 {
            // QEMU's rule: a sparse header of capacity 0 carries a descriptor listing extents.
            v.carrier = Some(head);
            let base = le64(&head, 28).checked_mul(SECTOR).ok_or_else(|| invalid(28, String::from("descriptorOffset is too large")))?;
            v.load_descriptor(&*file, base, MAX_DESCRIPTOR - 1)?;
            v.extents_from_descriptor(ctx)?;
        } else if head.starts_with(MAGIC_KDMV) || head.starts_with(MAGIC_COWD) {
            let sp = if head.starts_with(MAGIC_KDMV) { Sparse::hosted(&*file, 0, &head)? } else { Sparse::cowd(&*file, 0)? };
            let (doff, dlen) = sp.desc;
            if sp.flavour == Flavour::Hosted && doff > 0 && dlen > 0 {
                v.load_descriptor(&*file, doff, dlen.min(MAX_DESCRIPTOR))?;
            }
            v.mono = true;
            let line = v.desc.as_ref().and_then(|d| d.extents().next().map(|(i, _)| i));
            v.extents.push(Ext { start: 0, length: sp.capacity, kind: ExtKind::Sparse(Box::new(sp)), line });
        } else {
            v.load_descriptor(&*file, 0, MAX_DESCRIPTOR)?;
            let d = v.desc.as_ref().expect("just loaded");
            if d.get("createType").is_none() && d.extents().next().is_none() {
                return Err(invalid(0, String::from("not a VMDK descriptor: it has neither a createType line nor extent lines")));
            }
            if size > MAX_DESCRIPTOR {
                v.notes.push(v.finding(Severity::Warning, "descriptor-large", MAX_DESCRIPTOR, size - MAX_DESCRIPTOR, format!(
                    "the descriptor file is {} bytes long; only its first {} bytes are read (QEMU reads at most 1 MiB too)", size, MAX_DESCRIPTOR)));
            }
            v.extents_from_descriptor(ctx)?;
        }
        v.finish();
        Ok(v)
    }

    fn finding(&self, severity: Severity, code: &'static str, offset: u64, length: u64, message: String) -> Finding {
        Finding { severity, code, file: self.name.clone(), offset: Some(offset), length, guest: None, message }
    }

    /// Read and parse `len` bytes of descriptor at `base` of file 0 (fewer if the file ends).
    fn load_descriptor(&mut self, file: &dyn ReadAt, base: u64, len: u64) -> Result<()> {
        let avail = file.size().saturating_sub(base).min(len);
        let mut buf = vec![0u8; avail as usize];
        read_clipped(file, base, &mut buf)?;
        self.desc = Some(Descriptor::parse(&buf));
        self.desc_base = base;
        self.desc_area = avail;
        Ok(())
    }

    /// The file index for extent file `name` (named at `name_at` of file 0): an earlier
    /// extent's file, the image itself, or a new companion (resolved, or missing).
    fn extent_file(&mut self, ctx: &OpenCtx, name: &str, name_at: u64) -> u16 {
        if let Some(i) = self.info.companions.iter().position(|c| c.name == name) {
            return i as u16 + 1;
        }
        let found = ctx.resolver.resolve(name, ctx.name);
        if found.as_ref().is_some_and(|(key, _)| key == ctx.name) {
            return 0;
        }
        let key = found.as_ref().map(|(k, _)| k.clone());
        self.file_names.push(key.clone().unwrap_or_else(|| String::from(name)));
        // Cached like the chain caches file 0 (single-threaded, as the whole core is).
        #[allow(clippy::arc_with_non_send_sync)]
        self.files.push(found.map(|(_, f)| Arc::new(CachedFile::new(f)) as Arc<dyn ReadAt>));
        self.info.companions.push(Companion { role: "extent file", name: String::from(name), offset: name_at, found: key });
        self.info.companions.len() as u16
    }

    fn extents_from_descriptor(&mut self, ctx: &OpenCtx) -> Result<()> {
        let d = self.desc.take().expect("loaded");
        let lines: Vec<(usize, descriptor::ExtentLine)> = d.extents().map(|(i, x)| (i, x.clone())).collect();
        if lines.len() > MAX_EXTENTS {
            return Err(Error::Limit { what: "VMDK extents in one descriptor", needed: lines.len() as u64, limit: MAX_EXTENTS as u64 });
        }
        let mut pos = 0u64;
        for (li, x) in lines {
            let line_at = self.desc_base + d.lines[li].offset;
            // A line without a usable size is reported by the parser and skipped, as QEMU does.
            let Some(declared) = x.sectors.filter(|&n| n > 0).and_then(|n| n.checked_mul(SECTOR)) else { continue };
            let mut length = declared;
            let name = x.name.clone().filter(|n| !n.is_empty());
            let kind = match (x.kind.as_str(), name) {
                ("ZERO", _) => ExtKind::Zero,
                ("FLAT" | "VMFS" | "SPARSE" | "VMFSSPARSE", None) => ExtKind::Broken { reason: String::from("the extent line names no file") },
                ("FLAT" | "VMFS", Some(_)) if x.bad_offset => ExtKind::Broken { reason: String::from("the extent line's offset is not a usable number of sectors") },
                ("FLAT" | "VMFS", Some(name)) => {
                    let file = self.extent_file(ctx, &name, self.desc_base + x.name_at);
                    match &self.files[file as usize] {
                        None => ExtKind::Missing { file },
                        Some(_) => ExtKind::Flat { file, offset: x.offset.unwrap_or(0) * SECTOR },
                    }
                }
                ("SPARSE" | "VMFSSPARSE", Some(name)) => {
                    let file = self.extent_file(ctx, &name, self.desc_base + x.name_at);
                    match self.files[file as usize].clone() {
                        None => ExtKind::Missing { file },
                        Some(f) => match open_sparse(&*f, file) {
                            Ok(sp) => {
                                length = sp.capacity;
                                ExtKind::Sparse(Box::new(sp))
                            }
                            Err(reason) => ExtKind::Broken { reason },
                        },
                    }
                }
                ("VMFSRDM" | "VMFSRAW", _) => ExtKind::Broken { reason: String::from("a raw device mapping: the data is on a physical device, not in a file") },
                ("SESPARSE", _) => ExtKind::Broken { reason: String::from("a seSparse extent: diskscope does not read seSparse extents") },
                (other, _) => ExtKind::Broken { reason: format!("the extent type '{}' is not one the VMDK specification defines", other) },
            };
            self.extents.push(Ext { start: pos, length, kind, line: Some(li) });
            pos = pos.checked_add(length).filter(|&p| p <= limits::MAX_VIRTUAL_SIZE).ok_or_else(|| {
                invalid(line_at, String::from("the extents add up to more than the largest disk diskscope reads"))
            })?;
        }
        self.desc = Some(d);
        Ok(())
    }

    /// CIDs, the parent, the facts for info.
    fn finish(&mut self) {
        let mut backing = None;
        if let Some(d) = &self.desc {
            self.cid = d.get("CID").and_then(|(v, _, _)| parse_cid(v));
            self.parent_cid = d.get("parentCID").and_then(|(v, _, _)| parse_cid(v));
            self.create_type = d.get("createType").map(|(v, _, _)| String::from(v));
            if let Some((name, _, at)) = d.get("parentFileNameHint") {
                if !name.is_empty() {
                    backing = Some(BackingRef { name: String::from(name), format: Some(String::from("vmdk")), offset: self.desc_base + at });
                }
            }
        }
        let first_sparse = self.extents.iter().find_map(|e| match &e.kind {
            ExtKind::Sparse(s) => Some(&**s),
            _ => None,
        });
        let ct = self.create_type.clone().unwrap_or_else(|| {
            String::from(match first_sparse {
                Some(s) if s.flavour == Flavour::Cowd => "vmfsSparse",
                Some(s) if s.compressed => "streamOptimized",
                _ => "monolithicSparse",
            })
        });
        let detail = match (self.mono, first_sparse) {
            (true, Some(s)) if s.flavour == Flavour::Cowd => format!("ESX sparse (COWD) extent, version {}, {} grains", s.version, crate::formats::fmt::size(s.grain)),
            (true, Some(s)) => format!(
                "hosted sparse extent, version {}, {} grains{}{}",
                s.version,
                crate::formats::fmt::size(s.grain),
                if s.compressed { ", compressed" } else { "" },
                if s.footer.is_some() { ", grain directory in the footer" } else { "" }
            ),
            _ => {
                let n = self.extents.len();
                let files = self.info.companions.len();
                format!("descriptor with {} extent{} in {} file{}", n, if n == 1 { "" } else { "s" }, files, if files == 1 { "" } else { "s" })
            }
        };
        self.info.variant = format!("{} ({})", ct, detail);
        self.info.virtual_size = self.extents.last().map_or(0, |e| e.start + e.length);
        self.info.cluster_size = first_sparse.map_or(0, |s| s.grain);
        self.info.dirty = self.extents.iter().any(|e| matches!(&e.kind, ExtKind::Sparse(s) if s.unclean));
        self.info.backing = backing;
        *self.ahead.borrow_mut() = vec![(0, 0); self.files.len()];
    }

    fn line_at(&self, e: &Ext) -> u64 {
        match (e.line, &self.desc) {
            (Some(i), Some(d)) => self.desc_base + d.lines[i].offset,
            _ => 0,
        }
    }

    /// The extent holding guest offset `g`.
    fn extent_at(&self, g: u64) -> Option<&Ext> {
        let i = self.extents.partition_point(|e| e.start + e.length <= g);
        self.extents.get(i).filter(|e| e.start <= g)
    }

    /// Read ahead the compressed grains that follow `at` in file `file`, once per span.
    fn read_ahead(&self, file: u16, f: &dyn ReadAt, at: u64, need: u64) {
        let mut ahead = self.ahead.borrow_mut();
        let Some(span) = ahead.get_mut(file as usize) else { return };
        if at >= span.0 && at.saturating_add(need) <= span.1 {
            return;
        }
        // Aligned windows, so grains stored out of guest order come back to a span the
        // cache already holds; a grain across a window's end starts its own window.
        let aligned = at / READ_AHEAD * READ_AHEAD;
        let start = if at.saturating_add(need) <= aligned + READ_AHEAD { aligned } else { at };
        let end = start.saturating_add(READ_AHEAD).min(f.size());
        if end > start {
            f.prefetch(&mut [(start, end - start)]);
        }
        *span = (start, end);
    }

    /// The sparse extent of file 0, for regions and records.
    fn mono_sparse(&self) -> Option<&Sparse> {
        match (self.mono, self.extents.first().map(|e| &e.kind)) {
            (true, Some(ExtKind::Sparse(s))) => Some(s),
            _ => None,
        }
    }
}

/// Open a sparse extent file by its magic; an error says why in words.
fn open_sparse(f: &dyn ReadAt, id: u16) -> core::result::Result<Sparse, String> {
    let mut head = [0u8; 512];
    read_clipped(f, 0, &mut head).map_err(|e| format!("{}", e))?;
    let r = if head.starts_with(MAGIC_KDMV) {
        if le64(&head, 12) == 0 && le64(&head, 28) != 0 {
            return Err(String::from("the extent file holds another descriptor (capacity 0): nested descriptors are not read"));
        }
        Sparse::hosted(f, id, &head)
    } else if head.starts_with(MAGIC_COWD) {
        Sparse::cowd(f, id)
    } else {
        return Err(format!("the extent file does not start with \"KDMV\" or \"COWD\" (it starts with {})", Hex(&head[..4])));
    };
    r.map_err(|e| format!("{}", e))
}

/// Runs of `(offset, length)` merged where one ends where the next starts.
fn runs(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (o, l) in v {
        match out.last_mut() {
            Some((a, n)) if *a + *n == o => *n += l,
            _ => out.push((o, l)),
        }
    }
    out
}

impl Image for Vmdk {
    fn info(&self) -> &ImageInfo {
        &self.info
    }

    fn header_fields(&self) -> Vec<Field> {
        let mut out = Vec::new();
        if let Some(h) = &self.carrier {
            out.extend(sparse::header_fields(h));
        }
        if let Some(s) = self.mono_sparse() {
            out.extend(s.fields(""));
        }
        if let Some(d) = &self.desc {
            out.extend(d.fields(self.desc_base));
        }
        if let Some(s) = self.mono_sparse() {
            out.extend(s.footer_fields(""));
        }
        if !self.mono {
            let sparse = self.extents.iter().filter_map(|e| match &e.kind {
                ExtKind::Sparse(s) => Some(s),
                _ => None,
            });
            for s in sparse.take(MAX_EXTENT_HEADERS_SHOWN) {
                let name = self.info.companions.get((s.file as usize).wrapping_sub(1)).map_or(self.name.as_str(), |c| c.name.as_str());
                let prefix = format!("{}: ", name);
                out.extend(s.fields(&prefix));
                out.extend(s.footer_fields(&prefix));
            }
        }
        out
    }

    fn regions(&self) -> Result<Vec<Region>> {
        let region = |name: &str, kind, offset, length| Region { name: String::from(name), kind, offset, length };
        let mut r = Vec::new();
        let f0 = self.files[0].as_ref().expect("file 0 is the image");
        if self.carrier.is_some() {
            r.push(region("sparse header (carries the descriptor)", RegionKind::Header, 0, SECTOR));
        }
        let Some(s) = self.mono_sparse() else {
            r.push(region("descriptor", RegionKind::Header, self.desc_base, self.desc.as_ref().map_or(0, |d| d.text_len)));
            return Ok(r);
        };
        let mut meta = vec![region("header", RegionKind::Header, 0, s.raw.len() as u64)];
        if self.desc_area > 0 {
            meta.push(region("descriptor", RegionKind::Header, self.desc_base, self.desc_area));
        }
        let dir_bytes = s.gd.len() as u64 * 4;
        if let Some(ro) = s.rgd_offset {
            meta.push(region("redundant grain directory", RegionKind::Table, ro, dir_bytes));
            let (rgd, _) = sparse::read_gd(&**f0, ro, s.gd.len() as u64)?;
            let gts = rgd.iter().filter(|&&e| e != 0).map(|&e| (e as u64 * SECTOR, s.gt_bytes())).filter(|&(o, n)| o + n <= s.file_size).collect();
            for (o, n) in runs(gts) {
                meta.push(region("redundant grain tables", RegionKind::Table, o, n));
            }
        }
        meta.push(region("grain directory", RegionKind::Table, s.gd_offset, dir_bytes));
        let gts = (0..s.gd.len() as u64).filter_map(|i| s.gt_at(i).ok().flatten().map(|o| (o, s.gt_bytes()))).collect();
        for (o, n) in runs(gts) {
            meta.push(region("grain tables", RegionKind::Table, o, n));
        }
        if let Some((at, _)) = &s.footer {
            meta.push(region("footer marker", RegionKind::Header, at - SECTOR, SECTOR));
            meta.push(region("footer", RegionKind::Header, *at, SECTOR));
            meta.push(region("end-of-stream marker", RegionKind::Header, at + SECTOR, SECTOR));
        }
        meta.retain(|m| m.length > 0 && m.offset < s.file_size);
        meta.sort_by_key(|m| m.offset);
        // The grains lie from overHead to the first metadata that follows it (the tables
        // and footer of a stream-optimized file come after its grains).
        let data_start = if s.flavour == Flavour::Hosted && s.overhead > 0 {
            s.overhead
        } else {
            meta.iter().map(|m| m.offset + m.length).max().unwrap_or(0)
        };
        let data_end = meta.iter().map(|m| m.offset).filter(|&o| o >= data_start).min().unwrap_or(s.file_size).min(s.file_size);
        r.extend(meta);
        if data_end > data_start {
            r.push(region(if s.compressed { "compressed grains" } else { "grains" }, RegionKind::Data, data_start, data_end - data_start));
            r.sort_by_key(|m| m.offset);
        }
        Ok(r)
    }

    fn map(&self, start: u64, len: u64, out: &mut Vec<Extent>) -> Result<()> {
        let end = start + len;
        let mut i = self.extents.partition_point(|e| e.start + e.length <= start);
        let mut pos = start;
        while pos < end {
            let Some(e) = self.extents.get(i) else {
                return Err(invalid(0, format!("no extent holds guest offset {}", pos)));
            };
            let (a, b) = (pos - e.start, end.min(e.start + e.length) - e.start);
            let mut one = |kind| Extent::push(out, Extent { start: e.start + a, length: b - a, kind });
            match &e.kind {
                ExtKind::Flat { file, offset } => match offset.checked_add(a) {
                    Some(o) => one(Kind::Data { file: *file, offset: o }),
                    None => one(Kind::Invalid { entry: self.line_at(e) }),
                },
                ExtKind::Zero => one(Kind::Zero),
                ExtKind::Missing { file } => one(Kind::Missing { file: *file }),
                ExtKind::Broken { .. } => one(Kind::Invalid { entry: self.line_at(e) }),
                ExtKind::Sparse(s) => {
                    let f = self.files[s.file as usize].as_ref().expect("a sparse extent's file is open");
                    s.map(&**f, a, b, e.start, out)?;
                }
            }
            pos = e.start + b;
            i += 1;
        }
        Ok(())
    }

    /// Each extent is one run but a sparse one, whose grain tables are a run each where
    /// absent or a host hole and a run per grain elsewhere: a 60 TiB disk qemu-img made, its
    /// 4 GB of tables all holes, once took 245,760 steps of 256 MiB (16.6 s).
    fn runs_end(&self, pos: u64, runs: u64) -> u64 {
        // Runs left to spend (at least one at the top of the loop) and where the next start.
        let mut left = runs.max(1);
        let mut i = self.extents.partition_point(|e| e.start + e.length <= pos);
        let mut at = pos;
        while let Some(e) = self.extents.get(i) {
            let end = e.start + e.length;
            let mut cost = 1;
            if let ExtKind::Sparse(s) = &e.kind {
                let f = self.files[s.file as usize].as_ref().expect("a sparse extent's file is open");
                let (cover, rel) = (s.gt_cover().max(1), at - e.start);
                let tables = e.length.div_ceil(cover);
                let listed = tables.min(s.gd.len() as u64);
                let (k, rest) = walk::spend(rel, cover, listed, left, |g| s.gt_runs(&**f, g));
                if k < listed {
                    // The budget ends inside this extent: at a table, or within the first.
                    let grains = at.saturating_add(left.saturating_mul(s.grain.max(1))).min(end);
                    return if k == rel / cover { grains } else { e.start + k * cover };
                }
                // Tables past the directory's end map as one invalid run.
                if rest == 0 && listed < tables {
                    return e.start + listed * cover;
                }
                (left, cost) = (rest, u64::from(listed < tables));
            }
            left -= cost;
            if left == 0 {
                return end;
            }
            at = end;
            i += 1;
        }
        u64::MAX
    }

    fn file(&self, index: u16) -> Option<&Arc<dyn ReadAt>> {
        self.files.get(index as usize)?.as_ref()
    }

    fn read_computed(&self, extent: &Extent, guest: u64, buf: &mut [u8]) -> Result<()> {
        let Kind::Compressed { file, offset } = extent.kind else {
            return Err(Error::Unsupported { format: "vmdk", offset: extent.start, message: String::from("only compressed grains are computed") });
        };
        let e = self.extent_at(guest).ok_or_else(|| invalid(0, format!("no extent holds guest offset {}", guest)))?;
        let ExtKind::Sparse(s) = &e.kind else {
            return Err(invalid(0, format!("guest offset {} is not in a sparse extent", guest)));
        };
        let f = self.files.get(file as usize).and_then(|f| f.as_ref()).ok_or_else(|| invalid(0, format!("no file {} in this image", file)))?;
        let rel = guest - e.start;
        let g = rel / s.grain * s.grain;
        let at = (rel - g) as usize;
        let mut cache = self.grain_cache.borrow_mut();
        if !matches!(&*cache, Some((cf, co, _)) if *cf == file && *co == offset) {
            self.read_ahead(file, &**f, offset, 2 * s.grain + 12);
            let mut out = vec![0u8; s.grain as usize];
            let valid = s.grain.min(e.length - g);
            s.decode(&**f, offset, valid, &mut out).map_err(|m| {
                invalid(offset, format!("the compressed grain at byte {} of {} (guest offset {}) cannot be read: {}", offset, self.file_names[file as usize], e.start + g, m))
            })?;
            *cache = Some((file, offset, out));
        }
        let (_, _, bytes) = cache.as_ref().expect("just filled");
        let part = bytes.get(at..at + buf.len()).ok_or_else(|| invalid(offset, String::from("a read runs past the end of its grain")))?;
        buf.copy_from_slice(part);
        Ok(())
    }

    fn identity(&self) -> Option<String> {
        self.cid.map(|c| format!("vmdk-cid:{:08x}", c))
    }

    fn backing_identity(&self) -> Option<String> {
        self.parent_cid.filter(|&p| p != 0xffff_ffff).map(|p| format!("vmdk-cid:{:08x}", p))
    }

    fn check(&self) -> Result<CheckResult> {
        check::run(self)
    }

    /// The metadata markers of a stream-optimized file: where grain tables, the grain
    /// directory, the footer and the end of the stream are announced.
    fn records(&self) -> Vec<Record> {
        let Some(s) = self.mono_sparse().filter(|s| s.markers) else { return Vec::new() };
        let f = self.files[0].as_ref().expect("file 0");
        // Where each marker must be if the file has it: just before the table it announces.
        let mut at: Vec<(u64, u32)> =
            (0..s.gd.len() as u64).filter_map(|i| s.gt_at(i).ok().flatten()).filter(|&o| o >= SECTOR).map(|o| (o - SECTOR, sparse::MARKER_GT)).collect();
        if s.gd_offset != sparse::GD_AT_END && s.gd_offset >= SECTOR {
            at.push((s.gd_offset - SECTOR, sparse::MARKER_GD));
        }
        if let Some((foot, _)) = &s.footer {
            at.extend([(foot - SECTOR, sparse::MARKER_FOOTER), (foot + SECTOR, sparse::MARKER_EOS)]);
        }
        at.sort_unstable();
        at.dedup();
        at.truncate(limits::MAX_FINDINGS);
        let mut ranges: Vec<(u64, u64)> = at.iter().map(|&(o, _)| (o, 16)).collect();
        f.prefetch(&mut ranges);
        let mut out = Vec::new();
        for (o, want) in at {
            let mut m = [0u8; 16];
            if crate::io::read_exact_at(&**f, o, &mut m, "marker").is_err() || le32(&m, 8) != 0 || le32(&m, 12) != want {
                continue;
            }
            let (val, ty) = (le64(&m, 0), want);
            let (kind, note) = match ty {
                sparse::MARKER_EOS => ("end-of-stream marker", String::from("the stream ends here")),
                sparse::MARKER_GT if val > 0 => ("grain table marker", format!("a grain table of {} sectors follows", val)),
                sparse::MARKER_GD if val > 0 => ("grain directory marker", format!("the grain directory ({} sectors) follows", val)),
                sparse::MARKER_FOOTER => ("footer marker", String::from("the footer (a copy of the header with the real gdOffset) follows")),
                _ => continue,
            };
            out.push(Record {
                kind: String::from(kind),
                offset: o,
                length: SECTOR,
                fields: vec![(String::from("val"), format!("{}", val)), (String::from("size"), String::from("0")), (String::from("type"), format!("{}", ty))],
                note,
                stale: false,
                applied: true,
            });
        }
        out
    }
}
