//! VHD consistency check. qemu-img has none for vpc; this one checks what the spec asks:
//! both footer copies and their checksums, the dynamic disk header's checksum, every block
//! inside the file and clear of the metadata and of the other blocks, space no block uses,
//! the parent's identity and locators, and where QEMU reads the disk differently from
//! Hyper-V (the size rule, sectors a dynamic disk's bitmap marks unwritten).
use alloc::{format, string::String, vec, vec::Vec};

use super::footer::{at, Footer, FOOTER_BYTES, HEADER_BYTES};
use super::{Variant, Vpc, UNALLOCATED};
use crate::error::Result;
use crate::formats::bytes::is_zero;
use crate::io::read_clipped;
use crate::limits;
use crate::model::{CheckResult, Finding, Severity};

fn finding(v: &Vpc, severity: Severity, code: &'static str, offset: u64, length: u64, guest: Option<u64>, message: String) -> Finding {
    Finding { severity, code, file: v.name.clone(), offset: Some(offset), length, guest, message }
}

fn footer_checks(v: &Vpc, r: &mut CheckResult) {
    let f = &v.footer;
    if f.stored_checksum() != f.computed_checksum() {
        r.add(finding(v, Severity::Corruption, "footer-checksum", f.at + at::CHECKSUM as u64, 4, None, format!(
            "the footer's checksum is {:#010x} but its bytes sum to {:#010x}: the footer is damaged (QEMU refuses to open the image)",
            f.stored_checksum(), f.computed_checksum())));
    }
    if let Some(o) = v.other.as_ref().filter(|_| v.variant != Variant::Fixed) {
        let sound = |x: &Footer| x.cookie_ok() && x.stored_checksum() == x.computed_checksum();
        if o.at == 0 {
            r.add(finding(v, Severity::Corruption, "footer-copy-damaged", 0, FOOTER_BYTES as u64, None, String::from(
                "the footer copy at the start of the file is damaged; diskscope read the disk by the footer at the end (QEMU refuses the image)")));
        } else if !o.cookie_ok() {
            r.add(finding(v, Severity::Warning, "end-footer-missing", o.at, FOOTER_BYTES as u64, None, String::from(
                "the last 512 bytes of the file are not a footer: the image may have been truncated or not closed (Hyper-V needs this footer)")));
        } else if !sound(o) || o.raw != f.raw {
            r.add(finding(v, Severity::Warning, "footer-copies-differ", o.at, FOOTER_BYTES as u64, None, String::from(
                "the two footer copies differ (or the one at the end is damaged)")));
        }
    }
    let (chs, current) = (f.chs_sectors() * 512, f.current_size());
    if chs != current {
        r.add(finding(v, Severity::Info, "size-rule", f.at + at::CURRENT_SIZE as u64, 8, None, format!(
            "current_size is {} bytes but the CHS geometry gives {}; for creator {} QEMU (and diskscope) use {}, so the disk is {} bytes",
            current, chs, crate::formats::bytes::code4(f.creator_app()), if f.uses_chs() { "the geometry" } else { "current_size" }, v.info.virtual_size)));
    }
    if v.info.virtual_size > 0xff00_0000 * 512 {
        r.add(finding(v, Severity::Warning, "size-over-qemu-limit", f.at + at::CURRENT_SIZE as u64, 8, None, String::from(
            "the disk is larger than 2040 GiB, which QEMU refuses to open")));
    }
    if f.raw[at::SAVED_STATE] != 0 {
        r.add(finding(v, Severity::Info, "saved-state", f.at + at::SAVED_STATE as u64, 1, None, String::from(
            "the saved-state flag is set: a virtual machine was suspended with this disk")));
    }
}

