//! qcow2 consistency check in qemu-img check's terms, and the host-file usage map.
//!
//! Every reference to a host cluster is counted (header, L1 and L2 tables of the disk and
//! of every snapshot, data and compressed data, the refcount table and blocks, the
//! snapshot table, the encryption header, bitmaps) and compared with the refcount the
//! image stores: a stored refcount below the references is a corruption (a write would
//! overwrite shared data), one above is a leak. QEMU's OFLAG_COPIED rule is checked on
//! the active tables. The counts follow qemu-img check --output=json, so the two can be
//! compared; the findings say what and where in words.
use alloc::{collections::BTreeMap, format, string::String, vec, vec::Vec};

use super::header::*;
use super::*;
use crate::formats::bytes::be64;
use crate::formats::tables;

/// Host-cluster classes of the usage map (indexes into [`LEGEND`]).
pub mod hc {
    pub const FREE: u8 = 0;
    pub const HEADER: u8 = 1;
    pub const L1: u8 = 2;
    pub const L2: u8 = 3;
    pub const REFTABLE: u8 = 4;
    pub const REFBLOCK: u8 = 5;
    pub const SNAPSHOT: u8 = 6;
    pub const BITMAP: u8 = 7;
    pub const CRYPTO: u8 = 8;
    pub const DATA: u8 = 9;
    pub const COMPRESSED: u8 = 10;
    pub const SNAPSHOT_DATA: u8 = 11;
    pub const LEAKED: u8 = 12;
    pub const CORRUPT: u8 = 13;
}

pub const LEGEND: [&str; 14] = [
    "free",
    "header",
    "L1 table",
    "L2 table",
    "refcount table",
    "refcount block",
    "snapshot table or snapshot L1 table",
    "bitmap",
    "encryption header",
    "data",
    "compressed data",
    "data only snapshots use",
    "leaked (refcount set, nothing uses it)",
    "refcount lower than its references",
];

fn rank(c: u8) -> u8 {
    match c {
        hc::HEADER..=hc::CRYPTO => 3,
        hc::DATA | hc::COMPRESSED => 2,
        hc::SNAPSHOT_DATA => 1,
        _ => 0,
    }
}

/// One reference to host bytes, as the walk finds it.
#[derive(Debug, Clone, Copy)]
struct Ref {
    offset: u64,
    len: u64,
    class: u8,
    /// Byte offset of the pointer to it (table entry or header field).
    entry: u64,
    guest: Option<u64>,
}

struct Walk<'a> {
    q: &'a Qcow2,
    /// Findings and counts, on the counting pass only.
    r: Option<&'a mut CheckResult>,
    visit: &'a mut dyn FnMut(&Ref),
    file_len: u64,
    /// QEMU counts fragmentation within each L2 table of the active L1.
    next_contiguous: u64,
}

