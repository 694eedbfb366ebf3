//! GOW consistency check. The whole map (and v3's version array) is walked, not only the
//! entries covering the disk, in windows of a few MiB. Every finding about an entry names
//! the byte offset of that entry.
//!
//! An entry cannot point into the header: data blocks are numbered from the data area's
//! start, so block 0 is the first byte after the header (DECISIONS.md 4). What can go wrong
//! is an entry past the end of the file, two entries sharing a block, a short final block,
//! counts that disagree, and versions that contradict the map.
use alloc::{format, string::String, vec, vec::Vec};

use super::{le32, plural, Gow, BLOCK, FLAG_READ_ONLY, PREAMBLE, WINDOW_ENTRIES};
use crate::error::Result;
use crate::io::read_clipped;
use crate::model::{CheckResult, Severity};

/// Map bytes compared at once when looking for entries that are set.
static ZEROS: [u8; 4096] = [0; 4096];

pub(super) fn run(g: &Gow) -> Result<CheckResult> {
    let mut r = CheckResult::default();
    let geo = g.geo;
    let eof = g.file.size();
    let blocks = g.map.len() as u64; // logical blocks covering the disk
    r.total_clusters = blocks;

    if g.flags & !FLAG_READ_ONLY != 0 {
        r.add(g.finding(Severity::Warning, "flags-unknown", 4, 4, None, format!(
            "flags {:#x} set bits other than bit 0 (read-only): unknown bits {:#x}, ignored", g.flags, g.flags & !FLAG_READ_ONLY)));
    }
    if g.flags & FLAG_READ_ONLY != 0 {
        r.add(g.finding(Severity::Info, "read-only", 4, 4, None, String::from(
            "the read-only flag is set: a gold image, used in copy-on-write mode and never written")));
    }
    if !geo.has_versions() && g.session != 0 {
        r.add(g.finding(Severity::Warning, "reserved-nonzero", 20, 4, None, format!(
            "the session field is {} but GOW{} has no sessions (it should be 0)", g.session, geo.version)));
    }
    if eof < geo.header {
        r.add(g.finding(Severity::Warning, "header-short", eof, geo.header - eof, None, format!(
            "the file ends at byte {}, inside the {}-byte header: the entries past its end read as 0 (never written)", eof, geo.header)));
    }

    // Data blocks the file holds, the last one possibly short.
    let stored = eof.saturating_sub(geo.data);
    let file_blocks = stored.div_ceil(BLOCK);
    let short = (stored % BLOCK != 0).then(|| file_blocks - 1);
    // Bytes the short last block lacks (counted from the stored bytes: the block's end can
    // lie past 2^64).
    let missing = BLOCK - stored % BLOCK;

    // (data block << 32 | logical block) of every non-zero entry.
    let mut refs: Vec<u64> = Vec::new();
    let mut last: Option<u64> = None;
    let window = (geo.entries.min(WINDOW_ENTRIES) * 4) as usize;
    let mut map = vec![0u8; window];
    let mut versions = vec![0u8; if geo.has_versions() { window } else { 0 }];
    let mut first = 0;
    while first < geo.entries {
        let n = (geo.entries - first).min(WINDOW_ENTRIES);
        let len = (n * 4) as usize;
        read_clipped(&*g.file, geo.entry_at(first), &mut map[..len])?;
        if geo.has_versions() {
            read_clipped(&*g.file, geo.version_at(first), &mut versions[..len])?;
        }
        // Most of a map is zero: skip all-zero stretches of both arrays at memcmp speed.
        for sub in (0..len).step_by(ZEROS.len()) {
            let end = (sub + ZEROS.len()).min(len);
            let m = &map[sub..end];
            let v = versions.get(sub..end).unwrap_or(&[]);
            if m == &ZEROS[..m.len()] && (v.is_empty() || v == &ZEROS[..v.len()]) {
                continue;
            }
            for (j, c) in m.chunks_exact(4).enumerate() {
                let i = first + (sub / 4 + j) as u64;
                let e = le32(c, 0);
                let inside = i < blocks;
                let guest = inside.then_some(i * BLOCK);
                if geo.has_versions() {
                    version_findings(g, &mut r, i, e, le32(v, 4 * j), inside);
                }
                if e == 0 {
                    continue;
                }
                let b = e as u64 - 1;
                let at = geo.entry_at(i);
                refs.push(b << 32 | i);
                if !inside {
                    r.add_with(Severity::Warning, 1, || g.finding(Severity::Warning, "entry-beyond-size", at, 4, None, format!(
                        "the map entry of logical block {} is {} (data block {}), but the disk ends at block {}: it is never read", i, e, b, blocks)));
                    continue;
                }
                r.allocated_clusters += 1;
                if last.is_some_and(|l| l + 1 != b) {
                    r.fragmented_clusters += 1;
                }
                last = Some(b);
                if geo.block_at(b) >= eof {
                    r.add_with(Severity::Corruption, 1, || g.finding(Severity::Corruption, "block-past-eof", at, 4, guest, format!(
                        "the map entry of logical block {} is {}: data block {} at byte {}, past the end of the file ({} bytes); its data is not in the file",
                        i, e, b, geo.block_at(b), eof)));
                }
            }
        }
        first += n;
    }

    // Shared blocks and the short final block, by data block.
    refs.sort_unstable();
    let mut distinct = 0u64;
    let mut used_in_file: Vec<u64> = Vec::new();
    let mut k = 0;
    while k < refs.len() {
        let b = refs[k] >> 32;
        let owner = refs[k] & 0xffff_ffff;
        let mut j = k + 1;
        while j < refs.len() && refs[j] >> 32 == b {
            let i = refs[j] & 0xffff_ffff;
            if b < file_blocks {
                r.add_with(Severity::Corruption, 1, || g.finding(Severity::Corruption, "block-shared", geo.entry_at(i), 4, (i < blocks).then_some(i * BLOCK), format!(
                    "logical blocks {} and {} both map to data block {} (byte {}): writing one would change the other",
                    owner, i, b, geo.block_at(b))));
            }
            j += 1;
        }
        distinct += 1;
        if b < file_blocks {
            used_in_file.push(b);
        }
        if Some(b) == short {
            r.add_with(Severity::Warning, 1, || g.finding(Severity::Warning, "short-final-block", geo.entry_at(owner), 4, (owner < blocks).then_some(owner * BLOCK), format!(
                "data block {} (logical block {}) at byte {} is only {} of 65536 bytes: the file ends {} bytes early; the missing bytes read as zero",
                b, owner, geo.block_at(b), BLOCK - missing, missing)));
        }
        k = j;
    }
    if let Some(b) = short {
        if used_in_file.binary_search(&b).is_err() {
            r.add_with(Severity::Warning, 1, || g.finding(Severity::Warning, "short-final-block", geo.block_at(b), BLOCK - missing, None, format!(
                "the last data block ({} at byte {}) is only {} of 65536 bytes, and no map entry uses it", b, geo.block_at(b), BLOCK - missing)));
        }
    }

    // Data blocks the file holds that no entry uses: space held, not used.
    let mut next = 0u64;
    for &b in used_in_file.iter().chain(core::iter::once(&file_blocks)) {
        if b > next {
            let n = b - next;
            r.leaks += n;
            let at = geo.block_at(next);
            // The file's end, not block `file_blocks`' start: that can lie past 2^64.
            let end = if b == file_blocks { eof } else { geo.block_at(b) };
            r.add_with(Severity::Leak, 1, || g.finding(Severity::Leak, "leaked-blocks", at, end - at, None, format!(
                "{} from data block {} (byte {}) {} not used by any map entry",
                plural(n, "data block", "data blocks"), next, at, if n == 1 { "is" } else { "are" })));
        }
        next = b + 1;
    }

    // The header's count against the map and against the file.
    let count = g.allocated as u64;
    let top = refs.iter().map(|x| x >> 32).max();
    if count != distinct {
        // A writer appends block `count` next: if the map already uses it, data is overwritten.
        let severity = if top.is_some_and(|t| t >= count) { Severity::Corruption } else { Severity::Warning };
        r.add(g.finding(severity, "count-vs-map", 16, 4, None, format!(
            "the header counts {} but the map uses {}{}", plural(count, "allocated block", "allocated blocks"), plural(distinct, "data block", "data blocks"),
            match top {
                Some(t) if t >= count => format!(" up to block {}: the next block a writer appends would overwrite one in use", t),
                _ => String::new(),
            })));
    }
    // With no blocks, the file may end anywhere from the header's end to the data area's;
    // a short last block is reported above.
    let expect = geo.block_at(count);
    let explained = (count == 0 && (geo.header..=geo.data).contains(&eof)) || (short.is_some() && count == file_blocks);
    if eof != expect && !explained {
        r.add(g.finding(Severity::Warning, "count-vs-file", 16, 4, None, format!(
            "the header counts {}, so the file should be {} bytes; it is {} bytes, holding {}{}",
            plural(count, "allocated block", "allocated blocks"), expect, eof, plural(file_blocks, "data block", "data blocks"),
            if short.is_some() { " (the last one short)" } else { "" })));
    }
    r.add(g.finding(Severity::Info, "blocks-allocated", PREAMBLE, 4 * geo.entries, None, format!(
        "{} of the disk's {} are stored ({} in the file)",
        r.allocated_clusters, plural(blocks, "block", "blocks"), plural(file_blocks, "data block", "data blocks"))));
    Ok(r)
}

/// v3: versions that contradict the map or the session number.
fn version_findings(g: &Gow, r: &mut CheckResult, i: u64, e: u32, v: u32, inside: bool) {
    let at = g.geo.version_at(i);
    let guest = inside.then_some(i * BLOCK);
    if !inside {
        if v != 0 {
            r.add_with(Severity::Warning, 1, || g.finding(Severity::Warning, "version-beyond-size", at, 4, None, format!(
                "logical block {} is past the end of the disk but has version {}", i, v)));
        }
    } else if e == 0 && v != 0 {
        r.add_with(Severity::Warning, 1, || g.finding(Severity::Warning, "version-on-unallocated", at, 4, guest, format!(
            "logical block {} was never written (map entry 0) but has version {}", i, v)));
    } else if e != 0 && v == 0 {
        r.add_with(Severity::Warning, 1, || g.finding(Severity::Warning, "version-missing", at, 4, guest, format!(
            "logical block {} is stored but has version 0 (never written): a delta would never fetch it", i)));
    } else if v > g.session {
        r.add_with(Severity::Warning, 1, || g.finding(Severity::Warning, "version-after-session", at, 4, guest, format!(
            "logical block {} has version {}, newer than the current session {}", i, v, g.session)));
    }
}