pub(super) fn run(v: &Vpc) -> Result<CheckResult> {
    let mut r = CheckResult::default();
    footer_checks(v, &mut r);
    let size = v.file.size();
    let Some(h) = &v.dynh else {
        let data_end = size - FOOTER_BYTES as u64;
        if v.info.virtual_size > data_end {
            r.add(finding(v, Severity::Corruption, "disk-truncated", data_end, FOOTER_BYTES as u64, Some(data_end), format!(
                "the disk is {} bytes but the file holds only {} before its footer: the end of the disk is missing", v.info.virtual_size, data_end)));
        } else if data_end > v.info.virtual_size {
            r.add(finding(v, Severity::Info, "data-beyond-disk", v.info.virtual_size, data_end - v.info.virtual_size, None, format!(
                "{} bytes before the footer lie past the disk's end (the size rule rounded the disk down)", data_end - v.info.virtual_size)));
        }
        return Ok(r);
    };
    if h.stored_checksum() != h.computed_checksum() {
        r.add(finding(v, Severity::Corruption, "header-checksum", h.at + at::dyn_::CHECKSUM as u64, 4, None, format!(
            "the dynamic disk header's checksum is {:#010x} but its bytes sum to {:#010x}", h.stored_checksum(), h.computed_checksum())));
    }
    // Metadata the blocks must stay clear of.
    let mut used: Vec<(u64, u64, String)> = vec![
        (0, FOOTER_BYTES as u64, String::from("the footer copy")),
        (h.at, HEADER_BYTES as u64, String::from("the dynamic disk header")),
        (h.table_offset(), (v.bat.len() as u64 * 4).next_multiple_of(512), String::from("the BAT")),
    ];
    for l in &v.locators {
        // data_space is in sectors by the spec, in bytes as Windows writes it.
        let space = if l.data_space >= l.data_length { l.data_space as u64 } else { l.data_space as u64 * 512 };
        let len = space.max(l.data_length as u64).next_multiple_of(512);
        used.push((l.data_offset, len, format!("parent locator {}", l.index)));
    }
    let span = v.bitmap_bytes + v.block;
    let disk_blocks = v.info.virtual_size.div_ceil(v.block);
    r.total_clusters = disk_blocks;
    // The entries the disk reads. max_table_entries only bounds the BAT, QEMU reads nothing
    // past the disk, and a header claiming millions of entries for a small disk made this
    // check walk them all; allocated ones past it get one note.
    let (bat, beyond) = v.bat.split_at(disk_blocks.min(v.bat.len() as u64) as usize);
    if let Some(k) = beyond.iter().position(|&e| e != UNALLOCATED) {
        let n = beyond.iter().filter(|&&e| e != UNALLOCATED).count();
        let first = bat.len() + k;
        let (s, are) = if n == 1 { ("y", "is") } else { ("ies", "are") };
        r.add(finding(v, Severity::Info, "block-past-disk", v.entry_at(first as u64), 4 * (beyond.len() - k) as u64, None, format!(
            "{} BAT entr{} past the end of the disk {} allocated (the first is block {}): the disk never reads them, and the space they point at counts as unused",
            n, s, are, first)));
    }
    // The allocated blocks as BAT indices, 4 bytes each: the check holds at most one table
    // more than the open.
    let mut blocks: Vec<u32> = Vec::with_capacity(bat.iter().filter(|&&e| e != UNALLOCATED).count());
    let mut prev: Option<u64> = None;
    for (i, &e) in bat.iter().enumerate() {
        if e == UNALLOCATED {
            prev = None;
            continue;
        }
        let bm = e as u64 * 512;
        let entry = v.entry_at(i as u64);
        let guest = Some(i as u64 * v.block);
        r.allocated_clusters += 1;
        if prev.is_some_and(|p| p + span != bm) {
            r.fragmented_clusters += 1;
        }
        prev = Some(bm);
        if bm + v.bitmap_bytes >= size {
            r.add_with(Severity::Corruption, 1, || finding(v, Severity::Corruption, "block-past-end", entry, 4, guest, format!(
                "block {} is at {:#x}, past the end of the file ({} bytes): the image was truncated and this block's data is lost", i, bm, size)));
            continue;
        }
        if bm + span > size {
            r.add_with(Severity::Corruption, 1, || finding(v, Severity::Corruption, "block-truncated", entry, 4, guest, format!(
                "block {} at {:#x} runs past the end of the file: the image was truncated; the missing bytes read as zeros (QEMU refuses the image)", i, bm)));
        }
        if let Some((_, _, what)) = used.iter().find(|(o, l, _)| bm < o.saturating_add(*l) && *o < bm + span) {
            r.add_with(Severity::Corruption, 1, || finding(v, Severity::Corruption, "block-over-metadata", entry, 4, guest, format!("block {} at {:#x} overlaps {}", i, bm, what)));
        }
        blocks.push(i as u32);
    }
    let bitmap_at = |i: u32| v.bat[i as usize] as u64 * 512;
    blocks.sort_unstable_by_key(|&i| (v.bat[i as usize], i));
    for w in blocks.windows(2) {
        let (a, b) = (bitmap_at(w[0]), bitmap_at(w[1]));
        if a + span > b {
            r.add_with(Severity::Corruption, 1, || finding(v, Severity::Corruption, "blocks-overlap", v.entry_at(w[1] as u64), 4, Some(w[1] as u64 * v.block), format!(
                "blocks {} and {} overlap in the file (at {:#x} and {:#x}): writing one changes the other", w[0], w[1], a, b)));
        }
    }
    // Space nothing uses between the metadata and the end footer, in whole sectors: the
    // metadata's few spans and the blocks', each in file order, merged.
    let mut meta: Vec<(u64, u64)> = used.iter().map(|(o, l, _)| (*o, o.saturating_add(*l))).collect();
    meta.sort_unstable();
    let mut meta = meta.into_iter().peekable();
    let mut data = blocks.iter().map(|&i| (bitmap_at(i), bitmap_at(i) + span)).peekable();
    let spans = core::iter::from_fn(|| match (meta.peek(), data.peek()) {
        (Some(m), Some(d)) if d < m => data.next(),
        (Some(_), _) => meta.next(),
        (None, _) => data.next(),
    });
    let end = size.saturating_sub(FOOTER_BYTES as u64);
    let mut at_ = 0u64;
    let mut leaked = 0u64;
    let mut first_gap = None;
    for (a, b) in spans {
        if a > at_ && a <= end {
            leaked += a - at_;
            first_gap.get_or_insert(at_);
        }
        at_ = at_.max(b);
    }
    if end > at_ {
        leaked += end - at_;
        first_gap.get_or_insert(at_);
    }
    let leaked = leaked / 512 * 512;
    if leaked > 0 {
        let n = leaked.div_ceil(span);
        r.leaks += n;
        r.add(finding(v, Severity::Leak, "unused-space", first_gap.unwrap_or(0), leaked, None, format!(
            "{} bytes of the file (first at {:#x}) belong to no block or metadata", leaked, first_gap.unwrap_or(0))));
    }
    if v.variant == Variant::Differencing {
        if is_zero(h.parent_uuid()) {
            r.add(finding(v, Severity::Corruption, "parent-uuid-missing", h.at + at::dyn_::PARENT_UUID as u64, 16, None, String::from(
                "a differencing disk with no parent UUID: its parent cannot be verified")));
        }
        if v.locators.iter().all(|l| l.path.is_none()) && h.parent_name().is_empty() {
            r.add(finding(v, Severity::Warning, "parent-unnamed", h.at + at::dyn_::LOCATORS as u64, 192, None, String::from(
                "no parent locator or parent name can be read: the parent can only be found by its UUID")));
        }
    }
    for l in &v.locators {
        if let Some(p) = &l.problem {
            r.add(finding(v, Severity::Warning, "parent-locator", l.entry_at, 24, None, format!("parent locator {}: {}", l.index, p)));
        }
    }
    if v.variant == Variant::Dynamic {
        partial_bitmaps(v, blocks, &mut r)?;
    }
    Ok(r)
}

