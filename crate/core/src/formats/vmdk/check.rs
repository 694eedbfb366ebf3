//! VMDK consistency check. QEMU's vmdk check (block/vmdk.c vmdk_co_check) looks up every
//! grain and reports the first one whose offset lies at or past the end of its extent
//! file; it counts no leaks. This check does that for every grain, and adds what QEMU does
//! not look at: the grain directory against its redundant copy, grains overlapping
//! metadata or each other, compressed grains that do not decode, stream markers, and the
//! descriptor itself (extent sizes, createType, missing files, CID and parentCID).
use alloc::{format, string::String, vec, vec::Vec};

use super::descriptor::create_type_note;
use super::sparse::{self, Flavour, Gte, Sparse, SECTOR};
use super::{ExtKind, Ext, Vmdk};
use crate::error::Result;
use crate::io::ReadAt;
use crate::limits;
use crate::model::{CheckResult, Finding, Severity};

/// Compressed bytes decoded by one check; past this, grains are only located.
const DECODE_BUDGET: u64 = 256 << 20;
/// Grains remembered for the overlap check.
const MAX_GRAINS_TRACKED: usize = (limits::MAX_TABLE_BYTES / 32) as usize;
/// Metadata ranges kept apart for the overlap check (a quarter of the grains' 32 MiB: each
/// holds 32 bytes). Tables next to each other are one range: qemu-img lays 4 GB of them out
/// in two runs, but a hostile directory can name millions scattered over the file.
const MAX_META_RANGES: usize = MAX_GRAINS_TRACKED / 4;

/// createType values QEMU opens from a descriptor file (block/vmdk.c vmdk_open_desc_file).
const QEMU_DESCRIPTOR_TYPES: [&str; 6] = ["monolithicFlat", "vmfs", "vmfsSparse", "seSparse", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat"];

struct Ctx<'a> {
    v: &'a Vmdk,
    r: CheckResult,
}

impl Ctx<'_> {
    #[allow(clippy::too_many_arguments)]
    /// The message is made only if the finding is kept (a grain table's every entry can be bad).
    fn add(&mut self, severity: Severity, code: &'static str, file: &str, offset: u64, length: u64, guest: Option<u64>, message: impl FnOnce() -> String) {
        self.r.add_with(severity, 1, || Finding { severity, code, file: String::from(file), offset: Some(offset), length, guest, message: message() });
    }
}

pub(super) fn run(v: &Vmdk) -> Result<CheckResult> {
    let mut c = Ctx { v, r: CheckResult::default() };
    for f in &v.notes {
        c.r.add(f.clone());
    }
    descriptor(&mut c);
    ids(&mut c);
    for e in &v.extents {
        extent(&mut c, e)?;
    }
    Ok(c.r)
}

