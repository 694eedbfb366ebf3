//! FVD consistency check (FORMATS.md 3.7, 3.8): regions, sizes, the chunk table against the
//! data and the bitmap, the journal, names. Each finding names the bytes at fault.
use alloc::{format, string::String, vec, vec::Vec};

use super::journal::{JKind, DIRTY, EMPTY};
use super::{DataFile, Fvd, Variant, TABLE_WINDOW};
use crate::error::Result;
use crate::io::read_exact_at;
use crate::limits;
use crate::model::*;

const PAGE: u64 = 4096;

pub(super) fn check(img: &Fvd) -> Result<CheckResult> {
    let mut r = CheckResult::default();
    let g = &img.g;
    let h = &img.h;
    let file_size = img.file.size();
    let f = |sev, code, off, len, msg| img.finding(sev, code, off, len, msg);

    // Shutdown state and the journal.
    let applied = img.journal.iter().filter(|x| x.applied).count();
    if !g.clean {
        let msg = if g.journal_size == 0 {
            String::from("clean_shutdown is 0 and the image has no journal: the image was not shut down cleanly, and the bitmap and table may lack its last updates. The FVD driver refuses to boot such an image until the flag is reset by hand")
        } else if img.replayed {
            format!("clean_shutdown is 0: the image was not shut down cleanly. Its journal was replayed in memory ({} records applied), as the FVD driver does on its next open; the file is not changed", applied)
        } else {
            String::from("clean_shutdown is 0: the image was not shut down cleanly. It is shown as stored: the journal was not applied, so the map may lack the last writes")
        };
        r.add(f(Severity::Warning, "not-shut-down-cleanly", h.off("clean_shutdown"), 4, msg));
    }
    let malformed_sev = if g.clean { Severity::Warning } else { Severity::Corruption };
    let mut stale = 0u64;
    for x in &img.journal {
        match &x.kind {
            JKind::Malformed { reason, .. } => r.add_with(malformed_sev, 1, || f(malformed_sev, "journal-record-malformed", x.offset, x.length, format!(
                "malformed journal record: {}", reason))),
            _ if x.stale => stale += 1,
            _ => {}
        }
        if let Some(p) = &x.problem {
            r.add_with(Severity::Warning, 1, || f(Severity::Warning, "journal-record-range", x.offset, x.length, format!("journal record: {}", p)));
        }
    }
    if stale > 0 {
        r.add(f(Severity::Info, "journal-stale", g.journal_offset, g.journal_size, format!(
            "{} table update records in the journal are stale (epoch below stable_journal_epoch {}) and are never applied", stale, g.stable_epoch.unwrap_or(0))));
    }
    if img.journal_truncated {
        r.add(f(Severity::Warning, "journal-truncated", g.journal_offset, g.journal_size, format!(
            "only {} of the journal's {} bytes were decoded (it runs past the end of the file, past the {}-byte limit, or holds more than {} records)",
            img.journal_read, g.journal_size, limits::MAX_TABLE_BYTES, super::journal::MAX_RECORDS)));
    }
    if !img.journal.is_empty() {
        r.add(f(Severity::Info, "journal-records", g.journal_offset, g.journal_size, format!(
            "the journal holds {} records; {} applied in memory", img.journal.len(), applied)));
    }

    // Regions: inside the file, apart from each other and from the data.
    let mut regions: Vec<(&str, u64, u64)> = vec![("header", 0, g.header_len)];
    if g.bitmap_size > 0 || g.base_used {
        regions.push(("bitmap", g.bitmap_offset, g.bitmap_size));
    }
    if g.compact {
        regions.push(("chunk table", g.table_offset, g.table_bytes));
    }
    if g.journal_size > 0 {
        regions.push(("journal", g.journal_offset, g.journal_size));
    }
    for &(name, off, len) in &regions {
        let end = off.saturating_add(len);
        if end > file_size {
            let (sev, what) = match name {
                "chunk table" => (Severity::Corruption, "the chunks whose entries are missing cannot be read"),
                "bitmap" => (Severity::Warning, "the missing bits read as 0: those blocks come from the base image"),
                "journal" => (Severity::Warning, "only the part inside the file is read"),
                _ => (Severity::Warning, "the file is truncated"),
            };
            r.add(f(sev, "region-past-end", off, len, format!(
                "the {} ({} bytes at {}) runs past the end of the file ({} bytes): {}", name, len, off, file_size, what)));
        }
        if name != "header" && off % PAGE != 0 {
            r.add(f(Severity::Warning, "region-unaligned", off, len, format!(
                "the {} starts at {}, not on a 4 KiB boundary as FVD places it", name, off)));
        }
    }
    for (i, &(n1, o1, l1)) in regions.iter().enumerate() {
        for &(n2, o2, l2) in &regions[i + 1..] {
            if l1 > 0 && l2 > 0 && o1 < o2.saturating_add(l2) && o2 < o1.saturating_add(l1) {
                let at = o1.max(o2);
                r.add(f(Severity::Corruption, "regions-overlap", at, o1.saturating_add(l1).min(o2.saturating_add(l2)) - at, format!(
                    "the {} ({} bytes at {}) and the {} ({} bytes at {}) overlap: one of them is not what the format expects there",
                    n1, l1, o1, n2, l2, o2)));
            }
        }
    }

    // Sizes.
    if g.vsize % 512 != 0 {
        r.add(f(Severity::Warning, "size-unaligned", h.off("virtual_disk_size"), 8, format!(
            "virtual_disk_size {} is not a multiple of 512", g.vsize)));
    }
    if g.compact && g.chunk % PAGE != 0 {
        r.add(f(Severity::Warning, "chunk-size", h.off("chunk_size"), 8, format!(
            "chunk_size {} is not a multiple of 4096, which FVD's driver requires", g.chunk)));
    }
    if g.base_used && g.block % 512 == 0 && !g.block.is_power_of_two() {
        r.add(f(Severity::Info, "block-size", h.off("block_size"), 8, format!(
            "block_size {} is not a power of two (FVD creates powers of two)", g.block)));
    }

    // Bitmap.
    if let Some(b) = &img.bitmap {
        let needed_bits = b.base_end.div_ceil(g.block);
        let needed = needed_bits.div_ceil(8);
        if g.bitmap_size < needed {
            r.add(f(Severity::Warning, "bitmap-short", h.off("bitmap_size"), 8, format!(
                "bitmap_size is {} bytes, but {} blocks of the base image need {}: the blocks past it read from the base image",
                g.bitmap_size, needed_bits, needed)));
        }
        let (set, tail) = b.map.count(&*b.src)?;
        if !g.compact {
            r.allocated_clusters = set;
            r.total_clusters = needed_bits;
        }
        if tail {
            r.add(f(Severity::Warning, "bits-past-end", g.bitmap_offset.saturating_add(b.map.bytes()).saturating_sub(1), 1, String::from(
                "bits are set past the base image's last block; they are ignored")));
        }
        r.add(f(Severity::Info, "bits-set", g.bitmap_offset, b.map.bytes(), format!(
            "{} of {} base-image blocks are stored in this image ({} bits set)", set, needed_bits, set)));
    } else if g.base_named {
        r.add(f(Severity::Info, "base-not-read", h.off("base_img"), 1024, format!(
            "the base image '{}' is named, but {} is set: every block is in this image and the base is not read",
            h.text("base_img").0, if h.variant == Variant::A { "all_data_in_fvd_img" } else { "base_img_fully_prefetched" })));
    }

    // Table.
    let mut used = 0;
    if let Some(t) = &img.table {
        used = check_table(img, t, &mut r)?;
    }
    if !g.compact && img.bitmap.is_none() {
        r.total_clusters = g.vsize.div_ceil(img.info.cluster_size.max(1));
        r.allocated_clusters = r.total_clusters;
    }

    // The data file.
    match (&img.data, img.info.companions.first()) {
        (DataFile::Absent(None), Some(c)) => r.add(f(Severity::Warning, "data-file-missing", c.offset, 1024, format!(
            "the data file '{}' is missing: add it to read the data this image holds", c.name))),
        (DataFile::Absent(Some(e)), Some(c)) => r.add(f(Severity::Warning, "data-file-unreadable", c.offset, 1024, format!(
            "the data file '{}' could not be read: {}", c.name, e))),
        _ => {}
    }
    if matches!(img.data, DataFile::Own) && g.data_base > file_size {
        r.add(f(Severity::Info, "data-past-eof", g.data_base, 0, format!(
            "data starts at {}, past the end of the file ({} bytes): nothing was written yet, every stored block reads zeros", g.data_base, file_size)));
    } else if matches!(img.data, DataFile::Own) && g.data_base % PAGE != 0 {
        r.add(f(Severity::Warning, "region-unaligned", g.data_base, 0, format!(
            "data starts at {}, not on a 4 KiB boundary as FVD places it", g.data_base)));
    }
    // The data region must not hold metadata.
    if matches!(img.data, DataFile::Own) {
        let data_end = g.data_base.saturating_add(if g.compact { used.saturating_mul(g.chunk) } else { g.vsize });
        for &(name, off, len) in &regions {
            if len > 0 && off < data_end && g.data_base < off.saturating_add(len) {
                r.add(f(Severity::Corruption, "region-overlaps-data", off.max(g.data_base), len, format!(
                    "the {} ({} bytes at {}) overlaps the disk data ({} to {}): guest writes and metadata share bytes",
                    name, len, off, g.data_base, data_end)));
            }
        }
    }

    // Names and flags.
    for name in ["base_img", "base_img_fmt", "data_file", "data_file_fmt"] {
        if !h.text(name).1 {
            r.add(f(Severity::Warning, "name-unterminated", h.off(name), h.spec(name).map_or(0, |s| s.size as u64), format!(
                "{} has no NUL within its bytes; the name was cut there", name)));
        }
    }
    if h.get("need_zero_init") != 0 {
        r.add(f(Severity::Info, "need-zero-init", h.off("need_zero_init"), 4, String::from(
            "need_zero_init is set: the data storage must read zeros where never written (keep it on a file system or a zeroed device)")));
    }
    if let Some(s) = h.spec("reserved") {
        if let Some(i) = h.bytes[s.off..s.off + s.size].iter().position(|&b| b != 0) {
            r.add(f(Severity::Warning, "reserved-nonzero", (s.off + i) as u64, 1, String::from(
                "a byte of the reserved header area is not zero")));
        }
    }
    Ok(r)
}