/// Blocks of a dynamic disk whose bitmap marks sectors of the disk unwritten: diskscope
/// reads those as zeros (the spec), QEMU reads the stored bytes.
/// `blocks` are the allocated BAT indices, reordered here (the check's last use of them).
fn partial_bitmaps(v: &Vpc, mut blocks: Vec<u32>, r: &mut CheckResult) -> Result<()> {
    let size = v.file.size();
    let mut partial = 0u64;
    let mut first = None;
    let batch = (limits::SPAN_CACHE_BYTES as u64 / 2 / v.bitmap_bytes.max(1)).max(1) as usize;
    let mut buf = vec![0u8; v.bitmap_bytes.min(limits::MAX_TABLE_BYTES) as usize];
    let bitmap_at = |i: u32| v.bat[i as usize] as u64 * 512;
    blocks.retain(|&i| bitmap_at(i) + v.bitmap_bytes <= size);
    blocks.sort_unstable();
    for chunk in blocks.chunks(batch) {
        let mut ranges: Vec<(u64, u64)> = chunk.iter().map(|&i| (bitmap_at(i), v.bitmap_bytes)).collect();
        v.file.prefetch(&mut ranges);
        for &i in chunk {
            let bm = bitmap_at(i);
            let sectors = (v.info.virtual_size - i as u64 * v.block).min(v.block) / 512;
            let n = (sectors.div_ceil(8) as usize).min(buf.len());
            read_clipped(&*v.file, bm, &mut buf[..n])?;
            let full = buf[..n].iter().enumerate().all(|(k, &b)| {
                let bits = (sectors - 8 * k as u64).min(8);
                let mask = if bits == 8 { 0xff } else { 0xffu8 << (8 - bits) };
                b & mask == mask
            });
            if !full {
                partial += 1;
                first.get_or_insert((bm, i));
            }
        }
    }
    if let Some((bm, i)) = first {
        r.add(finding(v, Severity::Info, "unwritten-sectors", bm, v.bitmap_bytes, Some(i as u64 * v.block), format!(
            "{} block{} (the first is block {}) mark some sectors unwritten in their bitmaps; diskscope reads those sectors as zeros, as the spec says, while QEMU reads whatever the block stores there",
            partial, if partial == 1 { "" } else { "s" }, i)));
    }
    Ok(())
}