fn descriptor(c: &mut Ctx) {
    let v = c.v;
    let name = v.name.as_str();
    let Some(d) = &v.desc else {
        if v.mono && v.extents.first().is_some_and(|e| matches!(&e.kind, ExtKind::Sparse(s) if s.flavour == Flavour::Hosted)) {
            c.add(Severity::Warning, "descriptor-missing", name, 28, 16, None, || String::from(
                "the sparse header has no embedded descriptor: there is no CID, and QEMU refuses to open the image"));
        }
        return;
    };
    let base = v.desc_base;
    for p in &d.problems {
        c.add(p.severity, p.code, name, base + p.offset, p.len, None, || p.message.clone());
    }
    for (at, len, key) in d.duplicates() {
        c.add(Severity::Warning, "descriptor-duplicate-key", name, base + at, len, None, || format!("{} is set more than once; the first line is the one read", key));
    }
    match d.get("createType") {
        None => c.add(Severity::Warning, "create-type-missing", name, base, 0, None, || String::from(
            "the descriptor has no createType line; QEMU refuses such a descriptor file")),
        Some((ct, i, _)) => {
            let at = base + d.lines[i].offset;
            let len = d.lines[i].len;
            if create_type_note(ct).is_none() {
                c.add(Severity::Warning, "create-type-unknown", name, at, len, None, || format!(
                    "createType \"{}\" is not a type the VMDK specification defines; the extents are read as listed", ct));
            } else if !v.mono && v.carrier.is_none() && !QEMU_DESCRIPTOR_TYPES.contains(&ct) {
                c.add(Severity::Info, "create-type-qemu", name, at, len, None, || format!(
                    "QEMU refuses a descriptor file of createType \"{}\"; diskscope reads the extents it lists", ct));
            }
            if let Some(s) = v.mono_sparse() {
                let want = if s.flavour == Flavour::Cowd { "vmfsSparse" } else if s.compressed { "streamOptimized" } else { "monolithicSparse" };
                if ct != want {
                    c.add(Severity::Info, "create-type-mismatch", name, at, len, None, || format!(
                        "createType says \"{}\", but the file is a {} sparse extent; the extent's own header is what is read", ct, want));
                }
            }
        }
    }
    let lines: Vec<_> = d.extents().collect();
    if v.mono {
        let cap = v.extents.first().map_or(0, |e| e.length);
        match lines.as_slice() {
            [] => c.add(Severity::Warning, "extent-line-missing", name, base, 0, None, || String::from(
                "the embedded descriptor lists no extent; the sparse header alone describes the disk")),
            [(i, x)] => {
                let at = base + d.lines[*i].offset;
                if x.sectors.and_then(|n| n.checked_mul(SECTOR)) != Some(cap) {
                    c.add(Severity::Warning, "extent-size-mismatch", name, at, d.lines[*i].len, None, || format!(
                        "the extent line says {} sectors, the sparse header's capacity is {} sectors; the header's value is used (as QEMU does)",
                        x.sectors.map_or(String::from("?"), |n| format!("{}", n)), cap / SECTOR));
                }
                let own = name.rsplit(['/', '\\']).next().unwrap_or(name);
                if x.name.as_deref().is_some_and(|n| n != own) {
                    c.add(Severity::Info, "extent-name-mismatch", name, at, d.lines[*i].len, None, || format!(
                        "the extent line names \"{}\", but this file is '{}' (renamed?); the data is read from this file", x.name.as_deref().unwrap_or(""), own));
                }
            }
            _ => c.add(Severity::Warning, "extent-lines-extra", name, base + d.lines[lines[1].0].offset, 0, None, || format!(
                "the embedded descriptor lists {} extents, but a monolithic file is one extent; the others are ignored", lines.len())),
        }
    } else {
        if lines.is_empty() {
            c.add(Severity::Warning, "extent-line-missing", name, base, 0, None, || String::from("the descriptor lists no extents: the disk is empty"));
        }
        for (i, x) in &lines {
            let at = base + d.lines[*i].offset;
            let len = d.lines[*i].len;
            if x.sectors == Some(0) {
                c.add(Severity::Warning, "extent-size-zero", name, at, len, None, || String::from("an extent of 0 sectors is ignored"));
            }
            if x.access != "RW" {
                c.add(Severity::Info, "extent-access", name, at, len, None, || format!(
                    "this extent is {}: diskscope reads it, but QEMU skips extent lines that are not RW, so qemu-img sees a shorter disk with the later extents moved",
                    x.access));
            }
            if x.kind == "ZERO" {
                c.add(Severity::Info, "extent-zero", name, at, len, None, || String::from(
                    "a ZERO extent reads as zeros (VMware's spec); QEMU skips ZERO extent lines, so qemu-img sees a shorter disk with the later extents moved"));
            }
            if x.kind == "VMFS" && x.offset.is_some() {
                c.add(Severity::Info, "extent-offset", name, at, len, None, || String::from(
                    "a VMFS extent line with an offset: diskscope uses it, QEMU refuses the line"));
            }
            if x.kind == "FLAT" && x.offset.is_none() && !x.bad_offset {
                c.add(Severity::Info, "extent-offset", name, at, len, None, || String::from(
                    "a FLAT extent line without an offset: diskscope reads from the file's start, QEMU refuses the line"));
            }
        }
    }
    geometry(c);
}