/// Call `f(first_index, entries)` for the readable entries, a window at a time.
fn walk(t: &super::Table, mut f: impl FnMut(u64, &[u32]) -> Result<()>) -> Result<()> {
    let mut buf = Vec::new();
    let mut entries = Vec::new();
    let mut c = 0;
    while c < t.readable {
        let n = (t.readable - c).min(TABLE_WINDOW);
        buf.clear();
        buf.resize((n * 4) as usize, 0);
        read_exact_at(&*t.src, t.at + c * 4, &mut buf, "FVD table")?;
        entries.clear();
        entries.extend(buf.chunks(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])));
        f(c, &entries)?;
        c += n;
    }
    Ok(())
}

/// Check the table; returns the highest chunk id in use plus one.
fn check_table(img: &Fvd, t: &super::Table, r: &mut CheckResult) -> Result<u64> {
    let g = &img.g;
    let chunk = g.chunk;
    let entry_at = |i: u64| g.table_offset.saturating_add(4 * i);
    let f = |sev, code, off, len, msg| img.finding(sev, code, off, len, msg);
    r.total_clusters = t.needed;
    if t.readable < t.needed {
        let why = if g.table_bytes / 4 < t.needed { "the table is too small for the disk" } else { "the file ends inside the table" };
        r.add(Finding {
            guest: Some(t.readable * chunk),
            ..f(Severity::Corruption, "table-short", entry_at(t.readable), (t.needed - t.readable) * 4, format!(
                "{}: chunks {} to {} have no table entry and cannot be read", why, t.readable, t.needed - 1))
        });
    }
    // Ids seen, as a bitset over the ids the data can hold (or the table's size).
    let data_size = img.data_size();
    let data_start = if matches!(img.data, DataFile::Own) { g.data_base } else { 0 };
    let id_space = match data_size {
        Some(s) => s.saturating_sub(data_start).div_ceil(chunk),
        None => t.readable,
    }
    .min(1 << 31);
    let mut seen = (id_space.div_ceil(8) <= limits::MAX_TABLE_BYTES).then(|| vec![0u8; id_space.div_ceil(8) as usize]);
    if seen.is_none() {
        r.check_errors += 1;
        r.add(f(Severity::Info, "table-ids-unchecked", g.table_offset, g.table_bytes, String::from(
            "the data is too large to check chunk ids for duplicates within the memory limit")));
    }
    let (mut allocated, mut dirty, mut first_dirty, mut used) = (0u64, 0u64, None, 0u64);
    walk(t, |c, entries| {
        for (k, &e) in entries.iter().enumerate() {
            let i = c + k as u64;
            if e == EMPTY {
                continue;
            }
            allocated += 1;
            if e & DIRTY != 0 {
                dirty += 1;
                first_dirty.get_or_insert(i);
            }
            let id = (e & !DIRTY) as u64;
            used = used.max(id + 1);
            if let Some(s) = &mut seen {
                if id < id_space {
                    let (byte, bit) = ((id / 8) as usize, id % 8);
                    if s[byte] >> bit & 1 == 1 {
                        r.add_with(Severity::Corruption, 1, || Finding {
                            guest: Some(i * chunk),
                            ..f(Severity::Corruption, "chunk-shared", entry_at(i), 4, format!(
                                "table entry {} uses chunk id {}, which an earlier entry uses too: writing one part of the disk would change the other", i, id))
                        });
                    }
                    s[byte] |= 1 << bit;
                }
            }
            if let Some(size) = data_size {
                let start = id.saturating_mul(chunk).saturating_add(data_start);
                if start >= size {
                    r.add_with(Severity::Corruption, 1, || Finding {
                        guest: Some(i * chunk),
                        ..f(Severity::Corruption, "chunk-past-data", entry_at(i), 4, format!(
                            "table entry {} points to chunk id {} at byte {}, past the end of the data ({} bytes): it reads as zeros", i, id, start, size))
                    });
                }
            }
        }
        Ok(())
    })?;
    r.allocated_clusters = allocated;
    bitmap_without_chunk(img, t, r)?;
    if dirty > 0 {
        r.add(f(Severity::Info, "table-dirty", entry_at(first_dirty.unwrap_or(0)), 4, format!(
            "{} table entries have the dirty bit (0x80000000) set: changed but not flushed when the image was last written; the bit is masked off", dirty)));
    }
    Ok(used)
}