impl Walk<'_> {
    /// The message is made only if the finding is kept (a table's every entry can be bad).
    fn finding(&mut self, severity: Severity, code: &'static str, offset: u64, length: u64, guest: Option<u64>, message: impl FnOnce() -> String) {
        if let Some(r) = self.r.as_deref_mut() {
            let file = &self.q.name;
            r.add_with(severity, 1, || Finding { severity, code, file: file.clone(), offset: Some(offset), length, guest, message: message() });
        }
    }

    /// qemu's reference count increment: a region ending a whole cluster or more past the
    /// end of the file is a corruption and is not counted.
    fn inc(&mut self, rf: Ref) {
        if rf.len == 0 {
            return;
        }
        let cluster = self.q.cluster;
        if rf.offset.saturating_add(rf.len) >= self.file_len.saturating_add(cluster) {
            let (what, file_len) = (LEGEND[rf.class as usize], self.file_len);
            self.finding(Severity::Corruption, "past-end", rf.entry, 8, rf.guest, || format!(
                "{} at {:#x} ({} bytes, named at byte {}) lies past the end of the file ({} bytes)", what, rf.offset, rf.len, rf.entry, file_len));
            return;
        }
        (self.visit)(&rf);
    }

    fn run(&mut self) -> Result<()> {
        let q = self.q;
        let h = &q.h;
        let cluster = q.cluster;
        self.inc(Ref { offset: 0, len: cluster, class: hc::HEADER, entry: 0, guest: None });
        self.l1(h.l1_table_offset, h.l1_size as u64, 40, true)?;
        for s in &q.snaps.entries {
            if s.l1_table_offset % cluster != 0 || s.l1_size * 8 > MAX_L1_BYTES {
                self.finding(Severity::Corruption, "snapshot-l1-invalid", s.offset, 12, None, || format!(
                    "snapshot {} \"{}\" has an L1 table of {} entries at {:#x}: not cluster-aligned or too large", s.id, s.name, s.l1_size, s.l1_table_offset));
                continue;
            }
            self.l1(s.l1_table_offset, s.l1_size, s.offset, false)?;
        }
        if h.nb_snapshots > 0 {
            self.inc(Ref { offset: h.snapshots_offset, len: q.snaps.bytes, class: hc::SNAPSHOT, entry: 64, guest: None });
        }
        let reftable_len = h.refcount_table_clusters as u64 * cluster;
        self.inc(Ref { offset: h.refcount_table_offset, len: reftable_len, class: hc::REFTABLE, entry: 48, guest: None });
        if let Some((off, len, at)) = h.crypto {
            self.inc(Ref { offset: off, len, class: hc::CRYPTO, entry: at + 8, guest: None });
        }
        if let Some(b) = &h.bitmaps {
            if h.autoclear & AUTOCLEAR_BITMAPS != 0 {
                self.inc(Ref { offset: b.dir_offset, len: b.dir_size, class: hc::BITMAP, entry: b.at + 16, guest: None });
                for e in q.bitmaps() {
                    self.inc(Ref { offset: e.table_offset, len: e.table_size as u64 * 8, class: hc::BITMAP, entry: e.at, guest: None });
                    let mut t = vec![0u8; (e.table_size as u64 * 8).min(limits::MAX_TABLE_BYTES) as usize];
                    if read_exact_at(&*q.file, e.table_offset, &mut t, "bitmap table").is_ok() {
                        for (i, c) in t.chunks_exact(8).enumerate() {
                            let off = be64(c, 0) & L2E_OFFSET_MASK;
                            if off != 0 {
                                self.inc(Ref { offset: off, len: cluster, class: hc::BITMAP, entry: e.table_offset + i as u64 * 8, guest: None });
                            }
                        }
                    }
                }
            }
        }
        let reftable = read_reftable(q);
        let nb_clusters = self.file_len.div_ceil(cluster);
        for (i, &e) in reftable.iter().enumerate() {
            let off = e & REFT_OFFSET_MASK;
            let at = h.refcount_table_offset.saturating_add(i as u64 * 8);
            if off == 0 {
                continue;
            }
            if off % cluster != 0 {
                self.finding(Severity::Corruption, "refblock-unaligned", at, 8, None, || format!(
                    "refcount table entry {} points to {:#x}, which is not cluster-aligned", i, off));
                continue;
            }
            if off / cluster >= nb_clusters {
                self.finding(Severity::Corruption, "refblock-past-end", at, 8, None, || format!(
                    "refcount table entry {} points to {:#x}, past the end of the file", i, off));
                continue;
            }
            self.inc(Ref { offset: off, len: cluster, class: hc::REFBLOCK, entry: at, guest: None });
        }
        Ok(())
    }

    /// An L1 table (`size` entries at `offset`, named at byte `named`) and its L2 tables.
    fn l1(&mut self, offset: u64, size: u64, named: u64, active: bool) -> Result<()> {
        let q = self.q;
        let class = if active { hc::L1 } else { hc::SNAPSHOT };
        self.inc(Ref { offset, len: size * 8, class, entry: named, guest: None });
        if size == 0 {
            return Ok(());
        }
        let mut raw = crate::io::table_buf("L1 table", size * 8)?;
        read_clipped(&*q.file, offset, &mut raw)?;
        let l1: Vec<u64> = raw.chunks_exact(8).map(|c| be64(c, 0)).collect();
        let mut pending: Vec<(u64, u64)> =
            l1.iter().map(|e| e & L1E_OFFSET_MASK).filter(|&o| o != 0 && o % q.cluster == 0 && o < self.file_len).map(|o| (o, q.cluster)).collect();
        let cover = q.l2_cover();
        for (i, &e) in l1.iter().enumerate() {
            let at = offset.saturating_add(i as u64 * 8);
            let guest = (i as u64).checked_mul(cover);
            if e & L1E_RESERVED_MASK != 0 {
                self.finding(Severity::Corruption, "l1-reserved-bits", at, 8, guest, || format!("L1 entry {} ({:#018x}) has reserved bits set", i, e));
            }
            let l2 = e & L1E_OFFSET_MASK;
            if l2 == 0 {
                continue;
            }
            self.inc(Ref { offset: l2, len: q.cluster, class: hc::L2, entry: at, guest });
            if l2 % q.cluster != 0 {
                // QEMU reports it and still walks the cluster-sized table at that offset.
                self.finding(Severity::Corruption, "l1-entry-unaligned", at, 8, guest, || format!(
                    "L1 entry {} points to an L2 table at {:#x}, which is not cluster-aligned; QEMU fails reads through it", i, l2));
            }
            if l2 >= self.file_len {
                continue; // counted (and reported) as past the end above
            }
            tables::prefetch_pending(&*q.file, &mut pending, l2);
            self.l2(l2, i as u64, at, active)?;
        }
        Ok(())
    }

    fn l2(&mut self, l2: u64, l1_index: u64, named: u64, active: bool) -> Result<()> {
        let q = self.q;
        let cluster = q.cluster;
        let mut raw = vec![0u8; cluster as usize];
        if let Err(e) = read_clipped(&*q.file, l2, &mut raw) {
            if let Some(r) = self.r.as_deref_mut() {
                r.check_errors += 1;
            }
            self.finding(Severity::Corruption, "l2-read-failed", l2, cluster, None, || format!("the L2 table at {:#x} (L1 entry at byte {}) cannot be read: {}", l2, named, e));
            return Ok(());
        }
        let extended = q.h.extended_l2();
        self.next_contiguous = 0;
        for (k, c) in raw.chunks_exact(q.eb as usize).enumerate() {
            let (e, bm) = (be64(c, 0), if extended { be64(c, 8) } else { 0 });
            let at = l2 + k as u64 * q.eb;
            let guest = (l1_index * q.l2_entries + k as u64).checked_mul(cluster);
            if e & OFLAG_COMPRESSED != 0 {
                if q.has_data_file() {
                    self.finding(Severity::Corruption, "compressed-with-data-file", at, 8, guest, || String::from(
                        "a compressed cluster in an image with an external data file, where compression is not allowed"));
                }
                if extended && bm != 0 {
                    self.finding(Severity::Corruption, "compressed-subcluster-bitmap", at + 8, 8, guest, || format!(
                        "a compressed cluster's subcluster bitmap is {:#x}; it must be zero", bm));
                }
                if active {
                    if let Some(r) = self.r.as_deref_mut() {
                        r.allocated_clusters += 1;
                        r.compressed_clusters += 1;
                        r.fragmented_clusters += 1; // as QEMU counts them
                    }
                }
                let (off, len) = q.compressed_range(e);
                let class = if active { hc::COMPRESSED } else { hc::SNAPSHOT_DATA };
                self.inc(Ref { offset: off, len, class, entry: at, guest });
                continue;
            }
            let off = e & L2E_OFFSET_MASK;
            let reserved = if extended { L2E_STD_RESERVED_MASK | OFLAG_ZERO } else { L2E_STD_RESERVED_MASK };
            if e & reserved != 0 {
                self.finding(Severity::Corruption, "l2-reserved-bits", at, 8, guest, || format!("L2 entry {:#018x} has reserved bits set", e));
            }
            if extended && (bm as u32) & ((bm >> 32) as u32) != 0 {
                self.finding(Severity::Corruption, "subcluster-allocated-and-zero", at + 8, 8, guest, || format!(
                    "subcluster bitmap {:#018x} marks subclusters both allocated and zero; QEMU fails reads of this cluster", bm));
            }
            if !extended && e & OFLAG_ZERO != 0 && q.h.version < 3 {
                self.finding(Severity::Warning, "zero-flag-v2", at, 8, guest, || String::from(
                    "the zero flag is set in a version 2 image, where it does not exist; QEMU fails reads of this cluster (qemu-img check does not count it)"));
            }
            if off == 0 && !(q.has_data_file() && e & OFLAG_COPIED != 0) {
                if extended && bm as u32 != 0 {
                    self.finding(Severity::Corruption, "subcluster-without-cluster", at + 8, 8, guest, || String::from(
                        "subclusters are marked allocated but the entry has no host cluster; QEMU fails reads of this cluster"));
                }
                continue;
            }
            if active {
                let next = self.next_contiguous;
                if let Some(r) = self.r.as_deref_mut() {
                    r.allocated_clusters += 1;
                    if next != 0 && off != next {
                        r.fragmented_clusters += 1;
                    }
                }
                self.next_contiguous = off + cluster;
            }
            if off % cluster != 0 {
                self.finding(Severity::Corruption, "l2-entry-unaligned", at, 8, guest, || format!(
                    "L2 entry points to {:#x}, which is not cluster-aligned; QEMU fails reads of this cluster", off));
            }
            if q.has_data_file() {
                if off != guest.unwrap_or(u64::MAX) {
                    self.finding(Severity::Corruption, "data-file-not-1-to-1", at, 8, guest, || format!(
                        "with an external data file a cluster must be stored at its guest offset, but this one points to {:#x}", off));
                }
                continue; // clusters in the data file are not refcounted
            }
            let class = if active { hc::DATA } else { hc::SNAPSHOT_DATA };
            self.inc(Ref { offset: off, len: cluster, class, entry: at, guest });
        }
        Ok(())
    }
}