/// The ddb geometry must fit in the disk the extents make.
fn geometry(c: &mut Ctx) {
    let v = c.v;
    let Some(d) = &v.desc else { return };
    let num = |k| d.get(k).and_then(|(s, _, _)| s.trim().parse::<u64>().ok());
    let (Some(cy), Some(h), Some(s)) = (num("ddb.geometry.cylinders"), num("ddb.geometry.heads"), num("ddb.geometry.sectors")) else { return };
    let Some(bytes) = cy.checked_mul(h).and_then(|x| x.checked_mul(s)).and_then(|x| x.checked_mul(SECTOR)) else { return };
    if bytes > v.info.virtual_size {
        let (_, i, _) = d.get("ddb.geometry.cylinders").expect("read above");
        c.add(Severity::Warning, "geometry-too-large", &v.name, v.desc_base + d.lines[i].offset, d.lines[i].len, None, || format!(
            "the geometry {}/{}/{} describes {} bytes, but the extents add up to {} bytes", cy, h, s, bytes, v.info.virtual_size));
    }
}

fn ids(c: &mut Ctx) {
    let v = c.v;
    let Some(d) = &v.desc else { return };
    let base = v.desc_base;
    let line = |i: usize| (base + d.lines[i].offset, d.lines[i].len);
    for key in ["CID", "parentCID"] {
        match d.get(key) {
            None => c.add(Severity::Warning, "cid-missing", &v.name, base, 0, None, || format!("the descriptor has no {} line; QEMU refuses to open the image", key)),
            Some((val, i, _)) if super::parse_cid(val).is_none() => {
                let (at, len) = line(i);
                c.add(Severity::Warning, "cid-invalid", &v.name, at, len, None, || format!("{} \"{}\" is not a hexadecimal 32-bit number; QEMU refuses to open the image", key, val))
            }
            _ => {}
        }
    }
    let hint = d.get("parentFileNameHint");
    match (v.parent_cid, hint) {
        (Some(p), None) if p != 0xffff_ffff => {
            let (_, i, _) = d.get("parentCID").expect("parsed from it");
            let (at, len) = line(i);
            c.add(Severity::Warning, "parent-unnamed", &v.name, at, len, None, || format!(
                "parentCID {:08x} says this disk has a parent, but no parentFileNameHint names it: unallocated grains read as zeros (as QEMU reads them)", p));
        }
        (Some(0xffff_ffff), Some((_, i, _))) => {
            let (at, len) = line(i);
            c.add(Severity::Warning, "parent-cid-none", &v.name, at, len, None, || String::from(
                "a parent is named, but parentCID is ffffffff (no parent): the parent is read, and its CID cannot be checked"));
        }
        _ => {}
    }
    if let (Some(a), Some(b)) = (v.cid, v.parent_cid) {
        if a == b && a != 0xffff_ffff {
            let (_, i, _) = d.get("CID").expect("parsed");
            let (at, len) = line(i);
            c.add(Severity::Info, "cid-equals-parent", &v.name, at, len, None, || String::from("CID equals parentCID: this disk has not been written since it was made from its parent"));
        }
    }
    if let (Some((_, i, _)), None) = (hint, &v.info.backing) {
        let (at, len) = line(i);
        c.add(Severity::Warning, "parent-name-empty", &v.name, at, len, None, || String::from("parentFileNameHint is empty: no parent is read"));
    }
}