/// A compact image with a bitmap bit 1 over an empty chunk: the block was written, but its
/// chunk has no storage (metadata lost, or a journal not replayed). It reads as zeros.
/// One pass over the set bits, a window at a time, with one table read per window.
fn bitmap_without_chunk(img: &Fvd, t: &super::Table, r: &mut CheckResult) -> Result<()> {
    let Some(b) = &img.bitmap else { return Ok(()) };
    let (g, chunk) = (&img.g, img.g.chunk);
    let covered = b.map.bits.saturating_mul(b.map.granule).min(b.base_end);
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let mut entries = Vec::new();
    let mut last_reported = None;
    let mut w0 = 0;
    while w0 < covered {
        let w1 = covered.min(w0.saturating_add(super::BITMAP_WINDOW));
        runs.clear();
        b.map.runs(&*b.src, w0, w1, |a, e, set| {
            if set {
                runs.push((a, e));
            }
        })?;
        if let (Some(&(first, _)), Some(&(_, end))) = (runs.first(), runs.last()) {
            let (c0, c1) = (first / chunk, ((end - 1) / chunk + 1).min(t.readable));
            if c0 < c1 {
                entries.clear();
                entries.resize(((c1 - c0) * 4) as usize, 0u8);
                read_exact_at(&*t.src, t.at + c0 * 4, &mut entries, "FVD table")?;
                for &(a, e) in &runs {
                    for c in a / chunk..((e - 1) / chunk + 1).min(c1) {
                        let k = ((c - c0) * 4) as usize;
                        let v = u32::from_le_bytes([entries[k], entries[k + 1], entries[k + 2], entries[k + 3]]);
                        if v != EMPTY || last_reported == Some(c) {
                            continue;
                        }
                        last_reported = Some(c);
                        let (s, end) = (c * chunk, ((c + 1) * chunk).min(covered));
                        r.add_with(Severity::Corruption, 1, || Finding {
                            guest: Some(s),
                            ..img.finding(Severity::Corruption, "bitmap-without-chunk", g.table_offset.saturating_add(4 * c), 4, format!(
                                "guest bytes {} to {} are marked as stored in this image (bitmap bit 1), but their chunk's table entry {} is empty: they read as zeros, not as the base image",
                                s, end, c))
                        });
                    }
                }
            }
        }
        w0 = w1;
    }
    Ok(())
}