/// The refcount table's entries (as many as its clusters hold, clipped to the file).
fn read_reftable(q: &Qcow2) -> Vec<u64> {
    let len = q.h.refcount_table_clusters as u64 * q.cluster;
    let mut raw = vec![0u8; len as usize];
    if read_clipped(&*q.file, q.h.refcount_table_offset, &mut raw).is_err() {
        return Vec::new();
    }
    raw.chunks_exact(8).map(|c| be64(c, 0)).collect()
}

/// Stored refcounts, block by block.
struct Refcounts<'a> {
    q: &'a Qcow2,
    table: Vec<u64>,
    bits: u32,
    per_block: u64,
    /// The block loaded: (table index, its bytes, or None if it cannot be read).
    block: Option<(u64, Option<Vec<u8>>)>,
    prefetched: u64,
}

impl<'a> Refcounts<'a> {
    fn new(q: &'a Qcow2) -> Refcounts<'a> {
        let bits = 1u32 << q.h.refcount_order;
        Refcounts { q, table: read_reftable(q), bits, per_block: q.cluster * 8 / bits as u64, block: None, prefetched: 0 }
    }

    /// The block at table index `i`: Ok(None) when there is none (refcounts 0), Err when
    /// the entry is unusable.
    fn block_offset(&self, i: u64) -> core::result::Result<Option<u64>, ()> {
        let Some(&e) = self.table.get(i as usize) else { return Ok(None) };
        let off = e & REFT_OFFSET_MASK;
        if off == 0 {
            return Ok(None);
        }
        if off % self.q.cluster != 0 || off.saturating_add(self.q.cluster) > self.q.file_size {
            return Err(());
        }
        Ok(Some(off))
    }

    /// The stored refcount of host cluster `c`, or None if it cannot be read.
    fn get(&mut self, c: u64) -> Option<u64> {
        let i = c / self.per_block;
        if self.block.as_ref().is_none_or(|(b, _)| *b != i) {
            if i >= self.prefetched {
                // The next blocks in table order, coalesced.
                let mut ranges = Vec::new();
                let mut j = i;
                while j < self.table.len() as u64 && ranges.len() * (self.q.cluster as usize) < limits::SPAN_CACHE_BYTES / 2 {
                    if let Ok(Some(off)) = self.block_offset(j) {
                        ranges.push((off, self.q.cluster));
                    }
                    j += 1;
                }
                self.q.file.prefetch(&mut ranges);
                self.prefetched = j.max(i + 1);
            }
            let bytes = match self.block_offset(i) {
                Ok(None) => Some(Vec::new()),
                Err(()) => None,
                Ok(Some(off)) => {
                    let mut b = vec![0u8; self.q.cluster as usize];
                    read_exact_at(&*self.q.file, off, &mut b, "refcount block").ok().map(|_| b)
                }
            };
            self.block = Some((i, bytes));
        }
        let bytes = self.block.as_ref().and_then(|(_, b)| b.as_ref())?;
        if bytes.is_empty() {
            return Some(0);
        }
        Some(refcount_entry(bytes, c % self.per_block, self.bits))
    }
}

/// What the walk found per host cluster: references and the most telling class.
struct Usage {
    refs: Vec<u16>,
    class: Vec<u8>,
}

fn usage(q: &Qcow2, r: Option<&mut CheckResult>) -> Result<Usage> {
    let file_len = q.file.size();
    let n = file_len.div_ceil(q.cluster) + 1;
    if n * 3 > limits::MAX_TABLE_BYTES {
        return Err(Error::Limit { what: "host clusters to account for", needed: n, limit: limits::MAX_TABLE_BYTES / 3 });
    }
    let mut u = Usage { refs: vec![0; n as usize], class: vec![hc::FREE; n as usize] };
    let cluster = q.cluster;
    let mut visit = |rf: &Ref| {
        for c in rf.offset / cluster..=(rf.offset + rf.len - 1) / cluster {
            let c = c as usize;
            u.refs[c] = u.refs[c].saturating_add(1);
            if rank(rf.class) > rank(u.class[c]) {
                u.class[c] = rf.class;
            }
        }
    };
    Walk { q, r, visit: &mut visit, file_len, next_contiguous: 0 }.run()?;
    Ok(u)
}

/// Who references the clusters in `wanted`: descriptions per cluster.
fn owners(q: &Qcow2, wanted: &BTreeMap<u64, Vec<String>>) -> Result<BTreeMap<u64, Vec<String>>> {
    let mut found = wanted.clone();
    let cluster = q.cluster;
    let mut visit = |rf: &Ref| {
        for c in rf.offset / cluster..=(rf.offset + rf.len - 1) / cluster {
            if let Some(v) = found.get_mut(&c) {
                if v.len() < 4 {
                    v.push(match rf.guest {
                        Some(g) => format!("{} for guest {:#x} (entry at byte {})", LEGEND[rf.class as usize], g, rf.entry),
                        None => format!("{} (named at byte {})", LEGEND[rf.class as usize], rf.entry),
                    });
                }
            }
        }
    };
    Walk { q, r: None, visit: &mut visit, file_len: q.file.size(), next_contiguous: 0 }.run()?;
    Ok(found)
}

fn finding(q: &Qcow2, severity: Severity, code: &'static str, offset: u64, length: u64, message: String) -> Finding {
    Finding { severity, code, file: q.name.clone(), offset: Some(offset), length, guest: None, message }
}

pub(super) fn run(q: &Qcow2) -> Result<CheckResult> {
    let mut r = CheckResult::default();
    let cluster = q.cluster;
    r.total_clusters = q.h.size.div_ceil(cluster);
    for (at, m) in q.h.problems.iter().chain(q.snaps.problems.iter()) {
        r.add(finding(q, Severity::Warning, "header-problem", *at, 8, m.clone()));
    }
    let u = usage(q, Some(&mut r))?;
    let nb_clusters = q.file.size().div_ceil(cluster) as usize;
    let last = if u.refs[nb_clusters] > 0 { nb_clusters + 1 } else { nb_clusters };
    let mut stored = Refcounts::new(q);
    let mut highest: Option<u64> = None;
    // Runs of clusters whose stored refcount disagrees: (first, count, stored, referenced).
    let mut runs: Vec<(u64, u64, u64, u64)> = Vec::new();
    let mut unreadable = 0u64;
    for c in 0..last as u64 {
        let refs = u.refs[c as usize] as u64;
        let Some(rc) = stored.get(c) else {
            unreadable += 1;
            continue;
        };
        if rc > 0 || refs > 0 {
            highest = Some(c);
        }
        if rc == refs {
            continue;
        }
        match runs.last_mut() {
            Some((s, n, a, b)) if *s + *n == c && (*a, *b) == (rc, refs) => *n += 1,
            _ => runs.push((c, 1, rc, refs)),
        }
    }
    if unreadable > 0 {
        // As qemu-img: one check error per cluster whose refcount cannot be read.
        r.check_errors += unreadable;
        r.add(finding(q, Severity::Warning, "refcounts-unreadable", q.h.refcount_table_offset, 8, format!(
            "the refcounts of {} clusters cannot be read: their refcount table entries point outside the file or are not aligned", unreadable)));
    }
    r.image_end_offset = Some((highest.unwrap_or(0) + 1) * cluster);
    let low: BTreeMap<u64, Vec<String>> = runs.iter().filter(|x| x.2 < x.3).flat_map(|&(s, n, _, _)| s..s + n).take(64).map(|c| (c, Vec::new())).collect();
    let named = if low.is_empty() { low } else { owners(q, &low)? };
    for &(s, n, rc, refs) in &runs {
        let plural = if n == 1 { "" } else { "s" };
        let at = s * cluster;
        if rc < refs {
            let who = named.get(&s).filter(|v| !v.is_empty()).map(|v| format!(": used as {}", v.join("; "))).unwrap_or_default();
            let why = if refs > 1 { " (the same host cluster is used more than once: a write through one user changes what the others read)" } else { "" };
            r.add_with(Severity::Corruption, n, || finding(q, Severity::Corruption, "refcount-too-low", at, n * cluster, format!(
                "{} cluster{} at {:#x}: refcount {} but referenced {} time{}{}{}", n, plural, at, rc, refs, if refs == 1 { "" } else { "s" }, why, who)));
        } else {
            r.leaks += n;
            r.add_with(Severity::Leak, 1, || {
                let what = if refs == 0 {
                    format!("{} not referenced by anything: space the file holds but does not use", if n == 1 { "is" } else { "are" })
                } else {
                    format!("{} refcount {} but {} referenced only {} time{}", if n == 1 { "has" } else { "have" }, rc, if n == 1 { "is" } else { "are" }, refs, if refs == 1 { "" } else { "s" })
                };
                finding(q, Severity::Leak, "leaked-clusters", at, n * cluster, format!("{} cluster{} at {:#x} {}", n, plural, at, what))
            });
        }
    }
    copied_flags(q, &mut r, &mut stored)?;
    migration(q, &mut r);
    Ok(r)
}

/// QEMU's OFLAG_COPIED rule on the active tables: bit 63 is set exactly when the stored
/// refcount of the L2 table or data cluster is 1.
fn copied_flags(q: &Qcow2, r: &mut CheckResult, stored: &mut Refcounts) -> Result<()> {
    let h = &q.h;
    let mut raw = crate::io::table_buf("L1 table", h.l1_size as u64 * 8)?;
    read_clipped(&*q.file, h.l1_table_offset, &mut raw)?;
    let cluster = q.cluster;
    let tables: Vec<u64> = raw.chunks_exact(8).map(|c| be64(c, 0) & L1E_OFFSET_MASK).filter(|&o| o != 0 && o.saturating_add(cluster) <= q.file_size).collect();
    let mut next_batch = 0;
    for (i, c) in raw.chunks_exact(8).enumerate() {
        let e = be64(c, 0);
        let l2 = e & L1E_OFFSET_MASK;
        if l2 == 0 {
            continue;
        }
        // The L2 tables again, in batches the cache can hold.
        if tables.get(next_batch) == Some(&l2) {
            let n = (limits::SPAN_CACHE_BYTES as u64 / 2 / cluster).max(1) as usize;
            let mut batch: Vec<(u64, u64)> = tables[next_batch..].iter().take(n).map(|&o| (o, cluster)).collect();
            next_batch += batch.len();
            q.file.prefetch(&mut batch);
        }
        let at = h.l1_table_offset + i as u64 * 8;
        if let Some(rc) = stored.get(l2 / cluster) {
            if (rc == 1) != (e & OFLAG_COPIED != 0) {
                r.add(finding(q, Severity::Corruption, "copied-flag", at, 8, format!(
                    "L1 entry {} says its L2 table is {}, but the table's refcount is {}", i,
                    if e & OFLAG_COPIED != 0 { "used once (COPIED set)" } else { "shared (COPIED clear)" }, rc)));
            }
        }
        if l2.saturating_add(cluster) > q.file_size {
            continue;
        }
        let table = q.read_l2(l2, 0, q.l2_entries)?;
        for (k, &(e, _)) in table.iter().enumerate() {
            if e & OFLAG_COMPRESSED != 0 {
                continue;
            }
            let off = e & L2E_OFFSET_MASK;
            if off == 0 && !(q.has_data_file() && e & OFLAG_COPIED != 0) {
                continue;
            }
            let rc = if q.has_data_file() { Some(1) } else { stored.get(off / cluster) };
            let Some(rc) = rc else { continue };
            if (rc == 1) != (e & OFLAG_COPIED != 0) {
                let at = l2 + k as u64 * q.eb;
                let guest = (i as u64 * q.l2_entries + k as u64) * cluster;
                r.add_with(Severity::Corruption, 1, || Finding {
                    severity: Severity::Corruption,
                    code: "copied-flag",
                    file: q.name.clone(),
                    offset: Some(at),
                    length: 8,
                    guest: Some(guest),
                    message: format!("the L2 entry says its data cluster at {:#x} is {}, but the cluster's refcount is {}", off,
                        if e & OFLAG_COPIED != 0 { "used once (COPIED set)" } else { "shared (COPIED clear)" }, rc),
                });
            }
        }
    }
    Ok(())
}

/// What someone moving the image elsewhere must know.
fn migration(q: &Qcow2, r: &mut CheckResult) {
    let h = &q.h;
    let compressed = r.compressed_clusters;
    let mut add = |severity, code, offset, length, message: String| r.add(finding(q, severity, code, offset, length, message));
    if h.incompatible & INCOMPAT_DIRTY != 0 {
        add(Severity::Warning, "dirty", 72, 8, String::from(
            "the dirty bit is set: the image was not closed cleanly (lazy refcounts), so its refcounts may be stale. QEMU repairs them when it next opens the image read-write; copy it only after that, or convert it"));
    }
    if h.incompatible & INCOMPAT_CORRUPT != 0 {
        add(Severity::Warning, "corrupt-bit", 72, 8, String::from(
            "the corrupt bit is set: QEMU found inconsistent metadata and will open the image read-only only until it is repaired (qemu-img check -r all)"));
    }
    if q.has_data_file() {
        let name = h.data_file.as_ref().map(|(n, _)| n.clone()).unwrap_or_default();
        let raw = if h.autoclear & AUTOCLEAR_DATA_FILE_RAW != 0 { " It is marked raw: the data file alone is a valid raw image of the disk." } else { "" };
        add(Severity::Warning, "external-data-file", h.data_file.as_ref().map_or(72, |d| d.1), 8, format!(
            "the guest data is in an external data file ('{}'): the image is useless without it, so move and copy both together; tools other than QEMU 4.0+ cannot read it.{}", name, raw));
        if matches!(q.data, DataFile::Missing) {
            add(Severity::Warning, "data-file-missing", h.data_file.as_ref().map_or(72, |d| d.1), 8, format!(
                "the external data file '{}' is missing: add it to read the data it holds", name));
        }
    }
    if h.extended_l2() {
        add(Severity::Warning, "extended-l2", 72, 8, String::from(
            "extended L2 entries (subcluster allocation) are in use: QEMU 5.2 or later is needed, and most other tools cannot read the image"));
    }
    if h.compression_type == 1 {
        add(Severity::Warning, "zstd", 104, 1, String::from(
            "compressed clusters use zstd: QEMU 5.1 or later built with zstd is needed; other tools mostly read only deflate (zlib)"));
    }
    if compressed > 0 {
        add(Severity::Info, "compressed-clusters", h.l1_table_offset, 0, format!(
            "{} clusters are compressed: reads decompress them, and QEMU writes to them uncompressed (the image grows); `qemu-img convert` without -c writes them out uncompressed",
            compressed));
    }
    if h.crypt_method != CRYPT_NONE {
        add(Severity::Warning, "encrypted", 32, 4, format!(
            "the guest data is encrypted ({}): the header and tables are readable, the data is not without the key; diskscope does not map or convert it{}",
            if h.crypt_method == CRYPT_LUKS { "LUKS" } else { "legacy AES-CBC, which QEMU's emulators no longer run" },
            if h.crypt_method == CRYPT_AES { ". Convert it with qemu-img and the key to a LUKS or unencrypted image" } else { "" }));
    }
    if h.nb_snapshots > 0 {
        add(Severity::Info, "snapshots", 60, 4, format!(
            "{} internal snapshot{}: converting copies the current disk only (qemu-img convert -l, or diskscope convert -l, copies one snapshot)",
            h.nb_snapshots, if h.nb_snapshots == 1 { "" } else { "s" }));
    }
    if let Some(b) = &h.bitmaps {
        add(Severity::Info, "bitmaps", b.at, 24, format!("{} persistent dirty bitmap{} (incremental backup state); converting does not carry them unless asked (qemu-img convert --bitmaps)",
            b.nb_bitmaps, if b.nb_bitmaps == 1 { "" } else { "s" }));
    }
    if h.version == 2 {
        add(Severity::Info, "version-2", 4, 4, String::from(
            "a version 2 (compat=0.10) image: no zero clusters, lazy refcounts or other v3 features; every QEMU reads it"));
    }
    if h.compatible & COMPAT_LAZY_REFCOUNTS != 0 {
        add(Severity::Info, "lazy-refcounts", 80, 8, String::from(
            "lazy refcounts are enabled: after a crash the refcounts are stale until QEMU repairs them"));
    }
}

/// The usage of every host cluster, aggregated into at most `max_cells` cells.
pub(super) fn host_map(q: &Qcow2, max_cells: u64) -> Result<HostMap> {
    let mut u = usage(q, None)?;
    let cluster = q.cluster;
    let file_size = q.file.size();
    let n = file_size.div_ceil(cluster);
    let mut stored = Refcounts::new(q);
    for c in 0..n {
        let i = c as usize;
        let rc = stored.get(c).unwrap_or(0);
        if u.refs[i] == 0 && rc > 0 {
            u.class[i] = hc::LEAKED;
        } else if (u.refs[i] as u64) > rc {
            u.class[i] = hc::CORRUPT;
        }
    }
    let max_cells = max_cells.clamp(1, limits::MAX_MAP_CELLS);
    let mut per = 1u64;
    while n.div_ceil(per) > max_cells {
        per *= 2;
    }
    let cells = n.div_ceil(per) as usize;
    let mut classes = vec![hc::FREE; cells];
    let mut totals = vec![0u64; LEGEND.len()];
    for c in 0..n {
        let bytes = (file_size - c * cluster).min(cluster);
        totals[u.class[c as usize] as usize] += bytes;
    }
    for (cell, out) in classes.iter_mut().enumerate() {
        let range = &u.class[cell * per as usize..((cell + 1) * per as usize).min(n as usize)];
        let mut count = [0u64; LEGEND.len()];
        for &c in range {
            count[c as usize] += 1;
        }
        *out = if count[hc::CORRUPT as usize] > 0 {
            hc::CORRUPT
        } else {
            (0..LEGEND.len()).max_by_key(|&c| (count[c], core::cmp::Reverse(c))).unwrap_or(0) as u8
        };
    }
    Ok(HostMap { cell_size: per * cluster, file_size, classes, legend: LEGEND.to_vec(), totals })
}