fn extent(c: &mut Ctx, e: &Ext) -> Result<()> {
    let v = c.v;
    let line_at = v.line_at(e);
    let line_len = match (e.line, &v.desc) {
        (Some(i), Some(d)) => d.lines[i].len,
        _ => 0,
    };
    let guest = Some(e.start);
    match &e.kind {
        ExtKind::Zero => {}
        ExtKind::Missing { file } => {
            let comp = &v.info.companions[*file as usize - 1];
            c.add(Severity::Warning, "extent-file-missing", &v.name, comp.offset, comp.name.len() as u64, guest, || format!(
                "the extent file '{}' is missing: add it (beside the descriptor, or drop it with the descriptor) to read guest bytes {}..{}",
                comp.name, e.start, e.start + e.length));
        }
        ExtKind::Broken { reason } => {
            c.add(Severity::Corruption, "extent-unreadable", &v.name, line_at, line_len, guest, || format!(
                "guest bytes {}..{} cannot be read: {}", e.start, e.start + e.length, reason));
        }
        ExtKind::Flat { file, offset } => {
            let f = v.files[*file as usize].as_ref().expect("a flat extent's file is open");
            let end = offset.saturating_add(e.length);
            if end > f.size() {
                let short = end - f.size().max(*offset);
                c.add(Severity::Warning, "flat-extent-short", &v.file_names[*file as usize], f.size(), 0, guest, || format!(
                    "the flat extent needs bytes up to {} of this file, which has {}: the last {} bytes of the extent read as zeros",
                    end, f.size(), short.min(e.length)));
            }
        }
        ExtKind::Sparse(s) => {
            let said = e.line.and_then(|i| match &v.desc.as_ref()?.lines[i].kind {
                super::descriptor::LineKind::Extent(x) => x.sectors,
                _ => None,
            });
            if !v.mono && said.is_some_and(|n| n.checked_mul(SECTOR) != Some(s.capacity)) {
                c.add(Severity::Warning, "extent-size-mismatch", &v.name, line_at, line_len, guest, || format!(
                    "the extent line says {} sectors, but its file's header says {} sectors; the header's value is used (as QEMU does), so every later extent starts elsewhere than the lines suggest",
                    said.unwrap_or(0), s.capacity / SECTOR));
            }
            sparse_extent(c, e, s)?
        }
    }
    Ok(())
}

/// One grain found in a grain table, for the overlap checks.
#[derive(Clone, Copy)]
struct Grain {
    at: u64,
    len: u64,
    gte: u64,
}

fn sparse_extent(c: &mut Ctx, e: &Ext, s: &Sparse) -> Result<()> {
    let v = c.v;
    let f: &dyn ReadAt = &**v.files[s.file as usize].as_ref().expect("a sparse extent's file is open");
    let fname = v.file_names[s.file as usize].clone();
    let fname = fname.as_str();
    let (h, hb) = s.live();
    c.r.total_clusters += s.capacity.div_ceil(s.grain);
    let mut meta: Vec<(u64, u64, &'static str)> = vec![(0, s.raw.len() as u64, "the header")];

    if s.flavour == Flavour::Hosted {
        if s.flags & sparse::FLAG_NL_DETECT != 0 && h[73..77] != *b"\n \r\n" {
            c.add(Severity::Corruption, "newline-bytes", fname, hb + 73, 4, None, || String::from(
                "the newline-detection bytes are not \\n, space, \\r, \\n: the file was probably transferred in text mode, which alters data"));
        }
        let gs = s.grain / SECTOR;
        if !gs.is_power_of_two() || gs < 8 {
            c.add(Severity::Warning, "grain-size", fname, hb + 20, 8, None, || format!(
                "grainSize is {} sectors; the spec wants a power of two of at least 8 (QEMU reads it anyway)", gs));
        }
        if s.gtes != 512 {
            c.add(Severity::Info, "gtes-per-gt", fname, hb + 44, 4, None, || format!("numGTEsPerGT is {}; VMware writes 512", s.gtes));
        }
        let algo = crate::formats::bytes::le16(h, 77);
        if (s.flags & sparse::FLAG_COMPRESS != 0) != (algo != 0) {
            c.add(Severity::Warning, "compression-flags", fname, hb + 8, 4, None, || format!(
                "the compressed-grains flag and compressAlgorithm ({}) disagree; QEMU goes by compressAlgorithm: grains are {}",
                algo, if s.compressed { "compressed" } else { "not compressed" }));
        }
        if algo > 1 {
            c.add(Severity::Warning, "compression-unknown", fname, hb + 77, 2, None, || format!("compressAlgorithm {} is unknown; grains are read as not compressed (as QEMU does)", algo));
        }
        if s.version == 3 && !s.compressed {
            c.add(Severity::Info, "version-3", fname, hb + 4, 4, None, || String::from(
                "version 3 without compression (changed block tracking): QEMU opens it read-only"));
        }
        if s.flags & !(sparse::FLAG_NL_DETECT | sparse::FLAG_RGD | sparse::FLAG_ZERO_GRAIN | sparse::FLAG_COMPRESS | sparse::FLAG_MARKER) != 0 {
            c.add(Severity::Warning, "flags-unknown", fname, hb + 8, 4, None, || format!("unknown flag bits {:#x} are set", s.flags));
        }
        if s.compressed && !s.markers {
            c.add(Severity::Info, "no-markers", fname, hb + 8, 4, None, || String::from("grains are compressed without grain markers: each is read as one grain of compressed bytes"));
        }
        if s.file_size < s.overhead {
            c.add(Severity::Corruption, "file-truncated", fname, s.file_size, 0, None, || format!(
                "the file is {} bytes, but overHead says metadata fills the first {}: it is truncated (QEMU refuses to open it)", s.file_size, s.overhead));
        }
        let (doff, dlen) = s.desc;
        if dlen > 0 {
            meta.push((doff, dlen, "the descriptor"));
        }
    }
    if s.unclean {
        let at = if s.flavour == Flavour::Hosted { hb + 72 } else { 1648 };
        c.add(Severity::Info, "unclean-shutdown", fname, at, 1, None, || String::from("uncleanShutdown is set: the extent was not closed cleanly by its last writer"));
    }
    let n = s.gd.len() as u64;
    let dir_bytes = n * 4;
    if s.gd_stored < n {
        c.add(Severity::Corruption, "grain-directory-short", fname, s.gd_field, 8, None, || format!(
            "the grain directory at {} ({} entries) runs past the end of the file: {} entries read as empty", s.gd_offset, n, n - s.gd_stored));
    }
    if s.gd_offset != sparse::GD_AT_END {
        meta.push((s.gd_offset, dir_bytes, "the grain directory"));
    }
    if let Some((at, _)) = &s.footer {
        meta.push((at - SECTOR, 3 * SECTOR, "the footer"));
    }
    let rgd = match s.rgd_offset {
        Some(ro) => {
            let (t, stored) = sparse::read_gd(f, ro, n)?;
            if stored < n {
                c.add(Severity::Corruption, "redundant-directory-short", fname, hb + 48, 8, None, || format!(
                    "the redundant grain directory at {} runs past the end of the file", ro));
            }
            meta.push((ro, dir_bytes, "the redundant grain directory"));
            Some(t)
        }
        None => None,
    };

    let cover = s.gt_cover();
    let mut grains: Vec<Grain> = Vec::new();
    let mut tracking = true;
    let mut decoded = 0u64;
    let mut budget_noted = false;
    let mut out = vec![0u8; if s.compressed { s.grain as usize } else { 0 }];
    let mut i = 0u64;
    while i < n {
        // Prefetch a batch of grain tables (and their redundant copies).
        let mut ranges = Vec::new();
        let mut j = i;
        let mut bytes = 0;
        while j < n && bytes < limits::SPAN_CACHE_BYTES as u64 / 2 {
            // Tables in host holes read as zeros unread.
            if let Ok(Some(gt)) = s.stored_gt_at(f, j) {
                ranges.push((gt, s.gt_bytes()));
                bytes += s.gt_bytes();
            }
            if let Some(r) = rgd.as_ref().and_then(|r| r.get(j as usize)).map(|&r| r as u64 * SECTOR).filter(|&r| r != 0 && !s.is_hole(f, r, s.gt_bytes())) {
                ranges.push((r, s.gt_bytes()));
                bytes += s.gt_bytes();
            }
            j += 1;
        }
        f.prefetch(&mut ranges);
        for i in i..j {
            // A hostile directory can hold more entries than any disk: the guest offset saturates.
            let g0 = i.saturating_mul(cover);
            let gt = match s.gt_at(i) {
                Ok(None) => {
                    if rgd.as_ref().is_some_and(|r| r.get(i as usize).is_some_and(|&x| x != 0)) {
                        c.add(Severity::Warning, "redundant-directory-differs", fname, s.rgd_offset.unwrap_or(0).saturating_add(i * 4), 4, Some(e.start.saturating_add(g0)), || format!(
                            "grain directory entry {} is empty, but the redundant directory names a table", i));
                    }
                    continue;
                }
                Err(at) => {
                    c.add(Severity::Corruption, "grain-directory-entry-invalid", fname, at, 4, Some(e.start.saturating_add(g0)), || format!(
                        "grain directory entry {} points to sector {}: its grain table ({} bytes) would lie outside the file ({} bytes)",
                        i, s.gd.get(i as usize).copied().unwrap_or(0), s.gt_bytes(), s.file_size));
                    continue;
                }
                Ok(Some(gt)) => gt,
            };
            note_table(c, fname, &mut meta, (gt, s.gt_bytes(), "a grain table"));
            let hole = s.is_hole(f, gt, s.gt_bytes());
            let table = if hole { vec![0; s.gtes as usize] } else { s.read_gt(f, gt, 0, s.gtes)? };
            if let Some(r) = &rgd {
                let rs = r.get(i as usize).copied().unwrap_or(0) as u64 * SECTOR;
                if rs == 0 || rs + s.gt_bytes() > s.file_size {
                    c.add(Severity::Corruption, "redundant-directory-differs", fname, s.rgd_offset.unwrap_or(0).saturating_add(i * 4), 4, Some(e.start.saturating_add(g0)), || format!(
                        "the redundant grain directory has no usable copy of grain table {}", i));
                } else {
                    note_table(c, fname, &mut meta, (rs, s.gt_bytes(), "a redundant grain table"));
                    // A copy in a host hole is zeros; with the table in one too, equal.
                    let copy = match (hole, s.is_hole(f, rs, s.gt_bytes())) {
                        (true, true) => Vec::new(),
                        (false, true) => vec![0; s.gtes as usize],
                        (_, false) => s.read_gt(f, rs, 0, s.gtes)?,
                    };
                    if let Some(k) = table.iter().zip(&copy).position(|(a, b)| a != b) {
                        let diff = table.iter().zip(&copy).filter(|(a, b)| a != b).count();
                        c.add(Severity::Corruption, "redundant-table-differs", fname, rs + k as u64 * 4, 4, Some(e.start.saturating_add(g0).saturating_add(k as u64 * s.grain)), || format!(
                            "grain table {} (at {}) and its redundant copy (at {}) differ in {} entr{}, first at entry {} ({} against {})",
                            i, gt, rs, diff, if diff == 1 { "y" } else { "ies" }, k, table[k], copy[k]));
                    }
                }
            }
            if hole {
                continue; // every entry 0: nothing allocated
            }
            let mut last = 0u64;
            for (k, &val) in table.iter().enumerate() {
                let rel = g0.saturating_add(k as u64 * s.grain);
                if rel >= s.capacity {
                    break;
                }
                let gte_at = gt + k as u64 * 4;
                let guest = e.start + rel;
                match s.gte(val) {
                    Gte::Unallocated | Gte::Zero => {}
                    Gte::PastEnd(at) => {
                        c.r.allocated_clusters += 1;
                        c.add(Severity::Corruption, "grain-past-end", fname, gte_at, 4, Some(guest), || format!(
                            "the grain table entry maps guest offset {} to byte {}, at or past the end of the file ({} bytes) (qemu-img check: \"cluster offset for sector {} points after EOF\")",
                            guest, at, s.file_size, guest / SECTOR));
                    }
                    Gte::At(at) => {
                        c.r.allocated_clusters += 1;
                        let mut len = s.grain;
                        if s.compressed {
                            if decoded < DECODE_BUDGET {
                                v.read_ahead(s.file, f, at, 2 * s.grain + 12);
                                let valid = s.grain.min(s.capacity - rel);
                                match s.decode(f, at, valid, &mut out) {
                                    Ok(m) => {
                                        len = s.stored_len(&m);
                                        decoded += m.size;
                                        if let Some(lba) = m.lba {
                                            if lba != rel / SECTOR && lba != guest / SECTOR {
                                                c.add(Severity::Warning, "grain-marker-lba", fname, at, 8, Some(guest), || format!(
                                                    "the grain marker at {} says sector {}, but the grain table (entry at {}) maps it to sector {}",
                                                    at, lba, gte_at, rel / SECTOR));
                                            }
                                        }
                                    }
                                    Err(m) => {
                                        len = SECTOR;
                                        c.add(Severity::Corruption, "grain-undecodable", fname, gte_at, 4, Some(guest), || format!(
                                            "the compressed grain at {} (grain table entry at {}) cannot be read: {}", at, gte_at, m));
                                    }
                                }
                            } else if !budget_noted {
                                budget_noted = true;
                                c.add(Severity::Info, "decode-budget", fname, at, 0, Some(guest), || format!(
                                    "{} bytes of compressed grains were decoded; the grains from here on are located but not decoded", DECODE_BUDGET));
                            }
                        } else {
                            if last != 0 && at != last + s.grain {
                                c.r.fragmented_clusters += 1;
                            }
                            last = at;
                            if at + s.grain > s.file_size {
                                c.add(Severity::Warning, "grain-short", fname, gte_at, 4, Some(guest), || format!(
                                    "the grain at {} runs past the end of the file: its last {} bytes read as zeros", at, at + s.grain - s.file_size));
                            }
                        }
                        if tracking {
                            if grains.len() >= MAX_GRAINS_TRACKED {
                                tracking = false;
                                c.add(Severity::Info, "overlap-check-limit", fname, gte_at, 0, None, || format!(
                                    "more than {} grains: grains past this one are not checked for overlaps", MAX_GRAINS_TRACKED));
                            } else {
                                grains.push(Grain { at, len, gte: gte_at });
                            }
                        }
                    }
                }
            }
        }
        i = j;
    }
    overlaps(c, fname, &mut meta, &mut grains);
    Ok(())
}

/// Keep a grain table's range for the overlap check: joined to the last range of its kind
/// (a table or a redundant copy, which alternate) where it follows or repeats it, and past
/// [`MAX_META_RANGES`] ranges not kept, once said.
fn note_table(c: &mut Ctx, fname: &str, meta: &mut Vec<(u64, u64, &'static str)>, (at, len, what): (u64, u64, &'static str)) {
    let n = meta.len();
    if let Some(m) = meta[n.saturating_sub(2)..].iter_mut().rev().find(|m| m.2 == what) {
        let end = m.0.saturating_add(m.1);
        if m.0 <= at && at <= end {
            m.1 = end.max(at.saturating_add(len)) - m.0;
            return;
        }
    }
    if n > MAX_META_RANGES {
        return;
    }
    if n == MAX_META_RANGES {
        c.add(Severity::Info, "overlap-check-limit", fname, at, 0, None, || format!(
            "more than {} separate grain-table ranges: grains are not checked against the tables past this one", MAX_META_RANGES));
    }
    meta.push((at, len, what));
}

/// Grains that overlap metadata, and grains that overlap each other.
fn overlaps(c: &mut Ctx, fname: &str, meta: &mut [(u64, u64, &'static str)], grains: &mut [Grain]) {
    meta.sort_unstable_by_key(|m| m.0);
    grains.sort_unstable_by_key(|g| (g.at, g.gte));
    for g in grains.iter() {
        // Metadata ranges are few and sorted: find the first that ends after the grain starts.
        let i = meta.partition_point(|m| m.0.saturating_add(m.1) <= g.at);
        let hit = meta[i..].iter().take_while(|m| m.0 < g.at + g.len).find(|m| m.1 > 0);
        if let Some(m) = hit {
            c.add(Severity::Corruption, "grain-overlaps-metadata", fname, g.gte, 4, None, || format!(
                "the grain at {} ({} bytes, grain table entry at {}) overlaps {} at {}: its data and the metadata cannot both be right",
                g.at, g.len, g.gte, m.2, m.0));
        }
    }
    for w in grains.windows(2) {
        let (a, b) = (w[0], w[1]);
        if b.at == a.at {
            c.add(Severity::Corruption, "grain-shared", fname, b.gte, 4, None, || format!(
                "the grain at {} is used by two grain table entries (at {} and {}): writing one changes the other", b.at, a.gte, b.gte));
        } else if b.at < a.at + a.len {
            c.add(Severity::Corruption, "grain-overlap", fname, b.gte, 4, None, || format!(
                "the grain at {} (entry at {}) overlaps the grain at {} (entry at {})", b.at, b.gte, a.at, a.gte));
        }
    }
}
